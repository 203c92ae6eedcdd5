//! An in-process transport: per-worker lock-free RX rings fed by `submit`, one reply ring drained
//! with `take_replies`. Used by tests and by applications embedding the runtime.

use super::Transport;
use crate::clock;
use crate::queue::Ring;
use crate::request::{Reply, Request};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// An in-process transport: the application pushes requests and takes replies (embedding, tests, benchmarks).
pub struct ChannelTransport {
    rx: Box<[Ring<Request>]>,
    replies: Ring<Reply>,
    closed: AtomicBool,
    dropped_replies: AtomicU64,
}

impl ChannelTransport {
    /// A channel for `workers` workers: each with a receive ring of `rx_capacity` requests, and one reply ring of `reply_capacity`.
    pub fn new(workers: usize, rx_capacity: usize, reply_capacity: usize) -> ChannelTransport {
        ChannelTransport {
            rx: (0..workers).map(|_| Ring::with_capacity(rx_capacity)).collect(),
            replies: Ring::with_capacity(reply_capacity),
            closed: AtomicBool::new(false),
            dropped_replies: AtomicU64::new(0),
        }
    }

    /// Delivers `req` to `worker`'s RX queue, stamping its arrival time; gives it back if full.
    // The error is the request itself, handed back for a retry: boxing it would allocate per
    // submission.
    #[allow(clippy::result_large_err)]
    pub fn submit(&self, worker: usize, mut req: Request) -> Result<(), Request> {
        req.arrival_ns = clock::now_ns();
        self.rx[worker].push(req)
    }

    /// Everything replied so far.
    pub fn take_replies(&self) -> Vec<Reply> {
        std::iter::from_fn(|| self.replies.pop()).collect()
    }

    /// Replies waiting to be taken.
    pub fn replies_len(&self) -> usize {
        self.replies.len()
    }

    /// Requests waiting in `worker`'s RX queue.
    pub fn backlog_of(&self, worker: usize) -> usize {
        self.rx[worker].len()
    }

    /// No more submissions: lets `Runtime::shutdown` finish once everything is answered.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Replies lost because the reply ring was full (a test sizing error, never silent).
    pub fn dropped_replies(&self) -> u64 {
        self.dropped_replies.load(Ordering::Relaxed)
    }
}

impl Transport for ChannelTransport {
    fn poll(&self, worker: usize, out: &mut Vec<Request>, max: usize) {
        for _ in 0..max {
            match self.rx[worker].pop() {
                Some(r) => out.push(r),
                None => break,
            }
        }
    }

    fn backlog(&self, worker: usize) -> usize {
        self.rx[worker].len()
    }

    fn reply(&self, _worker: usize, reply: Reply) {
        if self.replies.push(reply).is_err() {
            self.dropped_replies.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn finished(&self) -> bool {
        self.closed.load(Ordering::Acquire) && self.rx.iter().all(|r| r.is_empty())
    }
}
