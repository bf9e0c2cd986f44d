//! What opening a big store costs: time, memory and bytes read, from its
//! snapshot (the default) and by a replay of every record (how jocky opened
//! before snapshots; in a log with gaps — container files reclaimed out of
//! order — every record after the newest gap), against opening the same tenants' indexes kept one per
//! `MmapDirectory`, in the same run.
//!
//! The store gets `--tenants` small tenants (3 commits of 5 generated
//! documents each, as `tenants` makes them) and is closed; `--mmap` tenants
//! get the same documents in one `MmapDirectory` folder each. Each
//! measurement runs in a fresh child process (so RSS and the page cache
//! counters are its own): open the store, then tenant `t0`'s index, reader
//! and one query; for MmapDirectory, tenant `t0`'s directory, index, reader
//! and one query first (what a server that opens its tenants when first used
//! pays; until 2026-11-28 it was measured after every tenant had been opened,
//! its files already read), then every mmap tenant's index and reader.
//! Warm: right after an untimed open of the same side (until 2026-11-28 the
//! side before could have dropped the page cache); cold: after dropping the
//! page cache (root only). Rounds alternate which side goes first.
//!
//! `cargo run --release -p jocky-bench --example store_open -- --tenants 10000`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clap::Parser;
use jocky_bench::corpus;
use jocky_bench::procstats;
use jocky_bench::tenant::index_small_tenant;
use serde::{Deserialize, Serialize};
use tantivy::collector::Count;
use tantivy::directory::MmapDirectory;
use tantivy::query::QueryParser;
use tantivy::{Index, ReloadPolicy};

#[derive(Parser, Debug)]
#[command(about = "Store open at scale: snapshot vs full replay vs MmapDirectory")]
struct Args {
    /// Tenants in the store.
    #[arg(long, default_value_t = 10_000)]
    tenants: usize,
    /// Tenants in MmapDirectory folders (opened all in one measurement).
    #[arg(long, default_value_t = 1000)]
    mmap: usize,
    /// Measured rounds (each side warm and cold once per round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Threads that build the store.
    #[arg(long, default_value_t = 2)]
    build_threads: usize,
    /// Folder for the store and the mmap folders (kept; reused if it holds a
    /// store of the same size). Default: a temporary folder, removed at the end.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Internal: measure one side in this process and print it as JSON.
    #[arg(long, hide = true)]
    child: Option<String>,
}

const PER_COMMIT: usize = 5;
const COMMITS: usize = 3;

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

/// One measurement, made in a child process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Measured {
    /// Store open (or all mmap tenants' opens), ms.
    open_ms: f64,
    /// Tenant t0's `Index::open` + reader + one query after the store open, ms.
    first_tenant_ms: f64,
    /// RSS growth over the open, MB.
    rss_mb: f64,
    /// Bytes read from disk during the open, MB.
    read_mb: f64,
    /// Bytes of records the open replayed, MB (jocky).
    replayed_mb: f64,
    /// Container files mapped but not replayed (jocky).
    not_replayed: usize,
    /// Files in the table (jocky).
    files: usize,
}

fn store_path(root: &Path) -> PathBuf {
    root.join("store")
}

fn mmap_path(root: &Path, t: usize) -> PathBuf {
    root.join("mmap").join(format!("t{t}"))
}

fn docs_for(t: usize) -> Vec<corpus::Doc> {
    corpus::generate(t as u64 + 1, PER_COMMIT * COMMITS).collect()
}

