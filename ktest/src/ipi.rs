//! Checks of kmod_ipi's ioctls: the round trips and every bad-input case of the ABI, ownership
//! between processes, and clean-up when a registered process is killed.

use crate::{expect_err, ioctl, open_device, pin_to};
use std::os::fd::{AsRawFd, OwnedFd};
use synergy_uapi::ipi;

static SLOT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(crate) fn reg(fd: i32, handler: u64, slot: u64, flags: u32) -> (Result<i64, i32>, ipi::IpiRegister) {
    let mut r = ipi::IpiRegister { handler, rip_slot: slot, cpu: u32::MAX, flags };
    (ioctl(fd, ipi::IOC_REGISTER, &mut r as *mut _ as usize), r)
}

pub(crate) fn good_handler() -> u64 {
    pin_to as *const () as u64 // any user code address; never delivered to in these checks
}

pub(crate) fn slot_addr() -> u64 {
    &SLOT as *const _ as u64
}

/// `IOC_SEND` to `cpu` (by CPU number).
pub(crate) fn send_to(fd: i32, cpu: u32) -> Result<i64, i32> {
    let s = ipi::IpiSend { target: cpu, flags: 0 };
    ioctl(fd, ipi::IOC_SEND, &s as *const _ as usize)
}

/// Waits until the process behind `pidfd` has exited (issue 38, D4: this was a poll every
/// 10 ms, bounded by tries, which KASAN under TCG could outlast). A pidfd becomes readable when
/// the process's exit is reported, and the kernel reports it only after `do_exit` closed the
/// process's files and ran their deferred `fput`s (`exit_files`, then `exit_task_work`, then
/// `exit_notify`), so by then a file that process alone held has been released. The timeout is
/// a watchdog against a hang, not the synchronization.
fn wait_for_exit(pidfd: &OwnedFd, what: &str) -> Result<(), String> {
    if crate::pidfd::exited_within(pidfd, 300_000).map_err(|e| format!("{what}: {e}"))? {
        Ok(())
    } else {
        Err(format!("{what} did not exit within 300 s of SIGKILL"))
    }
}

/// Registers the calling thread on its CPU, now that the process that held it has exited and
/// so released its file (see `wait_for_exit`), then unregisters again.
fn register_after_release(fd: i32, after: &str) -> Result<(), String> {
    reg(fd, good_handler(), slot_addr(), 0).0.map_err(|e| {
        format!("register after {after}: errno {e} (EBUSY: the exited process's registration outlived its file)")
    })?;
    ioctl(fd, ipi::IOC_UNREGISTER, 0).map(|_| ()).map_err(|e| format!("unregister: errno {e}"))
}

pub fn version() -> Result<(), String> {
    let dev = open_device(ipi::DEVICE_PATH, "kmod_ipi")?;
    let fd = dev.as_raw_fd();
    let mut v = ipi::IpiVersion { abi_version: 0xdead, flags: 0xbeef };
    ioctl(fd, ipi::IOC_VERSION, &mut v as *mut _ as usize).map_err(|e| format!("IOC_VERSION failed: errno {e}"))?;
    if v != (ipi::IpiVersion { abi_version: ipi::ABI_VERSION, flags: 0 }) {
        return Err(format!("IOC_VERSION answered {v:?}, expected ABI {}", ipi::ABI_VERSION));
    }
    expect_err("IOC_VERSION to a bad pointer", ioctl(fd, ipi::IOC_VERSION, 16), libc::EFAULT)?;
    let unknown = synergy_uapi::ioctl::ior::<u64>(ipi::IOC_MAGIC, 0x7f);
    expect_err("unknown ioctl", ioctl(fd, unknown, 0), libc::ENOTTY)
}

