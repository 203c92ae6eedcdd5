// SPDX-License-Identifier: GPL-2.0 OR MIT
//! ABI of kmod_uintr (`/dev/synergy_uintr`) and the hardware encodings of Intel user interrupts
//! (UINTR, Intel SDM Vol. 3 ch. "User Interrupts"): the UPID, UITT entries and the values of the
//! IA32_UINTR_* MSRs, as plain `const fn`s so that user-space tests check every bit against the
//! SDM layout and the module computes the same values from the same source.

use super::ioctl::{io, ior, iow, iowr};

/// The module's device node.
pub const DEVICE_PATH: &str = "/dev/synergy_uintr";
/// The ioctl type of `/dev/synergy_uintr`.
pub const IOC_MAGIC: u8 = 0xB6;
/// 2: valid registrations set the hardware up (1 refused them all).
pub const ABI_VERSION: u32 = 3;

// ---- Hardware facts -------------------------------------------------------------------------

/// CPUID.(EAX=7, ECX=0):EDX bit 5: the CPU supports user interrupts.
pub const CPUID_7_0_EDX_UINTR: u32 = 1 << 5;
/// Whether this CPU supports user interrupts (CPUID.(7,0):EDX\[5\]). Used by the runtime, the
/// guest tests and the kernel module alike.
pub fn cpu_has_uintr() -> bool {
    // cpuid exists on every x86-64 CPU, and leaf 7 on every CPU this project runs on.
    core::arch::x86_64::__cpuid_count(7, 0).edx & CPUID_7_0_EDX_UINTR != 0
}

// ---- The user-interrupt instructions ---------------------------------------------------------
//
// Written as bytes (the SDM's encodings) so no assembler support is needed. Each raises #UD
// without CR4.UINTR (SIGILL in user space); SENDUIPI also raises #UD without a valid
// IA32_UINTR_TT and #GP for an index past UITTSZ or an invalid entry (SIGSEGV). None can corrupt
// memory: the UITT and the UPIDs it names belong to the kernel module, which validated them.

/// SENDUIPI with UITT index `index` (F3 0F C7 /6, register form with rax): posts the entry's
/// vector into its receiver's UPID and notifies it. Changes no register or flag.
#[inline(always)]
pub fn senduipi(index: u64) {
    // SAFETY: see the section comment: at worst a fault, never a memory effect outside the
    // module's UITT/UPID.
    unsafe {
        core::arch::asm!(".byte 0xf3, 0x0f, 0xc7, 0xf0", in("rax") index, options(nostack, preserves_flags))
    };
}

/// STUI (F3 0F 01 EF): sets UIF, letting user interrupts be delivered.
#[inline(always)]
pub fn stui() {
    // SAFETY: changes UIF only (see the section comment).
    unsafe {
        core::arch::asm!(
            ".byte 0xf3, 0x0f, 0x01, 0xef",
            options(nomem, nostack, preserves_flags)
        )
    };
}

/// CLUI (F3 0F 01 EE): clears UIF, holding user interrupts back.
#[inline(always)]
pub fn clui() {
    // SAFETY: changes UIF only (see the section comment).
    unsafe {
        core::arch::asm!(
            ".byte 0xf3, 0x0f, 0x01, 0xee",
            options(nomem, nostack, preserves_flags)
        )
    };
}

/// TESTUI (F3 0F 01 ED): UIF, which the instruction copies into CF.
#[inline(always)]
pub fn testui() -> bool {
    let cf: u8;
    // SAFETY: reads UIF only (see the section comment); `setc` writes the output register.
    unsafe {
        core::arch::asm!(".byte 0xf3, 0x0f, 0x01, 0xed", "setc {0}", out(reg_byte) cf, options(nomem, nostack))
    };
    cf != 0
}

/// CR4.UINTR (bit 25) enables user interrupts.
pub const CR4_UINTR: u64 = 1 << 25;

