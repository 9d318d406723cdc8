//! Single-precision GEMM `C[M x N] = A[M x K] · B[K x N] + bias`, then an activation, as used
//! by convolutions (A = weights, B = im2col of the input, never materialised) and by the
//! Winograd convolution's transform-domain products (`kernels::winograd`, which calls the
//! micro-kernels directly).
//!
//! Structure (the usual packed-panel design):
//! * A is packed once at load ([`PackedA`]) into panels of `MR` rows, k-major.
//! * B is packed per call, one `KC x NC` block at a time, into the worker's scratch as panels
//!   of `NR` columns, k-major ([`PackB`]). Im2col happens inside that packing, with no
//!   division per element: the column runs of a panel are stepped from the previous panel's,
//!   and the strided case divides by shifts when the stride is a power of two.
//! * A micro-kernel computes one `MR x NR` tile over `KC`, starting from the bias (or the
//!   previous K block's sums), and applies ReLU / LeakyReLU / Clip vectorised on its store
//!   ([`TileAct`]); other activations run over the stored rows.
//! * A [`Kernel`] is a family of micro-kernels with one tile shape and one variant per core
//!   type (Cortex-A53, Cortex-A72, other): every worker runs the variant for the core it is
//!   on (`Pool::core_kind`), all reading the same packed panels and summing in the same order,
//!   so results do not depend on which core computed a tile. Variants: [`generic`] (portable
//!   Rust), `x86_64` (AVX-512F 12x32 or AVX2 + FMA 6x16, by CPU features), `aarch64` (NEON,
//!   hand-scheduled `asm!` K loops).
//! * `EQ_X86_F32_KERNEL=avx512|avx2|generic` forces the x86_64 path ([`Kernel::best`]); a
//!   path the CPU lacks falls back to the best it has, other values are ignored.
//! * Work is split into column blocks (and row blocks when there are few columns) that run on
//!   the pool ([`crate::kernels::split`]); each task writes a disjoint set of output row pieces.

use crate::cpu::CoreKind;
use crate::error::{invalid, LayerResult};
use crate::kernels::split::{Product, Split};
use crate::ops::activation::Activation;
use crate::pool::{Pool, SharedMut};

pub(crate) mod generic;

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_64;

/// Largest tile any kernel uses.
pub const MR_MAX: usize = 12;
pub const NR_MAX: usize = 32;

/// K block: one `KC x NR` B panel (16 KiB for NEON's 8 columns, 32 KiB for AVX2's 16) stays
/// in L1 while A streams from L2 (AVX-512's 32 columns make it 64 KiB, more than the x86_64
/// host's 48 KiB L1; KC 256 showed no clear gain there, on a noisy shared machine). Fixed
/// (not derived from the cache sizes) so every blocking sums in the same order: results are
/// bit-identical whatever L2 the pool reports. Every further K block re-reads and re-writes
/// C and costs each tile another micro-kernel call (ResNet-50's 1x1 layers with K =
/// 512..2048: 512 instead of 384 saves a third of those calls; 256 measured ~4 % slower in
/// total on the x86_64 host with the AVX2 kernel).
const KC_MAX: usize = 512;
/// Upper limits of the L2-derived block sizes; scratch is sized for `NC_LIMIT` (kept near the
/// 1 MiB value so per-worker scratch stays small on the board).
const MC_LIMIT: usize = 384;
const NC_LIMIT: usize = 384;
/// Columns' worth of multiply-adds that streaming one weight from memory costs, for the task
/// split: a float at a core's share of DRAM bandwidth takes about a cycle, in which a 16-lane
/// core with two FMA pipes does 32 columns' work (an A53 with 4 lanes, 4-8). 16, 32 and 64
/// chose the same splits on ResNet-50; its res5 1x1 layers at 2 threads went from a column
/// split to a row split, the model 37.1 -> 35.1 ms on the x86_64 host.
const WEIGHT_COLS: usize = 16;
/// L2 assumed when neither sysfs nor a target file gives one (the RK3399 little cluster).
const DEFAULT_L2: usize = 512 * 1024;

/// L2 blocking of one product: `nc` columns of packed B (`KC x nc`) and `mc` rows of A
/// (`mc x KC`) are the working set kept in L2 while micro-kernels stream over them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    /// Rows of A per block, a multiple of the kernel's `mr`.
    pub mc: usize,
    /// Columns per B block (and at most per task), a multiple of the kernel's `nr`.
    pub nc: usize,
}

impl Blocking {
    /// Blocks for an L2 of `l2_bytes` (`None`: [`DEFAULT_L2`]): 3/8 of it for the B block
    /// and 1/5 for the A block, the rest for C, the input rows being packed and everything
    /// else (on a 1 MiB L2 this gives nc = 256, mc ≈ 130, the sizes tuned by hand before).
    pub fn for_l2(l2_bytes: Option<usize>, kernel: Kernel) -> Blocking {
        let floats = l2_bytes.unwrap_or(DEFAULT_L2) / 4;
        let fit = |num: usize, den: usize, unit: usize, limit: usize| {
            (floats * num / den / KC_MAX / unit * unit).clamp(unit, limit / unit * unit)
        };
        Blocking {
            mc: fit(1, 5, kernel.mr, MC_LIMIT),
            nc: fit(3, 8, kernel.nr, NC_LIMIT),
        }
    }
}

