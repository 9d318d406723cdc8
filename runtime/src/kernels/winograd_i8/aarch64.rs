//! NEON transforms of the integer Winograd convolution, 8 tiles in the lanes: the same
//! arithmetic as the generic ones in `mod.rs` (int16 input transform, wrapping int32 output
//! transform, exact division by 576, the requantizing epilogue), bit for bit.

// Transform matrices index rows, columns and lanes of several arrays at once.
#![allow(clippy::needless_range_loop)]

use super::{Dest, Geometry, PANEL};
use crate::kernels::gemm_i8::OutKind;
use crate::ops::activation::Activation;
use crate::quant::quantize_scaled;
use std::arch::aarch64::*;

/// `Bᵀ z` of six vectors (rows 4·z0 − 5·z2 + z4, …; see `BT` in mod.rs).
#[inline(always)]
unsafe fn bt(z: [int16x8_t; 6]) -> [int16x8_t; 6] {
    let [z0, z1, z2, z3, z4, z5] = z;
    let times5 = |v: int16x8_t| vaddq_s16(v, vshlq_n_s16::<2>(v));
    let s12 = vaddq_s16(z1, z2);
    let d12 = vsubq_s16(z1, z2);
    let a = vsubq_s16(z4, z2);
    let b = vshlq_n_s16::<1>(vsubq_s16(z3, z1));
    [
        vaddq_s16(vsubq_s16(vshlq_n_s16::<2>(z0), times5(z2)), z4),
        vsubq_s16(vaddq_s16(z3, z4), vshlq_n_s16::<2>(s12)),
        vaddq_s16(vsubq_s16(z4, z3), vshlq_n_s16::<2>(d12)),
        vaddq_s16(a, b),
        vsubq_s16(a, b),
        vaddq_s16(vsubq_s16(vshlq_n_s16::<2>(z1), times5(z3)), z5),
    ]
}

/// `A″ᵀ z` of six vectors, wrapping (rows z0+z1+z2+z3+z4, …; see `AT` in mod.rs).
#[inline(always)]
unsafe fn at(z: [int32x4_t; 6]) -> [int32x4_t; 4] {
    let [z0, z1, z2, z3, z4, z5] = z;
    let s12 = vaddq_s32(z1, z2);
    let d12 = vsubq_s32(z1, z2);
    let s34 = vaddq_s32(z3, z4);
    let d34 = vsubq_s32(z3, z4);
    [
        vaddq_s32(vaddq_s32(z0, s12), s34),
        vaddq_s32(d12, vshlq_n_s32::<1>(d34)),
        vaddq_s32(s12, vshlq_n_s32::<2>(s34)),
        vaddq_s32(vaddq_s32(d12, vshlq_n_s32::<3>(d34)), vshlq_n_s32::<2>(z5)),
    ]
}

/// `64 · S` of four lanes from `576 · S mod 2³²`: one multiply by 9⁻¹ (exact for
/// `|S| < 2²⁵`, where `64 · S` fits an int32). `>> 6` gives `div576`; an epilogue that
/// converts to float can take the 1/64 into its scale instead (scaling by a power of two
/// commutes with rounding, so the result is the same bit for bit).
#[inline(always)]
unsafe fn times64_div576(t: int32x4_t) -> int32x4_t {
    vreinterpretq_s32_u32(vmulq_n_u32(vreinterpretq_u32_s32(t), super::INV9))
}

/// Eight rows of 8 bytes transposed: element `[k][j]` of the result is `rows[j][k]`.
#[inline(always)]
unsafe fn transpose8(r: [int8x8_t; 8]) -> [int8x8_t; 8] {
    let mut s = r;
    for i in (0..8).step_by(2) {
        let (x, y) = (s[i], s[i + 1]);
        s[i] = vtrn1_s8(x, y);
        s[i + 1] = vtrn2_s8(x, y);
    }
    // Reinterpreting casts of whole arrays (array `map` can be left out of line).
    let mut h: [int16x4_t; 8] = std::mem::transmute(s);
    for base in [0, 4] {
        for i in base..base + 2 {
            let (x, y) = (h[i], h[i + 2]);
            h[i] = vtrn1_s16(x, y);
            h[i + 2] = vtrn2_s16(x, y);
        }
    }
    let mut w: [int32x2_t; 8] = std::mem::transmute(h);
    for i in 0..4 {
        let (x, y) = (w[i], w[i + 4]);
        w[i] = vtrn1_s32(x, y);
        w[i + 4] = vtrn2_s32(x, y);
    }
    std::mem::transmute(w)
}

