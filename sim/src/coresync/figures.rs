//! The papers' experiments on the model (issue 18):
//!
//! - CoreSync Table I: goodput at 1.0, 1.3 and 1.5× capacity, CoreSync against Shenango's
//!   uncoupled rule, the utilisation range and static allocation, normalised to CoreSync;
//! - CoreSync Fig. 3: p99 against cores in use at 0.2, 0.5 and 0.8× capacity;
//! - CoreSync Fig. 7: R from 10 to 100 at the same loads;
//! - Hermes's burst test: 1 µs requests, 100 k ↔ 5 M req/s every phase, 14 cores, no credits;
//!   p99.9 per 10 ms window, next to the 54 µs Hermes reports for its best variant.
//!
//! Every point is run with each seed (a seed is one arrival sequence); runs go on the machine's
//! cores in parallel and the results do not depend on how many.

use super::engine;
use super::{capacity_rps, Allocator, Outcome, Phase, Service, Setup};
use serde::Serialize;
use std::fmt::Write;
use synergy_eval::plot::{line_panel, svg_page, Series};

/// CoreSync's Table I: loads as fractions of capacity.
pub const TABLE1_LOADS: [f64; 3] = [1.0, 1.3, 1.5];
/// CoreSync's Fig. 3: loads as fractions of capacity.
pub const FIG3_LOADS: [f64; 3] = [0.2, 0.5, 0.8];
/// CoreSync's Fig. 7: the values of R compared.
pub const FIG7_R: [f64; 4] = [10.0, 20.0, 50.0, 100.0];
/// CoreSync's R for synthetic workloads.
pub const PAPER_R: f64 = 50.0;
/// Hermes's burst test (§4.2): the two rates, its cores, its sessions, and its best variant's
/// p99.9 peak (Hermes Indirect).
pub const BURST_RPS: [f64; 2] = [100_000.0, 5_000_000.0];
/// Cores of Hermes's burst test.
pub const BURST_CORES: usize = 14;
/// Sessions of Hermes's burst test.
pub const BURST_SESSIONS: usize = 50;
/// Hermes Indirect's p99.9 peak in the burst test (ns).
pub const HERMES_BEST_P999_NS: u64 = 54_000;
/// This project's futex wake-up on its KVM host (`synergy sweep idle`: 33-49 µs).
pub const MEASURED_WAKE_NS: u64 = 40_000;

#[derive(Debug, Clone, Serialize)]
/// How long and how often the CoreSync and Hermes figures are simulated.
pub struct FigureParams {
    /// Measured span of each CoreSync point (after a warm-up of a fifth of it).
    pub duration_ns: u64,
    /// One run per seed and point.
    pub seeds: Vec<u64>,
    /// Each rate of the burst test lasts this long (Hermes: 1 s) ...
    pub burst_phase_ns: u64,
    /// ... for this many low-high cycles.
    pub burst_cycles: usize,
    /// Width of the burst test's timeline windows (ns).
    pub burst_window_ns: u64,
}

impl Default for FigureParams {
    fn default() -> Self {
        FigureParams {
            duration_ns: 100_000_000,
            seeds: vec![1, 2, 3],
            burst_phase_ns: 1_000_000_000,
            burst_cycles: 2,
            burst_window_ns: 10_000_000,
        }
    }
}

/// One run of a CoreSync figure.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// `table1`, `fig3` or `fig7`.
    pub figure: &'static str,
    /// The allocator.
    pub allocator: Allocator,
    /// The load (fraction of capacity).
    pub load: f64,
    /// The seed.
    pub seed: u64,
    /// What it measured.
    pub outcome: Outcome,
}

/// A row of Table I: one allocator at one load, goodput averaged over the seeds.
#[derive(Debug, Clone, Serialize)]
pub struct TableRow {
    /// The load (fraction of capacity).
    pub load: f64,
    /// The allocator's name.
    pub allocator: String,
    /// Goodput averaged over the seeds.
    pub goodput_rps: f64,
    /// Goodput over CoreSync's at the same load and seed, averaged over seeds.
    pub normalised: f64,
    /// The same, per seed.
    pub normalised_per_seed: Vec<f64>,
    /// p99 latency, averaged over the seeds (ns).
    pub p99_ns: u64,
    /// Cores in use, averaged over the seeds.
    pub cores_in_use: f64,
    /// Rejects per second, averaged over the seeds.
    pub rejected_rps: f64,
}

