//! NEON pooling kernels. One output per lane: 4 per `float32x4_t`, 16 per `int8x16_t` (8 per
//! `int8x8_t` at row ends), several vectors per loop iteration so the in-order Cortex-A53
//! has independent work between the dependent compare-selects / adds of one window.
//! Horizontal stride 2 loads with `ld2`, which splits `2 x lanes` consecutive inputs into
//! even and odd columns; a kernel column without a partner (the last of an odd-width kernel,
//! e.g. 3x3 stride 2) is the previous pair's evens shifted by one lane (`ext`), the lane
//! shifted in being the next vector's first even or, for the last vector, one element
//! loaded on its own: the last input of the last lane's window, so no load reaches past
//! the windows. A row's last outputs that do not fill a vector are done by a vector
//! overlapping the previous one (same values written twice), or in scalar code for rows
//! narrower than one vector.

use super::{generic_avg_cols, generic_max_cols, plane_avg, plane_max, Windows};
use std::arch::aarch64::*;

/// A vector of one output per lane.
trait Lanes: Copy {
    type E: Copy;
    const N: usize;
    /// `p[0..N]`.
    unsafe fn ld(p: *const Self::E) -> Self;
    /// (even, odd) elements of `p[0..2N]`.
    unsafe fn ld2(p: *const Self::E) -> (Self, Self);
    /// `p[0]` in every lane.
    unsafe fn ld_dup(p: *const Self::E) -> Self;
    /// Lanes `1..N` of `a`, then lane 0 of `b`.
    fn ext1(a: Self, b: Self) -> Self;
}

impl Lanes for float32x4_t {
    type E = f32;
    const N: usize = 4;
    #[inline(always)]
    unsafe fn ld(p: *const f32) -> Self {
        vld1q_f32(p)
    }
    #[inline(always)]
    unsafe fn ld2(p: *const f32) -> (Self, Self) {
        let v = vld2q_f32(p);
        (v.0, v.1)
    }
    #[inline(always)]
    unsafe fn ld_dup(p: *const f32) -> Self {
        vld1q_dup_f32(p)
    }
    #[inline(always)]
    fn ext1(a: Self, b: Self) -> Self {
        // SAFETY: NEON is part of the aarch64 baseline.
        unsafe { vextq_f32::<1>(a, b) }
    }
}

impl Lanes for int8x16_t {
    type E = i8;
    const N: usize = 16;
    #[inline(always)]
    unsafe fn ld(p: *const i8) -> Self {
        vld1q_s8(p)
    }
    #[inline(always)]
    unsafe fn ld2(p: *const i8) -> (Self, Self) {
        let v = vld2q_s8(p);
        (v.0, v.1)
    }
    #[inline(always)]
    unsafe fn ld_dup(p: *const i8) -> Self {
        vld1q_dup_s8(p)
    }
    #[inline(always)]
    fn ext1(a: Self, b: Self) -> Self {
        // SAFETY: NEON is part of the aarch64 baseline.
        unsafe { vextq_s8::<1>(a, b) }
    }
}

impl Lanes for int8x8_t {
    type E = i8;
    const N: usize = 8;
    #[inline(always)]
    unsafe fn ld(p: *const i8) -> Self {
        vld1_s8(p)
    }
    #[inline(always)]
    unsafe fn ld2(p: *const i8) -> (Self, Self) {
        let v = vld2_s8(p);
        (v.0, v.1)
    }
    #[inline(always)]
    unsafe fn ld_dup(p: *const i8) -> Self {
        vld1_dup_s8(p)
    }
    #[inline(always)]
    fn ext1(a: Self, b: Self) -> Self {
        // SAFETY: NEON is part of the aarch64 baseline.
        unsafe { vext_s8::<1>(a, b) }
    }
}

/// How a window is folded, per lane.
trait Fold<V: Lanes>: Copy {
    /// Whether the first element is folded into the start value (average: 0 + first) or is
    /// the start value (max).
    const STEP_FIRST: bool;
    fn start(self, first: V) -> V;
    fn step(self, acc: V, v: V) -> V;
    unsafe fn store(self, acc: V, p: *mut V::E);
}

