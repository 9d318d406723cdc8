//! NEON micro-kernels, 8 x 8: sixteen q-register accumulators (v16..v31, row `r` in
//! v(16+2r) and v(17+2r)), per k step one 8-float A column (two q registers, one lane per row)
//! and one 8-float B row (two q registers), sixteen `fmla .4s` by element.
//!
//! The K loops are `asm!`: the compiler neither keeps the loads where the in-order core
//! needs them nor unrolls the way the cores want. Both variants sum in the same order
//! (start value, then k = 0, 1, ... with fused multiply-adds), so a tile's result does not
//! depend on the core that computed it.
//!
//! * Cortex-A53 variant ([`micro_a53`]): software-pipelined. Two register sets (v0..v3,
//!   v4..v7) alternate between k steps: while step k runs its sixteen `fmla`s from one set,
//!   four `ldr q` with immediate offsets fetch step k+1 into the other, A's pair after the
//!   fourth `fmla` and B's after the twelfth, so an in-order dual-issue core pairs the loads
//!   with arithmetic and never waits on one. Four steps per iteration, one pointer bump per
//!   operand per iteration (post-increment loads cost the in-order core an extra issue
//!   slot). On LLVM's Cortex-A55 model the loop runs within 1 % of its resource bound,
//!   42 cycles per 64 `fmla` (0.66 cycle each; ncnn's A53 kernel, built from `ldr d` +
//!   `ldr x` + `ins`, takes 1.7 there). Of the load placements with that A55 cost, pairs
//!   suit LLVM's Cortex-A53 model best (1.9 cycles per `fmla` against 2.4 for single loads
//!   spread evenly: that model's in-order write-back makes each load wait for the `fmla`
//!   before it, so fewer separate load groups stall less). The `ldr d` / `ldr x` / `ins` form is not used: on the A55 model it costs two
//!   issue slots more per 128 bits than `ldr q` with an offset, and on LLVM's A53 model
//!   (in-order write-back, see the armcycles README) it is worse still.
//! * Cortex-A72 variant ([`micro_a72`]): out of order, so the schedule matters less than the
//!   instruction count: `ldp q` pairs, loads grouped at the head of each step, two steps per
//!   iteration. One `fmla` per cycle on LLVM's A72 model, its peak.
//!
//! The epilogue (start values, activation, stores) is intrinsics around the `asm!` block.

use super::{Kernel, TailKernel, Tile, TileAct};
use std::arch::aarch64::*;
use std::arch::asm;

const MR: usize = 8;
const NR: usize = 8;

pub const KERNEL: Kernel = Kernel {
    name: "neon 8x8",
    mr: MR,
    nr: NR,
    a53: micro_a53,
    a72: micro_a72,
    other: micro_a72,
    tails: [
        Some(TailKernel {
            nr: 4,
            a53: tail_a53,
            a72: tail_a72,
            other: tail_a72,
        }),
        Some(TailKernel {
            nr: 1,
            a53: tail1,
            a72: tail1,
            other: tail1,
        }),
    ],
};

/// One `fmla` of the 8x8 step: accumulator `c`, B register `b`, A register `a` lane `l`.
macro_rules! fm {
    ($c:literal, $b:literal, $a:literal, $l:literal) => {
        concat!("fmla v", $c, ".4s, v", $b, ".4s, v", $a, ".s[", $l, "]\n")
    };
}

/// The sixteen `fmla`s of one k step from A in (`a0`, `a1`) and B in (`b0`, `b1`), with
/// `l0` (instructions, possibly none) issued after the fourth and `l1` after the twelfth.
macro_rules! step {
    ($a0:literal, $a1:literal, $b0:literal, $b1:literal, $l0:expr, $l1:expr) => {
        concat!(
            fm!(16, $b0, $a0, 0),
            fm!(17, $b1, $a0, 0),
            fm!(18, $b0, $a0, 1),
            fm!(19, $b1, $a0, 1),
            $l0,
            fm!(20, $b0, $a0, 2),
            fm!(21, $b1, $a0, 2),
            fm!(22, $b0, $a0, 3),
            fm!(23, $b1, $a0, 3),
            fm!(24, $b0, $a1, 0),
            fm!(25, $b1, $a1, 0),
            fm!(26, $b0, $a1, 1),
            fm!(27, $b1, $a1, 1),
            $l1,
            fm!(28, $b0, $a1, 2),
            fm!(29, $b1, $a1, 2),
            fm!(30, $b0, $a1, 3),
            fm!(31, $b1, $a1, 3),
        )
    };
}

