//! A cache prefetch hint, for loops that know which cold memory they will
//! touch a few steps ahead (the owner cache's buckets, the known-keys
//! filter's blocks).

/// Asks the processor to start loading the cache line holding `v`. Only a
/// hint: nothing is read into the program, so it cannot change a result.
#[inline]
pub fn read<T>(v: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is a hint that performs no architectural
    // memory access and cannot fault; the pointer comes from a live
    // reference besides. SSE (which provides it) is part of the x86_64
    // baseline.
    #[allow(unsafe_code)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(std::ptr::from_ref(v).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}
