//! Whole-index lifecycle on `JockyDirectory` compared with `MmapDirectory`: index a
//! deterministic corpus with two threads over several commits, delete documents,
//! merge, collect garbage, drop everything, reopen, and search. Hit counts and
//! top-10 ids must be identical. Also for a tenant of a `Store` beside a neighbour
//! (moved here from `tests/store.rs` with the harness it uses).

use std::path::Path;

use jocky::{ExportPolicy, JockyDirectory, Store};
use jocky_bench::harness::{run_lifecycle, LifecycleConfig, LifecycleOutcome};
use tantivy::directory::MmapDirectory;
use tantivy::schema::{Schema, STORED, TEXT};
use tantivy::{doc, Directory, Index, IndexWriter};

fn on_mmap(path: &Path, cfg: &LifecycleConfig) -> LifecycleOutcome {
    std::fs::create_dir_all(path).unwrap();
    let reopen =
        || -> tantivy::Result<Box<dyn Directory>> { Ok(Box::new(MmapDirectory::open(path)?)) };
    run_lifecycle(reopen().unwrap(), &reopen, cfg).unwrap()
}

fn on_jocky(open: &dyn Fn() -> JockyDirectory, cfg: &LifecycleConfig) -> LifecycleOutcome {
    let reopen = || -> tantivy::Result<Box<dyn Directory>> { Ok(Box::new(open())) };
    run_lifecycle(Box::new(open()), &reopen, cfg).unwrap()
}

fn with_policy(path: &Path, policy: ExportPolicy, file_size: u64) -> JockyDirectory {
    JockyDirectory::builder(path)
        .container_file_size(file_size)
        .preallocate(128 << 10)
        .export_policy(policy)
        .open()
        .unwrap()
}

#[test]
fn same_results_as_mmap_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = LifecycleConfig::default();
    let expected = on_mmap(&tmp.path().join("mmap"), &cfg);
    assert!(expected.num_docs > 4000, "{}", expected.num_docs);
    assert!(expected.results.iter().any(|r| r.hits > 0));

    // Default options (background export of segments of 4 MiB and more).
    let path = tmp.path().join("jocky");
    let got = on_jocky(&|| JockyDirectory::open(&path).unwrap(), &cfg);
    assert_eq!(got, expected);

    // Before export: everything stays in the container.
    let path = tmp.path().join("manual");
    let got = on_jocky(
        &|| with_policy(&path, ExportPolicy::Manual, 256 << 20),
        &cfg,
    );
    assert_eq!(got, expected);
    assert_eq!(
        with_policy(&path, ExportPolicy::Manual, 256 << 20)
            .stats()
            .segment_files,
        0
    );

    // After export and reclamation: every reopen first exports all committed
    // segments and reclaims, so the searches read from segment files.
    let path = tmp.path().join("exported");
    let got = on_jocky(
        &|| {
            let dir = with_policy(&path, ExportPolicy::Manual, 1 << 20);
            dir.export_committed().unwrap();
            dir.reclaim().unwrap();
            dir
        },
        &cfg,
    );
    assert_eq!(got, expected);
    let dir = with_policy(&path, ExportPolicy::Manual, 1 << 20);
    let stats = dir.stats();
    assert!(stats.segment_files > 0, "{stats:?}");
    assert_eq!(dir.verify_segments().unwrap(), stats.segment_files);
    drop(dir);

    // Background export of every segment, on tiny container files (files span
    // several of them, and reclamation runs while indexing and merging go on).
    let path = tmp.path().join("eager");
    let eager = ExportPolicy::OnCommit {
        min_segment_bytes: 0,
    };
    let got = on_jocky(&|| with_policy(&path, eager, 1 << 20), &cfg);
    assert_eq!(got, expected);

    // And after reopening once more: the index is stable across restarts.
    for name in ["jocky", "exported", "eager"] {
        let dir = JockyDirectory::open(tmp.path().join(name)).unwrap();
        let index = tantivy::Index::open(dir.clone()).unwrap();
        assert!(index.validate_checksum().unwrap().is_empty());
        let stats = dir.stats();
        assert_eq!(stats.fds_held, 2);
        assert!(
            stats.bytes_live
                <= stats.container_bytes + stats.segment_bytes + stats.segment_bytes_being_built,
            "{name}: {stats:?}"
        );
        if name != "jocky" {
            assert!(stats.segment_files > 0, "{name}: {stats:?}");
        }
    }
}

/// 3 commits of 5 documents, as a small tenant does (same as in `tests/store.rs`).
fn small_tenant_index(dir: JockyDirectory, tenant: usize) {
    let mut schema = Schema::builder();
    let body = schema.add_text_field("body", TEXT | STORED);
    let index = Index::open_or_create(dir, schema.build()).unwrap();
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    for c in 0..3 {
        for d in 0..5 {
            writer
                .add_document(doc!(body => format!("tenant{tenant} commit{c} doc{d} common")))
                .unwrap();
        }
        writer.commit().unwrap();
    }
}

#[test]
fn lifecycle_on_a_store_tenant_equals_mmap() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = LifecycleConfig {
        num_docs: 3000,
        ..LifecycleConfig::default()
    };
    let mmap_path = tmp.path().join("mmap");
    std::fs::create_dir_all(&mmap_path).unwrap();
    let reopen_mmap = || -> tantivy::Result<Box<dyn Directory>> {
        Ok(Box::new(tantivy::directory::MmapDirectory::open(
            &mmap_path,
        )?))
    };
    let expected = run_lifecycle(reopen_mmap().unwrap(), &reopen_mmap, &cfg).unwrap();

    let store_path = tmp.path().join("store");
    {
        // A neighbour with its own index in the same container.
        let store = Store::open(&store_path).unwrap();
        small_tenant_index(store.directory("neighbour").unwrap(), 0);
    }
    let reopen = || -> tantivy::Result<Box<dyn Directory>> {
        let store = Store::open(&store_path)
            .map_err(|e| tantivy::TantivyError::SystemError(e.to_string()))?;
        Ok(Box::new(store.directory("tenant").unwrap()))
    };
    let got = run_lifecycle(reopen().unwrap(), &reopen, &cfg).unwrap();
    assert_eq!(got, expected);
}
