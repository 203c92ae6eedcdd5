//! CoreSync's coupling of parking with overload control (`--idle park --overload credits
//! --coupling coresync`, issue 18) in the running runtime: a drained session keeps idle workers
//! from parking until its request is answered, and a worker that would park while clients hold
//! many unused credits withdraws credits first and still parks once they are no longer issued.

mod common;

use common::{wait_for_replies, wait_until, SHORT};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synergy::config::{Coupling, IdleMode, OverloadMode};
use synergy::request::status;
use synergy::transport::channel::ChannelTransport;
use synergy::{clock, send, Config, Reply, Request, Runtime};

/// Requests of this kind spin until `release` is set (bounded, so a failing test ends).
const HELD: u32 = 7;

fn coupled(r: f64, alpha: f64) -> Config {
    Config {
        idle: IdleMode::Park,
        overload: OverloadMode::Credits,
        // No reject in these tests: D_drop 10 s. And the pool grows in every control period,
        // however long a busy machine keeps a request waiting: D_t 1 s (issue 38: with the
        // default target, under stress-ng the measured delay stayed above it, the pool never
        // grew past one credit, and no worker had a surplus to withdraw in 200 rounds).
        drop_delay_us: 10_000_000,
        target_delay_us: 1_000_000,
        credit_alpha: alpha,
        coupling: Coupling::CoreSync,
        coresync_r: r,
        ..common::two_workers()
    }
}

fn handler(release: Arc<AtomicBool>) -> impl Fn(Request) + Send + Sync + 'static {
    move |req: Request| {
        if req.kind == HELD {
            let t0 = Instant::now();
            while !release.load(Ordering::Acquire) && t0.elapsed() < Duration::from_secs(30) {
                clock::spin_for(1_000);
            }
        } else {
            clock::spin_for(req.service_ns);
        }
        send(Reply::to(&req)).unwrap();
    }
}

fn parks(rt: &Runtime, w: usize) -> u64 {
    rt.stats().workers[w].parks
}

#[test]
fn a_drained_session_keeps_idle_workers_from_parking_until_it_is_answered() {
    let _g = common::serial();
    let t = Arc::new(ChannelTransport::new(2, 64, 64));
    let release = Arc::new(AtomicBool::new(false));
    let rt =
        Runtime::builder(&coupled(50.0, 0.001)).transport(t.clone()).handler(handler(release.clone())).start().unwrap();
    wait_until("both workers park (no session yet)", Duration::from_secs(10), || {
        rt.worker_parked(0) && rt.worker_parked(1)
    });
    // Session 5's one credit is used by a request the handler holds: the session is drained.
    t.submit(0, Request { id: 1, kind: HELD, flow: 5, ..Request::default() }).unwrap();
    let coupling = |rt: &Runtime| rt.stats().overload.and_then(|o| o.coupling).expect("the coupling runs");
    wait_until("the tally sees session 5 drained", Duration::from_secs(10), || coupling(&rt).drained == 1);
    // Worker 1 serves a request of another session, then idles: the gate must veto its park.
    let vetoes = coupling(&rt).drained_vetoes;
    let before = parks(&rt, 1);
    t.submit(1, Request { id: 2, kind: SHORT, flow: 6, service_ns: 1_000, ..Request::default() }).unwrap();
    assert_eq!(wait_for_replies(&t, 1, Duration::from_secs(10))[0].id, 2);
    wait_until("worker 1's park is vetoed", Duration::from_secs(10), || coupling(&rt).drained_vetoes > vetoes);
    // A thousand control periods later it still polls.
    let periods = rt.stats().timer.control_periods;
    wait_until("1000 control periods", Duration::from_secs(30), || rt.stats().timer.control_periods > periods + 1000);
    assert_eq!(parks(&rt, 1), before, "worker 1 parked while session 5 was drained");
    assert!(!rt.worker_parked(1));
    // Answered: the session has its credit back, both workers park.
    release.store(true, Ordering::Release);
    let r = wait_for_replies(&t, 1, Duration::from_secs(10));
    assert_eq!((r[0].id, r[0].status), (1, status::OK));
    wait_until("both workers park once nothing is drained", Duration::from_secs(10), || {
        rt.worker_parked(0) && rt.worker_parked(1) && parks(&rt, 1) > before
    });
    t.close();
    let s = rt.shutdown();
    assert_eq!(s.total.completed, 2);
}

#[test]
fn a_worker_withdraws_surplus_credits_before_it_parks_and_the_pool_gets_them_back() {
    let _g = common::serial();
    let t = Arc::new(ChannelTransport::new(2, 64, 64));
    // R = 0: any credit issued beyond one per session is withdrawn before a park. α = 1 credit
    // per session per control period: the pool grows between requests.
    let rt = Runtime::builder(&coupled(0.0, 1.0))
        .transport(t.clone())
        .handler(handler(Arc::new(AtomicBool::new(false))))
        .start()
        .unwrap();
    let coupling = |rt: &Runtime| rt.stats().overload.and_then(|o| o.coupling).expect("the coupling runs");
    // One session, one request at a time, until both workers are parked and one of them holds a
    // withdrawal (it parks once the issued credits fall: no reply revokes them while the session
    // is idle, but an idle session leaves the tally after SESSION_IDLE_NS).
    let mut id = 0;
    let held = loop {
        id += 1;
        assert!(id < 100_000, "watchdog: no worker parked holding a withdrawal: {:?}", coupling(&rt));
        t.submit(0, Request { id, kind: SHORT, flow: 9, service_ns: 2_000, ..Request::default() }).unwrap();
        let r = wait_for_replies(&t, 1, Duration::from_secs(10));
        assert_eq!((r[0].id, r[0].status), (id, status::OK));
        wait_until("both workers park", Duration::from_secs(10), || rt.worker_parked(0) && rt.worker_parked(1));
        let c = coupling(&rt);
        if c.held > 0.0 {
            break c.held;
        }
    };
    // A request for each worker wakes both; the one that withdrew gives its credits back.
    let returned = coupling(&rt).returned;
    for w in 0..2 {
        id += 1;
        t.submit(w, Request { id, kind: SHORT, flow: 9, service_ns: 2_000, ..Request::default() }).unwrap();
    }
    let r = wait_for_replies(&t, 2, Duration::from_secs(10));
    assert!(r.iter().all(|r| r.status == status::OK));
    wait_until("the woken worker's withdrawal is back in the pool", Duration::from_secs(10), || {
        coupling(&rt).returned >= returned + held
    });
    t.close();
    let s = rt.shutdown();
    let c = s.overload.unwrap().coupling.unwrap();
    // (The loop above ran until a withdrawal was held, so `withdrawals > 0` is not re-asserted:
    // issue 38, A6.)
    assert!(
        (c.withdrawn - (c.returned + c.forgotten + c.held)).abs() < 1e-6,
        "every credit withdrawn is given back, forgotten or still held: {c:?}"
    );
}
