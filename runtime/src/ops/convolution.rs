//! Convolution (ncnn type 6) in fp32: a direct reference loop and the fast paths:
//! im2col + GEMM (`kernels::gemm_f32`; 1x1 stride-1 unpadded convolutions read the input as
//! the GEMM's B directly) and, for 3x3 stride-1 dilation-1 convolutions, Winograd
//! (`kernels::winograd`, F(2,3) / F(4,3) / F(6,3) chosen at load by a cost model from the
//! output size the model file states, else by channel counts; `EQ_WINOGRAD` overrides).
//! A Winograd layer keeps only its transformed weights. Parameters and weight order follow
//! ncnn-format.md §5.1 and §4.4.
//!
//! The geometry ([`ConvParams`]), the reference ([`conv2d_reference`]) and the fast path
//! ([`Conv2dGemm`]) work on one group's slices, so grouped convolutions can reuse them.

use super::activation::Activation;
use super::{expect_inputs, Ctx, Op};
use crate::cpu::CoreKind;
use crate::error::{invalid, LayerResult, Result};
use crate::kernels::gemm_f32::{self, DenseB, Im2colB, Kernel, PackedA};
use crate::kernels::winograd::{self, Choice, Winograd};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, Tagged, WeightReader};
use crate::ops::quantized::{
    float_weights, fp32_weights, int8_weights, quant_plan, synthesize, Int8Scales, QuantPlan,
    Simulation,
};
use crate::pool::Pool;
use crate::quant::{Int8Grid, Precision, PrecisionChoice};
use crate::tensor::{Shape, Tensor, TensorMut};

/// ncnn's pad marker for TF "SAME" with the extra pad at the end.
pub const PAD_SAME_UPPER: i32 = -233;
/// ... and with the extra pad at the start.
pub const PAD_SAME_LOWER: i32 = -234;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    Explicit {
        left: usize,
        right: usize,
        top: usize,
        bottom: usize,
    },
    SameUpper,
    SameLower,
}

/// Kernel geometry shared by Convolution-like layers (keys 1, 11, 2, 12, 3, 13, 4, 15, 14,
/// 16, 18).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvParams {
    pub kernel_w: usize,
    pub kernel_h: usize,
    pub dilation_w: usize,
    pub dilation_h: usize,
    pub stride_w: usize,
    pub stride_h: usize,
    pub padding: Padding,
    pub pad_value: f32,
}

/// Geometry resolved for one input size: concrete pads and the output size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub pad_left: usize,
    pub pad_right: usize,
    pub pad_top: usize,
    pub pad_bottom: usize,
    pub out_w: usize,
    pub out_h: usize,
}

/// Upper bound on kernel size, stride, dilation and explicit pads read from a file.
const MAX_GEOMETRY: usize = 1 << 16;

impl ConvParams {
    pub fn from_params(pd: &ParamDict) -> LayerResult<ConvParams> {
        let positive = |key: usize, default: usize, name: &str| -> LayerResult<usize> {
            let v = pd.int(key, default as i32)?;
            if v < 1 || v as usize > MAX_GEOMETRY {
                return Err(invalid(format!(
                    "{name} (key {key}) must be in 1..={MAX_GEOMETRY}, got {v}"
                )));
            }
            Ok(v as usize)
        };
        let kernel_w = positive(1, 0, "kernel_w")?;
        let kernel_h = positive(11, kernel_w, "kernel_h")?;
        let dilation_w = positive(2, 1, "dilation_w")?;
        let dilation_h = positive(12, dilation_w, "dilation_h")?;
        let stride_w = positive(3, 1, "stride_w")?;
        let stride_h = positive(13, stride_w, "stride_h")?;
        let left = pd.int(4, 0)?;
        let right = pd.int(15, left)?;
        let top = pd.int(14, left)?;
        let bottom = pd.int(16, top)?;
        let pads = [left, right, top, bottom];
        let padding = if pads.iter().all(|&p| p == PAD_SAME_UPPER) {
            Padding::SameUpper
        } else if pads.iter().all(|&p| p == PAD_SAME_LOWER) {
            Padding::SameLower
        } else if pads.iter().all(|&p| (0..=MAX_GEOMETRY as i32).contains(&p)) {
            Padding::Explicit {
                left: left as usize,
                right: right as usize,
                top: top as usize,
                bottom: bottom as usize,
            }
        } else {
            return Err(invalid(format!(
                "pads (left, right, top, bottom) = {pads:?}: expected all >= 0, all -233 (SAME_UPPER) or all -234 (SAME_LOWER)"
            )));
        };
        Ok(ConvParams {
            kernel_w,
            kernel_h,
            dilation_w,
            dilation_h,
            stride_w,
            stride_h,
            padding,
            pad_value: pd.float(18, 0.0)?,
        })
    }

