//! `eq finetune`: the EasyQuant scale search (easyquant.md §2, Algorithm 1).
//!
//! Each round is a weight pass over all Convolution, ConvolutionDepthWise and InnerProduct
//! layers of the table, then an activation pass. A pass sweeps the network once, layer by
//! layer, over the calibration images ([`layerwise`]), carrying two states per image: the
//! FP32 network's blobs and the current quantized network's. At quantizable layer l it
//! samples l's input Â_l from the quantized state (every earlier layer already running
//! INT8/INT7 with its tuned scales) and the target O_l from the FP32 state, searches l's
//! weight scales (weight pass) or input scale (activation pass) on that data ([`search`]),
//! then runs l quantized with the chosen scales to move the quantized state on.
//!
//! `--variant ncnn` reproduces ncnn2table's `eq` instead (easyquant.md §4): one sweep per
//! round, each layer's weights then input scale, both searched on the FP32 network's input
//! to the layer, on ncnn's grid and choice rules.
//!
//! Layers that read the same blob (directly or through a Split) share one activation scale,
//! as the requantized int8 blob between them can carry only one: it is searched at the first
//! of them, scoring each candidate by the mean cosine of all of them.

mod layerwise;
mod search;

use crate::dataset::{self, Preprocess};
use crate::model::{Model, QuantKind, QuantLayer};
use crate::runner::NetSpec;
use crate::table::ScaleTable;
use anyhow::{anyhow, bail, Result};
use eq_runtime::ops::convolution::ConvParams;
use eq_runtime::quant::Precision;
use eq_runtime::{Net, Options};
use indicatif::{ProgressBar, ProgressStyle};
use layerwise::{Blobs, Layerwise};
use search::{candidates, search_shared_activation, LayerData, Reader, Rule};
use std::path::PathBuf;

pub use search::POSITIONS;

/// Which EasyQuant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// The paper's Algorithm 1: quantized upstream input, weight pass then activation pass.
    Paper,
    /// ncnn2table's `eq`: FP32 upstream input, per layer weights then activation.
    Ncnn,
}

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
    pub variant: Variant,
    /// Output positions scored per image and layer (None: all of them).
    pub positions: Option<usize>,
    pub progress: bool,
}

/// Mean cosine of one layer before and after each search (on that search's input data).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerReport {
    pub name: String,
    pub weights: Option<(f64, f64)>,
    pub activation: Option<(f64, f64)>,
}

/// What one sweep searches.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Weights,
    Activations,
    Both,
}

impl Pass {
    fn weights(self) -> bool {
        self != Pass::Activations
    }
    fn activations(self) -> bool {
        self != Pass::Weights
    }
}

struct Search<'a> {
    req: &'a Request<'a>,
    lw: Layerwise<'a>,
    images: Vec<Vec<f32>>,
    /// The tuned layers, in the table, in file order.
    layers: Vec<&'a QuantLayer>,
    /// Per tuned layer: the index of the first tuned layer reading the same data.
    shares_with: Vec<usize>,
    factors: Vec<f32>,
    rule: Rule,
    precision: Precision,
}

