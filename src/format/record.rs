//! Container records: framing, checksums and payload encoding. Bytes only, no I/O.
//!
//! Every record starts on an 8-byte boundary (offsets are relative to the start of
//! the container file) and has a 32-byte header:
//!
//! ```text
//! offset  size  field
//!      0     4  crc32      crc32fast over bytes 4..32 of the header and the payload
//!      4     4  len        payload length in bytes (bounded by MAX_PAYLOAD_LEN)
//!      8     1  kind       RecordKind
//!      9     1  version    RECORD_VERSION
//!     10     2  magic      RECORD_MAGIC, a cheap first filter while scanning
//!     12     4  reserved   zero
//!     16     8  sequence   strictly increasing by one across the whole container
//!     24     8  durable    log position known durable (fdatasync returned) when the
//!                          record was encoded; lets recovery tell a torn tail from
//!                          damage inside durable data
//!     32   len  payload    see `Payload`
//!  32+len   ..  zero padding to the next multiple of 8
//! ```
//!
//! Payloads (all integers little endian, strings are `u16 len + utf8`):
//!
//! ```text
//! Create       file_id u64, namespace str, path str
//! Data         file_id u64, file_offset u64, bytes..
//! Finish       file_id u64, len u64
//! Delete       file_id u64
//! AtomicWrite  file_id u64, namespace str, path str, bytes..
//!              (also how a live file is copied forward out of a container file
//!              that is being reclaimed: same file_id, replaces the older copy)
//! Padding      zero bytes (filler, e.g. for aligned writes)
//! Export       export_no u64, namespace str, count u32,
//!              count x (file_id u64, offset u64, len u64, path str)
//!              the files now live at these offsets of segment file `export_no`
//! Checkpoint   next_file_id u64, count u32, count x file_no u64: ids below
//!              next_file_id were all handed out before this file; the container
//!              files listed existed when it was created. First record of every
//!              v2 file.
//! Reclaim      file_no u64: this container file is dead and gets removed
//! ExportBegin  export_no u64: segment file `export_no` is about to be written;
//!              until an `Export` record names it, it is incomplete (removable)
//! SegmentDrop  export_no u64: segment file `export_no` is dead and gets removed
//! Continued    next_file_no u64: container file `next_file_no` was created and
//!              synced; this file is sealed (the last record of every sealed v3
//!              file, so a missing successor is seen, not taken for the end)
//! Seal         empty: written (and synced) right after a sync, on a clean close
//!              and when the log has been idle; its `durable` covers every
//!              record before it, so damage there is reported, never cut
//! Snapshot     part u32, parts u32, bytes..: part `part` (from 0) of the
//!              file-table image (`format::snapshot`); the parts follow the
//!              `Checkpoint` of a file in one write, and together stand for
//!              every record of the files before it
//! Placed       file_id u64, file_offset u64, export_no u64, seg_offset u64,
//!              len u64, crc u32: a chunk of a file was written at
//!              `seg_offset` of segment file `export_no` (one being built in
//!              place, named by an `ExportBegin` before), not into the log;
//!              `crc` is the CRC-32 of its `len` bytes
//! ```
//!
//! Kinds 7..=9 (Export, Checkpoint, Reclaim) appear from format version 2 on,
//! kinds 10..=13 (ExportBegin, SegmentDrop, Continued, Seal) from version 3 on,
//! kind 14 (Snapshot) from version 4 on, kind 15 (Placed) from version 5 on.

use crate::error::DecodeError;
use crate::format::reader::Reader;

