use super::*;
use crate::model::paramdict::Value;
use crate::model::weights::Source;
use crate::rng::Rng;
use std::sync::Arc;

/// A Convolution built through the real param / weight-file path.
struct Case {
    outch: usize,
    inch: usize,
    kw: usize,
    kh: usize,
    dw: usize,
    dh: usize,
    sw: usize,
    sh: usize,
    /// left, right, top, bottom (or all -233 / -234).
    pads: [i32; 4],
    pad_value: f32,
    bias: bool,
    act: (i32, Vec<f32>),
}

impl Case {
    fn simple(outch: usize, inch: usize, k: usize) -> Case {
        Case {
            outch,
            inch,
            kw: k,
            kh: k,
            dw: 1,
            dh: 1,
            sw: 1,
            sh: 1,
            pads: [0; 4],
            pad_value: 0.0,
            bias: false,
            act: (0, vec![]),
        }
    }

    fn params(&self) -> ParamDict {
        let mut pd = ParamDict::new();
        let wds = self.outch * self.inch * self.kw * self.kh;
        let ints = [
            (0, self.outch as i32),
            (1, self.kw as i32),
            (11, self.kh as i32),
            (2, self.dw as i32),
            (12, self.dh as i32),
            (3, self.sw as i32),
            (13, self.sh as i32),
            (4, self.pads[0]),
            (15, self.pads[1]),
            (14, self.pads[2]),
            (16, self.pads[3]),
            (5, self.bias as i32),
            (6, wds as i32),
            (9, self.act.0),
        ];
        for (k, v) in ints {
            pd.set(k, Value::Int(v)).unwrap();
        }
        pd.set(18, Value::Float(self.pad_value)).unwrap();
        pd.set(10, Value::FloatArray(self.act.1.clone())).unwrap();
        pd
    }

    /// fp32 weight file: tag 0, weights, bias.
    fn weight_file(&self, rng: &mut Rng) -> (Vec<f32>, Vec<f32>, Vec<u8>) {
        let weights = rng.vec(self.outch * self.inch * self.kw * self.kh, -1.0, 1.0);
        let bias = if self.bias {
            rng.vec(self.outch, -1.0, 1.0)
        } else {
            vec![]
        };
        let mut bytes = 0u32.to_le_bytes().to_vec();
        for v in weights.iter().chain(&bias) {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        (weights, bias, bytes)
    }

    fn build(&self, bytes: &[u8], kernel: Kernel) -> Convolution {
        let mut wr = WeightReader::new(Arc::new(Source::from_bytes(bytes)), "test.bin");
        let conv = Convolution::with_kernel(&self.params(), &mut wr, kernel).unwrap();
        wr.finish().unwrap();
        conv
    }
}

fn run_fast(conv: &Convolution, input: &Tensor, threads: usize) -> (Shape, Vec<f32>) {
    let out_shape = conv.output_shapes(&[input.shape]).unwrap()[0];
    let pool = Pool::new(threads).unwrap();
    let mut scratch = vec![f32::NAN; conv.scratch_len(&[input.shape], &[out_shape]) * threads];
    let mut out = vec![f32::NAN; out_shape.len()];
    let mut ctx = Ctx {
        pool: &pool,
        scratch: &mut scratch,
    };
    let mut outs = [TensorMut {
        shape: out_shape,
        data: &mut out,
    }];
    conv.forward(&[*input], &mut outs, &mut ctx).unwrap();
    (out_shape, out)
}

fn run_reference(conv: &Convolution, input: &Tensor) -> Vec<f32> {
    let out_shape = conv.output_shapes(&[input.shape]).unwrap()[0];
    let mut out = vec![f32::NAN; out_shape.len()];
    conv.forward_reference(
        input,
        &mut TensorMut {
            shape: out_shape,
            data: &mut out,
        },
    )
    .unwrap();
    out
}

fn kernels() -> Vec<Kernel> {
    let mut v = vec![Kernel::generic()];
    v.extend(Kernel::supported_simd());
    v
}

/// Fast path (each kernel) against the reference; tolerance 1e-5 of max |pre-activation|.
fn compare(case: &Case, w: usize, h: usize, rng: &mut Rng) {
    let (_, _, bytes) = case.weight_file(rng);
    let input_data = rng.vec(case.inch * w * h, -1.0, 1.0);
    let input = Tensor {
        shape: Shape::d3(w, h, case.inch),
        data: &input_data,
    };
    let mut scale_case = case.params();
    scale_case.set(9, Value::Int(0)).unwrap();
    let mut wr = WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "t");
    let linear = Convolution::new(&scale_case, &mut wr).unwrap();
    let max = run_reference(&linear, &input)
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-6);
    for kernel in kernels() {
        let conv = case.build(&bytes, kernel);
        let want = run_reference(&conv, &input);
        let (_, got) = run_fast(&conv, &input, 1 + rng.range(0, 2) as usize);
        for (i, (g, r)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - r).abs() <= 1e-5 * max,
                "{}: in {w}x{h}x{} out {} k {}x{} s {}x{} d {}x{} pads {:?} act {:?} at {i}: {g} vs {r}",
                kernel.name,
                case.inch,
                case.outch,
                case.kw,
                case.kh,
                case.sw,
                case.sh,
                case.dw,
                case.dh,
                case.pads,
                case.act
            );
        }
    }
}

