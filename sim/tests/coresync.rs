//! The sessions-credits-cores model (issue 18): queueing theory where it applies, conservation of
//! requests, and the controllers' effects the CoreSync and Hermes papers describe.

use synergy_sim::coresync::figures::{self, FigureParams};
use synergy_sim::coresync::{engine, Allocator, Outcome, Phase, Service, Setup};

fn paper(allocator: Allocator, load: f64, sessions: usize) -> Outcome {
    let mut s = Setup::coresync_paper(allocator, load, 30_000_000, 1);
    s.sessions = sessions;
    engine::run(&s)
}

#[test]
fn one_static_core_without_credits_is_an_m_m_1_queue() {
    // Exponential 10 µs service at 50 k req/s (ρ = 0.5): the sojourn is exponential with mean
    // 1/(μ − λ) = 20 µs, so its p99 is 20·ln 100 = 92.1 µs; the client adds the 10 µs RTT.
    let s = Setup {
        cores: 1,
        sessions: 10,
        one_way_ns: 5_000,
        service: Service::Exponential { mean_ns: 10_000 },
        phases: vec![Phase { duration_ns: 2_000_000_000, rps: 50_000.0 }],
        warmup_ns: 100_000_000,
        allocator: Allocator::Static,
        poll_period_ns: 2_000,
        wake_delay_ns: 5_000,
        wake_ns: 5_000,
        credits: None,
        timeline_ns: 0,
        seed: 3,
    };
    let o = engine::run(&s);
    let p99 = o.server_p99_ns as f64;
    assert!((p99 / 92_103.0 - 1.0).abs() < 0.08, "server p99 {p99} ns, M/M/1 says 92,103");
    let p50 = o.p50_ns as f64;
    assert!(((p50 - 10_000.0) / 13_863.0 - 1.0).abs() < 0.08, "client p50 {p50} ns: RTT + 20·ln 2 µs");
    assert!((o.goodput_rps / 50_000.0 - 1.0).abs() < 0.02, "{}", o.goodput_rps);
    assert_eq!((o.cores_in_use, o.parks, o.rejected), (1.0, 0, 0));
}

#[test]
fn nothing_is_lost_and_the_pool_keeps_a_credit_per_session_under_overload() {
    for a in [Allocator::CoreSync { r: 50.0 }, Allocator::Shenango, Allocator::UTIL_RANGE] {
        let o = paper(a, 1.5, 100);
        assert_eq!(o.sent_total, o.replies_total + o.outstanding_at_end, "{}", o.allocator);
        // Each request in flight holds one of its session's credits. Clients have work waiting
        // (below), so every session uses its whole grant (at least 1); and a grant was handed
        // out from a pool that one control period can at most halve (`CreditPool::update`).
        assert!(o.outstanding_at_end >= 100, "every session has a request in flight: {o:?}");
        assert!(
            o.outstanding_at_end as f64 <= 2.0 * o.final_credits,
            "{} in flight, pool {}",
            o.outstanding_at_end,
            o.final_credits
        );
        assert!(o.final_credits >= 100.0, "{}", o.final_credits);
        // 1.5x offered, so half a capacity's worth waits at the clients: credits, not the
        // server's queue, hold it back; the cores stay busy.
        assert!(o.waiting_at_clients > 10_000, "{}", o.waiting_at_clients);
        assert!(o.goodput_rps > 0.97 * 1.6e6, "{}", o.goodput_rps);
        assert!(o.p99_ns < 2 * 160_000 + 10_000, "admitted requests stay near D_drop: {}", o.p99_ns);
    }
}

#[test]
fn the_aqm_rejects_a_burst_the_overcommitted_credits_let_through() {
    // 100 ms at 0.2x: the pool grows by α per period to about 11 credits per session. Then
    // 3x capacity for 5 ms: every session sends its 11 at once, the queue outgrows D_drop and
    // the AQM answers the stale requests with rejects. After the burst, nothing arrives: every
    // request is answered one way or the other.
    let mut s = Setup::coresync_paper(Allocator::Static, 0.2, 5_000_000, 1);
    s.phases = vec![
        Phase { duration_ns: 100_000_000, rps: 0.32e6 },
        Phase { duration_ns: 5_000_000, rps: 4.8e6 },
        Phase { duration_ns: 40_000_000, rps: 0.0 },
    ];
    s.warmup_ns = 100_000_000;
    let o = engine::run(&s);
    assert!(o.rejected > 100, "{o:?}");
    assert_eq!(o.waiting_at_clients, 0);
    assert_eq!(o.sent_total, o.replies_total, "everything answered after the burst: {o:?}");
    assert!(o.p99_ns < 160_000 + 2 * 50_000, "admitted requests waited at most D_drop (+ service, RTT): {}", o.p99_ns);
}

