//! TanH, in place: `tanh(x)`. No params.

use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::LayerResult;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct TanH;

impl Op for TanH {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        for_each_chunk(ctx.pool, x.data, &|part| {
            part.iter_mut().for_each(|v| *v = v.tanh())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, run};

    #[test]
    fn known_values() {
        let out = run(&TanH, &[(Shape::d2(2, 2), vec![0.0, 1.0, -2.0, 50.0])]).unwrap();
        assert_close(&out[0].1, &[0.0, 0.761_594_2, -0.964_027_6, 1.0], 1e-6);
        assert!(TanH.output_shapes(&[Shape::d1(1), Shape::d1(1)]).is_err());
    }
}
