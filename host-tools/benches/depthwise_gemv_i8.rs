//! Quantized depthwise and GEMV kernels, single thread: MobileNet depthwise shapes and
//! InnerProduct sizes, INT8 vs INT7 SIMD vs the generic Rust kernel vs fp32.
//! Throughput is in multiply-accumulates ("elements"/s = MAC/s).
//!
//! `cargo bench -p eq-tools --bench depthwise_gemv_i8`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use eq_runtime::kernels::depthwise_f32;
use eq_runtime::kernels::depthwise_i8::{channel_i8, Geometry, Isa};
use eq_runtime::kernels::gemv_f32;
use eq_runtime::kernels::gemv_i8::{gemv_i8, PackedGemvI8};
use eq_runtime::kernels::requant::{OutBuf, Requant};
use eq_runtime::ops::activation::Activation;
use eq_runtime::quant::Precision;
use eq_runtime::rng::Rng;
use std::hint::black_box;
use std::time::Duration;

fn values(rng: &mut Rng, n: usize, qmax: i64) -> Vec<i8> {
    (0..n).map(|_| rng.range(-qmax, qmax) as i8).collect()
}

/// (name, channels, input side, stride): 3x3 kernels, pad 1.
const DEPTHWISE: [(&str, usize, usize, usize); 3] = [
    ("112x112x32_s1", 32, 112, 1),
    ("56x56x128_s1", 128, 56, 1),
    ("112to56x64_s2", 64, 112, 2),
];

fn variants() -> Vec<(&'static str, Isa, Precision)> {
    let best = Isa::detect();
    let mut v = vec![("generic", Isa::Generic, Precision::Int8)];
    if best != Isa::Generic {
        v.push(("int8", best, Precision::Int8));
        v.push(("int7", best, Precision::Int7));
    }
    v
}

fn depthwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("depthwise_i8");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let mut rng = Rng::new(1);
    for (name, channels, side, stride) in DEPTHWISE {
        let padded = side + 2;
        let out_side = (padded - 3) / stride + 1;
        let g = Geometry {
            in_w: padded,
            in_h: padded,
            out_w: out_side,
            out_h: out_side,
            kernel_w: 3,
            kernel_h: 3,
            stride_w: stride,
            stride_h: stride,
            dilation_w: 1,
            dilation_h: 1,
        };
        let plane = padded * padded;
        let out_plane = out_side * out_side;
        group.throughput(Throughput::Elements((channels * out_plane * 9) as u64));
        let scales = vec![0.01f32; channels];
        let bias = vec![0.1f32; channels];
        let requant = Requant {
            scale_in: &scales,
            bias: Some(&bias),
            act: Activation::ReLU,
            top_scale: 20.0,
            qmax: 127,
        };
        for (vname, isa, precision) in variants() {
            let q = precision.qmax() as i64;
            let input = values(&mut rng, channels * plane, q);
            let taps = values(&mut rng, channels * 9, q);
            let mut out = vec![0i8; channels * out_plane];
            group.bench_function(BenchmarkId::new(name, vname), |b| {
                b.iter(|| {
                    let mut o = OutBuf::I8(&mut out);
                    for ch in 0..channels {
                        channel_i8(
                            isa,
                            precision,
                            &g,
                            &input[ch * plane..(ch + 1) * plane],
                            &taps[ch * 9..(ch + 1) * 9],
                            ch,
                            &requant,
                            &mut o,
                            ch * out_plane,
                        );
                    }
                    black_box(&out);
                })
            });
        }
        let input = rng.vec(channels * plane, -1.0, 1.0);
        let taps = rng.vec(channels * 9, -1.0, 1.0);
        let mut out = vec![0f32; channels * out_plane];
        group.bench_function(BenchmarkId::new(name, "fp32"), |b| {
            b.iter(|| {
                for ch in 0..channels {
                    depthwise_f32::channel(
                        depthwise_f32::Isa::detect(),
                        &g,
                        &input[ch * plane..(ch + 1) * plane],
                        1,
                        &taps[ch * 9..(ch + 1) * 9],
                        0.1,
                        Activation::ReLU,
                        &mut out[ch * out_plane..(ch + 1) * out_plane],
                    );
                }
                black_box(&out);
            })
        });
    }
    group.finish();
}

fn gemv(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemv_i8");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let mut rng = Rng::new(2);
    // (num_input, num_output)
    for (k, n) in [(1024usize, 1000usize), (4096, 4096)] {
        let name = format!("{k}x{n}");
        group.throughput(Throughput::Elements((k * n) as u64));
        let scales = vec![0.01f32; n];
        let requant = Requant {
            scale_in: &scales,
            bias: None,
            act: Activation::None,
            top_scale: 1.0,
            qmax: 127,
        };
        let mut y = vec![0f32; n];
        for (vname, isa, precision) in variants() {
            let q = precision.qmax() as i64;
            let w = values(&mut rng, k * n, q);
            let x = values(&mut rng, k, q);
            let packed = PackedGemvI8::new(&w, n, k, precision);
            group.bench_function(BenchmarkId::new(&name, vname), |b| {
                b.iter(|| {
                    gemv_i8(isa, &packed, &x, &requant, &mut y);
                    black_box(&y);
                })
            });
        }
        let w = rng.vec(k * n, -1.0, 1.0);
        let x = rng.vec(k, -1.0, 1.0);
        group.bench_function(BenchmarkId::new(&name, "fp32"), |b| {
            b.iter(|| {
                gemv_f32::gemv(gemv_f32::Isa::detect(), &w, &x, None, &mut y);
                black_box(&y);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, depthwise, gemv);
criterion_main!(benches);
