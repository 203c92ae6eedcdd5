//! Kernel UDP transport, the embedded default that works anywhere: one socket per worker, all
//! bound to the same address with SO_REUSEPORT, so the kernel spreads client flows (by 4-tuple
//! hash, like RSS) over the workers' sockets — each worker's RX/TX queue pair. Non-blocking: a
//! worker polls its own socket; replies go out of the same socket to the request's origin.
//! Datagrams that are not well-formed requests are counted; those that start like a request (so
//! their id is known) are answered with `status::MALFORMED`, the rest dropped.

use crate::protocol::{decode_request, encode_reply_header, salvage_request_id, WireError};
use crate::steering::Steering;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use synergy::clock;
use synergy::request::{status, Reply, Request};
use synergy::transport::Transport;

/// Counters of one worker's socket.
#[derive(Default)]
pub struct UdpCounters {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Datagrams that were not well-formed requests.
    pub malformed: AtomicU64,
    /// Replies sent.
    pub replies: AtomicU64,
    /// Replies the kernel refused.
    pub reply_errors: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
/// One worker socket's counters at one moment.
pub struct UdpSnapshot {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams that were not well-formed requests.
    pub malformed: u64,
    /// Replies sent.
    pub replies: u64,
    /// Replies the kernel refused.
    pub reply_errors: u64,
    /// Datagrams the kernel dropped because the socket's receive buffer was full (overload).
    pub kernel_drops: u64,
}

/// Datagrams the kernel dropped on `fd` (SO_MEMINFO's SK_MEMINFO_DROPS).
pub fn kernel_drops(fd: &OwnedFd) -> u64 {
    const SO_MEMINFO: libc::c_int = 55;
    const SK_MEMINFO_DROPS: usize = 8;
    let mut info = [0u32; 16];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: getsockopt into a buffer of the size passed.
    let r = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, SO_MEMINFO, info.as_mut_ptr() as *mut _, &mut len)
    };
    if r != 0 || (len as usize) <= SK_MEMINFO_DROPS * 4 {
        return 0;
    }
    u64::from(info[SK_MEMINFO_DROPS])
}

/// Kernel UDP: one SO_REUSEPORT socket per worker (the kernel or an eBPF program spreads datagrams over them), replies sent from the worker's own socket.
pub struct UdpTransport {
    sockets: Box<[OwnedFd]>,
    counters: Box<[UdpCounters]>,
    local: SocketAddrV4,
    closed: AtomicBool,
    /// The eBPF steering program's shared state, for the policies that have one.
    steering: Option<crate::steering::ebpf::Attached>,
    /// The longest request body accepted; longer ones are answered `status::TOO_LARGE`.
    max_body: usize,
}

/// The largest datagram kernel UDP delivers over IPv4 (65,535 less the IP and UDP headers).
const MAX_DATAGRAM: usize = 65_507;

thread_local! {
    static RECEIVE_BUFFER: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0u8; MAX_DATAGRAM + 1].into_boxed_slice());
}

/// Runs `f` on this OS thread's receive buffer, larger than any datagram: where a transport's
/// poll receives, so that it allocates nothing and keeps 64 KiB off the green stack it may run
/// on. Polls run in the scheduler, never inside a handler, so no preemption reenters it; a
/// nested call (a poll inside `f`) panics.
pub fn with_receive_buffer<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    RECEIVE_BUFFER.with_borrow_mut(|buf| f(buf))
}

/// The origin of a request from `addr` (IPv4 address and port packed into a u64).
pub fn origin_of(addr: SocketAddrV4) -> u64 {
    (u64::from(u32::from(*addr.ip())) << 16) | u64::from(addr.port())
}

/// The address a request came from (`origin_of` reversed).
pub fn addr_of(origin: u64) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from((origin >> 16) as u32), origin as u16)
}