/// Every bad argument gets its errno and leaves nothing registered.
pub fn bad_input() -> Result<(), String> {
    let dev = open_device(ipi::DEVICE_PATH, "kmod_ipi")?;
    let fd = dev.as_raw_fd();
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    pin_to(ncpu - 1)?;
    expect_err("register flags", reg(fd, good_handler(), slot_addr(), 1).0, libc::EINVAL)?;
    expect_err("register handler 0", reg(fd, 0, slot_addr(), 0).0, libc::EINVAL)?;
    expect_err("register kernel handler", reg(fd, 0xffff_ffff_8100_0000, slot_addr(), 0).0, libc::EINVAL)?;
    expect_err("register unaligned slot", reg(fd, good_handler(), slot_addr() + 1, 0).0, libc::EINVAL)?;
    expect_err("register slot 0", reg(fd, good_handler(), 0, 0).0, libc::EINVAL)?;
    expect_err("register kernel slot", reg(fd, good_handler(), 0xffff_8880_0000_0000, 0).0, libc::EINVAL)?;
    expect_err("register unmapped slot", reg(fd, good_handler(), 0x1000, 0).0, libc::EFAULT)?;
    expect_err("register argument unmapped", ioctl(fd, ipi::IOC_REGISTER, 0x10), libc::EFAULT)?;
    expect_err("unregister unregistered", ioctl(fd, ipi::IOC_UNREGISTER, 0), libc::ENOENT)?;
    let mut st = ipi::IpiStats::default();
    expect_err("stats unregistered", ioctl(fd, ipi::IOC_STATS, &mut st as *mut _ as usize), libc::ENOENT)?;
    // CPU -> APIC ID.
    let mut q = ipi::IpiCpuApic { cpu: 0, apic_id: u32::MAX };
    ioctl(fd, ipi::IOC_CPU_APIC_ID, &mut q as *mut _ as usize).map_err(|e| format!("apic id of CPU 0: errno {e}"))?;
    if q.apic_id == u32::MAX {
        return Err("apic id of CPU 0 not written".into());
    }
    let mut ids = Vec::new();
    for cpu in 0..ncpu as u32 {
        let mut q = ipi::IpiCpuApic { cpu, apic_id: u32::MAX };
        ioctl(fd, ipi::IOC_CPU_APIC_ID, &mut q as *mut _ as usize)
            .map_err(|e| format!("apic id of CPU {cpu}: errno {e}"))?;
        if ids.contains(&q.apic_id) {
            return Err(format!("APIC ID {} reported for two CPUs", q.apic_id));
        }
        ids.push(q.apic_id);
    }
    for bad in [ncpu as u32, 4096, u32::MAX] {
        let mut q = ipi::IpiCpuApic { cpu: bad, apic_id: 0 };
        expect_err("apic id of a bad CPU", ioctl(fd, ipi::IOC_CPU_APIC_ID, &mut q as *mut _ as usize), libc::EINVAL)?;
    }
    // Sends.
    let send = |target: u32, flags: u32| {
        let s = ipi::IpiSend { target, flags };
        ioctl(fd, ipi::IOC_SEND, &s as *const _ as usize)
    };
    expect_err("send to a bad CPU", send(ncpu as u32 + 7, 0), libc::EINVAL)?;
    expect_err("send with bad flags", send(0, 0x80), libc::EINVAL)?;
    expect_err("send to an unknown APIC ID", send(0xFFFF_FF00, ipi::SEND_BY_APIC_ID), libc::EINVAL)?;
    expect_err("send to a CPU without receiver", send(0, 0), libc::ENOENT)?;
    // A real registration; double registration and a taken CPU are refused.
    let (r, answer) = reg(fd, good_handler(), slot_addr(), 0);
    r.map_err(|e| format!("register: errno {e}"))?;
    if answer.cpu as usize != ncpu - 1 {
        return Err(format!("registered on CPU {}, expected {}", answer.cpu, ncpu - 1));
    }
    expect_err("register twice", reg(fd, good_handler(), slot_addr(), 0).0, libc::EBUSY)?;
    let other = open_device(ipi::DEVICE_PATH, "kmod_ipi")?;
    expect_err("register on a taken CPU", reg(other.as_raw_fd(), good_handler(), slot_addr(), 0).0, libc::EBUSY)?;
    expect_err("unregister through another file", ioctl(other.as_raw_fd(), ipi::IOC_UNREGISTER, 0), libc::ENOENT)?;
    ioctl(fd, ipi::IOC_STATS, &mut st as *mut _ as usize).map_err(|e| format!("stats: errno {e}"))?;
    ioctl(fd, ipi::IOC_UNREGISTER, 0).map_err(|e| format!("unregister: errno {e}"))?;
    expect_err("unregister again", ioctl(fd, ipi::IOC_UNREGISTER, 0), libc::ENOENT)?;
    // Registration by APIC ID target after re-registering, then close without unregistering:
    // the file's release must free the CPU.
    reg(fd, good_handler(), slot_addr(), 0).0.map_err(|e| format!("re-register: errno {e}"))?;
    drop(dev);
    let fresh = open_device(ipi::DEVICE_PATH, "kmod_ipi")?;
    reg(fresh.as_raw_fd(), good_handler(), slot_addr(), 0).0.map_err(|e| format!("register after close: errno {e}"))?;
    Ok(())
}

