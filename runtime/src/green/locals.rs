//! The storage behind green-thread-local values (`synergy::GreenLocal`): one slot per key, each
//! holding a boxed value of the key's type, owned by the request that created it.
//!
//! Values are boxed and the slots hold raw pointers, so a reference handed out to one value stays
//! valid while the slot vector grows (a nested `with` of another key) and while the green thread
//! migrates: the boxes move with the green thread because they are reached only through it.

use std::any::Any;
use std::ptr::NonNull;

/// Type-erased values by key index. Not `Sync`: only the green thread that owns it touches it.
#[derive(Default)]
pub struct GreenLocals {
    slots: Vec<Option<NonNull<dyn Any + Send>>>,
}

// SAFETY: every value stored is `Send` (`insert`'s bound); the slots are raw pointers to boxes the
// storage owns, so moving the storage between threads moves those values, which is sound.
unsafe impl Send for GreenLocals {}

impl GreenLocals {
    /// The value of key `index`, if one was inserted and not cleared.
    pub fn get(&self, index: usize) -> Option<NonNull<dyn Any + Send>> {
        self.slots.get(index).copied().flatten()
    }

    /// Stores `value` for key `index` unless a value is already there (a key's initialiser that
    /// recursively initialised the same key wins); returns the stored value either way.
    pub fn insert<T: Send + 'static>(&mut self, index: usize, value: T) -> NonNull<dyn Any + Send> {
        if let Some(existing) = self.get(index) {
            return existing;
        }
        if self.slots.len() <= index {
            self.slots.resize(index + 1, None);
        }
        let boxed: Box<dyn Any + Send> = Box::new(value);
        let p = NonNull::from(Box::leak(boxed));
        self.slots[index] = Some(p);
        p
    }

    /// Drops every value. Not reentrant: a destructor must not reach this storage (use
    /// [`drain`] for storage that destructors can reach).
    pub fn clear(&mut self) {
        for p in self.slots.drain(..).flatten() {
            // SAFETY: `p` came from `Box::leak` in `insert` and its slot is gone, so this is its
            // only owner.
            drop(unsafe { Box::from_raw(p.as_ptr()) });
        }
    }

    /// How many keys hold a value.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Whether no green-thread local was ever set on this thread.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops every value of the storage at `store`, including values that destructors create while
/// this runs (a destructor that reads another key re-initialises it in `store`): takes the whole
/// storage out, drops it, and repeats until nothing was re-created. Returns the number of rounds.
///
/// # Safety
/// `store` must be valid for writes for the whole call, and no reference to it may be live across
/// the call except those destructors create for themselves (each access from a destructor must
/// end before it returns).
pub unsafe fn drain(store: *mut GreenLocals) -> usize {
    let mut rounds = 0;
    loop {
        // SAFETY: the caller's contract; the `&mut` lasts for the `take` only.
        let batch = std::mem::take(unsafe { &mut *store });
        if batch.is_empty() {
            return rounds;
        }
        rounds += 1;
        drop(batch);
    }
}

impl Drop for GreenLocals {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    struct CountsDrops(Rc<Cell<u32>>);
    // SAFETY (test only): the Rc never leaves this single-threaded test.
    unsafe impl Send for CountsDrops {}
    impl Drop for CountsDrops {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    #[test]
    fn insert_keeps_the_first_value_and_addresses_are_stable_while_the_vector_grows() {
        let mut s = GreenLocals::default();
        let a = s.insert(0, 7u64);
        let again = s.insert(0, 9u64);
        assert_eq!(a, again);
        // SAFETY: `a` points to a live u64 owned by `s`.
        let a_ref = unsafe { a.as_ref() }.downcast_ref::<u64>().copied();
        assert_eq!(a_ref, Some(7));
        for i in 1..100 {
            s.insert(i, i as u32);
        }
        // SAFETY: as above; growing the slot vector did not move the box.
        assert_eq!(unsafe { a.as_ref() }.downcast_ref::<u64>(), Some(&7));
        assert_eq!(s.len(), 100);
        assert!(s.get(100).is_none());
    }

    #[test]
    fn clear_drops_each_value_once_including_values_made_by_destructors() {
        let drops = Rc::new(Cell::new(0));
        let mut s = GreenLocals::default();
        s.insert(3, CountsDrops(drops.clone()));
        s.insert(1, CountsDrops(drops.clone()));
        s.clear();
        assert_eq!(drops.get(), 2);
        assert!(s.is_empty());
        s.insert(0, CountsDrops(drops.clone()));
        drop(s);
        assert_eq!(drops.get(), 3);
    }

    #[test]
    fn drain_drops_values_that_destructors_create() {
        struct Reinserts {
            store: *mut GreenLocals,
            drops: Rc<Cell<u32>>,
        }
        // SAFETY (test only): single-threaded.
        unsafe impl Send for Reinserts {}
        impl Drop for Reinserts {
            fn drop(&mut self) {
                self.drops.set(self.drops.get() + 1);
                // SAFETY: `drain` holds no reference to the store while a destructor runs.
                unsafe { (*self.store).insert(5, CountsDrops(self.drops.clone())) };
            }
        }
        let drops = Rc::new(Cell::new(0));
        let store: *mut GreenLocals = Box::into_raw(Box::default());
        // SAFETY: `store` is a live box; no other reference exists.
        unsafe { (*store).insert(2, Reinserts { store, drops: drops.clone() }) };
        // SAFETY: as above.
        let rounds = unsafe { drain(store) };
        assert_eq!(rounds, 2);
        assert_eq!(drops.get(), 2, "the destructor ran and so did the value it created");
        // SAFETY: from Box::into_raw above; drained, so dropping it drops nothing more.
        let s = unsafe { Box::from_raw(store) };
        assert!(s.is_empty());
    }
}
