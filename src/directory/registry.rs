//! One engine per folder per process. tantivy drops and reopens directories, and
//! its background threads may hold a clone a little longer, so a second open of a
//! folder in the same process shares the engine that is already open instead of
//! failing on the folder's `flock` (which keeps *other* processes out).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::container::ContainerOptions;
use crate::engine::{lock, Engine, EngineOptions};
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
    let storage = FsStorage::open(root).map_err(|e| Error::io(root, e))?;
    let key = std::fs::canonicalize(root).map_err(|e| Error::io(root, e))?;
    // Held across the open so two threads opening one folder get one engine.
    let mut map = lock(registry());
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(engine) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(engine);
    }
    let engine = Arc::new(Engine::open(Arc::new(storage), root, opts, eopts)?);
    map.insert(key, Arc::downgrade(&engine));
    Ok(engine)
}
