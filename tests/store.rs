//! The multi-tenant store: the contract suite on store-backed directories (beside
//! a neighbour tenant that holds the same file names), isolation, many tenants
//! committing concurrently, removal under an open reader, and crash recovery with
//! many tenants. (The lifecycle comparison of a store tenant with MmapDirectory is
//! in `jocky-bench/tests/lifecycle.rs`, beside the harness it uses.)

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::contract::TestDirectory;
use common::{read, write_file as write};
use jocky::testing::SimStorage;
use jocky::{Error, JockyDirectory, Store};
use tantivy::directory::{Directory, Lock, TerminatingWrite, WatchCallback};
use tantivy::schema::{Schema, STORED, TEXT};
use tantivy::{doc, Index, IndexWriter};

/// A tenant's directory in a store where another tenant already holds files under
/// the names the contract functions use.
fn store_tenant() -> TestDirectory {
    let tmp = tempfile::TempDir::new().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let neighbour = store.directory("neighbour").unwrap();
    for name in ["some_path_for_test", "meta.json", "a.lock"] {
        let mut w = neighbour.open_write(Path::new(name)).unwrap();
        w.write_all(b"the neighbour's bytes").unwrap();
        w.terminate().unwrap();
    }
    TestDirectory::with_guard(store.directory("tenant-a").unwrap(), (store, tmp))
}

mod contract_on_store {
    use super::*;
    crate::contract_tests!(store_tenant());
}

#[test]
fn tenants_are_isolated() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let a = store.directory("a").unwrap();
    let b = store.directory("b").unwrap();
    write(&a, "x.idx", b"from a");
    write(&b, "x.idx", b"from b");
    assert_eq!(read(&a, "x.idx"), b"from a");
    assert_eq!(read(&b, "x.idx"), b"from b");
    a.delete(Path::new("x.idx")).unwrap();
    assert!(!a.exists(Path::new("x.idx")).unwrap());
    assert_eq!(read(&b, "x.idx"), b"from b");
    assert_eq!(b.list_files(), vec![Path::new("x.idx")]);
    assert!(a.list_files().is_empty());

    // Locks of one tenant do not block another.
    let lock = Lock {
        filepath: ".tantivy-writer.lock".into(),
        is_blocking: false,
    };
    let _held = a.acquire_lock(&lock).unwrap();
    assert!(b.acquire_lock(&lock).is_ok());
    assert!(a.acquire_lock(&lock).is_err());

    // meta.json of one tenant wakes only that tenant's watchers.
    let fired = Arc::new(AtomicUsize::new(0));
    let f = fired.clone();
    let (tx, rx) = mpsc::channel();
    let _watch = a
        .watch(WatchCallback::new(move || {
            f.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(());
        }))
        .unwrap();
    b.atomic_write(Path::new("meta.json"), b"b").unwrap();
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
    a.atomic_write(Path::new("meta.json"), b"a").unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(fired.load(Ordering::SeqCst), 1);

    assert_eq!(store.tenants(), vec!["a".to_string(), "b".to_string()]);
}

#[test]
fn bad_tenant_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    for bad in ["", "..", "a/b", "nul\0", &"x".repeat(300)] {
        match store.directory(bad) {
            Err(Error::InvalidTenant { .. }) => {}
            other => panic!("{bad:?}: {other:?}"),
        }
        assert!(store.remove_tenant(bad).is_err());
    }
}

fn schema() -> Schema {
    let mut b = Schema::builder();
    b.add_text_field("body", TEXT | STORED);
    b.build()
}

/// 3 commits of 5 documents, as a small tenant does.
fn small_tenant_index(dir: JockyDirectory, tenant: usize) -> Index {
    let schema = schema();
    let body = schema.get_field("body").unwrap();
    let index = Index::open_or_create(dir, schema).unwrap();
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    for c in 0..3 {
        for d in 0..5 {
            writer
                .add_document(doc!(body => format!("tenant{tenant} commit{c} doc{d} common")))
                .unwrap();
        }
        writer.commit().unwrap();
    }
    index
}

fn hits(index: &Index, query: &str) -> usize {
    let reader = index.reader().unwrap();
    let parser = tantivy::query::QueryParser::for_index(
        index,
        vec![index.schema().get_field("body").unwrap()],
    );
    reader
        .searcher()
        .search(
            &parser.parse_query(query).unwrap(),
            &tantivy::collector::Count,
        )
        .unwrap()
}