/// A child process registers on a CPU; the parent may not send to it (EPERM). The child is then
/// killed with SIGKILL while registered; its CPU must become free for the parent.
pub fn foreign_and_killed() -> Result<(), String> {
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let cpu = ncpu - 1;
    let mut ready = [0i32; 2];
    // SAFETY: plain pipe/fork; the child only registers and sleeps.
    unsafe {
        if libc::pipe(ready.as_mut_ptr()) != 0 {
            return Err("pipe failed".into());
        }
        let pid = libc::fork();
        if pid == 0 {
            let ok = (|| -> Result<(), String> {
                let dev = open_device(ipi::DEVICE_PATH, "kmod_ipi")?;
                pin_to(cpu)?;
                reg(dev.as_raw_fd(), good_handler(), slot_addr(), 0).0.map_err(|e| format!("child register: {e}"))?;
                std::mem::forget(dev);
                Ok(())
            })();
            let b = [u8::from(ok.is_ok())];
            libc::write(ready[1], b.as_ptr() as *const _, 1);
            loop {
                libc::pause();
            }
        }
        let mut b = [0u8];
        libc::read(ready[0], b.as_mut_ptr() as *mut _, 1);
        if b[0] != 1 {
            libc::kill(pid, libc::SIGKILL);
            return Err("child could not register".into());
        }
        let dev = open_device(ipi::DEVICE_PATH, "kmod_ipi")?;
        let s = ipi::IpiSend { target: cpu as u32, flags: 0 };
        let r = ioctl(dev.as_raw_fd(), ipi::IOC_SEND, &s as *const _ as usize);
        pin_to(cpu)?;
        let taken = reg(dev.as_raw_fd(), good_handler(), slot_addr(), 0).0;
        libc::kill(pid, libc::SIGKILL);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        expect_err("send to another process's receiver", r, libc::EPERM)?;
        expect_err("register on a CPU another process holds", taken, libc::EBUSY)?;
        // The killed child was reaped, so its file was released: the CPU is free again.
        register_after_release(dev.as_raw_fd(), "the owner was killed")?;
    }
    Ok(())
}

