//! The fixed header at the start of every container file. Bytes only, no I/O.
//!
//! ```text
//! offset  size  field
//!      0     8  magic           b"JOCKYLOG"
//!      8     4  version         FORMAT_VERSION
//!     12     4  crc32           crc32fast over bytes 16..64
//!     16     8  file_no         number of this container file (also in its name)
//!     24     8  first_sequence  sequence number of the first record in this file
//!     32     8  capacity        the most bytes this file may grow to
//!     40    24  reserved        zero
//! ```
//! Records follow from offset `FILE_HEADER_LEN`.

use crate::error::DecodeError;
use crate::format::record::{u32_at, u64_at};

pub const FILE_MAGIC: &[u8; 8] = b"JOCKYLOG";
pub const FORMAT_VERSION: u32 = 5;
/// The oldest version this code reads. Version 1 files have no `Checkpoint`
/// record at their start; version 2 files always do; version 3 adds the
/// `ExportBegin`, `SegmentDrop` and `Continued` records (the evidence open needs
/// before it removes anything) and the `Seal` record; version 4 the `Snapshot`
/// record (a file-table image, so an open need not replay older files);
/// version 5 the `Placed` record (a chunk written into a segment file being
/// built in place).
pub const MIN_FORMAT_VERSION: u32 = 1;
pub const FILE_HEADER_LEN: usize = 64;
/// Container files are at most 1 TiB; log positions pack `(file_no, offset)` in a u64.
pub const MAX_CAPACITY: u64 = 1 << 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Format version (`FORMAT_VERSION` when encoding a new file).
    pub version: u32,
    pub file_no: u64,
    pub first_sequence: u64,
    pub capacity: u64,
}

impl FileHeader {
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN] {
        let mut b = [0u8; FILE_HEADER_LEN];
        b[0..8].copy_from_slice(FILE_MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[16..24].copy_from_slice(&self.file_no.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_sequence.to_le_bytes());
        b[32..40].copy_from_slice(&self.capacity.to_le_bytes());
        let crc = crc32fast::hash(&b[16..]);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<FileHeader, DecodeError> {
        if b.len() < FILE_HEADER_LEN {
            return Err(DecodeError::Truncated);
        }
        if &b[0..8] != FILE_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = u32_at(b, 8);
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(DecodeError::Version {
                expected: FORMAT_VERSION,
                got: version,
            });
        }
        let expected = u32_at(b, 12);
        let got = crc32fast::hash(&b[16..FILE_HEADER_LEN]);
        if expected != got {
            return Err(DecodeError::ChecksumMismatch { expected, got });
        }
        let capacity = u64_at(b, 32);
        if !(FILE_HEADER_LEN as u64..=MAX_CAPACITY).contains(&capacity) {
            return Err(DecodeError::LengthOutOfBounds(capacity));
        }
        Ok(FileHeader {
            version,
            file_no: u64_at(b, 16),
            first_sequence: u64_at(b, 24),
            capacity,
        })
    }
}

/// Name of container file `file_no` inside the index folder.
pub fn container_file_name(file_no: u64) -> String {
    format!("jocky-{file_no:010}.log")
}

/// Parses a container file name back into its number.
pub fn parse_container_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("jocky-")?.strip_suffix(".log")?;
    if digits.len() != 10 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A position in the log: container file number and byte offset, packed so that
/// positions compare in log order.
pub fn log_position(file_no: u64, offset: u64) -> u64 {
    debug_assert!(offset < MAX_CAPACITY);
    (file_no << 40) | offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corruption() {
        let h = FileHeader {
            version: FORMAT_VERSION,
            file_no: 7,
            first_sequence: 1234,
            capacity: 64 << 20,
        };
        let b = h.encode();
        assert_eq!(FileHeader::decode(&b).unwrap(), h);
        for i in 0..FILE_HEADER_LEN {
            let mut c = b;
            c[i] ^= 0x10;
            assert!(FileHeader::decode(&c).is_err(), "flip at {i} undetected");
        }
        assert!(FileHeader::decode(&b[..10]).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(container_file_name(3), "jocky-0000000003.log");
        assert_eq!(parse_container_file_name("jocky-0000000003.log"), Some(3));
        assert_eq!(parse_container_file_name("jocky-3.log"), None);
        assert_eq!(parse_container_file_name("meta.json"), None);
        assert!(log_position(1, 0) > log_position(0, MAX_CAPACITY - 1));
    }
}
