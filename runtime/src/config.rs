//! Runtime configuration: defaults, an optional TOML file, validation with clear errors.

/// The overload controller's settings (`Config::overload_params`).
pub use crate::overload::OverloadParams;
use crate::policy::shinjuku::{PreemptedTo, QueueRule, ShinjukuPolicy};
use crate::policy::system::SchedPolicy;
use crate::preempt::PreemptMode;
use std::fmt;

/// Every tunable of the runtime. TOML keys use the same names.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(default, deny_unknown_fields))]
pub struct Config {
    /// Worker threads (one per core).
    pub workers: usize,
    /// CPUs for the workers, in worker order. Default: every allowed CPU except the timer core.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub worker_cores: Option<Vec<usize>>,
    /// CPU of the timer core. Default: the first allowed CPU.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub timer_core: Option<usize>,
    /// QUANTUM_FACTOR: quantum = factor × EMA of short service times.
    pub quantum_factor: f64,
    /// CONGESTED_QUANTUM_FACTOR: the factor while the wait queue is congested.
    pub congested_quantum_factor: f64,
    /// THRESH_WQD in µs: wait-queue congestion check interval; 0 = never congested.
    pub thresh_wqd_us: u64,
    /// STEAL_THRESHOLD: steal only from a peer holding more than this many requests.
    pub steal_threshold: usize,
    /// Preemption delivery.
    pub preempt: PreemptMode,
    /// Compiler interrupts (`ci` modes): µs a posted request may stay unanswered before the timer
    /// core falls back to the interrupt (hybrids) or posts it again (`ci`); 0 = one quantum.
    pub ci_grace_us: u64,
    /// Green-thread stack size in KiB.
    pub stack_kib: usize,
    /// Upper bound on green threads in existence (running, parked or pooled).
    pub max_green_threads: usize,
    /// Capacity of each worker's local RX ring.
    pub rx_capacity: usize,
    /// Pin workers and the timer core to their CPUs.
    pub pin: bool,
    /// The scheduling policy: Synergy, or one of the thesis's baselines (`policy::system`).
    pub policy: SchedPolicy,
    /// DARC: request kinds classified long at arrival (the synthetic workloads' long kind is 1,
    /// ZippyDB's 2; `serve`/`sweep` set it from the workload).
    pub long_kinds: Vec<u32>,
    /// DARC: workers reserved for short requests (at least 1, fewer than `workers`).
    pub darc_reserved_workers: usize,
    /// Shinjuku: one queue for every request (sq) or one per request kind (mq).
    pub shinjuku_queues: ShinjukuQueues,
    /// Shinjuku: where a preempted request goes back into its queue (tail or head).
    pub shinjuku_preempted: PreemptedTo,
    /// Shinjuku mq: the SLO of each request kind in µs (kind i gets entry i; kinds beyond the
    /// list share the last queue). The paper uses each kind's p99 when run alone.
    pub shinjuku_slo_us: Vec<u64>,
    /// Shinjuku: dispatcher threads, each owning a contiguous block of the workers and the
    /// transport queues of those workers.
    pub dispatchers: usize,
    /// Shinjuku: the quantum in µs after which a request is preempted while work waits (the
    /// paper used 5 to 15 µs; 1 to 1000 accepted).
    pub shinjuku_quantum_us: u64,
    /// Shinjuku: the most requests one dispatcher's queues hold; beyond it new requests are
    /// answered REJECTED (counted in the workers' `rejected` and the timer stats'
    /// `dispatcher_rejects`). Default 4096, the depth of one worker's receive ring.
    pub shinjuku_queue_limit: usize,
    /// Whether the timer core gives its CPU away (`sched_yield`) after every loop.
    pub timer_yield: TimerYield,
    /// What an idle worker does: spin (the thesis's design), or park after `idle_poll_us` and be
    /// woken by the timer core's core grants (`policy::idle`).
    pub idle: IdleMode,
    /// POLL_PERIOD in µs: how long a worker finds no work before it parks (`idle = park`).
    pub idle_poll_us: u64,
    /// The delay threshold in µs: work waiting this long gets a parked worker woken for it.
    pub wake_delay_us: u64,
    /// Overload control: none (every request is served, however late), or CoreSync's credits
    /// with AQM (`policy::overload`).
    pub overload: OverloadMode,
    /// D_t in µs: the target queueing delay of the credit controller.
    pub target_delay_us: u64,
    /// D_drop in µs: the AQM rejects while the oldest request has waited longer; 0 = 2·D_t.
    pub drop_delay_us: u64,
    /// β: the credit pool's multiplicative-decrease gain.
    pub credit_beta: f64,
    /// α: the credit pool's additive increase per control period, as a fraction of the active
    /// sessions.
    pub credit_alpha: f64,
    /// The control period in µs (CoreSync: one network RTT).
    pub credit_period_us: u64,
    /// With `idle = park` and `overload = credits`: whether a worker parks only through
    /// CoreSync's gate (`coresync`: a drained session vetoes parking, credits are withdrawn in
    /// proportion to the cores that stay), or as without overload control (`none`: Shenango's).
    pub coupling: Coupling,
    /// CoreSync's R: the issued credits beyond one per session that each allocated core may
    /// keep before a parking core withdraws some (the paper's 50 for synthetic workloads;
    /// smaller: lower latency, more CPU).
    pub coresync_r: f64,
}

