//! An open-loop load generator that speaks memcached's text protocol over UDP (issue 42's side by
//! side): Poisson arrivals on a fixed schedule, each request sent at its time whatever the replies
//! do (memcaslap is closed loop: it waits for each reply, so its latencies hide queueing).
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
//! Workloads ([`Workload`]): **USR-like** (the Facebook USR pool as Shenango, Caladan,
//! Breakwater and Skyloft use it: 20-byte keys, 2-byte values, 0.2% SETs, the rest single-key
//! GETs over a uniformly chosen key), and **USR plus long requests**, ours: the same, with 1% of
//! requests a multi-get of 100-200 keys (a reply of several datagrams, and work on the server
//! 100-200 times a GET's). None of those systems mixes long requests into memcached (they use
//! RocksDB's SCAN for that); the mix is what synergy's preemption is for.

use hdrhistogram::Histogram;
use std::io;
use std::net::{SocketAddrV4, UdpSocket};
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
    pub fn named(name: &str) -> Option<Workload> {
        match name {
            "usr" => Some(Workload::Usr),
            "usr-long" => Some(Workload::UsrLong),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Workload::Usr => "usr",
            Workload::UsrLong => "usr-long",
        }
    }
}

/// Request classes, as reported.
pub const GET: usize = 0;
pub const SET: usize = 1;
pub const MULTI_GET: usize = 2;
const CLASSES: [&str; 3] = ["get", "set", "multiget"];

#[derive(Debug, Clone)]
pub struct LoadParams {
    pub target: SocketAddrV4,
    pub workload: Workload,
    /// Offered load, requests per second.
    pub rps: f64,
    pub duration: Duration,
    /// Requests sent before this are not measured.
    pub warmup: Duration,
    /// Keys in the key space (each stored once before the run by `populate`).
    pub keys: u64,
    /// Client sockets (the server sees one flow per socket).
    pub sockets: usize,
    pub seed: u64,
}

/// Latency of one class (ns).
#[derive(Debug, Clone, Default)]
pub struct ClassResult {
    pub name: &'static str,
    pub completed: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
}

#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    pub offered_rps: f64,
    /// Measured requests sent, and those answered in full.
    pub sent: u64,
    pub completed: u64,
    /// Measured completions per second of the measured window.
    pub achieved_rps: f64,
    pub late: u64,
    pub late_fraction: f64,
    /// At most `MAX_LATE_FRACTION` of the sends were late.
    pub valid: bool,
    /// GET replies that said END without a value (a key the server evicted or never had).
    pub get_misses: u64,
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
pub fn populate(target: SocketAddrV4, keys: u64) -> io::Result<()> {
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
        Tally {
            slots: vec![Slot::default(); 65_536],
            hist: (0..3).map(|_| Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap()).collect(),
            misses: 0,
        }
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

/// Runs one point on the calling thread alone (sends at their times, reads replies in between),
/// then drains replies for 100 ms.
pub fn run(p: &LoadParams) -> io::Result<LoadResult> {
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
        let r = rng.next_f64();
        let (class, payload) = if p.workload == Workload::UsrLong && r < 0.01 {
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
        };
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
    let completed: u64 = tally.hist.iter().map(|h| h.len()).sum();
    let late_fraction = if sent == 0 { 0.0 } else { late as f64 / sent as f64 };
    Ok(LoadResult {
        offered_rps: p.rps,
        sent,
        completed,
        achieved_rps: completed as f64 / p.duration.as_secs_f64(),
        late,
        late_fraction,
        valid: late_fraction <= MAX_LATE_FRACTION,
        get_misses: tally.misses,
        classes: tally
            .hist
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
    })
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
    fn workloads_are_named() {
        for w in [Workload::Usr, Workload::UsrLong] {
            assert_eq!(Workload::named(w.name()), Some(w));
        }
        assert_eq!(Workload::named("etc"), None);
    }
}
