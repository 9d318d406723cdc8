//! `eq calibrate`, `eq quantize`, `eq eval`, `eq eval-lfw` end to end on a small generated
//! model, the int8 output checked with stock ncnn (python `ncnn` package; skipped with a note
//! when missing, a failure with CI=true), plus a smoke run on the shared real models.

mod common;

use common::{ci, eq, s, temp_dir};
use eq_runtime::{Net, Options, Shape};
use eq_tools::builder::{Conv, NetBuilder};
use eq_tools::calibrate::qmax;
use eq_tools::dataset::{ColorOrder, Preprocess, Resize};
use eq_tools::table::ScaleTable;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs eq and expects success; returns stdout + stderr.
fn eq_ok(args: &[&str]) -> String {
    let out = eq(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "eq {args:?}: {text}");
    text
}

/// Runs eq and expects exit code 1 with a one-line error containing every needle.
fn eq_fails(args: &[&str], needles: &[&str]) {
    let out = eq(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "eq {args:?}: {err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("eq: error: "), "{err}");
    for n in needles {
        assert!(last.contains(n), "expected `{n}` in: {err}");
    }
}

const SIZE: usize = 16;

fn prep() -> Preprocess {
    Preprocess {
        size: (SIZE as u32, SIZE as u32),
        mean: [128.0; 3],
        norm: [1.0 / 64.0; 3],
        order: ColorOrder::Rgb,
        resize: Resize::Stretch,
    }
}

const PREP_FLAGS: [&str; 7] = [
    "--size",
    "16,16",
    "--mean",
    "128,128,128",
    "--norm",
    "0.015625,0.015625,0.015625",
    "--rgb",
];

/// data -> c0 3x3 -> Split -> (c1 1x1, c2 3x3) -> Concat -> dw 3x3 -> c3 1x1 -> gap -> fc ->
/// Softmax. Every quantizable kind, a Split feeding convs, a DW -> conv edge.
fn write_model(dir: &Path) -> (PathBuf, PathBuf) {
    let mut b = NetBuilder::new(11);
    let x = b.input("data", Shape::d3(SIZE, SIZE, 3));
    let x = b.conv("c0", &x, Conv::new(8, 3).pad(1).relu()).unwrap();
    let sp = b.split("sp", &x, 2);
    let a = b.conv("c1", &sp[0], Conv::new(6, 1).relu()).unwrap();
    let c = b.conv("c2", &sp[1], Conv::new(6, 3).pad(1).relu()).unwrap();
    let x = b.concat("cat", &[&a, &c], 0).unwrap();
    let x = b.depthwise("dw", &x, Conv::dw(3).pad(1).relu()).unwrap();
    let x = b.conv("c3", &x, Conv::new(10, 1).stride(2).relu()).unwrap();
    let x = b.global_avg_pool("gap", &x);
    let x = b.inner_product("fc", &x, 7);
    b.softmax("prob", &x);
    b.finish().save(dir, "tiny").unwrap()
}

/// `n` PNG images with smooth structure plus noise, seeded.
fn write_images(dir: &Path, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = eq_runtime::rng::Rng::new(5);
    (0..n)
        .map(|i| {
            let (fx, fy) = (rng.uniform(0.1, 0.6), rng.uniform(0.1, 0.6));
            let phase = rng.uniform(0.0, 6.0);
            let noise: Vec<f32> = rng.vec(3 * 20 * 20, -40.0, 40.0);
            let img = image::RgbImage::from_fn(20, 20, |x, y| {
                let base = |c: u32| {
                    let v = 128.0
                        + 90.0 * ((x as f32 * fx + y as f32 * fy + phase + c as f32).sin())
                        + noise[((c * 20 + y) * 20 + x) as usize];
                    v.clamp(0.0, 255.0) as u8
                };
                image::Rgb([base(0), base(1), base(2)])
            });
            let p = dir.join(format!("img{i:02}.png"));
            img.save(&p).unwrap();
            p
        })
        .collect()
}

/// Loads the fp32 model with every blob kept.
fn fp32_net(param: &Path, bin: &Path) -> Net {
    let opts = Options {
        keep_all_blobs: true,
        ..Options::default()
    };
    Net::load(param, bin, &opts).unwrap()
}

/// Runs stock ncnn via tests/ncnn_run.py; None (after a note) when python / ncnn is missing.
fn ncnn_outputs(
    param: &Path,
    bin: &Path,
    out_blob: &str,
    inputs: &[PathBuf],
    dir: &Path,
) -> Option<Vec<Vec<f32>>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ncnn_run.py");
    let out_path = dir.join(format!("ncnn_{out_blob}.npy"));
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(param)
        .arg(bin)
        .arg("data")
        .arg(out_blob)
        .arg(&out_path)
        .args(inputs);
    let result = cmd.output();
    let unavailable = match &result {
        Err(e) => Some(format!("python3 not runnable: {e}")),
        Ok(o) if o.status.code() == Some(3) => {
            Some(String::from_utf8_lossy(&o.stderr).trim().to_string())
        }
        Ok(_) => None,
    };
    if let Some(why) = unavailable {
        assert!(!ci(), "stock ncnn check needs python3 with ncnn: {why}");
        println!("SKIPPED stock ncnn check: {why}");
        return None;
    }
    let o = result.unwrap();
    assert!(
        o.status.success(),
        "ncnn_run.py failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let a = eq_tools::npy::read(&out_path).unwrap();
    let len = a.dims[1];
    Some(a.data.chunks(len).map(<[f32]>::to_vec).collect())
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        ab += *x as f64 * *y as f64;
        aa += *x as f64 * *x as f64;
        bb += *y as f64 * *y as f64;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1e-30)
}

