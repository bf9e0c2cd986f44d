//! The real storage: a folder on a local file system, through libc.
//!
//! This module, `io::stitch` and `export`'s mapping code are where jocky's
//! `unsafe` lives: each block carries a `// SAFETY:` comment.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use memmap2::MmapOptions;
use ownedbytes::OwnedBytes;

use super::{ReadView, Storage, StorageFile};
use crate::policy::Advice;

/// A folder on disk. Holds one file descriptor (the folder itself, which also
/// carries the `flock`) plus one per open [`FsFile`].
#[derive(Debug)]
pub struct FsStorage {
    root: PathBuf,
    dir: File,
    open_files: Arc<AtomicUsize>,
}

impl FsStorage {
    /// Opens (creating if missing) the folder at `root`.
    pub fn open(root: &Path) -> io::Result<FsStorage> {
        std::fs::create_dir_all(root)?;
        Self::open_existing(root)
    }

    /// Opens an existing folder (never creates it).
    pub fn open_existing(root: &Path) -> io::Result<FsStorage> {
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(root)?;
        Ok(FsStorage {
            root: root.to_path_buf(),
            dir,
            open_files: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn wrap(&self, file: File, name: &str) -> Arc<dyn StorageFile> {
        self.open_files.fetch_add(1, Ordering::SeqCst);
        Arc::new(FsFile {
            file,
            path: self.root.join(name),
            open_files: self.open_files.clone(),
        })
    }
}

fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad storage file name {name:?}"),
        ));
    }
    Ok(())
}

