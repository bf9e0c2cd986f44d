//! Process resource figures from Linux `/proc/self`, for benchmarks and tests.
//!
//! All functions read the current process (all threads). On systems without `/proc`
//! they return 0. [`Sampler`] polls the figures on a background thread so that peaks
//! during a workload can be reported.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Number of open file descriptors of this process (entries of `/proc/self/fd`, not
/// counting the descriptor used to list them).
pub fn open_fds() -> usize {
    match fs::read_dir("/proc/self/fd") {
        // The listing includes the descriptor of the listing itself.
        Ok(entries) => entries.count().saturating_sub(1),
        Err(_) => 0,
    }
}

/// Number of memory mappings (VMAs) of this process: lines of `/proc/self/maps`.
/// `vm.max_map_count` limits this number.
pub fn mappings() -> usize {
    match fs::read("/proc/self/maps") {
        Ok(bytes) => bytes.iter().filter(|&&b| b == b'\n').count(),
        Err(_) => 0,
    }
}

/// Reads one `key: value` counter of `/proc/self/io`.
fn proc_io_field(key: &str) -> u64 {
    let Ok(text) = fs::read_to_string("/proc/self/io") else {
        return 0;
    };
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(k, _)| k.trim() == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes this process caused to be sent to the storage layer (`write_bytes` of
/// `/proc/self/io`; accounted when page-cache pages are dirtied).
pub fn io_write_bytes() -> u64 {
    proc_io_field("write_bytes")
}

/// Bytes whose write-out this process cancelled, e.g. by truncating or deleting dirty
/// files before write-back (`cancelled_write_bytes` of `/proc/self/io`).
pub fn io_cancelled_write_bytes() -> u64 {
    proc_io_field("cancelled_write_bytes")
}

/// Bytes this process caused to be fetched from the storage layer (`read_bytes` of
/// `/proc/self/io`; page-cache hits are not counted).
pub fn io_read_bytes() -> u64 {
    proc_io_field("read_bytes")
}

/// CPU seconds (user + system) of every thread of this process so far
/// (`getrusage`; not the kernel's write-back threads).
pub fn process_cpu_secs() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is valid.
    let u = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()), 0);
        u.assume_init()
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Returns the heap memory malloc holds free to the kernel (`malloc_trim(0)`), so that
/// RSS measured next starts from what is in use. A no-op off glibc.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; no pointer is handed over.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// CPUs the machine has online (`/proc/stat`'s `cpuN` lines, what
/// [`machine_cpu_busy_secs`] adds up).
pub fn cpus() -> usize {
    fs::read_to_string("/proc/stat").map_or(1, |text| {
        text.lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .count()
            .max(1)
    })
}

