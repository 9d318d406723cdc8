//! Deconvolution (transposed convolution), as ncnn's layer does; `Deconv` is shared with
//! DeconvolutionDepthWise (`deconvolution_depthwise.rs`), which adds groups.
//!
//! Params (ncnn ids): `0 = num_output`, `1 / 11 = kernel_w / kernel_h` (h defaults to w),
//! `2 / 12 = dilation_w / dilation_h`, `3 / 13 = stride_w / stride_h`, `4 / 15 / 14 / 16 =
//! pad_left / pad_right / pad_top / pad_bottom` (right and top default to left, bottom to
//! top), `18 / 19 = output_pad_right / output_pad_bottom` (bottom defaults to right),
//! `20 / 21 = output_w / output_h` (h defaults to w), `5 = bias_term`, `6 =
//! weight_data_size`, `9 / 10 = activation_type / activation_params` (fused, as for
//! Convolution), `7 = group` (DeconvolutionDepthWise only), `28 = dynamic_weight`.
//!
//! Weights (.bin, in this order): the kernel, tagged (fp32 or fp16), laid out as
//! `[group][num_output / group][inch / group][kernel_h][kernel_w]`; then `num_output` raw
//! fp32 biases when `bias_term`.
//!
//! With `dynamic_weight = 1` nothing is read from the .bin: the kernel is a second input,
//! 4-D in PyTorch's ConvTranspose layout, numpy `(inch, num_output / group, kernel_h,
//! kernel_w)` (so `num_output` and the kernel size come from it, the params are ignored), and
//! with `bias_term` a third input holds the `num_output` biases.
//!
//! Input: 3-D `w x h x inch`. Every input pixel (x, y) of channel q adds `value * weight` to
//! the full output at `(x * stride_w + kx * dilation_w, y * stride_h + ky * dilation_h)` for
//! each tap; the full output is `((w - 1) * stride_w + dilation_w * (kernel_w - 1) + 1 +
//! output_pad_right)` wide (likewise high), starting from the bias. It is then cut:
//! * any pad > 0: `pad_top / pad_bottom / pad_left / pad_right` rows / columns are removed;
//! * else, with `output_w` and `output_h` set and pads of -233 (ONNX SAME_UPPER) or -234
//!   (SAME_LOWER): the excess over `output_w x output_h` is removed half on each side, the
//!   odd one at the end (-233) or at the start (-234);
//! * else the full output is the output. (ncnn fails at run time when output_w / output_h
//!   are set with pads of 0; refused here at load.)
//!
//! Then the fused activation. The reference scatters each input row into the cut output
//! directly (no bordered buffer), one output channel per task. With group 1 the fast path
//! first computes every tap's contribution at every input pixel with one fp32 GEMM
//! (`(num_output * taps) x inch` weights packed at load, times the `inch x (h * w)` input;
//! the columns live in scratch, at most `MAX_COLS` floats: the GEMM runs over chunks of
//! input rows), then scatters those rows the same way (col2im).

use super::activation::Activation;
use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult, Result};
use crate::kernels::gemm_f32::{self, DenseB, Kernel, PackB, PackedA, Panels};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, WeightReader};
use crate::pool::SharedMut;
use crate::tensor::{Shape, Tensor, TensorMut};

/// "SAME_UPPER" / "SAME_LOWER" pads with an output size.
const SAME_UPPER: i32 = -233;
const SAME_LOWER: i32 = -234;

#[derive(Debug)]
pub struct Deconv {
    pub num_output: usize,
    pub kernel_w: usize,
    pub kernel_h: usize,
    pub dilation_w: usize,
    pub dilation_h: usize,
    pub stride_w: usize,
    pub stride_h: usize,
    /// left, right, top, bottom.
    pub pads: [i32; 4],
    pub output_pad_right: usize,
    pub output_pad_bottom: usize,
    pub output_w: usize,
    pub output_h: usize,
    pub group: usize,
    pub activation: Activation,
    pub weights: Floats,
    pub bias: Option<Floats>,
    /// Group 1: the weights as a `(num_output * taps) x inch` GEMM operand (the fast path:
    /// one GEMM gives every tap's contribution at every input pixel, then col2im scatters
    /// them). None: the plain scatter.
    pub fast: Option<PackedA>,
    /// Most floats of GEMM columns at a time (the fast path runs over chunks of input rows).
    pub max_cols: usize,
    /// dynamic_weight: the kernel (and, when true, the bias) are inputs. None: from the .bin.
    pub dynamic_bias: Option<bool>,
}

/// Default `max_cols`: 1 Mi floats (4 MiB).
pub const MAX_COLS: usize = 1 << 20;

