//! `synergy bench probes`: what compiler-interrupt probes cost the code they are inserted into
//! (issue 17). Three loops, each in three builds from one body: uninstrumented,
//! `#[synergy::preemptible]` (a probe per iteration) and `#[synergy::preemptible(every = 64)]`.
//! They run inside a request on a one-worker `--preempt=ci` runtime, so every probe takes the
//! path it takes in production (a worker thread, its request word read through GS); no work is
//! queued, so no request is ever posted and the probes measure their fast path. Rounds alternate
//! the builds; each round's time per iteration of a probed build over the plain one's is its
//! slowdown.

use serde::Serialize;
use std::fmt::Write;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use synergy::config::Config;
use synergy::transport::channel::ChannelTransport;
use synergy::{PreemptMode, Request, Runtime};
use synergy_eval::plot::{bar_chart, BarGroup};

/// One loop body in its three builds: `$plain`, `$probed` (every iteration), `$every64`.
macro_rules! three_builds {
    ($plain:ident, $probed:ident, $every64:ident, |$data:ident, $n:ident| $body:block) => {
        #[inline(never)]
        fn $plain($data: &[u64], $n: u64) -> u64 $body
        #[inline(never)]
        #[synergy::preemptible]
        fn $probed($data: &[u64], $n: u64) -> u64 $body
        #[inline(never)]
        #[synergy::preemptible(every = 64)]
        fn $every64($data: &[u64], $n: u64) -> u64 $body
    };
}

// Integer arithmetic with a loop-carried dependency the compiler cannot reassociate (xorshift
// steps and a multiply): a few cycles per iteration. (An LCG, x = a·x + i, was first: LLVM
// restructured its plain build to 0.16 ns per iteration, which a probe's call forbids.)
three_builds!(arith_plain, arith_probed, arith_every64, |_data, n| {
    let mut x = n | 1;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    }
    x
});

// Pointer chasing through a random cycle (each load depends on the last).
three_builds!(chase_plain, chase_probed, chase_every64, |data, n| {
    let mut at = 0usize;
    for _ in 0..n {
        at = data[at] as usize;
    }
    at as u64
});

// Streaming through memory: a sum the compiler can vectorize when nothing else is in the loop.
three_builds!(stream_plain, stream_probed, stream_every64, |data, n| {
    let mut sum = 0u64;
    for _ in 0..n / data.len() as u64 {
        for &v in data {
            sum = sum.wrapping_add(v);
        }
    }
    sum
});

type Kernel = fn(&[u64], u64) -> u64;

