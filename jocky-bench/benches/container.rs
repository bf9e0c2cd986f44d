//! Container micro-benchmarks (issue 4, benchmark 1): jocky's container beside a
//! plain file on the same disk, in the same run, printed as a markdown table.
//!
//! `cargo bench -p jocky-bench --bench container` (under 2 minutes on a 2-core VM, most of it
//! jocky's 128 B append), `cargo bench -p jocky-bench --bench container -- --quick` (seconds). Options: `--rounds N` (default 3, 1 with `--quick`),
//! `--dir PATH` (where the files go; default a temporary folder under cargo's
//! target dir), `--fadvise` (make the cache cold with `posix_fadvise` even as root).
//!
//! For each record size S (128 B, 8 KiB, 1 MiB) and each round:
//!
//! - **append**: `total` bytes as S-byte records, durable at the end.
//!   - `O_DIRECT dd`: the disk's limit — 1 MiB aligned blocks written with
//!     `O_DIRECT`, then `fdatasync` (its ops/s counts 1 MiB blocks). Skipped where
//!     the file system refuses `O_DIRECT`.
//!   - `write+fdatasync`: a plain file, one `write` per record, one `fdatasync`.
//!   - jocky: a [`JockyDirectory`] opened with `write_buffer(S, S)` (so every S
//!     bytes written become one container record) and `ExportPolicy::Manual`
//!     (nothing in the background); `open_write`, `write_all` per record,
//!     `terminate`, `sync_directory`. Opening the directory is not timed.
//! - **stream-read cold**: the page cache is dropped (`echo 3 >
//!   /proc/sys/vm/drop_caches` as root, else `posix_fadvise(DONTNEED)` on every
//!   file, as the output says), then the file is read front to back in S-byte
//!   reads: `pread` on the plain file, `FileHandle::read_bytes` on jocky's handle
//!   (which serves slices of its container mapping). jocky's directory stays open
//!   across the drop: it wrote with `pwrite`, so its pages are not mapped yet and
//!   can be dropped (reopening instead would re-read everything in recovery).
//! - **stream-read warm**: the same again, straight after.
//! - **random read**: N warm S-byte reads at S-aligned offsets (fixed seed, the
//!   same offsets for both systems).
//!
//! Files are removed and `sync`ed between measurements (on a file system mounted
//! with `discard`, a removal's discards would otherwise be paid by the next
//! `fdatasync`). Every byte read is summed (`black_box`), so a zero-copy read is
//! not free.
//! ops/s and MB/s (10^6 bytes/s, of record bytes, not container overhead) are
//! from the median round; the spread is the min–max of MB/s over the rounds.
//! Ratios: append against `O_DIRECT dd` and `write+fdatasync`, reads against
//! plain `pread`. The target for sequential append is 80% or more of `O_DIRECT dd`.

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jocky::{ExportPolicy, JockyDirectory, WriteMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tantivy::directory::TerminatingWrite;
use tantivy::Directory;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// Block size of the `dd`-style `O_DIRECT` baseline.
const DD_BLOCK: usize = MIB;
/// The virtual file jocky writes.
const FILE: &str = "records.bin";

const DD: &str = "O_DIRECT dd, 1 MiB blocks";
const PLAIN_WRITE: &str = "write+fdatasync";
const PLAIN_READ: &str = "plain pread";

const APPEND: &str = "append";
const COLD: &str = "stream-read cold";
const WARM: &str = "stream-read warm";
const RANDOM: &str = "random read";
/// The order of the table's rows within one record size.
const OPS: [&str; 4] = [APPEND, COLD, WARM, RANDOM];

/// The jocky configurations under test, each with its own folder `dir/<name>`.
/// Records of `record` bytes: every `record` bytes written become one record.
fn jocky_configs(dir: &Path, record: usize) -> Vec<(&'static str, jocky::Builder)> {
    let base = |name: &str| {
        JockyDirectory::builder(dir.join(name))
            .write_buffer(record, record)
            .export_policy(ExportPolicy::Manual)
    };
    vec![
        (
            "jocky buffered",
            base("buffered").write_mode(WriteMode::Buffered),
        ),
        ("jocky direct", base("direct").write_mode(WriteMode::Direct)),
        ("jocky inline", base("inline").write_mode(WriteMode::Inline)),
    ]
}

struct Case {
    record: usize,
    /// Bytes written per round.
    total: usize,
    random_reads: usize,
}

fn cases(quick: bool) -> Vec<Case> {
    let (small, big, reads, big_reads) = if quick {
        (4 * MIB, 32 * MIB, 20_000, 500)
    } else {
        (32 * MIB, 256 * MIB, 100_000, 2_000)
    };
    vec![
        Case {
            record: 128,
            total: small,
            random_reads: reads,
        },
        Case {
            record: 8 * KIB,
            total: big,
            random_reads: reads,
        },
        Case {
            record: MIB,
            total: big,
            random_reads: big_reads,
        },
    ]
}

struct Args {
    rounds: usize,
    quick: bool,
    dir: Option<PathBuf>,
    fadvise: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut rounds = None;
    let mut quick = false;
    let mut dir = None;
    let mut fadvise = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--fadvise" => fadvise = true,
            "--rounds" => {
                let v = it.next().ok_or("--rounds needs a number")?;
                rounds = Some(v.parse().map_err(|_| format!("bad --rounds {v:?}"))?);
            }
            "--dir" => dir = Some(PathBuf::from(it.next().ok_or("--dir needs a path")?)),
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            "-h" | "--help" => {
                return Err(
                    "usage: cargo bench -p jocky-bench --bench container -- [--quick] [--rounds N] [--dir PATH] [--fadvise]"
                        .into(),
                )
            }
            other => eprintln!("ignoring argument {other:?}"),
        }
    }
    let rounds = rounds.unwrap_or(if quick { 1 } else { 3 });
    if rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    Ok(Args {
        rounds,
        quick,
        dir,
        fadvise,
    })
}

