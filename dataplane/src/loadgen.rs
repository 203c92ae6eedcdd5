//! `synergy load`: an open-loop load generator. Requests of a workload's mix leave at Poisson
//! arrival times over `flows` UDP sockets (one source port per flow, so SO_REUSEPORT spreads them
//! over the server's workers), from a send thread that never waits for replies; a receive thread
//! collects replies with epoll and records latency (now − the request's send timestamp) and
//! slowdown (latency / service time) in HDR histograms. Requests sent during the warm-up are not
//! recorded; requests never answered within the grace period after the last send are lost.
//!
//! Each flow is a session. With `obey_credits` (for a server running `--overload credits`) a
//! session keeps at most as many requests outstanding as the credits of its latest reply (one
//! before any): arrivals stay open-loop Poisson, but a request without a credit waits in its
//! session's client queue until a reply frees one. The result then separates the time requests
//! queued at the client, the time in the network and server (`classes`), and the end-to-end
//! latency from the arrival; rejected requests (`status::REJECTED`) are counted, not retried, and
//! goodput counts only requests served.

use crate::protocol::{decode_reply, encode_request_header_for_body};
use crate::udp::{bind_udp, recv_from, send_parts};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synergy::clock;
use synergy::request::{status, Request};
use synergy_eval::workload::Workload;

#[derive(Debug, Clone)]
/// How the load generator runs: where, what, how fast, for how long.
pub struct LoadgenParams {
    /// The server.
    pub target: SocketAddrV4,
    /// The request mix (kinds, service times, shares).
    pub workload: Workload,
    /// Offered load, requests per second.
    pub rps: f64,
    /// How long the measured window lasts.
    pub duration: Duration,
    /// How long requests are sent, unmeasured, before it.
    pub warmup: Duration,
    /// Time to wait for stragglers after the last send.
    pub grace: Duration,
    /// Sessions (each its own socket and `flow`).
    pub flows: u32,
    /// Seed of the arrival and request-kind draws.
    pub seed: u64,
    /// Also keep every measured reply's (kind, latency) in `LoadgenResult::samples`, so that the
    /// reported percentiles can be checked against the raw data.
    pub keep_samples: bool,
    /// Sessions obey the credits in replies (see the module comment).
    pub obey_credits: bool,
    /// Run the load generator's threads on this CPU only: on a small machine, keeps its
    /// real-time threads off the server's worker CPUs (e.g. on the timer core's CPU).
    pub cpu: Option<usize>,
    /// A step load (Hermes's burst test): the rate alternates between `rps` and this one's.
    pub step: Option<StepLoad>,
    /// Every request carries a body of this many bytes (protocol version 2; 0: none, version 1).
    /// At most `protocol::UDP_MAX_REQUEST_BODY`.
    pub body_bytes: usize,
}

/// The offered rate switches between `LoadgenParams::rps` (first) and `rps` every `every`, from
/// the start of the warm-up on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLoad {
    /// The second rate, requests per second.
    pub rps: f64,
    /// How long each step lasts.
    pub every: Duration,
}

/// One step of a step load: its offered rate and how the requests that arrived in it fared.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepResult {
    /// From the start of the warm-up.
    pub start_ms: f64,
    /// The step's offered rate, requests per second.
    pub offered_rps: f64,
    /// Measured requests that arrived in this step and were served.
    pub served: u64,
    /// p50 latency of those requests (ns).
    pub p50_ns: u64,
    /// p99 latency of those requests (ns).
    pub p99_ns: u64,
    /// p99.9 latency of those requests (ns).
    pub p999_ns: u64,
}

/// Latency summary of one request type (ns) or of all (slowdown, ×1).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClassLatency {
    /// The type's service time (ns).
    pub service_ns: u64,
    /// Whether the workload counts it as long.
    pub long: bool,
    /// Measured replies of this type.
    pub count: u64,
    /// p50 latency, send to reply (ns).
    pub p50_ns: u64,
    /// p99 latency, send to reply (ns).
    pub p99_ns: u64,
    /// p99.9 latency, send to reply (ns).
    pub p999_ns: u64,
    /// p99.9 slowdown (latency over service time).
    pub slowdown_p999: f64,
    /// p99.9 of the server's own account of this type's requests (`server_ns`).
    pub server_p999_ns: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
