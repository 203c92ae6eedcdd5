//! Every way a handler can panic, under a 10 µs quantum on two workers (issue 39, item 1).
//!
//! std keeps each OS thread's panic count in thread-local storage, so a panic must never straddle
//! two OS threads: the runtime refuses to park a green thread while it may be inside std's panic
//! path (`worker/panic.rs`), and where it cannot locate std's panic count (a stripped executable)
//! it fails closed and resumes every preempted request on the worker that preempted it.
//!
//! Each storm sends `SYNERGY_PANIC_STORM_REQUESTS` (default 100,000) long requests, preempted
//! whenever work waits, of six kinds: no panic, `panic!`, `panic_any`, `resume_unwind` (which runs
//! no panic hook and has std's `increase` inlined), a panic in a `Drop` while unwinding (caught
//! inside that `Drop`), and a panic caught by the handler's own nested `catch_unwind`. Every
//! request gets exactly one reply: the panicked status where the panic escaped the handler, the
//! exact checksum otherwise; the process does not abort.
//!
//! `a_stripped_copy_fails_closed_and_survives_both_storms` reruns both storms in a stripped copy of
//! this test binary (no symbol table: the guard cannot be located, so it must pin). scripts/test.sh
//! runs this binary once more built with `-C prefer-dynamic` (std in `libstd-*.so`, whose symbol
//! table the runtime reads instead).

mod common;

use common::kernels;
use std::any::Any;
use std::panic::{catch_unwind, panic_any, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use synergy::transport::channel::ChannelTransport;
use synergy::{
    feedback_finished, feedback_start, send, Config, PanicGuard, PreemptMode, Reply, Request, Runtime,
    STATUS_HANDLER_PANICKED,
};

/// Kernel iterations per chunk of work (a few µs), and chunks per request.
const CHUNK: u32 = 150;
const CHUNKS: u32 = 5;
/// A watchdog, not a rate: how long the storm may take to see its first escaping panic from a
/// preempted request.
const LIMIT: Duration = Duration::from_secs(600);
/// The storm runs until at least this many escaping panics came from preempted requests. It was
/// 20, a count of timed events: beside `stress-ng --cpu 2` the ci+signal storm saw 22
/// preemptions and 7 such panics in 600 s (scripts/test-under-load.sh, 2026-12-07, Zen 4) and
/// failed, though nothing was wrong. One is the event the test must see; on an idle machine the
/// 100,000 requests bring hundreds anyway.
const MIN_PREEMPTED_PANICS: u64 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Fine,
    Panic,
    PanicAny,
    ResumeUnwind,
    PanicInDropWhileUnwinding,
    CaughtInside,
}

impl Kind {
    /// The panic escapes the handler: the runtime answers STATUS_HANDLER_PANICKED.
    fn escapes(self) -> bool {
        !matches!(self, Kind::Fine | Kind::CaughtInside)
    }
    /// Panic hook calls the request makes (resume_unwind runs none).
    fn hook_calls(self) -> u64 {
        match self {
            Kind::Fine | Kind::ResumeUnwind => 0,
            Kind::Panic | Kind::PanicAny | Kind::CaughtInside => 1,
            Kind::PanicInDropWhileUnwinding => 2,
        }
    }
}

/// Request `id`'s kind, and the chunk after which it panics.
fn plan(id: u64) -> (Kind, u32) {
    let h = id.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    let kind = match h % 10 {
        0..=4 => Kind::Fine,
        5 => Kind::Panic,
        6 => Kind::PanicAny,
        7 => Kind::ResumeUnwind,
        8 => Kind::PanicInDropWhileUnwinding,
        _ => Kind::CaughtInside,
    };
    (kind, ((h >> 8) % CHUNKS as u64) as u32)
}

/// One chunk of work, with compiler-interrupt probes (`ci+signal` preempts at them).
#[synergy::preemptible]
fn chunk(id: u64, c: u32) -> u64 {
    kernels::mixed(id ^ ((c as u64) << 40), CHUNK)
}

fn checksum(id: u64) -> u64 {
    (0..CHUNKS).fold(0u64, |acc, c| acc.rotate_left(3) ^ kernels::mixed(id ^ ((c as u64) << 40), CHUNK))
}

/// Panics in its `Drop`, and catches that panic there (an escaping one would abort: Rust does
/// not unwind out of a destructor run by unwinding).
struct PanicsInDrop;

impl Drop for PanicsInDrop {
    fn drop(&mut self) {
        let inner = catch_unwind(|| panic!("a Drop panics while the request unwinds"));
        assert!(inner.is_err());
    }
}

