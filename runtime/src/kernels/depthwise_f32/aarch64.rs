//! NEON depthwise kernels: 4 output pixels of a row per vector, the activation (ReLU /
//! LeakyReLU / Clip) applied in the store. Stride 2 uses `vld2q`, which splits 8
//! consecutive inputs into even and odd lanes.
//!
//! * 3x3 stride 1: two output rows per pass, so the four input rows they read are loaded
//!   once for both (12 loads for 18 `fmla` instead of 18).
//! * 3x3 stride 1 and 2: a row's last pixels are one more vector that overlaps the previous
//!   one (recomputing a few pixels to the same values), with the kernel taps still in
//!   registers; stride 2's last vector loads only the inputs it needs.
//! * 3x3 with one pixel of padding, stride 1 or 2 (`pad1_s1`, `pad1_s2`): straight from
//!   the unpadded plane, so the op does not copy the plane into a padded one first: rows
//!   outside it read a row of the padding value, and the padding column enters the first
//!   and last vectors of a row by `ext`.
//! * Other geometries: the general loop; rows narrower than 4 are done in scalar code.

use super::{generic, Geometry};
use crate::kernels::gemm_f32::aarch64::act4;
use crate::kernels::gemm_f32::TileAct;
use std::arch::aarch64::*;

/// # Safety
/// The caller has checked the geometry against the buffers (`Geometry::check`).
/// The SIMD code relies on it for its unchecked loads and stores.
pub unsafe fn channel(
    g: &Geometry,
    input: &[f32],
    inputs: usize,
    kernel: &[f32],
    bias: f32,
    act: TileAct,
    out: &mut [f32],
) {
    let (i, o) = (input.as_ptr(), out.as_mut_ptr());
    // SAFETY: NEON is part of the aarch64 baseline; bounds checked by the caller.
    unsafe {
        match (
            inputs == 1 && g.is_3x3() && g.out_w >= 4,
            g.stride_w,
            g.stride_h,
        ) {
            (true, 1, 1) => conv3x3s1(g, i, kernel, bias, act, o),
            (true, 2, 2) => conv3x3s2(g, i, kernel, bias, act, o),
            (_, 1 | 2, _) => general(g, i, inputs, kernel, bias, act, o),
            _ => {
                generic::channel(g, input, inputs, kernel, bias, out);
                for v in out.iter_mut() {
                    *v = act.apply(*v);
                }
            }
        }
    }
}

/// Scalar value of one output pixel (rows narrower than a vector).
#[inline(always)]
unsafe fn pixel(
    g: &Geometry,
    input: *const f32,
    inputs: usize,
    kernel: &[f32],
    bias: f32,
    ox: usize,
    oy: usize,
) -> f32 {
    let (plane, taps) = (g.in_w * g.in_h, g.taps());
    let mut sum = bias;
    for q in 0..inputs {
        for ky in 0..g.kernel_h {
            let iy = oy * g.stride_h + ky * g.dilation_h;
            let row = input.add(q * plane + iy * g.in_w + ox * g.stride_w);
            for kx in 0..g.kernel_w {
                sum += *row.add(kx * g.dilation_w) * kernel[q * taps + ky * g.kernel_w + kx];
            }
        }
    }
    sum
}

/// `p[0], p[2], p[4], p[6]`, reading nothing past `p[6]`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn even_exact(p: *const f32) -> float32x4_t {
    let b = vld1q_f32(p.add(3));
    vuzp1q_f32(vld1q_f32(p), vextq_f32::<1>(b, b))
}