/// IA32_UINTR_RR: the user-interrupt request register (pending vectors).
pub const MSR_IA32_UINTR_RR: u32 = 0x985;
/// IA32_UINTR_HANDLER: the user handler's address.
pub const MSR_IA32_UINTR_HANDLER: u32 = 0x986;
/// IA32_UINTR_STACKADJUST: the stack adjustment (bit 0: load instead of subtract).
pub const MSR_IA32_UINTR_STACKADJUST: u32 = 0x987;
/// IA32_UINTR_MISC: the UITT's highest valid index, UITTSZ (bits 31:0), and the notification vector UINV (bits 39:32).
pub const MSR_IA32_UINTR_MISC: u32 = 0x988;
/// IA32_UINTR_PD: the receiver's UPID address.
pub const MSR_IA32_UINTR_PD: u32 = 0x989;
/// IA32_UINTR_TT: the sender's UITT address (bit 0: valid).
pub const MSR_IA32_UINTR_TT: u32 = 0x98A;

/// The notification vector (UINV) kmod_uintr gives every receiver: Linux's
/// POSTED_INTR_NESTED_VECTOR, which exists when KVM is configured and whose kernel handler only
/// acknowledges the interrupt. A module cannot install an IDT entry, and a notification that
/// reaches a CPU where the receiver is not running (it was switched out after the sender read its
/// UPID) is an ordinary interrupt on this vector there: it must be harmless. The PIR bits it
/// carried are moved into the receiver's UIRR when it is next scheduled in.
pub const UINV: u8 = 0xF0;

/// User vectors are 0..63 (a bit each in UIRR and the PIR).
pub const USER_VECTORS: u32 = 64;
/// UITT entries this ABI allows per process.
pub const UITT_ENTRIES: u32 = 256;
/// The UPID is 16 bytes used, 64-byte aligned (its address's bits 5:0 are reserved).
pub const UPID_ALIGN: u64 = 64;
/// UITT entries are 16 bytes; the UITT is 16-byte aligned (IA32_UINTR_TT bits 3:1 reserved).
pub const UITT_ENTRY_LEN: usize = 16;

/// An encoding refused because a field does not fit or an address is misaligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// A vector beyond the field's bits (user vectors are 0..=63).
    VectorOutOfRange,
    /// An address not aligned as the SDM requires.
    Misaligned,
    /// An address not canonical.
    NotCanonical,
}

/// Canonical for the paging mode: bits 63:47 all equal with 4-level paging, bits 63:56 with
/// 5-level paging (CR4.LA57; the kernel's direct map then lies at 0xff11_0000_0000_0000).
pub const fn canonical(a: u64, la57: bool) -> bool {
    let top = if la57 { a >> 56 } else { a >> 47 };
    top == 0 || top == if la57 { 0xff } else { 0x1_ffff }
}

/// CR4.LA57 (bit 12): 5-level paging.
pub const CR4_LA57: u64 = 1 << 12;

/// The first 8 bytes of a UPID ("notification control"): ON (bit 0), SN (bit 1), NV (bits 23:16)
/// and NDST (bits 63:32). In xAPIC mode the 8-bit APIC ID goes into NDST bits 15:8 (UPID bits
/// 47:40); in x2APIC mode NDST is the 32-bit x2APIC ID.
pub const fn upid_control(on: bool, sn: bool, nv: u8, apic_id: u32, x2apic: bool) -> u64 {
    let ndst: u64 = if x2apic {
        apic_id as u64
    } else {
        ((apic_id & 0xff) as u64) << 8
    };
    (on as u64) | ((sn as u64) << 1) | ((nv as u64) << 16) | (ndst << 32)
}

/// The UPID control's ON bit (outstanding notification).
pub const fn upid_on(control: u64) -> bool {
    control & 1 != 0
}
/// The UPID control's SN bit (suppress notification).
pub const fn upid_sn(control: u64) -> bool {
    control & 2 != 0
}
/// The UPID control's notification vector.
pub const fn upid_nv(control: u64) -> u8 {
    (control >> 16) as u8
}
/// The UPID control's notification destination (APIC ID, encoded as `upid_control` says).
pub const fn upid_ndst(control: u64) -> u32 {
    (control >> 32) as u32
}

