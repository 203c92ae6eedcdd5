//! A long request is really preempted by a signal and a short request queued behind it finishes
//! first; without preemption the order is reversed (the control that makes the first meaningful).

mod common;

use common::{LONG, SHORT};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use synergy::transport::channel::ChannelTransport;
use synergy::{PreemptMode, Reply, Request, Runtime};

fn run(mode: PreemptMode) -> (Vec<Reply>, synergy::stats::RunStats) {
    let _serial = common::serial();
    let mut cfg = common::one_worker();
    cfg.preempt = mode;
    let transport = Arc::new(ChannelTransport::new(1, 1024, 1024));
    let gate = Arc::new(common::Gate::default());
    let rt = Runtime::builder(&cfg)
        .transport(transport.clone())
        .handler(common::spin_handler(gate.clone()))
        .start()
        .expect("runtime starts");
    // Preempted: the long request runs until the short one was answered. The control (no
    // preemption) must finish on its own: 300 ms.
    let long_ns = if mode == PreemptMode::None { 300_000_000 } else { common::UNTIL_SHORT_DONE };
    transport.submit(0, Request { id: 1, kind: LONG, service_ns: long_ns, ..Default::default() }).unwrap();
    common::wait_until("long request started", Duration::from_secs(10), || gate.long_started.load(Ordering::Acquire));
    transport.submit(0, Request { id: 2, kind: SHORT, service_ns: 1_000, ..Default::default() }).unwrap();
    transport.close();
    let stats = rt.shutdown();
    (transport.take_replies(), stats)
}

#[test]
fn short_request_overtakes_a_preempted_long_one() {
    let (replies, stats) = run(common::preempt_mode());
    let order: Vec<u64> = replies.iter().map(|r| r.id).collect();
    assert_eq!(order, vec![2, 1], "the short request must complete first; stats: {stats:?}");
    let long = replies.iter().find(|r| r.id == 1).unwrap();
    assert!(long.preemptions >= 1, "the long request was preempted: {long:?}");
    assert_eq!(replies[0].preemptions, 0, "a short request is never preempted");
    assert!(stats.total.preemptions >= 1 && stats.timer.interrupts_sent >= 1, "{stats:?}");
    assert_eq!(stats.total.resumes, stats.total.preemptions, "every preempted thread resumed once");
    assert_eq!((stats.total.short_done, stats.total.long_done), (1, 1));
}

#[test]
fn without_preemption_the_short_request_waits() {
    let (replies, stats) = run(PreemptMode::None);
    let order: Vec<u64> = replies.iter().map(|r| r.id).collect();
    assert_eq!(order, vec![1, 2], "head-of-line blocking without preemption; stats: {stats:?}");
    assert_eq!(stats.total.preemptions, 0);
}
