//! Recovery: opening a container is replaying it.
//!
//! Every container file but the last was sealed (truncated to its last record and
//! synced) before the next one was created, so damage anywhere in them is
//! corruption. In the last file the first record that does not verify marks the
//! end of the log, unless a later record proves that the bad bytes had been made
//! durable (its `durable` field is past them): then it is damage, reported with
//! file and offset, never silently cut. A torn tail is cut off (the file truncated
//! and synced) so that stale frames past it can never be mistaken for new ones.
//! Sequence numbers must increase by exactly one, across files too.

use std::path::Path;
use std::sync::Arc;

use crate::container::ContainerOptions;
use crate::error::{DecodeError, Error, Result};
use crate::format::file_header::{
    container_file_name, log_position, parse_container_file_name, FileHeader, FILE_HEADER_LEN,
};
use crate::format::record::{self, framed_len, Payload, ALIGN, HEADER_LEN};
use crate::io::{ReadView, Storage, StorageFile};
use crate::policy::SyncPolicy;

/// One verified record handed to the file table during replay.
pub(crate) struct RecordRef<'a> {
    pub payload: Payload<'a>,
    /// Where the payload's file bytes are (for `Data` and `AtomicWrite`).
    pub extent: Option<super::Extent>,
}

pub(super) struct Recovered {
    pub files: Vec<(u64, Arc<dyn ReadView>, u64)>,
    pub active_file: Arc<dyn StorageFile>,
    pub active_no: u64,
    pub active_end: u64,
    pub next_seq: u64,
}

/// Files of other kinds that jocky may leave in its folder.
fn is_ours(name: &str) -> bool {
    parse_container_file_name(name).is_some()
}

enum ScanEnd {
    /// The records stop cleanly at the end of the file or at zeros.
    Clean,
    /// The bytes at the end offset are not a valid next record.
    Bad(DecodeError),
}

