//! Recovery: opening a container is replaying it.
//!
//! Every container file but the last was sealed (truncated to its last record and
//! synced) before the next one was created, so damage anywhere in them is
//! corruption. In the last file the first record that does not verify marks the
//! end of the log, unless a later record proves that the bad bytes had been made
//! durable (its `durable` field is past them): then it is damage, reported with
//! file and offset, never silently cut. A torn tail is cut off (the file truncated
//! and synced) so that stale frames past it can never be mistaken for new ones.
//! Sequence numbers must increase by exactly one, across files too (a sealed v3
//! file's last record, `Continued`, is written after its successor was created
//! with the next number: if a crash lost it, the successor starts one later).
//!
//! Recovery itself changes nothing in the folder: what it finds must be removed
//! or cut (a torn tail, a newest file whose creation never completed, files a
//! durable `Reclaim` declared dead) goes into an [`OpenPlan`] that the caller
//! carries out only after the whole folder checked out (segment files too).
//! Every entry of the plan names the durable evidence that allows it; see
//! `docs/format.md`, "What open may remove, and why".

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ownedbytes::OwnedBytes;

use crate::container::ContainerOptions;
use crate::error::{DecodeError, Error, Result};
use crate::format::file_header::{
    container_file_name, log_position, parse_container_file_name, FileHeader, FILE_HEADER_LEN,
    FORMAT_VERSION,
};
use crate::format::record::{self, framed_len, Payload, ALIGN, HEADER_LEN};
use crate::format::segment_file::{parse_segment_file_name, segment_file_name};

/// The first format version with `Snapshot` records.
const SNAPSHOT_SINCE: u32 = 4;
use crate::io::{ReadView, Storage, StorageFile};

/// One verified record handed to the file table during replay.
pub(crate) struct RecordRef<'a> {
    pub payload: Payload<'a>,
    /// Where the payload's file bytes are (for `Data` and `AtomicWrite`).
    pub extent: Option<super::Extent>,
    /// The container file holding the record.
    pub file_no: u64,
    /// Where the record starts in that file.
    pub offset: u64,
    /// Its sequence number.
    pub sequence: u64,
    /// For a `Snapshot` record: its image bytes, zero-copy (they stay mapped
    /// for the namespaces decoded later).
    pub image: Option<OwnedBytes>,
    /// A `Snapshot` record a replay that ignores snapshots must take all the
    /// same: the log has a gap (a container file reclaimed ahead of older
    /// ones) and replay starts after it, from this snapshot.
    pub base: bool,
}

pub(super) struct Recovered {
    pub files: Vec<(u64, Arc<dyn ReadView>, u64)>,
    pub active_file: Arc<dyn StorageFile>,
    pub active_no: u64,
    pub active_end: u64,
    /// Where records after the active file's header and checkpoint start.
    pub active_start: u64,
    pub active_version: u32,
    /// The newest file's capacity, from its header.
    pub active_capacity: u64,
    /// The newest file's last record is a `Seal`: nothing to seal until more
    /// is appended.
    pub active_sealed: bool,
    pub next_seq: u64,
    /// Segment files found in the folder (their numbers).
    pub segment_files: Vec<u64>,
    /// Container files older than the snapshot replay started from: mapped,
    /// their headers checked, their records not read.
    pub unchecked: Vec<u64>,
    /// Bytes of records replayed (from the snapshot on).
    pub replayed_bytes: u64,
    /// The container file whose snapshot replay started from, if any.
    pub snapshot_no: Option<u64>,
    pub plan: OpenPlan,
}

/// What recovery found must change in the folder, carried out by
/// `Container::finish_open` once the caller has checked everything else.
#[derive(Debug, Default)]
pub(crate) struct OpenPlan {
    /// Newest container files whose creation a crash cut short: no record in
    /// them verifies, their predecessor is present and does not end with the
    /// `Continued` record that is written once a creation completed.
    pub torn_creations: Vec<u64>,
    /// The tail of the newest file past its last record: `(file_no, end of
    /// the log, file length, records past the end that verify, torn)`; `torn`
    /// is false when it is only zeros (a reservation). No record past `end`
    /// says the bytes at `end` had been made durable.
    pub cut: Option<(u64, u64, u64, u64, bool)>,
    /// Container files that are not part of the log: a durable `Reclaim`
    /// record names them, or the newest checkpoint (written after such a
    /// record was made durable by sealing its file) leaves them out.
    pub reclaimed: Vec<u64>,
    /// The newest file is of an older format version: continue in a new file.
    pub upgrade: bool,
}

enum ScanEnd {
    /// The records stop cleanly at the end of the file or at zeros.
    Clean,
    /// The bytes at the end offset are not a valid next record.
    Bad(DecodeError),
}

