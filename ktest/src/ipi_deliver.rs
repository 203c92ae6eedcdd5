//! Checks of kmod_ipi that deliver: receivers spinning in user space with a real handler.
//!
//! * `ipi-rseq`: a delivery that interrupts a restartable-sequence critical section resumes at
//!   the section's abort handler, as a signal would (issue 16, item 8).
//! * `ipi-rseq-refused`: a redirect refused because the receiver's slot is busy leaves the
//!   thread's `rseq_cs` alone (issue 40, item 6).
//! * `ipi-send-burst`: bursts of sends from one CPU to three receivers; every send is accounted
//!   for (delivered exactly once, or merged into an IPI still in flight), and the cost of each
//!   send is printed (issue 16, item 8; measured under TCG: only ratios within one run mean much).

use crate::ipi::{reg, send_to as send};
use crate::{ioctl, online_cpus, open_device, pin_to};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use synergy_uapi::ipi;

/// Defines a receiver's handler with its own rip slot and delivery counter. The handler counts
/// the delivery and resumes where the module says (`*slot`), every register and flag as they
/// were: it steps over the interrupted code's red zone, pushes the resume address, clears the
/// slot (from then on a new delivery may nest, and returns here), and returns with `ret 128`.
macro_rules! counting_handler {
    ($name:ident, $slot:ident, $count:ident) => {
        static $slot: AtomicU64 = AtomicU64::new(0);
        static $count: AtomicU64 = AtomicU64::new(0);

        /// Never called from Rust: its address is registered with kmod_ipi.
        ///
        /// # Safety
        /// Entered only by a kmod_ipi redirect, with `*slot` holding the resume address.
        #[unsafe(naked)]
        unsafe extern "C" fn $name() {
            core::arch::naked_asm!(
                "lea rsp, [rsp - 128]",
                "push qword ptr [rip + {slot}]",
                "pushfq",
                "lock inc qword ptr [rip + {count}]",
                "mov qword ptr [rip + {slot}], 0",
                "popfq",
                "ret 128",
                slot = sym $slot,
                count = sym $count,
            )
        }
    };
}

counting_handler!(handler_0, SLOT_0, DELIVERED_0);
counting_handler!(handler_1, SLOT_1, DELIVERED_1);
counting_handler!(handler_2, SLOT_2, DELIVERED_2);

pub(crate) struct Target {
    handler: unsafe extern "C" fn(),
    slot: &'static AtomicU64,
    pub(crate) delivered: &'static AtomicU64,
}

/// Three receivers' handlers, each with its own slot and delivery counter.
pub(crate) const TARGETS: [Target; 3] = [
    Target { handler: handler_0, slot: &SLOT_0, delivered: &DELIVERED_0 },
    Target { handler: handler_1, slot: &SLOT_1, delivered: &DELIVERED_1 },
    Target { handler: handler_2, slot: &SLOT_2, delivered: &DELIVERED_2 },
];

/// Registers the calling thread as a receiver with `t`'s handler and slot; returns its CPU.
pub(crate) fn register(fd: i32, t: &Target) -> Result<u32, String> {
    let (r, answer) = reg(fd, t.handler as usize as u64, t.slot as *const AtomicU64 as u64, 0);
    r.map_err(|e| format!("register: errno {e}"))?;
    Ok(answer.cpu)
}

fn stats(fd: i32) -> Result<ipi::IpiStats, String> {
    let mut s = ipi::IpiStats::default();
    ioctl(fd, ipi::IOC_STATS, &mut s as *mut _ as usize).map_err(|e| format!("stats: errno {e}"))?;
    Ok(s)
}

// ---- ipi-rseq ------------------------------------------------------------------------------

/// uapi `struct rseq_cs` (`rseq_loop` fills in the addresses at offsets 8, 16 and 24).
#[repr(C, align(32))]
struct RseqCs {
    version: u32,
    flags: u32,
    start_ip: AtomicU64,
    post_commit_offset: AtomicU64,
    abort_ip: AtomicU64,
}

