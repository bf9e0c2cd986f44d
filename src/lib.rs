//! # jocky
//!
//! A tantivy [`Directory`](tantivy::Directory) that keeps a whole index in **one
//! append-only container** with an in-memory file table: two file descriptors per
//! index whatever the number of segments, writers and readers; one mapping per
//! container file; every record checksummed; crash recovery on open.
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
//! ## Layers (bottom up)
//! - [`io`]: the one I/O trait, a real implementation (libc, mmap) and a
//!   fault-injecting twin for power-loss and EIO/ENOSPC tests.
//! - [`format`](mod@format): bytes only — container file header and records.
//! - `container`: the append-only log: write position, rotation, group commit,
//!   poisoning, recovery on open, and the write-behind stage with its writer
//!   thread (direct I/O or smoothed buffered writes, bounded memory).
//! - `table`: the in-memory file table rebuilt by replay.
//! - `engine` + `directory`: tantivy's `Directory` trait over all of the above;
//!   `export` (segment files) and `reclaim` (dead space) beside them; [`Store`]
//!   for many indexes in one container.
//! - [`policy`]: when to fsync, how to write, when to export, which access
//!   advice.
//!
//! `docs/format.md` in the repository has the byte layout and its version history.
#![forbid(unsafe_op_in_unsafe_fn)]

mod container;
pub mod corpus;
mod directory;
mod engine;
pub mod error;
mod export;
pub mod format;
pub mod harness;
pub mod inspect;
pub mod io;
mod lock;
mod path;
pub mod policy;
pub mod procstats;
mod reclaim;
mod store;
mod table;
pub mod verify;

pub use directory::{Builder, JockyDirectory, Stats};
pub use error::{Error, Result};
pub use export::ExportReport;
pub use policy::{Advice, AdvicePolicy, ExportPolicy, SyncPolicy, WriteMode};
pub use reclaim::ReclaimReport;
pub use store::{Store, MAX_TENANT_LEN};
