//! The execution loop: mutate, run under `catch_unwind` with the watchdog armed
//! and the allocator measuring, check, keep inputs that got further, save findings.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::folders::{self, Folder};
use crate::{alloc, corpus, mutate, watch, Target};

/// A single allocation above this during one execution is a finding: the largest
/// thing jocky may legitimately hold at once is one record payload (at most
/// 256 MiB, docs/format.md; a segment table is bounded lower, about 66 MiB), and
/// every input here is a few MiB at most. 1 MiB of slack on top.
pub const MAX_SINGLE_ALLOC: usize = (256 << 20) + (1 << 20);
/// Live bytes above the level before the execution by more than this: a finding.
pub const MAX_LIVE_GROWTH: usize = 2 << 30;
/// The in-memory corpus stops growing here (new entries then replace old ones).
const MAX_CORPUS: usize = 4096;

/// How long one execution may take before it counts as a hang.
pub fn default_hang_limit(t: Target) -> Duration {
    if t.is_decoder() {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(30)
    }
}

/// The largest input a mutation may make, per decoder target.
fn max_input(t: Target) -> usize {
    match t {
        Target::Header => 4 << 10,
        Target::Payload => 128 << 10,
        Target::Records => 256 << 10,
        Target::Segment | Target::Open => 512 << 10,
    }
}

/// One run's settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub target: Target,
    /// Stop after this many executions...
    pub iterations: Option<u64>,
    /// ...or after this long (whichever comes first; neither: 10,000 executions).
    pub seconds: Option<f64>,
    pub seed: u64,
    pub corpus_dir: PathBuf,
    pub findings_dir: PathBuf,
    pub hang_limit: Duration,
    /// Print a progress line to stderr every 10 s.
    pub progress: bool,
}

impl Config {
    /// Defaults: this crate's corpus and findings folders, seed 0, 10,000 runs.
    pub fn new(target: Target) -> Config {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        Config {
            target,
            iterations: None,
            seconds: None,
            seed: 0,
            corpus_dir: corpus::default_dir(),
            findings_dir: root.join("findings"),
            hang_limit: default_hang_limit(target),
            progress: false,
        }
    }
}

/// A panic, a hang or an unbounded allocation.
#[derive(Clone, Debug)]
pub struct Finding {
    pub kind: &'static str,
    pub target: Target,
    pub input: PathBuf,
    pub message: String,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub target: Option<Target>,
    pub execs: u64,
    pub secs: f64,
    pub seeds: usize,
    pub corpus_end: usize,
    /// Mutants kept because their decoder got further than their parent's.
    pub kept: u64,
    /// Executions where the decoder accepted something (score > 0) / the open target:
    /// folders that opened.
    pub accepted: u64,
    pub max_score: u64,
    pub max_single_alloc: usize,
    /// Largest single allocation divided by the input's length (decoders).
    pub max_alloc_ratio: f64,
    pub max_live_growth: usize,
    pub slowest: Duration,
    /// Open target: outcomes (`opened`, `verified`, `reopened`, `error:<Variant>`...).
    pub outcomes: BTreeMap<String, u64>,
    pub findings: Vec<Finding>,
    /// Findings at a place already reported (their inputs are not saved again).
    pub repeated_findings: u64,
}

impl Report {
    /// One block of text for the summary.
    pub fn summary(&self) -> String {
        let t = self.target.map(|t| t.name()).unwrap_or("?");
        let mut s = String::new();
        let _ = writeln!(
            s,
            "target {t}: {} executions in {:.1} s = {:.0}/s; seeds {}, corpus at end {} (kept {} that got further); accepted {} (max score {}); largest single allocation {} B (x{:.2} of its input), largest live growth {} B; slowest execution {:.3} s; findings {} (+{} repeated)",
            self.execs,
            self.secs,
            self.execs as f64 / self.secs.max(1e-9),
            self.seeds,
            self.corpus_end,
            self.kept,
            self.accepted,
            self.max_score,
            self.max_single_alloc,
            self.max_alloc_ratio,
            self.max_live_growth,
            self.slowest.as_secs_f64(),
            self.findings.len(),
            self.repeated_findings,
        );
        if !self.outcomes.is_empty() {
            let o: Vec<String> = self
                .outcomes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(s, "  outcomes: {}", o.join(" "));
        }
        for f in &self.findings {
            let _ = writeln!(
                s,
                "  FINDING {} in {}: {}\n  {}",
                f.kind,
                f.target.name(),
                f.input.display(),
                f.message.lines().take(12).collect::<Vec<_>>().join("\n  ")
            );
        }
        s
    }
}

