//! `--preempt=signal`: the timer core sends SIGURG with tgkill; the handler, running on the
//! interrupted green thread, redirects the interrupted context into `preempt_entry`. All the real
//! work happens after sigreturn, in ordinary (not signal-handler) context.
//!
//! SIGURG because its default action is "ignore": a stray one is harmless, and no common library
//! uses it (Go's runtime does, for the same purpose).
//!
//! The handler runs on the worker's alternate signal stack (`SA_ONSTACK`, `green::alt_stack`,
//! which every worker installs whatever the preemption mode), never on the green stack: the
//! kernel's signal frame holds the whole XSAVE image (`getauxval(AT_MINSIGSTKSZ)`, about 12 KiB
//! with AMX enabled) and would kill a request running within that distance of its guard page.

use super::{entry, Preempter, Target};
use crate::local;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Once;

/// The signal the timer core sends (SIGURG: ignored by default, so a stray one harms no process).
pub const PREEMPT_SIGNAL: libc::c_int = libc::SIGURG;

/// `--preempt=signal`: `tgkill` with `PREEMPT_SIGNAL`, handled on the worker's alternate signal stack.
pub struct SignalPreempter {
    pid: libc::pid_t,
}

static INSTALL: Once = Once::new();

impl SignalPreempter {
    /// Installs the process-wide handler (once) and returns a sender.
    pub fn install() -> io::Result<SignalPreempter> {
        entry::init()?;
        let mut result = Ok(());
        INSTALL.call_once(|| {
            // SAFETY: a zeroed sigaction is valid; we fill handler, flags and mask. The handler is
            // async-signal-safe: it only touches this thread's WorkerLocal through `gs:` and the
            // ucontext the kernel gave it.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(PREEMPT_SIGNAL, &sa, std::ptr::null_mut()) != 0 {
                    result = Err(io::Error::last_os_error());
                }
            }
        });
        result?;
        // SAFETY: getpid cannot fail.
        Ok(SignalPreempter { pid: unsafe { libc::getpid() } })
    }
}

impl Preempter for SignalPreempter {
    fn name(&self) -> &'static str {
        "signal"
    }

    fn preempt(&self, target: Target) -> io::Result<()> {
        // SAFETY: plain syscall; tid belongs to a worker of this process.
        let r = unsafe { libc::syscall(libc::SYS_tgkill, self.pid, target.tid, PREEMPT_SIGNAL) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

extern "C" fn on_signal(_sig: libc::c_int, _info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    if !local::on_worker() {
        return;
    }
    let l = local::current();
    // SAFETY: the kernel passes a valid ucontext_t for SA_SIGINFO handlers.
    let gregs = unsafe { &mut (*(uctx as *mut libc::ucontext_t)).uc_mcontext.gregs };
    let rsp = gregs[libc::REG_RSP as usize] as u64;
    let rip = gregs[libc::REG_RIP as usize] as u64;
    if super::decide::redirect_decision(l, rsp) {
        // The stack below the red zone holds this very signal frame: hand the rip over in the
        // worker's slot and let `preempt_stub` push it after sigreturn.
        l.interrupted_rip.store(rip, Ordering::Relaxed);
        gregs[libc::REG_RIP as usize] = entry::stub_address() as i64;
    }
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
}