pub const HEADER_LEN: usize = 32;
pub const ALIGN: u64 = 8;
/// Where a `Data` record's file bytes start in its payload (after the file id
/// and the offset in the file, 8 bytes each).
pub const DATA_BYTES_IN_PAYLOAD: usize = 16;
/// Where a `Data` record's file bytes start, from the record's first byte.
pub const DATA_BYTES_AT: usize = HEADER_LEN + DATA_BYTES_IN_PAYLOAD;
/// Where an `AtomicWrite` record's file bytes start in its payload, before its
/// two names: after the file id (8 bytes) and the two name lengths (2 each).
pub const ATOMIC_NAMES_IN_PAYLOAD: usize = 8 + 2 + 2;
/// The least an `AtomicWrite` record's file bytes can be after its first
/// byte (both names empty): nearer than a `Data` record's when its names
/// together have fewer than 4 bytes.
pub const ATOMIC_BYTES_AT_LEAST: usize = HEADER_LEN + ATOMIC_NAMES_IN_PAYLOAD;
pub const RECORD_MAGIC: u16 = 0x4A4B; // "JK"
pub const RECORD_VERSION: u8 = 1;
/// Size of a `Placed` payload.
pub const PLACED_LEN: usize = 5 * 8 + 4;
/// Upper bound on the chunk a `Placed` record names (a write buffer is far
/// smaller): a length read from disk above this is corruption.
pub const MAX_PLACED_LEN: u64 = 1 << 30;
/// Upper bound on a place in a segment file (ext4's largest file).
pub const MAX_SEGMENT_FILE: u64 = 16 << 40;
/// Upper bound on a payload: a length read from disk above this is corruption.
pub const MAX_PAYLOAD_LEN: u32 = 256 << 20;
/// Upper bound on a namespace or path in a record.
pub const MAX_NAME_LEN: usize = 4096;
/// Upper bound on a container or segment file number: file names carry ten
/// digits. A larger number read from disk is corruption.
pub const MAX_FILE_NO: u64 = 9_999_999_999;

/// `n` as a file number, if it is one.
fn file_no(n: u64) -> Result<u64, DecodeError> {
    if n > MAX_FILE_NO {
        return Err(DecodeError::LengthOutOfBounds(n));
    }
    Ok(n)
}

const OFF_CRC: usize = 0;
const OFF_LEN: usize = 4;
const OFF_KIND: usize = 8;
const OFF_VERSION: usize = 9;
const OFF_MAGIC: usize = 10;
const OFF_SEQ: usize = 16;
const OFF_DURABLE: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    Create = 1,
    Data = 2,
    Finish = 3,
    Delete = 4,
    AtomicWrite = 5,
    Padding = 6,
    Export = 7,
    Checkpoint = 8,
    Reclaim = 9,
    ExportBegin = 10,
    SegmentDrop = 11,
    Continued = 12,
    Seal = 13,
    Snapshot = 14,
    Placed = 15,
}

impl RecordKind {
    fn from_u8(b: u8) -> Option<RecordKind> {
        Some(match b {
            1 => RecordKind::Create,
            2 => RecordKind::Data,
            3 => RecordKind::Finish,
            4 => RecordKind::Delete,
            5 => RecordKind::AtomicWrite,
            6 => RecordKind::Padding,
            7 => RecordKind::Export,
            8 => RecordKind::Checkpoint,
            9 => RecordKind::Reclaim,
            10 => RecordKind::ExportBegin,
            11 => RecordKind::SegmentDrop,
            12 => RecordKind::Continued,
            13 => RecordKind::Seal,
            14 => RecordKind::Snapshot,
            15 => RecordKind::Placed,
            _ => return None,
        })
    }
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: RecordKind,
    pub len: u32,
    pub sequence: u64,
    pub durable: u64,
}

/// A record payload, borrowing its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload<'a> {
    Create {
        file_id: u64,
        namespace: &'a str,
        path: &'a str,
    },
    Data {
        file_id: u64,
        file_offset: u64,
        bytes: &'a [u8],
    },
    Finish {
        file_id: u64,
        len: u64,
    },
    Delete {
        file_id: u64,
    },
    AtomicWrite {
        file_id: u64,
        namespace: &'a str,
        path: &'a str,
        bytes: &'a [u8],
    },
    Padding {
        len: usize,
    },
    /// `entries` as made by [`encode_export_entries`] (checked on decode).
    Export {
        export_no: u64,
        namespace: &'a str,
        entries: &'a [u8],
    },
    /// `files` as made by [`encode_file_numbers`] (checked on decode).
    Checkpoint {
        next_file_id: u64,
        files: &'a [u8],
    },
    Reclaim {
        file_no: u64,
    },
    ExportBegin {
        export_no: u64,
    },
    SegmentDrop {
        export_no: u64,
    },
    Continued {
        next_file_no: u64,
    },
    Seal,
    /// Part `part` of `parts` of a file-table image.
    Snapshot {
        part: u32,
        parts: u32,
        bytes: &'a [u8],
    },
    /// A chunk of file `file_id` (at `file_offset` in it) lies at
    /// `seg_offset` of segment file `export_no`, being built in place.
    Placed {
        file_id: u64,
        file_offset: u64,
        export_no: u64,
        seg_offset: u64,
        len: u64,
        crc: u32,
    },
}

