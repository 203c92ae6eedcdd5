//! The one hook through which a taken preemption reaches the scheduler.
//!
//! The scheduler (`worker`) sits above `preempt`: it registers what a preemption does
//! (`set_handler`: park the green thread and continue on a fresh one) instead of the entry
//! calling into it, so the layers stay `local` → `preempt` → `worker`. Below `entry`, which
//! calls `run_handler` and `run_resume`.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The scheduler's handlers (`Handler`, `ResumeHandler`), 0 until registered.
static HANDLER: AtomicUsize = AtomicUsize::new(0);
static RESUME: AtomicUsize = AtomicUsize::new(0);

/// What a taken preemption calls, on the worker's preemption stack with the interrupted thread's
/// whole state saved (`preempt::entry`): `extern "C" fn(interrupted_rip, frame)`, the rip where
/// the thread stopped (for a preemption the runtime took itself, a deferred one or a compiler
/// interrupt, the return address of `entry::preempt_now`) and `frame`, the address of its saved
/// registers on its green stack. It either parks the thread (a context whose resumption runs
/// `ResumeHandler` and then restores `frame`) and continues elsewhere, never returning, or
/// returns to let the thread continue here: 1 to arm the preemption word once its state is
/// restored, 0 to leave it disarmed.
pub type Handler = extern "C" fn(u64, u64) -> u64;

/// What the entry's resume path calls, on the worker's preemption stack, when a thread the
/// handler parked runs again (on whichever worker): the bookkeeping of the switch that landed
/// there; returns as `Handler` does.
pub type ResumeHandler = extern "C" fn() -> u64;

/// Registers what a taken preemption does; called before any worker starts. Process-wide: every
/// runtime of the process registers the same functions. Crate-private (issue 39, item 4): they
/// run in interrupt context on every worker, so only the runtime's own may be set.
pub(crate) fn set_handler(handler: Handler, resume: ResumeHandler) {
    RESUME.store(resume as usize, Ordering::Release);
    HANDLER.store(handler as usize, Ordering::Release);
}

/// Called by the preemption entry (after it saved the full interrupted state) on the worker's
/// preemption stack; see `Handler`.
pub(crate) extern "C" fn run_handler(interrupted_rip: u64, frame: u64) -> u64 {
    let h = HANDLER.load(Ordering::Acquire);
    if h == 0 {
        // No scheduler: the interrupted code just continues (and stays preemptible).
        return 1;
    }
    // SAFETY: only `set_handler` stores here, always a `Handler`.
    let handler = unsafe { std::mem::transmute::<usize, Handler>(h) };
    handler(interrupted_rip, frame)
}

/// Called by the entry's resume path on the worker's preemption stack; see `ResumeHandler`.
pub(crate) extern "C" fn run_resume() -> u64 {
    let h = RESUME.load(Ordering::Acquire);
    // SAFETY: a thread is parked only by the registered `Handler`, registered with this one.
    let resume = unsafe { std::mem::transmute::<usize, ResumeHandler>(h) };
    resume()
}