fn handler(req: Request) {
    let (kind, at) = plan(req.id);
    // SAFETY: the handler computes on locals and the stack; what may not migrate (std's panic
    // path) is the runtime's to pin.
    unsafe { feedback_start() };
    // Built only for that kind (`then_some` would build, and drop, one for every request).
    let _in_drop = if kind == Kind::PanicInDropWhileUnwinding { Some(PanicsInDrop) } else { None };
    let mut acc = 0u64;
    for c in 0..CHUNKS {
        acc = acc.rotate_left(3) ^ chunk(req.id, c);
        if c != at {
            continue;
        }
        match kind {
            Kind::Fine => {}
            Kind::Panic | Kind::PanicInDropWhileUnwinding => panic!("request {} panics after chunk {c}", req.id),
            Kind::PanicAny => panic_any(req.id),
            Kind::ResumeUnwind => resume_unwind(Box::new(req.id) as Box<dyn Any + Send>),
            Kind::CaughtInside => {
                let caught = catch_unwind(AssertUnwindSafe(|| {
                    let more = chunk(req.id, c + 100);
                    if more != 1 {
                        panic!("request {} panics inside its own catch_unwind", req.id);
                    }
                    more
                }));
                assert!(caught.is_err());
            }
        }
    }
    feedback_finished();
    send(Reply::to(&req).with_value(acc)).unwrap();
}

/// Replies checked as they come: exactly one per request, the panicked status exactly where the
/// panic escaped the handler, the exact checksum otherwise.
#[derive(Default)]
struct Tally {
    once: common::OncePerRequest,
    panicked: u64,
    panicked_preempted: u64,
}

impl Tally {
    fn check(&mut self, r: &Reply) {
        self.once.count(r.id);
        let (kind, _) = plan(r.id);
        if kind.escapes() {
            assert_eq!(r.status, STATUS_HANDLER_PANICKED, "request {} ({kind:?}): {r:?}", r.id);
            self.panicked += 1;
            self.panicked_preempted += (r.preemptions > 0) as u64;
        } else {
            assert_eq!(r.status, 0, "request {} ({kind:?}): {r:?}", r.id);
            assert_eq!(r.value, checksum(r.id), "request {} ({kind:?}) after {} preemptions", r.id, r.preemptions);
        }
    }
}

fn requests() -> u64 {
    std::env::var("SYNERGY_PANIC_STORM_REQUESTS").map_or(100_000, |v| v.parse().expect("a request count"))
}

/// The guard this process must have: `SYNERGY_EXPECT_PANIC_GUARD=pinned|complete` (set by the
/// stripped-copy test for its child), else complete unless `SYNERGY_PIN_PREEMPTED=1`.
fn expect_pinned() -> bool {
    match std::env::var("SYNERGY_EXPECT_PANIC_GUARD").as_deref() {
        Ok("pinned") => true,
        Ok("complete") => false,
        Ok(other) => panic!("SYNERGY_EXPECT_PANIC_GUARD={other:?}"),
        Err(_) => std::env::var_os("SYNERGY_PIN_PREEMPTED").is_some_and(|v| v == "1"),
    }
}

/// Two workers (so a preempted request can resume on another OS thread), pinned: on a 2-CPU
/// machine the second shares the timer core's CPU (the kernel time-slices them), since an
/// unpinned timer core beside two spinning workers hardly runs.
fn two_workers_beside_the_timer_core() -> Config {
    let allowed = synergy::cpu::allowed_cpus();
    let mut c = common::two_workers();
    if allowed.len() == 2 {
        c.timer_core = Some(allowed[0]);
        c.worker_cores = Some(vec![allowed[1], allowed[0]]);
        c.pin = true;
    }
    c
}

