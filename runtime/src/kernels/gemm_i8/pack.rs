//! Packing the int8 GEMM operands into the layouts of [`super::Layout`].
//!
//! B is produced row by row ([`BSource`]: a dense matrix lends its rows in place, an im2col
//! matrix writes each row from the input with one division per row, none per element) and
//! scattered into `nr`-column panels: widened to int16 for `Wide16`, interleaved by k steps
//! for `Steps`, and transposed 16 x 16 bytes at a time for `Pairs32`.

use super::{AlignedBytes, Kernel, Layout, OVERREAD};

/// The rows of a `K x N` int8 matrix.
pub trait BSource: Sync {
    /// Writes row `k`, columns `n0..n0 + dst.len()`.
    fn row_into(&self, k: usize, n0: usize, dst: &mut [i8]);

    /// Row `k`, columns `n0..n0 + len`, when it lies contiguously in memory. The packers
    /// use the first `len` values of the slice (and panic if it is shorter).
    fn row_slice(&self, _k: usize, _n0: usize, _len: usize) -> Option<&[i8]> {
        None
    }
}

/// A dense row-major `K x N` matrix (e.g. a 1x1 stride-1 convolution's input).
pub struct DenseB8<'a> {
    pub data: &'a [i8],
    pub n: usize,
}

impl BSource for DenseB8<'_> {
    fn row_into(&self, k: usize, n0: usize, dst: &mut [i8]) {
        dst.copy_from_slice(&self.data[k * self.n + n0..][..dst.len()]);
    }
    fn row_slice(&self, k: usize, n0: usize, len: usize) -> Option<&[i8]> {
        Some(&self.data[k * self.n + n0..][..len])
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

impl BSource for Im2colB8<'_> {
    fn row_into(&self, k: usize, n0: usize, dst: &mut [i8]) {
        let taps = self.kernel_w * self.kernel_h;
        let (ch, tap) = (k / taps, k % taps);
        let (ky, kx) = (tap / self.kernel_w, tap % self.kernel_w);
        let plane = &self.input[ch * self.w * self.h..][..self.w * self.h];
        let (mut oy, mut ox) = (n0 / self.out_w, n0 % self.out_w);
        let x_off = (kx * self.dilation_w) as isize - self.pad_left as isize;
        let y_off = (ky * self.dilation_h) as isize - self.pad_top as isize;
        let mut i = 0;
        while i < dst.len() {
            let len = (self.out_w - ox).min(dst.len() - i);
            let seg = &mut dst[i..i + len];
            let y = (oy * self.stride_h) as isize + y_off;
            if y < 0 || y >= self.h as isize {
                seg.fill(0);
            } else {
                let line = &plane[y as usize * self.w..][..self.w];
                let x0 = (ox * self.stride_w) as isize + x_off;
                gather(line, x0, self.stride_w, seg);
            }
            i += len;
            oy += 1;
            ox = 0;
        }
    }
}

/// `seg[j] = line[x0 + j*stride]`, 0 outside the line.
#[inline]
fn gather(line: &[i8], x0: isize, stride: usize, seg: &mut [i8]) {
    let w = line.len() as isize;
    let s = stride as isize;
    // Leading outputs left of the line, trailing ones right of it.
    let lead = if x0 < 0 {
        ((-x0 + s - 1) / s).min(seg.len() as isize) as usize
    } else {
        0
    };
    let last_in = if x0 >= w {
        0
    } else {
        (((w - 1 - x0) / s + 1).max(0) as usize).min(seg.len())
    };
    let inside = last_in.saturating_sub(lead);
    seg[..lead].fill(0);
    seg[lead + inside..].fill(0);
    if inside == 0 {
        return;
    }
    let start = (x0 + lead as isize * s) as usize;
    let body = &mut seg[lead..lead + inside];
    let src = &line[start..];
    match stride {
        1 => body.copy_from_slice(&src[..inside]),
        // Pairs, so the compiler sees a de-interleave it can vectorise (ld2 on NEON).
        2 if src.len() >= 2 * inside => {
            for (v, pair) in body.iter_mut().zip(src.chunks_exact(2)) {
                *v = pair[0];
            }
        }
        _ => {
            for (j, v) in body.iter_mut().enumerate() {
                *v = src[j * stride];
            }
        }
    }
}

