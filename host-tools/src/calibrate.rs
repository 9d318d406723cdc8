//! `eq calibrate`: initial scales as ncnn2table computes them (easyquant.md §6.1, §7).
//!
//! Weights: per output channel (per group for depthwise) `qmax / max|w|`, or the ACIQ
//! Gaussian clip. Activations (the bottom blob of every quantizable layer): `qmax / max|x|`
//! over all images, ncnn's KL threshold search over a 2048-bin histogram of |x|, or ACIQ.
//! `qmax = 2^(bits-1) - 1`; KL merges into `2^(bits-1)` target bins.
//!
//! Unlike ncnn2table, 3x3 stride-1 convolutions are not given 6-bit weight scales (that rule
//! exists for ncnn's int8 Winograd kernels, which this runtime does not have).

use crate::model::{Model, QuantLayer};
use crate::runner::{fold_images, NetSpec, RunOptions};
use crate::table::ScaleTable;
use anyhow::{bail, Result};
use clap::ValueEnum;
use std::path::PathBuf;

pub const HISTOGRAM_BINS: usize = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Method {
    Max,
    Kl,
    Aciq,
}

/// Largest quantized magnitude for a bit width: 127, 63, 31.
pub fn qmax(bits: u32) -> f32 {
    ((1u32 << (bits - 1)) - 1) as f32
}

/// `qmax / threshold`, or 0 where the threshold is 0 (an all-zero channel: ncnn's dequantize
/// then multiplies by 0) or the quotient is not finite.
fn scale_for(qmax: f32, threshold: f32) -> f32 {
    let s = qmax / threshold;
    if threshold > 0.0 && s.is_finite() {
        s
    } else {
        0.0
    }
}

/// ACIQ Gaussian clipping threshold for `n` values with maximum magnitude `absmax`
/// (ncnn2table's constants, α indexed by bit width).
pub fn aciq_threshold(absmax: f32, n: usize, bits: u32) -> f32 {
    // ncnn2table's constants as written (stored as f32 there too).
    #[allow(clippy::excessive_precision)]
    const ALPHA: [f32; 8] = [
        0.0, 1.71063519, 2.15159277, 2.55913646, 2.93620062, 3.28691474, 3.6151146, 3.92403714,
    ];
    let c = (0.5 * 0.35) * (1.0 + (std::f64::consts::PI * 4f64.ln()).sqrt());
    let std = (absmax as f64 * 2.0 * c) / (2.0 * (n as f64).ln()).sqrt();
    (ALPHA[(bits as usize - 1).min(7)] as f64 * std) as f32
}

/// Weight scales of one layer.
pub fn weight_scales(layer: &QuantLayer, method: Method, bits: u32) -> Vec<f32> {
    (0..layer.channels)
        .map(|c| {
            let w = layer.channel(c);
            let absmax = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            let threshold = match method {
                Method::Max | Method::Kl => absmax,
                Method::Aciq => aciq_threshold(absmax, w.len(), bits),
            };
            scale_for(qmax(bits), threshold)
        })
        .collect()
}

