//! Plain Rust depthwise kernel for any geometry; also the fallback for strides above 2.
//! Sums bias, then input planes, then taps in (ky, kx) order, like the reference.

use super::Geometry;

pub fn channel(
    g: &Geometry,
    input: &[f32],
    inputs: usize,
    kernel: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    out.fill(bias);
    let (plane, taps) = (g.in_w * g.in_h, g.taps());
    for q in 0..inputs {
        accumulate(
            g,
            &input[q * plane..(q + 1) * plane],
            &kernel[q * taps..(q + 1) * taps],
            out,
        );
    }
}

/// Adds each tap's contribution to a whole output row at a time (contiguous, vectorisable
/// for stride 1).
fn accumulate(g: &Geometry, input: &[f32], kernel: &[f32], out: &mut [f32]) {
    for (oy, orow) in out.chunks_exact_mut(g.out_w).enumerate() {
        for ky in 0..g.kernel_h {
            let iy = oy * g.stride_h + ky * g.dilation_h;
            let irow = &input[iy * g.in_w..(iy + 1) * g.in_w];
            for kx in 0..g.kernel_w {
                let k = kernel[ky * g.kernel_w + kx];
                let x0 = kx * g.dilation_w;
                if g.stride_w == 1 {
                    for (o, &v) in orow.iter_mut().zip(&irow[x0..x0 + g.out_w]) {
                        *o += v * k;
                    }
                } else {
                    for (o, &v) in orow.iter_mut().zip(irow[x0..].iter().step_by(g.stride_w)) {
                        *o += v * k;
                    }
                }
            }
        }
    }
}
