//! Transports: where a worker's requests come from and where its replies go. One RX/TX queue pair
//! per worker; the runtime only sees this trait.

pub mod channel;

use crate::request::{Reply, Request};

/// Where requests come from and replies go: kernel UDP, TCP, DPDK, or the in-process channel; each worker polls its own queue.
pub trait Transport: Send + Sync + 'static {
    /// Moves up to `max` requests received for `worker` into `out`, without blocking. The
    /// runtime calls it for a given `worker` from one thread at a time (that worker's, or under a
    /// baseline policy any worker holding that queue's `WorkerShared::polling` flag).
    fn poll(&self, worker: usize, out: &mut Vec<Request>, max: usize);
    /// Requests received for `worker` but not yet polled. The timer core uses it (together with
    /// the worker's software queue) to decide whether a long request is blocking others.
    fn backlog(&self, worker: usize) -> usize;
    /// Sends a reply on `worker`'s TX queue.
    fn reply(&self, worker: usize, reply: Reply);
    /// Whether `backlog` sees every request that arrived but was not polled. `--idle park` needs
    /// it: the timer core wakes a parked worker for the work it sees waiting there.
    fn reports_backlog(&self) -> bool {
        true
    }
    /// Descriptors that are readable (level-triggered `EPOLLIN`) exactly while a request waits
    /// for some worker, open as long as the transport. With them the timer core sleeps in epoll
    /// while every worker is parked (`--idle park`, `timer_sleep`); without (the default) it
    /// keeps polling `backlog`.
    fn arrival_fds(&self) -> Vec<std::os::fd::RawFd> {
        Vec::new()
    }
    /// Worker `worker` started (`running`) or stopped running a long request: the application's
    /// `feedback_start()` and `feedback_finished()`, and the long request's preemption and
    /// resumption (possibly on another worker). Ingress steering that keeps short requests away
    /// from busy workers (`--steer scan-avoid`) listens; the default ignores it. Called on the
    /// worker's own thread, in a few nanoseconds: it must not block.
    fn long_request(&self, _worker: usize, _running: bool) {}
    /// True once no request will ever arrive again, so the runtime may drain and stop.
    fn finished(&self) -> bool {
        false
    }
}
