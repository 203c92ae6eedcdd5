//! Cores on demand (`--idle park`): when a worker parks, and which parked worker the timer core
//! wakes (Shenango's/Hermes's core-allocation rule, as CoreSync configures it).
//!
//! A worker that has found no work for `poll_period_ns` (CoreSync's POLL_PERIOD, 2 µs) parks. The
//! timer core grants cores: at most once every `GRANT_PERIOD_NS` (5 µs) it looks at how long work
//! has been waiting, and if some has waited at least `wake_delay_ns` (the delay threshold, 5 µs)
//! it wakes one parked worker:
//!
//! 1. a parked worker whose own queue holds the oldest such work (only it can take that work:
//!    its transport queue is its own);
//! 2. else, if work others can take (a busy worker's local queue beyond the steal threshold, a
//!    central queue, the wait queue's preempted requests) has waited that long, the parked worker
//!    with the lowest id, to steal or resume it.
//!
//! Ages are measured by the timer core itself: the time since it first saw the queue non-empty
//! without a break (a queue that empties and refills starts again). That is an upper bound of
//! nothing and a lower bound of the oldest request's age, which is what a controller that cannot
//! read timestamps out of a kernel socket can know.

/// At most one grant per this many ns (Shenango's and Hermes's 5 µs core-allocation interval).
pub const GRANT_PERIOD_NS: u64 = 5_000;

/// What the timer core sees of one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerView {
    /// Parked (asleep), waiting for a grant.
    pub parked: bool,
    /// Work waits that this worker would take: its local queue, its transport queue, a central
    /// queue it serves.
    pub waiting: bool,
    /// Some of that work can be taken by other workers (stolen from its local queue beyond the
    /// steal threshold, or it is in a central queue).
    pub shareable: bool,
}

/// The timer core's memory of how long each queue has been non-empty.
#[derive(Debug, Clone)]
pub struct Grants {
    waiting_since: Vec<Option<u64>>,
    shareable_since: Vec<Option<u64>>,
    wait_queue_since: Option<u64>,
    last_grant_ns: Option<u64>,
}

impl Grants {
    /// Nothing waiting yet, for `workers` workers.
    pub fn new(workers: usize) -> Grants {
        Grants {
            waiting_since: vec![None; workers],
            shareable_since: vec![None; workers],
            wait_queue_since: None,
            last_grant_ns: None,
        }
    }

    /// Updates the ages from this observation and returns the parked worker to wake, if any
    /// (see the module docs). `views` has one entry per worker; `wait_queue` says whether
    /// preempted requests wait for any worker.
    pub fn tick(&mut self, now: u64, views: &[WorkerView], wait_queue: bool, wake_delay_ns: u64) -> Option<usize> {
        assert_eq!(views.len(), self.waiting_since.len(), "one view per worker");
        let since = |slot: &mut Option<u64>, busy: bool| {
            if busy {
                *slot.get_or_insert(now)
            } else {
                *slot = None;
                u64::MAX
            }
        };
        let mut own: Option<(u64, usize)> = None;
        let mut shared_oldest = since(&mut self.wait_queue_since, wait_queue);
        for (w, v) in views.iter().enumerate() {
            let t = since(&mut self.waiting_since[w], v.waiting);
            let s = since(&mut self.shareable_since[w], v.shareable && !v.parked);
            if v.parked && t != u64::MAX && own.is_none_or(|(o, _)| t < o) {
                own = Some((t, w));
            }
            shared_oldest = shared_oldest.min(s);
        }
        if self.last_grant_ns.is_some_and(|l| now.saturating_sub(l) < GRANT_PERIOD_NS) {
            return None;
        }
        let old_enough = |t: u64| t != u64::MAX && now.saturating_sub(t) >= wake_delay_ns;
        let pick = match own {
            Some((t, w)) if old_enough(t) => Some(w),
            _ if old_enough(shared_oldest) => views.iter().position(|v| v.parked),
            _ => None,
        };
        if pick.is_some() {
            self.last_grant_ns = Some(now);
        }
        pick
    }
}

