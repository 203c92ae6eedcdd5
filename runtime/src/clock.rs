//! A fast monotonic nanosecond clock shared by workers and the timer core.
//!
//! With an invariant TSC (constant_tsc + nonstop_tsc) the clock is `rdtsc` scaled by a factor
//! calibrated once against CLOCK_MONOTONIC; otherwise (e.g. some emulators) it is CLOCK_MONOTONIC.

use std::sync::OnceLock;

struct Calibration {
    /// ns per tick as a 32.32 fixed-point number; 0 when the TSC is not used.
    mult: u64,
    base_tsc: u64,
}

static CAL: OnceLock<Calibration> = OnceLock::new();

/// Whether the CPU claims an invariant TSC (CPUID 0x8000_0007 EDX bit 8: constant rate in every
/// power state), whatever SYNERGY_NO_TSC says.
pub fn cpu_has_invariant_tsc() -> bool {
    raw_cpuid::CpuId::new().get_advanced_power_mgmt_info().is_some_and(|a| a.has_invariant_tsc())
}

fn invariant_tsc() -> bool {
    cpu_has_invariant_tsc() && std::env::var_os("SYNERGY_NO_TSC").is_none()
}

/// The kernel clock `id` (CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_THREAD_CPUTIME_ID, ...) in ns;
/// 0 for a clock the kernel does not have.
pub fn read_ns(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer; an unknown clock id only makes the call fail (ts stays 0).
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn mono_ns() -> u64 {
    read_ns(libc::CLOCK_MONOTONIC)
}

#[inline(always)]
/// Reads the time-stamp counter (`rdtsc`): cycles, not nanoseconds (`tsc_hz` converts).
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no preconditions in user mode on Linux (CR4.TSD is clear).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// `rdtsc` fenced on both sides, so that it is not executed before earlier loads or after later
/// ones: the stamps of the interrupt microbenchmark.
#[inline(always)]
pub fn rdtsc_ordered() -> u64 {
    // SAFETY: lfence and rdtsc have no preconditions (SSE2 is part of x86-64).
    unsafe {
        core::arch::x86_64::_mm_lfence();
        let t = core::arch::x86_64::_rdtsc();
        core::arch::x86_64::_mm_lfence();
        t
    }
}

/// Nanoseconds per TSC tick, measured against the OS clock over `ms` milliseconds (whether or
/// not the CPU claims an invariant TSC).
pub fn measure_ns_per_tick(ms: u64) -> f64 {
    let (_, ticks, ns) = sample_tsc(ms);
    ns as f64 / ticks as f64
}

/// One TSC reading and one CLOCK_MONOTONIC reading taken at (nearly) the same instant: the OS
/// read is bracketed by two TSC reads, and of a few tries the one with the tightest bracket is
/// kept, its TSC stamp the bracket's midpoint. A thread descheduled inside one try (a busy
/// machine) only loses that try, so the pair is never off by a time slice (issue 38, C1).
fn paired_read() -> (u64, u64) {
    let mut best = (u64::MAX, 0u64, 0u64);
    for _ in 0..7 {
        let c0 = rdtsc_ordered();
        let ns = mono_ns();
        let c1 = rdtsc_ordered();
        let width = c1.wrapping_sub(c0);
        if width < best.0 {
            best = (width, c0 + width / 2, ns);
        }
    }
    (best.1, best.2)
}

/// Spins for `ms` milliseconds of OS time: (TSC at the start, TSC ticks elapsed (≥ 1), ns elapsed),
/// both ends taken with `paired_read`.
fn sample_tsc(ms: u64) -> (u64, u64, u64) {
    let (c0, m0) = paired_read();
    while mono_ns() - m0 < ms * 1_000_000 {
        std::hint::spin_loop();
    }
    let (c1, m1) = paired_read();
    (c0, c1.saturating_sub(c0).max(1), m1 - m0)
}

fn calibrate() -> Calibration {
    if !invariant_tsc() {
        return Calibration { mult: 0, base_tsc: 0 };
    }
    let (c0, ticks, ns) = sample_tsc(20);
    Calibration { mult: ((ns as u128) << 32).checked_div(ticks as u128).unwrap_or(0) as u64, base_tsc: c0 }
}

/// Calibrates the clock (about 20 ms the first time); later calls are free.
pub fn init() {
    CAL.get_or_init(calibrate);
}

/// Nanoseconds since an arbitrary start, monotonic; never 0 (0 marks "disarmed" timers).
#[inline]
pub fn now_ns() -> u64 {
    let cal = CAL.get_or_init(calibrate);
    if cal.mult == 0 {
        return mono_ns();
    }
    let ticks = rdtsc().wrapping_sub(cal.base_tsc);
    (((ticks as u128 * cal.mult as u128) >> 32) as u64) + 1
}

/// Whether `now_ns` is TSC-based (for reports).
pub fn uses_tsc() -> bool {
    CAL.get_or_init(calibrate).mult != 0
}

/// Spins for `ns` nanoseconds of wall time (a request "of exactly this service time").
#[inline]
pub fn spin_for(ns: u64) {
    let end = now_ns() + ns;
    while now_ns() < end {
        std::hint::spin_loop();
    }
}

/// A gap between two clock readings longer than this means the spinning thread was not running
/// (preempted, parked or descheduled); it does not count as work.
pub const OFF_CPU_GAP_NS: u64 = 1_000;

/// Spins until `ns` nanoseconds of *running* time were spent: time while the green thread was
/// preempted or the OS thread descheduled is not counted, so a synthetic request costs exactly
/// its service time however often it is interrupted.
#[inline]
pub fn spin_work(ns: u64) {
    let mut done = 0u64;
    let mut last = now_ns();
    while done < ns {
        std::hint::spin_loop();
        let t = now_ns();
        let d = t.saturating_sub(last);
        if d < OFF_CPU_GAP_NS {
            done += d;
        }
        last = t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Over 200 ms, our clock and CLOCK_MONOTONIC agree within 1 %: each end is a bracketed
    /// pair (`paired_read`), so a deschedule between the two reads cannot skew it, and the
    /// calibration it checks was made the same way.
    #[test]
    fn monotonic_and_close_to_the_os_clock() {
        init();
        let pair = || {
            let mut best = (u64::MAX, 0, 0);
            for _ in 0..7 {
                let a = now_ns();
                let m = mono_ns();
                let b = now_ns();
                assert!(b >= a, "now_ns went backwards: {a} then {b}");
                if b - a < best.0 {
                    best = (b - a, a + (b - a) / 2, m);
                }
            }
            (best.1, best.2)
        };
        let (a, m0) = pair();
        std::thread::sleep(Duration::from_millis(200));
        let (b, m1) = pair();
        assert!(b > a);
        let ours = (b - a) as f64;
        let os = (m1 - m0) as f64;
        assert!((ours / os - 1.0).abs() < 0.01, "tsc {ours} vs os {os}");
    }
}