/// `ldr q<reg>, [<ptr>, #<off>]`.
macro_rules! ld {
    ($reg:literal, $ptr:literal, $off:literal) => {
        concat!("ldr q", $reg, ", [{", $ptr, "}, #", $off, "]\n")
    };
}

/// Step from set 0 (v0..v3) loading the step `off` bytes ahead into set 1 (v4..v7).
macro_rules! step0 {
    ($off:literal, $off16:literal) => {
        step!(
            0,
            1,
            2,
            3,
            concat!(ld!(4, "a", $off), ld!(5, "a", $off16)),
            concat!(ld!(6, "b", $off), ld!(7, "b", $off16))
        )
    };
}

/// Step from set 1 loading into set 0.
macro_rules! step1 {
    ($off:literal, $off16:literal) => {
        step!(
            4,
            5,
            6,
            7,
            concat!(ld!(0, "a", $off), ld!(1, "a", $off16)),
            concat!(ld!(2, "b", $off), ld!(3, "b", $off16))
        )
    };
}

/// The accumulators' start values: the bias broadcast along each row, or the tile's
/// current contents.
#[inline(always)]
unsafe fn start(tile: &Tile) -> [float32x4_t; 16] {
    let mut c = [vdupq_n_f32(0.0); 16];
    if tile.accumulate {
        for r in 0..MR {
            c[2 * r] = vld1q_f32(tile.rows[r]);
            c[2 * r + 1] = vld1q_f32(tile.rows[r].add(4));
        }
    } else {
        let lo = vld1q_f32(tile.bias);
        let hi = vld1q_f32(tile.bias.add(4));
        let lanes = [
            vdupq_laneq_f32::<0>(lo),
            vdupq_laneq_f32::<1>(lo),
            vdupq_laneq_f32::<2>(lo),
            vdupq_laneq_f32::<3>(lo),
            vdupq_laneq_f32::<0>(hi),
            vdupq_laneq_f32::<1>(hi),
            vdupq_laneq_f32::<2>(hi),
            vdupq_laneq_f32::<3>(hi),
        ];
        for (r, &v) in lanes.iter().enumerate() {
            c[2 * r] = v;
            c[2 * r + 1] = v;
        }
    }
    c
}

/// [`TileAct`] on four lanes. `fmax` / `fmin` propagate NaN, as the scalar comparisons
/// keep it.
#[inline(always)]
pub(crate) unsafe fn act4(v: float32x4_t, act: TileAct) -> float32x4_t {
    match act {
        TileAct::None => v,
        TileAct::Relu => vmaxq_f32(v, vdupq_n_f32(0.0)),
        TileAct::Leaky(s) => {
            let neg = vcltq_f32(v, vdupq_n_f32(0.0));
            vbslq_f32(neg, vmulq_n_f32(v, s), v)
        }
        TileAct::Clip(min, max) => vminq_f32(vmaxq_f32(v, vdupq_n_f32(min)), vdupq_n_f32(max)),
    }
}

#[inline(always)]
unsafe fn finish(c: [float32x4_t; 16], tile: &Tile) {
    for r in 0..MR {
        let row = tile.rows[r];
        vst1q_f32(row, act4(c[2 * r], tile.act));
        vst1q_f32(row.add(4), act4(c[2 * r + 1], tile.act));
    }
}

