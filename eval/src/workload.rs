//! Workloads of the thesis (§6.1): request types with service times and mix — the synthetic ones,
//! and LevelDB's GET/SCAN, whose GETs carry a random key of the preloaded store.

use crate::rng::SplitMix64;
use synergy::request::{Key, Request};

/// One request type: its service time and share of requests; `long` types are the ones the
/// application marks with feedback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestType {
    /// The service time, or with `sd_ns` its mean.
    pub service_ns: u64,
    /// 0: every request of the type takes `service_ns`. Otherwise service times are lognormal
    /// with mean `service_ns` and this standard deviation (each request's own time is in its
    /// `Request::service_ns`; per-type slowdowns divide by the mean).
    pub sd_ns: u64,
    /// The fraction of requests of this type.
    pub share: f64,
    /// Marked long by the application (`feedback_start` around it).
    pub long: bool,
    /// Requests of this type carry a key drawn uniformly from the workload's `keys`.
    pub keyed: bool,
}

/// A workload: request types and their shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Its name (`high`, `extreme`, ...).
    pub name: &'static str,
    /// Its request types; the kind of a request is its type's index.
    pub types: Vec<RequestType>,
    /// Size of the key space keyed types draw from (`key_name(0..keys)`); 0 if none is keyed.
    pub keys: u32,
}

/// Number of entries the thesis preloads LevelDB with (§6.2.2).
pub const LEVELDB_ENTRIES: u32 = 1000;
/// The thesis's mean LevelDB service times (Table 6.1): GET 0.92 µs, SCAN 94 µs.
pub const THESIS_LEVELDB_GET_NS: u64 = 920;
/// The thesis's mean LevelDB SCAN service time (Table 6.1).
pub const THESIS_LEVELDB_SCAN_NS: u64 = 94_000;
/// LevelDB request kind: GET.
pub const LEVELDB_GET: u32 = 0;
/// LevelDB request kind: SCAN.
pub const LEVELDB_SCAN: u32 = 1;

/// The `i`-th key of a key-value workload: `key-000042`. Keys sort in index order.
pub fn key_name(i: u32) -> Key {
    let mut b = *b"key-000000";
    let mut v = i;
    for d in b[4..].iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    Key::new(&b).expect("10 bytes")
}

/// The workloads by name (the thesis's, Shinjuku's and ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadName {
    /// 1 µs / 100 µs, 50% / 50%.
    High,
    /// 0.5 µs / 500 µs, 99.5% / 0.5%.
    Extreme,
    /// 0.5 µs / 2.5 µs / 500 µs, 78% / 19% / 3% (ZippyDB-like).
    Zippydb,
    /// Shinjuku's Fig. 6: 1 µs / 10 µs / 100 µs, a third each.
    Trimodal,
    /// One type, lognormal service times of mean 1 µs and standard deviation 10 µs (heavy
    /// tailed: the application cannot tell a long request in advance, so every one is marked).
    Lognormal,
    /// Shinjuku's RocksDB, Fig. 8a: 99.5% GET (6 µs, the paper's upper bound) / 0.5% SCAN(1000)
    /// (240 µs).
    RocksdbScan1000,
    /// Shinjuku's RocksDB, Fig. 8b/c: 50% GET (6 µs) / 50% SCAN(5000) (1,200 µs).
    RocksdbScan5000,
}

impl WorkloadName {
    /// Every workload.
    pub const ALL: [WorkloadName; 7] = [
        WorkloadName::High,
        WorkloadName::Extreme,
        WorkloadName::Zippydb,
        WorkloadName::Trimodal,
        WorkloadName::Lognormal,
        WorkloadName::RocksdbScan1000,
        WorkloadName::RocksdbScan5000,
    ];

