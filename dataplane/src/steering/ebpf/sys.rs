//! The `bpf(2)` commands the steering programs need — create a map, update an element, load a
//! program (with the verifier's log on failure) — and a shared mapping of an mmap-able array
//! map. Each `bpf_attr` variant is its own `#[repr(C)]` struct with the kernel's field order;
//! the size passed tells the kernel which prefix of the union it got (the rest reads as zero).

use super::asm::Insn;
use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_PROG_LOAD: libc::c_int = 5;

/// `enum bpf_map_type` values used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    /// `BPF_MAP_TYPE_ARRAY`.
    Array = 2,
    /// `BPF_MAP_TYPE_LRU_HASH`.
    LruHash = 9,
    /// `BPF_MAP_TYPE_REUSEPORT_SOCKARRAY`.
    ReuseportSockarray = 20,
}

/// `BPF_F_MMAPABLE`: the array's values can be mapped into user memory.
pub const F_MMAPABLE: u32 = 1 << 10;
/// `BPF_PROG_TYPE_SK_REUSEPORT`.
pub const PROG_TYPE_SK_REUSEPORT: u32 = 21;
/// `BPF_ANY`: create or replace.
pub const ANY: u64 = 0;

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// Runs bpf(cmd, attr); the kernel reads `attr` (and what it points to) during the call only.
///
/// # Safety
/// `T` must be a prefix of the kernel's `union bpf_attr` for `cmd`, and every pointer in it must
/// be valid for what the kernel does with it for the duration of the call.
unsafe fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller's contract; the size tells the kernel how much of the union it got.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>() as u32) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    // At most 15 bytes: the kernel wants a terminating zero; names are ASCII identifiers here.
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = b;
    }
    out
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) => " (loading eBPF needs root: CAP_BPF and CAP_NET_ADMIN)",
        _ => "",
    };
    io::Error::new(e.kind(), format!("{what}: {e}{hint}"))
}

/// A new map; `name` shows in `bpftool map`.
pub fn map_create(
    ty: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: ty as u32,
        key_size,
        value_size,
        max_entries,
        map_flags: flags,
        map_name: name16(name),
        ..MapCreateAttr::default()
    };
    // SAFETY: MapCreateAttr is the MAP_CREATE prefix of bpf_attr and holds no pointers.
    let fd =
        unsafe { bpf(BPF_MAP_CREATE, &mut attr) }.map_err(|e| with_context(e, &format!("bpf(MAP_CREATE {name})")))?;
    // SAFETY: MAP_CREATE returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sets `map[key] = value` (sizes as the map was created with: the kernel reads exactly those).
pub fn map_update<K, V>(map: &OwnedFd, key: &K, value: &V, flags: u64) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key as *const K as u64,
        value: value as *const V as u64,
        flags,
    };
    // SAFETY: MapElemAttr is the MAP_UPDATE_ELEM prefix; key and value point to live values of
    // the types the caller sized the map for, read by the kernel during the call.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop).map_err(|e| with_context(e, "bpf(MAP_UPDATE_ELEM)"))
}

/// Loads `insns` as a program of `prog_type`. On rejection the error carries the verifier's log.
pub fn prog_load(prog_type: u32, insns: &[Insn], name: &str) -> io::Result<OwnedFd> {
    // "Dual MIT/GPL" is the project's licence in the kernel's spelling of a GPL-compatible one.
    const LICENSE: &[u8] = b"Dual MIT/GPL\0";
    let load = |log: &mut [u8]| {
        let mut attr = ProgLoadAttr {
            prog_type,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: LICENSE.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: log.len() as u32,
            // No log: a null buffer (the kernel refuses a buffer with a size of zero).
            log_buf: if log.is_empty() { 0 } else { log.as_mut_ptr() as u64 },
            prog_name: name16(name),
            ..ProgLoadAttr::default()
        };
        // SAFETY: ProgLoadAttr is the PROG_LOAD prefix; insns, the licence and the log buffer are
        // live for the call and sized as stated.
        unsafe { bpf(BPF_PROG_LOAD, &mut attr) }
    };
    match load(&mut []) {
        // SAFETY: PROG_LOAD returned a new file descriptor that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            // Load again with the log on, to say why.
            let mut log = vec![0u8; 1 << 16];
            let again = load(&mut log);
            let text =
                String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(log.len())]).into_owned();
            if let Ok(fd) = again {
                // SAFETY: as above.
                drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            }
            let tail: String =
                text.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            Err(io::Error::new(
                e.kind(),
                format!("{}\nverifier log (last lines):\n{tail}", with_context(e, &format!("bpf(PROG_LOAD {name})"))),
            ))
        }
    }
}

/// A shared, writable mapping of an mmap-able array map's values (`F_MMAPABLE`): user space and
/// the program see the same memory, so updating a value costs a store, not a system call.
pub struct MappedArray {
    ptr: NonNull<c_void>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; the accessors hand out atomics only.
unsafe impl Send for MappedArray {}
// SAFETY: as above.
unsafe impl Sync for MappedArray {}

impl MappedArray {
    /// Maps the first `len` bytes of `map`'s values (rounded up to a page by the kernel).
    pub fn new(map: &OwnedFd, len: usize) -> io::Result<MappedArray> {
        // SAFETY: a fresh shared mapping of the map's file; the kernel checks the length against
        // the map's value area and the map's mmap-ability.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(with_context(io::Error::last_os_error(), "mmap(eBPF array map)"));
        }
        Ok(MappedArray { ptr: NonNull::new(p).expect("mmap never returns null on success"), len })
    }

    /// The 64-bit word at byte `offset` (8-aligned, inside the mapping).
    pub fn word(&self, offset: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(
            offset.is_multiple_of(8) && offset + 8 <= self.len,
            "word at {offset} outside the {}-byte mapping",
            self.len
        );
        // SAFETY: in bounds and aligned (the mapping is page-aligned); the memory lives as long as
        // `self`; the kernel's program accesses it with plain and atomic 64-bit operations only.
        unsafe { &*(self.ptr.as_ptr().cast::<u8>().add(offset).cast::<std::sync::atomic::AtomicU64>()) }
    }
}

impl Drop for MappedArray {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no reference outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr(), self.len) };
    }
}
