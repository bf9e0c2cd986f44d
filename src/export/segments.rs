//! The exported segment files a container serves reads from: one read-only
//! mapping per file (its descriptor closed right after mapping), madvise per file
//! type (under `Advice::Blocks`, each 64 KiB block asked for once, when a read
//! first touches it), cheap validation on open (trailer + table) and explicit
//! verification (every file's CRC) on request.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use ownedbytes::OwnedBytes;
use tantivy::directory::FileHandle;

use crate::directory::ExtentsHandle;

use crate::error::{Error, Result};
use crate::format::segment_file::{
    decode_table, decode_trailer, segment_file_name, SegEntry, SegTable, MAX_TABLE_LEN, TRAILER_LEN,
};
use crate::io::{ReadView, Storage, StorageFile};
use crate::policy::{Advice, AdvicePolicy, VerifyPolicy, FETCH_WHOLE};

/// What is known of an exported file's bytes.
const UNCHECKED: u8 = 0;
const SOUND: u8 = 1;
const DAMAGED: u8 = 2;

/// What is known of the bytes of one segment file's files; shared with the
/// handles that read them (`super::handle`).
pub(crate) struct Checks {
    path: PathBuf,
    table: SegTable,
    /// The set's count of files found damaged.
    damaged_files: Arc<AtomicU64>,
    /// Per table entry: `UNCHECKED`, `SOUND` (whole file checked) or `DAMAGED`.
    entries: Box<[AtomicU8]>,
    /// Per block of every entry, in entry order: checked sound.
    blocks: Box<[AtomicBool]>,
    /// Per table entry: the index of its first block in `blocks`.
    first_block: Box<[usize]>,
    /// Per table entry: reads ask for their blocks ([`Advice::Blocks`]).
    fetch: Box<[bool]>,
    /// Per block of every entry, in entry order: asked for (`MADV_WILLNEED`).
    fetched: Box<[AtomicBool]>,
}

impl Checks {
    fn new(
        path: PathBuf,
        table: SegTable,
        damaged_files: Arc<AtomicU64>,
        advice: &AdvicePolicy,
    ) -> Checks {
        let mut first_block = Vec::with_capacity(table.entries.len());
        let mut n = 0;
        for e in &table.entries {
            first_block.push(n);
            n += e.block_crcs.len();
        }
        let fetch: Box<[bool]> = table
            .entries
            .iter()
            .map(|e| has_blocks(&table, e) && advice.advice_for(&e.path) == Advice::Blocks)
            .collect();
        let fetched = if fetch.iter().any(|f| *f) { n } else { 0 };
        Checks {
            fetch,
            fetched: (0..fetched).map(|_| AtomicBool::new(false)).collect(),
            path,
            entries: table
                .entries
                .iter()
                .map(|_| AtomicU8::new(UNCHECKED))
                .collect(),
            blocks: (0..n).map(|_| AtomicBool::new(false)).collect(),
            first_block: first_block.into(),
            table,
            damaged_files,
        }
    }

    /// Whether entry `i`'s blocks can be checked one by one.
    pub fn has_blocks(&self, i: usize) -> bool {
        has_blocks(&self.table, &self.table.entries[i])
    }

    /// Whether reads of entry `i` ask for their blocks ([`Advice::Blocks`]).
    pub fn fetches(&self, i: usize) -> bool {
        self.fetch[i]
    }

