//! Exported segment files: one file per finished segment, mmap'd by readers.
//! Bytes only, no I/O.
//!
//! ```text
//! offset       field
//!      0       file 0 bytes
//!     ..       zero padding to the next multiple of PAGE (every file starts on one)
//!  k*PAGE      file 1 bytes, ...
//! table_off    table (right after the last file, 8-byte aligned, zero padding before)
//! end-40       trailer (TRAILER_LEN bytes, the last bytes of the file)
//! ```
//!
//! Table (all integers little endian), version 2:
//!
//! ```text
//! magic b"JSGT" | version u32 | export_no u64 | count u32 (<= MAX_ENTRIES)
//! block_log2 u8 (MIN_BLOCK_LOG2..=MAX_BLOCK_LOG2; version 2 only)
//! ns_len u16 | namespace (utf-8, <= MAX_NAMESPACE_LEN)
//! count x: file_id u64 | offset u64 | len u64 | crc u32 (crc32fast of the file's
//!          bytes) | path_len u16 | path (utf-8, 1..=MAX_PATH_LEN)
//! block crcs (version 2 only): for each entry in order, ceil(len / 2^block_log2)
//!          x u32, the crc32fast of each 2^block_log2-byte block of the file (the
//!          last one shorter); at most MAX_BLOCKS in all
//! hot_count u32 (<= MAX_HOT; version 2 only)
//! hot_count x: entry u32 (< count) | offset u64 | len u64 (offset + len <=
//!          the entry's len): the ranges tantivy reads when it opens the
//!          segment (footers, term dictionaries, fieldnorms, the doc store's
//!          index), recorded at export; what `prefetch` reads ahead
//! ```
//!
//! The block CRCs let a reader check only the blocks it reads, when it first
//! reads them, instead of the whole file before its first read. Version 1 (no
//! `block_log2`, no block CRCs; written until 2026-11-28) is still read: its
//! files are checked whole.
//!
//! Trailer:
//!
//! ```text
//! offset  size  field
//!      0     8  table_offset
//!      8     8  table_len
//!     16     4  table_crc     crc32fast over the table bytes
//!     20     4  version       VERSION
//!     24     4  reserved      zero (covered by the crc, not checked)
//!     28     4  trailer_crc   crc32fast over bytes 0..28
//!     32     8  magic         b"JOCKYSEG"
//! ```

use crate::error::DecodeError;
use crate::format::reader::Reader;
use crate::format::record::{u32_at, u64_at};

pub const PAGE: u64 = 4096;
pub const TRAILER_LEN: usize = 40;
pub const MAX_ENTRIES: usize = 65_536;
pub const MAX_PATH_LEN: usize = 1024;
pub const MAX_NAMESPACE_LEN: usize = 255;
pub const VERSION: u32 = 2;
/// The first version, without block CRCs; still read.
pub const VERSION_1: u32 = 1;
/// Block size export writes: 64 KiB.
pub const BLOCK_LOG2: u8 = 16;
pub const MIN_BLOCK_LOG2: u8 = 12;
pub const MAX_BLOCK_LOG2: u8 = 30;
/// Most block CRCs in one table (1 TiB of files at 64 KiB blocks).
pub const MAX_BLOCKS: usize = 1 << 24;
/// Most hot ranges in one table.
pub const MAX_HOT: usize = 65_536;
/// Bytes of one hot range: entry, offset, len.
const HOT_LEN: usize = 4 + 8 + 8;
pub const TABLE_MAGIC: &[u8; 4] = b"JSGT";
pub const TRAILER_MAGIC: &[u8; 8] = b"JOCKYSEG";
/// Table bytes before the namespace: magic, version, export_no, count, ns_len
/// (version 2 adds block_log2).
const TABLE_FIXED_LEN: usize = 4 + 4 + 8 + 4 + 2;
/// Entry bytes before the path: file_id, offset, len, crc, path_len.
const ENTRY_FIXED_LEN: usize = 8 + 8 + 8 + 4 + 2;
/// Largest valid table: a length read from disk above this is corruption.
pub const MAX_TABLE_LEN: u64 = (TABLE_FIXED_LEN
    + 1
    + MAX_NAMESPACE_LEN
    + MAX_ENTRIES * (ENTRY_FIXED_LEN + MAX_PATH_LEN)
    + 4 * MAX_BLOCKS
    + 4
    + HOT_LEN * MAX_HOT) as u64;