impl Storage for FsStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            names.push(name);
        }
        names.sort();
        Ok(names)
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        check_name(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(self.root.join(name))?;
        Ok(self.wrap(file, name))
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        check_name(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(self.root.join(name))?;
        Ok(self.wrap(file, name))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        std::fs::remove_file(self.root.join(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.dir.sync_all()
    }

    fn try_lock(&self) -> io::Result<bool> {
        // SAFETY: flock on a descriptor we own and keep open for our lifetime; no
        // memory is passed to the kernel.
        let rc = unsafe { libc::flock(self.dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(false)
        } else {
            Err(err)
        }
    }

    fn fds_held(&self) -> usize {
        1 + self.open_files.load(Ordering::SeqCst)
    }
}

/// An open file in an [`FsStorage`].
#[derive(Debug)]
pub struct FsFile {
    file: File,
    path: PathBuf,
    open_files: Arc<AtomicUsize>,
}

impl Drop for FsFile {
    fn drop(&mut self) {
        self.open_files.fetch_sub(1, Ordering::SeqCst);
    }
}

impl StorageFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn mappable_len(&self) -> io::Result<Option<u64>> {
        if !on_tmpfs(&self.file) {
            // Elsewhere a mapped hole reads as the zero page.
            return Ok(None);
        }
        // SAFETY: lseek on a descriptor we own; plain integer arguments. It
        // moves the file offset, which nothing here uses (reads and writes
        // are positional).
        let at = unsafe { libc::lseek(self.file.as_raw_fd(), 0, libc::SEEK_HOLE) };
        if at < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(at as u64))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn raw_fd(&self) -> Option<std::os::unix::io::RawFd> {
        Some(self.file.as_raw_fd())
    }

    fn copy_from(
        &self,
        src: &dyn StorageFile,
        src_offset: u64,
        offset: u64,
        len: u64,
    ) -> io::Result<u64> {
        let Some(src_fd) = src.raw_fd() else {
            return Ok(0);
        };
        let (Ok(mut off_in), Ok(mut off_out)) = (i64::try_from(src_offset), i64::try_from(offset))
        else {
            return Ok(0);
        };
        let mut done = 0u64;
        while done < len {
            let want = usize::try_from(len - done)
                .unwrap_or(usize::MAX)
                .min(1 << 30);
            // SAFETY: copy_file_range between two descriptors we hold open
            // for the whole call; the offsets are our own locals, which the
            // kernel advances; no buffer of ours is involved.
            let n = unsafe {
                libc::copy_file_range(
                    src_fd,
                    &mut off_in,
                    self.file.as_raw_fd(),
                    &mut off_out,
                    want,
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    // Not between these files or on this kernel: the caller
                    // copies the rest.
                    Some(libc::EXDEV | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => {
                        log::debug!("copy_file_range into {:?}: {e}", self.path);
                        Ok(done)
                    }
                    Some(libc::EINTR) => continue,
                    _ => Err(e),
                };
            }
            if n == 0 {
                // Past the end of the source: the caller sees the shortfall.
                return Ok(done);
            }
            done += n as u64;
        }
        Ok(done)
    }

    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        if on_tmpfs(&self.file) {
            // On a tmpfs `fallocate` takes and zeroes memory for the whole
            // range at once (2.5x the CPU per byte written, and RAM held for
            // bytes never written): grow the file instead, as where it is
            // not supported. There is no disk to keep contiguous.
            let end = offset + len;
            if self.len()? < end {
                self.file.set_len(end)?;
            }
            return Ok(());
        }
        // SAFETY: fallocate on a descriptor we own; plain integer arguments.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                0,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
            // File systems without fallocate: grow the file instead.
            let end = offset + len;
            if self.len()? < end {
                self.file.set_len(end)?;
            }
            return Ok(());
        }
        Err(err)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn set_direct(&self) -> io::Result<bool> {
        let fd = self.file.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own, with integer arguments only.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above; only adds O_DIRECT to the status flags.
        let rc = unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => Ok(false),
            _ => Err(err),
        }
    }

    fn start_write_back(&self, range: Range<u64>) {
        self.sync_range(range, libc::SYNC_FILE_RANGE_WRITE);
    }

    fn drop_cached(&self, range: Range<u64>) {
        self.sync_range(
            range.clone(),
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        );
        self.forget_cached(range);
    }

    fn forget_cached(&self, range: Range<u64>) {
        if range.end <= range.start {
            return;
        }
        // SAFETY: posix_fadvise on a descriptor we own, integer arguments only;
        // it changes what is cached, never the file's bytes. Linux keeps the
        // partial pages at both ends (a neighbour's bytes stay cached).
        let rc = unsafe {
            libc::posix_fadvise(
                self.file.as_raw_fd(),
                range.start as libc::off_t,
                (range.end - range.start) as libc::off_t,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        if rc != 0 {
            log::debug!("posix_fadvise(DONTNEED) on {:?} failed: {rc}", self.path);
        }
    }

    fn view(&self, capacity: u64) -> io::Result<Arc<dyn ReadView>> {
        Ok(Arc::new(self.map(capacity)?))
    }
}

impl FsFile {
    fn sync_range(&self, range: Range<u64>, flags: libc::c_uint) {
        if range.end <= range.start {
            return;
        }
        // SAFETY: sync_file_range on a descriptor we own, integer arguments only;
        // it schedules or waits for write-back and never changes the bytes.
        let rc = unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                range.start as libc::off64_t,
                (range.end - range.start) as libc::off64_t,
                flags,
            )
        };
        if rc != 0 {
            log::debug!(
                "sync_file_range on {:?} failed: {}",
                self.path,
                io::Error::last_os_error()
            );
        }
    }
}

/// A read-only mapping of a file.
pub struct MmapView {
    bytes: OwnedBytes,
    path: PathBuf,
}

impl std::fmt::Debug for MmapView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmapView")
            .field("path", &self.path)
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl ReadView for MmapView {
    fn is_shared_mapping(&self) -> bool {
        true
    }

    fn read(&self, range: Range<u64>) -> io::Result<OwnedBytes> {
        if range.start > range.end || range.end > self.bytes.len() as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("read {range:?} outside the mapping of {:?}", self.path),
            ));
        }
        Ok(self.bytes.slice(range.start as usize..range.end as usize))
    }

    fn release(&self, range: Range<u64>) {
        // Whole pages inside the range only: a neighbour's bytes stay cached.
        let page = page_size();
        let start = range.start.div_ceil(page) * page;
        let end = range.end / page * page;
        // MADV_PAGEOUT and MADV_DONTNEED only drop pages of this read-only
        // *shared* file mapping: a later access faults the file's (unchanged)
        // bytes back in, so no slice ever sees different bytes.
        if self.madvise(start..end, libc::MADV_PAGEOUT).is_err() {
            // Kernels before 5.4: at least take the pages out of our RSS.
            if let Err(e) = self.madvise(start..end, libc::MADV_DONTNEED) {
                log::debug!("madvise(DONTNEED) on {:?} failed: {e}", self.path);
            }
        }
    }

    fn unmap(&self, range: Range<u64>) {
        let page = page_size();
        let start = range.start.div_ceil(page) * page;
        let end = range.end / page * page;
        // MADV_DONTNEED on a read-only *shared* file mapping only takes the
        // pages out of this process; a later access faults the same bytes
        // back in from the page cache.
        if let Err(e) = self.madvise(start..end, libc::MADV_DONTNEED) {
            log::debug!("madvise(DONTNEED) on {:?} failed: {e}", self.path);
        }
    }

    fn checksum(&self, range: Range<u64>) -> io::Result<u32> {
        let bytes = self.read(range.clone())?;
        let page = page_size();
        let start = range.start.div_ceil(page) * page;
        let end = range.end / page * page;
        let was_cached = self.resident(start..end);
        let crc = crc32fast::hash(bytes.as_slice());
        drop(bytes);
        // Whole pages inside the range: out of our RSS (DONTNEED on a shared
        // file mapping keeps them cached), and the ones this read brought in
        // out of the page cache too (PAGEOUT), unless someone else maps them.
        if start < end {
            let mut run = start;
            while run < end {
                let idx = ((run - start) / page) as usize;
                let cached = was_cached.as_ref().is_none_or(|v| v[idx] & 1 == 1);
                let mut next = run + page;
                while next < end {
                    let j = ((next - start) / page) as usize;
                    if was_cached.as_ref().is_none_or(|v| v[j] & 1 == 1) != cached {
                        break;
                    }
                    next += page;
                }
                let code = if cached {
                    libc::MADV_DONTNEED
                } else {
                    libc::MADV_PAGEOUT
                };
                if let Err(e) = self.madvise(run..next, code) {
                    log::debug!("madvise after a checksum on {:?} failed: {e}", self.path);
                }
                run = next;
            }
        }
        Ok(crc)
    }

    fn advise(&self, range: Range<u64>, advice: Advice) {
        let Some(code) = advice.to_libc() else { return };
        // These advice values never change the bytes seen through the mapping.
        let page = page_size();
        if let Err(e) = self.madvise(range.start / page * page..range.end, code) {
            log::debug!("madvise({advice:?}) on {:?} failed: {e}", self.path);
        }
    }
}

