//! `synergy sweep idle`: what parking idle workers saves and costs (issue 18). At each offered
//! load the demo's workload runs with `--idle spin` and with `--idle park`, alternating round by
//! round; reported per load and mode (medians over the rounds): the workers' CPU time over their
//! wall time, the time-weighted cores in use, short requests' p50/p99, parks and the mean
//! wake-up latency, and park over spin for the CPU and the short p99.

use crate::demo::{run_workload, DemoParams, RunResult};
use serde::Serialize;
use std::fmt::Write;
use synergy::config::{Config, IdleMode};
use synergy_eval::plot::{line_panel, svg_page, Series};

#[derive(Debug, Clone, Serialize)]
pub struct ModeAtLoad {
    pub idle: &'static str,
    pub cpu_per_worker_wall: f64,
    pub cores_in_use: f64,
    pub short_p50_ns: f64,
    pub short_p99_ns: f64,
    pub long_p99_ns: f64,
    pub parks: f64,
    pub mean_wake_latency_ns: f64,
    pub answered: usize,
    pub requests: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadPoint {
    pub load: f64,
    pub spin: ModeAtLoad,
    pub park: ModeAtLoad,
    /// park / spin, same rounds.
    pub cpu_ratio: f64,
    pub short_p99_ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleBench {
    pub workload: String,
    pub workers: usize,
    pub rounds: usize,
    pub duration_ms: u64,
    pub idle_poll_us: u64,
    pub wake_delay_us: u64,
    pub cpu_model: String,
    pub points: Vec<LoadPoint>,
    /// Every run, for the record (medians above come from these).
    pub runs: Vec<RunResult>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn summarize(idle: IdleMode, runs: &[&RunResult]) -> ModeAtLoad {
    let med = |f: &dyn Fn(&RunResult) -> f64| median(runs.iter().map(|r| f(r)).collect());
    ModeAtLoad {
        idle: idle.name(),
        cpu_per_worker_wall: med(&|r| r.stats.cpu_per_worker_wall()),
        cores_in_use: med(&|r| r.stats.cores_in_use()),
        short_p50_ns: med(&|r| r.classes[0].latency.p50_ns as f64),
        short_p99_ns: med(&|r| r.classes[0].latency.p99_ns as f64),
        long_p99_ns: med(&|r| r.classes.last().map_or(0, |c| c.latency.p99_ns) as f64),
        parks: med(&|r| r.stats.total.parks as f64),
        mean_wake_latency_ns: med(&|r| r.stats.mean_wake_latency_ns()),
        answered: runs.iter().map(|r| r.answered).sum(),
        requests: runs.iter().map(|r| r.requests).sum(),
    }
}

/// Runs `rounds` alternating spin/park rounds at each load.
pub fn run(cfg: &Config, params: &DemoParams, loads: &[f64], rounds: usize) -> Result<IdleBench, String> {
    let mut points = Vec::new();
    let mut all = Vec::new();
    let mut progress = synergy_eval::progress::task("synergy sweep idle", (loads.len() * rounds) as u64, "rounds");
    for &load in loads {
        let mut by_mode: [Vec<RunResult>; 2] = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            for (i, idle) in [IdleMode::Spin, IdleMode::Park].into_iter().enumerate() {
                let p = DemoParams { load, seed: params.seed + round as u64, ..params.clone() };
                let r = run_workload(&Config { idle, ..cfg.clone() }, &p).map_err(|e| e.to_string())?;
                by_mode[i].push(r);
            }
            progress.inc();
        }
        let spin = summarize(IdleMode::Spin, &by_mode[0].iter().collect::<Vec<_>>());
        let park = summarize(IdleMode::Park, &by_mode[1].iter().collect::<Vec<_>>());
        points.push(LoadPoint {
            load,
            cpu_ratio: park.cpu_per_worker_wall / spin.cpu_per_worker_wall,
            short_p99_ratio: park.short_p99_ns / spin.short_p99_ns,
            spin,
            park,
        });
        all.extend(by_mode.into_iter().flatten());
    }
    Ok(IdleBench {
        workload: params.workload.name().to_string(),
        workers: cfg.workers,
        rounds,
        duration_ms: params.duration_ms,
        idle_poll_us: cfg.idle_poll_us,
        wake_delay_us: cfg.wake_delay_us,
        cpu_model: synergy::cpu::model_name(),
        points,
        runs: all,
    })
}

pub fn table(b: &IdleBench) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "idle workers, spin vs park: {} workload, {} worker(s), median of {} alternating rounds of {} ms; POLL_PERIOD {} µs, delay threshold {} µs; {}",
        b.workload, b.workers, b.rounds, b.duration_ms, b.idle_poll_us, b.wake_delay_us, b.cpu_model
    );
    let _ = writeln!(
        s,
        "{:>5} {:>6} {:>9} {:>7} {:>11} {:>11} {:>11} {:>8} {:>10} {:>9}",
        "load", "idle", "CPU/wall", "cores", "short p50", "short p99", "long p99", "parks", "wake-up", "answered"
    );
    for p in &b.points {
        for m in [&p.spin, &p.park] {
            let _ = writeln!(
                s,
                "{:>4.0}% {:>6} {:>9.3} {:>7.2} {:>8.1} µs {:>8.1} µs {:>8.1} µs {:>8.0} {:>7.1} µs {:>4}/{}",
                p.load * 100.0,
                m.idle,
                m.cpu_per_worker_wall,
                m.cores_in_use,
                m.short_p50_ns / 1e3,
                m.short_p99_ns / 1e3,
                m.long_p99_ns / 1e3,
                m.parks,
                m.mean_wake_latency_ns / 1e3,
                m.answered,
                m.requests
            );
        }
        let _ = writeln!(s, "{:>5} park/spin: CPU {:.3}x, short p99 {:.2}x", "", p.cpu_ratio, p.short_p99_ratio);
    }
    s
}

