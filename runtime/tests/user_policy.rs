//! An application's own scheduling policy (`policy::api`) runs in the real runtime: the SITA
//! example (`examples/sita/policy.rs`) places each kind on its group of workers, and the
//! runtime answers a policy's rejects and survives its invalid placements.

mod common;

#[path = "../examples/sita/policy.rs"]
mod sita;

use common::{LONG, SHORT};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synergy::transport::channel::ChannelTransport;
use synergy::{clock, feedback_finished, feedback_start, send, Config, Reply, Request, Runtime, StartError};
use synergy_policy::api::{ArrivalInfo, LoadView, Placement, Queues, RequeueTo, Scheduler};
use synergy_policy::builtin::Synergy;
use synergy_policy::selection::Selected;
use synergy_policy::system::Preemptible;

type Served = Arc<Mutex<BTreeMap<u64, (u32, usize)>>>;

/// Spins `service_ns` (long requests in a preemptible region) and records which worker finished
/// each request.
fn recording_handler(served: Served) -> impl Fn(Request) + Send + Sync + 'static {
    move |req: Request| {
        if req.kind == LONG {
            // SAFETY: the spin reads the clock only: no thread-local storage, no lock.
            unsafe { feedback_start() };
            clock::spin_for(req.service_ns);
            feedback_finished();
        } else {
            clock::spin_for(req.service_ns);
        }
        let w = synergy::current_worker().expect("on a worker");
        served.lock().unwrap().insert(req.id, (req.kind, w));
        send(Reply::to(&req)).unwrap();
    }
}

#[test]
fn sita_serves_each_kind_on_its_own_group_of_workers() {
    let _serial = common::serial();
    let cfg = common::two_workers();
    let transport = Arc::new(ChannelTransport::new(cfg.workers, 1024, 1024));
    let served = Served::default();
    let sita = Arc::new(sita::Sita::new(vec![LONG], 1));
    let rt = Runtime::builder(&cfg)
        .transport(transport.clone())
        .handler(recording_handler(served.clone()))
        .scheduler(sita)
        .start()
        .expect("runtime starts");
    let n = 400u64;
    for id in 0..n {
        let (kind, service_ns) = if id % 8 == 0 { (LONG, 50_000) } else { (SHORT, 1_000) };
        // Both receive queues get both kinds: the policy, not RSS, decides where each runs.
        transport.submit((id % 2) as usize, Request { id, kind, service_ns, ..Request::default() }).unwrap();
    }
    let mut replies = Vec::new();
    common::wait_until("every request answered", Duration::from_secs(60), || {
        replies.extend(transport.take_replies());
        replies.len() as u64 == n
    });
    transport.close();
    let stats = rt.shutdown();
    let mut ids: Vec<u64> = replies.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..n).collect::<Vec<_>>(), "every request answered once");
    let served = served.lock().unwrap();
    for (id, (kind, worker)) in served.iter() {
        let group = if *kind == LONG { 1 } else { 0 };
        assert_eq!(*worker, group, "request {id} of kind {kind} ran on worker {worker}");
    }
    assert_eq!(served.len() as u64, n);
    assert_eq!(stats.total.policy_errors, 0);
}

/// Synergy's decisions, except that kind 9 is rejected with status 429 and kind 8 is placed on
/// a worker that does not exist.
struct Picky(Synergy);

