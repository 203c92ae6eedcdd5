// SPDX-License-Identifier: GPL-2.0

//! Every access kmod_uintr makes to the UINTR hardware, in one place: the UINTR MSRs (and the
//! APIC base), CR4.UINTR, UIF (`stui`/`clui`/`testui`) and the CPUID feature bit.
//!
//! **The fake backend** (issue 40): QEMU/TCG has no UINTR, so on the test bench every
//! registration would stop at EOPNOTSUPP and none of the module's lifetime logic would run. A
//! module built for the test kernel (`--cfg synergy_test_build`, set only by the QEMU bench's
//! module build, never by the package build) takes the parameter `fake_hardware=1`, with which
//! these functions act on a recorded per-CPU copy of the registers instead of the hardware: the
//! MSRs read back what was written on that CPU, CR4.UINTR and UIF are per-CPU flags, the CPU
//! "has" UINTR, and every MSR access is counted. Registration, migration, tear-down and exit then
//! run unchanged under TCG and KASAN, and the debug ioctl `IOC_FAKE_STATE` (answered only in
//! fake mode) shows the calling CPU's registers and the access counts. Nothing is delivered: a
//! real `senduipi` needs the hardware (the Bochs run covers that).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::bindings;

use crate::abi;

extern "C" {
    fn cr4_update_irqsoff(set: core::ffi::c_ulong, clear: core::ffi::c_ulong);
    fn cr4_read_shadow() -> core::ffi::c_ulong;
}

/// IA32_APIC_BASE and its x2APIC-enable bit.
pub(crate) const MSR_IA32_APICBASE: u32 = 0x1B;
pub(crate) const APICBASE_X2APIC: u64 = 1 << 10;

/// Set once at module init from the `fake_hardware` parameter (test builds only).
static FAKE: AtomicBool = AtomicBool::new(false);

/// MSR accesses that faulted (#GP, handled by the kernel's `_safe` accessors): counted here and
/// reported when the module unloads, since they happen in scheduler callbacks where printing is
/// not allowed.
pub(crate) static MSR_FAULTS: AtomicU64 = AtomicU64::new(0);
/// Fake mode: the next this many MSR writes fault (`IOC_FAKE_FAIL_WRITES`), as a `#GP` the
/// `_safe` accessor caught would.
static FAIL_WRITES: AtomicU64 = AtomicU64::new(0);

/// Fake mode: makes the next `n` MSR writes fail.
pub(crate) fn fake_fail_writes(n: u64) {
    FAIL_WRITES.store(n, Ordering::Relaxed);
}

/// Fake mode: MSR reads and writes, all CPUs together.
pub(crate) static MSR_READS: AtomicU64 = AtomicU64::new(0);
pub(crate) static MSR_WRITES: AtomicU64 = AtomicU64::new(0);

/// CPUs the fake keeps registers for; a CPU beyond it is refused at module init.
pub(crate) const FAKE_CPUS: usize = 64;
/// The MSRs the fake records, in this order.
const FAKE_MSRS: [u32; 7] = [
    abi::MSR_IA32_UINTR_RR,
    abi::MSR_IA32_UINTR_HANDLER,
    abi::MSR_IA32_UINTR_STACKADJUST,
    abi::MSR_IA32_UINTR_MISC,
    abi::MSR_IA32_UINTR_PD,
    abi::MSR_IA32_UINTR_TT,
    MSR_IA32_APICBASE,
];

/// One CPU's fake registers.
struct FakeCpu {
    msrs: [AtomicU64; FAKE_MSRS.len()],
    cr4_uintr: AtomicBool,
    uif: AtomicBool,
}

static FAKE_CPU: [FakeCpu; FAKE_CPUS] = [const {
    FakeCpu {
        msrs: [const { AtomicU64::new(0) }; FAKE_MSRS.len()],
        cr4_uintr: AtomicBool::new(false),
        uif: AtomicBool::new(false),
    }
}; FAKE_CPUS];

