//! LayerNorm: `y = (x - mean) / sqrt(var + eps) * gamma + beta` over groups of consecutive
//! elements, in place (biased variance, two passes as ncnn computes it).
//!
//! Params: `0 = affine_size`, `1 = eps` (default 0.001), `2 = affine` (default 1). Weights when
//! `affine`: gamma and beta, `affine_size` raw floats each.
//!
//! Which elements form a group (ncnn's rule, also RMSNorm's, see [`norm_group`]): the whole
//! 1-D blob, each row of a 2-D blob; for 3-D / 4-D blobs each row when `affine_size == w`,
//! else (4-D) each `w x h` plane when `affine_size == w * h`, else each channel. With
//! `affine`, `affine_size` must equal the group size.

use super::elementwise::for_each_groups;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult, Result};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, WeightReader};
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct LayerNorm {
    pub affine_size: usize,
    pub eps: f32,
    /// gamma, beta (`affine_size` each) when affine.
    pub affine: Option<(Floats, Floats)>,
}

/// Elements per normalised group of `s` for a layer with `affine_size` (LayerNorm, RMSNorm).
pub(crate) fn norm_group(s: &Shape, affine_size: usize) -> usize {
    match s.dims {
        1 => s.w,
        2 => s.w,
        3 if affine_size == s.w => s.w,
        3 => s.w * s.h,
        _ if affine_size == s.w => s.w,
        _ if affine_size == s.w * s.h => s.w * s.h,
        _ => s.plane(),
    }
}

/// Checks the input of a grouped norm and returns it as the output shape.
pub(crate) fn norm_shapes(
    inputs: &[Shape],
    affine_size: usize,
    affine: bool,
) -> LayerResult<Vec<Shape>> {
    expect_inputs(inputs, 1)?;
    let group = norm_group(&inputs[0], affine_size);
    if affine && group != affine_size {
        return Err(invalid(format!(
            "input {} gives groups of {group} elements, affine_size is {affine_size}",
            inputs[0]
        )));
    }
    Ok(vec![inputs[0]])
}

/// `affine_size`, `eps` and `affine` (params 0, 1, 2) as LayerNorm and RMSNorm read them.
pub(crate) fn norm_params(pd: &ParamDict) -> LayerResult<(usize, f32, bool)> {
    let affine_size = pd.usize(0, 0)?;
    let eps = pd.float(1, 0.001)?;
    let affine = match pd.int(2, 1)? {
        0 => false,
        1 => true,
        a => return Err(invalid(format!("affine (param 2) must be 0 or 1, got {a}"))),
    };
    if !eps.is_finite() || eps < 0.0 {
        return Err(invalid(format!(
            "eps (param 1) must be finite and >= 0, got {eps}"
        )));
    }
    if affine && affine_size == 0 {
        return Err(invalid(
            "affine_size (param 0) must be positive when affine",
        ));
    }
    Ok((affine_size, eps, affine))
}

impl LayerNorm {
    pub fn new(pd: &ParamDict, w: &mut WeightReader) -> Result<LayerNorm> {
        let (affine_size, eps, affine) = norm_params(pd)?;
        let affine = if affine {
            Some((w.raw(affine_size, "gamma")?, w.raw(affine_size, "beta")?))
        } else {
            None
        };
        Ok(LayerNorm {
            affine_size,
            eps,
            affine,
        })
    }
}

/// Normalises one group in place.
fn layer_norm(x: &mut [f32], eps: f32, affine: Option<(&[f32], &[f32])>) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let a = 1.0 / (var + eps).sqrt();
    let b = -mean * a;
    match affine {
        Some((gamma, beta)) => {
            for ((v, g), be) in x.iter_mut().zip(gamma).zip(beta) {
                *v = (*v * a + b) * g + be;
            }
        }
        None => x.iter_mut().for_each(|v| *v = *v * a + b),
    }
}

