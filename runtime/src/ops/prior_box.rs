//! PriorBox (SSD anchor generator, caffe style). The output depends only on the shapes of
//! the feature map and the image, never on their data.
//!
//! For every feature cell (row-major over h, w) and every min size `m` the boxes are, in
//! order: the `m x m` box; if max sizes are given, the `sqrt(m * max)` square box; then
//! for every aspect ratio `ar` the `m*sqrt(ar) x m/sqrt(ar)` box, followed by its transpose
//! when `flip` is set. Boxes are normalised by the image size. Output: 2-D, w = 4 * cells *
//! priors per cell, h = 2; row 0 holds `xmin ymin xmax ymax`, row 1 the four variances
//! repeated for each box.

use super::{Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, Tensor, TensorMut};

/// ncnn's "take it from the shapes" marker.
const AUTO: i32 = -233;

#[derive(Debug)]
pub struct PriorBox {
    pub min_sizes: Vec<f32>,
    pub max_sizes: Vec<f32>,
    pub aspect_ratios: Vec<f32>,
    pub variances: [f32; 4],
    pub flip: bool,
    pub clip: bool,
    /// Image size in pixels, or `AUTO` for the second input's w / h.
    pub image_width: i32,
    pub image_height: i32,
    /// Distance between cell centres in pixels, or -233 for image size / feature size.
    pub step_width: f32,
    pub step_height: f32,
    pub offset: f32,
    /// mmdetection variants: step rounded up to an integer; centres at `offset * (step - 1)`.
    pub step_mmdetection: bool,
    pub center_mmdetection: bool,
}

impl PriorBox {
    pub fn new(pd: &ParamDict) -> LayerResult<PriorBox> {
        let p = PriorBox {
            min_sizes: pd.float_array(0)?,
            max_sizes: pd.float_array(1)?,
            aspect_ratios: pd.float_array(2)?,
            variances: [
                pd.float(3, 0.1)?,
                pd.float(4, 0.1)?,
                pd.float(5, 0.2)?,
                pd.float(6, 0.2)?,
            ],
            flip: pd.int(7, 1)? != 0,
            clip: pd.int(8, 0)? != 0,
            image_width: pd.int(9, 0)?,
            image_height: pd.int(10, 0)?,
            step_width: pd.float(11, AUTO as f32)?,
            step_height: pd.float(12, AUTO as f32)?,
            offset: pd.float(13, 0.0)?,
            step_mmdetection: pd.int(14, 0)? != 0,
            center_mmdetection: pd.int(15, 0)? != 0,
        };
        if p.min_sizes.is_empty() {
            return Err(invalid("min_sizes (key 0) must not be empty"));
        }
        // ncnn reads max_sizes[k] for every min size k.
        if !p.max_sizes.is_empty() && p.max_sizes.len() != p.min_sizes.len() {
            return Err(invalid(format!(
                "{} max_sizes (key 1) for {} min_sizes (key 0); give one per min size or none",
                p.max_sizes.len(),
                p.min_sizes.len()
            )));
        }
        Ok(p)
    }

    /// Boxes generated for each feature cell.
    pub fn priors_per_cell(&self) -> usize {
        let (mins, ratios) = (self.min_sizes.len(), self.aspect_ratios.len());
        let per_ratio = if self.flip { 2 } else { 1 };
        // Saturating: absurd array lengths then fail the shape check instead of overflowing.
        mins.saturating_mul(ratios)
            .saturating_mul(per_ratio)
            .saturating_add(mins + self.max_sizes.len())
    }

    /// Image size in pixels for these inputs.
    fn image_size(&self, inputs: &[Shape]) -> LayerResult<(i32, i32)> {
        let from_image = |v: i32, dim: fn(&Shape) -> usize, what: &str| -> LayerResult<i32> {
            if v != AUTO {
                return Ok(v);
            }
            let image = inputs.get(1).ok_or_else(|| {
                invalid(format!(
                    "{what} is -233 (take it from the image) but there is no second input; \
                     mxnet-style PriorBox is not supported"
                ))
            })?;
            i32::try_from(dim(image)).map_err(|_| invalid("image too large"))
        };
        let w = from_image(self.image_width, |s| s.w, "image_width (key 9)")?;
        let h = from_image(self.image_height, |s| s.h, "image_height (key 10)")?;
        if w <= 0 || h <= 0 {
            return Err(invalid(format!(
                "image size {w} x {h} must be positive (keys 9 / 10, or -233 for the 2nd input)"
            )));
        }
        Ok((w, h))
    }
}