/// Runs the search; returns the tuned table and per-layer cosines.
pub fn finetune(req: &Request) -> Result<(ScaleTable, Vec<LayerReport>)> {
    let precision = match req.bits {
        8 => Precision::Int8,
        7 => Precision::Int7,
        b => bail!("--bits {b}: finetune runs the runtime's INT8 or INT7 layers; use 8 or 7"),
    };
    if !(req.alpha > 0.0 && req.beta >= req.alpha) {
        bail!("--alpha and --beta must satisfy 0 < alpha <= beta");
    }
    if req.steps == 0 || req.rounds == 0 {
        bail!("--steps and --rounds must be at least 1");
    }
    let mut images = Vec::new();
    for p in req.paths {
        if let Some(x) = dataset::skip_unreadable(p, req.prep.load(p), req.strict)? {
            images.push(x);
        }
    }
    if images.is_empty() {
        bail!("none of the {} images could be read", req.paths.len());
    }
    let opts = Options {
        threads: 1,
        input_shapes: req
            .spec
            .input_shape
            .map(|s| vec![(req.spec.input.clone(), s)])
            .unwrap_or_default(),
        ..Options::default()
    };
    // Blob shapes only: the weights are not needed.
    let shapes_net = Net::load_zero_weights(&req.spec.param, &opts)?;
    let lw = Layerwise::new(req.model, &shapes_net, &req.spec.input)?;
    drop(shapes_net);

    crate::quantize::check_table_names(req.model, &req.table)?;
    let (layers, fp32): (Vec<&QuantLayer>, Vec<&QuantLayer>) =
        req.model.layers.iter().partition(|l| {
            req.table.activation(&l.name).is_some() && req.table.weight(&l.name).is_some()
        });
    if layers.is_empty() {
        bail!("the table has no layer of this model");
    }
    if !fp32.is_empty() {
        let names: Vec<&str> = fp32.iter().map(|l| l.name.as_str()).collect();
        eprintln!(
            "note: {} layer(s) without both table lines stay fp32 and are not tuned: {}",
            names.len(),
            names.join(", ")
        );
    }
    for l in &layers {
        let sa = req.table.activation(&l.name).unwrap_or_default();
        if !(sa.is_finite() && sa > 0.0) {
            bail!("layer `{}`: activation scale {sa} must be positive", l.name);
        }
        if req.table.weight(&l.name).map(<[f32]>::len) != Some(l.channels) {
            bail!(
                "layer `{}`: wrong number of weight scales in the table",
                l.name
            );
        }
    }
    // ncnn fuses a requantization with the first reader's scale (easyquant.md §13.2 item 7).
    let sources: Vec<String> = layers.iter().map(|l| req.model.input_source(l)).collect();
    let shares_with = (0..layers.len())
        .map(|i| (0..=i).find(|&j| sources[j] == sources[i]).unwrap_or(i))
        .collect();
    let rule = match req.variant {
        Variant::Paper => Rule::Paper,
        Variant::Ncnn => Rule::Ncnn,
    };
    let search = Search {
        req,
        lw,
        images,
        layers,
        shares_with,
        factors: candidates(rule, req.alpha, req.beta, req.steps),
        rule,
        precision,
    };
    let passes: &[Pass] = match req.variant {
        Variant::Paper => &[Pass::Weights, Pass::Activations],
        Variant::Ncnn => &[Pass::Both],
    };
    let bar = if req.progress {
        let b = ProgressBar::new((search.layers.len() * passes.len() * req.rounds) as u64);
        if let Ok(s) =
            ProgressStyle::with_template("finetune {bar:40} {pos}/{len} {msg} [{elapsed} < {eta}]")
        {
            b.set_style(s);
        }
        b
    } else {
        ProgressBar::hidden()
    };
    let mut table = req.table.clone();
    let mut reports: Vec<LayerReport> = search
        .layers
        .iter()
        .map(|l| LayerReport {
            name: l.name.clone(),
            ..LayerReport::default()
        })
        .collect();
    for _round in 0..req.rounds {
        for &pass in passes {
            search.sweep(pass, &mut table, &mut reports, &bar)?;
        }
    }
    bar.finish_and_clear();
    Ok((table, reports))
}

/// `(before, after)` over several searches: the first before, the last after.
fn merge(old: Option<(f64, f64)>, new: (f64, f64)) -> Option<(f64, f64)> {
    Some((old.map_or(new.0, |o| o.0), new.1))
}

