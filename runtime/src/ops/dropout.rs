//! Dropout at inference: `0 = scale` (default 1). Scale 1 is the identity and aliases its
//! input; any other scale multiplies in place.

use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::LayerResult;
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Dropout {
    pub scale: f32,
}

impl Dropout {
    pub fn new(pd: &ParamDict) -> LayerResult<Dropout> {
        Ok(Dropout {
            scale: pd.float(0, 1.0)?,
        })
    }
}

impl Op for Dropout {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        if self.scale == 1.0 {
            Storage::Alias
        } else {
            Storage::InPlace
        }
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        for_each_chunk(ctx.pool, x.data, &|part| {
            part.iter_mut().for_each(|v| *v *= self.scale)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{float, params, run};

    #[test]
    fn identity_aliases_and_scale_multiplies() {
        let id = Dropout::new(&ParamDict::new()).unwrap();
        assert_eq!(id.storage(), Storage::Alias);
        let op = Dropout::new(&params(&[(0, float(0.5))])).unwrap();
        assert_eq!(op.storage(), Storage::InPlace);
        let out = run(&op, &[(Shape::d3(1, 1, 2), vec![2.0, -4.0])]).unwrap();
        assert_eq!(out[0].1, vec![1.0, -2.0]);
    }
}
