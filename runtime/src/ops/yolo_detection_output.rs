//! YoloDetectionOutput (YOLOv2 region layer): decodes one or more raw maps into boxes, with a
//! softmax over the class scores, keeps those above the confidence threshold, sorts them and
//! suppresses overlaps across all classes (NMS), as ncnn's layer does.
//!
//! Params: `0 = num_class` (20), `1 = num_box` (anchors, 5), `2 = confidence_threshold`
//! (0.01), `3 = nms_threshold` (0.45), `4 = biases` (anchor w, h pairs in map cells; at least
//! `2 * num_box` values, positive and finite).
//!
//! Inputs: one or more 3-D maps `w x h x num_box * (5 + num_class)` (ncnn divides the
//! channels by num_box and needs the quotient to be 5 + num_class); every map uses the same
//! anchors. Box k of a map uses the channels `k * (5 + num_class) ..`: x, y, w, h,
//! objectness, then one score per class. For every cell (i, j) and box k:
//! * the class scores go through a softmax; class = the first with the largest probability
//!   (none above 0: class 0, probability 0);
//! * confidence = `sigmoid(objectness) * probability`, kept when `>= confidence_threshold`;
//! * centre `((j + sigmoid(x)) / w, (i + sigmoid(y)) / h)`, size `exp(w) * anchor_w / w` by
//!   `exp(h) * anchor_h / h`.
//!
//! The kept boxes of all maps are sorted by confidence (ties: in decoding order), then NMS
//! over all classes drops a box when its intersection over union with a kept one exceeds
//! `nms_threshold` (areas `(xmax - xmin) * (ymax - ymin)`, as ncnn computes them). Output:
//! 2-D, w = 6, one row `label, score, xmin, ymin, xmax, ymax` per detection, best first,
//! coordinates relative to the map (0..1, unclipped), the label being the class plus 1.
//! ncnn sizes the output to the detections (empty when none); ours is sized at load to the
//! most detections possible (one per map, box and cell), with label -1 and zeros in the rows
//! after the last (`detection_output::detection_count` counts them). ncnn also leaves the
//! softmaxed scores in its input blob (it works in place); here the input is left as it is.

use super::yolov3_detection_output::{
    intersection, sigmoid, sort_best_first, write_rows, Candidate, CANDIDATE_FLOATS,
};
use super::{Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Debug)]
pub struct YoloDetectionOutput {
    pub num_class: usize,
    pub num_box: usize,
    pub confidence_threshold: f32,
    pub nms_threshold: f32,
    /// Anchor (w, h) pairs, flattened (the first `num_box` pairs are used).
    pub biases: Vec<f32>,
}

impl YoloDetectionOutput {
    pub fn new(pd: &ParamDict) -> LayerResult<YoloDetectionOutput> {
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
        if biases.len() < 2 * num_box {
            return Err(invalid(format!(
                "biases (key 4) has {} values; num_box = {num_box} anchors need {}",
                biases.len(),
                2 * num_box
            )));
        }
        if let Some(b) = biases[..2 * num_box]
            .iter()
            .find(|b| !(b.is_finite() && **b > 0.0))
        {
            return Err(invalid(format!(
                "biases (key 4) value {b} must be positive and finite"
            )));
        }
        Ok(YoloDetectionOutput {
            num_class,
            num_box,
            confidence_threshold,
            nms_threshold,
            biases,
        })
    }

    /// Checks the maps; returns the number of candidates they can produce (the output rows).
    fn max_candidates(&self, inputs: &[Shape]) -> LayerResult<usize> {
        if inputs.is_empty() {
            return Err(invalid("expects at least one input map"));
        }
        let per_box = 5 + self.num_class;
        let mut total = 0usize;
        for (b, s) in inputs.iter().enumerate() {
            if s.dims != 3 || s.c / self.num_box != per_box {
                return Err(invalid(format!(
                    "input {b} {s} must be 3-D with num_box x (5 + num_class) = {} x {per_box} \
                     channels",
                    self.num_box
                )));
            }
            total = s
                .plane()
                .checked_mul(self.num_box)
                .and_then(|n| total.checked_add(n))
                .ok_or_else(|| invalid("too many candidate boxes"))?;
        }
        Ok(total)
    }

