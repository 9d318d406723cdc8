//! `eq import caffe`: Caffe models written here from Rust (prost, the importer's own
//! messages) are imported and run; the results are compared with independently computed
//! values or with the equivalent ncnn model written directly, and SqueezeNet v1.1 (the shared
//! ncnn model, rewritten as a Caffe model) must come back bit for bit.
//!
//! The shared folder is `$EQ_SHARED`, or `<workspace>/../shared`. A missing file fails the
//! SqueezeNet test in CI (`CI=true`) and skips it with a note otherwise.

mod common;

use common::{eq, fails_with, require, s, shared_dir, temp_dir};
use eq_runtime::rng::Rng;
use eq_runtime::{Net, Options};
use eq_tools::import::caffe::convert;
use eq_tools::import::caffe_proto::*;
use eq_tools::import::prototxt;
use eq_tools::ncnn_writer::ModelWriter;
use prost::Message;
use std::path::{Path, PathBuf};

fn blob(dims: &[i64], data: Vec<f32>) -> BlobProto {
    BlobProto {
        shape: Some(BlobShape { dim: dims.to_vec() }),
        data,
        ..Default::default()
    }
}

/// A caffemodel holding only weights, by layer name (the importer takes the structure from
/// the prototxt).
fn caffemodel(layers: Vec<(&str, Vec<BlobProto>)>) -> NetParameter {
    NetParameter {
        layer: layers
            .into_iter()
            .map(|(name, blobs)| LayerParameter {
                name: Some(name.into()),
                blobs,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn import(prototxt_text: &str, weights: &NetParameter) -> ModelWriter {
    let net = prototxt::parse(prototxt_text).unwrap();
    let bytes = weights.encode_to_vec();
    let weights = eq_tools::import::caffe::decode_caffemodel(&bytes).unwrap();
    convert(&net, &weights).unwrap()
}

/// Runs a model on `inputs`, returns the shape (w, h, c) and values of `out`.
fn run(
    model: &ModelWriter,
    inputs: &[(&str, &[f32])],
    out: &str,
) -> ((usize, usize, usize), Vec<f32>) {
    let param = model.param.to_text().unwrap();
    let opts = Options {
        keep_all_blobs: true,
        ..Options::default()
    };
    let mut net = Net::from_memory(param.as_bytes(), &model.bin.bytes, &opts)
        .unwrap_or_else(|e| panic!("{e}\n{param}"));
    for (name, data) in inputs {
        net.set_input(name, data).unwrap();
    }
    net.run().unwrap();
    let (shape, v) = net.blob_f32(out).unwrap();
    ((shape.w, shape.h, shape.c), v)
}

fn assert_bitwise(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.to_bits(), y.to_bits(), "{what}[{i}]: {x} vs {y}");
    }
}

// ---------------------------------------------------------------------------------------
// SqueezeNet v1.1: the shared ncnn model rewritten as Caffe, imported back.

/// Writes the Caffe form of an ncnn SqueezeNet as converted by caffe2ncnn and then
/// ncnnoptimize: each `Convolution` with `9=1` whose top is `<conv>_<relu>` becomes a
/// Convolution and an in-place ReLU named `<relu>`; any other top `<layer>_<name>` an
/// in-place Dropout `<name>` (ncnnoptimize removed it); Splits disappear (Caffe blobs fan
/// out by name). Returns the prototxt and the caffemodel (weights in Caffe's OIHW layout,
/// read from the ncnn .bin).
fn squeezenet_to_caffe(param: &[u8], bin: &[u8]) -> (String, NetParameter) {
    let p = eq_runtime::model::parse_param(param, "squeezenet").unwrap();
    let mut caffe_name: std::collections::HashMap<String, String> = Default::default();
    let mut text = String::from("name: \"squeezenet_v1.1\"\n");
    let mut weights = Vec::new();
    let mut at = 0usize;
    let floats = |at: &mut usize, n: usize| -> Vec<f32> {
        let v = bin[*at..*at + 4 * n]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        *at += 4 * n;
        v
    };
    for l in &p.layers {
        let int = |k: usize, d: i32| l.params.int(k, d).unwrap();
        let bottoms: Vec<String> = l.bottoms.iter().map(|b| caffe_name[b].clone()).collect();
        let top = &l.tops[0];
        let follower = top
            .strip_prefix(&format!("{}_", l.name))
            .map(str::to_string);
        let caffe_top = if follower.is_some() {
            l.name.clone()
        } else {
            top.clone()
        };
        let mut body = String::new();
        let kind = match l.kind.as_str() {
            "Input" => {
                text += &format!(
                    "input: \"{top}\"\ninput_dim: 1\ninput_dim: {}\ninput_dim: {}\ninput_dim: {}\n",
                    int(2, 0),
                    int(1, 0),
                    int(0, 0)
                );
                caffe_name.insert(top.clone(), top.clone());
                continue;
            }
            "Split" => {
                for t in &l.tops {
                    caffe_name.insert(t.clone(), bottoms[0].clone());
                }
                continue;
            }
            "Convolution" => {
                let (out, k) = (int(0, 0) as usize, int(1, 0) as usize);
                let size = int(6, 0) as usize;
                body = format!(
                    "  convolution_param {{ num_output: {out} kernel_size: {k} stride: {} pad: {} }}\n",
                    int(3, 1),
                    int(4, 0)
                );
                assert_eq!(bin[at..at + 4], [0, 0, 0, 0], "fp32 flag word");
                at += 4;
                let w = floats(&mut at, size);
                let b = floats(&mut at, out);
                let inch = size / (out * k * k);
                weights.push((
                    l.name.clone(),
                    vec![
                        blob(&[out as i64, inch as i64, k as i64, k as i64], w),
                        blob(&[out as i64], b),
                    ],
                ));
                "Convolution"
            }
            "Pooling" => {
                let pool = if int(0, 0) == 0 { "MAX" } else { "AVE" };
                body = if int(4, 0) == 1 {
                    format!("  pooling_param {{ pool: {pool} global_pooling: true }}\n")
                } else {
                    format!(
                        "  pooling_param {{ pool: {pool} kernel_size: {} stride: {} }}\n",
                        int(1, 0),
                        int(2, 1)
                    )
                };
                "Pooling"
            }
            "Concat" => "Concat",
            "Softmax" => "Softmax",
            other => panic!("unexpected layer {other} in squeezenet"),
        };
        text += &format!("layer {{\n  name: \"{}\"\n  type: \"{kind}\"\n", l.name);
        for b in &bottoms {
            text += &format!("  bottom: \"{b}\"\n");
        }
        text += &format!("  top: \"{caffe_top}\"\n{body}}}\n");
        caffe_name.insert(top.clone(), caffe_top.clone());
        if let Some(f) = follower {
            let ty = if kind == "Convolution" {
                "ReLU"
            } else {
                "Dropout"
            };
            text += &format!(
                "layer {{ name: \"{f}\" type: \"{ty}\" bottom: \"{caffe_top}\" top: \"{caffe_top}\" }}\n"
            );
        }
    }
    assert_eq!(at, bin.len(), "the whole .bin was read");
    let model = caffemodel(
        weights
            .iter()
            .map(|(n, b)| (n.as_str(), b.clone()))
            .collect(),
    );
    (text, model)
}

#[test]
fn squeezenet_round_trips_bit_for_bit() {
    let dir = shared_dir().join("data/models/squeezenet_v1.1");
    let (param_path, bin_path) = (
        dir.join("squeezenet_v1.1.param"),
        dir.join("squeezenet_v1.1.fp32.bin"),
    );
    if !require(
        "squeezenet_round_trips_bit_for_bit",
        &[&param_path, &bin_path],
    ) {
        return;
    }
    let param = std::fs::read(&param_path).unwrap();
    let bin = std::fs::read(&bin_path).unwrap();
    let (text, model) = squeezenet_to_caffe(&param, &bin);

    let tmp = temp_dir("squeezenet");
    let (proto, cm) = (
        tmp.join("deploy.prototxt"),
        tmp.join("squeezenet.caffemodel"),
    );
    std::fs::write(&proto, &text).unwrap();
    std::fs::write(&cm, model.encode_to_vec()).unwrap();
    let (out_param, out_bin) = (tmp.join("sq.param"), tmp.join("sq.bin"));
    let out = eq(&[
        "import",
        "caffe",
        "--prototxt",
        &s(&proto),
        "--caffemodel",
        &s(&cm),
        "--out-param",
        &s(&out_param),
        "--out-bin",
        &s(&out_bin),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Same weights in the same order and encoding: the .bin is the original's, byte for byte.
    let imported_bin = std::fs::read(&out_bin).unwrap();
    assert!(
        imported_bin == bin,
        "the imported .bin differs from the original"
    );

    // The param differs only by the ReLU/Dropout layers ncnnoptimize fused or removed:
    // Splits and blob names are caffe2ncnn's.
    let imported = std::fs::read_to_string(&out_param).unwrap();
    for line in String::from_utf8_lossy(&param).lines().skip(2) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words[0] == "Split" {
            let found = imported.lines().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w[..] == words[..]
            });
            assert!(found, "missing split: {line}");
        }
    }

    // Outputs equal bit for bit on random inputs and on the first real validation images
    // (preprocessed as the accuracy runs do), so the top-1 is the original model's.
    let mut a = Net::load(&param_path, &bin_path, &Options::default()).unwrap();
    let mut b = Net::load(&out_param, &out_bin, &Options::default()).unwrap();
    let mut rng = Rng::new(7);
    let mut inputs: Vec<Vec<f32>> = vec![
        rng.vec(3 * 227 * 227, -1.0, 1.0),
        rng.vec(3 * 227 * 227, -120.0, 120.0),
    ];
    let images = shared_dir().join("data/images/imagenet_val1300/images");
    if require("squeezenet_round_trips_bit_for_bit", &[&images]) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&images)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let prep = eq_tools::dataset::Preprocess::squeezenet();
        for f in files.iter().take(4) {
            inputs.push(prep.load(f).unwrap());
        }
    }
    for x in inputs {
        a.set_input("data", &x).unwrap();
        b.set_input("data", &x).unwrap();
        a.run().unwrap();
        b.run().unwrap();
        let (sa, va) = a.blob_f32("prob").unwrap();
        let (sb, vb) = b.blob_f32("prob").unwrap();
        assert_eq!(sa, sb);
        assert_eq!(va.len(), 1000);
        assert_bitwise(&va, &vb, "prob");
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

// ---------------------------------------------------------------------------------------
// Small nets

/// Direct convolution in f64: input (c, h, w), weights OIHW (Caffe's and ncnn's layout).
#[allow(clippy::too_many_arguments)]
fn conv_ref(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    wt: &[f32],
    bias: Option<&[f32]>,
    out: usize,
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    (ph, pw): (usize, usize),
    (dh, dw): (usize, usize),
    group: usize,
) -> (Vec<f64>, usize, usize) {
    let oh = (h + 2 * ph - (dh * (kh - 1) + 1)) / sh + 1;
    let ow = (w + 2 * pw - (dw * (kw - 1) + 1)) / sw + 1;
    let (cg, og) = (c / group, out / group);
    let mut y = vec![0.0f64; out * oh * ow];
    for o in 0..out {
        let g = o / og;
        for i in 0..oh {
            for j in 0..ow {
                let mut acc = bias.map_or(0.0, |b| f64::from(b[o]));
                for ci in 0..cg {
                    for a in 0..kh {
                        for b in 0..kw {
                            let yy = (i * sh + a * dh) as isize - ph as isize;
                            let xx = (j * sw + b * dw) as isize - pw as isize;
                            if yy < 0 || xx < 0 || yy >= h as isize || xx >= w as isize {
                                continue;
                            }
                            let xv = x[((g * cg + ci) * h + yy as usize) * w + xx as usize];
                            let wv = wt[((o * cg + ci) * kh + a) * kw + b];
                            acc += f64::from(xv) * f64::from(wv);
                        }
                    }
                }
                y[(o * oh + i) * ow + j] = acc;
            }
        }
    }
    (y, oh, ow)
}

fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(*g) - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

#[test]
fn grouped_dilated_and_rectangular_convolutions_match_a_direct_computation() {
    let text = r#"
        # an Input layer, read by two convolutions (a Split is inserted)
        layer { name: "data" type: "Input" top: "data"
                input_param { shape { dim: 1 dim: 4 dim: 9 dim: 8 } } }
        layer { name: "conv_g" type: "Convolution" bottom: "data" top: "conv_g"
                convolution_param { num_output: 6 kernel_size: 3 dilation: 2 pad: 2 stride: 2
                                    group: 2 } }
        layer { name: "conv_hw" type: "Convolution" bottom: "data" top: "conv_hw"
                convolution_param: { num_output: 3 kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0
                                     bias_term: false } }
    "#;
    let mut rng = Rng::new(1);
    let (wg, bg, whw) = (
        rng.vec(6 * 2 * 9, -1.0, 1.0),
        rng.vec(6, -1.0, 1.0),
        rng.vec(3 * 4 * 3, -1.0, 1.0),
    );
    let weights = caffemodel(vec![
        (
            "conv_g",
            vec![blob(&[6, 2, 3, 3], wg.clone()), blob(&[6], bg.clone())],
        ),
        ("conv_hw", vec![blob(&[3, 4, 3, 1], whw.clone())]),
    ]);
    let model = import(text, &weights);
    let param = model.param.to_text().unwrap();
    assert!(param.contains("ConvolutionDepthWise"), "{param}");
    assert!(param.contains("Split "), "{param}");
    let x = rng.vec(4 * 9 * 8, -1.0, 1.0);

    let (shape, got) = run(&model, &[("data", &x)], "conv_g");
    let (want, oh, ow) = conv_ref(
        &x,
        (4, 9, 8),
        &wg,
        Some(&bg),
        6,
        (3, 3),
        (2, 2),
        (2, 2),
        (2, 2),
        2,
    );
    assert_eq!(shape, (ow, oh, 6));
    assert_close(&got, &want, 1e-5, "conv_g");

    let (shape, got) = run(&model, &[("data", &x)], "conv_hw");
    let (want, oh, ow) = conv_ref(
        &x,
        (4, 9, 8),
        &whw,
        None,
        3,
        (3, 1),
        (1, 1),
        (1, 0),
        (1, 1),
        1,
    );
    assert_eq!(shape, (ow, oh, 3));
    assert_close(&got, &want, 1e-5, "conv_hw");
}

#[test]
fn batchnorm_and_scale_fold_into_one_layer_with_caffes_formula() {
    let text = r#"
        input: "data"
        input_shape { dim: 1 dim: 3 dim: 4 dim: 5 }
        layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data"
                batch_norm_param { use_global_stats: true eps: 0.001 } }
        layer { name: "sc" type: "Scale" bottom: "data" top: "data" scale_param { bias_term: true } }
        layer { name: "relu" type: "ReLU" bottom: "data" top: "data" relu_param { negative_slope: 0.1 } }
    "#;
    let (mean, var, gamma, beta) = (
        vec![0.2f32, -1.0, 3.0],
        vec![0.5f32, 2.0, 0.1],
        vec![1.5f32, -0.5, 2.0],
        vec![0.1f32, 0.2, -0.3],
    );
    let factor = 2.0f32; // Caffe's moving-average normaliser: mean = blob0 / factor
    let weights = caffemodel(vec![
        (
            "bn",
            vec![
                blob(&[3], mean.clone()),
                blob(&[3], var.clone()),
                blob(&[1], vec![factor]),
            ],
        ),
        (
            "sc",
            vec![blob(&[3], gamma.clone()), blob(&[3], beta.clone())],
        ),
    ]);
    let model = import(text, &weights);
    let kinds: Vec<&str> = model.param.layers.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(kinds, ["Input", "BatchNorm", "ReLU"]);
    // caffe2ncnn's names for in-place outputs: <blob>_<layer>.
    assert_eq!(model.param.layers[1].tops, ["data_sc"]);
    assert_eq!(model.param.layers[2].tops, ["data_relu"]);

    let x = Rng::new(2).vec(3 * 4 * 5, -3.0, 3.0);
    let (_, got) = run(&model, &[("data", &x)], "data_relu");
    let want: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i / 20;
            let m = f64::from(mean[c]) / f64::from(factor);
            let var = f64::from(var[c]) / f64::from(factor);
            let y = f64::from(gamma[c]) * (f64::from(v) - m) / (var + 0.001).sqrt()
                + f64::from(beta[c]);
            if y < 0.0 {
                0.1 * y
            } else {
                y
            }
        })
        .collect();
    assert_close(&got, &want, 1e-5, "bn+scale+leaky relu");

    // A Scale that is not the BatchNorm's only reader stays a layer of its own.
    let text2 = r#"
        input: "data"
        input_shape { dim: 1 dim: 3 dim: 4 dim: 5 }
        layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn_out" }
        layer { name: "sc" type: "Scale" bottom: "bn_out" top: "scaled" scale_param { bias_term: true } }
        layer { name: "cat" type: "Concat" bottom: "bn_out" bottom: "scaled" top: "cat" }
        layer { name: "relu" type: "ReLU" bottom: "cat" top: "cat" }
    "#;
    let model = import(text2, &weights);
    let kinds: Vec<&str> = model.param.layers.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["Input", "BatchNorm", "Split", "Scale", "Concat", "ReLU"],
        "{}",
        model.param.to_text().unwrap()
    );
    let (shape, _) = run(&model, &[("data", &x)], "cat_relu");
    assert_eq!(shape, (5, 4, 6));
}

