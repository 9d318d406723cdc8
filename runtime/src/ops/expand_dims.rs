//! ExpandDims: inserts size-1 axes; the output aliases the input.
//!
//! Params: `3 = axes` (int array, at most 4 entries in -4..=3): positions of the new axes in
//! the output, numpy order without a batch axis (negative counts from the back of the
//! output). The output rank is the input rank plus the number of axes and must be at most 4;
//! the axes must be distinct. No axes: the blob passes unchanged. The old flag keys
//! (`0 = expand_w`, `1 = expand_h`, `11 = expand_d`, `2 = expand_c`) are not read by current
//! ncnn and are ignored here too.

use super::squeeze::read_axes;
use super::{expect_inputs, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::Shape;

#[derive(Debug)]
pub struct ExpandDims {
    pub axes: Vec<i32>,
}

impl ExpandDims {
    pub fn new(pd: &ParamDict) -> LayerResult<ExpandDims> {
        Ok(ExpandDims {
            axes: read_axes(pd)?,
        })
    }
}

impl Op for ExpandDims {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let x = inputs[0];
        let in_dims = x.numpy_dims();
        let rank = in_dims.len() + self.axes.len();
        if rank > 4 {
            return Err(invalid(format!(
                "expanddims: {x} with {} new axes has more than 4 dimensions",
                self.axes.len()
            )));
        }
        let mut new_axis = [false; 4];
        for &a in &self.axes {
            let p = if a < 0 { a + rank as i32 } else { a };
            if !(0..rank as i32).contains(&p) || new_axis[p as usize] {
                return Err(invalid(format!(
                    "expanddims: axes {:?} are not distinct positions of a {rank}-D output",
                    self.axes
                )));
            }
            new_axis[p as usize] = true;
        }
        let mut rest = in_dims.iter();
        let out: Vec<usize> = (0..rank)
            .map(|p| {
                if new_axis[p] {
                    1
                } else {
                    *rest.next().unwrap()
                }
            })
            .collect();
        Ok(vec![Shape::from_numpy_dims(&out)?])
    }
    fn storage(&self) -> Storage {
        Storage::Alias
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::ops::harness::{int, iota, params, run};

    fn op(a: &[i32]) -> ExpandDims {
        ExpandDims::new(&params(&[(3, Value::IntArray(a.to_vec()))])).unwrap()
    }

    fn shape(a: &[i32], s: Shape) -> LayerResult<Shape> {
        op(a).output_shapes(&[s]).map(|v| v[0])
    }

    #[test]
    fn inserts_axes_at_output_positions() {
        let v = Shape::d1(5);
        assert_eq!(shape(&[0], v).unwrap(), Shape::d2(5, 1));
        assert_eq!(shape(&[1], v).unwrap(), Shape::d2(1, 5));
        assert_eq!(shape(&[-1], v).unwrap(), Shape::d2(1, 5));
        assert_eq!(shape(&[0, 2], v).unwrap(), Shape::d3(1, 5, 1));
        assert_eq!(shape(&[1, 2], v).unwrap(), Shape::d3(1, 1, 5));
        assert_eq!(shape(&[0, 1, 2], v).unwrap(), Shape::d4(5, 1, 1, 1));
        let m = Shape::d2(5, 4); // numpy [4, 5]
        assert_eq!(shape(&[0, -1], m).unwrap(), Shape::d4(1, 5, 4, 1));
        assert_eq!(shape(&[1, 2], m).unwrap(), Shape::d4(5, 1, 1, 4));
        let t = Shape::d3(5, 4, 3);
        assert_eq!(shape(&[0], t).unwrap(), Shape::d4(5, 4, 3, 1));
        assert_eq!(shape(&[3], t).unwrap(), Shape::d4(1, 5, 4, 3));
        assert_eq!(shape(&[], t).unwrap(), t);
        let out = run(&op(&[0]), &[(Shape::d2(3, 2), iota(6))]).unwrap();
        assert_eq!(out[0], (Shape::d3(3, 2, 1), iota(6)));
    }

    #[test]
    fn flags_are_ignored_like_ncnn() {
        let o = ExpandDims::new(&params(&[(0, int(1)), (2, int(1))])).unwrap();
        assert_eq!(o.output_shapes(&[Shape::d1(5)]).unwrap()[0], Shape::d1(5));
    }

    #[test]
    fn bad_axes() {
        assert!(ExpandDims::new(&params(&[(3, Value::IntArray(vec![4]))])).is_err());
        assert!(ExpandDims::new(&params(&[(3, Value::IntArray(vec![-5]))])).is_err());
        assert!(shape(&[0, 0], Shape::d1(5)).is_err());
        assert!(shape(&[2], Shape::d1(5)).is_err());
        assert!(shape(&[-3], Shape::d1(5)).is_err());
        assert!(shape(&[0, 1], Shape::d3(5, 4, 3)).is_err());
    }
}