#[test]
fn hand_checked_2x2_with_bias_and_pad() {
    // in (1 channel, 3x3) = 1..9, kernel 2x2 [[1, 0], [0, -1]], bias 0.5, pad 1 all sides,
    // pad_value 10: out[y][x] = in(y-1, x-1) - in(y, x) + 0.5.
    let mut c = Case::simple(1, 1, 2);
    c.pads = [1; 4];
    c.pad_value = 10.0;
    c.bias = true;
    let mut bytes = 0u32.to_le_bytes().to_vec();
    for v in [1.0f32, 0.0, 0.0, -1.0, 0.5] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let input: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let t = Tensor {
        shape: Shape::d3(3, 3, 1),
        data: &input,
    };
    let at = |y: isize, x: isize| {
        if (0..3).contains(&y) && (0..3).contains(&x) {
            input[(y * 3 + x) as usize]
        } else {
            10.0
        }
    };
    let mut want = Vec::new();
    for y in 0..4isize {
        for x in 0..4isize {
            want.push(at(y - 1, x - 1) - at(y, x) + 0.5);
        }
    }
    assert_eq!(want[0], 10.0 - 1.0 + 0.5);
    assert_eq!(want[5], 1.0 - 5.0 + 0.5);
    for kernel in kernels() {
        let conv = c.build(&bytes, kernel);
        assert_eq!(run_reference(&conv, &t), want);
        let (shape, got) = run_fast(&conv, &t, 1);
        assert_eq!(shape, Shape::d3(4, 4, 1));
        assert_eq!(got, want, "{}", kernel.name);
    }
}

#[test]
fn same_padding_resolves_like_ncnn() {
    let mut c = Case::simple(1, 1, 3);
    c.sw = 2;
    c.sh = 2;
    for (marker, want) in [(-233, (0, 1)), (-234, (1, 0))] {
        c.pads = [marker; 4];
        let p = ConvParams::from_params(&c.params()).unwrap();
        // w = 6, kernel 3, stride 2: wpad = 3 + 5/2*2 - 6 = 1 -> out 3.
        let r = p.resolve(6, 7).unwrap();
        assert_eq!((r.pad_left, r.pad_right), want);
        // h = 7: hpad = 3 + 6 - 7 = 2 -> 1 / 1, out 4.
        assert_eq!((r.pad_top, r.pad_bottom, r.out_w, r.out_h), (1, 1, 3, 4));
    }
    // Kernel smaller than the stride: no negative padding.
    let mut c = Case::simple(1, 1, 1);
    c.sw = 3;
    c.sh = 3;
    c.pads = [-233; 4];
    let r = ConvParams::from_params(&c.params())
        .unwrap()
        .resolve(5, 5)
        .unwrap();
    assert_eq!((r.pad_left + r.pad_right, r.out_w), (0, 2));
}

