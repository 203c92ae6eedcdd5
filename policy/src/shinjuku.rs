//! Shinjuku's dispatcher decisions (Kaffes et al., NSDI '19, §3.4), shared by the runtime's
//! dispatcher thread (`--policy shinjuku`) and the simulator's faithful Shinjuku
//! (`synergy_sim::shinjuku`), so that both make the same choices from the same state.
//!
//! * **SQ**: one FIFO of every pending request. An idle worker gets the head.
//! * **MQ**: one FIFO per request type, each with a target latency (its SLO). An idle worker gets
//!   the head of the queue whose head has spent the largest share of its SLO waiting:
//!   `(now - head arrival) / SLO` (the paper's Algorithm 1, after BVT).
//! * **Preemption**: a request that has run a quantum is interrupted only while some request
//!   waits for its dispatcher. The preempted request goes back to its queue at the **tail**
//!   (approximates processor sharing; the paper's rule for multi-modal and heavy-tailed loads) or
//!   at the **head** (approximates c-FCFS), and the worker gets what the queues hand out next,
//!   chosen *before* the preempted request is put back (else a head requeue would hand the worker
//!   its own request again).
//! * **Several dispatchers** (§3.6): each owns a contiguous block of the workers and its own
//!   queues; requests reach a dispatcher by flow (RSS) and never move to another one.

use std::collections::VecDeque;
use std::ops::Range;

/// Where a preempted request goes back into its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "lowercase"))]
pub enum PreemptedTo {
    /// Behind everything queued: processor sharing among the long requests.
    Tail,
    /// In front of everything queued: it runs again as soon as the queue is served.
    Head,
}

impl PreemptedTo {
    /// Both places, in the order the command line lists them.
    pub const ALL: [PreemptedTo; 2] = [PreemptedTo::Tail, PreemptedTo::Head];

    /// Its command-line spelling.
    pub fn name(self) -> &'static str {
        match self {
            PreemptedTo::Tail => "tail",
            PreemptedTo::Head => "head",
        }
    }

    /// The place spelled `name` on the command line.
    pub fn named(name: &str) -> Option<PreemptedTo> {
        PreemptedTo::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Which queues the dispatcher keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueRule {
    /// One queue for every request (SQ).
    Single,
    /// One queue per request kind, with that kind's SLO in ns (MQ). Kinds beyond the list share
    /// the last queue (a request's kind comes from the wire and may be anything).
    Multi {
        /// Each queue's SLO (ns), by request kind.
        slo_ns: Vec<u64>,
    },
}

/// The whole of a Shinjuku configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShinjukuPolicy {
    /// Which queues requests are kept in (SQ or MQ).
    pub rule: QueueRule,
    /// Where a preempted request goes back in its queue.
    pub preempted_to: PreemptedTo,
    /// A request is preemptible once it has run this long (5-15 µs in the paper).
    pub quantum_ns: u64,
    /// Dispatcher threads, each owning a block of workers.
    pub dispatchers: usize,
    /// The most units of work a dispatcher's queues hold before it rejects new requests
    /// ([`admits_new`]); preempted requests always go back (they hold a green thread already).
    pub queue_limit: usize,
}

/// Whether a dispatcher whose queues hold `queued` units takes a new request in; if not, the
/// request is answered REJECTED (issue 39: the queues grew without bound under overload). A
/// dispatcher's queues then never hold more than `limit` plus one unit per worker of its block:
/// once at the limit only preempted requests join, and each came from a worker that took a unit
/// out of the queues first.
pub fn admits_new(queued: usize, limit: usize) -> bool {
    queued < limit
}

/// What `ShinjukuPolicy::validate` refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShinjukuConfigError {
    /// A quantum of 0.
    ZeroQuantum,
    /// No dispatcher.
    NoDispatcher,
    /// A dispatcher queue limit of 0.
    ZeroQueueLimit,
    /// The multi-queue rule without a positive SLO for every kind.
    MultiQueueSlo,
}

