//! The `jocky` binary end to end on real folders: every subcommand, the
//! conversion round trip against an index tantivy built on MmapDirectory,
//! damage found by `verify`, `inspect` beside a writer process, and the errors
//! (missing folder, folder without a container, bad arguments) with their exit
//! codes and nothing created.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::QueryParser;
use tantivy::schema::{Field, Schema, Value as _, STORED, TEXT};
use tantivy::{doc, Directory, Index, IndexWriter, ReloadPolicy, TantivyDocument, Term};

fn jocky(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jocky"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts success and returns stdout.
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts exit code `code` with a `jocky: ` message on stderr; returns stderr.
fn fails(out: Output, code: i32) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {stderr}",
        text(&out.stdout)
    );
    stderr
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

const WORDS: [&str; 12] = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
    "lambda", "mu",
];

fn words(n: usize) -> String {
    (0..6)
        .map(|k| WORDS[(n / (k + 1) + k * 5 + n % 7) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn schema() -> (Schema, Field, Field) {
    let mut b = Schema::builder();
    let title = b.add_text_field("title", TEXT | STORED);
    let body = b.add_text_field("body", TEXT);
    (b.build(), title, body)
}

/// Adds `docs` documents per commit, `commits` times; deletes some on the way.
fn index_into(index: &Index, commits: usize, docs: usize) {
    let schema = index.schema();
    let title = schema.get_field("title").unwrap();
    let body = schema.get_field("body").unwrap();
    let mut writer: IndexWriter = index.writer(15_000_000).unwrap();
    for c in 0..commits {
        for i in 0..docs {
            let n = c * docs + i;
            writer
                .add_document(
                    doc!(title => format!("doc{n} {}", words(n)), body => words(n * 7 + 3)),
                )
                .unwrap();
        }
        if c == 1 {
            writer.delete_term(Term::from_field_text(title, "doc5"));
        }
        writer.commit().unwrap();
    }
    writer.wait_merging_threads().unwrap();
}

/// An index tantivy builds on MmapDirectory: 3 commits of 120 documents.
fn build_mmap_index(path: &Path) {
    fs::create_dir_all(path).unwrap();
    let index = Index::create_in_dir(path, schema().0).unwrap();
    index_into(&index, 3, 120);
}

/// Every file of a tantivy folder but its lock files, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with(".tantivy-") || !n.ends_with(".lock"))
        .map(|n| {
            let bytes = fs::read(dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

/// Every file of a folder with its bytes, lock files included (to see that a
/// command changed nothing).
fn all_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Asserts two folder snapshots are equal, naming the first difference
/// (instead of printing every byte).
fn assert_same_files(
    got: &BTreeMap<String, Vec<u8>>,
    want: &BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (name, bytes) in got {
        let other = &want[name];
        if bytes != other {
            let at = bytes.iter().zip(other).position(|(a, b)| a != b);
            panic!(
                "{what}: {name} differs: {} bytes now, {} before, first difference at {at:?}",
                bytes.len(),
                other.len()
            );
        }
    }
}

/// For each query: hit count and the top 10 (score, title).
fn search(index: &Index) -> Vec<(usize, Vec<(String, String)>)> {
    let schema = index.schema();
    let title = schema.get_field("title").unwrap();
    let body = schema.get_field("body").unwrap();
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .unwrap();
    let searcher = reader.searcher();
    let parser = QueryParser::for_index(index, vec![title, body]);
    [
        "alpha",
        "beta gamma",
        "+delta +epsilon",
        "\"zeta eta\"",
        "doc7",
        "mu -kappa",
    ]
    .iter()
    .map(|q| {
        let query = parser.parse_query(q).unwrap();
        let count = searcher.search(&query, &Count).unwrap();
        let top = searcher
            .search(&query, &TopDocs::with_limit(10).order_by_score())
            .unwrap()
            .into_iter()
            .map(|(score, addr)| {
                let doc: TantivyDocument = searcher.doc(addr).unwrap();
                let t = doc.get_first(title).unwrap().as_str().unwrap().to_string();
                (format!("{score:.6}"), t)
            })
            .collect();
        (count, top)
    })
    .collect()
}

fn files_named(dir: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with(prefix) && n.ends_with(suffix)
        })
        .collect();
    v.sort();
    v
}

fn flip_byte(path: &Path, offset: u64) {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut b).unwrap();
    b[0] ^= 0x5a;
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&b).unwrap();
    f.sync_all().unwrap();
}

// ---------------------------------------------------------------- convert

#[test]
fn convert_round_trip_is_byte_identical_and_searches_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("mmap");
    let jk = tmp.path().join("jocky");
    let back = tmp.path().join("back");
    build_mmap_index(&src);
    let original = snapshot(&src);
    assert!(original.len() > 5, "{:?}", original.keys());

    let stdout = ok(jocky(&[&"convert", &src, &jk]));
    assert!(stdout.contains("converted"), "{stdout}");
    assert_eq!(snapshot(&src), original, "the source is unchanged");
    assert!(
        !files_named(&jk, "jocky-seg-", ".seg").is_empty(),
        "segments exported"
    );
    ok(jocky(&[&"verify", &jk]));

    // The same answers from the jocky copy as from the original.
    let jocky_dir = jocky::JockyDirectory::open_read_only(&jk).unwrap();
    let mut files: Vec<String> = jocky_dir
        .list_files()
        .iter()
        .map(|p| p.to_str().unwrap().to_string())
        .collect();
    files.sort();
    assert_eq!(files, original.keys().cloned().collect::<Vec<_>>());
    let expected = search(&Index::open_in_dir(&src).unwrap());
    assert!(expected.iter().any(|(n, _)| *n > 10));
    assert_eq!(search(&Index::open(jocky_dir).unwrap()), expected);

    // ls and cat see the same files and bytes.
    let ls = ok(jocky(&[&"ls", &jk]));
    for name in original.keys() {
        assert!(ls.contains(name.as_str()), "{name} in {ls}");
    }
    for name in ["meta.json", ".managed.json"] {
        let out = jocky(&[&"cat", &jk, &name]);
        assert!(out.status.success());
        assert_eq!(out.stdout, original[name], "{name}");
    }
    let biggest = original.iter().max_by_key(|(_, b)| b.len()).unwrap();
    let out = jocky(&[&"cat", &jk, biggest.0]);
    assert_eq!(&out.stdout, biggest.1);

    let stdout = ok(jocky(&[&"convert", &"--to-mmap", &jk, &back]));
    assert!(stdout.contains("converted"), "{stdout}");
    assert_eq!(
        snapshot(&back),
        original,
        "byte-identical after the round trip"
    );
    assert_eq!(search(&Index::open_in_dir(&back).unwrap()), expected);
}

#[test]
fn convert_into_tenants_of_a_store_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("mmap");
    let store = tmp.path().join("store");
    build_mmap_index(&src);
    let original = snapshot(&src);

    // A new store, then a second tenant in the existing store.
    ok(jocky(&[&"convert", &src, &store, &"--tenant", &"a"]));
    ok(jocky(&[&"convert", &src, &store, &"--tenant", &"b"]));
    assert_eq!(ok(jocky(&[&"tenants", &store])), "a\nb\n");

    // The tenant exists already: refused, the folder unchanged.
    let before = all_files(&store);
    let err = fails(jocky(&[&"convert", &src, &store, &"--tenant", &"a"]), 1);
    assert!(err.contains("already has a tenant"), "{err}");
    assert_same_files(&all_files(&store), &before, "refused convert");

    // ls without --tenant lists every tenant's files with a tenant column.
    let ls = ok(jocky(&[&"ls", &store]));
    assert!(ls.starts_with("TENANT"), "{ls}");
    assert_eq!(ls.matches("meta.json").count(), 2, "{ls}");
    let ls: Value = json(&ok(jocky(&[&"ls", &store, &"--tenant", &"b", &"--json"])));
    assert_eq!(ls.as_array().unwrap().len(), original.len());

    // Without --tenant there is no plain index in a store.
    let err = fails(
        jocky(&[&"convert", &"--to-mmap", &store, &tmp.path().join("x")]),
        1,
    );
    assert!(err.contains("--tenant"), "{err}");
    assert!(!tmp.path().join("x").exists());

    for t in ["a", "b"] {
        let back = tmp.path().join(format!("back-{t}"));
        ok(jocky(&[
            &"convert",
            &"--to-mmap",
            &store,
            &back,
            &"--tenant",
            &t,
        ]));
        assert_eq!(snapshot(&back), original, "tenant {t}");
    }
    ok(jocky(&[&"verify", &store]));
}

