//! Yolov3DetectionOutput (YOLOv3 head): decodes the raw maps of every scale into boxes,
//! keeps those above the confidence threshold, sorts them and suppresses overlaps across all
//! classes (NMS), as ncnn's layer does.
//!
//! Params: `0 = num_class` (20), `1 = num_box` (anchors per scale, 5), `2 =
//! confidence_threshold` (0.01), `3 = nms_threshold` (0.45), `4 = biases` (anchor w, h pairs
//! in input pixels), `5 = mask` (for scale b, the anchors `mask[b * num_box + k]`), `6 =
//! anchors_scale` (for scale b, the input size / that map's size: its stride).
//! As in ncnn, the mask is read as float bit patterns whatever the file's spelling (its
//! writer stores the floats' bits as integers); integer-spelled biases and anchors_scale are
//! converted as numbers.
//!
//! Inputs: one 3-D map per scale, `w x h x num_box * (5 + num_class)` (ncnn divides the
//! channels by num_box and needs the quotient to be 5 + num_class). Box k of a map uses the
//! channels `k * (5 + num_class) ..`: x, y, w, h, objectness, then one score per class.
//! For every cell (i, j) and box k:
//! * class = the first class with the largest score;
//! * confidence = `1 / (1 + exp(-objectness) * (1 + exp(-class score)))` (ncnn's grouping,
//!   not quite sigmoid(objectness) * sigmoid(score)); kept when `>= confidence_threshold`;
//! * centre `((j + sigmoid(x)) / w, (i + sigmoid(y)) / h)`, size `exp(w) * anchor_w /
//!   net_w` by `exp(h) * anchor_h / net_h` with `net_w = trunc(anchors_scale[b] * w)`.
//!
//! The kept boxes of all scales are sorted by confidence (ties: in decoding order), then NMS
//! over all classes drops a box when its intersection with a kept one exceeds `nms_threshold`
//! times their union. Output: 2-D, w = 6, one row `label, score, xmin, ymin, xmax, ymax` per
//! detection, best first, coordinates relative to the input (0..1, unclipped), the label
//! being the class plus 1 (ncnn's background convention). ncnn sizes the output to the detections (and leaves
//! it empty when there are none); ours is sized at load to the most detections possible, one
//! per (scale, box, cell), with label -1 and zeros in the rows after the last detection
//! (`detection_output::detection_count` counts them). The candidate buffer in scratch has
//! room for that many too, so it cannot overflow: every candidate ncnn would keep is kept.

use super::{Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::{ParamDict, Value};
use crate::tensor::{Shape, Tensor, TensorMut};

pub use super::detection_output::NO_DETECTION;

#[derive(Debug)]
pub struct Yolov3DetectionOutput {
    pub num_class: usize,
    pub num_box: usize,
    pub confidence_threshold: f32,
    pub nms_threshold: f32,
    /// Anchor (w, h) pairs, flattened.
    pub biases: Vec<f32>,
    /// Anchor index per (scale, box), validated against `biases`.
    pub mask: Vec<usize>,
    pub anchors_scale: Vec<f32>,
}

/// One decoded box, kept in scratch memory (also YoloDetectionOutput's).
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub(super) struct Candidate {
    pub(super) score: f32,
    pub(super) xmin: f32,
    pub(super) ymin: f32,
    pub(super) xmax: f32,
    pub(super) ymax: f32,
    pub(super) area: f32,
    pub(super) label: u32,
    /// Decoding order, the tie-break of the sort.
    pub(super) order: u32,
}

pub(super) const CANDIDATE_FLOATS: usize = std::mem::size_of::<Candidate>() / 4;

pub(super) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Best first; ties in decoding order.
pub(super) fn sort_best_first(cands: &mut [Candidate]) {
    cands.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.order.cmp(&b.order)));
}

/// Writes the detections as rows `label + 1, score, xmin, ymin, xmax, ymax`, then padding
/// rows (label -1, zeros) to the end of `out`.
pub(super) fn write_rows(dets: &[Candidate], out: &mut [f32]) {
    let mut dets = dets.iter();
    for row in out.chunks_exact_mut(6) {
        match dets.next() {
            Some(c) => row.copy_from_slice(&[
                c.label as f32 + 1.0,
                c.score,
                c.xmin,
                c.ymin,
                c.xmax,
                c.ymax,
            ]),
            None => row.copy_from_slice(&[NO_DETECTION, 0.0, 0.0, 0.0, 0.0, 0.0]),
        }
    }
}