/// Six bytes of input row `y` from column `x0` (0 outside the input), as a vector.
#[inline(never)]
unsafe fn border_row(src: *const i8, g: &Geometry, y: isize, x0: isize) -> int8x8_t {
    let mut b = [0i8; 8];
    if y >= 0 && y < g.h as isize {
        for (k, v) in b.iter_mut().enumerate().take(6) {
            let xx = x0 + k as isize;
            if xx >= 0 && xx < g.w as isize {
                *v = *src.offset(y * g.w as isize + xx);
            }
        }
    }
    vld1_s8(b.as_ptr())
}

/// `V = Bᵀ d B` for 8 tiles of every channel, as `super::input_transform`.
///
/// # Safety
/// `x` holds `inch` planes of `g.w x g.h`; `v` holds `36 · cpad · 8` int16 (2-byte aligned).
pub unsafe fn input_transform(
    x: &[i8],
    g: &Geometry,
    inch: usize,
    cpad: usize,
    t0: usize,
    ntiles: usize,
    v: &mut [i16],
) {
    let plane = g.w * g.h;
    // Per lane: the tile's input origin; how its rows are read: whole 8 bytes from the
    // origin (inside), 8 bytes from `start` rearranged by the `tbl` index `pick` (a border
    // tile of a map at least 8 wide: bytes outside the input get index 255, i.e. 0), or
    // byte by byte.
    let mut origin = [(0isize, 0isize); PANEL];
    let mut inside = [false; PANEL];
    let mut start = [0isize; PANEL];
    let mut pick = [vdup_n_u8(255); PANEL];
    for j in 0..ntiles {
        let t = t0 + j;
        let (ty, tx) = (t / g.tiles_x, t % g.tiles_x);
        let (y0, x0) = (
            (ty * 4) as isize - g.pad_top as isize,
            (tx * 4) as isize - g.pad_left as isize,
        );
        origin[j] = (y0, x0);
        inside[j] = x0 >= 0 && x0 + 8 <= g.w as isize;
        if !inside[j] && g.w >= 8 {
            let xs = x0.clamp(0, g.w as isize - 8);
            let idx: [u8; 8] = std::array::from_fn(|k| {
                let x = x0 + k as isize;
                if x >= 0 && x < g.w as isize && k < 6 {
                    (x - xs) as u8
                } else {
                    255
                }
            });
            start[j] = xs;
            pick[j] = vld1_u8(idx.as_ptr());
        }
    }
    // Eight tiles of one tile row, every byte they read inside the input (two 32-byte `ld4`
    // per row deinterleave columns 0..3 and 4..5 of all of them at once, reading 2 bytes
    // past the last tile: inside the input too).
    let tx0 = t0 % g.tiles_x;
    let (y0, x0) = (origin[0].0, origin[0].1);
    let one_row = ntiles == PANEL
        && tx0 + PANEL <= g.tiles_x
        && y0 >= 0
        && y0 + 6 <= g.h as isize
        && x0 >= 0
        && x0 + 34 <= g.w as isize
        && (inch - 1) * plane + (y0 as usize + 5) * g.w + x0 as usize + 36 <= x.len();
    let zero8 = vdup_n_s8(0);
    for c in 0..cpad {
        let mut d = [[vdupq_n_s16(0); 6]; 6];
        if c < inch {
            let src = x.as_ptr().add(c * plane);
            for (r, dr) in d.iter_mut().enumerate() {
                if one_row {
                    let p = src.offset((y0 + r as isize) * g.w as isize + x0);
                    let a = vld4_s8(p);
                    let b = vld4_s8(p.add(4));
                    *dr = [
                        vmovl_s8(a.0),
                        vmovl_s8(a.1),
                        vmovl_s8(a.2),
                        vmovl_s8(a.3),
                        vmovl_s8(b.0),
                        vmovl_s8(b.1),
                    ];
                    continue;
                }
                let mut rows = [zero8; PANEL];
                for (j, row) in rows.iter_mut().enumerate().take(ntiles) {
                    let (y0, x0) = origin[j];
                    let y = y0 + r as isize;
                    if y < 0 || y >= g.h as isize {
                        continue;
                    }
                    let line = src.offset(y * g.w as isize);
                    *row = if inside[j] {
                        vld1_s8(line.offset(x0))
                    } else if g.w >= 8 {
                        vreinterpret_s8_u8(vtbl1_u8(
                            vld1_u8(line.offset(start[j]) as *const u8),
                            pick[j],
                        ))
                    } else {
                        border_row(src, g, y, x0)
                    };
                }
                let cols = transpose8(rows);
                for (k, dk) in dr.iter_mut().enumerate() {
                    *dk = vmovl_s8(cols[k]);
                }
            }
        }
        // Columns first (t = Bᵀ d), then rows (V = t B).
        let mut t = [[vdupq_n_s16(0); 6]; 6];
        for k in 0..6 {
            let col = bt(std::array::from_fn(|r| d[r][k]));
            for i in 0..6 {
                t[i][k] = col[i];
            }
        }
        for (i, ti) in t.iter().enumerate() {
            let row = bt(*ti);
            for (j, &vij) in row.iter().enumerate() {
                let xi = i * 6 + j;
                vst1q_s16(v.as_mut_ptr().add((xi * cpad + c) * PANEL), vij);
            }
        }
    }
}

