//! ConvolutionDepthWise (ncnn-format.md §5.2): grouped 2-D convolution. With
//! `group == channels == num_output` every output channel sees only its own input channel
//! (true depthwise, MobileNet); other groups (alexnet's group 2) are ordinary grouped
//! convolutions, `channels / group` inputs per output.
//!
//! Weights are `[group][outch/group][inch/group][kh][kw]`, fp32 from the weight file (read in
//! place). Int8-tagged weights are turned back into fp32 at load (`q / weight_scale[group]`)
//! until the int8 path exists; the scales are kept for it.

use super::activation::Activation;
use super::{expect_inputs, Ctx, Op};
use crate::cpu::CoreKind;
use crate::error::{invalid, LayerResult, Result};
use crate::kernels::depthwise_f32::{self, Geometry, Isa};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, Tagged, WeightReader};
use crate::ops::quantized::{
    float_weights, int8_weights, quant_plan, synthesize, Int8Scales, QuantPlan, Simulation,
};
use crate::pool::SharedMut;
use crate::quant::{Int8Grid, Precision, PrecisionChoice};
use crate::tensor::{Shape, Tensor, TensorMut};

pub use super::convolution::Padding;
use super::convolution::{PAD_SAME_LOWER as SAME_LOWER, PAD_SAME_UPPER as SAME_UPPER};

/// Output channels per task in the grouped path (amortises padding the group's inputs).
const GROUPED_BLOCK: usize = 8;

#[derive(Debug)]
pub struct ConvolutionDepthWise {
    pub num_output: usize,
    pub kernel_w: usize,
    pub kernel_h: usize,
    pub dilation_w: usize,
    pub dilation_h: usize,
    pub stride_w: usize,
    pub stride_h: usize,
    pub padding: Padding,
    pub pad_value: f32,
    pub group: usize,
    pub activation: Activation,
    pub int8_scales: Option<Int8Scales>,
    weight: Floats,
    /// The weights as stored (int8 or fp32), kept for quantized execution.
    stored: Option<Tagged>,
    bias: Option<Floats>,
    inch_per_group: usize,
    isa: Isa,
    int8: Option<int8::DwInt8>,
    sim: Option<Simulation>,
    /// The pool's core types (`Op::set_cores`): grouped integer paths pack for their kernels.
    pub cores: Vec<CoreKind>,
}

fn positive(pd: &ParamDict, key: usize, default: usize, name: &str) -> LayerResult<usize> {
    match pd.usize(key, default)? {
        0 => Err(invalid(format!("{name} (key {key}) must be positive"))),
        v => Ok(v),
    }
}

/// Turns int8-tagged weights into fp32: `q / scale`, one scale per equal-sized chunk
impl ConvolutionDepthWise {
    /// Reads params and, in ncnn's order, weights, bias and int8 scales.
    pub fn new(pd: &ParamDict, w: &mut WeightReader) -> Result<ConvolutionDepthWise> {
        let num_output = positive(pd, 0, 0, "num_output")?;
        let kernel_w = positive(pd, 1, 0, "kernel_w")?;
        let kernel_h = positive(pd, 11, kernel_w, "kernel_h")?;
        let dilation_w = positive(pd, 2, 1, "dilation_w")?;
        let dilation_h = positive(pd, 12, dilation_w, "dilation_h")?;
        let stride_w = positive(pd, 3, 1, "stride_w")?;
        let stride_h = positive(pd, 13, stride_w, "stride_h")?;
        let left = pd.int(4, 0)?;
        let right = pd.int(15, left)?;
        let top = pd.int(14, left)?;
        let bottom = pd.int(16, top)?;
        let pads = [left, right, top, bottom];
        let padding = if pads.iter().all(|&p| p == SAME_UPPER) {
            Padding::SameUpper
        } else if pads.iter().all(|&p| p == SAME_LOWER) {
            Padding::SameLower
        } else if pads.iter().any(|&p| p < 0) {
            return Err(invalid(format!(
                "pads {pads:?} (keys 4/15/14/16): negative pads other than all -233 or all -234 are not supported"
            ))
            .into());
        } else {
            Padding::Explicit {
                left: left as usize,
                right: right as usize,
                top: top as usize,
                bottom: bottom as usize,
            }
        };
        let pad_value = pd.float(18, 0.0)?;
        let bias_term = pd.int(5, 0)? != 0;
        let weight_data_size = pd.usize(6, 0)?;
        let group = positive(pd, 7, 1, "group")?;
        let int8_scale_term = pd.int(8, 0)?;
        let activation = Activation::from_params(pd)?;
        if pd.int(19, 0)? != 0 {
            return Err(invalid("dynamic_weight (key 19) is not supported").into());
        }
        if !num_output.is_multiple_of(group) {
            return Err(invalid(format!(
                "num_output {num_output} is not divisible by group {group}"
            ))
            .into());
        }
        let per_input = num_output
            .checked_mul(kernel_w)
            .and_then(|v| v.checked_mul(kernel_h))
            .ok_or_else(|| invalid("num_output * kernel size overflows"))?;
        if weight_data_size == 0 || !weight_data_size.is_multiple_of(per_input) {
            return Err(invalid(format!(
                "weight_data_size {weight_data_size} is not a positive multiple of num_output * kernel_h * kernel_w = {per_input}"
            ))
            .into());
        }
        let inch_per_group = weight_data_size / per_input;

        let weight = w.tagged(weight_data_size, "weight")?;
        let bias = if bias_term {
            Some(w.raw(num_output, "bias")?)
        } else {
            None
        };
        let int8_scales = match int8_scale_term {
            0 => None,
            1 | 101 | 2 | 102 => {
                // 1 / 101: one weight scale per group; 2 / 102: one for all groups.
                let per_group = int8_scale_term % 100 == 1;
                let n = if per_group { group } else { 1 };
                let mut s = Int8Scales::read(pd, w, n, int8_scale_term > 100)?;
                if !per_group {
                    s.weight = vec![s.weight[0]; group];
                }
                int8_weights(&weight, &s.weight, s.bits)?;
                Some(s)
            }
            t => {
                return Err(invalid(format!(
                    "int8_scale_term (key 8) {t} is not one of 0, 1, 2, 101, 102"
                ))
                .into())
            }
        };
        let stored = int8_scales.is_some().then(|| weight.clone());
        let weight = float_weights(weight, int8_scales.as_ref())?;
        Ok(ConvolutionDepthWise {
            num_output,
            kernel_w,
            kernel_h,
            dilation_w,
            dilation_h,
            stride_w,
            stride_h,
            padding,
            pad_value,
            group,
            activation,
            int8_scales,
            weight,
            stored,
            bias,
            inch_per_group,
            isa: Isa::detect(),
            int8: None,
            sim: None,
            cores: Vec::new(),
        })
    }

