//! The I/O layer: one small trait over the folder and its files, with a real
//! implementation ([`fs`], libc + mmap) and a fault-injecting twin ([`sim`]) that
//! keeps "written" apart from "durable" so tests can simulate power loss, ENOSPC
//! and EIO.
//!
//! Everything above this layer does I/O only through these traits.

pub mod fs;
pub(crate) mod pinned;
#[cfg(any(test, feature = "testing"))]
pub mod sim;
pub(crate) mod stitch;

use std::fmt;
use std::io;
use std::ops::Range;
use std::sync::Arc;

use ownedbytes::OwnedBytes;

/// A folder that holds container files.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Names of the regular files in the folder.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Creates a new, empty file; fails if it exists.
    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageFile>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>>;
    /// Removes a file. Views of it stay readable.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes creations and removals in the folder durable.
    fn sync_dir(&self) -> io::Result<()>;
    /// Takes an exclusive lock on the folder that other processes (and other
    /// opens in this process) cannot take while this storage is alive.
    /// Returns `false` when someone else holds it.
    fn try_lock(&self) -> io::Result<bool>;
    /// Number of file descriptors this storage holds now (folder and open files).
    fn fds_held(&self) -> usize;
}

/// One open file. Dropping the last `Arc` closes it; views outlive it.
#[allow(clippy::len_without_is_empty)]
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Makes everything written so far durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Reserves disk blocks for `offset..offset+len`, growing the file.
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Cuts or extends the file to `len` bytes.
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// A read-only view of the first `capacity` bytes that stays valid after the
    /// file is closed or removed. Only bytes below the file's length may be read.
    fn view(&self, capacity: u64) -> io::Result<Arc<dyn ReadView>>;
    /// Switches later writes through this handle to direct I/O: from then on
    /// every `write_at` has an offset, a length and a buffer address aligned to
    /// [`DIRECT_ALIGN`]. Returns `false` (and stays buffered) where direct I/O
    /// is not available.
    fn set_direct(&self) -> io::Result<bool> {
        Ok(false)
    }
    /// The descriptor, for in-kernel copies between files of one storage
    /// (`None` where there is none).
    fn raw_fd(&self) -> Option<std::os::unix::io::RawFd> {
        None
    }
    /// Copies `len` bytes at `src_offset` of `src` (written bytes, not only
    /// staged ones) to `offset` of this file inside the kernel: no copy
    /// through this process, and on file systems with reflinks (XFS, btrfs)
    /// whole blocks are shared instead of written. Returns how many bytes
    /// were copied from the start: fewer than `len` (0 where unsupported)
    /// leaves the rest to the caller.
    fn copy_from(
        &self,
        _src: &dyn StorageFile,
        _src_offset: u64,
        _offset: u64,
        _len: u64,
    ) -> io::Result<u64> {
        Ok(0)
    }
    /// How many bytes from the start a read through a mapping can fault in
    /// without taking new memory: on a tmpfs the offset of the first hole
    /// (a mapped hole faults in a page of memory, and on a full tmpfs the
    /// read gets SIGBUS, the process gone; `read_at` of a hole reads zeros);
    /// `None` where every byte below the length can (the default).
    fn mappable_len(&self) -> io::Result<Option<u64>> {
        Ok(None)
    }
    /// Starts write-back of `range` to the disk without waiting for it (a hint;
    /// not a durability point).
    fn start_write_back(&self, _range: Range<u64>) {}
    /// Waits for write-back of `range` and drops its pages from the page cache
    /// (a hint; pages mapped by someone stay).
    fn drop_cached(&self, _range: Range<u64>) {}
    /// Drops the clean pages of `range` from the page cache without waiting
    /// for anything (a hint; dirty pages and pages mapped by someone stay).
    fn forget_cached(&self, _range: Range<u64>) {}
}

/// The alignment direct I/O asks of offsets, lengths and buffers. 4096 covers
/// every logical block size Linux file systems use in practice.
pub const DIRECT_ALIGN: usize = 4096;

/// Read access to a file's bytes, zero-copy where the implementation allows it.
pub trait ReadView: Send + Sync + fmt::Debug {
    /// The bytes in `range`; the caller guarantees `range` lies within what has
    /// been written.
    fn read(&self, range: Range<u64>) -> io::Result<OwnedBytes>;
    /// Hints how a range will be accessed (no-op where unsupported).
    fn advise(&self, _range: Range<u64>, _advice: crate::policy::Advice) {}
    /// Whether [`read`](Self::read) returns slices of a read-only shared
    /// file mapping (which `stitch` can map again elsewhere).
    fn is_shared_mapping(&self) -> bool {
        false
    }
    /// The bytes of `range` are dead here (deleted, or served from elsewhere):
    /// drop their pages from this process and, where nothing else maps them,
    /// from the page cache. Slices still holding them keep working; they fault
    /// the same bytes back in. A hint (no-op where unsupported).
    fn release(&self, _range: Range<u64>) {}
    /// This process is done reading `range` for now (it copied it): drop its
    /// pages from this process's RSS; the page cache keeps them, so a later
    /// read, here or through a slice still held, finds them there. A hint
    /// (no-op where unsupported).
    fn unmap(&self, _range: Range<u64>) {}
    /// The CRC-32 of the bytes in `range`, read so that nothing stays behind:
    /// pages that were not cached before leave the page cache again, and none
    /// stays in this process's RSS. (Default: an ordinary read.)
    fn checksum(&self, range: Range<u64>) -> io::Result<u32> {
        Ok(crc32fast::hash(self.read(range)?.as_slice()))
    }
}
