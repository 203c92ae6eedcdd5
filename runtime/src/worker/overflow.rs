//! A green stack overflow is reported, not a bare SIGSEGV (issue 39, item 7).
//!
//! A request that recurses past its green stack hits the PROT_NONE guard page below it
//! (`green::Stack`). The process-wide SIGSEGV/SIGBUS handler installed here runs on the worker's
//! alternate signal stack (`green::alt_stack`; the green stack itself is unusable then) and, when
//! the faulting address lies in the guard page of the green stack the worker is running, prints
//! what Rust prints for its own threads, then the request, the stack size and the option that
//! raises it, and aborts. Every other fault goes on to the handler that was installed before
//! (std's stack-overflow handler for OS thread stacks, or the application's): it is chained,
//! never swallowed. Everything here is async-signal-safe: no allocation, no lock, no TLS (the
//! worker is found through GS), output with write(2).

use crate::green::stack::page_size;
use crate::local;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

/// The actions that were installed for SIGSEGV and SIGBUS before ours, and the page size
/// (read once here: sysconf is not on POSIX's async-signal-safe list).
struct Previous {
    segv: libc::sigaction,
    bus: libc::sigaction,
    page: usize,
}

// SAFETY: plain data the kernel filled in, read-only once set.
unsafe impl Send for Previous {}
// SAFETY: as above.
unsafe impl Sync for Previous {}

static PREVIOUS: OnceLock<Previous> = OnceLock::new();

/// Installs the handler for the process (once; later calls do nothing). Fails only if
/// sigaction does.
pub(crate) fn install() -> std::io::Result<()> {
    let mut result = Ok(());
    PREVIOUS.get_or_init(|| {
        // SAFETY: a zeroed sigaction is valid; handler, flags and mask are filled in; the old
        // actions are read into zeroed structs the kernel fills.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_fault as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            let mut segv: libc::sigaction = std::mem::zeroed();
            let mut bus: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGSEGV, &sa, &mut segv) != 0 || libc::sigaction(libc::SIGBUS, &sa, &mut bus) != 0
            {
                result = Err(std::io::Error::last_os_error());
            }
            Previous { segv, bus, page: page_size() }
        }
    });
    result
}

/// The guard page of the green stack this worker runs, if it runs one.
fn guard_page_of_current(l: &local::PreemptState, page: usize) -> Option<(usize, usize)> {
    let lo = l.stack_lo.load(Ordering::Relaxed) as usize;
    (lo != 0).then(|| (lo - page, lo))
}

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let (true, Some(prev)) = (local::on_worker(), PREVIOUS.get()) {
        let l = local::current();
        if let Some((lo, hi)) = guard_page_of_current(l, prev.page) {
            if (lo..hi).contains(&addr) {
                report_and_abort(l);
            }
        }
    }
    chain(sig, info, uctx);
}

/// Passes the fault to the previous handler: calls it if it is a function, else (default or
/// ignore) reinstates it and returns, so the faulting instruction faults again under it.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    let Some(prev) = PREVIOUS.get() else { return };
    let action = if sig == libc::SIGBUS { &prev.bus } else { &prev.segv };
    match action.sa_sigaction {
        libc::SIG_DFL | libc::SIG_IGN => {
            // SAFETY: reinstating the action that was there before ours, a valid one.
            unsafe { libc::sigaction(sig, action, std::ptr::null_mut()) };
        }
        f if action.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: the previous owner installed `f` as an SA_SIGINFO handler of this signal.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(f) };
            f(sig, info, uctx);
        }
        f => {
            // SAFETY: the previous owner installed `f` as a plain handler of this signal.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(f) };
            f(sig);
        }
    }
}

/// Prints the report (write(2) only) and aborts.
fn report_and_abort(l: &local::PreemptState) -> ! {
    let stack_kib = (l.stack_hi.load(Ordering::Relaxed) - l.stack_lo.load(Ordering::Relaxed)) / 1024;
    let (id, kind) = (l.request_id.load(Ordering::Relaxed), l.request_kind.load(Ordering::Relaxed));
    // SAFETY: gettid is async-signal-safe and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u64;
    let mut out = Line::default();
    // The same lines std prints for its own threads (Rust 1.95), then the request.
    out.push(b"\nthread 'synergy worker' (");
    out.number(tid);
    out.push(b") has overflowed its stack\nfatal runtime error: stack overflow, aborting\nsynergy: request ");
    out.number(id);
    out.push(b" (kind ");
    out.number(u64::from(kind));
    out.push(b") overflowed its green stack of ");
    out.number(stack_kib);
    out.push(b" KiB; raise it with --stack-kib (Config::stack_kib)\n");
    // SAFETY: write(2) and abort(3) are async-signal-safe; the buffer is live.
    unsafe {
        libc::write(2, out.buf.as_ptr().cast(), out.len);
        libc::abort();
    }
}

/// A fixed buffer for the report: no allocation in a fault handler.
struct Line {
    buf: [u8; 384],
    len: usize,
}

impl Default for Line {
    fn default() -> Line {
        Line { buf: [0; 384], len: 0 }
    }
}

impl Line {
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn number(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

#[cfg(test)]
mod tests {
    use super::Line;

    #[test]
    fn the_report_line_formats_numbers_without_allocating() {
        let mut l = Line::default();
        l.push(b"request ");
        l.number(0);
        l.push(b" ");
        l.number(u64::MAX);
        assert_eq!(&l.buf[..l.len], b"request 0 18446744073709551615");
    }
}