/// One row of the table: every round's time for one (operation, size, system).
struct Row {
    op: &'static str,
    record: usize,
    system: String,
    /// Bytes and operations per round.
    bytes: u64,
    ops: u64,
    times: Vec<Duration>,
}

impl Row {
    fn median(&self) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        t[t.len() / 2]
    }
    fn mb_s(&self, t: Duration) -> f64 {
        self.bytes as f64 / t.as_secs_f64() / 1e6
    }
}

#[derive(Default)]
struct Results {
    rows: Vec<Row>,
    /// How the last cache drop was done.
    cold: Option<Cold>,
    /// Why the dd rows are missing, if they are.
    dd_note: Option<String>,
}

impl Results {
    fn add(
        &mut self,
        op: &'static str,
        record: usize,
        system: &str,
        bytes: u64,
        ops: u64,
        t: Duration,
    ) {
        match self
            .rows
            .iter_mut()
            .find(|r| r.op == op && r.record == record && r.system == system)
        {
            Some(r) => r.times.push(t),
            None => self.rows.push(Row {
                op,
                record,
                system: system.to_string(),
                bytes,
                ops,
                times: vec![t],
            }),
        }
    }

    fn median_mb_s(&self, op: &str, record: usize, system: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.op == op && r.record == record && r.system == system)
            .map(|r| r.mb_s(r.median()))
    }
}

/// Sums the bytes (as little-endian words) so that every byte read is touched.
fn touch(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let mut sum = 0u64;
    for w in &mut words {
        sum = sum.wrapping_add(u64::from_le_bytes(w.try_into().unwrap()));
    }
    for b in words.remainder() {
        sum = sum.wrapping_add(u64::from(*b));
    }
    sum
}

/// Bytes to write: record `i` is a slice of this at a varying offset.
fn pattern() -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(7);
    let mut p = vec![0u8; 2 * MIB + 4 * KIB];
    rng.fill(&mut p[..]);
    p
}

fn record_at(pattern: &[u8], i: usize, record: usize) -> &[u8] {
    let off = (i * 4104) % (pattern.len() - record + 1);
    &pattern[off..off + record]
}

