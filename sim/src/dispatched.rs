//! Shinjuku as Shinjuku (issue 19): dispatcher threads that own blocks of workers, hand each
//! idle worker one request through its mailbox, and preempt by timestamp, every decision taken by
//! `synergy_policy::shinjuku` (the code the runtime's dispatcher thread runs), with the dispatcher's
//! own time charged.
//!
//! Each dispatcher is a serial resource: a hand-off or a preemption waits until the dispatcher is
//! free, then occupies it for its cost. So a dispatcher caps throughput at `1 / dispatch_ns`, and
//! a preemption decided while the dispatcher is busy lands late. A request keeps running until the
//! interrupt lands (it may finish first). A quantum that ends with nothing waiting is re-examined
//! every `recheck_ns` (the real dispatcher looks on every loop; the simulation samples).
//!
//! The costs' sources (`ShinjukuCosts::PAPER`), for the paper's 2.3 GHz Xeon E5-2658:
//! * `dispatch_ns` 91: three cache-line messages per request (from the networker, to the worker,
//!   the worker's "done"), each about 70 cycles of dispatcher work (§3.5).
//! * `mailbox_ns` 46: half the 211-cycle round trip of a cache-line message (§3.5).
//! * `preempt_send_ns` 130: the sender's side of Shinjuku's posted IPI, 298 cycles (Table 1).
//! * `ipi_latency_ns` 867: the posted IPI's total latency, 1,993 cycles (Table 1).
//! * The worker's side of a preemption (1,212 cycles ≈ 527 ns receive, Table 1, plus a ~100-cycle
//!   context switch, Table 2) is the engine's `Overheads::preempt_ns` (`PAPER_PREEMPT_NS`).
//! * `worker_request_ns` 0: what a worker spends per request besides its service time (context
//!   set-up, the reply). Only Fig. 7b sets it, from its own slope (`shinjuku::FIG7B_WORKER_NS`).

use super::engine::{Ctx, Pick};
use super::policy::{Policy, QuantumEnd};
use super::SimRequest;
use serde::Serialize;
use synergy_policy::shinjuku::{dispatcher_of, preempt_due, Queues, ShinjukuPolicy};

/// Dispatcher-side and mailbox costs, ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShinjukuCosts {
    /// The dispatcher's cost per request it hands out (ns).
    pub dispatch_ns: u64,
    /// A mailbox message between dispatcher and worker (ns).
    pub mailbox_ns: u64,
    /// The dispatcher's cost to send a preemption (ns).
    pub preempt_send_ns: u64,
    /// From the send to the worker taking the interrupt (ns).
    pub ipi_latency_ns: u64,
    /// The worker's own cost per request besides its service (ns).
    pub worker_request_ns: u64,
    /// How often the dispatcher looks for expired quanta (ns).
    pub recheck_ns: u64,
}

impl ShinjukuCosts {
    /// The Shinjuku paper's numbers (Tables 1 and 2).
    pub const PAPER: ShinjukuCosts = ShinjukuCosts {
        dispatch_ns: 91,
        mailbox_ns: 46,
        preempt_send_ns: 130,
        ipi_latency_ns: 867,
        worker_request_ns: 0,
        recheck_ns: 1_000,
    };
    /// No costs at all: the policy alone, for checks by hand.
    pub const ZERO: ShinjukuCosts = ShinjukuCosts {
        dispatch_ns: 0,
        mailbox_ns: 0,
        preempt_send_ns: 0,
        ipi_latency_ns: 0,
        worker_request_ns: 0,
        recheck_ns: 1_000,
    };
}

/// The worker's side of one preemption: receive 527 ns + switch 43 ns (Tables 1 and 2).
pub const PAPER_PREEMPT_NS: u64 = 570;

struct Dispatcher {
    queues: Queues<SimRequest>,
    /// The dispatcher is busy until then.
    free_at: u64,
}

impl Dispatcher {
    /// Occupies the dispatcher for `cost` from `now` or when it is next free; returns when the
    /// action began.
    fn occupy(&mut self, now: u64, cost: u64) -> u64 {
        let start = now.max(self.free_at);
        self.free_at = start + cost;
        start
    }
}

/// Shinjuku with its dispatcher modelled: each action costs dispatcher time, preemptions travel as IPIs, preempted requests go back through the dispatcher.
pub struct Dispatched {
    name: String,
    policy: ShinjukuPolicy,
    costs: ShinjukuCosts,
    workers: usize,
    dispatchers: Vec<Dispatcher>,
    /// When each worker's current request began running (the dispatcher's timestamp).
    started: Vec<u64>,
    /// An interrupt is on its way to the worker: preempt at the next quantum end.
    pending: Vec<bool>,
    /// What a preempted worker runs next (chosen when it was preempted).
    reserved: Vec<Option<SimRequest>>,
}