    /// True when the im2col matrix is the input itself (1x1, stride 1, no padding).
    pub fn is_pointwise(&self, r: &Resolved) -> bool {
        self.kernel_w == 1
            && self.kernel_h == 1
            && self.stride_w == 1
            && self.stride_h == 1
            && r.pad_left + r.pad_right + r.pad_top + r.pad_bottom == 0
    }

    /// Dilated kernel extents (w, h).
    pub fn extent(&self) -> (usize, usize) {
        (
            self.dilation_w * (self.kernel_w - 1) + 1,
            self.dilation_h * (self.kernel_h - 1) + 1,
        )
    }

    /// Pads and output size for a `w x h` input; an error when the kernel does not fit.
    pub fn resolve(&self, w: usize, h: usize) -> LayerResult<Resolved> {
        let (ext_w, ext_h) = self.extent();
        // SAME: total pad so that out = ceil(in / stride); never negative.
        let same = |len: usize, ext: usize, stride: usize| {
            (ext + (len - 1) / stride * stride).saturating_sub(len)
        };
        let (pad_left, pad_right, pad_top, pad_bottom) = match self.padding {
            Padding::Explicit {
                left,
                right,
                top,
                bottom,
            } => (left, right, top, bottom),
            Padding::SameUpper => {
                let (pw, ph) = (same(w, ext_w, self.stride_w), same(h, ext_h, self.stride_h));
                (pw / 2, pw - pw / 2, ph / 2, ph - ph / 2)
            }
            Padding::SameLower => {
                let (pw, ph) = (same(w, ext_w, self.stride_w), same(h, ext_h, self.stride_h));
                (pw - pw / 2, pw / 2, ph - ph / 2, ph / 2)
            }
        };
        let (padded_w, padded_h) = (w + pad_left + pad_right, h + pad_top + pad_bottom);
        if padded_w < ext_w || padded_h < ext_h {
            return Err(invalid(format!(
                "kernel extent {ext_w}x{ext_h} is larger than the padded input {padded_w}x{padded_h}"
            )));
        }
        Ok(Resolved {
            pad_left,
            pad_right,
            pad_top,
            pad_bottom,
            out_w: (padded_w - ext_w) / self.stride_w + 1,
            out_h: (padded_h - ext_h) / self.stride_h + 1,
        })
    }
}

/// The output size (w, h) a model file states for the layer (ncnn's shape hint, key -23330:
/// `dims, w, h, c` per output), if it does.
pub fn output_size_hint(pd: &ParamDict) -> Option<(usize, usize)> {
    let v = pd.int_array(30).ok()?;
    match v.as_slice() {
        [dims, w, h, ..] if *dims >= 2 && *w > 0 && *h > 0 => Some((*w as usize, *h as usize)),
        _ => None,
    }
}