impl std::fmt::Display for ShinjukuConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ShinjukuConfigError::ZeroQuantum => "the Shinjuku quantum must be positive",
            ShinjukuConfigError::NoDispatcher => "Shinjuku needs at least one dispatcher",
            ShinjukuConfigError::ZeroQueueLimit => "a Shinjuku dispatcher's queue limit must be at least 1",
            ShinjukuConfigError::MultiQueueSlo => "the multi-queue policy needs a positive SLO for each request kind",
        })
    }
}

impl std::error::Error for ShinjukuConfigError {}

impl ShinjukuPolicy {
    /// SQ with preempted requests to the tail, one dispatcher, 5 µs: the paper's choice for
    /// multi-modal loads when types are unknown (Fig. 5c).
    pub fn sq_tail(quantum_ns: u64) -> ShinjukuPolicy {
        ShinjukuPolicy {
            rule: QueueRule::Single,
            preempted_to: PreemptedTo::Tail,
            quantum_ns,
            dispatchers: 1,
            queue_limit: usize::MAX,
        }
    }

    /// MQ with preempted requests to the head (Figs. 6, 7a, 8).
    pub fn mq_head(slo_ns: Vec<u64>, quantum_ns: u64) -> ShinjukuPolicy {
        ShinjukuPolicy {
            rule: QueueRule::Multi { slo_ns },
            preempted_to: PreemptedTo::Head,
            quantum_ns,
            dispatchers: 1,
            queue_limit: usize::MAX,
        }
    }

    /// Checks what the paper's algorithm needs: a quantum, at least one dispatcher, and for MQ at
    /// least one queue with nonzero SLOs.
    pub fn validate(&self) -> Result<(), ShinjukuConfigError> {
        if self.quantum_ns == 0 {
            return Err(ShinjukuConfigError::ZeroQuantum);
        }
        if self.dispatchers == 0 {
            return Err(ShinjukuConfigError::NoDispatcher);
        }
        if self.queue_limit == 0 {
            return Err(ShinjukuConfigError::ZeroQueueLimit);
        }
        if let QueueRule::Multi { slo_ns } = &self.rule {
            if slo_ns.is_empty() || slo_ns.contains(&0) {
                return Err(ShinjukuConfigError::MultiQueueSlo);
            }
        }
        Ok(())
    }

    /// The empty queues of one dispatcher.
    pub fn queues<T>(&self) -> Queues<T> {
        Queues::new(&self.rule, self.preempted_to)
    }
}

/// A queued item and when its request arrived (MQ ages the head by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry<T> {
    item: T,
    arrival_ns: u64,
}

/// One dispatcher's pending requests, under SQ or MQ.
#[derive(Debug, Clone)]
pub struct Queues<T> {
    queues: Vec<VecDeque<Entry<T>>>,
    /// MQ: the SLO of each queue; SQ: empty.
    slo_ns: Vec<u64>,
    preempted_to: PreemptedTo,
    len: usize,
}

impl<T> Queues<T> {
    /// Empty queues under `rule`, preempted requests going back to `preempted_to`.
    pub fn new(rule: &QueueRule, preempted_to: PreemptedTo) -> Queues<T> {
        let slo_ns = match rule {
            QueueRule::Single => Vec::new(),
            QueueRule::Multi { slo_ns } => slo_ns.clone(),
        };
        let queues = (0..slo_ns.len().max(1)).map(|_| VecDeque::new()).collect();
        Queues { queues, slo_ns, preempted_to, len: 0 }
    }

    fn queue_of(&self, kind: usize) -> usize {
        kind.min(self.queues.len() - 1)
    }

    /// Units of work queued, in all queues.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no unit of work is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a request that has not run yet (at the tail of its queue).
    pub fn push_new(&mut self, item: T, kind: usize, arrival_ns: u64) {
        let q = self.queue_of(kind);
        self.queues[q].push_back(Entry { item, arrival_ns });
        self.len += 1;
    }

    /// Puts a preempted request back, at the tail or the head as configured.
    pub fn push_preempted(&mut self, item: T, kind: usize, arrival_ns: u64) {
        let q = self.queue_of(kind);
        let e = Entry { item, arrival_ns };
        match self.preempted_to {
            PreemptedTo::Tail => self.queues[q].push_back(e),
            PreemptedTo::Head => self.queues[q].push_front(e),
        }
        self.len += 1;
    }

