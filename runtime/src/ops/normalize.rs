//! Normalize (L2), in place: divides by the root of the sum of squares over the whole blob
//! (`across_spatial` and `across_channel`), over each channel (`across_spatial` only) or over
//! the channels at each position (`across_channel` only), then multiplies by a learned scale.
//!
//! Params: `0 = across_spatial` (0), `4 = across_channel` (1), `1 = channel_shared` (0),
//! `2 = eps` (0.0001), `3 = scale_data_size`, `9 = eps_mode` (0 caffe `1/sqrt(ss + eps)`,
//! 1 pytorch `1/max(sqrt(ss), eps)`, 2 tensorflow `1/sqrt(max(ss, eps))`). Weights: the scales,
//! raw, `scale_data_size` floats.

use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult, Result};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, WeightReader};
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Normalize {
    pub across_spatial: bool,
    pub across_channel: bool,
    pub channel_shared: bool,
    pub eps: f32,
    pub eps_mode: i32,
    pub scale: Floats,
}

impl Normalize {
    pub fn new(pd: &ParamDict, w: &mut WeightReader) -> Result<Normalize> {
        let eps_mode = pd.int(9, 0)?;
        if !(0..=2).contains(&eps_mode) {
            return Err(invalid(format!("unknown eps_mode {eps_mode}")).into());
        }
        let n = pd.usize(3, 0)?;
        if n == 0 {
            return Err(invalid("scale_data_size (param 3) must be positive").into());
        }
        Ok(Normalize {
            across_spatial: pd.int(0, 0)? != 0,
            across_channel: pd.int(4, 1)? != 0,
            channel_shared: pd.int(1, 0)? != 0,
            eps: pd.float(2, 0.0001)?,
            eps_mode,
            scale: w.raw(n, "scale")?,
        })
    }

    fn inv_norm(&self, ss: f32) -> f32 {
        match self.eps_mode {
            0 => 1.0 / (ss + self.eps).sqrt(),
            1 => {
                let r = ss.sqrt();
                1.0 / if r < self.eps { self.eps } else { r }
            }
            _ => 1.0 / (if ss < self.eps { self.eps } else { ss }).sqrt(),
        }
    }

    fn scale_of(&self, q: usize) -> f32 {
        if self.channel_shared {
            self.scale[0]
        } else {
            self.scale[q]
        }
    }
}

impl Op for Normalize {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let c = inputs[0].c;
        if !self.channel_shared && self.scale.len() < c {
            return Err(invalid(format!(
                "input {} needs {c} scales, the layer has {}",
                inputs[0],
                self.scale.len()
            )));
        }
        Ok(vec![inputs[0]])
    }

    fn storage(&self) -> Storage {
        Storage::InPlace
    }

    fn scratch_len(&self, inputs: &[Shape], _outputs: &[Shape]) -> usize {
        if !self.across_spatial && self.across_channel {
            inputs[0].plane()
        } else {
            0
        }
    }

    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let (c, size) = (x.shape.c, x.shape.plane());
        let square_sum = |v: &[f32]| v.iter().fold(0.0f32, |s, &p| s + p * p);
        match (self.across_spatial, self.across_channel) {
            (true, true) => {
                // Per-channel sums first, then their total, as ncnn does.
                let mut ss = 0.0f32;
                for ch in x.data.chunks_exact(size) {
                    ss += square_sum(ch);
                }
                let a = self.inv_norm(ss);
                for (q, ch) in x.data.chunks_exact_mut(size).enumerate() {
                    let s = a * self.scale_of(q);
                    ch.iter_mut().for_each(|v| *v *= s);
                }
            }
            (true, false) => {
                for (q, ch) in x.data.chunks_exact_mut(size).enumerate() {
                    let s = self.inv_norm(square_sum(ch)) * self.scale_of(q);
                    ch.iter_mut().for_each(|v| *v *= s);
                }
            }
            (false, true) => {
                if ctx.scratch.len() < size {
                    return Err(invalid("normalize scratch too small"));
                }
                let inv = &mut ctx.scratch[..size];
                for (i, a) in inv.iter_mut().enumerate() {
                    let mut ss = 0.0f32;
                    for q in 0..c {
                        let v = x.data[q * size + i];
                        ss += v * v;
                    }
                    *a = self.inv_norm(ss);
                    if self.channel_shared {
                        *a *= self.scale[0];
                    }
                }
                for (q, ch) in x.data.chunks_exact_mut(size).enumerate() {
                    if self.channel_shared {
                        ch.iter_mut().zip(inv.iter()).for_each(|(v, a)| *v *= a);
                    } else {
                        // (x * a) * scale, in ncnn's order.
                        let s = self.scale[q];
                        ch.iter_mut()
                            .zip(inv.iter())
                            .for_each(|(v, a)| *v = *v * a * s);
                    }
                }
            }
            (false, false) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, run};

    fn op(spatial: bool, channel: bool, shared: bool, eps_mode: i32, scale: &[f32]) -> Normalize {
        Normalize {
            across_spatial: spatial,
            across_channel: channel,
            channel_shared: shared,
            eps: 0.0,
            eps_mode,
            scale: Floats::owned(scale.to_vec()),
        }
    }

    // Two channels of two elements: [3, 0], [4, 0].
    fn x() -> (Shape, Vec<f32>) {
        (Shape::d3(2, 1, 2), vec![3.0, 0.0, 4.0, 0.0])
    }

    #[test]
    fn across_channel_per_position() {
        // Position 0: norm 5; position 1: norm 0 -> 1/0 = inf times 0 = NaN (eps 0, as ncnn).
        let out = run(&op(false, true, false, 0, &[1.0, 2.0]), &[x()]).unwrap();
        assert_close(&out[0].1[..1], &[0.6], 1e-6);
        assert_close(&out[0].1[2..3], &[1.6], 1e-6);
        let mut o = op(false, true, true, 0, &[10.0]);
        o.eps = 1e-12;
        let out = run(&o, &[x()]).unwrap();
        assert_close(&out[0].1, &[6.0, 0.0, 8.0, 0.0], 1e-5);
    }

    #[test]
    fn across_spatial_and_whole_blob() {
        let out = run(&op(true, false, false, 0, &[1.0, 1.0]), &[x()]).unwrap();
        assert_close(&out[0].1, &[1.0, 0.0, 1.0, 0.0], 1e-6);
        let out = run(&op(true, true, true, 1, &[2.0]), &[x()]).unwrap();
        assert_close(&out[0].1, &[1.2, 0.0, 1.6, 0.0], 1e-6);
        let out = run(&op(false, false, true, 0, &[2.0]), &[x()]).unwrap();
        assert_eq!(out[0].1, x().1);
    }

    #[test]
    fn eps_modes() {
        let mut o = op(true, true, true, 0, &[1.0]);
        o.eps = 100.0;
        assert_close(&[o.inv_norm(25.0)], &[1.0 / 125f32.sqrt()], 1e-7);
        o.eps_mode = 1;
        assert_eq!(o.inv_norm(25.0), 0.01);
        o.eps_mode = 2;
        assert_eq!(o.inv_norm(25.0), 0.1);
    }

    #[test]
    fn errors() {
        let mut w = WeightReader::zeros();
        use crate::ops::harness::{int, params};
        assert!(Normalize::new(&ParamDict::new(), &mut w).is_err());
        assert!(Normalize::new(&params(&[(3, int(1)), (9, int(3))]), &mut w).is_err());
        let n = Normalize::new(&params(&[(3, int(2))]), &mut w).unwrap();
        assert!(n.output_shapes(&[Shape::d3(2, 2, 3)]).is_err());
    }
}
