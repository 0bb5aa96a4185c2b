//! Keeping the resident size of a long-running daemon near what it really holds (glibc
//! only; other allocators need nothing here). After a load peak (every completed UDP
//! transaction lives for Timer J, 32 s) glibc keeps freed memory in its arenas, spread
//! between live blocks, so an idle daemon would stay at its peak size:
//! - [`limit_arenas`]: one arena per thread (sled's, the flush pool's) scatters those
//!   blocks over many heaps that can never be trimmed; one arena serves a single core
//!   loop and a flush thread without measurable contention (BENCHMARKS.md: 100k
//!   subscriptions, RSS 115 MiB with glibc's default arenas, 100 MiB with one).
//! - [`release_free_heap`]: `malloc_trim` returns every whole free page; the daemon calls
//!   it every housekeeping period, off the core loop.

/// Returns free heap pages to the system where the allocator supports it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_heap() {
    // SAFETY: malloc_trim takes no pointers, locks each arena itself and is safe to call
    // from any thread at any time (glibc malloc(3)).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators return memory on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_heap() {}

/// Caps the allocator's arenas; call once at start, before other threads exist.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn limit_arenas() {
    // SAFETY: mallopt takes two integers and only changes allocator tuning (malloc(3)).
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_arenas() {}
