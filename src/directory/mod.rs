//! `JockyDirectory`: tantivy's `Directory` trait over the engine (container + file
//! table). This layer owns path validation, the mapping of jocky's errors onto
//! tantivy's per-operation errors, and the options a user can set.

mod chunk;
mod handle;
mod registry;
mod writer;

use std::fmt;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{DirectoryLock, FileHandle, Lock, WatchCallback, WatchHandle, WritePtr};
use tantivy::Directory;

use crate::container::ContainerOptions;
use crate::engine::{CreateError, Engine, EngineOptions};
use crate::error::{Error, Result};
use crate::export::worker::Worker;
use crate::export::ExportReport;
use crate::format::file_header::{FILE_HEADER_LEN, MAX_CAPACITY};
use crate::io::Storage;
use crate::path::normalize;
use crate::policy::{AdvicePolicy, ExportPolicy, SyncPolicy, WriteMode, COMMIT_FILE};
use crate::reclaim::ReclaimReport;
pub(crate) use registry::Owner;

pub(crate) use handle::{Check, ExtentsHandle, ReadCounters};
use writer::FileWriter;

/// The per-file write buffer's default upper bound (see [`Builder::write_buffer`]).
const DEFAULT_WRITE_BUFFER_MAX: usize = 1 << 20;

/// The write queue's default size (see [`Builder::write_queue`]): 4 buffers of
/// 2 MiB. 32 MiB bought no docs/s in `examples/compare_mmap.rs` (2026-11-28).
const DEFAULT_WRITE_QUEUE: usize = 8 << 20;

/// A tantivy [`Directory`] that keeps every file of an index in one append-only
/// container. Cheap to clone; all clones share one container.
#[derive(Clone)]
pub struct JockyDirectory {
    engine: Arc<Owner>,
    opts: Arc<WriteOptions>,
    ns: Arc<str>,
    /// The namespace's removal count when this directory was made: writes
    /// are refused once it moved on (see `Store::remove_tenant`).
    epoch: u64,
}

#[derive(Debug)]
pub(crate) struct WriteOptions {
    min_chunk: usize,
    max_chunk: usize,
}

/// Write options of a read-only open (nothing is ever written through them).
pub(crate) fn read_only_options() -> Arc<WriteOptions> {
    Arc::new(WriteOptions {
        min_chunk: 64 << 10,
        max_chunk: 64 << 10,
    })
}

impl fmt::Debug for JockyDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JockyDirectory")
            .field("root", &self.engine.container().root())
            .field("namespace", &&*self.ns)
            .finish()
    }
}

