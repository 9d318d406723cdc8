//! ROIPooling (Fast R-CNN): max pooling of one region of interest of a feature map into a
//! fixed `pooled_w x pooled_h` grid per channel, as ncnn's layer does.
//!
//! Params: `0 = pooled_width`, `1 = pooled_height` (both required, > 0), `2 = spatial_scale`
//! (1.0; feature-map cells per ROI coordinate unit, e.g. 1/16).
//!
//! Inputs: the 3-D feature map `w x h x c`, and the ROI blob whose first four values are
//! `x1, y1, x2, y2` in input coordinates (ncnn reads only the first ROI; any further values
//! are ignored). Output: 3-D `pooled_w x pooled_h x c`.
//!
//! ncnn's arithmetic: the corners are `round(v * spatial_scale)` (half away from zero, as
//! integers), the ROI spans `max(x2 - x1 + 1, 1)` by `max(y2 - y1 + 1, 1)` cells, a bin is
//! `span / pooled` wide (f32), and bin (ph, pw) covers rows `y1 + max(ceil(ph * bin_h) - 1,
//! 0) .. y1 + ceil((ph + 1) * bin_h)` (likewise columns), clamped to the map. The output is
//! the maximum over the bin, 0 for an empty bin.
//!
//! The start is what ncnn (PyPI 1.0.20261020) computes, checked on random ROIs: it equals
//! `floor(ph * bin_h)` except where `ph * bin_h` is a whole number, where ncnn's bin starts
//! one cell earlier (bins of a whole-number size overlap their predecessor by one cell).
//! ncnn's older published source reads `floor(ph * bin_h)`.

use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Debug)]
pub struct RoiPooling {
    pub pooled_w: usize,
    pub pooled_h: usize,
    pub spatial_scale: f32,
}

/// A pooled-size param that must be positive.
pub(crate) fn pooled_size(
    pd: &ParamDict,
    key: usize,
    default: i32,
    what: &str,
) -> LayerResult<usize> {
    let v = pd.int(key, default)?;
    usize::try_from(v)
        .ok()
        .filter(|&v| v > 0 && v <= 1 << 16)
        .ok_or_else(|| invalid(format!("{what} (key {key}) is {v}; it must be 1 to 65536")))
}

/// The spatial scale: finite (ncnn does not check; a NaN or infinite scale has no meaning).
pub(crate) fn spatial_scale(pd: &ParamDict, default: f32) -> LayerResult<f32> {
    let s = pd.float(2, default)?;
    if !s.is_finite() {
        return Err(invalid(format!(
            "spatial_scale (key 2) is {s}; it must be finite"
        )));
    }
    Ok(s)
}

/// Checks the ROI blob: at least the four corner values.
pub(crate) fn check_roi(roi: Shape) -> LayerResult<()> {
    if roi.len() < 4 {
        return Err(invalid(format!(
            "roi input {roi} needs 4 values (x1, y1, x2, y2)"
        )));
    }
    Ok(())
}

/// `[start, end)` clamped to `[0, n]`.
#[inline]
pub(crate) fn clamp_range(start: i64, end: i64, n: usize) -> (usize, usize) {
    let n = n as i64;
    (start.clamp(0, n) as usize, end.clamp(0, n) as usize)
}

impl RoiPooling {
    pub fn new(pd: &ParamDict) -> LayerResult<RoiPooling> {
        Ok(RoiPooling {
            pooled_w: pooled_size(pd, 0, 0, "pooled_width")?,
            pooled_h: pooled_size(pd, 1, 0, "pooled_height")?,
            spatial_scale: spatial_scale(pd, 1.0)?,
        })
    }
}

