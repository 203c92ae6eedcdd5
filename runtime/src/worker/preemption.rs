//! The worker's side of a preemption: what the preemption entry's handler does on the
//! interrupted green thread (park it and continue on a fresh one, or let it run to completion
//! when that is impossible), and what its resume path does when a parked thread runs again;
//! registered with `preempt::hook::set_handler` when a runtime starts (`Builder::start`). Both
//! run on the worker's preemption stack (`preempt::entry`).

use super::switch::{after_switch, park_preempted, start_quantum_if_timed};
use super::{current, panic};
use crate::policy::timer::DISARMED;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a taken preemption does (`preempt::hook::Handler`): runs on the worker's preemption
/// stack after the entry saved the interrupted thread's full state (`interrupted_rip`: where it
/// stopped; `frame`: its saved registers). Parks the thread and never returns, or returns whether
/// the entry should arm the word once the thread's state is restored.
pub extern "C" fn on_preempt(interrupted_rip: u64, frame: u64) -> u64 {
    let probe = PREEMPT_PROBE.load(Ordering::Relaxed);
    if probe != 0 {
        // SAFETY: only `set_preempt_probe` stores here, always a valid `fn()`.
        let probe: fn() = unsafe { std::mem::transmute::<usize, fn()>(probe) };
        probe();
        // The interrupted request stays where it is and may be interrupted again.
        return 1;
    }
    preempt_or_run_to_completion(interrupted_rip, frame)
}

/// What the entry's resume path does when a thread `on_preempt` parked runs again, on whichever
/// worker took it (`preempt::hook::ResumeHandler`): the switch's bookkeeping, then a fresh
/// quantum for a timed request (thesis §5.1.1.1); returns whether to arm the word.
pub extern "C" fn on_resume() -> u64 {
    after_switch();
    current().shared().stats.preemptions.fetch_add(1, Ordering::Relaxed);
    u64::from(start_quantum_if_timed())
}

/// A `fn()` the preemption entry calls *instead of* parking the interrupted green thread (0: none).
static PREEMPT_PROBE: AtomicUsize = AtomicUsize::new(0);

/// Makes every preemption of this process run `probe` in the interrupted green thread's context
/// (after the entry saved its full state) and return to it, instead of parking it. The
/// interrupt-path microbenchmark's receiver side; `None` restores normal preemption. The probe
/// must not allocate, block or touch thread-local storage.
///
/// # Safety
/// The probe runs in interrupt context on a worker (inside the preemption entry, on the green
/// stack of whatever request was interrupted, with preemption disabled): it must be
/// async-signal-safe, must not allocate, block, unwind, take locks or touch thread-local storage,
/// and must stay callable until `set_preempt_probe(None)` returned and no interrupt is in
/// flight (issue 39, item 4: it was a safe function).
#[doc(hidden)]
pub unsafe fn set_preempt_probe(probe: Option<fn()>) {
    PREEMPT_PROBE.store(probe.map_or(0, |f| f as usize), Ordering::Release);
}

/// Parks the current (long) request, or — if no green thread is available to take over — lets it
/// run to completion: its timer is disarmed rather than re-armed, so the timer core does not keep
/// interrupting a request it cannot preempt (an interrupt storm that would starve the worker).
fn preempt_or_run_to_completion(interrupted_rip: u64, frame: u64) -> u64 {
    if panic::refuse_while_panicking(interrupted_rip) {
        // Inside std's panic path: let it finish here; the timer core retries a quantum later.
        current().shared().stats.preempt_skipped.fetch_add(1, Ordering::Relaxed);
        return 1;
    }
    // Returns only when no green thread could take over.
    park_preempted(frame);
    current().shared().deadline.store(DISARMED, Ordering::Release);
    0
}
