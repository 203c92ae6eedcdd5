// SPDX-License-Identifier: GPL-2.0

//! kmod_ipi: preemption of synergy worker threads by inter-processor interrupts aimed at a CPU.
//!
//! Protocol (see `uapi/src/ipi.rs`): a worker thread pinned to one CPU registers as that CPU's
//! receiver; the timer core asks for an IPI to that CPU. The IPI handler runs on the target CPU
//! and, if the receiver is the task running there, queues a task_work. On the receiver's next
//! return to user mode the task_work stores the interrupted user rip (or, inside a restartable
//! sequence's critical section, its abort handler) in the receiver's rip slot
//! (only while the slot holds 0: one delivery at a time) and sets the user rip to the receiver's
//! handler. Every other register is left as it was, so user space can save the complete state.
//!
//! Lifetimes: a `Receiver` is reference counted. The per-CPU table holds one reference; a send
//! takes another, checked against the sender's process, and hands it to the IPI handler through
//! the receiver's own call data (one IPI in flight per receiver); a queued task_work holds the
//! handler's. Readers of the table (`with_slot`, `receiver_ref`, and the
//! predicate of unregistration) run inside RCU read-side critical sections. Unregistering
//! removes the table entry and marks the receiver inactive (a delivery on its way then does
//! nothing); after one `synchronize_rcu` for everything a call unregistered it drops the table's
//! references.
//! `task_work_cancel` is not exported to modules, so a delivery queued before that still runs; it
//! sees the receiver inactive and does nothing, then drops its reference. A queued delivery also
//! holds a module reference, so `rmmod` cannot remove `deliver` while a task still has it queued,
//! and drops it with a tail jump to `module_put`, so no module text runs after that; an IPI in
//! flight holds one the same way until `ipi_handler` has run;
//! open files pin the module too (the misc device's owner). A receiver keeps a counted reference to
//! its task, so an exited thread is never a dangling pointer: it never runs on the CPU again (every
//! IPI is a miss) until its file is closed, which unregisters everything the file registered.
//!
//! The misc device is created root-only (0600). A process can only send to receivers of its own
//! thread group.

use core::{
    ffi::c_void,
    mem::ManuallyDrop,
    ptr::null_mut,
    sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering},
};
use kernel::{
    bindings,
    fs::File,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
    sync::{aref::ARef, Arc},
    task::Task,
    types::Opaque,
    uaccess::{UserPtr, UserSlice},
};

// The ABI, compiled from the same files as user space's `synergy-uapi` crate. `ipi.rs` refers to
// `super::ioctl`, hence this module's name.
#[path = "../kmod_common/arc_of_field.rs"]
mod arc_of_field;
#[path = "../kmod_common/c_layout.rs"]
mod c_layout;
#[path = "../kmod_common/cpu_task.rs"]
mod cpu_task;
#[path = "../kmod_common/module_put_tail.rs"]
mod module_put_tail;
use arc_of_field::arc_of_field;
use cpu_task::{apic_id, current_exec_id, nr_cpu_ids, ThreadGroup, USER_ADDR_MAX};
use module_put_tail::callback_then_module_put;

#[path = "../uapi/src/ipi.rs"]
#[allow(dead_code, unreachable_pub)]
mod abi;
#[path = "../uapi/src/ioctl.rs"]
#[allow(dead_code, unreachable_pub)]
mod ioctl;

// The shared encoding must agree with the kernel's own macros.
const _: () = assert!(
    abi::IOC_VERSION == kernel::ioctl::_IOR::<abi::IpiVersion>(abi::IOC_MAGIC as u32, 0x00)
);
const _: () = assert!(
    abi::IOC_REGISTER == kernel::ioctl::_IOWR::<abi::IpiRegister>(abi::IOC_MAGIC as u32, 0x01)
);
const _: () = assert!(abi::IOC_UNREGISTER == kernel::ioctl::_IO(abi::IOC_MAGIC as u32, 0x02));
const _: () = assert!(
    abi::IOC_CPU_APIC_ID == kernel::ioctl::_IOWR::<abi::IpiCpuApic>(abi::IOC_MAGIC as u32, 0x03)
);
const _: () =
    assert!(abi::IOC_SEND == kernel::ioctl::_IOW::<abi::IpiSend>(abi::IOC_MAGIC as u32, 0x04));
