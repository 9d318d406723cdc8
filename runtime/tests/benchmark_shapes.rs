//! Loads every model param in the shared model folders with zero weights and checks the
//! shape inferred for every blob against the `-23330=` output shape hints (key 30) that
//! ncnnoptimize wrote into the files.
//!
//! Detection layers (DetectionOutput, Yolov3DetectionOutput) size their output to the most
//! detections possible, while ncnn's hint holds the rows its own run found: their hint only
//! bounds the row count from below.
//!
//! Layers still being written on other branches (see `PENDING`) make a model fail to load
//! with an unknown-layer error; such a model is skipped with a message. Any other load error
//! or shape mismatch fails. With `CI=true`, a missing shared model folder fails too.

use eq_runtime::model::read_param;
use eq_runtime::{Error, Net, Options, Shape};
use std::path::{Path, PathBuf};

const BENCHMARK_DIR: &str = "/work/shared/models/ncnn-benchmark";
const DATA_DIR: &str = "/work/shared/data/models";

/// Layer types implemented on other branches; an unknown-layer error for one of them skips.
const PENDING: [&str; 5] = [
    "Convolution",
    "ConvolutionDepthWise",
    "InnerProduct",
    "PriorBox",
    "DetectionOutput",
];

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `.param` files directly in `dir` (benchmark) or one level down (data models).
fn params_in(dir: &str, nested: bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        assert!(!in_ci(), "shared model folder {dir} is missing");
        eprintln!("skipping {dir}: folder missing");
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if nested && p.is_dir() {
            let inner = std::fs::read_dir(&p).unwrap();
            out.extend(
                inner
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "param")),
            );
        } else if p.extension().is_some_and(|x| x == "param") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The input image size benchncnn and the model authors use for this model.
fn input_size(path: &Path) -> usize {
    let stem = path.file_stem().unwrap().to_string_lossy().to_string();
    if stem.contains("_ssd") {
        300
    } else if stem.starts_with("squeezenet") || stem.starts_with("alexnet") {
        227
    } else if stem.starts_with("mobilefacenet") {
        112
    } else {
        224
    }
}

/// Shapes for the Input layers that declare none.
fn undeclared_inputs(path: &Path) -> Vec<(String, Shape)> {
    let p = read_param(path).unwrap_or_else(|e| panic!("{e}"));
    let n = input_size(path);
    p.layers
        .iter()
        .filter(|l| l.kind == "Input" && l.params.int(0, 0).unwrap_or(0) <= 0)
        .flat_map(|l| l.tops.iter().map(move |t| (t.clone(), Shape::d3(n, n, 3))))
        .collect()
}

/// Compares one blob's shape with its hint (`[dims, w, h, c]` or `[dims, w, h, d, c]`).
fn hint_matches(s: Shape, hint: &[i32]) -> bool {
    let (dims, w, h, d, c) = match *hint {
        [dims, w, h, c] => (dims, w, h, 1, c),
        [dims, w, h, d, c] => (dims, w, h, d, c),
        _ => return false,
    };
    let eq = |a: usize, b: i32| a as i64 == b as i64;
    s.dims as i32 == dims
        && eq(s.w, w)
        && (dims < 2 || eq(s.h, h))
        && (dims < 3 || eq(s.c, c))
        && (dims < 4 || eq(s.d, d))
}

/// Layers whose output row count depends on the data. ncnn sizes their output to the
/// detections found, so a hint records what ncnnoptimize's run happened to find; ours holds
/// the most detections possible (padding rows after the last one).
const DETECTION_LAYERS: [&str; 2] = ["DetectionOutput", "Yolov3DetectionOutput"];

/// A detection output against its hint: 2-D rows of 6, at least as many as the hint's.
fn detection_hint_matches(s: Shape, hint: &[i32]) -> bool {
    match *hint {
        [2, 6, rows, _] | [2, 6, rows, _, _] => {
            s.dims == 2 && s.w == 6 && s.h as i64 >= rows as i64
        }
        _ => false,
    }
}

/// Output blobs of the data models, which carry no shape hints (or, for a detection layer,
/// a data-dependent one).
const EXPECTED_OUTPUTS: [(&str, &str, Shape); 4] = [
    ("mobilefacenet", "fc1", Shape::d1(128)),
    ("mobilenet_v2", "out0", Shape::d1(1000)),
    ("squeezenet_v1.1", "prob", Shape::d1(1000)),
    // One row per (scale, anchor, cell): 3 x (10 x 10 + 20 x 20).
    ("yolo-fastest-1.1", "output", Shape::d2(6, 1500)),
];

enum Outcome {
    Checked(usize),
    Skipped(String),
}

