//! `eq finetune`: the EasyQuant scale search (easyquant.md §2, Algorithm 1).
//!
//! Layers are visited in file (topological) order. For layer l the calibration images run
//! through the *current* model — every earlier layer fake-quantized with its tuned scales
//! (weights replaced by `q/s`, and a fake-quant chain `x·s → clip ±qmax → round → /s`
//! inserted before its input) — to get l's input Â_l, and through the FP32 model to get
//! the target O_l (l's output after its fused activation). Then, with Â_l fixed:
//!
//! 1. weight scales: `steps` candidates `s0·f`, f evenly spaced over [alpha, beta], plus the
//!    original, per output channel (per group for depthwise), maximising the mean (over
//!    images) cosine of the whole layer output by coordinate ascent over channels (channel c
//!    depends only on scale c, so every candidate is simulated once for all channels);
//! 2. the activation scale, same grid, same objective.
//!
//! A per-channel cosine (the released EasyQuant code) ignores each channel's gain, and
//! picked scales that lowered end-to-end accuracy on SqueezeNet; the whole-output cosine
//! does not have that blind spot.
//! Layers that read the same blob (directly or through a Split) share the first one's
//! activation scale, as the requantized int8 blob between them can carry only one.
//! Ties keep the original scale, and per-channel weight choices that lower the layer's
//! whole-output cosine are dropped, so no layer gets worse on the calibration data. `rounds` repeats the sweep. Candidates are evaluated on
//! the single layer in float (fake-quant) from im2col columns at up to `POSITIONS` sampled
//! output positions per image, so no candidate re-runs the network. The rounding inside the
//! inserted chain is round-half-even (the `1.5·2^23` trick); the layer simulation itself
//! rounds half away from zero as the int8 kernels do.

use crate::calibrate::qmax;
use crate::dataset::{self, Preprocess};
use crate::model::{Model, QuantKind, QuantLayer};
use crate::ncnn_writer::{BinWriter, ParamWriter};
use crate::runner::NetSpec;
use crate::table::ScaleTable;
use anyhow::{anyhow, bail, Result};
use eq_runtime::ops::convolution::ConvParams;
use eq_runtime::{Net, Options, Shape};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use std::path::PathBuf;

/// Output positions sampled per image and layer.
pub const POSITIONS: usize = 128;

/// `1.5 · 2^23`: adding and subtracting it rounds an f32 of magnitude < 2^22 to an integer.
const ROUND_MAGIC: f32 = 12_582_912.0;

pub struct Request<'a> {
    pub model: &'a Model,
    pub spec: NetSpec,
    pub prep: &'a Preprocess,
    pub paths: &'a [PathBuf],
    pub strict: bool,
    pub table: ScaleTable,
    pub bits: u32,
    pub alpha: f32,
    pub beta: f32,
    pub steps: usize,
    pub rounds: usize,
    pub progress: bool,
}

/// Mean cosine of one layer before and after the search.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerReport {
    pub name: String,
    pub before: f64,
    pub after: f64,
}

/// Fake quantization: `clamp(round_half_away(x·s), ±qmax) / s`; scale 0 gives 0.
#[inline]
pub fn fake_quant(x: f32, s: f32, q: i32) -> f32 {
    if s == 0.0 {
        0.0
    } else {
        eq_runtime::quant::quantize(x, s, q) as f32 / s
    }
}

/// Cosine of two vectors in f64; two zero vectors are identical (1), one zero vector 0.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    match (aa == 0.0, bb == 0.0) {
        (true, true) => 1.0,
        (true, false) | (false, true) => 0.0,
        _ => ab / (aa.sqrt() * bb.sqrt()),
    }
}

/// Candidate factors: 1 (the original) first, then `steps` values evenly over [alpha, beta].
pub fn candidates(alpha: f32, beta: f32, steps: usize) -> Vec<f32> {
    let mut f = vec![1.0];
    for k in 0..steps {
        let t = if steps == 1 {
            0.0
        } else {
            k as f32 / (steps - 1) as f32
        };
        f.push(alpha + (beta - alpha) * t);
    }
    f
}

