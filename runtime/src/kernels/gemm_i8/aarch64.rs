//! NEON kernels for ARMv8.0 (Cortex-A53 / A72: no dot product), 4 x 4 tiles, K in steps of 16.
//!
//! Lanes run along K: an A row and a B column of one step are 16 bytes each, `smull` multiplies
//! their low 8 bytes lane by lane into int16, `smlal` adds the high 8 bytes' products into the
//! same lanes, and `sadalp` pair-adds the int16 lanes into a 4 x int32 accumulator per output.
//! The four lanes of each accumulator are summed once, after the K loop.
//!
//! * INT8: flush after every step. Flush interval: 2 products per int16 lane; bound
//!   2 · 127 · 127 = 32258 ≤ 32767 (why −128 must never occur).
//! * INT7: four steps accumulate in int16 before one `sadalp`. Flush interval: 8 products
//!   per int16 lane; bound 8 · 63 · 63 = 31752 ≤ 32767. One `sadalp` per 8 products
//!   instead of one per 2.
//!
//! Per core type (same layout, so one packed A serves both clusters of a big.LITTLE chip):
//! * Cortex-A53 (in-order, dual-issues a 64-bit load with NEON arithmetic but not a 128-bit
//!   one): only 64-bit loads (`ldr d` / `ldp d`), written next to the multiplies that use them.
//! * Cortex-A72 (out-of-order, wide loads are cheap): 128-bit loads with `smull` / `smlal2`
//!   on the halves, two steps per loop iteration for INT8.
//!
//! These are intrinsics: the final instruction order is LLVM's (generic aarch64 model), which
//! keeps the load widths but hoists some loads; INT8-A53 spills a few accumulators per step
//! (16 int32x4 accumulators + 8 B halves). Hand-scheduled `asm!` is the next step if the
//! board shows the A53 loop issue-bound.

use super::{Acc, Family, MicroKernel, NR_MAX};
use crate::quant::Precision;
use std::arch::aarch64::*;

const MR: usize = 4;
const NR: usize = 4;
const KSTEP: usize = 16;
/// Bytes of A (and of B) per k step.
const STEP: usize = MR * KSTEP;
/// INT7: k steps (2 products each per int16 lane) summed before widening.
const INT7_GROUP: usize = 4;

const INT8_A53: MicroKernel = MicroKernel {
    name: "neon int8 4x4 a53 (64-bit loads)",
    func: int8_a53,
};
const INT8_A72: MicroKernel = MicroKernel {
    name: "neon int8 4x4 a72 (128-bit loads, 2 steps)",
    func: int8_a72,
};
const INT7_A53: MicroKernel = MicroKernel {
    name: "neon int7 4x4 a53 (64-bit loads)",
    func: int7_a53,
};
const INT7_A72: MicroKernel = MicroKernel {
    name: "neon int7 4x4 a72 (128-bit loads)",
    func: int7_a72,
};

pub fn family(p: Precision) -> Family {
    match p {
        Precision::Int8 => Family::per_core(
            "neon int8 4x4k16",
            p,
            MR,
            NR,
            KSTEP,
            INT8_A53,
            INT8_A72,
            INT8_A72,
        ),
        Precision::Int7 => Family::per_core(
            "neon int7 4x4k16",
            p,
            MR,
            NR,
            KSTEP,
            INT7_A53,
            INT7_A72,
            INT7_A72,
        ),
    }
}

type Tile32 = [[int32x4_t; NR]; MR];
type Tile16 = [[int16x8_t; NR]; MR];

/// Sums each accumulator's four lanes into `acc`.
#[inline(always)]
unsafe fn store(c: &Tile32, acc: &mut Acc) {
    for (r, row) in c.iter().enumerate() {
        let sums = vpaddq_s32(vpaddq_s32(row[0], row[1]), vpaddq_s32(row[2], row[3]));
        vst1q_s32(acc.as_mut_ptr().add(r * NR_MAX), sums);
    }
}

/// INT8, A53 schedule: per step the B columns are loaded as eight 64-bit halves, then each
/// A row's two halves are loaded just before its 12 multiply / pair-add instructions.
///
/// # Safety
/// See [`super::MicroFn`]. NEON is part of the aarch64 baseline.
unsafe fn int8_a53(kp: usize, mut a: *const i8, mut b: *const i8, acc: &mut Acc) {
    let mut c: Tile32 = [[vdupq_n_s32(0); NR]; MR];
    for _ in 0..kp {
        let mut b_lo = [vdup_n_s8(0); NR];
        let mut b_hi = [vdup_n_s8(0); NR];
        for j in 0..NR {
            b_lo[j] = vld1_s8(b.add(j * KSTEP));
            b_hi[j] = vld1_s8(b.add(j * KSTEP + 8));
        }
        for (r, cr) in c.iter_mut().enumerate() {
            let a_lo = vld1_s8(a.add(r * KSTEP));
            let a_hi = vld1_s8(a.add(r * KSTEP + 8));
            for j in 0..NR {
                let t = vmlal_s8(vmull_s8(a_lo, b_lo[j]), a_hi, b_hi[j]);
                cr[j] = vpadalq_s16(cr[j], t);
            }
        }
        a = a.add(STEP);
        b = b.add(STEP);
    }
    store(&c, acc);
}

