//! The allocator an application installs: the system allocator with preemption disabled around
//! every call.
//!
//! glibc's malloc keeps per-thread caches in TLS; a green thread preempted inside it and resumed
//! on another worker would corrupt both threads' caches. Disabling preemption is two gs-relative
//! instructions; an interrupt arriving meanwhile is deferred to the end of the call, not lost.
//!
//! A library cannot choose the process's allocator for its users, so the application installs
//! it (`#[global_allocator] static A: synergy::PreemptSafeAlloc = synergy::PreemptSafeAlloc;`) and
//! `Builder::start` checks that it did (`is_installed`) before it starts a preempting runtime.

use crate::preempt;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// The system allocator, never preempted half-way (see the module docs).
pub struct PreemptSafeAlloc;

/// Set by the first allocation through `PreemptSafeAlloc`.
static USED: AtomicBool = AtomicBool::new(false);

/// True if `PreemptSafeAlloc` is the process's global allocator: allocates a box and checks
/// that it went through it.
pub fn is_installed() -> bool {
    std::hint::black_box(Box::new(0u64));
    USED.load(Ordering::Relaxed)
}

// SAFETY: delegates every operation to System unchanged; the preemption guard has no effect on
// the memory returned.
unsafe impl GlobalAlloc for PreemptSafeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !USED.load(Ordering::Relaxed) {
            USED.store(true, Ordering::Relaxed);
        }
        preempt::disable();
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc(layout) };
        preempt::enable();
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        preempt::disable();
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        preempt::enable();
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        preempt::disable();
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) };
        preempt::enable();
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        preempt::disable();
        // SAFETY: forwarded contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        preempt::enable();
        p
    }
}
