//! Counters, updated with relaxed atomics on the hot path and snapshotted for reports.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($live:ident, $snap:ident { $($(#[$doc:meta])* $field:ident),* $(,)? }) => {
        #[derive(Default, Debug)]
        pub struct $live { $($(#[$doc])* pub $field: AtomicU64,)* }
        #[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize))]
        pub struct $snap { $($(#[$doc])* pub $field: u64,)* }
        impl $live {
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
        /// Requests whose handler returned.
        completed,
        short_done,
        long_done,
        /// Green threads parked on the wait queue by an interrupt (direct or deferred).
        preemptions,
        /// Interrupts that arrived inside a no-preemption section and were taken when it ended.
        preempt_deferred,
        /// Interrupts that could not preempt: no green thread available (the request then runs to
        /// completion) or too little stack left for the preemption frame (retried next quantum).
        preempt_skipped,
        /// Interrupts that found no long request running (it had finished meanwhile).
        interrupts_ignored,
        /// Voluntary parks (contended green mutex).
        yields,
        /// Green threads resumed from the wait queue on this worker.
        resumes,
        /// Successful steal batches, and requests moved by them.
        steals,
        stolen,
        handler_panics,
    }
);

counters!(
    TimerStats,
    TimerSnapshot {
        /// Interrupts sent (quantum expired and the worker's queue non-empty).
        interrupts_sent,
        /// Interrupt deliveries that failed (errno from the mechanism).
        interrupt_errors,
        /// Quantum expired with an empty queue: timer renewed instead of preempting.
        renewals,
        /// Times the wait queue became congested.
        congestion_on,
        /// Timer-core loop iterations.
        loops,
    }
);

/// Counters of a whole run.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RunStats {
    pub workers: Vec<WorkerSnapshot>,
    pub total: WorkerSnapshot,
    pub timer: TimerSnapshot,
    pub green_threads_live: u64,
}
