//! `synergy bench interrupt`: the interrupt paths of thesis Table 5.1, measured with the runtime's own
//! mechanisms. A one-worker runtime without timer core runs one long request whose green thread
//! spins writing TSC stamps; the benchmark thread, pinned to another CPU, plays the timer core and
//! interrupts it through the runtime's preempter (`Runtime::interrupt_worker`). The interrupt lands
//! in the common preemption entry exactly as in production (full state save), which calls a probe
//! (`set_preempt_probe`) instead of parking the request, and returns. A bare `tgkill` + signal
//! handler + `sigreturn` is measured in the same run, alternating run by run, as the baseline.
//! Several paths (`--preempt ci,signal`) are measured in one run, taking turns in blocks, each
//! with its own runtime (the preemption mode is the runtime's), so their rows compare side by
//! side. The stamps and their meaning are in `phases.rs`.

use super::phases::{summarize, Percentiles, PhaseSummary, Sample};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synergy::clock::rdtsc_ordered as stamp;
use synergy::config::Config;
use synergy::preempt::PreemptMode;
use synergy::request::{Reply, Request};
use synergy::transport::channel::ChannelTransport;
use synergy::Runtime;

/// The baseline's signal (the runtime preempts with SIGURG).
const BASELINE_SIGNAL: libc::c_int = libc::SIGUSR1;
/// A delivery not seen after this long is sent again (kmod_ipi drops an IPI that finds the
/// receiver off its CPU; the timer core would retry the same way).
const RESEND_AFTER: Duration = Duration::from_millis(50);

// Shared between the receiver (a green thread, and the probe/handler interrupting it) and the
// sender. Statics, because the probe and the signal handler take no argument.
static LAST: AtomicU64 = AtomicU64::new(0);
static RT0: AtomicU64 = AtomicU64::new(0);
static RT1: AtomicU64 = AtomicU64::new(0);
static RT2: AtomicU64 = AtomicU64::new(0);
static RT3: AtomicU64 = AtomicU64::new(0);
static HANDLED: AtomicBool = AtomicBool::new(false);
static DONE: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicBool = AtomicBool::new(false);
static SPINNING: AtomicBool = AtomicBool::new(false);
static RUNNING: AtomicBool = AtomicBool::new(false);

/// The receiver's side of an interrupt: the preemption probe itself, and the baseline's signal
/// handler body. Stamps only, atomics only (async-signal-safe, no allocation, no TLS).
#[inline(always)]
fn on_interrupt() {
    let rt1 = stamp();
    RT0.store(LAST.load(Ordering::Relaxed), Ordering::Relaxed);
    RT1.store(rt1, Ordering::Relaxed);
    RT2.store(stamp(), Ordering::Relaxed);
    HANDLED.store(true, Ordering::Release);
}

extern "C" fn baseline_handler(_sig: libc::c_int) {
    on_interrupt();
}

/// The long request: spins writing stamps until told to stop; after each interrupt it records
/// the first stamp of its resumed loop.
fn receiver(req: Request) {
    // SAFETY: the loop touches only atomics in statics and the TSC (no thread-local storage, no
    // lock).
    unsafe { synergy::feedback_start() };
    SPINNING.store(true, Ordering::Release);
    loop {
        if HANDLED.load(Ordering::Acquire) {
            RT3.store(stamp(), Ordering::Relaxed);
            HANDLED.store(false, Ordering::Relaxed);
            DONE.fetch_add(1, Ordering::Release);
        }
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        LAST.store(stamp(), Ordering::Relaxed);
        // The compiler-interrupt path's probe (`--preempt ci`); a few loads otherwise.
        synergy::preempt_point();
    }
    synergy::feedback_finished();
    let _ = synergy::send(Reply::to(&req));
}

#[derive(Debug, Clone, Serialize)]
pub struct MethodResult {
    /// "signal", "ipi", "uintr" (synergy's paths) or "tgkill+sigreturn" (the bare baseline).
    pub method: String,
    pub phases: PhaseSummary,
    /// Interrupts not seen within 50 ms and sent again.
    pub resent: u64,
    /// A path's whole interruption (rt3 − rt0) p50 over the baseline's, both from the same
    /// blocks, run by run alternating; none for the baseline itself.
    pub ratio_to_baseline_p50: Option<f64>,
}

