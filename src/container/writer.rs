//! The write-behind stage: page-aligned buffers between `Container::append` and
//! the container files, and the one thread per container that writes them.
//!
//! `append` copies records into the *stage*, the buffer being filled (it lives
//! in the active-file state, under its lock). A full stage, or one a sync
//! request or a rotation needs on disk, is *handed over*: it joins the
//! in-flight list, where reads still find its bytes (read-your-writes), and
//! the writer thread's queue. The thread writes each buffer (with one `pwrite`
//! under direct I/O, a `pwrite` per page otherwise),
//! then advances the `written` watermark and returns the buffer to the pool.
//! The pool has a fixed number of buffers: a producer that outruns the disk
//! waits for one to come back, memory in flight never grows.
//!
//! Direct I/O: a stage starts on a [`DIRECT_ALIGN`] boundary and is written up
//! to the next one, zero padded. The partly filled last block is carried into
//! the next stage and written again with it; the bytes already written are
//! rewritten identical, so a torn rewrite cannot change them.
//!
//! Buffered writes go page by page (see [`write_page_by_page`]: the page
//! cache keeps each page apart, so a dead file's pages can leave it).
//! Every [`SMOOTH_WINDOW`] bytes the thread starts write-back
//! of the window it just wrote, so dirty pages never pile up into a write-back
//! storm (and a later `fdatasync` finds little left to write). The written
//! pages stay in the page cache, as a file tantivy writes through
//! `MmapDirectory` does: the merges and the export that read fresh segments
//! soon after find them there instead of reading them back from disk. They
//! leave it when the file they hold is deleted or exported
//! ([`super::Container::release`]).
//!
//! [`SyncPolicy::Interval`](crate::policy::SyncPolicy::Interval): the thread
//! also calls `fdatasync` once the interval has passed since the last one and
//! something written is not durable yet.
//!
//! A failed write poisons the writer: nothing after it is written, the failed
//! buffers stay readable in the in-flight list, and every wait returns the
//! error.

use crate::sync::lock;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memmap2::MmapMut;

use crate::format::file_header::log_position;
use crate::io::{StorageFile, DIRECT_ALIGN};

/// Bytes between two write-back steps of buffered mode.
pub(crate) const SMOOTH_WINDOW: u64 = 8 << 20;

pub(crate) fn align_down(n: usize) -> usize {
    n / DIRECT_ALIGN * DIRECT_ALIGN
}

fn align_up(n: usize) -> usize {
    n.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN
}

/// A stage's byte buffer, its start [`DIRECT_ALIGN`]ed (fit for direct I/O).
/// Its memory grows with what it holds and is never taken in advance: on the
/// heap while it holds at most [`HEAP_MAX`] (doubling from
/// [`BUF_FIRST_ALLOC`]), so a buffer that only ever holds small commits costs a
/// few KiB and no mapping (a tenant's index); past that, an anonymous mapping
/// of its whole capacity, backed by the kernel only where written, kept for the
/// buffer's life (the heap again if the process is out of mappings).
///
/// Large buffers are not `malloc`'d: a pool buffer lives as long as its
/// container, and as a `Vec` it lived in the arena of the indexing thread that
/// first filled it, among tantivy's short-lived allocations, where glibc could
/// not give back the memory below it. Measured with `malloc_stats` at the end
/// of indexing in `examples/compare_mmap.rs` (2026-11-29): three arenas of ~31
/// MB with 2–3 MB in use each (the pool's buffers). (Earlier still, a `Vec` of
/// the whole capacity was served from memory tantivy's indexing had freed and
/// touched: 2.6 MB of RSS per `JockyDirectory` with a small index,
/// `examples/tenants.rs`.)
#[derive(Debug)]
pub(crate) struct Buf {
    mem: Mem,
    cap: usize,
    len: usize,
}

#[derive(Debug)]
enum Mem {
    Empty,
    /// `raw[off..off + usable]` is the buffer (`off` aligns it).
    Heap {
        raw: Vec<u8>,
        off: usize,
        usable: usize,
    },
    /// `cap` bytes, page-aligned.
    Map(MmapMut),
}