/// The machine's page size (4 KiB on x86-64, up to 64 KiB on arm64): madvise
/// works on whole pages of it.
pub(crate) fn page_size() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf only reads a system constant; no pointers involved.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if n > 0 {
            n as u64
        } else {
            4096
        }
    })
}

impl FsFile {
    /// Maps the first `capacity` bytes read-only (see `StorageFile::view`).
    fn map(&self, capacity: u64) -> io::Result<MmapView> {
        let len = usize::try_from(capacity)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "view too large"))?;
        // SAFETY: the mapping is read-only and jocky never rewrites a byte that it
        // has handed out: container files are append-only, recovery cuts a torn
        // tail before anything past it is served, and the folder is flock'ed so no
        // other jocky process writes to it. Reads are only issued for ranges that
        // were written (below the file's length), so the part of the mapping past
        // the end of the file, reserved for appends, is never touched early.
        let mmap = unsafe { MmapOptions::new().len(len).map(&self.file)? };
        Ok(MmapView {
            bytes: OwnedBytes::new(mmap),
            path: self.path.clone(),
        })
    }
}

impl MmapView {
    /// Which pages of `range` (page-aligned) are in the page cache now, one
    /// byte per page (bit 0 set: resident); `None` if the kernel will not say.
    fn resident(&self, range: Range<u64>) -> Option<Vec<u8>> {
        let end = range.end.min(self.bytes.len() as u64);
        if end <= range.start {
            return Some(Vec::new());
        }
        let page = page_size();
        let mut vec = vec![0u8; (end - range.start).div_ceil(page) as usize];
        // SAFETY: `range.start..end` lies inside our live mapping (clipped
        // above, start page-aligned by the caller); `vec` holds one byte per
        // page of it, as mincore writes.
        let rc = unsafe {
            libc::mincore(
                self.bytes.as_slice().as_ptr().add(range.start as usize) as *mut libc::c_void,
                (end - range.start) as usize,
                vec.as_mut_ptr(),
            )
        };
        (rc == 0).then_some(vec)
    }

