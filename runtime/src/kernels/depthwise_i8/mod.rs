//! Quantized (INT8 / INT7) depthwise convolution, the requant epilogue fused in.
//!
//! Every output is `Requant::dequant(c, acc)` (fp32) or `Requant::requant(c, acc)` (int8) of
//! its exact int32 sum `acc`, bit for bit. Values must lie in `±precision.qmax()` (what
//! `quant::quantize` produces; never −128): the SIMD code sums products in int16 lanes.
//!
//! # int16 flush intervals (products summed in an int16 lane before widening to int32)
//! * INT8: 2 products (2 · 127² = 32258 ≤ 32767). A 3x3 kernel pairs taps (0, 1) (2, 3)
//!   (4, 5) (6, 7), widens pairs of pairs with `saddl` and adds tap 8 with `saddw`.
//! * INT7: 8 products (8 · 63² = 31752 ≤ 32767); a 3x3 kernel sums taps 0..8 in int16 and
//!   widens them together with tap 8 (`saddl`; 9 · 63² = 35721 would overflow).
//!
//! The interval is `Precision::products_per_i16`; the `extremes_*` tests drive every lane to
//! its bound with all values at ±qmax, through every path.
//!
//! # The unpadded 3x3 path (aarch64: [`Plan`], [`run`])
//! 3x3 undilated kernels, stride 1 or 2 across (any down), pads across up to 15: the planes
//! are read where they are, no padded copy. Work comes in blocks of 16 outputs of a row
//! (starts 0, 16, .., and `out_w - 16` for the last, overlapping the one before; rows of up
//! to 16 outputs are one block, the lanes past the row compute outputs of the rows after
//! it, which are stored over later). A block's taps that read padding across have their
//! lanes zeroed (`Plan::masks`: first, middle and last block kinds). Tasks are whole
//! channels, or row ranges of one channel when channels are fewer than the workers want.
//!
//! * int8 output with the activation folded into the int8 clamp (none, ReLU, and Clip where
//!   the fold is exact: see `variant`): the generated software-pipelined loops of
//!   `asm_loops.rs` (see `gen_asm.py`), one iteration convolving block i while
//!   requantizing and storing block i - 1, over a list of block descriptors shared by a
//!   task's channels (`pipelined.rs`). A row whose receptive field leaves the plane
//!   vertically reads input rows shifted by one (or two) with its tap window shifted over
//!   zero tap rows, so its padding contributes nothing and the loop needs no branch. Loops
//!   scheduled for the Cortex-A53 (in order, LLVM's A55 and A53 models) and the A72 (the
//!   A57 model) are picked per worker (`pool.core_kind`).
//! * Otherwise (fp32 output, LeakyReLU, Clip on non-finite constants, other activations,
//!   and the rows whose loads would leave the input: the first of the first channel, the
//!   last of the last): `neon3x3.rs`, intrinsics with the same sums and the epilogue per 16
//!   outputs (zero rows for vertical padding; rows at the input's ends on zero-margined
//!   copies).
//!
//! # The padded-plane path ([`channel_i8`], [`row`])
//! Other kernels and strides, and every architecture: the channel's plane **already
//! padded** with 0 to `g.in_w x g.in_h` (`depthwise_f32::Geometry`), rows summed in chunks
//! and stored through `quantize::store_requant`. Variants: `generic` (plain Rust, int32
//! throughout), `x86_64` (AVX2: 16 pixels per vector, int8 sign-extended to int16,
//! `vpmullw` and `vpaddw`), `aarch64` (NEON: 16 pixels per vector, `smull`/`smlal` into
//! int16, `saddw` into int32). Both SIMD variants specialise 3x3 stride 1 and stride 2 and
//! have a general path for any kernel and dilation at stride 1 or 2; other strides use the
//! generic code.
//!
//! On x86_64 with AVX2 and FMA, 3x3 undilated kernels at stride 1 or 2 across (any down)
//! with the activations `store_requant` vectorises skip the row chunks: `channel_i8` hands
//! the padded plane to `x86_64::channel3x3`, which sums blocks of 16 outputs and runs the
//! epilogue on them in registers, storing int8 or fp32 directly (no int32 row buffer, no
//! scalar tails). Planes followed by [`IN_SLACK`] more bytes (the op's padded copies have
//! them) keep every block in SIMD; without them the blocks at the plane's end sum with
//! scalar code.

