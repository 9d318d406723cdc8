//! NEON versions of the per-group transforms (four tiles of one channel per call), the
//! same formulas as `transforms.rs` with the constants kept in two vector registers and
//! used by lane (`fmla` / `fmls` by element), every loop over rows and columns written for
//! a fixed size so LLVM unrolls it: the generic versions' `from_fn` loops stayed rolled for
//! the 8 x 8 tiles, spilling and rematerialising the constants per iteration (about 6
//! cycles per transformed value on the A55 model; these take about 1).

use super::{Dest, Window};
use crate::kernels::gemm_f32::TileAct;
use std::arch::aarch64::*;

type V = float32x4_t;

#[inline(always)]
unsafe fn zero() -> V {
    vdupq_n_f32(0.0)
}

#[inline(always)]
unsafe fn consts(c: [f32; 4]) -> V {
    vld1q_f32(c.as_ptr())
}

/// `Bᵀ d` for F(2,3).
#[inline(always)]
unsafe fn in23(d: [V; 4]) -> [V; 4] {
    [
        vsubq_f32(d[0], d[2]),
        vaddq_f32(d[1], d[2]),
        vsubq_f32(d[2], d[1]),
        vsubq_f32(d[1], d[3]),
    ]
}

/// `Aᵀ m` for F(2,3).
#[inline(always)]
unsafe fn out23(m: [V; 4]) -> [V; 2] {
    [
        vaddq_f32(vaddq_f32(m[0], m[1]), m[2]),
        vsubq_f32(vsubq_f32(m[1], m[2]), m[3]),
    ]
}

/// `Bᵀ d` for F(4,3); `k` = [4, 5, 2, -].
#[inline(always)]
unsafe fn in43(d: [V; 6], k: V) -> [V; 6] {
    let t1 = vfmsq_laneq_f32::<0>(d[4], d[2], k);
    let t2 = vfmsq_laneq_f32::<0>(d[3], d[1], k);
    let t3 = vsubq_f32(d[4], d[2]);
    let t4 = vmulq_laneq_f32::<2>(vsubq_f32(d[3], d[1]), k);
    [
        vfmsq_laneq_f32::<1>(vfmaq_laneq_f32::<0>(d[4], d[0], k), d[2], k),
        vaddq_f32(t1, t2),
        vsubq_f32(t1, t2),
        vaddq_f32(t3, t4),
        vsubq_f32(t3, t4),
        vfmsq_laneq_f32::<1>(vfmaq_laneq_f32::<0>(d[5], d[1], k), d[3], k),
    ]
}

/// `Aᵀ m` for F(4,3); `k` = [2, 4, 8, -].
#[inline(always)]
unsafe fn out43(m: [V; 6], k: V) -> [V; 4] {
    let a = vaddq_f32(m[1], m[2]);
    let b = vsubq_f32(m[1], m[2]);
    let c = vaddq_f32(m[3], m[4]);
    let d = vsubq_f32(m[3], m[4]);
    [
        vaddq_f32(vaddq_f32(m[0], a), c),
        vfmaq_laneq_f32::<0>(b, d, k),
        vfmaq_laneq_f32::<1>(a, c, k),
        vfmaq_laneq_f32::<2>(vaddq_f32(b, m[5]), d, k),
    ]
}

