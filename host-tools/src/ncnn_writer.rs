//! Writes ncnn models: the `.param` text (ncnn-format.md §2) and the `.bin` weights (§4).
//!
//! Layers are added in file order; each layer's weights must be appended to the `.bin` in the
//! order that layer type reads them (§4.4). Tagged blobs carry a flag word (fp32, fp16, int8);
//! raw blobs are plain fp32. Every blob is padded to 4 bytes.

use anyhow::{bail, Context, Result};
use eq_runtime::model::param::LayerRecord;
use eq_runtime::model::paramdict::{ParamDict, Value};
use eq_runtime::model::weights::f32_to_f16;
use std::fmt::Write as _;
use std::path::Path;

const MAGIC: i32 = 7_767_517;
const TAG_FP16: u32 = 0x0130_6B47;
const TAG_INT8: u32 = 0x000D_4B38;

/// One parameter value as written in a `.param` file.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    Int(i32),
    Float(f32),
    Ints(Vec<i32>),
    Floats(Vec<f32>),
    /// A string (pnnx's shape expressions), written quoted.
    Str(String),
}

/// One layer line: `type name n_in n_out bottoms.. tops.. key=value..`.
#[derive(Clone, Debug)]
pub struct Layer {
    pub kind: String,
    pub name: String,
    pub bottoms: Vec<String>,
    pub tops: Vec<String>,
    pub params: Vec<(u32, ParamValue)>,
}

impl Layer {
    pub fn int(&mut self, key: u32, v: i32) -> &mut Layer {
        self.set(key, ParamValue::Int(v))
    }
    pub fn float(&mut self, key: u32, v: f32) -> &mut Layer {
        self.set(key, ParamValue::Float(v))
    }
    pub fn ints(&mut self, key: u32, v: &[i32]) -> &mut Layer {
        self.set(key, ParamValue::Ints(v.to_vec()))
    }
    pub fn floats(&mut self, key: u32, v: &[f32]) -> &mut Layer {
        self.set(key, ParamValue::Floats(v.to_vec()))
    }
    /// Sets a key, replacing an earlier value so each key is written once.
    pub fn set(&mut self, key: u32, v: ParamValue) -> &mut Layer {
        self.params.retain(|(k, _)| *k != key);
        self.params.push((key, v));
        self
    }
}

fn to_param_value(layer: &str, key: usize, v: &Value) -> Result<ParamValue> {
    Ok(match v {
        Value::Int(i) => ParamValue::Int(*i),
        Value::Float(f) => ParamValue::Float(*f),
        Value::IntArray(a) => ParamValue::Ints(a.clone()),
        Value::FloatArray(a) => ParamValue::Floats(a.clone()),
        Value::Str(t) => ParamValue::Str(t.clone()),
        Value::Raw(_) | Value::RawArray(_) => bail!(
            "layer `{layer}` key {key}: untyped (.param.bin) values cannot be rewritten; use a text .param"
        ),
    })
}

fn copy_params(layer: &str, pd: &ParamDict) -> Result<Vec<(u32, ParamValue)>> {
    pd.keys()
        .map(|k| Ok((k as u32, to_param_value(layer, k, pd.get(k).unwrap())?)))
        .collect()
}

/// The `.param` text of a model under construction.
#[derive(Clone, Debug, Default)]
pub struct ParamWriter {
    pub layers: Vec<Layer>,
}

impl ParamWriter {
    pub fn new() -> ParamWriter {
        ParamWriter::default()
    }

    /// Appends a layer and returns it for setting params.
    pub fn layer(&mut self, kind: &str, name: &str, bottoms: &[&str], tops: &[&str]) -> &mut Layer {
        self.layers.push(Layer {
            kind: kind.into(),
            name: name.into(),
            bottoms: bottoms.iter().map(|s| s.to_string()).collect(),
            tops: tops.iter().map(|s| s.to_string()).collect(),
            params: Vec::new(),
        });
        self.layers.last_mut().unwrap()
    }

