//! The application's API inside a handler: classify the request (`feedback_start` /
//! `feedback_finished`), answer it (`send`), give the worker away (`yield_now`), and ask where it
//! runs.

use super::switch::{arm_timer, block_current, park_current, rearm_if_timed};
use super::{current, disable_then_current};
use crate::clock;
use crate::green::GreenThread;
use crate::local;
use crate::policy::system::Preemptible;
use crate::policy::timer::DISARMED;
use crate::preempt::NoPreempt;
use crate::request::Reply;
use std::sync::atomic::Ordering;

/// Marks the running request as long and opens a *preemptible region*: arms this worker's timer
/// with quantum = factor × EMA, so that the timer core may preempt the request once the quantum
/// expired and work waits, and lets [`yield_now`] (and a contended [`sync::Mutex`](crate::sync::Mutex))
/// park it. The region lasts until [`feedback_finished`] or the end of the handler. A no-op off
/// worker threads.
///
/// # Safety
/// Inside the region the request's code may be moved to another OS thread at any instruction
/// (a preemption parks it on the wait queue; whichever worker is free resumes it). Until the
/// region ends the caller must therefore not:
/// * hold a reference into thread-local storage (`thread_local!` values, `std::thread::current()`,
///   anything built on them: `RandomState::new`, a thread-local RNG) or call libc functions that
///   keep per-thread state (errno, `strtok`, stdio's locks: `println!`);
/// * hold an OS lock (a `std::sync::Mutex`/`RwLock` guard, a `Stdout` lock, a C library's
///   pthread mutex): a worker that runs the same lock's next taker on the same OS thread
///   deadlocks, and the unlock may come from a thread that does not own the lock;
/// * initialize a lazily made static (`OnceLock::get_or_init`, `LazyLock`, `Once`): while it
///   initializes it is such a lock, and the next request needing it blocks the worker for good;
///   make it before the runtime starts, or inside `without_preemption`;
/// * hold a `!Send` value whose other owners stay on the OS thread (an `Rc` also kept in a
///   thread-local, a guard of a thread-affine resource).
///
/// All of this is allowed inside [`preempt::without_preemption`](crate::preempt::without_preemption),
/// which pins the code to its worker. Request state belongs in local variables, in values moved
/// into the handler (`Send + Sync` by the handler's bound), or in [`GreenLocal`](crate::GreenLocal)s,
/// which migrate with the request. Use [`sync::Mutex`](crate::sync::Mutex) for locks.
///
/// # Examples
/// ```no_run
/// fn handle(req: synergy::Request) {
///     let n = req.service_ns;
///     if n > 10_000 {
///         // SAFETY: the loop below keeps its state in locals and touches no thread-local
///         // storage or OS lock; the one print is pinned by `without_preemption`.
///         unsafe { synergy::feedback_start() };
///         let mut acc = 0u64;
///         for i in 0..n {
///             acc = acc.wrapping_mul(31).wrapping_add(i);
///         }
///         synergy::preempt::without_preemption(|| println!("long request done: {acc}"));
///         synergy::feedback_finished();
///     }
///     synergy::send(synergy::Reply::to(&req)).unwrap();
/// }
/// ```
pub unsafe fn feedback_start() {
    with_running_request(|l, st, t| {
        t.long = true;
        t.region = true;
        open_long_section(st, t);
        match st.shared().scheduler.preemptible() {
            Preemptible::MarkedLong => {
                t.timed = true;
                arm_timer(l, st);
            }
            // Every: armed since the request started; Never: nothing is preempted.
            Preemptible::Every | Preemptible::Never => {}
        }
    })
}

