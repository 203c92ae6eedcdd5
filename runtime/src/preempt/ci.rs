//! Compiler interrupts (thesis §5.2.3, Concord's mechanism): instead of interrupting a worker, the
//! timer core posts a request in the worker's request word (`local::ArmGenerations::ci_request`:
//! the arming it asks to end), and the running request polls it at *probes*, calls of
//! [`preempt_point`] that `#[synergy::preemptible]` inserts at function entry and loop back-edges.
//! A probe that finds a request for the current arming parks the green thread through the
//! voluntary switch (callee-saved registers and the FP control state; no XSAVE, since a call
//! boundary already tells the compiler which registers are live), exactly where a deferred
//! interrupt would park it; inside a no-preemption section it defers it to the section's end.
//!
//! Code without probes (a C library, an uninstrumented loop) never answers. The hybrid modes
//! (`ci+signal`, `ci+ipi`, `ci+uintr`) therefore fall back to the interrupt when a request stays
//! unanswered for a grace period (`policy::timer::ci_step`).

use crate::local;
use std::sync::atomic::Ordering;

/// A compiler-interrupt probe: if the timer core asked this worker to preempt the running request,
/// park it now (or, inside `without_preemption`, when the section ends). The fast path is a
/// thread-local load (is this a worker?), two loads through GS and two predictable branches. A
/// no-op off worker threads and outside preemptible regions.
///
/// `#[synergy::preemptible]` inserts it; calling it by hand is as safe as calling any function
/// inside a preemptible region (see `feedback_start` for what such a region may not hold).
#[inline(always)]
pub fn preempt_point() {
    if local::on_worker() && local::ci_requested() {
        take_request();
    }
}

/// The slow path: consume the request; take it if it is for the arming now running.
#[cold]
#[inline(never)]
fn take_request() {
    // Disable first, so the state read below is the one of the worker this code stays on.
    let p = local::disable_then_current();
    let gens = p.gens();
    let request = gens.ci_request.0.swap(0, Ordering::AcqRel);
    // A cooperative arming never arms the word (no interrupt may redirect it); its requests are
    // taken here, at the probes, alone.
    let cooperative = gens.probes_only.load(Ordering::Relaxed);
    if request == 0 || request != gens.armed.load(Ordering::Acquire) || !(p.armed() || cooperative) {
        // For an arming that ended (the request finished or was preempted meanwhile).
        p.stats().interrupts_ignored.fetch_add(1, Ordering::Relaxed);
        super::enable();
        return;
    }
    p.stats().ci_taken.fetch_add(1, Ordering::Relaxed);
    if p.depth() > 1 {
        // Inside a no-preemption section: pending, taken by the enable() that ends it (the
        // depth stays nonzero here, so this enable only decrements). A cooperative arming has
        // no armed word to defer on: the timer core asks again a grace period later.
        if !cooperative {
            p.defer();
        }
        super::enable();
        return;
    }
    // Disarmed, no interrupt can redirect us, and the word cannot reach 0: back to depth 0.
    p.disarm();
    local::enable_raw_deferred_due();
    super::entry::preempt_now();
}
