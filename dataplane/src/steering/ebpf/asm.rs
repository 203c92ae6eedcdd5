//! A small assembler for the eBPF instruction set (Documentation/bpf/standardization/
//! instruction-set.rst): the encodings the steering programs use, and forward jumps to labels.
//! The kernel's verifier checks the result at load time; this module only gets the bits right.

/// One 8-byte eBPF instruction (`struct bpf_insn`): opcode, dst and src registers in one byte
/// (dst in the low nibble on little-endian hosts), a signed offset and a signed immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode: class, size or operation, and source bits.
    pub code: u8,
    /// dst register (low nibble) and src register (high nibble).
    pub regs: u8,
    /// Signed offset (memory accesses, jumps).
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

/// A register: r0 return value, r1-r5 arguments (clobbered by calls), r6-r9 callee-saved, r10 the
/// read-only frame pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub u8);

/// Register R0: return value.
pub const R0: Reg = Reg(0);
/// Register R1: first argument; the program context on entry.
pub const R1: Reg = Reg(1);
/// Register R2: second argument.
pub const R2: Reg = Reg(2);
/// Register R3: third argument.
pub const R3: Reg = Reg(3);
/// Register R4: fourth argument.
pub const R4: Reg = Reg(4);
/// Register R6: callee-saved.
pub const R6: Reg = Reg(6);
/// Register R7: callee-saved.
pub const R7: Reg = Reg(7);
/// Register R8: callee-saved.
pub const R8: Reg = Reg(8);
/// Register R9: callee-saved.
pub const R9: Reg = Reg(9);
/// Register FP: the read-only frame pointer (r10).
pub const FP: Reg = Reg(10);

// Instruction classes, sizes, modes and sources.
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const DW: u8 = 0x18;
const IMM: u8 = 0x00;
const MEM: u8 = 0x60;
const ATOMIC: u8 = 0xc0;
const K: u8 = 0x00;
const X: u8 = 0x08;

/// Memory access sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// 32 bits.
    W = 0x00,
    /// 64 bits.
    DW = 0x18,
}

/// ALU operations (64-bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alu {
    /// `dst += src`.
    Add = 0x00,
    /// `dst -= src`.
    Sub = 0x10,
    /// `dst &= src`.
    And = 0x50,
    /// `dst >>= src` (logical).
    Rsh = 0x70,
    /// `dst %= src` (unsigned).
    Mod = 0x90,
    /// `dst = src`.
    Mov = 0xb0,
}

/// Jump conditions (64-bit, unsigned comparisons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// `==`.
    Eq = 0x10,
    /// `>` (unsigned).
    Gt = 0x20,
    /// `>=` (unsigned).
    Ge = 0x30,
    /// `!=`.
    Ne = 0x50,
    /// `<` (unsigned).
    Lt = 0xa0,
}

const JA: u8 = 0x00;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
/// Atomic operations' immediates: add, and compare-and-exchange (which always fetches into r0).
const ATOMIC_ADD: i32 = 0x00;
const ATOMIC_CMPXCHG: i32 = 0xf0 | 0x01;
/// `src_reg` of a 64-bit immediate load that names a map by file descriptor.
const PSEUDO_MAP_FD: u8 = 1;

/// Kernel helpers the programs call (`enum bpf_func_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Helper {
    /// `bpf_map_lookup_elem`.
    MapLookupElem = 1,
    /// `bpf_map_update_elem`.
    MapUpdateElem = 2,
    /// `bpf_ktime_get_ns`.
    KtimeGetNs = 5,
    /// `bpf_get_prandom_u32`.
    GetPrandomU32 = 7,
    /// `bpf_skb_load_bytes`.
    SkbLoadBytes = 26,
    /// `bpf_sk_select_reuseport`.
    SkSelectReuseport = 82,
}

/// A jump target, placed once with `Asm::label`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// A program under construction.
#[derive(Default)]
pub struct Asm {
    insns: Vec<Insn>,
    /// Where each label was placed (instruction index), once placed.
    labels: Vec<Option<usize>>,
    /// Jumps waiting for their label: (instruction index, label).
    fixups: Vec<(usize, Label)>,
}

fn insn(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src.0 << 4) | (dst.0 & 0x0f), off, imm }
}

impl Asm {
    /// An empty program.
    pub fn new() -> Asm {
        Asm::default()
    }

    /// A new label, to be placed once with `label`.
    pub fn new_label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `l` at the next instruction.
    pub fn label(&mut self, l: Label) {
        assert!(self.labels[l.0].is_none(), "label placed twice");
        self.labels[l.0] = Some(self.insns.len());
    }

    fn push(&mut self, i: Insn) -> &mut Asm {
        self.insns.push(i);
        self
    }

    /// `dst op= imm`.
    pub fn alu_imm(&mut self, op: Alu, dst: Reg, imm: i32) -> &mut Asm {
        self.push(insn(ALU64 | op as u8 | K, dst, R0, 0, imm))
    }

    /// `dst op= src`.
    pub fn alu_reg(&mut self, op: Alu, dst: Reg, src: Reg) -> &mut Asm {
        self.push(insn(ALU64 | op as u8 | X, dst, src, 0, 0))
    }