impl Op for RoiPooling {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 2)?;
        let feat = inputs[0];
        if feat.dims != 3 {
            return Err(invalid(format!(
                "feature input {feat} must be 3-D (w x h x c)"
            )));
        }
        check_roi(inputs[1])?;
        Ok(vec![Shape::checked(
            3,
            self.pooled_w,
            self.pooled_h,
            1,
            feat.c,
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
        let corner = |v: f32| (v * self.spatial_scale).round() as i64;
        let (x1, y1, x2, y2) = (
            corner(roi[0]),
            corner(roi[1]),
            corner(roi[2]),
            corner(roi[3]),
        );
        let roi_w = (x2 - x1 + 1).max(1);
        let roi_h = (y2 - y1 + 1).max(1);
        let bin_w = roi_w as f32 / self.pooled_w as f32;
        let bin_h = roi_h as f32 / self.pooled_h as f32;
        // ncnn adds the integer corner to the bin edge in f32.
        let edge = |origin: i64, v: f32| (origin as f32 + v) as i64;
        let start = |p: usize, bin: f32| ((p as f32 * bin).ceil() - 1.0).max(0.0);
        let out = &mut outputs[0];
        for q in 0..feat.shape.c {
            let src = feat.channel(q);
            let dst = out.channel_mut(q);
            for ph in 0..self.pooled_h {
                let (hs, he) = clamp_range(
                    edge(y1, start(ph, bin_h)),
                    edge(y1, ((ph + 1) as f32 * bin_h).ceil()),
                    h,
                );
                for pw in 0..self.pooled_w {
                    let (ws, we) = clamp_range(
                        edge(x1, start(pw, bin_w)),
                        edge(x1, ((pw + 1) as f32 * bin_w).ceil()),
                        w,
                    );
                    let mut max = 0.0;
                    if he > hs && we > ws {
                        max = src[hs * w + ws];
                        for y in hs..he {
                            for &v in &src[y * w + ws..y * w + we] {
                                if max < v {
                                    max = v;
                                }
                            }
                        }
                    }
                    dst[ph * self.pooled_w + pw] = max;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{float, int, iota, params, run};

    fn op(pw: i32, ph: i32, scale: f32) -> RoiPooling {
        RoiPooling::new(&params(&[(0, int(pw)), (1, int(ph)), (2, float(scale))])).unwrap()
    }

    #[test]
    fn max_over_bins() {
        // 4 x 4 map 0..15, ROI (0, 0)-(3, 3) into 2 x 2: maxima of the quadrants.
        let x = (Shape::d3(4, 4, 1), iota(16));
        let roi = (Shape::d1(4), vec![0.0, 0.0, 3.0, 3.0]);
        let out = run(&op(2, 2, 1.0), &[x.clone(), roi]).unwrap().remove(0);
        assert_eq!(out.0, Shape::d3(2, 2, 1));
        assert_eq!(out.1, [5.0, 7.0, 13.0, 15.0]);
        // Scale 0.5: corners (2, 2, 6, 6) -> (1, 1)-(3, 3), a 3 x 3 span; bins of 1.5 cover
        // rows/cols 1..3 and 2..4.
        let roi = (Shape::d1(4), vec![2.0, 2.0, 6.0, 6.0]);
        let out = run(&op(2, 2, 0.5), &[x.clone(), roi]).unwrap().remove(0);
        assert_eq!(out.1, [10.0, 11.0, 14.0, 15.0]);
        // 2 x 1 output over one row (y1 = y2 = 1): columns 0..2 and 2..4.
        let roi = (Shape::d2(4, 1), vec![0.0, 1.0, 3.0, 1.0]);
        let out = run(&op(2, 1, 1.0), &[x, roi]).unwrap().remove(0);
        assert_eq!(out.1, [5.0, 7.0]);
        // Bins of a whole-number size (2) start one cell early, as in ncnn: on a decreasing
        // map, bin 1 covers columns / rows 1..4, not 2..4.
        let x = (Shape::d3(4, 4, 1), iota(16).iter().map(|v| -v).collect());
        let roi = (Shape::d1(4), vec![0.0, 0.0, 3.0, 3.0]);
        let out = run(&op(2, 2, 1.0), &[x, roi]).unwrap().remove(0);
        assert_eq!(out.1, [0.0, -1.0, -4.0, -5.0]);
    }

    #[test]
    fn outside_and_degenerate_rois() {
        let x = (
            Shape::d3(3, 2, 2),
            (0..12).map(|v| -(v as f32)).collect::<Vec<_>>(),
        );
        // Entirely to the right of the map: every bin empty -> 0.
        let roi = (Shape::d1(4), vec![10.0, 0.0, 12.0, 1.0]);
        let out = run(&op(2, 2, 1.0), &[x.clone(), roi]).unwrap().remove(0);
        assert_eq!(out.1, [0.0; 8]);
        // x2 < x1: a one-cell span; bins at column 2 (ceil of 0.5 -> 1 cell each).
        let roi = (Shape::d1(5), vec![2.0, 1.0, 0.0, 1.0, 99.0]);
        let out = run(&op(2, 1, 1.0), &[x, roi]).unwrap().remove(0);
        assert_eq!(out.1, [-5.0, -5.0, -11.0, -11.0]);
    }

    #[test]
    fn bad_params_and_shapes() {
        let e = RoiPooling::new(&params(&[(1, int(2))])).unwrap_err();
        assert!(e.0.contains("pooled_width"), "{e}");
        let e = RoiPooling::new(&params(&[(0, int(2)), (1, int(-1))])).unwrap_err();
        assert!(e.0.contains("pooled_height"), "{e}");
        let e = RoiPooling::new(&params(&[(0, int(2)), (1, int(2)), (2, float(f32::NAN))]))
            .unwrap_err();
        assert!(e.0.contains("spatial_scale"), "{e}");
        let r = op(2, 2, 1.0);
        assert!(r.output_shapes(&[Shape::d2(4, 4), Shape::d1(4)]).is_err());
        let e = r
            .output_shapes(&[Shape::d3(4, 4, 2), Shape::d1(3)])
            .unwrap_err();
        assert!(e.0.contains("roi"), "{e}");
        assert!(r.output_shapes(&[Shape::d3(4, 4, 2)]).is_err());
    }
}
