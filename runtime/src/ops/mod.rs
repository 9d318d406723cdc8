//! Layers. Each op lives in its own file with a plain reference implementation; optimised
//! paths call into `crate::kernels` and are tested against the reference.

use crate::cpu::CoreKind;
use crate::error::{invalid, LayerResult, Result};
use crate::model::paramdict::ParamDict;
use crate::model::weights::WeightReader;
use crate::pool::Pool;
use crate::quant::{Int8Grid, Precision, PrecisionChoice};
use crate::tensor::{Shape, Tensor, TensorMut};

pub mod abs_val;
pub mod activation;
pub mod batch_norm;
pub mod binary_op;
pub mod bnll;
pub mod clip;
pub mod concat;
pub mod convolution;
pub mod convolution_depthwise;
pub mod crop;
pub mod custom;
pub mod deconvolution;
pub mod deconvolution_depthwise;
pub mod dequantize;
pub mod detection_output;
pub mod dropout;
pub mod elementwise;
pub mod eltwise;
pub mod elu;
pub mod embed;
pub mod erf;
pub mod exp;
pub mod expand_dims;
pub mod expression;
pub mod flatten;
pub mod gelu;
pub mod gemm;
pub mod group_norm;
pub mod hard_sigmoid;
pub mod hard_swish;
#[cfg(test)]
pub mod harness;
pub mod inner_product;
pub mod input;
pub mod instance_norm;
pub mod interp;
pub mod layer_norm;
pub mod log;
pub mod lrn;
pub mod matmul;
pub mod memory_data;
pub mod mish;
pub mod multi_head_attention;
pub mod noop;
pub mod normalize;
pub mod padding;
pub mod permute;
pub mod pooling;
pub mod power;
pub mod prelu;
pub mod prior_box;
pub mod proposal;
pub mod psroi_pooling;
pub mod quantize;
pub mod quantized;
pub mod reduction;
pub mod relu;
pub mod requantize;
pub mod reshape;
pub mod rms_norm;
pub mod roi_pooling;
pub mod scale;
pub mod selu;
pub mod shuffle_channel;
pub mod sigmoid;
pub mod slice;
pub mod softmax;
pub mod split;
pub mod squeeze;
pub mod swish;
pub mod tanh;
pub mod tile;
pub mod unary_op;
pub mod yolo_detection_output;
pub mod yolov3_detection_output;

/// How an op's outputs relate to its inputs in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Outputs get their own memory; `forward` reads inputs and writes outputs.
    New,
    /// One input, one output of the same size, computed over the input (`forward_inplace`).
    /// The planner copies first when the input is still needed elsewhere.
    InPlace,
    /// Every output is the first input's memory, reinterpreted (Split, Flatten, Reshape, Noop):
    /// nothing runs.
    Alias,
}

/// What an op may use while running: the thread pool and its scratch memory (sized at load
/// from `Op::scratch_len`, `threads` equal slices, one per worker).
pub struct Ctx<'a> {
    pub pool: &'a Pool,
    pub scratch: &'a mut [f32],
}

/// A layer, built once at load. All allocation happens in `build` and at plan time;
/// `forward` must not allocate.
pub trait Op: Send + Sync + std::fmt::Debug {
    /// Output shapes for the given input shapes; called at load (shape inference).
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>>;

    fn storage(&self) -> Storage {
        Storage::New
    }

    /// How many trailing outputs of `output_shapes` the param file may leave out (e.g.
    /// Proposal's scores): the planner drops their shapes.
    fn optional_outputs(&self) -> usize {
        0
    }

    /// Scratch floats needed by one worker for these shapes.
    fn scratch_len(&self, _inputs: &[Shape], _outputs: &[Shape]) -> usize {
        0
    }

    /// `Storage::New` ops: compute `outputs` from `inputs`.
    fn forward(
        &self,
        _inputs: &[Tensor],
        _outputs: &mut [TensorMut],
        _ctx: &mut Ctx,
    ) -> LayerResult<()> {
        Err(invalid("this op has no out-of-place forward"))
    }

    /// `Storage::InPlace` ops: transform `x` in place.
    fn forward_inplace(&self, _x: &mut TensorMut, _ctx: &mut Ctx) -> LayerResult<()> {
        Err(invalid("this op has no in-place forward"))
    }

