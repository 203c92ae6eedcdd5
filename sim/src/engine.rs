//! The event loop: arrivals and slice ends in time order (ties broken by insertion order, so runs
//! are deterministic); after every event each idle worker asks the policy for work.

use super::policy::{Policy, QuantumEnd};
use super::{Overheads, SimClass, SimRequest, SimResult};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use synergy_eval::report::percentile;
use synergy_policy::idle::{Grants, WorkerView, GRANT_PERIOD_NS};

/// What the policy may use of the simulated machine.
pub struct Ctx {
    /// Simulated time (ns).
    pub now: u64,
    /// Workers simulated.
    pub workers: usize,
    /// What the mechanisms cost.
    pub overheads: Overheads,
    dispatcher_free_at: u64,
    /// Steals made.
    pub steals: u64,
}

impl Ctx {
    /// The central dispatcher handles one request now: returns when that dispatch is done
    /// (dispatches are serialised on the dispatcher core).
    pub fn dispatch(&mut self) -> u64 {
        let start = self.now.max(self.dispatcher_free_at);
        self.dispatcher_free_at = start + self.overheads.dispatch_ns;
        self.dispatcher_free_at
    }
}

/// What an idle worker runs next.
pub struct Pick {
    /// The request.
    pub req: SimRequest,
    /// Run at most this long before `quantum_end` (None: to completion).
    pub quantum: Option<u64>,
    /// Worker time spent before the request runs (switch, steal).
    pub overhead_ns: u64,
    /// Not before this time (a dispatch still in flight).
    pub ready_at: u64,
}

struct Running {
    req: SimRequest,
    slice_start: u64,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Arrival(usize),
    SliceEnd(usize),
    /// The timer core's core-grant look (`--idle park`), every `GRANT_PERIOD_NS`.
    GrantTick,
    /// A woken worker is running again: the idle workers look for work.
    Woken,
}

/// Parked workers (`--idle park`), as the runtime does it: a worker idle for `poll_period_ns`
/// parks (decided at the timer core's 5 µs looks, the simulator's resolution), the timer core's
/// grants (`policy::idle::Grants`, the runtime's own decision code) wake one, and a woken worker
/// takes work `wake_ns` later (the futex wake-up: 33-49 µs measured on this project's KVM host,
/// `synergy sweep idle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SimIdle {
    /// Idle this long before parking (ns).
    pub poll_period_ns: u64,
    /// Work waits this long before a parked worker is granted (ns).
    pub wake_delay_ns: u64,
    /// From a grant to the woken worker taking work (ns).
    pub wake_ns: u64,
}

/// Simulates `requests` under `policy` on `workers` workers with `overheads`; returns what it measured.
pub fn run(
    policy: &mut dyn Policy,
    requests: &[SimRequest],
    workers: usize,
    overheads: Overheads,
    classes: &[u64],
) -> SimResult {
    run_with_idle(policy, requests, workers, overheads, classes, None)
}

