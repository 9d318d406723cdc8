//! Concat: joins its inputs along one axis (`0 = axis`, counted from the outermost dimension,
//! negative from the innermost). All inputs have the same rank and agree on every other axis.

use super::softmax::{resolve_axis, split_at_axis};
use super::{Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Debug)]
pub struct Concat {
    pub axis: i32,
}

impl Concat {
    pub fn new(pd: &ParamDict) -> LayerResult<Concat> {
        Ok(Concat {
            axis: pd.int(0, 0)?,
        })
    }
}

impl Op for Concat {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        let first = *inputs
            .first()
            .ok_or_else(|| invalid("expects at least one input blob"))?;
        let axis = resolve_axis(self.axis, first.dims)?;
        let mut dims = first.numpy_dims();
        for s in &inputs[1..] {
            let d = s.numpy_dims();
            let same_rest = s.dims == first.dims
                && d.iter()
                    .zip(&dims)
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !same_rest {
                return Err(invalid(format!(
                    "cannot concatenate {s} with {first} along axis {}",
                    self.axis
                )));
            }
            dims[axis] += d[axis];
        }
        Ok(vec![Shape::from_numpy_dims(&dims)?])
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        _ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let out = &mut outputs[0];
        let axis = resolve_axis(self.axis, out.shape.dims)?;
        let (outer, out_len, inner) = split_at_axis(&out.shape, axis);
        let out_block = out_len * inner;
        // Each outer index holds the inputs' blocks back to back.
        let mut offset = 0;
        for t in inputs {
            let (_, len, _) = split_at_axis(&t.shape, axis);
            let block = len * inner;
            for o in 0..outer {
                let dst = o * out_block + offset;
                out.data[dst..dst + block].copy_from_slice(&t.data[o * block..(o + 1) * block]);
            }
            offset += block;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{int, iota, params, run};

    fn op(axis: i32) -> Concat {
        Concat::new(&params(&[(0, int(axis))])).unwrap()
    }

    #[test]
    fn channels_of_3d() {
        let a = (Shape::d3(2, 1, 1), vec![0.0, 1.0]);
        let b = (Shape::d3(2, 1, 2), vec![2.0, 3.0, 4.0, 5.0]);
        let out = run(&op(0), &[a, b]).unwrap();
        assert_eq!(out[0], (Shape::d3(2, 1, 3), iota(6)));
    }

    #[test]
    fn width_of_2d_priorboxes() {
        // SSD: 0=1 on 2-D (w, h=2) blobs joins each row.
        let a = (Shape::d2(2, 2), vec![1.0, 2.0, 10.0, 20.0]);
        let b = (Shape::d2(3, 2), vec![3.0, 4.0, 5.0, 30.0, 40.0, 50.0]);
        let out = run(&op(1), &[a.clone(), b.clone()]).unwrap();
        assert_eq!(out[0].0, Shape::d2(5, 2));
        assert_eq!(
            out[0].1,
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0]
        );
        let neg = run(&op(-1), &[a, b]).unwrap();
        assert_eq!(neg[0], out[0]);
    }

    #[test]
    fn middle_axis_of_3d_and_4d() {
        // 3-D along h (axis 1): per channel, rows of a then rows of b.
        let a = (Shape::d3(2, 1, 2), vec![0.0, 1.0, 10.0, 11.0]);
        let b = (
            Shape::d3(2, 2, 2),
            vec![2.0, 3.0, 4.0, 5.0, 12.0, 13.0, 14.0, 15.0],
        );
        let out = run(&op(1), &[a, b]).unwrap();
        assert_eq!(out[0].0, Shape::d3(2, 3, 2));
        assert_eq!(
            out[0].1,
            vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0]
        );
        // 4-D along d (axis 1).
        let a = (Shape::d4(1, 1, 1, 2), vec![0.0, 10.0]);
        let b = (Shape::d4(1, 1, 2, 2), vec![1.0, 2.0, 11.0, 12.0]);
        let out = run(&op(-3), &[a, b]).unwrap();
        assert_eq!(
            out[0],
            (Shape::d4(1, 1, 3, 2), vec![0.0, 1.0, 2.0, 10.0, 11.0, 12.0])
        );
    }

    #[test]
    fn one_d_and_single_input() {
        let out = run(
            &op(0),
            &[(Shape::d1(2), vec![1.0, 2.0]), (Shape::d1(1), vec![3.0])],
        )
        .unwrap();
        assert_eq!(out[0], (Shape::d1(3), vec![1.0, 2.0, 3.0]));
        let out = run(&op(0), &[(Shape::d1(2), vec![1.0, 2.0])]).unwrap();
        assert_eq!(out[0], (Shape::d1(2), vec![1.0, 2.0]));
    }

    #[test]
    fn errors() {
        assert!(op(0).output_shapes(&[]).is_err());
        assert!(op(0)
            .output_shapes(&[Shape::d3(2, 2, 1), Shape::d3(3, 2, 1)])
            .is_err());
        assert!(op(0)
            .output_shapes(&[Shape::d3(2, 2, 1), Shape::d2(2, 2)])
            .is_err());
        assert!(op(3).output_shapes(&[Shape::d3(2, 2, 1)]).is_err());
    }
}
