//! The ncnn2table scale table (easyquant.md §8): one `<layer>_param_0 s0 s1 …` line per
//! quantizable layer with its per-channel weight scales, then one `<layer> s` line per layer
//! with the scale of its input blob. Read line by line as ncnn2int8 does.

use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::Path;

const WEIGHT_SUFFIX: &str = "_param_0";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScaleTable {
    /// Layer name -> weight scales, in file order.
    pub weights: Vec<(String, Vec<f32>)>,
    /// Layer name -> bottom blob scale, in file order.
    pub activations: Vec<(String, f32)>,
}

impl ScaleTable {
    pub fn weight(&self, layer: &str) -> Option<&[f32]> {
        self.weights
            .iter()
            .find(|(n, _)| n == layer)
            .map(|(_, v)| v.as_slice())
    }

    pub fn activation(&self, layer: &str) -> Option<f32> {
        self.activations
            .iter()
            .find(|(n, _)| n == layer)
            .map(|(_, v)| *v)
    }

    pub fn set_weight(&mut self, layer: &str, scales: Vec<f32>) {
        match self.weights.iter_mut().find(|(n, _)| n == layer) {
            Some(e) => e.1 = scales,
            None => self.weights.push((layer.to_string(), scales)),
        }
    }

    pub fn set_activation(&mut self, layer: &str, scale: f32) {
        match self.activations.iter_mut().find(|(n, _)| n == layer) {
            Some(e) => e.1 = scale,
            None => self.activations.push((layer.to_string(), scale)),
        }
    }

    /// Parses table text. A key ending in `_param_0` is a weight line; `_param_1..3` lines
    /// (other layer types in newer ncnn) are ignored; any other key is an activation line
    /// and must carry exactly one number.
    pub fn parse(text: &str) -> Result<ScaleTable> {
        let mut t = ScaleTable::default();
        for (n, line) in text.lines().enumerate() {
            let mut tokens = line.split_whitespace();
            let Some(key) = tokens.next() else { continue };
            if key.starts_with('#') {
                continue;
            }
            let values = tokens
                .map(|v| v.parse::<f32>())
                .collect::<std::result::Result<Vec<f32>, _>>()
                .with_context(|| format!("line {}: `{key}`: bad number", n + 1))?;
            if values.is_empty() {
                bail!("line {}: `{key}` has no scale", n + 1);
            }
            if let Some(layer) = key.strip_suffix(WEIGHT_SUFFIX) {
                if t.weight(layer).is_some() {
                    bail!("line {}: weight scales of `{layer}` given twice", n + 1);
                }
                t.weights.push((layer.to_string(), values));
            } else if key.contains("_param_") {
                continue;
            } else {
                if values.len() != 1 {
                    bail!(
                        "line {}: activation scale of `{key}` has {} values, expected 1",
                        n + 1,
                        values.len()
                    );
                }
                if t.activation(key).is_some() {
                    bail!("line {}: activation scale of `{key}` given twice", n + 1);
                }
                t.activations.push((key.to_string(), values[0]));
            }
        }
        Ok(t)
    }

    pub fn read(path: &Path) -> Result<ScaleTable> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        ScaleTable::parse(&text).with_context(|| format!("{}", path.display()))
    }

    /// The table text: weight lines, then activation lines, values written so they read
    /// back exactly (shortest round-trip decimal), each line with ncnn's trailing space.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (name, scales) in &self.weights {
            s.push_str(name);
            s.push_str(WEIGHT_SUFFIX);
            for v in scales {
                let _ = write!(s, " {v}");
            }
            s.push_str(" \n");
        }
        for (name, v) in &self.activations {
            let _ = writeln!(s, "{name} {v} ");
        }
        s
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        }
        std::fs::write(path, self.to_text()).with_context(|| format!("{}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_ncnn_text() {
        let text = "conv1_param_0 156.250000 98.431373 211.666672 \n\
                    conv2_param_0 1.5 \n\
                    conv1 42.137500 \n\
                    conv2 0.001 \n";
        let t = ScaleTable::parse(text).unwrap();
        assert_eq!(t.weight("conv1").unwrap(), [156.25, 98.43137, 211.66667]);
        assert_eq!(t.activation("conv2"), Some(0.001));
        assert_eq!(t.activation("conv3"), None);
        let again = ScaleTable::parse(&t.to_text()).unwrap();
        assert_eq!(again, t);
        assert!(t
            .to_text()
            .starts_with("conv1_param_0 156.25 98.43137 211.66667 \n"));
        // Tiny and huge scales keep every bit.
        let mut t = ScaleTable::default();
        t.set_weight("a", vec![1.2345678e-30, 3.4e38, 0.0]);
        t.set_activation("a", 7.0e-12);
        assert_eq!(ScaleTable::parse(&t.to_text()).unwrap(), t);
    }

    #[test]
    fn errors_name_the_line() {
        let e = ScaleTable::parse("a 1\nb x\n").unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
        let e = ScaleTable::parse("a 1 2\n").unwrap_err();
        assert!(format!("{e:#}").contains("2 values"), "{e:#}");
        assert!(ScaleTable::parse("a\n").is_err());
        assert!(ScaleTable::parse("a 1\na 2\n").is_err());
        // Other _param_ lines (RNN, Embed, ...) and blank lines are skipped.
        let t = ScaleTable::parse("\nemb_param_1 3 4\n# c\nx 2\n").unwrap();
        assert_eq!(t.activations, [("x".to_string(), 2.0)]);
        assert!(t.weights.is_empty());
    }
}
