//! Reading a virtual file: a `FileHandle` over the file's extents, each an
//! `OwnedBytes` slice of a container mapping. A range inside one extent is served
//! zero-copy; a range across extents is assembled into one buffer.

use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ownedbytes::OwnedBytes;
use tantivy::directory::FileHandle;
use tantivy::HasLen;

#[derive(Debug)]
pub(crate) struct ExtentsHandle {
    /// `(offset in the file, bytes)`, in file order.
    parts: Vec<(usize, OwnedBytes)>,
    len: usize,
    /// Where the bytes copied for reads across extents are counted.
    assembled: Option<Arc<AtomicU64>>,
}

impl ExtentsHandle {
    pub fn new(bytes: Vec<OwnedBytes>) -> ExtentsHandle {
        let mut parts = Vec::with_capacity(bytes.len());
        let mut len = 0;
        for b in bytes {
            if b.is_empty() {
                continue;
            }
            let n = b.len();
            parts.push((len, b));
            len += n;
        }
        ExtentsHandle {
            parts,
            len,
            assembled: None,
        }
    }

    /// Counts into `assembled` the bytes copied to serve reads across extents.
    pub fn counted(bytes: Vec<OwnedBytes>, assembled: Arc<AtomicU64>) -> ExtentsHandle {
        ExtentsHandle {
            assembled: Some(assembled),
            ..ExtentsHandle::new(bytes)
        }
    }
}

impl HasLen for ExtentsHandle {
    fn len(&self) -> usize {
        self.len
    }
}

impl FileHandle for ExtentsHandle {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        if range.start > range.end || range.end > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("range {range:?} outside a file of {} bytes", self.len),
            ));
        }
        if range.is_empty() {
            return Ok(OwnedBytes::empty());
        }
        // The part holding range.start.
        let i = self.parts.partition_point(|(off, _)| *off <= range.start) - 1;
        let (off, bytes) = &self.parts[i];
        if range.end <= off + bytes.len() {
            return Ok(bytes.slice(range.start - off..range.end - off));
        }
        if let Some(c) = &self.assembled {
            c.fetch_add(range.len() as u64, Ordering::Relaxed);
        }
        let mut out = Vec::with_capacity(range.len());
        for (off, bytes) in &self.parts[i..] {
            if *off >= range.end {
                break;
            }
            let from = range.start.saturating_sub(*off);
            let to = (range.end - off).min(bytes.len());
            out.extend_from_slice(&bytes.as_slice()[from..to]);
        }
        Ok(OwnedBytes::new(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_within_and_across_extents() {
        let data: Vec<u8> = (0..100u8).collect();
        let h = ExtentsHandle::new(vec![
            OwnedBytes::new(data[..10].to_vec()),
            OwnedBytes::empty(),
            OwnedBytes::new(data[10..55].to_vec()),
            OwnedBytes::new(data[55..].to_vec()),
        ]);
        assert_eq!(h.len(), 100);
        for start in 0..=100 {
            for end in start..=100 {
                let got = h.read_bytes(start..end).unwrap();
                assert_eq!(got.as_slice(), &data[start..end], "{start}..{end}");
            }
        }
        assert!(h.read_bytes(5..101).is_err());
    }
}
