//! The application's API inside a handler: classify the request (`feedback_start` /
//! `feedback_finished`), answer it (`send`), give the worker away (`yield_now`), and ask where it
//! runs.

use super::switch::{arm_timer, park_current, rearm_if_timed};
use super::{current, disable_then_current};
use crate::clock;
use crate::local;
use crate::policy::system::Preemptible;
use crate::policy::timer::DISARMED;
use crate::preempt::NoPreempt;
use crate::request::Reply;
use std::sync::atomic::Ordering;

/// Marks the running request as long: arms this worker's timer with quantum = factor × EMA and
/// makes the request preemptible. A no-op off worker threads.
pub fn feedback_start() {
    if !local::on_worker() {
        return;
    }
    let _np = NoPreempt::new();
    let l = current();
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
    let l = current();
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
    let l = current();
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
    // Disable first: a preemption between reading the worker and disabling would migrate this
    // thread and leave `l` naming the old worker (issue 15, item 1).
    let l = disable_then_current();
    let was_armed = l.preemptible.swap(0, Ordering::Relaxed) != 0;
    l.preempt_pending.store(0, Ordering::Relaxed);
    local::enable_raw_reached_zero();
    l.shared().stats.yields.fetch_add(1, Ordering::Relaxed);
    if park_current() {
        rearm_if_timed();
        true
    } else {
        if was_armed {
            current().preemptible.store(1, Ordering::Release);
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
    let lo = current().stack_lo.load(Ordering::Relaxed) as usize;
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
    Some(current().shared().id)
}
