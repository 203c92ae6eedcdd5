//! What flows through the runtime: requests in, replies out.

/// A request as the runtime sees it. Transports decode their wire format into this.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Request {
    /// Client-chosen identifier, echoed in the reply.
    pub id: u64,
    /// Application-defined request type (e.g. GET/SCAN, or a workload class).
    pub kind: u32,
    /// Flow (client connection / RSS hash) it arrived on.
    pub flow: u32,
    /// Target service time for synthetic workloads, in ns (0 for real applications).
    pub service_ns: u64,
    /// Client send timestamp, opaque to the server and echoed back.
    pub client_ts: u64,
    /// When the request reached the server (runtime clock, ns).
    pub arrival_ns: u64,
    /// Where the reply goes, in the transport's own encoding (the UDP transport: the client's
    /// IPv4 address and port); copied into the reply.
    pub origin: u64,
}

/// A reply built by the application and completed by the runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Reply {
    pub id: u64,
    pub kind: u32,
    /// 0 = ok; application-defined error codes otherwise.
    pub status: u32,
    /// Application result (a checksum, a value, a count).
    pub value: u64,
    pub client_ts: u64,
    pub arrival_ns: u64,
    /// Set by the runtime in `send`: when the reply left (runtime clock, ns).
    pub done_ns: u64,
    /// Set by the runtime in `send`: the worker that sent it.
    pub worker: u32,
    /// Set by the runtime in `send`: how often the request was preempted.
    pub preemptions: u32,
    /// The request's `origin`.
    pub origin: u64,
}

impl Reply {
    /// An ok reply echoing `req`'s identifying fields.
    pub fn to(req: &Request) -> Reply {
        Reply {
            id: req.id,
            kind: req.kind,
            client_ts: req.client_ts,
            arrival_ns: req.arrival_ns,
            origin: req.origin,
            ..Reply::default()
        }
    }

    pub fn with_value(mut self, value: u64) -> Reply {
        self.value = value;
        self
    }

    pub fn with_status(mut self, status: u32) -> Reply {
        self.status = status;
        self
    }

    /// Sojourn time in the server.
    pub fn latency_ns(&self) -> u64 {
        self.done_ns.saturating_sub(self.arrival_ns)
    }
}
