//! `NetBuilder`: writes ncnn models layer by layer for the demo, the benchmark zoo and the
//! tests. It tracks blob shapes, so each layer is one line and weight sizes follow from the
//! shapes; weights are drawn from a seeded generator (or left out for structure-only models).

use crate::ncnn_writer::ModelWriter;
use anyhow::{bail, Result};
use eq_runtime::rng::Rng;
use eq_runtime::Shape;

/// A blob produced so far: its name and shape.
#[derive(Clone, Debug)]
pub struct Blob {
    pub name: String,
    pub shape: Shape,
}

/// Appends layers to a model, naming each layer and its output blob alike, and draws weights
/// from a seeded generator (uniform, scaled by fan-in so activations stay in range).
pub struct NetBuilder {
    model: ModelWriter,
    rng: Rng,
    /// False: write the `.param` only (the `.bin` stays empty), for structure-only models.
    weights: bool,
}

impl NetBuilder {
    pub fn new(seed: u64) -> NetBuilder {
        NetBuilder {
            model: ModelWriter::new(),
            rng: Rng::new(seed),
            weights: true,
        }
    }

    /// A builder that writes no weights: large nets stay cheap when only the structure is
    /// wanted (ncnn's benchmark loads such a `.param` with all-zero weights).
    pub fn without_weights() -> NetBuilder {
        NetBuilder {
            weights: false,
            ..NetBuilder::new(0)
        }
    }

    pub fn finish(self) -> ModelWriter {
        self.model
    }

    pub fn input(&mut self, name: &str, shape: Shape) -> Blob {
        let l = self.model.param.layer("Input", name, &[], &[name]);
        l.int(0, shape.w as i32);
        if shape.dims >= 2 {
            l.int(1, shape.h as i32);
        }
        if shape.dims >= 3 {
            l.int(2, shape.c as i32);
        }
        blob(name, shape)
    }

    pub fn relu(&mut self, name: &str, x: &Blob, slope: f32) -> Blob {
        let l = self.model.param.layer("ReLU", name, &[&x.name], &[name]);
        if slope != 0.0 {
            l.float(0, slope);
        }
        blob(name, x.shape)
    }

    /// Fans `x` out to `n` blobs named `<name>_0..`.
    pub fn split(&mut self, name: &str, x: &Blob, n: usize) -> Vec<Blob> {
        let tops: Vec<String> = (0..n).map(|i| format!("{name}_{i}")).collect();
        let top_refs: Vec<&str> = tops.iter().map(String::as_str).collect();
        self.model.param.layer("Split", name, &[&x.name], &top_refs);
        tops.iter().map(|t| blob(t, x.shape)).collect()
    }

    /// Convolution with bias and optional fused ReLU.
    /// Weights: tagged fp32 [out][in][k][k], then raw bias (ncnn-format.md §4.4).
    pub fn conv(&mut self, name: &str, x: &Blob, spec: Conv) -> Result<Blob> {
        self.any_conv("Convolution", name, x, spec, 1)
    }

    /// Depthwise convolution (one group per channel); `spec.out` is ignored, the output has
    /// the input's channels. Weights: tagged fp32 [c][k][k], then raw bias.
    pub fn depthwise(&mut self, name: &str, x: &Blob, spec: Conv) -> Result<Blob> {
        let c = x.shape.c;
        let spec = Conv { out: c, ..spec };
        self.any_conv("ConvolutionDepthWise", name, x, spec, c)
    }

    fn any_conv(
        &mut self,
        kind: &str,
        name: &str,
        x: &Blob,
        spec: Conv,
        group: usize,
    ) -> Result<Blob> {
        let Conv {
            out,
            kernel,
            stride,
            pad,
            relu,
            bias,
        } = spec;
        let s = x.shape;
        if s.dims != 3 || s.w + 2 * pad < kernel || s.h + 2 * pad < kernel || stride == 0 {
            bail!("conv `{name}`: kernel {kernel} does not fit input {s}");
        }
        if out == 0 || !s.c.is_multiple_of(group) || !out.is_multiple_of(group) {
            bail!(
                "conv `{name}`: {out} outputs, {} inputs, {group} groups",
                s.c
            );
        }
        let fan_in = s.c / group * kernel * kernel;
        let weights = out * fan_in;
        let l = self.model.param.layer(kind, name, &[&x.name], &[name]);
        l.int(0, out as i32)
            .int(1, kernel as i32)
            .int(3, stride as i32)
            .int(4, pad as i32)
            .int(5, bias as i32)
            .int(6, weights as i32);
        if group > 1 {
            l.int(7, group as i32);
        }
        if relu {
            l.int(9, 1);
        }
        self.weight_blob(weights, fan_in);
        if bias {
            self.raw_uniform(out, -0.1, 0.1);
        }
        let size = |v: usize| (v + 2 * pad - kernel) / stride + 1;
        Ok(blob(name, Shape::d3(size(s.w), size(s.h), out)))
    }

