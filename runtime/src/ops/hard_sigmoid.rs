//! HardSigmoid, in place: `0 = alpha` (default 0.2), `1 = beta` (default 0.5).
//! `x < -beta/alpha ? 0 : x > (1-beta)/alpha ? 1 : x * alpha + beta`, as selects (vectorises).

use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct HardSigmoid {
    pub alpha: f32,
    pub beta: f32,
}

impl HardSigmoid {
    pub fn new(pd: &ParamDict) -> LayerResult<HardSigmoid> {
        let (alpha, beta) = (pd.float(0, 0.2)?, pd.float(1, 0.5)?);
        if !(alpha.is_finite() && alpha != 0.0 && beta.is_finite()) {
            return Err(invalid(format!(
                "hardsigmoid needs a finite non-zero alpha and a finite beta, got {alpha}, {beta}"
            )));
        }
        Ok(HardSigmoid { alpha, beta })
    }
}

impl Op for HardSigmoid {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let (alpha, beta) = (self.alpha, self.beta);
        let lower = -beta / alpha;
        let upper = 1.0 / alpha + lower;
        for_each_chunk(ctx.pool, x.data, &|part| {
            for v in part.iter_mut() {
                let x = *v;
                let y = if x > upper { 1.0 } else { x * alpha + beta };
                *v = if x < lower { 0.0 } else { y };
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, float, params, run};

    #[test]
    fn known_values() {
        let op = HardSigmoid::new(&ParamDict::new()).unwrap();
        let out = run(
            &op,
            &[(Shape::d2(3, 2), vec![-3.0, -2.5, -1.0, 0.0, 2.0, 3.0])],
        )
        .unwrap();
        assert_close(&out[0].1, &[0.0, 0.0, 0.3, 0.5, 0.9, 1.0], 1e-6);
        let op = HardSigmoid::new(&params(&[(0, float(0.5)), (1, float(0.0))])).unwrap();
        let out = run(&op, &[(Shape::d1(3), vec![-1.0, 1.0, 5.0])]).unwrap();
        assert_close(&out[0].1, &[0.0, 0.5, 1.0], 1e-6);
    }

    #[test]
    fn bad_params() {
        assert!(HardSigmoid::new(&params(&[(0, float(0.0))])).is_err());
        assert!(HardSigmoid::new(&params(&[(1, float(f32::INFINITY))])).is_err());
    }
}
