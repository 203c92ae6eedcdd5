//! A small, seedable PRNG (SplitMix64) for reproducible workloads; no external dependency.

/// SplitMix64: its whole state is one `u64`, so a seed names a sequence.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exponentially distributed with the given mean (Poisson inter-arrival times).
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.next_f64()).ln()
    }

    /// Standard normal (Box-Muller; one of the pair, two uniforms per draw).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]: ln stays finite
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Lognormal with the given mean and standard deviation (of the lognormal itself, not of its
    /// logarithm): ln X ~ N(μ, s²) with s² = ln(1 + sd²/mean²), μ = ln(mean) − s²/2.
    pub fn lognormal(&mut self, mean: f64, sd: f64) -> f64 {
        let s2 = (1.0 + (sd / mean).powi(2)).ln();
        (mean.ln() - s2 / 2.0 + s2.sqrt() * self.normal()).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lognormal_has_the_mean_and_spread_asked_for() {
        let mut r = SplitMix64::new(11);
        let n = 2_000_000;
        let xs: Vec<f64> = (0..n).map(|_| r.lognormal(1.0, 10.0)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        // Heavy-tailed: the sample mean converges slowly; the median is exact-er: e^μ = 1/√101.
        assert!((mean - 1.0).abs() < 0.15, "{mean}");
        let mut sorted = xs.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[n / 2];
        assert!((median - 101f64.sqrt().recip()).abs() < 0.005, "{median}");
        assert!(xs.iter().all(|&x| x > 0.0));
        let mut z = SplitMix64::new(3);
        let zs: Vec<f64> = (0..200_000).map(|_| z.normal()).collect();
        let m = zs.iter().sum::<f64>() / zs.len() as f64;
        let v = zs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / zs.len() as f64;
        assert!(m.abs() < 0.01 && (v - 1.0).abs() < 0.02, "{m} {v}");
    }

    #[test]
    fn deterministic_and_roughly_uniform_and_exponential() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        let n = 200_000;
        let mean_u: f64 = (0..n).map(|_| a.next_f64()).sum::<f64>() / n as f64;
        assert!((mean_u - 0.5).abs() < 0.01, "{mean_u}");
        let mean_e: f64 = (0..n).map(|_| a.exp(3.0)).sum::<f64>() / n as f64;
        assert!((mean_e - 3.0).abs() < 0.05, "{mean_e}");
    }
}
