//! Checks of kmod_uintr's ioctls: the module reports UINTR exactly as CPUID does, answers every
//! bad input with its errno, and refuses every valid registration cleanly — EOPNOTSUPP on a CPU
//! without UINTR (the QEMU bench's), and on one with it (Bochs's Sapphire Rapids model, by hand)
//! because this version does not set the hardware up (a valid sender then names no receiver:
//! ENOENT).

use crate::{ioctl, open_device};
use std::os::fd::AsRawFd;
use synergy_uapi::uintr;

fn expect_err(what: &str, got: Result<i64, i32>, errno: i32) -> Result<(), String> {
    match got {
        Err(e) if e == errno => Ok(()),
        other => Err(format!("{what}: expected errno {errno}, got {other:?}")),
    }
}

pub fn refusal() -> Result<(), String> {
    let dev = open_device(uintr::DEVICE_PATH, "kmod_uintr")?;
    let fd = dev.as_raw_fd();
    let mut v = uintr::UintrVersion { abi_version: 0xdead, supported: 0xbeef };
    ioctl(fd, uintr::IOC_VERSION, &mut v as *mut _ as usize).map_err(|e| format!("IOC_VERSION: errno {e}"))?;
    if v.abi_version != uintr::ABI_VERSION {
        return Err(format!("ABI {} reported, {} expected", v.abi_version, uintr::ABI_VERSION));
    }
    if (v.supported != 0) != uintr::cpu_has_uintr() {
        return Err(format!("the module says supported = {}, CPUID says {}", v.supported, uintr::cpu_has_uintr()));
    }
    let supported = v.supported != 0;
    expect_err("IOC_VERSION to a bad pointer", ioctl(fd, uintr::IOC_VERSION, 8), libc::EFAULT)?;
    expect_err("unknown ioctl", ioctl(fd, synergy_uapi::ioctl::io(uintr::IOC_MAGIC, 0x7e), 0), libc::ENOTTY)?;

    let handler = refusal as *const () as u64;
    let recv = |handler: u64, stack_adjust: u64, flags: u32, receiver_id: u32| {
        let mut r = uintr::UintrReceiver { handler, stack_adjust, flags, receiver_id };
        ioctl(fd, uintr::IOC_REGISTER_RECEIVER, &mut r as *mut _ as usize)
    };
    expect_err("receiver: unknown flag", recv(handler, 128, 2, 0), libc::EINVAL)?;
    expect_err("receiver: id not zero on input", recv(handler, 128, 0, 5), libc::EINVAL)?;
    expect_err("receiver: handler 0", recv(0, 128, 0, 0), libc::EINVAL)?;
    expect_err("receiver: kernel handler", recv(0xffff_ffff_8100_0000, 128, 0, 0), libc::EINVAL)?;
    expect_err("receiver: odd stack adjust", recv(handler, 129, 0, 0), libc::EINVAL)?;
    expect_err("receiver: huge stack skip", recv(handler, 1 << 20, 0, 0), libc::EINVAL)?;
    expect_err("receiver: load mode, kernel RSP", recv(handler, 0xffff_8880_0000_0000, uintr::RECEIVER_STACK_LOAD, 0), libc::EINVAL)?;
    expect_err("receiver: load mode, misaligned RSP", recv(handler, 0x7fff_0000_0008, uintr::RECEIVER_STACK_LOAD, 0), libc::EINVAL)?;
    expect_err("receiver: argument unmapped", ioctl(fd, uintr::IOC_REGISTER_RECEIVER, 0x10), libc::EFAULT)?;
    // Refused on both kinds of CPU in this version (see the module's docs).
    expect_err("receiver: valid", recv(handler, 128, 0, 0), libc::EOPNOTSUPP)?;
    expect_err("receiver: valid load mode", recv(handler, 0x7fff_0000_0000, uintr::RECEIVER_STACK_LOAD, 0), libc::EOPNOTSUPP)?;

    let send = |receiver_id: u32, vector: u32, uitt_index: u32, flags: u32| {
        let mut s = uintr::UintrSender { receiver_id, vector, uitt_index, flags };
        ioctl(fd, uintr::IOC_REGISTER_SENDER, &mut s as *mut _ as usize)
    };
    expect_err("sender: vector 64", send(1, 64, 0, 0), libc::EINVAL)?;
    expect_err("sender: flags", send(1, 0, 0, 1), libc::EINVAL)?;
    expect_err("sender: index not zero on input", send(1, 0, 3, 0), libc::EINVAL)?;
    expect_err("sender: argument unmapped", ioctl(fd, uintr::IOC_REGISTER_SENDER, 0x10), libc::EFAULT)?;
    expect_err("sender: valid", send(1, 0, 0, 0), if supported { libc::ENOENT } else { libc::EOPNOTSUPP })?;
    expect_err("unregister receiver", ioctl(fd, uintr::IOC_UNREGISTER_RECEIVER, 0), libc::ENOENT)?;
    expect_err("unregister sender", ioctl(fd, uintr::IOC_UNREGISTER_SENDER, 0), libc::ENOENT)?;
    Ok(())
}
