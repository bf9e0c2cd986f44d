//! The shared contract suite (tests/common/contract.rs) run against
//! `JockyDirectory` in every configuration: default options (direct I/O) on a
//! real folder; tiny container files and write buffers (files span many extents
//! and container files, reads cross them); direct I/O and buffered writes through
//! a small write queue on a real folder, direct I/O on the simulated storage
//! (which refuses misaligned writes); inline writes; the simulated storage; tenant "b" of a `Store` whose
//! neighbour tenant "a" holds files, atomic files, locks and a watch under the
//! names the contract functions use; and, behind `common::exporting::Exporting`
//! (every file exported into segment files and space reclaimed after every sync,
//! atomic write and delete; tiny containers, manual export), a real folder, the
//! simulated storage and a store tenant.

mod common;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::contract::{self, patterned, TestDirectory};
use common::exporting::Exporting;
use jocky::testing::SimStorage;
use jocky::{Builder, ExportPolicy, JockyDirectory, Store, WriteMode};
use tantivy::directory::{
    DirectoryLock, FileSlice, Lock, OwnedBytes, TerminatingWrite, WatchCallback, WatchHandle,
};
use tantivy::Directory;

fn default_fs() -> TestDirectory {
    let tmp = tempfile::TempDir::new().unwrap();
    TestDirectory::with_guard(JockyDirectory::open(tmp.path()).unwrap(), tmp)
}

/// Tiny container files and write buffers.
fn tiny(builder: Builder) -> Builder {
    builder
        .container_file_size(1 << 20)
        .preallocate(128 << 10)
        .write_buffer(1 << 10, 16 << 10)
}

/// Tiny containers, and export and reclamation only when asked (by `Exporting`).
fn tiny_manual(builder: Builder) -> Builder {
    tiny(builder).export_policy(ExportPolicy::Manual)
}

fn tiny_containers() -> TestDirectory {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tiny(JockyDirectory::builder(tmp.path())).open().unwrap();
    TestDirectory::with_guard(dir, tmp)
}

/// Tiny containers written with direct I/O through a small write queue (four
/// 64 KiB buffers: appends wait for buffers, stages carry partial blocks).
fn direct_io() -> TestDirectory {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tiny(JockyDirectory::builder(tmp.path()))
        .write_mode(WriteMode::Direct)
        .write_queue(256 << 10)
        .open()
        .unwrap();
    TestDirectory::with_guard(dir, tmp)
}

/// Tiny containers, buffered writes through a small write queue.
fn buffered_io() -> TestDirectory {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tiny(JockyDirectory::builder(tmp.path()))
        .write_mode(WriteMode::Buffered)
        .write_queue(256 << 10)
        .open()
        .unwrap();
    TestDirectory::with_guard(dir, tmp)
}

/// Tiny containers and small page-multiple chunks: files of many page-aligned
/// chunks, spread over several container files, read through stitched mappings.
fn stitched() -> TestDirectory {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = JockyDirectory::builder(tmp.path())
        .container_file_size(1 << 20)
        .preallocate(128 << 10)
        .write_buffer(4 << 10, 16 << 10)
        .write_queue(256 << 10)
        .open()
        .unwrap();
    TestDirectory::with_guard(dir, tmp)
}

/// Tiny containers written by each append itself (no writer thread).
fn inline_writes() -> TestDirectory {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tiny(JockyDirectory::builder(tmp.path()))
        .write_mode(WriteMode::Inline)
        .open()
        .unwrap();
    TestDirectory::with_guard(dir, tmp)
}

/// Direct I/O on the simulated storage, which refuses (EINVAL) any write whose
/// offset, length or buffer is not aligned, as `O_DIRECT` does.
fn sim_direct_io() -> TestDirectory {
    let dir = tiny(JockyDirectory::builder("/sim"))
        .storage(Arc::new(SimStorage::new()))
        .write_mode(WriteMode::Direct)
        .write_queue(256 << 10)
        .open()
        .unwrap();
    TestDirectory::new(dir)
}

fn simulated() -> TestDirectory {
    let dir = JockyDirectory::builder("/sim")
        .storage(Arc::new(SimStorage::new()))
        .container_file_size(4 << 20)
        .open()
        .unwrap();
    TestDirectory::new(dir)
}

/// Tiny containers on a real folder, behind `Exporting`: reads come from segment
/// files, and reclamation runs after every sync, atomic write and delete.
fn exporting_fs() -> (Exporting, tempfile::TempDir) {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tiny_manual(JockyDirectory::builder(tmp.path()))
        .open()
        .unwrap();
    (Exporting::new(dir), tmp)
}

fn after_export() -> TestDirectory {
    let (dir, tmp) = exporting_fs();
    TestDirectory::with_guard(dir, tmp)
}

