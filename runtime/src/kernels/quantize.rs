//! Whole-tensor quantize / dequantize passes (fp32 into the first int8 layer, int8 back to
//! fp32), bit-identical to `quant::quantize` element by element.
//!
//! AVX2 rounds half away from zero as `trunc(v) ± 1` where `|v − trunc(v)| ≥ 0.5` (both
//! exact in fp32), after zeroing NaN and clamping to ±qmax (clamping first is the same as
//! clamping after, as qmax is an integer). NEON's `fcvtas` rounds half away, saturates and
//! maps NaN to 0, exactly like `f32::round` followed by `as i32`.

use crate::kernels::requant::{OutBuf, Requant};
use crate::ops::activation::Activation;
use crate::quant::quantize;

/// `dst[i] = quant::quantize(src[i], scale, qmax)`: `clamp(round_half_away(src·scale),
/// ±qmax)`, NaN → 0. `qmax` is at most 127.
pub fn quantize_slice(src: &[f32], scale: f32, qmax: i32, dst: &mut [i8]) {
    assert_eq!(src.len(), dst.len(), "quantize_slice lengths");
    assert!((0..=127).contains(&qmax), "qmax {qmax}");
    #[cfg(target_arch = "x86_64")]
    let done = if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 checked; lengths checked above.
        unsafe { x86_64::quantize(src, scale, qmax, dst) }
    } else {
        0
    };
    // SAFETY: NEON is baseline on aarch64; lengths checked above.
    #[cfg(target_arch = "aarch64")]
    let done = unsafe { aarch64::quantize(src, scale, qmax, dst) };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let done = 0;
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

