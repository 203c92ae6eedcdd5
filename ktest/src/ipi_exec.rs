//! `ipi-exec`: a registration does not survive `execve` (issue 40, item 1).
//!
//! A child opens `/dev/synergy_ipi` *without* `O_CLOEXEC`, registers its only thread (pinned)
//! with a handler address of this program, and execs this same program as `ipi-exec-helper`,
//! which inherits the descriptor. The helper, in the new image (a new address-space layout: the
//! old handler address means nothing there), sends to its own CPU through the inherited
//! descriptor. Before the fix the send succeeded and the delivery redirected the new program to
//! the old address (the helper died of SIGSEGV, or ran whatever lay there); now the send fails
//! with ESTALE, the stale registration is gone (the helper registers on the same CPU again), and
//! no delivery reaches the new image. The parent judges by the helper's exit status and output.

use crate::ioctl;
use crate::ipi::{reg, send_to, slot_addr};
use crate::pin_to;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use synergy_uapi::ipi;

/// Never called: its address is what the pre-exec image registers.
extern "C" fn old_image_handler() {
    std::process::abort();
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The child's part before the exec; returns only on failure.
fn register_and_exec(out: OwnedFd) -> String {
    if let Err(e) = pin_to(0) {
        return e;
    }
    let path = CString::new(ipi::DEVICE_PATH).unwrap();
    // SAFETY: plain open(2) of a NUL-terminated path; deliberately without O_CLOEXEC.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR) };
    if fd < 0 {
        return format!("open {}: errno {} (is kmod_ipi.ko loaded?)", ipi::DEVICE_PATH, last_errno());
    }
    let (r, answer) = reg(fd, old_image_handler as *const () as u64, slot_addr(), 0);
    if let Err(e) = r {
        return format!("register before exec: errno {e}");
    }
    // The helper writes its report to the pipe the parent reads (stdout of the exec'd image).
    // SAFETY: dup2 onto stdout of this single-threaded child.
    if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&out), 1) } < 0 {
        return format!("dup2: errno {}", last_errno());
    }
    let exe = CString::new("/proc/self/exe").unwrap();
    let args = [
        CString::new("synergy-ktest").unwrap(),
        CString::new("ipi-exec-helper").unwrap(),
        CString::new(fd.to_string()).unwrap(),
        CString::new(answer.cpu.to_string()).unwrap(),
    ];
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: NUL-terminated strings and a NULL-terminated argv that outlive the call.
    unsafe { libc::execv(exe.as_ptr(), argv.as_ptr()) };
    format!("execv: errno {}", last_errno())
}

/// `ipi-exec`.
pub fn exec_inherited() -> Result<(), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: errno {}", last_errno()));
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child runs only async-signal-safe calls and the plain code above before execv
    // or _exit (this test runs single-threaded until here).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: errno {}", last_errno()));
    }
    if pid == 0 {
        drop(read_end);
        let why = register_and_exec(write_end);
        eprintln!("ipi-exec child: {why}");
        // SAFETY: leave the child without running the parent's exit handlers.
        unsafe { libc::_exit(3) };
    }
    drop(write_end);
    let mut report = String::new();
    let mut pipe = std::fs::File::from(read_end);
    let _ = pipe.read_to_string(&mut report);
    let mut status = 0;
    // SAFETY: waits for our own child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(format!("waitpid: errno {}", last_errno()));
    }
    let report = report.trim();
    if libc::WIFSIGNALED(status) {
        return Err(format!(
            "the exec'd program was killed by signal {} (a delivery redirected it to the pre-exec handler address?); it said: {report:?}",
            libc::WTERMSIG(status)
        ));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("the exec'd program failed (status {status:#x}): {report:?}"));
    }
    println!("ipi-exec: {report}");
    Ok(())
}

/// `ipi-exec-helper <fd> <cpu>`: runs in the exec'd image with the inherited descriptor.
pub fn exec_helper(args: &[String]) -> Result<(), String> {
    let [fd, cpu] = args else {
        return Err("usage: ipi-exec-helper <fd> <cpu> (started by ipi-exec)".into());
    };
    let fd: i32 = fd.parse().map_err(|_| format!("bad fd {fd:?}"))?;
    let cpu: u32 = cpu.parse().map_err(|_| format!("bad cpu {cpu:?}"))?;
    match send_to(fd, cpu) {
        Err(e) if e == libc::ESTALE => {}
        Err(e) => return Err(format!("send through the inherited descriptor: expected ESTALE, got errno {e}")),
        Ok(_) => {
            return Err("send through a registration made before exec succeeded: the new program can be redirected to the old one's handler address".into())
        }
    }
    // The stale registration was dropped: this image may register on the same CPU.
    let (r, answer) = reg(fd, exec_helper as *const () as u64, slot_addr(), 0);
    r.map_err(|e| format!("register after exec: errno {e} (the stale registration still holds the CPU?)"))?;
    if answer.cpu != cpu {
        return Err(format!("registered on CPU {} after exec, pinned to {cpu}", answer.cpu));
    }
    ioctl(fd, ipi::IOC_UNREGISTER, 0).map_err(|e| format!("unregister: errno {e}"))?;
    println!("send after exec refused with ESTALE; the stale registration was dropped and CPU {cpu} registered again");
    Ok(())
}