/// Packs row-major `a` (`m x k`) into panels of `mr` rows, then [`OVERREAD`] zero bytes.
pub fn pack_a(layout: Layout, mr: usize, a: &[i8], m: usize, k: usize) -> AlignedBytes {
    let panel = layout.panel_bytes(k, mr);
    let mut out = AlignedBytes::zeroed(m.div_ceil(mr) * panel + OVERREAD);
    let data = out.as_mut_slice();
    let ks = layout.kstep();
    for row in 0..m {
        let (p, r) = (row / mr, row % mr);
        let dst = &mut data[p * panel..(p + 1) * panel];
        for (kk, &v) in a[row * k..(row + 1) * k].iter().enumerate() {
            match layout {
                Layout::Wide16 => {
                    let at = 2 * (kk * mr + r);
                    dst[at..at + 2].copy_from_slice(&(v as i16).to_ne_bytes());
                }
                _ => dst[((kk / ks) * mr + r) * ks + layout.pos(kk % ks)] = v as u8,
            }
        }
    }
    out
}

/// `Σᵢ x₂ᵢ·x₂ᵢ₊₁` of each row of `a` (`m x k`), rounded up to whole panels of `mr` rows.
pub fn pair_sums_rows(a: &[i8], m: usize, k: usize, mr: usize) -> Vec<i32> {
    let mut s = vec![0i32; m.div_ceil(mr) * mr];
    for (row, sum) in s.iter_mut().enumerate().take(m) {
        *sum = pair_sum(&a[row * k..(row + 1) * k]);
    }
    s
}

/// `Σᵢ x₂ᵢ·x₂ᵢ₊₁` (an odd last value pairs with an implicit 0).
pub fn pair_sum(x: &[i8]) -> i32 {
    x.chunks_exact(2).map(|p| p[0] as i32 * p[1] as i32).sum()
}

/// Packs columns `n0..n0 + nc` of `src` (`k` rows) for `kern` into `dst` (`ceil(nc/nr)`
/// panels); fills `col_sums` (one per panel column) for pair-sum kernels. `rows` is scratch
/// for `kstep x nc` bytes.
#[allow(clippy::too_many_arguments)]
pub fn pack_b(
    kern: &Kernel,
    src: &dyn BSource,
    k: usize,
    n0: usize,
    nc: usize,
    dst: &mut [u8],
    col_sums: &mut [i32],
    rows: &mut [i8],
) {
    let layout = kern.layout;
    let nr = kern.nr;
    let panels = nc.div_ceil(nr);
    let panel = layout.panel_bytes(k, nr);
    let dst = &mut dst[..panels * panel + OVERREAD];
    // Columns past nc and the over-read tail must be zero.
    if !nc.is_multiple_of(nr) {
        dst[(panels - 1) * panel..].fill(0);
    } else {
        dst[panels * panel..].fill(0);
    }
    match layout {
        Layout::Wide16 => {
            let row = &mut rows[..nc];
            for kk in 0..k {
                let r = row_of(src, kk, n0, nc, row);
                let dst = &mut dst[2 * kk * nr..];
                let full = if nr == 8 {
                    // SAFETY: panels * panel bytes (>= every store below) follow `dst`.
                    unsafe { widen8_panels(r, nc / 8, panel, dst.as_mut_ptr()) }
                } else {
                    0
                };
                for p in full..panels {
                    let cols = nr.min(nc - p * nr);
                    let at = p * panel;
                    widen(&r[p * nr..p * nr + cols], &mut dst[at..at + 2 * cols]);
                }
            }
            for kk in k..layout.k_padded(k) {
                for p in 0..panels {
                    dst[p * panel + 2 * kk * nr..][..2 * nr].fill(0);
                }
            }
        }
        Layout::Steps(ks) => {
            let kpad = layout.k_padded(k);
            for g in 0..kpad / ks {
                if ks == 4 && (g + 1) * 4 <= k && matches!(nr, 4 | 8 | 16) {
                    steps4_group(src, g * 4, n0, nc, nr, panel, &mut dst[g * nr * 4..], rows);
                    continue;
                }
                for o in 0..ks {
                    let kk = g * ks + o;
                    if kk >= k {
                        zero_row(dst, panels, panel, (g * nr) * ks + o, ks, nr);
                        continue;
                    }
                    let row = &mut rows[..nc];
                    let r = row_of(src, kk, n0, nc, row);
                    for p in 0..panels {
                        let cols = nr.min(nc - p * nr);
                        let base = p * panel + (g * nr) * ks + o;
                        for (j, &v) in r[p * nr..p * nr + cols].iter().enumerate() {
                            dst[base + j * ks] = v as u8;
                        }
                    }
                }
            }
        }
        Layout::Pairs32 => pack_pairs32(src, k, n0, nc, nr, dst, rows),
    }
    if kern.pair_sums {
        let sums = &mut col_sums[..panels * nr];
        sums.fill(0);
        let groups = layout.k_padded(k) / 32;
        for (p, chunk) in sums.chunks_exact_mut(nr).enumerate() {
            for (j, s) in chunk.iter_mut().enumerate() {
                for g in 0..groups {
                    let at = p * panel + (g * nr + j) * 32;
                    *s += pair_sum_split(&dst[at..at + 32]);
                }
            }
        }
    }
}

