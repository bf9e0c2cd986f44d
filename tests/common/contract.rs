//! Contract suite for tantivy's [`Directory`] semantics.
//!
//! Every public `fn(&dyn Directory)` below checks one contract and panics, with a
//! message naming the contract, when the directory breaks it. Each function expects a
//! fresh, empty directory (they reuse path names such as `meta.json` and `a.lock`).
//!
//! The suite is proven against tantivy's own `MmapDirectory` and `RamDirectory` in
//! `tests/contract_reference.rs`. To run it against another directory, declare
//! `mod common;` at the root of the test binary and invoke [`contract_tests!`]:
//!
//! ```ignore
//! mod common;
//! use common::contract::TestDirectory;
//!
//! fn make() -> TestDirectory {
//!     let tmp = tempfile::TempDir::new().unwrap();
//!     let dir = jocky::JockyDirectory::open(tmp.path()).unwrap();
//!     TestDirectory::with_guard(dir, tmp) // the TempDir lives as long as the directory
//! }
//!
//! mod default_config {
//!     use super::*;
//!     crate::contract_tests!(make());
//! }
//! ```
//!
//! Two contracts are stricter than tantivy's `MmapDirectory` (its mmap cache is keyed
//! by path, so while an old mapping of a path is alive, `open_read` of that path
//! keeps returning the old bytes even after `delete`, re-creation or `atomic_write`).
//! They are listed in [`STRICT_PATH_REUSE_CONTRACTS`]; `contract_tests!(expr;
//! without_path_reuse)` leaves them out.
#![allow(dead_code)]

use std::any::Any;
use std::fmt;
use std::io::Write;
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    FileSlice, Lock, MmapDirectory, OwnedBytes, RamDirectory, TerminatingWrite, WatchCallback,
    WritePtr,
};
use tantivy::{Directory, HasLen};

// ---------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------

/// A directory under test plus whatever must outlive it (typically a `TempDir`).
///
/// Derefs to `dyn Directory`. The directory is dropped before the guard.
pub struct TestDirectory {
    // Field order matters: fields drop in declaration order.
    directory: Box<dyn Directory>,
    _guard: Option<Box<dyn Any>>,
}

impl TestDirectory {
    /// A directory that needs nothing kept alive.
    pub fn new(directory: impl Into<Box<dyn Directory>>) -> TestDirectory {
        TestDirectory {
            directory: directory.into(),
            _guard: None,
        }
    }

    /// A directory plus a guard (e.g. a `tempfile::TempDir`) dropped after it.
    pub fn with_guard(directory: impl Into<Box<dyn Directory>>, guard: impl Any) -> TestDirectory {
        TestDirectory {
            directory: directory.into(),
            _guard: Some(Box::new(guard)),
        }
    }

    pub fn directory(&self) -> &dyn Directory {
        &*self.directory
    }
}

impl Deref for TestDirectory {
    type Target = dyn Directory;

    fn deref(&self) -> &(dyn Directory + 'static) {
        &*self.directory
    }
}

impl From<Box<dyn Directory>> for TestDirectory {
    fn from(directory: Box<dyn Directory>) -> TestDirectory {
        TestDirectory::new(directory)
    }
}

impl<G: Any> From<(Box<dyn Directory>, G)> for TestDirectory {
    fn from((directory, guard): (Box<dyn Directory>, G)) -> TestDirectory {
        TestDirectory::with_guard(directory, guard)
    }
}

impl From<RamDirectory> for TestDirectory {
    fn from(directory: RamDirectory) -> TestDirectory {
        TestDirectory::new(directory)
    }
}

impl From<MmapDirectory> for TestDirectory {
    fn from(directory: MmapDirectory) -> TestDirectory {
        TestDirectory::new(directory)
    }
}

/// Contracts that tantivy's `MmapDirectory` does not satisfy (see the module doc).
pub const STRICT_PATH_REUSE_CONTRACTS: &[&str] = &[
    "reuse_path_while_old_slice_open",
    "atomic_overwrite_visible_while_old_slice_open",
];

/// Expands to one `#[test]` per contract function of this module.
///
/// `contract_tests!(make_directory_expr)` — `make_directory_expr` is evaluated once per
/// test and must produce something `TestDirectory: From<_>` accepts: a
/// [`TestDirectory`] (use `TestDirectory::with_guard(dir, tempdir)` to keep a temp dir
/// alive), a `Box<dyn Directory>`, a `(Box<dyn Directory>, guard)` tuple, a
/// `RamDirectory` or an `MmapDirectory`.
///
/// `contract_tests!(make_directory_expr; without_path_reuse)` omits the contracts in
/// [`STRICT_PATH_REUSE_CONTRACTS`].
///
/// The test binary must declare `mod common;` at its root. Invoke the macro once per
/// module (the test names are the contract function names); from a submodule call it
/// as `crate::contract_tests!(...)`.
#[macro_export]
macro_rules! contract_tests {
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let fixture = $crate::common::contract::TestDirectory::from($make);
                $crate::common::contract::$name(&*fixture);
            }
        )*
    };
    (@core $make:expr) => {
        $crate::contract_tests!(@tests $make;
            simple_write_read,
            write_create_the_file,
            rewrite_forbidden,
            delete_keeps_open_slices,
            deleted_file_is_gone,
            delete_missing,
            open_read_missing,
            write_again_after_delete,
            zero_length_file,
            many_small_writes,
            large_file_random_ranges,
            slices_survive_later_writes,
            interleaved_writers,
            abandoned_writer_does_not_disturb_others,
            many_files,
            atomic_write_read_back,
            atomic_overwrite_replaces,
            atomic_read_missing,
            atomic_write_empty,
            atomic_file_readable_with_open_read,
            atomic_overwrite_keeps_open_slices,
            atomic_write_never_observed_torn,
            lock_non_blocking,
            lock_blocking,
            lock_reacquire_after_drop,
            watch,
            concurrent_writers,
            readers_while_writing,
            sync_directory_after_writes,
            exists_for_all_kinds,
            box_clone_shares_state,
        );
    };
    ($make:expr; without_path_reuse) => {
        $crate::contract_tests!(@core $make);
    };
    ($make:expr) => {
        $crate::contract_tests!(@core $make);
        $crate::contract_tests!(@tests $make;
            reuse_path_while_old_slice_open,
            atomic_overwrite_visible_while_old_slice_open,
        );
    };
}

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

pub const KIB: usize = 1 << 10;
pub const MIB: usize = 1 << 20;

/// Upper bound for waits that are expected to succeed.
pub const POSITIVE_WAIT: Duration = Duration::from_secs(5);
/// How long to wait before concluding that something did not happen. tantivy's
/// `MmapDirectory` polls `meta.json` every 500 ms, so this covers two polls.
pub const NEGATIVE_WAIT: Duration = Duration::from_millis(1100);

/// Byte `pos` of the test pattern number `seed`. It depends on the position, so
/// shifted, duplicated or misplaced data is detected.
pub fn pattern_byte(seed: u64, pos: u64) -> u8 {
    let mut x = pos
        .wrapping_add(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(1);
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 29;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^= x >> 32;
    x as u8
}

/// `len` bytes of the test pattern number `seed`.
pub fn patterned(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|pos| pattern_byte(seed, pos)).collect()
}

