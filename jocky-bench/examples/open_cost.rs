//! What opening an index costs: open (directory + `Index::open` + reader) and
//! the first query, cold (page cache dropped; needs root) and warm, for
//! `MmapDirectory`, jocky with its defaults (`VerifyPolicy::OnFirstRead`: each
//! block checked on its first read; `AdvicePolicy::default()`), the same plus
//! `JockyDirectory::prefetch` right after the directory opens (the segment
//! files' hot ranges read ahead), jocky with `VerifyPolicy::OnRequest`, with
//! `Advice::Blocks` for every file type, and with no advice at all (the kernel's
//! read-around on every fault), in the same run, rotating the
//! order, medians over the rounds with min–max. Also the bytes read from disk
//! and the folder's page cache afterwards.
//!
//! `cargo run --release -p jocky-bench --example open_cost -- --docs 100000 --rounds 5`
//! (`--corpus /path/to/linux-source-6.1` for a folder tree)

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use jocky::{Advice, AdvicePolicy, ExportPolicy, JockyDirectory, VerifyPolicy};
use jocky_bench::corpus::{self, Doc};
use jocky_bench::{harness, procstats};
use tantivy::directory::MmapDirectory;
use tantivy::{Directory, Index, IndexWriter};

#[derive(Parser)]
struct Args {
    /// Generated documents to index (or the first N of --corpus).
    #[arg(long, default_value_t = 100_000)]
    docs: usize,
    /// A JSON-lines file or a directory tree instead of the generated corpus;
    /// the query is then built from its most frequent terms.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Rounds (each measures every side once, cold and warm).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Mmap,
    /// The defaults: `VerifyPolicy::OnFirstRead`, `AdvicePolicy::default()`.
    Jocky,
    JockyPrefetch,
    JockyOnRequest,
    /// `Advice::Blocks` for every file type.
    JockyAllBlocks,
    /// No advice at all (the kernel's read-around everywhere; the default
    /// before 2026-11-28).
    JockyNoAdvice,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Mmap => "MmapDirectory",
            Side::Jocky => "jocky, defaults (OnFirstRead, Blocks but .term/.fast/.fieldnorm)",
            Side::JockyPrefetch => "jocky, defaults + prefetch()",
            Side::JockyOnRequest => "jocky, OnRequest",
            Side::JockyAllBlocks => "jocky, Blocks everywhere",
            Side::JockyNoAdvice => "jocky, no advice (kernel read-around)",
        }
    }

    fn advice(self) -> AdvicePolicy {
        match self {
            Side::JockyAllBlocks => AdvicePolicy::uniform(Advice::Blocks),
            Side::JockyNoAdvice => AdvicePolicy::uniform(Advice::None),
            _ => AdvicePolicy::default(),
        }
    }
}

fn open_dir(side: Side, path: &Path) -> Box<dyn Directory> {
    if side == Side::Mmap {
        return Box::new(MmapDirectory::open(path).unwrap());
    }
    let dir = JockyDirectory::builder(path)
        .export_policy(ExportPolicy::Manual)
        .advice(side.advice())
        .verify(if side == Side::JockyOnRequest {
            VerifyPolicy::OnRequest
        } else {
            VerifyPolicy::OnFirstRead
        })
        .open()
        .unwrap();
    if side == Side::JockyPrefetch {
        dir.prefetch().unwrap();
    }
    Box::new(dir)
}

fn build(side: Side, path: &Path, docs: &[Doc]) {
    std::fs::create_dir_all(path).unwrap();
    let (schema, fields) = harness::schema();
    let dir = open_dir(side, path);
    let index = Index::open_or_create(dir, schema).unwrap();
    let mut w: IndexWriter = index.writer_with_num_threads(2, 200_000_000).unwrap();
    w.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
    harness::index_docs(&mut w, &fields, docs.iter().cloned(), 10_000).unwrap();
    harness::merge_all(&mut w).unwrap();
    w.garbage_collect_files().wait().unwrap();
    w.wait_merging_threads().unwrap();
    if side != Side::Mmap {
        let j = JockyDirectory::builder(path)
            .export_policy(ExportPolicy::Manual)
            .open()
            .unwrap();
        j.export_committed().unwrap();
        j.reclaim().unwrap();
    }
}

