//! A discrete-event simulator of request scheduling on many workers (issue 8, first part): the
//! thesis's setups (14+ workers) cannot run on this project's 2-core machine, so the policies are
//! simulated with explicit overhead parameters. Deterministic: the same parameters and seed give
//! the same result, bit for bit.
//!
//! Model: Poisson arrivals of a workload's mix; each request needs its service time of CPU on one
//! worker; a policy (`policy.rs`) decides where requests queue, what an idle worker runs next, and
//! what happens when a running request's quantum ends. Overheads are charged as worker time
//! (preemption, context switch, steal) or as dispatcher time (one central dispatcher core that
//! serialises every dispatch, for the centralised policies).

#![deny(missing_docs)]

pub mod api_policy;
pub mod coresync;
pub mod dispatched;
pub mod engine;
pub mod policy;
pub mod shinjuku;
pub mod steered;
pub mod sweep;
pub mod syrup;

use serde::Serialize;
use synergy_eval::workload::Workload;
use synergy_policy::system;

/// Costs the simulator charges, in ns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Overheads {
    /// One dispatch by a central dispatcher (serialised: it bounds a centralised policy's
    /// throughput at 1 / dispatch_ns).
    pub dispatch_ns: u64,
    /// Interrupting and parking a running request (the mechanism's cost on the worker).
    pub preempt_ns: u64,
    /// Switching to another request's green thread (resume of a preempted one).
    pub switch_ns: u64,
    /// Taking a request from another worker's queue.
    pub steal_ns: u64,
}

impl Overheads {
    /// Nothing costs anything: for checks against queueing theory.
    pub const ZERO: Overheads = Overheads { dispatch_ns: 0, preempt_ns: 0, switch_ns: 0, steal_ns: 0 };
}

/// One simulated request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimRequest {
    /// Its index in the run's request list.
    pub id: usize,
    /// Its request type (the workload's index).
    pub class: usize,
    /// When it arrives (ns from the start).
    pub arrival_ns: u64,
    /// Its service time (ns).
    pub service_ns: u64,
    /// CPU still needed.
    pub remaining_ns: u64,
    /// The application marks it long (feedback / DARC classification).
    pub long: bool,
    /// RSS: the worker its flow hashes to.
    pub home: usize,
    /// The client flow it came on (ingress steering policies hash it themselves).
    pub flow: u32,
}

/// Latency summary of one class.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimClass {
    /// The type's service time (ns).
    pub service_ns: u64,
    /// Requests of this type completed.
    pub count: usize,
    /// Mean latency (ns).
    pub mean_latency_ns: f64,
    /// p50 latency (ns).
    pub p50_ns: u64,
    /// p99 latency (ns).
    pub p99_ns: u64,
    /// p99.9 latency (ns).
    pub p999_ns: u64,
    /// p99 slowdown (latency / service time).
    pub slowdown_p99: f64,
    /// p99.9 slowdown.
    pub slowdown_p999: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
/// What one simulated run measured.
pub struct SimResult {
    /// The policy's name.
    pub policy: String,
    /// Workers simulated.
    pub workers: usize,
    /// The offered rate, requests per second.
    pub offered_rps: f64,
    /// Requests completed.
    pub completed: usize,
    /// Mean time from arrival to first start of service (queueing delay), ns.
    pub mean_wait_ns: f64,
    /// p99.9 of every request's slowdown.
    pub overall_slowdown_p999: f64,
    /// p99 of every request's latency, and of its slowdown (latency / its own service time).
    pub overall_p99_ns: u64,
    /// p99 of every request's slowdown.
    pub overall_slowdown_p99: f64,
    /// When the last request finished (or the last arrival, if later), ns from the start.
    pub end_ns: u64,
    /// Preemptions taken.
    pub preemptions: u64,
    /// Steals made.
    pub steals: u64,
    /// Per request type.
    pub classes: Vec<SimClass>,
    /// Time-weighted workers not parked (all of them unless `--idle park` is simulated).
    pub cores_in_use: f64,
    /// Parked workers woken by the core grants.
    pub wakeups: u64,
}