/// A deterministic RNG (tests are reproducible).
pub fn test_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Compares two byte strings and reports the first difference instead of dumping them.
#[track_caller]
pub fn assert_bytes_eq(actual: &[u8], expected: &[u8], context: &str) {
    if actual == expected {
        return;
    }
    let first_diff = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    panic!(
        "{context}: content differs: actual len {}, expected len {}, first difference at \
         offset {first_diff} (actual {:?}, expected {:?})",
        actual.len(),
        expected.len(),
        actual.get(first_diff),
        expected.get(first_diff),
    );
}

/// Writes `data` with `write_all` and terminates.
pub fn write_file(dir: &dyn Directory, path: &Path, data: &[u8]) {
    let mut writer = dir
        .open_write(path)
        .unwrap_or_else(|e| panic!("open_write({path:?}): {e:?}"));
    writer
        .write_all(data)
        .unwrap_or_else(|e| panic!("write({path:?}): {e:?}"));
    writer
        .terminate()
        .unwrap_or_else(|e| panic!("terminate({path:?}): {e:?}"));
}

/// A write size drawn from a mix of tiny, small, medium and large sizes.
fn irregular_chunk_len(rng: &mut StdRng) -> usize {
    match rng.random_range(0..10u32) {
        0..=2 => rng.random_range(1..=16),
        3..=5 => rng.random_range(17..=8 * KIB),
        6..=7 => rng.random_range(8 * KIB..=200 * KIB),
        8 => [MIB - 1, MIB, MIB + 1, 8 * KIB, 4 * KIB][rng.random_range(0..5)],
        _ => rng.random_range(200 * KIB..=3 * MIB),
    }
}

/// Writes `data` in irregular write sizes (some straight to the directory's writer,
/// bypassing the `BufWriter`), with occasional flushes, and terminates.
pub fn write_file_chunked(dir: &dyn Directory, path: &Path, data: &[u8], rng: &mut StdRng) {
    let mut writer = dir
        .open_write(path)
        .unwrap_or_else(|e| panic!("open_write({path:?}): {e:?}"));
    let mut pos = 0;
    while pos < data.len() {
        let len = irregular_chunk_len(rng).min(data.len() - pos);
        let chunk = &data[pos..pos + len];
        match rng.random_range(0..8u32) {
            0 => {
                // Straight to the directory's writer: flush the BufWriter first so the
                // order of bytes is preserved.
                writer.flush().expect("flush");
                writer
                    .get_mut()
                    .write_all(chunk)
                    .expect("write (unbuffered)");
            }
            1 => {
                writer.write_all(chunk).expect("write");
                writer.flush().expect("flush");
            }
            _ => writer.write_all(chunk).expect("write"),
        }
        pos += len;
    }
    writer
        .terminate()
        .unwrap_or_else(|e| panic!("terminate({path:?}): {e:?}"));
}

/// Reads a whole file through `open_read`.
pub fn read_file(dir: &dyn Directory, path: &Path) -> OwnedBytes {
    dir.open_read(path)
        .unwrap_or_else(|e| panic!("open_read({path:?}): {e:?}"))
        .read_bytes()
        .unwrap_or_else(|e| panic!("read_bytes({path:?}): {e:?}"))
}

/// Reads a whole file through `open_read` and compares it with `expected`.
#[track_caller]
pub fn check_file(dir: &dyn Directory, path: &Path, expected: &[u8]) {
    let slice = dir
        .open_read(path)
        .unwrap_or_else(|e| panic!("open_read({path:?}): {e:?}"));
    assert_eq!(slice.len(), expected.len(), "length of {path:?}");
    let bytes = slice
        .read_bytes()
        .unwrap_or_else(|e| panic!("read_bytes({path:?}): {e:?}"));
    assert_bytes_eq(bytes.as_slice(), expected, &format!("{path:?}"));
}

/// Asserts `result` is `Err(OpenReadError::FileDoesNotExist(p))` with `p` ending in `path`.
#[track_caller]
pub fn assert_read_missing<T>(result: Result<T, OpenReadError>, path: &Path, what: &str) {
    match result {
        Err(OpenReadError::FileDoesNotExist(got)) => assert!(
            got.ends_with(path),
            "{what}: FileDoesNotExist names {got:?}, expected {path:?}"
        ),
        Err(other) => panic!("{what}: expected OpenReadError::FileDoesNotExist, got {other:?}"),
        Ok(_) => panic!("{what}: expected OpenReadError::FileDoesNotExist, got Ok"),
    }
}

/// Asserts `result` is `Err(DeleteError::FileDoesNotExist(p))` with `p` ending in `path`.
#[track_caller]
pub fn assert_delete_missing(result: Result<(), DeleteError>, path: &Path, what: &str) {
    match result {
        Err(DeleteError::FileDoesNotExist(got)) => assert!(
            got.ends_with(path),
            "{what}: FileDoesNotExist names {got:?}, expected {path:?}"
        ),
        Err(other) => panic!("{what}: expected DeleteError::FileDoesNotExist, got {other:?}"),
        Ok(()) => panic!("{what}: expected DeleteError::FileDoesNotExist, got Ok"),
    }
}

/// Asserts `result` is `Err(OpenWriteError::FileAlreadyExists(p))` with `p` ending in `path`.
#[track_caller]
pub fn assert_already_exists(result: Result<WritePtr, OpenWriteError>, path: &Path, what: &str) {
    match result {
        Err(OpenWriteError::FileAlreadyExists(got)) => assert!(
            got.ends_with(path),
            "{what}: FileAlreadyExists names {got:?}, expected {path:?}"
        ),
        Err(other) => panic!("{what}: expected OpenWriteError::FileAlreadyExists, got {other:?}"),
        Ok(_) => panic!("{what}: expected OpenWriteError::FileAlreadyExists, got Ok"),
    }
}

#[track_caller]
fn assert_exists(dir: &dyn Directory, path: &Path, expected: bool, what: &str) {
    let exists = dir
        .exists(path)
        .unwrap_or_else(|e| panic!("{what}: exists({path:?}) failed: {e:?}"));
    assert_eq!(exists, expected, "{what}: exists({path:?})");
}

fn lock(path: &str, is_blocking: bool) -> Lock {
    Lock {
        filepath: PathBuf::from(path),
        is_blocking,
    }
}

/// Reads `range` of `slice` in every way a reader can, and compares with `expected`.
#[track_caller]
fn check_range(slice: &FileSlice, expected: &[u8], range: Range<usize>, what: &str) {
    let want = &expected[range.clone()];
    let ctx = format!("{what} range {range:?}");
    let sub = slice.slice(range.clone());
    assert_eq!(sub.len(), range.len(), "{ctx}: FileSlice::slice len");
    assert_bytes_eq(
        sub.read_bytes().expect("slice().read_bytes()").as_slice(),
        want,
        &format!("{ctx} via FileSlice::slice"),
    );
    assert_bytes_eq(
        slice
            .read_bytes_slice(range.clone())
            .expect("read_bytes_slice")
            .as_slice(),
        want,
        &format!("{ctx} via read_bytes_slice"),
    );
    let nested = slice.slice_from(range.start).slice_to(range.len());
    assert_bytes_eq(
        nested.read_bytes().expect("nested read_bytes").as_slice(),
        want,
        &format!("{ctx} via slice_from().slice_to()"),
    );
}

// ---------------------------------------------------------------------------------
// Basic write / read
// ---------------------------------------------------------------------------------

