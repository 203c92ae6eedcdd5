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
    ffi::{c_int, c_uint, c_void},
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
const _: () = assert!(
    abi::IOC_FAKE_STATE == kernel::ioctl::_IOR::<abi::UintrFakeState>(abi::IOC_MAGIC as u32, 0x7f)
);
const _: () =
    assert!(abi::IOC_FAKE_FAIL_WRITES == kernel::ioctl::_IOW::<u32>(abi::IOC_MAGIC as u32, 0x7d));
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
// SAFETY: see above (8 u64 then 6 u32: no padding).
unsafe impl kernel::transmute::AsBytes for abi::UintrFakeState {}

#[cfg(not(synergy_test_build))]
module! {
    type: SynergyUintr,
    name: "kmod_uintr",
    authors: ["synergy developers"],
    description: "synergy: Intel user interrupts (UINTR) set-up",
    license: "GPL",
}

// A module built for the QEMU test bench (`--cfg synergy_test_build`, scripts/kernel/modules.sh
// with SYNERGY_TEST_BUILD=1; never the package build) can run on recorded fake registers
// (hw.rs), so its lifetime logic runs where the CPU has no UINTR.
#[cfg(synergy_test_build)]
module! {
    type: SynergyUintr,
    name: "kmod_uintr",
    authors: ["synergy developers"],
    description: "synergy: Intel user interrupts (UINTR) set-up",
    license: "GPL",
    params: {
        fake_hardware: bool {
            default: false,
            description: "Test builds only: UINTR MSRs, CR4.UINTR and UIF on recorded per-CPU fakes (kmod_uintr/hw.rs)",
        },
    },
}

/// Whether the module was loaded with `fake_hardware=1` (always false outside test builds).
fn fake_hardware_requested() -> bool {
    #[cfg(synergy_test_build)]
    {
        module_parameters::fake_hardware.value()
    }
    #[cfg(not(synergy_test_build))]
    {
        false
    }
}

// The kernel's CR4 shadow accessors (arch/x86/kernel/cpu/common.c) are declared in hw.rs. Linux
// 7.3 exports them to KVM only; scripts/kernel/patches/7.3/0001-*.patch (applied by build.sh and
// package.sh) exports them to this module as well.
mod hw;
use hw::{cr4_has_uintr, la57, rdmsr, wrmsr, APICBASE_X2APIC, MSR_FAULTS, MSR_IA32_APICBASE};

/// The APIC is in x2APIC mode (the UPID's destination encoding): read by `cpu_online`.
static X2APIC: AtomicBool = AtomicBool::new(false);

/// Scheduler callbacks of registered threads (`sched_in` and `sched_out`), for the fake
/// backend's accesses per context switch (`IOC_FAKE_STATE`).
static SWITCHES: AtomicU64 = AtomicU64::new(0);

const UITT_LEN: usize = abi::UITT_ENTRIES as usize;
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
        unsafe { hw::cr4_set_uintr(true) };
        // The APIC mode, read here (and again for each CPU that comes online) instead of on
        // every `sched_in` (issue 40, item 8). Linux enables x2APIC on every CPU or on none.
        X2APIC.store(
            rdmsr(MSR_IA32_APICBASE) & APICBASE_X2APIC != 0,
            Ordering::Relaxed,
        );
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
        unsafe { hw::cr4_set_uintr(false) };
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

/// The values of an `Image`, for putting it back (`ThreadState::update`).
struct ImageValues([u64; 6], bool);

impl Image {
    fn snapshot(&self) -> ImageValues {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ImageValues(
            [
                l(&self.handler),
                l(&self.stack_adjust),
                l(&self.misc),
                l(&self.pd),
                l(&self.tt),
                l(&self.uirr),
            ],
            self.uif.load(Ordering::Relaxed),
        )
    }