/// What one run measured.
pub struct LoadgenResult {
    /// The offered rate, requests per second.
    pub offered_rps: f64,
    /// Replies recorded per second of the measured window.
    pub achieved_rps: f64,
    /// Requests sent after the warm-up.
    pub sent: u64,
    /// Of those, answered.
    pub answered: u64,
    /// Sent but never answered.
    pub lost: u64,
    /// Sends the kernel refused (our socket buffer full).
    pub send_errors: u64,
    /// Replies the kernel dropped because the load generator's own receive buffers were full
    /// (SO_MEMINFO's drop count over its sockets, warm-up included): loss on the client's side.
    pub kernel_drops: u64,
    /// Datagrams that were not well-formed replies, or answered an unknown request.
    pub bad_replies: u64,
    /// Replies with a non-zero status other than `REJECTED`.
    pub error_replies: u64,
    /// Requests the server's overload control rejected (`status::REJECTED`).
    pub rejected: u64,
    /// Requests served (status OK) per second of the measured window.
    pub goodput_rps: f64,
    /// `obey_credits`: measured requests still waiting for a credit at the client when the
    /// schedule ended (never sent, not counted in `sent`; no reply after that releases them).
    pub unsent: u64,
    /// `obey_credits`: time measured requests waited at the client for a credit (ns).
    pub client_queue_p50_ns: u64,
    /// p99 of that wait (ns).
    pub client_queue_p99_ns: u64,
    /// From a request's arrival (its scheduled time) to its reply, client queueing included
    /// (ns); what `classes` report starts at the send.
    pub end_to_end_p50_ns: u64,
    /// p99 of the same (ns).
    pub end_to_end_p99_ns: u64,
    /// p99.9 of the same (ns).
    pub end_to_end_p999_ns: u64,
    /// `obey_credits`: the mean of the credits replies carried.
    pub mean_credits: f64,
    /// Replies for an id already answered.
    pub duplicates: u64,
    /// How late the sender fell behind the schedule at worst (ns): a sender that cannot keep up
    /// would make the load closed-loop; this says whether it did.
    pub max_send_lag_ns: u64,
    /// Whether the load generator's threads ran SCHED_FIFO (see `make_realtime`).
    pub realtime: bool,
    /// Per request type.
    pub classes: Vec<ClassLatency>,
    /// p99.9 slowdown over every measured reply.
    pub overall_slowdown_p999: f64,
    /// p99.9 latency over every measured reply (ns).
    pub overall_latency_p999_ns: u64,
    /// The same p99.9s from the server's own account (`server_ns` of each reply: from the
    /// kernel's receive timestamp to the reply's construction): what the simulator models, with
    /// the kernel's UDP send and receive paths on both sides left out.
    pub server_slowdown_p999: f64,
    /// p99.9 of the server's own latencies (ns).
    pub server_latency_p999_ns: u64,
    /// With a step load: each step's served requests and latency (by the step they arrived in).
    pub steps: Vec<StepResult>,
    /// Every measured reply's (request kind, latency ns), in arrival order, if
    /// `LoadgenParams::keep_samples`; not part of the JSON.
    #[serde(skip)]
    pub samples: Vec<(u32, u64)>,
}

/// Puts the calling thread in SCHED_FIFO (priority 1) if allowed. The load generator's threads
/// sleep almost all the time; when a send is due or a reply arrives they must run at once, not
/// after the scheduler's time slice of a server thread spinning on the same core (on a 2-core
/// machine server and load generator share cores; with CFS/EEVDF a woken thread can wait
/// milliseconds, which would be measured as server latency).
fn make_realtime() -> bool {
    let p = libc::sched_param { sched_priority: 1 };
    // SAFETY: sets the calling thread's policy; fails harmlessly without CAP_SYS_NICE.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) == 0 }
}

struct Flow {
    fd: OwnedFd,
}

/// Per id: not sent; sent during the warm-up (not measured) or after it; answered.
const NOT_SENT: u64 = 0;
const SENT: u64 = 1;
const ANSWERED: u64 = 2;
const SENT_WARMUP: u64 = 3;
const ANSWERED_WARMUP: u64 = 4;