use crate::cpu::CoreKind;
use crate::kernels::quantize::store_requant;
use crate::kernels::requant::{OutBuf, Requant};
#[cfg(target_arch = "aarch64")]
use crate::ops::activation::Activation;
#[cfg(target_arch = "aarch64")]
use crate::quant::quantize_scaled;
use crate::quant::Precision;
use std::ops::Range;

pub use crate::kernels::depthwise_f32::Geometry;
pub use crate::kernels::Isa;

pub(crate) mod generic;

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64;
#[cfg(target_arch = "aarch64")]
mod asm_loops;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon3x3;
#[cfg(target_arch = "aarch64")]
mod pipelined;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_64;

/// One depthwise layer on unpadded planes: `w x h` int8 values per channel, channels back
/// to back; `g` is the geometry over the zero-padded plane (`g.in_w = pad_left + w +
/// pad_right`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layer {
    pub w: usize,
    pub h: usize,
    pub pad_left: usize,
    pub pad_top: usize,
    pub g: Geometry,
}

impl Layer {
    pub fn pad_right(&self) -> usize {
        self.g.in_w - self.w - self.pad_left
    }
}

/// Bytes a row of blocks reads around each input row's start: `lo..hi` (`lo <= 0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spans {
    pub lo: isize,
    pub hi: usize,
}

/// The unpadded 3x3 path of one layer call (see the module docs): built per forward, no
/// allocation. Crate-private: [`run`]'s NEON loads trust the plan's spans and masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub layer: Layer,
    pub out_w: usize,
    pub out_h: usize,
    /// `out_w <= 8`: two output rows per block of 16 lanes.
    pub narrow: bool,
    /// Start of the last block of a row (`out_w - 16`, overlapping the one before).
    pub last_x0: usize,
    /// Per block kind (first, middle, last) and `kx`: 0xff where a lane's tap reads inside
    /// the row, 0 where it reads padding.
    pub masks: [[[u8; 16]; 3]; 3],
    pub spans: Spans,
}

/// Largest pad across the unpadded path handles (middle blocks never touch padding).
const MAX_PAD_W: usize = 15;

impl Plan {
    /// The plan, if `isa` has the unpadded path for this layer: NEON, 3x3 undilated, stride
    /// 1 or 2 across (any down), pads across up to 15.
    pub fn new(isa: Isa, l: &Layer) -> Option<Plan> {
        let g = &l.g;
        #[cfg(target_arch = "aarch64")]
        let neon = isa == Isa::Neon;
        #[cfg(not(target_arch = "aarch64"))]
        let neon = {
            let _ = isa;
            false
        };
        let shape = g.kernel_w == 3
            && g.kernel_h == 3
            && g.dilation_w == 1
            && g.dilation_h == 1
            && (g.stride_w == 1 || g.stride_w == 2)
            && g.stride_h >= 1;
        if !neon || !shape || l.w == 0 || l.h == 0 || g.out_w == 0 || g.out_h == 0 {
            return None;
        }
        if l.pad_left > MAX_PAD_W || l.pad_right() > MAX_PAD_W || g.in_h < l.h + l.pad_top {
            return None;
        }
        let s = g.stride_w;
        let narrow = g.out_w <= 8;
        let last_x0 = g.out_w.saturating_sub(16);
        let pl = l.pad_left as isize;
        let hi = if narrow {
            2 + 8 * s as isize - pl
        } else {
            (last_x0 * s) as isize + 2 + 16 * s as isize - pl
        };
        let spans = Spans {
            lo: -pl,
            hi: hi.max(0) as usize,
        };
        #[cfg(target_arch = "aarch64")]
        if neon3x3::ZERO_AT + spans.hi.max(l.w + 16) > neon3x3::ZERO_LEN {
            return None;
        }
        let mut masks = [[[0u8; 16]; 3]; 3];
        for (kind, (m, x0)) in masks.iter_mut().zip([0, 16, last_x0]).enumerate() {
            for (kx, m) in m.iter_mut().enumerate() {
                for (lane, m) in m.iter_mut().enumerate() {
                    let x = if narrow { lane % 8 } else { x0 + lane };
                    let col = (x * s + kx) as isize - pl;
                    let inside = kind == 1 || (col >= 0 && col < l.w as isize);
                    *m = if inside { 0xff } else { 0 };
                }
            }
        }
        Some(Plan {
            layer: *l,
            out_w: g.out_w,
            out_h: g.out_h,
            narrow,
            last_x0,
            masks,
            spans,
        })
    }
}

