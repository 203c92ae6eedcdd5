//! An open-loop load generator that speaks memcached's text protocol over UDP or TCP (issue 42's
//! side by side): Poisson arrivals on a fixed schedule, each request sent at its time whatever the
//! replies do (memcaslap is closed loop: it waits for each reply, so its latencies hide queueing).
//!
//! As Caladan's generator does, a send more than [`LATE_NS`] behind its schedule counts as late,
//! and a point with more than [`MAX_LATE_FRACTION`] late sends is invalid (`LoadResult::valid`):
//! the generator, not the server, was the bottleneck there.
//!
//! Requests are matched to replies by the UDP frame header's request id (16 bits: an id is reused
//! after 65,536 sends, so a reply older than that wraps; at 200,000 requests/s that is 0.33 s,
//! far beyond any latency measured here). A reply is complete when all of its datagrams arrived
//! (the header's count); its latency is the time from the request's send to the last datagram.
//!
//! Over TCP ([`Proto::Tcp`]) requests go round-robin over `sockets` connections, each written
//! without waiting (non-blocking, Nagle off), and each connection's replies are matched to its
//! requests in order, as memcached answers them. Multi-gets travel on a connection of their own:
//! memcached (and synergy) answer one connection in request order, so a short GET behind a long
//! one on the same connection waits for it on either server; the tail claim is across
//! connections, and that is what this measures.
//!
//! Workloads ([`Workload`]): **USR-like** (the Facebook USR pool as Shenango, Caladan,
//! Breakwater and Skyloft use it: 20-byte keys, 2-byte values, 0.2% SETs, the rest single-key
//! GETs over a uniformly chosen key), and **USR plus long requests**, ours: the same, with 1% of
//! requests a multi-get of 100-200 keys (a reply of several datagrams, and work on the server
//! 100-200 times a GET's). None of those systems mixes long requests into memcached (they use
//! RocksDB's SCAN for that); the mix is what synergy's preemption is for.

use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// A send this far behind its scheduled time is late.
pub const LATE_NS: u64 = 20_000;
/// A point with more late sends than this fraction is invalid.
pub const MAX_LATE_FRACTION: f64 = 0.05;

/// Which requests the generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// 99.8% GET, 0.2% SET; 20-byte keys, 2-byte values.
    Usr,
    /// As `Usr`, with 1% of the requests a multi-get of 100-200 keys.
    UsrLong,
}

impl Workload {
    /// The workload called `name` (`usr`, `usr-long`).
    pub fn named(name: &str) -> Option<Workload> {
        match name {
            "usr" => Some(Workload::Usr),
            "usr-long" => Some(Workload::UsrLong),
            _ => None,
        }
    }
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Usr => "usr",
            Workload::UsrLong => "usr-long",
        }
    }
}

/// The transport the generator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// memcached's UDP frame header, replies matched by request id.
    Udp,
    /// Connections written without waiting, replies matched in order.
    Tcp,
}

impl Proto {
    /// The transport called `name` (`udp`, `tcp`).
    pub fn named(name: &str) -> Option<Proto> {
        match name {
            "udp" => Some(Proto::Udp),
            "tcp" => Some(Proto::Tcp),
            _ => None,
        }
    }
}

/// Request classes, as reported.
/// Single-key GETs (the short requests whose tail is the result).
pub const GET: usize = 0;
/// SETs.
pub const SET: usize = 1;
/// The 100-200-key multi-gets of `usr-long`.
pub const MULTI_GET: usize = 2;
const CLASSES: [&str; 3] = ["get", "set", "multiget"];

/// One point's settings.
#[derive(Debug, Clone)]
pub struct LoadParams {
    /// The server.
    pub target: SocketAddrV4,
    /// What to send.
    pub workload: Workload,
    /// Offered load, requests per second.
    pub rps: f64,
    /// The measured window (after the warm-up).
    pub duration: Duration,
    /// Requests sent before this are not measured.
    pub warmup: Duration,
    /// Keys in the key space (each stored once before the run by `populate`).
    pub keys: u64,
    /// Client sockets (the server sees one flow per socket); over TCP, the connections for
    /// short requests (multi-gets get one more of their own).
    pub sockets: usize,
    /// UDP or TCP.
    pub proto: Proto,
    /// The schedule's seed (the same seed, the same requests at the same times).
    pub seed: u64,
}

