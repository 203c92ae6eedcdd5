//! What the exec tests (`ipi-exec`, `uintr-exec`) share: a child that registers through a
//! descriptor opened without `O_CLOEXEC` and execs this program as a helper, which inherits it;
//! the parent collects the helper's report from a pipe and judges by its exit status.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Opens `path` read-write *without* `O_CLOEXEC` (the descriptor an exec'd program inherits).
pub fn open_inheritable(path: &str, module: &str) -> Result<i32, String> {
    let c = CString::new(path).unwrap();
    // SAFETY: plain open(2) of a NUL-terminated path; deliberately without O_CLOEXEC.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR) };
    if fd < 0 {
        return Err(format!("open {path}: errno {} (is {module}.ko loaded?)", last_errno()));
    }
    Ok(fd)
}

/// The child: `before_exec` registers and returns the helper's arguments (its subcommand first);
/// then this process execs `/proc/self/exe` with them, stdout on `out`. Returns only on failure.
fn child(out: OwnedFd, before_exec: impl FnOnce() -> Result<Vec<String>, String>) -> String {
    let args = match before_exec() {
        Ok(a) => a,
        Err(e) => return e,
    };
    // SAFETY: dup2 onto stdout of this single-threaded child.
    if unsafe { libc::dup2(out.as_raw_fd(), 1) } < 0 {
        return format!("dup2: errno {}", last_errno());
    }
    let exe = CString::new("/proc/self/exe").unwrap();
    let args: Vec<CString> =
        std::iter::once("synergy-ktest".to_string()).chain(args).map(|a| CString::new(a).unwrap()).collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: NUL-terminated strings and a NULL-terminated argv that outlive the call.
    unsafe { libc::execv(exe.as_ptr(), argv.as_ptr()) };
    format!("execv: errno {}", last_errno())
}

/// Runs the case: forks the child, reads the helper's report, waits; the report if the helper
/// exited 0.
pub fn run(name: &str, before_exec: impl FnOnce() -> Result<Vec<String>, String>) -> Result<String, String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: errno {}", last_errno()));
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child runs only `before_exec` (plain ioctls) and the code above before execv
    // or _exit (the tests run single-threaded until here).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: errno {}", last_errno()));
    }
    if pid == 0 {
        drop(read_end);
        let why = child(write_end, before_exec);
        eprintln!("{name} child: {why}");
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
    let report = report.trim().to_string();
    if libc::WIFSIGNALED(status) {
        return Err(format!(
            "the exec'd program was killed by signal {} (redirected to the pre-exec handler address?); it said: {report:?}",
            libc::WTERMSIG(status)
        ));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("the exec'd program failed (status {status:#x}): {report:?}"));
    }
    Ok(report)
}
