//! AVX2 + FMA micro-kernel, 6 x 16: twelve ymm accumulators, two B loads and six A
//! broadcasts per k step (the classic Haswell/Zen shape, 12 of 16 registers on C).

use super::{Kernel, TailKernel, Tile, TileAct};
use std::arch::x86_64::*;

const MR: usize = 6;
const NR: usize = 16;

pub const AVX2_FMA: Kernel = Kernel {
    name: "avx2+fma 6x16",
    mr: MR,
    nr: NR,
    a53: micro,
    a72: micro,
    other: micro,
    tails: [
        Some(TailKernel {
            nr: 8,
            a53: micro8,
            a72: micro8,
            other: micro8,
        }),
        None,
    ],
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
    // Accumulators start from the bias (or the previous K block's sums).
    let mut c = [_mm256_setzero_ps(); 2 * MR];
    for r in 0..MR {
        let row = tile.rows[r];
        if tile.accumulate {
            c[2 * r] = _mm256_loadu_ps(row);
            c[2 * r + 1] = _mm256_loadu_ps(row.add(8));
        } else {
            let bias = _mm256_broadcast_ss(&*tile.bias.add(r));
            c[2 * r] = bias;
            c[2 * r + 1] = bias;
        }
    }
    let [mut c00, mut c01, mut c10, mut c11, mut c20, mut c21, mut c30, mut c31, mut c40, mut c41, mut c50, mut c51] =
        c;
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
    for r in 0..MR {
        let row = tile.rows[r];
        for h in 0..2 {
            _mm256_storeu_ps(row.add(8 * h), act_avx2(acc[2 * r + h], tile.act));
        }
    }
}

/// # Safety
/// See [`super::MicroKernel`] (B panels 8 wide); the CPU must support AVX2 and FMA.
unsafe fn micro8(kc: usize, a: *const f32, b: *const f32, tile: &Tile) {
    micro8_avx2(kc, a, b, tile)
}

/// The 6 x 8 tail: one ymm per row.
#[target_feature(enable = "avx2,fma")]
unsafe fn micro8_avx2(kc: usize, mut a: *const f32, mut b: *const f32, tile: &Tile) {
    let mut c = [_mm256_setzero_ps(); MR];
    for (r, cr) in c.iter_mut().enumerate() {
        *cr = if tile.accumulate {
            _mm256_loadu_ps(tile.rows[r])
        } else {
            _mm256_broadcast_ss(&*tile.bias.add(r))
        };
    }
    let [mut c0, mut c1, mut c2, mut c3, mut c4, mut c5] = c;
    for _ in 0..kc {
        let b0 = _mm256_loadu_ps(b);
        c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(&*a), b0, c0);
        c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(&*a.add(1)), b0, c1);
        c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(&*a.add(2)), b0, c2);
        c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(&*a.add(3)), b0, c3);
        c4 = _mm256_fmadd_ps(_mm256_broadcast_ss(&*a.add(4)), b0, c4);
        c5 = _mm256_fmadd_ps(_mm256_broadcast_ss(&*a.add(5)), b0, c5);
        a = a.add(MR);
        b = b.add(8);
    }
    for (r, v) in [c0, c1, c2, c3, c4, c5].into_iter().enumerate() {
        _mm256_storeu_ps(tile.rows[r], act_avx2(v, tile.act));
    }
}

/// [`TileAct`] on 8 lanes. `max(bound, v)` / `min(bound, v)` return `v` when it is NaN, as
/// the scalar comparisons keep it.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn act_avx2(v: __m256, act: TileAct) -> __m256 {
    match act {
        TileAct::None => v,
        TileAct::Relu => _mm256_max_ps(_mm256_setzero_ps(), v),
        TileAct::Leaky(s) => {
            let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(v, _mm256_setzero_ps());
            _mm256_blendv_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(s)), neg)
        }
        TileAct::Clip(min, max) => {
            _mm256_min_ps(_mm256_set1_ps(max), _mm256_max_ps(_mm256_set1_ps(min), v))
        }
    }
}