/// Runs `f` in a new process that is pid 1 of a pid namespace of its own, and returns that
/// process's pid as the caller sees it and the read end of a pipe on which `f`'s 4-byte result
/// arrives. The process lives until killed (`f` returns its result and then pauses).
///
/// # Safety
/// Forks: `f` must only make async-signal-safe calls and plain system calls.
unsafe fn spawn_pid_one(f: impl FnOnce() -> i32) -> Result<(libc::pid_t, i32), String> {
    // Two pipes: the intermediate reports the child's pid on one, the child its result on the other.
    let (mut pid_pipe, mut result_pipe) = ([0i32; 2], [0i32; 2]);
    // SAFETY: plain pipe/fork/unshare; the children only run `f` and report through the pipes.
    unsafe {
        if libc::pipe(pid_pipe.as_mut_ptr()) != 0 || libc::pipe(result_pipe.as_mut_ptr()) != 0 {
            return Err("pipe failed".into());
        }
        let mid = libc::fork();
        if mid < 0 {
            return Err("fork failed".into());
        }
        if mid == 0 {
            // The intermediate process: its next child is pid 1 of a new namespace.
            if libc::unshare(libc::CLONE_NEWPID) != 0 {
                let e = -(*libc::__errno_location());
                libc::write(pid_pipe[1], &e as *const i32 as *const _, 4);
                libc::_exit(1);
            }
            let child = libc::fork();
            if child == 0 {
                let r = if libc::getpid() == 1 { f() } else { -1000 };
                libc::write(result_pipe[1], &r as *const i32 as *const _, 4);
                loop {
                    libc::pause();
                }
            }
            // The child's pid in the caller's namespace (which is ours), then leave.
            libc::write(pid_pipe[1], &child as *const i32 as *const _, 4);
            libc::_exit(0);
        }
        let mut status = 0;
        libc::waitpid(mid, &mut status, 0);
        let mut child = 0i32;
        if libc::read(pid_pipe[0], &mut child as *mut i32 as *mut _, 4) != 4 || child <= 0 {
            return Err(format!("no child in a new pid namespace (unshare: errno {})", -child));
        }
        libc::close(pid_pipe[0]);
        libc::close(pid_pipe[1]);
        libc::close(result_pipe[1]);
        Ok((child, result_pipe[0]))
    }
}

/// Reads a 4-byte result from `fd`.
fn read_result(fd: i32) -> Result<i32, String> {
    let mut r = 0i32;
    // SAFETY: reads 4 bytes into a local.
    if unsafe { libc::read(fd, &mut r as *mut i32 as *mut _, 4) } != 4 {
        return Err("a child died without reporting".into());
    }
    Ok(r)
}

