//! NEON depthwise kernels: 4 output pixels of a row per vector. Stride 2 uses `vld2q`,
//! which splits 8 consecutive inputs into even and odd lanes. The pixels at a row's end
//! are done by a last vector that overlaps the previous one and loads only the inputs it
//! needs; rows narrower than 4 are done in scalar code.

use super::{generic, Geometry};
use std::arch::aarch64::*;

/// Callers have checked the geometry against the buffers (`Geometry::check`).
pub fn channel(
    g: &Geometry,
    input: &[f32],
    inputs: usize,
    kernel: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    let (i, o) = (input.as_ptr(), out.as_mut_ptr());
    // SAFETY: NEON is part of the aarch64 baseline; bounds checked by the caller.
    unsafe {
        match (inputs == 1 && g.is_3x3(), g.stride_w, g.stride_h) {
            (true, 1, 1) => conv3x3s1(g, i, kernel, bias, o),
            (true, 2, 2) => conv3x3s2(g, i, kernel, bias, o),
            (_, 1 | 2, _) => general(g, i, inputs, kernel, bias, o),
            _ => generic::channel(g, input, inputs, kernel, bias, out),
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

/// Output pixels `x..out_w` of row `oy`. A last vector overlapping the previous one
/// recomputes some pixels to the same values.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "neon")]
unsafe fn row_end(
    g: &Geometry,
    input: *const f32,
    inputs: usize,
    kernel: &[f32],
    bias: f32,
    out: *mut f32,
    oy: usize,
    mut x: usize,
) {
    let (plane, taps) = (g.in_w * g.in_h, g.taps());
    let orow = out.add(oy * g.out_w);
    if g.out_w < 4 {
        for ox in x..g.out_w {
            *orow.add(ox) = pixel(g, input, inputs, kernel, bias, ox, oy);
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
        vst1q_f32(orow.add(x0), acc);
        x = x0 + 4;
    }
}

#[target_feature(enable = "neon")]
unsafe fn conv3x3s1(g: &Geometry, input: *const f32, kernel: &[f32], bias: f32, out: *mut f32) {
    let k: [float32x4_t; 9] = std::array::from_fn(|i| vdupq_n_f32(kernel[i]));
    let vbias = vdupq_n_f32(bias);
    for oy in 0..g.out_h {
        let r0 = input.add(oy * g.in_w);
        let r1 = r0.add(g.in_w);
        let r2 = r1.add(g.in_w);
        let orow = out.add(oy * g.out_w);
        let mut x = 0;
        while x + 4 <= g.out_w {
            let mut acc = vbias;
            for (t, r) in [r0, r1, r2].into_iter().enumerate() {
                let r = r.add(x);
                acc = vfmaq_f32(acc, vld1q_f32(r), k[3 * t]);
                acc = vfmaq_f32(acc, vld1q_f32(r.add(1)), k[3 * t + 1]);
                acc = vfmaq_f32(acc, vld1q_f32(r.add(2)), k[3 * t + 2]);
            }
            vst1q_f32(orow.add(x), acc);
            x += 4;
        }
        row_end(g, input, 1, kernel, bias, out, oy, x);
    }
}

#[target_feature(enable = "neon")]
unsafe fn conv3x3s2(g: &Geometry, input: *const f32, kernel: &[f32], bias: f32, out: *mut f32) {
    let k: [float32x4_t; 9] = std::array::from_fn(|i| vdupq_n_f32(kernel[i]));
    let vbias = vdupq_n_f32(bias);
    for oy in 0..g.out_h {
        let r0 = input.add(2 * oy * g.in_w);
        let r1 = r0.add(g.in_w);
        let r2 = r1.add(g.in_w);
        let orow = out.add(oy * g.out_w);
        let mut x = 0;
        // Reads inputs 2x .. 2x+10 of each row.
        while x + 4 <= g.out_w && 2 * x + 10 <= g.in_w {
            let mut acc = vbias;
            for (t, r) in [r0, r1, r2].into_iter().enumerate() {
                let r = r.add(2 * x);
                let v01 = vld2q_f32(r);
                let v2 = vld2q_f32(r.add(2)).0;
                acc = vfmaq_f32(acc, v01.0, k[3 * t]);
                acc = vfmaq_f32(acc, v01.1, k[3 * t + 1]);
                acc = vfmaq_f32(acc, v2, k[3 * t + 2]);
            }
            vst1q_f32(orow.add(x), acc);
            x += 4;
        }
        row_end(g, input, 1, kernel, bias, out, oy, x);
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
            vst1q_f32(orow.add(x), acc);
            x += 4;
        }
        row_end(g, input, inputs, kernel, bias, out, oy, x);
    }
}
