//! Chooses jocky's default madvise per file type by measurement.
//!
//! Builds one index with `MmapDirectory` and the same documents with jocky (all
//! committed segments exported into segment files), then for each candidate advice
//! policy, and for `MmapDirectory` with no advice, runs the query set (top-10
//! hits with their stored documents fetched):
//! - cold: page cache dropped (`/proc/sys/vm/drop_caches`, needs root; skipped
//!   otherwise), each query once, reporting p50/p99 latency and the bytes the process
//!   read from disk (`read_bytes` of `/proc/self/io`, page faults included);
//! - warm: each query `--repeats` times after the cold pass.
//!
//! Candidates and mmap alternate inside each round; figures are medians over rounds
//! and ratios are taken per round against mmap of the same round.
//!
//! ```text
//! cargo run --release -p jocky-bench --example advice -- --docs 100000 --rounds 3
//! ```

use std::error::Error;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use jocky::{Advice, AdvicePolicy, ExportPolicy, JockyDirectory};
use jocky_bench::corpus::{self, Doc};
use jocky_bench::harness;
use jocky_bench::procstats;
use tantivy::directory::{Directory, MmapDirectory};
use tantivy::{Index, IndexSettings, IndexWriter};

type BoxResult<T> = Result<T, Box<dyn Error>>;

#[derive(Parser, Debug)]
#[command(about = "Search latency and disk reads per madvise policy, jocky vs MmapDirectory")]
struct Args {
    /// Generated documents (or the first N of --corpus).
    #[arg(long, default_value_t = 100_000)]
    docs: usize,
    /// A JSON-lines file or a directory tree instead of the generated corpus.
    #[arg(long)]
    corpus: Option<PathBuf>,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Warm repetitions of the query set.
    #[arg(long, default_value_t = 10)]
    repeats: usize,
    /// Where the indexes are built (default: a temporary folder).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn candidates() -> Vec<(&'static str, Option<AdvicePolicy>)> {
    vec![
        ("mmap (no advice)", None),
        (
            "jocky default (blocks; term/fast/fieldnorm none)",
            Some(AdvicePolicy::default()),
        ),
        ("jocky no advice", Some(AdvicePolicy::uniform(Advice::None))),
        ("jocky blocks", Some(AdvicePolicy::uniform(Advice::Blocks))),
        (
            "jocky blocks, idx/pos none",
            Some(
                AdvicePolicy::uniform(Advice::Blocks)
                    .with("idx", Advice::None)
                    .with("pos", Advice::None),
            ),
        ),
        (
            "jocky store=random",
            Some(AdvicePolicy::uniform(Advice::None).with("store", Advice::Random)),
        ),
        (
            "jocky all random",
            Some(AdvicePolicy::uniform(Advice::Random)),
        ),
    ]
}

