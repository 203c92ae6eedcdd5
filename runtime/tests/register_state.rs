//! A preempted request gets back exactly the register values it had (issue 38), in every state
//! component a request's code can use: x87 (ST0-ST7 and their tags), SSE (XMM0-XMM15), AVX
//! (the YMM upper halves) and, where the OS enables AVX-512, the opmask registers, the ZMM upper
//! halves and ZMM16-ZMM31.
//!
//! Each probe request loads a state of its own (XRSTOR of an image whose registers hold a
//! pattern made from its seed: no component is in its initial configuration, so each is in use
//! on every CPU, Intel or AMD; see `synergy::bench::xsave`), spins on general-purpose
//! registers only, then saves every register component with a standard-format XSAVE (which saves
//! each requested component whether in use or not, SDM Vol. 1 §13.7) and compares it with the
//! image byte for byte. Between the probes, other requests on the same worker run the AVX-512
//! (else AVX2) and x87/SSE kernels, so a preemption that lost or mixed up any component shows as
//! a difference. The test loops until `SYNERGY_REGISTER_STATE_PREEMPTED` (default 500) probes
//! have been preempted; the time limit is a watchdog only.

mod common;

use std::arch::asm;
use std::sync::Arc;
use std::time::Instant;
use synergy::bench::xsave::{XsaveArea, XsaveImage, REGISTER_COMPONENTS};
use synergy::cpu;
use synergy::transport::channel::ChannelTransport;
use synergy::{Reply, Request, Runtime};

const SEEDS: u64 = 32;

/// Loads `image`, spins `iters` iterations on r10 alone, and saves every register component into
/// a standard-format area: the area.
fn probe(image: &XsaveImage, iters: u64) -> Vec<u8> {
    let mask = REGISTER_COMPONENTS & cpu::enabled_components();
    let mut saved = XsaveArea::standard().expect("XSAVE");
    let area = saved.ptr();
    // SAFETY: the image is a valid standard-form image (zero XCOMP_BV and reserved header bytes,
    // default MXCSR, only XCR0 components named); the area is 64-byte aligned with the standard
    // size. The XRSTOR and the XSAVE request only register components (x87, SSE, AVX, AVX-512),
    // never PKRU or AMX. Vector, mask and x87 registers are declared clobbered; MXCSR and the x87
    // control word stay at the ABI defaults the image holds.
    unsafe {
        asm!(
            "mov eax, {mask:e}",
            "xor edx, edx",
            "xrstor64 [{img}]",
            "2:",
            "dec r10",
            "jnz 2b",
            "mov eax, {mask:e}",
            "xor edx, edx",
            "xsave64 [{area}]",
            img = in(reg) image.as_ptr(),
            area = in(reg) area,
            mask = in(reg) mask,
            inout("r10") iters.max(1) => _,
            out("eax") _,
            out("edx") _,
            clobber_abi("C"),
            options(nostack),
        );
    }
    saved.bytes().to_vec()
}

#[test]
fn a_preempted_request_keeps_every_register_value() {
    let _serial = common::serial();
    let target: u64 =
        std::env::var("SYNERGY_REGISTER_STATE_PREEMPTED").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let mask = REGISTER_COMPONENTS & cpu::enabled_components();
    eprintln!(
        "register state on {}: components checked {mask:#x} (x87, SSE{}{})",
        cpu::model_name(),
        if mask & 0b100 != 0 { ", AVX" } else { "" },
        if mask & 0xE0 == 0xE0 { ", opmask, ZMM_Hi256, Hi16_ZMM" } else { " (no AVX-512 on this CPU/OS)" },
    );
    let images: Arc<Vec<XsaveImage>> = Arc::new(
        (0..SEEDS).map(|s| XsaveImage::with_pattern(mask, s + 1).expect("XSAVE with the enabled components")).collect(),
    );
    // The probe is its own check: unpreempted, the saved area equals the image.
    assert_eq!(images[0].differs_from(&probe(&images[0], 10)), None, "an unpreempted probe round-trips");

    let cfg = common::one_worker();
    let transport = Arc::new(ChannelTransport::new(1, 4096, 1 << 14));
    let imgs = images.clone();
    let rt = Runtime::builder(&cfg)
        .transport(transport.clone())
        // SAFETY: the probe computes on locals, registers and a buffer allocated by the
        // preemption-safe allocator before its asm.
        .handler(unsafe {
            common::probe_handler(move |req: &Request| {
                let image = &imgs[(req.id % SEEDS) as usize];
                let saved = probe(image, 2_000_000);
                Reply::to(req).with_status(image.differs_from(&saved).map_or(0, |c| c + 1))
            })
        })
        .start()
        .expect("runtime starts");

    let t0 = Instant::now();
    let mut failures = Vec::new();
    let next = common::feed_probes(&rt, &transport, target, |r| {
        if r.status != 0 {
            failures.push((r.id, r.status - 1, r.preemptions));
        }
    });
    let preempted = target;
    transport.close();
    let stats = rt.shutdown();
    eprintln!(
        "register state: {preempted} probes preempted of {} requests, {} preemptions, {:.1?} ({:.0} preempted probes/s)",
        next,
        stats.total.preemptions,
        t0.elapsed(),
        preempted as f64 / t0.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} probes came back with a register component changed (id, first component that differs, \
         preemptions), first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}