    /// Its name on the command line (`--workload`).
    pub fn name(self) -> &'static str {
        match self {
            WorkloadName::High => "high",
            WorkloadName::Extreme => "extreme",
            WorkloadName::Zippydb => "zippydb",
            WorkloadName::Trimodal => "trimodal",
            WorkloadName::Lognormal => "lognormal",
            WorkloadName::RocksdbScan1000 => "rocksdb-scan1000",
            WorkloadName::RocksdbScan5000 => "rocksdb-scan5000",
        }
    }

    /// The workload spelled `name`.
    pub fn named(name: &str) -> Option<WorkloadName> {
        WorkloadName::ALL.into_iter().find(|w| w.name() == name)
    }
}

impl Workload {
    /// The workload called `name`.
    pub fn named(name: WorkloadName) -> Workload {
        let t = |us: f64, share: f64, long: bool| RequestType {
            service_ns: (us * 1000.0) as u64,
            sd_ns: 0,
            share,
            long,
            keyed: false,
        };
        match name {
            WorkloadName::High => {
                Workload { name: "high", types: vec![t(1.0, 0.5, false), t(100.0, 0.5, true)], keys: 0 }
            }
            WorkloadName::Extreme => {
                Workload { name: "extreme", types: vec![t(0.5, 0.995, false), t(500.0, 0.005, true)], keys: 0 }
            }
            WorkloadName::Zippydb => Workload {
                name: "zippydb",
                types: vec![t(0.5, 0.78, false), t(2.5, 0.19, false), t(500.0, 0.03, true)],
                keys: 0,
            },
            // 10 µs requests are long too: they outlive Shinjuku's 5 µs quantum.
            WorkloadName::Trimodal => Workload {
                name: "trimodal",
                types: vec![t(1.0, 1.0 / 3.0, false), t(10.0, 1.0 / 3.0, true), t(100.0, 1.0 / 3.0, true)],
                keys: 0,
            },
            WorkloadName::Lognormal => {
                Workload { name: "lognormal", types: vec![RequestType { sd_ns: 10_000, ..t(1.0, 1.0, true) }], keys: 0 }
            }
            WorkloadName::RocksdbScan1000 => {
                Workload { name: "rocksdb-scan1000", types: vec![t(6.0, 0.995, false), t(240.0, 0.005, true)], keys: 0 }
            }
            WorkloadName::RocksdbScan5000 => {
                Workload { name: "rocksdb-scan5000", types: vec![t(6.0, 0.5, false), t(1200.0, 0.5, true)], keys: 0 }
            }
        }
    }

    /// LevelDB (Table 6.1): 50% GET of a random key of `entries` (short), 50% SCAN of all entries
    /// (long), with the given mean service times (the thesis's are `THESIS_LEVELDB_*_NS`;
    /// `synergy sweep preempt --app leveldb` measures this machine's). Kinds are `LEVELDB_GET` and
    /// `LEVELDB_SCAN`.
    pub fn leveldb(get_ns: u64, scan_ns: u64, entries: u32) -> Workload {
        Workload {
            name: "leveldb",
            types: vec![
                RequestType { service_ns: get_ns, sd_ns: 0, share: 0.5, long: false, keyed: true },
                RequestType { service_ns: scan_ns, sd_ns: 0, share: 0.5, long: true, keyed: false },
            ],
            keys: entries,
        }
    }

    /// Mean service time in ns.
    pub fn mean_service_ns(&self) -> f64 {
        self.types.iter().map(|t| t.service_ns as f64 * t.share).sum()
    }

    /// Requests per second that would keep `workers` cores exactly busy.
    pub fn capacity_rps(&self, workers: usize) -> f64 {
        workers as f64 * 1e9 / self.mean_service_ns()
    }

    fn pick(&self, rng: &mut SplitMix64) -> usize {
        let mut u = rng.next_f64();
        for (i, t) in self.types.iter().enumerate() {
            if u < t.share {
                return i;
            }
            u -= t.share;
        }
        self.types.len() - 1
    }

