//! The timer core interrupts one arming once, and again only after the retry time
//! (`policy::timer::INTERRUPT_RETRY_NS`), not once per quantum while the first interrupt is still
//! on its way or waiting to be taken.
//!
//! Found on the 16-vCPU machine (docs/results/scale-*): with a 2 µs quantum and signals taking
//! 3-4 µs, the timer core sent 17602 interrupts for 9410 preemptions at 20% load, 165158 for
//! 42771 at 60%; the duplicates arrive after the preemption, are ignored, and each costs the
//! worker a trap and a handler.
//!
//! Here the worker is slow to respond by construction: a long request keeps preemption disabled
//! for at least `HOLD`, and until an interrupt has been deferred (`preemption_pending`; issue 38:
//! a timer core starved by a busy machine once sent nothing within a fixed 0.5 ms), with a short
//! request queued behind it, so the timer core's interrupt is deferred until the section ends. The timer core may resend only every `INTERRUPT_RETRY_NS` meanwhile.
//! Before the fix it resent every quantum: 139, 178 and 143 interrupts in three runs of this test
//! on a 2-vCPU KVM guest (each of them deferred or ignored), against a bound of 12.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use synergy::clock;
use synergy::policy::timer::INTERRUPT_RETRY_NS;
use synergy::preempt::{preemption_pending, NoPreempt};
use synergy::transport::channel::ChannelTransport;
use synergy::{feedback_finished, feedback_start, send, Reply, Request, Runtime};

/// How long the long request keeps preemption disabled with work waiting.
const HOLD_NS: u64 = 500_000;
/// What it runs after that, preemptible.
const AFTER_NS: u64 = 2_000_000;
/// When the section ended (runtime clock).
static SECTION_END_NS: AtomicU64 = AtomicU64::new(0);

fn handler(req: Request) {
    if req.kind == common::LONG {
        // SAFETY: the spin reads the clock only; no thread-local storage, no lock.
        unsafe { feedback_start() };
        {
            let _np = NoPreempt::new();
            clock::spin_for(HOLD_NS);
            let t0 = std::time::Instant::now();
            while !preemption_pending() && t0.elapsed() < std::time::Duration::from_secs(300) {
                clock::spin_for(1_000);
            }
            SECTION_END_NS.store(clock::now_ns(), Ordering::Relaxed);
        }
        clock::spin_for(AFTER_NS);
        feedback_finished();
    }
    send(Reply::to(&req)).unwrap();
}

#[test]
fn a_deferred_interrupt_is_resent_only_after_the_retry_time() {
    let _serial = common::serial();
    let cfg = common::one_worker();
    let transport = Arc::new(ChannelTransport::new(1, 64, 64));
    let rt = Runtime::builder(&cfg).transport(transport.clone()).handler(handler).start().expect("runtime starts");
    // Before the submission, so before the arming every interrupt is sent for.
    let submitted_ns = clock::now_ns();
    transport.submit(0, Request { id: 1, kind: common::LONG, ..Default::default() }).unwrap();
    transport.submit(0, Request { id: 2, kind: common::SHORT, ..Default::default() }).unwrap();
    transport.close();
    let stats = rt.shutdown();
    let replies = transport.take_replies();
    assert_eq!(replies.len(), 2, "{stats:?}");
    let long = replies.iter().find(|r| r.id == 1).unwrap();
    // The short request waited behind the section: the deferred interrupt was taken at its end.
    assert!(long.preemptions >= 1 && stats.total.preempt_deferred >= 1, "{stats:?}");
    // The timer core decides each send at least INTERRUPT_RETRY_NS after the one before, all of
    // them after the arming, which follows the submission: from the submission to the section's
    // end at most one send per retry time plus the first, and one more that may cross the end
    // (the deferred preemption is taken there, and nothing is queued after it). The window is
    // measured, from before the arming (issue 38, C12: it used to start inside the handler, so
    // a worker descheduled between arming and handler put sends outside it). A slow timer core
    // only sends fewer.
    let window_ns = SECTION_END_NS.load(Ordering::Relaxed) - submitted_ns;
    let bound = 2 + window_ns / INTERRUPT_RETRY_NS;
    assert!(
        stats.timer.interrupts_sent <= bound,
        "{} interrupts sent for one arming, {} µs from submission to the section's end (at most {bound}: one per {} µs): {:?}",
        stats.timer.interrupts_sent,
        window_ns / 1_000,
        INTERRUPT_RETRY_NS / 1_000,
        stats.timer
    );
}