#[derive(Debug, Clone, Serialize)]
/// One allocator through Hermes's burst test.
pub struct Burst {
    /// The allocator.
    pub allocator: Allocator,
    /// The wake-up cost simulated (ns).
    pub wake_ns: u64,
    /// What the whole test measured.
    pub outcome: Outcome,
    /// The largest p99.9 of any window, client-side (with the RTT) and at the server.
    pub peak_window_p999_ns: u64,
    /// The largest p99.9 of any window at the server (ns).
    pub peak_window_server_p999_ns: u64,
}

#[derive(Debug, Clone, Serialize)]
/// Every CoreSync and Hermes figure, simulated.
pub struct CoreSyncResult {
    /// How they were run.
    pub params: FigureParams,
    /// The capacity loads are fractions of (requests per second).
    pub capacity_rps: f64,
    /// Table I's rows.
    pub table1: Vec<TableRow>,
    /// Fig. 3's runs.
    pub fig3: Vec<Point>,
    /// Fig. 7's runs.
    pub fig7: Vec<Point>,
    /// The burst test, per allocator.
    pub burst: Vec<Burst>,
    /// Hermes's own best p99.9 peak, for comparison (ns).
    pub hermes_best_p999_ns: u64,
}

/// Runs `setups` on the machine's cores; results in the order given.
fn run_all(setups: &[Setup]) -> Vec<Outcome> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(setups.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<Option<Outcome>> = vec![None; setups.len()];
    let slots = std::sync::Mutex::new(&mut out);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(setup) = setups.get(i) else { break };
                let o = engine::run(setup);
                slots.lock().expect("a run panicked")[i] = Some(o);
            });
        }
    });
    out.into_iter().map(|o| o.expect("every run finished")).collect()
}

fn points(figure: &'static str, grid: &[(Allocator, f64)], p: &FigureParams) -> Vec<Point> {
    let mut keys = Vec::new();
    let mut setups = Vec::new();
    for &(allocator, load) in grid {
        for &seed in &p.seeds {
            keys.push((allocator, load, seed));
            setups.push(Setup::coresync_paper(allocator, load, p.duration_ns, seed));
        }
    }
    run_all(&setups)
        .into_iter()
        .zip(keys)
        .map(|(outcome, (allocator, load, seed))| Point { figure, allocator, load, seed, outcome })
        .collect()
}

fn baselines() -> [Allocator; 4] {
    [Allocator::CoreSync { r: PAPER_R }, Allocator::Shenango, Allocator::UTIL_RANGE, Allocator::Static]
}

/// Hermes's burst test on `allocator` with wake-up cost `wake_ns`.
pub fn burst_setup(allocator: Allocator, wake_ns: u64, p: &FigureParams) -> Setup {
    let phases =
        (0..p.burst_cycles).flat_map(|_| BURST_RPS.map(|rps| Phase { duration_ns: p.burst_phase_ns, rps })).collect();
    Setup {
        cores: BURST_CORES,
        sessions: BURST_SESSIONS,
        one_way_ns: 5_000,
        service: Service::Fixed { ns: 1_000 },
        phases,
        warmup_ns: 0,
        allocator,
        poll_period_ns: 2_000,
        wake_delay_ns: 5_000,
        wake_ns,
        credits: None,
        timeline_ns: p.burst_window_ns,
        seed: p.seeds.first().copied().unwrap_or(1),
    }
}

