//! Reading an exported file under `VerifyPolicy::OnFirstRead`: a `FileHandle`
//! over the file's slice of its segment file's mapping that checks each block
//! a read touches against the block's CRC the first time, before the bytes are
//! handed out. What tantivy never reads is never checked (nor read); what it
//! reads was checked first. Damage fails the read naming the segment file and
//! the block's offset, and every later read of that file.

use std::io;
use std::ops::Range;
use std::sync::Arc;

use ownedbytes::OwnedBytes;
use tantivy::directory::FileHandle;
use tantivy::HasLen;

use super::segments::Checks;

pub(crate) struct CheckedHandle {
    /// The whole file.
    bytes: OwnedBytes,
    checks: Arc<Checks>,
    /// The file's entry in its segment file's table.
    entry: usize,
}

impl CheckedHandle {
    pub fn new(bytes: OwnedBytes, checks: Arc<Checks>, entry: usize) -> CheckedHandle {
        CheckedHandle {
            bytes,
            checks,
            entry,
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
            .check_blocks(self.entry, self.bytes.as_slice(), range.clone())?;
        Ok(self.bytes.slice(range))
    }
}
