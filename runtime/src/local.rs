//! The per-worker preemption state, reached through the GS segment base: the lowest layer of the
//! runtime, below `preempt` (which delivers, defers and decides) and `worker` (which embeds it).
//!
//! Why not a `thread_local!`: a green thread can be preempted on one worker and resumed on
//! another, so any TLS address the compiler computed (and may have kept in a register) before the
//! preemption would point into the *old* worker's TLS. Each worker instead sets its GS base to its
//! state (arch_prctl(ARCH_SET_GS); glibc leaves GS unused on x86-64) and every access is a single
//! `gs:`-relative instruction, which is atomic with respect to preemption and can never be cached
//! by the compiler (`asm!` without `pure`). The preemption counter in particular is incremented
//! by ONE instruction, so an interrupt can never split the read-modify-write and migrate the
//! thread in between.
//!
//! A reference obtained from [`current`] names the worker the code runs on *now*; after any point
//! where the green thread may have migrated it names a worker the code may no longer run on. So
//! code that reads the state and then acts on it disables preemption first ([`disable_then_current`]).

use crate::stats::WorkerStats;
use core::arch::asm;
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

thread_local! {
    /// True on worker threads. A stale TLS address after migration still reads `true`, because
    /// green threads only ever migrate between workers.
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
    /// Debug builds: how many of the runtime's own OS locks this OS thread holds now.
    static OS_LOCKS_HELD: Cell<u32> = const { Cell::new(0) };
}

/// Marks one of the runtime's own OS locks (a `std::sync::Mutex`) as held by this OS thread for
/// as long as it lives; create it before locking and drop it after unlocking. Debug builds count
/// them, and a switch away from a green thread ([`os_locks_held`] in `park_current`) asserts that
/// none is held: parking with an OS lock held would hand the lock's release to another OS thread
/// and deadlock the next worker that takes it on this one. Not `Send`, so it cannot be released
/// from another thread either.
pub struct OsLockHeld(std::marker::PhantomData<*const ()>);

impl OsLockHeld {
    #[inline(always)]
    pub fn new() -> OsLockHeld {
        #[cfg(debug_assertions)]
        OS_LOCKS_HELD.with(|n| n.set(n.get() + 1));
        OsLockHeld(std::marker::PhantomData)
    }
}

impl Default for OsLockHeld {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for OsLockHeld {
    #[inline(always)]
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        OS_LOCKS_HELD.with(|n| n.set(n.get() - 1));
    }
}

/// How many [`OsLockHeld`] markers this OS thread holds (always 0 in release builds, which do not
/// count).
pub fn os_locks_held() -> u32 {
    OS_LOCKS_HELD.with(|n| n.get())
}

/// Identifies the arming of a worker's timer that an interrupt is meant for (issue 15, item 6).
/// The worker increments `armed` each time it arms its timer (a long request starts, or resumes
/// after a preemption); the timer core copies the value it decided on into `target` before it
/// sends. A delivery acts only while the two are equal: an interrupt delayed past the end of the
/// request it was sent for (a signal queued behind a descheduled worker, an IPI's task_work run
/// at a later return to user mode) finds a newer `armed` and is ignored instead of preempting
/// whatever runs then. In the worker's shared half (the timer core outlives the worker thread),
/// reached from `PreemptState::gens`.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct ArmGenerations {
    pub armed: AtomicU64,
    pub target: AtomicU64,
    /// The current arming is a cooperative one (`feedback_start_cooperative`): the timer core
    /// answers its expiry with a compiler-interrupt request only, never an interrupt, and the
    /// preemption word stays unarmed, so an interrupt still on its way is ignored. Written by
    /// the worker before it publishes the arming's deadline (Release), read by the timer core
    /// after the deadline (Acquire).
    pub probes_only: std::sync::atomic::AtomicBool,
    /// The compiler-interrupt request word (`--preempt=ci` and the hybrids), on a cache line of
    /// its own that the worker's probes read and only a request or its answer writes: 0, or the
    /// arming the timer core asks to end. The worker swaps it to 0 when a probe sees it.
    pub ci_request: CiRequestWord,
}

/// A compiler-interrupt request word alone on its cache line.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct CiRequestWord(pub AtomicU64);

impl ArmGenerations {
    /// True if an interrupt arriving now was sent for the current arming.
    pub fn current(&self) -> bool {
        self.armed.load(Ordering::Acquire) == self.target.load(Ordering::Acquire)
    }
}

