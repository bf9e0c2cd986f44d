//! Sealed tails: a clean close, and a log idle for a while, append a synced
//! `Seal` record whose `durable` covers everything before it, so damage there is
//! reported on open (file and offset) instead of being cut as a torn write. A
//! tail that is cut is reported: bytes, records, a counter.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::contract::patterned;
use common::{disk_of, files_of, open_sim, read, write_file};
use jocky::testing::SimStorage;
use jocky::{Error, ExportPolicy, JockyDirectory, WriteMode};
use tantivy::Directory;

const LOG: &str = "jocky-0000000000.log";

fn flipped(files: &BTreeMap<String, Vec<u8>>, at: usize) -> SimStorage {
    let mut files = files.clone();
    files.get_mut(LOG).unwrap()[at] ^= 0x10;
    disk_of(&files)
}

/// A directory over `s` that never syncs (`SyncPolicy::Never`), nothing in
/// the background, appends written at once.
fn open_never(s: &SimStorage) -> JockyDirectory {
    JockyDirectory::builder("/sim")
        .storage(Arc::new(s.clone()))
        .container_file_size(1 << 20)
        .export_policy(ExportPolicy::Manual)
        .write_mode(WriteMode::Inline)
        .sync_policy(jocky::SyncPolicy::Never)
        .open()
        .unwrap()
}

/// Damage at or before `at` in the container file, reported with file and offset.
fn assert_reported(r: jocky::Result<JockyDirectory>, at: usize, what: &str) {
    match r {
        Ok(dir) => panic!(
            "{what}: damage accepted, {} bytes cut as a torn tail",
            dir.stats().tail_bytes_cut_on_open
        ),
        Err(
            Error::ChecksumMismatch { file, offset, .. } | Error::Corrupted { file, offset, .. },
        ) => {
            assert!(file.ends_with(LOG), "{what}: {file:?}");
            assert!(
                offset <= at as u64,
                "{what}: reported at {offset}, damage at {at}"
            );
        }
        Err(e) => panic!("{what}: {e:?}"),
    }
}

#[test]
fn damage_before_a_clean_close_is_reported_not_cut() {
    let s = SimStorage::new();
    let dir = open_sim(&s).unwrap();
    write_file(&dir, "a.bin", &patterned(1, 20_000));
    dir.sync_directory().unwrap();
    let synced_end = dir.stats().container_bytes as usize;
    write_file(&dir, "b.bin", &patterned(2, 20_000)); // never synced
    let killed = files_of(&s);
    assert_eq!(dir.stats().seals, 0);
    drop(dir); // a clean close seals the tail
    let closed = files_of(&s);
    let at = synced_end + 5_000; // inside b.bin's records

    // Killed: b.bin was never acknowledged; its damaged records are a torn
    // tail, cut and reported.
    let dir = open_sim(&flipped(&killed, at)).unwrap();
    assert_eq!(read(&dir, "a.bin"), patterned(1, 20_000));
    assert!(!dir.exists(Path::new("b.bin")).unwrap());
    let st = dir.stats();
    assert!(st.tail_bytes_cut_on_open >= 15_000, "{st:?}");
    assert!(st.tail_records_cut_on_open >= 1, "{st:?}");

    // Closed cleanly: the same damage is inside sealed, durable data.
    assert_reported(open_sim(&flipped(&closed, at)), at, "after a clean close");
    // And undamaged, the closed folder opens whole, with nothing cut.
    let dir = open_sim(&disk_of(&closed)).unwrap();
    assert_eq!(read(&dir, "b.bin"), patterned(2, 20_000));
    assert_eq!(dir.stats().tail_bytes_cut_on_open, 0);
    assert_eq!(dir.stats().tail_records_cut_on_open, 0);
}

