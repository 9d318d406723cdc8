//! The transform-domain products on x86_64 with AVX2: `vpmaddwd` on pairs of input channels.
//!
//! `vpmaddwd` multiplies int16 lanes and adds each adjacent pair of products into an int32
//! lane, so one instruction does two channels of a U·V product for eight (row, tile) pairs.
//! Exact: `|U| ≤ 18288` and `|V| ≤ 12700` (module docs), so a pair sum is below 4.7·10⁸ <
//! 2³¹; the sums over channels wrap modulo 2³² (`vpaddd`), as the scheme wants.
//!
//! Operands: U packed at load as `[ξ][8-channel panel][cpad / 2][8 rows][2 channels]` int16
//! (a row's channel pair is one int32 to broadcast); V as the input transform writes it,
//! `[ξ][cpad][8 tiles]`, whose two channels' rows are interleaved in registers per pair.

use super::{Dest, Geometry, OutKind, PANEL};
use crate::kernels::quantize::x86_64::{activate, round_clamp, vectorised};
use std::arch::x86_64::*;

/// Whether this CPU runs [`products`] and the transforms here.
pub fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// `mbuf[ξ][r][t] = Σ_c U[ξ][r][c] · V[ξ][c][t]` (wrapping) for `n` ξ, over `pairs` channel
/// pairs: U at `a` + ξ·`a_stride` bytes, V at `b` + ξ·`b_stride` bytes, 8x8 int32 tiles at
/// `out` + ξ·64 int32.
///
/// # Safety
/// AVX2 is available; every ξ's U holds `pairs · 32` bytes and V `pairs · 32` bytes from
/// its start; `out` holds `n · 64` int32.
#[target_feature(enable = "avx2")]
pub unsafe fn products(
    pairs: usize,
    (a, a_stride): (*const u8, usize),
    (b, b_stride): (*const u8, usize),
    out: *mut i32,
    n: usize,
) {
    // In each 128-bit lane [v_c(t0..3), v_c+1(t0..3)] becomes (v_c(t), v_c+1(t)) per int32.
    let interleave = _mm256_setr_epi8(
        0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15, 0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12,
        13, 6, 7, 14, 15,
    );
    for xi in 0..n {
        let mut pa = a.add(xi * a_stride);
        let mut pb = b.add(xi * b_stride);
        let mut acc = [_mm256_setzero_si256(); 8];
        for _ in 0..pairs {
            // [v_c(t0..7) | v_c+1(t0..7)] -> lanes [v_c(t0..3), v_c+1(t0..3) | t4..7].
            let raw = _mm256_loadu_si256(pb as *const __m256i);
            let v = _mm256_shuffle_epi8(_mm256_permute4x64_epi64::<0b11_01_10_00>(raw), interleave);
            for (r, acc) in acc.iter_mut().enumerate() {
                let u = _mm256_set1_epi32((pa.add(4 * r) as *const i32).read_unaligned());
                *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(u, v));
            }
            pa = pa.add(32);
            pb = pb.add(32);
        }
        let o = out.add(xi * 64);
        for (r, acc) in acc.iter().enumerate() {
            _mm256_storeu_si256(o.add(8 * r) as *mut __m256i, *acc);
        }
    }
}

/// The portable input transform compiled for AVX2 (its 8-lane loops become vector code).
///
/// # Safety
/// AVX2 is available.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn input_transform(
    x: &[i8],
    g: &Geometry,
    inch: usize,
    cpad: usize,
    t0: usize,
    ntiles: usize,
    v: &mut [u8],
) {
    super::input_transform(x, g, inch, cpad, t0, ntiles, v)
}

/// The portable output transform compiled for AVX2, then the epilogue ([`store`]).
///
/// # Safety
/// AVX2 and FMA are available; as `super::store`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn output(
    mbuf: &[i32],
    sums: &mut [i32],
    (first, last): (bool, bool),
    m0: usize,
    tiles: (usize, usize),
    d: &Dest,
) {
    super::output_transform(mbuf, sums, first);
    if last {
        store(sums, m0, tiles, d);
    }
}

/// `super::store` with vectors: two horizontally adjacent tiles that lie whole inside the
/// output give 8 consecutive outputs per row, requantized as the x86 GEMM epilogue does
/// (bit-exact with `Requant`); other tiles and activations take the scalar epilogue.
///
/// # Safety
/// AVX2 and FMA (the caller's target features); as `super::store`.
#[inline(always)]
unsafe fn store(sums: &[i32], m0: usize, (t0, ntiles): (usize, usize), d: &Dest) {
    let Dest {
        g,
        outch,
        requant: r,
        kind,
        out,
    } = *d;
    if !vectorised(r.act) || !matches!(kind, OutKind::F32 | OutKind::I8) {
        return super::store(sums, m0, (t0, ntiles), d);
    }
    let plane = g.out_w * g.out_h;
    let whole = |t: usize| {
        let (ty, tx) = (t / g.tiles_x, t % g.tiles_x);
        ty * 4 + 4 <= g.out_h && tx * 4 + 4 <= g.out_w
    };
    let (top, qmax) = (_mm256_set1_ps(r.top_scale), r.qmax as f32);
    // Bytes 0..4 of each 128-bit half after the packs: the 8 results in order.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0);
    for m in 0..PANEL.min(outch - m0) {
        let c = m0 + m;
        let scale = _mm256_set1_ps(r.scale_in[c]);
        let bias = _mm256_set1_ps(r.bias.map_or(0.0, |b| b[c]));
        let tile_sums = |l: usize| &sums[(m * PANEL + l) * 16..][..16];
        let mut l = 0;
        while l < ntiles {
            let t = t0 + l;
            let (ty, tx) = (t / g.tiles_x, t % g.tiles_x);
            if l + 1 < ntiles && tx + 1 < g.tiles_x && whole(t) && whole(t + 1) {
                let (left, right) = (tile_sums(l).as_ptr(), tile_sums(l + 1).as_ptr());
                for i in 0..4 {
                    let v = _mm256_set_m128i(
                        _mm_loadu_si128(right.add(4 * i) as *const __m128i),
                        _mm_loadu_si128(left.add(4 * i) as *const __m128i),
                    );
                    let y = activate(r.act, _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), scale, bias));
                    let at = c * plane + (ty * 4 + i) * g.out_w + tx * 4;
                    if kind == OutKind::F32 {
                        _mm256_storeu_ps((out as *mut f32).add(at), y);
                    } else {
                        let q = round_clamp(_mm256_mul_ps(y, top), qmax);
                        let w = _mm256_packs_epi32(q, q);
                        let b = _mm256_packs_epi16(w, w);
                        let b = _mm256_permutevar8x32_epi32(b, order);
                        _mm_storel_epi64(
                            (out as *mut i8).add(at) as *mut __m128i,
                            _mm256_castsi256_si128(b),
                        );
                    }
                }
                l += 2;
            } else {
                let s = tile_sums(l);
                super::store_tiles(c, |_, i, j| s[i * 4 + j], (t, 1), d);
                l += 1;
            }
        }
    }
}
