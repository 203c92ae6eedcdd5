//! Unit tests of the worker's park paths, on a real runtime with one worker and no preemption
//! mechanism (only yields park, so every step is deterministic).

use crate::config::Config;
use crate::preempt::PreemptMode;
use crate::request::{Reply, Request};
use crate::transport::channel::ChannelTransport;
use crate::{feedback_finished, feedback_start, send, yield_now, Runtime, STATUS_HANDLER_PANICKED};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn one_worker(max_green_threads: usize) -> Config {
    Config { preempt: PreemptMode::None, pin: false, worker_cores: None, max_green_threads, ..Config::default() }
}

/// Runs requests 0 and 1 on one worker with `max_green_threads`; their replies, by id, and the
/// run's counters.
fn run_two(
    max_green_threads: usize,
    handler: impl Fn(Request) + Send + Sync + 'static,
) -> (Vec<Reply>, crate::stats::RunStats) {
    let transport = Arc::new(ChannelTransport::new(1, 16, 16));
    let rt = Runtime::start(&one_worker(max_green_threads), transport.clone(), handler).expect("runtime starts");
    transport.submit(0, Request { id: 0, ..Request::default() }).unwrap();
    transport.submit(0, Request { id: 1, ..Request::default() }).unwrap();
    let got = replies(&transport, 2);
    transport.close();
    (got, rt.shutdown())
}

fn replies(transport: &ChannelTransport, n: usize) -> Vec<Reply> {
    let t0 = Instant::now();
    let mut got = Vec::new();
    while got.len() < n {
        assert!(t0.elapsed() < Duration::from_secs(60), "only {} of {n} replies after 60 s", got.len());
        got.extend(transport.take_replies());
        std::thread::yield_now();
    }
    got.sort_by_key(|r| r.id);
    got
}

/// With every green thread in use, a yield cannot park (there is no thread to run meanwhile): it
/// returns false, counts a skipped preemption, and the request goes on; the parked one still
/// resumes afterwards.
#[test]
fn a_yield_without_a_free_green_thread_does_not_park() {
    static B_DONE: AtomicBool = AtomicBool::new(false);
    let (got, stats) = run_two(2, |req: Request| {
        // SAFETY: only yields and atomics in the region.
        unsafe { feedback_start() };
        let parked = if req.id == 0 {
            // A: parks until B ran, holding the second of the two green threads meanwhile.
            let t0 = Instant::now();
            let mut parked = false;
            while !B_DONE.load(Ordering::Acquire) && t0.elapsed() < Duration::from_secs(30) {
                parked |= yield_now();
            }
            parked
        } else {
            let parked = yield_now();
            B_DONE.store(true, Ordering::Release);
            parked
        };
        feedback_finished();
        send(Reply::to(&req).with_value(parked as u64)).unwrap();
    });
    assert_eq!(got[0].value, 1, "A parked");
    assert_eq!(got[1].value, 0, "B found no free green thread, so it did not park");
    assert!(stats.total.preempt_skipped >= 1, "{stats:?}");
}

/// Parking while one of the runtime's own OS locks is held would hand its release to another OS
/// thread; debug builds catch it at the park (the handler's panic becomes its reply).
#[cfg(debug_assertions)]
#[test]
fn parking_with_an_os_lock_held_is_caught_in_debug_builds() {
    let (got, _) = run_two(8, |req: Request| {
        // SAFETY: only yields in the region (the marker stands for a lock; nothing is locked).
        unsafe { feedback_start() };
        let parked = if req.id == 0 {
            let _held = crate::local::OsLockHeld::new();
            yield_now()
        } else {
            yield_now()
        };
        feedback_finished();
        send(Reply::to(&req).with_value(parked as u64)).unwrap();
    });
    assert_eq!(got[0].status, STATUS_HANDLER_PANICKED, "the park with a lock held was refused");
    assert_eq!((got[1].status, got[1].value), (0, 1), "without the lock the same yield parks");
}
