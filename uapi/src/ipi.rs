// SPDX-License-Identifier: GPL-2.0 OR MIT
//! ABI of kmod_ipi (`/dev/synergy_ipi`). Compiled by user space (the `synergy-uapi` crate) and by
//! the kernel module itself (`#[path]`-included next to `ioctl.rs`): one source of truth.
//!
//! Protocol: a worker thread, pinned to one CPU, registers itself as that CPU's receiver with
//! `IOC_REGISTER`, giving a `handler` address and a `rip_slot` (a u64 in its own memory). The timer
//! core calls `IOC_SEND` with the CPU. The module interrupts that CPU; if the receiver is running
//! there (in user or kernel mode), then on its next return to user mode — and only while
//! `*rip_slot == 0` — the module stores the interrupted user rip in `*rip_slot` and resumes the
//! thread at `handler`, every other register untouched. The handler must push the rip and reset
//! the slot to 0. A receiver that is not running on its CPU is a *miss*: nothing is delivered, the
//! sender retries later.

use super::ioctl::{io, ior, iow, iowr};

/// Path of the misc device.
pub const DEVICE_PATH: &str = "/dev/synergy_ipi";
/// Name of the misc device (as registered).
pub const DEVICE_NAME: &str = "synergy_ipi";
/// ioctl "type" byte of kmod_ipi.
pub const IOC_MAGIC: u8 = 0xB5;
/// Bumped on every incompatible change.
pub const ABI_VERSION: u32 = 2;
/// CPUs the module can serve (receivers live in a fixed table).
pub const MAX_CPUS: u32 = 64;

/// Answer of `IOC_VERSION`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpiVersion {
    /// The module's `ABI_VERSION`.
    pub abi_version: u32,
    /// Reserved, always 0.
    pub flags: u32,
}

/// Argument of `IOC_REGISTER`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpiRegister {
    /// User address to resume the interrupted thread at.
    pub handler: u64,
    /// User address of an 8-byte aligned, writable u64: the interrupted rip is stored there.
    pub rip_slot: u64,
    /// Out: the CPU the caller was registered on.
    pub cpu: u32,
    /// Must be 0.
    pub flags: u32,
}

/// Argument of `IOC_CPU_APIC_ID`: `cpu` in, `apic_id` out.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpiCpuApic {
    /// In: a CPU number (below `MAX_CPUS`, online).
    pub cpu: u32,
    /// Out: that CPU's APIC ID.
    pub apic_id: u32,
}

/// Argument of `IOC_SEND`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpiSend {
    /// Target CPU, or an APIC ID with `SEND_BY_APIC_ID`.
    pub target: u32,
    /// `SEND_BY_APIC_ID` or 0; other bits must be 0.
    pub flags: u32,
}

/// `IpiSend::flags`: `target` is an APIC ID.
pub const SEND_BY_APIC_ID: u32 = 1;

/// Answer of `IOC_STATS`: counters of the caller's own registration.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpiStats {
    /// IPIs sent to this receiver.
    pub sent: u64,
    /// Interrupts that redirected the thread into its handler.
    pub delivered: u64,
    /// The receiver was not running on its CPU when the IPI arrived.
    pub missed_not_running: u64,
    /// A delivery was still pending (queued, or the rip slot not yet reset).
    pub missed_busy: u64,
    /// The rip slot could not be read or written, or the thread was exiting.
    pub missed_fault: u64,
}

/// Reads the module's ABI version.
pub const IOC_VERSION: u32 = ior::<IpiVersion>(IOC_MAGIC, 0x00);
/// Registers the calling thread as the receiver of the CPU it runs on; it must stay pinned there
/// (an IPI finds it only while it runs on that CPU).
/// Errors: EINVAL (bad flags/handler/slot, CPU >= MAX_CPUS),
/// EFAULT (slot not writable), EBUSY (CPU taken, or the thread already registered).
pub const IOC_REGISTER: u32 = iowr::<IpiRegister>(IOC_MAGIC, 0x01);
/// Unregisters the calling thread. ENOENT if it is not registered through this file.
pub const IOC_UNREGISTER: u32 = io(IOC_MAGIC, 0x02);
/// CPU -> APIC ID. EINVAL for a CPU that does not exist.
pub const IOC_CPU_APIC_ID: u32 = iowr::<IpiCpuApic>(IOC_MAGIC, 0x03);
/// Interrupts the receiver of a CPU. EINVAL (bad CPU/APIC ID or flags), ENOENT (no receiver),
/// EPERM (the receiver belongs to another process).
pub const IOC_SEND: u32 = iow::<IpiSend>(IOC_MAGIC, 0x04);
/// Counters of the caller's registration. ENOENT if not registered through this file.
pub const IOC_STATS: u32 = ior::<IpiStats>(IOC_MAGIC, 0x05);
