//! Side-by-side comparison of a candidate `Directory` with tantivy's `MmapDirectory`.
//!
//! Each round indexes the same in-memory corpus into a fresh `MmapDirectory`, a fresh
//! candidate directory and a fresh `RamDirectory`, one after the other (each folder is
//! then dropped from the page cache, so that it weighs on no other side's indexing),
//! then searches them together: each index is opened (its folder uncached), the query set
//! runs once untimed on it (its results are compared), then it is opened again, warm
//! (open time, descriptors and mappings the reader holds), and
//! the timed passes over the query set interleave the sides pass by pass, so that what
//! the machine does meanwhile falls on every side alike (run one after the other, the
//! sides' p50 moved between two levels, 1.2 and 2.0 ms, from round to round, whichever
//! directory it was). The `RamDirectory` side ("ram") keeps every file in anonymous memory and
//! never touches the disk: it is the floor that no directory can beat, and shows how much
//! of the time is tantivy's own work rather than the directory's (`--no-ram` leaves it
//! out). Its folder-based figures (index size, disk usage, page cache) are 0. The order
//! of the sides rotates from round to round (round r runs [mmap, jocky, ram] rotated left
//! by r; without ram, the two alternate), so that no side always goes first. Figures are
//! reported as median [min–max] over the rounds, and the candidate/mmap and candidate/ram
//! ratios are computed per round (paired) before taking their median, because these
//! machines are noisy.
//!
//! While indexing, one sampling thread reads every 20 ms the process's open fds, memory
//! mappings and RSS and two document counters, and about once a second the bytes of the
//! index folder's files resident in the page cache (`mincore`; done after the fd and
//! mapping counts of the same tick, so the descriptor and mapping it opens briefly are
//! never counted). The counters are the documents handed to the writer and the documents
//! the indexing threads have finished with (`harness::CountedDocument`). The second one
//! is the throughput: tantivy queues up to 10,000 documents ahead of its indexing
//! threads, so with a commit every 10,000 the first counter moves in jumps of 10,000 and
//! its 1 s rates mostly measure how commits fall into windows. Throughput is taken over
//! each whole 1 s window from the start of indexing until the last document is indexed
//! (the final commit and the merges come after); the table reports the windows' mean,
//! coefficient of variation (population stddev / mean) and minimum. A progress bar is
//! drawn on stderr when it is a terminal, and a chart of throughput, RSS and page cache
//! over time for every directory is written as SVG (`--chart`).
//!
//! ```text
//! cargo run --release -p jocky-bench --example compare_mmap -- --docs 20000 --rounds 1
//! cargo run --release -p jocky-bench --example compare_mmap -- --corpus wiki.jsonl
//! cargo run --release -p jocky-bench --example compare_mmap -- --corpus /usr/src/linux-source-6.1
//! ```
//!
//! The candidate is opened by [`open_candidate`]; switching it to
//! `jocky::JockyDirectory::open(path)` is a one-line change.

use std::error::Error;
use std::fs;
use std::hint::black_box;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use jocky_bench::corpus::{self, Doc};
use jocky_bench::harness::{self, CountedDocument, QueryResult};
use jocky_bench::procstats;
use plotters::prelude::*;
use tantivy::directory::{Directory, MmapDirectory, RamDirectory};
use tantivy::{Index, IndexSettings, IndexWriter};

type BoxResult<T> = Result<T, Box<dyn Error>>;

/// Generated documents by default: about 250 MB of text.
const DEFAULT_DOCS: usize = 160_000;
const SAMPLE_INTERVAL: Duration = Duration::from_millis(20);
/// Length of the throughput windows, in seconds.
const WINDOW_SECS: f64 = 1.0;
/// How often the page-cache residency of the index folder is measured, in seconds.
const PAGE_CACHE_EVERY_SECS: f64 = 1.0;
/// Name of the chart written in the output folder when `--chart` is not given.
const CHART_FILE: &str = "compare_mmap.svg";

/// The directory under test. Switch this to `jocky::JockyDirectory::open(path)`.
/// An open for indexing is kept in [`INDEXING_DIR`] too (see there).
fn open_candidate(path: &Path, indexing: bool) -> BoxResult<Box<dyn Directory>> {
    let mut builder = jocky::JockyDirectory::builder(path);
    if let Some(mode) = WRITE_MODE.get().copied().flatten() {
        builder = builder.write_mode(mode);
    }
    if let Some(kb) = WRITE_BUFFER_KB.get().copied().flatten() {
        builder = builder.write_buffer((64 << 10).min(kb << 10), kb << 10);
    }
    if let Some(mb) = WRITE_QUEUE_MB.get().copied().flatten() {
        builder = builder.write_queue(mb << 20);
    }
    if EXPORT_ANY_FILE.get().copied().unwrap_or(false) {
        builder = builder.export_copy(jocky::ExportCopy::AnyFile);
    }
    if NO_BUILD_IN_PLACE.get().copied().unwrap_or(false) {
        builder = builder.build_in_place(false);
    }
    if NO_EXPORT.get().copied().unwrap_or(false) {
        builder = builder.export_policy(jocky::ExportPolicy::WhenQuiet {
            min_segment_bytes: u64::MAX,
            quiet: jocky::policy::DEFAULT_QUIET,
        });
    }
    if let Some(mb) = EXPORT_MIN_MB.get().copied().flatten() {
        builder = builder.export_policy(jocky::ExportPolicy::OnCommit {
            min_segment_bytes: mb << 20,
        });
    }
    let dir = builder.open()?;
    if !indexing {
        return Ok(Box::new(dir));
    }
    // Kept until the background work is done, so that its counters (exports,
    // copies forward) are the indexing run's.
    *INDEXING_DIR.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir.clone());
    Ok(Box::new(dir))
}

/// With `--count-heap`: the bytes this process has allocated and not freed
/// (live heap), and their peak since the last [`heap::reset_peak`]. Unlike RSS
/// it does not move with how glibc's arenas keep freed memory, so it tells a
/// directory's own allocations from the allocator's retention.
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

    pub static ON: AtomicBool = AtomicBool::new(false);
    static LIVE: AtomicIsize = AtomicIsize::new(0);
    static PEAK: AtomicIsize = AtomicIsize::new(0);

    pub struct Counting;

    fn add(n: usize) {
        if ON.load(Ordering::Relaxed) {
            let live = LIVE.fetch_add(n as isize, Ordering::Relaxed) + n as isize;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
    }

    fn sub(n: usize) {
        if ON.load(Ordering::Relaxed) {
            LIVE.fetch_sub(n as isize, Ordering::Relaxed);
        }
    }

    // SAFETY: every call is passed to the system allocator unchanged; the
    // counters only observe sizes.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract for `alloc`, forwarded.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                add(layout.size());
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract for `alloc_zeroed`, forwarded.
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                add(layout.size());
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract for `dealloc`, forwarded.
            unsafe { System.dealloc(ptr, layout) };
            sub(layout.size());
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: the caller's contract for `realloc`, forwarded.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                add(new_size);
                sub(layout.size());
            }
            p
        }
    }

    /// Starts a new peak from the current live heap; returns it.
    pub fn reset_peak() -> isize {
        let live = LIVE.load(Ordering::Relaxed);
        PEAK.store(live, Ordering::Relaxed);
        live
    }

    /// The peak live heap since [`reset_peak`].
    pub fn peak() -> isize {
        PEAK.load(Ordering::Relaxed)
    }
}