/// Kernel size and output channels of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Kernel2d {
    w: usize,
    h: usize,
    outch: usize,
}

/// Where the output window sits in the full output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    /// Rows / columns cut at the start.
    left: usize,
    top: usize,
    out_w: usize,
    out_h: usize,
}

impl Deconv {
    /// Reads the params and weights; `group` is 1 for Deconvolution, key 7 for the
    /// depthwise layer.
    pub fn new(pd: &ParamDict, wr: &mut WeightReader, depthwise: bool) -> Result<Deconv> {
        let positive = |key: usize, default: usize, name: &str| -> LayerResult<usize> {
            let v = pd.usize(key, default)?;
            if v == 0 {
                return Err(invalid(format!("{name} (key {key}) must be positive")));
            }
            Ok(v)
        };
        let dynamic = pd.int(28, 0)? != 0;
        // A dynamic kernel gives num_output and the kernel size (ncnn ignores the params).
        let (num_output, kernel_w, kernel_h) = if dynamic {
            (0, 0, 0)
        } else {
            let kernel_w = positive(1, 0, "kernel_w")?;
            (
                positive(0, 0, "num_output")?,
                kernel_w,
                positive(11, kernel_w, "kernel_h")?,
            )
        };
        let dilation_w = positive(2, 1, "dilation_w")?;
        let dilation_h = positive(12, dilation_w, "dilation_h")?;
        let stride_w = positive(3, 1, "stride_w")?;
        let stride_h = positive(13, stride_w, "stride_h")?;
        let left = pd.int(4, 0)?;
        let right = pd.int(15, left)?;
        let top = pd.int(14, left)?;
        let bottom = pd.int(16, top)?;
        let pads = [left, right, top, bottom];
        let output_pad_right = pd.usize(18, 0)?;
        let output_pad_bottom = pd.usize(19, output_pad_right)?;
        let output_w = pd.usize(20, 0)?;
        let output_h = pd.usize(21, output_w)?;
        let same = pads.iter().any(|&p| p == SAME_UPPER || p == SAME_LOWER);
        if pads
            .iter()
            .any(|&p| p < 0 && p != SAME_UPPER && p != SAME_LOWER)
            || (same && pads.iter().any(|&p| p > 0))
        {
            return Err(invalid(format!(
                "pads (keys 4 / 15 / 14 / 16) {pads:?} must be >= 0, or -233 / -234 (SAME) alone"
            ))
            .into());
        }
        if output_w > 0 && output_h > 0 && !pads.iter().any(|&p| p != 0) {
            return Err(invalid(
                "output_w / output_h (keys 20 / 21) need pads of -233 or -234 (ncnn fails otherwise)",
            )
            .into());
        }
        let group = if depthwise {
            positive(7, 1, "group")?
        } else {
            1
        };
        if !num_output.is_multiple_of(group) {
            return Err(invalid(format!(
                "num_output {num_output} is not a multiple of group {group}"
            ))
            .into());
        }
        let bias_term = pd.int(5, 0)? != 0;
        let activation = Activation::from_params(pd)?;
        if dynamic {
            return Ok(Deconv {
                num_output,
                kernel_w,
                kernel_h,
                dilation_w,
                dilation_h,
                stride_w,
                stride_h,
                pads,
                output_pad_right,
                output_pad_bottom,
                output_w,
                output_h,
                group,
                activation,
                weights: Floats::owned(Vec::new()),
                bias: None,
                fast: None,
                max_cols: MAX_COLS,
                dynamic_bias: Some(bias_term),
            });
        }
        let weight_data_size = pd.usize(6, 0)?;
        let too_large = || invalid("num_output / group * kernel_h * kernel_w overflows");
        let taps = kernel_w.checked_mul(kernel_h).ok_or_else(too_large)?;
        let per_input = (num_output / group)
            .checked_mul(taps)
            .ok_or_else(too_large)?;
        if weight_data_size == 0 || weight_data_size % per_input != 0 {
            return Err(invalid(format!(
                "weight_data_size {weight_data_size} is not a positive multiple of \
                 num_output / group * kernel_h * kernel_w = {per_input}"
            ))
            .into());
        }
        let weights = wr
            .tagged(weight_data_size, "deconvolution weight")?
            .into_f32()
            .map_err(invalid)?;
        let bias = if bias_term {
            Some(wr.raw(num_output, "deconvolution bias")?)
        } else {
            None
        };
        let fast = (group == 1).then(|| {
            // Row (p, k), column q: weight[p][q][k].
            let inch = weights.len() / (num_output * taps);
            let mut a = vec![0.0; weights.len()];
            for p in 0..num_output {
                for q in 0..inch {
                    for k in 0..taps {
                        a[(p * taps + k) * inch + q] = weights[(p * inch + q) * taps + k];
                    }
                }
            }
            PackedA::new(Kernel::best(), &a, num_output * taps, inch, None)
        });
        Ok(Deconv {
            num_output,
            kernel_w,
            kernel_h,
            dilation_w,
            dilation_h,
            stride_w,
            stride_h,
            pads,
            output_pad_right,
            output_pad_bottom,
            output_w,
            output_h,
            group,
            activation,
            weights,
            bias,
            fast,
            max_cols: MAX_COLS,
            dynamic_bias: None,
        })
    }

