//! `stress`: a db_stress-like tool for jocky's [`Store`].
//!
//! The parent process spawns this same binary as a child in worker mode
//! (`--child`) on a store folder, lets it run for a random time, SIGKILLs it,
//! reopens the folder itself and checks that every acknowledged commit is there
//! and nothing unacknowledged is, then spawns the next child; it loops until
//! `--duration` is over, then lets one last child close cleanly and verifies
//! again. `--no-kill` runs the workers in this process instead, for the whole
//! duration, and verifies once at the end.
//!
//! The child runs `--threads` writer threads, each owning a disjoint set of the
//! `--tenants` tenants (tenant `t` belongs to thread `t % threads`), plus a
//! reader thread. Writers pick a random owned tenant and add documents with
//! unique ids, delete documents by id, commit, roll back, merge, collect
//! garbage, export, reclaim, and remove and recreate the tenant. Before each
//! commit (or removal) a thread appends an *intent* line to its own ack file
//! (outside the store folder) and fsyncs it; after the commit returned, an
//! *ack* line, fsynced too.
//!
//! Layout of the work folder: `store/` (the jocky store) and `acks/` beside it
//! (`g<generation>-t<thread>.log`, and `g<generation>.ops` with the child's
//! operation count).
//!
//! ```text
//! cargo run --release -p jocky-bench --bin stress -- --duration 120s
//! target/release/stress --duration 30m --threads 4 --tenants 16 --kill-interval-ms 200..3000
//! ```
//!
//! Exit status: 0 when nothing was lost, nothing phantom appeared and no error
//! happened; 1 otherwise (the work folder is then kept and its path printed).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use clap::Parser;
use jocky::{ExportPolicy, Store, SyncPolicy, WriteMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tantivy::collector::Count;
use tantivy::query::{AllQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, FAST, INDEXED, TEXT};
use tantivy::{doc, Index, IndexWriter, ReloadPolicy, TantivyError, Term};

type Res<T> = std::result::Result<T, String>;

fn err<E: std::fmt::Display>(ctx: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{ctx}: {e}")
}

#[derive(Parser, Debug, Clone)]
#[command(
    about = "Stress jocky's Store: many threads and tenants, random operations, SIGKILL loop, verification of every acknowledged commit"
)]
struct Args {
    /// How long to run (`120s`, `30m`, `1h`, `500ms`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Writer threads in the child.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Tenants (at most 4096).
    #[arg(long, default_value_t = 16)]
    tenants: usize,
    /// Work folder (the store goes in `DIR/store`, the ack files in `DIR/acks`).
    /// Default: a new folder under the temp dir, removed after a clean run.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seed of every random choice (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// How long a child runs before it is killed, `MIN..MAX` milliseconds.
    #[arg(long, default_value = "200..3000", value_parser = parse_range)]
    kill_interval_ms: (u64, u64),
    /// Run the workers in this process for the whole duration, no kills.
    #[arg(long)]
    no_kill: bool,
    /// Let every child pick its own container file size (1, 2, 8 or 64 MiB)
    /// instead of one size for the whole run. Reopening a store with another
    /// size than the one its newest container file was created with is a known
    /// library bug (appends run past the file's capacity), hence off by default.
    #[arg(long)]
    vary_file_size: bool,
    /// Do not stop at the first loss or error: count them, copy the evidence
    /// (store and ack files of the failing generation, the first 5 times) to
    /// `/tmp/stress-findings/`, and go on.
    #[arg(long)]
    keep_going: bool,
    /// Also merge while deletes are pending (uncommitted). Off by default: such
    /// a merge applies the pending deletes to the merged segment and publishes
    /// it (an unacknowledged delete becomes visible after a kill), and a delete
    /// committed after it can come back; seen with tantivy 0.27, see the run
    /// notes. Without this flag a merge commits pending work first.
    #[arg(long)]
    merge_with_pending: bool,
    /// Control run: every tenant is a tantivy `MmapDirectory` in
    /// `DIR/mmap/<tenant>` instead of a tenant of the jocky store (same
    /// operations, same checks), to tell tantivy's behaviour from jocky's.
    #[arg(long)]
    mmap_control: bool,
    /// Keep the work folder even after a clean run.
    #[arg(long)]
    keep: bool,
    /// Worker mode (internal: spawned by the parent).
    #[arg(long, hide = true)]
    child: bool,
    /// Worker mode: the generation (internal).
    #[arg(long, hide = true, default_value_t = 0)]
    generation: u64,
    /// Worker mode: stop cleanly after this many milliseconds (internal).
    #[arg(long, hide = true)]
    run_for_ms: Option<u64>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (s, 1000)
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|e| format!("bad duration {s:?}: {e}"))?;
    Ok(Duration::from_millis(n * mult_ms))
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("expected MIN..MAX, got {s:?}"))?;
    let a: u64 = a.trim().parse().map_err(|e| format!("{s:?}: {e}"))?;
    let b: u64 = b.trim().parse().map_err(|e| format!("{s:?}: {e}"))?;
    if a == 0 || a > b {
        return Err(format!("{s:?}: need 0 < MIN <= MAX"));
    }
    Ok((a, b))
}

// ---------------------------------------------------------------------------
// Shared pieces: schema, ids, configuration of a generation, reading an index.

const MAX_TENANTS: usize = 4096;
const TENANT_SHIFT: u32 = 28;
const GEN_SHIFT: u32 = 40;
/// Above this many live documents a tenant's writer mostly deletes.
const SOFT_CAP: usize = 2000;

fn tenant_name(t: usize) -> String {
    format!("tenant-{t:04}")
}

fn id_tenant(id: u64) -> usize {
    ((id >> TENANT_SHIFT) & 0xFFF) as usize
}

fn make_id(generation: u64, tenant: usize, counter: u64) -> u64 {
    ((generation + 1) << GEN_SHIFT) | ((tenant as u64) << TENANT_SHIFT) | counter
}

struct Fields {
    schema: Schema,
    id: Field,
    body: Field,
}

fn fields() -> Fields {
    let mut b = Schema::builder();
    let id = b.add_u64_field("id", INDEXED | FAST);
    let body = b.add_text_field("body", TEXT);
    Fields {
        schema: b.build(),
        id,
        body,
    }
}

/// The options of one child, derived from the seed and the generation.
#[derive(Debug, Clone, Copy)]
struct GenConfig {
    export: ExportPolicy,
    sync: SyncPolicy,
    write_mode: WriteMode,
    container_file_size: u64,
}

