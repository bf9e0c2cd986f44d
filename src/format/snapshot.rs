//! The file-table image a `Snapshot` record carries (format version 4): the
//! whole file table as replay would have built it from every record before the
//! container file that starts with it, so an open replays only the records
//! after it. Bytes only, no I/O.
//!
//! ```text
//! offset  size  field
//!      0     4  magic            "JSNP"
//!      4     4  version          IMAGE_VERSION
//!      8     8  next_file_id     ids below were handed out
//!     16     4  segments         n: segment files the log has a record of
//!     20    8n  segment numbers  (ExportBegin, Export or SegmentDrop seen)
//!     ..     4  namespaces       m
//!   m times:
//!            str namespace (u16 len + utf8), u32 file count k
//!     k times:
//!            str path, u64 id, u8 state (0 writing, 1 terminated, 2 atomic),
//!            u64 len, u8 place:
//!              0 (container): u32 x, x × (u64 file_no, u64 offset, u64 len)
//!              1 (segment):   u64 export_no, u64 offset
//!            u16 a, a × u64 anchors (container files replay needs for it)
//! ```
//!
//! The image may be split over several `Snapshot` records (`part` of `parts`);
//! each record has its own CRC. Every count is bounded by the bytes left before
//! anything is allocated for it.

use crate::error::DecodeError;
use crate::format::reader::Reader;
use crate::format::record::{u64_at, MAX_FILE_NO, MAX_NAME_LEN};

pub const IMAGE_MAGIC: &[u8; 4] = b"JSNP";
pub const IMAGE_VERSION: u32 = 1;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = OFF_MAGIC + 4;
const OFF_NEXT_ID: usize = OFF_VERSION + 4;
const OFF_SEGMENTS: usize = OFF_NEXT_ID + 8;

/// The smallest encoding of one file: empty path, one byte each for state and
/// place, no extents, no anchors.
const MIN_FILE_LEN: usize = 2 + 8 + 1 + 8 + 1 + 4 + 2;
const EXTENT_LEN: usize = 24;

/// State byte of a file.
pub const STATE_WRITING: u8 = 0;
pub const STATE_TERMINATED: u8 = 1;
pub const STATE_ATOMIC: u8 = 2;

/// Where one file's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImagePlace<'a> {
    /// Runs in container files: `len / 24` triples `(file_no, offset, len)`.
    Container(&'a [u8]),
    Segment {
        export_no: u64,
        offset: u64,
    },
}

/// One file of the image, borrowing the image's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageFile<'a> {
    pub path: &'a str,
    pub id: u64,
    pub state: u8,
    pub len: u64,
    pub place: ImagePlace<'a>,
    /// `len / 8` container file numbers.
    pub anchors: &'a [u8],
}

impl<'a> ImageFile<'a> {
    /// The container runs, `(file_no, offset, len)`.
    pub fn extents(&self) -> impl Iterator<Item = (u64, u64, u64)> + 'a {
        let raw: &'a [u8] = match self.place {
            ImagePlace::Container(raw) => raw,
            ImagePlace::Segment { .. } => &[],
        };
        raw.chunks_exact(EXTENT_LEN)
            .map(|c| (u64_at(c, 0), u64_at(c, 8), u64_at(c, 16)))
    }

    pub fn anchors(&self) -> impl Iterator<Item = u64> + 'a {
        let raw: &'a [u8] = self.anchors;
        raw.chunks_exact(8).map(|c| u64_at(c, 0))
    }
}

/// Where a file being written to an image is: its container runs
/// `(file_no, offset, len)`, or `(export_no, offset)` in a segment file.
pub type PlaceToWrite<'a> = Result<&'a [(u64, u64, u64)], (u64, u64)>;

/// Builds an image: [`ImageWriter::namespace`] then that many
/// [`ImageWriter::file`] calls, for each namespace.
pub struct ImageWriter {
    out: Vec<u8>,
}