/// Cortex-A53 variant (see the module comment).
///
/// # Safety
/// See [`super::MicroKernel`]. NEON is part of the aarch64 baseline.
pub unsafe fn micro_a53(kc: usize, a: *const f32, b: *const f32, tile: &Tile) {
    debug_assert!(kc >= 1);
    let [mut c0, mut c1, mut c2, mut c3, mut c4, mut c5, mut c6, mut c7, mut c8, mut c9, mut c10, mut c11, mut c12, mut c13, mut c14, mut c15] =
        start(tile);
    // Steps not yet computed minus 5: the 4-step loop runs while the step after its four is
    // there to be preloaded; the tail finishes 1..=4 steps, the last one without loads.
    asm!(
        ld!(0, "a", 0),
        ld!(1, "a", 16),
        ld!(2, "b", 0),
        ld!(3, "b", 16),
        "subs {n}, {n}, #5",
        "b.lt 2f",
        "1:",
        step0!(32, 48),
        step1!(64, 80),
        step0!(96, 112),
        step1!(128, 144),
        "add {a}, {a}, #128",
        "add {b}, {b}, #128",
        "subs {n}, {n}, #4",
        "b.ge 1b",
        "2:",
        // n = steps left (1..=4, the first in set 0) minus 2.
        "adds {n}, {n}, #3",
        "b.lt 4f",
        "3:",
        step0!(32, 48),
        "b.eq 5f",
        step1!(64, 80),
        "add {a}, {a}, #64",
        "add {b}, {b}, #64",
        "subs {n}, {n}, #2",
        "b.ge 3b",
        "4:",
        step!(0, 1, 2, 3, "", ""),
        "b 6f",
        "5:",
        step!(4, 5, 6, 7, "", ""),
        "6:",
        a = inout(reg) a => _,
        b = inout(reg) b => _,
        n = inout(reg) kc => _,
        out("v0") _, out("v1") _, out("v2") _, out("v3") _,
        out("v4") _, out("v5") _, out("v6") _, out("v7") _,
        inout("v16") c0, inout("v17") c1, inout("v18") c2, inout("v19") c3,
        inout("v20") c4, inout("v21") c5, inout("v22") c6, inout("v23") c7,
        inout("v24") c8, inout("v25") c9, inout("v26") c10, inout("v27") c11,
        inout("v28") c12, inout("v29") c13, inout("v30") c14, inout("v31") c15,
        options(nostack, readonly),
    );
    finish(
        [
            c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15,
        ],
        tile,
    );
}

/// Cortex-A72 variant (see the module comment).
///
/// # Safety
/// See [`super::MicroKernel`]. NEON is part of the aarch64 baseline.
pub unsafe fn micro_a72(kc: usize, a: *const f32, b: *const f32, tile: &Tile) {
    debug_assert!(kc >= 1);
    let [mut c0, mut c1, mut c2, mut c3, mut c4, mut c5, mut c6, mut c7, mut c8, mut c9, mut c10, mut c11, mut c12, mut c13, mut c14, mut c15] =
        start(tile);
    asm!(
        "subs {n}, {n}, #2",
        "b.lt 2f",
        "1:",
        "ldp q0, q1, [{a}], #32",
        "ldp q2, q3, [{b}], #32",
        "ldp q4, q5, [{a}], #32",
        "ldp q6, q7, [{b}], #32",
        step!(0, 1, 2, 3, "", ""),
        step!(4, 5, 6, 7, "", ""),
        "subs {n}, {n}, #2",
        "b.ge 1b",
        "2:",
        "adds {n}, {n}, #2",
        "b.eq 3f",
        "ldp q0, q1, [{a}]",
        "ldp q2, q3, [{b}]",
        step!(0, 1, 2, 3, "", ""),
        "3:",
        a = inout(reg) a => _,
        b = inout(reg) b => _,
        n = inout(reg) kc => _,
        out("v0") _, out("v1") _, out("v2") _, out("v3") _,
        out("v4") _, out("v5") _, out("v6") _, out("v7") _,
        inout("v16") c0, inout("v17") c1, inout("v18") c2, inout("v19") c3,
        inout("v20") c4, inout("v21") c5, inout("v22") c6, inout("v23") c7,
        inout("v24") c8, inout("v25") c9, inout("v26") c10, inout("v27") c11,
        inout("v28") c12, inout("v29") c13, inout("v30") c14, inout("v31") c15,
        options(nostack, readonly),
    );
    finish(
        [
            c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15,
        ],
        tile,
    );
}

/// The eight `fmla`s of one 8 x 4 tail step from A in (`a0`, `a1`) and B in `b`, with `l0`
/// after the second and `l1` after the sixth.
macro_rules! step4 {
    ($a0:literal, $a1:literal, $b:literal, $l0:expr, $l1:expr) => {
        concat!(
            fm!(16, $b, $a0, 0),
            fm!(17, $b, $a0, 1),
            $l0,
            fm!(18, $b, $a0, 2),
            fm!(19, $b, $a0, 3),
            fm!(20, $b, $a1, 0),
            fm!(21, $b, $a1, 1),
            $l1,
            fm!(22, $b, $a1, 2),
            fm!(23, $b, $a1, 3),
        )
    };
}

/// Tail step from set 0 (v0, v1; v2) loading the step `off` bytes of A / `boff` of B ahead
/// into set 1 (v3, v4; v5).
macro_rules! step4_0 {
    ($off:literal, $off16:literal, $boff:literal) => {
        step4!(
            0,
            1,
            2,
            concat!(ld!(3, "a", $off), ld!(4, "a", $off16)),
            ld!(5, "b", $boff)
        )
    };
}

