//! Waiting inside a handler (`synergy::wait`, issue 41 item 4): a request that waits gives its
//! worker to other requests and resumes on the same worker and OS thread; sleeps last at least
//! their time; blocking work runs off the workers; and a stress of wait/notify pairs across two
//! workers, under preemption, loses no wake-up.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synergy::request::status;
use synergy::transport::channel::ChannelTransport;
use synergy::{oneshot, send, Reply, Request, Runtime};

const WAITER: u32 = 0;
const OTHER: u32 = 1;

fn tid() -> u64 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() as u64 }
}

/// One worker. Request 1 waits on a channel the test holds; request 2 is served meanwhile (the
/// worker was free); then the test sends, and request 1 answers with the value, on the same
/// worker and OS thread it started on.
#[test]
fn a_waiting_request_frees_its_worker_and_resumes_where_it_started() {
    let _serial = common::serial();
    let transport = Arc::new(ChannelTransport::new(1, 64, 64));
    let (tx, rx) = oneshot::channel::<u64>();
    let rx = Arc::new(Mutex::new(Some(rx)));
    let waiting = Arc::new(AtomicBool::new(false));
    let (r, w) = (rx.clone(), waiting.clone());
    let rt = Runtime::builder(&common::one_worker())
        .transport(transport.clone())
        .handler(move |req: Request| {
            if req.kind == OTHER {
                send(Reply::to(&req)).unwrap();
                return;
            }
            let rx = synergy::preempt::without_preemption(|| r.lock().unwrap().take()).unwrap();
            let (worker, thread) = (synergy::current_worker(), tid());
            w.store(true, Ordering::Release);
            let v = rx.recv().unwrap();
            let same = synergy::current_worker() == worker && tid() == thread;
            send(Reply::to(&req).with_value(v).with_status(if same { 0 } else { 99 })).unwrap();
        })
        .start()
        .unwrap();
    transport.submit(0, Request { id: 1, kind: WAITER, ..Request::default() }).unwrap();
    common::wait_until("the first request waits", Duration::from_secs(10), || waiting.load(Ordering::Acquire));
    transport.submit(0, Request { id: 2, kind: OTHER, ..Request::default() }).unwrap();
    let first = common::wait_for_replies(&transport, 1, Duration::from_secs(10));
    assert_eq!(first[0].id, 2, "the worker served another request while the first waited");
    tx.send(42).unwrap();
    let second = common::wait_for_replies(&transport, 1, Duration::from_secs(10));
    transport.close();
    let stats = rt.shutdown();
    assert_eq!((second[0].id, second[0].value, second[0].status), (1, 42, 0), "same worker and OS thread");
    assert_eq!(stats.total.waits, 1, "the request blocked once: {stats:?}");
}

/// `sleep` lasts at least its time, and `spawn_blocking` runs its closure off the workers while
/// the worker serves others; both resume on the waiting request's own OS thread.
#[test]
fn sleep_and_blocking_work_wait_without_the_worker() {
    let _serial = common::serial();
    let transport = Arc::new(ChannelTransport::new(1, 64, 64));
    let release = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicU64::new(0));
    let (rel, st) = (release.clone(), started.clone());
    let rt = Runtime::builder(&common::one_worker())
        .transport(transport.clone())
        .handler(move |req: Request| {
            let thread = tid();
            match req.id {
                1 => {
                    let t0 = Instant::now();
                    synergy::time::sleep(Duration::from_millis(20));
                    let slept = t0.elapsed().as_nanos() as u64;
                    send(Reply::to(&req).with_value(slept).with_status(u32::from(tid() != thread))).unwrap();
                }
                2 => {
                    st.fetch_add(1, Ordering::AcqRel);
                    let rel = rel.clone();
                    let pool_thread = synergy::spawn_blocking(move || {
                        while !rel.load(Ordering::Acquire) {
                            std::thread::yield_now();
                        }
                        tid()
                    })
                    .recv()
                    .unwrap();
                    let status = u32::from(tid() != thread || pool_thread == thread);
                    send(Reply::to(&req).with_value(pool_thread).with_status(status)).unwrap();
                }
                _ => send(Reply::to(&req)).unwrap(),
            }
        })
        .start()
        .unwrap();
    transport.submit(0, Request { id: 1, ..Request::default() }).unwrap();
    transport.submit(0, Request { id: 2, ..Request::default() }).unwrap();
    common::wait_until("the blocking request started", Duration::from_secs(10), || {
        started.load(Ordering::Acquire) == 1
    });
    transport.submit(0, Request { id: 3, ..Request::default() }).unwrap();
    // Request 3 is answered while 1 sleeps or 2's blocking work holds on: the worker is free.
    let mut replies = Vec::new();
    common::wait_until("request 3's reply", Duration::from_secs(10), || {
        replies.extend(transport.take_replies());
        replies.iter().any(|r| r.id == 3)
    });
    assert!(!replies.iter().any(|r| r.id == 2), "the blocking work is still held: {replies:?}");
    release.store(true, Ordering::Release);
    common::wait_until("every reply", Duration::from_secs(10), || {
        replies.extend(transport.take_replies());
        replies.len() == 3
    });
    transport.close();
    rt.shutdown();
    let by_id = |id| replies.iter().find(|r| r.id == id).unwrap();
    assert_eq!(by_id(1).status, status::OK, "the sleeper resumed on its own OS thread");
    assert!(by_id(1).value >= 20_000_000, "slept {} ns of 20 ms", by_id(1).value);
    assert_eq!(by_id(2).status, status::OK, "blocking work ran on another OS thread; the request resumed on its own");
}

