//! Reduction: sum, mean, max, ... over some axes of a blob.
//!
//! Params: `0 = operation` (0 sum, 1 asum, 2 sumsq, 3 mean, 4 max, 5 min, 6 prod, 7 L1, 8 L2,
//! 9 logsum, 10 logsumexp), `1 = reduce_all` (default 1), `2 = coeff` (default 1), `3 = axes`
//! (int array, numpy order: 0 is the outermost axis, negative values count from the innermost),
//! `4 = keepdims`, `5 = fixbug0`. Axes without `fixbug0 = 1` come from old converters that
//! counted a batch axis; ncnn refuses such files and so do we.
//!
//! As ncnn: a 1-D blob is always reduced whole; every result (after L2's root and the logs)
//! is multiplied by `coeff` (mean: `coeff / count`); logsumexp is the plain
//! `log(sum(exp(x)))`. Without `keepdims` the reduced axes are removed (all of them: a
//! 1-D blob of one value); with it they stay with size 1. A reduction over no axis is refused
//! (ncnn would produce an empty blob).

use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    Sum,
    ASum,
    SumSq,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
}

impl ReduceKind {
    fn from_type(t: i32) -> LayerResult<ReduceKind> {
        use ReduceKind::*;
        Ok(match t {
            0 => Sum,
            1 => ASum,
            2 => SumSq,
            3 => Mean,
            4 => Max,
            5 => Min,
            6 => Prod,
            7 => L1,
            8 => L2,
            9 => LogSum,
            10 => LogSumExp,
            _ => {
                return Err(invalid(format!(
                    "unknown reduction operation {t} (param 0)"
                )))
            }
        })
    }

    /// Starting value of the accumulator.
    fn init(self) -> f32 {
        match self {
            ReduceKind::Max => -f32::MAX,
            ReduceKind::Min => f32::MAX,
            ReduceKind::Prod => 1.0,
            _ => 0.0,
        }
    }

    /// Folds one input value into the accumulator.
    #[inline]
    fn step(self, acc: f32, x: f32) -> f32 {
        use ReduceKind::*;
        match self {
            Sum | Mean | LogSum => acc + x,
            ASum | L1 => acc + x.abs(),
            SumSq | L2 => acc + x * x,
            LogSumExp => acc + x.exp(),
            Max => {
                if acc < x {
                    x
                } else {
                    acc
                }
            }
            Min => {
                if x < acc {
                    x
                } else {
                    acc
                }
            }
            Prod => acc * x,
        }
    }
}

#[derive(Debug)]
pub struct Reduction {
    pub kind: ReduceKind,
    pub reduce_all: bool,
    pub coeff: f32,
    pub axes: Vec<i32>,
    pub keepdims: bool,
}

fn flag(pd: &ParamDict, key: usize, default: i32, what: &str) -> LayerResult<bool> {
    match pd.int(key, default)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(invalid(format!(
            "{what} (param {key}) must be 0 or 1, got {v}"
        ))),
    }
}

/// The input's dimensions outermost first, padded in front to 4 with 1s, and how many are real.
fn dims4(s: &Shape) -> [usize; 4] {
    match s.dims {
        1 => [1, 1, 1, s.w],
        2 => [1, 1, s.h, s.w],
        3 => [1, s.c, s.h, s.w],
        _ => [s.c, s.d, s.h, s.w],
    }
}

impl Reduction {
    pub fn new(pd: &ParamDict) -> LayerResult<Reduction> {
        let kind = ReduceKind::from_type(pd.int(0, 0)?)?;
        let reduce_all = flag(pd, 1, 1, "reduce_all")?;
        let coeff = pd.float(2, 1.0)?;
        if !coeff.is_finite() {
            return Err(invalid(format!(
                "coeff (param 2) must be finite, got {coeff}"
            )));
        }
        let axes = pd.int_array(3)?;
        if let Some(a) = axes.iter().find(|a| !(-4..4).contains(*a)) {
            return Err(invalid(format!("axis {a} (param 3) is out of range -4..3")));
        }
        let keepdims = flag(pd, 4, 0, "keepdims")?;
        if !axes.is_empty() && pd.int(5, 0)? == 0 {
            return Err(invalid(
                "param is too old, please regenerate (reduction axes without fixbug0=1)",
            ));
        }
        Ok(Reduction {
            kind,
            reduce_all,
            coeff,
            axes,
            keepdims,
        })
    }