/// Contract: bytes written with `open_write` + `terminate` read back identically through
/// `open_read`, `read_bytes` and `get_file_handle`; `delete` then removes the file.
pub fn simple_write_read(dir: &dyn Directory) {
    let path = Path::new("some_path_for_test");
    let mut writer = dir.open_write(path).expect("open_write");
    writer.write_all(&[4]).unwrap();
    writer.write_all(&[3]).unwrap();
    writer.write_all(&[7, 3, 5]).unwrap();
    writer.terminate().expect("terminate");

    let slice = dir.open_read(path).expect("open_read");
    assert_eq!(slice.len(), 5, "FileSlice len");
    assert_eq!(slice.read_bytes().unwrap().as_slice(), &[4u8, 3, 7, 3, 5]);
    let handle = dir.get_file_handle(path).expect("get_file_handle");
    assert_eq!(handle.len(), 5, "FileHandle len");
    assert_eq!(handle.read_bytes(1..4).unwrap().as_slice(), &[3u8, 7, 3]);
    assert_eq!(
        handle.read_bytes(0..5).unwrap().as_slice(),
        &[4u8, 3, 7, 3, 5]
    );
    drop((slice, handle));

    dir.delete(path).expect("delete");
    assert_exists(dir, path, false, "after delete");
}

/// Contract: a file exists as soon as `open_write` returns (before any write or
/// `terminate`), and is readable (empty) after `terminate`.
pub fn write_create_the_file(dir: &dyn Directory) {
    let path = Path::new("some_path_for_test");
    assert_exists(dir, path, false, "before open_write");
    assert_read_missing(dir.open_read(path), path, "open_read before open_write");
    let writer = dir.open_write(path).expect("open_write");
    assert_exists(dir, path, true, "right after open_write, before terminate");
    writer.terminate().expect("terminate");
    assert_exists(dir, path, true, "after terminate");
    assert_eq!(dir.open_read(path).expect("open_read").len(), 0);
    dir.delete(path).expect("delete");
}

/// Contract: `open_write` on an existing path fails with `FileAlreadyExists`, both while
/// the file is being written and after `terminate`, and also for a path created by
/// `atomic_write`; the failed call disturbs neither the first writer nor the content.
pub fn rewrite_forbidden(dir: &dyn Directory) {
    let path = Path::new("some_path_for_test");
    let mut writer = dir.open_write(path).expect("open_write");
    writer.write_all(b"first ").unwrap();
    assert_already_exists(dir.open_write(path), path, "open_write while being written");
    writer.write_all(b"writer").unwrap();
    writer.flush().unwrap();
    assert_already_exists(dir.open_write(path), path, "open_write while being written");
    writer.terminate().expect("terminate");
    assert_exists(dir, path, true, "after terminate");
    assert_already_exists(dir.open_write(path), path, "open_write after terminate");
    check_file(dir, path, b"first writer");

    let atomic_path = Path::new("atomic.json");
    dir.atomic_write(atomic_path, b"atomic")
        .expect("atomic_write");
    assert_already_exists(
        dir.open_write(atomic_path),
        atomic_path,
        "open_write on an atomic_write'd path",
    );
    assert_eq!(
        dir.atomic_read(atomic_path).expect("atomic_read"),
        b"atomic"
    );
}

/// Contract: a `FileSlice` (read or not yet read), a sub-slice, `OwnedBytes` and a
/// `FileHandle` opened before `delete` stay valid and unchanged after it, even after
/// further writes; `exists` is false right after `delete`.
pub fn delete_keeps_open_slices(dir: &dyn Directory) {
    let path = Path::new("doomed.bin");
    let data = patterned(1, 300 * KIB + 3);
    write_file(dir, path, &data);

    let slice = dir.open_read(path).expect("open_read");
    let sub = slice.slice(1000..250_000);
    let bytes = dir.open_read(path).unwrap().read_bytes().unwrap();
    let handle = dir.get_file_handle(path).expect("get_file_handle");

    dir.delete(path).expect("delete");
    assert_exists(dir, path, false, "right after delete");

    let check_all = |when: &str| {
        assert_eq!(slice.len(), data.len(), "{when}: slice len");
        assert_bytes_eq(
            slice.read_bytes().expect("read_bytes").as_slice(),
            &data,
            &format!("{when}: FileSlice opened before delete"),
        );
        assert_bytes_eq(
            sub.read_bytes().expect("read_bytes").as_slice(),
            &data[1000..250_000],
            &format!("{when}: sub-slice opened before delete"),
        );
        assert_bytes_eq(
            bytes.as_slice(),
            &data,
            &format!("{when}: OwnedBytes read before delete"),
        );
        assert_eq!(handle.len(), data.len(), "{when}: handle len");
        assert_bytes_eq(
            handle
                .read_bytes(5..data.len() - 1)
                .expect("read")
                .as_slice(),
            &data[5..data.len() - 1],
            &format!("{when}: FileHandle opened before delete"),
        );
    };
    check_all("after delete");

    // Other files written after the delete must not reuse the bytes under our feet.
    let mut rng = test_rng(1);
    for i in 0..4 {
        let other = PathBuf::from(format!("other{i}.bin"));
        write_file_chunked(dir, &other, &patterned(100 + i, 700 * KIB), &mut rng);
    }
    dir.atomic_write(Path::new("meta.json"), &patterned(7, 5000))
        .expect("atomic_write");
    dir.sync_directory().expect("sync_directory");
    check_all("after further writes");
}

/// Contract: once deleted and no longer open, a file is gone: `exists` is false,
/// `open_read`/`get_file_handle` fail with `FileDoesNotExist`, and a second `delete`
/// fails with `DeleteError::FileDoesNotExist`.
pub fn deleted_file_is_gone(dir: &dyn Directory) {
    let path = Path::new("doomed.bin");
    write_file(dir, path, &[1, 2, 3, 4]);
    {
        let bytes = read_file(dir, path);
        assert_eq!(bytes.as_slice(), &[1u8, 2, 3, 4]);
        dir.delete(path).expect("delete");
        assert_eq!(bytes.as_slice(), &[1u8, 2, 3, 4]);
    }
    assert_exists(dir, path, false, "after delete");
    assert_read_missing(dir.open_read(path), path, "open_read after delete");
    assert_read_missing(
        dir.get_file_handle(path),
        path,
        "get_file_handle after delete",
    );
    assert_delete_missing(dir.delete(path), path, "second delete");

    let atomic_path = Path::new("meta.json");
    dir.atomic_write(atomic_path, b"{}").expect("atomic_write");
    dir.delete(atomic_path).expect("delete of an atomic file");
    assert_exists(dir, atomic_path, false, "atomic file after delete");
    assert_read_missing(
        dir.atomic_read(atomic_path),
        atomic_path,
        "atomic_read after delete",
    );
}

/// Contract: deleting a path that never existed fails with `DeleteError::FileDoesNotExist`.
pub fn delete_missing(dir: &dyn Directory) {
    let path = Path::new("SomeOtherPath");
    assert_delete_missing(dir.delete(path), path, "delete of a missing file");
    write_file(dir, Path::new("present"), b"x");
    assert_delete_missing(dir.delete(path), path, "delete of a missing file");
    check_file(dir, Path::new("present"), b"x");
}

