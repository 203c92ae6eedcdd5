//! The runtime's queues as the policy API sees them (`policy::api`): `SharedLoad` (lengths, for
//! the timer core and the parking checks) and `RealQueues` (one worker's operations inside
//! `Scheduler::select`), with arrivals placed by `Scheduler::arrive` as they are polled and
//! preempted requests put back where `Scheduler::requeue` says.
//!
//! Which structure backs which queue of the API:
//! - own queue (Q^RX): the worker's lock-free `rx` ring, filled from its transport queue, stolen
//!   from by peers;
//! - inbox: the worker's `own` locked FIFO (any worker may push: JSQ, JBSQ, yields);
//! - central queues: `Shared::central`, one locked FIFO per class;
//! - wait queue: the lock-free `wait_queue` ring;
//! - mailbox: the Shinjuku dispatcher's one-slot hand-off ring.

use super::{Shared, WorkerState, RX_BATCH};
use crate::green::thread::ThreadPtr;
use crate::policy::api::{placement_is_valid, requeue_is_valid, ArrivalInfo, LoadView, Placement, Queues, RequeueTo};
use crate::policy::selection::Selected;
use crate::policy::shinjuku::dispatcher_of;
use crate::queue::Ring;
use crate::request::Request;
use std::sync::atomic::Ordering;

/// A unit of work in an inbox or central queue: a new request, or a preempted request's thread.
pub type Work = Selected<Request, ThreadPtr>;

/// The queues' lengths, read from any thread.
pub(crate) struct SharedLoad<'a>(pub(crate) &'a Shared);

impl LoadView for SharedLoad<'_> {
    fn workers(&self) -> usize {
        self.0.workers.len()
    }
    fn local_len(&self, w: usize) -> usize {
        self.0.workers[w].rx.len()
    }
    fn inbox_len(&self, w: usize) -> usize {
        self.0.workers[w].own.len()
    }
    fn central_len(&self, class: usize) -> usize {
        self.0.central.get(class).map_or(0, |c| c.len())
    }
    fn wait_len(&self) -> usize {
        self.0.wait_queue.len()
    }
    fn busy(&self, w: usize) -> bool {
        self.0.workers[w].busy.load(Ordering::Relaxed)
    }
    fn arrivals_pending(&self, w: usize) -> bool {
        self.0.transport.backlog(w) > 0
    }
}

/// Worker `st.id`'s operations on the real queues.
pub(super) struct RealQueues<'a> {
    pub(super) st: &'a mut WorkerState,
    pub(super) shared: &'static Shared,
}

impl RealQueues<'_> {
    /// Polls worker `source`'s transport queue into `poll_buf` (counted as admitted).
    fn poll(&mut self, source: usize, max: usize) {
        let buf = &mut self.st.poll_buf;
        buf.clear();
        self.shared.transport.poll(source, buf, max);
        if !buf.is_empty() {
            self.shared.received(self.st.id, buf);
        }
    }

    /// Where arrival `r`, polled from worker `source`'s transport queue, waits: an invalid
    /// placement is counted and kept local.
    fn placement(&self, r: &Request, source: usize) -> Placement {
        let a = ArrivalInfo { kind: r.kind, flow: r.flow.into(), source, arrival_ns: r.arrival_ns };
        let s = &*self.shared.scheduler;
        let p = s.arrive(&a, &SharedLoad(self.shared));
        if placement_is_valid(p, self.shared.workers.len(), self.shared.central.len()) {
            p
        } else {
            self.shared.workers[self.st.id].stats.policy_errors.fetch_add(1, Ordering::Relaxed);
            Placement::Local
        }
    }

    /// Places `r` anywhere but locally; returns it back for `Placement::Local`.
    fn place_elsewhere(&mut self, r: Request, p: Placement) -> Option<Request> {
        match p {
            Placement::Local => return Some(r),
            Placement::Worker(w) => self.shared.workers[w].own.push_back(Selected::Request(r)),
            Placement::Central(c) => self.shared.central[c].push_back(Selected::Request(r)),
            // Answered by `recv` once this borrow of the worker's state ends.
            Placement::Reject(status) => self.st.rejects.push((r, status)),
        }
        None
    }
}

impl LoadView for RealQueues<'_> {
    fn workers(&self) -> usize {
        SharedLoad(self.shared).workers()
    }
    fn local_len(&self, w: usize) -> usize {
        SharedLoad(self.shared).local_len(w)
    }
    fn inbox_len(&self, w: usize) -> usize {
        SharedLoad(self.shared).inbox_len(w)
    }
    fn central_len(&self, class: usize) -> usize {
        SharedLoad(self.shared).central_len(class)
    }
    fn wait_len(&self) -> usize {
        SharedLoad(self.shared).wait_len()
    }
    fn busy(&self, w: usize) -> bool {
        SharedLoad(self.shared).busy(w)
    }
    fn arrivals_pending(&self, w: usize) -> bool {
        SharedLoad(self.shared).arrivals_pending(w)
    }
}

