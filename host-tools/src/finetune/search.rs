//! The scale search of one layer, on data sampled from its input and its FP32 target.
//!
//! Candidates are evaluated on the single layer in float (fake quantization) from im2col
//! columns at up to `POSITIONS` (by default) sampled output positions per image, so no candidate runs
//! the network. The objective is the paper's: the mean over images of the cosine between
//! the FP32 layer output and the quantized one, over the whole output (all channels, the
//! sampled positions), after the layer's fused activation.

use crate::model::QuantLayer;
use crate::quantize::quantize_weights;
use crate::report::cosine_of;
use anyhow::{anyhow, bail, Result};
use eq_runtime::kernels::gemm_i8::{self, DenseB8, KernelSet, PackedA8};
use eq_runtime::kernels::quantize::quantize_slice;
use eq_runtime::kernels::requant::{self, OutBuf, Requant};
use eq_runtime::ops::convolution::ConvParams;
use eq_runtime::pool::Pool;
use eq_runtime::quant::Precision;
use eq_runtime::Shape;
use rayon::prelude::*;

/// Output positions sampled per image and layer by default (`--positions`).
pub const POSITIONS: usize = 128;

/// How candidates are made and chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The paper's grid (`steps` values evenly over [alpha, beta], ends included) plus the
    /// initial scale, which wins ties; weight channels by coordinate ascent (two sweeps).
    Paper,
    /// ncnn2table's `eq` (easyquant.md §4): `alpha + k·(beta − alpha)/steps`, k < steps,
    /// without the initial scale; weight channels one at a time, once; the best candidate
    /// is taken if its cosine is positive, otherwise the initial scale stays.
    Ncnn,
}

/// Candidate factors. Index 0 is always the initial scale (1); the others are the grid.
pub fn candidates(rule: Rule, alpha: f32, beta: f32, steps: usize) -> Vec<f32> {
    let mut f = vec![1.0];
    for k in 0..steps {
        let t = match rule {
            Rule::Paper if steps == 1 => 0.0,
            Rule::Paper => k as f32 / (steps - 1) as f32,
            Rule::Ncnn => k as f32 / steps as f32,
        };
        f.push(alpha + (beta - alpha) * t);
    }
    f
}

/// Index of the best score under `rule` (index 0 = the initial scale).
fn pick(rule: Rule, scores: &[f64]) -> usize {
    let (start, mut best) = match rule {
        Rule::Paper => (0, (f64::NEG_INFINITY, 0)),
        Rule::Ncnn => (1, (0.0, 0)),
    };
    for (i, &x) in scores.iter().enumerate().skip(start) {
        if x > best.0 {
            best = (x, i);
        }
    }
    best.1
}

/// The sampled data of one layer.
pub struct LayerData {
    precision: Precision,
    kernels: KernelSet,
    /// Inputs per column (per group).
    k: usize,
    /// Output channels per group.
    cg: usize,
    /// Columns: images x per_image.
    n: usize,
    /// Per group: im2col columns, row-major (k x n).
    cols: Vec<Vec<f32>>,
    /// Per group: FP32 targets, row-major (cg x n).
    targets: Vec<Vec<f32>>,
    /// Per image: |target|².
    tnorm: Vec<f64>,
    per_image: usize,
    images: usize,
}

thread_local! {
    /// A one-thread runtime pool for each rayon worker (spawns no thread).
    static POOL: Option<Pool> = Pool::new(1).ok();
}

