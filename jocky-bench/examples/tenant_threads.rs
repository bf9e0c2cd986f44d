//! Commits near the floor, from many threads at once: `--tenants` small
//! tenants (3 commits of 5 documents each) written by 1, 4, 16 and 64 threads,
//! each thread committing to its own tenants. Sides, in the same run and in an
//! order that rotates every round: jocky's `Store` with the strict default
//! `SyncPolicy::OnRequest` and with `OnCommit`, one `MmapDirectory` per
//! tenant, and one tantivy `RamDirectory` per tenant (no disk at all: the
//! floor no directory can beat).
//!
//! Reported per thread count and side: commits/s (median over rounds, min–max),
//! time against the RamDirectory floor, and fsyncs per commit — jocky's own
//! counter; for MmapDirectory the calls that fsync in it, counted at the
//! `Directory` interface (every written file is `fdatasync`ed when tantivy
//! terminates it, every `atomic_write` syncs its temporary file, every
//! `sync_directory` syncs the folder).
//!
//! ```text
//! cargo run --release -p jocky-bench --example tenant_threads
//! cargo run --release -p jocky-bench --example tenant_threads -- --tenants 1000 --threads 1,4,16,64 --rounds 3
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use jocky_bench::corpus::{self, Doc};
use jocky_bench::procstats;
use jocky_bench::tenant::index_small_tenant;
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    DirectoryLock, FileHandle, Lock, MmapDirectory, RamDirectory, WatchCallback, WatchHandle,
    WritePtr,
};
use tantivy::Directory;

type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Parser, Debug)]
#[command(
    about = "Small tenants committed from 1..64 threads: jocky Store vs MmapDirectory vs RamDirectory"
)]
struct Args {
    /// Tenants per run.
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    /// Thread counts, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    threads: Vec<usize>,
    /// Rounds per thread count.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Documents per commit.
    #[arg(long, default_value_t = 5)]
    docs_per_commit: usize,
    /// Commits per tenant.
    #[arg(long, default_value_t = 3)]
    commits: usize,
    /// Folder for the indexes (default: a temporary folder).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The jocky sides' write mode (buffered, direct or inline; default buffered).
    #[arg(long, value_parser = jocky_bench::harness::parse_write_mode)]
    write_mode: Option<jocky::WriteMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Jocky,
    JockyOnCommit,
    Mmap,
    Ram,
}

const SIDES: [Side; 4] = [Side::Jocky, Side::JockyOnCommit, Side::Mmap, Side::Ram];

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Jocky => "jocky",
            Side::JockyOnCommit => "jocky-oncommit",
            Side::Mmap => "mmap",
            Side::Ram => "ram",
        }
    }
}

/// A directory that counts the calls that fsync in `MmapDirectory`.
#[derive(Clone, Debug)]
struct Counting {
    inner: Box<dyn Directory>,
    syncs: Arc<AtomicU64>,
}

impl Directory for Counting {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        self.inner.get_file_handle(path)
    }
    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.inner.delete(path)
    }
    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }
    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        // Terminated (and so fdatasync'ed) once written, as tantivy does.
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.open_write(path)
    }
    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.inner.atomic_read(path)
    }
    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.atomic_write(path, data)
    }
    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.inner.acquire_lock(lock)
    }
    fn watch(&self, cb: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(cb)
    }
    fn sync_directory(&self) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync_directory()
    }
}

struct Outcome {
    commits_per_sec: f64,
    fsyncs_per_commit: f64,
    /// Machine-wide busy CPU per commit (this process and the kernel threads
    /// that work for it), ms.
    cpu_ms_per_commit: f64,
}

