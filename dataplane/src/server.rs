//! A synergy runtime behind a network transport: the servers `synergy serve` and `sweep` start.
//! What they serve is a handler from `synergy_apps`.

use crate::steering::Steering;
use crate::udp::UdpTransport;
use std::net::SocketAddrV4;
use std::sync::Arc;
use synergy::config::Config;
use synergy::MigratableHandler as Handler;
use synergy::{Runtime, StartError};

/// A synergy runtime serving `handler` over kernel UDP.
pub struct UdpServer {
    /// The runtime serving it (its counters: `runtime.stats()`).
    pub runtime: Runtime,
    /// The kernel UDP transport (its counters, its address).
    pub transport: Arc<UdpTransport>,
}

impl UdpServer {
    /// Serves `handler` (a `MigratableHandler`: preempted anywhere) on `bind`, datagrams hashed over the workers.
    pub fn start(config: &Config, bind: SocketAddrV4, handler: Handler) -> Result<UdpServer, StartError> {
        UdpServer::start_steered(config, bind, handler, &Steering::Hash)
    }

    /// Serves `handler`, a plain safe handler (see [`synergy::Builder::handler`]): it may be
    /// preempted and migrate only inside the preemptible regions it opens itself.
    pub fn serve<H>(config: &Config, bind: SocketAddrV4, handler: H) -> Result<UdpServer, StartError>
    where
        H: Fn(synergy::Request) + Send + Sync + 'static,
    {
        let transport = Arc::new(
            UdpTransport::bind(bind, config.workers).map_err(|e| StartError::Worker(format!("UDP transport: {e}")))?,
        );
        let runtime = Runtime::builder(config).transport(transport.clone()).handler(handler).start()?;
        Ok(UdpServer { runtime, transport })
    }

    /// As `start`, with datagrams spread over the workers by `steering`.
    pub fn start_steered(
        config: &Config,
        bind: SocketAddrV4,
        handler: Handler,
        steering: &Steering,
    ) -> Result<UdpServer, StartError> {
        let transport = Arc::new(
            UdpTransport::bind_steered(bind, config.workers, steering)
                .map_err(|e| StartError::Worker(format!("UDP transport: {e}")))?,
        );
        let runtime = Runtime::builder(config).transport(transport.clone()).migratable_handler(handler).start()?;
        Ok(UdpServer { runtime, transport })
    }

    /// The address it serves on (the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.transport.local_addr()
    }

    /// Stops receiving, finishes every admitted request, and returns the run's counters.
    pub fn shutdown(self) -> (synergy::stats::RunStats, Vec<crate::udp::UdpSnapshot>) {
        self.transport.close();
        let stats = self.runtime.shutdown();
        (stats, self.transport.counters())
    }
}

/// A synergy runtime serving a handler over TCP, framed by a codec
/// ([`crate::stream::tcp::TcpTransport`]).
pub struct TcpServer {
    /// The runtime serving it (its counters: `runtime.stats()`).
    pub runtime: Runtime,
    /// The TCP transport (its counters, its address).
    pub transport: Arc<crate::stream::tcp::TcpTransport>,
}

impl TcpServer {
    /// Serves `handler`, a plain safe handler, on `bind`, framing with `codec`.
    pub fn serve<H>(
        config: &Config,
        bind: SocketAddrV4,
        codec: Arc<dyn crate::stream::Codec>,
        handler: H,
    ) -> Result<TcpServer, StartError>
    where
        H: Fn(synergy::Request) + Send + Sync + 'static,
    {
        let transport = Arc::new(
            crate::stream::tcp::TcpTransport::bind(bind, config.workers, codec)
                .map_err(|e| StartError::Worker(format!("TCP transport: {e}")))?,
        );
        let runtime = Runtime::builder(config).transport(transport.clone()).handler(handler).start()?;
        Ok(TcpServer { runtime, transport })
    }

    /// As `serve`, with a handler that may be preempted anywhere (needed by the policies that
    /// preempt every request).
    pub fn start(
        config: &Config,
        bind: SocketAddrV4,
        codec: Arc<dyn crate::stream::Codec>,
        handler: Handler,
    ) -> Result<TcpServer, StartError> {
        let transport = Arc::new(
            crate::stream::tcp::TcpTransport::bind(bind, config.workers, codec)
                .map_err(|e| StartError::Worker(format!("TCP transport: {e}")))?,
        );
        let runtime = Runtime::builder(config).transport(transport.clone()).migratable_handler(handler).start()?;
        Ok(TcpServer { runtime, transport })
    }

    /// The address it listens on (the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.transport.local_addr()
    }

    /// The transport's counters so far (connections accepted and closed, requests, replies).
    pub fn counters(&self) -> crate::stream::tcp::TcpSnapshot {
        self.transport.counters()
    }

    /// Stops accepting and reading, finishes every admitted request, and returns the counters.
    pub fn shutdown(self) -> (synergy::stats::RunStats, crate::stream::tcp::TcpSnapshot) {
        self.transport.close();
        let stats = self.runtime.shutdown();
        (stats, self.transport.counters())
    }
}

/// Why a DPDK server did not start.
#[derive(Debug, thiserror::Error)]
pub enum DpdkStartError {
    /// The DPDK transport could not open.
    #[error(transparent)]
    Transport(#[from] crate::dpdk::DpdkError),
    /// The runtime could not start.
    #[error(transparent)]
    Runtime(#[from] StartError),
}

/// A synergy runtime serving `handler` over DPDK.
pub struct DpdkServer {
    /// The runtime serving it (its counters: `runtime.stats()`).
    pub runtime: Runtime,
    /// The DPDK transport.
    pub transport: Arc<crate::dpdk::DpdkTransport>,
}

impl DpdkServer {
    /// Serves `handler` over DPDK with `params`.
    pub fn start(
        config: &Config,
        params: &crate::dpdk::DpdkParams,
        handler: Handler,
    ) -> Result<DpdkServer, DpdkStartError> {
        let transport = Arc::new(crate::dpdk::DpdkTransport::open(params)?);
        let runtime = Runtime::builder(config).transport(transport.clone()).migratable_handler(handler).start()?;
        Ok(DpdkServer { runtime, transport })
    }

    /// Stops receiving, finishes every admitted request, and returns the run's counters.
    pub fn shutdown(self) -> (synergy::stats::RunStats, crate::dpdk::DpdkSnapshot) {
        self.transport.close();
        let stats = self.runtime.shutdown();
        (stats, self.transport.counters())
    }
}
