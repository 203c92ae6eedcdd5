//! `synergy sweep scale`: the real runtime at N workers against the simulator's prediction for
//! the same N and this machine's measured preemption cost (issue 20).
//!
//! On the machine it runs on, it places the timer core on the first allowed CPU and the workers
//! on the next N (the load generator and the kernel's network processing get the rest), measures
//! the preemption path's cost with the interrupt microbenchmark, then, per workload: sweeps the
//! real server (kernel UDP on loopback) over a load grid for every (policy, mode), and simulates
//! the same workers, policies and loads with that cost. The result is the highest load under the
//! p99.9-slowdown SLO per system, real beside simulated, with the reason a pair disagrees where
//! the data shows one. scripts/scale-bench.sh runs it as a self-contained job.

use crate::sweep::{self, SweepPoint, SweepResult, Vantage};
use serde::Serialize;
use std::fmt::Write;
use std::time::Duration;
use synergy::PreemptMode;
use synergy_eval::plot::{bar_chart, BarGroup};
use synergy_eval::workload::{Workload, WorkloadName};
use synergy_policy::system::SchedPolicy;

pub struct ScaleParams {
    pub workers: usize,
    pub workloads: Vec<WorkloadName>,
    pub policies: Vec<SchedPolicy>,
    pub modes: Vec<PreemptMode>,
    pub loads: Vec<f64>,
    pub duration: Duration,
    pub warmup: Duration,
    pub slo: f64,
    pub sim_requests: usize,
    pub microbench_runs: usize,
    /// The real runtime's green-thread budget (every preempted request holds one until it
    /// resumes; at many workers and high load the default 4,096 runs out).
    pub max_green_threads: usize,
}

/// Where the threads ran.
#[derive(Debug, Clone, Serialize)]
pub struct Placement {
    pub timer_core: usize,
    pub worker_cores: Vec<usize>,
    /// The CPUs left for the load generator and the kernel's packet processing.
    pub other_cpus: Vec<usize>,
}

/// One system on one workload: real and simulated.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleRow {
    pub workload: String,
    pub policy: String,
    pub preempt: String,
    pub capacity_rps: f64,
    /// Highest load under the SLO with the slowdown the load generator measured (the kernel's
    /// UDP round trip included).
    pub real_max_rps_under_slo: f64,
    /// The same with the slowdown from the server's own account of each request: what the
    /// simulator models.
    pub real_server_max_rps_under_slo: f64,
    pub sim_max_rps_under_slo: f64,
    /// Server-side real / simulated: the like-for-like ratio (none when the simulation met the
    /// SLO at no load of the grid).
    pub real_over_sim: Option<f64>,
    /// Why the two disagree, where the real run's data shows it, and what the client adds.
    pub note: String,
}

