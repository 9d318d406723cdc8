//! AVX2 + FMA versions of the per-group transforms: eight tiles of one channel per call,
//! one per lane of a 256-bit vector, on the shared factored formulas of `transforms.rs`
//! (the [`Lane`] arithmetic with fused multiply-adds). The portable code runs four tiles in
//! SSE registers and its loops stayed rolled with spills (14 % of SqueezeNet FP32 on the
//! host); here every loop has a fixed size inside one `target_feature` function, so it is
//! unrolled with the constants hoisted.
//!
//! Eight windows are read as four-float rows: windows `l` and `l + 4` share one vector
//! (low and high 128-bit halves) and one in-half 4x4 transpose turns four such rows into
//! columns with the lanes in tile order. Stores undo it the same way.

use super::lanes::Lane;
use super::transforms;
use super::{Dest, Window};
use crate::kernels::gemm_f32::{Panels, TileAct};
use std::arch::x86_64::*;
use std::ops::{Add, Sub};

/// Tiles per call.
pub const LANES: usize = 8;

/// Eight fp32 lanes. Values of this type are only made inside this module's
/// `target_feature(enable = "avx2,fma")` functions, which run after [`available`].
#[derive(Clone, Copy)]
struct F8(__m256);

impl Add for F8 {
    type Output = F8;
    #[inline(always)]
    fn add(self, b: F8) -> F8 {
        // SAFETY: see the type: AVX is present wherever an F8 exists.
        F8(unsafe { _mm256_add_ps(self.0, b.0) })
    }
}

impl Sub for F8 {
    type Output = F8;
    #[inline(always)]
    fn sub(self, b: F8) -> F8 {
        // SAFETY: as above.
        F8(unsafe { _mm256_sub_ps(self.0, b.0) })
    }
}

impl Lane for F8 {
    #[inline(always)]
    fn scale(self, c: f32) -> F8 {
        // SAFETY: as above.
        F8(unsafe { _mm256_mul_ps(self.0, _mm256_set1_ps(c)) })
    }
    #[inline(always)]
    fn mla(self, b: F8, c: f32) -> F8 {
        // SAFETY: as above; FMA is checked with AVX2.
        F8(unsafe { _mm256_fmadd_ps(b.0, _mm256_set1_ps(c), self.0) })
    }
}

/// Whether this CPU runs these transforms, and whether the GEMM's panels suit them: every
/// panel width a multiple of eight, so a group of eight tiles never straddles two panels.
pub fn available(panels: Panels) -> bool {
    let widths_fit =
        panels.nr().is_multiple_of(LANES) && panels.tails().iter().all(|t| t.is_multiple_of(LANES));
    widths_fit && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// In-half 4x4 transpose: half `h` of `out[j]` lane `i` = half `h` of `r[i]` lane `j`.
#[inline(always)]
unsafe fn transpose4(r: [__m256; 4]) -> [__m256; 4] {
    let t0 = _mm256_castps_pd(_mm256_unpacklo_ps(r[0], r[1]));
    let t1 = _mm256_castps_pd(_mm256_unpackhi_ps(r[0], r[1]));
    let t2 = _mm256_castps_pd(_mm256_unpacklo_ps(r[2], r[3]));
    let t3 = _mm256_castps_pd(_mm256_unpackhi_ps(r[2], r[3]));
    [
        _mm256_castpd_ps(_mm256_unpacklo_pd(t0, t2)),
        _mm256_castpd_ps(_mm256_unpackhi_pd(t0, t2)),
        _mm256_castpd_ps(_mm256_unpacklo_pd(t1, t3)),
        _mm256_castpd_ps(_mm256_unpackhi_pd(t1, t3)),
    ]
}

/// Columns `c0..c0 + 4` of row `y` of the eight windows: `out[x]` lane `l` = window `l`'s
/// element `c0 + x`.
#[inline(always)]
unsafe fn gather4(win: &[Window; LANES], y: usize, c0: usize) -> [F8; 4] {
    let mut r = [_mm256_setzero_ps(); 4];
    for l in 0..4 {
        let lo = _mm_loadu_ps(win[l].ptr.add(y * win[l].stride + c0));
        let hi = _mm_loadu_ps(win[l + 4].ptr.add(y * win[l + 4].stride + c0));
        r[l] = _mm256_insertf128_ps::<1>(_mm256_castps128_ps256(lo), hi);
    }
    let t = transpose4(r);
    [F8(t[0]), F8(t[1]), F8(t[2]), F8(t[3])]
}

/// Row `y` of the eight windows, the first `A` columns.
#[inline(always)]
unsafe fn gather<const A: usize>(win: &[Window; LANES], y: usize) -> [F8; A] {
    let lo = gather4(win, y, 0);
    let mut x = [lo[0]; A];
    x[..A.min(4)].copy_from_slice(&lo[..A.min(4)]);
    if A > 4 {
        x[4..].copy_from_slice(&gather4(win, y, 4)[..A - 4]);
    }
    x
}

/// `$name`: the 2-D input transform of eight windows of one channel (`super::input_group`
/// for eight lanes), position `t` to `dst + t * t_stride`, eight floats. A macro, not a
/// generic function taking the 1-D transform: called through a generic `Fn` parameter the
/// transform was compiled outside the AVX function, with every intrinsic an out-of-line call.
macro_rules! input_transform {
    ($name:ident, $a:literal, $f:path) => {
        /// # Safety
        /// As `super::input_group` (eight windows, eight floats per position); [`available`].
        #[target_feature(enable = "avx2,fma")]
        pub unsafe fn $name(win: &[Window; LANES], dst: *mut f32, t_stride: usize) {
            const A: usize = $a;
            let zero = F8(_mm256_setzero_ps());
            let mut d = [[zero; A]; A];
            for y in 0..A {
                d[y] = gather::<A>(win, y);
            }
            // Along columns first: c[x][i] = (Bᵀ d)[i][x]; then along rows.
            let mut c = [[zero; A]; A];
            for x in 0..A {
                let mut col = [zero; A];
                for y in 0..A {
                    col[y] = d[y][x];
                }
                c[x] = $f(&col);
            }
            for i in 0..A {
                let mut row = [zero; A];
                for x in 0..A {
                    row[x] = c[x][i];
                }
                let v = $f(&row);
                for t in 0..A {
                    _mm256_storeu_ps(dst.add((i * A + t) * t_stride), v[t].0);
                }
            }
        }
    };
}

input_transform!(input23, 4, transforms::input_f23);
input_transform!(input43, 6, transforms::input_f43);
input_transform!(input63, 8, transforms::input_f63);

/// ReLU / LeakyReLU / Clip on eight lanes, NaN kept (as `TileAct::apply`): `max_ps` and
/// `min_ps` return their second operand when either is NaN.
#[inline(always)]
unsafe fn act(v: F8, a: TileAct) -> __m256 {
    let v = v.0;
    match a {
        TileAct::None => v,
        TileAct::Relu => _mm256_max_ps(_mm256_setzero_ps(), v),
        TileAct::Leaky(s) => {
            let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(v, _mm256_setzero_ps());
            _mm256_blendv_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(s)), neg)
        }
        TileAct::Clip(lo, hi) => {
            _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), v))
        }
    }
}

