//! memcached over UDP (issue 42): the 8-byte frame header on every datagram, replies cut into
//! numbered datagrams, junk and multi-datagram requests dropped and counted, and `memcaslap -U`
//! driving the service. Needs Debian's libmemcached-tools for the last test (it fails and says so
//! without it).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;
use synergy_memcached::udp::{HEADER, MAX_PAYLOAD};

#[global_allocator]
static ALLOC: synergy::PreemptSafeAlloc = synergy::PreemptSafeAlloc;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn service() -> synergy_memcached::UdpService {
    let mut config = synergy::Config::default();
    let allowed = synergy::cpu::allowed_cpus();
    if allowed.len() >= 2 {
        config.timer_core = Some(allowed[0]);
        config.worker_cores = Some(vec![allowed[1]]);
    }
    synergy_memcached::serve_udp(&config, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), &Default::default())
        .expect("the service starts")
}

fn framed(id: u16, msg: &[u8]) -> Vec<u8> {
    [&synergy_memcached::udp::header(id, 0, 1)[..], msg].concat()
}

/// Sends request `id` and reassembles its reply from its datagrams (checking each header).
fn ask(c: &UdpSocket, to: SocketAddrV4, id: u16, msg: &[u8]) -> Vec<u8> {
    c.send_to(&framed(id, msg), to).unwrap();
    let mut parts: Vec<Option<Vec<u8>>> = Vec::new();
    let mut buf = [0u8; 65_536];
    loop {
        let n = c.recv(&mut buf).expect("a reply datagram within 10 s");
        assert!(n >= HEADER && n - HEADER <= MAX_PAYLOAD, "a datagram of {n} bytes");
        assert_eq!(u16::from_be_bytes([buf[0], buf[1]]), id, "the request's id");
        let (seq, count) =
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, u16::from_be_bytes([buf[4], buf[5]]) as usize);
        parts.resize(count, None);
        assert!(parts[seq].replace(buf[HEADER..n].to_vec()).is_none(), "datagram {seq} twice");
        if parts.iter().all(Option::is_some) {
            return parts.into_iter().flatten().flatten().collect();
        }
    }
}

#[test]
fn requests_and_replies_travel_in_memcached_frames() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = service();
    let to = s.local_addr();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(ask(&c, to, 7, b"set k 0 0 3\r\nabc\r\n"), b"STORED\r\n");
    assert_eq!(ask(&c, to, 8, b"get k\r\n"), b"VALUE k 0 3\r\nabc\r\nEND\r\n");
    // A value of 5,000 bytes comes back in four datagrams, reassembled by sequence number.
    let value: Vec<u8> = (0..5_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let set = [&b"set big 3 0 5000\r\n"[..], &value, b"\r\n"].concat();
    assert_eq!(ask(&c, to, 9, &set), b"STORED\r\n");
    let got = ask(&c, to, 10, b"get big\r\n");
    assert_eq!(got, [&b"VALUE big 3 5000\r\n"[..], &value, b"\r\nEND\r\n"].concat());
    assert_eq!(ask(&c, to, 11, b"bogus\r\n"), b"ERROR\r\n");
    // Junk: too short for a header; a request spread over two datagrams. Both dropped, counted.
    c.send_to(&[1, 2, 3], to).unwrap();
    c.send_to(&[0, 12, 0, 0, 0, 2, 0, 0, b'g'], to).unwrap();
    // Still serving, and noreply sends nothing: the next reply is the get's.
    c.send_to(&framed(13, b"set q 0 0 1 noreply\r\nz\r\n"), to).unwrap();
    assert_eq!(ask(&c, to, 14, b"get q\r\n"), b"VALUE q 0 1\r\nz\r\nEND\r\n");
    let (_, counts) = s.shutdown();
    assert_eq!((counts.received, counts.dropped), (9, 2), "{counts:?}");
}

