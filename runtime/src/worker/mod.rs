//! A worker: one pinned OS thread running requests on reusable green threads.
//!
//! Life cycle of a green thread (thesis §5.1.1, §5.2.2): it loops `recv` → handler. It is reused
//! for the next request; a new one is taken from the per-worker pool only when the current one is
//! preempted (or yields on a contended lock). A thread found in the wait queue is switched to
//! directly from `recv`, and the thread that found it goes back to the pool. Threads are parked on
//! the wait queue and returned to the pool only *after* the switch away from them (`after_switch`),
//! so no other worker can ever run a thread whose stack is still in use. Pool surplus is unmapped
//! in batches when the worker is idle.

mod api;
mod green_local;
mod idle;
mod overflow;
pub(crate) mod panic;
mod preemption;
mod queues;
mod sched;
mod std_panic_code;
mod switch;
#[cfg(test)]
mod tests;

pub(crate) use api::block_on;
pub use api::{
    current_worker, feedback_finished, feedback_start, feedback_start_cooperative, on_worker, request_preemptions,
    send, stack_remaining, yield_now, SendError,
};
pub use green_local::GreenLocal;
pub use idle::{all_parked_and_nothing_queued, wake_parked, CoreGrants};
pub use panic::{guard as panic_guard, PanicGuard};
pub use preemption::{on_preempt, on_resume, set_preempt_probe};
pub(crate) use queues::SharedLoad;
pub use queues::Work;
pub(crate) use switch::wake_here;
use switch::{after_switch, set_current, take_thread};

use crate::green::alt_stack::AltStack;
use crate::green::context::switch;
use crate::green::thread::ThreadPtr;
use crate::green::{Context, GreenThread};
use crate::local::{self, ArmGenerations, PreemptState};
use crate::policy::quantum::ShortEma;
use crate::policy::timer::DISARMED;
use crate::preempt::Preempter;
use crate::queue::{LockedFifo, Ring};
use crate::request::Request;
use crate::stats::WorkerStats;
use crate::transport::Transport;
use std::cell::UnsafeCell;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Requests taken from the transport per poll: the first runs at once, the rest go to the ring.
pub const RX_BATCH: usize = 32;
/// Idle pool threads a worker keeps; the surplus is unmapped in a batch.
pub const POOL_KEEP: usize = 32;
/// Each worker's preemption stack, where the entry runs the scheduler's handler (the park path:
/// a fresh green thread, the queues, the allocator); a guard page below it.
pub const PREEMPT_STACK_BYTES: usize = 64 * 1024;
/// Status of the reply the runtime sends when a handler panicked before replying.
pub const STATUS_HANDLER_PANICKED: u32 = 0xFFFF_FFFF;
/// Status of the reply the runtime sends when a handler returned without replying.
pub const STATUS_NO_REPLY: u32 = 0xFFFF_FFFE;

/// A scheduling policy as the runtime calls it: over its requests and preempted green threads.
pub type RuntimeScheduler = dyn crate::policy::api::Scheduler<Request, ThreadPtr>;

/// The application's handler, shared by the workers (one allocation, called through one pointer).
pub type Handler = crate::request::SharedHandler;

/// Parameters workers need at run time.
#[derive(Debug, Clone)]
pub struct WorkerParams {
    pub stack_size: usize,
    pub max_green_threads: usize,
}