    /// Checks the inputs; returns the kernel size and num_output (from the kernel input
    /// when it is dynamic).
    fn resolve(&self, inputs: &[Shape]) -> LayerResult<Kernel2d> {
        let x = inputs.first().copied().unwrap_or_default();
        if let Some(bias) = self.dynamic_bias {
            expect_inputs(inputs, 2 + bias as usize)?;
            let wt = inputs[1];
            if x.dims != 3 || wt.dims != 4 || wt.c != x.c || !x.c.is_multiple_of(self.group) {
                return Err(invalid(format!(
                    "dynamic kernel {wt} must be 4-D with c = the input's channels \
                     (input {x}, group {})",
                    self.group
                )));
            }
            let k = Kernel2d {
                w: wt.w,
                h: wt.h,
                outch: wt.d * self.group,
            };
            if bias && inputs[2].len() != k.outch {
                return Err(invalid(format!(
                    "bias input {} must hold num_output = {} values",
                    inputs[2], k.outch
                )));
            }
            return Ok(k);
        }
        expect_inputs(inputs, 1)?;
        if x.dims != 3 {
            return Err(invalid(format!("expects a 3-D input, got {x}")));
        }
        let inch = x.c;
        let taps = self.kernel_w * self.kernel_h;
        if !inch.is_multiple_of(self.group)
            || (self.num_output / self.group)
                .checked_mul(inch)
                .and_then(|n| n.checked_mul(taps))
                != Some(self.weights.len())
        {
            return Err(invalid(format!(
                "input {x} does not match the weights ({} = num_output {} * input channels / \
                 group {} * kernel {}x{})",
                self.weights.len(),
                self.num_output,
                self.group,
                self.kernel_h,
                self.kernel_w
            )));
        }
        Ok(Kernel2d {
            w: self.kernel_w,
            h: self.kernel_h,
            outch: self.num_output,
        })
    }

    fn geometry(&self, x: &Shape, k: Kernel2d) -> LayerResult<Geometry> {
        let full = |n: usize, s: usize, d: usize, k: usize, extra: usize| {
            (n - 1)
                .checked_mul(s)
                .and_then(|v| v.checked_add(d.checked_mul(k - 1)? + 1 + extra))
                .ok_or_else(|| invalid(format!("output size of input {x} overflows")))
        };
        let full_w = full(
            x.w,
            self.stride_w,
            self.dilation_w,
            k.w,
            self.output_pad_right,
        )?;
        let full_h = full(
            x.h,
            self.stride_h,
            self.dilation_h,
            k.h,
            self.output_pad_bottom,
        )?;
        let [l, r, t, b] = self.pads;
        let (left, right, top, bottom) = if self.pads.iter().any(|&p| p > 0) {
            (l as usize, r as usize, t as usize, b as usize)
        } else if self.output_w > 0 && self.output_h > 0 {
            if self.output_w > full_w || self.output_h > full_h {
                return Err(invalid(format!(
                    "output_w x output_h {}x{} exceeds the full output {full_w}x{full_h}",
                    self.output_w, self.output_h
                )));
            }
            let (wcut, hcut) = (full_w - self.output_w, full_h - self.output_h);
            if self.pads.contains(&SAME_UPPER) {
                (wcut / 2, wcut - wcut / 2, hcut / 2, hcut - hcut / 2)
            } else {
                (wcut - wcut / 2, wcut / 2, hcut - hcut / 2, hcut / 2)
            }
        } else {
            (0, 0, 0, 0)
        };
        if left + right >= full_w || top + bottom >= full_h {
            return Err(invalid(format!(
                "pads {:?} leave nothing of the full output {full_w}x{full_h}",
                self.pads
            )));
        }
        Ok(Geometry {
            left,
            top,
            out_w: full_w - left - right,
            out_h: full_h - top - bottom,
        })
    }

