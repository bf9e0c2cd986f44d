//! Model-based test: random sequences of directory operations, process deaths and
//! power losses, applied both to a `JockyDirectory` over the simulated disk and to
//! an in-memory model, and compared after every step.
//!
//! The model keeps two maps of name -> content: `current` (what the directory must
//! show now) and `durable` (what it must show after a power loss). `durable` is a
//! snapshot of `current` taken whenever the directory promises durability
//! (`sync_directory`, `atomic_write`), and also whenever the disk saw an fsync in
//! the middle of a write or delete: the container seals (syncs) a container file
//! before it starts the next one, which makes everything appended before that op
//! durable. Deletes are not durable until the next sync. A file that was never
//! terminated is readable in the process that wrote it and never survives a reopen.
//!
//! After a process death (`Reopen`) the directory shows exactly the terminated
//! files of `current`; after a power loss (`Crash`) exactly those of `durable`.
//! A power loss at an arbitrary instant (`CrashAt`) must show what was durable at
//! that instant: exactly the `durable` of the op boundary it falls on, or, inside
//! an op, the `durable` or the `current` from before that op. A power loss that
//! kept a prefix of the unsynced writes, the last one torn (`TornCrash`), must
//! show the `current` of some op boundary since `durable` was taken. Whatever it
//! shows becomes the model. Slices opened earlier never change.
//!
//! Contents are `(version, len)` pairs; the bytes are a pseudo-random pattern of
//! the version, unique per write.
//!
//! A second property adds the maintenance steps, `ExportSome` (a subset of the
//! names through `export_files`) and `Reclaim`: they never change what the model
//! says is readable, before or after any reopen or power loss. Both sync the log
//! when they do something, which makes `current` durable. The folder always holds
//! exactly the container and segment files the directory accounts for. The
//! directory runs with `ExportPolicy::Manual`, so nothing runs in the background.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use jocky::testing::SimStorage;
use jocky::testing::Storage;
use jocky::{ExportPolicy, JockyDirectory};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

thread_local! {
    /// Container files this thread's model runs reclaimed out of order (a gap
    /// in the log, which no replay may cross).
    static OUT_OF_ORDER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
use tantivy::directory::error::{DeleteError, OpenReadError, OpenWriteError};
use tantivy::directory::{Directory, FileSlice, TerminatingWrite};
use tantivy::HasLen;

/// Names for `Write`, `Delete`, `Read` and `HoldSlice`; the last two are also the
/// names `AtomicWrite` uses, so atomic and streamed files replace each other.
const NAMES: [&str; 6] = [
    "a.idx",
    "b.pos",
    "c.store",
    "seg/d.term",
    "meta.json",
    "other.json",
];
const FIRST_ATOMIC: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    /// `open_write` + writes in irregular chunks (+ `terminate`, or a plain drop).
    Write {
        name: usize,
        len: usize,
        seed: u64,
        terminate: bool,
    },
    Delete {
        name: usize,
    },
    AtomicWrite {
        name: usize,
        len: usize,
    },
    /// `sync_directory`.
    Sync,
    Read {
        name: usize,
    },
    /// Keeps an opened `FileSlice`, whose bytes must never change afterwards.
    HoldSlice {
        name: usize,
    },
    /// Process death: the page cache survives (`crash_keeping(usize::MAX, 0)`).
    /// `graceful`: the directory is dropped before the snapshot (else after, as
    /// with SIGKILL).
    Reopen {
        graceful: bool,
    },
    /// Power loss: only what was durable.
    Crash,
    /// Power loss at an instant inside the history since the last open
    /// (`frac` of the way through it).
    CrashAt {
        frac: u16,
    },
    /// Power loss that persisted a prefix of the unsynced writes (`frac` of
    /// them), the last one torn after `torn` bytes.
    TornCrash {
        frac: u16,
        torn: u32,
    },
    /// `export_files` of the names whose bit is set in `mask` (files not
    /// terminated, already exported, missing or `meta.json` are skipped).
    ExportSome {
        mask: u8,
    },
    /// `reclaim`.
    Reclaim,
    /// `write_snapshot`: the file table goes to the start of a new container
    /// file; later opens replay from there.
    Snapshot,
}