/// Marks the running request as long, in safe code: the *cooperative* tier. Like
/// [`feedback_start`] it arms this worker's timer with the dynamic quantum, but the request is
/// never interrupted asynchronously and never changes OS thread: once its quantum expired and
/// work waits, the timer core asks it to yield (a compiler-interrupt request, whatever
/// `--preempt` says), it yields at the next probe of its own `#[synergy::preemptible]` code (a
/// function entry or loop back-edge: points its author can see, like an `.await`), and it
/// resumes on this same worker once the policy selects it again. Code without probes runs to
/// its end. So only the request's own code between two probes is interleaved with other
/// requests on this OS thread: thread-local storage, `!Send` values and references into either
/// stay valid; at worst a `RefCell` held across a probe and borrowed by another request panics,
/// and a `std::sync::Mutex` held across a probe and wanted by another request on the same worker
/// deadlocks it (hold neither across a probe, as across an `.await`).
///
/// The price against [`feedback_start`]: a request is parked only at probes (latency bounded by
/// the gap between probes, not by the interrupt), and a parked one waits for its own worker
/// instead of the first free one (docs/benchmarks.md measures both tiers' tails). A no-op off
/// worker threads; ended by [`feedback_finished`] or the end of the handler.
///
/// # Examples
/// ```no_run
/// #[synergy::preemptible]
/// fn scan(items: &[u64]) -> u64 {
///     items.iter().fold(0, |acc, x| acc ^ x.rotate_left(7)) // a probe at the loop's back-edge
/// }
///
/// fn handle(req: synergy::Request) {
///     synergy::feedback_start_cooperative();
///     let sum = scan(&[1, 2, 3]);
///     synergy::feedback_finished();
///     let _ = synergy::send(synergy::Reply::to(&req).with_value(sum));
/// }
/// ```
pub fn feedback_start_cooperative() {
    with_running_request(|l, st, t| {
        t.long = true;
        if t.region {
            // Already asynchronously preemptible (`migratable_handler`): that tier stays in force.
            return;
        }
        t.cooperative = true;
        open_long_section(st, t);
        if st.shared().scheduler.preemptible() != Preemptible::Never {
            t.timed = true;
            arm_timer(l, st);
        }
    })
}

/// Tells the transport, once per long section, that this worker now runs a long request.
fn open_long_section(st: &super::WorkerState, t: &mut GreenThread) {
    if !t.long_section {
        t.long_section = true;
        st.shared().transport.long_request(st.id, true);
    }
}

/// Ends the long section and its preemptible region: disarms the timer; the rest of the request
/// runs unpreempted, on this OS thread (unless the whole handler was declared migratable with
/// [`Builder::migratable_handler`](crate::Builder::migratable_handler)).
pub fn feedback_finished() {
    with_running_request(|l, st, t| {
        t.region = st.shared().handler_migratable;
        if t.long_section {
            t.long_section = false;
            st.shared().transport.long_request(st.id, false);
        }
        l.disarm();
        l.shared().deadline.store(DISARMED, Ordering::Release);
    })
}

/// Runs `f` on this worker, its state and its running green thread, with preemption disabled (so
/// the three stay this worker's); does nothing off the workers.
fn with_running_request(f: impl FnOnce(&super::WorkerLocal, &mut super::WorkerState, &mut GreenThread)) {
    if !local::on_worker() {
        return;
    }
    let _np = NoPreempt::new();
    let l = current();
    // SAFETY: worker thread; the borrow ends with `f`, which cannot switch (preemption is off).
    let st = unsafe { l.state() };
    // SAFETY: current is the live green thread running this code; `st` reaches it only through
    // this raw pointer, so the two borrows do not overlap.
    let t = unsafe { &mut *st.current };
    f(l, st, t)
}

/// Error of `send` called off a worker thread.
/// Why [`send`] refused a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// `send` was called outside a synergy worker.
    NotOnWorker,
    /// The running request was already answered: every request gets exactly one reply
    /// (issue 39, item 5), so a second one is refused and never reaches the client.
    AlreadyReplied,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::NotOnWorker => "synergy::send called outside a synergy worker",
            SendError::AlreadyReplied => "synergy::send: this request was already answered (one reply per request)",
        })
    }
}

impl std::error::Error for SendError {}

/// Sends `reply` on the TX queue of the worker running this request now: the request's one
/// reply. A second call for the same request returns `SendError::AlreadyReplied` and sends
/// nothing. A handler that returns without replying is answered `STATUS_NO_REPLY` by the
/// runtime; one that panics before replying, `STATUS_HANDLER_PANICKED` (after replying, nothing
/// more is sent).
pub fn send(reply: Reply) -> Result<(), SendError> {
    if !local::on_worker() {
        return Err(SendError::NotOnWorker);
    }
    let _np = NoPreempt::new();
    let l = current();
    // SAFETY: worker thread; short borrow; current is the live thread running this code.
    let t = unsafe { &mut *l.state().current };
    if std::mem::replace(&mut t.replied, true) {
        return Err(SendError::AlreadyReplied);
    }
    send_from_runtime(reply);
    Ok(())
}

