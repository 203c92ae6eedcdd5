//! What flows through the runtime: requests in, replies out.

pub use crate::body::Body;

/// A request handler that can be shared (between a server's restarts, say) and cloned.
pub type SharedHandler = std::sync::Arc<dyn Fn(Request) + Send + Sync + 'static>;

/// A request as the runtime sees it. Transports decode their wire format into this.
///
/// Not `Copy`: it owns its [`Body`]. What the scheduling policies see is [`Request::descriptor`],
/// the fixed fields without the body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// The request's key, for key-value applications (empty when the request has none).
    pub key: Key,
    /// The request's bytes besides the fixed fields (empty for the synthetic workloads).
    pub body: Body,
}

impl Request {
    /// The request's body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The request without its body: what scheduling decisions and the simulator work on.
    pub fn descriptor(&self) -> RequestDescriptor {
        RequestDescriptor {
            id: self.id,
            kind: self.kind,
            flow: self.flow,
            service_ns: self.service_ns,
            arrival_ns: self.arrival_ns,
            body_len: self.body.len() as u32,
        }
    }
}

/// A request's fixed fields, `Copy`: what a policy decides on (id, type, flow, times, size).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestDescriptor {
    /// The request's id (echoed in the reply).
    pub id: u64,
    /// Its kind (the application's or the workload's class).
    pub kind: u32,
    /// Its flow (session) for overload control and steering.
    pub flow: u32,
    /// The service time the client asked for (synthetic workloads), ns.
    pub service_ns: u64,
    /// When it reached the server (ns, the runtime's clock).
    pub arrival_ns: u64,
    /// The body's length in bytes.
    pub body_len: u32,
}

/// A request's key: up to `Key::MAX` bytes, stored inline so a `Request` stays `Copy` and moves
/// through the queues without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Key {
    len: u8,
    bytes: [u8; Key::MAX],
}

impl Key {
    /// Longest key the wire format carries.
    pub const MAX: usize = 64;

    /// The key `bytes`, or `None` if it is longer than `Key::MAX`.
    pub fn new(bytes: &[u8]) -> Option<Key> {
        if bytes.len() > Key::MAX {
            return None;
        }
        let mut k = Key::default();
        k.bytes[..bytes.len()].copy_from_slice(bytes);
        k.len = bytes.len() as u8;
        Some(k)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Whether the key is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for Key {
    fn default() -> Key {
        Key { len: 0, bytes: [0; Key::MAX] }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?})", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Reply statuses shared by every application (applications add their own above 16).
pub mod status {
    /// Served.
    pub const OK: u32 = 0;
    /// The transport could read the request's id but not the rest of it (bad length, reserved
    /// bits, a key longer than `Key::MAX`): answered so the client learns why, not dropped.
    pub const MALFORMED: u32 = 1;
    /// The request's kind is not one the application serves.
    pub const UNKNOWN_KIND: u32 = 2;
    /// Overload control's AQM turned the request away unserved (`--overload credits`): the
    /// oldest queued request had waited longer than D_drop. Not retried by the server.
    pub const REJECTED: u32 = 3;
    /// The request's body is longer than the transport accepts (its `max_body`): refused
    /// unread, answered so the client learns why.
    pub const TOO_LARGE: u32 = 4;
}

/// A reply built by the application and completed by the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Reply {
    /// The id of the request answered.
    pub id: u64,
    /// The kind of the request answered.
    pub kind: u32,
    /// 0 = ok; application-defined error codes otherwise.
    pub status: u32,
    /// Application result (a checksum, a value, a count).
    pub value: u64,
    /// The client's timestamp, echoed.
    pub client_ts: u64,
    /// When the request arrived (ns, the runtime's clock), echoed.
    pub arrival_ns: u64,
    /// Set by the runtime in `send`: when the reply left (runtime clock, ns).
    pub done_ns: u64,
    /// Set by the runtime in `send`: the worker that sent it.
    pub worker: u32,
    /// Set by the runtime in `send`: how often the request was preempted.
    pub preemptions: u32,
    /// The request's `origin`.
    pub origin: u64,
    /// Set by the runtime in `send` under `--overload credits`: how many requests the request's
    /// session may have outstanding from now on.
    pub credits: Option<u32>,
    /// The reply's bytes besides the fixed fields.
    pub body: Body,
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

    /// Sets the reply's value word.
    pub fn with_value(mut self, value: u64) -> Reply {
        self.value = value;
        self
    }

    /// The reply with `bytes` as its body (copied into a pooled buffer).
    pub fn with_body(mut self, bytes: &[u8]) -> Reply {
        self.body = Body::from_slice(bytes);
        self
    }

    /// The reply with `body` as its body (moved: build it with `Body::with_capacity` and write).
    pub fn with_body_buf(mut self, body: Body) -> Reply {
        self.body = body;
        self
    }

    /// Sets the reply's status (`status::*`).
    pub fn with_status(mut self, status: u32) -> Reply {
        self.status = status;
        self
    }

    /// Sojourn time in the server.
    pub fn latency_ns(&self) -> u64 {
        self.done_ns.saturating_sub(self.arrival_ns)
    }
}