    /// An open-loop Poisson schedule of `count` requests at `rps`, spread over `workers` by flow
    /// (`flows` flows hashed onto workers, like RSS). `arrival_ns` is relative to the start;
    /// `kind` is the request type index; ids are 0..count.
    pub fn schedule(&self, rps: f64, count: usize, workers: usize, flows: u32, seed: u64) -> Vec<Vec<Request>> {
        let mut rng = SplitMix64::new(seed);
        let mut per_worker = vec![Vec::new(); workers];
        let mean_gap = 1e9 / rps;
        let mut t = 0.0;
        for id in 0..count as u64 {
            t += rng.exp(mean_gap);
            let r = self.draw(&mut rng, id, t as u64, flows);
            per_worker[(r.flow as usize) % workers].push(r);
        }
        per_worker
    }

    /// An open-loop Poisson schedule whose rate changes over time: `phases` are (duration ns,
    /// requests/s) in order (a rate of 0 sends nothing for that long). A gap that crosses a
    /// phase's end starts over there at the next rate (Poisson arrivals are memoryless, so each
    /// phase is exactly Poisson at its rate). Ids are 0.., in arrival order.
    pub fn schedule_phases(&self, phases: &[(u64, f64)], flows: u32, seed: u64) -> Vec<Request> {
        let mut rng = SplitMix64::new(seed);
        let mut out = Vec::new();
        let mut start = 0u64;
        for &(duration_ns, rps) in phases {
            let end = start + duration_ns;
            let mut t = start as f64;
            if rps > 0.0 && rps.is_finite() {
                loop {
                    t += rng.exp(1e9 / rps);
                    if t >= end as f64 {
                        break;
                    }
                    out.push(self.draw(&mut rng, out.len() as u64, t as u64, flows));
                }
            }
            start = end;
        }
        out
    }