/// One file of an exported segment, as logged in an `Export` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportEntry {
    pub file_id: u64,
    pub offset: u64,
    pub len: u64,
    pub path: String,
}

/// Encodes the entry list of an `Export` record.
pub fn encode_export_entries(entries: &[ExportEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entries.len() * 40);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.file_id.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.len.to_le_bytes());
        put_str(&mut out, &e.path);
    }
    out
}

/// Decodes the entry list of an `Export` record; every length is bounded by the
/// bytes actually present.
pub fn decode_export_entries(b: &[u8]) -> Result<Vec<ExportEntry>, DecodeError> {
    let mut r = Reader::new(b);
    let count = r.u32()? as usize;
    // Each entry takes at least 26 bytes: a count larger than that is corruption.
    if count > b.len() / 26 {
        return Err(DecodeError::LengthOutOfBounds(count as u64));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(ExportEntry {
            file_id: r.u64()?,
            offset: r.u64()?,
            len: r.u64()?,
            path: r.str(MAX_NAME_LEN)?.to_string(),
        });
    }
    if r.pos() != b.len() {
        return Err(DecodeError::LengthOutOfBounds(b.len() as u64));
    }
    Ok(out)
}

/// Encodes the file numbers of a `Checkpoint` record.
pub fn encode_file_numbers(files: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + files.len() * 8);
    out.extend_from_slice(&(files.len() as u32).to_le_bytes());
    for f in files {
        out.extend_from_slice(&f.to_le_bytes());
    }
    out
}

/// Decodes the file numbers of a `Checkpoint` record.
pub fn decode_file_numbers(b: &[u8]) -> Result<Vec<u64>, DecodeError> {
    let mut r = Reader::new(b);
    let count = r.u32()? as usize;
    if count.checked_mul(8).and_then(|n| n.checked_add(4)) != Some(b.len()) {
        return Err(DecodeError::LengthOutOfBounds(count as u64));
    }
    (0..count).map(|_| file_no(r.u64()?)).collect()
}

