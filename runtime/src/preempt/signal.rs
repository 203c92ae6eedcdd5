//! `--preempt=signal`: the timer core sends SIGURG with tgkill; the handler, running on the
//! interrupted green thread, redirects the interrupted context into `preempt_entry`. All the real
//! work happens after sigreturn, in ordinary (not signal-handler) context.
//!
//! SIGURG because its default action is "ignore": a stray one is harmless, and no common library
//! uses it (Go's runtime does, for the same purpose).
//!
//! The handler runs on a per-worker alternate signal stack (`SA_ONSTACK`), never on the green
//! stack: the kernel's signal frame holds the whole XSAVE image (`getauxval(AT_MINSIGSTKSZ)`, about
//! 12 KiB with AMX enabled) and would kill a request running within that distance of its guard
//! page. Each worker installs its stack in `register_worker` and restores the one it had (std's
//! stack-overflow stack, or none) in `unregister_worker`.

use super::{entry, Preempter, Target};
use crate::green::Stack;
use crate::local;
use std::cell::RefCell;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Once;

pub const PREEMPT_SIGNAL: libc::c_int = libc::SIGURG;

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

    fn register_worker(&self, _cpu: Option<usize>) -> io::Result<()> {
        AltStack::install()
    }

    fn unregister_worker(&self) {
        AltStack::uninstall();
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

/// A worker's alternate signal stack and the one it replaced.
struct AltStack {
    stack: Stack,
    previous: libc::stack_t,
}

thread_local! {
    /// The calling worker's alternate stack. Touched only by `register_worker` and
    /// `unregister_worker`, which run on the worker's own OS thread outside any green thread.
    static ALT_STACK: RefCell<Option<AltStack>> = const { RefCell::new(None) };
}

/// Bytes of a worker's alternate signal stack: four times the kernel's minimum for a signal
/// frame on this CPU (it covers the frame and the handler), and at least 64 KiB.
fn alt_stack_size() -> usize {
    // SAFETY: getauxval has no preconditions; 0 means the kernel did not say.
    let min = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
    (4 * min.max(libc::SIGSTKSZ)).max(64 * 1024)
}

impl AltStack {
    fn install() -> io::Result<()> {
        let stack = Stack::new(alt_stack_size())?;
        let new = libc::stack_t {
            ss_sp: stack.bottom() as *mut libc::c_void,
            ss_flags: 0,
            ss_size: stack.top() - stack.bottom(),
        };
        // SAFETY: a zeroed stack_t is valid for the kernel to fill.
        let mut previous: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: `new` describes a mapping that lives in ALT_STACK until `uninstall` has switched
        // this thread back to `previous`; this thread is not running on an alternate stack now.
        if unsafe { libc::sigaltstack(&new, &mut previous) } != 0 {
            return Err(io::Error::last_os_error());
        }
        ALT_STACK.with(|a| {
            let old = a.borrow_mut().replace(AltStack { stack, previous });
            debug_assert!(old.is_none(), "a worker registers once");
        });
        Ok(())
    }

    fn uninstall() {
        let Some(alt) = ALT_STACK.with(|a| a.borrow_mut().take()) else { return };
        let previous = if alt.previous.ss_flags & libc::SS_DISABLE != 0 {
            libc::stack_t { ss_sp: std::ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 }
        } else {
            alt.previous
        };
        // SAFETY: restores the stack this thread had (or none) before `alt.stack` is unmapped; no
        // handler runs on it now (we are in the worker's main context).
        if unsafe { libc::sigaltstack(&previous, std::ptr::null_mut()) } != 0 {
            // The kernel still points at our stack: keep it mapped rather than leave a dangling one.
            eprintln!("synergy: cannot restore the worker's signal stack: {}", io::Error::last_os_error());
            std::mem::forget(alt.stack);
        }
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
