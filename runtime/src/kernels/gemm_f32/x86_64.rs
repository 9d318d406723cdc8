//! AVX2 + FMA micro-kernel, 6 x 16: twelve ymm accumulators, two B loads and six A
//! broadcasts per k step (the classic Haswell/Zen shape, 12 of 16 registers on C).

use super::{Kernel, Tile};
use std::arch::x86_64::*;

const MR: usize = 6;
const NR: usize = 16;

pub const AVX2_FMA: Kernel = Kernel {
    name: "avx2+fma 6x16",
    mr: MR,
    nr: NR,
    micro,
};

/// The AVX2 kernel when this CPU has AVX2 and FMA.
pub fn detect() -> Option<Kernel> {
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Some(AVX2_FMA)
    } else {
        None
    }
}

/// # Safety
/// See [`super::MicroKernel`]; the CPU must support AVX2 and FMA (checked by [`detect`]).
unsafe fn micro(kc: usize, a: *const f32, b: *const f32, tile: &Tile) {
    micro_avx2(kc, a, b, tile)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx2(kc: usize, mut a: *const f32, mut b: *const f32, tile: &Tile) {
    let mut c00 = _mm256_setzero_ps();
    let mut c01 = _mm256_setzero_ps();
    let mut c10 = _mm256_setzero_ps();
    let mut c11 = _mm256_setzero_ps();
    let mut c20 = _mm256_setzero_ps();
    let mut c21 = _mm256_setzero_ps();
    let mut c30 = _mm256_setzero_ps();
    let mut c31 = _mm256_setzero_ps();
    let mut c40 = _mm256_setzero_ps();
    let mut c41 = _mm256_setzero_ps();
    let mut c50 = _mm256_setzero_ps();
    let mut c51 = _mm256_setzero_ps();
    for _ in 0..kc {
        let b0 = _mm256_loadu_ps(b);
        let b1 = _mm256_loadu_ps(b.add(8));
        let a0 = _mm256_broadcast_ss(&*a);
        c00 = _mm256_fmadd_ps(a0, b0, c00);
        c01 = _mm256_fmadd_ps(a0, b1, c01);
        let a1 = _mm256_broadcast_ss(&*a.add(1));
        c10 = _mm256_fmadd_ps(a1, b0, c10);
        c11 = _mm256_fmadd_ps(a1, b1, c11);
        let a2 = _mm256_broadcast_ss(&*a.add(2));
        c20 = _mm256_fmadd_ps(a2, b0, c20);
        c21 = _mm256_fmadd_ps(a2, b1, c21);
        let a3 = _mm256_broadcast_ss(&*a.add(3));
        c30 = _mm256_fmadd_ps(a3, b0, c30);
        c31 = _mm256_fmadd_ps(a3, b1, c31);
        let a4 = _mm256_broadcast_ss(&*a.add(4));
        c40 = _mm256_fmadd_ps(a4, b0, c40);
        c41 = _mm256_fmadd_ps(a4, b1, c41);
        let a5 = _mm256_broadcast_ss(&*a.add(5));
        c50 = _mm256_fmadd_ps(a5, b0, c50);
        c51 = _mm256_fmadd_ps(a5, b1, c51);
        a = a.add(MR);
        b = b.add(NR);
    }
    let acc = [c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51];
    let zero = _mm256_setzero_ps();
    for r in 0..MR {
        let row = tile.rows[r];
        let add = if tile.accumulate {
            [_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8))]
        } else {
            let bias = _mm256_broadcast_ss(&*tile.bias.add(r));
            [bias, bias]
        };
        for h in 0..2 {
            let mut v = _mm256_add_ps(acc[2 * r + h], add[h]);
            if tile.relu {
                // max(0, v) returns v when v is NaN, like the scalar `v < 0` test.
                v = _mm256_max_ps(zero, v);
            }
            _mm256_storeu_ps(row.add(8 * h), v);
        }
    }
}
