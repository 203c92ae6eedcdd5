//! The event loop of the sessions-credits-cores model (see `mod.rs` for what is modelled).
//! Deterministic: events at the same time run in the order they were scheduled.

use super::{Allocator, Outcome, Setup, Window};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use synergy_eval::report::percentile;
use synergy_eval::rng::SplitMix64;
use synergy_policy::coresync::{park_gate, CreditState, Hold, ParkGate};
use synergy_policy::idle::{Grants, WorkerView};
use synergy_policy::overload::{session_active, CreditPool};

/// The cores' clock: parking, grants and the credit controller look once per tick.
const TICK_NS: u64 = 1_000;

#[derive(Debug, Clone, Copy)]
struct Req {
    session: u32,
    created: u64,
    sent: u64,
    at_server: u64,
    service: u64,
}

#[derive(Debug)]
enum Ev {
    Arrival,
    AtServer(Req),
    Done(usize),
    Reply { req: Req, ok: bool, grant: u32, left_server: u64 },
    Tick,
    Woken(usize),
}

struct Scheduled {
    t: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.t, self.seq) == (other.t, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed: `BinaryHeap` pops the earliest event, ties in scheduling order.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.t, other.seq).cmp(&(self.t, self.seq))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Core {
    Busy,
    /// Allocated and polling since `since`. `c_sub`: credits this core withdrew to park
    /// (CoreSync, Algorithm 1); `vetoed`: a drained session already kept it from parking this
    /// idle spell (for the count).
    Idle {
        since: u64,
        withdrew: bool,
        c_sub: f64,
        vetoed: bool,
    },
    Parked {
        c_sub: f64,
    },
    Waking {
        c_sub: f64,
    },
}

impl Core {
    fn idle(now: u64) -> Core {
        Core::Idle { since: now, withdrew: false, c_sub: 0.0, vetoed: false }
    }
}

#[derive(Default)]
struct WindowAcc {
    latency: Vec<u64>,
    server: Vec<u64>,
    alloc_samples: u64,
    ticks: u64,
}

struct Sim<'a> {
    setup: &'a Setup,
    end: u64,
    /// Width of the result windows: the timeline's, or one window for the whole run.
    window_ns: u64,
    phase_ends: Vec<u64>,
    rng: SplitMix64,
    heap: BinaryHeap<Scheduled>,
    seq: u64,
    now: u64,
    // Clients.
    window: Vec<u32>,
    outstanding: Vec<u32>,
    client_queue: Vec<VecDeque<u64>>,
    // Server.
    queue: VecDeque<Req>,
    cores: Vec<Core>,
    serving: Vec<Option<Req>>,
    granted: Vec<u32>,
    in_server: Vec<u32>,
    last_seen: Vec<u64>,
    pool: Option<CreditPool>,
    grant: u32,
    active: usize,
    period_max_delay: Option<u64>,
    /// When the credit controller and the utilisation-range allocator look next.
    next_control_ns: u64,
    next_util_ns: u64,
    grants: Grants,
    views: Vec<WorkerView>,
    // Core accounting: counts, and their integrals over all time and over the measurement.
    alloc: usize,
    busy: usize,
    last_acc: u64,
    raw_alloc: f64,
    raw_busy: f64,
    util_mark: (f64, f64),
    meas_alloc: f64,
    meas_busy: f64,
    // Results.
    windows: Vec<WindowAcc>,
    client_wait: Vec<u64>,
    end_to_end: Vec<u64>,
    o: Outcome,
}

