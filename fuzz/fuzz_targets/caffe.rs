//! Caffe import on arbitrary bytes: the prototxt reader, the caffemodel decoder and the
//! converter may fail, never panic.
//!
//! Input layout: a little-endian u16 `n`, then `n` prototxt bytes (clamped to what is there),
//! then the caffemodel bytes. Each half is also tried alone against a fixed counterpart, so
//! the fuzzer reaches the converter with a valid structure or valid weights.
#![no_main]

use eq_tools::import::{caffe, prototxt};
use libfuzzer_sys::fuzz_target;

/// A small net whose layers need weights, for fuzzed caffemodels.
const PROTOTXT: &str = r#"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "sc" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 2 } }
"#;

fn import(text: &str, weights: &[u8]) {
    let Ok(net) = prototxt::parse(text) else { return };
    let Ok(w) = caffe::decode_caffemodel(weights) else { return };
    if let Ok(model) = caffe::convert(&net, &w) {
        let _ = model.param.to_text();
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = u16::from_le_bytes([data[0], data[1]]) as usize;
    let rest = &data[2..];
    let (text, weights) = rest.split_at(n.min(rest.len()));
    let text = String::from_utf8_lossy(text);
    import(&text, weights);
    // Each half alone: structure against fuzzed weights, and fuzzed text against empty
    // weights (the converter still runs up to the first layer that needs a blob).
    import(PROTOTXT, weights);
    if let Ok(net) = prototxt::parse(&text) {
        let _ = caffe::convert(&net, &Default::default());
    }
});
