//! Open never destroys what the log cannot account for.
//!
//! Real folders (a single exported index and a three-tenant store, each with
//! several container files and segment files) are copied, one file is taken
//! away or planted, and opened. Open must fail with an error naming the
//! problem, and every file of the folder must be byte-identical afterwards (and
//! no file added or removed). The pristine copies open and search as before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jocky::{Error, ExportPolicy, JockyDirectory, Store};
use tantivy::collector::Count;
use tantivy::query::QueryParser;
use tantivy::schema::{Schema, STORED, TEXT};
use tantivy::{doc, Index, IndexWriter};

const TENANTS: [&str; 3] = ["alpha", "beta", "gamma"];

fn schema() -> (Schema, tantivy::schema::Field) {
    let mut b = Schema::builder();
    let body = b.add_text_field("body", TEXT | STORED);
    (b.build(), body)
}

/// Indexes three commits of 1,000 documents (about 1 MiB of index each) into `dir`.
fn index_into(dir: JockyDirectory, seed: u64) {
    let (schema, body) = schema();
    let index = Index::open_or_create(dir, schema).unwrap();
    let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    for commit in 0..3u64 {
        for i in 0..1000u64 {
            let n = seed * 1_000_000 + commit * 1000 + i;
            let text: String = (0..100)
                .map(|k| format!("w{} ", (n * 7919 + k * 104_729) % 5000))
                .collect();
            w.add_document(doc!(body => format!("common {text}")))
                .unwrap();
        }
        w.commit().unwrap();
    }
}

/// Documents containing "common" in `dir`.
fn count(dir: JockyDirectory) -> usize {
    let index = Index::open(dir).unwrap();
    let (_, body) = schema();
    let q = QueryParser::for_index(&index, vec![body])
        .parse_query("common")
        .unwrap();
    index
        .reader()
        .unwrap()
        .searcher()
        .search(&q, &Count)
        .unwrap()
}

fn builder(path: &Path, container_file_size: u64) -> jocky::Builder {
    JockyDirectory::builder(path)
        .container_file_size(container_file_size)
        .preallocate(256 << 10)
        .export_policy(ExportPolicy::Manual)
}

/// A single exported index (`store` false) or a three-tenant store, with
/// container files of `container_file_size` bytes.
fn make(path: &Path, store: bool, container_file_size: u64) {
    if store {
        let s = builder(path, container_file_size).open_store().unwrap();
        for (i, t) in TENANTS.iter().enumerate() {
            index_into(s.directory(t).unwrap(), i as u64);
        }
        s.export_committed().unwrap();
    } else {
        let dir = builder(path, container_file_size).open().unwrap();
        index_into(dir.clone(), 0);
        dir.export_committed().unwrap();
    }
}

/// Opens the folder and counts the documents of every index in it.
fn open_and_count(path: &Path, store: bool) -> jocky::Result<usize> {
    if store {
        let s = Store::builder(path).open_store()?;
        Ok(TENANTS.iter().map(|t| count(s.directory(t).unwrap())).sum())
    } else {
        Ok(count(JockyDirectory::open(path)?))
    }
}

/// Every file of the folder and its bytes.
fn snapshot(path: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(path)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn names(path: &Path, prefix: &str, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = snapshot(path)
        .into_keys()
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn containers(path: &Path) -> Vec<String> {
    names(path, "jocky-", ".log")
}

fn segments(path: &Path) -> Vec<String> {
    names(path, "jocky-seg-", ".seg")
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for (name, bytes) in snapshot(from) {
        std::fs::write(to.join(name), bytes).unwrap();
    }
}

/// Pristine folders, made once per test binary: (single small, single
/// multi-file, store small, store multi-file, another index for planting).
struct Fixtures {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

fn fixtures() -> &'static Fixtures {
    static F: std::sync::OnceLock<Fixtures> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        make(&root.join("single-one"), false, 64 << 20);
        make(&root.join("single-many"), false, 1 << 20);
        make(&root.join("store-one"), true, 64 << 20);
        make(&root.join("store-many"), true, 1 << 20);
        make(&root.join("other"), false, 64 << 20);
        Fixtures { _tmp: tmp, root }
    })
}

