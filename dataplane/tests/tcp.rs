//! The TCP transport through a codec (issue 41, item 2): replies in request order on each
//! connection although requests finish out of order, many connections with partial reads and
//! pipelining, backpressure on a connection whose replies are not read while others are served,
//! and a malformed stream closed.

#[path = "../../runtime/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synergy::{oneshot, send, Reply, Request};
use synergy_net::server::TcpServer;
use synergy_net::stream::codecs::{LineCodec, SynergyCodec};
use synergy_net::stream::tcp::{MAX_IN_FLIGHT, MAX_UNSENT};

fn any() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)
}

fn connect(s: &TcpServer) -> TcpStream {
    let c = TcpStream::connect(s.local_addr()).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c
}

/// "slow" waits until "fast", pipelined behind it on the same connection, has finished: the
/// replies still leave in request order.
#[test]
fn a_reply_waits_for_the_replies_to_earlier_requests_on_its_connection() {
    let _g = common::serial();
    let (tx, rx) = oneshot::channel::<()>();
    let (tx, rx) = (Arc::new(Mutex::new(Some(tx))), Arc::new(Mutex::new(Some(rx))));
    let finished = Arc::new(Mutex::new(Vec::new()));
    let f = finished.clone();
    let server = TcpServer::serve(&common::one_worker(), any(), Arc::new(LineCodec), move |req: Request| {
        let line = req.body().to_vec();
        if line == b"slow" {
            let rx = synergy::preempt::without_preemption(|| rx.lock().unwrap().take()).unwrap();
            rx.recv().unwrap();
        } else if let Some(tx) = synergy::preempt::without_preemption(|| tx.lock().unwrap().take()) {
            tx.send(()).unwrap();
        }
        synergy::preempt::without_preemption(|| f.lock().unwrap().push(line.clone()));
        send(Reply::to(&req).with_body(&[&line[..], b"-done"].concat())).unwrap();
    })
    .expect("server starts");
    let mut c = connect(&server);
    c.write_all(b"slow\nfast\n").unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let (mut a, mut b) = (String::new(), String::new());
    r.read_line(&mut a).unwrap();
    r.read_line(&mut b).unwrap();
    assert_eq!((a.as_str(), b.as_str()), ("slow-done\n", "fast-done\n"), "replies in request order");
    assert_eq!(*finished.lock().unwrap(), [b"fast".to_vec(), b"slow".to_vec()], "finished the other way round");
    drop((c, r));
    let (stats, tcp) = server.shutdown();
    assert_eq!((stats.total.completed, tcp.requests, tcp.replies), (2, 2, 2));
}

/// 32 connections, each pipelining 50 requests written a few bytes at a time: every reply
/// arrives, on its own connection, in order.
#[test]
fn many_connections_with_partial_writes_and_pipelining_get_every_reply_in_order() {
    const CONNS: usize = 32;
    const PER_CONN: usize = 50;
    let _g = common::serial();
    let server = TcpServer::serve(&common::two_workers(), any(), Arc::new(LineCodec), |req: Request| {
        // Some requests spin a little, so completions interleave across the two workers.
        if req.body().len().is_multiple_of(3) {
            synergy::clock::spin_for(20_000);
        }
        send(Reply::to(&req).with_body(req.body())).unwrap();
    })
    .expect("server starts");
    std::thread::scope(|s| {
        for c in 0..CONNS {
            let addr = server.local_addr();
            s.spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let lines: Vec<String> =
                    (0..PER_CONN).map(|i| format!("conn{c}-req{i}-{}", "x".repeat(i % 7))).collect();
                let all: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
                for chunk in all.chunks(3 + c % 5) {
                    stream.write_all(chunk).unwrap();
                }
                let mut r = BufReader::new(stream);
                for want in &lines {
                    let mut got = String::new();
                    r.read_line(&mut got).unwrap();
                    assert_eq!(got.trim_end(), want, "connection {c}");
                }
            });
        }
    });
    let (stats, tcp) = server.shutdown();
    assert_eq!(stats.total.completed, (CONNS * PER_CONN) as u64);
    assert_eq!((tcp.accepted, tcp.requests, tcp.replies, tcp.malformed), (CONNS as u64, 1_600, 1_600, 0));
}

