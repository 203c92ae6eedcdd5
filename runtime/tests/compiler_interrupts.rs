//! Compiler interrupts (issue 17): `--preempt=ci` preempts a request at its probes
//! (`#[synergy::preemptible]`), a probe inside `without_preemption` defers, code without probes
//! is preempted only by a hybrid's fallback interrupt, and `ci` alone never preempts it.
//!
//! The hybrid is `ci+<mechanism under test>`: `ci+signal` on the host, `ci+ipi` in the QEMU guest
//! (SYNERGY_TEST_PREEMPT, as for the other preemption tests).

mod common;

use common::{wait_until, Gate, LONG, SHORT};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synergy::transport::channel::ChannelTransport;
use synergy::{clock, feedback_finished, feedback_start, send, Config, PreemptMode, Reply, Request, Runtime};

/// The hybrid of the mechanism under test.
fn hybrid() -> PreemptMode {
    PreemptMode::named(&format!("ci+{}", common::preempt_mode_name())).expect("a hybrid mode")
}

fn config(mode: PreemptMode) -> Config {
    Config { preempt: mode, ..common::one_worker() }
}

/// A long request's loop, instrumented: spins until the short request was answered (bounded).
#[synergy::preemptible]
fn spin_until_short_done(gate: &Gate) {
    let t0 = Instant::now();
    while !gate.short_done.load(Ordering::Acquire) && t0.elapsed() < common::UNTIL_SHORT_DONE_BOUND {
        clock::spin_for(200);
    }
}

/// Runs one long request (`long`) and, once it started, one short one; returns the replies in
/// the order they arrived, and the runtime's statistics.
fn long_then_short(
    cfg: Config,
    long: impl Fn(&Gate) + Send + Sync + 'static,
) -> (Vec<Reply>, synergy::stats::RunStats) {
    long_then_short_released(cfg, long, |_| true)
}

fn long_then_short_released(
    cfg: Config,
    long: impl Fn(&Gate) + Send + Sync + 'static,
    release_when: impl Fn(&synergy::stats::RunStats) -> bool,
) -> (Vec<Reply>, synergy::stats::RunStats) {
    // SAFETY: the long bodies below spin on atomics and the clock only.
    common::long_then_short_released(cfg, || unsafe { feedback_start() }, long, release_when)
}

#[test]
fn a_probe_preempts_under_ci_and_the_short_request_overtakes() {
    let (replies, stats) = long_then_short(config(PreemptMode::Ci), spin_until_short_done);
    assert_eq!(replies[0].id, 2, "the short request finished first: {replies:?}");
    assert!(replies[1].preemptions >= 1, "the long one was parked: {replies:?}");
    assert!(stats.total.ci_taken >= 1 && stats.timer.ci_requests >= 1, "{stats:?}");
    assert_eq!(stats.timer.interrupts_sent, 0, "ci alone sends no interrupt: {:?}", stats.timer);
}

#[test]
fn uninstrumented_code_is_preempted_by_the_fallback_interrupt() {
    // `clock::spin_for` has no probes: only the hybrid's interrupt can preempt it.
    let long = |g: &Gate| {
        let t0 = Instant::now();
        while !g.short_done.load(Ordering::Acquire) && t0.elapsed() < common::UNTIL_SHORT_DONE_BOUND {
            clock::spin_for(1_000_000); // 1 ms chunks without a probe
        }
    };
    let (replies, stats) = long_then_short(config(hybrid()), long);
    assert_eq!(replies[0].id, 2, "{}: the short request finished first: {replies:?}", hybrid().name());
    assert!(replies[1].preemptions >= 1, "{replies:?}");
    assert!(stats.timer.ci_requests >= 1, "the request word came first: {:?}", stats.timer);
    assert!(
        stats.timer.ci_unanswered >= 1 && stats.timer.interrupts_sent >= 1,
        "then the interrupt: {:?}",
        stats.timer
    );
    assert_eq!(stats.total.ci_taken, 0, "no probe ran: {stats:?}");
}

/// With work waiting, the timer core keeps asking, nobody answers: the long request spins without
/// a probe until the test has seen a request go unanswered (it used to spin a fixed 20 ms, in
/// which a timer core that a busy host delayed could miss the two scans; issue 38, C5).
#[test]
fn ci_alone_never_preempts_uninstrumented_code() {
    let long = |g: &Gate| {
        while !g.release.load(Ordering::Acquire) {
            clock::spin_for(100_000); // no probe in here
        }
    };
    let (replies, stats) = long_then_short_released(config(PreemptMode::Ci), long, |s| s.timer.ci_unanswered >= 1);
    assert_eq!(replies[0].id, 1, "the long request ran to completion first: {replies:?}");
    assert_eq!(replies[0].preemptions, 0);
    assert_eq!(stats.timer.interrupts_sent, 0);
}

static SECTION_MAY_END: AtomicBool = AtomicBool::new(false);
static SECTION_ENDED_NS: AtomicU64 = AtomicU64::new(0);

#[synergy::preemptible]
fn probing_inside_a_no_preemption_section() {
    synergy::preempt::without_preemption(|| {
        let t0 = Instant::now();
        while !SECTION_MAY_END.load(Ordering::Acquire) && t0.elapsed() < Duration::from_secs(30) {
            clock::spin_for(200);
            synergy::preempt_point();
        }
        SECTION_ENDED_NS.store(clock::now_ns(), Ordering::Release);
    });
    // The deferred preemption is taken by the enable() that closed the section; this spin is
    // only reached on resume, after the short request ran.
    clock::spin_for(1_000);
}

#[test]
fn a_probe_inside_without_preemption_defers_to_the_sections_end() {
    let _serial = common::serial();
    SECTION_MAY_END.store(false, Ordering::Release);
    let cfg = config(PreemptMode::Ci);
    let transport = Arc::new(ChannelTransport::new(1, 64, 64));
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    let rt = Runtime::builder(&cfg)
        .transport(transport.clone())
        .handler(move |req: Request| {
            if req.kind == LONG {
                // SAFETY: the body spins on atomics and the clock only.
                unsafe { feedback_start() };
                s.store(true, Ordering::Release);
                probing_inside_a_no_preemption_section();
                feedback_finished();
            }
            send(Reply::to(&req)).unwrap();
        })
        .start()
        .expect("runtime starts");
    transport.submit(0, Request { id: 1, kind: LONG, ..Default::default() }).unwrap();
    wait_until("the long request starts", Duration::from_secs(10), || started.load(Ordering::Acquire));
    transport.submit(0, Request { id: 2, kind: SHORT, ..Default::default() }).unwrap();
    // The section probes while a request is posted: it must not park.
    wait_until("a probe took a request inside the section", Duration::from_secs(30), || rt.stats().total.ci_taken >= 1);
    assert!(transport.take_replies().is_empty(), "nothing ran while the section was open");
    assert_eq!(rt.stats().total.preemptions, 0);
    SECTION_MAY_END.store(true, Ordering::Release);
    let mut replies = Vec::new();
    wait_until("both replies", Duration::from_secs(30), || {
        replies.extend(transport.take_replies());
        replies.len() == 2
    });
    transport.close();
    let stats = rt.shutdown();
    assert_eq!(replies[0].id, 2, "parked when the section ended, so the short one went first: {replies:?}");
    assert!(replies[0].done_ns >= SECTION_ENDED_NS.load(Ordering::Acquire), "and only after it ended");
    assert!(stats.total.preempt_deferred >= 1 && stats.total.preemptions >= 1, "{:?}", stats.total);
}
