//! `eq quantize`: writes the int8 model that ncnn2int8 writes from an fp32 model and a scale
//! table (ncnn-format.md §7): per-channel int8 weights (round half away from zero, clamp
//! ±qmax), `8=2` (Convolution, InnerProduct) or `8=1` (ConvolutionDepthWise), then in the
//! .bin: int8-tagged weights, fp32 bias, weight scales, bottom scale, and the top scale of a
//! requantized output (`8=` + 100, ncnn's `fuse_requantize`: a Convolution / DW output that
//! feeds quantized Convolution / DW layers only, directly or through a Split).
//!
//! For `--bits 7` weights are clamped to ±63 and every quantized layer is marked `27=7`
//! (`quant::BITS_KEY`; stock ncnn ignores the key). Weights of other layers are copied as they
//! are (ncnn2int8 would convert them to fp16).

use crate::model::{Model, QuantKind, QuantLayer};
use crate::ncnn_writer::{BinWriter, Layer, ParamWriter};
use crate::table::ScaleTable;
use anyhow::{bail, Result};
use eq_runtime::quant::{self, Precision};
use std::collections::HashMap;

pub struct Options<'a> {
    pub precision: Precision,
    /// Layers to leave in fp32 even though the table has their scales.
    pub keep_fp32: &'a [String],
    /// Layers quantized with another precision than `precision` (mixed precision); the
    /// table's scales must already be on that layer's grid.
    pub overrides: &'a HashMap<String, Precision>,
}

/// What happened to each quantizable layer (for the tool's report).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub quantized: Vec<String>,
    /// Quantized layers whose output is requantized to int8 (`8=` + 100).
    pub requantized: Vec<String>,
    /// Layers left fp32, with the reason.
    pub fp32: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

/// Per-channel int8 weights: `clamp(round_half_away(w * scale[c]), ±qmax)`.
pub fn quantize_weights(layer: &QuantLayer, scales: &[f32], qmax: i32) -> Vec<i8> {
    let n = layer.channel_len();
    layer
        .weights
        .iter()
        .enumerate()
        .map(|(i, &w)| quant::quantize(w, scales[i / n], qmax))
        .collect()
}

/// Scales the table gives a layer, checked; `Ok(None)` when the layer is to stay fp32.
fn layer_scales(
    layer: &QuantLayer,
    table: &ScaleTable,
    keep: &[String],
) -> Result<std::result::Result<(Vec<f32>, f32), String>> {
    if keep.contains(&layer.name) {
        return Ok(Err("--keep-fp32".into()));
    }
    let Some(bottom) = table.activation(&layer.name) else {
        return Ok(Err("no activation scale in the table".into()));
    };
    let Some(weights) = table.weight(&layer.name) else {
        return Ok(Err(format!(
            "the table has an activation scale but no `{}_param_0` weight line",
            layer.name
        )));
    };
    if !(bottom.is_finite() && bottom > 0.0) {
        bail!(
            "layer `{}`: activation scale {bottom} must be a positive number (a dead or NaN input? recalibrate, or remove the layer's lines to keep it fp32)",
            layer.name
        );
    }
    if weights.len() != layer.channels {
        bail!(
            "layer `{}`: the table has {} weight scales, the layer has {} {}",
            layer.name,
            weights.len(),
            layer.channels,
            if layer.kind == QuantKind::ConvolutionDepthWise {
                "groups"
            } else {
                "output channels"
            }
        );
    }
    if let Some((c, s)) = weights
        .iter()
        .enumerate()
        .find(|(_, s)| !(s.is_finite() && **s >= 0.0))
    {
        bail!(
            "layer `{}`: weight scale {s} of channel {c} must be a finite number >= 0",
            layer.name
        );
    }
    Ok(Ok((weights.to_vec(), bottom)))
}

/// Every table entry must name a quantizable layer of `model`.
pub fn check_table_names(model: &Model, table: &ScaleTable) -> Result<()> {
    for name in table
        .weights
        .iter()
        .map(|(n, _)| n)
        .chain(table.activations.iter().map(|(n, _)| n))
    {
        if model.layer(name).is_none() {
            let what = match model.param.layers.iter().find(|l| &l.name == name) {
                Some(l) => format!("a {} layer, which is not quantized", l.kind),
                None => "no layer of the model".to_string(),
            };
            bail!("the table names `{name}`: {what} (is the table for another model?)");
        }
    }
    Ok(())
}

