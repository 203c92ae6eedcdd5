//! Green-thread switches on a worker: taking a thread from the pool, parking the running one on
//! the wait queue, resuming a parked one, and the bookkeeping every switch finishes with
//! (`after_switch`), which is what lets no other worker run a thread whose stack is still in use.

use super::queues;
use super::{current, BlockedOn, PostSwitch, WorkerLocal, WorkerState};
use crate::clock;
use crate::green::context::{jump, switch};
use crate::green::thread::ThreadPtr;
use crate::green::Context;
use crate::green::GreenThread;
use crate::local;
use crate::policy::timer::DISARMED;
use crate::preempt::entry;
use std::sync::atomic::Ordering;

pub(super) fn set_current(l: &WorkerLocal, st: &mut WorkerState, t: *mut GreenThread) {
    st.current = t;
    // SAFETY: t is a live green thread owned by this worker while current.
    let stack = unsafe { (*t).stack() };
    l.stack_lo.store(stack.bottom() as u64, Ordering::Relaxed);
    l.stack_hi.store(stack.top() as u64, Ordering::Relaxed);
    // SAFETY: as above.
    let (id, kind) = unsafe { ((*t).request_id, (*t).kind) };
    l.request_id.store(id, Ordering::Relaxed);
    l.request_kind.store(kind, Ordering::Relaxed);
    // SAFETY: as above.
    l.save_area.store(unsafe { (*t).save_area() }, Ordering::Relaxed);
    // Only the entry's frame must fit on the green stack (its XSAVE area and its handler live
    // elsewhere), with a margin for a user interrupt's frame and alignment below the red zone.
    let need = (entry::green_frame_bytes() + 64) as u64;
    l.min_preempt_rsp.store(stack.bottom() as u64 + need, Ordering::Relaxed);
}

