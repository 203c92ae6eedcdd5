//! Benchmarks run by the `synergy bench` command (not tests: they report, they do not assert).

pub mod burst;
pub mod ctx;
pub mod idle;
pub mod interrupt;
pub mod interrupt_report;
pub mod overload;
pub mod phases;
pub mod probes;
pub mod ring;
pub mod scale;
pub mod scan;
pub mod steering;
pub mod timer;
pub mod xsave;
