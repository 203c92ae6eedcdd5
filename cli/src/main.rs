//! The `synergy` command.

mod app_commands;
mod bench;
mod choices;
mod cli;
mod config_file;
mod demo;
mod logging;
mod net_commands;
mod output;
mod progress_bar;
mod reference;
mod renamed;
mod sweep;
mod validate;

/// Workers preempt green threads anywhere but inside the allocator (synergy::alloc).
#[global_allocator]
static ALLOC: synergy::PreemptSafeAlloc = synergy::PreemptSafeAlloc;

use crate::cli::RuntimeArgs;
use crate::demo::DemoParams;
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use synergy_eval::plot::{bar_chart, BarGroup};
use synergy_eval::workload::{Workload, WorkloadName};

#[derive(Parser)]
#[command(name = "synergy", version, about = "Microsecond-scale, application-aware preemption of server requests")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// No progress bars (they are drawn only when stdout and stderr are terminals anyway).
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a synthetic workload in process and print its latency table (the default command).
    ///
    /// The thesis's High/Extreme/ZippyDB workloads (and others), for the chosen preemption mode
    /// next to `--preempt=none`. Without --config it starts from the embedded
    /// cli/configs/demo.toml.
    ///
    /// Example: `synergy run --preempt signal --duration-ms 500`.
    Run(DemoArgs),
    /// Serve the synthetic application, LevelDB or memcached over the network.
    ///
    /// Kernel UDP, TCP or DPDK, with any of the runtime's policies and preemption modes.
    ///
    /// Example: `synergy serve --app memcached --transport tcp+udp --bind 127.0.0.1:11211`.
    Serve(net_commands::ServeArgs),
    /// Open-loop load generator.
    ///
    /// Poisson arrivals over many flows, latencies in HDR histograms.
    ///
    /// Example: `synergy load --target 127.0.0.1:7000 --rps 100000 --duration-ms 2000`.
    Load(net_commands::LoadgenArgs),
    /// A real server under load at several points (preempt, idle, overload, burst, scale).
    ///
    /// Per preemption mode (`preempt`), idle workers spinning or parked (`idle`), overload control
    /// (`overload`), a step load (`burst`), N workers beside the simulator (`scale`).
    ///
    /// Example: `synergy sweep preempt --modes none,signal --loads 0.5,0.8 --out results`.
    #[command(subcommand)]
    Sweep(SweepCommand),
    /// Microbenchmarks, one mechanism each.
    ///
    /// The context switch, the interrupt path, the ring, the timer core's scan and loop, XSAVE,
    /// compiler-interrupt probes, ingress steering, LevelDB's service times.
    ///
    /// Example: `synergy bench interrupt --preempt signal`.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Discrete-event simulations at the papers' scale.
    ///
    /// The thesis's setups, Shinjuku's, Syrup's, and CoreSync's and Hermes's figures.
    ///
    /// Example: `synergy sim thesis --workload high`.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Build, package and test the kernel side (from a synergy checkout).
    ///
    /// Builds the Rust-enabled kernel, packages it and the modules for Debian, runs the QEMU test
    /// bench or the modules' lint: the scripts under scripts/kernel/.
    ///
    /// Example: `synergy kernel test`.
    #[command(subcommand)]
    Kernel(KernelCommand),
    /// Check this machine for every preemption mode and write one report.
    ///
    /// CPU, kernel, modules; runs the modules' tests, the interrupt-path microbenchmark and the
    /// demo per supported mode, and writes one report (Markdown, JSON, SVG) beside thesis Table
    /// 5.1; exit status 1 if anything is missing. scripts/validate-hardware.sh builds what it
    /// needs and runs it.
    ///
    /// Example: `synergy validate --out report`.
    Validate(validate::ValidateArgs),
    /// Print the effective configuration as TOML, and where every thread would run.
    ///
    /// Flags over --config over defaults; `--config` reads the output back.
    ///
    /// Example: `synergy config --workers 4 --preempt signal > my.toml`.
    Config(ConfigArgs),
    /// Shell completions (bash, zsh, fish, elvish, powershell) on stdout.
    ///
    /// Example: `synergy completions bash > /etc/bash_completion.d/synergy`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// The manual page (roff) on stdout.
    ///
    /// Example: `synergy man | man -l -`.
    Man,
    /// The command-line reference as Markdown, from these definitions (docs/cli.md holds it).
    #[command(hide = true)]
    ReferenceMarkdown,
}

/// `synergy kernel`: the scripts under scripts/kernel/ of the checkout this binary runs in.
#[derive(Subcommand)]
enum KernelCommand {
    /// Build (or reuse from ~/.cache/synergy) the Rust-enabled test kernel; prints its tree
    /// (scripts/kernel/build.sh; SYNERGY_KERNEL_VARIANT=kasan for the KASAN one).
    ///
    /// Example: `SYNERGY_KERNEL_VARIANT=kasan synergy kernel build`.
    Build,
    /// Debian packages of the kernel and of the synergy-modules package, checked
    /// (scripts/kernel/package.sh; arguments after `--` are passed on, e.g. `-- --config test`).
    ///
    /// Example: `synergy kernel package -- --config test`.
    Package {
        /// Passed to the script.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The QEMU test bench: the modules' tests on the plain and the KASAN kernel
    /// (scripts/kernel/qemu-test.sh).
    ///
    /// Example: `synergy kernel test`.
    Test,
    /// The modules checked with the kernel's rustfmt settings and clippy
    /// (scripts/kernel/lint-modules.sh).
    ///
    /// Example: `synergy kernel lint`.
    Lint,
}

#[derive(clap::Args)]
struct SimulateArgs {
    #[arg(long, value_parser = crate::choices::workload(), default_value = "high")]
    workload: WorkloadName,
    /// Simulated worker cores.
    #[arg(long, default_value_t = 14)]
    workers: usize,
    /// Policies, comma-separated (synergy, cfcfs, dfcfs, shinjuku, concord, tq, darc), Shinjuku
    /// with its dispatcher modelled (shinjuku-sq, shinjuku-sq-head, shinjuku-mq), the ablation's configurations (rss-ci, rss-ci+ws, rss-ci+ws+wq, rss-ci+ws+wq+cp, rss-ci+ws+wq+cp+qa),
    /// or Synergy with knobs: synergy-q<QUANTUM_FACTOR>, synergy-d<THRESH_WQD µs>-f<CONGESTED_QUANTUM_FACTOR>
    /// (Figure 6.6's notation), or both (synergy-q4-d10-f5).
    #[arg(long, value_delimiter = ',', default_value = "synergy,shinjuku,concord,tq,darc,cfcfs,dfcfs")]
    policies: Vec<String>,
    /// Offered loads as fractions of capacity.
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.6,0.7,0.75,0.8,0.85,0.9,0.95")]
    loads: Vec<f64>,
    /// Requests per point.
    #[arg(long, default_value_t = 400_000)]
    requests: usize,
    /// Client flows; RSS homes flow f on worker f mod workers (the thesis's imbalance test: 8 vs 512).
    #[arg(long, default_value_t = synergy_sim::DEFAULT_FLOWS)]
    flows: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 50.0)]
    slo: f64,
    #[arg(long, default_value_t = 2.0)]
    quantum_factor: f64,
    #[arg(long, default_value_t = 1)]
    steal_threshold: usize,
    /// Central dispatcher cost per dispatch (ns).
    #[arg(long, default_value_t = 50)]
    dispatch_ns: u64,
    /// Resuming a preempted request (ns).
    #[arg(long, default_value_t = 50)]
    switch_ns: u64,
    /// Stealing from a peer (ns).
    #[arg(long, default_value_t = 100)]
    steal_ns: u64,
    /// Synergy's preemption cost (ns). Default: its compiler-interrupt path as measured by
    /// `synergy bench interrupt --preempt ci` (receive 192 + return 21 ns p50, Intel Xeon family 6
    /// model 167, docs/results/microbench-ci.txt), as the thesis's comparisons run Synergy with CI
    /// (§6.3.3); kmod_ipi's receive + return from Table 5.1 is 828, a signal's 2075.
    #[arg(long, default_value_t = 213)]
    synergy_preempt_ns: u64,
    /// Shinjuku's quantum in µs (`shinjuku`, `shinjuku-sq…`, `shinjuku-mq`; the runtime's
    /// `--shinjuku-quantum-us`). Default: its paper's 5 µs.
    #[arg(long, default_value_t = 5)]
    shinjuku_quantum_us: u64,
    /// Shinjuku's IPI preemption cost (ns).
    #[arg(long, default_value_t = 1_000)]
    shinjuku_preempt_ns: u64,
    /// Shinjuku's dispatcher cost per scheduling action (ns): its paper measured one dispatcher
    /// thread at 5M requests/s, i.e. 200 ns per dispatch.
    #[arg(long, default_value_t = 200)]
    shinjuku_dispatch_ns: u64,
    /// Concord's and Tiny Quanta's compiler-interrupt yield cost (ns).
    #[arg(long, default_value_t = 100)]
    ci_preempt_ns: u64,
    /// Idle workers: spin, or park and be woken by the timer core's core grants (the runtime's
    /// `--idle park`, the same decisions; modelled for synergy, its variants and cfcfs).
    #[arg(long, value_parser = crate::choices::idle(), default_value = "spin")]
    idle: synergy::config::IdleMode,
    /// --idle park: POLL_PERIOD in µs (parking is decided at the 5 µs grant looks).
    #[arg(long, default_value_t = 2)]
    idle_poll_us: u64,
    /// --idle park: the delay threshold in µs.
    #[arg(long, default_value_t = 5)]
    wake_delay_us: u64,
    /// --idle park: from a grant to the woken worker taking work (ns). Default: the mean futex
    /// wake-up `synergy sweep idle` measured on the project's KVM host at 10% load (49.4 µs,
    /// Intel Xeon family 6 model 167, docs/results/idle-high.json).
    #[arg(long, default_value_t = 49_400)]
    wake_ns: u64,
    #[command(flatten)]
    output: crate::output::OutputArgs,
}

