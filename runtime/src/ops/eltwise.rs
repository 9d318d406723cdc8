//! Eltwise: combines N equally shaped inputs element by element.
//!
//! Params: `0 = op_type` (0 PROD, 1 SUM, 2 MAX), `1 = coeffs` (SUM only; one per input, empty
//! means all 1). The order of operations follows ncnn: the first two inputs are combined, then
//! each further input is folded into the result.

use super::elementwise::PARALLEL_MIN;
use super::{Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::pool::SharedMut;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EltwiseOp {
    Prod,
    Sum,
    Max,
}

#[derive(Debug)]
pub struct Eltwise {
    pub op: EltwiseOp,
    /// Per-input factors for SUM; empty = plain sum.
    pub coeffs: Vec<f32>,
}

impl Eltwise {
    pub fn new(pd: &ParamDict) -> LayerResult<Eltwise> {
        let op = match pd.int(0, 0)? {
            0 => EltwiseOp::Prod,
            1 => EltwiseOp::Sum,
            2 => EltwiseOp::Max,
            t => return Err(invalid(format!("unknown eltwise op_type {t}"))),
        };
        Ok(Eltwise {
            op,
            coeffs: pd.float_array(1)?,
        })
    }

    /// Computes elements `start..start + out.len()` of the result.
    fn combine(&self, inputs: &[Tensor], start: usize, out: &mut [f32]) {
        let range = start..start + out.len();
        let (a, b) = (
            &inputs[0].data[range.clone()],
            &inputs[1].data[range.clone()],
        );
        let max = |x: f32, y: f32| if x < y { y } else { x };
        match self.op {
            EltwiseOp::Prod => {
                for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
                    *o = x * y;
                }
                for t in &inputs[2..] {
                    out.iter_mut()
                        .zip(&t.data[range.clone()])
                        .for_each(|(o, x)| *o *= x);
                }
            }
            EltwiseOp::Sum if self.coeffs.is_empty() => {
                for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
                    *o = x + y;
                }
                for t in &inputs[2..] {
                    out.iter_mut()
                        .zip(&t.data[range.clone()])
                        .for_each(|(o, x)| *o += x);
                }
            }
            EltwiseOp::Sum => {
                let (c0, c1) = (self.coeffs[0], self.coeffs[1]);
                for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
                    *o = x * c0 + y * c1;
                }
                for (t, &c) in inputs[2..].iter().zip(&self.coeffs[2..]) {
                    out.iter_mut()
                        .zip(&t.data[range.clone()])
                        .for_each(|(o, x)| *o += x * c);
                }
            }
            EltwiseOp::Max => {
                for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
                    *o = max(*x, *y);
                }
                for t in &inputs[2..] {
                    out.iter_mut()
                        .zip(&t.data[range.clone()])
                        .for_each(|(o, x)| *o = max(*o, *x));
                }
            }
        }
    }
}

impl Op for Eltwise {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        if inputs.len() < 2 {
            return Err(invalid(format!(
                "expects at least 2 input blobs, got {}",
                inputs.len()
            )));
        }
        if let Some(s) = inputs.iter().find(|s| **s != inputs[0]) {
            return Err(invalid(format!(
                "input shapes differ: {} and {s}",
                inputs[0]
            )));
        }
        if self.op == EltwiseOp::Sum && !self.coeffs.is_empty() && self.coeffs.len() < inputs.len()
        {
            return Err(invalid(format!(
                "{} coeffs for {} inputs",
                self.coeffs.len(),
                inputs.len()
            )));
        }
        Ok(vec![inputs[0]])
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let n = outputs[0].data.len();
        let chunks = if n >= PARALLEL_MIN {
            ctx.pool.threads()
        } else {
            1
        };
        let out = SharedMut::new(outputs[0].data);
        ctx.pool
            .run(chunks, &|t, _| {
                let (lo, hi) = (n * t / chunks, n * (t + 1) / chunks);
                // SAFETY: chunks are disjoint ranges of the output.
                let dst = unsafe { out.slice(lo, hi - lo) };
                self.combine(inputs, lo, dst);
            })
            .map_err(|e| invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::ops::harness::{int, params, run, run_threads};
    use crate::rng::Rng;

    fn op(t: i32, coeffs: &[f32]) -> Eltwise {
        let mut p = vec![(0, int(t))];
        if !coeffs.is_empty() {
            p.push((1, Value::FloatArray(coeffs.to_vec())));
        }
        Eltwise::new(&params(&p)).unwrap()
    }

    fn inputs() -> Vec<(Shape, Vec<f32>)> {
        let s = Shape::d3(2, 1, 2);
        vec![
            (s, vec![1.0, -2.0, 3.0, 4.0]),
            (s, vec![2.0, 5.0, -1.0, 0.5]),
            (s, vec![3.0, 1.0, 2.0, -2.0]),
        ]
    }

    #[test]
    fn prod_sum_max_by_hand() {
        let x = inputs();
        assert_eq!(
            run(&op(0, &[]), &x).unwrap()[0].1,
            vec![6.0, -10.0, -6.0, -4.0]
        );
        assert_eq!(run(&op(1, &[]), &x).unwrap()[0].1, vec![6.0, 4.0, 4.0, 2.5]);
        assert_eq!(run(&op(2, &[]), &x).unwrap()[0].1, vec![3.0, 5.0, 3.0, 4.0]);
        assert_eq!(
            run(&op(1, &[1.0, -1.0, 0.5]), &x).unwrap()[0].1,
            vec![-1.0 + 1.5, -7.0 + 0.5, 4.0 + 1.0, 3.5 - 1.0]
        );
        assert_eq!(
            run(&op(1, &[]), &x[..2]).unwrap()[0].1,
            vec![3.0, 3.0, 2.0, 4.5]
        );
    }

    #[test]
    fn threads_give_identical_results() {
        let mut rng = Rng::new(7);
        let s = Shape::d3(33, 37, 17);
        let x: Vec<_> = (0..3).map(|_| (s, rng.vec(s.len(), -1.0, 1.0))).collect();
        for t in 0..3 {
            let a = run_threads(&op(t, &[]), &x, 1).unwrap();
            let b = run_threads(&op(t, &[]), &x, 3).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn errors() {
        assert!(Eltwise::new(&params(&[(0, int(3))])).is_err());
        let s = Shape::d3(2, 2, 2);
        assert!(op(1, &[]).output_shapes(&[s]).is_err());
        assert!(op(1, &[]).output_shapes(&[s, Shape::d3(2, 2, 3)]).is_err());
        assert!(op(1, &[1.0]).output_shapes(&[s, s]).is_err());
        assert!(op(1, &[1.0, 2.0]).output_shapes(&[s, s]).is_ok());
    }
}