/// Two processes, each pid 1 of its own pid namespace, so their thread-group ids are equal
/// numbers: one registers a receiver, the other must get EPERM when it sends to it. (The module
/// once compared the numbers, each read in the caller's namespace, and let the send through.)
/// The receiver sending to itself is the control.
pub fn pid_namespaces() -> Result<(), String> {
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let cpu = ncpu - 1;
    let receiver = || -> i32 {
        let Ok(dev) = open_device(ipi::DEVICE_PATH, "kmod_ipi") else { return -1001 };
        let fd = dev.as_raw_fd();
        // A thread registers and then sleeps in pause(), so that the control send below finds
        // it not running (a miss, no delivery: its handler address is not real code).
        let (tx, rx) = std::sync::mpsc::channel::<Result<(), i32>>();
        std::thread::spawn(move || {
            let r = pin_to(cpu)
                .map_err(|_| -1002)
                .and_then(|()| reg(fd, good_handler(), slot_addr(), 0).0.map(|_| ()).map_err(|e| -e));
            let _ = tx.send(r);
            loop {
                // SAFETY: blocks until a signal; the process is killed at the end.
                unsafe { libc::pause() };
            }
        });
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return e,
            Err(_) => return -1003,
        }
        // Wait until the registered thread sleeps (state S in /proc). Procfs is the initial pid
        // namespace's, so thread ids there are not ours: the thread is the task that is not the
        // main one (/proc/self names the main one in procfs's numbering).
        let sleeping = || -> Option<bool> {
            let main = std::fs::read_link("/proc/self").ok()?.to_string_lossy().to_string();
            let other = std::fs::read_dir("/proc/self/task")
                .ok()?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .find(|n| *n != main)?;
            let stat = std::fs::read_to_string(format!("/proc/self/task/{other}/stat")).ok()?;
            Some(stat.rsplit(')').next()?.trim_start().starts_with('S'))
        };
        let mut tries = 0;
        while sleeping() != Some(true) {
            if tries == 10_000 {
                return -1004;
            }
            tries += 1;
            std::thread::yield_now();
        }
        let s = ipi::IpiSend { target: cpu as u32, flags: 0 };
        let own = ioctl(fd, ipi::IOC_SEND, &s as *const _ as usize);
        std::mem::forget(dev);
        match own {
            Ok(_) => 0,
            Err(e) => 2000 + e,
        }
    };
    let sender = || -> i32 {
        let Ok(dev) = open_device(ipi::DEVICE_PATH, "kmod_ipi") else { return -1001 };
        let s = ipi::IpiSend { target: cpu as u32, flags: 0 };
        match ioctl(dev.as_raw_fd(), ipi::IOC_SEND, &s as *const _ as usize) {
            Ok(_) => 0,
            Err(e) => e,
        }
    };
    // SAFETY: the closures make plain system calls only.
    let (a, a_fd) = unsafe { spawn_pid_one(receiver) }?;
    let a_result = read_result(a_fd);
    let b_result = match a_result {
        Ok(0) => {
            // SAFETY: as above.
            let (b, b_fd) = unsafe { spawn_pid_one(sender) }?;
            let r = read_result(b_fd);
            // SAFETY: kills and reaps our own children.
            unsafe {
                libc::kill(b, libc::SIGKILL);
            }
            r
        }
        _ => Err("the receiver did not register".into()),
    };
    // It is not our child (its intermediate exited, so it was reparented to init): its exit is
    // waited for through a pidfd taken while it still lives.
    let receiver = crate::pidfd::open(a)?;
    // SAFETY: kills the receiver.
    unsafe { libc::kill(a, libc::SIGKILL) };
    wait_for_exit(&receiver, "the namespaced receiver")?;
    // Its file was released as it died: the CPU is free again.
    let dev = open_device(ipi::DEVICE_PATH, "kmod_ipi")?;
    pin_to(cpu)?;
    register_after_release(dev.as_raw_fd(), "the namespaced receiver was killed")?;
    match a_result? {
        0 => {}
        e => return Err(format!("the receiver (pid 1 of its namespace) could not register and send to itself: {e}")),
    }
    match b_result? {
        e if e == libc::EPERM => Ok(()),
        0 => {
            Err("a process in another pid namespace with the same pid (1) sent to the receiver: EPERM expected".into())
        }
        e => Err(format!("send from another pid namespace: expected EPERM, got {e}")),
    }
}

/// Many threads of one process share one file, each registered on its own CPU, and all
/// unregister at once, 10,000 rounds: each unregistration looks at the other threads' receivers
/// while their owners free them (kmod_ipi once read them outside any RCU section: a
/// use-after-free that the KASAN kernel reports). Every unregistration must succeed exactly for
/// the caller's own receiver.
pub fn unregister_storm() -> Result<(), String> {
    use std::sync::{Arc, Barrier};
    const ROUNDS: usize = 10_000;
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let dev = Arc::new(open_device(ipi::DEVICE_PATH, "kmod_ipi")?);
    let barrier = Arc::new(Barrier::new(ncpu));
    let threads: Vec<_> = (0..ncpu)
        .map(|cpu| {
            let (dev, barrier) = (dev.clone(), barrier.clone());
            std::thread::spawn(move || -> Result<(), String> {
                pin_to(cpu)?;
                let slot = Box::leak(Box::new(0u64)) as *mut u64 as u64;
                for round in 0..ROUNDS {
                    barrier.wait();
                    reg(dev.as_raw_fd(), good_handler(), slot, 0)
                        .0
                        .map_err(|e| format!("round {round}: register on CPU {cpu}: errno {e}"))?;
                    barrier.wait();
                    ioctl(dev.as_raw_fd(), ipi::IOC_UNREGISTER, 0)
                        .map_err(|e| format!("round {round}: unregister on CPU {cpu}: errno {e}"))?;
                    expect_err("a second unregister", ioctl(dev.as_raw_fd(), ipi::IOC_UNREGISTER, 0), libc::ENOENT)?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "a storm thread panicked".to_string())??;
    }
    Ok(())
}
