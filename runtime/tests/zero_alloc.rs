//! `Net::run` must not touch the heap. A counting global allocator counts the allocations made
//! while it is armed on the calling thread and on every worker of the net's pool (other tests
//! run in parallel and are not counted). Nets run with 1, 2 and 4 threads.
//!
//! Adding a model is one entry in `common/text_models.rs` (param text, zero weights; the
//! fuzz smoke test seeds with them too) or one line in `SHARED_MODELS`
//! (a param file under the shared data directory, run with zero weights as benchncnn does).

use eq_runtime::rng::Rng;
use eq_runtime::{Net, Options, PrecisionChoice, Shape};
use std::path::PathBuf;

mod common;
#[path = "common/text_models.rs"]
mod text_models;
use common::{count_allocations, count_allocations_with, counted};
use text_models::TEXT_MODELS;

/// Fills every input with random data, then runs the net twice (the first run may not
/// warm anything up either) and asserts that neither run allocated.
pub fn assert_run_allocates_nothing(net: &mut Net) {
    let inputs: Vec<String> = net.inputs().map(|(n, _)| n.to_string()).collect();
    let mut rng = Rng::new(7);
    for name in &inputs {
        let t = net.input_mut(name).unwrap();
        t.data.iter_mut().for_each(|v| *v = rng.uniform(-1.0, 1.0));
    }
    for pass in 1..=2 {
        let what = format!("{net:?} ({} threads): run #{pass}", net.threads());
        let session = common::session(Some(net.pool()));
        let ((), n) = session.count(|| net.run().unwrap_or_else(|e| panic!("{what} failed: {e}")));
        assert_eq!(n, 0, "{what} allocated {n} time(s)");
    }
}

fn assert_allocates_nothing<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let (r, n) = count_allocations(f);
    assert_eq!(n, 0, "{what} allocated {n} time(s)");
    r
}

/// ncnn's benchmark networks under the shared data directory (`$EQ_SHARED`, default
/// `<repo>/../shared`), loaded with zero weights as benchncnn does. VGG16 is left out: it
/// adds 15 GFLOP per run under qemu and no op the others lack.
const SHARED_MODELS: &[&str] = &[
    "models/ncnn-benchmark/alexnet.param",
    "models/ncnn-benchmark/googlenet.param",
    "models/ncnn-benchmark/mobilenet.param",
    "models/ncnn-benchmark/mobilenet_ssd.param",
    "models/ncnn-benchmark/mobilenet_v2.param",
    "models/ncnn-benchmark/resnet18.param",
    "models/ncnn-benchmark/resnet50.param",
    "models/ncnn-benchmark/squeezenet.param",
    "models/ncnn-benchmark/squeezenet_ssd.param",
];

/// ncnn's int8 benchmark networks, run as INT8 and as INT7 (zero weights, scales of 1):
/// requantizing convolutions, splits of int8 blobs, depthwise layers, an SSD head and an
/// int8 InnerProduct between them. (The others are run by the differential suite.)
const SHARED_INT8_MODELS: &[&str] = &[
    "models/ncnn-benchmark/squeezenet_int8.param",
    "models/ncnn-benchmark/mobilenet_ssd_int8.param",
    "models/ncnn-benchmark/googlenet_int8.param",
];

/// The real models with their weight files (fp32 and fp16 bins) and the input shape
/// their Input layer does not declare: (param, bin, input blob, w, h, c).
type RealModel = (
    &'static str,
    &'static str,
    &'static str,
    usize,
    usize,
    usize,
);
const REAL_MODELS: &[RealModel] = &[
    (
        "data/models/squeezenet_v1.1/squeezenet_v1.1.param",
        "data/models/squeezenet_v1.1/squeezenet_v1.1.fp32.bin",
        "data",
        227,
        227,
        3,
    ),
    (
        "data/models/squeezenet_v1.1/squeezenet_v1.1.param",
        "data/models/squeezenet_v1.1/squeezenet_v1.1.fp16.bin",
        "data",
        227,
        227,
        3,
    ),
    (
        "data/models/mobilenet_v2/mobilenet_v2.param",
        "data/models/mobilenet_v2/mobilenet_v2.fp32.bin",
        "in0",
        224,
        224,
        3,
    ),
    (
        "data/models/mobilefacenet/mobilefacenet.param",
        "data/models/mobilefacenet/mobilefacenet.bin",
        "data",
        112,
        112,
        3,
    ),
    (
        "data/models/yolo-fastest-1.1/yolo-fastest-1.1.param",
        "data/models/yolo-fastest-1.1/yolo-fastest-1.1.bin",
        "data",
        320,
        320,
        3,
    ),
];