impl Payload<'_> {
    pub fn kind(&self) -> RecordKind {
        match self {
            Payload::Create { .. } => RecordKind::Create,
            Payload::Data { .. } => RecordKind::Data,
            Payload::Finish { .. } => RecordKind::Finish,
            Payload::Delete { .. } => RecordKind::Delete,
            Payload::AtomicWrite { .. } => RecordKind::AtomicWrite,
            Payload::Padding { .. } => RecordKind::Padding,
            Payload::Export { .. } => RecordKind::Export,
            Payload::Checkpoint { .. } => RecordKind::Checkpoint,
            Payload::Reclaim { .. } => RecordKind::Reclaim,
            Payload::ExportBegin { .. } => RecordKind::ExportBegin,
            Payload::SegmentDrop { .. } => RecordKind::SegmentDrop,
            Payload::Continued { .. } => RecordKind::Continued,
            Payload::Seal => RecordKind::Seal,
            Payload::Snapshot { .. } => RecordKind::Snapshot,
            Payload::Placed { .. } => RecordKind::Placed,
        }
    }

    /// Size of the encoded payload (without header and padding).
    pub fn encoded_len(&self) -> usize {
        match self {
            Payload::Create {
                namespace, path, ..
            } => 8 + 2 + namespace.len() + 2 + path.len(),
            Payload::Data { bytes, .. } => 16 + bytes.len(),
            Payload::Finish { .. } => 16,
            Payload::Delete { .. } => 8,
            Payload::AtomicWrite {
                namespace,
                path,
                bytes,
                ..
            } => 8 + 2 + namespace.len() + 2 + path.len() + bytes.len(),
            Payload::Padding { len } => *len,
            Payload::Export {
                namespace, entries, ..
            } => 8 + 2 + namespace.len() + entries.len(),
            Payload::Checkpoint { files, .. } => 8 + files.len(),
            Payload::Reclaim { .. }
            | Payload::ExportBegin { .. }
            | Payload::SegmentDrop { .. }
            | Payload::Continued { .. } => 8,
            Payload::Seal => 0,
            Payload::Snapshot { bytes, .. } => 8 + bytes.len(),
            Payload::Placed { .. } => PLACED_LEN,
        }
    }

    /// Offset of the raw file bytes inside the payload, for `Data` and `AtomicWrite`.
    pub fn bytes_offset_in_payload(&self) -> Option<usize> {
        match self {
            Payload::Data { .. } => Some(DATA_BYTES_IN_PAYLOAD),
            Payload::AtomicWrite {
                namespace, path, ..
            } => Some(ATOMIC_NAMES_IN_PAYLOAD + namespace.len() + path.len()),
            _ => None,
        }
    }
}

/// Total on-disk size of a record with a payload of `payload_len` bytes.
pub fn framed_len(payload_len: usize) -> u64 {
    align_up((HEADER_LEN + payload_len) as u64)
}