    /// `dst = imm` (sign-extended to 64 bits).
    pub fn mov_imm(&mut self, dst: Reg, imm: i32) -> &mut Asm {
        self.alu_imm(Alu::Mov, dst, imm)
    }

    /// `dst = src`.
    pub fn mov(&mut self, dst: Reg, src: Reg) -> &mut Asm {
        self.alu_reg(Alu::Mov, dst, src)
    }

    /// `dst = imm` for any 64-bit value (a two-slot instruction).
    pub fn load_imm64(&mut self, dst: Reg, imm: u64) -> &mut Asm {
        self.push(insn(LD | DW | IMM, dst, R0, 0, imm as u32 as i32));
        self.push(insn(0, R0, R0, 0, (imm >> 32) as u32 as i32))
    }

    /// `dst = the map whose file descriptor is fd` (the kernel swaps in its address at load).
    pub fn load_map(&mut self, dst: Reg, fd: i32) -> &mut Asm {
        self.push(insn(LD | DW | IMM, dst, Reg(PSEUDO_MAP_FD), 0, fd));
        self.push(insn(0, R0, R0, 0, 0))
    }

    /// `dst = *(size *)(src + off)`.
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Asm {
        self.push(insn(LDX | MEM | size as u8, dst, src, off, 0))
    }

    /// `*(size *)(dst + off) = src`.
    pub fn store(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Asm {
        self.push(insn(STX | MEM | size as u8, dst, src, off, 0))
    }

    /// `*(size *)(dst + off) = imm`.
    pub fn store_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) -> &mut Asm {
        self.push(insn(ST | MEM | size as u8, dst, R0, off, imm))
    }

    /// `*(u64 *)(dst + off) += src`, atomically.
    pub fn atomic_add64(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Asm {
        self.push(insn(STX | ATOMIC | DW, dst, src, off, ATOMIC_ADD))
    }

    /// Atomically: `old = *(u64 *)(dst + off); if old == r0 { *(..) = src }; r0 = old`.
    pub fn cmpxchg64(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Asm {
        self.push(insn(STX | ATOMIC | DW, dst, src, off, ATOMIC_CMPXCHG))
    }

    fn jump_to(&mut self, code: u8, dst: Reg, src: Reg, imm: i32, to: Label) -> &mut Asm {
        self.fixups.push((self.insns.len(), to));
        self.push(insn(code, dst, src, 0, imm))
    }

    /// `goto to`.
    pub fn ja(&mut self, to: Label) -> &mut Asm {
        self.jump_to(JMP | JA, R0, R0, 0, to)
    }

    /// `if dst cond imm goto to`.
    pub fn jump_imm(&mut self, cond: Cond, dst: Reg, imm: i32, to: Label) -> &mut Asm {
        self.jump_to(JMP | cond as u8 | K, dst, R0, imm, to)
    }

    /// `if dst cond src goto to`.
    pub fn jump_reg(&mut self, cond: Cond, dst: Reg, src: Reg, to: Label) -> &mut Asm {
        self.jump_to(JMP | cond as u8 | X, dst, src, 0, to)
    }

    /// Calls kernel helper `helper` (arguments in r1-r5, result in r0).
    pub fn call(&mut self, helper: Helper) -> &mut Asm {
        self.push(insn(JMP | CALL, R0, R0, 0, helper as i32))
    }

    /// Returns r0.
    pub fn exit(&mut self) -> &mut Asm {
        self.push(insn(JMP | EXIT, R0, R0, 0, 0))
    }

    /// The finished program: every jump resolved (offsets count from the next instruction).
    /// Panics on a label used but never placed, or a jump farther than 32 767 instructions: both
    /// are bugs of the program generator, not of its input.
    pub fn finish(mut self) -> Vec<Insn> {
        for &(at, l) in &self.fixups {
            let target = self.labels[l.0].expect("jump to a label never placed");
            let off = target as isize - at as isize - 1;
            self.insns[at].off = i16::try_from(off).expect("jump within 32 767 instructions");
        }
        self.insns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_the_instruction_set() {
        let mut a = Asm::new();
        let end = a.new_label();
        a.mov_imm(R0, 1) // b7 00 .. 01
            .jump_imm(Cond::Eq, R1, 7, end) // 15 01 off imm 7
            .load(Size::W, R2, FP, -8) // 61 a2 f8ff
            .load_imm64(R3, 0x1_0000_0002)
            .cmpxchg64(R7, 0, R2); // db 27 imm f1
        a.label(end);
        a.exit();
        let p = a.finish();
        assert_eq!((p[0].code, p[0].regs, p[0].imm), (0xb7, 0x00, 1));
        assert_eq!((p[1].code, p[1].regs, p[1].off, p[1].imm), (0x15, 0x01, 4, 7), "to the exit at 6");
        assert_eq!((p[2].code, p[2].regs, p[2].off), (0x61, 0xa2, -8));
        assert_eq!((p[3].code, p[3].regs, p[3].imm, p[4].imm), (0x18, 0x03, 2, 1));
        assert_eq!((p[5].code, p[5].regs, p[5].imm), (0xdb, 0x27, 0xf1));
        assert_eq!(p[6].code, 0x95);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    #[should_panic(expected = "never placed")]
    fn an_unplaced_label_is_a_generator_bug() {
        let mut a = Asm::new();
        let l = a.new_label();
        a.ja(l);
        a.finish();
    }
}
