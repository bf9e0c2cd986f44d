//! Hot ranges and prefetch: export records, in each segment file's table, the
//! ranges tantivy reads when it opens the segment; `JockyDirectory::prefetch`
//! reads them ahead. What a reopened index reads when its searcher opens must
//! lie inside them, and they must be a small part of the segment. Files still
//! in the container are read ahead whole when a handle on a small one opens.
//! The export asks for exactly what it copies, and starts the write-back of
//! what it wrote as it goes.

mod common;

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};

use jocky::{ExportPolicy, JockyDirectory};
use tantivy::collector::TopDocs;
use tantivy::directory::error::{DeleteError, OpenReadError, OpenWriteError};
use tantivy::directory::{FileHandle, OwnedBytes, WatchCallback, WatchHandle, WritePtr};
use tantivy::query::QueryParser;
use tantivy::schema::{Schema, FAST, INDEXED, STORED, TEXT};
use tantivy::{doc, Directory, HasLen, Index, IndexWriter, TantivyDocument};

type Reads = Arc<Mutex<Vec<(String, Range<usize>)>>>;

/// Forwards to a directory and records every range read.
#[derive(Clone, Debug)]
struct Recording {
    inner: JockyDirectory,
    reads: Reads,
}

#[derive(Debug)]
struct RecordingHandle {
    inner: Arc<dyn FileHandle>,
    path: String,
    reads: Reads,
}

impl HasLen for RecordingHandle {
    fn len(&self) -> usize {
        self.inner.len()
    }
}

impl FileHandle for RecordingHandle {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        self.reads
            .lock()
            .unwrap()
            .push((self.path.clone(), range.clone()));
        self.inner.read_bytes(range)
    }
}

impl Directory for Recording {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        Ok(Arc::new(RecordingHandle {
            inner: self.inner.get_file_handle(path)?,
            path: path.to_string_lossy().into_owned(),
            reads: self.reads.clone(),
        }))
    }
    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.inner.delete(path)
    }
    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }
    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        self.inner.open_write(path)
    }
    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.inner.atomic_read(path)
    }
    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.inner.atomic_write(path, data)
    }
    fn sync_directory(&self) -> io::Result<()> {
        self.inner.sync_directory()
    }
    fn watch(&self, cb: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(cb)
    }
}

fn open(path: &Path) -> JockyDirectory {
    JockyDirectory::builder(path)
        .export_policy(ExportPolicy::Manual)
        .open()
        .unwrap()
}

