//! A trace-replay transport: a precomputed open-loop arrival schedule per worker, released to the
//! worker as the clock passes each arrival time, like a NIC queue filling up. It needs no load
//! generator thread (this machine has two cores: one worker, one timer core), and because the
//! arrival time is the *scheduled* time, queueing delay is measured even while the worker is busy.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use synergy::clock;
use synergy::request::{Reply, Request};
use synergy::transport::Transport;

/// An in-process transport that plays a fixed schedule of arrivals to the workers and records when each request was answered (`synergy run`, the simulator comparisons).
pub struct ReplayTransport {
    /// Per worker: requests sorted by `arrival_ns` offset from start.
    schedule: Box<[Box<[Request]>]>,
    /// Per worker: index of the next request not yet polled.
    cursor: Box<[AtomicUsize]>,
    start_ns: AtomicU64,
    /// Completion time per request id (0 = not answered), indexed by id.
    done: Box<[AtomicU64]>,
    answered: AtomicUsize,
    duplicates: AtomicUsize,
}

impl ReplayTransport {
    /// `schedule[w]` lists worker w's requests with `arrival_ns` relative to the start; ids must be
    /// 0..total.
    pub fn new(schedule: Vec<Vec<Request>>) -> ReplayTransport {
        let total: usize = schedule.iter().map(Vec::len).sum();
        ReplayTransport {
            cursor: schedule.iter().map(|_| AtomicUsize::new(0)).collect(),
            schedule: schedule.into_iter().map(Vec::into_boxed_slice).collect(),
            start_ns: AtomicU64::new(u64::MAX),
            done: (0..total).map(|_| AtomicU64::new(0)).collect(),
            answered: AtomicUsize::new(0),
            duplicates: AtomicUsize::new(0),
        }
    }

    /// Starts the clock: arrivals are relative to now.
    pub fn start(&self) {
        self.start_ns.store(clock::now_ns(), Ordering::Release);
    }

    /// When `start` was called (the runtime's clock, ns).
    pub fn start_ns(&self) -> u64 {
        self.start_ns.load(Ordering::Acquire)
    }

    fn due(&self, worker: usize, now: u64) -> usize {
        let start = self.start_ns();
        if start == u64::MAX {
            return self.cursor[worker].load(Ordering::Acquire);
        }
        let sched = &self.schedule[worker];
        let rel = now.saturating_sub(start);
        sched.partition_point(|r| r.arrival_ns <= rel)
    }

    /// (request, completion time) for every request; completion 0 if never answered.
    pub fn results(&self) -> Vec<(Request, u64)> {
        let start = self.start_ns();
        let mut out: Vec<(Request, u64)> = self
            .schedule
            .iter()
            .flat_map(|s| s.iter())
            .map(|r| {
                let mut r = r.clone();
                r.arrival_ns += start;
                let done = self.done[r.id as usize].load(Ordering::Acquire);
                (r, done)
            })
            .collect();
        out.sort_by_key(|(r, _)| r.id);
        out
    }

    /// Requests answered so far.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::Acquire)
    }

    /// Replies for a request already answered (must stay 0).
    pub fn duplicates(&self) -> usize {
        self.duplicates.load(Ordering::Acquire)
    }

    /// Requests in the schedule.
    pub fn total(&self) -> usize {
        self.done.len()
    }
}

impl Transport for ReplayTransport {
    fn poll(&self, worker: usize, out: &mut Vec<Request>, max: usize) {
        let now = clock::now_ns();
        let due = self.due(worker, now);
        let cur = self.cursor[worker].load(Ordering::Relaxed);
        let take = due.saturating_sub(cur).min(max);
        if take == 0 {
            return;
        }
        // Only the owning worker polls its own queue, so a plain store suffices.
        self.cursor[worker].store(cur + take, Ordering::Release);
        let start = self.start_ns();
        out.extend(self.schedule[worker][cur..cur + take].iter().map(|r| {
            let mut r = r.clone();
            r.arrival_ns += start;
            r
        }));
    }

    fn backlog(&self, worker: usize) -> usize {
        self.due(worker, clock::now_ns()).saturating_sub(self.cursor[worker].load(Ordering::Acquire))
    }

    fn reply(&self, _worker: usize, reply: Reply) {
        let Some(slot) = self.done.get(reply.id as usize) else { return };
        if slot.swap(reply.done_ns.max(1), Ordering::AcqRel) == 0 {
            self.answered.fetch_add(1, Ordering::AcqRel);
        } else {
            self.duplicates.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn finished(&self) -> bool {
        self.start_ns() != u64::MAX
            && self.schedule.iter().zip(self.cursor.iter()).all(|(s, c)| c.load(Ordering::Acquire) == s.len())
    }
}
