//! Noisy neighbour: do small tenants keep their latency while a big tenant of
//! the same server bulk-indexes? jocky's `Store` (every tenant in one
//! container) against one `MmapDirectory` per tenant, in the same run.
//!
//! Per side and round: `--small` small tenants each keep a writer and a reader
//! open, as a search server does, and in turn add `--docs-per-commit`
//! documents, commit, and reload their reader. First alone (`--alone-cycles`
//! turns of every tenant), then while one big tenant bulk-indexes the corpus
//! (generated, or `--corpus`: a JSONL file or a source tree such as the Linux
//! sources) with 2 indexing threads, committing every `--commit-every`
//! documents; the small tenants go on until the big one is done. Reported:
//! commit and reload latency (p50, p99, max) of the small tenants alone and
//! loaded, and the big tenant's docs/s. Rounds alternate which side goes
//! first; the summary gives medians over rounds with min–max, and jocky/mmap.
//!
//! ```text
//! cargo run --release -p jocky-bench --example noisy_neighbour
//! cargo run --release -p jocky-bench --example noisy_neighbour -- --corpus /usr/src/linux-source-6.1
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use jocky_bench::corpus::{self, Doc};
use jocky_bench::harness::{self, Fields};
use tantivy::directory::MmapDirectory;
use tantivy::{Directory, Index, IndexReader, IndexWriter, ReloadPolicy};

type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Parser, Debug)]
#[command(about = "Small tenants' commit and reload latency while a big tenant bulk-indexes")]
struct Args {
    /// Small tenants.
    #[arg(long, default_value_t = 20)]
    small: usize,
    /// Documents per small commit.
    #[arg(long, default_value_t = 5)]
    docs_per_commit: usize,
    /// Turns of every small tenant before the big tenant starts.
    #[arg(long, default_value_t = 10)]
    alone_cycles: usize,
    /// The big tenant's corpus: a JSONL file or a folder of text files
    /// (default: the generated corpus).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Documents of the big tenant (default: 100,000 generated, or all of --corpus).
    #[arg(long)]
    docs: Option<usize>,
    /// The big tenant commits after this many documents.
    #[arg(long, default_value_t = 10_000)]
    commit_every: usize,
    /// The big tenant's indexing heap, MB.
    #[arg(long, default_value_t = 200)]
    heap_mb: usize,
    /// Rounds (each runs both sides, alternating which goes first).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Folder for the indexes (default: a temporary folder).
    #[arg(long)]
    out: Option<PathBuf>,
    /// jocky's write mode: buffered (the library's default), direct or inline.
    #[arg(long, default_value = "buffered")]
    write_mode: String,
}

fn write_mode(name: &str) -> BoxResult<jocky::WriteMode> {
    Ok(match name {
        "direct" => jocky::WriteMode::Direct,
        "buffered" => jocky::WriteMode::Buffered,
        "inline" => jocky::WriteMode::Inline,
        other => return Err(format!("unknown write mode {other:?}").into()),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Jocky,
    Mmap,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Jocky => "jocky",
            Side::Mmap => "mmap",
        }
    }
}

/// Latencies of one phase.
#[derive(Default)]
struct Lat {
    commit: Vec<Duration>,
    reload: Vec<Duration>,
}

struct Run {
    alone: Lat,
    loaded: Lat,
    big_docs_per_sec: f64,
}

struct Small {
    writer: IndexWriter,
    reader: IndexReader,
    next: u64,
}

/// Opens the directories of one side: the big tenant's and the small ones'.
struct Dirs {
    big: Box<dyn Directory>,
    small: Vec<Box<dyn Directory>>,
    /// Keeps the store open for the whole run.
    _store: Option<jocky::Store>,
}