/// A shared file, or a skip outside CI; in CI (`CI=true`) a missing file fails the test.
fn shared_file(rel: &str) -> Option<PathBuf> {
    let path = shared_dir().join(rel);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{} is missing (CI=true: shared data is required)",
        path.display()
    );
    eprintln!("skipping: {} not found", path.display());
    None
}

fn shared_dir() -> PathBuf {
    std::env::var_os("EQ_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

#[test]
fn text_models_run_without_allocating() {
    for (name, param) in TEXT_MODELS {
        // Zero weights, as benchncnn loads them (layers with weights need some).
        let p = eq_runtime::model::parse_param(param.as_bytes(), name).unwrap();
        for opts in thread_counts() {
            let zeros = eq_runtime::model::weights::WeightReader::zeros();
            let mut net =
                Net::build(p.clone(), zeros, name, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_run_allocates_nothing(&mut net);
        }
    }
}

/// Every net runs with 1, 2 and 4 threads; the counter covers the caller and the workers.
fn thread_counts() -> [Options; 3] {
    [1, 2, 4].map(|threads| Options {
        threads,
        ..Options::default()
    })
}

/// Under qemu (aarch64 test runs) the largest nets cost minutes each and add no op kind.
fn affordable(rel: &str) -> bool {
    const HEAVY: [&str; 4] = ["alexnet", "googlenet", "resnet50", "resnet18"];
    !cfg!(target_arch = "aarch64") || !HEAVY.iter().any(|h| rel.contains(h))
}

#[test]
fn shared_models_run_without_allocating() {
    for rel in SHARED_MODELS.iter().filter(|r| affordable(r)) {
        let Some(path) = shared_file(rel) else {
            continue;
        };
        for opts in thread_counts() {
            let mut net = Net::load_zero_weights(&path, &opts)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_run_allocates_nothing(&mut net);
        }
    }
}

#[test]
fn int8_models_run_without_allocating() {
    for rel in SHARED_INT8_MODELS.iter().filter(|r| affordable(r)) {
        let Some(path) = shared_file(rel) else {
            continue;
        };
        for precision in [
            PrecisionChoice::Auto,
            PrecisionChoice::Int8,
            PrecisionChoice::Int7,
            PrecisionChoice::Simulate,
        ] {
            for mut opts in thread_counts() {
                opts.precision = precision;
                let mut net = Net::load_zero_weights(&path, &opts)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let quantized = net.layer_precisions().iter().flatten().count();
                assert!(
                    quantized > 0,
                    "{rel} {precision:?}: no layer runs quantized"
                );
                assert_run_allocates_nothing(&mut net);
            }
        }
    }
}

#[test]
fn real_models_run_without_allocating() {
    for &(param, bin, input, w, h, c) in REAL_MODELS {
        let (Some(param), Some(bin)) = (shared_file(param), shared_file(bin)) else {
            continue;
        };
        for mut opts in thread_counts() {
            opts.input_shapes = vec![(input.to_string(), Shape::d3(w, h, c))];
            let mut net =
                Net::load(&param, &bin, &opts).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
            assert_run_allocates_nothing(&mut net);
        }
    }
}

#[test]
fn the_counter_catches_allocations() {
    let (v, n) = count_allocations(|| std::hint::black_box(vec![1u8; 64]));
    assert!(n >= 1, "a Vec allocation was not counted");
    let (_, n) = count_allocations(|| {
        let mut v = std::hint::black_box(Vec::<u32>::with_capacity(1));
        v.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        std::hint::black_box(v)
    });
    assert!(n >= 2, "alloc + realloc: counted {n}");
    // Disarmed again: allocations outside the closure are not counted. The session (not
    // armed) holds the window, so no test running in parallel resets the count meanwhile.
    let window = common::session(None);
    let before = counted();
    drop(std::hint::black_box(vec![0u8; 16]));
    assert_eq!(counted(), before);
    drop(window);
    drop(v);
}

/// Allocations on a pool's worker threads count, not only the caller's.
#[test]
fn the_counter_sees_the_workers() {
    let pool = eq_runtime::pool::Pool::new(4).unwrap();
    // Four tasks held at a barrier: each thread runs one; the three workers allocate.
    let barrier = std::sync::Barrier::new(4);
    let (_, n) = count_allocations_with(Some(&pool), || {
        pool.run(4, &|_, worker| {
            barrier.wait();
            if worker != 0 {
                drop(std::hint::black_box(vec![0u8; 8]));
            }
        })
    });
    assert_eq!(n, 3, "allocations on the workers");
}

#[test]
#[should_panic(expected = "allocated")]
fn the_assertion_fails_for_a_run_that_allocates() {
    // The check `assert_run_allocates_nothing` makes, on a closure that allocates.
    assert_allocates_nothing("allocating closure", || {
        std::hint::black_box(String::from("heap"))
    });
}
