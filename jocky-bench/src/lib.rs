//! # jocky-bench
//!
//! The measuring side of jocky, kept out of the library (this crate is not
//! published): what the comparison examples, the benches and the lifecycle tests of
//! this workspace share.
//!
//! - [`corpus`]: a deterministic document generator and loaders for user corpora.
//! - [`harness`]: the whole-index lifecycle runner, generic over any tantivy
//!   `Directory`, and the indexing/query building blocks of the examples.
//! - [`procstats`]: process figures (fds, maps, RSS, page cache) from `/proc`.
//! - [`tenant`]: one small tenant as the multi-tenant examples index it.
//!
//! Examples: `cargo run --release -p jocky-bench --example compare_mmap` (the
//! main job; also `advice` and `tenants`). Bench: `cargo bench -p jocky-bench
//! --bench container`.
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod corpus;
pub mod harness;
pub mod procstats;
pub mod tenant;
