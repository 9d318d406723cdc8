//! NEON GEMV: four rows share each 4-wide load of `x`; four accumulators per row (16
//! inputs per step, `asm!`) hide the FMA latency and keep one load issuing per cycle.

use std::arch::aarch64::*;
use std::arch::asm;

/// # Safety
/// `w` holds at least `y.len() * x.len()` values and `bias`, if any, `y.len()` (`super::gemv`
/// checks both): the SIMD loads of the rows are unchecked.
pub unsafe fn gemv(w: &[f32], x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let (k, w, x) = (x.len(), w.as_ptr(), x.as_ptr());
    // SAFETY: NEON is baseline; every row read lies in `w` (checked by the caller).
    super::by_rows(
        y,
        bias,
        |r| unsafe { rows4(w.add(r * k), k, x) },
        |r| unsafe { row1(w.add(r * k), k, x) },
    );
}

/// Four rows' dot products with `x`. The 16-input steps are `asm!`: sixteen accumulators
/// (four per row, so no `fmla` waits for another) and each weight loaded a few
/// instructions before its `fmla`. LLVM's own loop paired the loads into `ldp q`, which
/// LLVM's Cortex-A55 model charges heavily: 34 cycles per 32 products there against 25 per
/// 64 for this loop, which issues one load per cycle, the A55's bound for a GEMV (every
/// weight is used once). 20 cycles per 64 on the A72 model.
#[target_feature(enable = "neon")]
unsafe fn rows4(w: *const f32, k: usize, x: *const f32) -> [f32; 4] {
    let rows = [w, w.add(k), w.add(2 * k), w.add(3 * k)];
    let z = vdupq_n_f32(0.0);
    let mut acc = [[z; 4]; 4];
    let steps = k / 16;
    let mut i = 0;
    if steps > 0 {
        let [[mut a0, mut a1, mut a2, mut a3], [mut a4, mut a5, mut a6, mut a7], [mut a8, mut a9, mut a10, mut a11], [mut a12, mut a13, mut a14, mut a15]] =
            acc;
        asm!(
            "1:",
            "ldr q0, [{x}, #0]",
            "ldr q1, [{x}, #16]",
            "ldr q2, [{x}, #32]",
            "ldr q3, [{x}, #48]",
            "ldr q4, [{w0}, #0]",
            "ldr q5, [{w0}, #16]",
            "ldr q6, [{w0}, #32]",
            "ldr q7, [{w0}, #48]",
            "fmla v16.4s, v4.4s, v0.4s",
            "ldr q8, [{w1}, #0]",
            "fmla v17.4s, v5.4s, v1.4s",
            "ldr q9, [{w1}, #16]",
            "fmla v18.4s, v6.4s, v2.4s",
            "ldr q10, [{w1}, #32]",
            "fmla v19.4s, v7.4s, v3.4s",
            "ldr q11, [{w1}, #48]",
            "fmla v20.4s, v8.4s, v0.4s",
            "ldr q12, [{w2}, #0]",
            "fmla v21.4s, v9.4s, v1.4s",
            "ldr q13, [{w2}, #16]",
            "fmla v22.4s, v10.4s, v2.4s",
            "ldr q14, [{w2}, #32]",
            "fmla v23.4s, v11.4s, v3.4s",
            "ldr q15, [{w2}, #48]",
            "fmla v24.4s, v12.4s, v0.4s",
            "ldr q4, [{w3}, #0]",
            "fmla v25.4s, v13.4s, v1.4s",
            "ldr q5, [{w3}, #16]",
            "fmla v26.4s, v14.4s, v2.4s",
            "ldr q6, [{w3}, #32]",
            "fmla v27.4s, v15.4s, v3.4s",
            "ldr q7, [{w3}, #48]",
            "fmla v28.4s, v4.4s, v0.4s",
            "fmla v29.4s, v5.4s, v1.4s",
            "fmla v30.4s, v6.4s, v2.4s",
            "fmla v31.4s, v7.4s, v3.4s",
            "add {x}, {x}, #64",
            "add {w0}, {w0}, #64",
            "add {w1}, {w1}, #64",
            "add {w2}, {w2}, #64",
            "add {w3}, {w3}, #64",
            "subs {n}, {n}, #1",
            "b.ne 1b",
            x = inout(reg) x => _,
            w0 = inout(reg) rows[0] => _,
            w1 = inout(reg) rows[1] => _,
            w2 = inout(reg) rows[2] => _,
            w3 = inout(reg) rows[3] => _,
            n = inout(reg) steps => _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _,
            out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _,
            inout("v16") a0, inout("v17") a1, inout("v18") a2, inout("v19") a3,
            inout("v20") a4, inout("v21") a5, inout("v22") a6, inout("v23") a7,
            inout("v24") a8, inout("v25") a9, inout("v26") a10, inout("v27") a11,
            inout("v28") a12, inout("v29") a13, inout("v30") a14, inout("v31") a15,
            options(nostack, readonly),
        );
        acc = [
            [a0, a1, a2, a3],
            [a4, a5, a6, a7],
            [a8, a9, a10, a11],
            [a12, a13, a14, a15],
        ];
        i = steps * 16;
    }
    while i + 4 <= k {
        let xv = vld1q_f32(x.add(i));
        for (j, a) in acc.iter_mut().enumerate() {
            a[0] = vfmaq_f32(a[0], vld1q_f32(rows[j].add(i)), xv);
        }
        i += 4;
    }
    let mut out = [0.0; 4];
    for j in 0..4 {
        let a = &acc[j];
        let mut s = vaddvq_f32(vaddq_f32(vaddq_f32(a[0], a[1]), vaddq_f32(a[2], a[3])));
        for t in i..k {
            s += *rows[j].add(t) * *x.add(t);
        }
        out[j] = s;
    }
    out
}

