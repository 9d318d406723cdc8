//! Caffe -> ncnn: a deploy `.prototxt` (structure) and a `.caffemodel` (weights) become an
//! ncnn `.param` + `.bin`, laid out as ncnn's `caffe2ncnn` lays them out:
//!
//! * in-place layers (`bottom == top`) write a new blob named `<top>_<layer name>`;
//! * a blob read by several layers gets a `Split` (`splitncnn_N`) right after its producer,
//!   with outputs `<blob>_splitncnn_<i>`, handed to the readers last index first;
//! * Caffe axes count the batch, ncnn's do not (Concat/Softmax axis - 1, Reshape drops dim 0);
//! * Convolution with `group != 1` becomes ConvolutionDepthWise (key 7 = group);
//! * BatchNorm keeps ncnn's 4 raw arrays with eps and Caffe's moving-average factor folded
//!   into mean/var; a Scale that is the only reader of a BatchNorm output is folded into its
//!   slope and bias (one ncnn BatchNorm instead of BatchNorm + Scale);
//! * weights: fp32, a 4-byte zero flag word before Convolution / InnerProduct weights
//!   (ncnn-format.md §4.4), everything else raw.

use super::caffe_proto::*;
use super::prototxt;
use crate::ncnn_writer::{Layer, ModelWriter};
use anyhow::{anyhow, bail, Context, Result};
use prost::Message;
use std::collections::HashMap;
use std::path::Path;

/// Reads the two files and writes the ncnn model. Errors name the file or the layer.
pub fn import_files(
    prototxt: &Path,
    caffemodel: &Path,
    out_param: &Path,
    out_bin: &Path,
) -> Result<()> {
    let text = std::fs::read(prototxt).with_context(|| format!("{}", prototxt.display()))?;
    let text =
        String::from_utf8(text).map_err(|_| anyhow!("{}: not UTF-8 text", prototxt.display()))?;
    let weights = std::fs::read(caffemodel).with_context(|| format!("{}", caffemodel.display()))?;
    let structure = prototxt::parse(&text).with_context(|| format!("{}", prototxt.display()))?;
    let weights =
        decode_caffemodel(&weights).with_context(|| format!("{}", caffemodel.display()))?;
    let model = convert(&structure, &weights)?;
    let param = model.param.to_text()?;
    std::fs::write(out_param, param).with_context(|| format!("{}", out_param.display()))?;
    std::fs::write(out_bin, &model.bin.bytes).with_context(|| format!("{}", out_bin.display()))?;
    Ok(())
}

/// Decodes a binary `.caffemodel` (a `NetParameter`).
pub fn decode_caffemodel(bytes: &[u8]) -> Result<NetParameter> {
    let net = NetParameter::decode(bytes)
        .map_err(|e| anyhow!("malformed caffemodel (not a Caffe NetParameter protobuf): {e}"))?;
    if net.layer.is_empty() && net.layers.is_empty() {
        bail!("the caffemodel holds no layers");
    }
    Ok(net)
}

/// Converts a prototxt (`structure`) with the weights of a caffemodel (`weights`, matched by
/// layer name) into an ncnn model.
pub fn convert(structure: &NetParameter, weights: &NetParameter) -> Result<ModelWriter> {
    let mut blobs: HashMap<String, Vec<BlobProto>> = HashMap::new();
    for l in all_layers(weights) {
        let name = l.name.clone().unwrap_or_default();
        if !l.blobs.is_empty() {
            blobs.insert(name, l.blobs);
        }
    }

    let mut layers = legacy_inputs(structure)?;
    layers.extend(all_layers(structure).into_iter().filter(in_test_phase));
    if layers.is_empty() {
        bail!("the prototxt has no layers");
    }
    let mut nodes = resolve_names(layers)?;
    fold_scales(&mut nodes);

    // How many layers read each (resolved) blob: those read more than once get a Split.
    let mut readers: HashMap<String, usize> = HashMap::new();
    for n in &nodes {
        for b in &n.bottoms {
            *readers.entry(b.clone()).or_default() += 1;
        }
    }
    let mut left = readers.clone();
    let mut model = ModelWriter::new();
    let mut splits = 0;
    for n in &nodes {
        let bottoms: Vec<String> = n
            .bottoms
            .iter()
            .map(|b| {
                let count = readers[b];
                if count > 1 {
                    let k = left.get_mut(b).expect("counted above");
                    *k -= 1;
                    format!("{b}_splitncnn_{k}")
                } else {
                    b.clone()
                }
            })
            .collect();
        let name = n.layer.name.clone().unwrap_or_default();
        let ty = n.layer.r#type.clone().unwrap_or_default();
        emit(&mut model, n, &bottoms, &blobs).with_context(|| format!("layer `{name}` ({ty})"))?;
        for t in &n.tops {
            let count = readers.get(t).copied().unwrap_or(0);
            if count > 1 {
                let outs: Vec<String> = (0..count).map(|i| format!("{t}_splitncnn_{i}")).collect();
                let outs: Vec<&str> = outs.iter().map(String::as_str).collect();
                model
                    .param
                    .layer("Split", &format!("splitncnn_{splits}"), &[t], &outs);
                splits += 1;
            }
        }
    }
    Ok(model)
}

