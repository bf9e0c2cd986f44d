//! On-disk formats, bytes only: no I/O happens in this layer.
//!
//! - [`file_header`]: the 64-byte header of each container file.
//! - [`record`]: the framed, checksummed records that follow it.
//!
//! `docs/format.md` describes the same layouts with their version history.
pub mod file_header;
pub mod record;
pub mod segment_file;