/// What the newest container file says about the others.
struct Census {
    /// The files the log needs (from the newest checkpoint, minus reclaimed ones).
    expected: BTreeSet<u64>,
    /// Where records after the checkpoint start.
    start: u64,
}

/// Replays the log in `storage`. With `read_only`, a folder without a log is an
/// error (nothing is created) and a torn creation is only skipped.
pub(super) fn recover(
    storage: &dyn Storage,
    root: &Path,
    opts: &ContainerOptions,
    read_only: bool,
    apply: &mut dyn FnMut(super::RecordRef<'_>) -> std::result::Result<(), String>,
) -> Result<Recovered> {
    let names = storage.list().map_err(|e| Error::io(root, e))?;
    let mut numbers = Vec::new();
    let mut segment_files = Vec::new();
    for n in &names {
        if let Some(no) = parse_container_file_name(n) {
            numbers.push(no);
        } else if let Some(no) = parse_segment_file_name(n) {
            segment_files.push(no);
        } else {
            return Err(Error::ForeignData {
                path: root.to_path_buf(),
                example: n.clone(),
            });
        }
    }
    numbers.sort_unstable();
    segment_files.sort_unstable();

    // A newest file whose creation never became durable: nothing was appended
    // to it, and the one before it (sealed) is the end of the log. Removed
    // later, and only if its predecessor is here to take over.
    let memo = OpenMemo::default();
    let mut torn_creations = Vec::new();
    while let Some(&last) = numbers.last() {
        if !is_torn_creation(storage, root, last, opts, read_only, &memo)? {
            break;
        }
        numbers.pop();
        if numbers.is_empty()
            && last == 0
            && segment_files.is_empty()
            && torn_creations.is_empty()
            && !read_only
        {
            // A new folder whose very first file was cut short: it held nothing.
            let name = container_file_name(0);
            log::warn!("removing {} (creation cut short by a crash)", name);
            // Closed (and unmapped) before it goes.
            memo.last.borrow_mut().take();
            storage
                .remove(&name)
                .map_err(|e| Error::io(root.join(&name), e))?;
            return create_first(storage, root, opts, segment_files);
        }
        if last == 0 || numbers.last() != Some(&(last - 1)) {
            return Err(Error::Incomplete {
                path: root.join(container_file_name(last.saturating_sub(1))),
                reason: format!(
                    "is missing: {} was being created when the log stopped, and the file before it holds the log's end",
                    container_file_name(last)
                ),
            });
        }
        torn_creations.push(last);
    }
    let Some(&last) = numbers.last() else {
        if !segment_files.is_empty() {
            return Err(Error::Incomplete {
                path: root.to_path_buf(),
                reason: format!(
                    "holds {} segment file(s) ({}, ...) but no container file (jocky-*.log): the log that says what they hold is missing",
                    segment_files.len(),
                    segment_file_name(segment_files[0])
                ),
            });
        }
        if read_only {
            return Err(Error::Incomplete {
                path: root.to_path_buf(),
                reason:
                    "holds no container file (jocky-*.log): not a jocky folder, or not created yet"
                        .into(),
            });
        }
        return create_first(storage, root, opts, segment_files);
    };
    let census = take_census(storage, root, last, &numbers, read_only, &memo)?;
    let present: BTreeSet<u64> = numbers.iter().copied().collect();
    if let Some(missing) = census.expected.difference(&present).next() {
        return Err(Error::Corrupted {
            file: root.join(container_file_name(*missing)),
            offset: 0,
            reason: "container file missing: the log still needs it".into(),
        });
    }
    let leftovers: Vec<u64> = present.difference(&census.expected).copied().collect();
    // Replay starts at the newest file that begins with a whole snapshot: the
    // files before it are only mapped (the snapshot stands for their records).
    // A container file reclaimed ahead of older ones (dead, and older than a
    // snapshot; see `crate::reclaim`) leaves a gap inside the log, and no
    // replay may cross it: the records it held are gone. Replay then starts
    // from a whole snapshot after the newest gap — the oldest such one for a
    // full replay — or not at all.
    let gap = newest_gap(&census.expected);
    let after_gap: BTreeSet<u64> = census
        .expected
        .iter()
        .copied()
        .filter(|no| gap.is_none_or(|g| *no > g))
        .collect();
    let start_no = match (opts.full_replay, gap) {
        (true, None) => None,
        (full, _) => snapshot_start(storage, root, &after_gap, read_only, full, &memo)?,
    };
    if let (Some(g), None) = (gap, start_no) {
        let first = *after_gap
            .first()
            .expect("the newest file is after every gap");
        return Err(Error::Corrupted {
            file: root.join(container_file_name(first)),
            offset: FILE_HEADER_LEN as u64,
            reason: format!(
                "no whole snapshot in this or a later file, and {} was reclaimed ahead of older files: the log cannot be replayed across it",
                container_file_name(g)
            ),
        });
    }
    let base = if opts.full_replay { start_no } else { None };
    let (start_no, snapshot_end) = match start_no {
        Some((no, end)) => (Some(no), end),
        None => (None, 0),
    };
    let mut unchecked = Vec::new();
    let mut replayed_bytes = 0;

    let mut files = Vec::new();
    let mut next_seq: Option<(u64, u64)> = None; // (file_no, sequence after it)
    let mut prev_continued: Option<u64> = None;
    let mut active = None;
    let mut cut = None;
    for &no in &census.expected {
        let is_last = no == last;
        let path = root.join(container_file_name(no));
        let (file, len) = match memo.opened(no) {
            Some(opened) => opened,
            None => {
                let file = storage
                    .open(&container_file_name(no))
                    .map_err(|e| Error::io(&path, e))?;
                let len = file.len().map_err(|e| Error::io(&path, e))?;
                (file, len)
            }
        };
        let header = read_header(&*file, len).map_err(|e| Error::decode(&path, 0, e))?;
        if header.file_no != no {
            return Err(Error::Corrupted {
                file: path,
                offset: 16,
                reason: format!("header says file number {}", header.file_no),
            });
        }
        // Sequences continue across neighbouring files; a reclaimed file in
        // between leaves a gap the checkpoint accounts for. A v3 rotation
        // numbers the new file after the `Continued` record it then writes into
        // the old one; without that record (a crash came first) one number is
        // skipped.
        if let Some((prev, expected)) = next_seq {
            let skipped = prev_continued.is_none() && header.first_sequence == expected + 1;
            if prev + 1 == no && header.first_sequence != expected && !skipped {
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
        let map = file
            .view(header.capacity)
            .map_err(|e| Error::io(&path, e))?;
        if start_no.is_some_and(|start| no < start) {
            // Sealed before the snapshot was written: its bytes are served,
            // its records are not replayed (checked on first read or by
            // `verify`, see `VerifyPolicy`).
            unchecked.push(no);
            files.push((no, map, len));
            continue;
        }
        // What recovery reads to check records (the mapping serves file bytes).
        let view = scan_view(&file, &map, read_only).map_err(|e| Error::io(&path, e))?;
        let mut seq = header.first_sequence;
        let base = base.is_some_and(|(b, _)| b == no);
        let (end, how, continued, sealed) = scan(
            ScanFile {
                view: &*view,
                file_no: no,
                len,
                path: &path,
            },
            &mut seq,
            base,
            apply,
            &memo,
        )?;
        // What an open pays beyond the snapshot (not the image itself).
        replayed_bytes += if Some(no) == start_no {
            end.saturating_sub(snapshot_end)
        } else {
            end
        };
        next_seq = Some((no, seq));
        prev_continued = continued;
        match how {
            ScanEnd::Clean => {}
            ScanEnd::Bad(e) if !is_last => {
                // Beside a writer, a just-sealed file may be caught while its
                // `Continued` record is written: nothing valid after it.
                let being_sealed =
                    read_only && !find_records(&*view, end + ALIGN, len, 0, |_| true);
                if !is_zero(&*view, end, len) && !being_sealed {
                    return Err(Error::decode(&path, end, e));
                }
            }
            ScanEnd::Bad(e) => {
                // Beside a writer, the end of the newest file may be caught
                // mid-write (a later block already there): the readable log
                // ends here; only a writer's open judges damage.
                if !read_only && durable_past(&*view, no, end, len, seq) {
                    return Err(Error::decode(&path, end, e));
                }
            }
        }
        if is_last {
            if let Some(next) = continued {
                // Written only after file `next` was created and synced.
                let next_name = container_file_name(next);
                return Err(Error::Incomplete {
                    path: root.join(&next_name),
                    reason: if torn_creations.contains(&next) {
                        format!(
                            "is damaged at offset 0: {} says its creation had completed",
                            container_file_name(no)
                        )
                    } else {
                        format!(
                            "is missing: {} was sealed and the log continues in it",
                            container_file_name(no)
                        )
                    },
                });
            }
            if len > end {
                // Zeros only: the reservation of a file closed without its
                // trim (a killed process): given back, not a torn tail.
                let torn = !is_zero(&*view, end, len);
                let records = if torn {
                    count_records(&*view, end, len)
                } else {
                    0
                };
                cut = Some((no, end, len, records, torn));
            }
            active = Some((file, end, header.version, sealed, header.capacity));
        }
        files.push((no, map, end));
    }
    let (active_file, active_end, active_version, active_sealed, active_capacity) =
        active.expect("the newest file is always expected");
    // What the replay read (records, the snapshot's image) leaves this
    // process's RSS; the page cache keeps it for the reads that come (a
    // namespace decoded later from the image, tantivy's reads).
    for (_, view, end) in &files {
        view.unmap(0..*end);
    }
    Ok(Recovered {
        files,
        active_file,
        active_no: last,
        active_end,
        active_start: census.start.min(active_end),
        active_version,
        active_capacity,
        active_sealed,
        next_seq: next_seq.map(|(_, s)| s).unwrap_or(1),
        segment_files,
        unchecked,
        replayed_bytes,
        snapshot_no: start_no,
        plan: OpenPlan {
            torn_creations,
            cut,
            reclaimed: leftovers,
            upgrade: active_version < FORMAT_VERSION,
        },
    })
}

/// Starts a log in an empty folder.
fn create_first(
    storage: &dyn Storage,
    root: &Path,
    opts: &ContainerOptions,
    segment_files: Vec<u64>,
) -> Result<Recovered> {
    let header = FileHeader {
        version: FORMAT_VERSION,
        file_no: 0,
        first_sequence: 1,
        capacity: opts.file_capacity,
    };
    let (file, view, start) =
        super::create_file(storage, &header, &[], 1, &[], opts.grow_step, opts.sync)
            .map_err(|e| Error::io(root.join(container_file_name(0)), e))?;
    Ok(Recovered {
        files: vec![(0, view, start)],
        active_file: file,
        active_no: 0,
        active_end: start,
        active_start: start,
        active_version: FORMAT_VERSION,
        active_capacity: opts.file_capacity,
        active_sealed: false,
        next_seq: 2,
        segment_files,
        unchecked: Vec::new(),
        replayed_bytes: 0,
        snapshot_no: None,
        plan: OpenPlan::default(),
    })
}

fn read_header(file: &dyn StorageFile, len: u64) -> std::result::Result<FileHeader, DecodeError> {
    let mut head = vec![0u8; FILE_HEADER_LEN.min(len as usize)];
    file.read_at(0, &mut head)
        .map_err(|_| DecodeError::Truncated)?;
    FileHeader::decode(&head)
}

/// Whether the newest container file's creation (header and checkpoint, written
/// and synced together before anything else) never completed: its header is
/// torn or its checkpoint does not verify, and no record past the checkpoint
/// verifies either.
fn is_torn_creation(
    storage: &dyn Storage,
    root: &Path,
    no: u64,
    opts: &ContainerOptions,
    read_only: bool,
    memo: &OpenMemo,
) -> Result<bool> {
    let (_, _, file, len, view) = memo.open(storage, root, no, read_only)?;
    let torn = match read_header(&*file, len) {
        Ok(h) if h.version < FORMAT_VERSION => false,
        Ok(_) => {
            !starts_with_checkpoint(&*view, len)
                && !find_records(&*view, FILE_HEADER_LEN as u64 + ALIGN, len, 0, |_| true)
        }
        Err(_) => {
            let expected = FileHeader {
                version: FORMAT_VERSION,
                file_no: no,
                first_sequence: 0,
                capacity: opts.file_capacity,
            }
            .encode();
            let head = view.read(0..len.min(FILE_HEADER_LEN as u64)).ok();
            // Bytes 12..16 (crc) and 24..32 (first sequence) are not known here.
            head.is_some_and(|h| {
                h.as_slice().iter().enumerate().all(|(i, b)| {
                    *b == 0 || (12..16).contains(&i) || (24..32).contains(&i) || expected[i] == *b
                })
            }) && !find_records(&*view, FILE_HEADER_LEN as u64, len, 0, |_| true)
        }
    };
    Ok(torn)
}

/// What lies at `pos` of a container file.
enum Found {
    /// No room for another record header before `len`.
    End,
    /// Bytes that are not a valid record.
    Bad(DecodeError),
    /// A record whose header decodes and whose CRC verifies: the header, the
    /// record bytes (header and payload), and its framed length.
    Record(record::Header, OwnedBytes, u64),
}

/// What one open's passes over the log share. The torn-creation check, the
/// census and the snapshot search all read the newest file before the replay
/// does:
/// - the records verified, by place (large ones only): a snapshot image's
///   parts have their CRC computed once; a record whose header bytes (its CRC
///   among them) are those verified at the same place is taken as verified (a
///   record written anew at that place — beside a reader, a writer's recovery
///   cutting a torn tail and appending — has another CRC in its header);
/// - the container file opened last: opened and mapped once per open, not
///   three times. One file at a time, so an open holds no more descriptors
///   than before (the folder's lock and one file).
#[derive(Default)]
struct OpenMemo {
    /// Header bytes of the large records verified, by place.
    verified: RefCell<HashMap<(u64, u64), [u8; HEADER_LEN]>>,
    /// The container file opened last.
    last: RefCell<Option<(u64, Mapped)>>,
}

impl OpenMemo {
    /// [`open_mapped`]; the file opened last is not opened again.
    fn open(&self, storage: &dyn Storage, root: &Path, no: u64, read_only: bool) -> Result<Mapped> {
        let mut last = self.last.borrow_mut();
        match &*last {
            Some((n, m)) if *n == no => return Ok(m.clone()),
            // Closed before the next one opens.
            _ => *last = None,
        }
        let m = open_mapped(storage, root, no, read_only)?;
        *last = Some((no, m.clone()));
        Ok(m)
    }

    /// Hands file `no` and its length over to the replay if it was the file
    /// opened last; lets go of that file either way.
    fn opened(&self, no: u64) -> Option<(Arc<dyn StorageFile>, u64)> {
        match self.last.borrow_mut().take() {
            Some((n, (_, _, f, len, _))) if n == no => Some((f, len)),
            _ => None,
        }
    }
}

/// Records shorter than this are verified each time they are read (cheaper
/// than remembering them).
const REMEMBER_FROM: u32 = 64 << 10;

/// Where a record is: container file and offset.
#[derive(Clone, Copy)]
struct At {
    file_no: u64,
    pos: u64,
}

/// Reads and verifies the record at `at`; the one place recovery decodes a
/// record's framing.
fn read_record(view: &dyn ReadView, at: At, len: u64, memo: &OpenMemo) -> std::io::Result<Found> {
    let pos = at.pos;
    if pos + HEADER_LEN as u64 > len {
        return Ok(Found::End);
    }
    // A file cut shorter meanwhile (a reader beside a writer): the end.
    let short = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Ok(Found::Bad(DecodeError::Truncated)),
        _ => Err(e),
    };
    let head = match view.read(pos..pos + HEADER_LEN as u64) {
        Ok(b) => b,
        Err(e) => return short(e),
    };
    let header = match record::decode_header(head.as_slice()) {
        Ok(h) => h,
        Err(e) => return Ok(Found::Bad(e)),
    };
    let framed = framed_len(header.len as usize);
    if framed > len - pos {
        return Ok(Found::Bad(DecodeError::Truncated));
    }
    let rec = match view.read(pos..pos + HEADER_LEN as u64 + header.len as u64) {
        Ok(b) => b,
        Err(e) => return short(e),
    };
    // Only large records are remembered: their header bytes, by place.
    let remembered = (header.len >= REMEMBER_FROM).then(|| {
        let mut head_bytes = [0u8; HEADER_LEN];
        head_bytes.copy_from_slice(&head.as_slice()[..HEADER_LEN]);
        ((at.file_no, pos), head_bytes)
    });
    let seen = remembered
        .as_ref()
        .is_some_and(|(key, bytes)| memo.verified.borrow().get(key) == Some(bytes));
    if !seen {
        if let Err(e) = record::verify(rec.as_slice(), &header) {
            return Ok(Found::Bad(e));
        }
        if let Some((key, bytes)) = remembered {
            memo.verified.borrow_mut().insert(key, bytes);
        }
    }
    Ok(Found::Record(header, rec, framed))
}

/// Whether the first record of a file verifies and is a checkpoint.
fn starts_with_checkpoint(view: &dyn ReadView, len: u64) -> bool {
    matches!(
        read_record(
            view,
            At {
                file_no: 0,
                pos: FILE_HEADER_LEN as u64
            },
            len,
            &OpenMemo::default()
        ),
        Ok(Found::Record(h, _, _)) if h.kind == record::RecordKind::Checkpoint
    )
}

/// A mapped container file: name, path, file, length and view.
type Mapped = (
    String,
    PathBuf,
    Arc<dyn StorageFile>,
    u64,
    Arc<dyn ReadView>,
);

/// Opens container file `no` and maps what it holds (`read_only`: reads it
/// with `pread` instead, see [`pread_view`]).
fn open_mapped(storage: &dyn Storage, root: &Path, no: u64, read_only: bool) -> Result<Mapped> {
    let name = container_file_name(no);
    let path = root.join(&name);
    let file = storage.open(&name).map_err(|e| Error::io(&path, e))?;
    let len = file.len().map_err(|e| Error::io(&path, e))?;
    let view = if read_only {
        pread_view(&file)
    } else {
        let map = file
            .view(len.max(FILE_HEADER_LEN as u64))
            .map_err(|e| Error::io(&path, e))?;
        scan_view(&file, &map, false).map_err(|e| Error::io(&path, e))?
    };
    Ok((name, path, file, len, view))
}

/// What recovery reads a container file through: its mapping, but `pread`
/// beside a writer (see [`pread_view`]) and past the first hole of a file on
/// a tmpfs. A killed process leaves its reservation there as a hole (the file
/// grown, no memory behind it), and recovery reads it to find the end of the
/// log: through a mapping each page of it would take memory, and on a full
/// tmpfs the read would fault (SIGBUS: the process gone instead of an open).
fn scan_view(
    file: &Arc<dyn StorageFile>,
    map: &Arc<dyn ReadView>,
    read_only: bool,
) -> std::io::Result<Arc<dyn ReadView>> {
    if read_only {
        return Ok(pread_view(file));
    }
    let Some(mappable) = file.mappable_len()? else {
        return Ok(map.clone());
    };
    #[derive(Debug)]
    struct HoleSafe {
        map: Arc<dyn ReadView>,
        pread: Arc<dyn ReadView>,
        mappable: u64,
    }
    impl ReadView for HoleSafe {
        fn read(&self, range: std::ops::Range<u64>) -> std::io::Result<OwnedBytes> {
            if range.end <= self.mappable {
                self.map.read(range)
            } else {
                self.pread.read(range)
            }
        }
    }
    Ok(Arc::new(HoleSafe {
        map: map.clone(),
        pread: pread_view(file),
        mappable,
    }))
}

/// Reads through `pread` instead of a mapping. A reader beside a writer
/// process scans files the writer may truncate meanwhile (sealing gives back
/// the reservation past the last record): a read through a mapping past the
/// new end would fault (SIGBUS), `pread` just comes back short (an error, so
/// the scan ends there). Record bytes handed out later come from the mapping:
/// they lie before the last record, which no truncation ever cuts.
fn pread_view(file: &Arc<dyn StorageFile>) -> Arc<dyn ReadView> {
    #[derive(Debug)]
    struct Pread(Arc<dyn StorageFile>);
    impl ReadView for Pread {
        fn read(&self, range: std::ops::Range<u64>) -> std::io::Result<OwnedBytes> {
            // Callers bound every range by the file's length and the record
            // length bound before reading.
            let mut buf = vec![0u8; (range.end - range.start) as usize];
            self.0.read_at(range.start, &mut buf)?;
            Ok(OwnedBytes::new(buf))
        }
    }
    Arc::new(Pread(file.clone()))
}

/// Reads the newest file's checkpoint and `Reclaim` records: which container
/// files the log still needs.
fn take_census(
    storage: &dyn Storage,
    root: &Path,
    last: u64,
    present: &[u64],
    read_only: bool,
    memo: &OpenMemo,
) -> Result<Census> {
    let (_, path, file, len, view) = memo.open(storage, root, last, read_only)?;
    let mut expected: Option<BTreeSet<u64>> = None;
    let mut reclaimed = BTreeSet::new();
    let mut start = FILE_HEADER_LEN as u64;
    let mut pos = FILE_HEADER_LEN as u64;
    // The records the replay will take: up to the first one that does not
    // verify or does not continue the sequence (the main scan decides whether
    // what follows is a torn tail or damage). A record past that point must
    // not count here: the replay cuts it, and with it the evidence.
    let mut seq = read_header(&*file, len)
        .map(|h| h.first_sequence)
        .map_err(|e| Error::decode(&path, 0, e))?;
    while let Ok(Found::Record(h, rec, framed)) =
        read_record(&*view, At { file_no: last, pos }, len, memo)
    {
        if h.sequence != seq {
            break;
        }
        seq += 1;
        match record::decode_payload(h.kind, &rec.as_slice()[HEADER_LEN..]) {
            Ok(Payload::Checkpoint { files, .. }) if pos == FILE_HEADER_LEN as u64 => {
                let list =
                    record::decode_file_numbers(files).map_err(|e| Error::decode(&path, pos, e))?;
                expected = Some(list.into_iter().collect());
                start = pos + framed;
            }
            Ok(Payload::Reclaim { file_no }) => {
                reclaimed.insert(file_no);
            }
            Ok(_) => {}
            Err(_) => break,
        }
        pos += framed;
    }
    let mut expected = match expected {
        Some(set) => set,
        None => {
            // Format version 1: no checkpoint, files are numbered without gaps.
            for (i, no) in present.iter().enumerate() {
                if *no != present[0] + i as u64 {
                    return Err(Error::Corrupted {
                        file: root.join(container_file_name(present[0] + i as u64)),
                        offset: 0,
                        reason: "container file missing from the sequence".into(),
                    });
                }
            }
            present.iter().copied().collect()
        }
    };
    expected.insert(last);
    for no in reclaimed {
        if no != last {
            expected.remove(&no);
        }
    }
    Ok(Census { expected, start })
}

/// The newest of `files` whose first records (right after its checkpoint)
/// are a whole snapshot image: every part there, each verifying, in sequence.
/// Such a file was created with them in one synced write, so a torn snapshot
/// can only be the torn creation of the newest file (its tail is then cut and
/// an older snapshot, or a full replay, takes over). Returns the file and
/// where its snapshot ends; `None`: replay everything.
/// The newest container file number missing inside the log `files` needs
/// (between its oldest and newest file): a file reclaimed ahead of older ones.
fn newest_gap(files: &BTreeSet<u64>) -> Option<u64> {
    let mut newer = None;
    for &no in files.iter().rev() {
        if let Some(n) = newer {
            if no + 1 < n {
                return Some(n - 1);
            }
        }
        newer = Some(no);
    }
    None
}

fn snapshot_start(
    storage: &dyn Storage,
    root: &Path,
    files: &BTreeSet<u64>,
    read_only: bool,
    oldest: bool,
    memo: &OpenMemo,
) -> Result<Option<(u64, u64)>> {
    let mut order: Vec<u64> = files.iter().copied().collect();
    if !oldest {
        order.reverse();
    }
    for no in order {
        let (_, path, file, len, view) = memo.open(storage, root, no, read_only)?;
        let header = match read_header(&*file, len) {
            Ok(h) => h,
            // The main scan reports it (or it is the newest file's torn creation).
            Err(_) => continue,
        };
        if header.version < SNAPSHOT_SINCE {
            // No snapshot here; none in older files either.
            if oldest {
                continue;
            }
            return Ok(None);
        }
        let first = At {
            file_no: no,
            pos: FILE_HEADER_LEN as u64,
        };
        let Ok(Found::Record(h, _, framed)) = read_record(&*view, first, len, memo) else {
            continue;
        };
        if h.kind != record::RecordKind::Checkpoint || h.sequence != header.first_sequence {
            continue;
        }
        let mut pos = FILE_HEADER_LEN as u64 + framed;
        let mut seq = h.sequence + 1;
        let mut want = 0u32;
        let whole = loop {
            let at = At { file_no: no, pos };
            let Ok(Found::Record(h, rec, framed)) = read_record(&*view, at, len, memo) else {
                break false;
            };
            if h.kind != record::RecordKind::Snapshot || h.sequence != seq {
                break false;
            }
            match record::decode_payload(h.kind, &rec.as_slice()[HEADER_LEN..]) {
                Ok(Payload::Snapshot { part, parts, .. }) if part == want => {
                    if part + 1 == parts {
                        pos += framed;
                        break true;
                    }
                }
                Ok(_) => break false,
                Err(e) => return Err(Error::decode(&path, pos, e)),
            }
            want += 1;
            seq += 1;
            pos += framed;
        };
        if whole {
            return Ok(Some((no, pos)));
        }
    }
    Ok(None)
}

/// A container file [`scan`] replays: its view, number, length and path.
struct ScanFile<'a> {
    view: &'a dyn ReadView,
    file_no: u64,
    len: u64,
    path: &'a Path,
}

/// Replays the records of one file. Returns where they end, why, the next
/// file number if the last record is `Continued`, and whether it is a `Seal`.
fn scan(
    file: ScanFile<'_>,
    seq: &mut u64,
    base: bool,
    apply: &mut dyn FnMut(super::RecordRef<'_>) -> std::result::Result<(), String>,
    memo: &OpenMemo,
) -> Result<(u64, ScanEnd, Option<u64>, bool)> {
    let ScanFile {
        view,
        file_no,
        len,
        path,
    } = file;
    let mut pos = FILE_HEADER_LEN as u64;
    let mut continued = None;
    let mut sealed = false;
    loop {
        let (header, rec, framed) = match read_record(view, At { file_no, pos }, len, memo)
            .map_err(|e| Error::io(path, e))?
        {
            Found::End => return Ok((pos, ScanEnd::Clean, continued, sealed)),
            Found::Bad(e) => return Ok((pos, ScanEnd::Bad(e), continued, sealed)),
            Found::Record(h, rec, framed) => (h, rec, framed),
        };
        if header.sequence != *seq {
            return Ok((
                pos,
                ScanEnd::Bad(DecodeError::Sequence {
                    expected: *seq,
                    got: header.sequence,
                }),
                continued,
                sealed,
            ));
        }
        let payload = record::decode_payload(header.kind, &rec.as_slice()[HEADER_LEN..])
            .map_err(|e| Error::decode(path, pos, e))?;
        continued = match payload {
            Payload::Continued { next_file_no } => Some(next_file_no),
            _ => None,
        };
        // A `Seal` whose `durable` reaches its own start: every record before
        // it was durable before it was written.
        sealed = matches!(payload, Payload::Seal)
            && header.durable >= crate::format::file_header::log_position(file_no, pos);
        let extent = payload.bytes_offset_in_payload().map(|off| super::Extent {
            file_no,
            offset: pos + (HEADER_LEN + off) as u64,
            len: (header.len as usize - off) as u64,
        });
        let image = match payload {
            Payload::Snapshot { .. } => {
                Some(rec.slice(HEADER_LEN + 8..HEADER_LEN + header.len as usize))
            }
            _ => None,
        };
        apply(RecordRef {
            base: base && image.is_some(),
            image,
            payload,
            extent,
            file_no,
            offset: pos,
            sequence: header.sequence,
        })
        .map_err(|reason| Error::Corrupted {
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

/// How many records that verify lie at aligned offsets in `from..len` (the
/// size of a torn tail, for the report; zeros of a reservation count none).
fn count_records(view: &dyn ReadView, from: u64, len: u64) -> u64 {
    let mut n = 0;
    find_records(view, from, len, 0, |_| {
        n += 1;
        false
    });
    n
}

/// Looks at every aligned offset in `from..len` for a record that verifies, has a
/// sequence number of at least `min_seq`, and satisfies `pred`.
fn find_record(
    view: &dyn ReadView,
    from: u64,
    len: u64,
    min_seq: u64,
    mut pred: impl FnMut(&record::Header) -> bool,
) -> Option<u64> {
    let start = from.div_ceil(ALIGN) * ALIGN;
    if start >= len {
        return None;
    }
    let Ok(bytes) = view.read(start..len) else {
        return None;
    };
    let bytes = bytes.as_slice();
    let mut pos = start;
    while pos + HEADER_LEN as u64 <= len {
        let b = &bytes[(pos - start) as usize..];
        if let Ok(h) = record::decode_header(b) {
            if h.sequence >= min_seq
                && framed_len(h.len as usize) <= len - pos
                && record::verify(b, &h).is_ok()
                && pred(&h)
            {
                return Some(pos);
            }
        }
        pos += ALIGN;
    }
    None
}

/// Whether [`find_record`] finds one.
fn find_records(
    view: &dyn ReadView,
    from: u64,
    len: u64,
    min_seq: u64,
    pred: impl FnMut(&record::Header) -> bool,
) -> bool {
    find_record(view, from, len, min_seq, pred).is_some()
}

/// What [`check_all`] found.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    /// Records whose header and checksum verified.
    pub records: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Damaged places: file, offset, what.
    pub damage: Vec<(PathBuf, u64, String)>,
    /// Bytes at the end of the newest file that do not verify and are not
    /// followed by a record that does: a torn tail (or a writer mid-append).
    pub torn_tail: u64,
}

/// Checks every record of every container file in `storage`, with `pread`
/// (safe beside a writer), going on after damage: past a record that does
/// not verify, the next aligned offset where one does is where checking
/// resumes. For `jocky verify`: unlike replay, it finds every damaged place.
pub(crate) fn check_all(storage: &dyn Storage, root: &Path) -> Result<Checked> {
    let mut numbers: Vec<u64> = storage
        .list()
        .map_err(|e| Error::io(root, e))?
        .iter()
        .filter_map(|n| parse_container_file_name(n))
        .collect();
    numbers.sort_unstable();
    let mut out = Checked::default();
    let last = numbers.last().copied();
    for no in numbers {
        let (_, path, file, len, view) = match open_mapped(storage, root, no, true) {
            Ok(m) => m,
            Err(e) => {
                out.damage
                    .push((root.join(container_file_name(no)), 0, e.to_string()));
                continue;
            }
        };
        if let Err(e) = read_header(&*file, len) {
            out.damage.push((path, 0, format!("file header: {e}")));
            continue;
        }
        let mut pos = FILE_HEADER_LEN as u64;
        loop {
            let at = At { file_no: no, pos };
            match read_record(&*view, at, len, &OpenMemo::default())
                .map_err(|e| Error::io(&path, e))?
            {
                Found::End => break,
                Found::Record(h, _, framed) => {
                    out.records += 1;
                    out.bytes += u64::from(h.len);
                    pos += framed;
                }
                Found::Bad(e) => {
                    if is_zero(&*view, pos, len) {
                        break; // the end of the records (a reservation)
                    }
                    match next_record(&*view, pos + ALIGN, len) {
                        Some(next) => {
                            out.damage.push((path.clone(), pos, e.to_string()));
                            pos = next;
                        }
                        None if Some(no) == last => {
                            out.torn_tail = len - pos;
                            break;
                        }
                        None => {
                            out.damage.push((path.clone(), pos, e.to_string()));
                            break;
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The first aligned offset in `from..len` holding a record that verifies.
fn next_record(view: &dyn ReadView, from: u64, len: u64) -> Option<u64> {
    find_record(view, from, len, 0, |_| true)
}