/// The activations a micro-kernel applies itself, vectorised, on its last K block; the
/// others (Sigmoid, Mish, HardSwish) run over the stored rows afterwards.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TileAct {
    None,
    /// `x < 0 -> 0`, NaN kept.
    Relu,
    /// `x < 0 -> x * slope`.
    Leaky(f32),
    /// `x < min -> min`, then `x > max -> max`, NaN kept.
    Clip(f32, f32),
}

impl TileAct {
    /// What a kernel fuses of `act`, and whether `act` still has to run over the output.
    pub fn split(act: Activation) -> (TileAct, bool) {
        match act {
            Activation::None => (TileAct::None, false),
            Activation::ReLU => (TileAct::Relu, false),
            Activation::LeakyReLU(s) => (TileAct::Leaky(s), false),
            Activation::Clip { min, max } => (TileAct::Clip(min, max), false),
            _ => (TileAct::None, true),
        }
    }

    /// The scalar definition, the formulas of [`Activation::apply`].
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            TileAct::None => x,
            TileAct::Relu => Activation::ReLU.apply(x),
            TileAct::Leaky(s) => Activation::LeakyReLU(s).apply(x),
            TileAct::Clip(min, max) => Activation::Clip { min, max }.apply(x),
        }
    }
}

/// What the micro-kernel computes for its `MR x NR` tile:
/// `row[r][j] = act(start[r][j] + Σ_k a[k][r] · b[k][j])` with
/// `start = accumulate ? row[r][j] : bias[r]`, the products added one k at a time in order
/// with fused multiply-adds. Every variant of a family sums in this order, so they give
/// bit-identical results.
pub struct Tile {
    /// Output rows, each writable for `NR` floats (rows past `MR` unused).
    pub rows: [*mut f32; MR_MAX],
    /// Start from the values already in `rows` (a later K block) instead of `bias`.
    pub accumulate: bool,
    /// `MR` per-row biases, used when not accumulating.
    pub bias: *const f32,
    /// Applied before the store ([`TileAct::None`] on all but the last K block).
    pub act: TileAct,
}

/// `kc` (≥ 1) steps of `a` (k-major, `MR` per step) times `b` (k-major, `NR` per step) into
/// `tile`.
///
/// # Safety
/// `kc ≥ 1`; `a` holds `kc * MR` floats, `b` `kc * NR` floats, `tile.bias` `MR` floats and
/// every `tile.rows[r]` (r < MR) `NR` writable floats; the CPU supports the kernel's
/// instructions (true for every variant of a [`Kernel`] handed out on this machine).
pub type MicroKernel = unsafe fn(kc: usize, a: *const f32, b: *const f32, tile: &Tile);

/// A family of micro-kernels sharing one tile shape, so one [`PackedA`] and one B packing
/// serve them all, with one variant per core type.
///
/// The fields are private to the crate: packing and the blocked loops trust `mr` / `nr`, and
/// the micro-kernels use their own constants, so code outside the crate must not be able to
/// build a family whose geometry disagrees with its micro-kernels. Obtain one from
/// [`Kernel::generic`], [`Kernel::best`], [`Kernel::supported_simd`] or [`Kernel::forced`].
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    pub(crate) name: &'static str,
    pub(crate) mr: usize,
    pub(crate) nr: usize,
    /// For the in-order Cortex-A53 (scheduled for its dual issue).
    pub(crate) a53: MicroKernel,
    /// For the out-of-order Cortex-A72.
    pub(crate) a72: MicroKernel,
    /// For any other core.
    pub(crate) other: MicroKernel,
    /// Narrower kernels for a block's last panel, widest first: the narrowest that the
    /// columns left fit runs it.
    pub(crate) tails: [Option<TailKernel>; 2],
}

/// An `MR x nr` micro-kernel family for the last panel of a block, `nr` < the main
/// kernel's (same A panels; its B panel is `nr` wide per k step).
#[derive(Clone, Copy, Debug)]
pub struct TailKernel {
    pub(crate) nr: usize,
    pub(crate) a53: MicroKernel,
    pub(crate) a72: MicroKernel,
    pub(crate) other: MicroKernel,
}

impl TailKernel {
    /// Panel width of this tail.
    pub fn nr(&self) -> usize {
        self.nr
    }

    fn for_core(&self, core: CoreKind) -> MicroKernel {
        match core {
            CoreKind::CortexA53 => self.a53,
            CoreKind::CortexA72 => self.a72,
            CoreKind::Other => self.other,
        }
    }
}

/// How a block of columns is cut into B panels: whole panels `nr` wide, the last one as
/// narrow as a tail kernel allows (`tails`, widest first, 0: none). Panel `j` starts at
/// `j * kc * nr` floats whatever its width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Panels {
    pub(crate) nr: usize,
    pub(crate) tails: [usize; 2],
}