/// Contract: `open_read`/`get_file_handle` of a missing path fail with
/// `OpenReadError::FileDoesNotExist` and `exists` is false, also for prefixes and
/// extensions of existing names.
pub fn open_read_missing(dir: &dyn Directory) {
    let path = Path::new("missing.idx");
    assert_exists(dir, path, false, "missing file");
    assert_read_missing(dir.open_read(path), path, "open_read of a missing file");
    assert_read_missing(
        dir.get_file_handle(path),
        path,
        "get_file_handle of missing",
    );

    write_file(dir, Path::new("abcd.idx"), b"present");
    for missing in [
        "abc",
        "abcd",
        "abcd.id",
        "abcd.idx2",
        "abcd.idx.x",
        "bcd.idx",
    ] {
        let missing = Path::new(missing);
        assert_exists(dir, missing, false, "near-miss name");
        assert_read_missing(
            dir.open_read(missing),
            missing,
            "open_read of near-miss name",
        );
    }
}

/// Contract: after `delete`, the same path can be written again (repeatedly, with
/// other lengths) and reads return the new content.
pub fn write_again_after_delete(dir: &dyn Directory) {
    let path = Path::new("reused.bin");
    for (round, len) in [1000usize, 5000, 10, 0, 70_000].into_iter().enumerate() {
        let data = patterned(round as u64, len);
        write_file(dir, path, &data);
        check_file(dir, path, &data);
        dir.delete(path)
            .unwrap_or_else(|e| panic!("delete in round {round}: {e:?}"));
        assert_exists(dir, path, false, "after delete");
    }
}

/// Contract (stricter than `MmapDirectory`): while a `FileSlice` of a deleted path is
/// still open, `open_read` of the path fails, and after re-creating the path
/// `open_read` returns the new content while the old slice keeps the old content.
pub fn reuse_path_while_old_slice_open(dir: &dyn Directory) {
    let path = Path::new("reused.bin");
    let old = patterned(1, 100 * KIB);
    write_file(dir, path, &old);
    let old_slice = dir.open_read(path).expect("open_read");
    let old_bytes = old_slice.read_bytes().expect("read_bytes");

    dir.delete(path).expect("delete");
    assert_read_missing(
        dir.open_read(path),
        path,
        "open_read of a deleted path while an old slice is open",
    );

    let new = patterned(2, 60 * KIB);
    write_file(dir, path, &new);
    check_file(dir, path, &new);
    assert_bytes_eq(
        old_bytes.as_slice(),
        &old,
        "old OwnedBytes after re-creation",
    );
    assert_bytes_eq(
        old_slice.read_bytes().unwrap().as_slice(),
        &old,
        "old FileSlice after re-creation",
    );
}

/// Contract: a file terminated without any write has length 0 and every read of it is
/// empty.
pub fn zero_length_file(dir: &dyn Directory) {
    let plain = Path::new("empty.bin");
    dir.open_write(plain)
        .expect("open_write")
        .terminate()
        .expect("terminate");
    let flushed = Path::new("empty_flushed.bin");
    let mut writer = dir.open_write(flushed).expect("open_write");
    writer.write_all(&[]).unwrap();
    writer.flush().unwrap();
    writer.get_mut().write_all(&[]).unwrap();
    writer.terminate().expect("terminate");

    for path in [plain, flushed] {
        assert_exists(dir, path, true, "zero-length file");
        let slice = dir.open_read(path).expect("open_read");
        assert_eq!(slice.len(), 0);
        assert!(slice.read_bytes().unwrap().is_empty());
        assert!(slice.slice(0..0).read_bytes().unwrap().is_empty());
        assert!(slice.read_bytes_slice(0..0).unwrap().is_empty());
        assert_eq!(slice.stream_file_chunks().count(), 0);
        let handle = dir.get_file_handle(path).expect("get_file_handle");
        assert_eq!(handle.len(), 0);
        assert!(handle.read_bytes(0..0).unwrap().is_empty());
    }
    // A zero-length file next to a non-empty one does not borrow its bytes.
    write_file(dir, Path::new("full.bin"), b"full");
    assert_eq!(dir.open_read(plain).unwrap().len(), 0);
    check_file(dir, Path::new("full.bin"), b"full");
}

/// Contract: 100 000 writes of 1–13 bytes (through the `BufWriter`, with occasional
/// flushes, and straight to the directory's writer) read back identically.
pub fn many_small_writes(dir: &dyn Directory) {
    let mut rng = test_rng(2);
    for (name, unbuffered) in [("buffered.bin", false), ("unbuffered.bin", true)] {
        let path = Path::new(name);
        let mut writer = dir.open_write(path).expect("open_write");
        let mut expected = Vec::new();
        for i in 0..100_000u64 {
            let len = rng.random_range(1..=13usize);
            let chunk: Vec<u8> = (0..len)
                .map(|j| pattern_byte(i, (expected.len() + j) as u64))
                .collect();
            if unbuffered {
                writer.get_mut().write_all(&chunk).expect("write");
            } else {
                writer.write_all(&chunk).expect("write");
                if i % 997 == 0 {
                    writer.flush().expect("flush");
                }
            }
            expected.extend_from_slice(&chunk);
        }
        writer.terminate().expect("terminate");
        check_file(dir, path, &expected);
    }
}

/// Contract: a 20 MiB file written in irregular write sizes reads back identically,
/// whole, chunk-streamed, and in sub-ranges (`FileSlice::slice`, `read_bytes_slice`,
/// nested slices, `FileHandle::read_bytes`) at many random offsets, including ranges
/// that cross every 1 MiB boundary.
pub fn large_file_random_ranges(dir: &dyn Directory) {
    let path = Path::new("large.bin");
    let len = 20 * MIB + 12_345;
    let data = patterned(3, len);
    let mut rng = test_rng(3);
    write_file_chunked(dir, path, &data, &mut rng);

    let slice = dir.open_read(path).expect("open_read");
    assert_eq!(slice.len(), len);
    assert_bytes_eq(slice.read_bytes().unwrap().as_slice(), &data, "whole file");
    let mut streamed = Vec::with_capacity(len);
    for chunk in slice.stream_file_chunks() {
        streamed.extend_from_slice(chunk.expect("stream_file_chunks").as_slice());
    }
    assert_bytes_eq(&streamed, &data, "stream_file_chunks");

    let handle = dir.get_file_handle(path).expect("get_file_handle");
    assert_eq!(handle.len(), len);

    let mut ranges: Vec<Range<usize>> = Vec::new();
    for k in 1..=20 {
        let b = k * MIB;
        ranges.push(b - 1..b + 1);
        ranges.push(b..b);
        ranges.push(b - MIB..b);
        ranges.push(b - rng.random_range(1..5000)..b + rng.random_range(1..5000));
        ranges.push(b - rng.random_range(1..MIB)..(b + rng.random_range(1..MIB)).min(len));
    }
    ranges.push(0..0);
    ranges.push(len..len);
    ranges.push(len - 1..len);
    ranges.push(0..len);
    for _ in 0..1500 {
        let start = rng.random_range(0..=len);
        let max_len = match rng.random_range(0..10u32) {
            0..=3 => 16,
            4..=7 => 8 * KIB,
            8 => 200 * KIB,
            _ => 3 * MIB,
        };
        let end = (start + rng.random_range(0..=max_len)).min(len);
        ranges.push(start..end);
    }
    for range in ranges {
        check_range(&slice, &data, range.clone(), "large file");
        assert_bytes_eq(
            handle.read_bytes(range.clone()).expect("read").as_slice(),
            &data[range.clone()],
            &format!("large file range {range:?} via FileHandle::read_bytes"),
        );
    }

    // Sub-slices of sub-slices keep relative offsets.
    let outer = slice.slice(3 * MIB - 7..9 * MIB + 7);
    let inner = outer.slice(MIB - 3..2 * MIB + 5);
    assert_bytes_eq(
        inner.read_bytes().unwrap().as_slice(),
        &data[4 * MIB - 10..5 * MIB - 2],
        "nested slices",
    );
    let (left, right) = slice.clone().split(7 * MIB + 1);
    assert_bytes_eq(
        left.read_bytes().unwrap().as_slice(),
        &data[..7 * MIB + 1],
        "split left",
    );
    assert_bytes_eq(
        right.read_bytes().unwrap().as_slice(),
        &data[7 * MIB + 1..],
        "split right",
    );
}