/// The layers of a net in the new form, old `layers` entries translated.
fn all_layers(net: &NetParameter) -> Vec<LayerParameter> {
    if !net.layer.is_empty() {
        return net.layer.clone();
    }
    net.layers.iter().map(upgrade_v1).collect()
}

fn upgrade_v1(v1: &V1LayerParameter) -> LayerParameter {
    let code = v1.r#type.unwrap_or(0);
    let ty = V1_LAYER_TYPES
        .iter()
        .find(|&&(_, n, _)| n == code)
        .map_or_else(
            || format!("V1 layer type {code}"),
            |&(_, _, t)| t.to_string(),
        );
    LayerParameter {
        name: v1.name.clone(),
        r#type: Some(ty),
        bottom: v1.bottom.clone(),
        top: v1.top.clone(),
        blobs: v1.blobs.clone(),
        include: v1.include.clone(),
        exclude: v1.exclude.clone(),
        concat_param: v1.concat_param.clone(),
        convolution_param: v1.convolution_param.clone(),
        dropout_param: v1.dropout_param.clone(),
        eltwise_param: v1.eltwise_param.clone(),
        inner_product_param: v1.inner_product_param.clone(),
        lrn_param: v1.lrn_param.clone(),
        pooling_param: v1.pooling_param.clone(),
        relu_param: v1.relu_param.clone(),
        softmax_param: v1.softmax_param.clone(),
        ..Default::default()
    }
}

/// Caffe's include/exclude rules for the TEST phase (a rule without a phase always matches).
fn in_test_phase(l: &LayerParameter) -> bool {
    let matches = |r: &NetStateRule| r.phase.is_none_or(|p| p != PHASE_TRAIN);
    (l.include.is_empty() || l.include.iter().any(matches)) && !l.exclude.iter().any(matches)
}

/// `input: "data"` with `input_shape { dim: .. }` or four `input_dim` each, as Input layers.
fn legacy_inputs(net: &NetParameter) -> Result<Vec<LayerParameter>> {
    let mut out = Vec::new();
    for (i, name) in net.input.iter().enumerate() {
        let shape = if let Some(s) = net.input_shape.get(i) {
            s.clone()
        } else if net.input_dim.len() >= 4 * (i + 1) {
            BlobShape {
                dim: net.input_dim[4 * i..4 * i + 4].to_vec(),
            }
        } else if net.input_shape.is_empty() && net.input_dim.is_empty() {
            BlobShape::default()
        } else {
            bail!("input `{name}`: no input_shape and not 4 input_dim values for it");
        };
        out.push(LayerParameter {
            name: Some(name.clone()),
            r#type: Some("Input".into()),
            top: vec![name.clone()],
            input_param: Some(InputParameter { shape: vec![shape] }),
            ..Default::default()
        });
    }
    Ok(out)
}

/// A layer with its blob names as ncnn will see them (before Split renaming).
struct Node {
    layer: LayerParameter,
    bottoms: Vec<String>,
    tops: Vec<String>,
    /// A Scale folded into this BatchNorm.
    scale: Option<LayerParameter>,
}

