//! Winograd F(4x4, 3x3) for 3x3 stride-1 convolutions in INT8 / INT7, exact.
//!
//! `576 · Y = A″ᵀ [(G′ g G′ᵀ) ⊙ (Bᵀ d B)] A″` for a 6x6 input tile `d` and a 3x3 kernel `g`
//! gives a 4x4 output tile `Y` with 36 multiplies per input channel instead of 144, where
//! (the usual points 0, ±1, ±2, ∞, scaled to integers):
//! * `Bᵀ` has integer entries (row sums of |·| ≤ 10), so `V = Bᵀ d B` is within ±100·qmax:
//!   ±12700 for INT8, an int16.
//! * `G′ = diag(24, 24, 24, 24, 24, 6) · G`, integer (row sums ≤ 12): `U = G′ g G′ᵀ` is
//!   within ±144·qmax = ±18288, an int16.
//! * `A″` is `A` with its last row times 4 (undoing the 6 instead of 24), integer.
//!
//! The products `U·V` are exact in int32 and everything after them (the sum over input
//! channels, the output transform) is computed modulo 2³² (wrapping). The true result is
//! `576 · S` with `S` the direct convolution's int32 sum, and `576 = 2⁶ · 9`: from `576·S
//! mod 2³²`, `S mod 2²⁶` follows exactly (shift out the 2⁶, multiply by 9⁻¹ mod 2³²), and
//! that is `S` itself whenever `|S| < 2²⁵`. A sum over `c` channels is bounded by
//! `c · 9 · qmax²`, so channels are taken in chunks of at most 231 (INT8: 231 · 9 · 127² <
//! 2²⁵) or 939 (INT7), each chunk's `S` recovered exactly and the chunks added in int32.
//! The result is bit-identical to the im2col GEMM, at every ±qmax extreme.
//!
//! Structure: U is packed once at load, per output position ξ (36 of them), in the `Wide16`
//! layout of the int8 GEMM (A panels of 8 output channels); per call, 8 output tiles at a
//! time ("a tile panel"): the input transform writes V as one `Wide16` B panel per ξ, the
//! int8 GEMM's `Wide16` micro-kernel multiplies them (raw int32 out), and the output transform
//! recovers `S` and runs the requantizing epilogue.

// Transform matrices index rows, columns and lanes of several arrays at once.
#![allow(clippy::needless_range_loop)]

use crate::cpu::CoreKind;
use crate::error::{invalid, LayerResult};
use crate::kernels::gemm_i8::{self, AlignedBytes, Kernel, Micro, OutKind, Tile, OVERREAD};
use crate::kernels::requant::{OutBuf, Requant};
use crate::pool::Pool;
use crate::quant::Precision;

/// Output positions of the transform domain.
const XI: usize = 36;
/// Tiles per panel and output channels per panel (the `Wide16` kernels' 8 x 8).
const PANEL: usize = 8;

/// `Bᵀ`: input transform.
const BT: [[i32; 6]; 6] = [
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
];
/// `G′`: kernel transform.
const G: [[i32; 3]; 6] = [
    [6, 0, 0],
    [-4, -4, -4],
    [-4, 4, -4],
    [1, 2, 4],
    [1, -2, 4],
    [0, 0, 6],
];
/// `A″ᵀ`: output transform.
const AT: [[i32; 6]; 4] = [
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 4],
];

/// 9⁻¹ modulo 2³².
const INV9: u32 = 0x38E3_8E39;

/// The largest channel chunk whose sums `S` stay below 2²⁵ in magnitude.
pub const fn chunk_channels(p: Precision) -> usize {
    let q = p.qmax() as usize;
    ((1 << 25) - 1) / (9 * q * q)
}

/// `S` from `576 · S mod 2³²`, exact for `|S| < 2²⁵`.
#[inline(always)]
pub fn div576(t: i32) -> i32 {
    (((t as u32 >> 6).wrapping_mul(INV9) << 6) as i32) >> 6
}

/// Whether Winograd serves a convolution of this geometry.
pub fn applies(kernel: (usize, usize), stride: (usize, usize), dilation: (usize, usize)) -> bool {
    kernel == (3, 3) && stride == (1, 1) && dilation == (1, 1)
}

