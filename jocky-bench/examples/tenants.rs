//! Many small tenants: jocky's `Store` (one container for all) against one
//! `MmapDirectory` per tenant, in the same run, and jocky with one
//! `JockyDirectory` (one folder) per tenant.
//!
//! Each tenant gets 3 commits of 5 documents and its reader is kept open, as a
//! search server keeps them. Reported per side: wall time, file descriptors and
//! kernel mappings (held at the end and peak), threads held at the end, the
//! process's CPU time per second over 2 s with every reader open and nothing
//! to do (3 s after the last commit: what idle tenants cost), files and bytes
//! on disk, RSS.
//!
//! jocky runs twice: with the strict default `SyncPolicy::OnRequest` (every
//! `sync_directory` and atomic write is an fdatasync) and with
//! `SyncPolicy::OnCommit` (one fdatasync per commit). A last side runs each
//! tenant on tantivy's `RamDirectory`: no disk at all, so its time is what
//! tantivy itself costs per tenant, and mmap/ram the most any directory could
//! gain over `MmapDirectory` on this workload.
//!
//! `cargo run --release -p jocky-bench --example tenants -- --tenants 1000,10000`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use jocky_bench::corpus::{self, Doc};
use jocky_bench::procstats::{self, Sampler};
use jocky_bench::tenant::index_small_tenant;
use tantivy::directory::MmapDirectory;
use tantivy::{Directory, Index, IndexReader, ReloadPolicy};

#[derive(Parser, Debug)]
#[command(about = "Many small tenants: jocky Store vs one MmapDirectory per tenant")]
struct Args {
    /// Tenant counts to run, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    tenants: Vec<usize>,
    /// Documents per commit.
    #[arg(long, default_value_t = 5)]
    docs_per_commit: usize,
    /// Commits per tenant.
    #[arg(long, default_value_t = 3)]
    commits: usize,
    /// Folder for the indexes (default: a temporary folder, removed at the end).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip MmapDirectory above this many tenants (it runs out of mappings near 3,600).
    #[arg(long)]
    mmap_max: Option<usize>,
    /// Which sides to run, comma separated (mmap, jocky, jocky-oncommit,
    /// jocky-dirs: one JockyDirectory per tenant, ram: tantivy's RamDirectory,
    /// the floor for any directory).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mmap,jocky,jocky-oncommit,jocky-dirs,ram"
    )]
    sides: Vec<String>,
}

#[derive(Debug, Default)]
struct Outcome {
    tenants_done: usize,
    error: Option<String>,
    secs: f64,
    fds_held: usize,
    fds_peak: usize,
    maps_held: usize,
    maps_peak: usize,
    threads_held: usize,
    idle_cpu_ms_per_s: f64,
    files: u64,
    bytes: u64,
    rss_mb: f64,
}

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Indexes one tenant and returns its open reader.
fn tenant(dir: Box<dyn Directory>, docs: &[Doc], args: &Args) -> BoxResult<(Index, IndexReader)> {
    let index = index_small_tenant(dir, docs, args.docs_per_commit, args.commits)?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?;
    Ok((index, reader))
}

fn files_and_bytes(path: &Path) -> (u64, u64) {
    fn walk(p: &Path, acc: &mut (u64, u64)) {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                walk(&e.path(), acc);
            } else {
                acc.0 += 1;
            }
        }
    }
    let mut acc = (0, 0);
    walk(path, &mut acc);
    acc.1 = procstats::dir_disk_usage(path).unwrap_or(0);
    acc
}

/// What one side of the comparison runs on.
#[derive(Clone, Copy)]
enum Kind {
    /// One `MmapDirectory` per tenant.
    Mmap,
    /// jocky's `Store` with this sync policy.
    Jocky(jocky::SyncPolicy),
    /// One `JockyDirectory` (one folder) per tenant, default policies.
    JockyDirs,
    /// One tantivy `RamDirectory` per tenant: no disk at all, the floor that
    /// tantivy's own per-tenant work sets for any directory.
    Ram,
}