    /// Under [`Advice::Blocks`]: asks the kernel to read the blocks of entry
    /// `i` that `range` (within the file) touches and that were not asked for
    /// yet, one request per run of such blocks; the whole range if it is
    /// [`FETCH_WHOLE`] or longer. The read that follows finds its pages in
    /// flight instead of faulting them in one at a time (the mapping has
    /// `MADV_RANDOM`: no read-around).
    pub fn fetch_blocks(&self, view: &dyn ReadView, i: usize, range: Range<usize>) {
        if !self.fetch[i] || range.is_empty() {
            return;
        }
        let e = &self.table.entries[i];
        if range.len() as u64 >= FETCH_WHOLE {
            view.advise(
                e.offset + range.start as u64..e.offset + range.end as u64,
                Advice::WillNeed,
            );
            return;
        }
        // One block at a time: larger units (256 KiB, 1 MiB) read more and
        // made cold queries slower (`examples/advice.rs`, 2026-11-28).
        let log2 = self.table.block_log2;
        let (first, last) = (range.start >> log2, (range.end - 1) >> log2);
        let flags = &self.fetched[self.first_block[i] + first..=self.first_block[i] + last];
        let mut run: Option<(usize, usize)> = None;
        let ask = |(a, b): (usize, usize)| {
            let end = (((b + 1) as u64) << log2).min(e.len);
            view.advise(
                e.offset + ((a as u64) << log2)..e.offset + end,
                Advice::WillNeed,
            );
        };
        for (u, flag) in (first..).zip(flags) {
            // Load first: the common (warm) case writes nothing shared.
            if flag.load(Ordering::Relaxed) || flag.swap(true, Ordering::Relaxed) {
                if let Some(r) = run.take() {
                    ask(r);
                }
                continue;
            }
            run = Some(match run {
                Some((a, _)) => (a, u),
                None => (u, u),
            });
        }
        if let Some(r) = run {
            ask(r);
        }
    }

    fn mismatch(&self, i: usize, offset: u64, expected: u32, got: u32) -> Error {
        if self.entries[i].swap(DAMAGED, Ordering::AcqRel) != DAMAGED {
            self.damaged_files.fetch_add(1, Ordering::Relaxed);
            log::error!(
                "{} is damaged: file {:?} at offset {offset} does not match its checksum; its reads fail from now on",
                self.path.display(),
                self.table.entries[i].path,
            );
        }
        Error::ChecksumMismatch {
            file: self.path.clone(),
            offset,
            expected,
            got,
        }
    }

    fn damaged(&self, i: usize) -> Option<Error> {
        (self.entries[i].load(Ordering::Acquire) == DAMAGED).then(|| Error::ChecksumMismatch {
            file: self.path.clone(),
            offset: self.table.entries[i].offset,
            expected: self.table.entries[i].crc,
            got: 0,
        })
    }

    /// Checks entry `i` whole, once: its bytes against its CRC. A damaged file
    /// stays damaged (never served again).
    fn check_entry(&self, view: &dyn ReadView, i: usize) -> Result<()> {
        if let Some(e) = self.damaged(i) {
            return Err(e);
        }
        if self.entries[i].load(Ordering::Acquire) == SOUND {
            return Ok(());
        }
        let e = &self.table.entries[i];
        let got = view
            .checksum(e.offset..e.offset + e.len)
            .map_err(|err| Error::io(&self.path, err))?;
        if got == e.crc {
            self.entries[i].store(SOUND, Ordering::Release);
            return Ok(());
        }
        Err(self.mismatch(i, e.offset, e.crc, got))
    }

    /// Checks the blocks of entry `i` that `range` (within the file) touches
    /// and that were not checked yet; `bytes` are the whole file's.
    pub fn check_blocks(&self, i: usize, bytes: &[u8], range: Range<usize>) -> Result<()> {
        if let Some(e) = self.damaged(i) {
            return Err(e);
        }
        if range.is_empty() || self.entries[i].load(Ordering::Acquire) == SOUND {
            return Ok(());
        }
        let e = &self.table.entries[i];
        let log2 = self.table.block_log2;
        let (first, last) = (range.start >> log2, (range.end - 1) >> log2);
        for b in first..=last {
            let flag = &self.blocks[self.first_block[i] + b];
            if flag.load(Ordering::Acquire) {
                continue;
            }
            let start = b << log2;
            let end = ((b + 1) << log2).min(bytes.len());
            let got = crc32fast::hash(&bytes[start..end]);
            let expected = e.block_crcs[b];
            if got != expected {
                return Err(self.mismatch(i, e.offset + start as u64, expected, got));
            }
            flag.store(true, Ordering::Release);
        }
        Ok(())
    }
}

/// Whether entry `e` of `table` has block CRCs (version 2, not empty): its
/// blocks can be checked, and asked for, one by one.
fn has_blocks(table: &SegTable, e: &SegEntry) -> bool {
    table.block_log2 != 0 && e.len > 0
}

/// A segment file's mapping, its checks, and the table entry a range is.
type Found = (Arc<dyn ReadView>, Arc<Checks>, Option<usize>);