    /// Adds `plane * wv` (an input-sized plane, `s_w x s_h`) into the cut output `out` at
    /// the positions of tap (ky, kx).
    fn scatter(
        &self,
        plane: &[f32],
        (s_w, rows): (usize, std::ops::Range<usize>),
        (ky, kx): (usize, usize),
        wv: f32,
        g: &Geometry,
        out: &mut [f32],
    ) {
        // Input index i lands at i * stride + offset; the range of i landing in [0, n_out).
        let inside = |n: usize, stride: usize, offset: i64, n_out: usize| {
            let lo = if offset >= 0 {
                0
            } else {
                ((-offset) as usize).div_ceil(stride)
            };
            let hi = if (n_out as i64) <= offset {
                0
            } else {
                ((n_out as i64 - offset) as usize).div_ceil(stride).min(n)
            };
            (lo, hi.max(lo))
        };
        let oy0 = (ky * self.dilation_h) as i64 - g.top as i64;
        let ox0 = (kx * self.dilation_w) as i64 - g.left as i64;
        let (y0, y1) = inside(rows.end, self.stride_h, oy0, g.out_h);
        let (y0, y1) = (y0.max(rows.start), y1.max(rows.start));
        let (x0, x1) = inside(s_w, self.stride_w, ox0, g.out_w);
        if x1 == x0 {
            return;
        }
        let first = (x0 as i64 * self.stride_w as i64 + ox0) as usize;
        for iy in y0..y1 {
            let oy = (iy as i64 * self.stride_h as i64 + oy0) as usize;
            let row = &mut out[oy * g.out_w..(oy + 1) * g.out_w];
            let dst = row[first..].iter_mut().step_by(self.stride_w);
            let src = (iy - rows.start) * s_w;
            for (o, &v) in dst.zip(&plane[src + x0..src + x1]) {
                *o += v * wv;
            }
        }
    }

    /// One output channel `p` by the plain scatter (the reference): bias, every input
    /// channel of its group through every tap, then the activation. `weights` are in the
    /// .bin layout, or PyTorch's `[inch][outch / group][kh][kw]` when `torch_layout`.
    #[allow(clippy::too_many_arguments)]
    fn channel(
        &self,
        x: &Tensor,
        g: &Geometry,
        k: Kernel2d,
        (weights, bias, torch_layout): (&[f32], Option<&[f32]>, bool),
        p: usize,
        out: &mut [f32],
    ) {
        let s = x.shape;
        let inch_g = s.c / self.group;
        let outch_g = k.outch / self.group;
        let (group, pg) = (p / outch_g, p % outch_g);
        let taps = k.w * k.h;
        out.fill(bias.map_or(0.0, |b| b[p]));
        for q in 0..inch_g {
            let ic = group * inch_g + q;
            let plane = &x.data[ic * s.w * s.h..(ic + 1) * s.w * s.h];
            let at = if torch_layout {
                (ic * outch_g + pg) * taps
            } else {
                ((group * outch_g + pg) * inch_g + q) * taps
            };
            let kernel = &weights[at..at + taps];
            for ky in 0..k.h {
                for kx in 0..k.w {
                    let wv = kernel[ky * k.w + kx];
                    self.scatter(plane, (s.w, 0..s.h), (ky, kx), wv, g, out);
                }
            }
        }
        self.activation.apply_slice(out);
    }

    /// Adds input rows `rows` of output channel `p` from the GEMM's columns (row `p * taps
    /// + k` of `cols` holds tap k's contribution at each pixel of those rows): col2im.
    fn add_from_cols(
        &self,
        cols: &[f32],
        s: Shape,
        rows: std::ops::Range<usize>,
        g: &Geometry,
        p: usize,
        out: &mut [f32],
    ) {
        let n = s.w * rows.len();
        for ky in 0..self.kernel_h {
            for kx in 0..self.kernel_w {
                let row = (p * self.kernel_h + ky) * self.kernel_w + kx;
                let plane = &cols[row * n..(row + 1) * n];
                self.scatter(plane, (s.w, rows.clone()), (ky, kx), 1.0, g, out);
            }
        }
    }

    /// Input rows per GEMM of the fast path: the columns of one chunk stay within
    /// `max_cols` floats (at least one row).
    fn chunk_rows(&self, x: &Shape) -> usize {
        match &self.fast {
            Some(a) => (self.max_cols / (a.m() * x.w).max(1)).clamp(1, x.h),
            None => x.h,
        }
    }

    /// The fast path's scratch: the columns of one chunk and one GEMM scratch per worker
    /// (floats).
    fn fast_scratch(&self, x: &Shape) -> (usize, usize) {
        match &self.fast {
            Some(a) => {
                let n = self.chunk_rows(x) * x.w;
                (a.m() * n, a.scratch_len(n))
            }
            None => (0, 0),
        }
    }
}