// ---- plain-file baselines ----

/// `dd`-style sequential write with `O_DIRECT`; `None` if the file system refuses it.
fn dd_write(path: &Path, total: usize, pattern: &[u8]) -> io::Result<Option<Duration>> {
    let mut raw = vec![0u8; DD_BLOCK + 4096];
    let start = raw.as_ptr().align_offset(4096);
    let block = &mut raw[start..start + DD_BLOCK];
    block.copy_from_slice(&pattern[..DD_BLOCK]);
    let t = Instant::now();
    let file = match OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut w = &file;
    for _ in 0..total / DD_BLOCK {
        w.write_all(block)?;
    }
    file.sync_data()?;
    Ok(Some(t.elapsed()))
}

fn plain_write(path: &Path, record: usize, total: usize, pattern: &[u8]) -> io::Result<Duration> {
    let t = Instant::now();
    let mut file = File::create(path)?;
    for i in 0..total / record {
        file.write_all(record_at(pattern, i, record))?;
    }
    file.sync_data()?;
    Ok(t.elapsed())
}

fn plain_stream(path: &Path, record: usize) -> io::Result<Duration> {
    let mut buf = vec![0u8; record];
    let t = Instant::now();
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut sum = 0u64;
    let mut off = 0;
    while off < len {
        let n = record.min((len - off) as usize);
        file.read_exact_at(&mut buf[..n], off)?;
        sum = sum.wrapping_add(touch(&buf[..n]));
        off += n as u64;
    }
    black_box(sum);
    Ok(t.elapsed())
}

fn plain_random(path: &Path, record: usize, offsets: &[u64]) -> io::Result<Duration> {
    let file = File::open(path)?;
    let mut buf = vec![0u8; record];
    let t = Instant::now();
    let mut sum = 0u64;
    for &off in offsets {
        file.read_exact_at(&mut buf, off)?;
        sum = sum.wrapping_add(touch(&buf));
    }
    black_box(sum);
    Ok(t.elapsed())
}

// ---- jocky ----

fn jocky_append(
    dir: &JockyDirectory,
    record: usize,
    total: usize,
    pattern: &[u8],
) -> io::Result<Duration> {
    let t = Instant::now();
    let mut w = dir.open_write(Path::new(FILE)).map_err(io::Error::other)?;
    for i in 0..total / record {
        w.write_all(record_at(pattern, i, record))?;
    }
    w.terminate()?;
    dir.sync_directory()?;
    Ok(t.elapsed())
}

fn jocky_stream(dir: &JockyDirectory, record: usize) -> io::Result<Duration> {
    let t = Instant::now();
    let handle = dir
        .get_file_handle(Path::new(FILE))
        .map_err(io::Error::other)?;
    let len = handle.len();
    let mut sum = 0u64;
    let mut off = 0;
    while off < len {
        let end = (off + record).min(len);
        sum = sum.wrapping_add(touch(handle.read_bytes(off..end)?.as_slice()));
        off = end;
    }
    black_box(sum);
    Ok(t.elapsed())
}

fn jocky_random(dir: &JockyDirectory, record: usize, offsets: &[u64]) -> io::Result<Duration> {
    let handle = dir
        .get_file_handle(Path::new(FILE))
        .map_err(io::Error::other)?;
    let t = Instant::now();
    let mut sum = 0u64;
    for &off in offsets {
        let off = off as usize;
        sum = sum.wrapping_add(touch(handle.read_bytes(off..off + record)?.as_slice()));
    }
    black_box(sum);
    Ok(t.elapsed())
}

// ---- cold cache ----

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cold {
    DropCaches,
    Fadvise,
}

/// Drops the page cache: all of it if we may, else the pages of every file under
/// `paths` (pages mapped by a process stay either way).
fn drop_page_cache(paths: &[&Path], force_fadvise: bool) -> io::Result<Cold> {
    settle();
    if !force_fadvise && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok() {
        return Ok(Cold::DropCaches);
    }
    for p in paths {
        fadvise_tree(p)?;
    }
    Ok(Cold::Fadvise)
}