/// ncnn's KL search: the histogram bin count `t` (in `target_bin..HISTOGRAM_BINS`) whose
/// clipped distribution is closest to its `target_bin`-level quantization. Float arithmetic
/// follows ncnn2table step by step so that ties and rounding match.
pub fn kl_threshold_bin(histogram: &[u64], target_bin: usize) -> usize {
    let bins = histogram.len();
    let sum: u64 = histogram.iter().sum();
    let normed: Vec<f32> = histogram
        .iter()
        .map(|&h| (h as f64 / sum as f64) as f32)
        .collect();
    const EPS: f32 = 0.0001;
    let mut best = target_bin;
    let mut min_kl = f32::MAX;
    let mut clip = Vec::with_capacity(bins);
    let mut quant = vec![0f32; target_bin];
    let mut expand = Vec::with_capacity(bins);
    for threshold in target_bin..bins {
        clip.clear();
        clip.extend(normed[..threshold].iter().map(|v| EPS + v));
        for v in &normed[threshold..] {
            clip[threshold - 1] += v;
        }
        let per_bin = threshold as f32 / target_bin as f32;

        // Merge the first `threshold` bins (no tail) into target bins of fractional width,
        // each value the average density over its span.
        quant.fill(0.0);
        {
            let end = per_bin;
            let right_lower = end.floor() as usize;
            let right_scale = end - right_lower as f32;
            if right_scale > 0.0 {
                quant[0] += right_scale * normed[right_lower];
            }
            for v in &normed[..right_lower] {
                quant[0] += v;
            }
            quant[0] /= right_lower as f32 + right_scale;
        }
        for (j, q) in quant.iter_mut().enumerate().take(target_bin - 1).skip(1) {
            let start = j as f32 * per_bin;
            let end = (j + 1) as f32 * per_bin;
            let left_upper = start.ceil() as usize;
            let left_scale = left_upper as f32 - start;
            let right_lower = end.floor() as usize;
            let right_scale = end - right_lower as f32;
            if left_scale > 0.0 {
                *q += left_scale * normed[left_upper - 1];
            }
            if right_scale > 0.0 {
                *q += right_scale * normed[right_lower];
            }
            for v in &normed[left_upper..right_lower] {
                *q += v;
            }
            *q /= (right_lower as i64 - left_upper as i64) as f32 + left_scale + right_scale;
        }
        {
            let start = threshold as f32 - per_bin;
            let left_upper = start.ceil() as usize;
            let left_scale = left_upper as f32 - start;
            let q = &mut quant[target_bin - 1];
            if left_scale > 0.0 {
                *q += left_scale * normed[left_upper - 1];
            }
            for v in &normed[left_upper..threshold] {
                *q += v;
            }
            *q /= (threshold - left_upper) as f32 + left_scale;
        }

        // Spread each level back uniformly over the bins it covers.
        expand.clear();
        expand.resize(threshold, EPS);
        {
            let end = per_bin;
            let right_lower = end.floor() as usize;
            let right_scale = end - right_lower as f32;
            if right_scale > 0.0 {
                expand[right_lower] += right_scale * quant[0];
            }
            for e in &mut expand[..right_lower] {
                *e += quant[0];
            }
        }
        for (j, &q) in quant.iter().enumerate().take(target_bin - 1).skip(1) {
            let start = j as f32 * per_bin;
            let end = (j + 1) as f32 * per_bin;
            let left_upper = start.ceil() as usize;
            let left_scale = left_upper as f32 - start;
            let right_lower = end.floor() as usize;
            let right_scale = end - right_lower as f32;
            if left_scale > 0.0 {
                expand[left_upper - 1] += left_scale * q;
            }
            if right_scale > 0.0 {
                expand[right_lower] += right_scale * q;
            }
            for e in &mut expand[left_upper..right_lower] {
                *e += q;
            }
        }
        {
            let start = threshold as f32 - per_bin;
            let left_upper = start.ceil() as usize;
            let left_scale = left_upper as f32 - start;
            let q = quant[target_bin - 1];
            if left_scale > 0.0 {
                expand[left_upper - 1] += left_scale * q;
            }
            for e in &mut expand[left_upper..threshold] {
                *e += q;
            }
        }

        let mut kl = 0f32;
        for (a, b) in clip.iter().zip(&expand) {
            kl += a * (a / b).ln();
        }
        if kl < min_kl {
            min_kl = kl;
            best = threshold;
        }
    }
    best
}

/// Statistics of one layer's input blob over the calibration images.
#[derive(Clone, Debug, Default)]
struct BlobStats {
    absmax: f32,
    /// Elements of one blob (ACIQ's N).
    total: usize,
    nan: bool,
    histogram: Vec<u64>,
}

pub struct Request<'a> {
    pub model: &'a Model,
    pub spec: NetSpec,
    pub prep: &'a crate::dataset::Preprocess,
    pub paths: &'a [PathBuf],
    pub run: RunOptions,
    pub method: Method,
    pub bits: u32,
}

