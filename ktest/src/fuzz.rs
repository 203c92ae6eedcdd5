//! `fuzz <ipi|uintr> <count> [seed]`: random ioctls against one module (issue 16).
//!
//! The parent forks children; each child opens the device and issues random ioctls: the
//! module's own commands, the same numbers with other sizes and directions, other numbers of its
//! magic and entirely random ones; arguments that are NULL, kernel, non-canonical, unmapped,
//! read-only and page-crossing pointers, small integers, and valid buffers holding random or
//! plausible field values. After a successful registration the child at random unmaps the
//! registered slot's page, makes it read-only, or registers again. A delivery may redirect a
//! kmod_ipi child to a random handler address and kill it: that is expected and counted. The
//! parent kills a quarter of the children with SIGKILL at a random moment. At random moments a
//! child also forks (the grandchild, another process, sends to and registers senders for the
//! child's receivers through the inherited descriptor: EPERM), spawns a thread that registers and
//! exits still registered, fills its UITT (ENOSPC), makes the fake UINTR backend's next register
//! writes fail (EIO), and execs itself (`fuzz-exec`: the new program, holding the old one's
//! descriptor without O_CLOEXEC, must get ESTALE). Children and exec'd programs count their
//! ioctls in shared memory (a memfd, so it survives exec), so the total is exact. What must hold
//! is checked by the harness: no kernel splat (the KASAN kernel runs this), the module unloads
//! afterwards, and `fuzz-report` finds every ioctl's success and each of its documented errors.

use std::sync::atomic::{AtomicU64, Ordering};
use synergy_uapi::{ioctl as ioc, ipi, uintr};

/// xorshift64*: deterministic from the seed printed at the start.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

const PAGE: usize = 4096;

struct Module {
    path: &'static str,
    magic: u8,
    cmds: &'static [u32],
}

const IPI: Module = Module {
    path: ipi::DEVICE_PATH,
    magic: ipi::IOC_MAGIC,
    cmds: &[
        ipi::IOC_VERSION,
        ipi::IOC_REGISTER,
        ipi::IOC_UNREGISTER,
        ipi::IOC_CPU_APIC_ID,
        ipi::IOC_SEND,
        ipi::IOC_STATS,
    ],
};

const UINTR: Module = Module {
    path: uintr::DEVICE_PATH,
    magic: uintr::IOC_MAGIC,
    cmds: &[
        uintr::IOC_VERSION,
        uintr::IOC_REGISTER_RECEIVER,
        uintr::IOC_UNREGISTER_RECEIVER,
        uintr::IOC_REGISTER_SENDER,
        uintr::IOC_UNREGISTER_SENDER,
    ],
};

/// Memory the child aims its pointers at: `rw` (two pages, read-write), followed by a
/// PROT_NONE guard page (so a pointer near the end of `rw` crosses into it), and `ro`, one
/// read-only page. `slot_page` is a separate read-write page for registered rip slots.
struct Arena {
    rw: *mut u8,
    ro: *mut u8,
    slot_page: *mut u8,
}

fn map(len: usize, prot: i32) -> Result<*mut u8, String> {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    Ok(p.cast())
}

impl Arena {
    fn new() -> Result<Arena, String> {
        let rw = map(3 * PAGE, libc::PROT_READ | libc::PROT_WRITE)?;
        // SAFETY: the third page of the mapping just made.
        if unsafe { libc::mprotect(rw.add(2 * PAGE).cast(), PAGE, libc::PROT_NONE) } != 0 {
            return Err(format!("mprotect: {}", std::io::Error::last_os_error()));
        }
        let ro = map(PAGE, libc::PROT_READ)?;
        let slot_page = map(PAGE, libc::PROT_READ | libc::PROT_WRITE)?;
        Ok(Arena { rw, ro, slot_page })
    }