pub(super) fn recover(
    storage: &dyn Storage,
    root: &Path,
    opts: &ContainerOptions,
    apply: &mut dyn FnMut(super::RecordRef<'_>) -> std::result::Result<(), String>,
) -> Result<Recovered> {
    let names = storage.list().map_err(|e| Error::io(root, e))?;
    if let Some(foreign) = names.iter().find(|n| !is_ours(n)) {
        return Err(Error::ForeignData {
            path: root.to_path_buf(),
            example: foreign.clone(),
        });
    }
    let mut numbers: Vec<u64> = names
        .iter()
        .filter_map(|n| parse_container_file_name(n))
        .collect();
    numbers.sort_unstable();
    for (i, no) in numbers.iter().enumerate() {
        if *no != numbers[0] + i as u64 {
            let missing = numbers[0] + i as u64;
            return Err(Error::Corrupted {
                file: root.join(container_file_name(missing)),
                offset: 0,
                reason: "container file missing from the sequence".into(),
            });
        }
    }

    let mut files = Vec::new();
    let mut next_seq: Option<u64> = None;
    let mut active: Option<(Arc<dyn StorageFile>, u64, u64)> = None;
    let count = numbers.len();
    for (i, &no) in numbers.iter().enumerate() {
        let is_last = i + 1 == count;
        let path = root.join(container_file_name(no));
        let file = storage
            .open(&container_file_name(no))
            .map_err(|e| Error::io(&path, e))?;
        let len = file.len().map_err(|e| Error::io(&path, e))?;
        let mut head = vec![0u8; FILE_HEADER_LEN.min(len as usize)];
        file.read_at(0, &mut head)
            .map_err(|e| Error::io(&path, e))?;
        let header = match FileHeader::decode(&head) {
            Ok(h) => h,
            Err(e) => {
                // A last file whose header never became durable is a rotation (or
                // first creation) cut short: the header is partly written (each
                // byte zero or what we would have written) and nothing follows.
                let expected = FileHeader {
                    file_no: no,
                    first_sequence: next_seq.unwrap_or(1),
                    capacity: opts.file_capacity,
                };
                if is_last && is_torn_creation(&*file, len, &expected) {
                    log::warn!(
                        "removing {} (creation cut short by a crash)",
                        path.display()
                    );
                    drop(file);
                    storage
                        .remove(&container_file_name(no))
                        .map_err(|e| Error::io(&path, e))?;
                    break;
                }
                return Err(Error::decode(&path, 0, e));
            }
        };
        if header.file_no != no {
            return Err(Error::Corrupted {
                file: path,
                offset: 16,
                reason: format!("header says file number {}", header.file_no),
            });
        }
        if let Some(expected) = next_seq {
            if header.first_sequence != expected {
                return Err(Error::Corrupted {
                    file: path,
                    offset: 24,
                    reason: format!(
                        "first sequence {} but the previous file ended before {expected}: records were lost",
                        header.first_sequence
                    ),
                });
            }
        }
        if len > header.capacity {
            return Err(Error::Corrupted {
                file: path,
                offset: header.capacity,
                reason: format!("file is {len} bytes, more than its capacity"),
            });
        }
        let view = file
            .view(header.capacity)
            .map_err(|e| Error::io(&path, e))?;
        let mut seq = header.first_sequence;
        let (end, how) = scan(&*view, no, len, &mut seq, &path, apply)?;
        next_seq = Some(seq);
        match how {
            ScanEnd::Clean => {}
            ScanEnd::Bad(e) if !is_last => {
                if !is_zero(&*view, end, len) {
                    return Err(Error::decode(&path, end, e));
                }
            }
            ScanEnd::Bad(e) => {
                if durable_past(&*view, no, end, len, seq) {
                    return Err(Error::decode(&path, end, e));
                }
                log::info!(
                    "cutting a torn tail of {} bytes off {}",
                    len - end,
                    path.display()
                );
            }
        }
        if is_last {
            if len > end {
                file.truncate(end).map_err(|e| Error::io(&path, e))?;
            }
            if opts.sync != SyncPolicy::Never {
                file.sync_data().map_err(|e| Error::io(&path, e))?;
            }
            active = Some((file, no, end));
        }
        files.push((no, view, end));
    }

    let (active_file, active_no, active_end) = match active {
        Some(a) => a,
        None => {
            // Nothing usable yet: start the log (or the file a crash cut short).
            let no = numbers.last().copied().unwrap_or(0);
            let header = FileHeader {
                file_no: no,
                first_sequence: next_seq.unwrap_or(1),
                capacity: opts.file_capacity,
            };
            let (file, view) = super::create_file(storage, &header, opts.grow_step, opts.sync)
                .map_err(|e| Error::io(root.join(container_file_name(no)), e))?;
            files.push((no, view, FILE_HEADER_LEN as u64));
            (file, no, FILE_HEADER_LEN as u64)
        }
    };
    Ok(Recovered {
        files,
        active_file,
        active_no,
        active_end,
        next_seq: next_seq.unwrap_or(1),
    })
}

/// Replays the records of one file. Returns where they end and why.
fn scan(
    view: &dyn ReadView,
    file_no: u64,
    len: u64,
    seq: &mut u64,
    path: &Path,
    apply: &mut dyn FnMut(super::RecordRef<'_>) -> std::result::Result<(), String>,
) -> Result<(u64, ScanEnd)> {
    let mut pos = FILE_HEADER_LEN as u64;
    loop {
        if pos + HEADER_LEN as u64 > len {
            return Ok((pos, ScanEnd::Clean));
        }
        let head = view
            .read(pos..pos + HEADER_LEN as u64)
            .map_err(|e| Error::io(path, e))?;
        if head.as_slice().iter().all(|b| *b == 0) {
            return Ok((pos, ScanEnd::Bad(DecodeError::BadMagic)));
        }
        let header = match record::decode_header(head.as_slice()) {
            Ok(h) => h,
            Err(e) => return Ok((pos, ScanEnd::Bad(e))),
        };
        let framed = framed_len(header.len as usize);
        if framed > len - pos {
            return Ok((pos, ScanEnd::Bad(DecodeError::Truncated)));
        }
        let rec = view
            .read(pos..pos + HEADER_LEN as u64 + header.len as u64)
            .map_err(|e| Error::io(path, e))?;
        if let Err(e) = record::verify(rec.as_slice(), &header) {
            return Ok((pos, ScanEnd::Bad(e)));
        }
        if header.sequence != *seq {
            return Ok((
                pos,
                ScanEnd::Bad(DecodeError::Sequence {
                    expected: *seq,
                    got: header.sequence,
                }),
            ));
        }
        let payload = record::decode_payload(header.kind, &rec.as_slice()[HEADER_LEN..])
            .map_err(|e| Error::decode(path, pos, e))?;
        let extent = payload.bytes_offset_in_payload().map(|off| super::Extent {
            file_no,
            offset: pos + (HEADER_LEN + off) as u64,
            len: (header.len as usize - off) as u64,
        });
        apply(RecordRef { payload, extent }).map_err(|reason| Error::Corrupted {
            file: path.to_path_buf(),
            offset: pos,
            reason,
        })?;
        *seq += 1;
        pos += framed;
    }
}

fn is_zero(view: &dyn ReadView, from: u64, to: u64) -> bool {
    to <= from
        || view
            .read(from..to)
            .map(|b| b.as_slice().iter().all(|x| *x == 0))
            .unwrap_or(false)
}

/// Whether some valid record after `bad` (with a sequence number past the replayed
/// ones) says the bytes at `bad` had been made durable before it was written.
fn durable_past(view: &dyn ReadView, file_no: u64, bad: u64, len: u64, next_seq: u64) -> bool {
    let bad_pos = log_position(file_no, bad);
    find_records(view, bad + ALIGN, len, next_seq, |h| h.durable > bad_pos)
}

/// Whether a file holds nothing but a partly written `expected` header.
fn is_torn_creation(file: &dyn StorageFile, len: u64, expected: &FileHeader) -> bool {
    let Ok(view) = file.view(len.max(1)) else {
        return false;
    };
    let Ok(bytes) = view.read(0..len) else {
        return false;
    };
    let want = expected.encode();
    bytes
        .as_slice()
        .iter()
        .enumerate()
        .all(|(i, b)| *b == 0 || want.get(i) == Some(b))
}

/// Looks at every aligned offset in `from..len` for a record that verifies, has a
/// sequence number of at least `min_seq`, and satisfies `pred`.
fn find_records(
    view: &dyn ReadView,
    from: u64,
    len: u64,
    min_seq: u64,
    pred: impl Fn(&record::Header) -> bool,
) -> bool {
    let Ok(bytes) = view.read(0..len) else {
        return false;
    };
    let bytes = bytes.as_slice();
    let mut pos = from.div_ceil(ALIGN) * ALIGN;
    while pos + HEADER_LEN as u64 <= len {
        let b = &bytes[pos as usize..];
        if let Ok(h) = record::decode_header(b) {
            if h.sequence >= min_seq
                && framed_len(h.len as usize) <= len - pos
                && record::verify(b, &h).is_ok()
                && pred(&h)
            {
                return true;
            }
        }
        pos += ALIGN;
    }
    false
}