fn simulate(a: SimulateArgs) -> ExitCode {
    crate::output::begin(&a.output);
    use synergy_sim::{self as sim, sweep};
    if a.workers == 0 || a.workers > 1024 {
        return usage_error(format!("--workers must be between 1 and 1024, got {}", a.workers));
    }
    if let Some(bad) = a.policies.iter().find(|p| !sim::is_policy(p)) {
        return usage_error(format!(
            "unknown policy {bad:?}; known: {}, the ablation {}, and synergy-q<F>, synergy-d<US>-f<F>, synergy-q<F>-d<US>-f<F>",
            sim::POLICIES.join(", "),
            sim::ABLATION.join(", ")
        ));
    }
    if let Err(e) = check_loads(&a.loads) {
        return usage_error(e);
    }
    if a.flows == 0 {
        return usage_error("--flows must be at least 1");
    }
    if !(1_000..=100_000_000).contains(&a.requests) {
        return usage_error(format!("--requests must be between 1000 and 100000000, got {}", a.requests));
    }
    if a.quantum_factor.is_nan() || a.quantum_factor <= 0.0 || a.slo.is_nan() || a.slo <= 1.0 {
        return usage_error("--quantum-factor must be positive and --slo above 1");
    }
    if !(1..=1_000_000).contains(&a.shinjuku_quantum_us) {
        return usage_error(format!(
            "--shinjuku-quantum-us must be between 1 and 1000000, got {}",
            a.shinjuku_quantum_us
        ));
    }
    let p = sweep::SimSweepParams {
        workload: Workload::named(a.workload),
        workers: a.workers,
        policies: a.policies.clone(),
        loads: a.loads.clone(),
        requests: a.requests,
        flows: a.flows,
        seed: a.seed,
        slo: a.slo,
        quantum_factor: a.quantum_factor,
        steal_threshold: a.steal_threshold,
        shinjuku_quantum_ns: a.shinjuku_quantum_us * 1_000,
        overheads: sim::Overheads {
            dispatch_ns: a.dispatch_ns,
            preempt_ns: 0,
            switch_ns: a.switch_ns,
            steal_ns: a.steal_ns,
        },
        preempt_ns: vec![
            ("synergy".into(), a.synergy_preempt_ns),
            ("shinjuku".into(), a.shinjuku_preempt_ns),
            ("shinjuku-sq".into(), a.shinjuku_preempt_ns),
            ("shinjuku-sq-head".into(), a.shinjuku_preempt_ns),
            ("shinjuku-mq".into(), a.shinjuku_preempt_ns),
            ("concord".into(), a.ci_preempt_ns),
            ("tq".into(), a.ci_preempt_ns),
        ]
        .into_iter()
        // The thesis's ablation runs every configuration with compiler interrupts.
        .chain(sim::ABLATION.iter().map(|n| (n.to_string(), a.ci_preempt_ns)))
        .collect(),
        dispatch_ns: vec![("shinjuku".into(), a.shinjuku_dispatch_ns)],
        idle: (a.idle == synergy::config::IdleMode::Park).then_some(sim::engine::SimIdle {
            poll_period_ns: a.idle_poll_us * 1_000,
            wake_delay_ns: a.wake_delay_us * 1_000,
            wake_ns: a.wake_ns,
        }),
    };
    let total = p.policies.len() * p.loads.len();
    let mut k = 0;
    let mut progress = synergy_eval::progress::task("synergy sim thesis", total as u64, "points");
    let r = sweep::run(&p, |name, load, x| {
        k += 1;
        progress.inc();
        synergy_eval::progress::note(&format!(
            "[{k}/{total}] {name} load {:.0}%: p99.9 slowdown {:.1}, {} preemptions, {:.2} cores in use",
            load * 100.0,
            x.overall_slowdown_p999,
            x.preemptions,
            x.cores_in_use
        ));
    });
    drop(progress);
    let r = match r {
        Ok(r) => r,
        Err(e) => return usage_error(e),
    };
    crate::table_print!("{}", sweep::table(&r));
    crate::output::finish(
        &a.output,
        crate::output::Results { name: "sim-thesis", value: &r, csv: sweep::csv(&r), svg: Some(sweep::svg(&r)) },
    )
}

#[derive(clap::Args)]
struct ScaleArgs {
    /// Workers (default: every allowed CPU but four: the timer core's, the load generator's two
    /// threads' and the kernel's packet processing; at least 1).
    #[arg(long)]
    workers: Option<usize>,
    #[arg(long, value_delimiter = ',', value_parser = crate::choices::workload(), default_value = "high,extreme,zippydb")]
    workloads: Vec<WorkloadName>,
    #[arg(long, value_delimiter = ',', value_parser = crate::choices::policy(), default_value = "synergy,shinjuku,cfcfs,dfcfs")]
    policies: Vec<synergy_policy::system::SchedPolicy>,
    /// Preemption modes (default: signal, plus ipi and uintr where their modules' devices exist).
    #[arg(long, value_delimiter = ',', value_parser = crate::choices::preempt())]
    modes: Option<Vec<synergy::PreemptMode>>,
    #[arg(long, value_delimiter = ',', default_value = "0.2,0.4,0.5,0.6,0.7,0.8,0.9")]
    loads: Vec<f64>,
    /// Measured time per point (after the warm-up).
    #[arg(long, default_value_t = 1000)]
    duration_ms: u64,
    #[arg(long, default_value_t = 200)]
    warmup_ms: u64,
    #[arg(long, default_value_t = 50.0)]
    slo: f64,
    /// Requests per simulated point.
    #[arg(long, default_value_t = 200_000)]
    sim_requests: usize,
    /// Interrupts per mode for the preemption cost.
    #[arg(long, default_value_t = 50_000)]
    microbench_runs: usize,
    /// The real runtime's green-thread budget (`max_green_threads`): every preempted request
    /// holds a green thread until it resumes.
    #[arg(long, default_value_t = synergy::Config::default().max_green_threads)]
    max_green_threads: usize,
    #[command(flatten)]
    output: crate::output::OutputArgs,
}

