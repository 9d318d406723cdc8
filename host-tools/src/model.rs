//! An fp32 ncnn model as the quantization tools see it: the parsed `.param`, the `.bin` bytes
//! split per layer, and the weights of every quantizable layer (Convolution,
//! ConvolutionDepthWise, InnerProduct) as fp32.

use anyhow::{anyhow, bail, Context, Result};
use eq_runtime::model::param::{LayerRecord, ParamFile};
use eq_runtime::model::weights::{Source, Tagged, WeightReader};
use eq_runtime::ops::activation::Activation;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// The layer types that get int8 weights and a bottom-blob scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantKind {
    Convolution,
    ConvolutionDepthWise,
    InnerProduct,
}

impl QuantKind {
    pub fn from_type(kind: &str) -> Option<QuantKind> {
        match kind {
            "Convolution" => Some(QuantKind::Convolution),
            "ConvolutionDepthWise" => Some(QuantKind::ConvolutionDepthWise),
            "InnerProduct" => Some(QuantKind::InnerProduct),
            _ => None,
        }
    }

    /// Key of the bias flag (5 for convolutions, 1 for InnerProduct).
    fn bias_key(self) -> usize {
        match self {
            QuantKind::InnerProduct => 1,
            _ => 5,
        }
    }

    /// Key of weight_data_size (6 for convolutions, 2 for InnerProduct).
    fn size_key(self) -> usize {
        match self {
            QuantKind::InnerProduct => 2,
            _ => 6,
        }
    }

    /// Whether the producer of a requantized output may be / feed this kind (ncnn fuses
    /// conv -> conv only; InnerProduct always takes and gives fp32).
    pub fn is_conv(self) -> bool {
        self != QuantKind::InnerProduct
    }
}

/// One quantizable layer with its fp32 weights.
#[derive(Clone, Debug)]
pub struct QuantLayer {
    /// Index in the param file.
    pub index: usize,
    pub name: String,
    pub kind: QuantKind,
    pub bottom: String,
    pub top: String,
    pub num_output: usize,
    /// Weight scales per layer: num_output, or group for ConvolutionDepthWise.
    pub channels: usize,
    pub weights: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub activation: Activation,
}

impl QuantLayer {
    /// Weights of scale channel `c` (one output channel, or one depthwise group).
    pub fn channel(&self, c: usize) -> &[f32] {
        let n = self.weights.len() / self.channels;
        &self.weights[c * n..(c + 1) * n]
    }

    /// Number of weights per scale channel.
    pub fn channel_len(&self) -> usize {
        self.weights.len() / self.channels
    }
}

/// A loaded fp32 model.
pub struct Model {
    pub param: ParamFile,
    pub bin: Vec<u8>,
    /// Byte range of each layer's weights in `bin`, in file order.
    pub ranges: Vec<Range<usize>>,
    /// Quantizable layers in file order.
    pub layers: Vec<QuantLayer>,
}

/// Current read position of a weight reader: a zero-length raw read borrows at the cursor.
fn position(r: &mut WeightReader) -> Result<usize> {
    match r.raw(0, "position")? {
        eq_runtime::model::weights::Floats::Borrowed { offset, .. } => Ok(offset),
        _ => bail!("weight reader has no file"),
    }
}

impl Model {
    /// The blob whose data layer `l` reads: its bottom, or the bottom of the Split that made
    /// it. Layers with the same source share one requantized int8 blob, hence one scale.
    pub fn input_source(&self, l: &QuantLayer) -> String {
        let split = self
            .param
            .layers
            .iter()
            .find(|r| r.kind == "Split" && r.tops.contains(&l.bottom));
        match split {
            Some(r) => r.bottoms[0].clone(),
            None => l.bottom.clone(),
        }
    }

    pub fn load(param: &Path, bin: &Path) -> Result<Model> {
        let pf = eq_runtime::model::read_param(param)?;
        let bytes = std::fs::read(bin).with_context(|| format!("cannot read {}", bin.display()))?;
        Model::from_parts(pf, bytes, &param.display().to_string())
    }

    pub fn from_memory(param: &[u8], bin: &[u8]) -> Result<Model> {
        let pf = eq_runtime::model::parse_param(param, "<param>")?;
        Model::from_parts(pf, bin.to_vec(), "<param>")
    }

