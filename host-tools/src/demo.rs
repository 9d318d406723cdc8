//! `eq demo`: a small network the project generates itself, with seeded weights, so the main
//! command needs no download. `NetBuilder` tracks blob shapes, so each layer of the net is one
//! line and weight sizes follow from the shapes.

use crate::ncnn_writer::ModelWriter;
use crate::npy;
use anyhow::{bail, Result};
use eq_runtime::rng::Rng;
use eq_runtime::Shape;
use std::path::{Path, PathBuf};

pub const SEED: u64 = 0x00E0_5EED;
/// Input: an RGB 32x32 image, numpy dims (3, 32, 32).
pub const INPUT: Shape = Shape::d3(32, 32, 3);

/// The demo network: a tiny classifier with a second feature output.
/// data(3x32x32) -> conv3x3 16 + ReLU -> max pool 2x2 -> Split
///   -> conv3x3/2 32 + ReLU -> global avg pool -> InnerProduct 10 -> Softmax = prob (10)
///   -> conv1x1 8 + ReLU = features (8x16x16)
pub fn build(seed: u64) -> Result<ModelWriter> {
    let mut b = NetBuilder::new(seed);
    let x = b.input("data", INPUT);
    let x = b.conv("conv0", &x, Conv::new(16, 3).pad(1).relu())?;
    let x = b.pool("pool0", &x, 2, 2, true);
    let branches = b.split("split0", &x, 2);
    let a = b.conv(
        "conv1",
        &branches[0],
        Conv::new(32, 3).stride(2).pad(1).relu(),
    )?;
    let a = b.global_avg_pool("gap", &a);
    let a = b.inner_product("fc", &a, 10);
    b.softmax("prob", &a);
    b.conv("features", &branches[1], Conv::new(8, 1).relu())?;
    Ok(b.finish())
}

/// Seeded input values in [-1, 1) for the demo model.
pub fn input(seed: u64) -> Vec<f32> {
    Rng::new(seed ^ 0x1234_5678).vec(INPUT.len(), -1.0, 1.0)
}

/// Writes `demo.param`, `demo.bin` and `input.npy` to `dir`; returns the three paths.
pub fn write(dir: &Path) -> Result<[PathBuf; 3]> {
    let (param, bin) = build(SEED)?.save(dir, "demo")?;
    let input_path = dir.join("input.npy");
    npy::write(&input_path, &INPUT.numpy_dims(), &input(SEED))?;
    Ok([param, bin, input_path])
}

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
}