/// Poisson arrivals of `count` requests of `workload` at `rps`, each on one of `flows` flows drawn
/// uniformly, flow f homed on worker f mod `workers` (RSS); deterministic in `seed`. Fewer flows
/// than workers leave queues empty: the thesis's uneven-flow experiment (8 vs 512 flows).
pub fn arrivals(workload: &Workload, rps: f64, count: usize, workers: usize, flows: u32, seed: u64) -> Vec<SimRequest> {
    let sched = workload.schedule(rps, count, 1, flows.max(1), seed).pop().unwrap_or_default();
    sched
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let t = &workload.types[r.kind as usize];
            SimRequest {
                id: i,
                class: r.kind as usize,
                arrival_ns: r.arrival_ns,
                service_ns: r.service_ns,
                remaining_ns: r.service_ns,
                long: t.long,
                home: (r.flow as usize) % workers.max(1),
                flow: r.flow,
            }
        })
        .collect()
}

/// The policies by name, with the thesis's parameters (Shinjuku/Concord 5 µs, TQ 2 µs quanta;
/// Synergy's QUANTUM_FACTOR and STEAL_THRESHOLD as given; DARC reserving enough workers for the
/// short requests' share of the work, at least one).
pub fn policy_named(
    name: &str,
    workers: usize,
    workload: &Workload,
    quantum_factor: f64,
    steal_threshold: usize,
) -> Option<Box<dyn policy::Policy>> {
    policy_maker(name, workers, workload, quantum_factor, steal_threshold).map(|make| make())
}

/// `policy_named` as a maker of fresh instances (a policy holds a run's state), for running one
/// policy at many loads: what a policy derives from the workload alone is derived once here
/// (`shinjuku-mq` calibrates its SLOs by simulation, seconds on a large workload).
pub fn policy_maker<'a>(
    name: &'a str,
    workers: usize,
    workload: &'a Workload,
    quantum_factor: f64,
    steal_threshold: usize,
) -> Option<impl Fn() -> Box<dyn policy::Policy> + 'a> {
    policy_maker_with_shinjuku_quantum(
        name,
        workers,
        workload,
        quantum_factor,
        steal_threshold,
        system::SHINJUKU_QUANTUM_NS,
    )
}

/// `policy_maker` with Shinjuku's quantum (`shinjuku` and `shinjuku-sq…`/`shinjuku-mq`) set, as
/// the runtime's `--shinjuku-quantum-us` sets it.
pub fn policy_maker_with_shinjuku_quantum<'a>(
    name: &'a str,
    workers: usize,
    workload: &'a Workload,
    quantum_factor: f64,
    steal_threshold: usize,
    shinjuku_quantum_ns: u64,
) -> Option<impl Fn() -> Box<dyn policy::Policy> + 'a> {
    let mq_slo_ns = (name == "shinjuku-mq")
        .then(|| shinjuku::calibrate_slos(workload, workers, 0.5 * workload.capacity_rps(workers), 50_000, 1));
    let knobs = Knobs { quantum_factor, steal_threshold, shinjuku_quantum_ns };
    let build = move || build_policy(name, workers, workload, knobs, mq_slo_ns.as_deref());
    // An unknown name is known before any instance is asked for.
    build()?;
    Some(move || build().expect("the name was checked when the maker was made"))
}

/// The policies' parameters a sweep sets.
#[derive(Debug, Clone, Copy)]
struct Knobs {
    quantum_factor: f64,
    steal_threshold: usize,
    shinjuku_quantum_ns: u64,
}