impl ImageWriter {
    pub fn new(next_file_id: u64, logged_segments: &[u64], size_hint: usize) -> ImageWriter {
        let mut out = Vec::with_capacity(size_hint + 32 + logged_segments.len() * 8);
        out.extend_from_slice(IMAGE_MAGIC);
        out.extend_from_slice(&IMAGE_VERSION.to_le_bytes());
        out.extend_from_slice(&next_file_id.to_le_bytes());
        out.extend_from_slice(&(logged_segments.len() as u32).to_le_bytes());
        for n in logged_segments {
            out.extend_from_slice(&n.to_le_bytes());
        }
        ImageWriter { out }
    }

    /// Starts the namespace section count (call once, before the first
    /// namespace).
    pub fn namespaces(&mut self, count: u32) {
        self.out.extend_from_slice(&count.to_le_bytes());
    }

    pub fn namespace(&mut self, ns: &str, files: u32) {
        put_str(&mut self.out, ns);
        self.out.extend_from_slice(&files.to_le_bytes());
    }

    /// One file; `extents` only for a file in the container.
    pub fn file(
        &mut self,
        path: &str,
        id: u64,
        state: u8,
        len: u64,
        place: PlaceToWrite<'_>,
        anchors: &[u64],
    ) {
        let out = &mut self.out;
        put_str(out, path);
        out.extend_from_slice(&id.to_le_bytes());
        out.push(state);
        out.extend_from_slice(&len.to_le_bytes());
        match place {
            Ok(extents) => {
                out.push(0);
                out.extend_from_slice(&(extents.len() as u32).to_le_bytes());
                for (f, o, l) in extents {
                    out.extend_from_slice(&f.to_le_bytes());
                    out.extend_from_slice(&o.to_le_bytes());
                    out.extend_from_slice(&l.to_le_bytes());
                }
            }
            Err((export_no, offset)) => {
                out.push(1);
                out.extend_from_slice(&export_no.to_le_bytes());
                out.extend_from_slice(&offset.to_le_bytes());
            }
        }
        out.extend_from_slice(&(anchors.len() as u16).to_le_bytes());
        for a in anchors {
            out.extend_from_slice(&a.to_le_bytes());
        }
    }

    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() <= MAX_NAME_LEN, "name too long");
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// What an image says besides its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageHead {
    pub next_file_id: u64,
    pub logged_segments: Vec<u64>,
    /// Files in the image (for sizing the table).
    pub files_hint: usize,
}

