//! Input: declares a graph input. Its shape comes from params 0/1/11/2 (w/h/d/c) or from the
//! load options; the caller writes the data before `run`.

use super::{Op, Storage};
use crate::error::LayerResult;
use crate::model::paramdict::ParamDict;
use crate::tensor::Shape;

#[derive(Debug)]
pub struct Input {
    /// Shape declared in the param file, if any.
    pub declared: Option<Shape>,
}

impl Input {
    pub fn new(pd: &ParamDict) -> LayerResult<Input> {
        let (w, h, d, c) = (
            pd.usize(0, 0)?,
            pd.usize(1, 0)?,
            pd.usize(11, 0)?,
            pd.usize(2, 0)?,
        );
        let declared = match (w, h, d, c) {
            (0, ..) => None,
            (w, 0, _, _) => Some(Shape::checked(1, w, 1, 1, 1)?),
            (w, h, _, 0) => Some(Shape::checked(2, w, h, 1, 1)?),
            (w, h, 0, c) => Some(Shape::checked(3, w, h, 1, c)?),
            (w, h, d, c) => Some(Shape::checked(4, w, h, d, c)?),
        };
        Ok(Input { declared })
    }
}

impl Op for Input {
    fn output_shapes(&self, _inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        // The planner supplies input shapes itself; this is only reached when none is known.
        self.declared.map(|s| vec![s]).ok_or_else(|| {
            crate::error::invalid("input shape unknown: give it in the load options")
        })
    }

    fn storage(&self) -> Storage {
        Storage::New
    }

    fn forward(
        &self,
        _: &[crate::tensor::Tensor],
        _: &mut [crate::tensor::TensorMut],
        _: &mut super::Ctx,
    ) -> LayerResult<()> {
        Ok(())
    }
}