pub fn align_up(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

/// Appends the framed record (header, payload, padding) to `out`.
pub fn encode(out: &mut Vec<u8>, payload: &Payload<'_>, sequence: u64, durable: u64) {
    let start = out.len();
    let payload_len = payload.encoded_len();
    assert!(payload_len <= MAX_PAYLOAD_LEN as usize, "payload too large");
    out.resize(start + HEADER_LEN, 0);
    match payload {
        Payload::Create {
            file_id,
            namespace,
            path,
        } => {
            out.extend_from_slice(&file_id.to_le_bytes());
            put_str(out, namespace);
            put_str(out, path);
        }
        Payload::Data {
            file_id,
            file_offset,
            bytes,
        } => {
            out.extend_from_slice(&file_id.to_le_bytes());
            out.extend_from_slice(&file_offset.to_le_bytes());
            out.extend_from_slice(bytes);
        }
        Payload::Finish { file_id, len } => {
            out.extend_from_slice(&file_id.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
        Payload::Delete { file_id } => out.extend_from_slice(&file_id.to_le_bytes()),
        Payload::AtomicWrite {
            file_id,
            namespace,
            path,
            bytes,
        } => {
            out.extend_from_slice(&file_id.to_le_bytes());
            put_str(out, namespace);
            put_str(out, path);
            out.extend_from_slice(bytes);
        }
        Payload::Padding { len } => out.resize(out.len() + len, 0),
        Payload::Export {
            export_no,
            namespace,
            entries,
        } => {
            out.extend_from_slice(&export_no.to_le_bytes());
            put_str(out, namespace);
            out.extend_from_slice(entries);
        }
        Payload::Checkpoint {
            next_file_id,
            files,
        } => {
            out.extend_from_slice(&next_file_id.to_le_bytes());
            out.extend_from_slice(files);
        }
        Payload::Reclaim { file_no: n }
        | Payload::ExportBegin { export_no: n }
        | Payload::SegmentDrop { export_no: n }
        | Payload::Continued { next_file_no: n } => out.extend_from_slice(&n.to_le_bytes()),
        Payload::Seal => {}
        Payload::Snapshot { part, parts, bytes } => {
            out.extend_from_slice(&part.to_le_bytes());
            out.extend_from_slice(&parts.to_le_bytes());
            out.extend_from_slice(bytes);
        }
        Payload::Placed {
            file_id,
            file_offset,
            export_no,
            seg_offset,
            len,
            crc,
        } => {
            for n in [file_id, file_offset, export_no, seg_offset, len] {
                out.extend_from_slice(&n.to_le_bytes());
            }
            out.extend_from_slice(&crc.to_le_bytes());
        }
    }
    debug_assert_eq!(out.len() - start - HEADER_LEN, payload_len);
    let header = &mut out[start..start + HEADER_LEN];
    header[OFF_LEN..OFF_LEN + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    header[OFF_KIND] = payload.kind() as u8;
    header[OFF_VERSION] = RECORD_VERSION;
    header[OFF_MAGIC..OFF_MAGIC + 2].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    header[OFF_SEQ..OFF_SEQ + 8].copy_from_slice(&sequence.to_le_bytes());
    header[OFF_DURABLE..OFF_DURABLE + 8].copy_from_slice(&durable.to_le_bytes());
    let crc = crc32fast::hash(&out[start + 4..]);
    out[start + OFF_CRC..start + OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    let end = start as u64 + framed_len(payload_len);
    out.resize(end as usize, 0);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() <= MAX_NAME_LEN, "name too long");
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Decodes a header without checking the crc (the payload is needed for that).
/// Rejects bad magic, unknown kind or version and lengths over the bound.
pub fn decode_header(buf: &[u8]) -> Result<Header, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    if u16_at(buf, OFF_MAGIC) != RECORD_MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if buf[OFF_VERSION] != RECORD_VERSION {
        return Err(DecodeError::Version {
            expected: RECORD_VERSION as u32,
            got: buf[OFF_VERSION] as u32,
        });
    }
    let kind = RecordKind::from_u8(buf[OFF_KIND]).ok_or(DecodeError::BadKind(buf[OFF_KIND]))?;
    let len = u32_at(buf, OFF_LEN);
    if len > MAX_PAYLOAD_LEN {
        return Err(DecodeError::LengthOutOfBounds(len as u64));
    }
    Ok(Header {
        kind,
        len,
        sequence: u64_at(buf, OFF_SEQ),
        durable: u64_at(buf, OFF_DURABLE),
    })
}

/// Verifies the crc of a record whose header and payload are `buf[..HEADER_LEN + len]`.
pub fn verify(buf: &[u8], header: &Header) -> Result<(), DecodeError> {
    let end = HEADER_LEN + header.len as usize;
    if buf.len() < end {
        return Err(DecodeError::Truncated);
    }
    let expected = u32_at(buf, OFF_CRC);
    let got = crc32fast::hash(&buf[4..end]);
    if expected != got {
        return Err(DecodeError::ChecksumMismatch { expected, got });
    }
    Ok(())
}

/// Decodes a verified payload.
pub fn decode_payload<'a>(kind: RecordKind, p: &'a [u8]) -> Result<Payload<'a>, DecodeError> {
    let mut r = Reader::new(p);
    let payload = match kind {
        RecordKind::Create => Payload::Create {
            file_id: r.u64()?,
            namespace: r.str(MAX_NAME_LEN)?,
            path: r.str(MAX_NAME_LEN)?,
        },
        RecordKind::Data => Payload::Data {
            file_id: r.u64()?,
            file_offset: r.u64()?,
            bytes: r.rest(),
        },
        RecordKind::Finish => Payload::Finish {
            file_id: r.u64()?,
            len: r.u64()?,
        },
        RecordKind::Delete => Payload::Delete { file_id: r.u64()? },
        RecordKind::AtomicWrite => Payload::AtomicWrite {
            file_id: r.u64()?,
            namespace: r.str(MAX_NAME_LEN)?,
            path: r.str(MAX_NAME_LEN)?,
            bytes: r.rest(),
        },
        RecordKind::Padding => Payload::Padding { len: p.len() },
        RecordKind::Export => {
            let export_no = file_no(r.u64()?)?;
            let namespace = r.str(MAX_NAME_LEN)?;
            let entries = r.rest();
            decode_export_entries(entries)?;
            Payload::Export {
                export_no,
                namespace,
                entries,
            }
        }
        RecordKind::Checkpoint => {
            let next_file_id = r.u64()?;
            let files = r.rest();
            decode_file_numbers(files)?;
            Payload::Checkpoint {
                next_file_id,
                files,
            }
        }
        RecordKind::Reclaim => Payload::Reclaim {
            file_no: file_no(r.u64()?)?,
        },
        RecordKind::ExportBegin => Payload::ExportBegin {
            export_no: file_no(r.u64()?)?,
        },
        RecordKind::SegmentDrop => Payload::SegmentDrop {
            export_no: file_no(r.u64()?)?,
        },
        RecordKind::Continued => Payload::Continued {
            next_file_no: file_no(r.u64()?)?,
        },
        RecordKind::Seal => Payload::Seal,
        RecordKind::Snapshot => {
            let part = r.u32()?;
            let parts = r.u32()?;
            if part >= parts {
                return Err(DecodeError::LengthOutOfBounds(part as u64));
            }
            Payload::Snapshot {
                part,
                parts,
                bytes: r.rest(),
            }
        }
        RecordKind::Placed => {
            let file_id = r.u64()?;
            let file_offset = r.u64()?;
            let export_no = file_no(r.u64()?)?;
            let seg_offset = r.u64()?;
            let len = r.u64()?;
            // A chunk is at most one write buffer; its place must fit a file.
            if len > MAX_PLACED_LEN
                || seg_offset
                    .checked_add(len)
                    .is_none_or(|end| end > MAX_SEGMENT_FILE)
                || file_offset.checked_add(len).is_none()
            {
                return Err(DecodeError::LengthOutOfBounds(len));
            }
            Payload::Placed {
                file_id,
                file_offset,
                export_no,
                seg_offset,
                len,
                crc: r.u32()?,
            }
        }
    };
    // A payload is read to its end (kinds with trailing bytes take the rest):
    // bytes left over are not something this version wrote.
    if r.pos() != p.len() && kind != RecordKind::Padding {
        return Err(DecodeError::LengthOutOfBounds(p.len() as u64));
    }
    Ok(payload)
}

pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}
pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(p: Payload<'_>) {
        // Records may follow other bytes in a buffer: encode after three.
        let mut out = vec![0xAA; 3];
        encode(&mut out, &p, 42, 7);
        assert_eq!(&out[..3], &[0xAA; 3], "the bytes before were changed");
        let buf = &out[3..];
        assert_eq!(buf.len() as u64, framed_len(p.encoded_len()));
        assert_eq!(buf.len() % ALIGN as usize, 0);
        let h = decode_header(buf).unwrap();
        assert_eq!((h.kind, h.sequence, h.durable), (p.kind(), 42, 7));
        verify(buf, &h).unwrap();
        let got = decode_payload(h.kind, &buf[HEADER_LEN..HEADER_LEN + h.len as usize]).unwrap();
        assert_eq!(got, p);
    }

    #[test]
    fn file_numbers_beyond_ten_digits_are_corruption() {
        for p in [
            Payload::Reclaim {
                file_no: MAX_FILE_NO + 1,
            },
            Payload::ExportBegin {
                export_no: u64::MAX,
            },
            Payload::SegmentDrop {
                export_no: MAX_FILE_NO + 1,
            },
            Payload::Continued {
                next_file_no: MAX_FILE_NO + 1,
            },
        ] {
            let mut buf = Vec::new();
            encode(&mut buf, &p, 1, 0);
            let h = decode_header(&buf).unwrap();
            assert!(
                decode_payload(h.kind, &buf[HEADER_LEN..HEADER_LEN + h.len as usize]).is_err(),
                "{p:?} accepted"
            );
        }
        assert!(decode_file_numbers(&encode_file_numbers(&[1, MAX_FILE_NO + 1])).is_err());
        assert_eq!(
            decode_file_numbers(&encode_file_numbers(&[MAX_FILE_NO])).unwrap(),
            [MAX_FILE_NO]
        );
    }

    #[test]
    fn every_kind_roundtrips() {
        roundtrip(Payload::Create {
            file_id: 9,
            namespace: "tenant",
            path: "a.idx",
        });
        roundtrip(Payload::Data {
            file_id: 1,
            file_offset: 1 << 40,
            bytes: b"hello world",
        });
        roundtrip(Payload::Finish {
            file_id: 3,
            len: 11,
        });
        roundtrip(Payload::Delete { file_id: 3 });
        roundtrip(Payload::AtomicWrite {
            file_id: 4,
            namespace: "",
            path: "meta.json",
            bytes: b"{}",
        });
        roundtrip(Payload::Padding { len: 13 });
        let entries = encode_export_entries(&[
            ExportEntry {
                file_id: 4,
                offset: 0,
                len: 10,
                path: "a.idx".into(),
            },
            ExportEntry {
                file_id: 9,
                offset: 4096,
                len: 0,
                path: "a.term".into(),
            },
        ]);
        roundtrip(Payload::Export {
            export_no: 3,
            namespace: "t",
            entries: &entries,
        });
        assert_eq!(decode_export_entries(&entries).unwrap()[1].offset, 4096);
        let files = encode_file_numbers(&[0, 2, 5]);
        roundtrip(Payload::Checkpoint {
            next_file_id: 12,
            files: &files,
        });
        assert_eq!(decode_file_numbers(&files).unwrap(), vec![0, 2, 5]);
        roundtrip(Payload::Reclaim { file_no: 2 });
        roundtrip(Payload::ExportBegin { export_no: 3 });
        roundtrip(Payload::SegmentDrop { export_no: 4 });
        roundtrip(Payload::Continued { next_file_no: 5 });
        roundtrip(Payload::Seal);
        roundtrip(Payload::Snapshot {
            part: 1,
            parts: 3,
            bytes: b"JSNP...",
        });
        roundtrip(Payload::Placed {
            file_id: 7,
            file_offset: 1 << 20,
            export_no: 12,
            seg_offset: 8192,
            len: 1 << 20,
            crc: 0xDEAD_BEEF,
        });
        // Counts larger than the bytes present are refused before allocating.
        assert!(decode_export_entries(&u32::MAX.to_le_bytes()).is_err());
        assert!(decode_file_numbers(&u32::MAX.to_le_bytes()).is_err());
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let mut buf = Vec::new();
        encode(
            &mut buf,
            &Payload::Data {
                file_id: 1,
                file_offset: 0,
                bytes: b"0123456789",
            },
            1,
            0,
        );
        let used = HEADER_LEN + 26;
        for i in 0..used {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[i] ^= 1 << bit;
                let ok = decode_header(&b).and_then(|h| verify(&b, &h));
                assert!(ok.is_err(), "flip at byte {i} bit {bit} undetected");
            }
        }
    }

    #[test]
    fn lengths_are_bounded_before_use() {
        let mut buf = Vec::new();
        encode(&mut buf, &Payload::Delete { file_id: 1 }, 1, 0);
        buf[OFF_LEN..OFF_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_header(&buf),
            Err(DecodeError::LengthOutOfBounds(_))
        ));
        // A name length pointing past the payload.
        let p = [0u8, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0x0F];
        assert!(decode_payload(RecordKind::Create, &p).is_err());
    }

    #[test]
    fn placed_places_are_bounded() {
        for (seg_offset, len) in [
            (0, MAX_PLACED_LEN + 1),
            (MAX_SEGMENT_FILE, 1),
            (u64::MAX, 2),
        ] {
            let mut buf = Vec::new();
            let p = Payload::Placed {
                file_id: 1,
                file_offset: 0,
                export_no: 1,
                seg_offset,
                len,
                crc: 0,
            };
            encode(&mut buf, &p, 1, 0);
            let h = decode_header(&buf).unwrap();
            assert!(
                decode_payload(h.kind, &buf[HEADER_LEN..HEADER_LEN + h.len as usize]).is_err(),
                "{p:?} accepted"
            );
        }
    }

    #[test]
    fn zeros_are_not_a_record() {
        assert!(decode_header(&[0u8; HEADER_LEN]).is_err());
    }
}
