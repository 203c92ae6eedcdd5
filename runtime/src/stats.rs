//! Counters, updated with relaxed atomics on the hot path and snapshotted for reports.

use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::coresync::CouplingSnapshot;
pub use crate::overload::OverloadSnapshot;

macro_rules! counters {
    ($live:ident, $snap:ident { $($(#[$doc:meta])* $field:ident),* $(,)? }) => {
        #[doc = concat!("Live counters (relaxed atomics, updated on the hot path); [`", stringify!($snap), "`] is a copy.")]
        #[derive(Default, Debug)]
        pub struct $live { $($(#[$doc])* pub $field: AtomicU64,)* }
        #[doc = concat!("The counters of [`", stringify!($live), "`] at one moment; `+=` sums them.")]
        #[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize))]
        pub struct $snap { $($(#[$doc])* pub $field: u64,)* }
        impl $live {
            /// Reads every counter (each alone: the copy is not one atomic moment).
            pub fn snapshot(&self) -> $snap {
                $snap { $($field: self.$field.load(Ordering::Relaxed),)* }
            }
        }
        impl std::ops::AddAssign for $snap {
            fn add_assign(&mut self, o: $snap) { $(self.$field += o.$field;)* }
        }
    };
}

counters!(
    WorkerStats,
    WorkerSnapshot {
        /// Requests taken from the transport.
        admitted,
        /// Requests answered: their handler returned, or they were rejected (counted in
        /// `rejected` too).
        completed,
        /// Requests answered with a reject status instead of running them: by the AQM
        /// (`status::REJECTED`) or by the scheduling policy (`Placement::Reject`).
        rejected,
        /// Placements and requeues in which the scheduling policy named a worker or queue that
        /// does not exist (the request then stayed local, or went to the wait queue).
        policy_errors,
        /// Requests completed that never opened a preemptible region (short ones: they start and
        /// end on one worker, and feed its short-request EMA).
        short_done,
        /// Requests completed that opened a preemptible region (long ones).
        long_done,
        /// Green threads parked on the wait queue by an interrupt (direct or deferred).
        preemptions,
        /// Interrupts that arrived inside a no-preemption section and were taken when it ended.
        preempt_deferred,
        /// Interrupts that could not preempt: no green thread available (the request then runs to
        /// completion) or too little stack left for the preemption frame (the timer core retries after `policy::timer::INTERRUPT_RETRY_NS`).
        preempt_skipped,
        /// Interrupts that found no long request running (it had finished meanwhile).
        interrupts_ignored,
        /// Compiler-interrupt requests a probe took (each then preempted or was deferred).
        ci_taken,
        /// Voluntary parks (contended green mutex).
        yields,
        /// Times a request's green thread blocked to wait (`synergy::wait`) on this worker.
        waits,
        /// Green threads resumed from the wait queue on this worker.
        resumes,
        /// Of those, resumed here though another worker had parked them (the request changed OS
        /// thread). Always 0 while the panic guard pins preempted requests (`panic_guard`).
        migrations,
        /// Preempted threads this worker selected but handed to the worker that parked them,
        /// because the panic guard pins them there.
        pinned_forwards,
        /// Successful steal batches, and requests moved by them.
        steals,
        /// Requests moved by those steal batches.
        stolen,
        /// Handlers that panicked (each answered once: by the handler's own reply if it sent
        /// one, else with the handler-panicked status).
        handler_panics,
        /// Times the worker parked (`--idle park`), and was woken again by the timer core (or by
        /// shutdown).
        parks,
        /// Times a parked worker was woken again.
        wakeups,
        /// Sum over wake-ups of the time from the waker's decision to the worker running again.
        wake_latency_ns,
        /// Time spent parked.
        parked_ns,
        /// CPU time of the worker's OS thread (`CLOCK_THREAD_CPUTIME_ID`), recorded as it exits.
        cpu_ns,
    }
);

counters!(
    TimerStats,
    TimerSnapshot {
        /// Interrupts sent (quantum expired and the worker's queue non-empty).
        interrupts_sent,
        /// Compiler-interrupt requests posted (`ci` modes), before any fallback.
        ci_requests,
        /// Grace periods that ended with the request unanswered, each followed by an interrupt
        /// (the hybrid modes) or by the request again (`ci` alone). A request whose fallback
        /// interrupt is deferred sees one per quantum, so this can exceed `ci_requests`.
        ci_unanswered,
        /// Interrupt deliveries that failed (errno from the mechanism).
        interrupt_errors,
        /// Quantum expired with an empty queue: timer renewed instead of preempting.
        renewals,
        /// Times the wait queue became congested.
        congestion_on,
        /// Timer-core loop iterations (published every `PERIOD_FLUSH` loops and when it stops).
        loops,
        /// Parked workers woken because work waited for them (`--idle park`).
        grants,
        /// Times the timer core slept in epoll with every worker parked, and for how long (ns)
        /// (`--idle park` over a transport with arrival descriptors: `timer_sleep`).
        sleeps,
        /// Nanoseconds the timer core spent in those sleeps.
        slept_ns,
        /// The timer core's thread CPU time (ns), recorded as it exits.
        cpu_ns,
        /// Control periods in which the credit pool grew (D_m ≤ D_t) or shrank (`--overload credits`).
        credit_increases,
        /// Control periods in which the credit pool shrank (D_m > D_t).
        credit_decreases,
        /// Control periods in which D_m exceeded D_drop (the AQM rejected what started then).
        rejecting_periods,
        /// Control periods the overload controller ran (`--overload credits`).
        control_periods,
        /// Shinjuku: new requests the dispatchers answered REJECTED because their queues were
        /// at `shinjuku_queue_limit`, and the most units any dispatcher's queues held.
        dispatcher_rejects,
        /// The most units any dispatcher's queues held at once.
        dispatcher_queue_max,
    }
);

impl TimerStats {
    /// Counts one period of the overload controller (`--overload credits`).
    pub fn count_control_period(&self, period: crate::overload::ControlPeriod) {
        use crate::policy::overload::CreditChange;
        self.control_periods.fetch_add(1, Ordering::Relaxed);
        match period.change {
            CreditChange::Increased => self.credit_increases.fetch_add(1, Ordering::Relaxed),
            CreditChange::Decreased => self.credit_decreases.fetch_add(1, Ordering::Relaxed),
            CreditChange::Held => 0,
        };
        if period.rejecting {
            self.rejecting_periods.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Timer-core loop periods (time from one loop's clock read to the next's) in power-of-two
/// buckets: bucket `i` counts periods in [2^i, 2^(i+1)) ns, bucket 0 also those under 1 ns. The
/// timer core counts into a local array and publishes it every `PERIOD_FLUSH` loops and at exit.
pub const PERIOD_BUCKETS: usize = 40;
/// Loops between two publications of the timer core's period histogram.
pub const PERIOD_FLUSH: u64 = 4096;

#[derive(Debug)]
/// The timer core's loop periods, published (`PERIOD_BUCKETS` power-of-two buckets).
pub struct PeriodHistogram {
    buckets: [AtomicU64; PERIOD_BUCKETS],
}

impl Default for PeriodHistogram {
    fn default() -> Self {
        PeriodHistogram { buckets: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

/// The bucket of a period of `ns`.
pub fn period_bucket(ns: u64) -> usize {
    (63 - ns.max(1).leading_zeros() as usize).min(PERIOD_BUCKETS - 1)
}

/// One loop's periods (the timer core's, or a Shinjuku dispatcher's), counted locally and
/// published in batches of `PERIOD_FLUSH`: each loop is the only writer of its local counts, and
/// a locked add per loop would cost more than the rest of an idle loop.
pub struct LoopPeriods {
    local: [u64; PERIOD_BUCKETS],
    last: u64,
    loops: u64,
}

impl LoopPeriods {
    /// Starts counting loop periods at `now_ns`.
    pub fn new(now_ns: u64) -> LoopPeriods {
        LoopPeriods { local: [0; PERIOD_BUCKETS], last: now_ns, loops: 0 }
    }

    /// Counts the loop that began at `now_ns`.
    #[inline]
    pub fn tick(&mut self, now_ns: u64, periods: &PeriodHistogram, stats: &TimerStats) {
        self.local[period_bucket(now_ns.saturating_sub(self.last))] += 1;
        self.last = now_ns;
        self.loops += 1;
        if self.loops.is_multiple_of(PERIOD_FLUSH) {
            periods.add(&mut self.local);
            stats.loops.fetch_add(PERIOD_FLUSH, Ordering::Relaxed);
        }
    }

    /// The time since the last loop is not a loop period (the timer core slept in epoll).
    pub fn skip_to(&mut self, now_ns: u64) {
        self.last = now_ns;
    }

    /// Publishes what the last batch left.
    pub fn flush(mut self, periods: &PeriodHistogram, stats: &TimerStats) {
        periods.add(&mut self.local);
        stats.loops.fetch_add(self.loops % PERIOD_FLUSH, Ordering::Relaxed);
    }
}

impl PeriodHistogram {
    /// Adds a local histogram's counts and clears it.
    pub fn add(&self, local: &mut [u64; PERIOD_BUCKETS]) {
        for (b, n) in self.buckets.iter().zip(local.iter_mut()) {
            if *n != 0 {
                b.fetch_add(std::mem::take(n), Ordering::Relaxed);
            }
        }
    }

    /// The published buckets.
    pub fn snapshot(&self) -> PeriodSnapshot {
        PeriodSnapshot { buckets: self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect() }
    }
}

/// A snapshot of `PeriodHistogram`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PeriodSnapshot {
    /// Counts per bucket (`PERIOD_BUCKETS`).
    pub buckets: Vec<u64>,
}

impl PeriodSnapshot {
    /// Loop periods counted in all.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Upper bound (ns, exclusive) of the bucket holding quantile `q` (0..=1) of the periods, or
    /// 0 without any.
    pub fn quantile_upper_ns(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return 1u64 << (i + 1);
            }
        }
        1u64 << PERIOD_BUCKETS
    }
}

/// Counters of a whole run.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RunStats {
    /// Per worker, in worker order.
    pub workers: Vec<WorkerSnapshot>,
    /// The workers' counters summed.
    pub total: WorkerSnapshot,
    /// The timer core's (or the dispatchers') counters.
    pub timer: TimerSnapshot,
    /// The timer core's loop periods.
    pub timer_periods: PeriodSnapshot,
    /// Green threads allocated now (running, parked, blocked or pooled).
    pub green_threads_live: u64,
    /// Time from the runtime's start to this snapshot (to the end of `shutdown` for its result).
    pub wall_ns: u64,
    /// The overload controller's state (`--overload credits`).
    pub overload: Option<crate::overload::OverloadSnapshot>,
}

impl RunStats {
    /// Worker CPU time over worker wall time (1.0: every worker busy or spinning all the time).
    /// Meaningful once the workers have exited (`Runtime::shutdown`), which records their CPU time.
    pub fn cpu_per_worker_wall(&self) -> f64 {
        let wall = self.wall_ns as f64 * self.workers.len() as f64;
        if wall > 0.0 {
            self.total.cpu_ns as f64 / wall
        } else {
            0.0
        }
    }

    /// The timer core's CPU time over the wall time (1.0: it spun the whole run; less where it
    /// slept with every worker parked). Meaningful after `Runtime::shutdown`.
    pub fn timer_cpu_per_wall(&self) -> f64 {
        if self.wall_ns == 0 {
            0.0
        } else {
            self.timer.cpu_ns as f64 / self.wall_ns as f64
        }
    }

    /// Time-weighted cores in use: workers minus the time they spent parked, over the wall time.
    pub fn cores_in_use(&self) -> f64 {
        if self.wall_ns == 0 {
            return 0.0;
        }
        self.workers.len() as f64 - self.total.parked_ns as f64 / self.wall_ns as f64
    }

    /// Mean wake-up latency in ns (0 without wake-ups).
    pub fn mean_wake_latency_ns(&self) -> f64 {
        if self.total.wakeups == 0 {
            0.0
        } else {
            self.total.wake_latency_ns as f64 / self.total.wakeups as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_land_in_power_of_two_buckets_and_quantiles_bound_them() {
        assert_eq!((period_bucket(0), period_bucket(1), period_bucket(2), period_bucket(3)), (0, 0, 1, 1));
        assert_eq!(period_bucket(1023), 9);
        assert_eq!(period_bucket(1024), 10);
        assert_eq!(period_bucket(u64::MAX), PERIOD_BUCKETS - 1);
        let h = PeriodHistogram::default();
        let mut local = [0u64; PERIOD_BUCKETS];
        for ns in [100u64, 100, 100, 100, 100, 100, 100, 100, 100, 5_000] {
            local[period_bucket(ns)] += 1;
        }
        h.add(&mut local);
        assert!(local.iter().all(|&n| n == 0), "add clears the local counts");
        let s = h.snapshot();
        assert_eq!(s.count(), 10);
        assert_eq!(s.quantile_upper_ns(0.5), 128, "100 ns lies in [64, 128)");
        assert_eq!(s.quantile_upper_ns(0.9), 128);
        assert_eq!(s.quantile_upper_ns(0.99), 8192, "5 µs lies in [4096, 8192)");
        assert_eq!(PeriodSnapshot::default().quantile_upper_ns(0.5), 0);
    }
}