impl Panels {
    /// Width of a whole panel.
    #[inline]
    pub fn nr(&self) -> usize {
        self.nr
    }

    /// The tail widths, widest first (0: none).
    #[inline]
    pub fn tails(&self) -> [usize; 2] {
        self.tails
    }

    /// Panels of `nc` columns.
    #[inline]
    pub fn count(&self, nc: usize) -> usize {
        nc.div_ceil(self.nr)
    }

    /// Width of panel `j` of `nc` columns.
    #[inline]
    pub fn width(&self, j: usize, nc: usize) -> usize {
        let left = nc - j * self.nr;
        if left >= self.nr {
            return self.nr;
        }
        let mut w = self.nr;
        for t in self.tails {
            if t != 0 && left <= t {
                w = t;
            }
        }
        w
    }
}

impl Kernel {
    /// Name of the family (for logs and benchmarks).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Rows of a tile (the A panel height [`PackedA`] packs for).
    pub fn mr(&self) -> usize {
        self.mr
    }

    /// Columns of a whole tile (the B panel width).
    pub fn nr(&self) -> usize {
        self.nr
    }

    /// The narrower tail kernels, widest first.
    pub fn tails(&self) -> [Option<TailKernel>; 2] {
        self.tails
    }

    /// The portable kernel (reference for the SIMD ones, fallback everywhere).
    pub fn generic() -> Kernel {
        generic::KERNEL
    }

    /// Every SIMD family this CPU runs, best first (x86_64: each supported path, whatever
    /// `EQ_X86_F32_KERNEL` says; tests run them all).
    pub fn supported_simd() -> Vec<Kernel> {
        #[cfg(target_arch = "x86_64")]
        return x86_64::supported().collect();
        #[cfg(target_arch = "aarch64")]
        return vec![aarch64::KERNEL];
        #[allow(unreachable_code)]
        Vec::new()
    }

    /// The fastest kernel family this CPU supports (on x86_64 `EQ_X86_F32_KERNEL` can force
    /// another path, see `x86_64`).
    pub fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = x86_64::detect() {
            return k;
        }
        #[cfg(target_arch = "aarch64")]
        return aarch64::KERNEL;
        #[allow(unreachable_code)]
        generic::KERNEL
    }

    /// The variant for a worker running on `core`.
    #[inline]
    pub fn micro_for(&self, core: CoreKind) -> MicroKernel {
        match core {
            CoreKind::CortexA53 => self.a53,
            CoreKind::CortexA72 => self.a72,
            CoreKind::Other => self.other,
        }
    }

    /// The main and tail variants for a worker on `core`.
    #[inline]
    pub fn micros_for(&self, core: CoreKind) -> Micros {
        let main = self.micro_for(core);
        Micros {
            nr: self.nr,
            main,
            tails: self
                .tails
                .map(|t| t.map_or((0, main), |t| (t.nr, t.for_core(core)))),
        }
    }

    /// The panel layout B is packed in for this family.
    pub fn panels(&self) -> Panels {
        Panels {
            nr: self.nr,
            tails: self.tails.map(|t| t.map_or(0, |t| t.nr)),
        }
    }

    /// The family with every core running `core`'s variants (tests run each variant).
    pub fn forced(&self, core: CoreKind) -> Kernel {
        let m = self.micro_for(core);
        Kernel {
            a53: m,
            a72: m,
            other: m,
            tails: self.tails.map(|t| {
                t.map(|t| {
                    let k = t.for_core(core);
                    TailKernel {
                        a53: k,
                        a72: k,
                        other: k,
                        ..t
                    }
                })
            }),
            ..*self
        }
    }
}

/// One worker's micro-kernels: `main` for `nr`-wide panels, the tails for narrower last
/// ones.
#[derive(Clone, Copy)]
pub struct Micros {
    pub(crate) nr: usize,
    pub(crate) main: MicroKernel,
    /// (width, kernel); width 0: none.
    pub(crate) tails: [(usize, MicroKernel); 2],
}

impl Micros {
    /// The kernel for a panel `width` wide (a width from [`Kernel::panels`]).
    #[inline(always)]
    pub fn for_width(&self, width: usize) -> MicroKernel {
        if width == self.nr {
            self.main
        } else if width == self.tails[0].0 {
            self.tails[0].1
        } else {
            self.tails[1].1
        }
    }
}

/// A (M x K, row-major) packed for one kernel, with the per-row bias; owned (packed once at
/// load) or, as `PackedA<&[f32]>`, in memory the caller lends ([`PackedA::pack_into`]).
#[derive(Debug)]
pub struct PackedA<S = Vec<f32>> {
    kernel: Kernel,
    m: usize,
    k: usize,
    /// Panel `p` holds rows `p*MR..`, k-major: element (r, k) at `(p*K + k)*MR + r`.
    /// Rows past M are zero.
    data: S,
    /// Bias padded to whole panels.
    bias: S,
}

