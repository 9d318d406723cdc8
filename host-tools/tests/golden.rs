//! Golden accuracy tests: run the real models in shared/data/models on the shared evaluation
//! images and compare with the FP32 reference outputs in shared/data/reference.
//!
//! The shared folder is `$EQ_SHARED`, or `<workspace>/../shared`. A missing file fails the
//! test in CI (`CI=true`) and skips it with a note otherwise.
//!
//! Images are split across `$EQ_GOLDEN_WORKERS` threads (default 2), each with its own `Net`
//! of `$EQ_GOLDEN_THREADS` pool threads (default 2). `$EQ_GOLDEN_LIMIT=N` runs only the
//! first N images (first N pairs for LFW) for a quick look; the thresholds then apply to that
//! subset, with the reference accuracy recomputed on it.

mod common;

use common::{require, shared_dir};
use eq_runtime::Shape;
use eq_tools::dataset::{ColorOrder, Preprocess, Resize};
use eq_tools::eval::{argmax, best_threshold_accuracy, dot, l2_normalized, parse_pairs};
use eq_tools::runner::{map_images, NetSpec, RunOptions};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

// ---------------------------------------------------------------------------------------
// Locations and configuration

fn data(rel: &str) -> PathBuf {
    shared_dir().join("data").join(rel)
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// `$EQ_GOLDEN_LIMIT`: how many images (or pairs) to run, all when unset.
fn limit() -> usize {
    env_count("EQ_GOLDEN_LIMIT", usize::MAX)
}

fn workers() -> usize {
    env_count("EQ_GOLDEN_WORKERS", 2)
}

/// One model to run: files, blob names and load options.
struct Model {
    param: PathBuf,
    bin: PathBuf,
    input: &'static str,
    output: &'static str,
    /// Input shape for models whose Input layer declares none.
    input_shape: Option<Shape>,
}

/// Runs `model` on every image (preprocessed by `prep`) and returns `f(output)` per image, in
/// order, through the tools' image runner (contiguous chunks, one Net per worker).
fn run_all<T: Send>(
    model: &Model,
    prep: &Preprocess,
    images: &[PathBuf],
    workers: usize,
    f: &(dyn Fn(&[f32]) -> T + Sync),
) -> Vec<T> {
    let spec = NetSpec {
        param: model.param.clone(),
        bin: model.bin.clone(),
        input: model.input.to_string(),
        input_shape: model.input_shape,
        keep_all_blobs: false,
        precision: Default::default(),
        threads: env_count("EQ_GOLDEN_THREADS", 2),
    };
    let run = RunOptions {
        workers,
        strict: true,
        progress: None,
    };
    map_images(&spec, prep, images, &run, &|net| {
        Ok(f(net.blob(model.output)?.data))
    })
    .unwrap_or_else(|e| panic!("{e:#}"))
    .into_iter()
    .map(|r| r.expect("strict runs skip nothing"))
    .collect()
}

// ---------------------------------------------------------------------------------------
// Reference files

/// One row of a `*_val1300_top5.txt` reference: `file label c:score c:score ...`.
#[derive(Debug, PartialEq)]
struct RefRow {
    file: String,
    label: usize,
    top: Vec<(usize, f32)>,
}

#[derive(Debug)]
struct ClassReference {
    /// `#` lines without the `#`, in order.
    header: Vec<String>,
    rows: Vec<RefRow>,
}

impl ClassReference {
    fn parse(text: &str) -> Result<ClassReference, String> {
        let mut header = Vec::new();
        let mut rows = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(h) = line.strip_prefix('#') {
                header.push(h.trim().to_string());
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let bad = |what: &str| format!("reference line {}: {what}: `{line}`", n + 1);
            let mut fields = line.split_whitespace();
            let file = fields.next().ok_or_else(|| bad("no file"))?.to_string();
            let label = fields
                .next()
                .and_then(|l| l.parse().ok())
                .ok_or_else(|| bad("bad label"))?;
            let top = fields
                .map(|f| {
                    let (c, s) = f.split_once(':')?;
                    Some((c.parse().ok()?, s.parse().ok()?))
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("bad class:score"))?;
            if top.is_empty() {
                return Err(bad("no classes"));
            }
            rows.push(RefRow { file, label, top });
        }
        Ok(ClassReference { header, rows })
    }

    fn top1_accuracy(&self) -> f64 {
        let correct = self.rows.iter().filter(|r| r.top[0].0 == r.label).count();
        correct as f64 / self.rows.len() as f64
    }

    /// The `key=value` number from the header (e.g. `top1`).
    fn header_value(&self, key: &str) -> Option<f64> {
        self.header
            .iter()
            .flat_map(|h| h.split_whitespace())
            .find_map(|t| t.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    }
}

/// Numbers inside the first `(...)` after `key` in `text`, e.g. `mean=(0.4,0.5,0.6)`.
fn triple_after(text: &str, key: &str) -> Option<[f32; 3]> {
    let rest = &text[text.find(key)? + key.len()..];
    let inner = &rest[rest.find('(')? + 1..];
    let inner = &inner[..inner.find(')')?];
    let v: Vec<f32> = inner
        .split(',')
        .map(|x| x.trim().parse().ok())
        .collect::<Option<_>>()?;
    v.try_into().ok()
}

/// The last `WxH` token in `text` (the final input size, after any `227->` resize note).
fn last_size(text: &str) -> Option<(u32, u32)> {
    text.split(|c: char| !(c.is_ascii_alphanumeric()))
        .filter_map(|t| {
            let (w, h) = t.split_once('x')?;
            Some((w.parse().ok()?, h.parse().ok()?))
        })
        .next_back()
}

/// The `in->out` blob names (identifiers starting with a letter) in `text`.
fn blob_names(text: &str) -> Option<(String, String)> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '(' || c == ')')
        .find_map(|t| {
            let (a, b) = t.split_once("->")?;
            let ident = |s: &str| {
                s.starts_with(|c: char| c.is_ascii_alphabetic())
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            };
            (ident(a) && ident(b)).then(|| (a.to_string(), b.to_string()))
        })
}

/// The preprocessing a reference header describes: size, colour order, and either
/// `minus (m0,m1,m2)` (raw pixels minus a mean) or `(x/255-mean)/std` with `mean=(..)`,
/// `std=(..)`; with neither, raw pixels. The reference images are resized without keeping
/// the aspect ratio.
fn preprocess_from_header(h: &str) -> Result<Preprocess, String> {
    let size = last_size(h).ok_or("no WxH size in the header")?;
    let order = if h.contains("BGR") {
        ColorOrder::Bgr
    } else if h.contains("RGB") {
        ColorOrder::Rgb
    } else {
        return Err("no BGR / RGB in the header".into());
    };
    if h.contains("crop") {
        return Err("cropping headers are not supported".into());
    }
    let (mean, norm) = if let Some(m) = triple_after(h, "minus") {
        (m, [1.0; 3])
    } else if h.contains("x/255") {
        let m = triple_after(h, "mean=").ok_or("no mean=(..)")?;
        let s = triple_after(h, "std=").ok_or("no std=(..)")?;
        (m.map(|m| 255.0 * m), s.map(|s| 1.0 / (255.0 * s)))
    } else {
        ([0.0; 3], [1.0; 3])
    };
    Ok(Preprocess {
        size,
        mean,
        norm,
        order,
        resize: Resize::Stretch,
    })
}

/// The cosine reference: `img1 img2 label cosine` per line after `#` comments.
fn parse_cosines(text: &str) -> Result<Vec<(String, String, bool, f32)>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let bad = || format!("bad cosine line `{l}`");
            match f[..] {
                [a, b, label, cos] => Ok((
                    a.to_string(),
                    b.to_string(),
                    label == "1",
                    cos.parse().map_err(|_| bad())?,
                )),
                _ => Err(bad()),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The golden tests

/// Top-1 agreement with a classification reference and accuracy against the labels.
fn check_classifier(test: &str, model: Model, reference: &str, preset: Preprocess) {
    let reference = data(reference);
    let images_dir = data("images/imagenet_val1300/images");
    let labels = data("images/imagenet_val1300/labels.txt");
    if !require(
        test,
        &[&model.param, &model.bin, &reference, &images_dir, &labels],
    ) {
        return;
    }
    let mut r = ClassReference::parse(&std::fs::read_to_string(&reference).unwrap()).unwrap();
    let prep = preprocess_from_header(&r.header[0]).unwrap();
    assert_eq!(
        prep, preset,
        "{test}: the reference header describes other preprocessing"
    );
    assert_eq!(
        blob_names(&r.header[0]),
        Some((model.input.to_string(), model.output.to_string()))
    );

    // The labels file is the ground truth; the reference must agree with it.
    let truth: BTreeMap<String, usize> = std::fs::read_to_string(&labels)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (f, c) = l.split_once(char::is_whitespace)?;
            Some((f.to_string(), c.trim().parse().ok()?))
        })
        .collect();
    assert_eq!(r.rows.len(), 1300, "{test}: reference rows");
    for row in &r.rows {
        assert_eq!(
            truth.get(&row.file),
            Some(&row.label),
            "{test}: label of {}",
            row.file
        );
    }
    r.rows.truncate(limit());

    let images: Vec<PathBuf> = r
        .rows
        .iter()
        .map(|row| images_dir.join(&row.file))
        .collect();
    let start = Instant::now();
    let tops = run_all(&model, &prep, &images, workers(), &argmax);
    let n = images.len() as f64;
    let agree = r
        .rows
        .iter()
        .zip(&tops)
        .filter(|(row, &t)| row.top[0].0 == t)
        .count();
    let correct = r
        .rows
        .iter()
        .zip(&tops)
        .filter(|(row, &t)| row.label == t)
        .count();
    let (ours, theirs) = (correct as f64 / n, r.top1_accuracy());
    if let (Some(h), 1300) = (r.header_value("top1"), r.rows.len()) {
        assert!(
            (h - theirs).abs() < 1e-4,
            "{test}: header top1 {h} vs rows {theirs}"
        );
    }
    println!(
        "{test}: top-1 agreement {agree}/{} ({:.2} %), top-1 accuracy {:.2} % (reference {:.2} %), {:.1} s",
        images.len(),
        100.0 * agree as f64 / n,
        100.0 * ours,
        100.0 * theirs,
        start.elapsed().as_secs_f64()
    );
    assert!(
        agree as f64 >= 0.998 * n,
        "{test}: top-1 agreement {agree}/{}",
        images.len()
    );
    assert!(
        (ours - theirs).abs() <= 0.001 + 1e-9,
        "{test}: top-1 accuracy {ours} vs reference {theirs}"
    );
}

