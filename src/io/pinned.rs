//! A storage that holds every file of a folder open from the moment it was
//! listed: for a reader beside a writer process, which may remove files (a
//! reclaimed container file, a dead segment file) while the reader's replay is
//! on its way to them. An open file stays readable after its unlink, so the
//! replay sees the folder as it was listed. [`Pinned::unpin`] closes the extra
//! descriptors once the replay is done (mappings made meanwhile stay valid).

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use super::{Storage, StorageFile};
use crate::sync::lock;

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
        for name in inner.list()? {
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