/// Intersection area of two boxes (0 when apart).
pub(super) fn intersection(a: &Candidate, b: &Candidate) -> f32 {
    if a.xmin > b.xmax || a.xmax < b.xmin || a.ymin > b.ymax || a.ymax < b.ymin {
        return 0.0;
    }
    (a.xmax.min(b.xmax) - a.xmin.max(b.xmin)) * (a.ymax.min(b.ymax) - a.ymin.max(b.ymin))
}

/// Reads an array key whose integers are float bit patterns (ncnn's mask).
fn float_bits_array(pd: &ParamDict, key: usize) -> LayerResult<Vec<f32>> {
    Ok(match pd.get(key) {
        Some(Value::IntArray(a)) => a.iter().map(|&i| f32::from_bits(i as u32)).collect(),
        Some(Value::Int(i)) => vec![f32::from_bits(*i as u32)],
        _ => pd.float_array(key)?,
    })
}

impl Yolov3DetectionOutput {
    pub fn new(pd: &ParamDict) -> LayerResult<Yolov3DetectionOutput> {
        let positive = |key: usize, default: i32, what: &str| -> LayerResult<usize> {
            let v = pd.int(key, default)?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| invalid(format!("{what} (key {key}) is {v}; it must be positive")))
        };
        let num_class = positive(0, 20, "num_class")?;
        let num_box = positive(1, 5, "num_box")?;
        let confidence_threshold = pd.float(2, 0.01)?;
        let nms_threshold = pd.float(3, 0.45)?;
        for (key, v) in [(2, confidence_threshold), (3, nms_threshold)] {
            if v.is_nan() {
                return Err(invalid(format!("threshold (key {key}) is NaN")));
            }
        }
        let biases = pd.float_array(4)?;
        let raw_mask = float_bits_array(pd, 5)?;
        let anchors_scale = pd.float_array(6)?;
        if biases.is_empty() || biases.len() % 2 != 0 {
            return Err(invalid(format!(
                "biases (key 4) must hold anchor (w, h) pairs; it has {} values",
                biases.len()
            )));
        }
        if raw_mask.is_empty() || raw_mask.len() % num_box != 0 {
            return Err(invalid(format!(
                "mask (key 5) must hold num_box = {num_box} anchor indices per scale; it has {}",
                raw_mask.len()
            )));
        }
        let scales = raw_mask.len() / num_box;
        if anchors_scale.len() < scales {
            return Err(invalid(format!(
                "anchors_scale (key 6) has {} values for {scales} scales in the mask",
                anchors_scale.len()
            )));
        }
        if let Some(s) = anchors_scale[..scales]
            .iter()
            .find(|s| !(s.is_finite() && **s > 0.0))
        {
            return Err(invalid(format!(
                "anchors_scale (key 6) value {s} must be positive and finite"
            )));
        }
        let anchors = biases.len() / 2;
        let mut mask = Vec::with_capacity(raw_mask.len());
        for &m in &raw_mask {
            if !(m >= 0.0 && m.fract() == 0.0 && (m as f64) < anchors as f64) {
                return Err(invalid(format!(
                    "mask (key 5) entry {m:e} is not an anchor index below {anchors} (ncnn \
                     reads the mask as float bits: an integer-spelled mask holds the bits of \
                     the floats, e.g. 1065353216 for 1)"
                )));
            }
            let a = m as usize;
            if let Some(b) = biases[2 * a..2 * a + 2]
                .iter()
                .find(|b| !b.is_finite() || **b <= 0.0)
            {
                return Err(invalid(format!(
                    "anchor {a} has size {b} in biases (key 4); it must be positive and finite"
                )));
            }
            mask.push(a);
        }
        Ok(Yolov3DetectionOutput {
            num_class,
            num_box,
            confidence_threshold,
            nms_threshold,
            biases,
            mask,
            anchors_scale,
        })
    }

    /// Checks the number of input maps against the scales of the mask.
    fn check_count(&self, count: usize) -> LayerResult<()> {
        let scales = self.mask.len() / self.num_box;
        if count == 0 || count > scales {
            return Err(invalid(format!(
                "expects 1 to {scales} input maps (one per scale of the mask, key 5), got {count}"
            )));
        }
        Ok(())
    }

    /// Checks input map `b`; returns the candidates it can produce (one per box and cell).
    fn map_candidates(&self, b: usize, s: Shape) -> LayerResult<usize> {
        let per_box = 5 + self.num_class;
        if s.dims != 3 || s.c / self.num_box != per_box {
            return Err(invalid(format!(
                "input {b} {s} must be 3-D with num_box x (5 + num_class) = {} x {per_box} \
                 channels",
                self.num_box
            )));
        }
        s.plane()
            .checked_mul(self.num_box)
            .ok_or_else(|| invalid("too many candidate boxes"))
    }

    /// Checks the input maps; returns the number of candidates they can produce, which is
    /// the output's row count.
    fn max_candidates(&self, inputs: &[Shape]) -> LayerResult<usize> {
        self.check_count(inputs.len())?;
        let mut total = 0usize;
        for (b, &s) in inputs.iter().enumerate() {
            total = total
                .checked_add(self.map_candidates(b, s)?)
                .ok_or_else(|| invalid("too many candidate boxes"))?;
        }
        Ok(total)
    }

    /// Decodes one map (scale `b`) into `cands` from `n` on; returns the new count.
    fn decode(&self, b: usize, map: &Tensor, cands: &mut [Candidate], mut n: usize) -> usize {
        let (w, h) = (map.shape.w, map.shape.h);
        let plane = w * h;
        let per_box = 5 + self.num_class;
        let net_w = (self.anchors_scale[b] * w as f32) as i32 as f32;
        let net_h = (self.anchors_scale[b] * h as f32) as i32 as f32;
        for k in 0..self.num_box {
            let anchor = self.mask[b * self.num_box + k];
            let (anchor_w, anchor_h) = (self.biases[2 * anchor], self.biases[2 * anchor + 1]);
            let ch = |c: usize| map.channel(k * per_box + c);
            let (xs, ys, ws, hs, objectness) = (ch(0), ch(1), ch(2), ch(3), ch(4));
            let scores = &map.data[(k * per_box + 5) * plane..(k * per_box + per_box) * plane];
            for i in 0..h {
                for j in 0..w {
                    let cell = i * w + j;
                    let (mut label, mut best) = (0, -f32::MAX);
                    for q in 0..self.num_class {
                        let s = scores[q * plane + cell];
                        if s > best {
                            (label, best) = (q, s);
                        }
                    }
                    let confidence =
                        1.0 / (1.0 + (-objectness[cell]).exp() * (1.0 + (-best).exp()));
                    if confidence.is_nan() || confidence < self.confidence_threshold {
                        continue;
                    }
                    let cx = (j as f32 + sigmoid(xs[cell])) / w as f32;
                    let cy = (i as f32 + sigmoid(ys[cell])) / h as f32;
                    let bw = ws[cell].exp() * anchor_w / net_w;
                    let bh = hs[cell].exp() * anchor_h / net_h;
                    cands[n] = Candidate {
                        score: confidence,
                        xmin: cx - bw * 0.5,
                        ymin: cy - bh * 0.5,
                        xmax: cx + bw * 0.5,
                        ymax: cy + bh * 0.5,
                        area: bw * bh,
                        label: label as u32,
                        order: n as u32,
                    };
                    n += 1;
                }
            }
        }
        n
    }
}