#[test]
fn convert_refuses_what_is_not_an_index_and_a_non_empty_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("mmap");
    build_mmap_index(&src);

    // A source that is not a tantivy index: nothing created.
    let junk = tmp.path().join("junk");
    fs::create_dir(&junk).unwrap();
    fs::write(junk.join("notes.txt"), b"hello").unwrap();
    let dst = tmp.path().join("dst");
    let err = fails(jocky(&[&"convert", &junk, &dst]), 1);
    assert!(err.contains("not a tantivy index"), "{err}");
    assert!(!dst.exists());
    let err = fails(jocky(&[&"convert", &tmp.path().join("missing"), &dst]), 1);
    assert!(err.contains("not a folder"), "{err}");
    assert!(!dst.exists());

    // A failure after the destination was made (a tenant name the store
    // refuses): what was made is removed again.
    let err = fails(jocky(&[&"convert", &src, &dst, &"--tenant", &"a/b"]), 1);
    assert!(
        err.contains("invalid tenant") && err.contains("left as it was"),
        "{err}"
    );
    assert!(!dst.exists());

    // A destination that is not empty: unchanged.
    let full = tmp.path().join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("keep.txt"), b"mine").unwrap();
    let err = fails(jocky(&[&"convert", &src, &full]), 1);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(all_files(&full).len(), 1);
    assert_eq!(fs::read(full.join("keep.txt")).unwrap(), b"mine");

    // A damaged source (a footer does not verify): nothing created.
    let damaged = tmp.path().join("damaged");
    fs::create_dir(&damaged).unwrap();
    for (name, bytes) in snapshot(&src) {
        fs::write(damaged.join(name), bytes).unwrap();
    }
    let store_file = files_named(&damaged, "", ".store")[0].clone();
    flip_byte(&store_file, 3);
    let err = fails(jocky(&[&"convert", &damaged, &dst]), 1);
    assert!(err.contains("footer checksum"), "{err}");
    assert!(!dst.exists());

    // An empty destination folder is fine; the other way, a non-empty one is not.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    ok(jocky(&[&"convert", &src, &empty]));
    let err = fails(jocky(&[&"convert", &"--to-mmap", &empty, &full]), 1);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(all_files(&full).len(), 1);
    // A plain jocky index is not a store to add a tenant to.
    let before = all_files(&empty);
    let err = fails(jocky(&[&"convert", &src, &empty, &"--tenant", &"t"]), 1);
    assert!(err.contains("plain index"), "{err}");
    assert_same_files(&all_files(&empty), &before, "refused convert");
    // A jocky folder is not an MmapDirectory source.
    let err = fails(jocky(&[&"convert", &empty, &dst]), 1);
    assert!(err.contains("--to-mmap"), "{err}");
    assert!(!dst.exists());
}

