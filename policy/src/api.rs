//! The scheduling policy API (Syrup's "matching functions", issue 19): the decisions that make a
//! scheduling system, as one trait that the runtime's worker loop, its timer core and the
//! simulator all call. The seven systems of the thesis's comparison are implementations of it
//! (`builtin`); an application implements it for its own policy (`examples/sita.rs`).
//!
//! A policy decides; it never owns queues, threads or clocks. It sees the queues through two
//! small traits the caller implements: [`LoadView`] (lengths, read anywhere) and [`Queues`] (a
//! worker's own operations, inside [`Scheduler::select`]). The runtime implements them over its
//! lock-free rings and locked FIFOs, the simulator over `VecDeque`s, and the tests over plain data.
//!
//! The decisions, and who calls them:
//!
//! | decision | called by | when |
//! |---|---|---|
//! | [`Scheduler::arrive`] | the worker that polls a receive queue | once per arriving request |
//! | [`Scheduler::select`] | an idle worker | until it returns work (then again after that work) |
//! | [`Scheduler::preemptible`], [`Scheduler::quantum_ns`] | a worker arming its timer | a request starts / `feedback_start` |
//! | [`Scheduler::preempt_at_quantum_end`] | the timer core | a quantum expired |
//! | [`Scheduler::requeue`] | the worker that preempted (or yielded) a request | after the switch away from it |
//! | [`Scheduler::work_waiting`], [`Scheduler::others_may_take`] | an idle worker about to park; the timer core's core grants | `--idle park` |
//!
//! Every method takes `&self` and may run on several workers at once: a stateful policy (token
//! buckets, round-robin counters) keeps its state in atomics. Decisions must be quick: `arrive`
//! runs once per request on the receive path, `select` on every idle poll.

use crate::selection::{self, Selected, WorkerQueues};
use crate::system::Preemptible;

/// What a policy knows of an arriving request when it places it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArrivalInfo {
    /// The application's request type (the wire protocol's `kind`).
    pub kind: u32,
    /// The request's flow (its session under `--overload credits`).
    pub flow: u64,
    /// The worker whose receive queue it arrived on (RSS, or the socket steering chose).
    pub source: usize,
    /// When it arrived (ns): the transport's receive stamp in the runtime, simulated time in the
    /// simulator.
    pub arrival_ns: u64,
}

/// Where an arriving request waits ([`Scheduler::arrive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The source worker's own queue (the thesis's Q^RX), which its peers may steal from.
    Local,
    /// Worker `w`'s inbox, which only `w` takes from ([`Queues::pop_inbox`]).
    Worker(usize),
    /// Central queue `class` (`0..central_queues()`), which any worker may take from.
    Central(usize),
    /// Answered at once with this reply status and never served (e.g. a tenant out of tokens).
    Reject(u32),
}

/// Where a preempted (or yielding) request waits to be resumed ([`Scheduler::requeue`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequeueTo {
    /// Synergy's global wait queue, which any worker may resume from ([`Queues::pop_wait`]).
    WaitQueue,
    /// Worker `w`'s inbox.
    Worker(usize),
    /// The tail of central queue `class`.
    Central(usize),
    /// Back to the worker's Shinjuku dispatcher ([`Scheduler::dispatched`] policies only).
    Dispatcher,
}

/// What a policy may read of the queues: lengths, from any thread. Snapshots, which may be stale
/// by the time they are used (another worker may take or add work meanwhile).
pub trait LoadView {
    /// How many workers there are.
    fn workers(&self) -> usize;
    /// Requests in worker `w`'s own queue (Q^RX).
    fn local_len(&self, w: usize) -> usize;
    /// Units of work (new or preempted) in worker `w`'s inbox.
    fn inbox_len(&self, w: usize) -> usize;
    /// Units of work in central queue `class` (0 for a class the policy does not have).
    fn central_len(&self, class: usize) -> usize;
    /// Preempted requests in the global wait queue.
    fn wait_len(&self) -> usize;
    /// Worker `w` is serving a request.
    fn busy(&self, w: usize) -> bool;
    /// Worker `w`'s receive queue (socket, NIC ring, channel) holds arrivals nobody polled yet.
    fn arrivals_pending(&self, w: usize) -> bool;
}

/// A worker's operations on the queues, inside [`Scheduler::select`]: `R` is a new request, `T`
/// a preempted request's thread. What a `pop` returns is the caller's to run or to give back;
/// one dropped is a request lost.
pub trait Queues<R, T>: LoadView {
    /// Which worker is selecting.
    fn me(&self) -> usize;
    /// The timer core's congestion flag: the wait queue is congested (Algorithm 5.3).
    fn check_wait_queue(&self) -> bool;
    /// The next request of this worker's own queue; when that is empty, polls this worker's
    /// receive queue, places each arrival with [`Scheduler::arrive`] and returns the first one
    /// placed [`Placement::Local`].
    fn pop_local(&mut self) -> Option<R>;
    /// Polls every worker's receive queue (those no other worker is polling right now) and places
    /// each arrival with [`Scheduler::arrive`]: for central or cross-worker placement, an idle
    /// worker admits for all of them, so that no request waits behind the long request of the
    /// worker whose receive queue it arrived on.
    fn admit_all(&mut self);
    /// The next unit of work in this worker's inbox.
    fn pop_inbox(&mut self) -> Option<Selected<R, T>>;
    /// The next unit of work in central queue `class`.
    fn pop_central(&mut self, class: usize) -> Option<Selected<R, T>>;
    /// Moves up to `count` units from central queue `class` into this worker's inbox (JBSQ);
    /// returns how many moved.
    fn refill_inbox(&mut self, class: usize, count: usize) -> usize;
    /// The next preempted request of the global wait queue.
    fn pop_wait(&mut self) -> Option<T>;
    /// Takes up to `count` requests from worker `victim`'s own queue: returns the first and keeps
    /// the rest in this worker's own queue.
    fn steal(&mut self, victim: usize, count: usize) -> Option<R>;
    /// Shinjuku: the unit of work this worker's dispatcher handed it.
    fn pop_mailbox(&mut self) -> Option<Selected<R, T>>;
}