#[derive(Debug, Clone, Default)]
struct Run {
    cold_p50: f64,
    cold_p99: f64,
    cold_read_mb: f64,
    warm_p50: f64,
    warm_p99: f64,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("advice: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> BoxResult<()> {
    let tmp = tempfile::tempdir()?;
    let out = args.out.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let docs: Vec<Doc> = match &args.corpus {
        Some(p) => {
            let mut d = corpus::load_path(p)?;
            d.truncate(args.docs);
            d
        }
        None => corpus::generate(corpus::DEFAULT_SEED, args.docs).collect(),
    };
    let queries = if args.corpus.is_some() {
        let terms = corpus::ranked_terms(&docs, 64 << 20);
        let refs: Vec<&str> = terms.iter().map(String::as_str).collect();
        corpus::queries_from_ranked_terms(&refs)
    } else {
        corpus::default_queries()
    };
    let mmap_path = out.join("mmap");
    let jocky_path = out.join("jocky");
    std::fs::create_dir_all(&mmap_path)?;
    build(Box::new(MmapDirectory::open(&mmap_path)?), &docs)?;
    {
        let dir = JockyDirectory::builder(&jocky_path)
            .export_policy(ExportPolicy::Manual)
            .open()?;
        build(Box::new(dir.clone()), &docs)?;
        let e = dir.export_committed()?;
        let r = dir.reclaim()?;
        println!(
            "jocky index: exported {} segment files ({} files, {:.1} MB); reclaimed {} container files",
            e.segment_files,
            e.files,
            e.bytes as f64 / 1e6,
            r.container_files_removed
        );
    }
    let cold = drop_caches();
    println!(
        "{} docs, {} queries (top-10 with stored documents), {} rounds, {} warm repeats; cold cache: {}",
        docs.len(),
        queries.len(),
        args.rounds,
        args.repeats,
        if cold { "dropped before each cold pass" } else { "NOT dropped (not root): cold columns are warm" }
    );
    let cands = candidates();
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); cands.len()];
    for round in 0..args.rounds {
        // Rotate the order between rounds so no policy always goes first.
        for k in 0..cands.len() {
            let i = (k + round) % cands.len();
            let advice = &cands[i].1;
            let dir: Box<dyn Directory> = match advice {
                None => Box::new(MmapDirectory::open(&mmap_path)?),
                Some(a) => Box::new(
                    JockyDirectory::builder(&jocky_path)
                        .export_policy(ExportPolicy::Manual)
                        .advice(a.clone())
                        .open()?,
                ),
            };
            runs[i].push(measure(dir, &queries, args.repeats)?);
        }
    }
    let base = &runs[0];
    println!(
        "\n{:<42} {:>20} {:>20} {:>20} {:>20} {:>20} {:>18}",
        "policy", "cold p50", "cold p99", "cold read", "warm p50", "warm p99", "warm p50"
    );
    println!(
        "{:<42} {:>20} {:>20} {:>20} {:>20} {:>20} {:>18}",
        "", "ms", "ms", "MB", "ms", "ms", "vs mmap"
    );
    for (i, (name, _)) in cands.iter().enumerate() {
        let r = &runs[i];
        let ratio: Vec<f64> = r
            .iter()
            .zip(base)
            .map(|(a, b)| a.warm_p50 / b.warm_p50)
            .collect();
        println!(
            "{:<42} {:>20} {:>20} {:>20} {:>20} {:>20} {:>18}",
            name,
            cell(r.iter().map(|x| x.cold_p50).collect()),
            cell(r.iter().map(|x| x.cold_p99).collect()),
            cell(r.iter().map(|x| x.cold_read_mb).collect()),
            cell(r.iter().map(|x| x.warm_p50).collect()),
            cell(r.iter().map(|x| x.warm_p99).collect()),
            cell(ratio),
        );
    }
    println!("\ncells: median [min-max] over rounds");
    Ok(())
}

fn build(dir: Box<dyn Directory>, docs: &[Doc]) -> BoxResult<()> {
    let (schema, fields) = harness::schema();
    let index = Index::create(dir, schema, IndexSettings::default())?;
    let mut writer: IndexWriter = index.writer_with_num_threads(2, 200_000_000)?;
    harness::index_docs(&mut writer, &fields, docs, 10_000)?;
    writer.wait_merging_threads()?;
    Ok(())
}

fn measure(dir: Box<dyn Directory>, queries: &[String], repeats: usize) -> BoxResult<Run> {
    drop_caches();
    let read_before = procstats::io_read_bytes();
    let index = Index::open(dir)?;
    let reader = harness::manual_reader(&index)?;
    let searcher = reader.searcher();
    let fields = harness::fields_of(&index.schema())?;
    let parser = harness::query_parser(&index, &fields);
    let mut cold = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        black_box(harness::run_query(&searcher, &parser, &fields, q)?);
        cold.push(t.elapsed());
    }
    let cold_read = procstats::io_read_bytes().saturating_sub(read_before);
    let mut warm = Vec::with_capacity(queries.len() * repeats);
    for _ in 0..repeats {
        for q in queries {
            let t = Instant::now();
            black_box(harness::run_query(&searcher, &parser, &fields, q)?);
            warm.push(t.elapsed());
        }
    }
    cold.sort();
    warm.sort();
    Ok(Run {
        cold_p50: ms(pct(&cold, 0.5)),
        cold_p99: ms(pct(&cold, 0.99)),
        cold_read_mb: cold_read as f64 / 1e6,
        warm_p50: ms(pct(&warm, 0.5)),
        warm_p99: ms(pct(&warm, 0.99)),
    })
}

/// Drops the page cache; `false` when not permitted.
fn drop_caches() -> bool {
    procstats::drop_page_cache().is_ok()
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn cell(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return "-".into();
    }
    let med = v[v.len() / 2];
    if v.len() == 1 {
        return format!("{med:.2}");
    }
    format!("{med:.2} [{:.2}-{:.2}]", v[0], v[v.len() - 1])
}
