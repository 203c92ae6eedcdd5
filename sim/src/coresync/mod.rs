//! Cores on demand with overload control, simulated at the CoreSync and Hermes papers' scale
//! (issue 18): sessions of clients behind a network RTT, the credit pool, the AQM, parking with a
//! wake-up cost, core grants, and CoreSync's coupling of the two.
//!
//! The controllers are the runtime's own decision code: the credit pool and AQM threshold are
//! `policy::overload`, the core grants `policy::idle::Grants`, CoreSync's parking gate
//! `policy::coresync`. What is modelled around them (`engine.rs`):
//!
//! - **Clients**: `sessions` sessions; open-loop Poisson arrivals at the phase's rate, each on a
//!   session drawn uniformly. With credits, a session sends while its requests outstanding
//!   (sent, reply not received) are fewer than its last grant; the others wait at the client.
//!   Every reply, success or reject, carries the session's grant (as the runtime's replies do).
//! - **Network**: a fixed one-way delay (half the RTT; the CoreSync testbed's mean RTT is 10 µs).
//! - **Server**: `cores` cores serving one FIFO in arrival order (Caladan's and Shenango's work
//!   stealing among allocated cores keeps requests close to that order); an allocated core that is
//!   idle polls and takes work the moment it arrives. The AQM is the runtime's: a request that
//!   waited more than D_drop when a core takes it is rejected with a reply; a reject costs no core
//!   time here.
//! - **D_m**, once per control period (one RTT): the largest queueing delay of the requests
//!   started in the period and of the queue's head at its end (the runtime sees the former and the
//!   wait queue's head; the simulator knows the FIFO's head exactly). A period with neither holds
//!   the pool.
//! - **Cores**: one tick per µs. An allocated core idle for POLL_PERIOD asks its allocator whether
//!   it parks (at least one core stays allocated, as Shenango's guaranteed core); the grants wake
//!   a parked core, which takes work `wake_ns` later. The papers give no wake-up cost: 5 µs is
//!   assumed (one allocation interval); this project's futex wake-up on KVM measured 33-49 µs.
//!
//! Allocators: `Static` (every core polls: the reference), `Shenango` (park after POLL_PERIOD;
//! grant a core when queued work has waited the delay threshold, one per 5 µs; blind to credits),
//! `CoreSync` (Shenango's rule with Algorithm 1's gate: drained sessions veto parking, one core
//! parks at a time, parking withdraws credits down to `sessions + R · cores` issued), and
//! `UtilRange` (proactive: every window, add a core when the allocated cores were busier than
//! `hi`, park an idle one when less busy than `lo`; CoreSync's baseline uses 75-95%).
//!
//! Algorithm 1 taken literally: a core that withdrew credits and finds work before it parks does
//! not give them back (its `C_sub` is reset when it next runs out of work); the pool's additive
//! increase restores them.

pub mod engine;
pub mod figures;

use serde::Serialize;
use synergy_eval::rng::SplitMix64;
use synergy_policy::overload::CreditParams;

/// Service times.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Service {
    /// Exponentially distributed.
    Exponential {
        /// The mean (ns).
        mean_ns: u64,
    },
    /// Always the same.
    Fixed {
        /// The service time (ns).
        ns: u64,
    },
}

impl Service {
    /// The mean service time (ns).
    pub fn mean_ns(&self) -> f64 {
        match *self {
            Service::Exponential { mean_ns } => mean_ns as f64,
            Service::Fixed { ns } => ns as f64,
        }
    }

    fn draw(&self, rng: &mut SplitMix64) -> u64 {
        match *self {
            Service::Exponential { mean_ns } => (rng.exp(mean_ns as f64) as u64).max(1),
            Service::Fixed { ns } => ns,
        }
    }
}

/// How cores are allocated (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Allocator {
    /// Every core polls all the time.
    Static,
    /// Shenango's: park after POLL_PERIOD idle, grants by queueing delay, no coupling with the credits.
    Shenango,
    /// CoreSync's: Shenango's rule with Algorithm 1's gate (drained sessions veto parking, one
    /// core parks at a time, parking withdraws credits down to `sessions + R · cores` issued).
    CoreSync {
        /// CoreSync's R: credits issued per allocated core beyond one per session.
        r: f64,
    },
    /// Every window, a core is added when the allocated cores were busier than `hi` and an idle
    /// one parked when less busy than `lo`.
    UtilRange {
        /// Park a core below this utilisation.
        lo: f64,
        /// Add a core above this utilisation.
        hi: f64,
        /// The window utilisation is judged over (ns).
        window_ns: u64,
    },
}

impl Allocator {
    /// CoreSync's utilisation-range baseline: 75-95%, judged over 50 µs (the paper gives the
    /// range, not the window; ten 5 µs allocation intervals here).
    pub const UTIL_RANGE: Allocator = Allocator::UtilRange { lo: 0.75, hi: 0.95, window_ns: 50_000 };

    /// The name the tables and plots use.
    pub fn name(&self) -> String {
        match *self {
            Allocator::Static => "static (all cores poll)".into(),
            Allocator::Shenango => "Shenango (uncoupled)".into(),
            Allocator::CoreSync { r } => format!("CoreSync (R={r})"),
            Allocator::UtilRange { lo, hi, .. } => format!("util. range {:.0}-{:.0}%", lo * 100.0, hi * 100.0),
        }
    }
}

/// A stretch of constant offered load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Phase {
    /// How long it lasts (ns).
    pub duration_ns: u64,
    /// Its offered rate, requests per second.
    pub rps: f64,
}

/// Overload control's settings: the runtime's controller settings and its control period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Credits {
    /// The credit controller's settings.
    pub params: CreditParams,
    /// The control period (CoreSync: one RTT).
    pub period_ns: u64,
}

