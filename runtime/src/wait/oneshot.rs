//! A one-value channel: one sender, one receiver; the receiver waits without holding its worker.

use super::WaitSlot;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

const OPEN: u8 = 0;
const SENT: u8 = 1;
const SENDER_GONE: u8 = 2;
const RECEIVER_GONE: u8 = 3;

struct Inner<T> {
    state: AtomicU8,
    /// Written by the sender before it moves the state to SENT; read by the receiver after it
    /// saw SENT (Release/Acquire), or by the sender alone once the receiver is gone.
    value: UnsafeCell<Option<T>>,
    slot: WaitSlot,
}

// SAFETY: the value is handed from one thread to another through `state` (see `value`), so
// T: Send suffices; no `&T` is ever shared.
unsafe impl<T: Send> Sync for Inner<T> {}

/// The sending half.
pub struct Sender<T> {
    inner: Arc<Inner<T>>,
}

/// The receiving half.
pub struct Receiver<T> {
    inner: Arc<Inner<T>>,
}

/// The sender went away without sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the sender was dropped without sending")]
pub struct RecvError;

/// Why `try_recv` found no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    #[error("no value yet")]
    /// No value yet.
    Empty,
    #[error("the sender was dropped without sending")]
    /// The sender is gone without sending.
    Closed,
}

/// A new channel.
pub fn channel<T: Send>() -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner { state: AtomicU8::new(OPEN), value: UnsafeCell::new(None), slot: WaitSlot::new() });
    (Sender { inner: inner.clone() }, Receiver { inner })
}

impl<T> Sender<T> {
    /// Sends `value`, waking the receiver; gives it back if the receiver is gone.
    pub fn send(self, value: T) -> Result<(), T> {
        // SAFETY: only the sender writes, and the receiver reads only after SENT.
        unsafe { *self.inner.value.get() = Some(value) };
        let prev = self.inner.state.swap(SENT, Ordering::AcqRel);
        if prev == RECEIVER_GONE {
            // SAFETY: the receiver is gone: no one else touches the value.
            let v = unsafe { (*self.inner.value.get()).take() }.expect("written above");
            std::mem::forget(self);
            return Err(v);
        }
        self.inner.slot.notify();
        std::mem::forget(self); // not a drop without sending
        Ok(())
    }

    /// Whether the receiver is gone (a send would give the value back).
    pub fn is_closed(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) == RECEIVER_GONE
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.inner.state.compare_exchange(OPEN, SENDER_GONE, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.inner.slot.notify();
        }
    }
}

impl<T> Receiver<T> {
    /// Waits for the value (see [`WaitSlot::wait`] for how: on a worker the request's green
    /// thread blocks and resumes on the same worker).
    pub fn recv(self) -> Result<T, RecvError> {
        loop {
            match self.try_take() {
                Err(TryRecvError::Empty) => self.inner.slot.wait(),
                Err(TryRecvError::Closed) => return Err(RecvError),
                Ok(v) => return Ok(v),
            }
        }
    }

    /// The value if it is there, without waiting.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.try_take()
    }

    fn try_take(&self) -> Result<T, TryRecvError> {
        match self.inner.state.load(Ordering::Acquire) {
            SENT => {
                // SAFETY: SENT was stored after the value was written (Acquire above).
                unsafe { (*self.inner.value.get()).take() }.ok_or(TryRecvError::Closed)
            }
            SENDER_GONE => Err(TryRecvError::Closed),
            _ => Err(TryRecvError::Empty),
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // A value sent meanwhile stays in the cell and is dropped with `Inner`.
        self.inner.state.compare_exchange(OPEN, RECEIVER_GONE, Ordering::AcqRel, Ordering::Acquire).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_crosses_threads_and_a_dropped_sender_closes() {
        let (tx, rx) = channel();
        let t = std::thread::spawn(move || tx.send(String::from("value")));
        assert_eq!(rx.recv(), Ok(String::from("value")));
        t.join().unwrap().unwrap();
        let (tx, rx) = channel::<u8>();
        drop(tx);
        assert_eq!(rx.recv(), Err(RecvError));
        let (tx, rx) = channel();
        drop(rx);
        assert_eq!(tx.send(5), Err(5), "the receiver is gone: the value comes back");
        let (tx, mut rx) = channel();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        tx.send(1).unwrap();
        assert_eq!(rx.try_recv(), Ok(1));
    }
}
