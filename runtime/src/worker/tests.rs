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
    let rt = Runtime::builder(&one_worker(max_green_threads))
        .transport(transport.clone())
        .handler(handler)
        .start()
        .expect("runtime starts");
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

/// Set by the spin functions once they run, and read by them to stop: the test ends the spin
/// when it has seen what it waits for, so no assertion depends on how long a spin lasts.
static SPIN_ENTERED: AtomicBool = AtomicBool::new(false);
static SPIN_STOP: AtomicBool = AtomicBool::new(false);

/// Spins inside its own body (no calls) until `SPIN_STOP`, so that an interrupt while it runs
/// stops at a rip inside it.
#[no_mangle]
#[inline(never)]
extern "C" fn synergy_unit_test_spin_in_refused_code() -> u64 {
    SPIN_ENTERED.store(true, Ordering::Release);
    let mut x = 0u64;
    while !SPIN_STOP.load(Ordering::Acquire) {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
    }
    x
}

/// The whole refusal path for an interrupt inside std's panic-count updates, end to end with
/// signal preemption: the entry hands the interrupted rip to the handler, which refuses to park
/// a thread stopped inside a refused range (here a test function stands in for std's `increase`)
/// and lets it run on. Request 0 enters the spin before the others are queued, so from then on
/// every interrupt lands inside the spin: the refused run must refuse (at least three, each a
/// retry) and preempt nothing until the test stops the spin; its control run, the same requests
/// with another spin function, is preempted and refuses nothing. The test waits for those
/// events, under a watchdog, instead of counting them in a fixed spin (issue 38, C3).
/// (Before the rip was passed, the refusal only looked at `panicking()`: 0 refusals.)
#[test]
fn an_interrupt_inside_refused_code_lets_the_request_run_on() {
    fn run(spin: extern "C" fn() -> u64, until: impl Fn(&crate::stats::RunStats) -> bool) -> crate::stats::RunStats {
        SPIN_ENTERED.store(false, Ordering::Release);
        SPIN_STOP.store(false, Ordering::Release);
        let cfg = Config { preempt: PreemptMode::Signal, pin: false, worker_cores: None, ..Config::default() };
        let transport = Arc::new(ChannelTransport::new(1, 16, 16));
        let rt = Runtime::builder(&cfg)
            .transport(transport.clone())
            .handler(move |req: Request| {
                if req.id == 0 {
                    // SAFETY: the spin touches no thread-local storage or lock.
                    unsafe { feedback_start() };
                    std::hint::black_box(spin());
                    feedback_finished();
                }
                send(Reply::to(&req)).unwrap();
            })
            .start()
            .expect("runtime starts");
        transport.submit(0, Request { id: 0, ..Request::default() }).unwrap();
        let t0 = Instant::now();
        let watchdog = Duration::from_secs(120);
        while !SPIN_ENTERED.load(Ordering::Acquire) {
            assert!(t0.elapsed() < watchdog, "watchdog: request 0 never started");
            std::thread::yield_now();
        }
        for id in 1..4 {
            transport.submit(0, Request { id, ..Request::default() }).unwrap();
        }
        let seen = loop {
            let s = rt.stats();
            if until(&s) {
                break s;
            }
            assert!(t0.elapsed() < watchdog, "watchdog: 120 s without the awaited interrupts: {:?}", s.total);
            std::thread::yield_now();
        };
        SPIN_STOP.store(true, Ordering::Release);
        replies(&transport, 4);
        transport.close();
        rt.shutdown();
        seen
    }
    extern "C" fn control_spin() -> u64 {
        SPIN_ENTERED.store(true, Ordering::Release);
        let mut x = 0u64;
        while !SPIN_STOP.load(Ordering::Acquire) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(2));
        }
        x
    }
    let control = run(control_spin, |s| s.total.preemptions >= 1);
    assert_eq!(control.total.preempt_skipped, 0, "the control spin is never refused: {:?}", control.total);
    crate::worker::std_panic_code::also_refuse_for_test("synergy_unit_test_spin_in_refused_code");
    let refused = run(synergy_unit_test_spin_in_refused_code, |s| s.total.preempt_skipped >= 3);
    assert_eq!(
        refused.total.preemptions, 0,
        "inside the refused code no interrupt preempts (three were refused meanwhile): {:?}",
        refused.total
    );
}