    /// `madvise(code)` over `range` (page-aligned start), clipped to the
    /// mapping. Callers pass only advice that leaves the bytes as they are.
    fn madvise(&self, range: Range<u64>, code: libc::c_int) -> io::Result<()> {
        let end = range.end.min(self.bytes.len() as u64);
        if end <= range.start {
            return Ok(());
        }
        debug_assert_eq!(range.start % page_size(), 0);
        // SAFETY: `range.start..end` lies inside our live mapping (clipped to its
        // length above; the start is page-aligned), and every caller passes
        // advice that does not change the bytes seen through a shared read-only
        // file mapping (see `release` and `advise`).
        let rc = unsafe {
            libc::madvise(
                self.bytes.as_slice().as_ptr().add(range.start as usize) as *mut libc::c_void,
                (end - range.start) as usize,
                code,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Whether `file` lives on a tmpfs (memory, no disk).
fn on_tmpfs(file: &File) -> bool {
    const TMPFS_MAGIC: libc::c_long = 0x0102_1994;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: fstatfs fills the struct we pass for a descriptor we own; it
    // is read only when the call succeeded.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) };
    // SAFETY: initialised by the successful call (zeroed otherwise).
    rc == 0 && unsafe { st.assume_init() }.f_type as libc::c_long == TMPFS_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks a file takes on its file system, bytes.
    fn allocated_bytes(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().blocks() * 512
    }

    #[test]
    fn allocating_on_a_tmpfs_grows_the_file_without_taking_memory() {
        let shm = Path::new("/dev/shm");
        let Ok(tmp) = tempfile::tempdir_in(shm) else {
            eprintln!("no /dev/shm here: nothing to check");
            return;
        };
        let storage = FsStorage::open(tmp.path()).unwrap();
        let file = storage.create("f").unwrap();
        if !on_tmpfs(&File::open(tmp.path().join("f")).unwrap()) {
            eprintln!("/dev/shm is not a tmpfs here: nothing to check");
            return;
        }
        file.allocate(0, 64 << 20).unwrap();
        assert_eq!(file.len().unwrap(), 64 << 20);
        let taken = allocated_bytes(&tmp.path().join("f"));
        assert!(taken < 1 << 20, "{taken} bytes of memory taken ahead");
        // Writes land and read back as on any file.
        file.write_at(5 << 20, b"jocky").unwrap();
        let mut back = [0u8; 5];
        file.read_at(5 << 20, &mut back).unwrap();
        assert_eq!(&back, b"jocky");
    }

    #[test]
    fn released_ranges_read_back_the_same_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(tmp.path()).unwrap();
        let file = storage.create("f").unwrap();
        let data: Vec<u8> = (0..64 * 4096u32).map(|i| (i * 7 % 251) as u8).collect();
        file.write_at(0, &data).unwrap();
        let view = file.view(data.len() as u64).unwrap();
        let slice = view.read(0..data.len() as u64).unwrap();
        assert_eq!(slice.as_slice(), &data[..]);
        // Unaligned ends: only whole pages inside go; all of it must still read.
        view.release(100..data.len() as u64 - 100);
        view.release(0..data.len() as u64);
        assert_eq!(
            slice.as_slice(),
            &data[..],
            "a held slice faults the bytes back"
        );
        assert_eq!(view.read(5000..9000).unwrap().as_slice(), &data[5000..9000]);
    }

    fn resident_pages(view: &MmapView, len: u64) -> usize {
        view.resident(0..len)
            .unwrap()
            .iter()
            .filter(|b| *b & 1 == 1)
            .count()
    }

    #[test]
    fn a_checksum_leaves_the_page_cache_as_it_found_it() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(tmp.path()).unwrap();
        let file = storage.create("f").unwrap();
        let len = 256 * 4096u64;
        let data: Vec<u8> = (0..len as u32).map(|i| (i * 13 % 251) as u8).collect();
        file.write_at(0, &data).unwrap();
        file.sync_data().unwrap();
        file.drop_cached(0..len);
        let file = FsFile {
            file: OpenOptions::new()
                .read(true)
                .write(true)
                .open(tmp.path().join("f"))
                .unwrap(),
            path: tmp.path().join("f"),
            open_files: Arc::new(AtomicUsize::new(1)),
        };
        let view = file.map(len).unwrap();
        let cold = resident_pages(&view, len);
        assert!(cold < 16, "{cold} pages cached after dropping them");
        assert_eq!(view.checksum(0..len).unwrap(), crc32fast::hash(&data));
        let after = resident_pages(&view, len);
        // MADV_PAGEOUT is best effort (a page under read-ahead or reclaim at
        // that moment stays): almost nothing, not nothing.
        assert!(
            after <= cold + 32,
            "a cold checksum left {after} of 256 pages cached (was {cold})"
        );
        // Warm pages stay warm.
        assert_eq!(view.read(0..len).unwrap().as_slice(), &data[..]);
        let warm = resident_pages(&view, len);
        assert!(warm > 200, "{warm}");
        assert_eq!(
            view.checksum(100..len - 100).unwrap(),
            crc32fast::hash(&data[100..len as usize - 100])
        );
        assert!(resident_pages(&view, len) >= warm - 2);
    }
}
