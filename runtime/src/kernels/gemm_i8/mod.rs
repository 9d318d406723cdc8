//! Quantized GEMM `C[M x N] = A[M x K] · B[K x N]` with int8 (INT8 or INT7) operands and int32
//! accumulation over the whole K, followed by the fused epilogue ([`Requant::store`]) that
//! writes fp32 or int8 per output row (= output channel).
//!
//! Structure (mirrors `gemm_f32`, without K blocking):
//! * A (weights) is packed once at load ([`PackedA8`]) into panels of `mr` rows.
//! * B is packed per call, `nc` columns at a time, into the worker's scratch ([`PackB8`]);
//!   im2col happens inside that packing. `nc` keeps the packed block in L2 even for K = 4608.
//! * A micro-kernel computes one `mr x nr` tile over the full K into int32 accumulators, and
//!   the epilogue requantizes the tile right away while it is hot.
//!
//! Layout shared by packing and kernels: K is zero-padded to a multiple of `kstep`; an A panel
//! is `[K/kstep][mr][kstep]` and a B panel `[K/kstep][nr][kstep]` (int8). A [`Family`] fixes
//! precision, `mr`, `nr` and `kstep`, and holds one micro-kernel per core type (Cortex-A53,
//! Cortex-A72, other) that all read this layout, so one [`PackedA8`] serves every worker.
//!
//! Exactness: every kernel returns the exact int32 sum. SIMD kernels sum a few products in
//! int16 lanes before widening; each documents its flush interval and the bound
//! (`n · max|a·b| ≤ 32767`) that keeps it exact for values in ±127 (INT8) / ±63 (INT7).

use crate::cpu::CoreKind;
use crate::error::{invalid, LayerResult};
use crate::kernels::im2col::Grid;
use crate::kernels::quantize::store_requant;
use crate::kernels::requant::{OutBuf, Requant};
use crate::pool::{Pool, SharedMut};
use crate::quant::Precision;

pub mod generic;

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

/// Largest tile any kernel uses; accumulators are passed as `[i32; MR_MAX * NR_MAX]` with
/// element (r, j) at `r * NR_MAX + j`.
pub const MR_MAX: usize = 8;
pub const NR_MAX: usize = 16;

/// Bytes of packed B one worker keeps per column block: stays in L2 next to the A panel.
const B_BLOCK_BYTES: usize = 192 * 1024;
/// Upper bound on columns per block (more only lengthens the tail task).
const NC_MAX: usize = 512;

/// Int32 accumulators of one tile, row stride [`NR_MAX`].
pub type Acc = [i32; MR_MAX * NR_MAX];

/// `kp` steps of an A panel (`kp * mr * kstep` bytes) times a B panel (`kp * nr * kstep`
/// bytes) into `acc` (overwritten, rows < mr, columns < nr).
///
/// # Safety
/// `a` and `b` must hold the bytes above; the CPU must support the kernel's instructions
/// (guaranteed for kernels obtained from a [`Family`]).
pub type MicroFn = unsafe fn(kp: usize, a: *const i8, b: *const i8, acc: &mut Acc);

/// One micro-kernel of a family, scheduled for one kind of core.
#[derive(Clone, Copy, Debug)]
pub struct MicroKernel {
    pub name: &'static str,
    pub func: MicroFn,
}

impl MicroKernel {
    /// Runs the kernel on whole panels, checking their sizes.
    pub fn run(&self, family: &Family, kp: usize, a: &[i8], b: &[i8], acc: &mut Acc) {
        assert!(
            a.len() >= kp * family.mr * family.kstep && b.len() >= kp * family.nr * family.kstep
        );
        // SAFETY: sizes checked above; the family was built only if the CPU supports it.
        unsafe { (self.func)(kp, a.as_ptr(), b.as_ptr(), acc) }
    }
}

/// A set of micro-kernels sharing one packing layout.
#[derive(Clone, Copy, Debug)]
pub struct Family {
    pub name: &'static str,
    pub precision: Precision,
    pub mr: usize,
    pub nr: usize,
    pub kstep: usize,
    /// Variants for Cortex-A53, Cortex-A72 and any other core.
    a53: MicroKernel,
    a72: MicroKernel,
    other: MicroKernel,
}

impl Family {
    /// One family whose kernel is the same on every core.
    const fn uniform(
        name: &'static str,
        precision: Precision,
        mr: usize,
        nr: usize,
        kstep: usize,
        micro: MicroKernel,
    ) -> Family {
        Family::per_core(name, precision, mr, nr, kstep, micro, micro, micro)
    }