/// State shared by all workers and the timer core.
pub struct Shared {
    pub workers: Box<[WorkerShared]>,
    /// Preempted (or yielded) green threads, any worker may resume them.
    pub wait_queue: Ring<ThreadPtr>,
    /// Raised by the timer core while the wait queue is congested (Algorithm 5.3).
    pub check_wait_queue: AtomicBool,
    /// The quantum factor in force (f64 bits), switched by the timer core.
    pub factor_bits: AtomicU64,
    pub transport: Arc<dyn Transport>,
    pub handler: Handler,
    /// The application declared its whole handler a preemptible region (`Builder::migratable_handler`).
    pub handler_migratable: bool,
    pub preempter: Arc<dyn Preempter>,
    /// Compiler interrupts (`--preempt=ci` and the hybrids), or None.
    pub ci: Option<CiParams>,
    pub params: WorkerParams,
    /// Drain and stop once the transport is finished and nothing is in flight.
    pub shutdown: AtomicBool,
    /// Stop at the next idle moment even with requests in flight (used on drop).
    pub abort: AtomicBool,
    /// Green threads in existence (bounded by `max_green_threads`).
    pub live_threads: AtomicUsize,
    /// The scheduling policy's decisions (`policy::api`): a built-in system (`--policy`) or the
    /// application's own (`Builder::scheduler`).
    pub scheduler: Arc<RuntimeScheduler>,
    /// The policy's central queues (`Scheduler::central_queues`; DARC: short, long).
    pub central: Box<[LockedFifo<Work>]>,
    /// `--idle park`: idle workers park and the timer core wakes them; None: they spin (also
    /// whenever no timer core runs, as nothing would wake them).
    pub idle: Option<IdleParams>,
    /// `--overload credits`: the credit controller's shared state; None: admit everything.
    pub overload: Option<crate::overload::OverloadShared>,
    /// `--idle park` over a transport with arrival descriptors: how a worker wakes the timer
    /// core sleeping in epoll (`timer_sleep`).
    pub timer_wake: Option<crate::timer_sleep::SleepWake>,
    /// `--policy shinjuku`: its decisions, and per dispatcher the green threads its workers
    /// hand back (preempted or yielding), each at most once: room for the whole budget.
    pub shinjuku: Option<crate::policy::shinjuku::ShinjukuPolicy>,
    pub returned: Box<[Ring<Returned>]>,
}

/// A green thread a worker hands back to its Shinjuku dispatcher.
pub struct Returned {
    pub worker: usize,
    pub thread: ThreadPtr,
}

/// How idle workers park (`--idle park`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleParams {
    /// POLL_PERIOD: idle this long before parking.
    pub poll_period_ns: u64,
    /// Work waiting this long gets a parked worker woken.
    pub wake_delay_ns: u64,
}

impl Shared {
    /// CoreSync's coupling of parking with the credits, when on (`--idle park --overload credits
    /// --coupling coresync`).
    pub(crate) fn coupling(&self) -> Option<&crate::coresync::CouplingShared> {
        self.overload.as_ref().and_then(|o| o.coupling.as_ref())
    }

    /// Worker `worker`'s transport poll took `requests`: counted as admitted, and (CoreSync's
    /// coupling) as in the server for their sessions.
    pub(crate) fn received(&self, worker: usize, requests: &[crate::request::Request]) {
        self.workers[worker].stats.admitted.fetch_add(requests.len() as u64, Ordering::AcqRel);
        if let Some(c) = self.coupling() {
            for r in requests {
                c.received(r.flow);
            }
        }
    }

    /// The state of `config.workers` workers before any of them runs.
    pub fn new(
        config: &crate::config::Config,
        transport: Arc<dyn Transport>,
        handler: Handler,
        handler_migratable: bool,
        preempter: Arc<dyn Preempter>,
        scheduler: Arc<RuntimeScheduler>,
    ) -> Shared {
        let shinjuku = scheduler.dispatched();
        let sleeps = config.idle == crate::config::IdleMode::Park && !transport.arrival_fds().is_empty();
        let timer_wake = sleeps
            .then(|| {
                crate::timer_sleep::SleepWake::new()
                    .map_err(|e| log::warn!("no eventfd ({e}): the timer core polls while workers park"))
                    .ok()
            })
            .flatten();
        Shared {
            workers: (0..config.workers)
                .map(|i| WorkerShared::new(i, config.rx_capacity, config.max_green_threads))
                .collect(),
            wait_queue: Ring::with_capacity(config.max_green_threads),
            check_wait_queue: AtomicBool::new(false),
            factor_bits: AtomicU64::new(config.quantum_factor.to_bits()),
            transport,
            handler,
            handler_migratable,
            preempter,
            ci: config.preempt.compiler_interrupts().then_some(CiParams {
                grace_ns: (config.ci_grace_us > 0).then_some(config.ci_grace_us * 1000),
                fallback: config.preempt.interrupt() != crate::preempt::PreemptMode::None,
            }),
            params: WorkerParams { stack_size: config.stack_kib * 1024, max_green_threads: config.max_green_threads },
            shutdown: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            live_threads: AtomicUsize::new(0),
            central: (0..scheduler.central_queues()).map(|_| LockedFifo::with_capacity(config.rx_capacity)).collect(),
            scheduler,
            idle: (config.idle == crate::config::IdleMode::Park).then_some(IdleParams {
                poll_period_ns: config.idle_poll_us * 1_000,
                wake_delay_ns: config.wake_delay_us * 1_000,
            }),
            overload: config.overload_params().map(|p| crate::overload::OverloadShared::new(p, config.workers)),
            timer_wake,
            shinjuku: shinjuku.then(|| config.shinjuku()),
            returned: (0..if shinjuku { config.dispatchers } else { 0 })
                .map(|_| Ring::with_capacity(config.max_green_threads))
                .collect(),
        }
    }
}