fn run_side(kind: Kind, n: usize, root: &Path, docs: &[Doc], args: &Args) -> Outcome {
    let per = args.docs_per_commit * args.commits;
    let sampler = Sampler::start(Duration::from_millis(20)).expect("sampler");
    let base = sampler.baseline();
    let rss_before = procstats::rss_bytes();
    let threads_before = procstats::threads();
    let start = Instant::now();
    let mut kept = Vec::with_capacity(n);
    let mut out = Outcome::default();
    let store = if let Kind::Jocky(policy) = kind {
        match jocky::Store::builder(root).sync_policy(policy).open_store() {
            Ok(s) => Some(s),
            Err(e) => {
                out.error = Some(e.to_string());
                return out;
            }
        }
    } else {
        None
    };
    for t in 0..n {
        let slice = &docs[(t * per) % (docs.len() - per)..][..per];
        let dir: BoxResult<Box<dyn Directory>> = match &store {
            Some(store) => store
                .directory(&format!("tenant-{t}"))
                .map(|d| Box::new(d) as Box<dyn Directory>)
                .map_err(Into::into),
            None if matches!(kind, Kind::Ram) => {
                Ok(Box::new(tantivy::directory::RamDirectory::create()) as Box<dyn Directory>)
            }
            None if matches!(kind, Kind::JockyDirs) => {
                jocky::JockyDirectory::open(root.join(format!("tenant-{t}")))
                    .map(|d| Box::new(d) as Box<dyn Directory>)
                    .map_err(Into::into)
            }
            None => {
                let p = root.join(format!("tenant-{t}"));
                std::fs::create_dir_all(&p)
                    .map_err(Into::into)
                    .and_then(|_| MmapDirectory::open(&p).map_err(Into::into))
                    .map(|d| Box::new(d) as Box<dyn Directory>)
            }
        };
        match dir.and_then(|d| tenant(d, slice, args)) {
            Ok(pair) => kept.push(pair),
            Err(e) => {
                out.error = Some(format!("tenant {t}: {e}"));
                break;
            }
        }
        out.tenants_done = t + 1;
    }
    out.secs = start.elapsed().as_secs_f64();
    // Let a last sample see the steady state.
    std::thread::sleep(Duration::from_millis(50));
    out.fds_held = procstats::open_fds().saturating_sub(base.fds);
    out.maps_held = procstats::mappings().saturating_sub(base.mappings);
    out.rss_mb = procstats::rss_bytes().saturating_sub(rss_before) as f64 / 1e6;
    let report = sampler.stop();
    out.fds_peak = report.extra_fds();
    out.maps_peak = report.extra_mappings();
    // Idle: every reader open, nothing to do (after jocky's default quiet
    // period, 2 s, and the export pass it brings, so that it is not counted).
    std::thread::sleep(Duration::from_secs(3));
    out.threads_held = procstats::threads().saturating_sub(threads_before);
    let (cpu0, t0) = (procstats::process_cpu_secs(), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    out.idle_cpu_ms_per_s =
        (procstats::process_cpu_secs() - cpu0) * 1e3 / t0.elapsed().as_secs_f64();
    // Readers must still answer.
    if let Some((_, reader)) = kept.last() {
        assert_eq!(reader.searcher().num_docs() as usize, per);
    }
    drop(kept);
    drop(store);
    let (files, bytes) = files_and_bytes(root);
    out.files = files;
    out.bytes = bytes;
    out
}

fn main() -> BoxResult<()> {
    let args = Args::parse();
    let max = args.tenants.iter().copied().max().unwrap_or(0);
    let per = args.docs_per_commit * args.commits;
    if per == 0 || max == 0 {
        return Err("tenants, commits and docs per commit must be at least 1".into());
    }
    let docs: Vec<Doc> =
        corpus::generate(corpus::DEFAULT_SEED, (max * per).clamp(per * 2, 200_000)).collect();
    let tmp = tempfile::Builder::new().prefix("tenants").tempdir()?;
    let out_root = args.out.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    println!(
        "{} commits of {} generated docs per tenant, readers kept open; folder {}",
        args.commits,
        args.docs_per_commit,
        out_root.display()
    );
    println!(
        "{:>8} {:<14} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9} {:>8} {:>12} {:>10} {:>9} {:>12}",
        "tenants",
        "side",
        "done",
        "wall s",
        "fds held",
        "fds peak",
        "maps held",
        "maps peak",
        "threads",
        "idle CPU ms/s",
        "files",
        "disk MB",
        "RSS/tenant KB"
    );
    for &n in &args.tenants {
        // Seconds per tenant done (a side may fail part-way).
        let mut walls = [0.0f64; 5];
        let sides = [
            ("mmap", Kind::Mmap),
            ("jocky", Kind::Jocky(jocky::SyncPolicy::OnRequest)),
            ("jocky-oncommit", Kind::Jocky(jocky::SyncPolicy::OnCommit)),
            ("ram", Kind::Ram),
            ("jocky-dirs", Kind::JockyDirs),
        ];
        for (i, (name, kind)) in sides.into_iter().enumerate() {
            if !args.sides.iter().any(|s| s == name) {
                continue;
            }
            if matches!(kind, Kind::Mmap) && args.mmap_max.is_some_and(|m| n > m) {
                println!("{n:>8} {name:<14} skipped (--mmap-max)");
                continue;
            }
            let root = out_root.join(format!("{name}-{n}"));
            std::fs::create_dir_all(&root)?;
            let o = run_side(kind, n, &root, &docs, &args);
            walls[i] = o.secs / o.tenants_done.max(1) as f64;
            println!(
                "{:>8} {:<14} {:>9} {:>9.2} {:>9} {:>10} {:>10} {:>9} {:>8} {:>12.1} {:>10} {:>9.1} {:>12.1}",
                n,
                name,
                o.tenants_done,
                o.secs,
                o.fds_held,
                o.fds_peak,
                o.maps_held,
                o.maps_peak,
                o.threads_held,
                o.idle_cpu_ms_per_s,
                o.files,
                o.bytes as f64 / 1e6,
                o.rss_mb * 1e3 / o.tenants_done.max(1) as f64
            );
            if let Some(e) = o.error {
                println!("{n:>8} {name:<14} FAILED: {e}");
            }
            std::fs::remove_dir_all(&root)?;
        }
        if walls[..3].iter().all(|w| *w > 0.0) {
            println!(
                "{n:>8} time per tenant, mmap/jocky: jocky {:.1}x, jocky-oncommit {:.1}x",
                walls[0] / walls[1],
                walls[0] / walls[2]
            );
        }
        if walls[0] > 0.0 && walls[4] > 0.0 {
            println!(
                "{n:>8} time per tenant, mmap/jocky-dirs: {:.1}x",
                walls[0] / walls[4]
            );
        }
        if walls[0] > 0.0 && walls[3] > 0.0 {
            println!(
                "{n:>8} the most any directory could gain over mmap here (mmap/ram): {:.1}x",
                walls[0] / walls[3]
            );
        }
    }
    Ok(())
}
