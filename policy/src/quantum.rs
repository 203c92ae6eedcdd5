//! Dynamic quantum sizing (thesis §5.1.1.2): quantum = factor × EMA of short-request service time.

/// Weight of a new sample is 1 / 2^EMA_SHIFT (1/8): smooth enough to ignore a single outlier,
/// quick enough to follow a workload change within a few dozen requests.
pub const EMA_SHIFT: u32 = 3;

/// The EMA before any short request was measured on a worker.
pub const INITIAL_SHORT_NS: u64 = 1_000;

/// No quantum is shorter than this: a preemption costs on the order of a microsecond, so a
/// smaller quantum would spend more time switching than running.
pub const MIN_QUANTUM_NS: u64 = 1_000;

/// Exponential moving average of short-request service times, kept per worker (no sharing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortEma {
    value_ns: u64,
}

impl Default for ShortEma {
    fn default() -> Self {
        ShortEma { value_ns: INITIAL_SHORT_NS }
    }
}

impl ShortEma {
    /// An EMA starting at `initial_ns`.
    pub fn new(initial_ns: u64) -> Self {
        ShortEma { value_ns: initial_ns }
    }

    /// Folds in one measured service time (termination − scheduling time of a short request).
    pub fn update(&mut self, sample_ns: u64) {
        let v = self.value_ns as i128;
        let next = v + ((sample_ns as i128 - v) >> EMA_SHIFT);
        self.value_ns = next.max(0) as u64;
    }

    /// The current average (ns).
    pub fn get(&self) -> u64 {
        self.value_ns
    }
}

/// The preemption quantum for a long request on a worker whose short-request EMA is `ema_ns`.
pub fn quantum_ns(ema_ns: u64, factor: f64) -> u64 {
    let q = (ema_ns as f64 * factor).round();
    if q.is_finite() && q > MIN_QUANTUM_NS as f64 {
        q.min(u64::MAX as f64 / 2.0) as u64
    } else {
        MIN_QUANTUM_NS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_moves_an_eighth_of_the_way() {
        let mut e = ShortEma::new(1_000);
        e.update(1_800);
        assert_eq!(e.get(), 1_100);
        e.update(300);
        assert_eq!(e.get(), 1_000);
    }

    #[test]
    fn ema_converges_to_a_steady_service_time() {
        let mut e = ShortEma::default();
        for _ in 0..200 {
            e.update(2_500);
        }
        assert!((2_490..=2_500).contains(&e.get()), "{}", e.get());
        for _ in 0..200 {
            e.update(500);
        }
        assert!((500..=510).contains(&e.get()), "{}", e.get());
    }

    #[test]
    fn quantum_scales_with_factor_and_has_a_floor() {
        assert_eq!(quantum_ns(1_000, 2.0), 2_000);
        assert_eq!(quantum_ns(2_500, 20.0), 50_000);
        assert_eq!(quantum_ns(300, 2.0), MIN_QUANTUM_NS);
        assert_eq!(quantum_ns(0, 5.0), MIN_QUANTUM_NS);
    }
}