/// A non-blocking UDP socket bound to `addr`, with SO_REUSEPORT if `reuse_port`.
pub fn bind_udp(addr: SocketAddrV4, reuse_port: bool) -> io::Result<OwnedFd> {
    use nix::sys::socket::{bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
    fn with(what: String) -> impl Fn(nix::Error) -> io::Error {
        move |e| io::Error::new(io::Error::from(e).kind(), format!("{what}: {e}"))
    }
    let fd = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)
        .map_err(with("socket".into()))?;
    if reuse_port {
        setsockopt(&fd, sockopt::ReusePort, &true).map_err(with("setsockopt(SO_REUSEPORT)".into()))?;
    }
    // Larger buffers absorb bursts; the kernel caps them at rmem_max/wmem_max (not an error).
    let _ = setsockopt(&fd, sockopt::RcvBuf, &(4 << 20));
    let _ = setsockopt(&fd, sockopt::SndBuf, &(4 << 20));
    bind(fd.as_raw_fd(), &SockaddrIn::from(addr)).map_err(with(format!("bind {addr}")))?;
    Ok(fd)
}

/// Whether a datagram waits in `fd`'s receive buffer.
pub fn datagram_pending(fd: &OwnedFd) -> bool {
    let mut pending: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int (for UDP: the size of the next datagram, 0 if none).
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut pending) };
    pending > 0
}

/// The address `fd` is bound to.
pub fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddrV4> {
    let sa: nix::sys::socket::SockaddrIn = nix::sys::socket::getsockname(fd.as_raw_fd()).map_err(io::Error::from)?;
    Ok(SocketAddrV4::new(sa.ip(), sa.port()))
}

/// Receives one datagram into `buf` without blocking: its length and sender, or None.
pub fn recv_from(fd: &OwnedFd, buf: &mut [u8]) -> Option<(usize, SocketAddrV4)> {
    // SAFETY: recvfrom into `buf` (its length passed) and a sockaddr_in of the size passed.
    unsafe {
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let n = libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut _,
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            &mut sa as *mut _ as *mut libc::sockaddr,
            &mut len,
        );
        if n < 0 {
            return None;
        }
        let from = SocketAddrV4::new(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)), u16::from_be(sa.sin_port));
        Some((n as usize, from))
    }
}

/// Receives one datagram into `buf` without blocking, with the kernel's receive timestamp
/// (SO_TIMESTAMPNS, CLOCK_REALTIME ns) if the socket has them on: (length, sender, timestamp).
pub fn recv_stamped(fd: &OwnedFd, buf: &mut [u8]) -> Option<(usize, SocketAddrV4, Option<u64>)> {
    // Room for one SCM_TIMESTAMPNS control message (a timespec), 8-byte aligned.
    let mut control = [0u64; 8];
    // SAFETY: recvmsg into `buf` (its length passed), a sockaddr_in and `control` (their sizes
    // passed); the control messages are walked with the kernel's CMSG macros within `control`.
    unsafe {
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut _, iov_len: buf.len() };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut sa as *mut _ as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&control);
        let n = libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT | libc::MSG_TRUNC);
        if n < 0 {
            return None;
        }
        let mut stamp = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        let from = SocketAddrV4::new(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)), u16::from_be(sa.sin_port));
        Some((n as usize, from, stamp))
    }
}

/// CLOCK_REALTIME in ns (the clock of the kernel's receive timestamps).
fn realtime_ns() -> u64 {
    clock::read_ns(libc::CLOCK_REALTIME)
}

/// Converts the kernel's receive timestamps (CLOCK_REALTIME) to the runtime clock, from one
/// reading of both clocks.
#[derive(Debug, Clone, Copy)]
struct StampClock {
    now: u64,
    real_now: u64,
}