const OFF_TABLE_OFFSET: usize = 0;
const OFF_TABLE_LEN: usize = 8;
const OFF_TABLE_CRC: usize = 16;
const OFF_VERSION: usize = 20;
const OFF_TRAILER_CRC: usize = 28;
const OFF_MAGIC: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegEntry {
    pub file_id: u64,
    pub path: String,
    pub offset: u64,
    pub len: u64,
    pub crc: u32,
    /// CRC of each block of the file (empty in a version 1 table).
    pub block_crcs: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegTable {
    pub export_no: u64,
    pub namespace: String,
    /// log2 of the block size of the entries' block CRCs; 0 in a version 1
    /// table (no block CRCs: files are checked whole).
    pub block_log2: u8,
    pub entries: Vec<SegEntry>,
    /// Ranges read when the segment is opened (empty in a version 1 table).
    pub hot: Vec<HotRange>,
}

/// A range of one file of a segment file that tantivy reads when it opens
/// the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotRange {
    /// The file's index in the table's entries.
    pub entry: u32,
    /// Offset within the file.
    pub offset: u64,
    pub len: u64,
}

/// How many blocks of `1 << block_log2` bytes a file of `len` bytes has.
pub fn block_count(len: u64, block_log2: u8) -> u64 {
    len.div_ceil(1 << block_log2)
}

/// Accumulates a file's whole CRC and its block CRCs as its bytes stream by.
/// Each byte is hashed once, into its block's CRC; the whole CRC is combined
/// from the block CRCs at the end.
pub struct BlockHasher {
    block: u64,
    current: crc32fast::Hasher,
    in_block: u64,
    blocks: Vec<u32>,
}

impl BlockHasher {
    pub fn new(block_log2: u8) -> BlockHasher {
        BlockHasher {
            block: 1 << block_log2,
            current: crc32fast::Hasher::new(),
            in_block: 0,
            blocks: Vec::new(),
        }
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let take = ((self.block - self.in_block) as usize).min(bytes.len());
            self.current.update(&bytes[..take]);
            self.in_block += take as u64;
            bytes = &bytes[take..];
            if self.in_block == self.block {
                let done = std::mem::replace(&mut self.current, crc32fast::Hasher::new());
                self.blocks.push(done.finalize());
                self.in_block = 0;
            }
        }
    }

    /// (whole-file CRC, block CRCs).
    pub fn finish(mut self) -> (u32, Vec<u32>) {
        let last = self.in_block;
        if last > 0 {
            self.blocks.push(self.current.finalize());
        }
        let whole = blocks_hasher(&self.blocks, self.block, last).finalize();
        (whole, self.blocks)
    }
}

/// A hasher that has taken the bytes whose consecutive blocks of `block`
/// bytes have the CRCs `blocks` (the last one `last` bytes long, 0 meaning
/// a whole block), without reading them: CRC-32 combination. Ready to take
/// the bytes that follow.
pub fn blocks_hasher(blocks: &[u32], block: u64, last: u64) -> crc32fast::Hasher {
    let mut h = crc32fast::Hasher::new();
    for (i, crc) in blocks.iter().enumerate() {
        let len = if i + 1 == blocks.len() && last > 0 {
            last
        } else {
            block
        };
        h.combine(&crc32fast::Hasher::new_with_initial_len(*crc, len));
    }
    h
}

/// Plans offsets: given file lengths in order, returns (offset of each file,
/// table_offset). Panics if the layout does not fit in a u64.
pub fn layout(lens: &[u64]) -> (Vec<u64>, u64) {
    let mut offsets = Vec::with_capacity(lens.len());
    let mut end = 0u64;
    for &len in lens {
        let off = align_up(end, PAGE);
        offsets.push(off);
        end = off.checked_add(len).expect("segment file too large");
    }
    (offsets, align_up(end, 8))
}

fn align_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to)
        .checked_mul(to)
        .expect("segment file too large")
}

