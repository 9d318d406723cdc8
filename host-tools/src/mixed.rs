//! Automatic mixed precision (`eq easyquant --mixed auto`): the precision of every
//! quantizable layer (INT7, INT8 or FP32) chosen to keep the network's output within an
//! accuracy budget at the least estimated latency.
//!
//! Everything is scored on held-out calibration images (never validation images). The
//! budget is, for a classifier ([`is_classifier`]: logits before a final Softmax or out of
//! an InnerProduct), the top-1 accuracy kept as FP32's own probabilities expect it
//! ([`expected_top1_kept`], default [`CLASSIFIER_BUDGET`]); for a detector the
//! pseudo-label mAP (below); otherwise the mean cosine between the quantized and the FP32
//! network's output (the output blobs, or the raw maps a detection head reads).
//!
//! Layers that read one blob (directly or through a Split) form one group: they share the
//! blob's requantized int8 copy, hence one scale and one precision. Classifiers and
//! detectors use the ranked prefix search below ([`prefix_search`]; classifiers rank on the
//! logits' cosine, each group alone, on [`CLASSIFIER_RANK_IMAGES`] images). The cosine
//! search of other models:
//! 1. everything at the base precision (`--bits`), `--keep-fp32` layers in FP32;
//! 2. while the output cosine is below the budget: measure for every group the cosine with
//!    that group alone one step up (INT7 → INT8, or INT8 → FP32), rank the groups by that
//!    gain per estimated millisecond added, and promote them in that order, re-measuring
//!    after each, until the budget holds (a whole round short of it starts the next step).
//!
//! Detectors (a model whose output comes from a detection layer: DetectionOutput,
//! Yolov3DetectionOutput, ...) are scored on what decides their detections instead of a
//! cosine: the pseudo-label mAP@0.5 (all-point, as a fraction) of the quantized model's
//! detections (detection layer run at confidence [`DETECTION_CONF`]) against the FP32
//! model's own detections with score >= [`PSEUDO_SCORE`] on the same held-out images; the
//! default budget is then [`DETECTION_BUDGET`]. The raw maps' cosine stays near 0.99 at
//! INT7 while a few objectness logits moving decide which boxes survive.
//!
//! Their search does not re-rank after each promotion (one promotion from INT7 moves the
//! mAP by less than its noise, and each scoring runs the whole model on every image): each
//! group's loss alone at each level below FP32, the rest FP32, is measured once (by the AP of
//! all classes pooled in one ranking, finer grained than the mean over classes, on the first
//! [`RANK_IMAGES`] images), the steps up are ranked by score regained per estimated ms
//! ([`ranked_steps`]), and the shortest ranked prefix meeting the budget is bisected
//! ([`shortest_prefix`]) on all held-out images.
//!
//! An INT8 layer in a 7-bit run keeps the 7-bit clipping thresholds: its scales are the
//! table's times 127/63.

use crate::detection::{Detection, Truth};
use crate::eval::argmax;
use crate::model::{Model, QuantLayer};
use crate::quantize::{quantize_model, Options};
use crate::report::cosine;
use crate::table::ScaleTable;
use anyhow::{bail, Result};
use eq_runtime::quant::Precision;
use eq_runtime::{Net, PrecisionChoice, Shape};
use std::collections::HashMap;

/// What the budget is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Score {
    /// Top-1 kept for a classifier, pseudo-label mAP for a detector, else the output cosine.
    Auto,
    /// The mean output cosine for any model (the rounds of the module doc).
    Cosine,
}

/// A layer's precision: INT7, INT8 or FP32 (None).
pub type Level = Option<Precision>;

pub fn level_name(l: Level) -> &'static str {
    match l {
        Some(Precision::Int7) => "INT7",
        Some(Precision::Int8) => "INT8",
        None => "FP32",
    }
}

/// One step up in precision (None at FP32).
fn promote(l: Level) -> Option<Level> {
    match l {
        Some(Precision::Int7) => Some(Some(Precision::Int8)),
        Some(Precision::Int8) => Some(None),
        None => None,
    }
}

/// Estimated ms of a layer at a precision.
pub type CostFn<'a> = &'a dyn Fn(&QuantLayer, Level) -> f64;

pub struct Request<'a> {
    pub model: &'a Model,
    /// Scales tuned at `base`.
    pub table: &'a ScaleTable,
    pub base: Precision,
    pub keep_fp32: &'a [String],
    /// Held-out calibration inputs and the input blob they go to.
    pub inputs: &'a [Vec<f32>],
    pub input: &'a str,
    pub input_shape: Shape,
    /// Minimum score (see the module doc); None: a classifier's [`CLASSIFIER_BUDGET`], a
    /// detector's [`DETECTION_BUDGET`], else `1 - 2 (1 - c8)`, where c8 is the output cosine
    /// with every layer in INT8 (on the same clipping thresholds): at most twice INT8's error.
    pub budget: Option<f64>,
    pub score: Score,
    /// Estimated ms of a layer at a precision (the latency the search minimises); None: the
    /// per-layer medians measured on this machine.
    pub cost: Option<CostFn<'a>>,
    pub threads: usize,
}

/// What the search chose for one layer, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub name: String,
    pub level: Level,
    pub why: String,
}

