//! Tenants isolated from each other's disk I/O: while one tenant's append,
//! fsync or container rotation is stuck on a stalled disk, another tenant's
//! `exists`, `open_read`, `atomic_read`, `list_files` and a tantivy reader
//! reload complete (issue 11, item 2). The disk is a `SimStorage` whose writes
//! and fsyncs wait at a gate.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use jocky::testing::SimStorage;
use jocky::{JockyDirectory, Store, SyncPolicy, WriteMode};
use tantivy::collector::Count;
use tantivy::directory::Directory;
use tantivy::query::AllQuery;
use tantivy::schema::{Schema, TEXT};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy};

/// Long enough that only a lock held across the stalled I/O explains a miss.
const PATIENCE: Duration = Duration::from_secs(20);

struct Quiet {
    dir: JockyDirectory,
    reader: IndexReader,
}

fn store_on(sim: &SimStorage, mode: WriteMode, file_size: u64) -> Store {
    Store::builder("/sim/store")
        .storage(Arc::new(sim.clone()))
        .sync_policy(SyncPolicy::OnCommit)
        .write_mode(mode)
        .container_file_size(file_size)
        .open_store()
        .unwrap()
}

/// A tenant with a committed index and an open reader.
fn quiet_tenant(store: &Store) -> Quiet {
    let dir = store.directory("quiet").unwrap();
    let mut sb = Schema::builder();
    let body = sb.add_text_field("body", TEXT);
    let index = Index::create(dir.clone(), sb.build(), Default::default()).unwrap();
    let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    for i in 0..20 {
        w.add_document(doc!(body => format!("quiet document {i}")))
            .unwrap();
    }
    w.commit().unwrap();
    drop(w);
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .unwrap();
    Quiet { dir, reader }
}

/// Runs every read a server does on the quiet tenant, in a thread; fails if it
/// does not finish within `PATIENCE` while the other tenant's I/O is stalled.
fn reads_complete(q: &Quiet) {
    let dir = q.dir.clone();
    let reader = q.reader.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        assert!(dir.exists(Path::new("meta.json")).unwrap());
        let meta = dir.atomic_read(Path::new("meta.json")).unwrap();
        assert!(!meta.is_empty());
        let files = dir.list_files();
        let seg = files
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "idx"))
            .expect("a segment file")
            .clone();
        let h = dir.open_read(&seg).unwrap();
        assert!(!h.read_bytes().unwrap().is_empty());
        reader.reload().unwrap();
        let n = reader.searcher().search(&AllQuery, &Count).unwrap();
        tx.send(n).unwrap();
    });
    let n = rx
        .recv_timeout(PATIENCE)
        .expect("a read of the quiet tenant waited for the busy tenant's stalled I/O");
    assert_eq!(n, 20);
}

/// Starts `op` on the busy tenant in a thread and returns once it is stuck on
/// the stalled disk.
fn stall_busy(sim: &SimStorage, op: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    sim.stall_writes(true);
    let h = std::thread::spawn(op);
    let t0 = std::time::Instant::now();
    while sim.stalled() == 0 {
        assert!(
            t0.elapsed() < PATIENCE,
            "the busy tenant never reached the disk"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    h
}

#[test]
fn reads_of_one_tenant_do_not_wait_for_another_tenants_stalled_write() {
    let sim = SimStorage::new();
    let store = store_on(&sim, WriteMode::Inline, 64 << 20);
    let q = quiet_tenant(&store);
    let busy = store.directory("busy").unwrap();
    // A create, then a chunk written inline: the append's pwrite stalls.
    let h = stall_busy(&sim, move || {
        let mut w = busy.open_write(Path::new("big.idx")).unwrap();
        std::io::Write::write_all(&mut w, &vec![7u8; 1 << 20]).unwrap();
        std::io::Write::flush(&mut w).unwrap();
        tantivy::directory::TerminatingWrite::terminate(w).unwrap();
    });
    reads_complete(&q);
    sim.stall_writes(false);
    h.join().unwrap();
}

#[test]
fn reads_of_one_tenant_do_not_wait_for_another_tenants_stalled_fsync() {
    let sim = SimStorage::new();
    let store = store_on(&sim, WriteMode::Direct, 64 << 20);
    let q = quiet_tenant(&store);
    let busy = store.directory("busy").unwrap();
    // A durable atomic write: append, then the fsync stalls.
    let h = stall_busy(&sim, move || {
        busy.atomic_write(Path::new("meta.json"), b"{}").unwrap();
    });
    reads_complete(&q);
    sim.stall_writes(false);
    h.join().unwrap();
}

#[test]
fn reads_of_one_tenant_do_not_wait_for_a_rotation_another_tenant_caused() {
    let sim = SimStorage::new();
    // Small container files: the busy tenant's big write rotates, and the
    // rotation's truncate and fsync stall.
    let store = store_on(&sim, WriteMode::Inline, 1 << 20);
    let q = quiet_tenant(&store);
    let busy = store.directory("busy").unwrap();
    // One large file fills most of the active container file; the next one
    // cannot fit and rotates.
    let chunk = vec![1u8; 600 << 10];
    busy.atomic_write(Path::new("first"), &chunk).unwrap();
    assert_eq!(store.stats().container_files, 1);
    let s = store.clone();
    let h = stall_busy(&sim, move || {
        busy.atomic_write(Path::new("rotates"), &chunk).unwrap();
        assert!(s.stats().container_files > 1, "the write rotated");
    });
    reads_complete(&q);
    sim.stall_writes(false);
    h.join().unwrap();
}
