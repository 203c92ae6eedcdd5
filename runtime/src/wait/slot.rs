//! One waiter, one wake-up: the protocol every waiting primitive is built on.
//!
//! A [`WaitSlot`]'s state is one word: `EMPTY`, `NOTIFIED`, `OS_WAITING` (an OS thread sleeps on
//! the slot's futex word), or the pointer of the green thread blocked on it. The waiter and the
//! waker each make one atomic step, so exactly one of them makes the blocked thread runnable:
//! * the waiter (after its switch away, in `after_switch` on the fresh thread) publishes its
//!   thread: `EMPTY → thread`. If that fails, the slot was notified first, and the waiter's own
//!   worker makes the thread runnable at once;
//! * the waker swaps in `NOTIFIED`; if it took a thread out, it makes that thread runnable on the
//!   worker it blocked on (`worker::switch::wake_here`), and wakes an OS thread if one waits.
//!
//! Either way the thread resumes on its own worker, so waiting never moves a request to another OS
//! thread: safe code may wait (issue 41's safety model). The green thread's stack holds an `Arc`
//! of the slot while it is blocked, so the slot outlives the publication. Under `--cfg loom` the
//! state word and the OS waiter's word are loom's (an OS waiter yields to loom instead of
//! sleeping on the futex): `loom_tests` model-checks the two steps (`SlotState`), and the
//! channel's and `Notify`'s tests run whole waits and wake-ups on it.

#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, AtomicUsize};
use std::sync::atomic::Ordering;
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU32, AtomicUsize};

const EMPTY: usize = 0;
const NOTIFIED: usize = 1;
const OS_WAITING: usize = 2;

/// Whom a notification wakes: nobody, the published green thread, or an OS thread.
pub(crate) enum Woken {
    Nobody,
    Green(usize),
    Os,
}

/// The slot's state word and its two steps (what loom checks).
struct SlotState {
    state: AtomicUsize,
}

impl SlotState {
    fn new() -> SlotState {
        SlotState { state: AtomicUsize::new(EMPTY) }
    }

    fn is_notified(&self) -> bool {
        self.state.load(Ordering::Acquire) == NOTIFIED
    }