/// The transformed sums of output channel `m` of the panel: `S` (`64 · S` if `TIMES64`) at
/// the 16 output positions of each tile, 8 tiles as two int32x4 each.
#[inline(always)]
unsafe fn sums_of<const TIMES64: bool>(mbuf: &[i32], m: usize) -> [[int32x4_t; 2]; 16] {
    let z = |xi: usize, h: usize| vld1q_s32(mbuf.as_ptr().add((xi * PANEL + m) * PANEL + 4 * h));
    let mut out = [[vdupq_n_s32(0); 2]; 16];
    for h in 0..2 {
        // Columns (6 rows -> 4), then rows.
        let mut t = [[vdupq_n_s32(0); 6]; 4];
        for col in 0..6 {
            let r = at(std::array::from_fn(|k| z(k * 6 + col, h)));
            for i in 0..4 {
                t[i][col] = r[i];
            }
        }
        for (i, ti) in t.iter().enumerate() {
            let r = at(*ti);
            for j in 0..4 {
                let t = times64_div576(r[j]);
                out[i * 4 + j][h] = if TIMES64 { t } else { vshrq_n_s32::<6>(t) };
            }
        }
    }
    out
}

/// Output transform, exact division and (after the last chunk) the epilogue, as
/// `super::output_transform` + `super::store`.
///
/// # Safety
/// As `super::store`; `sums` holds `8 · 16 · 8` int32.
pub unsafe fn output(
    mbuf: &[i32],
    sums: &mut [i32],
    (first, last): (bool, bool),
    m0: usize,
    (t0, ntiles): (usize, usize),
    d: &Dest,
) {
    let Dest {
        g, outch, requant, ..
    } = *d;
    let act = match requant.act {
        Activation::None
        | Activation::ReLU
        | Activation::LeakyReLU(_)
        | Activation::Clip { .. } => Some(requant.act),
        _ => None,
    };
    // The 8 tiles lie in one tile row and every output row of them inside: st4 writes them.
    let (ty0, tx0) = (t0 / g.tiles_x, t0 % g.tiles_x);
    let straight = ntiles == PANEL
        && tx0 + PANEL <= g.tiles_x
        && (tx0 + PANEL) * 4 <= g.out_w
        && ty0 * 4 + 4 <= g.out_h;
    let place = Placement::new(g, t0, ntiles);
    // One chunk and a vector epilogue: the sums stay `64 · S`, the scale takes the 1/64.
    let times64 = first && last && act.is_some();
    for m in 0..PANEL.min(outch - m0) {
        let mut s = if times64 {
            sums_of::<true>(mbuf, m)
        } else {
            sums_of::<false>(mbuf, m)
        };
        let acc = sums[m * 16 * PANEL..].as_mut_ptr();
        if !(first && last) {
            for (p, sp) in s.iter_mut().enumerate() {
                for (h, v) in sp.iter_mut().enumerate() {
                    let at = acc.add(p * PANEL + 4 * h);
                    if !first {
                        *v = vaddq_s32(*v, vld1q_s32(at));
                    }
                    if !last {
                        vst1q_s32(at, *v);
                    }
                }
            }
        }
        if !last {
            continue;
        }
        let c = m0 + m;
        match act {
            Some(act) => {
                let unit = if times64 { 1.0 / 64.0 } else { 1.0 };
                let scale = requant.scale_in.get_unchecked(c) * unit;
                store_channel(&s, c, scale, act, t0, &place, straight, d)
            }
            None => {
                // Activations the vector code does not do: scalar epilogue per value.
                let mut vals = [0i32; 16 * PANEL];
                for (p, sp) in s.iter().enumerate() {
                    vst1q_s32(vals.as_mut_ptr().add(p * PANEL), sp[0]);
                    vst1q_s32(vals.as_mut_ptr().add(p * PANEL + 4), sp[1]);
                }
                let sum = |l: usize, i: usize, j: usize| vals[(i * 4 + j) * PANEL + l];
                super::store_tiles(c, sum, (t0, ntiles), d);
            }
        }
    }
}