/// Exactly `requant.store(c, accs, out, at)`, vectorised when the activation is a compare
/// and select (none, ReLU, LeakyReLU, Clip): `acc as f32 · scale_in[c] + bias[c]` as one
/// fused multiply-add (as `Requant::dequant`), the activation's comparisons as written in
/// `Activation::apply`, and for int8 output the rounding of [`quantize_slice`]. Other
/// activations, and the last `accs.len() % 8` values, go through `Requant::store`.
pub fn store_requant(requant: &Requant, c: usize, accs: &[i32], out: &mut OutBuf, at: usize) {
    assert!(
        at + accs.len() <= out.len(),
        "store_requant: output too short"
    );
    assert!(requant.qmax <= 127, "qmax {}", requant.qmax);
    let simple = matches!(
        requant.act,
        Activation::None | Activation::ReLU | Activation::LeakyReLU(_) | Activation::Clip { .. }
    );
    #[cfg(target_arch = "x86_64")]
    let done = if simple && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 checked; the output length checked above.
        unsafe { x86_64::store(requant, c, accs, out, at) }
    } else {
        0
    };
    #[cfg(target_arch = "aarch64")]
    let done = if simple {
        // SAFETY: NEON is baseline on aarch64; the output length checked above.
        unsafe { aarch64::store(requant, c, accs, out, at) }
    } else {
        0
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let done = {
        let _ = simple;
        0
    };
    requant.store(c, &accs[done..], out, at + done);
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_64 {
    use super::{Activation, OutBuf, Requant};
    use std::arch::x86_64::*;

    /// The largest float below 0.5. `trunc(v + copysign(HALF_DOWN, v))` rounds half away
    /// from zero exactly: a tie `n + 0.5` sums to `n + 1 - 2⁻²⁵`, which rounds up to `n + 1`
    /// at the sum's precision (|v| ≥ 0.5), while anything below the tie stays below `n + 1`
    /// (adding 0.5 instead fails for v = 0.5 − 2⁻²⁵, whose sum rounds to 1). The test
    /// `round_clamp_is_exact_for_every_float` checks every float of magnitude ≤ 128.
    pub(crate) const HALF_DOWN: f32 = 0.499_999_97;

    /// Whether [`activate`] (and [`activate512`]) vectorise `act`; other activations take
    /// the scalar epilogue.
    pub(crate) fn vectorised(act: Activation) -> bool {
        matches!(
            act,
            Activation::None
                | Activation::ReLU
                | Activation::LeakyReLU(_)
                | Activation::Clip { .. }
        )
    }

    /// `clamp(round_half_away(v), ±qmax)` as int32 lanes, NaN → 0.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn round_clamp(v: __m256, qmax: f32) -> __m256i {
        let v = _mm256_and_ps(v, _mm256_cmp_ps::<_CMP_ORD_Q>(v, v));
        let v = _mm256_min_ps(
            _mm256_max_ps(v, _mm256_set1_ps(-qmax)),
            _mm256_set1_ps(qmax),
        );
        let half = _mm256_or_ps(
            _mm256_and_ps(v, _mm256_set1_ps(-0.0)),
            _mm256_set1_ps(HALF_DOWN),
        );
        _mm256_cvttps_epi32(_mm256_add_ps(v, half))
    }

    /// `act` on 8 lanes for the activations `super::store_requant` vectorises (none, ReLU,
    /// LeakyReLU, Clip; others are returned unchanged): selects written as
    /// `Activation::apply`'s comparisons (NaN and −0 included).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn activate(act: Activation, y: __m256) -> __m256 {
        let zero = _mm256_setzero_ps();
        match act {
            Activation::ReLU => _mm256_blendv_ps(y, zero, _mm256_cmp_ps::<_CMP_LT_OQ>(y, zero)),
            Activation::LeakyReLU(k) => {
                let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(y, zero);
                _mm256_blendv_ps(y, _mm256_mul_ps(y, _mm256_set1_ps(k)), neg)
            }
            Activation::Clip { min, max } => {
                let (lo, hi) = (_mm256_set1_ps(min), _mm256_set1_ps(max));
                let y = _mm256_blendv_ps(y, lo, _mm256_cmp_ps::<_CMP_LT_OQ>(y, lo));
                _mm256_blendv_ps(y, hi, _mm256_cmp_ps::<_CMP_GT_OQ>(y, hi))
            }
            _ => y,
        }
    }

    /// [`activate`] on 16 lanes (AVX-512 F; the caller's target features).
    #[inline(always)]
    pub(crate) unsafe fn activate512(act: Activation, y: __m512) -> __m512 {
        let zero = _mm512_setzero_ps();
        match act {
            Activation::ReLU => {
                _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(y, zero), zero)
            }
            Activation::LeakyReLU(k) => {
                let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(y, zero);
                _mm512_mask_mul_ps(y, neg, y, _mm512_set1_ps(k))
            }
            Activation::Clip { min, max } => {
                let (lo, hi) = (_mm512_set1_ps(min), _mm512_set1_ps(max));
                let y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(y, lo), lo);
                _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask::<_CMP_GT_OQ>(y, hi), hi)
            }
            _ => y,
        }
    }

    /// [`round_clamp`] on 16 lanes (AVX-512 F; the caller's target features).
    #[inline(always)]
    pub(crate) unsafe fn round_clamp512(v: __m512, qmax: __m512) -> __m512i {
        let v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_ORD_Q>(v, v), v);
        let v = _mm512_min_ps(
            _mm512_max_ps(v, _mm512_sub_ps(_mm512_setzero_ps(), qmax)),
            qmax,
        );
        let sign = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(i32::MIN));
        let half = _mm512_or_si512(sign, _mm512_set1_epi32(HALF_DOWN.to_bits() as i32));
        _mm512_cvttps_epi32(_mm512_add_ps(v, _mm512_castsi512_ps(half)))
    }

    /// Quantizes whole groups of 32; returns how many elements it did.
    #[target_feature(enable = "avx2")]
    pub unsafe fn quantize(src: &[f32], scale: f32, qmax: i32, dst: &mut [i8]) -> usize {
        let n = src.len() / 32 * 32;
        let s = _mm256_set1_ps(scale);
        let q = qmax as f32;
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let round = |p: *const f32| round_clamp(_mm256_mul_ps(_mm256_loadu_ps(p), s), q);
        for i in (0..n).step_by(32) {
            let p = src.as_ptr().add(i);
            let ab = _mm256_packs_epi32(round(p), round(p.add(8)));
            let cd = _mm256_packs_epi32(round(p.add(16)), round(p.add(24)));
            let bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), order);
            _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, bytes);
        }
        n
    }

    /// `Requant::store` for whole groups of 8 and an activation that `super::simple`
    /// accepts; returns how many it did.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn store(r: &Requant, c: usize, accs: &[i32], out: &mut OutBuf, at: usize) -> usize {
        let n = accs.len() / 8 * 8;
        let scale = _mm256_set1_ps(r.scale_in[c]);
        let bias = _mm256_set1_ps(r.bias.map_or(0.0, |b| b[c]));
        let y = |i: usize| {
            let a = _mm256_loadu_si256(accs.as_ptr().add(i) as *const __m256i);
            // One fused multiply-add, as the scalar code (and ncnn's dequantize).
            let y = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), scale, bias);
            activate(r.act, y)
        };
        match out {
            OutBuf::F32(o) => {
                let o = &mut o[at..at + n];
                for i in (0..n).step_by(8) {
                    _mm256_storeu_ps(o.as_mut_ptr().add(i), y(i));
                }
            }
            OutBuf::I8(o) => {
                let o = &mut o[at..at + n];
                let (top, q) = (_mm256_set1_ps(r.top_scale), r.qmax as f32);
                let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
                let round = |i: usize| round_clamp(_mm256_mul_ps(y(i), top), q);
                // 32 at a time share one packing chain, then 8 at a time.
                let mut i = 0;
                while i + 32 <= n {
                    let ab = _mm256_packs_epi32(round(i), round(i + 8));
                    let cd = _mm256_packs_epi32(round(i + 16), round(i + 24));
                    let bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), order);
                    _mm256_storeu_si256(o.as_mut_ptr().add(i) as *mut __m256i, bytes);
                    i += 32;
                }
                for i in (i..n).step_by(8) {
                    let v = round(i);
                    let w = _mm256_packs_epi32(v, v);
                    let b = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w, w), order);
                    _mm_storel_epi64(
                        o.as_mut_ptr().add(i) as *mut __m128i,
                        _mm256_castsi256_si128(b),
                    );
                }
            }
        }
        n
    }
}