static CS: RseqCs = RseqCs {
    version: 0,
    flags: 0,
    start_ip: AtomicU64::new(0),
    post_commit_offset: AtomicU64::new(0),
    abort_ip: AtomicU64::new(0),
};
static STOP: AtomicBool = AtomicBool::new(false);
/// Critical sections that committed.
static COMMITS: AtomicU64 = AtomicU64::new(0);
/// Critical sections that reached their commit although a delivery had run since they began:
/// the interrupted section was resumed instead of aborted.
static VIOLATIONS: AtomicU64 = AtomicU64::new(0);
/// Entries into the abort handler, and those among them after a delivery during the section.
static ABORTS: AtomicU64 = AtomicU64::new(0);
static ABORTS_AFTER_DELIVERY: AtomicU64 = AtomicU64::new(0);

/// glibc's rseq signature on x86 (RSEQ_SIG), which glibc registered every thread with.
const RSEQ_SIG: u32 = 0x5305_3053;

/// The start of both rseq loops' asm: fills in the descriptor `{cs}` (start `3:`, post-commit
/// offset to `4:`, abort `5:`), then at `2:` leaves through `6:` once `{stop}` is set, or arms
/// `rseq_cs` (at `rdi`) with the descriptor and falls into the section at `3:`.
macro_rules! rseq_section_prologue {
    () => {
        concat!(
            "lea rsi, [rip + {cs}]\n",
            "lea rax, [rip + 3f]\n",
            "mov qword ptr [rsi + 8], rax\n",
            "lea rdx, [rip + 4f]\n",
            "sub rdx, rax\n",
            "mov qword ptr [rsi + 16], rdx\n",
            "lea rax, [rip + 5f]\n",
            "mov qword ptr [rsi + 24], rax\n",
            "2:\n",
            "cmp byte ptr [rip + {stop}], 0\n",
            "jne 6f\n",
            "lea rax, [rip + {cs}]\n",
            "mov qword ptr [rdi], rax",
        )
    };
}

/// Runs critical sections until `STOP`: each arms `rseq_cs` (at `cs_field`), reads the delivery
/// count, spins, reads it again and commits (the section's last instruction) only if it did not
/// change; if it did, the section was resumed after a delivery, which counts as a violation. The
/// abort handler (preceded by the signature) counts the abort and whether a delivery caused it.
///
/// # Safety
/// `cs_field` must be the calling thread's registered `struct rseq`'s `rseq_cs` field and the
/// thread must be registered with kmod_ipi with `handler_0` (whose counter is read here).
#[unsafe(naked)]
unsafe extern "C" fn rseq_loop(cs_field: *mut u64) {
    core::arch::naked_asm!(
        rseq_section_prologue!(),
        // The critical section.
        "3:",
        "mov rcx, qword ptr [rip + {delivered}]",
        "mov edx, 20000",
        "7:",
        "dec edx",
        "jnz 7b",
        "mov r8, qword ptr [rip + {delivered}]",
        "cmp r8, rcx",
        "jne 8f",
        "inc qword ptr [rip + {commits}]",
        "4:",
        "jmp 2b",
        "8:",
        "inc qword ptr [rip + {violations}]",
        "jmp 2b",
        ".long {sig}",
        "5:",
        "inc qword ptr [rip + {aborts}]",
        "mov r8, qword ptr [rip + {delivered}]",
        "cmp r8, rcx",
        "je 2b",
        "inc qword ptr [rip + {aborts_after}]",
        "jmp 2b",
        "6:",
        "mov qword ptr [rdi], 0",
        "ret",
        cs = sym CS,
        stop = sym STOP,
        delivered = sym DELIVERED_0,
        commits = sym COMMITS,
        violations = sym VIOLATIONS,
        aborts = sym ABORTS,
        aborts_after = sym ABORTS_AFTER_DELIVERY,
        sig = const RSEQ_SIG,
    )
}

extern "C" {
    /// glibc: offset of the thread's `struct rseq` from the thread pointer.
    static __rseq_offset: isize;
    /// glibc: size of the registered area; 0 if glibc did not register rseq.
    static __rseq_size: u32;
}

/// The calling thread's `rseq_cs` field in its glibc-registered `struct rseq`.
fn rseq_cs_field() -> Result<*mut u64, String> {
    // SAFETY: glibc's exported constants, set before main.
    let (offset, size) = unsafe { (__rseq_offset, __rseq_size) };
    if size == 0 {
        return Err("glibc did not register rseq for this thread (a kernel without CONFIG_RSEQ, or glibc.pthread.rseq=0): this check needs it".into());
    }
    let tp: usize;
    // SAFETY: reads the thread pointer (the TCB's self pointer at fs:0 on x86-64).
    unsafe { core::arch::asm!("mov {}, qword ptr fs:0", out(reg) tp) };
    // `rseq_cs` is at offset 8 of struct rseq.
    Ok((tp as isize + offset + 8) as *mut u64)
}