/// A snapshot of counters, for logs and dashboards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Virtual files in the table (all namespaces).
    pub virtual_files: usize,
    /// Container files on disk.
    pub container_files: usize,
    /// Bytes used in the container files.
    pub container_bytes: u64,
    /// Bytes appended to the container since open (records, headers, padding).
    pub bytes_appended: u64,
    /// Bytes of live virtual files.
    pub bytes_live: u64,
    /// `fdatasync` calls since open.
    pub fsyncs: u64,
    /// File descriptors held now.
    pub fds_held: usize,
    /// Memory mappings held now.
    pub mappings: usize,
    /// Whether a failed write or fsync made the container refuse further writes.
    pub poisoned: bool,
    /// The most bytes of capacity held at once by the container's
    /// write-behind buffers since open (bounded by the write queue plus the
    /// largest single append); a buffer allocates only what it has held, so
    /// the memory they take can be less.
    pub write_buffer_bytes_peak: usize,
    /// Unterminated files dropped when the container was opened.
    pub files_dropped_on_open: usize,
    /// Segment files mapped now.
    pub segment_files: usize,
    /// Their bytes.
    pub segment_bytes: u64,
    /// Segments exported since open.
    pub segments_exported: u64,
    /// Bytes copied into segment files since open (a segment built in place
    /// counts only what its export copied).
    pub bytes_exported: u64,
    /// Segment files being built in place now (chunks of live files, no
    /// table yet; not mapped, not counted in `segment_files`).
    pub segment_files_being_built: usize,
    /// Bytes of live files' chunks in them.
    pub segment_bytes_being_built: u64,
    /// Segment files created since open to build a segment in place
    /// ([`Builder::build_in_place`]).
    pub segments_built_in_place: u64,
    /// Bytes written into them as the segments' files were written.
    pub bytes_built_in_place: u64,
    /// Of those, bytes copied inside the kernel (`copy_file_range`; shared
    /// blocks instead of copies on XFS and btrfs), not through this process.
    pub bytes_exported_in_kernel: u64,
    /// Bytes exports read since open to check files against their tantivy
    /// footers and to checksum files built in place, beyond what they copied:
    /// a file built in place by this process costs its last partial 64 KiB
    /// block (its writer computed the block CRCs as it wrote); one built
    /// before a crash, or still in the container, is read whole.
    pub bytes_read_to_checksum: u64,
    /// Container files removed since open.
    pub container_files_reclaimed: u64,
    /// Segment files removed since open.
    pub segment_files_removed: u64,
    /// Bytes of live files copied forward out of container files since open.
    pub bytes_copied_forward: u64,
    /// Background export or reclamation passes that failed (see the log).
    pub background_errors: u64,
    /// Bytes copied to serve reads of container files that span two or more
    /// of their extents (each such read allocates a buffer of its size;
    /// reads within one extent, and all reads of exported files, are
    /// zero-copy).
    pub read_bytes_assembled: u64,
    /// Container files of several extents mapped as one range to serve reads
    /// across their extents without copying (each costs one mapping per
    /// extent while a handle on it lives).
    pub files_stitched: u64,
    /// Bytes cut off the newest container file on open as a torn tail
    /// (written, never acknowledged as durable; also logged as a warning).
    pub tail_bytes_cut_on_open: u64,
    /// Records in those bytes that verified: work lost with the crash.
    pub tail_records_cut_on_open: u64,
    /// `Seal` records written (on close and when the log was idle): damage
    /// before a seal is reported on open, never cut.
    pub seals: u64,
    /// Exported files whose bytes did not match their CRC when checked
    /// (their reads fail; see the log for which).
    pub damaged_files_detected: u64,
    /// Bytes of records the open replayed: from the newest snapshot of the
    /// file table on (all of the log if there was none).
    pub bytes_replayed_on_open: u64,
    /// Container files older than that snapshot: mapped, not read on open;
    /// each record is checked the first time its bytes are read.
    pub container_files_not_replayed: usize,
    /// Snapshots of the file table written since open.
    pub snapshots_written: u64,
    /// The size in bytes of the last one.
    pub snapshot_bytes: u64,
}

/// Options for opening a [`JockyDirectory`]; see [`JockyDirectory::builder`].
#[derive(Debug)]
pub struct Builder {
    root: PathBuf,
    storage: Option<Arc<dyn Storage>>,
    file_capacity: u64,
    grow_step: u64,
    sync: SyncPolicy,
    /// `None`: 64 KiB..1 MiB, clamped to a quarter of a container file.
    write_buffer: Option<(usize, usize)>,
    write_mode: WriteMode,
    write_queue: usize,
    engine: EngineOptions,
    full_replay: bool,
}

/// Write-behind buffers per container (see [`Builder::write_queue`]).
const WRITE_BUFFERS: usize = 4;

impl Builder {
    /// The most bytes one container file holds before a new one is started
    /// (default 256 MiB; at least 1 MiB). A virtual file may span container files.
    pub fn container_file_size(mut self, bytes: u64) -> Self {
        self.file_capacity = bytes;
        self
    }

    /// How much disk space is reserved ahead of the write position (default 8 MiB).
    pub fn preallocate(mut self, bytes: u64) -> Self {
        self.grow_step = bytes;
        self
    }