/// Builds the quantized model's param text and weight bytes.
pub fn quantize_model(
    model: &Model,
    table: &ScaleTable,
    opts: &Options,
) -> Result<(String, Vec<u8>, Report)> {
    let mut report = Report::default();
    check_table_names(model, table)?;
    for k in opts.keep_fp32 {
        if model.layer(k).is_none() {
            bail!("--keep-fp32 `{k}`: no Convolution, ConvolutionDepthWise or InnerProduct layer of that name");
        }
    }

    // Decide which layers are quantized and with what scales.
    let mut scales: HashMap<&str, (Vec<f32>, f32)> = HashMap::new();
    for l in &model.layers {
        match layer_scales(l, table, opts.keep_fp32)? {
            Ok(s) => {
                scales.insert(&l.name, s);
            }
            Err(why) => report.fp32.push((l.name.clone(), why)),
        }
    }

    // Requantize fusion: the top scale of each fused producer.
    let consumers = |blob: &str| -> Vec<usize> {
        model
            .param
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| l.bottoms.iter().any(|b| b == blob))
            .map(|(i, _)| i)
            .collect()
    };
    let quantized_conv = |li: usize| -> Option<&QuantLayer> {
        let l = &model.param.layers[li];
        let q = model.layer(&l.name)?;
        (q.kind.is_conv() && scales.contains_key(q.name.as_str())).then_some(q)
    };
    let mut top_scale: HashMap<&str, f32> = HashMap::new();
    for l in &model.layers {
        if !l.kind.is_conv() || !scales.contains_key(l.name.as_str()) {
            continue;
        }
        let direct = consumers(&l.top);
        let mut readers = Vec::new();
        let mut fusable = !direct.is_empty();
        for &c in &direct {
            let rec = &model.param.layers[c];
            if let Some(q) = quantized_conv(c) {
                readers.push(q);
            } else if rec.kind == "Split" {
                for t in &rec.tops {
                    let next = consumers(t);
                    fusable &= !next.is_empty();
                    for n in next {
                        match quantized_conv(n) {
                            Some(q) => readers.push(q),
                            None => fusable = false,
                        }
                    }
                }
            } else {
                fusable = false;
            }
        }
        if !fusable || readers.is_empty() {
            continue;
        }
        let s = scales[readers[0].name.as_str()].1;
        if let Some(other) = readers.iter().find(|r| scales[r.name.as_str()].1 != s) {
            report.warnings.push(format!(
                "`{}` feeds `{}` (scale {s}) and `{}` (scale {}) as int8 with the first one's scale, as ncnn does; give consumers of one blob equal scales to avoid the mismatch",
                l.name,
                readers[0].name,
                other.name,
                scales[other.name.as_str()].1
            ));
        }
        top_scale.insert(&l.name, s);
    }

    let mut param = ParamWriter::new();
    let mut bin = BinWriter::new();
    for (li, rec) in model.param.layers.iter().enumerate() {
        let layer = param.copy_layer(rec)?;
        let q = model.layer(&rec.name);
        let Some((q, (wscales, bottom))) = q.and_then(|q| Some((q, scales.get(q.name.as_str())?)))
        else {
            bin.bytes
                .extend_from_slice(&model.bin[model.ranges[li].clone()]);
            continue;
        };
        let top = top_scale.get(q.name.as_str()).copied();
        let precision = opts
            .overrides
            .get(&q.name)
            .copied()
            .unwrap_or(opts.precision);
        write_quantized_layer(layer, &mut bin, q, wscales, *bottom, top, precision);
        if top.is_some() {
            report.requantized.push(q.name.clone());
        }
        report.quantized.push(q.name.clone());
    }
    Ok((param.to_text()?, bin.bytes, report))
}