/// One row's three highest loads under the SLO (requests/s).
#[derive(Debug, Clone, Copy)]
pub struct Maxima {
    /// Real, slowdown at the load generator.
    pub client: f64,
    /// Real, slowdown from the server's own account.
    pub server: f64,
    pub sim: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScaleResult {
    pub cpu_model: String,
    pub kernel: String,
    pub cpus: usize,
    pub placement: Placement,
    /// Measured p50 of the whole interruption (rt3 − rt0) per mode, ns: the simulator's cost.
    pub preempt_cost_ns: Vec<(String, u64)>,
    pub loads: Vec<f64>,
    pub slo: f64,
    pub rows: Vec<ScaleRow>,
    pub sweeps: Vec<SweepResult>,
}

/// The placement for `workers` workers on `allowed` CPUs: the timer core first, then the workers.
pub fn place(allowed: &[usize], workers: usize) -> Result<Placement, String> {
    if workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    if allowed.len() < 2 {
        return Err(format!("the scale benchmark needs at least 2 CPUs, this process may use {allowed:?}"));
    }
    // With 2 CPUs the timer core shares its CPU with the load generator; otherwise every worker
    // keeps a CPU of its own.
    if workers + 1 > allowed.len() {
        return Err(format!(
            "{workers} workers and a timer core need {} CPUs; this process may use {} ({allowed:?})",
            workers + 1,
            allowed.len()
        ));
    }
    Ok(Placement {
        timer_core: allowed[0],
        worker_cores: allowed[1..=workers].to_vec(),
        other_cpus: allowed[workers + 1..].to_vec(),
    })
}

/// The default worker count: every CPU but the timer core's and three for the load generator's
/// two threads and the kernel's packet processing; at least 1.
pub fn default_workers(cpus: usize) -> usize {
    cpus.saturating_sub(4).max(1)
}

/// Why the real server's highest load differs from the simulated one, from the real sweep's
/// points just past the real maximum: the UDP path lost datagrams, the load generator could not
/// offer the load, or the server itself was slower. Then what the client's vantage adds: the
/// kernel's UDP round trip, which the simulator leaves out, where it alone fails the SLO.
pub fn disagreement_note(points: &[&SweepPoint], m: Maxima, slo: f64, crowded: bool) -> String {
    let mut note = disagreement(points, m.server, m.sim, slo);
    if crowded && m.server < m.sim {
        // No CPU was left for the load generator: it shares the timer core's.
        note.push_str("; the load generator shared the timer core's CPU (no CPU left over)");
    }
    if m.client < m.server {
        // The lowest load the server met the SLO at, seen from both ends.
        if let Some(p) = points.iter().find(|p| sweep::meets_slo_at(&p.result, slo, Vantage::Server)) {
            let r = &p.result;
            let _ = write!(
                note,
                "; at the client the SLO held up to {:.0} req/s only: at {:.0} req/s p99.9 slowdown was {:.1} at \
                 the client and {:.1} in the server (the kernel's UDP round trip, which the simulator leaves out)",
                m.client, r.offered_rps, r.overall_slowdown_p999, r.server_slowdown_p999
            );
        }
    }
    note
}

fn disagreement(points: &[&SweepPoint], real_max: f64, sim_max: f64, slo: f64) -> String {
    if real_max == 0.0 && sim_max == 0.0 {
        return "neither met the SLO at any load of the grid".into();
    }
    if sim_max > 0.0 && (real_max / sim_max - 1.0).abs() <= 0.2 {
        return "the server agrees with the simulator within 20%".into();
    }
    if real_max > sim_max {
        return "the real server did better: the simulator's fixed costs (dispatch, switch, steal) exceed this \
                machine's"
            .into();
    }
    // The first point past the real maximum that missed the SLO.
    let Some(first_miss) = points
        .iter()
        .find(|p| p.result.offered_rps > real_max && !sweep::meets_slo_at(&p.result, slo, Vantage::Server))
    else {
        return "the real server met the SLO at no load of the grid".into();
    };
    let r = &first_miss.result;
    let mut why = Vec::new();
    if first_miss.kernel_drops > 0 {
        why.push(format!(
            "the server's sockets dropped {} datagrams (kernel UDP receive path saturated)",
            first_miss.kernel_drops
        ));
    }
    if r.lost > 0 && first_miss.kernel_drops == 0 {
        why.push(format!("{} requests went unanswered", r.lost));
    }
    if r.achieved_rps < 0.9 * r.offered_rps {
        why.push(format!(
            "only {:.0} of {:.0} req/s were achieved (the load generator or the UDP path is the bottleneck)",
            r.achieved_rps, r.offered_rps
        ));
    }
    if why.is_empty() {
        format!(
            "at {:.0} req/s the server's own p99.9 slowdown was {:.1} with no loss and the load achieved: the \
             server was slower than modelled (costs the simulator leaves out: the worker's receive system call, \
             about 1 µs per datagram, and the machine's noise)",
            r.offered_rps, r.server_slowdown_p999
        )
    } else {
        format!("at {:.0} req/s: {}", r.offered_rps, why.join("; "))
    }
}

/// The simulator's name for a runtime policy and the cost it is given.
fn sim_costs(p: &ScaleParams, cost_ns: u64) -> Vec<(String, u64)> {
    p.policies.iter().map(|pol| (pol.name().to_string(), cost_ns)).collect()
}

pub fn run(p: &ScaleParams, mut progress: impl FnMut(&str)) -> Result<ScaleResult, String> {
    if p.modes.contains(&PreemptMode::None) || p.modes.is_empty() {
        return Err("--modes must name preemption paths (signal, ipi, uintr, ci)".into());
    }
    let allowed = synergy::cpu::allowed_cpus();
    let placement = place(&allowed, p.workers)?;
    // Cost of each mode on this machine: the microbenchmark's sender and receiver on the timer
    // core and the first worker's CPU, as in the runtime.
    progress(&format!("measuring the preemption cost of {:?} ({} runs each)", p.modes, p.microbench_runs));
    let mb = super::interrupt::run(&super::interrupt::Params {
        modes: p.modes.clone(),
        runs: p.microbench_runs,
        sender_cpu: placement.timer_core,
        receiver_cpu: placement.worker_cores[0],
    })?;
    let preempt_cost_ns: Vec<(String, u64)> = p
        .modes
        .iter()
        .map(|m| {
            let cost = mb.methods.iter().find(|x| x.method == m.name()).map_or(0.0, |x| x.phases.total.p50_ns);
            (m.name().to_string(), cost.round() as u64)
        })
        .collect();
    let mut rows = Vec::new();
    let mut sweeps = Vec::new();
    let mut workloads_done =
        synergy_eval::progress::task("synergy sweep scale", (p.workloads.len()) as u64, "workloads");
    for &name in &p.workloads {
        let workload = Workload::named(name);
        let mut cfg = synergy::Config {
            workers: p.workers,
            worker_cores: Some(placement.worker_cores.clone()),
            timer_core: Some(placement.timer_core),
            // The thesis's setups spin; so does the simulator below.
            idle: synergy::config::IdleMode::Spin,
            max_green_threads: p.max_green_threads,
            ..synergy::Config::default()
        };
        cfg.long_kinds = workload.types.iter().enumerate().filter(|(_, t)| t.long).map(|(i, _)| i as u32).collect();
        for &policy in &p.policies {
            (synergy::Config { policy, ..cfg.clone() }).validate(&allowed).map_err(|e| e.to_string())?;
        }
        let sp = sweep::SweepParams {
            workload: workload.clone(),
            handler: synergy_apps::synthetic::handler(workload.types.clone()),
            modes: p.modes.clone(),
            policies: p.policies.clone(),
            loads: p.loads.clone(),
            duration: p.duration,
            warmup: p.warmup,
            flows: 64,
            seed: 1,
            slo: p.slo,
            keep_samples: false,
            body_bytes: 0,
        };
        let real = sweep::run(&cfg, &sp, |k, n, pt| {
            progress(&format!(
                "{} real {k}/{n} {} load {:.0}%: {:.0} req/s, p99.9 slowdown {:.1} (in the server {:.1}), lost {}",
                workload.name,
                pt.line(),
                pt.load * 100.0,
                pt.result.achieved_rps,
                pt.result.overall_slowdown_p999,
                pt.result.server_slowdown_p999,
                pt.result.lost
            ))
        })?;
        for &mode in &p.modes {
            let cost = preempt_cost_ns.iter().find(|(m, _)| m == mode.name()).map_or(0, |c| c.1);
            let simp = synergy_sim::sweep::SimSweepParams {
                workload: workload.clone(),
                workers: p.workers,
                policies: p.policies.iter().map(|x| x.name().to_string()).collect(),
                loads: p.loads.clone(),
                requests: p.sim_requests,
                flows: 64,
                seed: 1,
                slo: p.slo,
                quantum_factor: cfg.quantum_factor,
                steal_threshold: cfg.steal_threshold,
                // The quantum the real runtime's Shinjuku ran with.
                shinjuku_quantum_ns: cfg.shinjuku_quantum_us * 1_000,
                overheads: synergy_sim::Overheads { dispatch_ns: 50, preempt_ns: 0, switch_ns: 50, steal_ns: 100 },
                preempt_ns: sim_costs(p, cost),
                dispatch_ns: vec![],
                idle: None,
            };
            progress(&format!("{} simulated, {} workers, preemption {cost} ns", workload.name, p.workers));
            let sim = synergy_sim::sweep::run(&simp, |_, _, _| {}).map_err(|e| e.to_string())?;
            for &policy in &p.policies {
                let summary = real.summary.iter().find(|s| s.policy == policy.name() && s.preempt == mode.name());
                let m = Maxima {
                    client: summary.map_or(0.0, |s| s.max_rps_under_slo),
                    server: summary.map_or(0.0, |s| s.max_rps_under_server_slo),
                    sim: sim.summary.iter().find(|s| s.policy == policy.name()).map_or(0.0, |s| s.max_rps_under_slo),
                };
                let points: Vec<&SweepPoint> =
                    real.points.iter().filter(|x| x.policy == policy.name() && x.preempt == mode.name()).collect();
                rows.push(ScaleRow {
                    workload: workload.name.to_string(),
                    policy: policy.name().into(),
                    preempt: mode.name().into(),
                    capacity_rps: real.capacity_rps,
                    real_max_rps_under_slo: m.client,
                    real_server_max_rps_under_slo: m.server,
                    sim_max_rps_under_slo: m.sim,
                    real_over_sim: (m.sim > 0.0).then(|| m.server / m.sim),
                    note: disagreement_note(&points, m, p.slo, placement.other_cpus.is_empty()),
                });
            }
        }
        sweeps.push(real);
        workloads_done.inc();
    }
    Ok(ScaleResult {
        cpu_model: synergy::cpu::model_name(),
        kernel: synergy::cpu::kernel_release(),
        cpus: allowed.len(),
        placement,
        preempt_cost_ns,
        loads: p.loads.clone(),
        slo: p.slo,
        rows,
        sweeps,
    })
}

pub fn table(r: &ScaleResult) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "highest load with p99.9 slowdown <= {} (req/s): {} workers (CPUs {:?}), timer core CPU {}; {} ({} CPUs), Linux {}",
        r.slo,
        r.placement.worker_cores.len(),
        r.placement.worker_cores,
        r.placement.timer_core,
        r.cpu_model,
        r.cpus,
        r.kernel
    );
    let costs: Vec<String> = r.preempt_cost_ns.iter().map(|(m, c)| format!("{m} {c} ns")).collect();
    let _ =
        writeln!(s, "measured preemption cost (p50, whole interruption), given to the simulator: {}", costs.join(", "));
    let _ = writeln!(
        s,
        "{:<10} {:<10} {:<7} {:>10} {:>12} {:>12} {:>10} {:>9}  note",
        "workload", "policy", "preempt", "capacity", "real client", "real server", "simulated", "server/sim"
    );
    for row in &r.rows {
        let _ = writeln!(
            s,
            "{:<10} {:<10} {:<7} {:>10.0} {:>12.0} {:>12.0} {:>10.0} {:>9}  {}",
            row.workload,
            row.policy,
            row.preempt,
            row.capacity_rps,
            row.real_max_rps_under_slo,
            row.real_server_max_rps_under_slo,
            row.sim_max_rps_under_slo,
            row.real_over_sim.map_or_else(|| "-".into(), |x| format!("{x:.2}")),
            row.note
        );
    }
    s
}

