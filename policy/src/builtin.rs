//! The seven systems of the thesis's comparison (`system::SchedPolicy`) as implementations of
//! the policy API (`api::Scheduler`). Each is small: the decisions that need code (Algorithm 5.2,
//! JSQ, JBSQ, DARC's reservation) are the plain functions of `selection` and `system`.

use crate::api::{select_as_synergy, ArrivalInfo, LoadView, Placement, Queues, RequeueTo, Scheduler};
use crate::quantum;
use crate::selection::Selected;
use crate::system::{
    darc_runs_long, jbsq_room, shortest_queue, Preemptible, SchedPolicy, CONCORD_LOCAL_BOUND, SHINJUKU_QUANTUM_NS,
    TQ_QUANTUM_NS,
};

/// What the built-in systems take from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltinParams {
    /// Synergy's STEAL_THRESHOLD.
    pub steal_threshold: usize,
    /// Shinjuku's quantum (`--shinjuku-quantum-us`; its paper's 5 µs by default).
    pub shinjuku_quantum_ns: u64,
    /// DARC: request kinds classified long at arrival, and the workers kept for short ones.
    pub long_kinds: Vec<u32>,
    /// Workers kept free of long requests for short ones (DARC).
    pub darc_reserved: usize,
}

impl Default for BuiltinParams {
    fn default() -> Self {
        BuiltinParams {
            steal_threshold: 0,
            shinjuku_quantum_ns: SHINJUKU_QUANTUM_NS,
            long_kinds: vec![1],
            darc_reserved: 1,
        }
    }
}

/// The built-in system `policy` as a scheduler.
pub fn builtin<R: 'static, T: 'static>(policy: SchedPolicy, p: &BuiltinParams) -> Box<dyn Scheduler<R, T>> {
    match policy {
        SchedPolicy::Synergy => Box::new(Synergy { steal_threshold: p.steal_threshold }),
        SchedPolicy::Cfcfs => Box::new(Cfcfs),
        SchedPolicy::Dfcfs => Box::new(Dfcfs),
        SchedPolicy::Shinjuku => Box::new(Shinjuku { quantum_ns: p.shinjuku_quantum_ns }),
        SchedPolicy::Concord => Box::new(Concord { quantum_ns: SHINJUKU_QUANTUM_NS, local_bound: CONCORD_LOCAL_BOUND }),
        SchedPolicy::Tq => Box::new(TinyQuanta { quantum_ns: TQ_QUANTUM_NS }),
        SchedPolicy::Darc => Box::new(Darc { long_kinds: p.long_kinds.clone(), reserved: p.darc_reserved }),
    }
}

/// Work for worker `w` in its own queue, its inbox or its receive queue.
fn own_work(w: usize, load: &dyn LoadView) -> bool {
    load.local_len(w) > 0 || load.inbox_len(w) > 0 || load.arrivals_pending(w)
}

/// Work for worker `w` in its inbox, the (one) central queue or its receive queue.
fn central_work(w: usize, load: &dyn LoadView) -> bool {
    load.inbox_len(w) > 0 || load.central_len(0) > 0 || load.arrivals_pending(w)
}

/// Synergy (thesis ch. 5): requests stay on the worker whose receive queue they arrived on;
/// Algorithm 5.2 selects; long requests the application marks are preempted after an adaptive
/// quantum only while work waits; preempted requests go to the global wait queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synergy {
    /// A worker's queue longer than this may be stolen from.
    pub steal_threshold: usize,
}

impl<R, T> Scheduler<R, T> for Synergy {
    fn name(&self) -> &str {
        "synergy"
    }
    fn arrive(&self, _a: &ArrivalInfo, _load: &dyn LoadView) -> Placement {
        Placement::Local
    }
    fn select(&self, q: &mut dyn Queues<R, T>) -> Option<Selected<R, T>> {
        select_as_synergy(q, self.steal_threshold)
    }
    fn preemptible(&self) -> Preemptible {
        Preemptible::MarkedLong
    }
    fn quantum_ns(&self, short_ema_ns: u64, factor: f64) -> u64 {
        quantum::quantum_ns(short_ema_ns, factor)
    }
    fn work_waiting(&self, w: usize, load: &dyn LoadView) -> bool {
        own_work(w, load)
    }
    fn others_may_take(&self, w: usize, load: &dyn LoadView) -> bool {
        load.local_len(w) > self.steal_threshold
    }
    fn requeue(&self, _w: usize, _kind: u32) -> RequeueTo {
        RequeueTo::WaitQueue
    }
}