    // Quantized execution (Convolution, ConvolutionDepthWise, InnerProduct). `Net::build`
    // calls `set_precision` on every op, then decides which blobs hold int8 values and tells
    // each op with `set_int8_io`, all before planning memory.

    /// Chooses FP32, INT8 or INT7 for this layer; returns the precision it will run in
    /// (None: fp32). Layers without int8 scales stay fp32.
    fn set_precision(&mut self, _choice: PrecisionChoice) -> LayerResult<Option<Precision>> {
        Ok(None)
    }

    /// Whether fp32 layers may keep their weights in fp16 (`Options::fp16_weights`), told
    /// before `set_precision`. Only InnerProduct does: its batch-1 GEMV streams its weights.
    fn set_fp16_weights(&mut self, _on: bool) {}

    /// The core types of the pool that will run this layer, told before `set_precision`:
    /// integer paths pack their weights only for those cores' kernels (none: for all).
    fn set_cores(&mut self, _cores: &[CoreKind]) {}

    /// Benchmarks of fp32 models with synthetic weights in INT8 / INT7: give a layer that has
    /// no int8 scales fixed ones (all 1), as if it had been quantized.
    fn synthesize_int8_scales(&mut self) {}

    /// The grid this layer quantizes its input to, when its integer path (as prepared) could
    /// read an int8 blob on that grid instead.
    fn int8_input(&self) -> Option<Int8Grid> {
        None
    }

    /// Whether this layer's integer path can requantize its output onto a given grid.
    fn can_requantize(&self) -> bool {
        false
    }

    /// Whether this op, as configured, can carry int8 values through unchanged in scale:
    /// it may then read an int8 input and write an int8 output (same scale, same grid).
    /// Such an op accepts `set_int8_io(true, Some(grid))` (its inputs and outputs all int8)
    /// and refuses a mix of int8 and fp32. It does not end an int8 region: the graph decides
    /// the whole region (`net::int8_grids`).
    fn int8_passthrough(&self) -> bool {
        false
    }

    /// Whether the output of inputs of shapes `inputs` is nothing but the inputs laid back
    /// to back in order (a concat along the outermost axis). The planner may then have the
    /// inputs' producers write straight into the output and skip this layer's step.
    fn joins_inputs(&self, _inputs: &[Shape]) -> bool {
        false
    }

    /// Tells the layer that its input blob holds int8 values, and the grid of its output when
    /// that is int8 (a requantizing layer writes it; a pass-through op keeps it).
    fn set_int8_io(&mut self, input: bool, output: Option<Int8Grid>) -> LayerResult<()> {
        if input || output.is_some() {
            return Err(invalid("this layer has no int8 input or output"));
        }
        Ok(())
    }
}

