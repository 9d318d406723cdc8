//! NEON micro-kernel, 8 x 8: sixteen q-register accumulators, A (8 values) and B (8 values)
//! in four registers, one `fmla` by lane per row half and k step.

use super::{Kernel, Tile};
use std::arch::aarch64::*;

const MR: usize = 8;
const NR: usize = 8;

pub const KERNEL: Kernel = Kernel {
    name: "neon 8x8",
    mr: MR,
    nr: NR,
    micro,
};

/// # Safety
/// See [`super::MicroKernel`]. NEON is part of the aarch64 baseline.
unsafe fn micro(kc: usize, mut a: *const f32, mut b: *const f32, tile: &Tile) {
    let z = vdupq_n_f32(0.0);
    let mut c = [[z; 2]; MR];
    for _ in 0..kc {
        let a0 = vld1q_f32(a);
        let a1 = vld1q_f32(a.add(4));
        let b0 = vld1q_f32(b);
        let b1 = vld1q_f32(b.add(4));
        c[0][0] = vfmaq_laneq_f32::<0>(c[0][0], b0, a0);
        c[0][1] = vfmaq_laneq_f32::<0>(c[0][1], b1, a0);
        c[1][0] = vfmaq_laneq_f32::<1>(c[1][0], b0, a0);
        c[1][1] = vfmaq_laneq_f32::<1>(c[1][1], b1, a0);
        c[2][0] = vfmaq_laneq_f32::<2>(c[2][0], b0, a0);
        c[2][1] = vfmaq_laneq_f32::<2>(c[2][1], b1, a0);
        c[3][0] = vfmaq_laneq_f32::<3>(c[3][0], b0, a0);
        c[3][1] = vfmaq_laneq_f32::<3>(c[3][1], b1, a0);
        c[4][0] = vfmaq_laneq_f32::<0>(c[4][0], b0, a1);
        c[4][1] = vfmaq_laneq_f32::<0>(c[4][1], b1, a1);
        c[5][0] = vfmaq_laneq_f32::<1>(c[5][0], b0, a1);
        c[5][1] = vfmaq_laneq_f32::<1>(c[5][1], b1, a1);
        c[6][0] = vfmaq_laneq_f32::<2>(c[6][0], b0, a1);
        c[6][1] = vfmaq_laneq_f32::<2>(c[6][1], b1, a1);
        c[7][0] = vfmaq_laneq_f32::<3>(c[7][0], b0, a1);
        c[7][1] = vfmaq_laneq_f32::<3>(c[7][1], b1, a1);
        a = a.add(MR);
        b = b.add(NR);
    }
    for (r, acc) in c.iter().enumerate() {
        let row = tile.rows[r];
        let add = if tile.accumulate {
            [vld1q_f32(row), vld1q_f32(row.add(4))]
        } else {
            let bias = vdupq_n_f32(*tile.bias.add(r));
            [bias, bias]
        };
        for h in 0..2 {
            let mut v = vaddq_f32(acc[h], add[h]);
            if tile.relu {
                // Select 0 where v < 0; NaN compares false and is kept.
                v = vbslq_f32(vcltq_f32(v, z), z, v);
            }
            vst1q_f32(row.add(4 * h), v);
        }
    }
}