    /// Which of the 4 padded axes (see `dims4`) are reduced for an input of `dims` dimensions.
    fn reduced(&self, dims: u8) -> LayerResult<[bool; 4]> {
        let n = dims as usize;
        let mut r = [false; 4];
        if self.reduce_all || n == 1 {
            r[4 - n..].iter_mut().for_each(|v| *v = true);
            return Ok(r);
        }
        for &a in &self.axes {
            let axis = if a < 0 { a + dims as i32 } else { a };
            if axis < 0 || axis >= dims as i32 {
                return Err(invalid(format!(
                    "axis {a} is out of range for a {dims}-D blob"
                )));
            }
            r[4 - n + axis as usize] = true;
        }
        if !r.contains(&true) {
            return Err(invalid(
                "no axis to reduce: reduce_all (param 1) is 0 and axes (param 3) is empty",
            ));
        }
        Ok(r)
    }

    /// Elements folded into each output value.
    fn count(&self, s: &Shape) -> LayerResult<usize> {
        let r = self.reduced(s.dims)?;
        Ok(dims4(s)
            .iter()
            .zip(r)
            .filter(|(_, red)| *red)
            .map(|(d, _)| d)
            .product())
    }
}

impl Op for Reduction {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let s = inputs[0];
        let n = s.dims as usize;
        let r = self.reduced(s.dims)?;
        let d = dims4(&s);
        if s.dims == 1 {
            return Ok(vec![Shape::d1(1)]);
        }
        let mut kept: Vec<usize> = Vec::with_capacity(4);
        for i in 4 - n..4 {
            if !r[i] {
                kept.push(d[i]);
            } else if self.keepdims {
                kept.push(1);
            }
        }
        if kept.is_empty() {
            kept.push(1);
        }
        Ok(vec![Shape::from_numpy_dims(&kept)?])
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        _: &mut Ctx,
    ) -> LayerResult<()> {
        let x = &inputs[0];
        let out = &mut *outputs[0].data;
        let r = self.reduced(x.shape.dims)?;
        let d = dims4(&x.shape);
        // Output strides of the padded input axes (0 on reduced ones).
        let mut stride = [0usize; 4];
        let mut step = 1;
        for i in (0..4).rev() {
            if !r[i] {
                stride[i] = step;
                step *= d[i];
            }
        }
        let kind = self.kind;
        out.fill(kind.init());
        let mut it = x.data.chunks_exact(d[3]);
        for a in 0..d[0] {
            for b in 0..d[1] {
                for c in 0..d[2] {
                    let row = it.next().expect("input rows");
                    let o = a * stride[0] + b * stride[1] + c * stride[2];
                    if r[3] {
                        let acc = &mut out[o];
                        *acc = row.iter().fold(*acc, |s, &v| kind.step(s, v));
                    } else {
                        for (acc, &v) in out[o..o + d[3]].iter_mut().zip(row) {
                            *acc = kind.step(*acc, v);
                        }
                    }
                }
            }
        }
        use ReduceKind::*;
        let coeff = match kind {
            Mean => self.coeff / self.count(&x.shape)? as f32,
            _ => self.coeff,
        };
        match kind {
            L2 => out.iter_mut().for_each(|v| *v = v.sqrt()),
            LogSum | LogSumExp => out.iter_mut().for_each(|v| *v = v.ln()),
            _ => {}
        }
        if kind == Mean || (coeff - 1.0).abs() > f32::EPSILON {
            out.iter_mut().for_each(|v| *v *= coeff);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::ops::harness::{assert_close, float, int, iota, params, run};

    fn op(kind: i32, axes: &[i32], keepdims: bool, coeff: f32) -> Reduction {
        let mut p = vec![(0, int(kind)), (2, float(coeff)), (4, int(keepdims as i32))];
        if axes.is_empty() {
            p.push((1, int(1)));
        } else {
            p.push((1, int(0)));
            p.push((3, Value::IntArray(axes.to_vec())));
            p.push((5, int(1)));
        }
        Reduction::new(&params(&p)).unwrap()
    }

    /// f64 reference over numpy-order dims.
    fn reference(x: &[f32], dims: &[usize], red: &[bool], kind: i32, coeff: f32) -> Vec<f32> {
        let n = dims.len();
        let out_dims: Vec<usize> = (0..n).map(|i| if red[i] { 1 } else { dims[i] }).collect();
        let out_len: usize = out_dims.iter().product();
        let mut groups: Vec<Vec<f64>> = vec![Vec::new(); out_len];
        for (flat, &v) in x.iter().enumerate() {
            let mut rem = flat;
            let mut idx = vec![0; n];
            for i in (0..n).rev() {
                idx[i] = rem % dims[i];
                rem /= dims[i];
            }
            let mut o = 0;
            for i in 0..n {
                o = o * out_dims[i] + if red[i] { 0 } else { idx[i] };
            }
            groups[o].push(v as f64);
        }
        groups
            .iter()
            .map(|g| {
                let c = coeff as f64;
                (match kind {
                    0 => g.iter().sum::<f64>() * c,
                    1 => g.iter().map(|v| v.abs()).sum::<f64>() * c,
                    2 => g.iter().map(|v| v * v).sum::<f64>() * c,
                    3 => g.iter().sum::<f64>() / g.len() as f64 * c,
                    4 => g.iter().cloned().fold(f64::MIN, f64::max) * c,
                    5 => g.iter().cloned().fold(f64::MAX, f64::min) * c,
                    6 => g.iter().product::<f64>() * c,
                    7 => g.iter().map(|v| v.abs()).sum::<f64>() * c,
                    8 => g.iter().map(|v| v * v).sum::<f64>().sqrt() * c,
                    9 => g.iter().sum::<f64>().ln() * c,
                    _ => g.iter().map(|v| v.exp()).sum::<f64>().ln() * c,
                }) as f32
            })
            .collect()
    }

    #[test]
    fn by_hand() {
        let x = (Shape::d2(3, 2), vec![1.0, -2.0, 3.0, 4.0, 5.0, -6.0]);
        let got = run(&op(0, &[1], false, 1.0), std::slice::from_ref(&x)).unwrap();
        assert_eq!(got[0].0, Shape::d1(2));
        assert_eq!(got[0].1, vec![2.0, 3.0]);
        let got = run(&op(4, &[0], true, 1.0), std::slice::from_ref(&x)).unwrap();
        assert_eq!(got[0].0, Shape::d2(3, 1));
        assert_eq!(got[0].1, vec![4.0, 5.0, 3.0]);
        let got = run(&op(3, &[], false, 2.0), std::slice::from_ref(&x)).unwrap();
        assert_eq!(got[0].0, Shape::d1(1));
        assert_close(&got[0].1, &[5.0 / 6.0 * 2.0], 1e-6);
        // L1 times coeff.
        let got = run(&op(7, &[-1], false, 3.0), &[x]).unwrap();
        assert_eq!(got[0].1, vec![18.0, 45.0]);
    }

    #[test]
    fn every_operation_axes_and_rank() {
        let shapes = [
            Shape::d1(5),
            Shape::d2(4, 3),
            Shape::d3(4, 3, 2),
            Shape::d4(3, 2, 4, 2),
        ];
        for s in shapes {
            let dims = s.numpy_dims();
            let n = dims.len();
            let x: Vec<f32> = iota(s.len())
                .iter()
                .map(|v| 0.2 + (v * 0.37).sin().abs())
                .collect();
            for mask in 1u32..(1 << n) {
                let axes: Vec<i32> = (0..n as i32)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| if i % 2 == 0 { i } else { i - n as i32 })
                    .collect();
                let red: Vec<bool> = if n == 1 {
                    vec![true]
                } else {
                    (0..n).map(|i| mask & (1 << i) != 0).collect()
                };
                for kind in 0..=10 {
                    for keep in [false, true] {
                        let o = op(kind, &axes, keep, 0.5);
                        let got = run(&o, &[(s, x.clone())]).unwrap();
                        let want = reference(&x, &dims, &red, kind, 0.5);
                        assert_close(&got[0].1, &want, 1e-5);
                        let kept: Vec<usize> = (0..n)
                            .filter(|&i| !red[i] || keep)
                            .map(|i| if red[i] { 1 } else { dims[i] })
                            .collect();
                        let want_shape = if n == 1 || kept.is_empty() {
                            vec![1]
                        } else {
                            kept
                        };
                        assert_eq!(got[0].0.numpy_dims(), want_shape, "{s} {axes:?} {keep}");
                    }
                }
            }
        }
    }

    #[test]
    fn errors() {
        assert!(Reduction::new(&params(&[(0, int(11))])).is_err());
        let none = Reduction::new(&params(&[(1, int(0))])).unwrap();
        assert!(none.output_shapes(&[Shape::d2(2, 2)]).is_err());
        assert!(none.output_shapes(&[Shape::d1(2)]).is_ok());
        assert!(Reduction::new(&params(&[(1, int(2))])).is_err());
        assert!(Reduction::new(&params(&[(4, int(-1))])).is_err());
        assert!(Reduction::new(&params(&[(2, float(f32::NAN))])).is_err());
        let old = params(&[(1, int(0)), (3, Value::IntArray(vec![1]))]);
        assert!(Reduction::new(&old).unwrap_err().0.contains("too old"));
        let bad = params(&[(1, int(0)), (3, Value::IntArray(vec![7])), (5, int(1))]);
        assert!(Reduction::new(&bad).is_err());
        let o = op(0, &[2], false, 1.0);
        assert!(o.output_shapes(&[Shape::d2(2, 2)]).is_err());
        assert!(o.output_shapes(&[Shape::d3(2, 2, 2)]).is_ok());
        assert!(op(0, &[-3], false, 1.0)
            .output_shapes(&[Shape::d2(2, 2)])
            .is_err());
    }
}
