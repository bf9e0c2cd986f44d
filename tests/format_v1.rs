//! Containers written by format version 1 stay readable. The fixture was produced
//! by `write_fixture` below (run it with `--ignored` to see how; it is not part of
//! the normal run and never rewrites the committed file on its own).

use std::io::Write;
use std::path::Path;

use jocky::JockyDirectory;
use tantivy::directory::{Directory, TerminatingWrite};

const FIXTURE: &str = "tests/fixtures/v1/jocky-0000000000.log";

fn contents() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a.idx", (0..5000u32).map(|i| (i % 251) as u8).collect()),
        ("empty.term", Vec::new()),
        ("meta.json", br#"{"segments":["a"]}"#.to_vec()),
    ]
}

#[test]
fn version_1_container_opens_and_reads() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(FIXTURE, tmp.path().join("jocky-0000000000.log")).unwrap();
    let dir = JockyDirectory::open(tmp.path()).unwrap();
    let mut names = dir.list_files();
    names.sort();
    assert_eq!(
        names,
        vec![
            Path::new("a.idx"),
            Path::new("empty.term"),
            Path::new("meta.json")
        ]
    );
    for (name, want) in contents() {
        let got = dir
            .open_read(Path::new(name))
            .unwrap()
            .read_bytes()
            .unwrap();
        assert_eq!(got.as_slice(), &want[..], "{name}");
    }
    // "deleted.pos" was written and deleted in the fixture.
    assert!(!dir.exists(Path::new("deleted.pos")).unwrap());
}

#[test]
#[ignore = "writes a new fixture into the temp dir; copy it over by hand when the format changes"]
fn write_fixture() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = JockyDirectory::builder(tmp.path())
        .container_file_size(1 << 20)
        .preallocate(64 << 10)
        .open()
        .unwrap();
    for (name, data) in contents() {
        if name == "meta.json" {
            dir.atomic_write(Path::new(name), &data).unwrap();
        } else {
            let mut w = dir.open_write(Path::new(name)).unwrap();
            w.write_all(&data).unwrap();
            w.terminate().unwrap();
        }
    }
    let mut w = dir.open_write(Path::new("deleted.pos")).unwrap();
    w.write_all(b"gone").unwrap();
    w.terminate().unwrap();
    dir.delete(Path::new("deleted.pos")).unwrap();
    dir.sync_directory().unwrap();
    drop(dir);
    let out = tmp.path().join("jocky-0000000000.log");
    std::fs::copy(&out, "/tmp/jocky-v1-fixture.log").unwrap();
    println!("wrote /tmp/jocky-v1-fixture.log");
}
