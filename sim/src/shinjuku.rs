//! Shinjuku's figures, simulated at the paper's scale (issue 19) with the faithful dispatcher
//! model (`dispatched.rs`).
//!
//! The paper's server has 16 hyperthreads. IX and ZygOS use all 16 as workers; Shinjuku(16) gives
//! two to the networker and the dispatcher and runs 14 workers. Here IX is d-FCFS over RSS queues
//! and ZygOS an ideal c-FCFS (no stealing cost), both at 16 workers; Shinjuku runs 14 workers and
//! pays its dispatcher's costs. 1,920 flows, as the paper's load generator. Loads are fractions of
//! the 16 workers' capacity.
//!
//! - Fig. 5c: Bimodal(99.5-0.5, 0.5-500), SQ with preempted requests to the tail; p99 latency;
//!   the highest load with p99 ≤ 300 µs (the paper: 5× IX's).
//! - Fig. 6a/6b: Bimodal(50-1, 50-100) and Trimodal(33-1, 33-10, 33-100); MQ with preempted
//!   requests to the head (the paper's configuration) and SQ to the tail; p99 slowdown; the highest
//!   load with p99 slowdown ≤ 10 and ≤ 50 (the paper: over 2× IX's and ZygOS's).
//! - Fig. 7b: 1 µs requests, 1 to 22 workers, one or two dispatchers: throughput at saturation.
//!   The paper: one dispatcher scales about linearly to 11 workers and 5 M req/s, two reach
//!   9.5 M over 22.

use super::api_policy::ApiPolicy;
use super::dispatched::{Dispatched, ShinjukuCosts, PAPER_PREEMPT_NS};
use super::policy::{CFcfs, Policy};
use super::{arrivals, engine, Overheads};
use serde::Serialize;
use std::fmt::Write;
use synergy_eval::plot::{line_panel, svg_page, Series};
use synergy_eval::workload::{RequestType, Workload, WorkloadName};
use synergy_policy::shinjuku::{PreemptedTo, ShinjukuPolicy};

/// Workers of the paper's baselines.
pub const BASELINE_WORKERS: usize = 16;
/// Shinjuku's workers (two of the 16 cores run its dispatcher and network).
pub const SHINJUKU_WORKERS: usize = 14;
/// Client flows.
pub const FLOWS: u32 = 1920;
/// Shinjuku's quantum (ns).
pub const QUANTUM_NS: u64 = 5_000;
/// Fig. 5c's p99 bound (ns).
pub const FIG5C_P99_BOUND_NS: u64 = 300_000;
/// Fig. 6's p99 slowdown bounds.
pub const FIG6_SLOWDOWN_BOUNDS: [f64; 2] = [10.0, 50.0];
/// Resuming a preempted request's context: ~100 cycles at 2.3 GHz (Table 2).
pub const PAPER_SWITCH_NS: u64 = 43;
/// Fig. 7b's worker-side cost per request besides its 1 µs of service: 11 workers at 5 M req/s
/// spend 2.2 µs per request; less 1 µs of service, the 91 ns hand-off and the 46 ns mailbox.
pub const FIG7B_WORKER_NS: u64 = 1_060;
/// Fig. 7b's worker counts.
pub const FIG7B_WORKERS: [usize; 12] = [1, 2, 4, 6, 8, 10, 11, 12, 14, 16, 18, 22];
/// Dispatcher costs per request Fig. 7b is run with: the paper's message costs, and the cost at
/// which one dispatcher would cap at exactly 5 M req/s (the pessimistic reading of Fig. 7b).
pub const FIG7B_DISPATCH_NS: [u64; 2] = [91, 200];

#[derive(Debug, Clone)]
/// How the Shinjuku paper's figures are simulated.
pub struct ShinjukuParams {
    /// Fractions of the 16 baseline workers' capacity.
    pub loads: Vec<f64>,
    /// Requests per point.
    pub requests: usize,
    /// Seed of the arrivals and service times.
    pub seed: u64,
    /// Requests per Fig. 7b point (offered above capacity; throughput = completed / makespan).
    pub scale_requests: usize,
}