    /// A pointer of a random class; for a valid buffer, `len` random or plausible bytes.
    fn pointer(&self, rng: &mut Rng, len: usize, plausible: &[u64]) -> usize {
        match rng.below(12) {
            0 => 0,
            1 => 0xffff_8880_0000_0000 + (rng.below(1 << 30) as usize & !7),
            2 => 0xffff_ffff_8100_0000 + rng.below(1 << 20) as usize,
            3 => 0x0000_8000_0000_0000 + rng.below(1 << 40) as usize, // non-canonical
            4 => 0x1000 + rng.below(0x1000) as usize,                 // unmapped, low
            5 => self.ro as usize + rng.below(PAGE as u64) as usize,
            // Crossing from the read-write page into the guard page.
            6 => self.rw as usize + 2 * PAGE - 1 - rng.below(len.max(2) as u64 - 1) as usize,
            7 => rng.below(4096) as usize, // a small integer
            _ => {
                let off = rng.below((PAGE - 64) as u64) as usize & !7;
                let p = self.rw as usize + off;
                for i in 0..len.div_ceil(8) {
                    let word = if !plausible.is_empty() && rng.chance(2) {
                        plausible[rng.below(plausible.len() as u64) as usize]
                    } else {
                        match rng.below(4) {
                            0 => 0,
                            1 => rng.below(256),
                            _ => rng.next(),
                        }
                    };
                    // SAFETY: within the first two (read-write) pages: off + len <= PAGE + 64.
                    unsafe { ((p + 8 * i) as *mut u64).write_unaligned(word) };
                }
                p
            }
        }
    }
}

fn random_cmd(rng: &mut Rng, m: &Module) -> u32 {
    let own = m.cmds[rng.below(m.cmds.len() as u64) as usize];
    match rng.below(8) {
        0..=3 => own,
        // Same number, another size and/or direction.
        4 => ioc::ioc(rng.below(4) as u32, m.magic, (own & 0xff) as u8, rng.below(1 << 14) as usize),
        // Another number of the magic.
        5 => ioc::ioc(rng.below(4) as u32, m.magic, rng.below(256) as u8, rng.below(64) as usize),
        // Anything.
        _ => rng.next() as u32,
    }
}

/// Outcomes counted per command: the module's own commands in order, then every other number.
/// Slot 0 is success, slot e the errno e (the last slot: any larger errno).
const OUTCOMES: usize = 134;
const ROWS: usize = 8;

/// Where the fuzzer's time goes, in nanoseconds summed over every process (the KASAN guest's
/// million ioctls per module cost CI half an hour before these said why).
#[repr(C)]
#[derive(Default)]
struct Spent {
    /// Inside the fuzzed ioctls.
    ioctl: AtomicU64,
    /// Forking a foreign process and waiting for it.
    foreign: AtomicU64,
    /// Spawning and joining a thread that exits registered.
    thread: AtomicU64,
    /// Filling a UITT.
    fill: AtomicU64,
    /// execs done (a count, not a time: the exec'd program's whole life is in `exec_life`).
    execs: AtomicU64,
    /// From exec to the exec'd program's end.
    exec_life: AtomicU64,
}

/// The shared counters: ioctls done, outcomes per (command row, errno), and time spent.
#[repr(C)]
struct Shared {
    done: AtomicU64,
    outcomes: [[AtomicU64; OUTCOMES]; ROWS],
    spent: Spent,
}

/// Nanoseconds on the monotonic clock, comparable across processes (unlike `Instant`, which
/// does not cross an exec).
fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Adds the time since `t0` (from `now_ns`) to `counter`.
fn charge(counter: &AtomicU64, t0: u64) {
    counter.fetch_add(now_ns().saturating_sub(t0), Ordering::Relaxed);
}

fn row_of(m: &Module, cmd: u32) -> usize {
    m.cmds.iter().position(|&c| c == cmd).unwrap_or(m.cmds.len())
}

/// The shared counters in a memfd (inherited across fork and, without O_CLOEXEC, across exec):
/// its descriptor and the mapping.
fn shared_memfd() -> Result<(i32, &'static Shared), String> {
    // SAFETY: a NUL-terminated name; no flags, so the descriptor survives exec.
    let fd = unsafe { libc::memfd_create(c"synergy-fuzz".as_ptr(), 0) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    let len = std::mem::size_of::<Shared>().next_multiple_of(PAGE);
    // SAFETY: sizes the memfd we own; new bytes read as zero.
    if unsafe { libc::ftruncate(fd, len as libc::off_t) } != 0 {
        return Err(format!("ftruncate: {}", std::io::Error::last_os_error()));
    }
    Ok((fd, map_shared(fd)?))
}

/// Maps the counters of memfd `fd` (made by `shared_memfd`).
fn map_shared(fd: i32) -> Result<&'static Shared, String> {
    let len = std::mem::size_of::<Shared>().next_multiple_of(PAGE);
    // SAFETY: a shared mapping of the memfd at an address of the kernel's choosing.
    let p =
        unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap shared: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: zero-filled (ftruncate) or counters only, page-aligned, shared, never unmapped: a
    // valid `Shared` (atomics only) for every process that maps it, for the process's lifetime.
    Ok(unsafe { &*(p as *const Shared) })
}

