//! Requests that recurse to within a few KiB of the end of their green stack while being
//! preempted (issue 15, item 5).
//!
//! A signal's frame (the interrupted registers plus the whole XSAVE image: about 12 KiB where
//! AMX state is enabled, `getauxval(AT_MINSIGSTKSZ)`) must not be written on the green stack: a
//! request with less than that left above its guard page would be killed by its own preemption.
//! Each request here recurses, filling a 512-byte frame per level, until a chosen amount of stack
//! is left, computes for several quanta at the bottom (so interrupts arrive there), and checks
//! every level's frame on the way back. Requests at 40 KiB headroom are really preempted (and may
//! migrate); deeper ones cannot be (the preemption entry needs more room) and must simply survive
//! the interrupts. Every result must be exact.

mod common;

use common::kernels;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synergy::transport::channel::ChannelTransport;
use synergy::{feedback_finished, feedback_start, send, stack_remaining, Reply, Request, Runtime};

const STACK_KIB: usize = 64;
/// Stack left at the bottom of the recursion, by request id modulo the length.
const HEADROOM_KIB: [usize; 6] = [40, 16, 8, 4, 3, 2];
/// Kernel iterations at the bottom: tens of µs, many quanta.
const BOTTOM_WORK: u32 = 3_000;
const MIN_REQUESTS: u64 = 2_000;
/// Interrupts that found a request too deep to preempt (so they arrived deep in the stack).
const MIN_DEEP_INTERRUPTS: u64 = 300;
/// Preemptions of the 40 KiB-headroom requests (which then continue on a fresh quantum).
const MIN_PREEMPTIONS: u64 = 100;
const LIMIT: Duration = Duration::from_secs(600);

fn frame_word(seed: u64, level: u32, i: usize) -> u64 {
    seed.rotate_left(level % 64) ^ ((level as u64) << 32) ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn level_mix(acc: u64, seed: u64, level: u32) -> u64 {
    acc.rotate_left(1) ^ kernels::int_kernel(seed ^ level as u64, 16)
}

/// Recurses until at most `headroom` bytes of stack are left; returns (checksum, deepest level).
#[inline(never)]
fn descend(seed: u64, level: u32, headroom: usize) -> (u64, u32) {
    let mut frame = [0u64; 64];
    for (i, w) in frame.iter_mut().enumerate() {
        *w = frame_word(seed, level, i);
    }
    std::hint::black_box(&mut frame);
    let left = stack_remaining().expect("runs on a worker");
    let (below, deepest) = if left > headroom + 1024 {
        descend(seed, level + 1, headroom)
    } else {
        (kernels::mixed(seed ^ ((level as u64) << 48), BOTTOM_WORK), level)
    };
    std::hint::black_box(&mut frame);
    for (i, w) in frame.iter().enumerate() {
        assert_eq!(*w, frame_word(seed, level, i), "level {level}: frame word {i} changed");
    }
    (level_mix(below, seed, level), deepest)
}

/// What `descend` returns for a recursion that bottomed out at `deepest`, computed flat.
fn expected(seed: u64, deepest: u32) -> u64 {
    let mut acc = kernels::mixed(seed ^ ((deepest as u64) << 48), BOTTOM_WORK);
    for level in (0..=deepest).rev() {
        acc = level_mix(acc, seed, level);
    }
    acc
}

fn seed_of(id: u64) -> u64 {
    id.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1
}

#[test]
fn deep_requests_survive_interrupts_with_exact_results() {
    let _serial = common::serial();
    let mut cfg = common::one_worker();
    cfg.stack_kib = STACK_KIB;
    let transport = Arc::new(ChannelTransport::new(1, 4096, 1 << 15));
    let depths: Arc<Vec<AtomicU32>> = Arc::new((0..1_000_000).map(|_| AtomicU32::new(u32::MAX)).collect());
    let d = depths.clone();
    let rt = Runtime::builder(&cfg)
        .transport(transport.clone())
        .handler(move |req: Request| {
            let headroom = HEADROOM_KIB[(req.id % HEADROOM_KIB.len() as u64) as usize] * 1024;
            // SAFETY: the recursion computes on its own stack only.
            unsafe { feedback_start() };
            let (sum, deepest) = descend(seed_of(req.id), 0, headroom);
            feedback_finished();
            d[req.id as usize].store(deepest, Ordering::Relaxed);
            send(Reply::to(&req).with_value(sum)).unwrap();
        })
        .start()
        .expect("runtime starts");

    let t0 = Instant::now();
    let mut replies = Vec::new();
    let mut next_id = 0u64;
    while next_id < MIN_REQUESTS || {
        let t = rt.stats().total;
        t.preempt_skipped < MIN_DEEP_INTERRUPTS || t.preemptions < MIN_PREEMPTIONS
    } {
        assert!(
            t0.elapsed() < LIMIT && (next_id as usize) < depths.len(),
            "after {:?} and {next_id} requests, too few interrupts reached a deep request (the machine starved the timer core?): {:?}",
            t0.elapsed(),
            rt.stats()
        );
        replies.extend(transport.take_replies());
        if transport.backlog_of(0) < 4 {
            transport.submit(0, Request { id: next_id, kind: 1, ..Default::default() }).expect("rx ring has room");
            next_id += 1;
        } else {
            std::thread::yield_now();
        }
    }
    transport.close();
    let stats = rt.shutdown();
    replies.extend(transport.take_replies());
    let t = &stats.total;
    eprintln!(
        "deep stacks: {} requests in {:.1?}, {} preemptions, {} interrupts too deep to preempt, {} ignored",
        replies.len(),
        t0.elapsed(),
        t.preemptions,
        t.preempt_skipped,
        t.interrupts_ignored
    );
    assert_eq!(replies.len() as u64, next_id, "every request answered: {t:?}");
    let mut seen = vec![false; next_id as usize];
    for r in &replies {
        assert!(!std::mem::replace(&mut seen[r.id as usize], true), "request {} answered twice", r.id);
        let deepest = depths[r.id as usize].load(Ordering::Relaxed);
        assert_eq!(
            r.value,
            expected(seed_of(r.id), deepest),
            "request {} (depth {deepest}, {} preemptions)",
            r.id,
            r.preemptions
        );
    }
    // The deepest requests really were deep: levels of at most 1 KiB (a 512-byte array and the
    // call's own words) down to 2 KiB of headroom, below the ~2 KiB the request starts at.
    let deepest = (0..next_id)
        .filter(|id| id % HEADROOM_KIB.len() as u64 == 5)
        .map(|id| depths[id as usize].load(Ordering::Relaxed))
        .min()
        .unwrap();
    eprintln!("deep stacks: the 2 KiB-headroom requests recursed {deepest} levels");
    assert!(deepest as usize >= STACK_KIB - 2 - 4, "recursion reached level {deepest} only");
    // (The loop ran until MIN_PREEMPTIONS and MIN_DEEP_INTERRUPTS were reached: not re-asserted,
    // issue 38, A3. What this test checks is every result exact and every request answered once.)
    assert_eq!(t.handler_panics, 0);
    assert_eq!(t.resumes, t.preemptions + t.yields);
}
