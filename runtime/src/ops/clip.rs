//! Clip, in place: `0 = min` (default -FLT_MAX), `1 = max` (default FLT_MAX).

use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Clip {
    pub min: f32,
    pub max: f32,
}

impl Clip {
    pub fn new(pd: &ParamDict) -> LayerResult<Clip> {
        let min = pd.float(0, -f32::MAX)?;
        let max = pd.float(1, f32::MAX)?;
        if min.is_nan() || max.is_nan() {
            return Err(invalid("clip bounds must be numbers"));
        }
        Ok(Clip { min, max })
    }
}

impl Op for Clip {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        // Two comparisons in ncnn's order (lower bound first), so NaN passes through.
        for_each_chunk(ctx.pool, x.data, &|part| {
            // Selects on every element (not conditional stores): vectorises.
            for v in part.iter_mut() {
                let lo = if *v < self.min { self.min } else { *v };
                *v = if lo > self.max { self.max } else { lo };
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{float, params, run};

    #[test]
    fn clamps_to_bounds() {
        let op = Clip::new(&params(&[(0, float(-1.0)), (1, float(6.0))])).unwrap();
        let out = run(
            &op,
            &[(Shape::d2(3, 2), vec![-5.0, -1.0, 0.5, 6.0, 7.0, f32::NAN])],
        )
        .unwrap();
        assert_eq!(&out[0].1[..5], &[-1.0, -1.0, 0.5, 6.0, 6.0]);
        assert!(out[0].1[5].is_nan());
    }

    #[test]
    fn defaults_are_unbounded() {
        let op = Clip::new(&ParamDict::new()).unwrap();
        let out = run(&op, &[(Shape::d1(2), vec![-1e30, 1e30])]).unwrap();
        assert_eq!(out[0].1, vec![-1e30, 1e30]);
    }
}
