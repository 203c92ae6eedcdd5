//! Ingress steering end to end (issue 19): a synergy server behind `--steer scan-avoid` keeps
//! short requests off the worker that runs a long one, so that worker is never preempted; the
//! runtime tells the kernel program through `Transport::long_request`. Needs root (eBPF).

#[path = "../../runtime/tests/common/mod.rs"]
mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synergy::{clock, MigratableHandler, Reply, Request};
use synergy_net::protocol::{decode_reply, encode_request, REPLY_LEN};
use synergy_net::server::UdpServer;
use synergy_net::steering::Steering;

const SHORT: u32 = 0;
const LONG: u32 = 1;

/// Ends the long request: set by the test after the last short reply.
static RELEASE_LONG: AtomicBool = AtomicBool::new(false);

/// Shorts spin 1 µs; the long request runs until the test releases it (bounded by a 300 s
/// watchdog), so every short is sent while it runs however slow the machine (issue 38, C8: it
/// used to run a fixed 1 s, and a stalled test could outlast it).
fn handler() -> MigratableHandler {
    let serve = |req: Request| {
        if req.kind == LONG {
            // SAFETY: the spin reads the runtime's clock and an atomic: no thread-local storage,
            // no lock.
            unsafe { synergy::feedback_start() };
            let t0 = Instant::now();
            while !RELEASE_LONG.load(Ordering::Acquire) && t0.elapsed() < Duration::from_secs(300) {
                clock::spin_for(1_000);
            }
            synergy::feedback_finished();
        } else {
            clock::spin_for(1_000);
        }
        let _ = synergy::send(Reply::to(&req));
    };
    // SAFETY: the handler spins on the runtime's clock, reads an atomic and replies: no
    // thread-local storage, no per-thread libc state, no lock, so all of it may migrate.
    unsafe { MigratableHandler::new(Arc::new(serve)) }
}

#[test]
fn scan_avoid_keeps_shorts_off_the_worker_running_a_long_request() {
    let _g = common::serial();
    let s = UdpServer::start_steered(
        &common::two_workers(),
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
        handler(),
        &Steering::ScanAvoid { long_kinds: vec![LONG] },
    )
    .unwrap_or_else(|e| panic!("starting a scan-avoid server failed (this test needs root for eBPF): {e}"));
    let state = s.transport.steering_state().expect("scan-avoid shares state");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let long = Request { id: 0, kind: LONG, ..Request::default() };
    client.send_to(&encode_request(&long), s.local_addr()).unwrap();
    common::wait_until("the long request starts", Duration::from_secs(10), || state.busy() != 0);
    let busy = state.busy();
    assert!(busy == 0b01 || busy == 0b10, "one worker runs it: {busy:#b}");
    let busy_worker = busy.trailing_zeros();
    // Shorts from many 4-tuples, each answered before the next is sent.
    let mut workers = Vec::new();
    for id in 1..=200u64 {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.send_to(
            &encode_request(&Request { id, kind: SHORT, service_ns: 1_000, ..Request::default() }),
            s.local_addr(),
        )
        .unwrap();
        let mut buf = [0u8; REPLY_LEN];
        let n = c.recv(&mut buf).expect("a short request is answered while the long one runs");
        let r = decode_reply(&buf[..n]).unwrap();
        assert_eq!(r.id, id);
        workers.push(r.worker);
    }
    // Every short was steered while the long request still ran (it runs until released).
    assert_eq!(state.busy(), busy, "the long request still runs");
    assert!(workers.iter().all(|&w| w != busy_worker), "shorts on the busy worker {busy_worker}: {workers:?}");
    RELEASE_LONG.store(true, Ordering::Release);
    let mut buf = [0u8; REPLY_LEN];
    let n = client.recv(&mut buf).expect("the long request is answered");
    assert_eq!(decode_reply(&buf[..n]).unwrap().id, 0);
    assert_eq!(state.busy(), 0, "its worker is free again");
    let (stats, _) = s.shutdown();
    assert_eq!(stats.total.preemptions, 0, "nothing queued behind the long request, so nothing preempted it");
}
