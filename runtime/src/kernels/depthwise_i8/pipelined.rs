//! Driver of the generated software-pipelined loops (`asm_loops.rs`) for int8 output with
//! the activation folded into the int8 clamp (none, ReLU, foldable Clip): stride 1 or 2,
//! rows of more than 8 outputs. Per task it lists the blocks of 16 outputs of one channel's
//! rows once (descriptors shared by the task's channels), builds each channel's tap sets
//! (taps that read padding zeroed) and constants, and runs a loop over a run of channels.
//!
//! The loops read all three input rows of a block, padding rows too (their taps are zero),
//! so a row whose reads would leave the input (the first rows of the first channel, the
//! last of the last) goes through the intrinsics of `neon3x3`, as does the task's last row
//! when rows are narrower than 16 (its store must not run past the task's region).

use super::asm_loops::{self, LoopArgs};
use super::neon3x3::Dst;
use super::Plan;
use crate::cpu::CoreKind;
use crate::kernels::requant::Requant;
use crate::quant::Precision;
use std::arch::aarch64::*;
use std::ops::Range;

/// Descriptors per pass (16 bytes each, on the stack); rows are cut into passes.
const MAX_DESC: usize = 512;
/// Tap-table bytes per call (on the stack): channels per call.
const TABLE_BYTES: usize = 8192;
/// Bytes of one tap set: 9 vectors of 16.
const SET: usize = 144;

type LoopFn = unsafe fn(*mut LoopArgs);

/// The loop for this core, precision and stride.
fn loop_fn(core: CoreKind, p: Precision, s2: bool) -> LoopFn {
    use asm_loops::*;
    match (core == CoreKind::CortexA53, p, s2) {
        (true, Precision::Int8, false) => loop_a55_int8_s1,
        (true, Precision::Int8, true) => loop_a55_int8_s2,
        (true, Precision::Int7, false) => loop_a55_int7_s1,
        (true, Precision::Int7, true) => loop_a55_int7_s2,
        (false, Precision::Int8, false) => loop_a72_int8_s1,
        (false, Precision::Int8, true) => loop_a72_int8_s2,
        (false, Precision::Int7, false) => loop_a72_int7_s1,
        (false, Precision::Int7, true) => loop_a72_int7_s2,
    }
}

