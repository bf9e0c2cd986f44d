//! Lock helpers shared by every layer. A panic while a lock is held leaves
//! data that is still consistent at every await point of this crate (no lock
//! guards a multi-step update that a panic could cut in half without also
//! poisoning the container), so a poisoned lock is taken over, not propagated.
//!
//! Lock order, in one place (a thread holding a lock on the left may take one
//! on its right, never the other way):
//!
//! ```text
//! engine.maintenance → engine.log_order → container.sync_lock → container.active
//!   → writer state → container.files / container.unapplied / segments.map
//!
//! engine.log_order → engine.removals / engine.pending (leaves)
//! engine.table (read or write) → container.files / segments.map
//! engine.table (read) → builds.state (reclamation asks which segment files
//!   being built are dead; nothing holding builds.state takes the table)
//! builds.creating → container (append, sync) → builds.io; an export holds
//!   builds.io while it writes and maps a segment file (export/build.rs)
//! engine.writers (leaf: taken alone)
//! container.group (leaf: a sync round runs without it)
//! maintenance pool queue → an engine's worker state (neither held during a
//!   pass, nor while calling into an engine)
//! ```
//!
//! `engine.table` is a `RwLock` that prefers writers: a thread holding it for
//! reading must not take it again (a waiting writer in between deadlocks
//! both). Loops over a lookup's result bind the result first, so that the
//! guard is gone before the body runs (`export/hot.rs` had this bug).
//!
//! `engine.table` is never held across a call that writes, syncs, rotates or
//! waits for write-queue space: a change that depends on the table's state
//! checks it under a short table lock, appends with `engine.log_order` held
//! (which keeps log order and table order in step), and publishes under a
//! second short table lock. Readers take the table (read) only to look an
//! entry up and clone it, then read its bytes without it (a read of bytes still
//! staged for the writer thread takes `container.active`, which appends and
//! rotations hold across I/O — with no table lock held, so no reader of
//! another tenant queues behind it). The writer thread takes only the writer
//! state. So `open_read`, `exists`, `atomic_read` and a reader reload never
//! wait for another tenant's disk I/O, only for in-memory table updates.

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
