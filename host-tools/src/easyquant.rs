//! `eq easyquant`: the main job in one command. KL calibration, the EasyQuant scale search
//! (the paper's Algorithm 1 on images drawn from the calibration set), quantization, a
//! per-layer comparison against FP32 on held-out calibration images, per-layer timing on
//! this machine, per-layer latency estimates on the RK3399's cores (`cost_model`) and, when
//! validation data is given, accuracy of both models.
//!
//! Everything is written to a temporary folder next to `--out` and renamed into place at
//! the end, so a failure leaves nothing half-written: `model.param` / `model.bin` (loads in
//! stock ncnn), `model.table`, `report.md`, `cosine.svg` and `summary.json`.
//!
//! Without `--param` / `--bin` it runs on the built-in demo network and generated images.

use crate::args::PrepArgs;
use crate::calibrate::Method;
use crate::cost_model::{CostModel, CostTarget, LayerCost};
use crate::dataset::{self, Preprocess};
use crate::finetune::Variant;
use crate::model::Model;
use crate::report::Comparison;
use crate::runner::{NetSpec, RunOptions};
use anyhow::{anyhow, bail, Context, Result};
use eq_runtime::quant::Precision;
use eq_runtime::PrecisionChoice;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The equalized fp32 weights, in the work folder while the job runs.
const EQUALIZED_BIN: &str = "equalized-fp32.bin";

/// Held-out calibration images `--mixed auto` scores a detector or classifier on (at most).
const MIXED_RANKED_IMAGES: usize = 400;

/// Held-out calibration images the per-layer comparison runs on (at most).
const COMPARE_IMAGES: usize = 32;

/// Which layer pairs `eq easyquant` equalizes before calibrating (see `equalize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EqualizeMode {
    Off,
    /// Producers feeding a depthwise layer (free on the weight side).
    Depthwise,
    /// Also producers feeding a Convolution (split with its weight columns).
    All,
}

/// Validation data, when given.
#[derive(Clone, Debug)]
pub enum Validation {
    /// Labelled images (ncnn's `labels.txt` form, as `eq eval`).
    Labels { images: PathBuf, labels: PathBuf },
    /// LFW-style pairs (as `eq eval-lfw`).
    Lfw { pairs: PathBuf, root: PathBuf },
}

