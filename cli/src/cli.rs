//! Command-line options shared by the `synergy` subcommands: every runtime tunable, layered over
//! an optional TOML file (`--config`), validated into a `Config`.

use clap::Args;
use std::path::PathBuf;
use synergy::config::{Config, ConfigError, IdleMode, Placement, TimerYield};
use synergy::preempt::PreemptMode;
use synergy_policy::system::SchedPolicy;

#[derive(Debug, Clone, Args, Default)]
pub struct RuntimeArgs {
    /// TOML file with runtime settings (same names as the options, with underscores).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Worker threads, one per core.
    #[arg(long)]
    pub workers: Option<usize>,
    /// CPUs for the workers, comma-separated, in worker order.
    #[arg(long, value_delimiter = ',', value_name = "CPU,...")]
    pub worker_cores: Option<Vec<usize>>,
    /// CPU of the timer core.
    #[arg(long, value_name = "CPU")]
    pub timer_core: Option<usize>,
    /// QUANTUM_FACTOR: quantum = factor × EMA of short service times.
    #[arg(long, allow_negative_numbers = true)]
    pub quantum_factor: Option<f64>,
    /// CONGESTED_QUANTUM_FACTOR: the factor while the wait queue is congested.
    #[arg(long, allow_negative_numbers = true)]
    pub congested_quantum_factor: Option<f64>,
    /// THRESH_WQD in µs: wait-queue congestion check interval; 0 = never congested.
    #[arg(long, value_name = "US")]
    pub thresh_wqd_us: Option<u64>,
    /// The old name of --thresh-wqd-us (one release, with a warning).
    #[arg(long = "thresh-wqd", value_name = "US", hide = true)]
    pub old_thresh_wqd: Option<u64>,
    /// STEAL_THRESHOLD: steal only from peers with more queued requests than this.
    #[arg(long)]
    pub steal_threshold: Option<usize>,
    /// How the timer core interrupts a worker.
    #[arg(long, value_parser = crate::choices::preempt())]
    pub preempt: Option<PreemptMode>,
    /// ci+signal|ci+ipi|ci+uintr: µs a compiler-interrupt request may stay unanswered (no probe
    /// reached) before the interrupt follows; 0 = one quantum.
    #[arg(long, value_name = "US")]
    pub ci_grace_us: Option<u64>,
    /// The old name of --ci-grace-us (one release, with a warning).
    #[arg(long = "ci-grace", value_name = "US", hide = true)]
    pub old_ci_grace: Option<u64>,
    /// Green-thread stack size in KiB.
    #[arg(long, value_name = "KIB")]
    pub stack_kib: Option<usize>,
    /// Upper bound on green threads in existence.
    #[arg(long)]
    pub max_green_threads: Option<usize>,
    /// Capacity of each worker's local RX ring.
    #[arg(long)]
    pub rx_capacity: Option<usize>,
    /// Pin each thread to its CPU (true, the default) or not (`--pin false`).
    #[arg(long, value_name = "BOOL")]
    pub pin: Option<bool>,
    /// The old spelling of `--pin false` (one release, with a warning).
    #[arg(long = "no-pin", hide = true)]
    pub old_no_pin: bool,
    /// Scheduling policy: synergy, or a baseline of the thesis's comparison (cfcfs, dfcfs,
    /// shinjuku, concord, tq, darc), run on synergy's workers and preemption mechanism (shinjuku
    /// with its own dispatcher threads in place of the timer core).
    #[arg(long, value_parser = crate::choices::policy())]
    pub policy: Option<SchedPolicy>,
    /// DARC: request kinds classified long at arrival, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "KIND,...")]
    pub long_kinds: Option<Vec<u32>>,
    /// DARC: workers reserved for short requests.
    #[arg(long, value_name = "N")]
    pub darc_reserved_workers: Option<usize>,
    /// The old name of --darc-reserved-workers (one release, with a warning).
    #[arg(long = "darc-reserved", value_name = "N", hide = true)]
    pub old_darc_reserved: Option<usize>,
    /// Shinjuku: one queue for every request (sq, default) or one per request kind (mq, served by
    /// the largest share of its SLO waited; needs --shinjuku-slo-us).
    #[arg(long, value_parser = crate::choices::shinjuku_queues())]
    pub shinjuku_queues: Option<synergy::config::ShinjukuQueues>,
    /// Shinjuku: where a preempted request goes back into its queue: tail (default; processor
    /// sharing, the paper's choice for multi-modal loads) or head (close to c-FCFS).
    #[arg(long, value_parser = crate::choices::preempted_to())]
    pub shinjuku_preempted: Option<synergy_policy::shinjuku::PreemptedTo>,
    /// Shinjuku mq: each request kind's SLO in µs, comma-separated in kind order (the paper uses
    /// each kind's p99 when run alone); kinds beyond the list share the last queue.
    #[arg(long, value_delimiter = ',', value_name = "US,...")]
    pub shinjuku_slo_us: Option<Vec<u64>>,
    /// Shinjuku: dispatcher threads, each owning a contiguous block of workers (default 1).
    #[arg(long, value_name = "N")]
    pub dispatchers: Option<usize>,
    /// Shinjuku: the quantum in µs after which a request is preempted while work waits (default
    /// 5; the paper used 5 to 15).
    #[arg(long, value_name = "US")]
    pub shinjuku_quantum_us: Option<u64>,
    /// Shinjuku: the most requests one dispatcher's queues hold before it answers new ones
    /// REJECTED (default 4096).
    #[arg(long, value_name = "N")]
    pub shinjuku_queue_limit: Option<usize>,
    /// Whether the timer core yields its CPU after every loop: auto (only where it time-shares
    /// its CPU with a worker or is not pinned), always, never.
    #[arg(long, value_parser = crate::choices::timer_yield())]
    pub timer_yield: Option<TimerYield>,
    /// What an idle worker does: spin (default: the lowest latency, a core per worker at any
    /// load), or park after --idle-poll-us without work and be woken by the timer core when work
    /// waits --wake-delay-us (CPU in proportion to load; a wake-up on the way back).
    #[arg(long, value_parser = crate::choices::idle())]
    pub idle: Option<IdleMode>,
    /// POLL_PERIOD in µs: idle time before a worker parks (--idle park).
    #[arg(long, value_name = "US")]
    pub idle_poll_us: Option<u64>,
    /// Delay threshold in µs: work waiting this long gets a parked worker woken (--idle park).
    #[arg(long, value_name = "US")]
    pub wake_delay_us: Option<u64>,
    /// Overload control: none (default: serve everything, however late), or credits (CoreSync:
    /// replies grant each session credits sized by AIMD on the oldest request's queueing delay;
    /// requests are rejected with status 3 while that delay exceeds --drop-delay-us).
    #[arg(long, value_parser = crate::choices::overload())]
    pub overload: Option<synergy::config::OverloadMode>,
    /// D_t in µs: the credit controller's target queueing delay (default 80, CoreSync's for
    /// 10 µs requests).
    #[arg(long, value_name = "US")]
    pub target_delay_us: Option<u64>,
    /// D_drop in µs: reject while the oldest request waited longer (default 2 × D_t).
    #[arg(long, value_name = "US")]
    pub drop_delay_us: Option<u64>,
    /// β: the credit pool's multiplicative-decrease gain (default 0.02).
    #[arg(long, value_name = "BETA")]
    pub credit_beta: Option<f64>,
    /// α: credits added per control period, as a fraction of the active sessions (default 0.001).
    #[arg(long, value_name = "ALPHA")]
    pub credit_alpha: Option<f64>,
    /// The credit controller's period in µs (default 10: one RTT).
    #[arg(long, value_name = "US")]
    pub credit_period_us: Option<u64>,
    /// With --idle park and --overload credits: coresync (default: a drained session keeps
    /// workers from parking, a parking worker first withdraws credits in proportion to the cores
    /// that stay) or none (workers park after --idle-poll-us whatever the credits).
    #[arg(long, value_parser = crate::choices::coupling())]
    pub coupling: Option<synergy::config::Coupling>,
    /// CoreSync's R (default 50): issued credits beyond one per session each allocated core may
    /// keep before a parking worker withdraws some; smaller: lower latency, more CPU.
    #[arg(long, value_name = "R")]
    pub coresync_r: Option<f64>,
}

