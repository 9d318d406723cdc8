//! Compute kernels behind one interface per family, with a generic Rust reference and
//! per-architecture variants selected at run time.
//!
//! Soundness: every safe `pub` function here checks, once per call, the buffers and
//! geometry it hands to unchecked SIMD code, and the CPU features of the variant an `Isa`
//! names. The per-architecture modules are crate-private; their variants that rely on the
//! dispatcher's checks are `unsafe fn`s whose `# Safety` sections say what was checked. GEMM
//! kernel families keep their tile geometry (`mr`, `nr`, layout) crate-private, so code
//! outside the crate cannot pair a packing with a micro-kernel of another shape.
pub mod gemm_f32;
pub mod gemm_i8;

pub mod depthwise_f32;
pub mod depthwise_i8;
pub mod gemv_f32;
pub mod gemv_i8;
pub mod im2col;
mod isa;
pub use isa::Isa;
pub mod pooling;
pub mod quantize;
pub mod requant;
pub mod split;
pub mod winograd;
pub mod winograd_i8;

#[cfg(test)]
mod short_slices;
