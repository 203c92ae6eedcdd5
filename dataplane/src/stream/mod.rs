//! Stream transports: requests framed by a [`Codec`] the application chooses, over TCP
//! ([`tcp::TcpTransport`]), with replies in request order on each connection.
//!
//! A codec only parses and formats; the transport owns the bytes. Parsing sees everything a
//! connection has sent and not yet consumed, so partial reads (a request split over segments)
//! and pipelining (many requests in one segment) are the codec's `Ok(None)` and its consumed
//! length. Preemption, stealing and waiting make requests of one connection finish in any order;
//! the transport's per-connection sequencer holds a finished reply until every earlier one on
//! that connection has been written (memcached and HTTP/1.1 clients rely on that order).

pub mod codecs;
pub mod tcp;

use synergy::request::{Reply, Request};

/// What a codec found at the start of a connection's unconsumed bytes.
#[derive(Debug)]
pub enum Frame {
    /// A request for the handler (its `origin` and `arrival_ns` are the transport's to set).
    Request(Request),
    /// Bytes the codec answers itself without the application (a protocol error, `version`):
    /// they take their turn among the connection's replies.
    Answer(Vec<u8>),
    /// The client asked to close (memcached's `quit`): replies to earlier requests are still
    /// written, then the connection closes.
    Close,
}

/// Why a connection's bytes cannot be parsed: the transport answers with `reply` (if any, in
/// turn) and closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CodecError {
    /// What was wrong, for the log and the counters.
    pub message: String,
    /// Bytes to send before closing (e.g. memcached's `CLIENT_ERROR ...`).
    pub reply: Option<Vec<u8>>,
}

/// Parses requests from, and formats replies to, a byte stream.
pub trait Codec: Send + Sync + 'static {
    /// The first message in `buf`: the frame and how many bytes it used, or `None` if `buf`
    /// holds only part of it. A body longer than `max_body` is an error (or an `Answer`, if the
    /// protocol has a reply for it and can skip the bytes).
    fn decode(&self, buf: &[u8], max_body: usize) -> Result<Option<(Frame, usize)>, CodecError>;
    /// Appends `reply`'s wire form to `out`.
    fn encode(&self, reply: &Reply, out: &mut Vec<u8>);
}
