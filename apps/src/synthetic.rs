//! The synthetic server application of the thesis's experiments: a request of type `kind` spins
//! for exactly its `service_ns` of running time; the application classifies the workload's long
//! types with `feedback_start()`/`feedback_finished()`. Requests the application cannot serve are
//! answered with an error status, never dropped silently.

use super::Handler;
use std::sync::Arc;
use synergy::clock;
use synergy::request::{status, Reply, Request};
use synergy_eval::workload::RequestType;

/// Reply status: the request's kind is not a type of the served workload.
pub const STATUS_UNKNOWN_KIND: u32 = status::UNKNOWN_KIND;
/// Reply status: the requested service time is above `MAX_SERVICE_NS` (an application status,
/// above 16: the runtime's own are below; it was 3 until 3 became the runtime's `REJECTED`).
pub const STATUS_SERVICE_TOO_LONG: u32 = 17;
/// Longest spin a client may ask for (1 s): a bound on what one datagram can cost the server.
pub const MAX_SERVICE_NS: u64 = 1_000_000_000;

/// Running time between two compiler-interrupt probes in a long request's work.
const PROBE_EVERY_NS: u64 = 250;

/// A long request's work, instrumented for `--preempt=ci` and its hybrids as an application
/// instruments its handlers: `spin_work` in 250 ns pieces, a probe before each.
#[synergy::preemptible]
pub fn long_work(ns: u64) {
    let mut left = ns;
    while left > 0 {
        let piece = left.min(PROBE_EVERY_NS);
        clock::spin_work(piece);
        left -= piece;
    }
}

/// The request handler of the synthetic application serving `types`.
pub fn handler(types: Vec<RequestType>) -> Handler {
    let serve = move |req: Request| {
        let status = match types.get(req.kind as usize) {
            None => STATUS_UNKNOWN_KIND,
            Some(_) if req.service_ns > MAX_SERVICE_NS => STATUS_SERVICE_TOO_LONG,
            Some(t) if t.long => {
                // SAFETY: the spin reads the runtime's clock (no thread-local storage, no lock).
                unsafe { synergy::feedback_start() };
                long_work(req.service_ns);
                synergy::feedback_finished();
                status::OK
            }
            Some(_) => {
                clock::spin_work(req.service_ns);
                status::OK
            }
        };
        let _ = synergy::send(Reply::to(&req).with_status(status));
    };
    // SAFETY: the handler spins on the runtime's clock and replies: no thread-local storage, no
    // per-thread libc state, no lock anywhere, so all of it may migrate.
    unsafe { Handler::new(Arc::new(serve)) }
}
