//! Mish, in place: `x * tanh(ln(1 + exp(x)))`, the fused activation's formula
//! ([`Activation::Mish`]; ncnn's layer cuts the softplus at |x| > 20, which changes nothing in
//! f32). No params.

use super::activation::Activation;
use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::LayerResult;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Mish;

impl Op for Mish {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        for_each_chunk(ctx.pool, x.data, &|part| Activation::Mish.apply_slice(part))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, run};

    #[test]
    fn known_values_and_extremes() {
        let xs = vec![0.0, 1.0, -1.0, 30.0, -30.0, 100.0];
        let out = run(&Mish, &[(Shape::d1(6), xs)]).unwrap();
        let want = [0.0, 0.865_098_4, -0.303_401_3, 30.0, -2.807e-12, 100.0];
        assert_close(&out[0].1, &want, 1e-6);
    }
}
