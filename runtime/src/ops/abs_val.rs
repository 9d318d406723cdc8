//! AbsVal, in place: `x < 0 ? -x : x` (ncnn's comparison: -0.0 stays -0.0). No params.

use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::LayerResult;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct AbsVal;

impl Op for AbsVal {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        for_each_chunk(ctx.pool, x.data, &|part| {
            part.iter_mut()
                .for_each(|v| *v = if *v < 0.0 { -*v } else { *v })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::run;

    #[test]
    fn known_values() {
        let out = run(
            &AbsVal,
            &[(Shape::d4(1, 1, 2, 2), vec![-1.5, 2.0, 0.0, -3.0])],
        )
        .unwrap();
        assert_eq!(out[0].1, vec![1.5, 2.0, 0.0, 3.0]);
        assert!(AbsVal.output_shapes(&[]).is_err());
    }
}
