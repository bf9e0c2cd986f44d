//! First-read checks of container files an open did not replay.
//!
//! An open that starts from a snapshot maps the container files before it
//! without reading their records (that is what makes it cheap). Their bytes
//! are still served only after a checksum vouched for them: the first read of
//! each extent in such a file finds the record holding it (a `Data` record,
//! or an `AtomicWrite` whose namespace and path come before the bytes) and
//! verifies that record's CRC; a damaged one fails the read, naming the file
//! and the offset, now and on every later read. Export and reclamation read
//! through the same path, so damaged bytes are never copied under a new
//! checksum either.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use super::Extent;
use crate::format::file_header::{container_file_name, FILE_HEADER_LEN};
use crate::format::record::{
    self, Payload, RecordKind, ALIGN, ATOMIC_BYTES_AT_LEAST, DATA_BYTES_AT, HEADER_LEN,
    MAX_NAME_LEN,
};
use crate::io::ReadView;
use crate::sync::lock;

/// Which container files were not replayed, and which extents in them were
/// checked since.
#[derive(Debug, Default)]
pub(super) struct FirstReadCheck {
    unchecked: RwLock<BTreeSet<u64>>,
    checked: Mutex<HashSet<(u64, u64)>>,
}

impl FirstReadCheck {
    pub fn new(unchecked: impl IntoIterator<Item = u64>) -> FirstReadCheck {
        FirstReadCheck {
            unchecked: RwLock::new(unchecked.into_iter().collect()),
            checked: Mutex::default(),
        }
    }

    /// Takes over the state of a later read-only open (a refresh).
    pub fn adopt(&self, newer: &FirstReadCheck) {
        *crate::sync::write(&self.unchecked) =
            std::mem::take(&mut *crate::sync::write(&newer.unchecked));
        lock(&self.checked).clear();
    }

    /// Whether container file `no` was not replayed on open.
    pub fn is_unchecked(&self, no: u64) -> bool {
        crate::sync::read(&self.unchecked).contains(&no)
    }

    /// Container files whose records were not checked on open.
    pub fn unchecked(&self) -> Vec<u64> {
        crate::sync::read(&self.unchecked).iter().copied().collect()
    }

    /// Whether the record holding `x` was checked already (or need not be).
    pub fn is_checked(&self, x: Extent) -> bool {
        !crate::sync::read(&self.unchecked).contains(&x.file_no)
            || lock(&self.checked).contains(&(x.file_no, x.offset))
    }

    /// Checks the record holding `x` (once per extent) if its file was not
    /// replayed on open.
    pub fn check(&self, view: &dyn ReadView, x: Extent) -> std::io::Result<()> {
        if !crate::sync::read(&self.unchecked).contains(&x.file_no)
            || lock(&self.checked).contains(&(x.file_no, x.offset))
        {
            return Ok(());
        }
        match find_record(view, x)? {
            Some(_) => {
                lock(&self.checked).insert((x.file_no, x.offset));
                Ok(())
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: no record that verifies holds the {} bytes at offset {} (damaged)",
                    container_file_name(x.file_no),
                    x.len,
                    x.offset
                ),
            )),
        }
    }
}

/// A first-read check not made yet: run it before serving any byte of its
/// extent. Holds the container file's view, so it can run after the file
/// left the container's list (the bytes it vouches for are still mapped).
pub(crate) struct Deferred {
    view: Arc<dyn ReadView>,
    extent: Extent,
    check: Arc<FirstReadCheck>,
}

impl Deferred {
    pub(super) fn new(
        view: Arc<dyn ReadView>,
        extent: Extent,
        check: Arc<FirstReadCheck>,
    ) -> Deferred {
        Deferred {
            view,
            extent,
            check,
        }
    }

    /// Checks the record holding the extent (at once if another read did).
    /// A damaged record fails every time.
    pub fn run(&self) -> std::io::Result<()> {
        self.check.check(&*self.view, self.extent)
    }
}

/// Where the record whose file bytes are exactly `x` starts, if one there
/// verifies: a `Data` record 48 bytes before them, or an `AtomicWrite` 44
/// bytes plus its two names before them (names of fewer than 4 bytes put it
/// nearer than a `Data` record's start).
fn find_record(view: &dyn ReadView, x: Extent) -> std::io::Result<Option<u64>> {
    const _: () = assert!(ATOMIC_BYTES_AT_LEAST < DATA_BYTES_AT);
    let end = x.offset + x.len;
    let lowest = x
        .offset
        .saturating_sub((ATOMIC_BYTES_AT_LEAST + 2 * MAX_NAME_LEN) as u64)
        .max(FILE_HEADER_LEN as u64);
    let Some(highest) = x.offset.checked_sub(ATOMIC_BYTES_AT_LEAST as u64) else {
        return Ok(None);
    };
    if highest < lowest {
        return Ok(None);
    }
    // Every aligned place a record holding these bytes may start, nearest first.
    let window = view.read(lowest..x.offset)?;
    let mut pos = highest - highest % ALIGN;
    while pos >= lowest {
        let at = (pos - lowest) as usize;
        if let Ok(h) = record::decode_header(&window.as_slice()[at..]) {
            let fits = pos + (HEADER_LEN as u64) + u64::from(h.len) == end;
            if fits && matches!(h.kind, RecordKind::Data | RecordKind::AtomicWrite) {
                let rec = view.read(pos..end)?;
                let payload = &rec.as_slice()[HEADER_LEN..];
                let starts_right = record::decode_payload(h.kind, payload).is_ok_and(|p| {
                    matches!(p, Payload::Data { .. } | Payload::AtomicWrite { .. })
                        && p.bytes_offset_in_payload()
                            .map(|o| pos + (HEADER_LEN + o) as u64)
                            == Some(x.offset)
                });
                if starts_right && record::verify(rec.as_slice(), &h).is_ok() {
                    return Ok(Some(pos));
                }
            }
        }
        if pos < ALIGN {
            break;
        }
        pos -= ALIGN;
    }
    Ok(None)
}