    /// The waiter's step: publish blocked thread `t`; false if the slot was notified first.
    fn publish(&self, t: usize) -> bool {
        debug_assert!(t > OS_WAITING && t.is_multiple_of(8));
        self.state.compare_exchange(EMPTY, t, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// An OS thread's step before it sleeps; false if the slot was notified first.
    fn publish_os(&self) -> bool {
        self.state.compare_exchange(EMPTY, OS_WAITING, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// The waker's step: what it must wake.
    fn notify(&self) -> Woken {
        match self.state.swap(NOTIFIED, Ordering::AcqRel) {
            EMPTY | NOTIFIED => Woken::Nobody,
            OS_WAITING => Woken::Os,
            t => Woken::Green(t),
        }
    }
}

/// A slot one waiter waits on and one waker notifies, once.
pub struct WaitSlot {
    st: SlotState,
    /// The futex word an OS-thread waiter sleeps on: 0 until notified.
    os: AtomicU32,
    /// Where the published thread resumes: written by the waiter before it publishes, read by
    /// the waker after it took the thread out (the state's Release/Acquire orders both).
    home: std::cell::UnsafeCell<Option<(std::sync::Arc<crate::worker::Shared>, usize)>>,
}

// SAFETY: `home` is written only by the waiter before it publishes its thread and read only by
// the one waker that took that publication out (module docs); everything else is atomic.
unsafe impl Sync for WaitSlot {}
// SAFETY: as above; the `Shared` it may hold is Send + Sync.
unsafe impl Send for WaitSlot {}

impl Default for WaitSlot {
    fn default() -> WaitSlot {
        WaitSlot::new()
    }
}

impl WaitSlot {
    /// An empty slot.
    pub fn new() -> WaitSlot {
        WaitSlot { st: SlotState::new(), os: AtomicU32::new(0), home: std::cell::UnsafeCell::new(None) }
    }

    /// Whether the slot was notified.
    pub fn is_notified(&self) -> bool {
        self.st.is_notified()
    }
}

mod mechanism {
    use super::*;
    use crate::green::thread::ThreadPtr;
    use crate::worker::Shared;
    use std::sync::Arc;

    impl crate::worker::BlockedOn for WaitSlot {
        /// `after_switch`'s step for a thread that blocked on this slot (module docs).
        unsafe fn publish(&self, t: ThreadPtr, shared: Arc<Shared>, worker: usize) -> bool {
            // SAFETY: only the waiter writes `home`, before publishing (module docs).
            unsafe { *self.home.get() = Some((shared, worker)) };
            self.st.publish(t.0 as usize)
        }
    }

    impl WaitSlot {
        /// Notifies the slot: its waiter returns (or its next wait returns at once).
        pub fn notify(&self) {
            match self.st.notify() {
                Woken::Nobody => {}
                Woken::Os => {
                    self.os.store(1, Ordering::Release);
                    // SAFETY: FUTEX_WAKE on a live, aligned u32 of this process (the notifier
                    // holds a reference to the slot).
                    #[cfg(not(loom))]
                    unsafe {
                        libc::syscall(
                            libc::SYS_futex,
                            self.os.as_ptr(),
                            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                            1,
                        );
                    }
                }
                Woken::Green(t) => {
                    // SAFETY: this waker took the publication out, so it alone reads `home`,
                    // which the waiter wrote before publishing; the thread cannot run (and
                    // block again, rewriting it) before `wake_here` below.
                    let (shared, worker) = unsafe { (*self.home.get()).take() }.expect("a published thread has a home");
                    crate::worker::wake_here(&shared, worker, ThreadPtr(t as *mut _));
                }
            }
        }

        /// Waits until notified: the green thread blocks (its worker runs other requests
        /// meanwhile) and resumes on the same worker; off a worker, with preemption disabled,
        /// while panicking, under a dispatched policy (Shinjuku: its dispatcher decides what
        /// each worker runs), or with no green thread to spare, the OS thread sleeps instead.
        pub fn wait(&self) {
            if self.is_notified() {
                return;
            }
            if crate::worker::block_on(self) {
                return;
            }
            // The OS thread sleeps on the futex word.
            if !self.st.publish_os() {
                return; // notified meanwhile
            }
            while self.os.load(Ordering::Acquire) == 0 {
                #[cfg(not(loom))]
                crate::park::wait(&self.os, 0);
                #[cfg(loom)]
                loom::thread::yield_now();
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// The waiter publishes its thread (or finds the slot notified and wakes it itself) while
    /// the waker notifies: in every interleaving the thread is made runnable exactly once.
    #[test]
    fn a_blocked_thread_is_woken_exactly_once() {
        loom::model(|| {
            let slot = Arc::new(SlotState::new());
            let woken_by_waker = {
                let slot = slot.clone();
                loom::thread::spawn(move || matches!(slot.notify(), Woken::Green(8)))
            };
            let self_woken = !slot.publish(8);
            let by_waker = woken_by_waker.join().unwrap();
            assert!(self_woken ^ by_waker, "woken once: self {self_woken}, waker {by_waker}");
            assert!(slot.is_notified());
        });
    }

    /// A second notification (or one after the wake-up) wakes nobody twice.
    #[test]
    fn notifying_twice_wakes_once() {
        loom::model(|| {
            let slot = Arc::new(SlotState::new());
            let a = {
                let slot = slot.clone();
                loom::thread::spawn(move || matches!(slot.notify(), Woken::Green(_)))
            };
            let b = {
                let slot = slot.clone();
                loom::thread::spawn(move || matches!(slot.notify(), Woken::Green(_)))
            };
            let self_woken = !slot.publish(16);
            let wakes = [a.join().unwrap(), b.join().unwrap(), self_woken].iter().filter(|&&w| w).count();
            assert_eq!(wakes, 1);
        });
    }
}
