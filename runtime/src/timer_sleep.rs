//! The timer core's sleep while every worker is parked (`--idle park` over a transport that
//! names its arrival file descriptors, the kernel UDP transport's sockets): instead of polling
//! the transport every microsecond it waits in `epoll_wait` for a datagram, so an idle server
//! uses no CPU at all, timer core included.
//!
//! When the timer core may sleep: every worker is parked, and nothing a worker would take waits
//! in the runtime (wait queue, central queues). Then only an arrival can create work, and an
//! arrival makes a socket readable (level-triggered: a datagram left unread keeps it readable,
//! so the grants that follow see it on every loop).
//!
//! The one way work appears without an arrival the timer core sees: a worker that announced
//! itself parked finds work in its last check and un-parks itself (it took the datagram that
//! would have woken the timer core). Protocol (Dekker's, both SeqCst): the timer core sets
//! `sleeping` and then checks that every worker is still parked; the worker clears `parked` and
//! then reads `sleeping`, and if set writes the eventfd that is part of the epoll set. Either the
//! timer core sees the worker running and does not sleep, or the worker sees the timer core
//! sleeping and wakes it. Sleeps also end after `SLEEP_MAX_MS`, so a shutdown waits at most that.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// The longest single sleep (ms): bounds how late the timer core notices a stop.
pub const SLEEP_MAX_MS: i32 = 1;

/// What workers share with the sleeping timer core.
pub struct SleepWake {
    sleeping: AtomicBool,
    eventfd: OwnedFd,
}

impl SleepWake {
    pub fn new() -> io::Result<SleepWake> {
        // SAFETY: eventfd(2) with valid flags; the returned descriptor is owned from here on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        Ok(SleepWake { sleeping: AtomicBool::new(false), eventfd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Called by a worker that cleared its own `parked` flag (SeqCst) without being woken: wakes
    /// the timer core if it sleeps. One load when it does not.
    pub fn worker_unparked(&self) {
        if self.sleeping.load(Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd; a full counter (EAGAIN)
            // already means "wake".
            unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }
}

/// The timer core's epoll set: the transport's arrival descriptors and the eventfd.
pub struct TimerSleep {
    epoll: OwnedFd,
}

impl TimerSleep {
    /// `fds` must stay open as long as this lives (the transport's, which the runtime holds).
    pub fn new(wake: &SleepWake, fds: &[RawFd]) -> io::Result<TimerSleep> {
        // SAFETY: epoll_create1 with a valid flag; the descriptor is owned from here on.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
        for &fd in fds.iter().chain([wake.eventfd.as_raw_fd()].iter()) {
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: fd as u64 };
            // SAFETY: adds an open descriptor to our epoll set with a live event struct.
            if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(TimerSleep { epoll })
    }

    /// Sleeps until an arrival, a worker's wake-up or `timeout_ms` (the timer core passes
    /// `SLEEP_MAX_MS`), if `still_idle()` holds after announcing the sleep; true if it slept.
    pub fn sleep(&mut self, wake: &SleepWake, timeout_ms: i32, still_idle: impl FnOnce() -> bool) -> bool {
        wake.sleeping.store(true, Ordering::SeqCst);
        if !still_idle() {
            wake.sleeping.store(false, Ordering::SeqCst);
            return false;
        }
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
        // SAFETY: waits on our epoll set into a live array of the length passed.
        unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, timeout_ms) };
        wake.sleeping.store(false, Ordering::SeqCst);
        let mut count = 0u64;
        // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd (EAGAIN if unset).
        unsafe { libc::read(wake.eventfd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Far longer than any wake-up: a sleep that ends before it was ended by something else.
    const LONG_MS: i32 = 20_000;
    const WELL_BEFORE: Duration = Duration::from_secs(10);

    #[test]
    fn a_sleep_ends_at_the_timeout_at_a_worker_wake_up_or_not_at_all() {
        let wake = SleepWake::new().unwrap();
        let mut s = TimerSleep::new(&wake, &[]).unwrap();
        assert!(!s.sleep(&wake, LONG_MS, || false), "a worker ran after the announcement: no sleep");
        assert!(!wake.sleeping.load(Ordering::SeqCst));
        let t = Instant::now();
        assert!(s.sleep(&wake, 5, || true));
        assert!(t.elapsed() >= Duration::from_millis(5), "slept until the timeout");
        // A worker that un-parks while the timer core sleeps wakes it: here before the wait,
        // which then returns at once (the eventfd stays readable until read).
        let t = Instant::now();
        assert!(s.sleep(&wake, LONG_MS, || {
            wake.worker_unparked();
            true
        }));
        assert!(t.elapsed() < WELL_BEFORE, "woken, not timed out: {:?}", t.elapsed());
        // The wake-up was consumed: the next sleep times out.
        let t = Instant::now();
        assert!(s.sleep(&wake, 5, || true));
        assert!(t.elapsed() >= Duration::from_millis(5));
    }

    #[test]
    fn a_worker_waking_a_sleeping_timer_core_from_another_thread_ends_its_sleep() {
        let wake = SleepWake::new().unwrap();
        let mut s = TimerSleep::new(&wake, &[]).unwrap();
        std::thread::scope(|sc| {
            sc.spawn(|| {
                while !wake.sleeping.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
                wake.worker_unparked();
            });
            let t = Instant::now();
            assert!(s.sleep(&wake, LONG_MS, || true));
            assert!(t.elapsed() < WELL_BEFORE, "{:?}", t.elapsed());
        });
    }

    #[test]
    fn a_readable_arrival_descriptor_ends_the_sleep() {
        let wake = SleepWake::new().unwrap();
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut s = TimerSleep::new(&wake, &[sock.as_raw_fd()]).unwrap();
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"x", sock.local_addr().unwrap()).unwrap();
        // Level-triggered: unread, it ends every sleep at once.
        for _ in 0..3 {
            let t = Instant::now();
            assert!(s.sleep(&wake, LONG_MS, || true));
            assert!(t.elapsed() < WELL_BEFORE, "{:?}", t.elapsed());
        }
    }
}
