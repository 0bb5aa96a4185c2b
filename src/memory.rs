//! The allocator, and keeping the resident size of a long-running daemon near what it
//! really holds.
//!
//! presenced runs on jemalloc, for two reasons measured in BENCHMARKS.md:
//! - sled frees on one thread what another allocated (its epoch GC, its I/O threads).
//!   glibc's malloc takes the owning arena's lock for each such free: a restore on two
//!   loader threads ran slower than on one. With jemalloc it runs twice as fast.
//! - After a load peak (every completed UDP transaction lives for Timer J, 32 s) an
//!   idle daemon should shrink back. jemalloc's background thread returns freed pages
//!   within about a second, with no call from us.
//!
//! The tuning is for a small box: one arena and small thread caches. The daemon holds
//! 100,000 subscriptions in ~53 MiB, against ~63 MiB with jemalloc's defaults. Setting
//! `_RJEM_MALLOC_CONF` in the environment overrides it. Without the default
//! `jemalloc` feature (the fuzz targets) the system allocator serves.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol before `main` (jemalloc(3), "TUNING").
#[cfg(feature = "jemalloc")]
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: Option<&'static std::ffi::c_char> = Some(
    // SAFETY: a pointer to the first byte of a NUL-terminated static string, which is
    // what jemalloc expects; nothing writes through it.
    unsafe {
        &*c"background_thread:true,narenas:1,tcache_max:1024,dirty_decay_ms:1000,muzzy_decay_ms:0"
            .as_ptr()
    },
);

#[cfg(all(test, feature = "jemalloc"))]
mod tests {
    /// The options above took: jemalloc started its background purging thread (at its
    /// initialisation, which the test harness's own allocations already caused).
    #[test]
    fn jemalloc_runs_with_a_background_purging_thread() {
        let names: Vec<String> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .collect();
        assert!(
            names.iter().any(|n| n.trim() == "jemalloc_bg_thd"),
            "threads: {names:?}"
        );
    }
}
