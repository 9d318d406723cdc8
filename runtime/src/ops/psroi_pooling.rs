//! PSROIPooling (R-FCN): position-sensitive average pooling of one region of interest, as
//! ncnn's layer does. Output channel q, bin (ph, pw) averages input channel
//! `(q * pooled_h + ph) * pooled_w + pw` over that bin.
//!
//! Params: `0 = pooled_width` (7), `1 = pooled_height` (7), `2 = spatial_scale` (0.0625),
//! `3 = output_dim` (required, > 0).
//!
//! Inputs: the 3-D feature map `w x h x (output_dim * pooled_h * pooled_w)` (ncnn fails at
//! run time on another channel count; here it is a load error), and the ROI blob whose first
//! four values are `x1, y1, x2, y2` (only the first ROI is read). Output: 3-D `pooled_w x
//! pooled_h x output_dim`.
//!
//! ncnn's arithmetic, in f32: `x1' = round(x1) * scale`, `x2' = round(x2 + 1) * scale`
//! (likewise y; round half away from zero), span `max(x2' - x1', 0.1)`, bin = span /
//! pooled; bin (ph, pw) covers rows `floor(y1' + ph * bin_h) .. ceil(y1' + (ph + 1) *
//! bin_h)` (likewise columns), clamped to the map. The output is the row-major sum over the
//! bin divided by its cell count, 0 for an empty bin.

use super::roi_pooling::{check_roi, clamp_range, pooled_size, spatial_scale};
use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Debug)]
pub struct PsRoiPooling {
    pub pooled_w: usize,
    pub pooled_h: usize,
    pub spatial_scale: f32,
    pub output_dim: usize,
}

impl PsRoiPooling {
    pub fn new(pd: &ParamDict) -> LayerResult<PsRoiPooling> {
        let output_dim = pd.int(3, 0)?;
        let output_dim = usize::try_from(output_dim)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| {
                invalid(format!(
                    "output_dim (key 3) is {output_dim}; it must be positive"
                ))
            })?;
        Ok(PsRoiPooling {
            pooled_w: pooled_size(pd, 0, 7, "pooled_width")?,
            pooled_h: pooled_size(pd, 1, 7, "pooled_height")?,
            spatial_scale: spatial_scale(pd, 0.0625)?,
            output_dim,
        })
    }
}