/// Writes one quantized layer as ncnn2int8 does: `8=` (1 for ConvolutionDepthWise, 2
/// otherwise, + 100 with a requantized output), `27=7` for INT7, and in the .bin the
/// int8-tagged weights, fp32 bias, weight scales, bottom scale and the top scale if any.
/// `layer` already holds the fp32 layer's params.
pub fn write_quantized_layer(
    layer: &mut Layer,
    bin: &mut BinWriter,
    q: &QuantLayer,
    wscales: &[f32],
    bottom: f32,
    top: Option<f32>,
    precision: Precision,
) {
    let base = if q.kind == QuantKind::ConvolutionDepthWise {
        1
    } else {
        2
    };
    layer.int(8, base + if top.is_some() { 100 } else { 0 });
    if precision == Precision::Int7 {
        layer.int(quant::BITS_KEY, 7);
    }
    bin.tagged_i8(&quantize_weights(q, wscales, precision.qmax()));
    if let Some(b) = &q.bias {
        bin.raw_f32(b);
    }
    bin.raw_f32(wscales);
    bin.raw_f32(&[bottom]);
    if let Some(t) = top {
        bin.raw_f32(&[t]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Conv, NetBuilder};
    use eq_runtime::Shape;

    /// data -> c0 (3x3) -> split -> c1, c2 (1x1) -> concat -> dw (3x3 DW) -> gap -> fc
    fn model() -> Model {
        let mut b = NetBuilder::new(3);
        let x = b.input("data", Shape::d3(6, 6, 3));
        let x = b.conv("c0", &x, Conv::new(4, 3).pad(1).relu()).unwrap();
        let s = b.split("sp", &x, 2);
        let a = b.conv("c1", &s[0], Conv::new(4, 1)).unwrap();
        let c = b.conv("c2", &s[1], Conv::new(4, 1)).unwrap();
        let x = b.concat("cat", &[&a, &c], 0).unwrap();
        let x = b.depthwise("dw", &x, Conv::dw(3).pad(1).relu()).unwrap();
        let x = b.global_avg_pool("gap", &x);
        b.inner_product("fc", &x, 5);
        let m = b.finish();
        Model::from_memory(m.param.to_text().unwrap().as_bytes(), &m.bin.bytes).unwrap()
    }

    fn table(model: &Model) -> ScaleTable {
        let mut t = ScaleTable::default();
        for l in &model.layers {
            t.set_weight(
                &l.name,
                crate::calibrate::weight_scales(l, crate::calibrate::Method::Max, 8),
            );
            t.set_activation(&l.name, 10.0 + l.index as f32);
        }
        t
    }

    fn parse(text: &str) -> eq_runtime::model::param::ParamFile {
        eq_runtime::model::parse_param(text.as_bytes(), "q").unwrap()
    }

    #[test]
    fn flags_fusion_and_layout() {
        let m = model();
        let t = table(&m);
        let opts = Options {
            precision: Precision::Int8,
            keep_fp32: &[],
            overrides: &Default::default(),
        };
        let (text, bin, report) = quantize_model(&m, &t, &opts).unwrap();
        let p = parse(&text);
        let term = |name: &str| {
            let l = p.layers.iter().find(|l| l.name == name).unwrap();
            l.params.int(8, 0).unwrap()
        };
        // c0 feeds a Split whose outputs both go to quantized convs: fused with c1's scale.
        assert_eq!(term("c0"), 102);
        // c1/c2 feed Concat: not fused. dw feeds Pooling: not fused. fc: never.
        assert_eq!(
            (term("c1"), term("c2"), term("dw"), term("fc")),
            (2, 2, 1, 2)
        );
        assert_eq!(report.requantized, ["c0"]);
        assert_eq!(report.quantized.len(), 5);
        assert!(report.fp32.is_empty());

        // c0's blobs: int8 weights (4*3*9 = 108 bytes), bias, 4 weight scales, bottom, top.
        let c0 = m.layer("c0").unwrap();
        assert_eq!(&bin[..4], &[0x38, 0x4B, 0x0D, 0x00]);
        let q = quantize_weights(c0, t.weight("c0").unwrap(), 127);
        assert_eq!(bin[4..112].iter().map(|&b| b as i8).collect::<Vec<_>>(), q);
        let floats = |at: usize, n: usize| -> Vec<f32> {
            bin[at..at + 4 * n]
                .chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        assert_eq!(floats(112, 4), c0.bias.clone().unwrap());
        assert_eq!(floats(128, 4), t.weight("c0").unwrap());
        let c1_scale = t.activation("c1").unwrap();
        assert_eq!(floats(144, 2), [t.activation("c0").unwrap(), c1_scale]);
        // Each channel's largest weight maps to exactly ±127 (max calibration).
        for c in 0..4 {
            let ch = &q[c * 27..(c + 1) * 27];
            assert_eq!(ch.iter().map(|v| v.unsigned_abs()).max(), Some(127));
        }

        // The runtime loads the result and reads the scales back in the same order.
        let net = eq_runtime::Net::from_memory(text.as_bytes(), &bin, &Default::default());
        assert!(net.is_ok(), "{:?}", net.err());
    }

    #[test]
    fn int7_keep_fp32_and_missing_layers() {
        let m = model();
        let mut t = table(&m);
        for l in &m.layers {
            t.set_weight(
                &l.name,
                crate::calibrate::weight_scales(l, crate::calibrate::Method::Max, 7),
            );
        }
        t.activations.retain(|(n, _)| n != "c2");
        let keep = vec!["c1".to_string()];
        let opts = Options {
            precision: Precision::Int7,
            keep_fp32: &keep,
            overrides: &Default::default(),
        };
        let (text, bin, report) = quantize_model(&m, &t, &opts).unwrap();
        let p = parse(&text);
        let get = |name: &str, key: usize| {
            let l = p.layers.iter().find(|l| l.name == name).unwrap();
            l.params.int(key, 0).unwrap()
        };
        // c1 kept, c2 missing: c0's split has fp32 readers, so no fusion.
        assert_eq!((get("c0", 8), get("c1", 8), get("c2", 8)), (2, 0, 0));
        assert_eq!((get("c0", 27), get("dw", 27), get("c1", 27)), (7, 7, 0));
        assert_eq!(
            report.fp32,
            [
                ("c1".to_string(), "--keep-fp32".to_string()),
                (
                    "c2".to_string(),
                    "no activation scale in the table".to_string()
                )
            ]
        );
        // Every int8 weight of c0 lies in ±63.
        assert!(bin[4..112].iter().all(|&b| (b as i8).unsigned_abs() <= 63));
        assert!(eq_runtime::Net::from_memory(text.as_bytes(), &bin, &Default::default()).is_ok());
    }

    #[test]
    fn bad_tables_are_errors() {
        let m = model();
        let opts = Options {
            precision: Precision::Int8,
            keep_fp32: &[],
            overrides: &Default::default(),
        };
        let err = |t: &ScaleTable| format!("{:#}", quantize_model(&m, t, &opts).unwrap_err());
        let mut t = table(&m);
        t.set_activation("nope", 1.0);
        assert!(err(&t).contains("`nope`: no layer"), "{}", err(&t));
        let mut t = table(&m);
        t.set_activation("gap", 1.0);
        assert!(err(&t).contains("Pooling"), "{}", err(&t));
        let mut t = table(&m);
        t.set_activation("c1", f32::NAN);
        assert!(err(&t).contains("activation scale NaN"), "{}", err(&t));
        let mut t = table(&m);
        t.set_activation("c1", 0.0);
        assert!(err(&t).contains("positive"), "{}", err(&t));
        let mut t = table(&m);
        t.set_weight("c1", vec![1.0; 3]);
        assert!(err(&t).contains("3 weight scales"), "{}", err(&t));
        let mut t = table(&m);
        t.set_weight("c1", vec![1.0, -1.0, 1.0, 1.0]);
        assert!(err(&t).contains("channel 1"), "{}", err(&t));
        // A zero weight scale (all-zero channel) is allowed: its weights become 0.
        let mut t = table(&m);
        t.set_weight("c1", vec![0.0, 1.0, 1.0, 1.0]);
        assert!(quantize_model(&m, &t, &opts).is_ok());
        let keep = vec!["pool".to_string()];
        let opts = Options {
            precision: Precision::Int8,
            keep_fp32: &keep,
            overrides: &Default::default(),
        };
        assert!(quantize_model(&m, &table(&m), &opts).is_err());
    }
}
