//! The stateful steering programs (`BPF_PROG_TYPE_SK_REUSEPORT`), generated for one group:
//! the socket count, the long kinds and the bucket parameters are immediates, so each program
//! is straight-line code the verifier checks in one pass.
//!
//! Both read the request from the UDP payload with `bpf_skb_load_bytes` (the kernel runs the
//! program with `skb->data` at the UDP header, so payload byte `o` is at `UDP_HEADER_LEN + o`), and
//! a datagram too short to hold the field is passed to the kernel's hash: the server counts and
//! answers it as malformed, nothing is lost silently.
//!
//! The state map is one value of `STATE_LEN` bytes, mmap-able: `busy` (bit w: worker w runs a
//! long request, written by the runtime through `Transport::long_request`) and `dropped`
//! (datagrams the program dropped, an atomic add).

use super::asm::{Alu, Asm, Cond, Helper, Label, Size, FP, R0, R1, R2, R3, R4, R6, R7, R8, R9};
use crate::protocol::REQUEST_KIND_OFFSET;

/// The UDP header the program's offsets start at.
pub const UDP_HEADER_LEN: i32 = 8;
/// Byte offset of a request's `flow` (its session: the tenant a token bucket is kept for).
pub const REQUEST_FLOW_OFFSET: i32 = 20;
/// Offsets in the state value, and its size.
pub const BUSY_AT: i16 = 0;
/// Offset in the state value of the count of datagrams dropped.
pub const DROPPED_AT: i16 = 8;
/// Bytes of the state value.
pub const STATE_LEN: u32 = 16;
/// Most sockets SCAN-avoid tracks: one bit each in `busy`.
pub const MAX_SCAN_AVOID_SOCKETS: usize = 64;
/// Tries of the bucket's compare-and-exchange before a datagram counts as over the rate: each
/// failure means another CPU updated the same flow's bucket between the read and the exchange.
pub const BUCKET_TRIES: usize = 4;

const SK_PASS: i32 = 1;
const SK_DROP: i32 = 0;
/// `BPF_NOEXIST`: insert only if the key is absent.
const NOEXIST: i32 = 1;

// Stack slots (offsets from the frame pointer).
const SLOT_SOCKET: i16 = -4;
const SLOT_FIELD: i16 = -8;
const SLOT_NEW_BUCKET: i16 = -16;
const SLOT_STATE_KEY: i16 = -20;

/// The maps a program refers to, by file descriptor (the kernel resolves them at load).
pub struct Maps {
    /// The REUSEPORT_SOCKARRAY of the group's sockets.
    pub sockets: i32,
    /// The one-element state array (busy bits, drop count).
    pub state: i32,
    /// The per-flow token buckets (LRU hash: u32 flow → u64 theoretical arrival time).
    pub buckets: Option<i32>,
}

/// `r6 = ctx` and the payload's u32 at `offset` into `SLOT_FIELD`; a load past the end jumps
/// to `pass`.
fn prologue_load_u32(a: &mut Asm, offset: i32, pass: Label) {
    a.mov(R6, R1);
    a.mov(R1, R6).mov_imm(R2, UDP_HEADER_LEN + offset).mov(R3, FP).alu_imm(Alu::Add, R3, SLOT_FIELD.into());
    a.mov_imm(R4, 4).call(Helper::SkbLoadBytes);
    a.jump_imm(Cond::Ne, R0, 0, pass);
}

/// `r0 = &state` or jump to `missing` (the lookup of key 0 in a one-entry array cannot fail, but
/// the verifier wants the null check).
fn lookup_state(a: &mut Asm, state: i32, missing: Label) {
    a.store_imm(Size::W, FP, SLOT_STATE_KEY, 0);
    a.load_map(R1, state).mov(R2, FP).alu_imm(Alu::Add, R2, SLOT_STATE_KEY.into());
    a.call(Helper::MapLookupElem).jump_imm(Cond::Eq, R0, 0, missing);
}

/// Selects socket `r1` and passes.
fn select_and_pass(a: &mut Asm, sockets: i32, pass: Label) {
    a.store(Size::W, FP, SLOT_SOCKET, R1);
    a.mov(R1, R6).load_map(R2, sockets).mov(R3, FP).alu_imm(Alu::Add, R3, SLOT_SOCKET.into()).mov_imm(R4, 0);
    // A failed selection (the socket closed meanwhile) still passes: the kernel then hashes.
    a.call(Helper::SkSelectReuseport);
    a.label(pass);
    a.mov_imm(R0, SK_PASS).exit();
}

