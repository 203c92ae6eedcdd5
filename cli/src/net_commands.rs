//! The network subcommands of the `synergy` binary (part of the binary, not the library):
//! `serve`, `loadgen` and `sweep`.

use crate::app_commands::AppArgs;
use crate::app_commands::AppName;
use crate::cli::RuntimeArgs;
use crate::sweep;
use crate::{check_loads, run_failed, start_error, unavailable, usage_error};
use std::net::{SocketAddrV4, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use synergy_eval::workload::{Workload, WorkloadName};
use synergy_net::{loadgen, server::UdpServer};

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    app: AppArgs,
    /// Address to serve on (IPv4).
    #[arg(long, default_value = "127.0.0.1:7000")]
    bind: String,
    /// The workload whose request types the synthetic application serves (kind = type index).
    #[arg(long, value_parser = crate::choices::workload(), default_value = "high")]
    workload: WorkloadName,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    duration_s: Option<u64>,
    /// Data plane: kernel UDP sockets, or DPDK (a build without DPDK, or a port that cannot
    /// start, is an error with exit status 3, never a fallback to UDP); `--app memcached`: tcp (its default), udp (memcached's frame header), or tcp+udp
    /// (both on the same address and port, one store, as memcached's -p and -U together).
    #[arg(long, value_enum)]
    transport: Option<TransportKind>,
    /// DPDK: EAL arguments, space-separated (e.g. "--no-huge --in-memory -l 0 --vdev=net_af_packet0,iface=veth0").
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    dpdk_eal: String,
    /// DPDK: the device to serve on.
    #[arg(long, default_value = "net_af_packet0")]
    dpdk_device: String,
    /// Kernel UDP: how datagrams are spread over the workers' sockets, by a program on the
    /// SO_REUSEPORT group: hash (the kernel's 4-tuple hash), random (per datagram), sita (the
    /// long request kinds to worker 0, the rest randomly over the others); eBPF, as root:
    /// scan-avoid (short requests to workers running no long request), tokens (a token bucket
    /// per flow: --tenant-rate, --tenant-burst; the excess dropped in the kernel).
    #[arg(long, default_value = "hash", value_parser = ["hash", "random", "sita", "scan-avoid", "tokens"])]
    steer: String,
    /// --steer tokens: datagrams per second each flow (session) may send after its burst.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    tenant_rate: Option<u32>,
    /// --steer tokens: datagrams a flow may send at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    tenant_burst: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TransportKind {
    Udp,
    Dpdk,
    Tcp,
    #[value(name = "tcp+udp")]
    TcpUdp,
}

/// What traffic the load generator offers (shared by `loadgen` and `sweep`).
#[derive(clap::Args)]
struct TrafficArgs {
    /// The synthetic application's workload (ignored with --app leveldb).
    #[arg(long, value_parser = crate::choices::workload(), default_value = "high")]
    workload: WorkloadName,
    /// Measured time in ms (after the warm-up), per load level.
    #[arg(long, default_value_t = 2000)]
    duration_ms: u64,
    /// Warm-up in ms, not recorded.
    #[arg(long, default_value_t = 200)]
    warmup_ms: u64,
    /// Client flows (source ports).
    #[arg(long, default_value_t = 64)]
    flows: u32,
    /// Seed of the arrival process and request mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Every request carries a body of this many bytes (wire protocol version 2; at most
    /// 65,379 over UDP). 0: no body (version 1, what older servers speak).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    body_bytes: usize,
}

impl TrafficArgs {
    fn check(&self) -> Result<(), String> {
        if !(1..=600_000).contains(&self.duration_ms) || self.warmup_ms > 600_000 {
            return Err("--duration-ms must be between 1 and 600000 and --warmup-ms at most 600000".into());
        }
        Ok(())
    }
}

