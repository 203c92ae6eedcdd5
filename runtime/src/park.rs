//! Parking a worker's OS thread and waking it (`--idle park`): a futex on a per-worker wake
//! sequence number.
//!
//! Protocol (no lost wake-up): the worker reads the sequence, announces itself parked
//! (`WorkerShared::parked`, SeqCst), checks once more for work and for shutdown, and sleeps only
//! while the sequence still has the value it read. A waker clears `parked` (so one wake-up is
//! sent per park), then bumps the sequence and wakes the futex: a bump that lands between the
//! worker's read and its sleep makes `FUTEX_WAIT` return at once. Work that arrives after the
//! worker's last check is seen by the timer core, which keeps scanning, finds the worker parked
//! and wakes it. A worker may park during a shutdown while requests can still arrive; once the
//! transport is finished (or on abort) it no longer parks, and the timer core, which watches for
//! that, wakes those parked before (the worker announces itself, SeqCst, before it reads the
//! flags; the stopping side stores them before it looks for parked workers).

use std::sync::atomic::AtomicU32;
#[cfg(not(loom))]
use std::sync::atomic::{fence, AtomicBool, Ordering};

#[cfg(loom)]
use loom::sync::atomic::{fence, AtomicBool, AtomicU32 as GateSeq, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::AtomicU32 as GateSeq;

/// One worker's parking handshake (`--idle park`): the flag that says it sleeps, and the sequence
/// its futex sleeps on. The worker's side is `announce`, then `retract` if it found work after
/// all, else `wait`; a waker's side is `wake`.
///
/// Why no wake-up is lost (issue 39, item 6), as pairs of SeqCst operations (all four accesses
/// to `parked` and `seq`, and the work checks on both sides, are SeqCst, so they fall in one
/// total order):
/// * the worker's store `parked = true` (in `announce`) comes before its load of the queues;
///   a producer's store of work comes before the waker's load of the queues and its
///   `parked.swap` (in `wake`). So either the worker's check sees the work (it retracts and
///   serves it), or the waker's check, made after the work was stored, sees it *and* sees
///   `parked` set, and wakes the worker: the two checks cannot both miss;
/// * the waker's `seq` bump (in `wake`) comes after its `parked.swap`; the worker read `seq`
///   before announcing. A bump anywhere after that read makes `wait` return (the futex compares
///   the value atomically with going to sleep), so a wake-up sent between the worker's check and
///   its sleep is not slept through;
/// * one wake-up per park: only the waker whose swap took `parked` from true bumps.
///
/// The two SeqCst fences (`announce`, `claim`) carry the first point. The C++ model already
/// forbids both checks missing with SeqCst accesses alone, but loom models SeqCst accesses as
/// acquire/release, and without the fences it reports exactly that lost wake-up; with them the
/// argument holds in both models. On x86 they cost one `mfence` on the parking path and per
/// wake-up a waker claims; status reads (`is_parked`) take none.
///
/// `loom_tests` below checks this with a worker and a producer that scans as the timer core
/// does, under every interleaving loom explores.
pub struct ParkGate {
    parked: AtomicBool,
    seq: GateSeq,
}

impl Default for ParkGate {
    fn default() -> Self {
        ParkGate { parked: AtomicBool::new(false), seq: GateSeq::new(0) }
    }
}

impl ParkGate {
    /// The worker announces that it is about to sleep; returns the sequence to sleep on. It must
    /// check for work once more afterwards, then `retract` or `wait`.
    pub fn announce(&self) -> u32 {
        let seen = self.seq.load(Ordering::SeqCst);
        self.parked.store(true, Ordering::SeqCst);
        // Pairs with the fence in `claim`: the flag's store is ordered before this worker's
        // later check for work (a store→load ordering only a SeqCst fence gives).
        fence(Ordering::SeqCst);
        seen
    }

    /// The worker found work after announcing: it does not sleep. (A waker that cleared the flag
    /// meanwhile bumped the sequence for nothing.)
    pub fn retract(&self) {
        self.parked.store(false, Ordering::SeqCst);
    }

    /// Whether a waker woke the worker since it announced (`seen`): its `wait` would return.
    pub fn woken_since(&self, seen: u32) -> bool {
        self.seq.load(Ordering::SeqCst) != seen
    }

    /// The worker sleeps until a waker bumped the sequence past `seen`.
    pub fn wait(&self, seen: u32) {
        while !self.woken_since(seen) {
            #[cfg(not(loom))]
            wait(&self.seq, seen);
            #[cfg(loom)]
            loom::thread::yield_now();
        }
    }

    /// Whether the worker is parked (or announced it is about to be): a status read, for
    /// decisions that a later `claim` confirms.
    pub fn is_parked(&self) -> bool {
        self.parked.load(Ordering::SeqCst)
    }

    /// A waker that saw work for the worker claims its wake-up: true if the worker was parked
    /// (then this waker, and no other, must `wake_claimed`). The fence pairs with the one in
    /// `announce`.
    pub fn claim(&self) -> bool {
        fence(Ordering::SeqCst);
        self.parked.swap(false, Ordering::SeqCst)
    }

    /// Ends the wait of a worker whose wake-up this waker claimed.
    pub fn wake_claimed(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        #[cfg(not(loom))]
        futex_wake(&self.seq);
    }

    /// A waker: wakes the worker if it is parked; true if this call did (one per park). The
    /// runtime's waker (`worker::idle::wake`) does the same two steps with its latency stamp
    /// between them; the tests and the loom model call this.
    #[cfg(test)]
    pub fn wake(&self) -> bool {
        if !self.claim() {
            return false;
        }
        self.wake_claimed();
        true
    }
}

/// Sleeps while `*word == seen` (spurious returns are the caller's to loop over).
pub fn wait(word: &AtomicU32, seen: u32) {
    // SAFETY: FUTEX_WAIT on a live, aligned u32 of this process; no timeout; the kernel only
    // reads the word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            seen,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes the sleeper on `*word` (the caller changed it first).
fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a live, aligned u32 of this process.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1);
    }
}