/// Output pixels `x..out_w` of row `oy` (general geometry). A last vector overlapping the
/// previous one recomputes some pixels to the same values.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "neon")]
unsafe fn row_end(
    g: &Geometry,
    input: *const f32,
    inputs: usize,
    kernel: &[f32],
    bias: f32,
    act: TileAct,
    out: *mut f32,
    oy: usize,
    mut x: usize,
) {
    let (plane, taps) = (g.in_w * g.in_h, g.taps());
    let orow = out.add(oy * g.out_w);
    if g.out_w < 4 {
        for ox in x..g.out_w {
            *orow.add(ox) = act.apply(pixel(g, input, inputs, kernel, bias, ox, oy));
        }
        return;
    }
    while x < g.out_w {
        let x0 = x.min(g.out_w - 4);
        let mut acc = vdupq_n_f32(bias);
        for q in 0..inputs {
            let kq = &kernel[q * taps..(q + 1) * taps];
            for ky in 0..g.kernel_h {
                let iy = oy * g.stride_h + ky * g.dilation_h;
                let row = input.add(q * plane + iy * g.in_w + x0 * g.stride_w);
                for kx in 0..g.kernel_w {
                    let p = row.add(kx * g.dilation_w);
                    let v = if g.stride_w == 1 {
                        vld1q_f32(p)
                    } else {
                        even_exact(p)
                    };
                    acc = vfmaq_f32(acc, v, vdupq_n_f32(kq[ky * g.kernel_w + kx]));
                }
            }
        }
        vst1q_f32(orow.add(x0), act4(acc, act));
        x = x0 + 4;
    }
}

/// Columns of a row as vectors: `x0` for the full vectors, then the overlapping last one
/// (`out_w >= 4`).
#[inline(always)]
fn next_x(x: usize, out_w: usize) -> Option<usize> {
    if x + 4 >= out_w {
        None
    } else {
        Some((x + 4).min(out_w - 4))
    }
}

#[target_feature(enable = "neon")]
unsafe fn conv3x3s1(
    g: &Geometry,
    input: *const f32,
    kernel: &[f32],
    bias: f32,
    act: TileAct,
    out: *mut f32,
) {
    let k: [float32x4_t; 9] = std::array::from_fn(|i| vdupq_n_f32(kernel[i]));
    let vbias = vdupq_n_f32(bias);
    // acc + (row at x) · taps (t, t+1, t+2).
    let taps = |acc: float32x4_t, r: *const f32, t: usize| {
        let acc = vfmaq_f32(acc, vld1q_f32(r), k[t]);
        let acc = vfmaq_f32(acc, vld1q_f32(r.add(1)), k[t + 1]);
        vfmaq_f32(acc, vld1q_f32(r.add(2)), k[t + 2])
    };
    let mut oy = 0;
    // Two output rows per pass over four input rows.
    while oy + 2 <= g.out_h {
        let r0 = input.add(oy * g.in_w);
        let (r1, r2, r3) = (r0.add(g.in_w), r0.add(2 * g.in_w), r0.add(3 * g.in_w));
        let o0 = out.add(oy * g.out_w);
        let o1 = o0.add(g.out_w);
        let mut x = 0;
        loop {
            let v0: [float32x4_t; 3] = std::array::from_fn(|d| vld1q_f32(r1.add(x + d)));
            let v1: [float32x4_t; 3] = std::array::from_fn(|d| vld1q_f32(r2.add(x + d)));
            let mut a0 = taps(vbias, r0.add(x), 0);
            let mut a1 = vbias;
            for d in 0..3 {
                a0 = vfmaq_f32(a0, v0[d], k[3 + d]);
                a1 = vfmaq_f32(a1, v0[d], k[d]);
            }
            for d in 0..3 {
                a0 = vfmaq_f32(a0, v1[d], k[6 + d]);
                a1 = vfmaq_f32(a1, v1[d], k[3 + d]);
            }
            a1 = taps(a1, r3.add(x), 6);
            vst1q_f32(o0.add(x), act4(a0, act));
            vst1q_f32(o1.add(x), act4(a1, act));
            match next_x(x, g.out_w) {
                Some(n) => x = n,
                None => break,
            }
        }
        oy += 2;
    }
    if oy < g.out_h {
        let r0 = input.add(oy * g.in_w);
        let (r1, r2) = (r0.add(g.in_w), r0.add(2 * g.in_w));
        let orow = out.add(oy * g.out_w);
        let mut x = 0;
        loop {
            let acc = taps(taps(taps(vbias, r0.add(x), 0), r1.add(x), 3), r2.add(x), 6);
            vst1q_f32(orow.add(x), act4(acc, act));
            match next_x(x, g.out_w) {
                Some(n) => x = n,
                None => break,
            }
        }
    }
}