    /// The request an idle worker gets at `now_ns`: SQ's head, or the head of MQ's selected queue.
    pub fn pop(&mut self, now_ns: u64) -> Option<T> {
        let q = if self.slo_ns.is_empty() {
            0
        } else {
            let heads = self.queues.iter().zip(&self.slo_ns).map(|(q, &slo)| q.front().map(|e| (e.arrival_ns, slo)));
            select_queue(now_ns, heads)?
        };
        let e = self.queues[q].pop_front()?;
        self.len -= 1;
        Some(e.item)
    }

    /// A worker's request was preempted at `now_ns`: the worker gets the next request chosen from
    /// what waits now, and only then does the preempted one go back (tail or head). With nothing
    /// else waiting (the queue emptied after the decision) the preempted request itself comes back.
    pub fn preempted(&mut self, item: T, kind: usize, arrival_ns: u64, now_ns: u64) -> T {
        match self.pop(now_ns) {
            Some(next) => {
                self.push_preempted(item, kind, arrival_ns);
                next
            }
            None => item,
        }
    }
}

/// The paper's queue selection (Algorithm 1): among non-empty queues, given as (head arrival,
/// SLO), the one with the largest `(now - arrival) / SLO`; ties to the lowest index. Unlike the
/// pseudo-code, a queue is chosen even when every head arrived at `now` (ratio 0), so a non-empty
/// set of queues always yields one. Compared exactly (cross-multiplied in u128).
pub fn select_queue(now_ns: u64, heads: impl Iterator<Item = Option<(u64, u64)>>) -> Option<usize> {
    let mut best: Option<(usize, u64, u64)> = None;
    for (i, head) in heads.enumerate() {
        let Some((arrival, slo)) = head else { continue };
        let waited = now_ns.saturating_sub(arrival);
        let slo = slo.max(1);
        let better = match best {
            None => true,
            Some((_, w, s)) => u128::from(waited) * u128::from(s) > u128::from(w) * u128::from(slo),
        };
        if better {
            best = Some((i, waited, slo));
        }
    }
    best.map(|(i, _, _)| i)
}

/// Shinjuku's preemption test, made by the dispatcher for each busy worker: the request has run
/// at least a quantum and something waits for this dispatcher.
pub fn preempt_due(now_ns: u64, started_ns: u64, quantum_ns: u64, queued: bool) -> bool {
    queued && now_ns.saturating_sub(started_ns) >= quantum_ns
}

/// The workers dispatcher `d` of `dispatchers` owns: contiguous blocks, the first ones one larger
/// when the division leaves a remainder.
pub fn dispatcher_workers(d: usize, dispatchers: usize, workers: usize) -> Range<usize> {
    let (base, extra) = (workers / dispatchers, workers % dispatchers);
    let start = d * base + d.min(extra);
    start..start + base + usize::from(d < extra)
}

