//! The global allocator: the system allocator with preemption disabled around every call.
//!
//! glibc's malloc keeps per-thread caches in TLS; a green thread preempted inside it and resumed
//! on another worker would corrupt both threads' caches. Disabling preemption is two gs-relative
//! instructions; an interrupt arriving meanwhile is deferred to the end of the call, not lost.

use crate::preempt;
use std::alloc::{GlobalAlloc, Layout, System};

pub struct PreemptSafeAlloc;

// SAFETY: delegates every operation to System unchanged; the preemption guard has no effect on
// the memory returned.
unsafe impl GlobalAlloc for PreemptSafeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
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

#[global_allocator]
static GLOBAL: PreemptSafeAlloc = PreemptSafeAlloc;