/// `ipi-rseq`: deliveries into a critical section must resume at its abort handler.
pub fn rseq() -> Result<(), String> {
    const WANT: u64 = 300;
    if online_cpus() < 2 {
        return Err("needs 2 CPUs".into());
    }
    let dev = open_device(ipi::DEVICE_PATH, "kmod_ipi")?;
    let fd = dev.as_raw_fd();
    pin_to(0)?;
    let ready = Barrier::new(2);
    let cpu = AtomicU32::new(u32::MAX);
    std::thread::scope(|s| {
        let receiver = s.spawn(|| -> Result<(), String> {
            let r = (|| {
                pin_to(1)?;
                let field = rseq_cs_field()?;
                cpu.store(register(fd, &TARGETS[0])?, Ordering::Release);
                Ok::<_, String>(field)
            })();
            ready.wait();
            let field = r?;
            // SAFETY: our own rseq_cs field; registered with handler_0.
            unsafe { rseq_loop(field) };
            ioctl(fd, ipi::IOC_UNREGISTER, 0).map_err(|e| format!("unregister: errno {e}"))?;
            Ok(())
        });
        ready.wait();
        let sent = (|| {
            let cpu = cpu.load(Ordering::Acquire);
            if cpu == u32::MAX {
                return Ok(0); // the receiver failed; its error is reported below
            }
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut sent = 0u64;
            while DELIVERED_0.load(Ordering::Acquire) < WANT {
                if Instant::now() > deadline {
                    return Err(format!("only {} of {WANT} deliveries in 120 s", DELIVERED_0.load(Ordering::Relaxed)));
                }
                let before = DELIVERED_0.load(Ordering::Acquire);
                send(fd, cpu).map_err(|e| format!("send: errno {e}"))?;
                sent += 1;
                // Wait for this delivery (the receiver may be descheduled: then it is a miss).
                let wait_until = Instant::now() + Duration::from_millis(200);
                while DELIVERED_0.load(Ordering::Acquire) == before && Instant::now() < wait_until {
                    std::hint::spin_loop();
                }
            }
            Ok(sent)
        })();
        STOP.store(true, Ordering::Release);
        let joined = receiver.join().map_err(|_| "receiver panicked".to_string()).and_then(|r| r);
        let sent = sent?;
        joined?;
        let (delivered, commits, violations, aborts, after) = (
            DELIVERED_0.load(Ordering::Relaxed),
            COMMITS.load(Ordering::Relaxed),
            VIOLATIONS.load(Ordering::Relaxed),
            ABORTS.load(Ordering::Relaxed),
            ABORTS_AFTER_DELIVERY.load(Ordering::Relaxed),
        );
        println!(
            "ipi-rseq: {sent} sends, {delivered} deliveries; sections: {commits} committed, {aborts} aborted ({after} after a delivery), {violations} resumed after a delivery"
        );
        if violations != 0 {
            return Err(format!("{violations} critical sections were resumed after a delivery instead of aborted"));
        }
        if after == 0 {
            return Err(format!("no delivery landed in a critical section ({delivered} deliveries): the check did not exercise the abort"));
        }
        Ok(())
    })
}

// ---- ipi-rseq-refused ----------------------------------------------------------------------

/// Sections that reached their end with `rseq_cs` cleared although they were never aborted: a
/// refused redirect took their abort away (issue 40, item 6).
static LOST_CS: AtomicU64 = AtomicU64::new(0);
static BUSY_COMMITS: AtomicU64 = AtomicU64::new(0);
static BUSY_ABORTS: AtomicU64 = AtomicU64::new(0);
static BUSY_STOP: AtomicBool = AtomicBool::new(false);
static BUSY_CS: RseqCs = RseqCs {
    version: 0,
    flags: 0,
    start_ip: AtomicU64::new(0),
    post_commit_offset: AtomicU64::new(0),
    abort_ip: AtomicU64::new(0),
};