#[cfg(target_arch = "aarch64")]
mod aarch64 {
    use super::{Activation, OutBuf, Requant};
    use std::arch::aarch64::*;

    /// `clamp(round_half_away(v), ±qmax)` narrowed to int16, NaN → 0.
    #[inline]
    #[target_feature(enable = "neon")]
    fn round_clamp(v: float32x4_t, qmax: i32) -> int16x4_t {
        let v = vcvtaq_s32_f32(v);
        vqmovn_s32(vminq_s32(
            vmaxq_s32(v, vdupq_n_s32(-qmax)),
            vdupq_n_s32(qmax),
        ))
    }

    /// Quantizes whole groups of 16; returns how many elements it did.
    #[target_feature(enable = "neon")]
    pub unsafe fn quantize(src: &[f32], scale: f32, qmax: i32, dst: &mut [i8]) -> usize {
        let n = src.len() / 16 * 16;
        let round = |p: *const f32| round_clamp(vmulq_n_f32(vld1q_f32(p), scale), qmax);
        for i in (0..n).step_by(16) {
            let p = src.as_ptr().add(i);
            let a = vcombine_s16(round(p), round(p.add(4)));
            let b = vcombine_s16(round(p.add(8)), round(p.add(12)));
            let bytes = vcombine_s8(vqmovn_s16(a), vqmovn_s16(b));
            vst1q_s8(dst.as_mut_ptr().add(i), bytes);
        }
        n
    }

