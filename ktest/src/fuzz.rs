//! `fuzz <ipi|uintr> <count> [seed]`: random ioctls against one module (issue 16).
//!
//! The parent forks children; each child opens the device and issues random ioctls: the
//! module's own commands, the same numbers with other sizes and directions, other numbers of its
//! magic and entirely random ones; arguments that are NULL, kernel, non-canonical, unmapped,
//! read-only and page-crossing pointers, small integers, and valid buffers holding random or
//! plausible field values. After a successful registration the child at random unmaps the
//! registered slot's page, makes it read-only, or registers again. A delivery may redirect a
//! kmod_ipi child to a random handler address and kill it: that is expected and counted. The
//! parent kills a quarter of the children with SIGKILL at a random moment. Children count their
//! ioctls in shared memory, so the total is exact. What must hold is checked by the harness: no
//! kernel splat (the KASAN kernel runs this), and the module unloads afterwards.

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

/// The shared counters: ioctls done, and outcomes per (command row, errno).
#[repr(C)]
struct Shared {
    done: AtomicU64,
    outcomes: [[AtomicU64; OUTCOMES]; ROWS],
}

fn row_of(m: &Module, cmd: u32) -> usize {
    m.cmds.iter().position(|&c| c == cmd).unwrap_or(m.cmds.len())
}

/// One child's work: `n` ioctls, each counted in `done` and by outcome.
fn child(m: &Module, seed: u64, n: u64, shared: &Shared) -> Result<(), String> {
    let done = &shared.done;
    let mut rng = Rng(seed | 1);
    let arena = Arena::new()?;
    let open = || crate::open_device(m.path, "the module").map(std::os::fd::IntoRawFd::into_raw_fd);
    let mut fds = vec![open()?];
    let code = child as *const () as u64;
    let mut slot_mapped = true;
    let mut my_cpu = 0u32;
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
            }
        } else {
            let mut r = uintr::UintrReceiver { handler: code, stack_adjust: 128, flags: 0, receiver_id: 0 };
            // SAFETY: a valid, writable UintrReceiver.
            if unsafe { libc::ioctl(fd, uintr::IOC_REGISTER_RECEIVER as _, &mut r as *mut uintr::UintrReceiver) } == 0 {
                my_receiver = u64::from(r.receiver_id);
            }
        }
    }
    for _ in 0..n {
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
        // SAFETY: the kernel validates every argument; wild pointers are what is being tested.
        let r = unsafe { libc::ioctl(fd, cmd as _, arg) };
        let outcome = if r >= 0 {
            0
        } else {
            (std::io::Error::last_os_error().raw_os_error().unwrap_or(0).max(1) as usize).min(OUTCOMES - 1)
        };
        shared.outcomes[row_of(m, cmd)][outcome].fetch_add(1, Ordering::Relaxed);
        done.fetch_add(1, Ordering::Relaxed);
        if r >= 0 && cmd == ipi::IOC_REGISTER && m.magic == ipi::IOC_MAGIC && arg >= arena.rw as usize {
            // The answer names the CPU registered on (IpiRegister::cpu, the third word's low half).
            // SAFETY: the call succeeded, so `arg` was a readable and writable 24-byte buffer.
            my_cpu = unsafe { ((arg + 16) as *const u32).read_unaligned() };
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
    println!("fuzz {}: {total} ioctls, seed {seed}", m.path);
    // The children's ioctl counts, in memory shared across fork.
    // SAFETY: a shared anonymous mapping at an address of the kernel's choosing.
    let shared = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            std::mem::size_of::<Shared>().next_multiple_of(PAGE),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if shared == libc::MAP_FAILED {
        return Err(format!("mmap shared: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: zeroed pages, aligned, shared: a valid `Shared` (atomics only) for every process.
    let shared = unsafe { &*(shared as *const Shared) };
    let done = &shared.done;
    let mut rng = Rng(seed | 1);
    let (mut children, mut killed, mut died) = (0u64, 0u64, 0u64);
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
            let code = match child(m, child_seed, n, shared) {
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
        if rng.chance(4) {
            let before = done.load(Ordering::Relaxed);
            let at = before + rng.below(n);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while done.load(Ordering::Relaxed) < at && std::time::Instant::now() < deadline {
                std::hint::spin_loop();
            }
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed += 1;
        }
        // A child redirected into random code may also spin forever: 30 s, then SIGKILL.
        let mut status = 0;
        let mut deadline = Some(std::time::Instant::now() + std::time::Duration::from_secs(30));
        loop {
            // SAFETY: polls our own child.
            match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
                0 if deadline.is_some_and(|d| std::time::Instant::now() > d) => {
                    // SAFETY: our own child.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    killed += 1;
                    deadline = None;
                }
                0 => std::thread::yield_now(),
                r if r == pid => break,
                _ => return Err(format!("waitpid: {}", std::io::Error::last_os_error())),
            }
        }
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 3 {
            return Err("a fuzz child could not set up (see above)".into());
        }
        if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) != libc::SIGKILL {
            died += 1; // a delivery into a random handler
        }
    }
    println!(
        "fuzz {}: {} ioctls in {children} processes ({killed} killed with SIGKILL, {died} died of a delivery to a random handler)",
        m.path,
        done.load(Ordering::Relaxed)
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

/// `fuzz-report <ipi|uintr> <table>`: the ioctl x outcome table over every fuzz run that added to
/// `table`; fails unless each of the module's own ioctls reached success and at least one error
/// (a command that only ever got one answer was not exercised).
pub fn report(args: &[String]) -> Result<(), String> {
    let (m, names): (&Module, &[&str]) = match args.first().map(String::as_str) {
        Some("ipi") => (&IPI, &["VERSION", "REGISTER", "UNREGISTER", "CPU_APIC_ID", "SEND", "STATS"]),
        Some("uintr") => {
            (&UINTR, &["VERSION", "REGISTER_RECEIVER", "UNREGISTER_RECEIVER", "REGISTER_SENDER", "UNREGISTER_SENDER"])
        }
        _ => return Err("usage: synergy-ktest fuzz-report <ipi|uintr> <table file>".into()),
    };
    let path = args.get(1).ok_or("fuzz-report: <table file> missing")?;
    let table = read_table(path);
    let mut uncovered = Vec::new();
    println!("fuzz {}: ioctl x outcome over every run", m.path);
    for (r, row) in table.iter().enumerate().take(m.cmds.len() + 1) {
        let name = names.get(r).copied().unwrap_or("(other numbers)");
        let cells: Vec<String> =
            row.iter().enumerate().filter(|(_, &n)| n > 0).map(|(e, n)| format!("{} {n}", outcome_name(e))).collect();
        println!("  {name:<20} {}", cells.join(", "));
        if r < m.cmds.len() && (row[0] == 0 || row[1..].iter().all(|&n| n == 0)) {
            uncovered.push(name);
        }
    }
    if !uncovered.is_empty() {
        return Err(format!("{uncovered:?} never reached both success and an error"));
    }
    Ok(())
}