pub fn csv(b: &IdleBench) -> String {
    let mut table = synergy_eval::csv::CsvTable::new(&[
        "load",
        "idle",
        "cpu_per_worker_wall",
        "cores_in_use",
        "short_p50_ns",
        "short_p99_ns",
        "long_p99_ns",
        "parks",
        "mean_wake_latency_ns",
        "answered",
        "requests",
    ]);
    for p in &b.points {
        for m in [&p.spin, &p.park] {
            table.row([
                p.load.to_string(),
                m.idle.to_string(),
                format!("{:.4}", m.cpu_per_worker_wall),
                format!("{:.3}", m.cores_in_use),
                format!("{:.0}", m.short_p50_ns),
                format!("{:.0}", m.short_p99_ns),
                format!("{:.0}", m.long_p99_ns),
                format!("{:.0}", m.parks),
                format!("{:.0}", m.mean_wake_latency_ns),
                m.answered.to_string(),
                m.requests.to_string(),
            ]);
        }
    }
    table.finish()
}

/// Two panels: cores in use against load, and short requests' p99 against load.
pub fn svg(b: &IdleBench) -> String {
    let series = |f: &dyn Fn(&ModeAtLoad) -> f64| -> Vec<Series> {
        ["spin", "park"]
            .iter()
            .enumerate()
            .map(|(i, name)| Series {
                name: format!("--idle {name}"),
                points: b.points.iter().map(|p| (p.load * 100.0, f(if i == 0 { &p.spin } else { &p.park }))).collect(),
            })
            .collect()
    };
    let cores = line_panel(
        0.0,
        0.0,
        520.0,
        360.0,
        &format!("Cores in use, {} worker(s), {}", b.workers, b.workload),
        "offered load, % of capacity",
        "cores (time-weighted)",
        &series(&|m| m.cores_in_use),
        false,
    );
    let p99 = line_panel(
        520.0,
        0.0,
        520.0,
        360.0,
        "Short requests' p99",
        "offered load, % of capacity",
        "µs",
        &series(&|m| m.short_p99_ns / 1e3),
        false,
    );
    svg_page(1040.0, 360.0, &[cores, p99])
}
