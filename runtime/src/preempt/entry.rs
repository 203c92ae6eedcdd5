//! The one preemption entry every delivery method lands in.
//!
//! Contract with the delivery side: the interrupted thread continues at `preempt_entry` with
//! *every* register as it was, except
//!   rsp = interrupted rsp − 128 (red zone) − 8, and [rsp] = interrupted rip.
//! A delivery path that does not write the green stack itself — the signal handler (running on
//! the worker's alternate signal stack) and kmod_ipi (which only rewrites the saved rip) — stores
//! the interrupted rip in the worker's `interrupted_rip` slot (gs:[16]) and resumes the thread at
//! `preempt_stub` instead, which builds that frame with `lea` + `push gs:[16]`: no register or
//! flag changes.
//!
//! The entry saves RFLAGS and all general-purpose registers on the green stack (the *frame*:
//! with the red-zone gap and the rip, `green_frame_bytes()`, all the green stack must have room
//! for), then the extended state (x87/SSE/AVX/AVX-512/...) into the running thread's own XSAVE
//! area (gs:[40], allocated with the thread: with XSAVEC, compacted, only the components in use,
//! where the CPU has it, else XSAVE; `cpu::xsave_format`), and calls the scheduler's handler
//! (`hook::run_handler`) on the worker's preemption stack (gs:[48]), not on the green stack:
//! the park path (a fresh green thread, the queues) needs KiB a request deep in its stack does
//! not have (issue 39, item 8). The handler either parks the thread, giving it a context that
//! resumes at `preempt_resume` with rsp and rbx at the frame, and continues elsewhere, or
//! returns to let the thread continue. Either way the thread ends in `preempt_restore`, on
//! whichever worker runs it then: XRSTOR from its area, the registers popped in reverse, and
//! `ret 128` back to the interrupted rip, popping the red-zone gap.
//!
//! The word stays disarmed from the decision until after XRSTOR; the handler only says whether to
//! arm it (`Handler`'s return), and `preempt_restore` arms it once the area has been read back.
//! So no interrupt can enter the entry again on the same thread while its area holds a saved
//! state, and one area per thread suffices; an interrupt after the arming (during the pops) nests
//! below the frame like any other.

use core::arch::naked_asm;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// ABI default MXCSR (all exceptions masked, round to nearest) and x87 control word, loaded after
/// XSAVE so the runtime and the next green thread never inherit the interrupted code's modes.
static DEFAULT_MXCSR: u32 = crate::green::context::DEFAULT_MXCSR;
static DEFAULT_FPUCW: u16 = crate::green::context::DEFAULT_FPUCW;

/// 1 if the CPU has AVX: the entry then clears the upper halves of the vector registers after
/// saving them (`vzeroupper`), so the runtime's SSE code does not run with the interrupted code's
/// dirty upper state (a false dependency on every SSE instruction, or a state-transition penalty
/// on older cores). XRSTOR brings them back. `vzeroupper` faults without AVX, hence the flag.
static HAS_AVX: AtomicU8 = AtomicU8::new(0);

/// Bytes of the XSAVE area in the format `COMPACTED` selects, set once by `init` before any
/// preemption.
static XSAVE_SIZE: AtomicU64 = AtomicU64::new(0);

/// 1: save with XSAVEC (compacted format, only the components in use are written); 0: XSAVE.
/// XRSTOR reads either format (XCOMP_BV bit 63 says which).
static COMPACTED: AtomicU8 = AtomicU8::new(0);

/// Records the XSAVE format and area size; fails on a CPU/OS without XSAVE.
pub fn init() -> std::io::Result<()> {
    let (format, size) = crate::cpu::xsave_format().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::Unsupported, "preemption needs XSAVE (CPUID.1:ECX.OSXSAVE)")
    })?;
    XSAVE_SIZE.store(size as u64, Ordering::Relaxed);
    COMPACTED.store((format == crate::cpu::XsaveFormat::Compacted) as u8, Ordering::Relaxed);
    HAS_AVX.store(std::arch::is_x86_feature_detected!("avx") as u8, Ordering::Relaxed);
    Ok(())
}

