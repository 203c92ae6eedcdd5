//! Shinjuku's dispatcher in the real runtime (`--policy shinjuku`, `runtime/src/dispatcher.rs`):
//! where a preempted request goes back (tail or head) and which queue MQ serves, seen in the order
//! of the replies and in how often the long request was preempted. One worker; a long request runs
//! while a batch of requests arrives, all in one poll of the dispatcher (`HeldTransport`), so the
//! dispatcher decides from the whole batch.

mod common;

use common::{spin_handler, LONG, SHORT};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use synergy::config::ShinjukuQueues;
use synergy::request::{status, Reply};
use synergy::transport::channel::ChannelTransport;
use synergy::transport::Transport;
use synergy::{Config, MigratableHandler, Request, Runtime};
use synergy_policy::shinjuku::PreemptedTo;
use synergy_policy::system::SchedPolicy;

/// A channel transport whose deliveries can be held back, so that a batch submitted while held
/// reaches the dispatcher in one poll.
struct HeldTransport {
    inner: ChannelTransport,
    hold: AtomicBool,
    polling: AtomicUsize,
}

impl HeldTransport {
    /// A transport for one worker, not holding.
    fn one_worker() -> HeldTransport {
        HeldTransport {
            inner: ChannelTransport::new(1, 64, 64),
            hold: AtomicBool::new(false),
            polling: AtomicUsize::new(0),
        }
    }

    /// Submits `batch` to worker 0 so that one poll takes all of it.
    fn submit_at_once(&self, batch: &[Request]) {
        self.hold.store(true, Ordering::SeqCst);
        // A poll that began before the hold may still be taking requests: wait it out.
        while self.polling.load(Ordering::SeqCst) > 0 {
            std::hint::spin_loop();
        }
        for r in batch {
            self.inner.submit(0, r.clone()).unwrap();
        }
        self.hold.store(false, Ordering::SeqCst);
    }
}

impl Transport for HeldTransport {
    fn poll(&self, worker: usize, out: &mut Vec<Request>, max: usize) {
        self.polling.fetch_add(1, Ordering::SeqCst);
        if !self.hold.load(Ordering::SeqCst) {
            self.inner.poll(worker, out, max);
        }
        self.polling.fetch_sub(1, Ordering::SeqCst);
    }
    fn backlog(&self, worker: usize) -> usize {
        self.inner.backlog(worker)
    }
    fn reply(&self, worker: usize, reply: Reply) {
        self.inner.reply(worker, reply)
    }
    fn finished(&self) -> bool {
        self.inner.finished()
    }
}

const L0: u64 = 100;
const L1: u64 = 101;
/// How long L0 waits for the batch to be answered before it gives up (and the test fails).
const L0_BOUND: Duration = Duration::from_secs(30);