#[test]
fn bad_params_are_errors() {
    let mut c = Case::simple(2, 3, 3);
    c.pads = [-233, 1, -233, -233];
    assert!(ConvParams::from_params(&c.params()).is_err());
    c.pads = [-5; 4];
    assert!(ConvParams::from_params(&c.params()).is_err());

    let c = Case::simple(2, 3, 3);
    let mut pd = c.params();
    pd.set(19, Value::Int(1)).unwrap();
    let e = Convolution::new(&pd, &mut WeightReader::zeros())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not supported"), "{e}");

    let mut pd = c.params();
    pd.set(6, Value::Int(7)).unwrap();
    assert!(Convolution::new(&pd, &mut WeightReader::zeros()).is_err());

    let mut pd = c.params();
    pd.set(1, Value::Int(0)).unwrap();
    assert!(Convolution::new(&pd, &mut WeightReader::zeros()).is_err());

    // weight_data_size fits 3 input channels: 4 is an error at shape inference.
    let conv = Convolution::new(&c.params(), &mut WeightReader::zeros()).unwrap();
    assert!(conv.output_shapes(&[Shape::d3(5, 5, 3)]).is_ok());
    let e = conv
        .output_shapes(&[Shape::d3(5, 5, 4)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("weight_data_size"), "{e}");
    // Kernel larger than the input.
    assert!(conv.output_shapes(&[Shape::d3(2, 5, 3)]).is_err());
    // Truncated weight file.
    let mut wr = WeightReader::new(Arc::new(Source::from_bytes(&[0; 12])), "t");
    assert!(Convolution::new(&c.params(), &mut wr).is_err());
}

#[test]
fn flat_input_with_1x1_kernel_is_an_inner_product() {
    let c = Case::simple(5, 12, 1);
    let mut rng = Rng::new(9);
    let (weights, _, bytes) = c.weight_file(&mut rng);
    let conv = c.build(&bytes, Kernel::best());
    let x = rng.vec(12, -1.0, 1.0);
    let t = Tensor {
        shape: Shape::d1(12),
        data: &x,
    };
    let (shape, got) = run_fast(&conv, &t, 1);
    assert_eq!(shape, Shape::d1(5));
    for o in 0..5 {
        let want: f32 = (0..12).map(|i| weights[o * 12 + i] * x[i]).sum();
        assert!((got[o] - want).abs() < 1e-5, "{o}: {} vs {want}", got[o]);
    }
}

#[test]
fn fast_matches_reference_on_random_shapes() {
    let mut rng = Rng::new(42);
    let acts: [(i32, Vec<f32>); 7] = [
        (0, vec![]),
        (1, vec![]),
        (2, vec![0.1]),
        (3, vec![-0.3, 0.4]),
        (4, vec![]),
        (5, vec![]),
        (6, vec![0.2, 0.5]),
    ];
    let kernel_sizes = [1, 3, 5, 7, 2];
    let mut done = 0;
    while done < 120 {
        let pick = |rng: &mut Rng| kernel_sizes[rng.range(0, 4) as usize];
        let kw = pick(&mut rng);
        // Mostly square, sometimes not.
        let kh = if rng.range(0, 3) == 0 {
            pick(&mut rng)
        } else {
            kw
        };
        let pads = match rng.range(0, 5) {
            0 => [0; 4],
            1 => [-233; 4],
            2 => [-234; 4],
            3 => {
                let p = rng.range(0, 3) as i32;
                [p; 4]
            }
            _ => [0, 0, 0, 0].map(|_: i32| rng.range(0, 3) as i32),
        };
        let mut c = Case {
            outch: rng.range(1, 70) as usize,
            inch: rng.range(1, 70) as usize,
            kw,
            kh,
            dw: rng.range(1, 3) as usize,
            dh: rng.range(1, 3) as usize,
            sw: rng.range(1, 3) as usize,
            sh: rng.range(1, 3) as usize,
            pads,
            pad_value: if rng.range(0, 3) == 0 { 0.7 } else { 0.0 },
            bias: rng.range(0, 1) == 1,
            act: acts[done % acts.len()].clone(),
        };
        if rng.range(0, 3) == 0 {
            c.dw = 1;
            c.dh = 1;
        }
        let w = rng.range(1, 40) as usize;
        let h = rng.range(1, 40) as usize;
        let p = ConvParams::from_params(&c.params()).unwrap();
        let Ok(r) = p.resolve(w, h) else { continue };
        // Keep the reference loop cheap.
        let macs = c.outch * c.inch * c.kw * c.kh * r.out_w * r.out_h;
        if macs > 3_000_000 {
            continue;
        }
        compare(&c, w, h, &mut rng);
        done += 1;
    }
}

#[test]
fn pointwise_and_edge_sizes() {
    let mut rng = Rng::new(7);
    // 1x1 stride 1 (direct B), and sizes around tile multiples.
    for (outch, inch, w, h) in [
        (1, 1, 1, 1),
        (6, 4, 16, 1),
        (7, 9, 17, 3),
        (13, 70, 15, 15),
        (48, 33, 40, 40),
    ] {
        let mut c = Case::simple(outch, inch, 1);
        c.bias = true;
        c.act = (1, vec![]);
        compare(&c, w, h, &mut rng);
        // 1x1 with stride 2 goes through im2col.
        c.sw = 2;
        c.sh = 2;
        compare(&c, w, h, &mut rng);
    }
    // 1x1 with padding (the product over the interior only, a constant border).
    for (pads, pad_value, act) in [
        ([1, 1, 1, 1], 0.0, (1, vec![])),
        ([2, 0, 1, 3], 0.5, (3, vec![-0.2, 0.3])),
    ] {
        let mut c = Case::simple(20, 13, 1);
        c.pads = pads;
        c.pad_value = pad_value;
        c.bias = true;
        c.act = act;
        compare(&c, 7, 5, &mut rng);
    }
    for (outch, inch, w, h) in [(5, 3, 16, 16), (17, 8, 33, 7), (24, 5, 1, 9)] {
        let mut c = Case::simple(outch, inch, 3);
        c.pads = [1; 4];
        compare(&c, w, h, &mut rng);
    }
}

#[test]
fn large_k_3x3_512_channels() {
    let mut rng = Rng::new(11);
    let mut c = Case::simple(20, 512, 3);
    c.pads = [1; 4];
    c.bias = true;
    c.act = (1, vec![]);
    compare(&c, 6, 5, &mut rng);
}

#[test]
fn int8_tagged_weights_are_dequantized() {
    // 2 outputs, 1 input channel, 1x2 kernel; weight scales 2 and 4.
    let q: [i8; 4] = [10, -20, 127, -127];
    let scales = [2.0f32, 4.0];
    for term in [2, 102] {
        let mut c = Case::simple(2, 1, 1);
        c.kw = 2;
        c.bias = true;
        let mut pd = c.params();
        pd.set(8, Value::Int(term)).unwrap();
        let mut bytes = 0x000D_4B38u32.to_le_bytes().to_vec();
        bytes.extend(q.iter().map(|&v| v as u8));
        for v in [0.5f32, -0.5, scales[0], scales[1], 30.0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        if term > 100 {
            bytes.extend_from_slice(&40.0f32.to_le_bytes());
        }
        let mut wr = WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "t");
        let conv = Convolution::new(&pd, &mut wr).unwrap();
        wr.finish().unwrap();
        assert_eq!(&*conv.weights, &[5.0, -10.0, 31.75, -31.75]);
        let x = [1.0f32, 2.0, 3.0];
        let t = Tensor {
            shape: Shape::d3(3, 1, 1),
            data: &x,
        };
        let (_, got) = run_fast(&conv, &t, 1);
        assert_eq!(
            got,
            vec![
                5.0 - 20.0 + 0.5,
                10.0 - 30.0 + 0.5,
                31.75 - 63.5 - 0.5,
                63.5 - 95.25 - 0.5
            ]
        );
    }
    // fp32 weights with scales: read in order, used as fp32.
    let c = Case::simple(2, 1, 1);
    let mut pd = c.params();
    pd.set(8, Value::Int(2)).unwrap();
    let mut bytes = 0u32.to_le_bytes().to_vec();
    for v in [1.0f32, 2.0, 9.0, 9.0, 9.0] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let mut wr = WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "t");
    let conv = Convolution::new(&pd, &mut wr).unwrap();
    wr.finish().unwrap();
    assert_eq!(&*conv.weights, &[1.0, 2.0]);
    assert!(conv.weights.is_borrowed());
}

