//! Quantized GEMM `C[M x N] = A[M x K] · B[K x N]` with int8 (INT8 or INT7) operands and int32
//! accumulation over the whole K, followed by the fused epilogue (`kernels::requant`) that
//! writes fp32 or int8 per output row (= output channel).
//!
//! Structure:
//! * A (weights) is packed once at load ([`PackedA8`]) in the layout of every kernel the pool's
//!   cores will run (a big.LITTLE pool may need two).
//! * B is packed per call, `nc` columns at a time, into the worker's scratch, in the layout of
//!   that worker's kernel ([`pack`]); im2col happens inside that packing, row by row.
//! * A micro-kernel computes one `mr x nr` tile over the full K and stores it through the
//!   epilogue while it is in registers ([`Micro::Fused`]), or returns int32 sums that the
//!   driver stores ([`Micro::Acc`]).
//!
//! Kernels per core (ARMv8.0 has no dot product; each layout is documented on [`Layout`]):
//! * Cortex-A72 (out of order, one integer-multiply pipe beside a second NEON pipe):
//!   [`Layout::Pairs32`], 4 x 4 tiles. INT8: `smull` + `smlal2` + `sadalp`, 8 MACs per
//!   multiply. INT7: the sum of two 7-bit values fits a byte, so products of pair sums
//!   `(a₂ᵢ + b₂ᵢ₊₁)(a₂ᵢ₊₁ + b₂ᵢ)` give two MACs each (Winograd's inner-product identity; the
//!   `Σ a₂ᵢa₂ᵢ₊₁` and `Σ b₂ᵢb₂ᵢ₊₁` terms are subtracted after the loop): half the multiplies,
//!   the additions run on the other pipe.
//! * Cortex-A53 (in order, dual issue): [`Layout::Wide16`], 8 x 8 tiles, multiply-accumulate
//!   by element. INT8: `smlal` into int32. INT7: `mla` into int16 lanes, 8 products per lane
//!   before one widening.
//! * x86_64 (AVX-512 VNNI, AVX-VNNI or AVX2, by CPU features; `EQ_X86_KERNEL` overrides)
//!   and the portable reference: [`Layout::Steps`].
//!
//! Exactness: every kernel computes the exact int32 sum. Each documents its int16 flush
//! interval next to the bound (`n · max|product| ≤ 32767`) that keeps it exact for values in
//! ±127 (INT8) / ±63 (INT7); the tests run every kernel at all-±qmax operands with K ≥ 8192.

use crate::cpu::CoreKind;
use crate::error::{invalid, LayerResult};
use crate::kernels::quantize::store_requant;
use crate::kernels::requant::{OutBuf, Requant};
use crate::kernels::split::{Product, Split};
use crate::pool::Pool;
use crate::quant::Precision;

pub(crate) mod generic;
pub(crate) mod pack;

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_64;

pub use pack::{BSource, DenseB8, Im2colB8};

/// Largest tile any kernel uses; [`Acc`] holds element (r, j) at `r * NR_MAX + j`.
pub const MR_MAX: usize = 8;
pub const NR_MAX: usize = 16;

/// Bytes a kernel may read past the end of a packed operand: software-pipelined loops load
/// the next step before they know whether there is one.
pub const OVERREAD: usize = 64;

/// Bytes of packed B one worker keeps per column block: stays in L2 next to the A panel.
const B_BLOCK_BYTES: usize = 192 * 1024;
/// Upper bound on columns per block (more only lengthens the tail task).
pub(crate) const NC_MAX: usize = 512;

/// Int32 accumulators of one tile, row stride [`NR_MAX`].
pub type Acc = [i32; MR_MAX * NR_MAX];

/// How a kernel wants its operands packed. A "panel" is `mr` rows of A or `nr` columns of B
/// over the whole (padded) K; rows past M, columns past N and K padding hold zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// int8, K in steps of `s`: A panel `[K/s][mr][s]`, B panel `[K/s][nr][s]`.
    Steps(usize),
    /// int8 as `Steps(32)`, but each row's (column's) 32 values of a step are stored even k
    /// first, then odd k: position `p` holds k offset `2p` (p < 16) or `2(p − 16) + 1`. Plain
    /// kernels do not care (A and B share the order); pair-sum kernels add position `p` of A
    /// to position `p ± 16` of B.
    Pairs32,
    /// int16, N (for A: M) along the lanes: A panel `[K][mr]`, B panel `[K][nr]`, K padded
    /// to pairs (a kernel step is two k).
    Wide16,
}

