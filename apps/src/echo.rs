//! Echo: every request is answered at once with its own body (the buffer is moved into the
//! reply, not copied) and its body's length as the reply's value. What the per-request cost of
//! bodies is measured with (`scripts/body-bench.sh`), and a server to try a client against.

use super::Handler;
use std::sync::Arc;
use synergy::request::{Reply, Request};

/// The echo handler.
pub fn handler() -> Handler {
    // SAFETY: the handler reads its request's fields, moves the request's body buffer into the
    // reply and sends it: no thread-local state, no lock, no allocation (a body's buffer returns
    // to the pools, which are lock-free, when the transport has sent the reply); it may migrate
    // at any instruction.
    unsafe {
        Handler::new(Arc::new(|req: Request| {
            let reply = Reply::to(&req).with_value(req.body.len() as u64);
            let _ = synergy::send(reply.with_body_buf(req.body));
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synergy::transport::channel::ChannelTransport;

    #[test]
    fn echo_moves_the_body_into_the_reply() {
        let transport = Arc::new(ChannelTransport::new(1, 16, 16));
        // No preemption: this test binary has not installed PreemptSafeAlloc.
        let config = synergy::Config { pin: false, preempt: synergy::PreemptMode::None, ..synergy::Config::default() };
        let rt = synergy::Runtime::builder(&config)
            .transport(transport.clone())
            .migratable_handler(handler())
            .start()
            .unwrap();
        let body = synergy::Body::from_slice(b"twelve bytes");
        transport.submit(0, Request { id: 4, body, ..Request::default() }).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut replies = Vec::new();
        while replies.is_empty() {
            assert!(std::time::Instant::now() < deadline, "no reply within 30 s");
            replies = transport.take_replies();
            std::thread::yield_now();
        }
        transport.close();
        rt.shutdown();
        assert_eq!((replies[0].id, replies[0].value, replies[0].body.as_slice()), (4, 12, &b"twelve bytes"[..]));
    }
}
