//! SELU, in place: `0 = alpha` (default 1.67326324), `1 = lambda` (default 1.050700987).
//! `x < 0 ? (exp(x) - 1) * alpha * lambda : x * lambda`.

use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Selu {
    pub alpha: f32,
    pub lambda: f32,
}

impl Selu {
    pub fn new(pd: &ParamDict) -> LayerResult<Selu> {
        let (alpha, lambda) = (pd.float(0, 1.673_263_2)?, pd.float(1, 1.050_701)?);
        if !(alpha.is_finite() && lambda.is_finite()) {
            return Err(invalid(format!(
                "selu alpha and lambda must be finite, got {alpha}, {lambda}"
            )));
        }
        Ok(Selu { alpha, lambda })
    }
}

impl Op for Selu {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let lambda = self.lambda;
        let alpha_lambda = self.alpha * self.lambda;
        for_each_chunk(ctx.pool, x.data, &|part| {
            part.iter_mut().for_each(|v| {
                *v = if *v < 0.0 {
                    (v.exp() - 1.0) * alpha_lambda
                } else {
                    *v * lambda
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, float, params, run};

    #[test]
    fn known_values() {
        let op = Selu::new(&ParamDict::new()).unwrap();
        let out = run(&op, &[(Shape::d1(3), vec![-1.0, 0.0, 2.0])]).unwrap();
        assert_close(&out[0].1, &[-1.111_330_7, 0.0, 2.101_402], 1e-6);
        let op = Selu::new(&params(&[(0, float(2.0)), (1, float(0.5))])).unwrap();
        let out = run(&op, &[(Shape::d1(2), vec![-100.0, 4.0])]).unwrap();
        assert_close(&out[0].1, &[-1.0, 2.0], 1e-6);
        assert!(Selu::new(&params(&[(1, float(f32::INFINITY))])).is_err());
    }
}