#[target_feature(enable = "neon")]
unsafe fn conv3x3s2(
    g: &Geometry,
    input: *const f32,
    kernel: &[f32],
    bias: f32,
    act: TileAct,
    out: *mut f32,
) {
    let k: [float32x4_t; 9] = std::array::from_fn(|i| vdupq_n_f32(kernel[i]));
    let vbias = vdupq_n_f32(bias);
    for oy in 0..g.out_h {
        let r0 = input.add(2 * oy * g.in_w);
        let rows = [r0, r0.add(g.in_w), r0.add(2 * g.in_w)];
        let orow = out.add(oy * g.out_w);
        let mut x = 0;
        loop {
            let mut acc = vbias;
            if 2 * x + 10 <= g.in_w {
                // Reads inputs 2x .. 2x+10 of each row.
                for (t, r) in rows.into_iter().enumerate() {
                    let r = r.add(2 * x);
                    let v01 = vld2q_f32(r);
                    let v2 = vld2q_f32(r.add(2)).0;
                    acc = vfmaq_f32(acc, v01.0, k[3 * t]);
                    acc = vfmaq_f32(acc, v01.1, k[3 * t + 1]);
                    acc = vfmaq_f32(acc, v2, k[3 * t + 2]);
                }
            } else {
                // The row's end: inputs 2x .. 2x+8 only.
                for (t, r) in rows.into_iter().enumerate() {
                    let r = r.add(2 * x);
                    acc = vfmaq_f32(acc, even_exact(r), k[3 * t]);
                    acc = vfmaq_f32(acc, even_exact(r.add(1)), k[3 * t + 1]);
                    acc = vfmaq_f32(acc, even_exact(r.add(2)), k[3 * t + 2]);
                }
            }
            vst1q_f32(orow.add(x), act4(acc, act));
            match next_x(x, g.out_w) {
                Some(n) => x = n,
                None => break,
            }
        }
    }
}

/// Any kernel size, dilation and number of input planes; stride_w 1 or 2, any stride_h.
#[target_feature(enable = "neon")]
unsafe fn general(
    g: &Geometry,
    input: *const f32,
    inputs: usize,
    kernel: &[f32],
    bias: f32,
    act: TileAct,
    out: *mut f32,
) {
    let (plane, taps) = (g.in_w * g.in_h, g.taps());
    let reach = (g.kernel_w - 1) * g.dilation_w;
    for oy in 0..g.out_h {
        let orow = out.add(oy * g.out_w);
        let mut x = 0;
        loop {
            let fits = if g.stride_w == 1 {
                x + 4 <= g.out_w
            } else {
                x + 4 <= g.out_w && 2 * x + reach + 8 <= g.in_w
            };
            if !fits {
                break;
            }
            let mut acc = vdupq_n_f32(bias);
            for q in 0..inputs {
                let kq = &kernel[q * taps..(q + 1) * taps];
                for ky in 0..g.kernel_h {
                    let iy = oy * g.stride_h + ky * g.dilation_h;
                    let row = input.add(q * plane + iy * g.in_w + x * g.stride_w);
                    for kx in 0..g.kernel_w {
                        let k = vdupq_n_f32(kq[ky * g.kernel_w + kx]);
                        let p = row.add(kx * g.dilation_w);
                        let v = if g.stride_w == 1 {
                            vld1q_f32(p)
                        } else {
                            vld2q_f32(p).0
                        };
                        acc = vfmaq_f32(acc, v, k);
                    }
                }
            }
            vst1q_f32(orow.add(x), act4(acc, act));
            x += 4;
        }
        row_end(g, input, inputs, kernel, bias, act, out, oy, x);
    }
}

