//! Runs a model one layer at a time over a set of images, keeping each image's live blobs
//! between layers. A sweep over all layers then costs one forward pass per image, however
//! many layers change their scales on the way: the finetune search decides layer l's scales
//! between running l's fp32 version and its quantized version, and nothing upstream is
//! recomputed.
//!
//! Each layer runs as a one-layer runtime `Net` (its bottoms declared as inputs), so the
//! fp32 layers use the runtime's fp32 kernels and a quantized layer the runtime's INT8/INT7
//! kernels, exactly as deployed. The nets are single-threaded and images are spread over
//! rayon workers, so results do not depend on the worker count.

use crate::model::{Model, QuantLayer};
use crate::ncnn_writer::{BinWriter, ParamWriter};
use crate::quantize::write_quantized_layer;
use anyhow::{anyhow, bail, Result};
use eq_runtime::graph::Graph;
use eq_runtime::quant::Precision;
use eq_runtime::{Net, Options, Shape};
use rayon::prelude::*;
use std::sync::Arc;

/// One blob's values for one image (shared: Split outputs are the same values).
pub type Values = Arc<[f32]>;

/// The live blobs of one image, by blob id.
#[derive(Clone, Default)]
pub struct Blobs(Vec<Option<Values>>);

impl Blobs {
    pub fn get(&self, blob: usize) -> Result<&[f32]> {
        self.0[blob]
            .as_deref()
            .ok_or_else(|| anyhow!("internal: blob {blob} is not live"))
    }
}

/// A one-layer model: param text and weight bytes.
pub struct LayerModel {
    param: String,
    bin: Vec<u8>,
}

pub struct Layerwise<'a> {
    model: &'a Model,
    pub graph: Graph,
    pub shapes: Vec<Shape>,
    /// Per blob: the position in `graph.order` after which no layer reads it.
    last_read: Vec<usize>,
    input: usize,
}

impl<'a> Layerwise<'a> {
    /// `net` is the full fp32 model loaded with the input shape (for the blob shapes).
    pub fn new(model: &'a Model, net: &Net, input: &str) -> Result<Layerwise<'a>> {
        let graph = net.graph().clone();
        let steps = graph.steps();
        // A blob no layer reads is dropped right after the step that makes it.
        let last_read = graph
            .last_reads()
            .into_iter()
            .zip(&graph.blobs)
            .map(|(r, b)| r.unwrap_or(steps[b.producer]))
            .collect();
        let mut lw = Layerwise {
            model,
            graph,
            shapes: net.plan().shapes.clone(),
            last_read,
            input: 0,
        };
        lw.input = lw.blob_id(input)?;
        Ok(lw)
    }

    /// The starting state of one image: only the input blob is live.
    pub fn start(&self, image: &[f32]) -> Blobs {
        let mut b = vec![None; self.graph.blobs.len()];
        b[self.input] = Some(Values::from(image));
        Blobs(b)
    }

    pub fn blob_id(&self, name: &str) -> Result<usize> {
        self.graph
            .blob_id(name)
            .ok_or_else(|| anyhow!("no blob named `{name}`"))
    }

    /// Layer `li` with its bottoms as Input layers, its params copied.
    fn writer(&self, li: usize) -> Result<ParamWriter> {
        let rec = &self.graph.layers[li];
        let mut param = ParamWriter::new();
        for (i, b) in rec.bottoms.iter().enumerate() {
            param.layer("Input", &format!("__input{i}"), &[], &[b]);
        }
        param.copy_layer(rec)?;
        Ok(param)
    }

    /// Layer `li` as in the fp32 model.
    pub fn fp32_layer(&self, li: usize) -> Result<LayerModel> {
        let param = self.writer(li)?;
        Ok(LayerModel {
            param: param.to_text()?,
            bin: self.model.bin[self.model.ranges[li].clone()].to_vec(),
        })
    }

    /// Quantizable layer `q` quantized with weight scales `ws` and input scale `sa`, as
    /// `eq quantize` writes it (without a requantized output: the next layer quantizes its
    /// fp32 input with its own scale, which is what a fused requantization computes).
    pub fn quantized_layer(
        &self,
        q: &QuantLayer,
        ws: &[f32],
        sa: f32,
        precision: Precision,
    ) -> Result<LayerModel> {
        let mut param = self.writer(q.index)?;
        let Some(layer) = param.layers.last_mut() else {
            bail!("internal: empty layer model");
        };
        let mut bin = BinWriter::new();
        write_quantized_layer(layer, &mut bin, q, ws, sa, None, precision);
        Ok(LayerModel {
            param: param.to_text()?,
            bin: bin.bytes,
        })
    }

    /// Runs layer `li` (built as `m`) on every image's blobs, storing its outputs.
    pub fn run(&self, li: usize, m: &LayerModel, images: &mut [Blobs]) -> Result<()> {
        let (ins, outs) = (&self.graph.inputs[li], &self.graph.outputs[li]);
        if self.graph.layers[li].kind == "Split" {
            for b in images.iter_mut() {
                let v = b.0[ins[0]].clone();
                for &t in outs {
                    b.0[t] = v.clone();
                }
            }
            return Ok(());
        }
        let opts = Options {
            threads: 1,
            input_shapes: ins
                .iter()
                .map(|&b| (self.graph.blobs[b].name.clone(), self.shapes[b]))
                .collect(),
            ..Options::default()
        };
        let per_worker = images.len().div_ceil(rayon::current_num_threads()).max(1);
        images.par_chunks_mut(per_worker).try_for_each(|chunk| {
            let mut net = Net::from_memory(m.param.as_bytes(), &m.bin, &opts)?;
            for b in chunk {
                for &i in ins {
                    net.set_input(&self.graph.blobs[i].name, b.get(i)?)?;
                }
                net.run()?;
                for &t in outs {
                    let name = &self.graph.blobs[t].name;
                    let out = net.blob(name)?;
                    if out.shape != self.shapes[t] {
                        bail!(
                            "layer `{}`: output `{name}` is {} alone but {} in the model",
                            self.graph.layers[li].name,
                            out.shape,
                            self.shapes[t]
                        );
                    }
                    b.0[t] = Some(Values::from(out.data));
                }
            }
            Ok(())
        })
    }

    /// Drops the blobs no layer after position `step` of `graph.order` reads.
    pub fn release(&self, step: usize, images: &mut [Blobs]) {
        for b in images {
            for (id, v) in b.0.iter_mut().enumerate() {
                if self.last_read[id] <= step {
                    *v = None;
                }
            }
        }
    }
}