/// The plain reference: `out[o][y][x] = act(bias[o] + Σ_c,ky,kx w[o][c][ky][kx] · in[c][iy][ix])`
/// with `iy = y·SH + ky·DH − pad_top`, `ix = x·SW + kx·DW − pad_left`, and `pad_value` outside
/// the input. `input` is `inch x h x w`, `weights` `[outch][inch][kh][kw]`, `output`
/// `outch x out_h x out_w`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_reference(
    p: &ConvParams,
    input: &[f32],
    w: usize,
    h: usize,
    inch: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    outch: usize,
    act: Activation,
    output: &mut [f32],
) -> LayerResult<()> {
    let r = p.resolve(w, h)?;
    let (kw, kh) = (p.kernel_w, p.kernel_h);
    if input.len() != inch * h * w
        || weights.len() != outch * inch * kh * kw
        || output.len() != outch * r.out_h * r.out_w
        || bias.is_some_and(|b| b.len() != outch)
    {
        return Err(invalid(
            "conv2d_reference: slice sizes do not match the shapes",
        ));
    }
    for o in 0..outch {
        for y in 0..r.out_h {
            for x in 0..r.out_w {
                let mut sum = bias.map_or(0.0, |b| b[o]);
                for c in 0..inch {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy =
                                (y * p.stride_h + ky * p.dilation_h) as isize - r.pad_top as isize;
                            let ix =
                                (x * p.stride_w + kx * p.dilation_w) as isize - r.pad_left as isize;
                            let v = if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                p.pad_value
                            } else {
                                input[(c * h + iy as usize) * w + ix as usize]
                            };
                            sum += weights[((o * inch + c) * kh + ky) * kw + kx] * v;
                        }
                    }
                }
                output[(o * r.out_h + y) * r.out_w + x] = act.apply(sum);
            }
        }
    }
    Ok(())
}

/// The fast path for one group: weights packed once for the GEMM kernel, then
/// im2col-in-packing + GEMM per call; or, for 3x3 stride-1 layers where it is cheaper,
/// the weights transformed once for Winograd.
#[derive(Debug)]
pub struct Conv2dGemm {
    pub params: ConvParams,
    pub inch: usize,
    pub outch: usize,
    pub act: Activation,
    path: FastPath,
    /// 1x1 kernels: per output channel, the pre-activation value where the kernel reads
    /// only padding (`bias + pad_value · Σ weights`).
    border: Vec<f32>,
}

#[derive(Debug)]
enum FastPath {
    Gemm(PackedA),
    Winograd(Winograd),
}

impl Conv2dGemm {
    /// `weights` `[outch][inch][kh][kw]`, `bias` `outch` values; im2col + GEMM only.
    pub fn new(
        params: ConvParams,
        weights: &[f32],
        bias: Option<&[f32]>,
        outch: usize,
        inch: usize,
        act: Activation,
        kernel: Kernel,
    ) -> Conv2dGemm {
        Self::with_choice(
            params,
            weights,
            bias,
            outch,
            inch,
            act,
            kernel,
            Choice::Gemm,
        )
    }

    /// Whether Winograd can run this geometry.
    pub fn winograd_eligible(params: &ConvParams) -> bool {
        params.kernel_w == 3
            && params.kernel_h == 3
            && params.stride_w == 1
            && params.stride_h == 1
            && params.dilation_w == 1
            && params.dilation_h == 1
    }

    /// As [`Conv2dGemm::new`] with the algorithm chosen (`Choice::Winograd` needs a 3x3
    /// stride-1 dilation-1 geometry, else the GEMM is used).
    #[allow(clippy::too_many_arguments)]
    pub fn with_choice(
        params: ConvParams,
        weights: &[f32],
        bias: Option<&[f32]>,
        outch: usize,
        inch: usize,
        act: Activation,
        kernel: Kernel,
        choice: Choice,
    ) -> Conv2dGemm {
        let path = match choice {
            Choice::Winograd(v) if Self::winograd_eligible(&params) => FastPath::Winograd(
                Winograd::new(v, kernel, weights, bias, outch, inch, act, params.pad_value),
            ),
            _ => {
                let k = inch * params.kernel_w * params.kernel_h;
                FastPath::Gemm(PackedA::new(kernel, weights, outch, k, bias))
            }
        };
        let border = if params.kernel_w == 1 && params.kernel_h == 1 {
            (0..outch)
                .map(|o| {
                    let sum: f32 = weights[o * inch..(o + 1) * inch].iter().sum();
                    bias.map_or(0.0, |b| b[o]) + params.pad_value * sum
                })
                .collect()
        } else {
            Vec::new()
        };
        Conv2dGemm {
            params,
            inch,
            outch,
            act,
            path,
            border,
        }
    }

