//! Interposition of C library functions that must not be preempted half-way, or that should yield
//! instead of blocking (the thesis's shim layer, §5.2.2), for C and C++ code running inside a
//! synergy handler — LevelDB in `synergy-apps`.
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
//! symbol table, so the dynamic linker binds shared libraries' calls (libleveldb's, libstdc++'s)
//! to them before libc's. A binary opts in explicitly, in two steps: it calls [`ensure_linked`]
//! before starting a runtime (so the linker keeps the shims), and its build script exports the
//! symbols this crate lists in `DEP_SYNERGY_INTERPOSE_SYMBOLS`:
//!
//! ```text
//! for sym in std::env::var("DEP_SYNERGY_INTERPOSE_SYMBOLS").unwrap().split(',') {
//!     println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol={sym}");
//! }
//! ```
//!
//! Nothing else in a workspace changes: unlike a cargo feature of the runtime, depending on this
//! crate does not interpose anything in binaries that do not opt in. They forward to
//! glibc's own entry points (`__libc_malloc` …, and `pthread_mutex_*` found with
//! `dlsym(RTLD_NEXT)`). Off worker threads they only forward, so the rest of the process is
//! unaffected. glibc's internal calls (e.g. `strdup` → malloc) do not go through the PLT and are
//! not intercepted; nothing in LevelDB's read path uses them.

#![deny(missing_docs)]

pub mod malloc;
pub mod mutex;

/// The interposed symbols, one per line.
pub const SYMBOLS: &str = include_str!("exported.txt");

/// References every shim, so that the linker keeps the objects that define them (an rlib's
/// object is linked only if something refers to it), resolves the real `pthread_mutex_*`, and
/// checks that the executable exports each shim, i.e. that shared libraries will call them:
/// fails, saying how to export them, if the binary did not opt in.
pub fn ensure_linked() -> Result<(), ShimsNotExported> {
    let shims: [(&str, usize); 11] = [
        ("malloc", malloc::malloc as *const () as usize),
        ("free", malloc::free as *const () as usize),
        ("calloc", malloc::calloc as *const () as usize),
        ("realloc", malloc::realloc as *const () as usize),
        ("reallocarray", malloc::reallocarray as *const () as usize),
        ("posix_memalign", malloc::posix_memalign as *const () as usize),
        ("aligned_alloc", malloc::aligned_alloc as *const () as usize),
        ("memalign", malloc::memalign as *const () as usize),
        ("pthread_mutex_lock", mutex::pthread_mutex_lock as *const () as usize),
        ("pthread_mutex_trylock", mutex::pthread_mutex_trylock as *const () as usize),
        ("pthread_mutex_unlock", mutex::pthread_mutex_unlock as *const () as usize),
    ];
    std::hint::black_box(shims);
    mutex::resolve_real();
    let missing: Vec<&str> = shims
        .iter()
        .filter(|(name, ours)| {
            let c = std::ffi::CString::new(*name).expect("no NUL in a symbol name");
            // SAFETY: dlsym with a NUL-terminated name on the global scope; only compares addresses.
            let bound = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c.as_ptr()) } as usize;
            bound != *ours
        })
        .map(|(name, _)| *name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ShimsNotExported { missing })
}

/// The executable does not export some of the shims, so C libraries would bypass them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the executable does not export synergy-interpose's shims ({}), so C libraries would bypass them: \
     its build script must print cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol=SYMBOL for each \
     symbol in DEP_SYNERGY_INTERPOSE_SYMBOLS (see synergy-interpose's docs)",
    missing.join(", ")
)]
pub struct ShimsNotExported {
    /// The shims the dynamic linker resolves to something else.
    pub missing: Vec<&'static str>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_shim_is_exported_from_the_binary() {
        let exported: Vec<&str> = super::SYMBOLS.lines().collect();
        assert_eq!(exported.len(), 11);
        // SAFETY: dlsym on the running executable's own global scope with NUL-terminated names.
        // The shims are linked into this test binary only if something refers to them.
        super::ensure_linked().expect("this package's build.rs exports the shims from its tests");
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
