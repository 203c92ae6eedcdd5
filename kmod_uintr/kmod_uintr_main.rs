// SPDX-License-Identifier: GPL-2.0

//! kmod_uintr: Intel user interrupts (UINTR) for synergy's `--preempt=uintr`.
//!
//! On a CPU with UINTR (CPUID.(7,0):EDX[5]) the module sets CR4.UINTR on every online CPU through
//! the kernel's CR4 shadow when it loads (and clears it when it unloads), and keeps per-thread
//! state for the threads registered through `/dev/synergy_uintr` (ABI: `uapi/src/uintr.rs`,
//! compiled here from the same file):
//!
//! * a **receiver** owns a UPID (64-byte aligned; notification vector `UINV`, destination = the
//!   APIC ID of the CPU it currently runs on, ON/SN, PIR) and an image of
//!   IA32_UINTR_{HANDLER,STACKADJUST,MISC,PD,RR} and of UIF;
//! * a **sender** owns a UITT (256 entries of 16 bytes) whose entries point at receivers' UPIDs,
//!   and the image of IA32_UINTR_TT and MISC.UITTSZ.
//!
//! The image is loaded into the MSRs only while the thread runs: a preempt notifier registered on
//! the thread loads it in `sched_in` (re-targeting the UPID at the new CPU, so migration is
//! handled, and clearing SN/ON) and in `sched_out` saves UIRR and UIF, sets SN (senders then only
//! post into the PIR, without an IPI) and zeroes every UINTR MSR, so no other thread ever runs
//! with them. Linux does not save UIF or UIRR (its XSAVE supervisor state has no UINTR
//! component), hence the save/restore here.
//!
//! A notification that arrives while the receiver runs in kernel mode is processed by the CPU
//! (the UINV match does not depend on CPL): the PIR moves into UIRR and the interrupt is delivered
//! on the return to user mode. One that arrives after the receiver was switched out is an
//! ordinary interrupt on `UINV` (Linux's POSTED_INTR_NESTED_VECTOR, whose handler only
//! acknowledges it); its ON bit and PIR bits stay in the UPID, and the receiver's next `sched_in`
//! moves the PIR into UIRR and clears ON, so ON can never stay set and block later notifications.
//!
//! Lifetimes. A thread's state is reference counted: the registry holds one reference, and a
//! queued tear-down task_work another. Its preempt notifier is only ever linked and unlinked by
//! the thread itself (`on_own_cpu`: a function call on its own CPU with interrupts off), as the
//! scheduler walks that list without a lock on the thread's context switches. Closing the file
//! (also on process exit) tears down every registration made through it: the calling thread's at
//! once; a living thread's through a task_work it runs on its next return to user mode or in its
//! exit (it is marked defunct first, so it never loads the image again); a dead thread's — its
//! final `sched_out` saw TASK_DEAD — after an RCU grace period, once that last notifier call has
//! returned. UPIDs are reference counted by their receiver and by every UITT entry naming them, so
//! a sender can never post into freed memory. Queued task_works and open files hold the module.
//!
//! The misc device is root-only (0600); a sender can only name receivers of its own process.

use core::{
    ffi::{c_int, c_uint, c_ulong, c_void},
    ptr::null_mut,
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
};
use kernel::{
    bindings, container_of,
    fs::File,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    new_mutex,
    prelude::*,
    sync::{aref::ARef, Arc, Completion, Mutex},
    task::Task,
    types::Opaque,
    uaccess::{UserPtr, UserSlice},
};

#[path = "../kmod_common/arc_of_field.rs"]
mod arc_of_field;
#[path = "../kmod_common/c_layout.rs"]
mod c_layout;
#[path = "../kmod_common/cpu_task.rs"]
mod cpu_task;
#[path = "../kmod_common/module_put_tail.rs"]
mod module_put_tail;
use arc_of_field::arc_of_field;
use cpu_task::{apic_id, current_exec_id, ThreadGroup, USER_ADDR_MAX};
use module_put_tail::callback_then_module_put;

#[path = "../uapi/src/uintr.rs"]
#[allow(dead_code, unreachable_pub)]
mod abi;
#[path = "../uapi/src/ioctl.rs"]
#[allow(dead_code, unreachable_pub)]
mod ioctl;

const _: () = assert!(
    abi::IOC_VERSION == kernel::ioctl::_IOR::<abi::UintrVersion>(abi::IOC_MAGIC as u32, 0x00)
);
const _: () = assert!(
    abi::IOC_REGISTER_RECEIVER
        == kernel::ioctl::_IOWR::<abi::UintrReceiver>(abi::IOC_MAGIC as u32, 0x01)
);
const _: () =
    assert!(abi::IOC_UNREGISTER_RECEIVER == kernel::ioctl::_IO(abi::IOC_MAGIC as u32, 0x02));
const _: () = assert!(
    abi::IOC_REGISTER_SENDER
        == kernel::ioctl::_IOWR::<abi::UintrSender>(abi::IOC_MAGIC as u32, 0x03)
);
const _: () =
    assert!(abi::IOC_UNREGISTER_SENDER == kernel::ioctl::_IO(abi::IOC_MAGIC as u32, 0x04));
const _: () = assert!(abi::UINV as u32 == bindings::POSTED_INTR_NESTED_VECTOR);

// SAFETY: `repr(C)` structs of u32/u64 fields without padding: all bytes initialised, every bit
// pattern valid.
unsafe impl kernel::transmute::AsBytes for abi::UintrVersion {}
// SAFETY: see above.
unsafe impl kernel::transmute::FromBytes for abi::UintrReceiver {}
// SAFETY: see above.
unsafe impl kernel::transmute::AsBytes for abi::UintrReceiver {}
// SAFETY: see above.
unsafe impl kernel::transmute::FromBytes for abi::UintrSender {}
// SAFETY: see above.
unsafe impl kernel::transmute::AsBytes for abi::UintrSender {}