/// Sends `reply` for the running request without the one-reply check: the runtime's own
/// replies (rejects, `STATUS_NO_REPLY`, `STATUS_HANDLER_PANICKED`), which it sends only where the
/// handler did not. Worker thread only; it disables preemption itself.
pub(crate) fn send_from_runtime(mut reply: Reply) {
    let _np = NoPreempt::new();
    let l = current();
    // SAFETY: worker thread; short borrow.
    let st = unsafe { l.state() };
    reply.done_ns = clock::now_ns();
    reply.worker = st.id as u32;
    // SAFETY: current is live.
    reply.preemptions = unsafe { (*st.current).preemptions };
    let shared = st.shared();
    if let Some(o) = &shared.overload {
        let credits = o.credits_per_session();
        reply.credits = Some(credits);
        if let Some(c) = &o.coupling {
            // SAFETY: current is live.
            c.granted(unsafe { (*st.current).flow }, credits);
        }
    }
    shared.transport.reply(st.id, reply);
}

/// Lets other work run: inside a preemptible region (see [`feedback_start`]) parks the current
/// green thread on the wait queue (it resumes like a preempted one, possibly on another OS
/// thread). Outside one, off worker threads, or with preemption disabled, it only yields the CPU
/// or spins, so safe code never migrates. Returns true if the green thread really parked.
pub fn yield_now() -> bool {
    if !local::on_worker() {
        std::thread::yield_now();
        return false;
    }
    if local::disable_depth() != 0 || std::thread::panicking() {
        // A panicking green thread never parks voluntarily (a `Drop` run by the unwinding that
        // yields would migrate mid-unwind; issue 39, item 2): it spins instead.
        std::hint::spin_loop();
        return false;
    }
    // Disable first: a preemption between reading the worker and disabling would migrate this
    // thread and leave `l` naming the old worker (issue 15, item 1).
    let l = disable_then_current();
    // SAFETY: worker thread; short borrow; current is live.
    if !unsafe { (*l.state().current).region } {
        // No deferral can be due: this code runs outside a preemptible region, never armed.
        local::enable_raw_deferred_due();
        std::hint::spin_loop();
        return false;
    }
    let was_armed = l.disarm();
    // Disarmed: the word cannot be 0, so no deferral is due.
    local::enable_raw_deferred_due();
    l.shared().stats.yields.fetch_add(1, Ordering::Relaxed);
    if park_current() {
        rearm_if_timed();
        true
    } else {
        if was_armed {
            current().arm();
        }
        std::hint::spin_loop();
        false
    }
}

/// Blocks the running request's green thread on `slot` until it is notified, if it can: on a
/// worker, preemption enabled, not panicking, and the policy not a dispatched one (Shinjuku's
/// dispatcher hands each worker its units of work). Returns true once woken (on this same
/// worker), false at once if it cannot block (the caller then waits on the OS thread).
pub(crate) fn block_on(slot: &(dyn super::BlockedOn + 'static)) -> bool {
    if !local::on_worker() || local::disable_depth() != 0 || std::thread::panicking() {
        return false;
    }
    let dispatched = {
        let _np = NoPreempt::new();
        // SAFETY: worker thread; short borrow, preemption disabled.
        unsafe { current().state() }.shared().scheduler.dispatched()
    };
    if dispatched {
        return false;
    }
    // Disable first: a preemption between reading the worker and disabling would migrate this
    // thread and leave `l` naming the old worker (as in `yield_now`).
    let l = disable_then_current();
    let was_armed = l.disarm();
    // Disarmed: the word cannot be 0, so no deferral is due.
    local::enable_raw_deferred_due();
    if block_current(slot) {
        rearm_if_timed();
        true
    } else {
        if was_armed {
            current().arm();
        }
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
    let lo = current().stack_lo.load(Ordering::Relaxed) as usize;
    let sp: usize;
    // SAFETY: reads the stack pointer; no memory access.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    Some(sp.saturating_sub(lo))
}

/// How often the running request has been preempted or has yielded so far (what its reply will
/// carry as `Reply::preemptions`), or `None` off worker threads.
pub fn request_preemptions() -> Option<u32> {
    if !local::on_worker() {
        return None;
    }
    let _np = NoPreempt::new();
    // SAFETY: worker thread, preemption disabled; short borrow of the live current thread.
    Some(unsafe { (*current().state().current).preemptions })
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
    Some(current().shared().id)
}
