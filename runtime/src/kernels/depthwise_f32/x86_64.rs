//! AVX2 + FMA depthwise kernels: 8 output pixels of a row per vector. Stride 2 loads 16
//! consecutive inputs and keeps the even ones. The pixels at a row's end that do not fill
//! a vector (or whose full-width loads would leave the plane) use masked loads and stores,
//! which never touch memory outside the mask.

use super::{generic, Geometry};
use std::arch::x86_64::*;

pub fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// # Safety
/// The caller has checked the geometry against the buffers (`Geometry::check`).
/// The SIMD code relies on it for its unchecked loads and stores.
pub unsafe fn channel(
    g: &Geometry,
    input: &[f32],
    inputs: usize,
    kernel: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    assert!(available(), "AVX2/FMA kernel on a CPU without AVX2/FMA");
    let (i, o) = (input.as_ptr(), out.as_mut_ptr());
    // SAFETY: features checked above; bounds checked by the caller.
    unsafe {
        match (inputs == 1 && g.is_3x3(), g.stride_w, g.stride_h) {
            (true, 1, 1) => conv3x3s1(g, i, kernel, bias, o),
            (true, 2, 2) => conv3x3s2(g, i, kernel, bias, o),
            (_, 1 | 2, _) => general(g, i, inputs, kernel, bias, o),
            _ => generic::channel(g, input, inputs, kernel, bias, out),
        }
    }
}

/// Mask with the first `n` (0..=8) lanes set.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn first_lanes(n: usize) -> __m256i {
    const BITS: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];
    _mm256_loadu_si256(BITS.as_ptr().add(8 - n.min(8)) as *const __m256i)
}

/// The even elements of two vectors holding 16 consecutive inputs.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn evens(a: __m256, b: __m256) -> __m256 {
    let s = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(s)))
}

/// The odd elements of two vectors holding 16 consecutive inputs.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn odds(a: __m256, b: __m256) -> __m256 {
    let s = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(s)))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn even(p: *const f32) -> __m256 {
    evens(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
}

/// Elements `p[0], p[s], ..` for the first `n` lanes (stride `s` 1 or 2), zero elsewhere;
/// reads only `p[0 ..= s * (n - 1)]`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load_masked(p: *const f32, s: usize, n: usize) -> __m256 {
    if s == 1 {
        return _mm256_maskload_ps(p, first_lanes(n));
    }
    let len = 2 * n - 1;
    let lo = _mm256_maskload_ps(p, first_lanes(len));
    // wrapping_add: with an empty mask nothing is read, but the address may lie past the end.
    let hi = _mm256_maskload_ps(p.wrapping_add(8), first_lanes(len.saturating_sub(8)));
    evens(lo, hi)
}

/// Output pixels `x..out_w` of row `oy`, 8 at a time with masked loads and stores.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
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
    while x < g.out_w {
        let n = (g.out_w - x).min(8);
        let mut acc = _mm256_set1_ps(bias);
        for q in 0..inputs {
            let kq = &kernel[q * taps..(q + 1) * taps];
            for ky in 0..g.kernel_h {
                let iy = oy * g.stride_h + ky * g.dilation_h;
                let row = input.add(q * plane + iy * g.in_w + x * g.stride_w);
                for kx in 0..g.kernel_w {
                    let v = load_masked(row.add(kx * g.dilation_w), g.stride_w, n);
                    acc = _mm256_fmadd_ps(v, _mm256_set1_ps(kq[ky * g.kernel_w + kx]), acc);
                }
            }
        }
        _mm256_maskstore_ps(orow.add(x), first_lanes(n), acc);
        x += n;
    }
}

