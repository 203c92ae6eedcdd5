//! Pidfds (pidfd_open(2)): a process's exit as a readable descriptor, so a test can sleep in
//! poll(2) until the process exits or a watchdog passes, without reaping it, and a pid that is
//! reaped and reused cannot be mistaken for the process it named.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A pidfd for `pid` (take it while `pid` still names the process meant: before it is killed,
/// or, for a child, before it is reaped).
pub fn open(pid: libc::pid_t) -> Result<OwnedFd, String> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(format!("pidfd_open({pid}): {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a descriptor the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the process behind `pidfd` has exited, waiting at most `ms` milliseconds for it
/// (retried after a signal).
pub fn exited_within(pidfd: &OwnedFd, ms: i32) -> Result<bool, String> {
    let mut p = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut p, 1, ms) } {
            r if r >= 0 => return Ok(r > 0),
            _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            _ => return Err(format!("poll on a pidfd: {}", std::io::Error::last_os_error())),
        }
    }
}
