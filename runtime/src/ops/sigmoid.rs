//! Sigmoid, in place: `1 / (1 + exp(-x))` (ncnn's plain layer has no input clamp, unlike the
//! fused activation).

use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::LayerResult;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Sigmoid;

impl Op for Sigmoid {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        for_each_chunk(ctx.pool, x.data, &|part| {
            part.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, run};

    #[test]
    fn known_values_and_extremes() {
        let out = run(
            &Sigmoid,
            &[(Shape::d1(5), vec![0.0, 2.0, -2.0, 100.0, -100.0])],
        )
        .unwrap();
        let e2 = 1.0 / (1.0 + (-2.0f32).exp());
        assert_close(&out[0].1, &[0.5, e2, 1.0 - e2, 1.0, 0.0], 1e-6);
    }

    #[test]
    fn rejects_two_inputs() {
        let s = Shape::d1(1);
        assert!(Sigmoid.output_shapes(&[s, s]).is_err());
    }
}