/// How the timer core uses compiler interrupts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CiParams {
    /// How long a request may stay unanswered before the fallback; None = one quantum.
    pub grace_ns: Option<u64>,
    /// A hybrid mode: `preempter` interrupts an unanswered request.
    pub fallback: bool,
}

/// One worker's state that others read: its queue, its timer, its counters.
pub struct WorkerShared {
    pub id: usize,
    /// The local software queue (the thesis's Q^RX): filled from the transport, stolen from.
    pub rx: Ring<Request>,
    /// Timer deadline of the running long request (runtime clock ns), or DISARMED.
    pub deadline: AtomicU64,
    /// This worker's EMA of short service times, for the timer core's renewals.
    pub short_ema: AtomicU64,
    /// Kernel thread id (for tgkill), 0 until the worker runs.
    pub tid: AtomicI32,
    /// CPU the worker is pinned to (for IPIs), -1 if not pinned.
    pub cpu: AtomicI32,
    pub stats: WorkerStats,
    /// Which arming of the timer an interrupt is for (see `local::ArmGenerations`).
    pub gens: ArmGenerations,
    /// The policy API's inbox (`Placement::Worker`, `RequeueTo::Worker`): Concord's JBSQ queue,
    /// Tiny Quanta's, d-FCFS's yields; any worker may push, only this one pops.
    pub own: LockedFifo<Work>,
    /// Some worker is polling this worker's transport queue (baselines admit for each other).
    pub polling: AtomicBool,
    /// Serving a request (Tiny Quanta's JSQ counts it).
    pub busy: AtomicBool,
    /// Shinjuku: the dispatcher's hand-off to this worker (one unit of work at a time).
    pub mailbox: Ring<Work>,
    /// Shinjuku: how often this worker has asked for work (once at start, once each time a unit
    /// of work ended: completed, preempted or yielded). The dispatcher counts what it sent; the
    /// worker is free while it asked more often than it was sent work.
    pub asks: AtomicU64,
    /// Shinjuku: new requests the dispatcher turned away (its queues at their limit), for this
    /// worker to answer REJECTED: only a worker may send on its transport queue. The dispatcher
    /// is the only producer and polls no more than there is room for.
    pub dispatcher_rejects: Ring<Request>,
    /// Green threads that blocked on this worker (`wait`) and were woken: they resume here, and
    /// only here, so a request that waits never changes OS thread. Each thread is in it at most
    /// once, and the capacity is the green-thread budget, so a push always finds room.
    pub woken: Ring<ThreadPtr>,
    /// Asleep in the kernel (`--idle park`) until a waker wakes it (`park::ParkGate` has the
    /// protocol and why no wake-up is lost).
    pub park: crate::park::ParkGate,
    /// When the last waker decided to wake this worker (runtime clock ns), for the wake-up
    /// latency.
    pub wake_sent_ns: AtomicU64,
}

/// Room for rejects each worker's `dispatcher_rejects` ring has.
pub(crate) const DISPATCHER_REJECTS: usize = 1024;

impl WorkerShared {
    pub fn new(id: usize, rx_capacity: usize, max_green_threads: usize) -> WorkerShared {
        WorkerShared {
            id,
            rx: Ring::with_capacity(rx_capacity),
            deadline: AtomicU64::new(DISARMED),
            short_ema: AtomicU64::new(ShortEma::default().get()),
            tid: AtomicI32::new(0),
            cpu: AtomicI32::new(-1),
            stats: WorkerStats::default(),
            gens: ArmGenerations::default(),
            own: LockedFifo::with_capacity(0),
            polling: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            mailbox: Ring::with_capacity(1),
            asks: AtomicU64::new(0),
            dispatcher_rejects: Ring::with_capacity(DISPATCHER_REJECTS),
            woken: Ring::with_capacity(max_green_threads),
            park: crate::park::ParkGate::default(),
            wake_sent_ns: AtomicU64::new(0),
        }
    }
}