/// Computes the scale table. Layers whose input is zero on every image are left out (they
/// stay fp32) with a warning; NaN or infinite activations are an error.
pub fn calibrate(req: &Request) -> Result<ScaleTable> {
    let Request {
        model,
        prep,
        paths,
        method,
        bits,
        ..
    } = *req;
    if !(7..=8).contains(&bits) {
        bail!("--bits {bits}: expected 8 or 7 (the runtime has no narrower kernels)");
    }
    if model.layers.is_empty() {
        bail!("the model has no Convolution, ConvolutionDepthWise or InnerProduct layer");
    }
    let mut spec = req.spec.clone();
    spec.keep_all_blobs = true;
    let layers = &model.layers;
    let n = layers.len();

    // Pass 1: max |x| per input blob.
    let mut run = req.run.clone();
    run.progress = run.progress.map(|_| "absmax".to_string());
    let (parts, used) = fold_images(
        &spec,
        prep,
        paths,
        &run,
        &|| vec![BlobStats::default(); n],
        &|acc, _, net| {
            for (s, l) in acc.iter_mut().zip(layers) {
                let x = net.blob(&l.bottom)?.data;
                for &v in x {
                    if !v.is_finite() {
                        s.nan = true;
                    }
                    s.absmax = s.absmax.max(v.abs());
                }
                s.total = x.len();
            }
            Ok(())
        },
    )?;
    let mut stats = vec![BlobStats::default(); n];
    for part in parts {
        for (s, p) in stats.iter_mut().zip(part) {
            s.absmax = s.absmax.max(p.absmax);
            s.nan |= p.nan;
            s.total = s.total.max(p.total);
        }
    }
    for (s, l) in stats.iter().zip(layers) {
        if s.nan {
            bail!(
                "the input `{}` of layer `{}` has NaN or infinite values; check the model and the preprocessing",
                l.bottom,
                l.name
            );
        }
    }
    eprintln!("calibrating on {used} of {} images", paths.len());

    // Pass 2 (KL only): histograms of |x| over [0, absmax], exact zeros skipped.
    if method == Method::Kl {
        let maxima: Vec<f32> = stats.iter().map(|s| s.absmax).collect();
        run.progress = req.run.progress.as_ref().map(|_| "histogram".to_string());
        let (parts, _) = fold_images(
            &spec,
            prep,
            paths,
            &run,
            &|| vec![vec![0u64; HISTOGRAM_BINS]; n],
            &|acc, _, net| {
                for ((h, l), &absmax) in acc.iter_mut().zip(layers).zip(&maxima) {
                    if absmax == 0.0 {
                        continue;
                    }
                    for &v in net.blob(&l.bottom)?.data {
                        if v == 0.0 {
                            continue;
                        }
                        let bin = (v.abs() / absmax * HISTOGRAM_BINS as f32) as usize;
                        h[bin.min(HISTOGRAM_BINS - 1)] += 1;
                    }
                }
                Ok(())
            },
        )?;
        for s in &mut stats {
            s.histogram = vec![0; HISTOGRAM_BINS];
        }
        for part in parts {
            for (s, h) in stats.iter_mut().zip(part) {
                for (a, b) in s.histogram.iter_mut().zip(h) {
                    *a += b;
                }
            }
        }
    }

    let q = qmax(bits);
    let mut table = ScaleTable::default();
    let mut skipped = Vec::new();
    for (l, s) in layers.iter().zip(&stats) {
        if s.absmax == 0.0 {
            skipped.push(l.name.as_str());
            continue;
        }
        let threshold = match method {
            Method::Max => s.absmax,
            Method::Aciq => aciq_threshold(s.absmax, s.total, bits),
            Method::Kl => {
                let t = kl_threshold_bin(&s.histogram, 1 << (bits - 1));
                (t as f32 + 0.5) * s.absmax / HISTOGRAM_BINS as f32
            }
        };
        table.set_weight(&l.name, weight_scales(l, method, bits));
        table.set_activation(&l.name, scale_for(q, threshold));
    }
    for name in skipped {
        eprintln!(
            "warning: the input of layer `{name}` is zero on every image; it gets no scales and stays fp32"
        );
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmax_per_bits() {
        assert_eq!((qmax(8), qmax(7), qmax(6)), (127.0, 63.0, 31.0));
        assert_eq!(scale_for(127.0, 0.0), 0.0);
        assert_eq!(scale_for(127.0, 1e-45), 0.0);
        assert_eq!(scale_for(127.0, 2.0), 63.5);
    }

    #[test]
    fn aciq_matches_ncnn_constants() {
        // c = 0.175 * (1 + sqrt(pi * ln 4)) = 0.540...; N = 576: sigma = 2c / sqrt(2 ln 576).
        let t = aciq_threshold(1.0, 576, 8);
        let c = 0.175 * (1.0 + (std::f64::consts::PI * 4f64.ln()).sqrt());
        let want = 3.92403714 * 2.0 * c / (2.0 * 576f64.ln()).sqrt();
        assert!((t as f64 - want).abs() < 1e-6, "{t} vs {want}");
        // easyquant.md §7: N = 576 gives T about 1.19 absmax.
        assert!((t - 1.19).abs() < 0.01, "{t}");
        assert!(aciq_threshold(1.0, 576, 7) < t);
    }

    #[test]
    fn weight_scales_per_channel_and_group() {
        let layer = QuantLayer {
            index: 0,
            name: "c".into(),
            kind: crate::model::QuantKind::ConvolutionDepthWise,
            bottom: "x".into(),
            top: "y".into(),
            num_output: 3,
            channels: 3,
            weights: vec![0.5, -2.0, 0.0, 0.0, 1.0, 0.25],
            bias: None,
            activation: eq_runtime::ops::activation::Activation::None,
        };
        assert_eq!(weight_scales(&layer, Method::Max, 8), [63.5, 0.0, 127.0]);
        assert_eq!(weight_scales(&layer, Method::Kl, 7), [31.5, 0.0, 63.0]);
        let aciq = weight_scales(&layer, Method::Aciq, 8);
        assert_eq!(aciq[1], 0.0);
        assert!((aciq[0] - 127.0 / aciq_threshold(2.0, 2, 8)).abs() < 1e-3);
    }

    /// A direct transcription of the documented KL procedure in f64 with explicit
    /// overlap sums, to check the fractional bookkeeping of the fast version.
    #[allow(clippy::needless_range_loop)]
    fn kl_reference(hist: &[u64], target: usize) -> usize {
        let sum: u64 = hist.iter().sum();
        let p: Vec<f64> = hist.iter().map(|&h| h as f64 / sum as f64).collect();
        let mut best = (f64::MAX, target);
        for t in target..hist.len() {
            let mut clip: Vec<f64> = p[..t].iter().map(|v| v + 1e-4).collect();
            clip[t - 1] += p[t..].iter().sum::<f64>();
            let w = t as f64 / target as f64;
            // Overlap of bin k = [k, k+1) with level j = [j w, (j+1) w).
            let overlap = |k: usize, j: usize| {
                let (a, b) = (j as f64 * w, (j + 1) as f64 * w);
                ((k + 1) as f64).min(b) - (k as f64).max(a)
            };
            let mut q = vec![0.0; target];
            for (j, qj) in q.iter_mut().enumerate() {
                let (mut mass, mut width) = (0.0, 0.0);
                for k in 0..t {
                    let o = overlap(k, j);
                    if o > 0.0 {
                        mass += o * p[k];
                        width += o;
                    }
                }
                *qj = mass / width;
            }
            let mut kl = 0.0;
            for k in 0..t {
                let mut e = 1e-4;
                for (j, qj) in q.iter().enumerate() {
                    let o = overlap(k, j);
                    if o > 0.0 {
                        e += o * qj;
                    }
                }
                kl += clip[k] * (clip[k] / e).ln();
            }
            if kl < best.0 - 1e-9 {
                best = (kl, t);
            }
        }
        best.1
    }

    #[test]
    fn kl_search_matches_the_documented_procedure() {
        let mut rng = eq_runtime::rng::Rng::new(7);
        for (bins, target) in [(64usize, 8usize), (96, 16), (200, 32)] {
            // Half-normal-like counts with a long sparse tail.
            let hist: Vec<u64> = (0..bins)
                .map(|k| {
                    let x = k as f32 / bins as f32 * 6.0;
                    let base = 10000.0 * (-x * x / 2.0).exp();
                    (base + rng.uniform(0.0, 30.0)) as u64 * (k % 7 != 3) as u64
                })
                .collect();
            let fast = kl_threshold_bin(&hist, target);
            let slow = kl_reference(&hist, target);
            assert!(
                fast.abs_diff(slow) <= 1,
                "bins {bins} target {target}: {fast} vs {slow}"
            );
        }
        // A single spike in bin 0: clipping anywhere loses nothing; the first t wins.
        let mut hist = vec![0u64; 256];
        hist[0] = 100;
        assert_eq!(kl_threshold_bin(&hist, 128), 128);
    }
}
