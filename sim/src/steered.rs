//! Ingress steering without stealing (Syrup's socket-select setting): each worker serves its own
//! queue to completion, FCFS, and a steering rule (`synergy_policy::steering`, what the kernel
//! UDP transport's BPF programs compute) decides at arrival which queue a request joins.

use super::engine::{Ctx, Pick};
use super::policy::Policy;
use super::SimRequest;
use std::collections::VecDeque;
use synergy_eval::rng::SplitMix64;
use synergy_policy::steering;

/// Which queue an arriving request joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The kernel's 4-tuple hash of the request's flow (one flow, one worker).
    Hash,
    /// Round-robin over the workers, per request.
    RoundRobin,
    /// Long requests to worker 0, the others round-robin over the rest.
    Sita,
    /// Long requests round-robin; short ones to the first worker, from a random start, running
    /// no long request.
    ScanAvoid,
}

impl Rule {
    /// Every rule, in the order results list them.
    pub const ALL: [Rule; 4] = [Rule::Hash, Rule::RoundRobin, Rule::Sita, Rule::ScanAvoid];

    /// The name results use.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Hash => "hash",
            Rule::RoundRobin => "round-robin",
            Rule::Sita => "sita",
            Rule::ScanAvoid => "scan-avoid",
        }
    }
}

/// Ingress steering (Syrup): each worker its own queue, filled by `rule` at arrival; no stealing, no preemption.
pub struct Steered {
    rule: Rule,
    queues: Vec<VecDeque<SimRequest>>,
    /// Worker w runs a long request now (what the runtime writes into SCAN-avoid's map).
    running_long: Vec<bool>,
    next_rr: usize,
    hash_seed: u64,
    rng: SplitMix64,
}

impl Steered {
    /// `seed` fixes the hash secret and SCAN-avoid's random starts.
    pub fn new(rule: Rule, workers: usize, seed: u64) -> Steered {
        Steered {
            rule,
            queues: vec![VecDeque::new(); workers],
            running_long: vec![false; workers],
            next_rr: 0,
            hash_seed: seed,
            rng: SplitMix64::new(seed ^ 0x5ca1_ab1e),
        }
    }

    fn round_robin(&mut self, n: usize) -> usize {
        let w = self.next_rr % n.max(1);
        self.next_rr = self.next_rr.wrapping_add(1);
        w
    }

    fn target(&mut self, r: &SimRequest) -> usize {
        let n = self.queues.len();
        match self.rule {
            Rule::Hash => steering::hashed(r.flow, self.hash_seed, n),
            Rule::RoundRobin => self.round_robin(n),
            Rule::Sita => steering::sita(r.long, n, |others| self.round_robin(others)),
            Rule::ScanAvoid => {
                let start = if r.long { self.round_robin(n) } else { (self.rng.next_u64() % n as u64) as usize };
                steering::scan_avoid(r.long, &self.running_long, start)
            }
        }
    }
}

impl Policy for Steered {
    fn name(&self) -> String {
        self.rule.name().into()
    }
    fn arrive(&mut self, r: SimRequest, _ctx: &mut Ctx) {
        let w = self.target(&r);
        self.queues[w].push_back(r);
    }
    fn next(&mut self, w: usize, ctx: &mut Ctx) -> Option<Pick> {
        let req = self.queues[w].pop_front()?;
        self.running_long[w] = req.long;
        Some(Pick { req, quantum: None, overhead_ns: 0, ready_at: ctx.now })
    }
    fn completed(&mut self, w: usize, _r: &SimRequest, _ctx: &mut Ctx) {
        self.running_long[w] = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{engine, Overheads};

    fn req(id: usize, at_us: u64, service_us: u64, long: bool, flow: u32) -> SimRequest {
        let ns = service_us * 1000;
        SimRequest { id, class: id, arrival_ns: at_us * 1000, service_ns: ns, remaining_ns: ns, long, home: 0, flow }
    }

    fn latencies_us(rule: Rule, reqs: &[SimRequest], workers: usize) -> Vec<f64> {
        let classes: Vec<u64> = reqs.iter().map(|r| r.service_ns).collect();
        let r = engine::run(&mut Steered::new(rule, workers, 1), reqs, workers, Overheads::ZERO, &classes);
        r.classes.iter().map(|c| c.mean_latency_ns / 1000.0).collect()
    }

    #[test]
    fn one_flow_queues_on_one_worker_under_hash_only() {
        let same_flow: Vec<SimRequest> = (0..4).map(|i| req(i, 0, 10, false, 7)).collect();
        assert_eq!(latencies_us(Rule::Hash, &same_flow, 4), vec![10.0, 20.0, 30.0, 40.0]);
        assert_eq!(latencies_us(Rule::RoundRobin, &same_flow, 4), vec![10.0; 4]);
    }

    #[test]
    fn sita_and_scan_avoid_keep_shorts_from_behind_a_long_request() {
        // A 700 µs SCAN at 0, then three 10 µs GETs at 1 µs intervals, two workers.
        let trace =
            vec![req(0, 0, 700, true, 0), req(1, 1, 10, false, 0), req(2, 2, 10, false, 0), req(3, 3, 10, false, 0)];
        // Round-robin puts GET 2 behind the SCAN on worker 0.
        let rr = latencies_us(Rule::RoundRobin, &trace, 2);
        assert!(rr[2] > 690.0, "{rr:?}");
        // SITA: the SCAN owns worker 0, GETs share worker 1.
        assert_eq!(latencies_us(Rule::Sita, &trace, 2), vec![700.0, 10.0, 19.0, 28.0]);
        // SCAN-avoid: worker 0 is busy with the SCAN, so every GET goes to worker 1.
        assert_eq!(latencies_us(Rule::ScanAvoid, &trace, 2), vec![700.0, 10.0, 19.0, 28.0]);
    }
}