/// Index of the best value, the first one on ties (so the original scale wins ties).
fn best_index(v: impl Iterator<Item = f64>) -> usize {
    let mut best = (f64::NEG_INFINITY, 0);
    for (i, x) in v.enumerate() {
        if x > best.0 {
            best = (x, i);
        }
    }
    best.1
}

/// The model with `quantized` layers fake-quantized with their scales in `table`.
fn fake_quant_model(
    model: &Model,
    table: &ScaleTable,
    quantized: &[&QuantLayer],
    q: i32,
) -> Result<(String, Vec<u8>)> {
    let mut param = ParamWriter::new();
    let mut bin = BinWriter::new();
    for (li, rec) in model.param.layers.iter().enumerate() {
        let Some(l) = quantized.iter().find(|l| l.index == li) else {
            let layer = param.layer(
                &rec.kind,
                &rec.name,
                &rec.bottoms.iter().map(String::as_str).collect::<Vec<_>>(),
                &rec.tops.iter().map(String::as_str).collect::<Vec<_>>(),
            );
            layer.params = crate::quantize::copy_params(&rec.name, &rec.params)?;
            bin.bytes
                .extend_from_slice(&model.bin[model.ranges[li].clone()]);
            continue;
        };
        let sa = table.activation(&l.name).unwrap_or(0.0);
        let ws = table.weight(&l.name).unwrap_or_default();
        let t = |k: usize| format!("{}__fq{k}_{}", l.bottom, l.name);
        let n = |k: usize| format!("{}__fq{k}", l.name);
        param
            .layer("BinaryOp", &n(0), &[&l.bottom], &[&t(0)])
            .int(0, 2)
            .int(1, 1)
            .float(2, sa);
        param
            .layer("Clip", &n(1), &[&t(0)], &[&t(1)])
            .float(0, -(q as f32))
            .float(1, q as f32);
        param
            .layer("BinaryOp", &n(2), &[&t(1)], &[&t(2)])
            .int(0, 0)
            .int(1, 1)
            .float(2, ROUND_MAGIC);
        param
            .layer("BinaryOp", &n(3), &[&t(2)], &[&t(3)])
            .int(0, 1)
            .int(1, 1)
            .float(2, ROUND_MAGIC);
        param
            .layer("BinaryOp", &n(4), &[&t(3)], &[&t(4)])
            .int(0, 3)
            .int(1, 1)
            .float(2, sa);
        let layer = param.layer(
            &rec.kind,
            &rec.name,
            &[t(4).as_str()],
            &rec.tops.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        layer.params = crate::quantize::copy_params(&rec.name, &rec.params)?;
        let n = l.channel_len();
        let w: Vec<f32> = l
            .weights
            .iter()
            .enumerate()
            .map(|(i, &w)| fake_quant(w, ws[i / n], q))
            .collect();
        bin.tagged_f32(&w);
        if let Some(b) = &l.bias {
            bin.raw_f32(b);
        }
    }
    Ok((param.to_text()?, bin.bytes))
}

/// How one layer maps inputs to outputs, for the column simulation.
struct Geometry {
    groups: usize,
    /// Inputs per column (per group).
    k: usize,
    /// Output channels per group.
    cg: usize,
    /// Output positions per image.
    positions: usize,
}

/// Sampled im2col columns of one image: one (k x cols) matrix per group, and the targets
/// (cg x cols) per group.
#[allow(clippy::too_many_arguments)]
fn sample_columns(
    l: &QuantLayer,
    params: Option<&ConvParams>,
    input: (&[f32], Shape),
    target: &[f32],
    picks: &[usize],
    cols: &mut [Vec<f32>],
    targets: &mut [Vec<f32>],
    g: &Geometry,
) -> Result<()> {
    let (x, s) = input;
    let Some(p) = params else {
        // InnerProduct: the whole input is one column.
        cols[0].extend_from_slice(x);
        targets[0].extend_from_slice(target);
        return Ok(());
    };
    let r = p
        .resolve(s.w, s.h)
        .map_err(|e| anyhow!("{}: {}", l.name, e.0))?;
    let icg = s.c / g.groups;
    for (grp, (col, tgt)) in cols.iter_mut().zip(targets.iter_mut()).enumerate() {
        for &pos in picks {
            let (oy, ox) = (pos / r.out_w, pos % r.out_w);
            for ic in grp * icg..(grp + 1) * icg {
                for ky in 0..p.kernel_h {
                    for kx in 0..p.kernel_w {
                        let iy =
                            (oy * p.stride_h + ky * p.dilation_h) as isize - r.pad_top as isize;
                        let ix =
                            (ox * p.stride_w + kx * p.dilation_w) as isize - r.pad_left as isize;
                        let inside = iy >= 0 && ix >= 0 && iy < s.h as isize && ix < s.w as isize;
                        col.push(if inside {
                            x[(ic * s.h + iy as usize) * s.w + ix as usize]
                        } else {
                            p.pad_value
                        });
                    }
                }
            }
        }
        for c in grp * g.cg..(grp + 1) * g.cg {
            for &pos in picks {
                tgt.push(target[c * g.positions + pos]);
            }
        }
    }
    Ok(())
}

/// The data one layer's search works on.
struct LayerData {
    /// Per group: columns (k x cols), column-major per sample (pushed column by column).
    cols: Vec<Array2<f32>>,
    /// Per group: targets (cg x cols).
    targets: Vec<Array2<f32>>,
    /// Columns per image.
    per_image: usize,
    images: usize,
}

/// Simulated layer output for one group: act(fq(W)·fq(X) + b), (cg x cols).
fn simulate(l: &QuantLayer, grp: usize, wq: ArrayView2<f32>, xq: ArrayView2<f32>) -> Array2<f32> {
    let mut y = wq.dot(&xq);
    let cg = wq.nrows();
    for (r, mut row) in y.rows_mut().into_iter().enumerate() {
        let b = l.bias.as_ref().map_or(0.0, |b| b[grp * cg + r]);
        row.mapv_inplace(|v| l.activation.apply(v + b));
    }
    y
}

fn quantized_weights(
    l: &QuantLayer,
    grp: usize,
    g: &Geometry,
    scales: &[f32],
    q: i32,
) -> Array2<f32> {
    let n = l.channel_len();
    let start = grp * g.cg * g.k;
    let w = &l.weights[start..start + g.cg * g.k];
    Array2::from_shape_fn((g.cg, g.k), |(r, c)| {
        let i = start + r * g.k + c;
        fake_quant(w[r * g.k + c], scales[i / n], q)
    })
}

fn quantized_inputs(d: &LayerData, sa: f32, q: i32) -> Vec<Array2<f32>> {
    d.cols
        .iter()
        .map(|c| c.mapv(|v| fake_quant(v, sa, q)))
        .collect()
}

/// Mean over images of the whole-output cosine (all groups, channels, sampled positions).
fn layer_cosine(l: &QuantLayer, g: &Geometry, d: &LayerData, ws: &[f32], sa: f32, q: i32) -> f64 {
    let xq = quantized_inputs(d, sa, q);
    let ys: Vec<Array2<f32>> = (0..g.groups)
        .map(|grp| {
            simulate(
                l,
                grp,
                quantized_weights(l, grp, g, ws, q).view(),
                xq[grp].view(),
            )
        })
        .collect();
    let mut total = 0.0;
    for img in 0..d.images {
        let range = img * d.per_image..(img + 1) * d.per_image;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (y, t) in ys.iter().zip(&d.targets) {
            for (yr, tr) in y.rows().into_iter().zip(t.rows()) {
                a.extend(yr.slice(ndarray::s![range.clone()]).iter());
                b.extend(tr.slice(ndarray::s![range.clone()]).iter());
            }
        }
        total += cosine(&a, &b);
    }
    total / d.images as f64
}

/// Per output channel and image: `<y, ŷ>` and `|ŷ|²` of one candidate.
struct ChannelStats {
    dot: Vec<f64>,
    norm: Vec<f64>,
}

/// Searches one layer's weight scales with the activation scale fixed. The objective is the
/// mean over images of the whole-output cosine. Output channel c depends only on scale c,
/// so each candidate's per-channel dot products and norms are computed once; then
/// coordinate ascent over the scale channels (two sweeps) picks, for each, the candidate
/// that raises the whole-output cosine most given the others (ties keep the current one).
#[allow(clippy::needless_range_loop)] // channel, image and candidate indices address several arrays
fn search_weights(
    l: &QuantLayer,
    g: &Geometry,
    d: &LayerData,
    ws: &mut [f32],
    sa: f32,
    factors: &[f32],
    q: i32,
) {
    let xq = quantized_inputs(d, sa, q);
    let n_img = d.images;
    let stats: Vec<ChannelStats> = factors
        .par_iter()
        .map(|&f| {
            let cand: Vec<f32> = ws.iter().map(|s| s * f).collect();
            let mut st = ChannelStats {
                dot: vec![0.0; l.num_output * n_img],
                norm: vec![0.0; l.num_output * n_img],
            };
            for (grp, (x, t)) in xq.iter().zip(&d.targets).enumerate() {
                let y = simulate(
                    l,
                    grp,
                    quantized_weights(l, grp, g, &cand, q).view(),
                    x.view(),
                );
                for (r, (yr, tr)) in y.rows().into_iter().zip(t.rows()).enumerate() {
                    let c = grp * g.cg + r;
                    for (i, (yv, tv)) in yr.iter().zip(tr.iter()).enumerate() {
                        let img = i / d.per_image;
                        st.dot[c * n_img + img] += *yv as f64 * *tv as f64;
                        st.norm[c * n_img + img] += *yv as f64 * *yv as f64;
                    }
                }
            }
            st
        })
        .collect();
    // |target|² per image.
    let mut tnorm = vec![0f64; n_img];
    for t in &d.targets {
        for row in t.rows() {
            for (i, v) in row.iter().enumerate() {
                tnorm[i / d.per_image] += *v as f64 * *v as f64;
            }
        }
    }
    // A scale channel (DW group) covers output channels c*cpc .. (c+1)*cpc.
    let cpc = l.num_output / l.channels;
    let mut choice = vec![0usize; l.channels];
    let mut dot = vec![0f64; n_img];
    let mut norm = vec![0f64; n_img];
    let channel_sums = |k: usize, c: usize, img: usize| -> (f64, f64) {
        let mut s = (0.0, 0.0);
        for o in c * cpc..(c + 1) * cpc {
            s.0 += stats[k].dot[o * n_img + img];
            s.1 += stats[k].norm[o * n_img + img];
        }
        s
    };
    for c in 0..l.channels {
        for img in 0..n_img {
            let (a, b) = channel_sums(0, c, img);
            dot[img] += a;
            norm[img] += b;
        }
    }
    let objective = |dot: &[f64], norm: &[f64]| -> f64 {
        let mut sum = 0.0;
        for img in 0..n_img {
            sum += match (norm[img] == 0.0, tnorm[img] == 0.0) {
                (true, true) => 1.0,
                (true, false) | (false, true) => 0.0,
                _ => dot[img] / (norm[img].sqrt() * tnorm[img].sqrt()),
            };
        }
        sum / n_img as f64
    };
    let mut best = objective(&dot, &norm);
    for _sweep in 0..2 {
        for c in 0..l.channels {
            let current: Vec<(f64, f64)> = (0..n_img)
                .map(|img| channel_sums(choice[c], c, img))
                .collect();
            let mut pick = choice[c];
            for k in 0..factors.len() {
                if k == choice[c] {
                    continue;
                }
                let (mut td, mut tn) = (dot.clone(), norm.clone());
                for img in 0..n_img {
                    let (a, b) = channel_sums(k, c, img);
                    td[img] += a - current[img].0;
                    tn[img] += b - current[img].1;
                }
                let v = objective(&td, &tn);
                if v > best {
                    best = v;
                    pick = k;
                }
            }
            if pick != choice[c] {
                for img in 0..n_img {
                    let (a, b) = channel_sums(pick, c, img);
                    dot[img] += a - current[img].0;
                    norm[img] += b - current[img].1;
                }
                choice[c] = pick;
            }
        }
    }
    let original = ws.to_vec();
    for (c, s) in ws.iter_mut().enumerate() {
        *s = original[c] * factors[choice[c]];
    }
}

/// Searches one layer's activation scale with its weight scales fixed.
fn search_activation(
    l: &QuantLayer,
    g: &Geometry,
    d: &LayerData,
    ws: &[f32],
    sa: &mut f32,
    factors: &[f32],
    q: i32,
) {
    let scores: Vec<f64> = factors
        .par_iter()
        .map(|&f| layer_cosine(l, g, d, ws, *sa * f, q))
        .collect();
    *sa *= factors[best_index(scores.into_iter())];
}

/// Runs the search; returns the tuned table and per-layer cosines.
pub fn finetune(req: &Request) -> Result<(ScaleTable, Vec<LayerReport>)> {
    let q = qmax(req.bits) as i32;
    if !(req.alpha > 0.0 && req.beta >= req.alpha) {
        bail!("--alpha and --beta must satisfy 0 < alpha <= beta");
    }
    if req.steps == 0 || req.rounds == 0 {
        bail!("--steps and --rounds must be at least 1");
    }
    // Images, preprocessed once.
    let mut inputs = Vec::new();
    for p in req.paths {
        if let Some(x) = dataset::skip_unreadable(p, req.prep.load(p), req.strict)? {
            inputs.push(x);
        }
    }
    if inputs.is_empty() {
        bail!("none of the {} images could be read", req.paths.len());
    }
    let opts = Options {
        threads: crate::infer::default_threads(),
        input_shapes: req
            .spec
            .input_shape
            .map(|s| vec![(req.spec.input.clone(), s)])
            .unwrap_or_default(),
        keep_all_blobs: true,
        ..Options::default()
    };
    let mut fp32 = Net::load(&req.spec.param, &req.spec.bin, &opts)?;
    let layers: Vec<&QuantLayer> = req
        .model
        .layers
        .iter()
        .filter(|l| req.table.activation(&l.name).is_some() && req.table.weight(&l.name).is_some())
        .collect();
    if layers.is_empty() {
        bail!("the table has no layer of this model");
    }
    for l in &layers {
        let sa = req.table.activation(&l.name).unwrap();
        if !(sa.is_finite() && sa > 0.0) {
            bail!("layer `{}`: activation scale {sa} must be positive", l.name);
        }
        if req.table.weight(&l.name).unwrap().len() != l.channels {
            bail!(
                "layer `{}`: wrong number of weight scales in the table",
                l.name
            );
        }
    }
    // Layers reading the same data (one blob, directly or through Split) share one
    // activation scale: an int8 blob handed over by requantization carries one scale, and
    // ncnn fuses with the first reader's (easyquant.md §13.2 item 7). The first of them in
    // order searches it; the others take it over.
    let source = |l: &QuantLayer| -> String {
        let split = req
            .model
            .param
            .layers
            .iter()
            .find(|r| r.kind == "Split" && r.tops.contains(&l.bottom));
        match split {
            Some(r) => r.bottoms[0].clone(),
            None => l.bottom.clone(),
        }
    };
    let sources: Vec<String> = layers.iter().map(|l| source(l)).collect();
    let factors = candidates(req.alpha, req.beta, req.steps);
    let mut table = req.table.clone();
    let mut reports: Vec<LayerReport> = Vec::new();
    let bar = if req.progress {
        let b = ProgressBar::new((layers.len() * req.rounds) as u64);
        if let Ok(s) =
            ProgressStyle::with_template("finetune {bar:40} {pos}/{len} {msg} [{elapsed} < {eta}]")
        {
            b.set_style(s);
        }
        b
    } else {
        ProgressBar::hidden()
    };
    for _round in 0..req.rounds {
        for (i, l) in layers.iter().enumerate() {
            bar.set_message(l.name.clone());
            let (text, bytes) = fake_quant_model(req.model, &table, &layers[..i], q)?;
            let mut current = Net::from_memory(text.as_bytes(), &bytes, &opts)?;
            let rec = &req.model.param.layers[l.index];
            let params = match l.kind {
                QuantKind::InnerProduct => None,
                _ => Some(
                    ConvParams::from_params(&rec.params)
                        .map_err(|e| anyhow!("{}: {}", l.name, e.0))?,
                ),
            };
            let in_shape = fp32.blob_shape(&l.bottom)?;
            let out_shape = fp32.blob_shape(&l.top)?;
            let groups = match l.kind {
                QuantKind::ConvolutionDepthWise => l.channels,
                _ => 1,
            };
            if params.is_some() && in_shape.dims != 3 {
                bail!(
                    "layer `{}`: finetune needs a 3-D input, got {in_shape}",
                    l.name
                );
            }
            let positions = if params.is_some() {
                out_shape.w * out_shape.h
            } else {
                1
            };
            let g = Geometry {
                groups,
                k: l.weights.len() / l.num_output,
                cg: l.num_output / groups,
                positions,
            };
            let per_image = positions.min(POSITIONS);
            let mut cols = vec![Vec::new(); groups];
            let mut targets = vec![Vec::new(); groups];
            let mut rng = eq_runtime::rng::Rng::new(0x5EED ^ l.index as u64);
            for x in &inputs {
                // Evenly spaced positions from a seeded offset.
                let offset = rng.range(0, positions as i64) as usize;
                let picks: Vec<usize> = (0..per_image)
                    .map(|j| (offset + j * positions / per_image) % positions)
                    .collect();
                fp32.set_input(&req.spec.input, x)?;
                fp32.run()?;
                current.set_input(&req.spec.input, x)?;
                current.run()?;
                let a = current.blob(&l.bottom)?;
                let t = fp32.blob(&l.top)?;
                sample_columns(
                    l,
                    params.as_ref(),
                    (a.data, a.shape),
                    t.data,
                    &picks,
                    &mut cols,
                    &mut targets,
                    &g,
                )?;
            }
            let n = per_image * inputs.len();
            let d = LayerData {
                cols: cols
                    .into_iter()
                    .map(|c| Array2::from_shape_vec((n, g.k), c).map(|a| a.reversed_axes()))
                    .collect::<std::result::Result<_, _>>()?,
                targets: targets
                    .into_iter()
                    .map(|t| Array2::from_shape_vec((g.cg, n), t))
                    .collect::<std::result::Result<_, _>>()?,
                per_image,
                images: inputs.len(),
            };
            // Targets were pushed channel-major per image; reorder to (cg x cols) by image.
            let d = LayerData {
                targets: d
                    .targets
                    .iter()
                    .map(|t| {
                        let flat: Vec<f32> = t.iter().copied().collect();
                        Array2::from_shape_fn((g.cg, n), |(r, c)| {
                            let (img, p) = (c / per_image, c % per_image);
                            flat[(img * g.cg + r) * per_image + p]
                        })
                    })
                    .collect(),
                ..d
            };
            let mut ws = table.weight(&l.name).unwrap().to_vec();
            let mut sa = table.activation(&l.name).unwrap();
            let before = layer_cosine(l, &g, &d, &ws, sa, q);
            // Per-channel choices can lower the whole-output cosine; keep them only if not.
            let initial = ws.clone();
            search_weights(l, &g, &d, &mut ws, sa, &factors, q);
            if layer_cosine(l, &g, &d, &ws, sa, q) < before {
                ws = initial;
            }
            match (0..i).find(|&j| sources[j] == sources[i]) {
                Some(j) => sa = table.activation(&layers[j].name).unwrap(),
                None => search_activation(l, &g, &d, &ws, &mut sa, &factors, q),
            }
            let after = layer_cosine(l, &g, &d, &ws, sa, q);
            table.set_weight(&l.name, ws);
            table.set_activation(&l.name, sa);
            match reports.iter_mut().find(|r| r.name == l.name) {
                Some(r) => r.after = after,
                None => reports.push(LayerReport {
                    name: l.name.clone(),
                    before,
                    after,
                }),
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok((table, reports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_quant_and_cosine() {
        assert_eq!(fake_quant(0.26, 10.0, 127), 0.3);
        assert_eq!(fake_quant(-0.25, 10.0, 127), -0.3);
        assert_eq!(fake_quant(100.0, 1.0, 63), 63.0);
        assert_eq!(fake_quant(5.0, 0.0, 127), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[0.0, 0.0]), 1.0);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 0.0]), 0.0);
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-12);
        assert_eq!(candidates(0.5, 2.0, 4), [1.0, 0.5, 1.0, 1.5, 2.0]);
        assert_eq!(best_index([0.5, 0.7, 0.7].into_iter()), 1);
    }
}
