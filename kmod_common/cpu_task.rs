// SPDX-License-Identifier: GPL-2.0

//! Kernel facts both synergy modules need (compiled into each with `#[path]`, as the uapi files
//! are): the user-address bound, CPU numbers and APIC IDs, and a process's identity.

use kernel::bindings;

/// Highest user-space address on x86-64 with 4-level paging (TASK_SIZE_MAX - 1). User addresses
/// above it are refused even under 5-level paging.
pub(crate) const USER_ADDR_MAX: u64 = 0x0000_7fff_ffff_efff;

/// Number of possible CPU ids (`nr_cpu_ids`).
pub(crate) fn nr_cpu_ids() -> usize {
    // SAFETY: `nr_cpu_ids` is set during boot and never changes afterwards.
    unsafe { bindings::nr_cpu_ids as usize }
}

/// APIC ID of a possible CPU.
pub(crate) fn apic_id(cpu: usize) -> Option<u32> {
    if cpu >= nr_cpu_ids() {
        return None;
    }
    // SAFETY: `x86_cpu_to_apicid` is a per-CPU variable: its address plus the CPU's per-CPU
    // offset is that CPU's copy (what `per_cpu()` computes, in wrapping unsigned arithmetic: the
    // offset is "negative" when the per-CPU area lies below the section); cpu < nr_cpu_ids has an
    // offset.
    let id = unsafe {
        let base = &raw const bindings::x86_cpu_to_apicid as usize;
        let off = bindings::__per_cpu_offset[cpu];
        core::ptr::read_volatile(base.wrapping_add(off) as *const u32)
    };
    Some(id)
}

/// The calling task's exec generation (`self_exec_id`): incremented by every `execve` the task
/// makes, and inherited by the threads it creates, so within one thread group it names the
/// program image that is running. A registration records it, and the modules refuse to act on a
/// registration made by an earlier image of the same process (an fd inherited across `execve`
/// without `O_CLOEXEC`, or an interrupt still pending at the exec): its handler address means
/// nothing in the new program.
pub(crate) fn current_exec_id() -> u64 {
    // SAFETY: `current` is a live task; only the task itself writes its `self_exec_id` (during
    // its own exec), so reading it from its own context does not race.
    unsafe { (*kernel::task::Task::current_raw()).self_exec_id }
}

/// The identity of a process: a counted reference to its thread-group `struct pid`. Numbers from
/// `task_tgid_nr_ns` depend on the pid namespace that reads them (two containers' servers can
/// both be pid 1), so permission checks compare these identities instead, which are the same
/// object whichever namespace looks. Holding the reference keeps the `struct pid` from being
/// freed and reused for another process while it is compared against.
///
/// The kernel's exported C functions (`get_task_pid`, `put_pid`) take and drop the reference.
pub(crate) struct ThreadGroup(core::ptr::NonNull<bindings::pid>);

// SAFETY: a counted `struct pid` reference may be used and released from any thread.
unsafe impl Send for ThreadGroup {}
// SAFETY: only the pointer value is read through a shared reference.
unsafe impl Sync for ThreadGroup {}

impl ThreadGroup {
    /// The calling task's process.
    pub(crate) fn of_current() -> Result<ThreadGroup, kernel::error::Error> {
        // SAFETY: `current` is a live task; get_task_pid takes a reference (or returns NULL if
        // the task is being reaped, which `current` in an ioctl is not).
        let p = unsafe {
            bindings::get_task_pid(
                kernel::task::Task::current_raw(),
                bindings::pid_type_PIDTYPE_TGID,
            )
        };
        core::ptr::NonNull::new(p)
            .map(ThreadGroup)
            .ok_or(kernel::error::code::ESRCH)
    }

    /// Whether both are the same process.
    pub(crate) fn same_as(&self, other: &ThreadGroup) -> bool {
        self.0 == other.0
    }
}

impl Drop for ThreadGroup {
    fn drop(&mut self) {
        // SAFETY: releases the reference taken by `of_current`.
        unsafe { bindings::put_pid(self.0.as_ptr()) };
    }
}