impl Op for PsRoiPooling {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 2)?;
        let feat = inputs[0];
        let want = self
            .output_dim
            .checked_mul(self.pooled_w * self.pooled_h)
            .ok_or_else(|| invalid("output_dim x pooled_w x pooled_h overflows"))?;
        if feat.dims != 3 || feat.c != want {
            return Err(invalid(format!(
                "feature input {feat} must be 3-D with output_dim x pooled_h x pooled_w = \
                 {want} channels"
            )));
        }
        check_roi(inputs[1])?;
        Ok(vec![Shape::checked(
            3,
            self.pooled_w,
            self.pooled_h,
            1,
            self.output_dim,
        )?])
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        _ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let (feat, roi) = (&inputs[0], inputs[1].data);
        let (w, h) = (feat.shape.w, feat.shape.h);
        let s = self.spatial_scale;
        let (x1, y1) = (roi[0].round() * s, roi[1].round() * s);
        let (x2, y2) = ((roi[2] + 1.0).round() * s, (roi[3] + 1.0).round() * s);
        let bin_w = (x2 - x1).max(0.1) / self.pooled_w as f32;
        let bin_h = (y2 - y1).max(0.1) / self.pooled_h as f32;
        let (pw_n, ph_n) = (self.pooled_w, self.pooled_h);
        let out = &mut outputs[0];
        for q in 0..self.output_dim {
            let dst = out.channel_mut(q);
            for ph in 0..ph_n {
                let (hs, he) = clamp_range(
                    (y1 + ph as f32 * bin_h).floor() as i64,
                    (y1 + (ph + 1) as f32 * bin_h).ceil() as i64,
                    h,
                );
                for pw in 0..pw_n {
                    let (ws, we) = clamp_range(
                        (x1 + pw as f32 * bin_w).floor() as i64,
                        (x1 + (pw + 1) as f32 * bin_w).ceil() as i64,
                        w,
                    );
                    let src = feat.channel((q * ph_n + ph) * pw_n + pw);
                    let mut v = 0.0;
                    if he > hs && we > ws {
                        let mut sum = 0.0f32;
                        for y in hs..he {
                            for &x in &src[y * w + ws..y * w + we] {
                                sum += x;
                            }
                        }
                        v = sum / ((he - hs) * (we - ws)) as f32;
                    }
                    dst[ph * pw_n + pw] = v;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, float, int, params, run};

    fn op(pw: i32, ph: i32, scale: f32, dim: i32) -> PsRoiPooling {
        PsRoiPooling::new(&params(&[
            (0, int(pw)),
            (1, int(ph)),
            (2, float(scale)),
            (3, int(dim)),
        ]))
        .unwrap()
    }

    #[test]
    fn position_sensitive_means() {
        // 2 x 2 bins, output_dim 1: 4 input channels 4 x 4; channel k is 100 k + (y * 4 + x).
        let x: Vec<f32> = (0..4)
            .flat_map(|k| (0..16).map(move |i| (100 * k + i) as f32))
            .collect();
        let x = (Shape::d3(4, 4, 4), x);
        // ROI (0, 0)-(3, 3), scale 1: x2' = 4, bins of 2: bin (ph, pw) averages quadrant
        // (ph, pw) of channel 2 ph + pw.
        let roi = (Shape::d1(4), vec![0.0, 0.0, 3.0, 3.0]);
        let out = run(&op(2, 2, 1.0, 1), &[x.clone(), roi]).unwrap().remove(0);
        assert_eq!(out.0, Shape::d3(2, 2, 1));
        assert_close(&out.1, &[2.5, 104.5, 210.5, 312.5], 0.0);
        // ROI (1, 1)-(1.4, 1.6) -> x1' 1, x2' round(2.4) = 2, y2' round(2.6) = 3: width 1,
        // height 2; bins 0.5 x 1.
        let roi = (Shape::d1(4), vec![1.0, 1.0, 1.4, 1.6]);
        let out = run(&op(2, 2, 1.0, 1), &[x, roi]).unwrap().remove(0);
        // ph 0: row 1; ph 1: row 2; pw 0: col floor(1)..ceil(1.5) = 1..2, pw 1: 1..2.
        assert_close(&out.1, &[5.0, 105.0, 209.0, 309.0], 0.0);
    }

    #[test]
    fn empty_bins_are_zero() {
        let x = (Shape::d3(2, 2, 2), vec![1.0; 8]);
        let roi = (Shape::d1(4), vec![50.0, 50.0, 60.0, 60.0]);
        let out = run(&op(1, 1, 1.0, 2), &[x, roi]).unwrap().remove(0);
        assert_eq!(out.1, [0.0, 0.0]);
    }

    #[test]
    fn bad_params_and_shapes() {
        let e = PsRoiPooling::new(&params(&[])).unwrap_err();
        assert!(e.0.contains("output_dim"), "{e}");
        let e = PsRoiPooling::new(&params(&[(3, int(2)), (0, int(0))])).unwrap_err();
        assert!(e.0.contains("pooled_width"), "{e}");
        let p = op(2, 2, 1.0, 3);
        let e = p
            .output_shapes(&[Shape::d3(4, 4, 11), Shape::d1(4)])
            .unwrap_err();
        assert!(e.0.contains("12 channels"), "{e}");
        assert!(p
            .output_shapes(&[Shape::d3(4, 4, 12), Shape::d1(2)])
            .is_err());
        assert_eq!(
            p.output_shapes(&[Shape::d3(4, 4, 12), Shape::d2(4, 3)])
                .unwrap()[0],
            Shape::d3(2, 2, 3)
        );
    }
}
