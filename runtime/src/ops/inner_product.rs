//! InnerProduct (ncnn-format.md §5.3): a fully connected layer.
//!
//! The input of any dims is flattened in (c, d, h, w) order and the output is 1-D of
//! `num_output`. A 2-D input whose width equals the weight row length is a batch instead:
//! each row is a sample and the output is 2-D (w = num_output, h = rows). This follows the
//! optimised layers ncnn actually runs (`innerproduct_arm.cpp`, and the x86 PyPI wheel
//! 1.0.20261020, measured), which take that path even for one row; the generic
//! `innerproduct.cpp` also requires h > 1 and would return 1-D for a single row. The values
//! are the same either way.
//!
//! Weights `[num_output][num_input]` are fp32 read in place from the weight file.
//! Int8-tagged weights are turned back into fp32 at load (`q / weight_scale[row]`) until the
//! int8 path exists; the scales are kept for it.

use super::activation::Activation;
use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult, Result};
use crate::kernels::gemv_f32::{self, Isa};
use crate::kernels::gemv_i8::{gemv_i8_rows, PackedGemvI8};
use crate::kernels::requant::{self, Requant};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{f16_to_f32, f32_to_f16, Floats, Tagged, WeightReader};
use crate::ops::convolution::int8::quantize_parallel;
use crate::ops::quantized::as_i8_mut;
use crate::ops::quantized::{
    float_weights, fp32_weights, int8_weights, quant_plan, synthesize, Int8Scales, QuantPlan,
    Simulation,
};
use crate::pool::SharedMut;
use crate::quant::{Precision, PrecisionChoice};
use crate::tensor::{Shape, Tensor, TensorMut};

/// Output rows per parallel task: enough work to amortise a task, small enough to balance.
const ROWS_PER_TASK: usize = 16;

/// Int8 scales as stored (`8=` non-zero): one weight scale per output.

#[derive(Debug)]
pub struct InnerProduct {
    pub num_output: usize,
    /// Length of one weight row (`weight_data_size / num_output`).
    pub num_input: usize,
    pub activation: Activation,
    pub int8_scales: Option<Int8Scales>,
    weight: Floats,
    /// The weights as stored (int8 or fp32), kept for quantized execution.
    stored: Option<Tagged>,
    bias: Option<Floats>,
    isa: Isa,
    int8: Option<IpInt8>,
    sim: Option<Simulation>,
    /// `Options::fp16_weights`: the fp32 path reads `half`, fp16 copies of the weights.
    fp16_storage: bool,
    half: Option<Vec<u16>>,
}