impl RuntimeArgs {
    /// File (or defaults), then command-line overrides, then validation.
    pub fn resolve(&self) -> Result<(Config, Placement), ConfigError> {
        self.resolve_over(Config::default())
    }

    /// Like `resolve`, with `base` standing in for the defaults when no `--config` is given.
    pub fn resolve_over(&self, base: Config) -> Result<(Config, Placement), ConfigError> {
        let mut c = match &self.config {
            Some(path) => crate::config_file::from_toml_file(path)?,
            None => base,
        };
        macro_rules! set {
            ($($field:ident <- $arg:expr),*) => { $(if let Some(v) = $arg.clone() { c.$field = v; })* };
        }
        // Flags renamed to their config keys (CHANGELOG.md): the old spelling still works for one
        // release, and says which name replaces it. The new one wins if both are given.
        let renamed = |old: &str, new: &str, used: bool| {
            if used {
                eprintln!("synergy: warning: --{old} is now --{new} (its config key's name); --{old} goes in the next release");
            }
        };
        renamed("thresh-wqd", "thresh-wqd-us", self.old_thresh_wqd.is_some());
        renamed("ci-grace", "ci-grace-us", self.old_ci_grace.is_some());
        renamed("darc-reserved", "darc-reserved-workers", self.old_darc_reserved.is_some());
        renamed("no-pin", "pin false", self.old_no_pin);
        let thresh_wqd_us = self.thresh_wqd_us.or(self.old_thresh_wqd);
        let ci_grace_us = self.ci_grace_us.or(self.old_ci_grace);
        let darc_reserved_workers = self.darc_reserved_workers.or(self.old_darc_reserved);
        let pin = self.pin.or(self.old_no_pin.then_some(false));
        set!(workers <- self.workers, quantum_factor <- self.quantum_factor,
             congested_quantum_factor <- self.congested_quantum_factor, thresh_wqd_us <- thresh_wqd_us,
             steal_threshold <- self.steal_threshold, preempt <- self.preempt, ci_grace_us <- ci_grace_us,
             stack_kib <- self.stack_kib,
             max_green_threads <- self.max_green_threads, rx_capacity <- self.rx_capacity,
             policy <- self.policy, long_kinds <- self.long_kinds, darc_reserved_workers <- darc_reserved_workers,
             pin <- pin,
             shinjuku_queues <- self.shinjuku_queues, shinjuku_preempted <- self.shinjuku_preempted,
             shinjuku_slo_us <- self.shinjuku_slo_us, dispatchers <- self.dispatchers,
             shinjuku_quantum_us <- self.shinjuku_quantum_us, shinjuku_queue_limit <- self.shinjuku_queue_limit,
             timer_yield <- self.timer_yield, idle <- self.idle, idle_poll_us <- self.idle_poll_us,
             wake_delay_us <- self.wake_delay_us, overload <- self.overload,
             target_delay_us <- self.target_delay_us, drop_delay_us <- self.drop_delay_us,
             credit_beta <- self.credit_beta, credit_alpha <- self.credit_alpha,
             credit_period_us <- self.credit_period_us, coupling <- self.coupling,
             coresync_r <- self.coresync_r);
        if self.worker_cores.is_some() {
            c.worker_cores = self.worker_cores.clone();
        }
        if self.timer_core.is_some() {
            c.timer_core = self.timer_core;
        }
        let placement = c.validate(&synergy::cpu::allowed_cpus())?;
        Ok((c, placement))
    }
}
