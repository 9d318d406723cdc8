//! NEON 3x3 depthwise INT8 / INT7 convolution on unpadded planes, stride 1 or 2 across,
//! with the requant epilogue fused per 16 outputs: the intrinsics half of the unpadded path
//! (see the module docs of `super`), for every output kind and activation. Rows of up to 8
//! outputs take two rows per block (lanes 0..8 and 8..16); vertical padding reads zero
//! rows; rows whose loads would leave the input read zero-margined copies (`staged`).

use super::Plan;
use crate::kernels::requant::Requant;
use std::arch::aarch64::*;

/// Output kinds and activations the channel function is monomorphised for.
pub const F32: u8 = 0;
pub const I8: u8 = 1;
/// Sums spilled and stored by `Requant` (activations without a vector form), as fp32 or
/// int8.
pub const SPILL_F32: u8 = 2;
pub const SPILL_I8: u8 = 3;
pub const NONE: u8 = 0;
pub const RELU: u8 = 1;
pub const LEAKY: u8 = 2;
pub const CLIP: u8 = 3;

/// Zero rows for the vertical padding: a block reads `ZEROS[ZERO_AT - pad_left ..]`.
pub const ZERO_LEN: usize = 4096;
pub const ZERO_AT: usize = 64;
static ZEROS: [i8; ZERO_LEN] = [0; ZERO_LEN];

/// Epilogue constants of one channel.
pub struct Epi {
    pub scale: float32x4_t,
    pub bias: float32x4_t,
    pub top: float32x4_t,
    pub slope: float32x4_t,
    pub lo: float32x4_t,
    pub hi: float32x4_t,
    /// Final int8 clamp (±qmax, or the folded ReLU / Clip bounds).
    pub qlo: int8x16_t,
    pub qhi: int8x16_t,
}

/// Where one task writes: channel `c0`'s row `y0` is at `out`; channel `c`'s row `y` at
/// `((c - c0) · out_h + y - y0) · out_w` elements from it.
#[derive(Clone, Copy)]
pub struct Dst {
    pub out: *mut u8,
    /// End of the region (debug checks).
    pub end: *mut u8,
    pub c0: usize,
    pub y0: usize,
}