/// The quantized path: the input is quantized with the bottom scale, products summed in
/// int32 by the int8 GEMV, dequantized with bias and activation to fp32 (ncnn's int8
/// InnerProduct never writes int8).
#[derive(Debug)]
struct IpInt8 {
    precision: Precision,
    packed: PackedGemvI8,
    scale_in: Vec<f32>,
    bottom: f32,
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
            let s = Int8Scales::read(pd, w, num_output, false)?;
            int8_weights(&weight, &s.weight, s.bits)?;
            Some(s)
        } else {
            None
        };
        let stored = int8_scales.is_some().then(|| weight.clone());
        let weight = float_weights(weight, int8_scales.as_ref())?;
        Ok(InnerProduct {
            num_output,
            num_input: weight_data_size / num_output,
            activation,
            int8_scales,
            weight,
            stored,
            bias,
            isa: Isa::detect(),
            int8: None,
            sim: None,
            fp16_storage: false,
            half: None,
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
        if s.dims == 2 && s.w == self.num_input {
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
        if self.weight.is_empty() {
            return Err(invalid(
                "the fp32 weights were released: only fp16 copies are kept",
            ));
        }
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

impl InnerProduct {
    /// The fp32 path (also the float simulation's, on rounded input).
    fn forward_f32(&self, x: Tensor, outputs: &mut [TensorMut], ctx: &mut Ctx) -> LayerResult<()> {
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
                let bias = self.bias.as_ref().map(|b| &b[first..first + rows]);
                let xn = &x.data[n * k..(n + 1) * k];
                match &self.half {
                    Some(h) => {
                        gemv_f32::gemv_f16(self.isa, &h[first * k..(first + rows) * k], xn, bias, y)
                    }
                    None => gemv_f32::gemv(
                        self.isa,
                        &self.weight[first * k..(first + rows) * k],
                        xn,
                        bias,
                        y,
                    ),
                }
                self.activation.apply_slice(y);
            })
            .map_err(|e| invalid(e.to_string()))
    }
}

impl Op for InnerProduct {
    fn set_fp16_weights(&mut self, on: bool) {
        self.fp16_storage = on;
    }

    fn synthesize_int8_scales(&mut self) {
        synthesize(
            &mut self.int8_scales,
            &mut self.stored,
            &self.weight,
            self.num_output,
        );
    }

    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![self.layout(inputs[0])?.1])
    }

    fn set_precision(&mut self, choice: PrecisionChoice) -> LayerResult<Option<Precision>> {
        let plan = quant_plan(self.int8_scales.as_ref(), self.stored.as_ref(), choice)?;
        // An earlier choice may have released the fp32 weights or replaced them with the
        // simulation's: the fp32 path then makes them again from the stored ones, or from
        // the fp16 copies when those were all that was kept.
        let restore = self.weight.is_empty() || self.sim.is_some();
        let half = self.half.take();
        self.int8 = None;
        self.sim = None;
        let (precision, q) = match plan {
            QuantPlan::Fp32 => {
                match half {
                    // The copies an earlier fp32 choice made are what this path reads.
                    Some(h) if self.fp16_storage => self.half = Some(h),
                    half => {
                        if restore {
                            self.weight = match (&self.stored, half) {
                                (None, Some(h)) => {
                                    Floats::owned(h.iter().map(|&v| f16_to_f32(v)).collect())
                                }
                                _ => fp32_weights(&self.stored, self.int8_scales.as_ref())?,
                            };
                        }
                        if self.fp16_storage {
                            self.half = Some(self.weight.iter().map(|&v| f32_to_f16(v)).collect());
                        }
                    }
                }
                // Weights converted at load (fp16- or int8-tagged files) are not mapped from
                // the file: with fp16 copies, keep only the copy the fp32 path reads.
                if self.half.is_some() && !self.weight.is_borrowed() {
                    self.weight = Floats::owned(Vec::new());
                }
                return Ok(None);
            }
            QuantPlan::Simulate {
                precision,
                weights,
                sim,
            } => {
                self.weight = Floats::owned(weights);
                self.sim = Some(sim);
                return Ok(Some(precision));
            }
            QuantPlan::Integer { precision, q } => (precision, q),
        };
        let s = self.int8_scales.as_ref().expect("integer plan has scales");
        self.int8 = Some(IpInt8 {
            precision,
            packed: PackedGemvI8::new(&q, self.num_output, self.num_input, precision),
            scale_in: requant::scale_in(s.bottom, &s.weight),
            bottom: s.bottom,
        });
        // The integer path never reads them: int8-tagged weights were dequantized into a
        // copy 4x their size at load.
        self.weight = Floats::owned(Vec::new());
        Ok(Some(precision))
    }

    fn scratch_len(&self, inputs: &[Shape], _outputs: &[Shape]) -> usize {
        match (&self.int8, inputs.first()) {
            // The quantized input, shared by the workers (counted once per worker).
            (Some(_), Some(s)) => s.len().div_ceil(4).next_multiple_of(16),
            // The rounded input of the float simulation.
            (None, Some(s)) if self.sim.is_some() => Simulation::scratch_floats(*s),
            _ => 0,
        }
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
        if let Some(q) = &self.int8 {
            let len = samples * k;
            let qx = as_i8_mut(ctx.scratch, len)?;
            quantize_parallel(&x.data[..len], q.bottom, q.precision.qmax(), qx, ctx.pool)?;
            let qx: &[i8] = qx;
            let requant = Requant {
                scale_in: &q.scale_in,
                bias: self.bias.as_deref(),
                act: self.activation,
                top_scale: 1.0,
                qmax: q.precision.qmax(),
            };
            let out = SharedMut::new(&mut *outputs[0].data);
            return ctx
                .pool
                .run(samples * blocks, &|task, _| {
                    let n = task / blocks;
                    let first = (task % blocks) * ROWS_PER_TASK;
                    let rows = ROWS_PER_TASK.min(self.num_output - first);
                    // SAFETY: each task writes its own rows of its own sample.
                    let y = unsafe { out.slice(n * self.num_output + first, rows) };
                    let xs = &qx[n * k..(n + 1) * k];
                    gemv_i8_rows(self.isa, &q.packed, xs, &requant, first..first + rows, y);
                })
                .map_err(|e| invalid(e.to_string()));
        }
        if let Some(sim) = &self.sim {
            return sim.run(x, outputs, ctx, |x, outputs, ctx| {
                self.forward_f32(x, outputs, ctx)
            });
        }
        self.forward_f32(x, outputs, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::model::weights::{Source, TAG_FP16};
    use crate::pool::Pool;
    use crate::rng::Rng;
    use std::sync::Arc;

    const TAG_INT8: u32 = 0x000D_4B38;

    fn params(kv: &[(usize, i32)]) -> ParamDict {
        let mut pd = ParamDict::new();
        for &(k, v) in kv {
            pd.set(k, Value::Int(v)).unwrap();
        }
        pd
    }

    /// A weight file: tag 0 + weights, then the raw arrays in order.
    fn bin(weights: &[f32], raw: &[&[f32]]) -> Vec<u8> {
        let mut b = 0u32.to_le_bytes().to_vec();
        for a in std::iter::once(weights).chain(raw.iter().copied()) {
            a.iter().for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
        }
        b
    }

    fn build(pd: &ParamDict, bytes: &[u8]) -> Result<InnerProduct> {
        let mut r = WeightReader::new(Arc::new(Source::from_bytes(bytes)), "t.bin");
        let op = InnerProduct::new(pd, &mut r)?;
        r.finish()?;
        Ok(op)
    }

    /// `op`'s output on 2 workers with the `isa` variant.
    fn forward_with(op: &mut InnerProduct, isa: Isa, x: Tensor, out_shape: Shape) -> Vec<f32> {
        op.set_isa(isa);
        let pool = Pool::new(2).unwrap();
        let mut got = vec![f32::NAN; out_shape.len()];
        let mut y = [TensorMut {
            shape: out_shape,
            data: &mut got,
        }];
        let mut ctx = Ctx {
            pool: &pool,
            scratch: &mut [],
        };
        op.forward(&[x], &mut y, &mut ctx).unwrap();
        got
    }

    /// Runs the reference and every kernel variant; checks they agree and returns the
    /// output shape and the reference result.
    fn run_all(op: &mut InnerProduct, shape: Shape, data: &[f32]) -> (Shape, Vec<f32>) {
        let out_shape = op.output_shapes(&[shape]).unwrap()[0];
        let x = Tensor { shape, data };
        let mut want = vec![f32::NAN; out_shape.len()];
        op.forward_reference(
            &x,
            &mut TensorMut {
                shape: out_shape,
                data: &mut want,
            },
        )
        .unwrap();
        let max = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        // Summation order differs between kernels; with |x|, |w| <= 1 each of the K
        // roundings is at most eps * K, so the difference grows with K, not with the
        // (possibly clipped) output.
        let tol = (1e-5 * max).max(f32::EPSILON * op.num_input as f32);
        for isa in Isa::all_available() {
            let got = forward_with(op, isa, x, out_shape);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= tol,
                    "{isa:?} element {i}: {g} vs reference {w} (tol {tol}); input {shape}"
                );
            }
        }
        (out_shape, want)
    }

    #[test]
    fn small_case_by_hand() {
        let pd = params(&[(0, 2), (1, 1), (2, 6)]);
        let w = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let mut op = build(&pd, &bin(&w, &[&[0.5, -1.0]])).unwrap();
        let (s, y) = run_all(&mut op, Shape::d1(3), &[1.0, 2.0, 3.0]);
        assert_eq!((s, y), (Shape::d1(2), vec![4.5, 1.0]));
        // The same three values as a 3-D blob (c=3, h=1, w=1) are flattened the same way.
        let (s, y) = run_all(&mut op, Shape::d3(1, 1, 3), &[1.0, 2.0, 3.0]);
        assert_eq!((s, y), (Shape::d1(2), vec![4.5, 1.0]));
        // A single-row 2-D input is a batch of one: 2-D output, as ncnn's optimised layers.
        let (s, y) = run_all(&mut op, Shape::d2(3, 1), &[1.0, 2.0, 3.0]);
        assert_eq!((s, y), (Shape::d2(2, 1), vec![4.5, 1.0]));
    }

    #[test]
    fn two_d_input_with_matching_width_is_a_batch_of_rows() {
        let pd = params(&[(0, 2), (1, 1), (2, 6)]);
        let w = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let mut op = build(&pd, &bin(&w, &[&[0.5, -1.0]])).unwrap();
        let (s, y) = run_all(&mut op, Shape::d2(3, 2), &[1.0, 2.0, 3.0, 10.0, 20.0, 30.0]);
        assert_eq!(s, Shape::d2(2, 2));
        assert_eq!(y, [4.5, 1.0, 40.5, 19.0]);
        // A 2-D input whose width differs but whose size matches is flattened.
        let pd = params(&[(0, 1), (2, 4)]);
        let mut op = build(&pd, &bin(&[1.0, 2.0, 3.0, 4.0], &[])).unwrap();
        let (s, y) = run_all(&mut op, Shape::d2(2, 2), &[1.0, 1.0, 1.0, 1.0]);
        assert_eq!((s, y), (Shape::d1(1), vec![10.0]));
    }

    #[test]
    fn matches_ncnn_two_row_batch() {
        // Produced by ncnn 1.0.20261020 (PyPI, x86_64, fp16 off) from the same formulas.
        let w: Vec<f32> = (0..6).map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0).collect();
        let b: Vec<f32> = w[..2].iter().map(|v| -v).collect();
        let x: Vec<f32> = (0..6).map(|i| ((i * 5) % 13) as f32 / 6.0 - 1.0).collect();
        let mut op = build(&params(&[(0, 2), (1, 1), (2, 6)]), &bin(&w, &[&b])).unwrap();
        let (s, y) = run_all(&mut op, Shape::d2(3, 2), &x);
        assert_eq!(s, Shape::d2(2, 2));
        for (g, want) in y.iter().zip([1.666667, -1.833333, 1.333333, -1.633333]) {
            assert!((g - want).abs() < 1e-5, "{y:?}");
        }
    }

    #[test]
    fn activation_is_applied() {
        let pd = params(&[(0, 2), (2, 2), (9, 1)]);
        let mut op = build(&pd, &bin(&[1.0, -1.0], &[])).unwrap();
        assert_eq!(run_all(&mut op, Shape::d1(1), &[2.0]).1, [2.0, 0.0]);
    }

    #[test]
    fn int8_weights_are_dequantized_and_scales_read_in_order() {
        // One output of 3 inputs: int8 [4, -4, 6], bias 0.5, weight scale 2, bottom scale 7.
        let pd = params(&[(0, 1), (1, 1), (2, 3), (8, 2)]);
        let mut b = TAG_INT8.to_le_bytes().to_vec();
        b.extend_from_slice(&[4, (-4i8) as u8, 6, 0]);
        for v in [0.5f32, 2.0, 7.0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let mut op = build(&pd, &b).unwrap();
        assert_eq!(op.weights(), [2.0, -2.0, 3.0]);
        let s = op.int8_scales.clone().unwrap();
        assert_eq!((s.weight, s.bottom), (vec![2.0], 7.0));
        assert_eq!(run_all(&mut op, Shape::d1(3), &[1.0, 1.0, 1.0]).1, [3.5]);

        // Per-row scales: 2 outputs of 2 inputs, scales [2, 4].
        let mut b = TAG_INT8.to_le_bytes().to_vec();
        b.extend_from_slice(&[2, 4, 4, 8]);
        for v in [2.0f32, 4.0, 1.0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let op = build(&params(&[(0, 2), (2, 4), (8, 2)]), &b).unwrap();
        assert_eq!(op.weights(), [1.0, 2.0, 1.0, 2.0]);
    }

    #[test]
    fn bad_params_are_errors() {
        let err = |pd: &ParamDict, bytes: &[u8]| build(pd, bytes).unwrap_err().to_string();
        let e = err(&params(&[(0, 0), (2, 4)]), &bin(&[0.0; 4], &[]));
        assert!(e.contains("num_output"), "{e}");
        let e = err(&params(&[(0, 3), (2, 4)]), &bin(&[0.0; 4], &[]));
        assert!(e.contains("weight_data_size"), "{e}");
        let e = err(&params(&[(0, 2), (1, 1), (2, 4)]), &bin(&[0.0; 4], &[]));
        assert!(e.contains("truncated"), "{e}");
        let mut b = TAG_INT8.to_le_bytes().to_vec();
        b.extend_from_slice(&[1, 2, 3, 4]);
        let e = err(&params(&[(0, 2), (2, 4)]), &b);
        assert!(e.contains("int8"), "{e}");

        let op = build(&params(&[(0, 2), (2, 8)]), &bin(&[0.0; 8], &[])).unwrap();
        assert!(op.output_shapes(&[Shape::d3(2, 2, 1)]).is_ok());
        let e = op
            .output_shapes(&[Shape::d3(3, 2, 1)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("weight_data_size"), "{e}");
        let e = op
            .output_shapes(&[Shape::d2(8, 0)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("weight_data_size"), "{e}");
    }

    #[test]
    fn kernels_match_reference_on_random_shapes() {
        let mut rng = Rng::new(7);
        for case in 0..120 {
            let shape = match case % 4 {
                0 => Shape::d1(rng.range(1, 300) as usize),
                1 => Shape::d2(rng.range(1, 70) as usize, rng.range(1, 9) as usize),
                2 => Shape::d3(
                    rng.range(1, 12) as usize,
                    rng.range(1, 12) as usize,
                    rng.range(1, 20) as usize,
                ),
                _ => Shape::d4(
                    rng.range(1, 5) as usize,
                    rng.range(1, 5) as usize,
                    rng.range(1, 5) as usize,
                    rng.range(1, 5) as usize,
                ),
            };
            let num_output = rng.range(1, 70) as usize;
            // 2-D inputs are batches of rows half of the time.
            let num_input = if shape.dims == 2 && case % 8 == 1 {
                shape.w
            } else {
                shape.len()
            };
            let bias = rng.range(0, 1) as i32;
            let act = rng.range(0, 6) as i32;
            let mut pd = params(&[
                (0, num_output as i32),
                (1, bias),
                (2, (num_output * num_input) as i32),
                (9, act),
            ]);
            let p = match act {
                2 => vec![0.1],
                3 => vec![-0.5, 0.5],
                6 => vec![0.2, 0.5],
                _ => vec![],
            };
            pd.set(10, Value::FloatArray(p)).unwrap();
            let weights = rng.vec(num_output * num_input, -1.0, 1.0);
            let biases = rng.vec(num_output, -1.0, 1.0);
            let raw: &[&[f32]] = if bias == 1 { &[&biases] } else { &[] };
            let mut op = build(&pd, &bin(&weights, raw)).unwrap();
            let data = rng.vec(shape.len(), -1.0, 1.0);
            let (s, _) = run_all(&mut op, shape, &data);
            if num_input != shape.len() {
                assert_eq!(s, Shape::d2(num_output, shape.h));
            }
        }
    }

    #[test]
    fn large_k_matches_reference() {
        // vgg16 fc6 sized rows (25088 = 512 x 7 x 7), few outputs to keep the test quick.
        let mut rng = Rng::new(11);
        let k = 25088;
        for num_output in [1, 5, 37] {
            let pd = params(&[
                (0, num_output as i32),
                (1, 1),
                (2, (num_output * k) as i32),
                (9, 1),
            ]);
            let bytes = bin(
                &rng.vec(num_output * k, -0.1, 0.1),
                &[&rng.vec(num_output, -1.0, 1.0)],
            );
            let mut op = build(&pd, &bytes).unwrap();
            let shape = Shape::d3(7, 7, 512);
            run_all(&mut op, shape, &rng.vec(k, 0.0, 1.0));
        }
    }

    /// `Options::fp16_weights`: the fp32 path reads fp16 copies, so every variant gives the
    /// reference's result on the rounded weights, batch rows and large K included; an
    /// integer choice drops the copies and FP32 makes them again.
    #[test]
    fn fp16_weights_give_the_reference_on_rounded_weights() {
        use crate::model::weights::{f16_to_f32, f32_to_f16};
        let mut rng = Rng::new(13);
        for (num_output, shape) in [
            (37, Shape::d1(300)),
            (5, Shape::d2(33, 4)),
            (9, Shape::d3(7, 7, 512)),
        ] {
            let k = if shape.dims == 2 {
                shape.w
            } else {
                shape.len()
            };
            let pd = params(&[
                (0, num_output as i32),
                (1, 1),
                (2, (num_output * k) as i32),
                (9, 1),
            ]);
            let weights = rng.vec(num_output * k, -1.0, 1.0);
            let rounded: Vec<f32> = weights.iter().map(|&v| f16_to_f32(f32_to_f16(v))).collect();
            let biases = rng.vec(num_output, -1.0, 1.0);
            let reference = build(&pd, &bin(&rounded, &[&biases])).unwrap();
            let mut op = build(&pd, &bin(&weights, &[&biases])).unwrap();
            op.set_fp16_weights(true);
            for choice in [
                PrecisionChoice::Fp32,
                PrecisionChoice::Int8,
                PrecisionChoice::Fp32,
            ] {
                op.set_precision(choice).unwrap();
            }
            let data = rng.vec(shape.len(), -1.0, 1.0);
            let x = Tensor { shape, data: &data };
            let out_shape = op.output_shapes(&[shape]).unwrap()[0];
            let mut want = vec![f32::NAN; out_shape.len()];
            let mut exact = vec![f32::NAN; out_shape.len()];
            let t = |op: &InnerProduct, v: &mut [f32]| {
                op.forward_reference(
                    &x,
                    &mut TensorMut {
                        shape: out_shape,
                        data: v,
                    },
                )
                .unwrap()
            };
            t(&reference, &mut want);
            t(&op, &mut exact);
            let tol = f32::EPSILON * k as f32;
            for isa in Isa::all_available() {
                let got = forward_with(&mut op, isa, x, out_shape);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!((g - w).abs() <= tol, "{isa:?} element {i}: {g} vs {w}");
                }
                // Closer to the rounded weights' result than to the exact one's.
                let dist = |r: &[f32]| got.iter().zip(r).map(|(g, r)| (g - r).abs()).sum::<f32>();
                assert!(
                    dist(&want) < dist(&exact),
                    "{isa:?}: the fp16 copies were not used"
                );
            }
        }
    }

    /// Weights converted at load (an fp16-tagged file) are kept once with fp16 storage on:
    /// the fp32 copy is released, the output is the rounded weights' exactly, and turning
    /// fp16 storage off again makes the fp32 weights back from the fp16 copies.
    #[test]
    fn fp16_storage_keeps_one_copy_of_converted_weights() {
        let mut rng = Rng::new(17);
        let (num_output, k) = (6, 40);
        let pd = params(&[(0, num_output as i32), (1, 1), (2, (num_output * k) as i32)]);
        let halves: Vec<u16> = rng
            .vec(num_output * k, -2.0, 2.0)
            .iter()
            .map(|&v| f32_to_f16(v))
            .collect();
        let rounded: Vec<f32> = halves.iter().map(|&h| f16_to_f32(h)).collect();
        let biases = rng.vec(num_output, -1.0, 1.0);
        let mut tagged = TAG_FP16.to_le_bytes().to_vec();
        halves
            .iter()
            .for_each(|h| tagged.extend_from_slice(&h.to_le_bytes()));
        biases
            .iter()
            .for_each(|v| tagged.extend_from_slice(&v.to_le_bytes()));
        let mut op = build(&pd, &tagged).unwrap();
        assert!(
            !op.weight.is_borrowed(),
            "fp16 weights are converted at load"
        );
        let mut reference = build(&pd, &bin(&rounded, &[&biases])).unwrap();
        let shape = Shape::d1(k);
        let data = rng.vec(k, -1.0, 1.0);
        let x = Tensor { shape, data: &data };
        let out_shape = Shape::d1(num_output);
        op.set_fp16_weights(true);
        op.set_precision(PrecisionChoice::Fp32).unwrap();
        assert!(op.weight.is_empty(), "the fp32 copy is released");
        let isa = Isa::detect();
        let want = forward_with(&mut reference, isa, x, out_shape);
        let with_half = forward_with(&mut op, isa, x, out_shape);
        let tol = f32::EPSILON * k as f32;
        for (g, w) in with_half.iter().zip(&want) {
            assert!((g - w).abs() <= tol, "{g} vs {w}");
        }
        op.set_fp16_weights(false);
        op.set_precision(PrecisionChoice::Fp32).unwrap();
        assert_eq!(
            &op.weight[..],
            &rounded[..],
            "made back from the fp16 copies"
        );
        assert_eq!(forward_with(&mut op, isa, x, out_shape), want);
    }

    #[test]
    fn weights_stay_in_the_weight_file() {
        let pd = params(&[(0, 2), (2, 4)]);
        let mut r = WeightReader::new(Arc::new(Source::from_bytes(&bin(&[1.0; 4], &[]))), "t.bin");
        let op = InnerProduct::new(&pd, &mut r).unwrap();
        assert!(op.weight.is_borrowed());
    }

    /// Quantized InnerProduct against exact integer sums and the same epilogue.
    fn check_int8(
        bits: Precision,
        num_output: usize,
        num_input: usize,
        extreme: bool,
        rng: &mut Rng,
    ) {
        let qmax = bits.qmax();
        let q: Vec<i8> = (0..num_output * num_input)
            .map(|i| {
                if extreme {
                    (if i % 3 == 0 { -qmax } else { qmax }) as i8
                } else {
                    rng.range(-qmax as i64, qmax as i64) as i8
                }
            })
            .collect();
        let bias = rng.vec(num_output, -1.0, 1.0);
        let wscales: Vec<f32> = (0..num_output).map(|_| rng.uniform(50.0, 200.0)).collect();
        let bottom = rng.uniform(20.0, 60.0);
        let raw: Vec<f32> = bias
            .iter()
            .chain(&wscales)
            .chain([&bottom])
            .copied()
            .collect();
        let b = crate::ops::quantized::int8_weight_file(&q, &raw);
        let mut pd = params(&[
            (0, num_output as i32),
            (1, 1),
            (2, (num_output * num_input) as i32),
            (8, 2),
            (9, 1),
            (crate::quant::BITS_KEY as usize, bits.bits() as i32),
        ]);
        pd.set(10, Value::FloatArray(vec![])).unwrap();
        let mut op = build(&pd, &b).unwrap();
        let choice = match bits {
            Precision::Int8 => PrecisionChoice::Int8,
            Precision::Int7 => PrecisionChoice::Int7,
        };
        assert_eq!(op.set_precision(choice).unwrap(), Some(bits));
        let x: Vec<f32> = if extreme {
            (0..num_input)
                .map(|i| if i % 2 == 0 { 1e4 } else { -1e4 })
                .collect()
        } else {
            rng.vec(num_input, -3.0, 3.0)
        };
        let qx: Vec<i64> = x
            .iter()
            .map(|&v| crate::quant::quantize(v, bottom, qmax) as i64)
            .collect();
        let si = requant::scale_in(bottom, &wscales);
        let rq = Requant {
            scale_in: &si,
            bias: Some(&bias),
            act: Activation::ReLU,
            top_scale: 1.0,
            qmax,
        };
        let want: Vec<f32> = (0..num_output)
            .map(|o| {
                let acc: i64 = (0..num_input)
                    .map(|k| q[o * num_input + k] as i64 * qx[k])
                    .sum();
                rq.dequant(o, i32::try_from(acc).unwrap())
            })
            .collect();
        let shape = Shape::d1(num_input);
        for threads in [1, 2] {
            let pool = Pool::new(threads).unwrap();
            let mut scratch = vec![f32::NAN; op.scratch_len(&[shape], &[]) * threads];
            let mut got = vec![f32::NAN; num_output];
            op.forward(
                &[Tensor { shape, data: &x }],
                &mut [TensorMut {
                    shape: Shape::d1(num_output),
                    data: &mut got,
                }],
                &mut Ctx {
                    pool: &pool,
                    scratch: &mut scratch,
                },
            )
            .unwrap();
            assert_eq!(
                got, want,
                "{bits:?} {num_output}x{num_input} threads {threads}"
            );
        }
    }

    #[test]
    fn quantized_matches_integer_sums() {
        let mut rng = Rng::new(8);
        for bits in [Precision::Int8, Precision::Int7] {
            for _ in 0..20 {
                let (o, k) = (rng.range(1, 40) as usize, rng.range(1, 300) as usize);
                check_int8(bits, o, k, false, &mut rng);
            }
            check_int8(bits, 5, 8200, true, &mut rng);
        }
    }
}