fn resolve_names(layers: Vec<LayerParameter>) -> Result<Vec<Node>> {
    // The current ncnn name of each Caffe blob name (differs after an in-place layer).
    let mut current: HashMap<String, String> = HashMap::new();
    let mut names: HashMap<String, ()> = HashMap::new();
    let mut nodes = Vec::new();
    for layer in layers {
        let name = layer.name.clone().unwrap_or_default();
        if name.is_empty() {
            bail!(
                "a layer of type `{}` has no name",
                layer.r#type.as_deref().unwrap_or("?")
            );
        }
        if names.insert(name.clone(), ()).is_some() {
            bail!("two layers are named `{name}`");
        }
        let bottoms: Vec<String> = layer
            .bottom
            .iter()
            .map(|b| current.get(b).cloned().unwrap_or_else(|| b.clone()))
            .collect();
        let in_place =
            layer.bottom.len() == 1 && layer.top.len() == 1 && layer.bottom[0] == layer.top[0];
        let tops = if in_place {
            let t = format!("{}_{name}", layer.top[0]);
            current.insert(layer.top[0].clone(), t.clone());
            vec![t]
        } else {
            for t in &layer.top {
                current.remove(t);
            }
            layer.top.clone()
        };
        nodes.push(Node {
            layer,
            bottoms,
            tops,
            scale: None,
        });
    }
    Ok(nodes)
}

/// Folds `BatchNorm -> Scale` pairs where the Scale is the next layer and the only reader.
fn fold_scales(nodes: &mut Vec<Node>) {
    let mut readers: HashMap<String, usize> = HashMap::new();
    for b in nodes.iter().flat_map(|n| &n.bottoms) {
        *readers.entry(b.clone()).or_default() += 1;
    }
    let mut i = 0;
    while i + 1 < nodes.len() {
        let (bn, sc) = (&nodes[i], &nodes[i + 1]);
        let foldable = bn.layer.r#type.as_deref() == Some("BatchNorm")
            && sc.layer.r#type.as_deref() == Some("Scale")
            && bn.tops.len() == 1
            && sc.bottoms.len() == 1
            && sc.tops.len() == 1
            && sc.bottoms[0] == bn.tops[0]
            && readers.get(&bn.tops[0]) == Some(&1);
        if foldable {
            let sc = nodes.remove(i + 1);
            nodes[i].tops = sc.tops;
            nodes[i].scale = Some(sc.layer);
        }
        i += 1;
    }
}

/// Blob data as f32 (files written from Python sometimes use `double_data`).
fn data(b: &BlobProto) -> Vec<f32> {
    if b.data.is_empty() {
        b.double_data.iter().map(|&v| v as f32).collect()
    } else {
        b.data.clone()
    }
}

/// The blob's dimensions: `shape`, or the old num/channels/height/width.
fn dims(b: &BlobProto) -> Vec<i64> {
    match &b.shape {
        Some(s) => s.dim.clone(),
        None => [b.num, b.channels, b.height, b.width]
            .iter()
            .map(|d| d.unwrap_or(0))
            .collect(),
    }
}

/// The layer's weight blobs, checked: at least `min` of them, each as long as its shape says.
fn weights<'a>(
    blobs: &'a HashMap<String, Vec<BlobProto>>,
    layer: &'a LayerParameter,
    min: usize,
) -> Result<Vec<(Vec<i64>, Vec<f32>)>> {
    let name = layer.name.as_deref().unwrap_or_default();
    let found: &'a [BlobProto] = match blobs.get(name) {
        Some(b) => b,
        None if !layer.blobs.is_empty() => &layer.blobs,
        None => bail!("no weights for it in the caffemodel"),
    };
    if found.len() < min {
        bail!(
            "the caffemodel has {} weight blob(s) for it, it needs {min}",
            found.len()
        );
    }
    found
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let (d, v) = (dims(b), data(b));
            let legacy_empty = b.shape.is_none() && d.iter().all(|&x| x == 0);
            let count = d.iter().try_fold(
                1i64,
                |acc, &x| {
                    if x < 0 {
                        None
                    } else {
                        acc.checked_mul(x)
                    }
                },
            );
            if !legacy_empty && count != Some(v.len() as i64) {
                bail!("weight blob {i} has shape {d:?} but {} values", v.len());
            }
            Ok((d, v))
        })
        .collect()
}

/// Dimensions without leading 1s (old files pad shapes to 4-D).
fn squeeze(d: &[i64]) -> &[i64] {
    let first = d.iter().position(|&x| x != 1).unwrap_or(d.len());
    &d[first..]
}