    /// Decodes one map into `cands` from `n` on; returns the new count.
    fn decode(&self, map: &Tensor, cands: &mut [Candidate], mut n: usize) -> usize {
        let (w, h) = (map.shape.w, map.shape.h);
        let plane = w * h;
        let per_box = 5 + self.num_class;
        for k in 0..self.num_box {
            let (anchor_w, anchor_h) = (self.biases[2 * k], self.biases[2 * k + 1]);
            let ch = |c: usize| map.channel(k * per_box + c);
            let (xs, ys, ws, hs, objectness) = (ch(0), ch(1), ch(2), ch(3), ch(4));
            let scores = &map.data[(k * per_box + 5) * plane..(k * per_box + per_box) * plane];
            for i in 0..h {
                for j in 0..w {
                    let cell = i * w + j;
                    let class_score = |q: usize| scores[q * plane + cell];
                    // Softmax over the classes, then the first class with the largest
                    // probability above 0.
                    let max = (0..self.num_class)
                        .map(class_score)
                        .fold(f32::NEG_INFINITY, f32::max);
                    let sum: f32 = (0..self.num_class)
                        .map(|q| (class_score(q) - max).exp())
                        .sum();
                    let (mut label, mut best) = (0, 0.0f32);
                    for q in 0..self.num_class {
                        let p = (class_score(q) - max).exp() / sum;
                        if p > best {
                            (label, best) = (q, p);
                        }
                    }
                    let confidence = sigmoid(objectness[cell]) * best;
                    if confidence.is_nan() || confidence < self.confidence_threshold {
                        continue;
                    }
                    let cx = (j as f32 + sigmoid(xs[cell])) / w as f32;
                    let cy = (i as f32 + sigmoid(ys[cell])) / h as f32;
                    let bw = ws[cell].exp() * anchor_w / w as f32;
                    let bh = hs[cell].exp() * anchor_h / h as f32;
                    let (xmin, ymin) = (cx - bw * 0.5, cy - bh * 0.5);
                    let (xmax, ymax) = (cx + bw * 0.5, cy + bh * 0.5);
                    cands[n] = Candidate {
                        score: confidence,
                        xmin,
                        ymin,
                        xmax,
                        ymax,
                        area: (xmax - xmin) * (ymax - ymin),
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

impl Op for YoloDetectionOutput {
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
        let mut most = 0;
        for t in inputs {
            most += t.shape.plane() * self.num_box;
        }
        let scratch = ctx
            .scratch
            .get_mut(..most * CANDIDATE_FLOATS)
            .ok_or_else(|| invalid("scratch memory smaller than planned"))?;
        let cands: &mut [Candidate] = bytemuck::cast_slice_mut(scratch);
        let mut n = 0;
        for map in inputs {
            n = self.decode(map, cands, n);
        }
        let cands = &mut cands[..n];
        sort_best_first(cands);

        // Greedy NMS over all classes (ncnn's IoU test); the kept boxes are compacted first.
        let mut kept = 0;
        for i in 0..cands.len() {
            let a = cands[i];
            let suppressed = cands[..kept].iter().any(|b| {
                let inter = intersection(&a, b);
                inter / (a.area + b.area - inter) > self.nms_threshold
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
    use crate::ops::detection_output::detection_count;
    use crate::ops::harness::{assert_close, float, int, params, run};

    /// num_class classes, one anchor (2 x 4 cells), threshold 0.3.
    fn head(num_class: i32, num_box: i32, biases: &[f32]) -> YoloDetectionOutput {
        YoloDetectionOutput::new(&params(&[
            (0, int(num_class)),
            (1, int(num_box)),
            (2, float(0.3)),
            (3, float(0.45)),
            (4, Value::FloatArray(biases.to_vec())),
        ]))
        .unwrap()
    }

    /// A map of `w x h` cells for one box: per cell (x, y, w, h, objectness, scores...);
    /// other cells get objectness -20 (never kept).
    fn map(w: usize, h: usize, cells: &[(usize, &[f32])]) -> (Shape, Vec<f32>) {
        let per_box = cells[0].1.len();
        let mut data = vec![0.0; per_box * w * h];
        data[4 * w * h..5 * w * h].fill(-20.0);
        for (cell, values) in cells {
            for (c, v) in values.iter().enumerate() {
                data[c * w * h + cell] = *v;
            }
        }
        (Shape::d3(w, h, per_box), data)
    }

    #[test]
    fn decodes_with_softmax_scores() {
        // Cell (row 1, col 0) of a 2 x 2 map: centre ((0 + 0.5) / 2, (1 + 0.5) / 2), size
        // exp(ln 2) * 2 / 2 = 2 by 4 / 2 = 2. Objectness 0 (sigmoid 0.5); class scores
        // (0, ln 3): probabilities 1/4, 3/4 -> class 1, confidence 0.375.
        let op = head(2, 1, &[2.0, 4.0]);
        let input = map(
            2,
            2,
            &[(2, &[0.0, 0.0, 2f32.ln(), 0.0, 0.0, 0.0, 3f32.ln()])],
        );
        let out = run(&op, &[input]).unwrap().remove(0);
        assert_eq!(out.0, Shape::d2(6, 4));
        assert_close(&out.1[..6], &[2.0, 0.375, -0.75, -0.25, 1.25, 1.75], 1e-6);
        assert_eq!(out.1[6..], [-1.0, 0.0, 0.0, 0.0, 0.0, 0.0].repeat(3)[..]);
        let t = Tensor {
            shape: out.0,
            data: &out.1,
        };
        assert_eq!(detection_count(&t), 1);
    }

    #[test]
    fn threshold_sort_and_nms_across_classes_and_maps() {
        // Map a (1 x 1): box (0, 0)-(1, 1), class 0 with 0.5 * p2. Map b (2 x 1): cell 0 is
        // box (0, 0)-(0.5, 1), class 1 with sigmoid(3) * p2 (the best); cell 1 scores
        // 0.5 * softmax(0.1) = 0.262 < 0.3 and is dropped. The two boxes have IoU 0.5.
        let maps = || {
            let a = map(1, 1, &[(0, &[0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0][..])]);
            let b = map(
                2,
                1,
                &[
                    (0, &[0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 2.0][..]),
                    (1, &[0.0, 0.0, -1.0, -1.0, 0.0, 0.0, 0.1][..]),
                ],
            );
            [a, b]
        };
        let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
        let p2 = sig(2.0);
        let best = [2.0, sig(3.0) * p2, 0.0, 0.0, 0.5, 1.0];
        // nms 0.45: map a's box is suppressed by the better one of the other class.
        let out = run(&head(2, 1, &[1.0, 1.0]), &maps()).unwrap().remove(0);
        assert_eq!(out.0, Shape::d2(6, 3));
        assert_close(&out.1[..6], &best, 1e-6);
        assert_eq!(out.1[6..], [-1.0, 0.0, 0.0, 0.0, 0.0, 0.0].repeat(2)[..]);
        // nms 0.6 keeps it.
        let loose = YoloDetectionOutput {
            nms_threshold: 0.6,
            ..head(2, 1, &[1.0, 1.0])
        };
        let out = run(&loose, &maps()).unwrap().remove(0);
        assert_close(&out.1[..6], &best, 1e-6);
        assert_close(&out.1[6..12], &[1.0, 0.5 * p2, 0.0, 0.0, 1.0, 1.0], 1e-6);
        assert_eq!(out.1[12], -1.0);
    }

    #[test]
    fn second_box_uses_its_anchor_and_channels() {
        // num_box 2, 1 class: box 1's channels start at 6; anchor (4, 6) on a 1 x 1 map.
        let op = head(1, 2, &[1.0, 1.0, 4.0, 6.0]);
        let mut data = vec![0.0; 12];
        data[4] = -30.0; // box 0 objectness: dropped
        data[6 + 4] = 5.0;
        let out = run(&op, &[(Shape::d3(1, 1, 12), data)]).unwrap().remove(0);
        // One class: probability 1, confidence sigmoid(5).
        let conf = 1.0 / (1.0 + (-5f32).exp());
        assert_close(&out.1[..6], &[1.0, conf, -1.5, -2.5, 2.5, 3.5], 1e-6);
        assert_eq!(out.1[6], -1.0);
    }

    #[test]
    fn bad_params_and_shapes() {
        let bad = |pairs: &[(usize, Value)], what: &str| {
            let e = YoloDetectionOutput::new(&params(pairs)).unwrap_err();
            assert!(e.0.contains(what), "{e}");
        };
        let biases = Value::FloatArray(vec![1.0; 10]);
        bad(&[(0, int(0)), (4, biases.clone())], "num_class");
        bad(&[(1, int(-1)), (4, biases.clone())], "num_box");
        bad(&[(4, Value::FloatArray(vec![1.0; 9]))], "biases");
        bad(
            &[(1, int(1)), (4, Value::FloatArray(vec![1.0, 0.0]))],
            "positive",
        );
        bad(&[(2, float(f32::NAN)), (4, biases)], "NaN");
        let op = head(2, 1, &[1.0, 1.0]);
        assert!(op.output_shapes(&[]).is_err());
        let e = op.output_shapes(&[Shape::d3(2, 2, 6)]).unwrap_err();
        assert!(e.0.contains("channels"), "{e}");
        assert!(op.output_shapes(&[Shape::d2(2, 7)]).is_err());
        // ncnn divides: 8 channels / 1 box = 8 != 7, but 2 boxes x 7 + 1 spare is accepted.
        let op2 = head(2, 2, &[1.0; 4]);
        assert_eq!(
            op2.output_shapes(&[Shape::d3(3, 2, 15)]).unwrap()[0],
            Shape::d2(6, 12)
        );
    }
}
