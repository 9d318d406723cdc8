//! `Options::fp16_weights` through a whole net: an InnerProduct net loaded with it gives the
//! result of the same net whose weights were rounded to fp16 in the file, and without it the
//! exact result (the option reaches the layer, and only FP32 InnerProduct changes).

use eq_runtime::model::weights::{f16_to_f32, f32_to_f16};
use eq_runtime::{Net, Options};

const K: usize = 300;
const N: usize = 7;

fn param() -> String {
    format!(
        "7767517\n3 3\nInput data 0 1 data 0={K}\nInnerProduct fc 1 1 data fc 0={N} 1=1 2={}\n\
         ReLU relu 1 1 fc out\n",
        N * K
    )
}

/// A weight file: fp32 tag, the weights, then the bias.
fn bin(weights: &[f32], bias: &[f32]) -> Vec<u8> {
    let mut b = vec![0u8; 4];
    for v in weights.iter().chain(bias) {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

fn run(bin: &[u8], fp16_weights: bool, x: &[f32]) -> Vec<f32> {
    let opts = Options {
        fp16_weights,
        ..Options::default()
    };
    let mut net = Net::from_memory(param().as_bytes(), bin, &opts).unwrap();
    net.set_input("data", x).unwrap();
    net.run().unwrap();
    net.blob_f32("out").unwrap().1
}

#[test]
fn fp16_weights_round_the_inner_product_weights_only_when_asked() {
    // Weights that fp16 cannot hold exactly: thirds, spread over a few binades.
    let weights: Vec<f32> = (0..N * K)
        .map(|i| ((i % 97) as f32 - 48.0) / 3.0 / (1 + i % 5) as f32)
        .collect();
    let rounded: Vec<f32> = weights.iter().map(|&w| f16_to_f32(f32_to_f16(w))).collect();
    let bias: Vec<f32> = (0..N).map(|i| i as f32 * 0.25).collect();
    let x: Vec<f32> = (0..K).map(|i| ((i * 7) % 13) as f32 / 13.0).collect();

    let exact = run(&bin(&weights, &bias), false, &x);
    let want = run(&bin(&rounded, &bias), false, &x);
    let half = run(&bin(&weights, &bias), true, &x);
    let tol = |v: f32| 1e-5 * v.abs().max(1.0);
    for i in 0..N {
        assert!(
            (half[i] - want[i]).abs() <= tol(want[i]),
            "{i}: {} vs {}",
            half[i],
            want[i]
        );
    }
    assert!(
        (0..N).any(|i| (exact[i] - want[i]).abs() > 10.0 * tol(want[i])),
        "rounding to fp16 should move some output: {exact:?} vs {want:?}"
    );
}
