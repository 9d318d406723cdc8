//! Power, in place: `0 = power` (default 1), `1 = scale` (default 1), `2 = shift` (default 0).
//! `(shift + x * scale) ^ power`.

use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Power {
    pub power: f32,
    pub scale: f32,
    pub shift: f32,
}

impl Power {
    pub fn new(pd: &ParamDict) -> LayerResult<Power> {
        let (power, scale, shift) = (pd.float(0, 1.0)?, pd.float(1, 1.0)?, pd.float(2, 0.0)?);
        if !(power.is_finite() && scale.is_finite() && shift.is_finite()) {
            return Err(invalid(format!(
                "power, scale and shift must be finite, got {power}, {scale}, {shift}"
            )));
        }
        Ok(Power {
            power,
            scale,
            shift,
        })
    }
}

impl Op for Power {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let Power {
            power,
            scale,
            shift,
        } = *self;
        for_each_chunk(ctx.pool, x.data, &|part| {
            part.iter_mut()
                .for_each(|v| *v = (shift + *v * scale).powf(power))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, float, params, run};

    #[test]
    fn known_values() {
        let op = Power::new(&ParamDict::new()).unwrap();
        let out = run(&op, &[(Shape::d1(2), vec![-1.5, 2.0])]).unwrap();
        assert_eq!(out[0].1, vec![-1.5, 2.0]);
        let op = Power::new(&params(&[
            (0, float(2.0)),
            (1, float(0.5)),
            (2, float(1.0)),
        ]))
        .unwrap();
        let out = run(&op, &[(Shape::d1(3), vec![-2.0, 0.0, 2.0])]).unwrap();
        assert_close(&out[0].1, &[0.0, 1.0, 4.0], 1e-6);
        let op = Power::new(&params(&[(0, float(0.5))])).unwrap();
        let out = run(&op, &[(Shape::d1(2), vec![9.0, -1.0])]).unwrap();
        assert_eq!(out[0].1[0], 3.0);
        assert!(out[0].1[1].is_nan());
    }

    #[test]
    fn bad_params() {
        assert!(Power::new(&params(&[(0, float(f32::NAN))])).is_err());
        assert!(Power::new(&params(&[(2, float(f32::INFINITY))])).is_err());
    }
}