fn build_policy(
    name: &str,
    workers: usize,
    workload: &Workload,
    knobs: Knobs,
    mq_slo_ns: Option<&[u64]>,
) -> Option<Box<dyn policy::Policy>> {
    let Knobs { quantum_factor, steal_threshold, shinjuku_quantum_ns } = knobs;
    // Synergy starts from the runtime's initial EMA and learns it from the short requests it
    // serves (`policy::Synergy` folds in every short service time), as the runtime's workers do;
    // it used to start from the workload's true short mean (issue 17).
    let short_ema = synergy_policy::quantum::ShortEma::default().get() as f64;
    Some(match name {
        "cfcfs" => Box::new(policy::CFcfs::default()),
        "dfcfs" => Box::new(api_policy::ApiPolicy::builtin(system::SchedPolicy::Dfcfs, workers, steal_threshold)),
        "shinjuku" => Box::new(policy::Central::shinjuku(shinjuku_quantum_ns)),
        "concord" => Box::new(policy::Central::concord(workers, system::SHINJUKU_QUANTUM_NS)),
        "tq" => Box::new(api_policy::ApiPolicy::builtin(system::SchedPolicy::Tq, workers, steal_threshold)),
        "darc" => {
            let short_work: f64 =
                workload.types.iter().filter(|t| !t.long).map(|t| t.service_ns as f64 * t.share).sum();
            Box::new(policy::Darc::new(system::darc_reserved(workers, short_work / workload.mean_service_ns())))
        }
        "synergy" => Box::new(policy::Synergy::new(workers, quantum_factor, steal_threshold, short_ema)),
        // Shinjuku as Shinjuku (dispatched.rs): the dispatcher's costs from its paper.
        "shinjuku-sq" | "shinjuku-sq-head" | "shinjuku-mq" => {
            use synergy_policy::shinjuku::{PreemptedTo, ShinjukuPolicy};
            let quantum = shinjuku_quantum_ns;
            let policy = match name {
                "shinjuku-sq" => ShinjukuPolicy::sq_tail(quantum),
                "shinjuku-sq-head" => {
                    ShinjukuPolicy { preempted_to: PreemptedTo::Head, ..ShinjukuPolicy::sq_tail(quantum) }
                }
                _ => ShinjukuPolicy::mq_head(mq_slo_ns?.to_vec(), quantum),
            };
            Box::new(dispatched::Dispatched::new(name, policy, dispatched::ShinjukuCosts::PAPER, workers))
        }
        other if other.starts_with("synergy-") => {
            let k = SynergyKnobs::parse(other, quantum_factor)?;
            let congested = if k.thresh_wqd_us == 0 { k.quantum_factor } else { k.congested_factor };
            Box::new(
                policy::Synergy::with_components(
                    other,
                    policy::Components::ALL,
                    workers,
                    k.quantum_factor,
                    steal_threshold,
                    short_ema,
                )
                .with_congestion(k.quantum_factor, congested, k.thresh_wqd_us * 1000),
            )
        }
        other => {
            let (n, parts) = policy::Components::ablation().into_iter().find(|(n, _)| *n == other)?;
            Box::new(policy::Synergy::with_components(n, parts, workers, quantum_factor, steal_threshold, short_ema))
        }
    })
}

/// The policies `simulate --policy` knows by these names.
pub const POLICIES: [&str; 7] = ["synergy", "cfcfs", "dfcfs", "shinjuku", "concord", "tq", "darc"];

/// Shinjuku with its dispatcher modelled (`dispatched.rs`): SQ to the tail, SQ to the head, MQ
/// to the head with SLOs calibrated the paper's way.
pub const FAITHFUL_SHINJUKU: [&str; 3] = ["shinjuku-sq", "shinjuku-sq-head", "shinjuku-mq"];

/// Synergy's component ablation (thesis §6.3.1), usable as policy names.
pub const ABLATION: [&str; 5] = ["rss-ci", "rss-ci+ws", "rss-ci+ws+wq", "rss-ci+ws+wq+cp", "rss-ci+ws+wq+cp+qa"];

/// Whether `name` names a policy (one above, a Shinjuku variant, an ablation step or Synergy with knobs).
pub fn is_policy(name: &str) -> bool {
    POLICIES.contains(&name)
        || FAITHFUL_SHINJUKU.contains(&name)
        || ABLATION.contains(&name)
        || SynergyKnobs::parse(name, 2.0).is_some()
}

/// Synergy with its knobs in the name, the thesis's Figure 6.6 notation extended by the quantum
/// factor: `synergy-q<QUANTUM_FACTOR>`, `synergy-d<THRESH_WQD µs>-f<CONGESTED_QUANTUM_FACTOR>`, or
/// both (`synergy-q4-d10-f5`). `d0-f0` is the thesis's default: never congested. `p<ns>` sets the
/// preemption mechanism's cost on the worker (Figure 6.7: signal, IPI, UINTR, CI).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynergyKnobs {
    /// QUANTUM_FACTOR (`q`).
    pub quantum_factor: f64,
    /// THRESH_WQD, µs (`d`; 0: never congested).
    pub thresh_wqd_us: u64,
    /// CONGESTED_QUANTUM_FACTOR (`f`).
    pub congested_factor: f64,
    /// Preemption cost on the worker (ns), if the name sets it.
    pub preempt_ns: Option<u64>,
}

