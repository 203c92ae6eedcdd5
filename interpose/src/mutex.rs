//! `pthread_mutex_lock/trylock/unlock` for C and C++ code in handlers (LevelDB's `port::Mutex`
//! is a `std::mutex`, whose inline `lock()` calls `pthread_mutex_lock` through the PLT).
//!
//! On a worker, a lock taken disables preemption until its unlock, which takes any preemption
//! deferred meanwhile. A green thread that finds the lock taken while it holds no other lock
//! yields (parks on the wait queue) and retries when resumed; if it holds another lock, or cannot
//! park, it blocks in the real `pthread_mutex_lock` — the thesis's rule: yielding while holding a
//! lock would stall that lock's waiters. Blocking rather than spinning also lets glibc answer
//! `EDEADLK` for an error-checking mutex the caller already holds.

use libc::{c_int, pthread_mutex_t};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use synergy::{preempt, sync};

type MutexFn = unsafe extern "C" fn(*mut pthread_mutex_t) -> c_int;

/// glibc's functions, resolved once (0 = not yet).
static REAL_LOCK: AtomicUsize = AtomicUsize::new(0);
static REAL_TRYLOCK: AtomicUsize = AtomicUsize::new(0);
static REAL_UNLOCK: AtomicUsize = AtomicUsize::new(0);

/// How often a worker found a C mutex taken, and how often that made it yield.
static CONTENDED: AtomicU64 = AtomicU64::new(0);
static YIELDED: AtomicU64 = AtomicU64::new(0);

/// Counters of the shim since the process started: (lock attempts that found the mutex taken on
/// a worker, of which the green thread yielded).
pub fn contention() -> (u64, u64) {
    (CONTENDED.load(Ordering::Relaxed), YIELDED.load(Ordering::Relaxed))
}

fn real(slot: &AtomicUsize, name: &std::ffi::CStr) -> MutexFn {
    let mut f = slot.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT finds the next definition after the
        // executable's, i.e. glibc's. Racing resolutions store the same address.
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
        if f == 0 {
            // Without the real function no lock in the process can work; there is no way on.
            const MSG: &[u8] = b"synergy: cannot resolve glibc's pthread_mutex functions\n";
            // SAFETY: writes a static buffer to stderr, then aborts.
            unsafe {
                libc::write(2, MSG.as_ptr().cast(), MSG.len());
                libc::abort();
            }
        }
        slot.store(f, Ordering::Release);
    }
    // SAFETY: f is glibc's function of this exact signature.
    unsafe { std::mem::transmute::<usize, MutexFn>(f) }
}

fn real_lock() -> MutexFn {
    real(&REAL_LOCK, c"pthread_mutex_lock")
}
fn real_trylock() -> MutexFn {
    real(&REAL_TRYLOCK, c"pthread_mutex_trylock")
}
fn real_unlock() -> MutexFn {
    real(&REAL_UNLOCK, c"pthread_mutex_unlock")
}

/// Resolves glibc's functions now (called when a runtime starts, so workers never call dlsym).
pub fn resolve_real() {
    real_lock();
    real_trylock();
    real_unlock();
}

/// # Safety
/// C `pthread_mutex_lock`: `m` is an initialised mutex.
#[no_mangle]
pub unsafe extern "C" fn pthread_mutex_lock(m: *mut pthread_mutex_t) -> c_int {
    if !synergy::on_worker() {
        // SAFETY: forwarded contract.
        return unsafe { real_lock()(m) };
    }
    preempt::disable();
    loop {
        // SAFETY: forwarded contract.
        match unsafe { real_trylock()(m) } {
            0 => return 0,
            libc::EBUSY => {}
            err => {
                preempt::enable();
                return err;
            }
        }
        CONTENDED.fetch_add(1, Ordering::Relaxed);
        if sync::may_yield_on_contention() {
            preempt::enable();
            let parked = synergy::yield_now();
            preempt::disable();
            if parked {
                YIELDED.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        // Holding another lock, or not on a green thread that can park: block like C would.
        // SAFETY: forwarded contract.
        let r = unsafe { real_lock()(m) };
        if r != 0 {
            preempt::enable();
        }
        return r;
    }
}

/// # Safety
/// C `pthread_mutex_trylock`.
#[no_mangle]
pub unsafe extern "C" fn pthread_mutex_trylock(m: *mut pthread_mutex_t) -> c_int {
    preempt::disable();
    // SAFETY: forwarded contract.
    let r = unsafe { real_trylock()(m) };
    if r != 0 {
        preempt::enable();
    }
    r
}

/// # Safety
/// C `pthread_mutex_unlock`.
#[no_mangle]
pub unsafe extern "C" fn pthread_mutex_unlock(m: *mut pthread_mutex_t) -> c_int {
    // SAFETY: forwarded contract.
    let r = unsafe { real_unlock()(m) };
    if r == 0 {
        // May take a preemption deferred while the lock was held.
        preempt::enable();
    }
    r
}
