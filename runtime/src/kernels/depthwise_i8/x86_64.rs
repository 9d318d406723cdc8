//! AVX2 depthwise int8 kernel: 16 output pixels per vector. Inputs are sign-extended to
//! int16 (stride 1: `vpmovsxbw` of 16 bytes; stride 2: the even bytes of 32, as int16 lanes
//! shifted left then arithmetically right by 8), multiplied by the broadcast tap with
//! `vpmullw` and summed in int16 for `Precision::products_per_i16` taps (2 for INT8, 8 for
//! INT7), then widened into two int32 vectors.
//!
//! A block of 16 pixels runs whenever all its loads stay inside the input plane (lanes past
//! the row's end read the next row and are discarded: only `n` sums are used); the rest of
//! the row, at the plane's end, is done in scalar code.

use super::{generic, Geometry, CHUNK, SLACK};
use crate::quant::Precision;
use std::arch::x86_64::*;

pub fn available() -> bool {
    is_x86_feature_detected!("avx2")
}

/// Callers have checked the geometry against the buffers (`super::check`).
#[allow(clippy::too_many_arguments)]
pub fn row(
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
