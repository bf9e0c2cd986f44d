//! One engine per folder per process. tantivy drops and reopens directories, and
//! its background threads may hold a clone a little longer, so a second open of a
//! folder in the same process shares the engine that is already open instead of
//! failing on the folder's `flock` (which keeps *other* processes out).

use crate::sync::lock;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::container::ContainerOptions;
use crate::engine::{Engine, EngineOptions};
use crate::error::{Error, Result};
use crate::io::fs::FsStorage;

fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<Engine>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Weak<Engine>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The engine for the folder at `root`: the one already open in this process, or a
/// new one.
pub(crate) fn open_shared(
    root: &Path,
    opts: ContainerOptions,
    eopts: EngineOptions,
) -> Result<Arc<Engine>> {
    let key = std::fs::canonicalize(root)
        .or_else(|_| std::fs::create_dir_all(root).and_then(|_| std::fs::canonicalize(root)))
        .map_err(|e| Error::io(root, e))?;
    // Held across the open so two threads opening one folder get one engine.
    let mut map = lock(registry());
    let was_open = map.contains_key(&key);
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(engine) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(engine);
    }
    // The last handle to an engine of this folder may be going away on another
    // thread (the background worker drops its reference there): its `flock` is
    // released once that drop finishes, so wait a little for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let storage = FsStorage::open(root).map_err(|e| Error::io(root, e))?;
        match Engine::open(Arc::new(storage), root, opts.clone(), eopts.clone()) {
            Ok(engine) => {
                let engine = Arc::new(engine);
                map.insert(key, Arc::downgrade(&engine));
                return Ok(engine);
            }
            Err(Error::Locked { .. }) if was_open && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}
