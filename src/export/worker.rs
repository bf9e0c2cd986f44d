//! The background worker: one thread per container, started at the first commit
//! (or open) under an automatic [`crate::policy::ExportPolicy`], that exports
//! committed segments and reclaims space. Commits only raise a flag (the queue is
//! one bit deep: many commits while a pass runs cause one more pass, never a
//! backlog). Under `WhenQuiet` a commit triggers reclamation at once and export
//! once no commit has come for the quiet period — stretched to twice the recent
//! gap between commits ([`quiet_period`]): a bulk load that commits every few
//! seconds is not "quiet" between two of its commits, and exporting its fresh
//! segments there would write most of them twice more (export, then the merge
//! that replaces them). The thread holds the engine
//! weakly and ends once the engine is dropped.

use crate::sync::lock;
use std::sync::{Arc, Condvar, Mutex, Weak};
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
    /// The thread is alive.
    running: bool,
    /// The last handle is going: finish the pass under way and exit.
    stop: bool,
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
            running: false,
            stop: false,
        }
    }
}

#[derive(Default)]
pub(crate) struct Worker {
    state: Arc<(Mutex<State>, Condvar)>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// How many gaps between commits [`quiet_period`] looks at.
const GAPS_KEPT: usize = 8;

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

/// How often an idle thread checks whether its engine is gone.
const POLL: Duration = Duration::from_millis(500);

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

impl Worker {
    /// Asks for a pass after a commit, starting the thread if needed.
    pub fn kick<T: Maintained>(engine: &Arc<T>) {
        let Some((min, quiet)) = engine.auto_export() else {
            return;
        };
        let shared = engine.worker().state.clone();
        let (m, cv) = &*shared;
        let mut s = lock(m);
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
        if s.running {
            cv.notify_all();
            return;
        }
        s.running = true;
        drop(s);
        let weak = Arc::downgrade(engine);
        let spawned = std::thread::Builder::new()
            .name("jocky-export".into())
            .spawn(move || run(weak, shared, min, quiet));
        match spawned {
            Ok(h) => *lock(&engine.worker().thread) = Some(h),
            Err(e) => {
                log::warn!("could not start the export worker: {e}");
                lock(&engine.worker().state.0).running = false;
            }
        }
    }

    /// Stops the thread (after the pass under way) and joins it, so that the
    /// engine it borrows for a pass is released on the caller's thread.
    pub fn stop_and_join(&self) {
        {
            let (m, cv) = &*self.state;
            lock(m).stop = true;
            cv.notify_all();
        }
        let handle = lock(&self.thread).take();
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    /// Blocks until no pass is pending, waiting for quiet, or under way (tests,
    /// benchmarks).
    pub fn wait_idle(&self) {
        let (m, cv) = &*self.state;
        let mut s = lock(m);
        while s.running && (s.pending || s.busy || s.export_due) {
            s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

enum Pass {
    /// After a commit: reclaim (and export, without a quiet period).
    Commit,
    /// The quiet period passed: export, then reclaim.
    Quiet,
}

fn run<T: Maintained>(
    weak: Weak<T>,
    shared: Arc<(Mutex<State>, Condvar)>,
    min: u64,
    quiet: Option<Duration>,
) {
    let (m, cv) = &*shared;
    loop {
        let pass = {
            let mut s = lock(m);
            loop {
                if s.stop {
                    // Closing: work not started waits for the next open.
                    s.running = false;
                    s.pending = false;
                    s.export_due = false;
                    cv.notify_all();
                    return;
                }
                if s.pending {
                    s.pending = false;
                    s.export_due = quiet.is_some();
                    break Pass::Commit;
                }
                let wait = match (s.export_due, quiet) {
                    (true, Some(q)) => {
                        let q = quiet_period(q, &s.gaps);
                        let since = s.last_commit.elapsed();
                        if since >= q {
                            s.export_due = false;
                            break Pass::Quiet;
                        }
                        (q - since).min(POLL)
                    }
                    _ => POLL,
                };
                let (g, _) = cv.wait_timeout(s, wait).unwrap_or_else(|e| e.into_inner());
                s = g;
                if !s.pending && weak.strong_count() == 0 {
                    s.running = false;
                    s.export_due = false;
                    cv.notify_all();
                    return;
                }
            }
        };
        let Some(engine) = weak.upgrade() else {
            let mut s = lock(m);
            s.running = false;
            s.pending = false;
            s.export_due = false;
            cv.notify_all();
            return;
        };
        lock(m).busy = true;
        let more = match (pass, quiet) {
            (Pass::Commit, Some(_)) => engine.maintain(None, false),
            (Pass::Quiet, _) => engine.maintain(Some(min), true),
            (Pass::Commit, None) => engine.maintain(Some(min), false),
        };
        drop(engine);
        let mut s = lock(m);
        s.busy = false;
        // Reclamation bounded its copies: go on without waiting for a commit.
        s.pending |= more;
        drop(s);
        cv.notify_all();
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
