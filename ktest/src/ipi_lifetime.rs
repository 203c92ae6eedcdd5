//! Lifetime checks of kmod_ipi under deliveries (issue 16's concurrency tests):
//!
//! * `ipi-close-during-delivery`: the file is closed while IPIs it sent are in flight and
//!   deliveries are queued on its receivers, which keep running in user space. The CPUs must be
//!   free the moment `close` returns (the next round registers on them at once), no receiver may
//!   get more deliveries than sends were accepted for it, and nothing may splat.
//! * `ipi-rmmod-race <kmod_ipi.ko> [rounds]`: a child process delivering to its own receivers is
//!   killed with SIGKILL at a random moment, and the module is removed as soon as the kernel lets
//!   it (retrying while references are held: the file until the dying process releases it, an IPI
//!   in flight, a queued delivery), then loaded again. A reference dropped too early frees the
//!   module's text under code still running in it, which the guest kernel reports (an oops on
//!   unmapped module memory, or KASAN).

use crate::ipi::send_to as send;
use crate::ipi_deliver::{register, TARGETS};
use crate::{ioctl, online_cpus, open_device, pin_to};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use synergy_uapi::ipi;

/// `ipi-close-during-delivery`: 300 rounds of: open, register 3 receivers (CPUs 1-3) that spin in
/// user space, send 16 IPIs to each from CPU 0, close the file at once.
pub fn close_during_delivery() -> Result<(), String> {
    const ROUNDS: usize = 300;
    const SENDS: usize = 16;
    if online_cpus() < 4 {
        return Err("needs 4 CPUs".into());
    }
    pin_to(0)?;
    let (mut accepted_total, mut landed_total) = (0u64, 0u64);
    for round in 0..ROUNDS {
        let dev = open_device(ipi::DEVICE_PATH, "kmod_ipi")?;
        let fd = dev.as_raw_fd();
        let registered = Barrier::new(4);
        let closed = AtomicBool::new(false);
        let cpus: [AtomicU32; 3] = [const { AtomicU32::new(u32::MAX) }; 3];
        let mut dev = Some(dev);
        let (accepted, landed) = std::thread::scope(|s| -> Result<([u64; 3], [u64; 3]), String> {
            let receivers: Vec<_> = (0..3)
                .map(|i| {
                    let (registered, closed, cpus) = (&registered, &closed, &cpus);
                    s.spawn(move || -> Result<u64, String> {
                        let t = &TARGETS[i];
                        let before = t.delivered.load(Ordering::Acquire);
                        let reg = pin_to(i + 1).and_then(|()| register(fd, t));
                        if let Ok(c) = reg {
                            cpus[i].store(c, Ordering::Release);
                        }
                        registered.wait();
                        // In user space, where deliveries land, until the file is closed.
                        while !closed.load(Ordering::Acquire) {
                            std::hint::spin_loop();
                        }
                        reg.map_err(|e| format!("round {round}, receiver {i}: {e}"))?;
                        Ok(t.delivered.load(Ordering::Acquire) - before)
                    })
                })
                .collect();
            registered.wait();
            let mut accepted = [0u64; 3];
            let targets: Vec<u32> = cpus.iter().map(|c| c.load(Ordering::Acquire)).collect();
            if !targets.contains(&u32::MAX) {
                for _ in 0..SENDS {
                    for (i, &cpu) in targets.iter().enumerate() {
                        // EPERM/ENOENT would be a bug, but every accepted send is what counts.
                        if send(fd, cpu).is_ok() {
                            accepted[i] += 1;
                        }
                    }
                }
            }
            // The close, with IPIs in flight and deliveries queued on running receivers.
            drop(dev.take());
            closed.store(true, Ordering::Release);
            let mut landed = [0u64; 3];
            for (i, r) in receivers.into_iter().enumerate() {
                landed[i] = r.join().map_err(|_| format!("receiver {i} panicked"))??;
            }
            Ok((accepted, landed))
        })?;
        for i in 0..3 {
            if landed[i] > accepted[i] {
                return Err(format!(
                    "round {round}: receiver {i} ran its handler {} times for {} accepted sends",
                    landed[i], accepted[i]
                ));
            }
        }
        accepted_total += accepted.iter().sum::<u64>();
        landed_total += landed.iter().sum::<u64>();
    }
    if landed_total == 0 {
        return Err(format!("none of {accepted_total} accepted sends was delivered: nothing was in flight at a close"));
    }
    println!(
        "ipi-close-during-delivery: {ROUNDS} closes with deliveries under way; {accepted_total} sends accepted, {landed_total} delivered before the receivers stopped"
    );
    Ok(())
}

