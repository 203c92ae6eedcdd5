//! The timer core's decisions (thesis Algorithm 5.3): job-aware conditional preemption and the
//! switch between QUANTUM_FACTOR and CONGESTED_QUANTUM_FACTOR.

use super::congestion::CongestionDetector;

/// A disarmed timer (the worker runs no long request).
pub const DISARMED: u64 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// What the timer core does about one worker at one scan (`decide`).
pub enum TimerDecision {
    /// No long request on this worker.
    Disarmed,
    /// Quantum not yet expired.
    Running,
    /// Quantum expired and the worker's queue holds work: interrupt it. `next_deadline` is armed
    /// too, so that a deferred or lost interrupt is retried, no sooner than `INTERRUPT_RETRY_NS` later.
    Preempt {
        /// When the worker is to be looked at again (ns, runtime clock).
        next_deadline: u64,
    },
    /// Quantum expired but nothing waits behind the request: let it run another quantum.
    Renew {
        /// When the worker is to be looked at again (ns, runtime clock).
        next_deadline: u64,
    },
}

/// How long an interrupt sent for an arming is given to take effect before the same arming is
/// interrupted again. The retry exists for interrupts that reached the worker but could not
/// preempt (no green thread free, too little stack: `preempt_skipped`); resending sooner than the
/// delivery path takes only sends duplicates, each of which costs the worker a trap and a handler.
/// Algorithm 5.3 re-arms one quantum on, which assumes delivery within a quantum (UINTR, under
/// 1 µs); a signal's whole interruption took 3.1-3.9 µs (p50) on a 16-vCPU KVM guest and 9-10 µs
/// on a 2-vCPU one against a 2 µs quantum, and there 40-80% of the interrupts sent were
/// duplicates that arrived after the preemption (`interrupts_ignored`; docs/results/scale-*).
pub const INTERRUPT_RETRY_NS: u64 = 50_000;

/// When an arming interrupted at `now_ns` may be interrupted again.
pub fn retry_deadline(now_ns: u64, quantum_ns: u64) -> u64 {
    now_ns + quantum_ns.max(INTERRUPT_RETRY_NS)
}

/// Lines 13–18 of Algorithm 5.3 for one worker, with the retry of an interrupt sent no sooner than
/// `INTERRUPT_RETRY_NS`.
pub fn decide(now_ns: u64, deadline_ns: u64, queue_nonempty: bool, quantum_ns: u64) -> TimerDecision {
    if deadline_ns == DISARMED {
        TimerDecision::Disarmed
    } else if now_ns < deadline_ns {
        TimerDecision::Running
    } else if queue_nonempty {
        TimerDecision::Preempt { next_deadline: retry_deadline(now_ns, quantum_ns) }
    } else {
        TimerDecision::Renew { next_deadline: now_ns + quantum_ns }
    }
}

/// What the timer core does, in a compiler-interrupt mode, for a worker whose quantum expired
/// with work waiting (`TimerDecision::Preempt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CiStep {
    /// Post a request for this arming and wait a grace period for a probe to answer it.
    Request,
    /// The request for this arming stayed unanswered for the grace period (the request runs code
    /// without probes): send the fallback interrupt.
    Fallback,
    /// Unanswered, and there is no fallback (`ci` alone): post it again.
    RequestAgain,
}

/// `posted`: the worker's request word (the arming last asked to end, 0 after a probe took it);
/// `armed`: the arming whose quantum expired now.
pub fn ci_step(posted: u64, armed: u64, has_fallback: bool) -> CiStep {
    if posted != armed {
        CiStep::Request
    } else if has_fallback {
        CiStep::Fallback
    } else {
        CiStep::RequestAgain
    }
}

/// What changed when the wait queue's congestion state flipped (lines 5–12).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CongestionChange {
    /// Whether workers should look at the wait queue before new requests.
    pub check_wait_queue: bool,
    /// The quantum factor in force from now on.
    pub factor: f64,
}

