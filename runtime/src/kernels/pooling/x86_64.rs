//! AVX2 pooling kernels: one output per lane, 8 per `__m256` (4 per `__m128` at row ends),
//! 32 per `__m256i` for int8 (16 per `__m128i`). Stride 2 loads `2 x lanes` consecutive
//! inputs and splits even and odd columns with shuffles (int8: as 16-bit lanes, shifted and
//! packed); the last column of an odd-width kernel takes the odd half one column back, so
//! no load reaches past the last input of its window. Row ends as in the NEON code: a
//! vector overlapping the previous one, scalar code for rows narrower than a vector.
//!
//! `_mm256_max_ps(v, m)` is `v > m ? v : m` (NaN compares false and keeps `m`): the
//! reference's `if m < v { m = v }` in one instruction.

use super::{generic_avg_cols, generic_max_cols, plane_avg, plane_max, Windows};
use std::arch::x86_64::*;

pub fn available() -> bool {
    is_x86_feature_detected!("avx2")
}

/// A vector of one output per lane.
trait Lanes: Copy {
    type E: Copy;
    const N: usize;
    /// `p[0..N]`.
    unsafe fn ld(p: *const Self::E) -> Self;
    /// (even, odd) elements of `p[0..2N]`, both in the lane order that [`Lanes::order`]
    /// puts right (256-bit shuffles work within 128-bit halves; a fold over such vectors
    /// is still lane by lane, so one reordering of the result serves all its loads).
    unsafe fn ld2(p: *const Self::E) -> (Self, Self);
    /// Lanes of an `ld2` result into memory order.
    unsafe fn order(v: Self) -> Self;
}