/// The epilogue of one output channel's 8 tiles, vectorised; `s · scale` is the dequantized
/// sum (`scale` takes the 1/64 of sums kept as `64 · S`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn store_channel(
    s: &[[int32x4_t; 2]; 16],
    c: usize,
    scale: f32,
    act: Activation,
    t0: usize,
    place: &Placement,
    straight: bool,
    d: &Dest,
) {
    let Dest {
        g,
        requant,
        kind,
        out,
        ..
    } = *d;
    let bias = vdupq_n_f32(requant.bias.map_or(0.0, |b| *b.get_unchecked(c)));
    let zero = vdupq_n_f32(0.0);
    // An int8 output takes ReLU and a Clip that holds 0 on its int8 values (exact: quantizing
    // is monotonic with q(0) = 0, as in the GEMM epilogue).
    let int_act = kind == OutKind::I8
        && match act {
            Activation::ReLU => true,
            Activation::Clip { min, max } => min <= 0.0 && max >= 0.0,
            _ => false,
        };
    let y = |v: int32x4_t| {
        let y = vfmaq_n_f32(bias, vcvtq_f32_s32(v), scale);
        if int_act {
            return y;
        }
        match act {
            Activation::ReLU => vbslq_f32(vcltq_f32(y, zero), zero, y),
            Activation::LeakyReLU(k) => vbslq_f32(vcltq_f32(y, zero), vmulq_n_f32(y, k), y),
            Activation::Clip { min, max } => {
                let (lo, hi) = (vdupq_n_f32(min), vdupq_n_f32(max));
                let y = vbslq_f32(vcltq_f32(y, lo), lo, y);
                vbslq_f32(vcgtq_f32(y, hi), hi, y)
            }
            _ => y,
        }
    };
    let plane = g.out_w * g.out_h;
    let (ty0, tx0) = (t0 / g.tiles_x, t0 % g.tiles_x);
    match kind {
        OutKind::I8 => {
            let (top, q) = (requant.top_scale, requant.qmax);
            let (lo, hi) = match act {
                _ if !int_act => (-q, q),
                Activation::Clip { min, max } => (
                    quantize_scaled(min * top, q) as i32,
                    quantize_scaled(max * top, q) as i32,
                ),
                _ => (0, q),
            };
            let (lo, hi) = (vdup_n_s8(lo as i8), vdup_n_s8(hi as i8));
            for i in 0..4 {
                // The row's 4 positions side by side (8 independent chains for the in-order
                // core): 8 tiles' bytes each, clamped.
                // (Plain loops: array `map` here was left out of line.)
                let mut f = [vdupq_n_f32(0.0); 8];
                for k in 0..8 {
                    f[k] = vmulq_n_f32(y(s[4 * i + k / 2][k % 2]), top);
                }
                let mut n = [vdupq_n_s32(0); 8];
                for k in 0..8 {
                    n[k] = vcvtaq_s32_f32(f[k]);
                }
                let mut b = [vdup_n_s8(0); 4];
                for k in 0..4 {
                    let h = vqmovn_high_s32(vqmovn_s32(n[2 * k]), n[2 * k + 1]);
                    b[k] = vmin_s8(vmax_s8(vqmovn_s16(h), lo), hi);
                }
                let rows = int8x8x4_t(b[0], b[1], b[2], b[3]);
                if straight {
                    let dst = (out as *mut i8).add(c * plane + (ty0 * 4 + i) * g.out_w + tx0 * 4);
                    vst4_s8(dst, rows);
                } else {
                    let mut buf = [0i8; 4 * PANEL];
                    vst4_s8(buf.as_mut_ptr(), rows);
                    let plane = out.add(c * plane);
                    scatter_row(
                        bytemuck::cast_slice(&buf),
                        1,
                        plane,
                        i,
                        g.out_w,
                        place,
                        0..PANEL,
                    );
                }
            }
        }
        _ => {
            for i in 0..4 {
                for h in 0..2 {
                    let p = 4 * i;
                    let rows =
                        float32x4x4_t(y(s[p][h]), y(s[p + 1][h]), y(s[p + 2][h]), y(s[p + 3][h]));
                    if straight {
                        let dst = (out as *mut f32)
                            .add(c * plane + (ty0 * 4 + i) * g.out_w + (tx0 + 4 * h) * 4);
                        vst4q_f32(dst, rows);
                    } else {
                        let mut buf = [0f32; 16];
                        vst4q_f32(buf.as_mut_ptr(), rows);
                        let bytes: &[u8] = bytemuck::cast_slice(&buf);
                        let plane = out.add(c * plane * 4);
                        scatter_row(bytes, 4, plane, i, g.out_w, place, 4 * h..4 * h + 4);
                    }
                }
            }
        }
    }
}