/// Runs critical sections until `BUSY_STOP`: each arms `rseq_cs` (at `cs_field`), spins, and at
/// its end (still inside the section) checks that `rseq_cs` still names it; a section that finds
/// it cleared counts in `LOST_CS`. Only an abort may clear it while the thread is inside (the
/// kernel clears it when it sends the thread to the abort handler), and aborts leave the section.
///
/// # Safety
/// `cs_field` must be the calling thread's registered `struct rseq`'s `rseq_cs` field.
#[unsafe(naked)]
unsafe extern "C" fn rseq_busy_loop(cs_field: *mut u64) {
    core::arch::naked_asm!(
        rseq_section_prologue!(),
        // The critical section.
        "3:",
        "mov edx, 20000",
        "7:",
        "dec edx",
        "jnz 7b",
        "cmp qword ptr [rdi], 0",
        "je 8f",
        "inc qword ptr [rip + {commits}]",
        "4:",
        "jmp 2b",
        "8:",
        "inc qword ptr [rip + {lost}]",
        "jmp 2b",
        ".long {sig}",
        "5:",
        "inc qword ptr [rip + {aborts}]",
        "jmp 2b",
        "6:",
        "mov qword ptr [rdi], 0",
        "ret",
        cs = sym BUSY_CS,
        stop = sym BUSY_STOP,
        commits = sym BUSY_COMMITS,
        lost = sym LOST_CS,
        aborts = sym BUSY_ABORTS,
        sig = const RSEQ_SIG,
    )
}