impl Layout {
    /// K values per step.
    pub const fn kstep(self) -> usize {
        match self {
            Layout::Steps(s) => s,
            Layout::Pairs32 => 32,
            Layout::Wide16 => 2,
        }
    }

    /// Bytes per packed value.
    pub const fn elem(self) -> usize {
        match self {
            Layout::Wide16 => 2,
            _ => 1,
        }
    }

    /// Position inside a step of k offset `o`.
    #[inline]
    pub fn pos(self, o: usize) -> usize {
        match self {
            Layout::Pairs32 if o.is_multiple_of(2) => o / 2,
            Layout::Pairs32 => 16 + o / 2,
            _ => o,
        }
    }

    /// K rounded up to whole steps (at least one).
    pub fn k_padded(self, k: usize) -> usize {
        k.div_ceil(self.kstep()).max(1) * self.kstep()
    }

    /// Bytes of one panel `width` lanes wide.
    pub fn panel_bytes(self, k: usize, width: usize) -> usize {
        self.k_padded(k) * width * self.elem()
    }
}

/// What a product writes: the epilogue's fp32 or int8, or the raw int32 sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutKind {
    F32,
    I8,
    I32,
}

impl OutKind {
    fn elem(self) -> usize {
        match self {
            OutKind::I8 => 1,
            _ => 4,
        }
    }
}

/// A row of tiles of the output (one A panel against consecutive B panels), as a fused
/// micro-kernel sees it.
#[derive(Clone, Copy)]
pub struct Tile<'a> {
    /// Output element (row 0, column 0) of the first tile, of type `kind`.
    pub out: *mut u8,
    /// Elements between output rows.
    pub stride: usize,
    /// The valid rows (at most `mr`) and columns (over all the tiles; the last tile may be
    /// partial).
    pub rows: usize,
    pub cols: usize,
    /// Output channel of row 0.
    pub row0: usize,
    pub requant: &'a Requant<'a>,
    pub kind: OutKind,
    /// Pair-sum kernels: `Σ a₂ᵢa₂ᵢ₊₁` of the rows and `Σ b₂ᵢb₂ᵢ₊₁` of the columns.
    pub row_sums: *const i32,
    pub col_sums: *const i32,
}

impl Tile<'_> {
    /// Tile `jp` of the row (columns `jp * nr..`), as a one-tile view.
    ///
    /// # Safety
    /// `jp * nr` is below `self.cols`.
    #[inline(always)]
    pub unsafe fn panel(&self, jp: usize, nr: usize) -> Tile<'_> {
        let col = jp * nr;
        Tile {
            out: self.out.add(col * self.kind.elem()),
            cols: nr.min(self.cols - col),
            col_sums: if self.col_sums.is_null() {
                self.col_sums
            } else {
                self.col_sums.add(col)
            },
            ..*self
        }
    }
}

/// Computes a tile's int32 sums over `kp` steps into `acc` (rows < mr, columns < nr).
pub type AccFn = unsafe fn(kp: usize, a: *const u8, b: *const u8, acc: &mut Acc);
/// Computes `panels` tiles (one A panel against that many consecutive B panels) over `kp`
/// steps and stores them through the epilogue.
pub type FusedFn = unsafe fn(kp: usize, a: *const u8, b: *const u8, panels: usize, t: &Tile);

#[derive(Clone, Copy, Debug)]
pub enum Micro {
    Acc(AccFn),
    Fused(FusedFn),
}

/// A micro-kernel and the packing it reads.
///
/// # Safety of `micro`
/// `a` must hold `kp * kstep * mr` values of the layout plus [`OVERREAD`] bytes, `b` the same
/// with `nr`; the CPU must support the kernel's instructions (guaranteed for kernels obtained
/// from [`KernelSet`] or [`all_kernels`]).
///
/// The fields are private to the crate: packing trusts `layout`, `mr` and `nr` while the
/// micro-kernels use their own constants, so only the crate's own kernels (handed out by
/// [`KernelSet`] and [`all_kernels`]) exist; read them with the getters.
#[derive(Debug)]
pub struct Kernel {
    pub(crate) name: &'static str,
    pub(crate) precision: Precision,
    pub(crate) layout: Layout,
    pub(crate) mr: usize,
    pub(crate) nr: usize,
    /// Needs `Σ x₂ᵢx₂ᵢ₊₁` per A row and B column ([`Layout::Pairs32`] pair-sum kernels).
    pub(crate) pair_sums: bool,
    /// Stores `Acc` results with the vectorised epilogue (else the scalar reference).
    pub(crate) simd_store: bool,
    pub(crate) micro: Micro,
}