/// `run`, with idle workers parking when `idle` is given (the policy must model it:
/// `Policy::idle_view`; the caller checks).
pub fn run_with_idle(
    policy: &mut dyn Policy,
    requests: &[SimRequest],
    workers: usize,
    overheads: Overheads,
    classes: &[u64],
    idle: Option<SimIdle>,
) -> SimResult {
    let mut ctx = Ctx { now: 0, workers, overheads, dispatcher_free_at: 0, steals: 0 };
    let mut heap: BinaryHeap<Reverse<(u64, u64, Event)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |heap: &mut BinaryHeap<Reverse<(u64, u64, Event)>>, t: u64, e: Event| {
        heap.push(Reverse((t, seq, e)));
        seq += 1;
    };
    for (i, r) in requests.iter().enumerate() {
        push(&mut heap, r.arrival_ns, Event::Arrival(i));
    }
    let mut running: Vec<Option<Running>> = (0..workers).map(|_| None).collect();
    // A worker that just preempted is busy until this time (the preemption's cost).
    let mut free_at = vec![0u64; workers];
    let mut first_start = vec![u64::MAX; requests.len()];
    let mut latency = vec![0u64; requests.len()];
    let mut done = vec![false; requests.len()];
    let mut preemptions = 0u64;
    // Parking state (all idle with `idle == None`).
    let mut parked = vec![false; workers];
    let mut parked_since = vec![0u64; workers];
    // Every worker is idle from the start.
    let mut idle_since: Vec<Option<u64>> = vec![Some(0); workers];
    let mut available_at = vec![0u64; workers];
    let (mut parked_total, mut wakeups, mut completed_count) = (0u64, 0u64, 0usize);
    let mut grants = Grants::new(workers);
    let mut views = vec![WorkerView::default(); workers];
    if idle.is_some() {
        push(&mut heap, GRANT_PERIOD_NS, Event::GrantTick);
    }
    let mut end = 0u64;

    while let Some(Reverse((t, _, ev))) = heap.pop() {
        ctx.now = t;
        if matches!(ev, Event::Arrival(_) | Event::SliceEnd(_)) {
            // The run ends with its last request, not with the grant looks after it.
            end = end.max(t);
        }
        match ev {
            Event::Arrival(i) => policy.arrive(requests[i], &mut ctx),
            Event::Woken => {}
            Event::GrantTick => {
                let Some(idle) = idle else { continue };
                for w in 0..workers {
                    let idle_long = idle_since[w].is_some_and(|s| t.saturating_sub(s) >= idle.poll_period_ns);
                    if !parked[w] && running[w].is_none() && t >= available_at[w] && idle_long {
                        parked[w] = true;
                        parked_since[w] = t;
                    }
                    let (waiting, shareable) = policy.idle_view(w).unwrap_or((false, false));
                    views[w] = WorkerView { parked: parked[w], waiting, shareable };
                }
                if let Some(w) = grants.tick(t, &views, policy.wait_queue_waiting(), idle.wake_delay_ns) {
                    parked[w] = false;
                    parked_total += t - parked_since[w];
                    wakeups += 1;
                    idle_since[w] = None;
                    available_at[w] = t + idle.wake_ns;
                    push(&mut heap, available_at[w], Event::Woken);
                }
                if completed_count < requests.len() {
                    push(&mut heap, t + GRANT_PERIOD_NS, Event::GrantTick);
                }
            }
            Event::SliceEnd(w) => {
                let Some(mut r) = running[w].take() else { continue };
                let ran = t - r.slice_start;
                r.req.remaining_ns -= ran.min(r.req.remaining_ns);
                if r.req.remaining_ns == 0 {
                    latency[r.req.id] = t - r.req.arrival_ns;
                    done[r.req.id] = true;
                    completed_count += 1;
                    policy.completed(w, &r.req, &mut ctx);
                } else {
                    match policy.quantum_end(w, &r.req, &mut ctx) {
                        QuantumEnd::Continue(q) => {
                            let slice = q.min(r.req.remaining_ns);
                            running[w] = Some(Running { req: r.req, slice_start: t });
                            push(&mut heap, t + slice, Event::SliceEnd(w));
                        }
                        QuantumEnd::Preempt => {
                            preemptions += 1;
                            free_at[w] = t + ctx.overheads.preempt_ns;
                            policy.preempted(w, r.req, &mut ctx);
                        }
                    }
                }
            }
        }
        // Idle workers take work (in index order: deterministic).
        for w in 0..workers {
            if running[w].is_some() || parked[w] || t < available_at[w] {
                continue;
            }
            let Some(p) = policy.next(w, &mut ctx) else {
                idle_since[w].get_or_insert(t);
                continue;
            };
            idle_since[w] = None;
            let start = t.max(free_at[w]).max(p.ready_at) + p.overhead_ns;
            if first_start[p.req.id] == u64::MAX {
                first_start[p.req.id] = start;
            }
            let slice = p.quantum.map_or(p.req.remaining_ns, |q| q.min(p.req.remaining_ns));
            running[w] = Some(Running { req: p.req, slice_start: start });
            push(&mut heap, start + slice, Event::SliceEnd(w));
        }
    }

    for w in 0..workers {
        if parked[w] {
            parked_total += end.saturating_sub(parked_since[w]);
        }
    }
    let cores_in_use = if end == 0 { workers as f64 } else { workers as f64 - parked_total as f64 / end as f64 };
    let completed = done.iter().filter(|d| **d).count();
    let waits: Vec<f64> =
        (0..requests.len()).filter(|&i| done[i]).map(|i| (first_start[i] - requests[i].arrival_ns) as f64).collect();
    let mut slow: Vec<u64> = (0..requests.len())
        .filter(|&i| done[i])
        .map(|i| (latency[i] as f64 / requests[i].service_ns.max(1) as f64 * 1000.0) as u64)
        .collect();
    slow.sort_unstable();
    let mut all: Vec<u64> = (0..requests.len()).filter(|&i| done[i]).map(|i| latency[i]).collect();
    all.sort_unstable();
    let classes = classes
        .iter()
        .enumerate()
        .map(|(c, &service_ns)| {
            let mut l: Vec<u64> =
                (0..requests.len()).filter(|&i| done[i] && requests[i].class == c).map(|i| latency[i]).collect();
            l.sort_unstable();
            let (p99, p999) = (percentile(&l, 99.0), percentile(&l, 99.9));
            SimClass {
                service_ns,
                count: l.len(),
                mean_latency_ns: if l.is_empty() { 0.0 } else { l.iter().sum::<u64>() as f64 / l.len() as f64 },
                p50_ns: percentile(&l, 50.0),
                p99_ns: p99,
                p999_ns: p999,
                slowdown_p99: p99 as f64 / service_ns.max(1) as f64,
                slowdown_p999: p999 as f64 / service_ns.max(1) as f64,
            }
        })
        .collect();
    SimResult {
        policy: policy.name(),
        workers,
        offered_rps: 0.0,
        completed,
        mean_wait_ns: if waits.is_empty() { 0.0 } else { waits.iter().sum::<f64>() / waits.len() as f64 },
        overall_slowdown_p999: percentile(&slow, 99.9) as f64 / 1000.0,
        overall_p99_ns: percentile(&all, 99.0),
        overall_slowdown_p99: percentile(&slow, 99.0) as f64 / 1000.0,
        end_ns: end,
        preemptions,
        steals: ctx.steals,
        classes,
        cores_in_use,
        wakeups,
    }
}