pub struct Outcome {
    /// Scales for the chosen precisions (INT8 layers rescaled in a 7-bit run).
    pub table: ScaleTable,
    pub keep_fp32: Vec<String>,
    pub overrides: HashMap<String, Precision>,
    pub decisions: Vec<Decision>,
    /// What the budget and the scores are on ("expected top-1 kept", "pseudo-label mAP",
    /// "output cosine").
    pub score: &'static str,
    /// The score with everything at the base precision, and as chosen.
    pub base_cosine: f64,
    pub cosine: f64,
    pub budget: f64,
    /// Per layer: estimated ms at INT7, INT8 and FP32.
    pub costs: HashMap<String, [f64; 3]>,
}

fn level_index(l: Level) -> usize {
    match l {
        Some(Precision::Int7) => 0,
        Some(Precision::Int8) => 1,
        None => 2,
    }
}

/// Confidence threshold the detection layers run at while scoring (darknet's `map`).
pub const DETECTION_CONF: f32 = 0.005;
/// FP32 detections at or above this score are the pseudo ground truth.
pub const PSEUDO_SCORE: f32 = 0.5;
/// Default budget of a detector: pseudo-label mAP@0.5 of 0.95 (issue 13's target).
pub const DETECTION_BUDGET: f64 = 0.95;

/// Runs of each variant timed for the measured costs (median per layer).
const TIMED_RUNS: usize = 7;

struct Search<'a> {
    req: &'a Request<'a>,
    /// Per quantizable layer (model order): its group.
    group_of: Vec<usize>,
    groups: usize,
    /// Blobs compared, and the FP32 network's values of them per input.
    compared: Vec<String>,
    reference: Vec<Vec<Vec<f32>>>,
    scoring: Scoring,
}

/// What a precision choice is scored by, with what the score needs from the FP32 network.
enum Scoring {
    /// The mean cosine of the compared blobs against FP32's.
    Cosine,
    /// A classifier ([`is_classifier`]): the expected top-1 kept, from the FP32 network's
    /// class probabilities (softmax of the logits) per input and blob.
    Classifier { probs: Vec<Vec<Vec<f32>>> },
    /// A detector: the pseudo-label mAP against the FP32 model's detections with score >=
    /// PSEUDO_SCORE per input, read from the detection layer's output `blob`.
    Detector {
        blob: String,
        truths: Vec<Vec<Truth>>,
    },
}

impl Scoring {
    fn name(&self) -> &'static str {
        match self {
            Scoring::Cosine => "output cosine",
            Scoring::Classifier { .. } => "expected top-1 kept",
            Scoring::Detector { .. } => "pseudo-label mAP",
        }
    }

    /// The budget when none is given; the cosine's depends on the model ([`choose`]).
    fn default_budget(&self) -> Option<f64> {
        match self {
            Scoring::Cosine => None,
            Scoring::Classifier { .. } => Some(CLASSIFIER_BUDGET),
            Scoring::Detector { .. } => Some(DETECTION_BUDGET),
        }
    }
}

/// Held-out images the classifier's prefix is accepted on need not all be used to rank:
/// its per-group sensitivities (the logits' cosine) are measured on the first ones.
pub const CLASSIFIER_RANK_IMAGES: usize = 100;

/// Default budget of a classifier: at most 0.1 point of top-1 lost as FP32's probabilities
/// expect it ([`expected_top1_kept`]). That estimate undershoots: on the 1000 labelled
/// calibration images SqueezeNet 1.1's INT7-EQ lost 1.4 points of top-1 where it expects
/// 0.5 (INT8-EQ 0.3 and 0.28), so 0.1 expected stands for the 0.3 measured.
pub const CLASSIFIER_BUDGET: f64 = 0.999;

/// Whether the model is scored as a classifier (expected top-1 kept): every compared
/// blob is the input of a final Softmax or the output of an InnerProduct (logits). Other
/// outputs (an embedding after BatchNorm, feature maps) keep the cosine budget.
pub fn is_classifier(model: &Model) -> bool {
    let layers = &model.param.layers;
    let blobs = compared_blobs(model);
    !blobs.is_empty()
        && detection_blob(model).is_none()
        && blobs.iter().all(|b| {
            layers.iter().any(|l| {
                (l.kind == "Softmax" && l.bottoms.iter().any(|x| x == b))
                    || (l.kind == "InnerProduct" && l.tops.iter().any(|t| t == b))
            })
        })
}

/// What [`choose`] scores a model by: under `Score::Auto` a detector by its pseudo-label
/// mAP and a classifier ([`is_classifier`]) by the expected top-1 kept, both with the
/// ranked prefix search, which wants more held-out images than the cosine rounds; else the
/// output cosine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScoreKind {
    Cosine,
    Classifier,
    /// The detection layer's output blob.
    Detector(String),
}

impl ScoreKind {
    pub fn of(model: &Model, score: Score) -> ScoreKind {
        if score != Score::Auto {
            return ScoreKind::Cosine;
        }
        match detection_blob(model) {
            Some(blob) => ScoreKind::Detector(blob),
            None if is_classifier(model) => ScoreKind::Classifier,
            None => ScoreKind::Cosine,
        }
    }

    /// Whether the search ranks groups and accepts the shortest prefix meeting the budget.
    pub fn ranked(&self) -> bool {
        *self != ScoreKind::Cosine
    }
}

/// Softmax of logits.
fn softmax(v: &[f32]) -> Vec<f32> {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = v.iter().map(|&x| ((x - m) as f64).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|&x| (x / sum) as f32).collect()
}

