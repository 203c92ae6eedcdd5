//! Waiting inside a handler without holding the worker: a [`oneshot`] channel, a bounded
//! [`channel`], [`Notify`], [`sleep`], and [`spawn_blocking`] for work that blocks. A request that waits gives its worker to other
//! requests and resumes on the same worker (so safe code may wait: it never changes OS thread);
//! off the workers, or where it cannot block (preemption disabled, panicking, a dispatched policy,
//! no green thread to spare), the OS thread sleeps instead. The protocol under all of them is
//! [`WaitSlot`]'s.

mod blocking;
pub mod channel;
pub mod oneshot;
mod sleep;
mod slot;

pub use blocking::{spawn_blocking, BLOCKING_THREADS};
pub use channel::Notify;
pub use sleep::sleep;
pub use slot::WaitSlot;
