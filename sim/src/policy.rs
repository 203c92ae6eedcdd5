//! The scheduling policies the thesis compares, as deterministic state machines driven by the
//! simulator's event loop (`engine.rs`). d-FCFS and Tiny Quanta have no model here: the
//! simulator runs the runtime's own implementations of them through the policy API
//! (`api_policy.rs`). The models below charge what the API does not describe: a central
//! dispatcher's serialised dispatches (c-FCFS, Shinjuku, Concord, DARC) and Synergy's ablation
//! components and congestion control.
//!
//! * `cfcfs`: one central FIFO; a dispatcher hands the head to an idle worker; run to completion.
//! * `shinjuku`: central FIFO through the dispatcher (JIQ), 5 µs quantum; a request whose quantum
//!   ends while others wait goes to the back of the central queue.
//! * `concord`: like Shinjuku, but each worker also keeps up to 2 dispatched requests of its own
//!   (JBSQ(2)), so it need not wait for the dispatcher; preemption by compiler-inserted yields
//!   (cheap: pass a small `preempt_ns`).
//! * `darc` (Perséphone): the first `reserved` workers serve only short requests; the others serve
//!   short requests first, then long ones; central queues per class, run to completion.
//! * `synergy`: RSS to per-worker queues; an idle worker takes its local queue, then the global
//!   wait queue of preempted requests, then steals half of the longest peer queue above
//!   STEAL_THRESHOLD; only long requests are preemptible, with quantum QUANTUM_FACTOR × the
//!   worker's EMA of short service times, and only if its local queue is non-empty when the quantum
//!   ends (otherwise the quantum is renewed); preempted requests go to the wait queue.

use super::engine::{Ctx, Pick};
use super::SimRequest;
use std::collections::VecDeque;
use synergy_policy::quantum::{quantum_ns, ShortEma};
use synergy_policy::selection::{select, Selected, WorkerQueues};
use synergy_policy::system;
use synergy_policy::timer::QuantumControl;

/// What happens when a running request's quantum ends.
pub enum QuantumEnd {
    /// It is preempted.
    Preempt,
    /// It runs on, for at most this much longer (ns).
    Continue(u64),
}

/// A scheduling policy as the simulator drives it: arrivals, what each idle worker runs next, and quantum ends.
pub trait Policy {
    /// Its name in results.
    fn name(&self) -> String;
    /// Request `r` arrives.
    fn arrive(&mut self, r: SimRequest, ctx: &mut Ctx);
    /// What idle worker `w` runs next, if anything.
    fn next(&mut self, w: usize, ctx: &mut Ctx) -> Option<Pick>;
    /// Request `r`'s quantum on worker `w` ended (default: run on).
    fn quantum_end(&mut self, _w: usize, _r: &SimRequest, _ctx: &mut Ctx) -> QuantumEnd {
        QuantumEnd::Continue(u64::MAX)
    }
    /// Request `r` was preempted on worker `w`.
    fn preempted(&mut self, _w: usize, _r: SimRequest, _ctx: &mut Ctx) {}
    /// Request `r` completed on worker `w`.
    fn completed(&mut self, _w: usize, _r: &SimRequest, _ctx: &mut Ctx) {}
    /// What the core grants of `--idle park` see of worker `w` (`policy::idle::WorkerView`):
    /// (work waits that it would take, some of that work others could take); None where the
    /// policy does not model parking.
    fn idle_view(&self, _w: usize) -> Option<(bool, bool)> {
        None
    }
    /// Preempted requests wait for any worker.
    fn wait_queue_waiting(&self) -> bool {
        false
    }
}

/// A request waiting in a queue, with the time its dispatch completes.
#[derive(Clone, Copy)]
struct Queued {
    req: SimRequest,
    ready_at: u64,
}

/// What an idle worker's selection costs it before the request runs: a resumed request a
/// switch, a stolen one a steal (counted), a new one nothing unless it was preempted before.
pub(crate) fn selected_overhead(
    picked: Selected<SimRequest, SimRequest>,
    stole: bool,
    ctx: &mut Ctx,
) -> (SimRequest, u64) {
    match picked {
        Selected::Resume(r) => (r, ctx.overheads.switch_ns),
        Selected::Request(r) if stole => {
            ctx.steals += 1;
            (r, ctx.overheads.steal_ns)
        }
        Selected::Request(r) => (r, if r.remaining_ns < r.service_ns { ctx.overheads.switch_ns } else { 0 }),
    }
}

