//! Slice: cuts a blob into consecutive parts along one axis, as ncnn's layer does.
//!
//! Params (ncnn ids):
//! * `0 = slices` (int array): the size of each output along the axis; `-233` = an even
//!   share of what is left, `floor(left / outputs left)`. The sizes may sum to less than the
//!   axis (the tail is dropped), not to more.
//! * `1 = axis`: numpy order (0 = outermost), negative counts from the end; 1-D blobs are
//!   cut along w whatever the axis (as in ncnn). An axis out of range is refused (ncnn
//!   gives empty outputs).
//! * `2 = indices` (int array): the other form, the split points; output i ends at
//!   `indices[i]` (negative counts from the end of the axis), the last runs to the end.
//!
//! The number of outputs is `slices.len()`, or `indices.len() + 1` when indices are given
//! (ncnn takes it from the param file's top count: it must agree). Every part must be
//! non-empty, checked at load. Outputs keep the input's dims.

use super::crop::copy_box;
use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parts {
    Slices(Vec<i32>),
    Indices(Vec<i32>),
}

#[derive(Debug)]
pub struct Slice {
    pub parts: Parts,
    pub axis: i32,
}

/// The (w, h, d, c) slot of numpy axis `axis` of a `dims`-D blob.
pub(crate) fn slot_of_axis(dims: u8, axis: usize) -> usize {
    match (dims, axis) {
        (2, 0) => 1,
        (3, 0) | (4, 0) => 3,
        (3, 1) | (4, 2) => 1,
        (4, 1) => 2,
        _ => 0,
    }
}

/// Normalises a numpy axis (negative from the end) for a `dims`-D blob.
pub(crate) fn positive_axis(axis: i32, dims: u8) -> LayerResult<usize> {
    let a = if axis < 0 {
        axis as i64 + dims as i64
    } else {
        axis as i64
    };
    if (0..dims as i64).contains(&a) {
        Ok(a as usize)
    } else {
        Err(invalid(format!(
            "axis {axis} out of range for a {dims}-D blob"
        )))
    }
}

impl Slice {
    pub fn new(pd: &ParamDict) -> LayerResult<Slice> {
        let slices = pd.int_array(0)?;
        let indices = pd.int_array(2)?;
        let parts = if !indices.is_empty() {
            Parts::Indices(indices)
        } else if !slices.is_empty() {
            if let Some(s) = slices.iter().find(|&&s| s <= 0 && s != -233) {
                return Err(invalid(format!(
                    "slices (key 0) must be positive or -233, got {s}"
                )));
            }
            Parts::Slices(slices)
        } else {
            return Err(invalid("needs slices (key 0) or indices (key 2)"));
        };
        Ok(Slice {
            parts,
            axis: pd.int(1, 0)?,
        })
    }

    /// Calls `f(start, len)` for each output's range along the cut axis, in order, then
    /// returns the cut (w, h, d, c) slot. Checks that every part is non-empty and fits (no
    /// allocation unless it fails).
    fn each_range(&self, x: &Shape, mut f: impl FnMut(usize, usize)) -> LayerResult<usize> {
        let k = self.slot(x)?;
        let n = [x.w, x.h, x.d, x.c][k] as i64;
        let bad = |len: i64| {
            invalid(format!(
                "parts {:?} of axis {} do not fit input {x} (a part of size {len})",
                self.parts, self.axis
            ))
        };
        let mut q = 0i64;
        let mut emit = |len: i64, q: &mut i64| {
            if len < 1 || *q + len > n {
                return Err(bad(len));
            }
            f(*q as usize, len as usize);
            *q += len;
            Ok(())
        };
        match &self.parts {
            Parts::Slices(s) => {
                for (i, &len) in s.iter().enumerate() {
                    let len = if len == -233 {
                        (n - q) / (s.len() - i) as i64
                    } else {
                        len as i64
                    };
                    emit(len, &mut q)?;
                }
            }
            Parts::Indices(idx) => {
                for &i in idx {
                    let end = if i < 0 { n + i as i64 } else { i as i64 };
                    emit(end - q, &mut q)?;
                }
                emit(n - q, &mut q)?;
            }
        }
        Ok(k)
    }

    /// The cut (w, h, d, c) slot: 1-D blobs are cut along w whatever the axis (as in ncnn).
    fn slot(&self, x: &Shape) -> LayerResult<usize> {
        if x.dims == 1 {
            return Ok(0);
        }
        Ok(slot_of_axis(x.dims, positive_axis(self.axis, x.dims)?))
    }

    #[cfg(test)]
    fn ranges(&self, x: &Shape) -> LayerResult<(usize, Vec<(usize, usize)>)> {
        let mut out = Vec::new();
        let k = self.each_range(x, |a, l| out.push((a, l)))?;
        Ok((k, out))
    }
}