impl LayerData {
    /// Samples the columns of `l` from each image's input (`inputs`, shape `in_shape`) and
    /// the targets from its FP32 output (`targets`, shape `out_shape`). `params` is None for
    /// InnerProduct, whose whole input is one column.
    pub fn sample(
        l: &QuantLayer,
        params: Option<&ConvParams>,
        (in_shape, inputs): (Shape, &[&[f32]]),
        (out_shape, targets): (Shape, &[&[f32]]),
        precision: Precision,
        max_positions: usize,
    ) -> Result<LayerData> {
        let groups = match l.kind {
            crate::model::QuantKind::ConvolutionDepthWise => l.channels,
            _ => 1,
        };
        let (k, cg) = (l.weights.len() / l.num_output, l.num_output / groups);
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
        let fits = match params {
            Some(p) => {
                out_shape.len() == positions * l.num_output
                    && in_shape.c / groups * p.kernel_w * p.kernel_h == k
            }
            None => in_shape.len() == k && out_shape.len() == l.num_output,
        };
        if !fits {
            bail!(
                "layer `{}`: input {in_shape} and output {out_shape} do not match its weights",
                l.name
            );
        }
        let per_image = positions.min(max_positions.max(1));
        let n = per_image * inputs.len();
        // Evenly spaced positions from a seeded offset per image.
        let mut rng = eq_runtime::rng::Rng::new(0x5EED ^ l.index as u64);
        let picks: Vec<Vec<usize>> = inputs
            .iter()
            .map(|_| {
                let offset = rng.range(0, positions as i64) as usize;
                (0..per_image)
                    .map(|j| (offset + j * positions / per_image) % positions)
                    .collect()
            })
            .collect();
        let resolved = match params {
            Some(p) => Some(
                p.resolve(in_shape.w, in_shape.h)
                    .map_err(|e| anyhow!("{}: {}", l.name, e.0))?,
            ),
            None => None,
        };
        // Column j of image i is column i*per_image + j; row kk of group g is input channel
        // g*icg + kk / (kh*kw) at kernel tap kk % (kh*kw).
        let icg = in_shape.c / groups;
        let cols: Vec<Vec<f32>> = (0..groups)
            .into_par_iter()
            .map(|grp| {
                let mut col = vec![0f32; k * n];
                for (img, (x, picks)) in inputs.iter().zip(&picks).enumerate() {
                    let (Some(p), Some(r)) = (params, &resolved) else {
                        for (kk, &v) in x.iter().enumerate() {
                            col[kk * n + img] = v;
                        }
                        continue;
                    };
                    for (j, &pos) in picks.iter().enumerate() {
                        let (oy, ox) = (pos / r.out_w, pos % r.out_w);
                        let mut kk = 0;
                        for ic in grp * icg..(grp + 1) * icg {
                            for ky in 0..p.kernel_h {
                                let iy = (oy * p.stride_h + ky * p.dilation_h) as isize
                                    - r.pad_top as isize;
                                for kx in 0..p.kernel_w {
                                    let ix = (ox * p.stride_w + kx * p.dilation_w) as isize
                                        - r.pad_left as isize;
                                    let inside = iy >= 0
                                        && ix >= 0
                                        && iy < in_shape.h as isize
                                        && ix < in_shape.w as isize;
                                    col[kk * n + img * per_image + j] = if inside {
                                        x[(ic * in_shape.h + iy as usize) * in_shape.w
                                            + ix as usize]
                                    } else {
                                        p.pad_value
                                    };
                                    kk += 1;
                                }
                            }
                        }
                    }
                }
                col
            })
            .collect();
        let mut tgt = vec![vec![0f32; cg * n]; groups];
        let mut tnorm = vec![0f64; inputs.len()];
        for (img, (t, picks)) in targets.iter().zip(&picks).enumerate() {
            for (j, &pos) in picks.iter().enumerate() {
                for c in 0..l.num_output {
                    let v = t[c * positions + pos];
                    tgt[c / cg][(c % cg) * n + img * per_image + j] = v;
                    tnorm[img] += v as f64 * v as f64;
                }
            }
        }
        Ok(LayerData {
            precision,
            kernels: KernelSet::best(precision),
            k,
            cg,
            n,
            cols,
            targets: tgt,
            tnorm,
            per_image,
            images: inputs.len(),
        })
    }

    /// Int8 columns of every group with input scale `sa`.
    fn inputs(&self, sa: f32) -> Vec<Vec<i8>> {
        self.cols
            .iter()
            .map(|c| {
                let mut q = vec![0i8; c.len()];
                quantize_slice(c, sa, self.precision.qmax(), &mut q);
                q
            })
            .collect()
    }