/// Columns `offset..` of a dense `K x N` matrix, as a GEMM operand.
struct ColumnsFrom<'a> {
    dense: DenseB<'a>,
    offset: usize,
}

impl PackB for ColumnsFrom<'_> {
    fn pack(&self, k0: usize, kc: usize, n0: usize, nc: usize, panels: Panels, dst: &mut [f32]) {
        self.dense.pack(k0, kc, n0 + self.offset, nc, panels, dst);
    }
}

impl Op for Deconv {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        let k = self.resolve(inputs)?;
        let g = self.geometry(&inputs[0], k)?;
        Ok(vec![Shape::checked(3, g.out_w, g.out_h, 1, k.outch)?])
    }

    /// Each worker's slice holds the whole columns plus its GEMM scratch, so the columns
    /// and every worker's GEMM scratch fit in the total.
    fn scratch_len(&self, inputs: &[Shape], _outputs: &[Shape]) -> usize {
        match inputs.first() {
            Some(x) if self.fast.is_some() && x.dims == 3 => {
                let (cols, gemm) = self.fast_scratch(x);
                cols + gemm
            }
            _ => 0,
        }
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let x = &inputs[0];
        let k = match inputs {
            [a] => self.resolve(&[a.shape])?,
            [a, b] => self.resolve(&[a.shape, b.shape])?,
            [a, b, c] => self.resolve(&[a.shape, b.shape, c.shape])?,
            _ => return Err(invalid("expects 1 to 3 input blobs")),
        };
        let g = self.geometry(&x.shape, k)?;
        let plane = g.out_w * g.out_h;
        let dst = SharedMut::new(&mut *outputs[0].data);
        let Some(a) = &self.fast else {
            let w = match self.dynamic_bias {
                Some(bias) => (inputs[1].data, bias.then(|| inputs[2].data), true),
                None => (&*self.weights, self.bias.as_deref(), false),
            };
            return ctx
                .pool
                .run(k.outch, &|p, _| {
                    // SAFETY: each task writes its own output channel.
                    let out = unsafe { dst.slice(p * plane, plane) };
                    self.channel(x, &g, k, w, p, out);
                })
                .map_err(|e| invalid(e.to_string()));
        };
        let s = x.shape;
        let (cols_len, gemm_len) = self.fast_scratch(&s);
        let scratch = ctx
            .scratch
            .get_mut(..cols_len + gemm_len * ctx.pool.threads())
            .ok_or_else(|| invalid("scratch memory smaller than planned"))?;
        let (cols, gemm_scratch) = scratch.split_at_mut(cols_len);
        let chunk = self.chunk_rows(&s);
        let mut y0 = 0;
        while y0 < s.h {
            let rows = y0..(y0 + chunk).min(s.h);
            let n = s.w * rows.len();
            let b = ColumnsFrom {
                dense: DenseB {
                    data: x.data,
                    n: s.w * s.h,
                },
                offset: y0 * s.w,
            };
            let cols = &mut cols[..a.m() * n];
            gemm_f32::gemm(a, &b, n, cols, Activation::None, ctx.pool, gemm_scratch)?;
            let cols = &*cols;
            let first = y0 == 0;
            let last = rows.end == s.h;
            ctx.pool
                .run(self.num_output, &|p, _| {
                    // SAFETY: each task writes its own output channel.
                    let out = unsafe { dst.slice(p * plane, plane) };
                    if first {
                        out.fill(self.bias.as_ref().map_or(0.0, |b| b[p]));
                    }
                    self.add_from_cols(cols, s, rows.clone(), &g, p, out);
                    if last {
                        self.activation.apply_slice(out);
                    }
                })
                .map_err(|e| invalid(e.to_string()))?;
            y0 = rows.end;
        }
        Ok(())
    }
}

/// The Deconvolution layer (group 1).
#[derive(Debug)]
pub struct Deconvolution(pub Deconv);

impl Deconvolution {
    pub fn new(pd: &ParamDict, wr: &mut WeightReader) -> Result<Deconvolution> {
        Ok(Deconvolution(Deconv::new(pd, wr, false)?))
    }
}