#[test]
fn registered_in_build() {
    let c = Case::simple(4, 3, 3);
    let op = super::super::build("Convolution", &c.params(), &mut WeightReader::zeros()).unwrap();
    assert_eq!(
        op.output_shapes(&[Shape::d3(10, 8, 3)]).unwrap(),
        vec![Shape::d3(8, 6, 4)]
    );
}

#[test]
fn runs_inside_a_net_with_threads() {
    let param = b"7767517\n2 2\nInput data 0 1 data 0=9 1=7 2=3\nConvolution conv 1 1 data out 0=5 1=3 4=1 5=1 6=135 9=1\n";
    let mut rng = Rng::new(21);
    let c = Case {
        bias: true,
        pads: [1; 4],
        act: (1, vec![]),
        ..Case::simple(5, 3, 3)
    };
    let (_, _, bytes) = c.weight_file(&mut rng);
    let x = rng.vec(3 * 7 * 9, -1.0, 1.0);
    let conv = c.build(&bytes, Kernel::best());
    let t = Tensor {
        shape: Shape::d3(9, 7, 3),
        data: &x,
    };
    let want = run_reference(&conv, &t);
    for threads in [1, 3] {
        let opts = crate::net::Options {
            threads,
            ..Default::default()
        };
        let mut net = crate::net::Net::from_memory(param, &bytes, &opts).unwrap();
        net.set_input("data", &x).unwrap();
        net.run().unwrap();
        let out = net.blob("out").unwrap();
        assert_eq!(out.shape, Shape::d3(9, 7, 5));
        for (g, w) in out.data.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
    }
}

