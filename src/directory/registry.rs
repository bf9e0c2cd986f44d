//! One engine per folder per process, and its orderly close.
//!
//! tantivy drops and reopens directories, and its background threads may hold a
//! clone a little longer, so a second open of a folder in the same process
//! shares the engine that is already open instead of failing on the folder's
//! `flock` (which keeps *other* processes out).
//!
//! Users hold an [`Owner`]. When the last one goes, the engine is closed on
//! that thread, before the drop returns: the maintenance pool takes no more
//! passes for it and the pass under way (which holds the engine) is waited
//! for, then the engine drops (the
//! container seals its tail, closes its files and releases the lock). An open
//! of the same folder that races such a close waits for it in the folder's own
//! slot; opens of other folders never wait for it, nor for each other's
//! recovery.

use std::collections::HashMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};

use crate::container::ContainerOptions;
use crate::engine::{Engine, EngineOptions};
use crate::error::{Error, Result};
use crate::io::fs::FsStorage;
use crate::sync::lock;

/// How long the drop of a folder's last owner waits for its engine to close
/// when something else holds it a moment longer.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A folder's place in the registry.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    closed: Condvar,
}

#[derive(Default)]
struct SlotState {
    owner: Weak<Owner>,
    /// An engine of this folder is open (or closing) in this process.
    live: bool,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<Slot>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Arc<Slot>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// What directories and stores hold: an engine, closed in order when the last
/// holder drops (see the module docs).
pub(crate) struct Owner {
    engine: Option<Arc<Engine>>,
    slot: Option<Arc<Slot>>,
}

impl Owner {
    /// An engine no registry knows (test storage, read-only opens).
    pub fn unregistered(engine: Engine) -> Arc<Owner> {
        Arc::new(Owner {
            engine: Some(engine.into_arc()),
            slot: None,
        })
    }

    /// The engine's `Arc`, for the maintenance pool's weak reference.
    pub fn engine_arc(&self) -> &Arc<Engine> {
        self.engine
            .as_ref()
            .expect("an owner holds its engine until dropped")
    }
}

impl Deref for Owner {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        self.engine_arc()
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let Some(engine) = self.engine.take() else {
            return;
        };
        engine.worker().stop_and_join();
        // A clean close leaves a snapshot, so the next open need not replay
        // the log (skipped if it would replay little anyway).
        if let Err(e) = engine.write_snapshot(crate::policy::SNAPSHOT_ON_CLOSE_AFTER) {
            log::warn!("no snapshot on close: {e}");
        }
        // Its pass on the maintenance pool (if any) is over: this is the last
        // reference but for a moment's (a mapping's release upgrading its
        // weak one), and the engine closes here.
        drop(engine);
        if let Some(slot) = &self.slot {
            // Closed by whoever let go last (see `open_shared`): wait for it,
            // so that the folder's lock is released when this drop returns.
            let deadline = std::time::Instant::now() + CLOSE_WAIT;
            let mut state = lock(&slot.state);
            while state.live {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    log::warn!("the engine of a folder was still held {CLOSE_WAIT:?} after its last owner went");
                    break;
                }
                state = slot
                    .closed
                    .wait_timeout(state, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }
}

/// The engine for the folder at `root`: the one already open in this process, or a
/// new one.
pub(crate) fn open_shared(
    root: &Path,
    opts: ContainerOptions,
    eopts: EngineOptions,
) -> Result<Arc<Owner>> {
    let key = std::fs::canonicalize(root)
        .or_else(|_| std::fs::create_dir_all(root).and_then(|_| std::fs::canonicalize(root)))
        .map_err(|e| Error::io(root, e))?;
    let slot = {
        let mut map = lock(registry());
        map.retain(|_, s| Arc::strong_count(s) > 1 || lock(&s.state).live);
        map.entry(key).or_default().clone()
    };
    // Held across the open so two threads opening one folder get one engine.
    let mut state = lock(&slot.state);
    loop {
        if let Some(owner) = state.owner.upgrade() {
            return Ok(owner);
        }
        if !state.live {
            break;
        }
        // The last handle is being dropped on another thread: its close
        // finishes (and releases the folder's lock) before we open.
        state = slot.closed.wait(state).unwrap_or_else(|e| e.into_inner());
    }
    let storage = FsStorage::open(root).map_err(|e| Error::io(root, e))?;
    let engine = Engine::open(Arc::new(storage), root, opts, eopts)?.into_arc();
    // The folder is free again once the engine is closed, not once its last
    // owner went: something may hold the engine a moment longer (a mapping's
    // release), and an open meanwhile would fail on the folder's lock.
    let signal = slot.clone();
    engine.on_close(move || {
        lock(&signal.state).live = false;
        signal.closed.notify_all();
    });
    let owner = Arc::new(Owner {
        engine: Some(engine),
        slot: Some(slot.clone()),
    });
    state.owner = Arc::downgrade(&owner);
    state.live = true;
    Ok(owner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::JockyDirectory;

    /// Something that holds the engine a moment after its last owner went
    /// (a mapping's release upgrades its weak reference): the drop of that
    /// owner returns once the engine closed, and an open right after gets
    /// the folder instead of failing on its lock.
    #[test]
    fn an_engine_held_a_moment_longer_closes_before_the_next_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = JockyDirectory::builder(tmp.path()).open().unwrap();
        let held = dir.engine.engine_arc().clone();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(held);
        });
        drop(dir);
        let again = JockyDirectory::builder(tmp.path()).open();
        assert!(again.is_ok(), "{:?}", again.err());
        holder.join().unwrap();
    }
}
