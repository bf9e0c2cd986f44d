//! The background worker: one thread per container, started at the first commit
//! under [`crate::policy::ExportPolicy::OnCommit`], that exports committed
//! segments and reclaims space. Commits only raise a flag (the queue is one bit
//! deep: many commits while a pass runs cause one more pass, never a backlog).
//! The thread holds the engine weakly and ends once the engine is dropped.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use crate::engine::{lock, Engine, MaintenanceCounters};

#[derive(Default)]
struct State {
    /// A commit asked for a pass that has not started yet.
    pending: bool,
    /// A pass is under way.
    busy: bool,
    /// The thread is alive.
    running: bool,
}

#[derive(Default)]
pub(crate) struct Worker {
    state: Arc<(Mutex<State>, Condvar)>,
}

impl Worker {
    /// Asks for a pass after a commit, starting the thread if needed.
    pub fn kick(engine: &Arc<Engine>) {
        let Some(min) = engine.auto_export_min() else {
            return;
        };
        let shared = engine.worker.state.clone();
        let (m, cv) = &*shared;
        let mut s = lock(m);
        s.pending = true;
        if s.running {
            cv.notify_all();
            return;
        }
        s.running = true;
        drop(s);
        let weak = Arc::downgrade(engine);
        let spawned = std::thread::Builder::new()
            .name("jocky-export".into())
            .spawn(move || run(weak, shared, min));
        if let Err(e) = spawned {
            log::warn!("could not start the export worker: {e}");
            lock(&engine.worker.state.0).running = false;
        }
    }

    /// Blocks until no pass is pending or under way (tests, benchmarks).
    pub fn wait_idle(&self) {
        let (m, cv) = &*self.state;
        let mut s = lock(m);
        while s.running && (s.pending || s.busy) {
            s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn run(weak: Weak<Engine>, shared: Arc<(Mutex<State>, Condvar)>, min: u64) {
    let (m, cv) = &*shared;
    loop {
        {
            let mut s = lock(m);
            while !s.pending {
                let (g, timeout) = cv
                    .wait_timeout(s, Duration::from_millis(500))
                    .unwrap_or_else(|e| e.into_inner());
                s = g;
                if timeout.timed_out() && !s.pending && weak.strong_count() == 0 {
                    s.running = false;
                    cv.notify_all();
                    return;
                }
            }
        }
        let Some(engine) = weak.upgrade() else {
            let mut s = lock(m);
            s.running = false;
            s.pending = false;
            cv.notify_all();
            return;
        };
        // Clear the flag before the pass: a commit during it asks for another.
        {
            let mut s = lock(m);
            s.pending = false;
            s.busy = true;
        }
        let result = engine
            .export_committed(min)
            .and_then(|_| engine.reclaim().map(|_| ()));
        if let Err(e) = result {
            log::warn!("background export/reclaim failed: {e}");
            MaintenanceCounters::add(&engine.counters.background_errors, 1);
        }
        drop(engine);
        lock(m).busy = false;
        cv.notify_all();
    }
}
