//! A token bucket as GCRA (the generic cell rate algorithm): one timestamp per tenant, the
//! theoretical arrival time (TAT). It is what `--steer tokens`'s eBPF program computes per
//! datagram in the kernel; here it is plain Rust, so its behaviour is specified by tests and
//! the kernel's can be checked against it.
//!
//! A tenant may send `burst` requests at once and one per `interval_ns` after that: a request
//! at `now` passes if `max(TAT, now) + interval - now <= burst × interval`, which moves TAT
//! there; otherwise it is dropped and TAT stays.

/// Parameters of the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Time between two requests once the burst is spent (ns).
    pub interval_ns: u64,
    /// Requests a tenant may send at once.
    pub burst: u64,
}

impl Gcra {
    /// A bucket of `rate_per_s` requests per second after a burst of `burst` (both at least 1).
    pub fn per_second(rate_per_s: u64, burst: u64) -> Gcra {
        Gcra { interval_ns: (1_000_000_000 / rate_per_s.max(1)).max(1), burst: burst.max(1) }
    }

    /// Whether a request at `now` passes, updating the tenant's `tat` (`None`: a tenant not
    /// seen yet, whose bucket is full).
    pub fn admit(&self, tat: &mut Option<u64>, now: u64) -> bool {
        let next = tat.map_or(now, |t| t.max(now)) + self.interval_ns;
        if next - now > self.burst * self.interval_ns {
            return false;
        }
        *tat = Some(next);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval() {
        let g = Gcra::per_second(1_000, 3);
        assert_eq!(g.interval_ns, 1_000_000);
        let mut tat = None;
        let at_zero: Vec<bool> = (0..5).map(|_| g.admit(&mut tat, 0)).collect();
        assert_eq!(at_zero, [true, true, true, false, false], "the burst, then nothing");
        assert!(!g.admit(&mut tat, 999_999), "one interval not yet over");
        assert!(g.admit(&mut tat, 1_000_000) && !g.admit(&mut tat, 1_000_000));
        // Idle long enough: the bucket is full again, but never fuller than the burst.
        let later: Vec<bool> = (0..4).map(|_| g.admit(&mut tat, 100_000_000)).collect();
        assert_eq!(later, [true, true, true, false]);
    }

    #[test]
    fn under_constant_overload_the_rate_passes() {
        let g = Gcra::per_second(10_000, 5); // one per 100 µs
        let mut tat = None;
        // One request every 10 µs for 100 ms: 5 + 1000 pass.
        let passed = (0..10_000u64).filter(|i| g.admit(&mut tat, i * 10_000)).count();
        assert_eq!(passed, 5 + 999);
    }
}
