//! CPU facts and thread placement. CPUID is decoded by name through `raw-cpuid` (leaf 0xD's
//! sizes, offsets and alignment; the XSAVEC and XINUSE flags); XCR0 itself is an `xgetbv`.

use raw_cpuid::{CpuId, ExtendedState, ExtendedStateInfo};
use std::io;

/// CPUID leaf 0xD (the XSAVE features and layout), None where the CPU has no XSAVE or the OS
/// did not enable it (CPUID.1:ECX.OSXSAVE).
fn xsave_leaf() -> Option<ExtendedStateInfo<raw_cpuid::CpuIdReaderNative>> {
    if !std::arch::is_x86_feature_detected!("xsave") {
        return None;
    }
    CpuId::new().get_extended_state_info()
}

/// Leaf 0xD's sub-leaves of the components 2 and up the CPU has, read once per caller: each
/// component's size, standard-format offset and 64-byte alignment in the compacted format.
fn component_layouts() -> Vec<ExtendedState> {
    xsave_leaf().map(|l| l.iter().collect()).unwrap_or_default()
}

/// Whether XGETBV with ECX = 1 (XINUSE) exists (CPUID.(0DH,1):EAX\[2\]).
pub fn has_xinuse() -> bool {
    xsave_leaf().is_some_and(|l| l.has_xgetbv())
}

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
    Some(xsave_leaf()?.xsave_area_size_enabled_features() as usize)
}

/// How the preemption entry saves the extended state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XsaveFormat {
    /// `XSAVE`, standard format: every component enabled in XCR0 is written, in use or not
    /// (with AMX enabled that includes 8 KiB of tile data).
    Standard,
    /// `XSAVEC`, compacted format with the init optimisation: only components in use (XINUSE)
    /// are written, and the area holds just the XCR0 components, packed.
    Compacted,
}

/// XCR0: the state components the OS enabled; None without XSAVE enabled by the OS.
fn xcr0() -> Option<u64> {
    if !std::arch::is_x86_feature_detected!("xsave") {
        return None;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV with ECX = 0 reads XCR0, valid once the OS enabled XSAVE (CPUID.1:ECX.OSXSAVE,
    // which the feature check above includes); it reads no memory.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    Some((u64::from(hi) << 32) | u64::from(lo))
}

/// The format to use and the bytes its area needs: XSAVEC where the CPU has it (CPUID.(0DH,1):EAX\[1\])
/// unless `SYNERGY_XSAVE=standard` asks for the standard form (to compare them), else XSAVE.
/// The compacted size is computed as the SDM's compacted layout (13.4.3): the 576-byte legacy
/// area and header, then each XCR0 component from 2 up in order, 64-byte aligned where
/// CPUID.(0DH,i):ECX\[1\] says so. None without XSAVE.
pub fn xsave_format() -> Option<(XsaveFormat, usize)> {
    let standard = xsave_area_size()?;
    let forced_standard = std::env::var("SYNERGY_XSAVE").is_ok_and(|v| v == "standard");
    if forced_standard || !std::arch::is_x86_feature_detected!("xsavec") {
        return Some((XsaveFormat::Standard, standard));
    }
    Some((XsaveFormat::Compacted, compacted_size(xcr0()?)))
}

/// XCR0: the state components the OS enabled (0 without XSAVE).
pub fn enabled_components() -> u64 {
    xcr0().unwrap_or(0)
}

/// Where one state component lies in an XSAVE area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// The XSAVE state component (CPUID leaf 0xD's sub-leaf).
    pub component: u32,
    /// Its offset in the standard-format area.
    pub offset: usize,
    /// Its size in bytes.
    pub size: usize,
}

/// Components 2 and up of `components` at their standard-format offsets: CPUID.(EAX=0DH,ECX=i)
/// EBX (offset) and EAX (size), SDM Vol. 1 §13.2 and §13.4.3; the APM's CPUID Fn0000_000D_EBX_x
/// and EAX_x give the same.
pub fn standard_regions(components: u64) -> Vec<Region> {
    let layouts = component_layouts();
    (2..63)
        .filter(|i| components & (1u64 << i) != 0)
        .map(|i| {
            let c = layouts.iter().find(|c| c.subleaf == i);
            Region {
                component: i,
                offset: c.map_or(0, |c| c.offset() as usize),
                size: c.map_or(0, |c| c.size() as usize),
            }
        })
        .collect()
}

/// Components 2 and up of `xcomp_bv` at their compacted-format offsets (SDM Vol. 1 §13.4.3):
/// after the 576-byte legacy region and header, each component of XCOMP_BV in order, on the next
/// 64-byte boundary where CPUID.(EAX=0DH,ECX=i):ECX\[1\] says so, else right after the previous one.
pub fn compacted_regions(xcomp_bv: u64) -> Vec<Region> {
    let layouts = component_layouts();
    let mut offset = 576usize;
    let mut out = Vec::new();
    for i in 2..63 {
        if xcomp_bv & (1u64 << i) == 0 {
            continue;
        }
        let c = layouts.iter().find(|c| c.subleaf == i);
        // ECX[1] of the sub-leaf (raw-cpuid names it `is_compacted_format`): the component
        // starts on a 64-byte boundary in the compacted format.
        if c.is_some_and(|c| c.is_compacted_format()) {
            offset = offset.next_multiple_of(64);
        }
        let size = c.map_or(0, |c| c.size() as usize);
        out.push(Region { component: i, offset, size });
        offset += size;
    }
    out
}

fn compacted_size(xcr0: u64) -> usize {
    compacted_regions(xcr0).last().map_or(576, |r| r.offset + r.size)
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

/// The running kernel's release (`uname -r`), recorded with benchmark results beside the model.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "unknown".into(), |s| s.trim().into())
}

#[cfg(test)]
mod xsave_tests {
    use super::*;

    #[test]
    fn compacted_size_follows_the_sdm_layout() {
        // x87 and SSE only: the legacy area and the header.
        assert_eq!(compacted_size(0b11), 576);
        assert!(
            std::arch::is_x86_feature_detected!("xsavec"),
            "this CPU has no XSAVEC ({}): the compacted layout cannot be checked",
            model_name()
        );
        let xcr0 = xcr0().unwrap();
        let size = compacted_size(xcr0);
        // CPUID.(0DH,1).EBX is the compacted size of XCR0 | IA32_XSS: an upper bound.
        let with_supervisor = xsave_leaf().unwrap().xsave_size() as usize;
        assert!(size <= with_supervisor, "{size} > {with_supervisor}");
        // Never larger than the standard format, which has room for every XCR0 component.
        assert!(size <= xsave_area_size().unwrap());
        if xcr0 & 0b100 != 0 {
            // AVX's upper halves: 256 bytes right after the header (SDM Vol. 1 §13.4.3).
            assert_eq!(compacted_regions(xcr0)[0], Region { component: 2, offset: 576, size: 256 });
        }
        assert_eq!(xsave_format().map(|f| f.1), Some(size));
    }
}