#[test]
fn sixteen_threads_commit_to_their_own_tenants() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let handles: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for k in 0..4 {
                    let tenant = t * 4 + k;
                    let index =
                        small_tenant_index(store.directory(&format!("t{tenant}")).unwrap(), tenant);
                    assert_eq!(hits(&index, &format!("tenant{tenant}")), 15);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(store.tenants().len(), 64);
    let stats = store.stats();
    assert_eq!(stats.fds_held, 2);
    drop(store);
    // After a restart every tenant has its own documents and only those.
    let store = Store::open(tmp.path()).unwrap();
    for tenant in 0..64 {
        let index = Index::open(store.directory(&format!("t{tenant}")).unwrap()).unwrap();
        assert_eq!(hits(&index, "common"), 15, "t{tenant}");
        assert_eq!(hits(&index, &format!("tenant{tenant}")), 15);
        assert_eq!(hits(&index, &format!("tenant{}", (tenant + 1) % 64)), 0);
    }
}

#[test]
fn removing_a_tenant_under_an_open_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let index = small_tenant_index(store.directory("doomed").unwrap(), 1);
    let _other = small_tenant_index(store.directory("kept").unwrap(), 2);
    let reader = index.reader().unwrap();
    let searcher = reader.searcher();
    let removed = store.remove_tenant("doomed").unwrap();
    assert!(removed > 0);
    assert_eq!(store.tenants(), vec!["kept".to_string()]);
    // The open searcher keeps working on the bytes it had.
    let parser = tantivy::query::QueryParser::for_index(
        &index,
        vec![index.schema().get_field("body").unwrap()],
    );
    let q = parser.parse_query("tenant1").unwrap();
    assert_eq!(searcher.search(&q, &tantivy::collector::Count).unwrap(), 15);
    drop(searcher);
    drop(reader);
    drop(index);
    // The name can be used again, from scratch.
    let dir = store.directory("doomed").unwrap();
    assert!(!Index::exists(&dir).unwrap());
    drop(store);
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.tenants(), vec!["kept".to_string()]);
    assert_eq!(store.remove_tenant("never-existed").unwrap(), 0);
}

#[test]
fn power_loss_with_many_tenants() {
    let s = SimStorage::new();
    s.record_history();
    let open = |s: &SimStorage| {
        JockyDirectory::builder("/sim")
            .storage(Arc::new(s.clone()))
            .container_file_size(1 << 20)
            .preallocate(64 << 10)
            .open_store()
            .unwrap()
    };
    {
        let store = open(&s);
        for t in 0..12 {
            small_tenant_index(store.directory(&format!("t{t}")).unwrap(), t);
        }
    }
    let n = s.history_len();
    let mut last_total = 0;
    for i in (0..=n).step_by((n / 60).max(1)).chain([n]) {
        let store = open(&s.crash_at(i));
        let mut total = 0;
        for t in 0..12 {
            let dir = store.directory(&format!("t{t}")).unwrap();
            if !Index::exists(&dir).unwrap() {
                continue;
            }
            let index = Index::open(dir).unwrap();
            assert!(index.validate_checksum().unwrap().is_empty());
            let docs = index.reader().unwrap().searcher().num_docs();
            assert!(
                [0, 5, 10, 15].contains(&docs),
                "crash at {i}: t{t} has {docs}"
            );
            total += docs;
        }
        assert!(total >= last_total, "crash at {i}: commits went backwards");
        last_total = total;
    }
    assert_eq!(last_total, 12 * 15);
}

#[test]
fn removing_tenants_while_others_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    for t in 0..8 {
        small_tenant_index(store.directory(&format!("old{t}")).unwrap(), 100 + t);
    }
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let index = small_tenant_index(store.directory(&format!("live{t}")).unwrap(), t);
                assert_eq!(hits(&index, &format!("tenant{t}")), 15);
            })
        })
        .collect();
    for t in 0..8 {
        assert!(store.remove_tenant(&format!("old{t}")).unwrap() > 0);
    }
    for w in writers {
        w.join().unwrap();
    }
    let expected: Vec<String> = (0..4).map(|t| format!("live{t}")).collect();
    assert_eq!(store.tenants(), expected);
    drop(store);
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.tenants(), expected);
    for t in 0..4 {
        let index = Index::open(store.directory(&format!("live{t}")).unwrap()).unwrap();
        assert_eq!(hits(&index, "common"), 15);
    }
}