/// Convolves channel `c`, rows `rows`, with the epilogue `OUT` / `ACT`.
///
/// # Safety
/// `plan` was checked against `input`, `taps` and the output region of `dst`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn channel<const S: usize, const I7: bool, const OUT: u8, const ACT: u8>(
    plan: &Plan,
    input: &[i8],
    taps: &[i8],
    c: usize,
    rows: std::ops::Range<usize>,
    rq: &Requant,
    e: &Epi,
    dst: Dst,
) {
    let l = &plan.layer;
    let t = taps.as_ptr().add(c * 9);
    // Tap vectors per block kind (first, middle, last), lanes that read padding zeroed.
    let mut tv = [[vdupq_n_s8(0); 9]; 3];
    for (k, kind) in tv.iter_mut().enumerate() {
        for (j, v) in kind.iter_mut().enumerate() {
            let m = vld1q_u8(plan.masks[k][j % 3].as_ptr());
            *v = vandq_s8(vdupq_n_s8(*t.add(j)), vreinterpretq_s8_u8(m));
        }
    }
    let plane = l.w * l.h;
    let base = input.as_ptr().add(c * plane);
    let zero = ZEROS.as_ptr().add(ZERO_AT);
    let row_ptr = |iy: isize| -> *const i8 {
        if iy >= 0 && (iy as usize) < l.h {
            base.add(iy as usize * l.w)
        } else {
            zero
        }
    };
    let out_w = plan.out_w;
    let esize = if OUT == F32 || OUT == SPILL_F32 { 4 } else { 1 };
    let out_at = |y: usize, x: usize| -> *mut u8 {
        let i = ((c - dst.c0) * plan.out_h + y - dst.y0) * out_w + x;
        dst.out.add(i * esize)
    };
    let off = -(l.pad_left as isize);
    let (sh, pt) = (l.g.stride_h as isize, l.pad_top as isize);
    let spans = plan.spans;
    let len = input.len();
    // Whether every load of rows `a..=b` (input rows, some maybe padding) stays inside `input`.
    let safe = |a: isize, b: isize| -> bool {
        let a = a.clamp(0, l.h as isize - 1) as usize;
        let b = b.clamp(0, l.h as isize - 1) as usize;
        let lo = (c * plane + a * l.w) as isize + spans.lo;
        let hi = c * plane + b * l.w + spans.hi;
        lo >= 0 && hi <= len
    };
    let last = rows.end - 1;
    if plan.narrow {
        // Two output rows per block: lanes 0..8 row y, lanes 8..16 row y + 1.
        let mut y = rows.start;
        while y < rows.end {
            let two = y < last;
            let iy = y as isize * sh - pt;
            let iy2 = if two { iy + sh } else { iy };
            let (r0, r1) = if safe(iy, iy2 + 2) {
                (
                    [row_ptr(iy), row_ptr(iy + 1), row_ptr(iy + 2)],
                    [row_ptr(iy2), row_ptr(iy2 + 1), row_ptr(iy2 + 2)],
                )
            } else {
                let st = staged(l, base, [iy, iy + 1, iy + 2, iy2, iy2 + 1, iy2 + 2]);
                ([st[0], st[1], st[2]], [st[3], st[4], st[5]])
            };
            let v = |j: usize| -> int8x16_t {
                let (ky, kx) = (j / 3, j % 3);
                let (a, b) = (r0[ky].offset(off), r1[ky].offset(off));
                if S == 1 {
                    vcombine_s8(vld1_s8(a.add(kx)), vld1_s8(b.add(kx)))
                } else {
                    let (a, b) = (vld2_s8(a.add(kx & 2)), vld2_s8(b.add(kx & 2)));
                    if kx == 1 {
                        vcombine_s8(a.1, b.1)
                    } else {
                        vcombine_s8(a.0, b.0)
                    }
                }
            };
            let sums = conv::<I7>(&v, &tv[0]);
            // Stores of 8 lanes run past narrow rows onto rows written after them, except at
            // the end of the task.
            let exact = (y + two as usize) * out_w + 8 > (last + 1) * out_w;
            let n0 = out_w;
            let o0 = out_at(y, 0);
            let o1 = if two { out_at(y + 1, 0) } else { o0 };
            let wide = if exact { n0 } else { 8 };
            debug_assert!(o0.add(wide * esize) <= dst.end && o1.add(wide * esize) <= dst.end);
            store_halves::<OUT, ACT>(sums, e, rq, c, o0, o1, n0, two, exact);
            y += 2;
        }
        return;
    }
    for y in rows.clone() {
        let iy = y as isize * sh - pt;
        let r = if safe(iy, iy + 2) {
            [row_ptr(iy), row_ptr(iy + 1), row_ptr(iy + 2)]
        } else {
            let st = staged(l, base, [iy, iy + 1, iy + 2, iy, iy, iy]);
            [st[0], st[1], st[2]]
        };
        let block = |x0: usize, kind: usize, n: usize, exact: bool| {
            let o = off + (x0 * S) as isize;
            let v = |j: usize| -> int8x16_t {
                let (ky, kx) = (j / 3, j % 3);
                let p = r[ky].offset(o);
                if S == 1 {
                    vld1q_s8(p.add(kx))
                } else {
                    let q = vld2q_s8(p.add(kx & 2));
                    if kx == 1 {
                        q.1
                    } else {
                        q.0
                    }
                }
            };
            let sums = conv::<I7>(&v, &tv[kind]);
            let wide = if exact { n } else { 16 };
            debug_assert!(out_at(y, x0).add(wide * esize) <= dst.end, "y {y} x0 {x0}");
            store16::<OUT, ACT>(sums, e, rq, c, out_at(y, x0), n, exact);
        };
        if out_w <= 16 {
            block(0, 0, out_w, y == last);
        } else {
            block(0, 0, 16, false);
            let mut x0 = 16;
            while x0 < plan.last_x0 {
                block(x0, 1, 16, false);
                x0 += 16;
            }
            block(plan.last_x0, 2, 16, false);
        }
    }
}