/// Latency of one class (ns).
#[derive(Debug, Clone, Default)]
pub struct ClassResult {
    /// `get`, `set` or `multiget`.
    pub name: &'static str,
    /// Measured requests of the class answered.
    pub completed: u64,
    /// Median latency.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
}

/// One point's result.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// The rate asked for.
    pub offered_rps: f64,
    /// Measured requests sent, and those answered in full.
    pub sent: u64,
    /// Measured requests answered in full.
    pub completed: u64,
    /// Measured completions per second of the measured window.
    pub achieved_rps: f64,
    /// Sends more than `LATE_NS` behind their time.
    pub late: u64,
    /// `late` over `sent`.
    pub late_fraction: f64,
    /// At most `MAX_LATE_FRACTION` of the sends were late.
    pub valid: bool,
    /// GET replies that said END without a value (a key the server evicted or never had).
    pub get_misses: u64,
    /// Per class (`GET`, `SET`, `MULTI_GET`).
    pub classes: Vec<ClassResult>,
}

impl LoadResult {
    /// One JSON object (no dependency on a serialiser).
    pub fn to_json(&self) -> String {
        let classes: Vec<String> = self
            .classes
            .iter()
            .map(|c| {
                format!(
                    "{{\"class\":\"{}\",\"completed\":{},\"p50_ns\":{},\"p99_ns\":{},\"p999_ns\":{}}}",
                    c.name, c.completed, c.p50_ns, c.p99_ns, c.p999_ns
                )
            })
            .collect();
        format!(
            "{{\"offered_rps\":{:.1},\"sent\":{},\"completed\":{},\"achieved_rps\":{:.1},\"late\":{},\"late_fraction\":{:.5},\"valid\":{},\"get_misses\":{},\"classes\":[{}]}}",
            self.offered_rps,
            self.sent,
            self.completed,
            self.achieved_rps,
            self.late,
            self.late_fraction,
            self.valid,
            self.get_misses,
            classes.join(",")
        )
    }
}

/// The 20-byte key of key number `k`.
pub fn key(k: u64) -> String {
    format!("usr:{k:016}")
}

/// The schedule's generator (splitmix64, the workloads' own): it depends on the seed alone.
pub use synergy_eval::rng::SplitMix64 as Rng;

/// Stores every key once (2-byte values), `window` requests in flight, each answered before the
/// run starts, so that GETs hit. Fails if a SET is not answered `STORED` within 5 s.
pub fn populate(target: SocketAddrV4, keys: u64, proto: Proto) -> io::Result<()> {
    match proto {
        Proto::Udp => populate_udp(target, keys),
        Proto::Tcp => populate_tcp(target, keys),
    }
}

fn populate_tcp(target: SocketAddrV4, keys: u64) -> io::Result<()> {
    let mut c = TcpStream::connect(target)?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.set_nodelay(true)?;
    let window = 64u64;
    let (mut next, mut done) = (0u64, 0u64);
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 4096];
    while done < keys {
        let mut batch = Vec::new();
        while next < keys && next - done < window {
            batch.extend_from_slice(format!("set {} 0 0 2\r\nv{}\r\n", key(next), next % 10).as_bytes());
            next += 1;
        }
        c.write_all(&batch)?;
        while done < next {
            while let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                if &buf[..end] != b"STORED" {
                    return Err(io::Error::other(format!("populating: {:?}", String::from_utf8_lossy(&buf[..end]))));
                }
                buf.drain(..end + 2);
                done += 1;
            }
            if done == next {
                break;
            }
            let n = c.read(&mut chunk).map_err(|e| io::Error::new(e.kind(), format!("populating: {e}")))?;
            if n == 0 {
                return Err(io::Error::other("populating: the server closed the connection"));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    Ok(())
}

fn populate_udp(target: SocketAddrV4, keys: u64) -> io::Result<()> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.connect(target)?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    let window = 64u64;
    let mut buf = vec![0u8; 2048];
    let mut next = 0u64;
    let mut done = 0u64;
    while done < keys {
        while next < keys && next - done < window {
            let msg = frame(next as u16, format!("set {} 0 0 2\r\nv{}\r\n", key(next), next % 10).as_bytes());
            socket.send(&msg)?;
            next += 1;
        }
        let n = socket.recv(&mut buf).map_err(|e| io::Error::new(e.kind(), format!("populating: {e}")))?;
        if n < 8 || &buf[8..n] != b"STORED\r\n" {
            return Err(io::Error::other(format!("populating: {:?}", String::from_utf8_lossy(&buf[..n]))));
        }
        done += 1;
    }
    Ok(())
}

