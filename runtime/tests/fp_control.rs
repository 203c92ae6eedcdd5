//! The floating-point control state survives voluntary switches (issue 15, item 4).
//!
//! The System V ABI makes MXCSR's control bits (rounding mode, FTZ, DAZ, exception masks) and the
//! x87 control word (precision, rounding) callee-saved: code may set them and expect them kept
//! across any call, and code that did not set them expects the defaults. A green thread that yields
//! on a contended lock, or takes a deferred preemption at the end of an allocation, leaves the
//! worker through the voluntary switch, so the switch must carry them: the thread must find its
//! own modes again wherever it resumes, and the requests that run meanwhile must see the defaults.
//!
//! Long requests set a mode of their own (which one depends on the request), then yield on a lock
//! that an OS thread keeps taking and allocate in a loop (so interrupts land in the allocator and
//! are taken when it returns), checking their modes after every round. Short requests, run in
//! between on the same worker, check that they see the defaults.

mod common;

use std::arch::asm;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synergy::sync::Mutex;
use synergy::transport::channel::ChannelTransport;
use synergy::{feedback_finished, feedback_start, send, Reply, Request, Runtime};

const DEFAULT_MXCSR: u32 = 0x1F80;
const DEFAULT_FPUCW: u16 = 0x037F;
/// MXCSR's control bits (DAZ, the exception masks, rounding, FTZ); bits 0-5 are status flags,
/// which a request's own arithmetic sets.
const MXCSR_CONTROL: u32 = 0xFFC0;

/// MXCSR's control bits.
fn mxcsr() -> u32 {
    mxcsr_raw() & MXCSR_CONTROL
}

fn mxcsr_raw() -> u32 {
    let mut v = 0u32;
    // SAFETY: stores MXCSR into a local.
    unsafe { asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack, preserves_flags)) };
    v
}

fn set_mxcsr(v: u32) {
    // SAFETY: loads a valid MXCSR value (no reserved bit set; all exceptions stay masked).
    unsafe { asm!("ldmxcsr [{}]", in(reg) &v, options(nostack, preserves_flags, readonly)) };
}

fn fpucw() -> u16 {
    let mut v = 0u16;
    // SAFETY: stores the x87 control word into a local.
    unsafe { asm!("fnstcw [{}]", in(reg) &mut v, options(nostack, preserves_flags)) };
    v
}

fn set_fpucw(v: u16) {
    // SAFETY: loads an x87 control word with every exception masked.
    unsafe { asm!("fldcw [{}]", in(reg) &v, options(nostack, preserves_flags, readonly)) };
}

/// The modes long request `id` runs with: a rounding mode (down, up or toward zero) with FTZ and
/// DAZ in MXCSR, and single or double precision with a rounding mode in the x87 control word.
fn modes_of(id: u64) -> (u32, u16) {
    let rc = 1 + (id % 3) as u32; // 01 down, 10 up, 11 toward zero
    let mxcsr = (DEFAULT_MXCSR | (rc << 13) | (1 << 15) | (1 << 6)) & MXCSR_CONTROL;
    let pc = if id.is_multiple_of(2) { 0b00 } else { 0b10 }; // single, double
    let fpucw = (DEFAULT_FPUCW & !0x0F00) | (pc << 8) | ((rc as u16) << 10);
    (mxcsr, fpucw)
}

const LONG: u32 = 1;
const ROUNDS: u32 = 30;