/// Lines 1–12 of Algorithm 5.3: the quantum factor and the check_wait_queue flag.
#[derive(Debug, Clone)]
pub struct QuantumControl {
    quantum_factor: f64,
    congested_factor: f64,
    detector: CongestionDetector,
    last_state: bool,
}

impl QuantumControl {
    /// A controller with the normal and congested quantum factors and THRESH_WQD, the wait queue's producer index at `now_ns` being `producer`.
    pub fn new(quantum_factor: f64, congested_factor: f64, thresh_wqd_ns: u64, now_ns: u64, producer: u64) -> Self {
        QuantumControl {
            quantum_factor,
            congested_factor,
            detector: CongestionDetector::new(thresh_wqd_ns, now_ns, producer),
            last_state: false,
        }
    }

    /// The factor in force now.
    pub fn factor(&self) -> f64 {
        if self.last_state {
            self.congested_factor
        } else {
            self.quantum_factor
        }
    }

    /// Feeds the wait queue's indexes; returns the new settings when the state flipped.
    pub fn tick(&mut self, now_ns: u64, producer: u64, consumer: u64) -> Option<CongestionChange> {
        let state = self.detector.poll(now_ns, producer, consumer);
        if state == self.last_state {
            return None;
        }
        self.last_state = state;
        Some(CongestionChange { check_wait_queue: state, factor: self.factor() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_preemption() {
        assert_eq!(decide(100, DISARMED, true, 10), TimerDecision::Disarmed);
        // Compiler interrupts: request first; the same arming still posted a grace period later
        // falls back (or asks again without a fallback); a new arming is asked afresh.
        assert_eq!(ci_step(0, 5, true), CiStep::Request);
        assert_eq!(ci_step(5, 5, true), CiStep::Fallback);
        assert_eq!(ci_step(5, 5, false), CiStep::RequestAgain);
        assert_eq!(ci_step(5, 6, true), CiStep::Request);
        assert_eq!(decide(100, 150, true, 10), TimerDecision::Running);
        assert_eq!(decide(150, 150, true, 10), TimerDecision::Preempt { next_deadline: 150 + INTERRUPT_RETRY_NS });
        assert_eq!(decide(170, 150, false, 10), TimerDecision::Renew { next_deadline: 180 });
    }

    #[test]
    fn an_interrupt_is_not_resent_before_it_could_arrive() {
        // A 2 µs quantum (QUANTUM_FACTOR 2 × 1 µs shorts): the same arming is interrupted again
        // only after the retry time, not one quantum on (a signal takes longer than that).
        let TimerDecision::Preempt { next_deadline } = decide(10_000, 10_000, true, 2_000) else {
            panic!("work waits behind an expired quantum: preempt");
        };
        assert_eq!(next_deadline, 10_000 + INTERRUPT_RETRY_NS);
        // A quantum longer than the retry time keeps its own period.
        assert_eq!(
            decide(10_000, 10_000, true, 2 * INTERRUPT_RETRY_NS),
            TimerDecision::Preempt { next_deadline: 10_000 + 2 * INTERRUPT_RETRY_NS }
        );
    }

    #[test]
    fn factor_and_flag_follow_congestion() {
        let mut c = QuantumControl::new(2.0, 20.0, 10, 0, 0);
        assert_eq!(c.factor(), 2.0);
        assert_eq!(c.tick(10, 4, 0), None, "first check only records the producer index");
        assert_eq!(c.tick(20, 4, 1), Some(CongestionChange { check_wait_queue: true, factor: 20.0 }));
        assert_eq!(c.factor(), 20.0);
        assert_eq!(c.tick(25, 4, 4), None, "between checks nothing changes");
        assert_eq!(c.tick(30, 4, 4), Some(CongestionChange { check_wait_queue: false, factor: 2.0 }));
    }

    #[test]
    fn thresh_zero_never_raises_the_flag() {
        let mut c = QuantumControl::new(2.0, 20.0, 0, 0, 0);
        for t in 0..100 {
            assert_eq!(c.tick(t * 1_000, 100, 0), None);
        }
        assert_eq!(c.factor(), 2.0);
    }
}
