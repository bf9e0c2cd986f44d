//! The background work: exporting committed segments and reclaiming space,
//! for every engine under an automatic [`crate::policy::ExportPolicy`], done
//! by a process-wide pool of [`POOL_THREADS`] threads (started at the first
//! commit or open in the process, and kept). An engine with a pass to run
//! waits in the pool's ready queue; one waiting for a quiet period has an
//! entry among its timers; an idle engine is in neither and costs the pool
//! nothing (no polling): opening an index starts no thread, a commit costs a
//! lock or two, and a process with thousands of open indexes has two
//! maintenance threads, not thousands. Passes of one engine never overlap;
//! passes of different engines run on either of the pool's threads, in the
//! order they were asked for (a thread that takes a pass wakes the other if
//! more is waiting).
//!
//! Commits only raise a flag (the queue is one bit deep: many commits while a
//! pass runs cause one more pass, never a backlog). Under `WhenQuiet` a commit
//! triggers reclamation at once and export once no commit has come for the
//! quiet period — stretched to twice the recent gap between commits
//! ([`quiet_period`]): a bulk load that commits every few seconds is not
//! "quiet" between two of its commits, and exporting its fresh segments there
//! would write most of them twice more (export, then the merge that replaces
//! them). The pool holds engines weakly: a pass keeps its engine alive only
//! while it runs, and closing waits for that pass ([`Worker::stop_and_join`]).
//!
//! Locks: the pool's queue, then an engine's worker state (a thread holding
//! the state never takes the queue); neither is held during a pass.

use crate::sync::lock;
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

struct State {
    /// A commit asked for a pass that has not started yet.
    pending: bool,
    /// An export waits for the quiet period to pass.
    export_due: bool,
    last_commit: Instant,
    /// Commits seen (the first has no gap before it).
    commits: u64,
    /// The last gaps between commits, oldest first.
    gaps: std::collections::VecDeque<Duration>,
    /// The quiet period passed: an export pass is to run.
    quiet_due: bool,
    /// A pass is under way.
    busy: bool,
    /// The engine is in the pool's ready queue.
    queued: bool,
    /// The engine has an entry among the pool's timers.
    timer: bool,
    /// The last handle is going: finish the pass under way, take no other.
    stop: bool,
    /// Minimum segment size to export and the quiet period (from the policy,
    /// at the last kick).
    min: u64,
    quiet: Option<Duration>,
}

impl Default for State {
    fn default() -> Self {
        State {
            pending: false,
            export_due: false,
            last_commit: Instant::now(),
            commits: 0,
            gaps: std::collections::VecDeque::new(),
            quiet_due: false,
            busy: false,
            queued: false,
            timer: false,
            stop: false,
            min: 0,
            quiet: None,
        }
    }
}

/// An engine's side of the background work: its state, shared with the pool.
#[derive(Default)]
pub(crate) struct Worker {
    state: Arc<(Mutex<State>, Condvar)>,
    /// What the pool's queues hold of this engine (made at the first kick).
    slot: OnceLock<Arc<Slot>>,
}

/// How many gaps between commits [`quiet_period`] looks at.
const GAPS_KEPT: usize = 8;

/// Threads of the process-wide pool: passes of two engines can run at once
/// (an export of one does not hold back another's reclamation), no more (the
/// passes are I/O and copies; indexing needs the cores).
pub(crate) const POOL_THREADS: usize = 2;

/// The quiet period `WhenQuiet` waits for: at least `quiet`, twice the median
/// of the recent gaps between commits if that is longer, at most ten times
/// `quiet` (a server that commits steadily every minute still exports, after
/// 20 s by default).
pub(crate) fn quiet_period(
    quiet: Duration,
    gaps: &std::collections::VecDeque<Duration>,
) -> Duration {
    if gaps.is_empty() {
        return quiet;
    }
    let mut sorted: Vec<Duration> = gaps.iter().copied().collect();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    quiet
        .max(median.saturating_mul(2))
        .min(quiet.saturating_mul(10))
}

