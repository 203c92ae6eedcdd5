//! Starting and stopping a runtime: workers, the timer core, and the shared state between them.

use crate::config::{Config, ConfigError, Placement};
use crate::preempt::{self, Preempter};
use crate::request::Request;
use crate::stats::{PeriodHistogram, RunStats, TimerStats, WorkerSnapshot};
use crate::timer_core::{run_timer_core, TimerParams};
use crate::transport::Transport;
use crate::worker::{run_worker, RuntimeScheduler, Shared};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

/// Why a runtime could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// The preemption mechanism could not be set up (a module missing, a CPU without UINTR).
    Preemption(std::io::Error),
    /// A preempting runtime needs `PreemptSafeAlloc` as the global allocator.
    Allocator,
    /// The policy preempts every request (a baseline), so the whole handler is a preemptible
    /// region; only a `MigratableHandler` may be started with it, with preemption.
    HandlerNotMigratable,
    /// The builder was started without something it needs (named).
    Incomplete(&'static str),
    /// A worker thread could not start.
    Worker(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "configuration: {e}"),
            StartError::Preemption(e) => write!(f, "preemption: {e}"),
            StartError::Allocator => f.write_str(
                "preemption needs the runtime's allocator (a green thread must not be preempted inside malloc): \
                 add `#[global_allocator] static ALLOC: synergy::PreemptSafeAlloc = synergy::PreemptSafeAlloc;` \
                 to the application, or run with --preempt=none",
            ),
            StartError::HandlerNotMigratable => f.write_str(
                "this policy preempts every request, anywhere in the handler: give the builder a \
                 `MigratableHandler` (`Builder::migratable_handler`), whose safety contract the handler must \
                 meet, or run with --preempt=none",
            ),
            StartError::Incomplete(what) => write!(f, "the runtime builder was started without {what}"),
            StartError::Worker(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// How `start_with` starts a runtime.
struct Start {
    timer_core: bool,
    /// The caller promised that the whole handler meets the preemptible-region contract.
    migratable: bool,
    /// The application's scheduling policy; None: the built-in `config.policy`.
    scheduler: Option<Arc<RuntimeScheduler>>,
}

pub use crate::request::SharedHandler;

/// A handler whose author promised that all of it meets the contract of a preemptible region, so
/// that a runtime may preempt it, or let it yield and migrate, anywhere
/// ([`Builder::migratable_handler`]). The promise is made once, by the `unsafe` constructor.
#[derive(Clone)]
pub struct MigratableHandler(SharedHandler);

impl MigratableHandler {
    /// # Safety
    /// Every instruction of `handler` must meet the contract of a preemptible region (see
    /// [`feedback_start`](crate::feedback_start) and the crate docs): no reference into
    /// thread-local storage, no per-thread libc state and no OS lock held across a point where it
    /// may migrate, except inside [`preempt::without_preemption`].
    pub unsafe fn new(handler: SharedHandler) -> MigratableHandler {
        MigratableHandler(handler)
    }

    /// The handler, to call it directly (e.g. outside a runtime).
    pub fn handler(&self) -> &SharedHandler {
        &self.0
    }
}

/// A running synergy runtime: its workers, timer core (or dispatchers) and transport; `stop` ends it.
pub struct Runtime {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// The timer core, or Shinjuku's dispatchers.
    timer: Vec<JoinHandle<()>>,
    timer_stop: Arc<AtomicBool>,
    timer_stats: Arc<TimerStats>,
    timer_periods: Arc<PeriodHistogram>,
    placement: Placement,
    /// Runtime clock at start, for `RunStats::wall_ns`.
    started_ns: u64,
}

/// How a runtime starts: the one way to start one (`Runtime::builder`), replacing the six
/// `start*` constructors (issue 41). The configuration, a transport and a handler are required;
/// a scheduling policy of the application's own is optional.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use synergy::{Config, Reply, Request, Runtime};
/// # use synergy::transport::channel::ChannelTransport;
/// let transport = Arc::new(ChannelTransport::new(1, 64, 64));
/// let rt = Runtime::builder(&Config::default())
///     .transport(transport.clone())
///     .handler(|req: Request| synergy::send(Reply::to(&req)).unwrap())
///     .start()?;
/// # Ok::<(), synergy::StartError>(())
/// ```
#[must_use = "a builder does nothing until `start`"]
pub struct Builder<'c> {
    config: &'c Config,
    transport: Option<Arc<dyn Transport>>,
    handler: Option<SharedHandler>,
    how: Start,
    preempter: Option<Arc<dyn Preempter>>,
}

impl Builder<'_> {
    /// Where requests come from and replies go.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// The handler: runs once per request on a green thread and uses
    /// `feedback_start`/`feedback_finished`/`send`. It migrates between OS threads only inside
    /// the preemptible regions it opens with the `unsafe`
    /// [`feedback_start`](crate::feedback_start). A policy that preempts every request needs
    /// [`Builder::migratable_handler`] instead ([`StartError::HandlerNotMigratable`]).
    pub fn handler<H>(mut self, handler: H) -> Self
    where
        H: Fn(Request) + Send + Sync + 'static,
    {
        self.handler = Some(Arc::new(handler));
        self.how.migratable = false;
        self
    }

    /// The handler, with all of it a preemptible region: every request may be preempted, or
    /// yield and migrate between OS threads, at any instruction, which the baseline policies that
    /// preempt every request need. The handler's author promised that this is sound when making
    /// the [`MigratableHandler`].
    pub fn migratable_handler(mut self, handler: MigratableHandler) -> Self {
        self.handler = Some(handler.0);
        self.how.migratable = true;
        self
    }

    /// Schedules with the application's own policy (`policy::api`; `examples/sita` is one)
    /// instead of the built-in `config.policy`, which is then ignored. One that asks for
    /// Shinjuku's dispatchers (`Scheduler::dispatched`) is refused: those are
    /// `config.policy = shinjuku`'s.
    pub fn scheduler(mut self, scheduler: Arc<RuntimeScheduler>) -> Self {
        self.how.scheduler = Some(scheduler);
        self
    }

    /// Delivers preemptions through `preempter` instead of the one `config.preempt` names (which
    /// must still be a preempting mode, for the allocator check). For tests that interpose on
    /// delivery, e.g. to delay it.
    #[doc(hidden)]
    pub fn preempter(mut self, preempter: Arc<dyn Preempter>) -> Self {
        self.preempter = Some(preempter);
        self
    }

    /// Starts no timer core: nothing preempts the workers except [`Runtime::interrupt_worker`].
    /// For the interrupt-path microbenchmark, whose sender plays the timer core's part.
    #[doc(hidden)]
    pub fn without_timer_core(mut self) -> Self {
        self.how.timer_core = false;
        self
    }

    /// Starts the workers and (unless left out) the timer core.
    pub fn start(self) -> Result<Runtime, StartError> {
        let transport = self.transport.ok_or(StartError::Incomplete("a transport (`Builder::transport`)"))?;
        let handler = self.handler.ok_or(StartError::Incomplete("a handler (`Builder::handler`)"))?;
        Runtime::start_with(self.config, transport, handler, self.how, self.preempter)
    }
}