impl StampClock {
    /// A thread preempted between the two clocks' reads would pair the realtime reading with an
    /// earlier runtime one and convert every stamp of the poll too early by the preemption (a
    /// scheduler tick: ms). So the realtime read is bracketed by two runtime reads, and a wide
    /// bracket is read again (up to `TRIES` times, the tightest kept); the runtime reading is
    /// the bracket's middle.
    fn read() -> StampClock {
        const TRIES: usize = 4;
        /// A bracket this tight is taken at once (a vDSO clock read costs tens of ns).
        const TIGHT_NS: u64 = 2_000;
        let mut best: Option<(u64, StampClock)> = None;
        for _ in 0..TRIES {
            let before = clock::now_ns();
            let real_now = realtime_ns();
            let after = clock::now_ns();
            let gap = after.saturating_sub(before);
            if best.is_none_or(|(g, _)| gap < g) {
                best = Some((gap, StampClock { now: before + gap / 2, real_now }));
            }
            if gap <= TIGHT_NS {
                break;
            }
        }
        best.expect("at least one try").1
    }

    /// The runtime-clock time of realtime `t`; a time after the reading counts as the reading.
    fn to_runtime(self, t: u64) -> u64 {
        self.now.saturating_sub(self.real_now.saturating_sub(t))
    }
}

/// Sends `head` then `tail` as one datagram to `to` without blocking (no copy into one buffer);
/// false if the kernel refused (buffer full, no route, too large).
pub fn send_parts(fd: &OwnedFd, head: &[u8], tail: &[u8], to: SocketAddrV4) -> bool {
    use nix::sys::socket::{sendmsg, MsgFlags, SockaddrIn};
    let iov = [io::IoSlice::new(head), io::IoSlice::new(tail)];
    let parts = if tail.is_empty() { &iov[..1] } else { &iov[..] };
    sendmsg(fd.as_raw_fd(), parts, &[], MsgFlags::MSG_DONTWAIT, Some(&SockaddrIn::from(to)))
        == Ok(head.len() + tail.len())
}

/// Sends `data` to `to` without blocking; false if the kernel refused (buffer full, no route).
pub fn send_to(fd: &OwnedFd, data: &[u8], to: SocketAddrV4) -> bool {
    use nix::sys::socket::{sendto, MsgFlags, SockaddrIn};
    sendto(fd.as_raw_fd(), data, &SockaddrIn::from(to), MsgFlags::MSG_DONTWAIT) == Ok(data.len())
}

impl UdpTransport {
    /// Binds `workers` sockets to `addr` (port 0: the kernel picks one port for all of them),
    /// spread by the kernel's 4-tuple hash.
    pub fn bind(addr: SocketAddrV4, workers: usize) -> io::Result<UdpTransport> {
        UdpTransport::bind_steered(addr, workers, &Steering::Hash)
    }