#[test]
fn tenant_stats_follow_the_tenants_files() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::builder(tmp.path())
        .export_policy(jocky::ExportPolicy::Manual)
        .open_store()
        .unwrap();
    let dir_a = store.directory("a").unwrap();
    let _a = small_tenant_index(dir_a.clone(), 0);
    let _b = small_tenant_index(store.directory("b").unwrap(), 1);
    let files_of = |d: &JockyDirectory| -> (usize, u64) {
        let files = d.list_files();
        let bytes = files
            .iter()
            .map(|p| read(d, p.to_str().unwrap()).len() as u64)
            .sum();
        (files.len(), bytes)
    };
    let s = store.tenant_stats("a").unwrap();
    assert_eq!((s.files, s.bytes_live), files_of(&dir_a));
    assert_eq!(s.bytes_in_container, s.bytes_live, "nothing exported yet");
    assert_eq!(s.bytes_in_segment_files, 0);
    let whole = store.stats();
    let b = store.tenant_stats("b").unwrap();
    assert_eq!(s.files + b.files, whole.virtual_files);
    assert_eq!(s.bytes_live + b.bytes_live, whole.bytes_live);

    store.export_committed().unwrap();
    let e = store.tenant_stats("a").unwrap();
    assert_eq!((e.files, e.bytes_live), (s.files, s.bytes_live));
    assert!(e.bytes_in_segment_files > 0, "{e:?}");
    assert_eq!(
        e.bytes_in_container + e.bytes_in_segment_files,
        e.bytes_live
    );

    store.remove_tenant("a").unwrap();
    assert_eq!(
        store.tenant_stats("a").unwrap(),
        jocky::TenantStats::default()
    );
    assert_eq!(
        store.tenant_stats("b").unwrap().files,
        b.files,
        "b untouched"
    );
    assert_eq!(
        store.tenant_stats("nobody").unwrap(),
        jocky::TenantStats::default()
    );
    assert!(store.tenant_stats("a/b").is_err());
}

#[test]
fn directories_of_a_removed_tenant_refuse_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let old = store.directory("t").unwrap();
    write(&old, "a.idx", b"before");
    store.remove_tenant("t").unwrap();
    // A writer that outlived the removal (say, an IndexWriter's ending merge)
    // must not bring the tenant back half.
    let err = old.atomic_write(Path::new("meta.json"), b"{}").unwrap_err();
    assert!(err.to_string().contains("was removed"), "{err}");
    assert!(old.open_write(Path::new("b.idx")).is_err());
    assert!(store.tenants().is_empty(), "nothing of t came back");
    // A directory obtained after the removal writes as usual.
    let new = store.directory("t").unwrap();
    write(&new, "c.idx", b"after");
    assert_eq!(new.list_files(), vec![Path::new("c.idx")]);
    drop((old, new, store));
    let store = Store::open(tmp.path()).unwrap();
    let t = store.directory("t").unwrap();
    assert_eq!(t.list_files(), vec![Path::new("c.idx")]);
    assert_eq!(read(&t, "c.idx"), b"after");
}

/// An old container file that stays mostly live (an idle tenant's small files,
/// which are never exported) does not keep the dead files after it on disk:
/// once they hold at least as many dead bytes as it holds live ones, its files
/// are copied forward and the prefix of the log goes. The idle tenant's bytes
/// stay the same, now and after a reopen.
/// Tenant `busy` writes `files` files of 100 KB and deletes each: container
/// files of dead bytes.
fn write_and_delete(store: &Store, files: usize) -> JockyDirectory {
    let busy = store.directory("busy").unwrap();
    for i in 0..files {
        let name = format!("g{i}");
        write(&busy, &name, &vec![1u8; 100_000]);
        busy.delete(Path::new(&name)).unwrap();
    }
    busy
}

#[test]
fn an_idle_tenant_in_an_old_container_file_does_not_keep_dead_files_on_disk() {
    let s = SimStorage::new();
    let open = || {
        JockyDirectory::builder("/sim")
            .storage(Arc::new(s.clone()))
            .container_file_size(1 << 20)
            .preallocate(64 << 10)
            .export_policy(jocky::ExportPolicy::Manual)
            .write_mode(jocky::WriteMode::Inline)
            .open_store()
            .unwrap()
    };
    let idle_files: Vec<(String, Vec<u8>)> = (0..7u8)
        .map(|i| (format!("f{i}"), vec![i; 100_000]))
        .collect();
    {
        let store = open();
        let idle = store.directory("idle").unwrap();
        for (name, bytes) in &idle_files {
            write(&idle, name, bytes);
        }
        // Another tenant writes and deletes 4 MB: container files of dead bytes.
        write_and_delete(&store, 40);
        let files_before = store.stats().container_files;
        assert!(files_before >= 4, "{files_before} container files");
        let report = store.reclaim().unwrap();
        assert_eq!(report.files_copied_forward, idle_files.len(), "{report:?}");
        assert!(
            report.container_files_removed + 2 >= files_before,
            "{report:?} of {files_before} container files"
        );
        for (name, bytes) in &idle_files {
            assert_eq!(&read(&idle, name), bytes, "{name}");
        }
    }
    let store = open();
    let idle = store.directory("idle").unwrap();
    for (name, bytes) in &idle_files {
        assert_eq!(&read(&idle, name), bytes, "{name} after a reopen");
    }
}

