//! Folders written by format version 2 (the first with segment files, `Export`,
//! `Checkpoint` and `Reclaim` records) stay readable. The fixture in
//! `tests/fixtures/v2/` was produced by `write_fixture` below (run it with
//! `--ignored`; it writes to /tmp and never touches the committed files).
//!
//! What the fixture holds: two container files (the second starts with a
//! checkpoint), one segment file with two exported files, a file deleted after
//! it was written, an atomic file rewritten twice, and a `Reclaim` record.

use std::io::Write;
use std::path::Path;

use jocky::{ExportPolicy, JockyDirectory, WriteMode};
use tantivy::directory::{Directory, TerminatingWrite};

const FIXTURE_DIR: &str = "tests/fixtures/v2";

fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 7) as u8)
        .collect()
}

/// The files the fixture must show, with their contents.
fn contents() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("seg.idx", pattern(1, 300_000)),
        ("seg.term", pattern(2, 5_000)),
        ("late.pos", pattern(3, 700_000)),
        ("empty.fast", Vec::new()),
        ("meta.json", br#"{"segments":["seg"],"v":3}"#.to_vec()),
    ]
}

#[test]
fn version_2_folder_opens_and_reads() {
    old_folder_opens_and_reads(FIXTURE_DIR);
}

/// The same folder as written by format version 3 (the last without
/// `Snapshot` records), kept in `tests/fixtures/v3/`: an open starts a v4 file.
#[test]
fn version_3_folder_opens_and_reads() {
    old_folder_opens_and_reads("tests/fixtures/v3");
}

/// The same folder as written by format version 4 (the last without
/// `Placed` records), kept in `tests/fixtures/v4/` (a third container file:
/// the close wrote a snapshot): an open starts a v5 file.
#[test]
fn version_4_folder_opens_and_reads() {
    old_folder_opens_and_reads("tests/fixtures/v4");
}

fn old_folder_opens_and_reads(fixture: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut copied = 0;
    for entry in std::fs::read_dir(fixture).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
        copied += 1;
    }
    assert!(copied >= 3, "two container files and a segment file");
    let dir = JockyDirectory::builder(tmp.path())
        .export_policy(ExportPolicy::Manual)
        .open()
        .unwrap();
    let mut names = dir.list_files();
    names.sort();
    let mut want: Vec<&Path> = contents().iter().map(|(n, _)| Path::new(*n)).collect();
    want.sort();
    assert_eq!(names, want);
    for (name, bytes) in contents() {
        let got = dir
            .open_read(Path::new(name))
            .unwrap()
            .read_bytes()
            .unwrap();
        assert_eq!(got.as_slice(), &bytes[..], "{name}");
    }
    assert!(!dir.exists(Path::new("deleted.pos")).unwrap());
    assert_eq!(dir.stats().segment_files, 1, "the exported segment");
    assert_eq!(dir.verify_segments().unwrap(), 1);
}

#[test]
#[ignore = "writes a new fixture to /tmp/jocky-v2-fixture; copy it over by hand when the format changes"]
fn write_fixture() {
    let out = Path::new("/tmp/jocky-v2-fixture");
    let _ = std::fs::remove_dir_all(out);
    let dir = JockyDirectory::builder(out)
        .container_file_size(1 << 20)
        .preallocate(64 << 10)
        .write_mode(WriteMode::Inline)
        .export_policy(ExportPolicy::Manual)
        .open()
        .unwrap();
    let write = |name: &str, data: &[u8]| {
        let mut w = dir.open_write(Path::new(name)).unwrap();
        w.write_all(data).unwrap();
        w.terminate().unwrap();
    };
    let c = contents();
    write("deleted.pos", &pattern(9, 400_000));
    write(c[0].0, &c[0].1);
    write(c[1].0, &c[1].1);
    dir.atomic_write(Path::new("meta.json"), b"{\"v\":1}")
        .unwrap();
    dir.atomic_write(Path::new("meta.json"), b"{\"v\":2}")
        .unwrap();
    dir.export_files(&[Path::new(c[0].0), Path::new(c[1].0)])
        .unwrap();
    dir.delete(Path::new("deleted.pos")).unwrap();
    write(c[2].0, &c[2].1); // rotates into a second container file
    write(c[3].0, &c[3].1);
    dir.atomic_write(Path::new(c[4].0), &c[4].1).unwrap();
    dir.sync_directory().unwrap();
    let report = dir.reclaim().unwrap();
    println!("reclaim: {report:?}; stats: {:?}", dir.stats());
    drop(dir);
    for e in std::fs::read_dir(out).unwrap() {
        let e = e.unwrap();
        println!("{:?} {} bytes", e.file_name(), e.metadata().unwrap().len());
    }
}
