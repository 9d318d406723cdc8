//! AVX2 depthwise int8 kernel: 16 output pixels per vector. Inputs are sign-extended to
//! int16 (stride 1: `vpmovsxbw` of 16 bytes; stride 2: the even bytes of 32, as int16 lanes
//! shifted left then arithmetically right by 8), multiplied by the broadcast tap with
//! `vpmullw` and summed in int16 for `Precision::products_per_i16` taps (2 for INT8, 8 for
//! INT7), then widened into two int32 vectors.
//!
//! A block of 16 pixels runs whenever all its loads stay inside the input plane (lanes past
//! the row's end read the next row and are discarded: only `n` sums are used); the rest of
//! the row, at the plane's end, is done in scalar code.
//!
//! [`channel3x3`] is the whole-channel 3x3 path with the requant epilogue fused in (see its
//! docs); `row` stays for other kernels and as the tested sums of the chunked path.

use super::{generic, Geometry, CHUNK, SLACK};
use crate::kernels::quantize::x86_64::{activate, activate512, round_clamp, round_clamp512};
use crate::kernels::requant::{OutBuf, Requant};
use crate::ops::activation::Activation;
use crate::quant::Precision;
use std::arch::x86_64::*;

pub fn available() -> bool {
    is_x86_feature_detected!("avx2")
}

/// # Safety
/// The caller has checked the geometry against the buffers (`super::check`).
/// The SIMD code relies on it for its unchecked loads and stores.
#[allow(clippy::too_many_arguments)]
pub unsafe fn row(
    g: &Geometry,
    precision: Precision,
    input: &[i8],
    taps: &[i8],
    oy: usize,
    x0: usize,
    n: usize,
    acc: &mut [i32; CHUNK + SLACK],
) {
    assert!(available(), "AVX2 kernel on a CPU without AVX2");
    let three = g.kernel_w == 3 && g.kernel_h == 3 && g.dilation_w == 1 && g.dilation_h == 1;
    let a = acc.as_mut_ptr();
    // SAFETY: AVX2 checked above; the blocks check their loads against `input`, and store at
    // most 16 sums from an index below n <= CHUNK into `acc` (CHUNK + 16 long).
    unsafe {
        match (precision, three, g.stride_w) {
            (Precision::Int8, true, 1) => row_avx2::<true, 1, 2>(g, input, taps, oy, x0, n, a),
            (Precision::Int8, true, 2) => row_avx2::<true, 2, 2>(g, input, taps, oy, x0, n, a),
            (Precision::Int8, false, 1) => row_avx2::<false, 1, 2>(g, input, taps, oy, x0, n, a),
            (Precision::Int8, false, 2) => row_avx2::<false, 2, 2>(g, input, taps, oy, x0, n, a),
            (Precision::Int7, true, 1) => row_avx2::<true, 1, 8>(g, input, taps, oy, x0, n, a),
            (Precision::Int7, true, 2) => row_avx2::<true, 2, 8>(g, input, taps, oy, x0, n, a),
            (Precision::Int7, false, 1) => row_avx2::<false, 1, 8>(g, input, taps, oy, x0, n, a),
            (Precision::Int7, false, 2) => row_avx2::<false, 2, 8>(g, input, taps, oy, x0, n, a),
            _ => generic::row(g, input, taps, oy, x0, &mut acc[..n]),
        }
    }
}