    /// When to fsync (default [`SyncPolicy::OnRequest`]).
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.sync = policy;
        self
    }

    /// The per-file write buffer: starts at `min`, doubles up to `max` (defaults
    /// 64 KiB and 1 MiB). Each open writer holds at most `max` bytes: tantivy
    /// keeps a dozen or more files open while it indexes and merges, and
    /// 4 MiB each (with a 32 MiB queue) made jocky's peak memory 1.44x /
    /// 1.12x `MmapDirectory`'s on the generated corpus / the Linux tree
    /// (`examples/compare_mmap.rs`, 2026-11-28; 1 MiB: 1.10x / 0.90x, docs/s
    /// no lower). A larger `max` means fewer, longer chunks per file.
    pub fn write_buffer(mut self, min: usize, max: usize) -> Self {
        self.write_buffer = Some((min, max));
        self
    }

    /// How appended records reach the disk (default [`WriteMode::Buffered`]).
    pub fn write_mode(mut self, mode: WriteMode) -> Self {
        self.write_mode = mode;
        self
    }

    /// The most bytes handed to the background writer and not yet written
    /// (default 8 MiB, in 4 buffers; at least 256 KiB). A writer that outruns
    /// the disk waits. Appends larger than a quarter of this use a one-off
    /// buffer of their size.
    pub fn write_queue(mut self, bytes: usize) -> Self {
        self.write_queue = bytes;
        self
    }

    /// When committed segments are exported and space reclaimed (default
    /// [`ExportPolicy::WhenQuiet`]: space is reclaimed after each commit, and
    /// committed segments of at least 4 MiB are exported once commits pause
    /// for 2 s, on the process-wide pool of two maintenance threads).
    pub fn export_policy(mut self, policy: ExportPolicy) -> Self {
        self.engine.export = policy;
        self
    }

    /// When exported files are checked against their CRCs (default
    /// [`VerifyPolicy::OnFirstRead`](crate::VerifyPolicy::OnFirstRead): before the first read is served).
    pub fn verify(mut self, policy: crate::policy::VerifyPolicy) -> Self {
        self.engine.verify = policy;
        self
    }

    /// From which container files the export may copy inside the kernel
    /// (default [`ExportCopy::ActiveFile`](crate::ExportCopy::ActiveFile); see
    /// [`ExportCopy`](crate::ExportCopy) for what `AnyFile` costs and buys).
    pub fn export_copy(mut self, copy: crate::policy::ExportCopy) -> Self {
        self.engine.export_copy = copy;
        self
    }

    /// Build large segments in place (default on): once the files of a
    /// segment have written the export policy's minimum (4 MiB by
    /// default), the rest of their bytes go straight into the segment file
    /// the segment will be exported as, not into the container first, so
    /// that the export copies only what the segment had in the container
    /// before and the files tantivy wrote side by side. On ext4 that writes
    /// the final index once instead of twice (bytes written 1.18x / 1.22x
    /// `MmapDirectory`'s on the generated corpus / the Linux tree, against
    /// 1.49x / 1.50x with `false`). Ignored under [`SyncPolicy::Interval`],
    /// whose timer syncs the container alone, and under
    /// [`ExportPolicy::Manual`] (a file built in place would wait for an
    /// export that may never come, and no snapshot of the file table is
    /// written while one is). See `docs/format.md`, "Building in place", for
    /// what it changes on disk.
    pub fn build_in_place(mut self, yes: bool) -> Self {
        self.engine.build_in_place = yes;
        self
    }

    /// Build every file named `<name>.<ext>` in place, as a file of segment
    /// `<name>`, once its segment's files wrote `min_bytes` (for tests that
    /// do not name files as tantivy does). Only with the `testing` feature.
    #[cfg(feature = "testing")]
    pub fn build_any_file_in_place(mut self, min_bytes: u64) -> Self {
        self.engine.build_any = Some(min_bytes);
        self
    }

    /// Which madvise each file type of an exported segment gets.
    pub fn advice(mut self, policy: AdvicePolicy) -> Self {
        self.engine.advice = policy;
        self
    }

    /// Use this storage instead of the folder (for example
    /// [`SimStorage`](crate::testing::SimStorage) to test crash handling). Only
    /// with the `testing` cargo feature.
    #[cfg(feature = "testing")]
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// Replay every record of every container file on open, ignoring the
    /// snapshots that let an open start from the newest one (for checking that
    /// both give the same file table). Only with the `testing` cargo feature.
    #[cfg(feature = "testing")]
    pub fn full_replay(mut self, yes: bool) -> Self {
        self.full_replay = yes;
        self
    }

    /// Opens the folder as one index.
    pub fn open(self) -> Result<JockyDirectory> {
        let (engine, opts) = self.open_engine()?;
        JockyDirectory::over(engine, opts, "")
    }

    // Both opens (this and `Builder::open_store` in `store.rs`) ask the
    // maintenance pool for a pass unless the export policy is `Manual`:
    // exports a crash or a close interrupted are picked up again.

    pub(crate) fn open_engine(self) -> Result<(Arc<Owner>, Arc<WriteOptions>)> {
        if !(1 << 20..=MAX_CAPACITY).contains(&self.file_capacity) {
            return Err(Error::InvalidOption(format!(
                "container file size {} is not between 1 MiB and 1 TiB",
                self.file_capacity
            )));
        }
        let quarter = ((self.file_capacity - FILE_HEADER_LEN as u64) / 4) as usize;
        // By default a whole number of pages (so that chunks are page-aligned:
        // mapped as one range, built in place), even for small container files.
        let (min_chunk, max_chunk) = self.write_buffer.unwrap_or((
            64 << 10,
            DEFAULT_WRITE_BUFFER_MAX
                .min(quarter / 4096 * 4096)
                .max(64 << 10),
        ));
        if min_chunk == 0 || min_chunk > max_chunk || max_chunk > quarter {
            return Err(Error::InvalidOption(format!(
                "write buffer {min_chunk}..{max_chunk} must be non-empty, ordered, and at most a quarter of a container file"
            )));
        }
        let opts = ContainerOptions {
            file_capacity: self.file_capacity,
            grow_step: self.grow_step.min(self.file_capacity),
            sync: self.sync,
            write_mode: self.write_mode,
            write_buffer: (self.write_queue / WRITE_BUFFERS).max(64 << 10),
            write_buffers: WRITE_BUFFERS,
            full_replay: self.full_replay,
        };
        let engine = match self.storage {
            Some(storage) => {
                Owner::unregistered(Engine::open(storage, &self.root, opts, self.engine)?)
            }
            None => registry::open_shared(&self.root, opts, self.engine)?,
        };
        let opts = Arc::new(WriteOptions {
            min_chunk,
            max_chunk,
        });
        Worker::kick(engine.engine_arc());
        Ok((engine, opts))
    }
}

