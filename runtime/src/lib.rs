//! eq-runtime: loads ncnn models and runs them in FP32 (INT8 / INT7 to come) with no heap
//! allocation during inference.

pub mod capi;
pub mod cpu;
pub mod error;
pub mod graph;
pub mod kernels;
pub mod model;
pub mod net;
pub mod ops;
pub mod plan;
pub mod pool;
pub mod quant;
pub mod rng;
pub mod target;
pub mod tensor;

pub use error::{Error, Result};
pub use net::{Net, Options, PrecisionChoice};
pub use tensor::{Shape, Tensor, TensorMut};