/// Issues one ioctl and counts it (done, and its outcome in the command's row); returns ioctl's
/// answer.
fn counted(m: &Module, shared: &Shared, fd: i32, cmd: u32, arg: usize) -> i32 {
    let t0 = now_ns();
    // SAFETY: the kernel validates every argument; wild pointers are what is being tested.
    let r = unsafe { libc::ioctl(fd, cmd as _, arg) };
    charge(&shared.spent.ioctl, t0);
    let outcome = if r >= 0 {
        0
    } else {
        (std::io::Error::last_os_error().raw_os_error().unwrap_or(0).max(1) as usize).min(OUTCOMES - 1)
    };
    shared.outcomes[row_of(m, cmd)][outcome].fetch_add(1, Ordering::Relaxed);
    shared.done.fetch_add(1, Ordering::Relaxed);
    r
}

/// A well-formed argument (the module's own layout) in a fresh buffer: `words` little-endian.
fn buffer(words: &[u64]) -> Vec<u64> {
    let mut b = words.to_vec();
    b.resize(4, 0);
    b
}

/// Another process (a forked grandchild, which shares the child's descriptors but not its
/// thread group) aims at the child's receivers: kmod_ipi SEND to its CPU and kmod_uintr
/// REGISTER_SENDER for its receiver id must answer EPERM; then it exits.
fn foreign_process(m: &Module, shared: &Shared, fd: i32, my_cpu: u32, my_receiver: u64) {
    let t0 = now_ns();
    // SAFETY: this process is single-threaded here (every dying thread was joined); the
    // grandchild only issues ioctls and _exit()s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        for _ in 0..4 {
            if m.magic == ipi::IOC_MAGIC {
                let b = buffer(&[u64::from(my_cpu)]);
                counted(m, shared, fd, ipi::IOC_SEND, b.as_ptr() as usize);
                let mut st = buffer(&[]);
                counted(m, shared, fd, ipi::IOC_STATS, st.as_mut_ptr() as usize);
            } else {
                let mut b = buffer(&[my_receiver]);
                counted(m, shared, fd, uintr::IOC_REGISTER_SENDER, b.as_mut_ptr() as usize);
            }
        }
        // SAFETY: ends the grandchild without the child's exit handlers.
        unsafe { libc::_exit(0) };
    }
    if pid > 0 {
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    charge(&shared.spent.foreign, t0);
}

/// A thread that registers (kmod_ipi: as its CPU's receiver; kmod_uintr: as a receiver, and a
/// sender to it) and exits still registered: the modules' thread-exit paths.
fn dying_thread(m: &Module, shared: &Shared, fd: i32, code: u64, slot: u64) {
    let t0 = now_ns();
    let shared_addr = shared as *const Shared as usize;
    let magic = m.magic;
    let t = std::thread::spawn(move || {
        // SAFETY: the mapping outlives the process's threads (never unmapped).
        let shared = unsafe { &*(shared_addr as *const Shared) };
        let m = if magic == ipi::IOC_MAGIC { &IPI } else { &UINTR };
        if magic == ipi::IOC_MAGIC {
            let mut b = buffer(&[code, slot + 8 * 8, u64::from(u32::MAX)]);
            counted(m, shared, fd, ipi::IOC_REGISTER, b.as_mut_ptr() as usize);
        } else {
            let mut b = buffer(&[code, 128, 0]);
            if counted(m, shared, fd, uintr::IOC_REGISTER_RECEIVER, b.as_mut_ptr() as usize) == 0 {
                // UintrReceiver::receiver_id is the upper half of the third word.
                let mut s = buffer(&[b[2] >> 32]);
                counted(m, shared, fd, uintr::IOC_REGISTER_SENDER, s.as_mut_ptr() as usize);
            }
        }
    });
    let _ = t.join();
    charge(&shared.spent.thread, t0);
}

/// Entries of a thread's UITT in kmod_uintr (its UITT_LEN; the README's "256 entries used").
const UITT_ENTRIES: usize = 256;

/// Registers senders to `my_receiver` until the UITT is full (ENOSPC).
fn fill_uitt(shared: &Shared, fd: i32, my_receiver: u64) {
    let t0 = now_ns();
    for _ in 0..=UITT_ENTRIES {
        let mut b = buffer(&[my_receiver]);
        if counted(&UINTR, shared, fd, uintr::IOC_REGISTER_SENDER, b.as_mut_ptr() as usize) != 0 {
            break;
        }
    }
    charge(&shared.spent.fill, t0);
}