/// Bytes of the XSAVE area the entry saves into (the components enabled in XCR0, compacted where XSAVEC is used), as CPUID leaf 0xD gives it.
pub fn xsave_size() -> usize {
    XSAVE_SIZE.load(Ordering::Relaxed) as usize
}

/// Green-stack bytes the entry needs below the interrupted rsp: the red-zone gap, the rip,
/// RFLAGS and 15 general-purpose registers. Everything else lives elsewhere (the XSAVE area with
/// the thread, the handler's frames on the worker's preemption stack).
pub fn green_frame_bytes() -> usize {
    128 + 8 + 8 + 15 * 8
}

/// Where a thread the handler parked resumes (`Context::preempted`).
pub fn resume_address() -> u64 {
    preempt_resume as *const () as u64
}

/// Address to redirect an interrupted thread to when its rip was stored in `interrupted_rip`.
pub fn stub_address() -> u64 {
    preempt_stub as *const () as u64
}

/// The decision `ipi_stub` and `uintr_stub` share, as asm text (operands `word`, `not_armed`,
/// `gens`, `depth_mask`): jump to local label 2 (back to the interrupted code) if the preemption
/// word is not armed or the interrupt was sent for an earlier arming of the timer (the two arm
/// generations differ, `local::ArmGenerations`), to label 3 (leave the preemption pending for
/// `enable()`) inside a no-preemption section; fall through to preempt. Changes RFLAGS only:
/// rax and rcx are pushed around the generation compare and popped (`pop` leaves the flags).
macro_rules! preemption_due_checks {
    () => {
        concat!(
            "test dword ptr gs:[{word}], {not_armed}\n",
            "jnz 2f\n",
            "push rax\n",
            "push rcx\n",
            "mov rax, qword ptr gs:[{gens}]\n",
            "mov rcx, qword ptr [rax]\n",
            "cmp rcx, qword ptr [rax + 8]\n",
            "pop rcx\n",
            "pop rax\n",
            "jne 2f\n",
            "test dword ptr gs:[{word}], {depth_mask}\n",
            "jnz 3f",
        )
    };
}

/// Address kmod_ipi resumes an interrupted worker at (with its rip in `interrupted_rip`).
pub fn ipi_stub_address() -> u64 {
    ipi_stub as *const () as u64
}

/// Like `preempt_stub`, but the interrupt was delivered without knowing the worker's state (the
/// kernel module cannot read it), so the decision `decide::redirect_decision` makes in the signal
/// handler is made here, in asm that changes nothing it does not restore:
///   not armed, or sent for an earlier arming of the timer (`local::ArmGenerations`) ->
///   return to the interrupted rip; depth nonzero -> clear `NOT_PENDING` in the preemption word
///   and return; too little stack -> return; otherwise disarm (set `NOT_ARMED | NOT_PENDING`) and
///   enter `preempt_entry`. Each test and update of the word is one gs-relative instruction. The rip slot is reset to 0 right after it is pushed, which tells the module
///   that the next delivery may proceed.
#[unsafe(naked)]
unsafe extern "C" fn ipi_stub() {
    // SAFETY: reached with the interrupted thread's exact registers (the module changed only rip)
    // and its rip in gs:[16]. `lea`, `push m64`, `mov m, imm`, `pushfq`/`popfq`, `test`/`or`/`and
    // m, imm`, `cmp` and `ret imm` change no general-purpose register; rax and rcx, used to compare the arm
    // generations, are pushed first and popped after (`pop` leaves the flags of the `cmp`);
    // RFLAGS is saved before the first `cmp` and restored on every path. A second delivery can only happen once the slot is 0 again, i.e.
    // after the rip is safely on the stack; it then nests like any interrupt of user code.
    naked_asm!(
        "lea rsp, [rsp - 128]",
        "push qword ptr gs:[{rip_slot}]",
        "mov qword ptr gs:[{rip_slot}], 0",
        "pushfq",
        preemption_due_checks!(),
        "cmp rsp, qword ptr gs:[{min_rsp}]",
        "jb 2f",
        "or dword ptr gs:[{word}], {idle}",
        "popfq",
        "jmp {entry}",
        "3:",
        "and dword ptr gs:[{word}], {clear_pending}",
        "2:",
        "popfq",
        "ret 128",
        rip_slot = const crate::local::OFF_INTERRUPTED_RIP,
        word = const crate::local::OFF_WORD,
        not_armed = const crate::local::NOT_ARMED,
        depth_mask = const crate::local::DEPTH_MASK,
        idle = const crate::local::IDLE_WORD,
        clear_pending = const !crate::local::NOT_PENDING,
        min_rsp = const crate::local::OFF_MIN_PREEMPT_RSP,
        gens = const crate::local::OFF_GENS,
        entry = sym preempt_entry,
    )
}