/// `if m < v { m = v }` per lane: `fcmgt` + `bsl` (NaN compares false and keeps `m`).
#[derive(Clone, Copy)]
struct MaxF32;

impl Fold<float32x4_t> for MaxF32 {
    const STEP_FIRST: bool = false;
    #[inline(always)]
    fn start(self, first: float32x4_t) -> float32x4_t {
        first
    }
    #[inline(always)]
    fn step(self, m: float32x4_t, v: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is part of the aarch64 baseline.
        unsafe { vbslq_f32(vcgtq_f32(v, m), v, m) }
    }
    #[inline(always)]
    unsafe fn store(self, m: float32x4_t, p: *mut f32) {
        vst1q_f32(p, m)
    }
}

/// `sum = 0; sum += v ...; sum / divisor` per lane.
#[derive(Clone, Copy)]
struct AvgF32(float32x4_t);

impl Fold<float32x4_t> for AvgF32 {
    const STEP_FIRST: bool = true;
    #[inline(always)]
    fn start(self, _first: float32x4_t) -> float32x4_t {
        // SAFETY: NEON is part of the aarch64 baseline.
        unsafe { vdupq_n_f32(0.0) }
    }
    #[inline(always)]
    fn step(self, s: float32x4_t, v: float32x4_t) -> float32x4_t {
        // SAFETY: as above.
        unsafe { vaddq_f32(s, v) }
    }
    #[inline(always)]
    unsafe fn store(self, s: float32x4_t, p: *mut f32) {
        vst1q_f32(p, vdivq_f32(s, self.0))
    }
}

#[derive(Clone, Copy)]
struct MaxI8;

impl Fold<int8x16_t> for MaxI8 {
    const STEP_FIRST: bool = false;
    #[inline(always)]
    fn start(self, first: int8x16_t) -> int8x16_t {
        first
    }
    #[inline(always)]
    fn step(self, m: int8x16_t, v: int8x16_t) -> int8x16_t {
        // SAFETY: NEON is part of the aarch64 baseline.
        unsafe { vmaxq_s8(m, v) }
    }
    #[inline(always)]
    unsafe fn store(self, m: int8x16_t, p: *mut i8) {
        vst1q_s8(p, m)
    }
}

impl Fold<int8x8_t> for MaxI8 {
    const STEP_FIRST: bool = false;
    #[inline(always)]
    fn start(self, first: int8x8_t) -> int8x8_t {
        first
    }
    #[inline(always)]
    fn step(self, m: int8x8_t, v: int8x8_t) -> int8x8_t {
        // SAFETY: NEON is part of the aarch64 baseline.
        unsafe { vmax_s8(m, v) }
    }
    #[inline(always)]
    unsafe fn store(self, m: int8x8_t, p: *mut i8) {
        vst1_s8(p, m)
    }
}

/// Folds the windows of `C` vectors of outputs side by side; vector `c`'s first window
/// starts at `p + c * V::N * S` (`S` the horizontal stride, 1 or 2). Row by row, column by
/// column, as the reference.
#[inline(always)]
unsafe fn fold<V: Lanes, F: Fold<V>, const C: usize, const S: usize>(
    f: F,
    p: *const V::E,
    in_w: usize,
    kw: usize,
    kh: usize,
) -> [V; C] {
    let at = |c: usize, off: usize| p.add(c * V::N * S + off);
    let mut acc: [V; C] = std::array::from_fn(|c| {
        f.start(if S == 1 {
            V::ld(at(c, 0))
        } else {
            V::ld2(at(c, 0)).0
        })
    });
    for ky in 0..kh {
        let row = ky * in_w;
        if S == 1 {
            for kx in 0..kw {
                if ky == 0 && kx == 0 && !F::STEP_FIRST {
                    continue;
                }
                for (c, a) in acc.iter_mut().enumerate() {
                    *a = f.step(*a, V::ld(at(c, row + kx)));
                }
            }
        } else {
            let mut kx = 0;
            while kx + 1 < kw {
                let pairs: [(V, V); C] = std::array::from_fn(|c| V::ld2(at(c, row + kx)));
                for (c, a) in acc.iter_mut().enumerate() {
                    let (even, odd) = pairs[c];
                    if !(ky == 0 && kx == 0 && !F::STEP_FIRST) {
                        *a = f.step(*a, even);
                    }
                    *a = f.step(*a, odd);
                }
                if kx + 3 == kw {
                    // The last column of an odd width: the evens shifted by one lane, the
                    // lane shifted in being the next vector's first even (or, for the
                    // last vector, the one element after this vector's pairs).
                    for (c, a) in acc.iter_mut().enumerate() {
                        let next = if c + 1 < C {
                            pairs[c + 1].0
                        } else {
                            V::ld_dup(at(c, row + kx + 2 * V::N))
                        };
                        *a = f.step(*a, V::ext1(pairs[c].0, next));
                    }
                    kx += 3;
                } else {
                    kx += 2;
                }
            }
            // Width 1 at stride 2 is not taken (`simd_geometry`): every column is done.
            debug_assert_eq!(kx, kw);
        }
    }
    acc
}

