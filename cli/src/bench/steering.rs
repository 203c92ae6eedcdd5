//! `synergy bench steering`: what a steering program costs per datagram (issue 19). A group of
//! kernel UDP sockets, as the UDP transport binds them, receives batches of requests from one
//! client socket over loopback; each batch is sent, then drained from every socket. Time per
//! datagram covers the send, the kernel's receive path (where the reuseport program runs) and
//! the receive; `hash` (no program) is the baseline; `random` and `sita` are classic BPF,
//! `scan-avoid` and `tokens` eBPF (root only). Policies alternate round by round and the
//! median is reported, with its ratio to hash's median of the same run.

use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;
use synergy::request::Request;
use synergy_eval::plot::{bar_chart, BarGroup};
use synergy_net::protocol::encode_request;
use synergy_net::steering::Steering;
use synergy_net::udp::{bind_udp, recv_from, send_to, UdpTransport};

/// Datagrams in flight per batch: far below a socket's default receive buffer (about 200 KiB
/// holds some 600 of these), so nothing is dropped.
const BATCH: usize = 128;

#[derive(Debug, Clone, Serialize)]
pub struct SteeringPoint {
    pub steering: &'static str,
    /// Median over rounds of ns per datagram (send + kernel + receive).
    pub ns_per_datagram: f64,
    /// `ns_per_datagram` over hash's.
    pub vs_hash: f64,
    /// Datagrams each socket received over all rounds (how the policy spread them).
    pub per_socket: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SteeringBench {
    pub cpu_model: String,
    pub sockets: usize,
    pub datagrams_per_round: usize,
    pub rounds: usize,
    pub points: Vec<SteeringPoint>,
}

/// One round: `n` datagrams (kinds alternating 0 and 1) through `t`; ns per datagram, and the
/// per-socket counts added to `per_socket`.
fn round(t: &UdpTransport, client: &std::os::fd::OwnedFd, n: usize, per_socket: &mut [u64]) -> Result<f64, String> {
    let sockets = t.sockets();
    let mut buf = [0u8; 2048];
    let datagrams: Vec<Vec<u8>> = (0..BATCH)
        .map(|i| encode_request(&Request { id: i as u64, kind: (i % 2) as u32, ..Request::default() }))
        .collect();
    let t0 = Instant::now();
    let mut done = 0;
    while done < n {
        let batch = BATCH.min(n - done);
        for d in &datagrams[..batch] {
            if !send_to(client, d, t.local_addr()) {
                return Err(format!("send failed: {}", std::io::Error::last_os_error()));
            }
        }
        let mut got = 0;
        let spin = Instant::now();
        while got < batch {
            for (i, fd) in sockets.iter().enumerate() {
                while recv_from(fd, &mut buf).is_some() {
                    per_socket[i] += 1;
                    got += 1;
                }
            }
            if spin.elapsed().as_secs() > 5 {
                return Err(format!("{got} of {batch} datagrams arrived within 5 s"));
            }
        }
        done += batch;
    }
    Ok(t0.elapsed().as_nanos() as f64 / n as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(sockets: usize, datagrams: usize, rounds: usize) -> Result<SteeringBench, String> {
    // The eBPF ones need root. `tokens` at a rate no loopback sender reaches: every datagram
    // takes the bucket's full path (lookup, clock, compare-and-exchange) and passes.
    let policies = [
        Steering::Hash,
        Steering::Random,
        Steering::Sita { long_kinds: vec![1] },
        Steering::ScanAvoid { long_kinds: vec![1] },
        Steering::TenantTokens { rate_per_s: 1_000_000_000, burst: 1 << 20 },
    ];
    let any = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    let mut groups = Vec::new();
    for p in &policies {
        let t = UdpTransport::bind_steered(any, sockets, p).map_err(|e| format!("{}: {e}", p.name()))?;
        let client = bind_udp(any, false).map_err(|e| e.to_string())?;
        groups.push((t, client));
    }
    let mut samples = vec![Vec::new(); policies.len()];
    let mut per_socket = vec![vec![0u64; sockets]; policies.len()];
    for (t, client) in &groups {
        // Warm-up, not recorded.
        round(t, client, datagrams / 4 + 1, &mut vec![0; sockets])?;
    }
    let mut progress = synergy_eval::progress::task("synergy bench steering", (rounds) as u64, "rounds");
    for _ in 0..rounds {
        for (i, (t, client)) in groups.iter().enumerate() {
            samples[i].push(round(t, client, datagrams, &mut per_socket[i])?);
        }
        progress.inc();
    }
    let medians: Vec<f64> = samples.into_iter().map(median).collect();
    let points = policies
        .iter()
        .zip(&medians)
        .zip(per_socket)
        .map(|((p, &m), per_socket)| SteeringPoint {
            steering: p.name(),
            ns_per_datagram: m,
            vs_hash: m / medians[0],
            per_socket,
        })
        .collect();
    Ok(SteeringBench { cpu_model: synergy::cpu::model_name(), sockets, datagrams_per_round: datagrams, rounds, points })
}

pub fn csv(b: &SteeringBench) -> String {
    let mut table = synergy_eval::csv::CsvTable::new(&["steering", "ns_per_datagram", "vs_hash", "per_socket"]);
    for p in &b.points {
        let counts: Vec<String> = p.per_socket.iter().map(u64::to_string).collect();
        table.row([
            p.steering.to_string(),
            format!("{:.1}", p.ns_per_datagram),
            format!("{:.3}", p.vs_hash),
            counts.join(";"),
        ]);
    }
    table.finish()
}

pub fn svg(b: &SteeringBench) -> String {
    let groups: Vec<BarGroup> = b
        .points
        .iter()
        .map(|p| BarGroup { label: p.steering.to_string(), bars: vec![("ns per datagram".into(), p.ns_per_datagram)] })
        .collect();
    bar_chart(
        &format!(
            "Ingress steering over {} sockets, loopback, median of {} rounds ({})",
            b.sockets, b.rounds, b.cpu_model
        ),
        "ns per datagram (send + kernel + receive)",
        &groups,
        false,
    )
}