/// Replaces this process by `synergy-ktest fuzz-exec`, handing it the device and the counters
/// without O_CLOEXEC. Returns only if the exec failed.
fn exec_self(m: &Module, dev: i32, shared_fd: i32, my_cpu: u32, my_receiver: u64, seed: u64) {
    for fd in [dev, shared_fd] {
        // SAFETY: clears FD_CLOEXEC on descriptors we own.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    let module = if m.magic == ipi::IOC_MAGIC { "ipi" } else { "uintr" };
    let _ = std::os::unix::process::CommandExt::exec(std::process::Command::new("/proc/self/exe").args([
        "fuzz-exec",
        module,
        &dev.to_string(),
        &shared_fd.to_string(),
        &my_cpu.to_string(),
        &my_receiver.to_string(),
        &seed.to_string(),
        &now_ns().to_string(),
    ]));
}

/// `fuzz-exec <ipi|uintr> <device fd> <counters fd> <cpu> <receiver id> <seed> <exec time>`: the program a
/// fuzz child exec'd into. Through the descriptor it inherited it sends to and registers with
/// the old program's registrations: ESTALE where they were the old image's (then, for kmod_ipi,
/// ENOENT: the stale registration was dropped), and registers anew; counted like the child's.
pub fn exec_child(args: &[String]) -> Result<(), String> {
    let num = |i: usize| -> Result<u64, String> {
        args.get(i).and_then(|s| s.parse().ok()).ok_or_else(|| format!("fuzz-exec: argument {i} missing"))
    };
    let m = if args.first().map(String::as_str) == Some("ipi") { &IPI } else { &UINTR };
    let (dev, shared) = (num(1)? as i32, map_shared(num(2)? as i32)?);
    let (my_cpu, my_receiver) = (num(3)? as u32, num(4)?);
    let mut rng = Rng(num(5)? | 1);
    let exec_at = num(6)?;
    shared.spent.execs.fetch_add(1, Ordering::Relaxed);
    for _ in 0..8 {
        if m.magic == ipi::IOC_MAGIC {
            let b = buffer(&[u64::from(my_cpu)]);
            counted(m, shared, dev, ipi::IOC_SEND, b.as_ptr() as usize);
            if rng.chance(2) {
                let slot = buffer(&[0]);
                let mut r = buffer(&[exec_child as *const () as u64, slot.as_ptr() as u64, u64::from(u32::MAX)]);
                if counted(m, shared, dev, ipi::IOC_REGISTER, r.as_mut_ptr() as usize) == 0 {
                    counted(m, shared, dev, ipi::IOC_UNREGISTER, 0);
                }
            }
        } else {
            let mut s = buffer(&[my_receiver]);
            counted(m, shared, dev, uintr::IOC_REGISTER_SENDER, s.as_mut_ptr() as usize);
            let mut r = buffer(&[exec_child as *const () as u64, 128, 0]);
            counted(m, shared, dev, uintr::IOC_REGISTER_RECEIVER, r.as_mut_ptr() as usize);
        }
    }
    charge(&shared.spent.exec_life, exec_at);
    Ok(())
}

/// One child's work: `n` ioctls, each counted in `done` and by outcome. The lifetime events
/// in its loop (a foreign process, a dying thread, a full UITT, exec) come once per a few
/// hundred to 1,500 ioctls, times `spacing`.
fn child(m: &Module, seed: u64, n: u64, spacing: u64, shared: &Shared, shared_fd: i32) -> Result<(), String> {
    let mut rng = Rng(seed | 1);
    let arena = Arena::new()?;
    let open = || crate::open_device(m.path, "the module").map(std::os::fd::IntoRawFd::into_raw_fd);
    let mut fds = vec![open()?];
    let code = child as *const () as u64;
    let mut slot_mapped = true;
    let mut my_cpu = 0u32;
    let mut registered = false;
    let mut my_receiver = 1u64;
    // Half the children start registered (pinned to a random CPU), so that sends, statistics and
    // senders have a receiver of their own to reach: without it the fuzzer's random
    // registrations rarely succeed and SEND never did (the outcome table showed it).
    if rng.chance(2) {
        let cpu = rng.below(crate::online_cpus() as u64) as usize;
        crate::pin_to(cpu)?;
        let fd = fds[0];
        if m.magic == ipi::IOC_MAGIC {
            let mut r = ipi::IpiRegister { handler: code, rip_slot: arena.slot_page as u64, cpu: u32::MAX, flags: 0 };
            // SAFETY: a valid, writable IpiRegister.
            if unsafe { libc::ioctl(fd, ipi::IOC_REGISTER as _, &mut r as *mut ipi::IpiRegister) } == 0 {
                my_cpu = r.cpu;
                registered = true;
            }
        } else {
            let mut r = uintr::UintrReceiver { handler: code, stack_adjust: 128, flags: 0, receiver_id: 0 };
            // SAFETY: a valid, writable UintrReceiver.
            if unsafe { libc::ioctl(fd, uintr::IOC_REGISTER_RECEIVER as _, &mut r as *mut uintr::UintrReceiver) } == 0 {
                my_receiver = u64::from(r.receiver_id);
                registered = true;
            }
        }
    }
    // While the first registration is certainly alive, some children aim at it at once: from
    // another process (EPERM), through a second descriptor (EBUSY), by filling the UITT (ENOSPC),
    // or from the program they exec into (ESTALE). Later the random ioctls may have dropped it.
    if registered {
        if rng.chance(3) {
            foreign_process(m, shared, fds[0], my_cpu, my_receiver);
        }
        if m.magic == uintr::IOC_MAGIC && rng.chance(4) {
            let other = open()?;
            let mut b = buffer(&[my_receiver]);
            counted(m, shared, other, uintr::IOC_REGISTER_SENDER, b.as_mut_ptr() as usize);
            fds.push(other);
        }
        if m.magic == uintr::IOC_MAGIC && rng.chance(6) {
            fill_uitt(shared, fds[0], my_receiver);
        }
        if rng.chance(6) {
            exec_self(m, fds[0], shared_fd, my_cpu, my_receiver, rng.next());
        }
    }
    for _ in 0..n {
        // The lifetime events: another process, a thread that exits registered, a full UITT,
        // failing register writes (the fake backend only: ENOTTY elsewhere), exec.
        if rng.chance(400 * spacing) {
            foreign_process(m, shared, fds[0], my_cpu, my_receiver);
        }
        if rng.chance(300 * spacing) {
            dying_thread(m, shared, fds[0], code, arena.slot_page as u64);
        }
        if m.magic == uintr::IOC_MAGIC && rng.chance(1500 * spacing) {
            fill_uitt(shared, fds[0], my_receiver);
        }
        if m.magic == uintr::IOC_MAGIC && rng.chance(100) {
            let n = 1 + rng.below(3) as u32;
            // SAFETY: a valid u32 argument; the test-only command of the fake backend.
            unsafe { libc::ioctl(fds[0], uintr::IOC_FAKE_FAIL_WRITES as _, &n as *const u32) };
        }
        if rng.chance(1500 * spacing) {
            exec_self(m, fds[0], shared_fd, my_cpu, my_receiver, rng.next());
        }
        if rng.chance(200) && fds.len() < 4 {
            fds.push(open()?);
        }
        if rng.chance(300) && fds.len() > 1 {
            let fd = fds.swap_remove(rng.below(fds.len() as u64) as usize);
            // SAFETY: closes a descriptor this loop opened and no longer uses.
            unsafe { libc::close(fd) };
        }
        let fd = fds[rng.below(fds.len() as u64) as usize];
        let cmd = random_cmd(&mut rng, m);
        let slot = arena.slot_page as u64 + (rng.below(8) * 8);
        // Field values a registration could accept: code, a slot, CPU numbers, flags, ids.
        let plausible = [code, slot, 0, 1, 2, 3, 128, 0x7fff_ffff_e000, u64::from(u32::MAX)];
        let len = ioc::ioc_size(cmd).clamp(8, 64);
        let mut arg = arena.pointer(&mut rng, len, &plausible);
        // One call in eight is well formed but for at most one field, so registrations succeed
        // and sends reach this process's own receivers: deliveries then redirect it to `code` or
        // into the (non-executable) slot page, and it dies of that at a random moment too.
        if rng.chance(8) {
            let words = well_formed(&mut rng, m, cmd, code, slot, my_cpu, my_receiver);
            let p = arena.rw as usize + PAGE; // the second read-write page
            for (i, w) in words.iter().enumerate() {
                // SAFETY: at most 4 words, inside the second read-write page.
                unsafe { ((p + 8 * i) as *mut u64).write_unaligned(*w) };
            }
            arg = p;
        }
        let r = counted(m, shared, fd, cmd, arg);
        if r >= 0 && cmd == ipi::IOC_REGISTER && m.magic == ipi::IOC_MAGIC && arg >= arena.rw as usize {
            // The answer names the CPU registered on (IpiRegister::cpu, the third word's low half).
            // SAFETY: the call succeeded, so `arg` was a readable and writable 24-byte buffer.
            my_cpu = unsafe { ((arg + 16) as *const u32).read_unaligned() };
        }
        if r >= 0 && cmd == uintr::IOC_REGISTER_RECEIVER && m.magic == uintr::IOC_MAGIC && arg >= arena.rw as usize {
            // Senders then aim at the newest receiver: the first one is usually unregistered by
            // a random call within a few dozen, after which well-formed REGISTER_SENDERs got
            // ENOENT and UNREGISTER_SENDER almost never found a sender (55 successes in a
            // million KASAN-guest ioctls).
            // SAFETY: the call succeeded, so `arg` was a readable and writable 24-byte buffer;
            // UintrReceiver::receiver_id is at offset 20.
            my_receiver = u64::from(unsafe { ((arg + 20) as *const u32).read_unaligned() });
        }
        if r >= 0 && m.cmds.contains(&cmd) && ioc::ioc_size(cmd) > 0 && rng.chance(4) && slot_mapped {
            // After a successful call that may have registered: pull the slot page away or make
            // it read-only, so later deliveries and tear-downs meet a bad slot.
            // SAFETY: the slot page is ours; nothing in this process dereferences it.
            unsafe {
                if rng.chance(2) {
                    libc::munmap(arena.slot_page.cast(), PAGE);
                    slot_mapped = false;
                } else {
                    libc::mprotect(arena.slot_page.cast(), PAGE, libc::PROT_READ);
                }
            }
        }
    }
    Ok(())
}

/// The words of a well-formed argument for `cmd` (the module's own layout), with one field
/// replaced by a random value half of the time.
fn well_formed(rng: &mut Rng, m: &Module, cmd: u32, code: u64, slot: u64, my_cpu: u32, my_receiver: u64) -> Vec<u64> {
    let handler = if rng.chance(2) { code } else { slot };
    let mut words = if m.magic == ipi::IOC_MAGIC {
        match cmd {
            // IpiRegister { handler, rip_slot, cpu: u32::MAX (in), flags: 0 }
            ipi::IOC_REGISTER => vec![handler, slot, u64::from(u32::MAX)],
            // IpiSend { target, flags: 0 }; IpiCpuApic { cpu, apic_id }
            ipi::IOC_SEND | ipi::IOC_CPU_APIC_ID => vec![u64::from(my_cpu)],
            _ => vec![0; 4],
        }
    } else {
        match cmd {
            // UintrReceiver { handler, stack_adjust, flags: 0, receiver_id: 0 }
            uintr::IOC_REGISTER_RECEIVER => vec![handler, 128, 0],
            // UintrSender { receiver_id, vector, uitt_index, flags }
            uintr::IOC_REGISTER_SENDER => {
                let id = if rng.chance(2) { my_receiver } else { rng.below(4) };
                vec![id | (rng.below(64) << 32), 0]
            }
            _ => vec![0; 4],
        }
    };
    if rng.chance(2) {
        let i = rng.below(words.len() as u64) as usize;
        words[i] = rng.next();
    }
    words
}

pub fn run(args: &[String]) -> Result<(), String> {
    let m = match args.first().map(String::as_str) {
        Some("ipi") => &IPI,
        Some("uintr") => &UINTR,
        _ => return Err("usage: synergy-ktest fuzz <ipi|uintr> <count> [seed]".into()),
    };
    let total: u64 = args.get(1).and_then(|s| s.parse().ok()).ok_or("fuzz: <count> must be a number")?;
    let seed: u64 = match args.get(2) {
        Some(s) => s.parse().map_err(|_| "fuzz: [seed] must be a number")?,
        None => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        }
    };
    // SYNERGY_FUZZ_LIFETIME_SPACING=k makes the lifetime events k times rarer per ioctl: they
    // cost 20-150 ms each on the KASAN kernel under TCG against about 0.1 ms for an ioctl, so
    // the KASAN guest's million ioctls per module take k=5 (still twice the plain run's 100,000
    // ioctls' events in all).
    let spacing: u64 = match std::env::var("SYNERGY_FUZZ_LIFETIME_SPACING") {
        Ok(s) => {
            s.parse().ok().filter(|&k| k >= 1).ok_or("fuzz: SYNERGY_FUZZ_LIFETIME_SPACING must be a number >= 1")?
        }
        Err(_) => 1,
    };
    println!("fuzz {}: {total} ioctls, seed {seed}, lifetime events spaced x{spacing}", m.path);
    // The children's ioctl counts, in memory shared across fork and exec.
    let (shared_fd, shared) = shared_memfd()?;
    let done = &shared.done;
    let mut rng = Rng(seed | 1);
    let (mut children, mut killed, mut stuck, mut died) = (0u64, 0u64, 0u64, 0u64);
    let started = now_ns();
    while done.load(Ordering::Relaxed) < total {
        let child_seed = rng.next();
        let n = (total - done.load(Ordering::Relaxed)).min(2000);
        // SAFETY: the child only runs `child` and then _exit()s (no allocator state is shared
        // with other threads: this process is single-threaded).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            let code = match child(m, child_seed, n, spacing, shared, shared_fd) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("fuzz child: {e}");
                    3
                }
            };
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        children += 1;
        // The parent sleeps in poll(2) on the child's pidfd instead of spinning on waitpid: a
        // spinning parent took a vCPU from the children (4 vCPUs on 2 host CPUs under TCG).
        let child_fd = crate::pidfd::open(pid)?;
        if rng.chance(4) {
            // SIGKILL at a random moment: once the children have done `at` ioctls (or after 5 s).
            let at = done.load(Ordering::Relaxed) + rng.below(n);
            let give_up = now_ns() + 5_000_000_000;
            while done.load(Ordering::Relaxed) < at && now_ns() < give_up && !crate::pidfd::exited_within(&child_fd, 1)?
            {
            }
            // SAFETY: our own child, not yet reaped (a zombie if it already exited).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed += 1;
        }
        // A child redirected into random code may also spin forever: 30 s, then SIGKILL.
        if !crate::pidfd::exited_within(&child_fd, 30_000)? {
            // SAFETY: our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            stuck += 1;
        }
        let mut status = 0;
        // SAFETY: reaps our own child.
        if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
            return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
        }
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 3 {
            return Err("a fuzz child could not set up (see above)".into());
        }
        if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) != libc::SIGKILL {
            died += 1; // a delivery into a random handler
        }
    }
    println!(
        "fuzz {}: {} ioctls in {children} processes ({killed} killed with SIGKILL at a random moment, {stuck} after 30 s, {died} died of a delivery to a random handler)",
        m.path,
        done.load(Ordering::Relaxed)
    );
    let ms = |c: &AtomicU64| c.load(Ordering::Relaxed) / 1_000_000;
    let sp = &shared.spent;
    println!(
        "fuzz {}: {} ms in all; summed over processes: ioctls {} ms, foreign processes {} ms, dying threads {} ms, UITT fills {} ms, {} execs {} ms",
        m.path,
        (now_ns() - started) / 1_000_000,
        ms(&sp.ioctl),
        ms(&sp.foreign),
        ms(&sp.thread),
        ms(&sp.fill),
        sp.execs.load(Ordering::Relaxed),
        ms(&sp.exec_life),
    );
    // Add this run's outcomes to the table file the guest script sums over every run.
    if let Ok(path) = std::env::var("SYNERGY_FUZZ_TABLE") {
        let mut table = read_table(&path);
        for (r, row) in shared.outcomes.iter().enumerate() {
            for (e, n) in row.iter().enumerate() {
                table[r][e] += n.load(Ordering::Relaxed);
            }
        }
        let text: String =
            table.iter().map(|row| row.iter().map(u64::to_string).collect::<Vec<_>>().join(" ") + "\n").collect();
        std::fs::write(&path, text).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}

