//! Latency and slowdown summaries of a run.

use serde::Serialize;

/// Exact percentile (nearest-rank) of an ascending slice.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // The epsilon keeps exact ranks exact (0.999 × 1000 is 999.0000000000001 in binary).
    let rank = (p * sorted.len() as f64 / 100.0 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A latency sample's summary (nearest-rank percentiles).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Values summarised.
    pub count: usize,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// The largest value.
    pub max_ns: u64,
    /// The mean.
    pub mean_ns: f64,
}

impl Summary {
    /// The summary of `values` (any order).
    pub fn of(mut values: Vec<u64>) -> Summary {
        values.sort_unstable();
        let mean =
            if values.is_empty() { 0.0 } else { values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64 };
        Summary {
            count: values.len(),
            p50_ns: percentile(&values, 50.0),
            p99_ns: percentile(&values, 99.0),
            p999_ns: percentile(&values, 99.9),
            max_ns: values.last().copied().unwrap_or(0),
            mean_ns: mean,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 50.0), 500);
        assert_eq!(percentile(&v, 99.9), 999);
        assert_eq!(percentile(&v, 100.0), 1000);
        assert_eq!(percentile(&[7], 99.9), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        let s = Summary::of(vec![3, 1, 2]);
        assert_eq!((s.count, s.p50_ns, s.max_ns, s.mean_ns), (3, 2, 3, 2.0));
    }
}