/// A UITT entry: bit 0 valid, bits 13:8 the user vector (bits 15:14 zero), bytes 8..16 the UPID's
/// address (64-byte aligned).
pub const fn uitt_entry(user_vector: u8, upid_addr: u64) -> Result<[u64; 2], EncodeError> {
    if user_vector as u32 >= USER_VECTORS {
        return Err(EncodeError::VectorOutOfRange);
    }
    if !upid_addr.is_multiple_of(UPID_ALIGN) {
        return Err(EncodeError::Misaligned);
    }
    Ok([1 | ((user_vector as u64) << 8), upid_addr])
}

/// IA32_UINTR_MISC: UITTSZ (bits 31:0, the highest valid UITT index) and UINV (bits 39:32, the
/// notification vector); bits 63:40 reserved.
pub const fn misc_msr(uitt_highest_index: u32, uinv: u8) -> u64 {
    (uitt_highest_index as u64) | ((uinv as u64) << 32)
}

/// IA32_UINTR_TT: bit 0 enables SENDUIPI, bits 63:4 the UITT's address (16-byte aligned).
pub const fn tt_msr(uitt_addr: u64, enabled: bool, la57: bool) -> Result<u64, EncodeError> {
    if !uitt_addr.is_multiple_of(16) {
        return Err(EncodeError::Misaligned);
    }
    if !canonical(uitt_addr, la57) {
        return Err(EncodeError::NotCanonical);
    }
    Ok(uitt_addr | enabled as u64)
}

/// IA32_UINTR_PD: the UPID's address (bits 5:0 reserved).
pub const fn pd_msr(upid_addr: u64, la57: bool) -> Result<u64, EncodeError> {
    if !upid_addr.is_multiple_of(UPID_ALIGN) {
        return Err(EncodeError::Misaligned);
    }
    if !canonical(upid_addr, la57) {
        return Err(EncodeError::NotCanonical);
    }
    Ok(upid_addr)
}

/// IA32_UINTR_STACKADJUST: with bit 0 clear, delivery subtracts the value from RSP (skipping the
/// red zone); with bit 0 set, RSP is loaded with the value (bit 0 cleared). Either way the result
/// is then aligned down to 16 bytes.
pub const fn stack_adjust_msr(value: u64, load: bool) -> Result<u64, EncodeError> {
    if value & 1 != 0 {
        return Err(EncodeError::Misaligned);
    }
    if load && !canonical(value, false) {
        return Err(EncodeError::NotCanonical);
    }
    Ok(value | load as u64)
}

/// IA32_UINTR_HANDLER: the handler's linear address.
pub const fn handler_msr(handler: u64) -> Result<u64, EncodeError> {
    if !canonical(handler, false) {
        return Err(EncodeError::NotCanonical);
    }
    Ok(handler)
}

// ---- The ioctl ABI --------------------------------------------------------------------------

/// Answer of `IOC_VERSION`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UintrVersion {
    /// The module's `ABI_VERSION`.
    pub abi_version: u32,
    /// 1 if the CPU supports UINTR (CPUID.7.0:EDX\[5\]), else 0: every registration then fails
    /// with EOPNOTSUPP.
    pub supported: u32,
    /// CPUs the module has prepared for user interrupts (CR4.UINTR set where `supported`): its
    /// CPU-hotplug callback prepares each CPU that comes online and forgets each that goes
    /// offline, so this equals the number of online CPUs while the module is loaded (ABI 3).
    pub cpus_ready: u32,
    /// Reserved, always 0.
    pub reserved: u32,
}

/// `UintrReceiver::flags`: `stack_adjust` is an RSP to load, not an amount to subtract.
pub const RECEIVER_STACK_LOAD: u32 = 1;

/// Argument of `IOC_REGISTER_RECEIVER`: registers the calling (pinned) thread.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UintrReceiver {
    /// User address of the handler (entered with the vector, RIP, RFLAGS and RSP pushed).
    pub handler: u64,
    /// Bytes to skip below the interrupted RSP (even, at most `MAX_STACK_SKIP`), or with
    /// `RECEIVER_STACK_LOAD` the user stack pointer to switch to.
    pub stack_adjust: u64,
    /// `RECEIVER_STACK_LOAD` or 0; other bits must be 0.
    pub flags: u32,
    /// Out: the receiver's id, for `IOC_REGISTER_SENDER`.
    pub receiver_id: u32,
}

