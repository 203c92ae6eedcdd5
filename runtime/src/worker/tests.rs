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

/// Spins `iterations` times inside its own body (no calls), so that an interrupt during a call
/// to it stops at a rip inside it.
#[no_mangle]
#[inline(never)]
extern "C" fn synergy_unit_test_spin_in_refused_code(iterations: u64) -> u64 {
    let mut x = 0u64;
    for i in 0..iterations {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    x
}

/// The whole refusal path for an interrupt inside std's panic-count updates, end to end with
/// signal preemption: the entry hands the interrupted rip to the handler, which refuses to park
/// a thread stopped inside a refused range (here a test function stands in for std's `increase`)
/// and lets it run on. Its control run, the same requests with another spin function, is
/// preempted at the first interrupt (then, with the queue empty, renewed) and refuses nothing.
/// The refused run may still be preempted in the few instructions around the call (seen once in
/// 8 runs, right after the return): the test counts refusals, not the absence of a preemption.
/// (Before the rip was passed, the refusal only looked at `panicking()`: 0 refusals.)
#[test]
fn an_interrupt_inside_refused_code_lets_the_request_run_on() {
    fn run(spin: extern "C" fn(u64) -> u64) -> crate::stats::RunStats {
        let cfg = Config { preempt: PreemptMode::Signal, pin: false, worker_cores: None, ..Config::default() };
        let transport = Arc::new(ChannelTransport::new(1, 16, 16));
        let rt = Runtime::start(&cfg, transport.clone(), move |req: Request| {
            if req.id == 0 {
                // SAFETY: the spin touches no thread-local storage or lock.
                unsafe { feedback_start() };
                // One call for the whole request (tens of ms, many quanta), so that interrupts
                // land inside `spin` but for a few instructions around the call.
                std::hint::black_box(spin(30_000_000));
                feedback_finished();
            }
            send(Reply::to(&req)).unwrap();
        })
        .expect("runtime starts");
        transport.submit(0, Request { id: 0, ..Request::default() }).unwrap();
        for id in 1..4 {
            transport.submit(0, Request { id, ..Request::default() }).unwrap();
        }
        replies(&transport, 4);
        transport.close();
        rt.shutdown()
    }
    extern "C" fn control_spin(iterations: u64) -> u64 {
        let mut x = 0u64;
        for i in 0..iterations {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        x
    }
    let control = run(control_spin);
    assert!(control.total.preemptions >= 1, "the control run is preempted: {:?}", control.total);
    assert_eq!(control.total.preempt_skipped, 0, "{:?}", control.total);
    crate::worker::std_panic_code::also_refuse_for_test("synergy_unit_test_spin_in_refused_code");
    let refused = run(synergy_unit_test_spin_in_refused_code);
    assert!(
        refused.total.preempt_skipped >= 3,
        "interrupts inside were refused (each retry again): {:?}",
        refused.total
    );
    assert!(refused.total.preemptions <= 1, "{:?}", refused.total);
}
