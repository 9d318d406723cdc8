//! AVX2 kernels, 4 x 16 tiles (two ymm of eight int32 columns per row).
//!
//! * INT8, K in steps of 2: A pairs and B pairs are sign-extended to int16 and multiplied
//!   with `vpmaddwd`, which sums each pair straight into int32. Flush interval: 1 (no int16
//!   accumulation at all), so it is exact for any int8 values except two −128 in one pair
//!   (the quantizer never produces −128).
//! * INT7, K in steps of 4: the sign trick. `vpabsb` makes A unsigned, `vpsignb` moves A's
//!   sign onto B, and `vpmaddubsw` sums two products into an int16 lane; four such results
//!   are added in int16 (`vpaddw`) before one `vpmaddwd` by ones widens pairs into int32.
//!   Flush interval: 8 products per int16 lane; bound 8 · 63 · 63 = 31752 ≤ 32767 (and each
//!   `vpmaddubsw` pair, 2 · 3969 = 7938, is far from its saturation).

use super::{Acc, Kernel, Layout, Micro, NR_MAX};
use crate::quant::Precision;
use std::arch::x86_64::*;

const MR: usize = 4;
const NR: usize = 16;
const KSTEP_INT8: usize = 2;
const KSTEP_INT7: usize = 4;
/// `vpmaddubsw` results (2 products each) summed in int16 before widening.
const INT7_GROUP: usize = 4;

static INT8: Kernel = Kernel {
    name: "avx2 int8 4x16 vpmaddwd",
    precision: Precision::Int8,
    layout: Layout::Steps(KSTEP_INT8),
    mr: MR,
    nr: NR,
    pair_sums: false,
    simd_store: true,
    micro: Micro::Acc(int8_micro),
};
static INT7: Kernel = Kernel {
    name: "avx2 int7 4x16 vpmaddubsw",
    precision: Precision::Int7,
    layout: Layout::Steps(KSTEP_INT7),
    mr: MR,
    nr: NR,
    pair_sums: false,
    simd_store: true,
    micro: Micro::Acc(int7_micro),
};

/// The AVX2 kernel for `p` when this CPU has AVX2.
pub fn detect(p: Precision) -> Option<&'static Kernel> {
    if !is_x86_feature_detected!("avx2") {
        return None;
    }
    Some(match p {
        Precision::Int8 => &INT8,
        Precision::Int7 => &INT7,
    })
}

/// # Safety
/// See [`super::Kernel`]; needs AVX2 (checked by [`detect`]).
unsafe fn int8_micro(kp: usize, a: *const u8, b: *const u8, acc: &mut Acc) {
    int8_avx2(kp, a as *const i8, b as *const i8, acc)
}

#[target_feature(enable = "avx2")]
unsafe fn int8_avx2(kp: usize, a: *const i8, b: *const i8, acc: &mut Acc) {
    let mut c = [[_mm256_setzero_si256(); 2]; MR];
    // vpermd indices that broadcast the (k, k+1) pair of row r.
    let row_idx = [
        _mm256_set1_epi32(0),
        _mm256_set1_epi32(1),
        _mm256_set1_epi32(2),
        _mm256_set1_epi32(3),
    ];
    for s in 0..kp {
        let bp = b.add(s * NR * KSTEP_INT8);
        let b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp as *const __m128i));
        let b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp.add(16) as *const __m128i));
        // Four rows x two k: eight bytes, as four int16 pairs in the low half.
        let a8 = _mm_loadl_epi64(a.add(s * MR * KSTEP_INT8) as *const __m128i);
        let a16 = _mm256_castsi128_si256(_mm_cvtepi8_epi16(a8));
        for r in 0..MR {
            let ar = _mm256_permutevar8x32_epi32(a16, row_idx[r]);
            c[r][0] = _mm256_add_epi32(c[r][0], _mm256_madd_epi16(ar, b0));
            c[r][1] = _mm256_add_epi32(c[r][1], _mm256_madd_epi16(ar, b1));
        }
    }
    store(&c, acc);
}

#[target_feature(enable = "avx2")]
unsafe fn store(c: &[[__m256i; 2]; MR], acc: &mut Acc) {
    for (r, row) in c.iter().enumerate() {
        let dst = acc.as_mut_ptr().add(r * NR_MAX) as *mut __m256i;
        _mm256_storeu_si256(dst, row[0]);
        _mm256_storeu_si256(dst.add(1), row[1]);
    }
}

/// # Safety
/// See [`super::Kernel`]; needs AVX2 (checked by [`detect`]).
unsafe fn int7_micro(kp: usize, a: *const u8, b: *const u8, acc: &mut Acc) {
    int7_avx2(kp, a as *const i8, b as *const i8, acc)
}

/// One k step of the INT7 kernel: adds `|a| · (b · sign a)` (two products per lane) to the
/// int16 partial sums `t`.
#[inline(always)]
unsafe fn int7_step(t: &mut [[__m256i; 2]; MR], a: *const i8, b: *const i8) {
    let b0 = _mm256_loadu_si256(b as *const __m256i);
    let b1 = _mm256_loadu_si256(b.add(32) as *const __m256i);
    for (r, tr) in t.iter_mut().enumerate() {
        let ar = _mm256_set1_epi32((a.add(r * KSTEP_INT7) as *const i32).read_unaligned());
        let abs = _mm256_abs_epi8(ar);
        tr[0] = _mm256_add_epi16(tr[0], _mm256_maddubs_epi16(abs, _mm256_sign_epi8(b0, ar)));
        tr[1] = _mm256_add_epi16(tr[1], _mm256_maddubs_epi16(abs, _mm256_sign_epi8(b1, ar)));
    }
}

/// Widens the int16 partial sums into the int32 accumulators and clears them.
#[inline(always)]
unsafe fn int7_flush(c: &mut [[__m256i; 2]; MR], t: &mut [[__m256i; 2]; MR]) {
    let ones = _mm256_set1_epi16(1);
    for (cr, tr) in c.iter_mut().zip(t.iter_mut()) {
        for h in 0..2 {
            cr[h] = _mm256_add_epi32(cr[h], _mm256_madd_epi16(tr[h], ones));
            tr[h] = _mm256_setzero_si256();
        }
    }
}

#[target_feature(enable = "avx2")]
unsafe fn int7_avx2(kp: usize, mut a: *const i8, mut b: *const i8, acc: &mut Acc) {
    let (a_step, b_step) = (MR * KSTEP_INT7, NR * KSTEP_INT7);
    let mut c = [[_mm256_setzero_si256(); 2]; MR];
    let mut t = [[_mm256_setzero_si256(); 2]; MR];
    for _ in 0..kp / INT7_GROUP {
        int7_step(&mut t, a, b);
        int7_step(&mut t, a.add(a_step), b.add(b_step));
        int7_step(&mut t, a.add(2 * a_step), b.add(2 * b_step));
        int7_step(&mut t, a.add(3 * a_step), b.add(3 * b_step));
        int7_flush(&mut c, &mut t);
        a = a.add(INT7_GROUP * a_step);
        b = b.add(INT7_GROUP * b_step);
    }
    for _ in 0..kp % INT7_GROUP {
        int7_step(&mut t, a, b);
        a = a.add(a_step);
        b = b.add(b_step);
    }
    int7_flush(&mut c, &mut t);
    store(&c, acc);
}