fn check_len(what: &str, v: &[f32], want: usize) -> Result<()> {
    if v.len() != want {
        bail!("{what} has {} values, the prototxt implies {want}", v.len());
    }
    Ok(())
}

/// A (h, w) pair from Caffe's `x` (repeated, h first) or `x_h`/`x_w` fields.
fn pair(rep: &[u32], h: Option<u32>, w: Option<u32>, default: u32) -> (u32, u32) {
    if h.is_some() || w.is_some() {
        return (h.unwrap_or(default), w.unwrap_or(default));
    }
    match rep {
        [] => (default, default),
        [v] => (*v, *v),
        [h, w, ..] => (*h, *w),
    }
}

fn int(v: impl TryInto<i32>, what: &str) -> Result<i32> {
    v.try_into().map_err(|_| anyhow!("{what} is out of range"))
}

/// Caffe axis (batch = 0) -> ncnn axis.
fn ncnn_axis(axis: i32, what: &str) -> Result<i32> {
    match axis {
        0 => bail!("{what} over the batch axis is not supported"),
        a if a > 0 => Ok(a - 1),
        a => Ok(a),
    }
}

fn last(model: &mut ModelWriter) -> &mut Layer {
    model
        .param
        .layers
        .last_mut()
        .expect("a layer was just added")
}