/// Row `iy` of the unpadded plane, or the padding row outside it.
#[inline(always)]
unsafe fn row_or_pad(
    input: *const f32,
    w: usize,
    h: usize,
    iy: isize,
    pad_row: *const f32,
) -> *const f32 {
    if iy < 0 || iy >= h as isize {
        pad_row
    } else {
        input.add(iy as usize * w)
    }
}

/// Stride 1: the three horizontal taps of output columns `x .. x+4` of row `r` (input
/// columns `x-1 .. x+5`), the padding column built in by `ext` at the row's two ends.
#[inline(always)]
unsafe fn taps_s1(r: *const f32, x: usize, w: usize, padv: float32x4_t) -> [float32x4_t; 3] {
    if x == 0 {
        let v = vld1q_f32(r);
        [vextq_f32::<3>(padv, v), v, vld1q_f32(r.add(1))]
    } else if x + 4 == w {
        let v = vld1q_f32(r.add(x));
        [vld1q_f32(r.add(x - 1)), v, vextq_f32::<1>(v, padv)]
    } else {
        [
            vld1q_f32(r.add(x - 1)),
            vld1q_f32(r.add(x)),
            vld1q_f32(r.add(x + 1)),
        ]
    }
}

/// Depthwise 3x3, stride 1, one pixel of padding on every side, straight from the
/// unpadded `w x h` plane (`w >= 5`): rows outside the plane read `pad_row` (`w` floats of
/// the padding value); every output is in a vector (two rows per pass), the first and last
/// of a row with the padding column shifted in.
///
/// # Safety
/// `input` holds `w * h` floats, `pad_row` `w`, `out` `w * h`; `w >= 5`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "neon")]
pub unsafe fn pad1_s1(
    input: *const f32,
    w: usize,
    h: usize,
    kernel: &[f32],
    bias: f32,
    act: TileAct,
    pad: f32,
    pad_row: *const f32,
    out: *mut f32,
) {
    debug_assert!(w >= 5);
    let k: [float32x4_t; 9] = std::array::from_fn(|i| vdupq_n_f32(kernel[i]));
    let (vbias, padv) = (vdupq_n_f32(bias), vdupq_n_f32(pad));
    let fma3 = |acc: float32x4_t, v: [float32x4_t; 3], t: usize| {
        let acc = vfmaq_f32(acc, v[0], k[t]);
        let acc = vfmaq_f32(acc, v[1], k[t + 1]);
        vfmaq_f32(acc, v[2], k[t + 2])
    };
    // Columns 0, 4, 8, ... then a last vector at w - 4 (overlapping the previous one).
    let next = |x: usize| {
        if x + 4 >= w {
            None
        } else if x + 8 < w {
            Some(x + 4)
        } else {
            Some(w - 4)
        }
    };
    let mut oy = 0;
    while oy + 2 <= h {
        let r = |d: isize| row_or_pad(input, w, h, oy as isize - 1 + d, pad_row);
        let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
        let o0 = out.add(oy * w);
        let o1 = o0.add(w);
        let mut x = 0;
        loop {
            let v1 = taps_s1(r1, x, w, padv);
            let v2 = taps_s1(r2, x, w, padv);
            let a0 = fma3(fma3(fma3(vbias, taps_s1(r0, x, w, padv), 0), v1, 3), v2, 6);
            let a1 = fma3(fma3(fma3(vbias, v1, 0), v2, 3), taps_s1(r3, x, w, padv), 6);
            vst1q_f32(o0.add(x), act4(a0, act));
            vst1q_f32(o1.add(x), act4(a1, act));
            match next(x) {
                Some(n) => x = n,
                None => break,
            }
        }
        oy += 2;
    }
    if oy < h {
        let r = |d: isize| row_or_pad(input, w, h, oy as isize - 1 + d, pad_row);
        let (r0, r1, r2) = (r(0), r(1), r(2));
        let o = out.add(oy * w);
        let mut x = 0;
        loop {
            let acc = fma3(
                fma3(
                    fma3(vbias, taps_s1(r0, x, w, padv), 0),
                    taps_s1(r1, x, w, padv),
                    3,
                ),
                taps_s1(r2, x, w, padv),
                6,
            );
            vst1q_f32(o.add(x), act4(acc, act));
            match next(x) {
                Some(n) => x = n,
                None => break,
            }
        }
    }
}

