//! Proposal (Faster R-CNN region proposal network head): decodes box deltas against shifted
//! anchors, clips them to the image, drops small ones, sorts by score, keeps the best
//! `pre_nms_topN`, suppresses overlaps (NMS) and returns the best `after_nms_topN`, as ncnn's
//! layer does.
//!
//! Params: `0 = feat_stride` (16), `1 = base_size` (16), `2 = pre_nms_topN` (6000; <= 0: no
//! cut), `3 = after_nms_topN` (300, >= 1), `4 = nms_thresh` (0.7), `5 = min_size` (16).
//! The anchors are ncnn's fixed ones: ratios 0.5, 1, 2 times scales 8, 16, 32 (9 anchors;
//! ncnn has no param for them and ignores any other key). Anchor (ratio r, scale s):
//! `rw = round(base_size / sqrt(r))`, `rh = round(rw * r)`, a `rw * s x rh * s` box centred
//! on `(base_size / 2, base_size / 2)`, shifted by `feat_stride` per cell.
//!
//! Inputs: `score` (3-D `w x h x 18`: 9 background then 9 foreground maps; the foreground
//! score is used), `bbox_pred` (3-D `w x h x 36`: dx, dy, dw, dh per anchor), `im_info`
//! (at least 3 values: image height, width, scale).
//! Per anchor and cell: centre `anchor centre + anchor size * (dx, dy)`, size `anchor size *
//! exp(dw, dh)`, corners clipped to `[0, im_w - 1] x [0, im_h - 1]`; kept when `x2 - x1 + 1`
//! and `y2 - y1 + 1` are both `>= min_size * im_scale`. NMS drops a box when its
//! intersection over union (areas `(x2 - x1) * (y2 - y1)`) with a kept one exceeds
//! `nms_thresh`. Ties in score keep the order anchor by anchor, cell by cell.
//!
//! Outputs: the ROIs, 3-D `4 x 1 x n` (one channel `x1, y1, x2, y2` per proposal, best
//! first), and optionally their scores, 3-D `1 x 1 x n`. ncnn makes n the number of
//! proposals; ours is sized at load to the most possible (`min(after_nms_topN, cells * 9,
//! pre_nms_topN)`, at least 1), and the channels after the last proposal hold ROI
//! `-1, -1, -1, -1` and score 0 (real ROIs are clipped to >= 0; [`proposal_count`] counts
//! them).

use super::yolov3_detection_output::{intersection, sort_best_first, Candidate, CANDIDATE_FLOATS};
use super::{Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, Tensor, TensorMut};

const RATIOS: [f32; 3] = [0.5, 1.0, 2.0];
const SCALES: [f32; 3] = [8.0, 16.0, 32.0];
const ANCHORS: usize = RATIOS.len() * SCALES.len();

/// Value of the ROI coordinates in the channels after the last proposal.
pub const NO_PROPOSAL: f32 = -1.0;

#[derive(Debug)]
pub struct Proposal {
    pub feat_stride: i32,
    pub base_size: i32,
    /// 0: no cut before NMS.
    pub pre_nms_top_n: usize,
    pub after_nms_top_n: usize,
    pub nms_thresh: f32,
    pub min_size: i32,
    /// (x1, y1, x2, y2) per anchor, before shifting.
    anchors: [[f32; 4]; ANCHORS],
}

/// Number of proposals in a Proposal ROI output: channels up to the first padding one.
pub fn proposal_count(rois: &Tensor) -> usize {
    rois.data
        .chunks_exact(4)
        .take_while(|r| r[0] != NO_PROPOSAL)
        .count()
}

/// ncnn's anchors for a base size.
fn generate_anchors(base_size: i32) -> [[f32; 4]; ANCHORS] {
    let c = base_size as f32 * 0.5;
    let mut anchors = [[0.0; 4]; ANCHORS];
    for (i, &r) in RATIOS.iter().enumerate() {
        let rw = (base_size as f32 / r.sqrt()).round();
        let rh = (rw * r).round();
        for (j, &s) in SCALES.iter().enumerate() {
            let (w, h) = (rw * s, rh * s);
            anchors[i * SCALES.len() + j] = [c - w * 0.5, c - h * 0.5, c + w * 0.5, c + h * 0.5];
        }
    }
    anchors
}