#[global_allocator]
static ALLOC: heap::Counting = heap::Counting;

/// `--write-mode`, when given.
static WRITE_MODE: std::sync::OnceLock<Option<jocky::WriteMode>> = std::sync::OnceLock::new();

/// The jocky directory of the indexing run under way (see `open_candidate`).
static INDEXING_DIR: std::sync::Mutex<Option<jocky::JockyDirectory>> = std::sync::Mutex::new(None);

/// `--write-buffer-kb`, when given.
static WRITE_BUFFER_KB: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
/// `--write-queue-mb`, when given.
static WRITE_QUEUE_MB: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();

/// `--export-copy-any-file`.
static EXPORT_ANY_FILE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
static NO_BUILD_IN_PLACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// `--no-export`.
static NO_EXPORT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// `--export-min-mb`, when given.
static EXPORT_MIN_MB: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();

fn open_mmap(path: &Path) -> BoxResult<Box<dyn Directory>> {
    Ok(Box::new(MmapDirectory::open(path)?))
}

#[derive(Parser, Debug)]
#[command(
    about = "Index and search the same corpus with MmapDirectory, JockyDirectory and RamDirectory"
)]
struct Args {
    /// Number of documents: generated ones (default 160,000, about 250 MB of text), or
    /// the first N of --corpus (default all).
    #[arg(long)]
    docs: Option<usize>,
    /// A JSON-lines file (fields `title`, `body`) or a directory tree (one document per
    /// file) instead of the generated corpus.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Rounds; each indexes the corpus once per directory.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Where the indexes are written (default: a temporary folder).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the indexes after measuring them.
    #[arg(long)]
    keep: bool,
    /// Seed of the generated corpus.
    #[arg(long, default_value_t = corpus::DEFAULT_SEED)]
    seed: u64,
    /// A file with one query per line (default: the built-in queries for the generated
    /// corpus, or queries built from the most frequent terms of --corpus).
    #[arg(long)]
    queries: Option<PathBuf>,
    /// How many times each query is run for the latency figures.
    #[arg(long, default_value_t = 20)]
    query_repeats: usize,
    /// Indexing threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Indexing heap in MB (total over the threads).
    #[arg(long, default_value_t = 200)]
    heap_mb: usize,
    /// Commit after this many documents.
    #[arg(long, default_value_t = 10_000)]
    commit_every: usize,
    /// Where the SVG chart of throughput, RSS and page cache over time is written
    /// (default: compare_mmap.svg in the output folder, which is then kept even if it is
    /// the temporary one).
    #[arg(long)]
    chart: Option<PathBuf>,
    /// jocky exports committed segments of at least this many MiB (default: the
    /// library's default export policy).
    #[arg(long)]
    export_min_mb: Option<u64>,
    /// jocky exports nothing: segments stay in the container, dead space is
    /// still reclaimed (the default policy with no segment large enough).
    #[arg(long, conflicts_with = "export_min_mb")]
    no_export: bool,
    /// How jocky writes its container: buffered, direct or inline (default: the
    /// library's default).
    #[arg(long, value_parser = jocky_bench::harness::parse_write_mode)]
    write_mode: Option<jocky::WriteMode>,
    /// jocky's per-file write buffer at most, KiB (default: the library's).
    #[arg(long)]
    write_buffer_kb: Option<usize>,
    /// jocky's write queue, MiB (default: the library's).
    #[arg(long)]
    write_queue_mb: Option<usize>,
    /// jocky's export copies inside the kernel from any container file
    /// (`ExportCopy::AnyFile`: reflinks on XFS/btrfs), not only the active one.
    #[arg(long)]
    export_copy_any_file: bool,
    /// jocky does not build large segments in place (`Builder::build_in_place`,
    /// on by default): every byte goes to the container first, and the final
    /// segments are copied out by their export.
    #[arg(long)]
    no_build_in_place: bool,
    /// Leave out the RamDirectory side (the floor no directory can beat).
    #[arg(long)]
    no_ram: bool,
    /// Print each round's memory samples (seconds, page cache of the index MB,
    /// anonymous RSS MB, file-backed RSS MB), to see where the peak falls.
    #[arg(long)]
    memory_timeline: bool,
    /// Count the live heap (every allocation through a counting allocator) and
    /// report its peak per side.
    #[arg(long)]
    count_heap: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mmap,
    Candidate,
    /// tantivy's `RamDirectory`: everything in anonymous memory, the floor.
    Ram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mmap => "mmap",
            Kind::Candidate => "jocky",
            Kind::Ram => "ram",
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Kind::Mmap => RGBColor(31, 119, 180),
            Kind::Candidate => RGBColor(214, 39, 40),
            Kind::Ram => RGBColor(44, 160, 44),
        }
    }

    /// Opens the directory at `path`; for [`Kind::Ram`], a handle on `ram` (its clones
    /// share their contents), and `path` is not used.
    /// Opens the side's directory at `path`; `indexing`: for the indexing run
    /// (not a search phase's open).
    fn open(
        self,
        path: &Path,
        ram: &RamDirectory,
        indexing: bool,
    ) -> BoxResult<Box<dyn Directory>> {
        match self {
            Kind::Mmap => open_mmap(path),
            Kind::Candidate => open_candidate(path, indexing),
            Kind::Ram => Ok(Box::new(ram.clone())),
        }
    }
}

