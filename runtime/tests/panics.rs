//! Handler panics inside long requests under constant preemption (issue 15, item 2).
//!
//! The standard library keeps each OS thread's panic state (the panic count and an "inside the
//! panic hook" flag) in thread-local storage. A long request that panics runs the whole panic
//! path, hook and unwinding included, on its green thread; were it preempted and resumed on
//! another worker in the middle, the first OS thread would keep "inside the panic hook" set and
//! the next panic there would abort the process ("thread panicked while processing panic").
//!
//! At least 10,000 long requests, about half of which panic at a random point of their computation, run
//! while every worker queue holds work (so every expired quantum preempts). The runtime must keep
//! serving: every request gets exactly one reply, the panicked status for those that panicked and
//! the exact checksum for the others.

mod common;

use common::kernels;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use synergy::transport::channel::ChannelTransport;
use synergy::{feedback_finished, feedback_start, send, Config, Reply, Request, Runtime, STATUS_HANDLER_PANICKED};

const REQUESTS: u64 = 10_000;
/// Work is done in chunks of this many kernel iterations; a panicking request panics after one.
const CHUNK: u32 = 300;

/// Chunks of work of request `id` and, for a panicking request, the chunk after which it panics.
fn plan(id: u64) -> (u32, Option<u32>) {
    let h = id.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    let chunks = 2 + (h % 14) as u32;
    let panics = (h >> 8).is_multiple_of(2);
    (chunks, panics.then_some(((h >> 16) % chunks as u64) as u32))
}

fn checksum(id: u64, chunks: u32) -> u64 {
    (0..chunks).fold(0u64, |acc, c| acc.rotate_left(3) ^ kernels::mixed(id ^ ((c as u64) << 40), CHUNK))
}

/// Checks replies as they come: exactly one per request, the panicked status exactly for the
/// requests that panic, the exact checksum for the others.
#[derive(Default)]
struct Checker {
    once: common::OncePerRequest,
    panicked: u64,
    panicked_after_preemption: u64,
}

impl Checker {
    fn check(&mut self, r: &Reply) {
        self.once.count(r.id);
        let (chunks, panic_at) = plan(r.id);
        if panic_at.is_some() {
            assert_eq!(r.status, STATUS_HANDLER_PANICKED, "request {} panicked: {r:?}", r.id);
            self.panicked += 1;
            self.panicked_after_preemption += (r.preemptions > 0) as u64;
        } else {
            assert_eq!(r.status, 0, "request {} did not panic: {r:?}", r.id);
            assert_eq!(
                r.value,
                checksum(r.id, chunks),
                "request {} checksum after {} preemptions",
                r.id,
                r.preemptions
            );
        }
    }
}

/// At least this many requests, and as many more as it takes (within `LIMIT`) until this many
/// panicking requests had been preempted before they panicked: how many preemptions a run gets
/// depends on how much CPU the timer core gets on a busy machine, not on the runtime.
const MIN_PREEMPTED_PANICS: u64 = 300;
const LIMIT: Duration = Duration::from_secs(600);

fn run(cfg: Config) -> (Checker, u64, synergy::stats::RunStats) {
    let _serial = common::serial();
    let workers = cfg.workers;
    let transport = Arc::new(ChannelTransport::new(workers, 4096, 1 << 15));
    let rt = Runtime::builder(&cfg)
        .transport(transport.clone())
        .handler(move |req: Request| {
            let (chunks, panic_at) = plan(req.id);
            // SAFETY: the loop computes on locals; the panic path is the runtime's to pin (worker/panic.rs).
            unsafe { feedback_start() };
            let mut acc = 0u64;
            for c in 0..chunks {
                acc = acc.rotate_left(3) ^ kernels::mixed(req.id ^ ((c as u64) << 40), CHUNK);
                if panic_at == Some(c) {
                    panic!("request {} panics after chunk {c} (partial checksum {acc:#x})", req.id);
                }
            }
            feedback_finished();
            send(Reply::to(&req).with_value(acc)).unwrap();
        })
        .start()
        .expect("runtime starts");

    let t0 = Instant::now();
    let mut checker = Checker::default();
    let mut next_id = 0u64;
    while next_id < REQUESTS || checker.panicked_after_preemption < MIN_PREEMPTED_PANICS {
        assert!(
            t0.elapsed() < LIMIT,
            "after {LIMIT:?} only {} panicking requests had been preempted (the machine starved the timer core?): {:?}",
            checker.panicked_after_preemption,
            rt.stats()
        );
        for r in transport.take_replies() {
            checker.check(&r);
        }
        let w = (next_id % workers as u64) as usize;
        // Keep a few requests queued behind the running one, so expired quanta preempt.
        if transport.backlog_of(w) < 4 {
            let req = Request { id: next_id, kind: 1, ..Default::default() };
            transport.submit(w, req).expect("rx ring has room");
            next_id += 1;
        } else {
            std::thread::yield_now();
        }
    }
    transport.close();
    let stats = rt.shutdown();
    for r in transport.take_replies() {
        checker.check(&r);
    }
    assert_eq!(transport.dropped_replies(), 0);
    (checker, next_id, stats)
}

#[test]
fn panicking_long_requests_under_preemption_get_exactly_one_reply_each() {
    common::quiet_hook::install();
    let (c, submitted, stats) = run(common::one_worker());
    let t = &stats.total;
    let expected_panics = (0..submitted).filter(|&id| plan(id).1.is_some()).count() as u64;
    eprintln!(
        "panics: {} replies, {} panicked ({} after a preemption), {} preemptions, {} deferred, {} skipped, hook calls {}; {:.1} s (watchdog {LIMIT:?})",
        c.once.replies, c.panicked, c.panicked_after_preemption, t.preemptions, t.preempt_deferred, t.preempt_skipped,
        common::quiet_hook::HOOK_CALLS.load(Ordering::Relaxed), stats.wall_ns as f64 / 1e9
    );
    assert_eq!(c.once.replies, submitted, "every request answered: {t:?}");
    assert_eq!(c.panicked, expected_panics);
    assert_eq!(t.handler_panics, expected_panics);
    assert_eq!(common::quiet_hook::HOOK_CALLS.load(Ordering::Relaxed), expected_panics, "the hook ran once per panic");
    assert_eq!(t.completed, submitted);
    assert_eq!(t.resumes, t.preemptions + t.yields, "each parked thread resumed exactly once");
}
