//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod kernels;

#[global_allocator]
static ALLOC: synergy::PreemptSafeAlloc = synergy::PreemptSafeAlloc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use synergy::{clock, feedback_finished, feedback_start, send, Config, Reply, Request};

/// Request kinds of `spin_handler`.
pub const SHORT: u32 = 0;
pub const LONG: u32 = 1;

/// A handler that spins for each request's `service_ns`, marking `LONG` ones with feedback and
/// raising `long_started` when one begins, then replies.
pub fn spin_handler(long_started: Arc<AtomicBool>) -> impl Fn(Request) + Send + Sync + 'static {
    move |req: Request| {
        if req.kind == LONG {
            feedback_start();
            long_started.store(true, Ordering::Release);
            clock::spin_for(req.service_ns);
            feedback_finished();
        } else {
            clock::spin_for(req.service_ns);
        }
        send(Reply::to(&req)).unwrap();
    }
}

/// Runtimes pin threads and spin; on a 2-core machine two at once would starve each other, so the
/// tests of one binary take turns.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The preemption mechanism under test: SYNERGY_TEST_PREEMPT=signal|ipi|uintr (default signal),
/// so the same tests run on the host (signal) and in the QEMU guest with kmod_ipi loaded (ipi).
pub fn preempt_mode() -> synergy::PreemptMode {
    match std::env::var("SYNERGY_TEST_PREEMPT").as_deref() {
        Err(_) | Ok("signal") => synergy::PreemptMode::Signal,
        Ok("ipi") => synergy::PreemptMode::Ipi,
        Ok("uintr") => synergy::PreemptMode::Uintr,
        Ok(other) => panic!("SYNERGY_TEST_PREEMPT={other:?}: expected signal, ipi or uintr"),
    }
}

/// `preempt_mode()` as its command-line spelling.
pub fn preempt_mode_name() -> &'static str {
    preempt_mode().name()
}

/// CPUs this process may run on.
pub fn cpus() -> usize {
    synergy::cpu::allowed_cpus().len()
}

/// One worker and the timer core on distinct CPUs where the machine has two, preempting with
/// `preempt_mode()`.
pub fn one_worker() -> Config {
    let allowed = synergy::cpu::allowed_cpus();
    let mut c = Config { preempt: preempt_mode(), ..Config::default() };
    if allowed.len() >= 2 {
        c.timer_core = Some(allowed[0]);
        c.worker_cores = Some(vec![allowed[1]]);
    }
    c
}

/// Polls `cond` until true; fails the test (a hang is a bug: deadlock or lost request) after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