fn gen_config(seed: u64, generation: u64, vary_file_size: bool) -> GenConfig {
    let sizes = [1u64 << 20, 2 << 20, 8 << 20, 64 << 20];
    let run_size = sizes[(seed % 4) as usize];
    let mut rng = StdRng::seed_from_u64(seed ^ generation.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let export = match rng.random_range(0..4) {
        0 => ExportPolicy::Manual,
        1 => ExportPolicy::OnCommit {
            min_segment_bytes: 0,
        },
        2 => ExportPolicy::WhenQuiet {
            min_segment_bytes: 0,
            quiet: Duration::from_millis(rng.random_range(50..500)),
        },
        _ => ExportPolicy::default(),
    };
    // Only policies under which a returned commit is durable.
    let sync = if rng.random_bool(0.5) {
        SyncPolicy::OnRequest
    } else {
        SyncPolicy::OnCommit
    };
    let write_mode = match rng.random_range(0..3) {
        0 => WriteMode::Direct,
        1 => WriteMode::Buffered,
        _ => WriteMode::Inline,
    };
    let pick = sizes[rng.random_range(0..4)];
    let container_file_size = if vary_file_size { pick } else { run_size };
    GenConfig {
        export,
        sync,
        write_mode,
        container_file_size,
    }
}

/// Set in a `--mmap-control` run: the folder of the tenants' `MmapDirectory`s.
static CONTROL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The directory of tenant `t`: a tenant of the store, or in a control run
/// an `MmapDirectory` of its own.
fn tenant_dir(store: &Store, t: usize) -> Res<Box<dyn tantivy::Directory>> {
    match CONTROL.get() {
        Some(root) => {
            let path = root.join(tenant_name(t));
            std::fs::create_dir_all(&path).map_err(err("create tenant folder"))?;
            Ok(Box::new(
                tantivy::directory::MmapDirectory::open(&path).map_err(err("MmapDirectory"))?,
            ))
        }
        None => Ok(Box::new(
            store.directory(&tenant_name(t)).map_err(err("directory"))?,
        )),
    }
}

fn remove_tenant(store: &Store, t: usize) -> Res<()> {
    match CONTROL.get() {
        Some(root) => {
            std::fs::remove_dir_all(root.join(tenant_name(t))).map_err(err("remove tenant folder"))
        }
        None => store
            .remove_tenant(&tenant_name(t))
            .map(|_| ())
            .map_err(err("remove_tenant")),
    }
}

fn open_store(store_dir: &Path, cfg: &GenConfig) -> Res<Store> {
    Store::builder(store_dir)
        .container_file_size(cfg.container_file_size)
        .export_policy(cfg.export)
        .sync_policy(cfg.sync)
        .write_mode(cfg.write_mode)
        .open_store()
        .map_err(err("open store"))
}

/// The live ids of an index, read through the `id` fast field of every alive
/// document; checks that searching all documents counts the same, and that no
/// id appears twice.
fn live_ids(index: &Index) -> Res<BTreeSet<u64>> {
    live_ids_searcher(index).map(|(ids, _)| ids)
}

/// [`live_ids`], with the searcher they were read from.
fn live_ids_searcher(index: &Index) -> Res<(BTreeSet<u64>, tantivy::Searcher)> {
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(err("open reader"))?;
    reader.reload().map_err(err("reload"))?;
    let searcher = reader.searcher();
    let mut ids = BTreeSet::new();
    let mut alive = 0u64;
    for seg in searcher.segment_readers() {
        let col = seg.fast_fields().u64("id").map_err(err("fast field id"))?;
        for doc in seg.doc_ids_alive() {
            alive += 1;
            let id = col
                .first(doc)
                .ok_or_else(|| format!("doc {doc} of segment {:?} has no id", seg.segment_id()))?;
            if !ids.insert(id) {
                return Err(format!("id {id:#x} appears twice"));
            }
        }
    }
    let counted = searcher
        .search(&AllQuery, &Count)
        .map_err(err("search all"))? as u64;
    if counted != alive || searcher.num_docs() != alive {
        return Err(format!(
            "doc counts disagree: {alive} alive docs, AllQuery counts {counted}, num_docs {}",
            searcher.num_docs()
        ));
    }
    Ok((ids, searcher))
}

/// How many documents a term query on `id` finds.
fn count_id(index: &Index, fields: &Fields, id: u64) -> Res<usize> {
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(err("open reader"))?;
    let q = TermQuery::new(
        Term::from_field_u64(fields.id, id),
        IndexRecordOption::Basic,
    );
    reader
        .searcher()
        .search(&q, &Count)
        .map_err(err("term query"))
}

// ---------------------------------------------------------------------------
// The ack files.

/// One fsynced log of intents and acknowledgements, written by one thread.
struct AckLog {
    file: File,
}

impl AckLog {
    fn create(path: &Path) -> Res<AckLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err("create ack file"))?;
        Ok(AckLog { file })
    }

    fn line(&mut self, line: &str) -> Res<()> {
        self.file
            .write_all(line.as_bytes())
            .map_err(err("write ack file"))?;
        self.file.sync_data().map_err(err("fsync ack file"))
    }

    fn intent(&mut self, tenant: usize, seq: u64, adds: &[u64], dels: &[u64]) -> Res<()> {
        let join = |v: &[u64]| {
            v.iter()
                .map(|x| format!("{x:x}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        self.line(&format!(
            "I {tenant} {seq} +{} -{}\n",
            join(adds),
            join(dels)
        ))
    }

    /// An operation note for post-mortems (not fsynced; the parser skips it).
    fn note(&mut self, line: &str) {
        let _ = self.file.write_all(format!("# {line}\n").as_bytes());
    }

    fn remove_intent(&mut self, tenant: usize, seq: u64) -> Res<()> {
        self.line(&format!("X {tenant} {seq}\n"))
    }

    fn ack(&mut self, tenant: usize, seq: u64, opstamp: u64, adds: usize, dels: usize) -> Res<()> {
        self.line(&format!("A {tenant} {seq} {opstamp} {adds} {dels}\n"))
    }
}

#[derive(Debug, Clone)]
enum Event {
    Commit {
        seq: u64,
        adds: Vec<u64>,
        dels: Vec<u64>,
    },
    Remove {
        seq: u64,
    },
}

impl Event {
    fn seq(&self) -> u64 {
        match self {
            Event::Commit { seq, .. } | Event::Remove { seq } => *seq,
        }
    }