/// Shinjuku's queues (`--shinjuku-queues`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "lowercase"))]
pub enum ShinjukuQueues {
    /// SQ: one FIFO of every request.
    Sq,
    /// MQ: one FIFO per request kind, served by the largest share of its SLO waited.
    Mq,
}

impl ShinjukuQueues {
    /// Every value, in the order `--help` lists them.
    pub const ALL: [ShinjukuQueues; 2] = [ShinjukuQueues::Sq, ShinjukuQueues::Mq];

    /// The name the flag and the config file use for this value.
    pub fn name(self) -> &'static str {
        match self {
            ShinjukuQueues::Sq => "sq",
            ShinjukuQueues::Mq => "mq",
        }
    }

    /// The value of that name, if there is one.
    pub fn named(name: &str) -> Option<ShinjukuQueues> {
        ShinjukuQueues::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Overload control (`--overload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "lowercase"))]
pub enum OverloadMode {
    /// Admit everything: beyond capacity queues (and the kernel's socket buffers) grow.
    None,
    /// Credits in replies (a session may have that many requests outstanding) sized by AIMD on
    /// the oldest request's queueing delay, and rejects while that delay exceeds D_drop.
    Credits,
}

impl OverloadMode {
    /// Every value, in the order `--help` lists them.
    pub const ALL: [OverloadMode; 2] = [OverloadMode::None, OverloadMode::Credits];

    /// The name the flag and the config file use for this value.
    pub fn name(self) -> &'static str {
        match self {
            OverloadMode::None => "none",
            OverloadMode::Credits => "credits",
        }
    }

    /// The value of that name, if there is one.
    pub fn named(name: &str) -> Option<OverloadMode> {
        OverloadMode::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// How parking and overload control are coupled (`--coupling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "lowercase"))]
pub enum Coupling {
    /// CoreSync's Algorithm 1 gates parking (`coresync`).
    CoreSync,
    /// A worker parks after POLL_PERIOD whatever the credits (Shenango's allocator beside
    /// Breakwater's credits).
    None,
}

impl Coupling {
    /// Every value, in the order `--help` lists them.
    pub const ALL: [Coupling; 2] = [Coupling::CoreSync, Coupling::None];

