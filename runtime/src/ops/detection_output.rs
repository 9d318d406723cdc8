//! DetectionOutput (SSD head, caffe style): decodes box offsets against the prior boxes,
//! keeps per class the boxes above the confidence threshold, suppresses overlaps per class
//! (NMS), and returns the best `keep_top_k` over all classes.
//!
//! Inputs: `loc` (4 offsets per prior), `conf` (softmaxed scores, `num_class` per prior),
//! `priorbox` (2-D, row 0 boxes, row 1 variances, as PriorBox writes them).
//!
//! Output: 2-D, w = 6, one row `label, score, xmin, ymin, xmax, ymax` per detection, best
//! first. ncnn sizes the output to the number of detections (and leaves it empty when
//! there are none). Our blobs are sized at load, so the output always has `max_rows()` rows:
//! the detections come first and every row after them has label -1 and zeros elsewhere.
//! Real labels are >= 1 (class 0 is background), so [`detection_count`] finds the count
//! by looking for the first row whose label is negative.

use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, Tensor, TensorMut};
use std::cmp::Ordering;

/// Label written into the rows after the last detection.
pub const NO_DETECTION: f32 = -1.0;

#[derive(Debug)]
pub struct DetectionOutput {
    pub num_class: usize,
    pub nms_threshold: f32,
    pub nms_top_k: usize,
    pub keep_top_k: usize,
    pub confidence_threshold: f32,
    /// Keys 5..8: used by ncnn only for mxnet-style models (not supported); the caffe-style
    /// path takes the variances from the prior box blob.
    pub variances: [f32; 4],
}

/// One scored box of one class, kept in scratch memory.
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Candidate {
    score: f32,
    label: u32,
    prior: u32,
}

const CANDIDATE_FLOATS: usize = std::mem::size_of::<Candidate>() / 4;

/// Best first; ties by label then prior so the order is deterministic (ncnn's quicksort
/// leaves ties in an unspecified order).
fn best_first(a: &Candidate, b: &Candidate) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then(a.label.cmp(&b.label))
        .then(a.prior.cmp(&b.prior))
}

/// Number of detections in a DetectionOutput result: rows up to the first with a negative
/// label.
pub fn detection_count(output: &Tensor) -> usize {
    output
        .data
        .chunks_exact(6)
        .take_while(|row| row[0] >= 0.0)
        .count()
}

impl DetectionOutput {
    pub fn new(pd: &ParamDict) -> LayerResult<DetectionOutput> {
        let num_class = pd.int(0, 0)?;
        if num_class == -233 {
            return Err(invalid(
                "num_class -233 (mxnet-style DetectionOutput) is not supported",
            ));
        }
        if num_class < 2 {
            return Err(invalid(format!(
                "num_class (key 0) is {num_class}; it needs the background class 0 and at least one more"
            )));
        }
        let count = |key: usize, default: usize, what: &str| {
            pd.usize(key, default)
                .map_err(|_| invalid(format!("{what} (key {key}) must not be negative")))
        };
        let op = DetectionOutput {
            num_class: num_class as usize,
            nms_threshold: pd.float(1, 0.05)?,
            nms_top_k: count(2, 300, "nms_top_k")?,
            keep_top_k: count(3, 100, "keep_top_k")?,
            confidence_threshold: pd.float(4, 0.5)?,
            variances: [
                pd.float(5, 0.1)?,
                pd.float(6, 0.1)?,
                pd.float(7, 0.2)?,
                pd.float(8, 0.2)?,
            ],
        };
        if op.keep_top_k == 0 {
            return Err(invalid("keep_top_k (key 3) must be at least 1"));
        }
        Ok(op)
    }

    /// Most detections one forward can return, for `num_prior` priors: the output's rows.
    pub fn max_rows(&self, num_prior: usize) -> usize {
        let per_class = self.nms_top_k.min(num_prior);
        let all = (self.num_class - 1).saturating_mul(per_class);
        self.keep_top_k.min(all).max(1)
    }

