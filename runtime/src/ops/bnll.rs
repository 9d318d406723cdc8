//! BNLL, in place: the softplus `ln(1 + exp(x))`, as ncnn evaluates it
//! (`x > 0 ? x + ln(1 + exp(-x)) : ln(1 + exp(x))`). No params.

use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::LayerResult;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Bnll;

impl Op for Bnll {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        for_each_chunk(ctx.pool, x.data, &|part| {
            for v in part.iter_mut() {
                let x = *v;
                *v = if x > 0.0 {
                    x + (1.0 + (-x).exp()).ln()
                } else {
                    (1.0 + x.exp()).ln()
                };
            }
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
            &Bnll,
            &[(Shape::d1(5), vec![0.0, 1.0, -1.0, 100.0, -100.0])],
        )
        .unwrap();
        let want = [std::f32::consts::LN_2, 1.313_261_7, 0.313_261_7, 100.0, 0.0];
        assert_close(&out[0].1, &want, 1e-6);
    }
}
