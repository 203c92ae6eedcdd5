//! A worker: one pinned OS thread running requests on reusable green threads.
//!
//! Life cycle of a green thread (thesis §5.1.1, §5.2.2): it loops `recv` → handler. It is reused
//! for the next request; a new one is taken from the per-worker pool only when the current one is
//! preempted (or yields on a contended lock). A thread found in the wait queue is switched to
//! directly from `recv`, and the thread that found it goes back to the pool. Threads are parked on
//! the wait queue and returned to the pool only *after* the switch away from them (`after_switch`),
//! so no other worker can ever run a thread whose stack is still in use. Pool surplus is unmapped
//! in batches when the worker is idle.

mod baseline;
pub(crate) mod panic;

pub use baseline::{work_waiting, Work};

use crate::clock;
use crate::green::context::switch;
use crate::green::thread::ThreadPtr;
use crate::green::{Context, GreenThread};
use crate::local::{self, WorkerLocal};
use crate::policy::quantum::ShortEma;
use crate::policy::selection::{self, Selected, WorkerQueues};
use crate::policy::system::{Preemptible, SchedPolicy, Spec};
use crate::policy::timer::DISARMED;
use crate::preempt::{entry, NoPreempt, Preempter};
use crate::queue::{LockedFifo, Ring};
use crate::request::{Reply, Request};
use crate::stats::WorkerStats;
use crate::transport::Transport;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Requests taken from the transport per poll: the first runs at once, the rest go to the ring.
pub const RX_BATCH: usize = 32;
/// Idle pool threads a worker keeps; the surplus is unmapped in a batch.
pub const POOL_KEEP: usize = 32;
/// Stack the preemption path needs beyond the entry frame (on_preempt, switch, allocation).
pub const PREEMPT_STACK_RESERVE: usize = 16 * 1024;
/// Status of the reply the runtime sends when a handler panicked.
pub const STATUS_HANDLER_PANICKED: u32 = 0xFFFF_FFFF;

pub type Handler = Box<dyn Fn(Request) + Send + Sync>;

/// Parameters workers need at run time.
#[derive(Debug, Clone)]
pub struct WorkerParams {
    pub steal_threshold: usize,
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
    pub preempter: Arc<dyn Preempter>,
    pub params: WorkerParams,
    /// Drain and stop once the transport is finished and nothing is in flight.
    pub shutdown: AtomicBool,
    /// Stop at the next idle moment even with requests in flight (used on drop).
    pub abort: AtomicBool,
    /// Green threads in existence (bounded by `max_green_threads`).
    pub live_threads: AtomicUsize,
    /// The scheduling policy (`--policy`) and its decisions.
    pub policy: SchedPolicy,
    pub spec: Spec,
    /// Baseline policies' central queue (DARC: its short class).
    pub central: LockedFifo<Work>,
    /// DARC's long class.
    pub central_long: LockedFifo<Work>,
    /// DARC: request kinds classified long at arrival, and workers reserved for short ones.
    pub long_kinds: Vec<u32>,
    pub darc_reserved: usize,
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
    /// Baseline policies' per-worker queue (Concord's JBSQ, Tiny Quanta's, d-FCFS's yields).
    pub own: LockedFifo<Work>,
    /// Some worker is polling this worker's transport queue (baselines admit for each other).
    pub polling: AtomicBool,
    /// Serving a request (Tiny Quanta's JSQ counts it).
    pub busy: AtomicBool,
}

impl WorkerShared {
    pub fn new(id: usize, rx_capacity: usize) -> WorkerShared {
        WorkerShared {
            id,
            rx: Ring::with_capacity(rx_capacity),
            deadline: AtomicU64::new(DISARMED),
            short_ema: AtomicU64::new(ShortEma::default().get()),
            tid: AtomicI32::new(0),
            cpu: AtomicI32::new(-1),
            stats: WorkerStats::default(),
            own: LockedFifo::with_capacity(0),
            polling: AtomicBool::new(false),
            busy: AtomicBool::new(false),
        }
    }
}

enum PostSwitch {
    Nothing,
    /// Put this (preempted or yielding) thread on the wait queue.
    Park(*mut GreenThread),
    /// Return this (finished or superseded) thread to the pool.
    Recycle(*mut GreenThread),
}