impl Kernel {
    /// Whether this is one of the portable reference kernels.
    pub fn is_generic(&self) -> bool {
        std::ptr::eq(self, generic::kernel(self.precision))
            || std::ptr::eq(self, generic::kernel_wide16(self.precision))
    }

    /// Whether this is an x86_64 kernel without VNNI (AVX2 `vpmaddwd` / `vpmaddubsw`).
    pub fn is_x86_avx2(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return x86_64::is_avx2(self);
        #[allow(unreachable_code)]
        false
    }

    /// Name of the kernel (for logs and benchmarks).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Precision of the values it multiplies.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The packing it reads.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Rows of a tile.
    pub fn mr(&self) -> usize {
        self.mr
    }

    /// Columns of a tile.
    pub fn nr(&self) -> usize {
        self.nr
    }

    /// K values per step of its loop (`layout().kstep()`).
    pub fn kstep(&self) -> usize {
        self.layout.kstep()
    }

    /// Whether it needs the pair sums of A rows and B columns.
    pub fn pair_sums(&self) -> bool {
        self.pair_sums
    }

    /// Steps of the K loop for `k`.
    pub fn steps(&self, k: usize) -> usize {
        self.layout.k_padded(k) / self.layout.kstep()
    }

    /// Columns per B block: the packed block fits [`B_BLOCK_BYTES`].
    fn nc_cap(&self, k: usize) -> usize {
        let cols = B_BLOCK_BYTES / self.layout.panel_bytes(k, 1) / self.nr * self.nr;
        cols.clamp(self.nr, NC_MAX)
    }
}

/// The kernel each core type runs, for one precision.
#[derive(Clone, Copy, Debug)]
pub struct KernelSet {
    a53: &'static Kernel,
    a72: &'static Kernel,
    other: &'static Kernel,
    /// Which of the three slots a pool will actually use (their layouts get packed).
    used: [bool; 3],
}

const SLOTS: [CoreKind; 3] = [CoreKind::CortexA53, CoreKind::CortexA72, CoreKind::Other];

impl KernelSet {
    fn slot(core: CoreKind) -> usize {
        match core {
            CoreKind::CortexA53 => 0,
            CoreKind::CortexA72 => 1,
            CoreKind::Other => 2,
        }
    }

    /// The same kernel on every core.
    pub fn single(k: &'static Kernel) -> KernelSet {
        KernelSet {
            a53: k,
            a72: k,
            other: k,
            used: [true; 3],
        }
    }

    /// The portable reference kernels.
    pub fn generic(p: Precision) -> KernelSet {
        KernelSet::single(generic::kernel(p))
    }

    /// The fastest kernels of this CPU for every core type.
    pub fn best(p: Precision) -> KernelSet {
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = x86_64::detect(p) {
            return KernelSet::single(k);
        }
        #[cfg(target_arch = "aarch64")]
        {
            let (a53, a72) = aarch64::kernels(p);
            return KernelSet {
                a53,
                a72,
                other: a72,
                used: [true; 3],
            };
        }
        #[allow(unreachable_code)]
        KernelSet::generic(p)
    }

    /// [`KernelSet::best`], packing only for the core types in `cores` (a pool's workers).
    pub fn for_cores(p: Precision, cores: &[CoreKind]) -> KernelSet {
        let mut set = KernelSet::best(p);
        if !cores.is_empty() {
            set.used = [false; 3];
            for &c in cores {
                set.used[Self::slot(c)] = true;
            }
        }
        set
    }

    /// The kernel a worker on `core` runs (a slot the set was not built for falls back to
    /// one that it was, so a mismatched pool still computes the same result).
    pub fn for_core(&self, core: CoreKind) -> &'static Kernel {
        let s = Self::slot(core);
        let s = if self.used[s] {
            s
        } else {
            self.used.iter().position(|&u| u).unwrap_or(s)
        };
        [self.a53, self.a72, self.other][s]
    }

    /// Whether a pool of this set has workers on `core` (their kernels' layouts are packed).
    pub fn uses(&self, core: CoreKind) -> bool {
        self.used[Self::slot(core)]
    }

    /// The kernels in use, each once (no allocation: products ask at run time).
    pub fn used(&self) -> impl Iterator<Item = &'static Kernel> + Clone + '_ {
        SLOTS.iter().enumerate().filter_map(move |(i, &c)| {
            let k = self.for_core(c);
            // Skip a kernel an earlier slot already gave.
            let seen = SLOTS[..i]
                .iter()
                .any(|&e| std::ptr::eq(self.for_core(e), k));
            (!seen).then_some(k)
        })
    }

    pub fn precision(&self) -> Precision {
        self.a72.precision
    }
}