impl Mem {
    fn get(&self) -> &[u8] {
        match self {
            Mem::Empty => &[],
            Mem::Heap { raw, off, usable } => &raw[*off..*off + *usable],
            Mem::Map(m) => m,
        }
    }

    fn get_mut(&mut self) -> &mut [u8] {
        match self {
            Mem::Empty => &mut [],
            Mem::Heap { raw, off, usable } => &mut raw[*off..*off + *usable],
            Mem::Map(m) => m,
        }
    }
}

/// What a buffer allocates first.
pub(crate) const BUF_FIRST_ALLOC: usize = 16 << 10;

/// The most a buffer holds on the heap before it moves to a mapping.
pub(crate) const HEAP_MAX: usize = 64 << 10;

impl Buf {
    pub fn with_capacity(cap: usize) -> Buf {
        Buf {
            mem: Mem::Empty,
            cap: align_up(cap.max(1)),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The whole usable memory (past `len` too).
    fn mem(&self) -> &[u8] {
        self.mem.get()
    }

    /// The usable memory, grown first to hold `n` bytes in all and their block
    /// padding (bytes held move over).
    fn room(&mut self, n: usize) -> &mut [u8] {
        let want = align_up(n).min(self.cap);
        let have = self.mem().len();
        if have < want {
            let mapped = if want <= HEAP_MAX {
                None
            } else {
                // Out of mappings (`vm.max_map_count`) or address space: the
                // heap serves instead, as it did before.
                MmapMut::map_anon(self.cap)
                    .inspect_err(|e| {
                        log::debug!("a {}-byte write buffer stays on the heap: {e}", self.cap)
                    })
                    .ok()
            };
            let mem = match mapped {
                Some(mut map) => {
                    map[..self.len].copy_from_slice(self.bytes());
                    Mem::Map(map)
                }
                None => {
                    let limit = if want <= HEAP_MAX { HEAP_MAX } else { self.cap };
                    let size = want
                        .max(have * 2)
                        .max(BUF_FIRST_ALLOC)
                        .min(limit)
                        .min(self.cap);
                    let mut raw = vec![0u8; size + DIRECT_ALIGN];
                    let off = raw.as_ptr().align_offset(DIRECT_ALIGN);
                    raw[off..off + self.len].copy_from_slice(self.bytes());
                    Mem::Heap {
                        raw,
                        off,
                        usable: size,
                    }
                }
            };
            self.mem = mem;
        }
        self.mem.get_mut()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.mem()[..self.len]
    }

    pub fn push(&mut self, bytes: &[u8]) {
        assert!(self.len + bytes.len() <= self.cap, "stage overflow");
        let at = self.len;
        self.room(at + bytes.len())[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Empties the buffer (its bytes were written).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Zeroes the rest of the last block, for a direct write.
    fn zero_padding(&mut self) {
        let (at, end) = (self.len, align_up(self.len));
        self.room(at)[at..end].fill(0);
    }

    /// The bytes a write of this buffer covers: up to the next block boundary
    /// (zero padded by [`Buf::zero_padding`]) for direct I/O.
    fn to_write(&self, direct: bool) -> &[u8] {
        let end = if direct { align_up(self.len) } else { self.len };
        &self.mem()[..end]
    }
}

/// The buffer being filled, and where in the active container file it starts.
#[derive(Debug)]
pub(crate) struct Stage {
    pub buf: Buf,
    /// File offset of `buf[0]` (block aligned in direct mode).
    pub base: u64,
    /// `buf[..written]` is already in the file (the carried partial block).
    pub written: usize,
    /// The buffer belongs to the pool (not a one-off for an oversized append).
    pub pooled: bool,
}

impl Stage {
    pub fn end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    pub fn has_new_bytes(&self) -> bool {
        self.buf.len() > self.written
    }

    /// The bytes of `offset..offset + len` of the file, if this stage holds them.
    pub fn copy(&self, offset: u64, len: u64) -> Option<Vec<u8>> {
        copy_from(self.base, self.buf.bytes(), offset, len)
    }
}

fn copy_from(base: u64, bytes: &[u8], offset: u64, len: u64) -> Option<Vec<u8>> {
    if offset < base || offset + len > base + bytes.len() as u64 {
        return None;
    }
    let at = (offset - base) as usize;
    Some(bytes[at..at + len as usize].to_vec())
}

/// One buffer to write.
pub(crate) struct Job {
    pub file: Arc<dyn StorageFile>,
    pub file_no: u64,
    pub base: u64,
    pub buf: Arc<Buf>,
    pub direct: bool,
    pub pooled: bool,
}

enum Msg {
    Write(Job),
    /// Inline mode wrote up to this log position (for the sync timer).
    /// Inline mode wrote to this file (the file the sync timer syncs).
    File(Weak<dyn StorageFile>),
}

struct InFlight {
    file_no: u64,
    base: u64,
    buf: Arc<Buf>,
}

struct State {
    inflight: VecDeque<InFlight>,
    free: Vec<Buf>,
    /// Pool buffers alive (free, staged or in flight).
    pooled: usize,
    /// A one-off buffer (for an append larger than a pool buffer) is alive.
    one_off: bool,
    /// Bytes of all buffers alive, and the most there ever were.
    bytes: usize,
    peak_bytes: usize,
    error: Option<String>,
}

impl State {
    fn grow(&mut self, bytes: usize) {
        self.bytes += bytes;
        self.peak_bytes = self.peak_bytes.max(self.bytes);
    }
}

/// What the container and its writer thread share.
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// Log position up to which every appended byte is in its file. Only
    /// raised while holding `state` (so a look at the in-flight list agrees
    /// with it), read without it on the read path.
    written: AtomicU64,
    /// Log position up to which everything is known durable.
    pub durable: AtomicU64,
    pub fsyncs: AtomicU64,
}

impl Shared {
    pub fn new(written: u64) -> Shared {
        Shared {
            written: AtomicU64::new(written),
            state: Mutex::new(State {
                inflight: VecDeque::new(),
                free: Vec::new(),
                pooled: 0,
                one_off: false,
                bytes: 0,
                peak_bytes: 0,
                error: None,
            }),
            changed: Condvar::new(),
            durable: AtomicU64::new(written),
            fsyncs: AtomicU64::new(0),
        }
    }

    /// The most bytes held in write buffers at once since open.
    pub fn peak_buffer_bytes(&self) -> usize {
        lock(&self.state).peak_bytes
    }

    pub fn error(&self) -> Option<String> {
        lock(&self.state).error.clone()
    }

    /// Nothing is in flight (every handed-over buffer is in its file) and no
    /// write failed.
    pub fn idle(&self) -> bool {
        let st = lock(&self.state);
        st.inflight.is_empty() && st.error.is_none()
    }

    /// Records a failure; everything waiting wakes up and sees it.
    pub fn fail(&self, msg: String) {
        let mut st = lock(&self.state);
        st.error.get_or_insert(msg);
        self.changed.notify_all();
    }

    /// Sets the watermark after a rotation or a synchronous write.
    pub fn set_written(&self, pos: u64) {
        let _st = lock(&self.state);
        self.written.fetch_max(pos, Ordering::Release);
        self.changed.notify_all();
    }

    /// Waits until everything up to log position `pos` is in its file.
    pub fn wait_written(&self, pos: u64) -> Result<(), String> {
        if self.is_written_to(pos) {
            return Ok(());
        }
        let mut st = lock(&self.state);
        loop {
            if self.is_written_to(pos) {
                return Ok(());
            }
            if let Some(e) = &st.error {
                return Err(e.clone());
            }
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Whether everything up to `end` of container file `file_no` is in the file.
    pub fn is_written(&self, file_no: u64, end: u64) -> bool {
        self.is_written_to(log_position(file_no, end))
    }

    fn is_written_to(&self, pos: u64) -> bool {
        self.written.load(Ordering::Acquire) >= pos
    }

    /// Where the bytes of `offset..offset + len` of container file `file_no`
    /// are: `Ok(None)` once they are in the file, a copy while they are in
    /// flight, `Err(())` if neither (they are still in the stage).
    pub fn lookup(&self, file_no: u64, offset: u64, len: u64) -> Result<Option<Vec<u8>>, ()> {
        let end = log_position(file_no, offset + len);
        if self.is_written_to(end) {
            return Ok(None); // the common case, without the lock
        }
        let st = lock(&self.state);
        if self.is_written_to(end) {
            return Ok(None);
        }
        for f in st.inflight.iter().rev() {
            if f.file_no == file_no {
                if let Some(bytes) = copy_from(f.base, f.buf.bytes(), offset, len) {
                    return Ok(Some(bytes));
                }
            }
        }
        Err(())
    }
}

/// The writer thread of one container (none in inline mode without a timer).
/// It starts with the first buffer handed over: an open that only reads
/// never starts one.
pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    thread: Option<LazyThread>,
    buf_size: usize,
    pool: usize,
}

/// The writer thread, started on first use; an error if it could not be.
struct LazyThread {
    sync_every: Option<Duration>,
    started: OnceLock<Result<Started, String>>,
}

/// A started writer thread: its queue and its handle.
type Started = (mpsc::Sender<Msg>, JoinHandle<()>);

impl Writer {
    /// `buf_size` bytes per buffer, `pool` buffers. `thread`: whether there
    /// is a writer thread at all.
    pub fn new(
        shared: Arc<Shared>,
        buf_size: usize,
        pool: usize,
        thread: bool,
        sync_every: Option<Duration>,
    ) -> Writer {
        Writer {
            shared,
            thread: thread.then(|| LazyThread {
                sync_every,
                started: OnceLock::new(),
            }),
            buf_size: align_up(buf_size),
            pool: pool.max(2),
        }
    }

    /// The writer thread's queue, the thread started if this is its first
    /// use; `None` without a thread. A thread that cannot be started
    /// poisons the writer.
    fn queue(&self) -> Option<Result<&mpsc::Sender<Msg>, String>> {
        let lazy = self.thread.as_ref()?;
        let started = lazy.started.get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            let s = self.shared.clone();
            let sync_every = lazy.sync_every;
            std::thread::Builder::new()
                .name("jocky-writer".into())
                .spawn(move || run(s, rx, sync_every))
                .map(|handle| (tx, handle))
                .map_err(|e| format!("could not start the container's writer thread: {e}"))
        });
        Some(started.as_ref().map(|(tx, _)| tx).map_err(|e| {
            self.shared.fail(e.clone());
            e.clone()
        }))
    }

    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// A buffer from the pool, waiting for one to come back if all are in use.
    pub fn take_buf(&self) -> Result<Buf, String> {
        let mut st = lock(&self.shared.state);
        loop {
            if let Some(e) = &st.error {
                return Err(e.clone());
            }
            if let Some(b) = st.free.pop() {
                return Ok(b);
            }
            if st.pooled < self.pool {
                st.pooled += 1;
                st.grow(self.buf_size);
                return Ok(Buf::with_capacity(self.buf_size));
            }
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A buffer of `cap` bytes for an append larger than a pool buffer. At most
    /// one is alive at a time (this waits until the previous one is written),
    /// so memory stays bounded by the pool plus the largest append.
    pub fn one_off(&self, cap: usize) -> Result<Buf, String> {
        let mut st = lock(&self.shared.state);
        loop {
            if let Some(e) = &st.error {
                return Err(e.clone());
            }
            if !st.one_off {
                st.one_off = true;
                let buf = Buf::with_capacity(cap);
                st.grow(buf.capacity());
                return Ok(buf);
            }
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Writes `bytes` at `base` of container file `file_no` from the calling
    /// thread and raises the watermark past them, if nothing is in flight
    /// (nothing the thread has yet to write comes before them; the caller
    /// holds the active file, so nothing can be handed over meanwhile).
    /// `Ok(false)`: something is in flight, nothing was written.
    pub fn write_now(
        &self,
        file: &dyn StorageFile,
        file_no: u64,
        base: u64,
        bytes: &[u8],
    ) -> Result<bool, String> {
        if !self.shared.idle() {
            return Ok(false);
        }
        write_or_fail(&self.shared, file, file_no, base, bytes)?;
        self.shared
            .set_written(log_position(file_no, base + bytes.len() as u64));
        Ok(true)
    }

    /// Gives back a buffer that was never handed over: to the pool, or (a
    /// one-off) lets it go, so that the next one-off may be made.
    pub fn give_back(&self, mut buf: Buf, pooled: bool) {
        let mut st = lock(&self.shared.state);
        if pooled {
            buf.clear();
            st.free.push(buf);
        } else {
            st.bytes -= buf.capacity();
            st.one_off = false;
        }
        self.shared.changed.notify_all();
    }

    /// Hands a filled buffer over: it joins the in-flight list (where reads
    /// find it) and the writer thread's queue.
    pub fn submit(
        &self,
        file: Arc<dyn StorageFile>,
        file_no: u64,
        base: u64,
        mut buf: Buf,
        direct: bool,
        pooled: bool,
    ) {
        if direct {
            buf.zero_padding();
        }
        let buf = Arc::new(buf);
        lock(&self.shared.state).inflight.push_back(InFlight {
            file_no,
            base,
            buf: buf.clone(),
        });
        let job = Job {
            file,
            file_no,
            base,
            buf,
            direct,
            pooled,
        };
        match self.queue() {
            Some(Ok(tx)) => {
                if tx.send(Msg::Write(job)).is_err() {
                    self.shared
                        .fail("the container's writer thread is gone".into());
                }
            }
            // Poisoned: the buffer stays readable in the in-flight list.
            Some(Err(_)) => {}
            None => write_job(&self.shared, job, &mut Smoother::default()),
        }
    }

    /// Inline mode wrote to `file`: tells the sync timer (if there is one)
    /// which file to sync.
    pub fn note_file(&self, file: &Arc<dyn StorageFile>) {
        if let Some(Ok(tx)) = self.queue() {
            let _ = tx.send(Msg::File(Arc::downgrade(file)));
        }
    }
}

impl Drop for Writer {
    /// The container hands over and waits for its last stage before this.
    fn drop(&mut self) {
        let started = self.thread.as_mut().and_then(|t| t.started.take());
        if let Some(Ok((tx, handle))) = started {
            drop(tx); // the thread ends once its queue is empty and closed
            if handle.join().is_err() {
                log::error!("the container's writer thread panicked");
            }
        }
    }
}

/// The writer thread. A panic in it (a bug) poisons the container like a
/// failed write: every waiter wakes up with the error, nothing more is written.
fn run(shared: Arc<Shared>, rx: mpsc::Receiver<Msg>, sync_every: Option<Duration>) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_loop(&shared, rx, sync_every)
    }));
    if let Err(panic) = result {
        shared.fail(format!(
            "the container's writer thread panicked: {}",
            panic_message(&*panic)
        ));
    }
}

/// Writes `bytes` at `base` of container file `file_no`. A failure, or a
/// panic in the write (a bug), poisons the writer and is returned.
fn write_or_fail(
    shared: &Shared,
    file: &dyn StorageFile,
    file_no: u64,
    base: u64,
    bytes: &[u8],
) -> Result<(), String> {
    let wrote =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| file.write_at(base, bytes)))
            .unwrap_or_else(|panic| {
                Err(std::io::Error::other(format!(
                    "the write panicked: {}",
                    panic_message(&*panic)
                )))
            });
    wrote.map_err(|e| {
        let msg = format!(
            "write of {base}..{} failed on container file {file_no}: {e}",
            base + bytes.len() as u64
        );
        shared.fail(msg.clone());
        msg
    })
}

