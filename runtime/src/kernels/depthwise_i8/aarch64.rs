//! NEON depthwise int8 kernel: 16 output pixels per block. Stride 1 loads 16 inputs with
//! `ld1`, stride 2 splits 32 with `ld2` and keeps the even lanes. Products go into two
//! int16x8 partials with `smull`/`smlal` (`smlal2` for the high half) for
//! `Precision::products_per_i16` taps (2 for INT8, 8 for INT7), then `saddw`/`saddw2` widen
//! them into four int32x4 sums. One schedule serves Cortex-A53 and A72: the loop is bound by
//! its dependent `smlal` chain either way.
//!
//! A block runs whenever all its loads stay inside the input plane (lanes past the row's end
//! read the next row and are discarded); the rest of the row is done in scalar code.

use super::{generic, Geometry, CHUNK, SLACK};
use crate::quant::Precision;
use std::arch::aarch64::*;

/// # Safety
/// The caller has checked the geometry against the buffers (`super::check`).
/// The SIMD code relies on it for its unchecked loads and stores.
#[allow(clippy::too_many_arguments)]
pub unsafe fn row(
    g: &Geometry,
    precision: Precision,
    input: &[i8],
    taps: &[i8],
    oy: usize,
    x0: usize,
    n: usize,
    acc: &mut [i32; CHUNK + SLACK],
) {
    let three = g.kernel_w == 3 && g.kernel_h == 3 && g.dilation_w == 1 && g.dilation_h == 1;
    let a = acc.as_mut_ptr();
    // SAFETY: NEON is baseline on aarch64; the blocks check their loads against `input`, and
    // store at most 16 sums from an index below n <= CHUNK into `acc` (CHUNK + 16 long).
    unsafe {
        match (precision, three, g.stride_w) {
            (Precision::Int8, true, 1) => row_neon::<true, 1, 2>(g, input, taps, oy, x0, n, a),
            (Precision::Int8, true, 2) => row_neon::<true, 2, 2>(g, input, taps, oy, x0, n, a),
            (Precision::Int8, false, 1) => row_neon::<false, 1, 2>(g, input, taps, oy, x0, n, a),
            (Precision::Int8, false, 2) => row_neon::<false, 2, 2>(g, input, taps, oy, x0, n, a),
            (Precision::Int7, true, 1) => row_neon::<true, 1, 8>(g, input, taps, oy, x0, n, a),
            (Precision::Int7, true, 2) => row_neon::<true, 2, 8>(g, input, taps, oy, x0, n, a),
            (Precision::Int7, false, 1) => row_neon::<false, 1, 8>(g, input, taps, oy, x0, n, a),
            (Precision::Int7, false, 2) => row_neon::<false, 2, 8>(g, input, taps, oy, x0, n, a),
            _ => generic::row(g, input, taps, oy, x0, &mut acc[..n]),
        }
    }
}

/// One row: `THREE` fixes a 3x3 undilated kernel (so the tap loops unroll), `S` is the
/// horizontal stride (1 or 2), `F` the int16 flush interval in products.
#[target_feature(enable = "neon")]
unsafe fn row_neon<const THREE: bool, const S: usize, const F: usize>(
    g: &Geometry,
    input: &[i8],
    taps: &[i8],
    oy: usize,
    x0: usize,
    n: usize,
    acc: *mut i32,
) {
    let (kw, kh, dw, dh) = if THREE {
        (3, 3, 1, 1)
    } else {
        (g.kernel_w, g.kernel_h, g.dilation_w, g.dilation_h)
    };
    let in_w = g.in_w;
    let base = oy * g.stride_h * in_w + x0 * S;
    // Bytes a block reads from its first tap's address on.
    let span = (kh - 1) * dh * in_w + (kw - 1) * dw + 16 * S;
    let mut i = 0;
    while i < n && base + i * S + span <= input.len() {
        let p = input.as_ptr().add(base + i * S);
        let zero16 = vdupq_n_s16(0);
        let mut sums = [vdupq_n_s32(0); 4];
        let (mut lo, mut hi, mut count) = (zero16, zero16, 0);
        for ky in 0..kh {
            for kx in 0..kw {
                let q = p.add(ky * dh * in_w + kx * dw);
                let v = if S == 1 { vld1q_s8(q) } else { vld2q_s8(q).0 };
                let t = vdupq_n_s8(*taps.get_unchecked(ky * kw + kx));
                if count == 0 {
                    lo = vmull_s8(vget_low_s8(v), vget_low_s8(t));
                    hi = vmull_high_s8(v, t);
                } else {
                    lo = vmlal_s8(lo, vget_low_s8(v), vget_low_s8(t));
                    hi = vmlal_high_s8(hi, v, t);
                }
                count += 1;
                if count == F {
                    widen_add(&mut sums, lo, hi);
                    count = 0;
                }
            }
        }
        if count > 0 {
            widen_add(&mut sums, lo, hi);
        }
        for (j, s) in sums.into_iter().enumerate() {
            vst1q_s32(acc.add(i + 4 * j), s);
        }
        i += 16;
    }
    while i < n {
        *acc.add(i) = generic::pixel(g, input, taps, x0 + i, oy);
        i += 1;
    }
}

/// Adds the int16 partials of pixels 0..8 (`lo`) and 8..16 (`hi`) to the int32 sums.
#[inline]
#[target_feature(enable = "neon")]
fn widen_add(sums: &mut [int32x4_t; 4], lo: int16x8_t, hi: int16x8_t) {
    sums[0] = vaddw_s16(sums[0], vget_low_s16(lo));
    sums[1] = vaddw_high_s16(sums[1], lo);
    sums[2] = vaddw_s16(sums[2], vget_low_s16(hi));
    sums[3] = vaddw_high_s16(sums[3], hi);
}