    /// Binds as `bind` does, with datagrams spread over the workers by `steering`.
    pub fn bind_steered(addr: SocketAddrV4, workers: usize, steering: &Steering) -> io::Result<UdpTransport> {
        if workers == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the UDP transport needs at least one worker"));
        }
        if addr.port() != 0 {
            // A socket that sets SO_REUSEPORT joins any group already bound to the address by
            // the same user: a second server on a port in use would silently take part of the
            // first one's traffic. A plain bind fails on such a port instead.
            bind_udp(addr, false).map_err(|e| {
                if e.kind() == io::ErrorKind::AddrInUse {
                    io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("UDP {addr} is already in use (another server on this port?): {e}"),
                    )
                } else {
                    e
                }
            })?;
        }
        let first = bind_udp(addr, true)?;
        let local = local_addr(&first)?;
        let mut sockets = vec![first];
        for _ in 1..workers {
            sockets.push(bind_udp(local, true)?);
        }
        // After every socket joined: the program returns indices into the whole group.
        let steering = steering.attach(&sockets)?;
        // Kernel receive timestamps: a request's arrival is when the kernel received it, so the
        // time it waited in the socket buffer counts as queueing delay (overload control's D_m,
        // the reply's server time).
        for fd in &sockets {
            nix::sys::socket::setsockopt(fd, nix::sys::socket::sockopt::ReceiveTimestampns, &true)
                .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("setsockopt(SO_TIMESTAMPNS): {e}")))?;
        }
        Ok(UdpTransport {
            sockets: sockets.into_boxed_slice(),
            counters: (0..workers).map(|_| UdpCounters::default()).collect(),
            local,
            closed: AtomicBool::new(false),
            steering,
            max_body: crate::protocol::UDP_MAX_REQUEST_BODY,
        })
    }

    /// Accept request bodies of at most `max_body` bytes (default and most: what one datagram
    /// carries, `protocol::UDP_MAX_REQUEST_BODY`, 65,379 bytes); a longer one is answered
    /// `status::TOO_LARGE` without being copied.
    pub fn with_max_body(mut self, max_body: usize) -> UdpTransport {
        self.max_body = max_body.min(crate::protocol::UDP_MAX_REQUEST_BODY);
        self
    }

    /// One poll's receiving, into `buf` (a buffer larger than any datagram, so an oversized one
    /// is seen whole by its length and refused by the decoder, never cut).
    fn poll_into(&self, worker: usize, out: &mut Vec<Request>, max: usize, buf: &mut [u8]) {
        let c = &self.counters[worker];
        let mut taken = 0;
        // One reading of both clocks per poll converts the kernel's timestamps.
        let stamps = StampClock::read();
        while taken < max {
            let Some((n, from, stamp)) = recv_stamped(&self.sockets[worker], buf) else { break };
            c.received.fetch_add(1, Ordering::Relaxed);
            match decode_request(&buf[..n.min(buf.len())], self.max_body) {
                Ok(mut req) => {
                    // A datagram received after `real_now` (during this poll) counts as now.
                    req.arrival_ns = match stamp {
                        Some(t) => stamps.to_runtime(t),
                        None => clock::now_ns(),
                    };
                    req.origin = origin_of(from);
                    out.push(req);
                    taken += 1;
                }
                Err(e) => {
                    c.malformed.fetch_add(1, Ordering::Relaxed);
                    // Answer what can be answered, so a client with a bug learns it at once.
                    if let Some((id, kind)) = salvage_request_id(&buf[..n.min(buf.len())]) {
                        let status = match e {
                            WireError::BodyTooLarge { .. } => status::TOO_LARGE,
                            _ => status::MALFORMED,
                        };
                        let reply = Reply { id, kind, status, origin: origin_of(from), ..Reply::default() };
                        self.reply(worker, reply);
                    }
                }
            }
        }
    }

    /// The longest request body this transport accepts.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// The workers' sockets, worker 0 first (for benchmarks that drive the group directly).
    pub fn sockets(&self) -> &[OwnedFd] {
        &self.sockets
    }

    /// The eBPF steering program's state (`scan-avoid`, `tokens`), if one is attached.
    pub fn steering_state(&self) -> Option<&crate::steering::ebpf::Attached> {
        self.steering.as_ref()
    }

    /// The bound address (with the port the kernel chose).
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// Stop accepting: the runtime drains what it has and `shutdown` returns.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Each worker socket's counters.
    pub fn counters(&self) -> Vec<UdpSnapshot> {
        self.counters
            .iter()
            .zip(self.sockets.iter())
            .map(|(c, fd)| UdpSnapshot {
                kernel_drops: kernel_drops(fd),
                received: c.received.load(Ordering::Relaxed),
                malformed: c.malformed.load(Ordering::Relaxed),
                replies: c.replies.load(Ordering::Relaxed),
                reply_errors: c.reply_errors.load(Ordering::Relaxed),
            })
            .collect()
    }
}

