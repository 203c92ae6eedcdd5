//! Where the standard library's panic-count updates live in this process's code.
//!
//! std counts panics twice: a process-wide `GLOBAL_PANIC_COUNT` and a per-OS-thread local count.
//! `panic_count::increase` bumps the global count, then loads the thread-local base once and
//! bumps the local count through it; `catch_unwind`'s `cleanup` (with `decrease` inlined) does the
//! reverse. Between the two updates `std::thread::panicking()` answers from the wrong half (the
//! global count is what makes it consult the local one), so it cannot tell a preemption handler
//! that migrating the green thread now would leave the first OS thread's count updated and the
//! second's not (`panic.rs` says what that breaks). The interrupted rip can: if it lies inside one
//! of these two functions, the preemption is refused.
//!
//! The two functions are found once, by name, in the ELF symbol table of the object that holds
//! std (the executable, or a shared library it was linked into), and their run-time addresses
//! computed from that object's load bias. They are `#[inline(never)]`/`#[cold]` in std and std
//! comes precompiled, so they exist as symbols in every build that keeps its symbol table and does
//! not LTO std into its callers. `locate` says why when it cannot find them.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The mangled paths of the functions that update both panic counts: `increase`, and
/// `catch_unwind`'s cleanup (called `try::cleanup` before Rust 1.86).
const PATHS: [&[u8]; 3] =
    [b"3std9panicking11panic_count8increase", b"3std9panicking12catch_unwind7cleanup", b"3std9panicking3try7cleanup"];

/// The mangled path of the function whose address anchors the search (`std::panic::take_hook`
/// is `std::panicking::take_hook`): its symbol must sit at the anchor's run-time address minus
/// the load bias, or the file read is not the code running.
const ANCHOR_PATH: &[u8] = b"3std9panicking9take_hook";

/// Which of `PATHS` the symbol `name` is (`PATHS.len()` for `ANCHOR_PATH`), in either mangling
/// std has shipped with: legacy (`_ZN3std9panicking…8increase17h<hash>E`) or v0
/// (`_RNvNtNtCs<hash>_3std9panicking…8increase`, Rust 1.95's std). Closures and other items
/// nested in them are not matches.
fn classify(name: &[u8]) -> Option<usize> {
    PATHS.iter().chain([&ANCHOR_PATH]).position(|path| {
        let (legacy, v0) = (name.starts_with(b"_ZN"), name.starts_with(b"_R"));
        (legacy || v0)
            && name.windows(path.len()).enumerate().any(|(at, w)| {
                let rest = &name[at + path.len()..];
                w == *path
                    && at > 0
                    && ((legacy && name[at - 1] == b'N' && rest.starts_with(b"17h"))
                        || (v0 && name[at - 1] == b'_' && rest.is_empty()))
            })
    })
}

/// Run-time [start, end) of the located functions (one pair per prefix at most), then one pair
/// the unit tests set; (0, 0) pairs are unused.
static RANGES: [AtomicU64; 2 * PATHS.len() + 2] = [const { AtomicU64::new(0) }; 2 * PATHS.len() + 2];

/// True if `rip` lies in one of std's panic-count updates (as located by `install`). Reads only
/// atomics: async-signal-safe.
#[inline]
pub fn contains(rip: u64) -> bool {
    RANGES.chunks(2).any(|r| (r[0].load(Ordering::Relaxed)..r[1].load(Ordering::Relaxed)).contains(&rip))
}

/// Locates the functions and publishes their ranges for `contains`. Returns how many were found
/// (at least `increase` and one cleanup), or why none could be.
pub fn install() -> Result<usize, String> {
    let ranges = locate()?;
    for (slot, r) in RANGES.chunks(2).zip(&ranges) {
        slot[0].store(r.start, Ordering::Relaxed);
        slot[1].store(r.end, Ordering::Relaxed);
    }
    Ok(ranges.len())
}

