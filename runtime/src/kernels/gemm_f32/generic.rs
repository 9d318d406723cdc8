//! Portable micro-kernel: plain Rust over fixed-size arrays (the compiler vectorises it with
//! whatever the baseline target offers). Reference for the SIMD kernels and fallback.

use super::{Kernel, Tile};

const MR: usize = 4;
const NR: usize = 8;

pub const KERNEL: Kernel = Kernel {
    name: "generic 4x8",
    mr: MR,
    nr: NR,
    a53: micro,
    a72: micro,
    other: micro,
};

/// # Safety
/// See [`super::MicroKernel`].
unsafe fn micro(kc: usize, a: *const f32, b: *const f32, tile: &Tile) {
    let a = std::slice::from_raw_parts(a, kc * MR);
    let b = std::slice::from_raw_parts(b, kc * NR);
    let mut acc = [[0.0f32; NR]; MR];
    for (r, acc_row) in acc.iter_mut().enumerate() {
        *acc_row = if tile.accumulate {
            std::ptr::read_unaligned(tile.rows[r] as *const [f32; NR])
        } else {
            [*tile.bias.add(r); NR]
        };
    }
    for (ak, bk) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for r in 0..MR {
            for j in 0..NR {
                acc[r][j] += ak[r] * bk[j];
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        let row = std::slice::from_raw_parts_mut(tile.rows[r], NR);
        for (o, &v) in row.iter_mut().zip(acc_row) {
            *o = tile.act.apply(v);
        }
    }
}
