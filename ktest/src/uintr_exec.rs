//! `uintr-exec`: a kmod_uintr receiver does not survive `execve` (issue 40, item 1), run on the
//! fake backend (a test build loaded with `fake_hardware=1`).
//!
//! A child opens `/dev/synergy_uintr` *without* `O_CLOEXEC`, registers its only thread as a
//! receiver, and execs this program as `uintr-exec-helper`, which inherits the descriptor. The
//! helper first sleeps (a context switch: `sched_in` then finds the thread exec'd and marks its
//! old state defunct), and then, through the inherited descriptor, registers a sender for the old
//! receiver and registers itself as a receiver: both must answer ESTALE, the README's promise.
//! Before the fix the sender's lookup skipped the defunct receiver and answered ENOENT, so the
//! new program learnt only "no such receiver" for its own process's registration.

use crate::ioctl;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use synergy_uapi::uintr;

/// Never called: its address is what the pre-exec image registers.
extern "C" fn old_image_handler() {
    std::process::abort();
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The child's part before the exec; returns only on failure.
fn register_and_exec(out: OwnedFd) -> String {
    let path = CString::new(uintr::DEVICE_PATH).unwrap();
    // SAFETY: plain open(2) of a NUL-terminated path; deliberately without O_CLOEXEC.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR) };
    if fd < 0 {
        return format!("open {}: errno {} (is kmod_uintr.ko loaded?)", uintr::DEVICE_PATH, last_errno());
    }
    let mut r = uintr::UintrReceiver {
        handler: old_image_handler as *const () as u64,
        stack_adjust: 128,
        flags: 0,
        receiver_id: 0,
    };
    if let Err(e) = ioctl(fd, uintr::IOC_REGISTER_RECEIVER, &mut r as *mut _ as usize) {
        return format!("register a receiver before exec: errno {e} (kmod_uintr loaded with fake_hardware=1?)");
    }
    // SAFETY: dup2 onto stdout of this single-threaded child.
    if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&out), 1) } < 0 {
        return format!("dup2: errno {}", last_errno());
    }
    let exe = CString::new("/proc/self/exe").unwrap();
    let args = [
        CString::new("synergy-ktest").unwrap(),
        CString::new("uintr-exec-helper").unwrap(),
        CString::new(fd.to_string()).unwrap(),
        CString::new(r.receiver_id.to_string()).unwrap(),
    ];
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: NUL-terminated strings and a NULL-terminated argv that outlive the call.
    unsafe { libc::execv(exe.as_ptr(), argv.as_ptr()) };
    format!("execv: errno {}", last_errno())
}

/// `uintr-exec`.
pub fn exec_inherited() -> Result<(), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: errno {}", last_errno()));
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child runs only the plain code above before execv or _exit (this test is
    // single-threaded until here).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: errno {}", last_errno()));
    }
    if pid == 0 {
        drop(read_end);
        let why = register_and_exec(write_end);
        eprintln!("uintr-exec child: {why}");
        // SAFETY: leave the child without running the parent's exit handlers.
        unsafe { libc::_exit(3) };
    }
    drop(write_end);
    let mut report = String::new();
    let _ = std::fs::File::from(read_end).read_to_string(&mut report);
    let mut status = 0;
    // SAFETY: waits for our own child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(format!("waitpid: errno {}", last_errno()));
    }
    let report = report.trim();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("the exec'd program failed (status {status:#x}): {report:?}"));
    }
    println!("uintr-exec: {report}");
    Ok(())
}

/// `uintr-exec-helper <fd> <receiver id>`: runs in the exec'd image with the inherited descriptor.
pub fn exec_helper(args: &[String]) -> Result<(), String> {
    let [fd, id] = args else {
        return Err("usage: uintr-exec-helper <fd> <receiver id> (started by uintr-exec)".into());
    };
    let fd: i32 = fd.parse().map_err(|_| format!("bad fd {fd:?}"))?;
    let id: u32 = id.parse().map_err(|_| format!("bad receiver id {id:?}"))?;
    // A context switch, so that sched_in has seen the exec (and marked the old state defunct).
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut s = uintr::UintrSender { receiver_id: id, vector: 1, uitt_index: 0, flags: 0 };
    match ioctl(fd, uintr::IOC_REGISTER_SENDER, &mut s as *mut _ as usize) {
        Err(e) if e == libc::ESTALE => {}
        Err(e) => return Err(format!("a sender for the pre-exec receiver: expected ESTALE, got errno {e}")),
        Ok(_) => return Err("a sender registered for a receiver of the pre-exec program".into()),
    }
    let mut r =
        uintr::UintrReceiver { handler: exec_helper as *const () as u64, stack_adjust: 128, flags: 0, receiver_id: 0 };
    match ioctl(fd, uintr::IOC_REGISTER_RECEIVER, &mut r as *mut _ as usize) {
        Err(e) if e == libc::ESTALE => {}
        Err(e) => return Err(format!("a receiver through the inherited descriptor: expected ESTALE, got errno {e}")),
        Ok(_) => return Err("registered a receiver over the pre-exec program's state".into()),
    }
    println!("after exec and a context switch, a sender for the old receiver and a new receiver both got ESTALE");
    Ok(())
}