fn bench_scale(a: ScaleArgs) -> ExitCode {
    crate::output::begin(&a.output);
    use crate::bench::scale;
    if let Err(e) = check_loads(&a.loads) {
        return usage_error(e);
    }
    if a.duration_ms == 0 || a.slo.is_nan() || a.slo <= 1.0 || a.microbench_runs == 0 {
        return usage_error("--duration-ms and --microbench-runs must be at least 1 and --slo above 1");
    }
    if !(1_000..=100_000_000).contains(&a.sim_requests) {
        return usage_error(format!("--sim-requests must be between 1000 and 100000000, got {}", a.sim_requests));
    }
    let modes = a.modes.clone().unwrap_or_else(|| {
        let mut m = vec![synergy::PreemptMode::Signal];
        for (dev, mode) in
            [("/dev/synergy_ipi", synergy::PreemptMode::Ipi), ("/dev/synergy_uintr", synergy::PreemptMode::Uintr)]
        {
            if std::path::Path::new(dev).exists() && synergy::preempt::preempter_for(mode).is_ok() {
                m.push(mode);
            }
        }
        m
    });
    for m in &modes {
        if let Err(e) = synergy::preempt::preempter_for(*m) {
            return unavailable(e);
        }
    }
    let allowed = synergy::cpu::allowed_cpus().len();
    let workers = a.workers.unwrap_or_else(|| scale::default_workers(allowed));
    if workers + 1 > allowed {
        return unavailable(format!(
            "{workers} workers and a timer core need {} CPUs; this process may use {allowed}",
            workers + 1
        ));
    }
    let p = scale::ScaleParams {
        workers,
        workloads: a.workloads.clone(),
        policies: a.policies.clone(),
        modes,
        loads: a.loads.clone(),
        duration: std::time::Duration::from_millis(a.duration_ms),
        warmup: std::time::Duration::from_millis(a.warmup_ms),
        slo: a.slo,
        sim_requests: a.sim_requests,
        microbench_runs: a.microbench_runs,
        max_green_threads: a.max_green_threads,
    };
    let r = match scale::run(&p, |line| synergy_eval::progress::note(&format!("[scale] {line}"))) {
        Ok(r) => r,
        Err(e) => return run_failed(e),
    };
    crate::table_print!("{}", scale::table(&r));
    crate::output::finish(
        &a.output,
        crate::output::Results { name: "scale", value: &r, csv: scale::csv(&r), svg: Some(scale::svg(&r)) },
    )
}

#[derive(clap::Args)]
struct MicrobenchArgs {
    /// Preemption paths to measure, comma-separated (e.g. ci,signal): rows side by side in one
    /// run, the paths taking turns in blocks.
    #[arg(long, value_delimiter = ',', value_parser = crate::choices::preempt(), default_value = "signal")]
    preempt: Vec<synergy::PreemptMode>,
    /// Interrupts per method.
    #[arg(long, default_value_t = 500_000)]
    runs: usize,
    /// CPU of the sending thread (the timer core's role). Default: the first allowed CPU.
    #[arg(long)]
    sender_cpu: Option<usize>,
    /// CPU of the interrupted worker. Default: the second allowed CPU.
    #[arg(long)]
    receiver_cpu: Option<usize>,
    /// The SVG draws the p50 of every phase with the thesis's numbers.
    #[command(flatten)]
    output: crate::output::OutputArgs,
}

fn microbench(args: MicrobenchArgs) -> ExitCode {
    use crate::bench::{interrupt, interrupt_report};
    crate::output::begin(&args.output);
    if args.runs == 0 || args.runs > 100_000_000 {
        return usage_error(format!("--runs must be between 1 and 100000000, got {}", args.runs));
    }
    let allowed = synergy::cpu::allowed_cpus();
    if allowed.len() < 2 {
        return unavailable("the microbenchmark needs two CPUs (a sender and a receiver)");
    }
    let sender_cpu = args.sender_cpu.unwrap_or(allowed[0]);
    let receiver_cpu =
        args.receiver_cpu.unwrap_or_else(|| *allowed.iter().find(|&&c| c != sender_cpu).unwrap_or(&allowed[1]));
    for (name, c) in [("--sender-cpu", sender_cpu), ("--receiver-cpu", receiver_cpu)] {
        if !allowed.contains(&c) {
            return unavailable(format!(
                "{name} {c}: that CPU is not available to this process (allowed: {allowed:?})"
            ));
        }
    }
    // A path this machine lacks (a module not loaded, no UINTR) is the environment's, not a usage
    // error; `none` and repeated paths are refused by `interrupt::run` below.
    for &mode in &args.preempt {
        if mode != synergy::PreemptMode::None {
            if let Err(e) = synergy::preempt::preempter_for(mode) {
                return unavailable(e);
            }
        }
    }
    let params = interrupt::Params { modes: args.preempt, runs: args.runs, sender_cpu, receiver_cpu };
    let r = match interrupt::run(&params) {
        Ok(r) => r,
        Err(e) => return usage_error(e),
    };
    crate::table_print!("{}", interrupt_report::table(&r));
    crate::output::finish(
        &args.output,
        crate::output::Results {
            name: "microbench",
            value: &r,
            csv: interrupt_report::csv(&r),
            svg: Some(interrupt_report::svg(&r)),
        },
    )
}

#[derive(clap::Args)]
struct DemoArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Workload.
    #[arg(long, value_parser = crate::choices::workload(), default_value = "high")]
    workload: WorkloadName,
    /// Offered load as a fraction of the workers' capacity (0 < load ≤ 2).
    #[arg(long, default_value_t = 0.6, allow_negative_numbers = true)]
    load: f64,
    /// Length of the replayed trace in ms.
    #[arg(long, default_value_t = 2000)]
    duration_ms: u64,
    /// Seed of the arrival process.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Alternate the modes this many times and report medians (the JSON keeps every run).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Flows the requests are hashed from onto workers.
    #[arg(long, default_value_t = 64)]
    flows: u32,
    /// How long requests may be parked: `preemptive` (`feedback_start`: at any instruction, and
    /// resumed on any worker) or `cooperative` (`feedback_start_cooperative`, safe code: only at
    /// the probes of their instrumented loop, and resumed on their own worker).
    #[arg(long, value_parser = ["preemptive", "cooperative"], default_value = "preemptive")]
    tier: String,
    /// The SVG draws p50/p99/p99.9 latency per request type and mode.
    #[command(flatten)]
    output: crate::output::OutputArgs,
}