fn read_table(path: &str) -> Vec<[u64; OUTCOMES]> {
    let mut table = vec![[0u64; OUTCOMES]; ROWS];
    if let Ok(text) = std::fs::read_to_string(path) {
        for (r, line) in text.lines().enumerate().take(ROWS) {
            for (e, n) in line.split(' ').enumerate().take(OUTCOMES) {
                table[r][e] = n.parse().unwrap_or(0);
            }
        }
    }
    table
}

fn outcome_name(e: usize) -> String {
    match e {
        0 => "ok".into(),
        1 => "EPERM".into(),
        2 => "ENOENT".into(),
        3 => "ESRCH".into(),
        5 => "EIO".into(),
        6 => "ENXIO".into(),
        11 => "EAGAIN".into(),
        12 => "ENOMEM".into(),
        14 => "EFAULT".into(),
        16 => "EBUSY".into(),
        19 => "ENODEV".into(),
        22 => "EINVAL".into(),
        25 => "ENOTTY".into(),
        28 => "ENOSPC".into(),
        95 => "EOPNOTSUPP".into(),
        116 => "ESTALE".into(),
        e => format!("errno {e}"),
    }
}

/// Each ioctl's documented errors (the modules' READMEs), which the fuzzer must reach, and the
/// documented ones it cannot, with why.
struct Documented {
    name: &'static str,
    must: &'static [i32],
    cannot: &'static [(i32, &'static str)],
}

