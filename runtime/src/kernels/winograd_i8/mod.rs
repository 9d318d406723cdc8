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
//! recovers `S` and runs the requantizing epilogue. The Cortex-A72 multiplies with a pair-sum
//! kernel and x86_64 with `vpmaddwd` on channel pairs, each on its own packing of U
//! ([`Products`]).

// Transform matrices index rows, columns and lanes of several arrays at once.
#![allow(clippy::needless_range_loop)]

use crate::cpu::CoreKind;
use crate::error::{invalid, LayerResult};
use crate::kernels::gemm_i8::{self, AlignedBytes, KernelSet, OutKind, OVERREAD};
#[cfg(not(target_arch = "aarch64"))]
use crate::kernels::gemm_i8::{Micro, Tile};
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

/// Whether an output of `w x h` has fewer than two panels of 4x4 tiles: U (36 int16 per
/// weight, 8x the bytes of the int8 weights) is then streamed for one or two partly empty
/// panels of work (ResNet-50's 7x7 layers on x86_64: 2.4 ms by im2col GEMM, 3.4 ms here).
pub fn few_tiles((w, h): (usize, usize)) -> bool {
    w.div_ceil(4) * h.div_ceil(4) < 2 * PANEL
}

/// Input channels per step of the pair-sum kernel, and the unit of channel chunks.
const STEP: usize = 16;

/// How a worker multiplies in the transform domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Products {
    /// The int8 GEMM's `Wide16` kernels on int16 operands (by-element multiply-accumulate;
    /// raw int32 out, the sums wrap as the scheme wants): the Cortex-A53 and other targets.
    Wide,
    /// The pair-sum kernel (`gemm_i8::aarch64::wino16_a72`): the Cortex-A72 (and other
    /// out-of-order ARM cores), where it halves the multiplies.
    Pairs,
    /// `vpmaddwd` on pairs of input channels (`x86_64::products`): x86_64 with AVX2, unless
    /// the generic integer kernels were asked for (`EQ_X86_KERNEL=generic`).
    Madd,
}

impl Products {
    /// What a worker on `core` runs with the integer kernels of `kernels`.
    fn for_core(core: CoreKind, kernels: &KernelSet) -> Products {
        if cfg!(target_arch = "aarch64") && core != CoreKind::CortexA53 {
            return Products::Pairs;
        }
        #[cfg(target_arch = "x86_64")]
        if x86_64::available() && !kernels.for_core(core).is_generic() {
            return Products::Madd;
        }
        let _ = kernels;
        Products::Wide
    }
}

