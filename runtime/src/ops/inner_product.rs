//! InnerProduct (ncnn-format.md §5.3): a fully connected layer.
//!
//! The input of any dims is flattened in (c, d, h, w) order and the output is 1-D of
//! `num_output`. As in ncnn's `innerproduct.cpp`, a 2-D input whose width equals the weight
//! row length and with more than one row is a batch instead: each row is a sample and the
//! output is 2-D (w = num_output, h = rows).
//!
//! Weights `[num_output][num_input]` are fp32 read in place from the weight file.
//! Int8-tagged weights are turned back into fp32 at load (`q / weight_scale[row]`) until the
//! int8 path exists; the scales are kept for it.

use super::activation::Activation;
use super::convolution_depthwise::dequantize;
use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult, Result};
use crate::kernels::gemv_f32::{self, Isa};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, Tagged, WeightReader};
use crate::pool::SharedMut;
use crate::tensor::{Shape, Tensor, TensorMut};

/// Output rows per parallel task: enough work to amortise a task, small enough to balance.
const ROWS_PER_TASK: usize = 16;

/// Int8 scales as stored (`8=` non-zero): one weight scale per output.
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Scales {
    pub weight: Vec<f32>,
    pub bottom: f32,
}

#[derive(Debug)]
pub struct InnerProduct {
    pub num_output: usize,
    /// Length of one weight row (`weight_data_size / num_output`).
    pub num_input: usize,
    pub activation: Activation,
    pub int8_scales: Option<Int8Scales>,
    weight: Floats,
    bias: Option<Floats>,
    isa: Isa,
}

impl InnerProduct {
    /// Reads params and, in ncnn's order, weights, bias and int8 scales.
    pub fn new(pd: &ParamDict, w: &mut WeightReader) -> Result<InnerProduct> {
        let num_output = pd.usize(0, 0)?;
        let bias_term = pd.int(1, 0)? != 0;
        let weight_data_size = pd.usize(2, 0)?;
        let int8_scale_term = pd.int(8, 0)?;
        let activation = Activation::from_params(pd)?;
        if num_output == 0 {
            return Err(invalid("num_output (key 0) must be positive").into());
        }
        if weight_data_size == 0 || !weight_data_size.is_multiple_of(num_output) {
            return Err(invalid(format!(
                "weight_data_size {weight_data_size} is not a positive multiple of num_output {num_output}"
            ))
            .into());
        }
        let weight = w.tagged(weight_data_size, "weight")?;
        let bias = if bias_term {
            Some(w.raw(num_output, "bias")?)
        } else {
            None
        };
        let int8_scales = if int8_scale_term != 0 {
            let weight = w.raw(num_output, "weight int8 scales")?.to_vec();
            let bottom = w.raw(1, "bottom int8 scale")?[0];
            Some(Int8Scales { weight, bottom })
        } else {
            None
        };
        let weight = match (weight, &int8_scales) {
            (Tagged::F32(f), _) => f,
            (Tagged::I8(q), Some(s)) => Floats::owned(dequantize(&q, &s.weight)),
            (Tagged::I8(_), None) => {
                return Err(invalid("int8-tagged weights but int8_scale_term (key 8) is 0").into())
            }
        };
        Ok(InnerProduct {
            num_output,
            num_input: weight_data_size / num_output,
            activation,
            int8_scales,
            weight,
            bias,
            isa: Isa::detect(),
        })
    }

    /// Chooses the kernel variant (tests run every available one).
    pub fn set_isa(&mut self, isa: Isa) {
        self.isa = isa;
    }

    pub fn weights(&self) -> &[f32] {
        &self.weight
    }

    /// (samples, output shape): ncnn's rule for a 2-D batch, else one flattened sample.
    fn layout(&self, s: Shape) -> LayerResult<(usize, Shape)> {
        if s.dims == 2 && s.w == self.num_input && s.h > 1 {
            return Ok((s.h, Shape::d2(self.num_output, s.h)));
        }
        if s.len() != self.num_input {
            return Err(invalid(format!(
                "weight_data_size {} does not match the input {s}: expected num_output {} * {} input elements",
                self.num_input * self.num_output,
                self.num_output,
                s.len()
            )));
        }
        Ok((1, Shape::d1(self.num_output)))
    }

    fn bias_of(&self, r: usize) -> f32 {
        self.bias.as_ref().map_or(0.0, |b| b[r])
    }

    /// The plain reference: per sample and output, bias then products in input order.
    pub fn forward_reference(&self, x: &Tensor, y: &mut TensorMut) -> LayerResult<()> {
        let (samples, _) = self.layout(x.shape)?;
        let k = self.num_input;
        for n in 0..samples {
            let input = &x.data[n * k..(n + 1) * k];
            for r in 0..self.num_output {
                let row = &self.weight[r * k..(r + 1) * k];
                let mut sum = self.bias_of(r);
                for i in 0..k {
                    sum += input[i] * row[i];
                }
                y.data[n * self.num_output + r] = self.activation.apply(sum);
            }
        }
        Ok(())
    }
}

impl Op for InnerProduct {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![self.layout(inputs[0])?.1])
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let x = inputs[0];
        let (samples, _) = self.layout(x.shape)?;
        let k = self.num_input;
        let blocks = self.num_output.div_ceil(ROWS_PER_TASK);
        let out = SharedMut::new(&mut *outputs[0].data);
        ctx.pool
            .run(samples * blocks, &|task, _| {
                let n = task / blocks;
                let first = (task % blocks) * ROWS_PER_TASK;
                let rows = ROWS_PER_TASK.min(self.num_output - first);
                // SAFETY: each task writes its own rows of its own sample.
                let y = unsafe { out.slice(n * self.num_output + first, rows) };
                let w = &self.weight[first * k..(first + rows) * k];
                let bias = self.bias.as_ref().map(|b| &b[first..first + rows]);
                gemv_f32::gemv(self.isa, w, &x.data[n * k..(n + 1) * k], bias, y);
                self.activation.apply_slice(y);
            })
            .map_err(|e| invalid(e.to_string()))
    }
}