const IPI_DOCUMENTED: &[Documented] = &[
    Documented { name: "VERSION", must: &[libc::EFAULT], cannot: &[] },
    Documented { name: "REGISTER", must: &[libc::EINVAL, libc::EFAULT, libc::EBUSY], cannot: &[] },
    Documented { name: "UNREGISTER", must: &[libc::ENOENT], cannot: &[] },
    Documented { name: "CPU_APIC_ID", must: &[libc::EINVAL, libc::EFAULT], cannot: &[] },
    Documented {
        name: "SEND",
        must: &[libc::EINVAL, libc::ENOENT, libc::EPERM, libc::ESTALE],
        cannot: &[
            (libc::ENXIO, "a send racing its CPU going offline: the hotplug callback drops the CPU's receiver first, so a send after it gets ENOENT (ktest ipi-hotplug covers the path)"),
            (libc::ENODEV, "a send while the module is being removed"),
        ],
    },
    Documented { name: "STATS", must: &[libc::ENOENT, libc::EFAULT], cannot: &[] },
];

const UINTR_DOCUMENTED: &[Documented] = &[
    Documented { name: "VERSION", must: &[libc::EFAULT], cannot: &[] },
    Documented {
        name: "REGISTER_RECEIVER",
        must: &[libc::EINVAL, libc::EFAULT, libc::EBUSY, libc::EIO, libc::ESTALE],
        cannot: &[(libc::EOPNOTSUPP, "a CPU without UINTR; the fake backend has it (ktest uintr-refusal covers it)")],
    },
    Documented { name: "UNREGISTER_RECEIVER", must: &[libc::ENOENT], cannot: &[] },
    Documented {
        name: "REGISTER_SENDER",
        must: &[libc::EINVAL, libc::EFAULT, libc::ENOENT, libc::EPERM, libc::ENOSPC, libc::EBUSY, libc::ESTALE],
        cannot: &[(libc::EOPNOTSUPP, "as above")],
    },
    Documented { name: "UNREGISTER_SENDER", must: &[libc::ENOENT], cannot: &[] },
];