impl NetBuilder {
    pub fn new(seed: u64) -> NetBuilder {
        NetBuilder {
            model: ModelWriter::new(),
            rng: Rng::new(seed),
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
        let Conv {
            out,
            kernel,
            stride,
            pad,
            relu,
        } = spec;
        let s = x.shape;
        if s.dims != 3 || s.w + 2 * pad < kernel || s.h + 2 * pad < kernel || stride == 0 {
            bail!("conv `{name}`: kernel {kernel} does not fit input {s}");
        }
        let weights = out * s.c * kernel * kernel;
        let l = self
            .model
            .param
            .layer("Convolution", name, &[&x.name], &[name]);
        l.int(0, out as i32)
            .int(1, kernel as i32)
            .int(3, stride as i32)
            .int(4, pad as i32)
            .int(5, 1)
            .int(6, weights as i32);
        if relu {
            l.int(9, 1);
        }
        let bound = (3.0 / (s.c * kernel * kernel) as f32).sqrt();
        let w = self.rng.vec(weights, -bound, bound);
        let bias = self.rng.vec(out, -0.1, 0.1);
        self.model.bin.tagged_f32(&w);
        self.model.bin.raw_f32(&bias);
        let size = |v: usize| (v + 2 * pad - kernel) / stride + 1;
        Ok(blob(name, Shape::d3(size(s.w), size(s.h), out)))
    }

    /// Depthwise (grouped) convolution with one group per input channel, bias and optional
    /// fused ReLU. `spec.out` must be a multiple of the input channels.
    /// Weights: tagged fp32 [group][out/group][1][k][k], then raw bias.
    pub fn conv_dw(&mut self, name: &str, x: &Blob, spec: Conv) -> Result<Blob> {
        let Conv {
            out,
            kernel,
            stride,
            pad,
            relu,
        } = spec;
        let s = x.shape;
        if s.dims != 3 || s.w + 2 * pad < kernel || s.h + 2 * pad < kernel || stride == 0 {
            bail!("conv_dw `{name}`: kernel {kernel} does not fit input {s}");
        }
        if out % s.c != 0 {
            bail!(
                "conv_dw `{name}`: {out} outputs are not a multiple of {} groups",
                s.c
            );
        }
        let weights = out * kernel * kernel;
        let l = self
            .model
            .param
            .layer("ConvolutionDepthWise", name, &[&x.name], &[name]);
        l.int(0, out as i32)
            .int(1, kernel as i32)
            .int(3, stride as i32)
            .int(4, pad as i32)
            .int(5, 1)
            .int(6, weights as i32)
            .int(7, s.c as i32);
        if relu {
            l.int(9, 1);
        }
        let bound = (3.0 / (kernel * kernel) as f32).sqrt();
        let w = self.rng.vec(weights, -bound, bound);
        let bias = self.rng.vec(out, -0.1, 0.1);
        self.model.bin.tagged_f32(&w);
        self.model.bin.raw_f32(&bias);
        let size = |v: usize| (v + 2 * pad - kernel) / stride + 1;
        Ok(blob(name, Shape::d3(size(s.w), size(s.h), out)))
    }

    /// Concatenates 3-D blobs along channels.
    pub fn concat(&mut self, name: &str, xs: &[&Blob]) -> Blob {
        let names: Vec<&str> = xs.iter().map(|x| x.name.as_str()).collect();
        self.model.param.layer("Concat", name, &names, &[name]);
        let s = xs[0].shape;
        let c = xs.iter().map(|x| x.shape.c).sum();
        blob(name, Shape::d3(s.w, s.h, c))
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
        let inputs = x.shape.len();
        self.model
            .param
            .layer("InnerProduct", name, &[&x.name], &[name])
            .int(0, out as i32)
            .int(1, 1)
            .int(2, (out * inputs) as i32);
        let bound = (3.0 / inputs as f32).sqrt();
        let w = self.rng.vec(out * inputs, -bound, bound);
        let bias = self.rng.vec(out, -0.1, 0.1);
        self.model.bin.tagged_f32(&w);
        self.model.bin.raw_f32(&bias);
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
}

/// A square convolution: `Conv::new(out, kernel).stride(2).pad(1).relu()`.
#[derive(Clone, Copy, Debug)]
pub struct Conv {
    pub out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
    pub relu: bool,
}

impl Conv {
    pub fn new(out: usize, kernel: usize) -> Conv {
        Conv {
            out,
            kernel,
            stride: 1,
            pad: 0,
            relu: false,
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
    use eq_runtime::{Net, Options};

    #[test]
    fn demo_model_loads_and_runs() {
        let m = build(SEED).unwrap();
        let text = m.param.to_text().unwrap();
        let opts = Options {
            keep_all_blobs: true,
            ..Options::default()
        };
        let mut net = Net::from_memory(text.as_bytes(), &m.bin.bytes, &opts).unwrap();
        net.set_input("data", &input(SEED)).unwrap();
        net.run().unwrap();
        // prob is the softmax of the logits.
        let fc = net.blob("fc").unwrap().data.to_vec();
        let prob = net.blob("prob").unwrap();
        assert_eq!(prob.shape, Shape::d1(10));
        let max = fc.iter().fold(f32::MIN, |m, v| m.max(*v));
        let sum: f32 = fc.iter().map(|v| (v - max).exp()).sum();
        for (p, l) in prob.data.iter().zip(&fc) {
            assert!((p - (l - max).exp() / sum).abs() < 1e-6, "{p} vs logit {l}");
        }
        // Seeded weights keep the classes apart: not a uniform output.
        let spread = prob.data.iter().fold(0f32, |m, v| m.max(*v)) - 0.1;
        assert!(spread > 1e-3, "prob {:?}", prob.data);
        let features = net.blob("features").unwrap();
        assert_eq!(features.shape, Shape::d3(16, 16, 8));
        assert!(features.data.iter().all(|v| *v >= 0.0));
        assert!(features.data.iter().any(|v| *v > 0.0));
    }

    #[test]
    fn generation_is_deterministic() {
        let a = build(SEED).unwrap();
        let b = build(SEED).unwrap();
        assert_eq!(a.param.to_text().unwrap(), b.param.to_text().unwrap());
        assert_eq!(a.bin.bytes, b.bin.bytes);
        assert_eq!(input(SEED), input(SEED));
    }

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
    fn demo_model_is_well_formed() {
        let m = build(SEED).unwrap();
        let p = eq_runtime::model::parse_param(m.param.to_text().unwrap().as_bytes(), "t").unwrap();
        let kinds: Vec<&str> = p.layers.iter().map(|l| l.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "Input",
                "Convolution",
                "Pooling",
                "Split",
                "Convolution",
                "Pooling",
                "InnerProduct",
                "Softmax",
                "Convolution"
            ]
        );
        let floats = (16 * 27 + 16) + (32 * 16 * 9 + 32) + (10 * 32 + 10) + (8 * 16 + 8);
        assert_eq!(m.bin.bytes.len(), 4 * (floats + 4));
    }
}