/// Makes `contains` also cover the function whose (unmangled) symbol is `name` in the object
/// holding std (a test's own function, to check the whole refusal path end to end).
#[cfg(test)]
pub(crate) fn also_refuse_for_test(name: &str) -> Range<u64> {
    let (path, bias, _) = std_object().unwrap();
    let found = function_symbols(&path, &|s| (s == name.as_bytes()).then_some(0)).unwrap();
    let &[(_, value, size)] = found.as_slice() else { panic!("{name}: {found:?}") };
    let slot = &RANGES[RANGES.len() - 2..];
    slot[0].store(bias + value, Ordering::Relaxed);
    slot[1].store(bias + value + size, Ordering::Relaxed);
    bias + value..bias + value + size
}

/// The run-time address ranges of the functions named by `PATHS`.
pub fn locate() -> Result<Vec<Range<u64>>, String> {
    let (path, bias, anchor) = std_object().ok_or("no loaded object contains std's code")?;
    let mut found = function_symbols(&path, &classify).map_err(|e| format!("{}: {e}", path.display()))?;
    if !found.iter().any(|&(i, value, _)| i == PATHS.len() && bias + value == anchor) {
        return Err(format!(
            "{}: std::panic::take_hook is not where its symbol says (not the running code)",
            path.display()
        ));
    }
    found.retain(|f| f.0 < PATHS.len());
    let has = |i: usize| found.iter().any(|f| f.0 == i);
    if !has(0) || !(has(1) || has(2)) || found.len() > PATHS.len() {
        return Err(format!(
            "{}: std's panic_count::increase and catch_unwind cleanup not both in its symbol table \
             (stripped, or std inlined by LTO)",
            path.display()
        ));
    }
    Ok(found.iter().map(|&(_, value, size)| bias + value..bias + value + size).collect())
}

/// The file and load bias of the object that holds std, and the run-time address it was found by
/// (`std::panic::take_hook`'s: a non-generic, non-inline std function).
fn std_object() -> Option<(std::path::PathBuf, u64, u64)> {
    let anchor = std::panic::take_hook as fn() -> _ as usize as u64;
    object_containing(anchor).map(|(path, bias)| (path, bias, anchor))
}

/// The file and load bias of the loaded object with a segment containing `addr`.
fn object_containing(addr: u64) -> Option<(std::path::PathBuf, u64)> {
    struct Search {
        addr: u64,
        found: Option<(std::path::PathBuf, u64)>,
    }
    unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut libc::c_void) -> i32 {
        // SAFETY: dl_iterate_phdr passes a valid info for the duration of the call and our `data`.
        let (info, search) = unsafe { (&*info, &mut *(data as *mut Search)) };
        let bias = info.dlpi_addr;
        // SAFETY: dlpi_phdr points to dlpi_phnum program headers of the object.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        let hit = phdrs.iter().any(|p| {
            p.p_type == libc::PT_LOAD && (bias + p.p_vaddr..bias + p.p_vaddr + p.p_memsz).contains(&search.addr)
        });
        if !hit {
            return 0;
        }
        // SAFETY: dlpi_name is a NUL-terminated string ("" for the executable itself).
        let name = unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) };
        let path = if name.is_empty() {
            std::path::PathBuf::from("/proc/self/exe")
        } else {
            std::path::PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name.to_bytes()))
        };
        search.found = Some((path, bias));
        1
    }
    let mut search = Search { addr, found: None };
    // SAFETY: `visit` matches the callback type and only uses `data` as the `Search` passed here,
    // which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), &mut search as *mut Search as *mut libc::c_void) };
    search.found
}

const SHT_SYMTAB: u32 = 2;
const STT_FUNC: u8 = 2;

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