/// SCAN-avoid (Syrup's Fig. 6 policy): a request of a long kind goes to a random socket; any
/// other to the first socket, from a random start, whose worker runs no long request; to the
/// random start if all do. `sockets` is 2..=MAX_SCAN_AVOID_SOCKETS; kinds compare as u32.
pub fn scan_avoid(maps: &Maps, sockets: usize, long_kinds: &[u32]) -> Vec<super::asm::Insn> {
    assert!((2..=MAX_SCAN_AVOID_SOCKETS).contains(&sockets), "scan-avoid over {sockets} sockets");
    let n = sockets as i32;
    let mut a = Asm::new();
    let (pass, random, select) = (a.new_label(), a.new_label(), a.new_label());
    prologue_load_u32(&mut a, REQUEST_KIND_OFFSET as i32, pass);
    a.load(Size::W, R7, FP, SLOT_FIELD);
    for &kind in long_kinds {
        a.load_imm64(R1, u64::from(kind)).jump_reg(Cond::Eq, R7, R1, random);
    }
    lookup_state(&mut a, maps.state, random);
    a.load(Size::DW, R8, R0, BUSY_AT);
    a.call(Helper::GetPrandomU32).alu_imm(Alu::Mod, R0, n).mov(R9, R0);
    for i in 0..n {
        // r1 = (start + i) mod n, without a division.
        a.mov(R1, R9).alu_imm(Alu::Add, R1, i);
        let in_range = a.new_label();
        a.jump_imm(Cond::Lt, R1, n, in_range).alu_imm(Alu::Sub, R1, n);
        a.label(in_range);
        a.mov(R2, R8).alu_reg(Alu::Rsh, R2, R1).alu_imm(Alu::And, R2, 1).jump_imm(Cond::Eq, R2, 0, select);
    }
    a.mov(R1, R9).ja(select);
    a.label(random);
    a.call(Helper::GetPrandomU32).alu_imm(Alu::Mod, R0, n).mov(R1, R0);
    a.label(select);
    select_and_pass(&mut a, maps.sockets, pass);
    a.finish()
}

/// Per-tenant token buckets: each flow may send `burst` datagrams at once and `1 / interval_ns`
/// per nanosecond after that; the rest are dropped (and counted). Passed datagrams are spread
/// by the kernel's hash. The bucket is GCRA's single timestamp (the theoretical arrival time,
/// TAT): a datagram at `now` passes if `max(TAT, now) + interval - now <= burst × interval`,
/// and then moves TAT there, by compare-and-exchange so CPUs serving the same flow agree.
pub fn tenant_tokens(maps: &Maps, interval_ns: u32, burst: u32) -> Vec<super::asm::Insn> {
    let buckets = maps.buckets.expect("tenant_tokens needs the bucket map");
    assert!(interval_ns > 0 && interval_ns <= i32::MAX as u32 && burst > 0, "interval {interval_ns} ns, burst {burst}");
    let limit = u64::from(interval_ns) * u64::from(burst);
    let t = interval_ns as i32;
    let mut a = Asm::new();
    let (pass, insert, drop, dropped_counted) = (a.new_label(), a.new_label(), a.new_label(), a.new_label());
    prologue_load_u32(&mut a, REQUEST_FLOW_OFFSET, pass);
    a.load_map(R1, buckets).mov(R2, FP).alu_imm(Alu::Add, R2, SLOT_FIELD.into());
    a.call(Helper::MapLookupElem).jump_imm(Cond::Eq, R0, 0, insert);
    a.mov(R7, R0);
    a.call(Helper::KtimeGetNs).mov(R8, R0);
    a.load_imm64(R9, limit);
    for _ in 0..BUCKET_TRIES {
        let later = a.new_label();
        a.load(Size::DW, R1, R7, 0);
        a.mov(R2, R1).jump_reg(Cond::Ge, R2, R8, later).mov(R2, R8);
        a.label(later);
        a.alu_imm(Alu::Add, R2, t);
        a.mov(R3, R2).alu_reg(Alu::Sub, R3, R8).jump_reg(Cond::Gt, R3, R9, drop);
        a.mov(R0, R1).cmpxchg64(R7, 0, R2).jump_reg(Cond::Eq, R0, R1, pass);
    }
    a.ja(drop);
    // A flow's first datagram: a full bucket less this one. Losing the insert to another CPU
    // lets this datagram pass too: it is within any burst of at least two.
    a.label(insert);
    a.call(Helper::KtimeGetNs).alu_imm(Alu::Add, R0, t).store(Size::DW, FP, SLOT_NEW_BUCKET, R0);
    a.load_map(R1, buckets).mov(R2, FP).alu_imm(Alu::Add, R2, SLOT_FIELD.into());
    a.mov(R3, FP).alu_imm(Alu::Add, R3, SLOT_NEW_BUCKET.into()).mov_imm(R4, NOEXIST);
    a.call(Helper::MapUpdateElem).ja(pass);
    a.label(drop);
    lookup_state(&mut a, maps.state, dropped_counted);
    a.mov_imm(R1, 1).atomic_add64(R0, DROPPED_AT, R1);
    a.label(dropped_counted);
    a.mov_imm(R0, SK_DROP).exit();
    a.label(pass);
    a.mov_imm(R0, SK_PASS).exit();
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps() -> Maps {
        Maps { sockets: 3, state: 4, buckets: Some(5) }
    }

    /// The programs end in exits and every jump lands inside them (the verifier's first check).
    #[test]
    fn jumps_stay_inside_and_programs_end_in_exit() {
        for p in
            [scan_avoid(&maps(), 64, &[1, 0xffff_ffff]), scan_avoid(&maps(), 2, &[]), tenant_tokens(&maps(), 1_000, 8)]
        {
            assert_eq!(p.last().unwrap().code, 0x95);
            for (i, ins) in p.iter().enumerate() {
                if ins.code & 0x07 == 0x05 && ins.code != 0x85 && ins.code != 0x95 {
                    let to = i as isize + 1 + ins.off as isize;
                    assert!((0..p.len() as isize).contains(&to), "jump at {i} to {to}");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "scan-avoid over 65 sockets")]
    fn scan_avoid_tracks_at_most_64_sockets() {
        scan_avoid(&maps(), 65, &[]);
    }
}
