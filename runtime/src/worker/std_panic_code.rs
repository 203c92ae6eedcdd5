//! Where the standard library's panic counts and their updates live in this process.
//!
//! std counts panics twice: a process-wide `GLOBAL_PANIC_COUNT` and a per-OS-thread local count.
//! `panic_count::increase` bumps the global count, then loads the thread-local base and bumps the
//! local count through it; `decrease` (inlined into `catch_unwind`'s `cleanup`) does the same in
//! reverse order of meaning: global first, then local. `std::thread::panicking()` is
//! `global != 0 && local != 0`, so between the two updates it answers false, and a preemption
//! there could migrate the green thread with a thread-local base already in a register, or leave
//! one OS thread's local count updated and another's not (`panic.rs` says what that breaks).
//!
//! The complete guard (`panic::refuse_while_panicking`) therefore reads, besides `panicking()`:
//! * **the global count itself**, located here by its symbol: `increase` bumps it *first*, so
//!   from the first update to the second it is non-zero, wherever std inlined `increase` (Rust
//!   1.95's std inlines it into `resume_unwind`, which runs no panic hook);
//! * **the interrupted rip**, for `decrease`'s window (global count already back to 0, local not
//!   yet): `decrease` and the `cleanup` it is inlined into are non-generic, non-`#[inline]` std
//!   functions, so their code exists only in std's own object, under their own symbols. The same
//!   ranges also cover `increase` and the functions it is inlined into, as a second line.
//!
//! The order of the two updates in both functions was read off the pinned toolchain's std
//! (`objdump -d` of its `libstd-*.so`: `lock incq`/`lock decq` of the global count, then the
//! `__tls_get_addr` and the local update); the unit test
//! `every_writer_of_the_global_count_is_covered` disassembles its own binary and fails if a std
//! function that writes the global count is not one of `PATHS`, so a toolchain that inlines
//! differently fails CI instead of opening a gap.
//!
//! Everything is found once, by name, in the ELF symbol table of the object that holds std (the
//! executable, or `libstd-*.so` under `-C prefer-dynamic`), at run-time addresses computed from
//! that object's load bias, checked against an anchor (`take_hook`). `locate` says why when it
//! cannot (a stripped executable, std inlined by LTO): the runtime then fails closed
//! (`panic.rs`: preempted requests resume only on the worker that preempted them).

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The mangled paths of the std functions that update both panic counts: `increase`,
/// `catch_unwind`'s cleanup (called `try::cleanup` before Rust 1.86), `decrease`, and the
/// functions `increase` is inlined into in the toolchains seen (`resume_unwind`'s
/// `rust_panic_without_hook`, under either name). The first two must be found.
const PATHS: [&[u8]; 6] = [
    b"3std9panicking11panic_count8increase",
    b"3std9panicking12catch_unwind7cleanup",
    b"3std9panicking3try7cleanup",
    b"3std9panicking11panic_count8decrease",
    b"3std9panicking13resume_unwind",
    b"3std9panicking23rust_panic_without_hook",
];

/// The mangled path of std's process-wide panic count (a data symbol).
const GLOBAL_COUNT_PATH: &[u8] = b"3std9panicking11panic_count18GLOBAL_PANIC_COUNT";

/// The mangled path of the function whose address anchors the search (`std::panic::take_hook`
/// is `std::panicking::take_hook`): its symbol must sit at the anchor's run-time address minus
/// the load bias, or the file read is not the code running.
const ANCHOR_PATH: &[u8] = b"3std9panicking9take_hook";

/// Which of `PATHS` the symbol `name` is (`PATHS.len()` for `ANCHOR_PATH`), in either mangling
/// std has shipped with: legacy (`_ZN3std9panicking…8increase17h<hash>E`) or v0
/// (`_RNvNtNtCs<hash>_3std9panicking…8increase`, Rust 1.95's std). Closures and other items
/// nested in them are not matches.
fn classify(name: &[u8]) -> Option<usize> {
    PATHS.iter().chain([&ANCHOR_PATH]).position(|path| is_path(name, path))
}

/// True if the mangled symbol `name` is the item at `path` (in std), in either mangling.
fn is_path(name: &[u8], path: &[u8]) -> bool {
    let (legacy, v0) = (name.starts_with(b"_ZN"), name.starts_with(b"_R"));
    (legacy || v0)
        && name.windows(path.len()).enumerate().any(|(at, w)| {
            let rest = &name[at + path.len()..];
            w == path
                && at > 0
                && ((legacy && name[at - 1] == b'N' && rest.starts_with(b"17h"))
                    || (v0 && name[at - 1] == b'_' && rest.is_empty()))
        })
}