/// `Steps(4)`, one whole group of 4 rows `k0..k0 + 4`: column `c` of row `k0 + o` goes to
/// byte `(c / nr) * panel + (c % nr) * 4 + o` of `dst` (`nr` is 4, 8 or 16). Sixteen columns at a time are interleaved in registers.
#[allow(clippy::too_many_arguments)]
fn steps4_group(
    src: &dyn BSource,
    k0: usize,
    n0: usize,
    nc: usize,
    nr: usize,
    panel: usize,
    dst: &mut [u8],
    rows: &mut [i8],
) {
    assert!(matches!(nr, 4 | 8 | 16), "Steps(4) packing for nr {nr}");
    let (b0, rest) = rows[..4 * nc].split_at_mut(nc);
    let (b1, rest) = rest.split_at_mut(nc);
    let (b2, b3) = rest.split_at_mut(nc);
    let r = [
        row_of(src, k0, n0, nc, b0),
        row_of(src, k0 + 1, n0, nc, b1),
        row_of(src, k0 + 2, n0, nc, b2),
        row_of(src, k0 + 3, n0, nc, b3),
    ];
    let mut c = 0;
    while c + 16 <= nc {
        let block = interleave4x16([&r[0][c..], &r[1][c..], &r[2][c..], &r[3][c..]]);
        if nr == 16 {
            // One panel step (a constant-size copy: the x86 kernels' case, and no call).
            let at = (c / 16) * panel;
            dst[at..at + 64].copy_from_slice(&block);
        } else {
            // 16 / nr narrower panel steps.
            for (i, part) in block.chunks_exact(4 * nr).enumerate() {
                let col = c + i * nr;
                let at = (col / nr) * panel + (col % nr) * 4;
                dst[at..at + part.len()].copy_from_slice(part);
            }
        }
        c += 16;
    }
    for col in c..nc {
        let at = (col / nr) * panel + (col % nr) * 4;
        for (o, row) in r.iter().enumerate() {
            dst[at + o] = row[col] as u8;
        }
    }
}