/// Stride 2: the three horizontal taps of output columns `x .. x+4` (input columns
/// `2x-1 .. 2x+8`) of row `r`, `w` wide with `out_w = ceil(w / 2)` outputs; the padding
/// column is shifted in at the left end and, for odd `w`, at the right end.
#[inline(always)]
unsafe fn taps_s2(
    r: *const f32,
    x: usize,
    w: usize,
    out_w: usize,
    padv: float32x4_t,
) -> [float32x4_t; 3] {
    if x == 0 {
        // Inputs 0 .. 8: evens are tap 1, odds tap 2, tap 0 is the odds behind the padding.
        let v = vld2q_f32(r);
        [vextq_f32::<3>(padv, v.1), v.0, v.1]
    } else if x + 4 == out_w && w % 2 == 1 {
        // The last output reads the padding at column w.
        let t0 = even_exact(r.add(2 * x - 1));
        [t0, even_exact(r.add(2 * x)), vextq_f32::<1>(t0, padv)]
    } else if 2 * x + 10 <= w {
        let v = vld2q_f32(r.add(2 * x - 1));
        [v.0, v.1, vld2q_f32(r.add(2 * x + 1)).0]
    } else {
        [
            even_exact(r.add(2 * x - 1)),
            even_exact(r.add(2 * x)),
            even_exact(r.add(2 * x + 1)),
        ]
    }
}

/// Depthwise 3x3, stride 2, one pixel of padding on every side, straight from the
/// unpadded `w x h` plane (`w >= 10`): output `ceil(w / 2) x ceil(h / 2)`; rows outside the
/// plane read `pad_row`; every output is in a vector, the ends with the padding shifted in.
///
/// # Safety
/// `input` holds `w * h` floats, `pad_row` `w`, `out` the output plane; `w >= 10`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "neon")]
pub unsafe fn pad1_s2(
    input: *const f32,
    w: usize,
    h: usize,
    kernel: &[f32],
    bias: f32,
    act: TileAct,
    pad: f32,
    pad_row: *const f32,
    out: *mut f32,
) {
    debug_assert!(w >= 10);
    let (out_w, out_h) = (w.div_ceil(2), h.div_ceil(2));
    let k: [float32x4_t; 9] = std::array::from_fn(|i| vdupq_n_f32(kernel[i]));
    let (vbias, padv) = (vdupq_n_f32(bias), vdupq_n_f32(pad));
    for oy in 0..out_h {
        let iy = 2 * oy as isize - 1;
        let rows = [
            row_or_pad(input, w, h, iy, pad_row),
            row_or_pad(input, w, h, iy + 1, pad_row),
            row_or_pad(input, w, h, iy + 2, pad_row),
        ];
        let o = out.add(oy * out_w);
        let mut x = 0;
        loop {
            let mut acc = vbias;
            for (t, r) in rows.into_iter().enumerate() {
                let v = taps_s2(r, x, w, out_w, padv);
                acc = vfmaq_f32(acc, v[0], k[3 * t]);
                acc = vfmaq_f32(acc, v[1], k[3 * t + 1]);
                acc = vfmaq_f32(acc, v[2], k[3 * t + 2]);
            }
            vst1q_f32(o.add(x), act4(acc, act));
            if x + 4 >= out_w {
                break;
            }
            x = if x + 8 < out_w { x + 4 } else { out_w - 4 };
        }
    }
}