/// The kernels that multiply in the transform domain: the int8 GEMM's `Wide16` kernels on
/// int16 operands with raw int32 output (their sums wrap, as the scheme wants).
fn wide16_kernel(core: CoreKind) -> &'static Kernel {
    #[cfg(target_arch = "aarch64")]
    {
        let _ = core;
        gemm_i8::aarch64::kernels(Precision::Int8).0
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        let _ = core;
        gemm_i8::generic::kernel_wide16(Precision::Int8)
    }
}

/// A 3x3 stride-1 convolution's weights, transformed and packed.
#[derive(Debug)]
pub struct WinogradI8 {
    precision: Precision,
    inch: usize,
    outch: usize,
    /// Input channels rounded up to pairs (the kernels' K step).
    cpad: usize,
    /// `[ξ][output-channel panel][cpad][8]` int16, then [`OVERREAD`] bytes.
    u: AlignedBytes,
}

/// Output tile geometry of one call.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
    pad_left: usize,
    pad_top: usize,
    tiles_x: usize,
    tiles: usize,
}

impl WinogradI8 {
    /// `weights` `[outch][inch][3][3]` int8.
    pub fn new(precision: Precision, weights: &[i8], outch: usize, inch: usize) -> WinogradI8 {
        assert_eq!(weights.len(), outch * inch * 9, "3x3 weights");
        let cpad = inch.div_ceil(2) * 2;
        let panels = outch.div_ceil(PANEL);
        let per_xi = panels * cpad * PANEL;
        let mut u = AlignedBytes::zeroed(XI * per_xi * 2 + OVERREAD);
        let dst: &mut [i16] = bytemuck::cast_slice_mut(&mut u.as_mut_slice()[..XI * per_xi * 2]);
        for m in 0..outch {
            for c in 0..inch {
                let g = &weights[(m * inch + c) * 9..][..9];
                // t = G′ g (6x3), then U = t G′ᵀ (6x6).
                let mut t = [[0i32; 3]; 6];
                for (i, row) in G.iter().enumerate() {
                    for j in 0..3 {
                        t[i][j] = (0..3).map(|k| row[k] * g[k * 3 + j] as i32).sum();
                    }
                }
                for i in 0..6 {
                    for (j, gj) in G.iter().enumerate() {
                        let v: i32 = (0..3).map(|k| t[i][k] * gj[k]).sum();
                        let xi = i * 6 + j;
                        let at = xi * per_xi + (m / PANEL) * cpad * PANEL + c * PANEL + m % PANEL;
                        dst[at] = v as i16;
                    }
                }
            }
        }
        WinogradI8 {
            precision,
            inch,
            outch,
            cpad,
            u,
        }
    }

    fn geometry(
        &self,
        w: usize,
        h: usize,
        out_w: usize,
        out_h: usize,
        pads: (usize, usize),
    ) -> Geometry {
        let tiles_x = out_w.div_ceil(4);
        Geometry {
            w,
            h,
            out_w,
            out_h,
            pad_left: pads.0,
            pad_top: pads.1,
            tiles_x,
            tiles: tiles_x * out_h.div_ceil(4),
        }
    }

    /// Bytes of one tile panel's transformed input: `[ξ][cpad][8]` int16.
    fn v_bytes(&self) -> usize {
        XI * self.cpad * PANEL * 2
    }

    /// Scratch floats per worker.
    pub fn scratch_len(&self) -> usize {
        // V, the 36 int32 tiles of one GEMM, and the chunk sums.
        (self.v_bytes() + OVERREAD + XI * PANEL * PANEL * 4 + PANEL * PANEL * 16 * 4).div_ceil(4)
            + 16
    }

