//! Any policy written against the policy API (`synergy_policy::api::Scheduler`, the trait the
//! runtime's workers and timer core call) run by the simulator's event loop: the same value that
//! schedules the real runtime (a built-in system, or an application's own such as
//! `runtime/examples/sita/policy.rs`) schedules simulated workers, over the queue model of
//! `synergy_policy::model`.
//!
//! What the adapter adds is only what the event loop needs: the request's kind is its workload
//! class; a request runs under a timer when the policy preempts every request, or marks long
//! ones and this one is long; each worker keeps its EMA of short service times for the quantum;
//! a resumed request costs a switch and a stolen one a steal (`Overheads`). Arrivals are placed
//! the moment they arrive (the model's receive queues stay empty). Policies with Shinjuku's
//! dispatchers are the simulator's `shinjuku` module's, not this adapter's.

use super::engine::{Ctx, Pick};
use super::policy::{selected_overhead, Policy, QuantumEnd};
use super::SimRequest;
use synergy_policy::api::{ArrivalInfo, Scheduler};
use synergy_policy::builtin::{builtin, BuiltinParams};
use synergy_policy::model::ModelQueues;
use synergy_policy::quantum::ShortEma;
use synergy_policy::system::{Preemptible, SchedPolicy};

/// A policy-API scheduler in the simulator.
pub struct ApiPolicy {
    sched: Box<dyn Scheduler<SimRequest, SimRequest>>,
    queues: ModelQueues<SimRequest, SimRequest>,
    ema: Vec<ShortEma>,
    factor: f64,
}

impl ApiPolicy {
    /// `sched` on `workers` workers, each starting from a short-request EMA of `initial_ema_ns`,
    /// with quantum factor `factor`. Refuses a dispatched policy (`Scheduler::dispatched`).
    pub fn new(
        sched: Box<dyn Scheduler<SimRequest, SimRequest>>,
        workers: usize,
        initial_ema_ns: u64,
        factor: f64,
    ) -> Option<ApiPolicy> {
        if sched.dispatched() {
            return None;
        }
        let queues = ModelQueues::new(workers, sched.central_queues());
        Some(ApiPolicy { sched, queues, ema: vec![ShortEma::new(initial_ema_ns); workers], factor })
    }

    /// Built-in system `policy` with STEAL_THRESHOLD `steal_threshold`, the runtime's initial
    /// short-request EMA and QUANTUM_FACTOR 2 (the systems with a fixed quantum ignore both).
    pub fn builtin(policy: SchedPolicy, workers: usize, steal_threshold: usize) -> ApiPolicy {
        let params = BuiltinParams { steal_threshold, ..BuiltinParams::default() };
        ApiPolicy::new(builtin(policy, &params), workers, ShortEma::default().get(), 2.0)
            .expect("only shinjuku is dispatched, and it has its own simulator")
    }

    /// Arrivals the policy rejected, and placements or requeues it got wrong, so far.
    pub fn rejected(&self) -> usize {
        self.queues.rejected.len()
    }
    /// Placements and requeues that named a queue that does not exist.
    pub fn policy_errors(&self) -> u64 {
        self.queues.policy_errors
    }

    fn quantum(&self, w: usize) -> u64 {
        self.sched.quantum_ns(self.ema[w].get(), self.factor)
    }
}

fn kind(r: &SimRequest) -> u32 {
    r.class as u32
}

impl Policy for ApiPolicy {
    fn name(&self) -> String {
        self.sched.name().into()
    }
    fn arrive(&mut self, r: SimRequest, ctx: &mut Ctx) {
        let a = ArrivalInfo { kind: kind(&r), flow: r.flow.into(), source: r.home, arrival_ns: ctx.now };
        self.queues.place(self.sched.as_ref(), r, &a);
    }
    fn next(&mut self, w: usize, ctx: &mut Ctx) -> Option<Pick> {
        let steals = self.queues.steals;
        let picked = self.sched.select(&mut self.queues.worker(w, self.sched.as_ref()))?;
        let stole = self.queues.steals > steals;
        let (req, overhead_ns) = selected_overhead(picked, stole, ctx);
        self.queues.busy[w] = true;
        let timed = match self.sched.preemptible() {
            Preemptible::Never => false,
            Preemptible::MarkedLong => req.long,
            Preemptible::Every => true,
        };
        let quantum = timed.then(|| self.quantum(w));
        Some(Pick { req, quantum, overhead_ns, ready_at: ctx.now })
    }
    fn quantum_end(&mut self, w: usize, _r: &SimRequest, _ctx: &mut Ctx) -> QuantumEnd {
        if self.sched.preempt_at_quantum_end(w, &self.queues) {
            QuantumEnd::Preempt
        } else {
            QuantumEnd::Continue(self.quantum(w))
        }
    }
    fn preempted(&mut self, w: usize, r: SimRequest, _ctx: &mut Ctx) {
        self.queues.busy[w] = false;
        if self.queues.requeue(self.sched.as_ref(), w, kind(&r), r).is_err() {
            unreachable!("a dispatched policy was refused by ApiPolicy::new");
        }
    }
    fn completed(&mut self, w: usize, r: &SimRequest, _ctx: &mut Ctx) {
        self.queues.busy[w] = false;
        if !r.long {
            self.ema[w].update(r.service_ns);
        }
    }
    fn idle_view(&self, w: usize) -> Option<(bool, bool)> {
        Some((self.sched.work_waiting(w, &self.queues), self.sched.others_may_take(w, &self.queues)))
    }
    fn wait_queue_waiting(&self) -> bool {
        !self.queues.wait.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{policy_named, simulate, Overheads};
    use synergy_eval::workload::{Workload, WorkloadName};

    /// The simulator's own model of Synergy (`policy.rs`, kept for the ablation's components and
    /// the congestion control) and the runtime's implementation (`policy::builtin`) run through
    /// this adapter schedule the same arrivals identically: every latency percentile of every
    /// class, the preemptions and the steals agree exactly. (The simulator's own d-FCFS and Tiny
    /// Quanta models passed the same check before they were replaced by the adapter.)
    #[test]
    fn the_runtime_policies_through_the_api_match_the_simulators_own_models() {
        let (workers, threshold, factor) = (4, 0, 2.0);
        assert_eq!(factor, 2.0, "ApiPolicy::builtin's factor");
        let overheads = Overheads { dispatch_ns: 0, preempt_ns: 300, switch_ns: 100, steal_ns: 200 };
        let w = Workload::named(WorkloadName::Extreme);
        let name = "synergy";
        {
            for load in [0.5, 0.9] {
                let rps = load * w.capacity_rps(workers);
                let mut own = policy_named(name, workers, &w, factor, threshold).expect("a built-in name");
                let expected = simulate(own.as_mut(), &w, rps, 20_000, workers, 64, overheads, 7);
                let mut api = ApiPolicy::builtin(SchedPolicy::Synergy, workers, threshold);
                let got = simulate(&mut api, &w, rps, 20_000, workers, 64, overheads, 7);
                assert_eq!(format!("{got:?}"), format!("{expected:?}"), "{name} at {load}");
                assert!(got.preemptions > 0 && got.steals > 0, "{name} at {load}: covers preemptions and steals");
            }
        }
    }

    #[test]
    fn a_dispatched_policy_is_refused() {
        let sj = builtin::<SimRequest, SimRequest>(SchedPolicy::Shinjuku, &BuiltinParams::default());
        assert!(ApiPolicy::new(sj, 2, 1_000, 2.0).is_none());
    }
}