impl Op for LayerNorm {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        norm_shapes(inputs, self.affine_size, self.affine.is_some())
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let group = norm_group(&x.shape, self.affine_size);
        let affine = self.affine.as_ref().map(|(g, b)| (&g[..], &b[..]));
        for_each_groups(ctx.pool, x.data, group, &|_, part| {
            part.chunks_exact_mut(group)
                .for_each(|g| layer_norm(g, self.eps, affine));
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::Source;
    use crate::ops::harness::{assert_close, float, int, iota, params, run, run_threads};
    use std::sync::Arc;

    fn reader(values: &[f32]) -> WeightReader {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "ln.bin")
    }

    /// f64 reference over groups of `g`.
    fn reference(x: &[f32], g: usize, eps: f32, affine: Option<(&[f32], &[f32])>) -> Vec<f32> {
        let mut y = Vec::new();
        for grp in x.chunks(g) {
            let n = g as f64;
            let m = grp.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = grp.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n;
            for (i, &v) in grp.iter().enumerate() {
                let mut o = (v as f64 - m) / (var + eps as f64).sqrt();
                if let Some((ga, be)) = affine {
                    o = o * ga[i] as f64 + be[i] as f64;
                }
                y.push(o as f32);
            }
        }
        y
    }

    fn plain(affine_size: i32, eps: f32) -> LayerNorm {
        let pd = params(&[(0, int(affine_size)), (1, float(eps)), (2, int(0))]);
        LayerNorm::new(&pd, &mut WeightReader::zeros()).unwrap()
    }

    #[test]
    fn by_hand() {
        // mean 2, var 2/3: (x - 2) / sqrt(2/3).
        let out = run(&plain(3, 0.0), &[(Shape::d1(3), vec![1.0, 2.0, 3.0])]).unwrap();
        let s = (2.0f32 / 3.0).sqrt();
        assert_close(&out[0].1, &[-1.0 / s, 0.0, 1.0 / s], 1e-6);
        // A constant group becomes 0 (b = -mean * a).
        let out = run(&plain(2, 1e-3), &[(Shape::d1(2), vec![5.0, 5.0])]).unwrap();
        assert_close(&out[0].1, &[0.0, 0.0], 1e-6);
    }

    #[test]
    fn groups_of_every_rank_and_affine_size() {
        let x = |s: Shape| -> Vec<f32> {
            iota(s.len())
                .iter()
                .map(|v| (v * 0.7).sin() * 3.0)
                .collect()
        };
        let cases = [
            (Shape::d1(7), 7, 7),
            (Shape::d2(5, 3), 5, 5),
            (Shape::d3(4, 3, 2), 4, 4),
            (Shape::d3(4, 3, 2), 12, 12),
            (Shape::d3(4, 3, 2), 9, 12),
            (Shape::d4(4, 3, 2, 2), 4, 4),
            (Shape::d4(4, 3, 2, 2), 12, 12),
            (Shape::d4(4, 3, 2, 2), 24, 24),
            (Shape::d4(4, 3, 2, 2), 0, 24),
            (Shape::d1(1), 1, 1),
        ];
        for (s, affine_size, group) in cases {
            assert_eq!(norm_group(&s, affine_size), group, "{s} {affine_size}");
            let xs = x(s);
            let got = run(&plain(affine_size as i32, 1e-5), &[(s, xs.clone())]).unwrap();
            assert_close(&got[0].1, &reference(&xs, group, 1e-5, None), 1e-5);
        }
    }

    #[test]
    fn affine_weights_and_threads() {
        let gamma: Vec<f32> = (0..16).map(|i| 0.5 + i as f32 * 0.1).collect();
        let beta: Vec<f32> = (0..16).map(|i| i as f32 * -0.2).collect();
        let mut w = reader(&[gamma.clone(), beta.clone()].concat());
        let pd = params(&[(0, int(16)), (1, float(1e-4))]);
        let op = LayerNorm::new(&pd, &mut w).unwrap();
        w.finish().unwrap();
        let s = Shape::d2(16, 2048);
        let xs: Vec<f32> = iota(s.len())
            .iter()
            .map(|v| (v * 0.31).cos() * 2.0)
            .collect();
        let want = reference(&xs, 16, 1e-4, Some((&gamma, &beta)));
        assert_close(
            &run_threads(&op, &[(s, xs.clone())], 3).unwrap()[0].1,
            &want,
            1e-5,
        );
        assert!(op.output_shapes(&[Shape::d2(8, 2)]).is_err());
        assert!(op.output_shapes(&[Shape::d3(16, 2, 2)]).is_ok());
    }

    #[test]
    fn errors() {
        let mut z = WeightReader::zeros();
        assert!(LayerNorm::new(&params(&[(0, int(0))]), &mut z).is_err());
        assert!(LayerNorm::new(&params(&[(0, int(-3))]), &mut z).is_err());
        assert!(LayerNorm::new(&params(&[(0, int(4)), (2, int(2))]), &mut z).is_err());
        assert!(LayerNorm::new(&params(&[(0, int(4)), (1, float(-1.0))]), &mut z).is_err());
        let mut short = reader(&[1.0; 7]);
        assert!(LayerNorm::new(&params(&[(0, int(4))]), &mut short).is_err());
        assert!(plain(4, 1e-3).output_shapes(&[]).is_err());
    }
}