#[test]
fn what_opening_a_segment_reads_is_recorded_at_export_and_prefetched() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = Schema::builder();
    let title = b.add_text_field("title", TEXT | STORED);
    let body = b.add_text_field("body", TEXT | STORED);
    let n = b.add_u64_field("n", INDEXED | FAST | STORED);
    let schema = b.build();
    {
        let dir = open(tmp.path());
        let index = Index::create(dir.clone(), schema.clone(), Default::default()).unwrap();
        let mut w: IndexWriter = index.writer_with_num_threads(1, 30_000_000).unwrap();
        for i in 0..4000u64 {
            w.add_document(doc!(
                title => format!("title {i} word{}", i % 97),
                body => format!("body of document {i}: alpha beta{} gamma{} delta", i % 13, i % 1001),
                n => i,
            ))
            .unwrap();
        }
        w.commit().unwrap();
        drop(w);
        let report = dir.export_committed().unwrap();
        assert_eq!(report.segment_files, 1);
    }
    let seg_name = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".seg"))
        .unwrap();
    let seg = std::fs::read(tmp.path().join(&seg_name)).unwrap();
    let hot = jocky::testing::decode::segment_hot_ranges(&seg).unwrap();
    assert!(!hot.is_empty());
    // Per file: its hot ranges, and its length.
    let mut by_file: BTreeMap<String, (Vec<Range<u64>>, u64)> = BTreeMap::new();
    for (path, off, len, file_len) in &hot {
        assert!(
            off + len <= *file_len,
            "{path}: {off}+{len} past {file_len}"
        );
        let f = by_file
            .entry(path.clone())
            .or_insert((Vec::new(), *file_len));
        f.0.push(*off..off + len);
    }
    let ext = |p: &str| p.rsplit_once('.').unwrap().1.to_string();
    let exts: Vec<String> = by_file.keys().map(|p| ext(p)).collect();
    for want in ["term", "fieldnorm", "store", "idx", "pos", "fast"] {
        assert!(
            exts.contains(&want.to_string()),
            "no hot range in .{want}: {exts:?}"
        );
    }
    // Small: footers and dictionaries, not the postings or the documents.
    let hot_bytes: u64 = hot.iter().map(|h| h.2).sum();
    let file_bytes: u64 = by_file.values().map(|f| f.1).sum();
    assert!(
        hot_bytes * 4 < file_bytes,
        "{hot_bytes} of {file_bytes} bytes hot"
    );
    let (store_ranges, store_len) =
        &by_file[by_file.keys().find(|p| p.ends_with(".store")).unwrap()];
    let store_hot: u64 = store_ranges.iter().map(|r| r.end - r.start).sum();
    assert!(
        store_hot * 4 < *store_len,
        "{store_hot} of {store_len} .store bytes hot"
    );

    // A reopened index: prefetch reports the recorded ranges; what its
    // searcher reads when it opens lies inside them.
    let dir = open(tmp.path());
    let report = dir.prefetch().unwrap();
    assert_eq!(report.segment_files, 1);
    assert_eq!(report.hot_ranges, hot.len());
    assert_eq!(report.hot_bytes, hot_bytes);
    let reads = Reads::default();
    let index = Index::open(Recording {
        inner: dir.clone(),
        reads: reads.clone(),
    })
    .unwrap();
    let reader = index.reader().unwrap();
    let searcher = reader.searcher();
    let opened: Vec<(String, Range<usize>)> = reads.lock().unwrap().clone();
    let mut checked = 0;
    for (path, r) in &opened {
        let Some((ranges, _)) = by_file.get(path) else {
            continue; // meta.json, .managed.json, files left in the container
        };
        let (start, end) = (r.start as u64, r.end as u64);
        assert!(
            ranges.iter().any(|h| h.start <= start && end <= h.end),
            "{path} {r:?} read on open, not in its hot ranges {ranges:?}"
        );
        checked += 1;
    }
    assert!(checked > 0, "the searcher read nothing of the segment file");
    // And the index answers as before.
    let q = QueryParser::for_index(&index, vec![title, body])
        .parse_query("gamma7")
        .unwrap();
    let top = searcher
        .search(&q, &TopDocs::with_limit(3).order_by_score())
        .unwrap();
    assert_eq!(top.len(), 3);
    let d: TantivyDocument = searcher.doc(top[0].1).unwrap();
    assert!(d.get_first(n).is_some());
}