/// Run-time [start, end) of the located functions (one pair per prefix at most), then one pair
/// the unit tests set; (0, 0) pairs are unused.
static RANGES: [AtomicU64; 2 * PATHS.len() + 2] = [const { AtomicU64::new(0) }; 2 * PATHS.len() + 2];

/// Run-time address of std's `GLOBAL_PANIC_COUNT` (an `AtomicUsize`), 0 until located.
static GLOBAL_COUNT: AtomicU64 = AtomicU64::new(0);

/// True if `rip` lies in one of std's panic-count updates (as located by `install`). Reads only
/// atomics: async-signal-safe.
#[inline]
pub fn contains(rip: u64) -> bool {
    RANGES.chunks(2).any(|r| (r[0].load(Ordering::Relaxed)..r[1].load(Ordering::Relaxed)).contains(&rip))
}

/// std's process-wide panic count (its always-abort flag included), or `None` until `install`
/// located it. Reads only atomics: async-signal-safe.
#[inline]
pub fn global_count() -> Option<usize> {
    let addr = GLOBAL_COUNT.load(Ordering::Acquire);
    if addr == 0 {
        return None;
    }
    // SAFETY: `install` published the run-time address of std's `GLOBAL_PANIC_COUNT`, an
    // `AtomicUsize` static (its symbol's size was checked) of an object that stays loaded (it
    // holds the running std), found in the file whose `take_hook` symbol sits exactly where the
    // running `take_hook` is. Atomic loads of it race with nothing that is not atomic.
    Some(unsafe { &*(addr as *const AtomicUsize) }.load(Ordering::Relaxed))
}

/// Where std's panic machinery was found.
#[derive(Debug)]
pub struct Located {
    /// The functions' run-time ranges (at least `increase` and one cleanup).
    pub functions: Vec<Range<u64>>,
    /// The run-time address of `GLOBAL_PANIC_COUNT`.
    pub global_count: u64,
}