/// Chooses the backend; called once at init, before any other function here.
pub(crate) fn init(fake: bool) -> Result<(), kernel::error::Error> {
    if fake && crate::cpu_task::nr_cpu_ids() > FAKE_CPUS {
        return Err(kernel::error::code::EINVAL);
    }
    if fake {
        // x2APIC mode, as on the test bench's guest (the UPID's destination encoding follows it).
        for c in &FAKE_CPU {
            c.msrs[6].store(APICBASE_X2APIC, Ordering::Relaxed);
        }
    }
    FAKE.store(fake, Ordering::Relaxed);
    Ok(())
}

/// Whether the fake backend is in use.
pub(crate) fn fake() -> bool {
    FAKE.load(Ordering::Relaxed)
}

/// The calling CPU. Callers run with interrupts or preemption off (the scheduler callbacks,
/// `on_own_cpu`, the hotplug callbacks, the debug ioctl), so it does not change under them.
fn this_cpu() -> usize {
    // SAFETY: raw_smp_processor_id has no preconditions.
    unsafe { bindings::raw_smp_processor_id() as usize }
}

/// `cpu`'s fake registers.
fn fake_cpu(cpu: usize) -> &'static FakeCpu {
    &FAKE_CPU[cpu.min(FAKE_CPUS - 1)]
}

/// The calling CPU's fake registers (see `this_cpu`).
fn this_fake_cpu() -> &'static FakeCpu {
    fake_cpu(this_cpu())
}

fn fake_index(msr: u32) -> usize {
    FAKE_MSRS.iter().position(|&m| m == msr).unwrap_or(0)
}

/// Whether this CPU supports UINTR (the fake always does).
pub(crate) fn cpu_has_uintr() -> bool {
    fake() || abi::cpu_has_uintr()
}

/// Reads `msr` through the kernel's exception-handled accessor (`rdmsr_safe_regs`): a read that
/// faults returns 0 and is counted in `MSR_FAULTS` instead of oopsing. Safe: reading an MSR has
/// no side effects and a fault is handled.
pub(crate) fn rdmsr(msr: u32) -> u64 {
    if fake() {
        MSR_READS.fetch_add(1, Ordering::Relaxed);
        return this_fake_cpu().msrs[fake_index(msr)].load(Ordering::Relaxed);
    }
    // The register image of `rdmsr_safe_regs`: eax, ecx, edx, ebx, esp (unused), ebp, esi, edi.
    let mut regs = [0u32, msr, 0, 0, 0, 0, 0, 0];
    // SAFETY: `regs` is the 8-register array the function reads and writes.
    if unsafe { bindings::rdmsr_safe_regs(regs.as_mut_ptr()) } != 0 {
        MSR_FAULTS.fetch_add(1, Ordering::Relaxed);
        return 0;
    }
    (u64::from(regs[2]) << 32) | u64::from(regs[0])
}