impl Default for ShinjukuParams {
    fn default() -> Self {
        ShinjukuParams {
            loads: (1..=19).map(|i| f64::from(i) * 0.05).collect(),
            requests: 100_000,
            seed: 1,
            scale_requests: 100_000,
        }
    }
}

/// One system at one load.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    /// The figure.
    pub figure: &'static str,
    /// The system.
    pub system: String,
    /// Its workers.
    pub workers: usize,
    /// The load (fraction of the baselines' capacity).
    pub load: f64,
    /// The offered rate, requests per second.
    pub offered_rps: f64,
    /// Every request completed.
    pub completed_all: bool,
    /// The system kept up with the offered load: its last request finished within twice the
    /// longest service time of the last arrival. A finite run of an overloaded system still ends
    /// (the backlog drains after the arrivals stop) and its p99 can look fine when the backlog is
    /// all long requests; this tells such a point apart.
    pub kept_up: bool,
    /// p99 latency (ns).
    pub p99_ns: u64,
    /// p99 slowdown.
    pub slowdown_p99: f64,
    /// Per request type: p99 latency and its slowdown (per-type tails).
    pub class_p99_ns: Vec<u64>,
    /// Per request type: its p99 slowdown.
    pub class_slowdown_p99: Vec<f64>,
    /// Preemptions taken.
    pub preemptions: u64,
}

/// The highest offered load of one system under one bound (0 if none met it).
#[derive(Debug, Clone, Serialize)]
pub struct FigureMax {
    /// The figure.
    pub figure: &'static str,
    /// The system.
    pub system: String,
    /// "p99 <= 300 us" or "p99 slowdown <= 10".
    pub bound: String,
    /// The highest offered load that met it (requests per second).
    pub max_rps: f64,
}

/// Fig. 7b: throughput at saturation.
#[derive(Debug, Clone, Serialize)]
pub struct ScalePoint {
    /// Dispatcher cores.
    pub dispatchers: usize,
    /// The dispatcher's cost per request (ns).
    pub dispatch_ns: u64,
    /// Workers.
    pub workers: usize,
    /// Requests completed per second.
    pub throughput_rps: f64,
}

#[derive(Debug, Clone, Serialize)]
/// Every Shinjuku figure, simulated.
pub struct ShinjukuResult {
    /// Requests per point.
    pub requests_per_point: usize,
    /// The dispatcher costs used.
    pub costs: ShinjukuCosts,
    /// The worker's preemption cost (ns).
    pub preempt_ns: u64,
    /// The context switch's cost (ns).
    pub switch_ns: u64,
    /// MQ's SLO per request type and figure: each type's p99 run alone under SQ at its share of
    /// half the capacity (the paper's method), ns.
    pub mq_slo_ns: Vec<(&'static str, Vec<u64>)>,
    /// Figs. 5 and 6: every system at every load.
    pub curves: Vec<CurvePoint>,
    /// The highest load under each bound.
    pub max: Vec<FigureMax>,
    /// Fig. 7b.
    pub scale: Vec<ScalePoint>,
}

impl ShinjukuResult {
    /// The highest load of `system` in `figure` under `bound` (0 if none).
    pub fn max_rps(&self, figure: &str, system: &str, bound: &str) -> f64 {
        self.max
            .iter()
            .find(|m| m.figure == figure && m.system == system && m.bound == bound)
            .map_or(0.0, |m| m.max_rps)
    }

