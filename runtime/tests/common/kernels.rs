//! Deterministic compute kernels whose state lives in registers across long loops, so a
//! preemption that failed to save or restore any general-purpose, SSE, AVX or AVX-512 register
//! (or the AVX-512 mask registers) would change the result. Each carries compiler-interrupt probes
//! (`#[synergy::preemptible]`), so the same kernels serve the `ci` modes; elsewhere a probe is a
//! few loads.
#![allow(dead_code)]

use std::arch::x86_64::*;

#[synergy::preemptible]
pub fn int_kernel(seed: u64, iters: u32) -> u64 {
    let (mut a, mut b, mut c) = (seed | 1, seed ^ 0x9E37_79B9_7F4A_7C15, seed.rotate_left(17));
    for i in 0..iters {
        a = a.wrapping_mul(6364136223846793005).wrapping_add(b);
        b = b.rotate_left(13) ^ a ^ i as u64;
        c = c.wrapping_add(a >> 7).wrapping_mul(0x2545_F491_4F6C_DD1D) ^ b;
        std::hint::black_box(());
    }
    a ^ b ^ c
}

#[synergy::preemptible]
pub fn sse_kernel(seed: u64, iters: u32) -> u64 {
    // SAFETY: SSE2 is part of the x86_64 baseline.
    unsafe {
        let mut x = _mm_set_pd((seed % 1000) as f64 + 0.5, (seed % 777) as f64 + 0.25);
        let mut y = _mm_set_pd(1.0, 2.0);
        let m = _mm_set_pd(0.999_999_7, 1.000_000_3);
        let k = _mm_set_pd(0.001, 0.002);
        for _ in 0..iters {
            x = _mm_add_pd(_mm_mul_pd(x, m), k);
            y = _mm_sub_pd(_mm_add_pd(y, x), _mm_mul_pd(y, k));
            std::hint::black_box(());
        }
        let r = _mm_add_pd(x, y);
        let lo = _mm_cvtsd_f64(r).to_bits();
        let hi = _mm_cvtsd_f64(_mm_unpackhi_pd(r, r)).to_bits();
        lo ^ hi.rotate_left(1)
    }
}

#[synergy::preemptible]
#[target_feature(enable = "avx2")]
fn avx2_kernel_impl(seed: u64, iters: u32) -> u64 {
    let mut acc = _mm256_set_epi64x(seed as i64, (seed ^ 1) as i64, (seed ^ 2) as i64, (seed ^ 3) as i64);
    let mut acc2 = _mm256_set1_epi64x(seed.rotate_left(29) as i64);
    let k = _mm256_set_epi64x(0x5851_F42D, 0x4C95_7F2D, 0x1405_7B7E, 0xF767_814F);
    let inc = _mm256_set_epi64x(1, 3, 5, 7);
    for _ in 0..iters {
        acc = _mm256_add_epi64(_mm256_mul_epu32(acc, k), inc);
        acc = _mm256_xor_si256(acc, _mm256_srli_epi64::<7>(acc));
        acc2 = _mm256_add_epi64(acc2, _mm256_shuffle_epi32::<0b01_00_11_10>(acc));
        std::hint::black_box(());
    }
    let mut out = [0u64; 8];
    // SAFETY: out has room for two 256-bit stores.
    unsafe {
        _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, acc);
        _mm256_storeu_si256(out.as_mut_ptr().add(4) as *mut __m256i, acc2);
    }
    out.iter().fold(0u64, |h, v| h.rotate_left(5) ^ v)
}

#[synergy::preemptible]
#[target_feature(enable = "avx512f")]
fn avx512_kernel_impl(seed: u64, iters: u32) -> u64 {
    let mut acc = _mm512_set_epi64(seed as i64, 1, 2, 3, 4, 5, 6, (seed >> 3) as i64);
    let k = _mm512_set1_epi64(0x2545_F491);
    let mut mask: __mmask8 = (seed as u8) | 1;
    for i in 0..iters {
        acc = _mm512_mask_add_epi64(acc, mask, _mm512_mul_epu32(acc, k), _mm512_set1_epi64(i as i64));
        acc = _mm512_xor_si512(acc, _mm512_srli_epi64::<9>(acc));
        mask = mask.rotate_left(1) ^ (i as u8 & 0x11);
        std::hint::black_box(());
    }
    let mut out = [0u64; 8];
    // SAFETY: out has room for one 512-bit store.
    unsafe { _mm512_storeu_si512(out.as_mut_ptr() as *mut __m512i, acc) };
    out.iter().fold(mask as u64, |h, v| h.rotate_left(7) ^ v)
}

pub fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2")
}

pub fn has_avx512() -> bool {
    is_x86_feature_detected!("avx512f")
}

pub fn avx2_kernel(seed: u64, iters: u32) -> u64 {
    assert!(has_avx2());
    // SAFETY: AVX2 presence checked above.
    unsafe { avx2_kernel_impl(seed, iters) }
}

pub fn avx512_kernel(seed: u64, iters: u32) -> u64 {
    assert!(has_avx512());
    // SAFETY: AVX-512F presence checked above.
    unsafe { avx512_kernel_impl(seed, iters) }
}

/// All kernels this CPU supports, combined.
pub fn mixed(seed: u64, iters: u32) -> u64 {
    let mut h = int_kernel(seed, iters) ^ sse_kernel(seed, iters).rotate_left(11);
    if has_avx2() {
        h ^= avx2_kernel(seed, iters).rotate_left(23);
    }
    if has_avx512() {
        h ^= avx512_kernel(seed, iters).rotate_left(37);
    }
    h
}