const NEW_FORM: &str = r#"
name: "small"
input: "data"
input_shape { dim: 1 dim: 3 dim: 10 dim: 10 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        param { lr_mult: 1 } param { lr_mult: 2 }
        convolution_param { num_output: 4 kernel_size: 3 pad: 1
                            weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1"
        lrn_param { local_size: 3 alpha: 1e-4 beta: 0.75 } }
layer { name: "a" type: "Convolution" bottom: "norm1" top: "a"
        convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "b" type: "Convolution" bottom: "norm1" top: "b"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum"
        eltwise_param { operation: SUM coeff: [1, -0.5] } }
layer { name: "cat" type: "Concat" bottom: "sum" bottom: "a" top: "cat" }
layer { name: "drop" type: "Dropout" bottom: "cat" top: "cat" dropout_param { dropout_ratio: 0.5 } }
layer { name: "train_only" type: "Accuracy" bottom: "cat" top: "acc" include { phase: TRAIN } }
layer { name: "fc" type: "InnerProduct" bottom: "cat" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"#;

const V1_FORM: &str = r#"
name: "small"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 10 input_dim: 10
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
         blobs_lr: 1 blobs_lr: 2
         convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1"
         pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layers { name: "norm1" type: LRN bottom: "pool1" top: "norm1"
         lrn_param { local_size: 3 alpha: 0.0001 beta: 0.75 } }
layers { name: "a" type: CONVOLUTION bottom: "norm1" top: "a"
         convolution_param { num_output: 4 kernel_size: 1 } }
layers { name: "b" type: CONVOLUTION bottom: "norm1" top: "b"
         convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layers { name: "sum" type: ELTWISE bottom: "a" bottom: "b" top: "sum"
         eltwise_param { operation: SUM coeff: 1 coeff: -0.5 } }
layers { name: "cat" type: CONCAT bottom: "sum" bottom: "a" top: "cat" }
layers { name: "drop" type: DROPOUT bottom: "cat" top: "cat" dropout_param { dropout_ratio: 0.5 } }
layers { name: "fc" type: INNER_PRODUCT bottom: "cat" top: "fc" inner_product_param { num_output: 5 } }
layers { name: "prob" type: SOFTMAX bottom: "fc" top: "prob" }
"#;

/// Each layer's blobs as (dims, values).
type Weights = Vec<(&'static str, Vec<(Vec<i64>, Vec<f32>)>)>;

fn small_weights(rng: &mut Rng) -> Weights {
    let mut w = |dims: &[i64]| {
        let n = dims.iter().product::<i64>() as usize;
        (dims.to_vec(), rng.vec(n, -0.5, 0.5))
    };
    vec![
        ("conv1", vec![w(&[4, 3, 3, 3]), w(&[4])]),
        ("a", vec![w(&[4, 4, 1, 1]), w(&[4])]),
        ("b", vec![w(&[4, 4, 3, 3]), w(&[4])]),
        ("fc", vec![w(&[5, 8 * 5 * 5]), w(&[5])]),
    ]
}

#[test]
fn old_and_new_prototxt_forms_import_alike_and_run_as_the_direct_ncnn_model() {
    let w = small_weights(&mut Rng::new(3));
    let new_weights = caffemodel(
        w.iter()
            .map(|(n, bs)| (*n, bs.iter().map(|(d, v)| blob(d, v.clone())).collect()))
            .collect(),
    );
    // The old form's caffemodel: V1 layers, blob shapes as num/channels/height/width.
    let v1_weights = NetParameter {
        layers: w
            .iter()
            .map(|(n, bs)| V1LayerParameter {
                name: Some(n.to_string()),
                blobs: bs
                    .iter()
                    .map(|(d, v)| {
                        let mut d4 = vec![1i64; 4 - d.len()];
                        d4.extend(d);
                        BlobProto {
                            num: Some(d4[0]),
                            channels: Some(d4[1]),
                            height: Some(d4[2]),
                            width: Some(d4[3]),
                            data: v.clone(),
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let new = import(NEW_FORM, &new_weights);
    let old = import(V1_FORM, &v1_weights);
    let new_text = new.param.to_text().unwrap();
    assert_eq!(new_text, old.param.to_text().unwrap());
    assert!(new.bin.bytes == old.bin.bytes, "the two forms' .bin differ");

    // The layout caffe2ncnn gives: in-place outputs renamed, Splits after the producer,
    // readers taking the highest split index first, the TRAIN-only layer gone.
    let lines: Vec<String> = new_text
        .lines()
        .skip(2)
        .map(|l| {
            l.split_whitespace()
                .take_while(|t| !t.contains('='))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let expected = [
        "Input data 0 1 data",
        "Convolution conv1 1 1 data conv1",
        "ReLU relu1 1 1 conv1 conv1_relu1",
        "Pooling pool1 1 1 conv1_relu1 pool1",
        "LRN norm1 1 1 pool1 norm1",
        "Split splitncnn_0 1 2 norm1 norm1_splitncnn_0 norm1_splitncnn_1",
        "Convolution a 1 1 norm1_splitncnn_1 a",
        "Split splitncnn_1 1 2 a a_splitncnn_0 a_splitncnn_1",
        "Convolution b 1 1 norm1_splitncnn_0 b",
        "Eltwise sum 2 1 a_splitncnn_1 b sum",
        "Concat cat 2 1 sum a_splitncnn_0 cat",
        "Dropout drop 1 1 cat cat_drop",
        "InnerProduct fc 1 1 cat_drop fc",
        "Softmax prob 1 1 fc prob",
    ];
    assert_eq!(lines, expected, "{new_text}");

    // The same network written directly as ncnn.
    let mut m = ModelWriter::new();
    let p = &mut m.param;
    p.layer("Input", "data", &[], &["data"])
        .int(0, 10)
        .int(1, 10)
        .int(2, 3);
    p.layer("Convolution", "conv1", &["data"], &["c1"])
        .int(0, 4)
        .int(1, 3)
        .int(4, 1)
        .int(5, 1)
        .int(6, 108)
        .int(9, 1);
    p.layer("Pooling", "pool1", &["c1"], &["p1"])
        .int(0, 0)
        .int(1, 3)
        .int(2, 2);
    p.layer("LRN", "norm1", &["p1"], &["n1"])
        .int(1, 3)
        .float(2, 1e-4);
    p.layer("Split", "s", &["n1"], &["n1a", "n1b"]);
    p.layer("Convolution", "a", &["n1a"], &["a"])
        .int(0, 4)
        .int(1, 1)
        .int(5, 1)
        .int(6, 16);
    p.layer("Split", "s2", &["a"], &["a1", "a2"]);
    p.layer("Convolution", "b", &["n1b"], &["b"])
        .int(0, 4)
        .int(1, 3)
        .int(4, 1)
        .int(5, 1)
        .int(6, 144);
    p.layer("Eltwise", "sum", &["a1", "b"], &["sum"])
        .int(0, 1)
        .floats(1, &[1.0, -0.5]);
    p.layer("Concat", "cat", &["sum", "a2"], &["cat"]);
    p.layer("InnerProduct", "fc", &["cat"], &["fc"])
        .int(0, 5)
        .int(1, 1)
        .int(2, 1000);
    p.layer("Softmax", "prob", &["fc"], &["prob"]);
    for (_, bs) in &w {
        m.bin.tagged_f32(&bs[0].1);
        m.bin.raw_f32(&bs[1].1);
    }
    let x = Rng::new(4).vec(3 * 10 * 10, -1.0, 1.0);
    // Caffe rounds pooled sizes up: (10 - 3) / 2 -> 5 outputs, not 4.
    let (shape, _) = run(&new, &[("data", &x)], "pool1");
    assert_eq!(shape, (5, 5, 4));
    let (_, got) = run(&new, &[("data", &x)], "prob");
    let (_, want) = run(&m, &[("data", &x)], "prob");
    assert_bitwise(&got, &want, "prob");

    // round_mode: FLOOR selects ncnn's valid padding.
    let floor = NEW_FORM.replace("stride: 2 }", "stride: 2 round_mode: FLOOR }");
    let model = import(&floor, &new_weights);
    let pool = model
        .param
        .layers
        .iter()
        .find(|l| l.name == "pool1")
        .unwrap();
    assert!(pool
        .params
        .contains(&(5, eq_tools::ncnn_writer::ParamValue::Int(1))));
}

#[test]
fn ssd_head_layers_import_and_run() {
    let text = r#"
        layer { name: "data" type: "Input" top: "data"
                input_param { shape { dim: 1 dim: 3 dim: 16 dim: 16 } } }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
                convolution_param { num_output: 8 kernel_size: 3 stride: 2 pad: 1 } }
        layer { name: "prelu" type: "PReLU" bottom: "conv" top: "conv" }
        layer { name: "norm" type: "Normalize" bottom: "conv" top: "norm"
                norm_param { across_spatial: false channel_shared: false eps: 1e-10 } }
        layer { name: "loc" type: "Convolution" bottom: "norm" top: "loc"
                convolution_param { num_output: 12 kernel_size: 3 pad: 1 } }
        layer { name: "loc_perm" type: "Permute" bottom: "loc" top: "loc_perm"
                permute_param { order: 0 order: 2 order: 3 order: 1 } }
        layer { name: "loc_flat" type: "Flatten" bottom: "loc_perm" top: "loc_flat"
                flatten_param { axis: 1 } }
        layer { name: "conf" type: "Convolution" bottom: "norm" top: "conf"
                convolution_param { num_output: 9 kernel_size: 3 pad: 1 } }
        layer { name: "conf_perm" type: "Permute" bottom: "conf" top: "conf_perm"
                permute_param { order: 0 order: 2 order: 3 order: 1 } }
        layer { name: "conf_flat" type: "Flatten" bottom: "conf_perm" top: "conf_flat" }
        layer { name: "prior" type: "PriorBox" bottom: "norm" bottom: "data" top: "prior"
                prior_box_param { min_size: 4 max_size: 9 aspect_ratio: 2 aspect_ratio: 2 flip: false
                                  variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2
                                  step: 2 offset: 0.5 } }
        layer { name: "priors" type: "Concat" bottom: "prior" top: "priors" concat_param { axis: 2 } }
        layer { name: "conf_reshape" type: "Reshape" bottom: "conf_flat" top: "conf_reshape"
                reshape_param { shape { dim: 0 dim: -1 dim: 3 } } }
        layer { name: "conf_softmax" type: "Softmax" bottom: "conf_reshape" top: "conf_softmax"
                softmax_param { axis: 2 } }
        layer { name: "conf_sm_flat" type: "Flatten" bottom: "conf_softmax" top: "conf_sm_flat" }
        layer { name: "det" type: "DetectionOutput"
                bottom: "loc_flat" bottom: "conf_sm_flat" bottom: "priors" top: "det"
                detection_output_param { num_classes: 3 share_location: true background_label_id: 0
                    nms_param { nms_threshold: 0.45 top_k: 100 } code_type: CENTER_SIZE
                    keep_top_k: 50 confidence_threshold: 0.01 } }
    "#;
    let mut rng = Rng::new(5);
    let mut wb = |dims: &[i64], lo: f32, hi: f32| {
        let n = dims.iter().product::<i64>() as usize;
        blob(dims, rng.vec(n, lo, hi))
    };
    let slopes = wb(&[8], 0.0, 0.3);
    let scales = wb(&[8], 10.0, 20.0);
    let weights = caffemodel(vec![
        (
            "conv",
            vec![wb(&[8, 3, 3, 3], -0.5, 0.5), wb(&[8], -0.1, 0.1)],
        ),
        ("prelu", vec![slopes.clone()]),
        ("norm", vec![scales.clone()]),
        (
            "loc",
            vec![wb(&[12, 8, 3, 3], -0.1, 0.1), wb(&[12], -0.1, 0.1)],
        ),
        (
            "conf",
            vec![wb(&[9, 8, 3, 3], -0.5, 0.5), wb(&[9], -0.1, 0.1)],
        ),
    ]);
    let model = import(text, &weights);
    let text_out = model.param.to_text().unwrap();
    let parsed = eq_runtime::model::parse_param(text_out.as_bytes(), "ssd").unwrap();
    let find = |name: &str| parsed.layers.iter().find(|l| l.name == name).unwrap();
    assert_eq!(find("loc_perm").params.int(0, 0).unwrap(), 3);
    assert_eq!(find("conf_reshape").params.int(0, 0).unwrap(), 3);
    assert_eq!(find("conf_reshape").params.int(1, 0).unwrap(), -1);
    assert_eq!(find("conf_softmax").params.int(0, 0).unwrap(), 1);
    assert_eq!(find("priors").params.int(0, 0).unwrap(), 1);
    // The repeated ratio is dropped, as Caffe's PriorBox ignores duplicates.
    assert_eq!(
        find("prior").params.float_array(2).unwrap().to_vec(),
        vec![2.0]
    );
    assert_eq!(find("det").params.int(3, 0).unwrap(), 50);

    let x = Rng::new(6).vec(3 * 16 * 16, -1.0, 1.0);
    // PReLU then Normalize across channels, against the formulas.
    let (_, conv) = run(&model, &[("data", &x)], "conv");
    let (shape, got) = run(&model, &[("data", &x)], "norm");
    assert_eq!(shape, (8, 8, 8));
    // The in-place PReLU writes `conv_prelu` (caffe2ncnn's name), one slope per channel.
    let (_, conv_after) = run(&model, &[("data", &x)], "conv_prelu");
    assert_eq!(conv_after.len(), conv.len());
    for (i, (&a, &b)) in conv.iter().zip(&conv_after).enumerate() {
        let want = if a < 0.0 { a * slopes.data[i / 64] } else { a };
        assert_eq!(b.to_bits(), want.to_bits(), "prelu[{i}]");
    }
    let mut want2 = vec![0.0f64; conv.len()];
    for pos in 0..64 {
        let ss: f64 = (0..8)
            .map(|c| f64::from(conv_after[c * 64 + pos]).powi(2))
            .sum();
        for c in 0..8 {
            want2[c * 64 + pos] = f64::from(conv_after[c * 64 + pos]) / (ss + 1e-10).sqrt()
                * f64::from(scales.data[c]);
        }
    }
    assert_close(&got, &want2, 1e-5, "normalize");

    // Permute (0, 2, 3, 1) is NCHW -> NHWC.
    let (_, loc) = run(&model, &[("data", &x)], "loc");
    let (shape, perm) = run(&model, &[("data", &x)], "loc_perm");
    assert_eq!(shape, (12, 8, 8));
    for c in 0..12 {
        for pos in 0..64 {
            assert_eq!(perm[pos * 12 + c].to_bits(), loc[c * 64 + pos].to_bits());
        }
    }
    // 8 x 8 cells, 3 priors each (min, max, ratio 2), boxes and variances.
    let (shape, _) = run(&model, &[("data", &x)], "priors");
    assert_eq!(shape, (8 * 8 * 3 * 4, 2, 1));
    let (shape, det) = run(&model, &[("data", &x)], "det");
    assert_eq!(shape.0, 6);
    assert!(shape.1 <= 50);
    for row in det.chunks_exact(6) {
        assert!(row[0] >= 1.0 && row[0] <= 2.0 && row[1] >= 0.01, "{row:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Errors: one line, exit code 1, never a panic

#[test]
fn bad_inputs_give_one_line_errors() {
    let tmp = temp_dir("errors");
    let w = small_weights(&mut Rng::new(8));
    let weights = caffemodel(
        w.iter()
            .map(|(n, bs)| (*n, bs.iter().map(|(d, v)| blob(d, v.clone())).collect()))
            .collect(),
    );
    let good_cm = tmp.join("good.caffemodel");
    std::fs::write(&good_cm, weights.encode_to_vec()).unwrap();
    let good_proto = tmp.join("good.prototxt");
    std::fs::write(&good_proto, NEW_FORM).unwrap();
    let (op, ob) = (tmp.join("o.param"), tmp.join("o.bin"));
    let run_with = |proto: &Path, cm: &Path, needles: &[&str]| {
        fails_with(
            &[
                "import",
                "caffe",
                "--prototxt",
                &s(proto),
                "--caffemodel",
                &s(cm),
                "--out-param",
                &s(&op),
                "--out-bin",
                &s(&ob),
            ],
            needles,
        )
    };
    let write = |name: &str, bytes: &[u8]| {
        let p = tmp.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };

    // The good pair imports.
    let out = eq(&[
        "import",
        "caffe",
        "--prototxt",
        &s(&good_proto),
        "--caffemodel",
        &s(&good_cm),
        "--out-param",
        &s(&op),
        "--out-bin",
        &s(&ob),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Unreadable files.
    run_with(&tmp.join("nope.prototxt"), &good_cm, &["nope.prototxt"]);
    run_with(
        &good_proto,
        &tmp.join("nope.caffemodel"),
        &["nope.caffemodel"],
    );

    // A truncated caffemodel and random bytes.
    let bytes = weights.encode_to_vec();
    let cut = write("cut.caffemodel", &bytes[..bytes.len() - 7]);
    run_with(
        &good_proto,
        &cut,
        &["cut.caffemodel", "malformed caffemodel"],
    );
    let junk = write("junk.caffemodel", &[0xff; 64]);
    run_with(
        &good_proto,
        &junk,
        &["junk.caffemodel", "malformed caffemodel"],
    );

    // Prototxt syntax errors name the line and column.
    let bad = write(
        "bad.prototxt",
        b"name: \"x\"\nlayer {\n  name: \"a\" type \"ReLU\"\n}\n",
    );
    run_with(&bad, &good_cm, &["bad.prototxt", "3:13"]);
    let open = write("open.prototxt", b"layer {\n  name: \"a\"\n");
    run_with(&open, &good_cm, &["open.prototxt", "missing `}`"]);
    let enum_bad = write(
        "enum.prototxt",
        NEW_FORM.replace("pool: MAX", "pool: BIGGEST").as_bytes(),
    );
    run_with(
        &enum_bad,
        &good_cm,
        &["enum.prototxt", "BIGGEST", "MAX, AVE"],
    );

    // Unsupported layer type, named with its layer.
    let unknown = write(
        "unknown.prototxt",
        NEW_FORM
            .replace("type: \"LRN\"", "type: \"Frobnicate\"")
            .as_bytes(),
    );
    run_with(&unknown, &good_cm, &["layer `norm1`", "Frobnicate"]);

    // Missing blobs: a layer without weights, and a bias missing.
    let renamed = write(
        "renamed.prototxt",
        NEW_FORM.replace("name: \"b\"", "name: \"b2\"").as_bytes(),
    );
    run_with(&renamed, &good_cm, &["layer `b2`", "no weights"]);
    let mut no_bias = weights.clone();
    no_bias.layer[1].blobs.truncate(1);
    let no_bias_cm = write("nobias.caffemodel", &no_bias.encode_to_vec());
    run_with(&good_proto, &no_bias_cm, &["layer `a`", "needs 2"]);

    // Shapes that contradict the prototxt, and a blob whose data does not fill its shape.
    let wide = write(
        "wide.prototxt",
        NEW_FORM
            .replace("kernel_size: 1 }", "kernel_size: 3 }")
            .as_bytes(),
    );
    run_with(&wide, &good_cm, &["layer `a`", "does not match"]);
    let mut short = weights.clone();
    short.layer[0].blobs[0].data.pop();
    let short_cm = write("short.caffemodel", &short.encode_to_vec());
    run_with(
        &good_proto,
        &short_cm,
        &["layer `conv1`", "shape [4, 3, 3, 3] but 107 values"],
    );
    let fc = write(
        "fc.prototxt",
        NEW_FORM
            .replace("num_output: 5", "num_output: 7")
            .as_bytes(),
    );
    run_with(&fc, &good_cm, &["layer `fc`", "num_output 7"]);

    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn transposed_inner_product_scale_and_activations() {
    let text = r#"
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 3 dim: 2 } } }
        layer { name: "sc" type: "Scale" bottom: "data" top: "sc" scale_param { bias_term: true } }
        layer { name: "sig" type: "Sigmoid" bottom: "sc" top: "sig" }
        layer { name: "tanh" type: "TanH" bottom: "sig" top: "tanh" }
        layer { name: "abs" type: "AbsVal" bottom: "tanh" top: "abs" }
        layer { name: "flat" type: "Flatten" bottom: "abs" top: "flat" }
        layer { name: "fc" type: "InnerProduct" bottom: "flat" top: "fc"
                inner_product_param { num_output: 3 transpose: true } }
    "#;
    let mut rng = Rng::new(9);
    let (scale, bias) = (rng.vec(2, -2.0, 2.0), rng.vec(2, -1.0, 1.0));
    let wt = rng.vec(12 * 3, -1.0, 1.0); // Caffe's transposed layout: [inputs][outputs]
    let fc_bias = rng.vec(3, -1.0, 1.0);
    let weights = caffemodel(vec![
        (
            "sc",
            vec![blob(&[2], scale.clone()), blob(&[2], bias.clone())],
        ),
        (
            "fc",
            vec![blob(&[12, 3], wt.clone()), blob(&[3], fc_bias.clone())],
        ),
    ]);
    let model = import(text, &weights);
    let x = rng.vec(12, -2.0, 2.0);
    let (_, flat) = run(&model, &[("data", &x)], "flat");
    let want: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let y = f64::from(v) * f64::from(scale[i / 6]) + f64::from(bias[i / 6]);
            (1.0 / (1.0 + (-y).exp())).tanh().abs()
        })
        .collect();
    assert_close(&flat, &want, 1e-6, "scale, sigmoid, tanh, abs");
    let (shape, fc) = run(&model, &[("data", &x)], "fc");
    assert_eq!(shape, (3, 1, 1));
    let want: Vec<f64> = (0..3)
        .map(|o| {
            f64::from(fc_bias[o])
                + (0..12)
                    .map(|k| f64::from(flat[k]) * f64::from(wt[k * 3 + o]))
                    .sum::<f64>()
        })
        .collect();
    assert_close(&fc, &want, 1e-6, "transposed inner product");
}

/// A short stable-toolchain fuzz of the importer (the libFuzzer target in fuzz/ runs longer):
/// mutated prototxts and caffemodels may fail, never panic.
#[test]
fn mutated_models_fail_cleanly() {
    let mut rng = Rng::new(10);
    let w = small_weights(&mut rng);
    let weights = caffemodel(
        w.iter()
            .map(|(n, bs)| (*n, bs.iter().map(|(d, v)| blob(d, v.clone())).collect()))
            .collect(),
    )
    .encode_to_vec();
    let texts = [NEW_FORM.as_bytes(), V1_FORM.as_bytes()];
    // Uniform in 0..n.
    let below = |rng: &mut Rng, n: usize| (rng.next_u64() % n as u64) as usize;
    let mutate = |src: &[u8], rng: &mut Rng| -> Vec<u8> {
        let mut v = src.to_vec();
        for _ in 0..1 + below(rng, 8) {
            if v.is_empty() {
                break;
            }
            let at = below(rng, v.len());
            match below(rng, 4) {
                0 => v[at] = below(rng, 256) as u8,
                1 => v.truncate(at),
                2 => {
                    v.remove(at);
                }
                _ => {
                    // Repeat a slice: duplicated layers, fields and nesting.
                    let end = (at + 1 + below(rng, 64)).min(v.len());
                    let piece = v[at..end].to_vec();
                    v.splice(at..at, piece);
                }
            }
        }
        v
    };
    let good_text = prototxt::parse(NEW_FORM).unwrap();
    let good_weights = eq_tools::import::caffe::decode_caffemodel(&weights).unwrap();
    for i in 0..20_000 {
        let text = mutate(texts[i % 2], &mut rng);
        let text = String::from_utf8_lossy(&text);
        if let Ok(net) = prototxt::parse(&text) {
            if let Ok(model) = convert(&net, &good_weights) {
                let _ = model.param.to_text();
            }
        }
        let bytes = mutate(&weights, &mut rng);
        if let Ok(w) = eq_tools::import::caffe::decode_caffemodel(&bytes) {
            if let Ok(model) = convert(&good_text, &w) {
                let _ = model.param.to_text();
            }
        }
    }
}
