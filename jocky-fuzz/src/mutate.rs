//! Byte mutations (deterministic from the caller's rng) and the checksum fix-ups
//! that let a mutant past the CRCs to the decoding behind them.

use rand::rngs::StdRng;
use rand::Rng;

/// Container record header length and the offsets of its fields (docs/format.md).
pub const RECORD_HEADER_LEN: usize = 32;
const RECORD_MAGIC: u16 = 0x4A4B;
const RECORD_VERSION: u8 = 1;
/// The largest payload a record may declare (docs/format.md: 256 MiB).
pub const MAX_PAYLOAD_LEN: u64 = 256 << 20;
/// Container file header length.
pub const FILE_HEADER_LEN: usize = 64;
/// Segment file trailer length.
pub const TRAILER_LEN: usize = 40;

/// Values that sit on the edges of byte-sized fields.
const INTERESTING_BYTES: [u8; 6] = [0, 0xFF, 0x7F, 0x80, 1, 0xFE];

/// Length-like values, for 4- and 8-byte fields.
fn huge_u32(rng: &mut StdRng) -> u32 {
    let max_payload = MAX_PAYLOAD_LEN as u32;
    *pick(
        rng,
        &[
            u32::MAX,
            u32::MAX - 1,
            u32::MAX - 7,
            u32::MAX - 31,
            0x8000_0000,
            0x7FFF_FFFF,
            max_payload,
            max_payload + 1,
            max_payload - 1,
            65_536,
            65_537,
            0,
        ],
    )
}

fn huge_u64(rng: &mut StdRng) -> u64 {
    *pick(
        rng,
        &[
            u64::MAX,
            u64::MAX - 1,
            u64::MAX - 7,
            u64::MAX - 39,
            u64::MAX - 4095,
            1 << 63,
            (1 << 63) - 1,
            1 << 40,
            (1 << 40) - 1,
            (1 << 40) + 1,
            u32::MAX as u64,
            u32::MAX as u64 + 1,
            MAX_PAYLOAD_LEN,
            MAX_PAYLOAD_LEN + 1,
            0,
        ],
    )
}

fn pick<'a, T>(rng: &mut StdRng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

/// A position in `0..len` (len > 0), biased towards the start and the end, where
/// headers and trailers live.
fn pos(rng: &mut StdRng, len: usize) -> usize {
    match rng.random_range(0..8) {
        0 => rng.random_range(0..len.min(64)),
        1 => len - 1 - rng.random_range(0..len.min(64)),
        _ => rng.random_range(0..len),
    }
}

/// The mutations, for counting and for tests.
pub const MUTATIONS: [&str; 13] = [
    "bit flip",
    "interesting byte",
    "random bytes",
    "zeroed range",
    "truncation",
    "appended garbage",
    "block copy",
    "huge u32",
    "huge u64",
    "splice",
    "insert",
    "delete range",
    "random range",
];

/// Applies one mutation to `data` (never grows it past `max_len`); `other` is a
/// second input to splice with. Returns the index of the mutation in [`MUTATIONS`].
pub fn mutate_once(rng: &mut StdRng, data: &mut Vec<u8>, other: &[u8], max_len: usize) -> usize {
    let m = rng.random_range(0..MUTATIONS.len());
    let len = data.len();
    match m {
        0 if len > 0 => {
            for _ in 0..rng.random_range(1..=4) {
                let p = pos(rng, len);
                data[p] ^= 1 << rng.random_range(0..8);
            }
        }
        1 if len > 0 => {
            let p = pos(rng, len);
            data[p] = *pick(rng, &INTERESTING_BYTES);
        }
        2 if len > 0 => {
            for _ in 0..rng.random_range(1..=8) {
                let p = pos(rng, len);
                data[p] = rng.random();
            }
        }
        3 if len > 0 => {
            let p = pos(rng, len);
            let n = rng.random_range(1..=4096).min(len - p);
            data[p..p + n].fill(0);
        }
        4 if len > 0 => {
            let keep = match rng.random_range(0..3) {
                0 => len - rng.random_range(1..=len.min(64)),
                _ => rng.random_range(0..len),
            };
            data.truncate(keep);
        }
        5 => {
            let n = rng.random_range(1..=256);
            if rng.random_bool(0.5) || len == 0 {
                for _ in 0..n {
                    data.push(rng.random());
                }
            } else {
                let p = rng.random_range(0..len);
                let n = n.min(len - p);
                data.extend_from_within(p..p + n);
            }
        }
        6 if len > 1 => {
            let n = rng.random_range(1..=4096).min(len / 2).max(1);
            let src = rng.random_range(0..=len - n);
            let dst = rng.random_range(0..=len - n);
            data.copy_within(src..src + n, dst);
        }
        7 if len >= 4 => {
            let p = rng.random_range(0..=(len - 4) / 4) * 4;
            let v = huge_u32(rng);
            data[p..p + 4].copy_from_slice(&v.to_le_bytes());
        }
        8 if len >= 8 => {
            let p = rng.random_range(0..=(len - 8) / 8) * 8;
            // Aligned to 8, or the 4-aligned half in between.
            let p = if rng.random_bool(0.25) && p + 12 <= len {
                p + 4
            } else {
                p
            };
            let v = huge_u64(rng);
            data[p..p + 8].copy_from_slice(&v.to_le_bytes());
        }
        9 if !other.is_empty() => {
            let a = rng.random_range(0..=len);
            let b = rng.random_range(0..other.len());
            data.truncate(a);
            data.extend_from_slice(&other[b..]);
        }
        10 => {
            let p = rng.random_range(0..=len);
            let r = rng.random_range(1..512);
            let n = *pick(rng, &[1usize, 2, 4, 8, 16, 32, r]);
            let fill: u8 = if rng.random_bool(0.5) {
                0
            } else {
                rng.random()
            };
            data.splice(p..p, std::iter::repeat_n(fill, n));
        }
        11 if len > 0 => {
            let p = rng.random_range(0..len);
            let r = rng.random_range(1..4096);
            let n = *pick(rng, &[1usize, 4, 8, 32, r]);
            let n = n.min(len - p);
            data.drain(p..p + n);
        }
        12 if len > 0 => {
            let p = pos(rng, len);
            let n = rng.random_range(1..=64).min(len - p);
            rng.fill(&mut data[p..p + n]);
        }
        _ => {
            // The mutation does not apply to this input: flip a byte if any.
            if len > 0 {
                let p = rng.random_range(0..len);
                data[p] ^= 0xFF;
            } else {
                data.push(rng.random());
            }
        }
    }
    if data.len() > max_len {
        data.truncate(max_len);
    }
    m
}