/// Runs the unpadded path over channels `chans`, output rows `rows` of each: `out` is the
/// task's output region, channel `chans.start`'s row `rows.start` first (whole planes when
/// `rows` is every row, else one channel's rows). Every output is `requant.dequant(c, acc)`
/// (fp32) or `requant.requant(c, acc)` (int8) of its exact int32 sum. `core` picks the
/// loops scheduled for that core. Does not allocate.
///
/// Crate-private: its loads are only as sound as the [`Plan`] (built by [`Plan::new`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    plan: &Plan,
    precision: Precision,
    input: &[i8],
    taps: &[i8],
    requant: &Requant,
    out: &mut OutBuf,
    chans: Range<usize>,
    rows: Range<usize>,
    core: CoreKind,
) {
    let l = &plan.layer;
    let plane_out = plan.out_w * plan.out_h;
    if chans.is_empty() || rows.is_empty() {
        return;
    }
    assert!(rows.end <= plan.out_h);
    let whole = rows.len() == plan.out_h;
    assert!(whole || chans.len() == 1, "row ranges are per channel");
    let need = if whole {
        chans.len() * plane_out
    } else {
        rows.len() * plan.out_w
    };
    assert!(out.len() >= need, "output region too short");
    assert!(input.len() >= chans.end * l.w * l.h, "input too short");
    assert!(taps.len() >= chans.end * 9, "kernel too short");
    assert!(requant.scale_in.len() >= chans.end);
    assert!(requant.bias.is_none_or(|b| b.len() >= chans.end));
    assert!(requant.qmax <= 127);
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the plan's spans keep every load inside `input` (rows that would leave it are
    // done in scalar code) or the zero rows; stores stay inside the checked region.
    unsafe {
        neon::run(
            plan, precision, input, taps, requant, out, chans, rows, core,
        )
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        let _ = (precision, core);
        unreachable!("no unpadded depthwise path on this architecture");
    }
}

