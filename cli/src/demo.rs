//! The embedded demo: a synthetic workload replayed open-loop against an in-process runtime,
//! summarised per request type. `synergy run` runs it for the configured preemption mode and
//! for `none` side by side, so the effect of preemption is measured in one run on one machine.

use serde::Serialize;
use std::sync::Arc;
use synergy::clock;
use synergy::config::Config;
use synergy::preempt::PreemptMode;
use synergy::request::{Reply, Request};
use synergy::runtime::{MigratableHandler, Runtime, StartError};
use synergy::stats::RunStats;
use synergy_eval::report::Summary;
use synergy_eval::workload::{Workload, WorkloadName};
use synergy_net::replay::ReplayTransport;

/// The demo's embedded default configuration (`cli/configs/demo.toml`).
pub const DEFAULT_CONFIG: &str = include_str!("../configs/demo.toml");

pub fn default_config() -> Config {
    crate::config_file::from_toml_str(DEFAULT_CONFIG).expect("the embedded demo configuration is valid")
}

#[derive(Debug, Clone)]
pub struct DemoParams {
    pub workload: WorkloadName,
    /// Offered load as a fraction of the workers' capacity.
    pub load: f64,
    pub duration_ms: u64,
    pub seed: u64,
    pub flows: u32,
    /// Long requests in the cooperative tier (`feedback_start_cooperative`: parked only at the
    /// probes of `long_work`, resumed on their own worker) instead of the preemptive one.
    pub cooperative: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassResult {
    pub service_ns: u64,
    pub long: bool,
    pub latency: Summary,
    pub slowdown_p999: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub preempt: String,
    /// "preemptive" (`feedback_start`, any instruction, any worker) or "cooperative".
    pub tier: String,
    pub workload: String,
    pub workers: usize,
    pub offered_rps: f64,
    pub requests: usize,
    pub answered: usize,
    pub duplicates: usize,
    pub overall_slowdown_p999: f64,
    pub classes: Vec<ClassResult>,
    pub stats: RunStats,
}

/// Replays `params` against a runtime configured by `cfg`.
pub fn run_workload(cfg: &Config, params: &DemoParams) -> Result<RunResult, StartError> {
    let workload = Workload::named(params.workload);
    let rps = workload.capacity_rps(cfg.workers) * params.load;
    let count = ((rps * params.duration_ms as f64 / 1000.0) as usize).max(1);
    let schedule = workload.schedule(rps, count, cfg.workers, params.flows, params.seed);
    let transport = Arc::new(ReplayTransport::new(schedule));
    let types = workload.types.clone();
    let cooperative = params.cooperative;
    let serve = move |req: Request| {
        let t = &types[req.kind as usize];
        if t.long {
            if cooperative {
                synergy::feedback_start_cooperative();
            } else {
                // SAFETY: the spin reads the runtime's clock only: no thread-local storage, no lock.
                unsafe { synergy::feedback_start() };
            }
            // The synthetic application's long work: instrumented for compiler interrupts.
            synergy_apps::synthetic::long_work(t.service_ns);
            synergy::feedback_finished();
        } else {
            clock::spin_work(t.service_ns);
        }
        let _ = synergy::send(Reply::to(&req));
    };
    let builder = Runtime::builder(cfg).transport(transport.clone());
    let rt = if cooperative {
        // Safe code: only the long requests' probes may park them.
        builder.handler(serve).start()?
    } else {
        // SAFETY: the handler spins on the runtime's clock and replies; it touches no thread-local
        // storage and takes no lock, anywhere, so the whole of it may migrate (the baselines that
        // preempt every request need that).
        let handler = unsafe { MigratableHandler::new(Arc::new(serve)) };
        builder.migratable_handler(handler).start()?
    };
    transport.start();
    let stats = rt.shutdown();
    let results = transport.results();
    let mut classes = Vec::new();
    let mut slowdowns = Vec::new();
    for (i, t) in workload.types.iter().enumerate() {
        let lat: Vec<u64> = results
            .iter()
            .filter(|(r, done)| r.kind as usize == i && *done != 0)
            .map(|(r, done)| done.saturating_sub(r.arrival_ns))
            .collect();
        slowdowns.extend(lat.iter().map(|&l| (l as f64 / t.service_ns as f64 * 1000.0) as u64));
        let latency = Summary::of(lat);
        classes.push(ClassResult {
            service_ns: t.service_ns,
            long: t.long,
            slowdown_p999: latency.p999_ns as f64 / t.service_ns as f64,
            latency,
        });
    }
    let overall = Summary::of(slowdowns);
    Ok(RunResult {
        preempt: cfg.preempt.name().to_string(),
        tier: if params.cooperative { "cooperative" } else { "preemptive" }.to_string(),
        workload: workload.name.to_string(),
        workers: cfg.workers,
        offered_rps: rps,
        requests: transport.total(),
        answered: transport.answered(),
        duplicates: transport.duplicates(),
        overall_slowdown_p999: overall.p999_ns as f64 / 1000.0,
        classes,
        stats,
    })
}

/// Runs the configured mode and, unless it is `none` already, the `none` baseline (for a hybrid
/// `ci+X` also `ci` and `X` alone), alternating them `repeat` times so that machine noise hits
/// all alike. Returns every run, in order.
pub fn run_demo(cfg: &Config, params: &DemoParams, repeat: usize) -> Result<Vec<RunResult>, StartError> {
    let mut modes = vec![cfg.preempt];
    if cfg.preempt.compiler_interrupts() && cfg.preempt != PreemptMode::Ci {
        modes.extend([PreemptMode::Ci, cfg.preempt.interrupt()]);
    }
    if cfg.preempt != PreemptMode::None {
        modes.push(PreemptMode::None);
    }
    let mut runs = Vec::new();
    let mut progress = synergy_eval::progress::task("synergy run", (repeat.max(1) * modes.len()) as u64, "runs");
    for round in 0..repeat.max(1) {
        for &m in &modes {
            let p = DemoParams { seed: params.seed + round as u64, ..params.clone() };
            runs.push(run_workload(&Config { preempt: m, ..cfg.clone() }, &p)?);
            progress.inc();
        }
    }
    Ok(runs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// The latency table printed by `synergy run`: per preemption mode and request type, the median
/// over repeated runs of each percentile (a single run when not repeated).
pub fn format_table(runs: &[RunResult]) -> String {
    let mut modes: Vec<&str> = Vec::new();
    for r in runs {
        if !modes.contains(&r.preempt.as_str()) {
            modes.push(&r.preempt);
        }
    }
    let mut out = String::new();
    let repeats = runs.iter().filter(|r| r.preempt == modes[0]).count();
    if repeats > 1 {
        out.push_str(&format!("median of {repeats} alternating runs per mode\n"));
    }
    out.push_str(&format!(
        "{:<8} {:>10} {:>8} {:>9} {:>9} {:>10} {:>10} {:>12}\n",
        "preempt", "class", "count", "p50 µs", "p99 µs", "p99.9 µs", "p99.9 sd", "preemptions"
    ));
    for mode in modes {
        let of_mode: Vec<&RunResult> = runs.iter().filter(|r| r.preempt == mode).collect();
        let first = of_mode[0];
        for (i, c) in first.classes.iter().enumerate() {
            let med = |f: &dyn Fn(&ClassResult) -> f64| median(of_mode.iter().map(|r| f(&r.classes[i])).collect());
            let preemptions = median(of_mode.iter().map(|r| r.stats.total.preemptions as f64).collect());
            out.push_str(&format!(
                "{:<8} {:>7.1} µs {:>8} {:>9.1} {:>9.1} {:>10.1} {:>10.1} {:>12}\n",
                if i == 0 { mode } else { "" },
                us(c.service_ns),
                c.latency.count,
                med(&|c| us(c.latency.p50_ns)),
                med(&|c| us(c.latency.p99_ns)),
                med(&|c| us(c.latency.p999_ns)),
                med(&|c| c.slowdown_p999),
                if i == 0 { format!("{preemptions:.0}") } else { String::new() },
            ));
        }
        let answered: usize = of_mode.iter().map(|r| r.answered).sum();
        let requests: usize = of_mode.iter().map(|r| r.requests).sum();
        out.push_str(&format!(
            "{:<8} {:>10} {:>8}   overall p99.9 slowdown {:.1}, answered {}/{}\n",
            "",
            "all",
            first.requests,
            median(of_mode.iter().map(|r| r.overall_slowdown_p999).collect()),
            answered,
            requests
        ));
        out.push_str(&format!(
            "{:<8} {:>10} {:>8}   worker CPU {:.2} of wall time, cores in use {:.2}, parks {:.0}, mean wake-up {:.1} µs\n",
            "",
            "cpu",
            "",
            median(of_mode.iter().map(|r| r.stats.cpu_per_worker_wall()).collect()),
            median(of_mode.iter().map(|r| r.stats.cores_in_use()).collect()),
            median(of_mode.iter().map(|r| r.stats.total.parks as f64).collect()),
            median(of_mode.iter().map(|r| r.stats.mean_wake_latency_ns() / 1000.0).collect()),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_config_parses() {
        let c = super::default_config();
        assert_eq!(c.quantum_factor, 10.0);
        assert_eq!(c.preempt, synergy::PreemptMode::Signal);
    }
}
