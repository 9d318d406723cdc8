//! Exp, in place: `0 = base` (default -1: e), `1 = scale` (default 1), `2 = shift` (default 0).
//! `base == -1 ? exp(shift + x * scale) : base ^ (shift + x * scale)`; any other base must be
//! positive.

use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Exp {
    /// None: e.
    pub base: Option<f32>,
    pub scale: f32,
    pub shift: f32,
}

impl Exp {
    pub fn new(pd: &ParamDict) -> LayerResult<Exp> {
        let (base, scale, shift) = (pd.float(0, -1.0)?, pd.float(1, 1.0)?, pd.float(2, 0.0)?);
        let base_ok = base == -1.0 || (base > 0.0 && base.is_finite());
        if !(base_ok && scale.is_finite() && shift.is_finite()) {
            return Err(invalid(format!(
                "exp needs base -1 or > 0 and finite scale, shift; got {base}, {scale}, {shift}"
            )));
        }
        let base = (base != -1.0).then_some(base);
        Ok(Exp { base, scale, shift })
    }
}

impl Op for Exp {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let (scale, shift) = (self.scale, self.shift);
        match self.base {
            None => for_each_chunk(ctx.pool, x.data, &|part| {
                part.iter_mut()
                    .for_each(|v| *v = (shift + *v * scale).exp())
            }),
            Some(base) => for_each_chunk(ctx.pool, x.data, &|part| {
                part.iter_mut()
                    .for_each(|v| *v = base.powf(shift + *v * scale))
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
        let op = Exp::new(&ParamDict::new()).unwrap();
        let out = run(&op, &[(Shape::d1(3), vec![0.0, 1.0, -1.0])]).unwrap();
        assert_close(&out[0].1, &[1.0, std::f32::consts::E, 0.367_879_44], 1e-6);
        let op = Exp::new(&params(&[
            (0, float(2.0)),
            (1, float(2.0)),
            (2, float(1.0)),
        ]))
        .unwrap();
        let out = run(&op, &[(Shape::d1(3), vec![0.0, 1.0, -1.0])]).unwrap();
        assert_close(&out[0].1, &[2.0, 8.0, 0.5], 1e-6);
    }

    #[test]
    fn bad_params() {
        assert!(Exp::new(&params(&[(0, float(-2.0))])).is_err());
        assert!(Exp::new(&params(&[(0, float(0.0))])).is_err());
        assert!(Exp::new(&params(&[(1, float(f32::NAN))])).is_err());
    }
}
