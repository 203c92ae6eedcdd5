//! Scheduling *policy*: plain deterministic Rust, no threads, no clocks, no atomics.
//!
//! The runtime's mechanisms (rings, green threads, the timer core thread, preemption delivery)
//! call into these functions, so the decisions the thesis specifies (Algorithms 5.2 and 5.3,
//! §5.1.1.2 quantum sizing, §5.1.3.1 congestion detection) are tested here on plain data.

#![deny(missing_docs)]

pub mod api;
pub mod builtin;
pub mod congestion;
pub mod coresync;
pub mod idle;
pub mod model;
pub mod overload;
pub mod quantum;
pub mod selection;
pub mod shinjuku;
pub mod steering;
pub mod system;
pub mod timer;
pub mod tokens;