    /// A padded 1x1 stride-1 convolution: the product runs over the input alone (no
    /// im2col, no products with padding) and the border is the per-channel constant.
    fn is_padded_pointwise(&self, r: &Resolved) -> bool {
        let p = &self.params;
        p.kernel_w == 1
            && p.kernel_h == 1
            && p.stride_w == 1
            && p.stride_h == 1
            && !self.is_pointwise(r)
            && matches!(self.path, FastPath::Gemm(_))
    }

    /// The Winograd variant this layer runs, if any.
    pub fn winograd(&self) -> Option<winograd::Variant> {
        match &self.path {
            FastPath::Winograd(w) => Some(w.variant()),
            FastPath::Gemm(_) => None,
        }
    }

    /// Scratch floats per worker for a `w x h` input.
    pub fn scratch_len(&self, w: usize, h: usize) -> usize {
        match (self.params.resolve(w, h), &self.path) {
            // The interior product first goes to scratch shared by the workers.
            (Ok(r), FastPath::Gemm(packed)) if self.is_padded_pointwise(&r) => {
                packed.scratch_len(w * h) + self.outch * w * h
            }
            (Ok(r), FastPath::Gemm(packed)) => packed.scratch_len(r.out_w * r.out_h),
            (Ok(r), FastPath::Winograd(wg)) => wg.scratch_len(r.out_w, r.out_h),
            (Err(_), _) => 0,
        }
    }

    fn is_pointwise(&self, r: &Resolved) -> bool {
        self.params.is_pointwise(r)
    }

    /// `input` `inch x h x w` -> `output` `outch x out_h x out_w`. `scratch` holds
    /// `pool.threads()` slices of `scratch_len(w, h)` floats.
    pub fn run(
        &self,
        input: &[f32],
        w: usize,
        h: usize,
        output: &mut [f32],
        pool: &Pool,
        scratch: &mut [f32],
    ) -> LayerResult<()> {
        let r = self.params.resolve(w, h)?;
        if input.len() != self.inch * w * h {
            return Err(invalid("convolution input size does not match its shape"));
        }
        let packed = match &self.path {
            FastPath::Gemm(packed) => packed,
            FastPath::Winograd(wg) => {
                let g = winograd::Geometry {
                    w,
                    h,
                    out_w: r.out_w,
                    out_h: r.out_h,
                    pad_left: r.pad_left,
                    pad_top: r.pad_top,
                };
                return wg.run(input, &g, output, pool, scratch);
            }
        };
        let n = r.out_w * r.out_h;
        if self.is_padded_pointwise(&r) {
            return self.run_padded_pointwise(packed, input, w, h, &r, output, pool, scratch);
        }
        if self.is_pointwise(&r) {
            let b = DenseB { data: input, n };
            return gemm_f32::gemm(packed, &b, n, output, self.act, pool, scratch);
        }
        let p = &self.params;
        let b = Im2colB {
            input,
            w,
            h,
            kernel_w: p.kernel_w,
            kernel_h: p.kernel_h,
            dilation_w: p.dilation_w,
            dilation_h: p.dilation_h,
            stride_w: p.stride_w,
            stride_h: p.stride_h,
            pad_left: r.pad_left,
            pad_top: r.pad_top,
            out_w: r.out_w,
            pad_value: p.pad_value,
        };
        gemm_f32::gemm(packed, &b, n, output, self.act, pool, scratch)
    }

