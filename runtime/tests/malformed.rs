//! Malformed model files must fail to load with a message that says what is wrong, and
//! never panic. Text cases live in `tests/malformed/` (each `X.param`, with `X.bin` when the
//! case is about weights, else `empty.bin`); binary `.param.bin` cases are built here.

use eq_runtime::model::weights::{Source, WeightReader};
use eq_runtime::{Net, Options};
use std::path::PathBuf;
use std::sync::Arc;

fn corpus(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/malformed")
        .join(name)
}

/// Loads `X.param` (+ `X.bin` or an empty weight file) and returns the error text.
fn load_error(case: &str) -> String {
    let bin = corpus(&format!("{case}.bin"));
    let bin = if bin.exists() {
        bin
    } else {
        corpus("empty.bin")
    };
    let param = corpus(&format!("{case}.param"));
    let loaded = std::panic::catch_unwind(|| Net::load(&param, &bin, &Options::default()));
    match loaded {
        Ok(Ok(_)) => panic!("{case}: loaded, expected an error"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => panic!("{case}: the loader panicked"),
    }
}

#[test]
fn text_param_cases() {
    let cases = [
        ("wrong_magic", "wrong magic 7767516"),
        (
            "deconv_kernel_overflow",
            "num_output / group * kernel_h * kernel_w overflows",
        ),
        ("truncated_header", "truncated header: missing blob count"),
        ("layer_count_too_large", "expected 3 layers, found 2"),
        (
            "blob_count_mismatch",
            "header declares 1 blobs but the layers name 2",
        ),
        ("bad_key", "parameter key 40 out of range"),
        ("bad_int", "bad integer in `0=4x`"),
        ("bad_float", "bad float in `0=0.1.2`"),
        ("array_count_mismatch", "declares 3 elements, has 2"),
        (
            "unknown_type",
            "layer `frob` (Frobnicate): unknown layer type `Frobnicate`",
        ),
        (
            "param_not_key_value",
            "param_not_key_value.param:4: layer `relu`: expected a key=value parameter, found `slope`",
        ),
        (
            "duplicate_output_blob",
            "output blob `out` is already produced by layer `relu1`",
        ),
        (
            "input_never_produced",
            "input blob `nowhere` is not produced by any layer",
        ),
        ("cycle", "is part of a cycle"),
        (
            "bad_expression",
            "layer `re` (Reshape): key 6: expression `*(0w,-(2))`: `-` lacks operands",
        ),
        (
            "expression_division_by_zero",
            "layer `up` (Interp): expression `*(0w,2),//(0h,-(0c,2))`: integer division by zero",
        ),
        (
            "expression_missing_input",
            "layer `re` (Reshape): expects 2 input blob(s), got 1",
        ),
        ("absurd_input_shape", "layer `data` (Input): blob shape"),
        (
            "bin_too_long",
            "8 bytes left after the last layer's weights",
        ),
        (
            "detection_shape_mismatch",
            "layer `det` (DetectionOutput): conf input",
        ),
        (
            "interp_empty_output",
            "layer `up` (Interp): output width 0 for input [w=2 h=2 c=3] is not positive",
        ),
        (
            "crop_outside_input",
            "layer `crop` (Crop): crop box (offsets [4, 0, 0, 0], size [0, 3, 1, 2]",
        ),
        (
            "slice_too_long",
            "layer `cut` (Slice): parts Slices([4, 2]) of axis 0 do not fit",
        ),
        (
            "padding_reflect_too_wide",
            "layer `pad` (Padding): reflect padding (1, 0) must be smaller",
        ),
        ("tile_zero_repeat", "layer `tile` (Tile): repeats (key 2)"),
        (
            "deconv_output_size_without_same",
            "layer `up` (Deconvolution): output_w / output_h (keys 20 / 21) need pads",
        ),
        (
            // ncnn reads the mask as float bits: 1 and 2 are denormals, not indices.
            "yolo_mask_small_ints",
            "layer `det` (Yolov3DetectionOutput): mask (key 5) entry 1e-45",
        ),
        (
            "psroi_channel_mismatch",
            "layer `ps` (PSROIPooling): feature input [w=4 h=4 c=11] must be 3-D with \
             output_dim x pooled_h x pooled_w = 12 channels",
        ),
        (
            "proposal_score_channels",
            "layer `prop` (Proposal): score input [w=3 h=3 c=9] must be 3-D with 18 channels",
        ),
        (
            "requantize_missing_scales",
            "layer `rq`: scale_in_data: needs 4 bytes",
        ),
        (
            "yolo_region_biases_short",
            "layer `det` (YoloDetectionOutput): biases (key 4) has 4 values; num_box = 5",
        ),
        (
            "roipooling_no_size",
            "layer `pool` (ROIPooling): pooled_width (key 0) is 0",
        ),
    ];
    let mut failures = Vec::new();
    for (case, want) in cases {
        let got = load_error(case);
        if !got.contains(want) {
            failures.push(format!("{case}: `{got}` does not contain `{want}`"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn errors_name_the_file_and_line() {
    let e = load_error("bad_int");
    assert!(e.contains("bad_int.param:3:"), "{e}");
    let e = load_error("duplicate_output_blob");
    assert!(e.contains("duplicate_output_blob.param:"), "{e}");
}

/// A `.param.bin` under construction: little-endian words.
#[derive(Default)]
struct ParamBin(Vec<u8>);

impl ParamBin {
    fn new(layers: i32, blobs: i32) -> ParamBin {
        ParamBin::default().int(7_767_517).int(layers).int(blobs)
    }
    fn int(mut self, v: i32) -> ParamBin {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn ints(self, vs: &[i32]) -> ParamBin {
        vs.iter().fold(self, |p, &v| p.int(v))
    }
    fn float(self, v: f32) -> ParamBin {
        self.int(v.to_bits() as i32)
    }
    /// Layer header: type index, bottoms, tops (blob numbers).
    fn layer(self, kind: i32, bottoms: &[i32], tops: &[i32]) -> ParamBin {
        self.int(kind)
            .int(bottoms.len() as i32)
            .int(tops.len() as i32)
            .ints(bottoms)
            .ints(tops)
    }
    fn end(self) -> ParamBin {
        self.int(-233)
    }
}

const INPUT: i32 = 16;
const RELU: i32 = 26;

/// Input (blob 0, w = 4) -> ReLU (blob 1): a valid two-layer model.
fn valid_bin() -> ParamBin {
    ParamBin::new(2, 2)
        .layer(INPUT, &[], &[0])
        .ints(&[0, 4])
        .end()
        .layer(RELU, &[0], &[1])
        .end()
}

fn bin_error(bytes: &[u8]) -> String {
    match std::panic::catch_unwind(|| Net::from_memory(bytes, &[], &Options::default())) {
        Ok(Ok(_)) => panic!("loaded, expected an error"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => panic!("the loader panicked on {bytes:?}"),
    }
}

#[test]
fn binary_param_cases() {
    let mut net = Net::from_memory(&valid_bin().0, &[], &Options::default()).unwrap();
    net.set_input("0", &[-1.0, 2.0, -3.0, 4.0]).unwrap();
    net.run().unwrap();
    assert_eq!(net.blob("1").unwrap().data, &[0.0, 2.0, 0.0, 4.0]);

    let valid = valid_bin().0;
    let mut wrong_magic = valid.clone();
    wrong_magic[0] = 0xff;
    // ncnn ignores bytes after the declared layers, and so do we.
    let mut trailing = valid.clone();
    trailing.extend_from_slice(&[0; 12]);
    assert!(Net::from_memory(&trailing, &[], &Options::default()).is_ok());
    // A string parameter (key 7 = "ab": id -23407, length, padded bytes), as ncnn reads it.
    let with_string = ParamBin::new(2, 2)
        .layer(INPUT, &[], &[0])
        .ints(&[0, 4, -23407, 2, i32::from_le_bytes(*b"ab\0\0")])
        .end()
        .layer(RELU, &[0], &[1])
        .end();
    assert!(Net::from_memory(&with_string.0, &[], &Options::default()).is_ok());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("wrong magic", wrong_magic, "wrong magic"),
        (
            "truncated header",
            ParamBin::default().ints(&[7_767_517, 2]).0,
            "truncated at byte 8: missing blob count",
        ),
        (
            "layer count larger than the records",
            ParamBin::new(3, 2)
                .layer(INPUT, &[], &[0])
                .end()
                .layer(RELU, &[0], &[1])
                .end()
                .0,
            "missing layer type",
        ),
        (
            "truncated in a record",
            valid[..valid.len() - 6].to_vec(),
            "truncated at byte",
        ),
        (
            // ncnn accepts more declared blobs than used, not fewer.
            "blob count too small",
            ParamBin::new(2, 1)
                .layer(INPUT, &[], &[0])
                .end()
                .layer(RELU, &[0], &[1])
                .end()
                .0,
            "blob index 1 out of range 0..1",
        ),
        (
            "blob index out of range",
            ParamBin::new(1, 1).layer(INPUT, &[], &[5]).end().0,
            "blob index 5 out of range 0..1",
        ),
        (
            "unknown type index",
            ParamBin::new(1, 1).layer(999, &[], &[0]).end().0,
            "unknown layer type index 999",
        ),
        (
            "key 40",
            ParamBin::new(1, 1)
                .layer(INPUT, &[], &[0])
                .ints(&[40, 1])
                .end()
                .0,
            "parameter id 40 out of range",
        ),
        (
            "array key out of range",
            ParamBin::new(1, 1)
                .layer(INPUT, &[], &[0])
                .ints(&[-23340, 1, 7])
                .end()
                .0,
            "parameter id -23340 out of range",
        ),
        (
            "array longer than the file",
            ParamBin::new(1, 1)
                .layer(INPUT, &[], &[0])
                .ints(&[-23300, 5])
                .float(1.0)
                .float(2.0)
                .0,
            "array length 5 exceeds the file",
        ),
        (
            "truncated in a string",
            ParamBin::new(1, 1)
                .layer(INPUT, &[], &[0])
                .ints(&[-23400, 10, 0x6161_6161])
                .0,
            "truncated string",
        ),
        (
            "negative string length",
            ParamBin::new(1, 1)
                .layer(INPUT, &[], &[0])
                .ints(&[-23400, -1])
                .0,
            "string length -1 out of range",
        ),
        (
            "most negative parameter id",
            ParamBin::new(1, 1)
                .layer(INPUT, &[], &[0])
                .ints(&[i32::MIN, 1])
                .end()
                .0,
            "out of range",
        ),
        (
            "absurd Input dimensions",
            ParamBin::new(1, 1)
                .layer(INPUT, &[], &[0])
                .ints(&[0, 100_000, 1, 100_000, 2, 100_000])
                .end()
                .0,
            "exceeds 1073741824 elements",
        ),
        (
            "cycle",
            ParamBin::new(3, 4)
                .layer(INPUT, &[], &[0])
                .ints(&[0, 4])
                .end()
                .layer(33, &[3], &[1, 2])
                .end()
                .layer(RELU, &[1], &[3])
                .end()
                .0,
            "is part of a cycle",
        ),
    ];
    let mut failures = Vec::new();
    for (case, bytes, want) in cases {
        let got = bin_error(&bytes);
        if !got.contains(want) {
            failures.push(format!("{case}: `{got}` does not contain `{want}`"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn truncated_weights_name_the_layer() {
    // No op in this branch reads weights yet, so this drives the reader the net uses
    // directly, as a layer's constructor would.
    let bytes = [0u8; 10];
    let mut r = WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "model.bin");
    r.set_layer("conv1");
    r.raw(2, "bias").unwrap();
    let e = r.tagged(4, "weight").unwrap_err().to_string();
    assert!(e.contains("model.bin: layer `conv1`: weight flag"), "{e}");
    let mut r = WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "model.bin");
    r.set_layer("fc");
    let e = r.raw(3, "bias").unwrap_err().to_string();
    assert!(
        e.contains("layer `fc`: bias: needs 12 bytes at offset 0, only 10 left"),
        "{e}"
    );
}

#[test]
fn not_a_param_file_at_all() {
    let e = bin_error(&[0xff, 0xfe, 0x00, 0x80, 1, 2, 3]);
    assert!(e.contains("neither a text param"), "{e}");
    let e = bin_error(b"");
    assert!(e.contains("truncated header: missing magic"), "{e}");
    let e = bin_error(b"hello world");
    assert!(
        e.contains("magic: expected an integer, found `hello`"),
        "{e}"
    );
}

/// A one-convolution int8 model (2 outputs, 1 input channel, 1x1 kernel): the param line gets
/// `extra` keys; the weight file is int8 weights, then bias-free scales as given.
fn int8_conv_error(extra: &str, weights: &[i8], scales: &[f32]) -> String {
    let param = format!(
        "7767517\n2 2\nInput data 0 1 data 0=2 1=2 2=1\n\
         Convolution conv 1 1 data out 0=2 1=1 6=2 {extra}\n"
    );
    let mut bin = 0x000D_4B38u32.to_le_bytes().to_vec();
    bin.extend(weights.iter().map(|&v| v as u8));
    while !bin.len().is_multiple_of(4) {
        bin.push(0);
    }
    for s in scales {
        bin.extend_from_slice(&s.to_le_bytes());
    }
    match std::panic::catch_unwind(|| Net::from_memory(param.as_bytes(), &bin, &Options::default()))
    {
        Ok(Ok(_)) => panic!("{extra} {weights:?} {scales:?}: loaded, expected an error"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => panic!("{extra}: the loader panicked"),
    }
}

#[test]
fn bad_int8_scales_and_weights() {
    let ok = [1.0f32, 2.0, 3.0];
    let cases: Vec<(&str, Vec<i8>, Vec<f32>, &str)> = vec![
        (
            "8=2",
            vec![1, 2],
            vec![1.0, 2.0, 0.0],
            "bottom blob int8 scale is 0",
        ),
        (
            "8=2",
            vec![1, 2],
            vec![1.0, 2.0, -4.0],
            "bottom blob int8 scale is -4",
        ),
        (
            "8=2",
            vec![1, 2],
            vec![-1.0, 2.0, 3.0],
            "weight int8 scale 0 is -1",
        ),
        (
            "8=2",
            vec![1, 2],
            vec![1.0, f32::NAN, 3.0],
            "weight int8 scale 1 is NaN",
        ),
        (
            "8=2",
            vec![1, 2],
            vec![1.0, f32::INFINITY, 3.0],
            "weight int8 scale 1 is inf",
        ),
        (
            "8=102",
            vec![1, 2],
            vec![1.0, 2.0, 3.0, f32::NAN],
            "top blob int8 scale is NaN",
        ),
        (
            "8=2",
            vec![1, 2],
            vec![0.0, 2.0, 3.0],
            "weight scale 0 but non-zero weights",
        ),
        (
            "8=2",
            vec![1, 2],
            vec![1.0, 2.0],
            "bottom int8 scale: needs 4 bytes",
        ),
        ("8=2 27=7", vec![64, 2], ok.to_vec(), "outside ±63"),
        ("8=2 27=6", vec![1, 2], ok.to_vec(), "expected 8 or 7"),
        ("8=3", vec![1, 2], ok.to_vec(), "int8_scale_term (key 8) 3"),
        (
            "",
            vec![1, 2],
            vec![],
            "int8-tagged weights but int8_scale_term (key 8) is 0",
        ),
    ];
    let mut failures = Vec::new();
    for (extra, w, s, want) in cases {
        let got = int8_conv_error(extra, &w, &s);
        if !got.contains(want) || !got.contains("conv") {
            failures.push(format!("{extra} {s:?}: `{got}` does not contain `{want}`"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A model whose blob memory exceeds `Options::memory_limit` is a load error giving the
/// sizes; the same model loads under a larger limit. Thread counts are capped.
#[test]
fn memory_limit_and_thread_cap() {
    // Input 3x512x512 and a ReLU copy kept: 2 x 3 MiB of blobs.
    let param = "7767517\n3 4\nInput data 0 1 data 0=512 1=512 2=3\nSplit s 1 2 data a b\n\
                 ReLU relu 1 1 a out\n";
    let with_limit = |limit: Option<usize>| Options {
        memory_limit: limit,
        keep_all_blobs: true,
        ..Options::default()
    };
    let Err(err) = Net::from_memory(param.as_bytes(), &[], &with_limit(Some(1 << 20))) else {
        panic!("loaded over the memory limit");
    };
    let err = err.to_string();
    assert!(err.contains("more than the memory limit of 1 MiB"), "{err}");
    assert!(Net::from_memory(param.as_bytes(), &[], &with_limit(Some(64 << 20))).is_ok());
    assert!(Net::from_memory(param.as_bytes(), &[], &with_limit(None)).is_ok());
    let threads = Options {
        threads: 1_000_000,
        ..Options::default()
    };
    let Err(err) = Net::from_memory(param.as_bytes(), &[], &threads) else {
        panic!("loaded with a million threads");
    };
    assert!(err.to_string().contains("at most 256"), "{err}");
}
