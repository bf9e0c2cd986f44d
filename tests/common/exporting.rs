//! A `Directory` wrapper that exports and reclaims constantly, to run the contract
//! suite with reads served from segment files while reclamation removes and
//! rewrites container and segment files under open slices.
//!
//! After every `sync_directory`, `atomic_write` and `delete` it delegates (whatever
//! the delegated call returned), [`Exporting`] exports every file `list_files()`
//! reports (files still being written, already exported or gone are skipped by
//! `export_files`) and then runs one `reclaim()` pass. A failure of either is
//! returned as an io error, and takes precedence over the delegated call's own
//! error so that it cannot go unnoticed.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use jocky::JockyDirectory;
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    DirectoryLock, FileHandle, FileSlice, Lock, WatchCallback, WatchHandle, WritePtr,
};
use tantivy::Directory;

/// See the module doc. Clones share the inner directory and the counters.
#[derive(Clone, Debug)]
pub struct Exporting {
    inner: JockyDirectory,
    counters: Arc<Counters>,
}

/// What the wrapper's maintenance passes did, summed over all clones.
#[derive(Debug, Default)]
pub struct Counters {
    /// Maintenance passes run (one per delegated sync, atomic write or delete).
    pub passes: AtomicU64,
    /// Files moved into segment files by those passes.
    pub files_exported: AtomicU64,
    /// Container and segment files removed by those passes.
    pub files_reclaimed: AtomicU64,
}

impl Exporting {
    pub fn new(inner: JockyDirectory) -> Exporting {
        Exporting {
            inner,
            counters: Arc::default(),
        }
    }

    pub fn inner(&self) -> &JockyDirectory {
        &self.inner
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Exports every file of the directory (skipped ones are fine) and reclaims.
    pub fn maintain(&self) -> io::Result<()> {
        let files = self.inner.list_files();
        let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
        let export = self.inner.export_files(&paths)?;
        let reclaim = self.inner.reclaim()?;
        let c = &self.counters;
        c.passes.fetch_add(1, Ordering::Relaxed);
        c.files_exported
            .fetch_add(export.files as u64, Ordering::Relaxed);
        c.files_reclaimed.fetch_add(
            (reclaim.container_files_removed + reclaim.segment_files_removed) as u64,
            Ordering::Relaxed,
        );
        Ok(())
    }
}

impl Directory for Exporting {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        self.inner.get_file_handle(path)
    }

    fn open_read(&self, path: &Path) -> Result<FileSlice, OpenReadError> {
        self.inner.open_read(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        let result = self.inner.delete(path);
        self.maintain().map_err(|e| DeleteError::IoError {
            io_error: Arc::new(e),
            filepath: path.to_path_buf(),
        })?;
        result
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        self.inner.open_write(path)
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.inner.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let result = self.inner.atomic_write(path, data);
        self.maintain()?;
        result
    }

    fn sync_directory(&self) -> io::Result<()> {
        let result = self.inner.sync_directory();
        self.maintain()?;
        result
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.inner.acquire_lock(lock)
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
    }
}
