//! `eq report`: how far each layer's output in a quantized model is from the fp32 model's,
//! as the cosine similarity of the two blobs averaged over images, and which arithmetic each
//! layer ran in (and why). Writes a text table and a hand-written SVG bar chart.

use anyhow::{bail, Result};
use eq_runtime::quant::Precision;
use eq_runtime::Net;
use std::fmt::Write as _;

/// One layer of the quantized model, in execution order.
#[derive(Clone, Debug)]
pub struct LayerRow {
    pub name: String,
    pub kind: String,
    /// The layer's first output blob, compared between the two models.
    pub blob: String,
    /// "INT8", "INT7" or "FP32".
    pub precision: &'static str,
    pub reason: String,
    /// The layer's index in the quantized net's graph.
    pub layer: Option<usize>,
    sum: f64,
    min: f64,
    count: usize,
}

impl LayerRow {
    /// Mean cosine over the images compared so far (None: the fp32 model has no such blob).
    pub fn cosine(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    pub fn min_cosine(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }
}

/// Cosine similarity; two all-zero blobs count as equal, one all-zero blob as 0.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    cosine_of(ab, aa, bb)
}

/// Cosine from `<a,b>`, `|a|²` and `|b|²`, with [`cosine`]'s rules for zero vectors.
pub fn cosine_of(ab: f64, aa: f64, bb: f64) -> f64 {
    match (aa == 0.0, bb == 0.0) {
        (true, true) => 1.0,
        (true, false) | (false, true) => 0.0,
        _ => ab / (aa.sqrt() * bb.sqrt()),
    }
}

const INTEGER_KINDS: [&str; 3] = ["Convolution", "ConvolutionDepthWise", "InnerProduct"];

fn precision_and_reason(
    kind: &str,
    params_bits: i32,
    has_scales: bool,
    p: Option<Precision>,
) -> (&'static str, String) {
    match p {
        Some(Precision::Int8) => ("INT8", "int8 weights and scales in the model".into()),
        Some(Precision::Int7) if params_bits == 7 => ("INT7", "int8 scales, marked 7-bit (27=7)".into()),
        Some(Precision::Int7) => ("INT7", "int8 scales, INT7 forced by --precision int7".into()),
        None if !INTEGER_KINDS.contains(&kind) => (
            "FP32",
            "layer type has no integer kernel (only Convolution, ConvolutionDepthWise, InnerProduct)".into(),
        ),
        None if has_scales => ("FP32", "has int8 scales, fp32 forced by --precision fp32".into()),
        None => (
            "FP32",
            "no int8 scales in the model (not in the table, or --keep-fp32)".into(),
        ),
    }
}

/// Runs the fp32 and the quantized net (both specs with `keep_all_blobs`) on every image and
/// compares them layer by layer.
pub fn compare(
    fp32: &crate::runner::NetSpec,
    quant: &crate::runner::NetSpec,
    prep: &crate::dataset::Preprocess,
    paths: &[std::path::PathBuf],
    strict: bool,
) -> Result<Comparison> {
    let (mut fnet, mut qnet) = (fp32.load()?, quant.load()?);
    let mut cmp = Comparison::new(&qnet);
    for path in paths {
        let Some(input) = crate::dataset::skip_unreadable(path, prep.load(path), strict)? else {
            continue;
        };
        fnet.set_input(&fp32.input, &input)?;
        qnet.set_input(&quant.input, &input)?;
        fnet.run()?;
        qnet.run()?;
        cmp.add(&fnet, &qnet)?;
    }
    if cmp.images == 0 {
        bail!("none of the {} images could be read", paths.len());
    }
    Ok(cmp)
}

/// Per-layer comparison of a quantized net against the fp32 net, accumulated image by image.
/// Both nets must be loaded with `keep_all_blobs`.
pub struct Comparison {
    pub rows: Vec<LayerRow>,
    pub images: usize,
}

