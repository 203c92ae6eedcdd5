//! Classic BPF programs for the stateless steering policies (`random`, `sita`), attached with
//! `SO_ATTACH_REUSEPORT_CBPF`. The program sees the UDP payload from its first byte (the kernel
//! pulls the UDP header before running it) and returns the index of a socket in the group; an
//! index past the group, or a load past the datagram's end, falls back to the kernel's hash.

use super::Steering;
use crate::protocol::REQUEST_KIND_OFFSET;
use std::io;
use std::os::fd::OwnedFd;

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
const BPF_LD: u16 = 0x00;
const BPF_ALU: u16 = 0x04;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_ADD: u16 = 0x00;
const BPF_MOD: u16 = 0x90;
const BPF_JEQ: u16 = 0x10;
const BPF_K: u16 = 0x00;
const BPF_A: u16 = 0x10;
/// Ancillary load of a random u32 (`SKF_AD_OFF + SKF_AD_RANDOM`).
const SKF_AD_RANDOM_K: u32 = (-0x1000i32 + 56) as u32;
/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic/socket.h).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The classic BPF program of `steering` for a group of `sockets` sockets, or None where the
/// kernel's hash does the same (hash, one socket) or the policy needs eBPF.
pub fn program(steering: &Steering, sockets: usize) -> Option<Vec<libc::sock_filter>> {
    let n = u32::try_from(sockets).ok()?;
    match steering {
        Steering::Hash | Steering::ScanAvoid { .. } | Steering::TenantTokens { .. } => None,
        _ if n <= 1 => None,
        Steering::Random => Some(vec![
            stmt(BPF_LD | BPF_W | BPF_ABS, SKF_AD_RANDOM_K),
            stmt(BPF_ALU | BPF_MOD | BPF_K, n),
            stmt(BPF_RET | BPF_A, 0),
        ]),
        Steering::Sita { long_kinds } => {
            // A = the kind field as the big-endian load sees it; each long kind jumps to
            // `return 0`; otherwise 1 + random % (n - 1).
            let k = long_kinds.len();
            let mut p = vec![stmt(BPF_LD | BPF_W | BPF_ABS, REQUEST_KIND_OFFSET as u32)];
            for (i, kind) in long_kinds.iter().enumerate() {
                // Jump offsets count from the next instruction; `return 0` is the last one.
                let to_ret0 = u8::try_from(k - i + 3).ok()?;
                p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, kind.swap_bytes(), to_ret0, 0));
            }
            p.extend([
                stmt(BPF_LD | BPF_W | BPF_ABS, SKF_AD_RANDOM_K),
                stmt(BPF_ALU | BPF_MOD | BPF_K, n - 1),
                stmt(BPF_ALU | BPF_ADD | BPF_K, 1),
                stmt(BPF_RET | BPF_A, 0),
                stmt(BPF_RET | BPF_K, 0),
            ]);
            Some(p)
        }
    }
}

/// Attaches `program` to the reuseport group `fd` belongs to (any one socket of it).
pub fn attach(name: &str, mut program: Vec<libc::sock_filter>, fd: &OwnedFd) -> io::Result<()> {
    let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_mut_ptr() };
    // SAFETY: SO_ATTACH_REUSEPORT_CBPF takes a sock_fprog; the kernel copies it and the
    // instructions it points to (alive in `program`) during the call.
    unsafe { super::set_socket_option(fd, SO_ATTACH_REUSEPORT_CBPF, &prog, "SO_ATTACH_REUSEPORT_CBPF", name) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sita_jumps_land_on_return_zero() {
        let p = program(&Steering::Sita { long_kinds: vec![1, 7] }, 4).unwrap();
        let ret0 = p.len() - 1;
        assert_eq!((p[ret0].code, p[ret0].k), (BPF_RET | BPF_K, 0));
        for (i, ins) in p.iter().enumerate().filter(|(_, ins)| ins.code == BPF_JMP | BPF_JEQ | BPF_K) {
            assert_eq!(i + 1 + ins.jt as usize, ret0, "jump at {i}");
        }
        assert_eq!(p[1].k, 1u32.swap_bytes());
        assert!(program(&Steering::Random, 1).is_none() && program(&Steering::Hash, 8).is_none());
    }
}
