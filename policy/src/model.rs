//! A deterministic model of the runtime's queues (`VecDeque`s, one thread), implementing the
//! policy API's views. The simulator runs any `api::Scheduler` over it (`sim::api_policy`), and
//! the tests below check the built-in systems' decisions on it.

use crate::api::{
    placement_is_valid, requeue_is_valid, ArrivalInfo, LoadView, Placement, Queues, RequeueTo, Scheduler,
};
use crate::selection::Selected;
use std::collections::VecDeque;

/// The queues of `workers` workers.
pub struct ModelQueues<R, T> {
    /// Each worker's local queue of new requests.
    pub local: Vec<VecDeque<R>>,
    /// Each worker's inbox (work handed to it by another worker or a dispatcher).
    pub inbox: Vec<VecDeque<Selected<R, T>>>,
    /// The central queues (Shinjuku's dispatchers, Concord's central queue).
    pub central: Vec<VecDeque<Selected<R, T>>>,
    /// The global wait queue of preempted threads.
    pub wait: VecDeque<T>,
    /// Each worker's mailbox (a dispatcher's unit of work for it).
    pub mailbox: Vec<VecDeque<Selected<R, T>>>,
    /// Arrivals in each worker's receive queue, not yet polled.
    pub pending: Vec<VecDeque<(R, ArrivalInfo)>>,
    /// Whether each worker runs a request now.
    pub busy: Vec<bool>,
    /// Whether congestion control asks workers to look at the wait queue first.
    pub check_wait_queue: bool,
    /// Requests the policy rejected, with their status.
    pub rejected: Vec<(R, u32)>,
    /// Placements and requeues naming a worker or queue that does not exist.
    pub policy_errors: u64,
    /// Successful steals.
    pub steals: u64,
}

/// `n` empty queues.
fn queues<X>(n: usize) -> Vec<VecDeque<X>> {
    (0..n).map(|_| VecDeque::new()).collect()
}

impl<R, T> ModelQueues<R, T> {
    /// Empty queues for `workers` workers and `central_queues` central queues.
    pub fn new(workers: usize, central_queues: usize) -> Self {
        ModelQueues {
            local: queues(workers),
            inbox: queues(workers),
            central: queues(central_queues),
            wait: VecDeque::new(),
            mailbox: queues(workers),
            pending: queues(workers),
            busy: vec![false; workers],
            check_wait_queue: false,
            rejected: Vec::new(),
            policy_errors: 0,
            steals: 0,
        }
    }

    /// Places arrival `r` as `sched` says.
    pub fn place(&mut self, sched: &dyn Scheduler<R, T>, r: R, a: &ArrivalInfo) {
        match self.placement(sched, a) {
            Placement::Local => self.local[a.source].push_back(r),
            Placement::Worker(w) => self.inbox[w].push_back(Selected::Request(r)),
            Placement::Central(c) => self.central[c].push_back(Selected::Request(r)),
            Placement::Reject(status) => self.rejected.push((r, status)),
        }
    }

    fn placement(&mut self, sched: &dyn Scheduler<R, T>, a: &ArrivalInfo) -> Placement {
        let p = sched.arrive(a, self);
        if placement_is_valid(p, self.local.len(), self.central.len()) {
            p
        } else {
            self.policy_errors += 1;
            Placement::Local
        }
    }

    /// Puts preempted thread `t` of a request of type `kind`, preempted on worker `w`, where
    /// `sched` resumes it from. `Dispatcher` is the caller's (the model has no dispatcher): it
    /// is handed back.
    pub fn requeue(&mut self, sched: &dyn Scheduler<R, T>, w: usize, kind: u32, t: T) -> Result<(), T> {
        let mut to = sched.requeue(w, kind);
        if !requeue_is_valid(to, self.local.len(), self.central.len(), sched.dispatched()) {
            self.policy_errors += 1;
            to = RequeueTo::WaitQueue;
        }
        match to {
            RequeueTo::WaitQueue => self.wait.push_back(t),
            RequeueTo::Worker(w) => self.inbox[w].push_back(Selected::Resume(t)),
            RequeueTo::Central(c) => self.central[c].push_back(Selected::Resume(t)),
            RequeueTo::Dispatcher => return Err(t),
        }
        Ok(())
    }

