//! `cpu-hotplug`: CPUs taken offline and brought back online while both modules are loaded and a
//! kmod_ipi receiver is registered on the CPU that goes away (issue 16, item 5).
//!
//! kmod_uintr prepares every CPU that comes online (CR4.UINTR where the CPU has UINTR) from a
//! CPU-hotplug callback; `UintrVersion::cpus_ready` counts the CPUs it has prepared, so it must
//! follow the online count down and back up. Before the callback existed the module prepared
//! only the CPUs online at load: the count (had it existed) would have stayed, and a CPU brought
//! online later ran registered threads without CR4.UINTR. kmod_ipi must refuse sends to the
//! offline CPU (ENXIO) and accept them again once it is back, with no splat either way.

use crate::ipi::send_to;
use crate::{ioctl, online_cpus as online_count, open_device, pin_to};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use synergy_uapi::{ipi, uintr};

pub(crate) fn cpus_ready(fd: i32) -> Result<u32, String> {
    let mut v = uintr::UintrVersion::default();
    ioctl(fd, uintr::IOC_VERSION, &mut v as *mut _ as usize).map_err(|e| format!("IOC_VERSION: errno {e}"))?;
    Ok(v.cpus_ready)
}

fn set_online(cpu: usize, on: bool) -> Result<(), String> {
    let path = format!("/sys/devices/system/cpu/cpu{cpu}/online");
    std::fs::write(&path, if on { "1" } else { "0" })
        .map_err(|e| format!("writing {} to {path}: {e} (needs CONFIG_HOTPLUG_CPU and root)", u8::from(on)))
}

pub fn cpu_hotplug() -> Result<(), String> {
    let n = online_count();
    if n < 2 {
        return Err(format!("needs at least 2 online CPUs, found {n}"));
    }
    let cpu = n - 1;
    let udev = open_device(uintr::DEVICE_PATH, "kmod_uintr")?;
    let ufd = udev.as_raw_fd();
    let idev = open_device(ipi::DEVICE_PATH, "kmod_ipi")?;
    let ifd = idev.as_raw_fd();
    let ready = cpus_ready(ufd)?;
    if ready as usize != n {
        return Err(format!("kmod_uintr reports {ready} CPUs ready with {n} online"));
    }
    pin_to(0)?;
    // A receiver on the CPU that goes away: it registers there, then blocks until told to go.
    let (registered_tx, registered_rx) = mpsc::channel::<Result<u32, String>>();
    let (leave_tx, leave_rx) = mpsc::channel::<()>();
    let receiver = std::thread::spawn(move || -> Result<(), String> {
        // With a real handler: the first send may reach the thread before it blocks (between
        // registering and `recv`), and kmod_ipi then redirects it. The placeholder address this
        // test registered before (a Rust function, entered with the interrupted stack) made that
        // delivery a general-protection fault in the guest (2026-11-26), and, where the stack
        // happened to be aligned, a jump to garbage: the hang after the rounds seen earlier.
        let r = pin_to(cpu).and_then(|()| {
            crate::ipi_deliver::register(ifd, &crate::ipi_deliver::TARGETS[0]).map_err(|e| format!("on CPU {cpu}: {e}"))
        });
        let ok = r.is_ok();
        registered_tx.send(r).map_err(|_| "main thread gone".to_string())?;
        if ok {
            leave_rx.recv().map_err(|_| "main thread gone".to_string())?;
            ioctl(ifd, ipi::IOC_UNREGISTER, 0).map_err(|e| format!("unregister: errno {e}"))?;
        }
        Ok(())
    });
    let result = (|| {
        let got = registered_rx.recv().map_err(|_| "receiver died".to_string())??;
        if got as usize != cpu {
            return Err(format!("receiver registered on CPU {got}, pinned to {cpu}"));
        }
        send_to(ifd, cpu as u32).map_err(|e| format!("send before offlining: errno {e}"))?;
        for round in 0..3 {
            set_online(cpu, false)?;
            let ready = cpus_ready(ufd)?;
            if ready as usize != n - 1 {
                return Err(format!(
                    "round {round}: CPU {cpu} offline: kmod_uintr reports {ready} CPUs ready, {} online",
                    n - 1
                ));
            }
            match send_to(ifd, cpu as u32) {
                Err(e) if e == libc::ENXIO => {}
                other => {
                    return Err(format!("round {round}: send to offline CPU {cpu}: expected ENXIO, got {other:?}"))
                }
            }
            set_online(cpu, true)?;
            let ready = cpus_ready(ufd)?;
            if ready as usize != n {
                return Err(format!(
                    "round {round}: CPU {cpu} back online: kmod_uintr reports {ready} CPUs ready, {n} online"
                ));
            }
            send_to(ifd, cpu as u32).map_err(|e| format!("round {round}: send after onlining: errno {e}"))?;
        }
        println!("cpu-hotplug: CPU {cpu} offline and online 3 times; kmod_uintr followed ({n} -> {} -> {n} ready), kmod_ipi refused sends while it was offline", n - 1);
        Ok(())
    })();
    // Each step after the rounds says so, so that a hang (one was seen once, after the rounds)
    // shows where it is.
    println!("cpu-hotplug: the receiver unregisters");
    let _ = leave_tx.send(());
    let joined = receiver.join().map_err(|_| "receiver panicked".to_string()).and_then(|r| r);
    println!("cpu-hotplug: receiver joined ({joined:?})");
    // Leave the CPU online whatever happened.
    if online_count() < n {
        let _ = set_online(cpu, true);
    }
    result?;
    joined
}