impl Queues<Request, ThreadPtr> for RealQueues<'_> {
    fn me(&self) -> usize {
        self.st.id
    }

    fn check_wait_queue(&self) -> bool {
        self.shared.check_wait_queue.load(Ordering::Relaxed)
    }

    fn pop_local(&mut self) -> Option<Request> {
        let me = &self.shared.workers[self.st.id];
        if let Some(r) = me.rx.pop() {
            return Some(r);
        }
        self.poll(self.st.id, RX_BATCH.min(me.rx.capacity()));
        let mut first = None;
        let mut buf = std::mem::take(&mut self.st.poll_buf);
        for r in buf.drain(..) {
            let p = self.placement(&r, self.st.id);
            if let Some(r) = self.place_elsewhere(r, p) {
                match first {
                    None => first = Some(r),
                    Some(_) => push_until_room(&me.rx, r),
                }
            }
        }
        self.st.poll_buf = buf;
        first
    }

    fn admit_all(&mut self) {
        let n = self.shared.workers.len();
        for k in 0..n {
            let source = &self.shared.workers[(self.st.id + k) % n];
            if source.polling.swap(true, Ordering::Acquire) {
                continue; // another worker is polling it right now
            }
            self.poll(source.id, RX_BATCH);
            source.polling.store(false, Ordering::Release);
            let mut buf = std::mem::take(&mut self.st.poll_buf);
            for r in buf.drain(..) {
                let p = self.placement(&r, source.id);
                if let Some(r) = self.place_elsewhere(r, p) {
                    // Local to another worker's ring, which its owner and stealers consume: when
                    // full, its inbox takes the request instead of this worker waiting for room.
                    if let Err(r) = source.rx.push(r) {
                        source.own.push_back(Selected::Request(r));
                    }
                }
            }
            self.st.poll_buf = buf;
        }
    }

    fn pop_inbox(&mut self) -> Option<Work> {
        self.shared.workers[self.st.id].own.pop_front()
    }

    fn pop_central(&mut self, class: usize) -> Option<Work> {
        self.shared.central.get(class)?.pop_front()
    }

    fn refill_inbox(&mut self, class: usize, count: usize) -> usize {
        let Some(central) = self.shared.central.get(class) else { return 0 };
        let me = &self.shared.workers[self.st.id];
        let mut moved = 0;
        while moved < count {
            let Some(w) = central.pop_front() else { break };
            me.own.push_back(w);
            moved += 1;
        }
        moved
    }

    fn pop_wait(&mut self) -> Option<ThreadPtr> {
        self.shared.wait_queue.pop()
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

    fn pop_mailbox(&mut self) -> Option<Work> {
        self.shared.workers[self.st.id].mailbox.pop()
    }
}

/// Only this worker fills its own ring from its own poll or steal, and it was empty a moment ago
/// (or the stolen batch is at most half a peer's ring), so room appears at once; the loop only
/// guards against a misconfigured capacity.
pub(super) fn push_until_room(ring: &Ring<Request>, mut r: Request) {
    while let Err(back) = ring.push(r) {
        r = back;
        std::hint::spin_loop();
    }
}

/// Puts preempted (or yielding) thread `t`, of a request of type `kind`, of worker `id` where the
/// policy resumes it from. An invalid answer from the policy is counted and uses the wait queue.
pub(super) fn requeue(shared: &Shared, id: usize, kind: u32, t: ThreadPtr) -> Result<(), ThreadPtr> {
    let s = &*shared.scheduler;
    let mut to = s.requeue(id, kind);
    if !requeue_is_valid(to, shared.workers.len(), shared.central.len(), shared.shinjuku.is_some()) {
        shared.workers[id].stats.policy_errors.fetch_add(1, Ordering::Relaxed);
        to = RequeueTo::WaitQueue;
    }
    match to {
        RequeueTo::WaitQueue => shared.wait_queue.push(t),
        RequeueTo::Worker(w) => {
            shared.workers[w].own.push_back(Selected::Resume(t));
            Ok(())
        }
        RequeueTo::Central(c) => {
            shared.central[c].push_back(Selected::Resume(t));
            Ok(())
        }
        RequeueTo::Dispatcher => {
            let policy = shared.shinjuku.as_ref().expect("valid: Shinjuku's shared state exists");
            let d = dispatcher_of(id, policy.dispatchers, shared.workers.len());
            shared.returned[d].push(super::Returned { worker: id, thread: t }).map_err(|r| r.thread)
        }
    }
}

/// Whether work waits for worker `w` under the policy: what the timer core checks before
/// preempting and an idle worker before parking.
pub fn work_waiting(shared: &Shared, w: usize) -> bool {
    shared.scheduler.work_waiting(w, &SharedLoad(shared))
}
