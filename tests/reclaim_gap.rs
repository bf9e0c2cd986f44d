//! Dead container files behind mostly live ones: once a snapshot follows them,
//! reclamation removes them out of order (an open replays from the snapshot,
//! never their records). The gap they leave must never be replayed across:
//! not by a full replay, not after a crash at any write of the pass, not when
//! the snapshot after it is damaged (an error, never an older table).

mod common;

use std::path::Path;
use std::sync::Arc;

use common::contract::patterned;
use common::{read, write_file as write};
use jocky::testing::{SimStorage, Storage};
use jocky::{Error, ExportPolicy, JockyDirectory, WriteMode};
use tantivy::Directory;

fn open(s: &SimStorage, full_replay: bool) -> jocky::Result<JockyDirectory> {
    JockyDirectory::builder("/sim")
        .storage(Arc::new(s.clone()))
        .container_file_size(1 << 20)
        .preallocate(64 << 10)
        .export_policy(ExportPolicy::Manual)
        .write_mode(WriteMode::Inline)
        .full_replay(full_replay)
        .open()
}

/// 3 MB of files, then 2 MB written and deleted, with the first three files
/// of the 3 MB deleted among them: the dead container files come after more
/// live bytes than they hold, so no prefix of the log pays for its copies
/// (`ReclaimReport::files_copied_forward` stays 0 with or without a snapshot),
/// and they hold the `Delete` records of files created before them — a replay
/// across the gap they leave would bring those back. Returns the files left.
fn live_then_dead(dir: &JockyDirectory) -> Vec<(String, Vec<u8>)> {
    let mut live: Vec<(String, Vec<u8>)> = (0..30)
        .map(|i| (format!("i{i}"), patterned(i, 100_000)))
        .collect();
    for (name, bytes) in &live {
        write(dir, name, bytes);
    }
    for i in 0..20 {
        let name = format!("g{i}");
        write(dir, &name, &patterned(100 + i, 100_000));
        dir.delete(Path::new(&name)).unwrap();
        if i == 5 {
            for (name, _) in live.drain(..3) {
                dir.delete(Path::new(&name)).unwrap();
            }
        }
    }
    dir.sync_directory().unwrap();
    live
}

/// Whether any of the files `live_then_dead` deleted is there.
fn deleted_came_back(dir: &JockyDirectory) -> bool {
    ["i0", "i2", "g0", "g3", "g19"]
        .iter()
        .any(|n| dir.exists(Path::new(n)).unwrap())
}

fn container_files(s: &SimStorage) -> Vec<String> {
    s.list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("jocky-"))
        .collect()
}

#[test]
fn dead_files_behind_live_ones_go_once_a_snapshot_follows_them() {
    let s = SimStorage::new();
    let dir = open(&s, false).unwrap();
    let live = live_then_dead(&dir);
    let before = container_files(&s).len();
    // No snapshot yet: the dead files stay (every record is still replayed).
    let report = dir.reclaim().unwrap();
    assert_eq!(
        (report.container_files_removed, report.files_copied_forward),
        (0, 0),
        "{report:?}"
    );
    assert!(dir.write_snapshot().unwrap());
    let report = dir.reclaim().unwrap();
    assert!(report.out_of_order >= 1, "{report:?}");
    assert_eq!(report.container_files_removed, report.out_of_order);
    assert!(!report.more, "{report:?}");
    let after = container_files(&s);
    assert!(
        after.len() + report.out_of_order == before + 1,
        "{before} files, then a snapshot file, {report:?}: {after:?}"
    );
    // The oldest file (live files) stays: the gap is inside the log.
    assert_eq!(after[0], "jocky-0000000000.log");
    for (name, bytes) in &live {
        assert_eq!(&read(&dir, name), bytes, "{name}");
    }
    let described = dir.describe_table();
    drop(dir);
    let dir = open(&s, false).unwrap();
    for (name, bytes) in &live {
        assert_eq!(&read(&dir, name), bytes, "{name} after a reopen");
    }
    assert!(!deleted_came_back(&dir));
    drop(dir);
    // A full replay starts at the snapshot after the gap, not before it.
    let full = open(&s, true).unwrap();
    assert!(!deleted_came_back(&full));
    assert_eq!(full.describe_table(), described);
    for (name, bytes) in &live {
        assert_eq!(&read(&full, name), bytes, "{name} after a full replay");
    }
}

#[test]
fn power_loss_at_every_write_of_an_out_of_order_reclaim_keeps_every_file() {
    let s = SimStorage::new();
    let dir = open(&s, false).unwrap();
    let live = live_then_dead(&dir);
    assert!(dir.write_snapshot().unwrap());
    s.record_history();
    let start = s.history_len();
    let report = dir.reclaim().unwrap();
    assert!(report.out_of_order >= 1, "{report:?}");
    let end = s.history_len();
    drop(dir);
    for n in start..=end {
        let after = s.crash_at(n);
        let dir = open(&after, false).unwrap_or_else(|e| panic!("crash at {n}: {e}"));
        for (name, bytes) in &live {
            assert_eq!(&read(&dir, name), bytes, "crash at {n}: {name}");
        }
        assert!(!deleted_came_back(&dir), "crash at {n}");
        let fast = dir.describe_table();
        drop(dir);
        let full = open(&after.crash_keeping(usize::MAX, 0), true)
            .unwrap_or_else(|e| panic!("crash at {n}, full replay: {e}"));
        assert!(!deleted_came_back(&full), "crash at {n}, full replay");
        assert_eq!(full.describe_table(), fast, "crash at {n}");
    }
}

