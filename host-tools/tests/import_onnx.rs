//! `eq import onnx`: small ONNX models built with the `onnx` Python package
//! (tests/onnx_models.py) are run in onnxruntime on random inputs, imported, run with
//! `eq infer`, and compared (relative error <= 1e-4, same shapes with the batch dim).
//! Error handling and the no-panic fuzz use models written here with the importer's own
//! prost messages, so they need no Python.
//!
//! Without python3 + onnx + onnxruntime (scripts/setup-test-env.sh installs them) the
//! comparison tests are skipped with a note, and fail under CI (`CI=true`).

mod common;

use common::{ci, eq, fails_with, s, temp_dir};
use eq_runtime::rng::Rng;
use eq_tools::import::onnx::{convert, decode};
use eq_tools::import::onnx_proto::*;
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One model written by onnx_models.py: its graph input and output names.
struct Built {
    name: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

/// Runs onnx_models.py for `names` in `dir`; None (after a note) when onnx / onnxruntime is
/// missing outside CI.
fn build(test: &str, dir: &Path, names: &[&str]) -> Option<Vec<Built>> {
    build_with("onnx_models.py", "python3", test, dir, names)
}

/// Runs tests/`script` with `python` (see `build`).
fn build_with(
    script: &str,
    python: &str,
    test: &str,
    dir: &Path,
    names: &[&str],
) -> Option<Vec<Built>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let result = Command::new(python)
        .arg(&script)
        .arg(dir)
        .args(names)
        .output();
    let unavailable = match &result {
        Err(e) => Some(format!("python3 not runnable: {e}")),
        Ok(o) if o.status.code() == Some(3) => {
            Some(String::from_utf8_lossy(&o.stderr).trim().to_string())
        }
        Ok(_) => None,
    };
    if let Some(why) = unavailable {
        // torch is optional everywhere; onnx and onnxruntime are installed for CI.
        let optional = script.ends_with("torch_models.py");
        assert!(
            !ci() || optional,
            "{test} needs python3 with onnx and onnxruntime: {why}"
        );
        println!("SKIPPED {test}: {why}");
        return None;
    }
    let o = result.unwrap();
    assert!(
        o.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let list = |line: &str, key: &str| -> Vec<String> {
        let v = line
            .split(' ')
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {line}"));
        v.split(',').map(String::from).collect()
    };
    Some(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| Built {
                name: l.split(' ').next().unwrap().to_string(),
                inputs: list(l, "in="),
                outputs: list(l, "out="),
            })
            .collect(),
    )
}