/// Runs a decoder target over `input`; the score says how far it got.
pub fn exec_decoder(t: Target, input: &[u8]) -> u64 {
    use jocky::testing::decode;
    match t {
        Target::Records => decode::decode_records(input) as u64,
        Target::Payload => match input.split_first() {
            Some((&kind, p)) => decode::decode_payload(kind, p) as u64,
            None => 0,
        },
        Target::Header => decode::decode_file_header(input) as u64,
        Target::Segment => decode::decode_segment_file(input).map_or(0, |n| n as u64 + 1),
        Target::Open => 0,
    }
}

/// The `open` target's input: a write flag byte, then an encoded [`Folder`].
pub fn encode_open_input(folder: &Folder, write: bool) -> Vec<u8> {
    let mut v = vec![write as u8];
    v.extend_from_slice(&folder.encode());
    v
}

/// Runs the `open` target over an encoded input (see [`encode_open_input`]).
pub fn exec_open_input(input: &[u8]) -> Result<folders::OpenOutcome, String> {
    let (&w, rest) = input.split_first().ok_or("empty input")?;
    let folder = Folder::decode(rest).ok_or("not an encoded folder")?;
    folders::open_folder(&folder, w != 0)
}

struct Checker<'a> {
    cfg: &'a Config,
    report: Report,
    places: HashSet<String>,
}

impl Checker<'_> {
    /// Runs `f` as one execution over `input`, checking it; returns its value if
    /// it did not panic.
    fn run<R>(&mut self, input: &[u8], f: impl FnOnce() -> R) -> Option<R> {
        let base = alloc::reset();
        watch::begin(self.cfg.target, input, self.cfg.hang_limit);
        let t0 = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(f));
        let took = t0.elapsed();
        watch::end();
        let (single, peak) = alloc::measured();
        let rep = &mut self.report;
        rep.execs += 1;
        rep.slowest = rep.slowest.max(took);
        rep.max_single_alloc = rep.max_single_alloc.max(single);
        if self.cfg.target.is_decoder() {
            rep.max_alloc_ratio = rep
                .max_alloc_ratio
                .max(single as f64 / input.len().max(1) as f64);
        }
        let growth = peak.saturating_sub(base);
        rep.max_live_growth = rep.max_live_growth.max(growth);
        let panic = watch::take_panic();
        if r.is_err() || panic.is_some() {
            let msg = panic.unwrap_or_else(|| "panic (no message captured)".into());
            self.finding("panic", input, msg);
        }
        if took > self.cfg.hang_limit {
            self.finding("hang", input, format!("took {:.3} s", took.as_secs_f64()));
        }
        if single > MAX_SINGLE_ALLOC {
            self.finding(
                "alloc",
                input,
                format!("a single allocation of {single} bytes"),
            );
        }
        if growth > MAX_LIVE_GROWTH {
            self.finding("alloc", input, format!("live bytes grew by {growth}"));
        }
        r.ok()
    }

    fn finding(&mut self, kind: &'static str, input: &[u8], message: String) {
        // One saved input per place (the panic's location line, or the kind).
        let place = message
            .lines()
            .find(|l| l.contains("panicked at"))
            .map(|l| l.to_string())
            .unwrap_or_else(|| kind.to_string());
        if !self.places.insert(place) {
            self.report.repeated_findings += 1;
            return;
        }
        let t = self.cfg.target;
        let name = format!("{}-{kind}-{:016x}", t.name(), watch::fnv64(input));
        let _ = std::fs::create_dir_all(&self.cfg.findings_dir);
        let path = self.cfg.findings_dir.join(format!("{name}.bin"));
        let _ = std::fs::write(&path, input);
        let _ = std::fs::write(self.cfg.findings_dir.join(format!("{name}.txt")), &message);
        eprintln!(
            "jocky-fuzz: FINDING {kind} in {}: {}\n{message}",
            t.name(),
            path.display()
        );
        self.report.findings.push(Finding {
            kind,
            target: t,
            input: path,
            message,
        });
    }
}