#[test]
fn an_idle_log_seals_itself() {
    let s = SimStorage::new();
    let dir = JockyDirectory::builder("/sim")
        .storage(Arc::new(s.clone()))
        .container_file_size(1 << 20)
        .write_mode(WriteMode::Inline)
        .export_policy(ExportPolicy::WhenQuiet {
            min_segment_bytes: u64::MAX,
            quiet: Duration::from_millis(50),
        })
        .open()
        .unwrap();
    write_file(&dir, "a.bin", &patterned(3, 20_000));
    dir.sync_directory().unwrap();
    let synced_end = dir.stats().container_bytes as usize;
    write_file(&dir, "b.bin", &patterned(4, 20_000));
    // A commit (meta.json) wakes the background worker; once commits pause it
    // seals the tail.
    dir.atomic_write(Path::new("meta.json"), b"{}").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while dir.stats().seals == 0 {
        assert!(Instant::now() < deadline, "no seal after 20 s idle");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The process is killed now (no clean close): damage in b.bin, written
    // before the seal, is reported.
    let killed = files_of(&s);
    let at = synced_end + 5_000;
    assert_reported(open_sim(&flipped(&killed, at)), at, "after an idle seal");
    let dir2 = open_sim(&disk_of(&killed)).unwrap();
    assert_eq!(read(&dir2, "b.bin"), patterned(4, 20_000));
    drop(dir);
}

#[test]
fn opening_and_closing_a_sealed_folder_writes_nothing() {
    let s = SimStorage::new();
    let dir = open_sim(&s).unwrap();
    write_file(&dir, "a.bin", &patterned(5, 9_000));
    dir.sync_directory().unwrap();
    drop(dir);
    let sealed = files_of(&s);
    for round in 0..3 {
        let dir = open_sim(&s).unwrap();
        assert_eq!(read(&dir, "a.bin"), patterned(5, 9_000));
        drop(dir);
        assert_eq!(
            files_of(&s),
            sealed,
            "round {round}: a look changed the folder"
        );
    }
}

/// What an open replays is made durable before it is served: a killed
/// process's writes may still be only in the page cache, and a power loss
/// after the open must not take back what the open showed.
#[test]
fn an_open_after_a_kill_makes_what_it_replayed_durable() {
    let s = SimStorage::new();
    let dir = open_sim(&s).unwrap();
    write_file(&dir, "a.bin", &patterned(6, 30_000));
    dir.sync_directory().unwrap();
    write_file(&dir, "b.bin", &patterned(7, 30_000)); // in the page cache only
    let killed = s.kill();
    drop(dir);
    // The setting: b.bin is on the killed disk, but a power loss would take it.
    let before_open = open_sim(&killed.crash()).unwrap();
    assert_eq!(read(&before_open, "a.bin"), patterned(6, 30_000));
    assert!(!before_open.exists(Path::new("b.bin")).unwrap());
    drop(before_open);
    let syncs = killed.syncs();
    let dir = open_sim(&killed).unwrap();
    assert_eq!(read(&dir, "b.bin"), patterned(7, 30_000));
    assert!(
        killed.syncs() > syncs,
        "the open did not sync what it replayed"
    );
    let lost_power = killed.crash();
    drop(dir);
    let dir = open_sim(&lost_power).unwrap();
    assert_eq!(read(&dir, "a.bin"), patterned(6, 30_000));
    assert_eq!(read(&dir, "b.bin"), patterned(7, 30_000));
}

/// After a clean close the log ends with a `Seal` written after a sync: the
/// open needs no sync of its own, and a power loss right after it loses nothing.
#[test]
fn an_open_after_a_clean_close_needs_no_sync() {
    let s = SimStorage::new();
    let dir = open_sim(&s).unwrap();
    write_file(&dir, "a.bin", &patterned(8, 30_000)); // never synced by a commit
    drop(dir); // the close syncs, seals and syncs
    let syncs = s.syncs();
    let dir = open_sim(&s).unwrap();
    assert_eq!(s.syncs(), syncs, "the open synced a sealed log");
    assert_eq!(read(&dir, "a.bin"), patterned(8, 30_000));
    let lost_power = s.crash();
    drop(dir);
    let dir = open_sim(&lost_power).unwrap();
    assert_eq!(read(&dir, "a.bin"), patterned(8, 30_000));
}

/// A process under `SyncPolicy::Never` syncs nothing, so its clean close
/// appends no `Seal` (which would vouch that everything before it is
/// durable): the next open, under a policy that syncs, makes its own sync.
#[test]
fn a_close_under_sync_never_leaves_no_seal_to_trust() {
    let s = SimStorage::new();
    let never = open_never(&s);
    write_file(&never, "a.bin", &patterned(9, 30_000));
    never.sync_directory().unwrap();
    drop(never);
    assert_eq!(s.syncs(), 0, "SyncPolicy::Never synced");
    let dir = open_sim(&s).unwrap();
    assert!(s.syncs() > 0, "the open trusted a log nobody synced");
    assert_eq!(read(&dir, "a.bin"), patterned(9, 30_000));
}

/// Under `SyncPolicy::Never` the kernel writes pages back in any order, so a
/// power loss can take a page from the middle of the log and keep later ones.
/// Nothing was ever synced, so no record vouches for what is before it: the
/// lost page is a torn tail (cut, with everything after it), not damage that
/// makes the folder refuse to open. (Across a rotation the new file's head does
/// vouch for the old file, which `Never` did not sync: such a loss is reported
/// as damage, and the folder left as it is — see `SyncPolicy::Never`.)
#[test]
fn a_log_nobody_synced_opens_after_losing_a_page_in_its_middle() {
    let s = SimStorage::new();
    let never = open_never(&s);
    write_file(&never, "a.bin", &patterned(10, 20_000));
    never.sync_directory().unwrap();
    let a_end = never.stats().container_bytes as usize;
    write_file(&never, "b.bin", &patterned(11, 20_000));
    never.sync_directory().unwrap();
    write_file(&never, "c.bin", &patterned(12, 20_000));
    never.sync_directory().unwrap();
    never.atomic_write(Path::new("meta.json"), b"{}").unwrap();
    assert_eq!(s.syncs(), 0, "SyncPolicy::Never synced");
    // Power loss: the page holding part of b.bin never reached the disk, the
    // pages after it did.
    let mut files = files_of(&s);
    let lost = (a_end + 8_192) / 4_096 * 4_096;
    files.get_mut(LOG).unwrap()[lost..lost + 4_096].fill(0);
    drop(never);
    let dir = open_sim(&disk_of(&files)).unwrap();
    assert_eq!(read(&dir, "a.bin"), patterned(10, 20_000));
    assert!(!dir.exists(Path::new("b.bin")).unwrap());
    assert!(!dir.exists(Path::new("c.bin")).unwrap());
    assert!(dir.stats().tail_bytes_cut_on_open > 0);
}
