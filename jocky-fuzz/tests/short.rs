//! The short fuzz run CI does (through `cargo test --release` at the root): every
//! target for a few thousand executions from the committed seed corpus, with the
//! counting allocator installed; no finding may come up. One test, so that the
//! process-wide allocator counters, watchdog and panic hook see one execution at
//! a time.

use std::path::PathBuf;

use jocky_fuzz::runner::{self, Config};
use jocky_fuzz::{alloc, folders, Target};

#[global_allocator]
static ALLOC: alloc::CountingAlloc = alloc::CountingAlloc;

fn findings_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("jocky-fuzz-findings")
}

fn config(t: Target, iterations: u64) -> Config {
    let mut c = Config::new(t);
    c.iterations = Some(iterations);
    c.seed = 0x5EED;
    c.findings_dir = findings_dir();
    c
}

#[test]
fn short_run_of_every_target_finds_nothing() {
    alloc::mark_installed();
    let started = std::time::Instant::now();

    // The machinery itself: a panic is caught and saved, an allocation over the
    // bound is reported.
    let cfg = config(Target::Records, 1);
    let (r, f) = runner::run_one(&cfg, b"boom", || -> u32 { panic!("planted panic") });
    assert!(r.is_none());
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].kind, "panic");
    assert!(f[0].message.contains("planted panic"), "{}", f[0].message);
    assert_eq!(std::fs::read(&f[0].input).unwrap(), b"boom");
    let (r, f) = runner::run_one(&cfg, b"big", || {
        let v = vec![1u8; runner::MAX_SINGLE_ALLOC + 1];
        std::hint::black_box(&v);
        v.len()
    });
    assert_eq!(r, Some(runner::MAX_SINGLE_ALLOC + 1));
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].kind, "alloc");

    let mut total = 0;
    for (t, n) in [
        (Target::Records, 60_000),
        (Target::Payload, 60_000),
        (Target::Header, 60_000),
        (Target::Segment, 30_000),
    ] {
        let report = runner::run_decoder(&config(t, n)).unwrap();
        eprint!("{}", report.summary());
        assert_eq!(report.execs, n);
        assert!(report.findings.is_empty(), "{}", report.summary());
        assert_eq!(report.repeated_findings, 0);
        assert!(report.accepted > 0, "{}", report.summary());
        total += report.execs;
    }
    let folders = folders::build_all();
    let report = runner::run_open(&config(Target::Open, 3_000), &folders);
    eprint!("{}", report.summary());
    assert_eq!(report.execs, 3_000);
    assert!(report.findings.is_empty(), "{}", report.summary());
    assert!(
        report.accepted > 0,
        "no mutated folder opened: {}",
        report.summary()
    );
    eprintln!(
        "{total} decoder executions and 3000 opens in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The `open` target's inputs (what a finding saves) decode to the folder,
    // and the unmutated folders open cleanly.
    for f in &folders {
        let input = runner::encode_open_input(f, false);
        let out = runner::exec_open_input(&input).unwrap();
        assert!(
            out.opened && out.verified && out.read_errors == 0,
            "{}: {out:?}",
            f.name
        );
        assert!(out.files_read > 0, "{}: {out:?}", f.name);
    }
}

/// The folders the long run found that opened, took a write and an export,
/// and then would not open again (a replayed `Reclaim` with a wrong sequence
/// number counted in the census; an export number with more than ten digits
/// accepted): now refused on the first open, before anything changes.
#[test]
fn the_long_runs_reopen_findings_stay_fixed() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("findings/reopen");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let input = std::fs::read(&path).unwrap();
        let outcome = runner::repro(Target::Open, &input);
        assert!(
            !outcome.contains("reopen:"),
            "{}: {outcome}",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 3, "{n} reproducers");
}

/// Inputs that once made `open()` hang stay fixed: a snapshot image (its CRC
/// made to match) placing a file at an offset near 2^64 made every read of it
/// wait for bytes that would never be written.
#[test]
fn the_hang_findings_stay_fixed() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("findings/hang");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let input = std::fs::read(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(runner::repro(Target::Open, &input));
        });
        let outcome = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{}: open still hangs", path.display()));
        assert!(
            outcome.contains("snapshot"),
            "{}: {outcome}",
            path.display()
        );
    }
}
