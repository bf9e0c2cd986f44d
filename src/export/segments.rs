//! The exported segment files a container serves reads from: one read-only
//! mapping per file (its descriptor closed right after mapping), madvise per file
//! type, cheap validation on open (trailer + table) and explicit verification
//! (every file's CRC) on request.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use ownedbytes::OwnedBytes;

use crate::error::{Error, Result};
use crate::format::segment_file::{
    decode_table, decode_trailer, segment_file_name, SegTable, MAX_TABLE_LEN, TRAILER_LEN,
};
use crate::io::{ReadView, Storage, StorageFile};
use crate::policy::{AdvicePolicy, VerifyPolicy};

/// What is known of an exported file's bytes.
const UNCHECKED: u8 = 0;
const SOUND: u8 = 1;
const DAMAGED: u8 = 2;

struct Mapped {
    view: Arc<dyn ReadView>,
    len: u64,
    table: Arc<SegTable>,
    /// Per table entry: `UNCHECKED`, `SOUND` or `DAMAGED`.
    checked: Arc<[AtomicU8]>,
}

impl Mapped {
    fn new(view: Arc<dyn ReadView>, len: u64, table: SegTable) -> Mapped {
        let checked = table
            .entries
            .iter()
            .map(|_| AtomicU8::new(UNCHECKED))
            .collect();
        Mapped {
            view,
            len,
            table: Arc::new(table),
            checked,
        }
    }
}

/// The mapped segment files of one container.
pub(crate) struct SegmentSet {
    root: PathBuf,
    advice: AdvicePolicy,
    verify: VerifyPolicy,
    map: RwLock<BTreeMap<u64, Mapped>>,
    /// Exported files found damaged since open.
    damaged: AtomicU64,
}

impl SegmentSet {
    pub fn new(root: &Path, advice: AdvicePolicy, verify: VerifyPolicy) -> SegmentSet {
        SegmentSet {
            root: root.to_path_buf(),
            advice,
            verify,
            map: RwLock::new(BTreeMap::new()),
            damaged: AtomicU64::new(0),
        }
    }

    /// Exported files found damaged since open.
    pub fn damaged_files(&self) -> u64 {
        self.damaged.load(Ordering::Relaxed)
    }

    /// Checks table entry `i` of segment file `no` once: its bytes against its
    /// CRC. A damaged file stays damaged (never served again).
    fn check_entry(
        &self,
        no: u64,
        view: &dyn ReadView,
        table: &SegTable,
        checked: &[AtomicU8],
        i: usize,
    ) -> Result<()> {
        let e = &table.entries[i];
        let damaged = |got: u32| Error::ChecksumMismatch {
            file: self.path(no),
            offset: e.offset,
            expected: e.crc,
            got,
        };
        match checked[i].load(Ordering::Acquire) {
            SOUND => return Ok(()),
            DAMAGED => return Err(damaged(0)),
            _ => {}
        }
        let got = view
            .checksum(e.offset..e.offset + e.len)
            .map_err(|err| Error::io(self.path(no), err))?;
        if got == e.crc {
            checked[i].store(SOUND, Ordering::Release);
            return Ok(());
        }
        if checked[i].swap(DAMAGED, Ordering::AcqRel) != DAMAGED {
            self.damaged.fetch_add(1, Ordering::Relaxed);
            log::error!(
                "{} is damaged: file {:?} at offset {} does not match its checksum; its reads fail from now on",
                self.path(no).display(),
                e.path,
                e.offset
            );
        }
        Err(damaged(got))
    }

    fn path(&self, no: u64) -> PathBuf {
        self.root.join(segment_file_name(no))
    }

    /// Maps segment file `no` (written by this process: its table is known), gives
    /// each file its advice, and starts serving reads from it.
    pub fn insert(&self, no: u64, file: &dyn StorageFile, len: u64, table: SegTable) -> Result<()> {
        let view = file.view(len).map_err(|e| Error::io(self.path(no), e))?;
        for e in &table.entries {
            view.advise(e.offset..e.offset + e.len, self.advice.advice_for(&e.path));
        }
        crate::sync::write(&self.map).insert(no, Mapped::new(view, len, table));
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

    /// The bytes of the exported file at `range` of segment file `no`,
    /// zero-copy; under [`VerifyPolicy::OnFirstRead`] checked against its CRC
    /// the first time (a damaged file's reads fail, then and later).
    pub fn read(&self, no: u64, range: Range<u64>) -> std::io::Result<OwnedBytes> {
        let (view, table, checked) = {
            let map = crate::sync::read(&self.map);
            let m = map.get(&no).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("segment file {no} is not mapped"),
                )
            })?;
            (m.view.clone(), m.table.clone(), m.checked.clone())
        };
        if self.verify == VerifyPolicy::OnFirstRead {
            // The entry serving exactly this range (zero-length files may
            // share an offset with the next file).
            let first = table.entries.partition_point(|e| e.offset < range.start);
            let entry = table.entries[first..]
                .iter()
                .take_while(|e| e.offset == range.start)
                .position(|e| e.offset + e.len == range.end);
            if let Some(i) = entry {
                self.check_entry(no, &*view, &table, &checked, first + i)?;
            }
        }
        view.read(range)
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
        let (view, table, checked) = {
            let map = crate::sync::read(&self.map);
            let m = map.get(&no).ok_or_else(|| Error::Corrupted {
                file: self.path(no),
                offset: 0,
                reason: "segment file is not mapped".into(),
            })?;
            (m.view.clone(), m.table.clone(), m.checked.clone())
        };
        for i in 0..table.entries.len() {
            self.check_entry(no, &*view, &table, &checked, i)?;
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
