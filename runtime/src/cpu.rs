//! CPU facts and thread placement.

use std::io;

/// CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..num_cpus_fallback()).collect();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

fn num_cpus_fallback() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: as above; the set is initialised before use.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Kernel thread id of the caller.
pub fn gettid() -> i32 {
    // SAFETY: gettid cannot fail.
    unsafe { libc::gettid() }
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