/// Tail step from set 1 loading into set 0.
macro_rules! step4_1 {
    ($off:literal, $off16:literal, $boff:literal) => {
        step4!(
            3,
            4,
            5,
            concat!(ld!(0, "a", $off), ld!(1, "a", $off16)),
            ld!(2, "b", $boff)
        )
    };
}

/// Start values of the 8 x 4 tail.
#[inline(always)]
unsafe fn start4(tile: &Tile) -> [float32x4_t; 8] {
    if tile.accumulate {
        std::array::from_fn(|r| vld1q_f32(tile.rows[r]))
    } else {
        let lo = vld1q_f32(tile.bias);
        let hi = vld1q_f32(tile.bias.add(4));
        [
            vdupq_laneq_f32::<0>(lo),
            vdupq_laneq_f32::<1>(lo),
            vdupq_laneq_f32::<2>(lo),
            vdupq_laneq_f32::<3>(lo),
            vdupq_laneq_f32::<0>(hi),
            vdupq_laneq_f32::<1>(hi),
            vdupq_laneq_f32::<2>(hi),
            vdupq_laneq_f32::<3>(hi),
        ]
    }
}

#[inline(always)]
unsafe fn finish4(c: [float32x4_t; 8], tile: &Tile) {
    for (r, v) in c.into_iter().enumerate() {
        vst1q_f32(tile.rows[r], act4(v, tile.act));
    }
}

/// Cortex-A53 8 x 4 tail (B panels 4 wide): the 8 x 8 kernel's schedule with one B register.
///
/// # Safety
/// See [`super::MicroKernel`] (B panels 4 wide).
pub unsafe fn tail_a53(kc: usize, a: *const f32, b: *const f32, tile: &Tile) {
    debug_assert!(kc >= 1);
    let [mut c0, mut c1, mut c2, mut c3, mut c4, mut c5, mut c6, mut c7] = start4(tile);
    asm!(
        ld!(0, "a", 0),
        ld!(1, "a", 16),
        ld!(2, "b", 0),
        "subs {n}, {n}, #5",
        "b.lt 2f",
        "1:",
        step4_0!(32, 48, 16),
        step4_1!(64, 80, 32),
        step4_0!(96, 112, 48),
        step4_1!(128, 144, 64),
        "add {a}, {a}, #128",
        "add {b}, {b}, #64",
        "subs {n}, {n}, #4",
        "b.ge 1b",
        "2:",
        "adds {n}, {n}, #3",
        "b.lt 4f",
        "3:",
        step4_0!(32, 48, 16),
        "b.eq 5f",
        step4_1!(64, 80, 32),
        "add {a}, {a}, #64",
        "add {b}, {b}, #32",
        "subs {n}, {n}, #2",
        "b.ge 3b",
        "4:",
        step4!(0, 1, 2, "", ""),
        "b 6f",
        "5:",
        step4!(3, 4, 5, "", ""),
        "6:",
        a = inout(reg) a => _,
        b = inout(reg) b => _,
        n = inout(reg) kc => _,
        out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
        inout("v16") c0, inout("v17") c1, inout("v18") c2, inout("v19") c3,
        inout("v20") c4, inout("v21") c5, inout("v22") c6, inout("v23") c7,
        options(nostack, readonly),
    );
    finish4([c0, c1, c2, c3, c4, c5, c6, c7], tile);
}

/// Cortex-A72 8 x 4 tail.
///
/// # Safety
/// See [`super::MicroKernel`] (B panels 4 wide).
pub unsafe fn tail_a72(kc: usize, a: *const f32, b: *const f32, tile: &Tile) {
    debug_assert!(kc >= 1);
    let [mut c0, mut c1, mut c2, mut c3, mut c4, mut c5, mut c6, mut c7] = start4(tile);
    asm!(
        "subs {n}, {n}, #2",
        "b.lt 2f",
        "1:",
        "ldp q0, q1, [{a}], #32",
        "ldr q2, [{b}], #16",
        "ldp q3, q4, [{a}], #32",
        "ldr q5, [{b}], #16",
        step4!(0, 1, 2, "", ""),
        step4!(3, 4, 5, "", ""),
        "subs {n}, {n}, #2",
        "b.ge 1b",
        "2:",
        "adds {n}, {n}, #2",
        "b.eq 3f",
        "ldp q0, q1, [{a}]",
        "ldr q2, [{b}]",
        step4!(0, 1, 2, "", ""),
        "3:",
        a = inout(reg) a => _,
        b = inout(reg) b => _,
        n = inout(reg) kc => _,
        out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
        inout("v16") c0, inout("v17") c1, inout("v18") c2, inout("v19") c3,
        inout("v20") c4, inout("v21") c5, inout("v22") c6, inout("v23") c7,
        options(nostack, readonly),
    );
    finish4([c0, c1, c2, c3, c4, c5, c6, c7], tile);
}