fn pick(q: Queued, quantum: Option<u64>, overhead_ns: u64) -> Pick {
    Pick { req: q.req, quantum, overhead_ns, ready_at: q.ready_at }
}

#[derive(Default)]
/// Centralised FCFS: one queue, no preemption.
pub struct CFcfs {
    q: VecDeque<Queued>,
}

impl Policy for CFcfs {
    fn name(&self) -> String {
        "cfcfs".into()
    }
    fn arrive(&mut self, r: SimRequest, ctx: &mut Ctx) {
        let ready_at = ctx.dispatch();
        self.q.push_back(Queued { req: r, ready_at });
    }
    fn next(&mut self, _w: usize, _ctx: &mut Ctx) -> Option<Pick> {
        self.q.pop_front().map(|q| pick(q, None, 0))
    }
    fn idle_view(&self, _w: usize) -> Option<(bool, bool)> {
        Some((!self.q.is_empty(), !self.q.is_empty()))
    }
}

/// Shinjuku and Concord: a central queue through the dispatcher and a fixed quantum; Concord adds
/// JBSQ(`local_bound`) per-worker queues.
pub struct Central {
    name: &'static str,
    q: VecDeque<Queued>,
    local: Vec<VecDeque<Queued>>,
    local_bound: usize,
    quantum_ns: u64,
}

impl Central {
    /// Shinjuku: a central queue and a fixed quantum of `quantum_ns`.
    pub fn shinjuku(quantum_ns: u64) -> Central {
        Central { name: "shinjuku", q: VecDeque::new(), local: Vec::new(), local_bound: 0, quantum_ns }
    }
    /// Concord: Shinjuku's queue with JBSQ(2) per-worker queues for `workers` workers.
    pub fn concord(workers: usize, quantum_ns: u64) -> Central {
        Central {
            name: "concord",
            q: VecDeque::new(),
            local: vec![VecDeque::new(); workers],
            local_bound: system::CONCORD_LOCAL_BOUND,
            quantum_ns,
        }
    }
    fn waiting_for(&self, w: usize) -> bool {
        !self.q.is_empty() || self.local.get(w).is_some_and(|l| !l.is_empty())
    }
    /// JBSQ: move central requests into local queues below the bound (shortest first).
    fn refill(&mut self, ctx: &mut Ctx) {
        if self.local_bound == 0 {
            return;
        }
        while !self.q.is_empty() {
            let (w, len) = self
                .local
                .iter()
                .enumerate()
                .map(|(i, l)| (i, l.len()))
                .min_by_key(|&(i, l)| (l, i))
                .unwrap_or((0, usize::MAX));
            if system::jbsq_room(len, self.local_bound) == 0 {
                break;
            }
            let mut item = self.q.pop_front().expect("non-empty");
            item.ready_at = item.ready_at.max(ctx.dispatch());
            self.local[w].push_back(item);
        }
    }
}

impl Policy for Central {
    fn name(&self) -> String {
        self.name.into()
    }
    fn arrive(&mut self, r: SimRequest, ctx: &mut Ctx) {
        let ready_at = if self.local_bound == 0 { ctx.dispatch() } else { ctx.now };
        self.q.push_back(Queued { req: r, ready_at });
        self.refill(ctx);
    }
    fn next(&mut self, w: usize, ctx: &mut Ctx) -> Option<Pick> {
        let item = if self.local_bound > 0 {
            let i = self.local[w].pop_front();
            self.refill(ctx);
            i
        } else {
            self.q.pop_front()
        }?;
        let overhead = if item.req.remaining_ns < item.req.service_ns { ctx.overheads.switch_ns } else { 0 };
        Some(pick(item, Some(self.quantum_ns), overhead))
    }
    fn quantum_end(&mut self, w: usize, _r: &SimRequest, _ctx: &mut Ctx) -> QuantumEnd {
        if self.waiting_for(w) {
            QuantumEnd::Preempt
        } else {
            QuantumEnd::Continue(self.quantum_ns)
        }
    }
    fn preempted(&mut self, _w: usize, r: SimRequest, ctx: &mut Ctx) {
        let ready_at = if self.local_bound == 0 { ctx.dispatch() } else { ctx.now };
        self.q.push_back(Queued { req: r, ready_at });
        self.refill(ctx);
    }
}

