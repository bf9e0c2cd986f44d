//! Reading a virtual file: a `FileHandle` over the file's extents, each an
//! `OwnedBytes` slice of a container mapping. A range inside one extent is served
//! zero-copy. The first range across extents maps the whole file as one range
//! (`io::stitch`, when its extents are page-aligned slices of file mappings)
//! and serves it and every later read from there, zero-copy too; otherwise a
//! range across extents is assembled into one buffer. An extent whose bytes
//! no checksum vouched for yet (in a container file an open did not replay)
//! is checked by the first read that touches it, before any byte is served.

use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use ownedbytes::OwnedBytes;

use crate::io::stitch::OnUnmap;
use tantivy::directory::FileHandle;
use tantivy::HasLen;

/// A check to make before the bytes of one extent are served (an error
/// names the damage; it fails again on every later read).
pub(crate) type Check = Box<dyn Fn() -> io::Result<()> + Send + Sync>;

/// Checks not made yet, one per part (`None`: nothing to check).
struct Pending {
    checks: Vec<Option<Check>>,
    done: Vec<AtomicBool>,
}

pub(crate) struct ExtentsHandle {
    /// `(offset in the file, bytes)`, in file order.
    parts: Vec<(usize, OwnedBytes)>,
    /// The parts' first-read checks, if any part has one.
    pending: Option<Pending>,
    len: usize,
    /// The whole file as one range, once a read needed it (`None`: could not).
    whole: OnceLock<Option<OwnedBytes>>,
    /// What reads across extents cost.
    counters: Option<Arc<ReadCounters>>,
    /// Present while the parts (slices of shared file mappings) may still be
    /// mapped as one range; called once that mapping is gone (`io::stitch`).
    on_unmap: Mutex<Option<OnUnmap>>,
}

/// What reads of container files that span extents cost, since open (shared
/// with the handles, which may outlive the engine).
#[derive(Debug, Default)]
pub(crate) struct ReadCounters {
    /// Bytes copied to serve reads across extents.
    pub assembled: AtomicU64,
    /// Files mapped as one range to serve reads across extents.
    pub stitched: AtomicU64,
}

impl ExtentsHandle {
    pub fn new(bytes: Vec<OwnedBytes>) -> ExtentsHandle {
        Self::checked_on_read(bytes.into_iter().map(|b| (b, None)).collect())
    }

    /// A handle whose parts are checked, each by the first read that touches
    /// it, where a check is given.
    pub fn checked_on_read(bytes: Vec<(OwnedBytes, Option<Check>)>) -> ExtentsHandle {
        let mut parts = Vec::with_capacity(bytes.len());
        let mut checks = Vec::with_capacity(bytes.len());
        let mut len = 0;
        for (b, check) in bytes {
            if b.is_empty() {
                continue;
            }
            let n = b.len();
            parts.push((len, b));
            checks.push(check);
            len += n;
        }
        let pending = checks.iter().any(Option::is_some).then(|| Pending {
            done: checks
                .iter()
                .map(|c| AtomicBool::new(c.is_none()))
                .collect(),
            checks,
        });
        ExtentsHandle {
            parts,
            pending,
            len,
            whole: OnceLock::new(),
            counters: None,
            on_unmap: Mutex::new(None),
        }
    }

    /// A handle whose reads across extents are counted into `counters`.
    /// `stitch`: the parts are slices of shared file mappings and may be
    /// mapped as one range; the callback runs once that mapping is gone (the
    /// pages it held could not be dropped from the cache while it lived).
    pub fn counted(
        bytes: Vec<(OwnedBytes, Option<Check>)>,
        counters: Arc<ReadCounters>,
        stitch: Option<OnUnmap>,
    ) -> ExtentsHandle {
        ExtentsHandle {
            counters: Some(counters),
            on_unmap: Mutex::new(stitch),
            ..ExtentsHandle::checked_on_read(bytes)
        }
    }

    /// Makes the checks of parts `parts` not made yet.
    fn check(&self, parts: Range<usize>) -> io::Result<()> {
        let Some(p) = &self.pending else {
            return Ok(());
        };
        for i in parts {
            if p.done[i].load(Ordering::Acquire) {
                continue;
            }
            if let Some(check) = &p.checks[i] {
                check()?;
            }
            p.done[i].store(true, Ordering::Release);
        }
        Ok(())
    }

    /// The whole file as one mapped range, made on first use (`None` if it
    /// may not or cannot be).
    fn whole(&self) -> Option<&OwnedBytes> {
        self.whole
            .get_or_init(|| {
                let on_unmap = crate::sync::lock(&self.on_unmap).take()?;
                let parts: Vec<OwnedBytes> = self.parts.iter().map(|(_, b)| b.clone()).collect();
                match crate::io::stitch::stitch(&parts, Some(on_unmap)) {
                    Ok(whole) => {
                        if let Some(c) = &self.counters {
                            c.stitched.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(whole)
                    }
                    Err(e) => {
                        log::debug!("reads across extents will copy: {e}");
                        None
                    }
                }
            })
            .as_ref()
    }
}

impl std::fmt::Debug for ExtentsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtentsHandle")
            .field("extents", &self.parts.len())
            .field("len", &self.len)
            .field("stitched", &self.whole.get().map(Option::is_some))
            .finish()
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
        // The part holding range.start, and the parts up to range.end.
        let i = self.parts.partition_point(|(off, _)| *off <= range.start) - 1;
        let j = self.parts.partition_point(|(off, _)| *off < range.end);
        self.check(i..j)?;
        let (off, bytes) = &self.parts[i];
        if range.end <= off + bytes.len() {
            return Ok(bytes.slice(range.start - off..range.end - off));
        }
        if let Some(whole) = self.whole() {
            return Ok(whole.slice(range));
        }
        if let Some(c) = &self.counters {
            c.assembled.fetch_add(range.len() as u64, Ordering::Relaxed);
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

    #[test]
    fn each_part_is_checked_by_the_first_read_touching_it() {
        let data: Vec<u8> = (0..90u8).collect();
        let runs: Arc<Vec<AtomicU64>> = Arc::new((0..3).map(|_| AtomicU64::new(0)).collect());
        let part = |i: usize, ok: bool| {
            let runs = runs.clone();
            let check: Check = Box::new(move || {
                runs[i].fetch_add(1, Ordering::SeqCst);
                if ok {
                    Ok(())
                } else {
                    Err(io::Error::new(io::ErrorKind::InvalidData, "damaged"))
                }
            });
            (
                OwnedBytes::new(data[i * 30..(i + 1) * 30].to_vec()),
                Some(check),
            )
        };
        let h = ExtentsHandle::checked_on_read(vec![part(0, true), part(1, true), part(2, false)]);
        let count = |i: usize| runs[i].load(Ordering::SeqCst);
        assert_eq!(h.read_bytes(0..10).unwrap().as_slice(), &data[0..10]);
        assert_eq!((count(0), count(1), count(2)), (1, 0, 0));
        assert_eq!(h.read_bytes(20..40).unwrap().as_slice(), &data[20..40]);
        assert_eq!(h.read_bytes(0..60).unwrap().as_slice(), &data[0..60]);
        assert_eq!(
            (count(0), count(1), count(2)),
            (1, 1, 0),
            "checked once each"
        );
        // The damaged part fails every read that touches it, and only those.
        assert!(h.read_bytes(59..61).is_err());
        assert!(h.read_bytes(70..80).is_err());
        assert_eq!(count(2), 2);
        assert_eq!(h.read_bytes(30..60).unwrap().as_slice(), &data[30..60]);
    }
}