module! {
    type: SynergyUintr,
    name: "kmod_uintr",
    authors: ["synergy developers"],
    description: "synergy: Intel user interrupts (UINTR) set-up",
    license: "GPL",
}

// The kernel's CR4 shadow accessors (arch/x86/kernel/cpu/common.c). Linux 7.3 exports them to KVM
// only; scripts/kernel/patches/7.3/0001-*.patch (applied by build.sh and package.sh) exports them
// to this module as well.
extern "C" {
    fn cr4_update_irqsoff(set: c_ulong, clear: c_ulong);
    fn cr4_read_shadow() -> c_ulong;
}

const UITT_LEN: usize = abi::UITT_ENTRIES as usize;
const MSR_IA32_APICBASE: u32 = 0x1B;
const APICBASE_X2APIC: u64 = 1 << 10;
const UPID_SN: u64 = 2;

static SUPPORTED: AtomicBool = AtomicBool::new(false);
/// The last receiver id handed out (`abi::next_receiver_id` gives the next, never wrapping).
static LAST_RECEIVER_ID: AtomicU32 = AtomicU32::new(abi::FIRST_RECEIVER_ID - 1);
static NEXT_FILE_ID: AtomicU64 = AtomicU64::new(1);

kernel::sync::global_lock! {
    // SAFETY: initialised in the module initialiser, before the device exists.
    unsafe(uninit) static REGISTRY: Mutex<KVec<Arc<ThreadState>>> = KVec::new();
}

// ---- Hardware access (only ever reached on a CPU with UINTR) ----------------------------------

/// MSR accesses that faulted (#GP, handled by the kernel's `_safe` accessors): counted here and
/// reported when the module unloads, since they happen in scheduler callbacks where printing is
/// not allowed.
static MSR_FAULTS: AtomicU64 = AtomicU64::new(0);