/// The top-1 accuracy kept as FP32's own probabilities expect it: 1 minus the mean over
/// (input, blob) of `p[FP32's top-1] - p[got's top-1]`, `p` being FP32's class probabilities
/// and `got` the quantized network's logits. A changed top-1 costs what FP32 believed of its
/// own answer and gains what it believed of the new one: an image FP32 is unsure of costs
/// little, a confident one nearly a whole image. Lower variance than counting flips on a
/// few hundred images.
pub fn expected_top1_kept(probs: &[Vec<Vec<f32>>], got: &[Vec<Vec<f32>>]) -> f64 {
    let (mut lost, mut n) = (0.0f64, 0usize);
    for (g, r) in got.iter().zip(probs) {
        for (a, p) in g.iter().zip(r) {
            lost += (p[argmax(p)] - p[argmax(a)]) as f64;
            n += 1;
        }
    }
    1.0 - lost / n.max(1) as f64
}

/// The output blob of the model's detection layer, when its output is one.
pub fn detection_blob(model: &Model) -> Option<String> {
    let layers = &model.param.layers;
    let read = |b: &str| layers.iter().any(|l| l.bottoms.iter().any(|x| x == b));
    layers
        .iter()
        .filter(|l| l.kind.ends_with("DetectionOutput") && l.tops.len() == 1)
        .find(|l| !read(&l.tops[0]))
        .map(|l| l.tops[0].clone())
}

/// Pseudo-label mAP@0.5 (all-point, as a fraction) of `found` against `truths`.
pub fn pseudo_map(found: &[Vec<Detection>], truths: &[Vec<Truth>]) -> f64 {
    crate::detection::summarize(found, truths).map_all_point / 100.0
}

/// `param` with its detection layers at the scoring threshold.
fn low_threshold(param: &[u8]) -> Result<Vec<u8>> {
    Ok(
        match crate::detection::with_confidence_threshold(param, "<mixed>", DETECTION_CONF)? {
            Some(t) => t.into_bytes(),
            None => param.to_vec(),
        },
    )
}

/// The blobs the budget compares: for each output, the input of a final Softmax (the
/// logits), the inputs of a detection head (its raw maps: a cosine of detection rows means
/// nothing), else the output itself.
fn compared_blobs(model: &Model) -> Vec<String> {
    let layers = &model.param.layers;
    let read = |b: &str| layers.iter().any(|l| l.bottoms.iter().any(|x| x == b));
    let mut out = Vec::new();
    for l in layers {
        for t in l.tops.iter().filter(|t| !read(t)) {
            if l.kind == "Softmax" && l.bottoms.len() == 1 {
                out.push(l.bottoms[0].clone());
            } else if l.kind.ends_with("DetectionOutput") {
                out.extend(l.bottoms.iter().cloned());
            } else {
                out.push(t.clone());
            }
        }
    }
    out.dedup();
    out
}

