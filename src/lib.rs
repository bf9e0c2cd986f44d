//! jocky: a tantivy `Directory` over one append-only container.
#![forbid(unsafe_op_in_unsafe_fn)]

mod container;
pub mod corpus;
mod directory;
mod engine;
pub mod error;
pub mod format;
pub mod harness;
pub mod io;
mod lock;
mod path;
pub mod policy;
pub mod procstats;
mod table;

pub use directory::{Builder, JockyDirectory, Stats};
pub use error::{Error, Result};
pub use policy::{Advice, SyncPolicy};