/// Threads of this process.
pub fn threads() -> usize {
    fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// CPU time the whole machine has spent busy (user, nice, system, irq, softirq and
/// steal of `/proc/stat`'s first line), in seconds: this process and the kernel
/// threads that work for it (journal commits, write-back, block I/O).
pub fn machine_cpu_busy_secs() -> f64 {
    let Ok(text) = fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = text.lines().next() else {
        return 0.0;
    };
    // cpu user nice system idle iowait irq softirq steal ...
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum();
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    busy as f64 / hz
}

/// Resident set size of this process in bytes (second field of `/proc/self/statm`).
pub fn rss_bytes() -> u64 {
    let Ok(text) = fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * page_size()
}

/// Anonymous resident memory of this process in bytes: resident less shared
/// (file-backed and shared memory) pages, from `/proc/self/statm`. What the
/// process holds that no page cache accounts for (heap, stacks, copies).
pub fn anon_rss_bytes() -> u64 {
    let Ok(text) = fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let field = |i: usize| -> u64 {
        text.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    field(1).saturating_sub(field(2)) * page_size()
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// Sum of the lengths of all regular files under `path` (recursively, without following
/// symbolic links). A single file gives its own length. Entries that vanish during the
/// walk (e.g. deleted by a concurrent garbage collection) are ignored.
pub fn dir_size(path: impl AsRef<Path>) -> io::Result<u64> {
    walk_sum(path.as_ref(), &|meta| meta.len())
}

/// Like [`dir_size`] but counts allocated disk blocks (`st_blocks * 512`), which differs
/// from the length for sparse or preallocated files.
pub fn dir_disk_usage(path: impl AsRef<Path>) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    walk_sum(path.as_ref(), &|meta| meta.blocks() * 512)
}

/// Bytes of the regular files under `path` (recursively, without following symbolic
/// links; a single file gives its own figure) that are resident in the page cache, as
/// reported by `mincore(2)` on a read-only mapping of each file. Counted in whole pages,
/// except that a file's last page counts only up to the file's length.
///
/// Each non-empty file is opened, mapped and closed at once, then the mapping is
/// inspected and unmapped: while this runs, the process briefly holds one extra
/// descriptor and one extra mapping. Nothing is read through the mapping, so no page is
/// faulted in. Files that vanish during the walk are ignored.
pub fn page_cache_bytes(path: impl AsRef<Path>) -> io::Result<u64> {
    let mut total = 0;
    walk_files(path.as_ref(), &mut |file_path, _| {
        total += file_page_cache_bytes(file_path)?;
        Ok(())
    })?;
    Ok(total)
}

fn file_page_cache_bytes(path: &Path) -> io::Result<u64> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let map_len = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large to map"))?;
    // SAFETY: a shared read-only mapping whose memory is never read or written here:
    // only `mincore` inspects it, and it does not touch the pages. So another process
    // writing or truncating the file cannot cause a data race or a SIGBUS through it.
    let map = unsafe { memmap2::MmapOptions::new().len(map_len).map(&file) }?;
    // The mapping stays valid without the descriptor.
    drop(file);
    let page = page_size();
    let pages = len.div_ceil(page) as usize;
    let mut residency = vec![0u8; pages];
    // SAFETY: `map.as_ptr()` is the page-aligned start of a live mapping of `map.len()`
    // bytes (offset 0, so memmap2 returns mmap's own address), and `residency` has one
    // byte for each of its ceil(len / page size) pages, which is what mincore writes.
    let rc = unsafe {
        libc::mincore(
            map.as_ptr() as *mut libc::c_void,
            map.len(),
            residency.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let resident = residency.iter().filter(|&&v| v & 1 != 0).count() as u64;
    Ok((resident * page).min(len))
}

fn walk_sum(path: &Path, size: &dyn Fn(&fs::Metadata) -> u64) -> io::Result<u64> {
    let mut total = 0;
    walk_files(path, &mut |_, meta| {
        total += size(meta);
        Ok(())
    })?;
    Ok(total)
}

/// Calls `visit` for every regular file under `path` (or `path` itself if it is a
/// file), without following symbolic links; entries that vanish are skipped.
fn walk_files(
    path: &Path,
    visit: &mut dyn FnMut(&Path, &fs::Metadata) -> io::Result<()>,
) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_file() {
        return visit(path, &meta);
    }
    if !meta.is_dir() {
        return Ok(());
    }
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                visit(&entry.path(), &meta)?;
            }
        }
    }
    Ok(())
}

/// One sample taken by a [`Sampler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Time since the sampler started.
    pub at: Duration,
    /// Open file descriptors, see [`open_fds`].
    pub fds: usize,
    /// Memory mappings, see [`mappings`].
    pub mappings: usize,
    /// Resident set size in bytes, see [`rss_bytes`].
    pub rss: u64,
}

impl Sample {
    fn take(start: Instant) -> Sample {
        Sample {
            at: start.elapsed(),
            fds: open_fds(),
            mappings: mappings(),
            rss: rss_bytes(),
        }
    }
}

/// What a [`Sampler`] saw between `start` and `stop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplerReport {
    /// The sample taken by [`Sampler::start`] before the thread was spawned.
    pub baseline: Sample,
    /// Highest fd count seen.
    pub peak_fds: usize,
    /// Highest mapping count seen.
    pub peak_mappings: usize,
    /// Highest RSS seen.
    pub peak_rss: u64,
    /// All samples in time order, including the baseline and a final sample taken at stop.
    pub samples: Vec<Sample>,
}

impl SamplerReport {
    /// Peak fds above the baseline.
    pub fn extra_fds(&self) -> usize {
        self.peak_fds.saturating_sub(self.baseline.fds)
    }

