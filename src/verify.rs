//! Checking a whole folder: every container record's checksum, every segment
//! file's table and per-file checksums, and tantivy's own footer checksum of
//! every file of every index or tenant. Read-only (works beside a writer), and
//! what it read is dropped from the page cache afterwards (pages a running writer
//! maps stay cached).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::inspect::open_engine;
use crate::io::fs::FsStorage;
use crate::io::Storage;
use crate::policy::COMMIT_FILE;
use crate::JockyDirectory;

/// One damaged place found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Damage {
    /// The damaged file: a container or segment file of the folder, or
    /// `tenant/path` (`path` for a plain index) for a virtual file whose
    /// tantivy footer does not verify.
    pub file: PathBuf,
    /// Where in that file, when known.
    pub offset: Option<u64>,
    /// What is wrong.
    pub what: String,
}

/// What [`verify`] checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Container records whose checksum verified.
    pub records: u64,
    /// Their payload bytes.
    pub record_bytes: u64,
    /// Bytes at the end of the newest container file that do not verify and
    /// are not followed by a record that does: a torn tail, which a writer's
    /// open cuts (or, beside a running writer, an append under way). Not damage.
    pub torn_tail_bytes: u64,
    /// Segment files whose table and file checksums were checked.
    pub segment_files: usize,
    /// Files being built in place whose chunks were checked (in segment files
    /// that have no table yet).
    pub files_being_built: usize,
    /// Indexes (tenants, or the one plain index) whose files' tantivy footers
    /// were checked.
    pub indexes: usize,
    /// Virtual files whose tantivy footer was checked.
    pub index_files: usize,
    /// Everything damaged; empty when the folder is sound.
    pub damage: Vec<Damage>,
}

impl VerifyReport {
    /// Whether nothing damaged was found.
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }
}

/// The damage an error of the log or of a segment file describes.
fn damage_of(e: &Error) -> Damage {
    let (file, offset) = match e {
        Error::Corrupted { file, offset, .. } | Error::ChecksumMismatch { file, offset, .. } => {
            (file.clone(), Some(*offset))
        }
        Error::Version { file, .. } => (file.clone(), Some(0)),
        Error::Incomplete { path, .. } => (path.clone(), None),
        Error::Io { path, .. } => (path.clone(), None),
        _ => (PathBuf::new(), None),
    };
    Damage {
        file,
        offset,
        what: e.to_string(),
    }
}

/// Verifies the folder at `path` (see the module docs). An `Err` means the
/// folder could not be read at all (not found, not a folder); damage, including
/// a log that cannot be replayed, is in the report.
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport> {
    let path = path.as_ref();
    if !path.is_dir() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder"),
        ));
    }
    let mut report = VerifyReport::default();
    let result = check(path, &mut report);
    drop_cached(path);
    if let Err(e) = result {
        report.damage.push(damage_of(&e));
    }
    Ok(report)
}

fn check(path: &Path, report: &mut VerifyReport) -> Result<()> {
    // Every record of every container file, going on past damage.
    let storage = FsStorage::open_existing(path).map_err(|e| Error::io(path, e))?;
    let checked = crate::container::check_all(&storage, path)?;
    report.records = checked.records;
    report.record_bytes = checked.bytes;
    report.torn_tail_bytes = checked.torn_tail;
    for (file, offset, what) in checked.damage {
        report.damage.push(Damage {
            file,
            offset: Some(offset),
            what: format!("container record does not verify: {what}"),
        });
    }
    // Replaying checks what the records mean (sequence, file table) and maps
    // the segment files; with damage already found it may stop there.
    let engine = match open_engine(path) {
        Ok(engine) => engine,
        Err(e) if !report.damage.is_empty() => {
            log::debug!("verify: the log does not replay past the damage: {e}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    for no in engine.segments().numbers() {
        report.segment_files += 1;
        if let Err(e) = engine.segments().verify(no) {
            report.damage.push(damage_of(&e));
        }
    }
    let namespaces = engine.table().namespaces();
    // Files being built in place: each chunk against its `Placed` record's CRC.
    for ns in &namespaces {
        engine.ensure_ns(ns)?;
        let placed: Vec<(String, crate::table::Entry)> = engine
            .table()
            .with_prefix(ns, "")
            .into_iter()
            // A file still being written beside a writer, or cut short by a
            // crash, may lack chunks a power loss took: not damage.
            .filter(|(_, e)| {
                matches!(e.loc, crate::table::Location::Placed { .. })
                    && e.state != crate::table::FileState::Writing
            })
            .collect();
        for (p, e) in placed {
            report.files_being_built += 1;
            if let Err(err) = engine.read_entry(&e) {
                let file = if ns.is_empty() {
                    PathBuf::from(&p)
                } else {
                    Path::new(ns).join(&p)
                };
                report.damage.push(Damage {
                    file,
                    offset: None,
                    what: format!(
                        "a chunk of this file, being built in place, does not verify: {err}"
                    ),
                });
            }
        }
    }
    for ns in namespaces {
        engine.ensure_ns(&ns)?;
        if engine.table().get(&ns, COMMIT_FILE).is_none() {
            continue;
        }
        report.indexes += 1;
        let dir = JockyDirectory::over_read_only(engine.clone(), &ns)?;
        let name = |p: &Path| {
            if ns.is_empty() {
                p.to_path_buf()
            } else {
                Path::new(&ns).join(p)
            }
        };
        // tantivy may panic on damaged bytes; a panic is damage, not a crash.
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let index = tantivy::Index::open(dir)?;
            let files = index.searchable_segment_metas()?.len();
            index.validate_checksum().map(|bad| (files, bad))
        }));
        match checked {
            Ok(Ok((_, bad))) => {
                report.index_files += engine.table().paths(&ns).len();
                let mut bad: Vec<PathBuf> = bad.into_iter().collect();
                bad.sort();
                for p in bad {
                    report.damage.push(Damage {
                        file: name(&p),
                        offset: None,
                        what: "tantivy's footer checksum does not match".into(),
                    });
                }
            }
            Ok(Err(e)) => report.damage.push(Damage {
                file: name(Path::new(COMMIT_FILE)),
                offset: None,
                what: format!("tantivy cannot open the index: {e}"),
            }),
            Err(_) => report.damage.push(Damage {
                file: name(Path::new(COMMIT_FILE)),
                offset: None,
                what: "tantivy panicked while checking the index".into(),
            }),
        }
    }
    Ok(())
}

/// Drops the folder's files from the page cache (pages someone maps stay).
fn drop_cached(path: &Path) {
    let Ok(storage) = FsStorage::open_existing(path) else {
        return;
    };
    for name in storage.list().unwrap_or_default() {
        if let Ok(file) = storage.open(&name) {
            if let Ok(len) = file.len() {
                file.drop_cached(0..len);
            }
        }
    }
}