/// Request `id` in one datagram: the frame header (`udp::header`), then the text.
fn frame(id: u16, payload: &[u8]) -> Vec<u8> {
    [&crate::udp::header(id, 0, 1)[..], payload].concat()
}

/// Per request id: its send time (ns since the run's start + 1; 0: none outstanding; `u64::MAX`:
/// sent during the warm-up, not measured), class, and the datagrams of its reply seen so far.
#[derive(Clone, Copy, Default)]
struct Slot {
    sent_ns: u64,
    class: usize,
    datagrams: u64,
}

/// The replies seen so far.
struct Tally {
    slots: Vec<Slot>,
    hist: Vec<Histogram<u64>>,
    misses: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally { slots: vec![Slot::default(); 65_536], hist: (0..3).map(|_| hist()).collect(), misses: 0 }
    }

    /// Reads every datagram waiting on `s` (non-blocking).
    fn drain(&mut self, s: &UdpSocket, buf: &mut [u8], start: Instant) {
        while let Ok(n) = s.recv(buf) {
            let now = start.elapsed().as_nanos() as u64;
            if n < 8 {
                continue;
            }
            let slot = &mut self.slots[u16::from_be_bytes([buf[0], buf[1]]) as usize];
            let total = u16::from_be_bytes([buf[4], buf[5]]) as u64;
            if slot.sent_ns == 0 {
                continue; // not outstanding (a duplicate, or wrapped)
            }
            slot.datagrams += 1;
            if slot.datagrams < total {
                continue;
            }
            if slot.class == GET && total == 1 && &buf[8..n] == b"END\r\n" {
                self.misses += 1;
            }
            if slot.sent_ns != u64::MAX {
                self.hist[slot.class].record((now + 1).saturating_sub(slot.sent_ns).max(1)).expect("within bounds");
            }
            slot.sent_ns = 0;
        }
    }
}

/// The next request of the workload: its class and its text.
fn draw(rng: &mut Rng, p: &LoadParams) -> (usize, String) {
    let r = rng.next_f64();
    if p.workload == Workload::UsrLong && r < 0.01 {
        let n = 100 + rng.next_u64() % 101;
        let mut line = String::from("get");
        for _ in 0..n {
            line.push(' ');
            line.push_str(&key(rng.next_u64() % p.keys));
        }
        line.push_str("\r\n");
        (MULTI_GET, line)
    } else if r > 0.998 {
        (SET, format!("set {} 0 0 2\r\nv{}\r\n", key(rng.next_u64() % p.keys), rng.next_u64() % 10))
    } else {
        (GET, format!("get {}\r\n", key(rng.next_u64() % p.keys)))
    }
}

