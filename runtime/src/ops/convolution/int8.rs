//! Convolution in INT8 / INT7 (ncnn-format.md §6.3): quantize the input with the bottom scale
//! (unless an int8 blob arrives), im2col + int8 GEMM with int32 accumulation — or, for 3x3
//! stride-1 kernels on ARM and x86_64, the exact integer Winograd F(4x4, 3x3) (`kernels::winograd_i8`),
//! which gives the same int32 sums — and the dequantize / requantize epilogue fused into the
//! kernel (`kernels::requant`).

use super::{ConvParams, Resolved};
use crate::error::{invalid, LayerResult};
use crate::kernels::gemm_i8::{self, DenseB8, Im2colB8, KernelSet, PackedA8};
use crate::kernels::quantize::quantize_slice;
use crate::kernels::requant::{self, OutBuf, Requant};
use crate::kernels::winograd;
use crate::kernels::winograd_i8::{self, WinogradI8};
use crate::ops::activation::Activation;
use crate::ops::quantized::{as_i8, as_i8_mut};
use crate::pool::{Pool, SharedMut};
use crate::quant::{Int8Grid, Precision};

/// Values quantized per pool task when the input arrives as fp32.
const QUANTIZE_CHUNK: usize = 16 * 1024;

#[derive(Debug)]
pub struct ConvInt8 {
    pub precision: Precision,
    params: ConvParams,
    inch: usize,
    outch: usize,
    path: Path,
    scale_in: Vec<f32>,
    bias: Option<Vec<f32>>,
    act: Activation,
    bottom: f32,
    /// The grid of the int8 output when this layer writes int8 (decided at load).
    pub top: Option<Int8Grid>,
    /// The input blob already holds int8 values.
    pub input_i8: bool,
}

/// How the products are computed.
#[derive(Debug)]
enum Path {
    Gemm(PackedA8),
    Winograd(WinogradI8),
}

/// Whether a layer uses integer Winograd: 3x3 stride 1 with enough channels for the
/// transforms to pay, on ARM (NEON int16 products) and on x86_64 without VNNI (`vpmaddwd`
/// products) unless the output the model file states is small (`winograd_i8::few_tiles`).
/// With VNNI the im2col GEMM multiplies four bytes per lane and is faster (VGG-16 INT8 108
/// vs 139 ms); the generic kernels keep the im2col GEMM too. `EQ_WINOGRAD=off` keeps the
/// im2col GEMM everywhere.
fn use_winograd(
    params: &ConvParams,
    inch: usize,
    outch: usize,
    kernels: &KernelSet,
    out_hint: Option<(usize, usize)>,
) -> bool {
    let target = cfg!(target_arch = "aarch64")
        || (kernels.used().all(|k| k.is_x86_avx2())
            && !out_hint.is_some_and(winograd_i8::few_tiles));
    target
        && winograd::env_override() != Some(winograd::Choice::Gemm)
        && winograd_i8::applies(
            (params.kernel_w, params.kernel_h),
            (params.stride_w, params.stride_h),
            (params.dilation_w, params.dilation_h),
        )
        && inch >= 8
        && outch >= 8
}