/// Worker-private state (inside `WorkerLocal`, reached via `gs:`).
pub struct WorkerState {
    id: usize,
    shared: Arc<Shared>,
    current: *mut GreenThread,
    main_ctx: Context,
    post_switch: PostSwitch,
    pool: Vec<Box<GreenThread>>,
    poll_buf: Vec<Request>,
    ema: ShortEma,
}

impl WorkerState {
    fn shared(&self) -> &'static Shared {
        // SAFETY: every worker holds an Arc<Shared> until its thread exits, so the Shared outlives
        // any use a worker makes of this reference.
        unsafe { &*Arc::as_ptr(&self.shared) }
    }
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
        ema: ShortEma::default(),
    };
    let wl = WorkerLocal::new(state, &shared.workers[id]);
    if let Err(e) = local::install(&wl) {
        ready(Err(format!("worker {id}: cannot set GS base: {e}")));
        return;
    }
    shared.workers[id].tid.store(crate::cpu::gettid(), Ordering::Release);
    shared.workers[id].cpu.store(cpu.map_or(-1, |c| c as i32), Ordering::Release);
    if let Err(e) = shared.preempter.register_worker(cpu) {
        local::uninstall();
        ready(Err(format!("worker {id}: {} preemption setup failed: {e}", shared.preempter.name())));
        return;
    }
    // SAFETY: we are this worker's thread and hold no other borrow of its state.
    let st = unsafe { wl.state() };
    let Some(first) = take_thread(st) else {
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
    shared.preempter.unregister_worker();
    local::uninstall();
    drop(wl); // unmaps the pool's stacks
}

fn set_current(l: &WorkerLocal, st: &mut WorkerState, t: *mut GreenThread) {
    st.current = t;
    // SAFETY: t is a live green thread owned by this worker while current.
    let stack = unsafe { (*t).stack() };
    l.stack_lo.store(stack.bottom() as u64, Ordering::Relaxed);
    l.stack_hi.store(stack.top() as u64, Ordering::Relaxed);
    let need = (entry::frame_bytes() + PREEMPT_STACK_RESERVE) as u64;
    l.min_preempt_rsp.store(stack.bottom() as u64 + need, Ordering::Relaxed);
}

/// A green thread from the pool, or a new one within the global budget.
fn take_thread(st: &mut WorkerState) -> Option<*mut GreenThread> {
    if let Some(mut t) = st.pool.pop() {
        t.reset(green_main);
        return Some(Box::into_raw(t));
    }
    let shared = st.shared();
    if shared.live_threads.fetch_add(1, Ordering::AcqRel) >= shared.params.max_green_threads {
        shared.live_threads.fetch_sub(1, Ordering::AcqRel);
        return None;
    }
    match GreenThread::new(shared.params.stack_size, green_main) {
        Ok(t) => Some(Box::into_raw(t)),
        Err(_) => {
            shared.live_threads.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }
}

/// Finishes the bookkeeping of the switch that just landed here (see module docs).
fn after_switch() {
    let l = local::current();
    // SAFETY: runs on this worker's thread; the borrow ends before any switch.
    let st = unsafe { l.state() };
    match std::mem::replace(&mut st.post_switch, PostSwitch::Nothing) {
        PostSwitch::Nothing => {}
        PostSwitch::Park(t) => {
            // The wait queue's capacity equals the green-thread budget, so there is always room.
            if baseline::requeue(st.shared(), st.id, ThreadPtr(t)).is_err() {
                eprintln!("synergy: wait queue overflow (capacity below the green-thread budget)");
                std::process::abort();
            }
        }
        // SAFETY: t came from Box::into_raw and nothing runs on it any more.
        PostSwitch::Recycle(t) => st.pool.push(unsafe { Box::from_raw(t) }),
    }
}

/// Entry point of every fresh green thread.
extern "C" fn green_main() -> ! {
    after_switch();
    loop {
        let req = recv();
        serve(req);
    }
}

/// Runs one request through the application handler.
fn serve(req: Request) {
    {
        let l = local::current();
        // SAFETY: worker thread; the borrow ends before the handler runs.
        let st = unsafe { l.state() };
        // SAFETY: current is the live thread running this code.
        let t = unsafe { &mut *st.current };
        t.long = false;
        t.timed = false;
        t.preemptions = 0;
        t.started_ns = clock::now_ns();
        l.shared().busy.store(true, Ordering::Relaxed);
        if st.shared().spec.preemptible == Preemptible::Every {
            // The baselines preempt any request that outlives its quantum.
            t.timed = true;
            arm_timer(l, st);
        }
    }
    let handler: *const (dyn Fn(Request) + Send + Sync) = &*shared_ref().handler;
    // SAFETY: the handler lives in Shared, which outlives all workers.
    let outcome = catch_unwind(AssertUnwindSafe(|| unsafe { (*handler)(req) }));
    // The request is over; this may be a different worker than the one that started it (never
    // one other than where a panic ran: see `panic`).
    feedback_finished();
    panic::release_holds(outcome.is_err());
    let _np = NoPreempt::new();
    let l = local::current();
    // SAFETY: as above.
    let st = unsafe { l.state() };
    // SAFETY: as above.
    let t = unsafe { &*st.current };
    let ws = l.shared();
    ws.busy.store(false, Ordering::Relaxed);
    if t.long {
        ws.stats.long_done.fetch_add(1, Ordering::Relaxed);
    } else {
        // Short requests are never preempted, so they started and ended on this worker.
        st.ema.update(clock::now_ns().saturating_sub(t.started_ns));
        ws.short_ema.store(st.ema.get(), Ordering::Relaxed);
        ws.stats.short_done.fetch_add(1, Ordering::Relaxed);
    }
    if outcome.is_err() {
        ws.stats.handler_panics.fetch_add(1, Ordering::Relaxed);
        drop(_np);
        let _ = send(Reply::to(&req).with_status(STATUS_HANDLER_PANICKED));
        local::current().shared().stats.completed.fetch_add(1, Ordering::Release);
    } else {
        ws.stats.completed.fetch_add(1, Ordering::Release);
    }
}

fn shared_ref() -> &'static Shared {
    // SAFETY: worker thread; short borrow.
    unsafe { local::current().state() }.shared()
}