impl Search<'_> {
    /// One sweep over the network, searching `pass` at every tuned layer.
    fn sweep(
        &self,
        pass: Pass,
        table: &mut ScaleTable,
        reports: &mut [LayerReport],
        bar: &ProgressBar,
    ) -> Result<()> {
        let lw = &self.lw;
        // ncnn's variant reads every layer's input from the FP32 network: no quantized state.
        let quantized_upstream = self.req.variant == Variant::Paper;
        let mut fp32: Vec<Blobs> = self.images.iter().map(|x| lw.start(x)).collect();
        let mut current: Vec<Blobs> = if quantized_upstream {
            fp32.clone()
        } else {
            Vec::new()
        };
        for (step, &li) in lw.graph.order.iter().enumerate() {
            if lw.graph.layers[li].kind == "Input" {
                continue;
            }
            let m = lw.fp32_layer(li)?;
            lw.run(li, &m, &mut fp32)?;
            match self.layers.iter().position(|l| l.index == li) {
                None => lw.run(li, &m, &mut current)?,
                Some(i) => {
                    bar.set_message(self.layers[i].name.clone());
                    if pass.activations() {
                        // The other readers of this layer's input are scored with it: their
                        // FP32 outputs are needed now (recomputing them later is harmless).
                        for j in self.co_readers(i) {
                            let lj = self.layers[j].index;
                            lw.run(lj, &lw.fp32_layer(lj)?, &mut fp32)?;
                        }
                    }
                    let input = if quantized_upstream { &current } else { &fp32 };
                    let (ws, sa) = self.tune(i, pass, input, &fp32, table, &mut reports[i])?;
                    if quantized_upstream {
                        let q = lw.quantized_layer(self.layers[i], &ws, sa, self.precision)?;
                        lw.run(li, &q, &mut current)?;
                    }
                    bar.inc(1);
                }
            }
            lw.release(step, &mut fp32);
            lw.release(step, &mut current);
        }
        Ok(())
    }

    /// The later tuned layers that share layer `i`'s activation scale (`i` is the first).
    fn co_readers(&self, i: usize) -> Vec<usize> {
        (i + 1..self.layers.len())
            .filter(|&j| self.shares_with[j] == i)
            .collect()
    }

    /// Layer `i`'s sampled columns from `input` and targets from `fp32`.
    fn layer_data(&self, i: usize, input: &[Blobs], fp32: &[Blobs]) -> Result<LayerData> {
        let l = self.layers[i];
        let lw = &self.lw;
        let (bottom, top) = (lw.blob_id(&l.bottom)?, lw.blob_id(&l.top)?);
        let xs = input
            .iter()
            .map(|b| b.get(bottom))
            .collect::<Result<Vec<_>>>()?;
        let ts = fp32
            .iter()
            .map(|b| b.get(top))
            .collect::<Result<Vec<_>>>()?;
        let params = match l.kind {
            QuantKind::InnerProduct => None,
            _ => Some(
                ConvParams::from_params(&lw.graph.layers[l.index].params)
                    .map_err(|e| anyhow!("{}: {}", l.name, e.0))?,
            ),
        };
        LayerData::sample(
            l,
            params.as_ref(),
            (lw.shapes[bottom], &xs),
            (lw.shapes[top], &ts),
            self.precision,
            self.req.positions.unwrap_or(usize::MAX),
        )
    }

    /// Searches tuned layer `i` on its input from `input` and its target from `fp32`;
    /// stores and returns its new scales. The activation scale of layers that read one blob
    /// is searched once, at the first of them, on all of them together.
    fn tune(
        &self,
        i: usize,
        pass: Pass,
        input: &[Blobs],
        fp32: &[Blobs],
        table: &mut ScaleTable,
        report: &mut LayerReport,
    ) -> Result<(Vec<f32>, f32)> {
        let l = self.layers[i];
        let d = self.layer_data(i, input, fp32)?;
        let mut ws = table.weight(&l.name).unwrap_or_default().to_vec();
        let mut sa = table.activation(&l.name).unwrap_or_default();
        if pass.weights() {
            let before = d.cosine(l, &ws, sa)?;
            d.search_weights(l, &mut ws, sa, &self.factors, self.rule)?;
            report.weights = merge(report.weights, (before, d.cosine(l, &ws, sa)?));
        }
        if pass.activations() {
            let before = d.cosine(l, &ws, sa)?;
            let first = self.shares_with[i];
            if first == i {
                let others = self.co_readers(i);
                let data = others
                    .iter()
                    .map(|&j| self.layer_data(j, input, fp32))
                    .collect::<Result<Vec<_>>>()?;
                let scales: Vec<Vec<f32>> = others
                    .iter()
                    .map(|&j| {
                        table
                            .weight(&self.layers[j].name)
                            .unwrap_or_default()
                            .to_vec()
                    })
                    .collect();
                let mut readers = vec![Reader {
                    data: &d,
                    layer: l,
                    ws: &ws,
                }];
                for ((&j, dj), wj) in others.iter().zip(&data).zip(&scales) {
                    readers.push(Reader {
                        data: dj,
                        layer: self.layers[j],
                        ws: wj,
                    });
                }
                search_shared_activation(&readers, &mut sa, &self.factors, self.rule)?;
            } else {
                sa = table
                    .activation(&self.layers[first].name)
                    .unwrap_or_default();
            }
            report.activation = merge(report.activation, (before, d.cosine(l, &ws, sa)?));
        }
        table.set_weight(&l.name, ws.clone());
        table.set_activation(&l.name, sa);
        Ok((ws, sa))
    }
}