    /// The layer's output for one group, act(acc / (sa·sw) + b), run by the runtime's
    /// quantized GEMM, with `f(row, image, <y,t>, |y|²)` per output row and image.
    fn output_stats(
        &self,
        l: &QuantLayer,
        grp: usize,
        (wq, ws): (&PackedA8, &[f32]),
        (xq, sa): (&[i8], f32),
        mut f: impl FnMut(usize, usize, f64, f64),
    ) -> Result<()> {
        let (cg, n) = (self.cg, self.n);
        let channels = grp * cg..(grp + 1) * cg;
        // Depthwise: one scale per group, which is one output channel here.
        let group_scales: Vec<f32> = channels
            .clone()
            .map(|c| ws[c * l.channels / l.num_output])
            .collect();
        let scale_in = requant::scale_in(sa, &group_scales);
        let requant = Requant {
            scale_in: &scale_in,
            bias: l.bias.as_ref().map(|b| &b[channels]),
            act: l.activation,
            top_scale: 1.0,
            qmax: self.precision.qmax(),
        };
        let mut y = vec![0f32; cg * n];
        let mut scratch = vec![0f32; wq.scratch_len(n)];
        let b = DenseB8 { data: xq, n };
        POOL.with(|pool| {
            let pool = pool
                .as_ref()
                .ok_or_else(|| anyhow!("cannot create a thread pool"))?;
            gemm_i8::gemm(wq, &b, n, &requant, OutBuf::F32(&mut y), pool, &mut scratch)
                .map_err(|e| anyhow!("{}: {}", l.name, e.0))
        })?;
        let t = &self.targets[grp];
        for r in 0..cg {
            let (yr, tr) = (&y[r * n..(r + 1) * n], &t[r * n..(r + 1) * n]);
            for (img, (yc, tc)) in yr
                .chunks_exact(self.per_image)
                .zip(tr.chunks_exact(self.per_image))
                .enumerate()
            {
                let (mut dot, mut norm) = (0f64, 0f64);
                for (&v, &t) in yc.iter().zip(tc) {
                    let v = v as f64;
                    dot += v * t as f64;
                    norm += v * v;
                }
                f(r, img, dot, norm);
            }
        }
        Ok(())
    }

    /// Mean over images of the whole-output cosine from per-image `<y,t>` and `|y|²`.
    fn objective(&self, dot: &[f64], norm: &[f64]) -> f64 {
        let sum: f64 = (0..self.images)
            .map(|i| cosine_of(dot[i], norm[i], self.tnorm[i]))
            .sum();
        sum / self.images as f64
    }

    /// The objective for packed weights `wq` (scales `ws`) and int8 inputs `xq` (scale `sa`).
    fn score(
        &self,
        l: &QuantLayer,
        (wq, ws): (&[PackedA8], &[f32]),
        (xq, sa): (&[Vec<i8>], f32),
    ) -> Result<f64> {
        let (mut dot, mut norm) = (vec![0f64; self.images], vec![0f64; self.images]);
        for (grp, (w, x)) in wq.iter().zip(xq).enumerate() {
            self.output_stats(l, grp, (w, ws), (x, sa), |_, img, d, n| {
                dot[img] += d;
                norm[img] += n;
            })?;
        }
        Ok(self.objective(&dot, &norm))
    }

    /// Int8 weights with per-channel scales `ws`, packed per group (cg x k).
    fn all_weights(&self, l: &QuantLayer, ws: &[f32]) -> Vec<PackedA8> {
        quantize_weights(l, ws, self.precision.qmax())
            .chunks_exact(self.cg * self.k)
            .map(|g| PackedA8::new(self.kernels, g, self.cg, self.k))
            .collect()
    }

    /// The mean cosine of the layer with weight scales `ws` and input scale `sa`.
    pub fn cosine(&self, l: &QuantLayer, ws: &[f32], sa: f32) -> Result<f64> {
        self.score(l, (&self.all_weights(l, ws), ws), (&self.inputs(sa), sa))
    }

