//! Driver of the generated software-pipelined loops (`asm_loops.rs`) for int8 output with
//! the activation folded into the int8 clamp (none, ReLU, foldable Clip): stride 1 or 2,
//! rows of more than 8 outputs. Per task it lists the blocks of 16 outputs of one channel's
//! rows once (descriptors shared by the task's channels), builds each channel's tap sets
//! (taps that read padding zeroed) and constants, and runs a loop over a run of channels.
//!
//! The loops read all three input rows of a block, padding rows too (their taps are zero),
//! so a row whose reads would leave the input (the first rows of the first channel, the
//! last of the last) goes through the intrinsics of `neon3x3`, as do, when rows are
//! narrower than 16, the last rows whose 16-byte stores would run past the task's region
//! or, when the task's rows take several passes, past the channel's plane (a channel's last
//! rows are stored in the last pass, the next channel's first rows in the first).

use super::asm_loops::{self, LoopArgs};
use super::neon3x3::Dst;
use super::Plan;
use crate::cpu::CoreKind;
use crate::kernels::requant::Requant;
use crate::quant::Precision;
use std::arch::aarch64::*;
use std::ops::Range;

/// Descriptors per pass (16 bytes each, on the stack); rows are cut into passes.
pub(super) const MAX_DESC: usize = 512;
/// Tap-table bytes per call (on the stack): channels per call.
const TABLE_BYTES: usize = 8192;
/// Bytes of one tap row: 3 vectors of 16.
const ROW: usize = 48;

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
    // Blocks of a row: starts 0, 16, .. and the last at `last_x0` (overlapping the one
    // before); kinds 0 first, 1 middle, 2 last (a row of one block: kind 0).
    let bpr = if single {
        1
    } else {
        plan.last_x0.div_ceil(16) + 1
    };
    let block = |b: usize| -> (usize, usize) {
        match b {
            0 => (0, 0),
            _ if b == bpr - 1 => (plan.last_x0, 2),
            _ => (16 * b, 1),
        }
    };
    assert!(bpr < MAX_DESC);
    // Vertical padding: a row whose receptive field leaves the plane reads the input rows
    // `iy0 + d ..= iy0 + d + 2` with the tap rows `d ..= d + 2` (rows outside `0..3` are
    // zero), for the shift `d` that keeps exactly its valid tap rows: -1 at the bottom, 1 at
    // the top. `None`: no shift does (only the middle tap row valid).
    let iy0 = |y: usize| (y * sh) as isize - pt;
    let shift = |y: usize| -> Option<isize> {
        let valid = |ky: isize| {
            let r = iy0(y) + ky;
            r >= 0 && (r as usize) < h
        };
        let (a, b) = (
            (0..3).find(|&k| valid(k))?,
            (0..3).rev().find(|&k| valid(k))?,
        );
        match (a, b) {
            (0, 2) => Some(0),
            (_, 2) => Some(a),
            (0, _) => Some(b - 2),
            _ => None,
        }
    };
    // Whether the loop's reads for row y (shifted by d) of channel c stay inside `input`.
    let len = input.len() as isize;
    let readable = |c: usize, y: usize, d: isize| {
        let base = (c * plane) as isize + (iy0(y) + d) * w as isize;
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
    let mut cvals = [[0f32; 4]; TABLE_BYTES / ROW];
    let rows_per_pass = (MAX_DESC / bpr).max(1);
    // Single-block rows store past their end onto rows written later: within a pass, rows
    // and channels go in order; with several passes a channel's last rows (in the last pass)
    // must not reach the next channel (written in the first).
    let passes = rows.len().div_ceil(rows_per_pass);
    let mut y = rows.start;
    while y < rows.end {
        let pass = y..(y + rows_per_pass).min(rows.end);
        y = pass.end;
        // The pass's rows the loops can do (shiftable; readable for middle channels: rows
        // only fail at the input's ends, checked per channel below), and the shifts used.
        let mut lo = pass.start;
        while lo < pass.end && shift(lo).is_none() {
            lo += 1;
        }
        let mut hi = lo;
        let (mut dmin, mut dmax) = (0, 0);
        while hi < pass.end {
            let Some(d) = shift(hi) else { break };
            dmin = dmin.min(d);
            dmax = dmax.max(d);
            hi += 1;
        }
        let loop_pass = lo..hi;
        if loop_pass.is_empty() {
            for c in chans.clone() {
                intrinsics(c, pass.clone());
            }
            continue;
        }
        // Each channel's tap table: per block kind used, its tap rows R0, R1, R2 between
        // `zl` zero rows before and `zr` after; a block's window starts at row `zl + d`.
        let (zl, zr) = ((-dmin) as usize, dmax as usize);
        debug_assert!(zl <= 2 && zr <= 2);
        let mut used = [false; 3];
        for b in 0..bpr {
            used[block(b).1] = true;
        }
        let mut kind_at = [0usize; 3];
        let mut nrows = 0;
        for k in 0..3 {
            if used[k] {
                kind_at[k] = nrows;
                nrows += zl + 3 + zr;
            }
        }
        let tstride = nrows * ROW;
        assert!(tstride <= TABLE_BYTES);
        let mut n = 0;
        for yy in loop_pass.clone() {
            let d = shift(yy).unwrap_or(0);
            for b in 0..bpr {
                let (x0, kind) = block(b);
                let in_off = (iy0(yy) + d) * w as isize + (x0 * s) as isize - pl;
                let out_off = ((yy - rows.start) * out_w + x0) as u64;
                let window = (kind_at[kind] as isize + zl as isize + d) as usize;
                desc[n] = [
                    (in_off as i32 as u32 as u64) | (out_off << 32),
                    (window * ROW) as u64,
                ];
                n += 1;
            }
        }
        desc[n] = desc[n - 1];
        let per_call = (TABLE_BYTES / tstride).max(1);
        // Rows of channel c the loops do in this pass.
        let loop_rows = |c: usize| {
            let mut yr = loop_pass.clone();
            let ok = |y: usize| readable(c, y, shift(y).unwrap_or(0));
            while yr.start < yr.end && !ok(yr.start) {
                yr.start += 1;
            }
            while yr.end > yr.start && !ok(yr.end - 1) {
                yr.end -= 1;
            }
            if single {
                // 16-byte stores run past narrow rows onto outputs written later, but must
                // not leave the task's region (nor, over several passes, the channel's).
                let at = (c - chans.start) * plane_out;
                let end = if passes > 1 {
                    region.min(at + plane_out)
                } else {
                    region
                };
                while yr.end > yr.start && at + (yr.end - 1 - rows.start) * out_w + 16 > end {
                    yr.end -= 1;
                }
            }
            yr
        };
        // Channels the loops do whole (every row of the pass): an interval, as rows only
        // fail at the input's and the region's ends; the others one at a time.
        let whole = |c: usize| loop_rows(c) == pass;
        let mut lo = chans.start;
        while lo < chans.end && !whole(lo) {
            lo += 1;
        }
        let mut hi = chans.end;
        while hi > lo && !whole(hi - 1) {
            hi -= 1;
        }
        // One call of the loops over channels `c..e`, rows `yr` of the pass.
        let mut call = |c: usize, e: usize, yr: Range<usize>| {
            for (k, cc) in (c..e).enumerate() {
                cvals[k] = consts(cc);
                let t = table.as_mut_ptr().add(k * tstride);
                build_table(&cm, used, (zl, zr), taps, cc, t);
            }
            let first = (yr.start - loop_pass.start) * bpr;
            let mut args = LoopArgs {
                desc0: desc.as_ptr().add(first),
                nblk: yr.len() * bpr,
                plane,
                oplane: plane_out,
                tstride,
                nch: e - c,
                dummy: dummy.as_mut_ptr() as *mut u8,
                input: input.as_ptr().add(c * plane),
                out: dst.out.add((c - dst.c0) * plane_out),
                taps: table.as_ptr(),
                consts: cvals.as_ptr() as *const f32,
                w,
                clamp,
            };
            #[cfg(debug_assertions)]
            for cc in c..e {
                let plane_end = (cc - dst.c0 + 1) * plane_out;
                for d in &desc[first..first + yr.len() * bpr] {
                    let o = (cc - dst.c0) * plane_out + (d[0] >> 32) as usize;
                    debug_assert!(
                        passes == 1 || o + 16 <= plane_end,
                        "store past the channel: c {cc}"
                    );
                    let o = dst.out.add(o);
                    debug_assert!(o.add(16) <= dst.end, "store past the region: c {cc}");
                }
            }
            f(&mut args);
        };
        let one = |c: usize, call: &mut dyn FnMut(usize, usize, Range<usize>)| {
            let yr = loop_rows(c);
            if !pipelined(c) || yr.is_empty() {
                intrinsics(c, pass.clone());
                return;
            }
            if yr.start > pass.start {
                intrinsics(c, pass.start..yr.start);
            }
            let tail = yr.end..pass.end;
            call(c, c + 1, yr);
            if !tail.is_empty() {
                intrinsics(c, tail);
            }
        };
        for c in chans.start..lo {
            one(c, &mut call);
        }
        let mut c = lo;
        while c < hi {
            if !pipelined(c) {
                intrinsics(c, pass.clone());
                c += 1;
                continue;
            }
            let mut e = c + 1;
            while e < hi && e - c < per_call && pipelined(e) {
                e += 1;
            }
            call(c, e, pass.clone());
            c = e;
        }
        for c in hi.max(lo)..chans.end {
            one(c, &mut call);
        }
    }
}

