//! Background export and reclamation run on a process-wide pool of threads:
//! a server with many open indexes has two maintenance threads, not one per
//! index, and every index still gets its passes. (Its own binary: it counts
//! the process's threads.)

use std::path::Path;

use jocky::{ExportPolicy, JockyDirectory};
use tantivy::schema::{Schema, STORED, TEXT};
use tantivy::{doc, Index, IndexWriter};

/// Threads of this process doing jocky's background work (the pool's, or the
/// per-index worker threads jocky had before it).
fn maintenance_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|c| matches!(c.trim(), "jocky-maintain" | "jocky-export"))
        .count()
}

fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".seg")
        })
        .count()
}

#[test]
fn many_open_indexes_share_two_maintenance_threads_and_all_get_exported() {
    const INDEXES: usize = 24;
    let tmps: Vec<_> = (0..INDEXES).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut b = Schema::builder();
    let body = b.add_text_field("body", TEXT | STORED);
    let schema = b.build();
    let dirs: Vec<JockyDirectory> = tmps
        .iter()
        .map(|t| {
            JockyDirectory::builder(t.path())
                .export_policy(ExportPolicy::OnCommit {
                    min_segment_bytes: 0,
                })
                .open()
                .unwrap()
        })
        .collect();
    for (k, dir) in dirs.iter().enumerate() {
        let index = Index::create(dir.clone(), schema.clone(), Default::default()).unwrap();
        let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for i in 0..200 {
            w.add_document(doc!(body => format!("index {k} document {i}")))
                .unwrap();
        }
        w.commit().unwrap();
        w.wait_merging_threads().unwrap();
    }
    let threads = maintenance_threads();
    assert!(
        (1..=2).contains(&threads),
        "{threads} maintenance threads for {INDEXES} open indexes"
    );
    for (dir, tmp) in dirs.iter().zip(&tmps) {
        dir.wait_for_background_work();
        assert_eq!(
            segment_files(tmp.path()),
            1,
            "{}: its committed segment was not exported",
            tmp.path().display()
        );
    }
    // Closing waits for a pass under way and leaves no engine behind: each
    // folder opens again (its lock was released) and reads.
    drop(dirs);
    assert!(maintenance_threads() <= 2);
    for tmp in &tmps {
        let dir = JockyDirectory::open(tmp.path()).unwrap();
        let index = Index::open(dir).unwrap();
        let searcher = index.reader().unwrap().searcher();
        assert_eq!(searcher.num_docs(), 200);
    }
}

/// Under `WhenQuiet`, commits that keep coming hold the export back (the
/// quiet period counts from the last one); once they stop, it comes.
#[test]
fn when_quiet_exports_once_commits_pause() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = JockyDirectory::builder(tmp.path())
        .export_policy(ExportPolicy::WhenQuiet {
            min_segment_bytes: 0,
            quiet: std::time::Duration::from_secs(2),
        })
        .open()
        .unwrap();
    let mut b = Schema::builder();
    let body = b.add_text_field("body", TEXT | STORED);
    let index = Index::create(dir.clone(), b.build(), Default::default()).unwrap();
    let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    for round in 0..6 {
        for i in 0..50 {
            w.add_document(doc!(body => format!("round {round} document {i}")))
                .unwrap();
        }
        w.commit().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        segment_files(tmp.path()),
        0,
        "exported while commits kept coming"
    );
    w.wait_merging_threads().unwrap();
    dir.wait_for_background_work();
    assert!(
        segment_files(tmp.path()) > 0,
        "nothing exported once commits stopped"
    );
    let searcher = index.reader().unwrap().searcher();
    assert_eq!(searcher.num_docs(), 300);
}
