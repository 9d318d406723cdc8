//! ONNX import on arbitrary bytes: the ModelProto decoder and the converter may fail, never
//! panic. Seed with any small .onnx file (tests/onnx_models.py writes some).
#![no_main]

use eq_tools::import::onnx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = onnx::decode(data) else { return };
    if let Ok(out) = onnx::convert(&model) {
        let _ = out.param.to_text();
    }
});