// ---------------------------------------------------------------- verify

#[test]
fn verify_names_a_damaged_segment_file() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("mmap");
    let jk = tmp.path().join("jocky");
    build_mmap_index(&src);
    ok(jocky(&[&"convert", &src, &jk]));
    let stdout = ok(jocky(&[&"verify", &jk]));
    assert!(stdout.contains("clean"), "{stdout}");

    let seg = files_named(&jk, "jocky-seg-", ".seg")[0].clone();
    let name = seg.file_name().unwrap().to_str().unwrap().to_string();
    flip_byte(&seg, 1);
    let out = jocky(&[&"verify", &jk]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("DAMAGED") && stdout.contains(&name),
        "{stdout}"
    );

    let report = json(&text(&jocky(&[&"verify", &jk, &"--json"]).stdout));
    assert_eq!(report["clean"], false);
    let hit = report["damage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["file"].as_str().unwrap().ends_with(&name))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(hit["offset"].is_u64(), "{report}");
}

#[test]
fn verify_names_a_damaged_container_record() {
    let tmp = tempfile::tempdir().unwrap();
    let jk = tmp.path().join("jocky");
    {
        let dir = jocky::JockyDirectory::builder(&jk)
            .export_policy(jocky::ExportPolicy::Manual)
            .open()
            .unwrap();
        let index = Index::create(dir, schema().0, Default::default()).unwrap();
        index_into(&index, 4, 50);
    }
    ok(jocky(&[&"verify", &jk]));

    // A Data record in the first container file with records after it.
    let records: Vec<Value> = ok(jocky(&[&"dump", &jk, &"--json"]))
        .lines()
        .map(json)
        .collect();
    assert!(records.len() > 20);
    let data = records[..records.len() - 5]
        .iter()
        .find(|r| r["kind"] == "Data" && r["file_no"] == 0)
        .unwrap_or_else(|| panic!("{records:?}"));
    let offset = data["offset"].as_u64().unwrap();
    let log = jk.join("jocky-0000000000.log");
    flip_byte(&log, offset + 32 + 4);

    let out = jocky(&[&"verify", &jk]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("jocky-0000000000.log"), "{stdout}");
    let report = json(&text(&jocky(&[&"verify", &jk, &"--json"]).stdout));
    let hit = report["damage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| {
            d["file"]
                .as_str()
                .unwrap()
                .ends_with("jocky-0000000000.log")
        })
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(hit["offset"].as_u64(), Some(offset), "{report}");
}