enum PostSwitch {
    Nothing,
    /// Put this (preempted or yielding) thread on the wait queue.
    Park(*mut GreenThread),
    /// Return this (finished or superseded) thread to the pool.
    Recycle(*mut GreenThread),
    /// Publish this thread, which blocked, in what it waits on (`BlockedOn`).
    Block(*mut GreenThread, *const (dyn BlockedOn + 'static)),
}

/// What a blocking green thread is published in once it has switched away: the one step of the
/// waiting protocol the worker runs (`after_switch`). `wait::WaitSlot` is the implementation; the
/// waiting primitives sit above the worker and the worker knows them only through this.
pub(crate) trait BlockedOn {
    /// Publishes blocked thread `t`, whose home is worker `worker` of `shared`; false if it was
    /// notified first (the worker then makes `t` runnable at once, `wake_here`).
    ///
    /// # Safety
    /// `t` is the green thread that blocked on `self` and has just switched away.
    unsafe fn publish(&self, t: ThreadPtr, shared: Arc<Shared>, worker: usize) -> bool;
}

/// Worker-private state (inside `WorkerLocal`, reached via `gs:`).
pub struct WorkerState {
    id: usize,
    shared: Arc<Shared>,
    current: *mut GreenThread,
    main_ctx: Context,
    post_switch: PostSwitch,
    // Boxed on purpose: threads leave the pool as raw pointers (`Box::into_raw`) that the wait
    // queue and other workers hold, so each needs an address that no Vec growth moves.
    #[allow(clippy::vec_box)]
    pool: Vec<Box<GreenThread>>,
    poll_buf: Vec<Request>,
    /// Arrivals the policy rejected during a selection, answered right after it.
    rejects: Vec<(Request, u32)>,
    ema: ShortEma,
    /// Where a fresh or recycled green thread starts (`sched::green_main`): set here, at the top
    /// of `worker`, so that the switch below the scheduler never names it.
    thread_main: extern "C" fn() -> !,
}

impl WorkerState {
    fn shared(&self) -> &'static Shared {
        // SAFETY: every worker holds an Arc<Shared> until its thread exits, so the Shared outlives
        // any use a worker makes of this reference.
        unsafe { &*Arc::as_ptr(&self.shared) }
    }
}

/// A worker's whole per-thread state, reached through gs:[0]: the preemption state every
/// delivery path reads (first, so that gs:[0] points at both), this worker's shared half, and the
/// private part only its own OS thread touches.
#[repr(C)]
pub struct WorkerLocal {
    preempt: PreemptState,
    /// This worker's shared half (queues, timer deadline, counters); lives as long as the runtime.
    shared: *const WorkerShared,
    /// Touched only by this worker's own OS thread (never by signal handlers).
    state: UnsafeCell<WorkerState>,
}

const _: () = assert!(core::mem::offset_of!(WorkerLocal, preempt) == 0);

impl WorkerLocal {
    fn new(state: WorkerState, shared: &WorkerShared) -> Box<WorkerLocal> {
        Box::new(WorkerLocal {
            preempt: PreemptState::new(&shared.stats, &shared.gens),
            shared,
            state: UnsafeCell::new(state),
        })
    }

    /// This worker's shared half.
    pub fn shared(&self) -> &WorkerShared {
        // SAFETY: set at creation to an element of the runtime's worker array, which outlives
        // every worker thread.
        unsafe { &*self.shared }
    }

    /// The worker-private part.
    ///
    /// # Safety
    /// Only the owning worker's OS thread may call this, and the returned reference must not be
    /// held across a green-thread switch (the thread may continue on another worker).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn state(&self) -> &mut WorkerState {
        // SAFETY: per the contract, only this worker's thread accesses `state`, one borrow at a time.
        unsafe { &mut *self.state.get() }
    }
}

impl Deref for WorkerLocal {
    type Target = PreemptState;
    fn deref(&self) -> &PreemptState {
        &self.preempt
    }
}

