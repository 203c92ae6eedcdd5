//! `Transport::long_request` (issue 19, SCAN-avoid steering): the transport hears when a worker
//! starts and stops running a long request — at `feedback_start`, at each preemption (the worker
//! is free again), at each resumption and at `feedback_finished` — and never for short requests.

mod common;

use common::{wait_for_replies, Gate, LONG, SHORT, UNTIL_SHORT_DONE};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synergy::transport::channel::ChannelTransport;
use synergy::transport::Transport;
use synergy::{Reply, Request, Runtime};

/// A channel transport that records what `long_request` was told.
struct Recording {
    inner: ChannelTransport,
    events: Mutex<Vec<(usize, bool)>>,
}

impl Transport for Recording {
    fn poll(&self, worker: usize, out: &mut Vec<Request>, max: usize) {
        self.inner.poll(worker, out, max)
    }
    fn backlog(&self, worker: usize) -> usize {
        self.inner.backlog(worker)
    }
    fn reply(&self, worker: usize, reply: Reply) {
        self.inner.reply(worker, reply)
    }
    fn long_request(&self, worker: usize, running: bool) {
        self.events.lock().unwrap().push((worker, running));
    }
    fn finished(&self) -> bool {
        self.inner.finished()
    }
}

#[test]
fn the_transport_hears_long_requests_start_stop_and_migrate() {
    let _g = common::serial();
    let t = Arc::new(Recording { inner: ChannelTransport::new(1, 64, 64), events: Mutex::new(Vec::new()) });
    let gate = Arc::new(Gate::default());
    let rt = Runtime::builder(&common::one_worker())
        .transport(t.clone())
        .handler(common::spin_handler(gate.clone()))
        .start()
        .unwrap();
    t.inner.submit(0, Request { id: 0, kind: LONG, service_ns: UNTIL_SHORT_DONE, ..Request::default() }).unwrap();
    common::wait_until("the long request starts", Duration::from_secs(10), || {
        gate.long_started.load(std::sync::atomic::Ordering::Acquire)
    });
    t.inner.submit(0, Request { id: 1, kind: SHORT, service_ns: 1_000, ..Request::default() }).unwrap();
    let replies = wait_for_replies(&t.inner, 2, common::UNTIL_SHORT_DONE_BOUND + Duration::from_secs(10));
    assert_eq!(replies.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 0], "the short request overtook");
    let during_long = t.events.lock().unwrap().len();
    for id in 2..12 {
        t.inner.submit(0, Request { id, kind: SHORT, service_ns: 1_000, ..Request::default() }).unwrap();
    }
    wait_for_replies(&t.inner, 10, Duration::from_secs(10));
    assert_eq!(t.events.lock().unwrap().len(), during_long, "short requests are not long");
    t.inner.close();
    let s = rt.shutdown();

    let events = t.events.lock().unwrap().clone();
    // start, then (preempted, resumed) per preemption, then finished.
    let preemptions = s.total.preemptions as usize;
    assert!(preemptions >= 1, "{:?}", s.total);
    assert_eq!(events.len(), 2 + 2 * preemptions, "{events:?} with {preemptions} preemption(s)");
    for (i, &(w, running)) in events.iter().enumerate() {
        assert_eq!((w, running), (0, i % 2 == 0), "event {i} of {events:?}");
    }
}
