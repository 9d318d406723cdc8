//! Winograd convolution for 3x3, stride 1, dilation 1 (fp32): F(2,3), F(4,3) or F(6,3)
//! per layer ([`transforms`] has the matrices).
//!
//! The output is cut into `m x m` tiles; tile `(ty, tx)` reads the `α x α` input window at
//! `(ty·m − pad_top, tx·m − pad_left)` (`α = m + 2`). Per tile and input channel the window
//! is transformed to `V = Bᵀ d B`; per output channel the sum over input channels of
//! `U ⊙ V` (`U = G g Gᵀ`, the filter transformed at load) is transformed back with
//! `Y = Aᵀ M A`. The sum over channels at each of the `α²` positions `t` is a matrix product
//! `M_t [outch x tiles] = U_t [outch x inch] · V_t [inch x tiles]`: `α²` GEMMs, run on the
//! fp32 GEMM's micro-kernels (`gemm_f32`, the per-core variant for each worker).
//!
//! Data flow, per block of `nb` tiles (a task; several run in parallel on the pool):
//! 1. Input transform, four tiles at a time in the four lanes of [`lanes::F4`] (eight in
//!    AVX registers on x86_64, `avx.rs`): each tile
//!    row is loaded as vectors and transposed so lanes hold tiles, the 1-D transform runs
//!    along rows and then along columns, and the results go straight into the packed B
//!    panels (`V[t][panel][k][j]`, k-major, `nr` tiles per panel) the micro-kernels read.
//!    Tiles whose window crosses the input's border are first copied with the padding
//!    value into a small local window; the others are read in place.
//! 2. For each panel of `mr` output channels: the `α²` micro-kernel calls per tile panel
//!    over the whole K (= inch) write `M[t][r][tile]` into the worker's scratch (≤ L1 size
//!    per channel panel), then the output transform (again four tiles per vector) adds the
//!    bias, applies the activation (ReLU / LeakyReLU / Clip vectorised, others per value)
//!    and stores the tiles' rows straight into the output (border tiles through a local
//!    tile, clipped).
//!
//! No allocation per call: the worker scratch (`scratch_len`) holds V and M.
//!
//! Choice of `m` ([`choose`]): a cost model of the three transforms and the GEMM (tile
//! padding to whole tiles and whole `nr` panels included) against the im2col GEMM, from the
//! output size when the model file gives it (ncnn's shape hints), else by channels as ncnn
//! does (F(6,3) up to 128 channels, F(4,3) above). `EQ_WINOGRAD=off|f23|f43|f63` overrides.
//!
//! Accuracy: Winograd reorders and rescales the sums. Its error bound grows with K (like any
//! dot product) times a constant per variant that grows with the transforms' entries
//! (F(2,3) ≈ 1, F(4,3) ≈ 10, F(6,3) ≈ 100 times the direct product's, measured for random
//! data in `tests.rs`), which is why F(6,3) is kept for the smaller channel counts.

// Index loops read closest to the transforms' formulas.
#![allow(clippy::needless_range_loop)]

#[cfg(target_arch = "x86_64")]
mod avx;
pub mod lanes;
#[cfg(target_arch = "aarch64")]
mod neon;
pub(crate) mod transforms;

use crate::error::{invalid, LayerResult};
use crate::kernels::gemm_f32::{Kernel, MicroKernel, Micros, Panels, Tile, TileAct, MR_MAX};
use crate::ops::activation::Activation;
use crate::pool::{Pool, SharedMut};
use lanes::{transpose, zip, F4};
pub use transforms::Variant;

/// Floats of V (the transformed input block) a worker aims to keep: fits the A53's L2
/// with the U panels streaming past it.
const V_BUDGET: usize = 48 * 1024;
/// Most input channels F(6,3) is used for (ncnn's rule as well). Above, even one block of
/// `nr` tiles holds `64 · nr · inch` floats of V, more than the L2 keeps while the GEMM walks
/// the output channels over it (the cost model counts operations, not that): 56x56x256 ->
/// 256 on the x86_64 host took 12.4 ms by F(6,3), 9.3 ms by F(4,3). It also keeps F(6,3)'s
/// larger rounding error away from the longest sums.
const F63_INCH_MAX: usize = 128;
/// Most tiles per block.
const NB_MAX: usize = 64;
/// Widest transform row in floats (α rounded up to whole vectors).
const ROW: usize = 8;
/// Most tiles one group transform call handles.
const LANES_MAX: usize = 8;

/// Zero biases for the transform-domain products (the bias is added after the output
/// transform).
static ZEROS: [f32; MR_MAX] = [0.0; MR_MAX];

/// Which algorithm a 3x3 stride-1 convolution uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// im2col + GEMM.
    Gemm,
    Winograd(Variant),
}

/// The `EQ_WINOGRAD` override: `off` (im2col GEMM everywhere), `f23`, `f43` or `f63`
/// (that variant for every eligible layer); unset or anything else: the cost model.
pub fn env_override() -> Option<Choice> {
    match std::env::var("EQ_WINOGRAD")
        .ok()?
        .to_ascii_lowercase()
        .as_str()
    {
        "off" | "0" | "none" | "gemm" => Some(Choice::Gemm),
        "f23" => Some(Choice::Winograd(Variant::F23)),
        "f43" => Some(Choice::Winograd(Variant::F43)),
        "f63" => Some(Choice::Winograd(Variant::F63)),
        _ => None,
    }
}

