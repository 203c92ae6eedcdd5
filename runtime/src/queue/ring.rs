//! A bounded multi-producer multi-consumer ring (D. Vyukov's sequence-number design).
//!
//! Why one MPMC ring for everything: a worker's RX queue has one producer (its transport poll, or
//! a stealer refilling it) but many consumers (the owner and stealing peers); the wait queue is
//! fully MPMC. The monotonically increasing enqueue/dequeue positions are exactly the producer and
//! consumer indexes that the timer core compares to detect a congested wait queue (thesis §5.1.3.1).
//!
//! The positions are read with Acquire and advanced with AcqRel: a thread that sees a position
//! moved also sees the slot stores made before the move (free on x86, where every CAS is a full
//! barrier and every load an acquire; the weaker orderings let loom find stale reads that made
//! `push` report a full ring). Every operation never allocates, so it may run with preemption disabled and from any worker.
//! `push` fails only when the ring is full: a consumer that claimed the oldest slot (its CAS) but
//! has not yet released it (its sequence store) makes the slot look occupied one lap later, and
//! `push` then waits for that store instead of reporting "full" (the wait queue's capacity equals
//! the green-thread budget, so a false "full" there would abort the runtime). That wait is the one
//! place where an operation depends on another thread's progress: a consumer descheduled between
//! two adjacent instructions.
//!
//! Under `--cfg loom` the atomics and the cell come from loom, which model-checks the ring's
//! interleavings (`loom_tests` below; `scripts/test.sh` runs them).

use std::mem::MaybeUninit;

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, Ordering};

/// `std::cell::UnsafeCell` with loom's access API, so that the same code runs under loom.
#[cfg(not(loom))]
struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    fn new(v: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(v))
    }
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(loom)]
use loom::cell::UnsafeCell;

/// Waiting for another thread's store: a pause hint, or a yield to loom's scheduler.
#[inline]
fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Keeps the two hot indexes on separate cache lines.
#[repr(align(64))]
struct Padded(AtomicU64);

struct Slot<T> {
    /// Equals the position that may write this slot next (empty), or position + 1 once filled.
    seq: AtomicU64,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// A bounded lock-free multi-producer, multi-consumer ring (Vyukov's sequence-numbered slots).
pub struct Ring<T> {
    enqueue_pos: Padded,
    dequeue_pos: Padded,
    mask: u64,
    slots: Box<[Slot<T>]>,
}

// SAFETY: values are moved in by exactly one producer and out by exactly one consumer, the hand-off
// being ordered by the slot's sequence number (Release store / Acquire load); T: Send suffices.
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: as above; no `&T` is ever handed out, so sharing the ring only needs T: Send.
unsafe impl<T: Send> Sync for Ring<T> {}

impl<T> Ring<T> {
    /// A ring holding at least `capacity` items (rounded up to a power of two, minimum 2).
    pub fn with_capacity(capacity: usize) -> Self {
        let cap = capacity.max(2).next_power_of_two();
        let slots = (0..cap as u64)
            .map(|i| Slot { seq: AtomicU64::new(i), value: UnsafeCell::new(MaybeUninit::uninit()) })
            .collect();
        Ring {
            enqueue_pos: Padded(AtomicU64::new(0)),
            dequeue_pos: Padded(AtomicU64::new(0)),
            mask: cap as u64 - 1,
            slots,
        }
    }

    /// How many values it holds at most.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Appends `value`, or gives it back if the ring is full.
    pub fn push(&self, value: T) -> Result<(), T> {
        let mut pos = self.enqueue_pos.0.load(Ordering::Acquire);
        loop {
            let slot = &self.slots[(pos & self.mask) as usize];
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq as i64 - pos as i64;
            if diff == 0 {
                match self.enqueue_pos.0.compare_exchange_weak(pos, pos + 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        // SAFETY: winning the CAS for `pos` while seq == pos gives this thread
                        // exclusive write access to the slot until it publishes seq = pos + 1.
                        slot.value.with_mut(|p| unsafe { (*p).write(value) });
                        slot.seq.store(pos + 1, Ordering::Release);
                        return Ok(());
                    }
                    Err(actual) => pos = actual,
                }
            } else if diff < 0 {
                // The slot still holds the item of one lap ago. Full, unless a consumer already
                // claimed that item (dequeue_pos moved past it) and is about to release the slot.
                let lap_ago = pos.wrapping_sub(self.mask + 1); // diff < 0 implies pos >= capacity
                if self.dequeue_pos.0.load(Ordering::Acquire) <= lap_ago {
                    return Err(value);
                }
                spin_hint();
                pos = self.enqueue_pos.0.load(Ordering::Acquire);
            } else {
                // Another producer took `pos`: continue from where the index is now.
                spin_hint();
                pos = self.enqueue_pos.0.load(Ordering::Acquire);
            }
        }
    }

