//! `eq demo`: a small network the project generates itself, with seeded weights, so the main
//! command needs no download. It is written with [`NetBuilder`](crate::builder::NetBuilder).

use crate::builder::{Conv, NetBuilder};
use crate::ncnn_writer::ModelWriter;
use crate::npy;
use anyhow::Result;
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
