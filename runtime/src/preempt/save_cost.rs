//! What the preemption entry's extended-state save costs (issue 23): the entry's XSAVE/XSAVEC +
//! XRSTOR pair, timed in a loop with a chosen set of state components live, and the bytes each
//! save writes. `synergy bench xsave` reports it next to the whole interrupt path.
//!
//! Each measurement first loads a state in which the chosen components hold values that are *not*
//! their initial configuration (XRSTOR from a standard-form image filled with a pattern), then
//! repeats `save; xrstor` on one 64-byte aligned area, as the entry does.
//!
//! Why non-initial values (issue 38). What the architecture promises about XINUSE, the bitmap
//! XSAVEC consults, is one-way:
//! * Intel SDM Vol. 1 §13.6 "Processor Tracking of XSAVE-Managed State": if XINUSE[i] = 0, state
//!   component i is in its initial configuration; if XINUSE[i] = 1 it may or may not be.
//! * AMD APM Vol. 2 §11.5 ("XSAVE/XRSTOR", the XINUSE and "initialized state" text of XSAVEOPT
//!   and XSAVEC): a component the processor reports as not in use is in its initialized state.
//!
//! So a component loaded with non-initial values is in use on every CPU, but one loaded with its
//! initial values (zeros, for AVX) may be reported either way: Zen 4 clears XINUSE[2] when an
//! XRSTOR loads zero upper halves, Intel parts seen here keep it set. An image of zeros therefore
//! measured different live sets on the two vendors.
//!
//! The bytes a save wrote are found by saving twice over two different canaries (0x00 and 0xFF):
//! a byte the instruction wrote holds the same value both times, a byte it left alone holds the
//! canary, so it differs between the two. Nothing is derived from the bits under test.

use crate::cpu::{self, standard_regions, XsaveFormat};

/// Which state the interrupted code has live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveState {
    /// Scalar/SSE code only (XMM registers and MXCSR).
    Sse,
    /// AVX2 code: the YMM upper halves too.
    Avx2,
    /// AVX-512 code: YMM uppers, opmask, ZMM upper halves and ZMM16-31.
    Avx512,
}

impl LiveState {
    /// Every live state, in the order the benchmark reports them.
    pub const ALL: [LiveState; 3] = [LiveState::Sse, LiveState::Avx2, LiveState::Avx512];

    /// The name the report uses.
    pub fn name(self) -> &'static str {
        match self {
            LiveState::Sse => "sse",
            LiveState::Avx2 => "avx2",
            LiveState::Avx512 => "avx512",
        }
    }

    /// XSTATE_BV of this live set (before masking with XCR0).
    pub fn components(self) -> u64 {
        match self {
            LiveState::Sse => 0b10,
            LiveState::Avx2 => 0b110,
            LiveState::Avx512 => 0b1110_0110,
        }
    }
}

/// x87 (0), SSE (1), AVX (2), opmask (5), ZMM_Hi256 (6), Hi16_ZMM (7): the user state a request's
/// code can change with ordinary instructions. PKRU (9) and AMX (17, 18) are left out on purpose:
/// loading them from a test image would change the thread's memory protection keys or touch tile
/// state the process never asked the kernel for.
pub const REGISTER_COMPONENTS: u64 = 0b1110_0111;

/// One measurement.
#[derive(Debug, Clone)]
pub struct SaveCost {
    /// The save instruction.
    pub format: XsaveFormat,
    /// What was live when it ran.
    pub live: LiveState,
    /// XSTATE_BV the save wrote (the components it found in use).
    pub saved_components: u64,
    /// Bytes the save actually wrote, found with two canaries (see the module's comment).
    pub bytes_written: usize,
    /// Mean time of one save + restore pair.
    pub ns_per_pair: f64,
}

/// A 64-byte aligned, zeroed buffer for XSAVE/XRSTOR (the instructions fault on an unaligned
/// area): the vector, the offset of its first aligned byte, and the length.
pub struct XsaveArea(Vec<u8>, usize, usize);

impl XsaveArea {
    fn new(len: usize) -> XsaveArea {
        let v = vec![0u8; len + 64];
        let off = v.as_ptr().align_offset(64);
        XsaveArea(v, off, len)
    }
    /// An area of the standard size for the components the OS enabled, which holds either
    /// format; None without XSAVE.
    pub fn standard() -> Option<XsaveArea> {
        cpu::xsave_area_size().map(XsaveArea::new)
    }
    /// The area's first byte, for `xsave64`/`xsavec64`/`xrstor64`.
    pub fn ptr(&mut self) -> *mut u8 {
        // SAFETY: `off` < 64 and the vector has `len + 64` bytes.
        unsafe { self.0.as_mut_ptr().add(self.1) }
    }
    /// The area's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0[self.1..self.1 + self.2]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        let (off, len) = (self.1, self.2);
        &mut self.0[off..off + len]
    }
}