/// Columns a GEMM with `panels` computes for `n` (whole panels, a narrow last one when the
/// remainder fits it).
fn padded(n: usize, panels: Panels) -> usize {
    let full = n / panels.nr * panels.nr;
    if full == n {
        n
    } else {
        full + panels.width(n / panels.nr, n)
    }
}

/// Modelled cost (arbitrary units, `fmla`-equivalents) of one convolution by `choice`, with
/// the GEMM kernel's panel layout (columns are padded to whole panels).
pub fn cost(
    choice: Choice,
    inch: usize,
    outch: usize,
    out_w: usize,
    out_h: usize,
    panels: Panels,
) -> f64 {
    let (k, oc) = (inch as f64, outch as f64);
    match choice {
        Choice::Gemm => {
            let n = padded(out_w * out_h, panels);
            // 9K x N panel packing plus the product.
            9.0 * k * n as f64 * (oc / 4.0 + 0.5)
        }
        Choice::Winograd(v) => {
            let (m, a) = (v.m(), v.alpha());
            let tiles = out_w.div_ceil(m) * out_h.div_ceil(m);
            let cols = padded(tiles, panels);
            let t = (a * a) as f64;
            // Per transformed element about one operation for each transform; the GEMM's
            // per-call overhead ~ 8 steps' worth per micro-kernel call.
            let gemm = t * cols as f64 * oc * (k + 8.0) / 4.0;
            let input = t * tiles as f64 * k * 1.5;
            let output = t * tiles as f64 * oc * 1.0;
            gemm + input + output
        }
    }
}

/// The algorithm for a 3x3 stride-1 dilation-1 convolution: by [`cost`] when the output size
/// is known, else by channels as ncnn chooses.
pub fn choose(
    inch: usize,
    outch: usize,
    out_size: Option<(usize, usize)>,
    panels: Panels,
) -> Choice {
    if let Some(c) = env_override() {
        return c;
    }
    match out_size {
        Some((w, h)) if w > 0 && h > 0 => {
            let mut best = (Choice::Gemm, cost(Choice::Gemm, inch, outch, w, h, panels));
            for v in Variant::ALL
                .into_iter()
                .filter(|&v| v != Variant::F63 || inch <= F63_INCH_MAX)
            {
                let c = cost(Choice::Winograd(v), inch, outch, w, h, panels);
                if c < best.1 {
                    best = (Choice::Winograd(v), c);
                }
            }
            best.0
        }
        _ if inch < 8 && outch < 8 => Choice::Gemm,
        _ if inch <= 128 && outch <= 128 => Choice::Winograd(Variant::F63),
        _ => Choice::Winograd(Variant::F43),
    }
}

/// A 3x3 stride-1 convolution's filters transformed for one variant and packed for one GEMM
/// kernel family, with the bias and the activation.
#[derive(Debug)]
pub struct Winograd {
    variant: Variant,
    kernel: Kernel,
    inch: usize,
    outch: usize,
    /// `U_t` for every position `t`, each packed as the GEMM's A panels: element
    /// `(oc, ic)` of position `t` at `((t * panels + oc / mr) * inch + ic) * mr + oc % mr`;
    /// rows past `outch` are zero.
    u: Vec<f32>,
    bias: Vec<f32>,
    act: Activation,
    pad_value: f32,
    /// The group transforms (the portable ones in tests that compare them).
    transforms: Transforms,
}

/// Geometry of one call.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub w: usize,
    pub h: usize,
    pub out_w: usize,
    pub out_h: usize,
    pub pad_left: usize,
    pub pad_top: usize,
}

impl Geometry {
    fn tiles(&self, m: usize) -> (usize, usize) {
        (self.out_w.div_ceil(m), self.out_h.div_ceil(m))
    }
}

/// The α² transform-domain products of one output channel panel and one tile panel:
/// position `t`'s A panel at `a + t * a_step`, B panel at `b + t * b_step`, output row `r`
/// at `out + t * nr + r * row_stride` (the M layout), starting from the bias at position
/// `bias_t` and from zero elsewhere.
///
/// # Safety
/// Every panel and row valid for the kernel's sizes; the kernel is this machine's.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
unsafe fn products(
    micro: MicroKernel,
    k: usize,
    mut a: *const f32,
    a_step: usize,
    mut b: *const f32,
    b_step: usize,
    mut out: *mut f32,
    nr: usize,
    row_stride: usize,
    positions: usize,
    bias_t: usize,
    bias: *const f32,
) {
    let mut tile = Tile {
        rows: [out; MR_MAX],
        accumulate: false,
        bias: ZEROS.as_ptr(),
        act: TileAct::None,
    };
    for t in 0..positions {
        for (r, row) in tile.rows.iter_mut().enumerate() {
            *row = out.wrapping_add(r * row_stride);
        }
        tile.bias = if t == bias_t { bias } else { ZEROS.as_ptr() };
        micro(k, a, b, &tile);
        a = a.add(a_step);
        b = b.add(b_step);
        out = out.add(nr);
    }
}

