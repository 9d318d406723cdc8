//! Activation equalization across a layer pair (cross-layer equalization, Nagel et al.,
//! "Data-Free Quantization", 2019, applied to activation ranges): an FP32-equivalent
//! rewrite of the weights that gives every channel of a blob the same range before the
//! blob is quantized with its one per-tensor scale.
//!
//! A producer P (Convolution or ConvolutionDepthWise whose activation is positively
//! homogeneous: none, ReLU, leaky ReLU) whose output is read only by a consumer C
//! (ConvolutionDepthWise, or Convolution when `convolutions` is set) can have output channel
//! i multiplied by f_i > 0 (P's weights and bias of channel i times f_i, since
//! act(f z) = f act(z)) if C's weights reading input channel i are divided by f_i: C's output
//! is unchanged (zero padding stays zero).
//!
//! Depthwise layers read each channel with its own weights (and weight scale), so for a
//! depthwise consumer the rewrite costs nothing on the weight side: f_i = max_j a_j / a_i,
//! a_i being channel i's largest |value| on the calibration images, puts every channel on
//! the same range. Narrow detectors (yolo-fastest's 8-channel expansions feeding 3x3
//! depthwise layers) have channels whose range is 10-30 times below the blob's largest,
//! quantized to a handful of levels and then multiplied by depthwise weights that are
//! correspondingly large. For a Convolution consumer the weight columns share one scale
//! per output row, so f_i = sqrt(c_i / a_i) (c_i: the column's largest |weight|) splits the
//! imbalance between activation and weights, as Nagel et al. do for weights.

use crate::model::{Model, QuantKind, QuantLayer};
use crate::runner::{fold_images, NetSpec, RunOptions};
use anyhow::{bail, Result};
use eq_runtime::ops::activation::Activation;
use std::path::PathBuf;

/// Factors are kept within [1 / MAX_FACTOR, MAX_FACTOR] (a dead channel keeps 1).
pub const MAX_FACTOR: f32 = 1000.0;

/// One producer -> consumer pair, as indices into `Model::layers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    pub producer: usize,
    pub consumer: usize,
}

fn homogeneous(a: &Activation) -> bool {
    matches!(
        a,
        Activation::None | Activation::ReLU | Activation::LeakyReLU(_)
    )
}

/// The pairs that can be equalized; with `convolutions` false only depthwise consumers.
pub fn pairs(model: &Model, convolutions: bool) -> Vec<Pair> {
    let mut out = Vec::new();
    for (pi, p) in model.layers.iter().enumerate() {
        if !p.kind.is_conv() || !homogeneous(&p.activation) {
            continue;
        }
        let readers: Vec<_> = model
            .param
            .layers
            .iter()
            .filter(|r| r.bottoms.contains(&p.top))
            .collect();
        let [reader] = readers[..] else { continue };
        let Some(ci) = model.layers.iter().position(|l| l.name == reader.name) else {
            continue;
        };
        let c = &model.layers[ci];
        let ok = match c.kind {
            // One group per channel (not a grouped convolution).
            QuantKind::ConvolutionDepthWise => {
                c.channels == p.num_output && c.num_output == p.num_output
            }
            QuantKind::Convolution => {
                convolutions && c.weights.len().is_multiple_of(c.num_output * p.num_output)
            }
            QuantKind::InnerProduct => false,
        };
        if ok {
            out.push(Pair {
                producer: pi,
                consumer: ci,
            });
        }
    }
    out
}

/// Weights of consumer `c` that read input channel `i` of `inputs`, as (start, len) runs.
fn input_runs(c: &QuantLayer, inputs: usize, i: usize) -> Vec<(usize, usize)> {
    match c.kind {
        QuantKind::ConvolutionDepthWise => {
            let n = c.channel_len();
            vec![(i * n, n)]
        }
        _ => {
            let k = c.weights.len() / (c.num_output * inputs);
            (0..c.num_output)
                .map(|o| ((o * inputs + i) * k, k))
                .collect()
        }
    }
}