/// Contract: slices and bytes of a file stay valid and unchanged while many more
/// files are written, atomically written and deleted (the directory grows), and a
/// fresh `open_read` still returns the same content.
pub fn slices_survive_later_writes(dir: &dyn Directory) {
    let path = Path::new("first.bin");
    let data = patterned(4, 3 * MIB + 7);
    write_file(dir, path, &data);
    let slice = dir.open_read(path).expect("open_read");
    let bytes = slice.read_bytes().expect("read_bytes");
    let sub = slice.slice(MIB - 10..2 * MIB + 10);
    let handle = dir.get_file_handle(path).expect("get_file_handle");

    let mut rng = test_rng(4);
    for i in 0..12u64 {
        let other = PathBuf::from(format!("later{i}.bin"));
        let len = rng.random_range(MIB..2 * MIB);
        write_file_chunked(dir, &other, &patterned(40 + i, len), &mut rng);
        dir.atomic_write(Path::new("meta.json"), format!("v{i}").as_bytes())
            .expect("atomic_write");
        if i % 3 == 1 {
            dir.delete(&other).expect("delete");
        }
    }

    assert_bytes_eq(bytes.as_slice(), &data, "OwnedBytes after later writes");
    assert_bytes_eq(
        slice.read_bytes().unwrap().as_slice(),
        &data,
        "FileSlice after later writes",
    );
    assert_bytes_eq(
        sub.read_bytes().unwrap().as_slice(),
        &data[MIB - 10..2 * MIB + 10],
        "sub-slice after later writes",
    );
    assert_bytes_eq(
        handle.read_bytes(0..data.len()).unwrap().as_slice(),
        &data,
        "FileHandle after later writes",
    );
    check_file(dir, path, &data);
}

/// Contract: several files written at the same time through interleaved writes do not
/// mix; each is readable as soon as it is terminated, while the others are still
/// being written, and stays intact.
pub fn interleaved_writers(dir: &dyn Directory) {
    let mut rng = test_rng(5);
    let sizes = [0usize, 1, 5000, 70_000, MIB + 3, 5 * MIB / 2];
    let contents: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| patterned(50 + i as u64, len))
        .collect();
    let paths: Vec<PathBuf> = (0..sizes.len())
        .map(|i| PathBuf::from(format!("interleaved{i}.bin")))
        .collect();
    let mut writers: Vec<Option<WritePtr>> = paths
        .iter()
        .map(|p| Some(dir.open_write(p).expect("open_write")))
        .collect();
    let mut positions = vec![0usize; sizes.len()];
    let mut terminated: Vec<usize> = Vec::new();
    let mut order: Vec<usize> = (0..sizes.len()).collect();

    while terminated.len() < sizes.len() {
        order.shuffle(&mut rng);
        for &i in &order {
            let Some(writer) = writers[i].as_mut() else {
                continue;
            };
            let pos = positions[i];
            let len = rng.random_range(1..=100 * KIB).min(sizes[i] - pos);
            if rng.random_bool(0.3) {
                writer.flush().expect("flush");
                writer
                    .get_mut()
                    .write_all(&contents[i][pos..pos + len])
                    .expect("write");
            } else {
                writer
                    .write_all(&contents[i][pos..pos + len])
                    .expect("write");
            }
            positions[i] += len;
            if positions[i] == sizes[i] {
                writers[i].take().unwrap().terminate().expect("terminate");
                terminated.push(i);
                for &t in &terminated {
                    check_file(dir, &paths[t], &contents[t]);
                }
            }
        }
    }
    for i in 0..sizes.len() {
        check_file(dir, &paths[i], &contents[i]);
    }
}

/// Contract: a writer dropped without `terminate` does not disturb files written
/// before, during or after it, and the directory stays usable (what becomes of the
/// abandoned path itself is unspecified).
pub fn abandoned_writer_does_not_disturb_others(dir: &dyn Directory) {
    let before = patterned(60, 200 * KIB);
    write_file(dir, Path::new("before.bin"), &before);

    let during = patterned(61, 300 * KIB);
    let mut during_writer = dir.open_write(Path::new("during.bin")).expect("open_write");
    during_writer.write_all(&during[..100 * KIB]).unwrap();

    let abandoned_path = Path::new("abandoned.bin");
    let mut abandoned = dir.open_write(abandoned_path).expect("open_write");
    abandoned.write_all(&patterned(62, 150 * KIB)).unwrap();
    during_writer
        .write_all(&during[100 * KIB..200 * KIB])
        .unwrap();
    abandoned.get_mut().write_all(&patterned(63, 10)).unwrap();
    drop(abandoned);
    during_writer.write_all(&during[200 * KIB..]).unwrap();
    during_writer.terminate().expect("terminate");

    let after = patterned(64, 100 * KIB);
    write_file(dir, Path::new("after.bin"), &after);
    dir.atomic_write(Path::new("meta.json"), b"meta")
        .expect("atomic_write");
    dir.sync_directory().expect("sync_directory");

    // Must answer, whatever the answer is.
    let _unspecified = dir
        .exists(abandoned_path)
        .expect("exists on an abandoned path must not fail");
    check_file(dir, Path::new("before.bin"), &before);
    check_file(dir, Path::new("during.bin"), &during);
    check_file(dir, Path::new("after.bin"), &after);
    assert_eq!(dir.atomic_read(Path::new("meta.json")).unwrap(), b"meta");
}

/// Contract: hundreds of files of various small sizes coexist; each reads back its own
/// content, and deleting some leaves the others intact.
pub fn many_files(dir: &dyn Directory) {
    let count = 400u64;
    let path = |i: u64| PathBuf::from(format!("f{i}.idx"));
    let content = |i: u64| patterned(1000 + i, ((i * 37) % 2100) as usize);
    for i in 0..count {
        write_file(dir, &path(i), &content(i));
    }
    for i in 0..count {
        check_file(dir, &path(i), &content(i));
    }
    for i in (0..count).step_by(3) {
        dir.delete(&path(i)).expect("delete");
    }
    for i in 0..count {
        if i % 3 == 0 {
            assert_exists(dir, &path(i), false, "deleted file");
        } else {
            check_file(dir, &path(i), &content(i));
        }
    }
}

// ---------------------------------------------------------------------------------
// atomic_write / atomic_read
// ---------------------------------------------------------------------------------

/// Contract: `atomic_read` returns exactly what `atomic_write` wrote, small or large,
/// and the file then exists.
pub fn atomic_write_read_back(dir: &dyn Directory) {
    let path = Path::new("meta.json");
    dir.atomic_write(path, b"hello").expect("atomic_write");
    assert_exists(dir, path, true, "after atomic_write");
    assert_eq!(dir.atomic_read(path).expect("atomic_read"), b"hello");

    let other = Path::new("large.json");
    let large = patterned(5, 300 * KIB + 1);
    dir.atomic_write(other, &large).expect("atomic_write");
    assert_bytes_eq(
        &dir.atomic_read(other).unwrap(),
        &large,
        "large atomic file",
    );
    assert_eq!(dir.atomic_read(path).unwrap(), b"hello");
}