    /// Worker `me`'s view for `sched.select`.
    pub fn worker<'a>(&'a mut self, me: usize, sched: &'a dyn Scheduler<R, T>) -> ModelWorker<'a, R, T> {
        ModelWorker { m: self, me, sched }
    }

    fn poll(&mut self, sched: &dyn Scheduler<R, T>, w: usize) {
        while let Some((r, a)) = self.pending[w].pop_front() {
            self.place(sched, r, &a);
        }
    }
}

impl<R, T> LoadView for ModelQueues<R, T> {
    fn workers(&self) -> usize {
        self.local.len()
    }
    fn local_len(&self, w: usize) -> usize {
        self.local[w].len()
    }
    fn inbox_len(&self, w: usize) -> usize {
        self.inbox[w].len()
    }
    fn central_len(&self, class: usize) -> usize {
        self.central.get(class).map_or(0, VecDeque::len)
    }
    fn wait_len(&self) -> usize {
        self.wait.len()
    }
    fn busy(&self, w: usize) -> bool {
        self.busy[w]
    }
    fn arrivals_pending(&self, w: usize) -> bool {
        !self.pending[w].is_empty()
    }
}

/// One worker's operations on the model.
pub struct ModelWorker<'a, R, T> {
    m: &'a mut ModelQueues<R, T>,
    me: usize,
    sched: &'a dyn Scheduler<R, T>,
}

impl<R, T> LoadView for ModelWorker<'_, R, T> {
    fn workers(&self) -> usize {
        self.m.workers()
    }
    fn local_len(&self, w: usize) -> usize {
        self.m.local_len(w)
    }
    fn inbox_len(&self, w: usize) -> usize {
        self.m.inbox_len(w)
    }
    fn central_len(&self, class: usize) -> usize {
        self.m.central_len(class)
    }
    fn wait_len(&self) -> usize {
        self.m.wait_len()
    }
    fn busy(&self, w: usize) -> bool {
        self.m.busy(w)
    }
    fn arrivals_pending(&self, w: usize) -> bool {
        self.m.arrivals_pending(w)
    }
}