fn emit(
    model: &mut ModelWriter,
    n: &Node,
    bottoms: &[String],
    blobs: &HashMap<String, Vec<BlobProto>>,
) -> Result<()> {
    let l = &n.layer;
    let ty = l.r#type.as_deref().unwrap_or_default();
    let name = l.name.as_deref().unwrap_or_default();
    let b: Vec<&str> = bottoms.iter().map(String::as_str).collect();
    let t: Vec<&str> = n.tops.iter().map(String::as_str).collect();
    let one_in = || -> Result<()> {
        if b.len() != 1 || t.len() != 1 {
            bail!("needs one bottom and one top");
        }
        Ok(())
    };
    let layer = |model: &mut ModelWriter, kind: &str| -> usize {
        model.param.layer(kind, name, &b, &t);
        model.param.layers.len() - 1
    };
    match ty {
        "Input" => {
            if t.len() != 1 || !b.is_empty() {
                bail!("an Input layer needs exactly one top and no bottom");
            }
            let dims: Vec<i64> = l
                .input_param
                .as_ref()
                .and_then(|p| p.shape.first())
                .map(|s| s.dim.clone())
                .unwrap_or_default();
            layer(model, "Input");
            let dim = |i: usize| int(dims[i], "an input dimension");
            match dims.len() {
                0 => {}
                2 => {
                    last(model).int(0, dim(1)?);
                }
                3 => {
                    last(model).int(0, dim(2)?).int(1, dim(1)?);
                }
                4 => {
                    last(model).int(0, dim(3)?).int(1, dim(2)?).int(2, dim(1)?);
                }
                k => bail!("input shape {dims:?} has {k} dimensions; 2 to 4 are supported"),
            }
        }
        "Convolution" => {
            one_in()?;
            let p = l.convolution_param.clone().unwrap_or_default();
            let out = p.num_output.unwrap_or(0);
            if out == 0 {
                bail!("num_output must be set");
            }
            let (kh, kw) = pair(&p.kernel_size, p.kernel_h, p.kernel_w, 0);
            if kh == 0 || kw == 0 {
                bail!("kernel size must be set");
            }
            let (sh, sw) = pair(&p.stride, p.stride_h, p.stride_w, 1);
            let (ph, pw) = pair(&p.pad, p.pad_h, p.pad_w, 0);
            let (dh, dw) = pair(&p.dilation, None, None, 1);
            let group = p.group();
            if group == 0 || !out.is_multiple_of(group) {
                bail!("num_output {out} is not a multiple of group {group}");
            }
            if p.axis() != 1 {
                bail!("axis {} is not supported (only 1)", p.axis());
            }
            let bias = p.bias_term();
            let w = weights(blobs, l, 1 + bias as usize)?;
            let (wd, wv) = &w[0];
            let sq = squeeze(wd);
            let expect_tail = [i64::from(kh), i64::from(kw)];
            let shape_ok = wd.len() == 4 && wd[0] == i64::from(out) && wd[2..] == expect_tail
                || wd.len() != 4 && sq.ends_with(&expect_tail);
            if !shape_ok
                || wv.is_empty()
                || !wv
                    .len()
                    .is_multiple_of(out as usize * kh as usize * kw as usize)
            {
                bail!("weight shape {wd:?} does not match num_output {out}, kernel {kh}x{kw}");
            }
            layer(
                model,
                if group == 1 {
                    "Convolution"
                } else {
                    "ConvolutionDepthWise"
                },
            );
            let lr = last(model);
            lr.int(0, int(out, "num_output")?)
                .int(1, int(kw, "kernel")?);
            if kh != kw {
                lr.int(11, int(kh, "kernel")?);
            }
            lr.int(2, int(dw, "dilation")?);
            if dh != dw {
                lr.int(12, int(dh, "dilation")?);
            }
            lr.int(3, int(sw, "stride")?);
            if sh != sw {
                lr.int(13, int(sh, "stride")?);
            }
            lr.int(4, int(pw, "pad")?);
            if ph != pw {
                lr.int(14, int(ph, "pad")?);
            }
            lr.int(5, bias as i32).int(6, int(wv.len(), "weight size")?);
            if group != 1 {
                lr.int(7, int(group, "group")?);
            }
            model.bin.tagged_f32(wv);
            if bias {
                check_len("the bias", &w[1].1, out as usize)?;
                model.bin.raw_f32(&w[1].1);
            }
        }
        "Pooling" => {
            one_in()?;
            let p = l.pooling_param.clone().unwrap_or_default();
            let pool = match p.pool.unwrap_or(POOL_MAX) {
                POOL_MAX => 0,
                POOL_AVE => 1,
                other => bail!("pooling method {other} (STOCHASTIC) is not supported"),
            };
            layer(model, "Pooling");
            if p.global_pooling.unwrap_or(false) {
                last(model).int(0, pool).int(4, 1);
            } else {
                let (kh, kw) = pair(&p.kernel_size, p.kernel_h, p.kernel_w, 0);
                if kh == 0 || kw == 0 {
                    bail!("kernel size must be set (or global_pooling)");
                }
                let (sh, sw) = pair(&p.stride, p.stride_h, p.stride_w, 1);
                let (ph, pw) = pair(&p.pad, p.pad_h, p.pad_w, 0);
                let lr = last(model);
                lr.int(0, pool).int(1, int(kw, "kernel")?);
                if kh != kw {
                    lr.int(11, int(kh, "kernel")?);
                }
                lr.int(2, int(sw, "stride")?);
                if sh != sw {
                    lr.int(12, int(sh, "stride")?);
                }
                lr.int(3, int(pw, "pad")?);
                if ph != pw {
                    lr.int(13, int(ph, "pad")?);
                }
                // Caffe rounds the output size up (ncnn's "full" mode 0) unless FLOOR.
                let floor = p.round_mode.is_some_and(|m| m != ROUND_CEIL);
                lr.int(5, floor as i32);
                // Caffe's average counts the zero padding, but not the tail that ceil mode
                // adds past it: with pad 0 that is ncnn's default, with padding ncnn's
                // count_include_pad (exact except in a window reaching past the padding).
                if pool == 1 && (ph > 0 || pw > 0) {
                    lr.int(6, 1);
                }
            }
        }
        "InnerProduct" => {
            one_in()?;
            let p = l.inner_product_param.clone().unwrap_or_default();
            let out = p.num_output.unwrap_or(0) as usize;
            if out == 0 {
                bail!("num_output must be set");
            }
            if p.axis() != 1 {
                bail!("axis {} is not supported (only 1)", p.axis());
            }
            let bias = p.bias_term();
            let w = weights(blobs, l, 1 + bias as usize)?;
            let (wd, wv) = &w[0];
            let sq = squeeze(wd);
            let transpose = p.transpose.unwrap_or(false);
            let lead = if transpose { sq.last() } else { sq.first() };
            if wv.is_empty()
                || !wv.len().is_multiple_of(out)
                || (sq.len() > 1 && lead != Some(&(out as i64)))
            {
                bail!("weight shape {wd:?} does not match num_output {out}");
            }
            let inputs = wv.len() / out;
            // ncnn wants [out][in]; a transposed Caffe weight is [in][out].
            let wv: Vec<f32> = if transpose {
                (0..out * inputs)
                    .map(|i| wv[(i % inputs) * out + i / inputs])
                    .collect()
            } else {
                wv.clone()
            };
            layer(model, "InnerProduct");
            last(model)
                .int(0, int(out, "num_output")?)
                .int(1, bias as i32)
                .int(2, int(wv.len(), "weight size")?);
            model.bin.tagged_f32(&wv);
            if bias {
                check_len("the bias", &w[1].1, out)?;
                model.bin.raw_f32(&w[1].1);
            }
        }
        "ReLU" => {
            one_in()?;
            let slope = l
                .relu_param
                .as_ref()
                .and_then(|p| p.negative_slope)
                .unwrap_or(0.0);
            layer(model, "ReLU");
            if slope != 0.0 {
                last(model).float(0, slope);
            }
        }
        "PReLU" => {
            one_in()?;
            let w = weights(blobs, l, 1)?;
            let shared = l
                .prelu_param
                .as_ref()
                .and_then(|p| p.channel_shared)
                .unwrap_or(false);
            if shared {
                check_len("the shared slope", &w[0].1, 1)?;
            }
            layer(model, "PReLU");
            last(model).int(0, int(w[0].1.len(), "slope count")?);
            model.bin.raw_f32(&w[0].1);
        }
        "Sigmoid" | "TanH" | "AbsVal" | "BNLL" => {
            one_in()?;
            layer(model, if ty == "TanH" { "TanH" } else { ty });
        }
        "LRN" => {
            one_in()?;
            let p = l.lrn_param.clone().unwrap_or_default();
            layer(model, "LRN");
            last(model)
                .int(0, p.norm_region.unwrap_or(0))
                .int(1, int(p.local_size(), "local_size")?)
                .float(2, p.alpha())
                .float(3, p.beta())
                .float(4, p.k());
        }
        "Concat" => {
            let p = l.concat_param.clone().unwrap_or_default();
            let axis = match p.axis {
                Some(a) => a,
                None => int(p.concat_dim(), "concat_dim")?,
            };
            let axis = ncnn_axis(axis, "concatenation")?;
            layer(model, "Concat");
            last(model).int(0, axis);
        }
        "Eltwise" => {
            let p = l.eltwise_param.clone().unwrap_or_default();
            let op = p.operation();
            if !(0..=2).contains(&op) {
                bail!("unknown eltwise operation {op}");
            }
            if !p.coeff.is_empty() && (op != ELTWISE_SUM || p.coeff.len() != b.len()) {
                bail!("coeff needs SUM and one value per bottom");
            }
            layer(model, "Eltwise");
            last(model).int(0, op);
            if !p.coeff.is_empty() {
                last(model).floats(1, &p.coeff);
            }
        }
        "BatchNorm" => {
            one_in()?;
            let eps = l.batch_norm_param.as_ref().map_or(1e-5, |p| p.eps());
            let w = weights(blobs, l, 2)?;
            let (mean, var) = (&w[0].1, &w[1].1);
            let c = mean.len();
            check_len("the variance", var, c)?;
            // Caffe stores running sums; blob 2 holds the factor that turns them into means.
            let factor = match w.get(2).and_then(|x| x.1.first()) {
                Some(&0.0) => 0.0,
                Some(&f) => 1.0 / f,
                None => 1.0,
            };
            let (mut slope, mut bias) = (vec![1.0; c], vec![0.0; c]);
            if let Some(sc) = &n.scale {
                let p = sc.scale_param.clone().unwrap_or_default();
                let sw = weights(blobs, sc, 1 + p.bias_term.unwrap_or(false) as usize)
                    .with_context(|| {
                        format!("folded Scale `{}`", sc.name.as_deref().unwrap_or_default())
                    })?;
                check_len("the folded Scale's scale", &sw[0].1, c)?;
                slope = sw[0].1.clone();
                if p.bias_term.unwrap_or(false) {
                    check_len("the folded Scale's bias", &sw[1].1, c)?;
                    bias = sw[1].1.clone();
                }
            }
            layer(model, "BatchNorm");
            last(model).int(0, int(c, "channels")?);
            let mean: Vec<f32> = mean.iter().map(|m| m * factor).collect();
            let var: Vec<f32> = var.iter().map(|v| v * factor + eps).collect();
            model.bin.raw_f32(&slope);
            model.bin.raw_f32(&mean);
            model.bin.raw_f32(&var);
            model.bin.raw_f32(&bias);
        }
        "Scale" => {
            let p = l.scale_param.clone().unwrap_or_default();
            if p.axis() != 1 || p.num_axes() != 1 {
                bail!("only axis 1 with num_axes 1 (per channel) is supported");
            }
            let bias = p.bias_term.unwrap_or(false);
            layer(model, "Scale");
            match b.len() {
                1 => {
                    let w = weights(blobs, l, 1 + bias as usize)?;
                    let c = w[0].1.len();
                    last(model)
                        .int(0, int(c, "scale size")?)
                        .int(1, bias as i32);
                    model.bin.raw_f32(&w[0].1);
                    if bias {
                        check_len("the bias", &w[1].1, c)?;
                        model.bin.raw_f32(&w[1].1);
                    }
                }
                2 => {
                    // The scale comes from the second bottom; a bias would still be a blob.
                    last(model).int(0, -233).int(1, bias as i32);
                    if bias {
                        let w = weights(blobs, l, 1)?;
                        model.bin.raw_f32(&w[0].1);
                    }
                }
                k => bail!("{k} bottoms (1 or 2 expected)"),
            }
        }
        "Softmax" => {
            one_in()?;
            let axis = l.softmax_param.as_ref().map_or(1, |p| p.axis());
            let axis = ncnn_axis(axis, "softmax")?;
            layer(model, "Softmax");
            last(model).int(0, axis).int(1, 1);
        }
        "Dropout" => {
            one_in()?;
            let p = l.dropout_param.clone().unwrap_or_default();
            layer(model, "Dropout");
            // Without scale_train Caffe scales at test time instead of training time.
            if !p.scale_train() {
                last(model).float(0, 1.0 - p.dropout_ratio());
            }
        }
        "Flatten" => {
            one_in()?;
            let p = l.flatten_param.clone().unwrap_or_default();
            if p.axis() != 1 || p.end_axis() != -1 {
                bail!("only axis 1 to end_axis -1 is supported");
            }
            layer(model, "Flatten");
        }
        "Permute" => {
            one_in()?;
            let order = l.permute_param.as_ref().map_or(vec![], |p| p.order.clone());
            // Caffe fills the order up with the unnamed axes, ascending.
            let mut full: Vec<u32> = order.clone();
            for a in 0..4 {
                if !full.contains(&a) {
                    full.push(a);
                }
            }
            if full.len() != 4 || full.iter().any(|&a| a > 3) || full[0] != 0 {
                bail!("permute order {order:?} is not supported (4-D, batch first)");
            }
            // ncnn's order types, as the Caffe order of (c, h, w) = axes 1, 2, 3.
            const TYPES: [[u32; 3]; 6] = [
                [1, 2, 3],
                [1, 3, 2],
                [2, 1, 3],
                [2, 3, 1],
                [3, 1, 2],
                [3, 2, 1],
            ];
            let ty = TYPES
                .iter()
                .position(|o| o[..] == full[1..])
                .expect("a permutation");
            layer(model, "Permute");
            last(model).int(0, ty as i32);
        }
        "PriorBox" => {
            let p = l.prior_box_param.clone().unwrap_or_default();
            if b.len() != 2 || t.len() != 1 {
                bail!("needs two bottoms (feature, image) and one top");
            }
            if p.min_size.is_empty() {
                bail!("min_size must be set");
            }
            if !p.max_size.is_empty() && p.max_size.len() != p.min_size.len() {
                bail!("give one max_size per min_size or none");
            }
            // Caffe skips ratios already present (1 and, with flip, the inverses).
            let flip = p.flip();
            let mut seen = vec![1.0f32];
            let mut ratios = Vec::new();
            for &r in &p.aspect_ratio {
                if seen.iter().any(|s| (s - r).abs() < 1e-6) {
                    continue;
                }
                seen.push(r);
                ratios.push(r);
                if flip {
                    seen.push(1.0 / r);
                }
            }
            let variances = match p.variance.as_slice() {
                [] => [0.1; 4],
                [v] => [*v; 4],
                [a, b, c, d] => [*a, *b, *c, *d],
                v => bail!("{} variances (0, 1 or 4 expected)", v.len()),
            };
            let (img_h, img_w) = match (p.img_size, p.img_h, p.img_w) {
                (Some(s), _, _) => (s as i32, s as i32),
                (None, Some(h), Some(w)) => (h as i32, w as i32),
                _ => (-233, -233),
            };
            let (step_h, step_w) = match (p.step, p.step_h, p.step_w) {
                (Some(s), _, _) => (s, s),
                (None, Some(h), Some(w)) => (h, w),
                _ => (-233.0, -233.0),
            };
            layer(model, "PriorBox");
            let lr = last(model);
            lr.floats(0, &p.min_size);
            if !p.max_size.is_empty() {
                lr.floats(1, &p.max_size);
            }
            if !ratios.is_empty() {
                lr.floats(2, &ratios);
            }
            lr.float(3, variances[0])
                .float(4, variances[1])
                .float(5, variances[2])
                .float(6, variances[3])
                .int(7, flip as i32)
                .int(8, p.clip.unwrap_or(false) as i32)
                .int(9, img_w)
                .int(10, img_h)
                .float(11, step_w)
                .float(12, step_h)
                .float(13, p.offset());
        }
        "DetectionOutput" => {
            if b.len() != 3 || t.len() != 1 {
                bail!("needs three bottoms (loc, conf, priorbox) and one top");
            }
            let p = l.detection_output_param.clone().unwrap_or_default();
            if p.code_type() != CODE_CENTER_SIZE {
                bail!(
                    "code_type {} is not supported (only CENTER_SIZE)",
                    p.code_type()
                );
            }
            if !p.share_location() || p.background_label_id.unwrap_or(0) != 0 {
                bail!("only share_location with background label 0 is supported");
            }
            if p.variance_encoded_in_target.unwrap_or(false) {
                bail!("variance_encoded_in_target is not supported");
            }
            if p.keep_top_k() < 1 {
                bail!("keep_top_k must be set (ncnn keeps a fixed number of detections)");
            }
            let nms = p.nms_param.clone().unwrap_or_default();
            layer(model, "DetectionOutput");
            let lr = last(model);
            lr.int(0, int(p.num_classes.unwrap_or(0), "num_classes")?)
                .float(1, nms.nms_threshold());
            if let Some(k) = nms.top_k.filter(|&k| k > 0) {
                lr.int(2, k);
            }
            lr.int(3, p.keep_top_k())
                .float(4, p.confidence_threshold.unwrap_or(0.0));
        }
        "Normalize" => {
            one_in()?;
            let p = l.norm_param.clone().unwrap_or_default();
            let w = weights(blobs, l, 1)?;
            let scale = &w[0].1;
            if p.channel_shared() {
                check_len("the shared scale", scale, 1)?;
            }
            layer(model, "Normalize");
            last(model)
                .int(0, p.across_spatial() as i32)
                .int(1, p.channel_shared() as i32)
                .float(2, p.eps())
                .int(3, int(scale.len(), "scale size")?);
            model.bin.raw_f32(scale);
        }
        "Reshape" => {
            one_in()?;
            let p = l.reshape_param.clone().unwrap_or_default();
            if p.axis.unwrap_or(0) != 0 || p.num_axes() != -1 {
                bail!("only the whole-shape form (axis 0, num_axes -1) is supported");
            }
            let d = p.shape.map(|s| s.dim).unwrap_or_default();
            if d.len() < 2 || d.len() > 4 {
                bail!("shape {d:?}: 2 to 4 dimensions (batch first) are supported");
            }
            if d[0] != 0 && d[0] != 1 {
                bail!("shape {d:?} changes the batch dimension");
            }
            // Caffe lists (n, c, h, w) outermost first; ncnn keys are w, h, c.
            let rest: Vec<i32> = d[1..]
                .iter()
                .rev()
                .map(|&x| int(x, "a dimension"))
                .collect::<Result<_>>()?;
            layer(model, "Reshape");
            for (key, v) in [0u32, 1, 2].into_iter().zip(rest) {
                last(model).int(key, v);
            }
        }
        "Split" => {
            if b.len() != 1 {
                bail!("needs one bottom");
            }
            layer(model, "Split");
        }
        _ => bail!("unsupported layer type `{ty}`"),
    }
    Ok(())
}