/// One row: `THREE` fixes a 3x3 undilated kernel (so the tap loops unroll), `S` is the
/// horizontal stride (1 or 2), `F` the int16 flush interval in products.
#[target_feature(enable = "avx2")]
unsafe fn row_avx2<const THREE: bool, const S: usize, const F: usize>(
    g: &Geometry,
    input: &[i8],
    taps: &[i8],
    oy: usize,
    x0: usize,
    n: usize,
    acc: *mut i32,
) {
    let (kw, kh, dw, dh) = if THREE {
        (3, 3, 1, 1)
    } else {
        (g.kernel_w, g.kernel_h, g.dilation_w, g.dilation_h)
    };
    let in_w = g.in_w;
    let base = oy * g.stride_h * in_w + x0 * S;
    // Bytes a block reads from its first tap's address on.
    let span = (kh - 1) * dh * in_w + (kw - 1) * dw + 16 * S;
    let mut i = 0;
    while i < n && base + i * S + span <= input.len() {
        let p = input.as_ptr().add(base + i * S);
        let zero = _mm256_setzero_si256();
        let (mut lo, mut hi, mut part, mut count) = (zero, zero, zero, 0);
        for ky in 0..kh {
            for kx in 0..kw {
                let q = p.add(ky * dh * in_w + kx * dw);
                let v = if S == 1 {
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(q as *const __m128i))
                } else {
                    let w = _mm256_loadu_si256(q as *const __m256i);
                    _mm256_srai_epi16::<8>(_mm256_slli_epi16::<8>(w))
                };
                let t = _mm256_set1_epi16(*taps.get_unchecked(ky * kw + kx) as i16);
                part = _mm256_add_epi16(part, _mm256_mullo_epi16(v, t));
                count += 1;
                if count == F {
                    (lo, hi) = widen_add(lo, hi, part);
                    part = zero;
                    count = 0;
                }
            }
        }
        if count > 0 {
            (lo, hi) = widen_add(lo, hi, part);
        }
        _mm256_storeu_si256(acc.add(i) as *mut __m256i, lo);
        _mm256_storeu_si256(acc.add(i + 8) as *mut __m256i, hi);
        i += 16;
    }
    while i < n {
        *acc.add(i) = generic::pixel(g, input, taps, x0 + i, oy);
        i += 1;
    }
}

/// Adds the 16 int16 lanes of `part` to the int32 sums of pixels 0..8 (`lo`) and 8..16.
#[inline]
#[target_feature(enable = "avx2")]
fn widen_add(lo: __m256i, hi: __m256i, part: __m256i) -> (__m256i, __m256i) {
    let l = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(part));
    let h = _mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(part));
    (_mm256_add_epi32(lo, l), _mm256_add_epi32(hi, h))
}