/// Where a tile's input window (or output tile) is: rows `stride` floats apart.
#[derive(Clone, Copy)]
struct Window {
    ptr: *const f32,
    stride: usize,
}

#[derive(Clone, Copy)]
struct Dest {
    ptr: *mut f32,
    stride: usize,
}

impl Winograd {
    /// `weights` `[outch][inch][3][3]`, `bias` `outch` values.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        variant: Variant,
        kernel: Kernel,
        weights: &[f32],
        bias: Option<&[f32]>,
        outch: usize,
        inch: usize,
        act: Activation,
        pad_value: f32,
    ) -> Winograd {
        assert_eq!(
            weights.len(),
            outch * inch * 9,
            "weights must be outch x inch x 3 x 3"
        );
        let a = variant.alpha();
        let mr = kernel.mr;
        let panels = outch.div_ceil(mr);
        let mut u = vec![0.0f32; a * a * panels * inch * mr];
        for oc in 0..outch {
            for ic in 0..inch {
                let g = &weights[(oc * inch + ic) * 9..][..9];
                let t_vals = variant.transform_filter(g);
                for (t, &v) in t_vals.iter().enumerate() {
                    u[((t * panels + oc / mr) * inch + ic) * mr + oc % mr] = v as f32;
                }
            }
        }
        let mut padded_bias = vec![0.0; panels * mr];
        if let Some(b) = bias {
            padded_bias[..outch].copy_from_slice(&b[..outch]);
        }
        Winograd {
            variant,
            kernel,
            inch,
            outch,
            u,
            bias: padded_bias,
            act,
            pad_value,
            transforms: Transforms::native(kernel.panels()),
        }
    }

    /// The same layer on the portable transforms (tests compare both).
    pub fn with_portable_transforms(mut self) -> Winograd {
        self.transforms = Transforms::Portable;
        self
    }

    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// Tiles per block for this layer (a multiple of the kernel's `nr`).
    fn block_tiles(&self, tiles: usize) -> usize {
        let a = self.variant.alpha();
        let nr = self.kernel.nr;
        let fit = (V_BUDGET / (a * a * self.inch.max(1))).clamp(nr, NB_MAX) / nr * nr;
        fit.min(tiles.div_ceil(nr) * nr).max(nr)
    }

    /// Scratch floats one worker needs for an output of `out_w x out_h`.
    pub fn scratch_len(&self, out_w: usize, out_h: usize) -> usize {
        let m = self.variant.m();
        let tiles = out_w.div_ceil(m) * out_h.div_ceil(m);
        let nb = self.block_tiles(tiles);
        let a2 = self.variant.alpha().pow(2);
        a2 * nb * (self.inch + self.kernel.mr)
    }

    /// `input` `inch x h x w` -> `output` `outch x out_h x out_w`. `scratch` holds
    /// `pool.threads()` slices of `scratch_len(out_w, out_h)` floats.
    pub fn run(
        &self,
        input: &[f32],
        g: &Geometry,
        output: &mut [f32],
        pool: &Pool,
        scratch: &mut [f32],
    ) -> LayerResult<()> {
        if input.len() != self.inch * g.w * g.h || output.len() != self.outch * g.out_w * g.out_h {
            return Err(invalid("winograd: input or output size does not match"));
        }
        let per_worker = self.scratch_len(g.out_w, g.out_h);
        let threads = pool.threads();
        if scratch.len() < per_worker * threads {
            return Err(invalid("winograd scratch too small"));
        }
        if g.out_w == 0 || g.out_h == 0 || self.outch == 0 {
            return Ok(());
        }
        let m = self.variant.m();
        let (tiles_x, tiles_y) = g.tiles(m);
        let tiles = tiles_x * tiles_y;
        let nb = self.block_tiles(tiles);
        let blocks = tiles.div_ceil(nb);
        let panels = self.outch.div_ceil(self.kernel.mr);
        // Few blocks: split the output channels too, so every worker has work (each such
        // task transforms its block's input again).
        let groups = if blocks >= 2 * threads || threads == 1 {
            1
        } else {
            (2 * threads).div_ceil(blocks).min(panels)
        };
        let per_group = panels.div_ceil(groups);
        let groups = panels.div_ceil(per_group);
        let out = SharedMut::new(output);
        // Tasks writing one V by channels must not spill into each other's rows: a group
        // transform writes all its lanes, past a narrow panel's last column into the next
        // channel's row (harmless when one task writes the channels in order).
        let lanes = if self.transforms == Transforms::Avx {
            8
        } else {
            4
        };
        let wide_panels = self
            .kernel
            .panels()
            .tails()
            .iter()
            .all(|&t| t == 0 || t >= lanes);
        if groups > 1 && blocks <= threads && wide_panels {
            return self.run_shared(
                input,
                g,
                pool,
                &mut scratch[..per_worker * threads],
                &out,
                groups,
            );
        }
        let scratch = SharedMut::new(&mut scratch[..per_worker * threads]);
        let task = |t: usize, worker: usize| {
            let (b, grp) = (t % blocks, t / blocks);
            // SAFETY: each worker index is used by one thread at a time.
            let buf = unsafe { scratch.slice(worker * per_worker, per_worker) };
            let micros = self.kernel.micros_for(pool.core_kind(worker));
            let block = Block::new(b * nb, nb.min(tiles - b * nb), nb, tiles_x);
            let p0 = grp * per_group;
            let p1 = panels.min(p0 + per_group);
            let mut local = Local([[0.0; ROW * ROW]; LANES_MAX]);
            self.run_block(input, g, &block, p0..p1, micros, buf, &mut local, &out);
        };
        pool.run(blocks * groups, &task)
            .map_err(|e| invalid(e.to_string()))
    }

    /// `run` with fewer blocks than workers, split by output channel groups: each block's
    /// input is transformed once, by all workers (split by input channels), into the V part
    /// of scratch slice `block`, and then the groups' tasks read it (the tasks of the plain
    /// path would each transform their block's whole input again).
    fn run_shared(
        &self,
        input: &[f32],
        g: &Geometry,
        pool: &Pool,
        scratch: &mut [f32],
        out: &SharedMut<f32>,
        groups: usize,
    ) -> LayerResult<()> {
        let threads = pool.threads();
        let per_worker = scratch.len() / threads;
        let (tiles_x, tiles_y) = g.tiles(self.variant.m());
        let tiles = tiles_x * tiles_y;
        let nb = self.block_tiles(tiles);
        let blocks = tiles.div_ceil(nb);
        let k = self.inch;
        let v_len = self.variant.alpha().pow(2) * nb * k;
        assert!(blocks <= threads && v_len <= per_worker);
        // An address, not a pointer, so the task closures are Sync.
        let base = scratch.as_mut_ptr() as usize;
        let chunks = (2 * threads).div_ceil(blocks).min(k);
        let per_chunk = k.div_ceil(chunks);
        let chunks = k.div_ceil(per_chunk);
        let block_at = |b: usize| Block::new(b * nb, nb.min(tiles - b * nb), nb, tiles_x);
        let transform = |t: usize, _worker: usize| {
            let (b, c) = (t % blocks, t / blocks);
            let v = VOut {
                // SAFETY: slice b's first v_len floats (b < threads); tasks write disjoint
                // channels of it.
                ptr: unsafe { (base as *mut f32).add(b * per_worker) },
                len: v_len,
            };
            let mut local = Local([[0.0; ROW * ROW]; LANES_MAX]);
            let channels = c * per_chunk..k.min((c + 1) * per_chunk);
            self.transform_input(input, g, &block_at(b), v, nb * k, channels, &mut local);
        };
        pool.run(blocks * chunks, &transform)
            .map_err(|e| invalid(e.to_string()))?;
        let panels = self.outch.div_ceil(self.kernel.mr);
        let per_group = panels.div_ceil(groups);
        let task = |t: usize, worker: usize| {
            let (b, grp) = (t % blocks, t / blocks);
            let base = base as *mut f32;
            // SAFETY: V of block b is only read in this phase; the worker's M part (after
            // the V part of its slice) is used by one thread at a time and overlaps no V.
            let (v, mbuf) = unsafe {
                (
                    std::slice::from_raw_parts(base.add(b * per_worker), v_len),
                    std::slice::from_raw_parts_mut(
                        base.add(worker * per_worker + v_len),
                        per_worker - v_len,
                    ),
                )
            };
            let micros = self.kernel.micros_for(pool.core_kind(worker));
            let p0 = grp * per_group;
            let p1 = panels.min(p0 + per_group);
            let mut local = Local([[0.0; ROW * ROW]; LANES_MAX]);
            self.multiply_block(v, mbuf, g, &block_at(b), p0..p1, micros, &mut local, out);
        };
        pool.run(blocks * groups, &task)
            .map_err(|e| invalid(e.to_string()))
    }

    /// One block of tiles, output channel panels `panels`.
    #[allow(clippy::too_many_arguments)]
    fn run_block(
        &self,
        input: &[f32],
        g: &Geometry,
        block: &Block,
        panels: std::ops::Range<usize>,
        micros: Micros,
        buf: &mut [f32],
        local: &mut Local,
        out: &SharedMut<f32>,
    ) {
        let a2 = self.variant.alpha().pow(2);
        let k = self.inch;
        let (v, mbuf) = buf.split_at_mut(a2 * block.nb * k);
        // V[t][panel][k][j]: position t's B panels start at t * t_stride.
        let t_stride = block.nb * k;
        let vout = VOut {
            ptr: v.as_mut_ptr(),
            len: v.len(),
        };
        self.transform_input(input, g, block, vout, t_stride, 0..k, local);
        self.multiply_block(v, mbuf, g, block, panels, micros, local, out);
    }

    /// The products and output transform of one block whose V is done, for output channel
    /// panels `panels`; `mbuf` is the task's M.
    #[allow(clippy::too_many_arguments)]
    fn multiply_block(
        &self,
        v: &[f32],
        mbuf: &mut [f32],
        g: &Geometry,
        block: &Block,
        panels: std::ops::Range<usize>,
        micros: Micros,
        local: &mut Local,
        out: &SharedMut<f32>,
    ) {
        let (a, mr, nr) = (self.variant.alpha(), self.kernel.mr, self.kernel.nr);
        let a2 = a * a;
        let k = self.inch;
        let layout = self.kernel.panels();
        let t_stride = block.nb * k;
        let all_panels = self.outch.div_ceil(mr);
        let tile_panels = layout.count(block.count);
        // M[r][jp][t][j]: for output channel r of the panel and tile panel jp, the α²
        // positions' `nr` tiles back to back, so the output transform reads one
        // contiguous block with constant offsets.
        assert!(mbuf.len() >= mr * tile_panels * a2 * nr && v.len() >= a2 * t_stride);
        let m_base = mbuf.as_mut_ptr();
        // The bias enters as the start value of position (1, 1): Aᵀ's column for the
        // point 1 is all ones, so it adds the bias to every output of the tile.
        let bias_t = a + 1;
        let row_stride = tile_panels * a2 * nr;
        for p in panels {
            for jp in 0..tile_panels {
                let width = layout.width(jp, block.count);
                // SAFETY: for t < a2: A panels (t * all_panels + p) * k * mr inside u, B
                // panels t * t_stride + jp * k * nr (k * width floats) inside v, output rows
                // (jp * a2 + t) * nr + r * row_stride (r < mr, width floats) inside mbuf
                // (asserted); k ≥ 1; the kernel is this machine's.
                unsafe {
                    products(
                        micros.for_width(width),
                        k,
                        self.u[p * k * mr..].as_ptr(),
                        all_panels * k * mr,
                        v[jp * k * nr..].as_ptr(),
                        t_stride,
                        m_base.add(jp * a2 * nr),
                        nr,
                        row_stride,
                        a2,
                        bias_t,
                        self.bias[p * mr..].as_ptr(),
                    );
                }
            }
            let rows = mr.min(self.outch - p * mr);
            for r in 0..rows {
                let oc = p * mr + r;
                let mrow = &mbuf[r * tile_panels * a2 * nr..][..tile_panels * a2 * nr];
                self.transform_output(mrow, g, block, oc, local, out);
            }
        }
    }

    /// Input transform of `block` into `v` (see [`Winograd::run_block`]).
    ///
    /// Writes channels `channels` of V only, through a raw pointer: the channel groups of
    /// one block fill the same V from several tasks (`run_shared`).
    #[allow(clippy::too_many_arguments)]
    fn transform_input(
        &self,
        input: &[f32],
        g: &Geometry,
        block: &Block,
        v: VOut,
        t_stride: usize,
        channels: std::ops::Range<usize>,
        local: &mut Local,
    ) {
        let at = InputAt {
            input,
            plane: g.w * g.h,
            g,
            block,
            t_stride,
            channels,
        };
        // SAFETY (every arm): `input_tiles` passes windows and destinations as the group
        // transforms require; the wide and NEON ones only run where `Transforms::native`
        // found them.
        macro_rules! go {
            ($a:literal, $portable:path, $neon:ident, $avx:ident) => {
                match self.transforms {
                    #[cfg(target_arch = "x86_64")]
                    Transforms::Avx => {
                        self.input_tiles::<$a, { avx::LANES }>(&at, v, local, |w, d| unsafe {
                            avx::$avx(w, d, t_stride)
                        })
                    }
                    #[cfg(target_arch = "aarch64")]
                    Transforms::Neon => self.input_tiles::<$a, 4>(&at, v, local, |w, d| unsafe {
                        neon::$neon(w, d, t_stride)
                    }),
                    _ => self.input_tiles::<$a, 4>(&at, v, local, |w, d| unsafe {
                        input_group::<$a>(w, |x| $portable(x), d, t_stride)
                    }),
                }
            };
        }
        match self.variant {
            Variant::F23 => go!(4, transforms::input_f23, input23, input23),
            Variant::F43 => go!(6, transforms::input_f43, input43, input43),
            Variant::F63 => go!(8, transforms::input_f63, input63, input63),
        }
    }

    /// The input transform of a block, `L` tiles per `group` call: `group(windows, dst)`
    /// writes position `t` of the `L` windows to `dst + t * t_stride`.
    #[inline(always)]
    fn input_tiles<const A: usize, const L: usize>(
        &self,
        at: &InputAt,
        v: VOut,
        local: &mut Local,
        group: impl Fn(&[Window; L], *mut f32),
    ) {
        let (g, block) = (at.g, at.block);
        let (m, nr, k) = (A - 2, self.kernel.nr, self.inch);
        // Local windows for tiles that cross the border, one per lane.
        let local = &mut local.0;
        for j0 in (0..block.count).step_by(L) {
            // Tile origins (input coordinates of the window's corner) of the lanes; lanes
            // past the block's last tile repeat it (their columns are never read).
            let mut origin = [(0isize, 0isize); L];
            let mut inside = [true; L];
            for (lane, o) in origin.iter_mut().enumerate() {
                let (ty, tx) = block.pos[(j0 + lane).min(block.count - 1)];
                let y0 = (ty * m) as isize - g.pad_top as isize;
                let x0 = (tx * m) as isize - g.pad_left as isize;
                *o = (y0, x0);
                inside[lane] = y0 >= 0
                    && x0 >= 0
                    && y0 as usize + A <= g.h
                    && x0 as usize + A.next_multiple_of(4) <= g.w;
            }
            // L divides every panel width (`Transforms::native`), so the group stays in
            // one panel.
            let (panel, j) = ((j0 / nr), j0 % nr);
            let width = self.kernel.panels().width(panel, block.count);
            let dst0 = panel * k * nr + j;
            for ch in at.channels.clone() {
                let chan = &at.input[ch * at.plane..(ch + 1) * at.plane];
                let mut win = [Window {
                    ptr: chan.as_ptr(),
                    stride: g.w,
                }; L];
                for lane in 0..L {
                    let (y0, x0) = origin[lane];
                    if inside[lane] {
                        win[lane].ptr = chan[y0 as usize * g.w + x0 as usize..].as_ptr();
                    } else {
                        fill_window::<A>(chan, g.w, g.h, y0, x0, self.pad_value, &mut local[lane]);
                        win[lane] = Window {
                            ptr: local[lane].as_ptr(),
                            stride: ROW,
                        };
                    }
                }
                // Every window has A rows of A.next_multiple_of(4) readable floats (checked
                // above for in-place windows; local windows are ROW x ROW); the destination
                // offsets stay inside v (t < A², panel < nb / nr, ch < k, j + L ≤ width).
                assert!(dst0 + ch * width + (A * A - 1) * at.t_stride + L <= v.len);
                // SAFETY: in bounds (asserted); the callers of `transform_input` give each
                // task its own channels of V.
                group(&win, unsafe { v.ptr.add(dst0 + ch * width) });
            }
        }
    }

    /// Output transform of channel `oc` for every tile of `block`: `mrow` holds the
    /// channel's `M[jp][t][j]` (see [`Winograd::run_block`]), bias included.
    fn transform_output(
        &self,
        mrow: &[f32],
        g: &Geometry,
        block: &Block,
        oc: usize,
        local: &mut Local,
        out: &SharedMut<f32>,
    ) {
        let (tact, post) = TileAct::split(self.act);
        let post = post.then_some(self.act);
        let plane = g.out_w * g.out_h;
        // SAFETY: each task writes the tiles of its own block for its own channels.
        let chan = unsafe { out.slice(oc * plane, plane) };
        let epi = Epilogue { tact, post };
        // The NEON and AVX transforms fuse only the vector activations.
        let kind = if post.is_some() {
            Transforms::Portable
        } else {
            self.transforms
        };
        // SAFETY (every arm): `output_tiles` passes M blocks and destinations as the group
        // transforms require; the wide and NEON ones only run where `Transforms::native`
        // found them.
        macro_rules! go {
            ($a:literal, $m:literal, $nr:literal, $portable:path, $neon:ident, $avx:ident) => {
                match kind {
                    #[cfg(target_arch = "x86_64")]
                    Transforms::Avx => self.output_tiles::<$a, $m, $nr, { avx::LANES }>(
                        mrow,
                        g,
                        block,
                        chan,
                        local,
                        |mp, dst| unsafe { avx::$avx::<$nr>(mp, tact, dst) },
                    ),
                    #[cfg(target_arch = "aarch64")]
                    Transforms::Neon => self.output_tiles::<$a, $m, $nr, 4>(
                        mrow,
                        g,
                        block,
                        chan,
                        local,
                        |mp, dst| unsafe { neon::$neon::<$nr>(mp, tact, dst) },
                    ),
                    _ => self.output_tiles::<$a, $m, $nr, 4>(
                        mrow,
                        g,
                        block,
                        chan,
                        local,
                        |mp, dst| unsafe {
                            output_group::<$a, $m, $nr>(mp, |x| $portable(x), &epi, dst)
                        },
                    ),
                }
            };
        }
        use transforms::{output_f23 as o23, output_f43 as o43, output_f63 as o63};
        match (self.variant, self.kernel.nr) {
            (Variant::F23, 8) => go!(4, 2, 8, o23, output23, output23),
            (Variant::F43, 8) => go!(6, 4, 8, o43, output43, output43),
            (Variant::F63, 8) => go!(8, 6, 8, o63, output63, output63),
            (Variant::F23, 16) => go!(4, 2, 16, o23, output23, output23),
            (Variant::F43, 16) => go!(6, 4, 16, o43, output43, output43),
            (Variant::F63, 16) => go!(8, 6, 16, o63, output63, output63),
            (Variant::F23, 32) => go!(4, 2, 32, o23, output23, output23),
            (Variant::F43, 32) => go!(6, 4, 32, o43, output43, output43),
            (Variant::F63, 32) => go!(8, 6, 32, o63, output63, output63),
            (_, nr) => panic!("winograd: no output transform for panels of {nr}"),
        }
    }

    /// The output transform of a block's tiles of one channel, `L` tiles per `group` call:
    /// `group(m, dst)` reads position `t` of the `L` tiles at `m + t * NR` and writes their
    /// rows to `dst`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn output_tiles<const A: usize, const M: usize, const NR: usize, const L: usize>(
        &self,
        mrow: &[f32],
        g: &Geometry,
        block: &Block,
        chan: &mut [f32],
        local: &mut Local,
        group: impl Fn(*const f32, &[Dest; L]),
    ) {
        assert!(mrow.len() >= block.count.div_ceil(NR) * A * A * NR && NR.is_multiple_of(L));
        let local = &mut local.0;
        for j0 in (0..block.count).step_by(L) {
            let mut dst = [Dest {
                ptr: local[0].as_mut_ptr(),
                stride: ROW,
            }; L];
            let mut clip = [(0usize, 0usize); L];
            for lane in 0..L {
                let (rows, cols, at) = if j0 + lane < block.count {
                    let (ty, tx) = block.pos[j0 + lane];
                    let (y0, x0) = (ty * M, tx * M);
                    (M.min(g.out_h - y0), M.min(g.out_w - x0), y0 * g.out_w + x0)
                } else {
                    (0, 0, 0)
                };
                if rows == M && cols == M {
                    dst[lane] = Dest {
                        ptr: chan[at..at + (M - 1) * g.out_w + M].as_mut_ptr(),
                        stride: g.out_w,
                    };
                } else {
                    dst[lane] = Dest {
                        ptr: local[lane].as_mut_ptr(),
                        stride: ROW,
                    };
                    clip[lane] = (rows, cols);
                }
            }
            // The group's M block: tile panel j0 / NR, lanes from j0 % NR (L divides NR).
            // A² positions NR floats apart are inside mrow (asserted); in-place
            // destinations have M rows of M writable floats (sliced above), local ones
            // ROW x ROW.
            group(mrow[(j0 / NR) * A * A * NR + j0 % NR..].as_ptr(), &dst);
            for lane in 0..L {
                let (rows, cols) = clip[lane];
                if rows == 0 || cols == 0 {
                    continue;
                }
                let (ty, tx) = block.pos[j0 + lane];
                let at = ty * M * g.out_w + tx * M;
                for r in 0..rows {
                    chan[at + r * g.out_w..][..cols]
                        .copy_from_slice(&local[lane][r * ROW..r * ROW + cols]);
                }
            }
        }
    }
}

