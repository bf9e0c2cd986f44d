//! Segments built in place (`Builder::build_in_place`): a tantivy index built
//! so searches as one on `MmapDirectory` and reopens; chunks are durable
//! after `sync_directory` and after a crash are checked before they are
//! served or exported; chunks a crash took are reported, never served; a
//! segment merged away before its export leaves no file behind.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::{disk_of, files_of, read, write_file};
use jocky::testing::{SimStorage, Storage};
use jocky::{ExportPolicy, JockyDirectory};
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::TermQuery;
use tantivy::schema::{IndexRecordOption, Schema, Value};
use tantivy::{doc, Directory, Index, IndexWriter, TantivyDocument, Term};

/// Simulated storage, nothing in the background; any `<name>.<ext>` file is
/// built in place once its segment's files wrote 64 KiB.
fn open_sim(s: &SimStorage) -> jocky::Result<JockyDirectory> {
    JockyDirectory::builder("/sim")
        .storage(Arc::new(s.clone()))
        .container_file_size(1 << 20)
        .preallocate(64 << 10)
        .write_buffer(4 << 10, 64 << 10)
        .export_policy(ExportPolicy::Manual)
        .build_any_file_in_place(64 << 10)
        .open()
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(seed as u32) as u8
                ^ seed
        })
        .collect()
}

fn segment_files(s: &SimStorage) -> Vec<String> {
    let mut v: Vec<String> = s
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("jocky-seg-"))
        .collect();
    v.sort();
    v
}

#[test]
fn chunks_are_durable_after_sync_directory_and_checked_after_a_crash() {
    let s = SimStorage::new();
    let a = pattern(1, 300_000);
    let b = pattern(2, 90_000);
    {
        let dir = open_sim(&s).unwrap();
        write_file(&dir, "seg.idx", &a);
        write_file(&dir, "seg.pos", &b);
        dir.sync_directory().unwrap();
        let st = dir.stats();
        assert_eq!(st.segments_built_in_place, 1, "{st:?}");
        assert!(st.bytes_built_in_place > 250_000, "{st:?}");
        assert_eq!(st.segment_files_being_built, 1, "{st:?}");
        assert_eq!(read(&dir, "seg.idx"), a);
    }
    // Power loss after the sync: every chunk is there, checked when read.
    let s = s.crash();
    let dir = open_sim(&s).unwrap();
    assert_eq!(read(&dir, "seg.idx"), a);
    assert_eq!(read(&dir, "seg.pos"), b);
    // Finished in place after the crash: the file it was built in gets its
    // table; reads and a whole check agree.
    let r = dir
        .export_files(&[Path::new("seg.idx"), Path::new("seg.pos")])
        .unwrap();
    assert_eq!((r.segment_files, r.files), (1, 2), "{r:?}");
    assert!(
        r.bytes < 200_000,
        "most bytes stayed where they were: {r:?}"
    );
    assert_eq!(segment_files(&s).len(), 1);
    assert_eq!(dir.verify_segments().unwrap(), 1);
    assert_eq!(read(&dir, "seg.idx"), a);
    assert_eq!(read(&dir, "seg.pos"), b);
    drop(dir);
    let dir = open_sim(&s.crash()).unwrap();
    assert_eq!(read(&dir, "seg.idx"), a);
    assert_eq!(dir.stats().segment_files_being_built, 0);
}