impl Search<'_> {
    fn net(&self, param: &[u8], bin: &[u8], precision: PrecisionChoice) -> Result<Net> {
        let param = low_threshold(param)?;
        let param = &param[..];
        let opts = eq_runtime::Options {
            threads: self.req.threads,
            input_shapes: vec![(self.req.input.to_string(), self.req.input_shape)],
            keep_all_blobs: true,
            precision,
            ..eq_runtime::Options::default()
        };
        Ok(Net::from_memory(param, bin, &opts)?)
    }

    fn outputs(&self, net: &mut Net) -> Result<Vec<Vec<Vec<f32>>>> {
        self.outputs_n(net, self.req.inputs.len())
    }

    /// The compared blobs' values per input, on the first `images` inputs.
    fn outputs_n(&self, net: &mut Net, images: usize) -> Result<Vec<Vec<Vec<f32>>>> {
        let mut all = Vec::with_capacity(images);
        for x in &self.req.inputs[..images] {
            net.set_input(self.req.input, x)?;
            net.run()?;
            all.push(
                self.compared
                    .iter()
                    .map(|b| Ok(net.blob_f32(b)?.1))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        Ok(all)
    }

    /// The model files, table and per-layer options for `levels` (one per group).
    fn materialize(
        &self,
        levels: &[Level],
    ) -> (ScaleTable, Vec<String>, HashMap<String, Precision>) {
        let req = self.req;
        let mut table = req.table.clone();
        let mut keep = Vec::new();
        let mut overrides = HashMap::new();
        let widen = Precision::Int8.qmax() as f32 / req.base.qmax() as f32;
        for (l, &g) in req.model.layers.iter().zip(&self.group_of) {
            match levels[g] {
                None => keep.push(l.name.clone()),
                Some(p) if p == req.base => {}
                Some(p) => {
                    overrides.insert(l.name.clone(), p);
                    if let (Some(w), Some(a)) = (table.weight(&l.name), table.activation(&l.name)) {
                        let w: Vec<f32> = w.iter().map(|s| s * widen).collect();
                        table.set_weight(&l.name, w);
                        table.set_activation(&l.name, a * widen);
                    }
                }
            }
        }
        (table, keep, overrides)
    }

    /// The model quantized at `levels`, loaded.
    fn quantized_net(&self, levels: &[Level]) -> Result<Net> {
        let (table, keep, overrides) = self.materialize(levels);
        let (param, bin, _) = quantize_model(
            self.req.model,
            &table,
            &Options {
                precision: self.req.base,
                keep_fp32: &keep,
                overrides: &overrides,
            },
        )?;
        self.net(param.as_bytes(), &bin, PrecisionChoice::Auto)
    }

    /// The detections of `net` per input (the first `images` inputs).
    fn detections(&self, net: &mut Net, blob: &str, images: usize) -> Result<Vec<Vec<Detection>>> {
        let mut all = Vec::with_capacity(images);
        for x in &self.req.inputs[..images.min(self.req.inputs.len())] {
            net.set_input(self.req.input, x)?;
            net.run()?;
            let t = net.blob(blob)?;
            all.push(crate::detection::parse_rows(t.data, t.shape.w)?);
        }
        Ok(all)
    }

    /// The score of the model quantized at `levels` on all inputs ([`Scoring`]).
    fn score(&self, levels: &[Level]) -> Result<f64> {
        match &self.scoring {
            Scoring::Cosine => self.mean_cosine(levels, self.req.inputs.len()),
            Scoring::Classifier { probs } => {
                let mut net = self.quantized_net(levels)?;
                Ok(expected_top1_kept(probs, &self.outputs(&mut net)?))
            }
            Scoring::Detector { .. } => self.detection_score(levels, self.req.inputs.len(), false),
        }
    }

    /// Mean cosine of the compared blobs against FP32's on the first `images` inputs.
    fn mean_cosine(&self, levels: &[Level], images: usize) -> Result<f64> {
        let mut net = self.quantized_net(levels)?;
        let got = self.outputs_n(&mut net, images)?;
        let (mut sum, mut n) = (0.0, 0usize);
        for (g, r) in got.iter().zip(&self.reference) {
            for (a, b) in g.iter().zip(r) {
                sum += cosine(a, b);
                n += 1;
            }
        }
        Ok(sum / n.max(1) as f64)
    }

    /// A detector's pseudo-label mAP at `levels` on the first `images` inputs, or with
    /// `pooled` the AP of all classes pooled in one ranking (finer grained, for ranking).
    fn detection_score(&self, levels: &[Level], images: usize, pooled: bool) -> Result<f64> {
        let Scoring::Detector { blob, truths } = &self.scoring else {
            bail!("internal: a detection score of a model scored otherwise");
        };
        let mut net = self.quantized_net(levels)?;
        let found = self.detections(&mut net, blob, images)?;
        let truths = &truths[..found.len()];
        Ok(if pooled {
            crate::detection::pooled_average_precision(&found, truths, 0.5)
        } else {
            pseudo_map(&found, truths)
        })
    }

    /// Per quantizable layer: median ms at INT7, INT8 and FP32 on this machine.
    fn measure_costs(&self, fp32: &mut Net) -> Result<HashMap<String, [f64; 3]>> {
        let model = self.req.model;
        let mut costs: HashMap<String, [f64; 3]> = HashMap::new();
        for level in [Some(Precision::Int7), Some(Precision::Int8), None] {
            let mut quantized;
            let net = match level {
                None => &mut *fp32,
                Some(p) => {
                    quantized = self.quantized_net(&vec![Some(p); self.groups])?;
                    &mut quantized
                }
            };
            let times = layer_times(net, self.req.input, &self.req.inputs[0])?;
            let index: HashMap<&str, usize> = net
                .graph()
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| (l.name.as_str(), i))
                .collect();
            for l in &model.layers {
                let t = index.get(l.name.as_str()).map_or(0.0, |&i| times[i]);
                costs.entry(l.name.clone()).or_default()[level_index(level)] = t;
            }
        }
        Ok(costs)
    }
}

/// Median time of each layer (by graph index) over `TIMED_RUNS` runs after one warm-up, ms.
pub fn layer_times(net: &mut Net, input: &str, x: &[f32]) -> Result<Vec<f64>> {
    net.set_input(input, x)?;
    net.run()?;
    let n = net.graph().layers.len();
    let mut samples = vec![Vec::with_capacity(TIMED_RUNS); n];
    let mut times = vec![std::time::Duration::ZERO; n];
    for _ in 0..TIMED_RUNS {
        times
            .iter_mut()
            .for_each(|t| *t = std::time::Duration::ZERO);
        net.run_timed(&mut times)?;
        for (s, t) in samples.iter_mut().zip(&times) {
            s.push(t.as_secs_f64() * 1e3);
        }
    }
    Ok(samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect())
}

