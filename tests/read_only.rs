//! A read-only second process beside a writer process.
//!
//! A child process (this test binary, re-run on an `#[ignore]`d entry point)
//! indexes commit after commit, exporting and reclaiming as it goes. The parent
//! opens the same folder read-only: it never blocks the writer, sees every
//! commit the writer acknowledged before each refresh, never sees half a commit,
//! keeps searching an old searcher after the writer reclaimed what it reads, and
//! cannot write.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use jocky::{Error, ExportPolicy, JockyDirectory, Store};
use tantivy::collector::Count;
use tantivy::query::AllQuery;
use tantivy::schema::{Schema, STORED, TEXT};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy};

const DOCS_PER_COMMIT: usize = 50;
const COMMITS: usize = 40;
const TENANTS: [&str; 2] = ["t0", "t1"];

fn schema() -> (Schema, tantivy::schema::Field) {
    let mut b = Schema::builder();
    let body = b.add_text_field("body", TEXT | STORED);
    (b.build(), body)
}

fn commit_docs(w: &mut IndexWriter, body: tantivy::schema::Field, commit: usize) {
    for i in 0..DOCS_PER_COMMIT {
        let words: String = (0..60)
            .map(|k| format!("w{} ", (commit * 7919 + i * 104_729 + k * 31) % 3000))
            .collect();
        w.add_document(doc!(body => words)).unwrap();
    }
    w.commit().unwrap();
}

/// The writer: `COMMITS` commits into the folder in `JOCKY_RO_DIR` (a store of
/// `TENANTS` when `JOCKY_RO_STORE` is set), exporting and reclaiming every few
/// commits; prints `committed N` after each acknowledged commit.
#[test]
#[ignore = "child process of the read-only tests"]
fn child_writer() {
    let dir = PathBuf::from(std::env::var("JOCKY_RO_DIR").unwrap());
    let store = std::env::var("JOCKY_RO_STORE").is_ok();
    let builder = || {
        JockyDirectory::builder(&dir)
            .container_file_size(1 << 20)
            .preallocate(256 << 10)
            .export_policy(ExportPolicy::Manual)
    };
    let (schema, body) = schema();
    let mut out = std::io::stdout();
    if store {
        let s = builder().open_store().unwrap();
        let mut writers: Vec<IndexWriter> = TENANTS
            .iter()
            .map(|t| {
                let index = Index::open_or_create(s.directory(t).unwrap(), schema.clone()).unwrap();
                index.writer_with_num_threads(1, 15_000_000).unwrap()
            })
            .collect();
        for c in 0..COMMITS {
            for w in &mut writers {
                commit_docs(w, body, c);
            }
            if c % 4 == 3 {
                s.export_committed().unwrap();
                s.reclaim().unwrap();
            }
            writeln!(out, "committed {}", c + 1).unwrap();
            out.flush().unwrap();
        }
    } else {
        let d = builder().open().unwrap();
        let index = Index::open_or_create(d.clone(), schema).unwrap();
        let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for c in 0..COMMITS {
            commit_docs(&mut w, body, c);
            if c % 4 == 3 {
                d.export_committed().unwrap();
                d.reclaim().unwrap();
            }
            writeln!(out, "committed {}", c + 1).unwrap();
            out.flush().unwrap();
        }
    }
    writeln!(out, "done").unwrap();
}

struct Writer {
    child: Child,
    lines: std::io::Lines<BufReader<ChildStdout>>,
    acknowledged: usize,
    done: bool,
}

impl Writer {
    fn spawn(dir: &Path, store: bool) -> Writer {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "child_writer", "--ignored", "--nocapture"])
            .env("JOCKY_RO_DIR", dir)
            .stdout(Stdio::piped());
        if store {
            cmd.env("JOCKY_RO_STORE", "1");
        }
        let mut child = cmd.spawn().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Writer {
            child,
            lines,
            acknowledged: 0,
            done: false,
        }
    }

    /// Waits for the next acknowledged commit (false once the writer is done).
    fn next(&mut self) -> bool {
        for line in self.lines.by_ref() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("committed ") {
                self.acknowledged = n.trim().parse().unwrap();
                return true;
            }
            if line.trim() == "done" {
                self.done = true;
                return false;
            }
        }
        self.done = true;
        false
    }

    fn finish(mut self) {
        while self.next() {}
        assert!(self.child.wait().unwrap().success(), "the writer failed");
        assert_eq!(self.acknowledged, COMMITS);
    }
}

fn docs(reader: &IndexReader) -> usize {
    reader.searcher().search(&AllQuery, &Count).unwrap()
}