/// Runs every figure with `p`.
pub fn run(p: &FigureParams) -> CoreSyncResult {
    let mut progress = synergy_eval::progress::task("synergy sim coresync", 4, "figures");
    let table_grid: Vec<(Allocator, f64)> = TABLE1_LOADS.iter().flat_map(|&l| baselines().map(|a| (a, l))).collect();
    let table_points = points("table1", &table_grid, p);
    progress.inc();
    let fig3_grid: Vec<(Allocator, f64)> = FIG3_LOADS.iter().flat_map(|&l| baselines().map(|a| (a, l))).collect();
    let fig3 = points("fig3", &fig3_grid, p);
    progress.inc();
    let fig7_grid: Vec<(Allocator, f64)> =
        FIG3_LOADS.iter().flat_map(|&l| FIG7_R.map(|r| (Allocator::CoreSync { r }, l))).collect();
    let fig7 = points("fig7", &fig7_grid, p);
    progress.inc();
    let burst_runs =
        [(Allocator::Shenango, 5_000), (Allocator::Shenango, MEASURED_WAKE_NS), (Allocator::Static, 5_000)];
    let setups: Vec<Setup> = burst_runs.iter().map(|&(a, w)| burst_setup(a, w, p)).collect();
    let burst = run_all(&setups)
        .into_iter()
        .zip(burst_runs)
        .map(|(outcome, (allocator, wake_ns))| Burst {
            allocator,
            wake_ns,
            peak_window_p999_ns: outcome.timeline.iter().map(|w| w.p999_ns).max().unwrap_or(0),
            peak_window_server_p999_ns: outcome.timeline.iter().map(|w| w.server_p999_ns).max().unwrap_or(0),
            outcome,
        })
        .collect();
    progress.inc();
    CoreSyncResult {
        params: p.clone(),
        capacity_rps: capacity_rps(16, Service::Exponential { mean_ns: 10_000 }),
        table1: table1(&table_points, p),
        fig3,
        fig7,
        burst,
        hermes_best_p999_ns: HERMES_BEST_P999_NS,
    }
}

fn table1(points: &[Point], p: &FigureParams) -> Vec<TableRow> {
    let mut rows = Vec::new();
    for &load in &TABLE1_LOADS {
        for a in baselines() {
            let mine: Vec<&Point> = points.iter().filter(|x| x.load == load && x.allocator == a).collect();
            let per_seed: Vec<f64> = p
                .seeds
                .iter()
                .filter_map(|&seed| {
                    let own = mine.iter().find(|x| x.seed == seed)?;
                    let base = points.iter().find(|x| {
                        x.load == load && x.seed == seed && matches!(x.allocator, Allocator::CoreSync { .. })
                    })?;
                    Some(own.outcome.goodput_rps / base.outcome.goodput_rps.max(1.0))
                })
                .collect();
            let n = mine.len().max(1) as f64;
            let mean = |f: &dyn Fn(&Outcome) -> f64| mine.iter().map(|x| f(&x.outcome)).sum::<f64>() / n;
            rows.push(TableRow {
                load,
                allocator: a.name(),
                goodput_rps: mean(&|o| o.goodput_rps),
                normalised: per_seed.iter().sum::<f64>() / per_seed.len().max(1) as f64,
                normalised_per_seed: per_seed,
                p99_ns: mean(&|o| o.p99_ns as f64) as u64,
                cores_in_use: mean(&|o| o.cores_in_use),
                rejected_rps: mean(&|o| o.rejected_rps),
            });
        }
    }
    rows
}

impl Burst {
    /// The wake-up cost, where cores are woken at all.
    pub fn label(&self) -> String {
        match self.allocator {
            Allocator::Static => "no parking".into(),
            _ => format!("wake {} us", self.wake_ns / 1000),
        }
    }
}

impl CoreSyncResult {
    /// The mean over seeds of `f` for `allocator` at `load` in `figure`'s points.
    pub fn mean(&self, figure: &str, allocator: Allocator, load: f64, f: impl Fn(&Outcome) -> f64) -> f64 {
        let pts: Vec<&Point> = self
            .fig3
            .iter()
            .chain(&self.fig7)
            .filter(|x| x.figure == figure && x.allocator == allocator && x.load == load)
            .collect();
        pts.iter().map(|x| f(&x.outcome)).sum::<f64>() / pts.len().max(1) as f64
    }

    /// Table I's normalised goodput of `allocator` at `load` (0 if not run).
    pub fn normalised(&self, allocator: Allocator, load: f64) -> f64 {
        self.table1
            .iter()
            .find(|r| r.allocator == allocator.name() && r.load == load)
            .map_or(f64::NAN, |r| r.normalised)
    }
}