    fn restore(&self, v: &ImageValues) {
        let fields = [
            &self.handler,
            &self.stack_adjust,
            &self.misc,
            &self.pd,
            &self.tt,
            &self.uirr,
        ];
        for (f, &x) in fields.iter().zip(v.0.iter()) {
            f.store(x, Ordering::Relaxed);
        }
        self.uif.store(v.1, Ordering::Relaxed);
    }
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
    /// Complete once the final `sched_out` has run (`wait_dead` waits for it).
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
    /// running as the state's thread, CR4.UINTR set. Returns false if a write faulted (every
    /// write is still tried; the ioctl paths roll back, `sched_in` can only count it).
    fn load(&self, cpu: usize) -> bool {
        let img = &self.img;
        // SAFETY: interrupts are off; every value was produced by `abi`'s encoders from checked
        // input (or is 0). PD is written before MISC, so UINV never names a stale descriptor.
        let mut ok = unsafe {
            [
                wrmsr(
                    abi::MSR_IA32_UINTR_HANDLER,
                    img.handler.load(Ordering::Relaxed),
                ),
                wrmsr(
                    abi::MSR_IA32_UINTR_STACKADJUST,
                    img.stack_adjust.load(Ordering::Relaxed),
                ),
                wrmsr(abi::MSR_IA32_UINTR_PD, img.pd.load(Ordering::Relaxed)),
                wrmsr(abi::MSR_IA32_UINTR_TT, img.tt.load(Ordering::Relaxed)),
                wrmsr(abi::MSR_IA32_UINTR_MISC, img.misc.load(Ordering::Relaxed)),
            ]
        }
        .iter()
        .all(|&w| w);
        let mut uirr = img.uirr.load(Ordering::Relaxed);
        if let Some(upid) = self.upid() {
            let x2apic = X2APIC.load(Ordering::Relaxed);
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
        ok &= unsafe { wrmsr(abi::MSR_IA32_UINTR_RR, uirr) };
        img.uirr.store(0, Ordering::Relaxed);
        // CR4.UINTR is set on every CPU while the module is loaded.
        if img.uif.load(Ordering::Relaxed) {
            hw::stui()
        } else {
            hw::clui()
        }
        self.loaded.store(true, Ordering::Relaxed);
        ok
    }

    /// Saves UIRR and UIF, suppresses notifications and clears every UINTR MSR. Interrupts off,
    /// running as the state's thread. Returns false if a write faulted (every write is still
    /// tried; the scheduler callbacks can only count it, the ioctl paths roll back).
    fn save_and_clear(&self) -> bool {
        if let Some(upid) = self.upid() {
            upid.control.fetch_or(UPID_SN, Ordering::SeqCst);
        }
        if !self.loaded.swap(false, Ordering::Relaxed) {
            return true;
        }
        self.img.uif.store(hw::testui(), Ordering::Relaxed);
        // MISC first: from here on a late notification on UINV is an ordinary interrupt.
        // A write that faults is counted in MSR_FAULTS (reported at unload) and the rest are
        // still written.
        // SAFETY: interrupts are off; zero is valid for every UINTR MSR.
        let misc = unsafe { wrmsr(abi::MSR_IA32_UINTR_MISC, 0) };
        let uirr = rdmsr(abi::MSR_IA32_UINTR_RR);
        self.img.uirr.store(uirr, Ordering::Relaxed);
        // SAFETY: as above.
        let rest = unsafe {
            [
                wrmsr(abi::MSR_IA32_UINTR_RR, 0),
                wrmsr(abi::MSR_IA32_UINTR_PD, 0),
                wrmsr(abi::MSR_IA32_UINTR_TT, 0),
                wrmsr(abi::MSR_IA32_UINTR_HANDLER, 0),
                wrmsr(abi::MSR_IA32_UINTR_STACKADJUST, 0),
            ]
        };
        hw::clui();
        misc && rest.iter().all(|&w| w)
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

    /// Links the notifier into the calling thread's list and loads the (empty) image. If a
    /// register write faults, the notifier is unlinked again and the call fails with EIO.
    fn attach(&self) -> Result {
        let n = self.notifier.get();
        let mut loaded = true;
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
            loaded = self.load(cpu);
            if !loaded {
                self.unlink();
            }
        })?;
        if loaded {
            Ok(())
        } else {
            Err(EIO)
        }
    }

    /// Clears the MSRs and unlinks the notifier. Must be called by the thread itself.
    fn detach(&self) -> Result {
        if !self.attached.load(Ordering::Acquire) {
            return Ok(());
        }
        self.on_own_cpu(&mut |_| self.unlink())
    }

    /// Clears the MSRs and unlinks the notifier `attach` linked. Runs in `on_own_cpu` (as the
    /// thread, interrupts off). It goes on whatever the registers say: a fault is counted
    /// (MSR_FAULTS).
    fn unlink(&self) {
        let _ = self.save_and_clear();
        // SAFETY: linked by `attach` on this same thread; we run as it, interrupts off, so no
        // context switch walks its list meanwhile.
        unsafe { bindings::preempt_notifier_unregister(self.notifier.get()) };
        self.attached.store(false, Ordering::Release);
    }

