//! A bounded multi-producer, single-consumer channel, and [`Notify`]: waiting for a value or for
//! room, or for a notification, without holding the worker.
//!
//! Both keep their waiters in the same lock as the state they wait on: a waiter registers its
//! [`WaitSlot`] *before* it lets the lock go, and whoever changes the state takes the waiters to
//! wake under that lock, so no change can fall between a waiter's check and its registration (no
//! lost wake-up). A [`WaitSlot`] is notified once; each wait uses a fresh one, and a waiter woken
//! for room or a value that someone else took first checks again and waits again.
//!
//! The lock is a `std::sync::Mutex` held only inside `preempt::without_preemption` (a few
//! instructions, never across a wait), so a request holding it is never parked or moved.

use super::WaitSlot;
#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};
use std::collections::VecDeque;
use std::sync::Arc;
#[cfg(not(loom))]
use std::sync::{Mutex, MutexGuard};

/// Runs `f` on the locked state, unpreempted (see the module docs).
fn locked<S, R>(m: &Mutex<S>, f: impl FnOnce(&mut S) -> R) -> R {
    crate::preempt::without_preemption(|| {
        let mut g: MutexGuard<'_, S> = m.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    })
}

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    senders: usize,
    receiver_alive: bool,
    /// The receiver, waiting for a value (or for the last sender to go).
    receiver_waiting: Option<Arc<WaitSlot>>,
    /// Senders waiting for room (or for the receiver to go), oldest first.
    senders_waiting: VecDeque<Arc<WaitSlot>>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

/// The sending half; clone it for more senders.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving half.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// The receiver is gone: the value comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the receiver was dropped")]
pub struct SendError<T>(pub T);

/// Why `try_send` did not send: the channel was full, or the receiver is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError<T> {
    #[error("the channel is full")]
    /// The channel is full; the value is handed back.
    Full(T),
    #[error("the receiver was dropped")]
    /// Every receiver is gone; the value is handed back.
    Closed(T),
}

/// Every sender is gone and the channel is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("every sender was dropped and the channel is empty")]
pub struct RecvError;

/// Why `try_recv` found no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    #[error("the channel is empty")]
    /// No value now.
    Empty,
    #[error("every sender was dropped and the channel is empty")]
    /// Every sender is gone and no value is left.
    Closed,
}

/// A channel holding at most `capacity` values (at least 1).
pub fn channel<T: Send>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity.clamp(1, 1024)),
            capacity: capacity.max(1),
            senders: 1,
            receiver_alive: true,
            receiver_waiting: None,
            senders_waiting: VecDeque::new(),
        }),
    });
    (Sender { shared: shared.clone() }, Receiver { shared })
}

impl<T> Sender<T> {
    /// Sends `value`, waiting for room while the channel is full (on a worker the request's
    /// green thread blocks and resumes on the same worker); gives it back if the receiver is gone.
    pub fn send(&self, mut value: T) -> Result<(), SendError<T>> {
        loop {
            match self.try_send(value) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(v)) => return Err(SendError(v)),
                Err(TrySendError::Full(v)) => value = v,
            }
            let slot = Arc::new(WaitSlot::new());
            // Registered under the lock, and only if still full: a receive after this wakes it.
            let registered = locked(&self.shared.state, |s| {
                let full = s.receiver_alive && s.items.len() >= s.capacity;
                if full {
                    s.senders_waiting.push_back(slot.clone());
                }
                full
            });
            if registered {
                slot.wait();
            }
        }
    }

    /// Sends `value` if there is room now.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let woken = locked(&self.shared.state, |s| {
            if !s.receiver_alive {
                return Err(TrySendError::Closed(value));
            }
            if s.items.len() >= s.capacity {
                return Err(TrySendError::Full(value));
            }
            s.items.push_back(value);
            Ok(s.receiver_waiting.take())
        })?;
        if let Some(w) = woken {
            w.notify();
        }
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        locked(&self.shared.state, |s| s.senders += 1);
        Sender { shared: self.shared.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let woken = locked(&self.shared.state, |s| {
            s.senders -= 1;
            if s.senders == 0 {
                s.receiver_waiting.take()
            } else {
                None
            }
        });
        if let Some(w) = woken {
            w.notify();
        }
    }
}

impl<T> Receiver<T> {
    /// The next value, waiting while the channel is empty; `RecvError` once every sender is gone
    /// and the values they sent were received.
    pub fn recv(&mut self) -> Result<T, RecvError> {
        loop {
            match self.try_recv() {
                Ok(v) => return Ok(v),
                Err(TryRecvError::Closed) => return Err(RecvError),
                Err(TryRecvError::Empty) => {}
            }
            let slot = Arc::new(WaitSlot::new());
            let registered = locked(&self.shared.state, |s| {
                let empty = s.items.is_empty() && s.senders > 0;
                if empty {
                    s.receiver_waiting = Some(slot.clone());
                }
                empty
            });
            if registered {
                slot.wait();
            }
        }
    }

    /// The next value if there is one now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let (value, woken) = locked(&self.shared.state, |s| match s.items.pop_front() {
            Some(v) => Ok((v, s.senders_waiting.pop_front())),
            None if s.senders == 0 => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        })?;
        if let Some(w) = woken {
            w.notify();
        }
        Ok(value)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let (items, woken) = locked(&self.shared.state, |s| {
            s.receiver_alive = false;
            (std::mem::take(&mut s.items), std::mem::take(&mut s.senders_waiting))
        });
        // The values die outside the lock (their destructors may do anything).
        drop(items);
        for w in woken {
            w.notify();
        }
    }
}