fn squeezenet(bin: &str) -> Model {
    Model {
        param: data("models/squeezenet_v1.1/squeezenet_v1.1.param"),
        bin: data(&format!("models/squeezenet_v1.1/{bin}")),
        input: "data",
        output: "prob",
        input_shape: None,
    }
}

#[test]
fn golden_squeezenet_fp32() {
    check_classifier(
        "squeezenet_v1.1 fp32",
        squeezenet("squeezenet_v1.1.fp32.bin"),
        "reference/squeezenet_v1.1_fp32_val1300_top5.txt",
        Preprocess::squeezenet(),
    );
}

#[test]
fn golden_squeezenet_fp16_weights() {
    check_classifier(
        "squeezenet_v1.1 fp16 bin",
        squeezenet("squeezenet_v1.1.fp16.bin"),
        "reference/squeezenet_v1.1_fp32_val1300_top5.txt",
        Preprocess::squeezenet(),
    );
}

#[test]
fn golden_mobilenet_v2() {
    check_classifier(
        "mobilenet_v2 fp32",
        Model {
            param: data("models/mobilenet_v2/mobilenet_v2.param"),
            bin: data("models/mobilenet_v2/mobilenet_v2.fp32.bin"),
            input: "in0",
            output: "out0",
            input_shape: Some(Shape::d3(224, 224, 3)),
        },
        "reference/mobilenet_v2_fp32_val1300_top5.txt",
        Preprocess::mobilenet_v2(),
    );
}