/// What the input transform of a block reads and where it writes.
struct InputAt<'a> {
    input: &'a [f32],
    plane: usize,
    g: &'a Geometry,
    block: &'a Block,
    t_stride: usize,
    /// The input channels to transform.
    channels: std::ops::Range<usize>,
}

/// A block's V, written by one or more tasks (each its own channels).
#[derive(Clone, Copy)]
struct VOut {
    ptr: *mut f32,
    len: usize,
}

/// Which group transforms a layer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transforms {
    /// Four tiles per call on [`F4`] (SSE / NEON / arrays): the reference for the others.
    Portable,
    /// Four tiles per call, NEON by element (aarch64).
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    Neon,
    /// Eight tiles per call, AVX2 + FMA (x86_64).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx,
}

impl Transforms {
    /// The fastest this machine runs with the GEMM's panels `panels`.
    fn native(panels: Panels) -> Transforms {
        #[cfg(target_arch = "aarch64")]
        {
            let _ = panels;
            Transforms::Neon
        }
        #[cfg(target_arch = "x86_64")]
        {
            if avx::available(panels) {
                Transforms::Avx
            } else {
                Transforms::Portable
            }
        }
        #[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
        {
            let _ = panels;
            Transforms::Portable
        }
    }
}

/// Per-task windows / output tiles for the tiles crossing the border, one per lane (set up
/// once per task: zeroing them per call showed up as `memset` in the profile).
struct Local([[f32; ROW * ROW]; LANES_MAX]);

