//! A worker's alternate signal stack. Every worker installs one (whatever the preemption
//! mode) for the two handlers that run on a worker while a green stack may be unusable: the
//! signal preempter's (`preempt::signal`: the kernel's signal frame holds the whole XSAVE image)
//! and the green-stack overflow report (`worker::overflow`: the faulting stack is the guard
//! page). The worker restores the stack it had (std's stack-overflow stack, or none) when it
//! stops.

use super::Stack;
use std::cell::RefCell;
use std::io;

/// A worker's alternate signal stack and the one it replaced.
pub(crate) struct AltStack {
    stack: Stack,
    previous: libc::stack_t,
}

thread_local! {
    /// The calling worker's alternate stack. Touched only by `install` and `uninstall`, which
    /// run on the worker's own OS thread (`worker::run_worker`) outside any green thread.
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
    /// Installs a new alternate stack on the calling thread, remembering the one it replaces.
    pub(crate) fn install() -> io::Result<()> {
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

    /// Restores the calling thread's previous alternate stack and unmaps this one.
    pub(crate) fn uninstall() {
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
            log::error!("cannot restore the worker's signal stack: {}", io::Error::last_os_error());
            std::mem::forget(alt.stack);
        }
    }
}