/// Outputs `j..` of row `r` in blocks of `C` vectors while they fit; returns the first
/// output not done.
#[inline(always)]
unsafe fn row_blocks<V: Lanes, F: Fold<V>, const C: usize, const S: usize>(
    f: F,
    w: &Windows,
    src: *const V::E,
    out: *mut V::E,
    r: usize,
    mut j: usize,
) -> usize {
    let o = out.add(r * w.out_stride);
    while j + C * V::N <= w.cols {
        let acc = fold::<V, F, C, S>(f, src.add(w.start(r, j)), w.in_w, w.kernel_w, w.kernel_h);
        for (c, a) in acc.iter().enumerate() {
            f.store(*a, o.add(j + c * V::N));
        }
        j += C * V::N;
    }
    j
}

/// The last outputs `j..cols` of row `r` (fewer than `C` vectors), by one block of `C`
/// vectors ending at the row's last output, overlapping outputs already done (the same
/// values are written again); `Err(j)` when the row is narrower than the block.
#[inline(always)]
unsafe fn row_tail<V: Lanes, F: Fold<V>, const C: usize, const S: usize>(
    f: F,
    w: &Windows,
    src: *const V::E,
    out: *mut V::E,
    r: usize,
    j: usize,
) -> Result<(), usize> {
    if j >= w.cols {
        return Ok(());
    }
    if w.cols < C * V::N {
        return Err(j);
    }
    row_blocks::<V, F, C, S>(f, w, src, out, r, w.cols - C * V::N);
    Ok(())
}

/// Row `r` of fp32 windows: blocks of 4 vectors (independent chains for the in-order
/// cores), then 2, the rest by an overlapping block of 2 or, in rows narrower than 8, by
/// single vectors; `Err(j)`: outputs `j..` remain (rows narrower than 4).
#[inline(always)]
unsafe fn row_f32<F: Fold<float32x4_t>, const S: usize>(
    f: F,
    w: &Windows,
    src: *const f32,
    out: *mut f32,
    r: usize,
) -> Result<(), usize> {
    let j = row_blocks::<float32x4_t, F, 4, S>(f, w, src, out, r, 0);
    let j = row_blocks::<float32x4_t, F, 2, S>(f, w, src, out, r, j);
    if row_tail::<float32x4_t, F, 2, S>(f, w, src, out, r, j).is_ok() {
        return Ok(());
    }
    let j = row_blocks::<float32x4_t, F, 1, S>(f, w, src, out, r, j);
    row_tail::<float32x4_t, F, 1, S>(f, w, src, out, r, j)
}

/// Whether the SIMD window code takes this geometry.
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
    if !simd_geometry(w) {
        return (0..w.rows).for_each(|r| generic_max_cols(w, src, r, 0..w.cols, out));
    }
    #[inline(always)]
    fn body<const S: usize>(w: &Windows, src: &[f32], out: &mut [f32]) {
        for r in 0..w.rows {
            // SAFETY: every window lies inside `src` and every output inside `out`
            // (checked by the caller); the loads read only elements of their windows.
            let done = unsafe { row_f32::<_, S>(MaxF32, w, src.as_ptr(), out.as_mut_ptr(), r) };
            if let Err(j) = done {
                generic_max_cols(w, src, r, j..w.cols, out);
            }
        }
    }
    specialised!(w, body(src, out))
}