/// The whole-channel 3x3 path (undilated, stride 1 or 2 across, any stride down) with the
/// requantizing epilogue fused in: each block of 16 outputs of a row is summed (INT8: pairs
/// of taps with `vpmaddwd` straight into int32, see [`sums3x3_madd`]; INT7: as in [`row`],
/// 8 products in int16 lanes, 8 · 63² = 31752 ≤ 32767, then widened with the 9th; the int32
/// total of 9 taps is at most 9 · 127² = 145161, far from overflow), then goes through `fma(acc, scale_in[c], bias[c])`, the activation,
/// and for int8 output `round_half_away(y · top_scale)` clamped to ±qmax, in registers
/// (`quantize::x86_64`, bit for bit `Requant::dequant` / `Requant::requant`).
///
/// Blocks start at 0, 16, .. and the last one at `out_w - 16`, overlapping the one before
/// (rows under 16 outputs are one block whose extra lanes are not stored). A block whose
/// loads would leave `input` gets its sums from `generic::pixel`, so `input` needs no
/// margin, but one of `super::IN_SLACK` bytes past the plane keeps every block in SIMD.
///
/// `input` is the channel's zero-padded plane (`g.in_w x g.in_h`) and possibly more bytes.
/// Returns false, doing nothing, if the layer is not one this path handles (other kernels or
/// strides, activations other than none, ReLU, LeakyReLU and Clip, no AVX2 and FMA).
/// `wide`: blocks of 32 outputs with AVX-512 F/BW ([`channel_avx512`]; the caller has
/// checked the CPU: `Isa::Avx512`).
///
/// # Safety
/// The caller has checked the geometry against the buffers (`super::check`: every tap of
/// every output pixel inside the plane); the SIMD loads rely on it.
#[allow(clippy::too_many_arguments)]
pub unsafe fn channel3x3(
    wide: bool,
    g: &Geometry,
    precision: Precision,
    input: &[i8],
    taps: &[i8],
    c: usize,
    rq: &Requant,
    out: &mut OutBuf,
    out_offset: usize,
) -> bool {
    let shape = g.kernel_w == 3
        && g.kernel_h == 3
        && g.dilation_w == 1
        && g.dilation_h == 1
        && (g.stride_w == 1 || g.stride_w == 2);
    let simple = matches!(
        rq.act,
        Activation::None | Activation::ReLU | Activation::LeakyReLU(_) | Activation::Clip { .. }
    );
    if !shape || !simple || !available() || !is_x86_feature_detected!("fma") {
        return false;
    }
    let wide = wide && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw");
    if g.out_w == 0 || g.out_h == 0 {
        return true;
    }
    assert!(input.len() >= g.in_w * g.in_h && taps.len() >= 9);
    assert!(out.len() >= out_offset + g.out_w * g.out_h);
    assert!(rq.qmax <= 127 && c < rq.scale_in.len());
    // SAFETY: AVX2 and FMA checked; SIMD loads are checked against `input` per block, and
    // stores stay inside the output plane checked above.
    unsafe {
        if wide {
            match (precision, g.stride_w) {
                (Precision::Int8, 1) => {
                    channel_avx512::<1, 2>(g, input, taps, c, rq, out, out_offset)
                }
                (Precision::Int8, _) => {
                    channel_avx512::<2, 2>(g, input, taps, c, rq, out, out_offset)
                }
                (Precision::Int7, 1) => {
                    channel_avx512::<1, 8>(g, input, taps, c, rq, out, out_offset)
                }
                (Precision::Int7, _) => {
                    channel_avx512::<2, 8>(g, input, taps, c, rq, out, out_offset)
                }
            }
            return true;
        }
        match (precision, g.stride_w) {
            (Precision::Int8, 1) => channel_avx2::<1, 2>(g, input, taps, c, rq, out, out_offset),
            (Precision::Int8, _) => channel_avx2::<2, 2>(g, input, taps, c, rq, out, out_offset),
            (Precision::Int7, 1) => channel_avx2::<1, 8>(g, input, taps, c, rq, out, out_offset),
            (Precision::Int7, _) => channel_avx2::<2, 8>(g, input, taps, c, rq, out, out_offset),
        }
    }
    true
}

/// INT8 sums of the 16 outputs whose first tap is at `p` (3x3, stride `S` across) with
/// `vpmaddwd`: the int16 inputs of two taps interleaved, times the two taps, summed in
/// int32 (each product at most 127² = 16129, so no int16 sum at all). Taps pair as (0, 3)
/// (1, 4) (2, 5) (6, 7) (8, 0·). `unpacklo` / `unpackhi` work per 128-bit half, so the
/// results are outputs 0..4 8..12 and 4..8 12..16, put back in order (0..8, 8..16) with
/// two `vperm2i128`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn sums3x3_madd<const S: usize>(
    p: *const i8,
    in_w: usize,
    t: &[__m256i; 5],
) -> (__m256i, __m256i) {
    let load = |q: *const i8| {
        if S == 1 {
            _mm256_cvtepi8_epi16(_mm_loadu_si128(q as *const __m128i))
        } else {
            let w = _mm256_loadu_si256(q as *const __m256i);
            _mm256_srai_epi16::<8>(_mm256_slli_epi16::<8>(w))
        }
    };
    let v = |ky: usize, kx: usize| load(p.add(ky * in_w + kx));
    let zero = _mm256_setzero_si256();
    let pairs = [
        (v(0, 0), v(1, 0)),
        (v(0, 1), v(1, 1)),
        (v(0, 2), v(1, 2)),
        (v(2, 0), v(2, 1)),
        (v(2, 2), zero),
    ];
    let (mut a, mut b) = (zero, zero);
    for (i, &(x, y)) in pairs.iter().enumerate() {
        a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_unpacklo_epi16(x, y), t[i]));
        b = _mm256_add_epi32(b, _mm256_madd_epi16(_mm256_unpackhi_epi16(x, y), t[i]));
    }
    (
        _mm256_permute2x128_si256::<0x20>(a, b),
        _mm256_permute2x128_si256::<0x31>(a, b),
    )
}

