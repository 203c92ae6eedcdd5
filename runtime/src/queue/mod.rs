//! Queues: the per-worker RX rings and the global wait queue share one bounded lock-free MPMC
//! ring; the baseline policies' central queues are a locked FIFO.

mod fifo;
mod ring;

pub use fifo::LockedFifo;
pub use ring::Ring;
