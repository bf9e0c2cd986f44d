//! Lock helpers shared by every layer. A panic while a lock is held leaves
//! data that is still consistent at every await point of this crate (no lock
//! guards a multi-step update that a panic could cut in half without also
//! poisoning the container), so a poisoned lock is taken over, not propagated.
//!
//! Lock order, in one place (a thread holding a lock on the left may take one
//! on its right, never the other way):
//!
//! ```text
//! engine.maintenance → engine.table → container.sync_lock → container.active
//!   → writer state → container.files / container.unapplied / segments.map
//! ```
//!
//! The writer thread takes only the writer state; readers take the table (read),
//! then `files` or `segments.map` (read) — no reader lock is held across disk
//! I/O except the mapping reads themselves.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, taking over a lock poisoned by a panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read-locks `l`, taking over a lock poisoned by a panic.
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Write-locks `l`, taking over a lock poisoned by a panic.
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
