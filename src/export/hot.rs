//! Hot ranges: what tantivy reads when it opens a segment, found by opening it.
//!
//! Before a segment is exported, its files (still in the container, fresh in
//! the page cache) are opened the way a searcher does — `SegmentReader::open`,
//! every indexed field's inverted index (term dictionary), every field's
//! fieldnorms, the doc store's reader — through a read-only directory that
//! records each range tantivy asks for. The ranges go into the segment file's
//! table; [`crate::JockyDirectory::prefetch`] reads them ahead after an open,
//! all at once, instead of one page fault at a time. (Quickwit's hotcache does
//! the same for remote splits; this is the local version.)
//!
//! Prefetching is a hint (`MADV_WILLNEED`): it returns once the reads are
//! queued; a query that comes before they finish waits for its pages as it
//! would have anyway.
//!
//! Recording is best effort: a segment tantivy cannot open (it was merged away
//! meanwhile, or is not a segment at all) simply has no hot ranges. Its files
//! are checked against tantivy's own footer checksums first: bytes jocky
//! vouches for can still be garbage to tantivy (damage that came in through
//! the API, or crafted to pass jocky's CRCs), and tantivy asserts rather than
//! errs on some of it — such a segment is not opened at all. A panic inside
//! tantivy on what the checksums cannot see is caught and logged.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ownedbytes::OwnedBytes;
use tantivy::directory::error::{DeleteError, OpenReadError, OpenWriteError};
use tantivy::directory::footer::Footer;
use tantivy::directory::{FileHandle, FileSlice, WatchCallback, WatchHandle, WritePtr};
use tantivy::{Directory, HasLen, Index, SegmentReader};

use crate::engine::Engine;
use crate::export::build::{crcs_fit, FileCrcs};
use crate::format::segment_file::{blocks_hasher, HotRange, BLOCK_LOG2, MAX_HOT};
use crate::sync::lock;
use crate::table::Location;

/// What one call to [`crate::JockyDirectory::prefetch`] asked the kernel to
/// read ahead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrefetchReport {
    /// Segment files whose hot ranges were read ahead.
    pub segment_files: usize,
    /// Hot ranges read ahead in them.
    pub hot_ranges: usize,
    /// Bytes of those ranges.
    pub hot_bytes: u64,
    /// Files still in the container (small segments, `.del`, `meta.json`),
    /// read ahead whole.
    pub container_files: usize,
    /// Their bytes.
    pub container_bytes: u64,
}

/// Reads ahead what namespace `ns` will read first: the hot ranges of its
/// segment files, and its files still in the container whole.
pub(crate) fn prefetch(engine: &Engine, ns: &str) -> crate::Result<PrefetchReport> {
    engine.ensure_ns(ns)?;
    let mut report = PrefetchReport::default();
    let mut segment_files = std::collections::BTreeSet::new();
    let files = engine.table().with_prefix(ns, "");
    for (_, e) in files {
        match &e.loc {
            Location::Segment { export_no, .. } => {
                segment_files.insert(*export_no);
            }
            Location::Container(extents)
            | Location::Placed {
                prefix: extents, ..
            } => {
                engine.container().prefetch(extents);
                report.container_files += 1;
                report.container_bytes += e.len;
            }
        }
    }
    for no in segment_files {
        let (ranges, bytes) = engine.segments().prefetch(no);
        report.segment_files += 1;
        report.hot_ranges += ranges;
        report.hot_bytes += bytes;
    }
    Ok(report)
}

/// `(path, range within the file)` as tantivy asked for it.
type Reads = Arc<Mutex<Vec<(String, Range<usize>)>>>;

/// The hot ranges of the files `paths` (sorted; the entries of the segment
/// file to be) of segment `segment_id` in namespace `ns`, merged where they
/// touch or overlap.
/// `known`: the CRCs the writers of files built in place computed, by file
/// id (their footers are checked without reading the files again).
pub(crate) fn record(
    engine: &Engine,
    ns: &str,
    segment_id: &str,
    paths: &[&str],
    known: &HashMap<u64, FileCrcs>,
) -> Vec<HotRange> {
    let Some((dir, ids)) = RecordingDirectory::capture(engine, ns, segment_id) else {
        return Vec::new();
    };
    let known = |path: &Path| ids.get(path).and_then(|id| known.get(id));
    let read = |n: usize| {
        crate::engine::MaintenanceCounters::add(&engine.counters().bytes_read_to_checksum, n as u64)
    };
    if let Err(why) = footers_match(&dir, known, read) {
        log::warn!("hot ranges of segment {segment_id} in {ns:?}: not recorded: {why}");
        return Vec::new();
    }
    let reads = dir.reads.clone();
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        open_like_a_searcher(dir, segment_id)
    }));
    match opened {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            log::debug!("hot ranges of segment {segment_id} in {ns:?}: not recorded: {e}");
            return Vec::new();
        }
        Err(_) => {
            log::warn!("hot ranges of segment {segment_id} in {ns:?}: tantivy panicked opening it");
            return Vec::new();
        }
    }
    let reads = std::mem::take(&mut *lock(&reads));
    merge(reads, paths)
}