impl Op for Slice {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let x = inputs[0];
        let mut lens = Vec::new();
        let k = self.each_range(&x, |_, len| lens.push(len))?;
        lens.iter()
            .map(|&len| {
                let mut e = [x.w, x.h, x.d, x.c];
                e[k] = len;
                Shape::checked(x.dims, e[0], e[1], e[2], e[3])
            })
            .collect()
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        _: &mut Ctx,
    ) -> LayerResult<()> {
        let x = &inputs[0];
        let k = self.slot(&x.shape)?;
        let mut outs = outputs.iter_mut();
        self.each_range(&x.shape, |start, _| {
            if let Some(out) = outs.next() {
                let mut off = [0; 4];
                off[k] = start;
                copy_box(x, off, out);
            }
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::ops::harness::{int, iota, params, run};

    fn op(p: &[(usize, Value)]) -> Slice {
        Slice::new(&params(p)).unwrap()
    }

    fn ints(v: &[i32]) -> Value {
        Value::IntArray(v.to_vec())
    }

    fn lens(s: &Slice, x: Shape) -> Vec<usize> {
        s.ranges(&x).unwrap().1.iter().map(|r| r.1).collect()
    }

    #[test]
    fn slices_and_even_shares() {
        let x = Shape::d1(10);
        assert_eq!(lens(&op(&[(0, ints(&[-233, -233, -233]))]), x), [3, 3, 4]);
        assert_eq!(lens(&op(&[(0, ints(&[2, -233, -233]))]), x), [2, 4, 4]);
        // The sizes may leave a tail out.
        assert_eq!(lens(&op(&[(0, ints(&[2, -233, 3]))]), x), [2, 4, 3]);
        assert_eq!(lens(&op(&[(2, ints(&[2, -3]))]), x), [2, 5, 3]);
        let out = run(&op(&[(0, ints(&[2, 1, -233]))]), &[(x, iota(10))]).unwrap();
        assert_eq!(out[0], (Shape::d1(2), vec![0.0, 1.0]));
        assert_eq!(out[1], (Shape::d1(1), vec![2.0]));
        assert_eq!(out[2].1, [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    }

    #[test]
    fn any_axis() {
        // 3-D w4 h3 c2 along h (axis 1 = -2): rows 0..1 and 1..3 of each channel.
        let x = Shape::d3(4, 3, 2);
        let s = op(&[(0, ints(&[1, -233])), (1, int(-2))]);
        let out = run(&s, &[(x, iota(24))]).unwrap();
        assert_eq!(out[0].0, Shape::d3(4, 1, 2));
        assert_eq!(out[0].1, [0.0, 1.0, 2.0, 3.0, 12.0, 13.0, 14.0, 15.0]);
        assert_eq!(out[1].0, Shape::d3(4, 2, 2));
        assert_eq!(out[1].1[..4], [4.0, 5.0, 6.0, 7.0]);
        // 4-D along d, c and w.
        let x = Shape::d4(7, 4, 3, 2);
        let d = op(&[(2, ints(&[1])), (1, int(1))]);
        assert_eq!(
            d.output_shapes(&[x]).unwrap(),
            [Shape::d4(7, 4, 1, 2), Shape::d4(7, 4, 2, 2)]
        );
        let w = op(&[(0, ints(&[-233, -233])), (1, int(-1))]);
        let out = run(&w, &[(x, iota(x.len()))]).unwrap();
        assert_eq!(out[0].0, Shape::d4(3, 4, 3, 2));
        assert_eq!(out[1].1[..4], [3.0, 4.0, 5.0, 6.0]);
        let c = op(&[(0, ints(&[1, 1])), (1, int(0))]);
        let out = run(&c, &[(x, iota(x.len()))]).unwrap();
        assert_eq!(out[1].1, iota(x.len())[84..].to_vec());
        // 2-D axis 0 is h.
        let h = op(&[(0, ints(&[2, -233]))]);
        assert_eq!(
            h.output_shapes(&[Shape::d2(3, 5)]).unwrap(),
            [Shape::d2(3, 2), Shape::d2(3, 3)]
        );
    }

    #[test]
    fn bad_params_and_shapes_are_errors() {
        let err = |p: &[(usize, Value)]| Slice::new(&params(p)).unwrap_err().0;
        assert!(err(&[]).contains("slices"));
        assert!(err(&[(0, ints(&[2, 0]))]).contains("positive"));
        let x = Shape::d1(5);
        let too_many = op(&[(0, ints(&[3, 3]))]);
        assert!(too_many.output_shapes(&[x]).is_err());
        let empty = op(&[(2, ints(&[2, 2]))]);
        assert!(empty.output_shapes(&[x]).is_err());
        // 1-D blobs ignore the axis (ncnn); others need it in range.
        let axis = op(&[(0, ints(&[1, -233])), (1, int(1))]);
        assert!(axis.output_shapes(&[x]).is_ok());
        assert!(axis.output_shapes(&[Shape::d2(2, 2)]).is_ok());
        let axis = op(&[(0, ints(&[1, -233])), (1, int(2))]);
        assert!(axis.output_shapes(&[Shape::d2(2, 2)]).is_err());
        let axis = op(&[(0, ints(&[1, -233])), (1, int(-3))]);
        assert!(axis.output_shapes(&[Shape::d2(2, 2)]).is_err());
    }
}
