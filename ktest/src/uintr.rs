//! Checks of kmod_uintr: the module reports UINTR exactly as CPUID does and answers every bad
//! input with its errno; on a CPU without UINTR (the QEMU bench's) every valid registration is
//! refused with EOPNOTSUPP; on one with it (Bochs's Sapphire Rapids model, by hand) `deliver`
//! checks real user interrupts end to end.

use crate::{expect_err, ioctl, open_device, pin_to};
use std::arch::naked_asm;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use synergy_uapi::uintr::{self, clui, senduipi, stui};

pub fn refusal() -> Result<(), String> {
    let dev = open_device(uintr::DEVICE_PATH, "kmod_uintr")?;
    let fd = dev.as_raw_fd();
    let mut v = uintr::UintrVersion { abi_version: 0xdead, supported: 0xbeef, cpus_ready: 0xcafe, reserved: 0xf00d };
    ioctl(fd, uintr::IOC_VERSION, &mut v as *mut _ as usize).map_err(|e| format!("IOC_VERSION: errno {e}"))?;
    if v.abi_version != uintr::ABI_VERSION {
        return Err(format!("ABI {} reported, {} expected", v.abi_version, uintr::ABI_VERSION));
    }
    if (v.supported != 0) != uintr::cpu_has_uintr() {
        return Err(format!("the module says supported = {}, CPUID says {}", v.supported, uintr::cpu_has_uintr()));
    }
    let online = crate::online_cpus() as u32;
    if v.cpus_ready != online || v.reserved != 0 {
        return Err(format!(
            "the module says {} CPUs ready (reserved {}), {online} are online",
            v.cpus_ready, v.reserved
        ));
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
    expect_err(
        "receiver: load mode, kernel RSP",
        recv(handler, 0xffff_8880_0000_0000, uintr::RECEIVER_STACK_LOAD, 0),
        libc::EINVAL,
    )?;
    expect_err(
        "receiver: load mode, misaligned RSP",
        recv(handler, 0x7fff_0000_0008, uintr::RECEIVER_STACK_LOAD, 0),
        libc::EINVAL,
    )?;
    expect_err("receiver: argument unmapped", ioctl(fd, uintr::IOC_REGISTER_RECEIVER, 0x10), libc::EFAULT)?;
    if supported {
        // A valid registration succeeds, gets an id, and can be undone exactly once.
        let mut r = uintr::UintrReceiver { handler, stack_adjust: 128, flags: 0, receiver_id: 0 };
        ioctl(fd, uintr::IOC_REGISTER_RECEIVER, &mut r as *mut _ as usize)
            .map_err(|e| format!("receiver: valid: errno {e}"))?;
        if r.receiver_id == 0 {
            return Err("receiver: valid registration returned id 0".into());
        }
        expect_err("receiver: registered twice", recv(handler, 128, 0, 0), libc::EBUSY)?;
        ioctl(fd, uintr::IOC_UNREGISTER_RECEIVER, 0).map_err(|e| format!("unregister receiver: errno {e}"))?;
        let mut r = uintr::UintrReceiver {
            handler,
            stack_adjust: 0x7fff_0000_0000,
            flags: uintr::RECEIVER_STACK_LOAD,
            receiver_id: 0,
        };
        ioctl(fd, uintr::IOC_REGISTER_RECEIVER, &mut r as *mut _ as usize)
            .map_err(|e| format!("receiver: valid load mode: errno {e}"))?;
        ioctl(fd, uintr::IOC_UNREGISTER_RECEIVER, 0).map_err(|e| format!("unregister receiver: errno {e}"))?;
    } else {
        expect_err("receiver: valid", recv(handler, 128, 0, 0), libc::EOPNOTSUPP)?;
        expect_err(
            "receiver: valid load mode",
            recv(handler, 0x7fff_0000_0000, uintr::RECEIVER_STACK_LOAD, 0),
            libc::EOPNOTSUPP,
        )?;
    }

    let send = |receiver_id: u32, vector: u32, uitt_index: u32, flags: u32| {
        let mut s = uintr::UintrSender { receiver_id, vector, uitt_index, flags };
        ioctl(fd, uintr::IOC_REGISTER_SENDER, &mut s as *mut _ as usize)
    };
    expect_err("sender: vector 64", send(1, 64, 0, 0), libc::EINVAL)?;
    expect_err("sender: flags", send(1, 0, 0, 1), libc::EINVAL)?;
    expect_err("sender: index not zero on input", send(1, 0, 3, 0), libc::EINVAL)?;
    expect_err("sender: argument unmapped", ioctl(fd, uintr::IOC_REGISTER_SENDER, 0x10), libc::EFAULT)?;
    // No receiver has id u32::MAX.
    expect_err("sender: valid", send(u32::MAX, 0, 0, 0), if supported { libc::ENOENT } else { libc::EOPNOTSUPP })?;
    expect_err("unregister receiver", ioctl(fd, uintr::IOC_UNREGISTER_RECEIVER, 0), libc::ENOENT)?;
    expect_err("unregister sender", ioctl(fd, uintr::IOC_UNREGISTER_SENDER, 0), libc::ENOENT)?;
    Ok(())
}

// ---- End to end, on a CPU with UINTR ----------------------------------------------------------

static DELIVERED: AtomicU64 = AtomicU64::new(0);
static LAST_VECTOR: AtomicU64 = AtomicU64::new(u64::MAX);

/// Counts deliveries and records the vector, then UIRETs. Entered with [rsp] = vector, then the
/// interrupted rip, RFLAGS and rsp; rax is saved around its use, the flags `lock inc` changes are
/// reloaded by UIRET (F3 0F 01 EC).
#[unsafe(naked)]
unsafe extern "C" fn counting_handler() {
    // SAFETY: see above; the statics are plain atomics.
    naked_asm!(
        "push rax",
        "mov rax, qword ptr [rsp + 8]",
        "mov qword ptr [rip + {last}], rax",
        "pop rax",
        "lea rsp, [rsp + 8]",
        "lock inc qword ptr [rip + {count}]",
        ".byte 0xf3, 0x0f, 0x01, 0xec",
        count = sym DELIVERED,
        last = sym LAST_VECTOR,
    )
}

fn register_receiver(fd: i32) -> Result<u32, String> {
    let mut r = uintr::UintrReceiver {
        handler: counting_handler as *const () as u64,
        stack_adjust: 128,
        flags: 0,
        receiver_id: 0,
    };
    ioctl(fd, uintr::IOC_REGISTER_RECEIVER, &mut r as *mut _ as usize)
        .map_err(|e| format!("register receiver: errno {e}"))?;
    Ok(r.receiver_id)
}

fn register_sender(fd: i32, receiver_id: u32, vector: u32) -> Result<u64, i32> {
    let mut s = uintr::UintrSender { receiver_id, vector, uitt_index: 0, flags: 0 };
    ioctl(fd, uintr::IOC_REGISTER_SENDER, &mut s as *mut _ as usize)?;
    Ok(s.uitt_index as u64)
}

/// Waits up to 2 s for the delivery count to reach `n`.
fn wait_count(n: u64) -> Result<(), String> {
    let t = Instant::now();
    while DELIVERED.load(Ordering::SeqCst) < n {
        if t.elapsed() > Duration::from_secs(2) {
            return Err(format!("{} deliveries, {n} expected", DELIVERED.load(Ordering::SeqCst)));
        }
        std::hint::spin_loop();
    }
    Ok(())
}

/// Waits up to 2 s until thread `tid` of this process is blocked in the kernel (state S in
/// `/proc/self/task/<tid>/stat`).
fn wait_until_blocked(tid: u32) -> Result<(), String> {
    let path = format!("/proc/self/task/{tid}/stat");
    let t = Instant::now();
    loop {
        let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        // The state follows the command name, which is in parentheses and may contain spaces.
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
        if state == Some("S") {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(2) {
            return Err(format!("the receiver thread never blocked (state {state:?})"));
        }
        std::thread::yield_now();
    }
}

/// Integer and floating-point work whose result is known: any register or flag the interrupt
/// path failed to restore changes it.
fn checksum(rounds: u64) -> (u64, f64) {
    let (mut h, mut x) = (0xcbf2_9ce4_8422_2325u64, 1.0f64);
    for i in 0..rounds {
        h = (h ^ i).wrapping_mul(0x100_0000_01b3).rotate_left((i % 63) as u32);
        x = x * 1.000_000_1 + (h & 0xff) as f64 * 1e-9;
        std::hint::black_box((&mut h, &mut x));
    }
    (h, x)
}

pub fn deliver() -> Result<(), String> {
    if !uintr::cpu_has_uintr() {
        return Err("this CPU has no UINTR (CPUID.7.0:EDX[5] = 0): run this case on a UINTR-capable CPU or emulator (see kmod_uintr/README.md)".into());
    }
    let dev = open_device(uintr::DEVICE_PATH, "kmod_uintr")?;
    let fd = dev.as_raw_fd();
    let cpus = crate::online_cpus();
    pin_to(0)?;

    // 1. To itself: held while UIF = 0, delivered (with its vector) by STUI, then one per SENDUIPI.
    // A self-notification is recognised at once; with UIF = 0 it stays pending in UIRR, so exactly
    // one delivery must follow STUI (none before it, and not two).
    let me = register_receiver(fd)?;
    let index = register_sender(fd, me, 5).map_err(|e| format!("register sender: errno {e}"))?;
    senduipi(index);
    // A system call on the way: the kernel's return to user space must not deliver it either.
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() };
    if DELIVERED.load(Ordering::SeqCst) != 0 {
        return Err("a user interrupt was delivered while UIF = 0".into());
    }
    stui();
    wait_count(1)?;
    if DELIVERED.load(Ordering::SeqCst) != 1 {
        return Err(format!("{} deliveries for one interrupt held while UIF = 0", DELIVERED.load(Ordering::SeqCst)));
    }
    if LAST_VECTOR.load(Ordering::SeqCst) != 5 {
        return Err(format!("the handler got vector {}, 5 was sent", LAST_VECTOR.load(Ordering::SeqCst)));
    }
    for i in 0..200 {
        senduipi(index);
        wait_count(2 + i)?;
    }
    clui();
    if DELIVERED.load(Ordering::SeqCst) != 201 {
        return Err(format!("{} deliveries for 201 interrupts sent one at a time", DELIVERED.load(Ordering::SeqCst)));
    }
    ioctl(fd, uintr::IOC_UNREGISTER_SENDER, 0).map_err(|e| format!("unregister sender: errno {e}"))?;
    ioctl(fd, uintr::IOC_UNREGISTER_RECEIVER, 0).map_err(|e| format!("unregister receiver: errno {e}"))?;
    println!("  self: 201 interrupts delivered, none while UIF = 0");

    // 2. Another thread: posted while it is blocked in the kernel (checked: its state is S), and
    // delivered only once it runs again; then interrupted while computing and migrating between
    // CPUs, one interrupt at a time (each sent only after the previous one was handled, so none
    // coalesce and every one must arrive), with its result unchanged; after it unregisters, sends
    // reach nobody although it is still running.
    // Short rounds: the receiver migrates between them (emulators run ~100x slower than hardware).
    let rounds = 50_000;
    let expected = checksum(rounds);
    let id = std::sync::Arc::new(AtomicU32::new(0));
    let tid = std::sync::Arc::new(AtomicU32::new(0));
    let phase = std::sync::Arc::new(AtomicU32::new(0));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let late_sends_done = std::sync::Arc::new(AtomicBool::new(false));
    let mut wake = [0i32; 2];
    // SAFETY: plain pipe(2).
    if unsafe { libc::pipe(wake.as_mut_ptr()) } != 0 {
        return Err("pipe failed".into());
    }
    let before = DELIVERED.load(Ordering::SeqCst);
    let receiver = {
        let (id, tid, phase, stop, late) =
            (id.clone(), tid.clone(), phase.clone(), stop.clone(), late_sends_done.clone());
        let wake_rx = wake[0];
        std::thread::spawn(move || -> Result<(u64, f64, usize), String> {
            pin_to(cpus.min(2) - 1)?;
            id.store(register_receiver(fd)?, Ordering::SeqCst);
            // SAFETY: gettid has no preconditions.
            tid.store(unsafe { libc::gettid() } as u32, Ordering::SeqCst);
            stui();
            phase.store(1, Ordering::SeqCst);
            // Blocked in the kernel until the sender has posted (it checks that we are).
            let mut b = [0u8];
            // SAFETY: reads one byte into a local from our pipe.
            if unsafe { libc::read(wake_rx, b.as_mut_ptr() as *mut _, 1) } != 1 {
                return Err("the wake-up pipe failed".into());
            }
            phase.store(2, Ordering::SeqCst);
            let mut result = (0, 0.0);
            let mut migrations = 0;
            while !stop.load(Ordering::SeqCst) {
                result = checksum(rounds);
                if result != expected {
                    return Err(format!("checksum {result:?} under interrupts, {expected:?} without"));
                }
                if cpus > 1 {
                    pin_to(migrations % 2)?;
                    migrations += 1;
                }
            }
            clui();
            ioctl(fd, uintr::IOC_UNREGISTER_RECEIVER, 0).map_err(|e| format!("unregister receiver: errno {e}"))?;
            phase.store(3, Ordering::SeqCst);
            // Running (in user space, UIF = 0 does not matter: an interrupt still registered
            // would be posted and pending) until the sender's late sends are done.
            while !late.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            Ok((result.0, result.1, migrations))
        })
    };
    while phase.load(Ordering::SeqCst) < 1 {
        std::thread::yield_now();
    }
    let index = register_sender(fd, id.load(Ordering::SeqCst), 7).map_err(|e| format!("register sender: errno {e}"))?;
    wait_until_blocked(tid.load(Ordering::SeqCst))?;
    senduipi(index);
    if DELIVERED.load(Ordering::SeqCst) != before {
        return Err("a user interrupt reached a receiver blocked in the kernel".into());
    }
    // SAFETY: writes one byte from a local to our pipe.
    if unsafe { libc::write(wake[1], b"w".as_ptr() as *const _, 1) } != 1 {
        return Err("the wake-up pipe failed".into());
    }
    wait_count(before + 1).map_err(|e| format!("interrupt posted while the receiver was blocked: {e}"))?;
    let t = Instant::now();
    let mut sent = 1;
    while t.elapsed() < Duration::from_secs(3) && !receiver.is_finished() {
        senduipi(index);
        sent += 1;
        wait_count(before + sent)
            .map_err(|e| format!("interrupt {sent}, sent after the previous one was handled: {e}"))?;
    }
    stop.store(true, Ordering::SeqCst);
    while phase.load(Ordering::SeqCst) < 3 && !receiver.is_finished() {
        std::thread::yield_now();
    }
    let after = DELIVERED.load(Ordering::SeqCst);
    for _ in 0..100 {
        senduipi(index);
    }
    late_sends_done.store(true, Ordering::SeqCst);
    let (_, _, migrations) = receiver.join().map_err(|_| "the receiver thread panicked".to_string())??;
    // SAFETY: closes our pipe.
    unsafe {
        libc::close(wake[0]);
        libc::close(wake[1]);
    }
    let got = after - before;
    if DELIVERED.load(Ordering::SeqCst) != after {
        return Err("interrupts were delivered after the receiver unregistered".into());
    }
    if got != sent {
        return Err(format!("{got} interrupts delivered for {sent} sent one at a time"));
    }
    if cpus > 1 && migrations < 2 {
        return Err(format!("the receiver migrated only {migrations} times"));
    }
    ioctl(fd, uintr::IOC_UNREGISTER_SENDER, 0).map_err(|e| format!("unregister sender: errno {e}"))?;
    println!("  other thread: {got} of {sent} interrupts delivered, one posted while it was blocked, {migrations} migrations, results exact");

    // 3. Another process's receiver cannot be named (EPERM); a registered process killed with
    // SIGKILL and a registered thread that exits without unregistering are cleaned up (the guest
    // script then unloads the module and checks the kernel log).
    let mut fds = [0; 2];
    // SAFETY: plain pipe(2).
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err("pipe failed".into());
    }
    // SAFETY: the child only uses async-signal-safe calls and this process's already open file.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let id = register_receiver(fd).unwrap_or(0);
        stui();
        // SAFETY: writes 4 bytes from a live u32.
        unsafe { libc::write(fds[1], &id as *const u32 as *const libc::c_void, 4) };
        loop {
            std::hint::spin_loop();
        }
    }
    let mut child_id = 0u32;
    // SAFETY: reads 4 bytes into a live u32.
    if unsafe { libc::read(fds[0], &mut child_id as *mut u32 as *mut libc::c_void, 4) } != 4 || child_id == 0 {
        return Err("the child process could not register".into());
    }
    match register_sender(fd, child_id, 1) {
        Err(e) if e == libc::EPERM => {}
        other => return Err(format!("sender to another process's receiver: expected EPERM, got {other:?}")),
    }
    // SAFETY: plain kill/waitpid of our child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    std::thread::spawn(move || register_receiver(fd).map(|_| stui()))
        .join()
        .map_err(|_| "thread panicked".to_string())??;
    drop(dev);
    println!("  another process's receiver refused (EPERM); killed process and exited thread cleaned up");
    Ok(())
}
