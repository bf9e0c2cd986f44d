//! Reading an exported file block by block: a `FileHandle` over the file's
//! slice of its segment file's mapping that, the first time a read touches a
//! block, asks the kernel for it (under `Advice::Blocks`) and checks it
//! against the block's CRC (under `VerifyPolicy::OnFirstRead`) before the
//! bytes are handed out. What tantivy never reads is never checked (nor read);
//! what it reads was checked first. Damage fails the read naming the segment
//! file and the block's offset, and every later read of that file.

use std::io;
use std::ops::Range;
use std::sync::Arc;

use ownedbytes::OwnedBytes;
use tantivy::directory::FileHandle;
use tantivy::HasLen;

use super::segments::Checks;
use crate::io::ReadView;

pub(crate) struct CheckedHandle {
    /// The whole file.
    bytes: OwnedBytes,
    /// The segment file's mapping (`bytes` is a slice of it), for advice.
    view: Arc<dyn ReadView>,
    checks: Arc<Checks>,
    /// The file's entry in its segment file's table.
    entry: usize,
    /// Check blocks against their CRCs (`VerifyPolicy::OnFirstRead`).
    verify: bool,
}

impl CheckedHandle {
    pub fn new(
        bytes: OwnedBytes,
        view: Arc<dyn ReadView>,
        checks: Arc<Checks>,
        entry: usize,
        verify: bool,
    ) -> CheckedHandle {
        CheckedHandle {
            bytes,
            view,
            checks,
            entry,
            verify,
        }
    }
}

impl std::fmt::Debug for CheckedHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedHandle")
            .field("len", &self.bytes.len())
            .field("entry", &self.entry)
            .finish()
    }
}

impl HasLen for CheckedHandle {
    fn len(&self) -> usize {
        self.bytes.len()
    }
}

impl FileHandle for CheckedHandle {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        if range.start > range.end || range.end > self.bytes.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "range {range:?} outside a file of {} bytes",
                    self.bytes.len()
                ),
            ));
        }
        self.checks
            .fetch_blocks(&*self.view, self.entry, range.clone());
        if self.verify {
            self.checks
                .check_blocks(self.entry, self.bytes.as_slice(), range.clone())?;
        }
        Ok(self.bytes.slice(range))
    }
}
