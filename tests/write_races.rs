//! Writes that race while one of them waits for the disk: what the live table
//! says must be what the log says, so that a reopen (or a power loss) shows the
//! same files. The disk is a `SimStorage` whose writes and fsyncs wait at a
//! gate while an atomic write is being made durable.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jocky::testing::SimStorage;
use jocky::{Store, SyncPolicy, WriteMode};
use tantivy::directory::{Directory, TerminatingWrite};

fn store_on(sim: &SimStorage) -> Store {
    Store::builder("/sim/store")
        .storage(Arc::new(sim.clone()))
        .sync_policy(SyncPolicy::OnRequest)
        .write_mode(WriteMode::Direct)
        // Room in the write queue: the writes made while the disk stalls must
        // not wait for buffers the stalled writer thread holds.
        .write_queue(64 << 20)
        // Space reserved up front: no append grows the file (an allocation
        // while the disk stalls would hold up every writer, as it should).
        .preallocate(64 << 20)
        .open_store()
        .unwrap()
}

/// Stalls the disk, starts `op` in a thread, returns once it waits on the disk.
fn start_stalled<T: Send + 'static>(
    sim: &SimStorage,
    op: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    sim.stall_writes(true);
    let h = std::thread::spawn(op);
    let t0 = Instant::now();
    while sim.stalled() == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "never reached the disk"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    h
}

#[test]
fn an_atomic_write_overtaken_by_a_create_and_delete_of_its_path_stays_dead() {
    let sim = SimStorage::new();
    let store = store_on(&sim);
    let dir = store.directory("t").unwrap();
    // The first append reserves the container's space; later ones only write.
    dir.atomic_write(Path::new("warm-up"), b"x").unwrap();
    let d = dir.clone();
    // A: an atomic write of P, waiting to become durable.
    let a = start_stalled(&sim, move || d.atomic_write(Path::new("p"), b"version A"));
    // Meanwhile P is created, written and deleted: in the log, after A.
    let mut w = dir.open_write(Path::new("p")).unwrap();
    w.write_all(b"version B").unwrap();
    w.terminate().unwrap();
    dir.delete(Path::new("p")).unwrap();
    sim.stall_writes(false);
    a.join().unwrap().unwrap();
    // The log says: A, then B created, then B deleted — no P. So must the
    // live table, and the reopened one.
    assert_gone_live_and_replayed(&sim, store, dir, "p");
}

/// `path` is gone from tenant `t`'s live table and from the table replayed
/// from what was written (a kill: no close writes a snapshot of the live table
/// that would hide the log's records).
fn assert_gone_live_and_replayed(
    sim: &SimStorage,
    store: Store,
    dir: jocky::JockyDirectory,
    path: &str,
) {
    assert!(!dir.exists(Path::new(path)).unwrap(), "live table");
    dir.sync_directory().unwrap();
    let killed = sim.kill();
    drop((dir, store));
    let store = store_on(&killed);
    assert!(
        !store
            .directory("t")
            .unwrap()
            .exists(Path::new(path))
            .unwrap(),
        "replayed table"
    );
}

#[test]
fn a_tenant_removed_while_its_atomic_write_is_made_durable_stays_removed_after_power_loss() {
    let sim = SimStorage::new();
    let store = store_on(&sim);
    let dir = store.directory("gone").unwrap();
    dir.atomic_write(Path::new("warm-up"), b"x").unwrap();
    let a = start_stalled(&sim, move || {
        dir.atomic_write(Path::new("meta.json"), b"{}")
    });
    let s = store.clone();
    let remove = std::thread::spawn(move || s.remove_tenant("gone"));
    // Let the removal reach its own sync (it waits behind A's).
    std::thread::sleep(Duration::from_millis(50));
    sim.stall_writes(false);
    remove.join().unwrap().unwrap();
    let err = a.join().unwrap().unwrap_err();
    assert!(err.to_string().contains("was removed"), "{err}");
    assert!(store.tenants().is_empty());
    // Power loss right after: what remove_tenant made durable holds.
    let after = sim.crash();
    drop(store);
    let store = store_on(&after);
    assert!(store.tenants().is_empty(), "{:?}", store.tenants());
}

#[test]
fn a_file_deleted_while_its_new_version_is_made_durable_stays_deleted() {
    let sim = SimStorage::new();
    let store = store_on(&sim);
    let dir = store.directory("t").unwrap();
    // P exists (version A) when B's atomic write starts.
    dir.atomic_write(Path::new("p"), b"version A").unwrap();
    let d = dir.clone();
    let b = start_stalled(&sim, move || d.atomic_write(Path::new("p"), b"version B"));
    // The delete is logged after B (B is appended, not yet in the table).
    dir.delete(Path::new("p")).unwrap();
    sim.stall_writes(false);
    b.join().unwrap().unwrap();
    // Live: the delete came last, P is gone. The log must agree.
    assert_gone_live_and_replayed(&sim, store, dir, "p");
}
