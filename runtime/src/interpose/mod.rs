//! Interposition of C library functions that must not be preempted half-way, or that should yield
//! instead of blocking (the thesis's shim layer, §5.2.2), for C and C++ code running inside a
//! synergy handler — LevelDB in `app::leveldb`. Cargo feature `interpose` (implied by `leveldb`).
//!
//! - [`mutex`]: `pthread_mutex_lock/trylock/unlock`. A green thread that holds the lock cannot be
//!   preempted (the preemption is deferred to the unlock); one that finds it taken and holds no
//!   other lock yields, so its worker serves other requests until the holder releases it.
//! - [`malloc`]: `malloc`, `free`, `calloc`, `realloc`, `reallocarray`, `posix_memalign`,
//!   `aligned_alloc`, `memalign` run with preemption disabled: glibc's allocator keeps its
//!   thread cache and arena pointer in TLS, which a green thread preempted inside it and resumed on
//!   another worker would corrupt.
//!
//! How: the functions are defined in the executable (`#[no_mangle]`) and exported to its dynamic
//! symbol table (`build.rs` passes `--export-dynamic-symbol` for each), so the dynamic linker binds
//! shared libraries' calls (libleveldb's, libstdc++'s) to them before libc's. They forward to
//! glibc's own entry points (`__libc_malloc` …, and `pthread_mutex_*` found with
//! `dlsym(RTLD_NEXT)`). Off worker threads they only forward, so the rest of the process is
//! unaffected. glibc's internal calls (e.g. `strdup` → malloc) do not go through the PLT and are
//! not intercepted; nothing in LevelDB's read path uses them.

pub mod malloc;
pub mod mutex;

/// The interposed symbols, one per line: `build.rs` exports each from every binary it links.
pub const SYMBOLS: &str = include_str!("exported.txt");

/// References every shim, so that the linker keeps the objects that define them in any binary
/// that starts a runtime (an rlib's object is linked only if something refers to it), and
/// resolves the real `pthread_mutex_*` before any worker needs them.
pub fn ensure_linked() {
    let shims: [usize; 11] = [
        malloc::malloc as *const () as usize,
        malloc::free as *const () as usize,
        malloc::calloc as *const () as usize,
        malloc::realloc as *const () as usize,
        malloc::reallocarray as *const () as usize,
        malloc::posix_memalign as *const () as usize,
        malloc::aligned_alloc as *const () as usize,
        malloc::memalign as *const () as usize,
        mutex::pthread_mutex_lock as *const () as usize,
        mutex::pthread_mutex_trylock as *const () as usize,
        mutex::pthread_mutex_unlock as *const () as usize,
    ];
    std::hint::black_box(shims);
    mutex::resolve_real();
}
#[cfg(test)]
mod tests {
    #[test]
    fn every_shim_is_exported_from_the_binary() {
        let exported: Vec<&str> = super::SYMBOLS.lines().collect();
        assert_eq!(exported.len(), 11);
        // SAFETY: dlsym on the running executable's own global scope with NUL-terminated names.
        for name in exported {
            let c = std::ffi::CString::new(name).unwrap();
            let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c.as_ptr()) } as usize;
            let ours = unsafe { libc::dlsym(libc::RTLD_NEXT, c.as_ptr()) } as usize;
            assert_ne!(found, 0, "{name}");
            // RTLD_DEFAULT finds the first definition in the global scope: the executable's (this
            // test binary's) shim, which shared libraries are bound to as well; RTLD_NEXT (from
            // the executable) finds glibc's, a different function.
            assert_ne!(found, ours, "{name} is not interposed: build.rs must export it");
        }
    }
}
