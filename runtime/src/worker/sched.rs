//! The scheduling loop a green thread runs: `recv` selects the next request (Algorithm 5.2, or a
//! the policy's `Scheduler::select`) or resumes a parked thread, `serve` runs the handler around it.

use super::api::feedback_finished;
use super::api::send_from_runtime;
use super::queues::RealQueues;
use super::switch::{after_switch, arm_timer, resume};
use super::{current, panic, PostSwitch, Shared, POOL_KEEP, STATUS_HANDLER_PANICKED, STATUS_NO_REPLY};
use crate::clock;
use crate::green::context::switch;
use crate::green::Context;
use crate::policy::idle::should_park;
use crate::policy::selection::Selected;
use crate::policy::system::Preemptible;
use crate::preempt::NoPreempt;
use crate::request::{Reply, Request};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

/// Entry point of every fresh green thread.
pub(super) extern "C" fn green_main() -> ! {
    after_switch();
    loop {
        let req = recv();
        if admit(&req) {
            serve(req);
        }
    }
}

/// Overload control at the start of a request (`--overload credits`): records its queueing delay
/// and session, and answers it `status::REJECTED` instead of serving it while the AQM rejects.
fn admit(req: &Request) -> bool {
    let l = current();
    // SAFETY: worker thread; the borrow ends before `send`.
    let (id, shared) = unsafe {
        let st = l.state();
        (st.id, st.shared())
    };
    let Some(o) = &shared.overload else { return true };
    // SAFETY: worker thread; short borrow; current is the live thread running this code. The
    // reply grants this session.
    unsafe { (*l.state().current).flow = req.flow };
    if !o.on_start(id, req.flow, req.arrival_ns, clock::now_ns()) {
        return true;
    }
    reject(req, crate::request::status::REJECTED);
    false
}

/// Answers `req` with `status` instead of serving it (the AQM, or the policy's
/// `Placement::Reject`); it counts as completed, and leaves its session.
fn reject(req: &Request, status: u32) {
    let l = current();
    // SAFETY: worker thread; short borrow; current is the live thread running this code. The
    // reply grants the request's session; its preemption count is still the previous request's,
    // and the reject's reply must say 0.
    let shared = unsafe {
        let st = l.state();
        (*st.current).flow = req.flow;
        (*st.current).preemptions = 0;
        st.shared()
    };
    let ws = l.shared();
    ws.stats.rejected.fetch_add(1, Ordering::Relaxed);
    send_from_runtime(Reply::to(req).with_status(status));
    if let Some(c) = shared.coupling() {
        c.finished(req.flow);
    }
    current().shared().stats.completed.fetch_add(1, Ordering::Release);
}

/// Runs one request through the application handler.
pub(super) fn serve(req: Request) {
    {
        let l = current();
        // SAFETY: worker thread; the borrow ends before the handler runs.
        let st = unsafe { l.state() };
        // SAFETY: current is the live thread running this code.
        let t = unsafe { &mut *st.current };
        debug_assert!(!t.long_section, "the previous request's feedback_finished ended its long section");
        t.long = false;
        t.timed = false;
        t.region = st.shared().handler_migratable;
        t.cooperative = false;
        t.preemptions = 0;
        t.replied = false;
        t.started_ns = clock::now_ns();
        t.kind = req.kind;
        t.request_id = req.id;
        l.request_id.store(req.id, Ordering::Relaxed);
        l.request_kind.store(req.kind, Ordering::Relaxed);
        t.arrival_ns = req.arrival_ns;
        l.shared().busy.store(true, Ordering::Relaxed);
        if st.shared().scheduler.preemptible() == Preemptible::Every && t.region {
            // The baselines preempt any request that outlives its quantum (the handler was
            // declared migratable: `Builder::start` refuses them otherwise).
            t.timed = true;
            arm_timer(l, st);
        }
    }
    // What the runtime needs of the request once the handler owns it: its reply's addressing
    // (for the reply the runtime sends itself) and its session.
    let (reply_to, flow) = (Reply::to(&req), req.flow);
    let handler: *const (dyn Fn(Request) + Send + Sync) = &*shared_ref().handler;
    // SAFETY: the handler lives in Shared, which outlives all workers.
    let handled = catch_unwind(AssertUnwindSafe(|| unsafe { (*handler)(req) }));
    // The request's green-thread-local values die with it, in the request's own context (still in
    // its region, if one is open); a panicking destructor counts as the handler's panic.
    let dropped = catch_unwind(AssertUnwindSafe(super::green_local::drop_current_values));
    let outcome = handled.and(dropped);
    // The request is over; this may be a different worker than the one that started it (never
    // one other than where a panic ran: see `panic`).
    feedback_finished();
    panic::release_holds(outcome.is_err());
    let _np = NoPreempt::new();
    let l = current();
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
    let coupling = st.shared().coupling();
    let replied = t.replied;
    // Exactly one reply per request: the runtime answers only where the handler did not.
    if outcome.is_err() {
        ws.stats.handler_panics.fetch_add(1, Ordering::Relaxed);
        drop(_np);
        if !replied {
            send_from_runtime(reply_to.with_status(STATUS_HANDLER_PANICKED));
        }
        current().shared().stats.completed.fetch_add(1, Ordering::Release);
    } else {
        if !replied {
            drop(_np);
            send_from_runtime(reply_to.with_status(STATUS_NO_REPLY));
        }
        current().shared().stats.completed.fetch_add(1, Ordering::Release);
    }
    // Answered either way: the request leaves its session's count.
    if let Some(c) = coupling {
        c.finished(flow);
    }
}