/// # Safety
/// The caller has checked the windows against the buffers (`Windows::check`).
/// The SIMD code relies on it for its unchecked loads and stores.
pub unsafe fn avg_f32(w: &Windows, src: &[f32], divisor: f32, out: &mut [f32]) {
    if !simd_geometry(w) {
        return (0..w.rows).for_each(|r| generic_avg_cols(w, src, divisor, r, 0..w.cols, out));
    }
    #[inline(always)]
    fn body<const S: usize>(w: &Windows, src: &[f32], divisor: f32, out: &mut [f32]) {
        // SAFETY: NEON is part of the aarch64 baseline.
        let f = AvgF32(unsafe { vdupq_n_f32(divisor) });
        for r in 0..w.rows {
            // SAFETY: as in `max_f32`.
            let done = unsafe { row_f32::<_, S>(f, w, src.as_ptr(), out.as_mut_ptr(), r) };
            if let Err(j) = done {
                generic_avg_cols(w, src, divisor, r, j..w.cols, out);
            }
        }
    }
    specialised!(w, body(src, divisor, out))
}

/// # Safety
/// The caller has checked the windows against the buffers (`Windows::check`).
/// The SIMD code relies on it for its unchecked loads and stores.
pub unsafe fn max_i8(w: &Windows, src: &[i8], out: &mut [i8]) {
    if !simd_geometry(w) {
        return (0..w.rows).for_each(|r| generic_max_cols(w, src, r, 0..w.cols, out));
    }
    #[inline(always)]
    fn body<const S: usize>(w: &Windows, src: &[i8], out: &mut [i8]) {
        for r in 0..w.rows {
            // SAFETY: as in `max_f32`.
            let done = unsafe {
                let (s, o) = (src.as_ptr(), out.as_mut_ptr());
                let j = row_blocks::<int8x16_t, _, 2, S>(MaxI8, w, s, o, r, 0);
                let j = row_blocks::<int8x16_t, _, 1, S>(MaxI8, w, s, o, r, j);
                if row_tail::<int8x16_t, _, 1, S>(MaxI8, w, s, o, r, j).is_ok() {
                    Ok(())
                } else {
                    let j = row_blocks::<int8x8_t, _, 1, S>(MaxI8, w, s, o, r, j);
                    row_tail::<int8x8_t, _, 1, S>(MaxI8, w, s, o, r, j)
                }
            };
            if let Err(j) = done {
                generic_max_cols(w, src, r, j..w.cols, out);
            }
        }
    }
    specialised!(w, body(src, out))
}

/// Element `i` of 4 planes `plane` apart, as one vector.
#[inline(always)]
unsafe fn gather4(p: *const f32, plane: usize, i: usize) -> float32x4_t {
    let v = [
        *p.add(i),
        *p.add(plane + i),
        *p.add(2 * plane + i),
        *p.add(3 * plane + i),
    ];
    vld1q_f32(v.as_ptr())
}

/// Folds `G` groups of 4 planes `plane` apart (group `g` starting at plane `4g`), lane `k`
/// of vector `g` = plane `4g + k`, each plane in memory order: 4 elements of each at a
/// time, transposed so that every vector holds one element index. The groups are
/// independent chains for the in-order cores.
#[inline(always)]
unsafe fn fold_planes<F: Fold<float32x4_t>, const G: usize>(
    f: F,
    p: *const f32,
    plane: usize,
) -> [float32x4_t; G] {
    let base = |g: usize| p.add(4 * g * plane);
    let mut acc: [float32x4_t; G] = std::array::from_fn(|g| f.start(gather4(base(g), plane, 0)));
    let mut i = 0;
    if !F::STEP_FIRST {
        // The start value is the first element: fold the rest.
        i = 1;
        while i < plane.min(4) {
            for (g, a) in acc.iter_mut().enumerate() {
                *a = f.step(*a, gather4(base(g), plane, i));
            }
            i += 1;
        }
    }
    while i + 4 <= plane {
        for (g, a) in acc.iter_mut().enumerate() {
            let q = base(g);
            let r0 = vld1q_f32(q.add(i));
            let r1 = vld1q_f32(q.add(plane + i));
            let r2 = vld1q_f32(q.add(2 * plane + i));
            let r3 = vld1q_f32(q.add(3 * plane + i));
            let t0 = vreinterpretq_f64_f32(vtrn1q_f32(r0, r1));
            let t1 = vreinterpretq_f64_f32(vtrn2q_f32(r0, r1));
            let t2 = vreinterpretq_f64_f32(vtrn1q_f32(r2, r3));
            let t3 = vreinterpretq_f64_f32(vtrn2q_f32(r2, r3));
            *a = f.step(*a, vreinterpretq_f32_f64(vtrn1q_f64(t0, t2)));
            *a = f.step(*a, vreinterpretq_f32_f64(vtrn1q_f64(t1, t3)));
            *a = f.step(*a, vreinterpretq_f32_f64(vtrn2q_f64(t0, t2)));
            *a = f.step(*a, vreinterpretq_f32_f64(vtrn2q_f64(t1, t3)));
        }
        i += 4;
    }
    while i < plane {
        for (g, a) in acc.iter_mut().enumerate() {
            *a = f.step(*a, gather4(base(g), plane, i));
        }
        i += 1;
    }
    acc
}