/// Reads `msr` through the kernel's exception-handled accessor (`rdmsr_safe_regs`): a read that
/// faults returns 0 and is counted in `MSR_FAULTS` instead of oopsing. Safe: reading an MSR has
/// no side effects and a fault is handled.
fn rdmsr(msr: u32) -> u64 {
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
/// write that faults changes nothing and is counted in `MSR_FAULTS`.
///
/// # Safety
/// `msr` is a UINTR MSR of this CPU and `v` a value valid for it (computed by `abi`'s encoders
/// from checked inputs), and the caller runs with interrupts off on the CPU it means to program,
/// as the thread whose image it loads: a valid write changes how this CPU delivers user
/// interrupts to the running thread.
unsafe fn wrmsr(msr: u32, v: u64) {
    let mut regs = [v as u32, msr, (v >> 32) as u32, 0, 0, 0, 0, 0];
    // SAFETY: `regs` is the 8-register array the function reads; the write's effect is the
    // caller's contract.
    if unsafe { bindings::wrmsr_safe_regs(regs.as_mut_ptr()) } != 0 {
        MSR_FAULTS.fetch_add(1, Ordering::Relaxed);
    }
}

/// 5-level paging (kernel addresses are then 57-bit canonical).
fn la57() -> bool {
    // SAFETY: reads this CPU's shadow; LA57 is the same on every CPU and never changes.
    let cr4 = unsafe { cr4_read_shadow() } as u64;
    cr4 & abi::CR4_LA57 != 0
}

fn cr4_has_uintr() -> bool {
    // SAFETY: reads this CPU's shadow; a stale answer after migration only means a CPU that also
    // has CR4.UINTR set (every online CPU does while the module is loaded).
    let cr4 = unsafe { cr4_read_shadow() } as u64;
    cr4 & abi::CR4_UINTR != 0
}

/// CPUs prepared by `cpu_online` and not yet forgotten by `cpu_offline` (`UintrVersion::cpus_ready`).
static CPUS_READY: AtomicU32 = AtomicU32::new(0);
/// Set by module exit before it removes the hotplug state: `cpu_offline` then clears CR4.UINTR.
static UNLOADING: AtomicBool = AtomicBool::new(false);

/// CPU-hotplug startup callback (state `CPUHP_AP_ONLINE_DYN`): runs on `cpu` itself, for every
/// CPU online when the module loads and for each brought online later (a CPU starts with
/// CR4.UINTR clear: `cr4_init` does not know about it). It runs before the CPU is marked active,
/// so no user thread is scheduled there before CR4.UINTR is set.
///
/// # Safety
/// Called only by the CPU-hotplug core, on the CPU coming online (state set up by `HwEnable`).
unsafe extern "C" fn cpu_online(_cpu: c_uint) -> c_int {
    if SUPPORTED.load(Ordering::Relaxed) {
        let _irqs_off = kernel::interrupt::local_interrupt_disable();
        // SAFETY: interrupts are off, as cr4_update_irqsoff needs; we run on the CPU to change.
        unsafe { cr4_update_irqsoff(abi::CR4_UINTR as c_ulong, 0) };
    }
    CPUS_READY.fetch_add(1, Ordering::Relaxed);
    0
}

/// CPU-hotplug teardown callback: runs on `cpu` when it goes offline, and on every online CPU
/// when module exit removes the state. Only module exit clears CR4.UINTR: a CPU going offline
/// may still run a registered thread until the scheduler pushes it away, and loses its CR4 when
/// it goes down anyway.
///
/// # Safety
/// Called only by the CPU-hotplug core, on the CPU going offline or at the state's removal.
unsafe extern "C" fn cpu_offline(_cpu: c_uint) -> c_int {
    if SUPPORTED.load(Ordering::Relaxed) && UNLOADING.load(Ordering::Acquire) {
        let _irqs_off = kernel::interrupt::local_interrupt_disable();
        // SAFETY: as in `cpu_online`. No thread has UINTR state left at module exit (every file
        // is closed and every queued tear-down has run: they hold the module).
        unsafe { cr4_update_irqsoff(0, abi::CR4_UINTR as c_ulong) };
    }
    CPUS_READY.fetch_sub(1, Ordering::Relaxed);
    0
}

// ---- Per-thread state ------------------------------------------------------------------------

/// User posted-interrupt descriptor (SDM layout; `abi::upid_control` encodes the first word).
#[repr(C, align(64))]
struct Upid {
    control: AtomicU64,
    pir: AtomicU64,
}

#[repr(C, align(16))]
struct UittEntry {
    word0: AtomicU64,
    upid: AtomicU64,
}

#[repr(C, align(16))]
struct Uitt {
    entries: [UittEntry; UITT_LEN],
}

struct ReceiverPart {
    id: u32,
    upid: Arc<Upid>,
}

struct SenderPart {
    uitt: KBox<Uitt>,
    /// `targets[i]` is the UPID entry `i` names: the entry's reference.
    targets: KVec<Arc<Upid>>,
}

#[derive(Default)]
struct Parts {
    receiver: Option<ReceiverPart>,
    sender: Option<SenderPart>,
}

/// What the thread's UINTR MSRs and UIF hold while it runs. Written by the thread itself (with
/// interrupts off, in `on_own_cpu`) and by its own context switches.
#[derive(Default)]
struct Image {
    handler: AtomicU64,
    stack_adjust: AtomicU64,
    misc: AtomicU64,
    pd: AtomicU64,
    tt: AtomicU64,
    uirr: AtomicU64,
    uif: AtomicBool,
}

#[pin_data]
struct ThreadState {
    /// Linked into the task's preempt notifiers from `attach` until `detach`.
    notifier: Opaque<bindings::preempt_notifier>,
    /// The tear-down task_work queued by `release` for a thread other than the caller.
    work: Opaque<bindings::callback_head>,
    task: ARef<Task>,
    /// The thread's process, compared by identity (not by a namespace's pid number).
    group: ThreadGroup,
    /// The program image that registered (`current_exec_id`): once the thread has exec'd, its
    /// image is never loaded again and senders cannot reach its receiver.
    exec_id: u64,
    /// Id of the file it was registered through.
    owner: u64,
    img: Image,
    /// The image is in this CPU's MSRs right now (between a load and the next save).
    loaded: AtomicBool,
    attached: AtomicBool,
    /// Set when the file is closed: the thread no longer loads its image.
    defunct: AtomicBool,
    /// Set by the thread's final `sched_out` (TASK_DEAD): no notifier call follows.
    dead: AtomicBool,
    /// Queued by that final `sched_out`; signals `exited` (`on_dead`).
    dead_work: Opaque<bindings::irq_work>,
    /// Complete once the final `sched_out` has run (`wait_dead_and_free` waits for it).
    #[pin]
    exited: Completion,
    #[pin]
    parts: Mutex<Parts>,
}

// SAFETY: `notifier` and `work` are only touched through raw pointers by their owning kernel
// lists and by this module under the protocol described in the module docs; everything else is
// atomic, immutable after construction, or behind `parts`' mutex. `ARef<Task>` is Send + Sync.
unsafe impl Send for ThreadState {}
// SAFETY: see above.
unsafe impl Sync for ThreadState {}

static PREEMPT_OPS: bindings::preempt_ops = bindings::preempt_ops {
    sched_in: Some(sched_in),
    sched_out: Some(sched_out),
};

/// The ThreadState whose `notifier` field `n` is.
///
/// # Safety
/// `n` must be the `notifier` field of a live ThreadState (every notifier registered with
/// PREEMPT_OPS is, and stays allocated while it is linked; see the module docs), and the
/// reference must not outlive that.
unsafe fn state_of_notifier<'a>(n: *mut bindings::preempt_notifier) -> &'a ThreadState {
    // SAFETY: see the function's contract: `n` points into a live ThreadState.
    unsafe {
        &*container_of!(
            n.cast::<Opaque<bindings::preempt_notifier>>(),
            ThreadState,
            notifier
        )
    }
}

impl ThreadState {
    fn upid(&self) -> Option<&Upid> {
        let pd = self.img.pd.load(Ordering::Relaxed);
        // SAFETY: `pd` is non-zero only while the receiver part holds the UPID: the thread clears
        // it (in its own context, interrupts off) before dropping that part.
        (pd != 0).then(|| unsafe { &*(pd as *const Upid) })
    }

    /// Loads the image into this CPU's MSRs and re-targets the UPID at this CPU. Interrupts off,
    /// running as the state's thread, CR4.UINTR set.
    fn load(&self, cpu: usize) {
        let img = &self.img;
        // SAFETY: interrupts are off; every value was produced by `abi`'s encoders from checked
        // input (or is 0). PD is written before MISC, so UINV never names a stale descriptor.
        unsafe {
            wrmsr(
                abi::MSR_IA32_UINTR_HANDLER,
                img.handler.load(Ordering::Relaxed),
            );
            wrmsr(
                abi::MSR_IA32_UINTR_STACKADJUST,
                img.stack_adjust.load(Ordering::Relaxed),
            );
            wrmsr(abi::MSR_IA32_UINTR_PD, img.pd.load(Ordering::Relaxed));
            wrmsr(abi::MSR_IA32_UINTR_TT, img.tt.load(Ordering::Relaxed));
            wrmsr(abi::MSR_IA32_UINTR_MISC, img.misc.load(Ordering::Relaxed));
        }
        let mut uirr = img.uirr.load(Ordering::Relaxed);
        if let Some(upid) = self.upid() {
            let x2apic = rdmsr(MSR_IA32_APICBASE) & APICBASE_X2APIC != 0;
            // Re-arm: destination = this CPU, SN = ON = 0. A sender that saw SN set only posted
            // into the PIR; one that set ON and sent to our previous CPU had its notification
            // taken there as an ordinary interrupt. Either way the request is in the PIR, taken
            // next; a sender after this point notifies this CPU (handled once interrupts are on).
            upid.control.swap(
                abi::upid_control(false, false, abi::UINV, apic_id(cpu).unwrap_or(0), x2apic),
                Ordering::SeqCst,
            );
            uirr |= upid.pir.swap(0, Ordering::SeqCst);
        }
        // SAFETY: as above; UIRR accepts any 64-bit value.
        unsafe { wrmsr(abi::MSR_IA32_UINTR_RR, uirr) };
        img.uirr.store(0, Ordering::Relaxed);
        // CR4.UINTR is set on every CPU while the module is loaded.
        if img.uif.load(Ordering::Relaxed) {
            abi::stui()
        } else {
            abi::clui()
        }
        self.loaded.store(true, Ordering::Relaxed);
    }

    /// Saves UIRR and UIF, suppresses notifications and clears every UINTR MSR. Interrupts off,
    /// running as the state's thread.
    fn save_and_clear(&self) {
        if let Some(upid) = self.upid() {
            upid.control.fetch_or(UPID_SN, Ordering::SeqCst);
        }
        if !self.loaded.swap(false, Ordering::Relaxed) {
            return;
        }
        self.img.uif.store(abi::testui(), Ordering::Relaxed);
        // MISC first: from here on a late notification on UINV is an ordinary interrupt.
        // SAFETY: interrupts are off; zero is valid for every UINTR MSR.
        unsafe { wrmsr(abi::MSR_IA32_UINTR_MISC, 0) };
        let uirr = rdmsr(abi::MSR_IA32_UINTR_RR);
        self.img.uirr.store(uirr, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe {
            wrmsr(abi::MSR_IA32_UINTR_RR, 0);
            wrmsr(abi::MSR_IA32_UINTR_PD, 0);
            wrmsr(abi::MSR_IA32_UINTR_TT, 0);
            wrmsr(abi::MSR_IA32_UINTR_HANDLER, 0);
            wrmsr(abi::MSR_IA32_UINTR_STACKADJUST, 0);
        }
        abi::clui();
    }

    /// Runs `f` as this thread on its CPU with interrupts off (no context switch, hence no
    /// notifier call, can interleave). Must be called by the thread itself.
    fn on_own_cpu(&self, f: &mut dyn FnMut(usize)) -> Result {
        struct Call<'a> {
            task: *mut bindings::task_struct,
            f: &'a mut dyn FnMut(usize),
            ran: bool,
        }
        /// # Safety
        /// Called only by `smp_call_function_single` with `info` pointing at a live `Call`.
        unsafe extern "C" fn run(info: *mut c_void) {
            // SAFETY: `info` is the `Call` below, alive until smp_call_function_single returns
            // (wait = true).
            let call = unsafe { &mut *info.cast::<Call<'_>>() };
            if Task::current_raw() == call.task {
                // SAFETY: we run on this CPU with interrupts off.
                let cpu = unsafe { bindings::raw_smp_processor_id() } as usize;
                (call.f)(cpu);
                call.ran = true;
            }
        }
        let mut call = Call {
            task: self.task.as_ptr(),
            f,
            ran: false,
        };
        // The thread may migrate between reading its CPU and the call; then the function runs on
        // the old CPU for another task, does nothing, and we try again.
        for _ in 0..1000 {
            // SAFETY: no preconditions; the answer may be stale (see above).
            let cpu = unsafe { bindings::raw_smp_processor_id() } as c_int;
            // SAFETY: `run` is a valid smp_call_func_t and `call` outlives the call (wait = 1).
            let rc = unsafe {
                bindings::smp_call_function_single(
                    cpu,
                    Some(run),
                    (&raw mut call).cast::<c_void>(),
                    true,
                )
            };
            if rc != 0 {
                return Err(Error::from_errno(rc));
            }
            if call.ran {
                return Ok(());
            }
        }
        Err(EAGAIN)
    }

    /// Links the notifier into the calling thread's list and loads the (empty) image.
    fn attach(&self) -> Result {
        let n = self.notifier.get();
        self.on_own_cpu(&mut |cpu| {
            // SAFETY: `n` is ours, unlinked, and lives as long as the state; we run as the
            // thread, interrupts off, so no context switch walks its list meanwhile.
            unsafe {
                (*n).link = bindings::hlist_node {
                    next: null_mut(),
                    pprev: null_mut(),
                };
                (*n).ops = (&raw const PREEMPT_OPS).cast_mut();
                bindings::preempt_notifier_register(n);
            }
            self.attached.store(true, Ordering::Release);
            self.load(cpu);
        })
    }

    /// Clears the MSRs and unlinks the notifier. Must be called by the thread itself.
    fn detach(&self) -> Result {
        if !self.attached.load(Ordering::Acquire) {
            return Ok(());
        }
        let n = self.notifier.get();
        self.on_own_cpu(&mut |_| {
            self.save_and_clear();
            // SAFETY: linked by `attach` on this same thread; we run as it, interrupts off.
            unsafe { bindings::preempt_notifier_unregister(n) };
            self.attached.store(false, Ordering::Release);
        })
    }

    /// Applies a change of the image (made by `change`) to this thread's MSRs. Must be called by
    /// the thread itself.
    fn update(&self, change: &mut dyn FnMut(&Image)) -> Result {
        self.on_own_cpu(&mut |cpu| {
            self.save_and_clear();
            change(&self.img);
            self.load(cpu);
        })
    }
}

/// # Safety
/// Called only by the scheduler, for a notifier linked by `link_notifier`.
unsafe extern "C" fn sched_in(n: *mut bindings::preempt_notifier, cpu: c_int) {
    // SAFETY: the scheduler calls us only for notifiers linked with PREEMPT_OPS.
    let s = unsafe { state_of_notifier(n) };
    let task = s.task.as_ptr();
    // SAFETY: `task` is current (the notifier is on its list); `flags` is a plain field.
    let exiting = unsafe { (*task).flags } & bindings::PF_EXITING != 0;
    // A defunct or exiting thread never returns to user mode with UINTR again; a CPU without
    // CR4.UINTR (brought online after the module loaded) cannot take the image.
    if s.defunct.load(Ordering::Acquire) || exiting || !cr4_has_uintr() {
        return;
    }
    // SAFETY: `task` is current (see above): reading its own exec generation does not race.
    if unsafe { (*task).self_exec_id } != s.exec_id {
        // The thread exec'd: its handler address means nothing in the new program. Never load
        // the image again (the file's release tears the rest down).
        s.defunct.store(true, Ordering::Release);
        return;
    }
    // Called with preemption off but interrupts on: no notification may be processed between the
    // MSR writes and the PIR hand-over. The kernel's own irq-state API (traced, nestable).
    let _irqs_off = kernel::interrupt::local_interrupt_disable();
    s.load(cpu as usize);
}

/// # Safety
/// Called only by the scheduler, for a notifier linked by `link_notifier`.
unsafe extern "C" fn sched_out(
    n: *mut bindings::preempt_notifier,
    _next: *mut bindings::task_struct,
) {
    // Called with interrupts off (the runqueue lock is held).
    // SAFETY: the scheduler calls us only for notifiers linked with PREEMPT_OPS.
    let s = unsafe { state_of_notifier(n) };
    s.save_and_clear();
    // SAFETY: `task` is current; `__state` precedes `stack` in task_struct, where the binding's
    // layout matches C's (see `cpu_task::ThreadGroup`).
    let state = unsafe { core::ptr::read_volatile(&raw const (*s.task.as_ptr()).__state) };
    if state == bindings::TASK_DEAD && !s.dead.swap(true, Ordering::AcqRel) {
        // SAFETY: `dead_work` is initialised and queued at most once (the swap above); the state
        // outlives it (`on_dead`'s contract). irq_work_queue may be called with the runqueue lock
        // held and interrupts off.
        unsafe { bindings::irq_work_queue(s.dead_work.get()) };
    }
}

callback_then_module_put! {
    /// The task_work `release` queues on a living registered thread other than the caller: the
    /// thread detaches itself (`teardown_body`), then the module reference taken when it was
    /// queued is dropped with no instruction of this module after that
    /// (`kmod_common/module_put_tail.rs`).
    teardown_work(*mut bindings::callback_head) => teardown_body
}

/// # Safety
/// Called only by `teardown_work` with the `work` field of a ThreadState whose reference the
/// queued work owns.
unsafe extern "C" fn teardown_body(head: *mut bindings::callback_head) {
    // SAFETY: `head` is the `work` field of a ThreadState whose reference the work owns.
    let s = unsafe { arc_of_field!(head, ThreadState, work) };
    if s.detach().is_err() {
        leak(s, c"could not detach an exiting thread's UINTR state");
    } else {
        drop(s);
    }
}

/// Leaks a state whose notifier may still be linked into its thread's list: the memory must
/// outlive any further notifier call, and so must the module text `PREEMPT_OPS` points into, so
/// the leak also takes a module reference that is never dropped (`rmmod` then refuses).
fn leak(s: Arc<ThreadState>, why: &CStr) {
    pr_err!(
        "{}; leaking it and pinning the module\n",
        why.to_str().unwrap_or("leak")
    );
    // SAFETY: THIS_MODULE is this module, live while this code runs.
    unsafe { bindings::__module_get(this_module()) };
    core::mem::forget(s);
}

fn this_module() -> *mut bindings::module {
    <SynergyUintr as kernel::ModuleMetadata>::THIS_MODULE.as_ptr()
}

/// Tears down a state removed from the registry by `release`.
fn teardown(s: Arc<ThreadState>) {
    if s.task.as_ptr() == Task::current_raw() {
        if s.detach().is_err() {
            leak(s, c"could not detach a thread's UINTR state");
        }
        return;
    }
    s.defunct.store(true, Ordering::Release);
    if !s.attached.load(Ordering::Acquire) || s.dead.load(Ordering::Acquire) {
        return wait_dead_and_free(s);
    }
    // SAFETY: THIS_MODULE is this module; the open file being released still holds it.
    if unsafe { bindings::try_module_get(this_module()) } {
        let raw = Arc::into_raw(s.clone()).cast_mut();
        // SAFETY: `work` is ours and never queued before (each state is released once).
        let rc = unsafe {
            let w = (*raw).work.get();
            (*w).next = null_mut();
            (*w).func = Some(teardown_work);
            bindings::task_work_add(
                s.task.as_ptr(),
                w,
                bindings::task_work_notify_mode_TWA_RESUME,
            )
        };
        if rc == 0 {
            return;
        }
        // SAFETY: undo the reference and module reference taken for the work.
        drop(unsafe { Arc::from_raw(raw) });
        // SAFETY: pairs with the try_module_get above.
        unsafe { bindings::module_put(this_module()) };
    }
    // The thread is past running task_works in its exit: it is about to die.
    wait_dead_and_free(s);
}

/// Frees the state of a thread that is dead or about to die, once its final context switch has
/// called the notifier for the last time. Waits, without polling, for the completion that
/// switch signals (`sched_out` → `dead_work` → `exited`): a thread past running its task_works is
/// in its last steps of `do_exit`.
fn wait_dead_and_free(s: Arc<ThreadState>) {
    if s.attached.load(Ordering::Acquire) {
        s.exited.wait_for_completion();
        // `on_dead` has signalled; wait until the irq_work machinery is done with `dead_work`
        // (its BUSY flag is cleared after the callback returned).
        // SAFETY: `dead_work` was queued (the completion proves it) and is never queued again.
        unsafe { bindings::irq_work_sync(s.dead_work.get()) };
        // The final sched_out ran with interrupts off, a read-side critical section: after a
        // grace period it has returned, and the dead thread never walks its notifiers again.
        // SAFETY: process context.
        unsafe { bindings::synchronize_rcu() };
    }
    drop(s);
}

/// The irq_work the final `sched_out` of a registered thread queues: it runs in hard-irq context
/// once that switch has released the runqueue lock (waking a waiter under it could deadlock), and
/// signals `exited`.
///
/// # Safety
/// Called only by the irq_work machinery with the `dead_work` field of a live ThreadState (the
/// state is freed only after `irq_work_sync` on it, in `wait_dead_and_free`).
unsafe extern "C" fn on_dead(w: *mut bindings::irq_work) {
    // SAFETY: see the function's contract: `w` points into a live ThreadState.
    let s = unsafe {
        &*container_of!(
            w.cast::<Opaque<bindings::irq_work>>(),
            ThreadState,
            dead_work
        )
    };
    s.exited.complete_all();
}

// ---- The device ------------------------------------------------------------------------------

#[pin_data]
struct SynergyUintr {
    #[pin]
    _miscdev: MiscDeviceRegistration<UintrFile>,
    _hw: HwEnable,
}

/// While the module is loaded: CR4.UINTR on every online CPU, kept so across CPU hotplug by a
/// dynamic hotplug state (registered with or without UINTR, so `cpus_ready` is observable on
/// any CPU), and the preempt-notifier key.
struct HwEnable {
    supported: bool,
    /// The dynamic `cpuhp_state` number `__cpuhp_setup_state` returned.
    hotplug_state: c_int,
}

impl HwEnable {
    fn new() -> Result<HwEnable> {
        c_layout::check()?;
        let supported = abi::cpu_has_uintr();
        SUPPORTED.store(supported, Ordering::Relaxed);
        if supported {
            // SAFETY: process context; pairs with preempt_notifier_dec in Drop (or below).
            unsafe { bindings::preempt_notifier_inc() };
        }
        // SAFETY: process context; the callbacks are valid for the module's lifetime (Drop
        // removes the state); invoke = true runs `cpu_online` on every online CPU now.
        let state = unsafe {
            bindings::__cpuhp_setup_state(
                bindings::cpuhp_state_CPUHP_AP_ONLINE_DYN,
                c"synergy/kmod_uintr:online".as_char_ptr(),
                true,
                Some(cpu_online),
                Some(cpu_offline),
                false,
            )
        };
        if state < 0 {
            if supported {
                // SAFETY: pairs with the preempt_notifier_inc above.
                unsafe { bindings::preempt_notifier_dec() };
            }
            return Err(Error::from_errno(state));
        }
        Ok(HwEnable {
            supported,
            hotplug_state: state,
        })
    }
}

impl Drop for HwEnable {
    fn drop(&mut self) {
        UNLOADING.store(true, Ordering::Release);
        // Every file is closed and every queued tear-down has run (they hold the module), so
        // no thread has UINTR state in any CPU's MSRs. invoke = true: `cpu_offline` clears
        // CR4.UINTR on every online CPU.
        // SAFETY: the state `new` set up, removed once.
        unsafe {
            bindings::__cpuhp_remove_state(self.hotplug_state as bindings::cpuhp_state, true)
        };
        if self.supported {
            // SAFETY: pairs with preempt_notifier_inc in `new`.
            unsafe { bindings::preempt_notifier_dec() };
        }
        let faults = MSR_FAULTS.load(Ordering::Relaxed);
        if faults != 0 {
            pr_warn!(
                "{} UINTR MSR accesses faulted (handled) while loaded\n",
                faults
            );
        }
    }
}

impl kernel::InPlaceModule for SynergyUintr {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        // SAFETY: called once, before anything can use the registry.
        unsafe { REGISTRY.init() };
        try_pin_init!(Self {
            _hw: {
                let hw = HwEnable::new()?;
                if hw.supported {
                    pr_info!("loaded (ABI {}); UINTR enabled on {} CPUs (CR4.UINTR, kept across CPU hotplug), notification vector {:#x}\n", abi::ABI_VERSION, CPUS_READY.load(Ordering::Relaxed), abi::UINV);
                } else {
                    pr_info!("loaded (ABI {}); this CPU has no UINTR (CPUID.7.0:EDX[5] = 0): registrations get EOPNOTSUPP\n", abi::ABI_VERSION);
                }
                hw
            },
            _miscdev <- MiscDeviceRegistration::register(MiscDeviceOptions { name: c"synergy_uintr" }),
        })
    }
}

struct UintrFile {
    id: u64,
}

fn user_code_addr(a: u64) -> bool {
    a != 0 && a <= USER_ADDR_MAX
}

fn check_receiver(r: &abi::UintrReceiver) -> Result<u64> {
    if r.flags & !abi::RECEIVER_STACK_LOAD != 0 || r.receiver_id != 0 || !user_code_addr(r.handler)
    {
        return Err(EINVAL);
    }
    let load = r.flags & abi::RECEIVER_STACK_LOAD != 0;
    if load {
        // An RSP to load: a 16-byte aligned user address.
        if !user_code_addr(r.stack_adjust) || r.stack_adjust % 16 != 0 {
            return Err(EINVAL);
        }
    } else if r.stack_adjust % 8 != 0 || r.stack_adjust > abi::MAX_STACK_SKIP {
        return Err(EINVAL);
    }
    abi::handler_msr(r.handler).map_err(|_| EINVAL)?;
    abi::stack_adjust_msr(r.stack_adjust, load).map_err(|_| EINVAL)
}

fn check_sender(s: &abi::UintrSender) -> Result {
    if s.flags != 0 || s.uitt_index != 0 || s.vector >= abi::USER_VECTORS {
        return Err(EINVAL);
    }
    Ok(())
}

/// The calling thread's state registered through file `owner`, created and attached if `create`.
/// EBUSY if the thread is registered through another file.
fn own_state(owner: u64, create: bool) -> Result<Arc<ThreadState>> {
    let me = Task::current_raw();
    let mut reg = REGISTRY.lock();
    if let Some(s) = reg
        .iter()
        .find(|s| s.task.as_ptr() == me && !s.dead.load(Ordering::Acquire))
    {
        return if s.exec_id != current_exec_id() {
            // Registered before this thread exec'd (the fd was inherited): that state belongs
            // to the old program; the file's release tears it down.
            Err(ESTALE)
        } else if s.owner == owner {
            Ok(s.clone())
        } else {
            Err(EBUSY)
        };
    }
    if !create {
        return Err(ENOENT);
    }
    let current = kernel::current!();
    let group = ThreadGroup::of_current()?;
    let exec_id = current_exec_id();
    let s = Arc::pin_init(
        try_pin_init!(ThreadState {
            notifier: Opaque::new(bindings::preempt_notifier::default()),
            work: Opaque::new(bindings::callback_head { next: null_mut(), func: None }),
            task: ARef::from(&**current),
            group,
            exec_id,
            owner,
            img: Image::default(),
            loaded: AtomicBool::new(false),
            attached: AtomicBool::new(false),
            defunct: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            // What init_irq_work() does: a zeroed irq_work naming its function.
            dead_work: Opaque::new(bindings::irq_work {
                func: Some(on_dead),
                ..Default::default()
            }),
            exited <- Completion::new(),
            parts <- new_mutex!(Parts::default()),
        }),
        GFP_KERNEL,
    )?;
    reg.push(s.clone(), GFP_KERNEL)?;
    if let Err(e) = s.attach() {
        reg.pop();
        return Err(e);
    }
    Ok(s)
}

/// Removes the calling thread's state from the registry and detaches it once it has no part.
/// Called without the state's `parts` lock (the registry lock comes first).
fn drop_if_empty(s: &Arc<ThreadState>) -> Result {
    {
        let parts = s.parts.lock();
        if parts.receiver.is_some() || parts.sender.is_some() {
            return Ok(());
        }
    }
    REGISTRY.lock().retain(|x| !Arc::ptr_eq(x, s));
    let res = s.detach();
    if res.is_err() {
        // Still linked into the thread's notifiers: the memory must outlive it.
        leak(s.clone(), c"could not detach a thread's UINTR state");
    }
    res
}

fn register_receiver(owner: u64, r: &abi::UintrReceiver) -> Result<u32> {
    let stack_adjust = check_receiver(r)?;
    let handler = abi::handler_msr(r.handler).map_err(|_| EINVAL)?;
    let s = own_state(owner, true)?;
    let mut parts = s.parts.lock();
    if parts.receiver.is_some() {
        return Err(EBUSY);
    }
    let upid = Arc::new(
        Upid {
            control: AtomicU64::new(UPID_SN),
            pir: AtomicU64::new(0),
        },
        GFP_KERNEL,
    )?;
    let pd = abi::pd_msr(core::ptr::from_ref::<Upid>(&*upid) as u64, la57()).map_err(|e| {
        pr_err!("cannot encode IA32_UINTR_PD: {:?}\n", e);
        EINVAL
    })?;
    let Ok(last) = LAST_RECEIVER_ID.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
        abi::next_receiver_id(last)
    }) else {
        pr_warn!("every receiver id has been handed out: reload kmod_uintr to register more\n");
        return Err(ENOSPC);
    };
    // `fetch_update` returns the previous value; the one stored is the new id.
    let id = last + 1;
    let res = s.update(&mut |img| {
        img.handler.store(handler, Ordering::Relaxed);
        img.stack_adjust.store(stack_adjust, Ordering::Relaxed);
        img.pd.store(pd, Ordering::Relaxed);
        let uitt_size = img.misc.load(Ordering::Relaxed) as u32;
        img.misc
            .store(abi::misc_msr(uitt_size, abi::UINV), Ordering::Relaxed);
        img.uirr.store(0, Ordering::Relaxed);
        img.uif.store(false, Ordering::Relaxed);
    });
    if let Err(e) = res {
        drop(parts);
        drop_if_empty(&s)?;
        return Err(e);
    }
    parts.receiver = Some(ReceiverPart { id, upid });
    Ok(id)
}

