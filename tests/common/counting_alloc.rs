//! A global allocator that wraps the system's and counts: every allocation
//! made (`made`), and the allocations and bytes still held (`held`). Shared
//! by the scale harness (bytes per cached object) and the detection
//! benchmark (allocations per comparison); each includes this file with
//! `#[path]` and installs it with `#[global_allocator]`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};

pub struct Counting;

static MADE: AtomicU64 = AtomicU64::new(0);
static HELD_ALLOCATIONS: AtomicIsize = AtomicIsize::new(0);
static HELD_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        MADE.fetch_add(1, Ordering::Relaxed);
        HELD_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        HELD_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD_ALLOCATIONS.fetch_sub(1, Ordering::Relaxed);
        HELD_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD_BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made so far (a reallocation is not counted as a new one).
#[allow(dead_code)]
pub fn made() -> u64 {
    MADE.load(Ordering::SeqCst)
}

/// Bytes and allocations held now.
#[allow(dead_code)]
pub fn held() -> (isize, isize) {
    (HELD_BYTES.load(Ordering::SeqCst), HELD_ALLOCATIONS.load(Ordering::SeqCst))
}
