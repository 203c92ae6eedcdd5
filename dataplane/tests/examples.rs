//! The examples in `dataplane/examples/`, run as a user would run them: requests over the
//! network, replies checked byte for byte.

#[path = "../../runtime/tests/common/mod.rs"]
mod common;

#[path = "../examples/echo.rs"]
mod echo;

#[path = "../examples/fanout.rs"]
mod fanout;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;
use synergy::request::status;
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