/// Applies 1 to 3 mutations (now and then up to 8).
pub fn mutate(rng: &mut StdRng, data: &mut Vec<u8>, other: &[u8], max_len: usize) {
    let n = match rng.random_range(0..16) {
        0..=7 => 1,
        8..=11 => 2,
        12..=13 => 3,
        _ => rng.random_range(4..=8),
    };
    for _ in 0..n {
        mutate_once(rng, data, other, max_len);
    }
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Where the records of a run start: `(offset, framed length, kind)` of each one
/// whose header looks right (magic, version, bounded length, fits), walking from
/// `start` in steps of the framed length. Checksums are not checked.
pub fn record_frames(b: &[u8], start: usize) -> Vec<(usize, usize, u8)> {
    let mut out = Vec::new();
    let mut pos = start;
    while pos + RECORD_HEADER_LEN <= b.len() {
        let h = &b[pos..];
        if u16_at(h, 10) != RECORD_MAGIC || h[9] != RECORD_VERSION {
            break;
        }
        let len = u32_at(h, 4) as u64;
        if len > MAX_PAYLOAD_LEN {
            break;
        }
        let framed = (RECORD_HEADER_LEN as u64 + len).div_ceil(8) * 8;
        let Ok(framed) = usize::try_from(framed) else {
            break;
        };
        if pos + RECORD_HEADER_LEN + len as usize > b.len() {
            break;
        }
        out.push((pos, framed, h[8]));
        pos += framed;
    }
    out
}

/// Recomputes the CRC of every record of the run starting at `start` whose header
/// looks right, so that a mutated field is decoded instead of failing the
/// checksum. Returns how many were fixed.
pub fn fix_record_crcs(b: &mut [u8], start: usize) -> usize {
    let frames = record_frames(b, start);
    for &(pos, _, _) in &frames {
        let len = u32_at(b, pos + 4) as usize;
        let crc = crc32fast::hash(&b[pos + 4..pos + RECORD_HEADER_LEN + len]);
        b[pos..pos + 4].copy_from_slice(&crc.to_le_bytes());
    }
    frames.len()
}

/// Recomputes a container file header's CRC (bytes 16..64 into 12..16).
pub fn fix_file_header_crc(b: &mut [u8]) {
    if b.len() >= FILE_HEADER_LEN {
        let crc = crc32fast::hash(&b[16..FILE_HEADER_LEN]);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A whole container file: its header's CRC and those of its records.
pub fn fix_container(b: &mut [u8]) {
    fix_file_header_crc(b);
    fix_record_crcs(b, FILE_HEADER_LEN);
}

/// A segment file: the table's CRC (where the trailer says the table is, if that
/// is inside the file) and the trailer's CRC. With `relocate`, the trailer is
/// first made to describe a table that ends right before it (keeping its length
/// if that fits), so the table is read from where the mutation left it.
pub fn fix_segment(b: &mut [u8], relocate: bool) {
    if b.len() < TRAILER_LEN {
        return;
    }
    let t = b.len() - TRAILER_LEN;
    if relocate {
        let table_len = u64_at(b, t + 8);
        if table_len <= t as u64 {
            let off = t as u64 - table_len;
            b[t..t + 8].copy_from_slice(&off.to_le_bytes());
        }
    }
    let off = u64_at(b, t);
    let table_len = u64_at(b, t + 8);
    if let Some(end) = off.checked_add(table_len) {
        if end <= t as u64 {
            let crc = crc32fast::hash(&b[off as usize..end as usize]);
            b[t + 16..t + 20].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&b[t..t + 28]);
    b[t + 28..t + 32].copy_from_slice(&crc.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_mutation_keeps_the_bound_and_is_deterministic() {
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
            for _ in 0..10_000 {
                mutate(&mut rng, &mut data, b"other input", 1000);
                assert!(data.len() <= 1000);
                if data.is_empty() {
                    data.extend_from_slice(b"again");
                }
            }
            data
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