    /// Peak mappings above the baseline.
    pub fn extra_mappings(&self) -> usize {
        self.peak_mappings.saturating_sub(self.baseline.mappings)
    }

    /// Peak RSS above the baseline.
    pub fn extra_rss(&self) -> u64 {
        self.peak_rss.saturating_sub(self.baseline.rss)
    }
}

/// Background thread sampling [`open_fds`], [`mappings`] and [`rss_bytes`] at a fixed
/// interval, so that peaks during a workload can be reported. The sampling thread itself
/// holds a descriptor only briefly while it lists `/proc/self/fd` (not counted) and adds
/// one stack mapping (present in every sample after the baseline).
#[derive(Debug)]
pub struct Sampler {
    start: Instant,
    stop_tx: mpsc::Sender<()>,
    handle: thread::JoinHandle<Vec<Sample>>,
    baseline: Sample,
}

impl Sampler {
    /// Takes a baseline sample and starts sampling every `interval`.
    pub fn start(interval: Duration) -> io::Result<Sampler> {
        let start = Instant::now();
        let baseline = Sample::take(start);
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let handle = thread::Builder::new()
            .name("procstats-sampler".into())
            .spawn(move || {
                let mut samples = Vec::new();
                loop {
                    samples.push(Sample::take(start));
                    match stop_rx.recv_timeout(interval) {
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        // Stop requested, or the Sampler was dropped.
                        _ => break,
                    }
                }
                samples
            })?;
        Ok(Sampler {
            start,
            stop_tx,
            handle,
            baseline,
        })
    }

    /// The baseline sample taken by [`Sampler::start`].
    pub fn baseline(&self) -> Sample {
        self.baseline
    }

    /// Stops the thread, takes a final sample and returns the peaks and the time series.
    pub fn stop(self) -> SamplerReport {
        // The receiver is only gone if the thread already ended; either way it ends now.
        let _ = self.stop_tx.send(());
        let mut samples = vec![self.baseline];
        // A panic in the sampling thread only loses its samples.
        samples.extend(self.handle.join().unwrap_or_default());
        samples.push(Sample::take(self.start));
        SamplerReport {
            baseline: self.baseline,
            peak_fds: samples.iter().map(|s| s.fds).max().unwrap_or(0),
            peak_mappings: samples.iter().map(|s| s.mappings).max().unwrap_or(0),
            peak_rss: samples.iter().map(|s| s.rss).max().unwrap_or(0),
            samples,
        }
    }
}

