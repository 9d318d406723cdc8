//! Whole-tensor quantize / dequantize passes (fp32 into the first int8 layer, int8 back to
//! fp32), bit-identical to `quant::quantize` element by element.
//!
//! AVX2 rounds half away from zero as `trunc(v) ± 1` where `|v − trunc(v)| ≥ 0.5` (both
//! exact in fp32), after zeroing NaN and clamping to ±qmax (clamping first is the same as
//! clamping after, as qmax is an integer). NEON's `fcvtas` rounds half away, saturates and
//! maps NaN to 0, exactly like `f32::round` followed by `as i32`.

use crate::quant::quantize;

/// `dst[i] = quant::quantize(src[i], scale, qmax)`: `clamp(round_half_away(src·scale),
/// ±qmax)`, NaN → 0. `qmax` is at most 127.
pub fn quantize_slice(src: &[f32], scale: f32, qmax: i32, dst: &mut [i8]) {
    assert_eq!(src.len(), dst.len(), "quantize_slice lengths");
    assert!((0..=127).contains(&qmax), "qmax {qmax}");
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 checked; lengths checked above.
        done = unsafe { x86_64::quantize(src, scale, qmax, dst) };
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: NEON is baseline on aarch64; lengths checked above.
        done = unsafe { aarch64::quantize(src, scale, qmax, dst) };
    }
    for (d, &s) in dst[done..].iter_mut().zip(&src[done..]) {
        *d = quantize(s, scale, qmax);
    }
}

/// `dst[i] = src[i] · (1 / scale)`: one reciprocal, then a multiply per element (not a
/// division, so results can differ from `src[i] / scale` in the last bit). The plain loop
/// is vectorised by the compiler.
pub fn dequantize_slice(src: &[i8], scale: f32, dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "dequantize_slice lengths");
    let inv = 1.0 / scale;
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s as f32 * inv;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86_64 {
    use std::arch::x86_64::*;

    /// Quantizes whole groups of 32; returns how many elements it did.
    #[target_feature(enable = "avx2")]
    pub unsafe fn quantize(src: &[f32], scale: f32, qmax: i32, dst: &mut [i8]) -> usize {
        let n = src.len() / 32 * 32;
        let s = _mm256_set1_ps(scale);
        let (lo, hi) = (_mm256_set1_ps(-qmax as f32), _mm256_set1_ps(qmax as f32));
        let sign = _mm256_set1_ps(-0.0);
        let (half, one) = (_mm256_set1_ps(0.5), _mm256_set1_ps(1.0));
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let round = |p: *const f32| {
            let v = _mm256_mul_ps(_mm256_loadu_ps(p), s);
            let v = _mm256_and_ps(v, _mm256_cmp_ps::<_CMP_ORD_Q>(v, v));
            let v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
            let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
            let away = _mm256_cmp_ps::<_CMP_GE_OQ>(frac, half);
            let step = _mm256_or_ps(_mm256_and_ps(v, sign), one);
            _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(away, step)))
        };
        for i in (0..n).step_by(32) {
            let p = src.as_ptr().add(i);
            let ab = _mm256_packs_epi32(round(p), round(p.add(8)));
            let cd = _mm256_packs_epi32(round(p.add(16)), round(p.add(24)));
            let bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), order);
            _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, bytes);
        }
        n
    }
}

#[cfg(target_arch = "aarch64")]
mod aarch64 {
    use std::arch::aarch64::*;

    /// Quantizes whole groups of 16; returns how many elements it did.
    #[target_feature(enable = "neon")]
    pub unsafe fn quantize(src: &[f32], scale: f32, qmax: i32, dst: &mut [i8]) -> usize {
        let n = src.len() / 16 * 16;
        let (lo, hi) = (vdupq_n_s32(-qmax), vdupq_n_s32(qmax));
        let round = |p: *const f32| {
            let v = vcvtaq_s32_f32(vmulq_n_f32(vld1q_f32(p), scale));
            vqmovn_s32(vminq_s32(vmaxq_s32(v, lo), hi))
        };
        for i in (0..n).step_by(16) {
            let p = src.as_ptr().add(i);
            let a = vcombine_s16(round(p), round(p.add(4)));
            let b = vcombine_s16(round(p.add(8)), round(p.add(12)));
            let bytes = vcombine_s8(vqmovn_s16(a), vqmovn_s16(b));
            vst1q_s8(dst.as_mut_ptr().add(i), bytes);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn check(src: &[f32], scale: f32, qmax: i32) {
        let mut got = vec![0i8; src.len()];
        quantize_slice(src, scale, qmax, &mut got);
        for (i, (&g, &s)) in got.iter().zip(src).enumerate() {
            assert_eq!(
                g,
                quantize(s, scale, qmax),
                "{s} * {scale}, qmax {qmax}, at {i}"
            );
        }
    }

    #[test]
    fn quantizes_like_the_scalar_contract() {
        let edges = [
            0.0,
            -0.0,
            0.5,
            -0.5,
            0.49999997,
            -0.49999997,
            0.50000006,
            1.5,
            -1.5,
            2.5,
            -2.5,
            62.5,
            -62.5,
            63.49999,
            63.5,
            -63.5,
            126.5,
            -126.5,
            127.5,
            -127.5,
            128.0,
            -129.0,
            8388607.5,
            -8388607.5,
            16777216.0,
            1e30,
            -1e30,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            1e-40,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
        ];
        let mut rng = Rng::new(9);
        for qmax in [127, 63] {
            for scale in [1.0, 0.5, 3.7, 100.0] {
                // Every length up to 100 covers the vector loop and the scalar tail.
                for n in 0..100 {
                    let src: Vec<f32> = (0..n)
                        .map(|_| match rng.range(0, 3) {
                            0 => edges[rng.range(0, edges.len() as i64 - 1) as usize],
                            1 => rng.range(-600, 600) as f32 * 0.5 / scale,
                            _ => rng.uniform(-300.0, 300.0),
                        })
                        .collect();
                    check(&src, scale, qmax);
                }
                let mut all = edges.to_vec();
                all.extend(edges.iter().map(|v| v / scale));
                while all.len() % 32 != 0 {
                    all.push(0.5);
                }
                check(&all, scale, qmax);
            }
        }
    }

    #[test]
    fn dequantizes_by_the_reciprocal() {
        let src: Vec<i8> = (-127..=127).collect();
        let mut dst = vec![0.0; src.len()];
        dequantize_slice(&src, 12.5, &mut dst);
        for (&s, &d) in src.iter().zip(&dst) {
            assert_eq!(d.to_bits(), (s as f32 * (1.0 / 12.5f32)).to_bits());
        }
        assert_eq!(dst[127 + 25], 2.0);
    }
}
