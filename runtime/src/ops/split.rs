//! Split: fans one blob out to several consumers. Every output aliases the input.

use super::{expect_inputs, Op, Storage};
use crate::error::LayerResult;
use crate::tensor::Shape;

#[derive(Debug)]
pub struct Split;

impl Op for Split {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        // The planner calls this with the number of tops known from the graph.
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::Alias
    }
}