/// The tables the CLI prints.
pub fn table(r: &CoreSyncResult) -> String {
    let mut s = String::new();
    let cap = r.capacity_rps;
    let _ = writeln!(
        s,
        "CoreSync setup (simulated): 16 cores, exponential 10 µs ({:.2} M req/s capacity), 100 sessions, RTT 10 µs, D_t 80 µs; {} ms per point, seeds {:?}",
        cap / 1e6,
        r.params.duration_ns / 1_000_000,
        r.params.seeds
    );
    let _ = writeln!(s, "\nTable I: goodput normalised to CoreSync (mean over seeds; per seed)");
    for row in &r.table1 {
        let per: Vec<String> = row.normalised_per_seed.iter().map(|v| format!("{v:.3}")).collect();
        let _ = writeln!(
            s,
            "  {:.1}x  {:<26} {:.3}  ({})  goodput {:.3} M/s, rejects {:.0} k/s, p99 {:.0} µs, cores {:.1}",
            row.load,
            row.allocator,
            row.normalised,
            per.join(", "),
            row.goodput_rps / 1e6,
            row.rejected_rps / 1e3,
            row.p99_ns as f64 / 1e3,
            row.cores_in_use
        );
    }
    for (title, figure, allocs) in [
        ("Fig. 3: p99 and cores in use below capacity", "fig3", baselines().to_vec()),
        ("Fig. 7: CoreSync's R", "fig7", FIG7_R.map(|r| Allocator::CoreSync { r }).to_vec()),
    ] {
        let _ = writeln!(s, "\n{title} (mean over seeds)");
        for &load in &FIG3_LOADS {
            for &a in &allocs {
                let _ = writeln!(
                    s,
                    "  {:.1}x  {:<26} p99 {:>6.1} µs  cores {:>5.2}  efficiency {:.2}",
                    load,
                    a.name(),
                    r.mean(figure, a, load, |o| o.p99_ns as f64) / 1e3,
                    r.mean(figure, a, load, |o| o.cores_in_use),
                    r.mean(figure, a, load, |o| o.efficiency),
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "\nHermes burst test (simulated): 1 µs, {:.1} k <-> {:.0} M req/s every {} ms, {} cores; Hermes Indirect's p99.9 peak: {} µs",
        BURST_RPS[0] / 1e3,
        BURST_RPS[1] / 1e6,
        r.params.burst_phase_ns / 1_000_000,
        BURST_CORES,
        r.hermes_best_p999_ns / 1000
    );
    for b in &r.burst {
        let _ = writeln!(
            s,
            "  {:<26} {}: peak p99.9 per {} ms window {:.1} µs at the client ({:.1} µs in the server), overall {:.1} µs; cores {:.2}",
            b.allocator.name(),
            b.label(),
            r.params.burst_window_ns / 1_000_000,
            b.peak_window_p999_ns as f64 / 1e3,
            b.peak_window_server_p999_ns as f64 / 1e3,
            b.outcome.p999_ns as f64 / 1e3,
            b.outcome.cores_in_use
        );
    }
    s
}

/// The results as CSV, one row per run.
pub fn csv(r: &CoreSyncResult) -> String {
    let mut table = synergy_eval::csv::CsvTable::new(&[
        "figure",
        "allocator",
        "load",
        "seed",
        "window_start_ms",
        "offered_rps",
        "goodput_rps",
        "rejected_rps",
        "p99_us",
        "p999_us",
        "server_p999_us",
        "client_wait_p99_us",
        "cores_in_use",
        "efficiency",
        "parks",
        "wakeups",
        "withdrawals",
        "drained_vetoes",
    ]);
    for row in &r.table1 {
        table.row([
            String::from("table1"),
            row.allocator.to_string(),
            row.load.to_string(),
            String::from("mean"),
            String::new(),
            String::new(),
            format!("{:.0}", row.goodput_rps),
            format!("{:.0}", row.rejected_rps),
            format!("{:.2}", row.p99_ns as f64 / 1e3),
            String::new(),
            String::new(),
            String::new(),
            format!("{:.3}", row.cores_in_use),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    for x in r.fig3.iter().chain(&r.fig7) {
        let o = &x.outcome;
        table.row([
            x.figure.to_string(),
            o.allocator.to_string(),
            x.load.to_string(),
            x.seed.to_string(),
            String::new(),
            format!("{:.0}", o.offered_rps),
            format!("{:.0}", o.goodput_rps),
            format!("{:.0}", o.rejected_rps),
            format!("{:.2}", o.p99_ns as f64 / 1e3),
            format!("{:.2}", o.p999_ns as f64 / 1e3),
            format!("{:.2}", o.server_p999_ns as f64 / 1e3),
            format!("{:.2}", o.client_wait_p99_ns as f64 / 1e3),
            format!("{:.3}", o.cores_in_use),
            format!("{:.3}", o.efficiency),
            o.parks.to_string(),
            o.wakeups.to_string(),
            o.withdrawals.to_string(),
            o.drained_vetoes.to_string(),
        ]);
    }
    for b in &r.burst {
        for w in &b.outcome.timeline {
            table.row([
                String::from("burst"),
                format!("{} {}", b.allocator.name(), b.label()),
                String::new(),
                r.params.seeds.first().copied().unwrap_or(1).to_string(),
                format!("{:.0}", w.start_ns as f64 / 1e6),
                format!("{:.0}", w.offered_rps),
                format!("{:.0}", w.completed as f64 * 1e9 / r.params.burst_window_ns as f64),
                String::new(),
                format!("{:.2}", w.p99_ns as f64 / 1e3),
                format!("{:.2}", w.p999_ns as f64 / 1e3),
                String::new(),
                String::new(),
                format!("{:.3}", w.cores_in_use),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
    }
    table.finish()
}

/// The results drawn as an SVG page.
pub fn svg(r: &CoreSyncResult) -> String {
    let by_load = |figure: &str, allocs: &[Allocator], f: &dyn Fn(&Outcome) -> f64| -> Vec<Series> {
        allocs
            .iter()
            .map(|&a| Series {
                name: a.name(),
                points: FIG3_LOADS.iter().map(|&l| (l, r.mean(figure, a, l, f))).collect(),
            })
            .collect()
    };
    let fig3: Vec<Series> = baselines()
        .iter()
        .map(|&a| Series {
            name: a.name(),
            points: FIG3_LOADS
                .iter()
                .map(|&l| (r.mean("fig3", a, l, |o| o.cores_in_use), r.mean("fig3", a, l, |o| o.p99_ns as f64) / 1e3))
                .collect(),
        })
        .collect();
    let table: Vec<Series> = baselines()
        .iter()
        .map(|&a| Series { name: a.name(), points: TABLE1_LOADS.iter().map(|&l| (l, r.normalised(a, l))).collect() })
        .collect();
    let rs = FIG7_R.map(|r| Allocator::CoreSync { r });
    let burst = |f: &dyn Fn(&super::Window) -> f64| -> Vec<Series> {
        r.burst
            .iter()
            .map(|b| Series {
                name: format!("{}, {}", b.allocator.name(), b.label()),
                points: b.outcome.timeline.iter().map(|w| (w.start_ns as f64 / 1e9, f(w))).collect(),
            })
            .collect()
    };
    let (w, h) = (560.0, 380.0);
    svg_page(
        2.0 * w,
        3.0 * h,
        &[
            line_panel(
                0.0,
                0.0,
                w,
                h,
                "CoreSync Fig. 3 (simulated): 0.2, 0.5, 0.8x load",
                "cores in use (of 16)",
                "p99 latency (µs)",
                &fig3,
                false,
            ),
            line_panel(
                w,
                0.0,
                w,
                h,
                "CoreSync Table I (simulated): goodput / CoreSync's",
                "offered load (x capacity)",
                "normalised goodput",
                &table,
                false,
            ),
            line_panel(
                0.0,
                h,
                w,
                h,
                "CoreSync Fig. 7 (simulated): p99 by R",
                "offered load (x capacity)",
                "p99 latency (µs)",
                &by_load("fig7", &rs, &|o| o.p99_ns as f64 / 1e3),
                false,
            ),
            line_panel(
                w,
                h,
                w,
                h,
                "CoreSync Fig. 7 (simulated): cores in use by R",
                "offered load (x capacity)",
                "cores in use",
                &by_load("fig7", &rs, &|o| o.cores_in_use),
                false,
            ),
            line_panel(
                0.0,
                2.0 * h,
                w,
                h,
                "Hermes burst test (simulated): p99.9 per window",
                "time (s)",
                "p99.9 latency (µs)",
                &burst(&|x| (x.p999_ns as f64 / 1e3).max(1e-3)),
                true,
            ),
            line_panel(
                w,
                2.0 * h,
                w,
                h,
                "Hermes burst test (simulated): cores in use",
                "time (s)",
                "cores in use (of 14)",
                &burst(&|x| x.cores_in_use),
                false,
            ),
        ],
    )
}
