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

use std::sync::atomic::{AtomicU32, Ordering};

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

/// Bumps `*word` and wakes its sleeper.
pub fn wake(word: &AtomicU32) {
    word.fetch_add(1, Ordering::SeqCst);
    // SAFETY: FUTEX_WAKE on a live, aligned u32 of this process.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1);
    }
}

/// CPU time this thread has used, ns (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_ns() -> u64 {
    crate::clock::read_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_wake_before_the_wait_is_not_lost() {
        let w = AtomicU32::new(0);
        let seen = w.load(Ordering::SeqCst);
        wake(&w);
        wait(&w, seen); // returns at once: the value changed
        assert_eq!(w.load(Ordering::SeqCst), 1);
    }

    /// A lost wake-up fails the test after a minute instead of hanging the run (issue 38, A13:
    /// the join had no timeout and nothing was asserted).
    #[test]
    fn a_sleeper_is_woken() {
        let w = Arc::new(AtomicU32::new(0));
        let (done_tx, done) = std::sync::mpsc::channel();
        {
            let w = w.clone();
            std::thread::spawn(move || {
                while w.load(Ordering::SeqCst) == 0 {
                    wait(&w, 0);
                }
                done_tx.send(w.load(Ordering::SeqCst)).unwrap();
            });
        }
        wake(&w);
        let seen = done.recv_timeout(std::time::Duration::from_secs(60)).expect("the sleeper was woken within 60 s");
        assert_eq!(seen, 1, "the sleeper saw the waker's value");
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
        let w = AtomicU32::new(0);
        let seen = 0;
        // Sleep on the futex until another thread wakes it after it has spun 50 ms of its own.
        std::thread::scope(|s| {
            s.spawn(|| {
                let t = std::time::Instant::now();
                while t.elapsed() < std::time::Duration::from_millis(50) {
                    std::hint::spin_loop();
                }
                wake(&w);
            });
            while w.load(Ordering::SeqCst) == seen {
                wait(&w, seen);
            }
        });
        let t2 = thread_cpu_ns();
        assert!(t2 - t1 < 25_000_000, "a thread asleep 50 ms used {} ns of CPU", t2 - t1);
    }
}