fn fadvise_tree(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            fadvise_tree(&entry?.path())?;
        }
        return Ok(());
    }
    let file = File::open(path)?;
    file.sync_data()?;
    fadvise_dontneed(&file)
}

fn fadvise_dontneed(file: &File) -> io::Result<()> {
    // SAFETY: posix_fadvise on a descriptor that `file` owns and keeps open for
    // the call; plain integer arguments, no memory is handed to the kernel.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

// ---- one round of one case ----

fn run_round(
    case: &Case,
    round: usize,
    base: &Path,
    args: &Args,
    pattern: &[u8],
    res: &mut Results,
) -> Result<(), Box<dyn std::error::Error>> {
    let Case {
        record,
        total,
        random_reads,
    } = *case;
    let records = (total / record) as u64;
    let bytes = total as u64;
    let folder = base.join(format!("{record}-{round}"));
    std::fs::create_dir_all(&folder)?;

    // append
    let dd_path = folder.join("dd.bin");
    match dd_write(&dd_path, total, pattern)? {
        Some(t) => res.add(APPEND, record, DD, bytes, (total / DD_BLOCK) as u64, t),
        None => {
            res.dd_note = Some(format!(
                "O_DIRECT open failed with EINVAL in {}: the dd rows are skipped",
                folder.display()
            ))
        }
    }
    std::fs::remove_file(&dd_path).or_else(ignore_missing)?;
    settle();

    let plain = folder.join("plain.bin");
    let t = plain_write(&plain, record, total, pattern)?;
    res.add(APPEND, record, PLAIN_WRITE, bytes, records, t);

    let mut dirs = Vec::new();
    for (name, builder) in jocky_configs(&folder, record) {
        let dir = builder.open()?;
        let t = jocky_append(&dir, record, total, pattern)?;
        res.add(APPEND, record, name, bytes, records, t);
        dirs.push((name, dir));
    }

    // Reads, one system at a time (a cache drop drops every system's pages):
    // stream-read cold, stream-read warm, random read (warm).
    let mut rng = StdRng::seed_from_u64(42 + round as u64);
    let offsets: Vec<u64> = (0..random_reads)
        .map(|_| rng.random_range(0..records) * record as u64)
        .collect();
    let rbytes = (random_reads * record) as u64;
    let n = random_reads as u64;

    res.cold = Some(drop_page_cache(&[&folder], args.fadvise)?);
    let t = plain_stream(&plain, record)?;
    res.add(COLD, record, PLAIN_READ, bytes, records, t);
    let t = plain_stream(&plain, record)?;
    res.add(WARM, record, PLAIN_READ, bytes, records, t);
    let t = plain_random(&plain, record, &offsets)?;
    res.add(RANDOM, record, PLAIN_READ, rbytes, n, t);

    for (name, dir) in &dirs {
        res.cold = Some(drop_page_cache(&[&folder], args.fadvise)?);
        let t = jocky_stream(dir, record)?;
        res.add(COLD, record, name, bytes, records, t);
        let t = jocky_stream(dir, record)?;
        res.add(WARM, record, name, bytes, records, t);
        let t = jocky_random(dir, record, &offsets)?;
        res.add(RANDOM, record, name, rbytes, n, t);
    }

    drop(dirs);
    std::fs::remove_dir_all(&folder)?;
    settle();
    Ok(())
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// Lets the file system finish with removed files (`sync` commits the journal,
/// and with it the discards of a `discard` mount), so that the next timed
/// `fdatasync` does not pay for them.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

// ---- output ----

fn size_name(bytes: usize) -> String {
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} B")
    }
}

fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ratio(res: &Results, row: &Row) -> String {
    let mine = row.mb_s(row.median());
    let against = |system: &str, label: &str| {
        res.median_mb_s(row.op, row.record, system)
            .map(|b| format!("{}× {label}", ratio_digits(mine / b)))
    };
    let parts: Vec<String> = match (row.op, row.system.as_str()) {
        (APPEND, DD) => vec!["disk limit".into()],
        (APPEND, PLAIN_WRITE) => against(DD, "dd").into_iter().collect(),
        (APPEND, _) => [against(DD, "dd"), against(PLAIN_WRITE, "write")]
            .into_iter()
            .flatten()
            .collect(),
        (_, PLAIN_READ) => vec!["baseline".into()],
        _ => against(PLAIN_READ, "pread").into_iter().collect(),
    };
    parts.join(", ")
}

