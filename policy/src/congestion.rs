//! Wait-queue congestion detection (thesis §5.1.3.1, after Shenango's congestion signal).
//!
//! Every THRESH_WQD the detector compares the wait queue's consumer index with the producer index
//! it recorded at the previous check: if the consumers have not yet passed it, some preempted
//! request has waited at least THRESH_WQD. THRESH_WQD = 0 means "never congested".

#[derive(Debug, Clone)]
/// Says whether the wait queue is congested (see the module docs).
pub struct CongestionDetector {
    thresh_ns: u64,
    next_check_ns: u64,
    last_producer: u64,
    congested: bool,
}

impl CongestionDetector {
    /// A detector checking every `thresh_ns` from `now_ns`, the wait queue's producer index then being `producer`.
    pub fn new(thresh_ns: u64, now_ns: u64, producer: u64) -> Self {
        CongestionDetector {
            thresh_ns,
            next_check_ns: now_ns.saturating_add(thresh_ns),
            last_producer: producer,
            congested: false,
        }
    }

    /// Called often; re-evaluates only when an interval has elapsed. Returns the current state.
    pub fn poll(&mut self, now_ns: u64, producer: u64, consumer: u64) -> bool {
        if self.thresh_ns == 0 {
            return false;
        }
        if now_ns >= self.next_check_ns {
            self.congested = consumer < self.last_producer;
            self.last_producer = producer;
            self.next_check_ns = now_ns.saturating_add(self.thresh_ns);
        }
        self.congested
    }

    /// Whether the last check found a preempted request that waited at least THRESH_WQD.
    pub fn is_congested(&self) -> bool {
        self.congested
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_threshold_is_never_congested() {
        let mut d = CongestionDetector::new(0, 0, 0);
        assert!(!d.poll(1_000_000, 100, 0));
    }

    #[test]
    fn congested_only_when_old_items_were_not_consumed_within_an_interval() {
        let mut d = CongestionDetector::new(10, 0, 0);
        // 3 items enqueued, interval not over yet: no decision.
        assert!(!d.poll(5, 3, 0));
        // First check: nothing was enqueued before the previous check, so not congested yet.
        assert!(!d.poll(10, 3, 0));
        // Second check: the 3 items recorded last time are still not consumed.
        assert!(d.poll(20, 3, 1));
        // The consumers caught up past the recorded producer index: no longer congested.
        assert!(!d.poll(30, 5, 3));
        // Items enqueued since (5 recorded) got consumed in time.
        assert!(!d.poll(40, 5, 5));
    }

    #[test]
    fn state_holds_between_checks() {
        let mut d = CongestionDetector::new(10, 0, 2);
        assert!(d.poll(10, 2, 0));
        assert!(d.poll(15, 2, 2), "no re-evaluation before the next interval");
        assert!(!d.poll(20, 2, 2));
    }
}