/// Contract: a second `atomic_write` replaces the content entirely (shorter content
/// leaves no tail of the old one; longer content is complete).
pub fn atomic_overwrite_replaces(dir: &dyn Directory) {
    let path = Path::new("meta.json");
    let versions = [
        patterned(10, 10_000),
        b"abc".to_vec(),
        patterned(11, 50_000),
        patterned(12, 9_999),
    ];
    for (i, version) in versions.iter().enumerate() {
        dir.atomic_write(path, version).expect("atomic_write");
        assert_bytes_eq(
            &dir.atomic_read(path).expect("atomic_read"),
            version,
            &format!("atomic_read after overwrite {i}"),
        );
    }
}

/// Contract: `atomic_read` of a missing path fails with `OpenReadError::FileDoesNotExist`.
pub fn atomic_read_missing(dir: &dyn Directory) {
    let path = Path::new("meta.json");
    assert_read_missing(dir.atomic_read(path), path, "atomic_read of a missing file");
    dir.atomic_write(Path::new("other.json"), b"x").unwrap();
    assert_read_missing(dir.atomic_read(path), path, "atomic_read of a missing file");
}

/// Contract: `atomic_write` of empty content creates an existing, empty file, also
/// when it replaces non-empty content.
pub fn atomic_write_empty(dir: &dyn Directory) {
    let path = Path::new("empty.json");
    dir.atomic_write(path, b"").expect("atomic_write");
    assert_exists(dir, path, true, "empty atomic file");
    assert_eq!(dir.atomic_read(path).expect("atomic_read"), b"");

    let other = Path::new("meta.json");
    dir.atomic_write(other, b"not empty").unwrap();
    dir.atomic_write(other, b"").unwrap();
    assert_eq!(dir.atomic_read(other).unwrap(), b"");
}

/// Contract: a file written with `atomic_write` is also readable with `open_read` and
/// `get_file_handle`, and after an overwrite a new `open_read` returns the new content.
pub fn atomic_file_readable_with_open_read(dir: &dyn Directory) {
    let path = Path::new("meta.json");
    let v1 = patterned(20, 3000);
    dir.atomic_write(path, &v1).expect("atomic_write");
    check_file(dir, path, &v1);
    let handle = dir.get_file_handle(path).expect("get_file_handle");
    assert_eq!(handle.len(), v1.len());
    assert_bytes_eq(
        handle.read_bytes(10..2000).unwrap().as_slice(),
        &v1[10..2000],
        "atomic file via FileHandle",
    );
    drop(handle);

    let v2 = patterned(21, 1234);
    dir.atomic_write(path, &v2).expect("atomic_write");
    check_file(dir, path, &v2);
}

/// Contract: slices and bytes of an atomic file opened before an overwrite keep the old
/// content; `atomic_read` returns the new one.
pub fn atomic_overwrite_keeps_open_slices(dir: &dyn Directory) {
    let path = Path::new("meta.json");
    let v1 = patterned(22, 5000);
    dir.atomic_write(path, &v1).unwrap();
    let slice = dir.open_read(path).expect("open_read");
    let bytes = slice.read_bytes().unwrap();
    let v2 = patterned(23, 7000);
    dir.atomic_write(path, &v2).unwrap();
    assert_bytes_eq(&dir.atomic_read(path).unwrap(), &v2, "atomic_read");
    assert_bytes_eq(bytes.as_slice(), &v1, "OwnedBytes read before overwrite");
    assert_bytes_eq(
        slice.read_bytes().unwrap().as_slice(),
        &v1,
        "FileSlice opened before overwrite",
    );
}

/// Contract (stricter than `MmapDirectory`): while a slice of the old content is open,
/// a new `open_read` after `atomic_write` returns the new content.
pub fn atomic_overwrite_visible_while_old_slice_open(dir: &dyn Directory) {
    let path = Path::new("meta.json");
    let v1 = patterned(24, 5000);
    dir.atomic_write(path, &v1).unwrap();
    let old = dir.open_read(path).expect("open_read");
    let v2 = patterned(25, 3000);
    dir.atomic_write(path, &v2).unwrap();
    check_file(dir, path, &v2);
    assert_bytes_eq(old.read_bytes().unwrap().as_slice(), &v1, "old FileSlice");
}

/// An atomic file content that can be validated on its own: 8-byte length, 8-byte
/// seed, then the pattern.
fn self_checking_content(seed: u64, len: usize) -> Vec<u8> {
    let mut content = Vec::with_capacity(16 + len);
    content.extend_from_slice(&(len as u64).to_le_bytes());
    content.extend_from_slice(&seed.to_le_bytes());
    content.extend(patterned(seed, len));
    content
}

#[track_caller]
fn check_self_checking_content(content: &[u8], what: &str) -> u64 {
    assert!(
        content.len() >= 16,
        "{what}: torn read, {} bytes",
        content.len()
    );
    let len = u64::from_le_bytes(content[..8].try_into().unwrap()) as usize;
    let seed = u64::from_le_bytes(content[8..16].try_into().unwrap());
    assert_eq!(content.len(), 16 + len, "{what}: torn read (length)");
    assert_bytes_eq(
        &content[16..],
        &patterned(seed, len),
        &format!("{what}: torn read"),
    );
    seed
}

/// Contract: `atomic_write` is never observed half written: concurrent readers
/// (`atomic_read` and `open_read`) always see one complete version.
pub fn atomic_write_never_observed_torn(dir: &dyn Directory) {
    let path = Path::new("meta.json");
    let mut rng = test_rng(6);
    let writes = 40u64;
    let versions: Vec<Vec<u8>> = (0..=writes)
        .map(|seed| self_checking_content(seed, rng.random_range(0..200 * KIB)))
        .collect();
    dir.atomic_write(path, &versions[0]).unwrap();
    let done = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    thread::scope(|s| {
        for reader in 0..2 {
            let (done, reads) = (&done, &reads);
            s.spawn(move || {
                let mut last_seed = 0;
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    let seed = if reader == 0 {
                        let content = dir.atomic_read(path).expect("atomic_read");
                        check_self_checking_content(&content, "atomic_read")
                    } else {
                        let content = read_file(dir, path);
                        check_self_checking_content(content.as_slice(), "open_read")
                    };
                    assert!(seed <= writes, "unknown version {seed}");
                    if reader == 0 {
                        assert!(seed >= last_seed, "atomic_read went back in time");
                    }
                    last_seed = seed;
                    reads.fetch_add(1, Ordering::SeqCst);
                    if finished {
                        break;
                    }
                }
            });
        }
        for version in &versions[1..] {
            dir.atomic_write(path, version).expect("atomic_write");
        }
        done.store(true, Ordering::SeqCst);
    });
    assert!(reads.load(Ordering::SeqCst) >= 2);
    assert_bytes_eq(
        &dir.atomic_read(path).unwrap(),
        &versions[writes as usize],
        "final version",
    );
}

// ---------------------------------------------------------------------------------
// Locks
// ---------------------------------------------------------------------------------