/// Wait/notify pairs across two workers: request 2k waits on channel k, request 2k+1 sends k to
/// it; the waiters run in preemptible regions and spin a little first, so the timer core preempts
/// them while notifications race with their blocking. A lost wake-up leaves a request unanswered
/// and fails the watchdog; a wrong or duplicated wake-up, the value check.
#[test]
fn a_million_wait_notify_pairs_lose_no_wakeup() {
    const WINDOW: u64 = 256;
    let pairs: u64 = if cfg!(debug_assertions) { 100_000 } else { 1_000_000 };
    let _serial = common::serial();
    type Pair = (Mutex<Option<oneshot::Sender<u64>>>, Mutex<Option<oneshot::Receiver<u64>>>);
    let table: Arc<Vec<Pair>> = Arc::new((0..WINDOW).map(|_| (Mutex::new(None), Mutex::new(None))).collect());
    let transport = Arc::new(ChannelTransport::new(2, 4096, 1 << 14));
    let t = table.clone();
    let rt = Runtime::builder(&common::two_workers())
        .transport(transport.clone())
        .handler(move |req: Request| {
            let k = req.id / 2;
            let slot = &t[(k % WINDOW) as usize];
            if req.id.is_multiple_of(2) {
                let rx = synergy::preempt::without_preemption(|| slot.1.lock().unwrap().take()).expect("a receiver");
                // SAFETY: the region spins on the clock and waits on a channel: locals only, no
                // thread-local storage, no OS lock.
                unsafe { synergy::feedback_start() };
                synergy::clock::spin_for(k % 3 * 2_000);
                let v = rx.recv().unwrap();
                synergy::feedback_finished();
                send(Reply::to(&req).with_value(v)).unwrap();
            } else {
                let tx = synergy::preempt::without_preemption(|| slot.0.lock().unwrap().take()).expect("a sender");
                synergy::clock::spin_for(k % 5 * 500);
                tx.send(k).unwrap();
                send(Reply::to(&req).with_value(k)).unwrap();
            }
        })
        .start()
        .unwrap();
    let t0 = Instant::now();
    let (mut next, mut answered) = (0u64, 0u64);
    let mut done = vec![false; (2 * pairs) as usize];
    while answered < 2 * pairs {
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "watchdog: {answered} of {} answered: a lost wake-up",
            2 * pairs
        );
        // A new pair once its table entry is free (both halves of pair k - WINDOW answered).
        while next < pairs
            && (next < WINDOW || (done[(2 * (next - WINDOW)) as usize] && done[(2 * (next - WINDOW) + 1) as usize]))
        {
            let (tx, rx) = oneshot::channel();
            let slot = &table[(next % WINDOW) as usize];
            *slot.0.lock().unwrap() = Some(tx);
            *slot.1.lock().unwrap() = Some(rx);
            // Waiter and sender on different workers, alternating which.
            let w = (next % 2) as usize;
            let mut a = Request { id: 2 * next, ..Request::default() };
            while let Err(back) = transport.submit(w, a) {
                a = back;
                std::hint::spin_loop();
            }
            let mut b = Request { id: 2 * next + 1, ..Request::default() };
            while let Err(back) = transport.submit(1 - w, b) {
                b = back;
                std::hint::spin_loop();
            }
            next += 1;
        }
        for r in transport.take_replies() {
            assert_eq!((r.status, r.value), (status::OK, r.id / 2), "request {}", r.id);
            assert!(!std::mem::replace(&mut done[r.id as usize], true), "request {} answered twice", r.id);
            answered += 1;
        }
        std::thread::yield_now();
    }
    transport.close();
    let stats = rt.shutdown();
    eprintln!(
        "{pairs} wait/notify pairs in {:.1} s: {} blocked, {} preemptions, {} green threads at most; {stats:?}",
        t0.elapsed().as_secs_f64(),
        stats.total.waits,
        stats.total.preemptions,
        stats.green_threads_live
    );
    assert_eq!(stats.total.completed, 2 * pairs);
    // Waiters that found their value already there return at once; the rest blocked.
    assert!(stats.total.waits > 0, "no waiter ever blocked: the test did not test blocking");
}

