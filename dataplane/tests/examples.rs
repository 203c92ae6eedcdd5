//! The examples in `dataplane/examples/`, run as a user would run them: requests over the
//! network, replies checked byte for byte.

#[path = "../../runtime/tests/common/mod.rs"]
mod common;

#[path = "../examples/echo.rs"]
mod echo;

#[path = "../examples/fanout.rs"]
mod fanout;

#[path = "../examples/kv.rs"]
mod kv;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;
use synergy::request::status;
use synergy::request::Key;
use synergy::{Body, Request};
use synergy_net::protocol::{decode_reply, encode_request, reply_body, REPLY_LEN};

#[test]
fn echo_answers_every_request_with_its_own_body() {
    let _g = common::serial();
    let server = echo::start(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), &common::one_worker()).expect("echo starts");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 65_536];
    let sizes = [0usize, 1, 64, 1_024, 16_384, 65_379];
    for (id, &len) in sizes.iter().enumerate() {
        let body: Vec<u8> = (0..len).map(|i| (i * 13 + id * 7) as u8).collect();
        let req = Request { id: id as u64, body: Body::from_slice(&body), ..Request::default() };
        client.send_to(&encode_request(&req), server.local_addr()).unwrap();
        let (n, _) = client.recv_from(&mut buf).expect("an echo within 10 s");
        let r = decode_reply(&buf[..n]).unwrap_or_else(|e| panic!("{len} bytes: {e}"));
        assert_eq!((r.id, r.status, r.value), (id as u64, status::OK, len as u64));
        assert_eq!((n, reply_body(&buf[..n])), (REPLY_LEN + len, &body[..]), "{len} bytes");
    }
    let (stats, udp) = server.shutdown();
    assert_eq!(stats.total.completed, sizes.len() as u64);
    assert_eq!((udp[0].received, udp[0].replies, udp[0].malformed), (6, 6, 0));
}

#[test]
fn fanout_joins_two_sub_requests_answered_by_a_back_end() {
    let _g = common::serial();
    let any = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    let backend = echo::start(any, &common::one_worker()).expect("the back end starts");
    let front = fanout::start(any, backend.local_addr(), &common::one_worker()).expect("the front end starts");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 65_536];
    for (id, body) in [(1u64, &b"left|right"[..]), (2, b"x"), (3, b"")] {
        let req = Request { id, body: Body::from_slice(body), ..Request::default() };
        client.send_to(&encode_request(&req), front.local_addr()).unwrap();
        let (n, _) = client.recv_from(&mut buf).expect("a joined reply within 10 s");
        let r = decode_reply(&buf[..n]).unwrap();
        assert_eq!((r.id, r.status, r.value), (id, status::OK, 2));
        // Each half went to the back end and came back: together, the request's body.
        assert_eq!(reply_body(&buf[..n]), body, "request {id}");
    }
    let (front_stats, _) = front.shutdown();
    let (back_stats, back) = backend.shutdown();
    assert_eq!(front_stats.total.completed, 3);
    assert_eq!((back_stats.total.completed, back[0].replies), (6, 6), "two sub-requests per request");
}

/// `kv`: SET then GET every key byte for byte, a missing key, and SCANs, each SCAN answered with
/// the exact entry and byte counts; GETs sent while a SCAN runs overtake it on the one worker
/// (the SCAN yields at its probes), which the test waits for: SCANs are repeated, GETs sent
/// behind each, until a SCAN comes back parked at least once with a GET answered before it.
#[test]
fn kv_gets_sets_and_scans_and_its_scan_is_preempted() {
    let _g = common::serial();
    let server = kv::start(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), &common::one_worker()).expect("kv starts");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 65_536];
    let mut call = |id: u64, kind: u32, key: &[u8], body: &[u8]| {
        let req = Request { id, kind, key: Key::new(key).unwrap(), body: Body::from_slice(body), ..Request::default() };
        client.send_to(&encode_request(&req), server.local_addr()).unwrap();
        let (n, _) = client.recv_from(&mut buf).expect("a reply within 10 s");
        (decode_reply(&buf[..n]).unwrap(), reply_body(&buf[..n]).to_vec())
    };
    let keys = 20_000u64;
    let value = |k: u64| vec![(k % 251) as u8; (k % 97) as usize];
    for k in 0..keys {
        let (r, _) = call(k, kv::SET, format!("key{k:06}").as_bytes(), &value(k));
        assert_eq!((r.id, r.status), (k, status::OK));
    }
    for k in (0..keys).step_by(997) {
        let (r, body) = call(k, kv::GET, format!("key{k:06}").as_bytes(), b"");
        assert_eq!((r.status, body), (status::OK, value(k)), "GET key{k:06}");
    }
    assert_eq!(call(1, kv::GET, b"nokey", b"").0.status, kv::NOT_FOUND);
    assert_eq!(call(2, 99, b"k", b"").0.status, status::UNKNOWN_KIND);
    let from = 5_000u64;
    let (r, body) = call(3, kv::SCAN, format!("key{from:06}").as_bytes(), b"");
    let bytes: u64 = (from..keys).map(|k| value(k).len() as u64).sum();
    assert_eq!((r.status, r.value, body), (status::OK, keys - from, bytes.to_le_bytes().to_vec()));

    // A SCAN and GETs behind it, until one SCAN was parked with a GET answered first.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t0 = std::time::Instant::now();
    let mut rounds = 0;
    loop {
        assert!(t0.elapsed() < Duration::from_secs(120), "no SCAN was overtaken in {rounds} rounds");
        rounds += 1;
        let scan = Request { id: 1_000_000, kind: kv::SCAN, key: Key::new(b"key").unwrap(), ..Request::default() };
        socket.send_to(&encode_request(&scan), server.local_addr()).unwrap();
        let (mut gets_sent, mut gets_first) = (0u64, 0u64);
        let scan_reply = loop {
            if gets_sent < 50 {
                let get = Request {
                    id: gets_sent,
                    kind: kv::GET,
                    key: Key::new(b"key000007").unwrap(),
                    ..Request::default()
                };
                socket.send_to(&encode_request(&get), server.local_addr()).unwrap();
                gets_sent += 1;
            }
            let (n, _) = socket.recv_from(&mut buf).expect("a reply within 10 s");
            let r = decode_reply(&buf[..n]).unwrap();
            if r.id == 1_000_000 {
                break r;
            }
            gets_first += 1;
        };
        assert_eq!((scan_reply.status, scan_reply.value), (status::OK, keys));
        // The GETs still in flight come back after it.
        for _ in gets_first..gets_sent {
            socket.recv_from(&mut buf).expect("every GET answered");
        }
        if scan_reply.preemptions > 0 && gets_first > 0 {
            break;
        }
    }
    let (stats, udp) = server.shutdown();
    assert_eq!(stats.total.migrations, 0, "a cooperative SCAN stays on its worker");
    assert_eq!(stats.timer.interrupts_sent, 0, "and is never interrupted");
    assert_eq!(udp[0].malformed, 0);
}
