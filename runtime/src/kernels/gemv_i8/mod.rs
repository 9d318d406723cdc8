//! Quantized (INT8 / INT7) matrix-vector product for InnerProduct:
//! `y[o] = Requant::dequant(o, Σ_k W[o][k] · x[k])`, int32 sums, fp32 output (ncnn's int8
//! InnerProduct always dequantizes).
//!
//! # Interface
//! Weights are packed once at load with [`PackedGemvI8::new`] (row-major `num_output x
//! num_input` int8, as in the model). [`gemv_i8`] computes every output; [`gemv_i8_rows`]
//! a range of them, for splitting rows over the pool (ranges aligned to [`ROWS`] waste
//! nothing). Neither allocates. Values must lie in `±precision.qmax()` (never −128).
//!
//! # Packing
//! Rows are taken [`ROWS`] = 4 at a time (the last group padded with zero rows), `num_input`
//! is padded with zeros to a multiple of [`BLOCK`] = 32, and each group stores its rows'
//! 32-value blocks interleaved: block `b` of the group is `row0[32b..32b+32], row1[..],
//! row2[..], row3[..]`. One sequential stream feeds four dot products that share each load
//! of `x`; the padded tail of `x` is copied to a zeroed 32-byte buffer on the stack.
//!
//! # int16 flush intervals (products summed in an int16 lane before widening to int32)
//! * INT8, 2 products (2 · 127² = 32258 ≤ 32767). AVX2: `vpmaddwd` on sign-extended int16
//!   sums each pair straight into int32. NEON: `smull` + `smlal2` (2 products per lane),
//!   then `sadalp` into int32.
//! * INT7, 8 products (8 · 63² = 31752 ≤ 32767). AVX2: `vpmaddubsw` of |x| and
//!   sign(x)·w (pairs, ≤ 7938, never saturates) summed over 4 blocks in int16, then one
//!   `vpmaddwd` with ones. NEON: `smull` + 3 `smlal(2)` per 32-value block, two blocks per
//!   lane (8 products), then `sadalp`.
//!
//! The `extremes_*` test drives every lane to its bound with all values at ±qmax and
//! `num_input` up to 8200.

use crate::kernels::requant::Requant;
use crate::quant::Precision;
use std::ops::Range;

pub use crate::kernels::Isa;

pub(crate) mod generic;

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_64;

/// Rows per packed group.
pub const ROWS: usize = 4;
/// Inputs per packed block.
pub const BLOCK: usize = 32;

/// InnerProduct weights packed for the int8 GEMV (see the module docs).
#[derive(Clone, Debug)]
pub struct PackedGemvI8 {
    data: Vec<i8>,
    num_output: usize,
    num_input: usize,
    precision: Precision,
}

impl PackedGemvI8 {
    /// Packs row-major `w` (`num_output x num_input`). Panics if `w` is shorter.
    pub fn new(w: &[i8], num_output: usize, num_input: usize, precision: Precision) -> Self {
        assert!(w.len() >= num_output * num_input, "weight matrix too short");
        let blocks = num_input.div_ceil(BLOCK);
        let groups = num_output.div_ceil(ROWS);
        let mut data = vec![0i8; groups * blocks * ROWS * BLOCK];
        for o in 0..num_output {
            let (g, r) = (o / ROWS, o % ROWS);
            for (b, chunk) in w[o * num_input..(o + 1) * num_input]
                .chunks(BLOCK)
                .enumerate()
            {
                let at = ((g * blocks + b) * ROWS + r) * BLOCK;
                data[at..at + chunk.len()].copy_from_slice(chunk);
            }
        }
        PackedGemvI8 {
            data,
            num_output,
            num_input,
            precision,
        }
    }

    pub fn num_output(&self) -> usize {
        self.num_output
    }

