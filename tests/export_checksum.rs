//! A segment whose bytes jocky vouches for but tantivy would not: the export
//! opens each segment the way a searcher does to record its hot ranges, and
//! tantivy asserts (panics) on some malformed files instead of returning an
//! error. The export must not hand it such a segment: it checks the files
//! against tantivy's own footer checksums first, exports the segment as it
//! is (its bytes are the user's) and records no hot ranges for it.
//!
//! Its own test binary: it installs a panic hook, which is process-wide.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{read, write_file};
use jocky::{ExportPolicy, JockyDirectory};
use tantivy::directory::footer::Footer;
use tantivy::directory::FileSlice;
use tantivy::schema::{Schema, FAST, INDEXED, STORED, TEXT};
use tantivy::{doc, Directory, HasLen, Index, IndexWriter};

#[test]
fn a_segment_failing_tantivys_checksum_is_exported_without_opening_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = JockyDirectory::builder(tmp.path())
        .export_policy(ExportPolicy::Manual)
        .open()
        .unwrap();
    let mut b = Schema::builder();
    let body = b.add_text_field("body", TEXT | STORED);
    let n = b.add_u64_field("n", INDEXED | FAST | STORED);
    let index = Index::create(dir.clone(), b.build(), Default::default()).unwrap();
    let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    for i in 0..500u64 {
        w.add_document(doc!(body => format!("document {i} word{}", i % 7), n => i))
            .unwrap();
    }
    w.commit().unwrap();
    drop(w);

    // The fast-field file, rewritten through the directory (so jocky's own
    // checks pass) with the columnar footer's dictionary length past the file
    // end: tantivy's `FastFieldReaders::open` asserts on that.
    let fast = dir
        .list_files()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "fast"))
        .expect("a .fast file");
    let fast = fast.to_str().unwrap().to_string();
    let mut bytes = read(&dir, &fast);
    let handle = dir.get_file_handle(Path::new(&fast)).unwrap();
    let (_, body_slice) = Footer::extract_footer(FileSlice::new(handle)).unwrap();
    let body_len = body_slice.len();
    // Columnar footer: dictionary length u64 | rows u32 | magic and version (8).
    let at = body_len - 20;
    bytes[at..at + 8].copy_from_slice(&(body_len as u64 + 1000).to_le_bytes());
    dir.delete(Path::new(&fast)).unwrap();
    write_file(&dir, &fast, &bytes);

    let panics = Arc::new(AtomicUsize::new(0));
    let seen = panics.clone();
    std::panic::set_hook(Box::new(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
    }));
    let report = dir.export_committed();
    let _ = std::panic::take_hook();
    let report = report.unwrap();
    assert_eq!(
        panics.load(Ordering::SeqCst),
        0,
        "the export let tantivy panic on a segment failing its checksum"
    );
    assert_eq!(report.segment_files, 1, "the segment is still exported");
    // Its bytes as written, from the segment file; no hot ranges for it.
    assert_eq!(read(&dir, &fast), bytes);
    let prefetch = dir.prefetch().unwrap();
    assert_eq!(prefetch.segment_files, 1);
    assert_eq!(prefetch.hot_ranges, 0);
    drop(dir);
    let dir = JockyDirectory::builder(tmp.path())
        .export_policy(ExportPolicy::Manual)
        .open()
        .unwrap();
    assert_eq!(read(&dir, &fast), bytes, "after a reopen");
}
