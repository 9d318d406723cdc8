//! NEON GEMV: four rows share each 4-wide load of `x`; two accumulators per row (8 inputs
//! per step) hide the FMA latency.

use std::arch::aarch64::*;

/// Callers have checked the buffer sizes (`super::gemv`).
pub fn gemv(w: &[f32], x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let k = x.len();
    let mut r = 0;
    // SAFETY: NEON is baseline on aarch64; every row read lies in `w` (checked by the caller).
    unsafe {
        while r + 4 <= y.len() {
            let s = rows4(w.as_ptr().add(r * k), k, x.as_ptr());
            for (i, v) in s.into_iter().enumerate() {
                y[r + i] = v + bias.map_or(0.0, |b| b[r + i]);
            }
            r += 4;
        }
        while r < y.len() {
            y[r] = row1(w.as_ptr().add(r * k), k, x.as_ptr()) + bias.map_or(0.0, |b| b[r]);
            r += 1;
        }
    }
}

#[target_feature(enable = "neon")]
unsafe fn rows4(w: *const f32, k: usize, x: *const f32) -> [f32; 4] {
    let rows = [w, w.add(k), w.add(2 * k), w.add(3 * k)];
    let mut a = [vdupq_n_f32(0.0); 4];
    let mut b = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 8 <= k {
        let x0 = vld1q_f32(x.add(i));
        let x1 = vld1q_f32(x.add(i + 4));
        for j in 0..4 {
            a[j] = vfmaq_f32(a[j], vld1q_f32(rows[j].add(i)), x0);
            b[j] = vfmaq_f32(b[j], vld1q_f32(rows[j].add(i + 4)), x1);
        }
        i += 8;
    }
    if i + 4 <= k {
        let x0 = vld1q_f32(x.add(i));
        for j in 0..4 {
            a[j] = vfmaq_f32(a[j], vld1q_f32(rows[j].add(i)), x0);
        }
        i += 4;
    }
    let mut out = [0.0; 4];
    for j in 0..4 {
        let mut s = vaddvq_f32(vaddq_f32(a[j], b[j]));
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
