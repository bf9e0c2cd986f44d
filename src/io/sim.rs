//! A simulated storage for tests: files in memory, with "written" kept apart from
//! "durable" so a test can cut the power at any point, and with injectable faults
//! (ENOSPC after a byte budget, EIO on write or on fsync).
//!
//! Model: every write, allocate or truncate goes into the file's visible bytes and
//! into a global, ordered list of unsynced operations. `sync_data` makes the file's
//! visible bytes durable and drops its operations from the list. A crash keeps the
//! durable bytes plus, optionally, a prefix of the unsynced operations (the last of
//! them possibly torn), which models a disk that persists writes in order.
//! A file's creation is durable only after `sync_dir`; removal is immediate.

use crate::sync::lock;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use ownedbytes::OwnedBytes;

use super::{ReadView, Storage, StorageFile};

#[derive(Debug, Default)]
struct FileData {
    data: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

/// Everything that happened to the disk, in order, for `crash_at`.
#[derive(Debug, Clone)]
enum Event {
    Create(String),
    Remove(String),
    Mutate(String, Op),
    SyncData(String),
    SyncDir,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<String, Arc<Mutex<FileData>>>,
    durable_names: BTreeSet<String>,
    unsynced: Vec<(String, Op)>,
    write_budget: Option<u64>,
    fail_write: bool,
    /// Every write panics (a bug in the writing thread, for tests).
    panic_on_write: bool,
    fail_sync: bool,
    /// Writes (syncs) that still succeed before `fail_write` (`fail_sync`) is set.
    fail_write_after: Option<u64>,
    fail_sync_after: Option<u64>,
    locked: bool,
    syncs: u64,
    history: Option<Vec<Event>>,
    /// Every range a view was asked to read ahead (`Advice::WillNeed`).
    read_ahead: Vec<(String, Range<u64>)>,
    /// Every range whose write-back a file was asked to start.
    write_back: Vec<(String, Range<u64>)>,
}

impl State {
    /// Counts down `fail_write_after`; sets `fail_write` once it runs out.
    fn count_write(&mut self) {
        match self.fail_write_after {
            Some(0) => {
                self.fail_write = true;
                self.fail_write_after = None;
            }
            Some(ref mut n) => *n -= 1,
            None => {}
        }
    }

    /// Counts down `fail_sync_after`; sets `fail_sync` once it runs out.
    fn count_sync(&mut self) {
        match self.fail_sync_after {
            Some(0) => {
                self.fail_sync = true;
                self.fail_sync_after = None;
            }
            Some(ref mut n) => *n -= 1,
            None => {}
        }
    }