/// The steps of [`op_strategy`] plus `ExportSome`, and `Reclaim` if `reclaim`;
/// more large files and deletes, so that container files fill up and die.
fn op_strategy_with_maintenance(reclaim: bool) -> impl Strategy<Value = Op> {
    let large =
        (0..NAMES.len(), 300_000..1_500_000usize, any::<u64>()).prop_map(|(name, len, seed)| {
            Op::Write {
                name,
                len,
                seed,
                terminate: true,
            }
        });
    prop_oneof![
        20 => op_strategy(),
        3 => large,
        2 => (0..NAMES.len()).prop_map(|name| Op::Delete { name }),
        3 => (0..1u8 << NAMES.len()).prop_map(|mask| Op::ExportSome { mask }),
        if reclaim { 2 } else { 0 } => Just(Op::Reclaim),
        1 => Just(Op::Snapshot),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    let atomic_name = FIRST_ATOMIC..NAMES.len();
    let len = prop_oneof![
        2 => 0..64usize,
        2 => 0..20_000usize,
        5 => 0..200_000usize,
        // Now and then a file a good part of a container file long, so that
        // the log moves on to new container files within a case.
        2 => 200_000..1_200_000usize,
    ];
    let terminate = prop_oneof![9 => Just(true), 1 => Just(false)];
    prop_oneof![
        8 => (name.clone(), len, any::<u64>(), terminate).prop_map(|(name, len, seed, terminate)| {
            Op::Write { name, len, seed, terminate }
        }),
        4 => name.clone().prop_map(|name| Op::Delete { name }),
        3 => (atomic_name, 0..5000usize).prop_map(|(name, len)| Op::AtomicWrite { name, len }),
        2 => Just(Op::Sync),
        3 => name.clone().prop_map(|name| Op::Read { name }),
        2 => name.prop_map(|name| Op::HoldSlice { name }),
        1 => any::<bool>().prop_map(|graceful| Op::Reopen { graceful }),
        1 => Just(Op::Crash),
        1 => any::<u16>().prop_map(|frac| Op::CrashAt { frac }),
        1 => (any::<u16>(), 0..70_000u32).prop_map(|(frac, torn)| Op::TornCrash { frac, torn }),
        1 => Just(Op::Snapshot),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Content {
    version: u64,
    len: usize,
    terminated: bool,
}

type State = BTreeMap<String, Content>;

/// What a reopen finds of `state`: the files that were terminated.
fn recovered(state: &State) -> State {
    state
        .iter()
        .filter(|(_, c)| c.terminated)
        .map(|(n, c)| (n.clone(), *c))
        .collect()
}

fn describe(state: &State) -> String {
    let mut s = String::from("{");
    for (name, c) in state {
        let t = if c.terminated { "" } else { " unterminated" };
        let _ = write!(s, " {name}: v{} {}B{t};", c.version, c.len);
    }
    s.push_str(" }");
    s
}

fn describe_real(real: &BTreeMap<String, Vec<u8>>) -> String {
    let mut s = String::from("{");
    for (name, bytes) in real {
        let _ = write!(s, " {name}: {}B;", bytes.len());
    }
    s.push_str(" }");
    s
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The bytes of version `version`, `len` long.
fn pattern(version: u64, len: usize) -> Vec<u8> {
    let mut x = version.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&splitmix(&mut x).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn bytes_of(c: &Content) -> Vec<u8> {
    pattern(c.version, c.len)
}

/// Streams `data` into a new file in irregular pieces (1 byte to 70 KB, with
/// flushes now and then).
fn write_file(
    dir: &JockyDirectory,
    path: &Path,
    data: &[u8],
    seed: u64,
    terminate: bool,
) -> Result<(), String> {
    let mut w = dir
        .open_write(path)
        .map_err(|e| format!("open_write: {e}"))?;
    let mut rng = seed;
    let mut off = 0;
    while off < data.len() {
        let r = splitmix(&mut rng);
        let max = match r % 4 {
            0 => 16,
            1 => 4096,
            2 => 9000,
            _ => 70_000,
        };
        let n = (1 + (r >> 8) as usize % max).min(data.len() - off);
        w.write_all(&data[off..off + n])
            .map_err(|e| format!("write: {e}"))?;
        if (r >> 40).is_multiple_of(7) {
            w.flush().map_err(|e| format!("flush: {e}"))?;
        }
        off += n;
    }
    if terminate {
        w.terminate().map_err(|e| format!("terminate: {e}"))?;
    }
    Ok(())
}

/// As `common::open_sim`, with nothing exported or reclaimed in the background
/// (that would sync at instants the model does not know).
fn open_sim(s: &SimStorage) -> Result<JockyDirectory, String> {
    open_sim_with(s, false)
}

/// `full_replay`: ignoring snapshots, every record of every file replayed.
fn open_sim_with(s: &SimStorage, full_replay: bool) -> Result<JockyDirectory, String> {
    JockyDirectory::builder("/sim")
        .full_replay(full_replay)
        .storage(std::sync::Arc::new(s.clone()))
        .container_file_size(1 << 20)
        .preallocate(64 << 10)
        .write_buffer(4 << 10, 64 << 10)
        .export_policy(ExportPolicy::Manual)
        // The model's `Reopen` keeps everything written (the page cache
        // survives a process death): records must reach the file on append.
        .write_mode(jocky::WriteMode::Inline)
        .open()
        .map_err(|e| format!("open: {e}"))
}

fn slice_bytes(slice: &FileSlice) -> Result<Vec<u8>, String> {
    slice
        .read_bytes()
        .map(|b| b.as_slice().to_vec())
        .map_err(|e| format!("read_bytes: {e}"))
}

/// The model's states at one op boundary, and where the sim's history was then.
struct Boundary {
    pos: usize,
    durable: State,
    current: State,
    exported: BTreeSet<(String, u64)>,
    maybe_exported: BTreeSet<(String, u64)>,
}

struct Harness {
    s: SimStorage,
    dir: Option<JockyDirectory>,
    current: State,
    durable: State,
    /// `current` at each op boundary since `durable` was taken (`durable` first):
    /// a power loss that kept some unsynced writes lands on one of them.
    since_durable: Vec<State>,
    /// Op boundaries since the last open, for `CrashAt`.
    boundaries: Vec<Boundary>,
    held: Vec<(String, FileSlice, Vec<u8>)>,
    next_version: u64,
    /// Paths of unterminated files whose creation is still in the log (recovery
    /// drops them from the table, not from the log, so every open counts them
    /// again until a new file of the same path replaces them); `None` when a
    /// power loss left it unknown.
    ghosts: Option<BTreeSet<String>>,
    /// Files known to be in a segment file, as (name, version): a version the
    /// model no longer shows may come back with a power loss.
    exported: BTreeSet<(String, u64)>,
    /// Files that may or may not be in one (a power loss inside an export).
    maybe_exported: BTreeSet<(String, u64)>,
}

impl Harness {
    fn new() -> Result<Harness, String> {
        let s = SimStorage::new();
        let dir = open_sim(&s)?;
        let mut h = Harness {
            s,
            dir: Some(dir),
            current: State::new(),
            durable: State::new(),
            since_durable: Vec::new(),
            boundaries: Vec::new(),
            held: Vec::new(),
            next_version: 1,
            ghosts: Some(BTreeSet::new()),
            exported: BTreeSet::new(),
            maybe_exported: BTreeSet::new(),
        };
        h.install(State::new());
        Ok(h)
    }

    fn dir(&self) -> &JockyDirectory {
        self.dir.as_ref().expect("directory is open")
    }

    fn new_version(&mut self) -> u64 {
        self.next_version += 1;
        self.next_version
    }

    fn set_durable(&mut self, state: State) {
        self.durable = state.clone();
        self.since_durable = vec![state];
    }

    /// After an open: the model is `state`, all of it durable, and the sim starts
    /// recording a history. Exports that returned were durable; they still hold
    /// the files whose version survived.
    fn install(&mut self, state: State) {
        let same = |(name, v): &(String, u64)| state.get(name).map(|c| c.version) == Some(*v);
        self.exported.retain(same);
        self.maybe_exported.retain(same);
        self.current = state.clone();
        self.set_durable(state.clone());
        self.s.record_history();
        self.boundaries = vec![Boundary {
            pos: self.s.history_len(),
            durable: state.clone(),
            current: state,
            exported: self.exported.clone(),
            maybe_exported: self.maybe_exported.clone(),
        }];
    }

    /// Replaces the directory by one opened over `next`; `graceful` drops the
    /// old one first (else the old one is dropped only after `make_next` took the
    /// disk's snapshot).
    fn reopen(
        &mut self,
        graceful: bool,
        make_next: impl FnOnce(&SimStorage) -> SimStorage,
    ) -> Result<(), String> {
        if graceful {
            self.dir = None;
        }
        let next = make_next(&self.s);
        self.dir = None;
        let dir = open_sim(&next)?;
        // The table an open from the newest snapshot built is the one a
        // replay of every record builds (on a copy: the folder is locked).
        let full = open_sim_with(&next.crash_keeping(usize::MAX, 0), true)
            .map_err(|e| format!("full replay: {e}"))?;
        let (fast, slow) = (dir.describe_table(), full.describe_table());
        if fast != slow {
            return Err(format!(
                "open from the snapshot and full replay differ:\n{fast}\n---\n{slow}"
            ));
        }
        drop(full);
        self.s = next;
        self.dir = Some(dir);
        Ok(())
    }

    /// After an open that followed a power loss: which unterminated files were
    /// left in the log is known only if there were none.
    fn after_power_loss(&mut self) {
        self.ghosts = match self.dir().stats().files_dropped_on_open {
            0 => Some(BTreeSet::new()),
            _ => None,
        };
    }

    fn read_all(&self) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let mut out = BTreeMap::new();
        for p in self.dir().list_files() {
            let slice = self
                .dir()
                .open_read(&p)
                .map_err(|e| format!("open_read of listed {p:?}: {e}"))?;
            out.insert(p.to_string_lossy().into_owned(), slice_bytes(&slice)?);
        }
        Ok(out)
    }

    fn step(&mut self, op: &Op) -> Result<(), String> {
        match *op {
            Op::Write {
                name,
                len,
                seed,
                terminate,
            } => {
                let name = NAMES[name];
                let path = Path::new(name);
                if self.current.contains_key(name) {
                    match self.dir().open_write(path) {
                        Err(OpenWriteError::FileAlreadyExists(_)) => {}
                        Err(e) => return Err(format!("open_write of existing {name}: {e}")),
                        Ok(_) => return Err(format!("open_write of existing {name} succeeded")),
                    }
                } else {
                    let before = self.current.clone();
                    let syncs = self.s.syncs();
                    let version = self.new_version();
                    if let Some(g) = self.ghosts.as_mut() {
                        g.remove(name);
                    }
                    write_file(self.dir(), path, &pattern(version, len), seed, terminate)
                        .map_err(|e| format!("writing {name}: {e}"))?;
                    self.current.insert(
                        name.to_string(),
                        Content {
                            version,
                            len,
                            terminated: terminate,
                        },
                    );
                    if self.s.syncs() != syncs {
                        // A container file was sealed while this file was being
                        // written: everything before it is durable, it is not.
                        self.set_durable(before);
                    }
                }
            }
            Op::Delete { name } => {
                let name = NAMES[name];
                let before = self.current.clone();
                let syncs = self.s.syncs();
                match (
                    self.current.contains_key(name),
                    self.dir().delete(Path::new(name)),
                ) {
                    (true, Ok(())) => {
                        self.current.remove(name);
                        if self.s.syncs() != syncs {
                            self.set_durable(before);
                        }
                    }
                    (false, Err(DeleteError::FileDoesNotExist(_))) => {}
                    (had, res) => {
                        return Err(format!("delete of {name} (model has it: {had}): {res:?}"))
                    }
                }
            }
            Op::AtomicWrite { name, len } => {
                let name = NAMES[name];
                let version = self.new_version();
                if let Some(g) = self.ghosts.as_mut() {
                    g.remove(name);
                }
                self.dir()
                    .atomic_write(Path::new(name), &pattern(version, len))
                    .map_err(|e| format!("atomic_write of {name}: {e}"))?;
                self.current.insert(
                    name.to_string(),
                    Content {
                        version,
                        len,
                        terminated: true,
                    },
                );
                self.set_durable(self.current.clone());
            }
            Op::Sync => {
                self.dir()
                    .sync_directory()
                    .map_err(|e| format!("sync_directory: {e}"))?;
                self.set_durable(self.current.clone());
            }
            Op::Read { name } | Op::HoldSlice { name } => {
                let name = NAMES[name];
                let path = Path::new(name);
                match (self.current.get(name), self.dir().open_read(path)) {
                    (Some(c), Ok(slice)) => {
                        let want = bytes_of(c);
                        if slice_bytes(&slice)? != want {
                            return Err(format!("{name} does not read back as {c:?}"));
                        }
                        if name.ends_with(".json") {
                            let got = self
                                .dir()
                                .atomic_read(path)
                                .map_err(|e| format!("atomic_read of {name}: {e}"))?;
                            if got != want {
                                return Err(format!("atomic_read of {name} differs from {c:?}"));
                            }
                        }
                        if matches!(op, Op::HoldSlice { .. }) {
                            self.held.push((name.to_string(), slice, want));
                        }
                    }
                    (None, Err(OpenReadError::FileDoesNotExist(_))) => {}
                    (c, res) => {
                        return Err(format!(
                            "open_read of {name} (model: {c:?}): {:?}",
                            res.map(|s| s.len())
                        ))
                    }
                }
            }
            Op::Reopen { graceful } => {
                let expected = recovered(&self.current);
                let unterminated: Vec<String> = self
                    .current
                    .iter()
                    .filter(|(_, c)| !c.terminated)
                    .map(|(n, _)| n.clone())
                    .collect();
                // A killed process leaves its writes in the page cache, not
                // durable: the open must make what it shows durable.
                self.reopen(graceful, SimStorage::kill)?;
                let dropped = self.dir().stats().files_dropped_on_open;
                let known = self.ghosts.as_ref().map_or(0, BTreeSet::len);
                // A graceful close may write a snapshot, which forgets the
                // ghosts of earlier opens (they are not in the table).
                let forgotten = graceful && dropped == unterminated.len();
                if forgotten {
                    self.ghosts = Some(BTreeSet::new());
                }
                let ok = match self.ghosts {
                    Some(_) if forgotten => true,
                    Some(_) => dropped == known + unterminated.len(),
                    None => dropped >= unterminated.len(),
                };
                if !ok {
                    return Err(format!(
                        "{dropped} files dropped on open; the model had {unterminated:?} \
                         unterminated and {:?} dropped before",
                        self.ghosts
                    ));
                }
                match self.ghosts.as_mut() {
                    Some(g) => g.extend(unterminated),
                    None if dropped == unterminated.len() => {
                        self.ghosts = Some(unterminated.into_iter().collect())
                    }
                    None => {}
                }
                // What the open showed is durable (a later `Crash` checks it).
                self.install(expected);
                self.check_contents()?;
            }
            Op::Crash => {
                let expected = recovered(&self.durable);
                self.reopen(false, |s| s.crash())?;
                self.after_power_loss();
                self.install(expected);
                self.check_contents()?;
            }
            Op::CrashAt { frac } => {
                let lo = self.boundaries[0].pos;
                let hi = self.s.history_len();
                let n = lo + ((hi - lo) as u64 * frac as u64 / u16::MAX as u64) as usize;
                self.exports_at(n);
                let at: Vec<&Boundary> = self.boundaries.iter().filter(|b| b.pos == n).collect();
                let candidates: Vec<State> = if !at.is_empty() {
                    // Between two ops: exactly what was durable then.
                    at.iter().map(|b| recovered(&b.durable)).collect()
                } else {
                    // Inside an op: what was durable before it, or (if it sealed a
                    // container file) everything before it.
                    let k = self.boundaries.iter().position(|b| b.pos > n).unwrap();
                    let b = &self.boundaries[k - 1];
                    vec![recovered(&b.durable), recovered(&b.current)]
                };
                self.reopen(false, |s| s.crash_at(n))?;
                self.after_power_loss();
                self.install_matching(&candidates, &format!("crash at {n} of {lo}..{hi}"))?;
            }
            Op::TornCrash { frac, torn } => {
                let unsynced = self.s.unsynced_ops();
                let keep = ((unsynced as u64 + 1) * frac as u64 / (u16::MAX as u64 + 1)) as usize;
                let candidates: Vec<State> = self.since_durable.iter().map(recovered).collect();
                self.reopen(false, |s| s.crash_keeping(keep, torn as usize))?;
                self.after_power_loss();
                self.install_matching(
                    &candidates,
                    &format!("crash keeping {keep} of {unsynced} unsynced writes, torn at {torn}"),
                )?;
            }
            Op::ExportSome { mask } => {
                let chosen: Vec<&str> = NAMES
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask >> i & 1 == 1)
                    .map(|(_, n)| *n)
                    .collect();
                // What export_files may move: terminated files other than the
                // commit file that are not in a segment file yet.
                let eligible: Vec<(String, u64)> = chosen
                    .iter()
                    .filter(|n| **n != "meta.json")
                    .filter_map(|n| {
                        let c = self.current.get(*n)?;
                        c.terminated.then_some((n.to_string(), c.version))
                    })
                    .filter(|x| !self.exported.contains(x))
                    .collect();
                let surely = eligible
                    .iter()
                    .filter(|x| !self.maybe_exported.contains(*x))
                    .count();
                let segments = self.dir().stats().segment_files;
                let syncs = self.s.syncs();
                let paths: Vec<&Path> = chosen.iter().map(Path::new).collect();
                let report = self
                    .dir()
                    .export_files(&paths)
                    .map_err(|e| format!("export_files {chosen:?}: {e}"))?;
                if report.files < surely || report.files > eligible.len() {
                    return Err(format!(
                        "exported {report:?}, expected {surely}..={} of {eligible:?}",
                        eligible.len()
                    ));
                }
                let new_segments = self.dir().stats().segment_files - segments;
                if new_segments != usize::from(report.files > 0)
                    || report.segment_files != new_segments
                {
                    return Err(format!(
                        "{report:?}: {new_segments} more segment files mapped"
                    ));
                }
                for x in eligible {
                    self.maybe_exported.remove(&x);
                    self.exported.insert(x);
                }
                if self.s.syncs() != syncs {
                    // The `Export` record was synced, and the log before it.
                    self.set_durable(self.current.clone());
                }
            }
            Op::Snapshot => {
                let written = self
                    .dir()
                    .write_snapshot()
                    .map_err(|e| format!("write_snapshot: {e}"))?;
                if written {
                    // Sealing the container file made all appended durable,
                    // and the ghosts of earlier opens are not in the table.
                    self.set_durable(self.current.clone());
                    self.ghosts = Some(BTreeSet::new());
                }
            }
            Op::Reclaim => {
                let syncs = self.s.syncs();
                let report = self.dir().reclaim().map_err(|e| format!("reclaim: {e}"))?;
                OUT_OF_ORDER.with(|n| n.set(n.get() + report.out_of_order));
                if self.s.syncs() != syncs {
                    // Sealing a container file or syncing the log before removing
                    // anything: all that was appended is durable.
                    self.set_durable(self.current.clone());
                }
                if report.container_files_removed > 0 {
                    // Creations of unterminated files from earlier runs may have
                    // gone with the removed files.
                    self.ghosts = None;
                }
                self.check_contents()?;
            }
        }
        if self.since_durable.last() != Some(&self.current) {
            self.since_durable.push(self.current.clone());
        }
        self.boundaries.push(Boundary {
            pos: self.s.history_len(),
            durable: self.durable.clone(),
            current: self.current.clone(),
            exported: self.exported.clone(),
            maybe_exported: self.maybe_exported.clone(),
        });
        self.check_visible()
    }

    /// After a power loss with several possible outcomes: the directory shows one
    /// of `candidates` exactly, which becomes the model.
    fn install_matching(&mut self, candidates: &[State], what: &str) -> Result<(), String> {
        let real = self.read_all()?;
        let found = candidates.iter().find(|c| {
            c.len() == real.len()
                && c.iter()
                    .all(|(name, content)| real.get(name) == Some(&bytes_of(content)))
        });
        match found {
            Some(state) => {
                self.install(state.clone());
                Ok(())
            }
            None => {
                let mut msg = format!(
                    "after {what} the directory shows {}, none of:",
                    describe_real(&real)
                );
                for c in candidates {
                    let _ = write!(msg, "\n  {}", describe(c));
                }
                Err(msg)
            }
        }
    }

    /// Before a power loss at history position `n`: the exports durable then are
    /// those of the last op boundary at or before `n`; inside an op, what that op
    /// exported may or may not have been.
    fn exports_at(&mut self, n: usize) {
        let last = self
            .boundaries
            .iter()
            .rposition(|b| b.pos <= n)
            .expect("the first boundary is where the history starts");
        let b = &self.boundaries[last];
        let exported = b.exported.clone();
        let mut maybe = b.maybe_exported.clone();
        if b.pos < n {
            let next = &self.boundaries[last + 1];
            maybe.extend(next.exported.iter().chain(&next.maybe_exported).cloned());
        }
        maybe.retain(|x| !exported.contains(x));
        self.exported = exported;
        self.maybe_exported = maybe;
    }

    /// Cheap checks, after every step.
    fn check_visible(&self) -> Result<(), String> {
        let dir = self.dir();
        let stats = dir.stats();
        if stats.fds_held > 2 {
            return Err(format!("{} fds held", stats.fds_held));
        }
        // The folder holds exactly the files the directory accounts for.
        let names = self.s.list().map_err(|e| format!("list: {e}"))?;
        let segments = names.iter().filter(|n| n.ends_with(".seg")).count();
        let containers = names.iter().filter(|n| n.ends_with(".log")).count();
        if segments + containers != names.len()
            || segments != stats.segment_files
            || containers != stats.container_files
        {
            return Err(format!("the folder holds {names:?}; {stats:?}"));
        }
        let shown_exported = self
            .exported
            .iter()
            .any(|(n, v)| self.current.get(n).map(|c| c.version) == Some(*v));
        if shown_exported && stats.segment_files == 0 {
            return Err(format!("{:?} exported, no segment file", self.exported));
        }
        if stats.poisoned {
            return Err("container poisoned".into());
        }
        for name in NAMES {
            let exists = dir
                .exists(Path::new(name))
                .map_err(|e| format!("exists({name}): {e}"))?;
            if exists != self.current.contains_key(name) {
                return Err(format!(
                    "exists({name}) = {exists}, model: {}",
                    describe(&self.current)
                ));
            }
        }
        let listed: Vec<String> = dir
            .list_files()
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let model: Vec<String> = self.current.keys().cloned().collect();
        if listed != model {
            return Err(format!("list_files {listed:?}, model {model:?}"));
        }
        for (name, slice, want) in &self.held {
            if slice_bytes(slice)? != *want {
                return Err(format!("a held slice of {name} changed"));
            }
        }
        Ok(())
    }

    /// Every file reads back byte-identical to the model, and there is no other.
    fn check_contents(&self) -> Result<(), String> {
        let real = self.read_all()?;
        let same = real.len() == self.current.len()
            && self
                .current
                .iter()
                .all(|(name, c)| real.get(name) == Some(&bytes_of(c)));
        if !same {
            return Err(format!(
                "directory shows {}, model {}",
                describe_real(&real),
                describe(&self.current)
            ));
        }
        Ok(())
    }
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = Harness::new().map_err(TestCaseError::fail)?;
    for (i, op) in ops.iter().enumerate() {
        h.step(op)
            .map_err(|e| TestCaseError::fail(format!("step {i}, {op:?}: {e}")))?;
    }
    h.check_contents()
        .map_err(|e| TestCaseError::fail(format!("at the end: {e}")))
}

proptest! {
    // Failures found are kept as the plain tests below, not in a seed file.
    #![proptest_config(ProptestConfig {
        // `JOCKY_MODEL_CASES=5000` for a longer search.
        cases: std::env::var("JOCKY_MODEL_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn directory_matches_model(ops in prop::collection::vec(op_strategy(), 1..40)) {
        run(&ops)?;
    }

    #[test]
    fn directory_matches_model_with_export(
        ops in prop::collection::vec(op_strategy_with_maintenance(false), 1..40)
    ) {
        run(&ops)?;
    }

    #[test]
    fn directory_matches_model_with_export_and_reclaim(
        ops in prop::collection::vec(op_strategy_with_maintenance(true), 1..40)
    ) {
        run(&ops)?;
    }
}

fn run_case(ops: &[Op]) {
    if let Err(e) = run(ops) {
        panic!("{e}");
    }
}

/// Found by `directory_matches_model_with_export` (a model mistake): a power
/// loss rolls back a delete, and the file is back in its segment file.
#[test]
fn export_then_a_rolled_back_delete() {
    run_case(&[
        Op::Write {
            name: 3,
            len: 0,
            seed: 0,
            terminate: true,
        },
        Op::ExportSome { mask: 8 },
        Op::Delete { name: 3 },
        Op::Crash,
        Op::ExportSome { mask: 8 },
    ]);
}

/// Found by `directory_matches_model_with_export` (a model mistake): a power
/// loss at an instant before an export.
#[test]
fn power_loss_before_an_export() {
    run_case(&[
        Op::AtomicWrite { name: 5, len: 0 },
        Op::TornCrash { frac: 0, torn: 0 },
        Op::ExportSome { mask: 32 },
        Op::CrashAt { frac: 0 },
    ]);
}

/// Found by `directory_matches_model_with_export_and_reclaim`.
#[test]
fn reclaim_then_reopen_after_deleting_a_file_spanning_three_container_files() {
    run_case(&[
        Op::Write {
            name: 0,
            len: 854_689,
            seed: 0,
            terminate: true,
        },
        Op::Write {
            name: 3,
            len: 1_174_665,
            seed: 0,
            terminate: true,
        },
        Op::Delete { name: 3 },
        Op::Reclaim,
        Op::Reopen { graceful: false },
    ]);
}

/// Found by comparing an open from a snapshot with a full replay: an atomic
/// file moved into a segment file was `Atomic` in the live table but
/// `Terminated` after a replay of its `Export` record.
#[test]
fn snapshot_of_an_exported_atomic_file() {
    run(&[
        Op::AtomicWrite { name: 5, len: 0 },
        Op::ExportSome { mask: 32 },
        Op::Snapshot,
        Op::Reopen { graceful: false },
    ])
    .unwrap();
}

/// Found the same way: a file copied forward (an `AtomicWrite` record with
/// its id) stayed `Terminated` in the live table but replayed as `Atomic`;
/// and a snapshot kept the evidence of a segment file reclaimed since.
#[test]
fn snapshot_after_a_reclaim() {
    run(&[
        Op::Write {
            name: 5,
            len: 300_000,
            seed: 0,
            terminate: true,
        },
        Op::ExportSome { mask: 32 },
        Op::Delete { name: 5 },
        Op::AtomicWrite { name: 4, len: 0 },
        Op::Reopen { graceful: false },
        Op::Snapshot,
        Op::Reclaim,
        Op::Reopen { graceful: false },
    ])
    .unwrap();
}

/// A gap in the log (dead files behind a live one, reclaimed out of order once
/// a snapshot follows them), then power losses at instants of the reclaim and
/// after it, and reopens (each compared with a full replay, which must start
/// after the gap). 12,000 random cases of `..._with_export_and_reclaim` made
/// 296 such removals and found nothing; this one keeps the path covered.
#[test]
fn power_loss_around_a_gap_in_the_log() {
    let write = |name, len, seed| Op::Write {
        name,
        len,
        seed,
        terminate: true,
    };
    for crash in [
        Op::CrashAt { frac: 20_000 },
        Op::CrashAt { frac: 60_000 },
        Op::Crash,
    ] {
        OUT_OF_ORDER.with(|n| n.set(0));
        run_case(&[
            // 2.7 MB live, then 1.9 MB dead: no prefix of the log pays for
            // its copies, the dead files go out of order.
            write(0, 900_000, 1),
            write(4, 900_000, 5),
            write(5, 900_000, 6),
            write(1, 950_000, 2),
            write(2, 950_000, 3),
            Op::Delete { name: 1 },
            Op::Delete { name: 2 },
            Op::Snapshot,
            Op::Reclaim,
            crash.clone(),
            Op::Reopen { graceful: false },
            write(3, 400_000, 4),
            Op::Sync,
            Op::Reopen { graceful: true },
        ]);
        assert!(
            OUT_OF_ORDER.with(|n| n.get()) >= 1,
            "no file was reclaimed out of order before {crash:?}"
        );
    }
}
