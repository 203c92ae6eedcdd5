//! An application's own scheduling policy in the real runtime: SITA (`policy.rs`) on two
//! workers, one for short requests (kind 0, 2 µs) and one for long ones (kind 1, 300 µs).
//!
//! Run: `cargo run --release -p synergy --example sita`. It prints, per kind, which workers
//! served the requests and their arrival-to-finish times: every short request on worker 0, every long one on
//! worker 1, so the short requests' tail does not include a long request's service time.
//! The workers are not pinned; with fewer than 4 CPUs (2 workers, the timer core, this sender)
//! they share cores and the times include the kernel's time slices.

mod policy;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synergy::transport::channel::ChannelTransport;
use synergy::{clock, feedback_finished, feedback_start, send, Config, Reply, Request, Runtime};

#[global_allocator]
static ALLOC: synergy::PreemptSafeAlloc = synergy::PreemptSafeAlloc;

const SHORT: u32 = 0;
const LONG: u32 = 1;

fn main() {
    clock::init();
    let cfg = Config { workers: 2, pin: false, worker_cores: None, ..Config::default() };
    let transport = Arc::new(ChannelTransport::new(cfg.workers, 4096, 4096));
    // Per (kind, worker): requests served; per kind: arrival-to-finish times, ns.
    let served: Arc<Mutex<BTreeMap<(u32, usize), u64>>> = Arc::default();
    let latency: Arc<Mutex<BTreeMap<u32, Vec<u64>>>> = Arc::default();
    let (seen, timed) = (served.clone(), latency.clone());
    let handler = move |req: Request| {
        if req.kind == LONG {
            // SAFETY: the spin reads the clock only: no thread-local storage, no lock.
            unsafe { feedback_start() };
            clock::spin_for(req.service_ns);
            feedback_finished();
        } else {
            clock::spin_for(req.service_ns);
        }
        let worker = synergy::current_worker().expect("handlers run on workers");
        *seen.lock().unwrap().entry((req.kind, worker)).or_default() += 1;
        let took = clock::now_ns().saturating_sub(req.arrival_ns);
        timed.lock().unwrap().entry(req.kind).or_default().push(took);
        send(Reply::to(&req)).expect("the reply queue has room");
    };
    let sita = Arc::new(policy::Sita::new(vec![LONG], 1));
    let rt =
        Runtime::builder(&cfg).transport(transport.clone()).handler(handler).scheduler(sita).start().unwrap_or_else(
            |e| {
                eprintln!("sita: {e}");
                std::process::exit(1)
            },
        );
    let n = 2_000u64;
    for id in 0..n {
        let (kind, service_ns) = if id % 50 == 0 { (LONG, 300_000) } else { (SHORT, 2_000) };
        // Arrivals come in on both workers' receive queues, as RSS would spread them.
        let mut req = Request { id, kind, service_ns, arrival_ns: clock::now_ns(), ..Request::default() };
        while let Err(back) = transport.submit((id % 2) as usize, req) {
            req = back;
            std::thread::yield_now();
        }
        // Paced without spinning: the sender should not take a core from the workers.
        std::thread::sleep(Duration::from_micros(20));
    }
    let t0 = Instant::now();
    let mut answered = 0;
    while answered < n && t0.elapsed() < Duration::from_secs(30) {
        answered += transport.take_replies().len() as u64;
    }
    transport.close();
    let stats = rt.shutdown();
    println!("sita: {answered} of {n} requests answered, {} preemptions", stats.total.preemptions);
    for ((kind, worker), count) in served.lock().unwrap().iter() {
        println!("  kind {kind} ({}): {count} served on worker {worker}", if *kind == LONG { "long" } else { "short" });
    }
    for (kind, l) in latency.lock().unwrap().iter_mut() {
        l.sort_unstable();
        let p99 = l[(l.len() * 99 / 100).min(l.len() - 1)];
        println!("  kind {kind}: arrival to finish p50 {} µs, p99 {} µs", l[l.len() / 2] / 1_000, p99 / 1_000);
    }
}