#[test]
fn a_damaged_snapshot_after_a_gap_is_an_error_not_an_older_table() {
    let s = SimStorage::new();
    let snapshot_file;
    {
        let dir = open(&s, false).unwrap();
        live_then_dead(&dir);
        assert!(dir.write_snapshot().unwrap());
        snapshot_file = container_files(&s).pop().unwrap();
        assert!(dir.reclaim().unwrap().out_of_order >= 1);
        // More than a container file more: the snapshot's file is sealed, and
        // the close writes a second snapshot (it would replay over 1 MiB).
        write(&dir, "later", &patterned(7, 1_200_000));
        dir.sync_directory().unwrap();
    }
    let newest = container_files(&s).pop().unwrap();
    assert_ne!(newest, snapshot_file);
    // A byte inside each snapshot's first part (after the file header and the
    // checkpoint record): neither verifies.
    for name in [&snapshot_file, &newest] {
        let mut bytes = s.file_bytes(name).unwrap();
        bytes[400] ^= 0x5a;
        s.set_file_bytes(name, bytes);
    }
    for full in [false, true] {
        match open(&s, full) {
            Err(Error::Corrupted { file, reason, .. }) => {
                assert!(
                    reason.contains("reclaimed ahead of older files"),
                    "{reason}"
                );
                assert!(file.ends_with(&snapshot_file), "{}", file.display());
            }
            Err(e) => panic!("full replay {full}: another error: {e}"),
            Ok(_) => panic!("full replay {full}: opened across the gap"),
        }
    }
}

/// Container file 0: 80 MB of live files among 120 MB of dead ones (mostly
/// dead: its live files are copied forward), then more dead bytes, so that
/// the log goes on in file 1. Returns the live files.
fn eighty_mb_to_copy(dir: &JockyDirectory) -> Vec<(String, Vec<u8>)> {
    let live: Vec<(String, Vec<u8>)> = (0..80)
        .map(|i| (format!("l{i}"), patterned(i, 1_000_000)))
        .collect();
    for (i, (name, bytes)) in live.iter().enumerate() {
        write(dir, name, bytes);
        for d in 0..2 {
            let dead = format!("d{i}-{d}");
            write(dir, &dead, &patterned(1000 + i as u64, 750_000));
            dir.delete(Path::new(&dead)).unwrap();
        }
    }
    for i in 0..30 {
        let dead = format!("e{i}");
        write(dir, &dead, &patterned(2000 + i, 1_000_000));
        dir.delete(Path::new(&dead)).unwrap();
    }
    dir.sync_directory().unwrap();
    live
}

fn open_big(s: &SimStorage, export: ExportPolicy) -> JockyDirectory {
    JockyDirectory::builder("/sim")
        .storage(Arc::new(s.clone()))
        .container_file_size(200 << 20)
        .export_policy(export)
        .write_mode(WriteMode::Inline)
        .open()
        .unwrap()
}

/// A pass copies at most 64 MiB forward and says so (`more`); the next pass goes
/// on where it stopped, and nothing is lost in between.
#[test]
fn a_pass_copies_at_most_64_mib_and_the_next_goes_on() {
    let s = SimStorage::new();
    let dir = open_big(&s, ExportPolicy::Manual);
    let live = eighty_mb_to_copy(&dir);
    assert!(container_files(&s).len() >= 2);

    let first = dir.reclaim().unwrap();
    assert!(first.more, "{first:?}");
    assert_eq!(first.container_files_removed, 0, "{first:?}");
    let mib64 = 64 << 20;
    assert!(
        (mib64..mib64 + 2_000_000).contains(&first.bytes_copied_forward),
        "{first:?}"
    );
    for (name, bytes) in &live {
        assert_eq!(&read(&dir, name), bytes, "{name} between passes");
    }
    let second = dir.reclaim().unwrap();
    assert!(!second.more, "{second:?}");
    assert_eq!(
        first.files_copied_forward + second.files_copied_forward,
        live.len(),
        "{first:?} {second:?}"
    );
    assert!(second.container_files_removed >= 1, "{second:?}");
    assert!(!container_files(&s).contains(&"jocky-0000000000.log".to_string()));
    drop(dir);
    let dir = open(&s, false).unwrap();
    for (name, bytes) in &live {
        assert_eq!(&read(&dir, name), bytes, "{name} after a reopen");
    }
}

/// The background worker does not leave the rest of a bounded pass for the
/// next commit: one commit, and the passes go on until the file is gone.
#[test]
fn the_background_worker_goes_on_after_a_bounded_pass() {
    let s = SimStorage::new();
    let dir = open_big(
        &s,
        ExportPolicy::OnCommit {
            min_segment_bytes: u64::MAX,
        },
    );
    let live = eighty_mb_to_copy(&dir);
    // The one commit: it wakes the worker.
    dir.atomic_write(Path::new("meta.json"), b"{}").unwrap();
    dir.wait_for_background_work();
    assert!(
        dir.stats().bytes_copied_forward >= 80_000_000,
        "{:?}",
        dir.stats()
    );
    assert!(!container_files(&s).contains(&"jocky-0000000000.log".to_string()));
    for (name, bytes) in &live {
        assert_eq!(&read(&dir, name), bytes, "{name}");
    }
}