    /// Chooses the kernel variant (tests run every available one).
    pub fn set_isa(&mut self, isa: Isa) {
        self.isa = isa;
    }

    pub fn weights(&self) -> &[f32] {
        &self.weight
    }

    /// True depthwise: one input channel per group and one output per group.
    pub fn is_depthwise(&self) -> bool {
        self.inch_per_group == 1 && self.group == self.num_output
    }

    fn extent_w(&self) -> usize {
        self.dilation_w * (self.kernel_w - 1) + 1
    }
    fn extent_h(&self) -> usize {
        self.dilation_h * (self.kernel_h - 1) + 1
    }

    /// (left, right, top, bottom) pads for an input of `w` x `h`.
    pub fn pads(&self, w: usize, h: usize) -> (usize, usize, usize, usize) {
        // SAME total pad; ncnn's formula can go negative, which only drops unread pixels.
        let same = |extent: usize, size: usize, stride: usize| {
            (extent + (size.max(1) - 1) / stride * stride).saturating_sub(size)
        };
        match self.padding {
            Padding::Explicit {
                left,
                right,
                top,
                bottom,
            } => (left, right, top, bottom),
            Padding::SameUpper | Padding::SameLower => {
                let wpad = same(self.extent_w(), w, self.stride_w);
                let hpad = same(self.extent_h(), h, self.stride_h);
                if self.padding == Padding::SameUpper {
                    (wpad / 2, wpad - wpad / 2, hpad / 2, hpad - hpad / 2)
                } else {
                    (wpad - wpad / 2, wpad / 2, hpad - hpad / 2, hpad / 2)
                }
            }
        }
    }

    /// Kernel geometry over the padded input plane.
    fn geometry(&self, input: Shape) -> LayerResult<Geometry> {
        let (l, r, t, b) = self.pads(input.w, input.h);
        let in_w = input.w + l + r;
        let in_h = input.h + t + b;
        if in_w < self.extent_w() || in_h < self.extent_h() {
            return Err(invalid(format!(
                "padded input {in_w}x{in_h} is smaller than the dilated kernel {}x{}",
                self.extent_w(),
                self.extent_h()
            )));
        }
        Ok(Geometry {
            in_w,
            in_h,
            out_w: (in_w - self.extent_w()) / self.stride_w + 1,
            out_h: (in_h - self.extent_h()) / self.stride_h + 1,
            kernel_w: self.kernel_w,
            kernel_h: self.kernel_h,
            stride_w: self.stride_w,
            stride_h: self.stride_h,
            dilation_w: self.dilation_w,
            dilation_h: self.dilation_h,
        })
    }

    fn check_input(&self, s: Shape) -> LayerResult<()> {
        if s.dims != 3 {
            return Err(invalid(format!("expects a 3-D input (c, h, w), got {s}")));
        }
        if !s.c.is_multiple_of(self.group) {
            return Err(invalid(format!(
                "input channels {} are not divisible by group {}",
                s.c, self.group
            )));
        }
        if s.c / self.group != self.inch_per_group {
            return Err(invalid(format!(
                "weight_data_size {} does not match input channels {}: expected num_output {} * channels/group {} * kernel {}x{}",
                self.weight.len(),
                s.c,
                self.num_output,
                s.c / self.group,
                self.kernel_h,
                self.kernel_w
            )));
        }
        Ok(())
    }

    fn bias_of(&self, oc: usize) -> f32 {
        self.bias.as_ref().map_or(0.0, |b| b[oc])
    }

