//! Portable micro-kernels: plain Rust over fixed-size arrays (the compiler vectorises them
//! with whatever the baseline target offers), 4 x 8 with 4 x 4 and 4 x 1 tails. Reference for the
//! SIMD kernels and fallback.

use super::{Kernel, TailKernel, Tile};

const MR: usize = 4;
const NR: usize = 8;
const TAIL: usize = 4;

pub const KERNEL: Kernel = Kernel {
    name: "generic 4x8",
    mr: MR,
    nr: NR,
    a53: micro::<NR>,
    a72: micro::<NR>,
    other: micro::<NR>,
    tails: [
        Some(TailKernel {
            nr: TAIL,
            a53: micro::<TAIL>,
            a72: micro::<TAIL>,
            other: micro::<TAIL>,
        }),
        Some(TailKernel {
            nr: 1,
            a53: micro::<1>,
            a72: micro::<1>,
            other: micro::<1>,
        }),
    ],
};

/// # Safety
/// See [`super::MicroKernel`] (B panels `N` wide).
unsafe fn micro<const N: usize>(kc: usize, a: *const f32, b: *const f32, tile: &Tile) {
    let a = std::slice::from_raw_parts(a, kc * MR);
    let b = std::slice::from_raw_parts(b, kc * N);
    let mut acc = [[0.0f32; N]; MR];
    for (r, acc_row) in acc.iter_mut().enumerate() {
        *acc_row = if tile.accumulate {
            std::ptr::read_unaligned(tile.rows[r] as *const [f32; N])
        } else {
            [*tile.bias.add(r); N]
        };
    }
    for (ak, bk) in a.chunks_exact(MR).zip(b.chunks_exact(N)) {
        for r in 0..MR {
            for j in 0..N {
                acc[r][j] += ak[r] * bk[j];
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        let row = std::slice::from_raw_parts_mut(tile.rows[r], N);
        for (o, &v) in row.iter_mut().zip(acc_row) {
            *o = tile.act.apply(v);
        }
    }
}
