//! Importers from other frameworks' model files into ncnn models.

pub mod caffe;
pub mod caffe_proto;
pub mod onnx;
pub mod onnx_proto;
pub mod prototxt;
