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
//! preempted inside `malloc` (whose thread caches live in TLS); [`Builder::start`] refuses to
//! start a preempting runtime without it:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: synergy::PreemptSafeAlloc = synergy::PreemptSafeAlloc;
//! ```
//!
//! # Preemptible regions
//!
//! A request's code may move to another OS thread only inside a *preemptible region*, which the
//! application opens with the `unsafe` [`feedback_start`] (closed by [`feedback_finished`] or the
//! end of the handler), or declares for the whole handler with an `unsafe`
//! [`MigratableHandler::new`] (the baselines that preempt every request need that). Inside one,
//! the timer core may preempt the request at any instruction and [`yield_now`] or a contended
//! [`sync::Mutex`] may park it; outside, nothing parks it, so safe code never migrates. The
//! `unsafe` is the application's promise that, inside the region, its code holds no reference
//! into thread-local storage, no per-thread libc state (errno, stdio locks, `println!`) and no OS
//! lock across a point where it may migrate, except inside [`preempt::without_preemption`].
//! Per-request state that would otherwise go into a `thread_local!` goes into a [`GreenLocal`],
//! which migrates with the request.

#![deny(missing_docs)]

pub mod alloc;
pub mod body;
pub mod clock;
pub mod config;
pub(crate) mod coresync;
pub mod cpu;
mod dispatcher;
pub(crate) mod green;
mod local;
pub(crate) mod overload;
pub(crate) mod park;
pub mod preempt;
pub(crate) mod queue;
pub mod request;
pub mod runtime;
pub mod stats;
pub mod sync;
mod timer_core;
pub(crate) mod timer_scan;
pub(crate) mod timer_sleep;
pub mod transport;
pub mod wait;
/// Internals that the `synergy` CLI's microbenchmarks (`bench ctx`, `bench ring`, `bench scan`,
/// `bench xsave`) and the register-state tests measure directly. Not the API a server is built
/// on (that is the crate root): these may change in any release.
pub mod bench {
    /// Green-thread contexts and stacks, and the switch between them (`bench ctx`).
    pub mod green {
        pub use crate::green::context::switch;
        pub use crate::green::{Context, Stack};
    }
    /// The bounded MPMC ring behind the receive and wait queues (`bench ring`).
    pub use crate::queue::Ring;
    /// What one timer-core pass costs per worker state (`bench scan`).
    pub mod scan {
        pub use crate::timer_scan::*;
    }
    /// XSAVE images, areas and save costs (`bench xsave`, the register-state tests).
    pub mod xsave {
        pub use crate::preempt::save_cost::*;
    }
}
/// Time, as requests wait for it: [`sleep`](time::sleep).
pub mod time {
    pub use crate::wait::sleep;
}
mod worker;

/// The scheduling decisions (crate `synergy-policy`), shared with the simulator.
pub use synergy_policy as policy;

pub use alloc::PreemptSafeAlloc;
pub use body::Body;
pub use config::Config;
pub use green::thread::ThreadPtr as PreemptedThread;
pub use preempt::ci::preempt_point;
pub use preempt::PreemptMode;
pub use request::{Reply, Request, RequestDescriptor};
pub use runtime::{Builder, MigratableHandler, Runtime, SharedHandler, StartError};
pub use synergy_macros::preemptible;
pub use wait::{oneshot, spawn_blocking};
pub use worker::{
    current_worker, feedback_finished, feedback_start, feedback_start_cooperative, on_worker, panic_guard,
    request_preemptions, send, set_preempt_probe, stack_remaining, yield_now, GreenLocal, PanicGuard, RuntimeScheduler,
    SendError, STATUS_HANDLER_PANICKED, STATUS_NO_REPLY,
};

// The library's own unit tests run workers too.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOC: PreemptSafeAlloc = PreemptSafeAlloc;