// One value per process, parsed once: boxing `Timer`'s runtime flags would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum BenchCommand {
    /// Green-thread context switch vs the corosensei crate, measured side by side.
    ///
    /// Example: `synergy bench ctx --rounds 5 --out results`.
    Ctx {
        /// Alternating measurement rounds (the median is reported).
        #[arg(long, default_value_t = 15)]
        rounds: usize,
        /// Ping-pong round trips per round.
        #[arg(long, default_value_t = 1_000_000)]
        round_trips: u64,
        /// CPU to run on.
        #[arg(long)]
        cpu: Option<usize>,
        #[command(flatten)]
        output: crate::output::OutputArgs,
    },
    /// Interrupt-path microbenchmark (thesis Table 5.1): send, propagation, receive and return
    /// of synergy's preemption path next to a bare tgkill + sigreturn, plus the context switch.
    ///
    /// Example: `synergy bench interrupt --preempt signal --format json`.
    Interrupt(MicrobenchArgs),
    /// LevelDB GET and SCAN service times on this machine (Table 6.1), sequentially.
    ///
    /// Example: `synergy bench leveldb`.
    Leveldb(app_commands::BenchLeveldbArgs),
    /// The runtime's ring next to crossbeam's ArrayQueue and work-stealing deque, side by side.
    ///
    /// Example: `synergy bench ring --rounds 3 --out results`.
    Ring {
        /// Alternating measurement rounds (the median is reported).
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        /// Items per pattern and round.
        #[arg(long, default_value_t = 2_000_000)]
        items: u64,
        #[command(flatten)]
        output: crate::output::OutputArgs,
    },
    /// Ingress steering's cost per datagram: hash (no program), random, sita, scan-avoid and tokens over a group
    /// of kernel UDP sockets, loopback, side by side in one run (issue 19).
    ///
    /// Example: `synergy bench steering --sockets 4`.
    Steering {
        /// Sockets in the group (workers).
        #[arg(long, default_value_t = 4)]
        sockets: usize,
        /// Datagrams per policy and round.
        #[arg(long, default_value_t = 20_000)]
        datagrams: usize,
        /// Alternating rounds (the median is reported).
        #[arg(long, default_value_t = 9)]
        rounds: usize,
        #[command(flatten)]
        output: crate::output::OutputArgs,
    },
    /// Compiler-interrupt probe overhead: three loops plain, probed every iteration and every 64.
    ///
    /// Example: `synergy bench probes --rounds 5`.
    Probes {
        /// Alternating rounds (medians and the worst round are reported).
        #[arg(long, default_value_t = 11)]
        rounds: usize,
        /// Iterations of the arithmetic loop per round (the others scale from it).
        #[arg(long, default_value_t = 50_000_000)]
        iterations: u64,
        /// CPU of the worker that runs the loops.
        #[arg(long)]
        cpu: Option<usize>,
        #[command(flatten)]
        output: crate::output::OutputArgs,
    },
    /// The timer core's cost per worker watched, over 1 to 30 fake workers in each worker state.
    ///
    /// Example: `synergy bench scan --workers 1,8,16`.
    Scan {
        /// Worker counts to measure (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2, 4, 8, 16, 30])]
        workers: Vec<usize>,
        /// Worker checks per measurement (loops × workers).
        #[arg(long, default_value_t = 3_000_000)]
        checks: u64,
        /// Alternating rounds (the median round of each cell is reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// CPU to pin the measuring thread to.
        #[arg(long)]
        cpu: Option<usize>,
        #[command(flatten)]
        output: crate::output::OutputArgs,
    },
    /// The preemption entry's extended-state save + restore (XSAVE vs XSAVEC) with SSE, AVX2 or
    /// AVX-512 state live: bytes written and time.
    ///
    /// Example: `synergy bench xsave --out results --name xsave-here`.
    Xsave {
        /// Alternating rounds (the median is reported).
        #[arg(long, default_value_t = 9)]
        rounds: usize,
        /// Save + restore pairs per round and cell.
        #[arg(long, default_value_t = 200_000)]
        pairs: u64,
        #[command(flatten)]
        output: crate::output::OutputArgs,
    },
    /// The timer core's loop period with a sched_yield per loop and without, side by side.
    ///
    /// Example: `synergy bench timer --duration-ms 500`.
    Timer {
        #[command(flatten)]
        runtime: RuntimeArgs,
        /// Length of each of the two measurements, in ms.
        #[arg(long, default_value_t = 1000)]
        duration_ms: u64,
        #[command(flatten)]
        output: crate::output::OutputArgs,
    },
}

#[derive(Subcommand)]
enum SimCommand {
    /// Discrete-event simulation of the thesis's setups (14+ workers) under every policy: p99.9
    /// slowdown vs load, the highest load under the SLO, and the thesis's numbers next to it.
    ///
    /// Example: `synergy sim thesis --workload zippydb --policies synergy,shinjuku`.
    Thesis(SimulateArgs),
    /// Syrup's socket-steering figures, simulated at the paper's scale (6 workers, no stealing):
    /// Fig. 2 (hash vs round-robin, 50 flows, GET p99 ≤ 200 µs) and Fig. 6 (99.5% GET / 0.5%
    /// SCAN of 700 µs: round-robin, SITA, SCAN-avoid, hash; GET p99 ≤ 150 µs, per-type tails).
    ///
    /// Example: `synergy sim syrup --seeds 2`.
    Syrup {
        /// Simulated requests per point.
        #[arg(long, default_value_t = 200_000)]
        requests: usize,
        /// Seeds (hash secrets and arrival sequences): 1..=N.
        #[arg(long, default_value_t = 5)]
        seeds: u64,
        #[command(flatten)]
        output: crate::output::OutputArgs,
    },
    /// Shinjuku's figures, simulated at the paper's scale with the faithful dispatcher model
    /// (14 Shinjuku workers against 16 for d-FCFS/IX and c-FCFS/ZygOS): Fig. 5c (SQ, p99 <= 300 µs),
    /// Fig. 6a/6b (MQ and SQ, p99 slowdown <= 10 and 50), Fig. 7b (1 and 2 dispatchers, 1 to 22
    /// workers at saturation).
    ///
    /// Example: `synergy sim shinjuku --out results`.
    Shinjuku {
        /// Simulated requests per point.
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
        /// Arrival sequence seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        output: crate::output::OutputArgs,
    },
    /// CoreSync's and Hermes's experiments, simulated at their scale with the runtime's own
    /// controllers (credit pool, AQM, core grants, CoreSync's parking gate): Table I (goodput at
    /// 1.0/1.3/1.5x capacity), Fig. 3 (p99 against cores in use), Fig. 7 (R from 10 to 100), and
    /// Hermes's burst test (1 µs requests, 100 k <-> 5 M req/s, 14 cores).
    ///
    /// Example: `synergy sim coresync --seeds 1`.
    Coresync {
        /// Measured span of each CoreSync point, in ms (after a warm-up of a fifth of it).
        #[arg(long, default_value_t = 100)]
        duration_ms: u64,
        /// Seeds (arrival sequences): 1..=N.
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// Length of each rate of the burst test, in ms (Hermes: 1000).
        #[arg(long, default_value_t = 1000)]
        burst_phase_ms: u64,
        /// Low-high cycles of the burst test.
        #[arg(long, default_value_t = 2)]
        burst_cycles: usize,
        #[command(flatten)]
        output: crate::output::OutputArgs,
    },
}

#[derive(Subcommand)]
enum SweepCommand {
    /// Server + load generator over a range of loads, per preemption mode: JSON, CSV and an SVG
    /// of p99.9 slowdown and latency vs throughput (like the thesis's Figure 6.1).
    ///
    /// Example: `synergy sweep preempt --modes none,signal --loads 0.5,0.8`.
    Preempt(net_commands::SweepArgs),
    /// Idle workers spinning vs parking (--idle), alternating at each load: worker CPU over wall
    /// time, cores in use, short requests' latency, wake-ups.
    ///
    /// Example: `synergy sweep idle --loads 0.1,0.5 --idle-poll-us 5`.
    Idle {
        #[command(flatten)]
        runtime: RuntimeArgs,
        /// Workload (the demo's synthetic application).
        #[arg(long, value_parser = crate::choices::workload(), default_value = "high")]
        workload: WorkloadName,
        /// Offered loads as fractions of capacity, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "0.1,0.3,0.5,0.7")]
        loads: Vec<f64>,
        /// Length of each run in ms.
        #[arg(long, default_value_t = 1000)]
        duration_ms: u64,
        /// Alternating spin/park rounds per load (medians are reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[command(flatten)]
        output: crate::output::OutputArgs,
    },
    /// Overload control over kernel UDP: --overload none (open-loop client) and credits (sessions
    /// obeying credits) at each load: goodput, rejects, kernel drops, client queueing, latency.
    ///
    /// Example: `synergy sweep overload --loads 1.0,1.5 --duration-ms 5000`.
    Overload {
        #[command(flatten)]
        runtime: RuntimeArgs,
        /// Workload (the synthetic application).
        #[arg(long, value_parser = crate::choices::workload(), default_value = "high")]
        workload: WorkloadName,
        /// Offered loads as fractions of nominal capacity, comma-separated (the first is the
        /// reference of goodput_vs_first_load).
        #[arg(long, value_delimiter = ',', default_value = "1.0,1.5")]
        loads: Vec<f64>,
        /// Measured length of each point in ms (after a 500 ms warm-up).
        #[arg(long, default_value_t = 30_000)]
        duration_ms: u64,
        /// Sessions (UDP flows).
        #[arg(long, default_value_t = 8)]
        flows: u32,
        #[command(flatten)]
        output: crate::output::OutputArgs,
    },
    /// Hermes's burst test on the real server: a step load between two rates, served with
    /// --idle spin, park, and park with CoreSync's credits and coupling; per-step latency and the
    /// cores each burnt.
    ///
    /// Example: `synergy sweep burst --low 0.05 --high 0.4`.
    Burst {
        #[command(flatten)]
        runtime: RuntimeArgs,
        /// Workload (the synthetic application).
        #[arg(long, value_parser = crate::choices::workload(), default_value = "high")]
        workload: WorkloadName,
        /// The low and the high rate, as fractions of nominal capacity (Hermes's 100k and 5M
        /// req/s of 1 µs on 14 cores are 0.7% and 36%).
        #[arg(long, default_value_t = 0.05)]
        low: f64,
        #[arg(long, default_value_t = 0.4)]
        high: f64,
        /// How long each rate lasts, ms.
        #[arg(long, default_value_t = 500)]
        step_ms: u64,
        /// Measured length of each mode's run in ms (after a 500 ms warm-up).
        #[arg(long, default_value_t = 4_000)]
        duration_ms: u64,
        /// Client flows (sessions).
        #[arg(long, default_value_t = 8)]
        flows: u32,
        #[command(flatten)]
        output: crate::output::OutputArgs,
    },
    /// The real runtime at N workers beside the simulator's prediction for the same N and this
    /// machine's measured preemption cost: highest load under the SLO per system (issue 20;
    /// scripts/scale-bench.sh runs it on a many-core machine).
    ///
    /// Example: `synergy sweep scale --workers 4`.
    Scale(ScaleArgs),
}