/// The int32 sums of the 16 outputs whose first tap is at `p` (3x3, stride `S` across,
/// int16 flush interval `F`): outputs 0..8 and 8..16.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn sums3x3<const S: usize, const F: usize>(
    p: *const i8,
    in_w: usize,
    t: &[__m256i; 9],
) -> (__m256i, __m256i) {
    let zero = _mm256_setzero_si256();
    let (mut lo, mut hi, mut part, mut count) = (zero, zero, zero, 0);
    for ky in 0..3 {
        for kx in 0..3 {
            let q = p.add(ky * in_w + kx);
            let v = if S == 1 {
                _mm256_cvtepi8_epi16(_mm_loadu_si128(q as *const __m128i))
            } else {
                let w = _mm256_loadu_si256(q as *const __m256i);
                _mm256_srai_epi16::<8>(_mm256_slli_epi16::<8>(w))
            };
            part = _mm256_add_epi16(part, _mm256_mullo_epi16(v, t[ky * 3 + kx]));
            count += 1;
            if count == F {
                (lo, hi) = widen_add(lo, hi, part);
                part = zero;
                count = 0;
            }
        }
    }
    if count > 0 {
        (lo, hi) = widen_add(lo, hi, part);
    }
    (lo, hi)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn channel_avx2<const S: usize, const F: usize>(
    g: &Geometry,
    input: &[i8],
    taps: &[i8],
    c: usize,
    rq: &Requant,
    out: &mut OutBuf,
    out_offset: usize,
) {
    let (in_w, ow, oh) = (g.in_w, g.out_w, g.out_h);
    let t: [__m256i; 9] = std::array::from_fn(|i| _mm256_set1_epi16(taps[i] as i16));
    // Tap pairs of `sums3x3_madd`: the first tap in the low int16 of each int32 lane.
    let pair = |a: i8, b: i8| _mm256_set1_epi32(((b as i32) << 16) | (a as i32 & 0xffff));
    let t5 = [
        pair(taps[0], taps[3]),
        pair(taps[1], taps[4]),
        pair(taps[2], taps[5]),
        pair(taps[6], taps[7]),
        pair(taps[8], 0),
    ];
    let scale = _mm256_set1_ps(rq.scale_in[c]);
    let bias = _mm256_set1_ps(rq.bias.map_or(0.0, |b| b[c]));
    let top = _mm256_set1_ps(rq.top_scale);
    let q = rq.qmax as f32;
    let act = rq.act;
    // Bytes a block reads from its first tap's address on.
    let span = 2 * in_w + 2 + 16 * S;
    let (pf, pi) = match out {
        OutBuf::F32(o) => (o.as_mut_ptr(), std::ptr::null_mut()),
        OutBuf::I8(o) => (std::ptr::null_mut(), o.as_mut_ptr()),
    };
    for oy in 0..oh {
        let row = oy * g.stride_h * in_w;
        let mut x = 0;
        loop {
            let x0 = if x + 16 <= ow {
                x
            } else {
                ow.saturating_sub(16)
            };
            let n = (ow - x0).min(16);
            let p = row + x0 * S;
            let (lo, hi) = if p + span <= input.len() {
                if F == 2 {
                    sums3x3_madd::<S>(input.as_ptr().add(p), in_w, &t5)
                } else {
                    sums3x3::<S, F>(input.as_ptr().add(p), in_w, &t)
                }
            } else {
                let mut a = [0i32; 16];
                for (i, a) in a[..n].iter_mut().enumerate() {
                    *a = generic::pixel(g, input, taps, x0 + i, oy);
                }
                let a = a.as_ptr() as *const __m256i;
                (_mm256_loadu_si256(a), _mm256_loadu_si256(a.add(1)))
            };
            // One fused multiply-add, as `Requant::dequant`.
            let y0 = activate(act, _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), scale, bias));
            let y1 = activate(act, _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), scale, bias));
            let at = out_offset + oy * ow + x0;
            if pi.is_null() {
                if n == 16 {
                    _mm256_storeu_ps(pf.add(at), y0);
                    _mm256_storeu_ps(pf.add(at + 8), y1);
                } else {
                    let mut tmp = [0f32; 16];
                    _mm256_storeu_ps(tmp.as_mut_ptr(), y0);
                    _mm256_storeu_ps(tmp.as_mut_ptr().add(8), y1);
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), pf.add(at), n);
                }
            } else {
                let a = round_clamp(_mm256_mul_ps(y0, top), q);
                let b = round_clamp(_mm256_mul_ps(y1, top), q);
                // packs works per 128-bit half: a0..3 b0..3 | a4..7 b4..7; reorder to a, b.
                let w = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(a, b));
                let bytes =
                    _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256::<1>(w));
                if n == 16 {
                    _mm_storeu_si128(pi.add(at) as *mut __m128i, bytes);
                } else {
                    let mut tmp = [0i8; 16];
                    _mm_storeu_si128(tmp.as_mut_ptr() as *mut __m128i, bytes);
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), pi.add(at), n);
                }
            }
            if x0 + 16 >= ow {
                break;
            }
            x = x0 + 16;
        }
    }
}