/// Handler kmod_uintr delivers user interrupts to (registered with a 128-byte stack adjustment).
pub fn uintr_stub_address() -> u64 {
    uintr_stub as *const () as u64
}

/// The user-interrupt handler. The CPU entered it with UIF = 0, rsp = (interrupted rsp − 128)
/// aligned down to 16, and pushed (from high to low) the interrupted rsp, RFLAGS, rip and the user
/// vector. It makes `ipi_stub`'s decision; to preempt, it stores the interrupted rip in the rip
/// slot, rewrites the frame's rip to `preempt_stub` and leaves with `uiret`, which restores RFLAGS
/// and rsp exactly and sets UIF again, so the interrupted thread continues in `preempt_stub` with
/// every register as it was and can be parked with user interrupts enabled. Every other path
/// `uiret`s straight back.
#[unsafe(naked)]
unsafe extern "C" fn uintr_stub() {
    // SAFETY: the frame layout is the SDM's (see above); `lea` drops the vector so [rsp] is the
    // rip UIRET pops. The comparisons clobber RFLAGS, which UIRET reloads from the frame; rax and
    // rcx are saved around their use and restored by `pop` (which changes no flag). The stack check uses
    // the interrupted rsp minus the entry's 136-byte frame, as `ipi_stub` does. The word is
    // disarmed before the slot is written, so a nested user interrupt (possible once UIRET sets
    // UIF) returns at once and cannot overwrite the slot before `preempt_stub` pushes it.
    // UIRET is F3 0F 01 EC.
    naked_asm!(
        "lea rsp, [rsp + 8]",
        preemption_due_checks!(),
        "push rax",
        "mov rax, qword ptr [rsp + 24]",
        "sub rax, 136",
        "cmp rax, qword ptr gs:[{min_rsp}]",
        "pop rax",
        "jb 2f",
        "or dword ptr gs:[{word}], {idle}",
        "push rax",
        "mov rax, qword ptr [rsp + 8]",
        "mov qword ptr gs:[{rip_slot}], rax",
        "lea rax, [rip + {stub}]",
        "mov qword ptr [rsp + 8], rax",
        "pop rax",
        ".byte 0xf3, 0x0f, 0x01, 0xec",
        "3:",
        "and dword ptr gs:[{word}], {clear_pending}",
        "2:",
        ".byte 0xf3, 0x0f, 0x01, 0xec",
        rip_slot = const crate::local::OFF_INTERRUPTED_RIP,
        word = const crate::local::OFF_WORD,
        not_armed = const crate::local::NOT_ARMED,
        depth_mask = const crate::local::DEPTH_MASK,
        idle = const crate::local::IDLE_WORD,
        clear_pending = const !crate::local::NOT_PENDING,
        min_rsp = const crate::local::OFF_MIN_PREEMPT_RSP,
        gens = const crate::local::OFF_GENS,
        stub = sym preempt_stub,
    )
}

