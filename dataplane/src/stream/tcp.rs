//! TCP through a [`Codec`]: many connections, partial reads, pipelining, replies in request order
//! per connection, and backpressure per connection.
//!
//! **Who does what.** Each worker has its own epoll set; the listening socket is in every set
//! (`EPOLLEXCLUSIVE`: one worker wakes per connection attempt), and a connection joins the set
//! of the worker that accepted it, which alone reads it (`Transport::poll` runs for one worker
//! at a time). A reply may come from any worker (the request may have been stolen, preempted and
//! resumed elsewhere, or have waited): it locks its connection's output side, which any worker
//! may flush.
//!
//! **Order.** Each request (and each codec `Answer`) takes the connection's next sequence
//! number, carried in the request's `origin` (connection slot, generation, sequence). A finished
//! reply is encoded into its slot of the connection's sequencer; replies leave in sequence order
//! only, so a short request pipelined behind a long one is computed at once but its reply waits
//! its turn.
//!
//! **Backpressure.** A connection stops being read while it has `MAX_IN_FLIGHT` requests
//! unanswered or `MAX_UNSENT` bytes of replies the client has not taken; the other connections
//! are read as before. It is read again when its replies drain (an `EPOLLOUT` event, or a reply).

use super::{Codec, CodecError, Frame};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use synergy::clock;
use synergy::request::{Reply, Request};
use synergy::transport::Transport;

/// Requests one connection may have unanswered before it stops being read.
pub const MAX_IN_FLIGHT: u64 = 1_024;
/// Reply bytes one connection may leave untaken before it stops being read.
pub const MAX_UNSENT: usize = 4 << 20;
/// The default limit of one request's body on a stream (1 MiB, memcached's item size).
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// epoll user data of the listening socket.
const LISTENER: u64 = u64::MAX;

/// Counters of a TCP transport.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    closed: AtomicU64,
    requests: AtomicU64,
    malformed: AtomicU64,
    replies: AtomicU64,
    /// Replies for a connection that had closed (dropped).
    reply_errors: AtomicU64,
    /// Times a connection stopped being read because of its unanswered requests or bytes.
    throttled: AtomicU64,
    /// Failed accepts (out of file descriptors: the connection waits in the listen queue).
    accept_errors: AtomicU64,
}

/// A snapshot of a TCP transport's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TcpSnapshot {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed (by the client, an error, or the server).
    pub closed: u64,
    /// Requests parsed.
    pub requests: u64,
    /// Connections closed for input the codec could not parse.
    pub malformed: u64,
    /// Replies written.
    pub replies: u64,
    /// Replies that could not be written (the connection was gone).
    pub reply_errors: u64,
    /// Times a connection stopped being read because its unsent replies reached the limit (backpressure).
    pub throttled: u64,
    /// Failed accepts (e.g. out of descriptors).
    pub accept_errors: u64,
}

/// A connection's output side: the sequencer and the bytes not yet written.
struct Output {
    /// The sequence number of the next request (assigned when it is parsed).
    next_seq: u64,
    /// The sequence number whose reply goes out next.
    next_out: u64,
    /// Finished replies waiting for an earlier one.
    held: BTreeMap<u64, Vec<u8>>,
    /// Encoded, in order, not yet accepted by the kernel.
    unsent: Vec<u8>,
    /// Close once everything before this sequence number was written (`Frame::Close`, an error).
    close_at: Option<u64>,
    /// The socket is gone (error or closed): replies are dropped.
    dead: bool,
}

impl Output {
    /// Moves the held replies that are next in order to the bytes to write.
    fn release_in_order(&mut self) {
        while let Some(b) = self.held.remove(&self.next_out) {
            self.unsent.extend_from_slice(&b);
            self.next_out += 1;
        }
    }
}

struct Conn {
    stream: TcpStream,
    generation: u32,
    /// Owned by the worker whose epoll set holds the connection.
    worker: usize,
    input: Mutex<Vec<u8>>,
    output: Mutex<Output>,
    /// Not being read (backpressure); set and cleared under `output`.
    throttled: AtomicBool,
}

/// Per worker: its epoll set and requests parsed but not yet taken by a poll.
struct WorkerIo {
    epoll: OwnedFd,
    parsed: Mutex<VecDeque<Request>>,
    /// Connections of this worker that stopped being read (throttled) with input left in the
    /// socket or unparsed: edge-triggered epoll reports no new edge for it, so the worker reads
    /// them again itself once they are no longer throttled.
    stalled: Mutex<Vec<usize>>,
}

