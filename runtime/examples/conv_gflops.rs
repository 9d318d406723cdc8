//! GFLOP/s of single convolution layers (zero weights) measured in thread CPU time, so other
//! jobs on a shared machine distort it less than wall time (cache sharing still does).
//! Linux only (schedstat).
//! `cargo run --release -p eq-runtime --example conv_gflops [threads]`; with more than one
//! thread only the calling thread's CPU time is counted, so use 1 for kernel work.

use eq_runtime::model::weights::WeightReader;
use eq_runtime::net::{Net, Options};

/// Nanoseconds this thread has run on a CPU.
fn cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    stat.split_whitespace().next().unwrap().parse().unwrap()
}

/// (name, input w=h, input channels, output channels, kernel, stride, pad).
const CASES: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
    ("mobilenet conv1 3x3 s2", 224, 3, 32, 3, 2, 1),
    ("resnet50 conv1 7x7 s2", 224, 3, 64, 7, 2, 3),
    ("1x1 256->64 @56", 56, 256, 64, 1, 1, 0),
    ("1x1 64->256 @56", 56, 64, 256, 1, 1, 0),
    ("3x3 64->64 @56", 56, 64, 64, 3, 1, 1),
    ("3x3 256->256 @14", 14, 256, 256, 3, 1, 1),
    ("1x1 512->512 @14", 14, 512, 512, 1, 1, 0),
    ("1x1 s2 512->1024 @28", 28, 512, 1024, 1, 2, 0),
];

fn main() {
    let threads: usize = std::env::args().nth(1).map_or(1, |s| s.parse().unwrap());
    for &(name, size, cin, cout, k, stride, pad) in CASES {
        let weights = cout * cin * k * k;
        let param = format!(
            "7767517\n2 2\nInput in 0 1 data 0={size} 1={size} 2={cin}\n\
             Convolution c 1 1 data out 0={cout} 1={k} 3={stride} 4={pad} 5=1 6={weights} 9=1\n"
        );
        let parsed = eq_runtime::model::parse_param(param.as_bytes(), name).unwrap();
        let opts = Options {
            threads,
            ..Default::default()
        };
        let mut net = Net::build(parsed, WeightReader::zeros(), name, &opts).unwrap();
        let out = (size + 2 * pad - k) / stride + 1;
        let flops = 2.0 * (out * out * weights) as f64;
        for _ in 0..3 {
            net.run().unwrap();
        }
        // Many runs: schedstat may advance in scheduler ticks.
        let runs = 100;
        let (cpu0, wall0) = (cpu_ns(), std::time::Instant::now());
        for _ in 0..runs {
            net.run().unwrap();
        }
        let cpu_ms = (cpu_ns() - cpu0) as f64 / runs as f64 / 1e6;
        let wall_ms = wall0.elapsed().as_secs_f64() * 1e3 / runs as f64;
        println!(
            "{name:24} cpu {cpu_ms:7.3} ms  wall {wall_ms:7.3} ms  {:6.1} GFLOP/s (cpu time)",
            flops / (cpu_ms * 1e6)
        );
    }
}