/// The real queues behind Algorithm 5.2.
struct RealQueues<'a> {
    st: &'a mut WorkerState,
    shared: &'static Shared,
}

impl WorkerQueues for RealQueues<'_> {
    type Request = Request;
    type Thread = ThreadPtr;

    fn pop_local(&mut self) -> Option<Request> {
        let me = &self.shared.workers[self.st.id];
        if let Some(r) = me.rx.pop() {
            return Some(r);
        }
        let buf = &mut self.st.poll_buf;
        buf.clear();
        self.shared.transport.poll(self.st.id, buf, RX_BATCH.min(me.rx.capacity()));
        if buf.is_empty() {
            return None;
        }
        me.stats.admitted.fetch_add(buf.len() as u64, Ordering::AcqRel);
        for r in &buf[1..] {
            push_until_room(&me.rx, *r);
        }
        Some(buf[0])
    }

    fn pop_wait(&mut self) -> Option<ThreadPtr> {
        self.shared.wait_queue.pop()
    }

    fn peer_len(&self, victim: usize) -> usize {
        self.shared.workers[victim].rx.len()
    }

    fn steal(&mut self, victim: usize, count: usize) -> Option<Request> {
        let me = &self.shared.workers[self.st.id];
        let from = &self.shared.workers[victim].rx;
        let first = from.pop()?;
        let mut taken = 1;
        while taken < count {
            match from.pop() {
                Some(r) => push_until_room(&me.rx, r),
                None => break,
            }
            taken += 1;
        }
        me.stats.steals.fetch_add(1, Ordering::Relaxed);
        me.stats.stolen.fetch_add(taken as u64, Ordering::Relaxed);
        Some(first)
    }
}

/// Only this worker fills its own ring and it was empty a moment ago, so room appears at once
/// (the loop only guards against a misconfigured capacity).
fn push_until_room(ring: &Ring<Request>, mut r: Request) {
    while let Err(back) = ring.push(r) {
        r = back;
        std::hint::spin_loop();
    }
}