/// Runs channels `chans`, rows `rows` of the task; `intrinsics(c, rows)` does rows of a
/// channel the loops do not. `clip`: the layer's activation is a Clip folded into the
/// clamp, which only channels with finite scale and bias take.
///
/// # Safety
/// As `neon3x3::channel` (the plan checked against the buffers, `dst` the task's region of
/// int8 output).
#[allow(clippy::too_many_arguments)]
pub unsafe fn run(
    plan: &Plan,
    precision: Precision,
    core: CoreKind,
    input: &[i8],
    taps: &[i8],
    rq: &Requant,
    clip: bool,
    dst: Dst,
    chans: Range<usize>,
    rows: Range<usize>,
    qlo: i8,
    qhi: i8,
    intrinsics: &dyn Fn(usize, Range<usize>),
) {
    let l = &plan.layer;
    let (w, h) = (l.w, l.h);
    let plane = w * h;
    let s = l.g.stride_w;
    let (sh, pt, pl) = (l.g.stride_h, l.pad_top as isize, l.pad_left as isize);
    let out_w = plan.out_w;
    // Rows of up to 16 outputs are one block (narrow rows too, 8 lanes idle).
    let single = out_w <= 16;
    // Bytes a row's loads reach past its block's first column.
    let reach = if plan.narrow {
        (16 * s + 2) as isize - pl
    } else {
        plan.spans.hi as isize
    };
    // Block starts of a row and their kinds (0 first, 1 middle, 2 last).
    let mut xs = [(0usize, 0usize); MAX_DESC];
    let mut bpr = 0;
    if single {
        bpr = 1;
    } else {
        let mut x0 = 0;
        while x0 < plan.last_x0 {
            xs[bpr] = (x0, if x0 == 0 { 0 } else { 1 });
            bpr += 1;
            x0 += 16;
        }
        xs[bpr] = (plan.last_x0, 2);
        bpr += 1;
    }
    assert!(bpr < MAX_DESC);
    let iy0 = |y: usize| (y * sh) as isize - pt;
    // Whether the loop's reads for row y of channel c stay inside `input`.
    let len = input.len() as isize;
    let readable = |c: usize, y: usize| {
        let base = (c * plane) as isize + iy0(y) * w as isize;
        base - pl >= 0 && base + 2 * w as isize + reach <= len
    };
    let pipelined = |c: usize| {
        !clip || (rq.scale_in[c].is_finite() && rq.bias.is_none_or(|b| b[c].is_finite()))
    };
    let consts = |c: usize| {
        [
            rq.scale_in[c],
            rq.bias.map_or(0.0, |b| b[c]),
            rq.top_scale,
            0.0,
        ]
    };
    let plane_out = plan.out_w * plan.out_h;
    let region = if rows.len() == plan.out_h {
        chans.len() * plane_out
    } else {
        rows.len() * out_w
    };
    let f = loop_fn(core, precision, s == 2);
    // Column masks per block kind and kx.
    let cm: [[int8x16_t; 3]; 3] = std::array::from_fn(|k| {
        std::array::from_fn(|kx| vreinterpretq_s8_u8(vld1q_u8(plan.masks[k][kx].as_ptr())))
    });
    let mut clamp = [qlo; 32];
    clamp[16..].fill(qhi);
    let mut dummy = [0i8; 16];
    let mut desc = [[0u64; 2]; MAX_DESC + 1];
    let mut table = [0u8; TABLE_BYTES];
    let mut cvals = [[0f32; 4]; TABLE_BYTES / SET];
    let rows_per_pass = (MAX_DESC / bpr).max(1);
    // Single-block rows store past their end: keep the task's rows in one pass (in order).
    assert!(
        !single || rows.len() <= rows_per_pass,
        "rows too many for one pass"
    );
    let mut y = rows.start;
    while y < rows.end {
        let pass = y..(y + rows_per_pass).min(rows.end);
        y = pass.end;
        // Tap sets used in the pass: (row mask, block kind) -> set index.
        let mut set_of = [usize::MAX; 24];
        let mut sets = [(0u8, 0usize); 24];
        let mut nsets = 0;
        let mut n = 0;
        for yy in pass.clone() {
            let mut mask = 0u8;
            for ky in 0..3 {
                let r = iy0(yy) + ky as isize;
                if r >= 0 && (r as usize) < h {
                    mask |= 1 << ky;
                }
            }
            for &(x0, kind) in &xs[..bpr] {
                let key = mask as usize * 3 + kind;
                if set_of[key] == usize::MAX {
                    set_of[key] = nsets;
                    sets[nsets] = (mask, kind);
                    nsets += 1;
                }
                let in_off = iy0(yy) * w as isize + (x0 * s) as isize - pl;
                let out_off = ((yy - rows.start) * out_w + x0) as u64;
                desc[n] = [
                    (in_off as i32 as u32 as u64) | (out_off << 32),
                    (set_of[key] * SET) as u64,
                ];
                n += 1;
            }
        }
        desc[n] = desc[n - 1];
        let tstride = nsets * SET;
        let per_call = (TABLE_BYTES / tstride).max(1);
        let one_kind = sets[..nsets].iter().all(|&(_, k)| k == sets[0].1);
        // Channels whose every row of the pass the loops can read: an interval (reads only
        // leave the input at its ends).
        let mut c_lo = chans.start;
        while c_lo < chans.end && !readable(c_lo, pass.start) {
            c_lo += 1;
        }
        let mut c_hi = chans.end;
        while c_hi > c_lo && !readable(c_hi - 1, pass.end - 1) {
            c_hi -= 1;
        }
        // Rows of channel c the loops do in this pass.
        let loop_rows = |c: usize| {
            let mut yr = pass.clone();
            if c < c_lo || c >= c_hi {
                while yr.start < yr.end && !readable(c, yr.start) {
                    yr.start += 1;
                }
                while yr.end > yr.start && !readable(c, yr.end - 1) {
                    yr.end -= 1;
                }
            }
            if single {
                // 16-byte stores run past narrow rows onto outputs written later, but must
                // not leave the task's region.
                let at = (c - chans.start) * plane_out;
                while yr.end > yr.start && at + (yr.end - 1 - rows.start) * out_w + 16 > region {
                    yr.end -= 1;
                }
            }
            yr
        };
        // Runs of channels the loops do in one call: same rows, the loops' epilogue.
        let mut c = chans.start;
        while c < chans.end {
            let yr = loop_rows(c);
            if !pipelined(c) || yr.is_empty() {
                intrinsics(c, pass.clone());
                c += 1;
                continue;
            }
            if yr.start > pass.start {
                intrinsics(c, pass.start..yr.start);
            }
            let mut end = c + 1;
            if yr == pass {
                while end < chans.end
                    && end - c < per_call
                    && pipelined(end)
                    && loop_rows(end) == pass
                {
                    end += 1;
                }
            }
            for (k, cc) in (c..end).enumerate() {
                cvals[k] = consts(cc);
                build_sets(
                    &cm,
                    &sets[..nsets],
                    one_kind,
                    taps,
                    cc,
                    table.as_mut_ptr().add(k * tstride),
                );
            }
            let first = (yr.start - pass.start) * bpr;
            let mut args = LoopArgs {
                desc0: desc.as_ptr().add(first),
                nblk: yr.len() * bpr,
                plane,
                oplane: plan.out_w * plan.out_h,
                tstride,
                nch: end - c,
                dummy: dummy.as_mut_ptr() as *mut u8,
                input: input.as_ptr().add(c * plane),
                out: dst.out.add((c - dst.c0) * plan.out_w * plan.out_h),
                taps: table.as_ptr(),
                consts: cvals.as_ptr() as *const f32,
                w,
                clamp,
            };
            #[cfg(debug_assertions)]
            for cc in c..end {
                for d in &desc[first..first + yr.len() * bpr] {
                    let o = (cc - dst.c0) * plan.out_w * plan.out_h + (d[0] >> 32) as usize;
                    let o = dst.out.add(o);
                    debug_assert!(o.add(16) <= dst.end, "store past the region: c {cc}");
                }
            }
            f(&mut args);
            let last = end - 1;
            if yr.end < pass.end {
                intrinsics(last, yr.end..pass.end);
            }
            c = end;
        }
    }
}