/// A block of consecutive tiles (row-major over the tile grid).
struct Block {
    count: usize,
    /// Capacity in tiles (columns of V and M).
    nb: usize,
    /// Each tile's (row, column) in the tile grid.
    pos: [(usize, usize); NB_MAX],
}

impl Block {
    /// Tiles `first..first + count` of a grid `tiles_x` wide (one division, then steps).
    fn new(first: usize, count: usize, nb: usize, tiles_x: usize) -> Block {
        let mut pos = [(0, 0); NB_MAX];
        let (mut ty, mut tx) = (first / tiles_x, first % tiles_x);
        for p in pos.iter_mut().take(count) {
            *p = (ty, tx);
            tx += 1;
            if tx == tiles_x {
                tx = 0;
                ty += 1;
            }
        }
        Block { count, nb, pos }
    }
}

struct Epilogue {
    tact: TileAct,
    post: Option<Activation>,
}

/// The window at (`y0`, `x0`) of a `w x h` channel into `dst` (rows ROW apart, each
/// `A.next_multiple_of(4)` floats), the padding value outside the channel.
#[inline(always)]
fn fill_window<const A: usize>(
    chan: &[f32],
    w: usize,
    h: usize,
    y0: isize,
    x0: isize,
    pad: f32,
    dst: &mut [f32; ROW * ROW],
) {
    let lo = (-x0).clamp(0, A as isize) as usize;
    let hi = (w as isize - x0).clamp(lo as isize, A as isize) as usize;
    // Every row is written as whole four-float vectors, as the transforms read it back: a
    // vector load cannot be forwarded from narrower stores, and writing element by element
    // cost a store-forwarding stall per row read (most of the input transform's own time).
    for y in 0..A {
        let iy = y0 + y as isize;
        let src = (iy >= 0 && iy < h as isize && lo < hi).then(|| &chan[iy as usize * w..]);
        for c0 in (0..A).step_by(4) {
            let value = |x: usize| match src {
                Some(row) if x >= lo && x < hi => row[(x0 + x as isize) as usize],
                _ => pad,
            };
            let v = match src {
                // SAFETY: columns x0 + c0 .. x0 + c0 + 4 are inside the row (lo ≤ c0,
                // c0 + 4 ≤ hi ≤ w - x0).
                Some(row) if c0 >= lo && c0 + 4 <= hi => unsafe {
                    F4::load(row[(x0 + c0 as isize) as usize..][..4].as_ptr())
                },
                _ => F4::new(value(c0), value(c0 + 1), value(c0 + 2), value(c0 + 3)),
            };
            // SAFETY: row y of dst has ROW ≥ c0 + 4 floats.
            unsafe { v.store(dst[y * ROW + c0..][..4].as_mut_ptr()) };
        }
    }
}