/// c-FCFS: one central FIFO every idle worker takes from; run to completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cfcfs;

impl<R, T> Scheduler<R, T> for Cfcfs {
    fn name(&self) -> &str {
        "cfcfs"
    }
    fn central_queues(&self) -> usize {
        1
    }
    fn arrive(&self, _a: &ArrivalInfo, _load: &dyn LoadView) -> Placement {
        Placement::Central(0)
    }
    fn select(&self, q: &mut dyn Queues<R, T>) -> Option<Selected<R, T>> {
        q.admit_all();
        q.pop_inbox().or_else(|| q.pop_central(0))
    }
    fn preemptible(&self) -> Preemptible {
        Preemptible::Never
    }
    fn quantum_ns(&self, _short_ema_ns: u64, _factor: f64) -> u64 {
        u64::MAX
    }
    fn work_waiting(&self, w: usize, load: &dyn LoadView) -> bool {
        central_work(w, load)
    }
    fn others_may_take(&self, _w: usize, load: &dyn LoadView) -> bool {
        load.central_len(0) > 0
    }
    fn requeue(&self, _w: usize, _kind: u32) -> RequeueTo {
        RequeueTo::Central(0)
    }
}

/// d-FCFS: each worker serves its own receive queue to completion; no stealing. A request that
/// yields (a contended lock) goes back to its worker's inbox, which that worker serves first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dfcfs;

impl<R, T> Scheduler<R, T> for Dfcfs {
    fn name(&self) -> &str {
        "dfcfs"
    }
    fn arrive(&self, _a: &ArrivalInfo, _load: &dyn LoadView) -> Placement {
        Placement::Local
    }
    fn select(&self, q: &mut dyn Queues<R, T>) -> Option<Selected<R, T>> {
        q.pop_inbox().or_else(|| q.pop_local().map(Selected::Request))
    }
    fn preemptible(&self) -> Preemptible {
        Preemptible::Never
    }
    fn quantum_ns(&self, _short_ema_ns: u64, _factor: f64) -> u64 {
        u64::MAX
    }
    fn work_waiting(&self, w: usize, load: &dyn LoadView) -> bool {
        own_work(w, load)
    }
    fn others_may_take(&self, _w: usize, _load: &dyn LoadView) -> bool {
        false
    }
    fn requeue(&self, w: usize, _kind: u32) -> RequeueTo {
        RequeueTo::Worker(w)
    }
}

/// Shinjuku: its dispatcher threads own the arrivals (`policy::shinjuku` decides there) and hand
/// each worker one unit of work through its mailbox; every request is preemptible after a fixed
/// quantum; preempted requests go back to the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shinjuku {
    /// Time after which a request is preempted while work waits.
    pub quantum_ns: u64,
}

impl<R, T> Scheduler<R, T> for Shinjuku {
    fn name(&self) -> &str {
        "shinjuku"
    }
    fn dispatched(&self) -> bool {
        true
    }
    fn arrive(&self, _a: &ArrivalInfo, _load: &dyn LoadView) -> Placement {
        // Never called: the dispatchers poll the receive queues.
        Placement::Local
    }
    fn select(&self, q: &mut dyn Queues<R, T>) -> Option<Selected<R, T>> {
        q.pop_mailbox()
    }
    fn preemptible(&self) -> Preemptible {
        Preemptible::Every
    }
    fn quantum_ns(&self, _short_ema_ns: u64, _factor: f64) -> u64 {
        self.quantum_ns
    }
    fn work_waiting(&self, _w: usize, _load: &dyn LoadView) -> bool {
        // The dispatchers preempt by timestamp themselves; no timer core runs.
        false
    }
    fn others_may_take(&self, _w: usize, _load: &dyn LoadView) -> bool {
        false
    }
    fn requeue(&self, _w: usize, _kind: u32) -> RequeueTo {
        RequeueTo::Dispatcher
    }
}

/// Concord: a central queue feeding bounded per-worker queues (JBSQ), a fixed quantum for every
/// request, preempted requests to the central queue's tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concord {
    /// Time after which a request is preempted while work waits.
    pub quantum_ns: u64,
    /// Requests a worker's local queue holds at most (JBSQ's bound); the rest wait centrally.
    pub local_bound: usize,
}

