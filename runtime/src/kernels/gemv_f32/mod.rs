//! fp32 matrix-vector product for InnerProduct: `y[r] = bias[r] + dot(w row r, x)`, with
//! `w` row-major (`y.len()` rows of `x.len()` values), read in place from the weight file.
//!
//! Variants: `generic` (plain Rust), `x86_64` (AVX2 + FMA), `aarch64` (NEON). The SIMD
//! variants take four rows at a time so each load of `x` feeds four products.
//!
//! [`gemv_f16`] reads fp16 weights (IEEE binary16, ncnn's fp16 storage) and widens each
//! exactly to fp32 before its product: a batch-1 InnerProduct only streams its weights, so
//! half the bytes is nearly half the time (VGG16's fc6: 411 MB as fp32).

pub use crate::kernels::Isa;

pub(crate) mod generic;

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_64;

pub fn gemv(isa: Isa, w: &[f32], x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let k = x.len();
    assert!(w.len() >= y.len() * k, "weight matrix too short");
    if let Some(b) = bias {
        assert!(b.len() >= y.len(), "bias too short");
    }
    match isa {
        Isa::Generic => generic::gemv(w, x, bias, y),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `w` and `bias` checked against `x` and `y` above.
        Isa::Avx2Fma | Isa::Avx512 => unsafe { x86_64::gemv(w, x, bias, y) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above.
        Isa::Neon => unsafe { aarch64::gemv(w, x, bias, y) },
    }
}

/// The row loop every SIMD variant shares: `four(r)` gives rows `r..r + 4`, `one(r)` row `r`,
/// each without bias; the bias is added here.
#[inline(always)]
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn by_rows(
    y: &mut [f32],
    bias: Option<&[f32]>,
    four: impl Fn(usize) -> [f32; 4],
    one: impl Fn(usize) -> f32,
) {
    let b = |r: usize| bias.map_or(0.0, |b| b[r]);
    let mut r = 0;
    while r + 4 <= y.len() {
        for (i, v) in four(r).into_iter().enumerate() {
            y[r + i] = v + b(r + i);
        }
        r += 4;
    }
    while r < y.len() {
        y[r] = one(r) + b(r);
        r += 1;
    }
}

/// [`gemv`] with fp16 weights (`w` holds the bits). x86_64 needs F16C besides AVX2 + FMA
/// (every AVX2 CPU has it; without it the generic loop runs).
pub fn gemv_f16(isa: Isa, w: &[u16], x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let k = x.len();
    assert!(w.len() >= y.len() * k, "weight matrix too short");
    if let Some(b) = bias {
        assert!(b.len() >= y.len(), "bias too short");
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `w` and `bias` checked against `x` and `y` above; F16C checked here.
        Isa::Avx2Fma | Isa::Avx512 if x86_64::f16c_available() => unsafe {
            x86_64::gemv_f16(w, x, bias, y)
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above (fp16 conversion is baseline ARMv8).
        Isa::Neon => unsafe { aarch64::gemv_f16(w, x, bias, y) },
        _ => generic::gemv_f16(w, x, bias, y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::{f16_to_f32, f32_to_f16};
    use crate::rng::Rng;

    /// Every variant against the plain loop on the widened weights, over row counts around
    /// the 4-row blocks and lengths around the 8 / 16-wide steps, with extreme halves.
    #[test]
    fn fp16_weights_match_the_reference_on_widened_weights() {
        let mut rng = Rng::new(5);
        for isa in Isa::all_available() {
            for rows in [1, 3, 4, 5, 9, 16] {
                for k in [1, 7, 8, 15, 16, 17, 33, 100, 259] {
                    let mut w: Vec<u16> = rng
                        .vec(rows * k, -2.0, 2.0)
                        .into_iter()
                        .map(f32_to_f16)
                        .collect();
                    // Largest finite, smallest subnormal and negative zero.
                    w[0] = 0x7bff;
                    w[(rows * k) / 2] = 0x0001;
                    w[rows * k - 1] = 0x8000;
                    let x = rng.vec(k, -1.0, 1.0);
                    let bias = rng.vec(rows, -1.0, 1.0);
                    let wide: Vec<f32> = w.iter().map(|&h| f16_to_f32(h)).collect();
                    let mut want = vec![0.0; rows];
                    generic::gemv(&wide, &x, Some(&bias), &mut want);
                    // Rounding bound of any summation order: k ulps of the absolute sum.
                    let abs_w: Vec<f32> = wide.iter().map(|v| v.abs()).collect();
                    let abs_x: Vec<f32> = x.iter().map(|v| v.abs()).collect();
                    let mut bound = vec![0.0; rows];
                    generic::gemv(&abs_w, &abs_x, None, &mut bound);
                    let mut got = vec![f32::NAN; rows];
                    gemv_f16(isa, &w, &x, Some(&bias), &mut got);
                    let mut no_bias = vec![f32::NAN; rows];
                    gemv_f16(isa, &w, &x, None, &mut no_bias);
                    for r in 0..rows {
                        let tol = (k + 1) as f32 * f32::EPSILON * (bound[r] + 1.0);
                        let (g, n) = (got[r], no_bias[r] + bias[r]);
                        assert!(
                            (g - want[r]).abs() <= tol,
                            "{isa:?} rows={rows} k={k}: {g} vs {}",
                            want[r]
                        );
                        assert!(
                            (n - want[r]).abs() <= tol,
                            "{isa:?} rows={rows} k={k}: {n} vs {}",
                            want[r]
                        );
                    }
                }
            }
        }
    }
}
