//! GELU, in place. `0 = fast_gelu` (default 0):
//! - 0: `0.5 * x * erfc(-x / sqrt(2))` (the exact form);
//! - 1: `0.5 * x * (1 + tanh(0.79788452 * (x + 0.044715 * x^3)))` (the tanh approximation).
//!
//! GELU is hot in transformers: the exact form runs on [`erfc_fast`] (a rational Chebyshev
//! fit of erfc, relative error 1.2e-7, in plain f32 arithmetic that vectorises), tested against
//! [`gelu_ref`], which takes erfc in f64 from [`super::erf`] (within 5e-7 relative).

use super::elementwise::for_each_chunk;
use super::erf::erfc;
use super::swish::exp_fast;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Gelu {
    pub fast: bool,
}

impl Gelu {
    pub fn new(pd: &ParamDict) -> LayerResult<Gelu> {
        let fast = match pd.int(0, 0)? {
            0 => false,
            1 => true,
            v => return Err(invalid(format!("gelu fast_gelu must be 0 or 1, got {v}"))),
        };
        Ok(Gelu { fast })
    }
}

/// The exact form with erfc evaluated in f64.
pub fn gelu_ref(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * erfc(-x * std::f64::consts::FRAC_1_SQRT_2)) as f32
}

/// erfc(x) = t exp(-x^2 + P(t)) with t = 1 / (1 + |x| / 2) and P a degree-9 polynomial
/// (the Chebyshev fit of Numerical Recipes' `erfcc`, relative error below 1.2e-7), mirrored
/// as 2 - erfc(-x) for x < 0. In f32 the relative error grows in the tail like x^2 * 1e-7
/// (the rounding of x and of x^2 moves exp(-x^2) that much: ncnn's f32 evaluation shares it);
/// results below ~1e-38 (x > 9.3) are not accurate.
#[inline(always)]
pub fn erfc_fast(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = 0.170_872_77;
    let p = p * t - 0.822_152_23;
    let p = p * t + 1.488_515_9;
    let p = p * t - 1.135_204;
    let p = p * t + 0.278_868_07;
    let p = p * t - 0.186_288_06;
    let p = p * t + 0.096_784_18;
    let p = p * t + 0.374_091_96;
    let p = p * t + 1.000_023_7;
    let p = p * t - 1.265_512_2;
    let r = t * exp_fast(p - z * z);
    if x < 0.0 {
        2.0 - r
    } else {
        r
    }
}

impl Op for Gelu {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        if self.fast {
            for_each_chunk(ctx.pool, x.data, &|part| {
                for v in part.iter_mut() {
                    let x = *v;
                    *v = 0.5 * x * (1.0 + (0.797_884_5 * (x + 0.044_715 * x * x * x)).tanh());
                }
            })
        } else {
            for_each_chunk(ctx.pool, x.data, &|part| {
                for v in part.iter_mut() {
                    let x = *v;
                    *v = 0.5 * x * erfc_fast(-x * std::f32::consts::FRAC_1_SQRT_2);
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, int, params, run, run_threads};
    use crate::rng::Rng;

    #[test]
    fn both_forms_by_hand() {
        let xs = vec![0.0, 1.0, -1.0, 3.0, -3.0, -10.0];
        let exact = Gelu::new(&ParamDict::new()).unwrap();
        let out = run(&exact, &[(Shape::d1(6), xs.clone())]).unwrap();
        let want = [
            0.0,
            0.841_344_7,
            -0.158_655_3,
            2.995_950_4,
            -4.049_6e-3,
            -7.62e-23,
        ];
        assert_close(&out[0].1, &want, 1e-6);
        let fast = Gelu::new(&params(&[(0, int(1))])).unwrap();
        let out = run(&fast, &[(Shape::d1(6), xs)]).unwrap();
        let want = [0.0, 0.841_192, -0.158_808, 2.996_362_6, -3.637_393e-3, 0.0];
        assert_close(&out[0].1, &want, 1e-6);
    }

    #[test]
    fn fast_exact_form_matches_reference() {
        let op = Gelu::new(&ParamDict::new()).unwrap();
        let mut xs = Rng::new(4).vec(60_000, -15.0, 15.0);
        xs.extend([0.0, -0.0, 1e-6, -1e-6, 30.0, -30.0, 200.0, -200.0]);
        let want: Vec<f32> = xs.iter().map(|&x| gelu_ref(x)).collect();
        let got = run_threads(&op, &[(Shape::d1(xs.len()), xs.clone())], 2).unwrap();
        for ((g, w), x) in got[0].1.iter().zip(&want).zip(&xs) {
            // The tail's conditioning (see erfc_fast); below x = -13 the result is ~1e-38
            // or less on both sides.
            let tol = 5e-7 + 1.5e-7 * x * x;
            assert!(
                (g - w).abs() <= tol * w.abs() + 1e-37,
                "x {x}: got {g}, want {w}"
            );
        }
        let mut worst = 0.0f64;
        for i in -40_000..=40_000 {
            let x = i as f32 * 1e-4;
            let want = erfc(x as f64);
            let err = ((erfc_fast(x) as f64 - want) / want).abs();
            worst = worst.max(err / (1.0 + 2.0 * (x * x) as f64));
        }
        assert!(
            worst < 4e-7,
            "erfc_fast worst scaled relative error {worst:e}"
        );
    }

    #[test]
    fn bad_params() {
        assert!(Gelu::new(&params(&[(0, int(2))])).is_err());
    }
}