/// The preemption word (gs:[8]): the disable depth, "armed" and "pending" in one `u32`, so that
/// `preempt::enable` is one decrement and one test of the zero flag (Caladan keeps count and
/// pending in one word the same way). Encoding:
///
/// | bits   | meaning                                                                    |
/// |--------|----------------------------------------------------------------------------|
/// | 0..=29 | `preempt::disable` depth ([`DEPTH_MASK`])                                  |
/// | 30     | [`NOT_ARMED`]: no long request may be interrupted now                      |
/// | 31     | [`NOT_PENDING`]: no interrupt was deferred while the depth was nonzero     |
///
/// Both flags are stored inverted, so the word is 0 exactly when a deferred preemption is due:
/// depth 0, armed, pending. Disabling adds 1; enabling subtracts 1 and takes the deferred
/// preemption if the result is 0. Disarming sets both flags (a deferral never outlives its
/// arming); arming sets `NOT_PENDING` first, then clears `NOT_ARMED`.
///
/// Only the worker's own OS thread writes the word (its code, and the interrupt handlers and
/// stubs that run on it), always with single read-modify-write instructions (`add`, `sub`, `or`,
/// `and`, `bts` on the word, never `lock`ed): an interrupt arrives between instructions, never
/// inside one, so no update is lost. The arm generation (`ArmGenerations`) stays outside it: the
/// timer core writes its half from another thread.
pub const DEPTH_MASK: u32 = (1 << 30) - 1;
const _: () = assert!(NOT_ARMED == 1 << 30, "`disarm` tests bit 30 with bts");
/// See [`DEPTH_MASK`].
pub const NOT_ARMED: u32 = 1 << 30;
/// See [`DEPTH_MASK`].
pub const NOT_PENDING: u32 = 1 << 31;
/// The word of a worker with nothing armed: depth 0, not armed, nothing pending.
pub const IDLE_WORD: u32 = NOT_ARMED | NOT_PENDING;

/// What every preemption delivery path reads and writes on the interrupted worker. The asm stubs
/// use the fields at the `OFF_*` offsets directly.
#[repr(C)]
pub struct PreemptState {
    /// gs:[0] — the address of this struct (written by `install`).
    self_ptr: AtomicU64,
    /// gs:[8] — the preemption word: disable depth, armed and pending (see [`DEPTH_MASK`]).
    word: AtomicU32,
    /// gs:[16] — interrupted rip, handed from an interrupt handler to `preempt::entry`'s stub.
    pub interrupted_rip: AtomicU64,
    /// gs:[24] — lowest stack pointer at which the running green thread can still take the
    /// preemption frame (stack bottom + frame + reserve); checked by the asm stubs.
    pub min_preempt_rsp: AtomicU64,
    /// gs:[32] — this worker's arm generations (`ArmGenerations`; lives as long as the runtime).
    gens: *const ArmGenerations,
    /// gs:[40] — the running green thread's XSAVE area (64-byte aligned, allocated with the
    /// thread), where the preemption entry saves the extended state: off the green stack, so a
    /// request deep in its stack can still be preempted (issue 39, item 8). 0 when none runs.
    pub save_area: AtomicU64,
    /// gs:[48] — the top of this worker's preemption stack (16-byte aligned), where the entry
    /// runs the scheduler's handler: the park path (a fresh green thread, the queues) needs KiB
    /// of stack that a deep request's green stack may not have. 0 before the worker set it.
    pub preempt_stack: AtomicU64,
    /// Usable stack range of the running green thread, for the interrupt path's sanity check.
    pub stack_lo: AtomicU64,
    pub stack_hi: AtomicU64,
    /// Preemption disables taken by the runtime's panic hook for the panic now unwinding on this
    /// worker, given back when its request ends (`worker::panic`).
    pub panic_holds: AtomicU32,
    /// This worker's counters (they live as long as the runtime).
    stats: *const WorkerStats,
    /// The request the running green thread serves (id and kind), for the stack-overflow report
    /// (`worker::overflow`), which runs in a fault handler and may read only atomics.
    pub request_id: AtomicU64,
    pub request_kind: AtomicU32,
}

