//! The requantizing epilogue of the x86 kernels, run on the accumulators while they are
//! still in registers. AVX-512 ([`store_rows`]): one zmm (16 columns) per tile row, masked
//! stores for the last, partial tile, so no tile takes a scalar path. AVX2
//! ([`store_rows256`]): two ymm per row; a partial tile (columns past N) spills to the
//! scalar epilogue, as it has no byte-masked store.
//!
//! Bit-exact with [`Requant::dequant`] / [`Requant::requant`]: one fused multiply-add
//! `acc · scale_in[c] + bias[c]`, the activation's selects written as its comparisons
//! (`Activation::apply`), a separate multiply by `top_scale`, then round half away from
//! zero and clamp to ±qmax (NaN → 0), as `quant::quantize_scaled`. Activations other than
//! none, ReLU, LeakyReLU and Clip spill the tile and take the scalar epilogue.

use super::super::{store_acc, Acc, OutKind, Tile, MR_MAX, NR_MAX};
use crate::kernels::quantize::x86_64::{
    self as avx2, activate512 as activate, round_clamp512 as round_clamp, vectorised,
};
use std::arch::x86_64::*;

/// Stores the first `t.rows` rows of `rows` (16 int32 columns each, of which `t.cols` are
/// kept) through the epilogue of `t`.
///
/// # Safety
/// AVX-512 F/BW/VL (the caller's target features); `t.out` writable for `t.rows` rows of
/// `t.cols ≤ 16` elements at stride `t.stride`; `t.requant` holds rows `t.row0..+t.rows`.
#[inline(always)]
pub(super) unsafe fn store_rows(rows: &[__m512i; MR_MAX], t: &Tile) {
    debug_assert!(t.rows <= MR_MAX && t.cols <= NR_MAX && t.cols > 0);
    let mask = (u32::MAX >> (32 - t.cols)) as __mmask16;
    let r = t.requant;
    if t.kind == OutKind::I32 {
        for (i, &v) in rows.iter().enumerate().take(t.rows) {
            _mm512_mask_storeu_epi32((t.out as *mut i32).add(i * t.stride) as *mut _, mask, v);
        }
        return;
    }
    if !vectorised(r.act) {
        let mut acc: Acc = [0; MR_MAX * NR_MAX];
        for (i, &v) in rows.iter().enumerate() {
            _mm512_storeu_si512(acc.as_mut_ptr().add(i * NR_MAX) as *mut _, v);
        }
        store_acc(&acc, t, true);
        return;
    }
    let (top, qmax) = (_mm512_set1_ps(r.top_scale), _mm512_set1_ps(r.qmax as f32));
    for (i, &v) in rows.iter().enumerate().take(t.rows) {
        let c = t.row0 + i;
        let scale = _mm512_set1_ps(*r.scale_in.get_unchecked(c));
        let bias = _mm512_set1_ps(r.bias.map_or(0.0, |b| *b.get_unchecked(c)));
        let y = activate(r.act, _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), scale, bias));
        if t.kind == OutKind::F32 {
            _mm512_mask_storeu_ps((t.out as *mut f32).add(i * t.stride), mask, y);
        } else {
            let q = round_clamp(_mm512_mul_ps(y, top), qmax);
            _mm512_mask_cvtsepi32_storeu_epi8((t.out as *mut i8).add(i * t.stride), mask, q);
        }
    }
}

/// Stores the first `t.rows` rows of `rows` (16 int32 columns each, in two ymm) through the
/// epilogue of `t`.
///
/// # Safety
/// AVX2 and FMA (the caller's target features); `t.out` writable for `t.rows` rows of
/// `t.cols ≤ 16` elements at stride `t.stride`; `t.requant` holds rows `t.row0..+t.rows`.
#[inline(always)]
pub(super) unsafe fn store_rows256<const MR: usize>(rows: &[[__m256i; 2]; MR], t: &Tile) {
    debug_assert!(MR <= MR_MAX && t.rows <= MR && t.cols <= NR_MAX && t.cols > 0);
    let r = t.requant;
    if t.cols < NR_MAX || !(t.kind == OutKind::I32 || vectorised(r.act)) {
        let mut acc: Acc = [0; MR_MAX * NR_MAX];
        for (i, v) in rows.iter().enumerate() {
            let dst = acc.as_mut_ptr().add(i * NR_MAX) as *mut __m256i;
            _mm256_storeu_si256(dst, v[0]);
            _mm256_storeu_si256(dst.add(1), v[1]);
        }
        store_acc(&acc, t, true);
        return;
    }
    let (top, qmax) = (_mm256_set1_ps(r.top_scale), r.qmax as f32);
    for (i, v) in rows.iter().enumerate().take(t.rows) {
        if t.kind == OutKind::I32 {
            let dst = (t.out as *mut i32).add(i * t.stride) as *mut __m256i;
            _mm256_storeu_si256(dst, v[0]);
            _mm256_storeu_si256(dst.add(1), v[1]);
            continue;
        }
        let c = t.row0 + i;
        let scale = _mm256_set1_ps(*r.scale_in.get_unchecked(c));
        let bias = _mm256_set1_ps(r.bias.map_or(0.0, |b| *b.get_unchecked(c)));
        let y = |h: usize| {
            avx2::activate(
                r.act,
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(v[h]), scale, bias),
            )
        };
        if t.kind == OutKind::F32 {
            let dst = (t.out as *mut f32).add(i * t.stride);
            _mm256_storeu_ps(dst, y(0));
            _mm256_storeu_ps(dst.add(8), y(1));
        } else {
            let lo = avx2::round_clamp(_mm256_mul_ps(y(0), top), qmax);
            let hi = avx2::round_clamp(_mm256_mul_ps(y(1), top), qmax);
            // packs work per 128-bit half: [lo0 hi0 | lo1 hi1] as int16, then bytes.
            let w = _mm256_packs_epi32(lo, hi);
            let b = _mm256_packs_epi16(w, w);
            let order = _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0);
            let b = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(b, order));
            _mm_storeu_si128((t.out as *mut i8).add(i * t.stride) as *mut __m128i, b);
        }
    }
}
