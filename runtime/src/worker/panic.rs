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
//! * inside the two updates themselves: `increase` bumps the global count, then loads the TLS base
//!   once and bumps the local count through that register; `catch_unwind`'s cleanup does the
//!   reverse. In between, `panicking()` answers from the wrong half, so the preemption path also
//!   refuses when the interrupted rip lies in one of those two functions (`std_panic_code`,
//!   located by symbol when the hook is installed). Without this an interrupt a few instructions
//!   into `increase` migrated the panic half-done: the soak test under `--preempt=ipi` in the
//!   guest aborted this way ("thread panicked while processing panic"), 2026-11-26.
//!
//! A handler that catches its own panic with `std::panic::catch_unwind` keeps preemption
//! disabled until the request ends: it runs unpreempted, never unsafely.

use super::std_panic_code;
use crate::local;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static INSTALL: Once = Once::new();
static WARNED: AtomicBool = AtomicBool::new(false);

/// Wraps the process's panic hook (once; called when a runtime starts) so that a panic on a worker
/// disables preemption before the hook in force (the default one prints, allocates and locks
/// stderr) runs, and locates std's panic-count updates for `refuse_while_panicking` (logging a
/// warning if it cannot). Hooks set later with `std::panic::set_hook` replace this one: set them
/// before starting a runtime.
pub fn install_hook() {
    INSTALL.call_once(|| {
        if let Err(why) = std_panic_code::install() {
            log::warn!(
                "cannot locate std's panic-count code ({why}): a handler panic inside a \
                 preemptible request can then abort the process (\"thread panicked while processing \
                 panic\"); keep the executable's symbol table (no `strip`) and std out of LTO"
            );
        }
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

/// True if the green thread interrupted at `interrupted_rip` (0: at a point the runtime chose) is
/// inside std's panic path, where it must not be parked (see the module docs). Only reads;
/// async-signal-safe.
#[inline]
pub fn refuse_while_panicking(interrupted_rip: u64) -> bool {
    std::thread::panicking() || std_panic_code::contains(interrupted_rip)
}
