//! Lock-free queues: the per-worker RX rings and the global wait queue share one bounded MPMC ring.

mod ring;

pub use ring::Ring;
