//! Idle workers that park (`--idle park`) and the wake-ups that bring them back: the worker's
//! side (`park`), the wakers' (`wake`, `wake_parked`), and the timer core's core grants
//! (`CoreGrants`), whose decisions are `policy::idle`. The futex protocol is in `park.rs`.

use super::{current, queues, Shared, SharedLoad, WorkerShared};
use crate::clock;
use crate::coresync::Verdict;
use crate::policy::idle::{Grants, WorkerView};
use crate::stats::TimerStats;
use std::sync::atomic::Ordering;

/// Parks the current worker until a waker wakes it, unless work or a stop is already there.
pub(super) fn park() {
    let l = current();
    let ws = l.shared();
    // SAFETY: worker thread; a short borrow with no green-thread switch in it.
    let (id, shared) = unsafe {
        let st = l.state();
        (st.id, st.shared())
    };
    let coupling = shared.coupling();
    // The handshake and why it loses no wake-up: `park::ParkGate`.
    let seen = ws.park.announce();
    // Counted parked now: another worker may take the parking turn.
    if let Some(c) = coupling {
        c.parked(id);
    }
    // After announcing: whatever arrives from now on, the timer core sees with `parked` set.
    if stopping(shared) || queues::work_waiting(shared, id) || !shared.wait_queue.is_empty() || !ws.woken.is_empty() {
        // If a waker cleared `parked` meanwhile, its bump of the sequence is simply not waited for.
        ws.park.retract();
        // It may have taken the arrival that would have woken a sleeping timer core.
        if let Some(w) = &shared.timer_wake {
            w.worker_unparked();
        }
        if let Some(c) = coupling {
            c.found_work(id);
        }
        return;
    }
    ws.stats.parks.fetch_add(1, Ordering::Relaxed);
    let t0 = clock::now_ns();
    ws.park.wait(seen);
    let t1 = clock::now_ns();
    if let Some(c) = coupling {
        c.woken(id);
    }
    ws.stats.parked_ns.fetch_add(t1.saturating_sub(t0), Ordering::Relaxed);
    ws.stats.wakeups.fetch_add(1, Ordering::Relaxed);
    let sent = ws.wake_sent_ns.load(Ordering::Acquire);
    ws.stats.wake_latency_ns.fetch_add(t1.saturating_sub(sent), Ordering::Relaxed);
}

/// Whether the current worker, idle for POLL_PERIOD, may park: always, unless CoreSync's
/// coupling is on and its gate says to keep polling (`coresync`).
pub(super) fn may_park() -> bool {
    let l = current();
    // SAFETY: worker thread; a short borrow with no green-thread switch in it.
    let (id, shared) = unsafe {
        let st = l.state();
        (st.id, st.shared())
    };
    let Some(c) = shared.coupling() else { return true };
    let allocated = shared.workers.iter().filter(|w| !w.park.is_parked()).count();
    c.gate(id, allocated) == Verdict::Park
}

/// The current worker, idle a moment ago, found work: a parking attempt it began is over.
pub(super) fn found_work() {
    let l = current();
    // SAFETY: as in `may_park`.
    let (id, shared) = unsafe {
        let st = l.state();
        (st.id, st.shared())
    };
    if let Some(c) = shared.coupling() {
        c.found_work(id);
    }
}

/// The workers are about to leave: aborted, or shutting down with no request to come (a worker
/// may park while a shutdown drains, but not once nothing can arrive to wake it).
fn stopping(shared: &Shared) -> bool {
    shared.abort.load(Ordering::SeqCst) || (shared.shutdown.load(Ordering::SeqCst) && shared.transport.finished())
}

/// Wakes `w` if it is parked; true if this call did (one wake-up per park).
pub(crate) fn wake(w: &WorkerShared) -> bool {
    if !w.park.claim() {
        return false;
    }
    // Stamped before the wake so the woken worker reads it.
    w.wake_sent_ns.store(clock::now_ns(), Ordering::Release);
    w.park.wake_claimed();
    true
}

/// Wakes every parked worker: the timer core once a shutdown's transport is finished, and an
/// abort directly (after storing its flag, SeqCst).
pub fn wake_parked(shared: &Shared) {
    for w in shared.workers.iter() {
        wake(w);
    }
}

/// Whether the timer core may sleep (`timer_sleep`): every worker parked and nothing queued in
/// the runtime that a worker would take, so that only an arrival can create work.
pub fn all_parked_and_nothing_queued(shared: &Shared) -> bool {
    shared.workers.iter().all(|w| w.park.is_parked() && w.rx.is_empty() && w.own.is_empty())
        && shared.wait_queue.is_empty()
        && shared.central.iter().all(|c| c.is_empty())
}

/// How often the timer core looks at the queues for its grants: each look costs a transport
/// backlog query (a system call for kernel UDP) per parked worker.
const LOOK_EVERY_NS: u64 = 1_000;

/// The timer core's core-grant state (`--idle park`).
pub struct CoreGrants {
    grants: Grants,
    /// The delay threshold (`IdleParams::wake_delay_ns`).
    wake_delay_ns: u64,
    views: Vec<WorkerView>,
    last_look_ns: u64,
}

impl CoreGrants {
    pub fn new(workers: usize, wake_delay_ns: u64) -> CoreGrants {
        CoreGrants {
            grants: Grants::new(workers),
            wake_delay_ns,
            views: vec![WorkerView::default(); workers],
            last_look_ns: 0,
        }
    }

    /// One look (at most every `LOOK_EVERY_NS`): wakes the parked worker `policy::idle` picks.
    pub fn tick(&mut self, shared: &Shared, now: u64, stats: &TimerStats) {
        if now.saturating_sub(self.last_look_ns) < LOOK_EVERY_NS {
            return;
        }
        self.last_look_ns = now;
        if stopping(shared) {
            // The transport finished during a shutdown: the workers leave once drained.
            wake_parked(shared);
            return;
        }
        for (v, w) in self.views.iter_mut().zip(shared.workers.iter()) {
            v.parked = w.park.is_parked();
            // The transport is asked only for parked workers (a running worker polls its own).
            v.waiting = if v.parked { queues::work_waiting(shared, w.id) } else { !w.rx.is_empty() };
            v.shareable = shared.scheduler.others_may_take(w.id, &SharedLoad(shared));
        }
        if let Some(w) = self.grants.tick(now, &self.views, !shared.wait_queue.is_empty(), self.wake_delay_ns) {
            if wake(&shared.workers[w]) {
                stats.grants.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
