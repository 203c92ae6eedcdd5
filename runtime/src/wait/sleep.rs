//! `sleep`: one timer thread per process wakes sleepers at their deadlines.
//!
//! A sleeping request's green thread blocks on a `WaitSlot` (its worker serves other requests
//! meanwhile) that the timer thread notifies at the deadline. The timer thread sleeps on a
//! condition variable until the earliest deadline, so a wake-up is as late as the kernel's timer
//! slack and scheduling make it (tens of µs on an idle machine): `sleep` is for waits of 100 µs
//! and more, not for pacing within a quantum. Registration takes a short OS lock, with
//! preemption disabled so that the request cannot migrate while holding it.

use super::WaitSlot;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

struct Sleeper {
    at: Instant,
    seq: u64,
    slot: Arc<WaitSlot>,
}

impl PartialEq for Sleeper {
    fn eq(&self, o: &Sleeper) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Sleeper {}
impl PartialOrd for Sleeper {
    fn partial_cmp(&self, o: &Sleeper) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Sleeper {
    fn cmp(&self, o: &Sleeper) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct Timers {
    heap: Mutex<(BinaryHeap<Reverse<Sleeper>>, u64)>,
    changed: Condvar,
}

fn timers() -> &'static Timers {
    static TIMERS: OnceLock<&'static Timers> = OnceLock::new();
    TIMERS.get_or_init(|| {
        let t: &'static Timers =
            Box::leak(Box::new(Timers { heap: Mutex::new((BinaryHeap::new(), 0)), changed: Condvar::new() }));
        std::thread::Builder::new()
            .name("synergy-sleep".into())
            .spawn(move || run(t))
            .expect("synergy::time: cannot start the timer thread");
        t
    })
}

fn run(t: &'static Timers) -> ! {
    let mut g = t.heap.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        while g.0.peek().is_some_and(|Reverse(s)| s.at <= now) {
            let Reverse(s) = g.0.pop().expect("peeked");
            s.slot.notify();
        }
        g = match g.0.peek().map(|Reverse(s)| s.at) {
            Some(at) => t.changed.wait_timeout(g, at - now).unwrap_or_else(|e| e.into_inner()).0,
            None => t.changed.wait(g).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

/// Waits `d` without holding the worker: other requests run on it meanwhile, and the request
/// resumes on the same worker (off a worker, the OS thread sleeps). At least `d` passes.
pub fn sleep(d: Duration) {
    if d.is_zero() {
        return;
    }
    let slot = Arc::new(WaitSlot::new());
    let at = Instant::now() + d;
    crate::preempt::without_preemption(|| {
        let t = timers();
        let mut g = t.heap.lock().unwrap_or_else(|e| e.into_inner());
        g.1 += 1;
        let seq = g.1;
        let earliest = g.0.peek().is_none_or(|Reverse(s)| at < s.at);
        g.0.push(Reverse(Sleeper { at, seq, slot: slot.clone() }));
        if earliest {
            t.changed.notify_one();
        }
    });
    while !slot.is_notified() {
        slot.wait();
    }
}