/// The byte ranges of a component in the legacy region (SDM Vol. 1 §13.4.1, Table 13-1) that
/// hold register values: x87's ST0-ST7 (10 of each 16-byte slot) and SSE's XMM0-XMM15.
fn legacy_register_bytes(component: u32) -> Vec<std::ops::Range<usize>> {
    match component {
        0 => (0..8).map(|r| 32 + 16 * r..32 + 16 * r + 10).collect(),
        1 => std::iter::once(160..416).collect(),
        _ => Vec::new(),
    }
}

/// A standard-form XSAVE image (64-byte aligned, the standard size) in which exactly the given
/// components are named in XSTATE_BV, MXCSR and the x87 control word at the ABI defaults: an
/// XRSTOR of it loads those components and puts every other requested one in its initial state.
/// Read-only once made.
pub struct XsaveImage(XsaveArea);

impl XsaveImage {
    /// Every register zero: the named components hold their *initial* values, so whether the CPU
    /// then reports them in use is up to the CPU (see the module's comment). Used where a test
    /// needs registers that are known to be zero. None without XSAVE, or if the OS has not
    /// enabled every one of `components` (XCR0).
    pub fn with_components(components: u64) -> Option<XsaveImage> {
        Self::build(components, None)
    }

    /// The named components' registers filled with a pattern made from `seed` (never all zero,
    /// x87 with all eight registers tagged valid): none is in its initial configuration, so after
    /// an XRSTOR of this image each of them is in use on every CPU. Only components 0, 1, 2, 5, 6
    /// and 7 may be named (`REGISTER_COMPONENTS`). None as `with_components`.
    pub fn with_pattern(components: u64, seed: u64) -> Option<XsaveImage> {
        assert_eq!(components & !REGISTER_COMPONENTS, 0, "only register components get a pattern");
        Self::build(components, Some(seed))
    }

    fn build(components: u64, seed: Option<u64>) -> Option<XsaveImage> {
        let standard = cpu::xsave_area_size()?;
        if cpu::enabled_components() & components != components {
            return None;
        }
        let mut area = XsaveArea::new(standard);
        let bytes = area.bytes_mut();
        bytes[0..2].copy_from_slice(&crate::green::context::DEFAULT_FPUCW.to_le_bytes());
        bytes[24..28].copy_from_slice(&crate::green::context::DEFAULT_MXCSR.to_le_bytes());
        bytes[512..520].copy_from_slice(&components.to_le_bytes());
        if let Some(seed) = seed {
            let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
            let mut fill = |range: std::ops::Range<usize>, bytes: &mut [u8]| {
                for b in &mut bytes[range] {
                    // xorshift64: never 0 from a non-zero state, so no component ends up all zero.
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = (x >> 24) as u8 | 1;
                }
            };
            for c in [0, 1] {
                if components & (1 << c) != 0 {
                    for r in legacy_register_bytes(c) {
                        fill(r, bytes);
                    }
                }
            }
            if components & 1 != 0 {
                // Abridged tag word: all eight x87 registers valid (non-initial, SDM §13.6).
                bytes[4] = 0xFF;
            }
            for r in standard_regions(components) {
                fill(r.offset..r.offset + r.size, bytes);
            }
        }
        Some(XsaveImage(area))
    }

    /// The image's first byte, for `xrstor64`.
    pub fn as_ptr(&self) -> *const u8 {
        self.0.bytes().as_ptr()
    }

    /// The image's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.0.bytes()
    }

    /// The components the image names (its XSTATE_BV).
    pub fn components(&self) -> u64 {
        u64::from_le_bytes(self.0.bytes()[512..520].try_into().unwrap())
    }

    /// Whether `saved`, a standard-format area that an XSAVE wrote, holds this image's register
    /// values in every component the image names: x87's ST0-ST7 and tag byte, XMM0-XMM15, and
    /// each extended component's whole region. Returns the first component that differs.
    pub fn differs_from(&self, saved: &[u8]) -> Option<u32> {
        let c = self.components();
        let img = self.bytes();
        for comp in [0u32, 1] {
            if c & (1 << comp) != 0 && legacy_register_bytes(comp).into_iter().any(|r| img[r.clone()] != saved[r]) {
                return Some(comp);
            }
        }
        if c & 1 != 0 && img[4] != saved[4] {
            return Some(0);
        }
        standard_regions(c)
            .into_iter()
            .find(|r| img[r.offset..r.offset + r.size] != saved[r.offset..r.offset + r.size])
            .map(|r| r.component)
    }
}