/// Channel `c`'s tap sets at `out`: per set `(row mask, kind)`, its taps with the lanes
/// that read padding zeroed (the kind's column masks `cm`, the rows outside the mask).
/// `one_kind`: every set has kind `sets[0].1`.
#[inline(always)]
unsafe fn build_sets(
    cm: &[[int8x16_t; 3]; 3],
    sets: &[(u8, usize)],
    one_kind: bool,
    taps: &[i8],
    c: usize,
    out: *mut u8,
) {
    let t = taps.as_ptr().add(c * 9);
    let dup: [int8x16_t; 9] = std::array::from_fn(|j| vld1q_dup_s8(t.add(j)));
    let k0 = sets[0].1;
    let common: [int8x16_t; 9] = std::array::from_fn(|j| vandq_s8(dup[j], cm[k0][j % 3]));
    for (i, &(mask, k)) in sets.iter().enumerate() {
        let o = out.add(i * SET) as *mut i8;
        for ky in 0..3 {
            let on = vdupq_n_s8(if mask & (1 << ky) != 0 { -1 } else { 0 });
            for (kx, &col) in cm[k].iter().enumerate() {
                let j = 3 * ky + kx;
                let v = if one_kind {
                    common[j]
                } else {
                    vandq_s8(dup[j], col)
                };
                vst1q_s8(o.add(16 * j), vandq_s8(v, on));
            }
        }
    }
}