fn storm(preempt: PreemptMode) {
    let _serial = common::serial();
    common::quiet_hook::install();
    let n = requests();
    let cfg = Config { preempt, quantum_factor: 10.0, ..two_workers_beside_the_timer_core() };
    let transport = Arc::new(ChannelTransport::new(cfg.workers, 4096, 1 << 15));
    let rt = Runtime::builder(&cfg).transport(transport.clone()).handler(handler).start().expect("runtime starts");
    let guard = synergy::panic_guard();
    assert_eq!(matches!(guard, PanicGuard::Pinned(_)), expect_pinned(), "panic guard {guard:?}");
    let hooks_before = common::quiet_hook::HOOK_CALLS.load(Ordering::Relaxed);

    let t0 = Instant::now();
    let mut tally = Tally::default();
    let mut next = 0u64;
    // At least `n` requests, and more (within `LIMIT`) until `MIN_PREEMPTED_PANICS` escaping
    // panics came from requests that had been preempted: how many preemptions a run gets depends
    // on how much CPU the timer core gets on a busy machine, not on the runtime.
    while next < n || tally.panicked_preempted < MIN_PREEMPTED_PANICS {
        assert!(
            t0.elapsed() < LIMIT,
            "{next} requests sent, {} panicked after a preemption, after {LIMIT:?}: {:?}",
            tally.panicked_preempted,
            rt.stats().total
        );

        for r in transport.take_replies() {
            tally.check(&r);
        }
        let w = (next % cfg.workers as u64) as usize;
        // A few requests queued behind the running one, so expired quanta preempt.
        if transport.backlog_of(w) < 4 {
            transport.submit(w, Request { id: next, kind: 1, ..Default::default() }).expect("room");
            next += 1;
        } else {
            std::thread::yield_now();
        }
    }
    transport.close();
    let stats = rt.shutdown();
    for r in transport.take_replies() {
        tally.check(&r);
    }
    let Tally { once, panicked, panicked_preempted } = tally;
    let replies = once.replies;
    let t = &stats.total;
    let expected_panics = (0..next).filter(|&id| plan(id).0.escapes()).count() as u64;
    let expected_hooks: u64 = (0..next).map(|id| plan(id).0.hook_calls()).sum();
    eprintln!(
        "panic storm ({}, guard {guard:?}): {replies} replies, {panicked} panicked ({panicked_preempted} after a \
         preemption), {} preemptions, {} resumed on another worker, {} forwarded home, {} skipped; {:.1} s",
        preempt.name(),
        t.preemptions,
        t.migrations,
        t.pinned_forwards,
        t.preempt_skipped,
        stats.wall_ns as f64 / 1e9
    );
    assert_eq!(replies, next, "exactly one reply per request: {t:?}");
    assert_eq!(transport.dropped_replies(), 0);
    assert_eq!(panicked, expected_panics);
    assert_eq!(t.handler_panics, expected_panics);
    assert_eq!(
        common::quiet_hook::HOOK_CALLS.load(Ordering::Relaxed) - hooks_before,
        expected_hooks,
        "one hook call per panic! "
    );
    assert_eq!(t.resumes, t.preemptions + t.yields, "each parked thread resumed exactly once");
    if expect_pinned() {
        assert_eq!(t.migrations, 0, "pinned: no request resumed on another worker");
    }
}

#[test]
fn storm_under_signal() {
    storm(PreemptMode::Signal);
}

#[test]
fn storm_under_ci_signal() {
    storm(PreemptMode::named("ci+signal").expect("a hybrid mode"));
}

/// Both storms again in a stripped copy of this binary: with std linked in (the usual build) the
/// guard cannot be located there and must fail closed (pin); with std in a shared library
/// (`-C prefer-dynamic`) the library's symbol table still serves and the guard is complete.
#[test]
fn a_stripped_copy_fails_closed_and_survives_both_storms() {
    if std::env::var_os("SYNERGY_EXPECT_PANIC_GUARD").is_some() {
        return; // the child itself
    }
    // The child's runtimes must not share the two CPUs with this binary's own storms (a timer
    // core that gets no CPU preempts nothing, and the storms wait for preemptions).
    let _serial = common::serial();
    let std_in_a_library = std::fs::read_to_string("/proc/self/maps").unwrap().contains("/libstd-");
    let dir = std::env::temp_dir().join(format!("synergy-stripped-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("panic_storm_stripped");
    let status = std::process::Command::new("strip")
        .arg("-o")
        .arg(&copy)
        .arg(std::env::current_exe().unwrap())
        .status()
        .expect("strip (binutils) is installed: scripts/test.sh installs it");
    assert!(status.success());
    let out = std::process::Command::new(&copy)
        .args(["storm_under", "--test-threads=1", "--nocapture"])
        .env("SYNERGY_EXPECT_PANIC_GUARD", if std_in_a_library { "complete" } else { "pinned" })
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{stderr}");
    assert!(out.status.success(), "the stripped copy failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("2 passed"), "both storms ran in the stripped copy:\n{stdout}");
    let guard = if std_in_a_library { "guard Complete" } else { "guard Pinned(" };
    assert_eq!(stderr.matches(guard).count(), 2, "{guard} in both storms:\n{stderr}");
}
