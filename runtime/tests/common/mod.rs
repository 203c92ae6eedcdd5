//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod kernels;
pub mod quiet_hook;

#[global_allocator]
static ALLOC: synergy::PreemptSafeAlloc = synergy::PreemptSafeAlloc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use synergy::transport::channel::ChannelTransport;
use synergy::{clock, feedback_finished, feedback_start, send, Config, Reply, Request, Runtime};

/// Request kinds of `spin_handler`.
pub const SHORT: u32 = 0;
pub const LONG: u32 = 1;

/// `service_ns` of a `LONG` request that runs until a `SHORT` request has been answered (at most
/// `UNTIL_SHORT_DONE_BOUND`): a test that a short request overtakes a long one then does not
/// depend on how soon a busy machine lets the timer core run; if preemption never comes, the long
/// request finishes first after the bound and the test fails.
pub const UNTIL_SHORT_DONE: u64 = u64::MAX;
pub const UNTIL_SHORT_DONE_BOUND: Duration = Duration::from_secs(30);

/// What `spin_handler` reports: a long request began; a short one was answered.
#[derive(Default)]
pub struct Gate {
    pub long_started: AtomicBool,
    pub short_done: AtomicBool,
    /// Set by a test once it has seen what it waits for, to end a long request that waits on it.
    pub release: AtomicBool,
}