/// Checks one refreshed view: whole commits only, and at least every commit
/// acknowledged before the refresh.
fn check_view(reader: &IndexReader, acknowledged_before: usize, what: &str) -> usize {
    reader.reload().unwrap();
    let n = docs(reader);
    assert_eq!(
        n % DOCS_PER_COMMIT,
        0,
        "{what}: half a commit visible ({n} docs)"
    );
    let commits = n / DOCS_PER_COMMIT;
    assert!(
        commits >= acknowledged_before,
        "{what}: {commits} commits visible, {acknowledged_before} acknowledged before the refresh"
    );
    assert!(commits <= COMMITS, "{what}: {commits}");
    commits
}

#[test]
fn a_reader_process_follows_a_writer_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("index");
    let mut writer = Writer::spawn(&dir, false);
    assert!(writer.next(), "the writer made no commit");
    let ro = JockyDirectory::open_read_only(&dir).unwrap();
    let index = Index::open(ro.clone()).unwrap();
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .unwrap();
    let mut seen = check_view(&reader, 1, "first open");
    // An old searcher, held while the writer exports and reclaims below.
    let old = reader.searcher();
    let old_docs = old.search(&AllQuery, &Count).unwrap();
    let mut refreshes = 0;
    while writer.next() {
        let acknowledged = writer.acknowledged;
        ro.refresh().unwrap();
        refreshes += 1;
        let now = check_view(&reader, acknowledged, &format!("refresh {refreshes}"));
        assert!(now >= seen, "went back from {seen} to {now} commits");
        seen = now;
        // The old searcher still reads its (possibly reclaimed) files.
        assert_eq!(old.search(&AllQuery, &Count).unwrap(), old_docs);
        for seg in old.segment_readers() {
            let store = seg.get_store_reader(1).unwrap();
            store.get::<tantivy::TantivyDocument>(0).unwrap();
        }
    }
    assert!(writer.done);
    ro.refresh().unwrap();
    assert_eq!(check_view(&reader, COMMITS, "after the writer"), COMMITS);
    writer.finish();
    // Writes through a read-only open are refused, and change nothing.
    use tantivy::Directory;
    let err = ro.atomic_write(Path::new("x.json"), b"{}").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err:?}");
    assert!(
        matches!(
            err.get_ref().and_then(|e| e.downcast_ref::<Error>()),
            Some(Error::ReadOnly { .. })
        ),
        "{err:?}"
    );
    assert!(!ro.exists(Path::new("x.json")).unwrap());
    assert!(refreshes >= COMMITS / 2, "only {refreshes} refreshes");
}

#[test]
fn a_store_reader_process_follows_a_store_writer_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut writer = Writer::spawn(&dir, true);
    assert!(writer.next(), "the writer made no commit");
    let store = Store::open_read_only(&dir).unwrap();
    assert_eq!(store.tenants(), TENANTS.to_vec());
    let readers: Vec<IndexReader> = TENANTS
        .iter()
        .map(|t| {
            Index::open(store.directory(t).unwrap())
                .unwrap()
                .reader_builder()
                .reload_policy(ReloadPolicy::Manual)
                .try_into()
                .unwrap()
        })
        .collect();
    while writer.next() {
        let acknowledged = writer.acknowledged;
        store.refresh().unwrap();
        for (t, r) in TENANTS.iter().zip(&readers) {
            check_view(r, acknowledged, t);
        }
    }
    store.refresh().unwrap();
    for (t, r) in TENANTS.iter().zip(&readers) {
        assert_eq!(check_view(r, COMMITS, t), COMMITS);
    }
    writer.finish();
    let err = store.remove_tenant("t0").unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    assert_eq!(store.tenants(), TENANTS.to_vec());
}

#[test]
fn a_read_only_open_never_creates_or_locks() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    assert!(JockyDirectory::open_read_only(&missing).is_err());
    assert!(!missing.exists(), "a read-only open created the folder");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = JockyDirectory::open_read_only(&empty).unwrap_err();
    assert!(matches!(err, Error::Incomplete { .. }), "{err:?}");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    // A writer opens while a reader is open (the reader holds no lock) and
    // the other way round.
    let dir = tmp.path().join("index");
    drop(JockyDirectory::open(&dir).unwrap());
    let ro = JockyDirectory::open_read_only(&dir).unwrap();
    let rw = JockyDirectory::open(&dir).unwrap();
    let ro2 = JockyDirectory::open_read_only(&dir).unwrap();
    drop((ro, rw, ro2));
}
