//! RMSNorm: `y = x / sqrt(mean(x^2) + eps) * gamma` over groups of consecutive elements, in
//! place.
//!
//! Params: `0 = affine_size`, `1 = eps` (default 0.001), `2 = affine` (default 1). Weights when
//! `affine`: gamma, `affine_size` raw floats. Groups are LayerNorm's
//! ([`super::layer_norm::norm_group`]); with `affine`, `affine_size` must equal the group size.

use super::elementwise::for_each_groups;
use super::layer_norm::{norm_group, norm_params, norm_shapes};
use super::{Ctx, Op, Storage};
use crate::error::{LayerResult, Result};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, WeightReader};
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct RmsNorm {
    pub affine_size: usize,
    pub eps: f32,
    pub gamma: Option<Floats>,
}

impl RmsNorm {
    pub fn new(pd: &ParamDict, w: &mut WeightReader) -> Result<RmsNorm> {
        let (affine_size, eps, affine) = norm_params(pd)?;
        let gamma = if affine {
            Some(w.raw(affine_size, "gamma")?)
        } else {
            None
        };
        Ok(RmsNorm {
            affine_size,
            eps,
            gamma,
        })
    }
}

fn rms_norm(x: &mut [f32], eps: f32, gamma: Option<&[f32]>) {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let a = 1.0 / (ms + eps).sqrt();
    match gamma {
        Some(g) => x.iter_mut().zip(g).for_each(|(v, g)| *v = (*v * a) * g),
        None => x.iter_mut().for_each(|v| *v *= a),
    }
}

impl Op for RmsNorm {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        norm_shapes(inputs, self.affine_size, self.gamma.is_some())
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let group = norm_group(&x.shape, self.affine_size);
        let gamma = self.gamma.as_deref();
        for_each_groups(ctx.pool, x.data, group, &|_, part| {
            part.chunks_exact_mut(group)
                .for_each(|g| rms_norm(g, self.eps, gamma));
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::Source;
    use crate::ops::harness::{assert_close, float, int, iota, params, run, run_threads};
    use std::sync::Arc;

    fn reference(x: &[f32], g: usize, eps: f32, gamma: Option<&[f32]>) -> Vec<f32> {
        let mut y = Vec::new();
        for grp in x.chunks(g) {
            let ms = grp.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / g as f64;
            for (i, &v) in grp.iter().enumerate() {
                let o = v as f64 / (ms + eps as f64).sqrt();
                y.push((o * gamma.map_or(1.0, |g| g[i] as f64)) as f32);
            }
        }
        y
    }

    fn plain(affine_size: i32, eps: f32) -> RmsNorm {
        let pd = params(&[(0, int(affine_size)), (1, float(eps)), (2, int(0))]);
        RmsNorm::new(&pd, &mut WeightReader::zeros()).unwrap()
    }

    #[test]
    fn by_hand() {
        // mean of squares (9 + 16) / 2 = 12.5.
        let out = run(&plain(2, 0.0), &[(Shape::d1(2), vec![3.0, -4.0])]).unwrap();
        let r = 12.5f32.sqrt();
        assert_close(&out[0].1, &[3.0 / r, -4.0 / r], 1e-6);
    }

    #[test]
    fn every_rank_and_group() {
        let cases = [
            (Shape::d1(5), 5, 5),
            (Shape::d2(6, 3), 6, 6),
            (Shape::d3(4, 3, 2), 4, 4),
            (Shape::d3(4, 3, 2), 5, 12),
            (Shape::d4(4, 3, 2, 2), 12, 12),
            (Shape::d4(4, 3, 2, 2), 1, 24),
        ];
        for (s, affine_size, group) in cases {
            let xs: Vec<f32> = iota(s.len()).iter().map(|v| (v * 0.9).sin()).collect();
            let got = run(&plain(affine_size, 1e-4), &[(s, xs.clone())]).unwrap();
            assert_close(&got[0].1, &reference(&xs, group, 1e-4, None), 1e-5);
        }
    }

    #[test]
    fn affine_and_threads() {
        let gamma: Vec<f32> = (0..8).map(|i| 1.0 - i as f32 * 0.3).collect();
        let bytes: Vec<u8> = gamma.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut w = WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "r.bin");
        let op = RmsNorm::new(&params(&[(0, int(8)), (1, float(1e-5))]), &mut w).unwrap();
        w.finish().unwrap();
        let s = Shape::d3(8, 512, 5);
        let xs: Vec<f32> = iota(s.len()).iter().map(|v| (v * 0.13).cos()).collect();
        let want = reference(&xs, 8, 1e-5, Some(&gamma));
        assert_close(&run_threads(&op, &[(s, xs)], 2).unwrap()[0].1, &want, 1e-5);
        assert!(op.output_shapes(&[Shape::d3(3, 2, 5)]).is_err());
    }

    #[test]
    fn errors() {
        let mut z = WeightReader::zeros();
        assert!(RmsNorm::new(&params(&[(0, int(0))]), &mut z).is_err());
        assert!(RmsNorm::new(&params(&[(0, int(3)), (2, int(-1))]), &mut z).is_err());
        assert!(RmsNorm::new(&params(&[(0, int(3)), (1, float(f32::NAN))]), &mut z).is_err());
    }
}
