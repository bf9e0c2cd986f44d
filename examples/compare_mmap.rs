//! Side-by-side comparison of a candidate `Directory` with tantivy's `MmapDirectory`.
//!
//! Each round indexes the same in-memory corpus into a fresh `MmapDirectory` and a fresh
//! candidate directory (alternating which goes first), then reopens each index and runs
//! the query set. Figures are reported as median [min–max] over the rounds, and the
//! candidate/mmap ratio is computed per round (paired) before taking its median, because
//! these machines are noisy.
//!
//! ```text
//! cargo run --release --example compare_mmap -- --docs 20000 --rounds 1
//! cargo run --release --example compare_mmap -- --corpus wiki.jsonl
//! cargo run --release --example compare_mmap -- --corpus /usr/src/linux-source-6.1
//! ```
//!
//! The candidate is opened by [`open_candidate`]; switching it to
//! `jocky::JockyDirectory::open(path)` is a one-line change.

use std::error::Error;
use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use jocky::corpus::{self, Doc};
use jocky::harness::{self, QueryResult};
use jocky::procstats::{self, Sampler};
use tantivy::directory::{Directory, MmapDirectory};
use tantivy::{Index, IndexSettings, IndexWriter};

type BoxResult<T> = Result<T, Box<dyn Error>>;

/// Generated documents by default: about 250 MB of text.
const DEFAULT_DOCS: usize = 160_000;
const SAMPLE_INTERVAL: Duration = Duration::from_millis(20);

/// The directory under test. Switch this to `jocky::JockyDirectory::open(path)`.
fn open_candidate(path: &Path) -> BoxResult<Box<dyn Directory>> {
    Ok(Box::new(jocky::JockyDirectory::open(path)?))
}

fn open_mmap(path: &Path) -> BoxResult<Box<dyn Directory>> {
    Ok(Box::new(MmapDirectory::open(path)?))
}

#[derive(Parser, Debug)]
#[command(about = "Index and search the same corpus with MmapDirectory and JockyDirectory")]
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mmap,
    Candidate,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mmap => "mmap",
            Kind::Candidate => "jocky",
        }
    }

    fn open(self, path: &Path) -> BoxResult<Box<dyn Directory>> {
        match self {
            Kind::Mmap => open_mmap(path),
            Kind::Candidate => open_candidate(path),
        }
    }
}

/// Everything measured for one directory in one round.
#[derive(Debug, Clone)]
struct Measurement {
    index_secs: f64,
    docs_per_sec: f64,
    input_mb_per_sec: f64,
    written_mb: f64,
    peak_fds: f64,
    peak_maps: f64,
    peak_rss_mb: f64,
    index_mb: f64,
    disk_mb: f64,
    open_ms: f64,
    reader_fds: f64,
    reader_maps: f64,
    p50_ms: f64,
    p99_ms: f64,
    results: Vec<QueryResult>,
}