    /// Appends a copy of a parsed layer (type, name, blobs and params).
    pub fn copy_layer(&mut self, rec: &LayerRecord) -> Result<&mut Layer> {
        let params = copy_params(&rec.name, &rec.params)?;
        let layer = self.layer(
            &rec.kind,
            &rec.name,
            &rec.bottoms.iter().map(String::as_str).collect::<Vec<_>>(),
            &rec.tops.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        layer.params = params;
        Ok(layer)
    }

    /// The file text. Fails on what ncnn cannot read: empty model, duplicate blob or layer
    /// names, names with whitespace, keys >= 32, non-finite floats.
    pub fn to_text(&self) -> Result<String> {
        if self.layers.is_empty() {
            bail!("a model needs at least one layer");
        }
        let mut blobs: Vec<&str> = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for l in &self.layers {
            for name in std::iter::once(&l.name).chain(&l.bottoms).chain(&l.tops) {
                if name.is_empty() || name.len() > 255 || name.contains(char::is_whitespace) {
                    bail!(
                        "layer `{}`: bad name `{name}` (1..255 chars, no spaces)",
                        l.name
                    );
                }
            }
            if names.contains(&l.name.as_str()) {
                bail!("duplicate layer name `{}`", l.name);
            }
            names.push(&l.name);
            for b in &l.bottoms {
                if !blobs.contains(&b.as_str()) {
                    blobs.push(b);
                }
            }
            for t in &l.tops {
                // ncnn binds a name to its first blob, so a top may not reuse a name.
                if blobs.contains(&t.as_str()) {
                    bail!("layer `{}`: output blob `{t}` already exists", l.name);
                }
                blobs.push(t);
            }
        }

        let mut s = format!("{MAGIC}\n{} {}\n", self.layers.len(), blobs.len());
        for l in &self.layers {
            write!(
                s,
                "{:<16} {:<24} {} {}",
                l.kind,
                l.name,
                l.bottoms.len(),
                l.tops.len()
            )?;
            for b in l.bottoms.iter().chain(&l.tops) {
                write!(s, " {b}")?;
            }
            for (key, v) in &l.params {
                if *key >= 32 {
                    bail!("layer `{}`: param key {key} out of range 0..32", l.name);
                }
                let value = format_value(v).with_context(|| format!("layer `{}`", l.name))?;
                match v {
                    // Arrays use the old count-prefixed form every ncnn version reads.
                    ParamValue::Ints(_) | ParamValue::Floats(_) => {
                        write!(s, " {}={value}", -23300 - *key as i32)?
                    }
                    _ => write!(s, " {key}={value}")?,
                }
            }
            s.push('\n');
        }
        Ok(s)
    }
}

/// A float as ncnn's parser reads it back exactly: always containing `e` (so it is typed
/// float) and the shortest digits that round-trip.
fn format_float(v: f32) -> Result<String> {
    if !v.is_finite() {
        bail!("non-finite param value {v}");
    }
    Ok(format!("{v:e}"))
}

fn format_value(v: &ParamValue) -> Result<String> {
    Ok(match v {
        ParamValue::Int(i) => i.to_string(),
        ParamValue::Float(f) => format_float(*f)?,
        ParamValue::Ints(a) => {
            let items: Vec<String> = a.iter().map(|i| i.to_string()).collect();
            format!("{},{}", a.len(), items.join(","))
        }
        ParamValue::Floats(a) => {
            let items = a
                .iter()
                .map(|f| format_float(*f))
                .collect::<Result<Vec<_>>>()?;
            format!("{},{}", a.len(), items.join(","))
        }
        ParamValue::Str(t) => {
            if t.contains(['"', '\n', '\r']) || t.len() > 255 {
                bail!("string param `{t}` cannot be written (a quote, a line break, or over 255 bytes)");
            }
            format!("\"{t}\"")
        }
    })
}

/// The `.bin` weight stream.
#[derive(Clone, Debug, Default)]
pub struct BinWriter {
    pub bytes: Vec<u8>,
}

impl BinWriter {
    pub fn new() -> BinWriter {
        BinWriter::default()
    }

    /// A tagged fp32 blob (flag word 0), as ncnn's writer emits for float weights.
    pub fn tagged_f32(&mut self, data: &[f32]) {
        self.word(0);
        self.raw_f32(data);
    }

    /// A tagged fp16 blob; values are rounded to nearest even.
    pub fn tagged_f16(&mut self, data: &[f32]) {
        self.word(TAG_FP16);
        for v in data {
            self.bytes.extend_from_slice(&f32_to_f16(*v).to_le_bytes());
        }
        self.pad();
    }

    /// A tagged int8 blob (selects a layer's int8 path).
    pub fn tagged_i8(&mut self, data: &[i8]) {
        self.word(TAG_INT8);
        self.bytes.extend(data.iter().map(|&v| v as u8));
        self.pad();
    }