/// A notification one waiter takes: `notify_one` wakes the oldest waiter, or, if none waits,
/// leaves a permit that the next `wait` takes at once (so a notification sent just before the
/// wait is not lost); `notify_all` wakes every waiter registered now.
pub struct Notify {
    state: Mutex<NotifyState>,
}

impl Default for Notify {
    fn default() -> Notify {
        Notify { state: Mutex::new(NotifyState::default()) }
    }
}

#[derive(Default)]
struct NotifyState {
    permit: bool,
    waiters: VecDeque<Arc<WaitSlot>>,
}

impl Notify {
    /// A `Notify` with no permit stored.
    pub fn new() -> Notify {
        Notify::default()
    }

    /// Waits for a notification (or takes the permit a `notify_one` left); on a worker the
    /// request's green thread blocks and resumes on the same worker.
    pub fn wait(&self) {
        let slot = Arc::new(WaitSlot::new());
        let must_wait = locked(&self.state, |s| {
            if std::mem::take(&mut s.permit) {
                false
            } else {
                s.waiters.push_back(slot.clone());
                true
            }
        });
        if must_wait {
            slot.wait();
        }
    }

    /// Wakes the oldest waiter, or leaves one permit for the next `wait`.
    pub fn notify_one(&self) {
        let woken = locked(&self.state, |s| {
            let w = s.waiters.pop_front();
            if w.is_none() {
                s.permit = true;
            }
            w
        });
        if let Some(w) = woken {
            w.notify();
        }
    }

    /// Wakes every waiter registered now (leaves no permit).
    pub fn notify_all(&self) {
        for w in locked(&self.state, |s| std::mem::take(&mut s.waiters)) {
            w.notify();
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// A notification racing a wait: in every interleaving the waiter returns (a lost wake-up
    /// would leave it yielding forever, which loom reports), and the permit is consumed.
    #[test]
    fn notify_one_racing_a_wait_always_wakes_it() {
        loom::model(|| {
            let n = Arc::new(Notify::new());
            let waker = {
                let n = n.clone();
                loom::thread::spawn(move || n.notify_one())
            };
            n.wait();
            waker.join().unwrap();
            assert!(!locked(&n.state, |s| s.permit), "the notification was taken once");
        });
    }

    /// A capacity-1 channel, a sender of two values racing the receiver: both arrive, in
    /// order, whoever waits for whom; then the sender's drop closes the channel. (Bounded to
    /// three preemptions per execution: unbounded, the lock and the yields make loom explore
    /// for over a minute.)
    #[test]
    fn two_values_through_a_full_channel_arrive_in_order() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let (tx, mut rx) = channel::<u8>(1);
            let sender = loom::thread::spawn(move || {
                tx.send(1).unwrap();
                tx.send(2).unwrap();
            });
            assert_eq!(rx.recv(), Ok(1));
            assert_eq!(rx.recv(), Ok(2));
            sender.join().unwrap();
            assert_eq!(rx.recv(), Err(RecvError));
        });
    }

    /// A sender blocked on a full channel while the receiver goes away gets its value back.
    #[test]
    fn a_blocked_sender_learns_the_receiver_is_gone() {
        loom::model(|| {
            let (tx, rx) = channel::<u8>(1);
            tx.send(1).unwrap();
            let sender = loom::thread::spawn(move || tx.send(2));
            drop(rx);
            assert_eq!(sender.join().unwrap(), Err(SendError(2)));
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Off the workers, waiting is the OS thread's: a capacity-1 channel between two threads
    /// carries 100,000 values in order, the producer blocking on a full channel each time.
    #[test]
    fn values_cross_threads_in_order_through_a_full_channel() {
        let (tx, mut rx) = channel::<u64>(1);
        let producer = std::thread::spawn(move || {
            for i in 0..100_000 {
                tx.send(i).unwrap();
            }
        });
        for i in 0..100_000 {
            assert_eq!(rx.recv(), Ok(i));
        }
        producer.join().unwrap();
        assert_eq!(rx.recv(), Err(RecvError), "every sender gone, channel empty");
    }

    #[test]
    fn closing_either_side_is_seen_by_the_other() {
        let (tx, rx) = channel::<String>(2);
        drop(rx);
        assert_eq!(tx.send("x".into()), Err(SendError("x".into())));
        let (tx, mut rx) = channel::<u8>(1);
        tx.try_send(1).unwrap();
        assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
        let tx2 = tx.clone();
        drop(tx);
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "a sender is left");
        drop(tx2);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
        // A sender blocked on a full channel returns its value when the receiver goes.
        let (tx, rx) = channel::<u8>(1);
        tx.send(1).unwrap();
        let blocked = std::thread::spawn(move || tx.send(2));
        while Arc::strong_count(&rx.shared) < 2 || locked(&rx.shared.state, |s| s.senders_waiting.is_empty()) {
            std::thread::yield_now();
        }
        drop(rx);
        assert_eq!(blocked.join().unwrap(), Err(SendError(2)));
    }

    #[test]
    fn a_notification_before_the_wait_is_a_permit_and_notify_all_wakes_every_waiter() {
        let n = Arc::new(Notify::new());
        n.notify_one();
        n.wait(); // takes the permit at once
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let n = n.clone();
                std::thread::spawn(move || n.wait())
            })
            .collect();
        while locked(&n.state, |s| s.waiters.len()) < 4 {
            std::thread::yield_now();
        }
        n.notify_all();
        for w in waiters {
            w.join().unwrap();
        }
        assert!(!locked(&n.state, |s| s.permit), "notify_all leaves no permit");
    }
}