/// Contract: a non-blocking lock fails with `LockBusy` while held (other lock names are
/// independent) and succeeds once the holder is dropped (as tantivy's test).
pub fn lock_non_blocking(dir: &dyn Directory) {
    {
        let lock_a = dir.acquire_lock(&lock("a.lock", false));
        assert!(
            lock_a.is_ok(),
            "first acquire of a.lock: {:?}",
            lock_a.err()
        );
        let lock_b = dir.acquire_lock(&lock("b.lock", false));
        assert!(lock_b.is_ok(), "b.lock is independent: {:?}", lock_b.err());
        match dir.acquire_lock(&lock("a.lock", false)).map(drop) {
            Err(LockError::LockBusy) => {}
            other => panic!("second acquire of a.lock: expected LockBusy, got {other:?}"),
        }
    }
    let lock_a = dir.acquire_lock(&lock("a.lock", false));
    assert!(lock_a.is_ok(), "a.lock after release: {:?}", lock_a.err());
}

/// Contract: a blocking lock waits until the holder (in another thread) releases it;
/// meanwhile a non-blocking attempt fails (as tantivy's test).
pub fn lock_blocking(dir: &dyn Directory) {
    let lock_a = dir
        .acquire_lock(&lock("a.lock", true))
        .expect("blocking acquire of a free lock");
    let in_thread = Arc::new(AtomicBool::new(false));
    let in_thread_clone = in_thread.clone();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = thread::spawn(move || {
        in_thread_clone.store(true, Ordering::SeqCst);
        let _ = release_rx.recv();
        drop(lock_a);
    });
    match dir.acquire_lock(&lock("a.lock", false)).map(drop) {
        Err(LockError::LockBusy) => {}
        other => panic!("non-blocking acquire of a held lock: expected LockBusy, got {other:?}"),
    }
    let dir_clone = dir.box_clone();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let waiter = thread::spawn(move || {
        started_tx.send(()).unwrap();
        let lock_a = dir_clone.acquire_lock(&lock("a.lock", true));
        assert!(in_thread.load(Ordering::SeqCst));
        assert!(lock_a.is_ok(), "blocking acquire: {:?}", lock_a.err());
    });
    started_rx.recv().unwrap();
    release_tx.send(()).unwrap();
    holder.join().expect("holder thread");
    waiter.join().expect("blocking acquire after release");
}

/// Contract: a lock released by dropping its guard (in the same or another thread)
/// can be re-acquired, blocking or not, also through a `box_clone`, which shares the
/// lock state.
pub fn lock_reacquire_after_drop(dir: &dyn Directory) {
    let clone = dir.box_clone();
    for round in 0..3 {
        let guard = dir
            .acquire_lock(&lock("writer.lock", false))
            .unwrap_or_else(|e| panic!("round {round}: acquire: {e:?}"));
        match clone.acquire_lock(&lock("writer.lock", false)).map(drop) {
            Err(LockError::LockBusy) => {}
            other => panic!("round {round}: a box_clone sees the lock: got {other:?}"),
        }
        drop(guard);
    }
    let guard = clone
        .acquire_lock(&lock("writer.lock", true))
        .expect("blocking acquire after release");
    // Dropped in another thread.
    thread::spawn(move || drop(guard)).join().unwrap();
    let guard = dir
        .acquire_lock(&lock("writer.lock", false))
        .expect("acquire after release in another thread");
    drop(guard);
    let guard = dir
        .acquire_lock(&lock("writer.lock", true))
        .expect("blocking acquire after release");
    drop(guard);
    dir.acquire_lock(&lock("writer.lock", false))
        .expect("acquire after blocking release");
}

// ---------------------------------------------------------------------------------
// Watch
// ---------------------------------------------------------------------------------

/// Contract: each `atomic_write` of `meta.json` fires every live watch callback exactly
/// once (callbacks do not replace each other; other files do not fire), and a callback
/// stops firing once its `WatchHandle` is dropped (as tantivy's `test_watch`).
///
/// Each write has new content: `MmapDirectory` compares checksums.
pub fn watch(dir: &dyn Directory) {
    let meta = Path::new("meta.json");
    let counter1 = Arc::new(AtomicUsize::new(0));
    let counter2 = Arc::new(AtomicUsize::new(0));
    let (tx1, rx1) = mpsc::channel::<usize>();
    let (tx2, rx2) = mpsc::channel::<usize>();
    let handle1 = dir
        .watch(WatchCallback::new(move || {
            let _ = tx1.send(counter1.fetch_add(1, Ordering::SeqCst) + 1);
        }))
        .expect("watch");
    let handle2 = dir
        .watch(WatchCallback::new(move || {
            let _ = tx2.send(counter2.fetch_add(1, Ordering::SeqCst) + 1);
        }))
        .expect("watch");

    dir.atomic_write(meta, b"foo").expect("atomic_write");
    assert_eq!(
        rx1.recv_timeout(POSITIVE_WAIT),
        Ok(1),
        "callback 1, write 1"
    );
    assert_eq!(
        rx2.recv_timeout(POSITIVE_WAIT),
        Ok(1),
        "callback 2, write 1"
    );

    dir.atomic_write(Path::new("other.json"), b"other")
        .expect("atomic_write");
    dir.atomic_write(meta, b"bar").expect("atomic_write");
    assert_eq!(
        rx1.recv_timeout(POSITIVE_WAIT),
        Ok(2),
        "callback 1, write 2"
    );
    assert_eq!(
        rx2.recv_timeout(POSITIVE_WAIT),
        Ok(2),
        "callback 2, write 2"
    );

    drop(handle1);
    dir.atomic_write(meta, b"qux").expect("atomic_write");
    assert_eq!(
        rx2.recv_timeout(POSITIVE_WAIT),
        Ok(3),
        "callback 2, write 3"
    );
    assert!(
        rx1.recv_timeout(NEGATIVE_WAIT).is_err(),
        "callback 1 fired after its handle was dropped"
    );
    assert!(
        rx2.try_recv().is_err(),
        "callback 2 fired more than once per meta.json write"
    );

    drop(handle2);
    dir.atomic_write(meta, b"quux").expect("atomic_write");
    assert!(
        rx2.recv_timeout(NEGATIVE_WAIT).is_err(),
        "callback 2 fired after its handle was dropped"
    );
}

// ---------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------

fn concurrent_size(thread: u64, file: u64, rng: &mut StdRng) -> usize {
    match (thread + file) % 5 {
        0 => rng.random_range(0..64),
        1 => rng.random_range(64..8 * KIB),
        2 => rng.random_range(8 * KIB..200 * KIB),
        3 => MIB - 2 + rng.random_range(0..5),
        _ => rng.random_range(0..600 * KIB),
    }
}

/// Contract: 8 threads each writing 20 files of varied size concurrently (half of them
/// through a `box_clone`), reading each back and deleting some, leave every file
/// correct, and deleted files gone.
pub fn concurrent_writers(dir: &dyn Directory) {
    let threads = 8u64;
    let files = 20u64;
    let path = |t: u64, f: u64| PathBuf::from(format!("t{t}_f{f}.bin"));
    let contents: Vec<Vec<Vec<u8>>> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let clone = dir.box_clone();
                s.spawn(move || {
                    let dir: &dyn Directory = if t % 2 == 0 { dir } else { &*clone };
                    let mut rng = test_rng(100 + t);
                    let mut contents = Vec::new();
                    for f in 0..files {
                        let len = concurrent_size(t, f, &mut rng);
                        let data = patterned(t * 1000 + f, len);
                        write_file_chunked(dir, &path(t, f), &data, &mut rng);
                        check_file(dir, &path(t, f), &data);
                        contents.push(data);
                    }
                    for f in (1..files).step_by(2) {
                        dir.delete(&path(t, f)).expect("delete");
                    }
                    contents
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect()
    });
    for t in 0..threads {
        for f in 0..files {
            if f % 2 == 1 {
                assert_exists(dir, &path(t, f), false, "deleted by its thread");
            } else {
                check_file(dir, &path(t, f), &contents[t as usize][f as usize]);
            }
        }
    }
}