/// `Bᵀ d` for F(6,3); `k0` = [5.25, 4.25, 1.25, 0.25], `k1` = [2.5, 2, 0.5, 4].
#[inline(always)]
unsafe fn in63(d: [V; 8], k0: V, k1: V) -> [V; 8] {
    let t1 = vfmsq_laneq_f32::<1>(vaddq_f32(d[2], d[6]), d[4], k0);
    let t2 = vfmsq_laneq_f32::<1>(vaddq_f32(d[1], d[5]), d[3], k0);
    let t3 = vfmsq_laneq_f32::<2>(vfmaq_laneq_f32::<3>(d[6], d[2], k0), d[4], k0);
    let t4 = vfmaq_laneq_f32::<1>(
        vfmsq_laneq_f32::<0>(vmulq_laneq_f32::<2>(d[1], k1), d[3], k1),
        d[5],
        k1,
    );
    let t5 = vfmaq_laneq_f32::<3>(d[6], vfmsq_laneq_f32::<2>(d[2], d[4], k0), k1);
    let t6 = vfmaq_laneq_f32::<2>(
        vfmsq_laneq_f32::<0>(vmulq_laneq_f32::<1>(d[1], k1), d[3], k1),
        d[5],
        k1,
    );
    [
        vfmaq_laneq_f32::<0>(vsubq_f32(d[0], d[6]), vsubq_f32(d[4], d[2]), k0),
        vaddq_f32(t1, t2),
        vsubq_f32(t1, t2),
        vaddq_f32(t3, t4),
        vsubq_f32(t3, t4),
        vaddq_f32(t5, t6),
        vsubq_f32(t5, t6),
        vfmaq_laneq_f32::<0>(vsubq_f32(d[7], d[1]), vsubq_f32(d[3], d[5]), k0),
    ]
}

/// `Aᵀ m` for F(6,3); `k0` = [2, 4, 8, 16], `k1` = [0.5, 0.25, 0.125, 0.0625],
/// `k2` = [32, 0.03125, -, -].
#[inline(always)]
unsafe fn out63(m: [V; 8], k0: V, k1: V, k2: V) -> [V; 6] {
    let a1 = vaddq_f32(m[1], m[2]);
    let b1 = vsubq_f32(m[1], m[2]);
    let a2 = vaddq_f32(m[3], m[4]);
    let b2 = vsubq_f32(m[3], m[4]);
    let a3 = vaddq_f32(m[5], m[6]);
    let b3 = vsubq_f32(m[5], m[6]);
    [
        vaddq_f32(vaddq_f32(m[0], a1), vaddq_f32(a2, a3)),
        vfmaq_laneq_f32::<0>(vfmaq_laneq_f32::<0>(b1, b2, k0), b3, k1),
        vfmaq_laneq_f32::<1>(vfmaq_laneq_f32::<1>(a1, a2, k0), a3, k1),
        vfmaq_laneq_f32::<2>(vfmaq_laneq_f32::<2>(b1, b2, k0), b3, k1),
        vfmaq_laneq_f32::<3>(vfmaq_laneq_f32::<3>(a1, a2, k0), a3, k1),
        vfmaq_laneq_f32::<1>(vfmaq_laneq_f32::<0>(vaddq_f32(b1, m[7]), b2, k2), b3, k2),
    ]
}

/// 4x4 transpose: `out[j]` lane `i` = `r[i]` lane `j`.
#[inline(always)]
unsafe fn transpose(r0: V, r1: V, r2: V, r3: V) -> [V; 4] {
    let t0 = vtrn1q_f32(r0, r1);
    let t1 = vtrn2q_f32(r0, r1);
    let t2 = vtrn1q_f32(r2, r3);
    let t3 = vtrn2q_f32(r2, r3);
    let f = |a: V| vreinterpretq_f64_f32(a);
    let b = |a: float64x2_t| vreinterpretq_f32_f64(a);
    [
        b(vtrn1q_f64(f(t0), f(t2))),
        b(vtrn1q_f64(f(t1), f(t3))),
        b(vtrn2q_f64(f(t0), f(t2))),
        b(vtrn2q_f64(f(t1), f(t3))),
    ]
}

/// Row `y` of four windows, first `W` (4 or 8) columns, transposed (lane = window).
#[inline(always)]
unsafe fn gather<const W: usize>(win: &[Window; 4], y: usize) -> [V; W] {
    let p: [*const f32; 4] = std::array::from_fn(|l| win[l].ptr.add(y * win[l].stride));
    let lo = transpose(
        vld1q_f32(p[0]),
        vld1q_f32(p[1]),
        vld1q_f32(p[2]),
        vld1q_f32(p[3]),
    );
    let hi = if W == 8 {
        transpose(
            vld1q_f32(p[0].add(4)),
            vld1q_f32(p[1].add(4)),
            vld1q_f32(p[2].add(4)),
            vld1q_f32(p[3].add(4)),
        )
    } else {
        lo
    };
    std::array::from_fn(|x| if x < 4 { lo[x] } else { hi[x - 4] })
}