/// `Exporting` over tiny containers on simulated storage.
fn sim_after_export() -> TestDirectory {
    let dir = tiny_manual(JockyDirectory::builder("/sim"))
        .storage(Arc::new(SimStorage::new()))
        .open()
        .unwrap();
    TestDirectory::new(Exporting::new(dir))
}

/// Segments built in place: every `<name>.<ext>` file is a file of segment
/// `<name>`, whose bytes past the first 8 KiB its files wrote go into a
/// segment file being built; page-multiple chunks, tiny containers.
fn built(builder: Builder) -> Builder {
    builder
        .container_file_size(1 << 20)
        .preallocate(128 << 10)
        .write_buffer(4 << 10, 16 << 10)
        .build_any_file_in_place(8 << 10)
}

fn fs_built() -> TestDirectory {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = built(JockyDirectory::builder(tmp.path())).open().unwrap();
    TestDirectory::with_guard(dir, tmp)
}

fn sim_built() -> TestDirectory {
    let dir = built(JockyDirectory::builder("/sim"))
        .storage(Arc::new(SimStorage::new()))
        .open()
        .unwrap();
    TestDirectory::new(dir)
}

/// Built in place behind `Exporting`: segments finished in their own file
/// (or copied, where a group spans several), reclaimed under open slices.
fn fs_built_after_export() -> TestDirectory {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = built(JockyDirectory::builder(tmp.path()))
        .export_policy(ExportPolicy::Manual)
        .open()
        .unwrap();
    TestDirectory::with_guard(Exporting::new(dir), tmp)
}

// ---------------------------------------------------------------------------------
// The neighbour tenant
// ---------------------------------------------------------------------------------

/// Tenant "a" of a store, filled before tenant "b" is handed to a contract
/// function: files under the names the contract functions use (different
/// content), atomic files, held locks, a watch, and open slices of its files.
/// [`Neighbour::check`] asserts all of it is untouched.
struct Neighbour {
    store: Store,
    dir: JockyDirectory,
    files: Vec<(PathBuf, Vec<u8>)>,
    atomic: Vec<(PathBuf, Vec<u8>)>,
    open: Vec<(FileSlice, OwnedBytes)>,
    watch_fired: Arc<AtomicUsize>,
    _watch: WatchHandle,
    _locks: Vec<DirectoryLock>,
}

/// The names the contract functions use (and a few near-miss names they expect
/// to be missing).
fn neighbour_file_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "some_path_for_test",
        "doomed.bin",
        "SomeOtherPath",
        "present",
        "missing.idx",
        "abcd.idx",
        "abc",
        "abcd",
        "bcd.idx",
        "reused.bin",
        "empty.bin",
        "empty_flushed.bin",
        "full.bin",
        "buffered.bin",
        "unbuffered.bin",
        "large.bin",
        "first.bin",
        "before.bin",
        "during.bin",
        "abandoned.bin",
        "after.bin",
        "late.bin",
        "in_progress.bin",
        "terminated.bin",
        "deleted.bin",
        "never.bin",
        "a.bin",
        "b.bin",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..3 {
        for pattern in [
            "other{}.bin",
            "later{}.bin",
            "interleaved{}.bin",
            "f{}.idx",
            "t{}_f0.bin",
            "t0_f{}.bin",
            "stable{}.bin",
            "w{}_f1.bin",
            "synced{}.bin",
        ] {
            names.push(pattern.replace("{}", &i.to_string()));
        }
    }
    names.sort();
    names.dedup();
    names
}

const NEIGHBOUR_ATOMIC: &[&str] = &[
    "meta.json",
    "atomic.json",
    "other.json",
    "large.json",
    "empty.json",
];
const NEIGHBOUR_LOCKS: &[&str] = &["a.lock", "b.lock", "writer.lock"];