impl Runtime {
    /// A runtime to start with `config`: give it a transport and a handler, then `start` it.
    pub fn builder(config: &Config) -> Builder<'_> {
        Builder {
            config,
            transport: None,
            handler: None,
            how: Start { timer_core: true, migratable: false, scheduler: None },
            preempter: None,
        }
    }

    fn start_with(
        config: &Config,
        transport: Arc<dyn Transport>,
        handler: SharedHandler,
        how: Start,
        preempter: Option<Arc<dyn Preempter>>,
    ) -> Result<Runtime, StartError> {
        let allowed = crate::cpu::allowed_cpus();
        let placement = config.validate(&allowed).map_err(StartError::Config)?;
        crate::clock::init();
        // Lazily made statics a handler would otherwise initialize inside a preemptible region.
        crate::body::init();
        crate::worker::panic::install_hook();
        preempt::hook::set_handler(crate::worker::on_preempt, crate::worker::on_resume);
        // Every mode parks through the preemption entry (a compiler interrupt, a deferred
        // preemption and a cooperative request's probe too), which saves into each thread's
        // XSAVE area: its size is known before the first green thread is made.
        preempt::entry::init().map_err(StartError::Preemption)?;
        if config.preempt != preempt::PreemptMode::None && !crate::alloc::is_installed() {
            return Err(StartError::Allocator);
        }
        let scheduler = match how.scheduler {
            Some(s) if s.dispatched() => {
                return Err(StartError::Config(ConfigError(format!(
                    "scheduler {} asks for Shinjuku's dispatchers, which only policy shinjuku runs",
                    s.name()
                ))))
            }
            Some(s) => s,
            None => Arc::from(crate::policy::builtin::builtin(config.policy, &config.builtin_params())),
        };
        let every = scheduler.preemptible() == crate::policy::system::Preemptible::Every;
        if config.preempt != preempt::PreemptMode::None && every && !how.migratable {
            return Err(StartError::HandlerNotMigratable);
        }
        let preempter: Arc<dyn Preempter> = match preempter {
            Some(p) => p,
            None => Arc::from(preempt::preempter_for(config.preempt).map_err(StartError::Preemption)?),
        };
        if config.idle == crate::config::IdleMode::Park && !transport.reports_backlog() {
            return Err(StartError::Config(ConfigError(
                "idle = park needs a transport that reports the requests waiting for a parked worker; this one \
                 cannot (DPDK: no RX interrupts yet): use idle = spin"
                    .into(),
            )));
        }
        let shinjuku = scheduler.dispatched();
        if shinjuku && !how.timer_core {
            return Err(StartError::Config(ConfigError(
                "policy shinjuku needs its dispatchers, which run where the timer core would: start it with the timer \
                 core"
                    .into(),
            )));
        }
        let mut shared = Shared::new(config, transport, handler, how.migratable, preempter, scheduler);
        if !how.timer_core {
            // Nothing would wake a parked worker.
            shared.idle = None;
        }
        let shared = Arc::new(shared);
        let started_ns = crate::clock::now_ns();
        let (tx, rx) = mpsc::channel::<Result<(), String>>();
        let mut workers = Vec::new();
        for id in 0..config.workers {
            let shared = shared.clone();
            let tx = tx.clone();
            let cpu = config.pin.then(|| placement.worker_cores[id]);
            let h = std::thread::Builder::new()
                .name(format!("synergy-w{id}"))
                .spawn(move || run_worker(id, shared, cpu, &|r| drop(tx.send(r))))
                .map_err(|e| StartError::Worker(format!("cannot spawn worker {id}: {e}")))?;
            workers.push(h);
        }
        drop(tx);
        let mut failure = None;
        for _ in 0..config.workers {
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some("a worker exited during start-up".into()),
            }
        }
        let timer_stop = Arc::new(AtomicBool::new(false));
        let timer_stats = Arc::new(TimerStats::default());
        let timer_periods = Arc::new(PeriodHistogram::default());
        let mut rt = Runtime {
            shared,
            workers,
            timer: Vec::new(),
            timer_stop,
            timer_stats,
            timer_periods,
            placement,
            started_ns,
        };
        if let Some(e) = failure {
            rt.shared.abort.store(true, Ordering::SeqCst);
            crate::worker::wake_parked(&rt.shared);
            rt.join_workers();
            return Err(StartError::Worker(e));
        }
        if !how.timer_core {
            return Ok(rt);
        }
        if shinjuku {
            for index in 0..config.dispatchers {
                // The first dispatcher takes the timer core's CPU, the others the CPUs `Placement`
                // set aside for them; one without a CPU of its own runs unpinned and yields.
                let cpu = match index {
                    0 => Some(rt.placement.timer_core),
                    i => rt.placement.dispatcher_cores.get(i - 1).copied(),
                };
                let cpu = cpu.filter(|_| config.pin);
                let params = crate::dispatcher::DispatcherParams {
                    index,
                    cpu,
                    yield_each_loop: rt.placement.timer_yields || (index > 0 && cpu.is_none()),
                };
                let (shared, stop) = (rt.shared.clone(), rt.timer_stop.clone());
                let (stats, periods) = (rt.timer_stats.clone(), rt.timer_periods.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("synergy-dispatch{index}"))
                    .spawn(move || crate::dispatcher::run_dispatcher(shared, params, stop, stats, periods))
                    .map_err(|e| StartError::Worker(format!("cannot spawn dispatcher {index}: {e}")))?;
                rt.timer.push(spawned);
            }
            return Ok(rt);
        }
        let params = TimerParams {
            quantum_factor: config.quantum_factor,
            congested_quantum_factor: config.congested_quantum_factor,
            thresh_wqd_ns: config.thresh_wqd_us * 1_000,
            cpu: config.pin.then_some(rt.placement.timer_core),
            yield_each_loop: rt.placement.timer_yields,
        };
        let (shared, stop) = (rt.shared.clone(), rt.timer_stop.clone());
        let (stats, periods) = (rt.timer_stats.clone(), rt.timer_periods.clone());
        rt.timer.push(
            std::thread::Builder::new()
                .name("synergy-timer".into())
                .spawn(move || run_timer_core(shared, params, stop, stats, periods))
                .map_err(|e| StartError::Worker(format!("cannot spawn the timer core: {e}")))?,
        );
        Ok(rt)
    }

    /// Where each thread runs.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Interrupts worker `id` through the runtime's preemption mechanism, as the timer core
    /// does (whether it is then preempted is the worker's decision).
    pub fn interrupt_worker(&self, id: usize) -> std::io::Result<()> {
        // Aimed at whatever arming is current (the microbenchmark's sender plays the timer core).
        let gens = &self.shared.workers[id].gens;
        let armed = gens.armed.load(Ordering::Acquire);
        gens.target.store(armed, Ordering::Release);
        if self.shared.ci.is_some() {
            // Compiler interrupts: the request word, as the timer core's first step.
            gens.ci_request.0.store(armed, Ordering::Release);
            return Ok(());
        }
        self.shared.preempter.preempt(self.worker_target(id))
    }

    /// Thread id and CPU of worker `id`.
    pub fn worker_target(&self, id: usize) -> crate::preempt::Target {
        let w = &self.shared.workers[id];
        crate::preempt::Target { tid: w.tid.load(Ordering::Acquire), cpu: w.cpu.load(Ordering::Acquire) }
    }

    /// Whether worker `id` is parked (`--idle park`) right now.
    pub fn worker_parked(&self, id: usize) -> bool {
        self.shared.workers[id].park.is_parked()
    }

    /// How many workers it runs.
    pub fn workers(&self) -> usize {
        self.shared.workers.len()
    }

    /// Its counters now.
    pub fn stats(&self) -> RunStats {
        let workers: Vec<WorkerSnapshot> = self.shared.workers.iter().map(|w| w.stats.snapshot()).collect();
        let mut total = WorkerSnapshot::default();
        for w in &workers {
            total += *w;
        }
        RunStats {
            workers,
            total,
            timer: self.timer_stats.snapshot(),
            timer_periods: self.timer_periods.snapshot(),
            green_threads_live: self.shared.live_threads.load(Ordering::Relaxed) as u64,
            wall_ns: crate::clock::now_ns().saturating_sub(self.started_ns),
            overload: self.shared.overload.as_ref().map(|o| o.snapshot()),
        }
    }

    /// Waits until the transport reports it is finished and every admitted request completed,
    /// then stops all threads and returns the run's counters.
    pub fn shutdown(mut self) -> RunStats {
        // Parked workers are woken by the timer core once the transport is finished (until then
        // they may park: requests can still arrive).
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.join_workers();
        self.stop_timer();
        self.stats()
    }

    /// Like [`shutdown`](Runtime::shutdown), but gives the requests in flight at most `deadline`
    /// to finish: then the runtime stops at once. Workers leave as soon as the request they run
    /// ends or is preempted (every armed request is preempted from then on, whether work waits
    /// or not); requests still queued or parked are abandoned (no reply; their green threads'
    /// stacks are released with the process). Returns the counters and how many admitted
    /// requests were abandoned. It cannot hang on a long request in a preemptible region; a
    /// request that cannot be preempted (outside a region) is waited for until it ends.
    pub fn shutdown_within(mut self, deadline: std::time::Duration) -> (RunStats, u64) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        let until = std::time::Instant::now() + deadline;
        while std::time::Instant::now() < until && !self.workers.iter().all(|h| h.is_finished()) {
            std::thread::sleep(std::time::Duration::from_millis(1).min(deadline));
        }
        if self.workers.iter().all(|h| h.is_finished()) {
            self.join_workers();
        } else {
            self.abort_workers();
        }
        self.stop_timer();
        let stats = self.stats();
        let abandoned = stats.total.admitted.saturating_sub(stats.total.completed);
        (stats, abandoned)
    }

    /// Stops the workers at once: idle ones leave, busy ones as soon as their request ends or is
    /// preempted; what is still queued or parked is abandoned.
    fn abort_workers(&mut self) {
        self.shared.abort.store(true, Ordering::SeqCst);
        crate::worker::wake_parked(&self.shared);
        self.join_workers();
    }

    fn join_workers(&mut self) {
        for h in self.workers.drain(..) {
            if h.join().is_err() {
                log::error!("a worker thread panicked");
            }
        }
    }

    fn stop_timer(&mut self) {
        self.timer_stop.store(true, Ordering::Release);
        for h in self.timer.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Runtime {
    /// A runtime dropped without `shutdown` stops at once: idle workers leave, requests still
    /// parked are abandoned (their stacks leak rather than run again).
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            self.abort_workers();
        }
        self.stop_timer();
    }
}