/// A row of thesis Table 5.1 (ns; Xeon Gold 6438Y+, Linux 5.15, 500k runs).
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceRow {
    pub method: &'static str,
    pub send: [u32; 2],
    pub propagation: [u32; 2],
    pub receive: [u32; 2],
    #[serde(rename = "return")]
    pub ret: [u32; 2],
}

/// Thesis Table 5.1, [p50, p99.9] per phase.
pub const THESIS_TABLE_5_1: [ReferenceRow; 3] = [
    ReferenceRow {
        method: "signal",
        send: [746, 929],
        propagation: [2216, 2533],
        receive: [1434, 3185],
        ret: [641, 677],
    },
    ReferenceRow { method: "ipi", send: [490, 549], propagation: [1225, 1659], receive: [728, 2516], ret: [100, 138] },
    ReferenceRow { method: "uintr", send: [171, 236], propagation: [671, 1354], receive: [464, 1534], ret: [45, 105] },
];

#[derive(Debug, Clone, Serialize)]
pub struct MicrobenchResult {
    /// The measured paths, comma-separated, in the order they took turns.
    pub preempt: String,
    pub runs_per_method: usize,
    /// Blocks each path's runs were split into (the paths take turns block by block).
    pub blocks: usize,
    pub sender_cpu: usize,
    pub receiver_cpu: usize,
    pub ns_per_tick: f64,
    /// What the CPU says about where it runs: "bare metal", a hypervisor, or QEMU's TCG.
    pub platform: String,
    /// True under software emulation: the numbers then only show that the path works.
    pub emulated: bool,
    pub methods: Vec<MethodResult>,
    /// Green-thread switch, per switch (batches of 64 round trips).
    pub context_switch: Percentiles,
    pub reference: &'static [ReferenceRow],
}

/// The hypervisor vendor string of CPUID leaf 0x4000_0000, if the CPU reports a hypervisor.
/// Some emulators (Bochs) set no hypervisor bit: SYNERGY_EMULATOR=<name> says so (the guest test
/// scripts pass it from the kernel command line), and the run counts as emulated.
pub fn platform() -> (String, bool) {
    if let Some(name) = std::env::var("SYNERGY_EMULATOR").ok().filter(|n| !n.is_empty()) {
        return (format!("emulator \"{name}\" (SYNERGY_EMULATOR)"), true);
    }
    let cpuid = raw_cpuid::CpuId::new();
    if !cpuid.get_feature_info().is_some_and(|f| f.has_hypervisor()) {
        return ("bare metal".into(), false);
    }
    // With the hypervisor bit set, leaf 0x4000_0000 is the hypervisor's vendor leaf; QEMU's TCG
    // signs it "TCGTCGTCGTCG".
    match cpuid.get_hypervisor_info().map(|h| h.identify()) {
        Some(raw_cpuid::Hypervisor::QEMU) => ("hypervisor \"TCGTCGTCGTCG\" (QEMU TCG)".into(), true),
        Some(h) => (format!("hypervisor {h:?}"), false),
        None => ("hypervisor (no vendor leaf)".into(), false),
    }
}

