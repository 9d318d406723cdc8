//! Flatten: a 1-D blob of all w*h*d*c elements in storage order. With dense storage this is
//! a reinterpretation of the input, so the output aliases it.

use super::{expect_inputs, Op, Storage};
use crate::error::LayerResult;
use crate::tensor::Shape;

#[derive(Debug)]
pub struct Flatten;

impl Op for Flatten {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![Shape::d1(inputs[0].len())])
    }
    fn storage(&self) -> Storage {
        Storage::Alias
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{iota, run};

    #[test]
    fn flattens_every_rank() {
        assert_eq!(
            Flatten.output_shapes(&[Shape::d3(12, 19, 19)]).unwrap(),
            vec![Shape::d1(4332)]
        );
        assert_eq!(
            Flatten.output_shapes(&[Shape::d4(2, 3, 4, 5)]).unwrap(),
            vec![Shape::d1(120)]
        );
        assert_eq!(
            Flatten.output_shapes(&[Shape::d1(7)]).unwrap(),
            vec![Shape::d1(7)]
        );
        let out = run(&Flatten, &[(Shape::d2(3, 2), iota(6))]).unwrap();
        assert_eq!(out[0], (Shape::d1(6), iota(6)));
    }
}