/// One save of the state `image` loads, in `format` with instruction mask `mask`, over an area
/// first filled with `canary`: the area, and the XSTATE_BV the save wrote.
fn save_once(format: XsaveFormat, image: &XsaveImage, mask: u64, canary: u8) -> XsaveArea {
    let standard = cpu::xsave_area_size().expect("an image exists, so XSAVE does");
    let mut area = XsaveArea::new(standard);
    area.bytes_mut().fill(canary);
    let a = area.ptr();
    let img = image.as_ptr();
    let compacted = (format == XsaveFormat::Compacted) as u64;
    let (lo, hi) = (mask as u32, (mask >> 32) as u32);
    // Every register component: those the image names get its values, the others their initial
    // state, so nothing left in the registers by earlier code varies between two saves.
    let load = REGISTER_COMPONENTS & cpu::enabled_components();
    // SAFETY: the image is a valid standard-form image (zero XCOMP_BV and reserved header bytes,
    // a valid MXCSR, only XCR0 components in XSTATE_BV), so the XRSTOR cannot fault; the area is
    // 64-byte aligned with the standard size, which holds either format. XSAVEC exists where
    // `compacted` is 1 (the callers check). Vector, mask and x87 registers are declared clobbered
    // (clobber_abi("C")); MXCSR and the x87 control word are left at the ABI defaults the image
    // holds. The XRSTOR requests only register components, so PKRU and AMX keep their values.
    unsafe {
        core::arch::asm!(
            "mov eax, {load:e}",
            "xor edx, edx",
            "xrstor64 [{img}]",
            "mov eax, {lo:e}",
            "mov edx, {hi:e}",
            "test {c}, {c}",
            "jnz 3f",
            "xsave64 [{a}]",
            "jmp 4f",
            "3:",
            "xsavec64 [{a}]",
            "4:",
            img = in(reg) img,
            a = in(reg) a,
            c = in(reg) compacted,
            load = in(reg) load,
            lo = in(reg) lo,
            hi = in(reg) hi,
            out("eax") _,
            out("edx") _,
            clobber_abi("C"),
            options(nostack),
        );
    }
    area
}

/// What one save of `image`'s state wrote: XSTATE_BV, XCOMP_BV, the saved area (from the 0x00
/// canary) and, per byte, whether the instruction wrote it.
pub struct SaveWrites {
    /// XSTATE_BV of the saved header: the components saved with non-initial values.
    pub xstate_bv: u64,
    /// XCOMP_BV of the saved header (bit 63: compacted format).
    pub xcomp_bv: u64,
    /// The area as written.
    pub area: Vec<u8>,
    /// Per byte: whether the save wrote it (both canaries overwritten).
    pub written: Vec<bool>,
}

impl SaveWrites {
    /// Whether every byte of `r` was written.
    pub fn all_written(&self, r: std::ops::Range<usize>) -> bool {
        self.written[r].iter().all(|&w| w)
    }
    /// Whether no byte of `r` was written.
    pub fn none_written(&self, r: std::ops::Range<usize>) -> bool {
        self.written[r].iter().all(|&w| !w)
    }
    /// How many bytes the save wrote.
    pub fn count(&self) -> usize {
        self.written.iter().filter(|&&w| w).count()
    }
}

/// Saves `image`'s state twice over two canaries and compares (see the module's comment). None
/// for `Compacted` without XSAVEC.
pub fn save_writes(format: XsaveFormat, image: &XsaveImage, mask: u64) -> Option<SaveWrites> {
    if format == XsaveFormat::Compacted && !std::arch::is_x86_feature_detected!("xsavec") {
        return None;
    }
    let zeros = save_once(format, image, mask, 0x00);
    let ones = save_once(format, image, mask, 0xFF);
    let (z, o) = (zeros.bytes(), ones.bytes());
    let written: Vec<bool> = z.iter().zip(o).map(|(a, b)| a == b).collect();
    let xstate_bv = u64::from_le_bytes(z[512..520].try_into().unwrap());
    let xcomp_bv = u64::from_le_bytes(z[520..528].try_into().unwrap());
    Some(SaveWrites { xstate_bv, xcomp_bv, area: z.to_vec(), written })
}

