//! What an interrupt does when it reaches a worker: the decision every delivery path makes
//! (redirect into the preemption entry, defer until preemption is re-enabled, or ignore), and
//! taking a deferred preemption through the entry. Above `entry`, which it calls; what a taken
//! preemption then does is the scheduler's, registered in `hook`.

use crate::local::{self, PreemptState};
use std::sync::atomic::Ordering;

/// Decides, on the interrupted worker thread itself, whether an interrupt that hit stack pointer
/// `rsp` may redirect the thread into the preemption entry (and if so clears `preemptible`, so
/// that no second interrupt redirects it again). Async-signal-safe: touches only this worker's
/// atomics. The asm stubs of the ipi and uintr paths make the same decision.
pub fn redirect_decision(p: &PreemptState, rsp: u64) -> bool {
    let stats = p.stats();
    if !p.armed() || !p.gens().current() {
        // No long request, or one other than the arming this interrupt was sent for.
        stats.interrupts_ignored.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    if p.depth() != 0 {
        // Counted when it is taken (`take_deferred`), like the asm paths' deferrals.
        p.defer();
        return false;
    }
    let hi = p.stack_hi.load(Ordering::Relaxed);
    if rsp > hi || rsp < p.min_preempt_rsp.load(Ordering::Relaxed) {
        stats.preempt_skipped.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    p.disarm();
    true
}

/// Called by `preempt::enable` when the preemption word reached 0 (depth 0, armed, an interrupt
/// pending): takes the deferred preemption now.
#[cold]
pub(crate) fn take_deferred() {
    // Disable first, so the state read below is the one of the worker this code stays on.
    let p = local::disable_then_current();
    if p.armed() && p.pending() {
        p.stats().preempt_deferred.fetch_add(1, Ordering::Relaxed);
        // Disarmed, no interrupt can redirect us, so the depth may go back to 0 (and the word
        // cannot reach 0 again: both flags are set).
        p.disarm();
        local::enable_raw_deferred_due();
        super::entry::preempt_now();
    } else {
        local::enable_raw_deferred_due();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::ArmGenerations;
    use crate::stats::WorkerStats;
    use std::sync::atomic::Ordering::Relaxed;

    /// A worker state as a running long request leaves it: preemptible, enabled, current arming,
    /// a stack of [0x1000, 0x9000) that can take the frame above 0x3000.
    fn armed(stats: &WorkerStats, gens: &ArmGenerations) -> PreemptState {
        let p = PreemptState::new(stats, gens);
        p.arm();
        p.stack_hi.store(0x9000, Relaxed);
        p.min_preempt_rsp.store(0x3000, Relaxed);
        gens.armed.store(7, Relaxed);
        gens.target.store(7, Relaxed);
        p
    }

    #[test]
    fn an_interrupt_for_the_current_arming_redirects_once() {
        let (stats, gens) = (WorkerStats::default(), ArmGenerations::default());
        let p = armed(&stats, &gens);
        assert!(redirect_decision(&p, 0x5000));
        assert_eq!((p.armed(), p.pending()), (false, false));
        assert!(!redirect_decision(&p, 0x5000), "a second interrupt finds it no longer preemptible");
        assert_eq!(stats.interrupts_ignored.load(Relaxed), 1);
    }

    #[test]
    fn stale_disabled_and_deep_interrupts_do_not_redirect() {
        let (stats, gens) = (WorkerStats::default(), ArmGenerations::default());
        let p = armed(&stats, &gens);
        gens.target.store(6, Relaxed); // sent for the previous arming
        assert!(!redirect_decision(&p, 0x5000));
        assert_eq!(stats.interrupts_ignored.load(Relaxed), 1);
        assert!(p.armed(), "still preemptible for its own interrupt");

        gens.target.store(7, Relaxed);
        p.word_add_depth_for_tests(1);
        assert!(!redirect_decision(&p, 0x5000));
        assert!(p.pending(), "deferred, not lost");
        p.word_add_depth_for_tests(-1);
        assert_eq!(p.word(), 0, "depth 0, armed and pending: the word says a deferral is due");
        p.arm();

        assert!(!redirect_decision(&p, 0x2000), "below the room the entry needs");
        assert!(!redirect_decision(&p, 0xA000), "not on the green stack");
        assert_eq!(stats.preempt_skipped.load(Relaxed), 2);
        assert!(redirect_decision(&p, 0x3000), "exactly enough room");
    }
}