/// Runs `setup` to the end of its last phase.
pub fn run(setup: &Setup) -> Outcome {
    assert!(setup.cores >= 1 && setup.sessions >= 1, "at least one core and one session");
    let end = setup.end_ns();
    let window_ns = if setup.timeline_ns == 0 { end.max(1) + 1 } else { setup.timeline_ns };
    let initial = setup.sessions as f64;
    let pool = setup.credits.map(|c| CreditPool::new(c.params, initial));
    let grant = pool.as_ref().map_or(u32::MAX, |p| p.per_session(setup.sessions));
    let mut phase_ends = Vec::new();
    let mut t = 0;
    for p in &setup.phases {
        t += p.duration_ns;
        phase_ends.push(t);
    }
    let mut sim = Sim {
        setup,
        end,
        window_ns,
        phase_ends,
        rng: SplitMix64::new(setup.seed),
        heap: BinaryHeap::new(),
        seq: 0,
        now: 0,
        window: vec![grant; setup.sessions],
        outstanding: vec![0; setup.sessions],
        client_queue: vec![VecDeque::new(); setup.sessions],
        queue: VecDeque::new(),
        cores: vec![Core::idle(0); setup.cores],
        serving: vec![None; setup.cores],
        granted: vec![grant; setup.sessions],
        in_server: vec![0; setup.sessions],
        // Sessions are established before the run: all active.
        last_seen: vec![0; setup.sessions],
        pool,
        grant,
        active: setup.sessions,
        period_max_delay: None,
        next_control_ns: setup.credits.map_or(0, |c| c.period_ns.max(TICK_NS)),
        next_util_ns: match setup.allocator {
            Allocator::UtilRange { window_ns, .. } => window_ns.max(TICK_NS),
            _ => 0,
        },
        grants: Grants::new(setup.cores),
        views: vec![WorkerView::default(); setup.cores],
        alloc: setup.cores,
        busy: 0,
        last_acc: 0,
        raw_alloc: 0.0,
        raw_busy: 0.0,
        util_mark: (0.0, 0.0),
        meas_alloc: 0.0,
        meas_busy: 0.0,
        windows: (0..end / window_ns + 1).map(|_| WindowAcc::default()).collect(),
        client_wait: Vec::new(),
        end_to_end: Vec::new(),
        o: Outcome { allocator: setup.allocator.name(), ..Outcome::default() },
    };
    if let Some(t) = sim.next_arrival(0) {
        sim.schedule(t, Ev::Arrival);
    }
    sim.schedule(TICK_NS, Ev::Tick);
    while let Some(Scheduled { t, ev, .. }) = sim.heap.pop() {
        if t > end {
            break;
        }
        sim.now = t;
        sim.handle(ev);
    }
    sim.now = end;
    sim.account();
    sim.finish()
}