/// The TCP transport.
pub struct TcpTransport {
    listener: TcpListener,
    local: SocketAddrV4,
    codec: Arc<dyn Codec>,
    max_body: usize,
    workers: Box<[WorkerIo]>,
    /// Connection slots (index = the slot in an origin); `None` is free.
    conns: RwLock<Vec<Option<Arc<Conn>>>>,
    next_generation: AtomicU64,
    /// When the last accept failure was logged (runtime clock, ns).
    accept_warned_ns: AtomicU64,
    counters: Counters,
    closed: AtomicBool,
}

fn origin(slot: usize, generation: u32, seq: u64) -> u64 {
    ((slot as u64) << 40) | ((u64::from(generation) & 0xff) << 32) | (seq & 0xffff_ffff)
}

fn epoll_add(ep: &OwnedFd, fd: RawFd, data: u64, events: u32) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: valid epoll fd and socket fd; `ev` is read by the kernel only.
    if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl TcpTransport {
    /// Listens on `addr` for `workers` workers, framing with `codec`; request bodies up to
    /// `DEFAULT_MAX_BODY` (see `with_max_body`).
    pub fn bind(addr: SocketAddrV4, workers: usize, codec: Arc<dyn Codec>) -> io::Result<TcpTransport> {
        if workers == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the TCP transport needs at least one worker"));
        }
        let listener = TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("TCP {addr}: {e} (another server on this port?)")))?;
        listener.set_nonblocking(true)?;
        let local = match listener.local_addr()? {
            std::net::SocketAddr::V4(a) => a,
            other => return Err(io::Error::other(format!("bound to {other}, not IPv4"))),
        };
        let mut ios = Vec::new();
        for _ in 0..workers {
            // SAFETY: epoll_create1 returns a new descriptor or -1.
            let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a descriptor the kernel just returned, owned by nobody else.
            let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
            epoll_add(&epoll, listener.as_raw_fd(), LISTENER, (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32)?;
            ios.push(WorkerIo { epoll, parsed: Mutex::new(VecDeque::new()), stalled: Mutex::new(Vec::new()) });
        }
        Ok(TcpTransport {
            listener,
            local,
            codec,
            max_body: DEFAULT_MAX_BODY,
            workers: ios.into_boxed_slice(),
            conns: RwLock::new(Vec::new()),
            next_generation: AtomicU64::new(0),
            accept_warned_ns: AtomicU64::new(0),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
        })
    }

    /// Accept request bodies of at most `max_body` bytes (a longer one is the codec's error).
    pub fn with_max_body(mut self, max_body: usize) -> TcpTransport {
        self.max_body = max_body;
        self
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// Stop accepting and reading: the runtime drains what it has and `shutdown` returns.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Its counters so far.
    pub fn counters(&self) -> TcpSnapshot {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TcpSnapshot {
            accepted: l(&c.accepted),
            closed: l(&c.closed),
            requests: l(&c.requests),
            malformed: l(&c.malformed),
            replies: l(&c.replies),
            reply_errors: l(&c.reply_errors),
            throttled: l(&c.throttled),
            accept_errors: l(&c.accept_errors),
        }
    }

    fn conn(&self, slot: usize) -> Option<Arc<Conn>> {
        self.conns.read().unwrap_or_else(|e| e.into_inner()).get(slot).cloned().flatten()
    }

    fn accept(&self, worker: usize) {
        loop {
            let (stream, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // Out of file descriptors (EMFILE) the connection stays queued and every
                    // poll fails again: say so once a second, not once a poll.
                    let now = synergy::clock::now_ns();
                    let last = self.accept_warned_ns.load(Ordering::Relaxed);
                    if now.saturating_sub(last) >= 1_000_000_000
                        && self
                            .accept_warned_ns
                            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                    {
                        log::warn!("TCP accept: {e} (connections wait in the listen queue)");
                    }
                    self.counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
                continue;
            }
            let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) as u32 & 0xff;
            let conn = Arc::new(Conn {
                stream,
                generation,
                worker,
                input: Mutex::new(Vec::new()),
                output: Mutex::new(Output {
                    next_seq: 0,
                    next_out: 0,
                    held: BTreeMap::new(),
                    unsent: Vec::new(),
                    close_at: None,
                    dead: false,
                }),
                throttled: AtomicBool::new(false),
            });
            let slot = {
                let mut conns = self.conns.write().unwrap_or_else(|e| e.into_inner());
                match conns.iter().position(Option::is_none) {
                    Some(i) => {
                        conns[i] = Some(conn.clone());
                        i
                    }
                    None => {
                        conns.push(Some(conn.clone()));
                        conns.len() - 1
                    }
                }
            };
            let events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
            if let Err(e) = epoll_add(&self.workers[worker].epoll, conn.stream.as_raw_fd(), slot as u64, events) {
                log::warn!("TCP: cannot watch a new connection: {e}");
                self.drop_conn(slot);
                continue;
            }
            self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn stall(&self, conn: &Conn, slot: usize) {
        let mut stalled = self.workers[conn.worker].stalled.lock().unwrap_or_else(|e| e.into_inner());
        if !stalled.contains(&slot) {
            stalled.push(slot);
        }
    }

    fn drop_conn(&self, slot: usize) {
        let mut conns = self.conns.write().unwrap_or_else(|e| e.into_inner());
        if let Some(Some(c)) = conns.get(slot) {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
            conns[slot] = None;
            self.counters.closed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads what `slot`'s connection sent and parses it into `parsed` (unless throttled).
    fn read_conn(&self, slot: usize, parsed: &mut VecDeque<Request>) {
        let Some(conn) = self.conn(slot) else { return };
        if conn.throttled.load(Ordering::Acquire) {
            self.stall(&conn, slot);
            return;
        }
        let mut input = conn.input.lock().unwrap_or_else(|e| e.into_inner());
        let mut eof = false;
        let mut chunk = [0u8; 16 * 1024];
        // Edge-triggered: read until the kernel has nothing more, or the connection is throttled.
        loop {
            match (&conn.stream).read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
            if input.len() > self.max_body + (1 << 16) && self.parse(slot, &conn, &mut input, parsed) {
                self.stall(&conn, slot);
                return;
            }
        }
        if self.parse(slot, &conn, &mut input, parsed) {
            self.stall(&conn, slot);
            return;
        }
        let mut out = conn.output.lock().unwrap_or_else(|e| e.into_inner());
        if eof && out.close_at.is_none() {
            // The end of the input takes a sequence number too: the connection closes once every
            // reply before it is written.
            let seq = out.next_seq;
            out.next_seq += 1;
            out.close_at = Some(seq);
            out.held.insert(seq, Vec::new());
            out.release_in_order();
        }
        // The end of the input, a parse error or `Frame::Close` may have ended the connection.
        let done = out.close_at.is_some() && self.flush(&conn, &mut out);
        drop(out);
        if done {
            self.drop_conn(slot);
        }
    }

    /// Parses whole frames from `input`; true if the connection is now throttled.
    fn parse(&self, slot: usize, conn: &Conn, input: &mut Vec<u8>, parsed: &mut VecDeque<Request>) -> bool {
        let mut used = 0;
        let mut throttled = false;
        let now = clock::now_ns();
        while used < input.len() {
            let mut out = conn.output.lock().unwrap_or_else(|e| e.into_inner());
            if out.close_at.is_some() || out.dead {
                used = input.len();
                break;
            }
            if out.next_seq - out.next_out >= MAX_IN_FLIGHT || out.unsent.len() >= MAX_UNSENT {
                conn.throttled.store(true, Ordering::Release);
                self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                throttled = true;
                break;
            }
            // A codec is the application's code: one that panics closes the connection it was
            // decoding (counted malformed) instead of unwinding into the worker's scheduling
            // loop, which cannot unwind (the process would abort).
            let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.codec.decode(&input[used..], self.max_body)
            }))
            .unwrap_or_else(|_| Err(CodecError { message: "the codec panicked".into(), reply: None }));
            match decoded {
                Ok(None) => break,
                Ok(Some((frame, n))) => {
                    used += n.max(1);
                    let seq = out.next_seq;
                    out.next_seq += 1;
                    match frame {
                        Frame::Request(mut req) => {
                            req.arrival_ns = now;
                            req.origin = origin(slot, conn.generation, seq);
                            req.flow = slot as u32;
                            self.counters.requests.fetch_add(1, Ordering::Relaxed);
                            parsed.push_back(req);
                        }
                        Frame::Answer(bytes) => {
                            self.finish(conn, &mut out, seq, bytes);
                        }
                        Frame::Close => {
                            out.close_at = Some(seq);
                            self.finish(conn, &mut out, seq, Vec::new());
                        }
                    }
                }
                Err(e) => {
                    self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    log::debug!("TCP connection {slot}: {e}; closing it");
                    let seq = out.next_seq;
                    out.next_seq += 1;
                    out.close_at = Some(seq);
                    self.finish(conn, &mut out, seq, e.reply.unwrap_or_default());
                    used = input.len();
                    break;
                }
            }
        }
        input.drain(..used);
        throttled
    }

    /// Puts reply `seq`'s bytes in the sequencer and writes what is now in order.
    fn finish(&self, conn: &Conn, out: &mut Output, seq: u64, bytes: Vec<u8>) {
        out.held.insert(seq, bytes);
        out.release_in_order();
        self.flush(conn, out);
    }

    /// Writes what the kernel takes; true if the connection is to close now (everything before
    /// `close_at` written, or the socket failed).
    fn flush(&self, conn: &Conn, out: &mut Output) -> bool {
        while !out.unsent.is_empty() && !out.dead {
            match (&conn.stream).write(&out.unsent) {
                Ok(n) => {
                    out.unsent.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => out.dead = true,
            }
        }
        // Room again: a throttled connection may be read (its worker reads at its next poll;
        // the level of the socket's input is re-armed by the edge of this write's EPOLLOUT or
        // the next segment).
        if conn.throttled.load(Ordering::Acquire)
            && out.next_seq - out.next_out < MAX_IN_FLIGHT / 2
            && out.unsent.len() < MAX_UNSENT / 2
        {
            conn.throttled.store(false, Ordering::Release);
        }
        out.dead || out.close_at.is_some_and(|c| out.next_out > c && out.unsent.is_empty())
    }
}

impl Transport for TcpTransport {
    fn poll(&self, worker: usize, out: &mut Vec<Request>, max: usize) {
        let io = &self.workers[worker];
        let mut parsed = io.parsed.lock().unwrap_or_else(|e| e.into_inner());
        if parsed.len() < max && !self.closed.load(Ordering::Acquire) {
            let mut events = [libc::epoll_event { events: 0, u64: 0 }; 32];
            // SAFETY: valid epoll fd; `events` has room for its length.
            let n = unsafe { libc::epoll_wait(io.epoll.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, 0) };
            for e in events.iter().take(n.max(0) as usize) {
                let (data, flags) = (e.u64, e.events);
                if data == LISTENER {
                    self.accept(worker);
                    continue;
                }
                let slot = data as usize;
                if flags & libc::EPOLLOUT as u32 != 0 {
                    if let Some(conn) = self.conn(slot) {
                        let mut o = conn.output.lock().unwrap_or_else(|e| e.into_inner());
                        if self.flush(&conn, &mut o) {
                            drop(o);
                            self.drop_conn(slot);
                            continue;
                        }
                    }
                }
                self.read_conn(slot, &mut parsed);
            }
            // Stalled connections whose replies drained are read again (their input edge passed).
            let ready: Vec<usize> = {
                let mut stalled = io.stalled.lock().unwrap_or_else(|e| e.into_inner());
                let (ready, still): (Vec<usize>, Vec<usize>) = stalled
                    .iter()
                    .partition(|&&slot| self.conn(slot).is_none_or(|c| !c.throttled.load(Ordering::Acquire)));
                *stalled = still;
                ready
            };
            for slot in ready {
                self.read_conn(slot, &mut parsed);
            }
        }
        let take = parsed.len().min(max);
        out.extend(parsed.drain(..take));
    }

    fn backlog(&self, worker: usize) -> usize {
        let io = &self.workers[worker];
        let parsed = io.parsed.lock().unwrap_or_else(|e| e.into_inner()).len();
        // An epoll set is readable while it has events; poll(2) on it consumes none (an
        // epoll_wait here would take connections' edges away from `poll`).
        let mut p = libc::pollfd { fd: io.epoll.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, no timeout.
        let ready = unsafe { libc::poll(&mut p, 1, 0) } > 0;
        parsed + usize::from(ready)
    }

    fn reply(&self, _worker: usize, reply: Reply) {
        let slot = (reply.origin >> 40) as usize;
        let generation = ((reply.origin >> 32) & 0xff) as u32;
        let Some(conn) = self.conn(slot).filter(|c| c.generation == generation) else {
            self.counters.reply_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut bytes = Vec::new();
        self.codec.encode(&reply, &mut bytes);
        let mut out = conn.output.lock().unwrap_or_else(|e| e.into_inner());
        if out.dead {
            self.counters.reply_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // The full sequence number: the low 32 bits are the origin's, the rest those of the
        // oldest unanswered one (at most MAX_IN_FLIGHT behind the newest).
        let low = reply.origin & 0xffff_ffff;
        let mut seq = (out.next_out & !0xffff_ffff) | low;
        if seq < out.next_out {
            seq += 1 << 32;
        }
        self.finish(&conn, &mut out, seq, bytes);
        self.counters.replies.fetch_add(1, Ordering::Relaxed);
        let close = out.dead || out.close_at.is_some_and(|c| out.next_out > c && out.unsent.is_empty());
        drop(out);
        if close {
            self.drop_conn(slot);
        }
    }

    fn arrival_fds(&self) -> Vec<RawFd> {
        self.workers.iter().map(|w| w.epoll.as_raw_fd()).collect()
    }

    fn finished(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}