/// The generic kernel and every SIMD kernel this CPU runs (for tests and benches).
pub fn all_kernels(p: Precision) -> Vec<&'static Kernel> {
    let mut v = vec![generic::kernel(p), generic::kernel_wide16(p)];
    #[cfg(target_arch = "x86_64")]
    v.extend(x86_64::supported(p));
    #[cfg(target_arch = "aarch64")]
    {
        let (a53, a72) = aarch64::kernels(p);
        v.extend([a53, a72]);
    }
    v
}

/// Bytes with 64-byte alignment (packed operands, loaded with wide vector loads).
#[derive(Debug, Default)]
pub struct AlignedBytes {
    words: Vec<[u64; 8]>,
    len: usize,
}

impl AlignedBytes {
    pub fn zeroed(len: usize) -> AlignedBytes {
        AlignedBytes {
            words: vec![[0; 8]; len.div_ceil(64)],
            len,
        }
    }
    pub fn as_slice(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}

/// A packed for one layout and tile height.
#[derive(Debug)]
struct APack {
    layout: Layout,
    mr: usize,
    /// Panel `p` (rows `p*mr..`) at `p * panel_bytes`, then [`OVERREAD`] zero bytes.
    data: AlignedBytes,
    /// `Σ a₂ᵢa₂ᵢ₊₁` per row (rounded up to whole panels), for pair-sum kernels.
    row_sums: Vec<i32>,
}

/// A (M x K int8, row-major) packed for the kernels of a [`KernelSet`].
#[derive(Debug)]
pub struct PackedA8 {
    kernels: KernelSet,
    m: usize,
    k: usize,
    packs: Vec<APack>,
}

impl PackedA8 {
    /// Packs row-major `a` (`m * k`) for every kernel of `kernels` that is in use.
    pub fn new(kernels: KernelSet, a: &[i8], m: usize, k: usize) -> PackedA8 {
        assert_eq!(a.len(), m * k, "A must be m x k");
        let mut packs: Vec<APack> = Vec::new();
        for kern in kernels.used() {
            let have = packs
                .iter_mut()
                .find(|p| p.layout == kern.layout && p.mr == kern.mr);
            match have {
                Some(p) if kern.pair_sums && p.row_sums.is_empty() => {
                    p.row_sums = pack::pair_sums_rows(a, m, k, kern.mr);
                }
                Some(_) => {}
                None => {
                    let data = pack::pack_a(kern.layout, kern.mr, a, m, k);
                    let row_sums = if kern.pair_sums {
                        pack::pair_sums_rows(a, m, k, kern.mr)
                    } else {
                        Vec::new()
                    };
                    packs.push(APack {
                        layout: kern.layout,
                        mr: kern.mr,
                        data,
                        row_sums,
                    });
                }
            }
        }
        PackedA8 {
            kernels,
            m,
            k,
            packs,
        }
    }

    pub fn m(&self) -> usize {
        self.m
    }
    pub fn k(&self) -> usize {
        self.k
    }
    pub fn kernels(&self) -> KernelSet {
        self.kernels
    }

    fn pack_for(&self, kern: &Kernel) -> &APack {
        self.packs
            .iter()
            .find(|p| p.layout == kern.layout && p.mr == kern.mr)
            .expect("A is packed for every kernel of its set")
    }

    /// The product's geometry for the task split: column blocks are multiples of every used
    /// kernel's `nr` and at most what one worker's scratch holds, row units every `mr`.
    fn product(&self, m: usize, n: usize) -> Product {
        let used = self.kernels.used();
        let unit_n = used.clone().fold(1, |l, kern| lcm(l, kern.nr));
        let unit_m = used.clone().fold(1, |l, kern| lcm(l, kern.mr));
        let cap = used.map(|kern| kern.nc_cap(self.k)).min().unwrap_or(NC_MAX);
        let cap = (cap / unit_n * unit_n).max(unit_n);
        Product {
            n,
            unit_n,
            nc_max: cap.min(n.div_ceil(unit_n) * unit_n),
            units: m.div_ceil(unit_m),
            unit_rows: unit_m,
            min_units: 1,
            // Not priced by the plain rule this GEMM keeps: pricing int8 weights (a quarter
            // of the FP32 bytes) moved ResNet-50 INT8's splits but not its time (2 threads).
            weight_cols: 0,
        }
    }