/// A buffered write, one `pwrite` per page of the container file.
///
/// Linux (6.16 on, for ext4; XFS and btrfs before) caches what one write
/// brings in as folios as large as the write allows, up to 2 MiB, and drops a
/// folio only whole. A container page range holds the chunks of many files
/// side by side, so the pages of a deleted file shared folios with files still
/// alive and stayed cached, whatever `POSIX_FADV_DONTNEED` asked: 33 of 321 MB
/// released in one `compare_mmap` round, a page-cache plateau above the index
/// until its container file went. Written page by page, every folio is one
/// page, and a released extent leaves the page cache whole (1-2 MB stayed; a
/// page shared with a neighbour's bytes stays). What it costs: a `pwrite` per
/// 4 KiB instead of one per stage, about 60 ms of CPU per 256 MB, on the
/// writer thread.
fn write_page_by_page(
    shared: &Shared,
    file: &dyn StorageFile,
    file_no: u64,
    base: u64,
    bytes: &[u8],
) -> Result<(), String> {
    let mut at = 0;
    while at < bytes.len() {
        let pos = base + at as u64;
        let to_page_end = (DIRECT_ALIGN as u64 - pos % DIRECT_ALIGN as u64) as usize;
        let n = to_page_end.min(bytes.len() - at);
        write_or_fail(shared, file, file_no, pos, &bytes[at..at + n])?;
        at += n;
    }
    Ok(())
}

