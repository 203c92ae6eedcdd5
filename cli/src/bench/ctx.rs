//! `synergy bench ctx`: cost of one green-thread switch, next to the `corosensei` crate's
//! coroutine switch measured in the same run on the same CPU. Both are timed as ping-pong round
//! trips (two switches each) and reported per switch; rounds alternate between the two so that
//! frequency changes and noise hit both alike, and the median round is reported.

use serde::Serialize;
use std::cell::Cell;
use synergy::bench::green::switch;
use synergy::bench::green::{Context, Stack};
use synergy::clock;

thread_local! {
    // Single OS thread, no preemption: TLS is fine in the benchmark.
    static PING: Cell<(*mut Context, *mut Context)> = const { Cell::new((std::ptr::null_mut(), std::ptr::null_mut())) };
}

extern "C" fn pong() -> ! {
    let (main, green) = PING.with(|p| p.get());
    loop {
        // SAFETY: both contexts live on the benchmark's frame until it finishes switching.
        unsafe { switch(green, main) };
    }
}

/// Runs `f` with a green thread running `pong` and a function doing `n` round trips to it.
fn with_ping_pong<R>(f: impl FnOnce(&mut dyn FnMut(u64)) -> R) -> R {
    let stack = Stack::new(64 * 1024).expect("stack");
    let mut main = Context::default();
    let mut green = Context::new(stack.top(), pong);
    PING.with(|p| p.set((&mut main, &mut green)));
    let mut round_trips = |n: u64| {
        for _ in 0..n {
            // SAFETY: green runs `pong` on `stack`, alive until `f` returns.
            unsafe { switch(&mut main, &green) };
        }
    };
    f(&mut round_trips)
}

/// ns per switch over `round_trips` round trips of our switch.
fn ours(round_trips: u64) -> f64 {
    with_ping_pong(|ping| {
        let t0 = clock::now_ns();
        ping(round_trips);
        let dt = clock::now_ns() - t0;
        dt as f64 / (2 * round_trips) as f64
    })
}

/// ns per switch over `round_trips` resume/suspend pairs of a corosensei coroutine.
fn corosensei(round_trips: u64) -> f64 {
    use corosensei::{Coroutine, CoroutineResult};
    let mut co: Coroutine<(), (), ()> = Coroutine::new(|yielder, ()| loop {
        yielder.suspend(());
    });
    let t0 = clock::now_ns();
    for _ in 0..round_trips {
        if let CoroutineResult::Return(()) = co.resume(()) {
            unreachable!()
        }
    }
    let dt = clock::now_ns() - t0;
    dt as f64 / (2 * round_trips) as f64
}

#[derive(Debug, Clone, Serialize)]
pub struct CtxResult {
    pub rounds: usize,
    pub round_trips_per_round: u64,
    pub synergy_ns_per_switch: f64,
    pub corosensei_ns_per_switch: f64,
    /// synergy / corosensei (ours also carries the FP control state, see docs/benchmarks.md).
    pub ratio: f64,
    pub cpu: Option<usize>,
    /// The processor (`model name`): timings compare only within one machine.
    pub cpu_model: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(rounds: usize, round_trips: u64, cpu: Option<usize>) -> CtxResult {
    clock::init();
    if let Some(c) = cpu {
        let _ = synergy::cpu::pin_current_thread(c);
    }
    ours(round_trips / 10 + 1);
    corosensei(round_trips / 10 + 1);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut progress = synergy_eval::progress::task("synergy bench ctx", (rounds) as u64, "rounds");
    for _ in 0..rounds {
        a.push(ours(round_trips));
        b.push(corosensei(round_trips));
        progress.inc();
    }
    let (sa, sb) = (median(a), median(b));
    CtxResult {
        rounds,
        round_trips_per_round: round_trips,
        synergy_ns_per_switch: sa,
        corosensei_ns_per_switch: sb,
        ratio: sa / sb,
        cpu,
        cpu_model: synergy::cpu::model_name(),
    }
}

/// TSC ticks per batch of `per_batch` round trips of our switch, for `batches` batches: the
/// distribution the interrupt microbenchmark reports next to the interrupt paths (one stamp pair
/// per batch, because a stamp costs more than a switch).
pub fn switch_batches(batches: usize, per_batch: u64) -> Vec<u64> {
    with_ping_pong(|ping| {
        (0..batches)
            .map(|_| {
                let t0 = clock::rdtsc_ordered();
                ping(per_batch);
                clock::rdtsc_ordered() - t0
            })
            .collect()
    })
}