    #[allow(clippy::too_many_arguments)]
    const fn per_core(
        name: &'static str,
        precision: Precision,
        mr: usize,
        nr: usize,
        kstep: usize,
        a53: MicroKernel,
        a72: MicroKernel,
        other: MicroKernel,
    ) -> Family {
        assert!(mr <= MR_MAX && nr <= NR_MAX);
        Family {
            name,
            precision,
            mr,
            nr,
            kstep,
            a53,
            a72,
            other,
        }
    }

    /// The portable reference kernels.
    pub fn generic(p: Precision) -> Family {
        generic::family(p)
    }

    /// The fastest family this CPU supports.
    pub fn best(p: Precision) -> Family {
        #[cfg(target_arch = "x86_64")]
        if let Some(f) = x86_64::detect(p) {
            return f;
        }
        #[cfg(target_arch = "aarch64")]
        return aarch64::family(p);
        #[allow(unreachable_code)]
        generic::family(p)
    }

    /// The generic family and every SIMD family this CPU runs (for tests and benches).
    pub fn all_available(p: Precision) -> Vec<Family> {
        let mut v = vec![generic::family(p)];
        #[cfg(target_arch = "x86_64")]
        v.extend(x86_64::detect(p));
        #[cfg(target_arch = "aarch64")]
        v.push(aarch64::family(p));
        v
    }

    /// The variant for a worker on `core`.
    pub fn micro_for(&self, core: CoreKind) -> MicroKernel {
        match core {
            CoreKind::CortexA53 => self.a53,
            CoreKind::CortexA72 => self.a72,
            CoreKind::Other => self.other,
        }
    }

    /// K rounded up to whole steps.
    fn k_padded(&self, k: usize) -> usize {
        k.div_ceil(self.kstep).max(1) * self.kstep
    }

    /// Columns per block: the packed `K x nc` block fits [`B_BLOCK_BYTES`].
    fn nc_cap(&self, k: usize) -> usize {
        let cols = (B_BLOCK_BYTES / self.k_padded(k)) / self.nr * self.nr;
        cols.clamp(self.nr, NC_MAX)
    }
}

/// A (M x K int8, row-major) packed for one family.
#[derive(Debug)]
pub struct PackedA8 {
    family: Family,
    m: usize,
    k: usize,
    /// Panel `p` (rows `p*mr..`) at `p * kpad * mr`: element (r, k) at
    /// `((k / kstep) * mr + r) * kstep + k % kstep`. Rows past M and K padding are zero.
    data: Vec<i8>,
}

impl PackedA8 {
    /// Packs row-major `a` (`m * k`).
    pub fn new(family: Family, a: &[i8], m: usize, k: usize) -> PackedA8 {
        assert_eq!(a.len(), m * k, "A must be m x k");
        let (mr, ks) = (family.mr, family.kstep);
        let kpad = family.k_padded(k);
        let mut data = vec![0i8; m.div_ceil(mr) * mr * kpad];
        for row in 0..m {
            let (p, r) = (row / mr, row % mr);
            let panel = &mut data[p * mr * kpad..(p + 1) * mr * kpad];
            for (kk, &v) in a[row * k..(row + 1) * k].iter().enumerate() {
                panel[((kk / ks) * mr + r) * ks + kk % ks] = v;
            }
        }
        PackedA8 { family, m, k, data }
    }

    pub fn m(&self) -> usize {
        self.m
    }
    pub fn k(&self) -> usize {
        self.k
    }
    pub fn family(&self) -> Family {
        self.family
    }

    /// Scratch f32 elements one worker needs for a product with `n` columns (the packed
    /// int8 B block lives there).
    pub fn scratch_len(&self, n: usize) -> usize {
        let f = &self.family;
        let nc = f.nc_cap(self.k).min(n.div_ceil(f.nr).max(1) * f.nr);
        (nc * f.k_padded(self.k)).div_ceil(4)
    }
}

/// Columns of B, produced straight into packed panels.
pub trait PackB8: Sync {
    /// Rows `k0..k0+kc` (`k0` a multiple of `kstep`) and columns `n0..n0+nc` of B into `dst`
    /// as `ceil(nc/nr)` panels of `ceil(kc/kstep) * nr * kstep` bytes; in a panel, (k, j) is at
    /// `((k / kstep) * nr + j) * kstep + k % kstep`. Rows past `kc` and columns past `nc` are 0.
    #[allow(clippy::too_many_arguments)]
    fn pack(
        &self,
        k0: usize,
        kc: usize,
        n0: usize,
        nc: usize,
        nr: usize,
        kstep: usize,
        dst: &mut [i8],
    );
}