    /// A tagged fp32 weight blob, uniform in ±sqrt(3/fan_in) (unit variance out for unit
    /// variance in). Written in chunks so a large layer needs no second full-size buffer.
    fn weight_blob(&mut self, n: usize, fan_in: usize) {
        if !self.weights {
            return;
        }
        let bound = (3.0 / fan_in as f32).sqrt();
        self.model.bin.tagged_f32(&[]); // the flag word; the values follow as raw floats
        let mut left = n;
        while left > 0 {
            let chunk = left.min(1 << 16);
            let v = self.rng.vec(chunk, -bound, bound);
            self.model.bin.raw_f32(&v);
            left -= chunk;
        }
    }

    /// A raw fp32 blob (bias, statistics), uniform in [lo, hi).
    fn raw_uniform(&mut self, n: usize, lo: f32, hi: f32) {
        if self.weights {
            let v = self.rng.vec(n, lo, hi);
            self.model.bin.raw_f32(&v);
        }
    }

    /// Max (or average) pooling with ncnn's default "full" padding mode (ceil).
    pub fn pool(&mut self, name: &str, x: &Blob, kernel: usize, stride: usize, max: bool) -> Blob {
        self.model
            .param
            .layer("Pooling", name, &[&x.name], &[name])
            .int(0, if max { 0 } else { 1 })
            .int(1, kernel as i32)
            .int(2, stride as i32);
        let s = x.shape;
        let size = |v: usize| v.saturating_sub(kernel).div_ceil(stride) + 1;
        blob(name, Shape::d3(size(s.w), size(s.h), s.c))
    }

    /// Global average pooling: one value per channel, a 1-D blob.
    pub fn global_avg_pool(&mut self, name: &str, x: &Blob) -> Blob {
        self.model
            .param
            .layer("Pooling", name, &[&x.name], &[name])
            .int(0, 1)
            .int(4, 1);
        blob(name, Shape::d1(x.shape.c))
    }

    /// Fully connected with bias. Weights: tagged fp32 [out][in], then raw bias.
    pub fn inner_product(&mut self, name: &str, x: &Blob, out: usize) -> Blob {
        self.dense(name, x, out, false)
    }

    /// Fully connected with bias and optional fused ReLU (the input is flattened).
    pub fn dense(&mut self, name: &str, x: &Blob, out: usize, relu: bool) -> Blob {
        let inputs = x.shape.len();
        let l = self
            .model
            .param
            .layer("InnerProduct", name, &[&x.name], &[name]);
        l.int(0, out as i32).int(1, 1).int(2, (out * inputs) as i32);
        if relu {
            l.int(9, 1);
        }
        self.weight_blob(out * inputs, inputs);
        self.raw_uniform(out, -0.1, 0.1);
        blob(name, Shape::d1(out))
    }

    /// Softmax over the whole 1-D blob (axis 0).
    pub fn softmax(&mut self, name: &str, x: &Blob) -> Blob {
        self.model
            .param
            .layer("Softmax", name, &[&x.name], &[name])
            .int(0, 0)
            .int(1, 1);
        blob(name, x.shape)
    }

    /// Softmax along `axis` (ncnn numbering; SSD uses axis 1 of a 2-D blob: each row).
    pub fn softmax_axis(&mut self, name: &str, x: &Blob, axis: usize) -> Blob {
        self.model
            .param
            .layer("Softmax", name, &[&x.name], &[name])
            .int(0, axis as i32)
            .int(1, 1);
        blob(name, x.shape)
    }