/// Everything measured for one directory in one round.
#[derive(Debug, Clone)]
struct Measurement {
    /// jocky: what its background work did (exports, copies forward).
    background: String,
    index_secs: f64,
    docs_per_sec: f64,
    input_mb_per_sec: f64,
    written_mb: f64,
    /// Bytes read from the storage layer over the same span as `written_mb`, MB.
    read_mb: f64,
    /// Of `read_mb`: what was read once indexing was done (jocky's background
    /// export and reclamation).
    read_after_index_mb: f64,
    net_written_mb: f64,
    write_amplification: f64,
    background_tail_secs: f64,
    peak_fds: f64,
    peak_maps: f64,
    peak_rss_mb: f64,
    index_mb: f64,
    disk_mb: f64,
    open_ms: f64,
    /// The first open of the index after indexing, its folder out of the page cache.
    cold_open_ms: f64,
    reader_fds: f64,
    reader_maps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Segments the searcher reads (a tantivy merge finishing just before or
    /// after the end of indexing changes it, and search latency with it).
    segments: f64,
    results: Vec<QueryResult>,
    /// Mean docs/s over the whole 1 s windows before the last document was indexed.
    window_mean: f64,
    /// Coefficient of variation (population stddev / mean) of those windows.
    window_cv: f64,
    /// The slowest of those windows, docs/s.
    window_min: f64,
    page_cache_peak_mb: f64,
    page_cache_end_mb: f64,
    /// Peak of anonymous RSS (above the level before indexing) plus page cache.
    memory_peak_mb: f64,
    /// Wall time the feeding thread spent inside `commit` (tantivy's indexing threads
    /// finishing the queued documents included), s, and the longest commit, ms.
    commit_secs: f64,
    slowest_commit_ms: f64,
    /// CPU seconds of this process while indexing (user + system).
    cpu_secs: f64,
    /// CPU seconds the whole machine was busy while indexing (this process plus the
    /// kernel's write-back, journal and block threads).
    machine_cpu_secs: f64,
    /// CPU seconds the machine's cores sat idle while indexing (waiting for the disk
    /// included): cores × wall time − busy.
    machine_idle_secs: f64,
    /// With `--count-heap`: the live heap's peak above its level before indexing, MB
    /// (NaN otherwise).
    peak_heap_mb: f64,
    timeline: Timeline,
}

/// Document counters of one indexing run.
#[derive(Debug, Default)]
struct Progress {
    /// Documents handed to the writer (`add_document` returned).
    handed: AtomicU64,
    /// Documents the indexing threads have finished with (see `harness::CountedDocument`).
    indexed: Arc<AtomicU64>,
}

/// One tick of the indexing sampler.
#[derive(Debug, Clone, Copy)]
struct Tick {
    /// Seconds since the start of indexing.
    at: f64,
    /// Documents handed to the writer so far.
    handed: u64,
    /// Documents indexed by the indexing threads so far.
    indexed: u64,
    fds: usize,
    mappings: usize,
    rss: u64,
    /// Anonymous resident bytes.
    anon: u64,
}

impl Tick {
    fn take(start: Instant, progress: &Progress) -> Tick {
        Tick {
            at: start.elapsed().as_secs_f64(),
            handed: progress.handed.load(Ordering::Relaxed),
            indexed: progress.indexed.load(Ordering::Relaxed),
            fds: procstats::open_fds(),
            mappings: procstats::mappings(),
            rss: procstats::rss_bytes(),
            anon: procstats::anon_rss_bytes(),
        }
    }
}

/// What the indexing sampler saw, in time order.
#[derive(Debug, Clone, Default)]
struct Timeline {
    /// The baseline (taken before the sampling thread starts), every tick, and a final
    /// tick taken after the writer is gone.
    ticks: Vec<Tick>,
    /// Page-cache residency about every second; the last entry is measured after the
    /// writer is gone.
    page_cache: Vec<PageCacheSample>,
    /// Seconds at which the sampler first saw every document indexed by the indexing
    /// threads (the final commit and the merges follow).
    all_indexed_at: f64,
    /// Documents indexed per second, for each whole 1 s window from 0 to the end of
    /// indexing.
    windows: Vec<f64>,
    /// Documents handed to the writer per second, same windows.
    handed_windows: Vec<f64>,
}

impl Timeline {
    fn baseline(&self) -> Tick {
        self.ticks[0]
    }

    /// A document counter at `t` seconds, interpolated linearly between ticks.
    fn count_at(&self, count: fn(&Tick) -> u64, t: f64) -> f64 {
        let ticks = &self.ticks;
        let i = ticks.partition_point(|tick| tick.at <= t);
        if i == 0 {
            return count(&ticks[0]) as f64;
        }
        if i == ticks.len() {
            return count(&ticks[i - 1]) as f64;
        }
        let (a, b) = (&ticks[i - 1], &ticks[i]);
        let (ca, cb) = (count(a) as f64, count(b) as f64);
        let span = b.at - a.at;
        if span <= 0.0 {
            return cb;
        }
        ca + (cb - ca) * (t - a.at) / span
    }

    /// Rate (docs/s) of a document counter over the whole `WINDOW_SECS` windows that end
    /// by `until`.
    fn windows_until(&self, count: fn(&Tick) -> u64, until: f64) -> Vec<f64> {
        let n = (until / WINDOW_SECS).floor().max(0.0) as usize;
        (0..n)
            .map(|k| {
                let t0 = k as f64 * WINDOW_SECS;
                (self.count_at(count, t0 + WINDOW_SECS) - self.count_at(count, t0)) / WINDOW_SECS
            })
            .collect()
    }

    /// Number of steady-state windows: those that end before the last document was
    /// indexed (the final commit and the merges after it are left out).
    fn steady_len(&self) -> usize {
        let n = (self.all_indexed_at / WINDOW_SECS).floor().max(0.0) as usize;
        n.min(self.windows.len())
    }

    fn steady_windows(&self) -> &[f64] {
        &self.windows[..self.steady_len()]
    }

    fn steady_handed_windows(&self) -> &[f64] {
        &self.handed_windows[..self.steady_len()]
    }
}

/// (seconds since the start of indexing, index folder bytes in the page cache,
/// the process's anonymous resident bytes and its file-backed resident bytes —
/// pages of its mappings, which the page cache holds too — at the same moment).
type PageCacheSample = (f64, u64, u64, u64);

/// A [`PageCacheSample`] of the index folder at `path`, now.
fn memory_sample(start: Instant, path: &Path) -> io::Result<PageCacheSample> {
    let page_cache = procstats::page_cache_bytes(path)?;
    let anon = procstats::anon_rss_bytes();
    let mapped = procstats::rss_bytes().saturating_sub(anon);
    Ok((start.elapsed().as_secs_f64(), page_cache, anon, mapped))
}

/// Samples fds, mappings, RSS and the document counters every [`SAMPLE_INTERVAL`], and
/// the page-cache residency of the index folder every [`PAGE_CACHE_EVERY_SECS`], on one
/// thread, and moves the progress bar.
struct IndexSampler {
    start: Instant,
    baseline: Tick,
    progress: Arc<Progress>,
    path: PathBuf,
    stop_tx: mpsc::Sender<()>,
    handle: thread::JoinHandle<io::Result<(Vec<Tick>, Vec<PageCacheSample>)>>,
}

impl IndexSampler {
    fn start(path: &Path, progress: Arc<Progress>, bar: ProgressBar) -> io::Result<IndexSampler> {
        let start = Instant::now();
        let baseline = Tick::take(start, &progress);
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread_progress = Arc::clone(&progress);
        let thread_path = path.to_path_buf();
        let handle = thread::Builder::new()
            .name("index-sampler".into())
            .spawn(move || {
                let mut ticks = Vec::new();
                let mut page_cache = Vec::new();
                let mut next_page_cache = 0.0;
                loop {
                    // fds and mappings are read first; the residency walk below opens one
                    // file and one mapping at a time and closes them before it returns, so
                    // no tick ever counts them.
                    let tick = Tick::take(start, &thread_progress);
                    bar.set_position(tick.indexed);
                    ticks.push(tick);
                    if tick.at >= next_page_cache {
                        page_cache.push(memory_sample(start, &thread_path)?);
                        while next_page_cache <= tick.at {
                            next_page_cache += PAGE_CACHE_EVERY_SECS;
                        }
                    }
                    match stop_rx.recv_timeout(SAMPLE_INTERVAL) {
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        // Stop requested, or the sampler was dropped.
                        _ => break,
                    }
                }
                Ok((ticks, page_cache))
            })?;
        Ok(IndexSampler {
            start,
            baseline,
            progress,
            path: path.to_path_buf(),
            stop_tx,
            handle,
        })
    }

