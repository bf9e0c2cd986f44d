//! A store of many indexes (tenants) in one container: every tenant's files live
//! in the same container files, keyed by `(tenant, path)` in the file table. The
//! whole store holds two file descriptors and one mapping per container file,
//! whatever the number of tenants; commits of different tenants share `fdatasync`s
//! (group commit).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::directory::Owner;
use crate::directory::{stats_of, Builder, JockyDirectory, Stats, WriteOptions};
use crate::error::{Error, Result};

/// The longest tenant name, in bytes.
pub const MAX_TENANT_LEN: usize = 255;

/// Many tantivy indexes in one container. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    engine: Arc<Owner>,
    opts: Arc<WriteOptions>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.engine.container().root())
            .finish()
    }
}

fn check_tenant(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "tenant name is empty"
    } else if name.len() > MAX_TENANT_LEN {
        "tenant name is longer than 255 bytes"
    } else if name.contains('/') || name.contains('\\') {
        "tenant name contains a path separator"
    } else if name.contains('\0') {
        "tenant name contains NUL"
    } else if name == "." || name == ".." {
        "tenant name is `.` or `..`"
    } else if name.chars().any(char::is_control) {
        "tenant name contains a control character"
    } else {
        return Ok(());
    };
    Err(Error::InvalidTenant {
        name: name.chars().take(64).collect(),
        reason,
    })
}

impl Builder {
    /// Opens the folder as a store of many indexes (see [`Store`]).
    pub fn open_store(self) -> Result<Store> {
        let (engine, opts) = self.open_engine()?;
        Ok(Store::over(engine, opts))
    }
}

impl Store {
    pub(crate) fn over(engine: Arc<Owner>, opts: Arc<WriteOptions>) -> Store {
        Store { engine, opts }
    }

    /// Opens (creating if missing) the store in the folder at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        JockyDirectory::builder(path).open_store()
    }

    /// Opens the store at `path` for reading only, beside a writer process; see
    /// [`JockyDirectory::open_read_only`]. Its directories refuse writes, and
    /// [`Store::remove_tenant`] fails with [`crate::Error::ReadOnly`].
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store> {
        let engine = crate::inspect::open_engine(path.as_ref())?;
        Ok(Store::over(engine, crate::directory::read_only_options()))
    }

    /// For a store opened read-only: serves the log's current state (see
    /// [`JockyDirectory::refresh`]). Returns whether any tenant's `meta.json`
    /// changed.
    pub fn refresh(&self) -> Result<bool> {
        self.engine.refresh(self.engine.container().root())
    }

    /// Options, as for a single directory; finish with [`Builder::open_store`].
    pub fn builder(path: impl AsRef<Path>) -> Builder {
        JockyDirectory::builder(path)
    }

    /// The tantivy `Directory` of `tenant`; the tenant comes into existence with its
    /// first file. Tenant names: 1 to 255 bytes, no `/`, `\`, NUL, control
    /// characters, and not `.` or `..`.
    pub fn directory(&self, tenant: &str) -> Result<JockyDirectory> {
        check_tenant(tenant)?;
        JockyDirectory::over(self.engine.clone(), self.opts.clone(), tenant)
    }

    /// Tenants that hold at least one file, sorted.
    pub fn tenants(&self) -> Vec<String> {
        let mut t = self.engine.table().namespaces();
        t.retain(|n| !n.is_empty());
        t
    }

    /// What `tenant` holds, for quotas and dashboards: its live files and their
    /// bytes, split by where they are. Costs O(1): the table keeps these books
    /// per tenant as files change. All zero for a tenant without files.
    pub fn tenant_stats(&self, tenant: &str) -> Result<TenantStats> {
        check_tenant(tenant)?;
        let u = self.engine.table().namespace_use(tenant);
        Ok(TenantStats {
            files: u.files,
            bytes_live: u.bytes,
            bytes_in_container: u.container_bytes,
            bytes_in_segment_files: u.segment_bytes,
        })
    }

    /// Deletes every file of `tenant`, durably. Readers of the tenant that are open
    /// keep working until dropped. Returns how many files were removed (0 for an
    /// unknown tenant).
    ///
    /// The tenant's `meta.json` goes first: a read-only reader that catches the
    /// removal part-way, or an open after a crash in the middle of it, finds the
    /// tenant's last commit whole or no index at all. After such a crash the
    /// tenant's other files are still there (it is still listed by
    /// [`Store::tenants`]): remove it again.
    ///
    /// Close the tenant's `IndexWriter` with `wait_merging_threads()` first, not
    /// by dropping it: tantivy 0.27's `Drop` does not wait for a merge that is
    /// ending, and that merge's `meta.json` can be written after the drop
    /// returned — after the removal, naming files that are gone.
    pub fn remove_tenant(&self, tenant: &str) -> Result<usize> {
        check_tenant(tenant)?;
        let removed = self.engine.remove_namespace(tenant)?;
        // Its space comes back at the next reclamation pass.
        crate::export::worker::Worker::kick(self.engine.engine_arc());
        Ok(removed)
    }

    /// Exports committed segments of every tenant (see
    /// [`JockyDirectory::export_committed`]).
    pub fn export_committed(&self) -> Result<crate::ExportReport> {
        crate::export::Exporter(&self.engine).export_committed(0)
    }

    /// Removes dead container and segment files (see [`JockyDirectory::reclaim`]).
    pub fn reclaim(&self) -> Result<crate::ReclaimReport> {
        crate::reclaim::Reclaimer(&self.engine).reclaim()
    }

    /// Waits until no background pass (export, reclamation) of this store is
    /// pending, waiting for a quiet period, or under way.
    pub fn wait_for_background_work(&self) {
        self.engine.worker().wait_idle();
    }

    /// Counters of the whole store.
    pub fn stats(&self) -> Stats {
        stats_of(&self.engine)
    }
}

/// What one tenant of a [`Store`] holds ([`Store::tenant_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantStats {
    /// Live files (the files tantivy sees in the tenant's directory).
    pub files: usize,
    /// Their bytes.
    pub bytes_live: u64,
    /// Bytes of them in the container (the shared log): not exported yet,
    /// small files, and delete bitsets. Record headers and dead versions
    /// waiting for reclamation are not counted.
    pub bytes_in_container: u64,
    /// Bytes of them in exported segment files.
    pub bytes_in_segment_files: u64,
}

#[cfg(test)]
mod tests {
    use super::check_tenant;

    #[test]
    fn tenant_names() {
        for ok in ["customer-42", "a", "ünïcode", &"x".repeat(255)] {
            assert!(check_tenant(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\\b",
            "a\0b",
            "tab\tname",
            &"x".repeat(256),
        ] {
            assert!(check_tenant(bad).is_err(), "{bad:?}");
        }
    }
}
