//! Noop: passes its input through unchanged (aliased, nothing runs).

use super::{expect_inputs, Op, Storage};
use crate::error::LayerResult;
use crate::tensor::Shape;

#[derive(Debug)]
pub struct Noop;

impl Op for Noop {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        // Outputs alias the first input only, so a multi-blob Noop cannot be expressed.
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::Alias
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_shape_through() {
        let s = Shape::d4(2, 3, 4, 5);
        assert_eq!(Noop.output_shapes(&[s]).unwrap(), vec![s]);
        assert_eq!(Noop.storage(), Storage::Alias);
        assert!(Noop.output_shapes(&[s, s]).is_err());
    }
}