/// Whether a worker that has been idle since `idle_since` parks at `now`.
pub fn should_park(idle_since: u64, now: u64, poll_period_ns: u64) -> bool {
    now.saturating_sub(idle_since) >= poll_period_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: u64 = 5_000;

    fn parked() -> WorkerView {
        WorkerView { parked: true, ..WorkerView::default() }
    }

    fn busy(waiting: bool, shareable: bool) -> WorkerView {
        WorkerView { parked: false, waiting, shareable }
    }

    #[test]
    fn a_parked_worker_with_work_is_woken_once_it_waited_the_delay() {
        let mut g = Grants::new(2);
        let v = [busy(false, false), WorkerView { waiting: true, ..parked() }];
        assert_eq!(g.tick(1_000, &v, false, D), None, "just arrived");
        assert_eq!(g.tick(5_999, &v, false, D), None, "4.999 µs old");
        assert_eq!(g.tick(6_000, &v, false, D), Some(1), "5 µs old");
    }

    #[test]
    fn a_queue_that_empties_starts_its_age_again() {
        let mut g = Grants::new(1);
        let waiting = [WorkerView { waiting: true, ..parked() }];
        let empty = [parked()];
        assert_eq!(g.tick(0, &waiting, false, D), None);
        assert_eq!(g.tick(4_000, &empty, false, D), None);
        assert_eq!(g.tick(6_000, &waiting, false, D), None, "refilled at 6 µs");
        assert_eq!(g.tick(11_000, &waiting, false, D), Some(0));
    }

    #[test]
    fn the_oldest_parked_owner_goes_first_then_the_rate_limit_holds() {
        let mut g = Grants::new(3);
        let w =
            |a: bool, b: bool| [WorkerView { waiting: a, ..parked() }, WorkerView { waiting: b, ..parked() }, parked()];
        assert_eq!(g.tick(0, &w(false, true), false, D), None);
        assert_eq!(g.tick(1_000, &w(true, true), false, D), None);
        assert_eq!(g.tick(6_000, &w(true, true), false, D), Some(1), "worker 1's work is older");
        // Worker 1 is now running (not parked); worker 0's work is old enough but a grant was
        // made less than GRANT_PERIOD_NS ago.
        let after = [WorkerView { waiting: true, ..parked() }, busy(true, false), parked()];
        assert_eq!(g.tick(10_999, &after, false, D), None);
        assert_eq!(g.tick(11_000, &after, false, D), Some(0));
    }

    #[test]
    fn shareable_work_and_the_wait_queue_wake_the_first_parked_worker() {
        let mut g = Grants::new(3);
        let v = [busy(true, true), parked(), parked()];
        assert_eq!(g.tick(0, &v, false, D), None);
        assert_eq!(g.tick(5_000, &v, false, D), Some(1), "a stealer for worker 0's surplus");
        let mut g = Grants::new(2);
        let v = [busy(false, false), parked()];
        assert_eq!(g.tick(0, &v, true, D), None);
        assert_eq!(g.tick(5_000, &v, true, D), Some(1), "a resumer for the wait queue");
    }

    #[test]
    fn unshareable_work_of_a_busy_worker_wakes_nobody() {
        // Worker 0 runs a long request with one request queued behind it: nobody else can take
        // it (its transport queue is its own, its local queue is at the steal threshold).
        let mut g = Grants::new(2);
        let v = [busy(true, false), parked()];
        for t in (0..100_000).step_by(1_000) {
            assert_eq!(g.tick(t, &v, false, D), None);
        }
    }

    #[test]
    fn no_parked_worker_no_grant() {
        let mut g = Grants::new(2);
        let v = [busy(true, true), busy(true, true)];
        assert_eq!(g.tick(0, &v, true, D), None);
        assert_eq!(g.tick(50_000, &v, true, D), None);
    }

    #[test]
    fn parking_waits_for_the_poll_period() {
        assert!(!should_park(100, 2_099, 2_000));
        assert!(should_park(100, 2_100, 2_000));
        assert!(!should_park(100, 50, 2_000), "a clock read before the idle start never parks");
    }
}
