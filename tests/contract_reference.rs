//! Proves the contract suite (`tests/common/contract.rs`) against tantivy's own
//! directories, and shows that it fails on directories that break a contract.

mod common;

use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use common::contract::{self, TestDirectory, MIB};
use tantivy::directory::error::{DeleteError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    FileHandle, MmapDirectory, OwnedBytes, RamDirectory, WatchCallback, WatchHandle, WritePtr,
};
use tantivy::{Directory, HasLen};

/// A `MmapDirectory` in a fresh temporary directory, removed when the test ends.
fn mmap_directory() -> TestDirectory {
    let tmp = tempfile::TempDir::new().expect("temp dir");
    let dir = MmapDirectory::open(tmp.path()).expect("MmapDirectory::open");
    TestDirectory::with_guard(dir, tmp)
}

/// The whole suite, on `RamDirectory`.
mod ram {
    use super::*;

    crate::contract_tests!(RamDirectory::create());
}

/// The whole suite except the path-reuse contracts, on `MmapDirectory`.
mod mmap {
    use super::*;

    crate::contract_tests!(mmap_directory(); without_path_reuse);

    // `MmapDirectory` caches mappings by path: while an old mapping is alive,
    // `open_read` of the path returns it, even after delete or atomic_write. The
    // strict contracts catch this (which shows they can fail).

    #[test]
    #[should_panic(expected = "expected OpenReadError::FileDoesNotExist, got Ok")]
    fn reuse_path_while_old_slice_open_fails() {
        contract::reuse_path_while_old_slice_open(&*mmap_directory());
    }

    #[test]
    #[should_panic(expected = "length of \"meta.json\"")]
    fn atomic_overwrite_visible_while_old_slice_open_fails() {
        contract::atomic_overwrite_visible_while_old_slice_open(&*mmap_directory());
    }
}

/// The `(Box<dyn Directory>, guard)` and `Box<dyn Directory>` fixture forms.
mod fixture_forms {
    use super::*;

    fn tuple() -> (Box<dyn Directory>, tempfile::TempDir) {
        let tmp = tempfile::TempDir::new().unwrap();
        let dir = MmapDirectory::open(tmp.path()).unwrap();
        (Box::new(dir), tmp)
    }

    #[test]
    fn tuple_fixture() {
        let fixture = TestDirectory::from(tuple());
        contract::simple_write_read(&*fixture);
    }

    #[test]
    fn boxed_fixture() {
        let boxed: Box<dyn Directory> = Box::new(RamDirectory::create());
        let fixture = TestDirectory::from(boxed);
        contract::simple_write_read(&*fixture);
    }
}

// ---------------------------------------------------------------------------------
// Broken directories: the suite must catch them.
// ---------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// `open_write` on an existing path silently replaces it.
    AllowOverwrite,
    /// Reads return a wrong byte at offset 1 MiB + 17.
    CorruptAfterOneMib,
    /// `exists` is false for files still being written.
    ForgetInProgress,
    /// `delete` of a missing file succeeds.
    LenientDelete,
}

/// A `RamDirectory` with one injected fault.
#[derive(Clone, Debug)]
struct Faulty {
    inner: RamDirectory,
    fault: Fault,
}

fn faulty(fault: Fault) -> TestDirectory {
    TestDirectory::new(Faulty {
        inner: RamDirectory::create(),
        fault,
    })
}

#[derive(Debug)]
struct CorruptingHandle(Arc<dyn FileHandle>);

const CORRUPT_OFFSET: usize = MIB + 17;

impl HasLen for CorruptingHandle {
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl FileHandle for CorruptingHandle {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        let bytes = self.0.read_bytes(range.clone())?;
        if !range.contains(&CORRUPT_OFFSET) {
            return Ok(bytes);
        }
        let mut copy = bytes.as_slice().to_vec();
        copy[CORRUPT_OFFSET - range.start] ^= 1;
        Ok(OwnedBytes::new(copy))
    }
}

impl Directory for Faulty {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        let handle = self.inner.get_file_handle(path)?;
        match self.fault {
            Fault::CorruptAfterOneMib => Ok(Arc::new(CorruptingHandle(handle))),
            _ => Ok(handle),
        }
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        match (self.fault, self.inner.delete(path)) {
            (Fault::LenientDelete, Err(DeleteError::FileDoesNotExist(_))) => Ok(()),
            (_, result) => result,
        }
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        match self.fault {
            Fault::ForgetInProgress => Ok(self.inner.open_read(path).is_ok()),
            _ => self.inner.exists(path),
        }
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        if let Fault::AllowOverwrite = self.fault {
            let _ = self.inner.delete(path);
        }
        self.inner.open_write(path)
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.inner.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.inner.atomic_write(path, data)
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.inner.sync_directory()
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
    }
}

mod faults_are_caught {
    use super::*;

    #[test]
    fn faulty_wrapper_is_otherwise_sound() {
        // The wrapper itself is sound: the faults below are what the suite catches.
        let dir = faulty(Fault::AllowOverwrite);
        contract::large_file_random_ranges(&*dir);
        contract::exists_for_all_kinds(&*faulty(Fault::CorruptAfterOneMib));
    }

    #[test]
    #[should_panic(expected = "expected OpenWriteError::FileAlreadyExists, got Ok")]
    fn overwrite_is_caught_by_rewrite_forbidden() {
        contract::rewrite_forbidden(&*faulty(Fault::AllowOverwrite));
    }

    #[test]
    #[should_panic(expected = "expected LockBusy")]
    fn overwrite_is_caught_by_lock_non_blocking() {
        contract::lock_non_blocking(&*faulty(Fault::AllowOverwrite));
    }

    #[test]
    #[should_panic(expected = "content differs")]
    fn corruption_is_caught_by_large_file_random_ranges() {
        contract::large_file_random_ranges(&*faulty(Fault::CorruptAfterOneMib));
    }

    #[test]
    #[should_panic(expected = "content differs")]
    fn corruption_is_caught_by_interleaved_writers() {
        contract::interleaved_writers(&*faulty(Fault::CorruptAfterOneMib));
    }

    #[test]
    #[should_panic(expected = "right after open_write, before terminate")]
    fn forgotten_in_progress_is_caught_by_write_create_the_file() {
        contract::write_create_the_file(&*faulty(Fault::ForgetInProgress));
    }

    #[test]
    #[should_panic(expected = "in-progress file before any write")]
    fn forgotten_in_progress_is_caught_by_exists_for_all_kinds() {
        contract::exists_for_all_kinds(&*faulty(Fault::ForgetInProgress));
    }

    #[test]
    #[should_panic(expected = "expected DeleteError::FileDoesNotExist, got Ok")]
    fn lenient_delete_is_caught_by_delete_missing() {
        contract::delete_missing(&*faulty(Fault::LenientDelete));
    }
}
