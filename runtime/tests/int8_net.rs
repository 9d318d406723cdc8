//! Int8 data flow through a whole net: int8 blobs only between requantizing layers and
//! quantized readers that share one grid (directly or through Splits and other ops that carry
//! int8 values unchanged); every other reader gets fp32. Also: the decisions on ncnn's int8
//! benchmark models, INT8 / INT7 outputs of a small seeded model against its FP32 run, and
//! an INT8 producer feeding an INT7 reader.

use eq_runtime::quant::Precision;
use eq_runtime::rng::Rng;
use eq_runtime::{Net, Options, PrecisionChoice};
use std::path::PathBuf;

fn shared_dir() -> PathBuf {
    std::env::var_os("EQ_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// Layers of the small model: (line, weight count, output channels, requantized?).
/// conv0 (102) feeds a Split into conv1 and conv2: int8. conv1 (102) feeds a ReLU: fp32.
/// conv2 (102) is a net output: fp32. conv3 (102) feeds InnerProduct: fp32 (ncnn's
/// InnerProduct never reads int8). dw (101) feeds conv3: int8.
const PARAM: &str = "7767517
9 10
Input data 0 1 data 0=12 1=10 2=3
Convolution conv0 1 1 data c0 0=8 1=3 4=1 5=1 6=216 8=102 9=1
Split split 1 2 c0 s0 s1
Convolution conv1 1 1 s0 c1 0=8 1=1 5=1 6=64 8=102
ReLU relu 1 1 c1 r1
ConvolutionDepthWise dw 1 1 r1 d1 0=8 1=3 4=1 5=1 6=72 7=8 8=101 9=1
Convolution conv2 1 1 s1 c2 0=4 1=3 4=1 5=1 6=288 8=102
Convolution conv3 1 1 d1 c3 0=6 1=1 5=1 6=48 8=102 9=1
InnerProduct fc 1 1 c3 out 0=5 1=1 2=3600 8=2
";

/// (weights, output channels, weight-scale count, top scale?) per quantized layer in order.
const LAYERS: [(usize, usize, usize, bool); 6] = [
    (216, 8, 8, true),
    (64, 8, 8, true),
    (72, 8, 8, true),
    (288, 4, 4, true),
    (48, 6, 6, true),
    (3600, 5, 5, false),
];

/// Seeded weights, int8-tagged, with scales that keep activations in range.
fn weights(bits: Precision) -> Vec<u8> {
    let mut rng = Rng::new(99);
    let q = bits.qmax() as i64;
    let mut b = Vec::new();
    for (n, outch, nscales, top) in LAYERS {
        b.extend_from_slice(&0x000D_4B38u32.to_le_bytes());
        b.extend((0..n).map(|_| rng.range(-q, q) as i8 as u8));
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        let mut floats: Vec<f32> = rng.vec(outch, -0.5, 0.5);
        floats.extend((0..nscales).map(|_| q as f32 / rng.uniform(0.5, 1.0)));
        // Every blob scale alike: a top scale is its reader's bottom scale, as ncnn2int8 writes.
        floats.push(q as f32 / 8.0);
        if top {
            floats.push(q as f32 / 8.0);
        }
        floats
            .iter()
            .for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
    }
    b
}

fn load(bits: Precision, precision: PrecisionChoice, threads: usize) -> Net {
    let opts = Options {
        precision,
        threads,
        keep_all_blobs: true,
        ..Options::default()
    };
    let param = if bits == Precision::Int7 {
        // Mark every quantized layer as 7-bit.
        PARAM
            .lines()
            .map(|l| {
                if l.contains(" 8=") {
                    format!("{l} 27=7")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        PARAM.to_string()
    };
    Net::from_memory(param.as_bytes(), &weights(bits), &opts).unwrap()
}

fn run(net: &mut Net) -> Vec<f32> {
    let mut rng = Rng::new(1);
    let x = rng.vec(3 * 10 * 12, -1.0, 1.0);
    net.set_input("data", &x).unwrap();
    net.run().unwrap();
    net.blob("out").unwrap().data.to_vec()
}

#[test]
fn int8_blobs_only_between_quantized_convolutions() {
    let net = load(Precision::Int8, PrecisionChoice::Auto, 1);
    let int8: Vec<&str> = [
        "data", "c0", "s0", "s1", "c1", "r1", "d1", "c2", "c3", "out",
    ]
    .into_iter()
    .filter(|b| net.is_int8_blob(b).unwrap())
    .collect();
    // conv1 -> ReLU -> dw: ReLU carries int8, so c1 and r1 are int8 too.
    assert_eq!(int8, ["c0", "s0", "s1", "c1", "r1", "d1"]);
    assert!(net.blob("c0").unwrap_err().to_string().contains("int8"));
    // The dequantized view of an int8 blob is on the producer's output grid.
    let (_, c0) = net.blob_f32("c0").unwrap();
    let top = 127.0 / 8.0;
    assert!(c0
        .iter()
        .all(|v| ((v * top).round() - v * top).abs() < 1e-3));
    assert_eq!(
        net.layer_precisions().iter().flatten().count(),
        6,
        "every scaled layer runs quantized"
    );
    let fp32 = load(Precision::Int8, PrecisionChoice::Fp32, 1);
    assert!(fp32.layer_precisions().iter().all(Option::is_none));
    assert!(!fp32.is_int8_blob("c0").unwrap());
}

/// max |a − b| / max |b|.
fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let max = b.iter().map(|v| v.abs()).fold(0f32, f32::max);
    (diff / max) as f64
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn quantized_runs_track_fp32_and_threads_agree() {
    for bits in [Precision::Int8, Precision::Int7] {
        let want = run(&mut load(bits, PrecisionChoice::Fp32, 1));
        let auto = run(&mut load(bits, PrecisionChoice::Auto, 1));
        let forced = match bits {
            Precision::Int8 => PrecisionChoice::Int8,
            Precision::Int7 => PrecisionChoice::Int7,
        };
        assert_eq!(auto, run(&mut load(bits, forced, 1)), "auto follows 27=");
        assert_eq!(auto, run(&mut load(bits, PrecisionChoice::Auto, 3)));
        let cos = cosine(&auto, &want);
        assert!(cos > 0.98, "{bits:?}: cosine to fp32 {cos}");
        // The float simulation of the same quantization: equal up to fp32 rounding, which
        // can move a value across a rounding boundary (one step of a grid) now and then.
        let sim = run(&mut load(bits, PrecisionChoice::Simulate, 1));
        let err = relative_error(&auto, &sim);
        eprintln!("{bits:?}: integer vs float simulation {err:.2e}, cosine to fp32 {cos:.5}");
        assert!(
            err < 1e-2,
            "{bits:?}: integer run vs float simulation {err}"
        );
    }
    // INT7 kernels on the INT8 model: its weights go past ±63.
    let opts = Options {
        precision: PrecisionChoice::Int7,
        ..Options::default()
    };
    let e = Net::from_memory(PARAM.as_bytes(), &weights(Precision::Int8), &opts).unwrap_err();
    assert!(e.to_string().contains("outside ±63"), "{e}");
}

#[test]
fn benchmark_int8_models_keep_int8_between_convolutions() {
    let path = shared_dir().join("models/ncnn-benchmark/squeezenet_int8.param");
    if !path.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{path:?} missing"
        );
        return;
    }
    let net = Net::load_zero_weights(&path, &Options::default()).unwrap();
    // Each fire module: squeeze (8=102) -> Split -> expand 1x1 / 3x3 -> Concat -> (max pool)
    // -> the next squeeze: int8 all the way (the expands write on the next squeeze's grid);
    // fire9's concat feeds conv10, also int8.
    for fire in 2..=9 {
        let squeeze = format!("fire{fire}/squeeze1x1_fire{fire}/relu_squeeze1x1");
        assert!(net.is_int8_blob(&squeeze).unwrap(), "{squeeze}");
        assert!(net.is_int8_blob(&format!("{squeeze}_splitncnn_0")).unwrap());
        let expand = format!("fire{fire}/expand1x1_fire{fire}/relu_expand1x1");
        assert!(net.is_int8_blob(&expand).unwrap(), "{expand}");
        let concat = if fire == 9 {
            "fire9/concat_drop9".to_string()
        } else {
            format!("fire{fire}/concat")
        };
        assert!(net.is_int8_blob(&concat).unwrap(), "{concat}");
    }
    for pool in ["pool1", "pool3", "pool5"] {
        assert!(net.is_int8_blob(pool).unwrap(), "{pool}");
    }
    // conv10 feeds the global average pool (not int8): fp32 from there on.
    assert!(!net.is_int8_blob("conv10_relu_conv10").unwrap());
    assert!(net
        .layer_precisions()
        .iter()
        .flatten()
        .all(|p| *p == Precision::Int8));
}

/// An INT8 producer feeding an INT7 reader writes on the reader's grid: clamped to ±63, not
/// ±127 (7-bit kernels sum 8 products per int16 lane and would overflow on ±127 inputs).
/// The result is exactly the fp32 hand-off, where the reader quantizes for itself.
#[test]
fn int8_producer_writes_on_an_int7_readers_grid() {
    // conv_a: INT8, 4 -> 6 channels, 3x3, weights all ±127 so its outputs saturate the reader's
    // grid; conv_b: INT7 (27=7), 6 -> 5, 1x1. `side`: a Sigmoid also reads conv_a, which forces
    // the fp32 hand-off.
    let net_param = |side: bool| {
        format!(
            "7767517\n{} {}\nInput data 0 1 data 0=7 1=6 2=4\n\
             Convolution conv_a 1 1 data a 0=6 1=3 4=1 5=1 6=216 8=102 9=0\n\
             {}Convolution conv_b 1 1 {} b 0=5 1=1 5=1 6=30 8=2 27=7\n{}",
            if side { 5 } else { 3 },
            if side { 6 } else { 3 },
            if side {
                "Split split 1 2 a a0 a1\n"
            } else {
                ""
            },
            if side { "a0" } else { "a" },
            if side {
                "Sigmoid sig 1 1 a1 side\n"
            } else {
                ""
            },
        )
    };
    let mut rng = Rng::new(5);
    let mut bin = Vec::new();
    let push_f32 =
        |b: &mut Vec<u8>, v: &[f32]| v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
    // conv_a: int8 weights ±127, bias, 6 weight scales, bottom, top (= conv_b's bottom).
    bin.extend_from_slice(&0x000D_4B38u32.to_le_bytes());
    bin.extend((0..216).map(|i| if i % 3 == 0 { -127i8 as u8 } else { 127 }));
    push_f32(&mut bin, &rng.vec(6, -0.5, 0.5));
    push_f32(&mut bin, &[127.0; 6]);
    let b_bottom = 63.0 / 0.5;
    push_f32(&mut bin, &[127.0 / 2.0, b_bottom]);
    // conv_b: 7-bit weights, bias, 5 weight scales, bottom.
    bin.extend_from_slice(&0x000D_4B38u32.to_le_bytes());
    bin.extend((0..30).map(|_| rng.range(-63, 63) as i8 as u8));
    while !bin.len().is_multiple_of(4) {
        bin.push(0);
    }
    push_f32(&mut bin, &rng.vec(5, -0.5, 0.5));
    push_f32(&mut bin, &[63.0 / 0.3; 5]);
    push_f32(&mut bin, &[b_bottom]);

    let opts = Options {
        keep_all_blobs: true,
        ..Options::default()
    };
    let x = rng.vec(4 * 6 * 7, -2.0, 2.0);
    let mut outs = Vec::new();
    for side in [false, true] {
        let mut net = Net::from_memory(net_param(side).as_bytes(), &bin, &opts).unwrap();
        assert_eq!(
            net.layer_precisions()
                .iter()
                .flatten()
                .copied()
                .collect::<Vec<_>>(),
            [Precision::Int8, Precision::Int7]
        );
        net.set_input("data", &x).unwrap();
        net.run().unwrap();
        assert_eq!(net.is_int8_blob("a").unwrap(), !side);
        let (_, a) = net.blob_f32("a").unwrap();
        if !side {
            let q: Vec<f32> = a.iter().map(|v| (v * b_bottom).round()).collect();
            assert!(
                q.iter().all(|v| v.abs() <= 63.0),
                "clamped to the INT7 grid"
            );
            assert!(
                q.iter().any(|v| v.abs() == 63.0),
                "the test saturates the grid"
            );
        }
        outs.push(net.blob("b").unwrap().data.to_vec());
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&outs[0]),
        bits(&outs[1]),
        "int8 hand-off == fp32 hand-off"
    );
}

/// Readers on different grids: the producer writes fp32 and each reader quantizes for itself.
#[test]
fn readers_on_different_grids_get_fp32() {
    let param = "7767517\n5 6\nInput data 0 1 data 0=5 1=5 2=2\n\
                 Convolution c0 1 1 data c 0=4 1=1 5=0 6=8 8=102\n\
                 Split split 1 2 c s0 s1\n\
                 Convolution c1 1 1 s0 o1 0=3 1=1 5=0 6=12 8=2\n\
                 Convolution c2 1 1 s1 o2 0=3 1=1 5=0 6=12 8=2\n";
    let layer = |n: usize, outch: usize, bottom: f32, top: Option<f32>| {
        let mut b = 0x000D_4B38u32.to_le_bytes().to_vec();
        b.extend((0..n).map(|i| (i % 7) as u8));
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        let mut f = vec![100.0f32; outch];
        f.push(bottom);
        f.extend(top);
        f.iter().for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
        b
    };
    for (b1, b2, int8) in [(20.0, 20.0, true), (20.0, 21.0, false)] {
        let mut bin = layer(8, 4, 50.0, Some(b1));
        bin.extend(layer(12, 3, b1, None));
        bin.extend(layer(12, 3, b2, None));
        let net = Net::from_memory(param.as_bytes(), &bin, &Options::default()).unwrap();
        for blob in ["c", "s0", "s1"] {
            assert_eq!(
                net.is_int8_blob(blob).unwrap(),
                int8,
                "{blob} bottoms {b1} {b2}"
            );
        }
    }
}
