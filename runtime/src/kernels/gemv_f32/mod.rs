//! fp32 matrix-vector product for InnerProduct: `y[r] = bias[r] + dot(w row r, x)`, with
//! `w` row-major (`y.len()` rows of `x.len()` values), read in place from the weight file.
//!
//! Variants: `generic` (plain Rust), `x86_64` (AVX2 + FMA), `aarch64` (NEON). The SIMD
//! variants take four rows at a time so each load of `x` feeds four products.

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