fn check_model(path: &Path, mismatches: &mut Vec<String>) -> Outcome {
    let opts = Options {
        input_shapes: undeclared_inputs(path),
        ..Options::default()
    };
    let net = match Net::load_zero_weights(path, &opts) {
        Ok(net) => net,
        Err(Error::Layer { kind, msg, .. })
            if PENDING.contains(&kind.as_str())
                && msg == format!("unknown layer type `{kind}`") =>
        {
            return Outcome::Skipped(kind);
        }
        Err(e) => panic!("{}: {e}", path.display()),
    };
    let g = net.graph();
    let shapes = &net.plan().shapes;
    let mut checked = 0;
    for (li, l) in g.layers.iter().enumerate() {
        let hints = l.params.int_array(30).unwrap();
        if hints.is_empty() {
            continue;
        }
        let outs = &g.outputs[li];
        if hints.len() % outs.len() != 0 || !matches!(hints.len() / outs.len(), 4 | 5) {
            mismatches.push(format!(
                "{}: layer `{}`: malformed hint {hints:?}",
                path.display(),
                l.name
            ));
            continue;
        }
        let stride = hints.len() / outs.len();
        for (k, &b) in outs.iter().enumerate() {
            let hint = &hints[k * stride..(k + 1) * stride];
            let matches = if DETECTION_LAYERS.contains(&l.kind.as_str()) {
                detection_hint_matches(shapes[b], hint)
            } else {
                hint_matches(shapes[b], hint)
            };
            if !matches {
                mismatches.push(format!(
                    "{}: layer `{}` ({}) blob `{}`: inferred {}, hint {hint:?}",
                    path.display(),
                    l.name,
                    l.kind,
                    g.blobs[b].name,
                    shapes[b]
                ));
            }
            checked += 1;
        }
    }
    if path.starts_with(DATA_DIR) {
        let stem = path.file_stem().unwrap().to_string_lossy();
        for (model, blob, want) in EXPECTED_OUTPUTS {
            if stem == model {
                let got = net.blob_shape(blob).unwrap_or_else(|e| panic!("{e}"));
                if got != want {
                    mismatches.push(format!(
                        "{}: output `{blob}` is {got}, expected {want}",
                        path.display()
                    ));
                }
                checked += 1;
            }
        }
    }
    Outcome::Checked(checked)
}

#[test]
fn every_model_blob_matches_its_shape_hint() {
    let mut files = params_in(BENCHMARK_DIR, false);
    let benchmark_count = files.len();
    files.extend(params_in(DATA_DIR, true));
    if in_ci() {
        assert_eq!(
            benchmark_count, 18,
            "benchmark params missing from {BENCHMARK_DIR}"
        );
        for (model, _, _) in EXPECTED_OUTPUTS {
            let p = Path::new(DATA_DIR)
                .join(model)
                .join(format!("{model}.param"));
            assert!(p.exists(), "{} is missing", p.display());
        }
    }
    let mut mismatches = Vec::new();
    let (mut loaded, mut skipped) = (0, 0);
    for path in &files {
        match check_model(path, &mut mismatches) {
            Outcome::Checked(n) => {
                loaded += 1;
                eprintln!("{}: {n} blob shapes match their hints", path.display());
            }
            Outcome::Skipped(kind) => {
                skipped += 1;
                eprintln!(
                    "SKIPPED {}: layer type `{kind}` is not implemented on this branch",
                    path.display()
                );
            }
        }
    }
    eprintln!(
        "{} models: {loaded} checked, {skipped} skipped",
        files.len()
    );
    assert!(
        mismatches.is_empty(),
        "shape mismatches:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn hint_comparison_reads_both_strides() {
    assert!(hint_matches(Shape::d3(113, 113, 64), &[3, 113, 113, 64]));
    assert!(hint_matches(Shape::d1(1000), &[1, 1000, 1, 1]));
    assert!(hint_matches(Shape::d2(4332, 2), &[2, 4332, 2, 1]));
    assert!(hint_matches(Shape::d4(2, 3, 4, 5), &[4, 2, 3, 4, 5]));
    assert!(hint_matches(Shape::d3(2, 3, 5), &[3, 2, 3, 1, 5]));
    assert!(!hint_matches(Shape::d3(113, 113, 64), &[3, 113, 112, 64]));
    assert!(!hint_matches(Shape::d2(21, 1917), &[1, 21, 1917, 1]));
    assert!(detection_hint_matches(Shape::d2(6, 1500), &[2, 6, 1431, 1]));
    assert!(detection_hint_matches(Shape::d2(6, 1431), &[2, 6, 1431, 1]));
    assert!(!detection_hint_matches(
        Shape::d2(6, 1430),
        &[2, 6, 1431, 1]
    ));
    assert!(!detection_hint_matches(
        Shape::d2(7, 1500),
        &[2, 6, 1431, 1]
    ));
    assert!(!detection_hint_matches(Shape::d1(6), &[1, 6, 1, 1]));
}