impl<'a> PackedA<&'a [f32]> {
    /// Floats [`PackedA::pack_into`] needs for an `m x k` A.
    pub fn packed_len(kernel: Kernel, m: usize, k: usize) -> usize {
        let rows = m.div_ceil(kernel.mr) * kernel.mr;
        rows * k + rows
    }

    /// Scratch floats one worker needs for an `m x k` A (any m) times `n` columns: what
    /// [`PackedA::scratch_len`] returns once packed.
    pub fn worker_scratch(kernel: Kernel, k: usize, n: usize) -> usize {
        k_block(k) * NC_LIMIT.min(n.div_ceil(kernel.nr) * kernel.nr)
    }

    /// Packs row-major `a` (`m * k`, no bias) into the first [`PackedA::packed_len`] floats
    /// of `dst`, without allocating.
    pub fn pack_into(kernel: Kernel, a: &[f32], m: usize, k: usize, dst: &'a mut [f32]) -> Self {
        assert_eq!(a.len(), m * k, "A must be m x k");
        let mr = kernel.mr;
        let rows = m.div_ceil(mr) * mr;
        let (data, rest) = dst.split_at_mut(rows * k);
        let bias = &mut rest[..rows];
        bias.fill(0.0);
        for p in 0..rows / mr {
            let panel = &mut data[p * k * mr..(p + 1) * k * mr];
            for r in 0..mr {
                let row = p * mr + r;
                if row < m {
                    let src = &a[row * k..(row + 1) * k];
                    for (kk, &v) in src.iter().enumerate() {
                        panel[kk * mr + r] = v;
                    }
                } else {
                    for kk in 0..k {
                        panel[kk * mr + r] = 0.0;
                    }
                }
            }
        }
        PackedA {
            kernel,
            m,
            k,
            data,
            bias,
        }
    }
}

impl<S: AsRef<[f32]>> PackedA<S> {
    pub fn m(&self) -> usize {
        self.m
    }
    pub fn k(&self) -> usize {
        self.k
    }
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Scratch floats one worker needs for a product with `n` columns.
    pub fn scratch_len(&self, n: usize) -> usize {
        k_block(self.k) * NC_LIMIT.min(n.div_ceil(self.kernel.nr) * self.kernel.nr)
    }
}

impl PackedA {
    /// Packs row-major `a` (`m * k`) and an optional bias of `m` values.
    pub fn new(kernel: Kernel, a: &[f32], m: usize, k: usize, bias: Option<&[f32]>) -> PackedA {
        assert_eq!(a.len(), m * k, "A must be m x k");
        let mr = kernel.mr;
        let panels = m.div_ceil(mr);
        let mut data = vec![0.0; panels * mr * k];
        for row in 0..m {
            let (p, r) = (row / mr, row % mr);
            for (kk, &v) in a[row * k..(row + 1) * k].iter().enumerate() {
                data[(p * k + kk) * mr + r] = v;
            }
        }
        let mut padded_bias = vec![0.0; panels * mr];
        if let Some(b) = bias {
            padded_bias[..m].copy_from_slice(&b[..m]);
        }
        PackedA {
            kernel,
            m,
            k,
            data,
            bias: padded_bias,
        }
    }
}

/// Columns of B, produced straight into packed panels.
pub trait PackB: Sync {
    /// Rows `k0..k0+kc` and columns `n0..n0+nc` of B into `dst`, as `panels.count(nc)`
    /// panels `kc * panels.nr` floats apart, each k-major and `panels.width(j, nc)` wide;
    /// columns past `nc` in the last panel are zero.
    fn pack(&self, k0: usize, kc: usize, n0: usize, nc: usize, panels: Panels, dst: &mut [f32]);
}

/// A dense row-major `K x N` matrix (e.g. a 1x1 stride-1 convolution's input).
pub struct DenseB<'a> {
    pub data: &'a [f32],
    pub n: usize,
}

impl PackB for DenseB<'_> {
    fn pack(&self, k0: usize, kc: usize, n0: usize, nc: usize, panels: Panels, dst: &mut [f32]) {
        let src = &self.data[k0 * self.n..(k0 + kc) * self.n];
        let nr = panels.nr;
        let full = nc / nr;
        match nr {
            8 => pack_dense::<8>(src, self.n, kc, n0, full, dst),
            16 => pack_dense::<16>(src, self.n, kc, n0, full, dst),
            32 => pack_dense::<32>(src, self.n, kc, n0, full, dst),
            _ => {
                for j in 0..full {
                    pack_dense_panel(src, self.n, n0 + j * nr, nr, nr, &mut dst[j * kc * nr..]);
                }
            }
        }
        if full * nr < nc {
            let width = panels.width(full, nc);
            let c0 = n0 + full * nr;
            let panel = &mut dst[full * kc * nr..];
            pack_dense_panel(src, self.n, c0, nc - full * nr, width, panel);
        }
    }
}