    /// Applies a change of the image (made by `change`) to this thread's MSRs. Must be called by
    /// the thread itself.
    /// If a register write faults (issue 40, item 7), the image before the change is put back
    /// and loaded again and the call fails with EIO, so a failed registration leaves neither
    /// half-written registers nor a half-changed image.
    fn update(&self, change: &mut dyn FnMut(&Image)) -> Result {
        let mut loaded = true;
        self.on_own_cpu(&mut |cpu| {
            let cleared = self.save_and_clear();
            let before = self.img.snapshot();
            change(&self.img);
            loaded = self.load(cpu) && cleared;
            if !loaded {
                let _ = self.save_and_clear();
                self.img.restore(&before);
                let _ = self.load(cpu);
            }
        })?;
        if loaded {
            Ok(())
        } else {
            Err(EIO)
        }
    }
}

/// # Safety
/// Called only by the scheduler, for a notifier linked by `link_notifier`.
unsafe extern "C" fn sched_in(n: *mut bindings::preempt_notifier, cpu: c_int) {
    SWITCHES.fetch_add(1, Ordering::Relaxed);
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
    // `task` is current (see above).
    if current_exec_id() != s.exec_id {
        // The thread exec'd: its handler address means nothing in the new program. Never load
        // the image again (the file's release tears the rest down).
        s.defunct.store(true, Ordering::Release);
        return;
    }
    // Called with preemption off but interrupts on: no notification may be processed between the
    // MSR writes and the PIR hand-over. The kernel's own irq-state API (traced, nestable).
    let _irqs_off = kernel::interrupt::local_interrupt_disable();
    // A faulting write here can only be counted (MSR_FAULTS, reported at unload).
    let _ = s.load(cpu as usize);
}

/// # Safety
/// Called only by the scheduler, for a notifier linked by `link_notifier`.
unsafe extern "C" fn sched_out(
    n: *mut bindings::preempt_notifier,
    _next: *mut bindings::task_struct,
) {
    // Called with interrupts off (the runqueue lock is held).
    SWITCHES.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the scheduler calls us only for notifiers linked with PREEMPT_OPS.
    let s = unsafe { state_of_notifier(n) };
    // A fault here can only be counted (MSR_FAULTS, reported at unload).
    let _ = s.save_and_clear();
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
/// Returns the state if it must be freed after an RCU grace period (a dead thread's, once its
/// final notifier call has been waited for: `wait_dead`), so that the caller frees a whole
/// batch after one grace period.
fn teardown(s: Arc<ThreadState>) -> Option<Arc<ThreadState>> {
    if s.task.as_ptr() == Task::current_raw() {
        if s.detach().is_err() {
            leak(s, c"could not detach a thread's UINTR state");
        }
        return None;
    }
    s.defunct.store(true, Ordering::Release);
    if !s.attached.load(Ordering::Acquire) || s.dead.load(Ordering::Acquire) {
        return wait_dead(s);
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
                // TWA_SIGNAL (issue 40, item 2): the thread is kicked and runs the tear-down on
                // its way back to user space at once, also when it spins there without
                // entering the kernel (TWA_RESUME waited for its next kernel entry: on a
                // tickless CPU, indefinitely, with its UITT entry, UPID and MSRs kept).
                bindings::task_work_notify_mode_TWA_SIGNAL,
            )
        };
        if rc == 0 {
            return None;
        }
        // SAFETY: undo the reference and module reference taken for the work.
        drop(unsafe { Arc::from_raw(raw) });
        // SAFETY: pairs with the try_module_get above.
        unsafe { bindings::module_put(this_module()) };
    }
    // The thread is past running task_works in its exit: it is about to die.
    wait_dead(s)
}

/// Waits until the final context switch of a thread that is dead or about to die has called the
/// notifier for the last time: without polling, for the completion that switch signals
/// (`sched_out` -> `dead_work` -> `exited`); a thread past running its task_works is in its last
/// steps of `do_exit`. Returns the state, to be freed after a grace period (`free_after_grace`),
/// or `None` if it was never attached (nothing can still walk it) and is freed here.
fn wait_dead(s: Arc<ThreadState>) -> Option<Arc<ThreadState>> {
    if !s.attached.load(Ordering::Acquire) {
        return None;
    }
    s.exited.wait_for_completion();
    // `on_dead` has signalled; wait until the irq_work machinery is done with `dead_work` (its
    // BUSY flag is cleared after the callback returned).
    // SAFETY: `dead_work` was queued (the completion proves it) and is never queued again.
    unsafe { bindings::irq_work_sync(s.dead_work.get()) };
    Some(s)
}

