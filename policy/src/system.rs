//! The scheduling systems the thesis compares (§6.1.2), as policies of this runtime
//! (`--policy=synergy|cfcfs|dfcfs|shinjuku|concord|tq|darc`) and of the simulator.
//!
//! Each system is an implementation of the policy API (`builtin.rs`) that the worker loop, the
//! timer core and the simulator call. Here: the systems' names, which requests each preempts
//! and after what quantum (`SchedPolicy::spec`, for tests and reports that ask without running
//! one), and the decisions that need code (JSQ, JBSQ refills, DARC's reservation) as plain
//! functions, tested on plain data.
//!
//! What the real runtime does not copy is Concord's compiler-inserted yields and Perséphone's
//! classifier on the NIC path.
//! Here every policy runs on synergy's workers with the `--preempt` mechanism chosen; a central
//! queue is a lock-protected FIFO that workers serve themselves (docs/policies.md), except
//! Shinjuku's, which its dispatcher threads own (`shinjuku`).

/// A scheduling system of the thesis's comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "lowercase"))]
pub enum SchedPolicy {
    /// Synergy (thesis ch. 5): per-worker queues, stealing, a global wait queue, job-aware
    /// preemption of application-classified long requests with an adaptive quantum.
    Synergy,
    /// Centralised first-come-first-served, run to completion.
    Cfcfs,
    /// Distributed FCFS: each worker serves its own (RSS) queue to completion; no stealing.
    Dfcfs,
    /// Shinjuku: dispatcher threads own the queues (SQ or MQ, `policy::shinjuku`) and hand each
    /// idle worker one request through its mailbox; every request is preemptible after a fixed
    /// 5 µs quantum while work waits; preempted requests go back to the dispatcher.
    Shinjuku,
    /// Concord: Shinjuku's central queue feeding bounded per-worker queues (JBSQ(2)), 5 µs.
    Concord,
    /// Tiny Quanta: join-the-shortest-queue at arrival, local processor sharing with 2 µs.
    Tq,
    /// Perséphone's DARC: requests classified by kind at arrival; some workers reserved for short
    /// requests; run to completion.
    Darc,
}

/// Which requests the timer core may preempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preemptible {
    /// None: run to completion.
    Never,
    /// Those the application marks with `feedback_start()` (Synergy).
    MarkedLong,
    /// Every request (the baselines do not ask the application).
    Every,
}

/// What the timer does to one system's requests: the part of each system that tests and reports
/// ask about without running it. The whole system is its `Scheduler` implementation
/// (`builtin.rs`), which a test checks against this table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Which of the system's requests the timer core may preempt.
    pub preemptible: Preemptible,
    /// A fixed quantum; `None`: QUANTUM_FACTOR × EMA of short service times.
    pub fixed_quantum_ns: Option<u64>,
}

/// Shinjuku's and Concord's quantum (thesis §6.1.2, from the Shinjuku paper).
pub const SHINJUKU_QUANTUM_NS: u64 = 5_000;
/// Tiny Quanta's quantum, which its authors report as optimal.
pub const TQ_QUANTUM_NS: u64 = 2_000;
/// Concord's JBSQ bound.
pub const CONCORD_LOCAL_BOUND: usize = 2;

impl SchedPolicy {
    /// Every built-in system, in the order reports list them.
    pub const ALL: [SchedPolicy; 7] = [
        SchedPolicy::Synergy,
        SchedPolicy::Cfcfs,
        SchedPolicy::Dfcfs,
        SchedPolicy::Shinjuku,
        SchedPolicy::Concord,
        SchedPolicy::Tq,
        SchedPolicy::Darc,
    ];

    /// Its command-line spelling (`--policy`).
    pub fn name(self) -> &'static str {
        match self {
            SchedPolicy::Synergy => "synergy",
            SchedPolicy::Cfcfs => "cfcfs",
            SchedPolicy::Dfcfs => "dfcfs",
            SchedPolicy::Shinjuku => "shinjuku",
            SchedPolicy::Concord => "concord",
            SchedPolicy::Tq => "tq",
            SchedPolicy::Darc => "darc",
        }
    }

    /// The system spelled `name` on the command line.
    pub fn named(name: &str) -> Option<SchedPolicy> {
        SchedPolicy::ALL.into_iter().find(|p| p.name() == name)
    }

    /// What the timer does to this system's requests.
    pub fn spec(self) -> Spec {
        let (preemptible, fixed_quantum_ns) = match self {
            SchedPolicy::Synergy => (Preemptible::MarkedLong, None),
            SchedPolicy::Cfcfs | SchedPolicy::Dfcfs | SchedPolicy::Darc => (Preemptible::Never, None),
            SchedPolicy::Shinjuku | SchedPolicy::Concord => (Preemptible::Every, Some(SHINJUKU_QUANTUM_NS)),
            SchedPolicy::Tq => (Preemptible::Every, Some(TQ_QUANTUM_NS)),
        };
        Spec { preemptible, fixed_quantum_ns }
    }
}