    /// See [`Conv2dGemm::is_padded_pointwise`]: `scratch` starts with the `outch x h x w`
    /// interior, the GEMM's worker slices follow.
    #[allow(clippy::too_many_arguments)]
    fn run_padded_pointwise(
        &self,
        packed: &PackedA,
        input: &[f32],
        w: usize,
        h: usize,
        r: &Resolved,
        output: &mut [f32],
        pool: &Pool,
        scratch: &mut [f32],
    ) -> LayerResult<()> {
        let n = w * h;
        let (inner, rest) = scratch
            .split_at_mut_checked(self.outch * n)
            .ok_or_else(|| invalid("convolution scratch too small"))?;
        let b = DenseB { data: input, n };
        gemm_f32::gemm(packed, &b, n, inner, self.act, pool, rest)?;
        let plane = r.out_w * r.out_h;
        for (o, (dst, src)) in output
            .chunks_exact_mut(plane)
            .zip(inner.chunks_exact(n))
            .enumerate()
        {
            dst.fill(self.act.apply(self.border[o]));
            for (y, row) in src.chunks_exact(w).enumerate() {
                let at = (r.pad_top + y) * r.out_w + r.pad_left;
                dst[at..at + w].copy_from_slice(row);
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct Convolution {
    pub num_output: usize,
    pub params: ConvParams,
    pub bias_term: bool,
    pub weight_data_size: usize,
    pub int8_scale_term: i32,
    pub activation: Activation,
    /// `[outch][inch][kh][kw]` fp32, borrowed from the weight file when stored as fp32;
    /// int8-tagged weights are dequantized here (`q / weight_scale[o]`).
    pub weights: Floats,
    pub bias: Option<Floats>,
    /// `inch * kh * kw`.
    pub k: usize,
    pub int8_scales: Option<Int8Scales>,
    /// The weights as stored (int8 or fp32), kept for quantized execution.
    stored: Option<Tagged>,
    /// The fp32 path; None while the layer runs an integer path (its packed weights are
    /// released then).
    fast: Option<Conv2dGemm>,
    kernel: Kernel,
    /// The fp32 algorithm (Winograd or im2col + GEMM), chosen once at load.
    choice: Choice,
    int8: Option<int8::ConvInt8>,
    sim: Option<Simulation>,
    /// The pool's core types (`Op::set_cores`): the integer path packs for their kernels.
    cores: Vec<CoreKind>,
    /// The output size the model file states (`output_size_hint`), for the integer path's
    /// choice of algorithm.
    out_hint: Option<(usize, usize)>,
}

impl Convolution {
    pub fn new(pd: &ParamDict, wr: &mut WeightReader) -> Result<Convolution> {
        Self::with_kernel(pd, wr, Kernel::best())
    }

    /// As [`Convolution::new`] with a chosen GEMM kernel (tests compare kernels).
    pub fn with_kernel(
        pd: &ParamDict,
        wr: &mut WeightReader,
        kernel: Kernel,
    ) -> Result<Convolution> {
        Self::with_options(pd, wr, kernel, None)
    }

    /// As [`Convolution::with_kernel`], with the fp32 algorithm forced (`None`: chosen by
    /// `winograd::choose`; Winograd applies to 3x3 stride-1 dilation-1 layers only).
    pub fn with_options(
        pd: &ParamDict,
        wr: &mut WeightReader,
        kernel: Kernel,
        choice: Option<Choice>,
    ) -> Result<Convolution> {
        let num_output = pd.usize(0, 0)?;
        let params = ConvParams::from_params(pd)?;
        let bias_term = pd.int(5, 0)? != 0;
        let weight_data_size = pd.usize(6, 0)?;
        let int8_scale_term = pd.int(8, 0)?;
        let activation = Activation::from_params(pd)?;
        if pd.int(19, 0)? != 0 {
            return Err(invalid("dynamic_weight (key 19) is not supported").into());
        }
        if num_output == 0 {
            return Err(invalid("num_output (key 0) must be positive").into());
        }
        let taps = params.kernel_w * params.kernel_h;
        if weight_data_size == 0 || weight_data_size % (num_output * taps) != 0 {
            return Err(invalid(format!(
                "weight_data_size {weight_data_size} is not a positive multiple of num_output * kernel_h * kernel_w = {}",
                num_output * taps
            ))
            .into());
        }
        let k = weight_data_size / num_output;

        let stored = wr.tagged(weight_data_size, "convolution weight")?;
        let bias = if bias_term {
            Some(wr.raw(num_output, "convolution bias")?)
        } else {
            None
        };
        let int8_scales = match int8_scale_term {
            0 => None,
            1 | 2 | 101 | 102 => Some(Int8Scales::read(pd, wr, num_output, int8_scale_term > 100)?),
            t => {
                return Err(invalid(format!(
                    "int8_scale_term (key 8) {t} is not one of 0, 1, 2, 101, 102"
                ))
                .into())
            }
        };
        if let Some(s) = &int8_scales {
            // A layer that declares 7 bits must hold 7-bit weights, whatever runs it.
            int8_weights(&stored, &s.weight, s.bits)?;
        }
        let keep = int8_scales.is_some().then(|| stored.clone());
        let weights = float_weights(stored, int8_scales.as_ref())?;
        let choice = if Conv2dGemm::winograd_eligible(&params) {
            choice.unwrap_or_else(|| {
                winograd::choose(k / taps, num_output, output_size_hint(pd), kernel.panels())
            })
        } else {
            Choice::Gemm
        };
        let fast = Conv2dGemm::with_choice(
            params,
            &weights,
            bias.as_deref(),
            num_output,
            k / taps,
            activation,
            kernel,
            choice,
        );
        Ok(Convolution {
            num_output,
            params,
            bias_term,
            weight_data_size,
            int8_scale_term,
            activation,
            weights,
            bias,
            k,
            int8_scales,
            stored: keep,
            fast: Some(fast),
            kernel,
            choice,
            int8: None,
            sim: None,
            cores: Vec::new(),
            out_hint: output_size_hint(pd),
        })
    }

    /// The Winograd variant the fp32 path runs, if any.
    pub fn winograd(&self) -> Option<winograd::Variant> {
        self.fast.as_ref().and_then(|f| f.winograd())
    }

    pub fn inch(&self) -> usize {
        self.k / (self.params.kernel_w * self.params.kernel_h)
    }

    /// The input as (w, h, channels), and whether the output is 1-D (ncnn runs a 1x1
    /// convolution over a flat blob of `inch` values as an inner product).
    fn input_view(&self, s: &Shape) -> LayerResult<(usize, usize, usize, bool)> {
        let one_by_one = self.params.kernel_w == 1 && self.params.kernel_h == 1;
        match s.dims {
            1 if one_by_one && s.w == self.k => Ok((1, 1, s.w, true)),
            1 => Ok((s.w, 1, 1, false)),
            2 => Ok((s.w, s.h, 1, false)),
            3 => Ok((s.w, s.h, s.c, false)),
            d => Err(invalid(format!(
                "{d}-D input is not supported by Convolution"
            ))),
        }
    }

    /// Runs the reference loop (for tests and cross-checks).
    pub fn forward_reference(&self, input: &Tensor, output: &mut TensorMut) -> LayerResult<()> {
        let (w, h, c, _) = self.input_view(&input.shape)?;
        conv2d_reference(
            &self.params,
            input.data,
            w,
            h,
            c,
            &self.weights,
            self.bias.as_deref(),
            self.num_output,
            self.activation,
            output.data,
        )
    }
}

impl Op for Convolution {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let (w, h, c, flat) = self.input_view(&inputs[0])?;
        let taps = self.params.kernel_w * self.params.kernel_h;
        if self.num_output * c * taps != self.weight_data_size {
            return Err(invalid(format!(
                "weight_data_size {} != num_output {} * input channels {c} * kernel {}x{}",
                self.weight_data_size, self.num_output, self.params.kernel_h, self.params.kernel_w
            )));
        }
        let r = self.params.resolve(w, h)?;
        if flat {
            return Ok(vec![Shape::d1(self.num_output)]);
        }
        Ok(vec![Shape::d3(r.out_w, r.out_h, self.num_output)])
    }

    fn scratch_len(&self, inputs: &[Shape], _outputs: &[Shape]) -> usize {
        match inputs.first().map(|s| self.input_view(s)) {
            Some(Ok((w, h, c, _))) => match (&self.int8, &self.sim, &self.fast) {
                (Some(q), _, _) => q.scratch_len(w, h),
                // The rounded input, then the GEMM's panels.
                (None, Some(_), Some(f)) => {
                    f.scratch_len(w, h) + Simulation::scratch_floats(Shape::d3(w, h, c))
                }
                (None, None, Some(f)) => f.scratch_len(w, h),
                (None, _, None) => 0,
            },
            _ => 0,
        }
    }

    fn set_cores(&mut self, cores: &[CoreKind]) {
        self.cores = cores.to_vec();
    }

    fn synthesize_int8_scales(&mut self) {
        synthesize(
            &mut self.int8_scales,
            &mut self.stored,
            &self.weights,
            self.num_output,
        );
    }

    fn set_precision(&mut self, choice: PrecisionChoice) -> LayerResult<Option<Precision>> {
        let plan = quant_plan(self.int8_scales.as_ref(), self.stored.as_ref(), choice)?;
        // An earlier choice may have released the fp32 path or built it on the simulation's
        // weights: the fp32 path is then made again from the stored weights.
        let restore = self.fast.is_none() || self.sim.is_some();
        self.int8 = None;
        self.sim = None;
        // The float simulation of a quantized layer stays on the GEMM (the products the
        // integer kernels compute, no transform rounding).
        let gemm = |this: &Self, weights: &[f32], choice: Choice| {
            Conv2dGemm::with_choice(
                this.params,
                weights,
                this.bias.as_deref(),
                this.num_output,
                this.inch(),
                this.activation,
                this.kernel,
                choice,
            )
        };
        let (precision, q) = match plan {
            QuantPlan::Fp32 => {
                if restore {
                    self.weights = fp32_weights(&self.stored, self.int8_scales.as_ref())?;
                    self.fast = Some(gemm(self, &self.weights, self.choice));
                }
                return Ok(None);
            }
            QuantPlan::Simulate {
                precision,
                weights,
                sim,
            } => {
                self.fast = Some(gemm(self, &weights, Choice::Gemm));
                self.sim = Some(sim);
                return Ok(Some(precision));
            }
            QuantPlan::Integer { precision, q } => (precision, q),
        };
        let scales = self.int8_scales.as_ref().expect("integer plan has scales");
        self.int8 = Some(int8::ConvInt8::new(
            precision,
            crate::kernels::gemm_i8::KernelSet::for_cores(precision, &self.cores),
            self.params,
            &q,
            &scales.weight,
            scales.bottom,
            self.bias.as_deref(),
            self.num_output,
            self.inch(),
            self.activation,
            self.out_hint,
        ));
        // The integer path reads neither: free the fp32 copy of int8-tagged weights and the
        // packed fp32 GEMM (together 8 bytes per weight).
        self.fast = None;
        self.weights = Floats::owned(Vec::new());
        Ok(Some(precision))
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
                q.top = output;
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
        let (input, output) = match (inputs, &mut *outputs) {
            ([i], [o]) => (*i, o),
            _ => return Err(invalid("Convolution takes one input and one output")),
        };
        let (w, h, _, _) = self.input_view(&input.shape)?;
        if let Some(q) = &self.int8 {
            let len = output.shape.len();
            return q.run(input.data, w, h, output.data, len, ctx.pool, ctx.scratch);
        }
        let fp32 = |x: Tensor, outputs: &mut [TensorMut], ctx: &mut Ctx| {
            self.fast
                .as_ref()
                .ok_or_else(|| invalid("Convolution: no fp32 path (set_precision chose none)"))?
                .run(x.data, w, h, outputs[0].data, ctx.pool, ctx.scratch)
        };
        match &self.sim {
            Some(sim) => sim.run(input, outputs, ctx, fp32),
            None => fp32(input, outputs, ctx),
        }
    }
}

pub mod int8;
#[cfg(test)]
mod int8_tests;
#[cfg(test)]
mod tests;
