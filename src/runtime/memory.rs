//! The allocator's side of the footprint. glibc's malloc keeps memory a
//! process has freed: a reconcile's temporaries, a relist's pages and the
//! decoded watch events sit between long-lived cache entries, and the pages
//! they leave empty stay resident unless given back. These two settings keep
//! the resident size near what is in use.

use std::time::Duration;

/// One malloc arena per thread would each keep their own freed memory; two
/// are enough for a runtime of a few threads. Call before other threads start.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Gives the whole free pages of every arena back to the system every
/// `interval` (`malloc_trim`, a walk of the free lists: about a millisecond
/// for a heap of 100 MB).
pub fn trim_every(interval: Duration) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            // SAFETY: malloc_trim only returns free memory to the system; it is thread-safe.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = interval;
}
