//! AVX2 + FMA GEMV: four rows share each 8-wide load of `x`; two accumulators per row
//! (16 inputs per step) hide the FMA latency.

use std::arch::x86_64::*;

/// # Safety
/// `w` holds at least `y.len() * x.len()` values and `bias`, if any, `y.len()` (`super::gemv`
/// checks both): the SIMD loads of the rows are unchecked.
pub unsafe fn gemv(w: &[f32], x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    assert!(
        super::super::depthwise_f32::x86_64::available(),
        "AVX2/FMA kernel on a CPU without AVX2/FMA"
    );
    let (k, w, x) = (x.len(), w.as_ptr(), x.as_ptr());
    // SAFETY: features checked above; every row read lies in `w` (checked by the caller).
    super::by_rows(
        y,
        bias,
        |r| unsafe { rows4(w.add(r * k), k, x) },
        |r| unsafe { row1(w.add(r * k), k, x) },
    );
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn rows4(w: *const f32, k: usize, x: *const f32) -> [f32; 4] {
    let rows = [w, w.add(k), w.add(2 * k), w.add(3 * k)];
    let mut a = [_mm256_setzero_ps(); 4];
    let mut b = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 16 <= k {
        let x0 = _mm256_loadu_ps(x.add(i));
        let x1 = _mm256_loadu_ps(x.add(i + 8));
        for j in 0..4 {
            a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(rows[j].add(i)), x0, a[j]);
            b[j] = _mm256_fmadd_ps(_mm256_loadu_ps(rows[j].add(i + 8)), x1, b[j]);
        }
        i += 16;
    }
    if i + 8 <= k {
        let x0 = _mm256_loadu_ps(x.add(i));
        for j in 0..4 {
            a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(rows[j].add(i)), x0, a[j]);
        }
        i += 8;
    }
    let mut out = [0.0; 4];
    for j in 0..4 {
        let mut s = hsum(_mm256_add_ps(a[j], b[j]));
        for t in i..k {
            s += *rows[j].add(t) * *x.add(t);
        }
        out[j] = s;
    }
    out
}

#[target_feature(enable = "avx2,fma")]
unsafe fn row1(w: *const f32, k: usize, x: *const f32) -> f32 {
    let mut a = _mm256_setzero_ps();
    let mut b = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= k {
        a = _mm256_fmadd_ps(_mm256_loadu_ps(w.add(i)), _mm256_loadu_ps(x.add(i)), a);
        b = _mm256_fmadd_ps(
            _mm256_loadu_ps(w.add(i + 8)),
            _mm256_loadu_ps(x.add(i + 8)),
            b,
        );
        i += 16;
    }
    if i + 8 <= k {
        a = _mm256_fmadd_ps(_mm256_loadu_ps(w.add(i)), _mm256_loadu_ps(x.add(i)), a);
        i += 8;
    }
    let mut s = hsum(_mm256_add_ps(a, b));
    for t in i..k {
        s += *w.add(t) * *x.add(t);
    }
    s
}

/// F16C (fp16 <-> fp32 conversion), with the AVX2 + FMA the kernels also use.
pub fn f16c_available() -> bool {
    super::super::depthwise_f32::x86_64::available() && is_x86_feature_detected!("f16c")
}

/// [`gemv`] on fp16 weights: each 8 halves widened by `vcvtph2ps`, then as `gemv`.
///
/// # Safety
/// As [`gemv`], with `w` counted in halves.
pub unsafe fn gemv_f16(w: &[u16], x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    assert!(f16c_available(), "F16C kernel on a CPU without F16C");
    let (k, w, x) = (x.len(), w.as_ptr(), x.as_ptr());
    // SAFETY: features checked above; every row read lies in `w` (checked by the caller).
    super::by_rows(
        y,
        bias,
        |r| unsafe { rows4_f16(w.add(r * k), k, x) },
        |r| unsafe { rows_f16::<1>([w.add(r * k)], k, x)[0] },
    );
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows4_f16(w: *const u16, k: usize, x: *const f32) -> [f32; 4] {
    rows_f16::<4>([w, w.add(k), w.add(2 * k), w.add(3 * k)], k, x)
}

/// Eight halves at `p`, widened.
#[inline(always)]
unsafe fn load_f16(p: *const u16) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
}

/// `R` rows' dot products with `x`, two accumulators per row (16 inputs per step).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_f16<const R: usize>(rows: [*const u16; R], k: usize, x: *const f32) -> [f32; R] {
    let mut a = [_mm256_setzero_ps(); R];
    let mut b = [_mm256_setzero_ps(); R];
    let mut i = 0;
    while i + 16 <= k {
        let x0 = _mm256_loadu_ps(x.add(i));
        let x1 = _mm256_loadu_ps(x.add(i + 8));
        for j in 0..R {
            a[j] = _mm256_fmadd_ps(load_f16(rows[j].add(i)), x0, a[j]);
            b[j] = _mm256_fmadd_ps(load_f16(rows[j].add(i + 8)), x1, b[j]);
        }
        i += 16;
    }
    if i + 8 <= k {
        let x0 = _mm256_loadu_ps(x.add(i));
        for j in 0..R {
            a[j] = _mm256_fmadd_ps(load_f16(rows[j].add(i)), x0, a[j]);
        }
        i += 8;
    }
    let mut out = [0.0; R];
    for j in 0..R {
        let mut s = hsum(_mm256_add_ps(a[j], b[j]));
        for t in i..k {
            s += crate::model::weights::f16_to_f32(*rows[j].add(t)) * *x.add(t);
        }
        out[j] = s;
    }
    out
}