#[target_feature(enable = "neon")]
unsafe fn row1(w: *const f32, k: usize, x: *const f32) -> f32 {
    let mut a = vdupq_n_f32(0.0);
    let mut b = vdupq_n_f32(0.0);
    let mut i = 0;
    while i + 8 <= k {
        a = vfmaq_f32(a, vld1q_f32(w.add(i)), vld1q_f32(x.add(i)));
        b = vfmaq_f32(b, vld1q_f32(w.add(i + 4)), vld1q_f32(x.add(i + 4)));
        i += 8;
    }
    if i + 4 <= k {
        a = vfmaq_f32(a, vld1q_f32(w.add(i)), vld1q_f32(x.add(i)));
        i += 4;
    }
    let mut s = vaddvq_f32(vaddq_f32(a, b));
    for t in i..k {
        s += *w.add(t) * *x.add(t);
    }
    s
}

/// [`gemv`] on fp16 weights: each 8 halves widened by `fcvtl` / `fcvtl2`, then as `gemv`.
///
/// # Safety
/// As [`gemv`], with `w` counted in halves.
pub unsafe fn gemv_f16(w: &[u16], x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let (k, w, x) = (x.len(), w.as_ptr(), x.as_ptr());
    // SAFETY: NEON is baseline; every row read lies in `w` (checked by the caller).
    super::by_rows(
        y,
        bias,
        |r| unsafe { rows4_f16(w.add(r * k), k, x) },
        |r| unsafe { row1_f16(w.add(r * k), k, x) },
    );
}

