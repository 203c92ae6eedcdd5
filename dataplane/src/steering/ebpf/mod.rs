//! Stateful ingress steering in eBPF (issue 19; Syrup's socket-selection layer): a
//! `BPF_PROG_TYPE_SK_REUSEPORT` program attached to the transport's SO_REUSEPORT group picks a
//! socket from a `REUSEPORT_SOCKARRAY` (index = worker), reading state that user space shares with
//! it through an mmap-able array.
//!
//! Why no loader crate: loaders such as aya load ELF objects, which would need a second compiler
//! (clang for C, or nightly Rust with bpf-linker) in every build of this workspace. These
//! programs are a few dozen instructions generated per group (socket count, kinds and rates are
//! immediates), so they are assembled here (`asm`) and loaded with three `bpf(2)` commands
//! (`sys`); the kernel's verifier checks them at load, and a rejection reports its log.
//!
//! Loading needs root (CAP_BPF and CAP_NET_ADMIN) and a kernel with `BPF_F_MMAPABLE` (5.5) and
//! atomic compare-and-exchange (5.12).

pub mod asm;
pub mod programs;
pub mod sys;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use sys::{MapType, MappedArray};

/// `SO_ATTACH_REUSEPORT_EBPF` (asm-generic/socket.h).
const SO_ATTACH_REUSEPORT_EBPF: libc::c_int = 52;
/// Flows the token-bucket table remembers; the least recently seen are forgotten beyond that
/// (and start again with a full bucket).
pub const BUCKET_FLOWS: u32 = 65_536;

/// Which program to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// Avoid the sockets whose workers run a long request, for requests of the other kinds (`long_kinds`).
    ScanAvoid {
        /// The request kinds that are long.
        long_kinds: Vec<u32>,
    },
    /// Per-flow token buckets: one datagram every `interval_ns`, `burst` at once; over the rate, dropped.
    TenantTokens {
        /// Nanoseconds between two datagrams of a flow at its rate.
        interval_ns: u32,
        /// Datagrams a flow may send at once.
        burst: u32,
    },
}

/// A program attached to a socket group, with its maps. Dropping it detaches nothing (the
/// program stays attached to the group until its sockets close) but releases user space's
/// handles; the kernel keeps what the attached program still refers to.
pub struct Attached {
    _program: OwnedFd,
    _sockets: OwnedFd,
    _state: OwnedFd,
    _buckets: Option<OwnedFd>,
    shared: MappedArray,
}

impl Attached {
    /// Loads `program` for `sockets` (every socket of the group, worker 0 first) and attaches
    /// it to their group.
    pub fn load(program: &Program, sockets: &[OwnedFd]) -> io::Result<Attached> {
        let n = u32::try_from(sockets.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many sockets"))?;
        let socket_map = sys::map_create(MapType::ReuseportSockarray, 4, 8, n, 0, "synergy_socks")?;
        for (i, fd) in sockets.iter().enumerate() {
            sys::map_update(&socket_map, &(i as u32), &(fd.as_raw_fd() as u64), sys::ANY)?;
        }
        let state = sys::map_create(MapType::Array, 4, programs::STATE_LEN, 1, sys::F_MMAPABLE, "synergy_state")?;
        let shared = MappedArray::new(&state, programs::STATE_LEN as usize)?;
        let buckets = match program {
            Program::TenantTokens { .. } => {
                Some(sys::map_create(MapType::LruHash, 4, 8, BUCKET_FLOWS, 0, "synergy_tokens")?)
            }
            Program::ScanAvoid { .. } => None,
        };
        let maps = programs::Maps {
            sockets: socket_map.as_raw_fd(),
            state: state.as_raw_fd(),
            buckets: buckets.as_ref().map(|b| b.as_raw_fd()),
        };
        let (insns, name) = match program {
            Program::ScanAvoid { long_kinds } => {
                (programs::scan_avoid(&maps, sockets.len(), long_kinds), "synergy_scanav")
            }
            Program::TenantTokens { interval_ns, burst } => {
                (programs::tenant_tokens(&maps, *interval_ns, *burst), "synergy_tokens")
            }
        };
        let prog = sys::prog_load(sys::PROG_TYPE_SK_REUSEPORT, &insns, name)?;
        let fd = prog.as_raw_fd();
        // SAFETY: SO_ATTACH_REUSEPORT_EBPF takes the program's descriptor as an int, read
        // during the call.
        unsafe {
            super::set_socket_option(&sockets[0], SO_ATTACH_REUSEPORT_EBPF, &fd, "SO_ATTACH_REUSEPORT_EBPF", name)?
        };
        Ok(Attached { _program: prog, _sockets: socket_map, _state: state, _buckets: buckets, shared })
    }

    /// Tells SCAN-avoid whether `worker` runs a long request now (workers past 64 are not
    /// tracked: the program only steers among the first 64 sockets).
    pub fn set_busy(&self, worker: usize, busy: bool) {
        if worker >= programs::MAX_SCAN_AVOID_SOCKETS {
            return;
        }
        let word = self.shared.word(programs::BUSY_AT as usize);
        // Relaxed: the program reads a snapshot that is stale by a datagram or two anyway.
        if busy {
            word.fetch_or(1 << worker, Ordering::Relaxed);
        } else {
            word.fetch_and(!(1 << worker), Ordering::Relaxed);
        }
    }

    /// Which workers the program sees busy (bit w: worker w).
    pub fn busy(&self) -> u64 {
        self.shared.word(programs::BUSY_AT as usize).load(Ordering::Relaxed)
    }

    /// Datagrams the program dropped (over their tenant's rate).
    pub fn dropped(&self) -> u64 {
        self.shared.word(programs::DROPPED_AT as usize).load(Ordering::Relaxed)
    }
}