impl Spec {
    /// The quantum of the next slice: fixed, or `factor` × the short-request EMA.
    pub fn quantum_ns(&self, short_ema_ns: u64, factor: f64) -> u64 {
        self.fixed_quantum_ns.unwrap_or_else(|| super::quantum::quantum_ns(short_ema_ns, factor))
    }
}

/// Tiny Quanta's JSQ: the worker with the fewest queued requests (`lens`, busy ones counted as
/// one more); ties go to the lowest index. `None` for no workers.
pub fn shortest_queue(lens: impl IntoIterator<Item = usize>) -> Option<usize> {
    lens.into_iter().enumerate().min_by_key(|&(i, len)| (len, i)).map(|(i, _)| i)
}

/// JBSQ refill: how many requests a worker holding `held` may take from the central queue.
pub fn jbsq_room(held: usize, bound: usize) -> usize {
    bound.saturating_sub(held)
}

/// DARC's reservation: enough workers for the short requests' share of the work, at least one,
/// and at least one left for long requests.
pub fn darc_reserved(workers: usize, short_work_share: f64) -> usize {
    let want = (workers as f64 * short_work_share.clamp(0.0, 1.0)).ceil() as usize;
    want.clamp(1, workers.saturating_sub(1).max(1))
}

/// DARC: may worker `w` run long requests, with `reserved` workers kept for short ones?
pub fn darc_runs_long(w: usize, reserved: usize) -> bool {
    w >= reserved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_system_has_a_name_and_a_spec() {
        for p in SchedPolicy::ALL {
            assert_eq!(SchedPolicy::named(p.name()), Some(p));
        }
        assert_eq!(SchedPolicy::named("linux"), None);
        // Where requests wait, stealing, requeueing, JBSQ's bound and DARC's classes are the
        // built-in implementations' (`builtin.rs`), tested on the queue model (`model.rs`).
        let s = SchedPolicy::Synergy.spec();
        assert_eq!(s.preemptible, Preemptible::MarkedLong);
        assert_eq!(s.quantum_ns(1_000, 2.0), 2_000, "adaptive: factor × EMA");
        let sj = SchedPolicy::Shinjuku.spec();
        assert_eq!((sj.preemptible, sj.quantum_ns(1_000, 2.0)), (Preemptible::Every, 5_000));
        assert_eq!(SchedPolicy::Concord.spec().quantum_ns(1_000, 2.0), 5_000);
        let tq = SchedPolicy::Tq.spec();
        assert_eq!((tq.preemptible, tq.quantum_ns(0, 2.0)), (Preemptible::Every, 2_000));
        for p in [SchedPolicy::Cfcfs, SchedPolicy::Dfcfs, SchedPolicy::Darc] {
            assert_eq!(p.spec().preemptible, Preemptible::Never, "{p:?} runs to completion");
        }
    }

    #[test]
    fn jsq_jbsq_and_darc_decisions() {
        assert_eq!(shortest_queue([3, 1, 1, 2]), Some(1), "ties to the lowest index");
        assert_eq!(shortest_queue([0]), Some(0));
        assert_eq!(shortest_queue(std::iter::empty()), None);
        assert_eq!((jbsq_room(0, 2), jbsq_room(1, 2), jbsq_room(2, 2), jbsq_room(5, 2)), (2, 1, 0, 0));
        // High: shorts are ~1% of the work → one of 14 workers; Extreme: 16.6% → 3.
        assert_eq!(darc_reserved(14, 0.0099), 1);
        assert_eq!(darc_reserved(14, 0.166), 3);
        assert_eq!(darc_reserved(2, 0.9), 1, "one worker is always left for long requests");
        assert_eq!(darc_reserved(1, 0.5), 1);
        assert!(!darc_runs_long(0, 1) && darc_runs_long(1, 1));
    }
}