/// Where a panel's tiles go in an output plane: each tile's top-left offset and how many of
/// its rows and columns lie inside, worked out once per panel rather than per channel and row.
struct Placement {
    at: [usize; PANEL],
    rows: [usize; PANEL],
    cols: [usize; PANEL],
}

impl Placement {
    fn new(g: &Geometry, t0: usize, ntiles: usize) -> Self {
        let mut p = Placement {
            at: [0; PANEL],
            rows: [0; PANEL],
            cols: [0; PANEL],
        };
        let (mut ty, mut tx) = (t0 / g.tiles_x, t0 % g.tiles_x);
        for l in 0..ntiles {
            p.at[l] = ty * 4 * g.out_w + tx * 4;
            p.rows[l] = 4.min(g.out_h.saturating_sub(ty * 4));
            p.cols[l] = 4.min(g.out_w.saturating_sub(tx * 4));
            tx += 1;
            if tx == g.tiles_x {
                (ty, tx) = (ty + 1, 0);
            }
        }
        p
    }
}

/// Copies row `i` of the panel's tiles `tiles` (4 values of `elem` bytes each, consecutive in
/// `buf` from the range's first tile) into the channel's output `plane`, clipped at its edges.
#[inline(always)]
unsafe fn scatter_row(
    buf: &[u8],
    elem: usize,
    plane: *mut u8,
    i: usize,
    out_w: usize,
    place: &Placement,
    tiles: std::ops::Range<usize>,
) {
    let first = tiles.start;
    for l in tiles {
        if i >= place.rows[l] {
            continue;
        }
        let dst = plane.add((place.at[l] + i * out_w) * elem);
        let src = buf.as_ptr().add((l - first) * 4 * elem);
        if place.cols[l] == 4 {
            // A whole row of the tile: one 4- or 16-byte copy.
            if elem == 1 {
                dst.cast::<[u8; 4]>()
                    .write_unaligned(src.cast::<[u8; 4]>().read_unaligned());
            } else {
                dst.cast::<[u8; 16]>()
                    .write_unaligned(src.cast::<[u8; 16]>().read_unaligned());
            }
        } else {
            std::ptr::copy_nonoverlapping(src, dst, place.cols[l] * elem);
        }
    }
}