/// Selects the next request (Algorithm 5.2); resumes a preempted thread directly if that is what
/// comes next, in which case this call never returns to its caller.
fn recv() -> Request {
    let mut idle_rounds = 0u32;
    loop {
        let selected = {
            let l = local::current();
            // SAFETY: worker thread; the borrow ends at the end of this block.
            let st = unsafe { l.state() };
            let shared = st.shared();
            let id = st.id;
            if shared.policy == SchedPolicy::Synergy {
                let check = shared.check_wait_queue.load(Ordering::Relaxed);
                let mut q = RealQueues { st, shared };
                selection::select(&mut q, check, id, shared.workers.len(), shared.params.steal_threshold)
            } else {
                baseline::select(st, shared)
            }
        };
        match selected {
            Some(Selected::Request(r)) => return r,
            Some(Selected::Resume(t)) => resume(t.0),
            None => {
                idle_rounds += 1;
                if idle_rounds % 64 == 0 {
                    idle_maintenance();
                    // Lets a co-scheduled thread run on an oversubscribed CPU; returns at once on
                    // a dedicated core.
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
    }
}

/// Unmaps pool surplus in one batch, and leaves for the worker's main context when stopping.
fn idle_maintenance() {
    let l = local::current();
    // SAFETY: worker thread; short borrow.
    let st = unsafe { l.state() };
    if st.pool.len() > POOL_KEEP {
        let surplus = st.pool.len() - POOL_KEEP;
        st.pool.truncate(POOL_KEEP);
        st.shared().live_threads.fetch_sub(surplus, Ordering::AcqRel);
    }
    let shared = st.shared();
    let stop = shared.abort.load(Ordering::Acquire) || (shared.shutdown.load(Ordering::Acquire) && drained(shared));
    if stop {
        let cur = st.current;
        st.post_switch = PostSwitch::Recycle(cur);
        let main_ctx: *const Context = &st.main_ctx;
        // SAFETY: main_ctx was saved by run_worker's switch on this worker's own stack.
        unsafe { switch(&mut (*cur).ctx, main_ctx) };
        unreachable!("a recycled green thread is only ever restarted from green_main");
    }
}

/// True when no request will arrive and none is in flight. Reads completions before admissions
/// (both only grow), so equal sums mean nothing was in flight at one instant.
fn drained(shared: &Shared) -> bool {
    if !shared.transport.finished() {
        return false;
    }
    let done: u64 = shared.workers.iter().map(|w| w.stats.completed.load(Ordering::Acquire)).sum();
    let admitted: u64 = shared.workers.iter().map(|w| w.stats.admitted.load(Ordering::Acquire)).sum();
    done >= admitted
}

/// Switches from the current (idle) thread straight to preempted thread `t`.
fn resume(t: *mut GreenThread) -> ! {
    let l = local::current();
    // SAFETY: worker thread; the borrow ends with the switch.
    let st = unsafe { l.state() };
    let cur = st.current;
    st.post_switch = PostSwitch::Recycle(cur);
    set_current(l, st, t);
    l.shared().stats.resumes.fetch_add(1, Ordering::Relaxed);
    // SAFETY: t was parked by a completed switch (it is not running anywhere) and we own it now.
    unsafe { switch(&mut (*cur).ctx, &(*t).ctx) };
    unreachable!("a recycled green thread is only ever restarted from green_main");
}

/// Parks the running green thread on the wait queue and continues on a fresh one. Returns (on
/// whatever worker resumes the thread) true, or false at once if no green thread was available.
/// Preemption must be enabled (depth 0) and `preemptible` clear.
fn park_current() -> bool {
    let l = local::current();
    // SAFETY: worker thread; not used after the switch.
    let st = unsafe { l.state() };
    let Some(fresh) = take_thread(st) else {
        l.shared().stats.preempt_skipped.fetch_add(1, Ordering::Relaxed);
        return false;
    };
    let cur = st.current;
    // SAFETY: cur is the live thread running this code.
    unsafe { (*cur).preemptions += 1 };
    l.shared().deadline.store(DISARMED, Ordering::Release);
    st.post_switch = PostSwitch::Park(cur);
    set_current(l, st, fresh);
    // SAFETY: fresh is a reset thread on its own stack; cur's context is saved by this call and it
    // is published on the wait queue only after the switch (after_switch on the fresh thread).
    unsafe { switch(&mut (*cur).ctx, &(*fresh).ctx) };
    // Resumed, possibly on another worker: everything must be re-read through gs.
    after_switch();
    true
}

/// After a park: a timed request (long, or any under a baseline that preempts every request)
/// continues under a fresh quantum on its new worker (thesis §5.1.1.1: the handler calls
/// feedback_start before returning to the application).
fn rearm_if_timed() {
    let l = local::current();
    // SAFETY: worker thread; short borrow.
    let st = unsafe { l.state() };
    // SAFETY: current is live.
    if unsafe { (*st.current).timed } {
        arm_timer(l, st);
    }
}

fn arm_timer(l: &WorkerLocal, st: &mut WorkerState) {
    let factor = f64::from_bits(st.shared().factor_bits.load(Ordering::Relaxed));
    let q = st.shared().spec.quantum_ns(st.ema.get(), factor);
    l.shared().deadline.store(clock::now_ns() + q, Ordering::Release);
    l.preemptible.store(1, Ordering::Release);
}

/// Where `preempt_entry` calls in, after saving the full interrupted state.
pub extern "C" fn on_preempt() {
    let probe = PREEMPT_PROBE.load(Ordering::Relaxed);
    if probe != 0 {
        // SAFETY: only `set_preempt_probe` stores here, always a valid `fn()`.
        let probe: fn() = unsafe { std::mem::transmute::<usize, fn()>(probe) };
        probe();
        // The interrupted request stays where it is and may be interrupted again.
        local::current().preemptible.store(1, Ordering::Release);
        return;
    }
    preempt_or_run_to_completion();
}

/// A `fn()` the preemption entry calls *instead of* parking the interrupted green thread (0: none).
static PREEMPT_PROBE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Makes every preemption of this process run `probe` in the interrupted green thread's context
/// (after the entry saved its full state) and return to it, instead of parking it. The
/// interrupt-path microbenchmark's receiver side; `None` restores normal preemption. The probe
/// must not allocate, block or touch thread-local storage.
#[doc(hidden)]
pub fn set_preempt_probe(probe: Option<fn()>) {
    PREEMPT_PROBE.store(probe.map_or(0, |f| f as usize), Ordering::Release);
}

/// Parks the current (long) request, or — if no green thread is available to take over — lets it
/// run to completion: its timer is disarmed rather than re-armed, so the timer core does not keep
/// interrupting a request it cannot preempt (an interrupt storm that would starve the worker).
fn preempt_or_run_to_completion() {
    if panic::refuse_while_panicking() {
        // Inside std's panic path: let it finish here; the timer core retries a quantum later.
        let l = local::current();
        l.shared().stats.preempt_skipped.fetch_add(1, Ordering::Relaxed);
        l.preemptible.store(1, Ordering::Release);
        return;
    }
    if park_current() {
        local::current().shared().stats.preemptions.fetch_add(1, Ordering::Relaxed);
        rearm_if_timed();
    } else {
        local::current().shared().deadline.store(DISARMED, Ordering::Release);
    }
}

/// Decides, on the interrupted worker thread itself, whether an interrupt that hit stack pointer
/// `rsp` may redirect the thread into the preemption entry (and if so clears `preemptible`, so
/// that no second interrupt redirects it again). Async-signal-safe: touches only this worker's
/// atomics.
pub fn redirect_decision(l: &WorkerLocal, rsp: u64) -> bool {
    let stats = &l.shared().stats;
    if l.preemptible.load(Ordering::Relaxed) == 0 {
        stats.interrupts_ignored.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    if l.preempt_disable.load(Ordering::Relaxed) != 0 {
        // Counted when it is taken (`take_deferred_preemption`), like the ipi path's, whose
        // decision is made in asm.
        l.preempt_pending.store(1, Ordering::Relaxed);
        return false;
    }
    let hi = l.stack_hi.load(Ordering::Relaxed);
    if rsp > hi || rsp < l.min_preempt_rsp.load(Ordering::Relaxed) {
        stats.preempt_skipped.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    l.preemptible.store(0, Ordering::Relaxed);
    l.preempt_pending.store(0, Ordering::Relaxed);
    true
}

/// Called by `preempt::enable` when the depth returned to 0 with an interrupt pending.
pub fn take_deferred_preemption() {
    let l = local::current();
    local::disable_raw();
    let pending = l.preempt_pending.swap(0, Ordering::Relaxed) != 0;
    let armed = l.preemptible.load(Ordering::Relaxed) != 0;
    if pending && armed {
        l.shared().stats.preempt_deferred.fetch_add(1, Ordering::Relaxed);
        // With preemptible clear no interrupt can redirect us, so depth may go back to 0.
        l.preemptible.store(0, Ordering::Relaxed);
        local::enable_raw_reached_zero();
        preempt_or_run_to_completion();
    } else {
        local::enable_raw_reached_zero();
    }
}

// ---------------------------------------------------------------------------------------------
// The application API.

/// Marks the running request as long: arms this worker's timer with quantum = factor × EMA and
/// makes the request preemptible. A no-op off worker threads.
pub fn feedback_start() {
    if !local::on_worker() {
        return;
    }
    let _np = NoPreempt::new();
    let l = local::current();
    // SAFETY: worker thread; short borrow.
    let st = unsafe { l.state() };
    // SAFETY: current is live.
    let t = unsafe { &mut *st.current };
    t.long = true;
    match st.shared().spec.preemptible {
        Preemptible::MarkedLong => {
            t.timed = true;
            arm_timer(l, st);
        }
        // Every: armed since the request started; Never: nothing is preempted.
        Preemptible::Every | Preemptible::Never => {}
    }
}

/// Ends the long section: disarms the timer; the rest of the request runs unpreempted.
pub fn feedback_finished() {
    if !local::on_worker() {
        return;
    }
    let _np = NoPreempt::new();
    let l = local::current();
    l.preemptible.store(0, Ordering::Release);
    l.preempt_pending.store(0, Ordering::Relaxed);
    l.shared().deadline.store(DISARMED, Ordering::Release);
}

/// Error of `send` called off a worker thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOnWorker;

impl std::fmt::Display for NotOnWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("synergy::send called outside a synergy worker")
    }
}

impl std::error::Error for NotOnWorker {}

/// Sends `reply` on the TX queue of the worker running this request now.
pub fn send(mut reply: Reply) -> Result<(), NotOnWorker> {
    if !local::on_worker() {
        return Err(NotOnWorker);
    }
    let _np = NoPreempt::new();
    let l = local::current();
    // SAFETY: worker thread; short borrow.
    let st = unsafe { l.state() };
    reply.done_ns = clock::now_ns();
    reply.worker = st.id as u32;
    // SAFETY: current is live.
    reply.preemptions = unsafe { (*st.current).preemptions };
    st.shared().transport.reply(st.id, reply);
    Ok(())
}

/// Lets other work run: parks the current green thread on the wait queue (it resumes like a
/// preempted one). Off worker threads, or with preemption disabled, it only yields the CPU / spins.
/// Returns true if the green thread really parked.
pub fn yield_now() -> bool {
    if !local::on_worker() {
        std::thread::yield_now();
        return false;
    }
    if local::disable_depth() != 0 {
        std::hint::spin_loop();
        return false;
    }
    let l = local::current();
    local::disable_raw();
    let was_armed = l.preemptible.swap(0, Ordering::Relaxed) != 0;
    l.preempt_pending.store(0, Ordering::Relaxed);
    local::enable_raw_reached_zero();
    l.shared().stats.yields.fetch_add(1, Ordering::Relaxed);
    if park_current() {
        rearm_if_timed();
        true
    } else {
        if was_armed {
            local::current().preemptible.store(1, Ordering::Release);
        }
        std::hint::spin_loop();
        false
    }
}

/// Bytes of green-thread stack left below the caller's frame (the guard page lies beyond them),
/// or `None` off worker threads. For handlers that recurse deeply and want to stop in time.
pub fn stack_remaining() -> Option<usize> {
    if !local::on_worker() {
        return None;
    }
    let _np = NoPreempt::new();
    let lo = local::current().stack_lo.load(Ordering::Relaxed) as usize;
    let sp: usize;
    // SAFETY: reads the stack pointer; no memory access.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    Some(sp.saturating_sub(lo))
}

/// Whether the caller runs on a synergy worker.
pub fn on_worker() -> bool {
    local::on_worker()
}

/// Id of the worker the caller runs on right now (it may change after any preemption point).
pub fn current_worker() -> Option<usize> {
    if !local::on_worker() {
        return None;
    }
    let _np = NoPreempt::new();
    Some(local::current().shared().id)
}