const _: () =
    assert!(abi::IOC_STATS == kernel::ioctl::_IOR::<abi::IpiStats>(abi::IOC_MAGIC as u32, 0x05));

// SAFETY: all of these are `repr(C)` structs of `u32`/`u64` fields without padding: every byte is
// initialised, and every bit pattern is a valid value.
unsafe impl kernel::transmute::AsBytes for abi::IpiVersion {}
// SAFETY: see above.
unsafe impl kernel::transmute::AsBytes for abi::IpiRegister {}
// SAFETY: see above.
unsafe impl kernel::transmute::FromBytes for abi::IpiRegister {}
// SAFETY: see above.
unsafe impl kernel::transmute::AsBytes for abi::IpiCpuApic {}
// SAFETY: see above.
unsafe impl kernel::transmute::FromBytes for abi::IpiCpuApic {}
// SAFETY: see above.
unsafe impl kernel::transmute::FromBytes for abi::IpiSend {}
// SAFETY: see above.
unsafe impl kernel::transmute::AsBytes for abi::IpiStats {}

module! {
    type: SynergyIpi,
    name: "kmod_ipi",
    authors: ["synergy developers"],
    description: "synergy: preemption of worker threads by IPI",
    license: "GPL",
}

const MAX_CPUS: usize = abi::MAX_CPUS as usize;

/// Receivers by CPU. Written with compare-exchange by (un)registration, read by IPI handlers.
static RECEIVERS: [AtomicPtr<Receiver>; MAX_CPUS] =
    [const { AtomicPtr::new(null_mut()) }; MAX_CPUS];

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    delivered: AtomicU64,
    missed_not_running: AtomicU64,
    missed_busy: AtomicU64,
    missed_fault: AtomicU64,
}

struct Receiver {
    /// The IPI's call data (`func` = `ipi_handler`), reused for every send: each receiver has
    /// its own, so sends to different receivers never wait for each other (the per-CPU call data
    /// of `smp_call_function_single` made a burst of sends from one CPU wait, each, until the
    /// previous IPI had been handled).
    csd: Opaque<bindings::__call_single_data>,
    /// Set while `csd` is queued: one IPI in flight per receiver; a send meanwhile is merged
    /// into it (counted as `missed_busy`).
    ipi_in_flight: AtomicBool,
    /// The task_work queued from the IPI handler (initialised once, reused for every delivery).
    work: Opaque<bindings::callback_head>,
    /// Set while `work` is queued: one pending delivery at a time.
    work_queued: AtomicBool,
    /// Frees the receiver after a grace period when an IPI handler held its last reference.
    rcu: Opaque<bindings::callback_head>,
    /// Cleared by unregistration: a delivery still queued then must not redirect.
    active: AtomicBool,
    task: ARef<Task>,
    /// The registering process, compared by identity (not by a namespace's pid number).
    group: ThreadGroup,
    /// The program image that registered (`current_exec_id`): after an `execve` of the process
    /// no send reaches this receiver and no delivery redirects it.
    exec_id: u64,
    handler: u64,
    rip_slot: u64,
    /// Id of the file that registered it.
    owner: u64,
    stats: Counters,
}

// SAFETY: `work` is only touched by the task_work machinery (a linked list updated with atomics)
// and by this module through raw pointers under the `work_queued` protocol; every other field is
// immutable after construction or atomic. `ARef<Task>` is Send + Sync.
unsafe impl Send for Receiver {}
// SAFETY: see above.
unsafe impl Sync for Receiver {}

#[pin_data(PinnedDrop)]
struct SynergyIpi {
    #[pin]
    _miscdev: MiscDeviceRegistration<IpiFile>,
}

#[pinned_drop]
impl PinnedDrop for SynergyIpi {
    fn drop(self: Pin<&mut Self>) {
        // Receivers whose last reference an IPI handler dropped are freed by RCU callbacks of
        // this module (`free_receiver_rcu`): wait for every one before the text goes.
        // SAFETY: process context (module exit).
        unsafe { bindings::rcu_barrier() };
    }
}

impl kernel::InPlaceModule for SynergyIpi {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            _miscdev <- {
                c_layout::check()?;
                pr_info!("loaded (ABI {})\n", abi::ABI_VERSION);
                MiscDeviceRegistration::register(MiscDeviceOptions { name: c"synergy_ipi" })
            },
        })
    }
}