/// Whole `NR`-wide panels of [`DenseB`]: `NR` floats per row with no length checks in the
/// loop.
#[inline(always)]
fn pack_dense<const NR: usize>(
    src: &[f32],
    n: usize,
    kc: usize,
    n0: usize,
    full: usize,
    dst: &mut [f32],
) {
    for (j, panel) in dst.chunks_exact_mut(kc * NR).take(full).enumerate() {
        let c0 = n0 + j * NR;
        for (row, out) in src.chunks_exact(n).zip(panel.chunks_exact_mut(NR)) {
            let v: &[f32; NR] = row[c0..c0 + NR].try_into().expect("NR floats");
            out.copy_from_slice(v);
        }
    }
}

/// One panel `width` wide holding `cols` columns from `c0`, zeros after them.
fn pack_dense_panel(src: &[f32], n: usize, c0: usize, cols: usize, width: usize, dst: &mut [f32]) {
    for (row, out) in src.chunks_exact(n).zip(dst.chunks_exact_mut(width)) {
        out[..cols].copy_from_slice(&row[c0..c0 + cols]);
        zero_short(&mut out[cols..]);
    }
}

/// The im2col matrix of a `c x h x w` input: row `k = (ch*KH + ky)*KW + kx`, column
/// `n = oy*out_w + ox` holds `input[ch][oy*SH + ky*DH - pad_top][ox*SW + kx*DW - pad_left]`,
/// or `pad_value` outside the input.
pub struct Im2colB<'a> {
    pub input: &'a [f32],
    pub w: usize,
    pub h: usize,
    pub kernel_w: usize,
    pub kernel_h: usize,
    pub dilation_w: usize,
    pub dilation_h: usize,
    pub stride_w: usize,
    pub stride_h: usize,
    pub pad_left: usize,
    pub pad_top: usize,
    pub out_w: usize,
    pub pad_value: f32,
}

impl PackB for Im2colB<'_> {
    /// Row by row: each im2col row (one input channel and kernel tap) is, over the block's
    /// columns, one strided run of an input row per output row, copied in pieces that stay
    /// within one panel. The block's first output position is the only division.
    fn pack(&self, k0: usize, kc: usize, n0: usize, nc: usize, panels: Panels, dst: &mut [f32]) {
        let plane = self.w * self.h;
        let taps = self.kernel_w * self.kernel_h;
        let nr = panels.nr;
        let panel_len = kc * nr;
        let (oy0, ox0) = (n0 / self.out_w, n0 % self.out_w);
        let (mut ch, mut ky, mut kx) = (k0 / taps, (k0 % taps) / self.kernel_w, k0 % self.kernel_w);
        // The last panel's width, and its columns past nc zero.
        let last = nc / nr;
        let last_w = if last * nr < nc {
            panels.width(last, nc)
        } else {
            nr
        };
        let rem = nc - last * nr;
        if rem != 0 {
            let at = last * panel_len;
            for row in dst[at..at + kc * last_w].chunks_exact_mut(last_w) {
                zero_short(&mut row[rem..]);
            }
        }
        for kk in 0..kc {
            let channel = &self.input[ch * plane..(ch + 1) * plane];
            let (dy, dx) = (
                (ky * self.dilation_h) as isize - self.pad_top as isize,
                (kx * self.dilation_w) as isize - self.pad_left as isize,
            );
            let (mut oy, mut ox, mut col) = (oy0, ox0, 0);
            // Column `col` is in panel `panel` (`width` wide) at `within`.
            let (mut panel, mut within) = (0, 0);
            let mut width = if last == 0 { last_w } else { nr };
            while col < nc {
                let len = (self.out_w - ox).min(nc - col);
                let y = (oy * self.stride_h) as isize + dy;
                let x = (ox * self.stride_w) as isize + dx;
                // Columns lo..hi of this run read inside the input row; the rest is padding.
                let (lo, hi) = if y < 0 || y >= self.h as isize {
                    (0, 0)
                } else {
                    inside(x, self.stride_w, self.w, len)
                };
                let row =
                    &channel[(y.max(0) as usize * self.w).min(plane.saturating_sub(self.w))..];
                let mut cur = Cursor {
                    panel,
                    within,
                    width,
                    last,
                    last_w,
                    nr,
                    base: kk,
                    panel_len,
                };
                // Padding, the columns reading inside the row, padding.
                cur.fill(dst, lo, self.pad_value);
                if lo < hi {
                    let first = (x + (lo * self.stride_w) as isize) as usize;
                    cur.copy(dst, &row[first..], hi - lo, self.stride_w);
                }
                cur.fill(dst, len - hi, self.pad_value);
                (panel, within, width) = (cur.panel, cur.within, cur.width);
                col += len;
                ox = 0;
                oy += 1;
            }
            kx += 1;
            if kx == self.kernel_w {
                kx = 0;
                ky += 1;
                if ky == self.kernel_h {
                    ky = 0;
                    ch += 1;
                }
            }
        }
    }
}

/// Where the next column of an im2col row goes in the packed panels: panel `panel`
/// (`width` wide), column `within`; row `base` of each panel.
struct Cursor {
    panel: usize,
    within: usize,
    width: usize,
    last: usize,
    last_w: usize,
    nr: usize,
    base: usize,
    panel_len: usize,
}

