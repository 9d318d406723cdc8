//! Portable reference kernels: plain int32 multiply-adds, exact for any int8 values, both
//! precisions (INT7 values are INT8 values with a smaller range). One per layout family:
//! `Steps(4)` 4 x 8 (the generic choice) and `Wide16` 8 x 8 (the reference of the
//! Cortex-A53 layout, used by the tests).

use super::{Acc, Kernel, Layout, Micro, NR_MAX};
use crate::quant::Precision;

const MR: usize = 4;
const NR: usize = 8;
const KSTEP: usize = 4;

const fn steps_kernel(name: &'static str, precision: Precision) -> Kernel {
    Kernel {
        name,
        precision,
        layout: Layout::Steps(KSTEP),
        mr: MR,
        nr: NR,
        pair_sums: false,
        simd_store: false,
        micro: Micro::Acc(steps_micro),
    }
}

const fn wide_kernel(name: &'static str, precision: Precision) -> Kernel {
    Kernel {
        name,
        precision,
        layout: Layout::Wide16,
        mr: 8,
        nr: 8,
        pair_sums: false,
        simd_store: false,
        micro: Micro::Acc(wide16_micro),
    }
}

static INT8: Kernel = steps_kernel("generic int8 4x8 steps4", Precision::Int8);
static INT7: Kernel = steps_kernel("generic int7 4x8 steps4", Precision::Int7);
static WIDE_INT8: Kernel = wide_kernel("generic int8 8x8 wide16", Precision::Int8);
static WIDE_INT7: Kernel = wide_kernel("generic int7 8x8 wide16", Precision::Int7);

pub fn kernel(p: Precision) -> &'static Kernel {
    match p {
        Precision::Int8 => &INT8,
        Precision::Int7 => &INT7,
    }
}

pub fn kernel_wide16(p: Precision) -> &'static Kernel {
    match p {
        Precision::Int8 => &WIDE_INT8,
        Precision::Int7 => &WIDE_INT7,
    }
}

/// # Safety
/// See [`super::Kernel`].
unsafe fn steps_micro(kp: usize, a: *const u8, b: *const u8, acc: &mut Acc) {
    let a = std::slice::from_raw_parts(a as *const i8, kp * MR * KSTEP);
    let b = std::slice::from_raw_parts(b as *const i8, kp * NR * KSTEP);
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

/// # Safety
/// See [`super::Kernel`] (`kp` pairs of k); `a` and `b` are 2-byte aligned.
unsafe fn wide16_micro(kp: usize, a: *const u8, b: *const u8, acc: &mut Acc) {
    let a = std::slice::from_raw_parts(a as *const i16, kp * 2 * 8);
    let b = std::slice::from_raw_parts(b as *const i16, kp * 2 * 8);
    // Wrapping sums: the Winograd convolution multiplies int16 transforms with this layout
    // and wants the sums modulo 2³² (int8 operands never come near).
    let mut sum = [[0i32; 8]; 8];
    for (a_k, b_k) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for (r, &x) in a_k.iter().enumerate() {
            for (j, &y) in b_k.iter().enumerate() {
                sum[r][j] = sum[r][j].wrapping_add(x as i32 * y as i32);
            }
        }
    }
    for (r, row) in sum.iter().enumerate() {
        acc[r * NR_MAX..r * NR_MAX + 8].copy_from_slice(row);
    }
}