pub const OFF_WORD: usize = 8;
pub const OFF_INTERRUPTED_RIP: usize = 16;
pub const OFF_MIN_PREEMPT_RSP: usize = 24;
pub const OFF_GENS: usize = 32;
pub const OFF_SAVE_AREA: usize = 40;
pub const OFF_PREEMPT_STACK: usize = 48;
const _: () = assert!(core::mem::offset_of!(PreemptState, save_area) == OFF_SAVE_AREA);
const _: () = assert!(core::mem::offset_of!(PreemptState, preempt_stack) == OFF_PREEMPT_STACK);
const _: () = assert!(core::mem::offset_of!(PreemptState, word) == OFF_WORD);
const _: () = assert!(core::mem::offset_of!(PreemptState, interrupted_rip) == OFF_INTERRUPTED_RIP);
const _: () = assert!(core::mem::offset_of!(PreemptState, min_preempt_rsp) == OFF_MIN_PREEMPT_RSP);
const _: () = assert!(core::mem::offset_of!(PreemptState, gens) == OFF_GENS);
const _: () = assert!(core::mem::offset_of!(ArmGenerations, armed) == 0);
const _: () = assert!(core::mem::offset_of!(ArmGenerations, target) == 8);
/// Offset of the request word in `ArmGenerations` (read by `ci_requested` through gs:[32]).
pub const OFF_CI_REQUEST: usize = 64;
const _: () = assert!(core::mem::offset_of!(ArmGenerations, ci_request) == OFF_CI_REQUEST);

impl PreemptState {
    /// A worker's state, counting into `stats`, with its arm generations in `gens`; both must
    /// outlive it.
    pub fn new(stats: *const WorkerStats, gens: *const ArmGenerations) -> PreemptState {
        PreemptState {
            self_ptr: AtomicU64::new(0),
            word: AtomicU32::new(IDLE_WORD),
            interrupted_rip: AtomicU64::new(0),
            min_preempt_rsp: AtomicU64::new(u64::MAX),
            gens,
            save_area: AtomicU64::new(0),
            preempt_stack: AtomicU64::new(0),
            stack_lo: AtomicU64::new(0),
            stack_hi: AtomicU64::new(0),
            request_id: AtomicU64::new(0),
            request_kind: AtomicU32::new(0),
            panic_holds: AtomicU32::new(0),
            stats,
        }
    }

    /// The preemption word as it is now (see [`DEPTH_MASK`]).
    #[inline]
    pub fn word(&self) -> u32 {
        self.word.load(Ordering::Relaxed)
    }

    /// True while a long request may be interrupted (armed).
    #[inline]
    pub fn armed(&self) -> bool {
        self.word() & NOT_ARMED == 0
    }

    /// True while an interrupt deferred by a nonzero depth waits to be taken.
    #[inline]
    pub fn pending(&self) -> bool {
        self.word() & NOT_PENDING == 0
    }

    /// `preempt::disable` depth.
    #[inline]
    pub fn depth(&self) -> u32 {
        self.word() & DEPTH_MASK
    }

    /// Arms: the running request may be interrupted from now on; a deferral left from an earlier
    /// arming is dropped. Only on the worker's own thread (see [`DEPTH_MASK`]).
    #[inline]
    pub fn arm(&self) {
        let w = self.word.as_ptr();
        // SAFETY: `w` is this state's word. Two single-instruction read-modify-writes, not
        // `lock`ed: only this thread and the interrupt handlers running on it write the word, and
        // an interrupt falls between instructions, never inside one. A `lock`ed operation would
        // wait for the cache line instead of retiring into the store buffer. Between the two the
        // word is disarmed with nothing pending, a consistent state.
        unsafe {
            asm!(
                "or dword ptr [{w}], {np}",
                "and dword ptr [{w}], {clear_armed}",
                w = in(reg) w,
                np = const NOT_PENDING,
                clear_armed = const !NOT_ARMED,
                options(nostack)
            )
        };
    }

    /// Disarms (and drops any deferral); returns whether it was armed. Only on the worker's own
    /// thread, with preemption disabled or from an interrupt handler (so no redirect can come in
    /// between and re-arm it).
    #[inline]
    pub fn disarm(&self) -> bool {
        let w = self.word.as_ptr();
        let was_disarmed: u8;
        // SAFETY: as in `arm`. `bts` sets NOT_ARMED and leaves its old value in CF; then the
        // pending flag is dropped (an interrupt in between finds the word disarmed and ignores
        // itself).
        unsafe {
            asm!(
                "bts dword ptr [{w}], 30",
                "setc {d}",
                "or dword ptr [{w}], {np}",
                w = in(reg) w,
                d = out(reg_byte) was_disarmed,
                np = const NOT_PENDING,
                options(nostack)
            )
        };
        was_disarmed == 0
    }

    /// Records an interrupt deferred because the depth is nonzero. Only on the worker's own
    /// thread (its interrupt handler), while armed.
    #[inline]
    pub fn defer(&self) {
        let w = self.word.as_ptr();
        // SAFETY: as in `arm`: one read-modify-write instruction on this state's word.
        unsafe { asm!("and dword ptr [{w}], {clear}", w = in(reg) w, clear = const !NOT_PENDING, options(nostack)) };
    }