    /// The plain reference: one output pixel at a time, padding by index test, summing bias
    /// then (input channel, ky, kx) in order as ncnn's reference does.
    pub fn forward_reference(&self, x: &Tensor, y: &mut TensorMut) -> LayerResult<()> {
        self.check_input(x.shape)?;
        let g = self.geometry(x.shape)?;
        let (left, _, top, _) = self.pads(x.shape.w, x.shape.h);
        let (w, h) = (x.shape.w as isize, x.shape.h as isize);
        let outch_g = self.num_output / self.group;
        let inch_g = self.inch_per_group;
        let taps = g.taps();
        for oc in 0..self.num_output {
            let group = oc / outch_g;
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let mut sum = self.bias_of(oc);
                    for q in 0..inch_g {
                        let plane = x.channel(group * inch_g + q);
                        let kernel = &self.weight[(oc * inch_g + q) * taps..][..taps];
                        for ky in 0..g.kernel_h {
                            for kx in 0..g.kernel_w {
                                let iy =
                                    (oy * g.stride_h + ky * g.dilation_h) as isize - top as isize;
                                let ix =
                                    (ox * g.stride_w + kx * g.dilation_w) as isize - left as isize;
                                let v = if iy < 0 || ix < 0 || iy >= h || ix >= w {
                                    self.pad_value
                                } else {
                                    plane[(iy * w + ix) as usize]
                                };
                                sum += v * kernel[ky * g.kernel_w + kx];
                            }
                        }
                    }
                    y.data[(oc * g.out_h + oy) * g.out_w + ox] = self.activation.apply(sum);
                }
            }
        }
        Ok(())
    }

    /// Floats of padded input one worker needs (0 when no padding is applied).
    fn padded_len(&self, s: Shape) -> usize {
        let (l, r, t, b) = self.pads(s.w, s.h);
        if l + r + t + b == 0 {
            return 0;
        }
        let plane = (s.w + l + r) * (s.h + t + b);
        if self.is_depthwise() {
            plane
        } else {
            plane * self.inch_per_group
        }
    }
}

/// Copies a plane `w` wide into a `pw`-wide padded plane, its first pixel at (`left`,
/// `top`), and fills only the border with `value`.
fn pad_plane(
    src: &[f32],
    w: usize,
    left: usize,
    top: usize,
    pw: usize,
    value: f32,
    dst: &mut [f32],
) {
    let rows = src.len() / w;
    let (head, rest) = dst.split_at_mut(top * pw);
    head.fill(value);
    let (body, tail) = rest.split_at_mut(rows * pw);
    tail.fill(value);
    for (row, d) in src.chunks_exact(w).zip(body.chunks_exact_mut(pw)) {
        d[..left].fill(value);
        copy_row(&mut d[left..left + w], row);
        d[left + w..].fill(value);
    }
}

/// A row copy in 8-float blocks: the rows here are short (7 to 112 floats), where a
/// `memcpy` call costs more than the copy.
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d8, s8) in (&mut d).zip(&mut s) {
        let block: [f32; 8] = s8.try_into().expect("8 floats");
        d8.copy_from_slice(&block);
    }
    for (x, &y) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *x = y;
    }
}

impl ConvolutionDepthWise {
    /// The fp32 path (also the float simulation's, on rounded input).
    fn forward_f32(&self, x: Tensor, outputs: &mut [TensorMut], ctx: &mut Ctx) -> LayerResult<()> {
        let s = x.shape;
        let g = self.geometry(s)?;
        let (left, _, top, _) = self.pads(s.w, s.h);
        let padded = self.padded_len(s);
        let per_worker = ctx.scratch.len() / ctx.pool.threads();
        if per_worker < padded {
            return Err(invalid(format!(
                "scratch of {per_worker} floats per worker, {padded} needed"
            )));
        }
        let plane_in = g.in_w * g.in_h;
        let plane_out = g.out_w * g.out_h;
        let taps = g.taps();
        let out = SharedMut::new(&mut *outputs[0].data);
        let scratch = SharedMut::new(&mut *ctx.scratch);
        // Input channel `c` as the kernel reads it: padded into `buf`, or in place.
        let prepare = |c: usize, buf: &mut [f32]| {
            pad_plane(x.channel(c), s.w, left, top, g.in_w, self.pad_value, buf);
        };
        // 3x3 with one pixel of padding: the kernels read the unpadded plane.
        let pad1 = self.kernel_w == 3
            && self.kernel_h == 3
            && self.dilation_w == 1
            && self.dilation_h == 1
            && self.stride_w == self.stride_h
            && self.pads(s.w, s.h) == (1, 1, 1, 1)
            && per_worker >= s.w;
        // One output channel of the depthwise case.
        let one_channel = |c: usize, worker: usize| {
            // SAFETY: each worker index is used by one thread at a time and each task
            // writes only its own output channels.
            let o = unsafe { out.slice(c * plane_out, plane_out) };
            let kernel = &self.weight[c * taps..(c + 1) * taps];
            let bias = self.bias_of(c);
            if pad1 {
                // SAFETY: as above.
                let buf = unsafe { scratch.slice(worker * per_worker, s.w) };
                if depthwise_f32::channel_pad1(
                    self.isa,
                    x.channel(c),
                    s.w,
                    s.h,
                    self.stride_w,
                    kernel,
                    bias,
                    self.activation,
                    self.pad_value,
                    buf,
                    o,
                ) {
                    return;
                }
            }
            let input = if padded == 0 {
                x.channel(c)
            } else {
                let buf = unsafe { scratch.slice(worker * per_worker, padded) };
                prepare(c, buf);
                buf
            };
            depthwise_f32::channel(self.isa, &g, input, 1, kernel, bias, self.activation, o);
        };
        let result = if self.is_depthwise() {
            ctx.pool.run_items(s.c, &one_channel)
        } else {
            let inch_g = self.inch_per_group;
            let outch_g = self.num_output / self.group;
            let blocks = outch_g.div_ceil(GROUPED_BLOCK);
            ctx.pool.run(self.group * blocks, &|task, worker| {
                let group = task / blocks;
                let first = group * outch_g + (task % blocks) * GROUPED_BLOCK;
                let last = (first + GROUPED_BLOCK).min((group + 1) * outch_g);
                // The group's input planes, back to back.
                let planes: &[f32] = if padded == 0 {
                    &x.data[group * inch_g * plane_in..(group + 1) * inch_g * plane_in]
                } else {
                    // SAFETY: as above.
                    let buf = unsafe { scratch.slice(worker * per_worker, padded) };
                    for q in 0..inch_g {
                        prepare(
                            group * inch_g + q,
                            &mut buf[q * plane_in..(q + 1) * plane_in],
                        );
                    }
                    buf
                };
                for oc in first..last {
                    // SAFETY: tasks cover disjoint output channel ranges.
                    let o = unsafe { out.slice(oc * plane_out, plane_out) };
                    let kernel = &self.weight[oc * inch_g * taps..(oc + 1) * inch_g * taps];
                    let bias = self.bias_of(oc);
                    depthwise_f32::channel(
                        self.isa,
                        &g,
                        planes,
                        inch_g,
                        kernel,
                        bias,
                        self.activation,
                        o,
                    );
                }
            })
        };
        result.map_err(|e| invalid(e.to_string()))
    }
}

