//! HardSwish, in place: `0 = alpha` (default 0.2), `1 = beta` (default 0.5).
//! `x < -beta/alpha ? 0 : x > (1-beta)/alpha ? x : x * (x * alpha + beta)`, the fused
//! activation's formula ([`Activation::HardSwish`]). Hot in MobileNetV3 / YOLO: the loop is
//! selects only, so it vectorises.

use super::activation::Activation;
use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct HardSwish {
    pub alpha: f32,
    pub beta: f32,
}

impl HardSwish {
    pub fn new(pd: &ParamDict) -> LayerResult<HardSwish> {
        let (alpha, beta) = (pd.float(0, 0.2)?, pd.float(1, 0.5)?);
        if !(alpha.is_finite() && alpha != 0.0 && beta.is_finite()) {
            return Err(invalid(format!(
                "hardswish needs a finite non-zero alpha and a finite beta, got {alpha}, {beta}"
            )));
        }
        Ok(HardSwish { alpha, beta })
    }
}

impl Op for HardSwish {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let act = Activation::HardSwish {
            alpha: self.alpha,
            beta: self.beta,
        };
        for_each_chunk(ctx.pool, x.data, &|part| act.apply_slice(part))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, float, params, run, run_threads};
    use crate::rng::Rng;

    #[test]
    fn known_values_default_and_custom() {
        let op = HardSwish::new(&ParamDict::new()).unwrap();
        let xs = vec![-3.0, -2.5, -1.0, 0.0, 1.0, 2.5, 4.0];
        let out = run(&op, &[(Shape::d1(7), xs)]).unwrap();
        assert_close(&out[0].1, &[0.0, 0.0, -0.3, 0.0, 0.7, 2.5, 4.0], 1e-6);
        // PyTorch's hardswish: alpha 1/6, beta 0.5 (bounds -3, 3).
        let op = HardSwish::new(&params(&[(0, float(1.0 / 6.0))])).unwrap();
        let out = run(&op, &[(Shape::d1(3), vec![-4.0, 1.5, 3.5])]).unwrap();
        assert_close(&out[0].1, &[0.0, 1.125, 3.5], 1e-6);
    }

    #[test]
    fn vector_loop_matches_scalar_formula() {
        let op = HardSwish::new(&params(&[(0, float(0.25)), (1, float(0.4))])).unwrap();
        let act = Activation::HardSwish {
            alpha: 0.25,
            beta: 0.4,
        };
        let xs = Rng::new(5).vec(40_000, -6.0, 6.0);
        let want: Vec<f32> = xs.iter().map(|&x| act.apply(x)).collect();
        let got = run_threads(&op, &[(Shape::d3(100, 40, 10), xs)], 2).unwrap();
        assert_eq!(got[0].1, want);
    }

    #[test]
    fn bad_params() {
        assert!(HardSwish::new(&params(&[(0, float(0.0))])).is_err());
        assert!(HardSwish::new(&params(&[(1, float(f32::NAN))])).is_err());
    }
}