impl Cursor {
    #[inline(always)]
    fn at(&self) -> usize {
        self.panel * self.panel_len + self.base * self.width + self.within
    }

    #[inline(always)]
    fn advance(&mut self, n: usize) {
        self.within += n;
        if self.within == self.width {
            self.within = 0;
            self.panel += 1;
            self.width = if self.panel == self.last {
                self.last_w
            } else {
                self.nr
            };
        }
    }

    /// `n` columns of `value`.
    #[inline(always)]
    fn fill(&mut self, dst: &mut [f32], mut n: usize, value: f32) {
        while n > 0 {
            let piece = (self.width - self.within).min(n);
            for v in &mut dst[self.at()..][..piece] {
                *v = value;
            }
            self.advance(piece);
            n -= piece;
        }
    }

    /// `n` columns from `src` every `stride`; whole 8-wide panels without the piece logic.
    #[inline(always)]
    fn copy(&mut self, dst: &mut [f32], src: &[f32], mut n: usize, stride: usize) {
        let mut at = 0;
        while n > 0 {
            if self.within == 0 && self.width == 8 && n >= 8 && src.len() >= at + 8 * stride + 8 {
                // Whole panels: 8 columns per panel, panel_len floats apart.
                let mut d = self.at();
                while n >= 8 && self.width == 8 && src.len() >= at + 8 * stride + 8 {
                    copy_strided(&mut dst[d..d + 8], &src[at..], stride);
                    at += 8 * stride;
                    n -= 8;
                    self.panel += 1;
                    d += self.panel_len;
                    if self.panel == self.last {
                        self.width = self.last_w;
                    }
                }
                continue;
            }
            let piece = (self.width - self.within).min(n);
            let d = self.at();
            copy_strided(&mut dst[d..d + piece], &src[at..], stride);
            at += piece * stride;
            self.advance(piece);
            n -= piece;
        }
    }
}

/// For columns `i in 0..len` reading input column `x + i*stride`: the range `lo..hi` of
/// those inside `0..w` (empty as `lo == hi` when none is).
#[inline(always)]
fn inside(x: isize, stride: usize, w: usize, len: usize) -> (usize, usize) {
    if stride == 1 {
        // The common case, without the divisions (they cost more than the copy).
        let lo = (-x).max(0) as usize;
        let hi = (w as isize - x).clamp(0, len as isize) as usize;
        return (lo.min(hi), hi);
    }
    // ceil(v / stride) for v > 0, by a shift for power-of-two strides (the usual 2).
    let s = stride as isize;
    let ceil_div = |v: isize| {
        if stride.is_power_of_two() {
            (v + s - 1) >> stride.trailing_zeros()
        } else {
            (v + s - 1) / s
        }
    };
    let lo = if x >= 0 { 0 } else { ceil_div(-x) as usize };
    let hi = if x >= w as isize {
        0
    } else {
        ceil_div(w as isize - x) as usize
    };
    let hi = hi.min(len);
    (lo.min(hi), hi)
}

/// `dst[i] = src[i * stride]` for a run of at most `NR_MAX` floats; stride 2 (the usual
/// downsampling) eight at a time without a loop.
#[inline(always)]
fn copy_strided(dst: &mut [f32], src: &[f32], stride: usize) {
    match stride {
        1 => copy_short(dst, &src[..dst.len()]),
        #[cfg(target_arch = "aarch64")]
        2 if dst.len() == 8 && src.len() >= 16 => {
            use std::arch::aarch64::*;
            // SAFETY: 16 floats readable, 8 writable (checked); NEON is baseline. (Plain
            // loads and `uzp1`: `ld2` costs the A72 more.)
            unsafe {
                let p = src.as_ptr();
                let lo = vuzp1q_f32(vld1q_f32(p), vld1q_f32(p.add(4)));
                let hi = vuzp1q_f32(vld1q_f32(p.add(8)), vld1q_f32(p.add(12)));
                vst1q_f32(dst.as_mut_ptr(), lo);
                vst1q_f32(dst.as_mut_ptr().add(4), hi);
            }
        }
        2 if dst.len() == 8 && src.len() >= 15 => {
            let s: &[f32; 15] = src[..15].try_into().expect("15 floats");
            let v: [f32; 8] = std::array::from_fn(|i| s[2 * i]);
            dst.copy_from_slice(&v);
        }
        _ => {
            for (v, &r) in dst.iter_mut().zip(src.iter().step_by(stride)) {
                *v = r;
            }
        }
    }
}

/// Zeroes a few floats (a panel's padding columns) with stores in place: `fill(0.0)`
/// becomes a `memset` call per row, which costs more than the stores.
#[inline(always)]
fn zero_short(xs: &mut [f32]) {
    // An opaque zero, so the loop stays stores instead of turning into `memset`.
    let z = std::hint::black_box(0.0f32);
    for x in xs {
        *x = z;
    }
}

/// Copies a run of at most `NR_MAX` floats in 8-wide blocks: a memcpy call costs more.
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
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