    /// Joins blobs along `axis` (0: channels of 3-D, rows of 2-D, elements of 1-D; 1: the
    /// next inner axis). Every other dimension must agree.
    pub fn concat(&mut self, name: &str, xs: &[&Blob], axis: usize) -> Result<Blob> {
        let Some(first) = xs.first() else {
            bail!("concat `{name}`: no inputs");
        };
        let dims = first.shape.dims as usize;
        if axis >= dims || dims > 3 {
            bail!("concat `{name}`: axis {axis} of a {dims}-D blob");
        }
        // Outermost first, as ncnn numbers the axes.
        let outer_first = |s: Shape| -> Vec<usize> {
            match dims {
                1 => vec![s.w],
                2 => vec![s.h, s.w],
                _ => vec![s.c, s.h, s.w],
            }
        };
        let mut joined = outer_first(first.shape);
        joined[axis] = 0;
        for x in xs {
            let mut e = outer_first(x.shape);
            let along = std::mem::take(&mut e[axis]);
            let mut rest = joined.clone();
            rest[axis] = 0;
            if x.shape.dims != first.shape.dims || e != rest {
                bail!(
                    "concat `{name}`: {} does not match {}",
                    x.shape,
                    first.shape
                );
            }
            joined[axis] += along;
        }
        let names: Vec<&str> = xs.iter().map(|x| x.name.as_str()).collect();
        let l = self.model.param.layer("Concat", name, &names, &[name]);
        if axis != 0 {
            l.int(0, axis as i32);
        }
        let shape = match dims {
            1 => Shape::d1(joined[0]),
            2 => Shape::d2(joined[1], joined[0]),
            _ => Shape::d3(joined[2], joined[1], joined[0]),
        };
        Ok(blob(name, shape))
    }

    /// Element-wise sum of same-shaped blobs (Caffe's Eltwise SUM).
    pub fn eltwise_sum(&mut self, name: &str, xs: &[&Blob]) -> Result<Blob> {
        if xs.len() < 2 || xs.iter().any(|x| x.shape != xs[0].shape) {
            bail!("eltwise `{name}`: needs two or more blobs of one shape");
        }
        let names: Vec<&str> = xs.iter().map(|x| x.name.as_str()).collect();
        self.model
            .param
            .layer("Eltwise", name, &names, &[name])
            .int(0, 1);
        Ok(blob(name, xs[0].shape))
    }

    /// `a op b` for same-shaped blobs (BinaryOp; op 0 add, 1 sub, 2 mul, 3 div).
    pub fn binary(&mut self, name: &str, a: &Blob, b: &Blob, op: i32) -> Result<Blob> {
        if a.shape != b.shape {
            bail!("binary `{name}`: {} vs {}", a.shape, b.shape);
        }
        self.model
            .param
            .layer("BinaryOp", name, &[&a.name, &b.name], &[name])
            .int(0, op);
        Ok(blob(name, a.shape))
    }

    /// `x op scalar` (BinaryOp with_scalar).
    pub fn binary_scalar(&mut self, name: &str, x: &Blob, op: i32, scalar: f32) -> Blob {
        self.model
            .param
            .layer("BinaryOp", name, &[&x.name], &[name])
            .int(0, op)
            .int(1, 1)
            .float(2, scalar);
        blob(name, x.shape)
    }

    /// Inference-time batch normalisation over the channels (the elements of a 1-D blob).
    /// Weights: raw slope, mean, var, bias; seeded near the identity.
    pub fn batch_norm(&mut self, name: &str, x: &Blob) -> Blob {
        let n = channels(x.shape);
        self.model
            .param
            .layer("BatchNorm", name, &[&x.name], &[name])
            .int(0, n as i32)
            .float(1, 1e-5);
        self.raw_uniform(n, 0.8, 1.2);
        self.raw_uniform(n, -0.1, 0.1);
        self.raw_uniform(n, 0.8, 1.2);
        self.raw_uniform(n, -0.1, 0.1);
        blob(name, x.shape)
    }

    /// PReLU with one learned slope per channel (raw slopes, seeded around 0.25).
    pub fn prelu(&mut self, name: &str, x: &Blob) -> Blob {
        let n = channels(x.shape);
        self.model
            .param
            .layer("PReLU", name, &[&x.name], &[name])
            .int(0, n as i32);
        self.raw_uniform(n, 0.15, 0.35);
        blob(name, x.shape)
    }

    /// Permute of a 3-D blob; only `order_type` 3 (NCHW -> NHWC, as in SSD heads).
    pub fn permute_to_hwc(&mut self, name: &str, x: &Blob) -> Result<Blob> {
        let s = x.shape;
        if s.dims != 3 {
            bail!("permute `{name}`: needs a 3-D blob, got {s}");
        }
        self.model
            .param
            .layer("Permute", name, &[&x.name], &[name])
            .int(0, 3);
        Ok(blob(name, Shape::d3(s.c, s.w, s.h)))
    }