/// Exactly one reply per request (issue 39, item 5): a handler that replies and then panics gets
/// no second (panicked) reply; a second `send` is refused; a handler that returns without
/// replying is answered `STATUS_NO_REPLY`. Before the fix request 0 got two replies (its own
/// and `STATUS_HANDLER_PANICKED`), and request 1 none.
#[test]
fn every_request_gets_exactly_one_reply() {
    let transport = Arc::new(ChannelTransport::new(1, 16, 16));
    let second = Arc::new(std::sync::Mutex::new(None));
    let s = second.clone();
    let rt = Runtime::builder(&one_worker(8))
        .transport(transport.clone())
        .handler(move |req: Request| match req.id {
            0 => {
                send(Reply::to(&req).with_value(7)).unwrap();
                *s.lock().unwrap() = Some(send(Reply::to(&req).with_value(8)));
                panic!("after replying, on purpose");
            }
            1 => {}
            _ => send(Reply::to(&req)).unwrap(),
        })
        .start()
        .expect("runtime starts");
    for id in 0..3 {
        transport.submit(0, Request { id, ..Request::default() }).unwrap();
    }
    let got = replies(&transport, 3);
    transport.close();
    let stats = rt.shutdown();
    let more = transport.take_replies();
    assert!(more.is_empty(), "a request was answered twice: {more:?}");
    assert_eq!((got[0].id, got[0].status, got[0].value), (0, 0, 7), "the handler's own reply, not the panic's");
    assert_eq!(*second.lock().unwrap(), Some(Err(crate::SendError::AlreadyReplied)));
    assert_eq!((got[1].id, got[1].status), (1, crate::STATUS_NO_REPLY));
    assert_eq!((got[2].id, got[2].status), (2, 0));
    assert_eq!((stats.total.completed, stats.total.handler_panics), (3, 1));
}

/// A `Drop` run while a request unwinds (from `resume_unwind`, which runs no panic hook) meets a
/// contended `synergy::sync::Mutex`: it must wait without parking (issue 39, item 2). Before the
/// fix it yielded (and, with other work, parked and could migrate mid-unwind).
#[test]
fn a_panicking_request_never_parks_voluntarily() {
    struct LocksOnDrop(Arc<crate::sync::Mutex<u32>>);
    impl Drop for LocksOnDrop {
        fn drop(&mut self) {
            *self.0.lock() += 1;
        }
    }
    let m = Arc::new(crate::sync::Mutex::new(0u32));
    let held = m.lock();
    let transport = Arc::new(ChannelTransport::new(1, 16, 16));
    let m2 = m.clone();
    let rt = Runtime::builder(&one_worker(8))
        .transport(transport.clone())
        .handler(move |_req: Request| {
            // SAFETY: the handler touches a synergy mutex and panics; nothing thread-local.
            unsafe { feedback_start() };
            let _d = LocksOnDrop(m2.clone());
            // `resume_unwind` runs no panic hook, so the hook's hold does not cover the unwinding.
            std::panic::resume_unwind(Box::new("unwinding through a contended lock, on purpose"));
        })
        .start()
        .expect("runtime starts");
    transport.submit(0, Request { id: 0, ..Request::default() }).unwrap();
    let t0 = Instant::now();
    while m.contention_count() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(60), "watchdog: the drop never tried the lock");
        std::thread::yield_now();
    }
    let yields_while_held = rt.stats().total.yields;
    drop(held);
    let got = replies(&transport, 1);
    transport.close();
    let stats = rt.shutdown();
    assert_eq!(got[0].status, STATUS_HANDLER_PANICKED);
    assert_eq!(*m.lock(), 1, "the drop ran once");
    assert_eq!((yields_while_held, stats.total.yields), (0, 0), "the unwinding request yielded: {:?}", stats.total);
}

/// The builder names what it was not given, instead of starting a runtime that cannot serve.
#[test]
fn a_builder_missing_a_transport_or_a_handler_says_which() {
    let cfg = one_worker(4);
    let e = Runtime::builder(&cfg).handler(|_: Request| {}).start().err().expect("no transport");
    assert!(matches!(e, crate::StartError::Incomplete(w) if w.contains("transport")), "{e}");
    let t = Arc::new(ChannelTransport::new(1, 4, 4));
    let e = Runtime::builder(&cfg).transport(t).start().err().expect("no handler");
    assert!(e.to_string().contains("without a handler"), "{e}");
}
