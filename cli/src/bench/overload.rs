//! `synergy sweep overload`: overload control over kernel UDP (issue 18). At each offered load
//! (fractions of the workload's nominal capacity, e.g. 1.0 and 1.5) a UDP server runs once with
//! `--overload none` against an open-loop load generator and once with `--overload credits`
//! against sessions that obey their credits; reported side by side: goodput, rejects, requests
//! lost, datagrams the server's kernel dropped, client queueing, service latency of admitted
//! requests (send to reply) and end-to-end latency (arrival to reply), and goodput over the
//! goodput of the same mode at the first load.
//!
//! On a machine where the load generator shares CPUs with the server, its threads run on the
//! timer core's CPU (`LoadgenParams::cpu`), so that its real-time threads do not preempt the
//! workers.

use serde::Serialize;
use std::fmt::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use synergy::config::{Config, OverloadMode, Placement};
use synergy_eval::plot::{line_panel, svg_page, Series};
use synergy_eval::workload::Workload;
use synergy_net::loadgen::{self, LoadgenParams, LoadgenResult};
use synergy_net::server::UdpServer;

#[derive(Debug, Clone, Serialize)]
pub struct OverloadPoint {
    pub overload: &'static str,
    pub load: f64,
    /// Datagrams the server's kernel dropped (socket receive buffers full).
    pub kernel_drops: u64,
    /// Requests the server rejected (`status::REJECTED`).
    pub server_rejected: u64,
    /// The credit pool at the end, and the largest D_m a control period measured.
    pub credits_total: f64,
    pub max_d_m_ns: u64,
    /// Goodput over the same mode's goodput at the first load.
    pub goodput_vs_first_load: f64,
    #[serde(flatten)]
    pub result: LoadgenResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverloadBench {
    pub workload: String,
    pub workers: usize,
    pub capacity_rps: f64,
    pub flows: u32,
    pub duration_ms: u64,
    pub target_delay_us: u64,
    pub drop_delay_us: u64,
    pub loadgen_cpu: Option<usize>,
    pub cpu_model: String,
    pub points: Vec<OverloadPoint>,
}

pub struct OverloadParams {
    pub workload: Workload,
    pub handler: synergy_apps::Handler,
    pub loads: Vec<f64>,
    pub duration: Duration,
    pub flows: u32,
    pub seed: u64,
}

/// Where the in-process load generator's threads run: a CPU no worker uses, else the timer
/// core's (so that its real-time threads never preempt a worker).
pub fn loadgen_cpu(placement: &Placement) -> Option<usize> {
    let spare = synergy::cpu::allowed_cpus().into_iter().find(|c| !placement.worker_cores.contains(c));
    spare.or(Some(placement.timer_core))
}

/// Runs both modes at every load.
pub fn run(base: &Config, placement: &Placement, p: &OverloadParams) -> Result<OverloadBench, String> {
    let capacity = p.workload.capacity_rps(base.workers);
    let loadgen_cpu = loadgen_cpu(placement);
    let mut points: Vec<OverloadPoint> = Vec::new();
    let mut progress = synergy_eval::progress::task("synergy sweep overload", (2 * p.loads.len()) as u64, "loads");
    for mode in [OverloadMode::None, OverloadMode::Credits] {
        let mut first_goodput = None;
        for &load in &p.loads {
            let cfg = Config { overload: mode, ..base.clone() };
            let server = UdpServer::start(&cfg, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), p.handler.clone())
                .map_err(|e| e.to_string())?;
            let lp = LoadgenParams {
                target: server.local_addr(),
                workload: p.workload.clone(),
                rps: capacity * load,
                duration: p.duration,
                warmup: Duration::from_millis(500),
                grace: Duration::from_millis(500),
                flows: p.flows,
                seed: p.seed,
                keep_samples: false,
                obey_credits: mode == OverloadMode::Credits,
                cpu: loadgen_cpu,
                step: None,
                body_bytes: 0,
            };
            let result = loadgen::run(&lp);
            let (stats, sockets) = server.shutdown();
            let result = result.map_err(|e| e.to_string())?;
            let first = *first_goodput.get_or_insert(result.goodput_rps);
            let o = stats.overload.unwrap_or_default();
            let point = OverloadPoint {
                overload: mode.name(),
                load,
                kernel_drops: sockets.iter().map(|c| c.kernel_drops).sum(),
                server_rejected: stats.total.rejected,
                credits_total: o.credits_total,
                max_d_m_ns: o.max_d_m_ns,
                goodput_vs_first_load: result.goodput_rps / first.max(1e-9),
                result,
            };
            eprintln!("{}", row(&point));
            points.push(point);
            progress.inc();
        }
    }
    Ok(OverloadBench {
        workload: p.workload.name.to_string(),
        workers: base.workers,
        capacity_rps: capacity,
        flows: p.flows,
        duration_ms: p.duration.as_millis() as u64,
        target_delay_us: base.target_delay_us,
        drop_delay_us: if base.drop_delay_us == 0 { 2 * base.target_delay_us } else { base.drop_delay_us },
        loadgen_cpu,
        cpu_model: synergy::cpu::model_name(),
        points,
    })
}

