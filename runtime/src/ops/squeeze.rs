//! Squeeze: drops size-1 axes; the output aliases the input.
//!
//! Params, two forms: flags `0 = squeeze_w`, `1 = squeeze_h`, `11 = squeeze_d`,
//! `2 = squeeze_c` (each 0 or 1; flags of axes the blob does not have are ignored), or
//! `3 = axes` (int array, at most 4 entries in -4..=3, numpy order without a batch axis:
//! for a 3-D blob 0 is c, 1 h, 2 w; negative counts from the back). When axes are given the
//! flags are ignored. A selected axis is dropped only when its size is 1 (otherwise it stays,
//! as in ncnn); axes beyond the blob's rank are ignored. Dropping every axis leaves a 1-D blob
//! of one element.

use super::{expect_inputs, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::Shape;

#[derive(Debug)]
pub struct Squeeze {
    /// Flags form: squeeze (w, h, d, c).
    pub flags: [bool; 4],
    /// Axes form (numpy order, may be negative); empty: the flags form.
    pub axes: Vec<i32>,
}

/// Reads a 0/1 flag.
fn flag(pd: &ParamDict, key: usize, name: &str) -> LayerResult<bool> {
    match pd.int(key, 0)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(invalid(format!("{name} must be 0 or 1, got {v}"))),
    }
}

/// Reads the axes array (key 3) as ncnn checks it: at most 4 entries, each in -4..=3.
pub fn read_axes(pd: &ParamDict) -> LayerResult<Vec<i32>> {
    let axes = if pd.has(3) {
        pd.int_array(3)?
    } else {
        Vec::new()
    };
    if axes.len() > 4 {
        return Err(invalid(format!("at most 4 axes, got {}", axes.len())));
    }
    if let Some(a) = axes.iter().find(|a| !(-4..=3).contains(*a)) {
        return Err(invalid(format!("axis {a} out of range -4..=3")));
    }
    Ok(axes)
}

/// (w, h, d, c) of a shape, and the index into that array of each numpy axis.
fn numpy_axes(s: Shape) -> ([usize; 4], &'static [usize]) {
    let dims = [s.w, s.h, s.d, s.c];
    let order: &[usize] = match s.dims {
        1 => &[0],
        2 => &[1, 0],
        3 => &[3, 1, 0],
        _ => &[3, 2, 1, 0],
    };
    (dims, order)
}

impl Squeeze {
    pub fn new(pd: &ParamDict) -> LayerResult<Squeeze> {
        let flags = [
            flag(pd, 0, "squeeze_w")?,
            flag(pd, 1, "squeeze_h")?,
            flag(pd, 11, "squeeze_d")?,
            flag(pd, 2, "squeeze_c")?,
        ];
        let axes = read_axes(pd)?;
        Ok(Squeeze { flags, axes })
    }
}