/// What a caught panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into())
}

fn run_loop(shared: &Shared, rx: mpsc::Receiver<Msg>, sync_every: Option<Duration>) {
    let mut smooth = Smoother::default();
    // Weak: a sealed file's descriptor closes when the container lets it go
    // (it was synced when sealed, so the timer has nothing to do there).
    let mut last_file: Option<Weak<dyn StorageFile>> = None;
    let mut last_sync = Instant::now();
    loop {
        let msg = match sync_every {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(d) => rx.recv_timeout(d.saturating_sub(last_sync.elapsed())),
        };
        match msg {
            Ok(Msg::Write(job)) => {
                last_file = Some(Arc::downgrade(&job.file));
                write_job(shared, job, &mut smooth);
            }
            Ok(Msg::File(file)) => last_file = Some(file),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if let Some(d) = sync_every {
            if last_sync.elapsed() >= d {
                if let Some(file) = last_file.as_ref().and_then(Weak::upgrade) {
                    timer_sync(shared, &*file);
                }
                last_sync = Instant::now();
            }
        }
    }
}

/// `SyncPolicy::Interval`: makes what is written durable. `file` is the file
/// of the last write; every older container file was synced when it was
/// sealed, so its sync covers the whole watermark.
fn timer_sync(shared: &Shared, file: &dyn StorageFile) {
    let written = shared.written.load(Ordering::Acquire);
    if shared.error().is_some() || shared.durable.load(Ordering::SeqCst) >= written {
        return;
    }
    match file.sync_data() {
        Ok(()) => {
            shared.durable.fetch_max(written, Ordering::SeqCst);
            shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => shared.fail(format!("timed fdatasync failed: {e}")),
    }
}

fn write_job(shared: &Shared, job: Job, smooth: &mut Smoother) {
    if shared.error().is_some() {
        // Poisoned: nothing more is written; the buffer stays readable.
        return;
    }
    let end = job.base + job.buf.len() as u64;
    let bytes = job.buf.to_write(job.direct);
    let wrote = if job.direct {
        write_or_fail(shared, &*job.file, job.file_no, job.base, bytes)
    } else {
        write_page_by_page(shared, &*job.file, job.file_no, job.base, bytes)
    };
    if wrote.is_err() {
        return;
    }
    if !job.direct {
        smooth.wrote(&*job.file, job.file_no, job.base, end);
    }
    let mut st = lock(&shared.state);
    shared
        .written
        .fetch_max(log_position(job.file_no, end), Ordering::Release);
    let done = st.inflight.pop_front();
    debug_assert!(done.as_ref().is_some_and(|f| Arc::ptr_eq(&f.buf, &job.buf)));
    drop(job.buf);
    if let Some(done) = done {
        let cap = done.buf.capacity();
        match Arc::try_unwrap(done.buf) {
            Ok(mut b) if job.pooled => {
                b.clear();
                st.free.push(b);
            }
            // A one-off, or a pool buffer a reader is copying out of (the
            // reader lets go of it soon; the pool makes a new one).
            _ => {
                st.bytes -= cap;
                if job.pooled {
                    st.pooled -= 1;
                } else {
                    st.one_off = false;
                }
            }
        }
    }
    shared.changed.notify_all();
}

/// Smoothed write-back of a file written front to back through the page
/// cache: once [`SMOOTH_WINDOW`] bytes were written since the last step, their
/// write-back is started, so dirty pages never pile up into a storm that a
/// later `fdatasync` — this process's or a neighbour's, which on ext4 may wait
/// for the same journal commit — must wait for. Buffered mode's writer thread
/// keeps one across container files; an export one per segment file.
#[derive(Default)]
pub(crate) struct Smoother {
    file_no: Option<u64>,
    window_start: u64,
}

impl Smoother {
    /// `start..end` of `file` (number `file_no`; another number starts a new
    /// window) was just written.
    pub(crate) fn wrote(&mut self, file: &dyn StorageFile, file_no: u64, start: u64, end: u64) {
        if self.file_no != Some(file_no) {
            *self = Smoother {
                file_no: Some(file_no),
                window_start: start,
            };
        }
        if end - self.window_start < SMOOTH_WINDOW {
            return;
        }
        file.start_write_back(self.window_start..end);
        self.window_start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_padded_with_zeros() {
        let mut b = Buf::with_capacity(10_000);
        assert_eq!(b.capacity(), 3 * DIRECT_ALIGN);
        b.push(&[9u8; 10_000]);
        assert_eq!(b.bytes().as_ptr() as usize % DIRECT_ALIGN, 0);
        b.clear();
        b.push(&[7u8; 5000]);
        // Bytes left past the end (an earlier, longer content) are zeroed.
        b.zero_padding();
        let w = b.to_write(true);
        assert_eq!(w.len(), 2 * DIRECT_ALIGN);
        assert!(w[..5000].iter().all(|x| *x == 7));
        assert!(w[5000..].iter().all(|x| *x == 0));
        assert_eq!(b.to_write(false).len(), 5000);
    }

    #[test]
    fn a_buffer_allocates_what_it_holds_and_keeps_its_bytes_as_it_grows() {
        let mut b = Buf::with_capacity(2 << 20);
        assert!(
            matches!(b.mem, Mem::Empty),
            "nothing allocated before the first byte"
        );
        assert_eq!(b.bytes(), b"");
        b.push(b"commit");
        assert!(
            matches!(&b.mem, Mem::Heap { usable, .. } if *usable == BUF_FIRST_ALLOC),
            "a small commit costs a small allocation, no mapping: {:?}",
            b.mem().len()
        );
        let mut want = b"commit".to_vec();
        for i in 0..300u32 {
            let chunk = vec![i as u8; 5000];
            b.push(&chunk);
            want.extend_from_slice(&chunk);
            assert_eq!(b.bytes().as_ptr() as usize % DIRECT_ALIGN, 0);
            if want.len() > HEAP_MAX {
                assert!(matches!(b.mem, Mem::Map(_)), "mapped past {HEAP_MAX}");
            }
        }
        assert_eq!(b.bytes(), &want[..]);
        b.zero_padding();
        assert_eq!(b.to_write(true).len(), align_up(want.len()));
        assert_eq!(b.to_write(false), &want[..]);
    }

    #[test]
    fn lookup_finds_in_flight_bytes_until_written() {
        let shared = Shared::new(log_position(0, 0));
        let mut b = Buf::with_capacity(4096);
        b.push(b"hello world");
        shared.state.lock().unwrap().inflight.push_back(InFlight {
            file_no: 0,
            base: 100,
            buf: Arc::new(b),
        });
        assert_eq!(shared.lookup(0, 106, 5), Ok(Some(b"world".to_vec())));
        assert_eq!(shared.lookup(0, 106, 6), Err(()), "past the buffer");
        assert_eq!(shared.lookup(1, 106, 5), Err(()), "another file");
        shared.set_written(log_position(0, 111));
        assert_eq!(shared.lookup(0, 106, 5), Ok(None));
    }
}