/// Served requests' p99 (send to reply): the worst of the request types'.
fn served_p99_ns(r: &LoadgenResult) -> u64 {
    r.classes.iter().map(|c| c.p99_ns).max().unwrap_or(0)
}

fn row(p: &OverloadPoint) -> String {
    let r = &p.result;
    format!(
        "{:>8} {:>4.2}x {:>9.0} {:>9.0} {:>6.3} {:>8} {:>8} {:>7} {:>8} {:>10.1} {:>10.1} {:>11.1} {:>11.1}",
        p.overload,
        p.load,
        r.offered_rps,
        r.goodput_rps,
        p.goodput_vs_first_load,
        r.rejected,
        r.lost,
        r.unsent,
        p.kernel_drops,
        r.client_queue_p99_ns as f64 / 1e3,
        served_p99_ns(r) as f64 / 1e3,
        r.end_to_end_p99_ns as f64 / 1e3,
        r.end_to_end_p999_ns as f64 / 1e3,
    )
}

pub fn table(b: &OverloadBench) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "overload control: {} workload, {} worker(s) (nominal capacity {:.0} req/s), {} sessions, {} ms per point; \
         D_t {} µs, D_drop {} µs; load generator on CPU {:?}; {}",
        b.workload,
        b.workers,
        b.capacity_rps,
        b.flows,
        b.duration_ms,
        b.target_delay_us,
        b.drop_delay_us,
        b.loadgen_cpu,
        b.cpu_model
    );
    let _ = writeln!(
        s,
        "{:>8} {:>5} {:>9} {:>9} {:>6} {:>8} {:>8} {:>7} {:>8} {:>10} {:>10} {:>11} {:>11}",
        "overload",
        "load",
        "offered",
        "goodput",
        "vs 1st",
        "rejected",
        "lost",
        "unsent",
        "k.drops",
        "cq p99 µs",
        "svc p99 µs",
        "e2e p99 µs",
        "e2e p99.9"
    );
    for p in &b.points {
        let _ = writeln!(s, "{}", row(p));
    }
    s
}

pub fn csv(b: &OverloadBench) -> String {
    let mut table = synergy_eval::csv::CsvTable::new(&[
        "overload",
        "load",
        "offered_rps",
        "goodput_rps",
        "goodput_vs_first_load",
        "sent",
        "answered",
        "rejected",
        "server_rejected",
        "lost",
        "unsent",
        "kernel_drops",
        "client_queue_p50_ns",
        "client_queue_p99_ns",
        "service_p99_ns",
        "end_to_end_p50_ns",
        "end_to_end_p99_ns",
        "end_to_end_p999_ns",
        "mean_credits",
        "credits_total",
        "max_d_m_ns",
    ]);
    for p in &b.points {
        let r = &p.result;
        table.row([
            p.overload.to_string(),
            p.load.to_string(),
            format!("{:.1}", r.offered_rps),
            format!("{:.1}", r.goodput_rps),
            format!("{:.4}", p.goodput_vs_first_load),
            r.sent.to_string(),
            r.answered.to_string(),
            r.rejected.to_string(),
            p.server_rejected.to_string(),
            r.lost.to_string(),
            r.unsent.to_string(),
            p.kernel_drops.to_string(),
            r.client_queue_p50_ns.to_string(),
            r.client_queue_p99_ns.to_string(),
            served_p99_ns(r).to_string(),
            r.end_to_end_p50_ns.to_string(),
            r.end_to_end_p99_ns.to_string(),
            r.end_to_end_p999_ns.to_string(),
            format!("{:.2}", r.mean_credits),
            format!("{:.1}", p.credits_total),
            p.max_d_m_ns.to_string(),
        ]);
    }
    table.finish()
}

/// Two panels against offered load: goodput, and admitted requests' service p99 (log scale).
pub fn svg(b: &OverloadBench) -> String {
    let series = |f: &dyn Fn(&OverloadPoint) -> f64| -> Vec<Series> {
        ["none", "credits"]
            .iter()
            .map(|mode| Series {
                name: format!("--overload {mode}"),
                points: b.points.iter().filter(|p| p.overload == *mode).map(|p| (p.load * 100.0, f(p))).collect(),
            })
            .collect()
    };
    let goodput = line_panel(
        0.0,
        0.0,
        520.0,
        360.0,
        &format!("Goodput, {} worker(s), {}", b.workers, b.workload),
        "offered load, % of nominal capacity",
        "requests/s served",
        &series(&|p| p.result.goodput_rps),
        false,
    );
    let p99 = line_panel(
        520.0,
        0.0,
        520.0,
        360.0,
        "Served requests' p99 (send to reply)",
        "offered load, % of nominal capacity",
        "µs",
        &series(&|p| served_p99_ns(&p.result) as f64 / 1e3),
        true,
    );
    svg_page(1040.0, 360.0, &[goodput, p99])
}