/// Stores `v` at `*p` and steps `p` by `stride` floats.
#[inline(always)]
unsafe fn put(p: &mut *mut f32, stride: usize, v: V) {
    vst1q_f32(*p, v);
    *p = p.add(stride);
}

/// Input transform of four F(2,3) windows (see `super::input_group`).
///
/// # Safety
/// As `super::input_group`.
pub unsafe fn input23(win: &[Window; 4], dst: *mut f32, t_stride: usize) {
    let d0 = gather::<4>(win, 0);
    let d1 = gather::<4>(win, 1);
    let d2 = gather::<4>(win, 2);
    let d3 = gather::<4>(win, 3);
    let c: [[V; 4]; 4] = std::array::from_fn(|x| in23([d0[x], d1[x], d2[x], d3[x]]));
    let mut p = dst;
    for i in 0..4 {
        for v in in23([c[0][i], c[1][i], c[2][i], c[3][i]]) {
            put(&mut p, t_stride, v);
        }
    }
}

/// Input transform of four F(4,3) windows.
///
/// # Safety
/// As `super::input_group`.
pub unsafe fn input43(win: &[Window; 4], dst: *mut f32, t_stride: usize) {
    let k = consts([4.0, 5.0, 2.0, 0.0]);
    let d: [[V; 8]; 6] = std::array::from_fn(|y| gather::<8>(win, y));
    let c: [[V; 6]; 6] =
        std::array::from_fn(|x| in43([d[0][x], d[1][x], d[2][x], d[3][x], d[4][x], d[5][x]], k));
    let mut p = dst;
    for i in 0..6 {
        for v in in43([c[0][i], c[1][i], c[2][i], c[3][i], c[4][i], c[5][i]], k) {
            put(&mut p, t_stride, v);
        }
    }
}

/// Input transform of four F(6,3) windows.
///
/// # Safety
/// As `super::input_group`.
pub unsafe fn input63(win: &[Window; 4], dst: *mut f32, t_stride: usize) {
    let k0 = consts([5.25, 4.25, 1.25, 0.25]);
    let k1 = consts([2.5, 2.0, 0.5, 4.0]);
    let d: [[V; 8]; 8] = std::array::from_fn(|y| gather::<8>(win, y));
    let c: [[V; 8]; 8] = std::array::from_fn(|x| {
        in63(
            [
                d[0][x], d[1][x], d[2][x], d[3][x], d[4][x], d[5][x], d[6][x], d[7][x],
            ],
            k0,
            k1,
        )
    });
    let mut p = dst;
    for i in 0..8 {
        let v = in63(
            [
                c[0][i], c[1][i], c[2][i], c[3][i], c[4][i], c[5][i], c[6][i], c[7][i],
            ],
            k0,
            k1,
        );
        for vk in v {
            put(&mut p, t_stride, vk);
        }
    }
}

/// ReLU / LeakyReLU / Clip on four lanes (NaN kept, as `TileAct::apply`).
#[inline(always)]
unsafe fn act(v: V, a: TileAct) -> V {
    match a {
        TileAct::None => v,
        TileAct::Relu => vmaxq_f32(v, zero()),
        TileAct::Leaky(s) => vbslq_f32(vcltq_f32(v, zero()), vmulq_n_f32(v, s), v),
        TileAct::Clip(lo, hi) => vminq_f32(vmaxq_f32(v, vdupq_n_f32(lo)), vdupq_n_f32(hi)),
    }
}