/// The factors f_i for one pair from the producer's per-channel largest |output| `absmax`.
pub fn factors(layers: &[QuantLayer], pair: Pair, absmax: &[f32]) -> Vec<f32> {
    let (p, c) = (&layers[pair.producer], &layers[pair.consumer]);
    let top = absmax.iter().fold(0f32, |m, &v| m.max(v));
    let clamp = |f: f32| {
        if f.is_finite() && f > 0.0 {
            f.clamp(1.0 / MAX_FACTOR, MAX_FACTOR)
        } else {
            1.0
        }
    };
    (0..p.num_output)
        .map(|i| {
            let a = absmax[i];
            if a <= 0.0 {
                return 1.0;
            }
            match c.kind {
                QuantKind::ConvolutionDepthWise => clamp(top / a),
                _ => {
                    let cmax = input_runs(c, p.num_output, i)
                        .into_iter()
                        .flat_map(|(s, n)| &c.weights[s..s + n])
                        .fold(0f32, |m, v| m.max(v.abs()));
                    if cmax <= 0.0 {
                        1.0
                    } else {
                        clamp((cmax / a).sqrt())
                    }
                }
            }
        })
        .collect()
}

/// Applies factors `f` to one pair of `layers` (producer rows times f, consumer inputs / f).
pub fn apply(layers: &mut [QuantLayer], pair: Pair, f: &[f32]) {
    let inputs = layers[pair.producer].num_output;
    {
        let p = &mut layers[pair.producer];
        let n = p.channel_len();
        for (i, &fi) in f.iter().enumerate() {
            for w in &mut p.weights[i * n..(i + 1) * n] {
                *w *= fi;
            }
            if let Some(b) = &mut p.bias {
                b[i] *= fi;
            }
        }
    }
    let c = &mut layers[pair.consumer];
    for (i, &fi) in f.iter().enumerate() {
        for (s, n) in input_runs(c, inputs, i) {
            for w in &mut c.weights[s..s + n] {
                *w /= fi;
            }
        }
    }
}

/// Per-channel largest |value| of each pair's producer output over the images (fp32).
pub fn channel_absmax(
    model: &Model,
    pairs: &[Pair],
    spec: &NetSpec,
    prep: &crate::dataset::Preprocess,
    paths: &[PathBuf],
    run: &RunOptions,
) -> Result<Vec<Vec<f32>>> {
    let mut spec = spec.clone();
    spec.keep_all_blobs = true;
    spec.precision = eq_runtime::PrecisionChoice::Fp32;
    let init = || {
        pairs
            .iter()
            .map(|p| vec![0f32; model.layers[p.producer].num_output])
            .collect::<Vec<_>>()
    };
    let (parts, _) = fold_images(&spec, prep, paths, run, &init, &|acc, _, net| {
        for (m, pair) in acc.iter_mut().zip(pairs) {
            let top = &model.layers[pair.producer].top;
            let b = net.blob(top)?;
            let c = m.len();
            if c == 0 || !b.data.len().is_multiple_of(c) {
                bail!("blob `{top}` does not have {c} channels");
            }
            let plane = b.data.len() / c;
            for (i, mi) in m.iter_mut().enumerate() {
                for &v in &b.data[i * plane..(i + 1) * plane] {
                    *mi = mi.max(v.abs());
                }
            }
        }
        Ok(())
    })?;
    let mut out = init();
    for part in parts {
        for (o, p) in out.iter_mut().zip(part) {
            for (a, b) in o.iter_mut().zip(p) {
                *a = a.max(b);
            }
        }
    }
    Ok(out)
}