    /// The name the flag and the config file use for this value.
    pub fn name(self) -> &'static str {
        match self {
            Coupling::CoreSync => "coresync",
            Coupling::None => "none",
        }
    }

    /// The value of that name, if there is one.
    pub fn named(name: &str) -> Option<Coupling> {
        Coupling::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// What an idle worker does (`--idle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "lowercase"))]
pub enum IdleMode {
    /// Poll its queues without pause: the lowest latency, one core burnt per worker at any load.
    Spin,
    /// Sleep in the kernel after `idle_poll_us` without work, until the timer core grants it a
    /// core again: CPU in proportion to load, a wake-up (tens of µs on a VM) on the way back.
    Park,
}

impl IdleMode {
    /// Every value, in the order `--help` lists them.
    pub const ALL: [IdleMode; 2] = [IdleMode::Spin, IdleMode::Park];

    /// The name the flag and the config file use for this value.
    pub fn name(self) -> &'static str {
        match self {
            IdleMode::Spin => "spin",
            IdleMode::Park => "park",
        }
    }

    /// The value of that name, if there is one.
    pub fn named(name: &str) -> Option<IdleMode> {
        IdleMode::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Whether the timer core calls `sched_yield` after every loop. A system call per loop adds
/// jitter to a microsecond timer, so a timer core with a CPU to itself spins; one that
/// time-shares its CPU (with a worker, or, where the workers and it use every allowed CPU, with
/// the process's other threads), or is not pinned, yields: otherwise what it shares with waits
/// for the scheduler's time slice (milliseconds) to run at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "lowercase"))]
pub enum TimerYield {
    /// Yield only where the placement time-shares the timer core (see `Placement::timer_yields`).
    Auto,
    /// Always yield after every loop (for a timer core known to share its CPU).
    Always,
    /// Never yield: spin (a timer core with a CPU of its own).
    Never,
}

impl TimerYield {
    /// Every value, in the order `--help` lists them.
    pub const ALL: [TimerYield; 3] = [TimerYield::Auto, TimerYield::Always, TimerYield::Never];

    /// The name the flag and the config file use for this value.
    pub fn name(self) -> &'static str {
        match self {
            TimerYield::Auto => "auto",
            TimerYield::Always => "always",
            TimerYield::Never => "never",
        }
    }

    /// The value of that name, if there is one.
    pub fn named(name: &str) -> Option<TimerYield> {
        TimerYield::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl Config {
    /// What the built-in policies take from the configuration (`policy::builtin`): Shinjuku's
    /// quantum from `shinjuku_quantum_us` (its workers arm their deadlines with it, its
    /// dispatchers test it), DARC's classes and reservation, Synergy's STEAL_THRESHOLD.
    pub fn builtin_params(&self) -> crate::policy::builtin::BuiltinParams {
        crate::policy::builtin::BuiltinParams {
            steal_threshold: self.steal_threshold,
            shinjuku_quantum_ns: self.shinjuku_quantum_us * 1_000,
            long_kinds: self.long_kinds.clone(),
            darc_reserved: self.darc_reserved_workers,
        }
    }

    /// Shinjuku's decisions as configured (`policy::shinjuku`).
    pub fn shinjuku(&self) -> ShinjukuPolicy {
        let rule = match self.shinjuku_queues {
            ShinjukuQueues::Sq => QueueRule::Single,
            ShinjukuQueues::Mq => {
                QueueRule::Multi { slo_ns: self.shinjuku_slo_us.iter().map(|us| us * 1_000).collect() }
            }
        };
        ShinjukuPolicy {
            rule,
            preempted_to: self.shinjuku_preempted,
            quantum_ns: self.shinjuku_quantum_us * 1_000,
            dispatchers: self.dispatchers,
            queue_limit: self.shinjuku_queue_limit,
        }
    }

    fn validate_shinjuku(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        if !(1..=self.workers).contains(&self.dispatchers) {
            return err(format!(
                "policy shinjuku needs between 1 and workers ({}) dispatchers, got {}",
                self.workers, self.dispatchers
            ));
        }
        if !(1..=1_000).contains(&self.shinjuku_quantum_us) {
            return err(format!(
                "shinjuku_quantum_us must be between 1 and 1000 µs (the paper used 5 to 15), got {}",
                self.shinjuku_quantum_us
            ));
        }
        if !(1..=1 << 24).contains(&self.shinjuku_queue_limit) {
            return err(format!(
                "shinjuku_queue_limit must be between 1 and 16777216, got {}",
                self.shinjuku_queue_limit
            ));
        }
        if self.shinjuku_queues == ShinjukuQueues::Mq
            && (self.shinjuku_slo_us.is_empty() || self.shinjuku_slo_us.iter().any(|&v| v == 0 || v > 10_000_000))
        {
            return err("shinjuku_queues = mq needs shinjuku_slo_us: one SLO per request kind, each 1 to 10000000 µs \
                 (e.g. --shinjuku-slo-us 10,1000)"
                .into());
        }
        if self.preempt.compiler_interrupts() {
            return err(format!(
                "policy shinjuku preempts by interrupt from its dispatcher: use --preempt signal, ipi, uintr or none, \
                 not {}",
                self.preempt.name()
            ));
        }
        if self.idle == IdleMode::Park {
            return err("policy shinjuku hands work to polling workers: use idle = spin".into());
        }
        if self.overload != OverloadMode::None {
            return err("policy shinjuku does not run the credit controller (it lives in the timer core, which the \
                 dispatchers replace): use overload = none"
                .into());
        }
        self.shinjuku().validate().map_err(|e| ConfigError(e.to_string()))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 1,
            worker_cores: None,
            timer_core: None,
            // The thesis's evaluation setting (§6.1.1): QUANTUM_FACTOR=2, THRESH_WQD=0.
            quantum_factor: 2.0,
            congested_quantum_factor: 2.0,
            thresh_wqd_us: 0,
            steal_threshold: 1,
            preempt: PreemptMode::Signal,
            ci_grace_us: 0,
            stack_kib: 64,
            max_green_threads: 4096,
            rx_capacity: 4096,
            pin: true,
            policy: SchedPolicy::Synergy,
            long_kinds: vec![1],
            darc_reserved_workers: 1,
            // The paper's SQ for multi-modal loads: preempted requests to the tail.
            shinjuku_queues: ShinjukuQueues::Sq,
            shinjuku_preempted: PreemptedTo::Tail,
            shinjuku_slo_us: Vec::new(),
            dispatchers: 1,
            shinjuku_quantum_us: crate::policy::system::SHINJUKU_QUANTUM_NS / 1_000,
            shinjuku_queue_limit: 4096,
            timer_yield: TimerYield::Auto,
            idle: IdleMode::Spin,
            // CoreSync's POLL_PERIOD and the delay threshold of its (and Shenango's) allocator.
            idle_poll_us: 2,
            wake_delay_us: 5,
            overload: OverloadMode::None,
            // CoreSync's settings for 10 µs requests: D_t = 80 µs, β = 2%, α = 0.1%, one RTT
            // (10 µs) per update.
            target_delay_us: 80,
            drop_delay_us: 0,
            credit_beta: 0.02,
            credit_alpha: 0.001,
            credit_period_us: 10,
            // CoreSync's coupled controller, with its R for synthetic workloads.
            coupling: Coupling::CoreSync,
            coresync_r: 50.0,
        }
    }
}

/// A configuration error: which setting, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Where each thread runs, after defaults are filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The CPU the timer core (or Shinjuku's first dispatcher) runs on.
    pub timer_core: usize,
    /// The CPU of each worker, in worker order.
    pub worker_cores: Vec<usize>,
    /// Shinjuku's dispatchers after the first (which takes the timer core's CPU): the CPUs they
    /// are pinned to, in order; shorter than `dispatchers - 1` when the allowed CPUs leave none
    /// for the rest, which then run unpinned (a warning says so).
    pub dispatcher_cores: Vec<usize>,
    /// Human-readable notes (e.g. the timer core shares a CPU with a worker).
    pub warnings: Vec<String>,
    /// The timer core yields its CPU after every loop: `timer_yield` says so, or (`auto`) it is
    /// not pinned, shares its CPU with a worker, or the allowed CPUs leave none beyond the
    /// workers' and its own.
    pub timer_yields: bool,
}

/// The smallest green-thread stack `stack_kib` accepts (the preemption frame, a handler's own frames and the guard page's margin).
pub const MIN_STACK_KIB: usize = 32;
/// The most workers one runtime starts.
pub const MAX_WORKERS: usize = 1024;

impl Config {
    /// The overload controller's settings, if `overload` asks for one.
    pub fn overload_params(&self) -> Option<crate::overload::OverloadParams> {
        (self.overload == OverloadMode::Credits).then(|| {
            let target = self.target_delay_us * 1_000;
            let drop = if self.drop_delay_us == 0 { 2 * target } else { self.drop_delay_us * 1_000 };
            crate::overload::OverloadParams {
                credits: crate::policy::overload::CreditParams {
                    target_delay_ns: target,
                    drop_delay_ns: drop,
                    beta: self.credit_beta,
                    alpha: self.credit_alpha,
                    ..crate::policy::overload::CreditParams::coresync(target)
                },
                period_ns: self.credit_period_us * 1_000,
                coupling_r: (self.idle == IdleMode::Park && self.coupling == Coupling::CoreSync)
                    .then_some(self.coresync_r),
            }
        })
    }

    /// Checks every value and resolves CPU placement against `allowed` CPUs.
    pub fn validate(&self, allowed: &[usize]) -> Result<Placement, ConfigError> {
        if self.ci_grace_us > 1_000_000 {
            return err(format!("ci_grace_us must be at most 1000000 (1 s), got {}", self.ci_grace_us));
        }
        for (name, v) in [("idle_poll_us", self.idle_poll_us), ("wake_delay_us", self.wake_delay_us)] {
            if v > 1_000_000 {
                return err(format!("{name} must be at most 1000000 (1 s), got {v}"));
            }
        }
        for (name, v) in [
            ("target_delay_us", self.target_delay_us),
            ("drop_delay_us", self.drop_delay_us),
            ("credit_period_us", self.credit_period_us),
        ] {
            if v > 10_000_000 {
                return err(format!("{name} must be at most 10000000 (10 s), got {v}"));
            }
        }
        if self.target_delay_us == 0 || self.credit_period_us == 0 {
            return err(format!(
                "target_delay_us and credit_period_us must be positive, got {} and {}",
                self.target_delay_us, self.credit_period_us
            ));
        }
        if self.drop_delay_us != 0 && self.drop_delay_us < self.target_delay_us {
            return err(format!(
                "drop_delay_us ({}) must be at least target_delay_us ({}): the AQM would reject below the target",
                self.drop_delay_us, self.target_delay_us
            ));
        }
        if !(self.credit_beta > 0.0 && self.credit_beta <= 1.0) {
            return err(format!("credit_beta must be in (0, 1], got {}", self.credit_beta));
        }
        if !(self.credit_alpha > 0.0 && self.credit_alpha <= 1000.0) {
            return err(format!("credit_alpha must be in (0, 1000], got {}", self.credit_alpha));
        }
        if !(self.coresync_r >= 0.0 && self.coresync_r <= 1e6) {
            return err(format!("coresync_r must be in [0, 1e6], got {}", self.coresync_r));
        }
        if self.workers == 0 || self.workers > MAX_WORKERS {
            return err(format!("workers must be between 1 and {MAX_WORKERS}, got {}", self.workers));
        }
        for (name, v) in
            [("quantum_factor", self.quantum_factor), ("congested_quantum_factor", self.congested_quantum_factor)]
        {
            if !v.is_finite() || v <= 0.0 || v > 1e6 {
                return err(format!("{name} must be a positive number (at most 1e6), got {v}"));
            }
        }
        if self.thresh_wqd_us > 10_000_000 {
            return err(format!("thresh_wqd_us must be at most 10000000 (10 s), got {}", self.thresh_wqd_us));
        }
        if self.stack_kib < MIN_STACK_KIB || self.stack_kib > 1 << 20 {
            return err(format!(
                "stack_kib must be between {MIN_STACK_KIB} (room for the preemption frame) and 1048576, got {}",
                self.stack_kib
            ));
        }
        if self.max_green_threads < 2 * self.workers || self.max_green_threads > 1 << 20 {
            return err(format!(
                "max_green_threads must be between 2 × workers ({}) and 1048576, got {}",
                2 * self.workers,
                self.max_green_threads
            ));
        }
        if !(64..=1 << 20).contains(&self.rx_capacity) {
            return err(format!("rx_capacity must be between 64 and 1048576, got {}", self.rx_capacity));
        }
        if self.policy == SchedPolicy::Darc && !(1..self.workers).contains(&self.darc_reserved_workers) {
            return err(format!(
                "policy darc reserves darc_reserved_workers ({}) for short requests and needs at least one more \
                 worker for long ones: give it 2 or more workers (got {})",
                self.darc_reserved_workers, self.workers
            ));
        }
        if self.policy == SchedPolicy::Shinjuku {
            self.validate_shinjuku()?;
        }
        if allowed.is_empty() {
            return err("no CPU is available to this process");
        }
        let check_cpu = |what: &str, c: usize| -> Result<(), ConfigError> {
            if allowed.contains(&c) {
                Ok(())
            } else {
                err(format!("{what} CPU {c} is not available to this process (available: {allowed:?})"))
            }
        };
        let timer_core = self.timer_core.unwrap_or(allowed[0]);
        check_cpu("timer core", timer_core)?;
        // Shinjuku's dispatchers beyond the first get CPUs of their own where there are any
        // besides the timer core's and at least one for the workers.
        let extra_dispatchers =
            if self.policy == SchedPolicy::Shinjuku { self.dispatchers.saturating_sub(1) } else { 0 };
        let mut dispatcher_cores = Vec::new();
        let worker_cores = match &self.worker_cores {
            Some(cores) => {
                if cores.len() != self.workers {
                    return err(format!("worker_cores lists {} CPUs but workers = {}", cores.len(), self.workers));
                }
                for (i, &c) in cores.iter().enumerate() {
                    check_cpu("worker", c)?;
                    if cores[..i].contains(&c) {
                        return err(format!("worker_cores lists CPU {c} twice"));
                    }
                }
                let spare = allowed.iter().copied().filter(|c| *c != timer_core && !cores.contains(c));
                dispatcher_cores = spare.take(extra_dispatchers).collect();
                cores.clone()
            }
            None => {
                let mut others: Vec<usize> = allowed.iter().copied().filter(|&c| c != timer_core).collect();
                if others.len() > extra_dispatchers {
                    dispatcher_cores = others.drain(..extra_dispatchers).collect();
                }
                let pool = if others.is_empty() { vec![timer_core] } else { others };
                (0..self.workers).map(|i| pool[i % pool.len()]).collect()
            }
        };
        let mut warnings = Vec::new();
        if self.pin && dispatcher_cores.len() < extra_dispatchers {
            warnings.push(format!(
                "{} of Shinjuku's {} dispatchers have no CPU of their own and run unpinned",
                extra_dispatchers - dispatcher_cores.len(),
                self.dispatchers
            ));
        }
        if worker_cores.contains(&timer_core) {
            warnings.push(format!(
                "the timer core (CPU {timer_core}) shares a CPU with a worker: preemption is delayed by CPU time-sharing"
            ));
        }
        let mut distinct = worker_cores.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < worker_cores.len() {
            warnings.push(format!(
                "{} workers share {} CPUs: they time-share, latencies include scheduler delays",
                worker_cores.len(),
                distinct.len()
            ));
        }
        let timer_yields = match self.timer_yield {
            TimerYield::Always => true,
            TimerYield::Never => false,
            // Spin only with a CPU to spare for everything else the process runs (its load
            // generator, application threads): with none, those threads would wait for the
            // spinning timer core's time slice on its CPU.
            TimerYield::Auto => !self.pin || worker_cores.contains(&timer_core) || allowed.len() <= distinct.len() + 1,
        };
        Ok(Placement { timer_core, worker_cores, dispatcher_cores, warnings, timer_yields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_place_timer_first_and_workers_elsewhere() {
        let p = Config { workers: 2, ..Config::default() }.validate(&[0, 1, 2, 3]).unwrap();
        assert_eq!(p.timer_core, 0);
        assert_eq!(p.worker_cores, vec![1, 2]);
        assert!(p.warnings.is_empty());
        assert!(!p.timer_yields, "a timer core with a CPU of its own, and one to spare, spins");
        let p = Config { workers: 2, ..Config::default() }.validate(&[0, 1, 2]).unwrap();
        assert!(p.timer_yields, "no CPU left for the process's other threads: the timer core yields");
    }

    #[test]
    fn extra_shinjuku_dispatchers_get_cpus_of_their_own_where_there_are_any() {
        let sj =
            |dispatchers, workers| Config { policy: SchedPolicy::Shinjuku, dispatchers, workers, ..Config::default() };
        let p = sj(2, 2).validate(&[0, 1, 2, 3]).unwrap();
        assert_eq!((p.timer_core, p.dispatcher_cores.clone(), p.worker_cores.clone()), (0, vec![1], vec![2, 3]));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        // Two CPUs: the workers keep one, the second dispatcher runs unpinned, and says so.
        let p = sj(2, 2).validate(&[0, 1]).unwrap();
        assert!(p.dispatcher_cores.is_empty());
        assert!(p.warnings.iter().any(|w| w.contains("1 of Shinjuku's 2 dispatchers")), "{:?}", p.warnings);
        // Explicit worker CPUs: the dispatchers take what is left.
        let listed = Config { worker_cores: Some(vec![3, 4, 5]), ..sj(3, 3) };
        let p = listed.validate(&[0, 1, 2, 3, 4, 5]).unwrap();
        assert_eq!((p.dispatcher_cores.clone(), p.worker_cores.clone()), (vec![1, 2], vec![3, 4, 5]));
        assert!(Config { workers: 2, ..Config::default() }
            .validate(&[0, 1, 2, 3])
            .unwrap()
            .dispatcher_cores
            .is_empty());
    }

    #[test]
    fn oversubscription_is_allowed_but_reported() {
        let p = Config { workers: 2, ..Config::default() }.validate(&[0, 1]).unwrap();
        assert_eq!(p.worker_cores, vec![1, 1]);
        assert_eq!(p.warnings.len(), 1);
        let p = Config::default().validate(&[3]).unwrap();
        assert_eq!((p.timer_core, p.worker_cores.clone()), (3, vec![3]));
        assert!(p.warnings[0].contains("shares a CPU"));
        assert!(p.timer_yields, "a timer core sharing a worker's CPU yields");
        let never = Config { timer_yield: TimerYield::Never, ..Config::default() }.validate(&[3]).unwrap();
        assert!(!never.timer_yields);
        let unpinned = Config { pin: false, ..Config::default() }.validate(&[0, 1, 2]).unwrap();
        assert!(unpinned.timer_yields, "an unpinned timer core may share any CPU");
        let always = Config { timer_yield: TimerYield::Always, ..Config::default() }.validate(&[0, 1, 2, 3]).unwrap();
        assert!(always.timer_yields);
    }

    #[test]
    fn bad_values_are_named_in_the_error() {
        let cases: Vec<(Config, &str)> = vec![
            (Config { workers: 0, ..Config::default() }, "workers"),
            (Config { quantum_factor: 0.0, ..Config::default() }, "quantum_factor"),
            (Config { congested_quantum_factor: f64::NAN, ..Config::default() }, "congested_quantum_factor"),
            (Config { stack_kib: 4, ..Config::default() }, "stack_kib"),
            (Config { policy: SchedPolicy::Darc, ..Config::default() }, "policy darc"),
            (
                Config { policy: SchedPolicy::Darc, workers: 2, darc_reserved_workers: 2, ..Config::default() },
                "darc_reserved_workers",
            ),
            (Config { max_green_threads: 1, ..Config::default() }, "max_green_threads"),
            (Config { rx_capacity: 3, ..Config::default() }, "rx_capacity"),
            (Config { idle_poll_us: 2_000_000, ..Config::default() }, "idle_poll_us"),
            (Config { wake_delay_us: u64::MAX, ..Config::default() }, "wake_delay_us"),
            (Config { target_delay_us: 0, ..Config::default() }, "target_delay_us"),
            (Config { drop_delay_us: 10, ..Config::default() }, "drop_delay_us (10) must be at least"),
            (Config { credit_beta: 0.0, ..Config::default() }, "credit_beta"),
            (Config { credit_alpha: f64::NAN, ..Config::default() }, "credit_alpha"),
            (Config { credit_period_us: 20_000_000, ..Config::default() }, "credit_period_us"),
            (Config { coresync_r: -1.0, ..Config::default() }, "coresync_r"),
            (Config { coresync_r: f64::NAN, ..Config::default() }, "coresync_r"),
            (Config { timer_core: Some(7), ..Config::default() }, "timer core CPU 7"),
            (Config { worker_cores: Some(vec![1, 1]), workers: 2, ..Config::default() }, "twice"),
            (Config { worker_cores: Some(vec![1]), workers: 2, ..Config::default() }, "lists 1 CPUs"),
        ];
        for (cfg, needle) in cases {
            let e = cfg.validate(&[0, 1, 2]).unwrap_err();
            assert!(e.0.contains(needle), "error {:?} should mention {needle:?}", e.0);
        }
    }
}