pub fn csv(r: &ScaleResult) -> String {
    let mut table = synergy_eval::csv::CsvTable::new(&[
        "workload",
        "policy",
        "preempt",
        "workers",
        "capacity_rps",
        "real_max_rps_under_slo",
        "real_server_max_rps_under_slo",
        "sim_max_rps_under_slo",
        "real_over_sim",
        "note",
    ]);
    for row in &r.rows {
        table.row([
            row.workload.to_string(),
            row.policy.to_string(),
            row.preempt.to_string(),
            r.placement.worker_cores.len().to_string(),
            format!("{:.0}", row.capacity_rps),
            format!("{:.0}", row.real_max_rps_under_slo),
            format!("{:.0}", row.real_server_max_rps_under_slo),
            format!("{:.0}", row.sim_max_rps_under_slo),
            row.real_over_sim.map_or_else(String::new, |x| format!("{x:.3}")),
            row.note.clone(),
        ]);
    }
    table.finish()
}

/// Bars: per (workload, policy, mode), the real and the simulated highest load as a fraction of
/// the workers' capacity.
pub fn svg(r: &ScaleResult) -> String {
    let groups: Vec<BarGroup> = r
        .rows
        .iter()
        .map(|row| BarGroup {
            label: format!("{} {} {}", row.workload, row.policy, row.preempt),
            bars: vec![
                ("real, at the client".into(), row.real_max_rps_under_slo / row.capacity_rps),
                ("real, in the server".into(), row.real_server_max_rps_under_slo / row.capacity_rps),
                ("simulated".into(), row.sim_max_rps_under_slo / row.capacity_rps),
            ],
        })
        .collect();
    bar_chart(
        &format!(
            "Highest load under p99.9 slowdown {} at {} workers: real (client, server) vs simulated ({})",
            r.slo,
            r.placement.worker_cores.len(),
            r.cpu_model
        ),
        "fraction of capacity",
        &groups,
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use synergy_net::loadgen::LoadgenResult;

    #[test]
    fn the_timer_core_comes_first_and_the_workers_after_it() {
        let p = place(&[0, 1, 2, 3, 4, 5], 3).unwrap();
        assert_eq!((p.timer_core, p.worker_cores, p.other_cpus), (0, vec![1, 2, 3], vec![4, 5]));
        assert!(place(&[0, 1], 2).unwrap_err().contains("need 3 CPUs"));
        assert!(place(&[0], 1).is_err());
        assert_eq!(default_workers(16), 12);
        assert_eq!(default_workers(2), 1);
    }

    /// A point whose client and server saw the same slowdown.
    fn point(offered: f64, achieved: f64, slowdown: f64, lost: u64, drops: u64) -> SweepPoint {
        seen(offered, achieved, slowdown, slowdown, lost, drops)
    }

    fn seen(offered: f64, achieved: f64, client: f64, server: f64, lost: u64, drops: u64) -> SweepPoint {
        let result = LoadgenResult {
            offered_rps: offered,
            achieved_rps: achieved,
            overall_slowdown_p999: client,
            server_slowdown_p999: server,
            lost,
            sent: 1000,
            ..LoadgenResult::default()
        };
        sweep::test_point(result, drops)
    }

    fn both(server: f64, sim: f64) -> Maxima {
        Maxima { client: server, server, sim }
    }

    #[test]
    fn a_disagreement_names_what_the_real_run_shows() {
        let ok = point(1000.0, 1000.0, 10.0, 0, 0);
        let dropped = point(2000.0, 1500.0, 80.0, 30, 30);
        let slow = point(2000.0, 2000.0, 80.0, 0, 0);
        assert_eq!(
            disagreement_note(&[&ok, &dropped], both(1000.0, 1100.0), 50.0, false),
            "the server agrees with the simulator within 20%"
        );
        let n = disagreement_note(&[&ok, &dropped], both(1000.0, 3000.0), 50.0, false);
        assert!(n.contains("dropped 30 datagrams") && n.contains("only 1500 of 2000"), "{n}");
        let n = disagreement_note(&[&ok, &slow], both(1000.0, 3000.0), 50.0, false);
        assert!(n.contains("the server's own p99.9 slowdown was 80.0 with no loss"), "{n}");
        let n = disagreement_note(&[&ok, &slow], both(1000.0, 3000.0), 50.0, true);
        assert!(n.ends_with("the load generator shared the timer core's CPU (no CPU left over)"), "{n}");
        assert!(disagreement_note(&[&ok], both(3000.0, 1000.0), 50.0, false).contains("did better"));
        assert_eq!(
            disagreement_note(&[&slow], both(0.0, 0.0), 50.0, false),
            "neither met the SLO at any load of the grid"
        );
    }

    #[test]
    fn the_round_trip_is_named_where_only_the_client_misses_the_slo() {
        // The server meets the SLO at both loads and agrees with the simulator; the client's
        // round trip fails it at the first.
        let low = seen(1000.0, 1000.0, 150.0, 3.0, 0, 0);
        let high = seen(2000.0, 2000.0, 200.0, 20.0, 0, 0);
        let m = Maxima { client: 0.0, server: 2000.0, sim: 2000.0 };
        let n = disagreement_note(&[&low, &high], m, 50.0, false);
        assert!(n.starts_with("the server agrees with the simulator within 20%"), "{n}");
        assert!(
            n.contains("at 1000 req/s p99.9 slowdown was 150.0 at the client and 3.0 in the server"),
            "the lowest load the server met the SLO at is quoted: {n}"
        );
        // Where the client does as well as the server, nothing is added.
        let same = Maxima { client: 2000.0, ..m };
        assert_eq!(
            disagreement_note(&[&low, &high], same, 50.0, false),
            "the server agrees with the simulator within 20%"
        );
    }
}
