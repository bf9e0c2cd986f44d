//! Whole-index lifecycle on `JockyDirectory` compared with `MmapDirectory`: index a
//! deterministic corpus with two threads over several commits, delete documents,
//! merge, collect garbage, drop everything, reopen, and search. Hit counts and
//! top-10 ids must be identical.

use std::path::Path;

use jocky::harness::{run_lifecycle, LifecycleConfig, LifecycleOutcome};
use jocky::JockyDirectory;
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

#[test]
fn same_results_as_mmap_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = LifecycleConfig::default();
    let expected = on_mmap(&tmp.path().join("mmap"), &cfg);
    assert!(expected.num_docs > 4000, "{}", expected.num_docs);
    assert!(expected.results.iter().any(|r| r.hits > 0));

    let path = tmp.path().join("jocky");
    let got = on_jocky(&|| JockyDirectory::open(&path).unwrap(), &cfg);
    assert_eq!(got, expected);

    // The same on tiny container files: every segment file spans several of them.
    let path = tmp.path().join("jocky-tiny");
    let got = on_jocky(
        &|| {
            JockyDirectory::builder(&path)
                .container_file_size(1 << 20)
                .preallocate(128 << 10)
                .open()
                .unwrap()
        },
        &cfg,
    );
    assert_eq!(got, expected);

    // And after reopening once more: the index is stable across restarts.
    let dir = JockyDirectory::open(tmp.path().join("jocky")).unwrap();
    let index = tantivy::Index::open(dir.clone()).unwrap();
    assert!(index.validate_checksum().unwrap().is_empty());
    let stats = dir.stats();
    assert_eq!(stats.fds_held, 2);
    assert!(stats.bytes_live <= stats.container_bytes);
}