/// Two decimals, three below 0.1 (so that 0.004 does not print as 0.00).
fn ratio_digits(r: f64) -> String {
    if r < 0.1 {
        format!("{r:.3}")
    } else {
        format!("{r:.2}")
    }
}

fn print_table(res: &Results, rounds: usize) {
    println!(
        "| operation | record | system | ops/s | MB/s | MB/s min–max, {rounds} round(s) | ratio |"
    );
    println!("|---|---:|---|---:|---:|---:|---|");
    // By size, then operation; systems in the order they were measured.
    let mut rows: Vec<&Row> = res.rows.iter().collect();
    rows.sort_by_key(|r| (r.record, OPS.iter().position(|op| *op == r.op)));
    for row in rows {
        let med = row.median();
        let fastest = row.times.iter().min().copied().unwrap_or(med);
        let slowest = row.times.iter().max().copied().unwrap_or(med);
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.1}–{:.1} | {} |",
            row.op,
            size_name(row.record),
            row.system,
            thousands(row.ops as f64 / med.as_secs_f64()),
            row.mb_s(med),
            row.mb_s(slowest),
            row.mb_s(fastest),
            ratio(res, row),
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let tmp = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::Builder::new()
                .prefix("container-bench")
                .tempdir_in(d)?
        }
        None => tempfile::Builder::new()
            .prefix("container-bench")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))?,
    };
    let cases = cases(args.quick);
    let pattern = pattern();

    println!("# jocky container micro-benchmarks");
    println!();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "- round(s): {}{}; files in {}; kernel {}; {} CPUs",
        args.rounds,
        if args.quick { " (--quick)" } else { "" },
        tmp.path().display(),
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    for c in &cases {
        println!(
            "- {} records: {} written per round, {} random reads",
            size_name(c.record),
            size_name(c.total),
            c.random_reads
        );
    }

    let started = Instant::now();
    let mut res = Results::default();
    for case in &cases {
        for round in 0..args.rounds {
            eprintln!(
                "[{:>5.1}s] {} records, round {}/{}",
                started.elapsed().as_secs_f64(),
                size_name(case.record),
                round + 1,
                args.rounds
            );
            run_round(case, round, tmp.path(), &args, &pattern, &mut res)?;
        }
    }

    match res.cold {
        Some(Cold::DropCaches) => {
            println!("- cold: page cache dropped with `echo 3 > /proc/sys/vm/drop_caches`")
        }
        Some(Cold::Fadvise) => println!(
            "- cold: NOT root (or --fadvise): pages dropped with posix_fadvise(DONTNEED) on the benchmark's files only"
        ),
        None => {}
    }
    if let Some(note) = &res.dd_note {
        println!("- {note}");
    }
    println!(
        "- MB/s = 10^6 bytes of records per second; ops/s = records per second (dd: 1 MiB blocks); median of the rounds"
    );
    println!();
    print_table(&res, args.rounds);
    println!();
    for case in &cases {
        for (name, _) in jocky_configs(tmp.path(), case.record) {
            let dd = res.median_mb_s(APPEND, case.record, DD);
            let mine = res.median_mb_s(APPEND, case.record, name);
            if let (Some(dd), Some(mine)) = (dd, mine) {
                let r = mine / dd;
                println!(
                    "- target (append ≥ 80% of O_DIRECT dd), {} {}: {}% — {}",
                    size_name(case.record),
                    name,
                    if r < 0.1 {
                        format!("{:.2}", r * 100.0)
                    } else {
                        format!("{:.0}", r * 100.0)
                    },
                    if r >= 0.8 { "met" } else { "not met" }
                );
            }
        }
    }
    println!("- total run time {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