/// Builds the op for a layer type from its params, reading its weights in ncnn's order.
/// An unknown type is an error naming the type.
pub fn build(kind: &str, pd: &ParamDict, w: &mut WeightReader) -> Result<Box<dyn Op>> {
    let _ = &w;
    Ok(match kind {
        "Input" => Box::new(input::Input::new(pd)?),
        "Split" => Box::new(split::Split),
        "ReLU" => Box::new(relu::ReLU::new(pd)?),
        "Pooling" => Box::new(pooling::Pooling::new(pd)?),
        "PReLU" => Box::new(prelu::PReLU::new(pd, w)?),
        "Sigmoid" => Box::new(sigmoid::Sigmoid),
        "Clip" => Box::new(clip::Clip::new(pd)?),
        "Softmax" => Box::new(softmax::Softmax::new(pd)?),
        "Concat" => Box::new(concat::Concat::new(pd)?),
        "Eltwise" => Box::new(eltwise::Eltwise::new(pd)?),
        "BinaryOp" => Box::new(binary_op::BinaryOp::new(pd)?),
        "BatchNorm" => Box::new(batch_norm::BatchNorm::new(pd, w)?),
        "Scale" => Box::new(scale::Scale::new(pd, w)?),
        "Dropout" => Box::new(dropout::Dropout::new(pd)?),
        "Flatten" => Box::new(flatten::Flatten),
        "Reshape" => Box::new(reshape::Reshape::new(pd)?),
        "Permute" => Box::new(permute::Permute::new(pd)?),
        "LRN" => Box::new(lrn::Lrn::new(pd)?),
        "Noop" => Box::new(noop::Noop),
        "Normalize" => Box::new(normalize::Normalize::new(pd, w)?),
        "PriorBox" => Box::new(prior_box::PriorBox::new(pd)?),
        "DetectionOutput" => Box::new(detection_output::DetectionOutput::new(pd)?),
        "Interp" => Box::new(interp::Interp::new(pd)?),
        "YoloDetectionOutput" => Box::new(yolo_detection_output::YoloDetectionOutput::new(pd)?),
        "Yolov3DetectionOutput" => {
            Box::new(yolov3_detection_output::Yolov3DetectionOutput::new(pd)?)
        }
        "Convolution" => Box::new(convolution::Convolution::new(pd, w)?),
        "ConvolutionDepthWise" => {
            Box::new(convolution_depthwise::ConvolutionDepthWise::new(pd, w)?)
        }
        "Quantize" => Box::new(quantize::Quantize::new(pd, w)?),
        "Dequantize" => Box::new(dequantize::Dequantize::new(pd, w)?),
        "Requantize" => Box::new(requantize::Requantize::new(pd, w)?),
        "Proposal" => Box::new(proposal::Proposal::new(pd)?),
        "ROIPooling" => Box::new(roi_pooling::RoiPooling::new(pd)?),
        "PSROIPooling" => Box::new(psroi_pooling::PsRoiPooling::new(pd)?),
        "InnerProduct" => Box::new(inner_product::InnerProduct::new(pd, w)?),
        "HardSwish" => Box::new(hard_swish::HardSwish::new(pd)?),
        "HardSigmoid" => Box::new(hard_sigmoid::HardSigmoid::new(pd)?),
        "Swish" => Box::new(swish::Swish),
        "Mish" => Box::new(mish::Mish),
        "GELU" => Box::new(gelu::Gelu::new(pd)?),
        "TanH" => Box::new(tanh::TanH),
        "AbsVal" => Box::new(abs_val::AbsVal),
        "ELU" => Box::new(elu::Elu::new(pd)?),
        "SELU" => Box::new(selu::Selu::new(pd)?),
        "Power" => Box::new(power::Power::new(pd)?),
        "Exp" => Box::new(exp::Exp::new(pd)?),
        "Log" => Box::new(log::Log::new(pd)?),
        "Erf" => Box::new(erf::Erf),
        "BNLL" => Box::new(bnll::Bnll),
        "UnaryOp" => Box::new(unary_op::UnaryOp::new(pd)?),
        "ShuffleChannel" => Box::new(shuffle_channel::ShuffleChannel::new(pd)?),
        "ExpandDims" => Box::new(expand_dims::ExpandDims::new(pd)?),
        "Squeeze" => Box::new(squeeze::Squeeze::new(pd)?),
        "LayerNorm" => Box::new(layer_norm::LayerNorm::new(pd, w)?),
        "GroupNorm" => Box::new(group_norm::GroupNorm::new(pd, w)?),
        "InstanceNorm" => Box::new(instance_norm::InstanceNorm::new(pd, w)?),
        "RMSNorm" => Box::new(rms_norm::RmsNorm::new(pd, w)?),
        "Reduction" => Box::new(reduction::Reduction::new(pd)?),
        "MemoryData" => Box::new(memory_data::MemoryData::new(pd, w)?),
        "Embed" => Box::new(embed::Embed::new(pd, w)?),
        "MatMul" => Box::new(matmul::MatMul::new(pd)?),
        "Gemm" => Box::new(gemm::Gemm::new(pd, w)?),
        "MultiHeadAttention" => Box::new(multi_head_attention::MultiHeadAttention::new(pd, w)?),
        "Crop" => Box::new(crop::Crop::new(pd)?),
        "Slice" => Box::new(slice::Slice::new(pd)?),
        "Padding" => Box::new(padding::Padding::new(pd, w)?),
        "Tile" => Box::new(tile::Tile::new(pd)?),
        "Deconvolution" => Box::new(deconvolution::Deconvolution::new(pd, w)?),
        "DeconvolutionDepthWise" => {
            Box::new(deconvolution_depthwise::DeconvolutionDepthWise::new(pd, w)?)
        }
        _ => return Err(invalid(format!("unknown layer type `{kind}`")).into()),
    })
}

/// Checks the number of inputs an op received at shape inference.
pub fn expect_inputs(inputs: &[Shape], n: usize) -> LayerResult<()> {
    if inputs.len() != n {
        return Err(invalid(format!(
            "expects {n} input blob(s), got {}",
            inputs.len()
        )));
    }
    Ok(())
}