/// When the quiet period after the last commit ends; `None` if never (a
/// period too long to add to an instant: export is then never due).
fn quiet_end(s: &State, quiet: Duration) -> Option<Instant> {
    s.last_commit.checked_add(quiet_period(quiet, &s.gaps))
}

/// What the worker keeps up (the engine). The worker knows nothing else of it,
/// so the engine can own a worker without a dependency cycle.
pub(crate) trait Maintained: Send + Sync + 'static {
    /// The worker's state, owned by the maintained object.
    fn worker(&self) -> &Worker;
    /// Minimum segment size to export and how long to wait after the last
    /// commit (`None` at all: no background work).
    fn auto_export(&self) -> Option<(u64, Option<Duration>)>;
    /// One pass: export segments of at least `export_min` bytes (none when
    /// `None`), then reclaim; after a quiet period (`idle`) also seal the log's
    /// tail. Failures are logged and counted by the callee. Returns whether
    /// the reclamation stopped at its bound with more to do (another pass
    /// follows at once, not at the next commit).
    fn maintain(&self, export_min: Option<u64>, idle: bool) -> bool;
}

/// An engine as the pool's queues hold it: weakly.
struct Slot {
    /// Orders timers that end at the same instant.
    id: u64,
    engine: Weak<dyn Maintained>,
    state: Arc<(Mutex<State>, Condvar)>,
}

struct Queue {
    /// Engines with a pass to run now, in the order they asked; each at most
    /// once (`State::queued`), none while its pass runs.
    ready: std::collections::VecDeque<Arc<Slot>>,
    /// Engines waiting for the end of a quiet period, by when it ends (as
    /// known when the entry was made: a later commit moves it, which the
    /// entry finds out when it comes up); at most one per engine
    /// (`State::timer`).
    timers: std::collections::BTreeMap<(Instant, u64), Arc<Slot>>,
    next_id: u64,
    /// Threads started.
    threads: usize,
}

struct Pool {
    queue: Mutex<Queue>,
    /// Signalled when an engine has a pass to run.
    wake: Condvar,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        queue: Mutex::new(Queue {
            ready: std::collections::VecDeque::new(),
            timers: std::collections::BTreeMap::new(),
            next_id: 0,
            threads: 0,
        }),
        wake: Condvar::new(),
    })
}

thread_local! {
    /// The state of the engine whose pass this thread runs, if any: closing
    /// that engine from inside its own pass must not wait for the pass.
    static RUNNING: std::cell::Cell<*const ()> = const { std::cell::Cell::new(std::ptr::null()) };
}

/// Starts the pool's threads that are not running yet; how many run.
fn start_threads(q: &mut Queue) -> usize {
    while q.threads < POOL_THREADS {
        let spawned = std::thread::Builder::new()
            .name("jocky-maintain".into())
            .spawn(|| run(pool()));
        match spawned {
            Ok(_) => q.threads += 1,
            Err(e) => {
                log::warn!("could not start a maintenance thread: {e}");
                break;
            }
        }
    }
    q.threads
}

impl Worker {
    /// Asks for a pass after a commit (or an open), starting the pool's
    /// threads if needed. Costs a lock or two: the engine joins the ready
    /// queue unless it is in it already or its pass is under way (the pass's
    /// end queues it again).
    pub fn kick<T: Maintained>(engine: &Arc<T>) {
        let Some((min, quiet)) = engine.auto_export() else {
            return;
        };
        let worker = engine.worker();
        let the_pool = pool();
        let slot = worker
            .slot
            .get_or_init(|| {
                let id = {
                    let mut q = lock(&the_pool.queue);
                    q.next_id += 1;
                    q.next_id
                };
                let weak: Weak<T> = Arc::downgrade(engine);
                Arc::new(Slot {
                    id,
                    engine: weak,
                    state: worker.state.clone(),
                })
            })
            .clone();
        let (m, cv) = &*worker.state;
        let push = {
            let mut s = lock(m);
            if s.stop {
                return;
            }
            s.pending = true;
            // A commit restarts the quiet period, also one that just ended
            // and whose export pass has not started yet.
            s.quiet_due = false;
            if s.commits > 0 {
                let gap = s.last_commit.elapsed();
                if s.gaps.len() == GAPS_KEPT {
                    s.gaps.pop_front();
                }
                s.gaps.push_back(gap);
            }
            s.commits += 1;
            s.last_commit = Instant::now();
            s.min = min;
            s.quiet = quiet;
            let push = !s.queued && !s.busy;
            s.queued |= push;
            push
        };
        if !push {
            return;
        }
        let mut q = lock(&the_pool.queue);
        if start_threads(&mut q) == 0 {
            // No thread to do the work: none is pending.
            drop(q);
            let mut s = lock(m);
            s.pending = false;
            s.export_due = false;
            s.queued = false;
            drop(s);
            cv.notify_all();
            return;
        }
        q.ready.push_back(slot);
        drop(q);
        the_pool.wake.notify_one();
    }

