//! Shinjuku's dispatcher threads (`--policy shinjuku`; Kaffes et al., NSDI '19, §3): in place of
//! the timer core, each dispatcher owns a contiguous block of workers, takes every request that
//! arrives on those workers' transport queues into its own queues (SQ or MQ), hands each idle
//! worker one unit of work through the worker's one-slot mailbox, and preempts by timestamp a
//! request that has run a quantum while work waits. Preempted (or yielding) requests come back to
//! it and go to the tail or the head of their queue. Every choice is `policy::shinjuku`'s, the code
//! the simulator's Shinjuku (`synergy_sim::dispatched`) runs.
//!
//! The hand-off protocol, per worker: the worker counts its asks (`WorkerShared::asks`: one at
//! start, one whenever a unit of work ended), the dispatcher counts what it sent. A worker is free
//! while `asks > sent`, and then its mailbox is empty (it took the last unit before running it), so
//! a send always finds room. A worker hands a preempted thread back *before* it asks again, and the
//! dispatcher reads the asks *before* it drains the handed-back threads, so a thread handed back
//! by a worker the dispatcher sees free is drained in the same loop: its worker then gets what the
//! queues hand out next, chosen before the thread is put back (`Queues::preempted`).
//!
//! Only this dispatcher polls its workers' transport queues, pushes to their mailboxes and
//! interrupts them; the interrupt itself is the runtime's (`--preempt signal|ipi|uintr`), aimed at
//! the worker's current arming like the timer core's.

use crate::clock;
use crate::policy::shinjuku::{admits_new, dispatcher_workers, preempt_due, Queues};
use crate::policy::timer::{retry_deadline, DISARMED};
use crate::stats::{LoopPeriods, PeriodHistogram, TimerStats};
use crate::timer_core::send_interrupt;
use crate::worker::{Returned, Shared, Work, RX_BATCH};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct DispatcherParams {
    /// Which dispatcher this is (0-based).
    pub index: usize,
    pub cpu: Option<usize>,
    /// `sched_yield` after every loop: where the dispatcher time-shares its CPU.
    pub yield_each_loop: bool,
}

/// One dispatcher's private state.
struct Dispatcher<'a> {
    shared: &'a Shared,
    first: usize,
    queues: Queues<Work>,
    /// Units of work sent to each worker of the block.
    sent: Vec<u64>,
    /// What each worker gets next, chosen when its request was preempted.
    reserved: Vec<Option<Work>>,
    free: Vec<bool>,
    quantum_ns: u64,
    /// `shinjuku_queue_limit`: beyond it new requests are turned away (`admits_new`).
    queue_limit: usize,
    /// The most units the queues have held, as last published in `dispatcher_queue_max`.
    queue_max: usize,
}

