//! SITA (size-interval task assignment), written as an application would write its own policy
//! against synergy's policy API (`synergy_policy::api`): Syrup's example of a policy that a fixed
//! table of systems cannot express.
//!
//! Requests are classified by kind at arrival: kinds in `long_kinds` (e.g. SCANs) go to the long
//! group of workers, the rest (e.g. GETs) to the short group, round-robin within the group, so a
//! short request never queues behind a long one. Long requests that the application marks with
//! `feedback_start` are preempted when their quantum ends while work waits on their own worker,
//! and resume at the back of that worker's inbox (processor sharing inside the long group).
//!
//! The same value schedules the real runtime (`Builder::scheduler`, `main.rs`) and
//! the simulator (`synergy_sim::api_policy::ApiPolicy`; `sim/tests/sita.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use synergy_policy::api::{ArrivalInfo, LoadView, Placement, Queues, RequeueTo, Scheduler};
use synergy_policy::quantum;
use synergy_policy::selection::Selected;
use synergy_policy::system::Preemptible;

pub struct Sita {
    /// Request kinds of the long size interval.
    pub long_kinds: Vec<u32>,
    /// Workers `0..short_workers` serve short requests, the rest long ones.
    pub short_workers: usize,
    /// Round-robin positions within the short and the long group (atomics: several workers place
    /// arrivals at once).
    next: [AtomicUsize; 2],
}

impl Sita {
    /// Panics unless both groups get a worker: `1 <= short_workers < workers` is the caller's to
    /// check (the runtime's configuration is known before the policy is made).
    pub fn new(long_kinds: Vec<u32>, short_workers: usize) -> Sita {
        assert!(short_workers >= 1, "SITA needs a worker for short requests");
        Sita { long_kinds, short_workers, next: [AtomicUsize::new(0), AtomicUsize::new(0)] }
    }

    fn is_long(&self, kind: u32) -> bool {
        self.long_kinds.contains(&kind)
    }

    /// The workers of the group that serves `kind`.
    fn group(&self, kind: u32, workers: usize) -> std::ops::Range<usize> {
        let split = self.short_workers.min(workers.saturating_sub(1)).max(1);
        if self.is_long(kind) {
            split..workers
        } else {
            0..split
        }
    }
}

impl<R, T> Scheduler<R, T> for Sita {
    fn name(&self) -> &str {
        "sita"
    }

    fn arrive(&self, a: &ArrivalInfo, load: &dyn LoadView) -> Placement {
        let group = self.group(a.kind, load.workers());
        if group.is_empty() {
            return Placement::Local; // one worker: nothing to assign
        }
        let turn = self.next[usize::from(self.is_long(a.kind))].fetch_add(1, Ordering::Relaxed);
        Placement::Worker(group.start + turn % group.len())
    }

    fn select(&self, q: &mut dyn Queues<R, T>) -> Option<Selected<R, T>> {
        // Any idle worker admits for all, so an arrival never waits behind the long request of
        // the worker whose receive queue it came in on.
        q.admit_all();
        q.pop_inbox().or_else(|| q.pop_local().map(Selected::Request))
    }

    fn preemptible(&self) -> Preemptible {
        Preemptible::MarkedLong
    }

    fn quantum_ns(&self, short_ema_ns: u64, factor: f64) -> u64 {
        quantum::quantum_ns(short_ema_ns, factor)
    }

    fn work_waiting(&self, w: usize, load: &dyn LoadView) -> bool {
        load.inbox_len(w) > 0 || load.local_len(w) > 0 || load.arrivals_pending(w)
    }

    fn others_may_take(&self, _w: usize, _load: &dyn LoadView) -> bool {
        false
    }

    fn requeue(&self, w: usize, _kind: u32) -> RequeueTo {
        RequeueTo::Worker(w)
    }
}
