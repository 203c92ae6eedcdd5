//! Request selection on a worker: Algorithm 5.2 of the thesis.
//!
//! Order: (1) the global wait queue if the timer core raised `check_wait_queue`; (2) the local RX
//! queue; (3) the wait queue regardless of the flag; (4) steal a batch from the first peer, in
//! round-robin order starting after this worker, whose queue holds more than STEAL_THRESHOLD.

/// What a worker found to do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Selected<R, T> {
    /// A new request, from the local queue or stolen from a peer.
    Request(R),
    /// A preempted green thread to switch to directly.
    Resume(T),
}

/// The queues a worker sees. The runtime implements it over lock-free rings; tests over VecDeques.
pub trait WorkerQueues {
    /// What a new request is (the runtime's `Request`).
    type Request;
    /// What a preempted thread is (the runtime's green-thread pointer).
    type Thread;
    /// Next request from this worker's own queue (including whatever its transport has received).
    fn pop_local(&mut self) -> Option<Self::Request>;
    /// Next preempted green thread from the global wait queue.
    fn pop_wait(&mut self) -> Option<Self::Thread>;
    /// Current length of peer `victim`'s queue.
    fn peer_len(&self, victim: usize) -> usize;
    /// Takes up to `count` requests from `victim`; returns the first and keeps the rest in this
    /// worker's local queue (Q^RX <- Q^tmp).
    fn steal(&mut self, victim: usize, count: usize) -> Option<Self::Request>;
}

/// How many requests to steal from a peer whose queue holds `victim_len`: none unless it holds
/// more than `threshold`; otherwise half of it, rounded up, so both sides keep work.
pub fn steal_batch(victim_len: usize, threshold: usize) -> usize {
    if victim_len <= threshold || victim_len == 0 {
        0
    } else {
        victim_len.div_ceil(2)
    }
}

/// Peers in the order a worker tries to steal from them: (me + 1) mod n, (me + 2) mod n, ...
pub fn steal_order(me: usize, workers: usize) -> impl Iterator<Item = usize> {
    (1..workers).map(move |i| (me + i) % workers)
}

/// One pass of Algorithm 5.2. `None` means nothing is runnable right now (the caller idles and
/// calls again).
pub fn select<Q: WorkerQueues>(
    queues: &mut Q,
    check_wait_queue: bool,
    me: usize,
    workers: usize,
    steal_threshold: usize,
) -> Option<Selected<Q::Request, Q::Thread>> {
    if check_wait_queue {
        if let Some(t) = queues.pop_wait() {
            return Some(Selected::Resume(t));
        }
    }
    if let Some(r) = queues.pop_local() {
        return Some(Selected::Request(r));
    }
    if let Some(t) = queues.pop_wait() {
        return Some(Selected::Resume(t));
    }
    for victim in steal_order(me, workers) {
        let count = steal_batch(queues.peer_len(victim), steal_threshold);
        if count > 0 {
            if let Some(r) = queues.steal(victim, count) {
                return Some(Selected::Request(r));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A deterministic model: `rx[w]` per worker, one wait queue; the model acts as worker `me`.
    struct Model {
        me: usize,
        rx: Vec<VecDeque<u32>>,
        wait: VecDeque<&'static str>,
        steals: Vec<(usize, usize)>,
    }

    impl WorkerQueues for Model {
        type Request = u32;
        type Thread = &'static str;
        fn pop_local(&mut self) -> Option<u32> {
            self.rx[self.me].pop_front()
        }
        fn pop_wait(&mut self) -> Option<&'static str> {
            self.wait.pop_front()
        }
        fn peer_len(&self, victim: usize) -> usize {
            self.rx[victim].len()
        }
        fn steal(&mut self, victim: usize, count: usize) -> Option<u32> {
            self.steals.push((victim, count));
            let mut batch: VecDeque<u32> = (0..count).filter_map(|_| self.rx[victim].pop_front()).collect();
            let first = batch.pop_front();
            self.rx[self.me].extend(batch);
            first
        }
    }

    fn model(me: usize, rx: Vec<Vec<u32>>, wait: Vec<&'static str>) -> Model {
        Model { me, rx: rx.into_iter().map(Into::into).collect(), wait: wait.into(), steals: vec![] }
    }

    #[test]
    fn local_queue_before_wait_queue_when_not_congested() {
        let mut m = model(0, vec![vec![7], vec![]], vec!["A"]);
        assert_eq!(select(&mut m, false, 0, 2, 0), Some(Selected::Request(7)));
        assert_eq!(select(&mut m, false, 0, 2, 0), Some(Selected::Resume("A")));
        assert_eq!(select(&mut m, false, 0, 2, 0), None);
    }

    #[test]
    fn congested_flag_puts_wait_queue_first() {
        let mut m = model(0, vec![vec![7], vec![]], vec!["A", "B"]);
        assert_eq!(select(&mut m, true, 0, 2, 0), Some(Selected::Resume("A")));
        assert_eq!(select(&mut m, true, 0, 2, 0), Some(Selected::Resume("B")));
        assert_eq!(select(&mut m, true, 0, 2, 0), Some(Selected::Request(7)));
    }

    #[test]
    fn wait_queue_before_stealing() {
        let mut m = model(0, vec![vec![], vec![1, 2, 3, 4]], vec!["A"]);
        assert_eq!(select(&mut m, false, 0, 2, 0), Some(Selected::Resume("A")));
        assert!(m.steals.is_empty());
    }

    #[test]
    fn steals_only_above_threshold_and_keeps_the_rest_locally() {
        let mut m = model(0, vec![vec![], vec![1, 2, 3]], vec![]);
        assert_eq!(select(&mut m, false, 0, 2, 3), None, "3 queued is not more than threshold 3");
        m.rx[1].push_back(4);
        assert_eq!(select(&mut m, false, 0, 2, 3), Some(Selected::Request(1)));
        assert_eq!(m.steals, vec![(1, 2)]);
        assert_eq!(m.rx[0], VecDeque::from(vec![2]), "the rest of the stolen batch becomes local");
        assert_eq!(m.rx[1], VecDeque::from(vec![3, 4]));
    }

    #[test]
    fn steal_victims_in_round_robin_order_after_self() {
        assert_eq!(steal_order(2, 4).collect::<Vec<_>>(), vec![3, 0, 1]);
        assert_eq!(steal_order(0, 1).count(), 0);
        let mut m = model(2, vec![vec![10, 11], vec![20, 21], vec![], vec![]], vec![]);
        assert_eq!(select(&mut m, false, 2, 4, 1), Some(Selected::Request(10)));
        assert_eq!(m.steals, vec![(0, 1)], "worker 3 is empty, so worker 0 is the first victim");
    }

    #[test]
    fn steal_batch_sizes() {
        assert_eq!(steal_batch(0, 0), 0);
        assert_eq!(steal_batch(1, 0), 1);
        assert_eq!(steal_batch(5, 0), 3);
        assert_eq!(steal_batch(8, 8), 0);
        assert_eq!(steal_batch(9, 8), 5);
    }
}
