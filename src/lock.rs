//! tantivy's locks (`.tantivy-writer.lock`, `.tantivy-meta.lock`) held in memory.
//! They are never written as files, so a crash cannot leave a stale lock behind;
//! other processes are kept out by the container's own OS lock (`flock`).

use crate::sync::lock;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tantivy::directory::error::LockError;
use tantivy::directory::DirectoryLock;

/// How long a blocking lock request waits, as tantivy's default implementation.
const BLOCKING_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub(crate) struct LockTable {
    held: Mutex<HashSet<(String, PathBuf)>>,
    released: Condvar,
}

struct Guard {
    table: Arc<LockTable>,
    key: (String, PathBuf),
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut held = lock(&self.table.held);
        held.remove(&self.key);
        self.table.released.notify_all();
    }
}

impl LockTable {
    pub fn acquire(
        self: &Arc<Self>,
        ns: &str,
        path: PathBuf,
        blocking: bool,
    ) -> Result<DirectoryLock, LockError> {
        let key = (ns.to_string(), path);
        let deadline = Instant::now() + BLOCKING_WAIT;
        let mut held = lock(&self.held);
        while held.contains(&key) {
            let now = Instant::now();
            if !blocking || now >= deadline {
                return Err(LockError::LockBusy);
            }
            held = self
                .released
                .wait_timeout(held, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        held.insert(key.clone());
        Ok(DirectoryLock::from(Box::new(Guard {
            table: self.clone(),
            key,
        })))
    }
}