/// The receiver id handed out after `last` (ids start at 1, `FIRST_RECEIVER_ID`), or `None` once
/// the 32-bit space is used up: an id is never handed out twice, so a sender can never name a
/// newer receiver by an old id (issue 40, item 4). Registration then fails with ENOSPC. At one
/// registration per microsecond that takes 71 minutes of nothing but registering; the module
/// says so in the log when it happens, and reloading it starts over.
pub const fn next_receiver_id(last: u32) -> Option<u32> {
    if last == u32::MAX - 1 {
        None
    } else {
        Some(last + 1)
    }
}

/// The first receiver id (0 is never an id: `UintrReceiver::receiver_id` must be 0 on input).
pub const FIRST_RECEIVER_ID: u32 = 1;

/// Largest subtractive stack adjustment accepted (the red zone is 128 bytes).
pub const MAX_STACK_SKIP: u64 = 4096;

/// Argument of `IOC_REGISTER_SENDER`: lets the calling thread `senduipi` to a receiver of its own
/// process with user vector `vector`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UintrSender {
    /// A receiver of the caller's own process (`UintrReceiver::receiver_id`).
    pub receiver_id: u32,
    /// The user vector to post (0..=63).
    pub vector: u32,
    /// Out: the UITT index to pass to `senduipi`.
    pub uitt_index: u32,
    /// Must be 0.
    pub flags: u32,
}

/// Reads the module's `UintrVersion`.
pub const IOC_VERSION: u32 = ior::<UintrVersion>(IOC_MAGIC, 0x00);
/// Registers the calling thread as a receiver: its UPID is allocated and its
/// IA32_UINTR_{HANDLER,STACKADJUST,MISC,PD,RR} are loaded whenever it runs (and cleared when it
/// does not). UIF starts at 0: the thread executes `stui` when it is ready for interrupts.
/// EINVAL (flags, handler, stack_adjust), EFAULT, EBUSY (thread already a receiver, or
/// registered through another file), ENOSPC (every receiver id used: `next_receiver_id`),
/// ESTALE (the thread registered through this file before it exec'd), EOPNOTSUPP (no UINTR).
pub const IOC_REGISTER_RECEIVER: u32 = iowr::<UintrReceiver>(IOC_MAGIC, 0x01);
/// ENOENT (the calling thread is not a receiver through this file).
pub const IOC_UNREGISTER_RECEIVER: u32 = io(IOC_MAGIC, 0x02);
/// EINVAL (flags, vector >= 64), EFAULT, ENOENT (no such receiver), EPERM (another process's),
/// ESTALE (a receiver this process registered before it exec'd), ENOSPC (UITT full),
/// EOPNOTSUPP (no UINTR).
pub const IOC_REGISTER_SENDER: u32 = iowr::<UintrSender>(IOC_MAGIC, 0x03);
/// ENOENT (the calling thread is not a sender through this file).
pub const IOC_UNREGISTER_SENDER: u32 = io(IOC_MAGIC, 0x04);

/// Answer of `IOC_FAKE_STATE`: the calling CPU's registers under the module's fake UINTR backend
/// (kmod_uintr/hw.rs; a test build loaded with `fake_hardware=1`), and its counters. Addresses
/// (PD, TT) are reported only as set or not.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UintrFakeState {
    /// IA32_UINTR_HANDLER.
    pub handler: u64,
    /// IA32_UINTR_STACKADJUST.
    pub stack_adjust: u64,
    /// IA32_UINTR_MISC.
    pub misc: u64,
    /// IA32_UINTR_RR.
    pub rr: u64,
    /// MSR reads since the module loaded, every CPU.
    pub msr_reads: u64,
    /// MSR writes since the module loaded, every CPU.
    pub msr_writes: u64,
    /// Scheduler callbacks (`sched_in` and `sched_out`) of registered threads since the module loaded.
    pub switches: u64,
    /// RCU grace periods tear-downs waited for since the module loaded.
    pub grace_periods: u64,
    /// The CPU that answered.
    pub cpu: u32,
    /// IA32_UINTR_PD is non-zero.
    pub pd_set: u32,
    /// IA32_UINTR_TT's valid bit.
    pub tt_valid: u32,
    /// UIF.
    pub uif: u32,
    /// CR4.UINTR.
    pub cr4_uintr: u32,
    /// Thread states in the module's registry.
    pub live_states: u32,
}