fn unregister_receiver(owner: u64) -> Result {
    let s = own_state(owner, false)?;
    let mut parts = s.parts.lock();
    if parts.receiver.is_none() {
        return Err(ENOENT);
    }
    s.update(&mut |img| {
        // `save_and_clear` has set SN: senders holding this UPID only post into its PIR now.
        img.handler.store(0, Ordering::Relaxed);
        img.stack_adjust.store(0, Ordering::Relaxed);
        img.pd.store(0, Ordering::Relaxed);
        let uitt_size = img.misc.load(Ordering::Relaxed) as u32;
        img.misc
            .store(abi::misc_msr(uitt_size, 0), Ordering::Relaxed);
        img.uirr.store(0, Ordering::Relaxed);
        img.uif.store(false, Ordering::Relaxed);
    })?;
    parts.receiver = None;
    drop(parts);
    drop_if_empty(&s)
}

/// The UPID of receiver `id`, which must belong to the caller's process.
fn receiver_upid(id: u32) -> Result<Arc<Upid>> {
    let me = ThreadGroup::of_current()?;
    let reg = REGISTRY.lock();
    for s in reg.iter() {
        if s.dead.load(Ordering::Acquire) || s.defunct.load(Ordering::Acquire) {
            continue;
        }
        let parts = s.parts.lock();
        if let Some(r) = parts.receiver.as_ref().filter(|r| r.id == id) {
            return if !s.group.same_as(&me) {
                Err(EPERM)
            } else if s.exec_id != current_exec_id() {
                // Registered by this process before it exec'd.
                Err(ESTALE)
            } else {
                Ok(r.upid.clone())
            };
        }
    }
    Err(ENOENT)
}