/// Perséphone's DARC: reserved cores for short requests.
pub struct Darc {
    short: VecDeque<Queued>,
    long: VecDeque<Queued>,
    reserved: usize,
}

impl Darc {
    /// DARC with `reserved` workers kept for short requests.
    pub fn new(reserved: usize) -> Darc {
        Darc { short: VecDeque::new(), long: VecDeque::new(), reserved }
    }
}

impl Policy for Darc {
    fn name(&self) -> String {
        "darc".into()
    }
    fn arrive(&mut self, r: SimRequest, ctx: &mut Ctx) {
        let ready_at = ctx.dispatch();
        if r.long {
            self.long.push_back(Queued { req: r, ready_at })
        } else {
            self.short.push_back(Queued { req: r, ready_at })
        }
    }
    fn next(&mut self, w: usize, _ctx: &mut Ctx) -> Option<Pick> {
        if let Some(q) = self.short.pop_front() {
            return Some(pick(q, None, 0));
        }
        if system::darc_runs_long(w, self.reserved) {
            return self.long.pop_front().map(|q| pick(q, None, 0));
        }
        None
    }
}

/// Which of Synergy's components are on (thesis §6.3.1's ablation; all on is Synergy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Components {
    /// ws: idle workers steal from peers above STEAL_THRESHOLD.
    pub work_stealing: bool,
    /// wq: preempted requests go to the global wait queue, taken only when the local queue is
    /// empty; without it they go to the back of their worker's own queue.
    pub wait_queue: bool,
    /// cp: preempt only when the worker's queue is non-empty; without it at every quantum end.
    pub conditional: bool,
    /// qa: quantum = QUANTUM_FACTOR × EMA of short service times; without it a fixed 5 µs.
    pub adaptive_quantum: bool,
}

impl Components {
    /// Every component (Synergy itself).
    pub const ALL: Components =
        Components { work_stealing: true, wait_queue: true, conditional: true, adaptive_quantum: true };

    /// The ablation's configurations in the thesis's order, by name.
    pub fn ablation() -> [(&'static str, Components); 5] {
        let c =
            |ws, wq, cp, qa| Components { work_stealing: ws, wait_queue: wq, conditional: cp, adaptive_quantum: qa };
        [
            ("rss-ci", c(false, false, false, false)),
            ("rss-ci+ws", c(true, false, false, false)),
            ("rss-ci+ws+wq", c(true, true, false, false)),
            ("rss-ci+ws+wq+cp", c(true, true, true, false)),
            ("rss-ci+ws+wq+cp+qa", Components::ALL),
        ]
    }
}

/// The fixed quantum of the ablation's configurations without `adaptive_quantum`.
pub const FIXED_QUANTUM_NS: u64 = 5_000;

/// Synergy (thesis ch. 5), built on the runtime's own policy code (`crate::policy`): the
/// request-selection order (`selection::select`, through the `WorkerQueues` trait the real
/// worker also implements), the short-request EMA and quantum (`quantum`), and the wait-queue
/// congestion control (`timer::QuantumControl`, THRESH_WQD / CONGESTED_QUANTUM_FACTOR).
pub struct Synergy {
    name: String,
    parts: Components,
    local: Vec<VecDeque<SimRequest>>,
    wait: VecDeque<SimRequest>,
    /// Wait-queue positions (pushes and pops so far), as the real ring's indexes.
    wait_produced: u64,
    wait_consumed: u64,
    ema: Vec<ShortEma>,
    control: QuantumControl,
    check_wait_queue: bool,
    steal_threshold: usize,
}

/// The simulator's queues seen through the runtime's `WorkerQueues` interface; components that
/// are off make the corresponding queue look empty.
struct SimQueues<'a> {
    me: usize,
    s: &'a mut Synergy,
    stole: bool,
}

impl WorkerQueues for SimQueues<'_> {
    type Request = SimRequest;
    type Thread = SimRequest;

    fn pop_local(&mut self) -> Option<SimRequest> {
        self.s.local[self.me].pop_front()
    }
    fn pop_wait(&mut self) -> Option<SimRequest> {
        let r = self.s.wait.pop_front()?;
        self.s.wait_consumed += 1;
        Some(r)
    }
    fn peer_len(&self, victim: usize) -> usize {
        if self.s.parts.work_stealing {
            self.s.local[victim].len()
        } else {
            0
        }
    }
    fn steal(&mut self, victim: usize, count: usize) -> Option<SimRequest> {
        // The oldest `count` requests move; the first runs, the rest join our queue.
        let mut taken: VecDeque<SimRequest> = (0..count).filter_map(|_| self.s.local[victim].pop_front()).collect();
        let first = taken.pop_front()?;
        self.s.local[self.me].extend(taken);
        self.stole = true;
        Some(first)
    }
}

