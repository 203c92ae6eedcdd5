//! Per-worker state reached through the GS segment base.
//!
//! Why not a `thread_local!`: a green thread can be preempted on one worker and resumed on
//! another, so any TLS address the compiler computed (and may have kept in a register) before the
//! preemption would point into the *old* worker's TLS. Each worker instead sets its GS base to its
//! `WorkerLocal` (arch_prctl(ARCH_SET_GS); glibc leaves GS unused on x86-64) and every access is a
//! single `gs:`-relative instruction, which is atomic with respect to preemption and can never be
//! cached by the compiler (`asm!` without `pure`). The preemption counter in particular is
//! incremented by ONE instruction, so an interrupt can never split the read-modify-write and
//! migrate the thread in between.

use crate::worker::{WorkerShared, WorkerState};
use core::arch::asm;
use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

thread_local! {
    /// True on worker threads. A stale TLS address after migration still reads `true`, because
    /// green threads only ever migrate between workers.
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
}

#[repr(C)]
pub struct WorkerLocal {
    /// gs:[0] — points to itself, so `gs:[0]` yields the struct's address.
    self_ptr: *const WorkerLocal,
    /// gs:[8] — preemption is disabled while nonzero.
    pub preempt_disable: AtomicU32,
    /// gs:[12] — the running green thread executes a long request and may be interrupted.
    pub preemptible: AtomicU8,
    /// gs:[13] — an interrupt arrived while preemption was disabled; take it when re-enabled.
    pub preempt_pending: AtomicU8,
    /// gs:[16] — interrupted rip, handed from an interrupt handler to `preempt::entry`'s stub.
    pub interrupted_rip: AtomicU64,
    /// gs:[24] — lowest stack pointer at which the running green thread can still take the
    /// preemption frame (stack bottom + frame + reserve); checked by the asm IPI stub.
    pub min_preempt_rsp: AtomicU64,
    /// This worker's shared half (queues, timer deadline, counters); lives as long as the runtime.
    pub shared: *const WorkerShared,
    /// Usable stack range of the running green thread, for the interrupt path's sanity check.
    pub stack_lo: AtomicU64,
    pub stack_hi: AtomicU64,
    /// Preemption disables taken by the runtime's panic hook for the panic now unwinding on this
    /// worker, given back when its request ends (`worker::panic`).
    pub panic_holds: AtomicU32,
    /// Everything else, touched only by this worker's own OS thread (never by signal handlers).
    state: UnsafeCell<WorkerState>,
}

pub const OFF_DISABLE: usize = 8;
pub const OFF_PREEMPTIBLE: usize = 12;
pub const OFF_PENDING: usize = 13;
pub const OFF_INTERRUPTED_RIP: usize = 16;
pub const OFF_MIN_PREEMPT_RSP: usize = 24;
const _: () = assert!(core::mem::offset_of!(WorkerLocal, preempt_disable) == OFF_DISABLE);
const _: () = assert!(core::mem::offset_of!(WorkerLocal, preemptible) == OFF_PREEMPTIBLE);
const _: () = assert!(core::mem::offset_of!(WorkerLocal, preempt_pending) == OFF_PENDING);
const _: () = assert!(core::mem::offset_of!(WorkerLocal, interrupted_rip) == OFF_INTERRUPTED_RIP);
const _: () = assert!(core::mem::offset_of!(WorkerLocal, min_preempt_rsp) == OFF_MIN_PREEMPT_RSP);

impl WorkerLocal {
    pub fn new(state: WorkerState, shared: *const WorkerShared) -> Box<WorkerLocal> {
        let mut b = Box::new(WorkerLocal {
            self_ptr: std::ptr::null(),
            preempt_disable: AtomicU32::new(0),
            preemptible: AtomicU8::new(0),
            preempt_pending: AtomicU8::new(0),
            interrupted_rip: AtomicU64::new(0),
            min_preempt_rsp: AtomicU64::new(u64::MAX),
            shared,
            stack_lo: AtomicU64::new(0),
            stack_hi: AtomicU64::new(0),
            panic_holds: AtomicU32::new(0),
            state: UnsafeCell::new(state),
        });
        b.self_ptr = &*b;
        b
    }

    /// This worker's shared half.
    pub fn shared(&self) -> &WorkerShared {
        // SAFETY: set at creation to an element of the runtime's worker array, which outlives
        // every worker thread.
        unsafe { &*self.shared }
    }

    /// The worker-private part.
    ///
    /// # Safety
    /// Only the owning worker's OS thread may call this, and the returned reference must not be
    /// held across a green-thread switch (the thread may continue on another worker).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn state(&self) -> &mut WorkerState {
        // SAFETY: per the contract, only this worker's thread accesses `state`, one borrow at a time.
        unsafe { &mut *self.state.get() }
    }
}

/// Installs `local` as the calling thread's worker state. It must outlive the thread's use of it.
pub fn install(local: &WorkerLocal) -> std::io::Result<()> {
    const ARCH_SET_GS: libc::c_long = 0x1001;
    // SAFETY: sets this thread's GS base to a live WorkerLocal; nothing else in the process uses GS.
    let r = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SET_GS, local as *const WorkerLocal as usize) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    ON_WORKER.with(|w| w.set(true));
    Ok(())
}

/// Detaches the calling thread from its worker state.
pub fn uninstall() {
    const ARCH_SET_GS: libc::c_long = 0x1001;
    ON_WORKER.with(|w| w.set(false));
    // SAFETY: resets this thread's GS base to 0, its initial value.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SET_GS, 0usize) };
}

#[inline(always)]
pub fn on_worker() -> bool {
    ON_WORKER.with(|w| w.get())
}

/// The current worker's state. Must only be called where `on_worker()` is true.
#[inline(always)]
pub fn current() -> &'static WorkerLocal {
    let p: *const WorkerLocal;
    // SAFETY: on a worker thread gs:[0] holds the WorkerLocal's address (see `install`), which
    // lives until the worker thread exits. Not `pure`: must be re-read after every possible switch.
    unsafe { asm!("mov {}, qword ptr gs:[0]", out(reg) p, options(nostack, readonly, preserves_flags)) };
    // SAFETY: see above.
    unsafe { &*p }
}

#[inline(always)]
pub fn disable_raw() {
    // SAFETY: one gs-relative instruction on this worker's own counter (see module docs).
    unsafe { asm!("add dword ptr gs:[{o}], 1", o = const OFF_DISABLE, options(nostack)) };
}

/// Decrements the counter; true if it reached zero.
#[inline(always)]
pub fn enable_raw_reached_zero() -> bool {
    let zero: u8;
    // SAFETY: as in `disable_raw`.
    unsafe { asm!("sub dword ptr gs:[{o}], 1", "setz {z}", o = const OFF_DISABLE, z = out(reg_byte) zero, options(nostack)) };
    zero != 0
}

#[inline(always)]
pub fn pending_raw() -> bool {
    let p: u8;
    // SAFETY: reads this worker's pending flag.
    unsafe { asm!("mov {p}, byte ptr gs:[{o}]", o = const OFF_PENDING, p = out(reg_byte) p, options(nostack, readonly, preserves_flags)) };
    p != 0
}

/// Current depth of `preempt::disable` on this worker.
pub fn disable_depth() -> u32 {
    current().preempt_disable.load(Ordering::Relaxed)
}
