//! The arithmetic of the interrupt-path microbenchmark (thesis Table 5.1), kept free of threads
//! and clocks so that it can be tested: one `Sample` of six TSC stamps per interrupt, turned
//! into the four phases and summarised by percentiles.
//!
//! Stamps (the same points for every method; see docs/microbench.md):
//! * `st0`, `st1`: sender, right before and right after the send call (tgkill, the kmod_ipi
//!   SEND ioctl, `senduipi`);
//! * `rt0`: receiver, the last stamp its spinning loop wrote before it was interrupted;
//! * `rt1` (= `st2`): receiver, the first user-space code that runs for the interrupt: for
//!   synergy's paths, the probe called from the common preemption entry after the full state was
//!   saved; for the bare tgkill baseline, the first line of its signal handler;
//! * `rt2`: receiver, the last stamp before control goes back (the probe's last line, then the
//!   entry restores the state and returns; the baseline handler's last line, then sigreturn);
//! * `rt3`: receiver, the first stamp of the interrupted loop once it runs again.

use serde::Serialize;
use synergy_eval::report::percentile;

/// TSC stamps of one interrupt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    pub st0: u64,
    pub st1: u64,
    pub rt0: u64,
    pub rt1: u64,
    pub rt2: u64,
    pub rt3: u64,
}

/// Why a sample cannot be right (the stamps come from one invariant TSC, so they are ordered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadSample {
    SendEndsBeforeItStarts,
    HandledBeforeSent,
    InterruptedAfterHandled,
    HandlerEndsBeforeItStarts,
    ResumedBeforeHandlerEnded,
}

/// Durations of one interrupt in TSC ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    /// st1 − st0
    pub send: u64,
    /// st2 − st0, st2 = rt1
    pub propagation: u64,
    /// rt1 − rt0
    pub receive: u64,
    /// rt3 − rt2
    pub ret: u64,
}

impl Sample {
    /// The phases, or what is wrong with the stamps.
    pub fn phases(&self) -> Result<Phases, BadSample> {
        if self.st1 < self.st0 {
            return Err(BadSample::SendEndsBeforeItStarts);
        }
        if self.rt1 < self.st0 {
            return Err(BadSample::HandledBeforeSent);
        }
        if self.rt0 > self.rt1 {
            return Err(BadSample::InterruptedAfterHandled);
        }
        if self.rt2 < self.rt1 {
            return Err(BadSample::HandlerEndsBeforeItStarts);
        }
        if self.rt3 < self.rt2 {
            return Err(BadSample::ResumedBeforeHandlerEnded);
        }
        Ok(Phases {
            send: self.st1 - self.st0,
            propagation: self.rt1 - self.st0,
            receive: self.rt1 - self.rt0,
            ret: self.rt3 - self.rt2,
        })
    }
}

/// p50 and p99.9 of one phase, in ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50_ns: f64,
    pub p999_ns: f64,
}

impl Percentiles {
    /// Of `ticks` (any order), converted with `ns_per_tick`.
    pub fn of(ticks: &mut [u64], ns_per_tick: f64) -> Percentiles {
        if ticks.is_empty() {
            return Percentiles::default();
        }
        ticks.sort_unstable();
        Percentiles {
            p50_ns: percentile(ticks, 50.0) as f64 * ns_per_tick,
            p999_ns: percentile(ticks, 99.9) as f64 * ns_per_tick,
        }
    }
}

/// Summary of one method's samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PhaseSummary {
    /// Samples that passed the ordering checks (the percentiles are over these).
    pub runs: usize,
    /// Samples rejected by the ordering checks.
    pub rejected: usize,
    pub send: Percentiles,
    pub propagation: Percentiles,
    pub receive: Percentiles,
    #[serde(rename = "return")]
    pub ret: Percentiles,
    /// Whole interruption as the interrupted code sees it: rt3 − rt0.
    pub total: Percentiles,
}

pub fn summarize(samples: &[Sample], ns_per_tick: f64) -> PhaseSummary {
    let mut send = Vec::with_capacity(samples.len());
    let mut prop = Vec::with_capacity(samples.len());
    let mut recv = Vec::with_capacity(samples.len());
    let mut ret = Vec::with_capacity(samples.len());
    let mut total = Vec::with_capacity(samples.len());
    let mut rejected = 0;
    for s in samples {
        match s.phases() {
            Ok(p) => {
                send.push(p.send);
                prop.push(p.propagation);
                recv.push(p.receive);
                ret.push(p.ret);
                total.push(s.rt3 - s.rt0);
            }
            Err(_) => rejected += 1,
        }
    }
    PhaseSummary {
        runs: send.len(),
        rejected,
        send: Percentiles::of(&mut send, ns_per_tick),
        propagation: Percentiles::of(&mut prop, ns_per_tick),
        receive: Percentiles::of(&mut recv, ns_per_tick),
        ret: Percentiles::of(&mut ret, ns_per_tick),
        total: Percentiles::of(&mut total, ns_per_tick),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(st0: u64, st1: u64, rt0: u64, rt1: u64, rt2: u64, rt3: u64) -> Sample {
        Sample { st0, st1, rt0, rt1, rt2, rt3 }
    }

    #[test]
    fn phases_are_the_thesis_differences() {
        let p = sample(100, 130, 140, 190, 200, 215).phases().unwrap();
        assert_eq!(p, Phases { send: 30, propagation: 90, receive: 50, ret: 15 });
    }

    #[test]
    fn out_of_order_stamps_are_rejected_with_the_reason() {
        assert_eq!(sample(100, 90, 0, 200, 200, 200).phases(), Err(BadSample::SendEndsBeforeItStarts));
        assert_eq!(sample(100, 110, 0, 99, 120, 130).phases(), Err(BadSample::HandledBeforeSent));
        assert_eq!(sample(100, 110, 201, 200, 220, 230).phases(), Err(BadSample::InterruptedAfterHandled));
        assert_eq!(sample(100, 110, 150, 200, 199, 230).phases(), Err(BadSample::HandlerEndsBeforeItStarts));
        assert_eq!(sample(100, 110, 150, 200, 210, 209).phases(), Err(BadSample::ResumedBeforeHandlerEnded));
    }

    #[test]
    fn percentiles_are_nearest_rank_and_scaled() {
        // 1..=1000 ticks at 0.5 ns/tick: p50 = 500 ticks, p99.9 = 999 ticks.
        let mut v: Vec<u64> = (1..=1000).rev().collect();
        let p = Percentiles::of(&mut v, 0.5);
        assert_eq!(p, Percentiles { p50_ns: 250.0, p999_ns: 499.5 });
        assert_eq!(Percentiles::of(&mut [], 1.0), Percentiles::default());
    }

    #[test]
    fn summary_counts_and_excludes_bad_samples() {
        let mut samples: Vec<Sample> = (0..999u64)
            .map(|i| sample(1000 * i, 1000 * i + 10, 1000 * i + 5, 1000 * i + 40 + i % 7, 1000 * i + 60, 1000 * i + 70))
            .collect();
        samples.push(sample(10, 5, 0, 0, 0, 0));
        let s = summarize(&samples, 1.0);
        assert_eq!((s.runs, s.rejected), (999, 1));
        assert_eq!(s.send.p50_ns, 10.0);
        assert_eq!(s.ret.p999_ns, 10.0);
        assert!(s.propagation.p50_ns >= 40.0 && s.propagation.p999_ns <= 46.0);
        assert!(s.receive.p50_ns >= 35.0 && s.receive.p999_ns <= 41.0);
        assert_eq!(s.total.p50_ns, 65.0);
    }
}
