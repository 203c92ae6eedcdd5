//! What synergy's evaluations share: the thesis's workloads (request types, mixes, open-loop
//! schedules), a seeded RNG, latency summaries, and the SVG plots every benchmark writes.
//! Nothing here runs requests: the runtime, the simulator and the load generator do.

#![deny(missing_docs)]

pub mod csv;
pub mod plot;
pub mod progress;
pub mod report;
pub mod rng;
pub mod workload;
