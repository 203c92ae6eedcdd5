//! The applications a synergy server can run: what a request means and how it is answered.
//! A runtime takes any `Fn(Request)` handler; these are the two the `synergy` binary serves
//! (`--app synthetic|leveldb`).

#[cfg(feature = "leveldb")]
pub mod leveldb;
pub mod synthetic;

pub use synergy::SharedHandler as Handler;
