//! Log, in place: `0 = base` (default -1: e), `1 = scale` (default 1), `2 = shift` (default 0).
//! `base == -1 ? ln(shift + x * scale) : ln(shift + x * scale) * (1 / ln(base))`; any other
//! base must be positive and not 1.

use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Log {
    /// None: e.
    pub base: Option<f32>,
    pub scale: f32,
    pub shift: f32,
}

impl Log {
    pub fn new(pd: &ParamDict) -> LayerResult<Log> {
        let (base, scale, shift) = (pd.float(0, -1.0)?, pd.float(1, 1.0)?, pd.float(2, 0.0)?);
        let base_ok = base == -1.0 || (base > 0.0 && base != 1.0 && base.is_finite());
        if !(base_ok && scale.is_finite() && shift.is_finite()) {
            return Err(invalid(format!(
                "log needs base -1 or > 0 and != 1, finite scale, shift; got {base}, {scale}, {shift}"
            )));
        }
        let base = (base != -1.0).then_some(base);
        Ok(Log { base, scale, shift })
    }
}

impl Op for Log {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let (scale, shift) = (self.scale, self.shift);
        let inv = self.base.map_or(1.0, |b| 1.0 / b.ln());
        match self.base {
            None => for_each_chunk(ctx.pool, x.data, &|part| {
                part.iter_mut().for_each(|v| *v = (shift + *v * scale).ln())
            }),
            Some(_) => for_each_chunk(ctx.pool, x.data, &|part| {
                part.iter_mut()
                    .for_each(|v| *v = (shift + *v * scale).ln() * inv)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, float, params, run};

    #[test]
    fn natural_and_other_bases() {
        let op = Log::new(&ParamDict::new()).unwrap();
        let out = run(&op, &[(Shape::d1(3), vec![1.0, std::f32::consts::E, 0.0])]).unwrap();
        assert_close(&out[0].1[..2], &[0.0, 1.0], 1e-6);
        assert_eq!(out[0].1[2], f32::NEG_INFINITY);
        let op = Log::new(&params(&[
            (0, float(10.0)),
            (1, float(2.0)),
            (2, float(1.0)),
        ]))
        .unwrap();
        let out = run(&op, &[(Shape::d1(2), vec![4.5, 49.5])]).unwrap();
        assert_close(&out[0].1, &[1.0, 2.0], 1e-6);
    }

    #[test]
    fn bad_params() {
        assert!(Log::new(&params(&[(0, float(1.0))])).is_err());
        assert!(Log::new(&params(&[(0, float(-3.0))])).is_err());
        assert!(Log::new(&params(&[(2, float(f32::NAN))])).is_err());
    }
}