/// A `Placed` record made durable by a sync for something else (here the
/// creation of another segment's file) while its chunk was not: after the
/// power loss the file is listed (its records are there) but reading it
/// fails with a clear error instead of serving zeros. tantivy never synced
/// it, so no commit names it.
#[test]
fn chunks_a_crash_took_are_reported_not_served() {
    let s = SimStorage::new();
    {
        let dir = open_sim(&s).unwrap();
        write_file(&dir, "one.store", &pattern(3, 200_000));
        // Creating the second segment's file syncs the container (its
        // `ExportBegin`), not the first segment's file.
        write_file(&dir, "two.store", &pattern(4, 200_000));
    }
    let crashed = s.crash();
    let dir = open_sim(&crashed).unwrap();
    assert!(dir.exists(Path::new("one.store")).unwrap());
    let err = dir
        .open_read(Path::new("one.store"))
        .and_then(|f| {
            f.read_bytes()
                .map_err(|e| tantivy::directory::error::OpenReadError::IoError {
                    io_error: Arc::new(e),
                    filepath: "one.store".into(),
                })
        })
        .expect_err("bytes lost in the crash must not be served");
    let msg = err.to_string();
    assert!(msg.contains("jocky-seg-"), "names the file: {msg}");
    // Nor exported under a fresh checksum.
    assert!(dir.export_files(&[Path::new("one.store")]).is_err());
}

