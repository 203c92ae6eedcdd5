//! The application policy of `runtime/examples/sita/policy.rs`, unchanged, scheduling simulated
//! workers through the policy API (`synergy_sim::api_policy`): on Syrup's Fig. 6 workload (99.5%
//! 11 µs GETs, 0.5% 700 µs SCANs, 6 workers) it keeps the GETs' p99 under Syrup's 150 µs bound
//! where d-FCFS (the runtime's own, through the same adapter) lets GETs wait behind SCANs.

#[path = "../../runtime/examples/sita/policy.rs"]
mod sita;

use synergy_policy::quantum::ShortEma;
use synergy_policy::system::SchedPolicy;
use synergy_sim::api_policy::ApiPolicy;
use synergy_sim::syrup::{fig6_workload, FIG6_GET_P99_BOUND_NS};
use synergy_sim::{simulate, Overheads};

#[test]
fn sita_keeps_gets_out_from_behind_scans_where_dfcfs_does_not() {
    let (workers, flows) = (6, 50);
    let w = fig6_workload();
    let rps = 0.6 * w.capacity_rps(workers);
    let overheads = Overheads { dispatch_ns: 0, preempt_ns: 0, switch_ns: 0, steal_ns: 0 };
    // SCANs are kind 1; one worker serves them, five serve GETs.
    let policy = Box::new(sita::Sita::new(vec![1], 5));
    let mut s = ApiPolicy::new(policy, workers, ShortEma::default().get(), 2.0).expect("not dispatched");
    let sita = simulate(&mut s, &w, rps, 100_000, workers, flows, overheads, 3);
    let mut d = ApiPolicy::builtin(SchedPolicy::Dfcfs, workers, 0);
    let dfcfs = simulate(&mut d, &w, rps, 100_000, workers, flows, overheads, 3);
    let (get_sita, get_dfcfs) = (sita.classes[0].p99_ns, dfcfs.classes[0].p99_ns);
    eprintln!("GET p99 at 0.6 load: sita {} µs, d-FCFS {} µs", get_sita / 1_000, get_dfcfs / 1_000);
    assert_eq!((sita.completed, dfcfs.completed), (100_000, 100_000));
    assert!(get_sita <= FIG6_GET_P99_BOUND_NS, "SITA's GET p99 {get_sita} ns");
    assert!(get_dfcfs > FIG6_GET_P99_BOUND_NS, "d-FCFS's GET p99 {get_dfcfs} ns: GETs wait behind SCANs");
    assert_eq!((s.rejected(), s.policy_errors()), (0, 0));
}
