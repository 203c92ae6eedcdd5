//! `synergy bench timer`: the timer core's loop period with and without a `sched_yield` per loop,
//! side by side in one run (issue 15, item 8). A long request keeps the worker's timer armed for
//! the whole measurement, so every loop does the work it does in production (read the clock,
//! check the wait queue's indexes and each worker's deadline).

use serde::Serialize;
use std::sync::Arc;
use synergy::config::{Config, TimerYield};
use synergy::stats::PeriodSnapshot;
use synergy::transport::channel::ChannelTransport;
use synergy::{feedback_finished, feedback_start, send, PreemptMode, Reply, Request, Runtime};
use synergy_eval::plot::{bar_chart, BarGroup};

/// The quantiles reported, as (label, q).
pub const QUANTILES: [(&str, f64); 5] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0)];

#[derive(Debug, Clone, Serialize)]
pub struct TimerLoopRun {
    /// `always` (a system call per loop, the behaviour before) or `never` (a spinning loop).
    pub timer_yield: String,
    pub loops: u64,
    pub loops_per_s: f64,
    /// Upper bounds (ns) of the power-of-two buckets holding each of `QUANTILES`.
    pub period_upper_ns: Vec<(String, u64)>,
    pub histogram: PeriodSnapshot,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimerBench {
    pub cpu_model: String,
    pub duration_ms: u64,
    pub timer_core: usize,
    pub runs: Vec<TimerLoopRun>,
}

fn one(base: &Config, timer_yield: TimerYield, duration_ms: u64) -> Result<TimerLoopRun, String> {
    let cfg = Config { timer_yield, preempt: PreemptMode::None, ..base.clone() };
    let transport = Arc::new(ChannelTransport::new(cfg.workers, 16, 16));
    let rt = Runtime::builder(&cfg)
        .transport(transport.clone())
        .handler(|req: Request| {
            // SAFETY: the spin reads the runtime's clock only (no thread-local storage, no lock).
            unsafe { feedback_start() };
            synergy::clock::spin_for(req.service_ns);
            feedback_finished();
            send(Reply::to(&req)).unwrap();
        })
        .start()
        .map_err(|e| e.to_string())?;
    let t0 = std::time::Instant::now();
    transport
        .submit(0, Request { id: 0, kind: 1, service_ns: duration_ms * 1_000_000, ..Request::default() })
        .map_err(|_| "cannot submit the long request".to_string())?;
    transport.close();
    let stats = rt.shutdown();
    let secs = t0.elapsed().as_secs_f64();
    let h = stats.timer_periods;
    Ok(TimerLoopRun {
        timer_yield: timer_yield.name().into(),
        loops: stats.timer.loops,
        loops_per_s: stats.timer.loops as f64 / secs,
        period_upper_ns: QUANTILES.iter().map(|&(l, q)| (l.to_string(), h.quantile_upper_ns(q))).collect(),
        histogram: h,
    })
}

/// Runs the loop with `sched_yield` after every iteration, then without, on the placement of `base`.
pub fn run(base: &Config, duration_ms: u64) -> Result<TimerBench, String> {
    let placement = base.validate(&synergy::cpu::allowed_cpus()).map_err(|e| e.to_string())?;
    let runs = vec![one(base, TimerYield::Always, duration_ms)?, one(base, TimerYield::Never, duration_ms)?];
    Ok(TimerBench { cpu_model: synergy::cpu::model_name(), duration_ms, timer_core: placement.timer_core, runs })
}

pub fn csv(b: &TimerBench) -> String {
    let mut table =
        synergy_eval::csv::CsvTable::new(&["timer_yield", "loops", "loops_per_s", "quantile", "period_upper_ns"]);
    for r in &b.runs {
        for (q, ns) in &r.period_upper_ns {
            table.row([
                r.timer_yield.to_string(),
                r.loops.to_string(),
                format!("{:.0}", r.loops_per_s),
                q.to_string(),
                ns.to_string(),
            ]);
        }
    }
    table.finish()
}

pub fn svg(b: &TimerBench) -> String {
    let groups: Vec<BarGroup> = QUANTILES
        .iter()
        .enumerate()
        .map(|(i, (label, _))| BarGroup {
            label: (*label).into(),
            bars: b
                .runs
                .iter()
                .map(|r| (format!("sched_yield {}", r.timer_yield), r.period_upper_ns[i].1 as f64))
                .collect(),
        })
        .collect();
    bar_chart(
        &format!("Timer-core loop period ({}, CPU {})", b.cpu_model, b.timer_core),
        "period upper bound (ns, log scale)",
        &groups,
        true,
    )
}