/// Decodes an image, handing each file to `visit` with its namespace. Every
/// count is checked against the bytes left; bytes past the last file are an
/// error.
pub fn decode_image<'a>(
    b: &'a [u8],
    mut visit: impl FnMut(&'a str, ImageFile<'a>) -> Result<(), DecodeError>,
) -> Result<ImageHead, DecodeError> {
    let mut r = Reader::new(b);
    if r.take(4)? != IMAGE_MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = r.u32()?;
    if version != IMAGE_VERSION {
        return Err(DecodeError::Version {
            expected: IMAGE_VERSION,
            got: version,
        });
    }
    let next_file_id = r.u64()?;
    debug_assert_eq!(r.pos(), OFF_SEGMENTS);
    let n = r.u32()? as usize;
    if n > (b.len() - r.pos()) / 8 {
        return Err(DecodeError::LengthOutOfBounds(n as u64));
    }
    let mut logged_segments = Vec::with_capacity(n);
    for _ in 0..n {
        let no = r.u64()?;
        if no > MAX_FILE_NO {
            return Err(DecodeError::LengthOutOfBounds(no));
        }
        logged_segments.push(no);
    }
    let namespaces = r.u32()? as usize;
    if namespaces > (b.len() - r.pos()) / 6 {
        return Err(DecodeError::LengthOutOfBounds(namespaces as u64));
    }
    let files_hint = (b.len() - r.pos()) / 64;
    for _ in 0..namespaces {
        let ns = r.str(MAX_NAME_LEN)?;
        let files = r.u32()? as usize;
        if files > (b.len() - r.pos()) / MIN_FILE_LEN {
            return Err(DecodeError::LengthOutOfBounds(files as u64));
        }
        for _ in 0..files {
            let path = r.str(MAX_NAME_LEN)?;
            let id = r.u64()?;
            if id >= next_file_id {
                return Err(DecodeError::LengthOutOfBounds(id));
            }
            let state = r.take(1)?[0];
            if state > STATE_ATOMIC {
                return Err(DecodeError::BadKind(state));
            }
            let len = r.u64()?;
            let place = match r.take(1)?[0] {
                0 => {
                    let x = r.u32()? as usize;
                    let raw = r.take(x.checked_mul(EXTENT_LEN).ok_or(DecodeError::Truncated)?)?;
                    ImagePlace::Container(raw)
                }
                1 => ImagePlace::Segment {
                    export_no: r.u64()?,
                    offset: r.u64()?,
                },
                other => return Err(DecodeError::BadKind(other)),
            };
            let a = u16::from_le_bytes(r.take(2)?.try_into().expect("two bytes")) as usize;
            let anchors = r.take(a * 8)?;
            let file = ImageFile {
                path,
                id,
                state,
                len,
                place,
                anchors,
            };
            if let ImagePlace::Segment { export_no, .. } = place {
                if export_no > MAX_FILE_NO {
                    return Err(DecodeError::LengthOutOfBounds(export_no));
                }
            }
            if file.anchors().any(|n| n > MAX_FILE_NO)
                || file.extents().any(|(f, _, _)| f > MAX_FILE_NO)
            {
                return Err(DecodeError::LengthOutOfBounds(MAX_FILE_NO + 1));
            }
            // The extents add up to the length (a file in the container).
            if let ImagePlace::Container(_) = place {
                let sum = file
                    .extents()
                    .try_fold(0u64, |s, (_, _, l)| s.checked_add(l));
                if sum != Some(len) {
                    return Err(DecodeError::LengthOutOfBounds(len));
                }
            }
            visit(ns, file)?;
        }
    }
    if r.pos() != b.len() {
        return Err(DecodeError::LengthOutOfBounds(b.len() as u64));
    }
    Ok(ImageHead {
        next_file_id,
        logged_segments,
        files_hint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = ImageWriter::new(10, &[3, 4], 0);
        w.namespaces(2);
        w.namespace("", 2);
        w.file(
            "a.idx",
            1,
            STATE_TERMINATED,
            30,
            Ok(&[(0, 100, 10), (1, 64, 20)]),
            &[0, 1],
        );
        w.file("meta.json", 9, STATE_ATOMIC, 5, Ok(&[(1, 300, 5)]), &[1]);
        w.namespace("t1", 1);
        w.file("b.store", 4, STATE_TERMINATED, 77, Err((3, 4096)), &[1]);
        w.finish()
    }

    #[test]
    fn an_image_decodes_to_what_was_written() {
        let b = sample();
        let mut seen = Vec::new();
        let head = decode_image(&b, |ns, f| {
            seen.push((
                ns.to_string(),
                f.path.to_string(),
                f.id,
                f.state,
                f.len,
                f.extents().collect::<Vec<_>>(),
                f.anchors().collect::<Vec<_>>(),
                matches!(
                    f.place,
                    ImagePlace::Segment {
                        export_no: 3,
                        offset: 4096
                    }
                ),
            ));
            Ok(())
        })
        .unwrap();
        assert_eq!(head.next_file_id, 10);
        assert_eq!(head.logged_segments, vec![3, 4]);
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].5, vec![(0, 100, 10), (1, 64, 20)]);
        assert_eq!(seen[0].6, vec![0, 1]);
        assert_eq!((seen[2].0.as_str(), seen[2].7), ("t1", true));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error_or_a_valid_image() {
        let b = sample();
        for cut in 0..b.len() {
            assert!(
                decode_image(&b[..cut], |_, _| Ok(())).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(decode_image(&longer, |_, _| Ok(())).is_err());
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut m = b.clone();
                m[i] ^= 1 << bit;
                // Must not panic; either an error or an image that decodes.
                let _ = decode_image(&m, |_, _| Ok(()));
            }
        }
    }

    #[test]
    fn huge_counts_are_refused_before_allocation() {
        let mut b = sample();
        b[OFF_SEGMENTS..OFF_SEGMENTS + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_image(&b, |_, _| Ok(())),
            Err(DecodeError::LengthOutOfBounds(_))
        ));
    }
}