    pub fn num_input(&self) -> usize {
        self.num_input
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    fn blocks(&self) -> usize {
        self.num_input.div_ceil(BLOCK)
    }

    /// Packed data of row group `g`.
    fn group(&self, g: usize) -> &[i8] {
        let len = self.blocks() * ROWS * BLOCK;
        &self.data[g * len..(g + 1) * len]
    }
}

/// The input vector as the kernels read it: whole blocks in place, the last partial block
/// zero-padded. Crate-private, as [`dot4`]: the SIMD variants trust `blocks`.
pub(crate) struct Input<'a> {
    pub(crate) full: &'a [i8],
    pub(crate) tail: [i8; BLOCK],
    pub(crate) blocks: usize,
}

impl<'a> Input<'a> {
    fn new(x: &'a [i8]) -> Self {
        let whole = x.len() / BLOCK * BLOCK;
        let mut tail = [0i8; BLOCK];
        tail[..x.len() - whole].copy_from_slice(&x[whole..]);
        Input {
            full: &x[..whole],
            tail,
            blocks: x.len().div_ceil(BLOCK),
        }
    }

    /// Block `b` (`b < blocks`) of `x`.
    #[inline]
    pub fn block(&self, b: usize) -> &[i8; BLOCK] {
        if (b + 1) * BLOCK <= self.full.len() {
            self.full[b * BLOCK..(b + 1) * BLOCK].try_into().unwrap()
        } else {
            &self.tail
        }
    }
}

/// `y[o] = requant.dequant(o, dot(W row o, x))` for every output `o`.
pub fn gemv_i8(isa: Isa, w: &PackedGemvI8, x: &[i8], requant: &Requant, y: &mut [f32]) {
    gemv_i8_rows(isa, w, x, requant, 0..w.num_output, y);
}

/// Outputs `rows` only: `y[i]` is output `rows.start + i` (`y.len() == rows.len()`).
pub fn gemv_i8_rows(
    isa: Isa,
    w: &PackedGemvI8,
    x: &[i8],
    requant: &Requant,
    rows: Range<usize>,
    y: &mut [f32],
) {
    assert_eq!(x.len(), w.num_input, "input length");
    assert!(
        rows.start <= rows.end && rows.end <= w.num_output,
        "row range"
    );
    assert_eq!(y.len(), rows.len(), "output length");
    assert!(requant.scale_in.len() >= rows.end, "scale_in too short");
    if let Some(b) = requant.bias {
        assert!(b.len() >= rows.end, "bias too short");
    }
    let input = Input::new(x);
    let mut o = rows.start;
    while o < rows.end {
        let g = o / ROWS;
        let sums = dot4(isa, w.precision, w.group(g), &input);
        let last = ((g + 1) * ROWS).min(rows.end);
        for r in o..last {
            y[r - rows.start] = requant.dequant(r, sums[r - g * ROWS]);
        }
        o = last;
    }
}

/// The four int32 dot products of one packed row group with `x`.
pub(crate) fn dot4(isa: Isa, precision: Precision, group: &[i8], x: &Input) -> [i32; ROWS] {
    assert_eq!(group.len(), x.blocks * ROWS * BLOCK, "packed group size");
    match isa {
        Isa::Generic => generic::dot4(group, x),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `group` checked against `x` above.
        Isa::Avx2Fma | Isa::Avx512 => unsafe { x86_64::dot4(precision, group, x) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above.
        Isa::Neon => unsafe { aarch64::dot4(precision, group, x) },
    }
}

/// Sums for the benchmarks: every output's int32 dot product into `acc`.
pub fn sums_i8(isa: Isa, w: &PackedGemvI8, x: &[i8], acc: &mut [i32]) {
    assert_eq!(x.len(), w.num_input, "input length");
    let input = Input::new(x);
    for (g, out) in acc[..w.num_output].chunks_mut(ROWS).enumerate() {
        let s = dot4(isa, w.precision, w.group(g), &input);
        out.copy_from_slice(&s[..out.len()]);
    }
}

#[cfg(test)]
mod tests;