/// One session's client side (`obey_credits`).
struct Session {
    /// Requests it may have outstanding: the credits of its latest reply.
    window: u32,
    outstanding: u32,
    /// Arrivals waiting for a credit (schedule indices), oldest first.
    queued: VecDeque<usize>,
}

/// What the send and receive threads share.
struct Shared {
    schedule: Vec<Request>,
    flows: Vec<Flow>,
    state: Vec<AtomicU64>,
    target: SocketAddrV4,
    start: u64,
    warmup_end: u64,
    /// `obey_credits`: one per flow.
    sessions: Option<Vec<Mutex<Session>>>,
    /// The schedule is over: replies no longer release queued requests (those stay `unsent`),
    /// so what is in flight drains within the grace period instead of being refilled.
    schedule_over: AtomicBool,
    /// A step load: its step length (ns) and each step's (duration ns, rate); requests are
    /// tallied by the step they arrive in.
    steps: Option<(u64, Vec<(u64, f64)>)>,
    /// The body every request carries (`LoadgenParams::body_bytes`).
    body: Vec<u8>,
}

impl Shared {
    /// Whether schedule entry `i` arrives after the warm-up (is recorded).
    fn measured(&self, i: usize) -> bool {
        self.start + self.schedule[i].arrival_ns >= self.warmup_end
    }

    /// Sends schedule entry `i` now; false if the kernel refused it.
    fn send(&self, i: usize, now: u64) -> bool {
        let r = &self.schedule[i];
        let measured = self.measured(i);
        let header = encode_request_header_for_body(r, now, self.body.len());
        self.state[i].store(if measured { SENT } else { SENT_WARMUP }, Ordering::Release);
        if send_parts(&self.flows[r.flow as usize].fd, &header, &self.body, self.target) {
            true
        } else {
            self.state[i].store(NOT_SENT, Ordering::Release);
            false
        }
    }

    /// Sends entry `i` if its session has a credit, else queues it there; false on a send error.
    fn arrive(&self, i: usize, now: u64) -> bool {
        let Some(sessions) = &self.sessions else { return self.send(i, now) };
        let mut s = sessions[self.schedule[i].flow as usize].lock().unwrap_or_else(|e| e.into_inner());
        if s.outstanding < s.window && s.queued.is_empty() {
            s.outstanding += 1;
            if !self.send(i, now) {
                s.outstanding -= 1;
                return false;
            }
        } else {
            s.queued.push_back(i);
        }
        true
    }

    /// A reply freed a credit of `flow`'s session and brought `credits`: sends what they allow.
    /// Returns the send errors.
    fn replied(&self, flow: usize, credits: Option<u32>, now: u64) -> u64 {
        let Some(sessions) = &self.sessions else { return 0 };
        let mut s = sessions[flow].lock().unwrap_or_else(|e| e.into_inner());
        s.outstanding = s.outstanding.saturating_sub(1);
        if let Some(c) = credits {
            s.window = c.max(1);
        }
        let mut errors = 0;
        while s.outstanding < s.window && !self.schedule_over.load(Ordering::Acquire) {
            let Some(i) = s.queued.pop_front() else { break };
            if self.send(i, now) {
                s.outstanding += 1;
            } else {
                errors += 1;
            }
        }
        errors
    }
}

