//! The applications a synergy server can run: what a request means and how it is answered.
//! A runtime takes any `Fn(Request)` handler; these are the two the `synergy` binary serves
//! (`--app synthetic|leveldb`).

#[cfg(feature = "leveldb")]
pub mod leveldb;
pub mod synthetic;

use crate::request::Request;
use std::sync::Arc;

/// A request handler, shareable between the runtime's workers and a benchmark's server restarts.
pub type Handler = Arc<dyn Fn(Request) + Send + Sync + 'static>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AppName {
    /// Requests spin for their requested service time (the thesis's synthetic workloads).
    Synthetic,
    /// LevelDB GET/SCAN on a preloaded store (needs the `leveldb` cargo feature).
    Leveldb,
}
