//! `Runtime::shutdown_within` (issue 41, item 5): under full load, with long requests queued and
//! parked, the runtime stops once the deadline passed instead of draining them, and says how
//! many it abandoned; with nothing left to drain it returns at once with nothing abandoned.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};
use synergy::transport::channel::ChannelTransport;
use synergy::{feedback_finished, feedback_start, send, Reply, Request, Runtime};

/// 2,000 long requests of 10 ms each (20 s of work for one worker) queued behind each other; the
/// runtime is told to stop within 100 ms once a few have been answered. It returns long before
/// the 20 s a drain would take (the bound asserted is 10 s, for a slow machine), abandons most of
/// them, and answered every request it did not abandon.
#[test]
fn a_deadline_stops_a_runtime_full_of_long_requests() {
    let _serial = common::serial();
    let transport = Arc::new(ChannelTransport::new(1, 4096, 4096));
    let rt = Runtime::builder(&common::one_worker())
        .transport(transport.clone())
        .handler(|req: Request| {
            // SAFETY: the spin reads the clock only: no thread-local storage, no lock.
            unsafe { feedback_start() };
            synergy::clock::spin_work(10_000_000); // 10 ms of work, not of wall time
            feedback_finished();
            send(Reply::to(&req)).unwrap();
        })
        .start()
        .expect("runtime starts");
    for id in 0..2_000 {
        transport.submit(0, Request { id, kind: 1, ..Default::default() }).unwrap();
    }
    let mut answered = 0;
    common::wait_until("a first reply", Duration::from_secs(60), || {
        answered += transport.take_replies().len();
        answered > 0
    });
    let t0 = Instant::now();
    let (stats, abandoned) = rt.shutdown_within(Duration::from_millis(100));
    let took = t0.elapsed();
    answered += transport.take_replies().len();
    eprintln!("shutdown_within(100 ms) took {took:?}: {answered} answered, {abandoned} abandoned");
    assert!(took < Duration::from_secs(10), "it drained instead of stopping: {took:?}");
    assert!(abandoned > 1_000, "{abandoned} abandoned of 2,000: {stats:?}");
    assert_eq!(answered as u64 + abandoned, stats.total.admitted, "every request answered or abandoned");
    assert_eq!(stats.total.completed, answered as u64);
}

#[test]
fn with_nothing_to_drain_it_returns_at_once_and_abandons_nothing() {
    let _serial = common::serial();
    let transport = Arc::new(ChannelTransport::new(1, 64, 64));
    let rt = Runtime::builder(&common::one_worker())
        .transport(transport.clone())
        .handler(|req: Request| send(Reply::to(&req)).unwrap())
        .start()
        .expect("runtime starts");
    transport.submit(0, Request { id: 1, ..Default::default() }).unwrap();
    let replies = common::wait_for_replies(&transport, 1, Duration::from_secs(30));
    assert_eq!(replies.len(), 1);
    transport.close();
    let (stats, abandoned) = rt.shutdown_within(Duration::from_secs(60));
    assert_eq!((abandoned, stats.total.completed), (0, 1));
}