// ---------------------------------------------------------------- inspect, ls, cat, dump

#[test]
fn inspect_json_parses_and_has_the_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("mmap");
    let store = tmp.path().join("store");
    build_mmap_index(&src);
    ok(jocky(&[&"convert", &src, &store, &"--tenant", &"t1"]));

    let v = json(&ok(jocky(&[&"inspect", &store, &"--json"])));
    for key in [
        "format_version",
        "container_files",
        "segment_files",
        "virtual_files",
        "tenants",
    ] {
        assert!(v.get(key).is_some(), "{key} in {v}");
    }
    assert!(v["format_version"].as_u64().unwrap() >= 1);
    let c = &v["container_files"][0];
    assert_eq!(
        c["bytes"].as_u64().unwrap(),
        c["live_bytes"].as_u64().unwrap() + c["dead_bytes"].as_u64().unwrap()
    );
    assert!(!v["segment_files"].as_array().unwrap().is_empty());
    assert_eq!(v["tenants"][0]["name"], "t1");
    assert_eq!(
        v["virtual_files"].as_array().unwrap().len() as u64,
        v["tenants"][0]["files"].as_u64().unwrap()
    );

    let human = ok(jocky(&[&"inspect", &store]));
    for part in [
        "format version",
        "container files",
        "segment files",
        "t1",
        "meta.json",
    ] {
        assert!(human.contains(part), "{part} in {human}");
    }
    let tenants = json(&ok(jocky(&[&"tenants", &store, &"--json"])));
    assert_eq!(tenants[0]["name"], "t1");
}