    /// Checks the three input shapes; returns the number of priors.
    fn num_prior(&self, inputs: &[Shape]) -> LayerResult<usize> {
        expect_inputs(inputs, 3)?;
        let (loc, conf, prior) = (inputs[0], inputs[1], inputs[2]);
        if prior.dims != 2 || prior.h != 2 || prior.w % 4 != 0 {
            return Err(invalid(format!(
                "priorbox input {prior} must be 2-D with w = 4 * priors and h = 2 (boxes, variances)"
            )));
        }
        let n = prior.w / 4;
        if loc.len() != 4 * n {
            return Err(invalid(format!(
                "loc input {loc} has {} values; {n} priors need {}",
                loc.len(),
                4 * n
            )));
        }
        if Some(conf.len()) != n.checked_mul(self.num_class) {
            return Err(invalid(format!(
                "conf input {conf} has {} values; {n} priors x {} classes need {}",
                conf.len(),
                self.num_class,
                n.saturating_mul(self.num_class)
            )));
        }
        Ok(n)
    }

    /// Scratch layout: decoded boxes (4 floats per prior), then one candidate list for the
    /// class being processed (one per prior), then all kept candidates of all classes.
    fn scratch_parts(&self, num_prior: usize) -> (usize, usize, usize) {
        let kept = (self.num_class - 1) * self.nms_top_k.min(num_prior);
        (
            4 * num_prior,
            num_prior * CANDIDATE_FLOATS,
            kept * CANDIDATE_FLOATS,
        )
    }

    /// Whether ncnn skips a prior because its background score leaves no class above the
    /// threshold (compared in double, as ncnn does).
    fn background_wins(&self, background: f32) -> bool {
        background as f64 >= 1.0 - self.confidence_threshold as f64
    }
}

/// Intersection area of two boxes (0 when apart).
fn intersection(a: &[f32], b: &[f32]) -> f32 {
    if a[0] > b[2] || a[2] < b[0] || a[1] > b[3] || a[3] < b[1] {
        return 0.0;
    }
    (a[2].min(b[2]) - a[0].max(b[0])) * (a[3].min(b[3]) - a[1].max(b[1]))
}

fn area(a: &[f32]) -> f32 {
    (a[2] - a[0]) * (a[3] - a[1])
}