impl Neighbour {
    fn fill(store: Store) -> Neighbour {
        let dir = store.directory("a").unwrap();
        let mut files = Vec::new();
        for (i, name) in neighbour_file_names().into_iter().enumerate() {
            // Sizes from empty to 24 KiB, about 700 KiB in all: with tiny
            // containers, the first container file holds all of them and the
            // first of "b"'s bytes; once those are exported or deleted, reclaiming
            // it copies "a"'s files forward.
            let len = match i % 4 {
                0 => i,
                1 => 3000 + i * 17,
                2 => 10_000 + i * 131,
                _ => 12 << 10,
            };
            let data = patterned(90_000 + i as u64, len);
            let mut w = dir.open_write(Path::new(&name)).unwrap();
            w.write_all(&data).unwrap();
            w.terminate().unwrap();
            files.push((PathBuf::from(name), data));
        }
        let mut atomic = Vec::new();
        for (i, name) in NEIGHBOUR_ATOMIC.iter().enumerate() {
            let data = format!("tenant a's {name}, version {i}").into_bytes();
            dir.atomic_write(Path::new(name), &data).unwrap();
            atomic.push((PathBuf::from(name), data));
        }
        dir.sync_directory().unwrap();
        let open = files
            .iter()
            .step_by(3)
            .map(|(path, _)| {
                let slice = dir.open_read(path).unwrap();
                let bytes = slice.read_bytes().unwrap();
                (slice, bytes)
            })
            .collect();
        let watch_fired = Arc::new(AtomicUsize::new(0));
        let fired = watch_fired.clone();
        let watch = dir
            .watch(WatchCallback::new(move || {
                fired.fetch_add(1, Ordering::SeqCst);
            }))
            .unwrap();
        let locks = NEIGHBOUR_LOCKS
            .iter()
            .map(|name| {
                dir.acquire_lock(&Lock {
                    filepath: PathBuf::from(name),
                    is_blocking: false,
                })
                .unwrap()
            })
            .collect();
        Neighbour {
            store,
            dir,
            files,
            atomic,
            open,
            watch_fired,
            _watch: watch,
            _locks: locks,
        }
    }

    /// Tenant "a" is exactly as filled: same list of files, same content through
    /// fresh reads and through the slices opened before, no watch fired, locks
    /// still held.
    #[track_caller]
    fn check(&self) {
        let mut expected: Vec<PathBuf> = self
            .files
            .iter()
            .chain(&self.atomic)
            .map(|(p, _)| p.clone())
            .collect();
        expected.sort();
        assert_eq!(self.dir.list_files(), expected, "tenant a's file list");
        for (path, data) in &self.files {
            contract::check_file(&self.dir, path, data);
        }
        for (path, data) in &self.atomic {
            assert_eq!(
                self.dir.atomic_read(path).unwrap(),
                *data,
                "tenant a's {path:?}"
            );
        }
        for ((slice, bytes), (path, data)) in self.open.iter().zip(self.files.iter().step_by(3)) {
            contract::assert_bytes_eq(
                slice.read_bytes().unwrap().as_slice(),
                data,
                &format!("tenant a's slice of {path:?} opened before"),
            );
            contract::assert_bytes_eq(
                bytes.as_slice(),
                data,
                &format!("tenant a's bytes of {path:?} read before"),
            );
        }
        assert_eq!(
            self.watch_fired.load(Ordering::SeqCst),
            0,
            "tenant a's watch fired"
        );
        for name in NEIGHBOUR_LOCKS {
            let again = self.dir.acquire_lock(&Lock {
                filepath: PathBuf::from(name),
                is_blocking: false,
            });
            assert!(
                matches!(again, Err(tantivy::directory::error::LockError::LockBusy)),
                "tenant a's {name} is no longer held: {:?}",
                again.map(drop)
            );
        }
    }
}

/// A store on a temp folder with tenant "a" filled; tenant "b" plain or behind
/// `Exporting` (tiny containers, manual export).
fn tenant_b(exporting: bool) -> (Box<dyn Directory>, Neighbour, tempfile::TempDir) {
    let tmp = tempfile::TempDir::new().unwrap();
    let store = if exporting {
        tiny_manual(Store::builder(tmp.path()))
            .open_store()
            .unwrap()
    } else {
        Store::open(tmp.path()).unwrap()
    };
    let neighbour = Neighbour::fill(store);
    let b = neighbour.store.directory("b").unwrap();
    let dir: Box<dyn Directory> = if exporting {
        Box::new(Exporting::new(b))
    } else {
        Box::new(b)
    };
    (dir, neighbour, tmp)
}

fn multi_tenant() -> TestDirectory {
    let (dir, neighbour, tmp) = tenant_b(false);
    TestDirectory::with_guard(dir, (neighbour, tmp))
}

fn multi_tenant_after_export() -> TestDirectory {
    let (dir, neighbour, tmp) = tenant_b(true);
    TestDirectory::with_guard(dir, (neighbour, tmp))
}

/// Contract functions that write, overwrite, delete, lock and watch a lot, run on
/// tenant "b" before checking tenant "a".
type ContractFn = fn(&dyn Directory);

const NEIGHBOUR_CHECK_FUNCTIONS: &[(&str, ContractFn)] = &[
    (
        "delete_keeps_open_slices",
        contract::delete_keeps_open_slices,
    ),
    (
        "write_again_after_delete",
        contract::write_again_after_delete,
    ),
    (
        "slices_survive_later_writes",
        contract::slices_survive_later_writes,
    ),
    ("many_files", contract::many_files),
    (
        "atomic_overwrite_replaces",
        contract::atomic_overwrite_replaces,
    ),
    ("lock_non_blocking", contract::lock_non_blocking),
    (
        "lock_reacquire_after_drop",
        contract::lock_reacquire_after_drop,
    ),
    (
        "sync_directory_after_writes",
        contract::sync_directory_after_writes,
    ),
    ("box_clone_shares_state", contract::box_clone_shares_state),
    ("concurrent_writers", contract::concurrent_writers),
];

