//! AVX2 int8 GEMV over the packed layout: four rows share each 32-value block of `x`.
//! INT8 sign-extends to int16 and multiplies with `vpmaddwd` (2 products per int32 lane);
//! INT7 multiplies |x| by sign(x)·w with `vpmaddubsw` (2 products per int16 lane), sums 4
//! blocks in int16 (8 products per lane) and widens with one `vpmaddwd` by ones.

use super::{Input, BLOCK, ROWS};
use crate::quant::Precision;
use std::arch::x86_64::*;

/// int16 partials (each a `vpmaddubsw` pair) summed before widening, for INT7:
/// 4 blocks · 2 products = 8 products per lane, 8 · 63² = 31752 ≤ i16::MAX.
const INT7_BLOCKS_PER_FLUSH: usize = Precision::Int7.products_per_i16() / 2;

pub fn available() -> bool {
    is_x86_feature_detected!("avx2")
}

/// # Safety
/// `group` holds at least `x.blocks * ROWS * BLOCK` values (`super::dot4` checks it): the
/// SIMD loads of the packed rows are unchecked.
pub unsafe fn dot4(precision: Precision, group: &[i8], x: &Input) -> [i32; ROWS] {
    assert!(available(), "AVX2 kernel on a CPU without AVX2");
    // SAFETY: AVX2 checked above; every block read lies in `group` or `x`.
    unsafe {
        match precision {
            Precision::Int8 => dot4_int8(group, x),
            Precision::Int7 => dot4_int7(group, x),
        }
    }
}

#[target_feature(enable = "avx2")]
unsafe fn dot4_int8(group: &[i8], x: &Input) -> [i32; ROWS] {
    let mut acc = [_mm256_setzero_si256(); ROWS];
    for b in 0..x.blocks {
        let xb = x.block(b).as_ptr();
        let x0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(xb as *const __m128i));
        let x1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(xb.add(16) as *const __m128i));
        let p = group.as_ptr().add(b * ROWS * BLOCK);
        for (r, a) in acc.iter_mut().enumerate() {
            let w = p.add(r * BLOCK);
            let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(w as *const __m128i));
            let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(w.add(16) as *const __m128i));
            let s = _mm256_add_epi32(_mm256_madd_epi16(w0, x0), _mm256_madd_epi16(w1, x1));
            *a = _mm256_add_epi32(*a, s);
        }
    }
    acc.map(|a| hsum(a))
}

#[target_feature(enable = "avx2")]
unsafe fn dot4_int7(group: &[i8], x: &Input) -> [i32; ROWS] {
    let zero = _mm256_setzero_si256();
    let ones = _mm256_set1_epi16(1);
    let (mut acc, mut part) = ([zero; ROWS], [zero; ROWS]);
    let mut count = 0;
    for b in 0..x.blocks {
        let xv = _mm256_loadu_si256(x.block(b).as_ptr() as *const __m256i);
        let xa = _mm256_abs_epi8(xv);
        let p = group.as_ptr().add(b * ROWS * BLOCK);
        for (r, s) in part.iter_mut().enumerate() {
            let w = _mm256_loadu_si256(p.add(r * BLOCK) as *const __m256i);
            *s = _mm256_add_epi16(*s, _mm256_maddubs_epi16(xa, _mm256_sign_epi8(w, xv)));
        }
        count += 1;
        if count == INT7_BLOCKS_PER_FLUSH {
            for (a, s) in acc.iter_mut().zip(&mut part) {
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(*s, ones));
                *s = zero;
            }
            count = 0;
        }
    }
    for (a, s) in acc.iter_mut().zip(&part) {
        *a = _mm256_add_epi32(*a, _mm256_madd_epi16(*s, ones));
    }
    acc.map(|a| hsum(a))
}

#[inline]
#[target_feature(enable = "avx2")]
fn hsum(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<1>(s));
    _mm_cvtsi128_si32(s)
}
