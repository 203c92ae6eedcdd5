//! synergy: microsecond-scale, application-aware preemptive scheduling of server requests.
//!
//! The application hands the runtime a request handler. Each worker (a pinned OS thread) runs
//! requests on reusable green threads; the handler marks long requests with [`feedback_start`] /
//! [`feedback_finished`] and answers with [`send`]. A dedicated timer core preempts a long request
//! only when its quantum (QUANTUM_FACTOR × EMA of short service times) expired *and* work is
//! waiting on its worker; preempted green threads go to one global wait queue that any worker
//! resumes from. See docs/architecture.md.
//!
//! An application that preempts installs the runtime's allocator, so that no green thread is
//! preempted inside `malloc` (whose thread caches live in TLS); [`Runtime::start`] refuses to
//! start a preempting runtime without it:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: synergy::PreemptSafeAlloc = synergy::PreemptSafeAlloc;
//! ```
//!
//! Rules for handler code, because a long request may migrate between OS threads at any
//! instruction while it is preemptible: do not use thread-local storage or libc functions that do
//! (errno, stdio locks, `println!`) without [`preempt::without_preemption`]; use
//! [`sync::Mutex`] rather than OS mutexes.

pub mod alloc;
pub mod clock;
pub mod config;
pub mod cpu;
pub mod green;
mod local;
pub mod preempt;
pub mod queue;
pub mod request;
pub mod runtime;
pub mod stats;
pub mod sync;
mod timer_core;
pub mod transport;
mod worker;

/// The scheduling decisions (crate `synergy-policy`), shared with the simulator.
pub use synergy_policy as policy;

pub use alloc::PreemptSafeAlloc;
pub use config::Config;
pub use preempt::PreemptMode;
pub use request::{Reply, Request};
pub use runtime::{Runtime, SharedHandler, StartError};
pub use worker::{
    current_worker, feedback_finished, feedback_start, on_worker, send, set_preempt_probe, stack_remaining, yield_now,
    NotOnWorker, STATUS_HANDLER_PANICKED,
};

// The library's own unit tests run workers too.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOC: PreemptSafeAlloc = PreemptSafeAlloc;
