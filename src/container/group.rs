//! Group commit: concurrent sync requests share `fdatasync`s without queueing
//! on a lock that is held across I/O.
//!
//! One caller at a time is the *leader*: it runs sync rounds (hand the stage
//! over, wait until it is written, `fdatasync`) while the others wait on a
//! condition variable for the durable watermark to pass their target. A
//! waiter registers its target before it sleeps, so the leader knows when
//! someone still needs a round: it runs up to [`MAX_ROUNDS`] of them before
//! handing the lead back, then wakes every waiter at once.
//!
//! Why not a mutex around the round (what this replaced): each waiter had to
//! take the mutex in turn just to learn that the round before covered it. On a
//! busy machine every hand-over waits for the next waiter to be scheduled, so
//! with 64 committing threads a request waited 28 ms on average for rounds
//! that took 0.7 ms (`examples/tenant_threads.rs`, 2026-11-28). Here the
//! state's mutex guards only a few words and is never held across I/O.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use crate::sync::lock;

/// Rounds a leader runs for others before it hands the lead back (its own
/// request is answered by the first). Bounds how long one caller can be kept
/// serving the others.
pub(super) const MAX_ROUNDS: usize = 4;

#[derive(Debug, Default)]
struct State {
    /// Someone is running rounds.
    leading: bool,
    /// The highest log position any caller asked to be made durable.
    wanted: u64,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct GroupCommit {
    state: Mutex<State>,
    done: Condvar,
}

impl GroupCommit {
    /// Makes `target` durable: returns once `durable` is at least `target`
    /// (`Ok`), or with the error of a round this caller ran. `round` makes
    /// everything appended so far durable and raises `durable`; a waiter
    /// whose leader failed runs a round itself (which fails too if the
    /// container is poisoned).
    pub fn sync<E>(
        &self,
        target: u64,
        durable: &AtomicU64,
        mut round: impl FnMut() -> Result<(), E>,
    ) -> Result<(), E> {
        let mut st = lock(&self.state);
        st.wanted = st.wanted.max(target);
        loop {
            if durable.load(Ordering::SeqCst) >= target {
                return Ok(());
            }
            if st.leading {
                st = self.done.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.leading = true;
            drop(st);
            // Hands the lead back even if a round panics (else every waiter
            // would sleep forever).
            let lead = Lead(self);
            let mut result = Ok(());
            for _ in 0..MAX_ROUNDS {
                result = round();
                let more = lock(&self.state).wanted > durable.load(Ordering::SeqCst);
                if result.is_err() || !more {
                    break;
                }
            }
            drop(lead);
            // A round this caller ran covers everything appended before it,
            // its own request included: done, whatever the watermark says
            // (a caller never runs more than `MAX_ROUNDS` rounds).
            return result;
        }
    }
}

/// The lead, held by the caller running rounds; dropping it (also while
/// unwinding) hands it back and wakes every waiter.
struct Lead<'a>(&'a GroupCommit);

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).leading = false;
        self.0.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// A log whose `appended` position moves ahead of `durable`; a round makes
    /// everything appended so far durable.
    #[derive(Default)]
    struct Log {
        appended: AtomicU64,
        durable: AtomicU64,
        rounds: AtomicUsize,
        group: GroupCommit,
    }

    impl Log {
        fn append_and_sync(&self) -> Result<(), String> {
            let target = self.appended.fetch_add(1, Ordering::SeqCst) + 1;
            self.group.sync(target, &self.durable, || {
                let end = self.appended.load(Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(1));
                self.rounds.fetch_add(1, Ordering::SeqCst);
                self.durable.fetch_max(end, Ordering::SeqCst);
                Ok::<(), String>(())
            })?;
            assert!(self.durable.load(Ordering::SeqCst) >= target);
            Ok(())
        }
    }

    #[test]
    fn every_caller_returns_durable_and_concurrent_callers_share_rounds() {
        let log = Arc::new(Log::default());
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        log.append_and_sync().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(log.durable.load(Ordering::SeqCst), 16 * 20);
        let rounds = log.rounds.load(Ordering::SeqCst);
        assert!(
            rounds < 16 * 20,
            "{rounds} rounds for 320 requests: no request shared one"
        );
    }

    #[test]
    fn a_failed_round_fails_its_caller_and_waiters_retry() {
        let durable = AtomicU64::new(0);
        let group = GroupCommit::default();
        let failures = AtomicUsize::new(0);
        let r: Result<(), &str> = group.sync(5, &durable, || {
            failures.fetch_add(1, Ordering::SeqCst);
            Err("fdatasync failed")
        });
        assert_eq!(r, Err("fdatasync failed"));
        assert_eq!(
            failures.load(Ordering::SeqCst),
            1,
            "no retry after an error"
        );
        // The lead was handed back: the next caller runs its own round.
        let r: Result<(), &str> = group.sync(5, &durable, || {
            durable.store(5, Ordering::SeqCst);
            Ok(())
        });
        assert_eq!(r, Ok(()));
    }

    #[test]
    fn a_panicking_round_hands_the_lead_back() {
        let durable = AtomicU64::new(0);
        let group = GroupCommit::default();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = group.sync(5, &durable, || -> Result<(), ()> { panic!("injected") });
        }));
        assert!(panicked.is_err());
        let r: Result<(), ()> = group.sync(5, &durable, || {
            durable.store(5, Ordering::SeqCst);
            Ok(())
        });
        assert_eq!(
            r,
            Ok(()),
            "the next caller leads instead of waiting forever"
        );
    }
}
