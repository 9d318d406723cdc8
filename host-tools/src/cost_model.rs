//! Estimated latency of a quantizable layer on the RK3399's cores, for `eq easyquant --cost
//! a53|a72` and the report's per-core columns.
//!
//! The rates come from `targets/costs/rk3399.toml` (embedded), which
//! `scripts/arm-cost-model.sh` fits from modeled cycles (armcycles: qemu + llvm-mca, no
//! memory system) of single-layer models: per core, layer class and precision,
//! `cycles = fixed_cycles + cycles_per_mac * MACs + cycles_per_output * output elements +
//! cycles_per_input * input elements` (the last two, fitted for convolutions only, carry the
//! epilogue and the input quantization / transform, which a per-MAC rate misjudges for
//! small-K layers), and `ms = cycles / (freq_mhz * 1000)`.

use crate::mixed::Level;
use crate::model::{Model, QuantKind, QuantLayer};
use anyhow::{anyhow, bail, Context, Result};
use eq_runtime::quant::Precision;
use eq_runtime::Shape;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The fitted RK3399 rates, as committed.
pub const RK3399_COSTS: &str = include_str!("../../targets/costs/rk3399.toml");

/// Which latency a search minimises or a column shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CostTarget {
    /// Per-layer times measured on this machine.
    Host,
    /// The RK3399's Cortex-A72 (big cluster), from the kernel model.
    A72,
    /// The RK3399's Cortex-A53 (little cluster), from the kernel model.
    A53,
}

impl CostTarget {
    pub fn name(self) -> &'static str {
        match self {
            CostTarget::Host => "host",
            CostTarget::A72 => "a72",
            CostTarget::A53 => "a53",
        }
    }
}

/// Layer classes with their own kernels (and rates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerClass {
    /// 1x1 stride-1 convolution: a plain GEMM on the input.
    Conv1x1,
    /// 3x3 stride-1 convolution (Winograd or im2col GEMM, as the runtime picks).
    Conv3x3s1,
    /// Any other convolution (im2col GEMM), rated as the measured 3x3 stride 2.
    ConvIm2col,
    /// Depthwise, stride 1 (rated as 3x3).
    Dw3x3s1,
    /// Depthwise, stride 2 or more (rated as 3x3 stride 2).
    Dw3x3s2,
    InnerProduct,
}

impl LayerClass {
    /// The class's table name in the costs file.
    pub fn key(self) -> &'static str {
        match self {
            LayerClass::Conv1x1 => "conv1x1",
            LayerClass::Conv3x3s1 => "conv3x3s1",
            LayerClass::ConvIm2col => "conv3x3s2",
            LayerClass::Dw3x3s1 => "dw3x3s1",
            LayerClass::Dw3x3s2 => "dw3x3s2",
            LayerClass::InnerProduct => "innerproduct",
        }
    }
}

/// What the model needs to know about a layer: its class, multiply-accumulates and the
/// element counts of its input and output blobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerCost {
    pub class: LayerClass,
    pub macs: u64,
    pub inputs: u64,
    pub outputs: u64,
}