    pub fn flatten(&mut self, name: &str, x: &Blob) -> Blob {
        self.model.param.layer("Flatten", name, &[&x.name], &[name]);
        blob(name, Shape::d1(x.shape.len()))
    }

    /// Reshape to 2-D rows of `w` (the row count is inferred).
    pub fn reshape_rows(&mut self, name: &str, x: &Blob, w: usize) -> Result<Blob> {
        let n = x.shape.len();
        if w == 0 || !n.is_multiple_of(w) {
            bail!("reshape `{name}`: {n} elements do not split into rows of {w}");
        }
        self.model
            .param
            .layer("Reshape", name, &[&x.name], &[name])
            .int(0, w as i32)
            .int(1, -1);
        Ok(blob(name, Shape::d2(w, n / w)))
    }

    /// SSD prior boxes for a feature map over an image (sizes taken from the image blob).
    pub fn prior_box(&mut self, name: &str, feature: &Blob, image: &Blob, p: &Priors) -> Blob {
        let l = self
            .model
            .param
            .layer("PriorBox", name, &[&feature.name, &image.name], &[name]);
        l.floats(0, &[p.min_size]);
        if let Some(max) = p.max_size {
            l.floats(1, &[max]);
        }
        l.floats(2, p.aspect_ratios).int(9, -233).int(10, -233);
        if let Some(step) = p.step {
            l.float(11, step).float(12, step);
        }
        l.float(13, 0.5);
        let s = feature.shape;
        blob(name, Shape::d2(4 * s.w * s.h * p.count(), 2))
    }

    /// SSD decoding + NMS; `conf` is the softmaxed, flattened class scores.
    pub fn detection_output(
        &mut self,
        name: &str,
        [loc, conf, priors]: [&Blob; 3],
        num_class: usize,
    ) -> Blob {
        let keep_top_k = 100;
        self.model
            .param
            .layer(
                "DetectionOutput",
                name,
                &[&loc.name, &conf.name, &priors.name],
                &[name],
            )
            .int(0, num_class as i32)
            .float(1, 0.45)
            .int(2, 100)
            .int(3, keep_top_k)
            .float(4, 0.25);
        blob(name, Shape::d2(6, keep_top_k as usize))
    }
}

/// One SSD prior-box layer: one min size, an optional max size, aspect ratios (flipped too)
/// and an optional fixed step in pixels.
#[derive(Clone, Copy, Debug)]
pub struct Priors<'a> {
    pub min_size: f32,
    pub max_size: Option<f32>,
    pub aspect_ratios: &'a [f32],
    pub step: Option<f32>,
}

impl Priors<'_> {
    /// Boxes per location: the min square, the geometric-mean square if a max size is
    /// given, and each aspect ratio and its inverse.
    pub fn count(&self) -> usize {
        1 + self.max_size.is_some() as usize + 2 * self.aspect_ratios.len()
    }
}

/// Channels of a 3-D blob, or the elements of a 1-D one (what BatchNorm and PReLU scale).
fn channels(s: Shape) -> usize {
    if s.dims == 1 {
        s.w
    } else {
        s.c
    }
}

/// A square convolution: `Conv::new(out, kernel).stride(2).pad(1).relu()`.
#[derive(Clone, Copy, Debug)]
pub struct Conv {
    pub out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
    pub relu: bool,
    pub bias: bool,
}

impl Conv {
    pub fn new(out: usize, kernel: usize) -> Conv {
        Conv {
            out,
            kernel,
            stride: 1,
            pad: 0,
            relu: false,
            bias: true,
        }
    }
    /// A depthwise kernel: the channel count comes from the input.
    pub fn dw(kernel: usize) -> Conv {
        Conv::new(0, kernel)
    }
    pub fn no_bias(self) -> Conv {
        Conv {
            bias: false,
            ..self
        }
    }
    pub fn stride(self, stride: usize) -> Conv {
        Conv { stride, ..self }
    }
    pub fn pad(self, pad: usize) -> Conv {
        Conv { pad, ..self }
    }
    pub fn relu(self) -> Conv {
        Conv { relu: true, ..self }
    }
}