/// Why the load generator could not run.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("the offered load must be a positive number of requests/s, got {0}")]
    /// The offered load is not a positive number.
    Rate(f64),
    #[error("the step load's second rate must be 0 or more requests/s, got {0}")]
    /// The step load's second rate is negative or not a number.
    StepRate(f64),
    #[error("the step load's steps must last at least 1 ms, got {0:?}")]
    /// Steps shorter than 1 ms.
    StepLength(Duration),
    #[error("--flows must be between 1 and 4096, got {0}")]
    /// A session count outside 1..=4096.
    Flows(u32),
    #[error("empty workload")]
    /// A workload with no request type.
    EmptyWorkload,
    #[error("a request body of {0} bytes does not fit in one UDP datagram (at most {max})", max = crate::protocol::UDP_MAX_REQUEST_BODY)]
    /// A body too large for one datagram.
    BodyTooLarge(usize),
    #[error("loadgen socket: {0}")]
    /// A socket could not be made or connected.
    Socket(#[source] std::io::Error),
    #[error("the load generator's CPU {0} is not available to this process")]
    /// The requested CPU is not in this process's affinity.
    CpuUnavailable(usize),
    #[error("cannot start the {role} thread: {source}")]
    /// A thread could not start.
    Spawn {
        /// Which thread (sender, receiver).
        role: &'static str,
        /// Why.
        source: std::io::Error,
    },
    #[error("the {0} thread panicked")]
    /// A thread panicked.
    ThreadPanicked(&'static str),
}

fn connect_flows(target: SocketAddrV4, flows: u32) -> Result<Vec<Flow>, LoadgenError> {
    let any = SocketAddrV4::new(if target.ip().is_loopback() { Ipv4Addr::LOCALHOST } else { Ipv4Addr::UNSPECIFIED }, 0);
    (0..flows).map(|_| bind_udp(any, false).map(|fd| Flow { fd }).map_err(LoadgenError::Socket)).collect()
}

/// The requests `run(p)` sends, in order: arrival offsets from the start of the warm-up (ns),
/// kinds and flows, drawn in advance from the seed, so the same parameters send the same
/// requests (one "worker" of the workload's scheduler).
pub fn schedule(p: &LoadgenParams) -> Vec<Request> {
    let total_ns = (p.warmup + p.duration).as_nanos() as u64;
    match p.step {
        None => {
            let count = ((p.rps * total_ns as f64 / 1e9) as usize).max(1);
            p.workload.schedule(p.rps, count, 1, p.flows, p.seed).pop().unwrap_or_default()
        }
        Some(_) => p.workload.schedule_phases(&step_rates(p, total_ns), p.flows, p.seed),
    }
}

/// Runs one load level against a server at `p.target`.
pub fn run(p: &LoadgenParams) -> Result<LoadgenResult, LoadgenError> {
    if !(p.rps > 0.0 && p.rps.is_finite()) {
        return Err(LoadgenError::Rate(p.rps));
    }
    if let Some(step) = p.step {
        if !(step.rps >= 0.0 && step.rps.is_finite()) {
            return Err(LoadgenError::StepRate(step.rps));
        }
        if step.every < Duration::from_millis(1) {
            return Err(LoadgenError::StepLength(step.every));
        }
    }
    if p.flows == 0 || p.flows > 4096 {
        return Err(LoadgenError::Flows(p.flows));
    }
    if p.workload.types.is_empty() {
        return Err(LoadgenError::EmptyWorkload);
    }
    if p.body_bytes > crate::protocol::UDP_MAX_REQUEST_BODY {
        return Err(LoadgenError::BodyTooLarge(p.body_bytes));
    }
    clock::init();
    let flows = connect_flows(p.target, p.flows)?;
    let total_ns = (p.warmup + p.duration).as_nanos() as u64;
    let steps = step_rates(p, total_ns);
    let schedule = self::schedule(p);
    let n = schedule.len();
    let start = clock::now_ns() + 2_000_000;
    let shared = Arc::new(Shared {
        schedule,
        state: (0..n).map(|_| AtomicU64::new(NOT_SENT)).collect(),
        sessions: p.obey_credits.then(|| {
            (0..flows.len())
                .map(|_| Mutex::new(Session { window: 1, outstanding: 0, queued: VecDeque::new() }))
                .collect()
        }),
        flows,
        target: p.target,
        start,
        warmup_end: start + p.warmup.as_nanos() as u64,
        schedule_over: AtomicBool::new(false),
        steps: p.step.map(|s| (s.every.as_nanos() as u64, steps.clone())),
        body: (0..p.body_bytes).map(|i| (i % 251) as u8).collect(),
    });
    let sending_done = Arc::new(AtomicBool::new(false));

    let realtime = can_be_realtime();
    let receiver = {
        let (shared, done) = (shared.clone(), sending_done.clone());
        let (types, grace, keep) = (p.workload.types.clone(), p.grace, p.keep_samples);
        spawn_loadgen_thread("receive", realtime, p.cpu, move || receive(&shared, &done, &types, grace, keep))?
    };
    // Sending runs on its own thread too, so that its real-time policy never leaks into the
    // caller's thread (whose children — e.g. a server runtime started later in a sweep — would
    // inherit it).
    let sender = {
        let shared = shared.clone();
        spawn_loadgen_thread("send", realtime, p.cpu, move || send_schedule(&shared))?
    };
    let (send_errors, max_lag) = sender.join().map_err(|_| LoadgenError::ThreadPanicked("send"))?;
    shared.schedule_over.store(true, Ordering::Release);
    sending_done.store(true, Ordering::Release);
    let mut rx = receiver.join().map_err(|_| LoadgenError::ThreadPanicked("receive"))?;
    let end = clock::now_ns().min(start + total_ns + p.grace.as_nanos() as u64);
    let count_state = |v: u64| shared.state.iter().filter(|s| s.load(Ordering::Acquire) == v).count() as u64;
    let (sent, answered) = (count_state(SENT) + count_state(ANSWERED), count_state(ANSWERED));
    rx.unsent = shared.sessions.as_ref().map_or(0, |sessions| {
        sessions
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.queued.iter().filter(|&&i| shared.measured(i)).count() as u64
            })
            .sum()
    });
    rx.offered_rps = steps.iter().map(|&(d, r)| d as f64 * r).sum::<f64>() / total_ns.max(1) as f64;
    rx.sent = sent;
    rx.answered = answered;
    rx.lost = sent - answered;
    rx.send_errors += send_errors;
    rx.kernel_drops = shared.flows.iter().map(|f| crate::udp::kernel_drops(&f.fd)).sum();
    rx.max_send_lag_ns = max_lag;
    rx.realtime = realtime;
    let window = ((end.saturating_sub(shared.warmup_end)).max(1) as f64 / 1e9).max(p.duration.as_secs_f64());
    rx.achieved_rps = answered as f64 / window;
    rx.goodput_rps = (answered - rx.rejected - rx.error_replies) as f64 / window;
    Ok(rx)
}