/// Asks the kernel to drop the page cache of every file under `path`
/// (`POSIX_FADV_DONTNEED`; dirty pages are written back, not dropped).
pub fn evict_page_cache(path: impl AsRef<Path>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    walk_files(path.as_ref(), &mut |file_path, _| {
        let file = match fs::File::open(file_path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        // SAFETY: posix_fadvise on a descriptor we own, integer arguments only.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(())
    })
}

/// Drops the kernel's clean page cache (after a `sync`, so dirty pages go
/// too): the next reads come from disk. Needs root.
pub fn drop_page_cache() -> io::Result<()> {
    let _ = std::process::Command::new("sync").status();
    fs::write("/proc/sys/vm/drop_caches", "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Other tests of the same binary run concurrently and open files too, so a delta is
    /// accepted if one of several attempts sees exactly the expected change.
    fn eventually(mut attempt: impl FnMut() -> bool) -> bool {
        (0..50).any(|_| attempt())
    }

    #[test]
    fn three_files_raise_open_fds_by_three() {
        let dir = tempfile::tempdir().unwrap();
        let ok = eventually(|| {
            let before = open_fds();
            let files: Vec<fs::File> = (0..3)
                .map(|i| fs::File::create(dir.path().join(format!("f{i}"))).unwrap())
                .collect();
            let during = open_fds();
            drop(files);
            let after = open_fds();
            during == before + 3 && after == before
        });
        assert!(ok);
    }

    #[test]
    fn mapping_a_file_raises_mappings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        fs::write(&path, vec![7u8; 3 * 4096]).unwrap();
        let file = fs::File::open(&path).unwrap();
        let ok = eventually(|| {
            let before = mappings();
            // SAFETY: the file is private to this test and not modified while mapped.
            let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
            let during = mappings();
            assert_eq!(map[4096], 7);
            drop(map);
            let after = mappings();
            during == before + 1 && after == before
        });
        assert!(ok);
    }

    #[test]
    fn io_and_rss_are_readable() {
        assert!(rss_bytes() > 0);
        // Counters exist (they may legitimately be 0 on tmpfs or without task accounting).
        let _ = io_write_bytes() + io_read_bytes() + io_cancelled_write_bytes();
        assert!(open_fds() >= 3);
        assert!(mappings() > 5);
    }

    #[test]
    fn dir_size_sums_files_recursively() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("x"), [0u8; 100]).unwrap();
        fs::write(dir.path().join("a/b/y"), [0u8; 23]).unwrap();
        assert_eq!(dir_size(dir.path()).unwrap(), 123);
        assert_eq!(dir_size(dir.path().join("x")).unwrap(), 100);
        assert!(dir_disk_usage(dir.path()).is_ok());
        assert!(dir_size(dir.path().join("missing")).is_err());
    }

    /// True if `path` is on tmpfs or ramfs, where the page cache is the storage and
    /// cannot be dropped.
    fn on_memory_fs(path: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: statfs is plain old data, for which all-zero bytes are a valid value.
        let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c_path` is a NUL-terminated string and `buf` a valid, writable statfs
        // that outlives the call.
        if unsafe { libc::statfs(c_path.as_ptr(), &mut buf) } != 0 {
            return false;
        }
        // ramfs's magic number (linux/magic.h), which libc does not export.
        const RAMFS_MAGIC: u32 = 0x8584_58f6;
        // f_type's integer type varies by platform; the magic numbers fit in 32 bits.
        let magic = buf.f_type as u32;
        magic == libc::TMPFS_MAGIC as u32 || magic == RAMFS_MAGIC
    }

    #[test]
    fn page_cache_residency_rises_on_read_and_drops_after_dontneed() {
        use std::io::Read;
        use std::os::unix::io::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cached");
        let len = 1 << 20;
        fs::write(&path, vec![3u8; len]).unwrap();
        let mut file = fs::File::open(&path).unwrap();
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), len);

        let before = page_cache_bytes(&path).unwrap();
        assert!(before > 0, "nothing resident right after reading");
        assert!(before <= len as u64);
        assert_eq!(page_cache_bytes(dir.path()).unwrap(), before);
        if on_memory_fs(dir.path()) {
            return; // tmpfs pages cannot be dropped
        }

        // Dirty pages are not dropped: write them back first.
        file.sync_data().unwrap();
        // SAFETY: the descriptor is open for the duration of the call; fadvise only
        // gives the kernel a hint about the file's cached pages.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0);
        let after = page_cache_bytes(&path).unwrap();
        // The kernel may keep a few pages (e.g. ones mapped or locked elsewhere).
        assert!(after < before, "before {before}, after {after}");
    }

    #[test]
    fn page_cache_walk_skips_empty_files_and_recurses() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("empty"), []).unwrap();
        fs::write(dir.path().join("a/b/small"), [1u8; 100]).unwrap();
        let bytes = page_cache_bytes(dir.path()).unwrap();
        // Freshly written data is in the page cache, and at most the file's length counts.
        assert!(bytes <= 100, "{bytes}");
        if !on_memory_fs(dir.path()) {
            assert_eq!(bytes, 100);
        }
        assert_eq!(page_cache_bytes(dir.path().join("empty")).unwrap(), 0);
        assert!(page_cache_bytes(dir.path().join("missing")).is_err());
    }

    #[test]
    fn sampler_sees_a_peak() {
        let dir = tempfile::tempdir().unwrap();
        let ok = eventually(|| {
            let sampler = Sampler::start(Duration::from_millis(2)).unwrap();
            let files: Vec<fs::File> = (0..20)
                .map(|i| fs::File::create(dir.path().join(format!("s{i}"))).unwrap())
                .collect();
            thread::sleep(Duration::from_millis(30));
            drop(files);
            let report = sampler.stop();
            assert!(report.samples.len() >= 3, "{}", report.samples.len());
            assert!(report.samples.windows(2).all(|w| w[0].at <= w[1].at));
            assert!(report.peak_rss > 0);
            report.extra_fds() >= 20
        });
        assert!(ok);
    }
}
