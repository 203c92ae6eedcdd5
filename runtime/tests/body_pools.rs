//! A lazily initialized static (`OnceLock`) is an OS lock while it initializes. If a handler
//! made one inside a preemptible region and was preempted there, it would park holding the lock,
//! and the next request on the same worker that needs the static would block the worker's OS
//! thread in the lock's futex for good (CI stop 49: the live-state test's own lazy image hung
//! the QEMU bench that way). The runtime's one such static on a handler's path, the body pools,
//! is made when the runtime starts. A test binary of its own: nothing else in this process may
//! touch a body first.

mod common;

use std::sync::Arc;
use synergy::transport::channel::ChannelTransport;
use synergy::{Reply, Request, Runtime};

#[test]
fn the_body_pools_exist_before_the_first_handler_runs() {
    assert!(!synergy::body::pools_ready(), "nothing in this process has used a body yet");
    let transport = Arc::new(ChannelTransport::new(1, 64, 64));
    let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen_in_handler = seen.clone();
    let rt = Runtime::builder(&common::one_worker())
        .transport(transport.clone())
        .handler(move |req: Request| {
            seen_in_handler.store(synergy::body::pools_ready(), std::sync::atomic::Ordering::Relaxed);
            synergy::send(Reply::to(&req)).unwrap();
        })
        .start()
        .expect("runtime starts");
    assert!(synergy::body::pools_ready(), "the runtime's start made the pools");
    transport.submit(0, Request { id: 1, ..Default::default() }).expect("room");
    transport.close();
    rt.shutdown();
    assert_eq!(transport.take_replies().iter().map(|r| r.id).collect::<Vec<_>>(), [1]);
    assert!(seen.load(std::sync::atomic::Ordering::Relaxed), "the handler found the pools made");
}