    /// One request arriving at `arrival_ns`: its type, flow, key and service time.
    fn draw(&self, rng: &mut SplitMix64, id: u64, arrival_ns: u64, flows: u32) -> Request {
        let kind = self.pick(rng);
        let flow = (rng.next_u64() % flows.max(1) as u64) as u32;
        let key = if self.types[kind].keyed {
            key_name((rng.next_u64() % self.keys.max(1) as u64) as u32)
        } else {
            Key::default()
        };
        let ty = &self.types[kind];
        let service_ns = if ty.sd_ns == 0 {
            ty.service_ns
        } else {
            (rng.lognormal(ty.service_ns as f64, ty.sd_ns as f64) as u64).max(1)
        };
        Request {
            id,
            kind: kind as u32,
            flow,
            service_ns,
            client_ts: 0,
            arrival_ns,
            origin: 0,
            key,
            body: synergy::Body::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phased_schedule_keeps_each_phase_at_its_rate() {
        let w = Workload::named(WorkloadName::High);
        // 100 k and 1 M req/s alternating every 50 ms, with a silent phase.
        let phases = [(50_000_000, 100_000.0), (50_000_000, 1_000_000.0), (20_000_000, 0.0), (50_000_000, 100_000.0)];
        let s = w.schedule_phases(&phases, 8, 3);
        let count = |lo: u64, hi: u64| s.iter().filter(|r| (lo..hi).contains(&r.arrival_ns)).count() as f64;
        assert!((count(0, 50_000_000) / 5_000.0 - 1.0).abs() < 0.05, "{}", count(0, 50_000_000));
        assert!((count(50_000_000, 100_000_000) / 50_000.0 - 1.0).abs() < 0.02);
        assert_eq!(count(100_000_000, 120_000_000), 0.0);
        assert!((count(120_000_000, 170_000_000) / 5_000.0 - 1.0).abs() < 0.05);
        assert!(s.windows(2).all(|p| p[0].arrival_ns <= p[1].arrival_ns && p[1].id == p[0].id + 1));
        assert!(s.last().is_some_and(|r| r.arrival_ns < 170_000_000));
    }

    #[test]
    fn thesis_workloads() {
        let h = Workload::named(WorkloadName::High);
        assert_eq!(h.mean_service_ns(), 50_500.0);
        let z = Workload::named(WorkloadName::Zippydb);
        assert!((z.types.iter().map(|t| t.share).sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((Workload::named(WorkloadName::Extreme).mean_service_ns() - 2_997.5).abs() < 1e-6);
    }

    #[test]
    fn the_papers_workloads_have_their_mixes_and_lognormal_service_times_vary() {
        for w in WorkloadName::ALL.map(Workload::named) {
            assert!((w.types.iter().map(|t| t.share).sum::<f64>() - 1.0).abs() < 1e-12, "{}", w.name);
            assert_eq!(WorkloadName::named(w.name).map(Workload::named), Some(w.clone()));
        }
        assert!((Workload::named(WorkloadName::Trimodal).mean_service_ns() - 37_000.0).abs() < 1e-6);
        assert!((Workload::named(WorkloadName::RocksdbScan1000).mean_service_ns() - 7_170.0).abs() < 1e-6);
        assert_eq!(Workload::named(WorkloadName::RocksdbScan5000).mean_service_ns(), 603_000.0);
        let l = Workload::named(WorkloadName::Lognormal);
        assert_eq!(l.mean_service_ns(), 1_000.0);
        let s = l.schedule(1e6, 400_000, 1, 8, 5).pop().unwrap();
        let mean = s.iter().map(|r| r.service_ns as f64).sum::<f64>() / s.len() as f64;
        assert!((mean - 1_000.0).abs() < 150.0, "{mean}");
        let over_10us = s.iter().filter(|r| r.service_ns > 10_000).count() as f64 / s.len() as f64;
        assert!(over_10us > 0.005 && over_10us < 0.05, "a heavy tail: {over_10us}");
        let fixed = Workload::named(WorkloadName::Trimodal).schedule(1e6, 1000, 1, 8, 5).pop().unwrap();
        assert!(fixed.iter().all(|r| [1_000, 10_000, 100_000].contains(&r.service_ns)));
    }

    #[test]
    fn keys_sort_in_index_order_and_only_keyed_types_carry_one() {
        assert_eq!(key_name(0).as_bytes(), b"key-000000");
        assert_eq!(key_name(42).as_bytes(), b"key-000042");
        assert_eq!(key_name(999_999).as_bytes(), b"key-999999");
        assert!(key_name(9).as_bytes() < key_name(10).as_bytes());
        let w = Workload::leveldb(THESIS_LEVELDB_GET_NS, THESIS_LEVELDB_SCAN_NS, LEVELDB_ENTRIES);
        let s = w.schedule(10_000.0, 4000, 1, 8, 3).pop().unwrap();
        let mut seen = std::collections::HashSet::new();
        for r in &s {
            if r.kind == LEVELDB_GET {
                let k = r.key.as_bytes();
                assert!(k.starts_with(b"key-") && k.len() == 10, "{:?}", r.key);
                seen.insert(k.to_vec());
            } else {
                assert!(r.key.is_empty(), "SCAN carries no key");
            }
        }
        assert!(
            seen.len() > 800 && seen.iter().all(|k| k.as_slice() < key_name(LEVELDB_ENTRIES).as_bytes()),
            "{}",
            seen.len()
        );
    }

    #[test]
    fn schedule_has_the_mix_rate_and_ids() {
        let h = Workload::named(WorkloadName::High);
        let s = h.schedule(100_000.0, 50_000, 2, 64, 1);
        let all: Vec<&Request> = s.iter().flatten().collect();
        assert_eq!(all.len(), 50_000);
        let mut ids: Vec<u64> = all.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        assert!(ids.iter().enumerate().all(|(i, &id)| id == i as u64));
        let long = all.iter().filter(|r| r.kind == 1).count() as f64 / 50_000.0;
        assert!((long - 0.5).abs() < 0.02, "{long}");
        let last = all.iter().map(|r| r.arrival_ns).max().unwrap() as f64;
        assert!((last / 1e9 - 0.5).abs() < 0.02, "50k requests at 100k rps take ~0.5 s: {last}");
        for w in &s {
            assert!(w.windows(2).all(|p| p[0].arrival_ns <= p[1].arrival_ns), "sorted per worker");
        }
    }
}
