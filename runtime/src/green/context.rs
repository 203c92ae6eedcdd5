//! The 64-byte green-thread context and the switch between two of them.
//!
//! A voluntary switch is a point in ordinary compiled code, so by the System V AMD64 ABI only the
//! callee-saved registers (rbx, rbp, r12–r15), the stack pointer and the resume address matter:
//! eight words, one cache line. (MXCSR and the x87 control word are callee-saved too; the runtime
//! never changes them, and the preemption entry resets them to the ABI defaults, so they cannot
//! differ between the two sides of a switch.) Everything else an *asynchronous* interruption could
//! clobber is saved by the preemption entry (`preempt::entry`) before it reaches a switch.
//!
//! `switch` is inline asm rather than a called function: it declares r12–r15 and every
//! caller-saved register clobbered, so the compiler spills only what is live at that switch
//! point; it stores rbx, rbp (which asm cannot declare clobbered), rsp and its resume address
//! into the context. Resuming always loads all six callee-saved slots, so a context saved here and
//! one built by `Context::new` are interchangeable. Each switch site has its own indirect jump,
//! which branch predictors learn per site.

#[repr(C, align(64))]
#[derive(Debug, Default, Clone, Copy)]
pub struct Context {
    pub rbx: u64,
    pub rbp: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rsp: u64,
    pub rip: u64,
}

const _: () = assert!(core::mem::size_of::<Context>() == 64);
const _: () = assert!(core::mem::offset_of!(Context, rbp) == 0x08);
const _: () = assert!(core::mem::offset_of!(Context, r12) == 0x10);
const _: () = assert!(core::mem::offset_of!(Context, rsp) == 0x30);
const _: () = assert!(core::mem::offset_of!(Context, rip) == 0x38);

impl Context {
    /// A context that starts `entry` on the stack whose (exclusive) top is `stack_top`.
    /// `entry` must never return.
    pub fn new(stack_top: usize, entry: extern "C" fn() -> !) -> Context {
        let top = stack_top & !15;
        // Enter as if called: rsp ≡ 8 (mod 16), pointing at a zero "return address" so that
        // debuggers and unwinders see the end of the stack.
        let rsp = top - 8;
        // SAFETY: the caller hands over a writable stack whose top is stack_top; top - 8 is in it.
        unsafe { (rsp as *mut u64).write(0) };
        Context { rsp: rsp as u64, rip: entry as usize as u64, ..Context::default() }
    }
}

/// Saves the current execution state into `from` and continues `to`.
///
/// Returns when something later switches back to `from`.
///
/// # Safety
/// `from` must be valid for writes; `to` must hold a context saved by `switch` (or made by
/// `Context::new`) whose stack is alive and not running on any CPU.
#[inline(always)]
pub unsafe fn switch(from: *mut Context, to: *const Context) {
    // SAFETY: stores this point's rbx, rbp, rsp and resume address (label 2) into `from`, loads
    // all callee-saved slots, rsp and rip from `to` and jumps. When someone switches back, control
    // arrives at label 2 with rbx/rbp/rsp restored; everything else is declared clobbered, so the
    // compiler holds nothing else live across the asm. No stack memory is touched.
    unsafe {
        core::arch::asm!(
            "lea rax, [rip + 2f]",
            "mov [rdi + 0x38], rax",
            "mov [rdi + 0x30], rsp",
            "mov [rdi + 0x08], rbp",
            "mov [rdi + 0x00], rbx",
            "mov rbx, [rsi + 0x00]",
            "mov rbp, [rsi + 0x08]",
            "mov r12, [rsi + 0x10]",
            "mov r13, [rsi + 0x18]",
            "mov r14, [rsi + 0x20]",
            "mov r15, [rsi + 0x28]",
            "mov rsp, [rsi + 0x30]",
            "jmp qword ptr [rsi + 0x38]",
            "2:",
            inout("rdi") from => _,
            inout("rsi") to => _,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _,
            clobber_abi("sysv64"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::green::Stack;
    use std::cell::Cell;

    thread_local! {
        static MAIN: Cell<*mut Context> = const { Cell::new(std::ptr::null_mut()) };
        static CHILD: Cell<*mut Context> = const { Cell::new(std::ptr::null_mut()) };
        static LOG: Cell<u64> = const { Cell::new(0) };
    }

    extern "C" fn child_entry() -> ! {
        // Runs on the green stack; this test never migrates threads, so TLS is fine here.
        for i in 1..=3u64 {
            LOG.with(|l| l.set(l.get() * 10 + i));
            // SAFETY: both contexts are alive for the whole test.
            unsafe { switch(CHILD.with(|c| c.get()), MAIN.with(|m| m.get())) };
        }
        unreachable!("the test stops resuming the child after three rounds")
    }

    #[test]
    fn ping_pong_preserves_callee_saved_state_and_order() {
        let stack = Stack::new(64 * 1024).unwrap();
        let mut main = Context::default();
        let mut child = Context::new(stack.top(), child_entry);
        MAIN.with(|m| m.set(&mut main));
        CHILD.with(|c| c.set(&mut child));
        let mut acc = 0u64;
        for round in 1..=3u64 {
            let before = acc;
            // SAFETY: `child` runs on `stack`, alive until the end of the test.
            unsafe { switch(&mut main, &child) };
            acc = before + round; // locals survive the round trip
        }
        assert_eq!(acc, 6);
        assert_eq!(LOG.with(|l| l.get()), 123);
    }
}