#[unsafe(naked)]
unsafe extern "C" fn preempt_stub() {
    // SAFETY: reached with the interrupted thread's exact registers, its rip in gs:[16] (written
    // by the interrupt handler, which also disarmed the preemption word, so no second redirect can
    // overwrite the slot before this push). `lea` skips the red zone without touching RFLAGS;
    // `push m64` writes the return address below it.
    naked_asm!(
        "lea rsp, [rsp - 128]",
        "push qword ptr gs:[{rip_slot}]",
        "jmp {entry}",
        rip_slot = const crate::local::OFF_INTERRUPTED_RIP,
        entry = sym preempt_entry,
    )
}

#[unsafe(naked)]
unsafe extern "C" fn preempt_entry() {
    // SAFETY: reached only as described in the module docs, on a green stack with room for
    // `green_frame_bytes()` (the decision checked `min_preempt_rsp`), with the word disarmed, on
    // a worker whose gs:[40] is the running thread's XSAVE area and gs:[48] its preemption
    // stack. Every register the interrupted code could observe is saved before anything is
    // clobbered: pushfq and the pushes change only rsp; rbx then holds the frame's address (rbx
    // itself was saved) and rcx the area's. The XSAVE header must be zero before XSAVE (XRSTOR
    // faults on a non-zero XCOMP_BV/reserved field), so it is cleared with integer stores that
    // touch no vector state (XSAVEC writes XSTATE_BV and XCOMP_BV itself; the rest of the header
    // must still be zero). edx:eax = all ones asks for every component enabled in XCR0; XSAVEC
    // then writes only those in use (the flags the `cmp` changes were saved by pushfq). After
    // XSAVE, MXCSR and the x87 control word are reset to the ABI defaults and, with AVX,
    // vzeroupper clears the saved upper vector state (all of it comes back with XRSTOR). `cld`
    // gives the Rust callee the ABI's DF = 0; the original DF is in the saved RFLAGS. The handler
    // runs on the preemption stack (16-byte aligned top, so aligned at the call as the ABI
    // wants), which nothing else uses while the word is disarmed; if it returns, the thread
    // continues here with rbx intact (callee-saved) and `preempt_restore` takes over.
    naked_asm!(
        "pushfq",
        "cld",
        "push rax",
        "push rcx",
        "push rdx",
        "push rsi",
        "push rdi",
        "push r8",
        "push r9",
        "push r10",
        "push r11",
        "push rbx",
        "push rbp",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov rbx, rsp",
        "mov rcx, qword ptr gs:[{area}]",
        "mov qword ptr [rcx + 512], 0",
        "mov qword ptr [rcx + 520], 0",
        "mov qword ptr [rcx + 528], 0",
        "mov qword ptr [rcx + 536], 0",
        "mov qword ptr [rcx + 544], 0",
        "mov qword ptr [rcx + 552], 0",
        "mov qword ptr [rcx + 560], 0",
        "mov qword ptr [rcx + 568], 0",
        "mov eax, -1",
        "mov edx, -1",
        "cmp byte ptr [rip + {compacted}], 0",
        "jne 6f",
        "xsave64 [rcx]",
        "jmp 7f",
        "6:",
        "xsavec64 [rcx]",
        "7:",
        "ldmxcsr dword ptr [rip + {mxcsr}]",
        "fldcw word ptr [rip + {fpucw}]",
        "cmp byte ptr [rip + {has_avx}], 0",
        "je 5f",
        "vzeroupper",
        "5:",
        "mov rdi, qword ptr [rbx + 128]",
        "mov rsi, rbx",
        "mov rsp, qword ptr gs:[{pstack}]",
        "call {on_preempt}",
        "jmp {restore}",
        area = const crate::local::OFF_SAVE_AREA,
        pstack = const crate::local::OFF_PREEMPT_STACK,
        compacted = sym COMPACTED,
        mxcsr = sym DEFAULT_MXCSR,
        fpucw = sym DEFAULT_FPUCW,
        has_avx = sym HAS_AVX,
        on_preempt = sym super::hook::run_handler,
        restore = sym preempt_restore,
    )
}