/// Chooses the precision of every quantizable layer.
pub fn choose(req: &Request) -> Result<Outcome> {
    if req.inputs.is_empty() {
        bail!("mixed precision needs held-out calibration images");
    }
    if let Some(b) = req.budget {
        if !(b > -1.0 && b <= 1.0) {
            bail!("--budget {b}: expected an output cosine in (-1, 1]");
        }
    }
    let model = req.model;
    let sources: Vec<String> = model.layers.iter().map(|l| model.input_source(l)).collect();
    let mut group_of = Vec::with_capacity(sources.len());
    let mut firsts: Vec<&str> = Vec::new();
    for s in &sources {
        let g = match firsts.iter().position(|f| f == s) {
            Some(g) => g,
            None => {
                firsts.push(s);
                firsts.len() - 1
            }
        };
        group_of.push(g);
    }
    let mut search = Search {
        req,
        group_of,
        groups: firsts.len(),
        compared: compared_blobs(model),
        reference: Vec::new(),
        scoring: Scoring::Cosine,
    };
    let mut fp32 = search.net(&model_param(model)?, &model.bin, PrecisionChoice::Fp32)?;
    search.reference = search.outputs(&mut fp32)?;
    search.scoring = match ScoreKind::of(model, req.score) {
        ScoreKind::Cosine => Scoring::Cosine,
        ScoreKind::Classifier => Scoring::Classifier {
            probs: search
                .reference
                .iter()
                .map(|blobs| blobs.iter().map(|v| softmax(v)).collect())
                .collect(),
        },
        ScoreKind::Detector(blob) => {
            let truths = search
                .detections(&mut fp32, &blob, req.inputs.len())?
                .into_iter()
                .map(|ds| {
                    ds.into_iter()
                        .filter(|d| d.score >= PSEUDO_SCORE)
                        .map(|d| Truth {
                            label: d.label,
                            bbox: d.bbox,
                            difficult: false,
                        })
                        .collect()
                })
                .collect();
            Scoring::Detector { blob, truths }
        }
    };
    let costs = match req.cost {
        Some(f) => model
            .layers
            .iter()
            .map(|l| {
                let c = [Some(Precision::Int7), Some(Precision::Int8), None].map(|v| f(l, v));
                (l.name.clone(), c)
            })
            .collect(),
        None => search.measure_costs(&mut fp32)?,
    };
    drop(fp32);
    let group_cost = |g: usize, level: Level| -> f64 {
        model
            .layers
            .iter()
            .zip(&search.group_of)
            .filter(|(_, &gi)| gi == g)
            .map(|(l, _)| costs[&l.name][level_index(level)])
            .sum()
    };

    // Start: the base precision, --keep-fp32 groups (any member named) in FP32, and layers
    // without scales in FP32 (they stay so whatever the level says).
    let mut levels: Vec<Level> = vec![Some(req.base); search.groups];
    let mut why: Vec<String> = vec![String::new(); search.groups];
    for (l, &g) in model.layers.iter().zip(&search.group_of) {
        if req.keep_fp32.contains(&l.name) {
            levels[g] = None;
            why[g] = "--keep-fp32 (with the layers that share its input)".into();
        }
    }
    let base_cosine = search.score(&levels)?;
    let budget = match req.budget.or(search.scoring.default_budget()) {
        Some(b) => b,
        None => {
            let c8 = search.score(&vec![Some(Precision::Int8); search.groups])?;
            1.0 - 2.0 * (1.0 - c8)
        }
    };
    let mut current = base_cosine;
    let score = search.scoring.name();
    let prefix = !matches!(search.scoring, Scoring::Cosine);
    if prefix && current < budget {
        current = prefix_search(&search, &mut levels, &mut why, budget, &group_cost)?;
    }
    // Rounds: rank every group that can go one step up by its gain per estimated ms alone
    // (one measurement each), then promote in that order, re-measuring after each, until
    // the budget holds. A round that ends below the budget starts the next step up.
    while !prefix && current < budget {
        let mut ranked = Vec::new();
        for g in 0..search.groups {
            let Some(up) = promote(levels[g]) else {
                continue;
            };
            let mut trial = levels.clone();
            trial[g] = up;
            let gain = search.score(&trial)? - current;
            let extra = (group_cost(g, up) - group_cost(g, levels[g])).max(1e-6);
            ranked.push((gain / extra, g, up));
        }
        if ranked.is_empty() {
            break; // everything is FP32
        }
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, g, up) in ranked {
            let mut trial = levels.clone();
            trial[g] = up;
            let c = search.score(&trial)?;
            why[g] = format!(
                "promoted to {}: output cosine {current:.5} -> {c:.5} (ranked by gain per estimated ms)",
                level_name(up)
            );
            levels[g] = up;
            current = c;
            if current >= budget {
                break;
            }
        }
    }
    let (table, keep_fp32, overrides) = search.materialize(&levels);
    let decisions = model
        .layers
        .iter()
        .zip(&search.group_of)
        .map(|(l, &g)| Decision {
            name: l.name.clone(),
            level: levels[g],
            why: if why[g].is_empty() {
                format!(
                    "{}: the {score} met the budget {:.4} without promoting it",
                    level_name(levels[g]),
                    budget
                )
            } else {
                why[g].clone()
            },
        })
        .collect();
    Ok(Outcome {
        table,
        keep_fp32,
        overrides,
        decisions,
        score,
        base_cosine,
        cosine: current,
        budget,
        costs,
    })
}

/// Held-out images a detector's per-group sensitivities are measured on (the first ones of
/// the held-out set, scored by the pooled AP); the prefix search scores on all of them.
pub const RANK_IMAGES: usize = 100;

/// One step up in precision of one group, in the detector search's ranked list.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub group: usize,
    pub to: Level,
    /// Score regained per estimated ms added (infinite when it adds no time).
    pub ratio: f64,
    /// Score regained.
    pub gain: f64,
}

