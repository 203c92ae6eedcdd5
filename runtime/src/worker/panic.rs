//! Handler panics inside preemptible requests.
//!
//! The standard library keeps each OS thread's panic state in thread-local storage: a panic
//! count and an "inside the panic hook" flag, set by `panic_count::increase` before the hook
//! runs, cleared after it, and the count decreased again by `catch_unwind` when it catches. A
//! green thread that migrated to another worker anywhere in between would leave the first OS
//! thread "inside the hook" forever (its next panic aborts the process: "thread panicked while
//! processing panic") and the second with a count that wrapped below zero (so
//! `std::thread::panicking()` lies there and std's mutexes poison spuriously).
//!
//! So the whole panic path runs pinned to one worker:
//! * from the thread-local update in `increase` to the hook: `std::thread::panicking()` is true on
//!   that OS thread, and the preemption path (`refuse_while_panicking`) lets the request run on
//!   instead of parking it (the timer core retries one quantum later);
//! * from the hook to the end of `catch_unwind` in `serve`: the runtime's panic hook disables
//!   preemption (counted in the worker's `panic_holds`) and `serve` releases it once the request is
//!   over, after `catch_unwind` has decreased the count.
//!
//! * inside the two updates themselves, where `panicking()` answers false: `increase` bumps the
//!   global count first, so the preemption path also refuses while std's process-wide count is
//!   non-zero (wherever `increase` was inlined: `resume_unwind`, which runs no hook, has it
//!   inlined in Rust 1.95's std); `decrease` lowers the global count first, so its window is
//!   covered by the interrupted rip lying in `decrease` or the `catch_unwind` cleanup it is
//!   inlined into (`std_panic_code` says why those are the only places). Without the rip check an
//!   interrupt a few instructions into `increase` migrated the panic half-done: the soak test
//!   under `--preempt=ipi` in the guest aborted this way ("thread panicked while processing
//!   panic"), 2026-11-26.
//!
//! **Failing closed.** Where std's count and code cannot be located (a stripped executable, std
//! LTO'd into the program), the guard above is incomplete, and the runtime says so once at start
//! and *pins* preempted requests: a preempted green thread resumes only on the worker that
//! preempted it (`pinned`), so a thread-local base loaded before the interrupt is still this OS
//! thread's when the code goes on, and both counts are updated on the thread that holds the
//! panic. Other green threads that run on that worker in the meantime see a consistent count
//! (a panicking thread is never parked while `panicking()` is true, and from the hook on it holds
//! preemption). `SYNERGY_PIN_PREEMPTED=1` forces this mode (tests, or an abundance of caution).
//!
//! A handler that catches its own panic with `std::panic::catch_unwind` keeps preemption
//! disabled until the request ends: it runs unpreempted, never unsafely.

use super::std_panic_code;
use crate::local;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static INSTALL: Once = Once::new();
static WARNED: AtomicBool = AtomicBool::new(false);
/// Preempted requests resume only on the worker that preempted them (the guard failed closed).
static PINNED: AtomicBool = AtomicBool::new(false);

/// How the runtime keeps a panic from migrating between OS threads (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PanicGuard {
    /// Not decided yet: no runtime has started in this process.
    NotInstalled,
    /// std's panic count and count-updating code were located: preempted requests may resume on
    /// any worker.
    Complete,
    /// They could not be (the reason), or `SYNERGY_PIN_PREEMPTED=1` asked for it: preempted
    /// requests resume only on the worker that preempted them.
    Pinned(String),
}

static GUARD: std::sync::OnceLock<PanicGuard> = std::sync::OnceLock::new();

/// The panic guard in force (decided when the first runtime starts).
pub fn guard() -> PanicGuard {
    GUARD.get().cloned().unwrap_or(PanicGuard::NotInstalled)
}

/// True if preempted requests must resume on the worker that preempted them.
#[inline]
pub fn pinned() -> bool {
    PINNED.load(Ordering::Relaxed)
}

/// Wraps the process's panic hook (once; called when a runtime starts) so that a panic on a worker
/// disables preemption before the hook in force (the default one prints, allocates and locks
/// stderr) runs, and locates std's panic-count updates for `refuse_while_panicking` (logging a
/// warning if it cannot). Hooks set later with `std::panic::set_hook` replace this one: set them
/// before starting a runtime.
pub fn install_hook() {
    INSTALL.call_once(|| {
        let forced = std::env::var_os("SYNERGY_PIN_PREEMPTED").is_some_and(|v| v == "1");
        let guard = match std_panic_code::install() {
            Ok(_) if !forced => PanicGuard::Complete,
            Ok(_) => PanicGuard::Pinned("SYNERGY_PIN_PREEMPTED=1".into()),
            Err(why) => {
                log::warn!(
                    "cannot locate std's panic count ({why}): preempted requests will resume only \
                     on the worker that preempted them (no migration, so a panic cannot straddle \
                     two OS threads); keep the executable's symbol table (no `strip`) and std out \
                     of LTO to let them migrate"
                );
                PanicGuard::Pinned(why)
            }
        };
        PINNED.store(matches!(guard, PanicGuard::Pinned(_)), Ordering::Relaxed);
        let _ = GUARD.set(guard);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            hold_preemption();
            previous(info);
        }));
    });
}

/// On a worker: disables preemption until `release_holds`.
fn hold_preemption() {
    if !local::on_worker() {
        return;
    }
    // Disable first: from here on this code cannot migrate, so `current()` stays this worker's.
    local::disable_raw();
    local::current().panic_holds.fetch_add(1, Ordering::Relaxed);
}

/// Called by `serve` after the handler's `catch_unwind` returned and the request's timer was
/// disarmed: gives back the preemption disables the hook took. `panicked` says whether the
/// handler's panic reached `serve`; if it did and no hold was taken, a later `set_hook` replaced
/// the runtime's hook, which is reported once.
pub fn release_holds(panicked: bool) {
    // Preemption was disabled by the holds (if any), so this is still the worker the panic ran on.
    let holds = local::current().panic_holds.swap(0, Ordering::Relaxed);
    if panicked && holds == 0 && !WARNED.swap(true, Ordering::Relaxed) {
        crate::preempt::without_preemption(|| {
            log::warn!(
                "a handler panicked without the runtime's panic hook (replaced by a later \
                 std::panic::set_hook?): a panic inside a preemptible request can then abort the \
                 process; set panic hooks before starting the runtime"
            )
        });
    }
    for _ in 0..holds {
        crate::preempt::enable();
    }
}

/// True if the green thread interrupted at `interrupted_rip` (0: at a point the runtime chose) may
/// be inside std's panic path, where it must not be parked (see the module docs): this thread is
/// panicking, or some thread is between std's two count updates, or the rip is in one of them.
/// Only reads; async-signal-safe.
#[inline]
pub fn refuse_while_panicking(interrupted_rip: u64) -> bool {
    std::thread::panicking()
        || std_panic_code::global_count().is_some_and(|n| n != 0)
        || std_panic_code::contains(interrupted_rip)
}