#[test]
fn golden_mobilefacenet_lfw() {
    let test = "mobilefacenet lfw";
    let model = Model {
        param: data("models/mobilefacenet/mobilefacenet.param"),
        bin: data("models/mobilefacenet/mobilefacenet.bin"),
        input: "data",
        output: "fc1",
        input_shape: Some(Shape::d3(112, 112, 3)),
    };
    let dir = data("images/lfw_112x112_pairs");
    let pairs_file = dir.join("pairs.txt");
    let reference = data("reference/mobilefacenet_fp32_lfw_pairs_cosine_rgb.txt");
    if !require(test, &[&model.param, &model.bin, &pairs_file, &reference]) {
        return;
    }
    let pairs = parse_pairs(&std::fs::read_to_string(&pairs_file).unwrap()).unwrap();
    let ref_text = std::fs::read_to_string(&reference).unwrap();
    let expected = parse_cosines(&ref_text).unwrap();
    let header = ref_text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .find(|l| l.contains("input:"))
        .expect("an `input:` header line");
    assert_eq!(
        preprocess_from_header(header).unwrap(),
        Preprocess::mobilefacenet()
    );
    assert_eq!(pairs.len(), expected.len(), "{test}: pair counts");
    for (p, e) in pairs.iter().zip(&expected) {
        assert_eq!((&p.0, &p.1, p.2), (&e.0, &e.1, e.2), "{test}: pair order");
    }
    let mut pairs = pairs;
    pairs.truncate(limit());

    // Each image once.
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (a, b, _) in &pairs {
        for name in [a.as_str(), b.as_str()] {
            let next = index.len();
            index.entry(name).or_insert(next);
        }
    }
    let mut names = vec![""; index.len()];
    for (&name, &i) in &index {
        names[i] = name;
    }
    let images: Vec<PathBuf> = names.iter().map(|n| dir.join("images").join(n)).collect();
    let start = Instant::now();
    let embeddings = run_all(
        &model,
        &Preprocess::mobilefacenet(),
        &images,
        workers(),
        &l2_normalized,
    );

    let mut max_diff = 0.0f32;
    let mut worst = 0;
    let mut scored = Vec::with_capacity(pairs.len());
    for (k, ((a, b, same), e)) in pairs.iter().zip(&expected).enumerate() {
        let cos = dot(
            &embeddings[index[a.as_str()]],
            &embeddings[index[b.as_str()]],
        );
        if (cos - e.3).abs() > max_diff {
            (max_diff, worst) = ((cos - e.3).abs(), k);
        }
        scored.push((cos, *same));
    }
    let (acc, t) = best_threshold_accuracy(&scored);
    let ref_scored: Vec<(f32, bool)> = expected.iter().map(|e| (e.3, e.2)).collect();
    let (ref_acc, _) = best_threshold_accuracy(&ref_scored);
    println!(
        "{test}: {} images, {} pairs, max |cosine diff| {max_diff:.2e} (pair {worst}), best-threshold accuracy {:.2} % at {t:.3} (reference {:.2} %), {:.1} s",
        images.len(),
        pairs.len(),
        100.0 * acc,
        100.0 * ref_acc,
        start.elapsed().as_secs_f64()
    );
    assert!(
        max_diff <= 1e-3,
        "{test}: max |cosine diff| {max_diff} at pair {worst}"
    );
}