impl Synergy {
    /// Synergy with every component.
    pub fn new(workers: usize, quantum_factor: f64, steal_threshold: usize, initial_ema_ns: f64) -> Synergy {
        Synergy::with_components("synergy", Components::ALL, workers, quantum_factor, steal_threshold, initial_ema_ns)
    }

    /// Synergy with only `parts`, named `name` (the ablation).
    pub fn with_components(
        name: &str,
        parts: Components,
        workers: usize,
        quantum_factor: f64,
        steal_threshold: usize,
        initial_ema_ns: f64,
    ) -> Synergy {
        Synergy {
            name: name.into(),
            parts,
            local: vec![VecDeque::new(); workers],
            wait: VecDeque::new(),
            wait_produced: 0,
            wait_consumed: 0,
            ema: vec![ShortEma::new(initial_ema_ns as u64); workers],
            control: QuantumControl::new(quantum_factor, quantum_factor, 0, 0, 0),
            check_wait_queue: false,
            steal_threshold,
        }
    }

    /// Turns on wait-queue congestion detection: every `thresh_wqd_ns` without the wait queue's
    /// consumer catching up, `check_wait_queue` is raised and the quantum factor becomes
    /// `congested_factor` (0 = never congested, the thesis's default).
    pub fn with_congestion(mut self, quantum_factor: f64, congested_factor: f64, thresh_wqd_ns: u64) -> Synergy {
        self.control = QuantumControl::new(quantum_factor, congested_factor, thresh_wqd_ns, 0, 0);
        self
    }

    fn quantum(&self, w: usize) -> u64 {
        if !self.parts.adaptive_quantum {
            return FIXED_QUANTUM_NS;
        }
        quantum_ns(self.ema[w].get(), self.control.factor())
    }

    fn tick(&mut self, now: u64) {
        if let Some(change) = self.control.tick(now, self.wait_produced, self.wait_consumed) {
            self.check_wait_queue = change.check_wait_queue;
        }
    }
}

impl Policy for Synergy {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn arrive(&mut self, r: SimRequest, ctx: &mut Ctx) {
        self.tick(ctx.now);
        self.local[r.home].push_back(r);
    }
    fn next(&mut self, w: usize, ctx: &mut Ctx) -> Option<Pick> {
        self.tick(ctx.now);
        let (workers, threshold, check) = (self.local.len(), self.steal_threshold, self.check_wait_queue);
        let mut q = SimQueues { me: w, s: self, stole: false };
        let picked = select(&mut q, check, w, workers, threshold)?;
        let stole = q.stole;
        let (req, overhead) = selected_overhead(picked, stole, ctx);
        let quantum = req.long.then(|| self.quantum(w));
        Some(Pick { req, quantum, overhead_ns: overhead, ready_at: ctx.now })
    }
    fn quantum_end(&mut self, w: usize, _r: &SimRequest, ctx: &mut Ctx) -> QuantumEnd {
        self.tick(ctx.now);
        if self.parts.conditional && self.local[w].is_empty() {
            QuantumEnd::Continue(self.quantum(w))
        } else {
            QuantumEnd::Preempt
        }
    }
    fn preempted(&mut self, w: usize, r: SimRequest, _ctx: &mut Ctx) {
        if self.parts.wait_queue {
            self.wait.push_back(r);
            self.wait_produced += 1;
        } else {
            self.local[w].push_back(r);
        }
    }
    fn completed(&mut self, w: usize, r: &SimRequest, _ctx: &mut Ctx) {
        if !r.long {
            self.ema[w].update(r.service_ns);
        }
    }
    fn idle_view(&self, w: usize) -> Option<(bool, bool)> {
        let local = &self.local[w];
        Some((!local.is_empty(), self.parts.work_stealing && local.len() > self.steal_threshold))
    }
    fn wait_queue_waiting(&self) -> bool {
        !self.wait.is_empty()
    }
}