    /// `out` (`outch x out_h x out_w`) = epilogue(conv(x)) for an int8 input `x` (`inch x h x
    /// w`) with pads (left, top); output sizes are those of a 3x3 stride-1 convolution.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        x: &[i8],
        w: usize,
        h: usize,
        out_size: (usize, usize),
        pads: (usize, usize),
        requant: &Requant,
        out: OutBuf,
        pool: &Pool,
        scratch: &mut [f32],
    ) -> LayerResult<()> {
        let (out_w, out_h) = out_size;
        let g = self.geometry(w, h, out_w, out_h, pads);
        if x.len() != self.inch * w * h || out.len() != self.outch * out_w * out_h {
            return Err(invalid(
                "winograd convolution sizes do not match the shapes",
            ));
        }
        if requant.scale_in.len() < self.outch || requant.bias.is_some_and(|b| b.len() < self.outch)
        {
            return Err(invalid(
                "winograd convolution: fewer scales or biases than outputs",
            ));
        }
        let per_worker = self.scratch_len();
        let threads = pool.threads();
        if scratch.len() < per_worker * threads {
            return Err(invalid("winograd convolution scratch too small"));
        }
        let (kind, out_ptr) = match out {
            OutBuf::F32(o) => (OutKind::F32, o.as_mut_ptr() as usize),
            OutBuf::I8(o) => (OutKind::I8, o.as_mut_ptr() as usize),
        };
        let scratch_ptr = scratch.as_mut_ptr() as usize;
        let tile_panels = g.tiles.div_ceil(PANEL);
        let m_panels = self.outch.div_ceil(PANEL);
        // Enough tasks for every worker: split the output channels when tiles are few.
        let m_split = (2 * threads).div_ceil(tile_panels).clamp(1, m_panels);
        let m_per_task = m_panels.div_ceil(m_split);
        let m_split = m_panels.div_ceil(m_per_task);
        let task = |t: usize, worker: usize| {
            let kern = wide16_kernel(pool.core_kind(worker));
            let (tp, ms) = (t % tile_panels, t / tile_panels);
            // SAFETY: each worker index is used by one thread at a time; slices disjoint.
            let mine = unsafe {
                std::slice::from_raw_parts_mut(
                    (scratch_ptr as *mut f32).add(worker * per_worker),
                    per_worker,
                )
            };
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(mine);
            let (v, rest) = bytes.split_at_mut(self.v_bytes() + OVERREAD);
            let (mbuf, rest) = rest.split_at_mut(XI * PANEL * PANEL * 4);
            let sums: &mut [i32] = bytemuck::cast_slice_mut(&mut rest[..PANEL * PANEL * 16 * 4]);
            let mbuf: &mut [i32] = bytemuck::cast_slice_mut(mbuf);
            let t0 = tp * PANEL;
            let ntiles = PANEL.min(g.tiles - t0);
            let out = out_ptr as *mut u8;
            transform_input(x, &g, self.inch, self.cpad, t0, ntiles, v);
            for mp in ms * m_per_task..m_panels.min((ms + 1) * m_per_task) {
                // Chunks of whole pairs (the kernels' step) whose sums stay exact.
                let chunk = chunk_channels(self.precision) / 2 * 2;
                let mut c0 = 0;
                while c0 < self.inch {
                    let c1 = (c0 + chunk).min(self.cpad);
                    self.gemm_chunk(kern, mp, c0, c1, v, mbuf);
                    let (first, last) = (c0 == 0, c1 >= self.inch);
                    // SAFETY: this task writes output channels of panel mp at its own tiles.
                    unsafe {
                        transform_output(
                            mbuf,
                            sums,
                            (first, last),
                            &g,
                            mp * PANEL,
                            self.outch,
                            (t0, ntiles),
                            requant,
                            kind,
                            out,
                        );
                    }
                    c0 = c1;
                }
            }
        };
        pool.run(tile_panels * m_split, &task)
            .map_err(|e| invalid(e.to_string()))
    }

    /// The 36 transform-domain products of output-channel panel `mp` and the tile panel in
    /// `v`, over input channels `c0..c1`, into `mbuf` (`[ξ][8 channels][8 tiles]`, int32).
    fn gemm_chunk(
        &self,
        kern: &Kernel,
        mp: usize,
        c0: usize,
        c1: usize,
        v: &[u8],
        mbuf: &mut [i32],
    ) {
        let per_xi = self.outch.div_ceil(PANEL) * self.cpad * PANEL * 2;
        let u = self.u.as_slice();
        let none = Requant {
            scale_in: &[],
            bias: None,
            act: crate::ops::activation::Activation::None,
            top_scale: 1.0,
            qmax: 127,
        };
        let kp = (c1 - c0) / 2;
        for xi in 0..XI {
            let a = u[xi * per_xi + (mp * self.cpad + c0) * PANEL * 2..].as_ptr();
            let b = v[(xi * self.cpad + c0) * PANEL * 2..].as_ptr();
            let out = mbuf[xi * PANEL * PANEL..].as_mut_ptr() as *mut u8;
            let tile = Tile {
                out,
                stride: PANEL,
                rows: PANEL,
                cols: PANEL,
                row0: 0,
                requant: &none,
                kind: OutKind::I32,
                row_sums: std::ptr::null(),
                col_sums: std::ptr::null(),
            };
            // SAFETY: the panels hold kp pairs of k plus OVERREAD bytes.
            unsafe {
                match kern.micro {
                    Micro::Fused(f) => f(kp, a, b, 1, &tile),
                    Micro::Acc(f) => {
                        let mut acc = [0i32; gemm_i8::MR_MAX * gemm_i8::NR_MAX];
                        f(kp, a, b, &mut acc);
                        gemm_i8::store_acc(&acc, &tile, false);
                    }
                }
            }
        }
    }
}