fn drop_caches() -> bool {
    procstats::drop_page_cache().is_ok()
}

/// One measurement: open ms, first query ms, bytes read, page cache of the
/// folder after.
type Sample = (f64, f64, u64, u64);

fn measure(side: Side, path: &Path, q: &str) -> Sample {
    let (_, fields) = harness::schema();
    let read_before = procstats::io_read_bytes();
    let t = Instant::now();
    let index = Index::open(open_dir(side, path)).unwrap();
    let reader = harness::manual_reader(&index).unwrap();
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let parser = harness::query_parser(&index, &fields);
    let t = Instant::now();
    harness::run_query(&reader.searcher(), &parser, &fields, q).unwrap();
    let query_ms = t.elapsed().as_secs_f64() * 1e3;
    let read = procstats::io_read_bytes() - read_before;
    drop((reader, index));
    let cached = procstats::page_cache_bytes(path).unwrap_or(0);
    (open_ms, query_ms, read, cached)
}

fn median(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let args = Args::parse();
    let tmp = tempfile::tempdir().unwrap();
    let mmap_path: PathBuf = tmp.path().join("mmap");
    let jocky_path: PathBuf = tmp.path().join("jocky");
    let docs: Vec<Doc> = match &args.corpus {
        Some(p) => {
            let mut d = corpus::load_path(p).unwrap();
            d.truncate(args.docs);
            d
        }
        None => corpus::generate(corpus::DEFAULT_SEED, args.docs).collect(),
    };
    let query = match &args.corpus {
        Some(_) => {
            let terms = corpus::ranked_terms(&docs, 64 << 20);
            let refs: Vec<&str> = terms.iter().map(String::as_str).collect();
            corpus::queries_from_ranked_terms(&refs)[0].clone()
        }
        None => corpus::default_queries()[0].clone(),
    };
    eprintln!("indexing {} documents into both...", docs.len());
    build(Side::Mmap, &mmap_path, &docs);
    build(Side::Jocky, &jocky_path, &docs);
    drop(docs);
    println!("query: {query}");
    println!(
        "index: MmapDirectory {:.1} MB, jocky {:.1} MB",
        procstats::dir_size(&mmap_path).unwrap() as f64 / 1e6,
        procstats::dir_size(&jocky_path).unwrap() as f64 / 1e6
    );
    let sides = [
        Side::Mmap,
        Side::Jocky,
        Side::JockyPrefetch,
        Side::JockyOnRequest,
        Side::JockyAllBlocks,
        Side::JockyNoAdvice,
    ];
    let cold_ok = drop_caches();
    if !cold_ok {
        println!("cold runs skipped: cannot drop the page cache (needs root)");
    }
    // [side][cold?] -> samples
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![Vec::new(); 2]; sides.len()];
    for round in 0..args.rounds {
        for k in 0..sides.len() {
            let i = (k + round) % sides.len(); // alternate who goes first
            let side = sides[i];
            let path = if side == Side::Mmap {
                &mmap_path
            } else {
                &jocky_path
            };
            if cold_ok {
                drop_caches();
                samples[i][1].push(measure(side, path, &query));
            }
            measure(side, path, &query); // warm the cache
            samples[i][0].push(measure(side, path, &query));
        }
    }
    println!(
        "\n{} rounds, medians [min–max]; open = directory + Index::open + reader; query = the first query with top-10 stored documents",
        args.rounds
    );
    println!(
        "| side | warm open ms | warm first query ms | cold open ms | cold first query ms | cold open + first query ms | read from disk, cold, MB | page cache after, cold, MB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, side) in sides.iter().enumerate() {
        let col = |cold: usize, f: &dyn Fn(&Sample) -> f64| -> String {
            let mut v: Vec<f64> = samples[i][cold].iter().map(f).collect();
            if v.is_empty() {
                return "–".into();
            }
            let (m, lo, hi) = median(&mut v);
            format!("{m:.2} [{lo:.2}–{hi:.2}]")
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            side.name(),
            col(0, &|s| s.0),
            col(0, &|s| s.1),
            col(1, &|s| s.0),
            col(1, &|s| s.1),
            col(1, &|s| s.0 + s.1),
            col(1, &|s| s.2 as f64 / 1e6),
            col(1, &|s| s.3 as f64 / 1e6),
        );
    }
}