impl SynergyKnobs {
    /// The knobs `name` sets; those it does not set keep the defaults (`quantum_factor`, d0-f0).
    pub fn parse(name: &str, quantum_factor: f64) -> Option<SynergyKnobs> {
        let mut k = SynergyKnobs { quantum_factor, thresh_wqd_us: 0, congested_factor: 0.0, preempt_ns: None };
        let rest = name.strip_prefix("synergy-")?;
        let (mut saw_d, mut saw_f) = (false, false);
        for part in rest.split('-') {
            let (tag, value) = part.split_at_checked(1)?;
            match tag {
                "q" => k.quantum_factor = value.parse().ok().filter(|v: &f64| *v > 0.0 && v.is_finite())?,
                "d" => (k.thresh_wqd_us, saw_d) = (value.parse().ok()?, true),
                "f" => {
                    (k.congested_factor, saw_f) =
                        (value.parse().ok().filter(|v: &f64| *v >= 0.0 && v.is_finite())?, true)
                }
                "p" => k.preempt_ns = Some(value.parse().ok().filter(|v: &u64| *v <= 1_000_000)?),
                _ => return None,
            }
        }
        // d and f come together; a congested factor of 0 only with d0.
        if saw_d != saw_f || (k.thresh_wqd_us > 0 && k.congested_factor == 0.0) || rest.is_empty() {
            return None;
        }
        Some(k)
    }
}

/// Flows of the simulations unless told otherwise: many, so RSS spreads load evenly.
pub const DEFAULT_FLOWS: u32 = 1 << 16;

/// One simulation: `count` requests of `workload` at `rps` over `flows` flows on `workers` under
/// `policy`.
#[allow(clippy::too_many_arguments)]
pub fn simulate(
    policy: &mut dyn policy::Policy,
    workload: &Workload,
    rps: f64,
    count: usize,
    workers: usize,
    flows: u32,
    overheads: Overheads,
    seed: u64,
) -> SimResult {
    simulate_with_idle(policy, workload, rps, count, workers, flows, overheads, seed, None)
        .expect("spinning workers need no parking model")
}