    /// Searches the weight scales with the input scale fixed. Output channel c depends only
    /// on its scale, so each candidate's per-channel, per-image `<y,t>` and `|y|²` are
    /// computed once; the channel choices are then made on those sums.
    #[allow(clippy::needless_range_loop)] // channel, image and candidate indices address several arrays
    pub fn search_weights(
        &self,
        l: &QuantLayer,
        ws: &mut [f32],
        sa: f32,
        factors: &[f32],
        rule: Rule,
    ) -> Result<()> {
        let xq = self.inputs(sa);
        let n_img = self.images;
        // Per candidate: [output channel][image] (<y,t>, |y|²).
        let stats: Vec<Vec<(f64, f64)>> = factors
            .par_iter()
            .map(|&f| {
                let cand: Vec<f32> = ws.iter().map(|s| s * f).collect();
                let mut st = vec![(0.0, 0.0); l.num_output * n_img];
                let wq = self.all_weights(l, &cand);
                for (grp, (w, x)) in wq.iter().zip(&xq).enumerate() {
                    self.output_stats(l, grp, (w, &cand), (x, sa), |r, img, d, n| {
                        st[(grp * self.cg + r) * n_img + img] = (d, n);
                    })?;
                }
                Ok(st)
            })
            .collect::<Result<_>>()?;
        // A scale channel (a depthwise group) covers output channels c*cpc .. (c+1)*cpc.
        let cpc = l.num_output / l.channels;
        let sums = |k: usize, c: usize, img: usize| -> (f64, f64) {
            (c * cpc..(c + 1) * cpc).fold((0.0, 0.0), |s, o| {
                let (d, n) = stats[k][o * n_img + img];
                (s.0 + d, s.1 + n)
            })
        };
        let mut choice = vec![0usize; l.channels];
        let (mut dot, mut norm) = (vec![0f64; n_img], vec![0f64; n_img]);
        for c in 0..l.channels {
            for img in 0..n_img {
                let (d, n) = sums(0, c, img);
                dot[img] += d;
                norm[img] += n;
            }
        }
        let sweeps = match rule {
            Rule::Paper => 2,
            Rule::Ncnn => 1,
        };
        let (mut td, mut tn) = (vec![0f64; n_img], vec![0f64; n_img]);
        for _ in 0..sweeps {
            for c in 0..l.channels {
                let current: Vec<(f64, f64)> =
                    (0..n_img).map(|img| sums(choice[c], c, img)).collect();
                let scores: Vec<f64> = (0..factors.len())
                    .map(|k| {
                        for img in 0..n_img {
                            let (d, n) = sums(k, c, img);
                            td[img] = dot[img] + d - current[img].0;
                            tn[img] = norm[img] + n - current[img].1;
                        }
                        self.objective(&td, &tn)
                    })
                    .collect();
                let best = match rule {
                    // The current choice wins ties.
                    Rule::Paper => {
                        let b = pick(Rule::Paper, &scores);
                        if scores[b] > scores[choice[c]] {
                            b
                        } else {
                            choice[c]
                        }
                    }
                    Rule::Ncnn => pick(Rule::Ncnn, &scores),
                };
                if best != choice[c] {
                    for img in 0..n_img {
                        let (d, n) = sums(best, c, img);
                        dot[img] += d - current[img].0;
                        norm[img] += n - current[img].1;
                    }
                    choice[c] = best;
                }
            }
        }
        for (s, &k) in ws.iter_mut().zip(&choice) {
            *s *= factors[k];
        }
        Ok(())
    }
}

/// One layer reading a blob whose activation scale is being searched.
pub struct Reader<'a> {
    pub data: &'a LayerData,
    pub layer: &'a QuantLayer,
    /// Its weight scales, fixed during the search.
    pub ws: &'a [f32],
}