struct Mapped {
    view: Arc<dyn ReadView>,
    len: u64,
    checks: Arc<Checks>,
}

/// The mapped segment files of one container.
pub(crate) struct SegmentSet {
    root: PathBuf,
    advice: AdvicePolicy,
    verify: VerifyPolicy,
    map: RwLock<BTreeMap<u64, Mapped>>,
    /// Exported files found damaged since open.
    damaged: Arc<AtomicU64>,
}

impl SegmentSet {
    pub fn new(root: &Path, advice: AdvicePolicy, verify: VerifyPolicy) -> SegmentSet {
        SegmentSet {
            root: root.to_path_buf(),
            advice,
            verify,
            map: RwLock::new(BTreeMap::new()),
            damaged: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Exported files found damaged since open.
    pub fn damaged_files(&self) -> u64 {
        self.damaged.load(Ordering::Relaxed)
    }

    fn path(&self, no: u64) -> PathBuf {
        self.root.join(segment_file_name(no))
    }

    /// Maps segment file `no` (written by this process: its table is known), gives
    /// each file its advice, and starts serving reads from it.
    pub fn insert(&self, no: u64, file: &dyn StorageFile, len: u64, table: SegTable) -> Result<()> {
        let view = file.view(len).map_err(|e| Error::io(self.path(no), e))?;
        let checks = Checks::new(self.path(no), table, self.damaged.clone(), &self.advice);
        for (i, e) in checks.table.entries.iter().enumerate() {
            match self.advice.advice_for(&e.path) {
                // Without blocks to ask for, no read-around would mean one
                // page per fault: leave the kernel's default.
                Advice::Blocks if !checks.fetches(i) => {}
                a => view.advise(e.offset..e.offset + e.len, a),
            }
        }
        let checks = Arc::new(checks);
        crate::sync::write(&self.map).insert(no, Mapped { view, len, checks });
        Ok(())
    }

    /// Opens an existing segment file: reads its trailer and table (bounded,
    /// checksummed), checks that it is file `no`, maps it and closes it.
    pub fn open_existing(&self, storage: &dyn Storage, no: u64) -> Result<()> {
        let path = self.path(no);
        let file = storage
            .open(&segment_file_name(no))
            .map_err(|e| Error::io(&path, e))?;
        let (len, table) = read_table(&*file, &path)?;
        if table.export_no != no {
            return Err(Error::Corrupted {
                file: path,
                offset: len,
                reason: format!("table says segment file {}", table.export_no),
            });
        }
        self.insert(no, &*file, len, table)
    }

    /// Segment file `no`'s mapping and checks, if it is mapped.
    fn mapped(&self, no: u64) -> Option<(Arc<dyn ReadView>, Arc<Checks>)> {
        crate::sync::read(&self.map)
            .get(&no)
            .map(|m| (m.view.clone(), m.checks.clone()))
    }

    /// The mapping, the checks and the table entry serving exactly `range` of
    /// segment file `no` (zero-length files may share an offset with the next
    /// file).
    fn lookup(&self, no: u64, range: &Range<u64>) -> std::io::Result<Found> {
        let (view, checks) = self.mapped(no).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("segment file {no} is not mapped"),
            )
        })?;
        let entries = &checks.table.entries;
        let first = entries.partition_point(|e| e.offset < range.start);
        let entry = entries[first..]
            .iter()
            .take_while(|e| e.offset == range.start)
            .position(|e| e.offset + e.len == range.end)
            .map(|i| first + i);
        Ok((view, checks, entry))
    }

    /// The bytes of the exported file at `range` of segment file `no`,
    /// zero-copy; under [`VerifyPolicy::OnFirstRead`] checked whole against
    /// its CRC the first time (a damaged file's reads fail, then and later).
    pub fn read(&self, no: u64, range: Range<u64>) -> std::io::Result<OwnedBytes> {
        let (view, checks, entry) = self.lookup(no, &range)?;
        if self.verify == VerifyPolicy::OnFirstRead {
            if let Some(i) = entry {
                checks.check_entry(&*view, i)?;
            }
        }
        view.read(range)
    }

    /// A handle on the exported file at `range` of segment file `no`. Under
    /// [`VerifyPolicy::OnFirstRead`], each block a read touches is checked
    /// against its CRC the first time (files of a version 1 segment file,
    /// which has no block CRCs, are checked whole first).
    pub fn handle(&self, no: u64, range: Range<u64>) -> std::io::Result<Arc<dyn FileHandle>> {
        let (view, checks, entry) = self.lookup(no, &range)?;
        let verify = self.verify == VerifyPolicy::OnFirstRead;
        match entry {
            Some(i) if checks.has_blocks(i) && (verify || checks.fetches(i)) => {
                let bytes = view.read(range)?;
                Ok(Arc::new(super::handle::CheckedHandle::new(
                    bytes, view, checks, i, verify,
                )))
            }
            _ => Ok(Arc::new(ExtentsHandle::new(vec![self.read(no, range)?]))),
        }
    }

    /// Reads the hot ranges of segment file `no` ahead (`MADV_WILLNEED`:
    /// the kernel starts reading them, nobody waits). Returns (ranges, bytes).
    pub fn prefetch(&self, no: u64) -> (usize, u64) {
        let Some((view, checks)) = self.mapped(no) else {
            return (0, 0);
        };
        let t = &checks.table;
        let mut bytes = 0;
        for h in &t.hot {
            let start = t.entries[h.entry as usize].offset + h.offset;
            view.advise(start..start + h.len, crate::policy::Advice::WillNeed);
            bytes += h.len;
        }
        (t.hot.len(), bytes)
    }

    /// Drops the pages of a deleted file's range of segment file `no`.
    pub fn release(&self, no: u64, range: Range<u64>) {
        let map = crate::sync::read(&self.map);
        if let Some(m) = map.get(&no) {
            m.view.release(range);
        }
    }

    /// Stops serving segment file `no`; its mapping lives on in slices handed out.
    pub fn forget(&self, no: u64) {
        crate::sync::write(&self.map).remove(&no);
    }

    pub fn numbers(&self) -> Vec<u64> {
        let map = crate::sync::read(&self.map);
        map.keys().copied().collect()
    }

    /// Takes over the mapped files of `newer` (a refresh of a read-only open).
    pub fn adopt(&self, newer: SegmentSet) {
        let map = std::mem::take(&mut *crate::sync::write(&newer.map));
        *crate::sync::write(&self.map) = map;
    }

    /// Whether segment file `no` is mapped.
    pub fn contains(&self, no: u64) -> bool {
        crate::sync::read(&self.map).contains_key(&no)
    }

    /// `(number, bytes)` of every mapped segment file.
    pub fn sizes(&self) -> Vec<(u64, u64)> {
        let map = crate::sync::read(&self.map);
        map.iter().map(|(no, m)| (*no, m.len)).collect()
    }

    /// `(files, bytes)` of the mapped segment files.
    pub fn usage(&self) -> (usize, u64) {
        let map = crate::sync::read(&self.map);
        (map.len(), map.values().map(|m| m.len).sum())
    }

    /// Checks the CRC of every file in segment file `no` against its table.
    pub fn verify(&self, no: u64) -> Result<()> {
        let (view, checks) = self.mapped(no).ok_or_else(|| Error::Corrupted {
            file: self.path(no),
            offset: 0,
            reason: "segment file is not mapped".into(),
        })?;
        for i in 0..checks.table.entries.len() {
            checks.check_entry(&*view, i)?;
        }
        Ok(())
    }
}