/// The model's `.bin` with `layers`' weights and biases (fp32, tag 0) in place of the
/// quantizable layers' stored ones; every other layer's bytes as they were.
pub fn rewrite_bin(model: &Model, layers: &[QuantLayer]) -> Vec<u8> {
    let mut out = Vec::with_capacity(model.bin.len());
    for (index, range) in model.ranges.iter().enumerate() {
        match layers.iter().find(|l| l.index == index) {
            Some(l) => {
                out.extend_from_slice(&0u32.to_le_bytes());
                for v in l.weights.iter().chain(l.bias.iter().flatten()) {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            None => out.extend_from_slice(&model.bin[range.clone()]),
        }
    }
    out
}

/// What `equalize` did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// (producer, consumer, largest factor / smallest factor) per equalized pair.
    pub pairs: Vec<(String, String, f32)>,
}

/// Equalizes `model` on the images; returns the new `.bin` bytes (the `.param` is
/// unchanged) and what was done. FP32 outputs of the rewritten model equal the original's
/// up to rounding; only the producers' output blobs change (per channel, by f_i).
pub fn equalize(
    model: &Model,
    spec: &NetSpec,
    prep: &crate::dataset::Preprocess,
    paths: &[PathBuf],
    run: &RunOptions,
    convolutions: bool,
) -> Result<(Vec<u8>, Outcome)> {
    let pairs = pairs(model, convolutions);
    let mut layers = model.layers.clone();
    let mut outcome = Outcome::default();
    if pairs.is_empty() {
        return Ok((model.bin.clone(), outcome));
    }
    let absmax = channel_absmax(model, &pairs, spec, prep, paths, run)?;
    for (&pair, a) in pairs.iter().zip(&absmax) {
        let f = factors(&layers, pair, a);
        apply(&mut layers, pair, &f);
        let (lo, hi) = f
            .iter()
            .fold((f32::MAX, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        outcome.pairs.push((
            model.layers[pair.producer].name.clone(),
            model.layers[pair.consumer].name.clone(),
            hi / lo,
        ));
    }
    Ok((rewrite_bin(model, &layers), outcome))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Conv, NetBuilder};
    use eq_runtime::{Net, Options, Shape};

    /// conv a (relu) -> dw b (relu) -> conv c (linear) -> split -> conv d, conv e.
    fn chain() -> (Model, String) {
        let mut b = NetBuilder::new(7);
        let x = b.input("data", Shape::d3(6, 6, 3));
        let x = b.conv("a", &x, Conv::new(4, 1).relu()).unwrap();
        let x = b.depthwise("b", &x, Conv::dw(3).pad(1).relu()).unwrap();
        let x = b.conv("c", &x, Conv::new(5, 1)).unwrap();
        let s = b.split("s", &x, 2);
        b.conv("d", &s[0], Conv::new(2, 1)).unwrap();
        b.conv("e", &s[1], Conv::new(2, 3)).unwrap();
        let m = b.finish();
        let text = m.param.to_text().unwrap();
        (
            Model::from_memory(text.as_bytes(), &m.bin.bytes).unwrap(),
            text,
        )
    }

    fn run(text: &str, bin: &[u8]) -> Vec<Vec<f32>> {
        let opts = Options {
            keep_all_blobs: true,
            ..Options::default()
        };
        let mut net = Net::from_memory(text.as_bytes(), bin, &opts).unwrap();
        let x: Vec<f32> = (0..108)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        net.set_input("data", &x).unwrap();
        net.run().unwrap();
        ["c", "d", "e"]
            .iter()
            .map(|b| net.blob(b).unwrap().data.to_vec())
            .collect()
    }

    fn names(model: &Model, ps: &[Pair]) -> Vec<(String, String)> {
        ps.iter()
            .map(|p| {
                (
                    model.layers[p.producer].name.clone(),
                    model.layers[p.consumer].name.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn pairs_need_a_single_reader() {
        let (m, _) = chain();
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(names(&m, &pairs(&m, false)), [pair("a", "b")]);
        // c feeds a Split: its output also reaches other layers, never equalized.
        assert_eq!(
            names(&m, &pairs(&m, true)),
            [pair("a", "b"), pair("b", "c")]
        );
    }

    #[test]
    fn depthwise_factors_give_every_channel_the_largest_range() {
        let (m, _) = chain();
        let pair = pairs(&m, false)[0];
        let f = factors(&m.layers, pair, &[2.0, 0.5, 0.0, 8.0]);
        assert_eq!(f, [4.0, 16.0, 1.0, 1.0]);
    }

    #[test]
    fn convolution_factors_balance_weights_and_activations() {
        let (m, _) = chain();
        let pair = pairs(&m, true)[1];
        let (b, c) = (&m.layers[pair.producer], &m.layers[pair.consumer]);
        let a = [1.0, 2.0, 4.0, 0.25];
        let f = factors(&m.layers, pair, &a);
        for i in 0..b.num_output {
            let col = (0..c.num_output).fold(0f32, |mx, o| mx.max(c.weights[o * 4 + i].abs()));
            // After scaling, the activation range and the column's weight range are equal.
            let (act, w) = (a[i] * f[i], col / f[i]);
            assert!((act - w).abs() <= 1e-5 * act, "channel {i}: {act} vs {w}");
        }
    }

    #[test]
    fn equalized_model_computes_the_same_outputs() {
        let (m, text) = chain();
        let before = run(&text, &m.bin);
        let mut layers = m.layers.clone();
        for (k, pair) in pairs(&m, true).into_iter().enumerate() {
            let f: Vec<f32> = (0..m.layers[pair.producer].num_output)
                .map(|i| 0.25 + (i + k) as f32 * 1.5)
                .collect();
            apply(&mut layers, pair, &f);
        }
        let bin = rewrite_bin(&m, &layers);
        assert_eq!(bin.len(), m.bin.len());
        assert_ne!(bin, m.bin);
        let reloaded = Model::from_memory(text.as_bytes(), &bin).unwrap();
        assert_eq!(reloaded.layers[1].weights, layers[1].weights);
        for (x, y) in before.iter().zip(run(&text, &bin)) {
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
            }
        }
    }
}
