//! Quantized (INT8 / INT7) depthwise convolution of one channel plane, with the requant
//! epilogue fused per output row.
//!
//! # Interface
//! [`channel_i8`] convolves one channel: `input` is the channel's plane **already padded**
//! with 0 (the quantized pad value) to `g.in_w x g.in_h`, exactly as for the fp32 kernel
//! (`depthwise_f32::Geometry`), and `taps` its `kernel_h x kernel_w` int8 weights. Every
//! output pixel's int32 sum `acc` goes through `requant.store(c, ..)` (the SIMD variants use
//! `quantize::store_requant`, its bit-identical vectorised twin), so the fp32 output is
//! `Requant::dequant(c, acc)` and the int8 output `Requant::requant(c, acc)`, bit for bit.
//! `out` holds the whole output tensor; channel `c`'s plane starts at `out_offset`.
//!
//! Values must lie in `±precision.qmax()` (what `quant::quantize` produces; never −128):
//! the SIMD variants sum products in int16 lanes and rely on that bound.
//!
//! # int16 flush intervals (products summed in an int16 lane before widening to int32)
//! * INT8: 2 products (2 · 127² = 32258 ≤ 32767).
//! * INT7: 8 products (8 · 63² = 31752 ≤ 32767); a 3x3 kernel sums 8 taps in int16, widens,
//!   then adds the 9th (9 · 63² = 35721 would overflow).
//!
//! The interval is `Precision::products_per_i16`; the `extremes_*` tests drive every lane to
//! its bound with all values at ±qmax.
//!
//! # Variants
//! `generic` (plain Rust, int32 throughout), `x86_64` (AVX2: 16 pixels per vector, int8
//! sign-extended to int16, `vpmullw` + `vpaddw`), `aarch64` (NEON: 16 pixels per vector,
//! `smull`/`smlal` into int16, `saddw` into int32; the same code for Cortex-A53 and A72).
//! Both SIMD variants specialise 3x3 stride 1 and stride 2 and have a general path for any
//! kernel and dilation at stride 1 or 2; other strides use the generic code.

use crate::kernels::quantize::store_requant;
use crate::kernels::requant::{OutBuf, Requant};
use crate::quant::Precision;

pub use crate::kernels::depthwise_f32::{Geometry, Isa};

pub mod generic;

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

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
    let input = &input[..g.in_w * g.in_h];
    let taps = &taps[..g.taps()];
    let mut acc = [0i32; CHUNK + SLACK];
    for oy in 0..g.out_h {
        let mut x = 0;
        while x < g.out_w {
            let n = CHUNK.min(g.out_w - x);
            row(isa, precision, g, input, taps, oy, x, n, &mut acc);
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
/// `acc[n..]` may be overwritten. Exposed for the tests and benchmarks.
#[allow(clippy::too_many_arguments)]
pub fn row(
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
        Isa::Avx2Fma => x86_64::row(g, precision, input, taps, oy, x0, n, acc),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => aarch64::row(g, precision, input, taps, oy, x0, n, acc),
    }
    let _ = precision;
}

#[cfg(test)]
mod tests;