pub fn run_dispatcher(
    shared: Arc<Shared>,
    params: DispatcherParams,
    stop: Arc<AtomicBool>,
    stats: Arc<TimerStats>,
    periods: Arc<PeriodHistogram>,
) {
    if let Some(cpu) = params.cpu {
        if let Err(e) = crate::cpu::pin_current_thread(cpu) {
            log::warn!("dispatcher {}: cannot pin to CPU {cpu}: {e}; running unpinned", params.index);
        }
    }
    let policy = shared.shinjuku.clone().expect("dispatchers run only under policy shinjuku");
    let block = dispatcher_workers(params.index, policy.dispatchers, shared.workers.len());
    let mut d = Dispatcher {
        shared: &shared,
        first: block.start,
        queues: policy.queues(),
        sent: vec![0; block.len()],
        reserved: (0..block.len()).map(|_| None).collect(),
        free: vec![false; block.len()],
        quantum_ns: policy.quantum_ns,
        queue_limit: policy.queue_limit,
        queue_max: 0,
    };
    let mut buf = Vec::with_capacity(RX_BATCH);
    let mut loop_periods = LoopPeriods::new(clock::now_ns());
    while !stop.load(Ordering::Acquire) {
        let now = clock::now_ns();
        loop_periods.tick(now, &periods, &stats);
        d.see_free_workers();
        d.take_back(params.index, now);
        d.note_queue_len(&stats);
        d.admit(&mut buf, &stats);
        d.hand_out(now);
        d.preempt_overdue(now, &stats);
        if params.yield_each_loop {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    loop_periods.flush(&periods, &stats);
}

impl Dispatcher<'_> {
    fn worker(&self, i: usize) -> &crate::worker::WorkerShared {
        &self.shared.workers[self.first + i]
    }

    /// Publishes a new high-water mark of the queues (an atomic update only when it rises, not
    /// every loop).
    fn note_queue_len(&mut self, stats: &TimerStats) {
        if self.queues.len() > self.queue_max {
            self.queue_max = self.queues.len();
            stats.dispatcher_queue_max.fetch_max(self.queue_max as u64, Ordering::Relaxed);
        }
    }

    /// Which workers asked for work since their last unit: read before `take_back` (module docs).
    fn see_free_workers(&mut self) {
        for i in 0..self.sent.len() {
            self.free[i] = self.worker(i).asks.load(Ordering::Acquire) > self.sent[i];
        }
    }

    /// Threads handed back: each one's worker gets the next pick, then the thread is queued.
    fn take_back(&mut self, index: usize, now: u64) {
        while let Some(Returned { worker, thread }) = self.shared.returned[index].pop() {
            // SAFETY: a handed-back thread is parked (its switch completed before the push) and
            // owned by whoever holds its pointer: this dispatcher, until it sends it to a worker.
            let (kind, arrival) = unsafe { ((*thread.0).kind as usize, (*thread.0).arrival_ns) };
            let i = worker - self.first;
            let work = Work::Resume(thread);
            if self.reserved[i].is_none() {
                self.reserved[i] = Some(self.queues.preempted(work, kind, arrival, now));
            } else {
                self.queues.push_preempted(work, kind, arrival);
            }
        }
    }

    /// What arrived on the block's transport queues joins the queues while they are under their
    /// limit; the rest goes to its worker to be answered REJECTED. A transport queue is polled
    /// for no more than the queues and that worker's reject ring can take, so nothing taken in
    /// is ever dropped: past both, requests wait in the transport (for UDP, the socket buffer,
    /// whose overflow the kernel counts).
    fn admit(&mut self, buf: &mut Vec<crate::request::Request>, stats: &TimerStats) {
        for i in 0..self.sent.len() {
            let w = self.first + i;
            let rejects = &self.shared.workers[w].dispatcher_rejects;
            let room = self.queue_limit.saturating_sub(self.queues.len()) + (rejects.capacity() - rejects.len());
            buf.clear();
            self.shared.transport.poll(w, buf, RX_BATCH.min(room));
            if buf.is_empty() {
                continue;
            }
            self.shared.received(w, buf);
            for r in buf.drain(..) {
                if admits_new(self.queues.len(), self.queue_limit) {
                    let (kind, arrival_ns) = (r.kind as usize, r.arrival_ns);
                    self.queues.push_new(Work::Request(r), kind, arrival_ns);
                } else {
                    stats.dispatcher_rejects.fetch_add(1, Ordering::Relaxed);
                    if rejects.push(r).is_err() {
                        // Only this dispatcher pushes, and it polled no more than there was room.
                        log::error!("dispatcher found worker {w}'s reject ring full");
                        std::process::abort();
                    }
                }
            }
            self.note_queue_len(stats);
        }
    }

    /// Each free worker gets its reserved unit, else the queues' pick.
    fn hand_out(&mut self, now: u64) {
        for i in 0..self.sent.len() {
            if !self.free[i] {
                continue;
            }
            let Some(work) = self.reserved[i].take().or_else(|| self.queues.pop(now)) else { continue };
            self.sent[i] += 1;
            self.free[i] = false;
            if self.worker(i).mailbox.push(work).is_err() {
                // The worker took its last unit before asking again, so its mailbox is empty.
                log::error!("dispatcher found worker {}'s mailbox full", self.first + i);
                std::process::abort();
            }
        }
    }

    /// Shinjuku's timestamp test on every worker of the block (`policy::shinjuku::preempt_due`);
    /// the worker arms its deadline at `started + quantum` when it starts a request.
    fn preempt_overdue(&mut self, now: u64, stats: &TimerStats) {
        let queued = !self.queues.is_empty();
        if !queued {
            return;
        }
        for i in 0..self.sent.len() {
            let w = self.worker(i);
            let deadline = w.deadline.load(Ordering::Acquire);
            if deadline == DISARMED {
                continue;
            }
            // Read after the deadline (the worker publishes the generation first).
            let armed = w.gens.armed.load(Ordering::Acquire);
            let started = deadline.saturating_sub(self.quantum_ns);
            if !preempt_due(now, started, self.quantum_ns, queued) {
                continue;
            }
            // Once per arming: a later look finds the next deadline, the retry time on
            // (`policy::timer::INTERRUPT_RETRY_NS`), unless the worker re-armed meanwhile (a new
            // request). `started` is read back from it as `deadline - quantum`.
            let next = retry_deadline(now, self.quantum_ns);
            if w.deadline.compare_exchange(deadline, next, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                w.gens.target.store(armed, Ordering::Release);
                send_interrupt(self.shared, w, stats);
            }
        }
    }
}