/// Byte `4j + o` of the result is `rows[o][j]` (j < 16): four rows of 16 columns interleaved.
#[inline]
fn interleave4x16(rows: [&[i8]; 4]) -> [u8; 64] {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        assert!(rows.iter().all(|r| r.len() >= 16));
        // SAFETY: SSE2 is part of x86_64; every row holds 16 bytes (checked above) and the
        // result is 64 bytes.
        unsafe {
            let ld = |r: &[i8]| _mm_loadu_si128(r.as_ptr() as *const __m128i);
            let (a, b, c, d) = (ld(rows[0]), ld(rows[1]), ld(rows[2]), ld(rows[3]));
            let (ab_lo, ab_hi) = (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b));
            let (cd_lo, cd_hi) = (_mm_unpacklo_epi8(c, d), _mm_unpackhi_epi8(c, d));
            let mut out = [0u8; 64];
            let o = out.as_mut_ptr() as *mut __m128i;
            _mm_storeu_si128(o, _mm_unpacklo_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(o.add(1), _mm_unpackhi_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(o.add(2), _mm_unpacklo_epi16(ab_hi, cd_hi));
            _mm_storeu_si128(o.add(3), _mm_unpackhi_epi16(ab_hi, cd_hi));
            out
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut out = [0u8; 64];
        for (j, v) in out.chunks_exact_mut(4).enumerate() {
            for (o, x) in v.iter_mut().enumerate() {
                *x = rows[o][j] as u8;
            }
        }
        out
    }
}

/// `Σᵢ x[i]·x[16 + i]` of a 32-byte `Pairs32` slot (= `Σ x₂ᵢ·x₂ᵢ₊₁` in k order).
#[inline]
fn pair_sum_split(slot: &[u8]) -> i32 {
    (0..16)
        .map(|i| slot[i] as i8 as i32 * slot[16 + i] as i8 as i32)
        .sum()
}

/// Row `kk` of `src`, in place when possible, else written into `buf`.
#[inline]
fn row_of<'a>(
    src: &'a dyn BSource,
    kk: usize,
    n0: usize,
    nc: usize,
    buf: &'a mut [i8],
) -> &'a [i8] {
    match src.row_slice(kk, n0, nc) {
        // Sliced (a check per row): the SIMD packers read `nc` values from it unchecked, and
        // an implementation outside the crate may hand out a shorter slice.
        Some(r) => &r[..nc],
        None => {
            src.row_into(kk, n0, buf);
            buf
        }
    }
}

/// Zeroes k offset `o` of one step in every panel (K padding), `Steps` layout.
fn zero_row(dst: &mut [u8], panels: usize, panel: usize, base: usize, ks: usize, nr: usize) {
    for p in 0..panels {
        for j in 0..nr {
            dst[p * panel + base + j * ks] = 0;
        }
    }
}

/// Widens 8 values at a time into `panels` consecutive panels `panel` bytes apart: value `8p
/// + j` to int16 `j` of panel `p`. Returns how many panels it filled.
///
/// # Safety
/// `src` holds `8 * panels` values; `dst` is writable for `(panels - 1) * panel + 16` bytes.
#[inline]
unsafe fn widen8_panels(src: &[i8], panels: usize, panel: usize, dst: *mut u8) -> usize {
    debug_assert!(src.len() >= 8 * panels);
    let mut p = 0;
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::aarch64::{
            vget_low_s8, vld1_s8, vld1q_s8, vmovl_high_s8, vmovl_s8, vst1q_s16,
        };
        // Four panels from two 16-byte loads: independent chains for the in-order cores
        // (one panel at a time waits on each load and widening in turn).
        while p + 4 <= panels {
            let from = src.as_ptr().add(8 * p);
            let (x, y) = (vld1q_s8(from), vld1q_s8(from.add(16)));
            let to = |i: usize| dst.add((p + i) * panel) as *mut i16;
            vst1q_s16(to(0), vmovl_s8(vget_low_s8(x)));
            vst1q_s16(to(1), vmovl_high_s8(x));
            vst1q_s16(to(2), vmovl_s8(vget_low_s8(y)));
            vst1q_s16(to(3), vmovl_high_s8(y));
            p += 4;
        }
        while p < panels {
            let x = vld1_s8(src.as_ptr().add(8 * p));
            vst1q_s16(dst.add(p * panel) as *mut i16, vmovl_s8(x));
            p += 1;
        }
    }
    #[cfg(not(target_arch = "aarch64"))]
    while p < panels {
        let from = src.as_ptr().add(8 * p);
        let v: [i8; 8] = from.cast::<[i8; 8]>().read_unaligned();
        let mut w = [0i16; 8];
        for (w, v) in w.iter_mut().zip(v) {
            *w = v.into();
        }
        dst.add(p * panel).cast::<[i16; 8]>().write_unaligned(w);
        p += 1;
    }
    panels
}