impl Dispatched {
    /// A Shinjuku named `name` with `policy`, `costs` and `workers` workers.
    pub fn new(name: &str, policy: ShinjukuPolicy, costs: ShinjukuCosts, workers: usize) -> Dispatched {
        policy.validate().expect("a valid Shinjuku policy");
        let dispatchers = (0..policy.dispatchers).map(|_| Dispatcher { queues: policy.queues(), free_at: 0 }).collect();
        Dispatched {
            name: name.into(),
            policy,
            costs,
            workers,
            dispatchers,
            started: vec![0; workers],
            pending: vec![false; workers],
            reserved: vec![None; workers],
        }
    }

    fn dispatcher(&self, w: usize) -> usize {
        dispatcher_of(w, self.policy.dispatchers, self.workers)
    }
}

impl Policy for Dispatched {
    fn name(&self) -> String {
        self.name.clone()
    }

    /// The networking subsystem steers by flow (RSS) to one dispatcher.
    fn arrive(&mut self, r: SimRequest, _ctx: &mut Ctx) {
        let d = r.flow as usize % self.dispatchers.len();
        self.dispatchers[d].queues.push_new(r, r.class, r.arrival_ns);
    }

    fn next(&mut self, w: usize, ctx: &mut Ctx) -> Option<Pick> {
        let costs = self.costs;
        let d = self.dispatcher(w);
        let disp = &mut self.dispatchers[d];
        let start = ctx.now.max(disp.free_at);
        let req = match self.reserved[w].take() {
            Some(r) => r,
            None => disp.queues.pop(start)?,
        };
        disp.occupy(ctx.now, costs.dispatch_ns);
        let ready_at = disp.free_at + costs.mailbox_ns;
        let resumed = req.remaining_ns < req.service_ns;
        let overhead = if resumed { ctx.overheads.switch_ns } else { costs.worker_request_ns };
        self.started[w] = ready_at + overhead;
        Some(Pick { req, quantum: Some(self.policy.quantum_ns), overhead_ns: overhead, ready_at })
    }

    fn quantum_end(&mut self, w: usize, _r: &SimRequest, ctx: &mut Ctx) -> QuantumEnd {
        if std::mem::take(&mut self.pending[w]) {
            return QuantumEnd::Preempt; // the interrupt landed
        }
        let (quantum, recheck) = (self.policy.quantum_ns, self.costs.recheck_ns);
        let d = self.dispatcher(w);
        let queued = !self.dispatchers[d].queues.is_empty();
        if !preempt_due(ctx.now, self.started[w], quantum, queued) {
            let until_due = (self.started[w] + quantum).saturating_sub(ctx.now);
            return QuantumEnd::Continue(if queued && until_due > 0 { until_due } else { recheck });
        }
        let sent = self.dispatchers[d].occupy(ctx.now, self.costs.preempt_send_ns);
        let lands = sent + self.costs.ipi_latency_ns;
        if lands > ctx.now {
            self.pending[w] = true;
            QuantumEnd::Continue(lands - ctx.now)
        } else {
            QuantumEnd::Preempt
        }
    }

    fn preempted(&mut self, w: usize, r: SimRequest, ctx: &mut Ctx) {
        let d = self.dispatcher(w);
        let next = self.dispatchers[d].queues.preempted(r, r.class, r.arrival_ns, ctx.now);
        self.reserved[w] = Some(next);
    }

