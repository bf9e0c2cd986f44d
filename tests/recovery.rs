//! Crash consistency and bad input at the container level, driven through the
//! simulated storage (power loss at any instant, torn tails, bit flips, ENOSPC,
//! EIO) and the real file system (foreign folders, corrupt files).

mod common;

use std::io::Write;
use std::path::Path;

use common::contract::patterned;
use common::{open_sim, read, run_child, write_file};

use jocky::testing::SimStorage;
use jocky::{Error, JockyDirectory};
use tantivy::directory::{Directory, TerminatingWrite};

const CONTAINER: &str = "jocky-0000000000.log";

/// "meta" names the files a commit references; they must all be intact.
fn check_consistent(dir: &JockyDirectory, files: &[(&str, Vec<u8>)]) -> Option<String> {
    let meta = match dir.atomic_read(Path::new("meta.json")) {
        Ok(m) => String::from_utf8(m).unwrap(),
        Err(_) => return None,
    };
    for name in meta.split(',').filter(|n| !n.is_empty()) {
        let (_, want) = files.iter().find(|(n, _)| *n == name).unwrap();
        assert_eq!(&read(dir, name), want, "{name} damaged under meta {meta:?}");
    }
    Some(meta)
}

/// Two commits, each a data file then meta.json naming it.
fn two_commits(s: &SimStorage) -> Vec<(&'static str, Vec<u8>)> {
    let files = vec![
        ("a.bin", patterned(1, 150_000)),
        ("b.bin", patterned(2, 90_000)),
    ];
    let dir = open_sim(s).unwrap();
    write_file(&dir, "a.bin", &files[0].1);
    dir.sync_directory().unwrap();
    dir.atomic_write(Path::new("meta.json"), b"a.bin").unwrap();
    write_file(&dir, "b.bin", &files[1].1);
    dir.sync_directory().unwrap();
    dir.atomic_write(Path::new("meta.json"), b"a.bin,b.bin")
        .unwrap();
    files
}

#[test]
fn power_loss_at_every_instant_shows_a_durable_commit() {
    let s = SimStorage::new();
    s.record_history();
    let files = two_commits(&s);
    let n = s.history_len();
    let mut seen = Vec::new();
    for i in 0..=n {
        let crashed = s.crash_at(i);
        let dir = open_sim(&crashed).unwrap_or_else(|e| panic!("open after crash at {i}: {e}"));
        let meta = check_consistent(&dir, &files);
        // Commits never go backwards as the crash moves later.
        if let Some(prev) = seen.last() {
            assert!(meta.as_ref().map_or(0, |m| m.len()) >= *prev, "at {i}");
        }
        seen.push(meta.map_or(0, |m| m.len()));
    }
    assert_eq!(seen.last(), Some(&"a.bin,b.bin".len()));
    assert!(seen.contains(&"a.bin".len()));
}

#[test]
fn truncation_at_every_byte_of_the_tail() {
    let s = SimStorage::new();
    let files = two_commits(&s);
    let full = s.file_bytes(CONTAINER).unwrap();
    let end = {
        let dir = open_sim(&s.crash()).unwrap();
        dir.stats().container_bytes as usize
    };
    // The last commit's records: the end of b.bin's data, its finish, meta.json.
    for cut in end.saturating_sub(6000)..=end {
        let t = SimStorage::new();
        t.set_file_bytes(CONTAINER, full[..cut].to_vec());
        let dir = open_sim(&t).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let meta = check_consistent(&dir, &files).expect("first commit survives");
        if cut == end {
            assert_eq!(meta, "a.bin,b.bin");
        }
        // After the cut the container accepts writes and replays them.
        write_file(&dir, "c.bin", b"after");
        dir.sync_directory().unwrap();
        drop(dir);
        let dir = open_sim(&t).unwrap();
        assert_eq!(read(&dir, "c.bin"), b"after");
    }
}

#[test]
fn flipped_bytes_are_cut_as_a_tail_or_reported_never_served() {
    let s = SimStorage::new();
    let files = two_commits(&s);
    let full = s.file_bytes(CONTAINER).unwrap();
    let mut reported = 0;
    let mut step = 0;
    for pos in (0..full.len()).rev() {
        if full[pos] == 0 && pos > 4096 {
            continue;
        }
        step += 1;
        if step > 400 && step % 97 != 0 {
            continue; // every byte near the end, a sample of the rest
        }
        let mut bytes = full.clone();
        bytes[pos] ^= 0x5A;
        let t = SimStorage::new();
        t.set_file_bytes(CONTAINER, bytes);
        match open_sim(&t) {
            Ok(dir) => {
                check_consistent(&dir, &files);
            }
            Err(e) => {
                reported += 1;
                let msg = e.to_string();
                assert!(
                    msg.contains(CONTAINER),
                    "error does not name the file: {msg}"
                );
                assert!(
                    matches!(
                        e,
                        Error::Corrupted { .. }
                            | Error::ChecksumMismatch { .. }
                            | Error::Version { .. }
                    ),
                    "{e:?}"
                );
            }
        }
    }
    assert!(reported > 0, "damage inside durable data must be reported");
}