    /// Fig. 7b's throughput for that configuration (0 if not run).
    pub fn throughput(&self, dispatchers: usize, dispatch_ns: u64, workers: usize) -> f64 {
        self.scale
            .iter()
            .find(|s| s.dispatchers == dispatchers && s.dispatch_ns == dispatch_ns && s.workers == workers)
            .map_or(0.0, |s| s.throughput_rps)
    }
}

fn shinjuku_overheads() -> Overheads {
    Overheads { dispatch_ns: 0, preempt_ns: PAPER_PREEMPT_NS, switch_ns: PAPER_SWITCH_NS, steal_ns: 0 }
}

/// One system of a figure: its name, worker count and how to build it.
struct System {
    name: &'static str,
    workers: usize,
    build: Box<dyn Fn() -> Box<dyn Policy>>,
    overheads: Overheads,
}

fn baselines() -> Vec<System> {
    vec![
        System {
            name: "d-FCFS (IX)",
            workers: BASELINE_WORKERS,
            build: Box::new(|| {
                Box::new(ApiPolicy::builtin(synergy_policy::system::SchedPolicy::Dfcfs, BASELINE_WORKERS, 0))
            }),
            overheads: Overheads::ZERO,
        },
        System {
            name: "c-FCFS (ZygOS)",
            workers: BASELINE_WORKERS,
            build: Box::new(|| Box::new(CFcfs::default())),
            overheads: Overheads::ZERO,
        },
    ]
}

fn shinjuku_system(name: &'static str, policy: ShinjukuPolicy) -> System {
    System {
        name,
        workers: SHINJUKU_WORKERS,
        build: Box::new(move || {
            Box::new(Dispatched::new(name, policy.clone(), ShinjukuCosts::PAPER, SHINJUKU_WORKERS))
        }),
        overheads: shinjuku_overheads(),
    }
}

/// MQ's SLOs by the paper's method: each type alone under SQ (preempted to the head) on `workers`
/// workers at its share of `rps`; its p99.
pub fn calibrate_slos(workload: &Workload, workers: usize, rps: f64, requests: usize, seed: u64) -> Vec<u64> {
    let policy = ShinjukuPolicy { preempted_to: PreemptedTo::Head, ..ShinjukuPolicy::sq_tail(QUANTUM_NS) };
    workload
        .types
        .iter()
        .map(|t| {
            let alone = Workload { name: "alone", types: vec![RequestType { share: 1.0, ..*t }], keys: 0 };
            let reqs = arrivals(&alone, rps * t.share, requests, workers, FLOWS, seed);
            let mut p = Dispatched::new("sq-alone", policy.clone(), ShinjukuCosts::PAPER, workers);
            let r = engine::run(&mut p, &reqs, workers, shinjuku_overheads(), &[t.service_ns]);
            r.classes[0].p99_ns.max(1)
        })
        .collect()
}

fn curve(figure: &'static str, workload: &Workload, systems: &[System], p: &ShinjukuParams) -> Vec<CurvePoint> {
    let capacity = workload.capacity_rps(BASELINE_WORKERS);
    let classes: Vec<u64> = workload.types.iter().map(|t| t.service_ns).collect();
    let mut out = Vec::new();
    for s in systems {
        for &load in &p.loads {
            let rps = load * capacity;
            let reqs = arrivals(workload, rps, p.requests, s.workers, FLOWS, p.seed);
            let mut policy = (s.build)();
            let r = engine::run(policy.as_mut(), &reqs, s.workers, s.overheads, &classes);
            let last_arrival = reqs.last().map_or(0, |q| q.arrival_ns);
            let drain_allowance = 2 * classes.iter().copied().max().unwrap_or(0);
            out.push(CurvePoint {
                figure,
                system: s.name.to_string(),
                workers: s.workers,
                load,
                offered_rps: rps,
                completed_all: r.completed == reqs.len(),
                kept_up: r.completed == reqs.len() && r.end_ns <= last_arrival + drain_allowance,
                p99_ns: r.overall_p99_ns,
                slowdown_p99: r.overall_slowdown_p99,
                class_p99_ns: r.classes.iter().map(|c| c.p99_ns).collect(),
                class_slowdown_p99: r.classes.iter().map(|c| c.slowdown_p99).collect(),
                preemptions: r.preemptions,
            });
        }
    }
    out
}

fn maxima(
    curves: &[CurvePoint],
    figure: &'static str,
    bound: &str,
    ok: impl Fn(&CurvePoint) -> bool,
) -> Vec<FigureMax> {
    let mut systems: Vec<&str> = curves.iter().filter(|c| c.figure == figure).map(|c| c.system.as_str()).collect();
    systems.dedup();
    systems
        .into_iter()
        .map(|system| FigureMax {
            figure,
            system: system.to_string(),
            bound: bound.to_string(),
            max_rps: curves
                .iter()
                .filter(|c| c.figure == figure && c.system == system && c.kept_up && ok(c))
                .map(|c| c.offered_rps)
                .fold(0.0, f64::max),
        })
        .collect()
}

/// Fig. 7b: 1 µs requests offered at 1.5× what the workers could serve without any overhead.
pub fn scale_point(dispatchers: usize, dispatch_ns: u64, workers: usize, requests: usize, seed: u64) -> ScalePoint {
    let one_us = Workload {
        name: "fixed-1us",
        types: vec![RequestType { service_ns: 1_000, sd_ns: 0, share: 1.0, long: false, keyed: false }],
        keys: 0,
    };
    let reqs = arrivals(&one_us, 1.5 * one_us.capacity_rps(workers), requests, workers, FLOWS, seed);
    let costs = ShinjukuCosts { dispatch_ns, worker_request_ns: FIG7B_WORKER_NS, ..ShinjukuCosts::PAPER };
    let policy = ShinjukuPolicy { dispatchers, ..ShinjukuPolicy::sq_tail(QUANTUM_NS) };
    let mut p = Dispatched::new("shinjuku", policy, costs, workers);
    let r = engine::run(&mut p, &reqs, workers, shinjuku_overheads(), &[1_000]);
    ScalePoint { dispatchers, dispatch_ns, workers, throughput_rps: r.completed as f64 * 1e9 / r.end_ns.max(1) as f64 }
}

/// Runs every figure with `p`.
pub fn run(p: &ShinjukuParams) -> ShinjukuResult {
    let mut progress = synergy_eval::progress::task("synergy sim shinjuku", 4, "figures");
    let extreme = Workload::named(WorkloadName::Extreme);
    let mut fig5c = baselines();
    fig5c.push(shinjuku_system("shinjuku SQ (tail)", ShinjukuPolicy::sq_tail(QUANTUM_NS)));
    let mut curves = curve("fig5c", &extreme, &fig5c, p);
    progress.inc();

    let mut mq_slo_ns = Vec::new();
    for (figure, name) in [("fig6a", WorkloadName::High), ("fig6b", WorkloadName::Trimodal)] {
        let w = Workload::named(name);
        let slo = calibrate_slos(
            &w,
            SHINJUKU_WORKERS,
            0.5 * w.capacity_rps(BASELINE_WORKERS),
            p.requests.min(50_000),
            p.seed,
        );
        let mut systems = baselines();
        systems.push(shinjuku_system("shinjuku SQ (tail)", ShinjukuPolicy::sq_tail(QUANTUM_NS)));
        let mq = ShinjukuPolicy::mq_head(slo.clone(), QUANTUM_NS);
        systems.push(shinjuku_system("shinjuku MQ (head)", mq));
        curves.extend(curve(figure, &w, &systems, p));
        mq_slo_ns.push((figure, slo));
        progress.inc();
    }

    let mut max = maxima(&curves, "fig5c", "p99 <= 300 us", |c| c.p99_ns <= FIG5C_P99_BOUND_NS);
    for figure in ["fig6a", "fig6b"] {
        for bound in FIG6_SLOWDOWN_BOUNDS {
            max.extend(maxima(&curves, figure, &format!("p99 slowdown <= {bound}"), |c| c.slowdown_p99 <= bound));
        }
    }

    let mut scale = Vec::new();
    for dispatch_ns in FIG7B_DISPATCH_NS {
        for dispatchers in [1, 2] {
            for workers in FIG7B_WORKERS.into_iter().filter(|&w| w >= dispatchers) {
                scale.push(scale_point(dispatchers, dispatch_ns, workers, p.scale_requests, p.seed));
            }
        }
    }
    progress.inc();
    ShinjukuResult {
        requests_per_point: p.requests,
        costs: ShinjukuCosts::PAPER,
        preempt_ns: PAPER_PREEMPT_NS,
        switch_ns: PAPER_SWITCH_NS,
        mq_slo_ns,
        curves,
        max,
        scale,
    }
}

/// The highest loads under each bound, with ratios to the baselines, and Fig. 7b's throughputs.
pub fn table(r: &ShinjukuResult) -> String {
    let mut s = String::new();
    let mut keys: Vec<(&str, &str)> = r.max.iter().map(|m| (m.figure, m.bound.as_str())).collect();
    keys.dedup();
    for (figure, bound) in keys {
        let _ = writeln!(s, "Shinjuku {figure} (simulated), highest load with {bound}:");
        let rows: Vec<&FigureMax> = r.max.iter().filter(|m| m.figure == figure && m.bound == bound).collect();
        let best_fcfs =
            rows.iter().filter(|m| !m.system.starts_with("shinjuku")).map(|m| m.max_rps).fold(0.0, f64::max);
        for m in rows {
            let ratio =
                if best_fcfs > 0.0 { format!("{:.2}x the better FCFS", m.max_rps / best_fcfs) } else { "-".into() };
            let _ = writeln!(s, "  {:<20} {:>8.0}k  {ratio}", m.system, m.max_rps / 1e3);
        }
    }
    for (figure, slo) in &r.mq_slo_ns {
        let slo: Vec<String> = slo.iter().map(|v| format!("{:.1}", *v as f64 / 1e3)).collect();
        let _ = writeln!(s, "MQ SLOs for {figure} (µs, per type): {}", slo.join(", "));
    }
    let _ = writeln!(s, "Shinjuku fig7b (simulated): throughput at saturation, M req/s");
    let _ = writeln!(s, "  {:<26} {}", "workers", FIG7B_WORKERS.map(|w| format!("{w:>5}")).join(""));
    for ns in FIG7B_DISPATCH_NS {
        for d in [1, 2] {
            let row: String = FIG7B_WORKERS
                .iter()
                .map(|&w| match r.throughput(d, ns, w) {
                    0.0 => format!("{:>5}", "-"),
                    t => format!("{:>5.1}", t / 1e6),
                })
                .collect();
            let _ = writeln!(s, "  {:<26} {row}", format!("{d} dispatcher(s), {ns} ns"));
        }
    }
    s
}

/// The curves as CSV, one row per system, load and request type.
pub fn csv(r: &ShinjukuResult) -> String {
    let mut table = synergy_eval::csv::CsvTable::new(&[
        "figure",
        "system",
        "workers",
        "load",
        "offered_rps",
        "completed_all",
        "kept_up",
        "p99_ns",
        "slowdown_p99",
        "class",
        "class_p99_ns",
        "class_slowdown_p99",
        "preemptions",
    ]);
    for c in &r.curves {
        for k in 0..c.class_p99_ns.len() {
            table.row([
                c.figure.to_string(),
                c.system.to_string(),
                c.workers.to_string(),
                format!("{:.2}", c.load),
                format!("{:.0}", c.offered_rps),
                c.completed_all.to_string(),
                c.kept_up.to_string(),
                c.p99_ns.to_string(),
                format!("{:.2}", c.slowdown_p99),
                k.to_string(),
                c.class_p99_ns[k].to_string(),
                format!("{:.2}", c.class_slowdown_p99[k]),
                c.preemptions.to_string(),
            ]);
        }
    }
    for p in &r.scale {
        table.row([
            String::from("fig7b"),
            format!("shinjuku {} dispatcher(s) {} ns", p.dispatchers, p.dispatch_ns),
            p.workers.to_string(),
            String::new(),
            format!("{:.0}", p.throughput_rps),
            String::from("true"),
            String::from("true"),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    table.finish()
}

/// Fig. 5c (p99 µs), 6a and 6b (p99 slowdown), log y, against offered load in M req/s; Fig. 7b
/// (throughput in M req/s against workers).
pub fn svg(r: &ShinjukuResult) -> String {
    let series = |figure: &str, y: &dyn Fn(&CurvePoint) -> f64| -> Vec<Series> {
        let mut systems: Vec<&str> =
            r.curves.iter().filter(|c| c.figure == figure).map(|c| c.system.as_str()).collect();
        systems.dedup();
        systems
            .into_iter()
            .map(|system| Series {
                name: system.to_string(),
                // Points where the system fell behind are left out (their tail grows with the run).
                points: r
                    .curves
                    .iter()
                    .filter(|c| c.figure == figure && c.system == system && c.kept_up)
                    .map(|c| (c.offered_rps / 1e6, y(c).max(1e-3)))
                    .collect(),
            })
            .collect()
    };
    let scale: Vec<Series> = FIG7B_DISPATCH_NS
        .into_iter()
        .flat_map(|ns| [1, 2].map(move |d| (d, ns)))
        .map(|(d, ns)| Series {
            name: format!("{d} dispatcher(s), {ns} ns"),
            points: r
                .scale
                .iter()
                .filter(|p| p.dispatchers == d && p.dispatch_ns == ns)
                .map(|p| (p.workers as f64, p.throughput_rps / 1e6))
                .collect(),
        })
        .collect();
    let (w, h) = (520.0, 380.0);
    let x = "offered load (M req/s)";
    let p99_us = |c: &CurvePoint| c.p99_ns as f64 / 1e3;
    let slowdown = |c: &CurvePoint| c.slowdown_p99;
    svg_page(
        2.0 * w,
        2.0 * h,
        &[
            line_panel(
                0.0,
                0.0,
                w,
                h,
                "Shinjuku Fig. 5c (simulated): Bimodal(99.5-0.5, 0.5-500)",
                x,
                "p99 (µs)",
                &series("fig5c", &p99_us),
                true,
            ),
            line_panel(
                w,
                0.0,
                w,
                h,
                "Shinjuku Fig. 6a (simulated): Bimodal(50-1, 50-100)",
                x,
                "p99 slowdown",
                &series("fig6a", &slowdown),
                true,
            ),
            line_panel(
                0.0,
                h,
                w,
                h,
                "Shinjuku Fig. 6b (simulated): Trimodal(33-1, 33-10, 33-100)",
                x,
                "p99 slowdown",
                &series("fig6b", &slowdown),
                true,
            ),
            line_panel(
                w,
                h,
                w,
                h,
                "Shinjuku Fig. 7b (simulated): 1 µs requests at saturation",
                "workers",
                "throughput (M req/s)",
                &scale,
                false,
            ),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small grid shows the paper's orderings: SQ preemption sustains more of Bimodal(99.5-0.5,
    /// 0.5-500) under 300 µs than d-FCFS; MQ more of Bimodal(50-1, 50-100) under slowdown 10 than
    /// either FCFS; one dispatcher flattens where its cost caps it, two go further.
    #[test]
    fn the_papers_orderings_hold_on_a_small_grid() {
        let p = ShinjukuParams { loads: vec![0.1, 0.3, 0.5, 0.7], requests: 20_000, seed: 1, scale_requests: 20_000 };
        let r = run(&p);
        let b = "p99 <= 300 us";
        assert!(r.max_rps("fig5c", "shinjuku SQ (tail)", b) > r.max_rps("fig5c", "d-FCFS (IX)", b), "{:?}", r.max);
        let b = "p99 slowdown <= 10";
        let mq = r.max_rps("fig6a", "shinjuku MQ (head)", b);
        assert!(
            mq > r.max_rps("fig6a", "d-FCFS (IX)", b) && mq > r.max_rps("fig6a", "c-FCFS (ZygOS)", b),
            "{:?}",
            r.max
        );
        assert_eq!(r.mq_slo_ns.len(), 2);
        assert!(r.curves.iter().all(|c| c.class_p99_ns.len() >= 2), "per-type tails");
        // 200 ns a request: one dispatcher stays near 5 M at 22 workers; two pass it.
        let one = r.throughput(1, 200, 22);
        assert!((4.5e6..=5.0e6).contains(&one), "{one}");
        assert!(r.throughput(2, 200, 22) > 1.6 * one);
        // Below the cap, throughput grows with the workers.
        assert!(r.throughput(1, 91, 8) > 1.9 * r.throughput(1, 91, 4));
    }
}