/// `ipi-rseq-refused`: a receiver inside a critical section whose redirect is refused (its rip
/// slot is busy, as while a previous delivery's handler runs) keeps its `rseq_cs`: the section
/// is neither resumed without its abort nor redirected. Before the fix the module cleared
/// `rseq_cs` before it found the slot busy.
pub fn rseq_refused() -> Result<(), String> {
    const SENDS: u64 = 3_000;
    if online_cpus() < 2 {
        return Err("needs 2 CPUs".into());
    }
    let dev = open_device(ipi::DEVICE_PATH, "kmod_ipi")?;
    let fd = dev.as_raw_fd();
    pin_to(0)?;
    let ready = Barrier::new(2);
    let cpu = AtomicU32::new(u32::MAX);
    std::thread::scope(|s| {
        let receiver = s.spawn(|| -> Result<ipi::IpiStats, String> {
            let r = (|| {
                pin_to(1)?;
                let field = rseq_cs_field()?;
                cpu.store(register(fd, &TARGETS[1])?, Ordering::Release);
                // Busy from now on: every delivery that reaches the redirect is refused.
                SLOT_1.store(1, Ordering::SeqCst);
                Ok::<_, String>(field)
            })();
            ready.wait();
            let field = r?;
            // SAFETY: our own rseq_cs field.
            unsafe { rseq_busy_loop(field) };
            let st = stats(fd)?;
            SLOT_1.store(0, Ordering::SeqCst);
            ioctl(fd, ipi::IOC_UNREGISTER, 0).map_err(|e| format!("unregister: errno {e}"))?;
            Ok(st)
        });
        ready.wait();
        let sent = (|| {
            let cpu = cpu.load(Ordering::Acquire);
            if cpu == u32::MAX {
                return Ok(0); // the receiver failed; its error is reported below
            }
            for _ in 0..SENDS {
                send(fd, cpu).map_err(|e| format!("send: errno {e}"))?;
                // Pacing, not synchronisation: lets most IPIs be handled before the next send.
                let until = Instant::now() + Duration::from_micros(50);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
            Ok::<_, String>(SENDS)
        })();
        BUSY_STOP.store(true, Ordering::Release);
        let joined = receiver.join().map_err(|_| "receiver panicked".to_string()).and_then(|r| r);
        let sent = sent?;
        let st = joined?;
        let (lost, commits, aborts) = (
            LOST_CS.load(Ordering::Relaxed),
            BUSY_COMMITS.load(Ordering::Relaxed),
            BUSY_ABORTS.load(Ordering::Relaxed),
        );
        println!(
            "ipi-rseq-refused: {sent} sends; module: {} delivered, {} refused busy, {} not running, {} faults; sections: {commits} committed, {aborts} aborted, {lost} found rseq_cs cleared",
            st.delivered, st.missed_busy, st.missed_not_running, st.missed_fault
        );
        if lost != 0 {
            return Err(format!("{lost} critical sections lost their rseq_cs to a redirect that was then refused"));
        }
        if st.delivered != 0 {
            return Err(format!("{} deliveries redirected a receiver whose slot was busy", st.delivered));
        }
        if st.missed_busy == 0 {
            return Err(
                "no send reached the receiver while it ran: the check did not exercise a refused redirect".into()
            );
        }
        Ok(())
    })
}

// ---- ipi-send-burst ------------------------------------------------------------------------

static BURST_STOP: AtomicBool = AtomicBool::new(false);

/// `ipi-send-burst`: 3 receivers on CPUs 1-3 spin in user space; CPU 0 sends bursts of one IPI
/// to each, back to back. Every send must be accounted for exactly once in the receiver's
/// counters, and each delivery must have run the handler once.
pub fn send_burst() -> Result<(), String> {
    const ROUNDS: usize = 2000;
    if online_cpus() < 4 {
        return Err("needs 4 CPUs".into());
    }
    let dev = open_device(ipi::DEVICE_PATH, "kmod_ipi")?;
    let fd = dev.as_raw_fd();
    pin_to(0)?;
    let ready = Barrier::new(4);
    let sender_done = Barrier::new(4);
    let cpus: [AtomicU32; 3] = [const { AtomicU32::new(u32::MAX) }; 3];
    std::thread::scope(|s| {
        let receivers: Vec<_> = (0..3)
            .map(|i| {
                let (ready, sender_done, cpus) = (&ready, &sender_done, &cpus);
                s.spawn(move || -> Result<ipi::IpiStats, String> {
                    let t = &TARGETS[i];
                    let reg = pin_to(i + 1).and_then(|()| register(fd, t));
                    if let Ok(c) = reg {
                        cpus[i].store(c, Ordering::Release);
                    }
                    ready.wait();
                    while !BURST_STOP.load(Ordering::Acquire) {
                        std::hint::spin_loop();
                    }
                    sender_done.wait();
                    reg?;
                    // Every send has been counted once its IPI was handled and its delivery (if
                    // any) ran; the last ones may still be on their way: keep running until the
                    // counters add up (the delivery needs this thread running in user space).
                    let deadline = Instant::now() + Duration::from_secs(10);
                    loop {
                        let st = stats(fd)?;
                        let accounted = st.delivered + st.missed_not_running + st.missed_busy + st.missed_fault;
                        if accounted == st.sent && t.delivered.load(Ordering::Acquire) == st.delivered {
                            ioctl(fd, ipi::IOC_UNREGISTER, 0).map_err(|e| format!("unregister: errno {e}"))?;
                            return Ok(st);
                        }
                        if Instant::now() > deadline {
                            return Err(format!(
                                "receiver {i}: counters do not add up: {st:?}, handler ran {} times",
                                t.delivered.load(Ordering::Relaxed)
                            ));
                        }
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        ready.wait();
        let mut costs = Vec::with_capacity(ROUNDS * 3);
        let burst = (|| {
            let targets: Vec<u32> = cpus.iter().map(|c| c.load(Ordering::Acquire)).collect();
            if targets.contains(&u32::MAX) {
                return Ok(()); // a receiver failed to register; its error is reported below
            }
            for _ in 0..ROUNDS {
                for &cpu in &targets {
                    let t0 = Instant::now();
                    send(fd, cpu).map_err(|e| format!("send to CPU {cpu}: errno {e}"))?;
                    costs.push(t0.elapsed().as_nanos() as u64);
                }
            }
            Ok::<_, String>(())
        })();
        BURST_STOP.store(true, Ordering::Release);
        sender_done.wait();
        let mut all = Vec::new();
        for (i, r) in receivers.into_iter().enumerate() {
            all.push(r.join().map_err(|_| format!("receiver {i} panicked"))??);
        }
        burst?;
        let sent: u64 = all.iter().map(|s| s.sent).sum();
        let delivered: u64 = all.iter().map(|s| s.delivered).sum();
        let merged: u64 = all.iter().map(|s| s.missed_busy).sum();
        if sent != (ROUNDS * 3) as u64 {
            return Err(format!("the receivers counted {sent} sends, {} were made", ROUNDS * 3));
        }
        if delivered == 0 {
            return Err("no send was delivered".into());
        }
        costs.sort_unstable();
        let q = |p: f64| costs[((costs.len() - 1) as f64 * p) as usize];
        println!(
            "ipi-send-burst: {} sends to 3 receivers, {delivered} delivered, {merged} merged into an IPI in flight; ns per send: p50 {} p90 {} p99 {} max {}",
            costs.len(),
            q(0.5),
            q(0.9),
            q(0.99),
            costs[costs.len() - 1]
        );
        Ok(())
    })
}