fn import(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (param, bin) = (
        dir.join(format!("{name}.param")),
        dir.join(format!("{name}.bin")),
    );
    let model = dir.join(format!("{name}.onnx"));
    let out = eq(&[
        "import",
        "onnx",
        "--model",
        &s(&model),
        "--out-param",
        &s(&param),
        "--out-bin",
        &s(&bin),
    ]);
    assert!(
        out.status.success(),
        "import {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (param, bin)
}

/// Imports each model, runs it with `eq infer` on the inputs onnxruntime saw, and compares
/// every graph output. Returns the .param texts by model name.
fn check(test: &str, names: &[&str]) -> Vec<(String, String)> {
    let dir = temp_dir(test);
    let Some(models) = build(test, &dir, names) else {
        return vec![];
    };
    assert_eq!(models.len(), names.len());
    compare(&dir, &models)
}

fn compare(dir: &Path, models: &[Built]) -> Vec<(String, String)> {
    let dir = dir.to_path_buf();
    let mut params = Vec::new();
    for m in models {
        let (param, bin) = import(&dir, &m.name);
        let mut args: Vec<String> = [
            "infer",
            "--param",
            &s(&param),
            "--bin",
            &s(&bin),
            "--batch",
            "--threads",
            "1",
        ]
        .map(String::from)
        .to_vec();
        for (i, n) in m.inputs.iter().enumerate() {
            args.push("--in".into());
            args.push(format!(
                "{n}={}",
                s(&dir.join(format!("{}.in{i}.npy", m.name)))
            ));
        }
        for (i, n) in m.outputs.iter().enumerate() {
            args.push("--out".into());
            args.push(format!(
                "{n}={}",
                s(&dir.join(format!("{}.got{i}.npy", m.name)))
            ));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = eq(&refs);
        assert!(
            out.status.success(),
            "infer {}: {}",
            m.name,
            String::from_utf8_lossy(&out.stderr)
        );
        for (i, n) in m.outputs.iter().enumerate() {
            let want = eq_tools::npy::read(&dir.join(format!("{}.out{i}.npy", m.name))).unwrap();
            let got = eq_tools::npy::read(&dir.join(format!("{}.got{i}.npy", m.name))).unwrap();
            // The ncnn blob is the ONNX tensor without its batch dim; --batch adds it back.
            assert_eq!(got.dims, want.dims, "{} output {n}: shape", m.name);
            let scale = want.data.iter().fold(1e-6f32, |a, v| a.max(v.abs()));
            let err = got
                .data
                .iter()
                .zip(&want.data)
                .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
            assert!(
                err / scale <= 1e-4,
                "{} output {n}: max error {err} (scale {scale})",
                m.name
            );
        }
        params.push((m.name.clone(), std::fs::read_to_string(&param).unwrap()));
    }
    let _ = std::fs::remove_dir_all(&dir);
    params
}

fn kinds(param: &str) -> Vec<&str> {
    param
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

#[test]
fn conv_family_with_groups_dilation_asymmetric_pads_and_folded_batchnorm() {
    for (name, param) in check("onnx-conv", &["conv", "deconv"]) {
        let k = kinds(&param);
        // Every BatchNormalization follows a Conv / ConvTranspose: all folded.
        assert!(!k.contains(&"BatchNorm"), "{name}: {param}");
        if name == "conv" {
            assert!(k.contains(&"ConvolutionDepthWise"), "{param}");
            assert!(param.contains(" 15=") || param.contains(" 16="), "{param}");
        } else {
            assert!(k.contains(&"Deconvolution") && k.contains(&"DeconvolutionDepthWise"));
        }
    }
}

#[test]
fn gemm_and_matmul() {
    for (name, param) in check("onnx-gemm", &["gemm", "matmul"]) {
        let k = kinds(&param);
        assert!(!k.contains(&"BatchNorm"), "{name}: {param}");
        if name == "matmul" {
            assert!(
                k.contains(&"MatMul") && k.contains(&"MemoryData"),
                "{param}"
            );
        }
    }
}

#[test]
fn activations_and_swish() {
    for (_, param) in check("onnx-act", &["activations"]) {
        let k = kinds(&param);
        for want in ["Clip", "ReLU", "HardSwish", "HardSigmoid", "Swish", "TanH"] {
            assert!(k.contains(&want), "{want} missing: {param}");
        }
        // The Sigmoid inside the Swish is gone; one plain Sigmoid stays.
        assert_eq!(k.iter().filter(|&&x| x == "Sigmoid").count(), 1, "{param}");
    }
}

#[test]
fn broadcasting_binary_ops_with_scalar_and_tensor_constants() {
    for (_, param) in check("onnx-bcast", &["broadcast"]) {
        assert!(param.contains(" 1=1 2="), "with_scalar form: {param}");
        assert!(kinds(&param).contains(&"MemoryData"), "{param}");
    }
}

#[test]
fn standalone_batchnorm_unary_ops_and_odd_shapes() {
    for (_, param) in check("onnx-misc", &["misc"]) {
        let k = kinds(&param);
        for want in ["BatchNorm", "UnaryOp", "Crop", "Slice"] {
            assert!(k.contains(&want), "{want} missing: {param}");
        }
    }
}

#[test]
fn pooling_with_ceil_mode_pads_and_global() {
    check("onnx-pool", &["pooling"]);
}

#[test]
fn shape_ops_and_folded_shape_arithmetic() {
    for (_, param) in check("onnx-shapes", &["shapes", "resize"]) {
        // Shape / Gather / Unsqueeze / Concat chains are evaluated at import.
        let k = kinds(&param);
        assert!(
            !k.iter().any(|x| ["Shape", "Gather"].contains(x)),
            "{param}"
        );
    }
}

#[test]
fn small_cnn_with_residuals_and_a_detector_head() {
    for (_, param) in check("onnx-cnn", &["cnn"]) {
        let k = kinds(&param);
        assert!(!k.contains(&"BatchNorm"), "{param}");
        assert!(k.contains(&"Interp") && k.contains(&"Split"), "{param}");
    }
}

/// The imported files are plain ncnn: stock ncnn (the PyPI package, via tests/ncnn_run.py)
/// runs them to the same outputs as onnxruntime.
#[test]
fn stock_ncnn_runs_the_imported_models_alike() {
    let test = "stock_ncnn_runs_the_imported_models_alike";
    let dir = temp_dir("onnx-ncnn");
    let names = [
        "cnn",
        "broadcast",
        "pooling",
        "shapes",
        "resize",
        "activations",
    ];
    let Some(models) = build(test, &dir, &names) else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ncnn_run.py");
    for m in &models {
        let (param, bin) = import(&dir, &m.name);
        // ncnn takes the input without its batch dim.
        let x = eq_tools::npy::read(&dir.join(format!("{}.in0.npy", m.name))).unwrap();
        let input = dir.join(format!("{}.ncnn_in.npy", m.name));
        eq_tools::npy::write(&input, &x.dims[1..], &x.data).unwrap();
        for (i, out) in m.outputs.iter().enumerate() {
            let got_path = dir.join(format!("{}.ncnn{i}.npy", m.name));
            let o = Command::new("python3")
                .arg(&script)
                .args([&param, &bin])
                .arg(&m.inputs[0])
                .arg(out)
                .arg(&got_path)
                .arg(&input)
                .output()
                .unwrap();
            if o.status.code() == Some(3) {
                let why = String::from_utf8_lossy(&o.stderr);
                assert!(!ci(), "{test} needs python3 with ncnn: {why}");
                println!("SKIPPED {test}: {why}");
                return;
            }
            assert!(
                o.status.success(),
                "{} {out}: {}",
                m.name,
                String::from_utf8_lossy(&o.stderr)
            );
            let got = eq_tools::npy::read(&got_path).unwrap();
            let want = eq_tools::npy::read(&dir.join(format!("{}.out{i}.npy", m.name))).unwrap();
            assert_eq!(got.data.len(), want.data.len(), "{} {out}: size", m.name);
            let scale = want.data.iter().fold(1e-6f32, |a, v| a.max(v.abs()));
            let err = got
                .data
                .iter()
                .zip(&want.data)
                .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
            assert!(
                err / scale <= 1e-4,
                "stock ncnn, {} output {out}: max error {err} (scale {scale})",
                m.name
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// torchvision ResNet-18 and MobileNetV2 (random weights) exported by torch. Optional: the
/// PyPI torch wheel brings CUDA libraries (several GB), too large for the CI setup, so this
/// runs only where `EQ_TORCH_PYTHON` (default python3) has torch and torchvision.
#[test]
fn torchvision_resnet18_and_mobilenet_v2() {
    let python = std::env::var("EQ_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let test = "torchvision_resnet18_and_mobilenet_v2";
    let dir = temp_dir("onnx-torch");
    let names = ["resnet18", "mobilenet_v2"];
    let Some(models) = build_with("torch_models.py", &python, test, &dir, &names) else {
        return;
    };
    for (name, param) in compare(&dir, &models) {
        let k = kinds(&param);
        assert!(
            k.contains(&"Convolution") && k.contains(&"InnerProduct"),
            "{name}"
        );
    }
}

/// The imported model goes through `eq easyquant` like any ncnn model.
#[test]
fn imported_cnn_goes_through_easyquant() {
    let dir = temp_dir("onnx-eq");
    if build("imported_cnn_goes_through_easyquant", &dir, &["cnn"]).is_none() {
        return;
    }
    let (param, bin) = import(&dir, "cnn");
    let imgs = dir.join("images");
    std::fs::create_dir_all(&imgs).unwrap();
    let mut rng = Rng::new(3);
    for i in 0..4 {
        let px = rng.vec(40 * 40 * 3, 0.0, 255.0);
        let img = image::RgbImage::from_fn(40, 40, |x, y| {
            let at = ((y * 40 + x) * 3) as usize;
            image::Rgb([px[at] as u8, px[at + 1] as u8, px[at + 2] as u8])
        });
        img.save(imgs.join(format!("{i}.png"))).unwrap();
    }
    let out_dir = dir.join("eq");
    let out = eq(&[
        "easyquant",
        "--param",
        &s(&param),
        "--bin",
        &s(&bin),
        "--images",
        &s(&imgs),
        "--count",
        "4",
        "--size",
        "32,32",
        "--mean",
        "128,128,128",
        "--norm",
        "0.0078125,0.0078125,0.0078125",
        "--rgb",
        "--threads",
        "1",
        "--mixed",
        "off",
        "--out",
        &s(&out_dir),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("INT7"), "{text}");
    let q = std::fs::read_to_string(out_dir.join("model.param")).unwrap();
    assert!(q.contains("Convolution"), "{q}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// Models written here (no Python): errors and the no-panic fuzz

fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(2),
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: v.to_vec(),
        r#type: Some(7),
        ..Default::default()
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: Some(name.into()),
        op_type: Some(op.into()),
        attribute: attrs,
        ..Default::default()
    }
}

fn tensor(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DT_FLOAT),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: Some(DT_FLOAT),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            dim_value: Some(d),
                            dim_param: None,
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

/// x [1,2,5,5] -> Conv 3x3 (float_data weights) -> BatchNormalization -> Relu -> Reshape
/// (shape from Shape/Gather/Concat) -> Gemm -> y.
fn small_model() -> ModelProto {
    let mut rng = Rng::new(4);
    let mut w = tensor("w", &[3, 2, 3, 3], vec![]);
    w.raw_data = None;
    w.float_data = rng.vec(54, -1.0, 1.0);
    let shape_idx = TensorProto {
        name: Some("i0".into()),
        dims: vec![1],
        data_type: Some(DT_INT64),
        int64_data: vec![0],
        ..Default::default()
    };
    let minus1 = TensorProto {
        name: Some("m1".into()),
        dims: vec![1],
        data_type: Some(DT_INT64),
        raw_data: Some((-1i64).to_le_bytes().to_vec()),
        ..Default::default()
    };
    let graph = GraphProto {
        node: vec![
            node(
                "Conv",
                "conv",
                &["x", "w", "b"],
                &["c"],
                vec![attr_ints("pads", &[1, 1, 1, 1])],
            ),
            node(
                "BatchNormalization",
                "bn",
                &["c", "s", "bb", "mean", "var"],
                &["n"],
                vec![],
            ),
            node("Relu", "relu", &["n"], &["r"], vec![]),
            node("Shape", "shape", &["r"], &["sh"], vec![]),
            node(
                "Gather",
                "gather",
                &["sh", "i0"],
                &["g"],
                vec![attr_i("axis", 0)],
            ),
            node(
                "Concat",
                "cat",
                &["g", "m1"],
                &["newshape"],
                vec![attr_i("axis", 0)],
            ),
            node("Reshape", "reshape", &["r", "newshape"], &["f"], vec![]),
            node(
                "Gemm",
                "fc",
                &["f", "fw", "fb"],
                &["y"],
                vec![attr_i("transB", 1)],
            ),
        ],
        name: Some("small".into()),
        initializer: vec![
            w,
            tensor("b", &[3], rng.vec(3, -1.0, 1.0)),
            tensor("s", &[3], rng.vec(3, 0.5, 1.5)),
            tensor("bb", &[3], rng.vec(3, -1.0, 1.0)),
            tensor("mean", &[3], rng.vec(3, -1.0, 1.0)),
            tensor("var", &[3], rng.vec(3, 0.5, 1.5)),
            shape_idx,
            minus1,
            tensor("fw", &[4, 75], rng.vec(300, -1.0, 1.0)),
            tensor("fb", &[4], rng.vec(4, -1.0, 1.0)),
        ],
        input: vec![value_info("x", &[1, 2, 5, 5])],
        output: vec![value_info("y", &[1, 4])],
    };
    ModelProto {
        ir_version: Some(8),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
    }
}

#[test]
fn a_model_written_here_imports_and_runs() {
    let mut m = small_model();
    // A layer name with spaces (allowed in ONNX) becomes an ncnn token.
    m.graph.as_mut().unwrap().node[2].name = Some("the relu".into());
    let model = convert(&decode(&m.encode_to_vec()).unwrap()).unwrap();
    let param = model.param.to_text().unwrap();
    assert_eq!(
        kinds(&param),
        ["Input", "Convolution", "ReLU", "Flatten", "InnerProduct"],
        "{param}"
    );
    assert!(param.contains(" the_relu "), "{param}");
    let mut net = eq_runtime::Net::from_memory(
        param.as_bytes(),
        &model.bin.bytes,
        &eq_runtime::Options::default(),
    )
    .unwrap();
    net.set_input("x", &Rng::new(5).vec(50, -1.0, 1.0)).unwrap();
    net.run().unwrap();
    let (shape, y) = net.blob_f32("y").unwrap();
    assert_eq!((shape.w, shape.h, shape.c, y.len()), (4, 1, 1, 4));
}

#[test]
fn bad_models_give_one_line_errors() {
    let tmp = temp_dir("onnx-errors");
    let (op, ob) = (tmp.join("o.param"), tmp.join("o.bin"));
    let run = |file: &str, bytes: &[u8], needles: &[&str]| {
        let p = tmp.join(file);
        std::fs::write(&p, bytes).unwrap();
        let mut n = vec![file];
        n.extend(needles);
        fails_with(
            &[
                "import",
                "onnx",
                "--model",
                &s(&p),
                "--out-param",
                &s(&op),
                "--out-bin",
                &s(&ob),
            ],
            &n,
        );
    };
    let good = small_model();
    let bytes = good.encode_to_vec();
    let with = |f: &dyn Fn(&mut GraphProto)| {
        let mut m = good.clone();
        f(m.graph.as_mut().unwrap());
        m.encode_to_vec()
    };

    run("junk.onnx", &[0xff; 64], &["malformed ONNX model"]);
    run(
        "cut.onnx",
        &bytes[..bytes.len() - 9],
        &["malformed ONNX model"],
    );
    run("empty.onnx", &[], &["no graph nodes"]);
    run(
        "unsupported.onnx",
        &with(&|g| g.node[2].op_type = Some("Frobnicate".into())),
        &["node `relu`", "unsupported op type `Frobnicate`"],
    );
    run(
        "missing.onnx",
        &with(&|g| g.initializer.retain(|t| t.name.as_deref() != Some("w"))),
        &["node `conv`", "`w`", "not produced"],
    );
    run(
        "group.onnx",
        &with(&|g| g.node[0].attribute.push(attr_i("group", 2))),
        &["node `conv`", "group 2"],
    );
    run(
        "pads.onnx",
        &with(&|g| g.node[0].attribute = vec![attr_ints("pads", &[1, 1])]),
        &["node `conv`", "pads [1, 1]"],
    );
    run(
        "fp16.onnx",
        &with(&|g| g.initializer[1].data_type = Some(10)),
        &["tensor `b`", "data type 10"],
    );
    run(
        "short.onnx",
        &with(&|g| {
            g.initializer[1].raw_data.as_mut().unwrap().pop();
        }),
        &["tensor `b`", "needs 3 values"],
    );
    run(
        "symbolic.onnx",
        &with(&|g| {
            let d = &mut g.input[0]
                .r#type
                .as_mut()
                .unwrap()
                .tensor_type
                .as_mut()
                .unwrap();
            d.shape.as_mut().unwrap().dim[2] = Dimension {
                dim_value: None,
                dim_param: Some("h".into()),
            };
        }),
        &["graph input `x`", "symbolic"],
    );
    run(
        "output.onnx",
        &with(&|g| g.output[0].name = Some("nowhere".into())),
        &["graph output `nowhere`"],
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A short stable-toolchain fuzz of the importer (fuzz/fuzz_targets/onnx.rs runs longer):
/// mutated model bytes may fail, never panic.
#[test]
fn mutated_models_fail_cleanly() {
    let mut rng = Rng::new(11);
    let bytes = small_model().encode_to_vec();
    let below = |rng: &mut Rng, n: usize| (rng.next_u64() % n as u64) as usize;
    for _ in 0..20_000 {
        let mut v = bytes.clone();
        for _ in 0..1 + below(&mut rng, 6) {
            if v.is_empty() {
                break;
            }
            let at = below(&mut rng, v.len());
            match below(&mut rng, 4) {
                0 => v[at] = below(&mut rng, 256) as u8,
                1 => v.truncate(at),
                2 => {
                    v.remove(at);
                }
                _ => {
                    let end = (at + 1 + below(&mut rng, 32)).min(v.len());
                    let piece = v[at..end].to_vec();
                    v.splice(at..at, piece);
                }
            }
        }
        if let Ok(m) = decode(&v) {
            if let Ok(model) = convert(&m) {
                let _ = model.param.to_text();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The pnnx route (optional: pnnx pulls in torch, too large for the CI setup)

/// The small CNN converted by pnnx (ONNX -> ncnn, fp32 weights) runs in this runtime as
/// onnxruntime runs the ONNX model. Runs only where `pnnx` is on the PATH (or `EQ_PNNX`
/// names it); skipped otherwise, also under CI.
#[test]
fn pnnx_converted_cnn_matches_onnxruntime() {
    let pnnx = std::env::var("EQ_PNNX").unwrap_or_else(|_| "pnnx".into());
    if Command::new(&pnnx).arg("--help").output().is_err() {
        println!("SKIPPED pnnx_converted_cnn_matches_onnxruntime: no `{pnnx}` (pip install pnnx)");
        return;
    }
    let dir = temp_dir("onnx-pnnx");
    if build("pnnx_converted_cnn_matches_onnxruntime", &dir, &["cnn"]).is_none() {
        return;
    }
    let out = Command::new(&pnnx)
        .current_dir(&dir)
        .args(["cnn.onnx", "inputshape=[1,3,32,32]", "fp16=0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pnnx: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = |f: &str| s(&dir.join(f));
    let out = eq(&[
        "infer",
        "--param",
        &p("cnn.ncnn.param"),
        "--bin",
        &p("cnn.ncnn.bin"),
        "--batch",
        "--threads",
        "1",
        "--in",
        &format!("in0={}", p("cnn.in0.npy")),
        "--out",
        &format!("out0={}", p("got0.npy")),
        "--out",
        &format!("out1={}", p("got1.npy")),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..2 {
        let want = eq_tools::npy::read(&dir.join(format!("cnn.out{i}.npy"))).unwrap();
        let got = eq_tools::npy::read(&dir.join(format!("got{i}.npy"))).unwrap();
        assert_eq!(got.dims, want.dims);
        let scale = want.data.iter().fold(1e-6f32, |a, v| a.max(v.abs()));
        let err = got
            .data
            .iter()
            .zip(&want.data)
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        assert!(
            err / scale <= 1e-4,
            "out{i}: max error {err} (scale {scale})"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Structured fuzz: nodes of the small model get other op types, inputs and attribute
/// values (every mapping sees odd shapes and values); the importer may fail, never panic.
#[test]
fn models_with_swapped_ops_and_attributes_fail_cleanly() {
    const OPS: &[&str] = &[
        "Conv",
        "ConvTranspose",
        "Gemm",
        "MatMul",
        "BatchNormalization",
        "Relu",
        "LeakyRelu",
        "Sigmoid",
        "HardSwish",
        "HardSigmoid",
        "Clip",
        "Tanh",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Max",
        "Pow",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "Concat",
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Transpose",
        "Resize",
        "Upsample",
        "Slice",
        "Split",
        "Pad",
        "Softmax",
        "ReduceMean",
        "Identity",
        "Dropout",
        "Shape",
        "Gather",
        "Cast",
        "Constant",
        "ConstantOfShape",
        "Floor",
    ];
    const ATTRS: &[&str] = &[
        "axis",
        "axes",
        "group",
        "pads",
        "strides",
        "dilations",
        "kernel_shape",
        "perm",
        "split",
        "keepdims",
        "ceil_mode",
        "transB",
        "output_padding",
        "starts",
        "ends",
        "to",
    ];
    let good = small_model();
    let names: Vec<String> = {
        let g = good.graph.as_ref().unwrap();
        let mut v: Vec<String> = g.node.iter().flat_map(|n| n.output.clone()).collect();
        v.extend(g.initializer.iter().filter_map(|t| t.name.clone()));
        v.push("x".into());
        v
    };
    let mut rng = Rng::new(12);
    let below = |rng: &mut Rng, n: usize| (rng.next_u64() % n as u64) as usize;
    for _ in 0..20_000 {
        let mut m = good.clone();
        let g = m.graph.as_mut().unwrap();
        for _ in 0..1 + below(&mut rng, 3) {
            let k = below(&mut rng, g.node.len());
            let n = &mut g.node[k];
            match below(&mut rng, 4) {
                0 => n.op_type = Some(OPS[below(&mut rng, OPS.len())].into()),
                1 => {
                    let i = below(&mut rng, n.input.len() + 1);
                    let name = names[below(&mut rng, names.len())].clone();
                    if i < n.input.len() {
                        n.input[i] = name;
                    } else {
                        n.input.push(name);
                    }
                }
                2 => {
                    let name = ATTRS[below(&mut rng, ATTRS.len())];
                    let len = below(&mut rng, 5);
                    let vals: Vec<i64> = (0..len).map(|_| below(&mut rng, 9) as i64 - 3).collect();
                    n.attribute.retain(|a| a.name.as_deref() != Some(name));
                    n.attribute.push(if len == 1 {
                        attr_i(name, vals[0])
                    } else {
                        attr_ints(name, &vals)
                    });
                }
                _ => {
                    n.input.truncate(below(&mut rng, n.input.len() + 1));
                }
            }
        }
        if let Ok(model) = convert(&m) {
            let _ = model.param.to_text();
        }
    }
}