impl Comparison {
    pub fn new(quant: &Net) -> Comparison {
        let graph = quant.graph();
        let precisions = quant.layer_precisions();
        let rows = graph
            .order
            .iter()
            .filter(|&&li| graph.layers[li].kind != "Input")
            .filter_map(|&li| {
                let l = &graph.layers[li];
                let blob = l.tops.first()?.clone();
                let bits = l
                    .params
                    .int(eq_runtime::quant::BITS_KEY as usize, 8)
                    .unwrap_or(8);
                let has_scales = l.params.int(8, 0).unwrap_or(0) != 0;
                let (precision, reason) = precision_and_reason(
                    &l.kind,
                    bits,
                    has_scales,
                    precisions.get(li).copied().flatten(),
                );
                Some(LayerRow {
                    name: l.name.clone(),
                    kind: l.kind.clone(),
                    blob,
                    precision,
                    reason,
                    layer: Some(li),
                    sum: 0.0,
                    min: f64::INFINITY,
                    count: 0,
                })
            })
            .collect();
        Comparison { rows, images: 0 }
    }

    /// Adds one image: both nets have just run on the same input.
    pub fn add(&mut self, fp32: &Net, quant: &Net) -> Result<()> {
        for row in &mut self.rows {
            // A blob the fp32 model lacks (renamed by a tool) is left out, not an error.
            let Ok((fshape, f)) = fp32.blob_f32(&row.blob) else {
                continue;
            };
            let (qshape, q) = quant.blob_f32(&row.blob)?;
            if fshape != qshape {
                bail!(
                    "blob `{}`: fp32 model gives {fshape}, quantized model {qshape}",
                    row.blob
                );
            }
            let c = cosine(&f, &q);
            row.sum += c;
            row.min = row.min.min(c);
            row.count += 1;
        }
        self.images += 1;
        Ok(())
    }

    /// Plain-text table, one line per layer.
    pub fn text(&self) -> String {
        let name_w = self
            .rows
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let kind_w = self
            .rows
            .iter()
            .map(|r| r.kind.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# per-layer cosine similarity, fp32 vs quantized, over {} images",
            self.images
        );
        let _ = writeln!(
            s,
            "{:<name_w$}  {:<kind_w$}  {:<4}  {:>8}  {:>8}  why",
            "layer", "type", "prec", "cos_mean", "cos_min"
        );
        for r in &self.rows {
            let num = |v: Option<f64>| v.map_or("-".to_string(), |c| format!("{c:.6}"));
            let _ = writeln!(
                s,
                "{:<name_w$}  {:<kind_w$}  {:<4}  {:>8}  {:>8}  {}",
                r.name,
                r.kind,
                r.precision,
                num(r.cosine()),
                num(r.min_cosine()),
                r.reason
            );
        }
        let count = |p: &str| self.rows.iter().filter(|r| r.precision == p).count();
        let _ = writeln!(
            s,
            "# layers: {} INT8, {} INT7, {} FP32",
            count("INT8"),
            count("INT7"),
            count("FP32")
        );
        s
    }

