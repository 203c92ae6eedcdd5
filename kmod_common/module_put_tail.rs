// SPDX-License-Identifier: GPL-2.0

//! Callbacks that drop this module's last reference as their very last action.
//!
//! A task_work (or an asynchronous IPI callback) queued by a module runs module text long after
//! the call that queued it, so it holds a module reference (`try_module_get` before queueing). Dropping that reference is the
//! callback's last action, but if the callback is an ordinary function its epilogue still runs in
//! module text after `module_put` returned, by which time `rmmod` may have freed that text. The
//! kernel has this problem for kernel threads and solves it with a function that does not return
//! (`module_put_and_kthread_exit`); task_works have no such helper. `callback_then_module_put!`
//! defines the callback as a naked trampoline that calls the body and then *jumps* to
//! `module_put(THIS_MODULE)`: `module_put` returns straight to the task_work machinery (kernel
//! text), so no instruction of this module runs once the reference is dropped.
//!
//! The trampoline starts with `endbr64` (an indirect-branch target under IBT; a NOP elsewhere).
//! kCFI would need a type-hash preamble that a naked function does not get, so on kernels with
//! kCFI the callback is an ordinary function ending in `module_put` (the epilogue window this
//! module otherwise closes is then open again; the module's README says so). The option is
//! `CONFIG_CFI` since Linux 6.18 (`CONFIG_CFI_CLANG` before, now only a transitional symbol that
//! a new configuration does not set): keyed on either, so the naked tail call is never built
//! into a kCFI kernel, where its first indirect call would trap (issue 40, item 9;
//! scripts/kernel/check-kcfi-build.sh builds against a `CONFIG_CFI=y` configuration and checks
//! the disassembly).

/// Defines `unsafe extern "C" fn $name(arg: $arg)`, a callback (a task_work's `callback_head`, an
/// IPI's `void *info`: one pointer argument, called by kernel code) that runs `$body(arg)` (an
/// `unsafe extern "C" fn($arg)`) and then drops one reference to this module, with nothing of
/// this module running after that.
///
/// Safety contract of the defined function: called only by the kernel machinery it was queued
/// with, for a queueing that took one reference to this module (which the call consumes) and
/// with an argument that satisfies `$body`'s own contract.
macro_rules! callback_then_module_put {
    ($(#[$doc:meta])* $name:ident($arg:ty) => $body:path) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// Called only by the kernel machinery it was queued with, for a queueing that took one
        /// reference to this module (consumed here) and with an argument that meets the body's
        /// contract.
        // SAFETY: a naked function: entered with the SysV ABI, the argument (rdi) is passed on
        // to the body unchanged; rbx is pushed only to give the call a 16-byte aligned stack and
        // popped after it. Then rdi = &__this_module and a jump (not a call) to module_put,
        // which returns to our caller, kernel code, so no module text runs after the reference
        // is dropped; that reference was taken by try_module_get when the callback was queued
        // (the contract above).
        #[cfg(not(any(CONFIG_CFI, CONFIG_CFI_CLANG)))]
        // clippy does not count `#[unsafe(naked)]`'s body as unsafe code, but it is: keep the
        // SAFETY comment.
        #[allow(clippy::unnecessary_safety_comment)]
        #[unsafe(naked)]
        unsafe extern "C" fn $name(_arg: $arg) {
            core::arch::naked_asm!(
                "endbr64",
                "push rbx",
                "call {body}",
                "pop rbx",
                "lea rdi, [rip + {module}]",
                "jmp {put}",
                body = sym $body,
                module = sym ::kernel::bindings::__this_module,
                put = sym ::kernel::bindings::module_put,
            )
        }

        $(#[$doc])*
        ///
        /// # Safety
        /// As above.
        #[cfg(any(CONFIG_CFI, CONFIG_CFI_CLANG))]
        unsafe extern "C" fn $name(arg: $arg) {
            // SAFETY: the defined function's contract is the body's, plus the module reference.
            unsafe { $body(arg) };
            // SAFETY: drops the reference the queueing took (see the module docs for the
            // epilogue that follows under kCFI).
            unsafe { ::kernel::bindings::module_put(&raw mut ::kernel::bindings::__this_module) };
        }
    };
}

pub(crate) use callback_then_module_put;
