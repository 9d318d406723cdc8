//! Plain Rust depthwise int8 kernel for any geometry: int32 sums, one tap over a whole
//! output row at a time (vectorisable for stride 1). Also the scalar tail of the SIMD rows.

use super::Geometry;

pub fn row(g: &Geometry, input: &[i8], taps: &[i8], oy: usize, x0: usize, acc: &mut [i32]) {
    acc.fill(0);
    let n = acc.len();
    for ky in 0..g.kernel_h {
        let iy = oy * g.stride_h + ky * g.dilation_h;
        let irow = &input[iy * g.in_w..(iy + 1) * g.in_w];
        for kx in 0..g.kernel_w {
            let k = taps[ky * g.kernel_w + kx] as i32;
            let start = x0 * g.stride_w + kx * g.dilation_w;
            if g.stride_w == 1 {
                for (a, &v) in acc.iter_mut().zip(&irow[start..start + n]) {
                    *a += v as i32 * k;
                }
            } else {
                for (a, &v) in acc.iter_mut().zip(irow[start..].iter().step_by(g.stride_w)) {
                    *a += v as i32 * k;
                }
            }
        }
    }
}

/// The int32 sum of output pixel (`ox`, `oy`).
pub fn pixel(g: &Geometry, input: &[i8], taps: &[i8], ox: usize, oy: usize) -> i32 {
    let mut sum = 0i32;
    for ky in 0..g.kernel_h {
        let row = (oy * g.stride_h + ky * g.dilation_h) * g.in_w + ox * g.stride_w;
        for kx in 0..g.kernel_w {
            sum += input[row + kx * g.dilation_w] as i32 * taps[ky * g.kernel_w + kx] as i32;
        }
    }
    sum
}
