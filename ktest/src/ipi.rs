//! Checks of kmod_ipi's ioctls: the round trips and every bad-input case of the ABI, ownership
//! between processes, and clean-up when a registered process is killed.

use crate::{expect_err, ioctl, open_device, pin_to};
use std::os::fd::AsRawFd;
use synergy_uapi::ipi;

static SLOT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn reg(fd: i32, handler: u64, slot: u64, flags: u32) -> (Result<i64, i32>, ipi::IpiRegister) {
    let mut r = ipi::IpiRegister { handler, rip_slot: slot, cpu: u32::MAX, flags };
    (ioctl(fd, ipi::IOC_REGISTER, &mut r as *mut _ as usize), r)
}

fn good_handler() -> u64 {
    pin_to as *const () as u64 // any user code address; never delivered to in these checks
}

fn slot_addr() -> u64 {
    &SLOT as *const _ as u64
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
        // The killed child's file was released: the CPU is free again.
        let mut tries = 0;
        loop {
            match reg(dev.as_raw_fd(), good_handler(), slot_addr(), 0).0 {
                Ok(_) => break,
                Err(libc::EBUSY) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(format!("register after the owner was killed: errno {e}")),
            }
        }
        ioctl(dev.as_raw_fd(), ipi::IOC_UNREGISTER, 0).map_err(|e| format!("unregister: errno {e}"))?;
    }
    Ok(())
}