/// Stores row `p` of the four tiles: `row[q]` lane `l` is tile `l`'s column `q`.
#[inline(always)]
unsafe fn store_row<const M: usize>(row: [V; M], dst: &[Dest; 4], p: usize) {
    let at = |l: usize| dst[l].ptr.add(p * dst[l].stride);
    let mut q0 = 0;
    if M >= 4 {
        let t = transpose(row[0], row[1], row[2], row[3]);
        for (l, tl) in t.iter().enumerate() {
            vst1q_f32(at(l), *tl);
        }
        q0 = 4;
    }
    if M - q0 == 2 {
        let lo = vzip1q_f32(row[q0], row[q0 + 1]);
        let hi = vzip2q_f32(row[q0], row[q0 + 1]);
        vst1_f32(at(0).add(q0), vget_low_f32(lo));
        vst1_f32(at(1).add(q0), vget_high_f32(lo));
        vst1_f32(at(2).add(q0), vget_low_f32(hi));
        vst1_f32(at(3).add(q0), vget_high_f32(hi));
    }
}

/// Output transform of four F(2,3) tiles (see `super::output_group`; fused activations
/// only).
///
/// # Safety
/// As `super::output_group`.
pub unsafe fn output23<const NR: usize>(m: *const f32, a: TileAct, dst: &[Dest; 4]) {
    let ld = |t: usize| vld1q_f32(m.add(t * NR));
    let s: [[V; 2]; 4] =
        std::array::from_fn(|i| out23([ld(4 * i), ld(4 * i + 1), ld(4 * i + 2), ld(4 * i + 3)]));
    let y0 = out23([s[0][0], s[1][0], s[2][0], s[3][0]]);
    let y1 = out23([s[0][1], s[1][1], s[2][1], s[3][1]]);
    for p in 0..2 {
        store_row::<2>([act(y0[p], a), act(y1[p], a)], dst, p);
    }
}

/// Output transform of four F(4,3) tiles.
///
/// # Safety
/// As `super::output_group`.
pub unsafe fn output43<const NR: usize>(m: *const f32, a: TileAct, dst: &[Dest; 4]) {
    let k = consts([2.0, 4.0, 8.0, 0.0]);
    let ld = |t: usize| vld1q_f32(m.add(t * NR));
    let s: [[V; 4]; 6] = std::array::from_fn(|i| {
        let b = 6 * i;
        out43(
            [ld(b), ld(b + 1), ld(b + 2), ld(b + 3), ld(b + 4), ld(b + 5)],
            k,
        )
    });
    let y: [[V; 4]; 4] =
        std::array::from_fn(|q| out43([s[0][q], s[1][q], s[2][q], s[3][q], s[4][q], s[5][q]], k));
    for p in 0..4 {
        let row = [
            act(y[0][p], a),
            act(y[1][p], a),
            act(y[2][p], a),
            act(y[3][p], a),
        ];
        store_row::<4>(row, dst, p);
    }
}

/// Output transform of four F(6,3) tiles.
///
/// # Safety
/// As `super::output_group`.
pub unsafe fn output63<const NR: usize>(m: *const f32, a: TileAct, dst: &[Dest; 4]) {
    let k0 = consts([2.0, 4.0, 8.0, 16.0]);
    let k1 = consts([0.5, 0.25, 0.125, 0.0625]);
    let k2 = consts([32.0, 0.03125, 0.0, 0.0]);
    let ld = |t: usize| vld1q_f32(m.add(t * NR));
    let s: [[V; 6]; 8] = std::array::from_fn(|i| {
        let b = 8 * i;
        out63(
            [
                ld(b),
                ld(b + 1),
                ld(b + 2),
                ld(b + 3),
                ld(b + 4),
                ld(b + 5),
                ld(b + 6),
                ld(b + 7),
            ],
            k0,
            k1,
            k2,
        )
    });
    let y: [[V; 6]; 6] = std::array::from_fn(|q| {
        out63(
            [
                s[0][q], s[1][q], s[2][q], s[3][q], s[4][q], s[5][q], s[6][q], s[7][q],
            ],
            k0,
            k1,
            k2,
        )
    });
    for p in 0..6 {
        let row: [V; 6] = std::array::from_fn(|q| act(y[q][p], a));
        store_row::<6>(row, dst, p);
    }
}