#[test]
fn fp_control_state_survives_yields_and_deferred_preemptions() {
    let _serial = common::serial();
    let cfg = common::one_worker();
    let lock = Arc::new(Mutex::new(0u64));
    let wrong_long = Arc::new(AtomicU64::new(0));
    let wrong_short = Arc::new(AtomicU64::new(0));
    let first_wrong = Arc::new(std::sync::Mutex::new(None::<String>));
    let transport = Arc::new(ChannelTransport::new(1, 4096, 1 << 16));
    let (l, wl, ws, fw) = (lock.clone(), wrong_long.clone(), wrong_short.clone(), first_wrong.clone());
    let rt = Runtime::builder(&cfg).transport(transport.clone()).handler(move |req: Request| {
        if req.kind == LONG {
            // SAFETY: locks are synergy::sync::Mutex, allocation goes through PreemptSafeAlloc, the modes are per-context registers the runtime preserves (what this test checks).
            unsafe { feedback_start() };
            let (want_mxcsr, want_cw) = modes_of(req.id);
            set_mxcsr(want_mxcsr);
            set_fpucw(want_cw);
            for round in 0..ROUNDS {
                *l.lock() += 1; // contended: yields (a voluntary switch) while the OS thread holds it
                let v: Vec<u64> = (0..64).collect(); // interrupts here are deferred to the allocator's exit
                std::hint::black_box(v);
                synergy::clock::spin_for(2_000);
                let (got_mxcsr, got_cw) = (mxcsr(), fpucw());
                if (got_mxcsr, got_cw) != (want_mxcsr, want_cw) {
                    if wl.fetch_add(1, Ordering::Relaxed) == 0 {
                        let msg = format!(
                            "request {} round {round}: MXCSR {got_mxcsr:#x} (set {want_mxcsr:#x}), x87 CW {got_cw:#x} (set {want_cw:#x})",
                            req.id
                        );
                        synergy::preempt::without_preemption(|| *fw.lock().unwrap() = Some(msg));
                    }
                    set_mxcsr(want_mxcsr);
                    set_fpucw(want_cw);
                }
            }
            set_mxcsr(DEFAULT_MXCSR);
            set_fpucw(DEFAULT_FPUCW);
            feedback_finished();
        } else if (mxcsr(), fpucw()) != (DEFAULT_MXCSR, DEFAULT_FPUCW) && ws.fetch_add(1, Ordering::Relaxed) == 0 {
            let msg = format!("short request {}: MXCSR {:#x}, x87 CW {:#x}", req.id, mxcsr(), fpucw());
            synergy::preempt::without_preemption(|| *fw.lock().unwrap() = Some(msg));
        }
        send(Reply::to(&req)).unwrap();
    }).start()
    .expect("runtime starts");

    // An OS thread keeps the lock taken most of the time, so long requests find it contended.
    let stop = Arc::new(AtomicBool::new(false));
    let holder = {
        let (lock, stop) = (lock.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let mut g = lock.lock();
                *g += 1;
                synergy::clock::spin_for(20_000);
                drop(g);
                std::thread::sleep(Duration::from_micros(20));
            }
        })
    };
    let t0 = Instant::now();
    let (mut next, mut answered) = (0u64, 0u64);
    let enough = |rt: &Runtime| {
        let t = rt.stats().total;
        t.yields >= 100 && t.preempt_deferred >= 20
    };
    while next < 2_000 || !enough(&rt) {
        assert!(t0.elapsed() < Duration::from_secs(600), "too few yields or deferred preemptions: {:?}", rt.stats());
        answered += transport.take_replies().len() as u64;
        if transport.backlog_of(0) < 4 {
            let kind = if next % 3 == 0 { LONG } else { 0 };
            transport.submit(0, Request { id: next, kind, ..Default::default() }).unwrap();
            next += 1;
        } else {
            std::thread::yield_now();
        }
    }
    transport.close();
    let stats = rt.shutdown();
    stop.store(true, Ordering::Release);
    holder.join().unwrap();
    answered += transport.take_replies().len() as u64;
    let t = stats.total;
    eprintln!(
        "fp control: {next} requests in {:.1?} (watchdog 600 s), {} yields, {} deferred and {} other preemptions; wrong modes: {} long, {} short",
        t0.elapsed(),
        t.yields,
        t.preempt_deferred,
        t.preemptions.saturating_sub(t.preempt_deferred),
        wrong_long.load(Ordering::Relaxed),
        wrong_short.load(Ordering::Relaxed)
    );
    assert_eq!(answered, next);
    let first = first_wrong.lock().unwrap().clone();
    assert_eq!(wrong_long.load(Ordering::Relaxed), 0, "a long request lost its modes: {first:?}");
    assert_eq!(wrong_short.load(Ordering::Relaxed), 0, "a short request inherited modes: {first:?}");
}
