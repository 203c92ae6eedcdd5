//! synergy: microsecond-scale, application-aware preemptive scheduling of server requests.
//!
//! The application hands the runtime a request handler. Each worker (a pinned OS thread) runs
//! requests on reusable green threads; the handler marks long requests with [`feedback_start`] /
//! [`feedback_finished`] and answers with [`send`]. A dedicated timer core preempts a long request
//! only when its quantum (QUANTUM_FACTOR × EMA of short service times) expired *and* work is
//! waiting on its worker; preempted green threads go to one global wait queue that any worker
//! resumes from. See docs/architecture.md.
//!
//! Rules for handler code, because a long request may migrate between OS threads at any
//! instruction while it is preemptible: do not use thread-local storage or libc functions that do
//! (errno, stdio locks, `println!`) without [`preempt::without_preemption`]; use
//! [`sync::Mutex`] rather than OS mutexes. Allocation is safe (see [`alloc`]).

pub mod alloc;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cpu;
pub mod green;
#[cfg(feature = "interpose")]
pub mod interpose;
mod local;
pub mod net;
pub mod plot;
pub mod policy;
pub mod preempt;
pub mod queue;
pub mod report;
pub mod request;
pub mod rng;
pub mod runtime;
pub mod sim;
pub mod stats;
pub mod sync;
mod timer_core;
pub mod transport;
mod worker;
pub mod workload;
pub mod demo;
pub mod bench;

pub use config::Config;
pub use preempt::PreemptMode;
pub use request::{Reply, Request};
pub use runtime::{Runtime, StartError};
pub use worker::{
    current_worker, feedback_finished, set_preempt_probe, feedback_start, on_worker, send, stack_remaining, yield_now, NotOnWorker,
    STATUS_HANDLER_PANICKED,
};