    fn record(&mut self, e: Event) {
        if let Some(h) = self.history.as_mut() {
            h.push(e);
        }
    }
}

/// Holds writes and fsyncs back while closed: a disk that stalls.
#[derive(Debug, Default)]
struct Gate {
    closed: Mutex<bool>,
    opened: Condvar,
    waiting: AtomicUsize,
}

impl Gate {
    /// Returns once the gate is open (at once if it is).
    fn pass(&self) {
        let mut closed = lock(&self.closed);
        if !*closed {
            return;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        while *closed {
            closed = self.opened.wait(closed).unwrap_or_else(|e| e.into_inner());
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// In-memory storage with power-loss simulation and fault injection.
#[derive(Debug)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
    gate: Arc<Gate>,
    holds_lock: AtomicBool,
    open_files: Arc<AtomicUsize>,
}

impl Clone for SimStorage {
    /// A second handle on the same simulated disk (it does not share the lock).
    fn clone(&self) -> Self {
        SimStorage {
            state: self.state.clone(),
            gate: self.gate.clone(),
            holds_lock: AtomicBool::new(false),
            open_files: self.open_files.clone(),
        }
    }
}

impl Default for SimStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SimStorage {
    fn drop(&mut self) {
        if self.holds_lock.load(Ordering::SeqCst) {
            lock(&self.state).locked = false;
        }
    }
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}
fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

fn apply(data: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write(off, bytes) => {
            let end = *off as usize + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[*off as usize..end].copy_from_slice(bytes);
        }
        Op::SetLen(len) => data.resize(*len as usize, 0),
    }
}

impl SimStorage {
    /// An empty folder: no files, nothing written, no faults armed.
    pub fn new() -> SimStorage {
        SimStorage {
            state: Arc::default(),
            gate: Arc::default(),
            holds_lock: AtomicBool::new(false),
            open_files: Arc::default(),
        }
    }

    /// Every range of a file a view was asked to read ahead
    /// (`MADV_WILLNEED` on a real file), in order; the log is emptied.
    pub fn take_read_ahead(&self) -> Vec<(String, Range<u64>)> {
        std::mem::take(&mut lock(&self.state).read_ahead)
    }

    /// Every range of a file whose write-back was started
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)` on a real file), in order;
    /// the log is emptied.
    pub fn take_write_back(&self) -> Vec<(String, Range<u64>)> {
        std::mem::take(&mut lock(&self.state).write_back)
    }

    /// After `budget` more bytes written or allocated, writes fail with ENOSPC.
    pub fn set_write_budget(&self, budget: Option<u64>) {
        lock(&self.state).write_budget = budget;
    }
    /// Every write fails with EIO while set.
    pub fn set_fail_write(&self, fail: bool) {
        lock(&self.state).fail_write = fail;
    }
    /// Every fsync fails with EIO while set (and makes nothing durable).
    pub fn set_fail_sync(&self, fail: bool) {
        lock(&self.state).fail_sync = fail;
    }
    /// Every `write_at` panics while set: a bug in the thread that writes.
    pub fn set_panic_on_write(&self, panic: bool) {
        lock(&self.state).panic_on_write = panic;
    }
    /// While set, every write, allocation, truncation and fsync waits (a
    /// stalled disk) until it is cleared; nothing fails.
    pub fn stall_writes(&self, stall: bool) {
        *lock(&self.gate.closed) = stall;
        if !stall {
            self.gate.opened.notify_all();
        }
    }
    /// How many writes or fsyncs are waiting on [`Self::stall_writes`] now.
    pub fn stalled(&self) -> usize {
        self.gate.waiting.load(Ordering::SeqCst)
    }
    /// The next `n` writes (write, allocate, truncate) succeed, then every write
    /// fails with EIO as after `set_fail_write(true)`; `None` cancels.
    pub fn fail_write_after(&self, n: Option<u64>) {
        lock(&self.state).fail_write_after = n;
    }
    /// The next `n` fsyncs (`sync_data`, `sync_dir`) succeed, then every fsync
    /// fails with EIO as after `set_fail_sync(true)`; `None` cancels.
    pub fn fail_sync_after(&self, n: Option<u64>) {
        lock(&self.state).fail_sync_after = n;
    }
    /// Number of successful `sync_data` + `sync_dir` calls so far.
    pub fn syncs(&self) -> u64 {
        lock(&self.state).syncs
    }
    /// Number of operations not yet covered by a sync.
    pub fn unsynced_ops(&self) -> usize {
        lock(&self.state).unsynced.len()
    }

    /// Process death (SIGKILL): a new disk whose files hold everything written
    /// (the page cache outlives the process), of which only what was synced is
    /// durable — a later [`Self::crash`] of it loses what nobody synced since.
    pub fn kill(&self) -> SimStorage {
        let st = lock(&self.state);
        let new = SimStorage::new();
        {
            let mut ns = lock(&new.state);
            for (name, f) in &st.files {
                let f = lock(f);
                ns.files.insert(
                    name.clone(),
                    Arc::new(Mutex::new(FileData {
                        data: f.data.clone(),
                        durable: f.durable.clone(),
                    })),
                );
            }
            ns.durable_names = st.durable_names.clone();
            ns.unsynced = st.unsynced.clone();
        }
        new
    }

    /// Power loss: a new disk holding only what was durable.
    pub fn crash(&self) -> SimStorage {
        self.crash_keeping(0, 0)
    }

    /// Power loss that also persisted the first `keep` unsynced operations, and
    /// `torn` leading bytes of the next write.
    pub fn crash_keeping(&self, keep: usize, torn: usize) -> SimStorage {
        let st = lock(&self.state);
        let mut files: BTreeMap<String, Vec<u8>> = st
            .files
            .iter()
            .filter(|(name, _)| st.durable_names.contains(*name))
            .map(|(name, f)| (name.clone(), lock(f).durable.clone()))
            .collect();
        for (i, (name, op)) in st.unsynced.iter().enumerate() {
            let Some(data) = files.get_mut(name) else {
                continue;
            };
            if i < keep {
                apply(data, op);
            } else if i == keep {
                if let Op::Write(off, bytes) = op {
                    apply(
                        data,
                        &Op::Write(*off, bytes[..torn.min(bytes.len())].to_vec()),
                    );
                }
                break;
            }
        }
        let new = SimStorage::new();
        {
            let mut ns = lock(&new.state);
            for (name, data) in files {
                ns.durable_names.insert(name.clone());
                ns.files.insert(
                    name,
                    Arc::new(Mutex::new(FileData {
                        durable: data.clone(),
                        data,
                    })),
                );
            }
        }
        new
    }

    /// Starts recording every operation, so that [`Self::crash_at`] can cut the
    /// power at any instant from now on. Files that exist now are taken as they
    /// are durable now.
    pub fn record_history(&self) {
        let mut st = lock(&self.state);
        let mut h = Vec::new();
        for (name, f) in &st.files {
            if st.durable_names.contains(name) {
                h.push(Event::Create(name.clone()));
                h.push(Event::Mutate(
                    name.clone(),
                    Op::Write(0, lock(f).durable.clone()),
                ));
                h.push(Event::SyncData(name.clone()));
            }
        }
        h.push(Event::SyncDir);
        st.history = Some(h);
    }

    /// Number of operations recorded since [`Self::record_history`].
    pub fn history_len(&self) -> usize {
        lock(&self.state).history.as_ref().map_or(0, Vec::len)
    }

    /// Power loss right after the first `n` recorded operations: a new disk with
    /// what was durable at that instant (files whose creation was synced, with the
    /// bytes their last `sync_data` covered).
    pub fn crash_at(&self, n: usize) -> SimStorage {
        let st = lock(&self.state);
        let history = st.history.as_deref().unwrap_or(&[]);
        let mut written: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut durable: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut names: BTreeSet<String> = BTreeSet::new();
        for e in &history[..n.min(history.len())] {
            match e {
                Event::Create(name) => {
                    written.insert(name.clone(), Vec::new());
                    durable.insert(name.clone(), Vec::new());
                }
                Event::Remove(name) => {
                    written.remove(name);
                    durable.remove(name);
                    names.remove(name);
                }
                Event::Mutate(name, op) => {
                    if let Some(w) = written.get_mut(name) {
                        apply(w, op);
                    }
                }
                Event::SyncData(name) => {
                    if let Some(w) = written.get(name) {
                        durable.insert(name.clone(), w.clone());
                    }
                }
                Event::SyncDir => names = written.keys().cloned().collect(),
            }
        }
        let new = SimStorage::new();
        for name in names {
            if let Some(bytes) = durable.remove(&name) {
                new.set_file_bytes(&name, bytes);
            }
        }
        new
    }

    /// The bytes of a file as written (not necessarily durable).
    pub fn file_bytes(&self, name: &str) -> Option<Vec<u8>> {
        let st = lock(&self.state);
        st.files.get(name).map(|f| lock(f).data.clone())
    }

    /// Replaces a file's bytes, durably (to plant corruption or foreign files).
    pub fn set_file_bytes(&self, name: &str, bytes: Vec<u8>) {
        let mut st = lock(&self.state);
        st.durable_names.insert(name.to_string());
        st.files.insert(
            name.to_string(),
            Arc::new(Mutex::new(FileData {
                durable: bytes.clone(),
                data: bytes,
            })),
        );
    }

    fn file(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let st = lock(&self.state);
        let data = st
            .files
            .get(name)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        self.open_files.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(SimFile {
            name: name.to_string(),
            data,
            state: self.state.clone(),
            gate: self.gate.clone(),
            open_files: self.open_files.clone(),
            direct: Default::default(),
        }))
    }
}

impl Storage for SimStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(lock(&self.state).files.keys().cloned().collect())
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        {
            let mut st = lock(&self.state);
            if st.files.contains_key(name) {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            st.files.insert(name.to_string(), Arc::default());
            st.record(Event::Create(name.to_string()));
        }
        self.file(name)
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        self.file(name)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.files
            .remove(name)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        st.durable_names.remove(name);
        st.unsynced.retain(|(n, _)| n != name);
        st.record(Event::Remove(name.to_string()));
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.gate.pass();
        let mut st = lock(&self.state);
        st.count_sync();
        if st.fail_sync {
            return Err(eio());
        }
        st.durable_names = st.files.keys().cloned().collect();
        st.syncs += 1;
        st.record(Event::SyncDir);
        Ok(())
    }

    fn try_lock(&self) -> io::Result<bool> {
        let mut st = lock(&self.state);
        if st.locked {
            return Ok(false);
        }
        st.locked = true;
        self.holds_lock.store(true, Ordering::SeqCst);
        Ok(true)
    }

    fn fds_held(&self) -> usize {
        1 + self.open_files.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
struct SimFile {
    name: String,
    data: Arc<Mutex<FileData>>,
    state: Arc<Mutex<State>>,
    gate: Arc<Gate>,
    open_files: Arc<AtomicUsize>,
    /// Direct I/O was switched on: writes must be aligned, as `O_DIRECT` asks.
    direct: std::sync::atomic::AtomicBool,
}

impl Drop for SimFile {
    fn drop(&mut self) {
        self.open_files.fetch_sub(1, Ordering::SeqCst);
    }
}

impl SimFile {
    /// Applies `op`, charging `cost` bytes against the write budget; a write that
    /// does not fit is applied partially, as a real ENOSPC may be.
    fn mutate(&self, op: Op, cost: u64) -> io::Result<()> {
        self.gate.pass();
        let mut st = lock(&self.state);
        st.count_write();
        if st.fail_write {
            return Err(eio());
        }
        let mut result = Ok(());
        let op = match (st.write_budget, op) {
            (Some(budget), Op::Write(off, mut bytes)) if cost > budget => {
                bytes.truncate(budget as usize);
                result = Err(enospc());
                Op::Write(off, bytes)
            }
            (Some(budget), _) if cost > budget => return Err(enospc()),
            (_, op) => op,
        };
        if let Some(b) = st.write_budget.as_mut() {
            *b = b.saturating_sub(cost);
        }
        apply(&mut lock(&self.data).data, &op);
        st.record(Event::Mutate(self.name.clone(), op.clone()));
        st.unsynced.push((self.name.clone(), op));
        result
    }
}

impl StorageFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.data).data.len() as u64)
    }

    fn start_write_back(&self, range: Range<u64>) {
        lock(&self.state)
            .write_back
            .push((self.name.clone(), range));
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if lock(&self.state).panic_on_write {
            panic!("injected panic in a write to {}", self.name);
        }
        if self.direct.load(Ordering::SeqCst) {
            let align = super::DIRECT_ALIGN;
            if !(offset as usize).is_multiple_of(align)
                || !buf.len().is_multiple_of(align)
                || !(buf.as_ptr() as usize).is_multiple_of(align)
            {
                // What the kernel answers to a misaligned O_DIRECT write.
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
        }
        self.mutate(Op::Write(offset, buf.to_vec()), buf.len() as u64)
    }

    fn set_direct(&self) -> io::Result<bool> {
        self.direct.store(true, Ordering::SeqCst);
        Ok(true)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let d = lock(&self.data);
        let end = offset as usize + buf.len();
        if end > d.data.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        buf.copy_from_slice(&d.data[offset as usize..end]);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.gate.pass();
        let mut st = lock(&self.state);
        st.count_sync();
        if st.fail_sync {
            return Err(eio());
        }
        let mut d = lock(&self.data);
        d.durable = d.data.clone();
        st.unsynced.retain(|(n, _)| *n != self.name);
        st.syncs += 1;
        st.record(Event::SyncData(self.name.clone()));
        Ok(())
    }

    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        let cur = self.len()?;
        let end = offset + len;
        if end <= cur {
            return Ok(());
        }
        self.mutate(Op::SetLen(end), end - cur)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.mutate(Op::SetLen(len), 0)
    }

    fn view(&self, _capacity: u64) -> io::Result<Arc<dyn ReadView>> {
        Ok(Arc::new(SimView {
            data: self.data.clone(),
            name: self.name.clone(),
            state: self.state.clone(),
        }))
    }
}

#[derive(Debug)]
struct SimView {
    data: Arc<Mutex<FileData>>,
    name: String,
    state: Arc<Mutex<State>>,
}

impl ReadView for SimView {
    fn read(&self, range: Range<u64>) -> io::Result<OwnedBytes> {
        let d = lock(&self.data);
        let bytes = d
            .data
            .get(range.start as usize..range.end as usize)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "read past the end"))?;
        Ok(OwnedBytes::new(bytes.to_vec()))
    }

    fn advise(&self, range: Range<u64>, advice: crate::policy::Advice) {
        if advice == crate::policy::Advice::WillNeed {
            lock(&self.state)
                .read_ahead
                .push((self.name.clone(), range));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_keeps_only_durable_bytes() {
        let s = SimStorage::new();
        let f = s.create("a").unwrap();
        s.sync_dir().unwrap();
        f.write_at(0, b"hello").unwrap();
        f.sync_data().unwrap();
        f.write_at(5, b" world").unwrap();
        assert_eq!(s.file_bytes("a").unwrap(), b"hello world");
        assert_eq!(s.crash().file_bytes("a").unwrap(), b"hello");
        assert_eq!(s.crash_keeping(0, 3).file_bytes("a").unwrap(), b"hello wo");
        assert_eq!(
            s.crash_keeping(1, 0).file_bytes("a").unwrap(),
            b"hello world"
        );
    }

    #[test]
    fn crash_at_any_instant() {
        let s = SimStorage::new();
        s.record_history();
        let f = s.create("a").unwrap(); // 1
        f.write_at(0, b"ab").unwrap(); // 2
        s.sync_dir().unwrap(); // 3
        f.sync_data().unwrap(); // 4
        f.write_at(2, b"cd").unwrap(); // 5
        assert_eq!(s.crash_at(2).file_bytes("a"), None);
        assert_eq!(s.crash_at(4).file_bytes("a").unwrap(), b"");
        assert_eq!(s.crash_at(5).file_bytes("a").unwrap(), b"ab");
        assert_eq!(s.crash_at(6).file_bytes("a").unwrap(), b"ab");
    }

    #[test]
    fn creation_needs_a_dir_sync() {
        let s = SimStorage::new();
        let f = s.create("a").unwrap();
        f.write_at(0, b"x").unwrap();
        f.sync_data().unwrap();
        assert!(s.crash().file_bytes("a").is_none());
    }

    #[test]
    fn faults() {
        let s = SimStorage::new();
        let f = s.create("a").unwrap();
        s.set_write_budget(Some(4));
        let e = f.write_at(0, b"123456").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(s.file_bytes("a").unwrap(), b"1234");
        s.set_write_budget(None);
        s.set_fail_sync(true);
        assert!(f.sync_data().is_err());
        assert_eq!(s.crash().file_bytes("a"), None);
    }

    #[test]
    fn faults_after_a_countdown() {
        let s = SimStorage::new();
        let f = s.create("a").unwrap();
        s.fail_write_after(Some(2));
        s.fail_sync_after(Some(1));
        f.write_at(0, b"1").unwrap();
        f.sync_data().unwrap();
        f.write_at(1, b"2").unwrap();
        assert!(f.sync_data().is_err());
        assert!(f.write_at(2, b"3").is_err());
        assert!(f.write_at(2, b"3").is_err());
        assert_eq!(s.file_bytes("a").unwrap(), b"12");
        s.set_fail_write(false);
        s.set_fail_sync(false);
        f.write_at(2, b"3").unwrap();
        s.sync_dir().unwrap();
    }

    #[test]
    fn lock_is_exclusive_until_dropped() {
        let s = SimStorage::new();
        assert!(s.try_lock().unwrap());
        let other = s.clone();
        assert!(!other.try_lock().unwrap());
        drop(s);
        assert!(other.try_lock().unwrap());
    }
}
