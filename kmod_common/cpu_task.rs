// SPDX-License-Identifier: GPL-2.0

//! Kernel facts both synergy modules need (compiled into each with `#[path]`, as the uapi files
//! are): the user-address bound, CPU numbers and APIC IDs, and a task's thread-group id.

use core::ptr::null_mut;
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

/// Thread-group id of `task` as seen from the caller's pid namespace (the same for every thread of
/// a process), computed by the kernel's C helper.
///
/// Fields of `task_struct` beyond `flags` are not read from Rust in these modules: with this
/// kernel's toolchain (bindgen 0.73.2, clang 19.1.7, Linux 7.3.4) the generated binding lays
/// `task_struct` out differently from the C compiler after the scheduler entities (e.g.
/// `nr_cpus_allowed` at 744 instead of 792, `pid` at 1136 instead of 1184, measured), so such
/// reads, including the kernel crate's `Task::tgid()`, return another field. `__state` (24),
/// `stack` (32) and `flags` (44) agree.
pub(crate) fn tgid_of(task: *mut bindings::task_struct) -> i32 {
    // SAFETY: `task` is live (current, or held by a reference); a null namespace means "the
    // caller's active namespace".
    unsafe { bindings::task_tgid_nr_ns(task, null_mut()) }
}