/// A green thread from the pool, or a new one within the global budget.
pub(super) fn take_thread(st: &mut WorkerState) -> Option<*mut GreenThread> {
    if let Some(mut t) = st.pool.pop() {
        t.reset(st.thread_main);
        return Some(Box::into_raw(t));
    }
    let shared = st.shared();
    if shared.live_threads.fetch_add(1, Ordering::AcqRel) >= shared.params.max_green_threads {
        shared.live_threads.fetch_sub(1, Ordering::AcqRel);
        return None;
    }
    match GreenThread::new(shared.params.stack_size, entry::xsave_size(), st.thread_main) {
        Ok(t) => Some(Box::into_raw(t)),
        Err(_) => {
            shared.live_threads.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }
}

/// Finishes the bookkeeping of the switch that just landed here (see module docs).
pub(super) fn after_switch() {
    let l = current();
    // SAFETY: runs on this worker's thread; the borrow ends before any switch.
    let st = unsafe { l.state() };
    match std::mem::replace(&mut st.post_switch, PostSwitch::Nothing) {
        PostSwitch::Nothing => {}
        PostSwitch::Park(t) => {
            // SAFETY: t stopped running at the switch that landed here and is not yet queued: no
            // one else can touch it.
            let kind = unsafe {
                (*t).queued_ns = crate::clock::now_ns();
                (*t).parked_on = st.id;
                (*t).kind
            };
            // Where the policy says (`queues::requeue`). The wait queue's capacity equals the
            // green-thread budget and each thread is in it at most once, so there is always room: `Ring::push` fails only when really full (it
            // waits out a consumer that claimed the oldest slot but has not released it yet).
            if queues::requeue(st.shared(), st.id, kind, ThreadPtr(t)).is_err() {
                log::error!("wait queue overflow (capacity below the green-thread budget)");
                std::process::abort();
            }
        }
        // SAFETY: t came from Box::into_raw and nothing runs on it any more.
        PostSwitch::Recycle(t) => st.pool.push(unsafe { Box::from_raw(t) }),
        PostSwitch::Block(t, slot) => {
            // SAFETY: t stopped running at the switch that landed here; the slot lives (an Arc
            // the blocked thread holds on its stack) until that thread is woken and returns.
            // From the publication on, a waker may push t to this worker's `woken` ring.
            unsafe { (*t).parked_on = st.id };
            // SAFETY: as above.
            let published = unsafe { (*slot).publish(ThreadPtr(t), st.shared.clone(), st.id) };
            if !published {
                // Notified before it could be published: it is runnable at once, here.
                wake_here(st.shared(), st.id, ThreadPtr(t));
            }
        }
    }
}

/// Makes blocked thread `t` of worker `id` runnable there (and wakes the worker if it parked).
pub(crate) fn wake_here(shared: &super::Shared, id: usize, t: ThreadPtr) {
    let w = &shared.workers[id];
    if w.woken.push(t).is_err() {
        log::error!("worker {id}'s woken ring overflowed (capacity below the green-thread budget)");
        std::process::abort();
    }
    super::idle::wake(w);
}

/// Blocks the running green thread until `slot` is notified, running this worker on a fresh
/// green thread meanwhile; returns true on this same worker once notified (`wake_here`), or false
/// at once if no green thread was available. Preemption must be enabled (depth 0) and the worker
/// disarmed, as for `park_current`.
pub(crate) fn block_current(slot: &(dyn BlockedOn + 'static)) -> bool {
    let l = current();
    debug_assert_eq!(local::disable_depth(), 0, "block_current with preemption disabled");
    debug_assert!(!l.armed(), "block_current while preemptible");
    // SAFETY: worker thread; not used after the switch.
    let st = unsafe { l.state() };
    let Some(fresh) = take_thread(st) else {
        return false;
    };
    let cur = st.current;
    // SAFETY: cur is the live thread running this code.
    unsafe { (*cur).queued_ns = clock::now_ns() };
    l.shared().stats.waits.fetch_add(1, Ordering::Relaxed);
    // SAFETY: as above.
    if unsafe { (*cur).long_section } {
        st.shared().transport.long_request(st.id, false);
    }
    l.shared().deadline.store(DISARMED, Ordering::Release);
    st.post_switch = PostSwitch::Block(cur, slot);
    set_current(l, st, fresh);
    // SAFETY: fresh is a reset thread on its own stack; cur's context is saved by this call and
    // published in the slot only after the switch (after_switch on the fresh thread).
    unsafe { switch(&mut (*cur).ctx, &(*fresh).ctx) };
    // Woken: resumed by this worker, from its `woken` ring.
    after_switch();
    true
}

/// Whether parked thread `t` may resume only on the worker that parked it (`parked_on`): it runs
/// a cooperative request, or the panic guard failed closed (`panic::pinned`).
pub(super) fn resumes_only_where_parked(t: &GreenThread) -> bool {
    t.cooperative || super::panic::pinned()
}

/// Switches from the current (idle) thread straight to preempted thread `t`.
pub(super) fn resume(t: *mut GreenThread) -> ! {
    let l = current();
    // SAFETY: worker thread; the borrow ends with the switch.
    let st = unsafe { l.state() };
    let cur = st.current;
    st.post_switch = PostSwitch::Recycle(cur);
    set_current(l, st, t);
    l.shared().stats.resumes.fetch_add(1, Ordering::Relaxed);
    // SAFETY: as below, t is ours and not running.
    if unsafe { (*t).parked_on } != st.id {
        // SAFETY: as above.
        debug_assert!(!resumes_only_where_parked(unsafe { &*t }), "a pinned thread resumed away from its worker");
        l.shared().stats.migrations.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: as below, t is ours and not running.
    if unsafe { (*t).long_section } {
        st.shared().transport.long_request(st.id, true);
    }
    if let Some(o) = &st.shared().overload {
        // SAFETY: t is ours now (taken from the wait queue) and not running.
        o.on_resume(st.id, unsafe { (*t).queued_ns }, crate::clock::now_ns());
    }
    // SAFETY: t was parked by a completed switch (it is not running anywhere) and we own it now.
    unsafe { switch(&mut (*cur).ctx, &(*t).ctx) };
    unreachable!("a recycled green thread is only ever restarted from green_main");
}

/// Parks the running green thread on the wait queue and continues on a fresh one. Returns (on
/// whatever worker resumes the thread) true, or false at once if no green thread was available.
/// Preemption must be enabled (depth 0) and `preemptible` clear.
pub(super) fn park_current() -> bool {
    let l = current();
    // Preemption is enabled (a switch with it disabled would carry the depth to another thread)
    // and this thread cannot be redirected meanwhile (`preemptible` is clear), so `l` is the
    // worker this code runs on until the switch.
    debug_assert_eq!(local::disable_depth(), 0, "park_current with preemption disabled");
    debug_assert!(!l.armed(), "park_current while preemptible");
    debug_assert_eq!(local::os_locks_held(), 0, "park_current with one of the runtime's OS locks held");
    // SAFETY: worker thread; not used after the switch.
    let st = unsafe { l.state() };
    let Some(fresh) = take_thread(st) else {
        l.shared().stats.preempt_skipped.fetch_add(1, Ordering::Relaxed);
        return false;
    };
    let cur = st.current;
    // SAFETY: cur is the live thread running this code.
    unsafe { (*cur).preemptions += 1 };
    // SAFETY: as above.
    if unsafe { (*cur).long_section } {
        st.shared().transport.long_request(st.id, false);
    }
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

/// Parks the thread the preemption entry stopped (its registers at `frame` on its green stack,
/// its extended state in its area) on the wait queue and continues on a fresh green thread: its
/// context resumes at the entry's resume path (`Context::preempted`), so nothing of this call,
/// which runs on the worker's preemption stack, has to survive; the jump abandons it. Returns
/// (at once) only if no green thread was available. Preemption must be enabled (depth 0) and the
/// word disarmed.
pub(super) fn park_preempted(frame: u64) {
    let l = current();
    debug_assert_eq!(local::disable_depth(), 0, "park_preempted with preemption disabled");
    debug_assert!(!l.armed(), "park_preempted while preemptible");
    debug_assert_eq!(local::os_locks_held(), 0, "park_preempted with one of the runtime's OS locks held");
    // SAFETY: worker thread; not used after the jump.
    let st = unsafe { l.state() };
    let Some(fresh) = take_thread(st) else {
        l.shared().stats.preempt_skipped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let cur = st.current;
    // SAFETY: cur is the live thread the entry stopped; it runs nowhere until it is queued.
    unsafe {
        (*cur).preemptions += 1;
        (*cur).ctx = Context::preempted(frame, entry::resume_address());
    }
    // SAFETY: as above.
    if unsafe { (*cur).long_section } {
        st.shared().transport.long_request(st.id, false);
    }
    l.shared().deadline.store(DISARMED, Ordering::Release);
    st.post_switch = PostSwitch::Park(cur);
    set_current(l, st, fresh);
    // SAFETY: fresh is a reset thread on its own stack; cur's context is complete (above) and it
    // is published on the wait queue only after the jump (after_switch on the fresh thread). The
    // frames left behind are this function's and the entry handler's on the preemption stack,
    // which own nothing that needs dropping.
    unsafe { jump(&(*fresh).ctx) }
}

/// After a park: a timed request (long, or any under a baseline that preempts every request)
/// continues under a fresh quantum on its new worker (thesis §5.1.1.1: the handler calls
/// feedback_start before returning to the application).
pub(super) fn rearm_if_timed() {
    if start_quantum_if_timed() {
        current().arm();
    }
}

/// `rearm_if_timed` but for the arming of the word itself, which it leaves to the caller (the
/// preemption entry arms after XRSTOR): whether the word is to be armed.
pub(super) fn start_quantum_if_timed() -> bool {
    let l = current();
    // SAFETY: worker thread; short borrow.
    let st = unsafe { l.state() };
    // SAFETY: current is live.
    let timed = unsafe { (*st.current).timed };
    timed && start_quantum(l, st)
}

pub(super) fn arm_timer(l: &WorkerLocal, st: &mut WorkerState) {
    if start_quantum(l, st) {
        l.arm();
    }
}

/// A new quantum for the running request: a new arm generation and the timer core's deadline;
/// whether the word is to be armed (not for a cooperative request).
fn start_quantum(l: &WorkerLocal, st: &mut WorkerState) -> bool {
    let factor = f64::from_bits(st.shared().factor_bits.load(Ordering::Relaxed));
    let q = st.shared().scheduler.quantum_ns(st.ema.get(), factor);
    // SAFETY: current is the live thread running this code.
    let cooperative = unsafe { (*st.current).cooperative };
    // A new arming: interrupts sent for an earlier one (still on their way) no longer apply, and
    // neither does one deferred for it. The generation and the arming's kind are published
    // before the deadline that the timer core reads first (Release/Acquire), so it decides on a
    // consistent set.
    l.gens().armed.fetch_add(1, Ordering::AcqRel);
    l.gens().probes_only.store(cooperative, Ordering::Release);
    l.shared().deadline.store(clock::now_ns() + q, Ordering::Release);
    // A cooperative arming leaves the word unarmed: no interrupt may redirect the request.
    !cooperative
}