    /// Removes the oldest item.
    pub fn pop(&self) -> Option<T> {
        let mut pos = self.dequeue_pos.0.load(Ordering::Acquire);
        loop {
            let slot = &self.slots[(pos & self.mask) as usize];
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq as i64 - (pos + 1) as i64;
            if diff == 0 {
                match self.dequeue_pos.0.compare_exchange_weak(pos, pos + 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        // SAFETY: winning the CAS for `pos` while seq == pos + 1 means the producer
                        // published a value here and no other consumer can claim it.
                        let value = slot.value.with_mut(|p| unsafe { (*p).assume_init_read() });
                        slot.seq.store(pos + self.mask + 1, Ordering::Release);
                        return Some(value);
                    }
                    Err(actual) => pos = actual,
                }
            } else if diff < 0 {
                return None; // empty
            } else {
                // Another consumer took `pos`: continue from where the index is now.
                spin_hint();
                pos = self.dequeue_pos.0.load(Ordering::Acquire);
            }
        }
    }

    /// Number of items, exact when quiescent and a close estimate under concurrency.
    pub fn len(&self) -> usize {
        let head = self.dequeue_pos.0.load(Ordering::Acquire);
        let tail = self.enqueue_pos.0.load(Ordering::Acquire);
        tail.saturating_sub(head) as usize
    }

    /// Whether it held no value when looked at.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many items were ever enqueued (the producer index).
    pub fn producer_index(&self) -> u64 {
        self.enqueue_pos.0.load(Ordering::Acquire)
    }

    /// How many items were ever dequeued (the consumer index).
    pub fn consumer_index(&self) -> u64 {
        self.dequeue_pos.0.load(Ordering::Acquire)
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    #[test]
    fn fifo_and_full_and_empty() {
        let r = Ring::with_capacity(3);
        assert_eq!(r.capacity(), 4);
        for i in 0..4 {
            r.push(i).unwrap();
        }
        assert_eq!(r.push(9), Err(9));
        assert_eq!(r.len(), 4);
        for i in 0..4 {
            assert_eq!(r.pop(), Some(i));
        }
        assert_eq!(r.pop(), None);
        assert_eq!((r.producer_index(), r.consumer_index()), (4, 4));
    }

    #[test]
    fn drop_releases_items() {
        let item = Arc::new(());
        let r = Ring::with_capacity(8);
        r.push(item.clone()).unwrap();
        r.push(item.clone()).unwrap();
        drop(r);
        assert_eq!(Arc::strong_count(&item), 1);
    }

    #[test]
    fn concurrent_producers_and_consumers_lose_nothing() {
        const PER: u64 = 50_000;
        let r = Arc::new(Ring::with_capacity(64));
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..PER {
                        let mut v = p * PER + i;
                        while let Err(back) = r.push(v) {
                            v = back;
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while got.len() < PER as usize {
                        match r.pop() {
                            Some(v) => got.push(v),
                            None => std::thread::yield_now(),
                        }
                    }
                    got
                })
            })
            .collect();
        producers.into_iter().for_each(|h| h.join().unwrap());
        let mut all = HashSet::new();
        for c in consumers {
            for v in c.join().unwrap() {
                assert!(all.insert(v), "value {v} dequeued twice");
            }
        }
        assert_eq!(all.len() as u64, 2 * PER);
    }
}

/// Model checks of the ring under every interleaving loom explores:
/// `RUSTFLAGS="--cfg loom" cargo test -p synergy --release --lib loom_tests` (scripts/test.sh).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Two tokens circulate through a ring of two slots: each of two threads takes a token and
    /// puts it back, twice. At no time are more than two tokens in the ring, so a push that fails
    /// is a false "full": a consumer claimed a slot and has not yet released it. Before `push`
    /// waited for that release, loom found the interleaving (issue 15, item 7).
    /// Bounded preemptions keep the search to seconds; 3 covers the interleavings at issue.
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(f);
    }

    #[test]
    fn a_push_fails_only_when_the_ring_is_really_full() {
        model(|| {
            let ring = Arc::new(Ring::with_capacity(2));
            ring.push(1u32).unwrap();
            ring.push(2u32).unwrap();
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let ring = ring.clone();
                    thread::spawn(move || {
                        for _ in 0..2 {
                            let token = loop {
                                match ring.pop() {
                                    Some(t) => break t,
                                    None => thread::yield_now(),
                                }
                            };
                            assert!(ring.push(token).is_ok(), "false full with at most two tokens in a ring of two");
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let mut left = [ring.pop().unwrap(), ring.pop().unwrap()];
            left.sort_unstable();
            assert_eq!(left, [1, 2], "every token is back exactly once");
            assert!(ring.pop().is_none());
        });
    }

    /// Items from two producers reach a concurrent consumer (or the drain after it) exactly once,
    /// each producer's in its order, and an observer reading the indexes the congestion detector
    /// reads (consumer, then producer) never sees more consumed than produced. No thread waits
    /// for another (the ring never fills), so loom explores every interleaving within its bound.
    #[test]
    fn items_arrive_once_in_order_and_indexes_stay_consistent() {
        model(|| {
            let ring = Arc::new(Ring::with_capacity(4));
            let producers: Vec<_> = (0..2u32)
                .map(|p| {
                    let ring = ring.clone();
                    thread::spawn(move || {
                        for i in 0..2u32 {
                            assert!(ring.push(p * 10 + i).is_ok(), "four items fit a ring of four");
                        }
                    })
                })
                .collect();
            let consumer = {
                let ring = ring.clone();
                thread::spawn(move || [ring.pop(), ring.pop()].into_iter().flatten().collect::<Vec<u32>>())
            };
            // The observer is this thread, while the others run.
            let c = ring.consumer_index();
            let p = ring.producer_index();
            assert!(c <= p, "consumer index {c} ahead of producer index {p}");
            for p in producers {
                p.join().unwrap();
            }
            let mut got = consumer.join().unwrap();
            while let Some(v) = ring.pop() {
                got.push(v);
            }
            let mut sorted = got.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 10, 11], "each item exactly once");
            for p in [0u32, 10] {
                let order: Vec<u32> = got.iter().copied().filter(|v| v / 10 * 10 == p).collect();
                assert!(order.windows(2).all(|w| w[0] < w[1]), "producer {p}'s items in order: {got:?}");
            }
        });
    }
}