fn run_side(
    side: Side,
    threads: usize,
    root: &Path,
    docs: &Arc<Vec<Doc>>,
    args: &Arc<Args>,
) -> BoxResult<Outcome> {
    std::fs::create_dir_all(root)?;
    let builder = || jocky::Store::builder(root).write_mode(args.write_mode.unwrap_or_default());
    let store = match side {
        Side::Jocky => Some(builder().open_store()?),
        Side::JockyOnCommit => Some(
            builder()
                .sync_policy(jocky::SyncPolicy::OnCommit)
                .open_store()?,
        ),
        _ => None,
    };
    let syncs = Arc::new(AtomicU64::new(0));
    let per = args.docs_per_commit * args.commits;
    let start = Instant::now();
    let cpu_before = procstats::machine_cpu_busy_secs();
    let mut handles = Vec::new();
    for th in 0..threads {
        let (store, syncs, docs, args) = (store.clone(), syncs.clone(), docs.clone(), args.clone());
        let root = root.to_path_buf();
        handles.push(std::thread::spawn(move || -> BoxResult<()> {
            for t in (th..args.tenants).step_by(threads) {
                let dir: Box<dyn Directory> = match (&store, side) {
                    (Some(s), _) => Box::new(s.directory(&format!("tenant-{t}"))?),
                    (None, Side::Ram) => Box::new(RamDirectory::create()),
                    _ => {
                        let p = root.join(format!("tenant-{t}"));
                        std::fs::create_dir_all(&p)?;
                        Box::new(Counting {
                            inner: Box::new(MmapDirectory::open(&p)?),
                            syncs: syncs.clone(),
                        })
                    }
                };
                let from = (t * per) % (docs.len() - per);
                index_small_tenant(
                    dir,
                    &docs[from..from + per],
                    args.docs_per_commit,
                    args.commits,
                )?;
            }
            Ok(())
        }));
    }
    for h in handles {
        h.join().map_err(|_| "a writer thread panicked")??;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = procstats::machine_cpu_busy_secs() - cpu_before;
    let commits = (args.tenants * args.commits) as f64;
    let fsyncs = match &store {
        Some(s) => s.stats().fsyncs as f64,
        None => syncs.load(Ordering::Relaxed) as f64,
    };
    drop(store);
    std::fs::remove_dir_all(root)?;
    Ok(Outcome {
        commits_per_sec: commits / secs,
        fsyncs_per_commit: fsyncs / commits,
        cpu_ms_per_commit: cpu * 1e3 / commits,
    })
}

fn mmm(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() -> BoxResult<()> {
    let args = Arc::new(Args::parse());
    let per = args.docs_per_commit * args.commits;
    if per == 0 || args.tenants == 0 || args.rounds == 0 {
        return Err("tenants, rounds, commits and docs per commit must be at least 1".into());
    }
    let docs: Arc<Vec<Doc>> = Arc::new(
        corpus::generate(
            corpus::DEFAULT_SEED,
            (args.tenants * per).clamp(per * 2, 200_000),
        )
        .collect(),
    );
    let tmp = tempfile::Builder::new()
        .prefix("tenant-threads")
        .tempdir()?;
    let base = args.out.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    println!(
        "tenant_threads: {} tenants x {} commits of {} generated docs; {} rounds, side order rotating",
        args.tenants, args.commits, args.docs_per_commit, args.rounds
    );
    println!(
        "{:>7} {:<15} {:>28} {:>12} {:>14} {:>15}",
        "threads",
        "side",
        "commits/s med [min–max]",
        "time/floor",
        "fsyncs/commit",
        "CPU ms/commit"
    );
    for &threads in &args.threads {
        let mut results: Vec<(Side, Outcome)> = Vec::new();
        for round in 0..args.rounds {
            for k in 0..SIDES.len() {
                let side = SIDES[(k + round) % SIDES.len()];
                let root = base.join(format!("t{threads}-r{round}-{}", side.name()));
                results.push((side, run_side(side, threads, &root, &docs, &args)?));
            }
        }
        let stats = |side: Side| {
            let of = |f: fn(&Outcome) -> f64| {
                mmm(results
                    .iter()
                    .filter(|(s, _)| *s == side)
                    .map(|(_, o)| f(o))
                    .collect())
            };
            (
                of(|o| o.commits_per_sec),
                of(|o| o.fsyncs_per_commit),
                of(|o| o.cpu_ms_per_commit),
            )
        };
        let floor = stats(Side::Ram).0 .0;
        for side in SIDES {
            let (c, f, cpu) = stats(side);
            println!(
                "{threads:>7} {:<15} {:>28} {:>11.2}x {:>14.2} {:>15.2}",
                side.name(),
                format!("{:.0} [{:.0}–{:.0}]", c.0, c.1, c.2),
                floor / c.0,
                f.0,
                cpu.0
            );
        }
    }
    Ok(())
}