#[derive(clap::Args)]
struct ConfigArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// `synergy kernel ...`: runs the script under scripts/kernel/ of the synergy checkout that holds
/// the working directory (or this binary), with the terminal's streams; its failure is ours (1).
fn kernel_script(k: KernelCommand) -> ExitCode {
    let (script, args) = match k {
        KernelCommand::Build => ("build.sh", Vec::new()),
        KernelCommand::Package { args } => ("package.sh", args),
        KernelCommand::Test => ("qemu-test.sh", Vec::new()),
        KernelCommand::Lint => ("lint-modules.sh", Vec::new()),
    };
    let roots = std::env::current_dir().ok().into_iter().chain(std::env::current_exe().ok());
    let Some(root) = roots
        .flat_map(|p| p.ancestors().map(std::path::Path::to_path_buf).collect::<Vec<_>>())
        .find(|d| d.join("scripts/kernel").join(script).is_file() && d.join("kmod_ipi").is_dir())
    else {
        return unavailable(format!(
            "'synergy kernel' runs scripts/kernel/{script} from a synergy checkout, and neither the working \
             directory nor this binary is inside one: cd into a clone of the repository"
        ));
    };
    match std::process::Command::new("bash").arg(root.join("scripts/kernel").join(script)).args(&args).status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => run_failed(format!("scripts/kernel/{script} failed ({s})")),
        Err(e) => unavailable(format!("cannot run bash for scripts/kernel/{script}: {e}")),
    }
}

/// Exit statuses (docs/cli.md, "Exit codes"): 0 success, and these.
pub(crate) mod exit {
    /// The run failed, or a check it was asked for did not hold.
    pub(crate) const FAILED: u8 = 1;
    /// The command line or the configuration is wrong (clap's own errors exit 2 as well).
    pub(crate) const USAGE: u8 = 2;
    /// The command cannot run in this environment: a kernel module not loaded, a device not
    /// accessible, DPDK or LevelDB not built in, a CPU or an instruction set missing.
    pub(crate) const UNAVAILABLE: u8 = 3;
}

/// Writes generated text to stdout; a reader that went away (a closed pipe) is not an error.
fn write_stdout(text: &[u8]) -> ExitCode {
    use std::io::Write;
    match std::io::stdout().write_all(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => run_failed(format!("cannot write to stdout: {e}")),
    }
}

/// A usage error (exit 2): a flag's or the configuration's value is wrong.
pub(crate) fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("synergy: error: {msg}");
    ExitCode::from(exit::USAGE)
}

/// The run failed (exit 1).
pub(crate) fn run_failed(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("synergy: error: {msg}");
    ExitCode::from(exit::FAILED)
}

/// The command cannot run here (exit 3); `msg` says what to do.
pub(crate) fn unavailable(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("synergy: error: {msg}");
    ExitCode::from(exit::UNAVAILABLE)
}

/// A runtime that did not start: a bad configuration is a usage error, a preemption mechanism
/// this machine lacks (a module not loaded, no UINTR) is unavailable, anything else a failure.
pub(crate) fn start_error(e: synergy::StartError) -> ExitCode {
    match e {
        synergy::StartError::Config(_) => usage_error(e),
        synergy::StartError::Preemption(_) => unavailable(e),
        _ => run_failed(e),
    }
}

/// Offered loads given as fractions of capacity: at least one, each in (0, 2].
pub(crate) fn check_loads(loads: &[f64]) -> Result<(), String> {
    if loads.is_empty() || loads.iter().any(|l| !(*l > 0.0 && *l <= 2.0)) {
        return Err(format!("--loads must be fractions of capacity in (0, 2], got {loads:?}"));
    }
    Ok(())
}