    /// Scratch f32 elements one worker needs for a product with `n` columns.
    pub fn scratch_len(&self, n: usize) -> usize {
        let nc = self.product(self.m, n).nc_max;
        let bytes = self
            .kernels
            .used()
            .map(|kern| ScratchParts::new(kern, self.k, nc).total)
            .max()
            .unwrap_or(0);
        bytes.div_ceil(4)
    }
}

fn lcm(a: usize, b: usize) -> usize {
    let gcd = |mut x: usize, mut y: usize| {
        while y != 0 {
            (x, y) = (y, x % y);
        }
        x
    };
    a / gcd(a, b) * b
}

/// One worker's scratch: packed B block, column pair sums, and rows produced for packing.
struct ScratchParts {
    panels: usize,
    sums: usize,
    rows: usize,
    total: usize,
}

impl ScratchParts {
    fn new(kern: &Kernel, k: usize, nc: usize) -> ScratchParts {
        let panels = nc.div_ceil(kern.nr) * kern.layout.panel_bytes(k, kern.nr) + OVERREAD;
        let panels = panels.next_multiple_of(64);
        let sums = (nc.div_ceil(kern.nr) * kern.nr * 4).next_multiple_of(64);
        let rows = kern.layout.kstep().max(1) * nc;
        ScratchParts {
            panels,
            sums,
            rows,
            total: panels + sums + rows + 64,
        }
    }
}

/// Stores a tile of int32 sums through the epilogue, row by row.
///
/// # Safety
/// `t.out` must be writable for `t.rows` rows of `t.cols` elements at stride `t.stride`.
pub unsafe fn store_acc(acc: &Acc, t: &Tile, simd: bool) {
    for r in 0..t.rows {
        let c = t.row0 + r;
        let accs = &acc[r * NR_MAX..r * NR_MAX + t.cols];
        let mut dst = match t.kind {
            OutKind::I8 => {
                let p = (t.out as *mut i8).add(r * t.stride);
                OutBuf::I8(std::slice::from_raw_parts_mut(p, t.cols))
            }
            OutKind::F32 => {
                let p = (t.out as *mut f32).add(r * t.stride);
                OutBuf::F32(std::slice::from_raw_parts_mut(p, t.cols))
            }
            OutKind::I32 => {
                let p = (t.out as *mut i32).add(r * t.stride);
                std::slice::from_raw_parts_mut(p, t.cols).copy_from_slice(accs);
                continue;
            }
        };
        if simd {
            store_requant(t.requant, c, accs, &mut dst, 0);
        } else {
            t.requant.store(c, accs, &mut dst, 0);
        }
    }
}

/// A pointer that tasks may share (they write disjoint parts).
#[derive(Clone, Copy)]
struct SendPtr(*mut u8);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the field).
    fn get(self) -> *mut u8 {
        self.0
    }
}

/// `out (m x n, row-major, row = output channel) = epilogue(a · b)`, in parallel on `pool`.
/// `scratch` holds `pool.threads()` slices of `a.scratch_len(n)` floats; each worker uses the
/// kernel of its core type (`pool.core_kind(worker)`).
pub fn gemm(
    a: &PackedA8,
    b: &dyn BSource,
    n: usize,
    requant: &Requant,
    out: OutBuf,
    pool: &Pool,
    scratch: &mut [f32],
) -> LayerResult<()> {
    let m = a.m;
    if out.len() != m * n {
        return Err(invalid(format!(
            "quantized gemm output holds {} values, expected {m} x {n}",
            out.len()
        )));
    }
    if requant.scale_in.len() < m || requant.bias.is_some_and(|b| b.len() < m) {
        return Err(invalid(
            "quantized gemm: fewer scales or biases than output rows",
        ));
    }
    let (kind, ptr) = match out {
        OutBuf::F32(o) => (OutKind::F32, o.as_mut_ptr() as *mut u8),
        OutBuf::I8(o) => (OutKind::I8, o.as_mut_ptr() as *mut u8),
    };
    run(a, b, n, requant, kind, SendPtr(ptr), pool, scratch)
}

