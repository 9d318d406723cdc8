//! Swish (SiLU), in place: `x / (1 + exp(-x))`. No params.

use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::LayerResult;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Swish;

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
            part.iter_mut().for_each(|v| *v = *v / (1.0 + (-*v).exp()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, run};

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
    }
}