fn blob(name: &str, shape: Shape) -> Blob {
    Blob {
        name: name.to_string(),
        shape,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::INPUT;

    #[test]
    fn weighted_layers_track_shapes_and_weight_sizes() {
        let mut b = NetBuilder::new(1);
        let x = b.input("data", INPUT);
        let x = b.conv("conv0", &x, Conv::new(16, 3).pad(1).relu()).unwrap();
        assert_eq!(x.shape, Shape::d3(32, 32, 16));
        let x = b.pool("pool0", &x, 2, 2, true);
        assert_eq!(x.shape, Shape::d3(16, 16, 16));
        let x = b.pool("pool1", &x, 3, 2, true);
        assert_eq!(
            x.shape,
            Shape::d3(8, 8, 16),
            "ceil mode: (16-3)/2 rounded up + 1"
        );
        let y = b
            .conv("conv1", &x, Conv::new(4, 3).stride(2).pad(1))
            .unwrap();
        assert_eq!(y.shape, Shape::d3(4, 4, 4));
        let x = b.global_avg_pool("gap", &x);
        assert_eq!(x.shape, Shape::d1(16));
        let x = b.inner_product("fc", &x, 10);
        let x = b.softmax("prob", &x);
        assert_eq!(x.shape, Shape::d1(10));
        let m = b.finish();
        let floats = (16 * 3 * 9 + 16) + (4 * 16 * 9 + 4) + (10 * 16 + 10);
        assert_eq!(m.bin.bytes.len(), 4 * (floats + 3), "three tagged blobs");

        let mut b = NetBuilder::new(1);
        let x = b.input("data", Shape::d3(2, 2, 1));
        assert!(b.conv("c", &x, Conv::new(1, 5)).is_err());
    }

    #[test]
    fn zoo_layers_track_shapes() {
        let mut b = NetBuilder::new(1);
        let x = b.input("data", Shape::d3(10, 10, 4));
        let dw = b
            .depthwise("dw", &x, Conv::dw(3).stride(2).pad(1).relu())
            .unwrap();
        assert_eq!(dw.shape, Shape::d3(5, 5, 4));
        let y = b.conv("pw", &dw, Conv::new(6, 1).no_bias()).unwrap();
        let cat = b.concat("cat", &[&dw, &y], 0).unwrap();
        assert_eq!(cat.shape, Shape::d3(5, 5, 10));
        assert!(
            b.concat("bad", &[&x, &y], 0).is_err(),
            "spatial sizes differ"
        );
        let p = b.permute_to_hwc("perm", &y).unwrap();
        assert_eq!(p.shape, Shape::d3(6, 5, 5));
        let f = b.flatten("flat", &p);
        assert_eq!(f.shape, Shape::d1(150));
        let r = b.reshape_rows("rows", &f, 6).unwrap();
        assert_eq!(r.shape, Shape::d2(6, 25));
        assert!(b.reshape_rows("bad_rows", &f, 7).is_err());
        let priors = Priors {
            min_size: 30.0,
            max_size: Some(60.0),
            aspect_ratios: &[2.0, 3.0],
            step: None,
        };
        assert_eq!(priors.count(), 6);
        let pb = b.prior_box("pb", &y, &x, &priors);
        assert_eq!(pb.shape, Shape::d2(4 * 25 * 6, 2));
        let pb2 = b.concat("pbs", &[&pb, &pb], 1).unwrap();
        assert_eq!(pb2.shape, Shape::d2(2 * 4 * 25 * 6, 2));
        let bn = b.batch_norm("bn", &f);
        let pr = b.prelu("pr", &y);
        assert_eq!((bn.shape, pr.shape), (f.shape, y.shape));
        let m = b.finish();
        // dw: flag + 4*9 + bias 4; pw: flag + 6*4, no bias; bn: 4 x 150; prelu: 6.
        let floats = (1 + 36 + 4) + (1 + 24) + 4 * 150 + 6;
        assert_eq!(m.bin.bytes.len(), 4 * floats);
        let text = m.param.to_text().unwrap();
        eq_runtime::model::parse_param(text.as_bytes(), "t").unwrap();

        let mut b = NetBuilder::without_weights();
        let x = b.input("data", Shape::d3(8, 8, 3));
        let x = b.conv("c", &x, Conv::new(4, 3)).unwrap();
        b.dense("fc", &x, 10, true);
        assert!(b.finish().bin.bytes.is_empty());
    }
}