/// One INT8 step with 128-bit loads.
#[inline(always)]
unsafe fn int8_step_q(c: &mut Tile32, a: *const i8, b: *const i8) {
    let bq = [
        vld1q_s8(b),
        vld1q_s8(b.add(KSTEP)),
        vld1q_s8(b.add(2 * KSTEP)),
        vld1q_s8(b.add(3 * KSTEP)),
    ];
    for (r, cr) in c.iter_mut().enumerate() {
        let aq = vld1q_s8(a.add(r * KSTEP));
        for j in 0..NR {
            let t = vmull_s8(vget_low_s8(aq), vget_low_s8(bq[j]));
            cr[j] = vpadalq_s16(cr[j], vmlal_high_s8(t, aq, bq[j]));
        }
    }
}

/// INT8, A72 schedule: 128-bit loads, two steps per iteration.
///
/// # Safety
/// See [`super::MicroFn`].
unsafe fn int8_a72(kp: usize, mut a: *const i8, mut b: *const i8, acc: &mut Acc) {
    let mut c: Tile32 = [[vdupq_n_s32(0); NR]; MR];
    for _ in 0..kp / 2 {
        int8_step_q(&mut c, a, b);
        int8_step_q(&mut c, a.add(STEP), b.add(STEP));
        a = a.add(2 * STEP);
        b = b.add(2 * STEP);
    }
    if kp % 2 == 1 {
        int8_step_q(&mut c, a, b);
    }
    store(&c, acc);
}

/// Widens the int16 partial sums into the int32 accumulators.
#[inline(always)]
unsafe fn flush(c: &mut Tile32, t: &Tile16) {
    for (cr, tr) in c.iter_mut().zip(t) {
        for (cj, &tj) in cr.iter_mut().zip(tr) {
            *cj = vpadalq_s16(*cj, tj);
        }
    }
}

/// INT7 partial sums of `steps` (≤ [`INT7_GROUP`]) steps, A53 schedule: for each 8-byte half
/// of a step, four 64-bit A loads and four B loads feed 16 `smull` / `smlal`.
#[inline(always)]
unsafe fn int7_group_a53(a: *const i8, b: *const i8, steps: usize) -> Tile16 {
    let mut t: Tile16 = [[vdupq_n_s16(0); NR]; MR];
    for half in 0..2 * steps {
        let off = (half / 2) * STEP + (half % 2) * 8;
        let mut bd = [vdup_n_s8(0); NR];
        for (j, bj) in bd.iter_mut().enumerate() {
            *bj = vld1_s8(b.add(off + j * KSTEP));
        }
        for (r, tr) in t.iter_mut().enumerate() {
            let ad = vld1_s8(a.add(off + r * KSTEP));
            for j in 0..NR {
                tr[j] = if half == 0 {
                    vmull_s8(ad, bd[j])
                } else {
                    vmlal_s8(tr[j], ad, bd[j])
                };
            }
        }
    }
    t
}

/// INT7, A53 schedule.
///
/// # Safety
/// See [`super::MicroFn`].
unsafe fn int7_a53(kp: usize, mut a: *const i8, mut b: *const i8, acc: &mut Acc) {
    let mut c: Tile32 = [[vdupq_n_s32(0); NR]; MR];
    for _ in 0..kp / INT7_GROUP {
        let t = int7_group_a53(a, b, INT7_GROUP);
        flush(&mut c, &t);
        a = a.add(INT7_GROUP * STEP);
        b = b.add(INT7_GROUP * STEP);
    }
    if !kp.is_multiple_of(INT7_GROUP) {
        let t = int7_group_a53(a, b, kp % INT7_GROUP);
        flush(&mut c, &t);
    }
    store(&c, acc);
}

/// INT7 partial sums of `steps` (≤ [`INT7_GROUP`]) steps with 128-bit loads.
#[inline(always)]
unsafe fn int7_group_a72(a: *const i8, b: *const i8, steps: usize) -> Tile16 {
    let mut t: Tile16 = [[vdupq_n_s16(0); NR]; MR];
    for s in 0..steps {
        let (a, b) = (a.add(s * STEP), b.add(s * STEP));
        let bq = [
            vld1q_s8(b),
            vld1q_s8(b.add(KSTEP)),
            vld1q_s8(b.add(2 * KSTEP)),
            vld1q_s8(b.add(3 * KSTEP)),
        ];
        for (r, tr) in t.iter_mut().enumerate() {
            let aq = vld1q_s8(a.add(r * KSTEP));
            for j in 0..NR {
                let lo = if s == 0 {
                    vmull_s8(vget_low_s8(aq), vget_low_s8(bq[j]))
                } else {
                    vmlal_s8(tr[j], vget_low_s8(aq), vget_low_s8(bq[j]))
                };
                tr[j] = vmlal_high_s8(lo, aq, bq[j]);
            }
        }
    }
    t
}

/// INT7, A72 schedule.
///
/// # Safety
/// See [`super::MicroFn`].
unsafe fn int7_a72(kp: usize, mut a: *const i8, mut b: *const i8, acc: &mut Acc) {
    let mut c: Tile32 = [[vdupq_n_s32(0); NR]; MR];
    for _ in 0..kp / INT7_GROUP {
        let t = int7_group_a72(a, b, INT7_GROUP);
        flush(&mut c, &t);
        a = a.add(INT7_GROUP * STEP);
        b = b.add(INT7_GROUP * STEP);
    }
    if !kp.is_multiple_of(INT7_GROUP) {
        let t = int7_group_a72(a, b, kp % INT7_GROUP);
        flush(&mut c, &t);
    }
    store(&c, acc);
}