/// The input transform of this target (NEON on aarch64).
fn transform_input(
    x: &[i8],
    g: &Geometry,
    inch: usize,
    cpad: usize,
    t0: usize,
    ntiles: usize,
    v: &mut [u8],
) {
    #[cfg(target_arch = "aarch64")]
    {
        let v: &mut [i16] = bytemuck::cast_slice_mut(&mut v[..XI * cpad * PANEL * 2]);
        // SAFETY: sizes as documented; NEON is baseline on aarch64.
        unsafe { aarch64::input_transform(x, g, inch, cpad, t0, ntiles, v) }
    }
    #[cfg(not(target_arch = "aarch64"))]
    input_transform(x, g, inch, cpad, t0, ntiles, v)
}

/// The output transform and (after the last chunk) the epilogue of this target.
///
/// # Safety
/// As [`store`].
#[allow(clippy::too_many_arguments)]
unsafe fn transform_output(
    mbuf: &[i32],
    sums: &mut [i32],
    (first, last): (bool, bool),
    g: &Geometry,
    m0: usize,
    outch: usize,
    (t0, ntiles): (usize, usize),
    requant: &Requant,
    kind: OutKind,
    out: *mut u8,
) {
    #[cfg(target_arch = "aarch64")]
    aarch64::output(
        mbuf, sums, first, last, g, m0, outch, t0, ntiles, requant, kind, out,
    );
    #[cfg(not(target_arch = "aarch64"))]
    {
        output_transform(mbuf, sums, first);
        if last {
            store(sums, g, m0, outch, t0, ntiles, requant, kind, out);
        }
    }
}

/// `V = Bᵀ d B` of every input channel for tiles `t0..t0 + ntiles` (lanes; missing lanes
/// zero) into `v` (`[ξ][cpad][8]` int16).
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
fn input_transform(
    x: &[i8],
    g: &Geometry,
    inch: usize,
    cpad: usize,
    t0: usize,
    ntiles: usize,
    v: &mut [u8],
) {
    let v: &mut [i16] = bytemuck::cast_slice_mut(&mut v[..XI * cpad * PANEL * 2]);
    // Tile origins in input coordinates.
    let origin: [(isize, isize); PANEL] = std::array::from_fn(|j| {
        let t = t0 + j.min(ntiles - 1);
        let (ty, tx) = (t / g.tiles_x, t % g.tiles_x);
        (
            (ty * 4) as isize - g.pad_top as isize,
            (tx * 4) as isize - g.pad_left as isize,
        )
    });
    let plane = g.w * g.h;
    for c in 0..cpad {
        let mut d = [[[0i16; PANEL]; 6]; 6];
        if c < inch {
            let src = &x[c * plane..(c + 1) * plane];
            for (j, &(y0, x0)) in origin.iter().enumerate().take(ntiles) {
                for (r, row) in d.iter_mut().enumerate() {
                    let y = y0 + r as isize;
                    if y < 0 || y >= g.h as isize {
                        continue;
                    }
                    let line = &src[y as usize * g.w..][..g.w];
                    for (cc, cell) in row.iter_mut().enumerate() {
                        let xx = x0 + cc as isize;
                        if xx >= 0 && xx < g.w as isize {
                            cell[j] = line[xx as usize] as i16;
                        }
                    }
                }
            }
        }
        // t = Bᵀ d (rows), then V = t B (columns): lanes are tiles.
        let mut t = [[[0i16; PANEL]; 6]; 6];
        for (i, bt) in BT.iter().enumerate() {
            for col in 0..6 {
                let mut acc = [0i16; PANEL];
                for (k, &b) in bt.iter().enumerate() {
                    if b != 0 {
                        for l in 0..PANEL {
                            acc[l] += b as i16 * d[k][col][l];
                        }
                    }
                }
                t[i][col] = acc;
            }
        }
        for i in 0..6 {
            for (j, bt) in BT.iter().enumerate() {
                let mut acc = [0i16; PANEL];
                for (k, &b) in bt.iter().enumerate() {
                    if b != 0 {
                        for l in 0..PANEL {
                            acc[l] += b as i16 * t[i][k][l];
                        }
                    }
                }
                let xi = i * 6 + j;
                v[(xi * cpad + c) * PANEL..][..PANEL].copy_from_slice(&acc);
            }
        }
    }
}