    /// Takes no more passes for this engine and waits for the one under way,
    /// so that the engine it holds for the pass is released before this
    /// returns (the caller then closes it on its own thread). What the
    /// pool's queues still hold of it is dropped when it comes up.
    pub fn stop_and_join(&self) {
        let (m, cv) = &*self.state;
        let mut s = lock(m);
        s.stop = true;
        s.pending = false;
        s.export_due = false;
        s.quiet_due = false;
        let own = Arc::as_ptr(&self.state) as *const ();
        if RUNNING.with(|r| r.get()) != own {
            while s.busy {
                s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        }
        drop(s);
        cv.notify_all();
    }

    /// Blocks until no pass is pending, waiting for quiet, or under way (tests,
    /// benchmarks).
    pub fn wait_idle(&self) {
        let (m, cv) = &*self.state;
        let mut s = lock(m);
        while !s.stop && (s.pending || s.busy || s.export_due || s.quiet_due) {
            s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[derive(Clone, Copy)]
enum Pass {
    /// After a commit: reclaim (and export, without a quiet period).
    Commit,
    /// The quiet period passed: export, then reclaim.
    Quiet,
}

/// Moves the engines whose quiet period has ended to the ready queue; an
/// engine committed to since its entry was made gets a new one.
fn fire_timers(q: &mut Queue, now: Instant) {
    while q.timers.first_key_value().is_some_and(|(k, _)| k.0 <= now) {
        let Some((_, slot)) = q.timers.pop_first() else {
            break;
        };
        let mut s = lock(&slot.state.0);
        s.timer = false;
        let (true, false, Some(quiet)) = (s.export_due, s.stop, s.quiet) else {
            continue;
        };
        let Some(due) = quiet_end(&s, quiet) else {
            s.export_due = false;
            continue;
        };
        if due > now {
            s.timer = true;
            drop(s);
            let id = slot.id;
            q.timers.insert((due, id), slot);
            continue;
        }
        s.export_due = false;
        s.quiet_due = true;
        if !s.queued && !s.busy {
            s.queued = true;
            drop(s);
            q.ready.push_back(slot);
        }
    }
}

/// The next pass to run, its engine marked busy; `None` if the ready queue
/// has none (engines that stopped or are gone leave it here).
fn take_ready(q: &mut Queue) -> Option<(Arc<Slot>, Pass)> {
    while let Some(slot) = q.ready.pop_front() {
        let mut s = lock(&slot.state.0);
        s.queued = false;
        if s.stop || s.busy || slot.engine.strong_count() == 0 {
            continue;
        }
        let pass = if s.pending {
            s.pending = false;
            if let Some(quiet) = s.quiet {
                match quiet_end(&s, quiet) {
                    Some(due) => {
                        s.export_due = true;
                        if !s.timer {
                            s.timer = true;
                            q.timers.insert((due, slot.id), slot.clone());
                        }
                    }
                    None => s.export_due = false,
                }
            }
            Pass::Commit
        } else if s.quiet_due {
            s.quiet_due = false;
            Pass::Quiet
        } else {
            continue;
        };
        s.busy = true;
        drop(s);
        return Some((slot, pass));
    }
    None
}

/// One pass of `slot`'s engine (a panic in it is caught and logged: the
/// thread stays, the engine can close); whether more is to be done at once.
fn run_pass(slot: &Slot, pass: Pass) -> bool {
    let Some(engine) = slot.engine.upgrade() else {
        return false;
    };
    let (min, quiet) = {
        let s = lock(&slot.state.0);
        (s.min, s.quiet)
    };
    RUNNING.with(|r| r.set(Arc::as_ptr(&slot.state) as *const ()));
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match (pass, quiet) {
        (Pass::Commit, Some(_)) => engine.maintain(None, false),
        (Pass::Quiet, _) => engine.maintain(Some(min), true),
        (Pass::Commit, None) => engine.maintain(Some(min), false),
    }));
    drop(engine);
    RUNNING.with(|r| r.set(std::ptr::null()));
    ran.unwrap_or_else(|_| {
        log::error!("a background export/reclaim pass panicked; the next commit tries again");
        false
    })
}

fn run(pool: &'static Pool) {
    let mut q = lock(&pool.queue);
    loop {
        fire_timers(&mut q, Instant::now());
        let Some((slot, pass)) = take_ready(&mut q) else {
            q = match q.timers.first_key_value().map(|(k, _)| k.0) {
                None => pool.wake.wait(q).unwrap_or_else(|e| e.into_inner()),
                Some(at) => {
                    let wait = at.saturating_duration_since(Instant::now());
                    pool.wake
                        .wait_timeout(q, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            continue;
        };
        // More work, or a new timer the other thread may be asleep without:
        // let it look.
        if !q.ready.is_empty() || !q.timers.is_empty() {
            pool.wake.notify_all();
        }
        drop(q);
        let more = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_pass(&slot, pass)))
            .unwrap_or(false);
        let requeue = {
            let (m, cv) = &*slot.state;
            let mut s = lock(m);
            s.busy = false;
            // Reclamation bounded its copies: go on without waiting for a
            // commit.
            s.pending |= more && !s.stop;
            let requeue = (s.pending || s.quiet_due) && !s.stop && !s.queued;
            s.queued |= requeue;
            drop(s);
            cv.notify_all();
            requeue
        };
        q = lock(&pool.queue);
        if requeue {
            q.ready.push_back(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// An engine whose passes count themselves and may panic.
    #[derive(Default)]
    struct Fake {
        worker: Worker,
        passes: AtomicUsize,
        panic_next: AtomicBool,
        /// A pass of this engine is running (passes must never overlap).
        inside: AtomicBool,
        /// Two passes ran at once (a panic in the pass would be caught).
        overlapped: AtomicBool,
        /// The quiet period (`None`: export at each commit).
        quiet: Option<Duration>,
        /// How long the first pass takes.
        first_pass: Duration,
        /// When each pass started, and whether it was the quiet one.
        log: Mutex<Vec<(Instant, bool)>>,
    }

    impl Maintained for Fake {
        fn worker(&self) -> &Worker {
            &self.worker
        }
        fn auto_export(&self) -> Option<(u64, Option<Duration>)> {
            Some((0, self.quiet))
        }
        fn maintain(&self, _: Option<u64>, idle: bool) -> bool {
            if self.inside.swap(true, Ordering::SeqCst) {
                self.overlapped.store(true, Ordering::SeqCst);
            }
            let first = {
                let mut log = lock(&self.log);
                log.push((Instant::now(), idle));
                log.len() == 1
            };
            std::thread::sleep(if first {
                self.first_pass
            } else {
                Duration::from_millis(2)
            });
            self.passes.fetch_add(1, Ordering::SeqCst);
            self.inside.store(false, Ordering::SeqCst);
            if self.panic_next.swap(false, Ordering::SeqCst) {
                panic!("a bug in a pass");
            }
            false
        }
    }

    #[test]
    fn a_panicking_pass_leaves_the_pool_working_and_the_engine_closable() {
        let f = Arc::new(Fake::default());
        f.panic_next.store(true, Ordering::SeqCst);
        Worker::kick(&f);
        f.worker.wait_idle();
        assert_eq!(f.passes.load(Ordering::SeqCst), 1);
        Worker::kick(&f);
        f.worker.wait_idle();
        assert_eq!(f.passes.load(Ordering::SeqCst), 2);
        f.worker.stop_and_join();
        // Stopped: a kick runs nothing.
        Worker::kick(&f);
        f.worker.wait_idle();
        assert_eq!(f.passes.load(Ordering::SeqCst), 2);
    }

    /// A commit that comes after a quiet period ended but before its export
    /// pass started restarts the period: the export waits for a new one.
    #[test]
    fn a_commit_restarts_a_quiet_period_whose_export_has_not_started() {
        let quiet = Duration::from_millis(300);
        let f = Arc::new(Fake {
            quiet: Some(quiet),
            first_pass: Duration::from_millis(450),
            ..Fake::default()
        });
        Worker::kick(&f);
        // The quiet period ends during the first (long) pass; a commit
        // comes before the pass ends, so before any export could start.
        std::thread::sleep(Duration::from_millis(350));
        let last_kick = Instant::now();
        Worker::kick(&f);
        f.worker.wait_idle();
        let log = lock(&f.log).clone();
        let quiet_passes: Vec<Instant> = log.iter().filter(|p| p.1).map(|p| p.0).collect();
        assert_eq!(quiet_passes.len(), 1, "{} quiet passes", quiet_passes.len());
        let after = quiet_passes[0].duration_since(last_kick);
        assert!(
            after >= quiet - Duration::from_millis(5),
            "exported {after:?} after the last commit, quiet period {quiet:?}"
        );
        f.worker.stop_and_join();
    }

    #[test]
    fn a_quiet_period_too_long_to_end_never_exports_nor_blocks() {
        let f = Arc::new(Fake {
            quiet: Some(Duration::MAX),
            ..Fake::default()
        });
        Worker::kick(&f);
        Worker::kick(&f);
        f.worker.wait_idle();
        let log = lock(&f.log).clone();
        assert!(!log.is_empty() && log.iter().all(|p| !p.1), "{log:?}");
        f.worker.stop_and_join();
    }

    #[test]
    fn kicks_during_a_pass_make_one_more_pass_never_an_overlapping_one() {
        let engines: Vec<Arc<Fake>> = (0..8).map(|_| Arc::new(Fake::default())).collect();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        for e in &engines {
                            Worker::kick(e);
                        }
                    }
                });
            }
        });
        for e in &engines {
            e.worker.wait_idle();
            let passes = e.passes.load(Ordering::SeqCst);
            // At least one pass after the last kick; far fewer than the 200
            // kicks (one bit of queue: kicks while queued or running merge).
            assert!((1..200).contains(&passes), "{passes} passes");
            assert!(!e.overlapped.load(Ordering::SeqCst), "two passes at once");
            e.worker.stop_and_join();
        }
    }

    #[test]
    fn the_quiet_period_stretches_to_twice_the_gap_between_commits() {
        let q = Duration::from_secs(2);
        let s = Duration::from_secs;
        let gaps = |v: &[u64]| v.iter().map(|x| s(*x)).collect::<VecDeque<_>>();
        // No commits yet, or fast ones: the configured period.
        assert_eq!(quiet_period(q, &gaps(&[])), q);
        assert_eq!(
            quiet_period(q, &VecDeque::from([Duration::from_millis(100); 8])),
            q
        );
        // A bulk load committing every 3-4 s: quiet means 7 s without one.
        assert_eq!(quiet_period(q, &gaps(&[3, 4, 3, 4, 4, 3, 60])), s(8));
        // One long pause does not stretch it (the median ignores it).
        assert_eq!(quiet_period(q, &gaps(&[1, 1, 1, 300])), q);
        // Steady commits every minute: capped at ten times the period.
        assert_eq!(quiet_period(q, &gaps(&[60, 60, 60])), s(20));
    }
}