impl<R, T> Scheduler<R, T> for Concord {
    fn name(&self) -> &str {
        "concord"
    }
    fn central_queues(&self) -> usize {
        1
    }
    fn arrive(&self, _a: &ArrivalInfo, _load: &dyn LoadView) -> Placement {
        Placement::Central(0)
    }
    fn select(&self, q: &mut dyn Queues<R, T>) -> Option<Selected<R, T>> {
        q.admit_all();
        let room = jbsq_room(q.inbox_len(q.me()), self.local_bound);
        q.refill_inbox(0, room);
        q.pop_inbox()
    }
    fn preemptible(&self) -> Preemptible {
        Preemptible::Every
    }
    fn quantum_ns(&self, _short_ema_ns: u64, _factor: f64) -> u64 {
        self.quantum_ns
    }
    fn work_waiting(&self, w: usize, load: &dyn LoadView) -> bool {
        central_work(w, load)
    }
    fn others_may_take(&self, _w: usize, load: &dyn LoadView) -> bool {
        load.central_len(0) > 0
    }
    fn requeue(&self, _w: usize, _kind: u32) -> RequeueTo {
        RequeueTo::Central(0)
    }
}

/// Tiny Quanta: join-the-shortest-queue at arrival (busy workers counted one longer), then
/// processor sharing on each worker with a fixed quantum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TinyQuanta {
    /// Time after which a request is preempted while work waits.
    pub quantum_ns: u64,
}

impl<R, T> Scheduler<R, T> for TinyQuanta {
    fn name(&self) -> &str {
        "tq"
    }
    fn arrive(&self, a: &ArrivalInfo, load: &dyn LoadView) -> Placement {
        let lens = (0..load.workers()).map(|w| load.inbox_len(w) + usize::from(load.busy(w)));
        shortest_queue(lens).map_or(Placement::Worker(a.source), Placement::Worker)
    }
    fn select(&self, q: &mut dyn Queues<R, T>) -> Option<Selected<R, T>> {
        q.admit_all();
        q.pop_inbox()
    }
    fn preemptible(&self) -> Preemptible {
        Preemptible::Every
    }
    fn quantum_ns(&self, _short_ema_ns: u64, _factor: f64) -> u64 {
        self.quantum_ns
    }
    fn work_waiting(&self, w: usize, load: &dyn LoadView) -> bool {
        load.inbox_len(w) > 0 || load.arrivals_pending(w)
    }
    fn others_may_take(&self, _w: usize, _load: &dyn LoadView) -> bool {
        false
    }
    fn requeue(&self, w: usize, _kind: u32) -> RequeueTo {
        RequeueTo::Worker(w)
    }
}

/// Perséphone's DARC: requests classified by kind at arrival into a short and a long central
/// queue; the first `reserved` workers serve short requests only; run to completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Darc {
    /// Request kinds classified long at arrival.
    pub long_kinds: Vec<u32>,
    /// Workers kept for short requests only.
    pub reserved: usize,
}

impl Darc {
    const SHORT: usize = 0;
    const LONG: usize = 1;

    fn class(&self, kind: u32) -> usize {
        if self.long_kinds.contains(&kind) {
            Darc::LONG
        } else {
            Darc::SHORT
        }
    }
}

impl<R, T> Scheduler<R, T> for Darc {
    fn name(&self) -> &str {
        "darc"
    }
    fn central_queues(&self) -> usize {
        2
    }
    fn arrive(&self, a: &ArrivalInfo, _load: &dyn LoadView) -> Placement {
        Placement::Central(self.class(a.kind))
    }
    fn select(&self, q: &mut dyn Queues<R, T>) -> Option<Selected<R, T>> {
        q.admit_all();
        if let Some(w) = q.pop_inbox().or_else(|| q.pop_central(Darc::SHORT)) {
            return Some(w);
        }
        if darc_runs_long(q.me(), self.reserved) {
            return q.pop_central(Darc::LONG);
        }
        None
    }
    fn preemptible(&self) -> Preemptible {
        Preemptible::Never
    }
    fn quantum_ns(&self, _short_ema_ns: u64, _factor: f64) -> u64 {
        u64::MAX
    }
    fn work_waiting(&self, w: usize, load: &dyn LoadView) -> bool {
        load.inbox_len(w) > 0
            || load.central_len(Darc::SHORT) > 0
            || (darc_runs_long(w, self.reserved) && load.central_len(Darc::LONG) > 0)
            || load.arrivals_pending(w)
    }
    fn others_may_take(&self, _w: usize, load: &dyn LoadView) -> bool {
        load.central_len(Darc::SHORT) > 0 || load.central_len(Darc::LONG) > 0
    }
    fn requeue(&self, _w: usize, kind: u32) -> RequeueTo {
        RequeueTo::Central(self.class(kind))
    }
}