impl JockyDirectory {
    /// The directory of namespace `ns` over an engine opened read-only.
    pub(crate) fn over_read_only(engine: Arc<Owner>, ns: &str) -> Result<JockyDirectory> {
        Self::over(engine, read_only_options(), ns)
    }

    /// The directory of namespace `ns` over an open engine; the namespace's
    /// files are read from the snapshot now if that was not done yet, so
    /// every operation through the directory finds them.
    pub(crate) fn over(
        engine: Arc<Owner>,
        opts: Arc<WriteOptions>,
        ns: &str,
    ) -> Result<JockyDirectory> {
        engine.ensure_ns(ns)?;
        Ok(JockyDirectory {
            epoch: engine.epoch(ns),
            engine,
            opts,
            ns: Arc::from(ns),
        })
    }

    /// Opens the index folder at `path` with default options, creating the folder
    /// and the container if missing.
    ///
    /// Within one process, opening a folder that is already open shares the open
    /// container (like cloning the first directory; its options stay in force).
    /// Another process gets [`Error::Locked`].
    pub fn open(path: impl AsRef<Path>) -> Result<JockyDirectory> {
        Self::builder(path).open()
    }

    /// Opens the index folder at `path` for reading only, beside a writer
    /// (another process, or this one) that may be indexing into it: takes no
    /// lock, never writes, removes or blocks anything, and shows the log as it
    /// was when opened. [`JockyDirectory::refresh`] moves on to newer commits.
    /// Writes fail with [`Error::ReadOnly`]. A folder without a container is
    /// an error (nothing is created).
    ///
    /// The writer never takes data from under it: files it reclaims or
    /// removes stay readable through the mappings this open holds; an open
    /// that races a reclamation is retried.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<JockyDirectory> {
        let engine = crate::inspect::open_engine(path.as_ref())?;
        Self::over_read_only(engine, "")
    }

    /// For a directory opened with [`JockyDirectory::open_read_only`]: reads
    /// the log again and serves its current state; slices opened before stay
    /// valid. Fires `watch` callbacks (tantivy's `IndexReader` reload) when
    /// `meta.json` changed, and returns whether it did. A writer's directory is
    /// always current: `Ok(false)`.
    pub fn refresh(&self) -> Result<bool> {
        self.engine.refresh(self.engine.container().root())
    }

    /// Options for opening the index folder at `path`.
    pub fn builder(path: impl AsRef<Path>) -> Builder {
        Builder {
            root: path.as_ref().to_path_buf(),
            storage: None,
            file_capacity: 256 << 20,
            grow_step: 8 << 20,
            sync: SyncPolicy::OnRequest,
            write_buffer: None,
            write_mode: WriteMode::default(),
            write_queue: DEFAULT_WRITE_QUEUE,
            engine: EngineOptions {
                build_in_place: true,
                ..EngineOptions::default()
            },
            full_replay: false,
        }
    }

    /// The folder holding the container.
    pub fn root(&self) -> &Path {
        self.engine.container().root()
    }

    /// Current counters (of the whole container, shared with other namespaces).
    pub fn stats(&self) -> Stats {
        stats_of(&self.engine)
    }

    /// Exports every committed segment of this container (all namespaces) that
    /// is still in the container, whatever its size, and returns what it did.
    /// Slices opened before keep their bytes.
    pub fn export_committed(&self) -> Result<ExportReport> {
        crate::export::Exporter(&self.engine).export_committed(0)
    }

    /// Exports the named (terminated) files of this directory together into one
    /// segment file, whether or not they form a committed segment.
    pub fn export_files(&self, paths: &[&Path]) -> Result<ExportReport> {
        let mut keys = Vec::with_capacity(paths.len());
        for p in paths {
            keys.push(normalize(p).map_err(|reason| Error::InvalidPath {
                path: p.to_path_buf(),
                reason,
            })?);
        }
        crate::export::Exporter(&self.engine).export_paths(&self.ns, &keys)
    }

    /// Removes container and segment files nothing live needs any more, copying
    /// live files out of container files first where the dead bytes that frees
    /// are at least the bytes copied. Oldest files go first; a dead one older
    /// than the newest snapshot may go ahead of older ones. One pass copies at
    /// most 64 MiB; [`ReclaimReport::more`] says another would go on.
    pub fn reclaim(&self) -> Result<ReclaimReport> {
        crate::reclaim::Reclaimer(&self.engine).reclaim()
    }

    /// Writes a snapshot of the file table now (at the start of a new
    /// container file), so that the next open replays nothing before it.
    /// Background passes and a clean close do this on their own (see the
    /// README, "Open"); `false` if there was nothing to snapshot or the
    /// writers did not pause long enough.
    pub fn write_snapshot(&self) -> Result<bool> {
        self.engine.write_snapshot(1)
    }

    /// A canonical description of the file table (every file's id, place and
    /// anchors, and the books kept from them), to compare two opens. Only
    /// with the `testing` cargo feature.
    #[cfg(feature = "testing")]
    pub fn describe_table(&self) -> String {
        self.engine
            .ensure_all()
            .expect("the snapshot's namespaces decode");
        self.engine.table().describe()
    }

    /// Reads ahead, without waiting, what opening this index and its first
    /// queries will read: in each segment file, the ranges tantivy read when
    /// the segment was opened at export time (footers, term dictionaries,
    /// fieldnorms, the doc store's index: the segment file's "hot ranges");
    /// files still in the container, whole. Call it right after opening a
    /// cold index, before `Index::open`: the reads go to the disk together
    /// instead of one page fault at a time. Segment files exported before
    /// 2026-11-28 have no hot ranges.
    pub fn prefetch(&self) -> Result<crate::PrefetchReport> {
        crate::export::hot::prefetch(&self.engine, &self.ns)
    }

    /// Checks every exported file against the CRC in its segment file's table
    /// (open only checks the tables). Returns how many segment files were checked.
    pub fn verify_segments(&self) -> Result<usize> {
        let numbers = self.engine.segments().numbers();
        for no in &numbers {
            self.engine.segments().verify(*no)?;
        }
        Ok(numbers.len())
    }

    /// Waits until no background pass (export, reclamation) of this folder is
    /// pending, waiting for a quiet period, or under way.
    pub fn wait_for_background_work(&self) {
        self.engine.worker().wait_idle();
    }

    /// The virtual files of this directory, sorted.
    pub fn list_files(&self) -> Vec<PathBuf> {
        self.engine
            .table()
            .paths(&self.ns)
            .into_iter()
            .map(PathBuf::from)
            .collect()
    }
}

