//! BatchNorm at inference, folded at load into one multiply-add per element:
//! `b = slope / sqrt(var + eps)`, `a = bias - slope * mean / sqrt(var + eps)`, `y = b * x + a`
//! (a zero square root is replaced by 0.0001 as ncnn does).
//!
//! Params: `0 = channels`, `1 = eps`. Weights (raw, `channels` each): slope, mean, var, bias.
//! The statistics index the outermost axis: elements of a 1-D blob, rows of a 2-D blob,
//! channels of a 3-D / 4-D blob.

use super::elementwise::for_each_groups;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult, Result};
use crate::model::paramdict::ParamDict;
use crate::model::weights::WeightReader;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct BatchNorm {
    /// Per-channel multiplier.
    pub b: Vec<f32>,
    /// Per-channel offset.
    pub a: Vec<f32>,
}

/// (number of groups along the outermost axis, elements per group), as ncnn's per-channel
/// layers (BatchNorm, Scale, PReLU) see a blob.
pub(crate) fn outer_groups(s: &Shape) -> (usize, usize) {
    match s.dims {
        1 => (s.w, 1),
        2 => (s.h, s.w),
        _ => (s.c, s.plane()),
    }
}

impl BatchNorm {
    pub fn new(pd: &ParamDict, w: &mut WeightReader) -> Result<BatchNorm> {
        let channels = pd.usize(0, 0)?;
        if channels == 0 {
            return Err(invalid("channels (param 0) must be positive").into());
        }
        let eps = pd.float(1, 0.0)?;
        let slope = w.raw(channels, "slope")?;
        let mean = w.raw(channels, "mean")?;
        let var = w.raw(channels, "var")?;
        let bias = w.raw(channels, "bias")?;
        Ok(BatchNorm::fold(&slope, &mean, &var, &bias, eps))
    }

    /// Folds the statistics into `b * x + a`, with ncnn's order of operations.
    pub fn fold(slope: &[f32], mean: &[f32], var: &[f32], bias: &[f32], eps: f32) -> BatchNorm {
        let n = slope.len();
        let (mut a, mut b) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let mut sqrt_var = (var[i] + eps).sqrt();
            if sqrt_var == 0.0 {
                sqrt_var = 0.0001;
            }
            a.push(bias[i] - slope[i] * mean[i] / sqrt_var);
            b.push(slope[i] / sqrt_var);
        }
        BatchNorm { b, a }
    }
}

impl Op for BatchNorm {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let (groups, _) = outer_groups(&inputs[0]);
        if groups > self.b.len() {
            return Err(invalid(format!(
                "input {} has {groups} channels, the layer has statistics for {}",
                inputs[0],
                self.b.len()
            )));
        }
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let (_, size) = outer_groups(&x.shape);
        for_each_groups(ctx.pool, x.data, size, &|first, part| {
            for (i, group) in part.chunks_exact_mut(size).enumerate() {
                let (b, a) = (self.b[first + i], self.a[first + i]);
                group.iter_mut().for_each(|v| *v = b * *v + a);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::Source;
    use crate::ops::harness::{assert_close, float, int, params, run};
    use std::sync::Arc;

    fn reader(values: &[f32]) -> WeightReader {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "bn.bin")
    }

    #[test]
    fn folds_and_applies_per_channel() {
        // slope, mean, var, bias for 2 channels; eps 0.
        let mut w = reader(&[2.0, 1.0, 1.0, 3.0, 4.0, 0.0, 0.5, -1.0]);
        let op = BatchNorm::new(&params(&[(0, int(2))]), &mut w).unwrap();
        w.finish().unwrap();
        // ch0: b = 2/2 = 1, a = 0.5 - 2*1/2 = -0.5; ch1: sqrt 0 -> 1e-4, b = 1e4, a = -1 - 3e4.
        assert_close(&op.b, &[1.0, 1.0e4], 1e-6);
        assert_close(&op.a, &[-0.5, -1.0 - 3.0e4], 1e-6);
        let out = run(&op, &[(Shape::d3(2, 1, 2), vec![1.0, 2.0, 0.0, 1.0])]).unwrap();
        assert_close(&out[0].1, &[0.5, 1.5, -30001.0, -20001.0], 1e-6);
    }

    #[test]
    fn indexes_rows_of_2d_and_elements_of_1d() {
        let op = BatchNorm {
            b: vec![1.0, 2.0, 3.0],
            a: vec![0.0, 0.0, 1.0],
        };
        let out = run(&op, &[(Shape::d2(2, 3), vec![1.0; 6])]).unwrap();
        assert_eq!(out[0].1, vec![1.0, 1.0, 2.0, 2.0, 4.0, 4.0]);
        let out = run(&op, &[(Shape::d1(3), vec![1.0; 3])]).unwrap();
        assert_eq!(out[0].1, vec![1.0, 2.0, 4.0]);
    }

    #[test]
    fn eps_is_added_before_the_root() {
        let op = BatchNorm::fold(&[1.0], &[0.0], &[3.0], &[0.0], 1.0);
        assert_eq!(op.b, vec![0.5]);
    }

    #[test]
    fn errors() {
        let mut w = WeightReader::zeros();
        assert!(BatchNorm::new(&ParamDict::new(), &mut w).is_err());
        let mut short = reader(&[1.0; 7]);
        assert!(BatchNorm::new(&params(&[(0, int(2))]), &mut short).is_err());
        let op = BatchNorm::new(&params(&[(0, int(2)), (1, float(1e-5))]), &mut w).unwrap();
        assert!(op.output_shapes(&[Shape::d3(4, 4, 3)]).is_err());
    }
}