/// A 3x3 stride-1 convolution's weights, transformed and packed for the product kernels the
/// pool's cores run.
#[derive(Debug)]
pub struct WinogradI8 {
    inch: usize,
    outch: usize,
    /// Input channels rounded up to whole steps (zero channels past `inch`).
    cpad: usize,
    /// Channels per chunk (a multiple of [`STEP`]) whose sums stay exact.
    chunk: usize,
    /// `Wide16`: `[ξ][8-channel panel][cpad][8]` int16, then [`OVERREAD`] bytes.
    wide: Option<AlignedBytes>,
    /// Pair sums: `[ξ][chunk][4-channel quad][chunk steps][4][16]` int16 (even channels first
    /// in each step), then [`OVERREAD`] bytes; and each row's pair term `Σ u₂ᵢu₂ᵢ₊₁`,
    /// `[chunk][ξ][quads · 4]`.
    pairs: Option<(AlignedBytes, Vec<i32>)>,
    /// `vpmaddwd`: `[ξ][8-channel panel][cpad / 2][8][2]` int16.
    madd: Option<AlignedBytes>,
    /// The integer kernels this layer was packed for (they decide each worker's products).
    kernels: KernelSet,
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

/// U (`[ξ][m][c]`, `cpad` channels per row) in panels of 8 output channels per ξ,
/// `[ξ][panel][cpad · 8]` int16, row `r` / channel `c` of a panel at `pos(r, c)`; then
/// [`OVERREAD`] bytes.
fn pack_panels(
    u: &[i16],
    outch: usize,
    cpad: usize,
    pos: impl Fn(usize, usize) -> usize,
) -> AlignedBytes {
    let per_panel = cpad * PANEL;
    let per_xi = outch.div_ceil(PANEL) * per_panel;
    let mut buf = AlignedBytes::zeroed(XI * per_xi * 2 + OVERREAD);
    let dst: &mut [i16] = bytemuck::cast_slice_mut(&mut buf.as_mut_slice()[..XI * per_xi * 2]);
    for xi in 0..XI {
        for m in 0..outch {
            let panel = &mut dst[xi * per_xi + m / PANEL * per_panel..][..per_panel];
            for c in 0..cpad {
                panel[pos(m % PANEL, c)] = u[(xi * outch + m) * cpad + c];
            }
        }
    }
    buf
}

/// Position of channel offset `o` (< 16) in a pair-sum step: even channels first.
fn pair_pos(o: usize) -> usize {
    if o.is_multiple_of(2) {
        o / 2
    } else {
        8 + o / 2
    }
}

impl WinogradI8 {
    /// `weights` `[outch][inch][3][3]` int8; packs for the kernels of `kernels`' cores.
    pub fn new(
        precision: Precision,
        weights: &[i8],
        outch: usize,
        inch: usize,
        kernels: &KernelSet,
    ) -> WinogradI8 {
        assert_eq!(weights.len(), outch * inch * 9, "3x3 weights");
        let cpad = inch.div_ceil(STEP) * STEP;
        let chunk = chunk_channels(precision) / STEP * STEP;
        // U = G′ g G′ᵀ of every (output, input) channel: [ξ][m][c], int16.
        let mut u = vec![0i16; XI * outch * cpad];
        for m in 0..outch {
            for c in 0..inch {
                let g = &weights[(m * inch + c) * 9..][..9];
                let mut t = [[0i32; 3]; 6];
                for (i, row) in G.iter().enumerate() {
                    for j in 0..3 {
                        t[i][j] = (0..3).map(|k| row[k] * g[k * 3 + j] as i32).sum();
                    }
                }
                for i in 0..6 {
                    for (j, gj) in G.iter().enumerate() {
                        let v: i32 = (0..3).map(|k| t[i][k] * gj[k]).sum();
                        u[((i * 6 + j) * outch + m) * cpad + c] = v as i16;
                    }
                }
            }
        }
        let uses = |p: Products| {
            [CoreKind::CortexA53, CoreKind::CortexA72, CoreKind::Other]
                .iter()
                .any(|&c| kernels.uses(c) && Products::for_core(c, kernels) == p)
        };
        // `Wide16`: channel c of row r of a panel at c · 8 + r.
        let wide = uses(Products::Wide).then(|| pack_panels(&u, outch, cpad, |r, c| c * PANEL + r));
        let pairs = uses(Products::Pairs).then(|| {
            let quads = outch.div_ceil(4);
            let per_xi = quads * 4 * cpad;
            let mut buf = AlignedBytes::zeroed(XI * per_xi * 2 + OVERREAD);
            let dst: &mut [i16] =
                bytemuck::cast_slice_mut(&mut buf.as_mut_slice()[..XI * per_xi * 2]);
            let chunks = cpad.div_ceil(chunk);
            let mut row_sums = vec![0i32; chunks * XI * quads * 4];
            for xi in 0..XI {
                for (k, c0) in (0..cpad).step_by(chunk).enumerate() {
                    let c1 = (c0 + chunk).min(cpad);
                    let steps = (c1 - c0) / STEP;
                    let base = xi * per_xi + quads * 4 * c0;
                    for m in 0..outch {
                        let row = &u[(xi * outch + m) * cpad..][..cpad];
                        let (q, r) = (m / 4, m % 4);
                        for c in c0..c1 {
                            let (s, o) = ((c - c0) / STEP, (c - c0) % STEP);
                            dst[base + ((q * steps + s) * 4 + r) * STEP + pair_pos(o)] = row[c];
                        }
                        row_sums[(k * XI + xi) * quads * 4 + m] = row[c0..c1]
                            .chunks_exact(2)
                            .fold(0i32, |acc, p| acc.wrapping_add(p[0] as i32 * p[1] as i32));
                    }
                }
            }
            (buf, row_sums)
        });
        // `vpmaddwd`: rows of channel pairs, (c, c + 1) side by side.
        let madd = uses(Products::Madd)
            .then(|| pack_panels(&u, outch, cpad, |r, c| (c / 2 * PANEL + r) * 2 + c % 2));
        WinogradI8 {
            inch,
            outch,
            cpad,
            chunk,
            wide,
            pairs,
            madd,
            kernels: *kernels,
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

    fn chunks(&self) -> usize {
        self.cpad.div_ceil(self.chunk)
    }

    /// Bytes of one tile panel's transformed input in either layout: `[ξ][cpad][8]` int16.
    fn v_bytes(&self) -> usize {
        XI * self.cpad * PANEL * 2 + OVERREAD
    }

    /// Scratch floats per worker: V (and its pair-sum copy with its column terms), the 36
    /// int32 tiles of one product, and the chunk sums.
    pub fn scratch_len(&self) -> usize {
        let pairs = if self.pairs.is_some() {
            self.v_bytes() + self.chunks() * XI * PANEL * 4
        } else {
            0
        };
        (self.v_bytes() + pairs + XI * PANEL * PANEL * 4 + PANEL * PANEL * 16 * 4).div_ceil(4) + 16
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
        // Enough tasks for every worker (several per worker on a big.LITTLE pool, which the
        // big cores claim more of): split the output channels when tiles are few.
        let tasks = if pool.mixed_cores() {
            Pool::TASKS_PER_MIXED_WORKER * threads
        } else {
            2 * threads
        };
        let m_split = tasks.div_ceil(tile_panels).clamp(1, m_panels);
        let m_per_task = m_panels.div_ceil(m_split);
        let m_split = m_panels.div_ceil(m_per_task);
        let task = |t: usize, worker: usize| {
            let mut products = Products::for_core(pool.core_kind(worker), &self.kernels);
            // A layout this net did not pack for (a pool other than the one it was built
            // for): another one computes the same sums.
            if !self.packed(products) {
                products = [Products::Wide, Products::Pairs, Products::Madd]
                    .into_iter()
                    .find(|&p| self.packed(p))
                    .expect("U is packed for at least one product kernel");
            }
            let (tp, ms) = (t % tile_panels, t / tile_panels);
            // SAFETY: each worker index is used by one thread at a time; slices disjoint.
            let mine = unsafe {
                std::slice::from_raw_parts_mut(
                    (scratch_ptr as *mut f32).add(worker * per_worker),
                    per_worker,
                )
            };
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(mine);
            let (v, rest) = bytes.split_at_mut(self.v_bytes());
            let (mbuf, rest) = rest.split_at_mut(XI * PANEL * PANEL * 4);
            let (sums, rest) = rest.split_at_mut(PANEL * PANEL * 16 * 4);
            let sums: &mut [i32] = bytemuck::cast_slice_mut(sums);
            let mbuf: &mut [i32] = bytemuck::cast_slice_mut(mbuf);
            let t0 = tp * PANEL;
            let ntiles = PANEL.min(g.tiles - t0);
            let dest = Dest {
                g: &g,
                outch: self.outch,
                requant,
                kind,
                out: out_ptr as *mut u8,
            };
            transform_input(x, &g, self.inch, self.cpad, t0, ntiles, v);
            let (vp, col_sums) = rest.split_at_mut(if products == Products::Pairs {
                self.v_bytes()
            } else {
                0
            });
            let col_sums: &mut [i32] = bytemuck::cast_slice_mut(
                &mut col_sums[..if products == Products::Pairs {
                    self.chunks() * XI * PANEL * 4
                } else {
                    0
                }],
            );
            if products == Products::Pairs {
                repack_pairs(v, self.cpad, self.chunk, vp, col_sums);
            }
            for mp in ms * m_per_task..m_panels.min((ms + 1) * m_per_task) {
                for (k, c0) in (0..self.cpad).step_by(self.chunk).enumerate() {
                    let c1 = (c0 + self.chunk).min(self.cpad);
                    match products {
                        Products::Wide => self.gemm_wide(mp, c0, c1, v, mbuf),
                        Products::Pairs => self.gemm_pairs(mp, k, c0, c1, vp, col_sums, mbuf),
                        Products::Madd => self.gemm_madd(mp, c0, c1, v, mbuf),
                    }
                    let (first, last) = (c0 == 0, c1 >= self.cpad);
                    // SAFETY: this task writes output channels of panel mp at its own tiles.
                    unsafe {
                        transform_output(
                            mbuf,
                            sums,
                            (first, last),
                            mp * PANEL,
                            (t0, ntiles),
                            &dest,
                        );
                    }
                }
            }
        };
        pool.run(tile_panels * m_split, &task)
            .map_err(|e| invalid(e.to_string()))
    }

    fn packed(&self, p: Products) -> bool {
        match p {
            Products::Wide => self.wide.is_some(),
            Products::Pairs => self.pairs.is_some(),
            Products::Madd => self.madd.is_some(),
        }
    }

    /// U and V of output-channel panel `mp` from input channel `c0` (even) in a packing of
    /// `pack_panels` (`cpad · 8` int16 per panel), each as (start, bytes from one ξ to the
    /// next).
    fn panel_operands(
        &self,
        u: &[u8],
        mp: usize,
        c0: usize,
        v: &[u8],
    ) -> ((*const u8, usize), (*const u8, usize)) {
        let per_panel = self.cpad * PANEL * 2;
        let a = u[mp * per_panel + c0 * PANEL * 2..].as_ptr();
        let b = v[c0 * PANEL * 2..].as_ptr();
        ((a, self.outch.div_ceil(PANEL) * per_panel), (b, per_panel))
    }

    /// As [`Self::gemm_wide`] with `vpmaddwd` on channel pairs (x86_64).
    fn gemm_madd(&self, mp: usize, c0: usize, c1: usize, v: &[u8], mbuf: &mut [i32]) {
        #[cfg(target_arch = "x86_64")]
        {
            let u = self.madd.as_ref().expect("packed for vpmaddwd").as_slice();
            let (a, b) = self.panel_operands(u, mp, c0, v);
            assert!(mbuf.len() >= XI * PANEL * PANEL && v.len() >= XI * self.cpad * PANEL * 2);
            // SAFETY: U was packed (so AVX2 is available, `Products::for_core`); from channel
            // c0 each ξ's panel holds (c1 - c0) · 16 bytes of U and of V; mbuf 36 x 64 int32.
            unsafe { x86_64::products((c1 - c0) / 2, a, b, mbuf.as_mut_ptr(), XI) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (mp, c0, c1, v, mbuf);
            unreachable!("vpmaddwd products run on x86_64 only");
        }
    }

    /// The 36 transform-domain products of output-channel panel `mp` and the tile panel in
    /// `v`, over input channels `c0..c1`, into `mbuf` (`[ξ][8 channels][8 tiles]`, int32), with
    /// the `Wide16` K loop (on aarch64 the Cortex-A53's, all ξ in one call).
    fn gemm_wide(&self, mp: usize, c0: usize, c1: usize, v: &[u8], mbuf: &mut [i32]) {
        let u = self.wide.as_ref().expect("packed for Wide16").as_slice();
        let kp = (c1 - c0) / 2;
        let ((a, per_xi), (b, b_stride)) = self.panel_operands(u, mp, c0, v);
        assert!(mbuf.len() >= XI * PANEL * PANEL);
        #[cfg(target_arch = "aarch64")]
        // SAFETY: the panels hold kp pairs of k plus OVERREAD bytes; mbuf 64 int32 per ξ.
        unsafe {
            gemm_i8::aarch64::wide16_a53_batch(
                kp,
                (a, per_xi),
                (b, b_stride),
                (mbuf.as_mut_ptr(), PANEL * PANEL),
                XI,
            );
        }
        #[cfg(not(target_arch = "aarch64"))]
        for xi in 0..XI {
            let kern = gemm_i8::generic::kernel_wide16(Precision::Int8);
            let tile = raw_tile(
                mbuf[xi * PANEL * PANEL..].as_mut_ptr(),
                PANEL,
                std::ptr::null(),
                std::ptr::null(),
            );
            // SAFETY: the panels hold kp pairs of k plus OVERREAD bytes.
            unsafe {
                let (a, b) = (a.add(xi * per_xi), b.add(xi * b_stride));
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

    /// As [`Self::gemm_wide`] with the pair-sum kernel, on the repacked `vp` and its column
    /// terms (chunk `k`).
    #[allow(clippy::too_many_arguments)]
    fn gemm_pairs(
        &self,
        mp: usize,
        k: usize,
        c0: usize,
        c1: usize,
        vp: &[u8],
        col_sums: &[i32],
        mbuf: &mut [i32],
    ) {
        #[cfg(target_arch = "aarch64")]
        {
            let (u, row_sums) = self.pairs.as_ref().expect("packed for pair sums");
            let quads = self.outch.div_ceil(4);
            let steps = (c1 - c0) / STEP;
            let q0 = 2 * mp;
            let batch = gemm_i8::aarch64::Wino16Batch {
                n: XI,
                a_stride: quads * 4 * self.cpad * 2,
                b_stride: self.cpad * PANEL * 2,
                out_stride: PANEL * PANEL,
                rows_stride: quads * 4,
                cols_stride: PANEL,
                quads: quads.min(q0 + 2) - q0,
                a_quad: steps * 4 * STEP * 2,
                out_quad: 4 * PANEL,
                rows_quad: 4,
                out_row: PANEL,
            };
            let a = u.as_slice()[(quads * 4 * c0 + q0 * steps * 4 * STEP) * 2..].as_ptr();
            let b = vp[c0 * PANEL * 2..].as_ptr();
            let rows = row_sums[k * XI * quads * 4 + q0 * 4..].as_ptr();
            let cols = col_sums[k * XI * PANEL..].as_ptr();
            // SAFETY: the panels hold `steps` steps plus OVERREAD bytes; the batch's strides
            // stay inside U, V, the pair terms and mbuf (36 x 8 x 8).
            unsafe {
                gemm_i8::aarch64::wino16_a72(steps, a, b, mbuf.as_mut_ptr(), rows, cols, &batch)
            };
        }
        #[cfg(not(target_arch = "aarch64"))]
        {
            let _ = (mp, k, c0, c1, vp, col_sums, mbuf);
            unreachable!("pair sums run on aarch64 only");
        }
    }
}

/// A tile row of raw int32 output: `rows` rows of 8 columns at `out`, row stride 8.
#[cfg(not(target_arch = "aarch64"))]
fn raw_tile<'a>(
    out: *mut i32,
    rows: usize,
    row_sums: *const i32,
    col_sums: *const i32,
) -> Tile<'a> {
    const NONE: Requant<'static> = Requant {
        scale_in: &[],
        bias: None,
        act: crate::ops::activation::Activation::None,
        top_scale: 1.0,
        qmax: 127,
    };
    Tile {
        out: out as *mut u8,
        stride: PANEL,
        rows,
        cols: PANEL,
        row0: 0,
        requant: &NONE,
        kind: OutKind::I32,
        row_sums,
        col_sums,
    }
}

/// The pair-sum layout of V (`[ξ][chunk][2 tile quads][chunk steps][4][16]`, even channels
/// first) from the `Wide16` one (`[ξ][cpad][8]`), and the column pair terms `Σ v₂ᵢv₂ᵢ₊₁`
/// of every tile per chunk and ξ (`[chunk][ξ][8]`).
fn repack_pairs(v: &[u8], cpad: usize, chunk: usize, vp: &mut [u8], col_sums: &mut [i32]) {
    let v: &[i16] = bytemuck::cast_slice(&v[..XI * cpad * PANEL * 2]);
    let vp: &mut [i16] = bytemuck::cast_slice_mut(&mut vp[..XI * cpad * PANEL * 2]);
    #[cfg(target_arch = "aarch64")]
    // SAFETY: sizes as documented; NEON is baseline on aarch64.
    unsafe {
        aarch64::repack_pairs(v, cpad, chunk, vp, col_sums)
    }
    #[cfg(not(target_arch = "aarch64"))]
    for xi in 0..XI {
        for (k, c0) in (0..cpad).step_by(chunk).enumerate() {
            let c1 = (c0 + chunk).min(cpad);
            let steps = (c1 - c0) / STEP;
            let base = (xi * cpad + c0) * PANEL;
            for j in 0..PANEL {
                let mut sum = 0i32;
                for c in c0..c1 {
                    let val = v[(xi * cpad + c) * PANEL + j];
                    let (s, o) = ((c - c0) / STEP, (c - c0) % STEP);
                    vp[base + (((j / 4) * steps + s) * 4 + j % 4) * STEP + pair_pos(o)] = val;
                    if o % 2 == 1 {
                        let prev = v[(xi * cpad + c - 1) * PANEL + j];
                        sum = sum.wrapping_add(prev as i32 * val as i32);
                    }
                }
                col_sums[(k * XI + xi) * PANEL + j] = sum;
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
    #[cfg(target_arch = "x86_64")]
    if x86_64::available() {
        // SAFETY: AVX2 is available.
        return unsafe { x86_64::input_transform(x, g, inch, cpad, t0, ntiles, v) };
    }
    #[cfg(not(target_arch = "aarch64"))]
    input_transform(x, g, inch, cpad, t0, ntiles, v)
}

/// Where one call's output tiles go: the geometry, the epilogue and the output itself
/// (`outch` planes of `g.out_w x g.out_h` values of `kind`).
#[derive(Clone, Copy)]
struct Dest<'a> {
    g: &'a Geometry,
    outch: usize,
    requant: &'a Requant<'a>,
    kind: OutKind,
    out: *mut u8,
}

/// The output transform and (after the last chunk) the epilogue of this target, for output
/// channels `m0..m0 + 8` at tiles `t0..t0 + ntiles`.
///
/// # Safety
/// As [`store`].
unsafe fn transform_output(
    mbuf: &[i32],
    sums: &mut [i32],
    (first, last): (bool, bool),
    m0: usize,
    tiles: (usize, usize),
    d: &Dest,
) {
    #[cfg(target_arch = "aarch64")]
    aarch64::output(mbuf, sums, (first, last), m0, tiles, d);
    #[cfg(target_arch = "x86_64")]
    if x86_64::available() {
        return x86_64::output(mbuf, sums, (first, last), m0, tiles, d);
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        output_transform(mbuf, sums, first);
        if last {
            store(sums, m0, tiles, d);
        }
    }
}

/// `V = Bᵀ d B` of every input channel for tiles `t0..t0 + ntiles` (lanes; missing lanes
/// zero) into `v` (`[ξ][cpad][8]` int16).
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
#[inline(always)]
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
#[inline(always)]
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

/// Requantizes the sums of channels `m0..m0+8` (those below `outch`) at tiles `t0..t0 +
/// ntiles` into the output.
///
/// # Safety
/// `d.out` is the whole output; no other task writes these channels at these tiles.
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
#[inline(always)]
unsafe fn store(sums: &[i32], m0: usize, tiles: (usize, usize), d: &Dest) {
    for m in 0..PANEL.min(d.outch - m0) {
        let sum = |l: usize, i: usize, j: usize| sums[(m * PANEL + l) * 16 + i * 4 + j];
        store_tiles(m0 + m, sum, tiles, d);
    }
}

/// The scalar epilogue of output channel `c` at tiles `t0..t0 + ntiles`: `sum(l, i, j)` is the
/// int32 sum of row `i`, column `j` of tile `t0 + l`.
///
/// # Safety
/// As [`store`].
#[inline(always)]
unsafe fn store_tiles(
    c: usize,
    sum: impl Fn(usize, usize, usize) -> i32,
    (t0, ntiles): (usize, usize),
    d: &Dest,
) {
    let Dest {
        g,
        requant,
        kind,
        out,
        ..
    } = *d;
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
#[cfg(target_arch = "x86_64")]
mod x86_64;