    /// Horizontal bar chart of the mean cosine per layer, coloured by precision. The axis
    /// starts at the lowest cosine rounded down to 0.05 (at most 0.9), so small losses show.
    pub fn svg(&self) -> String {
        let rows: Vec<(&LayerRow, f64)> = self
            .rows
            .iter()
            .filter_map(|r| r.cosine().map(|c| (r, c)))
            .collect();
        let lowest = rows.iter().map(|&(_, c)| c).fold(1.0f64, f64::min);
        let lo = ((lowest * 20.0).floor() / 20.0).clamp(-1.0, 0.9);
        let (label_w, bar_w, row_h, top) = (240.0, 480.0, 16.0, 40.0);
        let width = label_w + bar_w + 90.0;
        let height = top + row_h * rows.len() as f64 + 30.0;
        let x_of = |c: f64| label_w + bar_w * ((c - lo) / (1.0 - lo)).clamp(0.0, 1.0);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" font-size="11">"#
        );
        let _ = writeln!(
            s,
            r#"<text x="4" y="14">cosine(fp32, quantized) per layer, mean over {} images; axis {lo:.2} .. 1</text>"#,
            self.images
        );
        let legend = [
            ("INT8", "#3b75af"),
            ("INT7", "#ef8636"),
            ("FP32", "#9a9a9a"),
        ];
        for (i, (p, colour)) in legend.iter().enumerate() {
            let x = 4.0 + 70.0 * i as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{x}" y="22" width="10" height="10" fill="{colour}"/><text x="{}" y="31">{p}</text>"#,
                x + 14.0
            );
        }
        for (i, (r, c)) in rows.iter().enumerate() {
            let y = top + row_h * i as f64;
            let colour = legend
                .iter()
                .find(|(p, _)| *p == r.precision)
                .map_or("#000", |l| l.1);
            let x1 = x_of(*c);
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{label_w}" y="{y}" width="{:.1}" height="{}" fill="{colour}"/><text x="{:.1}" y="{}">{c:.4}</text>"#,
                label_w - 4.0,
                y + 11.0,
                xml_escape(&r.name),
                x1 - label_w,
                row_h - 3.0,
                x1 + 3.0,
                y + 11.0
            );
        }
        let _ = writeln!(s, "</svg>");
        s
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Conv, NetBuilder};
    use eq_runtime::{Options, PrecisionChoice, Shape};

    #[test]
    fn cosine_cases() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-12);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-12);
        assert!((cosine(&[1.0, 0.0], &[-1.0, 0.0]) + 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[0.0; 3], &[0.0; 3]), 1.0);
        assert_eq!(cosine(&[0.0; 3], &[1.0; 3]), 0.0);
    }

    /// fp32 demo-like model, its int8 version with c1 kept fp32, compared on random inputs.
    #[test]
    fn report_of_a_quantized_model() {
        let mut b = NetBuilder::new(5);
        let x = b.input("data", Shape::d3(8, 8, 3));
        let x = b.conv("c0", &x, Conv::new(8, 3).pad(1).relu()).unwrap();
        let x = b.conv("c1", &x, Conv::new(8, 1).relu()).unwrap();
        let x = b.global_avg_pool("gap", &x);
        b.inner_product("fc", &x, 4);
        let m = b.finish();
        let param = m.param.to_text().unwrap();
        let model = crate::model::Model::from_memory(param.as_bytes(), &m.bin.bytes).unwrap();
        let mut table = crate::table::ScaleTable::default();
        for l in &model.layers {
            table.set_weight(
                &l.name,
                crate::calibrate::weight_scales(l, crate::calibrate::Method::Max, 8),
            );
            table.set_activation(&l.name, 50.0);
        }
        let keep = ["c1".to_string()];
        let (qparam, qbin, _) = crate::quantize::quantize_model(
            &model,
            &table,
            &crate::quantize::Options {
                precision: Precision::Int7,
                keep_fp32: &keep,
                overrides: &Default::default(),
            },
        )
        .unwrap();
        let opts = Options {
            keep_all_blobs: true,
            threads: 1,
            ..Options::default()
        };
        let mut fp32 = Net::from_memory(param.as_bytes(), &m.bin.bytes, &opts).unwrap();
        let mut quant = Net::from_memory(qparam.as_bytes(), &qbin, &opts).unwrap();
        let mut cmp = Comparison::new(&quant);
        let names: Vec<_> = cmp
            .rows
            .iter()
            .map(|r| (r.name.as_str(), r.precision))
            .collect();
        assert_eq!(
            names,
            [
                ("c0", "INT7"),
                ("c1", "FP32"),
                ("gap", "FP32"),
                ("fc", "INT7")
            ]
        );
        assert!(cmp.rows[0].reason.contains("27=7"));
        assert!(cmp.rows[1].reason.contains("no int8 scales"));
        let mut rng = eq_runtime::rng::Rng::new(9);
        for _ in 0..3 {
            let input = rng.vec(3 * 8 * 8, -1.0, 1.0);
            fp32.set_input("data", &input).unwrap();
            quant.set_input("data", &input).unwrap();
            fp32.run().unwrap();
            quant.run().unwrap();
            cmp.add(&fp32, &quant).unwrap();
        }
        assert_eq!(cmp.images, 3);
        for r in &cmp.rows {
            let c = r.cosine().unwrap();
            assert!(c > 0.9 && c <= 1.0 + 1e-9, "{}: {c}", r.name);
            assert!(r.min_cosine().unwrap() <= c + 1e-12);
        }
        // A 7-bit layer is not exact.
        assert!(cmp.rows[0].cosine().unwrap() < 1.0);
        let text = cmp.text();
        assert!(
            text.contains("over 3 images") && text.contains("2 INT7, 2 FP32"),
            "{text}"
        );
        let svg = cmp.svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 3 + 4);

        // Forcing fp32 on the quantized model: every layer fp32, with the reason.
        let forced = Options {
            precision: PrecisionChoice::Fp32,
            ..opts
        };
        let q32 = Net::from_memory(qparam.as_bytes(), &qbin, &forced).unwrap();
        let cmp = Comparison::new(&q32);
        assert!(cmp.rows[0].reason.contains("forced by --precision fp32"));
    }
}