/// Row `y` of four windows, transposed so that lane `l` of vector `x` is window `l`'s
/// element `x`.
///
/// # Safety
/// Each window has row `y` readable for `A.next_multiple_of(4)` floats.
#[inline(always)]
unsafe fn gather_row<const A: usize>(win: &[Window; 4], y: usize) -> [F4; A] {
    let row = |l: usize, off: usize| F4::load(win[l].ptr.add(y * win[l].stride + off));
    let lo = transpose([row(0, 0), row(1, 0), row(2, 0), row(3, 0)]);
    let mut x = [lo[0]; A];
    x[..4.min(A)].copy_from_slice(&lo[..4.min(A)]);
    if A > 4 {
        let hi = transpose([row(0, 4), row(1, 4), row(2, 4), row(3, 4)]);
        x[4..].copy_from_slice(&hi[..A - 4]);
    }
    x
}

/// The 2-D input transform of four windows of one channel; position `t` goes to
/// `dst + t * t_stride` (four floats, one per window), written in order of `t`.
///
/// # Safety
/// As [`gather_row`] for rows `0..A`; `dst + t * t_stride` writable for four floats for
/// every `t < A²`.
#[inline(always)]
unsafe fn input_group<const A: usize>(
    win: &[Window; 4],
    f: impl Fn(&[F4; A]) -> [F4; A],
    dst: *mut f32,
    t_stride: usize,
) {
    let d: [[F4; A]; A] = std::array::from_fn(|y| gather_row::<A>(win, y));
    // Along columns first: c[x][i] = (Bᵀ d)[i][x].
    let c: [[F4; A]; A] = std::array::from_fn(|x| f(&std::array::from_fn(|y| d[y][x])));
    // Then along rows, row i of the result giving positions t = i·A .. i·A + A - 1.
    let mut p = dst;
    for i in 0..A {
        let v = f(&std::array::from_fn(|x| c[x][i]));
        for vk in v {
            vk.store(p);
            p = p.add(t_stride);
        }
    }
}