/// Locates std's panic code and count and publishes them for `contains` and `global_count`.
/// Returns how many functions were found, or why the guard cannot be complete.
pub fn install() -> Result<usize, String> {
    let located = locate()?;
    for (slot, r) in RANGES.chunks(2).zip(&located.functions) {
        slot[0].store(r.start, Ordering::Relaxed);
        slot[1].store(r.end, Ordering::Relaxed);
    }
    GLOBAL_COUNT.store(located.global_count, Ordering::Release);
    Ok(located.functions.len())
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

/// The run-time address ranges of the functions named by `PATHS`, and of the global count.
pub fn locate() -> Result<Located, String> {
    let (path, bias, anchor) = std_object().ok_or("no loaded object contains std's code")?;
    // One reading of the symbol table: the functions of `PATHS` and the anchor by their class,
    // the global count as class `GLOBAL_COUNT_CLASS`.
    const GLOBAL_COUNT_CLASS: usize = PATHS.len() + 1;
    let mut found = symbols(&path, &|name, kind| match kind {
        STT_FUNC => classify(name),
        STT_OBJECT => is_path(name, GLOBAL_COUNT_PATH).then_some(GLOBAL_COUNT_CLASS),
        _ => None,
    })
    .map_err(|e| format!("{}: {e}", path.display()))?;
    let counts: Vec<_> = found.iter().filter(|f| f.0 == GLOBAL_COUNT_CLASS).copied().collect();
    let global_count = match counts.as_slice() {
        [(_, value, size)] if *size == std::mem::size_of::<usize>() as u64 => bias + value,
        _ => {
            return Err(format!(
                "{}: std's panic_count::GLOBAL_PANIC_COUNT not in its symbol table once, with a usize's size \
                 ({counts:?}; stripped, or std inlined by LTO)",
                path.display()
            ))
        }
    };
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
    let functions = found.iter().map(|&(_, value, size)| bias + value..bias + value + size).collect();
    Ok(Located { functions, global_count })
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
const STT_OBJECT: u8 = 1;
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
/// a class (the tests look up single functions with it).
#[cfg(test)]
fn function_symbols(
    path: &std::path::Path,
    class: &dyn Fn(&[u8]) -> Option<usize>,
) -> io::Result<Vec<(usize, u64, u64)>> {
    symbols(path, &|name, kind| if kind == STT_FUNC { class(name) } else { None })
}

/// (class, st_value, st_size) of the defined symbols in `path`'s `.symtab` that `class` puts in a
/// class by name and type (`STT_FUNC`, `STT_OBJECT`), in one reading of the table. A
/// little-endian ELF64 file is all it reads.
fn symbols(path: &std::path::Path, class: &dyn Fn(&[u8], u8) -> Option<usize>) -> io::Result<Vec<(usize, u64, u64)>> {
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
        if shndx == 0 || size == 0 {
            continue;
        }
        let Some(name) = strs.get(name..) else { continue };
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        if let Some(i) = class(name, info & 0xf) {
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
        let located = locate().unwrap();
        let ranges = &located.functions;
        assert!(ranges.len() >= 2, "{ranges:x?}");
        assert!(ranges.iter().all(|r| r.end > r.start && r.end - r.start < 4096), "{ranges:x?}");
        install().unwrap();
        for r in ranges {
            assert!(contains(r.start) && contains(r.end - 1) && !contains(r.end), "{r:x?}");
        }
        assert!(!contains(contains as fn(u64) -> bool as usize as u64));
        assert!(!contains(0));
        assert!(global_count().is_some());
    }

    /// The rip std's `increase` stops at between its two updates (the guest's soak abort) is
    /// refused, whatever `panicking()` says there (false: this thread is not panicking).
    #[test]
    fn a_rip_between_increases_two_updates_is_refused() {
        crate::worker::panic::install_hook();
        let increase = locate().unwrap().functions[0].clone();
        assert!(!std::thread::panicking());
        assert!(crate::worker::panic::refuse_while_panicking(increase.start + 0x10));
        assert!(not_refused_once_no_test_panics(0), "a rip outside std's panic code, nothing panicking");
    }

    /// Other unit tests of this binary panic on purpose, in parallel, which makes the global
    /// count non-zero for a while: true if `rip` is not refused at some moment within 10 s.
    fn not_refused_once_no_test_panics(rip: u64) -> bool {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_secs(10) {
            if !crate::worker::panic::refuse_while_panicking(rip) {
                return true;
            }
            std::thread::yield_now();
        }
        false
    }

    /// `resume_unwind` runs `increase` inlined (Rust 1.95's std) and no panic hook: a rip inside
    /// it is refused. Failed before the fix (only `increase` and `cleanup` were covered).
    #[test]
    fn a_rip_inside_resume_unwinds_inlined_increase_is_refused() {
        crate::worker::panic::install_hook();
        let (path, bias, _) = std_object().unwrap();
        let found = function_symbols(&path, &|name| is_path(name, PATHS[4]).then_some(0)).unwrap();
        let &[(_, value, size)] = found.as_slice() else { panic!("resume_unwind: {found:?}") };
        let (start, end) = (bias + value, bias + value + size);
        assert!(!std::thread::panicking());
        assert!(crate::worker::panic::refuse_while_panicking(start + 0x10));
        assert!(crate::worker::panic::refuse_while_panicking(end - 1));
    }

    /// While any thread of the process is between std's two updates (here: unwinding, held in a
    /// `Drop`), the global count is non-zero and every preemption is refused, though
    /// `panicking()` is false on the deciding thread. Failed before the fix (`panicking()` only).
    #[test]
    fn another_threads_panic_in_progress_refuses_preemption_here() {
        crate::worker::panic::install_hook();
        struct HoldWhileUnwinding(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>);
        impl Drop for HoldWhileUnwinding {
            fn drop(&mut self) {
                self.0.send(()).unwrap();
                self.1.recv().unwrap();
            }
        }
        let (unwinding_tx, unwinding_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        let panicker = std::thread::spawn(move || {
            let _hold = HoldWhileUnwinding(unwinding_tx, release_rx);
            std::panic::resume_unwind(Box::new("held while unwinding"));
        });
        unwinding_rx.recv().unwrap();
        assert!(!std::thread::panicking());
        assert!(global_count().unwrap() >= 1);
        assert!(crate::worker::panic::refuse_while_panicking(0), "a panic in progress elsewhere");
        release_tx.send(()).unwrap();
        assert!(panicker.join().is_err());
    }

    /// Every function of this binary that writes std's global panic count (an atomic
    /// read-modify-write of `GLOBAL_PANIC_COUNT`, as `objdump -d` shows it) is one of `PATHS`, so
    /// that a toolchain which inlines `increase` or `decrease` somewhere new fails here rather
    /// than opening a window the guard misses. (With Rust 1.95 before the fix: `resume_unwind`
    /// was not covered.)
    #[test]
    fn every_writer_of_the_global_count_is_covered() {
        let objdump = |args: &[&str]| {
            let out = std::process::Command::new("objdump")
                .args(args)
                .arg(std::env::current_exe().unwrap())
                .output()
                .expect("objdump (binutils) is installed: scripts/test.sh installs it");
            assert!(out.status.success(), "objdump failed: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        };
        let exe = std::env::current_exe().unwrap();
        let count =
            symbols(&exe, &|n, kind| (kind == STT_OBJECT && is_path(n, GLOBAL_COUNT_PATH)).then_some(0)).unwrap();
        let &[(_, count, _)] = count.as_slice() else { panic!("GLOBAL_PANIC_COUNT: {count:?}") };
        // Position-independent code reaches the count through GOT slots (R_X86_64_RELATIVE
        // relocations whose addend is its address); other code names it directly.
        let mut targets: Vec<u64> = objdump(&["-R"])
            .lines()
            .filter(|l| l.contains("R_X86_64_RELATIVE"))
            .filter_map(|l| {
                let (slot, addend) = (l.split_whitespace().next()?, l.rsplit_once("*ABS*+0x")?.1);
                (u64::from_str_radix(addend, 16).ok()? == count).then(|| u64::from_str_radix(slot, 16).ok())?
            })
            .collect();
        targets.push(count);
        let names: Vec<String> = targets.iter().map(|t| format!(" {t:x} <")).collect();
        // A writer: a locked read-modify-write of the count, directly or through the register a
        // GOT slot was loaded into by the instruction before.
        let mut function = String::new();
        let mut via: Option<String> = None;
        let mut writers = std::collections::BTreeSet::new();
        for line in objdump(&["-d", "--no-show-raw-insn", "-C"]).lines() {
            if line.ends_with(">:") {
                function = line.split_once('<').map_or(line, |(_, f)| f.trim_end_matches(">:")).to_string();
                via = None;
                continue;
            }
            let names_count = names.iter().any(|n| line.contains(n.as_str()));
            let through_slot = via.take().is_some_and(|reg| line.contains(&format!("({reg})")));
            if line.contains("lock ") && (names_count || through_slot) {
                writers.insert(function.clone());
            } else if names_count && line.contains("mov ") {
                // std's code does the locked update as the very next instruction.
                via = line.split("(%rip),").nth(1).map(|r| r.split_whitespace().next().unwrap_or("").to_string());
            }
        }
        assert!(
            writers.iter().any(|w| w.contains("panic_count::increase")),
            "objdump shows no writer of GLOBAL_PANIC_COUNT, not even increase: the check reads nothing ({writers:?})"
        );
        // objdump -C prints `std::panicking::panic_count::increase` (v0 and legacy alike).
        let demangled: Vec<String> = PATHS
            .iter()
            .map(|p| {
                let mut parts = Vec::new();
                let mut rest = *p;
                while let Some(end) = rest.iter().position(|b| !b.is_ascii_digit()) {
                    let n: usize = std::str::from_utf8(&rest[..end]).unwrap().parse().unwrap();
                    parts.push(std::str::from_utf8(&rest[end..end + n]).unwrap().to_string());
                    rest = &rest[end + n..];
                    if rest.is_empty() {
                        break;
                    }
                }
                parts.join("::")
            })
            .collect();
        // `lang_start_internal` catches `main`'s panic (with `decrease` inlined) on the main OS
        // thread, before any worker exists and after `main` returned: no green thread runs it.
        const NEVER_ON_A_WORKER: [&str; 1] = ["std::rt::lang_start_internal"];
        let uncovered: Vec<_> = writers
            .iter()
            .filter(|w| !demangled.iter().any(|d| w.as_str() == d || w.starts_with(&format!("{d}::h"))))
            .filter(|w| !NEVER_ON_A_WORKER.contains(&w.as_str()))
            .collect();
        assert!(
            uncovered.is_empty(),
            "std functions that write the global panic count, not covered: {uncovered:?} (covered: {demangled:?})"
        );
        eprintln!("writers of GLOBAL_PANIC_COUNT in this binary, all covered: {writers:?}");
    }
}