fn open_dirs(side: Side, root: &Path, args: &Args) -> BoxResult<Dirs> {
    std::fs::create_dir_all(root)?;
    let small = args.small;
    Ok(match side {
        Side::Jocky => {
            let store = jocky::Store::builder(root)
                .write_mode(write_mode(&args.write_mode)?)
                .open_store()?;
            let big: Box<dyn Directory> = Box::new(store.directory("big")?);
            let mut v: Vec<Box<dyn Directory>> = Vec::new();
            for i in 0..small {
                v.push(Box::new(store.directory(&format!("small-{i:04}"))?));
            }
            Dirs {
                big,
                small: v,
                _store: Some(store),
            }
        }
        Side::Mmap => {
            let mk = |name: &str| -> BoxResult<Box<dyn Directory>> {
                let p = root.join(name);
                std::fs::create_dir_all(&p)?;
                Ok(Box::new(MmapDirectory::open(&p)?))
            };
            let big = mk("big")?;
            let mut v = Vec::new();
            for i in 0..small {
                v.push(mk(&format!("small-{i:04}"))?);
            }
            Dirs {
                big,
                small: v,
                _store: None,
            }
        }
    })
}

fn small_turn(s: &mut Small, fields: &Fields, n: usize, lat: &mut Lat) -> BoxResult<()> {
    let gen = corpus::Corpus::new(7);
    for _ in 0..n {
        let d = gen.doc(s.next);
        s.next += 1;
        s.writer.add_document(harness::to_tantivy(fields, &d))?;
    }
    let t = Instant::now();
    s.writer.commit()?;
    lat.commit.push(t.elapsed());
    let t = Instant::now();
    s.reader.reload()?;
    lat.reload.push(t.elapsed());
    Ok(())
}

fn run_side(side: Side, args: &Args, docs: &Arc<Vec<Doc>>, root: &Path) -> BoxResult<Run> {
    let (schema, fields) = harness::schema();
    let dirs = open_dirs(side, root, args)?;
    let mut smalls = Vec::new();
    for d in dirs.small {
        let index = Index::create(d, schema.clone(), Default::default())?;
        let writer = index.writer_with_num_threads(1, 15_000_000)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        smalls.push(Small {
            writer,
            reader,
            next: 0,
        });
    }
    let mut alone = Lat::default();
    for _ in 0..args.alone_cycles {
        for s in smalls.iter_mut() {
            small_turn(s, &fields, args.docs_per_commit, &mut alone)?;
        }
    }
    let big_index = Index::create(dirs.big, schema.clone(), Default::default())?;
    let done = Arc::new(AtomicBool::new(false));
    let big = {
        let docs = docs.clone();
        let done = done.clone();
        let heap = args.heap_mb << 20;
        let every = args.commit_every;
        std::thread::spawn(move || -> BoxResult<f64> {
            let t = Instant::now();
            let r = (|| -> BoxResult<u64> {
                let mut w: IndexWriter = big_index.writer_with_num_threads(2, heap)?;
                let st = harness::index_docs(&mut w, &fields, docs.iter(), every)?;
                w.wait_merging_threads()?;
                Ok(st.docs)
            })();
            done.store(true, Ordering::SeqCst);
            Ok(r? as f64 / t.elapsed().as_secs_f64())
        })
    };
    let mut loaded = Lat::default();
    'outer: loop {
        for s in smalls.iter_mut() {
            if done.load(Ordering::SeqCst) {
                break 'outer;
            }
            small_turn(s, &fields, args.docs_per_commit, &mut loaded)?;
        }
    }
    let big_docs_per_sec = big.join().map_err(|_| "big tenant panicked")??;
    Ok(Run {
        alone,
        loaded,
        big_docs_per_sec,
    })
}

fn pct(v: &[Duration], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s: Vec<Duration> = v.to_vec();
    s.sort();
    let i = ((s.len() as f64 - 1.0) * q).round() as usize;
    s[i].as_secs_f64() * 1e3
}

