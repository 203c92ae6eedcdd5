//! `synergy microbench`: the interrupt paths of thesis Table 5.1, measured with the runtime's own
//! mechanisms. A one-worker runtime without timer core runs one long request whose green thread
//! spins writing TSC stamps; the benchmark thread, pinned to another CPU, plays the timer core and
//! interrupts it through the runtime's preempter (`Runtime::interrupt_worker`). The interrupt lands
//! in the common preemption entry exactly as in production (full state save), which calls a probe
//! (`set_preempt_probe`) instead of parking the request, and returns. A bare `tgkill` + signal
//! handler + `sigreturn` is measured in the same run, alternating run by run, as the baseline.
//! The stamps and their meaning are in `phases.rs`.

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
    pub preempt: String,
    pub runs_per_method: usize,
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
    /// rt3 − rt0 p50 of synergy's path over the bare tgkill+sigreturn baseline's (same run).
    pub total_ratio_to_baseline_p50: f64,
    pub reference: &'static [ReferenceRow],
}

/// The hypervisor vendor string of CPUID leaf 0x4000_0000, if the CPU reports a hypervisor.
/// Some emulators (Bochs) set no hypervisor bit: SYNERGY_EMULATOR=<name> says so (the guest test
/// scripts pass it from the kernel command line), and the run counts as emulated.
pub fn platform() -> (String, bool) {
    if let Some(name) = std::env::var("SYNERGY_EMULATOR").ok().filter(|n| !n.is_empty()) {
        return (format!("emulator \"{name}\" (SYNERGY_EMULATOR)"), true);
    }
    // cpuid exists on every x86-64 CPU; leaf 1 always exists.
    let leaf1 = core::arch::x86_64::__cpuid(1);
    if leaf1.ecx & (1 << 31) == 0 {
        return ("bare metal".into(), false);
    }
    // With the hypervisor bit set, leaf 0x4000_0000 is the hypervisor's vendor leaf.
    let h = core::arch::x86_64::__cpuid(0x4000_0000);
    let bytes: Vec<u8> = [h.ebx, h.ecx, h.edx].iter().flat_map(|r| r.to_le_bytes()).collect();
    let vendor = String::from_utf8_lossy(&bytes).trim_end_matches('\0').to_string();
    let emulated = vendor.starts_with("TCGTCG");
    (format!("hypervisor \"{vendor}\""), emulated)
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
    pub preempt: PreemptMode,
    pub runs: usize,
    pub sender_cpu: usize,
    pub receiver_cpu: usize,
}

/// Runs the benchmark: `runs` interrupts through synergy's `preempt` path and as many through the
/// bare baseline, alternating.
pub fn run(p: &Params) -> Result<MicrobenchResult, String> {
    if p.preempt == PreemptMode::None {
        return Err("--preempt must be signal, ipi, uintr or ci".into());
    }
    if p.preempt.compiler_interrupts() && p.preempt != PreemptMode::Ci {
        return Err(format!(
            "--preempt {}: a hybrid's two paths are measured one at a time: run --preempt ci and --preempt {}",
            p.preempt.name(),
            p.preempt.interrupt().name()
        ));
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

fn run_exclusive(p: &Params) -> Result<MicrobenchResult, String> {
    install_baseline_handler().map_err(|e| format!("cannot install the baseline's signal handler: {e}"))?;
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
        preempt: p.preempt,
        ..Config::default()
    };
    let transport = Arc::new(ChannelTransport::new(1, 4, 4));
    synergy::set_preempt_probe(Some(on_interrupt));
    let rt = match Runtime::start_without_timer_core(&config, transport.clone(), receiver) {
        Ok(rt) => rt,
        Err(e) => {
            synergy::set_preempt_probe(None);
            return Err(e.to_string());
        }
    };
    // Pinned only now: the runtime checks its CPUs against this thread's affinity.
    let outcome = synergy::cpu::pin_current_thread(p.sender_cpu)
        .map_err(|e| format!("cannot pin the sender to CPU {}: {e}", p.sender_cpu))
        .and_then(|()| measure(&rt, &transport, p));
    STOP.store(true, Ordering::Release);
    transport.close();
    rt.shutdown();
    synergy::set_preempt_probe(None);
    let (ours, base, resent) = outcome?;
    let ns_per_tick = synergy::clock::measure_ns_per_tick(100);

    let context_switch = {
        const PER_BATCH: u64 = 64;
        let batches = (p.runs / 10).max(1000);
        let mut ticks = super::ctx::switch_batches(batches, PER_BATCH);
        let per_switch = ns_per_tick / (2 * PER_BATCH) as f64;
        Percentiles::of(&mut ticks, per_switch)
    };
    let ours = summarize(&ours, ns_per_tick);
    let base = summarize(&base, ns_per_tick);
    let ratio = if base.total.p50_ns > 0.0 { ours.total.p50_ns / base.total.p50_ns } else { f64::NAN };
    let (platform, emulated) = platform();
    Ok(MicrobenchResult {
        preempt: p.preempt.name().into(),
        runs_per_method: p.runs,
        sender_cpu: p.sender_cpu,
        receiver_cpu: p.receiver_cpu,
        ns_per_tick,
        platform,
        emulated,
        methods: vec![
            MethodResult { method: p.preempt.name().into(), phases: ours, resent: resent[0] },
            MethodResult { method: "tgkill+sigreturn".into(), phases: base, resent: resent[1] },
        ],
        context_switch,
        total_ratio_to_baseline_p50: ratio,
        reference: &THESIS_TABLE_5_1,
    })
}

type Measured = (Vec<Sample>, Vec<Sample>, [u64; 2]);

fn measure(rt: &Runtime, transport: &ChannelTransport, p: &Params) -> Result<Measured, String> {
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
    let mut ours = Vec::with_capacity(p.runs);
    let mut base = Vec::with_capacity(p.runs);
    let mut resent = [0u64; 2];
    let warmup = (p.runs / 100).clamp(10, 1000);
    for i in 0..warmup + p.runs {
        for (which, resent) in resent.iter_mut().enumerate() {
            let send = || -> Result<(), String> {
                if which == 0 {
                    rt.interrupt_worker(0).map_err(|e| format!("{} send failed: {e}", p.preempt.name()))
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
                    if *resent > 100 + p.runs as u64 / 10 {
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