/// `fuzz-report <ipi|uintr> <table> [--documented]`: the ioctl x outcome table over every fuzz
/// run that added to `table`; fails unless each of the module's own ioctls reached success and
/// at least one error, and, with `--documented`, each of its documented errors (a command that
/// only ever got one answer was not exercised). kmod_uintr's are reachable on its fake backend
/// only, so the guest script asks for them there.
pub fn report(args: &[String]) -> Result<(), String> {
    let (m, docs): (&Module, &[Documented]) = match args.first().map(String::as_str) {
        Some("ipi") => (&IPI, IPI_DOCUMENTED),
        Some("uintr") => (&UINTR, UINTR_DOCUMENTED),
        _ => return Err("usage: synergy-ktest fuzz-report <ipi|uintr> <table file> [--documented]".into()),
    };
    let path = args.get(1).ok_or("fuzz-report: <table file> missing")?;
    let documented = args.get(2).map(String::as_str) == Some("--documented");
    let table = read_table(path);
    let mut uncovered = Vec::new();
    println!("fuzz {}: ioctl x outcome over every run", m.path);
    for (r, row) in table.iter().enumerate().take(m.cmds.len() + 1) {
        let name = docs.get(r).map_or("(other numbers)", |d| d.name);
        let cells: Vec<String> =
            row.iter().enumerate().filter(|(_, &n)| n > 0).map(|(e, n)| format!("{} {n}", outcome_name(e))).collect();
        println!("  {name:<20} {}", cells.join(", "));
        let Some(d) = docs.get(r) else { continue };
        if row[0] == 0 || row[1..].iter().all(|&n| n == 0) {
            uncovered.push(format!("{name}: never both success and an error"));
        }
        if documented {
            for &e in d.must {
                if row[e as usize] == 0 {
                    uncovered.push(format!("{name}: documented {} never reached", outcome_name(e as usize)));
                }
            }
            for (e, why) in d.cannot {
                println!("  {name:<20} ({} not required: {why})", outcome_name(*e as usize));
            }
        }
    }
    if !uncovered.is_empty() {
        return Err(format!("not covered: {}", uncovered.join("; ")));
    }
    Ok(())
}