    fn from_parts(pf: ParamFile, bin: Vec<u8>, file: &str) -> Result<Model> {
        // Validate the graph (names, producers) the way the runtime does.
        eq_runtime::graph::Graph::new(pf.clone(), file)?;
        let src = Arc::new(Source::from_bytes(&bin));
        let mut reader = WeightReader::new(src, file);
        let mut ranges = Vec::with_capacity(pf.layers.len());
        let mut layers = Vec::new();
        for (index, l) in pf.layers.iter().enumerate() {
            reader.set_layer(&l.name);
            let start = position(&mut reader)?;
            eq_runtime::ops::build(&l.kind, &l.params, &mut reader)
                .map_err(|e| anyhow!("layer `{}` ({}): {e}", l.name, l.kind))?;
            let end = position(&mut reader)?;
            ranges.push(start..end);
            if let Some(kind) = QuantKind::from_type(&l.kind) {
                layers.push(
                    read_quant_layer(index, l, kind, &bin[start..end])
                        .with_context(|| format!("layer `{}` ({})", l.name, l.kind))?,
                );
            }
        }
        reader.finish()?;
        Ok(Model {
            param: pf,
            bin,
            ranges,
            layers,
        })
    }

    pub fn layer(&self, name: &str) -> Option<&QuantLayer> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// The single input blob (name of the first Input layer's top).
    pub fn input_blob(&self) -> Result<String> {
        let inputs: Vec<&LayerRecord> = self
            .param
            .layers
            .iter()
            .filter(|l| l.kind == "Input")
            .collect();
        match inputs[..] {
            [l] if l.tops.len() == 1 => Ok(l.tops[0].clone()),
            [] => bail!("the model has no Input layer"),
            _ => bail!("the model has several inputs; image tools need exactly one"),
        }
    }
}

/// A layer-parameter error as an anyhow error.
fn lr<T>(r: eq_runtime::error::LayerResult<T>) -> Result<T> {
    r.map_err(|e| anyhow!("{}", e.0))
}

fn read_quant_layer(
    index: usize,
    l: &LayerRecord,
    kind: QuantKind,
    bytes: &[u8],
) -> Result<QuantLayer> {
    let pd = &l.params;
    let num_output = lr(pd.usize(0, 0))?;
    let size = lr(pd.usize(kind.size_key(), 0))?;
    let bias_term = lr(pd.int(kind.bias_key(), 0))? != 0;
    let term = lr(pd.int(8, 0))?;
    if term != 0 {
        bail!("already quantized (int8_scale_term 8={term}); start from the fp32 model");
    }
    let channels = match kind {
        QuantKind::ConvolutionDepthWise => lr(pd.usize(7, 1))?,
        _ => num_output,
    };
    if l.bottoms.len() != 1 || l.tops.len() != 1 {
        bail!("expected one input and one output blob");
    }
    let mut r = WeightReader::new(Arc::new(Source::from_bytes(bytes)), &l.name);
    let weights = match r.tagged(size, "weight")? {
        Tagged::F32(f) => f.to_vec(),
        Tagged::I8(_) => bail!("int8-tagged weights; start from the fp32 model"),
    };
    let bias = if bias_term {
        Some(r.raw(num_output, "bias")?.to_vec())
    } else {
        None
    };
    if channels == 0 || size % channels != 0 {
        bail!("weight_data_size {size} is not a multiple of {channels} channels");
    }
    Ok(QuantLayer {
        index,
        name: l.name.clone(),
        kind,
        bottom: l.bottoms[0].clone(),
        top: l.tops[0].clone(),
        num_output,
        channels,
        weights,
        bias,
        activation: lr(Activation::from_params(pd))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_model_layers_and_ranges() {
        let m = crate::demo::build(crate::demo::SEED).unwrap();
        let text = m.param.to_text().unwrap();
        let model = Model::from_memory(text.as_bytes(), &m.bin.bytes).unwrap();
        let names: Vec<&str> = model.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["conv0", "conv1", "fc", "features"]);
        let conv0 = &model.layers[0];
        assert_eq!((conv0.channels, conv0.channel_len()), (16, 27));
        assert_eq!(conv0.bottom, "data");
        assert_eq!(conv0.activation, Activation::ReLU);
        assert_eq!(model.layers[2].kind, QuantKind::InnerProduct);
        // Ranges tile the file: tag + weights + bias for each weighted layer.
        let total: usize = model.ranges.iter().map(|r| r.len()).sum();
        assert_eq!(total, m.bin.bytes.len());
        assert_eq!(model.ranges[1], 0..4 + 4 * (16 * 27 + 16));
        assert_eq!(model.input_blob().unwrap(), "data");
    }
}