impl Credits {
    /// CoreSync's Breakwater settings for target delay `target_delay_ns`
    /// (`CreditParams::coresync`) and control period `period_ns`.
    pub fn coresync(target_delay_ns: u64, period_ns: u64) -> Credits {
        Credits { params: CreditParams::coresync(target_delay_ns), period_ns }
    }
}

/// One simulated run.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// Server cores.
    pub cores: usize,
    /// Client sessions.
    pub sessions: usize,
    /// One-way network latency (ns).
    pub one_way_ns: u64,
    /// Service times.
    pub service: Service,
    /// Offered load over time, in order.
    pub phases: Vec<Phase>,
    /// Measurements start here (from the start of the first phase) and end with the last phase.
    pub warmup_ns: u64,
    /// How cores are allocated.
    pub allocator: Allocator,
    /// CoreSync's POLL_PERIOD: idle this long before asking to park.
    pub poll_period_ns: u64,
    /// The grants' delay threshold.
    pub wake_delay_ns: u64,
    /// From a grant to the woken core taking work.
    pub wake_ns: u64,
    /// Overload control (None: none).
    pub credits: Option<Credits>,
    /// Width of the timeline's windows (0: no timeline).
    pub timeline_ns: u64,
    /// Seed of the arrival and service draws.
    pub seed: u64,
}

impl Setup {
    /// CoreSync's evaluation (§IV-A): 16 cores, 100 sessions, RTT 10 µs, exponential 10 µs
    /// service, Breakwater's D_t = 80 µs with a control period of one RTT, POLL_PERIOD 2 µs, delay
    /// threshold 5 µs; `load` is a fraction of the 16 cores' capacity, held for `duration_ns`
    /// after a warm-up of a fifth of it.
    pub fn coresync_paper(allocator: Allocator, load: f64, duration_ns: u64, seed: u64) -> Setup {
        let service = Service::Exponential { mean_ns: 10_000 };
        let cores = 16;
        let warmup_ns = duration_ns / 5;
        Setup {
            cores,
            sessions: 100,
            one_way_ns: 5_000,
            service,
            phases: vec![Phase { duration_ns: warmup_ns + duration_ns, rps: load * capacity_rps(cores, service) }],
            warmup_ns,
            allocator,
            poll_period_ns: 2_000,
            wake_delay_ns: 5_000,
            wake_ns: 5_000,
            credits: Some(Credits::coresync(80_000, 10_000)),
            timeline_ns: 0,
            seed,
        }
    }

    /// The end of the last phase.
    pub fn end_ns(&self) -> u64 {
        self.phases.iter().map(|p| p.duration_ns).sum()
    }
}

/// Requests per second that keep `cores` exactly busy.
pub fn capacity_rps(cores: usize, service: Service) -> f64 {
    cores as f64 * 1e9 / service.mean_ns()
}

/// One window of the timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Window {
    /// The window's start (ns from the start of the run).
    pub start_ns: u64,
    /// The offered rate in it.
    pub offered_rps: f64,
    /// Replies completed in it.
    pub completed: usize,
    /// Their p99 latency, send to reply (ns).
    pub p99_ns: u64,
    /// Their p99.9 (ns).
    pub p999_ns: u64,
    /// Their p99.9 at the server (ns).
    pub server_p999_ns: u64,
    /// Time-weighted cores not parked.
    pub cores_in_use: f64,
}

/// What one run measured, over `[warmup, end]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outcome {
    /// The allocator's name.
    pub allocator: String,
    /// The offered rate, requests per second.
    pub offered_rps: f64,
    /// Successful replies received per second.
    pub goodput_rps: f64,
    /// Rejects received per second, and in all.
    pub rejected_rps: f64,
    /// Rejects received in all.
    pub rejected: u64,
    /// Successful replies in all.
    pub completed: u64,
    /// Latency of successful requests from send to reply (what CoreSync reports).
    pub p50_ns: u64,
    /// p99 of the same (ns).
    pub p99_ns: u64,
    /// p99.9 of the same (ns).
    pub p999_ns: u64,
    /// From arrival at the server to the reply leaving it.
    pub server_p99_ns: u64,
    /// p99.9 of the same (ns).
    pub server_p999_ns: u64,
    /// Time requests waited at the client for a credit.
    pub client_wait_p99_ns: u64,
    /// From the request's arrival at the client to its reply (client wait included).
    pub end_to_end_p99_ns: u64,
    /// Time-weighted cores not parked, and its fraction of the cores.
    pub cores_in_use: f64,
    /// `cores_in_use` over the cores.
    pub utilisation: f64,
    /// Busy core time over allocated core time (Hermes's runtime efficiency).
    pub efficiency: f64,
    /// Times a core parked.
    pub parks: u64,
    /// Times a parked core was woken.
    pub wakeups: u64,
    /// CoreSync: withdrawals made and credits withdrawn.
    pub withdrawals: u64,
    /// Credits withdrawn by them.
    pub withdrawn_credits: f64,
    /// Parking attempts a drained session vetoed (counted once per idle spell).
    pub drained_vetoes: u64,
    /// The credit pool at the end, and the requests waiting at clients then.
    pub final_credits: f64,
    /// Requests waiting at clients at the end.
    pub waiting_at_clients: usize,
    /// Over the whole run: requests sent, replies received, and requests sent and not answered
    /// when it ended (in the network or at the server). Nothing is lost: sent = replies +
    /// outstanding.
    pub sent_total: u64,
    /// Replies received.
    pub replies_total: u64,
    /// Sent and not answered when the run ended.
    pub outstanding_at_end: u64,
    /// Windows of `Setup::timeline_ns`.
    pub timeline: Vec<Window>,
}
