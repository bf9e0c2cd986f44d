//! A counting global allocator: the largest single allocation and the live bytes
//! (and their peak) since the last [`reset`], so that each execution can be
//! checked for unbounded allocation.
//!
//! Install it in a binary or test crate with
//! `#[global_allocator] static A: jocky_fuzz::alloc::CountingAlloc = jocky_fuzz::alloc::CountingAlloc;`.
//!
//! Allocations above [`HARD_SINGLE`] bytes, or that would bring the live bytes
//! above [`HARD_LIVE`], are refused (the process then aborts); before refusing,
//! the input being executed is written to the findings folder with raw system
//! calls (no allocation), so even an allocation that would take the machine down
//! leaves a reproducer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A single allocation above this is refused outright (1 GiB).
pub const HARD_SINGLE: usize = 1 << 30;
/// Live bytes above this are refused outright (4 GiB).
pub const HARD_LIVE: usize = 4 << 30;

static ENABLED: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK_LIVE: AtomicUsize = AtomicUsize::new(0);
static MAX_SINGLE: AtomicUsize = AtomicUsize::new(0);

/// The counting allocator (a wrapper over [`System`]).
pub struct CountingAlloc;

impl CountingAlloc {
    #[inline]
    fn account(&self, size: usize) -> bool {
        if size > HARD_SINGLE {
            refuse(size);
            return false;
        }
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        if live > HARD_LIVE {
            LIVE.fetch_sub(size, Ordering::Relaxed);
            refuse(size);
            return false;
        }
        PEAK_LIVE.fetch_max(live, Ordering::Relaxed);
        MAX_SINGLE.fetch_max(size, Ordering::Relaxed);
        true
    }
}

fn refuse(size: usize) {
    crate::watch::emergency_dump("alloc", size as u64);
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !self.account(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !self.account(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old {
            if new_size > HARD_SINGLE {
                refuse(new_size);
                return std::ptr::null_mut();
            }
            if !self.account(new_size - old) {
                return std::ptr::null_mut();
            }
            // The block grown to `new_size` is one allocation of that size.
            MAX_SINGLE.fetch_max(new_size, Ordering::Relaxed);
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > old {
                LIVE.fetch_sub(new_size - old, Ordering::Relaxed);
            }
        } else if new_size < old {
            LIVE.fetch_sub(old - new_size, Ordering::Relaxed);
        }
        p
    }
}

/// Marks the counting allocator as installed (call once from the crate that
/// installs it); [`installed`] tells the runner whether its numbers mean anything.
pub fn mark_installed() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether [`mark_installed`] was called.
pub fn installed() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Starts a measurement: the peak becomes the current live bytes and the largest
/// single allocation 0. Returns the live bytes now (the baseline).
pub fn reset() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK_LIVE.store(live, Ordering::Relaxed);
    MAX_SINGLE.store(0, Ordering::Relaxed);
    live
}

/// `(largest single allocation, peak live bytes)` since the last [`reset`].
pub fn measured() -> (usize, usize) {
    (
        MAX_SINGLE.load(Ordering::Relaxed),
        PEAK_LIVE.load(Ordering::Relaxed),
    )
}