pub struct Request {
    /// The fp32 model; None: the built-in demo network.
    pub model: Option<(PathBuf, PathBuf)>,
    /// Calibration images (folder or list); None only with the demo network.
    pub images: Option<crate::args::ImageArgs>,
    pub prep: PrepArgs,
    pub bits: u32,
    pub out: PathBuf,
    pub validation: Option<Validation>,
    pub keep_fp32: Vec<String>,
    /// Equalize activation ranges across layer pairs first (`equalize`): depthwise
    /// consumers, and also convolution consumers with `EqualizeMode::All`.
    pub equalize: EqualizeMode,
    /// Automatic mixed precision, and its budget (None: the default, see `mixed`).
    pub mixed: bool,
    pub budget: Option<f64>,
    /// What the budget is on.
    pub score: crate::mixed::Score,
    /// The latency the mixed search minimises: measured on this machine, or estimated on an
    /// RK3399 core.
    pub cost: CostTarget,
    pub samples: usize,
    /// Output positions the finetune scores per image and layer (None: all).
    pub positions: Option<usize>,
    pub seed: u64,
    pub threads: usize,
    pub progress: bool,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LayerSummary {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// "INT8", "INT7" or "FP32".
    pub precision: String,
    /// Mean cosine of this layer's output, FP32 model vs quantized model (None: no such
    /// blob in the FP32 model).
    pub cosine: Option<f64>,
    /// Multiply-accumulates (0 for layers without weights).
    pub macs: u64,
    /// Why the layer runs in this precision.
    pub reason: String,
    /// Median time on this machine, quantized model and FP32 model, in ms.
    pub host_ms: f64,
    pub host_fp32_ms: f64,
    /// Estimated ms on the RK3399's Cortex-A53 and Cortex-A72 at this layer's precision
    /// (the kernel model, `targets/costs/rk3399.toml`); None for layers it does not cover
    /// (only Convolution, ConvolutionDepthWise and InnerProduct are modeled).
    pub a53_ms: Option<f64>,
    pub a72_ms: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Accuracy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top5: Option<f64>,
    /// LFW 10-fold accuracy, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    pub images: usize,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MixedSummary {
    /// What the numbers are on: "expected top-1 kept" (classifiers), "pseudo-label mAP"
    /// (detectors) or "output cosine".
    pub score: String,
    /// The score the search had to reach, where it started (everything at `bits`) and where
    /// it ended, on `images` held-out calibration images.
    pub budget: f64,
    pub base_cosine: f64,
    pub cosine: f64,
    pub images: usize,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub model: String,
    pub bits: u32,
    /// Share of the convolution MACs (Convolution, ConvolutionDepthWise) that run INT7.
    pub int7_mac_fraction: f64,
    pub layers: Vec<LayerSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fp32: Option<Accuracy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantized: Option<Accuracy>,
    pub calibration_images: usize,
    pub finetune_images: usize,
    pub compared_images: usize,
    /// Whether the compared images are calibration images the finetune did not use (false
    /// when it used them all).
    pub compared_held_out: bool,
    /// The automatic mixed precision search, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mixed: Option<MixedSummary>,
    /// Host latency of the whole model (sum of layer medians), ms.
    pub host_ms: f64,
    pub host_fp32_ms: f64,
    /// The latency `--mixed auto` minimised: "host", "a72" or "a53".
    pub cost: String,
    /// Estimated RK3399 latency of the modeled layers (Convolution, ConvolutionDepthWise,
    /// InnerProduct), quantized as chosen and all FP32, ms at one thread.
    pub a53_ms: f64,
    pub a53_fp32_ms: f64,
    pub a72_ms: f64,
    pub a72_fp32_ms: f64,
    /// Wall time of each step, seconds.
    pub seconds: Vec<(String, f64)>,
}

/// Runs the whole job; returns the summary (also written to `out/summary.json`).
pub fn run(req: &Request) -> Result<Summary> {
    if !(7..=8).contains(&req.bits) {
        bail!("--bits {}: expected 8 or 7", req.bits);
    }
    let out = &req.out;
    let name = out
        .file_name()
        .ok_or_else(|| anyhow!("--out {}: not a folder name", out.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("{}", parent.display()))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).with_context(|| format!("{}", tmp.display()))?;
    let result = run_in(req, &tmp);
    match result {
        Ok(summary) => {
            // Replace an earlier result only now that the new one is complete.
            let old = parent.join(format!(".{name}.old-{}", std::process::id()));
            if out.exists() {
                std::fs::rename(out, &old).with_context(|| format!("{}", out.display()))?;
            }
            std::fs::rename(&tmp, out).with_context(|| format!("{}", out.display()))?;
            let _ = std::fs::remove_dir_all(&old);
            Ok(summary)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// The demo network and 96 generated images (smooth colour fields with noise) in `dir`.
fn demo_inputs(dir: &Path) -> Result<(PathBuf, PathBuf, Vec<PathBuf>, Preprocess)> {
    let work = dir.join("demo-input");
    std::fs::create_dir_all(&work)?;
    let (param, bin) = crate::demo::build(crate::demo::SEED)?.save(&work, "demo")?;
    let (w, h) = (crate::demo::INPUT.w as u32, crate::demo::INPUT.h as u32);
    let mut rng = eq_runtime::rng::Rng::new(0xCA11B);
    let mut paths = Vec::new();
    for i in 0..96 {
        let c: Vec<f32> = rng.vec(9, 0.0, 255.0);
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let (u, v) = (x as f32 / w as f32, y as f32 / h as f32);
            let px = |k: usize| {
                let base = c[k] * (1.0 - u) + c[3 + k] * u * (1.0 - v) + c[6 + k] * u * v;
                (base + (((x * 7 + y * 13 + k as u32 * 5) % 17) as f32 - 8.0) * 3.0)
                    .clamp(0.0, 255.0) as u8
            };
            image::Rgb([px(0), px(1), px(2)])
        });
        let p = work.join(format!("img{i:03}.png"));
        img.save(&p).with_context(|| format!("{}", p.display()))?;
        paths.push(p);
    }
    let prep = Preprocess {
        size: (w, h),
        mean: [128.0; 3],
        norm: [1.0 / 64.0; 3],
        order: dataset::ColorOrder::Rgb,
        resize: dataset::Resize::Stretch,
    };
    Ok((param, bin, paths, prep))
}

fn run_in(req: &Request, dir: &Path) -> Result<Summary> {
    let mut seconds = Vec::new();
    let mut step =
        |name: &str, t: Instant| seconds.push((name.to_string(), t.elapsed().as_secs_f64()));
    let (param, bin, paths, prep, strict) = match (&req.model, &req.images) {
        (Some((p, b)), Some(images)) => (
            p.clone(),
            b.clone(),
            images.paths()?,
            req.prep.preprocess()?,
            images.strict,
        ),
        (Some(_), None) => bail!("give the calibration images with --images DIR or --list FILE"),
        (None, _) => {
            let (p, b, paths, prep) = demo_inputs(dir)?;
            (p, b, paths, prep, true)
        }
    };
    let model_name = param
        .file_stem()
        .map(|s| s.to_string_lossy().trim_end_matches(".param").to_string())
        .unwrap_or_default();
    let run_opts = |label: &str| RunOptions {
        workers: req.threads,
        strict,
        progress: req.progress.then(|| label.to_string()),
    };
    let model = Model::load(&param, &bin)?;
    let spec = NetSpec::for_images(&param, &bin, &prep)?;
    // Equalized weights replace the model's from here on (FP32-equivalent).
    let (model, spec, bin) = if req.equalize == EqualizeMode::Off {
        (model, spec, bin)
    } else {
        let t = Instant::now();
        let (bytes, outcome) = crate::equalize::equalize(
            &model,
            &spec,
            &prep,
            &paths,
            &run_opts("equalize"),
            req.equalize == EqualizeMode::All,
        )?;
        let eq_bin = dir.join(EQUALIZED_BIN);
        std::fs::write(&eq_bin, &bytes).with_context(|| format!("{}", eq_bin.display()))?;
        eprintln!(
            "equalized {} layer pair(s) on {} images",
            outcome.pairs.len(),
            paths.len()
        );
        let model = Model::from_memory(&std::fs::read(&param)?, &bytes)?;
        let spec = NetSpec::for_images(&param, &eq_bin, &prep)?;
        step("equalize", t);
        (model, spec, eq_bin)
    };
    let costs = CostModel::rk3399()?;
    let layer_costs = layer_costs(&model, &spec)?;
    let precision = if req.bits == 7 {
        Precision::Int7
    } else {
        Precision::Int8
    };

    let t = Instant::now();
    let kl = crate::calibrate::calibrate(&crate::calibrate::Request {
        model: &model,
        spec: spec.clone(),
        prep: &prep,
        paths: &paths,
        run: run_opts("calibrate"),
        method: Method::Kl,
        bits: req.bits,
    })?;
    step("calibrate (KL)", t);

    let t = Instant::now();
    let ft_paths = dataset::sample(paths.clone(), req.samples.max(1), req.seed);
    let (table, _) = crate::finetune::finetune(&crate::finetune::Request {
        model: &model,
        spec: spec.clone(),
        prep: &prep,
        paths: &ft_paths,
        strict,
        table: kl,
        bits: req.bits,
        alpha: 0.5,
        beta: 2.0,
        steps: 100,
        rounds: 1,
        variant: Variant::Paper,
        positions: req.positions,
        progress: req.progress,
    })?;
    step("finetune (EasyQuant)", t);

    // Calibration images the finetune did not use: for the precision search and the
    // per-layer comparison.
    let held_out: Vec<PathBuf> = paths
        .iter()
        .filter(|p| !ft_paths.contains(p))
        .cloned()
        .collect();
    let held_out_empty = held_out.is_empty();
    let compare_paths = if held_out_empty {
        ft_paths.clone()
    } else {
        dataset::sample(held_out.clone(), COMPARE_IMAGES, req.seed ^ 0xC0)
    };

    let mut table = table;
    let mut keep_fp32 = req.keep_fp32.clone();
    let mut overrides = std::collections::HashMap::new();
    let mut reasons = std::collections::HashMap::new();
    let mut mixed = None;
    if req.mixed {
        let t = Instant::now();
        // A detector's score (pseudo-label mAP) needs more boxes than 32 images hold, and a
        // classifier's top-1 agreement more images to resolve a fraction of a percent.
        let ranked = crate::mixed::ScoreKind::of(&model, req.score).ranked();
        let mixed_paths = if ranked && !held_out_empty {
            dataset::sample(held_out.clone(), MIXED_RANKED_IMAGES, req.seed ^ 0xD7)
        } else {
            compare_paths.clone()
        };
        let mut inputs = Vec::new();
        for p in &mixed_paths {
            if let Some(x) = dataset::skip_unreadable(p, prep.load(p), strict)? {
                inputs.push(x);
            }
        }
        let input_shape = spec
            .input_shape
            .ok_or_else(|| anyhow!("the model's input has no shape"))?;
        let estimate = |l: &crate::model::QuantLayer, level: crate::mixed::Level| {
            costs
                .ms(req.cost, layer_costs[&l.name], level)
                .unwrap_or(0.0)
        };
        let o = crate::mixed::choose(&crate::mixed::Request {
            model: &model,
            table: &table,
            base: precision,
            keep_fp32: &req.keep_fp32,
            inputs: &inputs,
            input: &spec.input,
            input_shape,
            budget: req.budget,
            score: req.score,
            cost: match req.cost {
                CostTarget::Host => None,
                _ => Some(&estimate),
            },
            threads: req.threads,
        })?;
        table = o.table;
        keep_fp32 = o.keep_fp32;
        overrides = o.overrides;
        for d in &o.decisions {
            reasons.insert(d.name.clone(), d.why.clone());
        }
        mixed = Some(MixedSummary {
            budget: o.budget,
            score: o.score.to_string(),
            base_cosine: o.base_cosine,
            cosine: o.cosine,
            images: inputs.len(),
        });
        step("mixed precision", t);
    }

    let t = Instant::now();
    let table_path = dir.join("model.table");
    table.write(&table_path)?;
    let (qparam_text, qbin, qreport) = crate::quantize::quantize_model(
        &model,
        &table,
        &crate::quantize::Options {
            precision,
            keep_fp32: &keep_fp32,
            overrides: &overrides,
        },
    )?;
    for w in &qreport.warnings {
        eprintln!("warning: {w}");
    }
    let (qparam, qbin_path) = (dir.join("model.param"), dir.join("model.bin"));
    std::fs::write(&qparam, qparam_text).with_context(|| format!("{}", qparam.display()))?;
    std::fs::write(&qbin_path, qbin).with_context(|| format!("{}", qbin_path.display()))?;
    step("quantize", t);

    // Per-layer comparison.
    let t = Instant::now();
    let with_blobs = |p: &Path, b: &Path, precision| -> Result<NetSpec> {
        let mut s = NetSpec::for_images(p, b, &prep)?;
        s.keep_all_blobs = true;
        s.precision = precision;
        s.threads = req.threads;
        Ok(s)
    };
    let fspec = with_blobs(&param, &bin, PrecisionChoice::Fp32)?;
    let qspec = with_blobs(&qparam, &qbin_path, PrecisionChoice::Auto)?;
    let cmp = crate::report::compare(&fspec, &qspec, &prep, &compare_paths, strict)?;
    step("compare layers", t);

    let t = Instant::now();
    let input = prep.load(&compare_paths[0])?;
    let host = crate::mixed::layer_times(&mut qspec.load()?, &qspec.input, &input)?;
    let host_fp32 = crate::mixed::layer_times(&mut fspec.load()?, &fspec.input, &input)?;
    step("time layers", t);

    let mut layers = summarize(&cmp, &layer_costs, &costs, &host, &host_fp32);
    for l in &mut layers {
        if let Some(why) = reasons.get(&l.name) {
            l.reason = why.clone();
        }
    }
    let conv = |l: &&LayerSummary| l.kind == "Convolution" || l.kind == "ConvolutionDepthWise";
    let conv_macs: u64 = layers.iter().filter(conv).map(|l| l.macs).sum();
    let int7_macs: u64 = layers
        .iter()
        .filter(conv)
        .filter(|l| l.precision == "INT7")
        .map(|l| l.macs)
        .sum();

    let (mut fp32_acc, mut q_acc) = (None, None);
    if let Some(v) = &req.validation {
        let t = Instant::now();
        let mut f = spec.clone();
        f.precision = PrecisionChoice::Fp32;
        f.threads = 1;
        let mut q = NetSpec::for_images(&qparam, &qbin_path, &prep)?;
        q.precision = PrecisionChoice::Auto;
        let acc = |s: &NetSpec, label: &str| evaluate(v, s, &prep, &run_opts(label));
        fp32_acc = Some(acc(&f, "eval fp32")?);
        q_acc = Some(acc(&q, "eval quantized")?);
        step("evaluate", t);
    }

    let summary = Summary {
        model: model_name,
        bits: req.bits,
        int7_mac_fraction: if conv_macs > 0 {
            int7_macs as f64 / conv_macs as f64
        } else {
            0.0
        },
        host_ms: layers.iter().map(|l| l.host_ms).sum(),
        host_fp32_ms: layers.iter().map(|l| l.host_fp32_ms).sum(),
        cost: req.cost.name().to_string(),
        a53_ms: layers.iter().filter_map(|l| l.a53_ms).sum(),
        a72_ms: layers.iter().filter_map(|l| l.a72_ms).sum(),
        a53_fp32_ms: model_ms(&layer_costs, &costs, CostTarget::A53),
        a72_fp32_ms: model_ms(&layer_costs, &costs, CostTarget::A72),
        layers,
        fp32: fp32_acc,
        quantized: q_acc,
        calibration_images: paths.len(),
        finetune_images: ft_paths.len(),
        compared_images: cmp.images,
        compared_held_out: !held_out_empty,
        mixed,
        seconds,
    };
    let json = serde_json::to_string_pretty(&summary)? + "\n";
    for (file, body) in [
        ("summary.json", json),
        ("report.md", report_md(&summary, req)),
        ("cosine.svg", cmp.svg()),
    ] {
        let p = dir.join(file);
        std::fs::write(&p, body).with_context(|| format!("{}", p.display()))?;
    }
    let _ = std::fs::remove_dir_all(dir.join("demo-input"));
    let _ = std::fs::remove_file(dir.join(EQUALIZED_BIN));
    Ok(summary)
}

/// A few lines for the terminal: the model, the precision mix and accuracy when measured.
pub fn summary_lines(s: &Summary) -> String {
    let mut m = String::new();
    let count = |p: &str| s.layers.iter().filter(|l| l.precision == p).count();
    let _ = writeln!(
        m,
        "{}: {} bits, layers {} INT7 / {} INT8 / {} FP32, {:.1} % of convolution MACs in INT7",
        s.model,
        s.bits,
        count("INT7"),
        count("INT8"),
        count("FP32"),
        100.0 * s.int7_mac_fraction
    );
    let worst = s
        .layers
        .iter()
        .filter(|l| l.precision != "FP32")
        .filter_map(|l| l.cosine.map(|c| (c, &l.name)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((c, name)) = worst {
        let _ = writeln!(m, "lowest layer cosine vs FP32: {c:.5} (`{name}`)");
    }
    let _ = writeln!(
        m,
        "host latency: {:.3} ms quantized, {:.3} ms FP32",
        s.host_ms, s.host_fp32_ms
    );
    let _ = write!(
        m,
        "RK3399 estimate (conv/fc layers, 1 thread): A72 {:.2} ms quantized, {:.2} ms FP32; \
         A53 {:.2} ms, {:.2} ms FP32",
        s.a72_ms, s.a72_fp32_ms, s.a53_ms, s.a53_fp32_ms
    );
    if s.mixed.is_some() {
        let _ = write!(m, " (mixed search minimised: {})", s.cost);
    }
    for (label, a) in [("FP32", &s.fp32), ("quantized", &s.quantized)] {
        if let Some(a) = a {
            match (a.top1, a.top5, a.accuracy) {
                (Some(t1), Some(t5), _) => {
                    let _ = write!(m, "\n{label}: top-1 {t1:.2} %, top-5 {t5:.2} %");
                }
                (_, _, Some(x)) => {
                    let _ = write!(m, "\n{label}: LFW accuracy {x:.2} %");
                }
                _ => {}
            }
        }
    }
    m
}

fn evaluate(
    v: &Validation,
    spec: &NetSpec,
    prep: &Preprocess,
    run: &RunOptions,
) -> Result<Accuracy> {
    match v {
        Validation::Labels { images, labels } => {
            let paths = dataset::list_dir(images)?;
            let text = std::fs::read_to_string(labels)
                .with_context(|| format!("cannot read {}", labels.display()))?;
            let parsed = crate::eval::parse_labels(&text)
                .with_context(|| format!("{}", labels.display()))?;
            let matched = crate::eval::match_labels(&paths, &parsed)
                .with_context(|| format!("{}", labels.display()))?;
            let r = crate::eval::classify(spec, prep, &paths, &matched, None, run)?;
            Ok(Accuracy {
                top1: Some(100.0 * r.top1),
                top5: Some(100.0 * r.top5),
                accuracy: None,
                images: r.n,
            })
        }
        Validation::Lfw { pairs, root } => {
            let text = std::fs::read_to_string(pairs)
                .with_context(|| format!("cannot read {}", pairs.display()))?;
            let parsed =
                crate::eval::parse_pairs(&text).with_context(|| format!("{}", pairs.display()))?;
            let r = crate::eval::lfw(spec, prep, &parsed, root, None, run)?;
            Ok(Accuracy {
                accuracy: Some(100.0 * r.accuracy),
                images: r.pairs,
                ..Accuracy::default()
            })
        }
    }
}

/// Class, MACs and blob sizes of every quantizable layer by name, from the planned shapes.
fn layer_costs(model: &Model, spec: &NetSpec) -> Result<HashMap<String, LayerCost>> {
    let net = spec.load()?;
    let mut out = HashMap::new();
    for l in &model.layers {
        let (bottom, top) = (net.blob_shape(&l.bottom)?, net.blob_shape(&l.top)?);
        let c = crate::cost_model::classify(model, l, bottom, top)?;
        out.insert(l.name.clone(), c);
    }
    Ok(out)
}

/// Estimated ms of every modeled layer in FP32 on a core.
fn model_ms(layer_costs: &HashMap<String, LayerCost>, costs: &CostModel, t: CostTarget) -> f64 {
    layer_costs
        .values()
        .filter_map(|&c| costs.ms(t, c, None))
        .sum()
}

fn level_of(precision: &str) -> Option<crate::mixed::Level> {
    match precision {
        "INT7" => Some(Some(Precision::Int7)),
        "INT8" => Some(Some(Precision::Int8)),
        "FP32" => Some(None),
        _ => None,
    }
}

fn summarize(
    cmp: &Comparison,
    layer_costs: &HashMap<String, LayerCost>,
    costs: &CostModel,
    host: &[f64],
    host_fp32: &[f64],
) -> Vec<LayerSummary> {
    cmp.rows
        .iter()
        .map(|r| {
            let lc = layer_costs.get(&r.name).copied();
            let precision = r.precision.to_string();
            let est = |t| match (lc, level_of(&precision)) {
                (Some(c), Some(level)) => costs.ms(t, c, level),
                _ => None,
            };
            LayerSummary {
                name: r.name.clone(),
                kind: r.kind.clone(),
                cosine: r.cosine(),
                macs: lc.map_or(0, |c| c.macs),
                reason: r.reason.clone(),
                host_ms: r.layer.map_or(0.0, |i| host.get(i).copied().unwrap_or(0.0)),
                host_fp32_ms: r
                    .layer
                    .map_or(0.0, |i| host_fp32.get(i).copied().unwrap_or(0.0)),
                a53_ms: est(CostTarget::A53),
                a72_ms: est(CostTarget::A72),
                precision,
            }
        })
        .collect()
}

fn report_md(s: &Summary, req: &Request) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# EasyQuant report: {} at {} bits\n", s.model, s.bits);
    let _ = writeln!(
        m,
        "KL calibration on {} images, EasyQuant finetune (the paper's Algorithm 1, alpha 0.5, \
         beta 2, 100 steps) on {} of them drawn with seed {}, per-layer cosine on {} {}.\n",
        s.calibration_images,
        s.finetune_images,
        req.seed,
        s.compared_images,
        if s.compared_held_out {
            "held-out calibration images"
        } else {
            "calibration images (all were used by the finetune: none is held out)"
        }
    );
    let _ = writeln!(
        m,
        "- Convolution MACs in INT7: {:.1} %",
        100.0 * s.int7_mac_fraction
    );
    let _ = writeln!(
        m,
        "- Host latency ({} thread(s), sum of per-layer medians): quantized {:.3} ms, FP32 {:.3} ms",
        req.threads, s.host_ms, s.host_fp32_ms
    );
    let _ = writeln!(
        m,
        "- RK3399 estimate, 1 thread, Convolution / ConvolutionDepthWise / InnerProduct layers \
         only (kernel model of `targets/costs/rk3399.toml`: modeled cycles, no memory system): \
         Cortex-A72 quantized {:.2} ms, FP32 {:.2} ms; Cortex-A53 quantized {:.2} ms, FP32 {:.2} ms",
        s.a72_ms, s.a72_fp32_ms, s.a53_ms, s.a53_fp32_ms
    );
    if s.mixed.is_some() {
        let _ = writeln!(
            m,
            "- The mixed precision search minimised the {} latency",
            match s.cost.as_str() {
                "host" => "host (measured)",
                "a53" => "Cortex-A53 (estimated)",
                _ => "Cortex-A72 (estimated)",
            }
        );
    }
    let acc = |a: &Accuracy| match (a.top1, a.top5, a.accuracy) {
        (Some(t1), Some(t5), _) => {
            format!("top-1 {t1:.2} %, top-5 {t5:.2} % ({} images)", a.images)
        }
        (_, _, Some(x)) => format!("LFW accuracy {x:.2} % ({} pairs)", a.images),
        _ => "-".into(),
    };
    if let (Some(f), Some(q)) = (&s.fp32, &s.quantized) {
        let _ = writeln!(m, "- FP32: {}\n- Quantized: {}", acc(f), acc(q));
    }
    let _ = writeln!(m, "\n![per-layer cosine](cosine.svg)\n");
    let _ = writeln!(
        m,
        "| layer | type | precision | cosine | MMACs | host ms | host FP32 ms | A72 ms (est.) | A53 ms (est.) | why |\n|---|---|---|---:|---:|---:|---:|---:|---:|---|"
    );
    for l in &s.layers {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {:.2} | {:.3} | {:.3} | {} | {} | {} |",
            l.name,
            l.kind,
            l.precision,
            l.cosine.map_or("-".into(), |c| format!("{c:.5}")),
            l.macs as f64 / 1e6,
            l.host_ms,
            l.host_fp32_ms,
            l.a72_ms.map_or("-".into(), |t| format!("{t:.3}")),
            l.a53_ms.map_or("-".into(), |t| format!("{t:.3}")),
            l.reason
        );
    }
    let _ = writeln!(m, "\nStep times (s):");
    for (name, t) in &s.seconds {
        let _ = writeln!(m, "- {name}: {t:.1}");
    }
    m
}
