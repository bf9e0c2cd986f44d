//! A storage that holds every file of a folder open from the moment it was
//! listed: for a reader beside a writer process, which may remove files (a
//! reclaimed container file, a dead segment file) while the reader's replay is
//! on its way to them. An open file stays readable after its unlink, so the
//! replay sees the folder as it was listed. The container files are opened
//! (and their lengths taken) first, the segment files after: every segment
//! file an `Export` record in that prefix of the log names was created before
//! the record, so it is pinned too, unless the writer removed it in the moment
//! between (the open then fails and is tried again). [`Pinned::unpin`] closes
//! the extra descriptors once the replay is done (mappings stay valid).

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use std::ops::Range;

use super::{ReadView, Storage, StorageFile};
use crate::format::file_header::parse_container_file_name;
use crate::sync::lock;

/// A container file as long as it was when pinned: the replay reads that
/// prefix of a log the writer keeps appending to.
#[derive(Debug)]
struct AtLength {
    inner: Arc<dyn StorageFile>,
    len: u64,
}

impl StorageFile for AtLength {
    fn len(&self) -> io::Result<u64> {
        Ok(self.len)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, buf)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.allocate(offset, len)
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn view(&self, capacity: u64) -> io::Result<Arc<dyn ReadView>> {
        self.inner.view(capacity)
    }
    fn set_direct(&self) -> io::Result<bool> {
        self.inner.set_direct()
    }
    fn mappable_len(&self) -> io::Result<Option<u64>> {
        self.inner.mappable_len()
    }
    fn start_write_back(&self, range: Range<u64>) {
        self.inner.start_write_back(range)
    }
    fn drop_cached(&self, range: Range<u64>) {
        self.inner.drop_cached(range)
    }
    fn forget_cached(&self, range: Range<u64>) {
        self.inner.forget_cached(range)
    }
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Pinned {
    inner: Arc<dyn Storage>,
    /// `None` once unpinned: everything goes to `inner`.
    pins: Mutex<Option<BTreeMap<String, Arc<dyn StorageFile>>>>,
}

impl Pinned {
    /// Lists `inner` and opens every file in it. A file removed between the
    /// listing and its open is left out, as if listed a moment later.
    pub fn pin(inner: Arc<dyn Storage>) -> io::Result<Pinned> {
        let mut pins = BTreeMap::new();
        let logs = inner
            .list()?
            .into_iter()
            .filter(|n| parse_container_file_name(n).is_some());
        for name in logs {
            match inner.open(&name) {
                Ok(f) => {
                    // The log as it is now: its length is taken here, once.
                    let len = f.len()?;
                    let f: Arc<dyn StorageFile> = Arc::new(AtLength { inner: f, len });
                    pins.insert(name, f);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        for name in inner.list()? {
            if parse_container_file_name(&name).is_some() {
                continue;
            }
            match inner.open(&name) {
                Ok(f) => {
                    pins.insert(name, f);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Pinned {
            inner,
            pins: Mutex::new(Some(pins)),
        })
    }

    /// Closes the pinned descriptors; from now on this is `inner`.
    pub fn unpin(&self) {
        lock(&self.pins).take();
    }
}

impl Storage for Pinned {
    fn list(&self) -> io::Result<Vec<String>> {
        match &*lock(&self.pins) {
            Some(p) => Ok(p.keys().cloned().collect()),
            None => self.inner.list(),
        }
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        self.inner.create(name)
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        if let Some(f) = lock(&self.pins).as_ref().and_then(|p| p.get(name)) {
            return Ok(f.clone());
        }
        self.inner.open(name)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }

    fn try_lock(&self) -> io::Result<bool> {
        self.inner.try_lock()
    }

    fn fds_held(&self) -> usize {
        self.inner.fds_held()
    }
}