/// The int32 sums of 16 outputs; `v(j)` is the input vector of tap `j` (`ky · 3 + kx`).
///
/// INT8 sums two products per int16 lane (2 · 127² = 32258), pairs taps (0, 1), (2, 3),
/// (4, 5), (6, 7), widens pairs of pairs with `saddl` and adds tap 8 with `saddw`. INT7 sums
/// taps 0..8 in one int16 lane (8 · 63² = 31752) and widens it with tap 8 (`saddl`).
#[inline(always)]
unsafe fn conv<const I7: bool>(
    v: &impl Fn(usize) -> int8x16_t,
    t: &[int8x16_t; 9],
) -> [int32x4_t; 4] {
    let mul = |j: usize| {
        let x = v(j);
        (
            vmull_s8(vget_low_s8(x), vget_low_s8(t[j])),
            vmull_high_s8(x, t[j]),
        )
    };
    let mla = |a: (int16x8_t, int16x8_t), j: usize| {
        let x = v(j);
        (
            vmlal_s8(a.0, vget_low_s8(x), vget_low_s8(t[j])),
            vmlal_high_s8(a.1, x, t[j]),
        )
    };
    let widen = |a: (int16x8_t, int16x8_t), b: (int16x8_t, int16x8_t)| {
        [
            vaddl_s16(vget_low_s16(a.0), vget_low_s16(b.0)),
            vaddl_high_s16(a.0, b.0),
            vaddl_s16(vget_low_s16(a.1), vget_low_s16(b.1)),
            vaddl_high_s16(a.1, b.1),
        ]
    };
    if I7 {
        let mut p = mul(0);
        for j in 1..8 {
            p = mla(p, j);
        }
        widen(p, mul(8))
    } else {
        let a = widen(mla(mul(0), 1), mla(mul(2), 3));
        let b = widen(mla(mul(4), 5), mla(mul(6), 7));
        let p = mul(8);
        [
            vaddq_s32(vaddw_s16(a[0], vget_low_s16(p.0)), b[0]),
            vaddq_s32(vaddw_high_s16(a[1], p.0), b[1]),
            vaddq_s32(vaddw_s16(a[2], vget_low_s16(p.1)), b[2]),
            vaddq_s32(vaddw_high_s16(a[3], p.1), b[3]),
        ]
    }
}

/// `act(fma(acc, scale, bias))` with the activation's comparisons as written in
/// `Activation::apply` (NaN and −0 included).
#[inline(always)]
unsafe fn dequant<const ACT: u8>(s: int32x4_t, e: &Epi) -> float32x4_t {
    let y = vfmaq_f32(e.bias, vcvtq_f32_s32(s), e.scale);
    match ACT {
        RELU => vbslq_f32(vcltzq_f32(y), vdupq_n_f32(0.0), y),
        LEAKY => vbslq_f32(vcltzq_f32(y), vmulq_f32(y, e.slope), y),
        CLIP => {
            let y = vbslq_f32(vcltq_f32(y, e.lo), e.lo, y);
            vbslq_f32(vcgtq_f32(y, e.hi), e.hi, y)
        }
        _ => y,
    }
}

/// `clamp(round_half_away(y · top), qlo, qhi)` of 16 values: `fcvtas` rounds half away and
/// saturates (NaN → 0), the saturating narrows keep the order, the byte clamp comes last.
#[inline(always)]
unsafe fn requant16<const ACT: u8>(s: [int32x4_t; 4], e: &Epi) -> int8x16_t {
    let q = s.map(|v| vcvtaq_s32_f32(vmulq_f32(dequant::<ACT>(v, e), e.top)));
    let lo = vqmovn_high_s32(vqmovn_s32(q[0]), q[1]);
    let hi = vqmovn_high_s32(vqmovn_s32(q[2]), q[3]);
    let b = vqmovn_high_s16(vqmovn_s16(lo), hi);
    vminq_s8(vmaxq_s8(b, e.qlo), e.qhi)
}

/// Stores 16 outputs at `o` (`n` of them valid; with `exact` nothing past them is written,
/// otherwise the other lanes may land on the following outputs, which are written later).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn store16<const OUT: u8, const ACT: u8>(
    s: [int32x4_t; 4],
    e: &Epi,
    rq: &Requant,
    c: usize,
    o: *mut u8,
    n: usize,
    exact: bool,
) {
    match OUT {
        F32 => {
            let y = s.map(|v| dequant::<ACT>(v, e));
            let o = o as *mut f32;
            if exact && n < 16 {
                let mut tmp = [0f32; 16];
                for (i, v) in y.iter().enumerate() {
                    vst1q_f32(tmp.as_mut_ptr().add(4 * i), *v);
                }
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), o, n);
            } else {
                vst1q_f32_x4(o, float32x4x4_t(y[0], y[1], y[2], y[3]));
            }
        }
        I8 => {
            let b = requant16::<ACT>(s, e);
            let o = o as *mut i8;
            if exact && n < 16 {
                let mut tmp = [0i8; 16];
                vst1q_s8(tmp.as_mut_ptr(), b);
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), o, n);
            } else {
                vst1q_s8(o, b);
            }
        }
        _ => spill(s, rq, c, o, 0, n.min(16), OUT == SPILL_I8),
    }
}