/// The dispatcher that owns worker `w`.
pub fn dispatcher_of(w: usize, dispatchers: usize, workers: usize) -> usize {
    (0..dispatchers).find(|&d| dispatcher_workers(d, dispatchers, workers).contains(&w)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sq_is_fifo_and_requeues_at_the_tail_or_the_head() {
        let mut q = ShinjukuPolicy::sq_tail(5_000).queues();
        for (i, r) in ["a", "b", "c"].into_iter().enumerate() {
            q.push_new(r, 7, i as u64);
        }
        // "x" is preempted: the worker gets the head, "x" goes behind "c".
        assert_eq!(q.preempted("x", 0, 0, 10), "a");
        assert_eq!((q.pop(10), q.pop(10), q.pop(10), q.pop(10)), (Some("b"), Some("c"), Some("x"), None));

        let mut q = Queues::new(&QueueRule::Single, PreemptedTo::Head);
        q.push_new("a", 0, 0);
        q.push_new("b", 0, 1);
        // At the head, but only after the worker took "a": it does not get its own request back.
        assert_eq!(q.preempted("x", 0, 0, 10), "a");
        assert_eq!((q.pop(10), q.pop(10)), (Some("x"), Some("b")));
        assert_eq!(q.preempted("y", 0, 0, 10), "y", "nothing else waits: it resumes");
        assert!(q.is_empty());
    }

    #[test]
    fn mq_serves_the_head_furthest_into_its_slo() {
        // Shorts' SLO 10 µs, longs' 1,000 µs.
        let mut q = ShinjukuPolicy::mq_head(vec![10_000, 1_000_000], 5_000).queues();
        q.push_new("long", 1, 0);
        q.push_new("short", 0, 90_000);
        // At 100 µs: the short has waited 10 µs = 1.0 of its SLO, the long 100 µs = 0.1.
        assert_eq!(q.pop(100_000), Some("short"));
        q.push_new("short2", 0, 100_000);
        // At 100 µs the new short has waited 0: the long goes first (0.1 > 0).
        assert_eq!(q.pop(100_000), Some("long"));
        assert_eq!(q.pop(100_000), Some("short2"));
        // Kinds beyond the list share the last queue.
        q.push_new("odd", 9, 0);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop(0), Some("odd"), "one queue holding work is chosen even at ratio 0");
    }

    #[test]
    fn mq_preempted_long_goes_back_to_its_head_after_the_pick() {
        let mut q = ShinjukuPolicy::mq_head(vec![10_000, 1_000_000], 5_000).queues();
        q.push_new("long2", 1, 50_000);
        q.push_new("short", 0, 95_000);
        // "long1" (arrived at 0) preempted at 100 µs: the short (0.5) beats long2 (0.05).
        assert_eq!(q.preempted("long1", 1, 0, 100_000), "short");
        // long1 went to the head of the long queue, in front of long2.
        assert_eq!((q.pop(100_000), q.pop(100_000)), (Some("long1"), Some("long2")));
    }

    #[test]
    fn queue_selection_ties_and_exactness() {
        assert_eq!(select_queue(10, [None, None].into_iter()), None);
        assert_eq!(select_queue(10, [Some((0, 10)), Some((5, 5))].into_iter()), Some(0), "1.0 vs 1.0: the first");
        assert_eq!(select_queue(10, [Some((0, 11)), Some((5, 5))].into_iter()), Some(1));
        // Huge values do not overflow.
        assert_eq!(select_queue(u64::MAX, [Some((0, u64::MAX)), Some((1, 1))].into_iter()), Some(1));
    }

    #[test]
    fn preemption_needs_a_full_quantum_and_waiting_work() {
        assert!(!preempt_due(104, 100, 5, true));
        assert!(preempt_due(105, 100, 5, true));
        assert!(!preempt_due(1_000, 100, 5, false));
    }

    #[test]
    fn dispatchers_own_contiguous_blocks_of_workers() {
        assert_eq!(dispatcher_workers(0, 1, 14), 0..14);
        assert_eq!((dispatcher_workers(0, 2, 22), dispatcher_workers(1, 2, 22)), (0..11, 11..22));
        assert_eq!(
            (0..3).map(|d| dispatcher_workers(d, 3, 7)).collect::<Vec<_>>(),
            vec![0..3, 3..5, 5..7],
            "the remainder goes to the first"
        );
        assert_eq!((dispatcher_of(10, 2, 22), dispatcher_of(11, 2, 22)), (0, 1));
        let p = ShinjukuPolicy { queue_limit: 0, ..ShinjukuPolicy::sq_tail(5_000) };
        assert_eq!(p.validate(), Err(ShinjukuConfigError::ZeroQueueLimit));
        assert!(ShinjukuConfigError::ZeroQueueLimit.to_string().contains("queue limit"));
        assert!(admits_new(7, 8) && !admits_new(8, 8) && !admits_new(9, 8));
        let p = ShinjukuPolicy { dispatchers: 0, ..ShinjukuPolicy::sq_tail(5_000) };
        assert!(p.validate().is_err());
        assert!(ShinjukuPolicy::mq_head(vec![1, 0], 5).validate().is_err());
        assert!(ShinjukuPolicy::mq_head(vec![], 5).validate().is_err());
        assert!(ShinjukuPolicy::sq_tail(0).validate().is_err());
        assert!(ShinjukuPolicy::sq_tail(5).validate().is_ok());
    }
}
