//! The runtime's own cost per request, without a network: requests go through an in-process
//! `ChannelTransport` to one pinned worker whose handler answers at once (with the request's body,
//! moved), and the submitting thread takes the replies. Prints `ns_per_request` for one size.
//!
//! `scripts/body-bench.sh` builds this file against this revision and against the revision
//! before bodies (with `--cfg synergy_no_bodies`, which leaves the body out) and runs both side
//! by side.
//!
//! ```sh
//! cargo run --release -p synergy --example request_cost -- <body bytes> <requests>
//! ```

use std::sync::Arc;
use std::time::Instant;
use synergy::transport::channel::ChannelTransport;
use synergy::{Config, Reply, Request, Runtime};

#[global_allocator]
static ALLOC: synergy::PreemptSafeAlloc = synergy::PreemptSafeAlloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let body: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000_000);
    #[cfg(synergy_no_bodies)]
    assert_eq!(body, 0, "this build has no bodies");
    let allowed = synergy::cpu::allowed_cpus();
    let mut config = Config { preempt: synergy::PreemptMode::None, ..Config::default() };
    if allowed.len() >= 2 {
        config.timer_core = Some(allowed[0]);
        config.worker_cores = Some(vec![allowed[1]]);
    } else {
        config.pin = false;
    }
    let transport = Arc::new(ChannelTransport::new(1, 4096, 1 << 16));
    let rt = Runtime::builder(&config)
        .transport(transport.clone())
        .handler(|req: Request| {
            let reply = Reply::to(&req).with_value(req.id);
            #[cfg(not(synergy_no_bodies))]
            let reply = reply.with_body_buf(req.body);
            let _ = synergy::send(reply);
        })
        .without_timer_core()
        .start()
        .expect("runtime starts");
    let payload = vec![7u8; body];
    let (mut sent, mut answered) = (0u64, 0u64);
    let t0 = Instant::now();
    while answered < n {
        // Keep up to 1,024 in flight: the worker never waits for the submitter.
        while sent < n && sent - answered < 1_024 {
            #[allow(unused_mut)]
            let mut req = Request { id: sent, ..Request::default() };
            #[cfg(not(synergy_no_bodies))]
            {
                req.body = synergy::Body::from_slice(&payload);
            }
            if transport.submit(0, req).is_err() {
                break;
            }
            sent += 1;
        }
        let replies = transport.take_replies();
        #[cfg(not(synergy_no_bodies))]
        for r in &replies {
            assert_eq!(r.body.len(), body, "the body came back");
        }
        answered += replies.len() as u64;
    }
    let ns = t0.elapsed().as_nanos() as f64 / n as f64;
    transport.close();
    rt.shutdown();
    let _ = &payload;
    println!("{{\"body_bytes\": {body}, \"requests\": {n}, \"ns_per_request\": {ns:.1}}}");
}