/// Connection A pipelines big requests and reads none of its replies: once it has too much
/// unanswered or unsent it stops being read, while connection B is served as usual. When A reads
/// again, every one of its replies arrives, in order.
#[test]
fn a_connection_that_reads_no_replies_is_throttled_and_others_are_served() {
    const REPLY: usize = 16 * 1024;
    const A_REQUESTS: u64 = 4_000;
    let _g = common::serial();
    let served_a = Arc::new(AtomicU64::new(0));
    let s_a = served_a.clone();
    let server = TcpServer::serve(&common::one_worker(), any(), Arc::new(LineCodec), move |req: Request| {
        if req.body().starts_with(b"a") {
            s_a.fetch_add(1, Ordering::Relaxed);
            let mut body = vec![b'.'; REPLY];
            body[..req.body().len()].copy_from_slice(req.body());
            send(Reply::to(&req).with_body(&body)).unwrap();
        } else {
            send(Reply::to(&req).with_body(req.body())).unwrap();
        }
    })
    .expect("server starts");
    let a = connect(&server);
    let mut a_writer = a.try_clone().unwrap();
    // A's writes block once the server stops reading it: they run on their own thread.
    let writer = std::thread::spawn(move || {
        for i in 0..A_REQUESTS {
            a_writer.write_all(format!("a{i:06}\n").as_bytes()).unwrap();
        }
    });
    common::wait_until("A is throttled", Duration::from_secs(60), || server.transport.counters().throttled > 0);
    let served_while_throttled = served_a.load(Ordering::Relaxed);
    // B is served meanwhile.
    let mut b = connect(&server);
    let mut rb = BufReader::new(b.try_clone().unwrap());
    for i in 0..20 {
        b.write_all(format!("b{i}\n").as_bytes()).unwrap();
        let mut got = String::new();
        rb.read_line(&mut got).unwrap();
        assert_eq!(got, format!("b{i}\n"));
    }
    // A's unanswered requests and unsent bytes stayed bounded: the kernel's socket buffers hold
    // what the transport wrote, at most MAX_UNSENT more waits in the transport, and at most
    // MAX_IN_FLIGHT requests were admitted beyond those.
    let bound = MAX_IN_FLIGHT + (MAX_UNSENT / REPLY) as u64 + (64 << 20) / REPLY as u64;
    assert!(served_while_throttled < A_REQUESTS, "A was stopped before all its requests: {served_while_throttled}");
    assert!(served_while_throttled <= bound, "{served_while_throttled} served for A, bound {bound}");
    // A reads now: everything arrives, in order.
    let mut ra = BufReader::new(a);
    let mut reply = vec![0u8; REPLY + 1];
    for i in 0..A_REQUESTS {
        ra.read_exact(&mut reply).unwrap();
        assert_eq!(&reply[..7], format!("a{i:06}").as_bytes(), "A's reply {i} in order");
    }
    writer.join().unwrap();
    drop((b, rb, ra));
    let (_, tcp) = server.shutdown();
    assert_eq!(tcp.requests, A_REQUESTS + 20);
    eprintln!("A: {served_while_throttled} served when B came; {tcp:?}");
}

/// A stream that is not the protocol is counted malformed and closed.
#[test]
fn a_malformed_stream_is_closed() {
    let _g = common::serial();
    let server = TcpServer::serve(&common::one_worker(), any(), Arc::new(SynergyCodec), |req: Request| {
        send(Reply::to(&req)).unwrap();
    })
    .expect("server starts");
    let mut c = connect(&server);
    c.write_all(&[0x55u8; 200]).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(c.read(&mut buf).unwrap(), 0, "closed without a reply");
    common::wait_until("the close is counted", Duration::from_secs(10), || server.transport.counters().closed == 1);
    let (_, tcp) = server.shutdown();
    assert_eq!((tcp.malformed, tcp.requests), (1, 0));
}

/// A codec that panics on a line "boom" (a user's codec with a bug).
struct PanickyCodec;

impl synergy_net::stream::Codec for PanickyCodec {
    fn decode(
        &self,
        buf: &[u8],
        max_body: usize,
    ) -> Result<Option<(synergy_net::stream::Frame, usize)>, synergy_net::stream::CodecError> {
        assert!(!buf.starts_with(b"boom"), "the codec has a bug");
        LineCodec.decode(buf, max_body)
    }

    fn encode(&self, reply: &Reply, out: &mut Vec<u8>) {
        LineCodec.encode(reply, out)
    }
}

/// A codec that panics closes the connection it was decoding, counted as malformed; the
/// process lives on and serves the other connections (it aborted: "panic in a function that
/// cannot unwind", the worker's green thread).
#[test]
fn a_codec_that_panics_closes_its_connection_and_the_server_goes_on() {
    let _g = common::serial();
    let server = TcpServer::serve(&common::one_worker(), any(), Arc::new(PanickyCodec), |req: Request| {
        send(Reply::to(&req).with_body(req.body())).unwrap();
    })
    .expect("server starts");
    let mut bad = connect(&server);
    bad.write_all(b"ok\nboom\n").unwrap();
    let mut r = BufReader::new(bad.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "ok\n", "what came before the bad frame is answered");
    line.clear();
    assert_eq!(r.read_line(&mut line).unwrap(), 0, "then the connection is closed");
    let mut good = connect(&server);
    good.write_all(b"still\n").unwrap();
    let mut r = BufReader::new(good.try_clone().unwrap());
    line.clear();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "still\n");
    drop((good, r));
    let (_, tcp) = server.shutdown();
    assert_eq!((tcp.malformed, tcp.requests), (1, 2));
}