/// The current worker's whole state. Must only be called on a worker thread; like
/// `local::current`, the answer names the worker the code runs on *now*.
#[inline(always)]
pub(crate) fn current() -> &'static WorkerLocal {
    // SAFETY: `run_worker` installs `&wl.preempt`, the first field of a repr(C) WorkerLocal, so
    // gs:[0] is also the WorkerLocal's address; it lives until the worker thread uninstalls it.
    unsafe { &*(local::current_ptr() as *const WorkerLocal) }
}

/// Disables preemption, then reads the current worker (see `local::disable_then_current`).
#[inline(always)]
pub(crate) fn disable_then_current() -> &'static WorkerLocal {
    local::disable_raw();
    current()
}

/// Body of worker thread `id`.
pub fn run_worker(id: usize, shared: Arc<Shared>, cpu: Option<usize>, ready: &dyn Fn(Result<(), String>)) {
    if let Some(cpu) = cpu {
        if let Err(e) = crate::cpu::pin_current_thread(cpu) {
            ready(Err(format!("worker {id}: cannot pin to CPU {cpu}: {e}")));
            return;
        }
    }
    let max = shared.params.max_green_threads;
    let state = WorkerState {
        id,
        shared: shared.clone(),
        current: std::ptr::null_mut(),
        main_ctx: Context::default(),
        post_switch: PostSwitch::Nothing,
        pool: Vec::with_capacity(max),
        poll_buf: Vec::with_capacity(RX_BATCH),
        rejects: Vec::new(),
        ema: ShortEma::default(),
        thread_main: sched::green_main,
    };
    let wl = WorkerLocal::new(state, &shared.workers[id]);
    // Lives until this function returns, after the last green thread stopped.
    let preempt_stack = match crate::green::Stack::new(PREEMPT_STACK_BYTES) {
        Ok(s) => s,
        Err(e) => {
            ready(Err(format!("worker {id}: cannot map the preemption stack: {e}")));
            return;
        }
    };
    wl.preempt.preempt_stack.store(preempt_stack.top() as u64 & !15, Ordering::Relaxed);
    // SAFETY: `wl` is boxed (fixed address) and outlives every use: uninstalled below before it
    // is dropped; its PreemptState is its first field (see `current`).
    if let Err(e) = unsafe { local::install(&wl.preempt) } {
        ready(Err(format!("worker {id}: cannot set GS base: {e}")));
        return;
    }
    shared.workers[id].tid.store(crate::cpu::gettid(), Ordering::Release);
    shared.workers[id].cpu.store(cpu.map_or(-1, |c| c as i32), Ordering::Release);
    // Every worker has an alternate signal stack: for the signal preempter's handler, and for
    // the green-stack overflow report, which runs while the green stack is unusable.
    if let Err(e) = overflow::install().and_then(|()| AltStack::install()) {
        local::uninstall();
        ready(Err(format!("worker {id}: cannot set up the alternate signal stack: {e}")));
        return;
    }
    if let Err(e) = shared.preempter.register_worker(cpu) {
        AltStack::uninstall();
        local::uninstall();
        ready(Err(format!("worker {id}: {} preemption setup failed: {e}", shared.preempter.name())));
        return;
    }
    // SAFETY: we are this worker's thread and hold no other borrow of its state.
    let st = unsafe { wl.state() };
    let Some(first) = take_thread(st) else {
        shared.preempter.unregister_worker();
        AltStack::uninstall();
        local::uninstall();
        ready(Err(format!("worker {id}: cannot allocate a green thread stack")));
        return;
    };
    ready(Ok(()));
    set_current(&wl, st, first);
    let main_ctx: *mut Context = &mut st.main_ctx;
    // SAFETY: `first` is a fresh context on its own stack; the worker comes back here only through
    // `exit_to_main`, which switches to `main_ctx`.
    unsafe { switch(main_ctx, &(*first).ctx) };
    // Back on the worker's own stack: the runtime is stopping.
    after_switch();
    shared.workers[id].stats.cpu_ns.store(crate::park::thread_cpu_ns(), Ordering::Relaxed);
    shared.preempter.unregister_worker();
    AltStack::uninstall();
    local::uninstall();
    drop(wl); // unmaps the pool's stacks
}