fn demo(args: DemoArgs) -> ExitCode {
    crate::output::begin(&args.output);
    let (mut cfg, placement) = match args.runtime.resolve_over(demo::default_config()) {
        Ok(v) => v,
        Err(e) => return usage_error(e),
    };
    net_commands::long_kinds_from(&args.runtime, &mut cfg, &Workload::named(args.workload));
    if !(args.load > 0.0 && args.load <= 2.0) {
        return usage_error(format!("--load must be in (0, 2], got {}", args.load));
    }
    if !(1..=600_000).contains(&args.duration_ms) {
        return usage_error(format!("--duration-ms must be between 1 and 600000, got {}", args.duration_ms));
    }
    if !(1..=100).contains(&args.repeat) {
        return usage_error(format!("--repeat must be between 1 and 100, got {}", args.repeat));
    }
    if args.flows == 0 {
        return usage_error("--flows must be at least 1");
    }
    if let Err(e) = synergy::preempt::preempter_for(cfg.preempt) {
        return unavailable(e);
    }
    for w in &placement.warnings {
        eprintln!("synergy: warning: {w}");
    }
    let w = Workload::named(args.workload);
    let mix: Vec<String> =
        w.types.iter().map(|t| format!("{} µs {}%", t.service_ns as f64 / 1000.0, t.share * 100.0)).collect();
    crate::table!(
        "synergy run: --policy={}, workload {} ({}), {} worker(s) on CPU {:?}, timer core on CPU {}",
        cfg.policy.name(),
        w.name,
        mix.join(", "),
        cfg.workers,
        placement.worker_cores,
        placement.timer_core
    );
    crate::table!(
        "offered load {:.0}% of capacity = {:.0} requests/s for {} ms, QUANTUM_FACTOR {}, THRESH_WQD {} µs, clock {}",
        args.load * 100.0,
        w.capacity_rps(cfg.workers) * args.load,
        args.duration_ms,
        cfg.quantum_factor,
        cfg.thresh_wqd_us,
        if synergy::clock::uses_tsc() { "tsc" } else { "clock_gettime" }
    );
    let params = DemoParams {
        workload: args.workload,
        load: args.load,
        duration_ms: args.duration_ms,
        seed: args.seed,
        flows: args.flows,
        cooperative: args.tier == "cooperative",
    };
    let runs = match demo::run_demo(&cfg, &params, args.repeat) {
        Ok(r) => r,
        Err(e) => return run_failed(e),
    };
    crate::table!();
    crate::table_print!("{}", demo::format_table(&runs));
    let svg = {
        // Per request type and percentile, one bar per mode: the median over the repeated runs.
        let modes: Vec<String> = runs.iter().map(|r| r.preempt.clone()).fold(Vec::new(), |mut v, m| {
            if !v.contains(&m) {
                v.push(m);
            }
            v
        });
        type Pick = fn(&synergy_eval::report::Summary) -> u64;
        let percentiles: [(&str, Pick); 3] = [("p50", |s| s.p50_ns), ("p99", |s| s.p99_ns), ("p99.9", |s| s.p999_ns)];
        let mut groups = Vec::new();
        for (i, c) in runs[0].classes.iter().enumerate() {
            for (pname, pick) in percentiles {
                groups.push(BarGroup {
                    label: format!("{} µs {pname}", c.service_ns as f64 / 1000.0),
                    bars: modes
                        .iter()
                        .map(|m| {
                            let mut v: Vec<u64> =
                                runs.iter().filter(|r| &r.preempt == m).map(|r| pick(&r.classes[i].latency)).collect();
                            v.sort_unstable();
                            (format!("--preempt={m}"), v[v.len() / 2] as f64 / 1000.0)
                        })
                        .collect(),
                });
            }
        }
        let title =
            format!("synergy run: latency by request type, {} at {:.0}% load", runs[0].workload, args.load * 100.0);
        bar_chart(&title, "latency (µs, log scale)", &groups, true)
    };
    let mut csv = synergy_eval::csv::CsvTable::new(&[
        "preempt",
        "tier",
        "workload",
        "workers",
        "offered_rps",
        "service_ns",
        "long",
        "count",
        "p50_ns",
        "p99_ns",
        "p999_ns",
        "max_ns",
        "slowdown_p999",
    ]);
    for r in &runs {
        for c in &r.classes {
            csv.row([
                r.preempt.clone(),
                r.tier.clone(),
                r.workload.clone(),
                r.workers.to_string(),
                format!("{:.0}", r.offered_rps),
                c.service_ns.to_string(),
                c.long.to_string(),
                c.latency.count.to_string(),
                c.latency.p50_ns.to_string(),
                c.latency.p99_ns.to_string(),
                c.latency.p999_ns.to_string(),
                c.latency.max_ns.to_string(),
                format!("{:.3}", c.slowdown_p999),
            ]);
        }
    }
    let code = crate::output::finish(
        &args.output,
        crate::output::Results { name: "run", value: &runs, csv: csv.finish(), svg: Some(svg) },
    );
    if code != ExitCode::SUCCESS {
        return code;
    }
    if runs.iter().any(|r| r.answered != r.requests || r.duplicates != 0) {
        return run_failed("some requests were not answered exactly once");
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    logging::init();
    let (args, warning) = renamed::rewrite(std::env::args().collect());
    if let Some(w) = warning {
        eprintln!("synergy: warning: {w}");
    }
    let cli = Cli::parse_from(args);
    progress_bar::install(cli.quiet);
    match cli.command.unwrap_or(Command::Run(DemoArgs::parse_default())) {
        Command::Run(args) => demo(args),
        Command::Bench(BenchCommand::Ctx { rounds, round_trips, cpu, output }) => {
            crate::output::begin(&output);
            if rounds == 0 || round_trips == 0 {
                return usage_error("--rounds and --round-trips must be at least 1");
            }
            if let Some(c) = cpu {
                if !synergy::cpu::allowed_cpus().contains(&c) {
                    return unavailable(format!("CPU {c} is not available to this process"));
                }
            }
            let r = crate::bench::ctx::run(rounds, round_trips, cpu);
            crate::table!(
                "green-thread switch (median of {} rounds × {} round trips):",
                r.rounds,
                r.round_trips_per_round
            );
            crate::table!("  synergy     {:>7.2} ns/switch", r.synergy_ns_per_switch);
            crate::table!("  corosensei  {:>7.2} ns/switch", r.corosensei_ns_per_switch);
            crate::table!(
                "  ratio       {:>7.3}× (ours also keeps MXCSR and the x87 control word; corosensei does not)",
                r.ratio
            );
            let groups = vec![BarGroup {
                label: "one context switch".into(),
                bars: vec![
                    ("synergy".into(), r.synergy_ns_per_switch),
                    ("corosensei".into(), r.corosensei_ns_per_switch),
                ],
            }];
            let mut csv = synergy_eval::csv::CsvTable::new(&[
                "implementation",
                "ns_per_switch",
                "rounds",
                "round_trips_per_round",
            ]);
            for (name, ns) in [("synergy", r.synergy_ns_per_switch), ("corosensei", r.corosensei_ns_per_switch)] {
                csv.row([
                    name.to_string(),
                    format!("{ns:.3}"),
                    r.rounds.to_string(),
                    r.round_trips_per_round.to_string(),
                ]);
            }
            crate::output::finish(
                &output,
                crate::output::Results {
                    name: "bench-ctx",
                    value: &r,
                    csv: csv.finish(),
                    svg: Some(bar_chart("Green-thread switch cost (median)", "ns per switch", &groups, false)),
                },
            )
        }
        Command::Bench(BenchCommand::Leveldb(args)) => app_commands::bench_leveldb(args),
        Command::Sweep(SweepCommand::Scale(a)) => bench_scale(a),
        Command::Sim(SimCommand::Syrup { requests, seeds, output }) => {
            crate::output::begin(&output);
            if requests < 1_000 || seeds == 0 || seeds > 100 {
                return usage_error("--requests must be at least 1000, --seeds between 1 and 100");
            }
            let p = synergy_sim::syrup::SyrupParams { requests, seeds: (1..=seeds).collect(), ..Default::default() };
            let r = synergy_sim::syrup::run(&p);
            for f in [&r.fig2, &r.fig6] {
                crate::table!(
                    "Syrup {} (simulated): {} on {} workers, {} flows, capacity {:.0} k req/s; highest load with GET p99 <= {} µs, per seed:",
                    f.figure,
                    f.workload,
                    f.workers,
                    f.flows,
                    f.capacity_rps / 1e3,
                    f.bound_ns / 1000
                );
                let mut rules: Vec<&str> = f.max.iter().map(|m| m.rule).collect();
                rules.dedup();
                for rule in rules {
                    let per_seed: Vec<String> = f
                        .max
                        .iter()
                        .filter(|m| m.rule == rule)
                        .map(|m| match m.scan_p99_ns {
                            Some(scan) => format!("{:.0}k (SCAN p99 {:.0} µs)", m.max_rps / 1e3, scan as f64 / 1e3),
                            None => format!("{:.0}k", m.max_rps / 1e3),
                        })
                        .collect();
                    crate::table!("  {rule:<12} {}", per_seed.join(", "));
                }
            }
            crate::output::finish(
                &output,
                crate::output::Results {
                    name: "sim-syrup",
                    value: &r,
                    csv: synergy_sim::syrup::csv(&r),
                    svg: Some(synergy_sim::syrup::svg(&r)),
                },
            )
        }
        Command::Sim(SimCommand::Coresync { duration_ms, seeds, burst_phase_ms, burst_cycles, output }) => {
            crate::output::begin(&output);
            if !(10..=10_000).contains(&duration_ms) || !(1..=20).contains(&seeds) {
                return usage_error("--duration-ms must be 10-10000 and --seeds 1-20");
            }
            if !(10..=10_000).contains(&burst_phase_ms) || !(1..=10).contains(&burst_cycles) {
                return usage_error("--burst-phase-ms must be 10-10000 and --burst-cycles 1-10");
            }
            let p = synergy_sim::coresync::figures::FigureParams {
                duration_ns: duration_ms * 1_000_000,
                seeds: (1..=seeds).collect(),
                burst_phase_ns: burst_phase_ms * 1_000_000,
                burst_cycles,
                burst_window_ns: (burst_phase_ms * 1_000_000 / 100).max(1_000_000),
            };
            let r = synergy_sim::coresync::figures::run(&p);
            crate::table_print!("{}", synergy_sim::coresync::figures::table(&r));
            crate::output::finish(
                &output,
                crate::output::Results {
                    name: "sim-coresync",
                    value: &r,
                    csv: synergy_sim::coresync::figures::csv(&r),
                    svg: Some(synergy_sim::coresync::figures::svg(&r)),
                },
            )
        }
        Command::Sim(SimCommand::Shinjuku { requests, seed, output }) => {
            crate::output::begin(&output);
            if requests < 1_000 {
                return usage_error("--requests must be at least 1000");
            }
            let p = synergy_sim::shinjuku::ShinjukuParams {
                requests,
                seed,
                scale_requests: requests,
                ..Default::default()
            };
            let r = synergy_sim::shinjuku::run(&p);
            crate::table!("{}", synergy_sim::shinjuku::table(&r));
            crate::output::finish(
                &output,
                crate::output::Results {
                    name: "sim-shinjuku",
                    value: &r,
                    csv: synergy_sim::shinjuku::csv(&r),
                    svg: Some(synergy_sim::shinjuku::svg(&r)),
                },
            )
        }
        Command::Bench(BenchCommand::Steering { sockets, datagrams, rounds, output }) => {
            crate::output::begin(&output);
            if !(2..=64).contains(&sockets) || datagrams == 0 || rounds == 0 {
                return usage_error("--sockets must be between 2 and 64, --datagrams and --rounds at least 1");
            }
            let b = match crate::bench::steering::run(sockets, datagrams, rounds) {
                Ok(b) => b,
                Err(e) => return run_failed(e),
            };
            crate::table!(
                "ingress steering over {sockets} sockets ({}), median of {rounds} rounds × {datagrams} datagrams:",
                b.cpu_model
            );
            for p in &b.points {
                crate::table!(
                    "  {:<10} {:>8.1} ns/datagram ({:.3}× hash), per socket {:?}",
                    p.steering,
                    p.ns_per_datagram,
                    p.vs_hash,
                    p.per_socket
                );
            }
            crate::output::finish(
                &output,
                crate::output::Results {
                    name: "bench-steering",
                    value: &b,
                    csv: crate::bench::steering::csv(&b),
                    svg: Some(crate::bench::steering::svg(&b)),
                },
            )
        }
        Command::Bench(BenchCommand::Ring { rounds, items, output }) => {
            crate::output::begin(&output);
            if rounds == 0 || items == 0 {
                return usage_error("--rounds and --items must be at least 1");
            }
            let b = crate::bench::ring::run(rounds, items);
            crate::table!("bounded queues ({}), median of {rounds} rounds × {items} items:", b.cpu_model);
            for (p, i, v) in &b.results {
                crate::table!("  {p:<17} {i:<24} {v:>7.2} ns/item");
            }
            crate::output::finish(
                &output,
                crate::output::Results {
                    name: "bench-ring",
                    value: &b,
                    csv: crate::bench::ring::csv(&b),
                    svg: Some(crate::bench::ring::svg(&b)),
                },
            )
        }
        Command::Bench(BenchCommand::Probes { rounds, iterations, cpu, output }) => {
            crate::output::begin(&output);
            if rounds == 0 || iterations < 1000 {
                return usage_error("--rounds must be at least 1 and --iterations at least 1000");
            }
            if let Some(c) = cpu {
                if !synergy::cpu::allowed_cpus().contains(&c) {
                    return unavailable(format!("CPU {c} is not available to this process"));
                }
            }
            let b = match crate::bench::probes::run(rounds, iterations, cpu) {
                Ok(b) => b,
                Err(e) => return run_failed(e),
            };
            crate::table_print!("{}", crate::bench::probes::table(&b));
            crate::output::finish(
                &output,
                crate::output::Results {
                    name: "ci-probes",
                    value: &b,
                    csv: crate::bench::probes::csv(&b),
                    svg: Some(crate::bench::probes::svg(&b)),
                },
            )
        }
        Command::Bench(BenchCommand::Scan { workers, checks, rounds, cpu, output }) => {
            crate::output::begin(&output);
            if workers.is_empty() || workers.contains(&0) || workers.iter().any(|&n| n > 4096) {
                return usage_error("--workers must list worker counts between 1 and 4096");
            }
            if checks == 0 || rounds == 0 {
                return usage_error("--checks and --rounds must be at least 1");
            }
            if let Some(c) = cpu {
                if !synergy::cpu::allowed_cpus().contains(&c) {
                    return unavailable(format!("CPU {c} is not available to this process"));
                }
            }
            let b = crate::bench::scan::run(&workers, checks, rounds, cpu);
            crate::table_print!("{}", crate::bench::scan::table(&b));
            crate::output::finish(
                &output,
                crate::output::Results {
                    name: "timer-scan",
                    value: &b,
                    csv: crate::bench::scan::csv(&b),
                    svg: Some(crate::bench::scan::svg(&b)),
                },
            )
        }
        Command::Bench(BenchCommand::Xsave { rounds, pairs, output }) => {
            crate::output::begin(&output);
            if rounds == 0 || pairs == 0 {
                return usage_error("--rounds and --pairs must be at least 1");
            }
            if synergy::cpu::xsave_area_size().is_none() {
                return unavailable("this CPU or OS has no XSAVE: nothing to measure");
            }
            let b = crate::bench::xsave::run(rounds, pairs);
            crate::table_print!("{}", crate::bench::xsave::table(&b));
            crate::output::finish(
                &output,
                crate::output::Results {
                    name: "xsave",
                    value: &b,
                    csv: crate::bench::xsave::csv(&b),
                    svg: Some(crate::bench::xsave::svg(&b)),
                },
            )
        }
        Command::Sweep(SweepCommand::Idle { runtime, workload, loads, duration_ms, rounds, output }) => {
            crate::output::begin(&output);
            if let Err(e) = check_loads(&loads) {
                return usage_error(e);
            }
            if !(1..=600_000).contains(&duration_ms) || !(1..=100).contains(&rounds) {
                return usage_error("--duration-ms must be between 1 and 600000 and --rounds between 1 and 100");
            }
            let (mut cfg, _) = match runtime.resolve_over(demo::default_config()) {
                Ok(v) => v,
                Err(e) => return usage_error(e),
            };
            net_commands::long_kinds_from(&runtime, &mut cfg, &Workload::named(workload));
            let params =
                demo::DemoParams { workload, load: loads[0], duration_ms, seed: 1, flows: 64, cooperative: false };
            let b = match crate::bench::idle::run(&cfg, &params, &loads, rounds) {
                Ok(b) => b,
                Err(e) => return run_failed(e),
            };
            crate::table_print!("{}", crate::bench::idle::table(&b));
            crate::output::finish(
                &output,
                crate::output::Results {
                    name: "idle",
                    value: &b,
                    csv: crate::bench::idle::csv(&b),
                    svg: Some(crate::bench::idle::svg(&b)),
                },
            )
        }
        Command::Sweep(SweepCommand::Overload { runtime, workload, loads, duration_ms, flows, output }) => {
            crate::output::begin(&output);
            if let Err(e) = check_loads(&loads) {
                return usage_error(e);
            }
            if !(1..=600_000).contains(&duration_ms) || !(1..=4096).contains(&flows) {
                return usage_error("--duration-ms must be between 1 and 600000 and --flows between 1 and 4096");
            }
            let (mut cfg, placement) = match runtime.resolve() {
                Ok(v) => v,
                Err(e) => return usage_error(e),
            };
            let w = Workload::named(workload);
            net_commands::long_kinds_from(&runtime, &mut cfg, &w);
            let params = crate::bench::overload::OverloadParams {
                handler: synergy_apps::synthetic::handler(w.types.clone()),
                workload: w,
                loads,
                duration: std::time::Duration::from_millis(duration_ms),
                flows,
                seed: 1,
            };
            let b = match crate::bench::overload::run(&cfg, &placement, &params) {
                Ok(b) => b,
                Err(e) => return run_failed(e),
            };
            crate::table_print!("{}", crate::bench::overload::table(&b));
            crate::output::finish(
                &output,
                crate::output::Results {
                    name: "overload",
                    value: &b,
                    csv: crate::bench::overload::csv(&b),
                    svg: Some(crate::bench::overload::svg(&b)),
                },
            )
        }
        Command::Sweep(SweepCommand::Burst { runtime, workload, low, high, step_ms, duration_ms, flows, output }) => {
            crate::output::begin(&output);
            if !(low > 0.0 && low < high && high <= 4.0) {
                return usage_error("--low and --high must satisfy 0 < low < high <= 4 (fractions of capacity)");
            }
            if !(1..=60_000).contains(&step_ms) || !(1..=600_000).contains(&duration_ms) || !(1..=4096).contains(&flows)
            {
                return usage_error("--step-ms must be 1-60000, --duration-ms 1-600000 and --flows 1-4096");
            }
            let (mut cfg, placement) = match runtime.resolve() {
                Ok(v) => v,
                Err(e) => return usage_error(e),
            };
            let w = Workload::named(workload);
            net_commands::long_kinds_from(&runtime, &mut cfg, &w);
            let params = crate::bench::burst::BurstParams {
                handler: synergy_apps::synthetic::handler(w.types.clone()),
                workload: w,
                low,
                high,
                step: std::time::Duration::from_millis(step_ms),
                duration: std::time::Duration::from_millis(duration_ms),
                flows,
            };
            let b = match crate::bench::burst::run(&cfg, &placement, &params) {
                Ok(b) => b,
                Err(e) => return run_failed(e),
            };
            crate::table_print!("{}", crate::bench::burst::table(&b));
            crate::output::finish(
                &output,
                crate::output::Results {
                    name: "burst",
                    value: &b,
                    csv: crate::bench::burst::csv(&b),
                    svg: Some(crate::bench::burst::svg(&b)),
                },
            )
        }
        Command::Bench(BenchCommand::Timer { runtime, duration_ms, output }) => {
            crate::output::begin(&output);
            if duration_ms == 0 {
                return usage_error("--duration-ms must be at least 1");
            }
            let (cfg, _) = match runtime.resolve() {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            let b = match crate::bench::timer::run(&cfg, duration_ms) {
                Ok(b) => b,
                Err(e) => return run_failed(e),
            };
            crate::table!("timer-core loop period on CPU {} ({}), {duration_ms} ms each:", b.timer_core, b.cpu_model);
            for r in &b.runs {
                let q: Vec<String> = r.period_upper_ns.iter().map(|(l, ns)| format!("{l} < {ns} ns")).collect();
                crate::table!("  sched_yield {:<6} {:>10.0} loops/s   {}", r.timer_yield, r.loops_per_s, q.join(", "));
            }
            crate::output::finish(
                &output,
                crate::output::Results {
                    name: "timer-loop",
                    value: &b,
                    csv: crate::bench::timer::csv(&b),
                    svg: Some(crate::bench::timer::svg(&b)),
                },
            )
        }
        Command::Bench(BenchCommand::Interrupt(args)) => microbench(args),
        Command::Sim(SimCommand::Thesis(args)) => simulate(args),
        Command::Serve(args) => net_commands::serve(args),
        Command::Load(args) => net_commands::loadgen(args),
        Command::Kernel(k) => kernel_script(k),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            // Into a buffer first: clap_complete panics on a write error (a closed pipe).
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "synergy", &mut text);
            write_stdout(&text)
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut text = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut text) {
                Ok(()) => write_stdout(&text),
                Err(e) => run_failed(format!("cannot render the manual page: {e}")),
            }
        }
        Command::ReferenceMarkdown => {
            use clap::CommandFactory;
            print!("{}", reference::markdown(&Cli::command()));
            ExitCode::SUCCESS
        }
        Command::Sweep(SweepCommand::Preempt(args)) => net_commands::sweep(args),
        Command::Validate(args) => validate::run(args),
        Command::Config(args) => match args.runtime.resolve() {
            Ok((cfg, placement)) => {
                // The effective configuration as TOML that `--config` reads back to the same
                // configuration; what it resolves to on this machine follows as comments.
                print!("{}", crate::config_file::to_toml(&cfg));
                println!("\n# Resolved on this machine (comments: `--config` ignores them):");
                let timer_mode = if placement.timer_yields {
                    "yields its CPU after every loop (time-shared with a worker, not pinned, or --timer-yield always)"
                } else {
                    "spins on its CPU (sched_yield only where it time-shares one)"
                };
                println!(
                    "# timer core: CPU {}, {timer_mode}\n# workers:    CPUs {:?}",
                    placement.timer_core, placement.worker_cores
                );
                match synergy::cpu::xsave_format() {
                    Some((format, bytes)) => println!(
                        "# preemption entry saves the extended state with {} ({bytes}-byte area; SYNERGY_XSAVE=standard forces XSAVE)",
                        match format {
                            synergy::cpu::XsaveFormat::Compacted => "XSAVEC, only the components in use",
                            synergy::cpu::XsaveFormat::Standard => "XSAVE, every component XCR0 enables",
                        }
                    ),
                    None => println!("# warning: no XSAVE: preemption is unavailable"),
                }
                for w in placement.warnings {
                    println!("# warning: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(e),
        },
    }
}

impl DemoArgs {
    fn parse_default() -> DemoArgs {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            d: DemoArgs,
        }
        Only::parse_from(["synergy"]).d
    }
}

#[cfg(test)]
mod help_examples {
    use super::Cli;
    use clap::{CommandFactory, Parser};

    /// Every command's `Example: `...`` from its help, with the words after `synergy`.
    fn examples(c: &clap::Command, out: &mut Vec<(String, String)>, path: &str) {
        let help = c.get_long_about().or(c.get_about()).map(|s| s.to_string()).unwrap_or_default();
        let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(rest) = flat.split_once("Example: `").map(|(_, r)| r) {
            let example = rest.split('`').next().unwrap_or_default().to_string();
            out.push((path.to_string(), example));
        }
        for sub in c.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
            examples(sub, out, &format!("{path} {}", sub.get_name()));
        }
    }

    #[test]
    fn every_command_shows_an_example_that_parses() {
        let root = Cli::command();
        let mut found = Vec::new();
        examples(&root, &mut found, "synergy");
        let mut paths = Vec::new();
        for c in root.get_subcommands().filter(|s| !s.is_hide_set()) {
            paths.push(format!("synergy {}", c.get_name()));
            for sub in c.get_subcommands().filter(|s| s.get_name() != "help") {
                paths.push(format!("synergy {} {}", c.get_name(), sub.get_name()));
            }
        }
        for path in &paths {
            assert!(found.iter().any(|(p, _)| p == path), "{path} has no example in its help");
        }
        for (path, example) in &found {
            // What the shell does after the command is not ours to parse.
            let command = example.split(" > ").next().unwrap().split(" | ").next().unwrap();
            // Environment assignments before the command are the shell's too.
            let words: Vec<&str> = command.split_whitespace().skip_while(|w| w.contains('=')).collect();
            assert_eq!(words[0], "synergy", "{path}: {example}");
            if let Err(e) = Cli::try_parse_from(&words) {
                panic!("{path}: the example `{example}` does not parse: {e}");
            }
        }
        assert!(found.len() >= 10, "{found:?}");
    }

    /// Every command that produces results takes the one output convention's options
    /// (`--format`, `--out`, `--name`; cli/src/output.rs).
    #[test]
    fn every_results_command_takes_format_out_and_name() {
        let root = Cli::command();
        let mut leaves = Vec::new();
        for c in root.get_subcommands() {
            match c.get_name() {
                "run" | "load" => leaves.push(c.clone()),
                "sweep" | "bench" | "sim" => {
                    leaves.extend(c.get_subcommands().filter(|s| s.get_name() != "help").cloned())
                }
                _ => {}
            }
        }
        assert_eq!(leaves.len(), 2 + 5 + 9 + 4);
        for c in &leaves {
            let ids: Vec<&str> = c.get_arguments().map(|a| a.get_id().as_str()).collect();
            for want in ["format", "out", "name"] {
                assert!(ids.contains(&want), "{} lacks --{want}: {ids:?}", c.get_name());
            }
            for gone in ["json", "svg", "csv", "out_dir"] {
                assert!(!ids.contains(&gone), "{} still has --{gone}", c.get_name());
            }
        }
    }
}