/// Builds the store (if it is not there yet) and the mmap folders.
fn build(root: &Path, args: &Args) -> BoxResult<()> {
    let marker = root.join(format!("built-{}-{}", args.tenants, args.mmap));
    if marker.exists() {
        println!("reusing the store in {}", root.display());
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(root.join("store"));
    let _ = std::fs::remove_dir_all(root.join("mmap"));
    let start = Instant::now();
    let store = jocky::Store::builder(store_path(root))
        // The build's durability does not matter, the log it leaves does.
        .sync_policy(jocky::SyncPolicy::Never)
        .open_store()?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| -> BoxResult<()> {
        let workers: Vec<_> = (0..args.build_threads)
            .map(|_| {
                s.spawn(|| -> Result<(), String> {
                    loop {
                        let t = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if t >= args.tenants {
                            return Ok(());
                        }
                        let dir = store
                            .directory(&format!("t{t}"))
                            .map_err(|e| e.to_string())?;
                        index_small_tenant(Box::new(dir), &docs_for(t), PER_COMMIT, COMMITS)
                            .map_err(|e| e.to_string())?;
                        if t % 10_000 == 9_999 {
                            println!(
                                "  {} tenants, {:.0} s",
                                t + 1,
                                start.elapsed().as_secs_f64()
                            );
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("builder thread")?;
        }
        Ok(())
    })?;
    drop(store);
    for t in 0..args.mmap {
        let p = mmap_path(root, t);
        std::fs::create_dir_all(&p)?;
        index_small_tenant(
            Box::new(MmapDirectory::open(&p)?),
            &docs_for(t),
            PER_COMMIT,
            COMMITS,
        )?;
    }
    println!(
        "built {} tenants in the store ({:.0} MB on disk) and {} mmap folders in {:.0} s",
        args.tenants,
        procstats::dir_disk_usage(store_path(root)).unwrap_or(0) as f64 / 1e6,
        args.mmap,
        start.elapsed().as_secs_f64()
    );
    std::fs::write(marker, b"")?;
    Ok(())
}

fn query(index: &Index) -> BoxResult<usize> {
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?;
    let schema = index.schema();
    let parser = QueryParser::for_index(index, vec![schema.get_field("body")?]);
    let q = parser.parse_query("the")?;
    let reader: tantivy::IndexReader = reader;
    Ok(reader.searcher().search(&q, &Count)?)
}

/// The child: measures `side` over the folders in `root`.
/// Tenant t0's directory (made by `open`, timed too), `Index::open`, reader
/// and one query, ms.
fn first_query_ms<D: tantivy::Directory>(open: impl FnOnce() -> BoxResult<D>) -> BoxResult<f64> {
    let t = Instant::now();
    let hits = query(&Index::open(open()?)?)?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(hits > 0, "tenant t0 finds nothing");
    Ok(ms)
}

fn measure(side: &str, root: &Path, args: &Args) -> BoxResult<Measured> {
    let rss0 = procstats::rss_bytes();
    let read0 = procstats::io_read_bytes();
    let mut m = Measured::default();
    let start = Instant::now();
    match side {
        "snapshot" | "full" => {
            let store = jocky::Store::builder(store_path(root))
                .full_replay(side == "full")
                .open_store()?;
            m.open_ms = start.elapsed().as_secs_f64() * 1e3;
            let rss1 = procstats::rss_bytes();
            let st = store.stats();
            m.replayed_mb = st.bytes_replayed_on_open as f64 / 1e6;
            m.not_replayed = st.container_files_not_replayed;
            m.files = st.virtual_files;
            m.first_tenant_ms = first_query_ms(|| Ok(store.directory("t0")?))?;
            m.rss_mb = rss1.saturating_sub(rss0) as f64 / 1e6;
        }
        "mmap" => {
            // Tenant t0's first query first, as a server that opens its
            // tenants when they are first used pays it (measured after the
            // others were opened, its files would be in the page cache: not
            // comparable with jocky's, which follows the store's open).
            m.first_tenant_ms = first_query_ms(|| Ok(MmapDirectory::open(mmap_path(root, 0))?))?;
            let start = Instant::now();
            let mut kept = Vec::with_capacity(args.mmap);
            for t in 0..args.mmap {
                let index = Index::open(MmapDirectory::open(mmap_path(root, t))?)?;
                let reader: tantivy::IndexReader = index
                    .reader_builder()
                    .reload_policy(ReloadPolicy::Manual)
                    .try_into()?;
                kept.push(reader);
            }
            m.open_ms = start.elapsed().as_secs_f64() * 1e3;
            m.rss_mb = procstats::rss_bytes().saturating_sub(rss0) as f64 / 1e6;
        }
        other => return Err(format!("unknown side {other}").into()),
    }
    m.read_mb = procstats::io_read_bytes().saturating_sub(read0) as f64 / 1e6;
    Ok(m)
}

/// Runs one measurement in a fresh process.
fn child(side: &str, root: &Path, args: &Args, cold: bool) -> BoxResult<Measured> {
    if cold {
        procstats::drop_page_cache()?;
    }
    let out = Command::new(std::env::current_exe()?)
        .args([
            "--child",
            side,
            "--out",
            &root.display().to_string(),
            "--tenants",
            &args.tenants.to_string(),
            "--mmap",
            &args.mmap.to_string(),
        ])
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "child {side} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = String::from_utf8(out.stdout)?;
    let line = text.lines().last().ok_or("child printed nothing")?;
    Ok(serde_json::from_str(line)?)
}

fn median_range(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let med = v[v.len() / 2];
    let fmt = |x: f64| {
        if x >= 100.0 {
            format!("{x:.0}")
        } else if x >= 10.0 {
            format!("{x:.1}")
        } else {
            format!("{x:.2}")
        }
    };
    format!("{} [{}–{}]", fmt(med), fmt(v[0]), fmt(v[v.len() - 1]))
}

fn main() -> BoxResult<()> {
    let args = Args::parse();
    let tmp;
    let root = match &args.out {
        Some(p) => p.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    if let Some(side) = &args.child {
        let m = measure(side, &root, &args)?;
        println!("{}", serde_json::to_string(&m)?);
        return Ok(());
    }
    std::fs::create_dir_all(&root)?;
    build(&root, &args)?;
    let cold_ok = procstats::drop_page_cache().is_ok();
    let sides = ["snapshot", "full", "mmap"];
    // The first open after the build writes the snapshot (the build's close
    // already did; this makes sure) and warms the page cache.
    for side in sides {
        child(side, &root, &args, false)?;
    }
    let mut warm: Vec<Vec<Measured>> = vec![Vec::new(); sides.len()];
    let mut cold: Vec<Vec<Measured>> = vec![Vec::new(); sides.len()];
    for round in 0..args.rounds {
        for k in 0..sides.len() {
            let i = (k + round) % sides.len();
            // Warm: after an untimed open of its own (the side before may
            // have dropped the page cache for its cold measurement).
            child(sides[i], &root, &args, false)?;
            warm[i].push(child(sides[i], &root, &args, false)?);
            if cold_ok {
                cold[i].push(child(sides[i], &root, &args, true)?);
            }
        }
    }
    println!(
        "\n{} tenants in one store ({:.0} MB on disk), {} MmapDirectory tenants; {} rounds, median [min–max]",
        args.tenants,
        procstats::dir_disk_usage(store_path(&root)).unwrap_or(0) as f64 / 1e6,
        args.mmap,
        args.rounds
    );
    println!(
        "{:<34} {:>22} {:>22} {:>20} {:>20} {:>22} {:>22} {:>10}",
        "side",
        "open ms, warm",
        "open ms, cold",
        "RSS after, MB",
        "read cold, MB",
        "t0 query ms, warm",
        "t0 query ms, cold",
        "replayed"
    );
    // Container files reclaimed out of order leave gaps no replay crosses: a
    // full replay then starts from the snapshot after the newest gap.
    let numbers: Vec<u64> = std::fs::read_dir(store_path(&root))?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("jocky-")?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    let (lo, hi) = (
        numbers.iter().min().copied().unwrap_or(0),
        numbers.iter().max().copied().unwrap_or(0),
    );
    let gaps = (hi + 1 - lo) as usize - numbers.len();
    println!(
        "container files {lo}..={hi}, {} present, {gaps} reclaimed out of order: a full replay reads {}",
        numbers.len(),
        if gaps == 0 {
            "every record (how jocky opened before snapshots)"
        } else {
            "the records after the newest gap, from the snapshot there"
        }
    );
    let names = [
        "jocky store, from its snapshot",
        "jocky store, full replay",
        "MmapDirectory, all its tenants",
    ];
    for i in 0..sides.len() {
        let w = &warm[i];
        let c = &cold[i];
        let col = |v: &[Measured], f: fn(&Measured) -> f64| {
            if v.is_empty() {
                "-".to_string()
            } else {
                median_range(v.iter().map(f).collect())
            }
        };
        println!(
            "{:<34} {:>22} {:>22} {:>20} {:>20} {:>22} {:>22} {:>7.1} MB",
            names[i],
            col(w, |m| m.open_ms),
            col(c, |m| m.open_ms),
            col(w, |m| m.rss_mb),
            col(c, |m| m.read_mb),
            col(w, |m| m.first_tenant_ms),
            col(c, |m| m.first_tenant_ms),
            w.last().map_or(0.0, |m| m.replayed_mb),
        );
    }
    if let Some(m) = warm[0].last() {
        println!(
            "table: {} files in {} tenants; RSS after a snapshot open {:.0} bytes per tenant, {:.0} per file; {} container files not replayed",
            m.files,
            args.tenants,
            m.rss_mb * 1e6 / args.tenants as f64,
            m.rss_mb * 1e6 / m.files.max(1) as f64,
            m.not_replayed
        );
    }
    if !cold_ok {
        println!("(cold opens skipped: dropping the page cache needs root)");
    }
    Ok(())
}