    /// Stops the thread, takes a final tick and residency figure, and derives the windows.
    fn stop(self, total_docs: u64) -> BoxResult<Timeline> {
        // The receiver is only gone if the thread already ended; either way it ends now.
        let _ = self.stop_tx.send(());
        let (samples, mut page_cache) = self
            .handle
            .join()
            .map_err(|_| "the index sampler panicked")??;
        let mut ticks = vec![self.baseline];
        ticks.extend(samples);
        ticks.push(Tick::take(self.start, &self.progress));
        page_cache.push(memory_sample(self.start, &self.path)?);
        let end = ticks.last().map_or(0.0, |t| t.at);
        let all_indexed_at = ticks
            .iter()
            .find(|t| t.indexed >= total_docs)
            .map_or(end, |t| t.at);
        let mut timeline = Timeline {
            ticks,
            page_cache,
            all_indexed_at,
            windows: Vec::new(),
            handed_windows: Vec::new(),
        };
        timeline.windows = timeline.windows_until(|t| t.indexed, end);
        timeline.handed_windows = timeline.windows_until(|t| t.handed, end);
        Ok(timeline)
    }
}

/// (label, accessor) of a row of the summary table.
type Metric = (&'static str, fn(&Measurement) -> f64);

const METRICS: &[Metric] = &[
    ("index wall s", |m| m.index_secs),
    ("docs/s", |m| m.docs_per_sec),
    ("input MB/s", |m| m.input_mb_per_sec),
    ("written MB", |m| m.written_mb),
    ("read from disk MB", |m| m.read_mb),
    ("  of it after indexing (background) MB", |m| {
        m.read_after_index_mb
    }),
    ("read / written", |m| {
        if m.written_mb == 0.0 {
            0.0
        } else {
            m.read_mb / m.written_mb
        }
    }),
    ("written - cancelled MB", |m| m.net_written_mb),
    ("write amplification (net/input)", |m| m.write_amplification),
    ("background export after index s", |m| {
        m.background_tail_secs
    }),
    ("peak extra fds (index)", |m| m.peak_fds),
    ("peak extra maps (index)", |m| m.peak_maps),
    ("peak extra RSS MB (index)", |m| m.peak_rss_mb),
    ("peak live heap MB (index, --count-heap)", |m| {
        m.peak_heap_mb
    }),
    ("index size MB", |m| m.index_mb),
    ("index disk usage MB", |m| m.disk_mb),
    ("open index+reader ms", |m| m.open_ms),
    ("open index+reader, folder uncached, ms", |m| m.cold_open_ms),
    ("fds held by reader", |m| m.reader_fds),
    ("maps held by reader", |m| m.reader_maps),
    ("search p50 ms", |m| m.p50_ms),
    ("search p99 ms", |m| m.p99_ms),
    ("segments searched", |m| m.segments),
    ("docs/s, mean of 1 s windows", |m| m.window_mean),
    ("docs/s CV of 1 s windows", |m| m.window_cv),
    ("docs/s, slowest 1 s window", |m| m.window_min),
    ("peak page cache MB (index)", |m| m.page_cache_peak_mb),
    ("page cache MB at end of index", |m| m.page_cache_end_mb),
    ("peak anon RSS + page cache MB", |m| m.memory_peak_mb),
    ("time inside commit s", |m| m.commit_secs),
    ("slowest commit ms", |m| m.slowest_commit_ms),
    ("process CPU s (index)", |m| m.cpu_secs),
    ("machine busy CPU s (index)", |m| m.machine_cpu_secs),
    ("machine idle CPU s (index)", |m| m.machine_idle_secs),
];

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> BoxResult<()> {
    heap::ON.store(args.count_heap, Ordering::Relaxed);
    let _ = EXPORT_MIN_MB.set(args.export_min_mb);
    let _ = NO_EXPORT.set(args.no_export);
    let _ = WRITE_BUFFER_KB.set(args.write_buffer_kb);
    let _ = WRITE_QUEUE_MB.set(args.write_queue_mb);
    let _ = WRITE_MODE.set(args.write_mode);
    let _ = EXPORT_ANY_FILE.set(args.export_copy_any_file);
    let _ = NO_BUILD_IN_PLACE.set(args.no_build_in_place);
    if args.rounds == 0 || args.threads == 0 || args.query_repeats == 0 {
        return Err("--rounds, --threads and --query-repeats must be at least 1".into());
    }

    let t = Instant::now();
    let (docs, source) = load_docs(args)?;
    if docs.is_empty() {
        return Err("the corpus has no documents".into());
    }
    let text_bytes: usize = docs.iter().map(Doc::text_len).sum();
    let queries = load_queries(args, &docs)?;
    if queries.is_empty() {
        return Err("no queries".into());
    }
    println!(
        "corpus: {source}: {} docs, {:.1} MB of text (loaded in {:.1} s); {} queries x {} repeats",
        docs.len(),
        mb(text_bytes as u64),
        t.elapsed().as_secs_f64(),
        queries.len(),
        args.query_repeats
    );

    let mut tmp_guard = None;
    let out = match &args.out {
        Some(out) => {
            fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
            out.clone()
        }
        None => {
            let tmp = tempfile::Builder::new().prefix("compare_mmap").tempdir()?;
            let path = tmp.path().to_path_buf();
            tmp_guard = Some(tmp);
            path
        }
    };
    let chart_path = args.chart.clone().unwrap_or_else(|| out.join(CHART_FILE));
    if args.chart.is_none() {
        // The chart lives in the output folder: keep it even if it is the temporary one.
        if let Some(tmp) = tmp_guard.as_mut() {
            tmp.disable_cleanup(true);
        }
    }
    println!(
        "out: {}; {} indexing threads, {} MB heap, commit every {} docs, {} round(s)",
        out.display(),
        args.threads,
        args.heap_mb,
        args.commit_every,
        args.rounds
    );
    println!(
        "jocky: write mode {:?}, export {}{}{}, write buffer {}, write queue {}",
        args.write_mode.unwrap_or_default(),
        match (args.no_export, args.export_min_mb) {
            (true, _) => "never (dead space still reclaimed)".into(),
            (false, Some(mb)) => format!("after each commit, segments of at least {mb} MiB"),
            (false, None) => "default policy".into(),
        },
        if args.export_copy_any_file {
            ", copies in the kernel from any container file"
        } else {
            ""
        },
        if args.no_build_in_place {
            ", nothing built in place"
        } else {
            ""
        },
        args.write_buffer_kb
            .map_or("default".into(), |kb| format!("{kb} KiB")),
        args.write_queue_mb
            .map_or("default".into(), |mb| format!("{mb} MiB")),
    );

    // Untimed warm-up: the first indexing run of a process creates the allocator's
    // per-thread arenas (extra mappings, RSS) and warms code paths; without this, whichever
    // directory goes first in round 0 would be charged for it.
    warm_up(&out, &docs, args)?;

    let kinds: Vec<Kind> = if args.no_ram {
        vec![Kind::Mmap, Kind::Candidate]
    } else {
        vec![Kind::Mmap, Kind::Candidate, Kind::Ram]
    };
    // The measurements of each side, in the order of `kinds`.
    let mut runs: Vec<(Kind, Vec<Measurement>)> =
        kinds.iter().map(|&kind| (kind, Vec::new())).collect();
    for round in 0..args.rounds {
        // Round r runs the sides rotated left by r (two sides simply alternate).
        let mut order = kinds.clone();
        order.rotate_left(round % kinds.len());
        let mut indexed: Vec<(Kind, PathBuf, RamDirectory, Measurement)> = Vec::new();
        for kind in order {
            let path = out.join(format!("round{round}-{}", kind.name()));
            if path.exists() {
                fs::remove_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let label = format!("round {round} {:<5}", kind.name());
            let (m, ram) = index_side(kind, &path, &docs, text_bytes as u64, args, &label)
                .map_err(|e| format!("{} round {round}: {e}", kind.name()))?;
            println!(
                "round {round} {:<9}: index {:.2} s ({:.0} docs/s, {:.1} MB/s), written {:.0} MB, \
                 read {:.0} MB ({:.0} MB after indexing), index {:.0} MB, fds +{}, maps +{}, \
                 RSS +{:.0} MB{}, CPU {:.1} s (machine busy {:.1} s, idle {:.1} s)",
                kind.name(),
                m.index_secs,
                m.docs_per_sec,
                m.input_mb_per_sec,
                m.written_mb,
                m.read_mb,
                m.read_after_index_mb,
                m.index_mb,
                m.peak_fds,
                m.peak_maps,
                m.peak_rss_mb,
                if m.peak_heap_mb.is_nan() {
                    String::new()
                } else {
                    format!(" (live heap +{:.0} MB)", m.peak_heap_mb)
                },
                m.cpu_secs,
                m.machine_cpu_secs,
                m.machine_idle_secs,
            );
            let (_, handed_cv) = mean_cv(m.timeline.steady_handed_windows());
            println!(
                "round {round} {:<9}: {} 1 s windows until the last doc was indexed at {:.1} s: \
                 mean {:.0} docs/s, CV {:.3} (of docs handed to the writer: {:.3}), slowest \
                 {:.0} docs/s; page cache peak {:.0} MB, at end {:.0} MB; {:.2} s inside commit \
                 (slowest {:.0} ms)",
                kind.name(),
                m.timeline.steady_len(),
                m.timeline.all_indexed_at,
                m.window_mean,
                m.window_cv,
                handed_cv,
                m.window_min,
                m.page_cache_peak_mb,
                m.page_cache_end_mb,
                m.commit_secs,
                m.slowest_commit_ms
            );
            if !m.background.is_empty() {
                println!("round {round} {:<9}: {}", kind.name(), m.background);
            }
            if args.memory_timeline {
                let samples: Vec<String> = m
                    .timeline
                    .page_cache
                    .iter()
                    .map(|&(at, pc, anon, mapped)| {
                        format!("{at:.0}s {:.0}/{:.0}/{:.0}", mb(pc), mb(anon), mb(mapped))
                    })
                    .collect();
                println!(
                    "round {round} {:<9}: page cache / anon / file-backed RSS MB: {}",
                    kind.name(),
                    samples.join(" ")
                );
            }
            indexed.push((kind, path, ram, m));
        }
        search_round(&mut indexed, &queries, args)
            .map_err(|e| format!("round {round} search: {e}"))?;
        for (kind, path, _, m) in indexed {
            println!(
                "round {round} {:<9}: search: open {:.2} ms ({:.1} ms uncached), {} segments, reader holds {} fds and \
                 {} maps, p50 {:.3} ms, p99 {:.3} ms",
                kind.name(),
                m.open_ms,
                m.cold_open_ms,
                m.segments,
                m.reader_fds,
                m.reader_maps,
                m.p50_ms,
                m.p99_ms
            );
            if !args.keep {
                fs::remove_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if let Some((_, side)) = runs.iter_mut().find(|(k, _)| *k == kind) {
                side.push(m);
            }
        }
        // Every side is compared with mmap's results.
        let reference = &runs[0].1[round];
        let mut identical = true;
        for (kind, side) in &runs[1..] {
            let other = &side[round];
            if other.results == reference.results {
                continue;
            }
            identical = false;
            let differing: Vec<&str> = reference
                .results
                .iter()
                .zip(&other.results)
                .filter(|(x, y)| x != y)
                .map(|(x, _)| x.query.as_str())
                .collect();
            println!(
                "round {round}: WARNING search results differ for {differing:?} ({} vs mmap)",
                kind.name()
            );
        }
        if identical {
            println!("round {round}: search results identical");
        }
    }

    print_summary(&runs);
    write_chart(&chart_path, &runs).map_err(|e| format!("chart {}: {e}", chart_path.display()))?;
    println!();
    println!(
        "chart: {} (thin light lines: every round; thick lines: the median round by docs/s)",
        chart_path.display()
    );
    Ok(())
}

fn warm_up(out: &Path, docs: &[Doc], args: &Args) -> BoxResult<()> {
    let path = out.join("warm-up");
    if path.exists() {
        fs::remove_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    {
        let (schema, fields) = harness::schema();
        let index = Index::create(open_mmap(&path)?, schema, IndexSettings::default())?;
        let mut writer: IndexWriter =
            index.writer_with_num_threads(args.threads, args.heap_mb * 1_000_000)?;
        let n = docs.len().min(5_000);
        harness::index_docs(&mut writer, &fields, &docs[..n], n.div_ceil(2))?;
        writer.wait_merging_threads()?;
        harness::search_all(&index, &fields, &corpus::default_queries())?;
    }
    fs::remove_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

fn load_docs(args: &Args) -> BoxResult<(Vec<Doc>, String)> {
    match &args.corpus {
        Some(path) => {
            let mut docs = corpus::load_path(path)?;
            if let Some(n) = args.docs {
                docs.truncate(n);
            }
            Ok((docs, path.display().to_string()))
        }
        None => {
            let n = args.docs.unwrap_or(DEFAULT_DOCS);
            let docs = corpus::generate(args.seed, n).collect();
            Ok((docs, format!("generated (seed {})", args.seed)))
        }
    }
}

fn load_queries(args: &Args, docs: &[Doc]) -> BoxResult<Vec<String>> {
    if let Some(path) = &args.queries {
        let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect());
    }
    if args.corpus.is_none() {
        return Ok(corpus::default_queries());
    }
    let terms = corpus::ranked_terms(docs, 64 << 20);
    let refs: Vec<&str> = terms.iter().map(String::as_str).collect();
    Ok(corpus::queries_from_ranked_terms(&refs))
}

/// A progress bar of documents handed to the writer, on stderr; hidden when stderr is
/// not a terminal. It has no ticker thread (it would add a mapping to the figures): the
/// index sampler moves it.
fn progress_bar(total: usize, label: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{prefix} [{wide_bar}] {pos}/{len} docs {rate} {elapsed:>3} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:>6.0}/s", state.per_sec());
        },
    )
    .progress_chars("=> ");
    let bar = ProgressBar::new(total as u64).with_style(style);
    bar.set_prefix(label.to_string());
    bar.set_message("indexing");
    bar
}

/// Indexes `docs` into a fresh directory of `kind` at `path` and measures it;
/// the search figures are left for [`search_round`]. Returns the ram side's
/// directory too (the index lives in it until the round's search phase).
fn index_side(
    kind: Kind,
    path: &Path,
    docs: &[Doc],
    text_bytes: u64,
    args: &Args,
    label: &str,
) -> BoxResult<(Measurement, RamDirectory)> {
    // The ram side's one instance: indexed into, then searched through a fresh handle.
    let ram = RamDirectory::create();
    // Indexing.
    let bar = progress_bar(docs.len(), label);
    let progress = Arc::new(Progress::default());
    // The previous side's freed heap (the ram side's index above all) stays resident
    // in malloc's arenas unless returned; a side that reused it would show less RSS
    // growth than one that had to fault its memory in. Every side starts trimmed.
    procstats::trim_heap();
    let heap_before = heap::reset_peak();
    let sampler = IndexSampler::start(path, Arc::clone(&progress), bar.clone())?;
    let written_before = procstats::io_write_bytes();
    let read_before = procstats::io_read_bytes();
    let cancelled_before = procstats::io_cancelled_write_bytes();
    let cpu_before = procstats::process_cpu_secs();
    let machine_before = procstats::machine_cpu_busy_secs();
    let start = Instant::now();
    let indexing;
    {
        let (schema, fields) = harness::schema();
        let index = Index::create(
            kind.open(path, &ram, true)?,
            schema,
            IndexSettings::default(),
        )?;
        let mut writer: IndexWriter<CountedDocument> =
            index.writer_with_num_threads(args.threads, args.heap_mb * 1_000_000)?;
        indexing = harness::index_docs_as(
            &mut writer,
            docs,
            args.commit_every,
            |doc| {
                CountedDocument::new(
                    harness::to_tantivy(&fields, doc),
                    Arc::clone(&progress.indexed),
                )
            },
            Some(&progress.handed),
        )?;
        bar.set_message("merging");
        writer.wait_merging_threads()?;
    }
    let index_secs = start.elapsed().as_secs_f64();
    let peak_heap_mb = if args.count_heap {
        (heap::peak() - heap_before) as f64 / 1e6
    } else {
        f64::NAN
    };
    let cpu_secs = procstats::process_cpu_secs() - cpu_before;
    let machine_cpu_secs = procstats::machine_cpu_busy_secs() - machine_before;
    let read_while_indexing = procstats::io_read_bytes().saturating_sub(read_before);
    // jocky exports committed segments and reclaims space in the background: let it
    // finish so that bytes written and disk use include it.
    let tail = Instant::now();
    let mut background = String::new();
    if kind == Kind::Candidate {
        let dir = jocky::JockyDirectory::open(path)?;
        dir.wait_for_background_work();
        let st = dir.stats();
        background = format!(
            "built {} segments in place ({:.0} MB), exported {} segment files ({:.0} MB copied, \
             {:.0} MB of it in the kernel, {:.1} MB read to checksum), copied {:.0} MB forward, \
             {:.0} MB copied to serve reads across extents, {} files mapped as one range",
            st.segments_built_in_place,
            mb(st.bytes_built_in_place),
            st.segments_exported,
            mb(st.bytes_exported),
            mb(st.bytes_exported_in_kernel),
            mb(st.bytes_read_to_checksum),
            mb(st.bytes_copied_forward),
            mb(st.read_bytes_assembled),
            st.files_stitched
        );
        drop(dir);
        // The search below opens the folder afresh.
        INDEXING_DIR
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
    let background_tail_secs = tail.elapsed().as_secs_f64();
    let written = procstats::io_write_bytes().saturating_sub(written_before);
    let read = procstats::io_read_bytes().saturating_sub(read_before);
    let cancelled = procstats::io_cancelled_write_bytes().saturating_sub(cancelled_before);
    let timeline = sampler.stop(docs.len() as u64)?;
    bar.set_position(docs.len() as u64);
    let index_base = timeline.baseline();
    let peak_fds = timeline.ticks.iter().map(|t| t.fds).max().unwrap_or(0);
    let peak_maps = timeline.ticks.iter().map(|t| t.mappings).max().unwrap_or(0);
    let peak_rss = timeline.ticks.iter().map(|t| t.rss).max().unwrap_or(0);
    let page_cache_peak = timeline.page_cache.iter().map(|p| p.1).max().unwrap_or(0);
    let page_cache_end = timeline.page_cache.last().map_or(0, |p| p.1);
    // Memory the index costs at once, counted once: the process's anonymous
    // memory above its level before indexing plus the index's page cache
    // (a mapped page is in both RSS and the page cache; a copy only in RSS).
    let memory_peak = timeline
        .page_cache
        .iter()
        .map(|p| p.2.saturating_sub(index_base.anon) + p.1)
        .max()
        .unwrap_or(0);
    let steady = timeline.steady_windows();
    let (window_mean, window_cv) = mean_cv(steady);
    let window_min = steady.iter().copied().reduce(f64::min).unwrap_or(f64::NAN);
    let index_bytes = procstats::dir_size(path)?;
    let disk_bytes = procstats::dir_disk_usage(path)?;

    bar.finish_and_clear();
    // The folder waits for the round's search phase out of the page cache: a
    // side indexing after this one (under a memory cgroup above all) does not
    // pay for this side's cached index, and each side's search phase warms
    // exactly what its queries read.
    procstats::evict_page_cache(path)?;

    Ok((
        Measurement {
            index_secs,
            docs_per_sec: docs.len() as f64 / index_secs,
            input_mb_per_sec: mb(text_bytes) / index_secs,
            written_mb: mb(written),
            read_mb: mb(read),
            read_after_index_mb: mb(read.saturating_sub(read_while_indexing)),
            net_written_mb: mb(written.saturating_sub(cancelled)),
            write_amplification: written.saturating_sub(cancelled) as f64 / text_bytes as f64,
            background_tail_secs,
            background,
            peak_fds: peak_fds.saturating_sub(index_base.fds) as f64,
            peak_maps: peak_maps.saturating_sub(index_base.mappings) as f64,
            peak_rss_mb: mb(peak_rss.saturating_sub(index_base.rss)),
            index_mb: mb(index_bytes),
            disk_mb: mb(disk_bytes),
            // Filled in by the round's search phase.
            open_ms: 0.0,
            cold_open_ms: 0.0,
            reader_fds: 0.0,
            reader_maps: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            segments: 0.0,
            results: Vec::new(),
            window_mean,
            window_cv,
            window_min,
            page_cache_peak_mb: mb(page_cache_peak),
            memory_peak_mb: mb(memory_peak),
            page_cache_end_mb: mb(page_cache_end),
            commit_secs: indexing.commit_secs,
            slowest_commit_ms: indexing.slowest_commit_secs * 1000.0,
            cpu_secs,
            machine_cpu_secs,
            peak_heap_mb,
            machine_idle_secs: (procstats::cpus() as f64 * index_secs - machine_cpu_secs).max(0.0),
            timeline,
        },
        ram,
    ))
}

/// One side's index, open for the round's search phase.
struct Searching {
    searcher: tantivy::Searcher,
    parser: tantivy::query::QueryParser,
    fields: harness::Fields,
    latencies: Vec<Duration>,
    // Dropped after the searcher.
    _reader: tantivy::IndexReader,
}

impl Searching {
    /// Opens the side's index with a reader and a searcher; also returns how
    /// long that took, ms. `latencies`: room for that many timed queries.
    fn open(
        kind: Kind,
        path: &Path,
        ram: &RamDirectory,
        latencies: usize,
    ) -> BoxResult<(Searching, f64)> {
        let start = Instant::now();
        let index = Index::open(kind.open(path, ram, false)?)?;
        let reader = harness::manual_reader(&index)?;
        let searcher = reader.searcher();
        let took = ms(start.elapsed());
        let fields = harness::fields_of(&index.schema())?;
        let parser = harness::query_parser(&index, &fields);
        Ok((
            Searching {
                searcher,
                parser,
                fields,
                latencies: Vec::with_capacity(latencies),
                _reader: reader,
            },
            took,
        ))
    }
}

/// The round's search phase. Each side in turn: its index opened with the
/// folder out of the page cache (the uncached open), the query set run once
/// untimed (warming what the queries read; its results are compared between
/// the sides), everything dropped, and the index opened again, warm (open
/// time, descriptors and mappings the reader holds, segments). Then
/// `query_repeats` timed passes over the query set, the sides interleaved
/// pass by pass with the order rotating, so that whatever the machine does
/// meanwhile falls on every side alike. Fills the search figures of `sides`'
/// measurements.
fn search_round(
    sides: &mut [(Kind, PathBuf, RamDirectory, Measurement)],
    queries: &[String],
    args: &Args,
) -> BoxResult<()> {
    let mut open = Vec::with_capacity(sides.len());
    for (kind, path, ram, m) in sides.iter_mut() {
        // First open, with the folder out of the page cache; the untimed pass
        // warms what the queries read, and its results are compared.
        let (first, cold_ms) = Searching::open(*kind, path, ram, 0)?;
        m.cold_open_ms = cold_ms;
        m.results = queries
            .iter()
            .map(|q| harness::run_query(&first.searcher, &first.parser, &first.fields, q))
            .collect::<tantivy::Result<Vec<_>>>()?;
        drop(first);
        // Then the open the timed passes use: warm.
        let (fds, maps) = (procstats::open_fds(), procstats::mappings());
        let (side, warm_ms) =
            Searching::open(*kind, path, ram, queries.len() * args.query_repeats)?;
        m.open_ms = warm_ms;
        m.reader_fds = procstats::open_fds().saturating_sub(fds) as f64;
        m.reader_maps = procstats::mappings().saturating_sub(maps) as f64;
        m.segments = side.searcher.segment_readers().len() as f64;
        open.push(side);
    }
    let n = open.len();
    for pass in 0..args.query_repeats {
        for i in 0..n {
            let s = &mut open[(i + pass) % n];
            for q in queries {
                let t = Instant::now();
                black_box(harness::run_query(&s.searcher, &s.parser, &s.fields, q)?);
                s.latencies.push(t.elapsed());
            }
        }
    }
    for (s, (_, _, _, m)) in open.iter_mut().zip(sides.iter_mut()) {
        s.latencies.sort();
        m.p50_ms = ms(percentile(&s.latencies, 0.50));
        m.p99_ms = ms(percentile(&s.latencies, 0.99));
    }
    Ok(())
}

/// (mean, population stddev / mean); NaN for no values.
fn mean_cv(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt() / mean)
}

/// Nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// (median, min, max); `values` must not be empty.
fn stats(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

fn num(v: f64) -> String {
    if v.is_infinite() {
        "inf".to_string()
    } else if v.is_nan() {
        "n/a".to_string()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn cell(values: Vec<f64>) -> String {
    let single = values.len() == 1;
    let (median, min, max) = stats(values);
    if single {
        num(median)
    } else {
        format!("{} [{}–{}]", num(median), num(min), num(max))
    }
}

/// `y / x`, with 0/0 = 1 and y/0 = inf.
fn ratio(x: f64, y: f64) -> f64 {
    if x == 0.0 && y == 0.0 {
        1.0
    } else if x == 0.0 {
        f64::INFINITY
    } else {
        y / x
    }
}

/// One column per side (in the order of `runs`), then jocky over each other side.
fn print_summary(runs: &[(Kind, Vec<Measurement>)]) {
    let rounds = runs.first().map_or(0, |r| r.1.len());
    let candidate: &[Measurement] = runs
        .iter()
        .find(|(k, _)| *k == Kind::Candidate)
        .map_or(&[], |r| &r.1);
    // The sides jocky is divided by, in the order of `runs`.
    let bases: Vec<&(Kind, Vec<Measurement>)> =
        runs.iter().filter(|(k, _)| *k != Kind::Candidate).collect();
    let ratio_names: Vec<String> = bases
        .iter()
        .map(|(k, _)| format!("{}/{}", Kind::Candidate.name(), k.name()))
        .collect();
    println!();
    println!(
        "summary over {rounds} round(s): median [min–max]; {} = {} per round",
        if ratio_names.len() == 1 {
            "ratio"
        } else {
            "ratios"
        },
        ratio_names.join(" and ")
    );
    let mut header: Vec<String> = vec!["metric".to_string()];
    header.extend(runs.iter().map(|(k, _)| k.name().to_string()));
    header.extend(ratio_names.iter().cloned());
    let rows: Vec<Vec<String>> = METRICS
        .iter()
        // Rows of a measurement this run did not take (all NaN) are left out.
        .filter(|(_, get)| {
            runs.iter()
                .any(|(_, side)| side.iter().any(|m| !get(m).is_nan()))
        })
        .map(|(label, get)| {
            let mut row = vec![label.to_string()];
            row.extend(
                runs.iter()
                    .map(|(_, side)| cell(side.iter().map(get).collect())),
            );
            let b: Vec<f64> = candidate.iter().map(get).collect();
            for (_, base) in &bases {
                let ratios: Vec<f64> = base
                    .iter()
                    .map(get)
                    .zip(&b)
                    .map(|(x, y)| ratio(x, *y))
                    .collect();
                row.push(cell(ratios));
            }
            row
        })
        .collect();
    // Every column but the last is padded to its widest cell: the first to the left,
    // the others to the right.
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(header[i].chars().count())
        })
        .collect();
    let line = |cells: &[String]| {
        let last = cells.len() - 1;
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let w = widths[i];
                if i == last {
                    c.clone()
                } else if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        parts.join("  ")
    };
    println!("{}", line(&header));
    for row in &rows {
        println!("{}", line(row));
    }
}

/// Index of the round whose overall docs/s is the median (the lower one of the middle two
/// for an even number of rounds).
fn median_round(runs: &[Measurement]) -> usize {
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| runs[a].docs_per_sec.total_cmp(&runs[b].docs_per_sec));
    order[(runs.len() - 1) / 2]
}

/// One line of a panel: (directory, round, is the median round, points).
type Line = (Kind, usize, bool, Vec<(f64, f64)>);

/// Extra RSS over the baseline in MB, thinned to the maximum of each 100 ms bucket.
fn rss_points(timeline: &Timeline) -> Vec<(f64, f64)> {
    let base = timeline.baseline().rss;
    let mut points: Vec<(f64, f64)> = Vec::new();
    for tick in &timeline.ticks {
        let value = mb(tick.rss.saturating_sub(base));
        let bucket = (tick.at * 10.0).floor() / 10.0;
        match points.last_mut() {
            Some(last) if last.0 == bucket => last.1 = last.1.max(value),
            _ => points.push((bucket, value)),
        }
    }
    points
}

fn lines(runs: &[(Kind, Vec<Measurement>)], points: fn(&Timeline) -> Vec<(f64, f64)>) -> Vec<Line> {
    let mut out = Vec::new();
    for (kind, side) in runs {
        let kind = *kind;
        let median = median_round(side);
        for (round, m) in side.iter().enumerate() {
            out.push((kind, round, round == median, points(&m.timeline)));
        }
    }
    // Median rounds last, so that they are drawn on top.
    out.sort_by_key(|line| line.2);
    out
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    x_max: f64,
    lines: &[Line],
    legend: SeriesLabelPosition,
    headroom: f64,
) -> BoxResult<()>
where
    DB::ErrorType: 'static,
{
    let y_max = lines
        .iter()
        .flat_map(|l| l.3.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1.0)
        * headroom;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the start of indexing")
        .y_desc(y_desc)
        .x_label_formatter(&|x| {
            if x_max >= 10.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.1}")
            }
        })
        .y_label_formatter(&|y| format!("{y:.0}"))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (kind, round, median, points) in lines {
        let color = kind.color();
        let style = if *median {
            color.stroke_width(2)
        } else {
            color.mix(0.3).stroke_width(1)
        };
        let series = chart.draw_series(LineSeries::new(points.iter().copied(), style))?;
        if *median {
            series
                .label(format!("{} (round {round})", kind.name()))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}

/// Three stacked panels over time: throughput of each 1 s window, extra RSS, page cache
/// of the index folder; one colour per directory, a thick line for its median round and
/// thin light lines for the other rounds.
fn write_chart(path: &Path, runs: &[(Kind, Vec<Measurement>)]) -> BoxResult<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let x_max = runs
        .iter()
        .flat_map(|(_, side)| side)
        .filter_map(|m| m.timeline.ticks.last().map(|t| t.at))
        .fold(1.0f64, f64::max);
    // Drawn as steps: each window's rate over its whole second.
    let throughput = lines(runs, |t| {
        t.windows
            .iter()
            .enumerate()
            .flat_map(|(k, v)| {
                let t0 = k as f64 * WINDOW_SECS;
                [(t0, *v), (t0 + WINDOW_SECS, *v)]
            })
            .collect()
    });
    let rss = lines(runs, rss_points);
    let page_cache = lines(runs, |t| {
        t.page_cache
            .iter()
            .map(|&(at, b, _, _)| (at, mb(b)))
            .collect()
    });

    let root = SVGBackend::new(path, (1100, 1000)).into_drawing_area();
    root.fill(&WHITE)?;
    // The longer title of three sides gets a smaller font, so that it fits the width.
    let (sides, title_size) = if runs.iter().any(|(k, _)| *k == Kind::Ram) {
        (
            "MmapDirectory vs JockyDirectory vs RamDirectory (floor)",
            18,
        )
    } else {
        ("MmapDirectory vs JockyDirectory", 20)
    };
    let root = root.titled(
        &format!(
            "compare_mmap: {sides}, {} round(s); thick = median round by docs/s, light = \
             other rounds",
            runs.first().map_or(0, |r| r.1.len())
        ),
        ("sans-serif", title_size),
    )?;
    let panels = root.split_evenly((3, 1));
    draw_panel(
        &panels[0],
        "indexing throughput (documents indexed per 1 s window)",
        "docs/s",
        x_max,
        &throughput,
        SeriesLabelPosition::UpperRight,
        1.3,
    )?;
    draw_panel(
        &panels[1],
        "RSS above the pre-indexing baseline (max per 100 ms)",
        "MB",
        x_max,
        &rss,
        SeriesLabelPosition::UpperLeft,
        1.08,
    )?;
    draw_panel(
        &panels[2],
        "index folder resident in the page cache (mincore, every 1 s)",
        "MB",
        x_max,
        &page_cache,
        SeriesLabelPosition::UpperLeft,
        1.08,
    )?;
    root.present()?;
    Ok(())
}
