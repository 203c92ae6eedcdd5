//! Preemption: how the timer core interrupts a worker (a `Preempter` per delivery method), the
//! single asm entry every method lands in, and the per-worker "preemption disabled" counter that
//! defers (never drops) a preemption during allocation, locks and other TLS-dependent code.

pub(crate) mod ci;
pub(crate) mod decide;
pub(crate) mod entry;
pub(crate) mod hook;
pub(crate) mod ipi;
pub(crate) mod save_cost;
pub(crate) mod signal;
pub(crate) mod uintr;

pub use ipi::IpiPreempter;
pub use signal::SignalPreempter;
pub use uintr::UintrPreempter;

use crate::local;
use std::io;

/// How the timer core delivers a preemption to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PreemptMode {
    /// Never interrupt: long requests run to completion (a baseline for comparisons).
    #[cfg_attr(feature = "serde", serde(rename = "none"))]
    None,
    /// POSIX signal (tgkill) to the worker thread.
    #[cfg_attr(feature = "serde", serde(rename = "signal"))]
    Signal,
    /// The kmod_ipi kernel module (direct-APIC-ID IPI).
    #[cfg_attr(feature = "serde", serde(rename = "ipi"))]
    Ipi,
    /// Intel user interrupts (senduipi), set up by kmod_uintr.
    #[cfg_attr(feature = "serde", serde(rename = "uintr"))]
    Uintr,
    /// Compiler interrupts: the timer core sets the worker's request word, and the request parks
    /// itself at its next probe (`preempt_point`, inserted by `#[synergy::preemptible]`). Code
    /// without probes is never preempted.
    #[cfg_attr(feature = "serde", serde(rename = "ci"))]
    Ci,
    /// Compiler interrupts first; a worker that reached no probe within the grace period gets a
    /// signal.
    #[cfg_attr(feature = "serde", serde(rename = "ci+signal"))]
    CiSignal,
    /// Compiler interrupts, falling back to kmod_ipi.
    #[cfg_attr(feature = "serde", serde(rename = "ci+ipi"))]
    CiIpi,
    /// Compiler interrupts, falling back to a user interrupt.
    #[cfg_attr(feature = "serde", serde(rename = "ci+uintr"))]
    CiUintr,
}

impl PreemptMode {
    /// Every mode, in the order `--help` lists them.
    pub const ALL: [PreemptMode; 8] = [
        PreemptMode::None,
        PreemptMode::Signal,
        PreemptMode::Ipi,
        PreemptMode::Uintr,
        PreemptMode::Ci,
        PreemptMode::CiSignal,
        PreemptMode::CiIpi,
        PreemptMode::CiUintr,
    ];

    /// The mode spelled `name` (as `--preempt` takes it).
    pub fn named(name: &str) -> Option<PreemptMode> {
        PreemptMode::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The name `--preempt` uses for this mode.
    pub fn name(self) -> &'static str {
        match self {
            PreemptMode::None => "none",
            PreemptMode::Signal => "signal",
            PreemptMode::Ipi => "ipi",
            PreemptMode::Uintr => "uintr",
            PreemptMode::Ci => "ci",
            PreemptMode::CiSignal => "ci+signal",
            PreemptMode::CiIpi => "ci+ipi",
            PreemptMode::CiUintr => "ci+uintr",
        }
    }

    /// Whether the timer core asks through the compiler-interrupt request word first.
    pub fn compiler_interrupts(self) -> bool {
        matches!(self, PreemptMode::Ci | PreemptMode::CiSignal | PreemptMode::CiIpi | PreemptMode::CiUintr)
    }

    /// The interrupt mechanism: the mode itself, the fallback of a hybrid, `None` for `ci` alone.
    pub fn interrupt(self) -> PreemptMode {
        match self {
            PreemptMode::Ci => PreemptMode::None,
            PreemptMode::CiSignal => PreemptMode::Signal,
            PreemptMode::CiIpi => PreemptMode::Ipi,
            PreemptMode::CiUintr => PreemptMode::Uintr,
            m => m,
        }
    }
}

/// The worker a preemption is aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Kernel thread id.
    pub tid: i32,
    /// CPU it is pinned to, or -1.
    pub cpu: i32,
}

/// One delivery mechanism. `preempt` runs on the timer core; `register_worker` and
/// `unregister_worker` on each worker thread (after its GS base is set), before it takes requests
/// and when it stops.
pub trait Preempter: Send + Sync {
    /// The mode's name, for reports.
    fn name(&self) -> &'static str;
    /// Called on each worker's own thread before it serves (`cpu`: where it is pinned): sets up what delivery to it needs (kmod_ipi or kmod_uintr registration).
    fn register_worker(&self, _cpu: Option<usize>) -> io::Result<()> {
        Ok(())
    }
    /// Called on each worker's own thread as it exits: undoes `register_worker`.
    fn unregister_worker(&self) {}
    /// Interrupts the worker `target`.
    fn preempt(&self, target: Target) -> io::Result<()>;
}

