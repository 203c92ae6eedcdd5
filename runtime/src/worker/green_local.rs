//! Green-thread-local storage: per-request state for handler code that would otherwise reach for
//! a `thread_local!`, which is wrong once a request can migrate between OS threads.
//!
//! A [`GreenLocal`] names one value per running request. The value lives in the green thread's
//! `locals` (boxed, so its address is stable), is created by the key's initialiser on first use,
//! moves with the request when it is preempted and resumed elsewhere, and is dropped when the
//! request's handler returns (or panics). Off worker threads (tests, a client thread) the same
//! key names one value per OS thread, dropped at thread exit.

use super::current;
use crate::green::locals::{drain, GreenLocals};
use crate::green::GreenThread;
use crate::local;
use crate::preempt::NoPreempt;
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Keys handed out so far; each `GreenLocal` takes the next index on first use.
static NEXT_KEY: AtomicUsize = AtomicUsize::new(0);
const UNASSIGNED: usize = usize::MAX;

thread_local! {
    /// The values of code that runs on an OS thread that is not a worker.
    static OFF_WORKER: UnsafeCell<GreenLocals> = UnsafeCell::new(GreenLocals::default());
}

/// A key for one value of type `T` per running request, declared as a `static`:
///
/// ```
/// use std::cell::Cell;
/// use synergy::GreenLocal;
///
/// static ROWS_SCANNED: GreenLocal<Cell<u64>> = GreenLocal::new(|| Cell::new(0));
///
/// fn scan_step() {
///     ROWS_SCANNED.with(|n| n.set(n.get() + 1));
/// }
/// # scan_step();
/// # assert_eq!(ROWS_SCANNED.with(|n| n.get()), 1);
/// ```
///
/// `T: Send` because the value moves between OS threads with its request. Each request starts
/// with a fresh value (from the initialiser) and drops it when the handler returns, so nothing
/// leaks from one request into the next the way a worker's thread-local would.
pub struct GreenLocal<T: Send + 'static> {
    init: fn() -> T,
    key: AtomicUsize,
    _values: PhantomData<fn() -> T>,
}

impl<T: Send + 'static> GreenLocal<T> {
    /// A green-thread local whose value on each green thread starts as `init()`.
    pub const fn new(init: fn() -> T) -> GreenLocal<T> {
        GreenLocal { init, key: AtomicUsize::new(UNASSIGNED), _values: PhantomData }
    }

    /// Calls `f` with this request's value, creating it first if the request has none. The
    /// reference is valid for the whole call even if the request migrates meanwhile (the value
    /// migrates with it). The initialiser runs with preemption enabled and may itself use other
    /// keys (or this one: then the value it made first is kept).
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        let key = self.key();
        if !local::on_worker() {
            return OFF_WORKER.with(|store| {
                let store = store.get();
                // SAFETY: this OS thread's storage; each `&`/`&mut` below lasts one call, never
                // across the initialiser or `f` (which may reach the storage again).
                let value = match unsafe { (*store).get(key) } {
                    Some(v) => v,
                    None => {
                        let made = (self.init)();
                        // SAFETY: as above.
                        unsafe { (*store).insert(key, made) }
                    }
                };
                f(Self::typed(value))
            });
        }
        let thread = running_thread();
        // SAFETY: `thread` is the green thread running this code; it lives at least until this
        // request ends, and only this request's code touches its `locals`, each access one call.
        let value = match unsafe { (*thread).locals.get(key) } {
            Some(v) => v,
            None => {
                // May migrate (preemption stays enabled): `thread` is still this code's green
                // thread afterwards, wherever it then runs.
                let made = (self.init)();
                let _np = NoPreempt::new();
                // SAFETY: as above.
                unsafe { (*thread).locals.insert(key, made) }
            }
        };
        f(Self::typed(value))
    }

    fn typed<'a>(value: NonNull<dyn std::any::Any + Send>) -> &'a T {
        // SAFETY: the slot of this key only ever holds a `T` (`insert` with this key's `T`);
        // the box lives until the request ends, after every `with` of it returned.
        unsafe { value.as_ref() }.downcast_ref::<T>().expect("a GreenLocal slot holds its key's type")
    }

    fn key(&self) -> usize {
        let k = self.key.load(Ordering::Acquire);
        if k != UNASSIGNED {
            return k;
        }
        let fresh = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        match self.key.compare_exchange(UNASSIGNED, fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => fresh,
            // Another thread assigned it first; `fresh` stays unused (an empty slot index).
            Err(theirs) => theirs,
        }
    }
}

/// The green thread running the caller (a stable identity: it stays the same object when the
/// request migrates).
fn running_thread() -> *mut GreenThread {
    let _np = NoPreempt::new();
    // SAFETY: worker thread; short borrow of the worker's state.
    unsafe { current().state() }.current
}

/// Drops the running request's green-thread-local values (called by `serve` when the handler
/// returned or panicked).
pub(super) fn drop_current_values() {
    let thread = running_thread();
    // SAFETY: `thread` is the running green thread; destructors that reach its `locals` through a
    // `GreenLocal` do so one call at a time, which `drain` allows.
    unsafe { drain(&raw mut (*thread).locals) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    static COUNT: GreenLocal<Cell<u32>> = GreenLocal::new(|| Cell::new(10));
    static NESTED: GreenLocal<u32> = GreenLocal::new(|| COUNT.with(|c| c.get() + 1));

    #[test]
    fn off_worker_each_os_thread_has_its_own_value() {
        COUNT.with(|c| c.set(c.get() + 1));
        assert_eq!(COUNT.with(|c| c.get()), 11);
        let other = std::thread::spawn(|| COUNT.with(|c| c.get())).join().unwrap();
        assert_eq!(other, 10, "a fresh value on another OS thread");
        assert_eq!(COUNT.with(|c| c.get()), 11);
    }

    #[test]
    fn an_initialiser_may_use_another_key() {
        std::thread::spawn(|| {
            assert_eq!(NESTED.with(|v| *v), 11);
            COUNT.with(|c| c.set(40));
            assert_eq!(NESTED.with(|v| *v), 11, "created once");
        })
        .join()
        .unwrap();
    }
}