/// Per-open-file state; receivers registered through a file die with it.
struct IpiFile {
    /// Identifies the file as the owner of its receivers (unique for the module's lifetime).
    id: u64,
}

static NEXT_FILE_ID: AtomicU64 = AtomicU64::new(1);

#[vtable]
impl MiscDevice for IpiFile {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        Ok(KBox::new(
            IpiFile {
                id: NEXT_FILE_ID.fetch_add(1, Ordering::Relaxed),
            },
            GFP_KERNEL,
        )?)
    }

    fn release(me: KBox<Self>, _file: &File) {
        let owner = me.id;
        unregister_all(|r| r.owner == owner);
    }

    fn ioctl(me: &IpiFile, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let owner = me.id;
        let size = kernel::ioctl::_IOC_SIZE(cmd);
        let user = || UserSlice::new(UserPtr::from_addr(arg), size);
        match cmd {
            abi::IOC_VERSION => {
                user().writer().write(&abi::IpiVersion {
                    abi_version: abi::ABI_VERSION,
                    flags: 0,
                })?;
                Ok(0)
            }
            abi::IOC_REGISTER => {
                let (mut reader, mut writer) = user().reader_writer();
                let mut req: abi::IpiRegister = reader.read()?;
                req.cpu = register(owner, &req)? as u32;
                writer.write(&req)?;
                Ok(0)
            }
            abi::IOC_UNREGISTER => {
                let me_task = Task::current_raw();
                if unregister_all(|r| r.owner == owner && r.task.as_ptr() == me_task) > 0 {
                    Ok(0)
                } else {
                    Err(ENOENT)
                }
            }
            abi::IOC_CPU_APIC_ID => {
                let (mut reader, mut writer) = user().reader_writer();
                let mut q: abi::IpiCpuApic = reader.read()?;
                let cpu = q.cpu as usize;
                q.apic_id = if cpu < nr_cpus() { apic_id(cpu) } else { None }.ok_or(EINVAL)?;
                writer.write(&q)?;
                Ok(0)
            }
            abi::IOC_SEND => {
                let req: abi::IpiSend = user().reader().read()?;
                send(&req)?;
                Ok(0)
            }
            abi::IOC_STATS => {
                let me_task = Task::current_raw();
                let stats = with_receiver_of(owner, me_task, |r| abi::IpiStats {
                    sent: r.stats.sent.load(Ordering::Relaxed),
                    delivered: r.stats.delivered.load(Ordering::Relaxed),
                    missed_not_running: r.stats.missed_not_running.load(Ordering::Relaxed),
                    missed_busy: r.stats.missed_busy.load(Ordering::Relaxed),
                    missed_fault: r.stats.missed_fault.load(Ordering::Relaxed),
                })
                .ok_or(ENOENT)?;
                user().writer().write(&stats)?;
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }
}

/// CPUs this module serves: the possible ones, up to its table's size.
fn nr_cpus() -> usize {
    nr_cpu_ids().min(MAX_CPUS)
}

fn cpu_of_apic_id(id: u32) -> Option<usize> {
    (0..nr_cpus()).find(|&c| apic_id(c) == Some(id))
}

fn register(owner: u64, req: &abi::IpiRegister) -> Result<usize> {
    if req.flags != 0 || req.handler == 0 || req.handler > USER_ADDR_MAX {
        return Err(EINVAL);
    }
    if req.rip_slot == 0 || req.rip_slot % 8 != 0 || req.rip_slot > USER_ADDR_MAX - 8 {
        return Err(EINVAL);
    }
    // The slot must be readable and writable now (it is rewritten with its own value).
    let slot_value: u64 = UserSlice::new(UserPtr::from_addr(req.rip_slot as usize), 8)
        .reader()
        .read()?;
    UserSlice::new(UserPtr::from_addr(req.rip_slot as usize), 8)
        .writer()
        .write(&slot_value)?;

    let task_ptr = Task::current_raw();
    // The thread is expected to be pinned (user space's job: the runtime refuses --preempt=ipi
    // without pinning). An unpinned receiver is harmless: IPIs to its CPU are misses while it
    // runs elsewhere. (`nr_cpus_allowed` cannot be read here: see `ThreadGroup`.)
    // SAFETY: raw_smp_processor_id has no preconditions; the answer may be stale for unpinned tasks.
    let cpu = unsafe { bindings::raw_smp_processor_id() } as usize;
    if cpu >= nr_cpus() {
        return Err(EINVAL);
    }
    let group = ThreadGroup::of_current()?;
    let exec_id = current_exec_id();
    // So the new program can register on CPUs an earlier image of it registered on.
    unregister_stale(&group, exec_id);
    let me_owner_task = |r: &Receiver| r.task.as_ptr() == task_ptr;
    if (0..MAX_CPUS).any(|c| with_slot(c, |r| me_owner_task(r)).unwrap_or(false)) {
        return Err(EBUSY);
    }
    let current = kernel::current!();
    let receiver = Arc::new(
        Receiver {
            // What INIT_CSD() does; `info` is set by each send to the reference it hands over.
            // SAFETY: all-zero is a valid (unlocked, unqueued) __call_single_data.
            csd: Opaque::new(bindings::__call_single_data {
                func: Some(ipi_handler),
                ..unsafe { core::mem::zeroed() }
            }),
            ipi_in_flight: AtomicBool::new(false),
            work: Opaque::new(bindings::callback_head {
                next: null_mut(),
                func: Some(deliver),
            }),
            work_queued: AtomicBool::new(false),
            rcu: Opaque::new(bindings::callback_head {
                next: null_mut(),
                func: None,
            }),
            active: AtomicBool::new(true),
            task: ARef::from(&**current),
            group,
            exec_id,
            handler: req.handler,
            rip_slot: req.rip_slot,
            owner,
            stats: Counters::default(),
        },
        GFP_KERNEL,
    )?;
    let raw = Arc::into_raw(receiver).cast_mut();
    if RECEIVERS[cpu]
        .compare_exchange(null_mut(), raw, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // SAFETY: `raw` came from `Arc::into_raw` just above and was never published.
        drop(unsafe { Arc::from_raw(raw) });
        return Err(EBUSY);
    }
    Ok(cpu)
}

/// Runs `f` on the receiver of `cpu`, if any. It may race with unregistration, so the table
/// entry is read inside an RCU read-side critical section.
fn with_slot<R>(cpu: usize, f: impl FnOnce(&Receiver) -> R) -> Option<R> {
    let _rcu = kernel::sync::rcu::read_lock();
    let p = RECEIVERS[cpu].load(Ordering::Acquire);
    if p.is_null() {
        None
    } else {
        // SAFETY: unregistration clears the entry and then waits (synchronize_rcu) for every
        // reader like this one before it drops the table's reference, so `p` stays valid until
        // `_rcu` ends.
        Some(f(unsafe { &*p }))
    }
}

fn with_receiver_of<R>(
    owner: u64,
    task: *mut bindings::task_struct,
    f: impl Fn(&Receiver) -> R,
) -> Option<R> {
    (0..MAX_CPUS).find_map(|c| {
        with_slot(c, |r| {
            (r.owner == owner && r.task.as_ptr() == task).then(|| f(r))
        })
        .flatten()
    })
}

/// A counted reference to `cpu`'s receiver, if any: taken inside an RCU read-side critical
/// section, so it cannot race with the table's reference being dropped.
fn receiver_ref(cpu: usize) -> Option<Arc<Receiver>> {
    let _rcu = kernel::sync::rcu::read_lock();
    let p = RECEIVERS[cpu].load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: as in `with_slot`, `p` is the table's live reference until `_rcu` ends; cloning it
    // through a `ManuallyDrop` leaves the table's count untouched and adds ours.
    let table = ManuallyDrop::new(unsafe { Arc::from_raw(p) });
    Some((*table).clone())
}

/// Unpublishes `cpu`'s receiver if `pred` holds for it; returns the table's reference, which
/// the caller drops only after a grace period (`unregister_all`). The predicate runs inside an
/// RCU read-side critical section: another file's release may unpublish and free the entry at
/// any moment, and only its `synchronize_rcu` (which waits for this section) keeps `p` valid.
fn unpublish_where(cpu: usize, pred: &impl Fn(&Receiver) -> bool) -> Option<*mut Receiver> {
    let _rcu = kernel::sync::rcu::read_lock();
    let p = RECEIVERS[cpu].load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: see above; `_rcu` is held.
    let r = unsafe { &*p };
    if !pred(r) {
        return None;
    }
    RECEIVERS[cpu]
        .compare_exchange(p, null_mut(), Ordering::AcqRel, Ordering::Acquire)
        .ok()?;
    // From here on no delivery may redirect: an IPI already on its way, or a queued task_work,
    // sees this and does nothing.
    r.active.store(false, Ordering::Release);
    Some(p)
}

/// Unregisters the receivers of process `group` that an earlier program image of it registered
/// (an fd inherited across `execve` without `O_CLOEXEC`): their handler addresses mean nothing
/// in image `exec_id`.
fn unregister_stale(group: &ThreadGroup, exec_id: u64) {
    unregister_all(|r| r.group.same_as(group) && r.exec_id != exec_id);
}

/// Unregisters every receiver `pred` holds for, with one grace period for all of them; returns
/// how many.
fn unregister_all(pred: impl Fn(&Receiver) -> bool) -> usize {
    let mut removed: KVec<*mut Receiver> = KVec::new();
    let mut count = 0;
    for cpu in 0..MAX_CPUS {
        let Some(p) = unpublish_where(cpu, &pred) else {
            continue;
        };
        count += 1;
        if removed.push(p, GFP_KERNEL).is_err() {
            // No memory to batch: give this one its own grace period now.
            // SAFETY: unpublished just above, released once.
            unsafe { release_after_grace_period(&[p]) };
        }
    }
    // SAFETY: every pointer was unpublished by `unpublish_where` and is released once.
    unsafe { release_after_grace_period(&removed) };
    count
}

/// Drops the table's references in `removed` after one `synchronize_rcu`.
///
/// # Safety
/// Each pointer must be a table reference (from `Arc::into_raw` in `register`) that
/// `unpublish_where` removed from the table, released exactly once.
unsafe fn release_after_grace_period(removed: &[*mut Receiver]) {
    if removed.is_empty() {
        return;
    }
    // No RCU reader (`with_slot`, `receiver_ref`, `unpublish_where`) that could still hold one of
    // these pointers survives this.
    // SAFETY: plain call; we may sleep here (ioctl and release are process context).
    unsafe { bindings::synchronize_rcu() };
    for &p in removed {
        // SAFETY: per the contract, `p` is the table's reference.
        drop(unsafe { Arc::from_raw(p) });
    }
}

fn this_module() -> *mut bindings::module {
    <SynergyIpi as kernel::ModuleMetadata>::THIS_MODULE.as_ptr()
}

fn send(req: &abi::IpiSend) -> Result {
    let cpu = match req.flags {
        0 => req.target as usize,
        abi::SEND_BY_APIC_ID => cpu_of_apic_id(req.target).ok_or(EINVAL)?,
        _ => return Err(EINVAL),
    };
    if cpu >= nr_cpus() {
        return Err(EINVAL);
    }
    let r = receiver_ref(cpu).ok_or(ENOENT)?;
    let group = ThreadGroup::of_current()?;
    if !r.group.same_as(&group) {
        return Err(EPERM);
    }
    let exec_id = current_exec_id();
    if r.exec_id != exec_id {
        // Registered by this process before it exec'd: the handler address belongs to the old
        // program. Drop such registrations and say why.
        unregister_stale(&group, exec_id);
        return Err(ESTALE);
    }
    r.stats.sent.fetch_add(1, Ordering::Relaxed);
    if r.ipi_in_flight.swap(true, Ordering::AcqRel) {
        // An IPI to this receiver has not been handled yet: it will do for this send too.
        r.stats.missed_busy.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    // The queued IPI runs `ipi_handler` (module text) later: it holds the module until then.
    // SAFETY: THIS_MODULE is this module; try_module_get is callable from any context.
    if !unsafe { bindings::try_module_get(this_module()) } {
        r.ipi_in_flight.store(false, Ordering::Release);
        return Err(ENODEV);
    }
    let csd = r.csd.get();
    // The handler gets the receiver checked here, with this reference: the table may hold
    // another process's receiver by the time the IPI arrives.
    let info = Arc::into_raw(r);
    // SAFETY: `csd` is the receiver's call data, not queued (ipi_in_flight was false, and only
    // its holder queues it): nothing else reads or writes it now. `info` is the reference the
    // IPI takes over; `func` is `ipi_handler`, which consumes it and the module reference.
    // smp_call_function_single_async does not wait: the timer core never blocks on a worker.
    // It fails with -ENXIO for an offline CPU, in which case the handler never runs.
    let rc = unsafe {
        (*csd).info = info.cast_mut().cast();
        bindings::smp_call_function_single_async(cpu as i32, csd)
    };
    if rc != 0 {
        // SAFETY: the call was not queued; `info` is still our reference.
        let r = unsafe { Arc::from_raw(info) };
        r.ipi_in_flight.store(false, Ordering::Release);
        drop(r);
        // SAFETY: pairs with the try_module_get above.
        unsafe { bindings::module_put(this_module()) };
        return Err(Error::from_errno(rc));
    }
    Ok(())
}

callback_then_module_put! {
    /// The IPI's callback (`csd.func`): runs `ipi_handler_body` on the target CPU in interrupt
    /// context, then releases the module reference the send took, with no instruction of this
    /// module after that.
    ipi_handler(*mut c_void) => ipi_handler_body
}

/// Runs on the target CPU in interrupt context.
///
/// # Safety
/// Called only by `ipi_handler` for a csd queued by `send`, with `info` a reference to the
/// receiver (from `Arc::into_raw`) that this call owns.
unsafe extern "C" fn ipi_handler_body(info: *mut c_void) {
    // SAFETY: per the contract, `info` is our reference.
    let r = unsafe { Arc::from_raw(info.cast_const().cast::<Receiver>()) };
    if let Some(r) = queue_delivery(r) {
        release_in_irq(r);
    }
}

/// The IPI handler's work: queues the delivery on the receiver's task if it runs here; returns
/// the reference when it was not handed to the queued work.
fn queue_delivery(r: Arc<Receiver>) -> Option<Arc<Receiver>> {
    // The smp core has unlocked the csd before calling us: the next send may queue it again.
    r.ipi_in_flight.store(false, Ordering::Release);
    if !r.active.load(Ordering::Acquire) {
        return Some(r);
    }
    if r.task.as_ptr() != Task::current_raw() {
        r.stats.missed_not_running.fetch_add(1, Ordering::Relaxed);
        return Some(r);
    }
    if r.work_queued.swap(true, Ordering::AcqRel) {
        r.stats.missed_busy.fetch_add(1, Ordering::Relaxed);
        return Some(r);
    }
    // A queued `deliver` keeps this module loaded until it has run.
    // SAFETY: THIS_MODULE is this module; try_module_get is callable from any context.
    if !unsafe { bindings::try_module_get(this_module()) } {
        r.work_queued.store(false, Ordering::Release);
        return Some(r);
    }
    let work = r.work.get();
    let task = r.task.as_ptr();
    // The queued work owns our reference until it runs.
    let work_ref = Arc::into_raw(r);
    // SAFETY: the task is `current`; `work` is the receiver's and not queued (work_queued was
    // false).
    let rc =
        unsafe { bindings::task_work_add(task, work, bindings::task_work_notify_mode_TWA_RESUME) };
    if rc != 0 {
        // The task is exiting: no delivery.
        // SAFETY: not queued: the reference is ours again.
        let r = unsafe { Arc::from_raw(work_ref) };
        r.work_queued.store(false, Ordering::Release);
        r.stats.missed_fault.fetch_add(1, Ordering::Relaxed);
        // SAFETY: pairs with the try_module_get above; the send's module reference keeps this
        // module loaded until the handler returns.
        unsafe { bindings::module_put(this_module()) };
        return Some(r);
    }
    None
}

/// Drops the IPI handler's reference without ever freeing the receiver in hard-irq context
/// (issue 40, item 5): when unregistration raced the IPI and this is the last reference, the
/// receiver (its `struct pid` and task references, its memory) is freed after an RCU grace
/// period, in softirq context (`free_receiver_rcu`). Module exit waits for those callbacks
/// (`rcu_barrier` in `SynergyIpi`'s drop).
fn release_in_irq(r: Arc<Receiver>) {
    if let Some(last) = Arc::into_unique_or_drop(r) {
        let raw = Arc::into_raw(Arc::from(last)).cast_mut();
        // SAFETY: `raw` is the last reference, given up here and taken back by the callback;
        // its `rcu` head is used for nothing else; call_rcu may be called from hard irq.
        unsafe { bindings::call_rcu((*raw).rcu.get(), Some(free_receiver_rcu)) };
    }
}

/// Frees a receiver whose last reference an IPI handler dropped (`release_in_irq`).
///
/// # Safety
/// Called only by RCU for the `rcu` head of a receiver whose last reference was given up to it.
unsafe extern "C" fn free_receiver_rcu(head: *mut bindings::callback_head) {
    // SAFETY: per the contract, the reference given up in `release_in_irq`.
    drop(unsafe { arc_of_field!(head, Receiver, rcu) });
}

/// The user register frame of `task`, at the top of its kernel stack (x86-64 `task_pt_regs`;
/// the offset is checked against the C compiler's at init, `c_layout`).
fn user_regs(task: *mut bindings::task_struct) -> *mut bindings::pt_regs {
    // SAFETY: `task` is current; its stack page stays allocated while it runs.
    let bottom = unsafe { (*task).stack } as usize;
    (bottom + c_layout::PT_REGS_IN_STACK) as *mut bindings::pt_regs
}

callback_then_module_put! {
    /// The task_work: runs `deliver_body` in the receiver's own context on its way back to user
    /// mode (or during its exit), then releases the module reference taken when it was queued,
    /// with no instruction of this module after that (`kmod_common/module_put_tail.rs`).
    deliver(*mut bindings::callback_head) => deliver_body
}

/// The delivery itself.
///
/// # Safety
/// Called only by `deliver` with the `work` field of a Receiver whose reference the queued work
/// owns.
unsafe extern "C" fn deliver_body(head: *mut bindings::callback_head) {
    // SAFETY: `head` is the `work` field of a Receiver whose reference the work owns.
    let r = unsafe { arc_of_field!(head, Receiver, work) };
    r.work_queued.store(false, Ordering::Release);
    redirect(&r);
    drop(r);
}

fn redirect(r: &Receiver) {
    let task = Task::current_raw();
    // SAFETY: current is valid; flags is a plain field.
    let exiting = unsafe { (*task).flags } & bindings::PF_EXITING != 0;
    if !r.active.load(Ordering::Acquire) {
        return;
    }
    if exiting || r.task.as_ptr() != task {
        r.stats.missed_fault.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if r.exec_id != current_exec_id() {
        // Queued before the task exec'd: the handler address belongs to the old program.
        r.stats.missed_fault.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let regs = user_regs(task);
    // SAFETY: `regs` is this task's saved user frame; we run in its context with no concurrent
    // writer. Sanity-check it is a user frame before changing anything.
    let (cs, sp, ip) = unsafe { ((*regs).__bindgen_anon_1.cs, (*regs).sp, (*regs).ip) };
    if cs & 3 != 3 || sp as u64 > USER_ADDR_MAX || ip as u64 > USER_ADDR_MAX {
        r.stats.missed_fault.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // Like signal delivery: an interrupted restartable sequence resumes at its abort handler.
    // Nothing is changed yet: the section's `rseq_cs` is cleared only once the redirect is
    // certain (below), so a refused redirect leaves the thread its abort.
    let Ok(resume) = rseq_resume_at(task, ip as u64) else {
        r.stats.missed_fault.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let ip = resume.ip;
    let slot = || UserSlice::new(UserPtr::from_addr(r.rip_slot as usize), 8);
    match slot().reader().read::<u64>() {
        Ok(0) => {}
        Ok(_) => {
            r.stats.missed_busy.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Err(_) => {
            r.stats.missed_fault.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    if slot().writer().write(&ip).is_err() {
        r.stats.missed_fault.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if let Some(cs_field) = resume.clear_cs {
        if clear_rseq_cs(cs_field).is_err() {
            // Not redirected after all: give the slot back (the thread's own memory, and only
            // it runs now), so its next delivery is not refused as busy.
            let _ = slot().writer().write(&0u64);
            r.stats.missed_fault.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    // SAFETY: as above; the thread resumes at its own registered handler.
    unsafe { (*regs).ip = r.handler as usize };
    r.stats.delivered.fetch_add(1, Ordering::Relaxed);
}

/// Where a redirected thread resumes, and the `rseq_cs` field to clear if it is redirected.
struct ResumeAt {
    ip: u64,
    /// User address of the thread's `rseq_cs` field, when `ip` is a section's abort handler.
    clear_cs: Option<usize>,
}

/// Clears the thread's `rseq_cs` field (at user address `cs_field`), as the kernel does when it
/// sends a thread to its abort handler.
fn clear_rseq_cs(cs_field: usize) -> Result {
    UserSlice::new(UserPtr::from_addr(cs_field), 8)
        .writer()
        .write(&0u64)
}

/// Where the interrupted thread must resume: `ip`, or, if `ip` is inside the thread's current
/// restartable-sequence critical section, that section's abort handler, whose `rseq_cs` pointer
/// the caller clears once it redirects (and only then). This is what the kernel does before it delivers a signal
/// (`rseq_update_user_cs()`, not exported to modules), with the same checks of the descriptor
/// (uapi `struct rseq_cs`): version 0, the section and the abort handler in user space, the abort
/// handler outside the section and preceded by the thread's registered signature. A descriptor
/// that fails them is an error: the caller then does not redirect, and the kernel's own rseq
/// handling deals with the thread at its next preemption or signal (it kills it).
#[cfg(CONFIG_RSEQ)]
fn rseq_resume_at(task: *mut bindings::task_struct, ip: u64) -> Result<ResumeAt> {
    use c_layout::user_rseq::{
        CS_ABORT_IP, CS_POST_COMMIT_OFFSET, CS_SIZE, CS_START_IP, CS_VERSION, RSEQ_CS,
    };
    // The descriptor is read as the words it is made of (the C layout is checked at init).
    const _: () = assert!(CS_SIZE == 32 && CS_VERSION == 0);
    const _: () = assert!(CS_START_IP % 8 == 0 && CS_POST_COMMIT_OFFSET % 8 == 0);
    const _: () = assert!(CS_ABORT_IP % 8 == 0 && CS_ABORT_IP < CS_SIZE);
    // SAFETY: `task` is current; its rseq registration changes only by its own rseq() calls.
    let (area, sig) = unsafe { ((*task).rseq.usrptr as usize, (*task).rseq.sig) };
    let stay = Ok(ResumeAt { ip, clear_cs: None });
    if area == 0 {
        return stay;
    }
    let cs_field = || UserSlice::new(UserPtr::from_addr(area + RSEQ_CS), 8);
    let cs_addr: u64 = cs_field().reader().read()?;
    if cs_addr == 0 {
        return stay;
    }
    if cs_addr > USER_ADDR_MAX {
        return Err(EFAULT);
    }
    // struct rseq_cs { u32 version; u32 flags; u64 start_ip, post_commit_offset, abort_ip; }
    let mut cs = [0u64; CS_SIZE / 8];
    let mut reader = UserSlice::new(UserPtr::from_addr(cs_addr as usize), CS_SIZE).reader();
    for word in &mut cs {
        *word = reader.read()?;
    }
    // `version` is the low half of the first word (x86-64 is little-endian).
    let (version, start, len, abort) = (
        cs[CS_VERSION / 8] as u32,
        cs[CS_START_IP / 8],
        cs[CS_POST_COMMIT_OFFSET / 8],
        cs[CS_ABORT_IP / 8],
    );
    if version != 0 || start > USER_ADDR_MAX || len > USER_ADDR_MAX - start || abort > USER_ADDR_MAX
    {
        return Err(EINVAL);
    }
    if ip.wrapping_sub(start) >= len {
        // Not inside the section (a stale pointer: the kernel clears it lazily too).
        return stay;
    }
    if abort.wrapping_sub(start) < len || abort < 4 {
        return Err(EINVAL);
    }
    let abort_sig: u32 = UserSlice::new(UserPtr::from_addr(abort as usize - 4), 4)
        .reader()
        .read()?;
    if abort_sig != sig {
        return Err(EINVAL);
    }
    Ok(ResumeAt {
        ip: abort,
        clear_cs: Some(area + RSEQ_CS),
    })
}

/// Without CONFIG_RSEQ no thread has a restartable sequence.
#[cfg(not(CONFIG_RSEQ))]
fn rseq_resume_at(_task: *mut bindings::task_struct, ip: u64) -> Result<ResumeAt> {
    Ok(ResumeAt { ip, clear_cs: None })
}
