//! # jocky
//!
//! A tantivy [`Directory`](tantivy::Directory) that keeps a whole index in **one
//! append-only container** with an in-memory file table: two file descriptors per
//! index whatever the number of segments, writers and readers; one mapping per
//! container file; every record checksummed; crash recovery on open, which
//! starts from the newest snapshot of the file table (a store of 10,000
//! tenants opens in about 30 ms: each tenant's files are read from the
//! snapshot when the tenant is first used).
//!
//! ```
//! use tantivy::schema::{Schema, TEXT};
//! use tantivy::{doc, Index, IndexWriter};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?;
//! # let path = tmp.path().join("my-index");
//! let mut schema = Schema::builder();
//! let body = schema.add_text_field("body", TEXT);
//! let schema = schema.build();
//!
//! let dir = jocky::JockyDirectory::open(&path)?; // creates the folder and container
//! let index = Index::open_or_create(dir.clone(), schema)?;
//! let mut writer: IndexWriter = index.writer(15_000_000)?;
//! writer.add_document(doc!(body => "one container, two file descriptors"))?;
//! writer.commit()?;
//! assert_eq!(index.reader()?.searcher().num_docs(), 1);
//! assert!(dir.stats().fds_held <= 2);
//! # Ok(())
//! # }
//! ```
//!
//! ## Public API
//! - [`JockyDirectory`] (one index per folder) and [`Store`] (many indexes, one
//!   container), both opened with defaults or through a [`Builder`].
//! - The policies ([`SyncPolicy`], [`WriteMode`], [`ExportPolicy`],
//!   [`ExportCopy`], [`AdvicePolicy`]/[`Advice`], [`VerifyPolicy`]): when to
//!   fsync, how to write, when to export and how to copy, which access advice,
//!   when to check exported bytes.
//! - [`Stats`], [`ExportReport`], [`ReclaimReport`] and [`PrefetchReport`]: what
//!   happened.
//! - [`JockyDirectory::prefetch`]: after a cold open, reads ahead what opening
//!   the index will read (each segment file's hot ranges, recorded at export).
//! - [`Error`] and [`Result`].
//!
//! With the `testing` cargo feature, `jocky::testing` also exposes the storage
//! trait and a fault-injecting simulated storage, for crash tests of code built on
//! jocky. It is not a supported way to plug in custom storage.
//!
//! ## Layers inside (bottom up, all private)
//! - `io`: the one I/O trait, a real implementation (libc, mmap) and a
//!   fault-injecting twin for power-loss and EIO/ENOSPC tests.
//! - `format`: bytes only — container file header, records, the file-table
//!   image of `Snapshot` records, segment files.
//! - `container`: the append-only log: write position, rotation, group commit,
//!   poisoning, recovery on open (from the newest snapshot on; older files are
//!   mapped and each of their records checked on first read), and the
//!   write-behind stage with its writer thread (smoothed buffered writes that
//!   stay cached until the data dies or is exported, or direct I/O; bounded
//!   memory).
//! - `table`: the in-memory file table, loaded from a snapshot (each
//!   namespace's files on first use) and the records after it.
//! - `engine` + `directory`: tantivy's `Directory` trait over all of the above;
//!   `export` (segment files with per-block CRCs checked on first read, and
//!   hot ranges for prefetch) and `reclaim` (dead space) beside them; [`Store`]
//!   for many indexes in one container.
//! - [`policy`]: the options above.
//!
//! `docs/format.md` in the repository has the byte layout and its version history;
//! the benchmarks, the comparison with `MmapDirectory` and the `jocky` command live
//! in the repository's `jocky-bench` and `jocky-cli` crates.
#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod container;
mod directory;
mod engine;
mod error;
mod export;
mod format;
pub mod inspect;
mod io;
mod lock;
mod path;
pub mod policy;
mod reclaim;
mod store;
mod sync;
mod table;
pub mod verify;

/// Test support (cargo feature `testing`): the storage trait the directory does all
/// its I/O through, and [`SimStorage`](testing::SimStorage), an in-memory twin that
/// keeps "written" apart from "durable" to simulate power loss, ENOSPC and EIO.
/// Hand one to [`Builder::storage`]. Meant for tests; not a stable API.
#[cfg(feature = "testing")]
pub mod testing {
    pub use crate::io::sim::SimStorage;
    pub use crate::io::{ReadView, Storage, StorageFile, DIRECT_ALIGN};
    /// Decoder entry points for fuzzing.
    pub mod decode;
}

pub use directory::{Builder, JockyDirectory, Stats};
pub use error::{Error, Result};
pub use export::hot::PrefetchReport;
pub use export::ExportReport;
pub use policy::{
    Advice, AdvicePolicy, ExportCopy, ExportPolicy, SyncPolicy, VerifyPolicy, WriteMode,
    FETCH_WHOLE,
};
pub use reclaim::ReclaimReport;
pub use store::{Store, TenantStats, MAX_TENANT_LEN};