/// A dense row-major `K x N` matrix (e.g. a 1x1 stride-1 convolution's input).
pub struct DenseB8<'a> {
    pub data: &'a [i8],
    pub n: usize,
}

impl PackB8 for DenseB8<'_> {
    fn pack(
        &self,
        k0: usize,
        kc: usize,
        n0: usize,
        nc: usize,
        nr: usize,
        kstep: usize,
        dst: &mut [i8],
    ) {
        let panel_len = kc.div_ceil(kstep) * nr * kstep;
        for (jp, panel) in dst
            .chunks_exact_mut(panel_len)
            .take(nc.div_ceil(nr))
            .enumerate()
        {
            let c0 = n0 + jp * nr;
            let cols = nr.min(n0 + nc - c0);
            if cols < nr || !kc.is_multiple_of(kstep) {
                panel.fill(0);
            }
            for kk in 0..kc {
                let src = &self.data[(k0 + kk) * self.n + c0..][..cols];
                scatter(panel, kk, nr, kstep, src);
            }
        }
    }
}

/// Writes the values of row `kk` (columns `0..src.len()`) into a packed panel.
#[inline(always)]
fn scatter(panel: &mut [i8], kk: usize, nr: usize, kstep: usize, src: &[i8]) {
    let base = (kk / kstep) * nr * kstep + kk % kstep;
    let dst = &mut panel[base..base + (src.len().max(1) - 1) * kstep + 1];
    for (j, &v) in src.iter().enumerate() {
        dst[j * kstep] = v;
    }
}

/// The im2col matrix of a `c x h x w` int8 input: row `k = (ch*KH + ky)*KW + kx`, column
/// `n = oy*out_w + ox` holds `input[ch][oy*SH + ky*DH - pad_top][ox*SW + kx*DW - pad_left]`,
/// or 0 outside the input.
pub struct Im2colB8<'a> {
    pub input: &'a [i8],
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
}

impl PackB8 for Im2colB8<'_> {
    fn pack(
        &self,
        k0: usize,
        kc: usize,
        n0: usize,
        nc: usize,
        nr: usize,
        kstep: usize,
        dst: &mut [i8],
    ) {
        let plane = self.w * self.h;
        let taps = self.kernel_w * self.kernel_h;
        let panel_len = kc.div_ceil(kstep) * nr * kstep;
        for (jp, panel) in dst
            .chunks_exact_mut(panel_len)
            .take(nc.div_ceil(nr))
            .enumerate()
        {
            let c0 = n0 + jp * nr;
            let cols = nr.min(n0 + nc - c0);
            if cols < nr || !kc.is_multiple_of(kstep) {
                panel.fill(0);
            }
            let grid = Grid {
                out_w: self.out_w,
                stride_w: self.stride_w,
                stride_h: self.stride_h,
                pad_left: self.pad_left,
                pad_top: self.pad_top,
            };
            let (runs, n_runs) = grid.runs(c0, cols);
            let mut row = [0i8; NR_MAX];
            for kk in 0..kc {
                let kg = k0 + kk;
                let (ch, ky, kx) = (kg / taps, (kg % taps) / self.kernel_w, kg % self.kernel_w);
                let channel = &self.input[ch * plane..(ch + 1) * plane];
                for &(start, len, y0, x0) in &runs[..n_runs] {
                    let seg = &mut row[start..start + len];
                    let y = y0 + (ky * self.dilation_h) as isize;
                    if y < 0 || y >= self.h as isize {
                        seg.fill(0);
                        continue;
                    }
                    let line = &channel[y as usize * self.w..][..self.w];
                    let x = x0 + (kx * self.dilation_w) as isize;
                    if self.stride_w == 1 && x >= 0 && x as usize + len <= self.w {
                        seg.copy_from_slice(&line[x as usize..x as usize + len]);
                    } else {
                        for (i, v) in seg.iter_mut().enumerate() {
                            let xi = x + (i * self.stride_w) as isize;
                            *v = if xi >= 0 && xi < self.w as isize {
                                line[xi as usize]
                            } else {
                                0
                            };
                        }
                    }
                }
                scatter(panel, kk, nr, kstep, &row[..cols]);
            }
        }
    }
}