pub(crate) fn stats_of(engine: &Engine) -> Stats {
    use std::sync::atomic::Ordering::Relaxed;
    let c = engine.container().stats();
    let (segment_files, segment_bytes) = engine.segments().usage();
    let m = &engine.counters();
    let table = engine.table();
    Stats {
        virtual_files: table.file_count(),
        container_files: c.container_files,
        container_bytes: c.container_bytes,
        bytes_appended: c.bytes_appended,
        bytes_live: table.live_bytes(),
        fsyncs: c.fsyncs,
        fds_held: c.fds_held,
        mappings: c.mappings + segment_files,
        poisoned: c.poisoned,
        write_buffer_bytes_peak: c.write_buffer_bytes_peak,
        read_bytes_assembled: m.reads.assembled.load(Relaxed),
        files_stitched: m.reads.stitched.load(Relaxed),
        files_dropped_on_open: engine.dropped_on_open(),
        segment_files,
        segment_bytes,
        segments_exported: m.segments_exported.load(Relaxed),
        bytes_exported: m.bytes_exported.load(Relaxed),
        bytes_exported_in_kernel: m.bytes_copied_in_kernel.load(Relaxed),
        bytes_read_to_checksum: m.bytes_read_to_checksum.load(Relaxed),
        segments_built_in_place: m.segments_built_in_place.load(Relaxed),
        segment_files_being_built: table.building_segments().len(),
        segment_bytes_being_built: table.building_bytes(),
        bytes_built_in_place: m.bytes_built_in_place.load(Relaxed),
        container_files_reclaimed: m.container_files_reclaimed.load(Relaxed),
        segment_files_removed: m.segment_files_removed.load(Relaxed),
        bytes_copied_forward: m.bytes_copied_forward.load(Relaxed),
        background_errors: m.background_errors.load(Relaxed),
        tail_bytes_cut_on_open: c.tail_bytes_cut,
        tail_records_cut_on_open: c.tail_records_cut,
        seals: c.seals,
        damaged_files_detected: engine.segments().damaged_files(),
        bytes_replayed_on_open: engine.container().replayed_on_open(),
        container_files_not_replayed: engine.container().unchecked_files().len(),
        snapshots_written: engine.container().snapshot_stats().0,
        snapshot_bytes: engine.container().snapshot_stats().1,
    }
}