#[test]
fn damage_in_a_chunk_is_reported_never_served_or_exported() {
    let s = SimStorage::new();
    let data = pattern(5, 400_000);
    {
        let dir = open_sim(&s).unwrap();
        write_file(&dir, "d.term", &data);
        dir.sync_directory().unwrap();
    }
    let mut files: BTreeMap<String, Vec<u8>> = files_of(&s);
    let seg = segment_files(&s).pop().unwrap();
    let bytes = files.get_mut(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    let damaged = disk_of(&files);
    let dir = open_sim(&damaged).unwrap();
    let slice = dir.open_read(Path::new("d.term")).unwrap();
    // A read of the first chunk (before the damage) is served; one of the
    // damaged chunk is refused, every time.
    assert_eq!(
        slice.slice(0..1000).read_bytes().unwrap().as_slice(),
        &data[..1000]
    );
    for _ in 0..2 {
        let err = slice.read_bytes().unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
    }
    assert!(dir.export_files(&[Path::new("d.term")]).is_err());
}

#[test]
fn a_segment_deleted_before_its_export_leaves_no_file() {
    let s = SimStorage::new();
    let dir = open_sim(&s).unwrap();
    write_file(&dir, "gone.idx", &pattern(6, 300_000));
    write_file(&dir, "gone.pos", &pattern(7, 100_000));
    dir.sync_directory().unwrap();
    assert_eq!(segment_files(&s).len(), 1);
    let before = dir.open_read(Path::new("gone.idx")).unwrap();
    dir.delete(Path::new("gone.idx")).unwrap();
    dir.reclaim().unwrap();
    assert_eq!(
        segment_files(&s).len(),
        1,
        "gone.pos still has chunks in it"
    );
    dir.delete(Path::new("gone.pos")).unwrap();
    let r = dir.reclaim().unwrap();
    assert_eq!(r.segment_files_removed, 1, "{r:?}");
    assert!(segment_files(&s).is_empty());
    assert_eq!(dir.stats().segment_files_being_built, 0);
    // A slice opened before stays readable (its mapping holds the file).
    assert_eq!(
        before.read_bytes().unwrap().as_slice(),
        &pattern(6, 300_000)[..]
    );
    drop(dir);
    let dir = open_sim(&s.crash()).unwrap();
    assert!(dir.list_files().is_empty());
}

/// A segment file found being built by an open (its builder crashed) whose
/// files are then all deleted (merged away): reclamation drops it, and the
/// container files that held its records can go without the next open
/// finding a segment file the log has no record of.
#[test]
fn a_segment_built_before_a_crash_and_deleted_after_is_dropped() {
    let s = SimStorage::new();
    {
        let dir = open_sim(&s).unwrap();
        write_file(&dir, "old.idx", &pattern(8, 300_000));
        write_file(&dir, "old.pos", &pattern(9, 100_000));
        dir.sync_directory().unwrap();
    }
    let s = s.crash();
    let dir = open_sim(&s).unwrap();
    assert_eq!(dir.stats().segment_files_being_built, 1);
    dir.delete(Path::new("old.idx")).unwrap();
    dir.delete(Path::new("old.pos")).unwrap();
    // Enough churn that the container files holding its records die too.
    for i in 0..6 {
        let name = format!("filler{i}");
        write_file(&dir, &name, &pattern(i, 300_000));
        dir.delete(Path::new(&name)).unwrap();
    }
    write_file(&dir, "kept", &pattern(10, 1000));
    dir.sync_directory().unwrap();
    let mut dropped = 0;
    let mut removed = 0;
    for _ in 0..4 {
        let r = dir.reclaim().unwrap();
        dropped += r.segment_files_removed;
        removed += r.container_files_removed;
    }
    assert_eq!(dropped, 1, "the file being built is dropped");
    assert!(removed > 0, "the old container files went");
    assert!(segment_files(&s).is_empty());
    drop(dir);
    for disk in [s.clone(), s.crash()] {
        let dir = open_sim(&disk).unwrap();
        assert_eq!(read(&dir, "kept"), pattern(10, 1000));
        assert_eq!(dir.stats().segment_files_being_built, 0);
    }
}

/// Under `SyncPolicy::Never` a process killed right after a segment file
/// was created to build in: the `ExportBegin` record naming it reached the
/// container file first (the stage a killed process loses held it before),
/// so the next open knows the file and removes or keeps it, instead of
/// refusing the folder.
#[test]
fn a_kill_under_sync_never_right_after_a_build_began_leaves_a_folder_that_opens() {
    let s = SimStorage::new();
    let dir = JockyDirectory::builder("/sim")
        .storage(Arc::new(s.clone()))
        .container_file_size(4 << 20)
        .sync_policy(jocky::SyncPolicy::Never)
        .export_policy(ExportPolicy::Manual)
        .build_any_file_in_place(64 << 10)
        .open()
        .unwrap();
    write_file(&dir, "k.store", &pattern(11, 300_000));
    assert_eq!(dir.stats().segment_files_being_built, 1);
    let killed = s.kill();
    let reopened = open_sim(&killed);
    assert!(reopened.is_ok(), "{:?}", reopened.err());
    drop(dir);
}

// ---------------------------------------------------------------------------
// A tantivy index on a real folder, built in place with the library's rules.
// ---------------------------------------------------------------------------

use common::{id_body_schema as schema, splitmix};

fn index_docs(dir: Box<dyn Directory>, schema: &Schema) -> Index {
    let index = Index::create(dir, schema.clone(), Default::default()).unwrap();
    let id = schema.get_field("id").unwrap();
    let body = schema.get_field("body").unwrap();
    let mut writer: IndexWriter = index.writer_with_num_threads(2, 30_000_000).unwrap();
    for i in 0..24_000u64 {
        let mut text = String::from("alpha");
        for k in 0..30 {
            text.push_str(&format!(" w{:x}", splitmix(i * 64 + k) % 50_000));
        }
        writer.add_document(doc!(id => i, body => text)).unwrap();
        if i % 6_000 == 5_999 {
            writer.commit().unwrap();
        }
    }
    writer.commit().unwrap();
    writer.wait_merging_threads().unwrap();
    index
}

/// Hit counts and the ids of the top hits of a few queries.
fn answers(index: &Index, schema: &Schema) -> Vec<(usize, Vec<u64>)> {
    let reader = index.reader().unwrap();
    let searcher = reader.searcher();
    let body = schema.get_field("body").unwrap();
    let id = schema.get_field("id").unwrap();
    ["alpha", "w1a2", "wff", "w3039", "w0"]
        .iter()
        .map(|t| {
            let q = TermQuery::new(
                Term::from_field_text(body, t),
                IndexRecordOption::WithFreqsAndPositions,
            );
            let count = searcher.search(&q, &Count).unwrap();
            let top = searcher
                .search(
                    &q,
                    &TopDocs::with_limit(5).order_by_u64_field("id", tantivy::Order::Asc),
                )
                .unwrap();
            let ids = top
                .into_iter()
                .map(|(_, addr)| {
                    let d: TantivyDocument = searcher.doc(addr).unwrap();
                    d.get_first(id).and_then(|v| v.as_u64()).unwrap()
                })
                .collect();
            (count, ids)
        })
        .collect()
}

#[test]
fn a_tantivy_index_built_in_place_searches_as_on_mmap_and_reopens() {
    let schema = schema();
    let mmap_dir = tempfile::tempdir().unwrap();
    let mmap = index_docs(
        Box::new(MmapDirectory::open(mmap_dir.path()).unwrap()),
        &schema,
    );
    let want = answers(&mmap, &schema);
    assert!(want[0].0 == 24_000, "{want:?}");

    let tmp = tempfile::tempdir().unwrap();
    let open = || {
        JockyDirectory::builder(tmp.path())
            // The default: built in place. Segments of 512 KiB are built in place and exported after
            // each commit.
            .export_policy(ExportPolicy::OnCommit {
                min_segment_bytes: 512 << 10,
            })
            .open()
            .unwrap()
    };
    let dir = open();
    let index = index_docs(Box::new(dir.clone()), &schema);
    dir.wait_for_background_work();
    let st = dir.stats();
    assert!(st.segments_built_in_place > 0, "{st:?}");
    assert!(st.bytes_built_in_place > 1 << 20, "{st:?}");
    assert_eq!(st.background_errors, 0, "{st:?}");
    // The exports checked the files built in place from the CRCs their
    // writers computed: each cost its last partial 64 KiB block, not a read
    // of the whole file (only the files the exports copied out of the
    // container are read whole). A segment has 8 files at most.
    let blocks = st.segments_exported * 8 * (64 << 10);
    assert!(
        st.bytes_read_to_checksum <= st.bytes_exported + blocks,
        "{st:?}"
    );
    // Every exported segment file got hot ranges: its files matched their
    // tantivy footers (for files built in place, checked from the CRCs
    // their writers computed; a wrong combination would leave none).
    let mut exported = 0;
    for e in std::fs::read_dir(tmp.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "seg") {
            // A file still being built has no table yet.
            if let Some(hot) =
                jocky::testing::decode::segment_hot_ranges(&std::fs::read(&p).unwrap())
            {
                assert!(!hot.is_empty(), "{}", p.display());
                exported += 1;
            }
        }
    }
    assert!(exported > 0);
    assert_eq!(answers(&index, &schema), want);
    assert!(index.validate_checksum().unwrap().is_empty());
    dir.verify_segments().unwrap();
    drop(index);
    drop(dir);
    let dir = open();
    let index = Index::open(dir.clone()).unwrap();
    assert_eq!(answers(&index, &schema), want);
    assert!(index.validate_checksum().unwrap().is_empty());
    // Nothing is left being built once the index is committed and exported.
    dir.export_committed().unwrap();
    assert_eq!(dir.stats().segment_files_being_built, 0);
    // The folder holds container and segment files only, and the segment
    // files' blocks are what their tables hold (dead chunks freed).
    for e in std::fs::read_dir(tmp.path()).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(name.starts_with("jocky-"), "{name}");
    }
}

/// `jocky::verify` checks the chunks of files being built too: a flipped byte
/// in one is reported with the file's name.
#[test]
fn verify_reports_damage_in_a_file_being_built() {
    let tmp = tempfile::tempdir().unwrap();
    let data = pattern(8, 500_000);
    {
        let dir = JockyDirectory::builder(tmp.path())
            .export_policy(ExportPolicy::Manual)
            .build_any_file_in_place(64 << 10)
            .open()
            .unwrap();
        write_file(&dir, "v.pos", &data);
        dir.sync_directory().unwrap();
    }
    let report = jocky::verify::verify(tmp.path()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.files_being_built, 1, "{report:?}");
    let seg = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".seg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() - 1000;
    bytes[at] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    let report = jocky::verify::verify(tmp.path()).unwrap();
    assert_eq!(report.damage.len(), 1, "{report:?}");
    assert_eq!(report.damage[0].file, Path::new("v.pos"));
}