/// Whether each file of the segment matches the CRC in its tantivy footer
/// (every file tantivy writes ends with one). Reads through the files' own
/// handles, not the recording ones: the whole files are not hot. One CRC pass
/// over bytes the export is about to copy, in the page cache; for a file
/// whose writer computed its block CRCs as it wrote (`known`: built in place,
/// where the export copies nothing and the bytes may have left the page
/// cache), the CRC is combined from them and only the last block is read.
fn footers_match<'a>(
    dir: &RecordingDirectory,
    known: impl Fn(&Path) -> Option<&'a FileCrcs>,
    read: impl Fn(usize),
) -> Result<(), String> {
    // tantivy's footer reader slices 8 bytes from the end unchecked.
    const FOOTER_TAIL: usize = 8;
    for (path, handle) in dir.files.iter() {
        let slice = FileSlice::new(handle.clone());
        if slice.len() < FOOTER_TAIL {
            return Err(format!(
                "{}: {} bytes, too short for a tantivy footer",
                path.display(),
                slice.len()
            ));
        }
        let blocks = known(path)
            .filter(|c| crcs_fit(c, slice.len() as u64))
            .map(|(_, blocks)| blocks);
        let (footer, body) =
            Footer::extract_footer(slice).map_err(|e| format!("{}: {e}", path.display()))?;
        let crc = match blocks {
            Some(blocks) => {
                let block = 1usize << BLOCK_LOG2;
                let whole = body.len() / block;
                let tail = body
                    .slice_from(whole * block)
                    .read_bytes()
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                read(tail.len());
                let mut h = blocks_hasher(&blocks[..whole], block as u64, 0);
                h.update(tail.as_slice());
                h.finalize()
            }
            None => {
                let bytes = body
                    .read_bytes()
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                read(bytes.len());
                crc32fast::hash(bytes.as_slice())
            }
        };
        if crc != footer.crc {
            return Err(format!(
                "{}: crc {crc:08x} of its bytes, its tantivy footer says {:08x}",
                path.display(),
                footer.crc
            ));
        }
    }
    Ok(())
}

/// What a searcher's first query on any field reads before postings.
fn open_like_a_searcher(dir: RecordingDirectory, segment_id: &str) -> tantivy::Result<()> {
    let index = Index::open(dir)?;
    let Some(meta) = index
        .searchable_segment_metas()?
        .into_iter()
        .find(|m| m.id().uuid_string() == segment_id)
    else {
        return Ok(());
    };
    let reader = SegmentReader::open(&index.segment(meta))?;
    let schema = index.schema();
    let mut stored = false;
    for (field, entry) in schema.fields() {
        if entry.is_indexed() {
            reader.inverted_index(field)?;
        }
        if entry.has_fieldnorms() {
            reader.get_fieldnorms_reader(field)?;
        }
        stored |= entry.is_stored();
    }
    if stored {
        reader.get_store_reader(0)?;
    }
    Ok(())
}

/// Per file of `paths` (its index there), the ranges read, sorted and merged.
fn merge(mut reads: Vec<(String, Range<usize>)>, paths: &[&str]) -> Vec<HotRange> {
    reads.sort_by(|a, b| (&a.0, a.1.start).cmp(&(&b.0, b.1.start)));
    let mut out: Vec<HotRange> = Vec::new();
    let mut last: Option<(usize, u64)> = None; // (entry, end of the last range)
    for (path, r) in reads {
        if r.is_empty() {
            continue;
        }
        let Ok(entry) = paths.binary_search(&path.as_str()) else {
            continue;
        };
        let (start, end) = (r.start as u64, r.end as u64);
        match (last, out.last_mut()) {
            (Some((e, prev_end)), Some(h)) if e == entry && start <= prev_end => {
                let new_end = prev_end.max(end);
                h.len = new_end - h.offset;
                last = Some((entry, new_end));
            }
            _ => {
                if out.len() == MAX_HOT {
                    break;
                }
                out.push(HotRange {
                    entry: entry as u32,
                    offset: start,
                    len: end - start,
                });
                last = Some((entry, end));
            }
        }
    }
    out
}

