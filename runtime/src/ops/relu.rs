//! ReLU with optional negative slope (leaky ReLU), in place.

use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::LayerResult;
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct ReLU {
    pub slope: f32,
}

impl ReLU {
    pub fn new(pd: &ParamDict) -> LayerResult<ReLU> {
        Ok(ReLU {
            slope: pd.float(0, 0.0)?,
        })
    }
}

impl Op for ReLU {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, _ctx: &mut Ctx) -> LayerResult<()> {
        if self.slope == 0.0 {
            // `< 0` rather than `max` keeps NaN as ncnn does.
            x.data.iter_mut().for_each(|v| {
                if *v < 0.0 {
                    *v = 0.0
                }
            });
        } else {
            x.data.iter_mut().for_each(|v| {
                if *v < 0.0 {
                    *v *= self.slope
                }
            });
        }
        Ok(())
    }
}
