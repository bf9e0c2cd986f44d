//! The engine: one container, its file table, the in-memory locks and the watch
//! lists, shared by every directory opened over it. A `JockyDirectory` is an engine
//! plus a namespace ("" for a plain directory); a store of many indexes (later) is
//! one engine and many namespaces.

use crate::sync::lock;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError, Weak};

use ownedbytes::OwnedBytes;
use tantivy::directory::{WatchCallback, WatchCallbackList, WatchHandle};

use crate::container::{Container, ContainerOptions, Extent};
use crate::error::{Error, Result};
use crate::export::build::{Builds, Plan, SegKey};
use crate::export::segments::SegmentSet;
use crate::export::worker::Worker;
use crate::format::record::Payload;
use crate::format::segment_file::segment_file_name;
use crate::io::Storage;
use crate::lock::LockTable;
use crate::policy::{AdvicePolicy, ExportPolicy};
use crate::table::{Chunk, Entry, FileTable, Location};

pub(crate) struct Engine {
    /// This engine's own `Arc` (weak), for what outlives a call: a mapping
    /// that releases dead pages when it goes.
    me: Weak<Engine>,
    container: Container,
    table: RwLock<FileTable>,
    segments: SegmentSet,
    locks: Arc<LockTable>,
    watchers: Mutex<HashMap<String, Arc<WatchCallbackList>>>,
    /// Files found unterminated on open and dropped.
    dropped_on_open: usize,
    export_policy: ExportPolicy,
    export_copy: crate::policy::ExportCopy,
    /// Number of the next segment file.
    next_export_no: AtomicU64,
    /// One export or reclamation pass at a time.
    maintenance: Mutex<()>,
    /// Keeps the log's order and the table's in step for the changes whose
    /// effect depends on the table's state (create, delete, atomic write,
    /// export, copy forward): held from the check of the table, across the
    /// append, to the table's update. Readers never take it, and the table's
    /// own lock is only held for the in-memory check and update, never across
    /// a write, an fsync, a rotation or a wait for write-queue space.
    log_order: Mutex<()>,
    /// How many times each namespace was removed (absent: never). A directory
    /// remembers the count it was made under; writes through it are refused
    /// once the namespace was removed since. Read and changed under
    /// `log_order`.
    removals: Mutex<HashMap<String, u64>>,
    /// Per namespace, how many of its files have a writer open (tantivy is
    /// indexing or merging there).
    writers: Mutex<HashMap<String, usize>>,
    /// Atomic writes appended but not yet in the table (being made durable),
    /// by id. A later create, atomic write or delete of the same path, or the
    /// removal of the namespace, marks them superseded: the log says they are
    /// not the live version, so they are never published. Read and changed
    /// under `log_order`.
    pending: Mutex<HashMap<u64, PendingWrite>>,
    worker: Worker,
    counters: MaintenanceCounters,
    /// Held (shared) by every data append from its append to its entry in the
    /// table; a snapshot takes it exclusively, so that no data record is in
    /// the log but not yet in the table it writes out. Readers never take it.
    data_gate: RwLock<()>,
    /// What the next open would replay: `(bytes carried from before, bytes
    /// appended when counting started)`; reset by each snapshot.
    replay_debt: Mutex<(u64, u64)>,
    /// Segments being built in place (`export::build`).
    builds: Builds,
    /// From how many bytes a segment is built in place (`None`: never).
    build_min: Option<u64>,
    /// Tests: any `<name>.<ext>` file is a segment's (`EngineOptions::build_any`).
    build_any: bool,
    /// Last, so that it drops after every other field (the container, which
    /// holds the folder's lock, among them).
    on_close: OnClose,
}

