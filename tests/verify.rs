//! `jocky::verify`: every record checked, every damaged place named (checking
//! goes on past damage), a torn tail told apart from damage, and nothing
//! changed in the folder.

mod common;

use common::contract::patterned;
use common::write_file;
use jocky::inspect::{dump, LogRecord};
use jocky::verify::verify;
use jocky::JockyDirectory;
use tantivy::Directory;

fn records(path: &std::path::Path) -> Vec<LogRecord> {
    let mut v = Vec::new();
    dump(path, |r| v.push(r.clone())).unwrap();
    v
}

#[test]
fn verify_names_every_damaged_record_and_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("idx");
    {
        let dir = JockyDirectory::builder(&path)
            .export_policy(jocky::ExportPolicy::Manual)
            .open()
            .unwrap();
        for i in 0..6u64 {
            write_file(&dir, &format!("f{i}.bin"), &patterned(i, 30_000));
        }
        dir.sync_directory().unwrap();
    }
    let all = records(&path);
    let report = verify(&path).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.records, all.len() as u64);
    assert_eq!(report.torn_tail_bytes, 0);

    // Damage two records in the middle of the log.
    let data: Vec<&LogRecord> = all.iter().filter(|r| r.kind == "Data").collect();
    assert!(data.len() >= 5);
    let log = path.join("jocky-0000000000.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let hit = [data[1].offset, data[4].offset];
    for off in hit {
        bytes[off as usize + 100] ^= 0x01;
    }
    std::fs::write(&log, &bytes).unwrap();
    let report = verify(&path).unwrap();
    let offsets: Vec<Option<u64>> = report.damage.iter().map(|d| d.offset).collect();
    assert_eq!(offsets, vec![Some(hit[0]), Some(hit[1])], "{report:?}");
    assert!(report.damage.iter().all(|d| d.file == log), "{report:?}");
    assert_eq!(report.records, all.len() as u64 - 2);
    // Verifying changed nothing.
    assert_eq!(std::fs::read(&log).unwrap(), bytes);
}

#[test]
fn a_torn_tail_is_not_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("idx");
    {
        let dir = JockyDirectory::open(&path).unwrap();
        write_file(&dir, "a.bin", &patterned(1, 20_000));
        dir.sync_directory().unwrap();
    }
    let log = path.join("jocky-0000000000.log");
    let mut bytes = std::fs::read(&log).unwrap();
    // Half a record appended after the last one, as a crash mid-write leaves.
    bytes.extend_from_slice(&[0x4B, 0x4A, 0x07, 0x00, 0x01, 0x02, 0x03, 0x04]);
    bytes.extend_from_slice(&[0xEE; 200]);
    std::fs::write(&log, &bytes).unwrap();
    let report = verify(&path).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.torn_tail_bytes, 208);
}