fn register_sender(owner: u64, req: &abi::UintrSender) -> Result<u32> {
    check_sender(req)?;
    let upid = receiver_upid(req.receiver_id)?;
    let s = own_state(owner, true)?;
    let mut parts = s.parts.lock();
    if parts.sender.is_none() {
        // SAFETY: all-zero bytes are a valid Uitt (atomics), i.e. every entry invalid.
        let uitt = unsafe {
            KBox::<Uitt>::new_uninit(GFP_KERNEL | kernel::alloc::flags::__GFP_ZERO)?.assume_init()
        };
        parts.sender = Some(SenderPart {
            uitt,
            targets: KVec::new(),
        });
    }
    let Some(sender) = parts.sender.as_mut() else {
        return Err(EINVAL);
    };
    let index = sender.targets.len();
    if index >= UITT_LEN {
        return Err(ENOSPC);
    }
    let upid_addr = core::ptr::from_ref::<Upid>(&*upid) as u64;
    let [word0, word1] = abi::uitt_entry(req.vector as u8, upid_addr).map_err(|_| EINVAL)?;
    sender.targets.push(upid, GFP_KERNEL)?;
    // The address first, then the valid bit: a SENDUIPI never sees a valid entry half-written.
    sender.uitt.entries[index]
        .upid
        .store(word1, Ordering::SeqCst);
    sender.uitt.entries[index]
        .word0
        .store(word0, Ordering::SeqCst);
    let tt = abi::tt_msr(
        core::ptr::from_ref::<Uitt>(&*sender.uitt) as u64,
        true,
        la57(),
    )
    .map_err(|e| {
        pr_err!("cannot encode IA32_UINTR_TT: {:?}\n", e);
        EINVAL
    })?;
    s.update(&mut |img| {
        img.tt.store(tt, Ordering::Relaxed);
        let uinv = (img.misc.load(Ordering::Relaxed) >> 32) as u8;
        img.misc.store(
            abi::misc_msr(abi::UITT_ENTRIES - 1, uinv),
            Ordering::Relaxed,
        );
    })?;
    Ok(index as u32)
}

