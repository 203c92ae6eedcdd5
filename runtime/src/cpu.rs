//! CPU facts and thread placement.

use std::io;

/// CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).collect(),
        Err(_) => (0..num_cpus_fallback()).collect(),
    }
}

fn num_cpus_fallback() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    set.set(cpu).map_err(io::Error::from)?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(io::Error::from)
}

/// Kernel thread id of the caller.
pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Bytes XSAVE writes for the state components enabled in XCR0 (CPUID.(EAX=0DH,ECX=0):EBX), or
/// None if the CPU or OS lacks XSAVE.
pub fn xsave_area_size() -> Option<usize> {
    if !std::arch::is_x86_feature_detected!("xsave") {
        return None;
    }
    let leaf = core::arch::x86_64::__cpuid_count(0xD, 0);
    Some(leaf.ebx as usize)
}

/// The processor's model as the kernel reports it (`model name` in /proc/cpuinfo, what `lscpu`
/// prints), recorded with every benchmark result: timings compare only within one machine.
pub fn model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().into())
        })
        .unwrap_or_else(|| "unknown".into())
}
