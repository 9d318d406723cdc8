//! `eq zoo` against ncnn's own files: every generated network must have the same layer types,
//! the same output shape for every layer (in execution order) and the same multiply-adds as
//! the corresponding ncnn benchmark `.param` (and the MobileFaceNet model), both loaded with
//! zero weights. Names may differ.
//!
//! The shared folder is `$EQ_SHARED`, or `<workspace>/../shared`. A missing file fails the
//! test in CI (`CI=true`) and skips it with a note otherwise.

mod common;

use common::{shared_dir, temp_dir};
use eq_runtime::{Net, Options, Shape};
use eq_tools::zoo;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The reference file for a zoo model.
fn reference(name: &str) -> PathBuf {
    let shared = shared_dir();
    match name {
        "mobilefacenet" => shared.join("data/models/mobilefacenet/mobilefacenet.param"),
        _ => shared.join(format!("models/ncnn-benchmark/{name}.param")),
    }
}

/// True when the file exists; otherwise fails in CI, or prints a note (the caller skips).
fn require(path: &Path) -> bool {
    if path.exists() {
        return true;
    }
    let msg = format!("reference file {} not found", path.display());
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("skipping: {msg} (set EQ_SHARED)");
    false
}

/// One layer as the comparison sees it.
#[derive(Debug, PartialEq)]
struct LayerInfo {
    kind: String,
    outputs: Vec<Shape>,
}

struct Profile {
    layers: Vec<LayerInfo>,
    macs: u64,
}

/// Layer kinds, planned output shapes in execution order, and multiply-adds of the conv and
/// fully connected layers, computed from the planned shapes.
fn profile(param: &Path, input: Shape) -> Profile {
    let opts = Options {
        input_shapes: vec![("data".into(), input)],
        ..Options::default()
    };
    let net =
        Net::load_zero_weights(param, &opts).unwrap_or_else(|e| panic!("{}: {e}", param.display()));
    let (g, shapes) = (net.graph(), &net.plan().shapes);
    let mut layers = Vec::new();
    let mut macs = 0u64;
    for &li in &g.order {
        let l = &g.layers[li];
        let outs: Vec<Shape> = g.outputs[li].iter().map(|&b| shapes[b]).collect();
        let ins: Vec<Shape> = g.inputs[li].iter().map(|&b| shapes[b]).collect();
        macs += match l.kind.as_str() {
            "Convolution" | "ConvolutionDepthWise" => {
                let kw = l.params.usize(1, 0).unwrap();
                let kh = l.params.usize(11, kw).unwrap();
                let group = l.params.usize(7, 1).unwrap();
                (outs[0].len() * ins[0].c / group * kw * kh) as u64
            }
            "InnerProduct" => (outs[0].len() * ins[0].len()) as u64,
            _ => 0,
        };
        layers.push(LayerInfo {
            kind: l.kind.clone(),
            outputs: outs,
        });
    }
    Profile { layers, macs }
}

fn kind_counts(p: &Profile) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for l in &p.layers {
        *m.entry(l.kind.as_str()).or_insert(0) += 1;
    }
    m
}

#[test]
fn zoo_models_match_ncnn_reference_structure() {
    let dir = temp_dir("structure");
    let mut checked = 0;
    for m in zoo::MODELS {
        let refp = reference(m.name);
        if !require(&refp) {
            continue;
        }
        let ours = m.write(&dir, false).unwrap();
        let a = profile(&ours[0], m.input);
        let b = profile(&refp, m.input);
        assert_eq!(kind_counts(&a), kind_counts(&b), "{}: layer types", m.name);
        assert_eq!(a.layers.len(), b.layers.len(), "{}: layer count", m.name);
        for (i, (x, y)) in a.layers.iter().zip(&b.layers).enumerate() {
            // Layers come in the reference's order, so the kinds line up too.
            assert_eq!(x.kind, y.kind, "{}: layer {i} type", m.name);
            assert_eq!(
                x.outputs, y.outputs,
                "{}: layer {i} ({} vs {}) output shapes",
                m.name, x.kind, y.kind
            );
        }
        assert_eq!(a.macs, b.macs, "{}: multiply-adds", m.name);
        assert!(a.macs > 0);
        eprintln!(
            "{}: {} layers, {:.1} M MACs",
            m.name,
            a.layers.len(),
            a.macs as f64 / 1e6
        );
        checked += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    if checked > 0 {
        assert_eq!(checked, zoo::MODELS.len());
    }
}

#[test]
fn seeded_weights_load_and_run() {
    let dir = temp_dir("weights");
    for name in ["squeezenet", "mobilenet_ssd", "mobilefacenet"] {
        let m = zoo::find(name).unwrap();
        let files = m.write(&dir, true).unwrap();
        assert_eq!(files.len(), 2);
        let mut net = Net::load(&files[0], &files[1], &Options::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut rng = eq_runtime::rng::Rng::new(7);
        net.set_input("data", &rng.vec(m.input.len(), 0.0, 255.0))
            .unwrap();
        net.run().unwrap();
        let outs: Vec<String> = net.outputs().map(|(n, _)| n.to_string()).collect();
        for o in outs {
            let t = net.blob(&o).unwrap();
            assert!(t.data.iter().all(|v| v.is_finite()), "{name}: {o}");
        }
    }
    // Same seed, same bytes.
    let a = zoo::find("mobilefacenet").unwrap().build(true).unwrap();
    let b = zoo::find("mobilefacenet").unwrap().build(true).unwrap();
    assert_eq!(a.bin.bytes, b.bin.bytes);
    assert_eq!(a.param.to_text().unwrap(), b.param.to_text().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_writes_the_named_models() {
    let dir = temp_dir("cli");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eq"))
        .args(["zoo", "--out"])
        .arg(&dir)
        .args(["--model", "mobilenet", "--model", "resnet50"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("mobilenet.param").exists());
    assert!(dir.join("resnet50.param").exists());
    assert!(!dir.join("vgg16.param").exists());
    assert!(!dir.join("mobilenet.bin").exists());

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eq"))
        .args(["zoo", "--out"])
        .arg(&dir)
        .args(["--model", "alexnet"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown model `alexnet`"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
