//! Portable reference kernel, 4 x 8 with K in steps of 4: plain int32 multiply-adds, exact for
//! any int8 values, both precisions (INT7 values are INT8 values with a smaller range).

use super::{Acc, Family, MicroKernel, NR_MAX};
use crate::quant::Precision;

const MR: usize = 4;
const NR: usize = 8;
const KSTEP: usize = 4;

const MICRO: MicroKernel = MicroKernel {
    name: "generic 4x8",
    func: micro,
};

pub fn family(p: Precision) -> Family {
    let name = match p {
        Precision::Int8 => "generic int8 4x8k4",
        Precision::Int7 => "generic int7 4x8k4",
    };
    Family::uniform(name, p, MR, NR, KSTEP, MICRO)
}

/// # Safety
/// See [`super::MicroFn`].
unsafe fn micro(kp: usize, a: *const i8, b: *const i8, acc: &mut Acc) {
    let a = std::slice::from_raw_parts(a, kp * MR * KSTEP);
    let b = std::slice::from_raw_parts(b, kp * NR * KSTEP);
    let mut sum = [[0i32; NR]; MR];
    for (a_step, b_step) in a.chunks_exact(MR * KSTEP).zip(b.chunks_exact(NR * KSTEP)) {
        for (r, a_row) in a_step.chunks_exact(KSTEP).enumerate() {
            for (j, b_col) in b_step.chunks_exact(KSTEP).enumerate() {
                sum[r][j] += a_row
                    .iter()
                    .zip(b_col)
                    .map(|(&x, &y)| x as i32 * y as i32)
                    .sum::<i32>();
            }
        }
    }
    for (r, row) in sum.iter().enumerate() {
        acc[r * NR_MAX..r * NR_MAX + NR].copy_from_slice(row);
    }
}
