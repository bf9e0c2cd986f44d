//! Opening an index to search it and closing it again leaves its folder as it
//! was on a real file system: the same files with the same lengths, contents
//! and modification times. A server that opens and closes many indexes to
//! serve queries must not write (and journal) metadata for each of them, nor
//! start a writer thread for each.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use jocky::JockyDirectory;
use tantivy::collector::Count;
use tantivy::directory::TerminatingWrite;
use tantivy::query::AllQuery;
use tantivy::schema::{Schema, STORED, TEXT};
use tantivy::{doc, Index, IndexWriter};

/// Every entry of `dir` with its length, modification time and contents; the
/// folder's own modification time under "".
fn state(dir: &Path) -> BTreeMap<String, (u64, SystemTime, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let meta = std::fs::metadata(dir).unwrap();
    out.insert(String::new(), (0, meta.modified().unwrap(), Vec::new()));
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let bytes = std::fs::read(entry.path()).unwrap();
        out.insert(
            entry.file_name().to_string_lossy().into_owned(),
            (meta.len(), meta.modified().unwrap(), bytes),
        );
    }
    out
}

/// Threads of this process named `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

fn search(path: &Path) -> usize {
    let index = Index::open(JockyDirectory::open(path).unwrap()).unwrap();
    let reader = index.reader().unwrap();
    let found = reader.searcher().search(&AllQuery, &Count).unwrap();
    // Nothing was written: no writer thread was started.
    assert_eq!(threads_named("jocky-writer"), 0);
    found
}

#[test]
fn a_search_only_open_and_close_changes_nothing_in_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path();
    {
        let mut schema = Schema::builder();
        let body = schema.add_text_field("body", TEXT | STORED);
        let index = Index::create(
            JockyDirectory::open(path).unwrap(),
            schema.build(),
            Default::default(),
        )
        .unwrap();
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for i in 0..200 {
            writer
                .add_document(doc!(body => format!("document {i}")))
                .unwrap();
        }
        writer.commit().unwrap();
        writer.wait_merging_threads().unwrap();
    }
    // A first open may finish what the writer's close left to background work.
    assert_eq!(search(path), 200);
    let before = state(path);
    // Modification times have a clock's granularity: let one tick pass.
    std::thread::sleep(std::time::Duration::from_millis(20));
    for _ in 0..3 {
        assert_eq!(search(path), 200);
    }
    let after = state(path);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "files came or went"
    );
    for (name, (len, mtime, bytes)) in &before {
        let (len2, mtime2, bytes2) = &after[name];
        assert_eq!(len, len2, "{name:?}: length changed");
        assert!(bytes == bytes2, "{name:?}: contents changed");
        assert_eq!(mtime, mtime2, "{name:?}: modification time changed");
    }
    // Writing more than a commit writes in place starts the writer thread.
    let dir = JockyDirectory::open(path).unwrap();
    assert_eq!(threads_named("jocky-writer"), 0);
    let mut w = tantivy::Directory::open_write(&dir, Path::new("big.bin")).unwrap();
    for _ in 0..32 {
        std::io::Write::write_all(&mut w, &[7u8; 1 << 20]).unwrap();
    }
    w.terminate().unwrap();
    assert_eq!(threads_named("jocky-writer"), 1);
}