impl Op for DetectionOutput {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        let n = self.num_prior(inputs)?;
        Ok(vec![Shape::checked(2, 6, self.max_rows(n), 1, 1)?])
    }

    fn scratch_len(&self, inputs: &[Shape], _outputs: &[Shape]) -> usize {
        let n = self.num_prior(inputs).unwrap_or(0);
        let (a, b, c) = self.scratch_parts(n);
        a + b + c
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let shapes = [inputs[0].shape, inputs[1].shape, inputs[2].shape];
        let num_prior = self.num_prior(&shapes)?;
        let (loc, conf) = (inputs[0].data, inputs[1].data);
        let (prior_boxes, prior_vars) = inputs[2].data.split_at(4 * num_prior);
        let nc = self.num_class;

        let (boxes_len, class_len, kept_len) = self.scratch_parts(num_prior);
        let scratch = ctx
            .scratch
            .get_mut(..boxes_len + class_len + kept_len)
            .ok_or_else(|| invalid("scratch memory smaller than planned"))?;
        let (boxes, rest) = scratch.split_at_mut(boxes_len);
        let (class_part, kept_part) = rest.split_at_mut(class_len);
        let class_cands: &mut [Candidate] = bytemuck::cast_slice_mut(class_part);
        let kept: &mut [Candidate] = bytemuck::cast_slice_mut(kept_part);

        // Decode (CENTER_SIZE, variances from the prior blob).
        for i in 0..num_prior {
            if self.background_wins(conf[i * nc]) {
                continue;
            }
            let (l, p, v) = (
                &loc[4 * i..4 * i + 4],
                &prior_boxes[4 * i..4 * i + 4],
                &prior_vars[4 * i..4 * i + 4],
            );
            let (pw, ph) = (p[2] - p[0], p[3] - p[1]);
            let (pcx, pcy) = ((p[0] + p[2]) * 0.5, (p[1] + p[3]) * 0.5);
            let cx = v[0] * l[0] * pw + pcx;
            let cy = v[1] * l[1] * ph + pcy;
            let w = (v[2] * l[2]).exp() * pw;
            let h = (v[3] * l[3]).exp() * ph;
            boxes[4 * i..4 * i + 4].copy_from_slice(&[
                cx - w * 0.5,
                cy - h * 0.5,
                cx + w * 0.5,
                cy + h * 0.5,
            ]);
        }
        let bbox = |c: &Candidate| &boxes[4 * c.prior as usize..4 * c.prior as usize + 4];

        // Per class: threshold, sort, cut to nms_top_k, suppress overlaps.
        let mut kept_count = 0;
        for class in 1..nc {
            let mut n = 0;
            for prior in 0..num_prior {
                let score = conf[prior * nc + class];
                if score > self.confidence_threshold && !self.background_wins(conf[prior * nc]) {
                    class_cands[n] = Candidate {
                        score,
                        label: class as u32,
                        prior: prior as u32,
                    };
                    n += 1;
                }
            }
            let cands = &mut class_cands[..n];
            cands.sort_unstable_by(best_first);
            let cands = &mut cands[..n.min(self.nms_top_k)];
            // Greedy NMS in place: the picked boxes are compacted at the front.
            let mut picked = 0;
            for i in 0..cands.len() {
                let a = bbox(&cands[i]);
                let area_a = area(a);
                let keep = cands[..picked].iter().all(|p| {
                    let b = bbox(p);
                    let inter = intersection(a, b);
                    let iou = inter / (area_a + area(b) - inter);
                    // NaN (two empty boxes) is not greater and keeps the box, as in ncnn.
                    iou.partial_cmp(&self.nms_threshold) != Some(Ordering::Greater)
                });
                if keep {
                    cands[picked] = cands[i];
                    picked += 1;
                }
            }
            kept[kept_count..kept_count + picked].copy_from_slice(&cands[..picked]);
            kept_count += picked;
        }

        let kept = &mut kept[..kept_count];
        kept.sort_unstable_by(best_first);
        let out = &mut outputs[0];
        let rows = out.data.chunks_exact_mut(6);
        let mut dets = kept.iter().take(self.keep_top_k);
        for row in rows {
            match dets.next() {
                Some(c) => {
                    let b = bbox(c);
                    row.copy_from_slice(&[c.label as f32, c.score, b[0], b[1], b[2], b[3]]);
                }
                None => row.copy_from_slice(&[NO_DETECTION, 0.0, 0.0, 0.0, 0.0, 0.0]),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::pool::Pool;

    fn op(entries: &[(usize, Value)]) -> DetectionOutput {
        let mut pd = ParamDict::new();
        for (k, v) in entries {
            pd.set(*k, v.clone()).unwrap();
        }
        DetectionOutput::new(&pd).unwrap()
    }

    /// Runs the op on priors (`xmin ymin xmax ymax` each) with variances 0.1 0.1 0.2 0.2.
    fn run(op: &DetectionOutput, loc: &[f32], conf: &[f32], priors: &[f32]) -> Vec<f32> {
        let n = priors.len() / 4;
        let mut pb = priors.to_vec();
        pb.extend([0.1, 0.1, 0.2, 0.2].repeat(n));
        let shapes = [
            Shape::d1(4 * n),
            Shape::d1(op.num_class * n),
            Shape::d2(4 * n, 2),
        ];
        let out_shape = op.output_shapes(&shapes).unwrap()[0];
        let mut scratch = vec![f32::NAN; op.scratch_len(&shapes, &[out_shape])];
        let mut out = vec![f32::NAN; out_shape.len()];
        let pool = Pool::new(1).unwrap();
        let mut ctx = Ctx {
            pool: &pool,
            scratch: &mut scratch,
        };
        let ins = [
            Tensor {
                shape: shapes[0],
                data: loc,
            },
            Tensor {
                shape: shapes[1],
                data: conf,
            },
            Tensor {
                shape: shapes[2],
                data: &pb,
            },
        ];
        op.forward(
            &ins,
            &mut [TensorMut {
                shape: out_shape,
                data: &mut out,
            }],
            &mut ctx,
        )
        .unwrap();
        out
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "got {got:?}\nwant {want:?}");
        }
    }

    fn ssd() -> DetectionOutput {
        op(&[
            (0, Value::Int(3)),
            (1, Value::Float(0.45)),
            (2, Value::Int(100)),
            (4, Value::Float(0.25)),
        ])
    }

    #[test]
    fn decodes_center_size_with_variances() {
        // Prior centred (0.5, 0.5), 0.2 x 0.4. Offsets (1, -1, ln 2 / 0.2, 0):
        // centre x 0.5 + 0.1*1*0.2 = 0.52, y 0.5 - 0.1*0.4 = 0.46, w 0.4, h 0.4.
        let d = ssd();
        let loc = [1.0, -1.0, 2f32.ln() / 0.2, 0.0];
        let out = run(&d, &loc, &[0.1, 0.8, 0.1], &[0.4, 0.3, 0.6, 0.7]);
        assert_eq!(d.max_rows(1), 2);
        assert_close(&out[..6], &[1.0, 0.8, 0.32, 0.26, 0.72, 0.66]);
        assert_eq!(&out[6..], &[-1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn nms_suppresses_the_weaker_overlapping_box_per_class_only() {
        // Priors 0 and 1 overlap with IoU 0.14 / 0.18 = 0.78 (> 0.45); prior 2 is apart.
        let priors = [
            0.0, 0.0, 0.4, 0.4, //
            0.0, 0.05, 0.4, 0.45, 0.6, 0.6, 0.9, 0.9,
        ];
        let loc = [0.0; 12];
        #[rustfmt::skip]
        let conf = [
            0.1, 0.7, 0.2,   // prior 0: class 1 strong
            0.1, 0.6, 0.3,   // prior 1: class 1 weaker (suppressed), class 2 0.3
            0.6, 0.1, 0.3,   // prior 2: class 2 0.3 but the background is 0.6 < 0.75
        ];
        let out = run(&ssd(), &loc, &conf, &priors);
        // Class 2 keeps prior 1 even though it overlaps class 1's prior 0: NMS is per class.
        #[rustfmt::skip]
        assert_close(&out[..18], &[
            1.0, 0.7, 0.0, 0.0, 0.4, 0.4,
            2.0, 0.3, 0.0, 0.05, 0.4, 0.45,
            2.0, 0.3, 0.6, 0.6, 0.9, 0.9,
        ]);
        // 2 classes x 3 priors can give at most 6 rows; the rest are padding.
        assert_eq!(&out[18..], &[-1.0, 0.0, 0.0, 0.0, 0.0, 0.0].repeat(3)[..]);
        let t = Tensor {
            shape: Shape::d2(6, 6),
            data: &out,
        };
        assert_eq!(detection_count(&t), 3);
    }

    #[test]
    fn thresholds_and_top_k() {
        let priors = [
            0.0, 0.0, 0.1, 0.1, //
            0.2, 0.2, 0.3, 0.3, //
            0.4, 0.4, 0.5, 0.5, //
            0.6, 0.6, 0.7, 0.7,
        ];
        let loc = [0.0; 16];
        // Class 1 scores 0.5, 0.25 (not > 0.25), 0.9, 0.3; background of prior 3 is 0.7 < 0.75.
        #[rustfmt::skip]
        let conf = [
            0.5, 0.5, 0.0,
            0.75, 0.25, 0.0,
            0.1, 0.9, 0.0,
            0.7, 0.3, 0.0,
        ];
        let out = run(&ssd(), &loc, &conf, &priors);
        let labels_scores: Vec<(f32, f32)> = out.chunks(6).map(|r| (r[0], r[1])).collect();
        assert_eq!(
            labels_scores[..4],
            [(1.0, 0.9), (1.0, 0.5), (1.0, 0.3), (-1.0, 0.0)]
        );

        // nms_top_k 2 keeps the best two per class before NMS; keep_top_k 1 keeps one overall.
        let d = op(&[
            (0, Value::Int(3)),
            (2, Value::Int(2)),
            (3, Value::Int(5)),
            (4, Value::Float(0.25)),
        ]);
        assert_eq!(d.max_rows(4), 4);
        let out = run(&d, &loc, &conf, &priors);
        assert_close(
            &out[..12],
            &[1.0, 0.9, 0.4, 0.4, 0.5, 0.5, 1.0, 0.5, 0.0, 0.0, 0.1, 0.1],
        );
        assert_eq!(out[12], -1.0);
        let d = op(&[
            (0, Value::Int(3)),
            (3, Value::Int(1)),
            (4, Value::Float(0.25)),
        ]);
        assert_close(
            &run(&d, &loc, &conf, &priors),
            &[1.0, 0.9, 0.4, 0.4, 0.5, 0.5],
        );
    }

    #[test]
    fn no_detections_fill_every_row_with_label_minus_one() {
        let out = run(&ssd(), &[0.0; 4], &[0.9, 0.05, 0.05], &[0.0, 0.0, 1.0, 1.0]);
        assert_eq!(out, [-1.0, 0.0, 0.0, 0.0, 0.0, 0.0].repeat(2));
        let t = Tensor {
            shape: Shape::d2(6, 2),
            data: &out,
        };
        assert_eq!(detection_count(&t), 0);
    }

    #[test]
    fn bad_params_and_shapes_are_errors() {
        let mut pd = ParamDict::new();
        assert!(DetectionOutput::new(&pd)
            .unwrap_err()
            .0
            .contains("num_class"));
        pd.set(0, Value::Int(-233)).unwrap();
        assert!(DetectionOutput::new(&pd).unwrap_err().0.contains("mxnet"));
        pd.set(0, Value::Int(3)).unwrap();
        pd.set(3, Value::Int(-1)).unwrap();
        assert!(DetectionOutput::new(&pd)
            .unwrap_err()
            .0
            .contains("keep_top_k"));
        let d = ssd();
        let e = d
            .output_shapes(&[Shape::d1(8), Shape::d1(6), Shape::d2(8, 1)])
            .unwrap_err();
        assert!(e.0.contains("priorbox"), "{e}");
        let e = d
            .output_shapes(&[Shape::d1(4), Shape::d1(6), Shape::d2(8, 2)])
            .unwrap_err();
        assert!(e.0.contains("loc input"), "{e}");
        let e = d
            .output_shapes(&[Shape::d1(8), Shape::d1(5), Shape::d2(8, 2)])
            .unwrap_err();
        assert!(e.0.contains("conf input"), "{e}");
    }
}

#[cfg(test)]
mod net_tests {
    use crate::{Net, Options};

    #[test]
    fn ssd_tail_runs_in_a_net() {
        // PriorBox over a 1x1 feature of a 10x10 image feeds DetectionOutput.
        let param = "7767517\n6 6\n\
            Input feat 0 1 feat 0=1 1=1 2=1\n\
            Input image 0 1 image 0=10 1=10 2=1\n\
            Input loc 0 1 loc 0=4\n\
            Input conf 0 1 conf 0=2\n\
            PriorBox pb 2 1 feat image pb -23300=1,4.0 9=-233 10=-233 13=0.5\n\
            DetectionOutput det 3 1 loc conf pb out 0=2 4=0.25\n";
        let mut net = Net::from_memory(param.as_bytes(), &[], &Options::default()).unwrap();
        assert_eq!(net.blob_shape("pb").unwrap(), crate::Shape::d2(4, 2));
        assert_eq!(net.blob_shape("out").unwrap(), crate::Shape::d2(6, 1));
        net.set_input("loc", &[0.0; 4]).unwrap();
        net.set_input("conf", &[0.2, 0.8]).unwrap();
        net.run().unwrap();
        let out = net.blob("out").unwrap();
        let want = [1.0, 0.8, 0.3, 0.3, 0.7, 0.7];
        for (g, w) in out.data.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{:?}", out.data);
        }
        assert_eq!(super::detection_count(&out), 1);
    }
}