impl Op for PriorBox {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        if inputs.is_empty() || inputs.len() > 2 {
            return Err(invalid(format!(
                "expects 1 or 2 input blobs (feature map, image), got {}",
                inputs.len()
            )));
        }
        self.image_size(inputs)?;
        let f = inputs[0];
        let len =
            f.w.checked_mul(f.h)
                .and_then(|n| n.checked_mul(self.priors_per_cell()))
                .and_then(|n| n.checked_mul(4))
                .ok_or_else(|| invalid("too many prior boxes"))?;
        Ok(vec![Shape::checked(2, len, 2, 1, 1)?])
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        _ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let shapes = [
            inputs[0].shape,
            inputs.get(1).map_or(inputs[0].shape, |t| t.shape),
        ];
        let (image_w, image_h) = self.image_size(&shapes[..inputs.len()])?;
        let (w, h) = (inputs[0].shape.w, inputs[0].shape.h);
        let step = |given: f32, image: i32, cells: usize| {
            if given != AUTO as f32 {
                given
            } else if self.step_mmdetection {
                (image as f32 / cells as f32).ceil()
            } else {
                image as f32 / cells as f32
            }
        };
        let step_w = step(self.step_width, image_w, w);
        let step_h = step(self.step_height, image_h, h);
        let (image_w, image_h) = (image_w as f32, image_h as f32);

        let out = &mut outputs[0];
        let row_len = out.shape.w;
        let (boxes, variances) = out.data.split_at_mut(row_len);
        let mut at = 0;
        let mut put = |cx: f32, cy: f32, bw: f32, bh: f32| {
            boxes[at] = (cx - bw * 0.5) / image_w;
            boxes[at + 1] = (cy - bh * 0.5) / image_h;
            boxes[at + 2] = (cx + bw * 0.5) / image_w;
            boxes[at + 3] = (cy + bh * 0.5) / image_h;
            at += 4;
        };
        for i in 0..h {
            let (mut cx, cy) = if self.center_mmdetection {
                (
                    self.offset * (step_w - 1.0),
                    self.offset * (step_h - 1.0) + i as f32 * step_h,
                )
            } else {
                (
                    self.offset * step_w,
                    self.offset * step_h + i as f32 * step_h,
                )
            };
            for _ in 0..w {
                for (k, &min_size) in self.min_sizes.iter().enumerate() {
                    put(cx, cy, min_size, min_size);
                    if let Some(&max_size) = self.max_sizes.get(k) {
                        let side = (min_size * max_size).sqrt();
                        put(cx, cy, side, side);
                    }
                    for &ar in &self.aspect_ratios {
                        let (bw, bh) = (min_size * ar.sqrt(), min_size / ar.sqrt());
                        put(cx, cy, bw, bh);
                        if self.flip {
                            put(cx, cy, bh, bw);
                        }
                    }
                }
                // Accumulated, not multiplied, so centres round exactly as ncnn's do.
                cx += step_w;
            }
        }
        if self.clip {
            boxes.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
        }
        for v in variances.chunks_exact_mut(4) {
            v.copy_from_slice(&self.variances);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::pool::Pool;

    fn params(entries: &[(usize, Value)]) -> ParamDict {
        let mut pd = ParamDict::new();
        for (k, v) in entries {
            pd.set(*k, v.clone()).unwrap();
        }
        pd
    }

    fn run(op: &PriorBox, feature: Shape, image: Shape) -> (Shape, Vec<f32>) {
        let shape = op.output_shapes(&[feature, image]).unwrap()[0];
        let (fd, id) = (vec![0.0; feature.len()], vec![0.0; image.len()]);
        let mut out = vec![f32::NAN; shape.len()];
        let pool = Pool::new(1).unwrap();
        let mut ctx = Ctx {
            pool: &pool,
            scratch: &mut [],
        };
        op.forward(
            &[
                Tensor {
                    shape: feature,
                    data: &fd,
                },
                Tensor {
                    shape: image,
                    data: &id,
                },
            ],
            &mut [TensorMut {
                shape,
                data: &mut out,
            }],
            &mut ctx,
        )
        .unwrap();
        (shape, out)
    }

    #[test]
    fn one_cell_box_order_and_variances() {
        // 1x1 feature map on a 100x100 image: centre (50, 50). min 20, max 80 -> sqrt 40,
        // aspect ratio 4 -> 40 x 10 and flipped 10 x 40.
        let op = PriorBox::new(&params(&[
            (0, Value::FloatArray(vec![20.0])),
            (1, Value::FloatArray(vec![80.0])),
            (2, Value::FloatArray(vec![4.0])),
            (9, Value::Int(-233)),
            (10, Value::Int(-233)),
            (13, Value::Float(0.5)),
        ]))
        .unwrap();
        assert_eq!(op.priors_per_cell(), 4);
        let (shape, out) = run(&op, Shape::d3(1, 1, 8), Shape::d3(100, 100, 3));
        assert_eq!(shape, Shape::d2(16, 2));
        #[rustfmt::skip]
        let boxes = [
            0.4, 0.4, 0.6, 0.6,
            0.3, 0.3, 0.7, 0.7,
            0.3, 0.45, 0.7, 0.55,
            0.45, 0.3, 0.55, 0.7,
        ];
        for (got, want) in out[..16].iter().zip(boxes) {
            assert!((got - want).abs() < 1e-6, "{:?}", &out[..16]);
        }
        assert_eq!(&out[16..], &[0.1, 0.1, 0.2, 0.2].repeat(4)[..]);
    }

    #[test]
    fn grid_steps_offset_and_clip() {
        // 2x2 cells on a 40x20 image: steps 20 and 10; centres x 10, 30 and y 5, 15.
        // One 16x16 box per cell; clipping cuts the parts outside the image.
        let op = PriorBox::new(&params(&[
            (0, Value::FloatArray(vec![16.0])),
            (3, Value::Float(1.0)),
            (8, Value::Int(1)),
            (9, Value::Int(-233)),
            (10, Value::Int(-233)),
            (13, Value::Float(0.5)),
        ]))
        .unwrap();
        let (shape, out) = run(&op, Shape::d3(2, 2, 1), Shape::d3(40, 20, 3));
        assert_eq!(shape, Shape::d2(16, 2));
        #[rustfmt::skip]
        let boxes = [
            2.0 / 40.0, 0.0, 18.0 / 40.0, 13.0 / 20.0,
            22.0 / 40.0, 0.0, 38.0 / 40.0, 13.0 / 20.0,
            2.0 / 40.0, 7.0 / 20.0, 18.0 / 40.0, 1.0,
            22.0 / 40.0, 7.0 / 20.0, 38.0 / 40.0, 1.0,
        ];
        for (got, want) in out[..16].iter().zip(boxes) {
            assert!((got - want).abs() < 1e-6, "{:?}", &out[..16]);
        }
        assert_eq!(&out[16..20], &[1.0, 0.1, 0.2, 0.2]);
    }

    #[test]
    fn explicit_image_size_and_step() {
        // image 300 given, step 100, offset 0: centres at 0, 100.
        let op = PriorBox::new(&params(&[
            (0, Value::FloatArray(vec![30.0])),
            (7, Value::Int(0)),
            (9, Value::Int(300)),
            (10, Value::Int(300)),
            (11, Value::Float(100.0)),
            (12, Value::Float(100.0)),
        ]))
        .unwrap();
        let (_, out) = run(&op, Shape::d3(2, 1, 1), Shape::d3(7, 7, 3));
        let want = [
            -0.05,
            -0.05,
            0.05,
            0.05,
            0.85 / 3.0,
            -0.05,
            1.15 / 3.0,
            0.05,
        ];
        for (got, want) in out[..8].iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{:?}", &out[..8]);
        }
    }