/// The schedule's (duration ns, rate) steps over `total_ns`: one step at `p.rps` without a step
/// load, else alternating rates from `p.rps` on (the last step cut at the end).
fn step_rates(p: &LoadgenParams, total_ns: u64) -> Vec<(u64, f64)> {
    let Some(step) = p.step else { return vec![(total_ns, p.rps)] };
    let every = (step.every.as_nanos() as u64).max(1);
    let mut out = Vec::new();
    let mut t = 0;
    while t < total_ns {
        let rate = if out.len() % 2 == 0 { p.rps } else { step.rps };
        out.push((every.min(total_ns - t), rate));
        t += every;
    }
    out
}

/// Releases every arrival of the schedule at its time (sent, or queued at its session without a
/// credit); returns (send errors, worst lag behind the schedule in ns).
fn send_schedule(shared: &Shared) -> (u64, u64) {
    let mut send_errors = 0u64;
    let mut max_lag = 0u64;
    // Sleep rather than spin until shortly before each send: on a small machine the load
    // generator shares cores with the server, and a spinning sender would steal its CPU time.
    // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer slack (1 ns: precise sleeps).
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
    for (i, r) in shared.schedule.iter().enumerate() {
        let due = shared.start + r.arrival_ns;
        let mut now = clock::now_ns();
        while now < due {
            if due - now > 20_000 {
                std::thread::sleep(Duration::from_nanos(due - now - 10_000));
            } else {
                std::hint::spin_loop();
            }
            now = clock::now_ns();
        }
        max_lag = max_lag.max(now - due);
        if !shared.arrive(i, now) {
            send_errors += 1;
        }
    }
    (send_errors, max_lag)
}

/// Starts a load-generator thread (`loadgen-<role>`), SCHED_FIFO if `realtime`, on `cpu` if given.
fn spawn_loadgen_thread<T: Send + 'static>(
    role: &'static str,
    realtime: bool,
    cpu: Option<usize>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, LoadgenError> {
    if let Some(c) = cpu {
        if !synergy::cpu::allowed_cpus().contains(&c) {
            return Err(LoadgenError::CpuUnavailable(c));
        }
    }
    std::thread::Builder::new()
        .name(format!("loadgen-{role}"))
        .spawn(move || {
            if let Some(c) = cpu {
                if let Err(e) = synergy::cpu::pin_current_thread(c) {
                    log::warn!(
                        "loadgen: cannot pin the {} thread to CPU {c}: {e}",
                        std::thread::current().name().unwrap_or("?")
                    );
                }
            }
            if realtime {
                make_realtime();
            }
            f()
        })
        .map_err(|source| LoadgenError::Spawn { role, source })
}