/// Sign-extends `src` into int16 (`dst` is 2-byte aligned: panels start at even offsets of
/// the aligned scratch).
#[inline]
fn widen(src: &[i8], dst: &mut [u8]) {
    let dst: &mut [i16] = bytemuck::cast_slice_mut(dst);
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = v as i16;
    }
}

/// `Pairs32`: for each 32-row group, the even rows and the odd rows are each transposed
/// into the 16-byte halves of every column's slot.
fn pack_pairs32(
    src: &dyn BSource,
    k: usize,
    n0: usize,
    nc: usize,
    nr: usize,
    dst: &mut [u8],
    rows: &mut [i8],
) {
    let layout = Layout::Pairs32;
    let panel = layout.panel_bytes(k, nr);
    let groups = layout.k_padded(k) / 32;
    let zeros = [0i8; super::NC_MAX];
    let (rows, _) = rows.split_at_mut(32 * nc);
    for g in 0..groups {
        // The group's 32 rows, each in place or produced into `rows`.
        let mut ptrs: [&[i8]; 32] = [&zeros[..0]; 32];
        {
            let mut bufs = rows.chunks_exact_mut(nc);
            for (o, slot) in ptrs.iter_mut().enumerate() {
                let kk = g * 32 + o;
                let buf = bufs.next().expect("32 row buffers");
                *slot = if kk >= k {
                    &zeros[..nc]
                } else {
                    match src.row_slice(kk, n0, nc) {
                        // `nc` values exactly (see `row_of`).
                        Some(r) => &r[..nc],
                        None => {
                            src.row_into(kk, n0, buf);
                            // SAFETY: `buf` is a disjoint chunk of `rows` that is not touched
                            // again during this group; the reborrow ends with the group.
                            unsafe { std::slice::from_raw_parts(buf.as_ptr(), nc) }
                        }
                    }
                };
            }
        }
        for half in 0..2 {
            let src_rows: [&[i8]; 16] = std::array::from_fn(|i| ptrs[2 * i + half]);
            // Column c's slot: panel c / nr, lane c % nr of step g, this half.
            let slots = Slots {
                nr,
                panel,
                base: g * nr * 32 + half * 16,
            };
            transpose_into(&src_rows, nc, dst, &slots);
        }
    }
}

/// Where each column's 16 bytes go in a `Pairs32` block: `(c / nr) * panel + base +
/// (c % nr) * 32`.
struct Slots {
    nr: usize,
    panel: usize,
    base: usize,
}

/// Writes, for every column `c < nc`, the 16 bytes `rows[0][c], …, rows[15][c]` at its slot.
fn transpose_into(rows: &[&[i8]; 16], nc: usize, dst: &mut [u8], slots: &Slots) {
    // Running (panel, lane) of column c: no division per column.
    let (mut p, mut j) = (0, 0);
    let mut next = || {
        let at = p * slots.panel + slots.base + j * 32;
        j += 1;
        if j == slots.nr {
            (p, j) = (p + 1, 0);
        }
        at
    };
    #[allow(unused_mut)]
    let mut c = 0;
    #[cfg(target_arch = "aarch64")]
    while c + 16 <= nc {
        // SAFETY: every row holds nc bytes.
        let block = unsafe { super::aarch64::transpose16(rows, c) };
        for col in &block {
            let at = next();
            dst[at..at + 16].copy_from_slice(col);
        }
        c += 16;
    }
    for col in c..nc {
        let at = next();
        for (v, row) in dst[at..at + 16].iter_mut().zip(rows) {
            *v = row[col] as u8;
        }
    }
}