/// Stores lanes 0..n of each half: 0..8 at `o0`, 8..16 at `o1` (when `two`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn store_halves<const OUT: u8, const ACT: u8>(
    s: [int32x4_t; 4],
    e: &Epi,
    rq: &Requant,
    c: usize,
    o0: *mut u8,
    o1: *mut u8,
    n: usize,
    two: bool,
    exact: bool,
) {
    match OUT {
        F32 => {
            let y = s.map(|v| dequant::<ACT>(v, e));
            let (o0, o1) = (o0 as *mut f32, o1 as *mut f32);
            if exact && n < 8 {
                let mut tmp = [0f32; 16];
                for (i, v) in y.iter().enumerate() {
                    vst1q_f32(tmp.as_mut_ptr().add(4 * i), *v);
                }
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), o0, n);
                if two {
                    std::ptr::copy_nonoverlapping(tmp.as_ptr().add(8), o1, n);
                }
            } else {
                vst1q_f32_x2(o0, float32x4x2_t(y[0], y[1]));
                if two {
                    vst1q_f32_x2(o1, float32x4x2_t(y[2], y[3]));
                }
            }
        }
        I8 => {
            let b = requant16::<ACT>(s, e);
            let (o0, o1) = (o0 as *mut i8, o1 as *mut i8);
            if exact && n < 8 {
                let mut tmp = [0i8; 16];
                vst1q_s8(tmp.as_mut_ptr(), b);
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), o0, n);
                if two {
                    std::ptr::copy_nonoverlapping(tmp.as_ptr().add(8), o1, n);
                }
            } else {
                vst1_s8(o0, vget_low_s8(b));
                if two {
                    vst1_s8(o1, vget_high_s8(b));
                }
            }
        }
        _ => {
            spill(s, rq, c, o0, 0, n, OUT == SPILL_I8);
            if two {
                spill(s, rq, c, o1, 8, n, OUT == SPILL_I8);
            }
        }
    }
}

/// Lanes `from..from + n` of the sums through `Requant::dequant` / `requant`.
#[inline(never)]
unsafe fn spill(
    s: [int32x4_t; 4],
    rq: &Requant,
    c: usize,
    o: *mut u8,
    from: usize,
    n: usize,
    i8_out: bool,
) {
    let mut acc = [0i32; 16];
    for (i, v) in s.iter().enumerate() {
        vst1q_s32(acc.as_mut_ptr().add(4 * i), *v);
    }
    for (i, &a) in acc[from..from + n].iter().enumerate() {
        if i8_out {
            *(o as *mut i8).add(i) = rq.requant(c, a);
        } else {
            *(o as *mut f32).add(i) = rq.dequant(c, a);
        }
    }
}

thread_local! {
    /// Copies of input rows with zero margins, for rows whose loads would leave the input.
    static STAGE: std::cell::UnsafeCell<[[i8; ZERO_LEN]; 6]> =
        const { std::cell::UnsafeCell::new([[0; ZERO_LEN]; 6]) };
}

/// Pointers to copies of input rows `iys` of the plane at `base` (zero rows outside it),
/// laid out as the zero rows (`ZERO_AT` zero bytes before the row, zeros after it): for
/// the few rows whose loads would leave the input (the first rows of the first channel,
/// the last of the last).
#[cold]
#[inline(never)]
unsafe fn staged(l: &super::Layer, base: *const i8, iys: [isize; 6]) -> [*const i8; 6] {
    STAGE.with(|s| {
        let s = &mut *s.get();
        std::array::from_fn(|k| {
            let row = &mut s[k];
            row.fill(0);
            let iy = iys[k];
            if iy >= 0 && (iy as usize) < l.h {
                let src = std::slice::from_raw_parts(base.add(iy as usize * l.w), l.w);
                row[ZERO_AT..ZERO_AT + l.w].copy_from_slice(src);
            }
            row.as_ptr().add(ZERO_AT)
        })
    })
}