/// One loop: its three builds, its data and its iterations per round.
struct Loop {
    name: &'static str,
    builds: [(&'static str, Kernel); 3],
    data: Vec<u64>,
    iterations: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeRow {
    pub kernel: &'static str,
    pub build: &'static str,
    /// Median over the rounds.
    pub ns_per_iteration: f64,
    /// Median and largest per-round ratio to the plain build (1.0 for the plain build).
    pub slowdown_median: f64,
    pub slowdown_max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeBench {
    pub cpu_model: String,
    pub rounds: usize,
    pub rows: Vec<ProbeRow>,
    /// The goal of issue 17: median slowdown ≤ 5%.
    pub goal_median_slowdown: f64,
}

/// A random single cycle over `len` slots (Sattolo's algorithm, a fixed LCG as the source).
fn random_cycle(len: usize) -> Vec<u64> {
    let mut v: Vec<u64> = (0..len as u64).collect();
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..len).rev() {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let j = (s >> 33) as usize % i;
        v.swap(i, j);
    }
    v
}

fn measure(loops: &[Loop], rounds: usize) -> Vec<ProbeRow> {
    let mut rows = Vec::new();
    let mut progress = synergy_eval::progress::task("synergy bench probes", (loops.len() * rounds) as u64, "rounds");
    for Loop { name, builds, data, iterations: n } in loops {
        // times[build][round], ns per iteration
        let mut times = [vec![], vec![], vec![]];
        for round in 0..rounds {
            for k in 0..3 {
                // Rotate the order each round, so that no build always runs first.
                let b = (k + round) % 3;
                let t0 = Instant::now();
                black_box(builds[b].1(black_box(data), black_box(*n)));
                times[b].push(t0.elapsed().as_nanos() as f64 / *n as f64);
            }
            progress.inc();
        }
        for (b, (build, _)) in builds.iter().enumerate() {
            let mut ratios: Vec<f64> = times[b].iter().zip(&times[0]).map(|(t, p)| t / p).collect();
            ratios.sort_by(f64::total_cmp);
            let mut t = times[b].clone();
            t.sort_by(f64::total_cmp);
            rows.push(ProbeRow {
                kernel: name,
                build,
                ns_per_iteration: t[t.len() / 2],
                slowdown_median: ratios[ratios.len() / 2],
                slowdown_max: *ratios.last().unwrap(),
            });
        }
    }
    rows
}

/// Runs the benchmark on a worker of a one-worker `ci` runtime (CPU `cpu` if given).
pub fn run(rounds: usize, iterations: u64, cpu: Option<usize>) -> Result<ProbeBench, String> {
    let kernels = vec![
        Loop {
            name: "arithmetic",
            builds: [("plain", arith_plain), ("probe per iteration", arith_probed), ("probe every 64", arith_every64)],
            data: Vec::new(),
            iterations,
        },
        Loop {
            name: "pointer chase (256 KiB)",
            builds: [("plain", chase_plain), ("probe per iteration", chase_probed), ("probe every 64", chase_every64)],
            data: random_cycle(32 * 1024),
            iterations: iterations / 4,
        },
        Loop {
            name: "streaming sum (64 MiB)",
            builds: [
                ("plain", stream_plain),
                ("probe per iteration", stream_probed),
                ("probe every 64", stream_every64),
            ],
            data: vec![1u64; 8 << 20],
            iterations: (8u64 << 20) * 4,
        },
    ];
    let out: Arc<Mutex<Option<Vec<ProbeRow>>>> = Arc::new(Mutex::new(None));
    let o = out.clone();
    let mut config = Config { workers: 1, preempt: PreemptMode::Ci, ..Config::default() };
    if let Some(c) = cpu {
        config.worker_cores = Some(vec![c]);
        config.timer_core = synergy::cpu::allowed_cpus().into_iter().find(|&t| t != c);
    }
    let transport = Arc::new(ChannelTransport::new(1, 4, 4));
    let rt = Runtime::builder(&config)
        .transport(transport.clone())
        .handler(move |_req: Request| {
            // Not a preemptible region (no feedback_start): nothing can be parked, yet every probe
            // runs its worker fast path. The lock is taken once, at the end.
            let rows = measure(&kernels, rounds);
            *o.lock().unwrap() = Some(rows);
        })
        .start()
        .map_err(|e| e.to_string())?;
    transport.submit(0, Request::default()).map_err(|_| "cannot submit the benchmark request".to_string())?;
    transport.close();
    rt.shutdown();
    let rows = out.lock().unwrap().take().ok_or("the benchmark request did not run")?;
    Ok(ProbeBench { cpu_model: synergy::cpu::model_name(), rounds, rows, goal_median_slowdown: 1.05 })
}

pub fn table(b: &ProbeBench) -> String {
    let mut s = format!(
        "compiler-interrupt probe overhead on a ci worker ({}), {} alternating rounds:\n",
        b.cpu_model, b.rounds
    );
    let _ = writeln!(s, "  {:<24} {:<20} {:>10} {:>12} {:>10}", "kernel", "build", "ns/iter", "median ×", "worst ×");
    for r in &b.rows {
        let _ = writeln!(
            s,
            "  {:<24} {:<20} {:>10.3} {:>12.3} {:>10.3}",
            r.kernel, r.build, r.ns_per_iteration, r.slowdown_median, r.slowdown_max
        );
    }
    s
}

pub fn csv(b: &ProbeBench) -> String {
    let mut table = synergy_eval::csv::CsvTable::new(&[
        "cpu_model",
        "kernel",
        "build",
        "ns_per_iteration",
        "slowdown_median",
        "slowdown_max",
    ]);
    for r in &b.rows {
        table.row([
            b.cpu_model.to_string(),
            r.kernel.to_string(),
            r.build.to_string(),
            format!("{:.4}", r.ns_per_iteration),
            format!("{:.4}", r.slowdown_median),
            format!("{:.4}", r.slowdown_max),
        ]);
    }
    table.finish()
}

pub fn svg(b: &ProbeBench) -> String {
    let mut groups: Vec<BarGroup> = Vec::new();
    for r in &b.rows {
        if groups.last().is_none_or(|g| g.label != r.kernel) {
            groups.push(BarGroup { label: r.kernel.into(), bars: Vec::new() });
        }
        groups.last_mut().unwrap().bars.push((r.build.into(), r.slowdown_median));
    }
    bar_chart(
        &format!("Probe overhead, median slowdown vs uninstrumented ({})", b.cpu_model),
        "time / uninstrumented time",
        &groups,
        false,
    )
}
