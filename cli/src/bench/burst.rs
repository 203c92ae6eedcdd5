//! `synergy sweep burst`: Hermes's burst test on the real server (issue 18), at this machine's
//! scale. The load generator's rate switches between a low and a high rate every step (Hermes:
//! 100k and 5M req/s every second on 14 cores); a UDP server runs the same step load once per
//! idle mode: `spin`, `park`, and `park` with CoreSync's credits and coupling (sessions obeying
//! credits). Reported per mode: each step's latency (p50/p99/p99.9, send to reply), the worst
//! step of each rate, and what the server burnt: cores in use (time-weighted), worker and
//! timer-core CPU over wall time, wake-ups and their mean latency.
//!
//! As in `bench overload`, on a machine where the load generator shares CPUs with the server its
//! threads run on the timer core's CPU.

use serde::Serialize;
use std::fmt::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use synergy::config::{Config, Coupling, IdleMode, OverloadMode, Placement};
use synergy_eval::plot::{line_panel, svg_page, Series};
use synergy_eval::workload::Workload;
use synergy_net::loadgen::{self, LoadgenParams, LoadgenResult, StepLoad};
use synergy_net::server::UdpServer;

/// The server configurations compared.
const MODES: [&str; 3] = ["spin", "park", "park+coresync"];

#[derive(Debug, Clone, Serialize)]
pub struct BurstRun {
    pub mode: &'static str,
    pub cores_in_use: f64,
    pub worker_cpu_per_wall: f64,
    pub timer_cpu_per_wall: f64,
    pub wakeups: u64,
    pub mean_wake_latency_ns: f64,
    /// The worst p99.9 of the steps at each rate (the first step, in the warm-up, left out).
    pub low_steps_worst_p999_ns: u64,
    pub high_steps_worst_p999_ns: u64,
    #[serde(flatten)]
    pub result: LoadgenResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct BurstBench {
    pub workload: String,
    pub workers: usize,
    pub capacity_rps: f64,
    pub low_rps: f64,
    pub high_rps: f64,
    pub step_ms: u64,
    pub duration_ms: u64,
    pub flows: u32,
    pub loadgen_cpu: Option<usize>,
    pub cpu_model: String,
    pub runs: Vec<BurstRun>,
}

pub struct BurstParams {
    pub workload: Workload,
    pub handler: synergy_apps::Handler,
    /// Fractions of nominal capacity.
    pub low: f64,
    pub high: f64,
    pub step: Duration,
    pub duration: Duration,
    pub flows: u32,
}

/// Runs the step load against each mode.
pub fn run(base: &Config, placement: &Placement, p: &BurstParams) -> Result<BurstBench, String> {
    let capacity = p.workload.capacity_rps(base.workers);
    let loadgen_cpu = super::overload::loadgen_cpu(placement);
    let warmup = Duration::from_millis(500);
    let mut runs = Vec::new();
    let mut progress = synergy_eval::progress::task("synergy sweep burst", (MODES.len()) as u64, "modes");
    for mode in MODES {
        let cfg = match mode {
            "spin" => Config { idle: IdleMode::Spin, overload: OverloadMode::None, ..base.clone() },
            "park" => Config { idle: IdleMode::Park, overload: OverloadMode::None, ..base.clone() },
            _ => Config {
                idle: IdleMode::Park,
                overload: OverloadMode::Credits,
                coupling: Coupling::CoreSync,
                ..base.clone()
            },
        };
        let server = UdpServer::start(&cfg, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), p.handler.clone())
            .map_err(|e| e.to_string())?;
        let lp = LoadgenParams {
            target: server.local_addr(),
            workload: p.workload.clone(),
            rps: capacity * p.low,
            duration: p.duration,
            warmup,
            grace: Duration::from_millis(500),
            flows: p.flows,
            seed: 1,
            keep_samples: false,
            obey_credits: cfg.overload == OverloadMode::Credits,
            cpu: loadgen_cpu,
            step: Some(StepLoad { rps: capacity * p.high, every: p.step }),
            body_bytes: 0,
        };
        let result = loadgen::run(&lp);
        let (stats, _) = server.shutdown();
        let result = result.map_err(|e| e.to_string())?;
        // Steps that began before the measurement started hold warm-up arrivals only in part.
        let measured = |high: bool| {
            result
                .steps
                .iter()
                .filter(|s| s.start_ms >= warmup.as_secs_f64() * 1e3 && (s.offered_rps > capacity * p.low) == high)
                .map(|s| s.p999_ns)
                .max()
                .unwrap_or(0)
        };
        let run = BurstRun {
            mode,
            cores_in_use: stats.cores_in_use(),
            worker_cpu_per_wall: stats.cpu_per_worker_wall(),
            timer_cpu_per_wall: stats.timer_cpu_per_wall(),
            wakeups: stats.total.wakeups,
            mean_wake_latency_ns: stats.mean_wake_latency_ns(),
            low_steps_worst_p999_ns: measured(false),
            high_steps_worst_p999_ns: measured(true),
            result,
        };
        eprintln!("{}", row(&run));
        runs.push(run);
        progress.inc();
    }
    Ok(BurstBench {
        workload: p.workload.name.to_string(),
        workers: base.workers,
        capacity_rps: capacity,
        low_rps: capacity * p.low,
        high_rps: capacity * p.high,
        step_ms: p.step.as_millis() as u64,
        duration_ms: p.duration.as_millis() as u64,
        flows: p.flows,
        loadgen_cpu,
        cpu_model: synergy::cpu::model_name(),
        runs,
    })
}