fn prepare(cfg: &Config) {
    watch::set_findings_dir(&cfg.findings_dir);
    watch::install_panic_hook();
    watch::start_watchdog();
}

fn done(cfg: &Config, started: Instant, execs: u64) -> bool {
    if let Some(n) = cfg.iterations {
        if execs >= n {
            return true;
        }
    }
    if let Some(s) = cfg.seconds {
        if started.elapsed().as_secs_f64() >= s {
            return true;
        }
    }
    cfg.iterations.is_none() && cfg.seconds.is_none() && execs >= 10_000
}

struct Entry {
    data: Vec<u8>,
    score: u64,
}

/// Fuzzes a decoder target from the seeds in `cfg.corpus_dir`.
pub fn run_decoder(cfg: &Config) -> std::io::Result<Report> {
    let seeds = corpus::load(&cfg.corpus_dir, cfg.target)?;
    if seeds.is_empty() {
        return Err(std::io::Error::other(format!(
            "no seeds in {}/{} (run `jocky-fuzz gen-corpus`)",
            cfg.corpus_dir.display(),
            cfg.target.name()
        )));
    }
    prepare(cfg);
    let t = cfg.target;
    let mut rng =
        StdRng::seed_from_u64(cfg.seed ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut ck = Checker {
        cfg,
        report: Report {
            target: Some(t),
            seeds: seeds.len(),
            ..Report::default()
        },
        places: HashSet::new(),
    };
    let mut corpus: Vec<Entry> = Vec::new();
    for s in seeds {
        let score = ck.run(&s, || exec_decoder(t, &s)).unwrap_or(0);
        corpus.push(Entry { data: s, score });
    }
    let n_seeds = corpus.len();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let max_len = max_input(t);
    while !done(cfg, started, ck.report.execs) {
        let pi = rng.random_range(0..corpus.len());
        let oi = rng.random_range(0..corpus.len());
        let mut input = corpus[pi].data.clone();
        mutate::mutate(&mut rng, &mut input, &corpus[oi].data, max_len);
        if rng.random_bool(0.5) {
            match t {
                Target::Records => {
                    mutate::fix_record_crcs(&mut input, 0);
                }
                Target::Header => mutate::fix_file_header_crc(&mut input),
                Target::Segment => mutate::fix_segment(&mut input, rng.random_bool(0.5)),
                Target::Payload | Target::Open => {}
            }
        }
        let score = ck.run(&input, || exec_decoder(t, &input)).unwrap_or(0);
        let rep = &mut ck.report;
        if score > 0 {
            rep.accepted += 1;
        }
        rep.max_score = rep.max_score.max(score);
        if score > corpus[pi].score {
            rep.kept += 1;
            let e = Entry { data: input, score };
            if corpus.len() < MAX_CORPUS {
                corpus.push(e);
            } else {
                let k = rng.random_range(n_seeds..MAX_CORPUS);
                corpus[k] = e;
            }
        }
        if cfg.progress && last_progress.elapsed() >= Duration::from_secs(10) {
            last_progress = Instant::now();
            eprintln!(
                "  {}: {} executions, {:.0}/s, corpus {}, findings {}",
                t.name(),
                rep.execs,
                rep.execs as f64 / started.elapsed().as_secs_f64(),
                corpus.len(),
                rep.findings.len()
            );
        }
    }
    ck.report.secs = started.elapsed().as_secs_f64();
    ck.report.corpus_end = corpus.len();
    Ok(ck.report)
}

/// Fuzzes `open` over mutated copies of `folders`.
pub fn run_open(cfg: &Config, folders: &[Folder]) -> Report {
    prepare(cfg);
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x0123_4567_89AB_CDEF);
    let mut ck = Checker {
        cfg,
        report: Report {
            target: Some(Target::Open),
            seeds: folders.len(),
            corpus_end: folders.len(),
            ..Report::default()
        },
        places: HashSet::new(),
    };
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    while !done(cfg, started, ck.report.execs) {
        let fi = rng.random_range(0..folders.len());
        let mut folder = folders[fi].clone();
        let donors: Vec<Folder> = Vec::new();
        // Another folder as a donor now and then (a file from another history).
        let donors = if rng.random_bool(0.05) {
            let mut d = donors;
            d.push(folders[(fi + 1) % folders.len()].clone());
            d
        } else {
            donors
        };
        folders::mutate_folder(&mut rng, &mut folder, &donors);
        let write = rng.random_bool(0.25);
        let input = encode_open_input(&folder, write);
        let r = ck.run(&input, || folders::open_folder(&folder, write));
        let key = |k: &str| format!("{}:{k}", folders[fi].name);
        match r {
            Some(Ok(o)) => {
                ck.report.accepted += 1;
                *outcomes.entry(key("opened")).or_default() += 1;
                if o.verified {
                    *outcomes.entry(key("verified")).or_default() += 1;
                }
                if o.reopened {
                    *outcomes.entry(key("reopened")).or_default() += 1;
                }
                if o.read_errors > 0 {
                    *outcomes.entry(key("read-errors")).or_default() += 1;
                }
            }
            Some(Err(e)) => {
                // A folder that opened, took a write, export and reclaim, and was
                // closed cleanly should open again: keep such inputs to look at
                // (not a finding: no panic, hang or allocation).
                if e.starts_with("reopen:") {
                    let dir = cfg.findings_dir.join("reopen");
                    let _ = std::fs::create_dir_all(&dir);
                    let name = format!(
                        "open-{}-{:016x}.bin",
                        e.replace(':', "-"),
                        watch::fnv64(&input)
                    );
                    let _ = std::fs::write(dir.join(name), &input);
                }
                *outcomes.entry(key(&format!("error:{e}"))).or_default() += 1
            }
            None => {}
        }
        if cfg.progress && last_progress.elapsed() >= Duration::from_secs(10) {
            last_progress = Instant::now();
            let rep = &ck.report;
            eprintln!(
                "  open: {} executions, {:.1}/s, opened {}, findings {}",
                rep.execs,
                rep.execs as f64 / started.elapsed().as_secs_f64(),
                rep.accepted,
                rep.findings.len()
            );
        }
    }
    ck.report.secs = started.elapsed().as_secs_f64();
    ck.report.outcomes = outcomes;
    ck.report
}

/// Runs `f` as one checked execution of `cfg.target` over `input` (as the loops
/// do) and returns its value, if it did not panic, and the findings.
pub fn run_one<R>(cfg: &Config, input: &[u8], f: impl FnOnce() -> R) -> (Option<R>, Vec<Finding>) {
    prepare(cfg);
    let mut ck = Checker {
        cfg,
        report: Report::default(),
        places: HashSet::new(),
    };
    let r = ck.run(input, f);
    (r, ck.report.findings)
}

/// Runs one saved input (a finding) of `target` and says what happened; a panic
/// is not caught (its backtrace shows with `RUST_BACKTRACE=1`).
pub fn repro(target: Target, input: &[u8]) -> String {
    if target.is_decoder() {
        format!("score {}", exec_decoder(target, input))
    } else {
        let r = exec_open_input(input);
        let folder = input.get(1..).and_then(Folder::decode);
        let files = folder
            .map(|f| {
                f.files
                    .iter()
                    .map(|(n, b)| format!("{n} ({} B)", b.len()))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let last = folders::LAST_ERROR
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        format!("{r:?}\nfiles: {files}\nlast error: {last}")
    }
}