/// The `none` mode: the timer core still renews timers but never interrupts.
pub struct NoPreempter;

impl Preempter for NoPreempter {
    fn name(&self) -> &'static str {
        "none"
    }
    fn preempt(&self, _target: Target) -> io::Result<()> {
        Ok(())
    }
}

/// Builds the interrupt preempter for `mode` (for a `ci` mode, its fallback's), or explains why
/// it cannot be used here.
pub fn preempter_for(mode: PreemptMode) -> io::Result<Box<dyn Preempter>> {
    match mode.interrupt() {
        PreemptMode::Signal => Ok(Box::new(signal::SignalPreempter::install()?)),
        PreemptMode::Ipi => Ok(Box::new(ipi::IpiPreempter::open()?)),
        PreemptMode::Uintr => Ok(Box::new(uintr::UintrPreempter::open()?)),
        // `none`, and `ci` without a fallback: the timer core never interrupts.
        _ => Ok(Box::new(NoPreempter)),
    }
}

/// `ioctl(fd, cmd, arg)` on a kernel module's device, failing with errno.
pub(crate) fn ioctl(fd: i32, cmd: u32, arg: usize) -> io::Result<()> {
    // SAFETY: plain ioctl; `arg` points at a live value of the size encoded in `cmd` (or is unused).
    if unsafe { libc::ioctl(fd, cmd as _, arg) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens the device `path` of kernel module `module` for `--preempt=<mode>`, saying what to load
/// when it is missing. Close-on-exec (issue 40, item 1): a program the application execs must not
/// inherit the registrations (std opens every file with `O_CLOEXEC`; the flag is named here so
/// that no later change of the open call loses it, and `the_device_is_opened_close_on_exec`
/// checks it).
pub(crate) fn open_module_device(mode: &str, module: &str, path: &str) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_CLOEXEC).open(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "--preempt={mode} needs the {module} kernel module: cannot open {path}: {e} (load it with `insmod {module}.ko`; the device is root-only)"
            ),
        )
    })
}

/// Fails unless the module speaks the ABI version this runtime was built with.
pub(crate) fn check_module_abi(module: &str, got: u32, want: u32) -> io::Result<()> {
    if got != want {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{module} speaks ABI {got}, this runtime needs {want}: rebuild/reload the module"),
        ));
    }
    Ok(())
}

/// Disables preemption of the current green thread until the matching `enable`. Nests.
/// A no-op off worker threads.
#[inline(always)]
pub fn disable() {
    if local::on_worker() {
        local::disable_raw();
    }
}

/// Re-enables preemption; if the timer core asked for a preemption meanwhile, it happens now.
/// The fast path is one `sub` on the preemption word and a branch on its zero flag
/// (`local::DEPTH_MASK` documents the encoding).
#[inline(always)]
pub fn enable() {
    if local::on_worker() && local::enable_raw_deferred_due() {
        decide::take_deferred();
    }
}

/// Whether an interrupt reached this worker while preemption was disabled and waits to be taken
/// at the matching [`enable`] (false off a worker). Lets a test, or code that holds preemption
/// off for long, see that the timer core asked.
pub fn preemption_pending() -> bool {
    local::on_worker() && local::current().pending()
}

/// Preemption is disabled while this guard lives.
///
/// The guard stands for one level of *this OS thread's* disabled-preemption depth, so it is
/// `!Send`: dropped on another thread it would re-enable preemption there (a depth underflow on
/// that worker) and leave it disabled here for good (issue 39, item 3). Sharing `&NoPreempt` is
/// harmless (it has no methods), so it is `Sync`.
///
/// ```compile_fail
/// fn assert_send<T: Send>(_: T) {}
/// assert_send(synergy::preempt::NoPreempt::new());
/// ```
pub struct NoPreempt(std::marker::PhantomData<*const ()>);

// SAFETY: a shared reference to the guard gives access to nothing (see the type's comment).
unsafe impl Sync for NoPreempt {}

impl NoPreempt {
    #[inline(always)]
    /// Disables preemption on this OS thread until the guard drops.
    pub fn new() -> NoPreempt {
        disable();
        NoPreempt(std::marker::PhantomData)
    }
}

impl Default for NoPreempt {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoPreempt {
    #[inline(always)]
    fn drop(&mut self) {
        enable();
    }
}

/// Runs `f` with preemption disabled (for TLS-dependent code inside a long request).
#[inline]
pub fn without_preemption<R>(f: impl FnOnce() -> R) -> R {
    let _g = NoPreempt::new();
    f()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_device_is_opened_close_on_exec() {
        use std::os::fd::AsRawFd;
        let f = super::open_module_device("test", "none", "/dev/null").expect("/dev/null opens");
        // SAFETY: F_GETFD on a live descriptor we own.
        let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFD) };
        assert!(flags >= 0 && flags & libc::FD_CLOEXEC != 0, "FD_CLOEXEC not set: {flags:#x}");
    }
}