/// One 8 x 1 step: A (8 floats) from `a` at `off` into `ra` / `rb`, times lane `l` of v0
/// (B), into accumulators `cl` / `ch` (phase `l`: v(16+2l), v(17+2l)).
macro_rules! step1 {
    ($l:literal, $cl:literal, $ch:literal, $ra:literal, $rb:literal, $off:literal, $off16:literal) => {
        concat!(
            ld!($ra, "a", $off),
            ld!($rb, "a", $off16),
            fm!($cl, $ra, 0, $l),
            fm!($ch, $rb, 0, $l),
        )
    };
}

/// The 8 x 1 tail (B panels 1 wide), for every core: steps `4q + l` of the whole groups of
/// four go to phase `l`'s accumulators, the last `kc mod 4` steps to phase 0, and the
/// phases are summed at the end as `(p0 + p1) + (p2 + p3)` (`p0` starting from the bias or
/// the previous sums): four chains keep it from waiting on the `fmla` latency (a single
/// chain waits one latency per k step). The columns this runs are always the matrix's last
/// `n mod 8` (whole panels before them whatever the blocking), so every blocking sums each
/// output the same way.
///
/// # Safety
/// See [`super::MicroKernel`] (B panels 1 wide).
pub unsafe fn tail1(kc: usize, a: *const f32, b: *const f32, tile: &Tile) {
    debug_assert!(kc >= 1);
    let z = vdupq_n_f32(0.0);
    let (mut p0l, mut p0h) = if tile.accumulate {
        let mut c = [0.0f32; 8];
        for (r, v) in c.iter_mut().enumerate() {
            *v = *tile.rows[r];
        }
        (vld1q_f32(c.as_ptr()), vld1q_f32(c.as_ptr().add(4)))
    } else {
        (vld1q_f32(tile.bias), vld1q_f32(tile.bias.add(4)))
    };
    let (mut p1l, mut p1h, mut p2l, mut p2h, mut p3l, mut p3h) = (z, z, z, z, z, z);
    let steps = kc / 4;
    let rest = kc % 4;
    asm!(
        "cbz {n}, 2f",
        "1:",
        "ldr q0, [{b}]",
        step1!(0, 16, 17, 1, 2, 0, 16),
        step1!(1, 18, 19, 3, 4, 32, 48),
        step1!(2, 20, 21, 5, 6, 64, 80),
        step1!(3, 22, 23, 1, 2, 96, 112),
        "add {a}, {a}, #128",
        "add {b}, {b}, #16",
        "subs {n}, {n}, #1",
        "b.ne 1b",
        "2:",
        // The last kc mod 4 steps, into phase 0.
        "cbz {r}, 3f",
        "ldr s0, [{b}]",
        step1!(0, 16, 17, 1, 2, 0, 16),
        "cmp {r}, #2",
        "b.lt 3f",
        "ldr s0, [{b}, #4]",
        step1!(0, 16, 17, 3, 4, 32, 48),
        "cmp {r}, #3",
        "b.lt 3f",
        "ldr s0, [{b}, #8]",
        step1!(0, 16, 17, 5, 6, 64, 80),
        "3:",
        a = inout(reg) a => _,
        b = inout(reg) b => _,
        n = inout(reg) steps => _,
        r = in(reg) rest,
        out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
        out("v6") _,
        inout("v16") p0l, inout("v17") p0h, inout("v18") p1l, inout("v19") p1h,
        inout("v20") p2l, inout("v21") p2h, inout("v22") p3l, inout("v23") p3h,
        options(nostack, readonly),
    );
    let lo = act4(
        vaddq_f32(vaddq_f32(p0l, p1l), vaddq_f32(p2l, p3l)),
        tile.act,
    );
    let hi = act4(
        vaddq_f32(vaddq_f32(p0h, p1h), vaddq_f32(p2h, p3h)),
        tile.act,
    );
    let mut c = [0.0f32; 8];
    vst1q_f32(c.as_mut_ptr(), lo);
    vst1q_f32(c.as_mut_ptr().add(4), hi);
    for (r, v) in c.into_iter().enumerate() {
        *tile.rows[r] = v;
    }
}
