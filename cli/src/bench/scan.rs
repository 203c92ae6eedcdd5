//! `synergy bench scan`: the timer core's cost per worker watched, at 1 to 30 workers, in each
//! worker state (issue 23; `synergy::bench::scan` says what each state exercises). Fake workers, so
//! the worker count is not bounded by this machine's CPUs; the timer core's thread is pinned where
//! `--cpu` says.

use serde::Serialize;
use std::fmt::Write;
use synergy::bench::scan::{marginal_ns_per_worker, measure, ScanCost, WorkerState};
use synergy_eval::plot::{line_panel, svg_page, Series};

#[derive(Debug, Clone, Serialize)]
pub struct ScanRow {
    pub state: &'static str,
    pub workers: usize,
    pub loops: u64,
    pub ns_per_loop: f64,
    pub ns_per_worker: f64,
    pub period_p50_ns: u64,
    pub period_p99_ns: u64,
    pub period_p999_ns: u64,
    pub period_max_ns: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanBench {
    pub cpu_model: String,
    pub rounds: usize,
    /// Median over the rounds of each (state, workers) cell.
    pub rows: Vec<ScanRow>,
    /// Least-squares slope of ns per loop over the worker count, per state: the marginal cost of
    /// one more worker.
    pub marginal_ns_per_worker: Vec<(&'static str, f64)>,
    /// The goal (Hermes reports ≤ 17 ns per thread checked).
    pub goal_ns_per_worker: f64,
}

/// Measures every (state, worker count) cell `rounds` times, alternating the cells within a round,
/// and keeps the round with the median ns per loop of each.
pub fn run(worker_counts: &[usize], loops_per_worker: u64, rounds: usize, cpu: Option<usize>) -> ScanBench {
    if let Some(c) = cpu {
        if let Err(e) = synergy::cpu::pin_current_thread(c) {
            eprintln!("synergy: bench scan: cannot pin to CPU {c}: {e}; running unpinned");
        }
    }
    let cells: Vec<(WorkerState, usize)> =
        WorkerState::ALL.iter().flat_map(|&s| worker_counts.iter().map(move |&n| (s, n))).collect();
    let mut samples: Vec<Vec<ScanCost>> = vec![Vec::new(); cells.len()];
    let mut progress = synergy_eval::progress::task("synergy bench scan", (rounds) as u64, "rounds");
    for _ in 0..rounds {
        for (i, &(state, n)) in cells.iter().enumerate() {
            // The same number of worker checks per cell: fewer loops over more workers.
            let loops = (loops_per_worker / n as u64).max(1);
            samples[i].push(measure(n, state, loops));
        }
        progress.inc();
    }
    let mut rows = Vec::new();
    let mut medians: Vec<ScanCost> = Vec::new();
    for mut s in samples {
        s.sort_by(|a, b| a.ns_per_loop.total_cmp(&b.ns_per_loop));
        let m = s[s.len() / 2].clone();
        rows.push(ScanRow {
            state: m.state.name(),
            workers: m.workers,
            loops: m.loops,
            ns_per_loop: m.ns_per_loop,
            ns_per_worker: m.ns_per_worker,
            period_p50_ns: m.period_ns[0],
            period_p99_ns: m.period_ns[1],
            period_p999_ns: m.period_ns[2],
            period_max_ns: m.period_ns[3],
        });
        medians.push(m);
    }
    let marginal = WorkerState::ALL
        .iter()
        .map(|&st| {
            let of: Vec<ScanCost> = medians.iter().filter(|c| c.state == st).cloned().collect();
            (st.name(), marginal_ns_per_worker(&of))
        })
        .collect();
    ScanBench {
        cpu_model: synergy::cpu::model_name(),
        rounds,
        rows,
        marginal_ns_per_worker: marginal,
        goal_ns_per_worker: 20.0,
    }
}

pub fn table(b: &ScanBench) -> String {
    let mut s = format!("timer-core scan over fake workers ({}), median of {} rounds:\n", b.cpu_model, b.rounds);
    let _ = writeln!(
        s,
        "  {:<9} {:>7} {:>12} {:>14} {:>11} {:>11} {:>11}",
        "state", "workers", "ns/loop", "ns/worker", "period p50", "p99", "p99.9"
    );
    for r in &b.rows {
        let _ = writeln!(
            s,
            "  {:<9} {:>7} {:>12.1} {:>14.2} {:>11} {:>11} {:>11}",
            r.state, r.workers, r.ns_per_loop, r.ns_per_worker, r.period_p50_ns, r.period_p99_ns, r.period_p999_ns
        );
    }
    for (state, m) in &b.marginal_ns_per_worker {
        let _ = writeln!(
            s,
            "  marginal cost of one more worker, {state:<9}: {m:>6.2} ns (goal ≤ {} ns)",
            b.goal_ns_per_worker
        );
    }
    s
}

pub fn csv(b: &ScanBench) -> String {
    let mut table = synergy_eval::csv::CsvTable::new(&[
        "cpu_model",
        "state",
        "workers",
        "loops",
        "ns_per_loop",
        "ns_per_worker",
        "period_p50_ns",
        "period_p99_ns",
        "period_p999_ns",
        "period_max_ns",
    ]);
    for r in &b.rows {
        table.row([
            b.cpu_model.to_string(),
            r.state.to_string(),
            r.workers.to_string(),
            r.loops.to_string(),
            format!("{:.2}", r.ns_per_loop),
            format!("{:.3}", r.ns_per_worker),
            r.period_p50_ns.to_string(),
            r.period_p99_ns.to_string(),
            r.period_p999_ns.to_string(),
            r.period_max_ns.to_string(),
        ]);
    }
    table.finish()
}

/// Two panels: ns per loop against the worker count, and ns per worker.
pub fn svg(b: &ScanBench) -> String {
    let series = |f: &dyn Fn(&ScanRow) -> f64| -> Vec<Series> {
        WorkerState::ALL
            .iter()
            .map(|st| Series {
                name: st.name().into(),
                points: b.rows.iter().filter(|r| r.state == st.name()).map(|r| (r.workers as f64, f(r))).collect(),
            })
            .collect()
    };
    let title = format!("Timer-core loop over N workers ({})", b.cpu_model);
    svg_page(
        1000.0,
        420.0,
        &[
            line_panel(0.0, 0.0, 500.0, 420.0, &title, "workers", "ns per loop", &series(&|r| r.ns_per_loop), false),
            line_panel(
                500.0,
                0.0,
                500.0,
                420.0,
                "Cost per worker watched (goal ≤ 20 ns)",
                "workers",
                "ns per worker",
                &series(&|r| r.ns_per_worker),
                false,
            ),
        ],
    )
}