fn max_ms(v: &[Duration]) -> f64 {
    v.iter().max().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// Median with min and max.
fn mmm(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn fmt(x: (f64, f64, f64)) -> String {
    format!("{:.2} [{:.2}–{:.2}]", x.0, x.1, x.2)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("noisy_neighbour: {e}");
        std::process::exit(1);
    }
}

fn run() -> BoxResult<()> {
    let args = Args::parse();
    let (docs, source) = match &args.corpus {
        Some(p) => {
            let mut d = corpus::load_path(p)?;
            if let Some(n) = args.docs {
                d.truncate(n);
            }
            (d, p.display().to_string())
        }
        None => {
            let n = args.docs.unwrap_or(100_000);
            (
                corpus::generate(corpus::DEFAULT_SEED, n).collect(),
                format!("generated (seed {})", corpus::DEFAULT_SEED),
            )
        }
    };
    let text: usize = docs.iter().map(|d| d.text_len()).sum();
    write_mode(&args.write_mode)?;
    println!(
        "noisy_neighbour: big tenant {source}: {} docs, {:.1} MB; {} small tenants x {} docs per commit; {} rounds; jocky write mode {}",
        docs.len(),
        text as f64 / 1e6,
        args.small,
        args.docs_per_commit,
        args.rounds,
        args.write_mode
    );
    let docs = Arc::new(docs);
    let tmp;
    let base = match &args.out {
        Some(p) => p.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let mut runs: Vec<(Side, Run)> = Vec::new();
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            [Side::Jocky, Side::Mmap]
        } else {
            [Side::Mmap, Side::Jocky]
        };
        for side in order {
            let root = base.join(format!("r{round}-{}", side.name()));
            let r = run_side(side, &args, &docs, &root)?;
            println!(
                "round {round} {:5}: alone commit p99 {:.2} ms reload p99 {:.2} ms | loaded ({} turns) commit p50/p99/max {:.2}/{:.2}/{:.2} ms reload p50/p99/max {:.2}/{:.2}/{:.2} ms | big {:.0} docs/s",
                side.name(),
                pct(&r.alone.commit, 0.99),
                pct(&r.alone.reload, 0.99),
                r.loaded.commit.len(),
                pct(&r.loaded.commit, 0.5),
                pct(&r.loaded.commit, 0.99),
                max_ms(&r.loaded.commit),
                pct(&r.loaded.reload, 0.5),
                pct(&r.loaded.reload, 0.99),
                max_ms(&r.loaded.reload),
                r.big_docs_per_sec
            );
            let mut worst = r.loaded.commit.clone();
            worst.sort_by(|a, b| b.cmp(a));
            let worst: Vec<String> = worst
                .iter()
                .take(5)
                .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
                .collect();
            println!(
                "round {round} {:5}: loaded commits, the 5 slowest, ms: {}",
                side.name(),
                worst.join(" ")
            );
            std::fs::remove_dir_all(&root)?;
            runs.push((side, r));
        }
    }
    println!("\nsummary (median over {} rounds [min–max]):", args.rounds);
    type Metric = (&'static str, fn(&Run) -> f64);
    let metrics: [Metric; 10] = [
        ("alone commit p99 ms", |r| pct(&r.alone.commit, 0.99)),
        ("alone reload p99 ms", |r| pct(&r.alone.reload, 0.99)),
        ("loaded commit p50 ms", |r| pct(&r.loaded.commit, 0.5)),
        ("loaded commit p99 ms", |r| pct(&r.loaded.commit, 0.99)),
        // The side whose tenants get through more turns has more samples, so
        // its max is a higher quantile: p99.9 compares like with like.
        ("loaded commit p99.9 ms", |r| pct(&r.loaded.commit, 0.999)),
        ("loaded commit max ms", |r| max_ms(&r.loaded.commit)),
        ("loaded reload p50 ms", |r| pct(&r.loaded.reload, 0.5)),
        ("loaded reload p99 ms", |r| pct(&r.loaded.reload, 0.99)),
        ("loaded reload max ms", |r| max_ms(&r.loaded.reload)),
        ("big tenant docs/s", |r| r.big_docs_per_sec),
    ];
    println!("  {:24} {:>26} {:>26} {:>8}", "", "jocky", "mmap", "j/m");
    for (name, f) in metrics {
        let of = |side: Side| -> (f64, f64, f64) {
            mmm(runs
                .iter()
                .filter(|(s, _)| *s == side)
                .map(|(_, r)| f(r))
                .collect())
        };
        let j = of(Side::Jocky);
        let m = of(Side::Mmap);
        println!(
            "  {name:24} {:>26} {:>26} {:>7.2}x",
            fmt(j),
            fmt(m),
            j.0 / m.0
        );
    }
    Ok(())
}