// ---------------------------------------------------------------------------------------
// Tests of the harness itself (no model needed)

const SQUEEZENET_HEADER: &str = "squeezenet_v1.1 fp32 (ncnn 1.0.20261020 python, fp16 paths off), input 227x227 BGR minus (104,117,123), blob data->prob";
const MOBILENET_HEADER: &str = "mobilenet_v2 fp32 (torchvision weights, PyTorch 2.15 CPU; the ncnn fp32 conversion agrees to ~3e-5 on logits), input: PIL bilinear resize 227->224x224, RGB, (x/255-mean)/std with mean=(0.485,0.456,0.406) std=(0.229,0.224,0.225); ncnn blobs in0->out0 (logits, no softmax)";
const FACE_HEADER: &str = "# input: 112x112 aligned image, RGB order, raw 0..255 (graph itself does (x-127.5)*0.0078125), blob data->fc1 (128-d), L2-normalised";

#[test]
fn harness_header_preprocessing() {
    assert_eq!(
        preprocess_from_header(SQUEEZENET_HEADER).unwrap(),
        Preprocess::squeezenet()
    );
    assert_eq!(
        preprocess_from_header(MOBILENET_HEADER).unwrap(),
        Preprocess::mobilenet_v2()
    );
    // The face header's "(x-127.5)*0.0078125" describes the graph, not the input.
    assert_eq!(
        preprocess_from_header(FACE_HEADER).unwrap(),
        Preprocess::mobilefacenet()
    );
    assert_eq!(
        blob_names(SQUEEZENET_HEADER),
        Some(("data".into(), "prob".into()))
    );
    assert_eq!(
        blob_names(MOBILENET_HEADER),
        Some(("in0".into(), "out0".into()))
    );
    assert_eq!(blob_names(FACE_HEADER), Some(("data".into(), "fc1".into())));
    assert!(preprocess_from_header("input 224x224, resize and crop, RGB").is_err());
    assert!(preprocess_from_header("no size at all, RGB").is_err());
}

#[test]
fn harness_reference_parsing() {
    let text = format!(
        "# {SQUEEZENET_HEADER}\n# top1=0.5000 top5=1.0000 n=2\n# file label top5(class:prob)\n\
         a.JPEG 472 472:0.98020 693:0.01018\n\
         b.JPEG 260 259:0.55123 260:0.19511\n"
    );
    let r = ClassReference::parse(&text).unwrap();
    assert_eq!(r.header.len(), 3);
    assert_eq!(
        r.rows[1],
        RefRow {
            file: "b.JPEG".into(),
            label: 260,
            top: vec![(259, 0.55123), (260, 0.19511)],
        }
    );
    assert_eq!(r.top1_accuracy(), 0.5);
    assert_eq!(r.header_value("top1"), Some(0.5));
    assert_eq!(r.header_value("n"), Some(2.0));
    assert!(ClassReference::parse("a.JPEG x 1:0.5").is_err());
    assert!(ClassReference::parse("a.JPEG 1 1-0.5").is_err());
    assert!(ClassReference::parse("a.JPEG 1").is_err());
}