/// The variant of channel `c`'s epilogue: `(OUT, ACT, qlo, qhi)` (see `neon3x3`); ReLU and
/// Clip fold into the int8 clamp where that is exact.
#[cfg(target_arch = "aarch64")]
fn variant(rq: &Requant, c: usize, i8_out: bool) -> (u8, u8, i32, i32) {
    use neon3x3::*;
    let q = rq.qmax;
    // quantize(y · top) is monotonic in y when top is not negative, so a clamp of y becomes
    // a clamp of the int8 result, as long as y is never NaN (finite scale and bias: the
    // accumulator is an integer).
    let monotonic = rq.top_scale >= 0.0 || rq.top_scale.is_nan();
    let s = rq.scale_in[c];
    let b = rq.bias.map_or(0.0, |b| b[c]);
    let f = |v: f32| quantize_scaled(v * rq.top_scale, q) as i32;
    match (i8_out, rq.act) {
        (false, Activation::None) => (F32, NONE, 0, 0),
        (false, Activation::ReLU) => (F32, RELU, 0, 0),
        (false, Activation::LeakyReLU(_)) => (F32, LEAKY, 0, 0),
        (false, Activation::Clip { .. }) => (F32, CLIP, 0, 0),
        (false, _) => (SPILL_F32, NONE, 0, 0),
        (true, Activation::None) => (I8, NONE, -q, q),
        (true, Activation::ReLU) if monotonic => (I8, NONE, 0, q),
        (true, Activation::Clip { min, max })
            if monotonic && min <= max && s.is_finite() && b.is_finite() =>
        {
            (I8, NONE, f(min), f(max))
        }
        (true, Activation::LeakyReLU(_)) => (I8, LEAKY, -q, q),
        (true, Activation::Clip { .. }) => (I8, CLIP, -q, q),
        (true, _) => (SPILL_I8, NONE, -q, q),
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::neon3x3::{channel, Dst, Epi, CLIP, F32, I8, LEAKY, NONE, RELU};
    use super::neon3x3::{SPILL_F32, SPILL_I8};
    use super::*;
    use std::arch::aarch64::*;

    #[allow(clippy::too_many_arguments)]
    pub unsafe fn run(
        plan: &Plan,
        precision: Precision,
        input: &[i8],
        taps: &[i8],
        rq: &Requant,
        out: &mut OutBuf,
        chans: Range<usize>,
        rows: Range<usize>,
        core: CoreKind,
    ) {
        let (ptr, end, i8_out) = match out {
            OutBuf::F32(o) => (
                o.as_mut_ptr() as *mut u8,
                o.as_mut_ptr_range().end as *mut u8,
                false,
            ),
            OutBuf::I8(o) => (
                o.as_mut_ptr() as *mut u8,
                o.as_mut_ptr_range().end as *mut u8,
                true,
            ),
        };
        let dst = Dst {
            out: ptr,
            end,
            c0: chans.start,
            y0: rows.start,
        };
        let (slope, lo, hi) = match rq.act {
            Activation::LeakyReLU(k) => (k, 0.0, 0.0),
            Activation::Clip { min, max } => (0.0, min, max),
            _ => (0.0, 0.0, 0.0),
        };
        let i7 = precision == Precision::Int7;
        let s2 = plan.layer.g.stride_w == 2;
        let intrinsics = |c: usize, r: Range<usize>| {
            let (kind, act, qlo, qhi) = variant(rq, c, i8_out);
            let e = Epi {
                scale: vdupq_n_f32(rq.scale_in[c]),
                bias: vdupq_n_f32(rq.bias.map_or(0.0, |b| b[c])),
                top: vdupq_n_f32(rq.top_scale),
                slope: vdupq_n_f32(slope),
                lo: vdupq_n_f32(lo),
                hi: vdupq_n_f32(hi),
                qlo: vdupq_n_s8(qlo as i8),
                qhi: vdupq_n_s8(qhi as i8),
            };
            macro_rules! go {
                ($s:literal, $i7:literal) => {
                    match (kind, act) {
                        (F32, NONE) => {
                            channel::<$s, $i7, F32, NONE>(plan, input, taps, c, r, rq, &e, dst)
                        }
                        (F32, RELU) => {
                            channel::<$s, $i7, F32, RELU>(plan, input, taps, c, r, rq, &e, dst)
                        }
                        (F32, LEAKY) => {
                            channel::<$s, $i7, F32, LEAKY>(plan, input, taps, c, r, rq, &e, dst)
                        }
                        (F32, _) => {
                            channel::<$s, $i7, F32, CLIP>(plan, input, taps, c, r, rq, &e, dst)
                        }
                        (I8, NONE) => {
                            channel::<$s, $i7, I8, NONE>(plan, input, taps, c, r, rq, &e, dst)
                        }
                        (I8, LEAKY) => {
                            channel::<$s, $i7, I8, LEAKY>(plan, input, taps, c, r, rq, &e, dst)
                        }
                        (I8, _) => {
                            channel::<$s, $i7, I8, CLIP>(plan, input, taps, c, r, rq, &e, dst)
                        }
                        (SPILL_F32, _) => channel::<$s, $i7, SPILL_F32, NONE>(
                            plan, input, taps, c, r, rq, &e, dst,
                        ),
                        _ => {
                            channel::<$s, $i7, SPILL_I8, NONE>(plan, input, taps, c, r, rq, &e, dst)
                        }
                    }
                };
            }
            match (s2, i7) {
                (false, false) => go!(1, false),
                (false, true) => go!(1, true),
                (true, false) => go!(2, false),
                (true, true) => go!(2, true),
            }
        };
        // The software-pipelined loops: int8 output, clamp epilogue, rows wider than 8.
        let folded = layer_clamp(rq);
        if let (true, Some((qlo, qhi))) = (i8_out, folded) {
            // A folded Clip needs finite scale and bias (see `variant`); None and ReLU fold
            // for every channel.
            let clip = matches!(rq.act, Activation::Clip { .. });
            pipelined::run(
                plan,
                precision,
                core,
                input,
                taps,
                rq,
                clip,
                dst,
                chans,
                rows,
                qlo as i8,
                qhi as i8,
                &intrinsics,
            );
            return;
        }
        for c in chans {
            intrinsics(c, rows.clone());
        }
    }
}

/// The int8 clamp of a layer whose activation folds into it (for channels with finite
/// scale and bias), if it does.
#[cfg(target_arch = "aarch64")]
fn layer_clamp(rq: &Requant) -> Option<(i32, i32)> {
    let q = rq.qmax;
    let monotonic = rq.top_scale >= 0.0 || rq.top_scale.is_nan();
    let f = |v: f32| quantize_scaled(v * rq.top_scale, q) as i32;
    match rq.act {
        Activation::None => Some((-q, q)),
        Activation::ReLU if monotonic => Some((0, q)),
        Activation::Clip { min, max } if monotonic && min <= max => Some((f(min), f(max))),
        _ => None,
    }
}

/// Bytes past a padded plane that let the x86_64 3x3 path load every block with SIMD
/// (`x86_64::channel3x3`; its contents do not matter).
pub const IN_SLACK: usize = 64;

/// Output pixels of a row summed before one epilogue call.
pub const CHUNK: usize = 256;
/// Room past a chunk, so a SIMD block may store a whole vector of 16 sums at its end.
pub const SLACK: usize = 16;

/// Panics unless every tap of every output pixel lies inside the buffers; the SIMD variants
/// rely on this for their unchecked loads.
fn check(g: &Geometry, input: &[i8], taps: &[i8], out_len: usize, out_offset: usize) {
    assert!(g.kernel_w > 0 && g.kernel_h > 0 && g.stride_w > 0 && g.stride_h > 0);
    assert!(g.dilation_w > 0 && g.dilation_h > 0);
    if g.out_w == 0 || g.out_h == 0 {
        return;
    }
    let last_x = (g.out_w - 1) * g.stride_w + (g.kernel_w - 1) * g.dilation_w;
    let last_y = (g.out_h - 1) * g.stride_h + (g.kernel_h - 1) * g.dilation_h;
    assert!(
        last_x < g.in_w && last_y < g.in_h,
        "taps outside the input plane"
    );
    assert!(input.len() >= g.in_w * g.in_h, "input plane too short");
    assert!(taps.len() >= g.taps(), "kernel too short");
    assert!(
        out_len >= out_offset + g.out_w * g.out_h,
        "output plane too short"
    );
}

/// Depthwise convolution of channel `c` (see the module docs), writing its output plane at
/// `out[out_offset..]`. Does not allocate.
#[allow(clippy::too_many_arguments)]
pub fn channel_i8(
    isa: Isa,
    precision: Precision,
    g: &Geometry,
    input: &[i8],
    taps: &[i8],
    c: usize,
    requant: &Requant,
    out: &mut OutBuf,
    out_offset: usize,
) {
    check(g, input, taps, out.len(), out_offset);
    // SAFETY: `check` above.
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, Isa::Avx2Fma | Isa::Avx512)
        && unsafe {
            let wide = isa == Isa::Avx512;
            x86_64::channel3x3(wide, g, precision, input, taps, c, requant, out, out_offset)
        }
    {
        return;
    }
    let input = &input[..g.in_w * g.in_h];
    let taps = &taps[..g.taps()];
    let mut acc = [0i32; CHUNK + SLACK];
    for oy in 0..g.out_h {
        let mut x = 0;
        while x < g.out_w {
            let n = CHUNK.min(g.out_w - x);
            // SAFETY: `check` above; n <= CHUNK, x + n <= out_w, oy < out_h.
            unsafe { row(isa, precision, g, input, taps, oy, x, n, &mut acc) };
            let at = out_offset + oy * g.out_w + x;
            if isa == Isa::Generic {
                requant.store(c, &acc[..n], out, at);
            } else {
                store_requant(requant, c, &acc[..n], out, at);
            }
            x += n;
        }
    }
}

/// The int32 sums of output pixels `x0..x0 + n` (`n <= CHUNK`) of row `oy` into `acc[..n]`;
/// `acc[n..]` may be overwritten.
///
/// # Safety
/// The geometry fits `input` and `taps` (as `check` verifies, which [`channel_i8`] does once
/// per channel): the SIMD variants load the taps and rows it names without checking.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn row(
    isa: Isa,
    precision: Precision,
    g: &Geometry,
    input: &[i8],
    taps: &[i8],
    oy: usize,
    x0: usize,
    n: usize,
    acc: &mut [i32; CHUNK + SLACK],
) {
    assert!(n <= CHUNK && x0 + n <= g.out_w && oy < g.out_h);
    match isa {
        Isa::Generic => generic::row(g, input, taps, oy, x0, &mut acc[..n]),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller's contract is the variant's.
        Isa::Avx2Fma | Isa::Avx512 => x86_64::row(g, precision, input, taps, oy, x0, n, acc),
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above.
        Isa::Neon => aarch64::row(g, precision, input, taps, oy, x0, n, acc),
    }
    let _ = precision;
}

#[cfg(test)]
mod tests;