fn invalid(path: &Path, reason: &'static str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        Error::InvalidPath {
            path: path.to_path_buf(),
            reason,
        },
    )
}

impl Directory for JockyDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        let key = normalize(path)
            .map_err(|r| OpenReadError::wrap_io_error(invalid(path, r), path.to_path_buf()))?;
        self.engine
            .open_handle(&self.ns, &key)
            .ok_or_else(|| OpenReadError::FileDoesNotExist(path.to_path_buf()))?
            .map_err(|e| OpenReadError::wrap_io_error(e, path.to_path_buf()))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        let key = normalize(path).map_err(|r| DeleteError::IoError {
            io_error: Arc::new(invalid(path, r)),
            filepath: path.to_path_buf(),
        })?;
        match self.engine.delete(&self.ns, self.epoch, &key) {
            Ok(true) => Ok(()),
            Ok(false) => Err(DeleteError::FileDoesNotExist(path.to_path_buf())),
            Err(e) => Err(DeleteError::IoError {
                io_error: Arc::new(e.into()),
                filepath: path.to_path_buf(),
            }),
        }
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        let key = normalize(path)
            .map_err(|r| OpenReadError::wrap_io_error(invalid(path, r), path.to_path_buf()))?;
        Ok(self.engine.table().get(&self.ns, &key).is_some())
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        let key = normalize(path)
            .map_err(|r| OpenWriteError::wrap_io_error(invalid(path, r), path.to_path_buf()))?;
        let id = match self.engine.create(&self.ns, self.epoch, &key) {
            Ok(id) => id,
            Err(CreateError::Exists) => {
                return Err(OpenWriteError::FileAlreadyExists(path.to_path_buf()))
            }
            Err(CreateError::Other(e)) => {
                return Err(OpenWriteError::wrap_io_error(e.into(), path.to_path_buf()))
            }
        };
        let writer = FileWriter::new(
            self.engine.clone(),
            self.ns.clone(),
            id,
            path.to_path_buf(),
            self.opts.min_chunk,
            self.opts.max_chunk,
        );
        // tantivy's own 8 KiB BufWriter in front of ours; ours decides the extents.
        Ok(BufWriter::new(Box::new(writer)))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let handle = self.get_file_handle(path)?;
        let bytes = handle
            .read_bytes(0..handle.len())
            .map_err(|e| OpenReadError::wrap_io_error(e, path.to_path_buf()))?;
        Ok(bytes.as_slice().to_vec())
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let key = normalize(path).map_err(|r| invalid(path, r))?;
        let max = self.engine.max_atomic_len(&self.ns, &key);
        if data.len() > max {
            return Err(Error::TooLarge(format!(
                "atomic write of {} bytes to {path:?}: at most {max} fit in one container record",
                data.len()
            ))
            .into());
        }
        let durable = self.engine.sync_policy().on_atomic_write(&key);
        self.engine
            .atomic_write(&self.ns, self.epoch, &key, data, durable)?;
        if key == COMMIT_FILE {
            // Fire and forget, as tantivy's own directories do.
            drop(self.engine.watchers(&self.ns).broadcast());
            Worker::kick(self.engine.engine_arc());
        }
        Ok(())
    }

    fn sync_directory(&self) -> io::Result<()> {
        if self.engine.sync_policy().on_sync_directory() {
            // The chunks of segments being built in place, then the log.
            self.engine.sync_builds()?;
            self.engine.container().sync()?;
        } else {
            self.engine.container().sync_deferred()?;
        }
        Ok(())
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.engine
            .locks()
            .acquire(&self.ns, lock.filepath.clone(), lock.is_blocking)
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        Ok(self.engine.watch(&self.ns, watch_callback))
    }
}