    fn completed(&mut self, w: usize, _r: &SimRequest, _ctx: &mut Ctx) {
        self.pending[w] = false;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{engine, Overheads};
    use super::*;

    fn req(id: usize, class: usize, arrival_ns: u64, service_ns: u64) -> SimRequest {
        SimRequest { id, class, arrival_ns, service_ns, remaining_ns: service_ns, long: class > 0, home: 0, flow: 0 }
    }

    /// One worker, a 100 µs request then a 1 µs one at 2 µs, 5 µs quantum, no costs: the long
    /// request is preempted at 5 µs (the short one waits), the short one runs 5-6 µs, the long one
    /// resumes and ends at 101 µs. With a dispatcher that is busy, the interrupt lands later.
    #[test]
    fn timestamp_preemption_with_and_without_dispatcher_costs() {
        let reqs = [req(0, 1, 0, 100_000), req(1, 0, 2_000, 1_000)];
        let mut p = Dispatched::new("sq", ShinjukuPolicy::sq_tail(5_000), ShinjukuCosts::ZERO, 1);
        let r = engine::run(&mut p, &reqs, 1, Overheads::ZERO, &[1_000, 100_000]);
        assert_eq!((r.completed, r.preemptions), (2, 1));
        assert_eq!(r.classes[0].p50_ns, 4_000, "the short one: waits 2-5 µs, runs 5-6 µs");
        assert_eq!(r.classes[1].p50_ns, 101_000);

        let costs = ShinjukuCosts { ipi_latency_ns: 800, preempt_send_ns: 100, ..ShinjukuCosts::ZERO };
        let mut p = Dispatched::new("sq", ShinjukuPolicy::sq_tail(5_000), costs, 1);
        let r = engine::run(&mut p, &reqs, 1, Overheads::ZERO, &[1_000, 100_000]);
        assert_eq!(r.classes[0].p50_ns, 4_800, "decided at 5 µs, lands 0.8 µs later");
        assert_eq!(r.classes[1].p50_ns, 101_000);
    }

    /// A quantum that ends with nothing waiting is extended; the short request that arrives later
    /// preempts at the next look (every `recheck_ns`), not a whole quantum later.
    #[test]
    fn nothing_waiting_means_no_preemption_until_something_arrives() {
        let reqs = [req(0, 1, 0, 100_000), req(1, 0, 7_500, 1_000)];
        let mut p = Dispatched::new("sq", ShinjukuPolicy::sq_tail(5_000), ShinjukuCosts::ZERO, 1);
        let r = engine::run(&mut p, &reqs, 1, Overheads::ZERO, &[1_000, 100_000]);
        // Looks at 5, 6, 7, 8 µs: preempted at 8, the short one ends at 9 (1.5 µs after arriving).
        assert_eq!((r.preemptions, r.classes[0].p50_ns), (1, 1_500));
        let only_long = [req(0, 1, 0, 100_000)];
        let mut p = Dispatched::new("sq", ShinjukuPolicy::sq_tail(5_000), ShinjukuCosts::ZERO, 1);
        let r = engine::run(&mut p, &only_long, 1, Overheads::ZERO, &[1_000, 100_000]);
        assert_eq!((r.preemptions, r.classes[1].p50_ns), (0, 100_000));
    }

    /// A dispatcher serialises its hand-offs: with 100 ns per dispatch, four workers and four
    /// requests arriving together, the last starts 400 ns (+ the mailbox) after they arrive.
    #[test]
    fn one_dispatcher_serialises_hand_offs_and_two_split_the_work() {
        let reqs: Vec<_> = (0..4).map(|i| SimRequest { flow: i as u32, ..req(i, 0, 0, 1_000) }).collect();
        let costs = ShinjukuCosts { dispatch_ns: 100, mailbox_ns: 10, ..ShinjukuCosts::ZERO };
        let mut p = Dispatched::new("sq", ShinjukuPolicy::sq_tail(5_000), costs, 4);
        let r = engine::run(&mut p, &reqs, 4, Overheads::ZERO, &[1_000]);
        assert_eq!(r.classes[0].p99_ns, 1_410, "400 ns of dispatch + 10 ns mailbox + 1 µs");
        let two = ShinjukuPolicy { dispatchers: 2, ..ShinjukuPolicy::sq_tail(5_000) };
        let mut p = Dispatched::new("sq2", two, costs, 4);
        let r = engine::run(&mut p, &reqs, 4, Overheads::ZERO, &[1_000]);
        assert_eq!(r.classes[0].p99_ns, 1_210, "each dispatcher hands off two");
    }

    /// MQ on one worker: a long request and a queue of shorts; the shorts' small SLO makes the
    /// dispatcher serve them before the preempted long request resumes.
    #[test]
    fn mq_serves_shorts_before_resuming_the_long_request() {
        let reqs = [req(0, 1, 0, 50_000), req(1, 0, 1_000, 1_000), req(2, 0, 1_500, 1_000)];
        let policy = ShinjukuPolicy::mq_head(vec![2_000, 100_000], 5_000);
        let mut p = Dispatched::new("mq", policy, ShinjukuCosts::ZERO, 1);
        let r = engine::run(&mut p, &reqs, 1, Overheads::ZERO, &[1_000, 50_000]);
        // Preempted at 5 µs; shorts run 5-6 and 6-7 µs; the long one ends at 52 µs.
        assert_eq!(r.classes[0].p99_ns, 5_500);
        assert_eq!(r.classes[1].p50_ns, 52_000);
        assert_eq!(r.preemptions, 1);
    }
}
