//! The background work: exporting committed segments and reclaiming space,
//! for every engine under an automatic [`crate::policy::ExportPolicy`], done
//! by a process-wide pool of [`POOL_THREADS`] threads (started at the first
//! commit or open in the process and kept). An engine is registered with the
//! pool at its first commit (or open) and leaves it when it closes: opening an
//! index starts no thread, and a process with thousands of open indexes has
//! two maintenance threads, not thousands. Passes of one engine never overlap;
//! passes of different engines run side by side on the pool's threads, taken
//! in turn.
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
    /// A pass is under way.
    busy: bool,
    /// The engine is in the pool's queue.
    registered: bool,
    /// The last handle is going: finish the pass under way, take no other.
    stop: bool,
    /// Minimum segment size to export and the quiet period (from the policy,
    /// at registration).
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
            busy: false,
            registered: false,
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
    quiet.max(median * 2).min(quiet * 10)
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

/// One registered engine.
struct Slot {
    engine: Weak<dyn Maintained>,
    state: Arc<(Mutex<State>, Condvar)>,
}

struct Queue {
    slots: Vec<Slot>,
    /// Where the next search for work starts (engines take turns).
    next: usize,
    /// Threads started.
    threads: usize,
}

struct Pool {
    queue: Mutex<Queue>,
    /// Signalled when an engine is registered, kicked or stopped.
    wake: Condvar,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        queue: Mutex::new(Queue {
            slots: Vec::new(),
            next: 0,
            threads: 0,
        }),
        wake: Condvar::new(),
    })
}

thread_local! {
    /// Whether this thread is one of the pool's (it must not wait for a pass
    /// to end: it may be running it).
    static IN_POOL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Worker {
    /// Asks for a pass after a commit (or an open), registering the engine
    /// with the pool and starting the pool's threads if needed.
    pub fn kick<T: Maintained>(engine: &Arc<T>) {
        let Some((min, quiet)) = engine.auto_export() else {
            return;
        };
        let shared = engine.worker().state.clone();
        let register = {
            let mut s = lock(&shared.0);
            if s.stop {
                return;
            }
            s.pending = true;
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
            let register = !s.registered;
            s.registered = true;
            register
        };
        let the_pool = pool();
        let mut q = lock(&the_pool.queue);
        if register {
            let weak: Weak<T> = Arc::downgrade(engine);
            q.slots.push(Slot {
                engine: weak,
                state: shared.clone(),
            });
        }
        while q.threads < POOL_THREADS {
            let spawned = std::thread::Builder::new()
                .name("jocky-maintain".into())
                .spawn(|| {
                    IN_POOL.with(|p| p.set(true));
                    run(pool())
                });
            match spawned {
                Ok(_) => q.threads += 1,
                Err(e) => {
                    log::warn!("could not start a maintenance thread: {e}");
                    break;
                }
            }
        }
        if q.threads == 0 {
            // No thread to do the work: none is pending.
            drop(q);
            let (m, cv) = &*shared;
            let mut s = lock(m);
            s.pending = false;
            s.export_due = false;
            s.registered = false;
            drop(s);
            cv.notify_all();
            lock(&the_pool.queue)
                .slots
                .retain(|slot| !Arc::ptr_eq(&slot.state, &shared));
            return;
        }
        drop(q);
        the_pool.wake.notify_all();
    }

    /// Takes no more passes for this engine and waits for the one under way,
    /// so that the engine it holds for the pass is released before this
    /// returns (the caller then closes it on its own thread).
    pub fn stop_and_join(&self) {
        let (m, cv) = &*self.state;
        let mut s = lock(m);
        s.stop = true;
        s.pending = false;
        s.export_due = false;
        if !IN_POOL.with(|p| p.get()) {
            while s.busy {
                s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        }
        let registered = std::mem::replace(&mut s.registered, false);
        drop(s);
        cv.notify_all();
        if registered {
            lock(&pool().queue)
                .slots
                .retain(|slot| !Arc::ptr_eq(&slot.state, &self.state));
        }
    }

    /// Blocks until no pass is pending, waiting for quiet, or under way (tests,
    /// benchmarks).
    pub fn wait_idle(&self) {
        let (m, cv) = &*self.state;
        let mut s = lock(m);
        while s.registered && (s.pending || s.busy || s.export_due) {
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

/// A pass to run now, or when the next one is due.
enum Next {
    Run(Weak<dyn Maintained>, Arc<(Mutex<State>, Condvar)>, Pass),
    WaitUntil(Option<Instant>),
}

/// The first engine, from `q.next` on, with a pass to run now (marked busy),
/// or the earliest time one will have one. Drops engines that are gone.
fn take_work(q: &mut Queue) -> Next {
    q.slots.retain(|slot| {
        let gone = slot.engine.strong_count() == 0;
        if gone {
            let (m, cv) = &*slot.state;
            lock(m).registered = false;
            cv.notify_all();
        }
        !gone
    });
    let n = q.slots.len();
    let now = Instant::now();
    let mut earliest: Option<Instant> = None;
    for k in 0..n {
        let i = (q.next + k) % n;
        let slot = &q.slots[i];
        let mut s = lock(&slot.state.0);
        if s.busy || s.stop {
            continue;
        }
        let pass = if s.pending {
            s.pending = false;
            s.export_due = s.quiet.is_some();
            Some(Pass::Commit)
        } else if let (true, Some(quiet)) = (s.export_due, s.quiet) {
            let due = s.last_commit + quiet_period(quiet, &s.gaps);
            if due <= now {
                s.export_due = false;
                Some(Pass::Quiet)
            } else {
                earliest = Some(earliest.map_or(due, |e| e.min(due)));
                None
            }
        } else {
            None
        };
        if let Some(pass) = pass {
            s.busy = true;
            q.next = (i + 1) % n;
            return Next::Run(slot.engine.clone(), slot.state.clone(), pass);
        }
    }
    Next::WaitUntil(earliest)
}

fn run(pool: &'static Pool) {
    let mut q = lock(&pool.queue);
    loop {
        match take_work(&mut q) {
            Next::WaitUntil(None) => {
                q = pool.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            Next::WaitUntil(Some(at)) => {
                let wait = at.saturating_duration_since(Instant::now());
                q = pool
                    .wake
                    .wait_timeout(q, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            Next::Run(weak, state, pass) => {
                drop(q);
                let more = match weak.upgrade() {
                    Some(engine) => {
                        let (min, quiet) = {
                            let s = lock(&state.0);
                            (s.min, s.quiet)
                        };
                        let more = match (pass, quiet) {
                            (Pass::Commit, Some(_)) => engine.maintain(None, false),
                            (Pass::Quiet, _) => engine.maintain(Some(min), true),
                            (Pass::Commit, None) => engine.maintain(Some(min), false),
                        };
                        drop(engine);
                        more
                    }
                    None => false,
                };
                {
                    let (m, cv) = &*state;
                    let mut s = lock(m);
                    s.busy = false;
                    // Reclamation bounded its copies: go on without waiting
                    // for a commit.
                    s.pending |= more && !s.stop;
                    drop(s);
                    cv.notify_all();
                }
                q = lock(&pool.queue);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

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
