//! Whole-index lifecycle on `JockyDirectory` compared with `MmapDirectory`: index a
//! deterministic corpus with two threads over several commits, delete documents,
//! merge, collect garbage, drop everything, reopen, and search. Hit counts and
//! top-10 ids must be identical.

use std::path::Path;

use jocky::harness::{run_lifecycle, LifecycleConfig, LifecycleOutcome};
use jocky::{ExportPolicy, JockyDirectory};
use tantivy::directory::MmapDirectory;
use tantivy::Directory;

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
        assert!(stats.bytes_live <= stats.container_bytes + stats.segment_bytes);
        if name != "jocky" {
            assert!(stats.segment_files > 0, "{name}: {stats:?}");
        }
    }
}