#[test]
fn winograd_is_chosen_for_3x3_stride_1_and_follows_the_shape_hint() {
    use crate::kernels::winograd::{env_override, Choice, Variant};
    if env_override().is_some() {
        return;
    }
    let mut c = Case::simple(64, 64, 3);
    c.pads = [1; 4];
    let build = |pd: &ParamDict| Convolution::new(pd, &mut WeightReader::zeros()).unwrap();
    // No size: by channels (F(6,3) up to 128).
    assert_eq!(build(&c.params()).winograd(), Some(Variant::F63));
    // A 7x7 output: the cost model takes a smaller tile than F(6,3).
    let mut pd = c.params();
    pd.set(30, Value::IntArray(vec![3, 7, 7, 64])).unwrap();
    assert!(matches!(
        build(&pd).winograd(),
        Some(Variant::F23 | Variant::F43) | None
    ));
    // Strided, dilated or 1x1: never.
    c.sw = 2;
    assert_eq!(build(&c.params()).winograd(), None);
    c.sw = 1;
    c.dw = 2;
    assert_eq!(build(&c.params()).winograd(), None);
    // Forced.
    let c = Case::simple(4, 3, 3);
    for v in Variant::ALL {
        let conv = Convolution::with_options(
            &c.params(),
            &mut WeightReader::zeros(),
            Kernel::best(),
            Some(Choice::Winograd(v)),
        )
        .unwrap();
        assert_eq!(conv.winograd(), Some(v));
    }
}

/// Every Winograd variant through the op (forced), against the reference: a tolerance
/// relative to the output's magnitude for these sizes (K ≤ 40 here: F(6,3) stays below
/// 1e-4, see `kernels::winograd::tests` for the bound per element).
#[test]
fn forced_winograd_variants_match_the_reference() {
    use crate::kernels::winograd::{Choice, Variant};
    let mut rng = Rng::new(31);
    for (i, v) in Variant::ALL.into_iter().enumerate() {
        for (outch, inch, w, h) in [(9, 5, 13, 11), (16, 40, 8, 8), (3, 2, 30, 4)] {
            let c = Case {
                bias: true,
                pads: [1, (i % 2) as i32, 1, 1],
                act: (1, vec![]),
                ..Case::simple(outch, inch, 3)
            };
            let (_, _, bytes) = c.weight_file(&mut rng);
            let x = rng.vec(inch * w * h, -1.0, 1.0);
            let t = Tensor {
                shape: Shape::d3(w, h, inch),
                data: &x,
            };
            for kernel in kernels() {
                let mut wr = WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "t");
                let conv = Convolution::with_options(
                    &c.params(),
                    &mut wr,
                    kernel,
                    Some(Choice::Winograd(v)),
                )
                .unwrap();
                assert_eq!(conv.winograd(), Some(v));
                let want = run_reference(&conv, &t);
                let max = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
                let (_, got) = run_fast(&conv, &t, 1 + i % 2);
                for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-4 * max,
                        "{v:?} {} at {j}: {g} vs {w}",
                        kernel.name
                    );
                }
            }
        }
    }
}