/// Writes `v` to `msr` through the kernel's exception-handled accessor (`wrmsr_safe_regs`): a
/// write that faults changes nothing, is counted in `MSR_FAULTS`, and returns false (the ioctl
/// paths then roll back and answer EIO).
///
/// # Safety
/// `msr` is a UINTR MSR of this CPU and `v` a value valid for it (computed by `abi`'s encoders
/// from checked inputs), and the caller runs with interrupts off on the CPU it means to program,
/// as the thread whose image it loads: a valid write changes how this CPU delivers user
/// interrupts to the running thread.
#[must_use]
pub(crate) unsafe fn wrmsr(msr: u32, v: u64) -> bool {
    if fake() {
        MSR_WRITES.fetch_add(1, Ordering::Relaxed);
        let fail = FAIL_WRITES
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            MSR_FAULTS.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        this_fake_cpu().msrs[fake_index(msr)].store(v, Ordering::Relaxed);
        return true;
    }
    let mut regs = [v as u32, msr, (v >> 32) as u32, 0, 0, 0, 0, 0];
    // SAFETY: `regs` is the 8-register array the function reads; the write's effect is the
    // caller's contract.
    if unsafe { bindings::wrmsr_safe_regs(regs.as_mut_ptr()) } != 0 {
        MSR_FAULTS.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    true
}

/// Sets or clears CR4.UINTR on this CPU.
///
/// # Safety
/// Interrupts are off (what `cr4_update_irqsoff` needs), on the CPU to change.
pub(crate) unsafe fn cr4_set_uintr(on: bool) {
    if fake() {
        this_fake_cpu().cr4_uintr.store(on, Ordering::Relaxed);
        return;
    }
    let bit = abi::CR4_UINTR as core::ffi::c_ulong;
    // SAFETY: per the contract.
    unsafe {
        if on {
            cr4_update_irqsoff(bit, 0)
        } else {
            cr4_update_irqsoff(0, bit)
        }
    };
}

/// Whether CR4.UINTR is set on this CPU.
pub(crate) fn cr4_has_uintr() -> bool {
    if fake() {
        return this_fake_cpu().cr4_uintr.load(Ordering::Relaxed);
    }
    // SAFETY: reads this CPU's shadow; a stale answer after migration only means a CPU that also
    // has CR4.UINTR set (every online CPU does while the module is loaded).
    let cr4 = unsafe { cr4_read_shadow() } as u64;
    cr4 & abi::CR4_UINTR != 0
}

/// 5-level paging (kernel addresses are then 57-bit canonical).
pub(crate) fn la57() -> bool {
    // SAFETY: reads this CPU's shadow; LA57 is the same on every CPU and never changes.
    let cr4 = unsafe { cr4_read_shadow() } as u64;
    cr4 & abi::CR4_LA57 != 0
}

/// Sets UIF (user interrupts enabled). CR4.UINTR is set on this CPU.
pub(crate) fn stui() {
    if fake() {
        this_fake_cpu().uif.store(true, Ordering::Relaxed);
    } else {
        abi::stui()
    }
}

/// Clears UIF. CR4.UINTR is set on this CPU.
pub(crate) fn clui() {
    if fake() {
        this_fake_cpu().uif.store(false, Ordering::Relaxed);
    } else {
        abi::clui()
    }
}

/// UIF. CR4.UINTR is set on this CPU.
pub(crate) fn testui() -> bool {
    if fake() {
        this_fake_cpu().uif.load(Ordering::Relaxed)
    } else {
        abi::testui()
    }
}

/// The calling CPU's fake registers, for the debug ioctl: addresses are reported only as set or
/// not (no kernel address leaves the module).
pub(crate) fn fake_state(
    switches: u64,
    grace_periods: u64,
    live_states: u32,
) -> abi::UintrFakeState {
    let cpu = this_cpu();
    let c = fake_cpu(cpu);
    let m = |msr: u32| c.msrs[fake_index(msr)].load(Ordering::Relaxed);
    abi::UintrFakeState {
        handler: m(abi::MSR_IA32_UINTR_HANDLER),
        stack_adjust: m(abi::MSR_IA32_UINTR_STACKADJUST),
        misc: m(abi::MSR_IA32_UINTR_MISC),
        rr: m(abi::MSR_IA32_UINTR_RR),
        msr_reads: MSR_READS.load(Ordering::Relaxed),
        msr_writes: MSR_WRITES.load(Ordering::Relaxed),
        switches,
        grace_periods,
        cpu: cpu as u32,
        pd_set: u32::from(m(abi::MSR_IA32_UINTR_PD) != 0),
        tt_valid: u32::from(m(abi::MSR_IA32_UINTR_TT) & 1 != 0),
        uif: u32::from(c.uif.load(Ordering::Relaxed)),
        cr4_uintr: u32::from(c.cr4_uintr.load(Ordering::Relaxed)),
        live_states,
    }
}
