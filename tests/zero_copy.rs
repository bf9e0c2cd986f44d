//! Fewer copies on a real file system: a file written in several chunks is
//! read across its chunks through one mapping (no buffer assembled), and an
//! export copies container bytes inside the kernel (`copy_file_range`), with
//! the bytes, the block CRCs and a reopen all as before.

mod common;

use std::path::Path;

use common::contract::patterned;
use common::{read, write_file};
use jocky::{ExportCopy, ExportPolicy, JockyDirectory, WriteMode};
use tantivy::directory::Directory;

const LEN: usize = 9 << 20; // 64 KiB, 128 KiB, ... 4 MiB chunks: several extents

fn open(path: &Path, mode: WriteMode) -> JockyDirectory {
    JockyDirectory::builder(path)
        .write_mode(mode)
        .export_policy(ExportPolicy::Manual)
        .open()
        .unwrap()
}

#[test]
fn reads_across_chunks_are_served_from_one_mapping() {
    for mode in [WriteMode::Buffered, WriteMode::Direct, WriteMode::Inline] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path(), mode);
        let bytes = patterned(3, LEN);
        write_file(&dir, "a.idx", &bytes);
        dir.sync_directory().unwrap();
        let handle = dir.open_read(Path::new("a.idx")).unwrap();
        // Across the boundary of the first two chunks, then the whole file.
        let at = 64 << 10;
        assert_eq!(
            handle
                .read_bytes_slice(at - 10..at + 10)
                .unwrap()
                .as_slice(),
            &bytes[at - 10..at + 10],
            "{mode:?}"
        );
        assert_eq!(
            handle.read_bytes().unwrap().as_slice(),
            &bytes[..],
            "{mode:?}"
        );
        let st = dir.stats();
        assert_eq!(st.read_bytes_assembled, 0, "{mode:?}: nothing copied");
        assert_eq!(
            st.files_stitched, 1,
            "{mode:?}: one file mapped as one range"
        );
        // A read through the old handle still works once the file moved to a
        // segment file (the mapping holds its pages).
        dir.export_files(&[Path::new("a.idx")]).unwrap();
        assert_eq!(
            handle.read_bytes().unwrap().as_slice(),
            &bytes[..],
            "{mode:?}"
        );
    }
}

#[test]
fn export_copies_inside_the_kernel_and_reads_back_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let small = patterned(5, 1000);
    let big = patterned(7, LEN + 123);
    {
        let dir = open(tmp.path(), WriteMode::Buffered);
        write_file(&dir, "s.store", &small);
        write_file(&dir, "s.idx", &big);
        dir.sync_directory().unwrap();
        let report = dir
            .export_files(&[Path::new("s.store"), Path::new("s.idx")])
            .unwrap();
        assert_eq!(report.files, 2);
        let st = dir.stats();
        assert_eq!(
            st.bytes_exported_in_kernel,
            (small.len() + big.len()) as u64,
            "every byte copied by copy_file_range"
        );
        assert_eq!(read(&dir, "s.idx"), big);
        assert_eq!(read(&dir, "s.store"), small);
        // The block CRCs written with the copy match the copied bytes.
        assert_eq!(dir.verify_segments().unwrap(), 1);
    }
    let dir = open(tmp.path(), WriteMode::Buffered);
    assert_eq!(read(&dir, "s.idx"), big);
    assert_eq!(read(&dir, "s.store"), small);
}

#[test]
fn a_file_across_container_files_is_one_range_too() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = JockyDirectory::builder(tmp.path())
        .container_file_size(1 << 20)
        .write_buffer(4 << 10, 16 << 10)
        .export_policy(ExportPolicy::Manual)
        .open()
        .unwrap();
    let bytes = patterned(9, (3 << 20) + 7); // more than three 1 MiB container files
    write_file(&dir, "x.pos", &bytes);
    dir.sync_directory().unwrap();
    assert!(dir.stats().container_files >= 3, "{:?}", dir.stats());
    assert_eq!(read(&dir, "x.pos"), bytes);
    let st = dir.stats();
    assert_eq!((st.read_bytes_assembled, st.files_stitched), (0, 1));
}

#[test]
fn any_file_copies_from_older_container_files_in_the_kernel_too() {
    for (copy, all_in_kernel) in [(ExportCopy::ActiveFile, false), (ExportCopy::AnyFile, true)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = JockyDirectory::builder(tmp.path())
            .container_file_size(1 << 20)
            .write_buffer(4 << 10, 16 << 10)
            .export_policy(ExportPolicy::Manual)
            .export_copy(copy)
            .open()
            .unwrap();
        let bytes = patterned(11, (3 << 20) + 5); // over four 1 MiB container files
        write_file(&dir, "x.pos", &bytes);
        dir.sync_directory().unwrap();
        assert!(dir.stats().container_files >= 3, "{:?}", dir.stats());
        dir.export_files(&[Path::new("x.pos")]).unwrap();
        let in_kernel = dir.stats().bytes_exported_in_kernel;
        if all_in_kernel {
            assert_eq!(in_kernel, bytes.len() as u64, "{copy:?}");
        } else {
            // Only what lies in the file being appended to.
            assert!(in_kernel < bytes.len() as u64, "{copy:?}: {in_kernel}");
        }
        assert_eq!(read(&dir, "x.pos"), bytes, "{copy:?}");
        assert_eq!(dir.verify_segments().unwrap(), 1, "{copy:?}");
        drop(dir);
        let dir = open(tmp.path(), WriteMode::Buffered);
        assert_eq!(read(&dir, "x.pos"), bytes, "{copy:?}");
    }
}