/// Four rows' dot products with `x` from fp16 weights: per 16-input step each row loads two
/// q registers of halves and widens them into four (`fcvtl` on the A53 / A72 issues like a
/// vector add, so the loop stays bound by its loads); sixteen accumulators as in `rows4`.
#[target_feature(enable = "neon")]
unsafe fn rows4_f16(w: *const u16, k: usize, x: *const f32) -> [f32; 4] {
    let rows = [w, w.add(k), w.add(2 * k), w.add(3 * k)];
    let z = vdupq_n_f32(0.0);
    let mut acc = [[z; 4]; 4];
    let steps = k / 16;
    let mut i = 0;
    if steps > 0 {
        let [[mut a0, mut a1, mut a2, mut a3], [mut a4, mut a5, mut a6, mut a7], [mut a8, mut a9, mut a10, mut a11], [mut a12, mut a13, mut a14, mut a15]] =
            acc;
        asm!(
            "1:",
            "ldr q0, [{x}, #0]",
            "ldr q1, [{x}, #16]",
            "ldr q2, [{x}, #32]",
            "ldr q3, [{x}, #48]",
            "ldr q4, [{w0}, #0]",
            "ldr q5, [{w0}, #16]",
            "ldr q6, [{w1}, #0]",
            "ldr q7, [{w1}, #16]",
            "fcvtl v8.4s, v4.4h",
            "fcvtl2 v9.4s, v4.8h",
            "fcvtl v10.4s, v5.4h",
            "fcvtl2 v11.4s, v5.8h",
            "ldr q4, [{w2}, #0]",
            "fmla v16.4s, v8.4s, v0.4s",
            "fcvtl v12.4s, v6.4h",
            "fmla v17.4s, v9.4s, v1.4s",
            "fcvtl2 v13.4s, v6.8h",
            "fmla v18.4s, v10.4s, v2.4s",
            "fcvtl v14.4s, v7.4h",
            "fmla v19.4s, v11.4s, v3.4s",
            "fcvtl2 v15.4s, v7.8h",
            "ldr q5, [{w2}, #16]",
            "fmla v20.4s, v12.4s, v0.4s",
            "fcvtl v8.4s, v4.4h",
            "fmla v21.4s, v13.4s, v1.4s",
            "fcvtl2 v9.4s, v4.8h",
            "fmla v22.4s, v14.4s, v2.4s",
            "ldr q6, [{w3}, #0]",
            "fmla v23.4s, v15.4s, v3.4s",
            "fcvtl v10.4s, v5.4h",
            "fmla v24.4s, v8.4s, v0.4s",
            "fcvtl2 v11.4s, v5.8h",
            "ldr q7, [{w3}, #16]",
            "fmla v25.4s, v9.4s, v1.4s",
            "fcvtl v12.4s, v6.4h",
            "fmla v26.4s, v10.4s, v2.4s",
            "fcvtl2 v13.4s, v6.8h",
            "fmla v27.4s, v11.4s, v3.4s",
            "fcvtl v14.4s, v7.4h",
            "fmla v28.4s, v12.4s, v0.4s",
            "fcvtl2 v15.4s, v7.8h",
            "fmla v29.4s, v13.4s, v1.4s",
            "fmla v30.4s, v14.4s, v2.4s",
            "fmla v31.4s, v15.4s, v3.4s",
            "add {x}, {x}, #64",
            "add {w0}, {w0}, #32",
            "add {w1}, {w1}, #32",
            "add {w2}, {w2}, #32",
            "add {w3}, {w3}, #32",
            "subs {n}, {n}, #1",
            "b.ne 1b",
            x = inout(reg) x => _,
            w0 = inout(reg) rows[0] => _,
            w1 = inout(reg) rows[1] => _,
            w2 = inout(reg) rows[2] => _,
            w3 = inout(reg) rows[3] => _,
            n = inout(reg) steps => _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _,
            out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _,
            inout("v16") a0, inout("v17") a1, inout("v18") a2, inout("v19") a3,
            inout("v20") a4, inout("v21") a5, inout("v22") a6, inout("v23") a7,
            inout("v24") a8, inout("v25") a9, inout("v26") a10, inout("v27") a11,
            inout("v28") a12, inout("v29") a13, inout("v30") a14, inout("v31") a15,
            options(nostack, readonly),
        );
        acc = [
            [a0, a1, a2, a3],
            [a4, a5, a6, a7],
            [a8, a9, a10, a11],
            [a12, a13, a14, a15],
        ];
        i = steps * 16;
    }
    let mut out = [0.0; 4];
    for j in 0..4 {
        let a = &acc[j];
        let mut s = vaddvq_f32(vaddq_f32(vaddq_f32(a[0], a[1]), vaddq_f32(a[2], a[3])));
        s += row1_f16_from(rows[j], i, k, x);
        out[j] = s;
    }
    out
}

/// One row's dot product with `x` from fp16 weights.
#[target_feature(enable = "neon")]
unsafe fn row1_f16(w: *const u16, k: usize, x: *const f32) -> f32 {
    row1_f16_from(w, 0, k, x)
}

/// Inputs `i..k` of one row: 8 halves per `fcvtl` pair, the rest one by one.
#[target_feature(enable = "neon")]
unsafe fn row1_f16_from(w: *const u16, mut i: usize, k: usize, x: *const f32) -> f32 {
    let mut a = vdupq_n_f32(0.0);
    let mut b = vdupq_n_f32(0.0);
    while i + 8 <= k {
        let (lo, hi): (float32x4_t, float32x4_t);
        asm!(
            "ldr {h:q}, [{p}]",
            "fcvtl {lo:v}.4s, {h:v}.4h",
            "fcvtl2 {hi:v}.4s, {h:v}.8h",
            p = in(reg) w.add(i),
            h = out(vreg) _,
            lo = out(vreg) lo,
            hi = out(vreg) hi,
            options(nostack, readonly, pure),
        );
        a = vfmaq_f32(a, lo, vld1q_f32(x.add(i)));
        b = vfmaq_f32(b, hi, vld1q_f32(x.add(i + 4)));
        i += 8;
    }
    let mut s = vaddvq_f32(vaddq_f32(a, b));
    for t in i..k {
        s += crate::model::weights::f16_to_f32(*w.add(t)) * *x.add(t);
    }
    s
}
