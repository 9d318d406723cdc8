//! EasyQuant host tools: inference on `.npy` files, image preprocessing, the demo model,
//! calibration (max / KL / ACIQ), the int8 model writer, evaluation and the EasyQuant scale
//! search, and `eq easyquant`, which runs them all.

pub mod args;
pub mod builder;
pub mod calibrate;
pub mod cli;
pub mod cost_model;
pub mod dataset;
pub mod demo;
pub mod detection;
pub mod easyquant;
pub mod equalize;
pub mod eval;
pub mod finetune;
pub mod import;
pub mod infer;
pub mod mixed;
pub mod model;
pub mod ncnn_writer;
pub mod npy;
pub mod quantize;
pub mod report;
pub mod runner;
pub mod table;
pub mod zoo;