/// The steps up from `from` (per group), ranked by score regained per estimated ms added,
/// best first; steps that add no time (on some cores FP32 is as fast as INT7 for a small or
/// depthwise layer) come first, by score regained. `loss[g]` is the score lost with group g
/// alone at INT7 / INT8 / FP32 (index [`level_index`]; FP32 is 0) and the rest FP32, `cost[g]`
/// its estimated ms at each. A group starting at INT7 gets the steps INT7 -> INT8 and
/// INT8 -> FP32, or one step INT7 -> FP32 when the second would regain at least as much per ms
/// as the first (the lower convex hull of its options), so a group's steps are always ranked
/// in order. Ties keep model order.
pub fn ranked_steps(from: &[Level], loss: &[[f64; 3]], cost: &[[f64; 3]]) -> Vec<Step> {
    let step = |g: usize, a: Level, to: Level| {
        let (i, j) = (level_index(a), level_index(to));
        let (gain, added) = (loss[g][i] - loss[g][j], cost[g][j] - cost[g][i]);
        let ratio = if added <= 0.0 {
            f64::INFINITY
        } else {
            gain / added
        };
        Step {
            group: g,
            to,
            ratio,
            gain,
        }
    };
    let mut steps = Vec::new();
    for (g, &l) in from.iter().enumerate() {
        match l {
            None => {}
            Some(Precision::Int8) => steps.push(step(g, l, None)),
            Some(Precision::Int7) => {
                let i8 = Some(Precision::Int8);
                let (first, second) = (step(g, l, i8), step(g, i8, None));
                if second.ratio >= first.ratio {
                    steps.push(step(g, l, None));
                } else {
                    steps.push(first);
                    steps.push(second);
                }
            }
        }
    }
    steps.sort_by(|a, b| b.ratio.total_cmp(&a.ratio).then(b.gain.total_cmp(&a.gain)));
    steps
}

/// `from` with the first `k` of `steps` taken (a step never lowers a group's precision).
pub fn apply_prefix(from: &[Level], steps: &[Step], k: usize) -> Vec<Level> {
    let mut levels = from.to_vec();
    for s in &steps[..k] {
        if level_index(s.to) > level_index(levels[s.group]) {
            levels[s.group] = s.to;
        }
    }
    levels
}

/// The shortest prefix length k of `n` ranked steps whose score meets `budget`, by bisection
/// (the score taken to rise with k; k = 0 is known to be below the budget), and its score.
/// `score(k)` is measured about log2(n) + 1 times; when even all n steps fall short, n.
pub fn shortest_prefix(
    n: usize,
    budget: f64,
    mut score: impl FnMut(usize) -> Result<f64>,
) -> Result<(usize, f64)> {
    let mut hi_score = score(n)?;
    if n == 0 || hi_score < budget {
        return Ok((n, hi_score));
    }
    let (mut lo, mut hi) = (0, n);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let s = score(mid)?;
        if s >= budget {
            hi = mid;
            hi_score = s;
        } else {
            lo = mid;
        }
    }
    Ok((hi, hi_score))
}

/// The ranked search of detectors and classifiers: the score each group loses alone at each
/// level below FP32 (the rest FP32, measured once on the first held-out images: a detector's
/// pooled AP on [`RANK_IMAGES`], a classifier's logits cosine on [`CLASSIFIER_RANK_IMAGES`],
/// finer grained than the scores the budget is on), the steps up ranked by score regained per
/// estimated ms, and the shortest ranked prefix that meets the budget on all held-out images,
/// found by bisection. Promoting groups one at a time from the base precision does not work
/// there: each moves the mAP or the top-1 agreement by less than its noise, and a round of
/// one-step promotions takes every layer to INT8 before any to FP32.
/// Returns the score of the chosen levels.
fn prefix_search(
    search: &Search,
    levels: &mut [Level],
    why: &mut [String],
    budget: f64,
    group_cost: &dyn Fn(usize, Level) -> f64,
) -> Result<f64> {
    let detector = matches!(search.scoring, Scoring::Detector { .. });
    let rank_images = if detector {
        RANK_IMAGES
    } else {
        CLASSIFIER_RANK_IMAGES
    }
    .min(search.req.inputs.len());
    let rank_score = |levels: &[Level]| {
        if detector {
            search.detection_score(levels, rank_images, true)
        } else {
            search.mean_cosine(levels, rank_images)
        }
    };
    let measure = if detector {
        "pooled AP"
    } else {
        "logits cosine"
    };
    let budget_score = search.scoring.name();
    let fp32 = vec![None; search.groups];
    let reference = rank_score(&fp32)?;
    let mut loss = vec![[0.0; 3]; search.groups];
    let mut cost = vec![[0.0; 3]; search.groups];
    let from = levels.to_vec();
    let start = std::time::Instant::now();
    for g in 0..search.groups {
        for l in [Some(Precision::Int7), Some(Precision::Int8), None] {
            cost[g][level_index(l)] = group_cost(g, l);
        }
        let mut l = from[g];
        while let Some(p) = l {
            let mut trial = fp32.clone();
            trial[g] = Some(p);
            loss[g][level_index(l)] = reference - rank_score(&trial)?;
            l = promote(l).flatten();
        }
    }
    let steps = ranked_steps(&from, &loss, &cost);
    eprintln!(
        "mixed precision: {} steps up ranked on {rank_images} held-out images ({:.0} s); \
         bisecting the ranked prefix on {}",
        steps.len(),
        start.elapsed().as_secs_f64(),
        search.req.inputs.len()
    );
    let (k, score) = shortest_prefix(steps.len(), budget, |k| {
        let s = search.score(&apply_prefix(&from, &steps, k))?;
        eprintln!(
            "mixed precision: first {k} of {} steps: {s:.4}",
            steps.len()
        );
        Ok(s)
    })?;
    levels.copy_from_slice(&apply_prefix(&from, &steps, k));
    for (i, st) in steps[..k].iter().enumerate() {
        let g = st.group;
        let lost = |l: Level| match l {
            Some(_) if from[g].is_some_and(|f| level_index(Some(f)) <= level_index(l)) => {
                format!("{:.4} at {}", loss[g][level_index(l)], level_name(l))
            }
            _ => String::new(),
        };
        let losses: Vec<String> = [Some(Precision::Int7), Some(Precision::Int8)]
            .into_iter()
            .map(lost)
            .filter(|s| !s.is_empty())
            .collect();
        why[g] = format!(
            "promoted to {}: step {} of {} ranked by {measure} regained per estimated ms \
             (alone, the rest FP32, its {measure} loses {}); the first {k} steps meet the \
             budget: {budget_score} {score:.5}",
            level_name(levels[g]),
            i + 1,
            steps.len(),
            losses.join(", ")
        );
    }
    Ok(score)
}