/// Copies fixture `name`, lets `damage` change the copy, opens it, and checks
/// that open fails with an error whose text contains `expect` (computed from
/// the copy before the damage) and that nothing in the folder changed.
fn refused(
    name: &str,
    store: bool,
    damage: impl FnOnce(&Path) -> String,
) -> (Error, BTreeMap<String, Vec<u8>>) {
    let f = fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("copy");
    copy(&f.root.join(name), &dir);
    let expect = damage(&dir);
    let before = snapshot(&dir);
    let err = match open_and_count(&dir, store) {
        Ok(n) => panic!("{name}: open accepted the folder ({n} docs); expected {expect:?}"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(
        text.contains(&expect),
        "{name}: error {text:?} does not name {expect:?}"
    );
    let after = snapshot(&dir);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "{name}: files added or removed by a refused open"
    );
    for (n, b) in &before {
        assert!(after[n] == *b, "{name}: {n} changed by a refused open");
    }
    (err, before)
}

fn remove(dir: &Path, name: &str) {
    std::fs::remove_file(dir.join(name)).unwrap();
}

fn each_layout(test: impl Fn(&str, bool)) {
    test("single-many", false);
    test("store-many", true);
}

#[test]
fn pristine_folders_open_and_search() {
    let f = fixtures();
    for (name, store, docs) in [
        ("single-one", false, 3000),
        ("single-many", false, 3000),
        ("store-one", true, 9000),
        ("store-many", true, 9000),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("copy");
        copy(&f.root.join(name), &dir);
        assert!(!segments(&dir).is_empty(), "{name}: nothing exported");
        if name.ends_with("many") {
            assert!(
                containers(&dir).len() >= 3,
                "{name}: {:?}",
                containers(&dir)
            );
        } else {
            // The log, and the file a clean close starts with a snapshot.
            assert!(containers(&dir).len() <= 2, "{name}");
        }
        assert_eq!(open_and_count(&dir, store).unwrap(), docs, "{name}");
    }
}

#[test]
fn a_every_container_file_removed() {
    for (name, store) in [("single-one", false), ("store-one", true)] {
        let (err, _) = refused(name, store, |dir| {
            for c in containers(dir) {
                remove(dir, &c);
            }
            "no container file".into()
        });
        assert!(matches!(err, Error::Incomplete { .. }), "{err:?}");
        assert!(err.to_string().contains("segment file"), "{err}");
    }
}

#[test]
fn b_the_newest_container_file_removed() {
    each_layout(|name, store| {
        let (err, _) = refused(name, store, |dir| {
            let newest = containers(dir).pop().unwrap();
            remove(dir, &newest);
            newest
        });
        assert!(matches!(err, Error::Incomplete { .. }), "{err:?}");
        assert!(err.to_string().contains("is missing"), "{err}");
    });
}

#[test]
fn c_an_older_container_file_removed() {
    each_layout(|name, store| {
        for which in [0, 1] {
            refused(name, store, |dir| {
                let older = containers(dir)[which].clone();
                remove(dir, &older);
                older
            });
        }
    });
}

#[test]
fn d_a_referenced_segment_file_removed() {
    each_layout(|name, store| {
        let (err, _) = refused(name, store, |dir| {
            let seg = segments(dir)[0].clone();
            remove(dir, &seg);
            seg
        });
        assert!(matches!(err, Error::Incomplete { .. }), "{err:?}");
        assert!(err.to_string().contains("references it"), "{err}");
    });
}

#[test]
fn e_everything_removed_but_one_segment_file() {
    for (name, store) in [
        ("single-one", false),
        ("single-many", false),
        ("store-one", true),
        ("store-many", true),
    ] {
        let (err, before) = refused(name, store, |dir| {
            let keep = segments(dir).pop().unwrap();
            for n in snapshot(dir).into_keys().filter(|n| *n != keep) {
                remove(dir, &n);
            }
            "no container file".into()
        });
        assert_eq!(before.len(), 1);
        assert!(matches!(err, Error::Incomplete { .. }), "{err:?}");
    }
}

/// A segment file of another index, copied in under a number this log never
/// used, is not "stray, removable": the log has no record of it, so open
/// refuses and leaves it (and everything else) alone.
#[test]
fn f_a_foreign_segment_file_under_an_unused_number() {
    let other = fixtures().root.join("other");
    let foreign = segments(&other).pop().unwrap();
    each_layout(|name, store| {
        let (err, _) = refused(name, store, |dir| {
            let planted = "jocky-seg-0000009999.seg".to_string();
            std::fs::copy(other.join(&foreign), dir.join(&planted)).unwrap();
            planted
        });
        assert!(matches!(err, Error::Incomplete { .. }), "{err:?}");
        assert!(err.to_string().contains("no record"), "{err}");
    });
}