#[test]
fn memcaslap_drives_the_service_over_udp() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = service();
    let target = format!("127.0.0.1:{}", s.local_addr().port());
    let out = std::process::Command::new("memcaslap")
        .args(["-s", &target, "-U", "-T", "1", "-c", "4", "-x", "100000"])
        .output()
        .expect("memcaslap: the test needs Debian's libmemcached-tools (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "memcaslap: {text}{}", String::from_utf8_lossy(&out.stderr));
    let (stats, counts) = s.shutdown();
    eprintln!("memcaslap -U: {}; server {counts:?}", text.lines().filter(|l| l.contains("Ops:")).collect::<String>());
    let ops: u64 = text
        .lines()
        .find_map(|l| l.split("Ops: ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no 'Ops:' in memcaslap's output: {text}"));
    assert!(ops >= 100_000 && counts.received >= 100_000, "{ops} operations; {counts:?}\n{text}");
    assert_eq!((counts.dropped, counts.send_errors), (0, 0), "{counts:?}");
    assert_eq!(stats.total.completed, counts.received, "every datagram was a request, and answered");
}

/// The side-by-side benchmark's load generator (`loadgen`, scripts/memcached-bench.sh) against
/// the service at a low rate: after `populate` every key hits, every measured request of the
/// mixed workload (single GETs, SETs, 100-200-key multi-gets of several datagrams) is answered
/// in full exactly once, and the server counted the same requests.
#[test]
fn the_open_loop_generator_gets_every_reply_of_the_mixed_workload() {
    use synergy_memcached::loadgen::{populate, run, LoadParams, Proto, Workload, MULTI_GET};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = service();
    let target = server.local_addr();
    populate(target, 5_000, Proto::Udp).expect("every key stored");
    let p = LoadParams {
        target,
        workload: Workload::UsrLong,
        rps: 2_000.0,
        duration: Duration::from_millis(1_500),
        warmup: Duration::from_millis(200),
        keys: 5_000,
        sockets: 2,
        seed: 7,
        proto: Proto::Udp,
    };
    let r = run(&p).expect("the run");
    eprintln!("{}", r.to_json());
    let (_, udp) = server.shutdown();
    assert!(r.sent > 2_000, "{r:?}");
    assert_eq!(r.completed, r.sent, "every measured request answered in full: {r:?}; server {udp:?}");
    assert_eq!(r.get_misses, 0, "every key was stored: {r:?}");
    assert!(r.classes[MULTI_GET].completed > 0, "the mix has multi-gets: {r:?}");
    assert_eq!(udp.dropped, 0, "{udp:?}");
}

/// TCP and UDP from one server (memcached's `-p` and `-U` together): a value stored over TCP is
/// read over UDP and one stored over UDP is read over TCP (one store), each reply going back the
/// way its request came, and both transports count what they carried.
#[test]
fn one_server_speaks_tcp_and_udp_over_one_store() {
    use std::io::{Read, Write};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut config = synergy::Config::default();
    let allowed = synergy::cpu::allowed_cpus();
    if allowed.len() >= 2 {
        config.timer_core = Some(allowed[0]);
        config.worker_cores = Some(vec![allowed[1]]);
    }
    let any = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    let service = synergy_memcached::serve_tcp_and_udp(&config, any, any, &Default::default()).expect("it starts");
    let (tcp_addr, udp_addr) = service.local_addrs();
    let mut tcp = std::net::TcpStream::connect(tcp_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tcp_call = |cmd: &[u8], end: &[u8]| {
        tcp.write_all(cmd).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(end) {
            let n = tcp.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        got
    };
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let udp_call = |id: u16, cmd: &[u8]| {
        udp.send_to(&framed(id, cmd), udp_addr).unwrap();
        let mut buf = [0u8; 2048];
        let n = udp.recv(&mut buf).unwrap();
        assert_eq!(u16::from_be_bytes([buf[0], buf[1]]), id);
        buf[HEADER..n].to_vec()
    };
    assert_eq!(tcp_call(b"set via-tcp 0 0 3\r\nabc\r\n", b"\r\n"), b"STORED\r\n");
    assert_eq!(udp_call(7, b"get via-tcp\r\n"), b"VALUE via-tcp 0 3\r\nabc\r\nEND\r\n");
    assert_eq!(udp_call(8, b"set via-udp 0 0 2\r\nxy\r\n"), b"STORED\r\n");
    assert_eq!(tcp_call(b"get via-udp\r\n", b"END\r\n"), b"VALUE via-udp 0 2\r\nxy\r\nEND\r\n");
    drop(tcp);
    let (stats, tcp_counts, udp_counts) = service.shutdown();
    assert_eq!((tcp_counts.requests, tcp_counts.replies), (2, 2), "{tcp_counts:?}");
    assert_eq!((udp_counts.received, udp_counts.replies), (2, 2), "{udp_counts:?}");
    assert_eq!(stats.total.completed, 4);
}
