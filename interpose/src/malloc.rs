//! The allocator entry points, with preemption disabled around glibc's (see the module above).
//! `preempt::disable` is a TLS flag test plus one gs-relative add: cheap enough for every call.

use libc::{c_int, c_void, size_t};
use synergy::preempt;

extern "C" {
    fn __libc_malloc(size: size_t) -> *mut c_void;
    fn __libc_free(ptr: *mut c_void);
    fn __libc_calloc(n: size_t, size: size_t) -> *mut c_void;
    fn __libc_realloc(ptr: *mut c_void, size: size_t) -> *mut c_void;
    fn __libc_memalign(align: size_t, size: size_t) -> *mut c_void;
}

/// Runs `f` (one glibc allocator call) with preemption disabled. A preemption requested
/// meanwhile is taken after the call, when the allocator's state is consistent again.
#[inline(always)]
fn guarded<R>(f: impl FnOnce() -> R) -> R {
    preempt::disable();
    let r = f();
    preempt::enable();
    r
}

/// # Safety
/// C `malloc`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: size_t) -> *mut c_void {
    // SAFETY: glibc's malloc with the caller's arguments.
    guarded(|| unsafe { __libc_malloc(size) })
}

/// # Safety
/// C `free`: `ptr` is null or came from this allocator.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: as the caller promised.
    guarded(|| unsafe { __libc_free(ptr) })
}

/// # Safety
/// C `calloc`.
#[no_mangle]
pub unsafe extern "C" fn calloc(n: size_t, size: size_t) -> *mut c_void {
    // SAFETY: glibc's calloc checks n × size for overflow itself.
    guarded(|| unsafe { __libc_calloc(n, size) })
}

/// # Safety
/// C `realloc`.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: size_t) -> *mut c_void {
    // SAFETY: as the caller promised.
    guarded(|| unsafe { __libc_realloc(ptr, size) })
}

/// # Safety
/// C `reallocarray` (glibc's would call its internal realloc, bypassing the guard).
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: size_t, size: size_t) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: as the caller promised.
        Some(total) => unsafe { realloc(ptr, total) },
        None => {
            set_errno(libc::ENOMEM);
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// C `posix_memalign`: `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: size_t, size: size_t) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(std::mem::size_of::<*mut c_void>()) {
        return libc::EINVAL;
    }
    // SAFETY: glibc's memalign with a valid alignment.
    let p = guarded(|| unsafe { __libc_memalign(align, size) });
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller passes a writable pointer (C contract).
    unsafe { *out = p };
    0
}

/// # Safety
/// C11 `aligned_alloc`.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: size_t, size: size_t) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return std::ptr::null_mut();
    }
    // SAFETY: glibc's memalign with a valid alignment.
    guarded(|| unsafe { __libc_memalign(align, size) })
}

/// # Safety
/// Legacy `memalign`.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: size_t, size: size_t) -> *mut c_void {
    // SAFETY: glibc validates (and rounds up) the alignment itself.
    guarded(|| unsafe { __libc_memalign(align, size) })
}

fn set_errno(e: c_int) {
    // SAFETY: errno is this thread's; writing it is what the C contract asks of a failing call.
    unsafe { *libc::__errno_location() = e };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shims_allocate_and_check_their_arguments() {
        // SAFETY: plain C allocator use with valid arguments, each block freed once.
        unsafe {
            let p = malloc(100) as *mut u8;
            assert!(!p.is_null());
            p.write_bytes(7, 100);
            let p = realloc(p as *mut c_void, 10_000) as *mut u8;
            assert_eq!(*p.add(99), 7, "realloc keeps the contents");
            free(p as *mut c_void);
            let z = calloc(1000, 8) as *mut u64;
            assert!((0..1000).all(|i| *z.add(i) == 0));
            free(z as *mut c_void);
            let mut out = std::ptr::null_mut();
            assert_eq!(posix_memalign(&mut out, 4096, 10), 0);
            assert_eq!(out as usize % 4096, 0);
            free(out);
            assert_eq!(posix_memalign(&mut out, 3, 10), libc::EINVAL);
            assert_eq!(posix_memalign(&mut out, 4, 10), libc::EINVAL, "not a multiple of sizeof(void*)");
            assert!(aligned_alloc(3, 8).is_null());
            let a = aligned_alloc(256, 512);
            assert_eq!(a as usize % 256, 0);
            free(a);
            assert!(reallocarray(std::ptr::null_mut(), usize::MAX, 2).is_null());
            assert_eq!(*libc::__errno_location(), libc::ENOMEM);
            free(std::ptr::null_mut());
        }
    }
}