/// Times `pairs` save + restore pairs with `live` in use (non-initial values, so the live set is
/// the same on every CPU), saving in `format` with every enabled component requested, as the
/// preemption entry does. None without XSAVE, or for `Compacted` without XSAVEC, or for a live
/// set the OS has not enabled.
pub fn measure(format: XsaveFormat, live: LiveState, pairs: u64) -> Option<SaveCost> {
    if format == XsaveFormat::Compacted && !std::arch::is_x86_feature_detected!("xsavec") {
        return None;
    }
    let image = XsaveImage::with_pattern(live.components(), 1)?;
    let standard = cpu::xsave_area_size()?;
    let mut area = XsaveArea::new(standard);
    let img = image.as_ptr();
    let a = area.ptr();
    let compacted = (format == XsaveFormat::Compacted) as u64;
    let first = live.components();
    let t0 = std::time::Instant::now();
    // SAFETY: both areas are 64-byte aligned and hold the standard size, which is at least the
    // compacted one. The image is a valid standard-form XSAVE image (zero XCOMP_BV and reserved
    // header bytes, a valid MXCSR, components named in XSTATE_BV enabled in XCR0), so the first
    // XRSTOR (of just the image's components, so PKRU and AMX are untouched) cannot fault; every
    // later XRSTOR reads what the save just wrote. The asm changes vector, mask and x87 registers
    // (declared by clobber_abi("C"), which names every caller-saved register, and all of these
    // are) and leaves MXCSR and the x87 control word at the defaults the image holds, which are
    // the values Rust code runs with.
    unsafe {
        core::arch::asm!(
            "mov eax, {first:e}",
            "xor edx, edx",
            "xrstor64 [{img}]",
            "2:",
            "test rcx, rcx",
            "jz 4f",
            "mov eax, -1",
            "mov edx, -1",
            "test {c}, {c}",
            "jnz 3f",
            "xsave64 [{a}]",
            "jmp 5f",
            "3:",
            "xsavec64 [{a}]",
            "5:",
            "xrstor64 [{a}]",
            "dec rcx",
            "jmp 2b",
            "4:",
            img = in(reg) img,
            a = in(reg) a,
            c = in(reg) compacted,
            first = in(reg) first,
            inout("rcx") pairs => _,
            out("eax") _,
            out("edx") _,
            clobber_abi("C"),
            options(nostack),
        );
    }
    let ns = t0.elapsed().as_nanos() as f64 / pairs.max(1) as f64;
    let w = save_writes(format, &image, u64::MAX)?;
    Some(SaveCost { format, live, saved_components: w.xstate_bv, bytes_written: w.count(), ns_per_pair: ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live_sets() -> Vec<(LiveState, XsaveImage)> {
        let sets: Vec<_> = LiveState::ALL
            .iter()
            .filter_map(|&l| XsaveImage::with_pattern(l.components() | 1, 7).map(|i| (l, i)))
            .collect();
        let names: Vec<_> = sets.iter().map(|(l, _)| l.name()).collect();
        eprintln!("xsave tests on {}: live sets this CPU and OS enable: {names:?}", cpu::model_name());
        if crate::cpu::enabled_components() & 0xE0 == 0xE0 {
            assert!(names.contains(&"avx512"), "AVX-512 enabled in XCR0, so its live set must be tested");
        }
        sets
    }

    /// XSAVEC with non-initial values in x87, SSE and the live set's wide components. Each
    /// assertion is one the manuals make for every CPU:
    /// * the components loaded with non-initial values are saved and named in XSTATE_BV
    ///   (SDM Vol. 1 §13.6: XINUSE[i] = 0 only in the initial configuration; §13.10: "XSAVEC saves
    ///   state component i if and only if RFBM[i] = 1 and XINUSE[i] = 1"; APM Vol. 2 §11.5: the
    ///   same init tracking for XSAVEC);
    /// * XCOMP_BV = RFBM with bit 63 set (SDM §13.10; APM Vol. 2 §11.5.4's compacted format);
    /// * each saved component lies at the compacted offset CPUID leaf 0xD gives (SDM §13.4.3),
    ///   every byte of it written, holding exactly the loaded values;
    /// * a component the save did not name is not written, and nothing is written past the
    ///   compacted size of RFBM (SDM §13.10, the same "saves i if and only if");
    /// * bytes 511:464 of the legacy region are never written (SDM §13.10).
    #[test]
    fn xsavec_writes_the_live_components_where_cpuid_says() {
        if !std::arch::is_x86_feature_detected!("xsavec") {
            // Loud: every CPU CI has drawn so far (Zen 4, Sapphire Rapids, Granite Rapids) has it.
            panic!("this CPU has no XSAVEC ({}); the compacted format cannot be tested", cpu::model_name());
        }
        let xcr0 = cpu::enabled_components();
        for (live, image) in live_sets() {
            let loaded = image.components();
            let w = save_writes(XsaveFormat::Compacted, &image, u64::MAX).unwrap();
            assert_eq!(
                w.xstate_bv & loaded,
                loaded,
                "{}: non-initial components saved: {:#x}",
                live.name(),
                w.xstate_bv
            );
            assert_eq!(w.xcomp_bv, xcr0 | 1 << 63, "{}: XCOMP_BV", live.name());
            let regions = cpu::compacted_regions(xcr0);
            let end = regions.last().map_or(576, |r| r.offset + r.size);
            assert_eq!(Some(end), cpu::xsave_format().map(|f| f.1), "the entry's area size is the layout's end");
            for r in &regions {
                let range = r.offset..r.offset + r.size;
                if w.xstate_bv & (1 << r.component) != 0 {
                    let defined = r.offset..r.offset + defined_bytes(r.component, r.size);
                    assert!(w.all_written(defined), "{}: component {} not wholly written", live.name(), r.component);
                } else {
                    assert!(
                        w.none_written(range.clone()),
                        "{}: unsaved component {} written",
                        live.name(),
                        r.component
                    );
                }
                if loaded & (1 << r.component) != 0 {
                    let std = standard_regions(1 << r.component)[0];
                    assert_eq!(
                        &w.area[range],
                        &image.bytes()[std.offset..std.offset + std.size],
                        "{}: component {} holds what was loaded",
                        live.name(),
                        r.component
                    );
                }
            }
            assert!(w.none_written(end..w.written.len()), "{}: written past the compacted size {end}", live.name());
            assert!(w.none_written(464..512), "{}: bytes 511:464 of the legacy region", live.name());
            for c in [0, 1] {
                for r in legacy_register_bytes(c) {
                    assert_eq!(&w.area[r.clone()], &image.bytes()[r], "{}: legacy component {c}", live.name());
                }
            }
            let m = measure(XsaveFormat::Compacted, live, 10).unwrap();
            assert_eq!(m.saved_components & loaded, loaded & !1, "{}: the benchmark's live set", live.name());
            eprintln!("{}: XSTATE_BV {:#x}, {} bytes written", live.name(), m.saved_components, m.bytes_written);
        }
    }

    /// The bytes of state component `component` (of `size` bytes) that hold state, which a save
    /// must write. PKRU's component is 8 bytes of which bytes 3:0 are PKRU and 7:4 reserved (SDM
    /// Vol. 1 §13.5.7; Linux's `struct pkru_state` is `u32 pkru, u32 pad`): an AMD EPYC without
    /// AVX-512 (Zen 3 class, 2026-12-06) leaves the reserved half unwritten, an Intel
    /// part and Zen 4 write it; neither is promised, so neither is asserted.
    fn defined_bytes(component: u32, size: usize) -> usize {
        match component {
            9 => 4,
            _ => size,
        }
    }

    /// XSAVE (standard format) saves every requested component, in use or not (SDM Vol. 1 §13.7:
    /// "XSAVE saves state component i if and only if RFBM[i] = 1"; APM Vol. 2 §11.5), at the
    /// standard offsets CPUID.(0DH,i):EBX gives, holding the loaded values.
    #[test]
    fn xsave_writes_every_requested_component_at_its_standard_offset() {
        for (live, image) in live_sets() {
            let mask = REGISTER_COMPONENTS & cpu::enabled_components();
            let w = save_writes(XsaveFormat::Standard, &image, mask).unwrap();
            assert_eq!(w.xstate_bv & image.components(), image.components(), "{}", live.name());
            for r in standard_regions(mask) {
                assert!(w.all_written(r.offset..r.offset + r.size), "{}: component {}", live.name(), r.component);
            }
            assert_eq!(image.differs_from(&w.area), None, "{}: the saved area holds the loaded values", live.name());
        }
    }

    /// The checker itself: a changed byte in any component is found.
    #[test]
    fn a_changed_register_byte_is_detected() {
        let image = XsaveImage::with_pattern(0b11, 3).expect("XSAVE with x87 and SSE");
        let mut copy = image.bytes().to_vec();
        assert_eq!(image.differs_from(&copy), None);
        copy[160 + 17] ^= 1;
        assert_eq!(image.differs_from(&copy), Some(1));
        copy[160 + 17] ^= 1;
        copy[32 + 9] ^= 0x80;
        assert_eq!(image.differs_from(&copy), Some(0));
    }
}
