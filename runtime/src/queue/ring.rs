//! A bounded multi-producer multi-consumer ring (D. Vyukov's sequence-number design).
//!
//! Why one MPMC ring for everything: a worker's RX queue has one producer (its transport poll, or
//! a stealer refilling it) but many consumers (the owner and stealing peers); the wait queue is
//! fully MPMC. The monotonically increasing enqueue/dequeue positions are exactly the producer and
//! consumer indexes that the timer core compares to detect a congested wait queue (thesis §5.1.3.1).
//!
//! Every operation is lock-free and never allocates, so it may run with preemption disabled and
//! from any worker.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};

/// Keeps the two hot indexes on separate cache lines.
#[repr(align(64))]
struct Padded(AtomicU64);

struct Slot<T> {
    /// Equals the position that may write this slot next (empty), or position + 1 once filled.
    seq: AtomicU64,
    value: UnsafeCell<MaybeUninit<T>>,
}

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

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Appends `value`, or gives it back if the ring is full.
    pub fn push(&self, value: T) -> Result<(), T> {
        let mut pos = self.enqueue_pos.0.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[(pos & self.mask) as usize];
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq as i64 - pos as i64;
            if diff == 0 {
                match self.enqueue_pos.0.compare_exchange_weak(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        // SAFETY: winning the CAS for `pos` while seq == pos gives this thread
                        // exclusive write access to the slot until it publishes seq = pos + 1.
                        unsafe { (*slot.value.get()).write(value) };
                        slot.seq.store(pos + 1, Ordering::Release);
                        return Ok(());
                    }
                    Err(actual) => pos = actual,
                }
            } else if diff < 0 {
                return Err(value); // the slot still holds an item from one lap ago: full
            } else {
                pos = self.enqueue_pos.0.load(Ordering::Relaxed);
            }
        }
    }

    /// Removes the oldest item.
    pub fn pop(&self) -> Option<T> {
        let mut pos = self.dequeue_pos.0.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[(pos & self.mask) as usize];
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq as i64 - (pos + 1) as i64;
            if diff == 0 {
                match self.dequeue_pos.0.compare_exchange_weak(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        // SAFETY: winning the CAS for `pos` while seq == pos + 1 means the producer
                        // published a value here and no other consumer can claim it.
                        let value = unsafe { (*slot.value.get()).assume_init_read() };
                        slot.seq.store(pos + self.mask + 1, Ordering::Release);
                        return Some(value);
                    }
                    Err(actual) => pos = actual,
                }
            } else if diff < 0 {
                return None; // empty
            } else {
                pos = self.dequeue_pos.0.load(Ordering::Relaxed);
            }
        }
    }

    /// Number of items, exact when quiescent and a close estimate under concurrency.
    pub fn len(&self) -> usize {
        let head = self.dequeue_pos.0.load(Ordering::Acquire);
        let tail = self.enqueue_pos.0.load(Ordering::Acquire);
        tail.saturating_sub(head) as usize
    }

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
