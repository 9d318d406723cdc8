//! Quantized GEMM throughput (MAC/s) on convolution shapes, every kernel this CPU runs, INT8
//! vs INT7, one thread: `cargo bench -p eq-tools --bench gemm_i8`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use eq_runtime::kernels::gemm_i8::{all_kernels, gemm, gemm_i32, DenseB8, KernelSet, PackedA8};
use eq_runtime::kernels::requant::{OutBuf, Requant};
use eq_runtime::ops::activation::Activation;
use eq_runtime::pool::Pool;
use eq_runtime::quant::Precision;
use eq_runtime::rng::Rng;
use std::time::Duration;

/// (name, M = output channels, K = in channels · kernel area, N = output pixels).
const SHAPES: [(&str, usize, usize, usize); 6] = [
    ("mobilenet_pw_56x56_64to128", 128, 64, 3136),
    ("squeezenet_fire9_expand3x3", 256, 576, 169),
    ("resnet50_l1_3x3", 64, 576, 3136),
    ("resnet50_l3_3x3", 256, 2304, 196),
    ("resnet50_l4_3x3", 512, 4608, 49),
    ("mobilenet_pw_7x7_1024", 1024, 1024, 49),
];

fn random_q(rng: &mut Rng, len: usize, p: Precision) -> Vec<i8> {
    let q = p.qmax() as i64;
    (0..len).map(|_| rng.range(-q, q) as i8).collect()
}

fn bench_gemm_i8(c: &mut Criterion) {
    let pool = Pool::new(1).expect("pool");
    let mut rng = Rng::new(7);
    for (name, m, k, n) in SHAPES {
        let mut group = c.benchmark_group(format!("gemm_i8/{name}"));
        group
            .throughput(Throughput::Elements((m * n * k) as u64))
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for p in [Precision::Int8, Precision::Int7] {
            let a = random_q(&mut rng, m * k, p);
            let b = random_q(&mut rng, k * n, p);
            let scale_in = vec![0.001f32; m];
            let bias = vec![0.5f32; m];
            let requant = Requant {
                scale_in: &scale_in,
                bias: Some(&bias),
                act: Activation::ReLU,
                top_scale: 30.0,
                qmax: p.qmax(),
            };
            for kern in all_kernels(p) {
                let packed = PackedA8::new(KernelSet::single(kern), &a, m, k);
                let mut scratch = vec![0.0f32; packed.scratch_len(n)];
                let mut out = vec![0i8; m * n];
                group.bench_function(BenchmarkId::from_parameter(kern.name()), |bench| {
                    bench.iter(|| {
                        gemm(
                            &packed,
                            &DenseB8 { data: &b, n },
                            n,
                            &requant,
                            OutBuf::I8(&mut out),
                            &pool,
                            &mut scratch,
                        )
                        .expect("gemm")
                    })
                });
            }
        }
        group.finish();
    }
}

/// The product alone (packing included, no epilogue: raw int32 out) on one tile row and a few
/// tile columns that stay in L1/L2: the arithmetic speed of each kernel.
fn bench_micro(c: &mut Criterion) {
    let pool = Pool::new(1).expect("pool");
    let mut rng = Rng::new(8);
    for k in [576usize, 4608] {
        let mut group = c.benchmark_group(format!("gemm_i8_micro/k{k}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for p in [Precision::Int8, Precision::Int7] {
            for kern in all_kernels(p) {
                let (m, n) = (kern.mr(), 4 * kern.nr());
                let a = random_q(&mut rng, m * k, p);
                let b = random_q(&mut rng, k * n, p);
                let packed = PackedA8::new(KernelSet::single(kern), &a, m, k);
                let mut scratch = vec![0.0f32; packed.scratch_len(n)];
                let mut out = vec![0i32; m * n];
                group.throughput(Throughput::Elements((m * n * k) as u64));
                group.bench_function(BenchmarkId::from_parameter(kern.name()), |bench| {
                    bench.iter(|| {
                        let dense = DenseB8 { data: &b, n };
                        gemm_i32(&packed, &dense, n, &mut out, &pool, &mut scratch).expect("gemm");
                        std::hint::black_box(&out);
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench_gemm_i8, bench_micro);
criterion_main!(benches);