/// Whether this process may use SCHED_FIFO (tried on a short-lived thread, so the caller's own
/// policy is never changed).
fn can_be_realtime() -> bool {
    std::thread::spawn(make_realtime).join().unwrap_or(false)
}

/// The longest latency the histograms hold (ns).
const MAX_LATENCY_NS: u64 = 60_000_000_000;

fn histogram(max: u64) -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, max, 3).expect("histogram")
}

/// The latencies of served requests as one vantage sees them (the client's round trip, or the
/// server's own account): per request type, all together, and as slowdowns (× 1000, so that the
/// integer histogram keeps three decimals).
struct Tails {
    per_kind: Vec<Histogram<u64>>,
    all: Histogram<u64>,
    slowdown: Histogram<u64>,
}

impl Tails {
    fn new(kinds: usize) -> Tails {
        Tails {
            per_kind: (0..kinds).map(|_| histogram(MAX_LATENCY_NS)).collect(),
            all: histogram(MAX_LATENCY_NS),
            slowdown: histogram(1_000_000_000_000),
        }
    }

    fn record(&mut self, kind: usize, latency_ns: u64, service_ns: u64) {
        let l = latency_ns.max(1);
        let _ = self.per_kind[kind].record(l);
        let _ = self.all.record(l);
        let _ = self.slowdown.record(((l as f64 / service_ns.max(1) as f64) * 1000.0) as u64 + 1);
    }

    fn slowdown_p999(&self) -> f64 {
        self.slowdown.value_at_quantile(0.999) as f64 / 1000.0
    }
}