impl Transport for UdpTransport {
    fn poll(&self, worker: usize, out: &mut Vec<Request>, max: usize) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        with_receive_buffer(|buf| self.poll_into(worker, out, max, buf));
    }

    fn backlog(&self, worker: usize) -> usize {
        usize::from(datagram_pending(&self.sockets[worker]))
    }

    fn arrival_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.sockets.iter().map(|s| s.as_raw_fd()).collect()
    }

    fn reply(&self, worker: usize, reply: Reply) {
        let c = &self.counters[worker];
        let header = encode_reply_header(&reply);
        if send_parts(&self.sockets[worker], &header, &reply.body, addr_of(reply.origin)) {
            c.replies.fetch_add(1, Ordering::Relaxed);
        } else {
            c.reply_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn long_request(&self, worker: usize, running: bool) {
        if let Some(s) = &self.steering {
            s.set_busy(worker, running);
        }
    }

    fn finished(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request's arrival is when the kernel received it: time in the socket buffer counts as
    /// queueing delay (overload control's D_m). Stamping at the poll, as before SO_TIMESTAMPNS,
    /// measured ~0 here.
    #[test]
    fn arrival_is_the_kernel_receive_time() {
        clock::init();
        let t = UdpTransport::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), 1).unwrap();
        let client = bind_udp(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), false).unwrap();
        let exchange = |wait: std::time::Duration| {
            let req = Request { id: 5, kind: 0, ..Request::default() };
            assert!(send_to(&client, &crate::protocol::encode_request(&req), t.local_addr()));
            // The waiting to be measured (the datagram is already in the socket buffer).
            std::thread::sleep(wait);
            let mut out = Vec::new();
            let t0 = std::time::Instant::now();
            while out.is_empty() {
                t.poll(0, &mut out, 8);
                assert!(t0.elapsed().as_secs() < 10, "the datagram never arrived");
            }
            clock::now_ns() - out[0].arrival_ns
        };
        // The kernel turns receive timestamps on in a work item after the first socket asks for
        // them (net_enable_timestamp); until then it stamps at recvmsg. So exchanges repeat until
        // one shows the socket-buffer time (issue 38, D1: one warm-up exchange used to stand in
        // for "the work item ran"); stamps taken at recvmsg never do, and fail after 50.
        let mut seen = Vec::new();
        for _ in 0..50 {
            let waited = exchange(std::time::Duration::from_millis(20));
            assert!(waited < 10_000_000_000, "{waited}");
            if waited >= 20_000_000 {
                return;
            }
            seen.push(waited);
        }
        panic!("in 50 exchanges no arrival stamp included the 20 ms in the socket buffer: {seen:?}");
    }

    /// A kernel timestamp converts to no earlier than the runtime clock read just before it was
    /// taken (less a small slack for the clocks' own reading costs), even with the converting
    /// thread preempted between its two clock reads: two spinning threads share the CPUs with it.
    #[test]
    fn a_converted_stamp_is_not_earlier_than_it_was_taken() {
        clock::init();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let worst = std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                });
            }
            let mut worst = 0u64;
            for _ in 0..3_000_000 {
                let before = clock::now_ns();
                let t = realtime_ns();
                let converted = StampClock::read().to_runtime(t);
                worst = worst.max(before.saturating_sub(converted));
            }
            stop.store(true, Ordering::Relaxed);
            worst
        });
        assert!(worst < 20_000, "a stamp converted {worst} ns before it was taken");
    }

    /// Sends `kinds` (one datagram each, all from one client socket: one 4-tuple) to a
    /// transport of `workers` sockets steered by `steering`; returns each worker's received kinds.
    fn steer(steering: &Steering, workers: usize, kinds: &[u32]) -> Vec<Vec<u32>> {
        let t = UdpTransport::bind_steered(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), workers, steering).unwrap();
        let requests: Vec<Request> = kinds.iter().map(|&kind| Request { kind, ..Request::default() }).collect();
        let got = send_and_drain(&t, &requests);
        got.into_iter().map(|g| g.into_iter().map(|r| r.kind).collect()).collect()
    }

    /// Sends `requests` from one client socket to `t`, draining every worker's socket as it goes;
    /// then drains until all of them arrived. Returns each worker's requests.
    fn send_and_drain(t: &UdpTransport, requests: &[Request]) -> Vec<Vec<Request>> {
        let client = bind_udp(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), false).unwrap();
        let workers = t.sockets().len();
        let mut got = vec![Vec::new(); workers];
        let mut out = Vec::new();
        let mut received = 0;
        let mut drain = |got: &mut Vec<Vec<Request>>| {
            for (w, g) in got.iter_mut().enumerate() {
                t.poll(w, &mut out, 64);
                received += out.len();
                g.append(&mut out);
            }
            received
        };
        for (id, req) in requests.iter().enumerate() {
            let req = Request { id: id as u64, ..req.clone() };
            assert!(send_to(&client, &crate::protocol::encode_request(&req), t.local_addr()));
            // Drain as we go, so no socket buffer overflows.
            drain(&mut got);
        }
        let t0 = std::time::Instant::now();
        while drain(&mut got) < requests.len() {
            assert!(t0.elapsed().as_secs() < 10, "{received} of {} datagrams arrived", requests.len());
        }
        assert!(t.counters().iter().all(|c| c.kernel_drops == 0), "a socket buffer overflowed: {:?}", t.counters());
        got
    }

    #[test]
    fn one_flow_lands_on_one_socket_by_hash_and_on_all_when_random() {
        let kinds = vec![0u32; 2000];
        let hashed = steer(&Steering::Hash, 4, &kinds);
        assert_eq!(hashed.iter().filter(|g| !g.is_empty()).count(), 1, "one 4-tuple, one socket");
        let random = steer(&Steering::Random, 4, &kinds);
        // 2,000 uniform picks over 4 sockets: each gets 500 ± ~22 (1 sd); 350 is 6.9 sd away.
        assert!(random.iter().all(|g| g.len() > 350), "{:?}", random.iter().map(Vec::len).collect::<Vec<_>>());
    }

    #[test]
    fn sita_sends_long_kinds_to_worker_0_and_the_rest_elsewhere() {
        let kinds: Vec<u32> = (0..3000).map(|i| [0, 1, 2, 7][i % 4]).collect();
        let got = steer(&Steering::Sita { long_kinds: vec![1, 7] }, 3, &kinds);
        assert!(got[0].iter().all(|&k| k == 1 || k == 7) && got[0].len() == 1500, "{}", got[0].len());
        for g in &got[1..] {
            assert!(g.iter().all(|&k| k == 0 || k == 2), "short kinds only");
            assert!(g.len() > 600, "spread over workers 1 and 2: {}", g.len());
        }
    }

    /// Root only (loading eBPF needs CAP_BPF and CAP_NET_ADMIN): fails, loudly, elsewhere.
    fn bind_ebpf(steering: &Steering, workers: usize) -> UdpTransport {
        UdpTransport::bind_steered(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), workers, steering).unwrap_or_else(|e| {
            panic!("loading the {} eBPF program failed (this test needs root): {e}", steering.name())
        })
    }

    #[test]
    fn scan_avoid_keeps_short_requests_off_busy_workers() {
        let t = bind_ebpf(&Steering::ScanAvoid { long_kinds: vec![9] }, 4);
        let state = t.steering_state().expect("scan-avoid has shared state");
        let shorts: Vec<Request> = (0..2000).map(|_| Request { kind: 0, ..Request::default() }).collect();
        // Nobody busy: random over all four.
        let all = send_and_drain(&t, &shorts);
        assert!(all.iter().all(|g| g.len() > 350), "{:?}", all.iter().map(Vec::len).collect::<Vec<_>>());
        // Workers 0 and 2 run long requests (what the runtime reports through the hook).
        t.long_request(0, true);
        t.long_request(2, true);
        assert_eq!(state.busy(), 0b101);
        let avoided = send_and_drain(&t, &shorts);
        assert!(
            avoided[0].is_empty() && avoided[2].is_empty(),
            "{:?}",
            avoided.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert!(avoided[1].len() > 800 && avoided[3].len() > 800, "spread over the idle ones");
        // Long requests themselves go anywhere.
        let scans: Vec<Request> = (0..2000).map(|_| Request { kind: 9, ..Request::default() }).collect();
        let scan = send_and_drain(&t, &scans);
        assert!(scan.iter().all(|g| g.len() > 350), "{:?}", scan.iter().map(Vec::len).collect::<Vec<_>>());
        // All busy: random again (nothing is refused).
        t.long_request(1, true);
        t.long_request(3, true);
        let busy = send_and_drain(&t, &shorts);
        assert!(busy.iter().all(|g| g.len() > 350), "{:?}", busy.iter().map(Vec::len).collect::<Vec<_>>());
        for w in 0..4 {
            t.long_request(w, false);
        }
        assert_eq!(state.busy(), 0);
        assert_eq!(state.dropped(), 0);
    }

    /// A burst far over the rate from one flow: the kernel passes what policy's GCRA passes
    /// on the same send times (the program runs inside each `sendto` on loopback, so its clock
    /// reads at most a system call later), drops and counts the rest; a second flow has its own
    /// bucket.
    #[test]
    fn tokens_drop_what_the_bucket_refuses_and_nothing_else() {
        const RATE: u32 = 20_000;
        const BURST: u32 = 50;
        const SENT: usize = 20_000;
        let t = bind_ebpf(&Steering::TenantTokens { rate_per_s: RATE, burst: BURST }, 2);
        let client = bind_udp(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), false).unwrap();
        let gcra = synergy::policy::tokens::Gcra::per_second(RATE.into(), BURST.into());
        let (mut tat, mut predicted, mut passed, mut uncertain) = (None, 0usize, 0usize, 0usize);
        let mut out = Vec::new();
        for id in 0..SENT {
            let req = Request { id: id as u64, flow: 1, ..Request::default() };
            let before = monotonic_ns();
            assert!(send_to(&client, &crate::protocol::encode_request(&req), t.local_addr()));
            let after = monotonic_ns();
            // The kernel's clock read lies between the two; where they disagree on the decision
            // (a boundary inside the call, or the sender descheduled), so may kernel and replay.
            let mut at_end = tat;
            let admitted = gcra.admit(&mut tat, before);
            uncertain += usize::from(gcra.admit(&mut at_end, after) != admitted);
            predicted += usize::from(admitted);
            for w in 0..2 {
                t.poll(w, &mut out, 64);
                passed += out.len();
                out.clear();
            }
        }
        let dropped = t.steering_state().unwrap().dropped();
        assert_eq!(passed as u64 + dropped, SENT as u64, "every datagram passed or was counted as dropped");
        // Drops are asserted only where the replay of the send times predicts them: a slow sender
        // (a busy machine) stays within the rate and rightly loses nothing (issue 38, C20).
        if predicted + uncertain + 1 < SENT {
            assert!(dropped > 0, "the replay predicts drops: {passed} passed, {dropped} dropped");
        }
        // Each uncertain datagram can shift the count by one, and the last one in flight by one.
        assert!(
            passed.abs_diff(predicted) <= 1 + uncertain,
            "the kernel passed {passed}, GCRA on the send times {predicted} ({uncertain} uncertain)"
        );
        assert!(t.counters().iter().all(|c| c.kernel_drops == 0), "{:?}", t.counters());
        // Another tenant: its own full bucket, whatever flow 1 did.
        let flow2: Vec<Request> = (0..BURST).map(|_| Request { flow: 2, ..Request::default() }).collect();
        let got2 = send_and_drain(&t, &flow2);
        assert!(got2.iter().flatten().all(|r| r.flow == 2));
        assert_eq!(t.steering_state().unwrap().dropped(), dropped, "flow 2's burst fits its bucket");
    }

    /// bpf_ktime_get_ns's clock.
    fn monotonic_ns() -> u64 {
        clock::read_ns(libc::CLOCK_MONOTONIC)
    }

    #[test]
    fn origin_packs_address_and_port() {
        let a = SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 54321);
        assert_eq!(addr_of(origin_of(a)), a);
    }
}