/// L0 (a long request) runs until `others` other requests were answered, so it can finish first
/// only if it is never preempted; every other request spins for its `service_ns`.
fn handler(started: Arc<AtomicBool>, answered: Arc<AtomicUsize>, others: usize) -> impl Fn(Request) + Send + Sync {
    move |req: Request| {
        if req.id == L0 {
            started.store(true, Ordering::Release);
            let t0 = std::time::Instant::now();
            while answered.load(Ordering::Acquire) < others && t0.elapsed() < L0_BOUND {
                synergy::clock::spin_for(1_000);
            }
            synergy::send(Reply::to(&req)).unwrap();
        } else {
            synergy::clock::spin_for(req.service_ns);
            synergy::send(Reply::to(&req)).unwrap();
            answered.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Runs long request L0, then while it runs delivers `batch` at once; returns the replies in
/// completion order.
fn run(cfg: Config, batch: &[Request]) -> Vec<Reply> {
    let _serial = common::serial();
    let transport = Arc::new(HeldTransport::one_worker());
    let (started, answered) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    // SAFETY: the handler spins on the clock and touches atomics only: no thread-local storage,
    // no OS lock.
    let h = unsafe { MigratableHandler::new(Arc::new(handler(started.clone(), answered, batch.len()))) };
    let rt = Runtime::builder(&cfg).transport(transport.clone()).migratable_handler(h).start().expect("runtime starts");
    transport.inner.submit(0, Request { id: L0, kind: LONG, ..Request::default() }).unwrap();
    common::wait_until("the long request started", Duration::from_secs(10), || started.load(Ordering::Acquire));
    transport.submit_at_once(batch);
    let replies = common::wait_for_replies(&transport.inner, batch.len() + 1, Duration::from_secs(60));
    transport.inner.close();
    let stats = rt.shutdown();
    assert_eq!(stats.total.completed, batch.len() as u64 + 1, "{stats:?}");
    assert_eq!(stats.total.preemptions, stats.total.resumes, "every preempted request resumed: {stats:?}");
    replies
}

fn shinjuku(queues: ShinjukuQueues, preempted: PreemptedTo) -> Config {
    Config {
        policy: SchedPolicy::Shinjuku,
        shinjuku_queues: queues,
        shinjuku_preempted: preempted,
        // MQ: shorts (kind 0) may wait 10 µs, longs (kind 1) 1 s.
        shinjuku_slo_us: vec![10, 1_000_000],
        ..common::one_worker()
    }
}

fn shorts(n: u64) -> Vec<Request> {
    (1..=n).map(|id| Request { id, kind: SHORT, service_ns: 0, ..Request::default() }).collect()
}

fn order(replies: &[Reply]) -> Vec<u64> {
    replies.iter().map(|r| r.id).collect()
}

fn preemptions_of(replies: &[Reply], id: u64) -> u32 {
    replies.iter().find(|r| r.id == id).unwrap().preemptions
}

/// SQ, preempted to the tail: L0 is preempted once, when the shorts arrive, and finishes after
/// all of them without being preempted again (it is behind them). To the head: it runs again
/// after each short and is preempted for the next one, ten times in all. In both, the shorts
/// finish first, in order.
#[test]
fn sq_puts_the_preempted_request_at_the_tail_or_the_head() {
    let batch = shorts(10);
    let expected: Vec<u64> = (1..=10).chain([L0]).collect();
    let tail = run(shinjuku(ShinjukuQueues::Sq, PreemptedTo::Tail), &batch);
    assert_eq!(order(&tail), expected, "tail");
    let head = run(shinjuku(ShinjukuQueues::Sq, PreemptedTo::Head), &batch);
    assert_eq!(order(&head), expected, "head");
    // A short request can itself be preempted if the machine stalls its worker for a quantum; it
    // then goes to the tail behind L0, and L0 is preempted once more for it. So with the tail
    // rule L0 is preempted once plus once per preemption of a short, however busy the machine
    // (issue 38, C6: the bound used to be a fixed 2).
    let short_preemptions: u32 = tail.iter().filter(|r| r.id != L0).map(|r| r.preemptions).sum();
    assert!(
        preemptions_of(&tail, L0) <= 1 + short_preemptions,
        "tail: L0 preempted {} times, the shorts {short_preemptions} times",
        preemptions_of(&tail, L0)
    );
    assert!(preemptions_of(&head, L0) >= 10, "head: L0 preempted {} times", preemptions_of(&head, L0));
}

/// L1 (a long kind, but instant) arrives just before ten shorts. SQ serves it first (FIFO); MQ
/// serves the shorts first (their 10 µs SLO makes any wait a larger share than L1's of 1 s), and
/// L1 before L0, which went back to the head of the long queue and was preempted for L1.
#[test]
fn mq_serves_the_queue_furthest_into_its_slo() {
    let mut batch = vec![Request { id: L1, kind: LONG, service_ns: 0, ..Request::default() }];
    batch.extend(shorts(10));
    let sq = run(shinjuku(ShinjukuQueues::Sq, PreemptedTo::Tail), &batch);
    let expected_sq: Vec<u64> = [L1].into_iter().chain(1..=10).chain([L0]).collect();
    assert_eq!(order(&sq), expected_sq, "SQ is FIFO");
    let mq = run(shinjuku(ShinjukuQueues::Mq, PreemptedTo::Head), &batch);
    let expected_mq: Vec<u64> = (1..=10).chain([L1, L0]).collect();
    assert_eq!(order(&mq), expected_mq, "MQ: shorts first, then the long queue from its head");
}

/// Two dispatchers, each owning one worker and its transport queue: every request is answered
/// once, by a worker of the dispatcher its queue belongs to.
#[test]
fn two_dispatchers_serve_their_own_workers() {
    let _serial = common::serial();
    let cfg = Config { policy: SchedPolicy::Shinjuku, dispatchers: 2, ..common::two_workers() };
    let transport = Arc::new(ChannelTransport::new(2, 1024, 1024));
    // SAFETY: as in `run`.
    let h = unsafe { MigratableHandler::new(Arc::new(spin_handler(Arc::default()))) };
    let rt = Runtime::builder(&cfg).transport(transport.clone()).migratable_handler(h).start().expect("runtime starts");
    for id in 0..400u64 {
        let (kind, service_ns) = if id % 10 == 0 { (LONG, 100_000) } else { (SHORT, 1_000) };
        transport.submit((id % 2) as usize, Request { id, kind, service_ns, ..Request::default() }).unwrap();
    }
    let replies = common::wait_for_replies(&transport, 400, Duration::from_secs(60));
    transport.close();
    let stats = rt.shutdown();
    let mut ids: Vec<u64> = replies.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..400).collect::<Vec<_>>(), "{stats:?}");
    for r in &replies {
        assert_eq!(u64::from(r.worker), r.id % 2, "request {} crossed to the other dispatcher's worker", r.id);
    }
}

/// A long request runs until a short one is answered; both reach the dispatcher in one poll, the
/// long one first, so the short one waits from the long one's start. The dispatcher may preempt
/// the long request only after the configured quantum, and the worker arms its deadline with the
/// same quantum: both take it from the configuration (`Config::shinjuku`, which the dispatcher
/// tests with, and `Config::builtin_params`, which the workers arm with), checked exactly here.
#[test]
fn the_configured_quantum_passes_before_a_preemption() {
    const QUANTUM_US: u64 = 1_000;
    let _serial = common::serial();
    let cfg = Config { shinjuku_quantum_us: QUANTUM_US, ..shinjuku(ShinjukuQueues::Sq, PreemptedTo::Tail) };
    assert_eq!(cfg.shinjuku().quantum_ns, QUANTUM_US * 1_000, "the dispatcher's quantum");
    assert_eq!(cfg.builtin_params().shinjuku_quantum_ns, QUANTUM_US * 1_000, "the workers' arming quantum");
    let transport = Arc::new(HeldTransport::one_worker());
    let gate = Arc::new(common::Gate::default());
    // Runtime-clock times (ns) of the long request's start and the short one's end; 0 until then.
    let long_started_at = Arc::new(AtomicU64::new(0));
    let short_done_at = Arc::new(AtomicU64::new(0));
    let inner = spin_handler(gate);
    let (started, done) = (long_started_at.clone(), short_done_at.clone());
    let serve = move |req: Request| {
        if req.kind == LONG {
            let _ = started.compare_exchange(0, synergy::clock::now_ns(), Ordering::AcqRel, Ordering::Acquire);
        }
        let kind = req.kind;
        inner(req);
        if kind == SHORT {
            let _ = done.compare_exchange(0, synergy::clock::now_ns(), Ordering::AcqRel, Ordering::Acquire);
        }
    };
    // SAFETY: the handler spins on the clock and touches atomics only: no thread-local storage,
    // no OS lock.
    let h = unsafe { MigratableHandler::new(Arc::new(serve)) };
    let rt = Runtime::builder(&cfg).transport(transport.clone()).migratable_handler(h).start().expect("runtime starts");
    transport.submit_at_once(&[
        Request { id: 1, kind: LONG, service_ns: common::UNTIL_SHORT_DONE, ..Request::default() },
        Request { id: 2, kind: SHORT, service_ns: 0, ..Request::default() },
    ]);
    // Sleep while waiting: a spinning test thread would take the dispatcher's CPU on a 2-CPU
    // host, delaying its decisions by a scheduler tick.
    let t = std::time::Instant::now();
    while short_done_at.load(Ordering::Acquire) == 0 {
        assert!(t.elapsed() < Duration::from_secs(30), "the short request was never served");
        std::thread::sleep(Duration::from_micros(200));
    }
    let replies = common::wait_for_replies(&transport.inner, 2, Duration::from_secs(30));
    transport.inner.close();
    let stats = rt.shutdown();
    assert_eq!(replies.len(), 2, "{stats:?}");
    assert!(preemptions_of(&replies, 1) >= 1, "the long request ran until the short one was answered: {stats:?}");
    let (t0, t1) = (long_started_at.load(Ordering::Acquire), short_done_at.load(Ordering::Acquire));
    assert!(t0 > 0 && t1 > t0, "both were stamped: {t0} {t1}");
    // The worker arms the deadline before the handler stamps t0, so a worker descheduled between
    // the two can see the quantum pass before t0: the gap is reported, not asserted (issue 38,
    // C10). The rule itself is `policy::shinjuku::preempt_due`, unit-tested on a fake clock, and
    // the quantum both sides use is the configured one (asserted above).
    eprintln!(
        "configured quantum: the short request was served {} µs after the long one started ({QUANTUM_US} µs quantum)",
        (t1 - t0) / 1_000
    );
}

/// Configurations Shinjuku cannot run are refused with a reason.
/// Issue 39, item 9: a dispatcher's queues are bounded. The only worker is held by a request that
/// cannot be preempted while 200 shorts arrive: the dispatcher takes 8 (its limit) and turns the
/// other 192 away, which the worker answers REJECTED once free. Before the bound, all 200 were
/// queued (the high-water mark was 200 and nothing was rejected).
#[test]
fn a_dispatcher_at_its_queue_limit_rejects_new_requests_and_holds_no_more() {
    const LIMIT: usize = 8;
    const SHORTS: u64 = 200;
    let _serial = common::serial();
    let cfg = Config { shinjuku_queue_limit: LIMIT, ..shinjuku(ShinjukuQueues::Sq, PreemptedTo::Tail) };
    let transport = Arc::new(ChannelTransport::new(1, 1024, 1024));
    let (started, release) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (s, r) = (started.clone(), release.clone());
    let h = move |req: Request| {
        if req.id == L0 {
            s.store(true, Ordering::Release);
            // Not preemptible: the dispatcher's interrupts are deferred until the release.
            synergy::preempt::without_preemption(|| {
                let t0 = std::time::Instant::now();
                while !r.load(Ordering::Acquire) && t0.elapsed() < L0_BOUND {
                    std::hint::spin_loop();
                }
            });
        }
        synergy::send(Reply::to(&req)).unwrap();
    };
    // SAFETY: the handler touches atomics and the clock only: no thread-local storage, no OS lock.
    let h = unsafe { MigratableHandler::new(Arc::new(h)) };
    let rt = Runtime::builder(&cfg).transport(transport.clone()).migratable_handler(h).start().expect("runtime starts");
    transport.submit(0, Request { id: L0, kind: LONG, ..Request::default() }).unwrap();
    common::wait_until("the long request started", Duration::from_secs(10), || started.load(Ordering::Acquire));
    // Ids 1001.. (L0 is 100).
    for id in 1_001..=1_000 + SHORTS {
        transport.submit(0, Request { id, kind: SHORT, ..Request::default() }).unwrap();
    }
    let rejected = SHORTS - LIMIT as u64;
    common::wait_until("the dispatcher turned the excess away", Duration::from_secs(60), || {
        rt.stats().timer.dispatcher_rejects == rejected
    });
    release.store(true, Ordering::Release);
    let replies = common::wait_for_replies(&transport, SHORTS as usize + 1, Duration::from_secs(60));
    transport.close();
    let stats = rt.shutdown();
    let rejects: Vec<u64> = replies.iter().filter(|r| r.status == status::REJECTED).map(|r| r.id).collect();
    assert_eq!(
        rejects,
        (1_001 + LIMIT as u64..=1_000 + SHORTS).collect::<Vec<_>>(),
        "the newest are turned away, in order"
    );
    assert!(replies.iter().filter(|r| r.status != status::REJECTED).all(|r| r.status == status::OK));
    assert_eq!((stats.total.rejected, stats.timer.dispatcher_rejects), (rejected, rejected), "{stats:?}");
    assert_eq!(stats.total.completed, SHORTS + 1, "{stats:?}");
    // The queues' own high-water mark: the limit, plus at most one unit per worker of the block.
    assert!(stats.timer.dispatcher_queue_max <= LIMIT as u64 + 1, "{stats:?}");
    assert!(stats.timer.dispatcher_queue_max >= LIMIT as u64, "the queues filled to the limit: {stats:?}");
}

#[test]
fn impossible_shinjuku_configurations_are_refused() {
    let allowed = synergy::cpu::allowed_cpus();
    let base = Config { policy: SchedPolicy::Shinjuku, ..Config::default() };
    let cases = [
        (Config { dispatchers: 0, ..base.clone() }, "dispatchers"),
        (Config { dispatchers: 2, ..base.clone() }, "dispatchers"),
        (Config { shinjuku_quantum_us: 0, ..base.clone() }, "shinjuku_quantum_us"),
        (Config { shinjuku_quantum_us: 1_001, ..base.clone() }, "shinjuku_quantum_us"),
        (Config { shinjuku_queues: ShinjukuQueues::Mq, ..base.clone() }, "shinjuku_slo_us"),
        (
            Config { shinjuku_queues: ShinjukuQueues::Mq, shinjuku_slo_us: vec![10, 0], ..base.clone() },
            "shinjuku_slo_us",
        ),
        (Config { preempt: synergy::PreemptMode::Ci, ..base.clone() }, "interrupt"),
        (Config { idle: synergy::config::IdleMode::Park, ..base.clone() }, "spin"),
        (Config { overload: synergy::config::OverloadMode::Credits, ..base.clone() }, "overload"),
    ];
    for (cfg, what) in cases {
        let e = cfg.validate(&allowed).expect_err(what);
        assert!(e.0.contains(what), "{what}: {e}");
    }
}