/// ncnn's clip: `max(min(v, hi), 0)` with std::min / std::max's NaN behaviour.
fn clip(v: f32, hi: f32) -> f32 {
    let v = if hi < v { hi } else { v };
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

impl Proposal {
    pub fn new(pd: &ParamDict) -> LayerResult<Proposal> {
        let positive = |key: usize, default: i32, what: &str| -> LayerResult<i32> {
            let v = pd.int(key, default)?;
            if v <= 0 || v > 1 << 16 {
                return Err(invalid(format!(
                    "{what} (key {key}) is {v}; it must be 1 to 65536"
                )));
            }
            Ok(v)
        };
        let feat_stride = positive(0, 16, "feat_stride")?;
        let base_size = positive(1, 16, "base_size")?;
        let pre = pd.int(2, 6000)?;
        let after = pd.int(3, 300)?;
        if after < 1 {
            return Err(invalid(format!(
                "after_nms_topN (key 3) is {after}; it must be at least 1"
            )));
        }
        let nms_thresh = pd.float(4, 0.7)?;
        if nms_thresh.is_nan() {
            return Err(invalid("nms_thresh (key 4) is NaN"));
        }
        let min_size = pd.int(5, 16)?;
        Ok(Proposal {
            feat_stride,
            base_size,
            pre_nms_top_n: pre.max(0) as usize,
            after_nms_top_n: after as usize,
            nms_thresh,
            min_size,
            anchors: generate_anchors(base_size),
        })
    }

    /// Checks the inputs; returns the number of candidates (cells x anchors).
    fn candidates(&self, inputs: &[Shape]) -> LayerResult<usize> {
        if inputs.len() != 3 {
            return Err(invalid(format!(
                "expects 3 inputs (score, bbox_pred, im_info), got {}",
                inputs.len()
            )));
        }
        let (score, bbox, info) = (inputs[0], inputs[1], inputs[2]);
        if score.dims != 3 || score.c != 2 * ANCHORS {
            return Err(invalid(format!(
                "score input {score} must be 3-D with {} channels (background, foreground per anchor)",
                2 * ANCHORS
            )));
        }
        if bbox.dims != 3 || bbox.c != 4 * ANCHORS || (bbox.w, bbox.h) != (score.w, score.h) {
            return Err(invalid(format!(
                "bbox_pred input {bbox} must be 3-D, {} x {} like the score, with {} channels",
                score.w,
                score.h,
                4 * ANCHORS
            )));
        }
        if info.len() < 3 {
            return Err(invalid(format!(
                "im_info input {info} needs 3 values (height, width, scale)"
            )));
        }
        Ok(score.plane() * ANCHORS)
    }

    fn rows(&self, candidates: usize) -> usize {
        let mut n = candidates.min(self.after_nms_top_n);
        if self.pre_nms_top_n > 0 {
            n = n.min(self.pre_nms_top_n);
        }
        n.max(1)
    }
}

impl Op for Proposal {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        let rows = self.rows(self.candidates(inputs)?);
        Ok(vec![
            Shape::checked(3, 4, 1, 1, rows)?,
            Shape::checked(3, 1, 1, 1, rows)?,
        ])
    }

    fn optional_outputs(&self) -> usize {
        1
    }

    fn scratch_len(&self, inputs: &[Shape], _outputs: &[Shape]) -> usize {
        self.candidates(inputs).unwrap_or(0) * CANDIDATE_FLOATS
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        if outputs.is_empty() || outputs.len() > 2 {
            return Err(invalid("Proposal has one or two outputs (rois, scores)"));
        }
        let (score, bbox, info) = (&inputs[0], &inputs[1], inputs[2].data);
        let (w, h) = (score.shape.w, score.shape.h);
        let total = w * h * ANCHORS;
        let scratch = ctx
            .scratch
            .get_mut(..total * CANDIDATE_FLOATS)
            .ok_or_else(|| invalid("scratch memory smaller than planned"))?;
        let cands: &mut [Candidate] = bytemuck::cast_slice_mut(scratch);
        let (im_h, im_w, im_scale) = (info[0], info[1], info[2]);
        let min_box = self.min_size as f32 * im_scale;
        let stride = self.feat_stride as f32;
        let mut n = 0;
        for (q, anchor) in self.anchors.iter().enumerate() {
            let (dxs, dys) = (bbox.channel(4 * q), bbox.channel(4 * q + 1));
            let (dws, dhs) = (bbox.channel(4 * q + 2), bbox.channel(4 * q + 3));
            let scores = score.channel(ANCHORS + q);
            let (aw, ah) = (anchor[2] - anchor[0], anchor[3] - anchor[1]);
            let mut ay = anchor[1];
            for i in 0..h {
                let mut ax = anchor[0];
                for j in 0..w {
                    let cell = i * w + j;
                    let cx = ax + aw * 0.5 + aw * dxs[cell];
                    let cy = ay + ah * 0.5 + ah * dys[cell];
                    let (pw, ph) = (aw * dws[cell].exp(), ah * dhs[cell].exp());
                    let x1 = clip(cx - pw * 0.5, im_w - 1.0);
                    let y1 = clip(cy - ph * 0.5, im_h - 1.0);
                    let x2 = clip(cx + pw * 0.5, im_w - 1.0);
                    let y2 = clip(cy + ph * 0.5, im_h - 1.0);
                    if x2 - x1 + 1.0 >= min_box && y2 - y1 + 1.0 >= min_box {
                        cands[n] = Candidate {
                            score: scores[cell],
                            xmin: x1,
                            ymin: y1,
                            xmax: x2,
                            ymax: y2,
                            area: (x2 - x1) * (y2 - y1),
                            label: 0,
                            order: n as u32,
                        };
                        n += 1;
                    }
                    ax += stride;
                }
                ay += stride;
            }
        }
        let cands = &mut cands[..n];
        sort_best_first(cands);
        let n = if self.pre_nms_top_n > 0 {
            n.min(self.pre_nms_top_n)
        } else {
            n
        };
        let cands = &mut cands[..n];

        // Greedy NMS; the kept boxes are compacted at the front.
        let mut kept = 0;
        for i in 0..cands.len() {
            let a = cands[i];
            let suppressed = cands[..kept].iter().any(|b| {
                let inter = intersection(&a, b);
                inter / (a.area + b.area - inter) > self.nms_thresh
            });
            if !suppressed {
                cands[kept] = a;
                kept += 1;
            }
        }
        let kept = &cands[..kept.min(self.after_nms_top_n)];
        let (rois, rest) = outputs.split_at_mut(1);
        for (k, roi) in rois[0].data.chunks_exact_mut(4).enumerate() {
            match kept.get(k) {
                Some(c) => roi.copy_from_slice(&[c.xmin, c.ymin, c.xmax, c.ymax]),
                None => roi.fill(NO_PROPOSAL),
            }
        }
        if let Some(scores) = rest.first_mut() {
            for (k, s) in scores.data.iter_mut().enumerate() {
                *s = kept.get(k).map_or(0.0, |c| c.score);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, int, params, run};

    fn op(pairs: &[(usize, i32)]) -> Proposal {
        let p: Vec<_> = pairs.iter().map(|&(k, v)| (k, int(v))).collect();
        Proposal::new(&params(&p)).unwrap()
    }

    #[test]
    fn anchors_are_ncnns() {
        // base 16: ratio 0.5 -> rw = round(16 / 0.7071) = 23, rh = round(11.5) = 12;
        // ratio 1 -> 16 x 16; ratio 2 -> rw = round(11.31) = 11, rh = 22.
        let a = generate_anchors(16);
        assert_eq!(a[0], [8.0 - 92.0, 8.0 - 48.0, 8.0 + 92.0, 8.0 + 48.0]);
        assert_eq!(a[4], [8.0 - 128.0, 8.0 - 128.0, 8.0 + 128.0, 8.0 + 128.0]);
        assert_eq!(a[8], [8.0 - 176.0, 8.0 - 352.0, 8.0 + 176.0, 8.0 + 352.0]);
    }

    /// Inputs for a `w x h` map: all deltas 0, foreground scores from `fg(anchor, cell)`.
    fn inputs(
        w: usize,
        h: usize,
        fg: impl Fn(usize, usize) -> f32,
        info: [f32; 3],
    ) -> Vec<(Shape, Vec<f32>)> {
        let plane = w * h;
        let mut score = vec![0.0; 18 * plane];
        for q in 0..9 {
            for c in 0..plane {
                score[(9 + q) * plane + c] = fg(q, c);
            }
        }
        vec![
            (Shape::d3(w, h, 18), score),
            (Shape::d3(w, h, 36), vec![0.0; 36 * plane]),
            (Shape::d1(3), info.to_vec()),
        ]
    }

    #[test]
    fn clips_filters_sorts_and_suppresses() {
        // Stride 16, base 16, min_size 16 on a 2 x 1 map, image 40 x 1000 (h x w): every
        // anchor is clipped to rows 0..39 and its columns; anchor 4 (256 x 256 at cell j)
        // becomes (0, 0)-(136 + 16 j, 39). Only anchor 4 scores.
        let p = op(&[(2, 0), (3, 5), (4, 0)]);
        let ins = inputs(
            2,
            1,
            |q, c| if q == 4 { 0.5 + c as f32 } else { -1.0 },
            [40.0, 1000.0, 1.0],
        );
        let out = run(&p, &ins).unwrap();
        assert_eq!(out[0].0, Shape::d3(4, 1, 5));
        assert_eq!(out[1].0, Shape::d3(1, 1, 5));
        // nms 0: the best (cell 1, score 1.5) suppresses everything overlapping it: all.
        assert_close(&out[0].1[..4], &[0.0, 0.0, 152.0, 39.0], 0.0);
        assert_eq!(out[0].1[4..], [-1.0; 16]);
        assert_eq!(out[1].1, [1.5, 0.0, 0.0, 0.0, 0.0]);
        let t = Tensor {
            shape: out[0].0,
            data: &out[0].1,
        };
        assert_eq!(proposal_count(&t), 1);

        // nms 1 keeps all 18 boxes; after_nms_topN 5 keeps the best 5, best first.
        let p = op(&[(3, 5), (4, 1)]);
        let out = run(&p, &ins).unwrap();
        assert_eq!(out[1].1, [1.5, 0.5, -1.0, -1.0, -1.0]);
        assert_close(
            &out[0].1[..8],
            &[0.0, 0.0, 152.0, 39.0, 0.0, 0.0, 136.0, 39.0],
            0.0,
        );
    }

    #[test]
    fn min_size_uses_the_image_scale() {
        // Image 20 x 20: every box is clipped to at most 20 x 20 (x2 - x1 + 1 = 20);
        // min_size 16 at scale 1 keeps them, at scale 2 (32) drops all.
        let p = op(&[(3, 3)]);
        let keep = run(&p, &inputs(1, 1, |q, _| q as f32, [20.0, 20.0, 1.0])).unwrap();
        assert_eq!(keep[1].1[0], 8.0);
        let drop = run(&p, &inputs(1, 1, |q, _| q as f32, [20.0, 20.0, 2.0])).unwrap();
        assert_eq!(drop[0].1, [-1.0; 12]);
        assert_eq!(drop[1].1, [0.0; 3]);
    }

    #[test]
    fn bad_params_and_shapes() {
        let bad = |pairs: &[(usize, i32)], what: &str| {
            let p: Vec<_> = pairs.iter().map(|&(k, v)| (k, int(v))).collect();
            let e = Proposal::new(&params(&p)).unwrap_err();
            assert!(e.0.contains(what), "{e}");
        };
        bad(&[(0, 0)], "feat_stride");
        bad(&[(1, -16)], "base_size");
        bad(&[(3, 0)], "after_nms_topN");
        let p = op(&[]);
        let good = [Shape::d3(3, 2, 18), Shape::d3(3, 2, 36), Shape::d1(3)];
        assert_eq!(p.output_shapes(&good).unwrap()[0], Shape::d3(4, 1, 54));
        let e = p
            .output_shapes(&[Shape::d3(3, 2, 9), good[1], good[2]])
            .unwrap_err();
        assert!(e.0.contains("score"), "{e}");
        let e = p
            .output_shapes(&[good[0], Shape::d3(2, 2, 36), good[2]])
            .unwrap_err();
        assert!(e.0.contains("bbox_pred"), "{e}");
        let e = p
            .output_shapes(&[good[0], good[1], Shape::d1(2)])
            .unwrap_err();
        assert!(e.0.contains("im_info"), "{e}");
        assert!(p.output_shapes(&good[..2]).is_err());
    }
}

#[cfg(test)]
mod net_tests {
    use crate::{Net, Options};

    #[test]
    fn scores_output_is_optional() {
        let one = "7767517\n4 4\nInput s 0 1 s 0=2 1=2 2=18\nInput b 0 1 b 0=2 1=2 2=36\n\
            Input i 0 1 i 0=3\nProposal p 3 1 s b i rois 3=10\n";
        let net = Net::from_memory(one.as_bytes(), &[], &Options::default()).unwrap();
        assert_eq!(net.blob_shape("rois").unwrap(), crate::Shape::d3(4, 1, 10));
        let two = one
            .replace("3 1 s b i rois", "3 2 s b i rois scores")
            .replace("4 4", "4 5");
        let net = Net::from_memory(two.as_bytes(), &[], &Options::default()).unwrap();
        assert_eq!(
            net.blob_shape("scores").unwrap(),
            crate::Shape::d3(1, 1, 10)
        );
        let three = one
            .replace("3 1 s b i rois", "3 3 s b i rois x y")
            .replace("4 4", "4 6");
        assert!(Net::from_memory(three.as_bytes(), &[], &Options::default()).is_err());
    }
}
