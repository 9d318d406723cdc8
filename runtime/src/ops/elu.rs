//! ELU, in place: `0 = alpha` (default 0.1). `x < 0 ? alpha * (exp(x) - 1) : x`.

use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Elu {
    pub alpha: f32,
}

impl Elu {
    pub fn new(pd: &ParamDict) -> LayerResult<Elu> {
        let alpha = pd.float(0, 0.1)?;
        if !alpha.is_finite() {
            return Err(invalid(format!("elu alpha must be finite, got {alpha}")));
        }
        Ok(Elu { alpha })
    }
}

impl Op for Elu {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let alpha = self.alpha;
        for_each_chunk(ctx.pool, x.data, &|part| {
            part.iter_mut().for_each(|v| {
                *v = if *v < 0.0 {
                    alpha * (v.exp() - 1.0)
                } else {
                    *v
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
        let op = Elu::new(&ParamDict::new()).unwrap();
        let out = run(&op, &[(Shape::d1(4), vec![-1.0, 0.0, 2.0, -100.0])]).unwrap();
        assert_close(&out[0].1, &[-0.063_212_06, 0.0, 2.0, -0.1], 1e-6);
        let op = Elu::new(&params(&[(0, float(1.0))])).unwrap();
        let out = run(&op, &[(Shape::d1(1), vec![-2.0])]).unwrap();
        assert_close(&out[0].1, &[-0.864_664_7], 1e-6);
        assert!(Elu::new(&params(&[(0, float(f32::NAN))])).is_err());
    }
}