/// Searches the input scale with the weight scales fixed: the one scale all `readers` share
/// (they read one blob, which ncnn requantizes once). A candidate's score is the mean of the
/// readers' objectives.
pub fn search_shared_activation(
    readers: &[Reader],
    sa: &mut f32,
    factors: &[f32],
    rule: Rule,
) -> Result<()> {
    let packed: Vec<Vec<PackedA8>> = readers
        .iter()
        .map(|r| r.data.all_weights(r.layer, r.ws))
        .collect();
    let scores: Vec<f64> = factors
        .par_iter()
        .map(|&f| {
            let s = *sa * f;
            let mut sum = 0.0;
            for (r, wq) in readers.iter().zip(&packed) {
                sum += r.data.score(r.layer, (wq, r.ws), (&r.data.inputs(s), s))?;
            }
            Ok(sum / readers.len() as f64)
        })
        .collect::<Result<_>>()?;
    *sa *= factors[pick(rule, &scores)];
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Conv, NetBuilder};
    use crate::model::{Model, QuantKind};

    #[test]
    fn candidates_follow_each_rule() {
        assert_eq!(
            candidates(Rule::Paper, 0.5, 2.0, 4),
            [1.0, 0.5, 1.0, 1.5, 2.0]
        );
        // ncnn: 0.5 + 0.015 k, k < 100: the upper end and the initial scale are not in it.
        let n = candidates(Rule::Ncnn, 0.5, 2.0, 100);
        assert_eq!(n.len(), 101);
        assert_eq!((n[1], n[100]), (0.5, 0.5 + 1.5 * 99.0 / 100.0));
        assert!(!n[1..].contains(&1.0));
    }

    #[test]
    fn pick_rules() {
        // Paper: the first maximum, the initial scale included.
        assert_eq!(pick(Rule::Paper, &[0.7, 0.5, 0.7]), 0);
        assert_eq!(pick(Rule::Paper, &[0.5, 0.7, 0.7]), 1);
        // ncnn: the initial scale is not a candidate; nothing positive keeps it.
        assert_eq!(pick(Rule::Ncnn, &[0.9, 0.5, 0.7]), 2);
        assert_eq!(pick(Rule::Ncnn, &[0.9, -0.5, 0.0]), 0);
    }

    /// `clamp(round_half_away(x·s), ±q) / s` in f64.
    fn fq(x: f32, s: f32, q: i32) -> f64 {
        if s == 0.0 {
            0.0
        } else {
            eq_runtime::quant::quantize(x, s, q) as f64 / s as f64
        }
    }

    /// The quantized layer on a whole (c, h, w) input, by definition: direct convolution
    /// (or dot product) of fake-quantized weights and inputs, bias, activation.
    fn naive_output(
        l: &QuantLayer,
        params: Option<&ConvParams>,
        shape: Shape,
        x: &[f32],
        ws: &[f32],
        sa: f32,
        q: i32,
    ) -> Vec<f64> {
        let n = l.channel_len();
        let w = |i: usize| fq(l.weights[i], ws[i / n], q);
        let bias = |o: usize| l.bias.as_ref().map_or(0.0, |b| b[o] as f64);
        let act = |v: f64| l.activation.apply(v as f32) as f64;
        let Some(p) = params else {
            return (0..l.num_output)
                .map(|o| {
                    let k = x.len();
                    act(bias(o) + (0..k).map(|i| w(o * k + i) * fq(x[i], sa, q)).sum::<f64>())
                })
                .collect();
        };
        let r = p.resolve(shape.w, shape.h).unwrap();
        let groups = if l.kind == QuantKind::ConvolutionDepthWise {
            l.channels
        } else {
            1
        };
        let (icg, ocg) = (shape.c / groups, l.num_output / groups);
        let mut out = Vec::new();
        for o in 0..l.num_output {
            let g = o / ocg;
            for oy in 0..r.out_h {
                for ox in 0..r.out_w {
                    let mut acc = bias(o);
                    for i in 0..icg {
                        for ky in 0..p.kernel_h {
                            for kx in 0..p.kernel_w {
                                let iy = (oy * p.stride_h + ky) as isize - r.pad_top as isize;
                                let ix = (ox * p.stride_w + kx) as isize - r.pad_left as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= shape.h as isize
                                    || ix >= shape.w as isize
                                {
                                    continue;
                                }
                                let v = x[((g * icg + i) * shape.h + iy as usize) * shape.w
                                    + ix as usize];
                                let wi = ((o * icg + i) * p.kernel_h + ky) * p.kernel_w + kx;
                                acc += w(wi) * fq(v, sa, q);
                            }
                        }
                    }
                    out.push(act(acc));
                }
            }
        }
        out
    }

    /// The objective the search optimises, computed from sampled columns by the runtime's
    /// int8 GEMM, equals the definition on whole outputs (every position is sampled here).
    #[test]
    fn layer_cosine_matches_the_definition() {
        let mut b = NetBuilder::new(11);
        let shape = Shape::d3(7, 6, 4);
        let x = b.input("data", shape);
        let s = b.split("sp", &x, 3);
        b.conv("conv", &s[0], Conv::new(5, 3).pad(1).stride(2).relu())
            .unwrap();
        b.depthwise("dw", &s[1], Conv::dw(3).pad(1)).unwrap();
        b.inner_product("fc", &s[2], 3);
        let m = b.finish();
        let model =
            Model::from_memory(m.param.to_text().unwrap().as_bytes(), &m.bin.bytes).unwrap();
        let mut rng = eq_runtime::rng::Rng::new(5);
        let images: Vec<Vec<f32>> = (0..3).map(|_| rng.vec(shape.len(), -2.0, 2.0)).collect();
        let xs: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
        for precision in [Precision::Int8, Precision::Int7] {
            let q = precision.qmax();
            for l in &model.layers {
                let rec = &model.param.layers[l.index];
                let params = (l.kind != QuantKind::InnerProduct)
                    .then(|| ConvParams::from_params(&rec.params).unwrap());
                let out_len = naive_output(
                    l,
                    params.as_ref(),
                    shape,
                    xs[0],
                    &vec![1.0; l.channels],
                    1.0,
                    q,
                )
                .len();
                let out_shape = match &params {
                    Some(p) => {
                        let r = p.resolve(shape.w, shape.h).unwrap();
                        Shape::d3(r.out_w, r.out_h, l.num_output)
                    }
                    None => Shape::d1(l.num_output),
                };
                assert_eq!(out_shape.len(), out_len);
                let targets: Vec<Vec<f32>> = (0..3).map(|_| rng.vec(out_len, -1.0, 3.0)).collect();
                let ts: Vec<&[f32]> = targets.iter().map(Vec::as_slice).collect();
                let d = LayerData::sample(
                    l,
                    params.as_ref(),
                    (shape, &xs),
                    (out_shape, &ts),
                    precision,
                    usize::MAX,
                )
                .unwrap();
                let ws: Vec<f32> = (0..l.channels).map(|_| rng.uniform(10.0, 60.0)).collect();
                let sa = rng.uniform(10.0, 40.0);
                let want: f64 = (0..3)
                    .map(|i| {
                        let y = naive_output(l, params.as_ref(), shape, xs[i], &ws, sa, q);
                        let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
                        for (&a, &t) in y.iter().zip(ts[i]) {
                            ab += a * t as f64;
                            aa += a * a;
                            bb += t as f64 * t as f64;
                        }
                        cosine_of(ab, aa, bb)
                    })
                    .sum::<f64>()
                    / 3.0;
                let got = d.cosine(l, &ws, sa).unwrap();
                assert!(
                    (got - want).abs() < 1e-5,
                    "{} {precision:?}: {got} vs {want}",
                    l.name
                );
            }
        }
    }
    /// The shared scale maximises the readers' mean cosine over the candidates, which is not
    /// what any one reader alone would choose here.
    #[test]
    fn shared_activation_scale_maximises_the_mean_over_readers() {
        let mut b = NetBuilder::new(12);
        let shape = Shape::d3(6, 5, 3);
        let x = b.input("data", shape);
        let s = b.split("sp", &x, 2);
        b.conv("a", &s[0], Conv::new(4, 1)).unwrap();
        b.conv("b", &s[1], Conv::new(4, 3).pad(1).relu()).unwrap();
        let m = b.finish();
        let model =
            Model::from_memory(m.param.to_text().unwrap().as_bytes(), &m.bin.bytes).unwrap();
        let mut rng = eq_runtime::rng::Rng::new(8);
        let images: Vec<Vec<f32>> = (0..2).map(|_| rng.vec(shape.len(), -3.0, 3.0)).collect();
        let xs: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
        let out = Shape::d3(6, 5, 4);
        // Different targets per reader pull the scale different ways.
        let targets: Vec<Vec<Vec<f32>>> = (0..2)
            .map(|r| {
                (0..2)
                    .map(|_| rng.vec(out.len(), -1.0, 1.0 + 3.0 * r as f32))
                    .collect()
            })
            .collect();
        let data: Vec<LayerData> = model
            .layers
            .iter()
            .zip(&targets)
            .map(|(l, t)| {
                let p = ConvParams::from_params(&model.param.layers[l.index].params).unwrap();
                let ts: Vec<&[f32]> = t.iter().map(Vec::as_slice).collect();
                LayerData::sample(
                    l,
                    Some(&p),
                    (shape, &xs),
                    (out, &ts),
                    Precision::Int7,
                    POSITIONS,
                )
                .unwrap()
            })
            .collect();
        let ws: Vec<Vec<f32>> = model
            .layers
            .iter()
            .map(|l| vec![20.0; l.channels])
            .collect();
        let factors = candidates(Rule::Paper, 0.2, 4.0, 40);
        let sa0 = 8.0;
        let readers: Vec<Reader> = (0..2)
            .map(|r| Reader {
                data: &data[r],
                layer: &model.layers[r],
                ws: &ws[r],
            })
            .collect();
        let best = |rs: &[Reader]| {
            let scores: Vec<f64> = factors
                .iter()
                .map(|&f| {
                    rs.iter()
                        .map(|r| r.data.cosine(r.layer, r.ws, sa0 * f).unwrap())
                        .sum::<f64>()
                        / rs.len() as f64
                })
                .collect();
            sa0 * factors[pick(Rule::Paper, &scores)]
        };
        let mut sa = sa0;
        search_shared_activation(&readers, &mut sa, &factors, Rule::Paper).unwrap();
        assert_eq!(sa, best(&readers));
        let alone: Vec<f32> = (0..2).map(|r| best(&readers[r..r + 1])).collect();
        assert!(
            alone[0] != alone[1],
            "the test needs readers that disagree: {alone:?}"
        );
        let mut first_only = sa0;
        search_shared_activation(&readers[..1], &mut first_only, &factors, Rule::Paper).unwrap();
        assert_eq!(first_only, alone[0]);
    }
}