    #[test]
    fn ssd_shape_matches_the_benchmark_hint() {
        // mobilenet_ssd conv13: 10x10 cells, min 105, max 150, ratios 2,3 flipped -> 6 priors;
        // the param file's shape hint says w = 2400.
        let op = PriorBox::new(&params(&[
            (0, Value::FloatArray(vec![105.0])),
            (1, Value::FloatArray(vec![150.0])),
            (2, Value::FloatArray(vec![2.0, 3.0])),
            (9, Value::Int(-233)),
            (10, Value::Int(-233)),
            (13, Value::Float(0.5)),
        ]))
        .unwrap();
        let s = op
            .output_shapes(&[Shape::d3(10, 10, 512), Shape::d3(300, 300, 3)])
            .unwrap();
        assert_eq!(s, vec![Shape::d2(2400, 2)]);
    }

    #[test]
    fn bad_params_are_errors() {
        let e = PriorBox::new(&ParamDict::new()).unwrap_err();
        assert!(e.0.contains("min_sizes"), "{e}");
        let e = PriorBox::new(&params(&[
            (0, Value::FloatArray(vec![1.0, 2.0])),
            (1, Value::FloatArray(vec![3.0])),
        ]))
        .unwrap_err();
        assert!(e.0.contains("max_sizes"), "{e}");
        // Default image size 0 cannot normalise anything.
        let op = PriorBox::new(&params(&[(0, Value::FloatArray(vec![1.0]))])).unwrap();
        let e = op
            .output_shapes(&[Shape::d3(2, 2, 1), Shape::d3(8, 8, 1)])
            .unwrap_err();
        assert!(e.0.contains("must be positive"), "{e}");
        let op = PriorBox::new(&params(&[
            (0, Value::FloatArray(vec![1.0])),
            (9, Value::Int(-233)),
            (10, Value::Int(-233)),
        ]))
        .unwrap();
        let e = op.output_shapes(&[Shape::d3(2, 2, 1)]).unwrap_err();
        assert!(e.0.contains("no second input"), "{e}");
    }
}
