//! Swish (SiLU), in place: `x / (1 + exp(-x))`. No params.
//!
//! Hot in YOLO models, so `forward_inplace` evaluates exp with [`exp_fast`], which the compiler
//! vectorises (a libm `expf` call per element does not); [`swish_ref`] is the plain formula it
//! is tested against (within 3e-7 relative).

use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::LayerResult;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Swish;

/// The reference formula.
pub fn swish_ref(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// exp(x) in plain f32 arithmetic (no calls, no branches), within 1e-7 relative of the exact
/// value: x is clamped to [-87.34, 88.38] (the results stay normal floats), split as
/// `n ln2 + r` with `n = round(x / ln2)` and |r| <= ln2 / 2, and exp(r) is a degree-7
/// polynomial (Cephes' expf coefficients); 2^n is built in the exponent bits.
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    // ln 2 in two parts: n * LN2_HI is exact for the n that occur.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = if x < -87.336_55 { -87.336_55 } else { x };
    let x = if x > 88.376_26 { 88.376_26 } else { x };
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let n_int = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits((n_int.wrapping_add(127) << 23) as u32)
}

impl Op for Swish {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        for_each_chunk(ctx.pool, x.data, &|part| {
            part.iter_mut()
                .for_each(|v| *v = *v / (1.0 + exp_fast(-*v)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, run, run_threads};
    use crate::rng::Rng;

    #[test]
    fn known_values() {
        let out = run(
            &Swish,
            &[(Shape::d1(5), vec![0.0, 1.0, -1.0, 100.0, -100.0])],
        )
        .unwrap();
        assert_close(
            &out[0].1,
            &[0.0, 0.731_058_6, -0.268_941_4, 100.0, 0.0],
            1e-6,
        );
        assert!(Swish.output_shapes(&[]).is_err());
    }

    #[test]
    fn exp_fast_matches_exp() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 + i as f32 * (175.0 / 200_000.0);
            let want = (x as f64).exp();
            worst = worst.max(((exp_fast(x) as f64 - want) / want).abs());
        }
        assert!(worst < 1.5e-7, "worst relative error {worst:e}");
        assert_eq!(exp_fast(0.0), 1.0);
        assert_eq!(exp_fast(-1000.0), exp_fast(-87.336_55));
        assert!(exp_fast(1000.0).is_finite());
        assert!(exp_fast(f32::NAN).is_nan());
    }

    #[test]
    fn fast_path_matches_reference() {
        let mut xs = Rng::new(9).vec(50_000, -30.0, 30.0);
        xs.extend([0.0, -0.0, 87.0, -87.0, 95.0, -95.0, 1e-8, -1e-8]);
        let want: Vec<f32> = xs.iter().map(|&x| swish_ref(x)).collect();
        let got = run_threads(&Swish, &[(Shape::d1(xs.len()), xs)], 2).unwrap();
        for (g, w) in got[0].1.iter().zip(&want) {
            // Below x = -88 exp(-x) is clamped: a result of ~1e-36 instead of 0.
            assert!((g - w).abs() <= 3e-7 * w.abs() + 1e-35, "got {g}, want {w}");
        }
    }
}