#[test]
fn calibrate_quantize_and_check_with_ncnn() {
    let dir = temp_dir("tiny");
    let (param, bin) = write_model(&dir);
    let images = write_images(&dir.join("images"), 12);
    let model_flags = ["--param", &s(&param), "--bin", &s(&bin)].map(String::from);
    let calibrate = |method: &str, bits: &str, out: &Path| {
        let mut a: Vec<String> = vec!["calibrate".into()];
        a.extend(model_flags.iter().cloned());
        a.extend(PREP_FLAGS.map(String::from));
        a.extend(
            [
                "--images",
                &s(&dir.join("images")),
                "--method",
                method,
                "--bits",
                bits,
                "--out",
                &s(out),
            ]
            .map(String::from),
        );
        let args: Vec<&str> = a.iter().map(String::as_str).collect();
        eq_ok(&args);
        ScaleTable::read(out).unwrap()
    };

    // max: activation scale = 127 / max |bottom| over the images, computed independently.
    let max_table = calibrate("max", "8", &dir.join("max.table"));
    let mut net = fp32_net(&param, &bin);
    let layers = ["c0", "c1", "c2", "dw", "c3", "fc"];
    let bottoms = ["data", "sp_0", "sp_1", "cat", "dw", "gap"];
    let mut absmax = [0f32; 6];
    for p in &images {
        net.set_input("data", &prep().load(p).unwrap()).unwrap();
        net.run().unwrap();
        for (m, b) in absmax.iter_mut().zip(bottoms) {
            *m = net
                .blob(b)
                .unwrap()
                .data
                .iter()
                .fold(*m, |m, v| m.max(v.abs()));
        }
    }
    let names: Vec<&str> = max_table
        .activations
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(names, layers);
    for (l, m) in layers.iter().zip(absmax) {
        let got = max_table.activation(l).unwrap();
        assert!(
            (got - 127.0 / m).abs() <= 1e-5 * got,
            "{l}: {got} vs {}",
            127.0 / m
        );
    }
    assert_eq!(max_table.weight("dw").unwrap().len(), 12, "one per group");
    assert_eq!(max_table.weight("fc").unwrap().len(), 7);

    // KL and ACIQ clip: scales at least the max scale; 7 bits: qmax 63 everywhere.
    let kl = calibrate("kl", "8", &dir.join("kl.table"));
    let aciq = calibrate("aciq", "8", &dir.join("aciq.table"));
    for l in layers {
        assert!(kl.activation(l).unwrap() >= max_table.activation(l).unwrap() * 0.999);
        assert!(aciq.activation(l).unwrap() > 0.0);
    }
    let kl7 = calibrate("kl", "7", &dir.join("kl7.table"));
    let m7 = calibrate("max", "7", &dir.join("max7.table"));
    assert!(
        (m7.activation("c0").unwrap() / max_table.activation("c0").unwrap() - 63.0 / 127.0).abs()
            < 1e-6
    );
    assert!((qmax(7) - 63.0).abs() < 1e-9);
    assert_eq!(kl7.activations.len(), 6);
    // Deterministic whatever the thread count.
    let mut a: Vec<String> = vec!["calibrate".into()];
    a.extend(model_flags.iter().cloned());
    a.extend(PREP_FLAGS.map(String::from));
    let one = dir.join("kl1.table");
    a.extend(
        [
            "--images",
            &s(&dir.join("images")),
            "--method",
            "kl",
            "--threads",
            "1",
            "--out",
            &s(&one),
        ]
        .map(String::from),
    );
    eq_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        std::fs::read_to_string(&one).unwrap(),
        std::fs::read_to_string(dir.join("kl.table")).unwrap()
    );

    // Quantize (8 and 7 bits) and load the result with our runtime.
    let q = |table: &str, bits: &str, stem: &str, extra: &[&str]| {
        let (qp, qb) = (
            dir.join(format!("{stem}.param")),
            dir.join(format!("{stem}.bin")),
        );
        let mut a = vec!["quantize".to_string()];
        a.extend(model_flags.iter().cloned());
        a.extend(
            [
                "--table",
                &s(&dir.join(table)),
                "--bits",
                bits,
                "--out-param",
                &s(&qp),
                "--out-bin",
                &s(&qb),
            ]
            .map(String::from),
        );
        a.extend(extra.iter().map(|e| e.to_string()));
        let text = eq_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
        (qp, qb, text)
    };
    // The ncnn comparison uses max tables: KL over the 120 values of the 10-element fc input
    // clips far too much to compare outputs (that is KL, not the writer).
    let (p8, b8, text) = q("max.table", "8", "tiny_int8", &[]);
    assert!(text.contains("6 of 6 layers quantized"), "{text}");
    let param_text = std::fs::read_to_string(&p8).unwrap();
    // c0 feeds a Split read by two int8 convs; dw feeds c3 directly.
    for (layer, term) in [
        ("c0", "8=102"),
        ("c1", "8=2"),
        ("dw", "8=101"),
        ("c3", "8=2"),
    ] {
        let line = param_text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(layer))
            .unwrap();
        assert!(line.split_whitespace().any(|t| t == term), "{line}");
    }
    assert!(!param_text.contains("27=7"));
    Net::load(&p8, &b8, &Options::default()).unwrap();
    let (p7, b7, _) = q("max7.table", "7", "tiny_int7", &[]);
    let text7 = std::fs::read_to_string(&p7).unwrap();
    assert_eq!(text7.matches(" 27=7").count(), 6, "{text7}");
    Net::load(&p7, &b7, &Options::default()).unwrap();
    let (pk, bk, text) = q("kl.table", "8", "tiny_keep", &["--keep-fp32", "c1,fc"]);
    assert!(text.contains("c1: stays fp32 (--keep-fp32)"), "{text}");
    let keep_text = std::fs::read_to_string(&pk).unwrap();
    assert!(keep_text.contains("8=2 ") || keep_text.contains("8=2\n"));
    Net::load(&pk, &bk, &Options::default()).unwrap();

    // Stock ncnn runs the int8 files; its logits stay close to our fp32 ones.
    let inputs: Vec<PathBuf> = images
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let path = dir.join(format!("in{i}.npy"));
            eq_tools::npy::write(&path, &[3, SIZE, SIZE], &prep().load(p).unwrap()).unwrap();
            path
        })
        .collect();
    let ours: Vec<Vec<f32>> = images
        .iter()
        .map(|p| {
            net.set_input("data", &prep().load(p).unwrap()).unwrap();
            net.run().unwrap();
            net.blob("fc").unwrap().data.to_vec()
        })
        .collect();
    let Some(fp32_ncnn) = ncnn_outputs(&param, &bin, "fc", &inputs, &dir) else {
        return;
    };
    for (a, b) in ours.iter().zip(&fp32_ncnn) {
        assert!(cosine(a, b) > 0.99999, "fp32 ncnn vs ours");
    }
    for (qp, qb, min_cos) in [(&p8, &b8, 0.99), (&p7, &b7, 0.97), (&pk, &bk, 0.99)] {
        let int8 = ncnn_outputs(qp, qb, "fc", &inputs, &dir).unwrap();
        for (i, (a, b)) in ours.iter().zip(&int8).enumerate() {
            let c = cosine(a, b);
            assert!(c > min_cos, "{}: image {i}: cosine {c}", qp.display());
        }
        // Quantized is not the same as fp32 (the int8 path really ran).
        assert!(ours.iter().zip(&int8).any(|(a, b)| a != b));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn image_errors_and_table_errors() {
    let dir = temp_dir("errors");
    let (param, bin) = write_model(&dir);
    let imgs = dir.join("images");
    write_images(&imgs, 3);
    std::fs::write(imgs.join("broken.png"), b"not a png").unwrap();
    let table = dir.join("t.table");
    let base = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["calibrate", "--param", &s(&param), "--bin", &s(&bin)]
            .map(String::from)
            .to_vec();
        a.extend(PREP_FLAGS.map(String::from));
        a.extend(["--images", &s(&imgs), "--out", &s(&table)].map(String::from));
        a.extend(extra.iter().map(|e| e.to_string()));
        a
    };
    let args = base(&["--method", "max"]);
    let text = eq_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        text.contains("warning: skipping") && text.contains("broken.png"),
        "{text}"
    );
    assert!(text.contains("calibrating on 3 of 4 images"), "{text}");
    let args = base(&["--strict"]);
    eq_fails(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &["broken.png"],
    );
    let mut args = base(&[]);
    args[6] = "8,8".into(); // --size
    eq_fails(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &["w=16 h=16", "--size"],
    );
    // 6-bit tables are refused up front (a usage error): nothing downstream could use them.
    let args = base(&["--bits", "6"]);
    let out = eq(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("'6' for '--bits"), "{err}");

    // Quantize: a table naming an unknown layer, a NaN scale.
    let q = |t: &str| {
        let tp = dir.join("bad.table");
        std::fs::write(&tp, t).unwrap();
        [
            "quantize",
            "--param",
            &s(&param),
            "--bin",
            &s(&bin),
            "--table",
            &s(&tp),
            "--out-param",
            &s(&dir.join("q.param")),
            "--out-bin",
            &s(&dir.join("q.bin")),
        ]
        .map(String::from)
    };
    let good = std::fs::read_to_string(&table).unwrap();
    let a = q(&format!("{good}conv9 1.0\n"));
    eq_fails(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &["`conv9`: no layer"],
    );
    let a = q(&good.replace(
        &format!(
            "c1 {} ",
            ScaleTable::parse(&good).unwrap().activation("c1").unwrap()
        ),
        "c1 NaN ",
    ));
    eq_fails(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &["`c1`", "NaN"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn eval_and_eval_lfw_on_the_tiny_model() {
    let dir = temp_dir("eval");
    let (param, bin) = write_model(&dir);
    let images = write_images(&dir.join("images"), 10);
    // Labels: the fp32 argmax for even images, something else for odd ones.
    let mut net = fp32_net(&param, &bin);
    let mut outs = Vec::new();
    for p in &images {
        net.set_input("data", &prep().load(p).unwrap()).unwrap();
        net.run().unwrap();
        outs.push(net.blob("prob").unwrap().data.to_vec());
    }
    let mut labels = String::new();
    let mut top5 = 0;
    for (i, (p, o)) in images.iter().zip(&outs).enumerate() {
        let best = eq_tools::eval::argmax(o);
        let label = if i % 2 == 0 { best } else { (best + 1) % 7 };
        top5 += eq_tools::eval::in_top_k(o, label, 5) as usize;
        labels.push_str(&format!(
            "{} {label}\n",
            p.file_name().unwrap().to_string_lossy()
        ));
    }
    let labels_path = dir.join("labels.txt");
    std::fs::write(&labels_path, &labels).unwrap();
    let json = dir.join("r.json");
    let mut a: Vec<String> = [
        "eval",
        "--param",
        &s(&param),
        "--bin",
        &s(&bin),
        "--images",
        &s(&dir.join("images")),
        "--labels",
        &s(&labels_path),
        "--json",
        &s(&json),
        "--precision",
        "fp32",
    ]
    .map(String::from)
    .to_vec();
    a.extend(PREP_FLAGS.map(String::from));
    eq_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["top1"], 0.5, "{r}");
    assert_eq!(r["top5"], top5 as f64 / 10.0, "{r}");
    assert_eq!(r["n"], 10, "{r}");
    assert_eq!(r["precision"], "fp32", "{r}");
    // Even images are labelled with the fp32 argmax, odd ones not.
    assert_eq!(r["top1_per_image"], "1010101010", "{r}");

    // A missing label is an error naming the image.
    std::fs::write(
        &labels_path,
        labels.lines().skip(1).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    eq_fails(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &["no label", "img00.png"],
    );

    // LFW-style pairs over the same images, embeddings = the 7 fc logits.
    let names: Vec<String> = images
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut pairs = String::new();
    let mut scored = Vec::new();
    for i in 0..names.len() {
        for j in i + 1..names.len() {
            let same = (i + j) % 3 == 0;
            pairs.push_str(&format!(
                "{},{},{}\n",
                names[i],
                names[j],
                if same { 1 } else { -1 }
            ));
            net.set_input("data", &prep().load(&images[i]).unwrap())
                .unwrap();
            net.run().unwrap();
            let a = eq_tools::eval::l2_normalized(net.blob("fc").unwrap().data);
            net.set_input("data", &prep().load(&images[j]).unwrap())
                .unwrap();
            net.run().unwrap();
            let b = eq_tools::eval::l2_normalized(net.blob("fc").unwrap().data);
            scored.push((eq_tools::eval::dot(&a, &b), same));
        }
    }
    let pairs_path = dir.join("pairs.txt");
    std::fs::write(&pairs_path, pairs).unwrap();
    let json = dir.join("lfw.json");
    let mut a: Vec<String> = [
        "eval-lfw",
        "--param",
        &s(&param),
        "--bin",
        &s(&bin),
        "--pairs",
        &s(&pairs_path),
        "--root",
        &s(&dir.join("images")),
        "--output",
        "fc",
        "--json",
        &s(&json),
    ]
    .map(String::from)
    .to_vec();
    a.extend(PREP_FLAGS.map(String::from));
    eq_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let (acc, _) = eq_tools::eval::ten_fold_accuracy(&scored);
    let (best, _) = eq_tools::eval::best_threshold_accuracy(&scored);
    assert_eq!(r["accuracy"], acc, "{r}");
    assert_eq!(r["best_threshold_accuracy"], best, "{r}");
    assert_eq!(r["pairs"], 45, "{r}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------
// Real models (shared folder)

fn shared(rel: &str) -> PathBuf {
    let base = match std::env::var_os("EQ_SHARED") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    base.join("data").join(rel)
}

fn require(test: &str, paths: &[&Path]) -> bool {
    let missing: Vec<String> = paths
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: missing {}", missing.join(", "));
    assert!(!ci(), "{msg}");
    println!("SKIPPED {msg}");
    false
}

/// SqueezeNet: KL calibration on 8 images, int8 model, stock ncnn agrees with our fp32 on
/// the top-1 class of most of 16 evaluation images; `eq eval` runs on the same images.
#[test]
fn real_model_squeezenet_smoke() {
    let param = shared("models/squeezenet_v1.1/squeezenet_v1.1.param");
    let bin = shared("models/squeezenet_v1.1/squeezenet_v1.1.fp32.bin");
    let calib = shared("images/imagenet_sample1000_s256/images");
    let val = shared("images/imagenet_val1300/images");
    let labels = shared("images/imagenet_val1300/labels.txt");
    if !require("squeezenet smoke", &[&param, &bin, &calib, &val, &labels]) {
        return;
    }
    let dir = temp_dir("squeezenet");
    let table = dir.join("sq.table");
    eq_ok(&[
        "calibrate",
        "--param",
        &s(&param),
        "--bin",
        &s(&bin),
        "--images",
        &s(&calib),
        "--count",
        "8",
        "--preset",
        "squeezenet",
        "--method",
        "kl",
        "--out",
        &s(&table),
    ]);
    let t = ScaleTable::read(&table).unwrap();
    assert_eq!(t.activations.len(), 26);
    let (qp, qb) = (dir.join("sq8.param"), dir.join("sq8.bin"));
    eq_ok(&[
        "quantize",
        "--param",
        &s(&param),
        "--bin",
        &s(&bin),
        "--table",
        &s(&table),
        "--out-param",
        &s(&qp),
        "--out-bin",
        &s(&qb),
    ]);
    // ncnn2int8 writes the same layout: the benchmark squeezenet_int8 is 1,263,344 bytes.
    assert_eq!(std::fs::metadata(&qb).unwrap().len(), 1_263_344);

    let json = dir.join("eval.json");
    eq_ok(&[
        "eval",
        "--param",
        &s(&param),
        "--bin",
        &s(&bin),
        "--images",
        &s(&val),
        "--count",
        "16",
        "--labels",
        &s(&labels),
        "--preset",
        "squeezenet",
        "--json",
        &s(&json),
    ]);
    let r = std::fs::read_to_string(&json).unwrap();
    assert!(r.contains("\"n\": 16"), "{r}");

    let paths = eq_tools::dataset::collect_images(
        &eq_tools::dataset::ImageSource::Dir(val.clone()),
        Some(16),
    )
    .unwrap();
    let mut net = fp32_net(&param, &bin);
    let mut inputs = Vec::new();
    let mut ours = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let x = Preprocess::squeezenet().load(p).unwrap();
        let path = dir.join(format!("in{i}.npy"));
        eq_tools::npy::write(&path, &[3, 227, 227], &x).unwrap();
        inputs.push(path);
        net.set_input("data", &x).unwrap();
        net.run().unwrap();
        ours.push(eq_tools::eval::argmax(net.blob("prob").unwrap().data));
    }
    let Some(int8) = ncnn_outputs(&qp, &qb, "prob", &inputs, &dir) else {
        return;
    };
    let agree = ours
        .iter()
        .zip(&int8)
        .filter(|(a, b)| **a == eq_tools::eval::argmax(b))
        .count();
    assert!(agree >= 13, "int8 top-1 agrees with fp32 on {agree}/16");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn finetune_improves_or_keeps_each_layer_and_is_deterministic() {
    let dir = temp_dir("finetune");
    let (param, bin) = write_model(&dir);
    write_images(&dir.join("images"), 8);
    let common = || {
        let mut a: Vec<String> = [
            "--param",
            &s(&param),
            "--bin",
            &s(&bin),
            "--images",
            &s(&dir.join("images")),
        ]
        .map(String::from)
        .to_vec();
        a.extend(PREP_FLAGS.map(String::from));
        a
    };
    let finetune = |table: &Path, out: &Path, extra: &[&str]| {
        let mut f = vec!["finetune".to_string()];
        f.extend(common());
        f.extend(
            [
                "--table",
                &s(table),
                "--out",
                &s(out),
                "--steps",
                "20",
                "--samples",
                "6",
            ]
            .map(String::from),
        );
        f.extend(extra.iter().map(|e| e.to_string()));
        f
    };
    let run = |table: &Path, out: &Path, extra: &[&str]| {
        let mut c = vec!["calibrate".to_string()];
        c.extend(common());
        c.extend(["--method", "kl", "--out", &s(table)].map(String::from));
        eq_ok(&c.iter().map(String::as_str).collect::<Vec<_>>());
        let f = finetune(table, out, extra);
        eq_ok(&f.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (t0, t1) = (dir.join("kl.table"), dir.join("eq.table"));
    let text = run(&t0, &t1, &[]);
    let mut n = 0;
    let mut shared = Vec::new();
    for line in text.lines().filter(|l| l.contains(": weights ")) {
        let v: Vec<f64> = line
            .split_whitespace()
            .filter_map(|t| t.trim_end_matches(',').parse().ok())
            .collect();
        assert_eq!(v.len(), 4, "{line}");
        // Each search keeps the initial scale among its candidates: no layer gets worse on
        // the data it was tuned on. c1 and c2 read one blob and share the activation scale
        // chosen on both: their mean cannot get worse (one of them alone may).
        assert!(v[1] >= v[0], "{line}");
        if line.starts_with("c1:") || line.starts_with("c2:") {
            shared.push((v[2], v[3]));
        } else {
            assert!(v[3] >= v[2], "{line}");
        }
        n += 1;
    }
    assert_eq!(n, 6, "{text}");
    assert_eq!(shared.len(), 2);
    let (before, after) = (shared[0].0 + shared[1].0, shared[0].1 + shared[1].1);
    assert!(after >= before - 1e-9, "{shared:?}");
    let (a, b) = (
        ScaleTable::read(&t0).unwrap(),
        ScaleTable::read(&t1).unwrap(),
    );
    let names = |t: &ScaleTable| {
        t.activations
            .iter()
            .map(|x| x.0.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b));
    assert_ne!(a, b, "some scale moved");
    // c1 and c2 read the same Split: one shared activation scale.
    assert_eq!(b.activation("c1"), b.activation("c2"));
    // Every tuned scale lies in [0.5, 2] x the initial one.
    for ((_, wa), (_, wb)) in a.weights.iter().zip(&b.weights) {
        for (x, y) in wa.iter().zip(wb) {
            assert!(*y >= 0.5 * x * 0.999 && *y <= 2.0 * x * 1.001, "{x} -> {y}");
        }
    }
    let t2 = dir.join("eq2.table");
    run(&t0, &t2, &[]);
    assert_eq!(
        std::fs::read_to_string(&t1).unwrap(),
        std::fs::read_to_string(&t2).unwrap()
    );

    // ncnn's variant: every scale on its grid 0.5 + 1.5 k / steps (k < steps = 20), or the
    // initial one.
    let t3 = dir.join("ncnn.table");
    run(&t0, &t3, &["--variant", "ncnn"]);
    let c = ScaleTable::read(&t3).unwrap();
    assert_ne!(a, c, "some scale moved");
    assert_eq!(c.activation("c1"), c.activation("c2"));
    let on_grid = |x: f32, y: f32| {
        let k = (y / x - 0.5) / 0.075;
        y == x || ((k - k.round()).abs() < 1e-3 && (-1e-3..19.5).contains(&k))
    };
    for ((_, wa), (_, wc)) in a.weights.iter().zip(&c.weights) {
        for (x, y) in wa.iter().zip(wc) {
            assert!(on_grid(*x, *y), "{x} -> {y}");
        }
    }
    for ((_, x), (_, y)) in a.activations.iter().zip(&c.activations) {
        assert!(on_grid(*x, *y), "{x} -> {y}");
    }

    // A table naming a layer the model lacks is refused; a layer without lines stays fp32
    // and is named.
    let (bad, out) = (dir.join("bad.table"), dir.join("out.table"));
    std::fs::write(&bad, format!("{}conv9 1.0\n", a.to_text())).unwrap();
    let f = finetune(&bad, &out, &[]);
    eq_fails(
        &f.iter().map(String::as_str).collect::<Vec<_>>(),
        &["`conv9`: no layer"],
    );
    let mut partial = a.clone();
    partial.weights.retain(|(n, _)| n != "c2");
    partial.activations.retain(|(n, _)| n != "c2");
    partial.write(&bad).unwrap();
    let f = finetune(&bad, &out, &[]);
    let text = eq_ok(&f.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        text.contains("stay fp32") && text.contains(": c2"),
        "{text}"
    );
    let tuned = ScaleTable::read(&out).unwrap();
    assert!(tuned.activation("c2").is_none() && tuned.activation("c1").is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `eq easyquant` on the tiny model: every file written, summary.json as documented, the
/// model runs INT7, an earlier result is replaced only on success, a failure leaves nothing.
#[test]
fn easyquant_writes_everything_or_nothing() {
    let dir = temp_dir("easyquant");
    let (param, bin) = write_model(&dir);
    let imgs = dir.join("images");
    let images = write_images(&imgs, 20);
    // Labels: the fp32 argmax of every image, so FP32 top-1 is 100 %.
    let mut net = fp32_net(&param, &bin);
    let mut labels = String::new();
    for p in &images {
        net.set_input("data", &prep().load(p).unwrap()).unwrap();
        net.run().unwrap();
        let best = eq_tools::eval::argmax(net.blob("prob").unwrap().data);
        labels.push_str(&format!(
            "{} {best}\n",
            p.file_name().unwrap().to_string_lossy()
        ));
    }
    let labels_path = dir.join("labels.txt");
    std::fs::write(&labels_path, labels).unwrap();
    let out = dir.join("eq");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("old.txt"), "an earlier run").unwrap();
    let args = |out: &Path, labels: &Path| -> Vec<String> {
        let mut a: Vec<String> = ["easyquant", "--param", &s(&param), "--bin", &s(&bin)]
            .map(String::from)
            .to_vec();
        a.extend(PREP_FLAGS.map(String::from));
        a.extend(
            [
                "--images",
                &s(&imgs),
                "--bits",
                "7",
                "--samples",
                "8",
                "--threads",
                "1",
                "--mixed",
                "off",
                "--val",
                &s(&imgs),
                "--labels",
                &s(labels),
                "--out",
                &s(out),
            ]
            .map(String::from),
        );
        a
    };
    let a = args(&out, &labels_path);
    let text = eq_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(text.contains("tiny: 7 bits"), "{text}");
    for f in [
        "model.param",
        "model.bin",
        "model.table",
        "report.md",
        "cosine.svg",
        "summary.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(
        !out.join("old.txt").exists(),
        "the earlier result is replaced"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(v["model"], "tiny");
    assert_eq!(v["bits"], 7);
    assert_eq!(v["int7_mac_fraction"], 1.0);
    assert_eq!(v["finetune_images"], 8);
    assert_eq!(v["compared_held_out"], true);
    assert_eq!(v["fp32"]["top1"], 100.0);
    let q1 = v["quantized"]["top1"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&q1), "{q1}");
    let layers = v["layers"].as_array().unwrap();
    let layer = |name: &str| layers.iter().find(|l| l["name"] == name).unwrap();
    for name in ["c0", "c1", "c2", "dw", "c3", "fc"] {
        let l = layer(name);
        assert_eq!(l["precision"], "INT7", "{l}");
        assert!(l["cosine"].as_f64().unwrap() > 0.9, "{l}");
    }
    assert_eq!(layer("c0")["type"], "Convolution");
    assert_eq!(layer("c0")["macs"], (SIZE * SIZE * 8 * 27) as u64);
    assert_eq!(layer("dw")["macs"], (SIZE * SIZE * 12 * 9) as u64);
    assert_eq!(layer("fc")["macs"], (10 * 7) as u64);
    assert_eq!(layer("gap")["precision"], "FP32");
    // RK3399 estimates: the kernel model's line for each modeled layer at its precision,
    // none for the rest; the whole-model sums.
    use eq_tools::cost_model::{CostModel, CostTarget, LayerClass, LayerCost};
    let costs = CostModel::rk3399().unwrap();
    let int7 = Some(eq_runtime::quant::Precision::Int7);
    let c0 = LayerCost {
        class: LayerClass::Conv3x3s1,
        macs: (SIZE * SIZE * 8 * 27) as u64,
        inputs: (SIZE * SIZE * 3) as u64,
        outputs: (SIZE * SIZE * 8) as u64,
    };
    for (t, key) in [(CostTarget::A72, "a72_ms"), (CostTarget::A53, "a53_ms")] {
        let want = costs.ms(t, c0, int7).unwrap();
        let got = layer("c0")[key].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-9 * want, "{key}: {got} vs {want}");
        assert!(layer("gap")[key].is_null(), "{key}");
        let sum: f64 = layers.iter().filter_map(|l| l[key].as_f64()).sum();
        let total = v[key].as_f64().unwrap();
        assert!((total - sum).abs() <= 1e-9 * sum && total > 0.0, "{key}");
    }
    assert!(v["a72_fp32_ms"].as_f64().unwrap() > 0.0);
    assert!(v["a53_fp32_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(v["cost"], "a72", "the default --cost");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("| c2 | Convolution | INT7 |"), "{report}");
    assert!(report.contains("A72 ms (est.) | A53 ms (est.)"), "{report}");
    assert!(report.contains("RK3399 estimate"), "{report}");
    // The written model loads and runs in INT7.
    let mut q = Net::load(
        out.join("model.param"),
        out.join("model.bin"),
        &Options::default(),
    )
    .unwrap();
    q.set_input("data", &prep().load(&images[0]).unwrap())
        .unwrap();
    q.run().unwrap();
    assert_eq!(q.blob("prob").unwrap().data.len(), 7);

    // A failure (unreadable labels, found after calibration and finetune) keeps the earlier
    // result and leaves no temporary folder.
    let a = args(&out, &dir.join("missing-labels.txt"));
    eq_fails(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &["missing-labels.txt"],
    );
    assert!(out.join("summary.json").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".eq."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Mixed precision on the output cosine (`--score cosine`): an unreachable budget ends
    // with everything promoted to FP32; a budget any model meets keeps everything INT7; one
    // in between lands above its budget and says why each layer got its precision.
    let mixed_cost = |budget: Option<&str>, cost: Option<&str>, out: &Path| -> serde_json::Value {
        let mut a: Vec<String> = args(out, &labels_path)
            .into_iter()
            .filter(|x| x != "--mixed" && x != "off")
            .collect();
        if let Some(b) = budget {
            a.push(format!("--budget={b}"));
        }
        a.push("--score=cosine".into());
        if let Some(c) = cost {
            a.extend(["--cost".to_string(), c.to_string()]);
        }
        eq_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
    };
    let mixed = |budget: Option<&str>, out: &Path| mixed_cost(budget, None, out);
    const QUANTIZABLE: [&str; 6] = ["c0", "c1", "c2", "dw", "c3", "fc"];
    let precisions = |v: &serde_json::Value| -> Vec<String> {
        QUANTIZABLE
            .iter()
            .map(|n| {
                let l = v["layers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|l| l["name"] == *n);
                l.unwrap()["precision"].as_str().unwrap().to_string()
            })
            .collect()
    };
    let v = mixed(Some("1.0"), &dir.join("m-fp32"));
    assert!(precisions(&v).iter().all(|p| p == "FP32"), "{v}");
    assert_eq!(v["int7_mac_fraction"], 0.0);
    let v = mixed(Some("-0.5"), &dir.join("m-int7"));
    assert!(precisions(&v).iter().all(|p| p == "INT7"), "{v}");
    assert!(
        v["layers"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("met the budget"),
        "{v}"
    );
    let v = mixed(Some("0.99999"), &dir.join("m-some"));
    let m = &v["mixed"];
    assert_eq!(m["score"], "output cosine", "{m}");
    assert!(m["cosine"].as_f64().unwrap() >= 0.99999, "{m}");
    assert!(m["base_cosine"].as_f64().unwrap() < 0.99999, "{m}");
    let p = precisions(&v);
    assert!(p.iter().any(|p| p != "INT7"), "{p:?}");
    // c1 and c2 read one blob: one precision.
    assert_eq!(p[1], p[2], "{p:?}");
    for l in v["layers"].as_array().unwrap() {
        let name = l["name"].as_str().unwrap();
        if l["precision"] != "INT7" && QUANTIZABLE.contains(&name) {
            assert!(l["reason"].as_str().unwrap().contains("promoted to"), "{l}");
        }
    }

    // Every --cost runs the search to its budget and says which latency it minimised.
    for cost in ["host", "a72", "a53"] {
        let v = mixed_cost(Some("0.99999"), Some(cost), &dir.join(format!("m-{cost}")));
        assert_eq!(v["cost"], cost);
        assert!(v["mixed"]["cosine"].as_f64().unwrap() >= 0.99999, "{v}");
        let report = std::fs::read_to_string(dir.join(format!("m-{cost}/report.md"))).unwrap();
        assert!(report.contains("search minimised the"), "{report}");
    }
    // The default score of a classifier is the top-1 kept (INT7 changes no answer of this
    // tiny model: nothing is promoted), with its default budget.
    let a: Vec<String> = args(&dir.join("m-auto"), &labels_path)
        .into_iter()
        .filter(|x| x != "--mixed" && x != "off")
        .collect();
    eq_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("m-auto/summary.json")).unwrap())
            .unwrap();
    assert_eq!(v["mixed"]["budget"], 0.999, "{v}");
    assert_eq!(v["mixed"]["score"], "expected top-1 kept", "{v}");
    assert!(
        v["layers"][0]["reason"].as_str().unwrap().contains("top-1"),
        "{v}"
    );

    // An unknown core is a usage error that lists the choices.
    let o = eq(&["easyquant", "--cost", "a57", "--out", &s(&dir.join("x"))]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("a57") && err.contains("host, a72, a53"),
        "{err}"
    );

    // Without a model: the demo network on generated images.
    let demo = dir.join("demo");
    let text = eq_ok(&["easyquant", "--out", &s(&demo), "--threads", "1"]);
    assert!(text.contains("demo: 7 bits"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(demo.join("summary.json")).unwrap()).unwrap();
    assert_eq!(v["finetune_images"], 50);
    assert!(v.get("fp32").is_none(), "no validation data, no accuracy");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `eq eval-det` on yolo-fastest: the FP32 model scored against its own detections is
/// perfect; with a COCO file, an image without annotation is a one-line error.
#[test]
fn eval_det_pseudo_labels_on_yolo_fastest() {
    let param = shared("models/yolo-fastest-1.1/yolo-fastest-1.1.param");
    let bin = shared("models/yolo-fastest-1.1/yolo-fastest-1.1.bin");
    let val = shared("images/imagenet_val1300/images");
    if !require(
        "eval_det_pseudo_labels_on_yolo_fastest",
        &[&param, &bin, &val],
    ) {
        return;
    }
    let dir = temp_dir("evaldet");
    let json = dir.join("r.json");
    let model = [s(&param), s(&bin)];
    let common: Vec<String> = [
        "--param",
        &model[0],
        "--bin",
        &model[1],
        "--images",
        &s(&val),
        "--count",
        "12",
        "--size",
        "320,320",
        "--mean",
        "0,0,0",
        "--norm",
        "0.003921569,0.003921569,0.003921569",
        "--rgb",
    ]
    .map(String::from)
    .to_vec();
    let mut a = vec!["eval-det".to_string()];
    a.extend(common.clone());
    let pseudo = format!("{},{}", model[0], model[1]);
    a.extend(
        [
            "--pseudo",
            &pseudo,
            "--pseudo-threshold",
            "0.3",
            "--json",
            &s(&json),
        ]
        .map(String::from),
    );
    let text = eq_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        text.contains("mAP@0.5 100.00 % (11-point), 100.00 % (all-point)"),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["images"], 12);
    assert!(
        v["truths"].as_u64().unwrap() >= 5,
        "too few pseudo-labels to mean anything: {v}"
    );
    assert!(v["detections"].as_u64().unwrap() >= v["truths"].as_u64().unwrap());

    let coco = dir.join("empty.json");
    std::fs::write(
        &coco,
        r#"{"images": [], "annotations": [], "categories": []}"#,
    )
    .unwrap();
    let mut a = vec!["eval-det".to_string()];
    a.extend(common.iter().cloned());
    a.extend(["--coco".to_string(), s(&coco)]);
    eq_fails(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &["no annotation for image"],
    );
    let mut a = vec!["eval-det".to_string()];
    a.extend(common);
    a.extend(["--conf-threshold".to_string(), "1.5".to_string()]);
    // A usage error: clap's exit code 2 and message.
    let out = eq(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("expected a score in [0, 1] or `model`"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
