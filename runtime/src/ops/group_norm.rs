//! GroupNorm: the channels are split into `group` equal groups; each group is normalised over
//! all its elements, `y = (x - mean) / sqrt(var + eps) * gamma[ch] + beta[ch]`, in place.
//!
//! Params: `0 = group` (default 1), `1 = channels`, `2 = eps` (default 0.001), `3 = affine`
//! (default 1). Weights when `affine`: gamma and beta, `channels` raw floats each.
//! Channels are the outermost axis: elements of a 1-D blob, rows of a 2-D blob, channels of a
//! 3-D / 4-D blob; the input must have exactly `channels` of them.

use super::batch_norm::outer_groups;
use super::elementwise::for_each_groups;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult, Result};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, WeightReader};
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct GroupNorm {
    pub group: usize,
    pub channels: usize,
    pub eps: f32,
    /// gamma, beta (`channels` each) when affine.
    pub affine: Option<(Floats, Floats)>,
}

/// Normalises `x`, the `x.len() / size` channels of one group (`size` elements each), over all
/// its elements; channel `q` then gets `gamma[q]` / `beta[q]` of `affine`.
pub(crate) fn normalize_group(
    x: &mut [f32],
    size: usize,
    eps: f32,
    affine: Option<(&[f32], &[f32])>,
) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let root = (var + eps).sqrt();
    for (q, ch) in x.chunks_exact_mut(size).enumerate() {
        let (a, b) = match affine {
            Some((gamma, beta)) => {
                let a = gamma[q] / root;
                (a, -mean * a + beta[q])
            }
            None => {
                let a = 1.0 / root;
                (a, -mean * a)
            }
        };
        ch.iter_mut().for_each(|v| *v = *v * a + b);
    }
}

/// `eps` and `affine` of a norm layer, checked.
pub(crate) fn eps_affine(
    pd: &ParamDict,
    eps_key: usize,
    affine_key: usize,
) -> LayerResult<(f32, bool)> {
    let eps = pd.float(eps_key, 0.001)?;
    if !eps.is_finite() || eps < 0.0 {
        return Err(invalid(format!(
            "eps (param {eps_key}) must be finite and >= 0, got {eps}"
        )));
    }
    match pd.int(affine_key, 1)? {
        0 => Ok((eps, false)),
        1 => Ok((eps, true)),
        a => Err(invalid(format!(
            "affine (param {affine_key}) must be 0 or 1, got {a}"
        ))),
    }
}

impl GroupNorm {
    pub fn new(pd: &ParamDict, w: &mut WeightReader) -> Result<GroupNorm> {
        let group = pd.usize(0, 1)?;
        let channels = pd.usize(1, 0)?;
        let (eps, affine) = eps_affine(pd, 2, 3)?;
        if group == 0 || channels == 0 || channels % group != 0 {
            return Err(invalid(format!(
                "channels (param 1) = {channels} must be a positive multiple of group (param 0) = {group}"
            ))
            .into());
        }
        let affine = if affine {
            Some((w.raw(channels, "gamma")?, w.raw(channels, "beta")?))
        } else {
            None
        };
        Ok(GroupNorm {
            group,
            channels,
            eps,
            affine,
        })
    }
}

