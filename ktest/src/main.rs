//! `synergy-ktest <case>`: one kernel-module check, run inside the QEMU guest by the harness
//! (scripts/kernel/qemu-test.sh). Prints what it checked; exits non-zero on the first failure.
//! On the host it refuses to run unless the module's device exists, saying so.

mod exec_case;
mod fuzz;
mod hotplug;
mod ipi;
mod ipi_deliver;
mod ipi_exec;
mod ipi_lifetime;
mod pidfd;
mod uintr;
mod uintr_exec;
mod uintr_fake;

use std::process::ExitCode;

type Check = fn() -> Result<(), String>;

const CASES: &[(&str, &str, Check)] = &[
    ("ipi-version", "kmod_ipi: open, VERSION ioctl round trip, bad pointer, unknown ioctl", ipi::version),
    ("ipi-bad-input", "kmod_ipi: every bad argument gets its errno; double/taken registration; release frees", ipi::bad_input),
    ("ipi-foreign", "kmod_ipi: no sending to another process's receiver; kill -9 of a registered process frees its CPU", ipi::foreign_and_killed),
    ("ipi-pidns", "kmod_ipi: processes in different pid namespaces with equal pids cannot send to each other", ipi::pid_namespaces),
    ("ipi-unregister-storm", "kmod_ipi: every thread of a process unregisters at once, 10,000 rounds", ipi::unregister_storm),
    ("ipi-close-during-delivery", "kmod_ipi: the file closed with IPIs in flight and deliveries queued on running receivers, 300 rounds", ipi_lifetime::close_during_delivery),
    ("ipi-rseq", "kmod_ipi: a delivery into a restartable sequence's critical section resumes at its abort handler", ipi_deliver::rseq),
    ("ipi-rseq-refused", "kmod_ipi: a redirect refused for a busy slot leaves the thread's rseq critical section its abort", ipi_deliver::rseq_refused),
    ("ipi-exec", "kmod_ipi: a registration inherited across execve cannot redirect the new program (ESTALE, dropped)", ipi_exec::exec_inherited),
    ("ipi-send-burst", "kmod_ipi: bursts of sends to 3 spinning receivers, every send accounted for once; cost per send", ipi_deliver::send_burst),
    ("cpu-hotplug", "kmod_uintr and kmod_ipi: a CPU with a registered receiver offline and online 3 times; kmod_uintr prepares each CPU that comes online", hotplug::cpu_hotplug),
    ("uintr-refusal", "kmod_uintr: UINTR support reported as CPUID says; every bad argument gets its errno; valid registrations refused without UINTR, accepted with it", uintr::refusal),
    ("uintr-fake", "kmod_uintr on its fake backend (a test build loaded with fake_hardware=1): registration, context switches, migration, sender, unregistration, thread and process exit; MSR accesses per switch", uintr_fake::fake),
    ("uintr-exec", "kmod_uintr on its fake backend: a receiver inherited across execve answers the new program ESTALE (as a sender's target and as its own state), after a context switch too", uintr_exec::exec_inherited),
    ("uintr-deliver", "kmod_uintr on a UINTR CPU: self and cross-thread user interrupts, posted while asleep, across migrations, registers intact, clean-up", uintr::deliver),
];

/// Cases that take arguments: name, what it checks, the check.
type CheckWithArgs = fn(&[String]) -> Result<(), String>;
const CASES_WITH_ARGS: &[(&str, &str, CheckWithArgs)] = &[
    ("ipi-exec-helper", "the program ipi-exec execs: ipi-exec-helper <fd> <cpu>", ipi_exec::exec_helper),
    ("uintr-exec-helper", "the program uintr-exec execs: uintr-exec-helper <fd> <receiver id>", uintr_exec::exec_helper),
    ("fuzz", "random ioctls against one module: fuzz <ipi|uintr> <count> [seed]", fuzz::run),
    ("fuzz-exec", "what a fuzz child execs into (internal): fuzz-exec <ipi|uintr> <dev fd> <counters fd> <cpu> <receiver> <seed> <exec time>", fuzz::exec_child),
    ("fuzz-report", "the ioctl x outcome table the fuzz runs added to SYNERGY_FUZZ_TABLE: fuzz-report <ipi|uintr> <file>", fuzz::report),
    (
        "ipi-rmmod-race",
        "kmod_ipi removed and reloaded right after killing a process it was delivering to: ipi-rmmod-race <kmod_ipi.ko> [rounds]",
        ipi_lifetime::rmmod_race,
    ),
];

/// Prints the outcome the harness greps for, and turns it into the exit status.
fn report(name: &str, what: &str, outcome: Result<(), String>) -> ExitCode {
    match outcome {
        Ok(()) => {
            println!("ktest {name}: ok ({what})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("ktest {name}: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let arg = std::env::args().nth(1).unwrap_or_default();
    if let Some((name, what, check)) = CASES_WITH_ARGS.iter().find(|(n, _, _)| *n == arg) {
        let rest: Vec<String> = std::env::args().skip(2).collect();
        return report(name, what, check(&rest));
    }
    let Some((name, what, check)) = CASES.iter().find(|(n, _, _)| *n == arg) else {
        eprintln!("usage: synergy-ktest <case> [arguments]; cases:");
        for (n, w, _) in CASES {
            eprintln!("  {n:<14} {w}");
        }
        for (n, w, _) in CASES_WITH_ARGS {
            eprintln!("  {n:<14} {w}");
        }
        return ExitCode::from(2);
    };
    report(name, what, check())
}

/// `ioctl(fd, cmd, arg)` returning errno on failure.
pub fn ioctl(fd: i32, cmd: u32, arg: usize) -> Result<i64, i32> {
    // SAFETY: plain syscall; the kernel validates `arg` (bad pointers are part of what we test).
    let r = unsafe { libc::ioctl(fd, cmd as _, arg) };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r as i64)
    }
}

/// Ok if `got` failed with exactly `errno`.
pub fn expect_err(what: &str, got: Result<i64, i32>, errno: i32) -> Result<(), String> {
    match got {
        Err(e) if e == errno => Ok(()),
        other => Err(format!("{what}: expected errno {errno}, got {other:?}")),
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!("cannot pin to CPU {cpu}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Number of online CPUs (not the caller's affinity, which `pin_to` narrows).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize
}

/// Opens `path` read-write, or explains what is missing.
pub fn open_device(path: &str, module: &str) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {path}: {e} (is {module}.ko loaded? `insmod {module}.ko`)"))
}