#[test]
fn damage_before_the_tail_names_file_and_offset() {
    let s = SimStorage::new();
    two_commits(&s);
    let mut bytes = s.file_bytes(CONTAINER).unwrap();
    // Inside a.bin's first data record, well before the last sync.
    bytes[200] ^= 0xFF;
    let t = SimStorage::new();
    t.set_file_bytes(CONTAINER, bytes.clone());
    match open_sim(&t) {
        Err(Error::ChecksumMismatch { file, offset, .. }) => {
            assert!(file.ends_with(CONTAINER));
            // The data record holding byte 200 starts after the header (64 bytes),
            // the file's 48-byte checkpoint and a.bin's 56-byte creation record.
            assert_eq!(offset, 168);
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    // Nothing was changed by the failed open.
    assert_eq!(t.file_bytes(CONTAINER).unwrap(), bytes);
}

#[test]
fn drop_without_sync_keeps_everything_synced() {
    let s = SimStorage::new();
    {
        let dir = open_sim(&s).unwrap();
        write_file(&dir, "synced.bin", &patterned(3, 10_000));
        dir.sync_directory().unwrap();
        write_file(&dir, "unsynced.bin", &patterned(4, 10_000));
        let mut w = dir.open_write(Path::new("unterminated.bin")).unwrap();
        w.write_all(&patterned(5, 100_000)).unwrap();
        std::mem::forget(w);
    }
    // Process death: the page cache survives, so everything written is there.
    let dir = open_sim(&s.crash_keeping(usize::MAX, 0)).unwrap();
    assert_eq!(read(&dir, "synced.bin"), patterned(3, 10_000));
    assert_eq!(read(&dir, "unsynced.bin"), patterned(4, 10_000));
    assert!(!dir.exists(Path::new("unterminated.bin")).unwrap());
    assert_eq!(dir.stats().files_dropped_on_open, 1);
    drop(dir);
    // Power loss: only what was synced.
    let dir = open_sim(&s.crash()).unwrap();
    assert_eq!(read(&dir, "synced.bin"), patterned(3, 10_000));
    assert!(!dir.exists(Path::new("unterminated.bin")).unwrap());
}

#[test]
fn files_larger_than_a_container_file_span_several() {
    let s = SimStorage::new();
    let big = patterned(6, 3 << 20);
    {
        let dir = open_sim(&s).unwrap();
        write_file(&dir, "big.bin", &big);
        dir.sync_directory().unwrap();
        assert!(dir.stats().container_files >= 3);
        assert_eq!(read(&dir, "big.bin"), big);
    }
    let dir = open_sim(&s.crash()).unwrap();
    assert_eq!(read(&dir, "big.bin"), big);
    let slice = dir
        .open_read(Path::new("big.bin"))
        .unwrap()
        .read_bytes_slice((1 << 20) - 100..(1 << 20) + 100)
        .unwrap();
    assert_eq!(slice.as_slice(), &big[(1 << 20) - 100..(1 << 20) + 100]);
}

#[test]
fn a_crash_during_rotation_is_recovered() {
    let s = SimStorage::new();
    s.record_history();
    let big = patterned(7, 2 << 20);
    {
        let dir = open_sim(&s).unwrap();
        write_file(&dir, "big.bin", &big);
        dir.sync_directory().unwrap();
        dir.atomic_write(Path::new("meta.json"), b"big.bin")
            .unwrap();
    }
    let files = vec![("big.bin", big)];
    for i in 0..=s.history_len() {
        let dir = open_sim(&s.crash_at(i)).unwrap_or_else(|e| panic!("crash at {i}: {e}"));
        check_consistent(&dir, &files);
    }
}

#[test]
fn enospc_fails_the_write_and_keeps_what_was_synced() {
    let s = SimStorage::new();
    let dir = open_sim(&s).unwrap();
    write_file(&dir, "before.bin", &patterned(8, 50_000));
    dir.sync_directory().unwrap();
    dir.atomic_write(Path::new("meta.json"), b"before.bin")
        .unwrap();
    s.set_write_budget(Some(20_000));
    let mut w = dir.open_write(Path::new("after.bin")).unwrap();
    let res = w
        .write_all(&patterned(9, 400_000))
        .and_then(|_| w.terminate());
    let err = res.expect_err("the disk is full");
    assert!(err.to_string().contains("after.bin"), "{err}");
    drop(dir);
    s.set_write_budget(None);
    let dir = open_sim(&s.crash_keeping(usize::MAX, 0)).unwrap();
    assert_eq!(read(&dir, "before.bin"), patterned(8, 50_000));
    assert_eq!(
        dir.atomic_read(Path::new("meta.json")).unwrap(),
        b"before.bin"
    );
    assert!(!dir.exists(Path::new("after.bin")).unwrap());
}

#[test]
fn a_failed_fsync_poisons_the_container() {
    let s = SimStorage::new();
    let dir = open_sim(&s).unwrap();
    write_file(&dir, "a.bin", b"durable");
    dir.atomic_write(Path::new("meta.json"), b"a.bin").unwrap();
    s.set_fail_sync(true);
    write_file(&dir, "b.bin", b"lost");
    assert!(dir.sync_directory().is_err());
    s.set_fail_sync(false);
    // fsyncgate: no retry pretends success.
    assert!(dir.sync_directory().is_err());
    assert!(dir.atomic_write(Path::new("meta.json"), b"b.bin").is_err());
    assert!(dir.open_write(Path::new("c.bin")).is_err());
    assert!(dir.stats().poisoned);
    // What was durable is still readable, now and after reopen.
    assert_eq!(read(&dir, "a.bin"), b"durable");
    drop(dir);
    let dir = open_sim(&s.crash()).unwrap();
    assert_eq!(dir.atomic_read(Path::new("meta.json")).unwrap(), b"a.bin");
    assert_eq!(read(&dir, "a.bin"), b"durable");
}

#[test]
fn a_failed_write_poisons_the_container() {
    let s = SimStorage::new();
    let dir = open_sim(&s).unwrap();
    write_file(&dir, "a.bin", b"ok");
    dir.sync_directory().unwrap();
    s.set_fail_write(true);
    // Creation itself is the first write that fails.
    assert!(dir.open_write(Path::new("b.bin")).is_err());
    s.set_fail_write(false);
    assert!(dir.sync_directory().is_err());
    assert!(dir.stats().poisoned);
    assert_eq!(read(&dir, "a.bin"), b"ok");
}

#[test]
fn foreign_and_corrupt_folders_are_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    // A folder of someone else's files.
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("meta.json"), b"{}").unwrap();
    match JockyDirectory::open(&foreign) {
        Err(Error::ForeignData { example, .. }) => assert_eq!(example, "meta.json"),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1);
    assert_eq!(std::fs::read(foreign.join("meta.json")).unwrap(), b"{}");

    // A container file that is not one.
    let garbage = tmp.path().join("garbage");
    std::fs::create_dir(&garbage).unwrap();
    let junk = patterned(10, 10_000);
    std::fs::write(garbage.join(CONTAINER), &junk).unwrap();
    let err = JockyDirectory::open(&garbage).unwrap_err();
    assert!(matches!(err, Error::Corrupted { .. }), "{err:?}");
    assert_eq!(std::fs::read(garbage.join(CONTAINER)).unwrap(), junk);

    // A container from a future format version.
    let future = tmp.path().join("future");
    drop(JockyDirectory::open(&future).unwrap());
    let mut bytes = std::fs::read(future.join(CONTAINER)).unwrap();
    bytes[8] = 99;
    std::fs::write(future.join(CONTAINER), &bytes).unwrap();
    let err = JockyDirectory::open(&future).unwrap_err();
    assert!(matches!(err, Error::Version { got: 99, .. }), "{err:?}");

    // A path that is a file, not a folder.
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(JockyDirectory::open(&file), Err(Error::Io { .. })));
}

