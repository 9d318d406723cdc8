//! AVX2 + FMA depthwise kernels: 8 output pixels of a row per vector. Stride 2 loads 16
//! consecutive inputs and keeps the even ones. Pixels left over at a row's end are done
//! in scalar code.

use super::{generic, Geometry};
use std::arch::x86_64::*;

pub fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// Callers have checked the geometry against the buffers (`Geometry::check`).
pub fn channel(g: &Geometry, input: &[f32], kernel: &[f32], bias: f32, out: &mut [f32]) {
    assert!(available(), "AVX2/FMA kernel on a CPU without AVX2/FMA");
    // SAFETY: features checked above; bounds checked by the caller.
    unsafe {
        match (g.is_3x3(), g.stride_w, g.stride_h) {
            (true, 1, 1) => conv3x3s1(g, input.as_ptr(), kernel, bias, out.as_mut_ptr()),
            (true, 2, 2) => conv3x3s2(g, input.as_ptr(), kernel, bias, out.as_mut_ptr()),
            (_, 1 | 2, _) => general(g, input.as_ptr(), kernel, Some(bias), out.as_mut_ptr()),
            _ => generic::channel(g, input, kernel, bias, out),
        }
    }
}

pub fn accumulate(g: &Geometry, input: &[f32], kernel: &[f32], out: &mut [f32]) {
    assert!(available(), "AVX2/FMA kernel on a CPU without AVX2/FMA");
    match g.stride_w {
        // SAFETY: as in `channel`.
        1 | 2 => unsafe { general(g, input.as_ptr(), kernel, None, out.as_mut_ptr()) },
        _ => generic::accumulate(g, input, kernel, out),
    }
}

/// The even elements of `p[0..16]`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn even(p: *const f32) -> __m256 {
    let s = _mm256_shuffle_ps::<0b10_00_10_00>(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(s)))
}

/// The odd elements of `p[0..16]`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn odd(p: *const f32) -> __m256 {
    let s = _mm256_shuffle_ps::<0b11_01_11_01>(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(s)))
}

/// Scalar value of one output pixel (row ends).
#[inline(always)]
unsafe fn pixel(
    g: &Geometry,
    input: *const f32,
    kernel: &[f32],
    init: f32,
    ox: usize,
    oy: usize,
) -> f32 {
    let mut sum = init;
    for ky in 0..g.kernel_h {
        let row = input.add((oy * g.stride_h + ky * g.dilation_h) * g.in_w + ox * g.stride_w);
        for kx in 0..g.kernel_w {
            sum += *row.add(kx * g.dilation_w) * kernel[ky * g.kernel_w + kx];
        }
    }
    sum
}

#[target_feature(enable = "avx2,fma")]
unsafe fn conv3x3s1(g: &Geometry, input: *const f32, kernel: &[f32], bias: f32, out: *mut f32) {
    let k: [__m256; 9] = std::array::from_fn(|i| _mm256_set1_ps(kernel[i]));
    let vbias = _mm256_set1_ps(bias);
    for oy in 0..g.out_h {
        let r0 = input.add(oy * g.in_w);
        let r1 = r0.add(g.in_w);
        let r2 = r1.add(g.in_w);
        let orow = out.add(oy * g.out_w);
        let mut x = 0;
        while x + 8 <= g.out_w {
            let mut acc = vbias;
            for (t, r) in [r0, r1, r2].into_iter().enumerate() {
                let r = r.add(x);
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(r), k[3 * t], acc);
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(r.add(1)), k[3 * t + 1], acc);
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(r.add(2)), k[3 * t + 2], acc);
            }
            _mm256_storeu_ps(orow.add(x), acc);
            x += 8;
        }
        for ox in x..g.out_w {
            *orow.add(ox) = pixel(g, input, kernel, bias, ox, oy);
        }
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn conv3x3s2(g: &Geometry, input: *const f32, kernel: &[f32], bias: f32, out: *mut f32) {
    let k: [__m256; 9] = std::array::from_fn(|i| _mm256_set1_ps(kernel[i]));
    let vbias = _mm256_set1_ps(bias);
    for oy in 0..g.out_h {
        let r0 = input.add(2 * oy * g.in_w);
        let r1 = r0.add(g.in_w);
        let r2 = r1.add(g.in_w);
        let orow = out.add(oy * g.out_w);
        let mut x = 0;
        // Reads inputs 2x .. 2x+18 of each row.
        while x + 8 <= g.out_w && 2 * x + 18 <= g.in_w {
            let mut acc = vbias;
            for (t, r) in [r0, r1, r2].into_iter().enumerate() {
                let r = r.add(2 * x);
                acc = _mm256_fmadd_ps(even(r), k[3 * t], acc);
                acc = _mm256_fmadd_ps(odd(r), k[3 * t + 1], acc);
                acc = _mm256_fmadd_ps(even(r.add(2)), k[3 * t + 2], acc);
            }
            _mm256_storeu_ps(orow.add(x), acc);
            x += 8;
        }
        for ox in x..g.out_w {
            *orow.add(ox) = pixel(g, input, kernel, bias, ox, oy);
        }
    }
}

/// Any kernel size and dilation, stride_w 1 or 2, any stride_h. Starts from `bias`, or
/// from the current output when `bias` is `None`.
#[target_feature(enable = "avx2,fma")]
unsafe fn general(
    g: &Geometry,
    input: *const f32,
    kernel: &[f32],
    bias: Option<f32>,
    out: *mut f32,
) {
    let reach = (g.kernel_w - 1) * g.dilation_w;
    for oy in 0..g.out_h {
        let orow = out.add(oy * g.out_w);
        let mut x = 0;
        loop {
            let fits = if g.stride_w == 1 {
                x + 8 <= g.out_w
            } else {
                x + 8 <= g.out_w && 2 * x + reach + 16 <= g.in_w
            };
            if !fits {
                break;
            }
            let mut acc = match bias {
                Some(b) => _mm256_set1_ps(b),
                None => _mm256_loadu_ps(orow.add(x)),
            };
            for ky in 0..g.kernel_h {
                let row =
                    input.add((oy * g.stride_h + ky * g.dilation_h) * g.in_w + x * g.stride_w);
                for kx in 0..g.kernel_w {
                    let k = _mm256_set1_ps(kernel[ky * g.kernel_w + kx]);
                    let p = row.add(kx * g.dilation_w);
                    let v = if g.stride_w == 1 {
                        _mm256_loadu_ps(p)
                    } else {
                        even(p)
                    };
                    acc = _mm256_fmadd_ps(v, k, acc);
                }
            }
            _mm256_storeu_ps(orow.add(x), acc);
            x += 8;
        }
        for ox in x..g.out_w {
            let init = bias.unwrap_or(*orow.add(ox));
            *orow.add(ox) = pixel(g, input, kernel, init, ox, oy);
        }
    }
}