    /// A raw fp32 blob (no flag): biases, BatchNorm statistics, int8 scales.
    pub fn raw_f32(&mut self, data: &[f32]) {
        for v in data {
            self.bytes.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn word(&mut self, w: u32) {
        self.bytes.extend_from_slice(&w.to_le_bytes());
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

/// A model being written: param text plus weights, kept in step by the caller.
#[derive(Clone, Debug, Default)]
pub struct ModelWriter {
    pub param: ParamWriter,
    pub bin: BinWriter,
}

impl ModelWriter {
    pub fn new() -> ModelWriter {
        ModelWriter::default()
    }

    /// Writes `<dir>/<stem>.param` and `<dir>/<stem>.bin`; returns their paths.
    pub fn save(&self, dir: &Path, stem: &str) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        let param = dir.join(format!("{stem}.param"));
        let bin = dir.join(format!("{stem}.bin"));
        std::fs::write(&param, self.param.to_text()?)
            .with_context(|| format!("{}", param.display()))?;
        std::fs::write(&bin, &self.bin.bytes).with_context(|| format!("{}", bin.display()))?;
        Ok((param, bin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eq_runtime::model::paramdict::Value;
    use eq_runtime::model::weights::{Source, Tagged, WeightReader};
    use std::sync::Arc;

    #[test]
    fn param_text_parses_back_with_the_runtime() {
        let mut p = ParamWriter::new();
        p.layer("Input", "in", &[], &["data"])
            .int(0, 8)
            .int(1, 4)
            .int(2, 3);
        p.layer("ReLU", "r", &["data"], &["a"]).float(0, 0.1);
        p.layer("Split", "s", &["a"], &["b", "c"])
            .floats(3, &[1.5, -2.25e-7, 3.0])
            .ints(30, &[3, 8, 4, 3]);
        let text = p.to_text().unwrap();
        assert!(text.starts_with("7767517\n3 4\n"), "{text}");
        let parsed = eq_runtime::model::parse_param(text.as_bytes(), "t").unwrap();
        assert_eq!(parsed.layers.len(), 3);
        let s = &parsed.layers[2];
        assert_eq!((s.kind.as_str(), s.name.as_str()), ("Split", "s"));
        assert_eq!(s.bottoms, vec!["a"]);
        assert_eq!(s.tops, vec!["b", "c"]);
        assert_eq!(
            s.params.get(3),
            Some(&Value::FloatArray(vec![1.5, -2.25e-7, 3.0]))
        );
        assert_eq!(s.params.get(30), Some(&Value::IntArray(vec![3, 8, 4, 3])));
        assert_eq!(parsed.layers[1].params.get(0), Some(&Value::Float(0.1)));
        assert_eq!(parsed.layers[0].params.get(2), Some(&Value::Int(3)));
    }

    #[test]
    fn floats_round_trip_exactly() {
        for v in [
            0.1f32,
            1.0,
            -3.4028235e38,
            1.1754944e-38,
            1e-45,
            0.0,
            123456.79,
        ] {
            let text = format_float(v).unwrap();
            assert!(text.contains('e'), "{text}");
            assert!(text.len() <= 15, "ncnn reads at most 15 chars: {text}");
            assert_eq!(text.parse::<f32>().unwrap(), v);
        }
        assert!(format_float(f32::NAN).is_err());
    }

    #[test]
    fn rejects_what_ncnn_cannot_read() {
        let mut p = ParamWriter::new();
        assert!(p.to_text().is_err());
        p.layer("Input", "in", &[], &["data"]);
        p.layer("ReLU", "r", &["data"], &["data"]);
        let e = p.to_text().unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        p.layers.pop();
        p.layer("ReLU", "in", &["data"], &["x"]);
        assert!(p
            .to_text()
            .unwrap_err()
            .to_string()
            .contains("duplicate layer"));
        p.layers.pop();
        p.layer("ReLU", "r", &["data"], &["x y"]);
        assert!(p.to_text().unwrap_err().to_string().contains("bad name"));
        p.layers.pop();
        p.layer("ReLU", "r", &["data"], &["x"]).int(32, 1);
        assert!(p.to_text().unwrap_err().to_string().contains("key 32"));
    }

    #[test]
    fn string_params_round_trip() {
        let mut p = ParamWriter::new();
        p.layer("Input", "in", &[], &["data"])
            .int(0, 6)
            .int(1, 4)
            .int(2, 3);
        p.layer("Reshape", "r", &["data"], &["x"])
            .set(6, ParamValue::Str("0h,*(0w,0c)".into()));
        let text = p.to_text().unwrap();
        assert!(text.contains(" 6=\"0h,*(0w,0c)\""), "{text}");
        let back = eq_runtime::model::param::parse_text(&text, "t").unwrap();
        assert_eq!(
            back.layers[1].params.get(6),
            Some(&Value::Str("0h,*(0w,0c)".into()))
        );
        p.layers[1].set(6, ParamValue::Str("a\"b".into()));
        assert!(p.to_text().is_err());
    }

    #[test]
    fn bin_blobs_read_back_in_order() {
        let mut b = BinWriter::new();
        b.tagged_f32(&[1.0, -2.0, 3.5]);
        b.tagged_f16(&[0.5, -1.0, 65504.0]);
        b.tagged_i8(&[-127, 0, 5, 127, 1]);
        b.raw_f32(&[7.0, 8.0]);
        assert_eq!(b.bytes.len(), 4 + 12 + 4 + 8 + 4 + 8 + 8);

        let mut r = WeightReader::new(Arc::new(Source::from_bytes(&b.bytes)), "t.bin");
        let f32s = |t: Tagged| t.into_f32().unwrap().to_vec();
        assert_eq!(f32s(r.tagged(3, "a").unwrap()), vec![1.0, -2.0, 3.5]);
        assert_eq!(f32s(r.tagged(3, "b").unwrap()), vec![0.5, -1.0, 65504.0]);
        match r.tagged(5, "c").unwrap() {
            Tagged::I8(v) => assert_eq!(v.to_vec(), vec![-127, 0, 5, 127, 1]),
            other => panic!("expected int8, got {other:?}"),
        }
        assert_eq!(r.raw(2, "d").unwrap().to_vec(), vec![7.0, 8.0]);
        r.finish().unwrap();
    }
}