#[test]
fn ls_cat_dump_and_their_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let jk = tmp.path().join("jocky");
    {
        let dir = jocky::JockyDirectory::open(&jk).unwrap();
        dir.atomic_write(Path::new("meta.json"), b"{\"x\":1}")
            .unwrap();
        let mut w = dir.open_write(Path::new("a.bin")).unwrap();
        w.write_all(&[7u8; 5000]).unwrap();
        tantivy::directory::TerminatingWrite::terminate(w).unwrap();
        // Without this the background worker may hold the last handle and
        // finish the container file (write, trim) after the drop returns.
        dir.wait_for_background_work();
    }
    let before = all_files(&jk);
    let ls = ok(jocky(&[&"ls", &jk]));
    assert!(ls.starts_with("PATH"), "{ls}");
    assert!(ls.contains("a.bin") && ls.contains("5000"), "{ls}");
    let out = jocky(&[&"cat", &jk, &"a.bin"]);
    assert_eq!(out.stdout, vec![7u8; 5000]);
    let err = fails(jocky(&[&"cat", &jk, &"nope"]), 1);
    assert!(err.contains("no file nope"), "{err}");
    let err = fails(jocky(&[&"ls", &jk, &"--tenant", &"ghost"]), 1);
    assert!(err.contains("no tenant"), "{err}");

    let dump = ok(jocky(&[&"dump", &jk]));
    assert!(
        dump.contains("AtomicWrite") && dump.contains("Create"),
        "{dump}"
    );
    let lines = ok(jocky(&[&"dump", &jk, &"--json"]));
    let kinds: Vec<String> = lines
        .lines()
        .map(|l| json(l)["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.contains(&"Finish".to_string()), "{kinds:?}");
    assert_eq!(
        lines.lines().count() + 1,
        dump.lines().count(),
        "header line"
    );
    assert_same_files(
        &all_files(&jk),
        &before,
        "read-only commands change nothing",
    );
}

// ---------------------------------------------------------------- maintenance

#[test]
fn export_reclaim_rm_tenant() {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    {
        let store = jocky::Store::builder(&store_dir)
            .export_policy(jocky::ExportPolicy::Manual)
            .open_store()
            .unwrap();
        for t in ["keep", "drop"] {
            let index =
                Index::create(store.directory(t).unwrap(), schema().0, Default::default()).unwrap();
            index_into(&index, 2, 40);
        }

        // A writer holds the folder: maintenance is refused, clearly.
        let err = fails(jocky(&[&"export", &store_dir]), 1);
        assert!(err.contains("held by a writer"), "{err}");
        // Looking works beside it.
        ok(jocky(&[&"inspect", &store_dir]));
        // So that the lock is gone when the block ends (see above).
        store.wait_for_background_work();
    }
    let stdout = ok(jocky(&[&"export", &store_dir]));
    assert!(stdout.starts_with("exported "), "{stdout}");
    assert!(!stdout.starts_with("exported 0 "), "{stdout}");
    assert!(!files_named(&store_dir, "jocky-seg-", ".seg").is_empty());

    let stdout = ok(jocky(&[&"rm-tenant", &store_dir, &"drop"]));
    assert!(stdout.contains("removed tenant"), "{stdout}");
    assert_eq!(ok(jocky(&[&"tenants", &store_dir])), "keep\n");
    let err = fails(jocky(&[&"rm-tenant", &store_dir, &"drop"]), 1);
    assert!(err.contains("no tenant"), "{err}");

    let stdout = ok(jocky(&[&"reclaim", &store_dir]));
    assert!(stdout.starts_with("removed "), "{stdout}");
    ok(jocky(&[&"verify", &store_dir]));
}

#[test]
fn tenants_lists_a_stores_tenants() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = jocky::Store::open(tmp.path()).unwrap();
        for tenant in ["beta", "alpha"] {
            let dir = store.directory(tenant).unwrap();
            dir.atomic_write(Path::new("meta.json"), b"{}").unwrap();
        }
    }
    assert_eq!(ok(jocky(&[&"tenants", &tmp.path()])), "alpha\nbeta\n");
}

#[test]
fn stats_prints_the_counters() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let dir = jocky::JockyDirectory::open(tmp.path()).unwrap();
        dir.atomic_write(Path::new("meta.json"), b"{}").unwrap();
    }
    let stdout = ok(jocky(&[&"stats", &tmp.path()]));
    assert!(stdout.contains("virtual_files: 1,"), "{stdout}");
    assert!(stdout.contains("container_files: 1,"), "{stdout}");
}

// ---------------------------------------------------------------- errors