#[test]
fn drained_sessions_veto_parking_under_overload_where_shenango_parks() {
    // 20 sessions: too few credits to fill 16 cores' queues at first, so cores go idle and the
    // uncoupled rule parks them; CoreSync sees sessions with no credit left and keeps them.
    let coupled = paper(Allocator::CoreSync { r: 50.0 }, 1.3, 20);
    let uncoupled = paper(Allocator::Shenango, 1.3, 20);
    assert!(coupled.drained_vetoes > 100, "{coupled:?}");
    assert!(coupled.parks * 10 < uncoupled.parks, "{} vs {}", coupled.parks, uncoupled.parks);
    assert_eq!(uncoupled.drained_vetoes, 0);
}

#[test]
fn parking_saves_cores_at_low_load_and_a_smaller_r_trades_them_for_latency() {
    let spin = paper(Allocator::Static, 0.2, 100);
    let park = paper(Allocator::Shenango, 0.2, 100);
    assert!(park.cores_in_use < 6.0, "{}", park.cores_in_use);
    assert!((park.p99_ns as f64) < 1.3 * spin.p99_ns as f64, "{} vs {}", park.p99_ns, spin.p99_ns);
    let r10 = paper(Allocator::CoreSync { r: 10.0 }, 0.5, 100);
    let r100 = paper(Allocator::CoreSync { r: 100.0 }, 0.5, 100);
    assert!(r10.cores_in_use > r100.cores_in_use + 1.0, "{} vs {}", r10.cores_in_use, r100.cores_in_use);
    assert!(r10.p99_ns <= r100.p99_ns, "{} vs {}", r10.p99_ns, r100.p99_ns);
    assert!(r10.withdrawals > 0 && r100.withdrawals <= r10.withdrawals);
}

#[test]
fn the_burst_test_grants_cores_for_the_high_rate_and_gives_them_back() {
    let p = FigureParams {
        duration_ns: 10_000_000,
        seeds: vec![1],
        burst_phase_ns: 20_000_000,
        burst_cycles: 2,
        burst_window_ns: 1_000_000,
    };
    let fast = engine::run(&figures::burst_setup(Allocator::Shenango, 5_000, &p));
    let slow = engine::run(&figures::burst_setup(Allocator::Shenango, figures::MEASURED_WAKE_NS, &p));
    assert_eq!(fast.timeline.len(), 80);
    let cores = |o: &Outcome, high: bool| {
        let w: Vec<f64> = o
            .timeline
            .iter()
            .filter(|w| (w.offered_rps > 1e6) == high && w.start_ns % 20_000_000 >= 2_000_000)
            .map(|w| w.cores_in_use)
            .collect();
        w.iter().sum::<f64>() / w.len() as f64
    };
    // 5 M req/s of 1 µs is 5 cores' work; 100 k is a tenth of one.
    assert!(cores(&fast, true) > 5.0 && cores(&fast, false) < 2.0, "{} {}", cores(&fast, true), cores(&fast, false));
    assert!(fast.timeline.iter().all(|w| w.completed > 0));
    let peak = |o: &Outcome| o.timeline.iter().map(|w| w.server_p999_ns).max().unwrap_or(0);
    assert!(peak(&slow) > peak(&fast), "a slower wake-up costs tail: {} vs {}", peak(&slow), peak(&fast));
}

#[test]
fn the_figures_normalise_to_coresync_and_draw_every_panel() {
    let p = FigureParams {
        duration_ns: 5_000_000,
        seeds: vec![1, 2],
        burst_phase_ns: 5_000_000,
        burst_cycles: 1,
        burst_window_ns: 1_000_000,
    };
    let r = figures::run(&p);
    assert_eq!(r.table1.len(), 12);
    for load in figures::TABLE1_LOADS {
        // Every allocator's entry is its goodput over CoreSync's, seed by seed, then averaged.
        // The runs are deterministic, so the test reruns each point itself.
        let goodput =
            |a: Allocator, seed: u64| engine::run(&Setup::coresync_paper(a, load, p.duration_ns, seed)).goodput_rps;
        let base = Allocator::CoreSync { r: figures::PAPER_R };
        assert_eq!(r.normalised(base, load), 1.0);
        for a in [Allocator::Shenango, Allocator::UTIL_RANGE, Allocator::Static] {
            let row = r.table1.iter().find(|row| row.allocator == a.name() && row.load == load).unwrap();
            let expect: Vec<f64> = p.seeds.iter().map(|&seed| goodput(a, seed) / goodput(base, seed)).collect();
            assert!(expect.iter().all(|v| v.is_finite() && *v > 0.0), "{expect:?}");
            assert_eq!(row.normalised_per_seed, expect, "{} at {load}", a.name());
            let mean = expect.iter().sum::<f64>() / expect.len() as f64;
            assert!((r.normalised(a, load) - mean).abs() < 1e-12, "{} at {load}", a.name());
        }
    }
    assert_eq!(r.fig3.len(), 3 * 4 * 2);
    assert_eq!(r.fig7.len(), 3 * 4 * 2);
    assert_eq!(r.burst.len(), 3);
    let svg = figures::svg(&r);
    assert_eq!(svg.matches("<polyline").count(), 4 + 4 + 4 + 4 + 3 + 3);
    let csv = figures::csv(&r);
    assert_eq!(csv.lines().count(), 1 + 12 + 24 + 24 + 3 * 10);
    assert!(figures::table(&r).contains("Table I"));
}
