//! CPU per byte written: what the write path costs the indexing threads,
//! apart from the disk. Threads write files through the `Directory` API in
//! 8 KiB writes (tantivy's `BufWriter` size) and terminate them; the process's
//! CPU time (`getrusage`: every thread, jocky's writer thread included; not the
//! kernel's write-back threads) is divided by the bytes written. jocky and
//! `MmapDirectory` in the same run, alternating which goes first.
//!
//! `cargo run --release -p jocky-bench --example append_cpu` (about 30 s; a
//! first round of both sides warms memory up and is not counted).
//! Options: `--rounds N` (3), `--threads N` (2), `--mb N` per thread (1024),
//! `--file-mb N` (64), `--only mmap|jocky` (one side, for a profiler),
//! `--dir PATH` (default: the system's temporary folder; `/dev/shm` takes the
//! disk out, but a tmpfs is no index's home: `fallocate` there allocates and
//! zeroes pages, which jocky's preallocation then pays for).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use jocky::{ExportPolicy, JockyDirectory};
use jocky_bench::procstats;
use tantivy::directory::{MmapDirectory, TerminatingWrite};
use tantivy::Directory;

struct Args {
    rounds: usize,
    threads: usize,
    mb: usize,
    file_mb: usize,
    dir: Option<PathBuf>,
    only: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        rounds: 3,
        threads: 2,
        mb: 1024,
        file_mb: 64,
        dir: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--rounds" => a.rounds = v().parse().expect("--rounds N"),
            "--threads" => a.threads = v().parse().expect("--threads N"),
            "--mb" => a.mb = v().parse().expect("--mb N"),
            "--file-mb" => a.file_mb = v().parse().expect("--file-mb N"),
            "--dir" => a.dir = Some(PathBuf::from(v())),
            "--only" => a.only = Some(v()),
            other => panic!("unknown option {other}"),
        }
    }
    a
}

/// Writes `mb` MB per thread as files of `file_mb` MB; (wall s, CPU s).
fn run(dir: &dyn Directory, a: &Args) -> (f64, f64) {
    let piece = vec![0x5au8; 8 << 10];
    let (t0, c0) = (Instant::now(), procstats::process_cpu_secs());
    std::thread::scope(|s| {
        for t in 0..a.threads {
            let piece = &piece;
            s.spawn(move || {
                let files = a.mb.div_ceil(a.file_mb);
                for f in 0..files {
                    let name = format!("t{t}-f{f}.bin");
                    let mut w = dir.open_write(Path::new(&name)).unwrap();
                    for i in 0..(a.file_mb << 20) / piece.len() {
                        let mut p = piece.clone();
                        p[..8].copy_from_slice(&(i as u64).to_le_bytes());
                        w.write_all(&p).unwrap();
                    }
                    w.terminate().unwrap();
                }
            });
        }
    });
    dir.sync_directory().unwrap();
    (
        t0.elapsed().as_secs_f64(),
        procstats::process_cpu_secs() - c0,
    )
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let a = args();
    let base = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let gb = (a.threads * a.mb) as f64 / 1024.0;
    println!(
        "# cargo run --release -p jocky-bench --example append_cpu -- --rounds {} --threads {} --mb {} --file-mb {}   (in {})",
        a.rounds, a.threads, a.mb, a.file_mb, base.display()
    );
    let names = ["mmap", "jocky"];
    let mut cpu = [Vec::new(), Vec::new()];
    let mut wall = [Vec::new(), Vec::new()];
    // Round 0 is a warm-up, not counted: the first touch of memory the
    // kernel hands to tmpfs and the page cache costs far more than reuse.
    for round in 0..=a.rounds {
        for k in 0..2 {
            let side = (round + k) % 2;
            if a.only.as_deref().is_some_and(|o| o != names[side]) {
                continue;
            }
            let tmp = tempfile::tempdir_in(&base).unwrap();
            let (w, c) = if side == 0 {
                let d = MmapDirectory::open(tmp.path()).unwrap();
                run(&d, &a)
            } else {
                let d = JockyDirectory::builder(tmp.path())
                    .export_policy(ExportPolicy::Manual)
                    .open()
                    .unwrap();
                let r = run(&d, &a);
                drop(d);
                r
            };
            if round == 0 {
                continue;
            }
            println!(
                "round {round} {:<5}: {gb:.1} GiB in {w:.2} s ({:.2} GiB/s), CPU {c:.2} s = {:.3} CPU s per GiB",
                names[side],
                gb / w,
                c / gb
            );
            cpu[side].push(c / gb);
            wall[side].push(gb / w);
        }
    }
    println!("\nmedian [min–max] over {} rounds", a.rounds);
    for side in 0..2 {
        if cpu[side].is_empty() {
            continue;
        }
        let (m, lo, hi) = median(cpu[side].clone());
        let (wm, wlo, whi) = median(wall[side].clone());
        println!(
            "{:<5}: CPU s per GiB {m:.3} [{lo:.3}–{hi:.3}]   GiB/s {wm:.2} [{wlo:.2}–{whi:.2}]",
            names[side]
        );
    }
    if a.only.is_some() {
        return;
    }
    let ratios: Vec<f64> = cpu[1].iter().zip(&cpu[0]).map(|(j, m)| j / m).collect();
    let (m, lo, hi) = median(ratios);
    println!("jocky / mmap CPU per byte: {m:.2} [{lo:.2}–{hi:.2}]");
}