/// A small file still in the container is read ahead whole, each chunk with
/// the record header before it, as soon as a handle on it opens: a cold page
/// fault on the container mapping would read the device's whole read-around
/// window, which in a container holds other files (other tenants'). A file
/// larger than `FETCH_WHOLE` is left to tantivy's reads.
#[test]
fn a_small_container_file_is_read_ahead_with_its_headers_when_opened() {
    use std::io::Write;
    use tantivy::directory::TerminatingWrite;

    let s = jocky::testing::SimStorage::new();
    let dir = common::open_sim(&s).unwrap();
    let small: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let big = vec![9u8; jocky::FETCH_WHOLE as usize + 1];
    for (name, bytes) in [("small.bin", &small), ("big.bin", &big)] {
        let mut w = dir.open_write(Path::new(name)).unwrap();
        w.write_all(bytes).unwrap();
        w.terminate().unwrap();
    }
    s.take_read_ahead();

    let h = dir.get_file_handle(Path::new("small.bin")).unwrap();
    let asked = s.take_read_ahead();
    assert!(
        asked.len() >= 2,
        "10,000 bytes through a buffer growing from 4 KiB are several chunks; read ahead: {asked:?}"
    );
    assert!(asked
        .iter()
        .all(|(f, _)| f.starts_with("jocky-") && f.ends_with(".log")));
    // Each chunk's range reaches back over its record's header (48 bytes).
    let covered: u64 = asked.iter().map(|(_, r)| r.end - r.start).sum();
    assert_eq!(covered, small.len() as u64 + 48 * asked.len() as u64);
    assert_eq!(h.read_bytes(0..small.len()).unwrap().as_slice(), &small[..]);

    let h = dir.get_file_handle(Path::new("big.bin")).unwrap();
    assert_eq!(s.take_read_ahead(), vec![]);
    assert_eq!(h.read_bytes(0..big.len()).unwrap().as_slice(), &big[..]);
}

/// The export asks the kernel for exactly each extent it copies (with its
/// record header) before reading it: a page of it dropped from the cache
/// meanwhile is read back alone, not with the device's whole read-around
/// window of the container (other files' pages; 26–51 MB read back per export
/// of the generated corpus in about half the runs before, 0–2 MB after).
#[test]
fn the_export_reads_ahead_exactly_the_extents_it_copies() {
    use std::io::Write;
    use tantivy::directory::TerminatingWrite;

    let s = jocky::testing::SimStorage::new();
    let dir = common::open_sim(&s).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let mut w = dir.open_write(Path::new("seg.idx")).unwrap();
    w.write_all(&data).unwrap();
    w.terminate().unwrap();
    s.take_read_ahead();
    assert_eq!(dir.export_files(&[Path::new("seg.idx")]).unwrap().files, 1);
    let asked: Vec<(String, Range<u64>)> = s
        .take_read_ahead()
        .into_iter()
        .filter(|(f, _)| f.ends_with(".log"))
        .collect();
    assert!(asked.len() >= 2, "several chunks: {asked:?}");
    let covered: u64 = asked.iter().map(|(_, r)| r.end - r.start).sum();
    assert_eq!(covered, data.len() as u64 + 48 * asked.len() as u64);
    assert_eq!(common::read(&dir, "seg.idx"), data);
}

/// The export starts the write-back of its segment file every 8 MiB as it
/// writes it, front to back and each byte once, instead of leaving hundreds of
/// MB dirty for its closing `fdatasync` (a write-back storm that stalls the
/// commits of every index on the disk).
#[test]
fn the_export_starts_write_back_as_it_writes() {
    use std::io::Write;
    use tantivy::directory::TerminatingWrite;

    let s = jocky::testing::SimStorage::new();
    let dir = JockyDirectory::builder("/sim")
        .storage(Arc::new(s.clone()))
        .container_file_size(64 << 20)
        .export_policy(ExportPolicy::Manual)
        .write_mode(jocky::WriteMode::Inline)
        .open()
        .unwrap();
    let data: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 251) as u8).collect();
    let mut w = dir.open_write(Path::new("seg.store")).unwrap();
    w.write_all(&data).unwrap();
    w.terminate().unwrap();
    s.take_write_back();
    assert_eq!(
        dir.export_files(&[Path::new("seg.store")]).unwrap().files,
        1
    );
    let started: Vec<Range<u64>> = s
        .take_write_back()
        .into_iter()
        .filter(|(f, _)| f.ends_with(".seg"))
        .map(|(_, r)| r)
        .collect();
    assert_eq!(started.len(), 2, "{started:?}");
    for pair in started.windows(2) {
        assert_eq!(pair[0].end, pair[1].start, "{started:?}");
    }
    for r in &started {
        assert!(r.end - r.start >= 8 << 20, "{started:?}");
    }
    assert_eq!(common::read(&dir, "seg.store"), data);
}
