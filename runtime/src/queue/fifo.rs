//! A lock-protected FIFO for the baseline policies' central and per-worker queues
//! (`policy::system`): unbounded, with a lock-free length for the timer core's "is work waiting?"
//! check. Synergy's own queues stay the lock-free rings; the baselines' central queues are a
//! serialisation point by design (Shinjuku's dispatcher is one core), and a spin-free
//! `std::sync::Mutex` held for a push or pop models that.

use crate::local::OsLockHeld;
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The deque, locked; the marker outlives the guard (fields drop in order), so the lock is
/// counted as held for as long as it is.
struct FifoGuard<'a, T> {
    items: MutexGuard<'a, VecDeque<T>>,
    _held: OsLockHeld,
}

impl<T> Deref for FifoGuard<'_, T> {
    type Target = VecDeque<T>;
    fn deref(&self) -> &VecDeque<T> {
        &self.items
    }
}

impl<T> DerefMut for FifoGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut VecDeque<T> {
        &mut self.items
    }
}

/// A FIFO behind a mutex: the baselines' central and per-worker queues.
pub struct LockedFifo<T> {
    items: Mutex<VecDeque<T>>,
    len: AtomicUsize,
}

impl<T> LockedFifo<T> {
    /// An empty FIFO with room for `capacity` values before it grows.
    pub fn with_capacity(capacity: usize) -> LockedFifo<T> {
        LockedFifo { items: Mutex::new(VecDeque::with_capacity(capacity)), len: AtomicUsize::new(0) }
    }

    fn lock(&self) -> FifoGuard<'_, T> {
        let held = OsLockHeld::new();
        // A panic while holding this lock cannot leave the deque inconsistent (push/pop only).
        FifoGuard { items: self.items.lock().unwrap_or_else(|e| e.into_inner()), _held: held }
    }

    /// Appends `value`.
    pub fn push_back(&self, value: T) {
        let mut q = self.lock();
        q.push_back(value);
        self.len.store(q.len(), Ordering::Release);
    }

    /// Takes the oldest value.
    pub fn pop_front(&self) -> Option<T> {
        if self.is_empty() {
            return None;
        }
        let mut q = self.lock();
        let v = q.pop_front();
        self.len.store(q.len(), Ordering::Release);
        v
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn fifo_order_and_length_across_threads() {
        let q = LockedFifo::with_capacity(4);
        assert_eq!(q.pop_front(), None);
        (0..10).for_each(|i| q.push_back(i));
        assert_eq!(q.len(), 10);
        assert_eq!((0..10).map(|_| q.pop_front().unwrap()).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
        let q = Arc::new(LockedFifo::with_capacity(0));
        let hs: Vec<_> = (0..4)
            .map(|t| {
                let q = q.clone();
                std::thread::spawn(move || (0..5000).for_each(|i| q.push_back(t * 5000 + i)))
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        let mut all: Vec<i32> = std::iter::from_fn(|| q.pop_front()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..20_000).collect::<Vec<_>>());
        assert!(q.is_empty());
    }
}