/// The activation on four lanes.
#[inline(always)]
fn epilogue(v: F4, e: &Epilogue) -> F4 {
    let v = match e.tact {
        TileAct::None => v,
        TileAct::Relu => v.max(F4::splat(0.0)),
        TileAct::Leaky(s) => v.select_negative(v.scale(s)),
        TileAct::Clip(min, max) => v.max(F4::splat(min)).min(F4::splat(max)),
    };
    match e.post {
        None => v,
        Some(act) => {
            let mut a = [0.0f32; 4];
            // SAFETY: a holds four floats.
            unsafe { v.store(a.as_mut_ptr()) };
            // SAFETY: as above.
            unsafe { F4::load(a.map(|x| act.apply(x)).as_ptr()) }
        }
    }
}

/// The 2-D output transform of four tiles of one channel, with the activation, stored to
/// `dst` (tile `l`'s row `p` at `dst[l].ptr + p * dst[l].stride`, M floats). Position `t`
/// of the four tiles is at `m + t * NR`.
///
/// # Safety
/// `m + t * NR` readable for four floats for every `t < A²`; every destination writable
/// for M rows of M floats.
#[inline(always)]
unsafe fn output_group<const A: usize, const M: usize, const NR: usize>(
    m: *const f32,
    f: impl Fn(&[F4; A]) -> [F4; M],
    e: &Epilogue,
    dst: &[Dest; 4],
) {
    // Along rows: s[i][q].
    let s: [[F4; M]; A] =
        std::array::from_fn(|i| f(&std::array::from_fn(|k| F4::load(m.add((i * A + k) * NR)))));
    // Along columns: y[q][p].
    let y: [[F4; M]; M] = std::array::from_fn(|q| f(&std::array::from_fn(|i| s[i][q])));
    for p in 0..M {
        let at = |l: usize| dst[l].ptr.add(p * dst[l].stride);
        let row: [F4; M] = std::array::from_fn(|q| epilogue(y[q][p], e));
        let mut q0 = 0;
        if M >= 4 {
            let t = transpose([row[0], row[1], row[2], row[3]]);
            for (l, tl) in t.iter().enumerate() {
                tl.store(at(l));
            }
            q0 = 4;
        }
        if M - q0 == 2 {
            let (lo, hi) = zip(row[q0], row[q0 + 1]);
            lo.store_lo2(at(0).add(q0));
            lo.store_hi2(at(1).add(q0));
            hi.store_lo2(at(2).add(q0));
            hi.store_hi2(at(3).add(q0));
        }
    }
}

#[cfg(test)]
mod tests;