fn worker_id() -> usize {
    // SAFETY: worker thread; short borrow.
    unsafe { current().state() }.id
}

fn shared_ref() -> &'static Shared {
    // SAFETY: worker thread; short borrow.
    unsafe { current().state() }.shared()
}

/// Selects the next request (Algorithm 5.2); resumes a preempted thread directly if that is what
/// comes next, in which case this call never returns to its caller.
pub(super) fn recv() -> Request {
    if shared_ref().scheduler.dispatched() {
        // The unit of work this thread ran ended (or the worker just started): ask for the next.
        // A preempted thread was handed back before this (`after_switch`), so the dispatcher sees
        // it no later than the ask.
        current().shared().asks.fetch_add(1, Ordering::Release);
    }
    let mut idle_rounds = 0u32;
    // When this call last found work (or started): `--idle park` parks after POLL_PERIOD of none.
    let mut idle_since: Option<u64> = None;
    loop {
        if shared_ref().abort.load(Ordering::Relaxed) {
            // Stopping at once (`shutdown_within`'s deadline, or a dropped runtime): leave now,
            // whatever is still queued or parked.
            idle_maintenance();
        }
        // A request that waited and was woken resumes first, on the worker it blocked on.
        if let Some(t) = current().shared().woken.pop() {
            resume(t.0);
        }
        let selected = {
            let l = current();
            // SAFETY: worker thread; the borrow ends at the end of this block.
            let st = unsafe { l.state() };
            let shared = st.shared();
            shared.scheduler.select(&mut RealQueues { st, shared })
        };
        answer_rejects();
        if selected.is_some() && idle_since.is_some() {
            super::idle::found_work();
        }
        match selected {
            Some(Selected::Request(r)) => return r,
            Some(Selected::Resume(t)) => {
                // SAFETY: t was parked by a completed switch and the policy handed it to this
                // worker alone; reading its field races with nothing.
                let (home, pinned) = unsafe { ((*t.0).parked_on, super::switch::resumes_only_where_parked(&*t.0)) };
                if pinned && home != worker_id() {
                    // A cooperative request, or any while the panic guard failed closed: it
                    // resumes where it was parked (first in line there, as it is here).
                    current().shared().stats.pinned_forwards.fetch_add(1, Ordering::Relaxed);
                    super::switch::wake_here(shared_ref(), home, t);
                    if shared_ref().scheduler.dispatched() {
                        // The dispatcher's answer to this worker's ask went elsewhere: ask again.
                        current().shared().asks.fetch_add(1, Ordering::Release);
                    }
                    continue;
                }
                resume(t.0)
            }
            None => {
                idle_rounds += 1;
                if let Some(idle) = shared_ref().idle {
                    let now = clock::now_ns();
                    if should_park(*idle_since.get_or_insert(now), now, idle.poll_period_ns) && super::idle::may_park()
                    {
                        // Trims the pool (and leaves, when stopping) before sleeping.
                        idle_maintenance();
                        super::idle::park();
                        idle_since = None;
                        continue;
                    }
                }
                if idle_rounds.is_multiple_of(64) {
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

/// Answers the arrivals the policy rejected during the last selection, and those a Shinjuku
/// dispatcher turned away.
fn answer_rejects() {
    while let Some(req) = current().shared().dispatcher_rejects.pop() {
        reject(&req, crate::request::status::REJECTED);
    }
    loop {
        // SAFETY: worker thread; the borrow ends before `reject` sends.
        let Some((req, status)) = (unsafe { current().state() }).rejects.pop() else { return };
        reject(&req, status);
    }
}

/// Unmaps pool surplus in one batch, and leaves for the worker's main context when stopping.
fn idle_maintenance() {
    let l = current();
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