/// Classifies quantizable layer `l` of `model` whose input and output blobs have shapes
/// `bottom` and `top`; MACs are weights × output positions (one position for InnerProduct).
pub fn classify(model: &Model, l: &QuantLayer, bottom: Shape, top: Shape) -> Result<LayerCost> {
    let rec = model
        .param
        .layers
        .get(l.index)
        .ok_or_else(|| anyhow!("layer `{}`: no record {}", l.name, l.index))?;
    let p = &rec.params;
    let int = |key: usize, default: i32| -> Result<i32> {
        p.int(key, default)
            .map_err(|e| anyhow!("layer `{}` key {key}: {}", l.name, e.0))
    };
    let class = match l.kind {
        QuantKind::InnerProduct => LayerClass::InnerProduct,
        kind => {
            let kw = int(1, 0)?;
            let kh = int(11, kw)?;
            let dw = int(2, 1)?;
            let dh = int(12, dw)?;
            let sw = int(3, 1)?;
            let sh = int(13, sw)?;
            let group = int(7, 1)?;
            // A depthwise layer is one group per channel; other groupings run as im2col.
            let depthwise = kind == QuantKind::ConvolutionDepthWise
                && group > 1
                && group as usize == l.num_output;
            if depthwise {
                if sw >= 2 || sh >= 2 {
                    LayerClass::Dw3x3s2
                } else {
                    LayerClass::Dw3x3s1
                }
            } else if kind == QuantKind::ConvolutionDepthWise && group > 1 {
                LayerClass::ConvIm2col
            } else if (kw, kh, sw, sh) == (1, 1, 1, 1) {
                LayerClass::Conv1x1
            } else if (kw, kh, sw, sh, dw, dh) == (3, 3, 1, 1, 1, 1) {
                LayerClass::Conv3x3s1
            } else {
                LayerClass::ConvIm2col
            }
        }
    };
    let positions = match l.kind {
        QuantKind::InnerProduct => 1,
        _ => top.w * top.h * top.d,
    };
    let elements = |s: Shape| (s.w * s.h * s.d * s.c) as u64;
    Ok(LayerCost {
        class,
        macs: (l.weights.len() * positions) as u64,
        inputs: elements(bottom),
        outputs: elements(top),
    })
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub cycles_per_mac: f64,
    pub fixed_cycles: f64,
    /// Per output / input element (0 when the class has no such term).
    #[serde(default)]
    pub cycles_per_output: f64,
    #[serde(default)]
    pub cycles_per_input: f64,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClassRates {
    pub fp32: Rate,
    pub int8: Rate,
    pub int7: Rate,
}

impl ClassRates {
    pub fn at(&self, level: Level) -> Rate {
        match level {
            Some(Precision::Int7) => self.int7,
            Some(Precision::Int8) => self.int8,
            None => self.fp32,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CoreRates {
    pub freq_mhz: f64,
    /// The llvm-mca model the cycles come from (informative).
    pub mca_model: Option<String>,
    pub conv1x1: ClassRates,
    pub conv3x3s1: ClassRates,
    pub conv3x3s2: ClassRates,
    pub dw3x3s1: ClassRates,
    pub dw3x3s2: ClassRates,
    pub innerproduct: ClassRates,
}

impl CoreRates {
    pub fn class(&self, c: LayerClass) -> &ClassRates {
        match c {
            LayerClass::Conv1x1 => &self.conv1x1,
            LayerClass::Conv3x3s1 => &self.conv3x3s1,
            LayerClass::ConvIm2col => &self.conv3x3s2,
            LayerClass::Dw3x3s1 => &self.dw3x3s1,
            LayerClass::Dw3x3s2 => &self.dw3x3s2,
            LayerClass::InnerProduct => &self.innerproduct,
        }
    }

    /// Estimated ms of `layer` at `level` on this core.
    pub fn ms(&self, layer: LayerCost, level: Level) -> f64 {
        let r = self.class(layer.class).at(level);
        let cycles = r.fixed_cycles
            + r.cycles_per_mac * layer.macs as f64
            + r.cycles_per_output * layer.outputs as f64
            + r.cycles_per_input * layer.inputs as f64;
        cycles / (self.freq_mhz * 1e3)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CostsFile {
    core: BTreeMap<String, CoreRates>,
}

/// The per-core rates. Cores other than `a53` and `a72` (e.g. `a53-mca-a53`, the A53 run
/// timed with LLVM's in-order A53 model) are kept for reference.
#[derive(Clone, Debug, PartialEq)]
pub struct CostModel {
    pub cores: BTreeMap<String, CoreRates>,
}

impl CostModel {
    /// Parses a costs file; `what` names it in errors.
    pub fn parse(text: &str, what: &str) -> Result<CostModel> {
        let f: CostsFile =
            toml::from_str(text).with_context(|| format!("{what}: not a valid costs file"))?;
        for need in ["a53", "a72"] {
            if !f.core.contains_key(need) {
                bail!("{what}: no [core.{need}]");
            }
        }
        for (name, c) in &f.core {
            if !(c.freq_mhz.is_finite() && c.freq_mhz > 0.0) {
                bail!("{what}: core.{name}.freq_mhz must be positive");
            }
            for (class, r) in [
                ("conv1x1", &c.conv1x1),
                ("conv3x3s1", &c.conv3x3s1),
                ("conv3x3s2", &c.conv3x3s2),
                ("dw3x3s1", &c.dw3x3s1),
                ("dw3x3s2", &c.dw3x3s2),
                ("innerproduct", &c.innerproduct),
            ] {
                for (prec, rate) in [("fp32", r.fp32), ("int8", r.int8), ("int7", r.int7)] {
                    let ok = |x: f64| x.is_finite() && x >= 0.0;
                    let all = [
                        rate.cycles_per_mac,
                        rate.fixed_cycles,
                        rate.cycles_per_output,
                        rate.cycles_per_input,
                    ];
                    if !all.into_iter().all(ok) {
                        bail!(
                            "{what}: core.{name}.{class}.{prec}: rates must be finite and non-negative"
                        );
                    }
                }
            }
        }
        Ok(CostModel { cores: f.core })
    }

    /// The embedded RK3399 model.
    pub fn rk3399() -> Result<CostModel> {
        CostModel::parse(RK3399_COSTS, "targets/costs/rk3399.toml")
    }

    /// Rates of a modeled core (None for `host`, which is measured).
    pub fn core(&self, t: CostTarget) -> Option<&CoreRates> {
        match t {
            CostTarget::Host => None,
            t => self.cores.get(t.name()),
        }
    }

    /// Estimated ms of `layer` at `level` on a modeled core (None for `host`).
    pub fn ms(&self, t: CostTarget, layer: LayerCost, level: Level) -> Option<f64> {
        self.core(t).map(|c| c.ms(layer, level))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(k: f64) -> String {
        let mut s = String::new();
        for (i, class) in [
            "conv1x1",
            "conv3x3s1",
            "conv3x3s2",
            "dw3x3s1",
            "dw3x3s2",
            "innerproduct",
        ]
        .iter()
        .enumerate()
        {
            let b = k * (i + 1) as f64;
            s += &format!(
                "[{class}]\nfp32 = {{ cycles_per_mac = {}, fixed_cycles = 100 }}\n\
                 int8 = {{ cycles_per_mac = {}, fixed_cycles = 200 }}\n\
                 int7 = {{ cycles_per_mac = {}, fixed_cycles = 300, cycles_per_output = 3, \
                 cycles_per_input = 5 }}\n",
                b,
                b / 2.0,
                b / 4.0
            );
        }
        s
    }

    fn file() -> String {
        let core = |name: &str, mhz: u32, k: f64| {
            rates(k).replace("[", &format!("[core.{name}.")).replacen(
                "",
                &format!("[core.{name}]\nfreq_mhz = {mhz}\n"),
                1,
            )
        };
        core("a53", 1500, 1.0) + &core("a72", 1800, 0.5)
    }

    #[test]
    fn estimate_is_the_fitted_line() {
        let m = CostModel::parse(&file(), "test").unwrap();
        let l = LayerCost {
            class: LayerClass::Dw3x3s1,
            macs: 1_000_000,
            inputs: 2000,
            outputs: 1000,
        };
        // dw3x3s1 is the 4th class: fp32 4 cycles/MAC on the a53, 2 on the a72; the
        // per-element terms default to 0 where the file has none.
        let a53 = m.ms(CostTarget::A53, l, None).unwrap();
        assert!((a53 - (100.0 + 4.0e6) / 1.5e6).abs() < 1e-12, "{a53}");
        let a72 = m.ms(CostTarget::A72, l, Some(Precision::Int7)).unwrap();
        let want = (300.0 + 0.5e6 + 3.0 * 1000.0 + 5.0 * 2000.0) / 1.8e6;
        assert!((a72 - want).abs() < 1e-12, "{a72} vs {want}");
        let a72_8 = m.ms(CostTarget::A72, l, Some(Precision::Int8)).unwrap();
        assert!((a72_8 - (200.0 + 1.0e6) / 1.8e6).abs() < 1e-12, "{a72_8}");
        assert_eq!(m.ms(CostTarget::Host, l, None), None);
    }

    #[test]
    fn embedded_file_parses_with_both_cores() {
        let m = CostModel::rk3399().unwrap();
        assert_eq!(m.cores["a53"].freq_mhz, 1500.0);
        assert_eq!(m.cores["a72"].freq_mhz, 1800.0);
        // Every class has positive per-MAC rates.
        let l = |class| LayerCost {
            class,
            macs: 10_000_000,
            inputs: 100_000,
            outputs: 100_000,
        };
        for class in [
            LayerClass::Conv1x1,
            LayerClass::Conv3x3s1,
            LayerClass::ConvIm2col,
            LayerClass::Dw3x3s1,
            LayerClass::Dw3x3s2,
            LayerClass::InnerProduct,
        ] {
            for t in [CostTarget::A53, CostTarget::A72] {
                for level in [Some(Precision::Int7), Some(Precision::Int8), None] {
                    assert!(m.ms(t, l(class), level).unwrap() > 0.0, "{class:?} {t:?}");
                }
            }
        }
    }

    #[test]
    fn malformed_files_are_clear_errors() {
        let err = |text: &str| format!("{:#}", CostModel::parse(text, "costs.toml").unwrap_err());
        let e = err("core = 3");
        assert!(e.contains("costs.toml: not a valid costs file"), "{e}");
        let e = err(&file()
            .replace("[core.a72]", "[core.a72x]")
            .replace("core.a72.", "core.a72x."));
        assert!(e.contains("no [core.a72]"), "{e}");
        let e = err(&file().replacen("int7 = { cycles_per_mac = 0.25, ", "int7 = { ", 1));
        assert!(e.contains("cycles_per_mac"), "{e}");
        let e = err(&file().replacen("cycles_per_mac = 1,", "cycles_per_mac = -1,", 1));
        assert!(e.contains("non-negative"), "{e}");
        let e = err(&file().replacen("cycles_per_input = 5", "cycles_per_input = -5", 1));
        assert!(e.contains("core.a53.conv1x1.int7: rates must be"), "{e}");
        let e = err(&file().replacen("freq_mhz = 1500", "freq_mhz = 0", 1));
        assert!(e.contains("freq_mhz must be positive"), "{e}");
        let e = err(&(file() + "[core.a53.conv5x5]\n"));
        assert!(e.contains("conv5x5"), "{e}");
    }

    /// A model with one layer of each class; shapes as the classifier sees them.
    #[test]
    fn classifies_each_class_and_counts_macs() {
        let param = "7767517\n8 8\n\
            Input data 0 1 data 0=16 1=16 2=8\n\
            Convolution c1 1 1 data a 0=16 1=1 5=1 6=128\n\
            Convolution c3 1 1 a b 0=16 1=3 4=1 5=1 6=2304\n\
            Convolution c3s2 1 1 b c 0=16 1=3 3=2 4=1 5=1 6=2304\n\
            ConvolutionDepthWise dw 1 1 c d 0=16 1=3 4=1 5=1 6=144 7=16\n\
            ConvolutionDepthWise dws2 1 1 d e 0=16 1=3 3=2 4=1 5=1 6=144 7=16\n\
            ConvolutionDepthWise g4 1 1 e f 0=16 1=1 5=1 6=64 7=4\n\
            InnerProduct fc 1 1 f out 0=10 1=1 2=160\n";
        // Zero bytes: each weight blob is a 4-byte fp32 tag (0) and its floats, then the bias.
        let floats: usize = [
            128 + 16,
            2304 + 16,
            2304 + 16,
            144 + 16,
            144 + 16,
            64 + 16,
            160 + 10,
        ]
        .iter()
        .sum();
        let bin = vec![0u8; floats * 4 + 7 * 4];
        let model = Model::from_memory(param.as_bytes(), &bin).unwrap();
        let shape = |w, h, c| Shape {
            dims: 3,
            w,
            h,
            d: 1,
            c,
        };
        // (name, class, input shape, output shape, MACs)
        let want = [
            (
                "c1",
                LayerClass::Conv1x1,
                shape(16, 16, 8),
                shape(16, 16, 16),
                128 * 256,
            ),
            (
                "c3",
                LayerClass::Conv3x3s1,
                shape(16, 16, 16),
                shape(16, 16, 16),
                2304 * 256,
            ),
            (
                "c3s2",
                LayerClass::ConvIm2col,
                shape(16, 16, 16),
                shape(8, 8, 16),
                2304 * 64,
            ),
            (
                "dw",
                LayerClass::Dw3x3s1,
                shape(8, 8, 16),
                shape(8, 8, 16),
                144 * 64,
            ),
            (
                "dws2",
                LayerClass::Dw3x3s2,
                shape(8, 8, 16),
                shape(4, 4, 16),
                144 * 16,
            ),
            (
                "g4",
                LayerClass::ConvIm2col,
                shape(4, 4, 16),
                shape(4, 4, 16),
                64 * 16,
            ),
            (
                "fc",
                LayerClass::InnerProduct,
                shape(4, 4, 16),
                Shape::d1(10),
                160,
            ),
        ];
        assert_eq!(model.layers.len(), want.len());
        for (l, (name, class, bottom, top, macs)) in model.layers.iter().zip(want) {
            assert_eq!(l.name, name);
            let c = classify(&model, l, bottom, top).unwrap();
            let n = |s: Shape| (s.w * s.h * s.c) as u64;
            let want = LayerCost {
                class,
                macs,
                inputs: n(bottom),
                outputs: n(top),
            };
            assert_eq!(c, want, "{name}");
        }
    }
}
