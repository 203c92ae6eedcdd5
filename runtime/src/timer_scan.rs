//! What one timer core costs per worker it watches (issue 23): the timer core's own loop body
//! (`timer_core::scan_workers`) run over fake workers, no worker threads, so that 30 workers can
//! be measured on a 2-CPU machine. Hermes reports ≤ 17 ns per thread checked; the goal here is
//! ≤ 20 ns per worker per scan, so that one timer core serves a whole socket.
//!
//! Three worker states, each the same for every worker of a scan:
//! * `disarmed`: no long request runs (one load per worker);
//! * `running`: a long request within its quantum (one load and a compare);
//! * `expired`: every quantum expired and work waits, so every worker is preempted on every scan
//!   (the generation loads, the queue check, the quantum, the CAS, the generation store and a call
//!   to the preempter, here one that sends nothing: the send is the microbenchmark's). Each scan
//!   gets a `now` one second past the previous one, so every deadline has expired again.
//!
//! The real loop reads the clock and ticks the congestion control once per loop as well; the
//! `disarmed` and `running` runs include both (they use the real clock), `expired` includes the
//! tick.

use crate::config::Config;
use crate::policy::timer::QuantumControl;
use crate::preempt::NoPreempter;
use crate::request::Request;
use crate::stats::TimerStats;
use crate::timer_core::scan_workers;
use crate::transport::channel::ChannelTransport;
use crate::worker::Shared;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// The state every worker of a scan is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// No request armed a timer: the scan's one load and nothing more.
    Disarmed,
    /// Armed, quantum not yet expired: a load and a compare.
    Running,
    /// Quantum expired with work waiting: the scan decides a preemption for every worker.
    Expired,
}

impl WorkerState {
    /// Every state, in the order the benchmark reports them.
    pub const ALL: [WorkerState; 3] = [WorkerState::Disarmed, WorkerState::Running, WorkerState::Expired];

    /// The state's name in the benchmark's output.
    pub fn name(self) -> &'static str {
        match self {
            WorkerState::Disarmed => "disarmed",
            WorkerState::Running => "running",
            WorkerState::Expired => "expired",
        }
    }
}

/// One measurement: `loops` timer-core loops over `workers` workers in `state`.
#[derive(Debug, Clone)]
pub struct ScanCost {
    /// Fake workers the timer core watched.
    pub workers: usize,
    /// The state all of them were in.
    pub state: WorkerState,
    /// Timer-core loops measured.
    pub loops: u64,
    /// Mean time of one loop (clock read, congestion tick, scan).
    pub ns_per_loop: f64,
    /// `ns_per_loop / workers`: the cost per worker watched, fixed costs included.
    pub ns_per_worker: f64,
    /// Loop period quantiles (ns) from per-loop clock deltas: p50, p99, p99.9, max.
    pub period_ns: [u64; 4],
    /// Preemptions the scans decided (`expired`: workers × loops; else 0).
    pub preempts: u64,
}

/// Runs `loops` loops of the timer core over `workers` fake workers in `state`.
pub fn measure(workers: usize, state: WorkerState, loops: u64) -> ScanCost {
    assert!(workers >= 1 && loops >= 1);
    crate::clock::init();
    let config = Config { workers, rx_capacity: 4, ..Config::default() };
    let transport = Arc::new(ChannelTransport::new(workers, 4, 4));
    let scheduler = Arc::from(crate::policy::builtin::builtin(config.policy, &config.builtin_params()));
    let shared = Shared::new(&config, transport, Arc::new(|_: Request| {}), false, Arc::new(NoPreempter), scheduler);
    let stats = TimerStats::default();
    let now0 = crate::clock::now_ns();
    for w in shared.workers.iter() {
        let deadline = match state {
            WorkerState::Disarmed => crate::policy::timer::DISARMED,
            WorkerState::Running => u64::MAX - 1,
            WorkerState::Expired => now0,
        };
        w.deadline.store(deadline, Ordering::Relaxed);
        if state == WorkerState::Expired {
            // Work waits in every worker's queue, so each expiry is a preemption.
            w.rx.push(Request::default()).expect("an empty ring has room");
        }
    }
    let wq = &shared.wait_queue;
    let mut control =
        QuantumControl::new(config.quantum_factor, config.congested_quantum_factor, 20_000, now0, wq.producer_index());
    let mut periods = Vec::with_capacity(loops.min(1 << 22) as usize);
    let t0 = Instant::now();
    let mut last = crate::clock::now_ns();
    let mut fake_now = now0;
    for _ in 0..loops {
        let real = crate::clock::now_ns();
        if periods.len() < periods.capacity() {
            periods.push(real - last);
        }
        last = real;
        let now = match state {
            WorkerState::Expired => {
                fake_now += 1_000_000_000;
                fake_now
            }
            _ => real,
        };
        control.tick(now, wq.producer_index(), wq.consumer_index());
        scan_workers(&shared, now, control.factor(), &stats);
    }
    let elapsed = t0.elapsed().as_nanos() as f64;
    periods.sort_unstable();
    let q = |f: f64| periods[((periods.len() - 1) as f64 * f) as usize];
    let ns_per_loop = elapsed / loops as f64;
    ScanCost {
        workers,
        state,
        loops,
        ns_per_loop,
        ns_per_worker: ns_per_loop / workers as f64,
        period_ns: [q(0.5), q(0.99), q(0.999), *periods.last().unwrap()],
        preempts: stats.interrupts_sent.load(Ordering::Relaxed),
    }
}

/// The least-squares slope of `ns_per_loop` over the worker counts: the marginal cost of one more
/// worker, without the loop's fixed costs.
pub fn marginal_ns_per_worker(costs: &[ScanCost]) -> f64 {
    let n = costs.len() as f64;
    let mx = costs.iter().map(|c| c.workers as f64).sum::<f64>() / n;
    let my = costs.iter().map(|c| c.ns_per_loop).sum::<f64>() / n;
    let sxy: f64 = costs.iter().map(|c| (c.workers as f64 - mx) * (c.ns_per_loop - my)).sum();
    let sxx: f64 = costs.iter().map(|c| (c.workers as f64 - mx).powi(2)).sum();
    if sxx == 0.0 {
        f64::NAN
    } else {
        sxy / sxx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_workers_are_preempted_on_every_scan_and_others_never() {
        let c = measure(3, WorkerState::Expired, 50);
        assert_eq!(c.preempts, 150, "every worker, every scan");
        for state in [WorkerState::Disarmed, WorkerState::Running] {
            assert_eq!(measure(3, state, 50).preempts, 0, "{state:?}");
        }
    }

    #[test]
    fn the_marginal_cost_is_the_slope() {
        let at = |workers, ns_per_loop| ScanCost {
            workers,
            state: WorkerState::Running,
            loops: 1,
            ns_per_loop,
            ns_per_worker: 0.0,
            period_ns: [0; 4],
            preempts: 0,
        };
        let s = marginal_ns_per_worker(&[at(1, 25.0), at(2, 30.0), at(30, 170.0)]);
        assert!((s - 5.0).abs() < 1e-9, "{s}");
    }
}