/// Runs as the child of `a_second_process_is_refused`.
#[test]
#[ignore = "child process of a_second_process_is_refused_and_this_one_shares"]
fn child_opens_folder() {
    let path = std::env::var("JOCKY_LOCK_CHILD_DIR").expect("run by its parent test");
    match JockyDirectory::open(&path) {
        Err(Error::Locked { .. }) => println!("CHILD: LOCKED"),
        other => println!("CHILD: {other:?}"),
    }
}

#[test]
fn a_second_process_is_refused_and_this_one_shares() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = JockyDirectory::open(tmp.path()).unwrap();
    write_file(&dir, "a.bin", b"shared");
    let stdout = run_child("child_opens_folder", ("JOCKY_LOCK_CHILD_DIR", tmp.path()));
    assert!(stdout.contains("CHILD: LOCKED"), "{stdout}");
    // In this process a second open shares the open container.
    let again = JockyDirectory::open(tmp.path()).unwrap();
    assert_eq!(read(&again, "a.bin"), b"shared");
    drop(dir);
    drop(again);
    // Once every handle is gone, the folder can be opened by another process.
    let stdout = run_child("child_opens_folder", ("JOCKY_LOCK_CHILD_DIR", tmp.path()));
    assert!(stdout.contains("CHILD: Ok("), "{stdout}");
}