/// `Notify` ping-pong and a bounded channel across two workers, under preemption: four pairs of
/// requests, each pair on two workers, pass a turn back and forth through two `Notify`s (a lost
/// wake-up hangs the pair and fails the watchdog; a spurious one breaks the strict alternation
/// the shared counter checks), and a producer streams values through a capacity-4 channel to a
/// consumer that checks their order. 1,000,000 waits in release builds (100,000 in debug).
#[test]
fn notify_ping_pong_and_a_bounded_channel_lose_no_wakeup() {
    use synergy::wait::channel;
    use synergy::wait::Notify;
    const PAIRS: u64 = 4;
    let rounds: u64 = if cfg!(debug_assertions) { 12_500 } else { 125_000 };
    let values: u64 = if cfg!(debug_assertions) { 20_000 } else { 200_000 };
    let _serial = common::serial();
    type Turns = (Notify, Notify, AtomicU64);
    let turns: Arc<Vec<Turns>> =
        Arc::new((0..PAIRS).map(|_| (Notify::new(), Notify::new(), AtomicU64::new(0))).collect());
    let (tx, rx) = channel::channel::<u64>(4);
    let tx = Arc::new(Mutex::new(Some(tx)));
    let rx = Arc::new(Mutex::new(Some(rx)));
    let transport = Arc::new(ChannelTransport::new(2, 64, 64));
    let t = turns.clone();
    let rt = Runtime::builder(&common::two_workers())
        .transport(transport.clone())
        .handler(move |req: Request| {
            // SAFETY: the region spins on the clock, counts with atomics and waits on synergy's
            // primitives (whose locks are taken unpreempted): no thread-local storage, no OS lock.
            unsafe { synergy::feedback_start() };
            let value = match req.kind {
                // Ping: my turn (even counts), then hand it over and wait for it back.
                0 | 1 => {
                    let (ping, pong, count) = &t[(req.id / 2) as usize];
                    let (mine, theirs) = if req.kind == 0 { (pong, ping) } else { (ping, pong) };
                    for round in 0..rounds {
                        if req.kind == 1 {
                            mine.wait();
                        }
                        let c = count.fetch_add(1, Ordering::AcqRel);
                        assert_eq!(c % 2, req.kind as u64, "round {round}: a turn taken out of order");
                        synergy::clock::spin_for(round % 4 * 300);
                        theirs.notify_one();
                        if req.kind == 0 {
                            mine.wait();
                        }
                    }
                    count.load(Ordering::Acquire)
                }
                2 => {
                    let tx = synergy::preempt::without_preemption(|| tx.lock().unwrap().take()).expect("the sender");
                    for v in 0..values {
                        tx.send(v).unwrap();
                    }
                    values
                }
                _ => {
                    let mut rx =
                        synergy::preempt::without_preemption(|| rx.lock().unwrap().take()).expect("the receiver");
                    let mut expect = 0;
                    while let Ok(v) = rx.recv() {
                        assert_eq!(v, expect, "values in order");
                        expect += 1;
                    }
                    expect
                }
            };
            synergy::feedback_finished();
            send(Reply::to(&req).with_value(value)).unwrap();
        })
        .start()
        .unwrap();
    for pair in 0..PAIRS {
        // The two sides of a pair on different workers.
        let w = (pair % 2) as usize;
        transport.submit(w, Request { id: 2 * pair, kind: 0, ..Request::default() }).unwrap();
        transport.submit(1 - w, Request { id: 2 * pair + 1, kind: 1, ..Request::default() }).unwrap();
    }
    transport.submit(0, Request { id: 100, kind: 2, ..Request::default() }).unwrap();
    transport.submit(1, Request { id: 101, kind: 3, ..Request::default() }).unwrap();
    let t0 = Instant::now();
    let replies = common::wait_for_replies(&transport, (2 * PAIRS + 2) as usize, Duration::from_secs(900));
    for r in &replies {
        let want = if r.id >= 100 { values } else { 2 * rounds };
        assert_eq!((r.status, r.value), (status::OK, want), "request {}", r.id);
    }
    transport.close();
    let stats = rt.shutdown();
    eprintln!(
        "{} Notify waits and {values} channel values in {:.1} s: {} blocked, {} preemptions",
        PAIRS * 2 * rounds,
        t0.elapsed().as_secs_f64(),
        stats.total.waits,
        stats.total.preemptions
    );
    assert!(stats.total.waits > 0, "no request ever blocked");
}