/// A tenant's segment under the export threshold stays in the container for
/// good, and one of its files can be over 1 MiB: such a file is copied forward
/// like a small one when that pays. A file of a segment export will move soon
/// is not (copying it first would write it once more): its container file stays
/// until the export.
#[test]
fn a_small_segment_with_a_file_over_1_mib_does_not_keep_dead_files_on_disk() {
    let run = |segment: &[(&str, usize)]| {
        let s = SimStorage::new();
        let store = JockyDirectory::builder("/sim")
            .storage(Arc::new(s.clone()))
            .container_file_size(4 << 20)
            .preallocate(64 << 10)
            .export_policy(jocky::ExportPolicy::WhenQuiet {
                min_segment_bytes: 4 << 20,
                quiet: Duration::from_secs(3600),
            })
            .write_mode(jocky::WriteMode::Inline)
            .open_store()
            .unwrap();
        let idle = store.directory("idle").unwrap();
        let files: Vec<(String, Vec<u8>)> = segment
            .iter()
            .enumerate()
            .map(|(i, (name, len))| (name.to_string(), vec![i as u8 + 1; *len]))
            .collect();
        for (name, bytes) in &files {
            write(&idle, name, bytes);
        }
        // Another tenant writes and deletes 16 MB: container files of dead bytes.
        write_and_delete(&store, 160).sync_directory().unwrap();
        let report = store.reclaim().unwrap();
        for (name, bytes) in &files {
            assert_eq!(&read(&idle, name), bytes, "{name}");
        }
        report
    };
    // 2.5 MB in all: under the 4 MiB threshold, never exported.
    let r = run(&[("a1b2.store", 1_800_000), ("a1b2.idx", 700_000)]);
    assert_eq!(r.files_copied_forward, 2, "{r:?}");
    assert!(r.container_files_removed >= 3, "{r:?}");
    // 4.5 MB: the export will move it.
    let r = run(&[("c3d4.store", 1_800_000), ("c3d4.pos", 2_700_000)]);
    assert_eq!(
        (r.files_copied_forward, r.container_files_removed),
        (0, 0),
        "{r:?}"
    );
}

/// A tenant's removal logs one `Delete` per file; a reader beside the writer
/// (or a crash) can catch the log part-way through them. Wherever the log is
/// cut, the tenant is either its whole last commit or no index at all — never
/// a `meta.json` naming segment files that are gone.
#[test]
fn a_removal_cut_short_leaves_the_whole_index_or_none() {
    use jocky::testing::Storage;
    let s = SimStorage::new();
    let open = |s: &SimStorage| {
        JockyDirectory::builder("/sim")
            .storage(Arc::new(s.clone()))
            .write_mode(jocky::WriteMode::Inline)
            .export_policy(jocky::ExportPolicy::Manual)
            .open_store()
            .unwrap()
    };
    {
        let store = open(&s);
        small_tenant_index(store.directory("gone").unwrap(), 0);
        small_tenant_index(store.directory("kept").unwrap(), 1);
    }
    let log = s
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .max()
        .unwrap();
    let before = s.file_bytes(&log).unwrap().len();
    {
        let store = open(&s);
        assert!(store.remove_tenant("gone").unwrap() > 5);
    }
    let after = s.file_bytes(&log).unwrap();
    assert!(after.len() > before, "the removal was logged in {log}");
    let mut cuts_without_index = 0;
    for cut in (before..=after.len()).step_by(8) {
        let cut_copy = s.kill();
        let mut bytes = after[..cut].to_vec();
        bytes.resize(after.len(), 0);
        cut_copy.set_file_bytes(&log, bytes);
        let store = open(&cut_copy);
        let kept = Index::open(store.directory("kept").unwrap()).unwrap();
        assert_eq!(kept.reader().unwrap().searcher().num_docs(), 15);
        let dir = store.directory("gone").unwrap();
        if !Index::exists(&dir).unwrap() {
            cuts_without_index += 1;
            continue;
        }
        let index = Index::open(dir).unwrap();
        let reader = index
            .reader()
            .unwrap_or_else(|e| panic!("log cut at {cut} of {}: {e}", after.len()));
        assert_eq!(reader.searcher().num_docs(), 15, "log cut at {cut}");
        assert!(index.validate_checksum().unwrap().is_empty());
    }
    assert!(
        cuts_without_index > 0,
        "some cuts fall after the removal began"
    );
}
