//! The applications a synergy server can run: what a request means and how it is answered.
//! A runtime takes any `Fn(Request)` handler; these are the ones the `synergy` binary serves
//! (`--app synthetic|echo|leveldb`).

#![deny(missing_docs)]

pub mod echo;
#[cfg(feature = "leveldb")]
pub mod leveldb;
pub mod synthetic;

/// The applications' handlers may be preempted anywhere (each one's constructor says why that is
/// sound), so any policy can serve them.
pub use synergy::MigratableHandler as Handler;