    /// Adds `d` to the depth without the gs-relative path (unit tests of the decision logic).
    #[cfg(test)]
    pub fn word_add_depth_for_tests(&self, d: i32) {
        self.word.fetch_add(d as u32, Ordering::Relaxed);
    }

    /// The worker's arm generations.
    pub fn gens(&self) -> &ArmGenerations {
        // SAFETY: `new`'s contract: they outlive this state.
        unsafe { &*self.gens }
    }

    /// The worker's counters.
    pub fn stats(&self) -> &WorkerStats {
        // SAFETY: `new`'s contract: the counters outlive this state.
        unsafe { &*self.stats }
    }
}

/// Installs `state` as the calling thread's worker state.
///
/// # Safety
/// `state` must stay at its address until `uninstall` is called on this thread, and code that
/// reads more than a `PreemptState` through gs:[0] (the worker's `WorkerLocal`) relies on
/// `state` being the first field of that larger `repr(C)` struct.
pub unsafe fn install(state: &PreemptState) -> std::io::Result<()> {
    const ARCH_SET_GS: libc::c_long = 0x1001;
    let addr = state as *const PreemptState as u64;
    state.self_ptr.store(addr, Ordering::Relaxed);
    // SAFETY: sets this thread's GS base to a live PreemptState; nothing else in the process uses GS.
    let r = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SET_GS, addr) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    ON_WORKER.with(|w| w.set(true));
    Ok(())
}

/// Detaches the calling thread from its worker state.
pub fn uninstall() {
    const ARCH_SET_GS: libc::c_long = 0x1001;
    ON_WORKER.with(|w| w.set(false));
    // SAFETY: resets this thread's GS base to 0, its initial value.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SET_GS, 0usize) };
}

#[inline(always)]
pub fn on_worker() -> bool {
    ON_WORKER.with(|w| w.get())
}

/// The address gs:[0] holds: the current worker's state. Must only be called where `on_worker()`.
#[inline(always)]
pub fn current_ptr() -> *const PreemptState {
    let p: *const PreemptState;
    // SAFETY: on a worker thread gs:[0] holds the state's address (see `install`). Not `pure`:
    // must be re-read after every possible switch.
    unsafe { asm!("mov {}, qword ptr gs:[0]", out(reg) p, options(nostack, readonly, preserves_flags)) };
    p
}

/// The current worker's state. Must only be called where `on_worker()` is true; see the module
/// docs for how long the answer stays true.
#[inline(always)]
pub fn current() -> &'static PreemptState {
    // SAFETY: the state lives until the worker thread uninstalls it, after its last green thread.
    unsafe { &*current_ptr() }
}

/// Disables preemption, *then* reads the current worker: the one primitive for code that acts on
/// the state it reads (the answer cannot go stale until the matching enable).
#[inline(always)]
pub fn disable_then_current() -> &'static PreemptState {
    disable_raw();
    current()
}

#[inline(always)]
pub fn disable_raw() {
    // SAFETY: one gs-relative instruction on this worker's own word (see module docs).
    unsafe { asm!("add dword ptr gs:[{o}], 1", o = const OFF_WORD, options(nostack)) };
}

/// Decrements the depth; true if the word reached 0, i.e. the depth is back to 0 while a
/// preemption deferred for the current arming is pending (see [`DEPTH_MASK`]).
#[inline(always)]
pub fn enable_raw_deferred_due() -> bool {
    let zero: u8;
    // SAFETY: as in `disable_raw`.
    unsafe {
        asm!("sub dword ptr gs:[{o}], 1", "setz {z}", o = const OFF_WORD, z = out(reg_byte) zero, options(nostack))
    };
    zero != 0
}

/// Current depth of `preempt::disable` on this worker.
pub fn disable_depth() -> u32 {
    let w: u32;
    // SAFETY: reads this worker's word with one instruction.
    unsafe {
        asm!("mov {w:e}, dword ptr gs:[{o}]", o = const OFF_WORD, w = out(reg) w, options(nostack, readonly, preserves_flags))
    };
    w & DEPTH_MASK
}