#[test]
fn harness_cosines() {
    let cos =
        parse_cosines("# header\n# img1 img2 label cosine\nA B -1 -0.093186\nA C 1 0.5\n").unwrap();
    assert_eq!(cos[0], ("A".into(), "B".into(), false, -0.093186));
    assert!(cos[1].2);
    assert!(parse_cosines("A B 1").is_err());
}

#[test]
fn harness_helpers() {
    assert_eq!(argmax(&[0.1, 0.7, 0.7, 0.2]), 1);
    assert_eq!(argmax(&[-3.0]), 0);
    let e = l2_normalized(&[3.0, 4.0]);
    assert_eq!(e, [0.6, 0.8]);
    assert!((dot(&e, &e) - 1.0).abs() < 1e-6);
    assert_eq!(last_size("resize 227->224x224, RGB"), Some((224, 224)));
    assert_eq!(
        triple_after("minus (104, 117,123)", "minus"),
        Some([104.0, 117.0, 123.0])
    );
}

/// The reference files on disk parse and agree with their own headers (skipped without them).
#[test]
fn harness_reference_files() {
    let sq = data("reference/squeezenet_v1.1_fp32_val1300_top5.txt");
    let mb = data("reference/mobilenet_v2_fp32_val1300_top5.txt");
    let face = data("reference/mobilefacenet_fp32_lfw_pairs_cosine_rgb.txt");
    if !require("reference files", &[&sq, &mb, &face]) {
        return;
    }
    for (file, preset) in [
        (sq, Preprocess::squeezenet()),
        (mb, Preprocess::mobilenet_v2()),
    ] {
        let r = ClassReference::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(preprocess_from_header(&r.header[0]).unwrap(), preset);
        assert_eq!(r.rows.len(), 1300);
        let h = r.header_value("top1").unwrap();
        assert!((h - r.top1_accuracy()).abs() < 1e-4, "{}", file.display());
    }
    let text = std::fs::read_to_string(&face).unwrap();
    let cos = parse_cosines(&text).unwrap();
    assert_eq!(cos.len(), 5474);
    let scored: Vec<(f32, bool)> = cos.iter().map(|c| (c.3, c.2)).collect();
    let (acc, t) = best_threshold_accuracy(&scored);
    // The header says: best single-threshold accuracy=0.9929 at threshold 0.279.
    assert!((acc - 0.9929).abs() < 5e-5, "{acc}");
    assert!((t - 0.279).abs() < 0.01, "{t}");
}

/// `run_all` keeps image order across workers, on a tiny Input + ReLU model.
#[test]
fn harness_run_all_order() {
    let dir = std::env::temp_dir().join(format!("eq-golden-run-all-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let param = dir.join("relu.param");
    std::fs::write(
        &param,
        "7767517\n2 2\nInput data 0 1 data 0=4 1=3 2=3\nReLU relu 1 1 data out\n",
    )
    .unwrap();
    let bin = dir.join("empty.bin");
    std::fs::write(&bin, b"").unwrap();
    let model = Model {
        param,
        bin,
        input: "data",
        output: "out",
        input_shape: None,
    };
    let prep = Preprocess {
        size: (4, 3),
        mean: [100.0; 3],
        ..Preprocess::mobilefacenet()
    };
    let images: Vec<PathBuf> = (0..7u32)
        .map(|i| {
            let path = dir.join(format!("{i}.png"));
            image::RgbImage::from_fn(4, 3, |x, y| {
                image::Rgb([(i * 30 + x * 7 + y) as u8, 90, 200])
            })
            .save(&path)
            .unwrap();
            path
        })
        .collect();
    let expected: Vec<f32> = images
        .iter()
        .map(|p| prep.load(p).unwrap().iter().map(|v| v.max(0.0)).sum())
        .collect();
    let sum = |out: &[f32]| out.iter().sum::<f32>();
    for workers in [1, 2, 3, 9] {
        assert_eq!(
            run_all(&model, &prep, &images, workers, &sum),
            expected,
            "{workers} workers"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