/// Encodes the table bytes. Panics on a table `decode_table` would refuse
/// (too many entries, namespace or path too long, empty path).
pub fn encode_table(t: &SegTable) -> Vec<u8> {
    assert!(t.entries.len() <= MAX_ENTRIES, "too many entries");
    assert!(t.namespace.len() <= MAX_NAMESPACE_LEN, "namespace too long");
    let mut out = Vec::with_capacity(
        TABLE_FIXED_LEN + t.namespace.len() + t.entries.len() * (ENTRY_FIXED_LEN + 32),
    );
    assert!(
        (MIN_BLOCK_LOG2..=MAX_BLOCK_LOG2).contains(&t.block_log2),
        "block size out of range"
    );
    let blocks: usize = t.entries.iter().map(|e| e.block_crcs.len()).sum();
    assert!(blocks <= MAX_BLOCKS, "too many blocks");
    out.extend_from_slice(TABLE_MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&t.export_no.to_le_bytes());
    out.extend_from_slice(&(t.entries.len() as u32).to_le_bytes());
    out.push(t.block_log2);
    out.extend_from_slice(&(t.namespace.len() as u16).to_le_bytes());
    out.extend_from_slice(t.namespace.as_bytes());
    for e in &t.entries {
        assert!(
            (1..=MAX_PATH_LEN).contains(&e.path.len()),
            "bad path length"
        );
        out.extend_from_slice(&e.file_id.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.len.to_le_bytes());
        out.extend_from_slice(&e.crc.to_le_bytes());
        out.extend_from_slice(&(e.path.len() as u16).to_le_bytes());
        out.extend_from_slice(e.path.as_bytes());
    }
    for e in &t.entries {
        assert_eq!(
            e.block_crcs.len() as u64,
            block_count(e.len, t.block_log2),
            "block crcs do not match the file's length"
        );
        for c in &e.block_crcs {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
    assert!(t.hot.len() <= MAX_HOT, "too many hot ranges");
    out.extend_from_slice(&(t.hot.len() as u32).to_le_bytes());
    for h in &t.hot {
        let e = &t.entries[h.entry as usize];
        assert!(
            h.offset.checked_add(h.len).is_some_and(|end| end <= e.len),
            "hot range outside its file"
        );
        out.extend_from_slice(&h.entry.to_le_bytes());
        out.extend_from_slice(&h.offset.to_le_bytes());
        out.extend_from_slice(&h.len.to_le_bytes());
    }
    out
}

/// Encodes the trailer for a table of these bytes at `table_offset`.
pub fn encode_trailer(table_offset: u64, table: &[u8]) -> [u8; TRAILER_LEN] {
    let mut b = [0u8; TRAILER_LEN];
    b[OFF_TABLE_OFFSET..OFF_TABLE_OFFSET + 8].copy_from_slice(&table_offset.to_le_bytes());
    b[OFF_TABLE_LEN..OFF_TABLE_LEN + 8].copy_from_slice(&(table.len() as u64).to_le_bytes());
    b[OFF_TABLE_CRC..OFF_TABLE_CRC + 4].copy_from_slice(&crc32fast::hash(table).to_le_bytes());
    b[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&VERSION.to_le_bytes());
    let crc = crc32fast::hash(&b[..OFF_TRAILER_CRC]);
    b[OFF_TRAILER_CRC..OFF_TRAILER_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    b[OFF_MAGIC..].copy_from_slice(TRAILER_MAGIC);
    b
}

/// Decodes a trailer (exactly `TRAILER_LEN` bytes) of a file of `file_len` bytes;
/// returns (table_offset, table_len, table_crc).
pub fn decode_trailer(b: &[u8], file_len: u64) -> Result<(u64, u64, u32), DecodeError> {
    if b.len() < TRAILER_LEN || file_len < TRAILER_LEN as u64 {
        return Err(DecodeError::Truncated);
    }
    if b.len() > TRAILER_LEN {
        return Err(DecodeError::LengthOutOfBounds(b.len() as u64));
    }
    if &b[OFF_MAGIC..] != TRAILER_MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let expected = u32_at(b, OFF_TRAILER_CRC);
    let got = crc32fast::hash(&b[..OFF_TRAILER_CRC]);
    if expected != got {
        return Err(DecodeError::ChecksumMismatch { expected, got });
    }
    check_version(u32_at(b, OFF_VERSION))?;
    let table_offset = u64_at(b, OFF_TABLE_OFFSET);
    let table_len = u64_at(b, OFF_TABLE_LEN);
    if !(TABLE_FIXED_LEN as u64..=MAX_TABLE_LEN).contains(&table_len) {
        return Err(DecodeError::LengthOutOfBounds(table_len));
    }
    let end = table_offset.checked_add(table_len + TRAILER_LEN as u64);
    if !table_offset.is_multiple_of(8) || end != Some(file_len) {
        return Err(DecodeError::LengthOutOfBounds(table_offset));
    }
    Ok((table_offset, table_len, u32_at(b, OFF_TABLE_CRC)))
}

/// Decodes and validates a table found at `table_offset` whose crc the trailer
/// gives as `table_crc`. Files must start on PAGE boundaries, in offset order,
/// without overlap (a zero-length file may share its offset with the next one),
/// and end at or before the table.
pub fn decode_table(b: &[u8], table_offset: u64, table_crc: u32) -> Result<SegTable, DecodeError> {
    if b.len() as u64 > MAX_TABLE_LEN {
        return Err(DecodeError::LengthOutOfBounds(b.len() as u64));
    }
    let got = crc32fast::hash(b);
    if got != table_crc {
        return Err(DecodeError::ChecksumMismatch {
            expected: table_crc,
            got,
        });
    }
    let mut r = Reader::new(b);
    if r.take(4)? != TABLE_MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = check_version(u32_at(r.take(4)?, 0))?;
    let export_no = u64_at(r.take(8)?, 0);
    let count = u32_at(r.take(4)?, 0) as usize;
    if count > MAX_ENTRIES {
        return Err(DecodeError::LengthOutOfBounds(count as u64));
    }
    let block_log2 = if version == VERSION_1 {
        0
    } else {
        let b = r.take(1)?[0];
        if !(MIN_BLOCK_LOG2..=MAX_BLOCK_LOG2).contains(&b) {
            return Err(DecodeError::LengthOutOfBounds(b as u64));
        }
        b
    };
    let namespace = r.str(MAX_NAMESPACE_LEN)?.to_owned();
    // Every entry takes at least ENTRY_FIXED_LEN bytes: never reserve more than fits.
    let mut entries = Vec::with_capacity(count.min((b.len() - r.pos()) / ENTRY_FIXED_LEN));
    let mut prev_end = 0u64;
    for _ in 0..count {
        let head = r.take(ENTRY_FIXED_LEN - 2)?;
        let (file_id, offset, len) = (u64_at(head, 0), u64_at(head, 8), u64_at(head, 16));
        let crc = u32_at(head, 24);
        let path = r.str(MAX_PATH_LEN)?;
        if path.is_empty() {
            return Err(DecodeError::LengthOutOfBounds(0));
        }
        let end = offset.checked_add(len).filter(|&end| end <= table_offset);
        if !offset.is_multiple_of(PAGE) || offset < prev_end || end.is_none() {
            return Err(DecodeError::LengthOutOfBounds(offset));
        }
        prev_end = end.unwrap_or(offset);
        entries.push(SegEntry {
            file_id,
            path: path.to_owned(),
            offset,
            len,
            crc,
            block_crcs: Vec::new(),
        });
    }
    let mut hot = Vec::new();
    if block_log2 != 0 {
        // Counted before anything is allocated: the rest of the table must
        // hold this many CRCs and the hot ranges.
        let mut blocks = 0u64;
        for e in &entries {
            blocks = blocks.saturating_add(block_count(e.len, block_log2));
        }
        let rest = (b.len() - r.pos()) as u64;
        if blocks > MAX_BLOCKS as u64 || blocks.saturating_mul(4) > rest {
            return Err(DecodeError::LengthOutOfBounds(blocks));
        }
        for e in &mut entries {
            let n = block_count(e.len, block_log2) as usize;
            let raw = r.take(4 * n)?;
            e.block_crcs = raw.chunks_exact(4).map(|c| u32_at(c, 0)).collect();
        }
        let n = r.u32()? as usize;
        if n > MAX_HOT || n * HOT_LEN != b.len() - r.pos() {
            return Err(DecodeError::LengthOutOfBounds(n as u64));
        }
        hot.reserve(n);
        for _ in 0..n {
            let (entry, offset, len) = (r.u32()?, r.u64()?, r.u64()?);
            let fits = entries
                .get(entry as usize)
                .is_some_and(|e| offset.checked_add(len).is_some_and(|end| end <= e.len));
            if !fits {
                return Err(DecodeError::LengthOutOfBounds(offset));
            }
            hot.push(HotRange { entry, offset, len });
        }
    }
    if r.pos() != b.len() {
        return Err(DecodeError::LengthOutOfBounds((b.len() - r.pos()) as u64));
    }
    Ok(SegTable {
        export_no,
        namespace,
        block_log2,
        entries,
        hot,
    })
}

/// The version, if this decoder reads it (1 or 2).
fn check_version(got: u32) -> Result<u32, DecodeError> {
    match got {
        VERSION | VERSION_1 => Ok(got),
        got => Err(DecodeError::Version {
            expected: VERSION,
            got,
        }),
    }
}

/// Name of exported segment file `export_no`.
pub fn segment_file_name(export_no: u64) -> String {
    format!("jocky-seg-{export_no:010}.seg")
}

/// Parses a segment file name back into its number; `None` for anything else.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("jocky-seg-")?.strip_suffix(".seg")?;
    if digits.len() != 10 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A whole segment file: (bytes, table).
    fn sample() -> (Vec<u8>, SegTable) {
        let files: [&[u8]; 4] = [b"first file", b"", &[7u8; 5000], b"last"];
        let lens: Vec<u64> = files.iter().map(|f| f.len() as u64).collect();
        let (offsets, table_offset) = layout(&lens);
        let mut out = Vec::new();
        let mut entries = Vec::new();
        for (i, (f, off)) in files.iter().zip(&offsets).enumerate() {
            out.resize(*off as usize, 0);
            out.extend_from_slice(f);
            let mut h = BlockHasher::new(MIN_BLOCK_LOG2);
            h.update(f);
            let (crc, block_crcs) = h.finish();
            entries.push(SegEntry {
                file_id: 100 + i as u64,
                path: format!("seg{i}.idx"),
                offset: *off,
                len: f.len() as u64,
                crc,
                block_crcs,
            });
        }
        out.resize(table_offset as usize, 0);
        let t = SegTable {
            export_no: 17,
            namespace: "tenant-é".to_owned(),
            block_log2: MIN_BLOCK_LOG2,
            entries,
            hot: vec![
                HotRange {
                    entry: 0,
                    offset: 2,
                    len: 8,
                },
                HotRange {
                    entry: 2,
                    offset: 4000,
                    len: 1000,
                },
            ],
        };
        let table = encode_table(&t);
        out.extend_from_slice(&table);
        out.extend_from_slice(&encode_trailer(table_offset, &table));
        (out, t)
    }

    fn decode_file(f: &[u8]) -> Result<SegTable, DecodeError> {
        let tail = f
            .len()
            .checked_sub(TRAILER_LEN)
            .ok_or(DecodeError::Truncated)?;
        let (off, len, crc) = decode_trailer(&f[tail..], f.len() as u64)?;
        decode_table(&f[off as usize..(off + len) as usize], off, crc)
    }

    #[test]
    fn roundtrip() {
        let (f, t) = sample();
        assert_eq!(decode_file(&f).unwrap(), t);
        for e in &t.entries {
            let bytes = &f[e.offset as usize..(e.offset + e.len) as usize];
            assert_eq!(crc32fast::hash(bytes), e.crc);
            let blocks: Vec<u32> = bytes
                .chunks(1 << MIN_BLOCK_LOG2)
                .map(crc32fast::hash)
                .collect();
            assert_eq!(blocks, e.block_crcs);
        }
        assert_eq!(
            t.entries[2].block_crcs.len(),
            2,
            "5000 bytes: two 4 KiB blocks"
        );
        let empty = SegTable {
            export_no: 0,
            namespace: String::new(),
            block_log2: BLOCK_LOG2,
            entries: vec![],
            hot: vec![],
        };
        let table = encode_table(&empty);
        assert_eq!(decode_table(&table, 0, crc32fast::hash(&table)), Ok(empty));
    }

    #[test]
    fn layout_is_aligned() {
        let lens = [1, 0, 4096, 4097, 0, 3];
        let (offsets, table_offset) = layout(&lens);
        assert_eq!(offsets, [0, 4096, 4096, 8192, 16384, 16384]);
        assert_eq!(table_offset, 16392);
        assert!(offsets.iter().all(|o| o.is_multiple_of(PAGE)));
        assert_eq!(layout(&[]), (vec![], 0));
        assert_eq!(layout(&[8192]), (vec![0], 8192));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let (f, _) = sample();
        let (_, table_offset) = layout(&[10, 0, 5000, 4]);
        for i in table_offset as usize..f.len() {
            for bit in 0..8 {
                let mut c = f.clone();
                c[i] ^= 1 << bit;
                assert!(decode_file(&c).is_err(), "flip at {i} bit {bit} undetected");
            }
        }
    }

    #[test]
    fn truncation_and_bad_fields() {
        let (f, t) = sample();
        for n in 0..f.len() {
            assert!(decode_file(&f[..n]).is_err(), "truncated to {n} accepted");
        }
        let tail = &f[f.len() - TRAILER_LEN..];
        assert!(decode_trailer(&tail[1..], f.len() as u64).is_err());
        assert!(decode_trailer(tail, f.len() as u64 + 1).is_err());
        let table = encode_table(&t);
        let crc = crc32fast::hash(&table);
        let (_, table_offset) = layout(&[10, 0, 5000, 4]);
        let last = t.entries.last().unwrap();
        assert!(decode_table(&table, last.offset + last.len, crc).is_ok());
        assert!(decode_table(&table, last.offset + last.len - 1, crc).is_err());
        for n in 0..table.len() {
            let short = &table[..n];
            assert!(decode_table(short, table_offset, crc32fast::hash(short)).is_err());
        }
        let mut long = table.clone();
        long.push(0);
        assert!(decode_table(&long, table_offset, crc32fast::hash(&long)).is_err());
        // Misaligned, overlapping, out of order.
        for (i, offset) in [(1, 4095), (3, 8192), (3, 0)] {
            let mut t2 = t.clone();
            t2.entries[i].offset = offset;
            let b = encode_table(&t2);
            assert!(decode_table(&b, table_offset, crc32fast::hash(&b)).is_err());
        }
    }

    /// A version 1 table (no block size, no block CRCs), as written until
    /// 2026-11-28.
    fn encode_table_v1(t: &SegTable) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(TABLE_MAGIC);
        out.extend_from_slice(&VERSION_1.to_le_bytes());
        out.extend_from_slice(&t.export_no.to_le_bytes());
        out.extend_from_slice(&(t.entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&(t.namespace.len() as u16).to_le_bytes());
        out.extend_from_slice(t.namespace.as_bytes());
        for e in &t.entries {
            out.extend_from_slice(&e.file_id.to_le_bytes());
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.len.to_le_bytes());
            out.extend_from_slice(&e.crc.to_le_bytes());
            out.extend_from_slice(&(e.path.len() as u16).to_le_bytes());
            out.extend_from_slice(e.path.as_bytes());
        }
        out
    }

    #[test]
    fn version_1_tables_are_read_without_block_crcs() {
        let (_, t) = sample();
        let v1 = encode_table_v1(&t);
        let got = decode_table(&v1, 1 << 20, crc32fast::hash(&v1)).unwrap();
        assert_eq!(got.block_log2, 0);
        assert!(got.entries.iter().all(|e| e.block_crcs.is_empty()));
        let mut want = t.clone();
        want.block_log2 = 0;
        want.hot.clear();
        for e in &mut want.entries {
            e.block_crcs.clear();
        }
        assert_eq!(got, want);
    }

    #[test]
    fn block_crcs_and_hot_ranges_must_fit() {
        let (_, t) = sample();
        let good = encode_table(&t);
        // A byte short, one too many, a block size out of range, a hot range
        // past its file's end or naming no file.
        let mut short = good.clone();
        short.truncate(good.len() - 1);
        let mut long = good.clone();
        long.extend_from_slice(&[0; 4]);
        let mut bad_size = good.clone();
        bad_size[TABLE_FIXED_LEN - 2] = MAX_BLOCK_LOG2 + 1;
        let hot_len_at = good.len() - 8;
        let mut hot_past = good.clone();
        hot_past[hot_len_at..].copy_from_slice(&1001u64.to_le_bytes());
        let hot_entry_at = good.len() - 20;
        let mut hot_nowhere = good.clone();
        hot_nowhere[hot_entry_at..hot_entry_at + 4].copy_from_slice(&4u32.to_le_bytes());
        let mut good_again = good.clone();
        good_again[hot_len_at..].copy_from_slice(&1000u64.to_le_bytes());
        assert!(decode_table(&good_again, 1 << 20, crc32fast::hash(&good_again)).is_ok());
        for b in [short, long, bad_size, hot_past, hot_nowhere] {
            assert!(decode_table(&b, 1 << 20, crc32fast::hash(&b)).is_err());
        }
    }

    #[test]
    fn block_hasher_matches_any_split() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 31 % 253) as u8).collect();
        let want: Vec<u32> = data.chunks(4096).map(crc32fast::hash).collect();
        for step in [1, 7, 4096, 4097, 20_000] {
            let mut h = BlockHasher::new(12);
            for c in data.chunks(step) {
                h.update(c);
            }
            assert_eq!(h.finish(), (crc32fast::hash(&data), want.clone()), "{step}");
        }
        assert_eq!(BlockHasher::new(12).finish(), (0, vec![]));
    }

    #[test]
    fn blocks_hasher_continues_as_if_it_had_read_the_blocks() {
        let data: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [0usize, 1, 4095, 4096, 4097, 12_288, 50_000, 70_000] {
            let blocks: Vec<u32> = data[..len].chunks(4096).map(crc32fast::hash).collect();
            let mut h = blocks_hasher(&blocks, 4096, (len % 4096) as u64);
            assert_eq!(h.clone().finalize(), crc32fast::hash(&data[..len]), "{len}");
            h.update(&data[len..]);
            assert_eq!(h.finalize(), crc32fast::hash(&data), "{len} then the rest");
        }
    }

    #[test]
    fn wrong_version() {
        let (f, t) = sample();
        let mut table = encode_table(&t);
        table[4..8].copy_from_slice(&3u32.to_le_bytes());
        let want = DecodeError::Version {
            expected: VERSION,
            got: 3,
        };
        assert_eq!(
            decode_table(&table, 1 << 20, crc32fast::hash(&table)),
            Err(want.clone())
        );
        let mut tr = [0u8; TRAILER_LEN];
        tr.copy_from_slice(&f[f.len() - TRAILER_LEN..]);
        tr[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&3u32.to_le_bytes());
        let crc = crc32fast::hash(&tr[..OFF_TRAILER_CRC]);
        tr[OFF_TRAILER_CRC..OFF_TRAILER_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_trailer(&tr, f.len() as u64), Err(want));
    }

    #[test]
    fn names() {
        assert_eq!(segment_file_name(42), "jocky-seg-0000000042.seg");
        for n in [0, 42, 9_999_999_999] {
            assert_eq!(parse_segment_file_name(&segment_file_name(n)), Some(n));
        }
        let near = "jocky-seg-42.seg jocky-seg-00000000042.seg jocky-seg-000000004x.seg \
            jocky-seg-+000000042.seg jocky-seg-0000000042.seg.tmp jocky-seg-0000000042.log \
            jocky-0000000042.seg jocky-0000000042.log Jocky-seg-0000000042.seg  x";
        for bad in near.split(' ') {
            assert_eq!(parse_segment_file_name(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn decode_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            file_len in any::<u64>(),
            table_offset in any::<u64>(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        ) {
            let _ = decode_trailer(&bytes, file_len);
            let _ = decode_trailer(&bytes[..bytes.len().min(TRAILER_LEN)], file_len);
            // With the crc right, so that parsing goes past the checksum.
            let _ = decode_table(&bytes, table_offset, crc32fast::hash(&bytes));
            let mut table = encode_table(&sample().1);
            for (i, v) in edits {
                let n = table.len();
                table[i % n] = v;
            }
            let _ = decode_table(&table, table_offset, crc32fast::hash(&table));
        }
    }
}