/// The model's param as text (for loading it from memory next to quantized variants).
fn model_param(model: &Model) -> Result<Vec<u8>> {
    let mut w = crate::ncnn_writer::ParamWriter::new();
    for rec in &model.param.layers {
        w.copy_layer(rec)?;
    }
    Ok(w.to_text()?.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_compares_logits_and_raw_detection_maps() {
        let param = "7767517\n6 7\nInput a 0 1 a 0=3 1=2 2=27\nInput b 0 1 b 0=6 1=4 2=27\n\
                     Yolov3DetectionOutput det 2 1 a b out 0=4 1=3 2=0.3 \
                     -23304=12,10.0,14.0,23.0,27.0,37.0,58.0,81.0,82.0,135.0,169.0,34.0,31.0 \
                     -23305=6,3.0,4.0,5.0,0.0,1.0,2.0 -23306=2,32.0,16.0\n\
                     Input x 0 1 x 0=5\nSoftmax sm 1 1 x prob\nInput y 0 1 y 0=3\n";
        let model = Model::from_memory(param.as_bytes(), &[]).unwrap();
        assert_eq!(compared_blobs(&model), ["a", "b", "x", "y"]);
    }

    #[test]
    fn classifiers_are_models_whose_outputs_are_logits() {
        let soft = "7767517\n3 3\nInput x 0 1 x 0=8\nInnerProduct fc 1 1 x l 0=4 1=0 2=32\n\
                    Softmax sm 1 1 l prob\n";
        let fc = "7767517\n2 2\nInput x 0 1 x 0=8\nInnerProduct fc 1 1 x l 0=4 1=0 2=32\n";
        let embed = "7767517\n3 3\nInput x 0 1 x 0=8\nInnerProduct fc 1 1 x l 0=4 1=0 2=32\n\
                     BatchNorm bn 1 1 l e 0=4\n";
        // Weight bytes: tag + 32 fc weights, and BatchNorm's 4 x 4 values.
        for (param, bytes, want) in [(soft, 132, true), (fc, 132, true), (embed, 196, false)] {
            let model = Model::from_memory(param.as_bytes(), &vec![0u8; bytes]).unwrap();
            assert_eq!(is_classifier(&model), want, "{param}");
        }
    }

    #[test]
    fn expected_top1_kept_charges_what_fp32_believed_of_a_changed_answer() {
        let p = |v: &[f32]| softmax(v);
        // FP32 sure of class 0 (p ~ 0.98) on one image, torn between 1 and 2 on the other.
        let probs = vec![vec![p(&[4.0, 0.0, 0.0])], vec![p(&[0.0, 1.0, 0.99])]];
        let same = vec![vec![vec![4.0, 0.0, 0.0]], vec![vec![0.0, 1.0, 0.99]]];
        assert_eq!(expected_top1_kept(&probs, &same), 1.0);
        // Flipping the unsure image costs p1 - p2 (tiny); flipping the sure one nearly 1.
        let unsure = vec![vec![vec![4.0, 0.0, 0.0]], vec![vec![0.0, 0.9, 1.0]]];
        let sure = vec![vec![vec![0.0, 4.0, 0.0]], vec![vec![0.0, 1.0, 0.99]]];
        let (u, s) = (
            1.0 - expected_top1_kept(&probs, &unsure),
            1.0 - expected_top1_kept(&probs, &sure),
        );
        let d = (probs[1][0][1] - probs[1][0][2]) as f64 / 2.0;
        assert!((u - d).abs() < 1e-7, "{u} vs {d}");
        let d = (probs[0][0][0] - probs[0][0][1]) as f64 / 2.0;
        assert!((s - d).abs() < 1e-7 && s > 0.45, "{s} vs {d}");
    }

    #[test]
    fn a_detector_is_scored_on_its_detection_layer_output() {
        let param = "7767517\n3 3\nInput a 0 1 a 0=3 1=2 2=27\nInput b 0 1 b 0=6 1=4 2=27\n\
                     Yolov3DetectionOutput det 2 1 a b out 0=4 1=3 2=0.3 \
                     -23304=12,10.0,14.0,23.0,27.0,37.0,58.0,81.0,82.0,135.0,169.0,34.0,31.0 \
                     -23305=6,3.0,4.0,5.0,0.0,1.0,2.0 -23306=2,32.0,16.0\n";
        let model = Model::from_memory(param.as_bytes(), &[]).unwrap();
        assert_eq!(detection_blob(&model).as_deref(), Some("out"));
        // The scoring threshold replaces the deployment one.
        let low = String::from_utf8(low_threshold(param.as_bytes()).unwrap()).unwrap();
        assert!(low.contains(" 2=5e-3"), "{low}");
        let plain = "7767517\n2 2\nInput x 0 1 x 0=5\nSoftmax sm 1 1 x prob\n";
        let model = Model::from_memory(plain.as_bytes(), &[]).unwrap();
        assert_eq!(detection_blob(&model), None);
        assert_eq!(low_threshold(plain.as_bytes()).unwrap(), plain.as_bytes());
    }

    #[test]
    fn pseudo_map_is_one_for_the_reference_and_drops_with_a_confident_false_box() {
        use crate::detection::BoxF;
        let b = |x: f32| BoxF {
            x1: x,
            y1: 0.0,
            x2: x + 10.0,
            y2: 10.0,
        };
        let truths = vec![vec![Truth {
            label: 1,
            bbox: b(0.0),
            difficult: false,
        }]];
        let hit = Detection {
            label: 1,
            score: 0.6,
            bbox: b(1.0),
        };
        assert_eq!(pseudo_map(&[vec![hit]], &truths), 1.0);
        let wrong = Detection {
            label: 1,
            score: 0.9,
            bbox: b(50.0),
        };
        let m = pseudo_map(&[vec![hit, wrong]], &truths);
        assert!(m < 1.0 && m > 0.0, "{m}");
        assert_eq!(pseudo_map(&[vec![]], &truths), 0.0);
    }

    const I7: Level = Some(Precision::Int7);
    const I8: Level = Some(Precision::Int8);

    #[test]
    fn steps_are_ranked_by_score_regained_per_ms_and_a_groups_steps_stay_in_order() {
        // Group 0: INT7 -> INT8 regains 0.04 for 1 ms, INT8 -> FP32 0.01 for 2 ms: two steps.
        // Group 1: INT8 -> FP32 would regain more per ms than INT7 -> INT8: one step to FP32.
        // Group 2: already FP32. Group 3: starts at INT8.
        let from = [I7, I7, None, I8];
        let loss = [
            [0.05, 0.01, 0.0],
            [0.031, 0.03, 0.0],
            [0.0; 3],
            [0.0, 0.02, 0.0],
        ];
        let cost = [[1.0, 2.0, 4.0], [1.0, 2.0, 3.0], [1.0; 3], [0.0, 1.0, 5.0]];
        let steps = ranked_steps(&from, &loss, &cost);
        let got: Vec<(usize, Level)> = steps.iter().map(|s| (s.group, s.to)).collect();
        // Ratios: 0.04, 0.031 / 2, 0.005 twice (group 3 regains more: first).
        assert_eq!(got, [(0, I8), (1, None), (3, None), (0, None)]);
        assert!((steps[1].ratio - 0.0155).abs() < 1e-12);
        assert_eq!(apply_prefix(&from, &steps, 0), from);
        assert_eq!(apply_prefix(&from, &steps, 2), [I8, None, None, I8]);
        assert_eq!(apply_prefix(&from, &steps, 3), [I8, None, None, None]);
        assert_eq!(apply_prefix(&from, &steps, 4), [None; 4]);
        // Steps that add no time come first (by score regained), whatever they regain. A
        // group whose FP32 is cheaper than its INT8 goes straight to FP32 (group 3: 0.02 for
        // 0.5 ms).
        let steps = ranked_steps(
            &[I8, I8, I8, I7],
            &[
                [0.0, 0.01, 0.0],
                [0.0, 0.001, 0.0],
                [0.0, 0.0, 0.0],
                [0.02, 0.01, 0.0],
            ],
            &[
                [0.0, 1.0, 2.0],
                [0.0, 1.0, 1.0],
                [0.0, 1.0, 0.5],
                [1.0, 2.0, 1.5],
            ],
        );
        let got: Vec<(usize, Level)> = steps.iter().map(|s| (s.group, s.to)).collect();
        assert_eq!(got, [(1, None), (2, None), (3, None), (0, None)]);
        assert_eq!(steps[0].ratio, f64::INFINITY);
        assert_eq!(steps[2].ratio, 0.04);
    }

    #[test]
    fn the_shortest_prefix_meeting_the_budget_is_bisected_in_log_steps() {
        for n in [1usize, 2, 3, 10, 97, 160] {
            for need in 1..=n {
                let mut calls = Vec::new();
                let score = |k: usize| {
                    calls.push(k);
                    Ok(if k >= need {
                        0.9 + k as f64 * 1e-4
                    } else {
                        0.5
                    })
                };
                let (k, s) = shortest_prefix(n, 0.9, score).unwrap();
                assert_eq!(k, need, "n {n}");
                assert_eq!(s, 0.9 + need as f64 * 1e-4);
                let most = (n as f64).log2().ceil() as usize + 1;
                assert!(calls.len() <= most, "n {n} need {need}: {calls:?}");
            }
        }
        // Out of reach: everything, with its score.
        assert_eq!(
            shortest_prefix(5, 0.99, |k| Ok(k as f64 / 10.0)).unwrap(),
            (5, 0.5)
        );
        assert_eq!(shortest_prefix(0, 0.5, |_| Ok(0.4)).unwrap(), (0, 0.4));
        // Not monotone: still a prefix meeting the budget right after one that does not.
        let noisy = [0.1, 0.95, 0.2, 0.3, 0.96, 0.97, 0.4, 0.99];
        let (k, s) = shortest_prefix(7, 0.9, |k| Ok(noisy[k])).unwrap();
        assert!(s >= 0.9 && noisy[k - 1] < 0.9, "{k}");
    }
}
