//! Concat: joins its inputs along one axis (`0 = axis`, counted from the outermost dimension,
//! negative from the innermost). All inputs have the same rank and agree on every other axis.
//!
//! It only moves values, so it carries int8 blobs through unchanged in scale: after
//! `set_int8_io(true, Some(grid))` every input and the output hold int8 values (the graph gives
//! them one scale) and the copies move bytes.

use super::quantized::{as_i8, as_i8_mut};
use super::softmax::{resolve_axis, split_at_axis};
use super::{Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::quant::Int8Grid;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Debug)]
pub struct Concat {
    pub axis: i32,
    /// Inputs and output hold int8 values (`set_int8_io`).
    int8: bool,
}

impl Concat {
    pub fn new(pd: &ParamDict) -> LayerResult<Concat> {
        Ok(Concat {
            axis: pd.int(0, 0)?,
            int8: false,
        })
    }
}

/// Copies the `n` inputs (`input(i)`: shape and values) into `out`, joined along `axis`;
/// any element type.
fn join<'a, T: Copy + 'a>(
    axis: usize,
    n: usize,
    input: impl Fn(usize) -> LayerResult<(Shape, &'a [T])>,
    out_shape: Shape,
    out: &mut [T],
) -> LayerResult<()> {
    let (outer, out_len, inner) = split_at_axis(&out_shape, axis);
    let out_block = out_len * inner;
    // Each outer index holds the inputs' blocks back to back.
    let mut offset = 0;
    for i in 0..n {
        let (shape, data) = input(i)?;
        let (_, len, _) = split_at_axis(&shape, axis);
        let block = len * inner;
        for o in 0..outer {
            let dst = o * out_block + offset;
            out[dst..dst + block].copy_from_slice(&data[o * block..(o + 1) * block]);
        }
        offset += block;
    }
    Ok(())
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
        if self.int8 {
            let input = |i: usize| {
                let t: &Tensor = &inputs[i];
                Ok((t.shape, as_i8(t.data, t.shape.len())?))
            };
            join(
                axis,
                inputs.len(),
                input,
                out.shape,
                as_i8_mut(out.data, out.shape.len())?,
            )
        } else {
            let input = |i: usize| Ok((inputs[i].shape, inputs[i].data));
            join(axis, inputs.len(), input, out.shape, out.data)
        }
    }

    fn int8_passthrough(&self) -> bool {
        true
    }

    /// Along the outermost axis each input is one contiguous block of the output.
    fn joins_inputs(&self, inputs: &[Shape]) -> bool {
        inputs
            .first()
            .is_some_and(|s| resolve_axis(self.axis, s.dims) == Ok(0))
    }

    /// Inputs and output are all int8 (one scale) or all fp32.
    fn set_int8_io(&mut self, input: bool, output: Option<Int8Grid>) -> LayerResult<()> {
        let output = output.is_some();
        if input != output {
            return Err(invalid(format!(
                "concat reads and writes int8 together or not at all (input int8: {input}, output int8: {output})"
            )));
        }
        self.int8 = input;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// Any grid: pass-through ops keep the values and do not look at it.
    const GRID: crate::quant::Int8Grid = crate::quant::Int8Grid {
        scale: 10.0,
        qmax: 127,
    };

    use super::*;
    use crate::ops::harness::{int, iota, params, run};
    use crate::tensor::{Tensor, TensorMut};

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

    /// Runs `op` on int8 inputs (4 values per float slot, as in the arena).
    fn run_i8(op: &Concat, inputs: &[(Shape, Vec<i8>)]) -> (Shape, Vec<i8>) {
        let shapes: Vec<Shape> = inputs.iter().map(|(s, _)| *s).collect();
        let out_shape = op.output_shapes(&shapes).unwrap()[0];
        let packed: Vec<Vec<f32>> = inputs
            .iter()
            .map(|(s, q)| {
                let mut d = vec![0.0f32; s.len().div_ceil(4)];
                as_i8_mut(&mut d, s.len()).unwrap().copy_from_slice(q);
                d
            })
            .collect();
        let ins: Vec<Tensor> = packed
            .iter()
            .zip(&shapes)
            .map(|(d, s)| Tensor { shape: *s, data: d })
            .collect();
        let mut out = vec![f32::NAN; out_shape.len().div_ceil(4)];
        let pool = crate::pool::Pool::new(1).unwrap();
        let mut ctx = Ctx {
            pool: &pool,
            scratch: &mut [],
        };
        op.forward(
            &ins,
            &mut [TensorMut {
                shape: out_shape,
                data: &mut out,
            }],
            &mut ctx,
        )
        .unwrap();
        (out_shape, as_i8(&out, out_shape.len()).unwrap().to_vec())
    }

    #[test]
    fn int8_concat_is_the_quantized_fp32_concat() {
        use crate::quant::quantize;
        use crate::rng::Rng;
        let mut rng = Rng::new(8);
        let mut checked = 0;
        for dims in 1..=4u8 {
            for axis in -(dims as i32)..dims as i32 {
                for _ in 0..4 {
                    let base = [1, 2, 3, 4].map(|_| rng.range(1, 6) as usize);
                    let a = resolve_axis(axis, dims).unwrap();
                    let inputs: Vec<(Shape, Vec<i8>)> = (0..rng.range(1, 4))
                        .map(|_| {
                            let mut d = base[..dims as usize].to_vec();
                            d[a] = rng.range(1, 7) as usize;
                            let s = Shape::from_numpy_dims(&d).unwrap();
                            let q = (0..s.len()).map(|_| rng.range(-127, 127) as i8).collect();
                            (s, q)
                        })
                        .collect();
                    let scale = rng.uniform(0.1, 30.0);
                    let fp32: Vec<(Shape, Vec<f32>)> = inputs
                        .iter()
                        .map(|(s, q)| (*s, q.iter().map(|&v| v as f32 / scale).collect()))
                        .collect();
                    let mut c = op(axis);
                    let want = run(&c, &fp32).unwrap();
                    let want_q: Vec<i8> =
                        want[0].1.iter().map(|&v| quantize(v, scale, 127)).collect();
                    c.set_int8_io(true, Some(GRID)).unwrap();
                    let got = run_i8(&c, &inputs);
                    assert_eq!(got, (want[0].0, want_q), "dims {dims} axis {axis}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 4 * (2 + 4 + 6 + 8));
    }

    #[test]
    fn int8_io_contract() {
        let mut c = op(0);
        assert!(c.int8_passthrough());
        assert!(c.set_int8_io(true, None).is_err());
        assert!(c.set_int8_io(false, Some(GRID)).is_err());
        c.set_int8_io(true, Some(GRID)).unwrap();
        c.set_int8_io(false, None).unwrap();
        let out = run(&c, &[(Shape::d1(1), vec![1.0]), (Shape::d1(1), vec![2.0])]).unwrap();
        assert_eq!(out[0].1, vec![1.0, 2.0]);
    }
}