impl Lanes for __m256 {
    type E = f32;
    const N: usize = 8;
    #[inline(always)]
    unsafe fn ld(p: *const f32) -> Self {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn ld2(p: *const f32) -> (Self, Self) {
        let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
        (
            _mm256_shuffle_ps::<0b10_00_10_00>(a, b),
            _mm256_shuffle_ps::<0b11_01_11_01>(a, b),
        )
    }
    #[inline(always)]
    unsafe fn order(v: Self) -> Self {
        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
    }
}

impl Lanes for __m128 {
    type E = f32;
    const N: usize = 4;
    #[inline(always)]
    unsafe fn ld(p: *const f32) -> Self {
        _mm_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn ld2(p: *const f32) -> (Self, Self) {
        let (a, b) = (_mm_loadu_ps(p), _mm_loadu_ps(p.add(4)));
        (
            _mm_shuffle_ps::<0b10_00_10_00>(a, b),
            _mm_shuffle_ps::<0b11_01_11_01>(a, b),
        )
    }
    #[inline(always)]
    unsafe fn order(v: Self) -> Self {
        v
    }
}

impl Lanes for __m256i {
    type E = i8;
    const N: usize = 32;
    #[inline(always)]
    unsafe fn ld(p: *const i8) -> Self {
        _mm256_loadu_si256(p as *const __m256i)
    }
    #[inline(always)]
    unsafe fn ld2(p: *const i8) -> (Self, Self) {
        let a = _mm256_loadu_si256(p as *const __m256i);
        let b = _mm256_loadu_si256(p.add(32) as *const __m256i);
        // As 16-bit lanes the even byte is the low half, the odd byte the high half, both
        // sign-extended by the arithmetic shifts; the saturating pack cannot saturate.
        let even = |v| _mm256_srai_epi16::<8>(_mm256_slli_epi16::<8>(v));
        (
            _mm256_packs_epi16(even(a), even(b)),
            _mm256_packs_epi16(_mm256_srai_epi16::<8>(a), _mm256_srai_epi16::<8>(b)),
        )
    }
    #[inline(always)]
    unsafe fn order(v: Self) -> Self {
        _mm256_permute4x64_epi64::<0b11_01_10_00>(v)
    }
}

impl Lanes for __m128i {
    type E = i8;
    const N: usize = 16;
    #[inline(always)]
    unsafe fn ld(p: *const i8) -> Self {
        _mm_loadu_si128(p as *const __m128i)
    }
    #[inline(always)]
    unsafe fn ld2(p: *const i8) -> (Self, Self) {
        let a = _mm_loadu_si128(p as *const __m128i);
        let b = _mm_loadu_si128(p.add(16) as *const __m128i);
        let even = |v| _mm_srai_epi16::<8>(_mm_slli_epi16::<8>(v));
        (
            _mm_packs_epi16(even(a), even(b)),
            _mm_packs_epi16(_mm_srai_epi16::<8>(a), _mm_srai_epi16::<8>(b)),
        )
    }
    #[inline(always)]
    unsafe fn order(v: Self) -> Self {
        v
    }
}

/// How a window is folded, per lane (see the NEON variant).
trait Fold<V: Lanes>: Copy {
    const STEP_FIRST: bool;
    unsafe fn start(self, first: V) -> V;
    unsafe fn step(self, acc: V, v: V) -> V;
    unsafe fn store(self, acc: V, p: *mut V::E);
}

#[derive(Clone, Copy)]
struct MaxF32;

impl Fold<__m256> for MaxF32 {
    const STEP_FIRST: bool = false;
    #[inline(always)]
    unsafe fn start(self, first: __m256) -> __m256 {
        first
    }
    #[inline(always)]
    unsafe fn step(self, m: __m256, v: __m256) -> __m256 {
        _mm256_max_ps(v, m)
    }
    #[inline(always)]
    unsafe fn store(self, m: __m256, p: *mut f32) {
        _mm256_storeu_ps(p, m)
    }
}

impl Fold<__m128> for MaxF32 {
    const STEP_FIRST: bool = false;
    #[inline(always)]
    unsafe fn start(self, first: __m128) -> __m128 {
        first
    }
    #[inline(always)]
    unsafe fn step(self, m: __m128, v: __m128) -> __m128 {
        _mm_max_ps(v, m)
    }
    #[inline(always)]
    unsafe fn store(self, m: __m128, p: *mut f32) {
        _mm_storeu_ps(p, m)
    }
}

#[derive(Clone, Copy)]
struct AvgF32(f32);

impl Fold<__m256> for AvgF32 {
    const STEP_FIRST: bool = true;
    #[inline(always)]
    unsafe fn start(self, _first: __m256) -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn step(self, s: __m256, v: __m256) -> __m256 {
        _mm256_add_ps(s, v)
    }
    #[inline(always)]
    unsafe fn store(self, s: __m256, p: *mut f32) {
        _mm256_storeu_ps(p, _mm256_div_ps(s, _mm256_set1_ps(self.0)))
    }
}

impl Fold<__m128> for AvgF32 {
    const STEP_FIRST: bool = true;
    #[inline(always)]
    unsafe fn start(self, _first: __m128) -> __m128 {
        _mm_setzero_ps()
    }
    #[inline(always)]
    unsafe fn step(self, s: __m128, v: __m128) -> __m128 {
        _mm_add_ps(s, v)
    }
    #[inline(always)]
    unsafe fn store(self, s: __m128, p: *mut f32) {
        _mm_storeu_ps(p, _mm_div_ps(s, _mm_set1_ps(self.0)))
    }
}

#[derive(Clone, Copy)]
struct MaxI8;

impl Fold<__m256i> for MaxI8 {
    const STEP_FIRST: bool = false;
    #[inline(always)]
    unsafe fn start(self, first: __m256i) -> __m256i {
        first
    }
    #[inline(always)]
    unsafe fn step(self, m: __m256i, v: __m256i) -> __m256i {
        _mm256_max_epi8(m, v)
    }
    #[inline(always)]
    unsafe fn store(self, m: __m256i, p: *mut i8) {
        _mm256_storeu_si256(p as *mut __m256i, m)
    }
}

impl Fold<__m128i> for MaxI8 {
    const STEP_FIRST: bool = false;
    #[inline(always)]
    unsafe fn start(self, first: __m128i) -> __m128i {
        first
    }
    #[inline(always)]
    unsafe fn step(self, m: __m128i, v: __m128i) -> __m128i {
        _mm_max_epi8(m, v)
    }
    #[inline(always)]
    unsafe fn store(self, m: __m128i, p: *mut i8) {
        _mm_storeu_si128(p as *mut __m128i, m)
    }
}

/// Folds the windows of one vector of outputs whose first window starts at `p`, row by
/// row, column by column, as the reference.
#[inline(always)]
unsafe fn fold<V: Lanes, F: Fold<V>, const S: usize>(
    f: F,
    p: *const V::E,
    in_w: usize,
    kw: usize,
    kh: usize,
) -> V {
    let mut acc = f.start(if S == 1 { V::ld(p) } else { V::ld2(p).0 });
    for ky in 0..kh {
        let row = p.add(ky * in_w);
        if S == 1 {
            for kx in 0..kw {
                if !(ky == 0 && kx == 0 && !F::STEP_FIRST) {
                    acc = f.step(acc, V::ld(row.add(kx)));
                }
            }
        } else {
            let mut kx = 0;
            while kx + 1 < kw {
                let (even, odd) = V::ld2(row.add(kx));
                if !(ky == 0 && kx == 0 && !F::STEP_FIRST) {
                    acc = f.step(acc, even);
                }
                acc = f.step(acc, odd);
                kx += 2;
            }
            if kx < kw {
                acc = f.step(acc, V::ld2(row.add(kx - 1)).1);
            }
        }
    }
    if S == 1 {
        acc
    } else {
        V::order(acc)
    }
}

/// Outputs `j..` of row `r` one vector at a time; returns the first output not done.
#[inline(always)]
unsafe fn row_vectors<V: Lanes, F: Fold<V>, const S: usize>(
    f: F,
    w: &Windows,
    src: *const V::E,
    out: *mut V::E,
    r: usize,
    mut j: usize,
) -> usize {
    let o = out.add(r * w.out_stride);
    while j + V::N <= w.cols {
        let a = fold::<V, F, S>(f, src.add(w.start(r, j)), w.in_w, w.kernel_w, w.kernel_h);
        f.store(a, o.add(j));
        j += V::N;
    }
    j
}

/// The outputs `j..cols` of row `r` by one vector ending at the row's last output; `Err`
/// when the row is narrower than a vector.
#[inline(always)]
unsafe fn row_tail<V: Lanes, F: Fold<V>, const S: usize>(
    f: F,
    w: &Windows,
    src: *const V::E,
    out: *mut V::E,
    r: usize,
    j: usize,
) -> Result<(), ()> {
    if j >= w.cols {
        return Ok(());
    }
    if w.cols < V::N {
        return Err(());
    }
    let j = w.cols - V::N;
    let a = fold::<V, F, S>(f, src.add(w.start(r, j)), w.in_w, w.kernel_w, w.kernel_h);
    f.store(a, out.add(r * w.out_stride + j));
    Ok(())
}

fn simd_geometry(w: &Windows) -> bool {
    w.stride_w == 1 || (w.stride_w == 2 && w.kernel_w >= 2)
}

/// Calls `$body::<S>(windows, args..)` with the stride `S` as a constant, and with the
/// common kernel sizes as constant fields of the windows so their loops unroll.
macro_rules! specialised {
    ($w:ident, $body:ident($($arg:expr),*)) => {
        match ($w.stride_w, $w.kernel_w, $w.kernel_h) {
            (2, 2, 2) => $body::<2>(&Windows { kernel_w: 2, kernel_h: 2, ..*$w }, $($arg),*),
            (2, 3, 3) => $body::<2>(&Windows { kernel_w: 3, kernel_h: 3, ..*$w }, $($arg),*),
            (2, _, _) => $body::<2>($w, $($arg),*),
            (1, 3, 3) => $body::<1>(&Windows { kernel_w: 3, kernel_h: 3, ..*$w }, $($arg),*),
            (1, 2, 2) => $body::<1>(&Windows { kernel_w: 2, kernel_h: 2, ..*$w }, $($arg),*),
            _ => $body::<1>($w, $($arg),*),
        }
    };
}

/// # Safety
/// The caller has checked the windows against the buffers (`Windows::check`).
/// The SIMD code relies on it for its unchecked loads and stores.
pub unsafe fn max_f32(w: &Windows, src: &[f32], out: &mut [f32]) {
    assert!(available(), "AVX2 kernel on a CPU without AVX2");
    if !simd_geometry(w) {
        return (0..w.rows).for_each(|r| generic_max_cols(w, src, r, 0..w.cols, out));
    }
    #[target_feature(enable = "avx2")]
    unsafe fn body<const S: usize>(w: &Windows, src: &[f32], out: &mut [f32]) {
        for r in 0..w.rows {
            let (s, o) = (src.as_ptr(), out.as_mut_ptr());
            let j = row_vectors::<__m256, _, S>(MaxF32, w, s, o, r, 0);
            let j = row_vectors::<__m128, _, S>(MaxF32, w, s, o, r, j);
            if row_tail::<__m128, _, S>(MaxF32, w, s, o, r, j).is_err() {
                generic_max_cols(w, src, r, j..w.cols, out);
            }
        }
    }
    // SAFETY: AVX2 checked above; every window lies inside `src` and every output inside
    // `out` (checked by the caller), and the loads read only elements of their windows.
    unsafe { specialised!(w, body(src, out)) }
}

/// # Safety
/// The caller has checked the windows against the buffers (`Windows::check`).
/// The SIMD code relies on it for its unchecked loads and stores.
pub unsafe fn avg_f32(w: &Windows, src: &[f32], divisor: f32, out: &mut [f32]) {
    assert!(available(), "AVX2 kernel on a CPU without AVX2");
    if !simd_geometry(w) {
        return (0..w.rows).for_each(|r| generic_avg_cols(w, src, divisor, r, 0..w.cols, out));
    }
    #[target_feature(enable = "avx2")]
    unsafe fn body<const S: usize>(w: &Windows, src: &[f32], divisor: f32, out: &mut [f32]) {
        let f = AvgF32(divisor);
        for r in 0..w.rows {
            let (s, o) = (src.as_ptr(), out.as_mut_ptr());
            let j = row_vectors::<__m256, _, S>(f, w, s, o, r, 0);
            let j = row_vectors::<__m128, _, S>(f, w, s, o, r, j);
            if row_tail::<__m128, _, S>(f, w, s, o, r, j).is_err() {
                generic_avg_cols(w, src, divisor, r, j..w.cols, out);
            }
        }
    }
    // SAFETY: as in `max_f32`.
    unsafe { specialised!(w, body(src, divisor, out)) }
}

/// # Safety
/// The caller has checked the windows against the buffers (`Windows::check`).
/// The SIMD code relies on it for its unchecked loads and stores.
pub unsafe fn max_i8(w: &Windows, src: &[i8], out: &mut [i8]) {
    assert!(available(), "AVX2 kernel on a CPU without AVX2");
    if !simd_geometry(w) {
        return (0..w.rows).for_each(|r| generic_max_cols(w, src, r, 0..w.cols, out));
    }
    #[target_feature(enable = "avx2")]
    unsafe fn body<const S: usize>(w: &Windows, src: &[i8], out: &mut [i8]) {
        for r in 0..w.rows {
            let (s, o) = (src.as_ptr(), out.as_mut_ptr());
            let j = row_vectors::<__m256i, _, S>(MaxI8, w, s, o, r, 0);
            let j = row_vectors::<__m128i, _, S>(MaxI8, w, s, o, r, j);
            if row_tail::<__m128i, _, S>(MaxI8, w, s, o, r, j).is_err() {
                generic_max_cols(w, src, r, j..w.cols, out);
            }
        }
    }
    // SAFETY: as in `max_f32`.
    unsafe { specialised!(w, body(src, out)) }
}

/// Element `i` of 4 planes `plane` apart, as one vector.
#[inline(always)]
unsafe fn gather4(p: *const f32, plane: usize, i: usize) -> __m128 {
    _mm_setr_ps(
        *p.add(i),
        *p.add(plane + i),
        *p.add(2 * plane + i),
        *p.add(3 * plane + i),
    )
}

/// Folds 4 planes `plane` apart, lane `k` = plane `k`, each in memory order, 4 elements of
/// each at a time transposed so that every vector holds one element index.
#[inline(always)]
unsafe fn fold_planes4<F: Fold<__m128>>(f: F, p: *const f32, plane: usize) -> __m128 {
    let mut acc = f.start(gather4(p, plane, 0));
    let mut i = 0;
    if !F::STEP_FIRST {
        i = 1;
        while i < plane.min(4) {
            acc = f.step(acc, gather4(p, plane, i));
            i += 1;
        }
    }
    while i + 4 <= plane {
        let r0 = _mm_loadu_ps(p.add(i));
        let r1 = _mm_loadu_ps(p.add(plane + i));
        let r2 = _mm_loadu_ps(p.add(2 * plane + i));
        let r3 = _mm_loadu_ps(p.add(3 * plane + i));
        let (t0, t1) = (_mm_unpacklo_ps(r0, r1), _mm_unpackhi_ps(r0, r1));
        let (t2, t3) = (_mm_unpacklo_ps(r2, r3), _mm_unpackhi_ps(r2, r3));
        acc = f.step(acc, _mm_movelh_ps(t0, t2));
        acc = f.step(acc, _mm_movehl_ps(t2, t0));
        acc = f.step(acc, _mm_movelh_ps(t1, t3));
        acc = f.step(acc, _mm_movehl_ps(t3, t1));
        i += 4;
    }
    while i < plane {
        acc = f.step(acc, gather4(p, plane, i));
        i += 1;
    }
    acc
}

/// # Safety
/// The caller has checked the planes against the buffers.
/// The SIMD code relies on it for its unchecked loads and stores.
pub unsafe fn global_max_f32(src: &[f32], plane: usize, out: &mut [f32]) {
    assert!(available(), "AVX2 kernel on a CPU without AVX2");
    #[target_feature(enable = "avx2")]
    unsafe fn quads(src: &[f32], plane: usize, out: &mut [f32]) {
        for g in 0..out.len() / 4 {
            let m = fold_planes4(MaxF32, src.as_ptr().add(4 * g * plane), plane);
            MaxF32.store(m, out.as_mut_ptr().add(4 * g));
        }
    }
    // SAFETY: AVX2 checked; planes 4g..4g+4 lie inside `src`, outputs inside `out`.
    unsafe { quads(src, plane, out) };
    for q in out.len() / 4 * 4..out.len() {
        out[q] = plane_max(&src[q * plane..][..plane]);
    }
}

/// # Safety
/// The caller has checked the planes against the buffers.
/// The SIMD code relies on it for its unchecked loads and stores.
pub unsafe fn global_avg_f32(src: &[f32], plane: usize, out: &mut [f32]) {
    assert!(available(), "AVX2 kernel on a CPU without AVX2");
    #[target_feature(enable = "avx2")]
    unsafe fn quads(src: &[f32], plane: usize, out: &mut [f32]) {
        let f = AvgF32(plane as f32);
        for g in 0..out.len() / 4 {
            let s = fold_planes4(f, src.as_ptr().add(4 * g * plane), plane);
            f.store(s, out.as_mut_ptr().add(4 * g));
        }
    }
    // SAFETY: as in `global_max_f32`.
    unsafe { quads(src, plane, out) };
    for q in out.len() / 4 * 4..out.len() {
        out[q] = plane_avg(&src[q * plane..][..plane]);
    }
}

/// Int8 max is exact in any order.
///
/// # Safety
/// The caller has checked the planes against the buffers.
/// The SIMD code relies on it for its unchecked loads and stores.
pub unsafe fn global_max_i8(src: &[i8], plane: usize, out: &mut [i8]) {
    assert!(available(), "AVX2 kernel on a CPU without AVX2");
    #[target_feature(enable = "avx2")]
    unsafe fn one(p: &[i8]) -> i8 {
        let n = p.len();
        let ld = |i: usize| _mm256_loadu_si256(p.as_ptr().add(i) as *const __m256i);
        let mut m = ld(0);
        let mut i = 32;
        while i + 32 <= n {
            m = _mm256_max_epi8(m, ld(i));
            i += 32;
        }
        if i < n {
            m = _mm256_max_epi8(m, ld(n - 32));
        }
        let m = _mm_max_epi8(_mm256_castsi256_si128(m), _mm256_extracti128_si256::<1>(m));
        let m = _mm_max_epi8(m, _mm_srli_si128::<8>(m));
        let m = _mm_max_epi8(m, _mm_srli_si128::<4>(m));
        let m = _mm_max_epi8(m, _mm_srli_si128::<2>(m));
        let m = _mm_max_epi8(m, _mm_srli_si128::<1>(m));
        _mm_cvtsi128_si32(m) as i8
    }
    for (q, o) in out.iter_mut().enumerate() {
        let p = &src[q * plane..][..plane];
        *o = if plane < 32 {
            plane_max(p)
        } else {
            // SAFETY: AVX2 checked; every load reads 32 elements of `p` (plane >= 32).
            unsafe { one(p) }
        };
    }
}