/// Reads and checks the trailer and table at the end of a segment file.
fn read_table(file: &dyn StorageFile, path: &Path) -> Result<(u64, SegTable)> {
    let len = file.len().map_err(|e| Error::io(path, e))?;
    if len < TRAILER_LEN as u64 {
        return Err(Error::Corrupted {
            file: path.to_path_buf(),
            offset: 0,
            reason: format!("{len} bytes is too short for a segment file"),
        });
    }
    let mut trailer = [0u8; TRAILER_LEN];
    file.read_at(len - TRAILER_LEN as u64, &mut trailer)
        .map_err(|e| Error::io(path, e))?;
    let (table_offset, table_len, table_crc) = decode_trailer(&trailer, len)
        .map_err(|e| Error::decode(path, len - TRAILER_LEN as u64, e))?;
    debug_assert!(table_len <= MAX_TABLE_LEN);
    let mut table = vec![0u8; table_len as usize];
    file.read_at(table_offset, &mut table)
        .map_err(|e| Error::io(path, e))?;
    let table = decode_table(&table, table_offset, table_crc)
        .map_err(|e| Error::decode(path, table_offset, e))?;
    Ok((len, table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A view that records the advice it is given.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<(Range<u64>, Advice)>>);

    impl ReadView for Recorder {
        fn read(&self, _range: Range<u64>) -> std::io::Result<OwnedBytes> {
            unreachable!("fetch_blocks never reads")
        }
        fn advise(&self, range: Range<u64>, advice: Advice) {
            self.0.lock().unwrap().push((range, advice));
        }
    }

    impl Recorder {
        fn take(&self) -> Vec<Range<u64>> {
            let v = std::mem::take(&mut *self.0.lock().unwrap());
            assert!(v.iter().all(|(_, a)| *a == Advice::WillNeed));
            v.into_iter().map(|(r, _)| r).collect()
        }
    }

    const B: u64 = 64 << 10;

    /// Two files: `a.idx` (10 blocks, the last one short) at 4096, `b.term`
    /// after it.
    fn checks(advice: &AdvicePolicy) -> Checks {
        let entry = |path: &str, offset, len: u64| SegEntry {
            file_id: 0,
            path: path.into(),
            offset,
            len,
            crc: 0,
            block_crcs: vec![0; len.div_ceil(B) as usize],
        };
        let table = SegTable {
            export_no: 1,
            namespace: String::new(),
            block_log2: 16,
            entries: vec![
                entry("s.idx", 4096, 9 * B + 100),
                entry("s.term", 4096 + 10 * B, 3 * B),
            ],
            hot: Vec::new(),
        };
        Checks::new("seg".into(), table, Arc::default(), advice)
    }

    #[test]
    fn a_read_asks_once_for_the_blocks_it_touches_in_one_request() {
        let c = checks(&AdvicePolicy::default());
        let v = Recorder::default();
        // A 100-byte read inside block 2: that block, nothing around it.
        c.fetch_blocks(&v, 0, (2 * B + 10) as usize..(2 * B + 110) as usize);
        assert_eq!(v.take(), vec![4096 + 2 * B..4096 + 3 * B]);
        // Again: already asked for.
        c.fetch_blocks(&v, 0, (2 * B) as usize..(2 * B + 1) as usize);
        assert!(v.take().is_empty());
        // Blocks 1..=4: block 2 was asked for, so two requests (1, then 3..=4).
        c.fetch_blocks(&v, 0, (B + 5) as usize..(5 * B - 1) as usize);
        assert_eq!(
            v.take(),
            vec![4096 + B..4096 + 2 * B, 4096 + 3 * B..4096 + 5 * B]
        );
        // The last block ends with the file, not a block later.
        c.fetch_blocks(&v, 0, (9 * B) as usize..(9 * B + 1) as usize);
        assert_eq!(v.take(), vec![4096 + 9 * B..4096 + 9 * B + 100]);
    }

    #[test]
    fn a_long_read_is_asked_for_whole_every_time() {
        let c = checks(&AdvicePolicy::default());
        let v = Recorder::default();
        let long = 0..FETCH_WHOLE as usize;
        c.fetch_blocks(&v, 0, long.clone());
        c.fetch_blocks(&v, 0, long);
        let want = 4096..4096 + FETCH_WHOLE;
        assert_eq!(v.take(), vec![want.clone(), want]);
    }

    #[test]
    fn files_without_blocks_advice_are_left_to_the_kernel() {
        // `.term` keeps the kernel's read-around by default.
        let c = checks(&AdvicePolicy::default());
        assert!(c.fetches(0) && !c.fetches(1));
        let v = Recorder::default();
        c.fetch_blocks(&v, 1, 0..10);
        assert!(v.take().is_empty());
        // No advice anywhere: nothing is asked for, nothing is tracked.
        let c = checks(&AdvicePolicy::uniform(Advice::None));
        assert!(!c.fetches(0) && c.fetched.is_empty());
        c.fetch_blocks(&v, 0, 0..10);
        assert!(v.take().is_empty());
    }
}