/// A scheduling policy. `R` and `T` are the caller's request and thread types; a policy is
/// normally generic over both (`impl<R, T> Scheduler<R, T> for MyPolicy`), which lets the same
/// value run in the runtime and in the simulator.
pub trait Scheduler<R, T>: Send + Sync {
    /// A short name for reports (`synergy`, `sita`, ...).
    fn name(&self) -> &str;

    /// How many central queues [`Placement::Central`] and [`Queues::pop_central`] may name.
    fn central_queues(&self) -> usize {
        0
    }

    /// Shinjuku: dispatcher threads own the arrivals and hand each worker one unit of work
    /// through its mailbox (`policy::shinjuku` decides there); `arrive` is then never called.
    fn dispatched(&self) -> bool {
        false
    }

    /// Where the arriving request `a` waits. A placement naming a worker or class that does not
    /// exist is a policy error: the caller counts it and keeps the request [`Placement::Local`].
    fn arrive(&self, a: &ArrivalInfo, load: &dyn LoadView) -> Placement;

    /// What idle worker `q.me()` runs next; `None`: nothing now (it will ask again).
    fn select(&self, q: &mut dyn Queues<R, T>) -> Option<Selected<R, T>>;

    /// Which requests run under a timer: none, those the application marks long
    /// (`feedback_start`), or every request.
    fn preemptible(&self) -> Preemptible;

    /// The quantum of a slice starting now, given the worker's EMA of short service times and
    /// the quantum factor in force (the timer core switches it under congestion).
    fn quantum_ns(&self, short_ema_ns: u64, factor: f64) -> u64;

    /// Work that worker `w` would take next is waiting (not counting the wait queue).
    fn work_waiting(&self, w: usize, load: &dyn LoadView) -> bool;

    /// Worker `w`'s quantum expired: interrupt it (`true`) or let it run another quantum.
    /// Default: conditional preemption, only when work waits for it (Algorithm 5.3).
    fn preempt_at_quantum_end(&self, w: usize, load: &dyn LoadView) -> bool {
        self.work_waiting(w, load)
    }

    /// Some of the work waiting for worker `w` could be taken by another worker (the core grants
    /// then wake any parked worker, not only `w`).
    fn others_may_take(&self, w: usize, load: &dyn LoadView) -> bool;

    /// Where a request of type `kind` that worker `w` preempted (or that yielded) waits.
    fn requeue(&self, w: usize, kind: u32) -> RequeueTo;
}

/// The queues seen as Algorithm 5.2's [`WorkerQueues`], so a policy's `select` can run the
/// thesis's selection order (`selection::select`) over any caller's queues.
pub struct AsWorkerQueues<'a, R, T>(pub &'a mut dyn Queues<R, T>);

impl<R, T> WorkerQueues for AsWorkerQueues<'_, R, T> {
    type Request = R;
    type Thread = T;
    fn pop_local(&mut self) -> Option<R> {
        self.0.pop_local()
    }
    fn pop_wait(&mut self) -> Option<T> {
        self.0.pop_wait()
    }
    fn peer_len(&self, victim: usize) -> usize {
        self.0.local_len(victim)
    }
    fn steal(&mut self, victim: usize, count: usize) -> Option<R> {
        self.0.steal(victim, count)
    }
}

/// Algorithm 5.2 over `q` with `steal_threshold`: what Synergy's `select` is, for policies that
/// keep its order and change something else.
pub fn select_as_synergy<R, T>(q: &mut dyn Queues<R, T>, steal_threshold: usize) -> Option<Selected<R, T>> {
    let (me, workers, check) = (q.me(), q.workers(), q.check_wait_queue());
    selection::select(&mut AsWorkerQueues(q), check, me, workers, steal_threshold)
}

/// Whether `p` names a worker or central queue that exists (else the caller keeps the request
/// local and counts a policy error).
pub fn placement_is_valid(p: Placement, workers: usize, central_queues: usize) -> bool {
    match p {
        Placement::Local | Placement::Reject(_) => true,
        Placement::Worker(w) => w < workers,
        Placement::Central(c) => c < central_queues,
    }
}

/// Whether `r` names a worker or central queue that exists (else the caller uses the wait queue).
pub fn requeue_is_valid(r: RequeueTo, workers: usize, central_queues: usize, dispatched: bool) -> bool {
    match r {
        RequeueTo::WaitQueue => true,
        RequeueTo::Worker(w) => w < workers,
        RequeueTo::Central(c) => c < central_queues,
        RequeueTo::Dispatcher => dispatched,
    }
}