/// (label, accessor) of a row of the summary table.
type Metric = (&'static str, fn(&Measurement) -> f64);

const METRICS: &[Metric] = &[
    ("index wall s", |m| m.index_secs),
    ("docs/s", |m| m.docs_per_sec),
    ("input MB/s", |m| m.input_mb_per_sec),
    ("written MB", |m| m.written_mb),
    ("peak extra fds (index)", |m| m.peak_fds),
    ("peak extra maps (index)", |m| m.peak_maps),
    ("peak extra RSS MB (index)", |m| m.peak_rss_mb),
    ("index size MB", |m| m.index_mb),
    ("index disk usage MB", |m| m.disk_mb),
    ("open index+reader ms", |m| m.open_ms),
    ("fds held by reader", |m| m.reader_fds),
    ("maps held by reader", |m| m.reader_maps),
    ("search p50 ms", |m| m.p50_ms),
    ("search p99 ms", |m| m.p99_ms),
];

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> BoxResult<()> {
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

    let _tmp_guard;
    let out = match &args.out {
        Some(out) => {
            fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
            out.clone()
        }
        None => {
            let tmp = tempfile::Builder::new().prefix("compare_mmap").tempdir()?;
            let path = tmp.path().to_path_buf();
            _tmp_guard = tmp;
            path
        }
    };
    println!(
        "out: {}; {} indexing threads, {} MB heap, commit every {} docs, {} round(s)",
        out.display(),
        args.threads,
        args.heap_mb,
        args.commit_every,
        args.rounds
    );

    // Untimed warm-up: the first indexing run of a process creates the allocator's
    // per-thread arenas (extra mappings, RSS) and warms code paths; without this, whichever
    // directory goes first in round 0 would be charged for it.
    warm_up(&out, &docs, args)?;

    let mut mmap_runs = Vec::new();
    let mut candidate_runs = Vec::new();
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            [Kind::Mmap, Kind::Candidate]
        } else {
            [Kind::Candidate, Kind::Mmap]
        };
        for kind in order {
            let path = out.join(format!("round{round}-{}", kind.name()));
            if path.exists() {
                fs::remove_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let m = measure(kind, &path, &docs, text_bytes as u64, &queries, args)
                .map_err(|e| format!("{} round {round}: {e}", kind.name()))?;
            println!(
                "round {round} {:<9}: index {:.2} s ({:.0} docs/s, {:.1} MB/s), written {:.0} MB, \
                 index {:.0} MB, fds +{}, maps +{}, p50 {:.3} ms, p99 {:.3} ms",
                kind.name(),
                m.index_secs,
                m.docs_per_sec,
                m.input_mb_per_sec,
                m.written_mb,
                m.index_mb,
                m.peak_fds,
                m.peak_maps,
                m.p50_ms,
                m.p99_ms
            );
            if !args.keep {
                fs::remove_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            match kind {
                Kind::Mmap => mmap_runs.push(m),
                Kind::Candidate => candidate_runs.push(m),
            }
        }
        let (a, b) = (&mmap_runs[round], &candidate_runs[round]);
        if a.results == b.results {
            println!("round {round}: search results identical");
        } else {
            let differing: Vec<&str> = a
                .results
                .iter()
                .zip(&b.results)
                .filter(|(x, y)| x != y)
                .map(|(x, _)| x.query.as_str())
                .collect();
            println!("round {round}: WARNING search results differ for {differing:?}");
        }
    }

    print_summary(&mmap_runs, &candidate_runs);
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

fn measure(
    kind: Kind,
    path: &Path,
    docs: &[Doc],
    text_bytes: u64,
    queries: &[String],
    args: &Args,
) -> BoxResult<Measurement> {
    // Indexing.
    let sampler = Sampler::start(SAMPLE_INTERVAL)?;
    let written_before = procstats::io_write_bytes();
    let start = Instant::now();
    {
        let (schema, fields) = harness::schema();
        let index = Index::create(kind.open(path)?, schema, IndexSettings::default())?;
        let mut writer: IndexWriter =
            index.writer_with_num_threads(args.threads, args.heap_mb * 1_000_000)?;
        harness::index_docs(&mut writer, &fields, docs, args.commit_every)?;
        writer.wait_merging_threads()?;
    }
    let index_secs = start.elapsed().as_secs_f64();
    let written = procstats::io_write_bytes().saturating_sub(written_before);
    let index_report = sampler.stop();
    let index_bytes = procstats::dir_size(path)?;
    let disk_bytes = procstats::dir_disk_usage(path)?;

    // Searching, on a fresh directory handle.
    let sampler = Sampler::start(SAMPLE_INTERVAL)?;
    let base = sampler.baseline();
    let start = Instant::now();
    let index = Index::open(kind.open(path)?)?;
    let reader = harness::manual_reader(&index)?;
    let searcher = reader.searcher();
    let open_ms = ms(start.elapsed());
    let reader_fds = procstats::open_fds().saturating_sub(base.fds);
    let reader_maps = procstats::mappings().saturating_sub(base.mappings);
    let fields = harness::fields_of(&index.schema())?;
    let parser = harness::query_parser(&index, &fields);
    // Warm-up pass; its results are compared between the directories.
    let results = queries
        .iter()
        .map(|q| harness::run_query(&searcher, &parser, &fields, q))
        .collect::<tantivy::Result<Vec<_>>>()?;
    let mut latencies = Vec::with_capacity(queries.len() * args.query_repeats);
    for _ in 0..args.query_repeats {
        for q in queries {
            let t = Instant::now();
            black_box(harness::run_query(&searcher, &parser, &fields, q)?);
            latencies.push(t.elapsed());
        }
    }
    drop(searcher);
    drop(reader);
    drop(index);
    sampler.stop();
    latencies.sort();

    Ok(Measurement {
        index_secs,
        docs_per_sec: docs.len() as f64 / index_secs,
        input_mb_per_sec: mb(text_bytes) / index_secs,
        written_mb: mb(written),
        peak_fds: index_report.extra_fds() as f64,
        peak_maps: index_report.extra_mappings() as f64,
        peak_rss_mb: mb(index_report.extra_rss()),
        index_mb: mb(index_bytes),
        disk_mb: mb(disk_bytes),
        open_ms,
        reader_fds: reader_fds as f64,
        reader_maps: reader_maps as f64,
        p50_ms: ms(percentile(&latencies, 0.50)),
        p99_ms: ms(percentile(&latencies, 0.99)),
        results,
    })
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

fn print_summary(mmap: &[Measurement], candidate: &[Measurement]) {
    println!();
    println!(
        "summary over {} round(s): median [min–max]; ratio = jocky/mmap per round",
        mmap.len()
    );
    let header = ("metric", "mmap", "jocky", "jocky/mmap");
    let rows: Vec<(String, String, String, String)> = METRICS
        .iter()
        .map(|(label, get)| {
            let a: Vec<f64> = mmap.iter().map(get).collect();
            let b: Vec<f64> = candidate.iter().map(get).collect();
            let ratios: Vec<f64> = a
                .iter()
                .zip(&b)
                .map(|(x, y)| {
                    if *x == 0.0 && *y == 0.0 {
                        1.0
                    } else if *x == 0.0 {
                        f64::INFINITY
                    } else {
                        y / x
                    }
                })
                .collect();
            (label.to_string(), cell(a), cell(b), cell(ratios))
        })
        .collect();
    let w0 = rows
        .iter()
        .map(|r| r.0.len())
        .max()
        .unwrap_or(0)
        .max(header.0.len());
    let w1 = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(0)
        .max(header.1.len());
    let w2 = rows
        .iter()
        .map(|r| r.2.chars().count())
        .max()
        .unwrap_or(0)
        .max(header.2.len());
    println!(
        "{:<w0$}  {:>w1$}  {:>w2$}  {}",
        header.0, header.1, header.2, header.3
    );
    for (label, a, b, ratio) in rows {
        println!("{label:<w0$}  {a:>w1$}  {b:>w2$}  {ratio}");
    }
}