/// CPU time this thread has used, ns (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_ns() -> u64 {
    crate::clock::read_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_wake_before_the_wait_is_not_lost() {
        let g = ParkGate::default();
        let seen = g.announce();
        assert!(g.wake(), "the announced worker is woken");
        assert!(!g.wake(), "one wake-up per park");
        g.wait(seen); // returns at once: the sequence moved
        assert!(!g.is_parked());
    }

    /// A lost wake-up fails the test after a minute instead of hanging the run (issue 38, A13:
    /// the join had no timeout and nothing was asserted).
    #[test]
    fn a_sleeper_is_woken() {
        let g = Arc::new(ParkGate::default());
        let (done_tx, done) = std::sync::mpsc::channel();
        {
            let g = g.clone();
            std::thread::spawn(move || {
                let seen = g.announce();
                g.wait(seen);
                done_tx.send(g.is_parked()).unwrap();
            });
        }
        let t0 = std::time::Instant::now();
        while !g.wake() {
            assert!(t0.elapsed().as_secs() < 60, "the sleeper never announced itself");
            std::thread::yield_now();
        }
        let parked = done.recv_timeout(std::time::Duration::from_secs(60)).expect("the sleeper was woken within 60 s");
        assert!(!parked, "the waker cleared the flag");
    }

    #[test]
    fn cpu_time_grows_with_work_and_not_with_sleep() {
        let t0 = thread_cpu_ns();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let t1 = thread_cpu_ns();
        assert!(t1 > t0, "work used CPU time");
        let g = ParkGate::default();
        let seen = g.announce();
        // Sleep on the futex until another thread wakes it after it has spun 50 ms of its own.
        std::thread::scope(|s| {
            s.spawn(|| {
                let t = std::time::Instant::now();
                while t.elapsed() < std::time::Duration::from_millis(50) {
                    std::hint::spin_loop();
                }
                assert!(g.wake());
            });
            g.wait(seen);
        });
        let t2 = thread_cpu_ns();
        assert!(t2 - t1 < 25_000_000, "a thread asleep 50 ms used {} ns of CPU", t2 - t1);
    }
}

/// Model checks of the parking handshake (issue 39, item 6):
/// `RUSTFLAGS="--cfg loom" cargo test -p synergy --release --lib loom_tests` (scripts/test.sh).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::ParkGate;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::Arc;
    use loom::thread;

    /// A worker that parks when it finds no work (announce, check, then retract or sleep) and a
    /// producer that adds one unit of work and then makes one scan as the timer core does (work
    /// waiting: wake the worker if it is parked, `ParkGate::wake`). The timer core scans again and again; one scan
    /// made after the work was stored is enough, which is what the SeqCst argument of
    /// `ParkGate` says. So under every interleaving the worker either saw the work, or its sleep
    /// would end at once (the scan woke it): never asleep with the work waiting. With the
    /// worker's check moved before `announce`, loom finds the interleaving that loses the wake-up
    /// (the check misses the work, the scan misses the flag).
    #[test]
    fn an_arrival_is_never_left_waiting_for_a_parked_worker() {
        loom::model(|| {
            let gate = Arc::new(ParkGate::default());
            let work = Arc::new(AtomicUsize::new(0));
            let worker = {
                let (gate, work) = (gate.clone(), work.clone());
                thread::spawn(move || {
                    let seen = gate.announce();
                    if work.load(Ordering::SeqCst) > 0 {
                        gate.retract();
                        None
                    } else {
                        Some(seen)
                    }
                })
            };
            let producer = {
                let (gate, work) = (gate.clone(), work.clone());
                thread::spawn(move || {
                    work.fetch_add(1, Ordering::SeqCst);
                    if work.load(Ordering::SeqCst) > 0 {
                        gate.wake();
                    }
                })
            };
            let slept = worker.join().unwrap();
            producer.join().unwrap();
            if let Some(seen) = slept {
                assert!(gate.woken_since(seen), "the worker sleeps with the work waiting: a lost wake-up");
            }
        });
    }
}
