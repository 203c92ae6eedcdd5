//! Requests that recurse to within a few KiB of the end of their green stack while being
//! preempted (issue 15, item 5; issue 39, item 8).
//!
//! A signal's frame (the interrupted registers plus the whole XSAVE image: about 12 KiB where
//! AMX state is enabled, `getauxval(AT_MINSIGSTKSZ)`) must not be written on the green stack: a
//! request with less than that left above its guard page would be killed by its own preemption.
//! And the preemption itself must not need the room: the entry saves the extended state into the
//! thread's own area and runs the park path on the worker's preemption stack, so only its
//! 264-byte frame goes on the green stack. Each request here recurses, filling a 512-byte frame
//! per level, until a chosen amount of stack is left, computes for several quanta at the bottom
//! (so interrupts arrive there), and checks every level's frame on the way back. Requests at
//! every depth, 54 KiB into a 64 KiB stack and deeper included, must be preempted (the test
//! waits until each depth has been, however long the machine takes), and every result must be
//! exact. Before issue 39's item 8 the entry needed its XSAVE image and a 16 KiB reserve on the
//! green stack, so no request deeper than about 45 KiB was ever preempted.

mod common;

use common::kernels;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synergy::transport::channel::ChannelTransport;
use synergy::{
    feedback_finished, feedback_start, request_preemptions, send, stack_remaining, GreenLocal, Reply, Request, Runtime,
};

const STACK_KIB: usize = 64;
/// Stack left at the bottom of the recursion, by request id modulo the length: from a request
/// that barely recurses (62: about 2 KiB deep, where a request starts) to 2 KiB left; 10 is the
/// issue's "54 KiB deep in a 64 KiB stack".
const HEADROOM_KIB: [usize; 7] = [62, 40, 16, 10, 8, 4, 2];
/// Kernel iterations at the bottom: tens of µs, many quanta.
const BOTTOM_WORK: u32 = 3_000;
/// At least this many requests (`SYNERGY_DEEP_STACK_REQUESTS` for a longer run: the per-depth
/// preemption counts in docs/benchmarks.md come from 50,000).
fn min_requests() -> u64 {
    std::env::var("SYNERGY_DEEP_STACK_REQUESTS").map_or(2_000, |v| v.parse().expect("a count"))
}
/// Requests of every depth that were preempted at the bottom of their recursion.
const MIN_PREEMPTED_PER_DEPTH: u64 = 20;
/// A deadlock guard only: the test waits for the preemptions above, however slow the machine.
const LIMIT: Duration = Duration::from_secs(600);

/// Set when the request was preempted while at the bottom of its recursion (deep in its stack).
static PREEMPTED_AT_THE_BOTTOM: GreenLocal<std::cell::Cell<bool>> = GreenLocal::new(|| std::cell::Cell::new(false));

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
        let before = request_preemptions().expect("runs on a worker");
        let sum = kernels::mixed(seed ^ ((level as u64) << 48), BOTTOM_WORK);
        if request_preemptions().expect("runs on a worker") > before {
            PREEMPTED_AT_THE_BOTTOM.with(|p| p.set(true));
        }
        (sum, level)
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
    // Per request: preempted while at the bottom of its recursion.
    let at_bottom: Arc<Vec<AtomicBool>> = Arc::new((0..1_000_000).map(|_| AtomicBool::new(false)).collect());
    let deep = at_bottom.clone();
    let rt = Runtime::builder(&cfg)
        .transport(transport.clone())
        .handler(move |req: Request| {
            let headroom = HEADROOM_KIB[(req.id % HEADROOM_KIB.len() as u64) as usize] * 1024;
            // SAFETY: the recursion computes on its own stack only.
            unsafe { feedback_start() };
            let (sum, deepest) = descend(seed_of(req.id), 0, headroom);
            feedback_finished();
            d[req.id as usize].store(deepest, Ordering::Relaxed);
            if PREEMPTED_AT_THE_BOTTOM.with(|p| p.get()) {
                deep[req.id as usize].store(true, Ordering::Relaxed);
            }
            send(Reply::to(&req).with_value(sum)).unwrap();
        })
        .start()
        .expect("runtime starts");

    let t0 = Instant::now();
    let mut replies = Vec::new();
    let mut next_id = 0u64;
    // Per depth (HEADROOM_KIB's index): requests answered, those preempted at the bottom of
    // their recursion (deep in the stack), and all their preemptions.
    let mut per_depth = [(0u64, 0u64, 0u64); HEADROOM_KIB.len()];
    let mut counted = 0;
    let min_requests = min_requests();
    while next_id < min_requests || per_depth.iter().any(|&(_, preempted, _)| preempted < MIN_PREEMPTED_PER_DEPTH) {
        assert!(
            t0.elapsed() < LIMIT && (next_id as usize) < depths.len(),
            "after {:?} and {next_id} requests, some depth was never preempted enough (answered, preempted, \
             preemptions by headroom {HEADROOM_KIB:?} KiB: {per_depth:?}): {:?}",
            t0.elapsed(),
            rt.stats()
        );
        replies.extend(transport.take_replies());
        for r in &replies[counted..] {
            let d = &mut per_depth[(r.id % HEADROOM_KIB.len() as u64) as usize];
            d.0 += 1;
            d.1 += u64::from(at_bottom[r.id as usize].load(Ordering::Relaxed));
            d.2 += u64::from(r.preemptions);
        }
        counted = replies.len();
        // Two requests in flight: enough to keep the worker busy and a preempted request
        // parked behind the other, few enough that parked threads never exhaust the green-thread
        // budget (then every request is preempted whenever its quantum ends, at every depth).
        if next_id - (replies.len() as u64) < 2 {
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
    for (kib, (answered, preempted, preemptions)) in HEADROOM_KIB.iter().zip(per_depth) {
        eprintln!(
            "deep stacks: {:2} KiB deep: {answered} requests, {preempted} preempted at that depth ({:.3} of them: \
             the same work at every depth), {:.2} preemptions per request (the recursion included)",
            STACK_KIB - kib,
            preempted as f64 / answered.max(1) as f64,
            preemptions as f64 / answered.max(1) as f64
        );
    }
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
        .filter(|id| id % HEADROOM_KIB.len() as u64 == HEADROOM_KIB.len() as u64 - 1)
        .map(|id| depths[id as usize].load(Ordering::Relaxed))
        .min()
        .unwrap();
    eprintln!("deep stacks: the 2 KiB-headroom requests recursed {deepest} levels");
    assert!(deepest as usize >= STACK_KIB - 2 - 4, "recursion reached level {deepest} only");
    // (The loop ran until every depth had MIN_PREEMPTED_PER_DEPTH preempted requests: not
    // re-asserted, issue 38, A3. Past that, every result exact and every request answered once.)
    assert_eq!(t.handler_panics, 0);
    assert_eq!(t.resumes, t.preemptions + t.yields);
}