/// Runs each of [`NEIGHBOUR_CHECK_FUNCTIONS`] on a fresh tenant "b" and checks
/// tenant "a" after each, then deletes all of "b"'s files, runs one more pass of
/// maintenance through "b" and checks "a" again. With `exporting`, also asserts
/// that reclamation did copy "a"'s files forward in some of the runs.
fn neighbour_intact_after_contracts(exporting: bool) {
    let mut copied_forward = 0;
    for (name, function) in NEIGHBOUR_CHECK_FUNCTIONS {
        let (dir, neighbour, _tmp) = tenant_b(exporting);
        neighbour.check();
        function(&*dir);
        neighbour.check();
        let b = neighbour.store.directory("b").unwrap();
        for path in b.list_files() {
            dir.delete(&path)
                .unwrap_or_else(|e| panic!("after {name}: delete {path:?} of b: {e:?}"));
        }
        dir.sync_directory().unwrap();
        assert!(b.list_files().is_empty(), "after {name}: b's files deleted");
        neighbour.check();
        let stats = neighbour.store.stats();
        eprintln!("after {name}: {stats:?}");
        copied_forward += stats.bytes_copied_forward;
    }
    if exporting {
        assert!(copied_forward > 0, "no file was ever copied forward");
    }
}

// ---------------------------------------------------------------------------------
// Configurations
// ---------------------------------------------------------------------------------

mod fs_default {
    use super::*;
    crate::contract_tests!(default_fs());
}

mod fs_tiny_containers {
    use super::*;
    crate::contract_tests!(tiny_containers());
}

mod fs_stitched {
    use super::*;
    crate::contract_tests!(stitched());
}

mod fs_direct_io {
    use super::*;
    crate::contract_tests!(direct_io());
}

mod fs_buffered_io {
    use super::*;
    crate::contract_tests!(buffered_io());
}

mod fs_inline_writes {
    use super::*;
    crate::contract_tests!(inline_writes());
}

mod sim_direct_io {
    use super::*;
    crate::contract_tests!(sim_direct_io());
}

mod sim_storage {
    use super::*;
    crate::contract_tests!(simulated());
}

mod after_export {
    use super::*;
    crate::contract_tests!(after_export());

    /// The wrapper really exports and reclaims: a file written, terminated and
    /// synced through it is read from a segment file, with the same bytes; once
    /// deleted, its segment file goes.
    #[test]
    fn wrapper_exports_and_reclaims() {
        let (dir, _tmp) = exporting_fs();
        let data = patterned(42, 300 << 10);
        contract::write_file(&dir, Path::new("x.bin"), &data);
        assert_eq!(dir.inner().stats().segment_files, 0, "before sync");
        let before = dir.open_read(Path::new("x.bin")).unwrap();
        dir.sync_directory().unwrap();
        let stats = dir.inner().stats();
        assert!(stats.segment_files > 0, "exported on sync: {stats:?}");
        assert!(stats.bytes_exported >= data.len() as u64, "{stats:?}");
        contract::check_file(&dir, Path::new("x.bin"), &data);
        contract::assert_bytes_eq(
            before.read_bytes().unwrap().as_slice(),
            &data,
            "slice opened before the export",
        );
        assert_eq!(dir.counters().files_exported.load(Ordering::Relaxed), 1);

        dir.delete(Path::new("x.bin")).unwrap();
        drop(before);
        dir.sync_directory().unwrap();
        let stats = dir.inner().stats();
        assert_eq!(
            stats.segment_files, 0,
            "dead segment file reclaimed: {stats:?}"
        );
        assert!(stats.segment_files_removed > 0, "{stats:?}");
        assert_eq!(dir.counters().passes.load(Ordering::Relaxed), 3);
    }
}

mod fs_built_in_place {
    use super::*;
    crate::contract_tests!(fs_built());
}

mod sim_built_in_place {
    use super::*;
    crate::contract_tests!(sim_built());
}

mod built_in_place_after_export {
    use super::*;
    crate::contract_tests!(fs_built_after_export());
}

mod sim_after_export {
    use super::*;
    crate::contract_tests!(sim_after_export());
}

mod multi_tenant {
    use super::*;
    crate::contract_tests!(multi_tenant());

    #[test]
    fn neighbour_tenant_intact() {
        neighbour_intact_after_contracts(false);
    }
}

mod multi_tenant_after_export {
    use super::*;
    crate::contract_tests!(multi_tenant_after_export());

    #[test]
    fn neighbour_tenant_intact() {
        neighbour_intact_after_contracts(true);
    }
}