impl ConvInt8 {
    /// `weights` `[outch][inch][kh][kw]` int8 with per-output-channel `weight_scales`;
    /// `out_hint`: the output size the model file states, if it does.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        precision: Precision,
        kernels: KernelSet,
        params: ConvParams,
        weights: &[i8],
        weight_scales: &[f32],
        bottom: f32,
        bias: Option<&[f32]>,
        outch: usize,
        inch: usize,
        act: Activation,
        out_hint: Option<(usize, usize)>,
    ) -> ConvInt8 {
        let k = inch * params.kernel_w * params.kernel_h;
        let path = if use_winograd(&params, inch, outch, &kernels, out_hint) {
            Path::Winograd(WinogradI8::new(precision, weights, outch, inch, &kernels))
        } else {
            Path::Gemm(PackedA8::new(kernels, weights, outch, k))
        };
        ConvInt8 {
            precision,
            params,
            inch,
            outch,
            path,
            scale_in: requant::scale_in(bottom, weight_scales),
            bias: bias.map(<[f32]>::to_vec),
            act,
            bottom,
            top: None,
            input_i8: false,
        }
    }

    /// Floats of the quantized copy of an fp32 input (shared by all workers).
    fn quantized_input_floats(&self, w: usize, h: usize) -> usize {
        if self.input_i8 {
            0
        } else {
            // Rounded to whole cache lines so the GEMM scratch after it stays aligned.
            (self.inch * w * h).div_ceil(4).next_multiple_of(16)
        }
    }

    /// Scratch floats per worker: the GEMM's panels, plus (counted once per worker for
    /// simplicity) the quantized input.
    pub fn scratch_len(&self, w: usize, h: usize) -> usize {
        self.gemm_scratch_len(w, h) + self.quantized_input_floats(w, h)
    }

    fn is_pointwise(&self, r: &Resolved) -> bool {
        self.params.is_pointwise(r)
    }

    /// `input` (`inch x h x w`, fp32 or int8 per `input_i8`) -> `output` (fp32, or int8 when
    /// `top` is set). `scratch` holds `pool.threads()` slices of `scratch_len(w, h)` floats.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        input: &[f32],
        w: usize,
        h: usize,
        output: &mut [f32],
        out_len: usize,
        pool: &Pool,
        scratch: &mut [f32],
    ) -> LayerResult<()> {
        let in_len = self.inch * w * h;
        let (qin, gemm_scratch) = scratch.split_at_mut(self.quantized_input_floats(w, h));
        let x: &[i8] = if self.input_i8 {
            as_i8(input, in_len)?
        } else {
            if input.len() != in_len {
                return Err(invalid("convolution input size does not match its shape"));
            }
            let q = as_i8_mut(qin, in_len)?;
            quantize_parallel(input, self.bottom, self.precision.qmax(), q, pool)?;
            q
        };
        let out = match self.top {
            Some(_) => OutBuf::I8(as_i8_mut(output, out_len)?),
            None => OutBuf::F32(
                output
                    .get_mut(..out_len)
                    .ok_or_else(|| invalid("convolution output is too small"))?,
            ),
        };
        self.run_quantized(x, w, h, out, pool, gemm_scratch)
    }

    /// The convolution of an int8 input (`inch x h x w`) into `out` (`outch` planes).
    /// `scratch` holds `pool.threads()` GEMM scratch slices.
    pub fn run_quantized(
        &self,
        x: &[i8],
        w: usize,
        h: usize,
        out: OutBuf,
        pool: &Pool,
        scratch: &mut [f32],
    ) -> LayerResult<()> {
        let r = self.params.resolve(w, h)?;
        let n = r.out_w * r.out_h;
        if x.len() != self.inch * w * h || out.len() != self.outch * n {
            return Err(invalid("convolution sizes do not match the shapes"));
        }
        let requant = Requant {
            scale_in: &self.scale_in,
            bias: self.bias.as_deref(),
            act: self.act,
            top_scale: self.top.map_or(1.0, |g| g.scale),
            qmax: self.top.map_or(self.precision.qmax(), |g| g.qmax),
        };
        let packed = match &self.path {
            Path::Winograd(wg) => {
                let (out_size, pads) = ((r.out_w, r.out_h), (r.pad_left, r.pad_top));
                return wg.run(x, w, h, out_size, pads, &requant, out, pool, scratch);
            }
            Path::Gemm(packed) => packed,
        };
        if self.is_pointwise(&r) {
            let b = DenseB8 { data: x, n };
            return gemm_i8::gemm(packed, &b, n, &requant, out, pool, scratch);
        }
        let p = &self.params;
        let b = Im2colB8 {
            input: x,
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
        };
        gemm_i8::gemm(packed, &b, n, &requant, out, pool, scratch)
    }

    /// Scratch floats per worker of the product (GEMM or Winograd) for a `w x h` input.
    pub fn gemm_scratch_len(&self, w: usize, h: usize) -> usize {
        match (&self.path, self.params.resolve(w, h)) {
            (_, Err(_)) => 0,
            (Path::Gemm(packed), Ok(r)) => packed.scratch_len(r.out_w * r.out_h),
            (Path::Winograd(wg), Ok(_)) => wg.scratch_len(),
        }
    }
}

/// `dst = quantize(src · scale)` on the pool, in chunks.
pub fn quantize_parallel(
    src: &[f32],
    scale: f32,
    qmax: i32,
    dst: &mut [i8],
    pool: &Pool,
) -> LayerResult<()> {
    let len = src.len().min(dst.len());
    let out = SharedMut::new(&mut dst[..len]);
    let task = |t: usize, _worker: usize| {
        let start = t * QUANTIZE_CHUNK;
        let end = len.min(start + QUANTIZE_CHUNK);
        // SAFETY: tasks write disjoint chunks.
        let d = unsafe { out.slice(start, end - start) };
        quantize_slice(&src[start..end], scale, qmax, d);
    };
    pool.run(len.div_ceil(QUANTIZE_CHUNK), &task)
        .map_err(|e| invalid(e.to_string()))
}
