//! Reclamation racing writers: records a writer has appended but not yet put in
//! the file table must never be judged dead. (Found by the contract suite on a
//! `Store` tenant: an `atomic_write` appended to a container file, the file was
//! sealed, the old version copied forward and the file reclaimed before the new
//! version reached the table; readers then failed with "container file 0 is
//! gone", and the acknowledged version was lost on reopen.)

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use common::{read, write_file};
use jocky::{ExportPolicy, JockyDirectory};
use tantivy::directory::Directory;

fn open(path: &Path) -> JockyDirectory {
    JockyDirectory::builder(path)
        .container_file_size(1 << 20)
        .preallocate(64 << 10)
        .write_buffer(4 << 10, 64 << 10)
        .export_policy(ExportPolicy::Manual)
        .open()
        .unwrap()
}

/// `version` as a self-describing file: its number, then a pattern of `len` bytes.
fn versioned(version: u32, len: usize) -> Vec<u8> {
    let mut out = version.to_le_bytes().to_vec();
    out.extend((0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(version) as u8));
    out
}

fn version_of(bytes: &[u8], what: &str) -> u32 {
    let version = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    assert_eq!(
        bytes,
        versioned(version, bytes.len() - 4),
        "{what}: torn version"
    );
    version
}

#[test]
fn reclaim_never_loses_records_not_yet_in_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(tmp.path());
    let meta = Path::new("meta.json");
    dir.atomic_write(meta, &versioned(0, 10)).unwrap();
    let versions = 600u32;
    let done = AtomicBool::new(false);
    let mut kept = Vec::new();
    thread::scope(|s| {
        // Reclaims as often as it can.
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                dir.reclaim().unwrap();
            }
        });
        // Reads the current version; versions only go forward.
        s.spawn(|| {
            let mut last = 0;
            while !done.load(Ordering::SeqCst) {
                let v = version_of(&dir.atomic_read(meta).unwrap(), "atomic_read");
                assert!(v >= last, "meta.json went back from {last} to {v}");
                last = v;
            }
        });
        // A second writer: its atomic writes rotate container files while the
        // first writer's are between append and table update; small files are
        // written and most deleted again.
        let other = s.spawn(|| {
            let mut kept = Vec::new();
            for i in 0..versions {
                let len = 30_000 + (i as usize * 977) % 120_000;
                dir.atomic_write(Path::new("other.json"), &versioned(i, len))
                    .unwrap();
                let name = format!("f{i}.idx");
                let data = versioned(i, 1_000 + (i as usize * 131) % 2_000);
                write_file(&dir, &name, &data);
                if i % 10 == 0 {
                    kept.push((name, data));
                } else {
                    dir.delete(Path::new(&name)).unwrap();
                }
            }
            kept
        });
        for v in 1..=versions {
            let len = 50_000 + (v as usize * 7919) % 150_000;
            dir.atomic_write(meta, &versioned(v, len)).unwrap();
        }
        kept = other.join().unwrap();
        done.store(true, Ordering::SeqCst);
    });
    assert_eq!(version_of(&read(&dir, "meta.json"), "final"), versions);
    dir.reclaim().unwrap();
    drop(dir);

    let dir = open(tmp.path());
    assert_eq!(
        version_of(&dir.atomic_read(meta).unwrap(), "after reopen"),
        versions,
        "the last acknowledged atomic write survives reopen"
    );
    for (name, data) in &kept {
        assert_eq!(&read(&dir, name), data, "{name} after reopen");
    }
}