fn install_baseline_handler() -> std::io::Result<()> {
    // SAFETY: a plain sigaction with a handler that only touches atomics.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = baseline_handler as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(BASELINE_SIGNAL, &sa, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

pub struct Params {
    /// The paths to measure, in this order within each block (at least one; no repeats).
    pub modes: Vec<PreemptMode>,
    /// Interrupts per path (and as many through the baseline beside each).
    pub runs: usize,
    pub sender_cpu: usize,
    pub receiver_cpu: usize,
}

/// With several paths, each path's runs are split into this many blocks and the paths take turns
/// block by block, so a drift of the machine (frequency, a noisy neighbour) reaches every row.
const BLOCKS: usize = 4;

/// Runs the benchmark: `runs` interrupts through each of synergy's paths in `p.modes`, each
/// alternating run by run with the bare baseline; the paths take turns in blocks.
pub fn run(p: &Params) -> Result<MicrobenchResult, String> {
    if p.modes.is_empty() {
        return Err("--preempt needs at least one path".into());
    }
    for (i, &mode) in p.modes.iter().enumerate() {
        if mode == PreemptMode::None {
            return Err("--preempt must name signal, ipi, uintr or ci (none has no path to measure)".into());
        }
        if mode.compiler_interrupts() && mode != PreemptMode::Ci {
            return Err(format!(
                "--preempt {}: a hybrid's two paths are measured one at a time: run --preempt ci,{}",
                mode.name(),
                mode.interrupt().name()
            ));
        }
        if p.modes[..i].contains(&mode) {
            return Err(format!("--preempt names {} twice", mode.name()));
        }
    }
    if p.sender_cpu == p.receiver_cpu {
        return Err("the sender and the receiver need two different CPUs".into());
    }
    if RUNNING.swap(true, Ordering::AcqRel) {
        return Err("one microbenchmark at a time per process".into());
    }
    let result = run_exclusive(p);
    RUNNING.store(false, Ordering::Release);
    result
}

/// What one path's blocks gathered: its samples, the baseline's beside them, and the resends.
#[derive(Default)]
struct PathSamples {
    ours: Vec<Sample>,
    base: Vec<Sample>,
    resent: [u64; 2],
}

fn run_exclusive(p: &Params) -> Result<MicrobenchResult, String> {
    install_baseline_handler().map_err(|e| format!("cannot install the baseline's signal handler: {e}"))?;
    let blocks = if p.modes.len() > 1 { BLOCKS.min(p.runs) } else { 1 };
    let mut gathered: Vec<PathSamples> = p.modes.iter().map(|_| PathSamples::default()).collect();
    let mut progress = synergy_eval::progress::task("synergy bench interrupt", (blocks) as u64, "blocks");
    for block in 0..blocks {
        let runs = p.runs / blocks + usize::from(block < p.runs % blocks);
        for (&mode, into) in p.modes.iter().zip(gathered.iter_mut()) {
            let (ours, base, resent) = run_block(mode, runs, p)?;
            into.ours.extend(ours);
            into.base.extend(base);
            into.resent[0] += resent[0];
            into.resent[1] += resent[1];
        }
        progress.inc();
    }
    let ns_per_tick = synergy::clock::measure_ns_per_tick(100);

    let context_switch = {
        const PER_BATCH: u64 = 64;
        let batches = (p.runs / 10).max(1000);
        let mut ticks = super::ctx::switch_batches(batches, PER_BATCH);
        let per_switch = ns_per_tick / (2 * PER_BATCH) as f64;
        Percentiles::of(&mut ticks, per_switch)
    };
    let mut methods = Vec::with_capacity(p.modes.len() + 1);
    let mut all_base = Vec::with_capacity(p.runs * p.modes.len());
    let mut base_resent = 0;
    for (&mode, g) in p.modes.iter().zip(&gathered) {
        let ours = summarize(&g.ours, ns_per_tick);
        let base = summarize(&g.base, ns_per_tick);
        let ratio = if base.total.p50_ns > 0.0 { ours.total.p50_ns / base.total.p50_ns } else { f64::NAN };
        methods.push(MethodResult {
            method: mode.name().into(),
            phases: ours,
            resent: g.resent[0],
            ratio_to_baseline_p50: Some(ratio),
        });
        all_base.extend_from_slice(&g.base);
        base_resent += g.resent[1];
    }
    methods.push(MethodResult {
        method: "tgkill+sigreturn".into(),
        phases: summarize(&all_base, ns_per_tick),
        resent: base_resent,
        ratio_to_baseline_p50: None,
    });
    let (platform, emulated) = platform();
    Ok(MicrobenchResult {
        preempt: p.modes.iter().map(|m| m.name()).collect::<Vec<_>>().join(","),
        runs_per_method: p.runs,
        blocks,
        sender_cpu: p.sender_cpu,
        receiver_cpu: p.receiver_cpu,
        ns_per_tick,
        platform,
        emulated,
        methods,
        context_switch,
        reference: &THESIS_TABLE_5_1,
    })
}

/// One block: a one-worker runtime preempting with `mode`, `runs` interrupts through it, each
/// followed by one through the baseline.
fn run_block(mode: PreemptMode, runs: usize, p: &Params) -> Result<Measured, String> {
    for a in [&LAST, &RT0, &RT1, &RT2, &RT3, &DONE] {
        a.store(0, Ordering::Relaxed);
    }
    HANDLED.store(false, Ordering::Relaxed);
    STOP.store(false, Ordering::Relaxed);
    SPINNING.store(false, Ordering::Relaxed);

    let config = Config {
        workers: 1,
        worker_cores: Some(vec![p.receiver_cpu]),
        timer_core: Some(p.sender_cpu),
        preempt: mode,
        ..Config::default()
    };
    let transport = Arc::new(ChannelTransport::new(1, 4, 4));
    // SAFETY: `on_interrupt` stamps atomics in statics and reads the TSC: async-signal-safe, no
    // allocation, lock, unwinding or thread-local storage; a plain fn, callable forever.
    unsafe { synergy::set_preempt_probe(Some(on_interrupt)) };
    let rt = match Runtime::builder(&config).transport(transport.clone()).handler(receiver).without_timer_core().start()
    {
        Ok(rt) => rt,
        Err(e) => {
            // SAFETY: clearing the probe installs nothing.
            unsafe { synergy::set_preempt_probe(None) };
            return Err(e.to_string());
        }
    };
    // The sender is a thread of its own, pinned, so that this thread's affinity (which the next
    // block's runtime checks its CPUs against) stays as it was.
    let outcome = std::thread::scope(|s| {
        s.spawn(|| {
            synergy::cpu::pin_current_thread(p.sender_cpu)
                .map_err(|e| format!("cannot pin the sender to CPU {}: {e}", p.sender_cpu))
                .and_then(|()| measure(&rt, &transport, mode, runs))
        })
        .join()
        .unwrap_or_else(|_| Err("the sender thread panicked".into()))
    });
    STOP.store(true, Ordering::Release);
    transport.close();
    rt.shutdown();
    // SAFETY: clearing the probe installs nothing.
    unsafe { synergy::set_preempt_probe(None) };
    outcome
}

type Measured = (Vec<Sample>, Vec<Sample>, [u64; 2]);

fn measure(rt: &Runtime, transport: &ChannelTransport, mode: PreemptMode, runs: usize) -> Result<Measured, String> {
    transport
        .submit(0, Request { id: 1, kind: 1, ..Request::default() })
        .map_err(|_| "cannot submit the receiver request".to_string())?;
    let t0 = Instant::now();
    while !SPINNING.load(Ordering::Acquire) {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err("the receiver did not start within 10 s".into());
        }
        std::hint::spin_loop();
    }
    let target = rt.worker_target(0);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut ours = Vec::with_capacity(runs);
    let mut base = Vec::with_capacity(runs);
    let mut resent = [0u64; 2];
    let warmup = (runs / 100).clamp(10, 1000);
    for i in 0..warmup + runs {
        for (which, resent) in resent.iter_mut().enumerate() {
            let send = || -> Result<(), String> {
                if which == 0 {
                    rt.interrupt_worker(0).map_err(|e| format!("{} send failed: {e}", mode.name()))
                } else {
                    // SAFETY: tgkill to a thread of this process with a handled signal.
                    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, target.tid, BASELINE_SIGNAL) };
                    if r != 0 {
                        return Err(format!("tgkill failed: {}", std::io::Error::last_os_error()));
                    }
                    Ok(())
                }
            };
            let done = DONE.load(Ordering::Acquire);
            // The receiver is back in its loop once it wrote a stamp after its last resume.
            let prev_rt3 = RT3.load(Ordering::Relaxed);
            while LAST.load(Ordering::Relaxed) <= prev_rt3 {
                std::hint::spin_loop();
            }
            let mut st0 = stamp();
            send()?;
            let mut st1 = stamp();
            let mut sent_at = Instant::now();
            while DONE.load(Ordering::Acquire) == done {
                if sent_at.elapsed() > RESEND_AFTER {
                    *resent += 1;
                    if *resent > 100 + runs as u64 / 10 {
                        return Err(format!("more than {} interrupts were never delivered", *resent - 1));
                    }
                    st0 = stamp();
                    send()?;
                    st1 = stamp();
                    sent_at = Instant::now();
                }
                std::hint::spin_loop();
            }
            let s = Sample {
                st0,
                st1,
                rt0: RT0.load(Ordering::Relaxed),
                rt1: RT1.load(Ordering::Relaxed),
                rt2: RT2.load(Ordering::Relaxed),
                rt3: RT3.load(Ordering::Relaxed),
            };
            if i >= warmup {
                if which == 0 {
                    ours.push(s)
                } else {
                    base.push(s)
                }
            }
        }
    }
    Ok((ours, base, resent))
}
