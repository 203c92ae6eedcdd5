//! The timer core (thesis §5.1.3, Algorithm 5.3): a dedicated thread that watches every worker's
//! timer and queue and the wait queue's progress, and interrupts workers through a `Preempter`.
//! The decisions themselves are `policy::timer`.

use crate::clock;
use crate::overload::CreditControl;
use crate::policy::timer::{ci_step, decide, CiStep, QuantumControl, TimerDecision};
use crate::preempt::Target;
use crate::stats::{LoopPeriods, PeriodHistogram, TimerStats};
use crate::timer_sleep::{TimerSleep, SLEEP_MAX_MS};
use crate::worker::{all_parked_and_nothing_queued, CoreGrants, Shared, WorkerShared};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct TimerParams {
    pub quantum_factor: f64,
    pub congested_quantum_factor: f64,
    pub thresh_wqd_ns: u64,
    pub cpu: Option<usize>,
    /// `sched_yield` after every loop (`Placement::timer_yields`): only where the timer core
    /// time-shares its CPU; a system call per loop is jitter on a microsecond timer.
    pub yield_each_loop: bool,
}

pub fn run_timer_core(
    shared: Arc<Shared>,
    params: TimerParams,
    stop: Arc<AtomicBool>,
    stats: Arc<TimerStats>,
    periods: Arc<PeriodHistogram>,
) {
    if let Some(cpu) = params.cpu {
        if let Err(e) = crate::cpu::pin_current_thread(cpu) {
            log::warn!("timer core: cannot pin to CPU {cpu}: {e}; running unpinned");
        }
    }
    let wq = &shared.wait_queue;
    let mut control = QuantumControl::new(
        params.quantum_factor,
        params.congested_quantum_factor,
        params.thresh_wqd_ns,
        clock::now_ns(),
        wq.producer_index(),
    );
    shared.factor_bits.store(control.factor().to_bits(), Ordering::Relaxed);
    // `--idle park`: the core grants that wake parked workers.
    let mut grants = shared.idle.map(|idle| CoreGrants::new(shared.workers.len(), idle.wake_delay_ns));
    // `--overload credits`: the credit pool and the AQM.
    let mut credits = shared.overload.as_ref().map(CreditControl::new);
    // `--idle park` over a transport with arrival descriptors: sleep while every worker is parked.
    let mut sleep = shared.timer_wake.as_ref().and_then(|wake| {
        TimerSleep::new(wake, &shared.transport.arrival_fds())
            .map_err(|e| log::warn!("timer core: no epoll set ({e}); it polls while workers park"))
            .ok()
    });
    let mut loop_periods = LoopPeriods::new(clock::now_ns());
    while !stop.load(Ordering::Acquire) {
        if let (Some(sleep), Some(wake)) = (sleep.as_mut(), shared.timer_wake.as_ref()) {
            if all_parked_and_nothing_queued(&shared) {
                let t0 = clock::now_ns();
                if sleep.sleep(wake, SLEEP_MAX_MS, || all_parked_and_nothing_queued(&shared)) {
                    stats.sleeps.fetch_add(1, Ordering::Relaxed);
                    stats.slept_ns.fetch_add(clock::now_ns().saturating_sub(t0), Ordering::Relaxed);
                    // The sleep is not a loop period of the timer core's scan.
                    loop_periods.skip_to(clock::now_ns());
                }
            }
        }
        let now = clock::now_ns();
        loop_periods.tick(now, &periods, &stats);
        if let Some(change) = control.tick(now, wq.producer_index(), wq.consumer_index()) {
            shared.factor_bits.store(change.factor.to_bits(), Ordering::Relaxed);
            shared.check_wait_queue.store(change.check_wait_queue, Ordering::Release);
            if change.check_wait_queue {
                stats.congestion_on.fetch_add(1, Ordering::Relaxed);
            }
        }
        scan_workers(&shared, now, control.factor(), &stats);
        if let Some(grants) = grants.as_mut() {
            grants.tick(&shared, now, &stats);
        }
        if let (Some(control), Some(o)) = (credits.as_mut(), shared.overload.as_ref()) {
            if let Some(period) = control.tick(o, now, (wq.producer_index(), wq.consumer_index())) {
                stats.count_control_period(period);
            }
        }
        if params.yield_each_loop {
            // Time-shared with a worker: let it run instead of burning a whole time slice.
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    loop_periods.flush(&periods, &stats);
    stats.cpu_ns.store(crate::park::thread_cpu_ns(), Ordering::Relaxed);
}

/// Interrupts worker `w` through the runtime's preempter (its arming's target already set) and
/// counts the outcome. Shared with Shinjuku's dispatchers.
#[inline]
pub(crate) fn send_interrupt(shared: &Shared, w: &WorkerShared, stats: &TimerStats) {
    let target = Target { tid: w.tid.load(Ordering::Acquire), cpu: w.cpu.load(Ordering::Acquire) };
    match shared.preempter.preempt(target) {
        Ok(()) => stats.interrupts_sent.fetch_add(1, Ordering::Relaxed),
        Err(_) => stats.interrupt_errors.fetch_add(1, Ordering::Relaxed),
    };
}

/// One pass over the workers (Algorithm 5.3's inner loop): for each armed worker whose quantum
/// expired, preempt it if work waits for it, else renew its timer. The disarmed and still-running
/// cases cost one load each; this loop is what limits how many workers one timer core serves
/// (`timer_scan` measures it).
#[inline]
pub(crate) fn scan_workers(shared: &Shared, now: u64, factor: f64, stats: &TimerStats) {
    for w in shared.workers.iter() {
        let deadline = w.deadline.load(Ordering::Acquire);
        if now < deadline || deadline == 0 {
            continue; // cheap path: disarmed or still running its quantum
        }
        // Read after the deadline (the worker publishes the generation first): if the CAS
        // below succeeds, this is the arming whose deadline expired.
        let armed = w.gens.armed.load(Ordering::Acquire);
        // Stopping (`shutdown_within`'s deadline passed): every expired quantum preempts, so a
        // long request parks and its worker can leave.
        let queued = shared.scheduler.preempt_at_quantum_end(w.id, &crate::worker::SharedLoad(shared))
            || shared.abort.load(Ordering::Relaxed);
        let quantum = shared.scheduler.quantum_ns(w.short_ema.load(Ordering::Relaxed), factor);
        match decide(now, deadline, queued, quantum) {
            TimerDecision::Preempt { next_deadline } => {
                // Compiler interrupts: post a request (and wait a grace period) unless one posted
                // for this arming went unanswered and the hybrid's interrupt follows. A
                // cooperative arming (read after the deadline, as `armed`) is only ever asked,
                // whatever the mode: its request is parked at its own probes or not at all.
                let probes_only = w.gens.probes_only.load(Ordering::Acquire);
                let step = if probes_only {
                    Some(CiStep::Request)
                } else {
                    shared.ci.map(|ci| ci_step(w.gens.ci_request.0.load(Ordering::Acquire), armed, ci.fallback))
                };
                let post = matches!(step, Some(CiStep::Request | CiStep::RequestAgain));
                let next_deadline =
                    if post { now + shared.ci.and_then(|ci| ci.grace_ns).unwrap_or(quantum) } else { next_deadline };
                // Only if the worker has not disarmed/re-armed meanwhile (a new request).
                if w.deadline.compare_exchange(deadline, next_deadline, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    w.gens.target.store(armed, Ordering::Release);
                    if matches!(step, Some(CiStep::RequestAgain | CiStep::Fallback)) {
                        stats.ci_unanswered.fetch_add(1, Ordering::Relaxed);
                    }
                    if post {
                        w.gens.ci_request.0.store(armed, Ordering::Release);
                        stats.ci_requests.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    send_interrupt(shared, w, stats);
                }
            }
            TimerDecision::Renew { next_deadline } => {
                if w.deadline.compare_exchange(deadline, next_deadline, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    stats.renewals.fetch_add(1, Ordering::Relaxed);
                }
            }
            TimerDecision::Running | TimerDecision::Disarmed => {}
        }
    }
}