#[derive(clap::Args)]
pub struct LoadgenArgs {
    /// The server's application: with `leveldb`, requests are 50% GET of a random key of
    /// `--leveldb-entries`, 50% SCAN, and slowdown is measured against the thesis's service
    /// times (0.92 µs, 94 µs).
    #[arg(long, value_enum, default_value = "synthetic")]
    app: AppName,
    #[arg(long, default_value_t = synergy_eval::workload::LEVELDB_ENTRIES)]
    leveldb_entries: u32,
    /// Server address (IPv4).
    #[arg(long, default_value = "127.0.0.1:7000")]
    target: String,
    /// Offered load in requests per second.
    #[arg(long)]
    rps: f64,
    #[command(flatten)]
    traffic: TrafficArgs,
    #[command(flatten)]
    output: crate::output::OutputArgs,
    /// Each flow is a session that keeps at most as many requests outstanding as its latest
    /// reply's credits (one before any; for a server run with --overload credits). Arrivals
    /// stay Poisson; a request without a credit waits at the client.
    #[arg(long)]
    obey_credits: bool,
    /// Run the load generator's threads on this CPU (e.g. a server's timer core CPU on a small
    /// machine, so that they do not preempt its workers).
    #[arg(long, value_name = "CPU")]
    cpu: Option<usize>,
    /// A step load (Hermes's burst test): the rate switches between --rps and this rate every
    /// --step-ms, from the start of the warm-up; each step's latency is reported.
    #[arg(long, value_name = "RPS", requires = "step_ms")]
    step_rps: Option<f64>,
    /// Length of each step of --step-rps, in ms.
    #[arg(long, value_name = "MS", requires = "step_rps")]
    step_ms: Option<u64>,
}

#[derive(clap::Args)]
pub struct SweepArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    app: AppArgs,
    #[command(flatten)]
    traffic: TrafficArgs,
    /// Offered loads as fractions of the workers' capacity, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8")]
    loads: Vec<f64>,
    /// Preemption modes to compare; one line per (policy, mode).
    #[arg(long, value_delimiter = ',', value_parser = crate::choices::preempt(), default_value = "signal,none")]
    modes: Vec<synergy::PreemptMode>,
    /// Scheduling policies to compare (synergy, cfcfs, dfcfs, shinjuku, concord, tq, darc); one
    /// line per (policy, mode). Overrides --policy.
    #[arg(long, value_delimiter = ',', value_parser = crate::choices::policy())]
    policies: Option<Vec<synergy_policy::system::SchedPolicy>>,
    /// p99.9 slowdown SLO.
    #[arg(long, default_value_t = 50.0)]
    slo: f64,
    #[command(flatten)]
    output: crate::output::OutputArgs,
    /// With --out, also writes NAME-samples.csv: every measured reply's latency (policy,
    /// preempt, load, kind, latency_ns), the raw data behind the reported percentiles.
    #[arg(long)]
    samples: bool,
}

fn parse_v4(s: &str, what: &str) -> Result<SocketAddrV4, String> {
    let addrs = s.to_socket_addrs().map_err(|e| format!("{what} {s:?}: {e}"))?;
    addrs
        .filter_map(|a| match a {
            std::net::SocketAddr::V4(v) => Some(v),
            _ => None,
        })
        .next()
        .ok_or_else(|| format!("{what} {s:?}: no IPv4 address (the UDP transport is IPv4)"))
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Release);
}

fn install_stop_handlers() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_stop_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_stop_signal as *const () as libc::sighandler_t);
    }
}