impl Op for ConvolutionDepthWise {
    fn set_cores(&mut self, cores: &[CoreKind]) {
        self.cores = cores.to_vec();
    }

    fn synthesize_int8_scales(&mut self) {
        synthesize(
            &mut self.int8_scales,
            &mut self.stored,
            &self.weight,
            self.group,
        );
    }

    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        self.check_input(inputs[0])?;
        let g = self.geometry(inputs[0])?;
        Ok(vec![Shape::d3(g.out_w, g.out_h, self.num_output)])
    }

    fn scratch_len(&self, inputs: &[Shape], _outputs: &[Shape]) -> usize {
        match (&self.int8, inputs.first()) {
            (Some(q), Some(&s)) => q.scratch_len(self, s),
            (None, Some(&s)) if self.sim.is_some() => {
                self.padded_len(s) + Simulation::scratch_floats(s)
            }
            (None, Some(&s)) => self.padded_len(s),
            _ => 0,
        }
    }

    fn set_precision(&mut self, choice: PrecisionChoice) -> LayerResult<Option<Precision>> {
        match quant_plan(self.int8_scales.as_ref(), self.stored.as_ref(), choice)? {
            QuantPlan::Fp32 => {
                self.int8 = None;
                Ok(None)
            }
            QuantPlan::Simulate {
                precision,
                weights,
                sim,
            } => {
                self.weight = Floats::owned(weights);
                self.sim = Some(sim);
                Ok(Some(precision))
            }
            QuantPlan::Integer { precision, q } => {
                self.int8 = Some(int8::DwInt8::new(self, &q, precision)?);
                Ok(Some(precision))
            }
        }
    }

    fn int8_input(&self) -> Option<Int8Grid> {
        let scales = self.int8_scales.as_ref()?;
        let qmax = match (&self.int8, &self.sim) {
            (Some(q), _) => q.precision.qmax(),
            (None, Some(sim)) => sim.qmax,
            (None, None) => return None,
        };
        Some(Int8Grid {
            scale: scales.bottom,
            qmax,
        })
    }

    fn can_requantize(&self) -> bool {
        self.int8.is_some() || self.sim.is_some()
    }

    fn set_int8_io(&mut self, input: bool, output: Option<Int8Grid>) -> LayerResult<()> {
        if let Some(sim) = &mut self.sim {
            sim.top = output;
            return Ok(());
        }
        match &mut self.int8 {
            Some(q) => {
                q.input_i8 = input;
                q.set_top(output);
                Ok(())
            }
            None if input || output.is_some() => {
                Err(invalid("an fp32 layer cannot read or write int8"))
            }
            None => Ok(()),
        }
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let x = inputs[0];
        let s = x.shape;
        self.check_input(s)?;
        if let Some(q) = &self.int8 {
            let len = outputs[0].shape.len();
            return q.run(self, x.data, s, outputs[0].data, len, ctx.pool, ctx.scratch);
        }
        if let Some(sim) = &self.sim {
            return sim.run(x, outputs, ctx, |x, outputs, ctx| {
                self.forward_f32(x, outputs, ctx)
            });
        }
        self.forward_f32(x, outputs, ctx)
    }
}