/// [`sums3x3_madd`] on 32 outputs (AVX-512 BW): outputs 0..16 and 16..32. `unpacklo` /
/// `unpackhi` work per 128-bit lane, so `a` holds outputs 0..4 8..12 16..20 24..28 and `b`
/// the others; one `vpermt2q` per half puts them back in order.
#[inline(always)]
unsafe fn sums3x3_madd512<const S: usize>(
    p: *const i8,
    in_w: usize,
    t: &[__m512i; 5],
) -> (__m512i, __m512i) {
    let v = |ky: usize, kx: usize| load32::<S>(p.add(ky * in_w + kx));
    let zero = _mm512_setzero_si512();
    let pairs = [
        (v(0, 0), v(1, 0)),
        (v(0, 1), v(1, 1)),
        (v(0, 2), v(1, 2)),
        (v(2, 0), v(2, 1)),
        (v(2, 2), zero),
    ];
    let (mut a, mut b) = (zero, zero);
    for (i, &(x, y)) in pairs.iter().enumerate() {
        a = _mm512_add_epi32(a, _mm512_madd_epi16(_mm512_unpacklo_epi16(x, y), t[i]));
        b = _mm512_add_epi32(b, _mm512_madd_epi16(_mm512_unpackhi_epi16(x, y), t[i]));
    }
    // Quadwords: a's lane L is 2L, 2L + 1 and b's is 8 + 2L, 9 + 2L.
    let first = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    let second = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    (
        _mm512_permutex2var_epi64(a, first, b),
        _mm512_permutex2var_epi64(a, second, b),
    )
}

/// 32 int8 inputs of one tap as int16 lanes: consecutive bytes (stride 1), or the even bytes
/// of 64 (stride 2).
#[inline(always)]
unsafe fn load32<const S: usize>(q: *const i8) -> __m512i {
    if S == 1 {
        _mm512_cvtepi8_epi16(_mm256_loadu_si256(q as *const __m256i))
    } else {
        let w = _mm512_loadu_si512(q as *const _);
        _mm512_srai_epi16::<8>(_mm512_slli_epi16::<8>(w))
    }
}

/// [`sums3x3`] on 32 outputs (AVX-512 BW): products in int16 lanes, widened every `F`.
#[inline(always)]
unsafe fn sums3x3_512<const S: usize, const F: usize>(
    p: *const i8,
    in_w: usize,
    t: &[__m512i; 9],
) -> (__m512i, __m512i) {
    let zero = _mm512_setzero_si512();
    let (mut lo, mut hi, mut part, mut count) = (zero, zero, zero, 0);
    let mut widen = |part: __m512i| {
        lo = _mm512_add_epi32(lo, _mm512_cvtepi16_epi32(_mm512_castsi512_si256(part)));
        hi = _mm512_add_epi32(
            hi,
            _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64::<1>(part)),
        );
    };
    for ky in 0..3 {
        for kx in 0..3 {
            let v = load32::<S>(p.add(ky * in_w + kx));
            part = _mm512_add_epi16(part, _mm512_mullo_epi16(v, t[ky * 3 + kx]));
            count += 1;
            if count == F {
                widen(part);
                part = zero;
                count = 0;
            }
        }
    }
    if count > 0 {
        widen(part);
    }
    (lo, hi)
}

