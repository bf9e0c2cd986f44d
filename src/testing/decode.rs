//! Entry points for fuzzing the decoders (cargo feature `testing`): each takes
//! arbitrary bytes and must return (never panic, loop or allocate without
//! bound). They report how far decoding got, so a fuzzer can tell inputs apart.

use crate::format::file_header::FileHeader;
use crate::format::record::{self, framed_len, HEADER_LEN};
use crate::format::segment_file::{decode_table, decode_trailer, TRAILER_LEN};

/// Decodes `bytes` as a run of container records (as recovery does: header,
/// length bound, checksum, payload), stopping at the first that does not
/// decode. Returns how many decoded.
pub fn decode_records(bytes: &[u8]) -> usize {
    let mut pos = 0usize;
    let mut n = 0;
    while pos + HEADER_LEN <= bytes.len() {
        let b = &bytes[pos..];
        let Ok(h) = record::decode_header(b) else {
            break;
        };
        let framed = framed_len(h.len as usize) as usize;
        if framed > b.len() || record::verify(b, &h).is_err() {
            break;
        }
        if record::decode_payload(h.kind, &b[HEADER_LEN..HEADER_LEN + h.len as usize]).is_err() {
            break;
        }
        n += 1;
        pos += framed;
    }
    n
}

/// Decodes the payload of a record of kind `kind` (its byte on disk) without a
/// checksum in the way: reaches the payload decoders with any bytes.
pub fn decode_payload(kind: u8, payload: &[u8]) -> bool {
    let mut head = [0u8; HEADER_LEN];
    head[8] = kind;
    head[9] = record::RECORD_VERSION;
    head[10..12].copy_from_slice(&record::RECORD_MAGIC.to_le_bytes());
    match record::decode_header(&head) {
        Ok(h) => record::decode_payload(h.kind, payload).is_ok(),
        Err(_) => false,
    }
}

/// Decodes `bytes` as a container file header. Returns whether it decoded.
pub fn decode_file_header(bytes: &[u8]) -> bool {
    FileHeader::decode(bytes).is_ok()
}

/// Decodes `bytes` as a whole segment file's trailer and table (as opening
/// one does). Returns the number of files its table lists, if it decoded.
pub fn decode_segment_file(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < TRAILER_LEN {
        return None;
    }
    let len = bytes.len() as u64;
    let (table_offset, table_len, table_crc) =
        decode_trailer(&bytes[bytes.len() - TRAILER_LEN..], len).ok()?;
    let start = usize::try_from(table_offset).ok()?;
    let end = start.checked_add(usize::try_from(table_len).ok()?)?;
    let table = bytes.get(start..end)?;
    decode_table(table, table_offset, table_crc)
        .ok()
        .map(|t| t.entries.len())
}

/// The hot ranges of a whole segment file: `(path, offset within the file,
/// len, the file's len)` each, if its trailer and table decode.
pub fn segment_hot_ranges(bytes: &[u8]) -> Option<Vec<(String, u64, u64, u64)>> {
    if bytes.len() < TRAILER_LEN {
        return None;
    }
    let (table_offset, table_len, table_crc) =
        decode_trailer(&bytes[bytes.len() - TRAILER_LEN..], bytes.len() as u64).ok()?;
    let start = usize::try_from(table_offset).ok()?;
    let end = start.checked_add(usize::try_from(table_len).ok()?)?;
    let t = decode_table(bytes.get(start..end)?, table_offset, table_crc).ok()?;
    Some(
        t.hot
            .iter()
            .map(|h| {
                let e = &t.entries[h.entry as usize];
                (e.path.clone(), h.offset, h.len, e.len)
            })
            .collect(),
    )
}