/// `simulate`, with idle workers parking when `idle` is given; None if they would park under a
/// policy that does not model parking (`Policy::idle_view`).
#[allow(clippy::too_many_arguments)]
pub fn simulate_with_idle(
    policy: &mut dyn policy::Policy,
    workload: &Workload,
    rps: f64,
    count: usize,
    workers: usize,
    flows: u32,
    overheads: Overheads,
    seed: u64,
    idle: Option<engine::SimIdle>,
) -> Option<SimResult> {
    if idle.is_some() {
        policy.idle_view(0)?;
    }
    let reqs = arrivals(workload, rps, count, workers, flows, seed);
    let classes: Vec<u64> = workload.types.iter().map(|t| t.service_ns).collect();
    let mut r = engine::run_with_idle(policy, &reqs, workers, overheads, &classes, idle);
    r.offered_rps = rps;
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::policy::*;
    use super::*;
    use synergy_eval::rng::SplitMix64;
    use synergy_eval::workload::{Workload, WorkloadName};

    fn dfcfs(workers: usize) -> api_policy::ApiPolicy {
        api_policy::ApiPolicy::builtin(system::SchedPolicy::Dfcfs, workers, 0)
    }

    #[test]
    fn knob_names_parse_like_the_thesis_figure() {
        let k =
            |q, d, f| Some(SynergyKnobs { quantum_factor: q, thresh_wqd_us: d, congested_factor: f, preempt_ns: None });
        assert_eq!(SynergyKnobs::parse("synergy-d10-f5", 2.0), k(2.0, 10, 5.0));
        assert_eq!(SynergyKnobs::parse("synergy-d0-f0", 2.0), k(2.0, 0, 0.0));
        assert_eq!(SynergyKnobs::parse("synergy-q8", 2.0), k(8.0, 0, 0.0));
        assert_eq!(SynergyKnobs::parse("synergy-q1.5-d15-f20", 2.0), k(1.5, 15, 20.0));
        assert_eq!(SynergyKnobs::parse("synergy-p2075", 2.0).unwrap().preempt_ns, Some(2075));
        for bad in [
            "synergy",
            "synergy-",
            "synergy-d10",
            "synergy-f5",
            "synergy-d10-f0",
            "synergy-q0",
            "synergy-x1",
            "synergy-d-1-f2",
            "synergy-qnan",
            "shinjuku-d1-f1",
            "synergy-p",
            "synergy-p-5",
            "synergy-p2000000",
        ] {
            assert_eq!(SynergyKnobs::parse(bad, 2.0), None, "{bad}");
        }
        assert!(is_policy("synergy-d15-f20") && !is_policy("synergy-d15"));
    }

    #[test]
    fn congestion_control_resumes_the_wait_queue_sooner() {
        // Extreme at 90% load: with d10-f10 the long requests' tail is shorter than with
        // best-effort d0-f0, which gives short requests every priority (Figure 6.6's trade-off).
        let w = Workload::named(WorkloadName::Extreme);
        let rps = 0.9 * w.capacity_rps(14);
        let run = |name: &str| {
            let mut p = policy_named(name, 14, &w, 2.0, 1).unwrap();
            simulate(
                p.as_mut(),
                &w,
                rps,
                200_000,
                14,
                DEFAULT_FLOWS,
                Overheads { dispatch_ns: 50, preempt_ns: 828, switch_ns: 50, steal_ns: 100 },
                1,
            )
        };
        let (best_effort, congested) = (run("synergy-d0-f0"), run("synergy-d10-f10"));
        let p999 = |r: &SimResult, class: usize| r.classes[class].p999_ns;
        assert!(
            p999(&congested, 1) < p999(&best_effort, 1),
            "long p99.9: d10-f10 {} vs d0-f0 {}",
            p999(&congested, 1),
            p999(&best_effort, 1)
        );
        // ... paid for by the short requests, which wait behind the resumed long ones.
        assert!(
            p999(&congested, 0) > p999(&best_effort, 0),
            "short p99.9: d10-f10 {} vs d0-f0 {}",
            p999(&congested, 0),
            p999(&best_effort, 0)
        );
        assert_eq!(congested.policy, "synergy-d10-f10");
    }

    fn req(id: usize, at_us: u64, service_us: u64, long: bool, home: usize) -> SimRequest {
        SimRequest {
            id,
            class: usize::from(long),
            arrival_ns: at_us * 1000,
            service_ns: service_us * 1000,
            remaining_ns: service_us * 1000,
            long,
            home,
            flow: home as u32,
        }
    }

    fn latencies_us(p: &mut dyn Policy, reqs: &[SimRequest], workers: usize) -> Vec<f64> {
        // One class per request, so each class's mean latency is that request's latency.
        let reqs: Vec<SimRequest> = reqs.iter().map(|r| SimRequest { class: r.id, ..*r }).collect();
        let classes: Vec<u64> = reqs.iter().map(|r| r.service_ns).collect();
        let res = engine::run(p, &reqs, workers, Overheads::ZERO, &classes);
        assert_eq!(res.completed, reqs.len());
        res.classes.iter().map(|c| c.mean_latency_ns / 1000.0).collect()
    }

    /// A long request (100 µs) and, 10 µs later, a short one (1 µs), on one worker.
    fn hol_trace() -> Vec<SimRequest> {
        vec![req(0, 0, 100, true, 0), req(1, 10, 1, false, 0)]
    }

    #[test]
    fn fcfs_policies_run_to_completion_in_order() {
        assert_eq!(latencies_us(&mut dfcfs(1), &hol_trace(), 1), vec![100.0, 91.0]);
        assert_eq!(latencies_us(&mut CFcfs::default(), &hol_trace(), 1), vec![100.0, 91.0]);
        // Two workers, both requests hashed to worker 0: d-FCFS does not use worker 1...
        let two = vec![req(0, 0, 10, false, 0), req(1, 1, 5, false, 0)];
        assert_eq!(latencies_us(&mut dfcfs(2), &two, 2), vec![10.0, 14.0]);
        // ...c-FCFS does.
        assert_eq!(latencies_us(&mut CFcfs::default(), &two, 2), vec![10.0, 5.0]);
    }

    #[test]
    fn synergy_preempts_the_long_request_only_when_work_waits() {
        // EMA 1 µs × factor 2 = 2 µs quanta: renewed at 2, 4, 6, 8 µs (queue empty), preempted at
        // 10 µs when the short request is queued; the long one resumes from the wait queue at 11.
        let mut s = Synergy::new(1, 2.0, 1, 1_000.0);
        assert_eq!(latencies_us(&mut s, &hol_trace(), 1), vec![101.0, 1.0]);
        // A short request is never preempted: two shorts back to back run to completion.
        let shorts = vec![req(0, 0, 50, false, 0), req(1, 1, 1, false, 0)];
        assert_eq!(latencies_us(&mut Synergy::new(1, 2.0, 1, 1_000.0), &shorts, 1), vec![50.0, 50.0]);
    }

    #[test]
    fn synergy_steals_above_the_threshold_only() {
        // Three requests queue on worker 0; worker 1 steals (queue of 2 > threshold 1) half,
        // the oldest first, as the runtime's ring does.
        let reqs = vec![req(0, 0, 10, false, 0), req(1, 0, 10, false, 0), req(2, 0, 10, false, 0)];
        let l = latencies_us(&mut Synergy::new(2, 2.0, 1, 1_000.0), &reqs, 2);
        assert_eq!(l, vec![10.0, 10.0, 20.0], "worker 1 stole the oldest waiting request");
        let l = latencies_us(&mut Synergy::new(2, 2.0, 5, 1_000.0), &reqs, 2);
        assert_eq!(l, vec![10.0, 20.0, 30.0], "threshold 5: no steal");
    }

    #[test]
    fn ablation_components_change_exactly_their_behaviour() {
        let parts = |name: &str| Components::ablation().into_iter().find(|(n, _)| *n == name).unwrap().1;
        let mk = |name: &str, workers: usize| Synergy::with_components(name, parts(name), workers, 2.0, 1, 1_000.0);
        // Without conditional preemption the long request is interrupted at every 5 µs quantum,
        // even alone (20 preemptions for 100 µs), and the short one still waits for the quantum.
        let classes = [100_000, 1_000];
        let r = engine::run(&mut mk("rss-ci", 1), &hol_trace(), 1, Overheads::ZERO, &classes);
        assert_eq!(r.preemptions, 19);
        let r = engine::run(&mut mk("rss-ci+ws+wq+cp", 1), &hol_trace(), 1, Overheads::ZERO, &classes);
        assert_eq!(r.preemptions, 1, "conditional: only when the short request waits");
        // Without the wait queue a preempted request goes back into its own queue, behind the
        // requests already there; with it, new arrivals go first.
        // Long 0–5 µs, preempted at 5 (short 1 waiting); short 2 arrives at 6.
        let trace = vec![req(0, 0, 10, true, 0), req(1, 1, 1, false, 0), req(2, 6, 1, false, 0)];
        assert_eq!(
            latencies_us(&mut mk("rss-ci", 1), &trace, 1),
            vec![11.0, 5.0, 6.0],
            "short 2 waits behind the long one"
        );
        assert_eq!(latencies_us(&mut mk("rss-ci+ws+wq", 1), &trace, 1), vec![12.0, 5.0, 1.0], "short 2 goes first");
        // Stealing is what the `ws` component adds.
        let three = vec![req(0, 0, 10, false, 0), req(1, 0, 10, false, 0), req(2, 0, 10, false, 0)];
        assert_eq!(latencies_us(&mut mk("rss-ci", 2), &three, 2), vec![10.0, 20.0, 30.0]);
        assert_eq!(latencies_us(&mut mk("rss-ci+ws", 2), &three, 2), vec![10.0, 10.0, 20.0]);
    }

    #[test]
    fn shinjuku_and_tq_preempt_at_their_fixed_quanta() {
        // Shinjuku: 5 µs quanta; at 10 µs the short request waits, so the long one goes back.
        assert_eq!(latencies_us(&mut Central::shinjuku(5_000), &hol_trace(), 1), vec![101.0, 1.0]);
        // TQ with 2 µs quanta: the same at 10 µs.
        assert_eq!(
            latencies_us(&mut api_policy::ApiPolicy::builtin(system::SchedPolicy::Tq, 1, 0), &hol_trace(), 1),
            vec![101.0, 1.0]
        );
        // Concord's JBSQ(2): the short request is already in the worker's local queue.
        assert_eq!(latencies_us(&mut Central::concord(1, 5_000), &hol_trace(), 1), vec![101.0, 1.0]);
    }

    #[test]
    fn darc_keeps_long_requests_off_reserved_workers() {
        // Two workers, worker 0 reserved for short requests: the second long request waits for
        // worker 1 while the short one runs at once on worker 0.
        let reqs = vec![req(0, 0, 100, true, 0), req(1, 0, 100, true, 0), req(2, 1, 1, false, 0)];
        assert_eq!(latencies_us(&mut Darc::new(1), &reqs, 2), vec![100.0, 200.0, 1.0]);
    }

    fn single_server(service: impl Fn(&mut SplitMix64) -> u64, rho: f64, mean_ns: f64) -> f64 {
        let mut rng = SplitMix64::new(42);
        let gap = mean_ns / rho;
        let mut t = 0.0;
        let reqs: Vec<SimRequest> = (0..400_000)
            .map(|id| {
                t += rng.exp(gap);
                let s = service(&mut rng).max(1);
                SimRequest {
                    id,
                    class: 0,
                    arrival_ns: t as u64,
                    service_ns: s,
                    remaining_ns: s,
                    long: false,
                    home: 0,
                    flow: 0,
                }
            })
            .collect();
        engine::run(&mut CFcfs::default(), &reqs, 1, Overheads::ZERO, &[mean_ns as u64]).mean_wait_ns
    }

    #[test]
    fn mm1_mean_wait_matches_queueing_theory() {
        // M/M/1: Wq = rho / (1 - rho) × E[S].
        let (rho, s) = (0.7, 10_000.0);
        let w = single_server(|rng| rng.exp(s) as u64, rho, s);
        let theory = rho / (1.0 - rho) * s;
        assert!((w / theory - 1.0).abs() < 0.04, "M/M/1 mean wait {w:.0} ns vs {theory:.0} ns");
    }

    #[test]
    fn md1_mean_wait_matches_queueing_theory() {
        // M/D/1: Wq = rho × E[S] / (2 (1 - rho)).
        let (rho, s) = (0.7, 10_000.0);
        let w = single_server(|_| s as u64, rho, s);
        let theory = rho * s / (2.0 * (1.0 - rho));
        assert!((w / theory - 1.0).abs() < 0.04, "M/D/1 mean wait {w:.0} ns vs {theory:.0} ns");
    }

    #[test]
    fn few_flows_leave_rss_queues_empty_and_stealing_fills_them() {
        let w = Workload::named(WorkloadName::High);
        let reqs = arrivals(&w, 100_000.0, 5_000, 14, 8, 1);
        let homes: std::collections::BTreeSet<usize> = reqs.iter().map(|r| r.home).collect();
        assert!(homes.len() <= 8 && homes.iter().all(|&h| h < 8), "8 flows reach at most 8 of 14 workers: {homes:?}");
        // d-FCFS cannot use the idle workers; Synergy steals: far fewer requests wait.
        let rps = w.capacity_rps(14) * 0.5;
        let mut d = policy_named("dfcfs", 14, &w, 2.0, 1).unwrap();
        let mut s = policy_named("synergy", 14, &w, 2.0, 1).unwrap();
        let rd = simulate(d.as_mut(), &w, rps, 50_000, 14, 8, Overheads::ZERO, 2);
        let rs = simulate(s.as_mut(), &w, rps, 50_000, 14, 8, Overheads::ZERO, 2);
        assert!(rs.steals > 0);
        assert!(
            rs.mean_wait_ns * 5.0 < rd.mean_wait_ns,
            "synergy {} ns vs d-FCFS {} ns",
            rs.mean_wait_ns,
            rd.mean_wait_ns
        );
    }

    #[test]
    fn congestion_raises_check_wait_queue_like_the_runtime() {
        // Long requests preempted into the wait queue while shorts keep the worker's own queue
        // busy: with THRESH_WQD on, the congestion flag makes idle selection prefer the wait
        // queue, so the long requests finish earlier than with it off (0 = never congested).
        let w = Workload::named(WorkloadName::High);
        let rps = w.capacity_rps(2) * 0.9;
        let run = |thresh: u64| {
            let mut p = Synergy::new(2, 2.0, 1, 1_000.0).with_congestion(2.0, 2.0, thresh);
            simulate(&mut p, &w, rps, 30_000, 2, DEFAULT_FLOWS, Overheads::ZERO, 5)
        };
        let (off, on) = (run(0), run(20_000));
        assert_eq!((off.completed, on.completed), (30_000, 30_000));
        assert!(
            on.classes[1].p999_ns < off.classes[1].p999_ns,
            "long p99.9: {} with congestion control vs {} without",
            on.classes[1].p999_ns,
            off.classes[1].p999_ns
        );
    }

    #[test]
    fn simulation_is_deterministic_and_complete() {
        let w = Workload::named(WorkloadName::High);
        let rps = w.capacity_rps(4) * 0.7;
        for name in POLICIES {
            let run = || {
                let mut p = policy_named(name, 4, &w, 2.0, 1).unwrap();
                simulate(
                    p.as_mut(),
                    &w,
                    rps,
                    20_000,
                    4,
                    DEFAULT_FLOWS,
                    Overheads { dispatch_ns: 100, preempt_ns: 500, switch_ns: 50, steal_ns: 100 },
                    9,
                )
            };
            let (a, b) = (run(), run());
            assert_eq!(a.completed, 20_000, "{name}: every request completes");
            assert_eq!(
                (a.overall_slowdown_p999, a.preemptions, a.mean_wait_ns),
                (b.overall_slowdown_p999, b.preemptions, b.mean_wait_ns),
                "{name}"
            );
        }
    }

    const PARK: engine::SimIdle = engine::SimIdle { poll_period_ns: 2_000, wake_delay_ns: 5_000, wake_ns: 40_000 };

    #[test]
    fn a_request_for_a_parked_worker_waits_for_the_grant_and_the_wake_up() {
        // One worker, parked at the first grant look (5 µs). A 1 µs request arrives at 100 µs:
        // the look at 100 µs sees it 0 µs old, the one at 105 µs 5 µs old (the delay threshold)
        // and grants; the worker takes it 40 µs later, at 145 µs, and is done at 146 µs.
        let reqs = vec![req(0, 100, 1, false, 0)];
        let mut s = Synergy::new(1, 2.0, 1, 1_000.0);
        let r = engine::run_with_idle(&mut s, &reqs, 1, Overheads::ZERO, &[1_000], Some(PARK));
        assert_eq!(r.completed, 1);
        assert_eq!(r.mean_wait_ns, 45_000.0);
        assert_eq!(r.classes[0].p50_ns, 46_000);
        assert_eq!(r.wakeups, 1);
        // Parked from the first look (5 µs) to the grant at 105 µs; the run ends with the
        // request at 146 µs (a park at the look after it counts nothing): 100 µs of 146.
        assert!((r.cores_in_use - (1.0 - 100.0 / 146.0)).abs() < 1e-9, "{}", r.cores_in_use);
        // Spinning, the same request waits for nothing.
        let mut s = Synergy::new(1, 2.0, 1, 1_000.0);
        let spin = engine::run(&mut s, &reqs, 1, Overheads::ZERO, &[1_000]);
        assert_eq!((spin.mean_wait_ns, spin.cores_in_use, spin.wakeups), (0.0, 1.0, 0));
    }

    #[test]
    fn parked_workers_follow_the_load_and_lose_nothing() {
        let w = Workload::named(WorkloadName::High);
        let cap = w.capacity_rps(16);
        let run = |load: f64| {
            let mut s = Synergy::new(16, 2.0, 1, 1_000.0);
            simulate_with_idle(&mut s, &w, cap * load, 40_000, 16, 512, Overheads::ZERO, 3, Some(PARK)).unwrap()
        };
        let (low, high) = (run(0.2), run(0.8));
        assert_eq!((low.completed, high.completed), (40_000, 40_000));
        assert!(low.wakeups > 0 && high.wakeups > 0);
        assert!(low.cores_in_use < high.cores_in_use, "{} vs {}", low.cores_in_use, high.cores_in_use);
        assert!(low.cores_in_use < 16.0 * 0.5, "20% load keeps fewer than half the cores: {}", low.cores_in_use);
        // A policy that does not model parking says so.
        assert!(simulate_with_idle(&mut Darc::new(1), &w, 1e3, 100, 2, 8, Overheads::ZERO, 1, Some(PARK)).is_none());
    }
}