/// [`channel_avx2`] with blocks of 32 outputs (AVX-512 F/BW): same sums, same epilogue on
/// 16 lanes per vector, and masked stores for a row shorter than a block.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn channel_avx512<const S: usize, const F: usize>(
    g: &Geometry,
    input: &[i8],
    taps: &[i8],
    c: usize,
    rq: &Requant,
    out: &mut OutBuf,
    out_offset: usize,
) {
    let (in_w, ow, oh) = (g.in_w, g.out_w, g.out_h);
    let t: [__m512i; 9] = std::array::from_fn(|i| _mm512_set1_epi16(taps[i] as i16));
    let pair = |a: i8, b: i8| _mm512_set1_epi32(((b as i32) << 16) | (a as i32 & 0xffff));
    let t5 = [
        pair(taps[0], taps[3]),
        pair(taps[1], taps[4]),
        pair(taps[2], taps[5]),
        pair(taps[6], taps[7]),
        pair(taps[8], 0),
    ];
    let scale = _mm512_set1_ps(rq.scale_in[c]);
    let bias = _mm512_set1_ps(rq.bias.map_or(0.0, |b| b[c]));
    let top = _mm512_set1_ps(rq.top_scale);
    let q = _mm512_set1_ps(rq.qmax as f32);
    let act = rq.act;
    // Bytes a block reads from its first tap's address on.
    let span = 2 * in_w + 2 + 32 * S;
    let (pf, pi) = match out {
        OutBuf::F32(o) => (o.as_mut_ptr(), std::ptr::null_mut()),
        OutBuf::I8(o) => (std::ptr::null_mut(), o.as_mut_ptr()),
    };
    for oy in 0..oh {
        let row = oy * g.stride_h * in_w;
        let mut x = 0;
        loop {
            let x0 = if x + 32 <= ow {
                x
            } else {
                ow.saturating_sub(32)
            };
            let n = (ow - x0).min(32);
            let p = row + x0 * S;
            let (lo, hi) = if p + span <= input.len() {
                if F == 2 {
                    sums3x3_madd512::<S>(input.as_ptr().add(p), in_w, &t5)
                } else {
                    sums3x3_512::<S, F>(input.as_ptr().add(p), in_w, &t)
                }
            } else {
                let mut a = [0i32; 32];
                for (i, a) in a[..n].iter_mut().enumerate() {
                    *a = generic::pixel(g, input, taps, x0 + i, oy);
                }
                let a = a.as_ptr();
                (
                    _mm512_loadu_si512(a as *const _),
                    _mm512_loadu_si512(a.add(16) as *const _),
                )
            };
            // One fused multiply-add, as `Requant::dequant`.
            let y0 = activate512(act, _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo), scale, bias));
            let y1 = activate512(act, _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), scale, bias));
            let mask = (u64::MAX >> (64 - n)) as u32;
            let (m0, m1) = (mask as __mmask16, (mask >> 16) as __mmask16);
            let at = out_offset + oy * ow + x0;
            if pi.is_null() {
                _mm512_mask_storeu_ps(pf.add(at), m0, y0);
                _mm512_mask_storeu_ps(pf.add(at + 16), m1, y1);
            } else {
                let a = round_clamp512(_mm512_mul_ps(y0, top), q);
                let b = round_clamp512(_mm512_mul_ps(y1, top), q);
                _mm512_mask_cvtsepi32_storeu_epi8(pi.add(at), m0, a);
                _mm512_mask_cvtsepi32_storeu_epi8(pi.add(at + 16), m1, b);
            }
            if x0 + 32 >= ow {
                break;
            }
            x = x0 + 32;
        }
    }
}
