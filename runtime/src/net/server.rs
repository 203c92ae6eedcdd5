//! The synthetic server application of the thesis's experiments: a request of type `kind` spins
//! for exactly its `service_ns` of running time; the application classifies the workload's long
//! types with `feedback_start()`/`feedback_finished()`. Requests the application cannot serve are
//! answered with an error status, never dropped silently.

use crate::clock;
use crate::config::Config;
use crate::request::{Reply, Request};
use crate::transport::udp::UdpTransport;
use crate::workload::RequestType;
use crate::{Runtime, StartError};
use std::net::SocketAddrV4;
use std::sync::Arc;

/// Reply status: the request's kind is not a type of the served workload.
pub const STATUS_UNKNOWN_KIND: u32 = 2;
/// Reply status: the requested service time is above `MAX_SERVICE_NS`.
pub const STATUS_SERVICE_TOO_LONG: u32 = 3;
/// Longest spin a client may ask for (1 s): a bound on what one datagram can cost the server.
pub const MAX_SERVICE_NS: u64 = 1_000_000_000;

/// The request handler of the synthetic application serving `types`.
pub fn synthetic_handler(types: Vec<RequestType>) -> impl Fn(Request) + Send + Sync + 'static {
    move |req: Request| {
        let status = match types.get(req.kind as usize) {
            None => STATUS_UNKNOWN_KIND,
            Some(_) if req.service_ns > MAX_SERVICE_NS => STATUS_SERVICE_TOO_LONG,
            Some(t) if t.long => {
                crate::feedback_start();
                clock::spin_work(req.service_ns);
                crate::feedback_finished();
                0
            }
            Some(_) => {
                clock::spin_work(req.service_ns);
                0
            }
        };
        let _ = crate::send(Reply::to(&req).with_status(status));
    }
}

/// A synergy runtime serving the synthetic application over kernel UDP.
pub struct UdpServer {
    pub runtime: Runtime,
    pub transport: Arc<UdpTransport>,
}

impl UdpServer {
    pub fn start(config: &Config, bind: SocketAddrV4, types: Vec<RequestType>) -> Result<UdpServer, StartError> {
        let transport = Arc::new(
            UdpTransport::bind(bind, config.workers).map_err(|e| StartError::Worker(format!("UDP transport: {e}")))?,
        );
        let runtime = Runtime::start(config, transport.clone(), synthetic_handler(types))?;
        Ok(UdpServer { runtime, transport })
    }

    pub fn local_addr(&self) -> SocketAddrV4 {
        self.transport.local_addr()
    }

    /// Stops receiving, finishes every admitted request, and returns the run's counters.
    pub fn shutdown(self) -> (crate::stats::RunStats, Vec<crate::transport::udp::UdpSnapshot>) {
        self.transport.close();
        let stats = self.runtime.shutdown();
        (stats, self.transport.counters())
    }
}

/// A synergy runtime serving the synthetic application over DPDK.
pub struct DpdkServer {
    pub runtime: Runtime,
    pub transport: Arc<crate::transport::dpdk::DpdkTransport>,
}

impl DpdkServer {
    pub fn start(config: &Config, params: &crate::transport::dpdk::DpdkParams, types: Vec<RequestType>) -> Result<DpdkServer, String> {
        let transport = Arc::new(crate::transport::dpdk::DpdkTransport::open(params)?);
        let runtime = Runtime::start(config, transport.clone(), synthetic_handler(types)).map_err(|e| e.to_string())?;
        Ok(DpdkServer { runtime, transport })
    }

    pub fn shutdown(self) -> (crate::stats::RunStats, crate::transport::dpdk::DpdkSnapshot) {
        self.transport.close();
        let stats = self.runtime.shutdown();
        (stats, self.transport.counters())
    }
}