impl Op for Squeeze {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let x = inputs[0];
        let (dims, order) = numpy_axes(x);
        let rank = order.len() as i32;
        // Selected (w, h, d, c) slots.
        let mut selected = [false; 4];
        if self.axes.is_empty() {
            for &slot in order {
                selected[slot] = self.flags[slot];
            }
        } else {
            for &a in &self.axes {
                let a = if a < 0 { a + rank } else { a };
                if (0..rank).contains(&a) {
                    selected[order[a as usize]] = true;
                }
            }
        }
        // Kept sizes, outermost first.
        let kept: Vec<usize> = order
            .iter()
            .filter(|&&slot| !(selected[slot] && dims[slot] == 1))
            .map(|&slot| dims[slot])
            .collect();
        let out = if kept.is_empty() {
            Shape::d1(1)
        } else {
            Shape::from_numpy_dims(&kept)?
        };
        Ok(vec![out])
    }
    fn storage(&self) -> Storage {
        Storage::Alias
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::ops::harness::{int, params};

    fn flags(w: i32, h: i32, d: i32, c: i32) -> Squeeze {
        Squeeze::new(&params(&[
            (0, int(w)),
            (1, int(h)),
            (11, int(d)),
            (2, int(c)),
        ]))
        .unwrap()
    }

    fn axes(a: &[i32]) -> Squeeze {
        Squeeze::new(&params(&[(3, Value::IntArray(a.to_vec()))])).unwrap()
    }

    fn shape(op: &Squeeze, s: Shape) -> Shape {
        op.output_shapes(&[s]).unwrap()[0]
    }

    #[test]
    fn flags_form() {
        let all = flags(1, 1, 1, 1);
        assert_eq!(shape(&all, Shape::d4(5, 1, 3, 1)), Shape::d2(5, 3));
        assert_eq!(shape(&all, Shape::d4(1, 1, 1, 2)), Shape::d1(2));
        assert_eq!(shape(&all, Shape::d3(1, 1, 1)), Shape::d1(1));
        assert_eq!(shape(&all, Shape::d1(1)), Shape::d1(1));
        // Only the flagged axes, only when 1.
        assert_eq!(
            shape(&flags(1, 0, 0, 1), Shape::d4(5, 1, 3, 1)),
            Shape::d3(5, 1, 3)
        );
        assert_eq!(
            shape(&flags(0, 0, 1, 0), Shape::d4(1, 4, 1, 1)),
            Shape::d3(1, 4, 1)
        );
        assert_eq!(
            shape(&flags(0, 1, 0, 0), Shape::d3(7, 1, 3)),
            Shape::d2(7, 3)
        );
        assert_eq!(
            shape(&flags(0, 0, 0, 0), Shape::d3(1, 1, 1)),
            Shape::d3(1, 1, 1)
        );
    }

    #[test]
    fn axes_form() {
        // numpy [1, 3, 1, 5] (c, d, h, w).
        let x = Shape::d4(5, 1, 3, 1);
        assert_eq!(shape(&axes(&[0]), x), Shape::d3(5, 1, 3));
        assert_eq!(shape(&axes(&[2]), x), Shape::d3(5, 3, 1));
        assert_eq!(shape(&axes(&[-2]), x), Shape::d3(5, 3, 1));
        assert_eq!(shape(&axes(&[0, 2]), x), Shape::d2(5, 3));
        // Size != 1: kept; beyond the rank: ignored.
        assert_eq!(shape(&axes(&[1, 3]), x), x);
        assert_eq!(shape(&axes(&[2]), Shape::d2(1, 1)), Shape::d2(1, 1));
        assert_eq!(shape(&axes(&[-3]), Shape::d2(1, 1)), Shape::d2(1, 1));
        assert_eq!(shape(&axes(&[0]), Shape::d2(1, 1)), Shape::d1(1));
        assert_eq!(shape(&axes(&[1]), Shape::d2(1, 4)), Shape::d1(4));
        assert_eq!(shape(&axes(&[0, 1, 2]), Shape::d3(1, 1, 1)), Shape::d1(1));
        // Axes override the flags.
        let both = Squeeze::new(&params(&[(0, int(1)), (3, Value::IntArray(vec![0]))])).unwrap();
        assert_eq!(shape(&both, Shape::d2(1, 1)), Shape::d1(1));
        assert_eq!(shape(&both, Shape::d2(1, 3)), Shape::d2(1, 3));
    }

    #[test]
    fn bad_params() {
        assert!(Squeeze::new(&params(&[(0, int(2))])).is_err());
        assert!(Squeeze::new(&params(&[(3, Value::IntArray(vec![4]))])).is_err());
        assert!(Squeeze::new(&params(&[(3, Value::IntArray(vec![-5]))])).is_err());
        assert!(Squeeze::new(&params(&[(3, Value::IntArray(vec![0, 1, 2, 3, 0]))])).is_err());
        assert!(axes(&[0]).output_shapes(&[]).is_err());
    }
}
