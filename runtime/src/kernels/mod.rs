//! Compute kernels behind one interface per family, with a generic Rust reference and
//! per-architecture variants selected at run time.
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
pub mod winograd;
pub mod winograd_i8;

#[cfg(test)]
mod short_slices;