/// Stores row `p` of the eight tiles: `row[q]` lane `l` is tile `l`'s column `q`.
#[inline(always)]
unsafe fn store_row<const M: usize>(row: [__m256; M], dst: &[Dest; LANES], p: usize) {
    let at = |l: usize| dst[l].ptr.add(p * dst[l].stride);
    let mut q0 = 0;
    if M >= 4 {
        let t = transpose4([row[0], row[1], row[2], row[3]]);
        for (l, tl) in t.iter().enumerate() {
            _mm_storeu_ps(at(l), _mm256_castps256_ps128(*tl));
            _mm_storeu_ps(at(l + 4), _mm256_extractf128_ps::<1>(*tl));
        }
        q0 = 4;
    }
    if M - q0 == 2 {
        // Tiles 0, 1 | 4, 5 and 2, 3 | 6, 7, two floats each.
        let lo = _mm256_unpacklo_ps(row[q0], row[q0 + 1]);
        let hi = _mm256_unpackhi_ps(row[q0], row[q0 + 1]);
        for (v, l) in [(lo, 0), (hi, 2)] {
            let low = _mm_castps_pd(_mm256_castps256_ps128(v));
            let high = _mm_castps_pd(_mm256_extractf128_ps::<1>(v));
            _mm_storel_pd(at(l).add(q0) as *mut f64, low);
            _mm_storeh_pd(at(l + 1).add(q0) as *mut f64, low);
            _mm_storel_pd(at(l + 4).add(q0) as *mut f64, high);
            _mm_storeh_pd(at(l + 5).add(q0) as *mut f64, high);
        }
    }
}

/// `$name`: the 2-D output transform of eight tiles of one channel with a fused
/// activation (`super::output_group` for eight lanes), position `t` of the tiles at
/// `m + t * NR` (a macro for the reason given at `input_transform`).
macro_rules! output_transform {
    ($name:ident, $a:literal, $m:literal, $f:path) => {
        /// # Safety
        /// As `super::output_group` (eight lanes, eight destinations); [`available`].
        #[target_feature(enable = "avx2,fma")]
        pub unsafe fn $name<const NR: usize>(m: *const f32, a: TileAct, dst: &[Dest; LANES]) {
            const A: usize = $a;
            const M: usize = $m;
            let zero = F8(_mm256_setzero_ps());
            // Along rows: s[i][q]; then along columns: y[q][p].
            let mut s = [[zero; M]; A];
            for i in 0..A {
                let mut row = [zero; A];
                for k in 0..A {
                    row[k] = F8(_mm256_loadu_ps(m.add((i * A + k) * NR)));
                }
                s[i] = $f(&row);
            }
            let mut y = [[zero; M]; M];
            for q in 0..M {
                let mut col = [zero; A];
                for i in 0..A {
                    col[i] = s[i][q];
                }
                y[q] = $f(&col);
            }
            for p in 0..M {
                let mut row = [zero.0; M];
                for q in 0..M {
                    row[q] = act(y[q][p], a);
                }
                store_row::<M>(row, dst, p);
            }
        }
    };
}

output_transform!(output23, 4, 2, transforms::output_f23);
output_transform!(output43, 6, 4, transforms::output_f43);
output_transform!(output63, 8, 6, transforms::output_f63);