#[test]
fn bad_paths_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = JockyDirectory::open(tmp.path()).unwrap();
    for bad in ["/etc/passwd", "../escape", "a/../../b", ""] {
        let p = Path::new(bad);
        match dir.open_write(p) {
            Err(tantivy::directory::error::OpenWriteError::IoError { io_error, .. }) => {
                assert_eq!(io_error.kind(), std::io::ErrorKind::InvalidInput, "{bad}");
                assert!(io_error.to_string().contains("invalid path"), "{io_error}");
            }
            _ => panic!("{bad} accepted"),
        }
        assert!(dir.open_read(p).is_err());
        assert!(dir.delete(p).is_err());
        assert!(dir.exists(p).is_err());
        assert!(dir.atomic_write(p, b"x").is_err());
    }
    // Nothing escaped into the folder.
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec![CONTAINER.to_string()]);
}

#[test]
fn an_atomic_write_too_large_for_a_record_is_refused() {
    let s = SimStorage::new();
    let dir = open_sim(&s).unwrap();
    let err = dir
        .atomic_write(Path::new("meta.json"), &vec![b'x'; 2 << 20])
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge);
    assert!(!dir.exists(Path::new("meta.json")).unwrap());
}

/// The last handle's drop closes the folder before it returns (the background
/// worker stopped and joined first): another process can open it at once,
/// with no retry or sleep, even while exports were running.
#[test]
fn a_drop_releases_the_folder_before_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    for round in 0..10 {
        let dir = JockyDirectory::builder(tmp.path())
            .export_policy(jocky::ExportPolicy::OnCommit {
                min_segment_bytes: 0,
            })
            .open()
            .unwrap();
        // A committed "segment" of 8 MB: the background worker exports it
        // (copy + fsyncs) while the handle is dropped.
        let id = format!("{round:032x}");
        for i in 0..4 {
            write_file(&dir, &format!("{id}.f{i}"), &vec![i as u8; 2 << 20]);
        }
        dir.sync_directory().unwrap();
        let uuid = format!(
            "{}-{}-{}-{}-{}",
            &id[0..8],
            &id[8..12],
            &id[12..16],
            &id[16..20],
            &id[20..32]
        );
        let meta = format!("{{\"segments\":[{{\"segment_id\":\"{uuid}\"}}]}}");
        tantivy::Directory::atomic_write(&dir, Path::new("meta.json"), meta.as_bytes()).unwrap();
        drop(dir);
        let stdout = run_child("child_opens_folder", ("JOCKY_LOCK_CHILD_DIR", tmp.path()));
        assert!(stdout.contains("CHILD: Ok("), "round {round}: {stdout}");
    }
}

/// A folder reopened with another container file size: the newest file keeps
/// the capacity its header says (appends never run past it), new files get
/// the new size.
#[test]
fn reopening_with_another_file_size_keeps_each_files_capacity() {
    let tmp = tempfile::tempdir().unwrap();
    let open = |mib: u64| {
        JockyDirectory::builder(tmp.path())
            .container_file_size(mib << 20)
            .preallocate(256 << 10)
            .export_policy(jocky::ExportPolicy::Manual)
            .open()
            .unwrap()
    };
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (round, mib) in [1u64, 64, 1, 2, 64, 1].into_iter().enumerate() {
        let dir = open(mib);
        for (name, data) in &files {
            assert_eq!(&read(&dir, name.as_str()), data, "round {round}: {name}");
        }
        for i in 0..3 {
            let name = format!("r{round}-{i}.bin");
            let data = patterned((round * 10 + i) as u64, 700_000);
            write_file(&dir, &name, &data);
            files.push((name, data));
        }
        dir.sync_directory().unwrap();
    }
    let dir = open(8);
    for (name, data) in &files {
        assert_eq!(&read(&dir, name.as_str()), data, "{name}");
    }
}