/// Eight vectors of 8 int16 transposed: element `[k][j]` of the result is `r[j][k]`.
#[inline(always)]
unsafe fn transpose8x16(r: [int16x8_t; 8]) -> [int16x8_t; 8] {
    let mut s = r;
    for i in (0..8).step_by(2) {
        let (x, y) = (s[i], s[i + 1]);
        s[i] = vtrn1q_s16(x, y);
        s[i + 1] = vtrn2q_s16(x, y);
    }
    // Reinterpreting casts of whole arrays, as in `transpose8`.
    let mut w: [int32x4_t; 8] = std::mem::transmute(s);
    for base in [0, 4] {
        for i in base..base + 2 {
            let (x, y) = (w[i], w[i + 2]);
            w[i] = vtrn1q_s32(x, y);
            w[i + 2] = vtrn2q_s32(x, y);
        }
    }
    let mut d: [int64x2_t; 8] = std::mem::transmute(w);
    for i in 0..4 {
        let (x, y) = (d[i], d[i + 4]);
        d[i] = vtrn1q_s64(x, y);
        d[i + 4] = vtrn2q_s64(x, y);
    }
    std::mem::transmute(d)
}

/// As `super::repack_pairs`: 16 channels at a time, the 8 even and the 8 odd ones each
/// transposed from tiles-in-lanes to channels-in-lanes, and the column pair terms summed
/// lane-wise over all 8 tiles at once.
///
/// # Safety
/// `v` and `vp` hold `36 · cpad · 8` int16, `col_sums` `chunks · 36 · 8` int32; `cpad` and
/// `chunk` are multiples of 16.
pub unsafe fn repack_pairs(
    v: &[i16],
    cpad: usize,
    chunk: usize,
    vp: &mut [i16],
    col_sums: &mut [i32],
) {
    for xi in 0..36 {
        for (k, c0) in (0..cpad).step_by(chunk).enumerate() {
            let c1 = (c0 + chunk).min(cpad);
            let steps = (c1 - c0) / 16;
            let base = vp.as_mut_ptr().add((xi * cpad + c0) * PANEL);
            let (mut lo, mut hi) = (vdupq_n_s32(0), vdupq_n_s32(0));
            for s in 0..steps {
                let src = v.as_ptr().add((xi * cpad + c0 + 16 * s) * PANEL);
                let even: [int16x8_t; 8] =
                    std::array::from_fn(|i| vld1q_s16(src.add(2 * i * PANEL)));
                let odd: [int16x8_t; 8] =
                    std::array::from_fn(|i| vld1q_s16(src.add((2 * i + 1) * PANEL)));
                for i in 0..8 {
                    lo = vmlal_s16(lo, vget_low_s16(even[i]), vget_low_s16(odd[i]));
                    hi = vmlal_high_s16(hi, even[i], odd[i]);
                }
                let (e, o) = (transpose8x16(even), transpose8x16(odd));
                for j in 0..PANEL {
                    let dst = base.add((((j / 4) * steps + s) * 4 + j % 4) * 16);
                    vst1q_s16(dst, e[j]);
                    vst1q_s16(dst.add(8), o[j]);
                }
            }
            let sums = col_sums.as_mut_ptr().add((k * 36 + xi) * PANEL);
            vst1q_s32(sums, lo);
            vst1q_s32(sums.add(4), hi);
        }
    }
}
