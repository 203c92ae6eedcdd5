//! Serving over the network: the wire protocol, the synthetic server application, the open-loop
//! load generator and load sweeps.

pub mod frame;
pub mod loadgen;
pub mod protocol;
pub mod server;
pub mod sweep;