impl Sim<'_> {
    fn schedule(&mut self, t: u64, ev: Ev) {
        self.heap.push(Scheduled { t, seq: self.seq, ev });
        self.seq += 1;
    }

    fn measuring(&self, t: u64) -> bool {
        t >= self.setup.warmup_ns && t <= self.end
    }

    fn rps_at(&self, t: u64) -> f64 {
        let i = self.phase_ends.partition_point(|&e| e <= t);
        self.setup.phases.get(i).map_or(0.0, |p| p.rps)
    }

    /// The next Poisson arrival after `from`: a gap drawn at the phase's rate; a gap that crosses
    /// the phase's end starts over there at the next phase's rate (arrivals are memoryless).
    fn next_arrival(&mut self, from: u64) -> Option<u64> {
        let mut t = from;
        loop {
            let i = self.phase_ends.partition_point(|&e| e <= t);
            let phase = self.setup.phases.get(i)?;
            let phase_end = self.phase_ends[i];
            if phase.rps > 0.0 {
                let next = t + self.rng.exp(1e9 / phase.rps) as u64;
                if next < phase_end {
                    return Some(next.max(t + 1));
                }
            }
            t = phase_end;
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrival => {
                let s = (self.rng.next_u64() % self.setup.sessions as u64) as usize;
                self.client_queue[s].push_back(self.now);
                self.client_send(s);
                if let Some(t) = self.next_arrival(self.now) {
                    self.schedule(t, Ev::Arrival);
                }
            }
            Ev::AtServer(mut req) => {
                req.at_server = self.now;
                let s = req.session as usize;
                self.in_server[s] += 1;
                self.last_seen[s] = self.now;
                self.queue.push_back(req);
                self.dispatch();
            }
            Ev::Done(c) => {
                let req = self.serving[c].take().expect("a busy core serves a request");
                self.account();
                self.busy -= 1;
                self.cores[c] = Core::idle(self.now);
                self.reply(req, true);
                self.dispatch();
            }
            Ev::Reply { req, ok, grant, left_server } => self.client_reply(req, ok, grant, left_server),
            Ev::Woken(c) => {
                let Core::Waking { c_sub } = self.cores[c] else { unreachable!("only a waking core wakes") };
                if let Some(pool) = &mut self.pool {
                    pool.restore(c_sub);
                    self.grant = pool.per_session(self.active);
                }
                self.cores[c] = Core::idle(self.now);
                self.dispatch();
            }
            Ev::Tick => {
                self.tick();
                if self.now + TICK_NS <= self.end {
                    self.schedule(self.now + TICK_NS, Ev::Tick);
                }
            }
        }
    }

    /// Sends what the session's credits allow.
    fn client_send(&mut self, s: usize) {
        while self.outstanding[s] < self.window[s] {
            let Some(created) = self.client_queue[s].pop_front() else { break };
            self.outstanding[s] += 1;
            self.o.sent_total += 1;
            let service = self.setup.service.draw(&mut self.rng);
            let req = Req { session: s as u32, created, sent: self.now, at_server: 0, service };
            if self.measuring(self.now) && self.setup.credits.is_some() {
                self.client_wait.push(self.now - created);
            }
            self.schedule(self.now + self.setup.one_way_ns, Ev::AtServer(req));
        }
    }

    fn client_reply(&mut self, req: Req, ok: bool, grant: u32, left_server: u64) {
        let s = req.session as usize;
        self.outstanding[s] -= 1;
        self.o.replies_total += 1;
        self.window[s] = grant;
        // Replies count by when they arrive: under overload the clients' backlog grows, and
        // counting by creation time would leave out the old requests served in the window.
        if self.measuring(self.now) {
            if ok {
                self.o.completed += 1;
                let i = (self.now / self.window_ns) as usize;
                let w = &mut self.windows[i];
                w.latency.push(self.now - req.sent);
                w.server.push(left_server - req.at_server);
                if self.setup.credits.is_some() {
                    self.end_to_end.push(self.now - req.created);
                }
            } else {
                self.o.rejected += 1;
            }
        }
        self.client_send(s);
    }

    /// The server answers `req` (a reject when not `ok`) with the session's current grant.
    fn reply(&mut self, req: Req, ok: bool) {
        let s = req.session as usize;
        self.in_server[s] -= 1;
        self.granted[s] = self.grant;
        let ev = Ev::Reply { req, ok, grant: self.grant, left_server: self.now };
        self.schedule(self.now + self.setup.one_way_ns, ev);
    }

    /// Idle allocated cores take queued requests, in core order; the AQM rejects the stale ones.
    fn dispatch(&mut self) {
        while !self.queue.is_empty() {
            let Some(c) = self.cores.iter().position(|c| matches!(c, Core::Idle { .. })) else { return };
            let req = self.queue.pop_front().expect("checked non-empty");
            let waited = self.now - req.at_server;
            if self.setup.credits.is_some_and(|cr| waited > cr.params.drop_delay_ns) {
                self.reply(req, false);
                self.cores[c] = Core::idle(self.now);
                continue;
            }
            self.period_max_delay = Some(self.period_max_delay.map_or(waited, |d| d.max(waited)));
            self.account();
            self.busy += 1;
            self.cores[c] = Core::Busy;
            self.serving[c] = Some(req);
            self.schedule(self.now + req.service, Ev::Done(c));
        }
    }

    /// Adds the time since the last change to the core integrals.
    fn account(&mut self) {
        let (from, to) = (self.last_acc, self.now);
        if to > from {
            let (alloc, busy) = (self.alloc as f64, self.busy as f64);
            self.raw_alloc += (to - from) as f64 * alloc;
            self.raw_busy += (to - from) as f64 * busy;
            let (lo, hi) = (from.max(self.setup.warmup_ns), to.min(self.end));
            if hi > lo {
                self.meas_alloc += (hi - lo) as f64 * alloc;
                self.meas_busy += (hi - lo) as f64 * busy;
            }
        }
        self.last_acc = to;
    }

    fn park(&mut self, c: usize, c_sub: f64) {
        self.account();
        self.alloc -= 1;
        self.cores[c] = Core::Parked { c_sub };
        self.o.parks += 1;
    }

    fn wake(&mut self, c: usize) {
        let Core::Parked { c_sub } = self.cores[c] else { return };
        self.account();
        self.alloc += 1;
        self.cores[c] = Core::Waking { c_sub };
        self.o.wakeups += 1;
        self.schedule(self.now + self.setup.wake_ns, Ev::Woken(c));
    }

    fn tick(&mut self) {
        let now = self.now;
        if let Some(i) = now.checked_div(self.setup.timeline_ns) {
            let w = &mut self.windows[i as usize];
            w.alloc_samples += self.alloc as u64;
            w.ticks += 1;
        }
        if let (Some(cr), Some(pool)) = (self.setup.credits, &mut self.pool) {
            if now >= self.next_control_ns {
                self.next_control_ns = now + cr.period_ns.max(TICK_NS);
                let head = self.queue.front().map(|r| now - r.at_server);
                let d_m = match (self.period_max_delay.take(), head) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                self.active = self.last_seen.iter().filter(|&&t| session_active(t, now)).count();
                pool.update(d_m, self.active);
                self.grant = pool.per_session(self.active);
            }
        }
        match self.setup.allocator {
            Allocator::Static => {}
            Allocator::Shenango | Allocator::CoreSync { .. } => {
                self.park_idle_cores();
                for (v, c) in self.views.iter_mut().zip(&self.cores) {
                    *v = WorkerView { parked: matches!(c, Core::Parked { .. }), waiting: false, shareable: false };
                }
                if let Some(w) = self.grants.tick(now, &self.views, !self.queue.is_empty(), self.setup.wake_delay_ns) {
                    self.wake(w);
                }
            }
            Allocator::UtilRange { lo, hi, window_ns } => {
                if now >= self.next_util_ns {
                    self.next_util_ns = now + window_ns.max(TICK_NS);
                    self.account();
                    let (a0, b0) = self.util_mark;
                    let (da, db) = (self.raw_alloc - a0, self.raw_busy - b0);
                    self.util_mark = (self.raw_alloc, self.raw_busy);
                    let util = if da > 0.0 { db / da } else { 0.0 };
                    if util > hi {
                        if let Some(c) = self.cores.iter().position(|c| matches!(c, Core::Parked { .. })) {
                            self.wake(c);
                        }
                    } else if util < lo && self.alloc > 1 {
                        if let Some(c) = self.cores.iter().rposition(|c| matches!(c, Core::Idle { .. })) {
                            self.park(c, 0.0);
                        }
                    }
                }
            }
        }
    }

    /// Shenango's and CoreSync's deallocation: allocated cores idle for POLL_PERIOD park, one
    /// core stays allocated; CoreSync asks Algorithm 1's gate first.
    fn park_idle_cores(&mut self) {
        let poll = self.setup.poll_period_ns;
        let mut state: Option<CreditState> = None;
        for c in 0..self.cores.len() {
            let Core::Idle { since, withdrew, c_sub, vetoed } = self.cores[c] else { continue };
            if self.now.saturating_sub(since) < poll || self.alloc <= 1 {
                continue;
            }
            let Allocator::CoreSync { r } = self.setup.allocator else {
                self.park(c, 0.0);
                continue;
            };
            let st = *state.get_or_insert_with(|| {
                CreditState::tally(self.granted.iter().copied().zip(self.in_server.iter().copied()))
            });
            let another = self
                .cores
                .iter()
                .enumerate()
                .any(|(o, core)| o != c && matches!(core, Core::Idle { withdrew: true, .. }));
            match park_gate(&st, self.alloc, another, withdrew, r) {
                ParkGate::Park => self.park(c, c_sub),
                ParkGate::Withdraw(credits) => {
                    let taken = self.pool.as_mut().map_or(0.0, |p| p.withdraw(credits, self.active));
                    if let Some(p) = &self.pool {
                        self.grant = p.per_session(self.active);
                    }
                    self.o.withdrawals += 1;
                    self.o.withdrawn_credits += taken;
                    self.cores[c] = Core::Idle { since, withdrew: true, c_sub: taken, vetoed };
                }
                ParkGate::KeepPolling(Hold::Drained) if !vetoed => {
                    self.o.drained_vetoes += 1;
                    self.cores[c] = Core::Idle { since, withdrew, c_sub, vetoed: true };
                }
                ParkGate::KeepPolling(_) => {}
            }
        }
    }

    fn finish(mut self) -> Outcome {
        let span = self.end.saturating_sub(self.setup.warmup_ns).max(1) as f64;
        let mut o = std::mem::take(&mut self.o);
        o.offered_rps = self.offered_rps(self.setup.warmup_ns, self.end);
        o.goodput_rps = o.completed as f64 * 1e9 / span;
        o.rejected_rps = o.rejected as f64 * 1e9 / span;
        let mut latency: Vec<u64> = self.windows.iter().flat_map(|w| w.latency.iter().copied()).collect();
        let mut server: Vec<u64> = self.windows.iter().flat_map(|w| w.server.iter().copied()).collect();
        latency.sort_unstable();
        server.sort_unstable();
        o.p50_ns = percentile(&latency, 50.0);
        o.p99_ns = percentile(&latency, 99.0);
        o.p999_ns = percentile(&latency, 99.9);
        o.server_p99_ns = percentile(&server, 99.0);
        o.server_p999_ns = percentile(&server, 99.9);
        self.client_wait.sort_unstable();
        self.end_to_end.sort_unstable();
        o.client_wait_p99_ns = percentile(&self.client_wait, 99.0);
        o.end_to_end_p99_ns = if self.setup.credits.is_some() { percentile(&self.end_to_end, 99.0) } else { o.p99_ns };
        o.cores_in_use = self.meas_alloc / span;
        o.utilisation = o.cores_in_use / self.setup.cores as f64;
        o.efficiency = if self.meas_alloc > 0.0 { self.meas_busy / self.meas_alloc } else { 0.0 };
        o.final_credits = self.pool.as_ref().map_or(0.0, |p| p.total());
        o.waiting_at_clients = self.client_queue.iter().map(VecDeque::len).sum();
        o.outstanding_at_end = self.outstanding.iter().map(|&n| u64::from(n)).sum();
        if self.setup.timeline_ns > 0 {
            let windows = std::mem::take(&mut self.windows);
            o.timeline = windows
                .into_iter()
                .enumerate()
                .map(|(i, mut w)| {
                    let start_ns = i as u64 * self.window_ns;
                    w.latency.sort_unstable();
                    w.server.sort_unstable();
                    Window {
                        start_ns,
                        offered_rps: self.rps_at(start_ns),
                        completed: w.latency.len(),
                        p99_ns: percentile(&w.latency, 99.0),
                        p999_ns: percentile(&w.latency, 99.9),
                        server_p999_ns: percentile(&w.server, 99.9),
                        cores_in_use: if w.ticks == 0 { 0.0 } else { w.alloc_samples as f64 / w.ticks as f64 },
                    }
                })
                .filter(|w| w.start_ns < self.end)
                .collect();
        }
        o
    }

    /// The mean offered rate over `[from, to]`.
    fn offered_rps(&self, from: u64, to: u64) -> f64 {
        let mut start = 0;
        let mut area = 0.0;
        for (p, &e) in self.setup.phases.iter().zip(&self.phase_ends) {
            let (lo, hi) = (start.max(from), e.min(to));
            if hi > lo {
                area += p.rps * (hi - lo) as f64;
            }
            start = e;
        }
        area / to.saturating_sub(from).max(1) as f64
    }
}
