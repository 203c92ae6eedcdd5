//! memcached over UDP: every datagram carries an 8-byte frame header (request id, sequence
//! number, datagram count, reserved; big-endian) before the text protocol. A request must fit in
//! one datagram (memcached drops multi-datagram requests, and so does this transport, counting
//! them); a reply is cut into datagrams of at most `MAX_PAYLOAD` bytes after the header, each with
//! the request's id, its sequence number and the count.
//!
//! One non-blocking socket per worker in an `SO_REUSEPORT` group, as the project's own UDP
//! transport does; a reply leaves from the socket of the worker that sends it.

use crate::text::{self, Framed};
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use synergy::request::{Reply, Request};
use synergy::transport::Transport;
use synergy_net::udp::{
    addr_of, bind_udp, datagram_pending, local_addr, origin_of, recv_from, send_parts, with_receive_buffer,
};

/// The frame header's size.
pub const HEADER: usize = 8;
/// Reply bytes per datagram after the header (memcached: 1,400).
pub const MAX_PAYLOAD: usize = 1_400;

/// A snapshot of the transport's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpCounts {
    /// Datagrams taken as requests.
    pub received: u64,
    /// Shorter than a header, or a request spread over several datagrams: dropped.
    pub dropped: u64,
    /// Replies sent.
    pub replies: u64,
    /// Datagrams those replies took.
    pub datagrams_sent: u64,
    /// Datagrams the kernel refused.
    pub send_errors: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    dropped: AtomicU64,
    replies: AtomicU64,
    datagrams_sent: AtomicU64,
    send_errors: AtomicU64,
}

/// memcached's UDP transport: one socket per worker (`SO_REUSEPORT`), frames in, replies cut
/// into numbered datagrams out.
pub struct MemcachedUdp {
    sockets: Box<[OwnedFd]>,
    local: SocketAddrV4,
    max_value: usize,
    counters: Counters,
    closed: AtomicBool,
}

/// The frame header of datagram `seq` of `count` for request `id` (big-endian; reserved 0).
pub fn header(id: u16, seq: u16, count: u16) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[0..2].copy_from_slice(&id.to_be_bytes());
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..6].copy_from_slice(&count.to_be_bytes());
    h
}

/// The origin of request `id` from `from`: the address in the upper 48 bits, the id below.
fn origin(from: SocketAddrV4, id: u16) -> u64 {
    (origin_of(from) << 16) | u64::from(id)
}

impl MemcachedUdp {
    /// Binds `workers` sockets to `addr` (port 0: the kernel picks one).
    pub fn bind(addr: SocketAddrV4, workers: usize, max_value: usize) -> io::Result<MemcachedUdp> {
        if workers == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "at least one worker"));
        }
        if addr.port() != 0 {
            // A plain bind first: SO_REUSEPORT alone would join another server's group.
            drop(bind_udp(addr, false)?);
        }
        let first = bind_udp(addr, true)?;
        let local = local_addr(&first)?;
        let mut sockets = vec![first];
        for _ in 1..workers {
            sockets.push(bind_udp(local, true)?);
        }
        Ok(MemcachedUdp {
            sockets: sockets.into_boxed_slice(),
            local,
            max_value,
            counters: Counters::default(),
            closed: AtomicBool::new(false),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// Stops receiving (requests already taken are still answered).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// The counters now.
    pub fn counts(&self) -> UdpCounts {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        UdpCounts {
            received: l(&c.received),
            dropped: l(&c.dropped),
            replies: l(&c.replies),
            datagrams_sent: l(&c.datagrams_sent),
            send_errors: l(&c.send_errors),
        }
    }

    /// Sends `payload` to `to` as request `id`'s reply, cut into frames.
    fn send_reply(&self, worker: usize, to: SocketAddrV4, id: u16, payload: &[u8]) {
        if payload.is_empty() {
            // `noreply`: nothing goes back.
            self.counters.replies.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let count = payload.len().div_ceil(MAX_PAYLOAD).max(1);
        if count > usize::from(u16::MAX) {
            self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        for seq in 0..count {
            let part = &payload[(seq * MAX_PAYLOAD).min(payload.len())..((seq + 1) * MAX_PAYLOAD).min(payload.len())];
            let header = header(id, seq as u16, count as u16);
            if send_parts(&self.sockets[worker], &header, part, to) {
                self.counters.datagrams_sent.fetch_add(1, Ordering::Relaxed);
            } else {
                self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.counters.replies.fetch_add(1, Ordering::Relaxed);
    }
}

impl Transport for MemcachedUdp {
    fn poll(&self, worker: usize, out: &mut Vec<Request>, max: usize) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        with_receive_buffer(|buf| self.poll_into(worker, out, max, buf));
    }

    fn backlog(&self, worker: usize) -> usize {
        usize::from(datagram_pending(&self.sockets[worker]))
    }

    fn reply(&self, worker: usize, reply: Reply) {
        let id = (reply.origin & 0xffff) as u16;
        self.send_reply(worker, addr_of(reply.origin >> 16), id, &reply.body);
    }

    fn arrival_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.sockets.iter().map(|s| s.as_raw_fd()).collect()
    }

    fn finished(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl MemcachedUdp {
    fn poll_into(&self, worker: usize, out: &mut Vec<Request>, max: usize, buf: &mut [u8]) {
        let mut taken = 0;
        while taken < max {
            let Some((n, from)) = recv_from(&self.sockets[worker], buf) else { break };
            self.counters.received.fetch_add(1, Ordering::Relaxed);
            let d = &buf[..n.min(buf.len())];
            // One datagram per request: a count other than 1 (or no header) is dropped.
            if d.len() < HEADER || d[4..6] != [0, 1] {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let id = u16::from_be_bytes([d[0], d[1]]);
            let msg = &d[HEADER..];
            match text::frame(msg, self.max_value) {
                Framed::Message { kind, len } => {
                    let body = if kind == text::kind::TOO_LARGE {
                        &msg[..msg.iter().position(|&b| b == b'\n').map_or(len, |i| i + 1)]
                    } else {
                        &msg[..len]
                    };
                    let mut req = Request { kind, body: synergy::Body::from_slice(body), ..Request::default() };
                    req.arrival_ns = synergy::clock::now_ns();
                    req.origin = origin(from, id);
                    out.push(req);
                    taken += 1;
                }
                Framed::Answer { reply, .. } | Framed::Fatal { reply } => self.send_reply(worker, from, id, reply),
                // Half a message, or `quit`: nothing to answer over UDP.
                Framed::Incomplete | Framed::Quit { .. } => {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
