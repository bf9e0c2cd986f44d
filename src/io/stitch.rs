//! One contiguous view of a file kept in several container extents, without
//! copying: each extent's pages are mapped again, one after the other, into a
//! reserved address range (`mremap` with `old_size = 0` makes a second mapping
//! of the same pages of a shared file mapping; no file descriptor needed).
//!
//! One of the few modules with `unsafe` (with `fs`): each block carries a
//! `// SAFETY:` comment.
//!
//! The extents must start on a page and all but the last must be whole pages
//! long — what `Container::append_aligned` gives a file written in several
//! chunks. Anything else, or a kernel that refuses, gets an error and the
//! caller copies instead.

use std::io;
use std::ops::Deref;

use ownedbytes::{OwnedBytes, StableDeref};

/// Maps `parts` (slices of read-only shared file mappings, in order) as one
/// range. The result stays valid when the mappings the parts came from go
/// away (the new mapping holds the file, as every mapping does).
/// `on_unmap` runs once the new mapping is gone (its pages, no longer mapped
/// here, can then be dropped from the page cache).
pub fn stitch(parts: &[OwnedBytes], on_unmap: Option<OnUnmap>) -> io::Result<OwnedBytes> {
    let page = super::fs::page_size() as usize;
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(unsuitable("fewer than two parts, or an empty one"));
    }
    for (i, p) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if !(p.as_slice().as_ptr() as usize).is_multiple_of(page)
            || (!last && !p.len().is_multiple_of(page))
        {
            return Err(unsuitable("a part is not page-aligned"));
        }
    }
    let map_len = len.div_ceil(page) * page;
    // SAFETY: a fresh anonymous reservation, no address requested: it cannot
    // overlap anything we or the allocator use. PROT_NONE until replaced.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let mut stitched = Stitched {
        ptr: base as usize,
        len,
        map_len,
        on_unmap: None,
    };
    let mut at = 0usize;
    for p in parts {
        let span = p.len().div_ceil(page) * page;
        // SAFETY: the source is the start of a live, page-aligned slice of a
        // read-only shared mapping (held by `parts` for the whole call); with
        // `old_size = 0` the kernel only adds a second mapping of its pages
        // (it refuses private mappings with EINVAL). The destination
        // `base + at .. base + at + span` lies inside our own reservation
        // (`at + span <= map_len`: spans add up to `len` rounded up to a
        // page), which MREMAP_FIXED replaces and nobody else uses.
        let got = unsafe {
            libc::mremap(
                p.as_slice().as_ptr() as *mut libc::c_void,
                0,
                span,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                (stitched.ptr + at) as *mut libc::c_void,
            )
        };
        if got == libc::MAP_FAILED {
            // `stitched` drops: the reservation and what was mapped into it go.
            return Err(io::Error::last_os_error());
        }
        at += span;
    }
    stitched.on_unmap = on_unmap;
    Ok(OwnedBytes::new(stitched))
}

fn unsuitable(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("cannot stitch: {why}"))
}

/// What to do once a stitched mapping is gone.
pub type OnUnmap = Box<dyn FnOnce() + Send + Sync>;

/// The reserved range and the bytes mapped into it; unmapped on drop.
struct Stitched {
    ptr: usize,
    len: usize,
    map_len: usize,
    on_unmap: Option<OnUnmap>,
}

impl Deref for Stitched {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` is mapped readable (every page of it was
        // replaced by a mapping of file pages that hold written bytes) for as
        // long as `self` lives, and nothing writes through it: the file's
        // bytes there are never rewritten (see `FsFile::map`).
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

// SAFETY: the address does not move when `Stitched` moves (it is a mapping,
// not inline data), so a slice handed out stays valid while the value lives.
unsafe impl StableDeref for Stitched {}

impl Drop for Stitched {
    fn drop(&mut self) {
        // SAFETY: exactly the range we reserved in `stitch`; no slice of it
        // outlives `self` (OwnedBytes keeps `self` alive while one exists).
        let rc = unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.map_len) };
        if rc != 0 {
            log::warn!("munmap of a stitched view: {}", io::Error::last_os_error());
        }
        if let Some(f) = self.on_unmap.take() {
            f();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{fs::FsStorage, Storage};

    #[test]
    fn parts_of_a_file_mapping_read_as_one_range() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(dir.path()).unwrap();
        let file = storage.create("f").unwrap();
        let bytes: Vec<u8> = (0..8 * 4096u32).map(|i| (i % 251) as u8).collect();
        file.write_at(0, &bytes).unwrap();
        let view = file.view(bytes.len() as u64).unwrap();
        // Pages 1, 4..6 and part of 7: not adjacent in the file.
        let ranges = [4096..8192u64, 4 * 4096..6 * 4096, 7 * 4096..7 * 4096 + 100];
        let parts: Vec<OwnedBytes> = ranges
            .iter()
            .map(|r| view.read(r.clone()).unwrap())
            .collect();
        let unmapped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = unmapped.clone();
        let on_unmap: OnUnmap =
            Box::new(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
        let whole = stitch(&parts, Some(on_unmap)).unwrap();
        let want: Vec<u8> = ranges
            .iter()
            .flat_map(|r| bytes[r.start as usize..r.end as usize].to_vec())
            .collect();
        drop((parts, view, file));
        assert_eq!(whole.as_slice(), &want[..]);
        let slice = whole.slice(5000..6000);
        drop(whole);
        assert!(
            !unmapped.load(std::sync::atomic::Ordering::SeqCst),
            "a slice keeps it"
        );
        assert_eq!(slice.as_slice(), &want[5000..6000]);
        drop(slice);
        assert!(unmapped.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn unaligned_or_private_parts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(dir.path()).unwrap();
        let file = storage.create("f").unwrap();
        file.write_at(0, &[7u8; 3 * 4096]).unwrap();
        let view = file.view(3 * 4096).unwrap();
        let unaligned = [view.read(10..4106).unwrap(), view.read(8192..8200).unwrap()];
        assert!(stitch(&unaligned, None).is_err());
        let short_middle = [view.read(0..100).unwrap(), view.read(8192..8200).unwrap()];
        assert!(stitch(&short_middle, None).is_err());
        assert!(stitch(&[view.read(0..4096).unwrap()], None).is_err());
    }
}