/// `delete_module(name, O_NONBLOCK)`: Ok, or the errno.
fn delete_module(name: &str) -> Result<(), i32> {
    let c = CString::new(name).expect("no NUL in a module name");
    // SAFETY: a NUL-terminated name; the flags ask for no waiting.
    let r = unsafe { libc::syscall(libc::SYS_delete_module, c.as_ptr(), libc::O_NONBLOCK) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// `finit_module` of the file at `path`.
fn load_module(path: &str) -> Result<(), String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
    // SAFETY: an open module file, empty parameters, no flags.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), c"".as_ptr(), 0) };
    if r != 0 {
        return Err(format!("finit_module({path}): {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The child of `rmmod_race`: 3 receivers spinning on CPUs 1-3, the main thread on CPU 0
/// sending to them without end. Reports 1 on `report` after the first delivery (0 if it cannot
/// start), then goes on until killed.
fn deliver_until_killed(report: i32) -> ! {
    let say = |b: u8| {
        // SAFETY: writes one byte from a local.
        unsafe { libc::write(report, &b as *const u8 as *const _, 1) };
    };
    let started = (|| -> Result<(i32, Vec<u32>), String> {
        let dev = open_device(ipi::DEVICE_PATH, "kmod_ipi")?;
        let fd = dev.as_raw_fd();
        std::mem::forget(dev); // closed by the kill
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, t) in TARGETS.iter().enumerate() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tx.send(pin_to(i + 1).and_then(|()| register(fd, t)));
                loop {
                    std::hint::spin_loop();
                }
            });
        }
        let cpus =
            (0..TARGETS.len()).map(|_| rx.recv().map_err(|e| e.to_string())?).collect::<Result<Vec<u32>, String>>()?;
        pin_to(0)?;
        Ok((fd, cpus))
    })();
    let Ok((fd, cpus)) = started else {
        say(0);
        // SAFETY: leaves the child without unwinding into the parent's copy of the stack.
        unsafe { libc::_exit(1) };
    };
    let mut reported = false;
    loop {
        for &cpu in &cpus {
            let _ = send(fd, cpu);
        }
        if !reported && TARGETS.iter().any(|t| t.delivered.load(Ordering::Acquire) > 0) {
            say(1);
            reported = true;
        }
    }
}

/// `ipi-rmmod-race <kmod_ipi.ko> [rounds]` (default 50 rounds); see the module docs.
pub fn rmmod_race(args: &[String]) -> Result<(), String> {
    let ko = args.first().ok_or("usage: synergy-ktest ipi-rmmod-race <path of kmod_ipi.ko> [rounds]")?;
    let rounds: u32 = match args.get(1) {
        None => 50,
        Some(r) => r.parse().map_err(|_| format!("rounds: expected a number, got {r:?}"))?,
    };
    if online_cpus() < 4 {
        return Err("needs 4 CPUs".into());
    }
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let (mut busy_tries, mut held_rounds) = (0u64, 0u32);
    for round in 0..rounds {
        let mut pipe = [0i32; 2];
        // SAFETY: plain pipe/fork; this process is single-threaded here, so the child may spawn
        // threads of its own.
        let child = unsafe {
            if libc::pipe(pipe.as_mut_ptr()) != 0 {
                return Err("pipe failed".into());
            }
            let pid = libc::fork();
            if pid < 0 {
                return Err("fork failed".into());
            }
            if pid == 0 {
                libc::close(pipe[0]);
                deliver_until_killed(pipe[1]);
            }
            libc::close(pipe[1]);
            pid
        };
        let mut b = [0u8];
        // SAFETY: reads one byte into a local; the pipe is ours.
        let n = unsafe { libc::read(pipe[0], b.as_mut_ptr() as *mut _, 1) };
        // SAFETY: closes our end.
        unsafe { libc::close(pipe[0]) };
        // Deliveries are under way: kill at a random moment within the next ~200 µs of sends.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let until = Instant::now() + Duration::from_micros(rng % 200);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        // SAFETY: our own child.
        unsafe { libc::kill(child, libc::SIGKILL) };
        if n != 1 || b[0] != 1 {
            // SAFETY: reaps our child.
            unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
            return Err(format!("round {round}: the child could not start delivering"));
        }
        // Remove the module as soon as the last reference is gone, racing the child's exit.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut tries_this_round = 0;
        loop {
            match delete_module("kmod_ipi") {
                Ok(()) => break,
                Err(e) if e == libc::EAGAIN || e == libc::EBUSY => {
                    tries_this_round += 1;
                    if Instant::now() > deadline {
                        // SAFETY: reaps our child.
                        unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
                        return Err(format!(
                            "round {round}: kmod_ipi still in use 10 s after its only user was killed (errno {e}): a reference leaked"
                        ));
                    }
                    std::thread::yield_now();
                }
                Err(e) => return Err(format!("round {round}: delete_module: errno {e}")),
            }
        }
        busy_tries += tries_this_round;
        held_rounds += u32::from(tries_this_round > 0);
        let mut status = 0;
        // SAFETY: reaps our child.
        unsafe { libc::waitpid(child, &mut status, 0) };
        if !libc::WIFSIGNALED(status) || libc::WTERMSIG(status) != libc::SIGKILL {
            return Err(format!("round {round}: the child ended with status {status:#x}, not by the SIGKILL"));
        }
        load_module(ko).map_err(|e| format!("round {round}: {e}"))?;
        let dev = open_device(ipi::DEVICE_PATH, "kmod_ipi")?;
        let mut v = ipi::IpiVersion::default();
        ioctl(dev.as_raw_fd(), ipi::IOC_VERSION, &mut v as *mut _ as usize)
            .map_err(|e| format!("round {round}: the reloaded module: IOC_VERSION errno {e}"))?;
    }
    println!(
        "ipi-rmmod-race: {rounds} kills during delivery, each followed by removal and reload; the module was still held when first tried in {held_rounds} rounds ({busy_tries} refused tries in all)"
    );
    Ok(())
}
