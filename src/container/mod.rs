//! The container: an append-only log of records spread over numbered container
//! files, each mapped once for reading.
//!
//! This layer owns the write position, the sequence numbers, rotation to a new
//! container file, the durability watermark (group commit, in [`group`]: concurrent
//! sync requests share one `fdatasync`) and poisoning after a failed write or fsync. How records
//! reach the file (per [`WriteMode`]) is in [`staging`] (the stage, from the
//! container's side) and [`writer`] (buffers, pool, the writer thread); what the
//! records mean is the file table's business; recovery on open is in [`recovery`].
//!
//! Lock order: `sync_lock`, then `active`, then the writer's state (`files` and
//! `unapplied` are leaves; so is the group-commit state, never held across a
//! round); the crate-wide order is in `crate::sync`. The writer thread takes only the writer's state, so
//! an appender may wait for a free buffer while holding `active`.

mod check;
mod group;
mod recovery;
mod staging;
mod writer;

use crate::sync::lock;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ownedbytes::OwnedBytes;

use crate::error::{Error, Result};
use crate::format::file_header::{
    container_file_name, log_position, FileHeader, FILE_HEADER_LEN, FORMAT_VERSION, MAX_CAPACITY,
};
use crate::format::record::{self, framed_len, Payload, HEADER_LEN};
use crate::io::{ReadView, Storage, StorageFile};
use crate::policy::{SyncPolicy, WriteMode};
use writer::{Shared, Stage, Writer};

/// The first format version whose sealed files end with a `Continued` record.
const CONTINUED_SINCE: u32 = 3;
/// The most image bytes one `Snapshot` record carries: as many as a record
/// may (its payload adds the part numbers, 8 bytes). An image of one part is
/// used where it lies, mapped; several parts are joined into one buffer on
/// open (a 100,000-tenant image of 200 MB written in 64 MiB parts cost its
/// size in RSS).
const SNAPSHOT_PART: usize = crate::format::record::MAX_PAYLOAD_LEN as usize - 8;
/// Room kept free at the end of every container file for that record.
const CONTINUED_LEN: u64 = HEADER_LEN as u64 + 8;

pub(crate) use recovery::{check_all, OpenPlan, RecordRef};
pub(crate) use writer::Smoother;

/// Where a run of file bytes lies in the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    pub file_no: u64,
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct ContainerOptions {
    /// The most bytes one container file holds before the log moves to a new one.
    pub file_capacity: u64,
    /// How far ahead of the write position disk space is reserved (fallocate).
    pub grow_step: u64,
    pub sync: SyncPolicy,
    pub write_mode: WriteMode,
    /// Bytes per write-behind buffer, and how many buffers may be in use.
    pub write_buffer: usize,
    pub write_buffers: usize,
    /// Replay every record of every container file, ignoring snapshots (for
    /// checking that a snapshot stands for what it replaces); in a log with a
    /// gap (a file reclaimed ahead of older ones), every record from the
    /// oldest snapshot after the newest gap.
    pub full_replay: bool,
}

impl ContainerOptions {
    /// Options for a read-only open: no writer thread, no fsync.
    pub fn read_only() -> ContainerOptions {
        ContainerOptions {
            file_capacity: 256 << 20,
            grow_step: 0,
            sync: SyncPolicy::Never,
            write_mode: WriteMode::Inline,
            write_buffer: 64 << 10,
            write_buffers: 1,
            full_replay: false,
        }
    }
}

struct Active {
    /// `None` only after a failed rotation, which also poisons the container.
    file: Option<Arc<dyn StorageFile>>,
    file_no: u64,
    offset: u64,
    allocated: u64,
    next_seq: u64,
    /// Every file id below this one was handed out in a record already appended
    /// (written into each new file's `Checkpoint`).
    next_file_id: u64,
    /// Where records after this file's header and checkpoint start.
    start: u64,
    scratch: Vec<u8>,
    /// The buffer being filled (background write modes; `None` inline).
    stage: Option<Stage>,
    /// Writes to `file` use direct I/O.
    direct: bool,
    /// Format version of `file` (older files never get newer record kinds).
    version: u32,
    /// The most bytes `file` may grow to: its header's, which may differ from
    /// the options of this open (a folder reopened with another file size).
    capacity: u64,
}

/// What one [`Container::append`] did.
///
/// While it lives, the container file it wrote to counts as holding records the
/// file table has not taken in yet ([`Container::has_unapplied`]): reclamation
/// must not judge that file by the table until the caller has applied these
/// records and dropped this.
#[derive(Debug)]
pub(crate) struct Appended<'a> {
    /// The container file that holds the records.
    pub file_no: u64,
    /// For each payload that carries file bytes (`Data`, `AtomicWrite`), where
    /// they landed.
    pub extents: Vec<Option<Extent>>,
    unapplied: &'a Mutex<BTreeMap<u64, usize>>,
}

impl Drop for Appended<'_> {
    fn drop(&mut self) {
        let mut u = lock(self.unapplied);
        if let Some(n) = u.get_mut(&self.file_no) {
            *n -= 1;
            if *n == 0 {
                u.remove(&self.file_no);
            }
        }
    }
}

struct MappedFile {
    view: Arc<dyn ReadView>,
    /// Where the records of a sealed file end. For the active file the write
    /// position (`Active::offset`) is the truth and this is stale.
    end: u64,
}