/// Output transform of the 36 int32 tiles in `mbuf` into `sums` (`[8 channels][8 tiles][16]`):
/// `S = div576(A″ᵀ M A″)`, added to `sums` unless `first`.
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
fn output_transform(mbuf: &[i32], sums: &mut [i32], first: bool) {
    for m in 0..PANEL {
        // M[ξ] for this channel, lanes = tiles.
        let mx = |xi: usize| -> [i32; PANEL] {
            std::array::from_fn(|l| mbuf[(xi * PANEL + m) * PANEL + l])
        };
        let mut t = [[[0i32; PANEL]; 6]; 4];
        for (i, at) in AT.iter().enumerate() {
            for col in 0..6 {
                let mut acc = [0i32; PANEL];
                for (k, &a) in at.iter().enumerate() {
                    if a != 0 {
                        let row = mx(k * 6 + col);
                        for l in 0..PANEL {
                            acc[l] = acc[l].wrapping_add(a.wrapping_mul(row[l]));
                        }
                    }
                }
                t[i][col] = acc;
            }
        }
        for i in 0..4 {
            for (j, at) in AT.iter().enumerate() {
                let mut acc = [0i32; PANEL];
                for (k, &a) in at.iter().enumerate() {
                    if a != 0 {
                        for l in 0..PANEL {
                            acc[l] = acc[l].wrapping_add(a.wrapping_mul(t[i][k][l]));
                        }
                    }
                }
                for l in 0..PANEL {
                    let s = &mut sums[(m * PANEL + l) * 16 + i * 4 + j];
                    let v = div576(acc[l]);
                    *s = if first { v } else { s.wrapping_add(v) };
                }
            }
        }
    }
}

/// Requantizes the sums of channels `m0..m0+8` (those below `outch`) at tiles `t0..` into the
/// output.
///
/// # Safety
/// `out` is the whole output (`outch` planes of `g.out_w x g.out_h`, of `kind`); no other
/// task writes these channels at these tiles.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
unsafe fn store(
    sums: &[i32],
    g: &Geometry,
    m0: usize,
    outch: usize,
    t0: usize,
    ntiles: usize,
    requant: &Requant,
    kind: OutKind,
    out: *mut u8,
) {
    for m in 0..PANEL.min(outch - m0) {
        let sum = |l: usize, i: usize, j: usize| sums[(m * PANEL + l) * 16 + i * 4 + j];
        store_tiles(m0 + m, sum, g, t0, ntiles, requant, kind, out);
    }
}

/// The scalar epilogue of output channel `c` at tiles `t0..t0 + ntiles`: `sum(l, i, j)` is the
/// int32 sum of row `i`, column `j` of tile `t0 + l`.
///
/// # Safety
/// As [`store`].
#[allow(clippy::too_many_arguments)]
unsafe fn store_tiles(
    c: usize,
    sum: impl Fn(usize, usize, usize) -> i32,
    g: &Geometry,
    t0: usize,
    ntiles: usize,
    requant: &Requant,
    kind: OutKind,
    out: *mut u8,
) {
    let plane = g.out_w * g.out_h;
    for l in 0..ntiles {
        let t = t0 + l;
        let (ty, tx) = (t / g.tiles_x, t % g.tiles_x);
        for i in 0..4.min(g.out_h - ty * 4) {
            for j in 0..4.min(g.out_w - tx * 4) {
                let s = sum(l, i, j);
                let at = c * plane + (ty * 4 + i) * g.out_w + tx * 4 + j;
                match kind {
                    OutKind::I8 => *(out as *mut i8).add(at) = requant.requant(c, s),
                    _ => *(out as *mut f32).add(at) = requant.dequant(c, s),
                }
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(test)]
mod tests;
