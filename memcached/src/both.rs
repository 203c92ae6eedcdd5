//! TCP and UDP from one server, as memcached serves `-p` and `-U` together: one runtime, one
//! store, one transport that polls both and sends each reply back the way its request came.
//!
//! The way back is carried in the request's `client_ts`, which the runtime copies into the
//! reply untouched and which neither memcached transport uses (memcached's protocols carry no
//! client timestamp): 0 for TCP, 1 for UDP. Both origins already use all 64 of their bits.

use crate::udp::MemcachedUdp;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use synergy::request::{Reply, Request};
use synergy::transport::Transport;
use synergy_net::stream::tcp::TcpTransport;

const TCP: u64 = 0;
const UDP: u64 = 1;

/// The two transports as one (see the module docs).
pub struct TcpAndUdp {
    /// The TCP side.
    pub tcp: Arc<TcpTransport>,
    /// The UDP side.
    pub udp: Arc<MemcachedUdp>,
    /// Per worker: which transport its next poll asks first, alternating, so that a flood on one
    /// cannot starve the other.
    udp_first: Box<[AtomicBool]>,
}

impl TcpAndUdp {
    /// Both, for `workers` workers.
    pub fn new(tcp: Arc<TcpTransport>, udp: Arc<MemcachedUdp>, workers: usize) -> TcpAndUdp {
        TcpAndUdp { tcp, udp, udp_first: (0..workers).map(|_| AtomicBool::new(false)).collect() }
    }

    fn poll_one(&self, which: u64, worker: usize, out: &mut Vec<Request>, max: usize) {
        let from = out.len();
        if which == UDP {
            self.udp.poll(worker, out, max);
        } else {
            self.tcp.poll(worker, out, max);
        }
        for r in &mut out[from..] {
            r.client_ts = which;
        }
    }
}

impl Transport for TcpAndUdp {
    fn poll(&self, worker: usize, out: &mut Vec<Request>, max: usize) {
        let udp_first = self.udp_first[worker].fetch_xor(true, Ordering::Relaxed);
        let (first, second) = if udp_first { (UDP, TCP) } else { (TCP, UDP) };
        let before = out.len();
        self.poll_one(first, worker, out, max);
        let got = out.len() - before;
        if got < max {
            self.poll_one(second, worker, out, max - got);
        }
    }

    fn backlog(&self, worker: usize) -> usize {
        self.tcp.backlog(worker) + self.udp.backlog(worker)
    }

    fn reply(&self, worker: usize, reply: Reply) {
        if reply.client_ts == UDP {
            self.udp.reply(worker, reply)
        } else {
            self.tcp.reply(worker, reply)
        }
    }

    fn reports_backlog(&self) -> bool {
        self.tcp.reports_backlog() && self.udp.reports_backlog()
    }

    /// Both transports' descriptors, or none if either has none (then the timer core polls).
    fn arrival_fds(&self) -> Vec<std::os::fd::RawFd> {
        let (t, u) = (self.tcp.arrival_fds(), self.udp.arrival_fds());
        if t.is_empty() || u.is_empty() {
            return Vec::new();
        }
        t.into_iter().chain(u).collect()
    }

    fn long_request(&self, worker: usize, running: bool) {
        self.tcp.long_request(worker, running);
        self.udp.long_request(worker, running);
    }

    fn finished(&self) -> bool {
        self.tcp.finished() && self.udp.finished()
    }
}