/// Runs its callback when dropped: the engine's last field, so the callback
/// runs once the engine is closed, on whichever thread let go of it last.
#[derive(Default)]
struct OnClose(Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl Drop for OnClose {
    fn drop(&mut self) {
        let f = self.0.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(f) = f {
            f();
        }
    }
}

/// What export and reclamation did since open.
#[derive(Debug, Default)]
pub(crate) struct MaintenanceCounters {
    pub segments_exported: AtomicU64,
    pub bytes_exported: AtomicU64,
    pub container_files_reclaimed: AtomicU64,
    pub segment_files_removed: AtomicU64,
    pub bytes_copied_forward: AtomicU64,
    /// Bytes exported by an in-kernel copy (`copy_file_range`: reflinked
    /// where the file system can).
    pub bytes_copied_in_kernel: AtomicU64,
    pub background_errors: AtomicU64,
    /// Segment files created to build a segment in place, and the bytes of
    /// chunks written into them.
    pub segments_built_in_place: AtomicU64,
    pub bytes_built_in_place: AtomicU64,
    /// Bytes an export read only to compute checksums (see
    /// `Stats::bytes_read_to_checksum`).
    pub bytes_read_to_checksum: AtomicU64,
    /// What reads that span container extents cost.
    pub reads: Arc<crate::directory::ReadCounters>,
}

impl MaintenanceCounters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Options of the engine beyond the container's.
#[derive(Debug, Clone, Default)]
pub(crate) struct EngineOptions {
    pub export: ExportPolicy,
    pub advice: AdvicePolicy,
    pub verify: crate::policy::VerifyPolicy,
    pub export_copy: crate::policy::ExportCopy,
    pub build_in_place: bool,
    /// Tests: build any file `<name>.<ext>` in place (as a file of segment
    /// `<name>`) from this many bytes.
    pub build_any: Option<u64>,
}

/// An atomic write between its append and its publication in the table.
struct PendingWrite {
    ns: String,
    path: String,
    /// A later record replaced or deleted the path (or removed the namespace).
    superseded: bool,
}

/// Why `open_write` failed.
pub(crate) enum CreateError {
    Exists,
    Other(Error),
}

impl Engine {
    pub fn open(
        storage: Arc<dyn Storage>,
        root: &Path,
        opts: ContainerOptions,
        eopts: EngineOptions,
    ) -> Result<Engine> {
        if !storage.try_lock().map_err(|e| Error::io(root, e))? {
            return Err(Error::Locked {
                path: root.to_path_buf(),
            });
        }
        Self::open_mode(storage, root, opts, eopts, false)
    }

    /// Opens the folder for reading only, beside a writer process that may be
    /// appending, exporting and reclaiming: takes no lock, changes nothing,
    /// serves the log as far as it verifies. A replay that loses a race with
    /// the writer (a container or segment file reclaimed meanwhile, a record
    /// caught half written) is tried again from the start, a few times.
    pub fn open_read_only(
        storage: Arc<dyn Storage>,
        root: &Path,
        mut opts: ContainerOptions,
        mut eopts: EngineOptions,
    ) -> Result<Engine> {
        // No writer thread, no fsync, no background export.
        opts.write_mode = crate::policy::WriteMode::Inline;
        opts.sync = crate::policy::SyncPolicy::Never;
        eopts.export = ExportPolicy::Manual;
        const ATTEMPTS: u32 = 8;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Every file as listed stays readable for the replay, even if the
            // writer removes it meanwhile.
            let pinned = Arc::new(
                crate::io::pinned::Pinned::pin(storage.clone()).map_err(|e| Error::io(root, e))?,
            );
            let opened = Self::open_mode(pinned.clone(), root, opts.clone(), eopts.clone(), true);
            pinned.unpin();
            match opened {
                Ok(engine) => return Ok(engine),
                Err(
                    e @ (Error::Incomplete { .. }
                    | Error::Corrupted { .. }
                    | Error::ChecksumMismatch { .. }
                    | Error::Io { .. }),
                ) if attempt < ATTEMPTS => {
                    log::debug!(
                        "read-only open of {} raced a writer ({e}); again",
                        root.display()
                    );
                    std::thread::sleep(std::time::Duration::from_millis(5 << attempt.min(6)));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Brings a read-only engine up to the log's current state (replayed anew)
    /// and fires the watchers of every namespace whose `meta.json` changed.
    /// Returns whether any did. A writer's engine is always current: `false`.
    pub fn refresh(&self, root: &Path) -> Result<bool> {
        if !self.container.is_read_only() {
            return Ok(false);
        }
        let newer = Engine::open_read_only(
            self.container.storage().clone(),
            root,
            ContainerOptions::read_only(),
            EngineOptions::default(),
        )?;
        // Only namespaces this engine decoded can have watchers (a directory
        // was made for them).
        let meta_ids = |t: &FileTable| -> HashMap<String, u64> {
            t.namespaces()
                .into_iter()
                .filter(|ns| t.is_loaded(ns))
                .filter_map(|ns| {
                    let id = t.get(&ns, crate::policy::COMMIT_FILE)?.id;
                    Some((ns, id))
                })
                .collect()
        };
        // Namespaces this engine has decoded may be in use by directories:
        // decoded in the newer table too before it replaces this one's.
        let loaded: Vec<String> = {
            let t = self.table();
            t.namespaces()
                .into_iter()
                .filter(|ns| t.is_loaded(ns))
                .collect()
        };
        for ns in &loaded {
            newer.ensure_ns(ns)?;
        }
        let before = meta_ids(&self.table());
        let Engine {
            container,
            table,
            segments,
            ..
        } = newer;
        let table = table.into_inner().unwrap_or_else(|e| e.into_inner());
        let after = meta_ids(&table);
        {
            // Readers see the old or the new state whole: the table is swapped
            // while the mappings it points into are already in place.
            let mut t = self.table_mut();
            self.segments.adopt(segments);
            self.container.adopt(container);
            *t = table;
        }
        let mut changed = false;
        for (ns, id) in &after {
            if before.get(ns) != Some(id) {
                changed = true;
                drop(self.watchers(ns).broadcast());
            }
        }
        Ok(changed)
    }

    fn open_mode(
        storage: Arc<dyn Storage>,
        root: &Path,
        opts: ContainerOptions,
        eopts: EngineOptions,
        read_only: bool,
    ) -> Result<Engine> {
        let mut table = if opts.full_replay {
            FileTable::full_replay()
        } else {
            FileTable::new()
        };
        let segments = SegmentSet::new(root, eopts.advice, eopts.verify);
        let (container, found, plan) =
            Container::open(storage.clone(), root, opts, read_only, &mut |rec| {
                if let (true, Payload::Export { export_no, .. }) = (read_only, &rec.payload) {
                    // Beside a writer: map the segment file the moment the log
                    // names it. It exists until a later record (which this
                    // replay reads too) declares it dead; mapped, it stays
                    // readable after the writer removes it.
                    if !segments.contains(*export_no) {
                        let _ = segments.open_existing(&*storage, *export_no);
                    }
                }
                table.replay(rec)
            })?;
        // A reader beside a writer leaves files being written as they are
        // (nothing references them yet); the writer drops them on its open.
        let dropped_on_open = if read_only { 0 } else { table.finish_replay() };
        if dropped_on_open > 0 {
            log::info!("dropped {dropped_on_open} files that were never terminated before a crash");
        }
        // Segment files: those the log references are mapped (a missing or
        // damaged one is an error); the others go only if the log proves them
        // dead or incomplete. Nothing in the folder changes before all of them
        // checked out.
        let live = table.live_segments();
        for no in &live {
            if segments.contains(*no) {
                continue;
            }
            if !found.contains(no) {
                return Err(Error::Incomplete {
                    path: root.join(segment_file_name(*no)),
                    reason: format!(
                        "is missing: the log references it ({} live file(s) in it)",
                        table.segment_use(*no)
                    ),
                });
            }
            segments.open_existing(&*storage, *no)?;
        }
        // Segment files being built in place (chunks of live files, no
        // table yet): present, and read only where the chunks are.
        let building = table.building_segments();
        for no in &building {
            // Beside a writer the file may have been created after the folder
            // was listed: reads of it fail if it is really missing.
            if !read_only && !found.contains(no) {
                return Err(Error::Incomplete {
                    path: root.join(segment_file_name(*no)),
                    reason: format!(
                        "is missing: the log places chunks of {} live file(s) in it",
                        table.building_use(*no)
                    ),
                });
            }
        }
        // Beside a writer (read-only) an unreferenced file is an export in
        // progress or a dead file being removed: none of the reader's business.
        let unreferenced: Vec<u64> = found
            .iter()
            .copied()
            .filter(|n| !read_only && !live.contains(n) && !building.contains(n))
            .collect();
        // Segment files the log has a record of: begun, exported or dropped.
        // Only those may be removed when nothing live is in them.
        let logged_segments = table.logged_segments().clone();
        if let Some(no) = unreferenced.iter().find(|n| !logged_segments.contains(n)) {
            return Err(Error::Incomplete {
                path: root.join(segment_file_name(*no)),
                reason: "is not referenced by the log, and the log has no record of writing or dropping it (copied in from another index?): move it out of the folder to open".into(),
            });
        }
        if !read_only {
            container.finish_open(plan)?;
            // Evidence is kept (in later snapshots) only for segment files
            // still here; the unreferenced ones go right below.
            table.retain_logged_segments(|n| live.contains(n) || building.contains(n));
        }
        container.note_file_id_floor(table.next_id());
        for no in &unreferenced {
            log::info!("removing segment file {no}: the log says it is dead or incomplete");
            let name = segment_file_name(*no);
            storage
                .remove(&name)
                .map_err(|e| Error::io(root.join(&name), e))?;
        }
        if !unreferenced.is_empty() && container.sync_policy() != crate::policy::SyncPolicy::Never {
            storage.sync_dir().map_err(|e| Error::io(root, e))?;
        }
        let next_export_no = found
            .iter()
            .chain(&live)
            .chain(&logged_segments)
            .max()
            .map_or(0, |n| n + 1);
        let replayed = container.replayed_on_open();
        // Built in place only where every durable commit syncs what it names
        // (not on a timer, which syncs the container alone).
        // And only where exports come by themselves: under `Manual` a file
        // built in place would wait for an export that may never come, and
        // no snapshot is written while one is.
        let build_min = ((eopts.build_in_place && eopts.export != ExportPolicy::Manual)
            || eopts.build_any.is_some())
        .then_some(())
        .filter(|()| !read_only && container.sync_policy().interval().is_none())
        .map(|()| match (eopts.build_any, eopts.export) {
            (Some(min), _) => min.max(1),
            (None, export) => match export {
                ExportPolicy::OnCommit { min_segment_bytes }
                | ExportPolicy::WhenQuiet {
                    min_segment_bytes, ..
                } => min_segment_bytes.max(1),
                _ => crate::policy::DEFAULT_MIN_EXPORT_BYTES,
            },
        });
        let builds = Builds::default();
        if !read_only {
            for no in &building {
                builds.adopt(*no);
            }
        }
        Ok(Engine {
            me: Weak::new(),
            replay_debt: Mutex::new((replayed, 0)),
            data_gate: RwLock::new(()),
            container,
            table: RwLock::new(table),
            segments,
            locks: Arc::new(LockTable::default()),
            watchers: Mutex::new(HashMap::new()),
            dropped_on_open,
            export_policy: eopts.export,
            export_copy: eopts.export_copy,
            next_export_no: AtomicU64::new(next_export_no),
            maintenance: Mutex::new(()),
            log_order: Mutex::new(()),
            removals: Mutex::new(HashMap::new()),
            writers: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            worker: Worker::default(),
            counters: MaintenanceCounters::default(),
            builds,
            build_min,
            build_any: eopts.build_any.is_some(),
            on_close: OnClose::default(),
        })
    }

    /// Where the export may copy inside the kernel from.
    pub fn export_copy(&self) -> crate::policy::ExportCopy {
        self.export_copy
    }

    /// The container (the log).
    pub fn container(&self) -> &Container {
        &self.container
    }

    /// The mapped segment files.
    pub fn segments(&self) -> &SegmentSet {
        &self.segments
    }

    /// tantivy's locks, in memory.
    pub fn locks(&self) -> &Arc<LockTable> {
        &self.locks
    }

    /// A writer of a file of `ns` was opened (see [`Engine::is_writing`]).
    pub fn writer_opened(&self, ns: &str) {
        *lock(&self.writers).entry(ns.to_string()).or_default() += 1;
    }

    /// That writer was dropped.
    pub fn writer_closed(&self, ns: &str) {
        let mut w = lock(&self.writers);
        if let Some(n) = w.get_mut(ns) {
            *n -= 1;
            if *n == 0 {
                w.remove(ns);
            }
        }
    }

    /// Whether a file of `ns` has a writer open: tantivy is indexing or
    /// merging in it.
    pub fn is_writing(&self, ns: &str) -> bool {
        lock(&self.writers).contains_key(ns)
    }

    /// What export and reclamation did since open.
    pub fn counters(&self) -> &MaintenanceCounters {
        &self.counters
    }

    /// This engine's state in the process-wide maintenance pool.
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// Files found unterminated on open and dropped.
    pub fn dropped_on_open(&self) -> usize {
        self.dropped_on_open
    }

    /// Takes the next segment file number.
    pub fn take_export_no(&self) -> u64 {
        self.next_export_no.fetch_add(1, Ordering::SeqCst)
    }

    /// One export or reclamation pass at a time: held for the whole pass.
    pub fn maintenance_pass(&self) -> std::sync::MutexGuard<'_, ()> {
        lock(&self.maintenance)
    }

    /// The log-order lock (see the field): take it before reading the table
    /// state a record depends on, hold it across the append and the table's
    /// update.
    pub fn log_order(&self) -> std::sync::MutexGuard<'_, ()> {
        lock(&self.log_order)
    }

    /// The policy's minimum segment size for automatic export, and how long to
    /// wait after the last commit (`None`: right after each commit).
    pub fn auto_export(&self) -> Option<(u64, Option<std::time::Duration>)> {
        match self.export_policy {
            ExportPolicy::Manual => None,
            ExportPolicy::OnCommit { min_segment_bytes } => Some((min_segment_bytes, None)),
            ExportPolicy::WhenQuiet {
                min_segment_bytes,
                quiet,
            } => Some((min_segment_bytes, Some(quiet))),
        }
    }

    /// `f` runs once this engine is closed (its folder's lock released).
    pub fn on_close(&self, f: impl FnOnce() + Send + 'static) {
        *lock(&self.on_close.0) = Some(Box::new(f));
    }

    /// The engine in its `Arc` (what every owner holds).
    pub fn into_arc(self) -> Arc<Engine> {
        Arc::new_cyclic(|me| Engine {
            me: me.clone(),
            ..self
        })
    }

    /// Drops the pages of `extents` (file `id` at `ns`/`path` when a mapping
    /// of them was made) from memory if they are dead now: deleted, exported
    /// or copied forward. Called when a stitched mapping goes, which kept
    /// them from being dropped when they died. A hint: skipped if the table
    /// is busy (never waits on it: the caller may hold it).
    fn release_if_dead(&self, ns: &str, path: &str, id: u64, extents: &[Extent]) {
        let live = match self.table.try_read() {
            Ok(t) => t.get(ns, path).is_some_and(|cur| {
                cur.id == id && matches!(&cur.loc, Location::Container(x) if x[..] == extents[..])
            }),
            Err(TryLockError::Poisoned(p)) => p.into_inner().get(ns, path).is_some(),
            Err(TryLockError::WouldBlock) => true,
        };
        if !live {
            self.container.release(extents);
        }
    }

    pub fn table(&self) -> RwLockReadGuard<'_, FileTable> {
        crate::sync::read(&self.table)
    }

    pub fn table_mut(&self) -> RwLockWriteGuard<'_, FileTable> {
        crate::sync::write(&self.table)
    }

    /// How many times namespace `ns` was removed: a directory made now
    /// writes under this epoch.
    pub fn epoch(&self, ns: &str) -> u64 {
        lock(&self.removals).get(ns).copied().unwrap_or(0)
    }

    /// Refuses a write under an epoch the namespace has moved past. Call with
    /// `log_order` held.
    fn check_epoch(&self, ns: &str, epoch: u64, path: &str) -> Result<()> {
        if self.epoch(ns) != epoch {
            return Err(Error::TenantRemoved {
                tenant: ns.to_string(),
                path: path.to_string(),
            });
        }
        Ok(())
    }

    /// Marks the pending atomic writes of `path` superseded: a record about
    /// the same path is being logged after them. Returns their ids. Call with
    /// `log_order` held.
    fn supersede_pending(&self, ns: &str, path: &str) -> Vec<u64> {
        let mut ids = Vec::new();
        for (id, p) in lock(&self.pending).iter_mut() {
            if p.ns == ns && p.path == path {
                p.superseded = true;
                ids.push(*id);
            }
        }
        ids
    }

    /// Registers a new file and logs its creation.
    pub fn create(
        &self,
        ns: &str,
        epoch: u64,
        path: &str,
    ) -> std::result::Result<u64, CreateError> {
        let _order = self.log_order();
        self.check_epoch(ns, epoch, path)
            .map_err(CreateError::Other)?;
        if self.table().get(ns, path).is_some() {
            return Err(CreateError::Exists);
        }
        // Ids grow in log order (replay checks it): allocated under the
        // log-order lock, published after the append.
        let id = self.table_mut().alloc_id();
        self.supersede_pending(ns, path);
        let appended = self
            .container
            .append(&[Payload::Create {
                file_id: id,
                namespace: ns,
                path,
            }])
            .map_err(CreateError::Other)?;
        let created = self
            .table_mut()
            .create_with_id(ns, path, id, appended.file_no);
        debug_assert!(created);
        Ok(id)
    }

    /// Appends a chunk of file `id` at `file_offset`; with `finish_len`, the file is
    /// terminated in the same write. With `align`, the chunk of a file of more
    /// than one chunk starts on a container page.
    pub fn write_chunk(
        &self,
        id: u64,
        file_offset: u64,
        bytes: &[u8],
        finish_len: Option<u64>,
        align: bool,
    ) -> Result<()> {
        let mut payloads = Vec::with_capacity(2);
        if !bytes.is_empty() {
            payloads.push(Payload::Data {
                file_id: id,
                file_offset,
                bytes,
            });
        }
        if let Some(len) = finish_len {
            payloads.push(Payload::Finish { file_id: id, len });
        }
        if payloads.is_empty() {
            return Ok(());
        }
        let _gate = crate::sync::read(&self.data_gate);
        let several = file_offset > 0 || finish_len.is_none();
        let appended = if align && several && !bytes.is_empty() {
            self.container.append_aligned(&payloads)?
        } else {
            self.container.append(&payloads)?
        };
        let mut table = self.table_mut();
        if let Some(Some(extent)) = appended.extents.first() {
            table.add_extent(id, *extent);
        }
        if finish_len.is_some() {
            table.terminate(id, appended.file_no);
        }
        drop(table);
        drop(appended);
        Ok(())
    }

    /// The segment file `path` of namespace `ns` belongs to, if segments are
    /// built in place here and it is one of a segment's files.
    pub fn segment_key(&self, ns: &Arc<str>, path: &str) -> Option<SegKey> {
        self.build_min?;
        let id = match self.build_any {
            // Tests: the name up to its first dot is the segment.
            true => path.split_once('.')?.0,
            false => crate::export::build::segment_of(path)?,
        };
        Some((ns.clone(), Arc::from(id)))
    }

    pub fn builds(&self) -> &Builds {
        &self.builds
    }

    /// As [`Self::write_chunk`], for a file of segment `seg`: once the
    /// segment is large enough, into the segment file it is built in.
    pub fn write_chunk_of(
        &self,
        seg: Option<&SegKey>,
        id: u64,
        file_offset: u64,
        bytes: &[u8],
        finish_len: Option<u64>,
        align: bool,
    ) -> Result<()> {
        let (Some(key), Some(min), true, false) = (seg, self.build_min, align, bytes.is_empty())
        else {
            return self.write_chunk(id, file_offset, bytes, finish_len, align);
        };
        let last = finish_len.is_some();
        let whole = file_offset == 0 && last;
        let len = bytes.len() as u64;
        let mut plan = self
            .builds
            .plan(key, id, file_offset, len, whole, last, min);
        if plan == Plan::Create {
            self.begin_build(key)?;
            plan = self
                .builds
                .plan(key, id, file_offset, len, whole, last, min);
        }
        match plan {
            Plan::Place { no, offset } => {
                let placed = self.place(no, offset, id, file_offset, bytes, finish_len);
                match placed {
                    Ok(()) => self.builds.done(no),
                    Err(_) => self.builds.abandon(no),
                }
                placed
            }
            Plan::Refuse => Err(Error::io(
                self.container.root(),
                std::io::Error::other(format!(
                    "file id {id}: its chunks are in a segment file being built, and a \
                     write of it failed before: it cannot go on"
                )),
            )),
            Plan::Container | Plan::Create => {
                self.write_chunk(id, file_offset, bytes, finish_len, align)
            }
        }
    }

    /// Creates the segment file segment `key` is to be built in: its
    /// `ExportBegin` record durable first (the evidence that lets an open
    /// remove it), then the file, then the folder synced (so the file is
    /// there whenever a record naming it is).
    fn begin_build(&self, key: &SegKey) -> Result<u64> {
        let _one = lock(&self.builds.creating);
        if let Some(no) = self.builds.file_of(key) {
            return Ok(no);
        }
        let no = self.take_export_no();
        let name = segment_file_name(no);
        let path = self.container.root().join(&name);
        if no > crate::format::record::MAX_FILE_NO {
            return Err(Error::TooLarge(format!(
                "segment file number {no} has more than ten digits"
            )));
        }
        {
            let appended = self
                .container
                .append(&[Payload::ExportBegin { export_no: no }])?;
            self.table_mut().note_segment(no);
            drop(appended);
        }
        // The evidence that lets an open after a crash remove the file: in
        // the container file before the file exists, under every policy (as
        // an export's): under `SyncPolicy::Never` the record may still be in
        // the write stage, which a killed process loses, and the next open
        // would find a segment file the log has no record of.
        self.container.sync()?;
        let sync = self.container.sync_policy() != crate::policy::SyncPolicy::Never;
        let storage = self.container.storage();
        {
            let _io = lock(&self.builds.io);
            drop(storage.create(&name).map_err(|e| Error::io(&path, e))?);
        }
        if sync {
            storage.sync_dir().map_err(|e| Error::io(&path, e))?;
        }
        self.builds.created(key, no);
        MaintenanceCounters::add(&self.counters.segments_built_in_place, 1);
        Ok(no)
    }

    /// Writes a chunk of file `id` at `offset` of segment file `no` (being
    /// built) and logs where it is; with `finish_len`, the file is terminated
    /// in the same append.
    fn place(
        &self,
        no: u64,
        offset: u64,
        id: u64,
        file_offset: u64,
        bytes: &[u8],
        finish_len: Option<u64>,
    ) -> Result<()> {
        let name = segment_file_name(no);
        {
            // One descriptor for building at a time (the fd bound).
            let _io = lock(&self.builds.io);
            self.container
                .storage()
                .open(&name)
                .and_then(|f| {
                    f.write_at(offset, bytes)?;
                    // Write-back starts now, as the container's does: the
                    // commit's sync then finds little left to write.
                    f.start_write_back(offset..offset + bytes.len() as u64);
                    Ok(())
                })
                .map_err(|e| Error::io(self.container.root().join(&name), e))?;
        }
        let chunk = Chunk {
            seg_offset: offset,
            len: bytes.len() as u64,
            crc: crc32fast::hash(bytes),
        };
        let mut payloads = vec![Payload::Placed {
            file_id: id,
            file_offset,
            export_no: no,
            seg_offset: offset,
            len: chunk.len,
            crc: chunk.crc,
        }];
        if let Some(len) = finish_len {
            payloads.push(Payload::Finish { file_id: id, len });
        }
        let _gate = crate::sync::read(&self.data_gate);
        let appended = self.container.append(&payloads)?;
        let mut table = self.table_mut();
        table.add_placed(id, no, chunk, true, appended.file_no);
        if finish_len.is_some() {
            table.terminate(id, appended.file_no);
        }
        drop(table);
        drop(appended);
        MaintenanceCounters::add(&self.counters.bytes_built_in_place, chunk.len);
        Ok(())
    }

    /// Makes the chunks written into segment files being built durable (before
    /// a sync of the container makes records naming them durable).
    pub fn sync_builds(&self) -> Result<()> {
        if self.build_min.is_none()
            || self.container.sync_policy() == crate::policy::SyncPolicy::Never
        {
            return Ok(());
        }
        // One sync of them at a time: a caller that finds nothing dirty
        // because another took the files waits for that one's syncs.
        let _one = lock(&self.builds.syncing);
        let storage = self.container.storage();
        for no in self.builds.take_dirty() {
            let name = segment_file_name(no);
            let path = self.container.root().join(&name);
            let _io = lock(&self.builds.io);
            match storage.open(&name) {
                Ok(f) => {
                    if let Err(e) = f.sync_data() {
                        // Pages the kernel failed to write may be gone even
                        // if a retry succeeds: refuse everything from now on.
                        return Err(self.container.poison_for(&path, "fdatasync", e));
                    }
                }
                // Dropped meanwhile (every file in it deleted): nothing to sync.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    self.builds.mark_dirty(no);
                    return Err(Error::io(path, e));
                }
            }
        }
        Ok(())
    }

    /// The parts of a file being built in place, zero-copy: its bytes in the
    /// container, then one part per run of its chunks in segment file `no`
    /// (mapped for this handle; the descriptor closes at once), and what to
    /// run once a mapping of them all as one range (`io::stitch`) is gone.
    /// Chunks this process did not write are checked by the first read
    /// touching them.
    #[allow(clippy::type_complexity)]
    fn placed_parts(
        &self,
        prefix: &[Extent],
        no: u64,
        chunks: &[Chunk],
        fresh: bool,
    ) -> std::io::Result<(
        Vec<(OwnedBytes, Option<crate::directory::Check>)>,
        crate::io::stitch::OnUnmap,
    )> {
        let mut parts = Vec::with_capacity(prefix.len() + 1);
        for x in prefix {
            let (bytes, check) = self.container.read_deferring(*x)?;
            let check = check.map(|c| Box::new(move || c.run()) as crate::directory::Check);
            parts.push((bytes, check));
        }
        let name = segment_file_name(no);
        let end = chunks
            .iter()
            .map(|c| c.seg_offset + c.len)
            .max()
            .unwrap_or(0);
        let view = {
            // One descriptor of a segment file being built at a time.
            let _io = lock(&self.builds.io);
            let file = self.container.storage().open(&name)?;
            let have = file.len()?;
            if have < end {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{name}: {have} bytes, but chunks placed in it reach {end} (lost or damaged)"
                    ),
                ));
            }
            file.view(end)?
        };
        let mapping = view.read(0..end)?;
        drop(view);
        for (a, b, range) in crate::table::runs(chunks) {
            let bytes = mapping.slice(range.start as usize..range.end as usize);
            let check = (!fresh).then(|| {
                let (run, chunks, name) = (bytes.clone(), chunks[a..b].to_vec(), name.clone());
                Box::new(move || check_chunks(&name, &run, range.start, &chunks))
                    as crate::directory::Check
            });
            parts.push((bytes, check));
        }
        Ok((parts, Box::new(|| {})))
    }

    /// Makes sure namespace `ns`'s files are decoded from the snapshot the
    /// table was loaded from (a short write lock, once per namespace). Every
    /// path that looks a namespace up calls this first: a directory when it
    /// is made, removal, export, verification.
    pub fn ensure_ns(&self, ns: &str) -> Result<()> {
        if self.table().is_loaded(ns) {
            return Ok(());
        }
        self.table_mut()
            .ensure_loaded(ns)
            .map_err(|reason| Error::Corrupted {
                file: self.container.root().to_path_buf(),
                offset: 0,
                reason,
            })
    }

    /// Decodes every namespace not decoded yet, one at a time (readers of
    /// other namespaces wait at most for one).
    pub fn ensure_all(&self) -> Result<()> {
        loop {
            let Some(ns) = self.table().first_unloaded() else {
                return Ok(());
            };
            self.ensure_ns(&ns)?;
        }
    }

    /// Bytes of log the next open would replay (from the newest snapshot on).
    pub fn replay_debt(&self) -> u64 {
        let (carried, base) = *lock(&self.replay_debt);
        carried + self.container.bytes_appended().saturating_sub(base)
    }

    /// Writes a snapshot of the file table at the start of a new container
    /// file (see [`Container::rotate_with_snapshot`]) if the next open would
    /// replay at least `min_debt` bytes. The snapshot must be exactly the table
    /// the log describes: it is taken with every data append and every
    /// table-changing append held off (`data_gate`, then `log_order`) and only
    /// once every appended record is in the table (an atomic write being made
    /// durable is not yet: then it tries again shortly, and gives up after a
    /// while — the next pass or close tries again). Writers of every
    /// namespace wait while the image is encoded and written; readers never do.
    /// Returns whether a snapshot was written.
    pub fn write_snapshot(&self, min_debt: u64) -> Result<bool> {
        if self.container.is_read_only() || self.replay_debt() < min_debt {
            return Ok(false);
        }
        for attempt in 0..50u32 {
            let gate = crate::sync::write(&self.data_gate);
            let order = self.log_order();
            if self.container.has_any_unapplied() {
                drop(order);
                drop(gate);
                std::thread::sleep(std::time::Duration::from_micros(200 << attempt.min(5)));
                continue;
            }
            // None while a segment is being built in place: its export
            // (soon, when the segment is committed) lets a later pass write one.
            let Some(image) = self.table().image() else {
                return Ok(false);
            };
            let written = self.container.rotate_with_snapshot(&image)?;
            if written {
                *lock(&self.replay_debt) = (0, self.container.bytes_appended());
            }
            return Ok(written);
        }
        Ok(false)
    }

    /// Removes a file; its bytes stay readable through slices opened before.
    /// Returns `false` if there was no such file.
    pub fn delete(&self, ns: &str, epoch: u64, path: &str) -> Result<bool> {
        let removed = {
            let _order = self.log_order();
            self.check_epoch(ns, epoch, path)?;
            let Some(id) = self.table().get(ns, path).map(|e| e.id) else {
                return Ok(false);
            };
            // Newer versions of the path still being made durable are in the
            // log before this record, not in the table: deleted in the log
            // too, or a replay would bring the newest of them back.
            let payloads: Vec<Payload<'_>> = std::iter::once(id)
                .chain(self.supersede_pending(ns, path))
                .map(|file_id| Payload::Delete { file_id })
                .collect();
            self.container.append(&payloads)?;
            self.table_mut().take_by_id(id)
        };
        if let Some(e) = removed {
            self.release(&e);
        }
        Ok(true)
    }

    /// Drops a dead file's pages from memory (outside the table lock: a large
    /// range takes a while). See [`crate::io::ReadView::release`].
    fn release(&self, e: &Entry) {
        match &e.loc {
            Location::Container(x) | Location::Placed { prefix: x, .. } => {
                self.container.release(x)
            }
            Location::Segment { export_no, offset } => {
                self.segments.release(*export_no, *offset..*offset + e.len)
            }
        }
    }

    /// Deletes every file of a namespace (logged in batches) and makes the deletion
    /// durable. Slices opened before stay readable. Returns how many files went.
    pub fn remove_namespace(&self, ns: &str) -> Result<usize> {
        self.ensure_ns(ns)?;
        let mut removed = 0;
        {
            let _order = self.log_order();
            // Directories made before this point refuse writes from now on.
            *lock(&self.removals).entry(ns.to_string()).or_default() += 1;
            let (mut ids, commit) = {
                let t = self.table();
                (
                    t.ids_in(ns),
                    t.get(ns, crate::policy::COMMIT_FILE).map(|e| e.id),
                )
            };
            // The commit point goes first: a reader beside this writer, or a
            // crash, that catches the log part-way through the deletions sees
            // the namespace's last commit whole or no commit at all, never a
            // `meta.json` naming files already deleted (the batches are
            // separate records, and a batch can be cut short).
            let mut first: Vec<u64> = commit.into_iter().collect();
            ids.retain(|id| Some(*id) != commit);
            // Atomic writes of the namespace still being made durable: not in
            // the table yet, deleted in the log all the same.
            for (id, p) in lock(&self.pending).iter_mut() {
                if p.ns == ns {
                    p.superseded = true;
                    if p.path == crate::policy::COMMIT_FILE {
                        first.push(*id);
                    } else {
                        ids.push(*id);
                    }
                }
            }
            first.append(&mut ids);
            let ids = first;
            for batch in ids.chunks(1024) {
                let payloads: Vec<Payload<'_>> = batch
                    .iter()
                    .map(|id| Payload::Delete { file_id: *id })
                    .collect();
                self.container.append(&payloads)?;
                let mut table = self.table_mut();
                for id in batch {
                    removed += usize::from(table.remove_by_id(*id));
                }
            }
        }
        self.container.sync()?;
        lock(&self.watchers).remove(ns);
        Ok(removed)
    }

    /// Writes a whole file in one record and (if `durable`) makes it durable before
    /// it replaces the previous version in the table.
    pub fn atomic_write(
        &self,
        ns: &str,
        epoch: u64,
        path: &str,
        data: &[u8],
        durable: bool,
    ) -> Result<()> {
        // `appended` lives until the table has the new version: until then
        // reclamation leaves its container file alone.
        let (id, appended) = {
            let _order = self.log_order();
            self.check_epoch(ns, epoch, path)?;
            let id = self.table_mut().alloc_id();
            let appended = self.container.append(&[Payload::AtomicWrite {
                file_id: id,
                namespace: ns,
                path,
                bytes: data,
            }])?;
            self.supersede_pending(ns, path);
            lock(&self.pending).insert(
                id,
                PendingWrite {
                    ns: ns.to_string(),
                    path: path.to_string(),
                    superseded: false,
                },
            );
            (id, appended)
        };
        let extent = appended
            .extents
            .first()
            .copied()
            .flatten()
            .expect("an atomic write record carries bytes");
        let synced = if durable {
            // Chunks placed in segment files first: a commit point made durable
            // here may name them.
            self.sync_builds().and_then(|()| self.container.sync())
        } else {
            self.container.sync_deferred()
        };
        let _order = self.log_order();
        let pending = lock(&self.pending).remove(&id);
        synced?;
        // If the namespace was removed meanwhile, the removal logged this
        // write's deletion with its own.
        self.check_epoch(ns, epoch, path)?;
        if pending.is_some_and(|p| !p.superseded) {
            self.table_mut().put_atomic_if_newer(ns, path, id, extent);
        }
        drop(appended);
        Ok(())
    }

    pub fn max_atomic_len(&self, ns: &str, path: &str) -> usize {
        self.container
            .max_payload()
            .saturating_sub(20 + ns.len() + path.len())
    }

    /// The bytes of each extent of `entry`, zero-copy.
    pub fn read_extents(&self, extents: &[Extent]) -> std::io::Result<Vec<OwnedBytes>> {
        extents.iter().map(|e| self.container.read(*e)).collect()
    }

    /// Looks a file up and opens a handle on its bytes. The table's lock is
    /// held only for the lookup, not for the read (which may wait for bytes
    /// still staged for the writer thread): if reclamation or export moved the
    /// file and removed the old place in between, the lookup is made again.
    /// `None` if there is no such file.
    pub fn open_handle(
        &self,
        ns: &str,
        path: &str,
    ) -> Option<std::io::Result<Arc<dyn tantivy::directory::FileHandle>>> {
        let mut entry = self.table().get(ns, path)?.clone();
        loop {
            let read = match &entry.loc {
                Location::Container(extents) => {
                    // A small file is asked for whole before its first read:
                    // see `Container::prefetch` (what a tenant's first query
                    // after a cold open otherwise pays; cached pages cost a
                    // syscall that finds them).
                    if entry.len <= crate::policy::FETCH_WHOLE {
                        self.container.prefetch(extents);
                    }
                    // Asked before the read: bytes written stay written, so
                    // the read then returns slices of the mappings.
                    // Only a file of several chunks may be stitched: the
                    // callback (and its copies of the names) only for it.
                    let stitch =
                        (extents.len() > 1 && self.container.is_mapped(extents)).then(|| {
                            let (me, ns, path) =
                                (self.me.clone(), ns.to_string(), path.to_string());
                            let (id, extents) = (entry.id, extents.clone());
                            Box::new(move || {
                                if let Some(engine) = me.upgrade() {
                                    engine.release_if_dead(&ns, &path, id, &extents);
                                }
                            }) as crate::io::stitch::OnUnmap
                        });
                    // Each chunk is checked by the first read touching it
                    // (where its container file was not replayed on open),
                    // not all of them now: opening a segment reads footers.
                    let parts: std::io::Result<Vec<_>> = extents
                        .iter()
                        .map(|x| {
                            let (bytes, check) = self.container.read_deferring(*x)?;
                            let check =
                                check.map(|c| Box::new(move || c.run()) as crate::directory::Check);
                            Ok((bytes, check))
                        })
                        .collect();
                    parts.map(|parts| {
                        Arc::new(crate::directory::ExtentsHandle::counted(
                            parts,
                            self.counters.reads.clone(),
                            stitch,
                        )) as Arc<dyn tantivy::directory::FileHandle>
                    })
                }
                Location::Segment { export_no, offset } => self
                    .segments
                    .handle(*export_no, *offset..*offset + entry.len),
                Location::Placed {
                    prefix,
                    export_no,
                    chunks,
                    fresh,
                } => self.placed_parts(prefix, *export_no, chunks, *fresh).map(
                    |(parts, on_unmap)| {
                        // A file of several runs is mapped as one range on
                        // its first read across them, as a container file is.
                        let stitch = (parts.len() > 1).then_some(on_unmap);
                        Arc::new(crate::directory::ExtentsHandle::counted(
                            parts,
                            self.counters.reads.clone(),
                            stitch,
                        )) as Arc<dyn tantivy::directory::FileHandle>
                    },
                ),
            };
            if read.is_ok() {
                return Some(read);
            }
            let now = self.table().get(ns, path)?.clone();
            if now.id == entry.id && now.loc == entry.loc {
                return Some(read);
            }
            entry = now;
        }
    }

    /// A whole file in one buffer (for the small files export and reclamation
    /// read whole: `meta.json`, copies forward).
    pub fn read_whole(&self, entry: &Entry) -> std::io::Result<Vec<u8>> {
        let parts = self.read_entry(entry)?;
        let mut out = Vec::with_capacity(entry.len as usize);
        for p in &parts {
            out.extend_from_slice(p.as_slice());
        }
        Ok(out)
    }

    /// The bytes of a file, zero-copy: one piece per extent in the container, one
    /// piece for a file in a segment file.
    pub fn read_entry(&self, entry: &Entry) -> std::io::Result<Vec<OwnedBytes>> {
        // Read whole (an export, a copy, verification): each container extent
        // is asked for exactly, in one request. A fault on a page the kernel
        // dropped meanwhile would read the device's read-around window around
        // it (8 MiB on this disk), most of it other files' chunks.
        if let Location::Container(x) | Location::Placed { prefix: x, .. } = &entry.loc {
            self.container.prefetch(x);
        }
        match &entry.loc {
            Location::Container(extents) => self.read_extents(extents),
            Location::Segment { export_no, offset } => Ok(vec![self
                .segments
                .read(*export_no, *offset..*offset + entry.len)?]),
            // Checked here (an export or a copy reads it whole), not deferred.
            Location::Placed {
                prefix,
                export_no,
                chunks,
                fresh,
            } => self
                .placed_parts(prefix, *export_no, chunks, *fresh)?
                .0
                .into_iter()
                .map(|(bytes, check)| {
                    if let Some(check) = check {
                        check()?;
                    }
                    Ok(bytes)
                })
                .collect(),
        }
    }

    pub fn sync_policy(&self) -> crate::policy::SyncPolicy {
        self.container.sync_policy()
    }

    pub fn watchers(&self, ns: &str) -> Arc<WatchCallbackList> {
        lock(&self.watchers)
            .entry(ns.to_string())
            .or_default()
            .clone()
    }

    pub fn watch(&self, ns: &str, cb: WatchCallback) -> WatchHandle {
        self.watchers(ns).subscribe(cb)
    }
}

/// Checks the chunks of a run of a segment file being built in place (`run`:
/// its bytes, from offset `start` of file `name`) against their CRCs.
pub(crate) fn check_chunks(
    name: &str,
    run: &[u8],
    start: u64,
    chunks: &[Chunk],
) -> std::io::Result<()> {
    for c in chunks {
        let at = (c.seg_offset - start) as usize;
        let got = crc32fast::hash(&run[at..at + c.len as usize]);
        if got != c.crc {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{name}: checksum mismatch in the {} bytes at offset {} (expected {:08x}, got {got:08x}): damaged, or lost by a crash before they were synced",
                    c.len, c.seg_offset, c.crc
                ),
            ));
        }
    }
    Ok(())
}