impl Op for Deconvolution {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        self.0.output_shapes(inputs)
    }
    fn scratch_len(&self, inputs: &[Shape], outputs: &[Shape]) -> usize {
        self.0.scratch_len(inputs, outputs)
    }
    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        self.0.forward(inputs, outputs, ctx)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::model::weights::Source;
    use crate::ops::harness::{assert_close, int, params, run, run_threads};
    use crate::rng::Rng;
    use std::sync::Arc;

    /// Builds a layer with the given params and (fp32-tagged) weights and bias.
    pub(crate) fn build(
        p: &[(usize, Value)],
        weights: &[f32],
        bias: Option<&[f32]>,
        depthwise: bool,
    ) -> Result<Deconv> {
        let mut bytes = 0u32.to_le_bytes().to_vec();
        bytes.extend(weights.iter().flat_map(|v| v.to_le_bytes()));
        let mut p = p.to_vec();
        p.push((6, int(weights.len() as i32)));
        if let Some(b) = bias {
            bytes.extend(b.iter().flat_map(|v| v.to_le_bytes()));
            p.push((5, int(1)));
        }
        let mut w = WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "test.bin");
        let op = Deconv::new(&params(&p), &mut w, depthwise)?;
        w.finish()?;
        Ok(op)
    }

    /// Plain reference in f64: the full output by scatter, then the cut, as the doc says.
    pub(crate) fn reference(op: &Deconv, x: Shape, data: &[f32]) -> Vec<f32> {
        let (kw, kh) = (op.kernel_w, op.kernel_h);
        let fw = (x.w - 1) * op.stride_w + op.dilation_w * (kw - 1) + 1 + op.output_pad_right;
        let fh = (x.h - 1) * op.stride_h + op.dilation_h * (kh - 1) + 1 + op.output_pad_bottom;
        let (ig, og) = (x.c / op.group, op.num_output / op.group);
        let mut full = vec![0.0f64; op.num_output * fw * fh];
        for p in 0..op.num_output {
            let b = op.bias.as_ref().map_or(0.0, |b| b[p] as f64);
            full[p * fw * fh..(p + 1) * fw * fh].fill(b);
            let g = p / og;
            for q in 0..ig {
                for iy in 0..x.h {
                    for ix in 0..x.w {
                        let v = data[((g * ig + q) * x.h + iy) * x.w + ix] as f64;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let wv = op.weights[((p * ig + q) * kh + ky) * kw + kx] as f64;
                                let (oy, ox) = (
                                    iy * op.stride_h + ky * op.dilation_h,
                                    ix * op.stride_w + kx * op.dilation_w,
                                );
                                full[(p * fh + oy) * fw + ox] += v * wv;
                            }
                        }
                    }
                }
            }
        }
        let [l, r, t, b] = op.pads;
        let (l, r, t, b) = if op.pads.iter().any(|&v| v > 0) {
            (l as usize, r as usize, t as usize, b as usize)
        } else if op.output_w > 0 && op.output_h > 0 {
            let (wc, hc) = (fw - op.output_w, fh - op.output_h);
            if op.pads.contains(&-233) {
                (wc / 2, wc - wc / 2, hc / 2, hc - hc / 2)
            } else {
                (wc - wc / 2, wc / 2, hc - hc / 2, hc / 2)
            }
        } else {
            (0, 0, 0, 0)
        };
        let mut out = Vec::new();
        for p in 0..op.num_output {
            for y in t..fh - b {
                for xx in l..fw - r {
                    out.push(op.activation.apply(full[(p * fh + y) * fw + xx] as f32));
                }
            }
        }
        out
    }

    #[test]
    fn hand_checked_stride_two() {
        // 1 -> 1 channel, kernel 2x1 (w 2, h 1), stride 2: each input pixel becomes two.
        let op = build(
            &[
                (0, int(1)),
                (1, int(2)),
                (11, int(1)),
                (3, int(2)),
                (13, int(1)),
            ],
            &[1.0, 10.0],
            Some(&[0.5]),
            false,
        )
        .unwrap();
        let (s, out) = run(&op, &[(Shape::d3(2, 2, 1), vec![1.0, 2.0, 3.0, 4.0])])
            .unwrap()
            .remove(0);
        assert_eq!(s, Shape::d3(4, 2, 1));
        assert_eq!(out, [1.5, 10.5, 2.5, 20.5, 3.5, 30.5, 4.5, 40.5]);
        // Kernel 3 stride 1: overlaps add; pad 1 cuts one on each side.
        let op = build(
            &[
                (0, int(1)),
                (1, int(3)),
                (11, int(1)),
                (4, int(1)),
                (14, int(0)),
            ],
            &[1.0, 2.0, 3.0],
            None,
            false,
        )
        .unwrap();
        // full: [1, 2+1, 3+2+1... ] for input [1, 1, 1] = [1, 3, 6, 5, 3]; cut -> [3, 6, 5].
        let (s, out) = run(&op, &[(Shape::d3(3, 1, 1), vec![1.0; 3])])
            .unwrap()
            .remove(0);
        assert_eq!((s, out), (Shape::d3(3, 1, 1), vec![3.0, 6.0, 5.0]));
    }

    /// Random geometries (groups, dilation, pads, output pads, SAME output sizes,
    /// activations) against the reference, one and two workers.
    #[test]
    fn random_cases_match_the_reference() {
        let mut rng = Rng::new(77);
        let mut checked = 0;
        while checked < 150 {
            let r = |rng: &mut Rng, lo: i32, hi: i32| rng.range(lo as i64, hi as i64) as i32;
            let depthwise = checked % 2 == 1;
            let group = if depthwise { r(&mut rng, 1, 3) } else { 1 };
            let inch = group * r(&mut rng, 1, 3);
            let outch = group * r(&mut rng, 1, 3);
            let (kw, kh) = (r(&mut rng, 1, 4), r(&mut rng, 1, 4));
            let mut p = vec![
                (0, int(outch)),
                (1, int(kw)),
                (11, int(kh)),
                (2, int(r(&mut rng, 1, 2))),
                (12, int(r(&mut rng, 1, 3))),
                (3, int(r(&mut rng, 1, 3))),
                (13, int(r(&mut rng, 1, 2))),
                (18, int(r(&mut rng, 0, 1))),
                (19, int(r(&mut rng, 0, 2))),
                (9, int(r(&mut rng, 0, 1))),
            ];
            if depthwise {
                p.push((7, int(group)));
            }
            match r(&mut rng, 0, 2) {
                0 => {
                    for key in [4, 15, 14, 16] {
                        p.push((key, int(r(&mut rng, 0, 2))));
                    }
                }
                1 => {
                    p.push((4, int([-233, -234][r(&mut rng, 0, 1) as usize])));
                    p.push((20, int(r(&mut rng, 1, 12))));
                    p.push((21, int(r(&mut rng, 1, 12))));
                }
                _ => {}
            }
            let n = (outch / group * inch * kw * kh) as usize;
            let weights = rng.vec(n, -1.0, 1.0);
            let bias = rng.vec(outch as usize, -1.0, 1.0);
            let op = build(&p, &weights, Some(&bias), depthwise).unwrap();
            let x = Shape::d3(
                rng.range(1, 6) as usize,
                rng.range(1, 6) as usize,
                inch as usize,
            );
            if op.output_shapes(&[x]).is_err() {
                continue;
            }
            let data = rng.vec(x.len(), -1.0, 1.0);
            let want = reference(&op, x, &data);
            for threads in [1, 2] {
                let out = run_threads(&op, &[(x, data.clone())], threads).unwrap();
                assert_close(&out[0].1, &want, 1e-5);
            }
            checked += 1;
        }
    }

    /// The GEMM + col2im path against the plain scatter on larger random layers.
    #[test]
    fn gemm_path_matches_the_scatter() {
        let mut rng = Rng::new(5);
        for case in 0..12 {
            let r = |rng: &mut Rng, lo: i64, hi: i64| rng.range(lo, hi) as i32;
            let (inch, outch) = (r(&mut rng, 1, 40), r(&mut rng, 1, 40));
            let (kw, kh) = (r(&mut rng, 1, 4), r(&mut rng, 1, 4));
            let p = [
                (0, int(outch)),
                (1, int(kw)),
                (11, int(kh)),
                (3, int(r(&mut rng, 1, 3))),
                (13, int(r(&mut rng, 1, 3))),
                (12, int(r(&mut rng, 1, 2))),
                (4, int(r(&mut rng, 0, 1))),
                (9, int(case % 3)),
                (10, Value::FloatArray(vec![0.1])),
            ];
            let n = (outch * inch * kw * kh) as usize;
            let weights = rng.vec(n, -1.0, 1.0);
            let bias = rng.vec(outch as usize, -1.0, 1.0);
            let mut fast = build(&p, &weights, Some(&bias), false).unwrap();
            assert!(fast.fast.is_some());
            // Every other case in chunks of a few input rows.
            if case % 2 == 1 {
                fast.max_cols = (outch * kw * kh) as usize * 20 * (1 + case % 3) as usize;
            }
            let mut plain = build(&p, &weights, Some(&bias), false).unwrap();
            plain.fast = None;
            let x = Shape::d3(
                rng.range(1, 20) as usize,
                rng.range(1, 20) as usize,
                inch as usize,
            );
            if fast.output_shapes(&[x]).is_err() {
                continue;
            }
            let data = rng.vec(x.len(), -1.0, 1.0);
            let want = run(&plain, &[(x, data.clone())]).unwrap().remove(0).1;
            for threads in [1, 2] {
                let got = run_threads(&fast, &[(x, data.clone())], threads).unwrap();
                assert_close(&got[0].1, &want, 1e-5);
            }
        }
    }

    /// dynamic_weight: the kernel input in PyTorch's layout gives what the same weights
    /// from the .bin give; the params' num_output and kernel size are ignored.
    #[test]
    fn dynamic_weight_matches_the_static_layer() {
        let mut rng = Rng::new(9);
        for (group, inch, outch, depthwise) in [(1, 3, 4, false), (2, 4, 6, true), (3, 3, 3, true)]
        {
            let (kw, kh) = (3, 2);
            let (ig, og) = (inch / group, outch / group);
            let torch = rng.vec(inch * og * kh * kw, -1.0, 1.0);
            // .bin layout [g][og][ig][k] from torch's [inch][og][k].
            let mut stored = vec![0.0; torch.len()];
            for g in 0..group {
                for p in 0..og {
                    for q in 0..ig {
                        for k in 0..kh * kw {
                            stored[((g * og + p) * ig + q) * kh * kw + k] =
                                torch[((g * ig + q) * og + p) * kh * kw + k];
                        }
                    }
                }
            }
            let bias = rng.vec(outch, -1.0, 1.0);
            let mut p = vec![
                (0, int(outch as i32)),
                (1, int(kw as i32)),
                (11, int(kh as i32)),
                (3, int(2)),
                (4, int(1)),
                (9, int(1)),
            ];
            if depthwise {
                p.push((7, int(group as i32)));
            }
            let fixed = build(&p, &stored, Some(&bias), depthwise).unwrap();
            // Dynamic: wrong num_output / kernel params on purpose.
            let mut pd = vec![(0, int(99)), (1, int(1)), (28, int(1)), (5, int(1))];
            pd.extend(p[3..].iter().cloned());
            let dynamic = Deconv::new(&params(&pd), &mut WeightReader::zeros(), depthwise).unwrap();
            let x = Shape::d3(5, 4, inch);
            let wt = Shape::d4(kw, kh, og, inch);
            let data = rng.vec(x.len(), -1.0, 1.0);
            let want = run(&fixed, &[(x, data.clone())]).unwrap().remove(0);
            let got = run(
                &dynamic,
                &[
                    (x, data.clone()),
                    (wt, torch.clone()),
                    (Shape::d1(outch), bias.clone()),
                ],
            )
            .unwrap()
            .remove(0);
            assert_eq!(got.0, want.0);
            assert_close(&got.1, &want.1, 1e-6);
            // Shape errors: missing bias input, kernel channels not the input's.
            assert!(dynamic.output_shapes(&[x, wt]).is_err());
            let bad = Shape::d4(kw, kh, og, inch + 1);
            assert!(dynamic.output_shapes(&[x, bad, Shape::d1(outch)]).is_err());
            assert!(dynamic
                .output_shapes(&[x, wt, Shape::d1(outch + 1)])
                .is_err());
        }
    }

    #[test]
    fn bad_params_and_shapes_are_errors() {
        let err = |p: &[(usize, Value)], n: usize| {
            build(p, &vec![0.0; n], None, true).unwrap_err().to_string()
        };
        assert!(err(&[(1, int(3))], 9).contains("num_output"));
        assert!(err(&[(0, int(2)), (1, int(3))], 10).contains("weight_data_size"));
        assert!(err(&[(0, int(2)), (1, int(1)), (4, int(-1))], 2).contains("pads"));
        assert!(err(&[(0, int(2)), (1, int(1)), (4, int(-233)), (15, int(1))], 2).contains("pads"));
        assert!(err(&[(0, int(2)), (1, int(1)), (20, int(4))], 2).contains("output_w"));
        assert!(err(&[(0, int(3)), (1, int(1)), (7, int(2))], 6).contains("group"));
        let op = build(&[(0, int(2)), (1, int(3))], &[0.0; 36], None, false).unwrap();
        assert!(op.output_shapes(&[Shape::d3(4, 4, 2)]).is_ok());
        assert!(op.output_shapes(&[Shape::d3(4, 4, 3)]).is_err());
        assert!(op.output_shapes(&[Shape::d2(4, 4)]).is_err());
        let cut = build(
            &[(0, int(1)), (1, int(1)), (4, int(1))],
            &[1.0],
            None,
            false,
        )
        .unwrap();
        assert!(cut.output_shapes(&[Shape::d3(2, 3, 1)]).is_err());
    }
}