/// Runs one point on the calling thread alone (sends at their times, reads replies in between),
/// then drains replies for 100 ms.
pub fn run(p: &LoadParams) -> io::Result<LoadResult> {
    match p.proto {
        Proto::Udp => run_udp(p),
        Proto::Tcp => run_tcp(p),
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// What a point's counts make of it.
fn result(p: &LoadParams, sent: u64, late: u64, misses: u64, hist: &[Histogram<u64>]) -> LoadResult {
    let completed: u64 = hist.iter().map(|h| h.len()).sum();
    let late_fraction = if sent == 0 { 0.0 } else { late as f64 / sent as f64 };
    LoadResult {
        offered_rps: p.rps,
        sent,
        completed,
        achieved_rps: completed as f64 / p.duration.as_secs_f64(),
        late,
        late_fraction,
        valid: late_fraction <= MAX_LATE_FRACTION,
        get_misses: misses,
        classes: hist
            .iter()
            .enumerate()
            .map(|(i, h)| ClassResult {
                name: CLASSES[i],
                completed: h.len(),
                p50_ns: h.value_at_quantile(0.5),
                p99_ns: h.value_at_quantile(0.99),
                p999_ns: h.value_at_quantile(0.999),
            })
            .collect(),
    }
}

/// One TCP connection of the generator: bytes not yet taken by the kernel, the requests awaiting
/// their replies in order (send time as in `Slot`, class), the reply bytes not yet parsed.
struct Conn {
    stream: TcpStream,
    unsent: Vec<u8>,
    waiting: VecDeque<(u64, usize)>,
    input: Vec<u8>,
}

/// Where the first whole reply in `buf` ends, and whether it was a GET's empty answer (`END`
/// alone): `VALUE` blocks (their data skipped by its length) up to `END`, or one line.
fn reply_len(buf: &[u8]) -> Option<(usize, bool)> {
    let mut at = 0;
    loop {
        let end = at + buf[at..].windows(2).position(|w| w == b"\r\n")?;
        let line = &buf[at..end];
        if let Some(rest) = line.strip_prefix(b"VALUE ") {
            let len: usize = std::str::from_utf8(rest).ok()?.split(' ').nth(2)?.parse().ok()?;
            at = end + 2 + len + 2;
            if buf.len() < at {
                return None;
            }
            continue;
        }
        return Some((end + 2, at == 0 && line == b"END"));
    }
}

impl Conn {
    /// Writes what the kernel takes.
    fn flush(&mut self) -> io::Result<()> {
        while !self.unsent.is_empty() {
            match self.stream.write(&self.unsent) {
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what arrived and records every whole reply.
    fn drain(
        &mut self,
        buf: &mut [u8],
        start: Instant,
        hist: &mut [Histogram<u64>],
        misses: &mut u64,
    ) -> io::Result<()> {
        loop {
            match self.stream.read(buf) {
                Ok(0) => return Err(io::Error::other("the server closed a connection")),
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let now = start.elapsed().as_nanos() as u64;
        let mut used = 0;
        while let Some((len, miss)) = reply_len(&self.input[used..]) {
            used += len;
            let Some((sent_ns, class)) = self.waiting.pop_front() else {
                return Err(io::Error::other("a reply to no request"));
            };
            if class == GET && miss {
                *misses += 1;
            }
            if sent_ns != u64::MAX {
                hist[class].record((now + 1).saturating_sub(sent_ns).max(1)).expect("within bounds");
            }
        }
        self.input.drain(..used);
        Ok(())
    }
}

fn run_tcp(p: &LoadParams) -> io::Result<LoadResult> {
    let short = p.sockets.max(1);
    let conns = short + usize::from(p.workload == Workload::UsrLong);
    let mut conns: Vec<Conn> = (0..conns)
        .map(|_| {
            let stream = TcpStream::connect(p.target)?;
            stream.set_nodelay(true)?;
            stream.set_nonblocking(true)?;
            Ok(Conn { stream, unsent: Vec::new(), waiting: VecDeque::new(), input: Vec::new() })
        })
        .collect::<io::Result<_>>()?;
    let mut hist: Vec<Histogram<u64>> = (0..3).map(|_| hist()).collect();
    let mut misses = 0;
    let mut buf = vec![0u8; 64 << 10];
    let start = Instant::now();
    let warmup_ns = p.warmup.as_nanos() as u64;
    let end_ns = warmup_ns + p.duration.as_nanos() as u64;
    let mut rng = Rng::new(p.seed ^ 0x5EED);
    let mean_gap_ns = 1e9 / p.rps;
    let (mut at_ns, mut sent, mut late, mut next_short) = (0f64, 0u64, 0u64, 0usize);
    while (at_ns as u64) < end_ns {
        let due = at_ns as u64;
        let mut now = start.elapsed().as_nanos() as u64;
        while now < due {
            for c in &mut conns {
                c.flush()?;
                c.drain(&mut buf, start, &mut hist, &mut misses)?;
            }
            now = start.elapsed().as_nanos() as u64;
        }
        let measured = due >= warmup_ns;
        if measured {
            sent += 1;
            late += (now - due > LATE_NS) as u64;
        }
        let (class, payload) = draw(&mut rng, p);
        let c = if class == MULTI_GET {
            &mut conns[short]
        } else {
            next_short = (next_short + 1) % short;
            &mut conns[next_short]
        };
        c.waiting.push_back((if measured { now + 1 } else { u64::MAX }, class));
        c.unsent.extend_from_slice(payload.as_bytes());
        c.flush()?;
        at_ns += -mean_gap_ns * (1.0 - rng.next_f64()).ln();
    }
    let drain_until = start.elapsed() + Duration::from_millis(100);
    while start.elapsed() < drain_until {
        for c in &mut conns {
            c.flush()?;
            c.drain(&mut buf, start, &mut hist, &mut misses)?;
        }
    }
    Ok(result(p, sent, late, misses, &hist))
}

fn run_udp(p: &LoadParams) -> io::Result<LoadResult> {
    let sockets: Vec<UdpSocket> = (0..p.sockets.max(1))
        .map(|_| {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.connect(p.target)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect::<io::Result<_>>()?;
    let mut tally = Tally::new();
    let mut buf = vec![0u8; 2048];
    let start = Instant::now();
    let warmup_ns = p.warmup.as_nanos() as u64;
    let end_ns = warmup_ns + p.duration.as_nanos() as u64;
    let mut rng = Rng::new(p.seed ^ 0x5EED);
    let mean_gap_ns = 1e9 / p.rps;
    let (mut at_ns, mut id, mut sent, mut late) = (0f64, 0u16, 0u64, 0u64);
    let mut msg = Vec::with_capacity(4096);
    while (at_ns as u64) < end_ns {
        let due = at_ns as u64;
        let mut now = start.elapsed().as_nanos() as u64;
        while now < due {
            for s in &sockets {
                tally.drain(s, &mut buf, start);
            }
            now = start.elapsed().as_nanos() as u64;
        }
        let measured = due >= warmup_ns;
        if measured {
            sent += 1;
            late += (now - due > LATE_NS) as u64;
        }
        let (class, payload) = draw(&mut rng, p);
        tally.slots[id as usize] = Slot { sent_ns: if measured { now + 1 } else { u64::MAX }, class, datagrams: 0 };
        msg.clear();
        msg.extend_from_slice(&crate::udp::header(id, 0, 1));
        msg.extend_from_slice(payload.as_bytes());
        let _ = sockets[id as usize % sockets.len()].send(&msg);
        id = id.wrapping_add(1);
        at_ns += -mean_gap_ns * (1.0 - rng.next_f64()).ln();
    }
    let drain_until = start.elapsed() + Duration::from_millis(100);
    while start.elapsed() < drain_until {
        for s in &sockets {
            tally.drain(s, &mut buf, start);
        }
    }
    Ok(result(p, sent, late, tally.misses, &tally.hist))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_twenty_bytes_and_frames_carry_the_id() {
        assert_eq!(key(0).len(), 20);
        assert_eq!(key(999_999).len(), 20);
        let f = frame(0x1234, b"get x\r\n");
        assert_eq!(&f[..8], &[0x12, 0x34, 0, 0, 0, 1, 0, 0]);
        assert_eq!(&f[8..], b"get x\r\n");
    }

    #[test]
    fn tcp_replies_end_where_memcached_ends_them() {
        assert_eq!(reply_len(b"END\r\nEND\r\n"), Some((5, true)));
        assert_eq!(reply_len(b"STORED\r\n"), Some((8, false)));
        let two = b"VALUE a 0 2\r\nxy\r\nVALUE b 0 3\r\nEND\r\nEND\r\n";
        assert_eq!(reply_len(two), Some((two.len(), false)), "a value that reads END is data");
        assert_eq!(reply_len(&two[..20]), None);
        assert_eq!(reply_len(b"VALUE a 0 2\r\nxy"), None);
    }

    #[test]
    fn workloads_are_named() {
        for w in [Workload::Usr, Workload::UsrLong] {
            assert_eq!(Workload::named(w.name()), Some(w));
        }
        assert_eq!(Workload::named("etc"), None);
    }
}