    fn apply(&self, live: &mut BTreeSet<u64>) {
        match self {
            Event::Commit { adds, dels, .. } => {
                for d in dels {
                    live.remove(d);
                }
                live.extend(adds.iter().copied());
            }
            Event::Remove { .. } => live.clear(),
        }
    }
}

/// What the ack files of one generation say about one tenant: the acknowledged
/// events in order, and the one that was in flight (intent without ack), if any.
#[derive(Debug, Default)]
struct TenantLog {
    acked: Vec<Event>,
    in_flight: Option<Event>,
}

fn parse_ids(s: &str) -> Res<Vec<u64>> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|x| u64::from_str_radix(x, 16).map_err(|e| format!("bad id {x:?}: {e}")))
        .collect()
}

/// Reads the ack files of `generation`. Only complete lines count (a line torn
/// by the kill is ignored: its ack was never durable).
fn read_acks(acks: &Path, generation: u64, threads: usize) -> Res<BTreeMap<usize, TenantLog>> {
    let mut out: BTreeMap<usize, TenantLog> = BTreeMap::new();
    for thread in 0..threads {
        let path = acks.join(format!("g{generation}-t{thread}.log"));
        let Ok(f) = File::open(&path) else { continue };
        let mut r = BufReader::new(f);
        let mut line = String::new();
        loop {
            line.clear();
            let n = r.read_line(&mut line).map_err(err("read ack file"))?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            if line.starts_with('#') {
                continue;
            }
            let parts: Vec<&str> = line.trim_end().split(' ').collect();
            let bad = || format!("{}: bad line {line:?}", path.display());
            let tenant: usize = parts.get(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let seq: u64 = parts.get(2).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let log = out.entry(tenant).or_default();
            match parts[0] {
                "I" | "X" => {
                    if let Some(prev) = &log.in_flight {
                        return Err(format!(
                            "{}: tenant {tenant}: intent {seq} while {} is unacknowledged",
                            path.display(),
                            prev.seq()
                        ));
                    }
                    log.in_flight = Some(if parts[0] == "I" {
                        let adds = parts
                            .get(3)
                            .and_then(|s| s.strip_prefix('+'))
                            .ok_or_else(bad)?;
                        let dels = parts
                            .get(4)
                            .and_then(|s| s.strip_prefix('-'))
                            .ok_or_else(bad)?;
                        Event::Commit {
                            seq,
                            adds: parse_ids(adds)?,
                            dels: parse_ids(dels)?,
                        }
                    } else {
                        Event::Remove { seq }
                    });
                }
                "A" => match log.in_flight.take() {
                    Some(ev) if ev.seq() == seq => log.acked.push(ev),
                    other => {
                        return Err(format!(
                            "{}: tenant {tenant}: ack {seq} without its intent ({other:?})",
                            path.display()
                        ))
                    }
                },
                _ => return Err(bad()),
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// The child: writer threads, a reader thread, maintenance.

#[derive(Default)]
struct Counters {
    ops: AtomicU64,
    commits: AtomicU64,
    reads: AtomicU64,
}

struct Shared {
    store: Store,
    fields: Fields,
    generation: u64,
    threads: usize,
    tenants: usize,
    /// Held for reading by readers while they open a tenant, for writing
    /// while it is removed and recreated.
    remove_locks: Vec<RwLock<()>>,
    merge_with_pending: bool,
    stop: AtomicBool,
    counters: Counters,
    acks: PathBuf,
}

struct TenantState {
    t: usize,
    index: Index,
    writer: Option<IndexWriter>,
    live: BTreeSet<u64>,
    /// `live` as a vector, for random picks (rebuilt when dirty).
    live_vec: Vec<u64>,
    live_dirty: bool,
    pending_adds: Vec<u64>,
    pending_dels: BTreeSet<u64>,
    /// Rolled back since the last commit: tantivy 0.27's garbage collection
    /// then deletes the files of a segment an explicit merge made and a commit
    /// published (seen the same on MmapDirectory, `--mmap-control`), so no
    /// collection runs until the next commit.
    rolled_back: bool,
    seq: u64,
    next_counter: u64,
}

/// An id no document ever has (`make_id` sets bits no tenant reaches).
const NEVER_AN_ID: u64 = u64::MAX;

/// Spends the opstamp tantivy 0.27 gives a new writer's first operation on a
/// delete that matches nothing. That opstamp equals the committed one, and a
/// merge started before the next commit never applies the operation stamped
/// with it to the documents of some of its input segments: a first *real*
/// delete would be acknowledged and lost (jocky-bench/tests/tantivy_opstamp.rs
/// shows it on RamDirectory and MmapDirectory). Call after every writer
/// creation and every rollback.
fn spend_first_opstamp(w: &IndexWriter, id: Field) {
    w.delete_term(Term::from_field_u64(id, NEVER_AN_ID));
}

/// Closes a writer the way tantivy asks before its index goes away: waits for
/// its merges to end (uncommitted work is dropped).
fn close_writer(w: Option<IndexWriter>) -> Res<()> {
    match w {
        Some(w) => w
            .wait_merging_threads()
            .map_err(err("wait_merging_threads")),
        None => Ok(()),
    }
}

fn new_writer(index: &Index, id: Field) -> Res<IndexWriter> {
    let w = index
        .writer_with_num_threads(1, 15_000_000)
        .map_err(err("open index writer"))?;
    spend_first_opstamp(&w, id);
    Ok(w)
}

fn open_tenant(sh: &Shared, t: usize) -> Res<TenantState> {
    let dir = tenant_dir(&sh.store, t)?;
    let index = Index::open_or_create(dir, sh.fields.schema.clone()).map_err(err("open tenant"))?;
    let live = live_ids(&index)?;
    let writer = new_writer(&index, sh.fields.id)?;
    Ok(TenantState {
        t,
        index,
        writer: Some(writer),
        live,
        live_vec: Vec::new(),
        live_dirty: true,
        pending_adds: Vec::new(),
        pending_dels: BTreeSet::new(),
        rolled_back: false,
        seq: 0,
        next_counter: 0,
    })
}

const WORDS: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
];

fn writer_thread(sh: &Shared, thread: usize, seed: u64) -> Res<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = AckLog::create(&sh.acks.join(format!("g{}-t{thread}.log", sh.generation)))?;
    let threads_total = sh.threads;
    let mut owned: Vec<TenantState> = Vec::new();
    for t in (0..sh.tenants).filter(|t| t % threads_total == thread) {
        owned.push(open_tenant(sh, t)?);
    }
    if owned.is_empty() {
        return Ok(());
    }
    while !sh.stop.load(Ordering::Relaxed) {
        let k = rng.random_range(0..owned.len());
        let ts = &mut owned[k];
        let roll = rng.random_range(0..1000u32);
        sh.counters.ops.fetch_add(1, Ordering::Relaxed);
        let crowded = ts.live.len() + ts.pending_adds.len() > SOFT_CAP;
        match roll {
            // Add documents.
            0..=399 if !crowded => {
                let n = rng.random_range(1..=20);
                let w = ts.writer.as_ref().expect("writer");
                for _ in 0..n {
                    let id = make_id(sh.generation, ts.t, ts.next_counter);
                    ts.next_counter += 1;
                    let words = rng.random_range(1..12);
                    let body: Vec<&str> = (0..words)
                        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                        .collect();
                    w.add_document(doc!(sh.fields.id => id, sh.fields.body => body.join(" ")))
                        .map_err(err("add_document"))?;
                    ts.pending_adds.push(id);
                }
            }
            // Delete committed documents by id.
            0..=549 => {
                if ts.live_dirty {
                    ts.live_vec = ts.live.iter().copied().collect();
                    ts.live_dirty = false;
                }
                if !ts.live_vec.is_empty() {
                    let n = if crowded { 50 } else { rng.random_range(1..=5) };
                    let w = ts.writer.as_ref().expect("writer");
                    for _ in 0..n {
                        let id = ts.live_vec[rng.random_range(0..ts.live_vec.len())];
                        if ts.pending_dels.insert(id) {
                            w.delete_term(Term::from_field_u64(sh.fields.id, id));
                        }
                    }
                }
            }
            // Commit.
            550..=799 => commit(sh, ts, &mut log, &mut rng)?,
            // Roll back: pending work must never show up.
            800..=819 => {
                let w = ts.writer.as_mut().expect("writer");
                w.rollback().map_err(err("rollback"))?;
                spend_first_opstamp(w, sh.fields.id);
                log.note(&format!(
                    "rollback {} after {}: dropped {} adds, {} deletes",
                    ts.t,
                    ts.seq,
                    ts.pending_adds.len(),
                    ts.pending_dels.len()
                ));
                ts.pending_adds.clear();
                ts.pending_dels.clear();
                ts.rolled_back = true;
            }
            // Merge every searchable segment.
            820..=859 => {
                let ids = ts
                    .index
                    .searchable_segment_ids()
                    .map_err(err("searchable_segment_ids"))?;
                if ids.len() >= 2 {
                    let pending = !(ts.pending_adds.is_empty() && ts.pending_dels.is_empty());
                    if pending && !sh.merge_with_pending {
                        commit(sh, ts, &mut log, &mut rng)?;
                    }
                    let w = ts.writer.as_mut().expect("writer");
                    let r = w.merge(&ids).wait();
                    log.note(&format!(
                        "merge {} after {}: {} segments, pending {} adds {} deletes: {}",
                        ts.t,
                        ts.seq,
                        ids.len(),
                        ts.pending_adds.len(),
                        ts.pending_dels.len(),
                        match &r {
                            Ok(m) => format!("ok {:?}", m.as_ref().map(|m| m.num_docs())),
                            Err(e) => format!("{e}"),
                        }
                    ));
                    match r {
                        Ok(_) => {}
                        // Segments already in a background merge.
                        Err(TantivyError::InvalidArgument(_)) => {}
                        Err(e) => return Err(format!("merge: {e}")),
                    }
                }
            }
            // Garbage-collect files.
            860..=899 if !ts.rolled_back => {
                let w = ts.writer.as_ref().expect("writer");
                w.garbage_collect_files()
                    .wait()
                    .map_err(err("garbage_collect_files"))?;
                log.note(&format!("gc {} after {}", ts.t, ts.seq));
            }
            // Export and reclaim, from thread 0 only.
            900..=919 if thread == 0 => {
                let r = sh
                    .store
                    .export_committed()
                    .map_err(err("export_committed"))?;
                log.note(&format!("export {r:?}"));
            }
            920..=939 if thread == 0 => {
                let r = sh.store.reclaim().map_err(err("reclaim"))?;
                log.note(&format!("reclaim {r:?}"));
            }
            940..=949 if thread == 0 => {
                let st = sh.store.stats();
                if st.poisoned || st.background_errors > 0 {
                    return Err(format!("store stats: {st:?}"));
                }
            }
            // Remove and recreate the tenant.
            950..=957 => remove_and_recreate(sh, ts, &mut log)?,
            _ => std::thread::yield_now(),
        }
    }
    // Clean stop: uncommitted work is dropped (it was never announced).
    for ts in owned.iter_mut() {
        close_writer(ts.writer.take())?;
    }
    Ok(())
}

fn commit(sh: &Shared, ts: &mut TenantState, log: &mut AckLog, rng: &mut StdRng) -> Res<()> {
    ts.seq += 1;
    let dels: Vec<u64> = ts.pending_dels.iter().copied().collect();
    log.intent(ts.t, ts.seq, &ts.pending_adds, &dels)?;
    let w = ts.writer.as_mut().expect("writer");
    let opstamp = w.commit().map_err(err("commit"))?;
    ts.rolled_back = false;
    log.ack(ts.t, ts.seq, opstamp, ts.pending_adds.len(), dels.len())?;
    for d in &dels {
        ts.live.remove(d);
    }
    ts.live.extend(ts.pending_adds.drain(..));
    ts.pending_dels.clear();
    ts.live_dirty = true;
    sh.counters.commits.fetch_add(1, Ordering::Relaxed);
    // Sometimes read our own commit back at once.
    if rng.random_bool(0.05) {
        let seen = live_ids(&ts.index)?;
        if seen != ts.live {
            return Err(format!(
                "tenant {}: right after commit {} (opstamp {opstamp}) a reader sees {} docs, expected {} (missing {:?}, extra {:?})",
                ts.t,
                ts.seq,
                seen.len(),
                ts.live.len(),
                ts.live.difference(&seen).take(5).collect::<Vec<_>>(),
                seen.difference(&ts.live).take(5).collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

fn remove_and_recreate(sh: &Shared, ts: &mut TenantState, log: &mut AckLog) -> Res<()> {
    // The writer goes first (its uncommitted work is dropped, never announced),
    // and its merges end first: tantivy 0.27's `Drop` of an `IndexWriter` does
    // not wait for a merge that is ending, whose `meta.json` can land after the
    // drop returned — after the removal (seen in a 30-minute run: a removed
    // tenant came back with a meta.json naming a merged segment whose files
    // were gone).
    close_writer(ts.writer.take())?;
    ts.pending_adds.clear();
    ts.pending_dels.clear();
    ts.seq += 1;
    log.remove_intent(ts.t, ts.seq)?;
    {
        let _g = sh.remove_locks[ts.t].write().expect("lock");
        remove_tenant(&sh.store, ts.t)?;
    }
    log.ack(ts.t, ts.seq, 0, 0, 0)?;
    ts.live.clear();
    ts.live_dirty = true;
    let _g = sh.remove_locks[ts.t].write().expect("lock");
    let dir = tenant_dir(&sh.store, ts.t)?;
    ts.index = Index::create(dir, sh.fields.schema.clone(), Default::default())
        .map_err(err("recreate tenant"))?;
    ts.writer = Some(new_writer(&ts.index, sh.fields.id)?);
    sh.counters.commits.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Reads random tenants of a store: every id must belong to the tenant, no id
/// twice, all the counts must agree. With `refresh`, the store is a read-only
/// open beside a writer in another process.
fn read_some(
    store: &Store,
    fields: &Fields,
    tenants: usize,
    rng: &mut StdRng,
    locks: Option<&[RwLock<()>]>,
) -> Res<()> {
    let t = rng.random_range(0..tenants);
    let (searcher_ids, searcher) = {
        let _g = locks.map(|l| l[t].read().expect("lock"));
        let dir = tenant_dir(store, t)?;
        if !Index::exists(&*dir).map_err(err("Index::exists"))? {
            return Ok(());
        }
        let index = Index::open(dir).map_err(err("Index::open"))?;
        match live_ids_searcher(&index) {
            Ok(found) => found,
            Err(e) => {
                // Say what the directory and the commit point look like now.
                let meta = index.load_metas().map(|m| {
                    m.segments
                        .iter()
                        .map(|s| format!("{}({} docs)", s.id().uuid_string(), s.num_docs()))
                        .collect::<Vec<_>>()
                });
                // Which files of those segments the tenant's table has.
                let listed: Vec<String> = match (CONTROL.get(), &meta) {
                    (None, Ok(segs)) => store
                        .directory(&tenant_name(t))
                        .map(|d| {
                            d.list_files()
                                .into_iter()
                                .map(|p| p.display().to_string())
                                .filter(|p| segs.iter().any(|s| p.starts_with(&s[..32])))
                                .collect()
                        })
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                return Err(format!(
                    "tenant {t}: {e}; now: meta segments {meta:?}; their files {listed:?}; stats {:?}",
                    store.stats()
                ));
            }
        }
    };
    for id in &searcher_ids {
        if id_tenant(*id) != t {
            return Err(format!(
                "tenant {t} holds id {id:#x} of tenant {}",
                id_tenant(*id)
            ));
        }
    }
    // A term query for one live id finds exactly it in the same snapshot
    // (possibly after the tenant was removed: an open searcher keeps working).
    if !searcher_ids.is_empty() {
        let k = rng.random_range(0..searcher_ids.len());
        let id = *searcher_ids.iter().nth(k).expect("in range");
        let q = TermQuery::new(
            Term::from_field_u64(fields.id, id),
            IndexRecordOption::Basic,
        );
        let n = searcher.search(&q, &Count).map_err(err("term query"))?;
        if n != 1 {
            return Err(format!(
                "tenant {t}: term query for live id {id:#x} finds {n} docs"
            ));
        }
    }
    Ok(())
}

fn reader_thread(sh: &Shared, seed: u64) -> Res<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    while !sh.stop.load(Ordering::Relaxed) {
        read_some(
            &sh.store,
            &sh.fields,
            sh.tenants,
            &mut rng,
            Some(&sh.remove_locks),
        )?;
        sh.counters.reads.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(rng.random_range(0..20)));
    }
    Ok(())
}

/// Runs the workers until `deadline` (forever when `None`: the parent kills us).
fn run_workers(
    work: &Path,
    seed: u64,
    generation: u64,
    threads: usize,
    tenants: usize,
    opts: &Args,
    deadline: Option<Instant>,
) -> Res<(u64, u64)> {
    let vary = opts.vary_file_size;
    let cfg = gen_config(seed, generation, vary);
    let store = open_store(&work.join("store"), &cfg)?;
    let acks = work.join("acks");
    let sh = Arc::new(Shared {
        store,
        fields: fields(),
        generation,
        threads,
        tenants,
        remove_locks: (0..tenants).map(|_| RwLock::new(())).collect(),
        merge_with_pending: opts.merge_with_pending,
        stop: AtomicBool::new(false),
        counters: Counters::default(),
        acks: acks.clone(),
    });
    let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let mut handles = Vec::new();
    for th in 0..threads {
        let sh = sh.clone();
        let failure = failure.clone();
        let s = seed ^ (generation << 20) ^ (th as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407);
        handles.push(std::thread::spawn(move || {
            if let Err(e) = writer_thread(&sh, th, s) {
                eprintln!("stress child g{generation} writer {th}: ERROR {e}");
                failure.lock().expect("lock").get_or_insert(e);
                sh.stop.store(true, Ordering::Relaxed);
            }
        }));
    }
    {
        let sh = sh.clone();
        let failure = failure.clone();
        let s = seed ^ (generation << 20) ^ 0x5EED;
        handles.push(std::thread::spawn(move || {
            if let Err(e) = reader_thread(&sh, s) {
                eprintln!("stress child g{generation} reader: ERROR {e}");
                failure.lock().expect("lock").get_or_insert(e);
                sh.stop.store(true, Ordering::Relaxed);
            }
        }));
    }
    // The operation count, for the parent's ops/s (rewritten every 200 ms).
    let ops_path = acks.join(format!("g{generation}.ops"));
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::write(
            &ops_path,
            sh.counters.ops.load(Ordering::Relaxed).to_string(),
        );
        if sh.stop.load(Ordering::Relaxed) {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            sh.stop.store(true, Ordering::Relaxed);
            break;
        }
    }
    for h in handles {
        if h.join().is_err() {
            failure
                .lock()
                .expect("lock")
                .get_or_insert("a worker thread panicked".into());
        }
    }
    let _ = std::fs::write(
        &ops_path,
        sh.counters.ops.load(Ordering::Relaxed).to_string(),
    );
    if let Some(e) = failure.lock().expect("lock").take() {
        return Err(e);
    }
    let st = sh.store.stats();
    if st.poisoned || st.background_errors > 0 {
        return Err(format!("store stats at close: {st:?}"));
    }
    let out = (
        sh.counters.ops.load(Ordering::Relaxed),
        sh.counters.commits.load(Ordering::Relaxed),
    );
    drop(sh);
    Ok(out)
}

// ---------------------------------------------------------------------------
// The parent: kill loop and verification.

#[derive(Default, Debug)]
struct Totals {
    kills: u64,
    reopens: u64,
    commits_acked: u64,
    in_flight_seen: u64,
    in_flight_visible: u64,
    ops: u64,
    lost: u64,
    phantom: u64,
    errors: u64,
    ro_reads: u64,
    tail_bytes_cut: u64,
    tail_records_cut: u64,
    verify_records: u64,
}

struct Parent {
    args: Args,
    seed: u64,
    work: PathBuf,
    fields: Fields,
    /// The expected live ids of every tenant after everything verified so far.
    model: Vec<BTreeSet<u64>>,
    totals: Totals,
}

impl Parent {
    fn store_dir(&self) -> PathBuf {
        self.work.join("store")
    }

    fn error(&mut self, what: String) {
        self.totals.errors += 1;
        eprintln!("stress: ERROR {what}");
    }

    /// Folds the ack files of `generation` into the model and checks the store
    /// against it. `clean`: the child closed the store itself (nothing in
    /// flight, no torn tail on reopen).
    fn verify(&mut self, generation: u64, clean: bool) {
        let logs = match read_acks(&self.work.join("acks"), generation, self.args.threads) {
            Ok(l) => l,
            Err(e) => return self.error(format!("g{generation}: ack files: {e}")),
        };
        let cfg = gen_config(self.seed, generation, self.args.vary_file_size);
        let store = match Store::builder(self.store_dir())
            .export_policy(ExportPolicy::Manual)
            .open_store()
        {
            Ok(s) => s,
            Err(e) => {
                return self.error(format!(
                    "g{generation}: reopen after {}: {e} (child config {cfg:?})",
                    if clean { "clean close" } else { "kill" }
                ))
            }
        };
        self.totals.reopens += 1;
        let st = store.stats();
        self.totals.tail_bytes_cut += st.tail_bytes_cut_on_open;
        self.totals.tail_records_cut += st.tail_records_cut_on_open;
        if st.poisoned {
            self.error(format!("g{generation}: poisoned on open: {st:?}"));
        }
        // (Files an IndexWriter was writing when dropped are unterminated and
        // dropped on open even after a clean close: not checked.)
        if clean && st.tail_bytes_cut_on_open > 0 {
            self.error(format!(
                "g{generation}: after a clean close, open cut a tail: {st:?}"
            ));
        }
        let present: BTreeSet<String> = store.tenants().into_iter().collect();
        for t in 0..self.args.tenants {
            let log = logs.get(&t);
            let mut expected = self.model[t].clone();
            if let Some(log) = log {
                for ev in &log.acked {
                    ev.apply(&mut expected);
                }
                self.totals.commits_acked += log.acked.len() as u64;
            }
            let in_flight = log.and_then(|l| l.in_flight.clone());
            if clean && in_flight.is_some() {
                self.error(format!(
                    "g{generation}: tenant {t}: clean stop with a commit in flight"
                ));
            }
            let alt = in_flight.as_ref().map(|ev| {
                let mut a = expected.clone();
                ev.apply(&mut a);
                a
            });
            let actual = match self.tenant_ids(&store, t, present.contains(&tenant_name(t))) {
                Ok(ids) => ids,
                Err(e) => {
                    self.error(format!(
                        "g{generation}: tenant {t}: {e} (child config {cfg:?})"
                    ));
                    self.model[t] = expected;
                    continue;
                }
            };
            if in_flight.is_some() {
                self.totals.in_flight_seen += 1;
            }
            if actual == expected {
                self.model[t] = expected;
            } else if alt.as_ref() == Some(&actual) {
                self.totals.in_flight_visible += 1;
                self.model[t] = actual;
            } else {
                // Neither: count against the acknowledged state, allowing what
                // the in-flight commit may have done.
                let allowed_extra: BTreeSet<u64> = alt.clone().unwrap_or_default();
                let lost: Vec<u64> = expected
                    .difference(&actual)
                    .filter(|id| {
                        !matches!(&in_flight, Some(Event::Commit { dels, .. }) if dels.contains(id))
                            && !matches!(&in_flight, Some(Event::Remove { .. }))
                    })
                    .copied()
                    .collect();
                let phantom: Vec<u64> = actual
                    .difference(&expected)
                    .filter(|id| !allowed_extra.contains(id))
                    .copied()
                    .collect();
                let lost_n = lost.len().max(1) as u64;
                self.totals.lost += lost.len() as u64;
                self.totals.phantom += phantom.len() as u64;
                if lost.is_empty() && phantom.is_empty() {
                    // A partial in-flight commit: not all-or-nothing.
                    self.totals.lost += lost_n;
                }
                eprintln!(
                    "stress: MISMATCH g{generation} tenant {t}: expected {} ids (alt {:?}), found {}; lost {} e.g. {:x?}; phantom {} e.g. {:x?}; in flight {:?}; last acked {:?}; child config {cfg:?}; stats {st:?}",
                    expected.len(),
                    alt.as_ref().map(|a| a.len()),
                    actual.len(),
                    lost.len(),
                    &lost[..lost.len().min(5)],
                    phantom.len(),
                    &phantom[..phantom.len().min(5)],
                    in_flight.as_ref().map(|e| e.seq()),
                    log.and_then(|l| l.acked.last()).map(|e| e.seq()),
                );
                self.model[t] = actual;
            }
        }
        let st = store.stats();
        if st.poisoned || st.background_errors > 0 {
            self.error(format!(
                "g{generation}: store stats after verification: {st:?}"
            ));
        }
        drop(store);
        match jocky::verify::verify(self.store_dir()) {
            Ok(rep) => {
                self.totals.verify_records += rep.records;
                if !rep.is_clean() {
                    self.error(format!(
                        "g{generation}: jocky::verify found damage: {:?}",
                        rep.damage
                    ));
                }
            }
            Err(e) => self.error(format!("g{generation}: jocky::verify: {e}")),
        }
    }

    /// The live ids of tenant `t`, with tantivy's checksums of all its files and
    /// a few term queries.
    fn tenant_ids(&self, store: &Store, t: usize, present: bool) -> Res<BTreeSet<u64>> {
        let dir = tenant_dir(store, t)?;
        if !Index::exists(&*dir).map_err(err("Index::exists"))? {
            return Ok(BTreeSet::new());
        }
        if !present && CONTROL.get().is_none() {
            return Err("Index::exists but the store does not list the tenant".into());
        }
        let index = Index::open(dir).map_err(err("Index::open"))?;
        let bad = index
            .validate_checksum()
            .map_err(err("validate_checksum"))?;
        if !bad.is_empty() {
            return Err(format!("files failing their checksum: {bad:?}"));
        }
        let ids = live_ids(&index)?;
        for id in ids.iter().step_by((ids.len() / 8).max(1)).take(8) {
            let n = count_id(&index, &self.fields, *id)?;
            if n != 1 {
                return Err(format!("term query for live id {id:#x} finds {n} docs"));
            }
        }
        for id in &ids {
            if id_tenant(*id) != t {
                return Err(format!("holds id {id:#x} of tenant {}", id_tenant(*id)));
            }
        }
        Ok(ids)
    }

    fn ops_of(&self, generation: u64) -> u64 {
        std::fs::read_to_string(self.work.join("acks").join(format!("g{generation}.ops")))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn spawn_child(&self, generation: u64, run_for_ms: Option<u64>) -> Res<std::process::Child> {
        let exe = std::env::current_exe().map_err(err("current_exe"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("--child")
            .arg("--dir")
            .arg(&self.work)
            .arg("--seed")
            .arg(self.seed.to_string())
            .arg("--generation")
            .arg(generation.to_string())
            .arg("--threads")
            .arg(self.args.threads.to_string())
            .arg("--tenants")
            .arg(self.args.tenants.to_string());
        if self.args.vary_file_size {
            cmd.arg("--vary-file-size");
        }
        if self.args.merge_with_pending {
            cmd.arg("--merge-with-pending");
        }
        if self.args.mmap_control {
            cmd.arg("--mmap-control");
        }
        if let Some(ms) = run_for_ms {
            cmd.arg("--run-for-ms").arg(ms.to_string());
        }
        cmd.spawn().map_err(err("spawn child"))
    }

    fn progress(&self, start: Instant, generation: u64) {
        let el = start.elapsed().as_secs_f64();
        println!(
            "stress: {:>6.0}s gen {generation} kills {} reopens {} commits acked {} ops {} ({:.0}/s) in-flight seen/visible {}/{} ro reads {} lost {} phantom {} errors {}",
            el,
            self.totals.kills,
            self.totals.reopens,
            self.totals.commits_acked,
            self.totals.ops,
            self.totals.ops as f64 / el.max(0.001),
            self.totals.in_flight_seen,
            self.totals.in_flight_visible,
            self.totals.ro_reads,
            self.totals.lost,
            self.totals.phantom,
            self.totals.errors
        );
    }
}

/// Every tenant's `meta.json` names only segments whose doc store (and
/// delete bitset, if it has deletes) the same table has — two of the files a
/// reader needs to open the commit, enough to catch a commit whose segments'
/// files are gone. Cheap enough to run on every refresh.
fn commits_whole(store: &Store, tenants: usize) -> Res<()> {
    use tantivy::Directory;
    for t in 0..tenants {
        let dir = store.directory(&tenant_name(t)).map_err(err("directory"))?;
        let meta = match dir.atomic_read(Path::new("meta.json")) {
            Ok(m) => m,
            Err(tantivy::directory::error::OpenReadError::FileDoesNotExist(_)) => continue,
            Err(e) => return Err(format!("tenant {t}: read meta.json: {e}")),
        };
        let meta: serde_json::Value =
            serde_json::from_slice(&meta).map_err(err("parse meta.json"))?;
        let files: BTreeSet<String> = dir
            .list_files()
            .into_iter()
            .map(|p| p.display().to_string())
            .collect();
        let segments = meta["segments"]
            .as_array()
            .ok_or_else(|| format!("tenant {t}: meta.json without segments"))?;
        for seg in segments {
            let id = seg["segment_id"]
                .as_str()
                .ok_or_else(|| format!("tenant {t}: a segment without segment_id"))?
                .replace('-', "");
            let mut need = vec![format!("{id}.store")];
            if let Some(opstamp) = seg["deletes"]["opstamp"].as_u64() {
                need.push(format!("{id}.{opstamp}.del"));
            }
            for f in need {
                if !files.contains(&f) {
                    let have: Vec<&String> = files.iter().filter(|p| p.starts_with(&id)).collect();
                    return Err(format!(
                        "tenant {t}: meta.json names segment {id} but {f} is not in the table (its files there: {have:?}; {} files; stats {:?})",
                        files.len(),
                        store.stats()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Reads the store read-only beside the child until `stop`.
fn ro_reader(
    store_dir: PathBuf,
    tenants: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> (u64, Vec<String>) {
    let fields = fields();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut reads = 0;
    let mut errors = Vec::new();
    let store = match Store::open_read_only(&store_dir) {
        Ok(s) => s,
        Err(e) => return (0, vec![format!("open_read_only: {e}")]),
    };
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = store.refresh() {
            errors.push(format!("refresh: {e}"));
            break;
        }
        if let Err(e) = commits_whole(&store, tenants) {
            errors.push(e);
            break;
        }
        for _ in 0..4 {
            match read_some(&store, &fields, tenants, &mut rng, None) {
                Ok(()) => reads += 1,
                Err(e) => {
                    errors.push(e);
                    break;
                }
            }
        }
        if !errors.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(5..50)));
    }
    (reads, errors)
}

fn run_parent(args: Args) -> Res<bool> {
    if args.tenants == 0 || args.tenants > MAX_TENANTS || args.threads == 0 {
        return Err(format!(
            "need 1..={MAX_TENANTS} tenants and at least one thread"
        ));
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let (work, temp) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("jocky-stress-{}-{seed}", std::process::id())),
            true,
        ),
    };
    if args.mmap_control {
        let _ = CONTROL.set(work.join("mmap"));
    }
    if work.join("store").exists() || work.join("acks").exists() {
        return Err(format!(
            "{} already holds a stress run; give a new --dir",
            work.display()
        ));
    }
    std::fs::create_dir_all(work.join("acks")).map_err(err("create work folder"))?;
    println!(
        "stress: seed {seed}, {} threads, {} tenants, duration {:?}, kill interval {}..{} ms{}, work folder {}",
        args.threads,
        args.tenants,
        args.duration,
        args.kill_interval_ms.0,
        args.kill_interval_ms.1,
        if args.no_kill { " (no kill)" } else { "" },
        work.display()
    );
    let mut p = Parent {
        seed,
        work: work.clone(),
        fields: fields(),
        model: vec![BTreeSet::new(); args.tenants],
        totals: Totals::default(),
        args: args.clone(),
    };
    let start = Instant::now();
    let end = start + args.duration;
    let mut rng = StdRng::seed_from_u64(seed);
    let vary = args.vary_file_size;
    let mut generation = 0u64;
    let (mut bad_before, mut findings) = (0u64, 0u32);
    let mut last_progress = Instant::now();

    if args.no_kill {
        match run_workers(&work, seed, 0, args.threads, args.tenants, &args, Some(end)) {
            Ok((ops, _)) => p.totals.ops += ops,
            Err(e) => p.error(format!("in-process workers: {e}")),
        }
        p.verify(0, true);
    } else {
        loop {
            let now = Instant::now();
            let last = now + Duration::from_millis(args.kill_interval_ms.1) >= end;
            let run_ms = if last {
                end.saturating_duration_since(now).as_millis().max(500) as u64
            } else {
                rng.random_range(args.kill_interval_ms.0..=args.kill_interval_ms.1)
            };
            let mut child = match p.spawn_child(generation, last.then_some(run_ms)) {
                Ok(c) => c,
                Err(e) => {
                    p.error(e);
                    break;
                }
            };
            // A read-only reader beside the child (once a store exists).
            let ro = (generation > 0 && !args.mmap_control).then(|| {
                let stop = Arc::new(AtomicBool::new(false));
                let (dir, n, s) = (p.store_dir(), args.tenants, seed ^ generation);
                let stop2 = stop.clone();
                (
                    stop,
                    std::thread::spawn(move || ro_reader(dir, n, s, stop2)),
                )
            });
            let spawned = Instant::now();
            let mut exited = None;
            if last {
                match child.wait() {
                    Ok(s) => exited = Some(s),
                    Err(e) => p.error(format!("wait for the last child: {e}")),
                }
            } else {
                let until = spawned + Duration::from_millis(run_ms);
                while Instant::now() < until {
                    if let Ok(Some(s)) = child.try_wait() {
                        exited = Some(s);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                if exited.is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                    p.totals.kills += 1;
                }
            }
            if let Some((stop, h)) = ro {
                stop.store(true, Ordering::Relaxed);
                match h.join() {
                    Ok((reads, errors)) => {
                        p.totals.ro_reads += reads;
                        for e in errors {
                            p.error(format!(
                                "g{generation}: read-only reader beside the child: {e}"
                            ));
                        }
                    }
                    Err(_) => p.error(format!("g{generation}: read-only reader panicked")),
                }
            }
            if let Some(status) = exited {
                if !(last && status.success()) {
                    p.error(format!(
                        "g{generation}: child exited by itself with {status} (config {:?})",
                        gen_config(seed, generation, vary)
                    ));
                }
            }
            p.totals.ops += p.ops_of(generation);
            p.verify(generation, last);
            let bad = p.totals.errors + p.totals.lost + p.totals.phantom;
            if bad > bad_before {
                if !args.keep_going {
                    break;
                }
                if findings < 5 {
                    findings += 1;
                    let to = PathBuf::from("/tmp/stress-findings")
                        .join(format!("seed{seed}-g{generation}"));
                    let _ = std::fs::create_dir_all(&to);
                    let _ = Command::new("cp")
                        .arg("-a")
                        .arg(work.join("store"))
                        .arg(work.join("acks"))
                        .arg(&to)
                        .status();
                    eprintln!(
                        "stress: evidence of g{generation} copied to {}",
                        to.display()
                    );
                }
                bad_before = bad;
            }
            // The ack files of a verified generation are folded into the model.
            if !args.keep {
                for th in 0..args.threads {
                    let _ = std::fs::remove_file(
                        work.join("acks").join(format!("g{generation}-t{th}.log")),
                    );
                }
                let _ = std::fs::remove_file(work.join("acks").join(format!("g{generation}.ops")));
            }
            generation += 1;
            if last_progress.elapsed() >= Duration::from_secs(10) {
                p.progress(start, generation);
                last_progress = Instant::now();
            }
            if last {
                break;
            }
        }
    }
    let el = start.elapsed().as_secs_f64();
    let t = &p.totals;
    let ok = t.lost == 0 && t.phantom == 0 && t.errors == 0;
    println!("stress: summary");
    println!("  seed              {seed}");
    println!("  duration          {el:.1} s");
    println!("  threads/tenants   {}/{}", args.threads, args.tenants);
    println!(
        "  children          {}",
        if args.no_kill { 0 } else { generation }
    );
    println!("  kills             {}", t.kills);
    println!("  reopens           {}", t.reopens);
    println!("  commits acked     {}", t.commits_acked);
    println!(
        "  in flight at kill {} (visible after reopen: {})",
        t.in_flight_seen, t.in_flight_visible
    );
    println!(
        "  ops               {} ({:.0}/s)",
        t.ops,
        t.ops as f64 / el.max(0.001)
    );
    println!("  read-only reads   {}", t.ro_reads);
    println!(
        "  tail cut on open  {} bytes, {} records",
        t.tail_bytes_cut, t.tail_records_cut
    );
    println!("  records verified  {}", t.verify_records);
    println!(
        "  live docs at end  {}",
        p.model.iter().map(|m| m.len()).sum::<usize>()
    );
    println!("  lost              {}", t.lost);
    println!("  phantom           {}", t.phantom);
    println!("  errors            {}", t.errors);
    println!("  result            {}", if ok { "OK" } else { "FAILED" });
    if ok && temp && !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        println!("  work folder kept  {}", work.display());
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.mmap_control {
        if let Some(d) = &args.dir {
            let _ = CONTROL.set(d.join("mmap"));
        }
    }
    if args.child {
        let Some(work) = args.dir.clone() else {
            eprintln!("stress --child needs --dir");
            return ExitCode::from(2);
        };
        let deadline = args
            .run_for_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        return match run_workers(
            &work,
            args.seed.unwrap_or(0),
            args.generation,
            args.threads,
            args.tenants,
            &args,
            deadline,
        ) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("stress child g{}: ERROR {e}", args.generation);
                ExitCode::from(3)
            }
        };
    }
    match run_parent(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("stress: {e}");
            ExitCode::from(2)
        }
    }
}