impl Op for GroupNorm {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let (channels, _) = outer_groups(&inputs[0]);
        if channels != self.channels {
            return Err(invalid(format!(
                "input {} has {channels} channels, the layer {}",
                inputs[0], self.channels
            )));
        }
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let (_, size) = outer_groups(&x.shape);
        let per_group = self.channels / self.group;
        let eps = self.eps;
        let affine = self.affine.as_ref().map(|(g, b)| (&g[..], &b[..]));
        for_each_groups(ctx.pool, x.data, per_group * size, &|first, part| {
            for (i, g) in part.chunks_exact_mut(per_group * size).enumerate() {
                let c0 = (first + i) * per_group;
                let aff = affine.map(|(ga, be)| (&ga[c0..c0 + per_group], &be[c0..c0 + per_group]));
                normalize_group(g, size, eps, aff);
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

    /// f64 reference: `groups` groups over `x` viewed as `channels` runs of `size`.
    fn reference(
        x: &[f32],
        channels: usize,
        groups: usize,
        eps: f32,
        gb: Option<(&[f32], &[f32])>,
    ) -> Vec<f32> {
        let size = x.len() / channels;
        let per = channels / groups * size;
        let mut y = vec![0.0; x.len()];
        for g in 0..groups {
            let part = &x[g * per..(g + 1) * per];
            let m = part.iter().map(|&v| v as f64).sum::<f64>() / per as f64;
            let var = part.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / per as f64;
            for (i, &v) in part.iter().enumerate() {
                let ch = (g * per + i) / size;
                let mut o = (v as f64 - m) / (var + eps as f64).sqrt();
                if let Some((ga, be)) = gb {
                    o = o * ga[ch] as f64 + be[ch] as f64;
                }
                y[g * per + i] = o as f32;
            }
        }
        y
    }

    fn plain(group: i32, channels: i32) -> GroupNorm {
        let pd = params(&[
            (0, int(group)),
            (1, int(channels)),
            (2, float(1e-5)),
            (3, int(0)),
        ]);
        GroupNorm::new(&pd, &mut WeightReader::zeros()).unwrap()
    }

    #[test]
    fn by_hand() {
        // Two groups of one channel of 2: each becomes (-1, 1) (var 1, eps 0).
        let pd = params(&[(0, int(2)), (1, int(2)), (2, float(0.0)), (3, int(0))]);
        let op = GroupNorm::new(&pd, &mut WeightReader::zeros()).unwrap();
        let out = run(&op, &[(Shape::d2(2, 2), vec![1.0, 3.0, 10.0, 12.0])]).unwrap();
        assert_close(&out[0].1, &[-1.0, 1.0, -1.0, 1.0], 1e-6);
    }

    #[test]
    fn every_rank() {
        let cases = [
            (Shape::d1(6), 3, 6),
            (Shape::d2(5, 4), 2, 4),
            (Shape::d3(3, 2, 6), 3, 6),
            (Shape::d4(3, 2, 2, 4), 4, 4),
            (Shape::d4(3, 2, 2, 4), 1, 4),
        ];
        for (s, groups, channels) in cases {
            let xs: Vec<f32> = iota(s.len())
                .iter()
                .map(|v| (v * 0.77).sin() * 2.0)
                .collect();
            let got = run(&plain(groups as i32, channels as i32), &[(s, xs.clone())]).unwrap();
            assert_close(
                &got[0].1,
                &reference(&xs, channels, groups, 1e-5, None),
                1e-5,
            );
        }
    }

    #[test]
    fn affine_and_threads() {
        let gamma: Vec<f32> = (0..8).map(|i| 0.5 + i as f32 * 0.25).collect();
        let beta: Vec<f32> = (0..8).map(|i| i as f32 * 0.1 - 0.3).collect();
        let bytes: Vec<u8> = gamma
            .iter()
            .chain(&beta)
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut w = WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "g.bin");
        let pd = params(&[(0, int(4)), (1, int(8)), (2, float(1e-3))]);
        let op = GroupNorm::new(&pd, &mut w).unwrap();
        w.finish().unwrap();
        let s = Shape::d3(40, 50, 8);
        let xs: Vec<f32> = iota(s.len()).iter().map(|v| (v * 0.011).cos()).collect();
        let want = reference(&xs, 8, 4, 1e-3, Some((&gamma, &beta)));
        assert_close(&run_threads(&op, &[(s, xs)], 3).unwrap()[0].1, &want, 1e-4);
    }

    #[test]
    fn errors() {
        let mut z = WeightReader::zeros();
        assert!(GroupNorm::new(&params(&[(0, int(3)), (1, int(8))]), &mut z).is_err());
        assert!(GroupNorm::new(&params(&[(0, int(0)), (1, int(8))]), &mut z).is_err());
        assert!(GroupNorm::new(&params(&[(0, int(1))]), &mut z).is_err());
        assert!(GroupNorm::new(&params(&[(0, int(2)), (1, int(8)), (3, int(5))]), &mut z).is_err());
        assert!(plain(2, 4).output_shapes(&[Shape::d3(2, 2, 6)]).is_err());
        assert!(plain(2, 4).output_shapes(&[Shape::d1(4)]).is_ok());
    }
}
