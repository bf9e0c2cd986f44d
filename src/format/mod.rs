//! On-disk formats, bytes only: no I/O happens in this layer.
//!
//! - [`file_header`]: the 64-byte header of each container file.
//! - [`record`]: the framed, checksummed records that follow it.
//! - [`segment_file`]: the layout, table and trailer of an exported segment file.
//! - [`snapshot`]: the file-table image `Snapshot` records carry.
//! - `reader`: the bounds-checked cursor both decoders use.
//!
//! `docs/format.md` describes the same layouts with their version history.
pub mod file_header;
mod reader;
pub mod record;
pub mod segment_file;
pub mod snapshot;