fn read_at(f: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let len = usize::try_from(len).map_err(|_| io::Error::other("section too large"))?;
    let mut buf = vec![0; len];
    f.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// (class, st_value, st_size) of the defined functions in `path`'s `.symtab` that `class` puts in
/// a class. A little-endian ELF64 file is all it reads.
fn function_symbols(
    path: &std::path::Path,
    class: &dyn Fn(&[u8]) -> Option<usize>,
) -> io::Result<Vec<(usize, u64, u64)>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let f = File::open(path)?;
    let eh = read_at(&f, 0, 64)?;
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return Err(bad("not a little-endian ELF64 file"));
    }
    let (shoff, shentsize, shnum) = (u64_at(&eh, 0x28), u16_at(&eh, 0x3a) as u64, u16_at(&eh, 0x3c) as u64);
    if shentsize < 64 || shnum == 0 {
        return Err(bad("no section headers"));
    }
    let shdrs = read_at(&f, shoff, shentsize * shnum)?;
    let section = |i: u64| -> Option<(u32, u64, u64, u32)> {
        let o = usize::try_from(i * shentsize).ok()?;
        let s = shdrs.get(o..o + 64)?;
        // (sh_type, sh_offset, sh_size, sh_link)
        Some((u32_at(s, 4), u64_at(s, 0x18), u64_at(s, 0x20), u32_at(s, 0x28)))
    };
    let (_, symoff, symsize, link) =
        (0..shnum).filter_map(section).find(|s| s.0 == SHT_SYMTAB).ok_or_else(|| bad("no .symtab (stripped)"))?;
    let (_, stroff, strsize, _) = section(link as u64).ok_or_else(|| bad(".symtab's string table is missing"))?;
    let syms = read_at(&f, symoff, symsize)?;
    let strs = read_at(&f, stroff, strsize)?;
    let mut out = Vec::new();
    for sym in syms.chunks_exact(24) {
        let (name, info, shndx, value, size) =
            (u32_at(sym, 0) as usize, sym[4], u16_at(sym, 6), u64_at(sym, 8), u64_at(sym, 16));
        if info & 0xf != STT_FUNC || shndx == 0 || size == 0 {
            continue;
        }
        let Some(name) = strs.get(name..) else { continue };
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        if let Some(i) = class(name) {
            if !out.iter().any(|&(_, v, _)| v == value) {
                out.push((i, value, size));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_manglings_are_recognised_and_nested_items_are_not() {
        assert_eq!(classify(b"_ZN3std9panicking11panic_count8increase17h0123456789abcdefE"), Some(0));
        assert_eq!(classify(b"_RNvNtNtCsjrHSEGnQ3l9_3std9panicking11panic_count8increase"), Some(0));
        assert_eq!(classify(b"_RNvNvNtCsjrHSEGnQ3l9_3std9panicking12catch_unwind7cleanup"), Some(1));
        assert_eq!(classify(b"_ZN3std9panicking3try7cleanup17h0123456789abcdefE"), Some(2));
        assert_eq!(classify(b"_RNCNvNtNtCsjrHSEGnQ3l9_3std9panicking11panic_count8increase0"), None);
        assert_eq!(classify(b"_ZN3std9panicking11panic_count8increase28_$u7b$$u7b$closure$u7d$$u7d$17hE"), None);
        assert_eq!(classify(b"_ZN6mystd3std9panicking11panic_count8increase17h0E"), None, "not std's");
        assert_eq!(classify(b"3std9panicking11panic_count8increase"), None);
        assert_eq!(classify(b"_RNvNtCsjrHSEGnQ3l9_3std9panicking9take_hook"), Some(PATHS.len()));
    }

    #[test]
    fn increase_and_cleanup_are_found_in_this_test_binary() {
        let ranges = locate().unwrap();
        assert!(ranges.len() >= 2, "{ranges:x?}");
        assert!(ranges.iter().all(|r| r.end > r.start && r.end - r.start < 4096), "{ranges:x?}");
        install().unwrap();
        for r in &ranges {
            assert!(contains(r.start) && contains(r.end - 1) && !contains(r.end), "{r:x?}");
        }
        assert!(!contains(contains as fn(u64) -> bool as usize as u64));
        assert!(!contains(0));
    }

    /// The rip std's `increase` stops at between its two updates (the guest's soak abort) is
    /// refused, whatever `panicking()` says there (false: this thread is not panicking).
    #[test]
    fn a_rip_between_increases_two_updates_is_refused() {
        crate::worker::panic::install_hook();
        let increase = locate().unwrap()[0].clone();
        assert!(!std::thread::panicking());
        assert!(crate::worker::panic::refuse_while_panicking(increase.start + 0x10));
        assert!(!crate::worker::panic::refuse_while_panicking(0));
    }
}
