//! Clients that misbehave, over TCP (issue 42, bad input): each gets memcached's answer or is
//! dropped, the server keeps serving the others, and no stored item is corrupted.
//! * slowloris: a `set` sent one byte at a time (every 20 ms) while another client is served;
//! * 10,000 idle connections (held by a child process: each side needs its own descriptors),
//!   then a fresh client is served and every idle connection is accepted and closed cleanly;
//! * a connection closed in the middle of a value: nothing is stored, the old value survives.
//!
//! UDP junk and truncated frames are tests/udp.rs's.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: synergy::PreemptSafeAlloc = synergy::PreemptSafeAlloc;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn start() -> synergy_net::server::TcpServer {
    let mut config = synergy::Config::default();
    let allowed = synergy::cpu::allowed_cpus();
    if allowed.len() >= 2 {
        config.timer_core = Some(allowed[0]);
        config.worker_cores = Some(vec![allowed[1]]);
    }
    synergy_memcached::serve(&config, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), &Default::default())
        .expect("the service starts")
}

fn connect(addr: SocketAddrV4) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `cmd` and reads until the reply ends with `end`.
fn call(s: &mut TcpStream, cmd: &[u8], end: &[u8]) -> Vec<u8> {
    s.write_all(cmd).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(end) {
        let n = s.read(&mut buf).expect("a reply within 10 s");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn a_slowloris_client_does_not_hold_up_the_others() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = start();
    let addr = server.local_addr();
    let mut slow = connect(addr);
    let mut fast = connect(addr);
    let message = b"set slow 0 0 5\r\nhello\r\n";
    let mut served = 0;
    for (i, byte) in message.iter().enumerate() {
        slow.write_all(&[*byte]).unwrap();
        // Between two of the slow client's bytes the other client is served, in full.
        let v = format!("v{i}");
        let reply = call(&mut fast, format!("set fast 0 0 {}\r\n{v}\r\n", v.len()).as_bytes(), b"\r\n");
        assert_eq!(reply, b"STORED\r\n");
        let reply = call(&mut fast, b"get fast\r\n", b"END\r\n");
        assert_eq!(reply, format!("VALUE fast 0 {}\r\n{v}\r\nEND\r\n", v.len()).as_bytes());
        served += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut buf = [0u8; 64];
    let n = slow.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STORED\r\n", "the slow set completes");
    assert_eq!(call(&mut fast, b"get slow\r\n", b"END\r\n"), b"VALUE slow 0 5\r\nhello\r\nEND\r\n");
    let tcp = server.shutdown().1;
    assert_eq!(served, message.len());
    assert_eq!((tcp.malformed, tcp.reply_errors), (0, 0), "{tcp:?}");
}

#[test]
fn a_connection_closed_mid_value_stores_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = start();
    let addr = server.local_addr();
    let mut c = connect(addr);
    assert_eq!(call(&mut c, b"set k 0 0 4\r\nold!\r\n", b"\r\n"), b"STORED\r\n");
    {
        let mut cut = connect(addr);
        cut.write_all(b"set k 0 0 1000\r\n").unwrap();
        cut.write_all(&[b'x'; 500]).unwrap();
        // Dropped here: closed with half the value sent.
    }
    // The same through a half-written multi-command pipeline.
    {
        let mut cut = connect(addr);
        cut.write_all(b"set a 0 0 1\r\n1\r\nset k 0 0 10\r\nnew").unwrap();
        assert_eq!(call(&mut cut, b"", b"STORED\r\n"), b"STORED\r\n");
    }
    let t0 = Instant::now();
    while server.counters().closed < 2 {
        assert!(t0.elapsed() < Duration::from_secs(10), "the cut connections were not closed: {:?}", server.counters());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(call(&mut c, b"get k a\r\n", b"END\r\n"), b"VALUE k 0 4\r\nold!\r\nVALUE a 0 1\r\n1\r\nEND\r\n");
    let tcp = server.shutdown().1;
    assert_eq!(tcp.malformed, 0, "{tcp:?}");
}

/// The child's side of the idle-connection test: opens `SYNERGY_IDLE_CONNECT` connections to
/// `SYNERGY_IDLE_TARGET`, prints "connected N", and holds them until its stdin closes.
#[test]
fn idle_connection_holder() {
    let (Ok(target), Ok(n)) = (std::env::var("SYNERGY_IDLE_TARGET"), std::env::var("SYNERGY_IDLE_CONNECT")) else {
        return; // not the child
    };
    synergy_memcached::raise_fd_limit();
    let n: usize = n.parse().unwrap();
    let conns: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(&target).expect("connect")).collect();
    println!("connected {}", conns.len());
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(conns);
}

#[test]
fn ten_thousand_idle_connections_and_the_server_still_serves() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = start();
    let addr = server.local_addr();
    let idle = 10_000;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "idle_connection_holder", "--nocapture", "--test-threads=1"])
        .env("SYNERGY_IDLE_TARGET", addr.to_string())
        .env("SYNERGY_IDLE_CONNECT", idle.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains(&format!("connected {idle}")) {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "the child stopped: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let t0 = Instant::now();
    while server.counters().accepted < idle {
        assert!(t0.elapsed() < Duration::from_secs(60), "accepted {:?} of {idle}", server.counters());
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut c = connect(addr);
    assert_eq!(call(&mut c, b"set k 0 0 2\r\nok\r\n", b"\r\n"), b"STORED\r\n");
    assert_eq!(call(&mut c, b"get k\r\n", b"END\r\n"), b"VALUE k 0 2\r\nok\r\nEND\r\n");
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    while server.counters().closed < idle {
        assert!(t0.elapsed() < Duration::from_secs(120), "closed {:?} of {idle}", server.counters());
        std::thread::sleep(Duration::from_millis(10));
    }
    let tcp = server.shutdown().1;
    eprintln!("idle: {tcp:?}");
    assert_eq!(tcp.accepted, idle + 1);
    assert_eq!((tcp.malformed, tcp.reply_errors, tcp.accept_errors), (0, 0, 0), "{tcp:?}");
}
