//! `jocky-fuzz`: see the library docs and `jocky-fuzz --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use jocky_fuzz::runner::{self, Config, Report};
use jocky_fuzz::{alloc, corpus, folders, Target};

#[global_allocator]
static ALLOC: alloc::CountingAlloc = alloc::CountingAlloc;

#[derive(Parser)]
#[command(
    name = "jocky-fuzz",
    about = "Fuzz jocky's decoders and open() on the stable toolchain (mutation, no coverage guidance)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Executions per target (decoders; also `open` unless --open-iterations).
    #[arg(long)]
    iterations: Option<u64>,
    /// Seconds per target (whichever of --iterations/--seconds comes first).
    #[arg(long)]
    seconds: Option<f64>,
    /// Seed of the random generator: a run is deterministic from it.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seed corpus folder (`<corpus>/<target>/`).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Where findings are saved.
    #[arg(long)]
    findings: Option<PathBuf>,
    /// Executions of `open` for `all` (default: --iterations / 100).
    #[arg(long)]
    open_iterations: Option<u64>,
    /// Seconds of `open` for `all` (default: --seconds).
    #[arg(long)]
    open_seconds: Option<f64>,
    /// Also write the summary to this file.
    #[arg(long)]
    summary: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs of container records (`decode_records`).
    Records(RunArgs),
    /// One record payload, first byte the kind (`decode_payload`).
    Payload(RunArgs),
    /// A container file header (`decode_file_header`).
    Header(RunArgs),
    /// A whole segment file: trailer and table (`decode_segment_file`).
    Segment(RunArgs),
    /// `open()` over mutated real folders (index, 3-tenant store, raw files).
    Open(RunArgs),
    /// Every target in turn.
    All(RunArgs),
    /// Builds the real folders and cuts the seed corpus out of them.
    GenCorpus {
        /// Output folder (default: this crate's `corpus/`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Runs one saved input again (a panic is not caught).
    Repro { target: String, input: PathBuf },
}

fn config(t: Target, a: &RunArgs) -> Config {
    let mut c = Config::new(t);
    c.iterations = a.iterations;
    c.seconds = a.seconds;
    c.seed = a.seed;
    c.progress = true;
    if let Some(d) = &a.corpus {
        c.corpus_dir = d.clone();
    }
    if let Some(d) = &a.findings {
        c.findings_dir = d.clone();
    }
    if t == Target::Open && (a.open_iterations.is_some() || a.open_seconds.is_some()) {
        c.iterations = a.open_iterations;
        c.seconds = a.open_seconds;
    }
    c
}

fn run(targets: &[Target], a: &RunArgs) -> Result<Vec<Report>, String> {
    let mut reports = Vec::new();
    let mut built = None;
    for &t in targets {
        let mut cfg = config(t, a);
        let report = if t == Target::Open {
            if targets.len() > 1 && a.open_iterations.is_none() && a.open_seconds.is_none() {
                cfg.iterations = a.iterations.map(|n| (n / 100).max(1));
            }
            if cfg.iterations == Some(0) {
                continue;
            }
            let folders = built.get_or_insert_with(|| {
                let t0 = std::time::Instant::now();
                let f = folders::build_all();
                for x in &f {
                    eprintln!(
                        "folder {}: {} files, {} bytes: {:?}",
                        x.name,
                        x.files.len(),
                        x.bytes(),
                        x.files
                            .iter()
                            .map(|f| (&f.0, f.1.len()))
                            .collect::<Vec<_>>()
                    );
                }
                eprintln!("folders built in {:.1} s", t0.elapsed().as_secs_f64());
                f
            });
            runner::run_open(&cfg, folders)
        } else {
            if cfg.iterations == Some(0) {
                continue;
            }
            runner::run_decoder(&cfg).map_err(|e| e.to_string())?
        };
        reports.push(report);
    }
    Ok(reports)
}

fn main() -> ExitCode {
    alloc::mark_installed();
    let cli = Cli::parse();
    let (targets, args): (Vec<Target>, RunArgs) = match cli.cmd {
        Cmd::Records(a) => (vec![Target::Records], a),
        Cmd::Payload(a) => (vec![Target::Payload], a),
        Cmd::Header(a) => (vec![Target::Header], a),
        Cmd::Segment(a) => (vec![Target::Segment], a),
        Cmd::Open(a) => (vec![Target::Open], a),
        Cmd::All(a) => (Target::ALL.to_vec(), a),
        Cmd::GenCorpus { out } => {
            let dir = out.unwrap_or_else(corpus::default_dir);
            let folders = folders::build_all();
            match corpus::generate(&folders, &dir) {
                Ok(counts) => {
                    for (t, (n, b)) in counts {
                        println!("{}: {n} files, {b} bytes", t.name());
                    }
                    return ExitCode::SUCCESS;
                }
                Err(e) => {
                    eprintln!("gen-corpus: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        Cmd::Repro { target, input } => {
            let Some(t) = Target::from_name(&target) else {
                eprintln!("unknown target {target}");
                return ExitCode::FAILURE;
            };
            let bytes = match std::fs::read(&input) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("{}: {e}", input.display());
                    return ExitCode::FAILURE;
                }
            };
            println!("{}", runner::repro(t, &bytes));
            return ExitCode::SUCCESS;
        }
    };
    let started = std::time::Instant::now();
    let reports = match run(&targets, &args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jocky-fuzz: {e}");
            return ExitCode::FAILURE;
        }
    };
    let decoder_execs: u64 = reports
        .iter()
        .filter(|r| r.target.is_some_and(|t| t.is_decoder()))
        .map(|r| r.execs)
        .sum();
    let opens: u64 = reports
        .iter()
        .filter(|r| r.target == Some(Target::Open))
        .map(|r| r.execs)
        .sum();
    let findings: usize = reports.iter().map(|r| r.findings.len()).sum();
    let mut summary = format!(
        "jocky-fuzz {} (seed {}): {decoder_execs} decoder executions, {opens} folder opens, {findings} findings, {:.1} s\n",
        targets.iter().map(|t| t.name()).collect::<Vec<_>>().join(","),
        args.seed,
        started.elapsed().as_secs_f64()
    );
    for r in &reports {
        summary.push_str(&r.summary());
    }
    print!("{summary}");
    if let Some(p) = &args.summary {
        if let Err(e) = std::fs::write(p, &summary) {
            eprintln!("{}: {e}", p.display());
        }
    }
    if findings > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