/// The raw int32 sums `out = a · b` (m x n, row-major), as [`gemm`] computes them before its
/// epilogue.
pub fn gemm_i32(
    a: &PackedA8,
    b: &dyn BSource,
    n: usize,
    out: &mut [i32],
    pool: &Pool,
    scratch: &mut [f32],
) -> LayerResult<()> {
    if out.len() != a.m * n {
        return Err(invalid("quantized gemm: output size does not match m x n"));
    }
    let none = Requant {
        scale_in: &[],
        bias: None,
        act: crate::ops::activation::Activation::None,
        top_scale: 1.0,
        qmax: 127,
    };
    let ptr = SendPtr(out.as_mut_ptr() as *mut u8);
    run(a, b, n, &none, OutKind::I32, ptr, pool, scratch)
}

#[allow(clippy::too_many_arguments)]
fn run(
    a: &PackedA8,
    b: &dyn BSource,
    n: usize,
    requant: &Requant,
    kind: OutKind,
    out_ptr: SendPtr,
    pool: &Pool,
    scratch: &mut [f32],
) -> LayerResult<()> {
    let (m, k) = (a.m, a.k);
    let per_worker = a.scratch_len(n);
    let threads = pool.threads();
    if scratch.len() < per_worker * threads {
        return Err(invalid("quantized gemm scratch too small"));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let product = a.product(m, n);
    let split = Split::columns_first(product, threads, pool.mixed_cores());
    let (nc, unit_m, units_per_block) = (split.nc, product.unit_rows, split.units_per_block);

    let elem = kind.elem();
    let scratch_ptr = SendPtr(scratch.as_mut_ptr() as *mut u8);
    let task = |t: usize, worker: usize| {
        let kern = a.kernels.for_core(pool.core_kind(worker));
        let ap = a.pack_for(kern);
        let (mr, nr) = (kern.mr, kern.nr);
        let (nb, mb) = split.block(t);
        let n0 = nb * nc;
        let ncur = nc.min(n - n0);
        let r0 = mb * units_per_block * unit_m;
        let r1 = m.min(r0 + units_per_block * unit_m);
        // SAFETY: each worker index is used by one thread at a time, and its slice of the
        // scratch is disjoint from the others'.
        let mine = unsafe {
            std::slice::from_raw_parts_mut(
                scratch_ptr.get().add(worker * per_worker * 4),
                per_worker * 4,
            )
        };
        let parts = ScratchParts::new(kern, k, ncur);
        let (panels, rest) = mine.split_at_mut(parts.panels);
        let (sums, rows) = rest.split_at_mut(parts.sums);
        let col_sums: &mut [i32] = bytemuck::cast_slice_mut(sums);
        let rows: &mut [i8] = bytemuck::cast_slice_mut(&mut rows[..parts.rows]);
        pack::pack_b(kern, b, k, n0, ncur, panels, col_sums, rows);
        let panel_a = kern.layout.panel_bytes(k, mr);
        let panel_b = kern.layout.panel_bytes(k, nr);
        let kp = kern.steps(k);
        let mut acc: Acc = [0; MR_MAX * NR_MAX];
        // An A panel (mr·K values) stays in L1 while it meets every B panel of the block.
        for p in r0 / mr..r1.div_ceil(mr) {
            let row0 = p * mr;
            let rows_here = mr.min(r1 - row0);
            let a_panel = ap.data.as_slice()[p * panel_a..].as_ptr();
            let row_sums = ap
                .row_sums
                .get(row0..)
                .map_or(std::ptr::null(), <[i32]>::as_ptr);
            let row = Tile {
                // SAFETY: inside the output (row0 < m, n0 < n); tasks write disjoint (row,
                // column) ranges.
                out: unsafe { out_ptr.get().add((row0 * n + n0) * elem) },
                stride: n,
                rows: rows_here,
                cols: ncur,
                row0,
                requant,
                kind,
                row_sums,
                col_sums: col_sums.as_ptr(),
            };
            let tiles = ncur.div_ceil(nr);
            // SAFETY: the panels hold kp steps (+ OVERREAD); the kernel came from a set built
            // for this CPU.
            unsafe {
                match kern.micro {
                    Micro::Fused(f) => f(kp, a_panel, panels.as_ptr(), tiles, &row),
                    Micro::Acc(f) => {
                        for jp in 0..tiles {
                            f(kp, a_panel, panels[jp * panel_b..].as_ptr(), &mut acc);
                            store_acc(&acc, &row.panel(jp, nr), kern.simd_store);
                        }
                    }
                }
            }
        }
    };
    pool.run(split.tasks(), &task)
        .map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests;