/// Two output rows per pass: they share two of their four input rows.
#[target_feature(enable = "avx2,fma")]
unsafe fn conv3x3s1(g: &Geometry, input: *const f32, kernel: &[f32], bias: f32, out: *mut f32) {
    let k: [__m256; 9] = std::array::from_fn(|i| _mm256_set1_ps(kernel[i]));
    let vbias = _mm256_set1_ps(bias);
    let mut oy = 0;
    while oy + 2 <= g.out_h {
        let r0 = input.add(oy * g.in_w);
        let rows = [r0, r0.add(g.in_w), r0.add(2 * g.in_w), r0.add(3 * g.in_w)];
        let o0 = out.add(oy * g.out_w);
        let o1 = o0.add(g.out_w);
        let mut x = 0;
        while x + 8 <= g.out_w {
            let (mut a0, mut a1) = (vbias, vbias);
            for (t, r) in rows.into_iter().enumerate() {
                let r = r.add(x);
                let v = [
                    _mm256_loadu_ps(r),
                    _mm256_loadu_ps(r.add(1)),
                    _mm256_loadu_ps(r.add(2)),
                ];
                for (j, v) in v.into_iter().enumerate() {
                    if t < 3 {
                        a0 = _mm256_fmadd_ps(v, k[3 * t + j], a0);
                    }
                    if t > 0 {
                        a1 = _mm256_fmadd_ps(v, k[3 * (t - 1) + j], a1);
                    }
                }
            }
            _mm256_storeu_ps(o0.add(x), a0);
            _mm256_storeu_ps(o1.add(x), a1);
            x += 8;
        }
        row_end(g, input, 1, kernel, bias, out, oy, x);
        row_end(g, input, 1, kernel, bias, out, oy + 1, x);
        oy += 2;
    }
    if oy < g.out_h {
        let r0 = input.add(oy * g.in_w);
        let rows = [r0, r0.add(g.in_w), r0.add(2 * g.in_w)];
        let orow = out.add(oy * g.out_w);
        let mut x = 0;
        while x + 8 <= g.out_w {
            let mut acc = vbias;
            for (t, r) in rows.into_iter().enumerate() {
                let r = r.add(x);
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(r), k[3 * t], acc);
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(r.add(1)), k[3 * t + 1], acc);
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(r.add(2)), k[3 * t + 2], acc);
            }
            _mm256_storeu_ps(orow.add(x), acc);
            x += 8;
        }
        row_end(g, input, 1, kernel, bias, out, oy, x);
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn conv3x3s2(g: &Geometry, input: *const f32, kernel: &[f32], bias: f32, out: *mut f32) {
    let k: [__m256; 9] = std::array::from_fn(|i| _mm256_set1_ps(kernel[i]));
    let vbias = _mm256_set1_ps(bias);
    for oy in 0..g.out_h {
        let r0 = input.add(2 * oy * g.in_w);
        let rows = [r0, r0.add(g.in_w), r0.add(2 * g.in_w)];
        let orow = out.add(oy * g.out_w);
        let mut x = 0;
        // Reads inputs 2x .. 2x+18 of each row.
        while x + 8 <= g.out_w && 2 * x + 18 <= g.in_w {
            let mut acc = vbias;
            for (t, r) in rows.into_iter().enumerate() {
                let r = r.add(2 * x);
                let (a, b) = (_mm256_loadu_ps(r), _mm256_loadu_ps(r.add(8)));
                acc = _mm256_fmadd_ps(evens(a, b), k[3 * t], acc);
                acc = _mm256_fmadd_ps(odds(a, b), k[3 * t + 1], acc);
                acc = _mm256_fmadd_ps(even(r.add(2)), k[3 * t + 2], acc);
            }
            _mm256_storeu_ps(orow.add(x), acc);
            x += 8;
        }
        row_end(g, input, 1, kernel, bias, out, oy, x);
    }
}

/// Any kernel size, dilation and number of input planes; stride_w 1 or 2, any stride_h.
#[target_feature(enable = "avx2,fma")]
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
                x + 8 <= g.out_w
            } else {
                x + 8 <= g.out_w && 2 * x + reach + 16 <= g.in_w
            };
            if !fits {
                break;
            }
            let mut acc = _mm256_set1_ps(bias);
            for q in 0..inputs {
                let kq = &kernel[q * taps..(q + 1) * taps];
                for ky in 0..g.kernel_h {
                    let iy = oy * g.stride_h + ky * g.dilation_h;
                    let row = input.add(q * plane + iy * g.in_w + x * g.stride_w);
                    for kx in 0..g.kernel_w {
                        let k = _mm256_set1_ps(kq[ky * g.kernel_w + kx]);
                        let p = row.add(kx * g.dilation_w);
                        let v = if g.stride_w == 1 {
                            _mm256_loadu_ps(p)
                        } else {
                            even(p)
                        };
                        acc = _mm256_fmadd_ps(v, k, acc);
                    }
                }
            }
            _mm256_storeu_ps(orow.add(x), acc);
            x += 8;
        }
        row_end(g, input, inputs, kernel, bias, out, oy, x);
    }
}
