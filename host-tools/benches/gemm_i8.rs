//! Quantized GEMM throughput (MAC/s) on convolution shapes, generic vs best family, INT8 vs
//! INT7, one thread: `cargo bench -p eq-tools --bench gemm_i8`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use eq_runtime::cpu::CoreKind;
use eq_runtime::kernels::gemm_i8::{gemm, Acc, DenseB8, Family, PackedA8, MR_MAX, NR_MAX};
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
            for family in [Family::generic(p), Family::best(p)] {
                let packed = PackedA8::new(family, &a, m, k);
                let mut scratch = vec![0.0f32; packed.scratch_len(n)];
                let mut out = vec![0i8; m * n];
                group.bench_function(BenchmarkId::from_parameter(family.name), |bench| {
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

/// The micro-kernel alone on one A panel and a few B panels (L1/L2 resident), without packing
/// or epilogue: the arithmetic speed INT7's int16 accumulation buys.
fn bench_micro(c: &mut Criterion) {
    let mut rng = Rng::new(8);
    for k in [576usize, 4608] {
        let mut group = c.benchmark_group(format!("gemm_i8_micro/k{k}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for p in [Precision::Int8, Precision::Int7] {
            let f = Family::best(p);
            let kp = k.div_ceil(f.kstep);
            let panels = 4;
            let a = random_q(&mut rng, kp * f.mr * f.kstep, p);
            let b = random_q(&mut rng, panels * kp * f.nr * f.kstep, p);
            group.throughput(Throughput::Elements((panels * f.mr * f.nr * k) as u64));
            let micro = f.micro_for(CoreKind::Other);
            let mut acc: Acc = [0; MR_MAX * NR_MAX];
            group.bench_function(BenchmarkId::from_parameter(micro.name), |bench| {
                bench.iter(|| {
                    for b_panel in b.chunks_exact(kp * f.nr * f.kstep) {
                        micro.run(&f, kp, &a, b_panel, &mut acc);
                        std::hint::black_box(&acc);
                    }
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_gemm_i8, bench_micro);
criterion_main!(benches);