/// `Container::snapshot_no` when no file is known to start with a snapshot.
const NO_SNAPSHOT: u64 = u64::MAX;

#[derive(Default)]
struct Counters {
    bytes_appended: AtomicU64,
    /// Log position right after the last `Seal` record (0: none yet).
    sealed_at: AtomicU64,
    /// What open cut off as a torn tail: bytes, and records in them that verify.
    tail_bytes_cut: AtomicU64,
    tail_records_cut: AtomicU64,
    seals: AtomicU64,
    /// Snapshots written since open, and the size of the last image.
    snapshots: AtomicU64,
    snapshot_bytes: AtomicU64,
}

pub(crate) struct Container {
    storage: Arc<dyn Storage>,
    root: PathBuf,
    opts: ContainerOptions,
    sync_lock: Mutex<()>,
    group: group::GroupCommit,
    active: Mutex<Active>,
    files: RwLock<BTreeMap<u64, MappedFile>>,
    /// Whether the storage's views are shared file mappings (one kind of
    /// view per storage; known after the first look).
    views_mapped: std::sync::OnceLock<bool>,
    poison: Mutex<Option<String>>,
    counters: Counters,
    /// Per container file, how many [`Appended`]s are alive.
    unapplied: Mutex<BTreeMap<u64, usize>>,
    /// `finish_open` ran: the folder checked out and the container may write.
    /// Until then nothing, not even `Drop`, touches a file.
    opened: std::sync::atomic::AtomicBool,
    /// Opened by another process's reader: never writes.
    read_only: bool,
    /// Files an open did not replay (it started from a snapshot): their
    /// records are checked on first read.
    first_read: Arc<check::FirstReadCheck>,
    /// Bytes of records the open replayed.
    replayed_on_open: u64,
    /// The newest container file known to start with a whole, durable
    /// snapshot (`NO_SNAPSHOT`: none): an open replays from there or later,
    /// so a dead file before it may be reclaimed ahead of older ones.
    snapshot_no: AtomicU64,
    /// The write-behind buffers and their thread; also holds the durable
    /// watermark. Declared last: dropped after `Drop for Container` flushed it.
    writer: Writer,
}

/// Counters a user can log; see `JockyDirectory::stats`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ContainerStats {
    pub container_files: usize,
    pub container_bytes: u64,
    pub bytes_appended: u64,
    pub fsyncs: u64,
    pub fds_held: usize,
    pub mappings: usize,
    pub poisoned: bool,
    pub write_buffer_bytes_peak: usize,
    pub tail_bytes_cut: u64,
    pub tail_records_cut: u64,
    pub seals: u64,
}

