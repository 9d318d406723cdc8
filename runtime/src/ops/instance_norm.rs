//! InstanceNorm: every channel normalised over its own elements,
//! `y = (x - mean) / sqrt(var + eps) * gamma[c] + beta[c]`, in place.
//!
//! Params: `0 = channels`, `1 = eps` (default 0.001), `2 = affine` (default 1). Weights when
//! `affine`: gamma and beta, `channels` raw floats each. The input is 3-D or 4-D with exactly
//! `channels` channels (ncnn reads other ranks as one channel and then runs past the blob).

use super::elementwise::for_each_groups;
use super::group_norm::{eps_affine, normalize_group};
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult, Result};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, WeightReader};
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct InstanceNorm {
    pub channels: usize,
    pub eps: f32,
    pub affine: Option<(Floats, Floats)>,
}

impl InstanceNorm {
    pub fn new(pd: &ParamDict, w: &mut WeightReader) -> Result<InstanceNorm> {
        let channels = pd.usize(0, 0)?;
        let (eps, affine) = eps_affine(pd, 1, 2)?;
        if channels == 0 {
            return Err(invalid("channels (param 0) must be positive").into());
        }
        let affine = if affine {
            Some((w.raw(channels, "gamma")?, w.raw(channels, "beta")?))
        } else {
            None
        };
        Ok(InstanceNorm {
            channels,
            eps,
            affine,
        })
    }
}

impl Op for InstanceNorm {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let s = inputs[0];
        if s.dims < 3 || s.c != self.channels {
            return Err(invalid(format!(
                "input {s} must be 3-D or 4-D with {} channels",
                self.channels
            )));
        }
        Ok(vec![s])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let size = x.shape.plane();
        let eps = self.eps;
        let affine = self.affine.as_ref().map(|(g, b)| (&g[..], &b[..]));
        for_each_groups(ctx.pool, x.data, size, &|first, part| {
            for (i, ch) in part.chunks_exact_mut(size).enumerate() {
                let q = first + i;
                let aff = affine.map(|(g, b)| (&g[q..q + 1], &b[q..q + 1]));
                normalize_group(ch, size, eps, aff);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::Source;
    use crate::ops::harness::{assert_close, float, int, iota, params, run, run_threads};
    use std::sync::Arc;

    #[test]
    fn by_hand_with_affine() {
        // Channel 0: (1, 3) -> (-1, 1) * 2 + 1; channel 1: (5, 5) -> 0 * 3 - 1.
        let bytes: Vec<u8> = [2.0f32, 3.0, 1.0, -1.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut w = WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "i.bin");
        let op = InstanceNorm::new(&params(&[(0, int(2)), (1, float(1e-6))]), &mut w).unwrap();
        w.finish().unwrap();
        let out = run(&op, &[(Shape::d3(2, 1, 2), vec![1.0, 3.0, 5.0, 5.0])]).unwrap();
        assert_close(&out[0].1, &[-1.0, 3.0, -1.0, -1.0], 1e-5);
    }

    #[test]
    fn per_channel_3d_4d_threads() {
        let op = InstanceNorm::new(
            &params(&[(0, int(5)), (1, float(1e-4)), (2, int(0))]),
            &mut WeightReader::zeros(),
        )
        .unwrap();
        for s in [Shape::d3(7, 3, 5), Shape::d4(64, 32, 2, 5)] {
            let xs: Vec<f32> = iota(s.len())
                .iter()
                .map(|v| (v * 0.3).sin() + v * 1e-3)
                .collect();
            let mut want = Vec::new();
            for ch in xs.chunks(s.plane()) {
                let n = ch.len() as f64;
                let m = ch.iter().map(|&v| v as f64).sum::<f64>() / n;
                let var = ch.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n;
                want.extend(
                    ch.iter()
                        .map(|&v| ((v as f64 - m) / (var + 1e-4).sqrt()) as f32),
                );
            }
            assert_close(&run_threads(&op, &[(s, xs)], 2).unwrap()[0].1, &want, 1e-4);
        }
    }

    #[test]
    fn errors() {
        let mut z = WeightReader::zeros();
        assert!(InstanceNorm::new(&ParamDict::new(), &mut z).is_err());
        assert!(InstanceNorm::new(&params(&[(0, int(2)), (2, int(3))]), &mut z).is_err());
        assert!(
            InstanceNorm::new(&params(&[(0, int(2)), (1, float(f32::INFINITY))]), &mut z).is_err()
        );
        let op = InstanceNorm::new(&params(&[(0, int(2))]), &mut z).unwrap();
        assert!(op.output_shapes(&[Shape::d2(4, 2)]).is_err());
        assert!(op.output_shapes(&[Shape::d3(4, 2, 3)]).is_err());
        assert!(op.output_shapes(&[Shape::d3(4, 2, 2)]).is_ok());
    }
}