impl Op for Yolov3DetectionOutput {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        let rows = self.max_candidates(inputs)?;
        Ok(vec![Shape::checked(2, 6, rows, 1, 1)?])
    }

    fn scratch_len(&self, inputs: &[Shape], _outputs: &[Shape]) -> usize {
        self.max_candidates(inputs).unwrap_or(0) * CANDIDATE_FLOATS
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        self.check_count(inputs.len())?;
        let mut most = 0;
        for (b, t) in inputs.iter().enumerate() {
            most += self.map_candidates(b, t.shape)?;
        }
        let scratch = ctx
            .scratch
            .get_mut(..most * CANDIDATE_FLOATS)
            .ok_or_else(|| invalid("scratch memory smaller than planned"))?;
        let cands: &mut [Candidate] = bytemuck::cast_slice_mut(scratch);
        let mut n = 0;
        for (b, map) in inputs.iter().enumerate() {
            n = self.decode(b, map, cands, n);
        }
        let cands = &mut cands[..n];
        sort_best_first(cands);

        // Greedy NMS over all classes; the kept boxes are compacted at the front.
        let mut kept = 0;
        for i in 0..cands.len() {
            let a = cands[i];
            let suppressed = cands[..kept].iter().any(|b| {
                let inter = intersection(&a, b);
                inter > self.nms_threshold * (a.area + b.area - inter)
            });
            if !suppressed {
                cands[kept] = a;
                kept += 1;
            }
        }

        write_rows(&cands[..kept], outputs[0].data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::ops::harness::{assert_close, float, int, params, run, run_threads};
    use crate::rng::Rng;

    fn floats(v: &[f32]) -> Value {
        Value::FloatArray(v.to_vec())
    }

    /// num_class classes, one box per cell, anchor (16, 32), stride 32, threshold 0.3.
    fn head(num_class: i32) -> Yolov3DetectionOutput {
        Yolov3DetectionOutput::new(&params(&[
            (0, int(num_class)),
            (1, int(1)),
            (2, float(0.3)),
            (3, float(0.45)),
            (4, floats(&[16.0, 32.0])),
            (5, floats(&[0.0])),
            (6, floats(&[32.0])),
        ]))
        .unwrap()
    }

    /// One map of `w x h` cells for `head`: per cell (x, y, w, h, objectness, scores...).
    fn map(w: usize, h: usize, cells: &[&[f32]]) -> (Shape, Vec<f32>) {
        let per_box = cells[0].len();
        let mut data = vec![-20.0; per_box * w * h];
        for (cell, values) in cells.iter().enumerate() {
            for (c, v) in values.iter().enumerate() {
                data[c * w * h + cell] = *v;
            }
        }
        (Shape::d3(w, h, per_box), data)
    }

    #[test]
    fn decodes_one_cell() {
        // Centre offsets 0 (sigmoid 0.5), w = ln 2: 2 * 16 / 32 = 1, h = 0: 32 / 32 = 1.
        // Objectness 0 and best class 1 with score 2: 1 / (1 + 1 * (1 + e^-2)).
        let op = head(2);
        let input = map(1, 1, &[&[0.0, 0.0, 2f32.ln(), 0.0, 0.0, 0.5, 2.0]]);
        let out = run(&op, &[input]).unwrap().remove(0);
        assert_eq!(out.0, Shape::d2(6, 1));
        let conf = 1.0 / (2.0 + (-2f32).exp());
        assert_close(&out.1, &[2.0, conf, 0.0, 0.0, 1.0, 1.0], 1e-6);
    }

    #[test]
    fn cell_position_scale_and_anchors_follow_the_mask() {
        // Two scales, two boxes each; mask (3, 2 | 1, 0) so scale 0 box 1 uses anchor 2.
        let op = Yolov3DetectionOutput::new(&params(&[
            (0, int(1)),
            (1, int(2)),
            (2, float(0.5)),
            (4, floats(&[8.0, 8.0, 16.0, 16.0, 40.0, 20.0, 64.0, 64.0])),
            (5, floats(&[3.0, 2.0, 1.0, 0.0])),
            (6, floats(&[20.0, 10.0])),
        ]))
        .unwrap();
        // Scale 0: 2x1 map (net 40x20); box 1 of cell (0, 1) fires.
        let (w0, h0, per_box) = (2, 1, 6);
        let mut m0 = vec![-20.0f32; 2 * per_box * w0 * h0];
        let at = |k: usize, c: usize, cell: usize| (k * per_box + c) * w0 * h0 + cell;
        for (c, v) in [(0, 0.0), (1, 0.0), (2, 0.0), (3, 0.0), (4, 20.0), (5, 20.0)] {
            m0[at(1, c, 1)] = v;
        }
        // Scale 1: 1x1 map (net 10x10); box 0 (anchor 1, 16x16) fires with x offset -inf.
        let mut m1 = vec![-20.0f32; 2 * per_box];
        for (c, v) in [
            (0, -f32::INFINITY),
            (1, 0.0),
            (2, 0.0),
            (3, 0.0),
            (4, 20.0),
            (5, 20.0),
        ] {
            m1[c] = v;
        }
        let out = run(
            &op,
            &[
                (Shape::d3(w0, h0, 2 * per_box), m0),
                (Shape::d3(1, 1, 2 * per_box), m1),
            ],
        )
        .unwrap()
        .remove(0);
        assert_eq!(out.0, Shape::d2(6, 2 * 2 + 2));
        let score = 1.0 / (1.0 + (-20f32).exp() * (1.0 + (-20f32).exp()));
        // Scale 0, cell x 1: centre (1.5 / 2, 0.5), anchor 2 = 40x20 over net 40x20.
        // Scale 1: centre (0, 0.5), anchor 1 = 16x16 over net 10x10. Equal scores: decoding
        // order; the boxes overlap by 0.25 * 1 of a union 2.56 + 1 - 0.25: both kept.
        #[rustfmt::skip]
        assert_close(&out.1[..12], &[
            1.0, score, 0.25, 0.0, 1.25, 1.0,
            1.0, score, -0.8, -0.3, 0.8, 1.3,
        ], 1e-6);
        assert_eq!(out.1[12..], [-1.0, 0.0, 0.0, 0.0, 0.0, 0.0].repeat(4));
    }

    #[test]
    fn nms_is_across_classes_and_threshold_is_inclusive() {
        // Three cells of a 3x1 map, boxes 4/3 x 1 (anchor 128 x 32 over net 96 x 32) centred
        // at x = 1/6, 1/2, 5/6: cell 0 class 0, cell 1 class 1, cell 2 class 0 scoring
        // exactly the threshold.
        let op = Yolov3DetectionOutput::new(&params(&[
            (0, int(2)),
            (1, int(1)),
            (2, float(0.5)),
            (3, float(0.45)),
            (4, floats(&[128.0, 32.0])),
            (5, floats(&[0.0])),
            (6, floats(&[32.0])),
        ]))
        .unwrap();
        // Objectness o with class score +inf: confidence = sigmoid(o).
        let big = f32::INFINITY;
        let input = map(
            3,
            1,
            &[
                &[0.0, 0.0, 0.0, 0.0, 3.0, big, 0.0],
                &[0.0, 0.0, 0.0, 0.0, 2.0, 0.0, big],
                &[0.0, 0.0, 0.0, 0.0, 0.0, big, 0.0],
            ],
        );
        let out = run(&op, &[input]).unwrap().remove(0).1;
        let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
        // Cell 1 vs cell 0: overlap 1 x 1, union 8/3 - 1: IoU 0.6 > 0.45, suppressed although
        // its class differs. Cell 2 vs cell 0: overlap 2/3, union 2: IoU 1/3, kept (its score
        // 0.5 equals the threshold).
        assert_close(
            &out[..12],
            &[
                1.0,
                sig(3.0),
                1.0 / 6.0 - 2.0 / 3.0,
                0.0,
                1.0 / 6.0 + 2.0 / 3.0,
                1.0,
                1.0,
                0.5,
                5.0 / 6.0 - 2.0 / 3.0,
                0.0,
                5.0 / 6.0 + 2.0 / 3.0,
                1.0,
            ],
            1e-6,
        );
        assert_eq!(out[12], -1.0);
    }

    #[test]
    fn nothing_detected_fills_every_row_with_label_minus_one() {
        let input = map(2, 1, &[&[0.0, 0.0, 0.0, 0.0, -5.0, 0.0]]);
        let out = run(&head(1), &[input]).unwrap().remove(0);
        assert_eq!(out.0, Shape::d2(6, 2));
        assert_eq!(out.1, [-1.0, 0.0, 0.0, 0.0, 0.0, 0.0].repeat(2));
    }

    /// Plain reference: every (scale, box, cell) decoded into a Vec, stable sort by score,
    /// greedy NMS against the kept boxes.
    fn reference(op: &Yolov3DetectionOutput, maps: &[(Shape, Vec<f32>)]) -> Vec<[f32; 6]> {
        let mut all = Vec::new();
        for (b, (s, data)) in maps.iter().enumerate() {
            let (w, h, plane) = (s.w, s.h, s.w * s.h);
            let per_box = 5 + op.num_class;
            for k in 0..op.num_box {
                let a = op.mask[b * op.num_box + k];
                let v = |c: usize, cell: usize| data[(k * per_box + c) * plane + cell];
                for cell in 0..plane {
                    let (mut best, mut label) = (f32::MIN, 0);
                    for q in 0..op.num_class {
                        if v(5 + q, cell) > best {
                            (best, label) = (v(5 + q, cell), q);
                        }
                    }
                    let score = 1.0 / (1.0 + (-v(4, cell)).exp() * (1.0 + (-best).exp()));
                    if score < op.confidence_threshold {
                        continue;
                    }
                    let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
                    let net_w = (op.anchors_scale[b] * w as f32).trunc();
                    let net_h = (op.anchors_scale[b] * h as f32).trunc();
                    let cx = ((cell % w) as f32 + sig(v(0, cell))) / w as f32;
                    let cy = ((cell / w) as f32 + sig(v(1, cell))) / h as f32;
                    let bw = v(2, cell).exp() * op.biases[2 * a] / net_w;
                    let bh = v(3, cell).exp() * op.biases[2 * a + 1] / net_h;
                    all.push([
                        label as f32 + 1.0,
                        score,
                        cx - bw * 0.5,
                        cy - bh * 0.5,
                        cx + bw * 0.5,
                        cy + bh * 0.5,
                    ]);
                }
            }
        }
        all.sort_by(|a, b| b[1].total_cmp(&a[1]));
        let mut kept: Vec<[f32; 6]> = Vec::new();
        for a in all {
            let overlaps = kept.iter().any(|b| {
                let iw = a[4].min(b[4]) - a[2].max(b[2]);
                let ih = a[5].min(b[5]) - a[3].max(b[3]);
                if iw < 0.0 || ih < 0.0 {
                    return false;
                }
                let area = |r: &[f32; 6]| (r[4] - r[2]) * (r[5] - r[3]);
                iw * ih > op.nms_threshold * (area(&a) + area(b) - iw * ih)
            });
            if !overlaps {
                kept.push(a);
            }
        }
        kept
    }

    #[test]
    fn random_maps_match_the_reference() {
        let mut rng = Rng::new(99);
        let op = Yolov3DetectionOutput::new(&params(&[
            (0, int(4)),
            (1, int(3)),
            (2, float(0.4)),
            (3, float(0.45)),
            (
                4,
                floats(&[
                    10.0, 14.0, 23.0, 27.0, 37.0, 58.0, 81.0, 82.0, 135.0, 169.0, 34.0, 31.0,
                ]),
            ),
            (5, floats(&[3.0, 4.0, 5.0, 0.0, 1.0, 2.0])),
            (6, floats(&[32.0, 16.0])),
        ]))
        .unwrap();
        for trial in 0..20 {
            let maps: Vec<(Shape, Vec<f32>)> = [(3, 2), (6, 4)]
                .iter()
                .map(|&(w, h)| {
                    let s = Shape::d3(w, h, 3 * 9);
                    (s, rng.vec(s.len(), -3.0, 3.0))
                })
                .collect();
            let want = reference(&op, &maps);
            let out = run_threads(&op, &maps, 1 + trial % 2).unwrap().remove(0);
            assert_eq!(out.0, Shape::d2(6, 3 * (6 + 24)));
            assert!(!want.is_empty());
            let got: Vec<&[f32]> = out.1.chunks(6).take_while(|r| r[0] >= 0.0).collect();
            assert_eq!(got.len(), want.len(), "trial {trial}");
            for (g, w) in got.iter().zip(&want) {
                assert_close(g, w, 1e-6);
            }
        }
    }

    #[test]
    fn integer_spelled_mask_holds_float_bits() {
        // As in yolo-fastest's param: -23305=6,1077936128,...: the bits of 3.0, 4.0, ...
        let bits: Vec<i32> = [3.0f32, 4.0, 5.0, 0.0, 1.0, 2.0]
            .iter()
            .map(|f| f.to_bits() as i32)
            .collect();
        let mut p = vec![
            (0, int(80)),
            (1, int(3)),
            (
                4,
                Value::IntArray(vec![12, 18, 37, 49, 52, 132, 115, 73, 119, 199, 242, 238]),
            ),
            (5, Value::IntArray(bits)),
            (6, Value::IntArray(vec![32, 16])),
        ];
        let op = Yolov3DetectionOutput::new(&params(&p)).unwrap();
        assert_eq!(op.mask, [3, 4, 5, 0, 1, 2]);
        assert_eq!(op.biases[..2], [12.0, 18.0]);
        assert_eq!(op.anchors_scale, [32.0, 16.0]);
        // Small integers are denormal floats: not anchor indices.
        p[3] = (5, Value::IntArray(vec![0, 1, 2, 3, 4, 5]));
        let e = Yolov3DetectionOutput::new(&params(&p)).unwrap_err();
        assert!(e.0.contains("float bits"), "{e}");
    }

    #[test]
    fn bad_params_and_shapes_are_errors() {
        let base = vec![
            (0, int(2)),
            (1, int(1)),
            (4, floats(&[16.0, 32.0])),
            (5, floats(&[0.0])),
            (6, floats(&[32.0])),
        ];
        let err = |change: &[(usize, Value)]| {
            let mut p = base.clone();
            p.extend_from_slice(change);
            Yolov3DetectionOutput::new(&params(&p)).unwrap_err().0
        };
        assert!(err(&[(0, int(0))]).contains("num_class"));
        assert!(err(&[(1, int(-1))]).contains("num_box"));
        assert!(err(&[(4, floats(&[16.0]))]).contains("biases"));
        assert!(err(&[(4, floats(&[16.0, 0.0]))]).contains("positive"));
        assert!(err(&[(5, floats(&[1.0]))]).contains("anchor index"));
        assert!(err(&[(5, floats(&[0.0, 0.0]))]).contains("anchors_scale"));
        assert!(err(&[(6, floats(&[-1.0]))]).contains("anchors_scale"));
        assert!(err(&[(2, float(f32::NAN))]).contains("NaN"));
        let op = head(2);
        let e = op.output_shapes(&[Shape::d3(2, 2, 8)]).unwrap_err();
        assert!(e.0.contains("5 + num_class"), "{e}");
        let s = Shape::d3(2, 2, 7);
        let e = op.output_shapes(&[s, s]).unwrap_err();
        assert!(e.0.contains("1 to 1 input maps"), "{e}");
        assert!(op.output_shapes(&[Shape::d2(2, 7)]).is_err());
    }
}

#[cfg(test)]
mod net_tests {
    use crate::ops::detection_output::detection_count;
    use crate::{Net, Options};

    #[test]
    fn yolo_head_runs_in_a_net() {
        // yolo-fastest's head with its integer-spelled mask, on two small maps.
        let param = "7767517\n3 3\n\
            Input a 0 1 a 0=2 1=2 2=255\n\
            Input b 0 1 b 0=4 1=4 2=255\n\
            Yolov3DetectionOutput det 2 1 a b out 0=80 1=3 2=0.55 \
            -23304=12,12.0,18.0,37.0,49.0,52.0,132.0,115.0,73.0,119.0,199.0,242.0,238.0 \
            -23305=6,1077936128,1082130432,1084227584,0,1065353216,1073741824 \
            -23306=2,32.0,16.0\n";
        let mut net = Net::from_memory(param.as_bytes(), &[], &Options::default()).unwrap();
        assert_eq!(net.blob_shape("out").unwrap(), crate::Shape::d2(6, 60));
        let mut a = vec![0.0f32; 255 * 4];
        // Scale 0 box 2 (mask[2] = 5: anchor 242 x 238), cell 3, class 7 (label 8).
        for (c, v) in [
            (0, 0.0),
            (1, 0.0),
            (2, 0.0),
            (3, 0.0),
            (4, 9.0),
            (5 + 7, 9.0),
        ] {
            a[(2 * 85 + c) * 4 + 3] = v;
        }
        for (k, v) in a.iter_mut().enumerate() {
            if (k / 4) % 85 == 4 && *v == 0.0 {
                *v = -9.0; // other objectness low
            }
        }
        net.set_input("a", &a).unwrap();
        let mut b = vec![0.0f32; 255 * 16];
        for (k, v) in b.iter_mut().enumerate() {
            if (k / 16) % 85 == 4 {
                *v = -9.0;
            }
        }
        net.set_input("b", &b).unwrap();
        net.run().unwrap();
        let out = net.blob("out").unwrap();
        assert_eq!(detection_count(&out), 1);
        // Cell (1, 1) of 2x2: centre (0.75, 0.75); box 242 x 238 over net 64 x 64.
        let (w, h) = (242.0 / 64.0, 238.0 / 64.0);
        let want = [
            8.0,
            0.75 - w / 2.0,
            0.75 - h / 2.0,
            0.75 + w / 2.0,
            0.75 + h / 2.0,
        ];
        let got = [
            out.data[0],
            out.data[2],
            out.data[3],
            out.data[4],
            out.data[5],
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{:?}", &out.data[..6]);
        }
        assert!(out.data[1] > 0.99);
    }
}