/// The receive thread: records every reply until sending is done and either everything is
/// answered or the grace period has passed (and, obeying credits, sends what replies allow);
/// the latency part of the result.
fn receive(
    shared: &Shared,
    done: &AtomicBool,
    types: &[synergy_eval::workload::RequestType],
    grace: Duration,
    keep_samples: bool,
) -> LoadgenResult {
    // The client's round trip and the server's own account of each served request.
    let (mut client, mut server) = (Tails::new(types.len()), Tails::new(types.len()));
    let mut client_queue = histogram(MAX_LATENCY_NS);
    let mut end_to_end = histogram(MAX_LATENCY_NS);
    let mut credits_sum = 0u64;
    let mut res = LoadgenResult::default();
    // A step load's per-step latencies, by the step each request arrived in.
    let step_of = |i: usize| shared.steps.as_ref().map(|(ns, _)| (shared.schedule[i].arrival_ns / ns) as usize);
    let step_rates: &[(u64, f64)] = shared.steps.as_ref().map_or(&[], |(_, rates)| rates);
    let mut per_step: Vec<Histogram<u64>> = step_rates.iter().map(|_| histogram(MAX_LATENCY_NS)).collect();
    let flows = &shared.flows;
    // SAFETY: epoll over descriptors that outlive this function (owned by `shared`).
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    for (i, f) in flows.iter().enumerate() {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: i as u64 };
        // SAFETY: valid epoll fd, socket fd and event.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, f.fd.as_raw_fd(), &mut ev) };
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
    let mut buf = vec![0u8; 65_536]; // any reply datagram, body included
    let mut outstanding_since: Option<u64> = None;
    loop {
        // SAFETY: `events` has room for its length.
        let k = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 10) };
        for e in events.iter().take(k.max(0) as usize) {
            let flow = e.u64 as usize;
            while let Some((len, _)) = recv_from(&flows[flow].fd, &mut buf) {
                let now = clock::now_ns();
                // A longer datagram is cut to the buffer and then fails decode_reply's length check.
                let Ok(r) = decode_reply(&buf[..len.min(buf.len())]) else {
                    res.bad_replies += 1;
                    continue;
                };
                let Some(s) = shared.state.get(r.id as usize) else {
                    res.bad_replies += 1;
                    continue;
                };
                let first = |from, to| s.compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire).is_ok();
                let measured = match s.load(Ordering::Acquire) {
                    SENT if first(SENT, ANSWERED) => true,
                    SENT_WARMUP if first(SENT_WARMUP, ANSWERED_WARMUP) => false,
                    NOT_SENT => {
                        res.bad_replies += 1; // an id never sent
                        continue;
                    }
                    _ => {
                        res.duplicates += 1;
                        continue;
                    }
                };
                // Every first reply frees its session's credit, warm-up or not.
                res.send_errors += shared.replied(flow, r.credits, now);
                if !measured {
                    continue;
                }
                credits_sum += u64::from(r.credits.unwrap_or(0));
                match r.status {
                    status::OK => {}
                    status::REJECTED => res.rejected += 1,
                    _ => res.error_replies += 1,
                }
                let arrival = shared.start + shared.schedule[r.id as usize].arrival_ns;
                let _ = client_queue.record(r.client_ts.saturating_sub(arrival).max(1));
                let _ = end_to_end.record(now.saturating_sub(arrival).max(1));
                if r.status == status::REJECTED {
                    continue; // not served: no service latency
                }
                let l = now.saturating_sub(r.client_ts).max(1);
                if let Some(t) = types.get(r.kind as usize) {
                    if keep_samples {
                        res.samples.push((r.kind, l));
                    }
                    client.record(r.kind as usize, l, t.service_ns);
                    if let Some(h) = step_of(r.id as usize).and_then(|k| per_step.get_mut(k)) {
                        let _ = h.record(l);
                    }
                    server.record(r.kind as usize, r.server_ns, t.service_ns);
                } else {
                    res.bad_replies += 1;
                }
            }
        }
        if done.load(Ordering::Acquire) {
            let now = clock::now_ns();
            let since = *outstanding_since.get_or_insert(now);
            let pending = shared.state.iter().any(|s| s.load(Ordering::Relaxed) == SENT);
            let queued = shared
                .sessions
                .as_ref()
                .is_some_and(|ss| ss.iter().any(|s| !s.lock().unwrap_or_else(|e| e.into_inner()).queued.is_empty()));
            if !(pending || queued) || now - since > grace.as_nanos() as u64 {
                break;
            }
        }
    }
    // SAFETY: closing the epoll descriptor we created.
    unsafe { libc::close(ep) };
    res.classes = types
        .iter()
        .zip(client.per_kind.iter().zip(&server.per_kind))
        .map(|(t, (h, server))| ClassLatency {
            service_ns: t.service_ns,
            long: t.long,
            count: h.len(),
            p50_ns: h.value_at_quantile(0.5),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            slowdown_p999: h.value_at_quantile(0.999) as f64 / t.service_ns.max(1) as f64,
            server_p999_ns: server.value_at_quantile(0.999),
        })
        .collect();
    res.overall_slowdown_p999 = client.slowdown_p999();
    res.overall_latency_p999_ns = client.all.value_at_quantile(0.999);
    res.server_slowdown_p999 = server.slowdown_p999();
    res.server_latency_p999_ns = server.all.value_at_quantile(0.999);
    res.client_queue_p50_ns = client_queue.value_at_quantile(0.5);
    res.client_queue_p99_ns = client_queue.value_at_quantile(0.99);
    res.end_to_end_p50_ns = end_to_end.value_at_quantile(0.5);
    res.end_to_end_p99_ns = end_to_end.value_at_quantile(0.99);
    res.end_to_end_p999_ns = end_to_end.value_at_quantile(0.999);
    let mut start_ns = 0;
    res.steps = per_step
        .iter()
        .zip(step_rates)
        .map(|(h, &(duration_ns, offered_rps))| {
            let step = StepResult {
                start_ms: start_ns as f64 / 1e6,
                offered_rps,
                served: h.len(),
                p50_ns: h.value_at_quantile(0.5),
                p99_ns: h.value_at_quantile(0.99),
                p999_ns: h.value_at_quantile(0.999),
            };
            start_ns += duration_ns;
            step
        })
        .collect();
    res.mean_credits = if end_to_end.is_empty() { 0.0 } else { credits_sum as f64 / end_to_end.len() as f64 };
    res
}