/// Whether the timer core has posted a compiler-interrupt request for this worker: one load
/// of the `ArmGenerations` pointer at gs:[32] and one of the request word. Only where
/// `on_worker()`.
#[inline(always)]
pub fn ci_requested() -> bool {
    let r: u64;
    // SAFETY: on a worker thread gs:[32] holds the address of its `ArmGenerations`, which lives as
    // long as the runtime; the word lies at `OFF_CI_REQUEST` in it. Not `pure`: re-read at every
    // probe (the thread may have moved to another worker).
    unsafe {
        asm!(
            "mov {r}, qword ptr gs:[{gens}]",
            "mov {r}, qword ptr [{r} + {off}]",
            gens = const OFF_GENS,
            off = const OFF_CI_REQUEST,
            r = out(reg) r,
            options(nostack, readonly, preserves_flags)
        )
    };
    r != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a fresh OS thread with a worker state installed through GS, as a worker has.
    fn on_installed_thread(f: impl FnOnce(&PreemptState) + Send + 'static) {
        std::thread::spawn(move || {
            let stats = Box::new(WorkerStats::default());
            let gens = Box::new(ArmGenerations::default());
            let state = Box::new(PreemptState::new(&*stats, &*gens));
            assert!(!on_worker());
            // SAFETY: `state` stays boxed until after `uninstall` below.
            unsafe { install(&state) }.expect("arch_prctl(ARCH_SET_GS)");
            assert!(on_worker());
            assert_eq!(current_ptr(), &*state as *const PreemptState, "gs:[0] names the installed state");
            f(&state);
            uninstall();
            assert!(!on_worker());
        })
        .join()
        .expect("the test body passed");
    }

    #[test]
    fn disable_nests_and_enable_reports_reaching_zero() {
        on_installed_thread(|state| {
            assert_eq!(disable_depth(), 0);
            disable_raw();
            let again = disable_then_current();
            assert!(std::ptr::eq(again, state));
            assert_eq!(disable_depth(), 2);
            assert_eq!(state.depth(), 2, "gs:[8] is the word");
            assert!(!enable_raw_deferred_due());
            assert_eq!(disable_depth(), 1);
            assert!(!enable_raw_deferred_due(), "nothing armed or pending");
            assert_eq!(disable_depth(), 0);
            assert_eq!(state.word(), IDLE_WORD);
        });
    }

    #[test]
    fn enable_finds_a_deferral_due_only_at_depth_zero_armed_and_pending() {
        on_installed_thread(|state| {
            state.arm();
            disable_raw();
            disable_raw();
            assert!(state.armed() && !state.pending());
            assert!(!enable_raw_deferred_due(), "armed, nothing pending");
            disable_raw();
            state.defer(); // an interrupt arrives at depth 2
            assert!(state.pending());
            assert!(!enable_raw_deferred_due(), "depth 1 still");
            assert!(enable_raw_deferred_due(), "depth 0, armed, pending: the word is 0");
            assert_eq!(state.word(), 0);

            disable_raw();
            assert!(state.disarm(), "it was armed");
            assert!(!state.pending(), "disarming drops the deferral");
            assert!(!enable_raw_deferred_due(), "a deferral never outlives its arming");
            assert!(!state.disarm(), "already disarmed");

            disable_raw();
            state.arm();
            state.defer();
            state.arm(); // a new arming (the next long request) drops the old deferral
            assert!(!enable_raw_deferred_due());
            assert_eq!(state.word(), NOT_PENDING);
        });
    }

    #[test]
    fn each_installed_thread_sees_its_own_state() {
        // Two threads at once: gs is per thread, so each reads its own depth.
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let hs: Vec<_> = (0..2u32)
            .map(|i| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    on_installed_thread(move |_| {
                        for _ in 0..=i {
                            disable_raw();
                        }
                        barrier.wait();
                        assert_eq!(disable_depth(), i + 1);
                        barrier.wait();
                        for _ in 0..=i {
                            enable_raw_deferred_due();
                        }
                    })
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
    }

    #[test]
    fn an_interrupt_matches_only_the_arming_it_was_sent_for() {
        let g = ArmGenerations::default();
        assert!(g.current());
        g.armed.fetch_add(1, Ordering::AcqRel); // the worker arms
        assert!(!g.current(), "sent for the previous arming");
        g.target.store(g.armed.load(Ordering::Acquire), Ordering::Release); // the timer core aims
        assert!(g.current());
        g.armed.fetch_add(1, Ordering::AcqRel); // the request ended; the next one arms
        assert!(!g.current(), "a delayed delivery is stale");
    }

    #[test]
    fn os_lock_markers_count_per_thread_in_debug_builds() {
        let expect = |n: u32| if cfg!(debug_assertions) { n } else { 0 };
        assert_eq!(os_locks_held(), 0);
        let a = OsLockHeld::new();
        let b = OsLockHeld::new();
        assert_eq!(os_locks_held(), expect(2));
        assert_eq!(std::thread::spawn(os_locks_held).join().unwrap(), 0, "another thread holds none");
        drop(a);
        assert_eq!(os_locks_held(), expect(1));
        drop(b);
        assert_eq!(os_locks_held(), 0);
    }
}