/// Contract: reader threads reading (whole files, sub-ranges, an atomic file) while
/// writer threads write other files always see correct content; afterwards every
/// file is correct.
pub fn readers_while_writing(dir: &dyn Directory) {
    let mut rng = test_rng(7);
    let stable: Vec<(PathBuf, Vec<u8>)> = (0..10u64)
        .map(|i| {
            let len = match i % 3 {
                0 => rng.random_range(0..KIB),
                1 => rng.random_range(KIB..300 * KIB),
                _ => rng.random_range(MIB..2 * MIB),
            };
            (
                PathBuf::from(format!("stable{i}.bin")),
                patterned(200 + i, len),
            )
        })
        .collect();
    for (path, data) in &stable {
        write_file_chunked(dir, path, data, &mut rng);
    }
    let meta = Path::new("meta.json");
    let meta_content = patterned(300, 2000);
    dir.atomic_write(meta, &meta_content).unwrap();

    let writers = 4u64;
    let writers_done = AtomicUsize::new(0);
    let written: Vec<Vec<(PathBuf, Vec<u8>)>> = thread::scope(|s| {
        for r in 0..3u64 {
            let (stable, writers_done, meta_content) = (&stable, &writers_done, &meta_content);
            s.spawn(move || {
                let mut rng = test_rng(400 + r);
                let mut passes = 0;
                loop {
                    let finished = writers_done.load(Ordering::SeqCst) == writers as usize;
                    for (path, data) in stable {
                        assert_exists(dir, path, true, "stable file");
                        let slice = dir.open_read(path).expect("open_read");
                        assert_eq!(slice.len(), data.len());
                        let start = rng.random_range(0..=data.len());
                        let end = rng.random_range(start..=data.len());
                        check_range(&slice, data, start..end, "stable file");
                        if passes % 4 == 0 {
                            check_file(dir, path, data);
                        }
                    }
                    assert_bytes_eq(
                        &dir.atomic_read(meta).expect("atomic_read"),
                        meta_content,
                        "meta.json",
                    );
                    passes += 1;
                    if finished && passes >= 3 {
                        break;
                    }
                }
            });
        }
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let writers_done = &writers_done;
                s.spawn(move || {
                    let mut rng = test_rng(500 + w);
                    let mut out = Vec::new();
                    for f in 0..10u64 {
                        let path = PathBuf::from(format!("w{w}_f{f}.bin"));
                        let len = concurrent_size(w, f, &mut rng);
                        let data = patterned(600 + w * 100 + f, len);
                        write_file_chunked(dir, &path, &data, &mut rng);
                        out.push((path, data));
                    }
                    writers_done.fetch_add(1, Ordering::SeqCst);
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect()
    });
    for (path, data) in stable.iter().chain(written.iter().flatten()) {
        check_file(dir, path, data);
    }
}

// ---------------------------------------------------------------------------------
// Durability API, existence, clones
// ---------------------------------------------------------------------------------

/// Contract: `sync_directory` succeeds (on an empty directory, after writes, atomic
/// writes and deletes) and files stay readable afterwards.
pub fn sync_directory_after_writes(dir: &dyn Directory) {
    dir.sync_directory()
        .expect("sync_directory on an empty directory");
    let mut rng = test_rng(8);
    let files: Vec<(PathBuf, Vec<u8>)> = (0..5u64)
        .map(|i| {
            let data = patterned(700 + i, rng.random_range(0..400 * KIB));
            (PathBuf::from(format!("synced{i}.bin")), data)
        })
        .collect();
    for (path, data) in &files {
        write_file_chunked(dir, path, data, &mut rng);
    }
    dir.atomic_write(Path::new("meta.json"), b"synced").unwrap();
    dir.sync_directory().expect("sync_directory after writes");
    for (path, data) in &files {
        check_file(dir, path, data);
    }
    dir.delete(&files[0].0).unwrap();
    let late = patterned(799, 12_345);
    write_file(dir, Path::new("late.bin"), &late);
    dir.sync_directory().expect("sync_directory after a delete");
    dir.sync_directory().expect("sync_directory twice");
    assert_exists(dir, &files[0].0, false, "deleted before sync");
    for (path, data) in &files[1..] {
        check_file(dir, path, data);
    }
    check_file(dir, Path::new("late.bin"), &late);
    assert_eq!(dir.atomic_read(Path::new("meta.json")).unwrap(), b"synced");
}

/// Contract: `exists` is true for in-progress (before and after writes), terminated,
/// zero-length and atomic files, and false for missing and deleted ones.
pub fn exists_for_all_kinds(dir: &dyn Directory) {
    let in_progress = Path::new("in_progress.bin");
    let mut writer = dir.open_write(in_progress).expect("open_write");
    assert_exists(dir, in_progress, true, "in-progress file before any write");
    writer.write_all(&patterned(9, 100 * KIB)).unwrap();
    writer.flush().unwrap();
    assert_exists(dir, in_progress, true, "in-progress file after writes");

    let terminated = Path::new("terminated.bin");
    write_file(dir, terminated, b"done");
    let empty = Path::new("empty.bin");
    write_file(dir, empty, b"");
    let atomic = Path::new("meta.json");
    dir.atomic_write(atomic, b"{}").unwrap();
    let deleted = Path::new("deleted.bin");
    write_file(dir, deleted, b"gone");
    dir.delete(deleted).unwrap();

    assert_exists(dir, in_progress, true, "in-progress file");
    assert_exists(dir, terminated, true, "terminated file");
    assert_exists(dir, empty, true, "zero-length file");
    assert_exists(dir, atomic, true, "atomic file");
    assert_exists(dir, deleted, false, "deleted file");
    assert_exists(dir, Path::new("never.bin"), false, "missing file");

    writer.terminate().expect("terminate");
    assert_exists(dir, in_progress, true, "terminated after the others");
}

/// Contract: a `box_clone` is the same directory: writes, atomic writes, deletes and
/// in-progress files through one are seen through the other.
pub fn box_clone_shares_state(dir: &dyn Directory) {
    let clone = dir.box_clone();
    let a = Path::new("a.bin");
    write_file(&*clone, a, b"via clone");
    check_file(dir, a, b"via clone");

    let meta = Path::new("meta.json");
    dir.atomic_write(meta, b"via original").unwrap();
    assert_eq!(clone.atomic_read(meta).unwrap(), b"via original");

    let b = Path::new("b.bin");
    let writer = dir.open_write(b).expect("open_write");
    assert_exists(&*clone, b, true, "in-progress file seen through the clone");
    assert_already_exists(clone.open_write(b), b, "open_write through the clone");
    writer.terminate().unwrap();

    clone.delete(a).expect("delete through the clone");
    assert_exists(dir, a, false, "deleted through the clone");
    assert_read_missing(dir.open_read(a), a, "open_read of a file deleted via clone");

    // A clone outlives the original handle.
    let clone2 = clone.box_clone();
    drop(clone);
    check_file(&*clone2, b, b"");
    assert_eq!(clone2.atomic_read(meta).unwrap(), b"via original");
}

impl fmt::Debug for TestDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDirectory")
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}
