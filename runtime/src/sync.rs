//! A green-thread-aware mutex (the thesis's lock shim, §5.2.2, for Rust code).
//!
//! While a green thread holds the lock it cannot be preempted (an interrupt is deferred to the
//! unlock). A green thread that fails to get the lock and holds no other lock yields (inside a
//! preemptible region; outside one it spins, see `yield_now`): it parks on
//! the wait queue so the worker can serve other requests while the holder — which is running on
//! some other worker, since holders are never parked — finishes. One that already holds a lock
//! spins instead, as yielding while holding a lock could stall its waiters.

use crate::local;
use crate::preempt;
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A mutual-exclusion lock for green threads: a contended lock yields the worker to other requests instead of blocking its OS thread, and preemption is deferred while it is held.
pub struct Mutex<T: ?Sized> {
    locked: AtomicBool,
    contended: AtomicU64,
    data: UnsafeCell<T>,
}

// SAFETY: the lock gives exclusive access to `data`; T: Send suffices as for std's Mutex.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    /// A lock holding `value`.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex { locked: AtomicBool::new(false), contended: AtomicU64::new(0), data: UnsafeCell::new(value) }
    }

    /// The value, taking the lock apart.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks, yielding to other green threads while another holds it.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        preempt::disable();
        loop {
            if self.try_acquire() {
                return MutexGuard { mutex: self, _not_send: std::marker::PhantomData };
            }
            self.contended.fetch_add(1, Ordering::Relaxed);
            if may_yield_on_contention() {
                preempt::enable();
                crate::worker::yield_now();
                preempt::disable();
            } else if !local::on_worker() {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Locks if no one holds it.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        preempt::disable();
        if self.try_acquire() {
            Some(MutexGuard { mutex: self, _not_send: std::marker::PhantomData })
        } else {
            preempt::enable();
            None
        }
    }

    /// How many lock attempts found the lock taken.
    pub fn contention_count(&self) -> u64 {
        self.contended.load(Ordering::Relaxed)
    }

    fn try_acquire(&self) -> bool {
        !self.locked.load(Ordering::Relaxed)
            && self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }
}

/// Whether a green thread that just failed to take a lock may yield instead of waiting: it runs
/// on a worker, holds no other lock (its only level of disabled preemption is the one the lock
/// attempt itself took), and is not unwinding a panic (a panicking green thread never parks: it
/// would migrate mid-unwind, and std's panic count lives in the OS thread's TLS; issue 39,
/// item 2). Shared by this mutex and the C shim (`interpose::mutex`).
pub fn may_yield_on_contention() -> bool {
    local::on_worker() && local::disable_depth() == 1 && !std::thread::panicking()
}

/// Holds the lock, and one level of this OS thread's disabled-preemption depth (taken by `lock`,
/// given back on drop). Like std's guard it is `!Send`: dropped on another thread it would
/// re-enable preemption on the wrong worker (a depth underflow there, preemption stuck off
/// here). It is `Sync` only for `T: Sync`, since `&MutexGuard<T>` hands out `&T` (issue 39,
/// item 3: it was `Send` and `Sync` for any `T: Send`).
///
/// ```compile_fail
/// fn assert_send<T: Send>(_: T) {}
/// let m = synergy::sync::Mutex::new(0u32);
/// assert_send(m.lock());
/// ```
///
/// ```compile_fail
/// fn assert_sync<T: Sync>(_: &T) {}
/// let m = synergy::sync::Mutex::new(std::cell::Cell::new(0u32));
/// assert_sync(&m.lock());
/// ```
///
/// ```
/// fn assert_sync<T: Sync>(_: &T) {}
/// let m = synergy::sync::Mutex::new(0u32);
/// assert_sync(&m.lock());
/// ```
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    /// `!Send` and `!Sync`; `Sync` is given back below for `T: Sync`.
    _not_send: std::marker::PhantomData<*const ()>,
}

// SAFETY: `&MutexGuard<T>` gives `&T` and nothing else; with `T: Sync` that may be shared.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves exclusive ownership of the lock.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.locked.store(false, Ordering::Release);
        // May take a preemption that was deferred while the lock was held.
        preempt::enable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn excludes_os_threads() {
        let m = Arc::new(Mutex::new(0u64));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        *m.lock() += 1;
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(*m.lock(), 80_000);
        assert!(m.try_lock().is_some());
        let _g = m.lock();
        assert!(m.try_lock().is_none());
    }
}
