//! Erf, in place: the error function `erf(x)`, evaluated in f64 (see [`erf`]). No params.

use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::LayerResult;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Erf;

impl Op for Erf {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        for_each_chunk(ctx.pool, x.data, &|part| {
            part.iter_mut().for_each(|v| *v = erf(*v as f64) as f32)
        })
    }
}

/// The error function in f64: a positive-term series below |x| = 3, else `1 - erfc(|x|)`.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a < 3.0 {
        erf_series(a)
    } else {
        1.0 - erfc_tail(a)
    };
    r.copysign(x)
}

/// The complementary error function `1 - erf(x)` in f64, without cancellation in the tail.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x.abs() < 3.0 {
        1.0 - erf(x)
    } else if x > 0.0 {
        erfc_tail(x)
    } else {
        2.0 - erfc_tail(-x)
    }
}

/// erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)), for 0 <= x < 3: every
/// term is positive (no cancellation) and the terms shrink once 2n+3 > 2x^2.
fn erf_series(x: f64) -> f64 {
    let x2 = x * x;
    let mut term = x;
    let mut sum = x;
    let mut k = 1.0;
    while term > sum * 1e-17 {
        k += 2.0;
        term *= 2.0 * x2 / k;
        sum += term;
    }
    sum * (-x2).exp() * std::f64::consts::FRAC_2_SQRT_PI
}

/// erfc(x) for x >= 3 by its continued fraction
/// `exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))`,
/// evaluated from the back (60 levels are exact to f64 rounding from x = 3 on).
fn erfc_tail(x: f64) -> f64 {
    let mut f = x;
    for n in (1..=60).rev() {
        f = x + (n as f64 * 0.5) / f;
    }
    (-x * x).exp() / (f * std::f64::consts::PI.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, run};

    #[test]
    fn known_values() {
        let xs = [0.0, 0.5, -1.0, 2.0, 3.5, -6.0, 1e-3];
        let want = [
            0.0,
            0.520_499_9,
            -0.842_700_8,
            0.995_322_3,
            0.999_999_3,
            -1.0,
            1.128_379e-3,
        ];
        let out = run(&Erf, &[(Shape::d1(7), xs.to_vec())]).unwrap();
        assert_close(&out[0].1, &want, 1e-6);
    }

    #[test]
    fn erf_and_erfc_agree_with_tables() {
        // erfc in the tail keeps its relative precision.
        let cases = [
            (0.1, 0.112_462_916_018_284_9),
            (1.5, 0.966_105_146_475_310_7),
            (2.9, 0.999_958_902_121_900_9),
        ];
        for (x, want) in cases {
            assert!((erf(x) - want).abs() < 1e-13, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + want).abs() < 1e-13);
        }
        let tails = [
            (3.0, 2.209_049_699_858_544e-5),
            (4.0, 1.541_725_790_028_002e-8),
            (6.0, 2.151_973_671_249_891_3e-17),
        ];
        for (x, want) in tails {
            assert!(
                ((erfc(x) - want) / want).abs() < 1e-10,
                "erfc({x}) = {}",
                erfc(x)
            );
            assert!((erfc(-x) - (2.0 - want)).abs() < 1e-15);
        }
        assert_eq!(erfc(30.0), 0.0);
        assert!(erf(f64::NAN).is_nan());
    }
}