pub mod int8;
#[cfg(test)]
mod int8_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::model::weights::Source;
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

    fn build(pd: &ParamDict, bytes: &[u8]) -> Result<ConvolutionDepthWise> {
        let mut r = WeightReader::new(Arc::new(Source::from_bytes(bytes)), "t.bin");
        let op = ConvolutionDepthWise::new(pd, &mut r)?;
        r.finish()?;
        Ok(op)
    }

    fn run_fast(
        op: &ConvolutionDepthWise,
        shape: Shape,
        data: &[f32],
        threads: usize,
    ) -> (Shape, Vec<f32>) {
        let out_shape = op.output_shapes(&[shape]).unwrap()[0];
        let pool = Pool::new(threads).unwrap();
        let mut scratch = vec![f32::NAN; op.scratch_len(&[shape], &[out_shape]) * threads];
        let mut out = vec![f32::NAN; out_shape.len()];
        let x = Tensor { shape, data };
        let mut y = [TensorMut {
            shape: out_shape,
            data: &mut out,
        }];
        let mut ctx = Ctx {
            pool: &pool,
            scratch: &mut scratch,
        };
        op.forward(&[x], &mut y, &mut ctx).unwrap();
        (out_shape, out)
    }

    fn run_ref(op: &ConvolutionDepthWise, shape: Shape, data: &[f32]) -> Vec<f32> {
        let out_shape = op.output_shapes(&[shape]).unwrap()[0];
        let mut out = vec![f32::NAN; out_shape.len()];
        let mut y = TensorMut {
            shape: out_shape,
            data: &mut out,
        };
        op.forward_reference(&Tensor { shape, data }, &mut y)
            .unwrap();
        out
    }

    /// Runs the reference and every kernel variant; checks they agree and returns the result.
    fn run_all(op: &mut ConvolutionDepthWise, shape: Shape, data: &[f32]) -> Vec<f32> {
        let want = run_ref(op, shape, data);
        let max = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        // The output may be clipped; summation-order differences grow with the
        // number of terms per output (|x|, |w| <= 1 in these tests).
        let terms = op.kernel_w * op.kernel_h * (shape.c / op.group.max(1)).max(1);
        let tol = (1e-5 * max).max(f32::EPSILON * terms as f32);
        for isa in Isa::all_available() {
            op.set_isa(isa);
            for threads in [1, 2, 3] {
                let (_, got) = run_fast(op, shape, data, threads);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= tol,
                        "{isa:?} element {i}: {g} vs reference {w} (tol {tol}); {op:?} input {shape}"
                    );
                }
            }
        }
        want
    }

    #[test]
    fn depthwise_3x3_pad1_by_hand() {
        let pd = params(&[(0, 1), (1, 3), (4, 1), (5, 1), (6, 9), (7, 1)]);
        let w: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let mut op = build(&pd, &bin(&w, &[&[0.5]])).unwrap();
        assert!(op.is_depthwise());
        let out = run_all(&mut op, Shape::d3(3, 3, 1), &[1.0; 9]);
        // Corner (0,0) sees taps 5, 6, 8, 9; the centre sees all nine.
        assert_eq!(out[0], 28.5);
        assert_eq!(out[4], 45.5);
        assert_eq!(out[8], 1.0 + 2.0 + 4.0 + 5.0 + 0.5);
    }

    #[test]
    fn same_upper_and_lower_put_the_odd_pad_at_opposite_ends() {
        // 1x4 input, 2x1 kernel, stride 1: SAME needs one pixel of padding in w.
        let input = [1.0, 2.0, 3.0, 4.0];
        let weights = [1.0, 10.0];
        for (pad, want) in [
            (-233, [21.0, 32.0, 43.0, 4.0]),
            (-234, [10.0, 21.0, 32.0, 43.0]),
        ] {
            let pd = params(&[(0, 1), (1, 2), (11, 1), (4, pad), (6, 2), (7, 1)]);
            let mut op = build(&pd, &bin(&weights, &[])).unwrap();
            assert_eq!(
                op.output_shapes(&[Shape::d3(4, 1, 1)]).unwrap()[0],
                Shape::d3(4, 1, 1)
            );
            assert_eq!(run_all(&mut op, Shape::d3(4, 1, 1), &input), want);
        }
        // Stride 2 on 5 pixels, kernel 3: out = ceil(5/2) = 3, total pad 2.
        let pd = params(&[(0, 1), (1, 3), (3, 2), (4, -233), (6, 9), (7, 1)]);
        let op = build(&pd, &bin(&[0.0; 9], &[])).unwrap();
        assert_eq!(op.pads(5, 5), (1, 1, 1, 1));
        assert_eq!(
            op.output_shapes(&[Shape::d3(5, 5, 1)]).unwrap()[0],
            Shape::d3(3, 3, 1)
        );
    }

    #[test]
    fn pad_value_fills_the_border() {
        let mut pd = params(&[(0, 1), (1, 3), (4, 1), (6, 9), (7, 1)]);
        pd.set(18, Value::Float(-1.0)).unwrap();
        let mut op = build(&pd, &bin(&[1.0; 9], &[])).unwrap();
        assert_eq!(run_all(&mut op, Shape::d3(1, 1, 1), &[2.0]), [2.0 - 8.0]);
    }

    #[test]
    fn padded_3x3_kernels_with_pad_value_and_activation() {
        // The kernels that read the unpadded plane (3x3, one pixel of padding, stride 1
        // and 2) at widths around their vector and border cases, odd and even heights.
        let mut rng = Rng::new(5);
        for stride in [1, 2] {
            for (w, h) in [
                (6, 1),
                (7, 2),
                (9, 3),
                (10, 4),
                (11, 5),
                (13, 6),
                (21, 7),
                (34, 9),
            ] {
                for (pad_value, act) in [(0.0, 1), (0.5, 2), (-0.25, 3)] {
                    let mut pd = params(&[
                        (0, 4),
                        (1, 3),
                        (3, stride),
                        (4, 1),
                        (5, 1),
                        (6, 36),
                        (7, 4),
                        (9, act),
                    ]);
                    pd.set(18, Value::Float(pad_value)).unwrap();
                    let act_params = match act {
                        2 => vec![0.1],
                        3 => vec![-0.3, 0.4],
                        _ => vec![],
                    };
                    pd.set(10, Value::FloatArray(act_params)).unwrap();
                    let bytes = bin(&rng.vec(36, -1.0, 1.0), &[&rng.vec(4, -1.0, 1.0)]);
                    let mut op = build(&pd, &bytes).unwrap();
                    let shape = Shape::d3(w, h, 4);
                    if op.output_shapes(&[shape]).is_ok() {
                        run_all(&mut op, shape, &rng.vec(shape.len(), -1.0, 1.0));
                    }
                }
            }
        }
    }

    #[test]
    fn grouped_convolution_by_hand() {
        // 4 inputs, group 2, 2 outputs, 1x1 kernels: out0 = 1*x0 + 2*x1, out1 = 3*x2 + 4*x3.
        let pd = params(&[(0, 2), (1, 1), (6, 4), (7, 2), (5, 1)]);
        let mut op = build(&pd, &bin(&[1.0, 2.0, 3.0, 4.0], &[&[0.5, -0.5]])).unwrap();
        assert!(!op.is_depthwise());
        let out = run_all(&mut op, Shape::d3(1, 1, 4), &[1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(out, [21.5, 4299.5]);
    }

    #[test]
    fn activation_is_applied() {
        let mut pd = params(&[(0, 2), (1, 1), (6, 2), (7, 2), (9, 3)]);
        pd.set(10, Value::FloatArray(vec![-1.0, 1.0])).unwrap();
        let mut op = build(&pd, &bin(&[1.0, 1.0], &[])).unwrap();
        assert_eq!(
            run_all(&mut op, Shape::d3(1, 1, 2), &[-5.0, 0.25]),
            [-1.0, 0.25]
        );
    }

    #[test]
    fn int8_weights_are_dequantized_and_scales_read_in_order() {
        // Depthwise 1x1 over 2 channels; int8 weights [2, -4] with group scales [2, 4].
        let mut b = TAG_INT8.to_le_bytes().to_vec();
        b.extend_from_slice(&[2, (-4i8) as u8, 0, 0]);
        for v in [0.25f32, -0.25, 2.0, 4.0, 8.0, 16.0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let pd = params(&[(0, 2), (1, 1), (5, 1), (6, 2), (7, 2), (8, 101)]);
        let mut op = build(&pd, &b).unwrap();
        assert_eq!(op.weights(), [1.0, -1.0]);
        let s = op.int8_scales.clone().unwrap();
        assert_eq!(
            (s.weight, s.bottom, s.top),
            (vec![2.0, 4.0], 8.0, Some(16.0))
        );
        assert_eq!(
            run_all(&mut op, Shape::d3(1, 1, 2), &[3.0, 3.0]),
            [3.25, -3.25]
        );

        // 8=2: one weight scale for every group, one bottom scale, no top scale.
        let mut b = TAG_INT8.to_le_bytes().to_vec();
        b.extend_from_slice(&[2, (-4i8) as u8, 0, 0]);
        for v in [2.0f32, 8.0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let pd = params(&[(0, 2), (1, 1), (6, 2), (7, 2), (8, 2)]);
        let op = build(&pd, &b).unwrap();
        assert_eq!(op.weights(), [1.0, -2.0]);
        assert_eq!(op.int8_scales.as_ref().unwrap().weight, [2.0, 2.0]);

        // fp32 weights with scales stay as they are; the scales are still consumed.
        let pd = params(&[(0, 2), (1, 1), (6, 2), (7, 2), (8, 1)]);
        let op = build(&pd, &bin(&[0.5, 0.75], &[&[1.0, 1.0], &[1.0]])).unwrap();
        assert_eq!(op.weights(), [0.5, 0.75]);
    }

    /// Weights and inputs from simple formulas so the expected values could be produced by
    /// ncnn 1.0.20261020 (PyPI, x86_64, fp16 off) and pasted here.
    fn formula_weights(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0).collect()
    }
    fn formula_input(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 5) % 13) as f32 / 6.0 - 1.0).collect()
    }

    #[test]
    fn matches_ncnn_same_lower_stride2_leaky() {
        let mut pd = params(&[
            (0, 3),
            (1, 3),
            (3, 2),
            (4, -234),
            (5, 1),
            (6, 27),
            (7, 3),
            (9, 2),
        ]);
        pd.set(10, Value::FloatArray(vec![0.1])).unwrap();
        let bias: Vec<f32> = formula_weights(3).iter().map(|v| -v).collect();
        let mut op = build(&pd, &bin(&formula_weights(27), &[&bias])).unwrap();
        let shape = Shape::d3(5, 4, 3);
        assert_eq!(op.output_shapes(&[shape]).unwrap()[0], Shape::d3(3, 2, 3));
        let got = run_all(&mut op, shape, &formula_input(60));
        let ncnn = [
            1.166667,
            1.766667,
            -0.03,
            2.533333,
            0.7000001,
            1.6,
            -0.2433333,
            0.5333333,
            0.6666667,
            2.133333,
            0.1333334,
            1.333333,
            0.6,
            -0.003333327,
            0.2,
            0.9666667,
            2.8,
            -0.02666667,
        ];
        for (g, w) in got.iter().zip(ncnn) {
            assert!((g - w).abs() < 1e-5, "{got:?}");
        }
    }

    #[test]
    fn matches_ncnn_grouped_asymmetric_pads_with_pad_value() {
        let mut pd = params(&[
            (0, 4),
            (1, 2),
            (11, 3),
            (4, 1),
            (15, 0),
            (14, 2),
            (16, 1),
            (6, 48),
            (7, 2),
        ]);
        pd.set(18, Value::Float(0.5)).unwrap();
        let mut op = build(&pd, &bin(&formula_weights(48), &[])).unwrap();
        let shape = Shape::d3(4, 3, 4);
        assert_eq!(op.output_shapes(&[shape]).unwrap()[0], Shape::d3(4, 4, 4));
        let got = run_all(&mut op, shape, &formula_input(48));
        let ncnn = [
            0.5666667, 1.133333, 0.2333333, 0.2, -0.7333333, -1.133333, 0.9, -0.5333333, -1.333333,
            3.333333, -0.9666666, -1.8, -1.966667, -1.666667, -0.3, 0.2, -1.066667, 0.1333333,
            1.966667, -0.1000001, -0.8000001, 0.3999999, -1.633334, -0.6333334, 0.03333329,
            0.06666665, 2.133333, -0.1333333, 1.0, -1.033333, -0.8, 0.3, -0.3333333, -0.4666667,
            -0.6666667, -0.8666667, 0.3333334, 0.4333333, 0.6333333, 0.8333333, -0.6333333,
            -0.2666667, -0.1666666, -1.366667, -0.4333333, -0.2333333, 0.06666665, 2.533334,
            1.633333, -0.5, 1.933333, -0.4, -0.9666667, 1.6, -0.6333334, 0.1666667, 1.266667,
            -1.466667, 0.6666666, -0.2333332, 0.2, -0.3333334, -0.6333333, -0.5,
        ];
        for (g, w) in got.iter().zip(ncnn) {
            assert!((g - w).abs() < 1e-5, "{got:?}");
        }
    }

    #[test]
    fn bad_params_are_errors() {
        let err = |pd: &ParamDict, bytes: &[u8]| build(pd, bytes).unwrap_err().to_string();
        // num_output % group != 0
        let e = err(
            &params(&[(0, 3), (1, 1), (6, 3), (7, 2)]),
            &bin(&[0.0; 3], &[]),
        );
        assert!(e.contains("not divisible by group"), "{e}");
        // weight_data_size not a multiple of num_output * kernel size
        let e = err(
            &params(&[(0, 2), (1, 3), (6, 10), (7, 2)]),
            &bin(&[0.0; 10], &[]),
        );
        assert!(e.contains("weight_data_size"), "{e}");
        let e = err(
            &params(&[(0, 2), (1, 0), (6, 2), (7, 2)]),
            &bin(&[0.0; 2], &[]),
        );
        assert!(e.contains("kernel_w"), "{e}");
        let e = err(
            &params(&[(0, 2), (1, 1), (3, 0), (6, 2), (7, 2)]),
            &bin(&[0.0; 2], &[]),
        );
        assert!(e.contains("stride_w"), "{e}");
        let e = err(
            &params(&[(0, 2), (1, 1), (4, -1), (6, 2), (7, 2)]),
            &bin(&[0.0; 2], &[]),
        );
        assert!(e.contains("negative pads"), "{e}");
        let e = err(
            &params(&[(0, 2), (1, 1), (6, 2), (7, 2), (8, 3)]),
            &bin(&[0.0; 2], &[]),
        );
        assert!(e.contains("int8_scale_term"), "{e}");
        // Truncated weights.
        let e = err(
            &params(&[(0, 2), (1, 1), (5, 1), (6, 2), (7, 2)]),
            &bin(&[0.0; 2], &[]),
        );
        assert!(e.contains("truncated"), "{e}");

        // Shape-time checks: channels % group, channels vs weight size, dims, kernel too big.
        let op = build(
            &params(&[(0, 4), (1, 3), (6, 36), (7, 4)]),
            &bin(&[0.0; 36], &[]),
        )
        .unwrap();
        let e = op
            .output_shapes(&[Shape::d3(5, 5, 6)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not divisible by group"), "{e}");
        let e = op
            .output_shapes(&[Shape::d3(5, 5, 8)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("weight_data_size"), "{e}");
        let e = op
            .output_shapes(&[Shape::d2(5, 4)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("3-D"), "{e}");
        let e = op
            .output_shapes(&[Shape::d3(2, 5, 4)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("smaller than"), "{e}");
    }

    /// Random geometry: params, weights file and input shape.
    fn random_case(rng: &mut Rng, grouped: bool) -> Option<(ParamDict, Vec<u8>, Shape)> {
        let pick = |rng: &mut Rng, v: &[i64]| v[rng.range(0, v.len() as i64 - 1) as usize];
        let kw = pick(rng, &[1, 3, 3, 3, 5, 7]) as i32;
        let kh = if rng.range(0, 4) == 0 {
            pick(rng, &[1, 3, 5, 7]) as i32
        } else {
            kw
        };
        let sw = pick(rng, &[1, 1, 2, 2, 3]) as i32;
        let sh = if rng.range(0, 4) == 0 {
            rng.range(1, 3) as i32
        } else {
            sw
        };
        let dw = if rng.range(0, 4) == 0 { 2 } else { 1 };
        let dh = if rng.range(0, 4) == 0 {
            rng.range(1, 2) as i32
        } else {
            dw
        };
        let (group, inch_g, outch_g) = if grouped {
            (
                rng.range(1, 4) as i32,
                rng.range(1, 6) as i32,
                rng.range(1, 10) as i32,
            )
        } else {
            (rng.range(1, 70) as i32, 1, 1)
        };
        let num_output = group * outch_g;
        let channels = (group * inch_g) as usize;
        let (w, h) = (rng.range(1, 40) as usize, rng.range(1, 40) as usize);
        let mut kv = vec![
            (0, num_output),
            (1, kw),
            (11, kh),
            (2, dw),
            (12, dh),
            (3, sw),
            (13, sh),
            (7, group),
        ];
        match rng.range(0, 5) {
            0 => kv.push((4, -233)),
            1 => kv.push((4, -234)),
            2 => {}
            _ => kv.extend((0..4).map(|i| ([4, 15, 14, 16][i], rng.range(0, 3) as i32))),
        }
        let bias = rng.range(0, 1) == 1;
        kv.push((5, bias as i32));
        let taps = (kw * kh) as usize;
        let wsize = num_output as usize * inch_g as usize * taps;
        kv.push((6, wsize as i32));
        let act = rng.range(0, 6) as i32;
        kv.push((9, act));
        let mut pd = params(&kv);
        let act_params = match act {
            2 => vec![rng.uniform(0.0, 0.5)],
            3 => vec![-0.5, rng.uniform(0.0, 2.0)],
            6 => vec![0.2, 0.5],
            _ => vec![],
        };
        pd.set(10, Value::FloatArray(act_params)).unwrap();
        if rng.range(0, 3) == 0 {
            pd.set(18, Value::Float(rng.uniform(-1.0, 1.0))).unwrap();
        }
        let weights = rng.vec(wsize, -1.0, 1.0);
        let biases = rng.vec(num_output as usize, -1.0, 1.0);
        let raw: &[&[f32]] = if bias { &[&biases] } else { &[] };
        let bytes = bin(&weights, raw);
        let shape = Shape::d3(w, h, channels);
        let op = build(&pd, &bytes).unwrap();
        op.output_shapes(&[shape]).ok()?;
        Some((pd, bytes, shape))
    }

    fn random_cases(grouped: bool, count: usize, seed: u64) {
        let mut rng = Rng::new(seed);
        let mut done = 0;
        while done < count {
            let Some((pd, bytes, shape)) = random_case(&mut rng, grouped) else {
                continue;
            };
            let mut op = build(&pd, &bytes).unwrap();
            let data = rng.vec(shape.len(), -1.0, 1.0);
            run_all(&mut op, shape, &data);
            done += 1;
        }
    }

    #[test]
    fn depthwise_kernels_match_reference_on_random_shapes() {
        random_cases(false, 300, 1);
    }

    #[test]
    fn grouped_kernels_match_reference_on_random_shapes() {
        random_cases(true, 150, 2);
    }

    #[test]
    fn specialised_3x3_paths_at_row_edges() {
        // Every width around the vector boundaries, stride 1 and 2, with and without padding.
        let mut rng = Rng::new(3);
        for stride in [1, 2] {
            for pad in [0, 1] {
                for w in 1..=40 {
                    let pd = params(&[
                        (0, 3),
                        (1, 3),
                        (3, stride),
                        (4, pad),
                        (5, 1),
                        (6, 27),
                        (7, 3),
                    ]);
                    let bytes = bin(&rng.vec(27, -1.0, 1.0), &[&rng.vec(3, -1.0, 1.0)]);
                    let mut op = build(&pd, &bytes).unwrap();
                    let shape = Shape::d3(w, 5, 3);
                    if op.output_shapes(&[shape]).is_ok() {
                        run_all(&mut op, shape, &rng.vec(shape.len(), -1.0, 1.0));
                    }
                }
            }
        }
    }
}
