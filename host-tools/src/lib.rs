//! EasyQuant host tools: inference on `.npy` files, image preprocessing, the demo model, and
//! (to come) calibration, scale search and the int8 model writer.

pub mod cli;
pub mod dataset;
pub mod demo;
pub mod infer;
pub mod ncnn_writer;
pub mod npy;
pub mod zoo;