/// The output seen by parallel tasks, which write disjoint row pieces.
enum SharedOut<'a> {
    F32(SharedMut<'a, f32>),
    I8(SharedMut<'a, i8>),
}

impl SharedOut<'_> {
    /// # Safety
    /// Pieces handed out concurrently must not overlap.
    unsafe fn piece(&self, at: usize, len: usize) -> OutBuf<'_> {
        match self {
            SharedOut::F32(s) => OutBuf::F32(s.slice(at, len)),
            SharedOut::I8(s) => OutBuf::I8(s.slice(at, len)),
        }
    }
}

/// `out (m x n, row-major, row = output channel) = epilogue(a · b)`, in parallel on `pool`.
/// `scratch` holds `pool.threads()` slices of `a.scratch_len(n)` floats; each worker uses the
/// micro-kernel for its core type (`pool.core_kind(worker)`).
pub fn gemm(
    a: &PackedA8,
    b: &dyn PackB8,
    n: usize,
    requant: &Requant,
    out: OutBuf,
    pool: &Pool,
    scratch: &mut [f32],
) -> LayerResult<()> {
    let f = a.family;
    let (m, k, mr, nr, ks) = (a.m, a.k, f.mr, f.nr, f.kstep);
    // The generic family stays a plain reference end to end; the others use the vectorised
    // epilogue, which gives identical results.
    let simd_epilogue = f.name != Family::generic(f.precision).name;
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
    let per_worker = a.scratch_len(n);
    let threads = pool.threads();
    if scratch.len() < per_worker * threads {
        return Err(invalid("quantized gemm scratch too small"));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let kpad = f.k_padded(k);
    let kp = kpad / ks;
    // Column blocks: at most nc_cap, and at least one per worker when there is enough work.
    let nc = f
        .nc_cap(k)
        .min(n.div_ceil(threads).div_ceil(nr) * nr)
        .max(nr);
    let n_blocks = n.div_ceil(nc);
    // Few column blocks (late small feature maps): split the rows as well.
    let panels = m.div_ceil(mr);
    let m_blocks = if n_blocks >= threads {
        1
    } else {
        threads.div_ceil(n_blocks).min(panels).max(1)
    };
    let panels_per_block = panels.div_ceil(m_blocks);
    let m_blocks = panels.div_ceil(panels_per_block);

    let out = match out {
        OutBuf::F32(o) => SharedOut::F32(SharedMut::new(o)),
        OutBuf::I8(o) => SharedOut::I8(SharedMut::new(o)),
    };
    let scratch = SharedMut::new(&mut scratch[..per_worker * threads]);
    let task = |t: usize, worker: usize| {
        let micro = f.micro_for(pool.core_kind(worker));
        let (nb, mb) = (t % n_blocks, t / n_blocks);
        let n0 = nb * nc;
        let ncur = nc.min(n - n0);
        let p0 = mb * panels_per_block;
        let p1 = panels.min(p0 + panels_per_block);
        // SAFETY: each worker index is used by one thread at a time.
        let floats = unsafe { scratch.slice(worker * per_worker, per_worker) };
        let packed_b: &mut [i8] = bytemuck::cast_slice_mut(floats);
        let panel_len = kpad * nr;
        let packed_b = &mut packed_b[..ncur.div_ceil(nr) * panel_len];
        b.pack(0, k, n0, ncur, nr, ks, packed_b);
        let mut acc: Acc = [0; MR_MAX * NR_MAX];
        // A panel (≤ mr·K bytes) stays in L1 while it meets every B panel of the block (L2).
        for p in p0..p1 {
            let a_panel = &a.data[p * mr * kpad..(p + 1) * mr * kpad];
            let rows = mr.min(m - p * mr);
            for (jp, b_panel) in packed_b.chunks_exact(panel_len).enumerate() {
                let col = n0 + jp * nr;
                let cols = nr.min(n0 + ncur - col);
                micro.run(&f, kp, a_panel, b_panel, &mut acc);
                for r in 0..rows {
                    let c = p * mr + r;
                    // SAFETY: (row, col..col+cols) pieces are disjoint across tiles and tasks.
                    let mut dst = unsafe { out.piece(c * n + col, cols) };
                    let accs = &acc[r * NR_MAX..r * NR_MAX + cols];
                    if simd_epilogue {
                        store_requant(requant, c, accs, &mut dst, 0);
                    } else {
                        requant.store(c, accs, &mut dst, 0);
                    }
                }
            }
        }
    };
    pool.run(n_blocks * m_blocks, &task)
        .map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests;