/// Test builds only: the calling CPU's fake UINTR registers (`UintrFakeState`). ENOTTY unless
/// the module runs its fake backend.
pub const IOC_FAKE_STATE: u32 = ior::<UintrFakeState>(IOC_MAGIC, 0x7f);

/// Test builds only: the next N (a u32) MSR writes of the fake backend fault, as a `#GP` caught
/// by the kernel's `_safe` accessor would (fault injection). ENOTTY unless the module runs its
/// fake backend.
pub const IOC_FAKE_FAIL_WRITES: u32 = iow::<u32>(IOC_MAGIC, 0x7d);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    /// Ids are never reused: the last one handed out is u32::MAX - 1, then none (issue 40,
    /// item 4; the module's AtomicU32 wrapped to 0 and then to live ids before).
    #[test]
    fn receiver_ids_stop_at_the_boundary_instead_of_wrapping() {
        assert_eq!(next_receiver_id(FIRST_RECEIVER_ID), Some(2));
        assert_eq!(next_receiver_id(u32::MAX - 2), Some(u32::MAX - 1));
        assert_eq!(next_receiver_id(u32::MAX - 1), None);
        let mut id = u32::MAX - 3;
        let mut handed_out = 0;
        while let Some(next) = next_receiver_id(id) {
            assert!(next > id, "ids only grow: {id} -> {next}");
            assert_ne!(next, 0, "0 is never an id");
            id = next;
            handed_out += 1;
        }
        assert_eq!((id, handed_out), (u32::MAX - 1, 2));
    }

    #[test]
    fn upid_control_matches_the_sdm_layout() {
        // ON=1, SN=0, NV=0xF0, x2APIC destination 0x1234_5678.
        let c = upid_control(true, false, 0xF0, 0x1234_5678, true);
        assert_eq!(c, 0x1234_5678_00F0_0001);
        assert!(upid_on(c) && !upid_sn(c));
        assert_eq!((upid_nv(c), upid_ndst(c)), (0xF0, 0x1234_5678));
        // SN is bit 1; reserved bits 15:2 and 31:24 stay zero.
        let s = upid_control(false, true, 0xFF, 0, true);
        assert_eq!(s, 0x0000_0000_00FF_0002);
        assert_eq!(s & 0xFF00_FFFC, 0);
        // xAPIC: an 8-bit APIC ID in bits 47:40.
        assert_eq!(
            upid_control(false, false, 0, 0x7, false),
            0x0000_0700_0000_0000
        );
        assert_eq!(
            upid_control(false, false, 0, 0x1FF, false) >> 40,
            0xFF,
            "xAPIC IDs are 8 bits"
        );
    }

    #[test]
    fn uitt_entries_match_the_sdm_layout() {
        assert_eq!(uitt_entry(0, 0x1000), Ok([0x1, 0x1000]));
        assert_eq!(
            uitt_entry(63, 0xffff_8880_0000_0040),
            Ok([0x3F01, 0xffff_8880_0000_0040])
        );
        assert_eq!(uitt_entry(64, 0x1000), Err(EncodeError::VectorOutOfRange));
        assert_eq!(uitt_entry(1, 0x1020), Err(EncodeError::Misaligned));
        // Bits 7:1 and 15:14 of the first word are reserved and never set.
        for v in 0..64u8 {
            assert_eq!(uitt_entry(v, 0).unwrap()[0] & !0x3F01, 0);
        }
        assert_eq!(UITT_ENTRY_LEN, 16);
    }

    #[test]
    fn msr_values() {
        assert_eq!(misc_msr(255, 0xF0), 0x0000_00F0_0000_00FF);
        assert_eq!(misc_msr(0, 0xEC) >> 40, 0, "bits 63:40 reserved");
        assert_eq!(
            tt_msr(0xffff_8880_1234_5670, true, false),
            Ok(0xffff_8880_1234_5671)
        );
        assert_eq!(tt_msr(0x1000, false, false), Ok(0x1000));
        assert_eq!(tt_msr(0x1008, true, false), Err(EncodeError::Misaligned));
        assert_eq!(
            tt_msr(0x0000_8000_0000_0000, true, false),
            Err(EncodeError::NotCanonical)
        );
        // 5-level paging: the direct map's addresses, canonical only there.
        assert_eq!(
            tt_msr(0xff11_0000_0000_1000, true, true),
            Ok(0xff11_0000_0000_1001)
        );
        assert_eq!(
            tt_msr(0xff11_0000_0000_1000, true, false),
            Err(EncodeError::NotCanonical)
        );
        assert_eq!(
            tt_msr(0xfe00_0000_0000_0000, true, true),
            Err(EncodeError::NotCanonical)
        );
        assert_eq!(
            pd_msr(0xff11_0000_0000_0040, true),
            Ok(0xff11_0000_0000_0040)
        );
        assert_eq!(
            pd_msr(0xff11_0000_0000_0040, false),
            Err(EncodeError::NotCanonical)
        );
        assert_eq!(CR4_LA57, 0x1000);
        assert_eq!(
            pd_msr(0xffff_8880_0000_0040, false),
            Ok(0xffff_8880_0000_0040)
        );
        assert_eq!(
            pd_msr(0xffff_8880_0000_0020, false),
            Err(EncodeError::Misaligned)
        );
        assert_eq!(
            stack_adjust_msr(128, false),
            Ok(128),
            "subtract 128 (the red zone)"
        );
        assert_eq!(
            stack_adjust_msr(0x7fff_0000_1000, true),
            Ok(0x7fff_0000_1001),
            "load mode sets bit 0"
        );
        assert_eq!(stack_adjust_msr(129, false), Err(EncodeError::Misaligned));
        assert_eq!(
            handler_msr(0x0000_5555_0000_1000),
            Ok(0x0000_5555_0000_1000)
        );
        assert_eq!(
            handler_msr(0x0001_0000_0000_0000),
            Err(EncodeError::NotCanonical)
        );
        assert_eq!(
            [
                MSR_IA32_UINTR_RR,
                MSR_IA32_UINTR_HANDLER,
                MSR_IA32_UINTR_STACKADJUST,
                MSR_IA32_UINTR_MISC,
                MSR_IA32_UINTR_PD,
                MSR_IA32_UINTR_TT
            ],
            [0x985, 0x986, 0x987, 0x988, 0x989, 0x98A]
        );
        assert_eq!(CR4_UINTR, 0x0200_0000);
        assert_eq!(CPUID_7_0_EDX_UINTR, 0x20);
        // A system vector (>= FIRST_SYSTEM_VECTOR 0xEB on Linux 7.3), not a device vector.
        assert_eq!(UINV, 0xF0);
        assert_eq!(misc_msr(UITT_ENTRIES - 1, UINV), 0xF0_0000_00FF);
    }

    #[test]
    fn abi_is_pinned() {
        assert_eq!(
            (size_of::<UintrVersion>(), align_of::<UintrVersion>()),
            (16, 4)
        );
        assert_eq!(
            (size_of::<UintrReceiver>(), align_of::<UintrReceiver>()),
            (24, 8)
        );
        assert_eq!(
            (size_of::<UintrSender>(), align_of::<UintrSender>()),
            (16, 4)
        );
        assert_eq!(IOC_VERSION, 0x8010_B600);
        assert_eq!(IOC_REGISTER_RECEIVER, 0xC018_B601);
        assert_eq!(IOC_UNREGISTER_RECEIVER, 0x0000_B602);
        assert_eq!(IOC_REGISTER_SENDER, 0xC010_B603);
        assert_eq!(IOC_UNREGISTER_SENDER, 0x0000_B604);
    }
}