fn row(r: &BurstRun) -> String {
    format!(
        "{:>14} {:>6.2} {:>6.2} {:>6.2} {:>8} {:>9.1} {:>12.1} {:>12.1} {:>12.1} {:>8} {:>8} {:>6}",
        r.mode,
        r.cores_in_use,
        r.worker_cpu_per_wall,
        r.timer_cpu_per_wall,
        r.wakeups,
        r.mean_wake_latency_ns / 1e3,
        r.low_steps_worst_p999_ns as f64 / 1e3,
        r.high_steps_worst_p999_ns as f64 / 1e3,
        r.result.end_to_end_p999_ns as f64 / 1e3,
        r.result.answered,
        r.result.rejected,
        r.result.lost,
    )
}

pub fn table(b: &BurstBench) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "burst test: {} workload, {} worker(s) (capacity {:.0} req/s), {:.0} <-> {:.0} req/s every {} ms for {} ms, \
         {} flows; load generator on CPU {:?}; {}",
        b.workload,
        b.workers,
        b.capacity_rps,
        b.low_rps,
        b.high_rps,
        b.step_ms,
        b.duration_ms,
        b.flows,
        b.loadgen_cpu,
        b.cpu_model
    );
    let _ = writeln!(
        s,
        "{:>14} {:>6} {:>6} {:>6} {:>8} {:>9} {:>12} {:>12} {:>12} {:>8} {:>8} {:>6}",
        "mode",
        "cores",
        "w.cpu",
        "t.cpu",
        "wakeups",
        "wake µs",
        "low p99.9µs",
        "high p99.9µs",
        "e2e p99.9µs",
        "answered",
        "rejected",
        "lost"
    );
    let _ = writeln!(
        s,
        "(step latencies: send to reply of requests sent in the step; e2e: arrival at the client to reply, client \
         queueing under credits included)"
    );
    for r in &b.runs {
        let _ = writeln!(s, "{}", row(r));
    }
    s
}

/// One row per mode and step.
pub fn csv(b: &BurstBench) -> String {
    let mut table = synergy_eval::csv::CsvTable::new(&[
        "mode",
        "cores_in_use",
        "worker_cpu_per_wall",
        "timer_cpu_per_wall",
        "step_start_ms",
        "offered_rps",
        "served",
        "p50_ns",
        "p99_ns",
        "p999_ns",
    ]);
    for r in &b.runs {
        for st in &r.result.steps {
            table.row([
                r.mode.to_string(),
                format!("{:.4}", r.cores_in_use),
                format!("{:.4}", r.worker_cpu_per_wall),
                format!("{:.4}", r.timer_cpu_per_wall),
                format!("{:.1}", st.start_ms),
                format!("{:.1}", st.offered_rps),
                st.served.to_string(),
                st.p50_ns.to_string(),
                st.p99_ns.to_string(),
                st.p999_ns.to_string(),
            ]);
        }
    }
    table.finish()
}

/// Each step's p99.9 and p50 over time, one line per mode (log scale).
pub fn svg(b: &BurstBench) -> String {
    let series = |f: fn(&loadgen::StepResult) -> u64| -> Vec<Series> {
        b.runs
            .iter()
            .map(|r| Series {
                name: format!("{} ({:.2} cores)", r.mode, r.cores_in_use),
                points: r.result.steps.iter().map(|s| (s.start_ms, f(s).max(1) as f64 / 1e3)).collect(),
            })
            .collect()
    };
    let title = format!("p99.9 per step, {:.0} <-> {:.0} req/s", b.low_rps, b.high_rps);
    let p999 = line_panel(0.0, 0.0, 520.0, 360.0, &title, "step start, ms", "µs", &series(|s| s.p999_ns), true);
    let p50 = line_panel(520.0, 0.0, 520.0, 360.0, "p50 per step", "step start, ms", "µs", &series(|s| s.p50_ns), true);
    svg_page(1040.0, 360.0, &[p999, p50])
}