/// K block size: K split into equal blocks of at most `KC_MAX`.
fn k_block(k: usize) -> usize {
    k.div_ceil(k.div_ceil(KC_MAX).max(1)).max(1)
}

/// `c (m x n, row-major) = act(a · b + bias)`, in parallel on `pool`, blocked for the L2 of
/// the pool's CPUs. `scratch` holds `pool.threads()` slices of `a.scratch_len(n)` floats.
pub fn gemm<S: AsRef<[f32]> + Sync>(
    a: &PackedA<S>,
    b: &dyn PackB,
    n: usize,
    c: &mut [f32],
    act: Activation,
    pool: &Pool,
    scratch: &mut [f32],
) -> LayerResult<()> {
    let blocking = Blocking::for_l2(pool.l2_bytes(), a.kernel);
    gemm_blocked(a, b, n, c, act, pool, scratch, blocking)
}

/// [`gemm`] with explicit blocking (`mc` / `nc` at most the limits the scratch is sized for).
#[allow(clippy::too_many_arguments)]
pub fn gemm_blocked<S: AsRef<[f32]> + Sync>(
    a: &PackedA<S>,
    b: &dyn PackB,
    n: usize,
    c: &mut [f32],
    act: Activation,
    pool: &Pool,
    scratch: &mut [f32],
    blocking: Blocking,
) -> LayerResult<()> {
    let (m, k, mr, nr) = (a.m, a.k, a.kernel.mr, a.kernel.nr);
    if c.len() != m * n {
        return Err(invalid(format!(
            "gemm output holds {} floats, expected {m} x {n}",
            c.len()
        )));
    }
    let per_worker = a.scratch_len(n);
    let threads = pool.threads();
    if scratch.len() < per_worker * threads {
        return Err(invalid("gemm scratch too small"));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if blocking.nc > NC_LIMIT || !blocking.nc.is_multiple_of(nr) || !blocking.mc.is_multiple_of(mr)
    {
        return Err(invalid(format!(
            "gemm blocking {blocking:?} does not fit the kernel"
        )));
    }
    let layout = a.kernel.panels();
    let panels = m.div_ceil(mr);
    let product = Product {
        n,
        unit_n: nr,
        nc_max: blocking.nc.min(n.div_ceil(nr) * nr),
        units: panels,
        unit_rows: mr,
        min_units: 4,
        weight_cols: WEIGHT_COLS,
    };
    let split = Split::choose(product, threads, pool.mixed_cores(), |c| {
        (0..layout.count(c)).map(|j| layout.width(j, c)).sum()
    });
    let (nc, panels_per_block) = (split.nc, split.units_per_block);
    let kc_max = k_block(k);

    let (tile_act, post) = TileAct::split(act);
    let post = post.then_some(act);
    let out_ptr = OutPtr(c.as_mut_ptr());
    let out = SharedMut::new(c);
    let scratch = SharedMut::new(&mut scratch[..per_worker * threads]);
    let task = |t: usize, worker: usize| {
        let micros = a.kernel.micros_for(pool.core_kind(worker));
        let mut local = LocalTile([0.0; MR_MAX * NR_MAX]);
        let (nb, mb) = split.block(t);
        let n0 = nb * nc;
        let ncur = nc.min(n - n0);
        let p0 = mb * panels_per_block;
        let p1 = panels.min(p0 + panels_per_block);
        // SAFETY: each worker index is used by one thread at a time.
        let packed_b = unsafe { scratch.slice(worker * per_worker, per_worker) };
        let mut k0 = 0;
        while k0 < k {
            let kc = kc_max.min(k - k0);
            b.pack(k0, kc, n0, ncur, layout, packed_b);
            let last = k0 + kc == k;
            let step = Step {
                kc,
                accumulate: k0 > 0,
                act: if last { tile_act } else { TileAct::None },
                post: if last { post } else { None },
            };
            let mc_panels = (blocking.mc / mr).max(1);
            let mut pb = p0;
            while pb < p1 {
                let pe = p1.min(pb + mc_panels);
                for jr in 0..layout.count(ncur) {
                    let col = n0 + jr * nr;
                    let width = layout.width(jr, ncur);
                    let micro = micros.for_width(width);
                    let cols = width.min(n0 + ncur - col);
                    let b_panel = &packed_b[jr * kc * nr..][..kc * width];
                    // Panels whose tiles are whole (all mr rows, all columns) go straight
                    // into the output; the rest through `run_tile`.
                    let mut first = pb;
                    if cols == width && step.post.is_none() {
                        let whole_end = pe.min(m / mr);
                        if whole_end > pb {
                            // SAFETY: panels pb..whole_end have mr rows inside m and the
                            // columns col..col+width inside n; A panels p*k+k0.. hold kc
                            // steps; no other tile or task writes these pieces of c.
                            unsafe {
                                whole_tiles(
                                    micro,
                                    kc,
                                    a.data.as_ref()[(pb * k + k0) * mr..].as_ptr(),
                                    k * mr,
                                    b_panel.as_ptr(),
                                    out_ptr.get().add(pb * mr * n + col),
                                    n,
                                    mr,
                                    a.bias.as_ref()[pb * mr..].as_ptr(),
                                    &step,
                                    whole_end - pb,
                                );
                            }
                            first = whole_end;
                        }
                    }
                    for p in first..pe {
                        let a_panel = &a.data.as_ref()[(p * k + k0) * mr..(p * k + k0 + kc) * mr];
                        let rows = mr.min(m - p * mr);
                        run_tile(
                            a, micro, p, rows, col, cols, width, n, a_panel, b_panel, &step, &out,
                            &mut local,
                        );
                    }
                }
                pb = pe;
            }
            k0 += kc;
        }
    };
    pool.run(split.tasks(), &task)
        .map_err(|e| invalid(e.to_string()))
}

/// `count` whole tiles down one column panel: A panels `a_step` floats apart from `a`, the
/// output tile of the first at `out` (rows `n` apart), the next `mr` rows further.
///
/// # Safety
/// Every tile's A panel, biases and `mr` output rows of the panel's width are valid; the
/// micro-kernel is this machine's.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
unsafe fn whole_tiles(
    micro: MicroKernel,
    kc: usize,
    mut a: *const f32,
    a_step: usize,
    b: *const f32,
    mut out: *mut f32,
    n: usize,
    mr: usize,
    mut bias: *const f32,
    step: &Step,
    count: usize,
) {
    let mut tile = Tile {
        rows: [out; MR_MAX],
        accumulate: step.accumulate,
        bias,
        act: step.act,
    };
    for _ in 0..count {
        for (r, row) in tile.rows.iter_mut().enumerate() {
            *row = out.wrapping_add(r * n);
        }
        tile.bias = bias;
        micro(kc, a, b, &tile);
        a = a.add(a_step);
        bias = bias.add(mr);
        out = out.wrapping_add(mr * n);
    }
}

/// The output's base pointer, shared by the tasks (each writes its own tiles).
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint tiles through it.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// (A method, so closures capture the wrapper and not its raw-pointer field.)
    #[inline(always)]
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// A tile buffer for partial tiles, set up once per task (zeroing it per tile costs as much
/// as a short-K micro-kernel call).
struct LocalTile([f32; MR_MAX * NR_MAX]);

/// What every tile of one K block does.
struct Step {
    kc: usize,
    accumulate: bool,
    /// Fused into the kernel's store.
    act: TileAct,
    /// Run over the stored rows afterwards.
    post: Option<Activation>,
}

/// One micro-kernel call for panel `p` (its first `rows` rows) at output columns
/// `col..col+cols`, plus the activations the kernel does not fuse.
#[allow(clippy::too_many_arguments)]
#[inline]
fn run_tile<S: AsRef<[f32]>>(
    a: &PackedA<S>,
    micro: MicroKernel,
    p: usize,
    rows: usize,
    col: usize,
    cols: usize,
    width: usize,
    n: usize,
    a_panel: &[f32],
    b_panel: &[f32],
    step: &Step,
    out: &SharedMut<f32>,
    local: &mut LocalTile,
) {
    let mr = a.kernel.mr;
    let kc = step.kc;
    // Partial tiles go through the task's local buffer; padding rows land there and are
    // dropped.
    let base = local.0.as_mut_ptr();
    let full = cols == width;
    let mut tile = Tile {
        rows: [base; MR_MAX],
        accumulate: step.accumulate,
        bias: a.bias.as_ref()[p * mr..].as_ptr(),
        act: step.act,
    };
    for (r, row) in tile.rows.iter_mut().enumerate().take(mr) {
        *row = if r < rows {
            // SAFETY: (row, col..col+cols) pieces are disjoint across tiles and tasks.
            let d = unsafe { out.slice((p * mr + r) * n + col, cols) };
            if full {
                d.as_mut_ptr()
            } else {
                if step.accumulate {
                    local.0[r * NR_MAX..r * NR_MAX + cols].copy_from_slice(d);
                }
                // SAFETY: r < MR_MAX rows of NR_MAX floats.
                unsafe { base.add(r * NR_MAX) }
            }
        } else {
            // SAFETY: as above.
            unsafe { base.add(r * NR_MAX) }
        };
    }
    debug_assert!(kc > 0 && a_panel.len() == kc * mr && b_panel.len() == kc * width);
    // SAFETY: panel sizes checked above; every row pointer has `width` writable floats; the
    // kernel came from this machine's family.
    unsafe { micro(kc, a_panel.as_ptr(), b_panel.as_ptr(), &tile) };
    if full && step.post.is_none() {
        return;
    }
    for r in 0..rows {
        // SAFETY: as above.
        let d = unsafe { out.slice((p * mr + r) * n + col, cols) };
        if !full {
            d.copy_from_slice(&local.0[r * NR_MAX..r * NR_MAX + cols]);
        }
        if let Some(act) = step.post {
            act.apply_slice(d);
        }
    }
}

#[cfg(test)]
mod tests;
