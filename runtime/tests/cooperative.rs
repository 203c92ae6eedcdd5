//! The cooperative tier (issue 41, item 3): `feedback_start_cooperative` is safe, and a request
//! under it is parked only at the probes of its own `#[synergy::preemptible]` code, never by an
//! interrupt, whatever `--preempt` says, and resumes only on the worker that parked it.

mod common;

use common::{Gate, LONG};
use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use synergy::transport::channel::ChannelTransport;
use synergy::{clock, feedback_finished, feedback_start_cooperative, send, Config, Reply, Request, Runtime};

thread_local! {
    /// Per-OS-thread state a safe handler may hold a reference into across its probes.
    static SCRATCH: RefCell<u64> = const { RefCell::new(0) };
}

/// Spins in probed chunks until the short request was answered (bounded), holding a reference
/// into thread-local storage across every probe: sound only because the request never leaves
/// its OS thread. Returns the id of the OS thread it ended on (and checks it never changed).
#[synergy::preemptible]
fn spin_with_probes_until_short_done(gate: &Gate) {
    let me = std::thread::current().id();
    SCRATCH.with(|cell| {
        let t0 = Instant::now();
        while !gate.short_done.load(Ordering::Acquire) && t0.elapsed() < common::UNTIL_SHORT_DONE_BOUND {
            clock::spin_for(200);
            assert_eq!(std::thread::current().id(), me, "a cooperative request changed OS thread");
            let _still_valid: u64 = *cell.borrow();
        }
    });
}

fn long_then_short(
    cfg: Config,
    long: fn(&Gate),
    release_when: impl Fn(&synergy::stats::RunStats) -> bool,
) -> (Vec<Reply>, synergy::stats::RunStats) {
    common::long_then_short_released(cfg, feedback_start_cooperative, long, release_when)
}

/// Under `--preempt=signal` (no compiler interrupts configured) the timer core still only asks a
/// cooperative request, and its probe parks it: the short request overtakes, and no interrupt is
/// ever sent for it.
#[test]
fn a_cooperative_request_yields_at_its_probes_and_is_never_interrupted() {
    let cfg = Config { preempt: synergy::PreemptMode::Signal, ..common::one_worker() };
    let (replies, stats) = long_then_short(cfg, spin_with_probes_until_short_done, |_| true);
    assert_eq!(replies[0].id, 2, "the short request finished first: {replies:?}");
    assert!(replies[1].preemptions >= 1, "the long one was parked: {replies:?}");
    assert!(stats.total.ci_taken >= 1 && stats.timer.ci_requests >= 1, "{stats:?}");
    assert_eq!(stats.timer.interrupts_sent, 0, "never an interrupt for a cooperative request: {:?}", stats.timer);
}

/// Without probes a cooperative request runs to its end, even under a mode that would interrupt
/// it (the hybrid's fallback): the short request waits. The long one spins until the timer core
/// has asked it three times unanswered, so the hybrid's fallback would have been due.
#[test]
fn a_cooperative_request_without_probes_runs_to_completion() {
    fn spin_without_probes(g: &Gate) {
        while !g.release.load(Ordering::Acquire) {
            clock::spin_for(100_000); // no probe in here
        }
    }
    let hybrid = synergy::PreemptMode::named("ci+signal").unwrap();
    let cfg = Config { preempt: hybrid, ..common::one_worker() };
    let (replies, stats) = long_then_short(cfg, spin_without_probes, |s| s.timer.ci_requests >= 3);
    assert_eq!(replies[0].id, 1, "the long request ran to completion first: {replies:?}");
    assert_eq!(replies[0].preemptions, 0);
    assert_eq!(stats.timer.interrupts_sent, 0, "no fallback interrupt: {:?}", stats.timer);
    assert_eq!(stats.total.preemptions, 0);
}

/// Two workers, many cooperative requests with probes and work always waiting: every parked
/// request resumes on the worker that parked it (`migrations` stays 0), with the checksum its
/// uninterrupted computation gives, and the run goes on until some requests were parked.
#[test]
fn cooperative_requests_resume_only_where_they_were_parked() {
    #[synergy::preemptible]
    fn work(id: u64) -> u64 {
        let mut acc = id;
        for i in 0..20_000u64 {
            acc = acc.rotate_left(5) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        acc
    }
    let _serial = common::serial();
    let cfg = common::two_workers();
    let transport = Arc::new(ChannelTransport::new(2, 1024, 1 << 14));
    let rt = Runtime::builder(&cfg)
        .transport(transport.clone())
        .handler(|req: Request| {
            feedback_start_cooperative();
            let thread = std::thread::current().id();
            let v = work(req.id);
            assert_eq!(std::thread::current().id(), thread, "changed OS thread");
            feedback_finished();
            send(Reply::to(&req).with_value(v)).unwrap();
        })
        .start()
        .expect("runtime starts");
    let expected = |id: u64| {
        let mut acc = id;
        for i in 0..20_000u64 {
            acc = acc.rotate_left(5) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        acc
    };
    let t0 = Instant::now();
    let (mut next, mut answered, mut parked) = (0u64, 0u64, 0u64);
    while next < 2_000 || parked < 20 {
        assert!(t0.elapsed() < Duration::from_secs(300), "{parked} parked after 300 s: {:?}", rt.stats());
        for r in transport.take_replies() {
            assert_eq!(r.value, expected(r.id), "request {}", r.id);
            answered += 1;
            parked += (r.preemptions > 0) as u64;
        }
        let w = (next % 2) as usize;
        if transport.backlog_of(w) < 4 {
            transport.submit(w, Request { id: next, kind: LONG, ..Default::default() }).unwrap();
            next += 1;
        } else {
            std::thread::yield_now();
        }
    }
    transport.close();
    let stats = rt.shutdown();
    answered += transport.take_replies().len() as u64;
    let t = &stats.total;
    eprintln!(
        "cooperative: {answered} replies, {} parked, {} forwarded home, {} interrupts sent",
        t.preemptions, t.pinned_forwards, stats.timer.interrupts_sent
    );
    assert_eq!(answered, next);
    assert_eq!(t.migrations, 0, "a cooperative request resumed on another worker: {t:?}");
    assert_eq!(stats.timer.interrupts_sent, 0);
}
