//! Softmax along one axis, in place, max-subtracted: `exp(x - max) / sum`.
//!
//! Params: `0 = axis` (counted from the outermost dimension, negative values from the
//! innermost), `1 = fixbug0`. A non-zero axis without `fixbug0 = 1` comes from an old converter
//! whose 3-D axis handling was wrong, so ncnn refuses such files and so do we.

use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Softmax {
    pub axis: i32,
}

/// Resolves an ncnn axis (outermost = 0, negative counts from the end) for a blob of `dims`
/// dimensions into an index into `Shape::numpy_dims`.
pub(crate) fn resolve_axis(axis: i32, dims: u8) -> LayerResult<usize> {
    let d = dims as i32;
    let a = if axis < 0 { axis + d } else { axis };
    if a < 0 || a >= d {
        return Err(invalid(format!(
            "axis {axis} is out of range for a {dims}-D blob"
        )));
    }
    Ok(a as usize)
}

/// (outer, axis length, inner) element counts of a blob split at `axis`.
pub(crate) fn split_at_axis(s: &Shape, axis: usize) -> (usize, usize, usize) {
    // Like `Shape::numpy_dims`, without allocating (this runs inside `forward`).
    let all = match s.dims {
        1 => [s.w, 0, 0, 0],
        2 => [s.h, s.w, 0, 0],
        3 => [s.c, s.h, s.w, 0],
        _ => [s.c, s.d, s.h, s.w],
    };
    let d = &all[..s.dims.clamp(1, 4) as usize];
    let outer = d[..axis].iter().product();
    let inner = d[axis + 1..].iter().product();
    (outer, d[axis], inner)
}

impl Softmax {
    pub fn new(pd: &ParamDict) -> LayerResult<Softmax> {
        let axis = pd.int(0, 0)?;
        let fixbug0 = pd.int(1, 0)?;
        if axis != 0 && fixbug0 == 0 {
            return Err(invalid(
                "param is too old, please regenerate (softmax axis without fixbug0=1)",
            ));
        }
        Ok(Softmax { axis })
    }
}

/// Softmax of one contiguous run of values.
fn softmax_contiguous(x: &mut [f32]) {
    let mut max = -f32::MAX;
    for &v in x.iter() {
        if max < v {
            max = v;
        }
    }
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    x.iter_mut().for_each(|v| *v /= sum);
}

/// Softmax over the `len` rows of a `len x inner` block, column by column, using two
/// `inner`-sized scratch rows for the running max and sum (same order of operations as ncnn).
fn softmax_strided(block: &mut [f32], inner: usize, max: &mut [f32], sum: &mut [f32]) {
    max.fill(-f32::MAX);
    sum.fill(0.0);
    for row in block.chunks_exact(inner) {
        for (m, &v) in max.iter_mut().zip(row) {
            if *m < v {
                *m = v;
            }
        }
    }
    for row in block.chunks_exact_mut(inner) {
        for ((v, m), s) in row.iter_mut().zip(max.iter()).zip(sum.iter_mut()) {
            *v = (*v - *m).exp();
            *s += *v;
        }
    }
    for row in block.chunks_exact_mut(inner) {
        row.iter_mut().zip(sum.iter()).for_each(|(v, s)| *v /= *s);
    }
}

impl Op for Softmax {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        resolve_axis(self.axis, inputs[0].dims)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn scratch_len(&self, inputs: &[Shape], _outputs: &[Shape]) -> usize {
        match resolve_axis(self.axis, inputs[0].dims) {
            Ok(a) => {
                let (_, _, inner) = split_at_axis(&inputs[0], a);
                if inner > 1 {
                    2 * inner
                } else {
                    0
                }
            }
            Err(_) => 0,
        }
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let axis = resolve_axis(self.axis, x.shape.dims)?;
        let (_, len, inner) = split_at_axis(&x.shape, axis);
        if inner == 1 {
            x.data.chunks_exact_mut(len).for_each(softmax_contiguous);
            return Ok(());
        }
        if ctx.scratch.len() < 2 * inner {
            return Err(invalid("softmax scratch too small"));
        }
        let (max, rest) = ctx.scratch.split_at_mut(inner);
        let sum = &mut rest[..inner];
        for block in x.data.chunks_exact_mut(len * inner) {
            softmax_strided(block, inner, max, sum);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, int, iota, params, run};

    /// Straightforward reference in f64 over numpy-order indices.
    fn reference(x: &[f32], s: Shape, axis: usize) -> Vec<f32> {
        let (outer, len, inner) = split_at_axis(&s, axis);
        let mut y = vec![0.0f32; x.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| (o * len + k) * inner + i;
                let m = (0..len).map(|k| x[at(k)] as f64).fold(f64::MIN, f64::max);
                let s: f64 = (0..len).map(|k| (x[at(k)] as f64 - m).exp()).sum();
                for k in 0..len {
                    y[at(k)] = ((x[at(k)] as f64 - m).exp() / s) as f32;
                }
            }
        }
        y
    }

    fn op(axis: i32) -> Softmax {
        Softmax::new(&params(&[(0, int(axis)), (1, int(1))])).unwrap()
    }

    #[test]
    fn one_d_by_hand() {
        let out = run(&op(0), &[(Shape::d1(3), vec![1.0, 2.0, 3.0])]).unwrap();
        let e = [(-2.0f32).exp(), (-1.0f32).exp(), 1.0];
        let s: f32 = e.iter().sum();
        assert_close(&out[0].1, &[e[0] / s, e[1] / s, e[2] / s], 1e-6);
    }

    #[test]
    fn every_axis_of_every_rank_including_negative() {
        let shapes = [
            Shape::d1(5),
            Shape::d2(3, 4),
            Shape::d3(3, 2, 5),
            Shape::d4(2, 3, 2, 3),
        ];
        for s in shapes {
            let x: Vec<f32> = iota(s.len())
                .iter()
                .map(|v| (v * 0.37).sin() * 4.0)
                .collect();
            for axis in 0..s.dims as i32 {
                let want = reference(&x, s, axis as usize);
                let got = run(&op(axis), &[(s, x.clone())]).unwrap();
                assert_close(&got[0].1, &want, 1e-6);
                let neg = axis - s.dims as i32;
                let got = run(&op(neg), &[(s, x.clone())]).unwrap();
                assert_close(&got[0].1, &want, 1e-6);
            }
        }
    }

    #[test]
    fn ssd_rows_of_21_classes() {
        let s = Shape::d2(21, 4);
        let x: Vec<f32> = iota(84).iter().map(|v| v * 0.1).collect();
        let got = run(&op(1), &[(s, x.clone())]).unwrap();
        assert_close(&got[0].1, &reference(&x, s, 1), 1e-6);
        for row in got[0].1.chunks(21) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn large_values_do_not_overflow() {
        let got = run(&op(0), &[(Shape::d1(2), vec![1000.0, 1000.0])]).unwrap();
        assert_eq!(got[0].1, vec![0.5, 0.5]);
    }

    #[test]
    fn errors() {
        let e = Softmax::new(&params(&[(0, int(1))])).unwrap_err();
        assert!(e.0.contains("param is too old"), "{e}");
        assert!(Softmax::new(&params(&[(0, int(-1))])).is_err());
        assert!(Softmax::new(&ParamDict::new()).is_ok());
        assert!(op(3).output_shapes(&[Shape::d3(2, 2, 2)]).is_err());
        assert!(op(-4).output_shapes(&[Shape::d3(2, 2, 2)]).is_err());
    }
}