/// A handler that spins for each request's `service_ns` (see `UNTIL_SHORT_DONE`), marking `LONG`
/// ones with feedback, and replies; it reports to `gate`.
pub fn spin_handler(gate: Arc<Gate>) -> impl Fn(Request) + Send + Sync + 'static {
    move |req: Request| {
        if req.kind == LONG {
            // SAFETY: the spin reads the clock and an atomic; no thread-local storage or lock.
            unsafe { feedback_start() };
            gate.long_started.store(true, Ordering::Release);
            if req.service_ns == UNTIL_SHORT_DONE {
                let t0 = Instant::now();
                while !gate.short_done.load(Ordering::Acquire) && t0.elapsed() < UNTIL_SHORT_DONE_BOUND {
                    clock::spin_for(1_000);
                }
            } else {
                clock::spin_for(req.service_ns);
            }
            feedback_finished();
            send(Reply::to(&req)).unwrap();
        } else {
            clock::spin_for(req.service_ns);
            send(Reply::to(&req)).unwrap();
            gate.short_done.store(true, Ordering::Release);
        }
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

/// Two workers, pinned beside the timer core where there are CPUs for that (the QEMU guest:
/// `--preempt=ipi` needs pinned workers), else unpinned (a 2-CPU host, with signals).
pub fn two_workers() -> Config {
    let allowed = synergy::cpu::allowed_cpus();
    let mut c = Config { workers: 2, ..one_worker() };
    if allowed.len() >= 3 {
        c.timer_core = Some(allowed[0]);
        c.worker_cores = Some(vec![allowed[1], allowed[2]]);
    } else {
        c.worker_cores = None;
        c.pin = false;
    }
    c
}

/// Waits for `n` replies from `t` (failing after `limit`: a request was lost), returning them.
pub fn wait_for_replies(t: &synergy::transport::channel::ChannelTransport, n: usize, limit: Duration) -> Vec<Reply> {
    let mut got = Vec::new();
    let t0 = Instant::now();
    while got.len() < n {
        got.extend(t.take_replies());
        assert!(t0.elapsed() < limit, "{} of {n} replies after {limit:?}: a request was lost", got.len());
        std::hint::spin_loop();
    }
    got
}

/// Polls `cond` until true; fails the test (a hang is a bug: deadlock or lost request) after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > limit {
            hung(&format!("timed out after {limit:?} waiting for: {what}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Fails the test binary at once when a watchdog fires. Not a panic: unwinding would drop the
/// runtime, whose shutdown waits for the stuck worker forever (CI stop 49: the QEMU guest then
/// sat out its whole 900 s budget, and kmod_ipi, still in use, failed every later script).
pub fn hung(what: &str) -> ! {
    eprintln!("FAILED (hung): {what}; exiting the test binary (a runtime with a stuck worker cannot shut down)");
    std::process::exit(101)
}

/// Request kinds of `feed_probes`: a probe (the test's own), and a request that runs
/// `kernels::mixed(id, MIXED_ITERS)` to leave every vector component dirty in the registers.
pub const PROBE: u32 = 1;
pub const MIXED: u32 = 2;
pub const MIXED_ITERS: u32 = 2_000;

/// The handler `feed_probes` drives: inside a preemptible region, a `PROBE` is answered by
/// `probe`, anything else with `kernels::mixed(id, MIXED_ITERS)`.
///
/// # Safety
/// `probe` meets the contract of a preemptible region (`feedback_start`): it may migrate.
pub unsafe fn probe_handler(
    probe: impl Fn(&Request) -> Reply + Send + Sync + 'static,
) -> impl Fn(Request) + Send + Sync + 'static {
    move |req: Request| {
        // SAFETY: `probe` meets the region's contract (this function's); the mixed kernel
        // computes on locals and registers only.
        unsafe { feedback_start() };
        let reply = if req.kind == PROBE {
            probe(&req)
        } else {
            Reply::to(&req).with_value(kernels::mixed(req.id, MIXED_ITERS))
        };
        feedback_finished();
        send(reply).unwrap();
    }
}

/// Keeps 8 requests in flight on worker 0 of `rt`, probes and `MIXED` requests alternating,
/// until `target` probe replies came back preempted (a 600 s watchdog, not a rate). Each `MIXED`
/// reply must carry its exact checksum; each probe reply goes to `on_probe`. Returns how many
/// requests were submitted.
pub fn feed_probes(
    rt: &synergy::Runtime,
    transport: &synergy::transport::channel::ChannelTransport,
    target: u64,
    mut on_probe: impl FnMut(&Reply),
) -> u64 {
    let t0 = Instant::now();
    let (mut next, mut answered, mut preempted) = (0u64, 0u64, 0u64);
    while preempted < target {
        if t0.elapsed() >= Duration::from_secs(600) {
            hung(&format!(
                "watchdog: after 600 s only {preempted} of {target} probes were preempted ({:?})",
                rt.stats().total
            ));
        }
        for r in transport.take_replies() {
            answered += 1;
            if r.kind == PROBE {
                preempted += (r.preemptions > 0) as u64;
                on_probe(&r);
            } else {
                let want = kernels::mixed(r.id, MIXED_ITERS);
                assert_eq!(r.value, want, "mixed request {} after {} preemptions", r.id, r.preemptions);
            }
        }
        if next - answered < 8 {
            let kind = if next.is_multiple_of(2) { PROBE } else { MIXED };
            transport.submit(0, Request { id: next, kind, ..Default::default() }).expect("room");
            next += 1;
        } else {
            std::thread::yield_now();
        }
    }
    next
}

/// One worker runs a long request (begun by `start`: `feedback_start` or its cooperative
/// form, then `long`) and, once it started, a short one; once the short one is queued, waits
/// (under a watchdog) until `release_when` holds for the runtime's statistics, then sets
/// `Gate::release`. Returns the replies in the order they came, and the statistics.
pub fn long_then_short_released(
    cfg: Config,
    start: fn(),
    long: impl Fn(&Gate) + Send + Sync + 'static,
    release_when: impl Fn(&synergy::stats::RunStats) -> bool,
) -> (Vec<Reply>, synergy::stats::RunStats) {
    let _serial = serial();
    let gate = Arc::new(Gate::default());
    let transport = Arc::new(ChannelTransport::new(1, 64, 64));
    let g = gate.clone();
    let rt = Runtime::builder(&cfg)
        .transport(transport.clone())
        .handler(move |req: Request| {
            if req.kind == LONG {
                start();
                g.long_started.store(true, Ordering::Release);
                long(&g);
                feedback_finished();
            } else {
                g.short_done.store(true, Ordering::Release);
            }
            send(Reply::to(&req)).unwrap();
        })
        .start()
        .expect("runtime starts");
    transport.submit(0, Request { id: 1, kind: LONG, ..Default::default() }).unwrap();
    wait_until("the long request starts", Duration::from_secs(10), || gate.long_started.load(Ordering::Acquire));
    transport.submit(0, Request { id: 2, kind: SHORT, ..Default::default() }).unwrap();
    wait_until("the awaited timer-core events", Duration::from_secs(300), || release_when(&rt.stats()));
    gate.release.store(true, Ordering::Release);
    let mut replies = Vec::new();
    wait_until("both replies", Duration::from_secs(60), || {
        replies.extend(transport.take_replies());
        replies.len() == 2
    });
    transport.close();
    (replies, rt.shutdown())
}

/// Replies counted by request id, each at most once (a second reply for an id fails the test).
#[derive(Default)]
pub struct OncePerRequest {
    seen: Vec<bool>,
    /// Replies counted so far.
    pub replies: u64,
}

impl OncePerRequest {
    /// Counts the reply to request `id`; fails if that request was answered before.
    pub fn count(&mut self, id: u64) {
        let i = id as usize;
        if i >= self.seen.len() {
            self.seen.resize(i + 1, false);
        }
        assert!(!self.seen[i], "request {id} answered twice");
        self.seen[i] = true;
        self.replies += 1;
    }
}
