//! The 64-byte green-thread context and the switch between two of them.
//!
//! A voluntary switch is a point in ordinary compiled code, so by the System V AMD64 ABI only what
//! a call preserves matters: the callee-saved registers (rbx, rbp, r12–r15), the stack pointer,
//! the resume address, and the floating-point *control* state (MXCSR's control bits and the x87
//! control word, which the ABI also makes callee-saved). Everything else an *asynchronous*
//! interruption could clobber is saved by the preemption entry (`preempt::entry`) before it
//! reaches a switch.
//!
//! `switch` is inline asm rather than a called function: it declares r12–r15 and every
//! caller-saved register clobbered, so the compiler spills only what is live at that switch
//! point; it stores rbx, rbp (which asm cannot declare clobbered), rsp, its resume address and the
//! FP control state into the context. It loads rbx, rbp, rsp and rip of the target, and its FP
//! control state only where it differs from the current one: MXCSR's *control* bits (0xFFC0),
//! not its status flags, which the ABI leaves caller-saved and which any inexact operation sets;
//! compared with them, nearly every switch would reload MXCSR and the x87 control word, and a
//! reload right before the next switch's store serializes (measured: 62 ns instead of 0.9 per
//! switch in `bench ctx`). r12–r15 need no
//! slot: they are clobbered at every switch site and ignored by a fresh thread's entry. Each
//! switch site has its own indirect jump, which branch predictors learn per site.

/// MXCSR after reset and as the ABI expects it at a call: all exceptions masked, round to nearest.
pub const DEFAULT_MXCSR: u32 = 0x1F80;
/// The x87 control word as the ABI expects it: all exceptions masked, extended precision, nearest.
pub const DEFAULT_FPUCW: u16 = 0x037F;

#[repr(C, align(64))]
#[derive(Debug, Clone, Copy)]
/// A green thread's saved context: what the System V ABI makes callee-saved across the switch call, plus where to resume.
pub struct Context {
    /// Callee-saved rbx.
    pub rbx: u64,
    /// Callee-saved rbp.
    pub rbp: u64,
    /// The stack pointer to resume with.
    pub rsp: u64,
    /// The instruction to resume at.
    pub rip: u64,
    /// MXCSR (bytes 0..4) and the x87 control word (bytes 4..6); bytes 6..8 stay zero.
    pub mxcsr: u32,
    /// The x87 control word (bytes 4..6 of the pair above).
    pub fpucw: u16,
    _pad: [u8; 2],
    _reserved: [u64; 3],
}

const _: () = assert!(core::mem::size_of::<Context>() == 64);
const _: () = assert!(core::mem::offset_of!(Context, rbp) == 0x08);
const _: () = assert!(core::mem::offset_of!(Context, rsp) == 0x10);
const _: () = assert!(core::mem::offset_of!(Context, rip) == 0x18);
const _: () = assert!(core::mem::offset_of!(Context, mxcsr) == 0x20);
const _: () = assert!(core::mem::offset_of!(Context, fpucw) == 0x24);

impl Default for Context {
    /// An empty context with the ABI's default FP control state (it is only ever switched to
    /// after a `switch` saved into it).
    fn default() -> Context {
        Context {
            rbx: 0,
            rbp: 0,
            rsp: 0,
            rip: 0,
            mxcsr: DEFAULT_MXCSR,
            fpucw: DEFAULT_FPUCW,
            _pad: [0; 2],
            _reserved: [0; 3],
        }
    }
}

impl Context {
    /// The context of a thread parked by the preemption entry: resuming it continues at `rip`
    /// (the entry's resume path) with `rbx` and `rsp` at `frame` (its saved registers on its green
    /// stack), the ABI's default control words (the entry's restore brings back the thread's own).
    pub fn preempted(frame: u64, rip: u64) -> Context {
        Context { rbx: frame, rsp: frame, rip, ..Context::default() }
    }

    /// A context that starts `entry` on the stack whose (exclusive) top is `stack_top`, with the
    /// ABI's default FP control state. `entry` must never return.
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
    // SAFETY: stores this point's rbx, rbp, rsp, resume address (label 2), MXCSR and x87 control
    // word into `from`; loads the target's FP control state if it differs (MXCSR's control bits,
    // 0xFFC0, and the whole x87 control word, each read back with the size it was stored with),
    // then its
    // rbx, rbp and rsp, and jumps to its rip. When someone switches back, control arrives at label
    // 2 with rbx/rbp/rsp and the FP control state restored; everything else is declared clobbered,
    // so the compiler holds nothing else live across the asm. rax is a declared clobber (through
    // clobber_abi). No stack memory is touched.
    unsafe {
        core::arch::asm!(
            "lea rax, [rip + 2f]",
            "mov [rdi + 0x18], rax",
            "mov [rdi + 0x10], rsp",
            "mov [rdi + 0x08], rbp",
            "mov [rdi + 0x00], rbx",
            "stmxcsr [rdi + 0x20]",
            "fnstcw [rdi + 0x24]",
            "mov eax, [rdi + 0x20]",
            "xor eax, [rsi + 0x20]",
            "test eax, 0xFFC0",
            "jnz 3f",
            "movzx eax, word ptr [rdi + 0x24]",
            "cmp ax, [rsi + 0x24]",
            "je 4f",
            "3:",
            "ldmxcsr [rsi + 0x20]",
            "fldcw [rsi + 0x24]",
            "4:",
            "mov rbx, [rsi + 0x00]",
            "mov rbp, [rsi + 0x08]",
            "mov rsp, [rsi + 0x10]",
            "jmp qword ptr [rsi + 0x18]",
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

/// Continues at `to` without saving where it is called from: the caller's frames (on whatever
/// stack it runs) are abandoned, as `longjmp` abandons them.
///
/// # Safety
/// As `switch` for `to`; and nothing the caller's frames own may need dropping or be used again
/// (the preemption path calls it on the worker's preemption stack, whose frames are scratch).
#[inline(always)]
pub unsafe fn jump(to: *const Context) -> ! {
    // SAFETY: per the contract; the control and status words are loaded unconditionally (there
    // is no saved `from` to compare with).
    unsafe {
        core::arch::asm!(
            "ldmxcsr [rsi + 0x20]",
            "fldcw [rsi + 0x24]",
            "mov rbx, [rsi + 0x00]",
            "mov rbp, [rsi + 0x08]",
            "mov rsp, [rsi + 0x10]",
            "jmp qword ptr [rsi + 0x18]",
            in("rsi") to,
            options(noreturn),
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
