//! synergy's data plane: how requests reach a runtime and replies leave it.
//!
//! - [`frame`], [`protocol`]: the Ethernet/IPv4/UDP framing and the request/reply wire format;
//! - [`udp`] (kernel sockets), [`dpdk`] (cargo feature `dpdk`), [`replay`] (an in-process
//!   open-loop schedule): implementations of the runtime's `Transport` trait;
//! - [`stream`]: stream transports (TCP) framed by an application's [`stream::Codec`], replies in
//!   request order per connection;
//! - [`server`]: a runtime behind a UDP, TCP or DPDK transport;
//! - [`loadgen`]: the open-loop load generator and its latency histograms.

#![deny(missing_docs)]

pub mod dpdk;
pub mod frame;
pub mod loadgen;
pub mod protocol;
pub mod replay;
pub mod server;
pub mod steering;
pub mod stream;
pub mod udp;