/// Global pooling of every 4 planes (8 at a time, then 4), the last `out.len() % 4` planes
/// by `rest`.
#[inline(always)]
fn global_f32<F: Fold<float32x4_t>>(
    f: F,
    src: &[f32],
    plane: usize,
    out: &mut [f32],
    rest: impl Fn(&[f32]) -> f32,
) {
    let quads = out.len() / 4;
    let mut g = 0;
    // SAFETY (both loops): planes 4g.. of the groups lie inside `src` and outputs 4g.. inside
    // `out`, as the caller checked `out.len()` planes.
    while g + 2 <= quads {
        unsafe {
            let acc = fold_planes::<F, 2>(f, src.as_ptr().add(4 * g * plane), plane);
            f.store(acc[0], out.as_mut_ptr().add(4 * g));
            f.store(acc[1], out.as_mut_ptr().add(4 * g + 4));
        }
        g += 2;
    }
    if g < quads {
        unsafe {
            let [a] = fold_planes::<F, 1>(f, src.as_ptr().add(4 * g * plane), plane);
            f.store(a, out.as_mut_ptr().add(4 * g));
        }
    }
    for q in 4 * quads..out.len() {
        out[q] = rest(&src[q * plane..][..plane]);
    }
}

/// # Safety
/// The caller has checked the planes against the buffers.
/// The SIMD code relies on it for its unchecked loads and stores.
pub unsafe fn global_max_f32(src: &[f32], plane: usize, out: &mut [f32]) {
    global_f32(MaxF32, src, plane, out, plane_max);
}

/// # Safety
/// The caller has checked the planes against the buffers.
/// The SIMD code relies on it for its unchecked loads and stores.
pub unsafe fn global_avg_f32(src: &[f32], plane: usize, out: &mut [f32]) {
    // SAFETY: NEON is part of the aarch64 baseline.
    let f = AvgF32(unsafe { vdupq_n_f32(plane as f32) });
    global_f32(f, src, plane, out, plane_avg);
}

/// Int8 max is exact in any order:
/// 16 lanes per step, the last step overlapping the previous one, then across the lanes.
///
/// # Safety
/// The caller has checked the planes against the buffers.
/// The SIMD code relies on it for its unchecked loads and stores.
pub unsafe fn global_max_i8(src: &[i8], plane: usize, out: &mut [i8]) {
    for (q, o) in out.iter_mut().enumerate() {
        let p = &src[q * plane..][..plane];
        if plane < 16 {
            *o = plane_max(p);
            continue;
        }
        // SAFETY: every load reads 16 elements of `p` (plane >= 16).
        unsafe {
            let mut m = vld1q_s8(p.as_ptr());
            let mut i = 16;
            while i + 16 <= plane {
                m = vmaxq_s8(m, vld1q_s8(p.as_ptr().add(i)));
                i += 16;
            }
            if i < plane {
                m = vmaxq_s8(m, vld1q_s8(p.as_ptr().add(plane - 16)));
            }
            *o = vmaxvq_s8(m);
        }
    }
}