/// Channel `c`'s tap table at `out`: per block kind used, `z.0` zero tap rows, its three
/// tap rows (3 vectors each, lanes that read padding zeroed by the kind's column masks
/// `cm`), `z.1` zero rows.
#[inline(always)]
unsafe fn build_table(
    cm: &[[int8x16_t; 3]; 3],
    used: [bool; 3],
    z: (usize, usize),
    taps: &[i8],
    c: usize,
    out: *mut u8,
) {
    let t = taps.as_ptr().add(c * 9);
    let lo = vld1_s8(t);
    let dup = [
        vdupq_lane_s8::<0>(lo),
        vdupq_lane_s8::<1>(lo),
        vdupq_lane_s8::<2>(lo),
        vdupq_lane_s8::<3>(lo),
        vdupq_lane_s8::<4>(lo),
        vdupq_lane_s8::<5>(lo),
        vdupq_lane_s8::<6>(lo),
        vdupq_lane_s8::<7>(lo),
        vld1q_dup_s8(t.add(8)),
    ];
    let zero = vdupq_n_s8(0);
    let mut o = out as *mut i8;
    let mut row = |a: int8x16_t, b: int8x16_t, c: int8x16_t| {
        vst1q_s8(o, a);
        vst1q_s8(o.add(16), b);
        vst1q_s8(o.add(32), c);
        o = o.add(48);
    };
    for (k, m) in cm.iter().enumerate() {
        if !used[k] {
            continue;
        }
        // (At most two zero rows a side, written out: a loop would become a memset call.)
        if z.0 > 0 {
            row(zero, zero, zero);
        }
        if z.0 > 1 {
            row(zero, zero, zero);
        }
        for ky in 0..3 {
            row(
                vandq_s8(dup[3 * ky], m[0]),
                vandq_s8(dup[3 * ky + 1], m[1]),
                vandq_s8(dup[3 * ky + 2], m[2]),
            );
        }
        if z.1 > 0 {
            row(zero, zero, zero);
        }
        if z.1 > 1 {
            row(zero, zero, zero);
        }
    }
}
