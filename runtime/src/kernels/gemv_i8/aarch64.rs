//! NEON int8 GEMV over the packed layout: four rows share each 32-value block of `x`.
//! `smull` + `smlal2` put 2 products in each int16 lane; INT8 widens them at once with
//! `sadalp`, INT7 adds the block's second half with `smlal` + `smlal2` and a second block the
//! same way (8 products per lane) before one `sadalp`. One schedule serves Cortex-A53 and
//! A72.

use super::{Input, BLOCK, ROWS};
use crate::quant::Precision;
use std::arch::aarch64::*;

/// Blocks summed in int16 before widening, for INT7: 2 blocks · 4 products = 8 products per
/// lane, 8 · 63² = 31752 ≤ i16::MAX.
const INT7_BLOCKS_PER_FLUSH: usize = Precision::Int7.products_per_i16() / 4;

/// # Safety
/// `group` holds at least `x.blocks * ROWS * BLOCK` values (`super::dot4` checks it): the
/// SIMD loads of the packed rows are unchecked.
pub unsafe fn dot4(precision: Precision, group: &[i8], x: &Input) -> [i32; ROWS] {
    // SAFETY: NEON is baseline on aarch64; every block read lies in `group` or `x`.
    unsafe {
        match precision {
            Precision::Int8 => dot4_int8(group, x),
            Precision::Int7 => dot4_int7(group, x),
        }
    }
}

#[target_feature(enable = "neon")]
unsafe fn dot4_int8(group: &[i8], x: &Input) -> [i32; ROWS] {
    let mut acc = [vdupq_n_s32(0); ROWS];
    for b in 0..x.blocks {
        let xb = x.block(b).as_ptr();
        let (x0, x1) = (vld1q_s8(xb), vld1q_s8(xb.add(16)));
        let p = group.as_ptr().add(b * ROWS * BLOCK);
        for (r, a) in acc.iter_mut().enumerate() {
            let w = p.add(r * BLOCK);
            let (w0, w1) = (vld1q_s8(w), vld1q_s8(w.add(16)));
            let s0 = vmlal_high_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(x0)), w0, x0);
            let s1 = vmlal_high_s8(vmull_s8(vget_low_s8(w1), vget_low_s8(x1)), w1, x1);
            *a = vpadalq_s16(vpadalq_s16(*a, s0), s1);
        }
    }
    acc.map(|a| vaddvq_s32(a))
}

#[target_feature(enable = "neon")]
unsafe fn dot4_int7(group: &[i8], x: &Input) -> [i32; ROWS] {
    let mut acc = [vdupq_n_s32(0); ROWS];
    let mut part = [vdupq_n_s16(0); ROWS];
    let mut count = 0;
    for b in 0..x.blocks {
        let xb = x.block(b).as_ptr();
        let (x0, x1) = (vld1q_s8(xb), vld1q_s8(xb.add(16)));
        let p = group.as_ptr().add(b * ROWS * BLOCK);
        for (r, s) in part.iter_mut().enumerate() {
            let w = p.add(r * BLOCK);
            let (w0, w1) = (vld1q_s8(w), vld1q_s8(w.add(16)));
            let mut t = vmlal_s8(*s, vget_low_s8(w0), vget_low_s8(x0));
            t = vmlal_high_s8(t, w0, x0);
            t = vmlal_s8(t, vget_low_s8(w1), vget_low_s8(x1));
            *s = vmlal_high_s8(t, w1, x1);
        }
        count += 1;
        if count == INT7_BLOCKS_PER_FLUSH {
            for (a, s) in acc.iter_mut().zip(&mut part) {
                *a = vpadalq_s16(*a, *s);
                *s = vdupq_n_s16(0);
            }
            count = 0;
        }
    }
    for (a, s) in acc.iter_mut().zip(&part) {
        *a = vpadalq_s16(*a, *s);
    }
    acc.map(|a| vaddvq_s32(a))
}