#[test]
fn errors_exit_with_1_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let empty = tmp.path();
    for dir in [&missing, empty] {
        let d = dir.as_os_str();
        let commands: Vec<Vec<&std::ffi::OsStr>> = vec![
            vec!["inspect".as_ref(), d],
            vec!["verify".as_ref(), d],
            vec!["ls".as_ref(), d],
            vec!["cat".as_ref(), d, "meta.json".as_ref()],
            vec!["dump".as_ref(), d],
            vec!["export".as_ref(), d],
            vec!["reclaim".as_ref(), d],
            vec!["tenants".as_ref(), d],
            vec!["rm-tenant".as_ref(), d, "t".as_ref()],
            vec!["stats".as_ref(), d],
            vec![
                "convert".as_ref(),
                "--to-mmap".as_ref(),
                d,
                "/nonexistent-x".as_ref(),
            ],
        ];
        for args in commands {
            let out = Command::new(env!("CARGO_BIN_EXE_jocky"))
                .args(&args)
                .output()
                .unwrap();
            let err = fails(out, 1);
            assert!(err.starts_with("jocky: "), "{args:?}: {err}");
            if *dir == missing {
                assert!(err.contains("No such file"), "{args:?}: {err}");
            } else {
                assert!(err.contains("holds no jocky container"), "{args:?}: {err}");
            }
            assert!(!missing.exists());
            assert_eq!(fs::read_dir(empty).unwrap().count(), 0, "{args:?}");
        }
    }
}

#[test]
fn bad_arguments_exit_with_2() {
    for args in [
        vec![],
        vec!["inspect"],
        vec!["frobnicate", "x"],
        vec!["ls", "x", "--bogus"],
        vec!["cat", "x"],
        vec!["convert", "a"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_jocky"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

// ---------------------------------------------------------------- beside a writer

const CHILD_DIR: &str = "JOCKY_CLI_TEST_CHILD_DIR";

/// Not a test: the writer process of `inspect_beside_a_writer_process`, run by
/// re-invoking this test binary. Indexes and commits until killed.
#[test]
#[ignore]
fn child_writer() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let directory = jocky::JockyDirectory::builder(&dir)
        .export_policy(jocky::ExportPolicy::Manual)
        .open()
        .unwrap();
    let index = Index::create(directory, schema().0, Default::default()).unwrap();
    let schema = index.schema();
    let title = schema.get_field("title").unwrap();
    let mut writer: IndexWriter = index.writer(15_000_000).unwrap();
    for n in 0.. {
        for i in 0..20 {
            writer
                .add_document(doc!(title => words(n * 20 + i)))
                .unwrap();
        }
        writer.commit().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the child on drop, so a failing assertion does not leave it running.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn inspect_beside_a_writer_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("live");
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writer", "--ignored", "--nocapture"])
        .env(CHILD_DIR, &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);

    // Wait for the first commit.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the writer process ended"
        );
        assert!(Instant::now() < deadline, "no commit within a minute");
        if dir.exists() {
            let out = jocky(&[&"inspect", &dir, &"--json"]);
            if out.status.success() {
                let v = json(&text(&out.stdout));
                let files = v["virtual_files"].as_array().unwrap();
                if files.iter().any(|f| f["path"] == "meta.json") {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut seen = Vec::new();
    for _ in 0..6 {
        let v = json(&ok(jocky(&[&"inspect", &dir, &"--json"])));
        let bytes: u64 = v["container_files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["bytes"].as_u64().unwrap())
            .sum();
        seen.push(bytes);
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]) && seen[0] < seen[seen.len() - 1],
        "container bytes grow while the writer commits: {seen:?}"
    );
    ok(jocky(&[&"ls", &dir]));
    ok(jocky(&[&"dump", &dir]));
    ok(jocky(&[&"verify", &dir]));
    // A copy taken beside the writer is a whole index as of one commit.
    let copy = tmp.path().join("copy");
    ok(jocky(&[&"convert", &"--to-mmap", &dir, &copy]));
    let index = Index::open_in_dir(&copy).unwrap();
    assert!(index.validate_checksum().unwrap().is_empty());
    assert!(index.reader().unwrap().searcher().num_docs() >= 20);
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the writer kept going"
    );
}