/// A read-only view of one segment's files, `meta.json` and `.managed.json`
/// that records every range read.
#[derive(Clone)]
struct RecordingDirectory {
    files: Arc<HashMap<PathBuf, Arc<dyn FileHandle>>>,
    atomic: Arc<HashMap<PathBuf, Vec<u8>>>,
    reads: Reads,
}

impl RecordingDirectory {
    /// The directory, and the id of each of its segment's files.
    fn capture(
        engine: &Engine,
        ns: &str,
        segment_id: &str,
    ) -> Option<(RecordingDirectory, HashMap<PathBuf, u64>)> {
        let mut files = HashMap::new();
        let mut ids = HashMap::new();
        // The table's guard must go before `open_handle` takes it again.
        let paths = engine.table().with_prefix(ns, &format!("{segment_id}."));
        for (path, entry) in paths {
            let handle = engine.open_handle(ns, &path)?.ok()?;
            // The handle of the same file (not one written since).
            if engine.table().get(ns, &path).map(|e| e.id) != Some(entry.id) {
                return None;
            }
            ids.insert(PathBuf::from(&path), entry.id);
            files.insert(PathBuf::from(path), handle);
        }
        let mut atomic = HashMap::new();
        for name in [crate::policy::COMMIT_FILE, ".managed.json"] {
            let entry = engine.table().get(ns, name).cloned();
            if let Some(entry) = entry {
                atomic.insert(PathBuf::from(name), engine.read_whole(&entry).ok()?);
            }
        }
        Some((
            RecordingDirectory {
                files: Arc::new(files),
                atomic: Arc::new(atomic),
                reads: Reads::default(),
            },
            ids,
        ))
    }
}

impl fmt::Debug for RecordingDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingDirectory")
            .field("files", &self.files.len())
            .finish()
    }
}

fn read_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "recording hot ranges: read only",
    )
}

impl Directory for RecordingDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        let inner = self
            .files
            .get(path)
            .cloned()
            .ok_or_else(|| OpenReadError::FileDoesNotExist(path.to_path_buf()))?;
        Ok(Arc::new(RecordingHandle {
            inner,
            path: path.to_string_lossy().into_owned(),
            reads: self.reads.clone(),
        }))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        Err(DeleteError::IoError {
            io_error: Arc::new(read_only()),
            filepath: path.to_path_buf(),
        })
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        Ok(self.files.contains_key(path) || self.atomic.contains_key(path))
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        Err(OpenWriteError::wrap_io_error(
            read_only(),
            path.to_path_buf(),
        ))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.atomic
            .get(path)
            .cloned()
            .ok_or_else(|| OpenReadError::FileDoesNotExist(path.to_path_buf()))
    }

    fn atomic_write(&self, _path: &Path, _data: &[u8]) -> io::Result<()> {
        Err(read_only())
    }

    fn sync_directory(&self) -> io::Result<()> {
        Ok(())
    }

    fn watch(&self, _cb: WatchCallback) -> tantivy::Result<WatchHandle> {
        Ok(WatchHandle::empty())
    }
}

struct RecordingHandle {
    inner: Arc<dyn FileHandle>,
    path: String,
    reads: Reads,
}

impl fmt::Debug for RecordingHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingHandle")
            .field("path", &self.path)
            .finish()
    }
}

impl HasLen for RecordingHandle {
    fn len(&self) -> usize {
        self.inner.len()
    }
}

impl FileHandle for RecordingHandle {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        lock(&self.reads).push((self.path.clone(), range.clone()));
        self.inner.read_bytes(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_merge_per_file_and_skip_other_files() {
        let reads = vec![
            ("b.term".to_string(), 10..20),
            ("a.idx".to_string(), 100..104),
            ("b.term".to_string(), 0..5),
            ("b.term".to_string(), 15..30),
            ("b.term".to_string(), 30..31),
            ("c.del".to_string(), 0..8),
            ("a.idx".to_string(), 7..7),
        ];
        let got = merge(reads, &["a.idx", "b.term"]);
        let want = [(0, 100, 4), (1, 0, 5), (1, 10, 21)];
        let got: Vec<(u32, u64, u64)> = got.iter().map(|h| (h.entry, h.offset, h.len)).collect();
        assert_eq!(got, want);
    }
}
