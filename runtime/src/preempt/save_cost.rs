//! What the preemption entry's extended-state save costs (issue 23): the entry's XSAVE/XSAVEC +
//! XRSTOR pair, timed in a loop with a chosen set of state components live, and the bytes each
//! save writes. `synergy bench xsave` reports it next to the whole interrupt path.
//!
//! Each measurement first loads a state in which exactly the chosen components are in use (XRSTOR
//! from a standard-form image whose XSTATE_BV names them, all registers zero), then repeats
//! `save; xrstor` on one 64-byte aligned area, as the entry does. XRSTOR restores XINUSE from the
//! image's XSTATE_BV, so every iteration saves the same live set.

use crate::cpu::{self, XsaveFormat};

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
    pub const ALL: [LiveState; 3] = [LiveState::Sse, LiveState::Avx2, LiveState::Avx512];

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

/// One measurement.
#[derive(Debug, Clone)]
pub struct SaveCost {
    pub format: XsaveFormat,
    pub live: LiveState,
    /// XSTATE_BV the save wrote (the components it found in use).
    pub saved_components: u64,
    /// Bytes the save wrote: the whole standard area for XSAVE, the in-use components for XSAVEC.
    pub bytes_written: usize,
    /// Mean time of one save + restore pair.
    pub ns_per_pair: f64,
}

/// A 64-byte aligned, zeroed buffer of `len` bytes.
struct Area(Vec<u8>, usize);

impl Area {
    fn new(len: usize) -> Area {
        let v = vec![0u8; len + 64];
        let off = v.as_ptr().align_offset(64);
        Area(v, off)
    }
    fn ptr(&mut self) -> *mut u8 {
        // SAFETY: `off` < 64 and the vector has `len + 64` bytes.
        unsafe { self.0.as_mut_ptr().add(self.1) }
    }
}

/// A standard-form XSAVE image (64-byte aligned, the standard size) in which exactly the given
/// components are in use, every register zero, MXCSR and the x87 control word at the ABI
/// defaults: an XRSTOR of it with every component requested leaves those components in use and
/// every other one in its initial state. Read-only once made.
pub struct XsaveImage(Area);

impl XsaveImage {
    /// None without XSAVE, or if the OS has not enabled every one of `components` (XCR0).
    pub fn with_components(components: u64) -> Option<XsaveImage> {
        let standard = cpu::xsave_area_size()?;
        if cpu::enabled_components() & components != components {
            return None;
        }
        let mut area = Area::new(standard);
        let img = area.ptr();
        // SAFETY: `img` points at `standard` zeroed bytes, 64-byte aligned: FCW (offset 0), MXCSR
        // (24) and XSTATE_BV (512) lie inside them.
        unsafe {
            img.cast::<u16>().write(crate::green::context::DEFAULT_FPUCW);
            img.add(24).cast::<u32>().write(crate::green::context::DEFAULT_MXCSR);
            img.add(512).cast::<u64>().write(components);
        }
        Some(XsaveImage(area))
    }

    /// The image's first byte, for `xrstor64`.
    pub fn as_ptr(&self) -> *const u8 {
        self.0 .0[self.0 .1..].as_ptr()
    }
}

/// Times `pairs` save + restore pairs with `live` in use, saving in `format`. None without XSAVE,
/// or for `Compacted` without XSAVEC, or for a live set the OS has not enabled.
pub fn measure(format: XsaveFormat, live: LiveState, pairs: u64) -> Option<SaveCost> {
    if format == XsaveFormat::Compacted && !std::arch::is_x86_feature_detected!("xsavec") {
        return None;
    }
    let image = XsaveImage::with_components(live.components())?;
    let standard = cpu::xsave_area_size()?;
    let mut area = Area::new(standard);
    let img = image.as_ptr();
    let a = area.ptr();
    let compacted = (format == XsaveFormat::Compacted) as u64;
    let t0 = std::time::Instant::now();
    // SAFETY: both areas are 64-byte aligned and hold the standard size, which is at least the
    // compacted one. The image is a valid standard-form XSAVE image (zero XCOMP_BV and reserved
    // header bytes, a valid MXCSR, components named in XSTATE_BV enabled in XCR0), so the first
    // XRSTOR cannot fault; every later XRSTOR reads what the save just wrote. The asm changes
    // vector, mask and x87 registers (declared by clobber_abi("C"), which names every
    // caller-saved register, and all of these are) and leaves MXCSR and the x87 control word at
    // the defaults the image holds, which are the values Rust code runs with.
    unsafe {
        core::arch::asm!(
            "mov eax, -1",
            "mov edx, -1",
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
            inout("rcx") pairs => _,
            out("eax") _,
            out("edx") _,
            clobber_abi("C"),
            options(nostack),
        );
    }
    let ns = t0.elapsed().as_nanos() as f64 / pairs.max(1) as f64;
    // SAFETY: XSTATE_BV lies at offset 512 of the area the last save wrote.
    let saved = unsafe { a.add(512).cast::<u64>().read() };
    let bytes_written = match format {
        XsaveFormat::Standard => standard,
        XsaveFormat::Compacted => cpu::xsavec_bytes_written(saved),
    };
    Some(SaveCost { format, live, saved_components: saved, bytes_written, ns_per_pair: ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xsavec_writes_only_the_live_components() {
        let Some(sse) = measure(XsaveFormat::Compacted, LiveState::Sse, 10) else {
            eprintln!("NOTE: this CPU has no XSAVEC; the compacted format is not measured here");
            return;
        };
        assert_eq!(sse.saved_components & !0b11, 0, "only x87/SSE in use: {:#x}", sse.saved_components);
        assert_eq!(sse.bytes_written, 576);
        if let Some(avx) = measure(XsaveFormat::Compacted, LiveState::Avx2, 10) {
            assert_eq!(avx.saved_components & 0b100, 0b100, "AVX upper halves in use");
            assert_eq!(avx.bytes_written, 576 + 256);
        }
        if let Some(z) = measure(XsaveFormat::Compacted, LiveState::Avx512, 10) {
            assert_eq!(z.saved_components & 0xE4, 0xE4, "{:#x}", z.saved_components);
            assert_eq!(z.bytes_written, 576 + 256 + 64 + 512 + 1024);
        }
        let std = measure(XsaveFormat::Standard, LiveState::Sse, 10).expect("XSAVE, since XSAVEC exists");
        assert_eq!(std.bytes_written, cpu::xsave_area_size().unwrap());
    }
}