/// Grace periods waited for by tear-downs (`IOC_FAKE_STATE`): one per release, however many
/// dead threads it frees (issue 40, item 3; before, one per dead thread).
static GRACE_PERIODS: AtomicU64 = AtomicU64::new(0);

/// Frees the states `wait_dead` returned after one RCU grace period: each final `sched_out` ran
/// with interrupts off, a read-side critical section, so after it none of them walks its
/// notifiers again.
fn free_after_grace(dead: KVec<Arc<ThreadState>>) {
    if dead.is_empty() {
        return;
    }
    grace_period();
    drop(dead);
}

/// One RCU grace period (process context), counted.
fn grace_period() {
    GRACE_PERIODS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: process context.
    unsafe { bindings::synchronize_rcu() };
}

/// The irq_work the final `sched_out` of a registered thread queues: it runs in hard-irq context
/// once that switch has released the runqueue lock (waking a waiter under it could deadlock), and
/// signals `exited`.
///
/// # Safety
/// Called only by the irq_work machinery with the `dead_work` field of a live ThreadState (the
/// state is freed only after `irq_work_sync` on it, in `wait_dead`).
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
        hw::init(fake_hardware_requested())?;
        let supported = hw::cpu_has_uintr();
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
    // `fetch_update` answers the id before the one it stored: the new id is the one after it.
    let Some(id) = LAST_RECEIVER_ID
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, abi::next_receiver_id)
        .ok()
        .and_then(abi::next_receiver_id)
    else {
        pr_warn!("every receiver id has been handed out: reload kmod_uintr to register more\n");
        return Err(ENOSPC);
    };
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
///
/// A defunct state is not skipped: `sched_in` marks a thread defunct when it finds it exec'd,
/// and its receiver must then answer its own process ESTALE (the exec-generation check below),
/// as the README says, not ENOENT; another process still gets EPERM. (Skipping it made ESTALE
/// reachable only before the exec'd thread's first context switch: the ioctl fuzzer never saw it.)
fn receiver_upid(id: u32) -> Result<Arc<Upid>> {
    let me = ThreadGroup::of_current()?;
    let reg = REGISTRY.lock();
    for s in reg.iter() {
        if s.dead.load(Ordering::Acquire) {
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
    let res = s.update(&mut |img| {
        img.tt.store(tt, Ordering::Relaxed);
        let uinv = (img.misc.load(Ordering::Relaxed) >> 32) as u8;
        img.misc.store(
            abi::misc_msr(abi::UITT_ENTRIES - 1, uinv),
            Ordering::Relaxed,
        );
    });
    if let Err(e) = res {
        // Undo the entry (the valid bit first) and the target; a sender part created for it
        // goes too, and the state with it if it holds nothing else.
        sender.uitt.entries[index].word0.store(0, Ordering::SeqCst);
        sender.uitt.entries[index].upid.store(0, Ordering::SeqCst);
        sender.targets.pop();
        if sender.targets.is_empty() {
            parts.sender = None;
            drop(parts);
            drop_if_empty(&s)?;
        }
        return Err(e);
    }
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
        let mut dead = KVec::new();
        loop {
            let next = {
                let mut reg = REGISTRY.lock();
                match reg.iter().position(|s| s.owner == owner) {
                    Some(i) => reg.remove(i).ok(),
                    None => None,
                }
            };
            match next {
                Some(s) => {
                    if let Some(d) = teardown(s) {
                        if dead.reserve(1, GFP_KERNEL).is_ok() {
                            // Cannot fail: the room is reserved.
                            let _ = dead.push(d, GFP_KERNEL);
                        } else {
                            // No memory to batch: this one gets its own grace period.
                            grace_period();
                            drop(d);
                        }
                    }
                }
                None => break,
            }
        }
        free_after_grace(dead);
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
            abi::IOC_FAKE_FAIL_WRITES if hw::fake() => {
                let n: u32 = user().reader().read()?;
                hw::fake_fail_writes(u64::from(n));
                Ok(0)
            }
            abi::IOC_FAKE_STATE if hw::fake() => {
                let live = REGISTRY.lock().len() as u32;
                // Interrupts off while the CPU's registers are read: one CPU's answer, named.
                let state = {
                    let _irqs_off = kernel::interrupt::local_interrupt_disable();
                    hw::fake_state(
                        SWITCHES.load(Ordering::Relaxed),
                        GRACE_PERIODS.load(Ordering::Relaxed),
                        live,
                    )
                };
                user().writer().write(&state)?;
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }
}