impl Container {
    /// Opens (or creates) the container in `storage`, replaying every record into
    /// `apply` in log order. Also returns the numbers of the segment files found
    /// in the folder (the caller knows which of them the log references) and
    /// what recovery found must change in the folder: nothing is changed (and
    /// nothing can be appended) until the caller passes it to
    /// [`Container::finish_open`].
    ///
    /// A `read_only` container never writes: [`Container::finish_open`] is not
    /// for it, and every append fails with [`Error::ReadOnly`].
    pub fn open(
        storage: Arc<dyn Storage>,
        root: &Path,
        opts: ContainerOptions,
        read_only: bool,
        apply: &mut dyn FnMut(RecordRef<'_>) -> std::result::Result<(), String>,
    ) -> Result<(Container, Vec<u64>, OpenPlan)> {
        let rec = recovery::recover(&*storage, root, &opts, read_only, apply)?;
        let files = rec
            .files
            .into_iter()
            .map(|(no, view, end)| (no, MappedFile { view, end }))
            .collect();
        let shared = Arc::new(Shared::new(log_position(rec.active_no, rec.active_end)));
        let writer = Writer::new(
            shared,
            opts.write_buffer,
            opts.write_buffers,
            opts.write_mode != WriteMode::Inline || opts.sync.interval().is_some(),
            opts.sync.interval(),
        );
        let container = Container {
            storage,
            root: root.to_path_buf(),
            active: Mutex::new(Active {
                file: Some(rec.active_file),
                file_no: rec.active_no,
                offset: rec.active_end,
                allocated: rec.active_end,
                next_seq: rec.next_seq,
                next_file_id: 1,
                start: rec.active_start,
                scratch: Vec::new(),
                stage: None,
                direct: false,
                version: rec.active_version,
                capacity: rec.active_capacity,
            }),
            opts,
            sync_lock: Mutex::new(()),
            group: group::GroupCommit::default(),
            files: RwLock::new(files),
            views_mapped: std::sync::OnceLock::new(),
            poison: Mutex::new(None),
            counters: Counters {
                sealed_at: AtomicU64::new(if rec.active_sealed {
                    log_position(rec.active_no, rec.active_end)
                } else {
                    0
                }),
                ..Counters::default()
            },
            unapplied: Mutex::new(BTreeMap::new()),
            opened: std::sync::atomic::AtomicBool::new(false),
            read_only,
            first_read: Arc::new(check::FirstReadCheck::new(rec.unchecked)),
            replayed_on_open: rec.replayed_bytes,
            snapshot_no: AtomicU64::new(rec.snapshot_no.unwrap_or(NO_SNAPSHOT)),
            writer,
        };
        Ok((container, rec.segment_files, rec.plan))
    }

    /// Carries out what recovery found (the caller checked the folder): removes
    /// newest files whose creation was cut short, cuts the torn tail, makes the
    /// newest file durable as replayed, removes reclaimed files, and continues
    /// an old-format log in a new file. Only then may records be appended.
    pub fn finish_open(&self, plan: OpenPlan) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly {
                path: self.root.clone(),
            });
        }
        let sync = self.opts.sync != SyncPolicy::Never;
        let mut dir_changed = false;
        for no in &plan.torn_creations {
            let name = container_file_name(*no);
            log::warn!("removing {name} (its creation was cut short by a crash)");
            self.unlink(*no)?;
            dir_changed = true;
        }
        {
            let a = lock(&self.active);
            let file = a.file.clone().expect("an opened container has a file");
            let path = self.root.join(container_file_name(a.file_no));
            if let Some((no, end, len, _, false)) = plan.cut {
                debug_assert_eq!(no, a.file_no);
                log::debug!(
                    "giving back {} reserved bytes of {}",
                    len - end,
                    path.display()
                );
                file.truncate(end).map_err(|e| Error::io(&path, e))?;
            }
            if let Some((no, end, len, records, true)) = plan.cut {
                debug_assert_eq!(no, a.file_no);
                log::warn!(
                    "cutting a torn tail off {} at offset {end}: {} bytes, {records} records in them that verify (written, never acknowledged as durable)",
                    path.display(),
                    len - end,
                );
                self.counters
                    .tail_bytes_cut
                    .store(len - end, Ordering::Relaxed);
                self.counters
                    .tail_records_cut
                    .store(records, Ordering::Relaxed);
                file.truncate(end).map_err(|e| Error::io(&path, e))?;
            }
            // What was replayed must be durable before it is served or acted
            // on (a killed predecessor's writes may be only in the page cache),
            // unless the log ends with a `Seal` that says it is: a clean close
            // or an idle log synced everything before appending it. (A `Seal`
            // that is itself not durable loses nothing: only it can be lost.)
            let torn = matches!(plan.cut, Some((.., true)));
            let sealed =
                self.counters.sealed_at.load(Ordering::SeqCst) == log_position(a.file_no, a.offset);
            if sync && (torn || !sealed) {
                file.sync_data().map_err(|e| Error::io(&path, e))?;
            }
        }
        for no in &plan.reclaimed {
            log::info!("removing reclaimed container file {no}");
            self.unlink(*no)?;
            dir_changed = true;
        }
        if dir_changed && sync {
            self.storage
                .sync_dir()
                .map_err(|e| Error::io(&self.root, e))?;
        }
        self.new_stage(&mut lock(&self.active))?;
        self.opened.store(true, Ordering::SeqCst);
        if plan.upgrade {
            // New record kinds never go into an old-version file, which an older
            // jocky would then misread: continue the log in a new file.
            self.rotate(self.active_no())?;
        }
        Ok(())
    }

    fn check_poison(&self) -> Result<()> {
        let mut poison = lock(&self.poison);
        if poison.is_none() {
            if let Some(msg) = self.writer.shared.error() {
                log::error!("jocky container poisoned: {msg}");
                *poison = Some(msg);
            }
        }
        match &*poison {
            Some(msg) => Err(Error::Poisoned(msg.clone())),
            None => Ok(()),
        }
    }

    fn durable(&self) -> &AtomicU64 {
        &self.writer.shared.durable
    }

    fn poison_with(&self, what: &str, file_no: u64, e: std::io::Error) -> Error {
        let path = self.root.join(container_file_name(file_no));
        let msg = format!("{what} failed on {}: {e}", path.display());
        log::error!("jocky container poisoned: {msg}");
        lock(&self.poison).get_or_insert(msg);
        Error::io(path, e)
    }

    /// A failed `fdatasync` of a file the log's records name (a segment file
    /// being built in place): from now on every write and sync fails, as
    /// after a failed sync of the container itself (a retried `fdatasync` may
    /// report success for pages the kernel already dropped).
    pub fn poison_for(&self, path: &std::path::Path, what: &str, e: std::io::Error) -> Error {
        let msg = format!("{what} failed on {}: {e}", path.display());
        log::error!("jocky container poisoned: {msg}");
        lock(&self.poison).get_or_insert(msg);
        Error::io(path, e)
    }

    /// Where records other than the final `Continued` must end in a container
    /// file: its capacity less the room that record needs.
    fn records_end(&self) -> u64 {
        self.opts.file_capacity - CONTINUED_LEN
    }

    /// The largest payload one record may carry.
    pub fn max_payload(&self) -> usize {
        let room = self.records_end() - FILE_HEADER_LEN as u64 - HEADER_LEN as u64;
        room.min(record::MAX_PAYLOAD_LEN as u64) as usize
    }

    /// Raises the id floor written into the next `Checkpoint` (after replay).
    pub fn note_file_id_floor(&self, next_file_id: u64) {
        let mut a = lock(&self.active);
        a.next_file_id = a.next_file_id.max(next_file_id);
    }

    /// Appends `payloads` as consecutive records in one write.
    ///
    /// A `Reclaim` record takes its container file out of the set of files this
    /// container maps and lists in later checkpoints, in the same step (under the
    /// same lock as rotation), so no checkpoint written after it names the file.
    pub fn append(&self, payloads: &[Payload<'_>]) -> Result<Appended<'_>> {
        self.append_inner(payloads, false)
    }

    /// Like [`append`](Self::append), but the file bytes of the first payload
    /// (a `Data` record's) start on a page boundary of the container file,
    /// after a `Padding` record where needed. A file whose extents all start
    /// on a page, each but the last a whole number of pages long, can be
    /// mapped as one contiguous range and cloned block by block into a
    /// segment file.
    pub fn append_aligned(&self, payloads: &[Payload<'_>]) -> Result<Appended<'_>> {
        self.append_inner(payloads, true)
    }

    fn append_inner(&self, payloads: &[Payload<'_>], align: bool) -> Result<Appended<'_>> {
        let total: u64 = payloads.iter().map(|p| framed_len(p.encoded_len())).sum();
        // The bytes' offset inside the first record, when aligning them.
        let align_at = payloads
            .first()
            .filter(|_| align)
            .and_then(|p| p.bytes_offset_in_payload())
            .map(|off| (HEADER_LEN + off) as u64);
        let worst_pad = if align_at.is_some() {
            PAGE + HEADER_LEN as u64
        } else {
            0
        };
        if total + worst_pad > self.records_end() - FILE_HEADER_LEN as u64 {
            return Err(Error::TooLarge(format!(
                "{total} bytes of records do not fit in a container file of {} bytes",
                self.opts.file_capacity
            )));
        }
        if !self.opened.load(Ordering::Relaxed) {
            if self.read_only {
                return Err(Error::ReadOnly {
                    path: self.root.clone(),
                });
            }
            return Err(Error::Poisoned("the container was not opened".into()));
        }
        loop {
            self.check_poison()?;
            let mut a = lock(&self.active);
            let pad = align_at.map_or(0, |at| padding_before(a.offset, at));
            let total = total + pad;
            if a.offset + total > a.capacity - CONTINUED_LEN {
                let seen = a.file_no;
                drop(a);
                self.rotate(seen)?;
                continue;
            }
            // Again under the lock: a failure of the writer thread is recorded
            // under it (and leaves no stage behind).
            self.check_poison()?;
            let Some(file) = a.file.clone() else {
                return Err(Error::Poisoned("no active container file".into()));
            };
            if a.stage.is_none() && self.opts.write_mode != crate::policy::WriteMode::Inline {
                // Staged writes without a stage: the writer thread failed.
                return Err(Error::Poisoned(
                    "no write stage: the writer thread failed".into(),
                ));
            }
            if a.offset + total > a.allocated {
                let want = (a.offset + total).max(a.allocated + self.opts.grow_step);
                let want = want.min(a.capacity);
                file.allocate(a.allocated, want - a.allocated)
                    .map_err(|e| Error::io(self.root.join(container_file_name(a.file_no)), e))?;
                a.allocated = want;
            }
            let durable = self.durable().load(Ordering::SeqCst);
            let start = a.offset;
            let mut extents = Vec::with_capacity(payloads.len());
            let a = &mut *a;
            a.scratch.clear();
            if pad > 0 {
                let len = (pad - HEADER_LEN as u64) as usize;
                record::encode(
                    &mut a.scratch,
                    &Payload::Padding { len },
                    a.next_seq,
                    durable,
                );
                a.next_seq += 1;
            }
            for p in payloads {
                let rec_start = start + a.scratch.len() as u64;
                extents.push(p.bytes_offset_in_payload().map(|off| Extent {
                    file_no: a.file_no,
                    offset: rec_start + (HEADER_LEN + off) as u64,
                    len: (p.encoded_len() - off) as u64,
                }));
                record::encode(&mut a.scratch, p, a.next_seq, durable);
                a.next_seq += 1;
            }
            debug_assert_eq!(a.scratch.len() as u64, total);
            if a.stage.is_some() {
                let records = std::mem::take(&mut a.scratch);
                let staged = self.stage_bytes(a, &records);
                a.scratch = records;
                staged?;
            } else {
                if let Err(e) = file.write_at(start, &a.scratch) {
                    return Err(self.poison_with("write", a.file_no, e));
                }
                self.writer
                    .shared
                    .set_written(log_position(a.file_no, start + total));
                self.writer.note_file(&file);
            }
            a.offset += total;
            for p in payloads {
                match p {
                    Payload::Create { file_id, .. } | Payload::AtomicWrite { file_id, .. } => {
                        a.next_file_id = a.next_file_id.max(file_id + 1);
                    }
                    Payload::Reclaim { file_no } if *file_no != a.file_no => {
                        crate::sync::write(&self.files).remove(file_no);
                    }
                    _ => {}
                }
            }
            if a.scratch.capacity() > 4 << 20 {
                a.scratch = Vec::new();
            }
            self.counters
                .bytes_appended
                .fetch_add(total, Ordering::Relaxed);
            // Counted under the active lock: once a file is sealed, no new
            // `Appended` for it can appear.
            *lock(&self.unapplied).entry(a.file_no).or_default() += 1;
            return Ok(Appended {
                file_no: a.file_no,
                extents,
                unapplied: &self.unapplied,
            });
        }
    }

    /// Whether records appended to container file `no` may not be in the file
    /// table yet (an [`Appended`] for it is still alive).
    pub fn has_unapplied(&self, no: u64) -> bool {
        lock(&self.unapplied).contains_key(&no)
    }

    /// Whether any appended record may not be in the file table yet.
    pub fn has_any_unapplied(&self) -> bool {
        !lock(&self.unapplied).is_empty()
    }

    /// Starts a new container file now (so that the current one can be
    /// reclaimed), unless the current one holds no records yet.
    pub fn seal_active(&self) -> Result<()> {
        let (no, offset, start) = {
            let a = lock(&self.active);
            (a.file_no, a.offset, a.start)
        };
        if offset <= start {
            return Ok(());
        }
        self.rotate(no)
    }

    /// The number of the file being appended to.
    pub fn active_no(&self) -> u64 {
        lock(&self.active).file_no
    }

    /// `(file number, bytes used)` of every container file, oldest first.
    pub fn file_sizes(&self) -> Vec<(u64, u64)> {
        let (active_no, active_end) = {
            let a = lock(&self.active);
            (a.file_no, a.offset)
        };
        let files = crate::sync::read(&self.files);
        files
            .iter()
            .map(|(no, f)| (*no, if *no == active_no { active_end } else { f.end }))
            .collect()
    }

    /// Removes the file of a container file that a durable `Reclaim` record
    /// declared dead. Slices of it stay readable until they are dropped.
    pub fn unlink(&self, no: u64) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly {
                path: self.root.clone(),
            });
        }
        let name = container_file_name(no);
        match self.storage.remove(&name) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(self.root.join(name), e)),
        }
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Seals the active file and starts the next one with a snapshot of the
    /// file table (`image`, see `format::snapshot`) right after its checkpoint,
    /// in the same write: an open replays from there and never reads the
    /// records of older files. The caller guarantees that `image` is the table
    /// as every record appended so far left it (nothing else is appended
    /// meanwhile). `false` (nothing done) if the image would take more than
    /// half a container file, or the container is not open for writing.
    pub fn rotate_with_snapshot(&self, image: &[u8]) -> Result<bool> {
        if self.read_only || !self.opened.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let parts = image.len().div_ceil(SNAPSHOT_PART).max(1);
        let framed = image.len() as u64 + parts as u64 * (HEADER_LEN as u64 + 16);
        // The file gets room for the image on top of a usual file's.
        if framed + self.opts.file_capacity > MAX_CAPACITY {
            return Ok(false);
        }
        let no = self.active_no();
        self.rotate_inner(no, Some(image))?;
        self.counters
            .snapshot_bytes
            .store(image.len() as u64, Ordering::Relaxed);
        self.counters.snapshots.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Seals the active file and starts the next one, unless someone else already
    /// moved past `seen_file_no`.
    fn rotate(&self, seen_file_no: u64) -> Result<()> {
        self.rotate_inner(seen_file_no, None)
    }

    fn rotate_inner(&self, seen_file_no: u64, image: Option<&[u8]>) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly {
                path: self.root.clone(),
            });
        }
        let _s = lock(&self.sync_lock);
        let mut a = lock(&self.active);
        if a.file_no != seen_file_no {
            return Ok(());
        }
        self.check_poison()?;
        let old_no = a.file_no;
        if a.stage.is_some() {
            // Everything of the old file is written before it is sealed.
            self.submit_stage(&mut a)?;
            self.wait_written(log_position(old_no, a.offset))?;
        }
        let had_file = a.file.is_some();
        if let Some(file) = a.file.take() {
            // Give back the unused reservation, then make the sealed file durable:
            // recovery relies on every file but the last being complete.
            let sealed = file.truncate(a.offset).and_then(|_| self.sync_file(&*file));
            if let Err(e) = sealed {
                return Err(self.poison_with("sealing", old_no, e));
            }
            // `file` (the descriptor) is closed here, before the next one opens.
        }
        self.durable()
            .store(log_position(old_no, a.offset), Ordering::SeqCst);
        if let Some(f) = crate::sync::write(&self.files).get_mut(&old_no) {
            f.end = a.offset;
        }
        // A v3 file ends with a `Continued` record naming its successor, written
        // once the successor exists durably: it takes the next sequence number,
        // so the new file starts one later.
        let continued = had_file && a.version >= CONTINUED_SINCE;
        let new_no = old_no + 1;
        let header = FileHeader {
            version: FORMAT_VERSION,
            file_no: new_no,
            first_sequence: a.next_seq + u64::from(continued),
            // A file that starts with a snapshot holds the image on top of
            // what a file usually holds.
            capacity: self.opts.file_capacity
                + image.map_or(0, |i| {
                    i.len() as u64 + (i.len() / SNAPSHOT_PART + 1) as u64 * 64
                }),
        };
        let existing: Vec<u64> = crate::sync::read(&self.files).keys().copied().collect();
        let parts: Vec<Payload<'_>> = match image {
            None => Vec::new(),
            Some(image) => {
                let n = image.len().div_ceil(SNAPSHOT_PART).max(1) as u32;
                let mut chunks: Vec<&[u8]> = image.chunks(SNAPSHOT_PART).collect();
                if chunks.is_empty() {
                    chunks.push(&[]);
                }
                chunks
                    .into_iter()
                    .enumerate()
                    .map(|(i, bytes)| Payload::Snapshot {
                        part: i as u32,
                        parts: n,
                        bytes,
                    })
                    .collect()
            }
        };
        let (mut file, view, start) = match create_file(
            &*self.storage,
            &header,
            &existing,
            a.next_file_id,
            &parts,
            self.opts.grow_step,
            self.opts.sync,
        ) {
            Ok(x) => x,
            Err(e) => return Err(self.poison_with("creating", new_no, e)),
        };
        if continued {
            let mut rec = Vec::new();
            let cont = Payload::Continued {
                next_file_no: new_no,
            };
            record::encode(&mut rec, &cont, a.next_seq, log_position(old_no, a.offset));
            // One descriptor at a time (the fd bound): the new file is closed
            // while the old one takes its last record, then opened again.
            drop(file);
            let written = self
                .storage
                .open(&container_file_name(old_no))
                .and_then(|old| {
                    old.write_at(a.offset, &rec)?;
                    self.sync_file(&*old)
                });
            if let Err(e) = written {
                return Err(self.poison_with("sealing", old_no, e));
            }
            file = match self.storage.open(&container_file_name(new_no)) {
                Ok(f) => f,
                Err(e) => return Err(self.poison_with("opening", new_no, e)),
            };
            let end = a.offset + rec.len() as u64;
            if let Some(f) = crate::sync::write(&self.files).get_mut(&old_no) {
                f.end = end;
            }
            self.counters
                .bytes_appended
                .fetch_add(rec.len() as u64, Ordering::Relaxed);
        }
        crate::sync::write(&self.files).insert(new_no, MappedFile { view, end: start });
        if !parts.is_empty() && self.opts.sync != SyncPolicy::Never {
            // Created durably, snapshot and all, before anything goes in.
            self.snapshot_no.store(new_no, Ordering::SeqCst);
        }
        a.file = Some(file);
        a.file_no = new_no;
        a.offset = start;
        a.start = start;
        a.version = FORMAT_VERSION;
        a.capacity = header.capacity;
        a.next_seq = header.first_sequence + 1 + parts.len() as u64;
        a.allocated = start.max(self.opts.grow_step.min(self.opts.file_capacity));
        self.durable()
            .store(log_position(new_no, a.offset), Ordering::SeqCst);
        self.writer
            .shared
            .set_written(log_position(new_no, a.offset));
        if let Err(e) = self.new_stage(&mut a) {
            a.file = None;
            return Err(e);
        }
        Ok(())
    }

    fn sync_file(&self, file: &dyn StorageFile) -> std::io::Result<()> {
        if self.opts.sync == SyncPolicy::Never {
            return Ok(());
        }
        file.sync_data()?;
        self.writer.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Makes everything appended so far durable. Concurrent callers share one
    /// `fdatasync`: a caller whose data a finished sync already covers returns at once.
    pub fn sync(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly {
                path: self.root.clone(),
            });
        }
        self.check_poison()?;
        let target = {
            let a = lock(&self.active);
            log_position(a.file_no, a.offset)
        };
        if self.durable().load(Ordering::SeqCst) >= target {
            return Ok(());
        }
        self.group
            .sync(target, self.durable(), || self.sync_round())
    }

    /// One group-commit round: makes everything appended so far durable.
    fn sync_round(&self) -> Result<()> {
        let _s = lock(&self.sync_lock);
        self.check_poison()?;
        let (file, file_no, end) = {
            let mut a = lock(&self.active);
            if !self.write_stage_here(&mut a)? {
                self.flush_stage(&mut a)?;
            }
            (a.file.clone(), a.file_no, log_position(a.file_no, a.offset))
        };
        if self.durable().load(Ordering::SeqCst) >= end {
            return Ok(());
        }
        self.wait_written(end)?;
        let Some(file) = file else {
            return Err(Error::Poisoned("no active container file".into()));
        };
        if let Err(e) = self.sync_file(&*file) {
            return Err(self.poison_with("fdatasync", file_no, e));
        }
        self.durable().fetch_max(end, Ordering::SeqCst);
        Ok(())
    }

    /// Whether [`read`](Self::read) of each of `extents` returns a slice of a
    /// shared file mapping: its bytes are written to its file (not only
    /// staged; written bytes stay written) and the file is mapped.
    ///
    /// Takes no lock once the storage's kind is known (a reader must not
    /// queue on `files` behind a rotation waiting for a long release).
    pub fn is_mapped(&self, extents: &[Extent]) -> bool {
        let mapped = *self.views_mapped.get_or_init(|| {
            crate::sync::read(&self.files)
                .values()
                .next()
                .is_some_and(|f| f.view.is_shared_mapping())
        });
        mapped
            && extents
                .iter()
                .all(|x| self.writer.shared.is_written(x.file_no, x.offset + x.len))
    }

    /// The file holding `extent`'s bytes, for an in-kernel copy, once the
    /// bytes are written to it (not staged): the active file, or with
    /// `any_file` an older one, opened for the copy (a descriptor the caller
    /// holds only while it copies).
    pub fn source_of(&self, extent: Extent, any_file: bool) -> Option<Arc<dyn StorageFile>> {
        if !self
            .writer
            .shared
            .is_written(extent.file_no, extent.offset + extent.len)
        {
            return None;
        }
        let a = lock(&self.active);
        if a.file_no == extent.file_no {
            return a.file.clone();
        }
        drop(a);
        if !any_file || !crate::sync::read(&self.files).contains_key(&extent.file_no) {
            return None;
        }
        self.storage
            .open(&container_file_name(extent.file_no))
            .inspect_err(|e| {
                log::debug!(
                    "container file {} not opened for a copy: {e}",
                    extent.file_no
                )
            })
            .ok()
    }

    /// The bytes of `extent`, zero-copy from the file's mapping.
    pub fn read(&self, extent: Extent) -> std::io::Result<OwnedBytes> {
        let (bytes, check) = self.read_deferring(extent)?;
        if let Some(check) = check {
            check.run()?;
        }
        Ok(bytes)
    }

    /// As [`Self::read`], but the first-read check of an extent in a file the
    /// open did not replay is handed back instead of made: the caller runs it
    /// before it serves any of the bytes (a handle on a file of many chunks
    /// checks only the chunks a read touches). The bytes are a slice of the
    /// file's mapping: nothing is read yet.
    pub fn read_deferring(
        &self,
        extent: Extent,
    ) -> std::io::Result<(OwnedBytes, Option<check::Deferred>)> {
        if self.first_read.is_unchecked(extent.file_no) {
            // Its place came from a snapshot, not from a replayed record:
            // it must lie within the file (a read past its end would fault).
            let end = crate::sync::read(&self.files)
                .get(&extent.file_no)
                .map(|f| f.end);
            if end.is_none_or(|end| {
                extent
                    .offset
                    .checked_add(extent.len)
                    .is_none_or(|e| e > end)
            }) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}: {} bytes at offset {} lie past its end (damaged)",
                        container_file_name(extent.file_no),
                        extent.len,
                        extent.offset
                    ),
                ));
            }
            let view = crate::sync::read(&self.files)
                .get(&extent.file_no)
                .map(|f| f.view.clone())
                .expect("seen above");
            let bytes = view.read(extent.offset..extent.offset + extent.len)?;
            let check = (!self.first_read.is_checked(extent))
                .then(|| check::Deferred::new(view, extent, self.first_read.clone()));
            return Ok((bytes, check));
        }
        if let Some(bytes) = self.read_unwritten(extent)? {
            return Ok((OwnedBytes::new(bytes), None));
        }
        let view = {
            let files = crate::sync::read(&self.files);
            let f = files.get(&extent.file_no).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("container file {} is gone", extent.file_no),
                )
            })?;
            f.view.clone()
        };
        self.first_read.check(&*view, extent)?;
        Ok((view.read(extent.offset..extent.offset + extent.len)?, None))
    }

    /// The newest container file known to start with a whole, durable
    /// snapshot.
    pub fn snapshot_no(&self) -> Option<u64> {
        Some(self.snapshot_no.load(Ordering::SeqCst)).filter(|n| *n != NO_SNAPSHOT)
    }

    /// Bytes of records the open replayed (from its snapshot on).
    pub fn replayed_on_open(&self) -> u64 {
        self.replayed_on_open
    }

    /// Container files the open did not replay (before its snapshot), whose
    /// records are checked on first read.
    pub fn unchecked_files(&self) -> Vec<u64> {
        self.first_read.unchecked()
    }

    /// Snapshots written since open, and the size of the last image.
    pub fn snapshot_stats(&self) -> (u64, u64) {
        (
            self.counters.snapshots.load(Ordering::Relaxed),
            self.counters.snapshot_bytes.load(Ordering::Relaxed),
        )
    }

    /// Bytes appended since open.
    pub fn bytes_appended(&self) -> u64 {
        self.counters.bytes_appended.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> ContainerStats {
        // Lock order as in `rotate`: active, then files.
        let (active_no, active_end) = {
            let a = lock(&self.active);
            (a.file_no, a.offset)
        };
        let files = crate::sync::read(&self.files);
        ContainerStats {
            container_files: files.len(),
            container_bytes: files
                .iter()
                .map(|(no, f)| if *no == active_no { active_end } else { f.end })
                .sum(),
            bytes_appended: self.counters.bytes_appended.load(Ordering::Relaxed),
            fsyncs: self.writer.shared.fsyncs.load(Ordering::Relaxed),
            write_buffer_bytes_peak: self.writer.shared.peak_buffer_bytes(),
            fds_held: self.storage.fds_held(),
            mappings: files.len(),
            poisoned: self.check_poison().is_err(),
            tail_bytes_cut: self.counters.tail_bytes_cut.load(Ordering::Relaxed),
            tail_records_cut: self.counters.tail_records_cut.load(Ordering::Relaxed),
            seals: self.counters.seals.load(Ordering::Relaxed),
        }
    }

    /// Seals the log's tail: makes everything appended durable, appends a
    /// `Seal` record (whose `durable` covers all before it) and makes it durable
    /// too. From then on damage before the seal is reported on open instead of
    /// being cut as a torn write. Nothing happens when nothing was appended
    /// since the last seal, or for a read-only or old-format container.
    pub fn seal(&self) -> Result<()> {
        // Under `SyncPolicy::Never` nothing is made durable, so a `Seal` would
        // vouch for what no sync covered (and an open would skip its sync).
        if self.read_only
            || !self.opened.load(Ordering::SeqCst)
            || self.opts.sync == SyncPolicy::Never
        {
            return Ok(());
        }
        let end = {
            let a = lock(&self.active);
            if a.version < CONTINUED_SINCE || a.offset <= a.start {
                return Ok(());
            }
            log_position(a.file_no, a.offset)
        };
        if self.counters.sealed_at.load(Ordering::SeqCst) == end {
            return Ok(());
        }
        self.sync()?;
        drop(self.append(&[Payload::Seal])?);
        self.sync()?;
        let end = {
            let a = lock(&self.active);
            log_position(a.file_no, a.offset)
        };
        self.counters.sealed_at.store(end, Ordering::SeqCst);
        self.counters.seals.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes over the state of `newer`, a later read-only open of the same
    /// folder (a refresh). Slices handed out before keep their mappings.
    pub fn adopt(&self, newer: Container) {
        debug_assert!(self.read_only && newer.read_only);
        let files = std::mem::take(&mut *crate::sync::write(&newer.files));
        let end = {
            let mut a = lock(&self.active);
            std::mem::swap(&mut *a, &mut *lock(&newer.active));
            log_position(a.file_no, a.offset)
        };
        *crate::sync::write(&self.files) = files;
        self.first_read.adopt(&newer.first_read);
        self.writer.shared.set_written(end);
    }

    /// Whether this container was opened read-only (it never writes).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Format version of the newest container file.
    pub fn format_version(&self) -> u32 {
        lock(&self.active).version
    }

    pub fn sync_policy(&self) -> SyncPolicy {
        self.opts.sync
    }
}

impl Drop for Container {
    /// Gives back the disk space reserved past the last record. Nothing depends on
    /// it: recovery treats the zeros of a reservation like the end of the log.
    fn drop(&mut self) {
        if !self.opened.load(Ordering::SeqCst) {
            return;
        }
        if self.check_poison().is_ok() {
            // A clean close leaves a sealed tail (not under `SyncPolicy::Never`:
            // see `seal`).
            if let Err(e) = self.seal() {
                log::warn!("could not seal {} on close: {e}", self.root.display());
            }
        }
        let mut a = lock(&self.active);
        if a.stage.is_some() && self.check_poison().is_ok() {
            // The writer thread writes what was handed over; then it stops.
            let end = log_position(a.file_no, a.offset);
            if let Err(e) = self
                .submit_stage(&mut a)
                .and_then(|_| self.wait_written(end))
            {
                log::error!("container closed with unwritten records: {e}");
            }
        }
        if lock(&self.poison).is_none() {
            if let Some(file) = &a.file {
                // Only a file longer than its log: a truncate to the same
                // length still changes the file's mtime, a metadata write
                // for every open and close of an index nobody wrote to.
                let longer = file.len().map_or(true, |len| len > a.offset);
                if longer {
                    if let Err(e) = file.truncate(a.offset) {
                        log::debug!("could not trim the active container file: {e}");
                    }
                }
            }
        }
    }
}

/// A new container file, its mapping, and where its next record goes.
type Created = (Arc<dyn StorageFile>, Arc<dyn ReadView>, u64);

/// Creates a container file: header and checkpoint record (listing the files in
/// `existing` and sequence `header.first_sequence`) written in one write, space
/// reserved, file and folder synced (per policy), and mapped. Returns where the
/// next record goes.
#[allow(clippy::too_many_arguments)]
fn create_file(
    storage: &dyn Storage,
    header: &FileHeader,
    existing: &[u64],
    next_file_id: u64,
    snapshot: &[Payload<'_>],
    grow_step: u64,
    sync: SyncPolicy,
) -> std::io::Result<Created> {
    let name = container_file_name(header.file_no);
    let mut head = header.encode().to_vec();
    let files = record::encode_file_numbers(existing);
    let checkpoint = Payload::Checkpoint {
        next_file_id,
        files: &files,
    };
    // The durable position of a fresh file: everything before it.
    let durable = log_position(header.file_no, 0);
    record::encode(&mut head, &checkpoint, header.first_sequence, durable);
    for (i, part) in snapshot.iter().enumerate() {
        record::encode(
            &mut head,
            part,
            header.first_sequence + 1 + i as u64,
            durable,
        );
    }
    let start = head.len() as u64;
    if start > header.capacity {
        return Err(std::io::Error::other(
            "the checkpoint does not fit in a container file",
        ));
    }
    let file = storage.create(&name)?;
    let result = (|| {
        let initial = start.max(grow_step.min(header.capacity));
        file.allocate(0, initial)?;
        file.write_at(0, &head)?;
        if sync != SyncPolicy::Never {
            file.sync_data()?;
            storage.sync_dir()?;
        }
        file.view(header.capacity)
    })();
    match result {
        Ok(view) => Ok((file, view, start)),
        Err(e) => {
            drop(file);
            // Best effort: a half-made file would be recognised as a torn rotation
            // on the next open anyway.
            let _ = storage.remove(&name);
            Err(e)
        }
    }
}

/// The page alignment is computed against: the segment files' (and the
/// block size a clone needs on the file systems that have one).
pub use crate::format::segment_file::PAGE;

/// The bytes of a `Padding` record (0, or at least a header) to put at
/// `offset` so that a record starting right after it has byte `at` of the
/// record on a page boundary.
fn padding_before(offset: u64, at: u64) -> u64 {
    let pad = (PAGE - (offset + at) % PAGE) % PAGE;
    if pad != 0 && pad < HEADER_LEN as u64 {
        pad + PAGE
    } else {
        pad
    }
}

#[cfg(test)]
mod align_tests {
    use super::*;

    #[test]
    fn padding_puts_the_bytes_on_a_page_and_is_a_whole_record() {
        for offset in (0..3 * PAGE).step_by(8) {
            let pad = padding_before(offset, 48);
            assert_eq!((offset + pad + 48) % PAGE, 0, "offset {offset}");
            assert!(pad == 0 || pad >= HEADER_LEN as u64, "offset {offset}");
            assert_eq!(pad % 8, 0);
            assert!(pad < PAGE + HEADER_LEN as u64);
            if pad > 0 {
                // A Padding record of that framed size exists.
                assert_eq!(framed_len(pad as usize - HEADER_LEN), pad);
            }
        }
    }
}