    /// `Requant::store` for whole groups of 8 and an activation that `super::simple`
    /// accepts; returns how many it did.
    #[target_feature(enable = "neon")]
    pub unsafe fn store(r: &Requant, c: usize, accs: &[i32], out: &mut OutBuf, at: usize) -> usize {
        let n = accs.len() / 8 * 8;
        let scale = r.scale_in[c];
        let bias = vdupq_n_f32(r.bias.map_or(0.0, |b| b[c]));
        let zero = vdupq_n_f32(0.0);
        let y = |i: usize| {
            let a = vld1q_s32(accs.as_ptr().add(i));
            // One fused multiply-add, as the scalar code.
            let y = vfmaq_n_f32(bias, vcvtq_f32_s32(a), scale);
            // Selects written as the scalar code's comparisons (NaN and −0 included).
            match r.act {
                Activation::ReLU => vbslq_f32(vcltq_f32(y, zero), zero, y),
                Activation::LeakyReLU(k) => vbslq_f32(vcltq_f32(y, zero), vmulq_n_f32(y, k), y),
                Activation::Clip { min, max } => {
                    let (lo, hi) = (vdupq_n_f32(min), vdupq_n_f32(max));
                    let y = vbslq_f32(vcltq_f32(y, lo), lo, y);
                    vbslq_f32(vcgtq_f32(y, hi), hi, y)
                }
                _ => y,
            }
        };
        match out {
            OutBuf::F32(o) => {
                let o = &mut o[at..at + n];
                for i in (0..n).step_by(4) {
                    vst1q_f32(o.as_mut_ptr().add(i), y(i));
                }
            }
            OutBuf::I8(o) => {
                let o = &mut o[at..at + n];
                let top = r.top_scale;
                for i in (0..n).step_by(8) {
                    let a = round_clamp(vmulq_n_f32(y(i), top), r.qmax);
                    let b = round_clamp(vmulq_n_f32(y(i + 4), top), r.qmax);
                    vst1_s8(o.as_mut_ptr().add(i), vqmovn_s16(vcombine_s16(a, b)));
                }
            }
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

    /// Every float of magnitude ≤ 128 (both signs) through the AVX2 rounding, against the
    /// scalar contract (`quant::quantize_scaled`).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn round_clamp_is_exact_for_every_float() {
        use std::arch::x86_64::*;
        if !is_x86_feature_detected!("avx2") {
            return;
        }
        // All of them at qmax 127; around the clamp at 63.
        for (qmax, first, last) in [(127, 0.0f32, 128f32), (63, 62.0, 65.0)] {
            for sign in [0u32, 0x8000_0000] {
                let (mut bits, last) = (first.to_bits(), last.to_bits());
                while bits <= last {
                    let v: [f32; 8] =
                        std::array::from_fn(|i| f32::from_bits((bits + i as u32) | sign));
                    let mut got = [0i32; 8];
                    // SAFETY: AVX2 checked above.
                    unsafe {
                        let q = x86_64::round_clamp(_mm256_loadu_ps(v.as_ptr()), qmax as f32);
                        _mm256_storeu_si256(got.as_mut_ptr() as *mut __m256i, q);
                    }
                    for (g, x) in got.iter().zip(v) {
                        let want = crate::quant::quantize_scaled(x, qmax) as i32;
                        assert_eq!(*g, want, "{x:e} ({:#x}), qmax {qmax}", x.to_bits());
                    }
                    bits += 8;
                }
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

    #[test]
    fn store_requant_matches_requant_store_bit_for_bit() {
        let mut rng = Rng::new(17);
        let acts = [
            Activation::None,
            Activation::ReLU,
            Activation::LeakyReLU(0.25),
            Activation::Clip {
                min: -3.0,
                max: 40.0,
            },
            Activation::Sigmoid,
        ];
        // Scales that put results on .5 boundaries, random ones, and NaN / inf producers.
        let scales = [0.5f32, 0.25, 1.0, 0.013, 3.3, f32::INFINITY, 0.0];
        let biases = [0.0f32, -0.5, 0.5, 7.25, -100.0, f32::NAN];
        for round in 0..600 {
            let n = rng.range(0, 40) as usize;
            let accs: Vec<i32> = (0..n)
                .map(|_| match rng.range(0, 4) {
                    0 => [0, 1, -1, i32::MAX, i32::MIN, 255, -255][rng.range(0, 6) as usize],
                    1 => rng.range(-300, 300) as i32,
                    _ => rng.range(-2_000_000, 2_000_000) as i32,
                })
                .collect();
            let scale_in = [scales[rng.range(0, 6) as usize], rng.uniform(0.0, 0.1)];
            let bias = [biases[rng.range(0, 5) as usize], rng.uniform(-2.0, 2.0)];
            let requant = Requant {
                scale_in: &scale_in,
                bias: (round % 3 != 0).then_some(&bias[..]),
                act: acts[rng.range(0, 4) as usize],
                top_scale: [1.0, 2.0, 0.5, rng.uniform(0.5, 100.0)][rng.range(0, 3) as usize],
                qmax: [127, 63][rng.range(0, 1) as usize],
            };
            let c = rng.range(0, 1) as usize;
            let at = rng.range(0, 5) as usize;
            let len = at + n + 3;
            let (mut f_want, mut f_got) = (vec![1.5f32; len], vec![1.5f32; len]);
            requant.store(c, &accs, &mut OutBuf::F32(&mut f_want), at);
            store_requant(&requant, c, &accs, &mut OutBuf::F32(&mut f_got), at);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&f_got), bits(&f_want), "{requant:?} {accs:?}");
            let (mut q_want, mut q_got) = (vec![5i8; len], vec![5i8; len]);
            requant.store(c, &accs, &mut OutBuf::I8(&mut q_want), at);
            store_requant(&requant, c, &accs, &mut OutBuf::I8(&mut q_got), at);
            assert_eq!(q_got, q_want, "{requant:?} {accs:?}");
        }
    }
}