fn wait_for_stop(duration_s: Option<u64>) {
    let t0 = Instant::now();
    while !STOP.load(Ordering::Acquire) && duration_s.is_none_or(|d| t0.elapsed() < Duration::from_secs(d)) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `serve --app memcached`: the memcached-compatible service over TCP on `bind`.
fn serve_memcached(
    cfg: &synergy::Config,
    placement: &synergy::config::Placement,
    bind: std::net::SocketAddrV4,
    params: &synergy_memcached::Params,
    transport: TransportKind,
    duration_s: Option<u64>,
) -> ExitCode {
    if transport == TransportKind::TcpUdp {
        let service = match synergy_memcached::serve_tcp_and_udp(cfg, bind, bind, params) {
            Ok(s) => s,
            Err(e) => return start_error(e),
        };
        install_stop_handlers();
        let (tcp, udp) = service.local_addrs();
        println!(
            "synergy serve: memcached text protocol on tcp://{tcp} and udp://{udp} (one store; {} worker(s) on CPUs {:?}, timer core {}, --preempt={})",
            cfg.workers,
            placement.worker_cores,
            placement.timer_core,
            cfg.preempt.name()
        );
        wait_for_stop(duration_s);
        let (stats, t, u) = service.shutdown();
        println!(
            "served {} requests ({} preemptions); tcp: {} connections, {} requests, {} malformed streams; udp: {} datagrams, {} dropped, {} replies",
            stats.total.completed, stats.total.preemptions, t.accepted, t.requests, t.malformed, u.received, u.dropped, u.replies
        );
        print_cpu(&stats);
        return ExitCode::SUCCESS;
    }
    if transport == TransportKind::Udp {
        let service = match synergy_memcached::serve_udp(cfg, bind, params) {
            Ok(s) => s,
            Err(e) => return start_error(e),
        };
        install_stop_handlers();
        println!(
            "synergy serve: memcached text protocol on udp://{} (memcached's frame header; {} worker(s) on CPUs {:?}, timer core {}, --preempt={})",
            service.local_addr(),
            cfg.workers,
            placement.worker_cores,
            placement.timer_core,
            cfg.preempt.name()
        );
        wait_for_stop(duration_s);
        let (stats, c) = service.shutdown();
        println!(
            "served {} requests ({} preemptions); datagrams {} received, {} dropped (no header or several per request); {} replies in {} datagrams, {} send errors",
            stats.total.completed, stats.total.preemptions, c.received, c.dropped, c.replies, c.datagrams_sent, c.send_errors
        );
        print_cpu(&stats);
        return ExitCode::SUCCESS;
    }
    let server = match synergy_memcached::serve(cfg, bind, params) {
        Ok(s) => s,
        Err(e) => return start_error(e),
    };
    install_stop_handlers();
    println!(
        "synergy serve: memcached text protocol on tcp://{} ({} worker(s) on CPUs {:?}, timer core {}, --preempt={}, {} MiB, items up to {} bytes)",
        server.local_addr(),
        cfg.workers,
        placement.worker_cores,
        placement.timer_core,
        cfg.preempt.name(),
        params.memory_limit >> 20,
        params.item_max
    );
    wait_for_stop(duration_s);
    let (stats, tcp) = server.shutdown();
    println!(
        "served {} requests ({} preemptions); connections {} accepted, {} closed; {} requests, {} malformed streams, {} replies, {} throttled",
        stats.total.completed, stats.total.preemptions, tcp.accepted, tcp.closed, tcp.requests, tcp.malformed, tcp.replies, tcp.throttled
    );
    print_cpu(&stats);
    ExitCode::SUCCESS
}

pub fn serve(args: ServeArgs) -> ExitCode {
    let (mut cfg, placement) = match args.runtime.resolve() {
        Ok(v) => v,
        Err(e) => return usage_error(e),
    };
    let bind = match parse_v4(&args.bind, "--bind") {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    if let Some(params) = args.app.memcached() {
        let transport = args.transport.unwrap_or(TransportKind::Tcp);
        if transport == TransportKind::Dpdk {
            return usage_error("--app memcached serves over tcp, udp or tcp+udp, not dpdk");
        }
        return serve_memcached(&cfg, &placement, bind, &params, transport, args.duration_s);
    }
    if let Some(why) = args.app.unavailable_here() {
        return unavailable(why);
    }
    let app = match args.app.start(args.workload, false) {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    let w = &app.workload;
    long_kinds_from(&args.runtime, &mut cfg, w);
    if matches!(args.transport, Some(TransportKind::Tcp | TransportKind::TcpUdp)) {
        return usage_error(
            "--transport tcp and tcp+udp are for --app memcached (the other applications speak the project's UDP protocol)",
        );
    }
    if args.transport == Some(TransportKind::Dpdk) {
        let params = synergy_net::dpdk::DpdkParams {
            eal_args: args.dpdk_eal.split_whitespace().map(String::from).collect(),
            device: args.dpdk_device.clone(),
            ip: *bind.ip(),
            port: bind.port(),
            workers: cfg.workers,
        };
        match synergy_net::server::DpdkServer::start(&cfg, &params, app.handler.clone()) {
            Ok(server) => {
                install_stop_handlers();
                println!(
                    "synergy serve: {} on DPDK device {} as {} ({} worker(s), one queue pair each, --preempt={})",
                    w.name,
                    args.dpdk_device,
                    bind,
                    cfg.workers,
                    cfg.preempt.name()
                );
                wait_for_stop(args.duration_s);
                let (stats, c) = server.shutdown();
                println!(
                    "served {} requests ({} preemptions); frames {} received, {} not for us, {} malformed (dropped); {} replies, {} reply errors",
                    stats.total.completed, stats.total.preemptions, c.frames, c.not_for_us, c.malformed, c.replies, c.reply_errors
                );
                print_overload(&stats);
                return ExitCode::SUCCESS;
            }
            // Never a fallback: the user asked for DPDK (issue 43, item 5).
            Err(synergy_net::server::DpdkStartError::Transport(e)) => return unavailable(e),
            Err(synergy_net::server::DpdkStartError::Runtime(e)) => return start_error(e),
        }
    }
    if args.tenant_rate.is_some() && args.steer != "tokens" {
        return usage_error("--tenant-rate applies to --steer tokens only".to_string());
    }
    let bucket =
        args.tenant_rate.map(|rate_per_s| synergy_net::steering::TokenBucket { rate_per_s, burst: args.tenant_burst });
    let steering = match synergy_net::steering::Steering::named(&args.steer, &cfg.long_kinds, bucket) {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    let server = match UdpServer::start_steered(&cfg, bind, app.handler.clone(), &steering) {
        Ok(s) => s,
        Err(e) => return start_error(e),
    };
    install_stop_handlers();
    println!(
        "synergy serve: {} on udp://{} ({} worker(s) on CPUs {:?}, timer core {}, --preempt={}, --steer={})",
        w.name,
        server.local_addr(),
        cfg.workers,
        placement.worker_cores,
        placement.timer_core,
        cfg.preempt.name(),
        steering.name()
    );
    wait_for_stop(args.duration_s);
    // Only `tokens` drops; the other programs' count is always 0.
    let steering_drops = server
        .transport
        .steering_state()
        .filter(|_| matches!(steering, synergy_net::steering::Steering::TenantTokens { .. }))
        .map(|s| s.dropped());
    let (stats, udp) = server.shutdown();
    let sum = |f: fn(&synergy_net::udp::UdpSnapshot) -> u64| udp.iter().map(f).sum::<u64>();
    println!(
        "served {} requests ({} preemptions); datagrams {} received, {} malformed (dropped), {} dropped by the kernel (receive buffer full); {} replies, {} reply errors",
        stats.total.completed,
        stats.total.preemptions,
        sum(|c| c.received),
        sum(|c| c.malformed),
        sum(|c| c.kernel_drops),
        sum(|c| c.replies),
        sum(|c| c.reply_errors)
    );
    println!("datagrams received per worker socket: {:?}", udp.iter().map(|c| c.received).collect::<Vec<_>>());
    if let Some(d) = steering_drops {
        println!("datagrams dropped by --steer {} (over their flow's rate): {d}", steering.name());
    }
    print_cpu(&stats);
    print_overload(&stats);
    ExitCode::SUCCESS
}

/// Where the CPU went: workers, the timer core (`--idle park` lets both sleep).
fn print_cpu(stats: &synergy::stats::RunStats) {
    let wall = stats.wall_ns.max(1) as f64;
    println!(
        "CPU over wall time: workers {:.2} each (cores in use {:.2}, {} parks, mean wake-up {:.1} µs); timer core {:.2} \
         ({} sleeps in epoll, {:.0}% of the run)",
        stats.cpu_per_worker_wall(),
        stats.cores_in_use(),
        stats.total.parks,
        stats.mean_wake_latency_ns() / 1e3,
        stats.timer_cpu_per_wall(),
        stats.timer.sleeps,
        100.0 * stats.timer.slept_ns as f64 / wall
    );
}

/// The overload controller's summary (`--overload credits`).
fn print_overload(stats: &synergy::stats::RunStats) {
    if let Some(o) = &stats.overload {
        println!(
            "overload control: {} rejected; credit pool {:.1} ({} per session, {} active sessions); {} increases, \
             {} decreases, {} rejecting periods; largest D_m {:.1} µs",
            stats.total.rejected,
            o.credits_total,
            o.credits_per_session,
            o.active_sessions,
            stats.timer.credit_increases,
            stats.timer.credit_decreases,
            stats.timer.rejecting_periods,
            o.max_d_m_ns as f64 / 1e3
        );
        if let Some(c) = &o.coupling {
            println!(
                "coupling coresync (R {}): {} parks vetoed by a drained session; {} withdrawals took {:.1} credits \
                 ({:.1} given back, {:.1} forgotten, {:.1} held at the end)",
                c.r, c.drained_vetoes, c.withdrawals, c.withdrawn, c.returned, c.forgotten, c.held
            );
        }
    }
}

fn print_result(r: &loadgen::LoadgenResult) {
    crate::table!(
        "offered {:.0} req/s, achieved {:.0} req/s, goodput {:.0} req/s; sent {}, answered {}, rejected {}, lost {}, \
         unsent {}, send errors {}, bad replies {}, error replies {}, duplicates {}",
        r.offered_rps,
        r.achieved_rps,
        r.goodput_rps,
        r.sent,
        r.answered,
        r.rejected,
        r.lost,
        r.unsent,
        r.send_errors,
        r.bad_replies,
        r.error_replies,
        r.duplicates
    );
    crate::table!(
        "client queueing p50 {:.1} µs, p99 {:.1} µs; end to end p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs; mean credits {:.1}",
        r.client_queue_p50_ns as f64 / 1e3,
        r.client_queue_p99_ns as f64 / 1e3,
        r.end_to_end_p50_ns as f64 / 1e3,
        r.end_to_end_p99_ns as f64 / 1e3,
        r.end_to_end_p999_ns as f64 / 1e3,
        r.mean_credits
    );
    crate::table!(
        "{:>10} {:>9} {:>10} {:>10} {:>10} {:>14}",
        "class",
        "count",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "p99.9 slowdown"
    );
    for c in &r.classes {
        crate::table!(
            "{:>7.1} µs {:>9} {:>10.1} {:>10.1} {:>10.1} {:>14.1}",
            c.service_ns as f64 / 1000.0,
            c.count,
            c.p50_ns as f64 / 1000.0,
            c.p99_ns as f64 / 1000.0,
            c.p999_ns as f64 / 1000.0,
            c.slowdown_p999
        );
    }
    crate::table!(
        "overall p99.9 slowdown {:.1}, p99.9 latency {:.1} µs",
        r.overall_slowdown_p999,
        r.overall_latency_p999_ns as f64 / 1000.0
    );
    if !r.steps.is_empty() {
        crate::table!(
            "{:>10} {:>12} {:>9} {:>10} {:>10} {:>10}",
            "step at ms",
            "offered/s",
            "served",
            "p50 µs",
            "p99 µs",
            "p99.9 µs"
        );
        for st in &r.steps {
            crate::table!(
                "{:>10.0} {:>12.0} {:>9} {:>10.1} {:>10.1} {:>10.1}",
                st.start_ms,
                st.offered_rps,
                st.served,
                st.p50_ns as f64 / 1e3,
                st.p99_ns as f64 / 1e3,
                st.p999_ns as f64 / 1e3
            );
        }
    }
}

pub fn loadgen(args: LoadgenArgs) -> ExitCode {
    crate::output::begin(&args.output);
    let target = match parse_v4(&args.target, "--target") {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    if let Err(e) = args.traffic.check() {
        return usage_error(e);
    }
    let t = &args.traffic;
    let workload = match args.app {
        AppName::Synthetic | AppName::Echo => Workload::named(t.workload),
        AppName::Leveldb => {
            use synergy_eval::workload::{THESIS_LEVELDB_GET_NS, THESIS_LEVELDB_SCAN_NS};
            Workload::leveldb(THESIS_LEVELDB_GET_NS, THESIS_LEVELDB_SCAN_NS, args.leveldb_entries)
        }
        AppName::Memcached => {
            return usage_error(
                "synergy load does not speak memcached yet: drive `serve --app memcached` with memcaslap",
            );
        }
    };
    let p = loadgen::LoadgenParams {
        target,
        workload,
        rps: args.rps,
        duration: Duration::from_millis(t.duration_ms),
        warmup: Duration::from_millis(t.warmup_ms),
        grace: Duration::from_millis(500),
        flows: t.flows,
        seed: t.seed,
        keep_samples: false,
        obey_credits: args.obey_credits,
        cpu: args.cpu,
        step: match (args.step_rps, args.step_ms) {
            (Some(rps), Some(ms)) => Some(loadgen::StepLoad { rps, every: Duration::from_millis(ms) }),
            _ => None,
        },
        body_bytes: t.body_bytes,
    };
    let expected = Duration::from_millis(t.warmup_ms + t.duration_ms);
    match synergy_eval::progress::Task::timed("synergy load", expected, || loadgen::run(&p)) {
        Ok(r) => {
            print_result(&r);
            let mut csv = synergy_eval::csv::CsvTable::new(&[
                "service_ns",
                "long",
                "count",
                "p50_ns",
                "p99_ns",
                "p999_ns",
                "slowdown_p999",
                "offered_rps",
                "achieved_rps",
                "goodput_rps",
            ]);
            for c in &r.classes {
                csv.row([
                    c.service_ns.to_string(),
                    c.long.to_string(),
                    c.count.to_string(),
                    c.p50_ns.to_string(),
                    c.p99_ns.to_string(),
                    c.p999_ns.to_string(),
                    format!("{:.3}", c.slowdown_p999),
                    format!("{:.1}", r.offered_rps),
                    format!("{:.1}", r.achieved_rps),
                    format!("{:.1}", r.goodput_rps),
                ]);
            }
            crate::output::finish(
                &args.output,
                crate::output::Results { name: "load", value: &r, csv: csv.finish(), svg: None },
            )
        }
        Err(e) => loadgen_error(e),
    }
}

/// DARC classifies by kind at arrival: unless `--long-kinds` was given, the kinds the workload
/// marks long.
pub(crate) fn long_kinds_from(runtime: &RuntimeArgs, cfg: &mut synergy::Config, workload: &Workload) {
    if runtime.long_kinds.is_none() {
        cfg.long_kinds = workload.types.iter().enumerate().filter(|(_, t)| t.long).map(|(i, _)| i as u32).collect();
    }
}

pub fn sweep(args: SweepArgs) -> ExitCode {
    crate::output::begin(&args.output);
    let (mut cfg, _) = match args.runtime.resolve() {
        Ok(v) => v,
        Err(e) => return usage_error(e),
    };
    if let Err(e) = check_loads(&args.loads) {
        return usage_error(e);
    }
    if args.modes.is_empty() {
        return usage_error("--modes needs at least one preemption mode");
    }
    for m in &args.modes {
        if let Err(e) = synergy::preempt::preempter_for(*m) {
            return unavailable(e);
        }
    }
    if args.slo.is_nan() || args.slo <= 1.0 {
        return usage_error(format!("--slo must be above 1, got {}", args.slo));
    }
    if args.samples && args.output.out.is_none() {
        return usage_error("--samples writes NAME-samples.csv beside the results: give --out DIR");
    }
    if let Err(e) = args.traffic.check() {
        return usage_error(e);
    }
    let t = &args.traffic;
    if let Some(why) = args.app.unavailable_here() {
        return unavailable(why);
    }
    let app = match args.app.start(t.workload, true) {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    long_kinds_from(&args.runtime, &mut cfg, &app.workload);
    let policies = args.policies.clone().unwrap_or_else(|| vec![cfg.policy]);
    for &policy in &policies {
        if let Err(e) = (synergy::Config { policy, ..cfg.clone() }).validate(&synergy::cpu::allowed_cpus()) {
            return usage_error(e);
        }
    }
    let p = sweep::SweepParams {
        workload: app.workload.clone(),
        handler: app.handler.clone(),
        modes: args.modes.clone(),
        policies,
        loads: args.loads.clone(),
        duration: Duration::from_millis(t.duration_ms),
        warmup: Duration::from_millis(t.warmup_ms),
        flows: t.flows,
        seed: t.seed,
        slo: args.slo,
        keep_samples: args.samples,
        body_bytes: t.body_bytes,
    };
    let points = (p.modes.len() * p.policies.len() * p.loads.len()) as u64;
    let mut progress = synergy_eval::progress::task("synergy sweep preempt", points, "points");
    let r = sweep::run(&cfg, &p, |k, n, pt| {
        progress.inc();
        synergy_eval::progress::note(&format!(
            "{k}/{n}  {} load {:.0}%: {:.0} req/s achieved, p99.9 slowdown {:.1}, lost {}",
            pt.line(),
            pt.load * 100.0,
            pt.result.achieved_rps,
            pt.result.overall_slowdown_p999,
            pt.result.lost
        ));
    });
    drop(progress);
    let mut r = match r {
        Ok(r) => r,
        Err(e) => return run_failed(e),
    };
    r.service_times = app.measured.clone();
    for s in &r.summary {
        crate::table!(
            "--policy={} --preempt={}: highest load with p99.9 slowdown <= {} and no loss: {:.0} req/s",
            s.policy,
            s.preempt,
            r.slo,
            s.max_rps_under_slo
        );
    }
    let code = crate::output::finish(
        &args.output,
        crate::output::Results { name: "sweep", value: &r, csv: sweep::csv(&r), svg: Some(sweep::svg(&r)) },
    );
    if let (true, Some(dir), ExitCode::SUCCESS) = (args.samples, &args.output.out, code) {
        let name = args.output.name.as_deref().unwrap_or("sweep");
        let path = dir.join(format!("{name}-samples.csv"));
        if let Err(e) = std::fs::write(&path, sweep::samples_csv(&r)) {
            return run_failed(format!("cannot write {}: {e}", path.display()));
        }
        eprintln!("samples: {}", path.display());
    }
    code
}

/// The load generator's errors: bad parameters are usage errors, a CPU it may not use is the
/// environment's, anything else a failure.
fn loadgen_error(e: loadgen::LoadgenError) -> ExitCode {
    use loadgen::LoadgenError as E;
    match e {
        E::CpuUnavailable(_) => unavailable(e),
        E::Socket(_) | E::Spawn { .. } | E::ThreadPanicked(_) => run_failed(e),
        _ => usage_error(e),
    }
}