/// Where a thread the handler parked continues when a worker switches to it: rbx and rsp are
/// its frame (`Context::preempted`), gs names the worker it now runs on, whose gs:[40] was set
/// to this thread's area when it was made current.
#[unsafe(naked)]
unsafe extern "C" fn preempt_resume() {
    // SAFETY: reached only by a context switch to a `Context::preempted`, with the word disarmed
    // (a resumed thread's worker arms only in `preempt_restore`). The resume handler runs on this
    // worker's preemption stack, free as the entry's handler left it (nothing runs there across a
    // switch); rbx is callee-saved across the call.
    naked_asm!(
        "mov rsp, qword ptr gs:[{pstack}]",
        "call {on_resume}",
        "jmp {restore}",
        pstack = const crate::local::OFF_PREEMPT_STACK,
        on_resume = sym super::hook::run_resume,
        restore = sym preempt_restore,
    )
}

/// Restores the thread whose frame rbx points at and returns to its interrupted rip; rax says
/// whether to arm the preemption word (the handler's answer).
#[unsafe(naked)]
unsafe extern "C" fn preempt_restore() {
    // SAFETY: reached from `preempt_entry` or `preempt_resume` with rbx = the frame on this
    // thread's green stack and gs:[40] = this thread's area, holding what the entry saved. r12 is
    // scratch until its pop (its value is in the frame). XRSTOR needs edx:eax all ones (rax's
    // answer moved to r12 first) and restores exactly the components XSAVE(C) wrote. The word is
    // armed (the same two read-modify-writes as `PreemptState::arm`) only after XRSTOR: an
    // interrupt from then on nests below the frame and saves into the area, whose state was read
    // back. `test`, `or` and `and` change RFLAGS, which popfq restores last.
    naked_asm!(
        "mov r12, rax",
        "mov rsp, rbx",
        "mov rcx, qword ptr gs:[{area}]",
        "mov eax, -1",
        "mov edx, -1",
        "xrstor64 [rcx]",
        "test r12, r12",
        "jz 2f",
        "or dword ptr gs:[{word}], {np}",
        "and dword ptr gs:[{word}], {clear_armed}",
        "2:",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbp",
        "pop rbx",
        "pop r11",
        "pop r10",
        "pop r9",
        "pop r8",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop rcx",
        "pop rax",
        "popfq",
        "ret 128",
        area = const crate::local::OFF_SAVE_AREA,
        word = const crate::local::OFF_WORD,
        np = const crate::local::NOT_PENDING,
        clear_armed = const !crate::local::NOT_ARMED,
    )
}

/// Takes a preemption here and now, as if an interrupt had arrived at the return address: for
/// the preemptions the runtime takes itself (a deferred one at `enable`, a compiler-interrupt
/// probe), so they too park through the entry, on the preemption stack. The caller must be on a
/// worker's green thread with the word disarmed and depth 0, and must not use any worker state
/// it read before the call afterwards (it may return on another worker).
pub(crate) fn preempt_now() {
    // SAFETY: per the function's contract. `preempt_now_entry` is called with the ABI's rules:
    // what it clobbers beyond them it restores (the entry saves everything).
    unsafe { preempt_now_entry() }
}

#[unsafe(naked)]
unsafe extern "C" fn preempt_now_entry() {
    // SAFETY: a call: [rsp] is the return address, and nothing below rsp is live (a caller keeps
    // nothing in its red zone across a call). rax is caller-saved, so it may carry the address
    // while the frame the entry expects is built: [rsp] = rip with a 128-byte gap above, which
    // `ret 128` pops back to exactly the rsp a plain `ret` would leave.
    naked_asm!(
        "mov rax, qword ptr [rsp]",
        "lea rsp, [rsp - 128]",
        "mov qword ptr [rsp], rax",
        "jmp {entry}",
        entry = sym preempt_entry,
    )
}
