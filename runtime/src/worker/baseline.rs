//! The worker side of the baseline policies (`policy::system`): admitting requests into the
//! central or shortest queue, selecting the next piece of work, and putting a preempted request
//! back where its policy says. Synergy's own path (Algorithm 5.2) is `selection::select` in
//! `worker/mod.rs`; this file is only used with `--policy` other than `synergy`.

use super::sched::RealQueues;
use super::{Returned, Shared, WorkerState, RX_BATCH};
use crate::green::thread::ThreadPtr;
use crate::policy::selection::{Selected, WorkerQueues};
use crate::policy::shinjuku::dispatcher_of;
use crate::policy::system::{darc_runs_long, jbsq_room, shortest_queue, Arrival, Requeue};
use crate::request::Request;
use std::sync::atomic::Ordering;

/// A unit of work in a baseline queue: a new request, or a preempted request's green thread.
pub enum Work {
    New(Request),
    Resume(ThreadPtr),
}

impl Work {
    fn selected(self) -> Selected<Request, ThreadPtr> {
        match self {
            Work::New(r) => Selected::Request(r),
            Work::Resume(t) => Selected::Resume(t),
        }
    }
}

/// One pass of the baseline policy's selection for worker `st.id`.
pub(super) fn select(st: &mut WorkerState, shared: &'static Shared) -> Option<Selected<Request, ThreadPtr>> {
    let spec = &shared.spec;
    let me = &shared.workers[st.id];
    match spec.arrival {
        // d-FCFS: its own RSS queue (and, first, any of its requests that yielded on a lock).
        Arrival::PerWorker => {
            if let Some(w) = me.own.pop_front() {
                return Some(w.selected());
            }
            RealQueues { st, shared }.pop_local().map(Selected::Request)
        }
        Arrival::ShortestQueue => {
            admit(st, shared);
            me.own.pop_front().map(Work::selected)
        }
        // Shinjuku: only what this worker's dispatcher handed it.
        Arrival::Dispatcher => me.mailbox.pop().map(Work::selected),
        Arrival::Central if spec.local_bound > 0 => {
            admit(st, shared);
            // JBSQ: top up this worker's bounded queue from the central one, then serve it.
            for _ in 0..jbsq_room(me.own.len(), spec.local_bound) {
                match shared.central.pop_front() {
                    Some(w) => me.own.push_back(w),
                    None => break,
                }
            }
            me.own.pop_front().map(Work::selected)
        }
        Arrival::Central => {
            admit(st, shared);
            if let Some(w) = shared.central.pop_front() {
                return Some(w.selected());
            }
            if spec.reserves_workers && darc_runs_long(st.id, shared.darc_reserved) {
                return shared.central_long.pop_front().map(Work::selected);
            }
            None
        }
    }
}

/// Takes what has arrived on every worker's transport queue (each polled by one worker at a
/// time) and queues it as the policy says: the central queue (DARC: by class), or the shortest
/// worker queue (JSQ). With a central queue any idle worker admits for all of them, so a request
/// never waits behind the long request of the worker whose RSS queue it arrived on.
fn admit(st: &mut WorkerState, shared: &'static Shared) {
    let n = shared.workers.len();
    for k in 0..n {
        let source = &shared.workers[(st.id + k) % n];
        if source.polling.swap(true, Ordering::Acquire) {
            continue; // another worker is polling it right now
        }
        let buf = &mut st.poll_buf;
        buf.clear();
        shared.transport.poll(source.id, buf, RX_BATCH);
        source.polling.store(false, Ordering::Release);
        if buf.is_empty() {
            continue;
        }
        shared.received(st.id, buf);
        for r in buf.drain(..) {
            match shared.spec.arrival {
                Arrival::ShortestQueue => {
                    let w = shortest_queue(
                        shared.workers.iter().map(|w| w.own.len() + usize::from(w.busy.load(Ordering::Relaxed))),
                    )
                    .unwrap_or(st.id);
                    shared.workers[w].own.push_back(Work::New(r));
                }
                _ if shared.spec.reserves_workers && shared.long_kinds.contains(&r.kind) => {
                    shared.central_long.push_back(Work::New(r))
                }
                _ => shared.central.push_back(Work::New(r)),
            }
        }
    }
}

/// Puts preempted (or yielding) thread `t` of worker `id` where the policy resumes it from.
pub(super) fn requeue(shared: &Shared, id: usize, t: ThreadPtr) -> Result<(), ThreadPtr> {
    match shared.spec.requeue {
        Requeue::WaitQueue => shared.wait_queue.push(t),
        Requeue::CentralTail => {
            shared.central.push_back(Work::Resume(t));
            Ok(())
        }
        Requeue::OwnTail => {
            shared.workers[id].own.push_back(Work::Resume(t));
            Ok(())
        }
        Requeue::Dispatcher => {
            let policy = shared.shinjuku.as_ref().expect("Shinjuku's shared state");
            let d = dispatcher_of(id, policy.dispatchers, shared.workers.len());
            shared.returned[d].push(Returned { worker: id, thread: t }).map_err(|r| r.thread)
        }
    }
}

/// Whether work waits for worker `w` under the policy: what the timer core checks before
/// preempting (the baselines, like Synergy, preempt only when something would run instead).
pub fn work_waiting(shared: &Shared, w: usize) -> bool {
    let ws = &shared.workers[w];
    let transport = || shared.transport.backlog(w) > 0;
    match shared.spec.arrival {
        Arrival::PerWorker => !ws.rx.is_empty() || !ws.own.is_empty() || transport(),
        Arrival::ShortestQueue => !ws.own.is_empty() || transport(),
        Arrival::Central => !ws.own.is_empty() || !shared.central.is_empty() || transport(),
        // Shinjuku's dispatchers decide themselves (`dispatcher.rs`); the timer core does not run.
        Arrival::Dispatcher => false,
    }
}