fn unregister_sender(owner: u64) -> Result {
    let s = own_state(owner, false)?;
    let mut parts = s.parts.lock();
    if parts.sender.is_none() {
        return Err(ENOENT);
    }
    s.update(&mut |img| {
        img.tt.store(0, Ordering::Relaxed);
        let uinv = (img.misc.load(Ordering::Relaxed) >> 32) as u8;
        img.misc.store(abi::misc_msr(0, uinv), Ordering::Relaxed);
    })?;
    // No CPU holds this UITT in IA32_UINTR_TT any more: only this thread ever loaded it.
    parts.sender = None;
    drop(parts);
    drop_if_empty(&s)
}

#[vtable]
impl MiscDevice for UintrFile {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        Ok(KBox::new(
            UintrFile {
                id: NEXT_FILE_ID.fetch_add(1, Ordering::Relaxed),
            },
            GFP_KERNEL,
        )?)
    }

    fn release(me: KBox<Self>, _file: &File) {
        let owner = me.id;
        loop {
            let next = {
                let mut reg = REGISTRY.lock();
                match reg.iter().position(|s| s.owner == owner) {
                    Some(i) => reg.remove(i).ok(),
                    None => None,
                }
            };
            match next {
                Some(s) => teardown(s),
                None => break,
            }
        }
    }

    fn ioctl(me: &UintrFile, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let size = kernel::ioctl::_IOC_SIZE(cmd);
        let user = || UserSlice::new(UserPtr::from_addr(arg), size);
        let supported = SUPPORTED.load(Ordering::Relaxed);
        match cmd {
            abi::IOC_VERSION => {
                user().writer().write(&abi::UintrVersion {
                    abi_version: abi::ABI_VERSION,
                    supported: u32::from(supported),
                    cpus_ready: CPUS_READY.load(Ordering::Relaxed),
                    reserved: 0,
                })?;
                Ok(0)
            }
            abi::IOC_REGISTER_RECEIVER => {
                let (mut reader, mut writer) = user().reader_writer();
                let mut r: abi::UintrReceiver = reader.read()?;
                check_receiver(&r)?;
                if !supported {
                    return Err(EOPNOTSUPP);
                }
                r.receiver_id = register_receiver(me.id, &r)?;
                if let Err(e) = writer.write(&r) {
                    let _ = unregister_receiver(me.id);
                    return Err(e);
                }
                Ok(0)
            }
            abi::IOC_REGISTER_SENDER => {
                let (mut reader, mut writer) = user().reader_writer();
                let mut s: abi::UintrSender = reader.read()?;
                check_sender(&s)?;
                if !supported {
                    return Err(EOPNOTSUPP);
                }
                s.uitt_index = register_sender(me.id, &s)?;
                writer.write(&s)?;
                Ok(0)
            }
            abi::IOC_UNREGISTER_RECEIVER if supported => unregister_receiver(me.id).map(|()| 0),
            abi::IOC_UNREGISTER_SENDER if supported => unregister_sender(me.id).map(|()| 0),
            abi::IOC_UNREGISTER_RECEIVER | abi::IOC_UNREGISTER_SENDER => Err(ENOENT),
            _ => Err(ENOTTY),
        }
    }
}
