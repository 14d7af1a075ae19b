//! The process allocator (mimalloc) and its one tuning: memory the process
//! frees stays with it instead of going back to the system.
//!
//! An eviction of the record cache frees most of it at once, and the next
//! batches fill it again. With mimalloc's default (purge after 1 s) the
//! freed pages went back to the system and were faulted in again, zeroed:
//! allocation, page faults and `madvise` were ~16% of a replay's main
//! thread. Every cache is bounded, so the memory kept is bounded by the
//! peak. See ADR 0007. `MIMALLOC_PURGE_DELAY` in the environment wins.

use std::ffi::c_long;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in `mimalloc.h` (mimalloc v3, as bundled by
/// `libmimalloc-sys` 0.1): the option `MIMALLOC_PURGE_DELAY` sets. The test
/// below checks that this index is the one mimalloc reads from there.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Milliseconds freed memory stays with the process; -1: for good.
pub const PURGE_DELAY_MS: c_long = -1;

/// Applies the tuning (once, at start-up, before other threads exist).
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets one integer option of the allocator; mimalloc allows it
    // at any time and reads it on its next purge.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purge_delay() -> c_long {
        // SAFETY: reads one integer option.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_get(PURGE_DELAY)
        }
    }

    /// Run again in a child process with `MIMALLOC_PURGE_DELAY` set: the
    /// option at our index must hold that value, so the index names the
    /// purge delay of the mimalloc linked in.
    #[test]
    fn the_option_index_is_the_purge_delay() {
        if std::env::var_os("IDGRAPH_ALLOC_PROBE").is_some() {
            println!("purge-delay={}", purge_delay());
            return;
        }
        let exe = std::env::current_exe().expect("test binary path");
        let out = std::process::Command::new(exe)
            .args(["--exact", "alloc::tests::the_option_index_is_the_purge_delay", "--nocapture", "--test-threads=1"])
            .env("MIMALLOC_PURGE_DELAY", "4321")
            .env("IDGRAPH_ALLOC_PROBE", "1")
            .output()
            .expect("run the probe");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("purge-delay=4321"), "probe printed: {stdout}");
    }

    #[test]
    fn tune_sets_the_delay_unless_the_environment_does() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        tune();
        assert_eq!(purge_delay(), PURGE_DELAY_MS);
    }
}