impl<R, T> Queues<R, T> for ModelWorker<'_, R, T> {
    fn me(&self) -> usize {
        self.me
    }
    fn check_wait_queue(&self) -> bool {
        self.m.check_wait_queue
    }
    fn pop_local(&mut self) -> Option<R> {
        if self.m.local[self.me].is_empty() {
            self.m.poll(self.sched, self.me);
        }
        self.m.local[self.me].pop_front()
    }
    fn admit_all(&mut self) {
        for w in 0..self.m.workers() {
            self.m.poll(self.sched, w);
        }
    }
    fn pop_inbox(&mut self) -> Option<Selected<R, T>> {
        self.m.inbox[self.me].pop_front()
    }
    fn pop_central(&mut self, class: usize) -> Option<Selected<R, T>> {
        self.m.central.get_mut(class)?.pop_front()
    }
    fn refill_inbox(&mut self, class: usize, count: usize) -> usize {
        let mut moved = 0;
        while moved < count {
            let Some(w) = self.m.central.get_mut(class).and_then(VecDeque::pop_front) else { break };
            self.m.inbox[self.me].push_back(w);
            moved += 1;
        }
        moved
    }
    fn pop_wait(&mut self) -> Option<T> {
        self.m.wait.pop_front()
    }
    fn steal(&mut self, victim: usize, count: usize) -> Option<R> {
        let mut taken: VecDeque<R> = (0..count).filter_map(|_| self.m.local[victim].pop_front()).collect();
        let first = taken.pop_front()?;
        self.m.local[self.me].extend(taken);
        self.m.steals += 1;
        Some(first)
    }
    fn pop_mailbox(&mut self) -> Option<Selected<R, T>> {
        self.m.mailbox[self.me].pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::{builtin, BuiltinParams};
    use crate::system::{Preemptible, SchedPolicy};

    type Sched = Box<dyn Scheduler<u32, &'static str>>;

    fn sched(p: SchedPolicy) -> Sched {
        builtin(p, &BuiltinParams { darc_reserved: 1, long_kinds: vec![1], ..BuiltinParams::default() })
    }

    fn arrive(m: &mut ModelQueues<u32, &'static str>, id: u32, kind: u32, source: usize) {
        m.pending[source].push_back((id, ArrivalInfo { kind, source, ..ArrivalInfo::default() }));
    }

    fn next(m: &mut ModelQueues<u32, &'static str>, s: &Sched, w: usize) -> Option<Selected<u32, &'static str>> {
        s.select(&mut m.worker(w, s.as_ref()))
    }

    #[test]
    fn every_builtin_matches_its_row_of_the_systems_table() {
        for p in SchedPolicy::ALL {
            let s = sched(p);
            let spec = p.spec();
            assert_eq!(s.name(), p.name());
            assert_eq!(s.preemptible(), spec.preemptible, "{p:?}");
            assert_eq!(s.dispatched(), p == SchedPolicy::Shinjuku, "{p:?}");
            if p == SchedPolicy::Shinjuku {
                assert_eq!(s.requeue(0, 0), RequeueTo::Dispatcher, "back to its dispatcher");
            }
            if spec.preemptible != Preemptible::Never {
                assert_eq!(s.quantum_ns(1_000, 2.0), spec.quantum_ns(1_000, 2.0), "{p:?}");
            }
        }
    }

    #[test]
    fn synergy_keeps_arrivals_local_and_steals_from_a_loaded_peer() {
        let s = sched(SchedPolicy::Synergy);
        let mut m = ModelQueues::new(2, 0);
        for id in 0..4 {
            arrive(&mut m, id, 0, 1);
        }
        assert_eq!(next(&mut m, &s, 1), Some(Selected::Request(0)), "worker 1 polls its receive queue");
        assert_eq!(m.local[1].len(), 3, "the rest stay local to worker 1");
        assert_eq!(next(&mut m, &s, 0), Some(Selected::Request(1)), "worker 0 steals");
        assert_eq!(m.steals, 1);
        assert_eq!((m.local[0].len(), m.local[1].len()), (1, 1), "half of 3, rounded up, moved");
        assert!(s.work_waiting(1, &m) && s.others_may_take(1, &m), "above STEAL_THRESHOLD 0");
        assert_eq!(s.requeue(0, 0), RequeueTo::WaitQueue);
        m.requeue(s.as_ref(), 0, 1, "A").unwrap();
        m.check_wait_queue = true;
        assert_eq!(next(&mut m, &s, 1), Some(Selected::Resume("A")), "congested: the wait queue first");
    }

    #[test]
    fn dfcfs_resumes_a_yielded_request_from_its_own_worker_first() {
        let s = sched(SchedPolicy::Dfcfs);
        let mut m = ModelQueues::new(2, 0);
        arrive(&mut m, 7, 0, 0);
        m.requeue(s.as_ref(), 0, 0, "Y").unwrap();
        assert_eq!(next(&mut m, &s, 1), None, "no stealing, and the yielded request is worker 0's");
        assert_eq!(next(&mut m, &s, 0), Some(Selected::Resume("Y")));
        assert_eq!(next(&mut m, &s, 0), Some(Selected::Request(7)));
    }

    #[test]
    fn central_systems_admit_for_every_worker() {
        let s = sched(SchedPolicy::Cfcfs);
        let mut m = ModelQueues::new(2, s.central_queues());
        arrive(&mut m, 1, 0, 1);
        assert!(s.work_waiting(1, &m) && !s.work_waiting(0, &m), "unpolled arrivals wait for their worker");
        assert_eq!(next(&mut m, &s, 0), Some(Selected::Request(1)), "worker 0 admits worker 1's arrival");
        // Concord: JBSQ(2) tops up the selecting worker's inbox.
        let s = sched(SchedPolicy::Concord);
        let mut m = ModelQueues::new(2, s.central_queues());
        for id in 0..5 {
            arrive(&mut m, id, 0, 0);
        }
        assert_eq!(next(&mut m, &s, 1), Some(Selected::Request(0)));
        assert_eq!((m.inbox[1].len(), m.central[0].len()), (1, 3), "holds at most 2: one runs, one waits");
    }

    #[test]
    fn tiny_quanta_joins_the_shortest_queue_counting_busy_workers() {
        let s = sched(SchedPolicy::Tq);
        let mut m = ModelQueues::new(3, 0);
        m.busy[0] = true;
        for id in 0..3 {
            arrive(&mut m, id, 0, 0);
        }
        assert_eq!(next(&mut m, &s, 2), Some(Selected::Request(1)), "1 went to worker 2 (ties: lowest index)");
        assert_eq!((m.inbox[0].len(), m.inbox[1].len(), m.inbox[2].len()), (1, 1, 0));
        assert_eq!(s.requeue(2, 0), RequeueTo::Worker(2), "processor sharing on the worker");
    }

    #[test]
    fn darc_keeps_long_requests_off_its_reserved_worker() {
        let s = sched(SchedPolicy::Darc);
        let mut m = ModelQueues::new(2, s.central_queues());
        arrive(&mut m, 10, 1, 0);
        assert_eq!(next(&mut m, &s, 0), None, "worker 0 is reserved for short requests");
        assert!(!s.work_waiting(0, &m) && s.work_waiting(1, &m));
        assert_eq!(next(&mut m, &s, 1), Some(Selected::Request(10)));
        assert_eq!(s.requeue(0, 1), RequeueTo::Central(1), "a long request yields back to its class");
    }

    /// A policy that names queues that do not exist: its requests stay local and are counted.
    struct Broken;
    impl<R, T> Scheduler<R, T> for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn arrive(&self, a: &ArrivalInfo, _l: &dyn LoadView) -> Placement {
            if a.kind == 9 {
                Placement::Reject(429)
            } else {
                Placement::Central(3)
            }
        }
        fn select(&self, q: &mut dyn Queues<R, T>) -> Option<Selected<R, T>> {
            q.pop_local().map(Selected::Request)
        }
        fn preemptible(&self) -> Preemptible {
            Preemptible::Never
        }
        fn quantum_ns(&self, _: u64, _: f64) -> u64 {
            u64::MAX
        }
        fn work_waiting(&self, w: usize, l: &dyn LoadView) -> bool {
            l.local_len(w) > 0
        }
        fn others_may_take(&self, _: usize, _: &dyn LoadView) -> bool {
            false
        }
        fn requeue(&self, _: usize, _: u32) -> RequeueTo {
            RequeueTo::Worker(99)
        }
    }

    #[test]
    fn invalid_placements_are_counted_and_kept_local_and_rejects_are_kept() {
        let s: Sched = Box::new(Broken);
        let mut m = ModelQueues::new(1, 0);
        arrive(&mut m, 1, 0, 0);
        arrive(&mut m, 2, 9, 0);
        assert_eq!(next(&mut m, &s, 0), Some(Selected::Request(1)));
        assert_eq!(m.policy_errors, 1);
        assert_eq!(m.rejected, vec![(2, 429)]);
        m.requeue(s.as_ref(), 0, 0, "T").unwrap();
        assert_eq!((m.policy_errors, m.wait.len()), (2, 1), "an invalid requeue falls back to the wait queue");
    }
}