impl<R, T> Scheduler<R, T> for Picky {
    fn name(&self) -> &str {
        "picky"
    }
    fn arrive(&self, a: &ArrivalInfo, load: &dyn LoadView) -> Placement {
        match a.kind {
            9 => Placement::Reject(429),
            8 => Placement::Worker(99),
            _ => <Synergy as Scheduler<R, T>>::arrive(&self.0, a, load),
        }
    }
    fn select(&self, q: &mut dyn Queues<R, T>) -> Option<Selected<R, T>> {
        self.0.select(q)
    }
    fn preemptible(&self) -> Preemptible {
        <Synergy as Scheduler<R, T>>::preemptible(&self.0)
    }
    fn quantum_ns(&self, ema: u64, factor: f64) -> u64 {
        <Synergy as Scheduler<R, T>>::quantum_ns(&self.0, ema, factor)
    }
    fn work_waiting(&self, w: usize, load: &dyn LoadView) -> bool {
        <Synergy as Scheduler<R, T>>::work_waiting(&self.0, w, load)
    }
    fn others_may_take(&self, w: usize, load: &dyn LoadView) -> bool {
        <Synergy as Scheduler<R, T>>::others_may_take(&self.0, w, load)
    }
    fn requeue(&self, _w: usize, _kind: u32) -> RequeueTo {
        RequeueTo::Central(5)
    }
}

#[test]
fn a_policys_rejects_are_answered_and_its_invalid_choices_counted_not_lost() {
    let _serial = common::serial();
    let cfg = common::one_worker();
    let transport = Arc::new(ChannelTransport::new(cfg.workers, 64, 64));
    let served = Served::default();
    let picky = Arc::new(Picky(Synergy { steal_threshold: 0 }));
    let rt = Runtime::builder(&cfg)
        .transport(transport.clone())
        .handler(recording_handler(served.clone()))
        .scheduler(picky)
        .start()
        .expect("runtime starts");
    let kinds = [SHORT, 9, 8, 9, SHORT, 8];
    for (id, kind) in kinds.iter().enumerate() {
        transport.submit(0, Request { id: id as u64, kind: *kind, service_ns: 1_000, ..Request::default() }).unwrap();
    }
    let mut replies = Vec::new();
    common::wait_until("every request answered", Duration::from_secs(20), || {
        replies.extend(transport.take_replies());
        replies.len() == kinds.len()
    });
    transport.close();
    let stats = rt.shutdown();
    let mut status: Vec<(u64, u32)> = replies.iter().map(|r| (r.id, r.status)).collect();
    status.sort_unstable();
    assert_eq!(status, vec![(0, 0), (1, 429), (2, 0), (3, 429), (4, 0), (5, 0)]);
    assert_eq!(served.lock().unwrap().len(), 4, "the rejected requests never ran");
    assert_eq!((stats.total.rejected, stats.total.completed), (2, 6));
    assert_eq!(stats.total.policy_errors, 2, "two placements on worker 99, kept local");
}

#[test]
fn a_user_policy_cannot_ask_for_shinjukus_dispatchers() {
    struct Dispatched;
    impl<R, T> Scheduler<R, T> for Dispatched {
        fn name(&self) -> &str {
            "dispatched"
        }
        fn dispatched(&self) -> bool {
            true
        }
        fn arrive(&self, _a: &ArrivalInfo, _l: &dyn LoadView) -> Placement {
            Placement::Local
        }
        fn select(&self, q: &mut dyn Queues<R, T>) -> Option<Selected<R, T>> {
            q.pop_mailbox()
        }
        fn preemptible(&self) -> Preemptible {
            Preemptible::Never
        }
        fn quantum_ns(&self, _: u64, _: f64) -> u64 {
            u64::MAX
        }
        fn work_waiting(&self, _: usize, _: &dyn LoadView) -> bool {
            false
        }
        fn others_may_take(&self, _: usize, _: &dyn LoadView) -> bool {
            false
        }
        fn requeue(&self, _: usize, _: u32) -> RequeueTo {
            RequeueTo::Dispatcher
        }
    }
    let _serial = common::serial();
    let cfg = Config { ..common::one_worker() };
    let transport = Arc::new(ChannelTransport::new(cfg.workers, 4, 4));
    match Runtime::builder(&cfg).transport(transport).handler(|_: Request| {}).scheduler(Arc::new(Dispatched)).start() {
        Err(StartError::Config(e)) => assert!(e.to_string().contains("dispatchers"), "{e}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a user policy started with dispatchers nobody runs"),
    }
}
