//! Quantized Convolution against a plain simulation of ncnn's integer arithmetic: quantize the
//! input, sum int8 products exactly, dequantize / requantize with the same fp32 formula. The
//! results must match bit for bit.

use super::*;
use crate::kernels::requant::{scale_in, Requant};
use crate::model::paramdict::Value;
use crate::model::weights::Source;
use crate::ops::quantized::int8_weight_file;
use crate::ops::Ctx;
use crate::quant::{quantize, Int8Grid, BITS_KEY};
use crate::rng::Rng;
use std::sync::Arc;

struct QCase {
    outch: usize,
    inch: usize,
    k: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
    pads: [i32; 4],
    bias: bool,
    act: (i32, Vec<f32>),
    /// Requantized output (key 8 = 102) with this top scale.
    top: Option<f32>,
    bits: Precision,
}

impl QCase {
    fn params(&self) -> ParamDict {
        let mut pd = ParamDict::new();
        let ints = [
            (0, self.outch as i32),
            (1, self.k.0 as i32),
            (11, self.k.1 as i32),
            (2, self.dilation.0 as i32),
            (12, self.dilation.1 as i32),
            (3, self.stride.0 as i32),
            (13, self.stride.1 as i32),
            (4, self.pads[0]),
            (15, self.pads[1]),
            (14, self.pads[2]),
            (16, self.pads[3]),
            (5, self.bias as i32),
            (6, (self.outch * self.inch * self.k.0 * self.k.1) as i32),
            (8, if self.top.is_some() { 102 } else { 2 }),
            (9, self.act.0),
            (BITS_KEY as usize, self.bits.bits() as i32),
        ];
        for (k, v) in ints {
            pd.set(k, Value::Int(v)).unwrap();
        }
        pd.set(10, Value::FloatArray(self.act.1.clone())).unwrap();
        pd
    }
}

struct Model {
    q: Vec<i8>,
    bias: Vec<f32>,
    wscale: Vec<f32>,
    bottom: f32,
    bytes: Vec<u8>,
}

fn model(c: &QCase, rng: &mut Rng, extreme: Option<i8>) -> Model {
    let qmax = c.bits.qmax();
    let n = c.outch * c.inch * c.k.0 * c.k.1;
    let q: Vec<i8> = (0..n)
        .map(|i| match extreme {
            Some(0) => (if i % 2 == 0 { qmax } else { -qmax }) as i8,
            Some(v) => v,
            None => rng.range(-qmax as i64, qmax as i64) as i8,
        })
        .collect();
    let bias = if c.bias {
        rng.vec(c.outch, -1.0, 1.0)
    } else {
        vec![]
    };
    let wscale: Vec<f32> = (0..c.outch).map(|_| rng.uniform(50.0, 200.0)).collect();
    let bottom = rng.uniform(20.0, 60.0);
    let raw: Vec<f32> = bias
        .iter()
        .chain(&wscale)
        .chain([&bottom])
        .chain(c.top.iter())
        .copied()
        .collect();
    let bytes = int8_weight_file(&q, &raw);
    Model {
        q,
        bias,
        wscale,
        bottom,
        bytes,
    }
}

/// The simulation: int8 input `qx` (c x h x w), exact integer sums, then the epilogue.
fn simulate(c: &QCase, m: &Model, qx: &[i8], w: usize, h: usize) -> (Vec<f32>, Vec<i8>) {
    let conv_params = ConvParams::from_params(&c.params()).unwrap();
    let r = conv_params.resolve(w, h).unwrap();
    let si = scale_in(m.bottom, &m.wscale);
    let act = Activation::from_params(&c.params()).unwrap();
    let rq = Requant {
        scale_in: &si,
        bias: c.bias.then_some(&m.bias[..]),
        act,
        top_scale: c.top.unwrap_or(1.0),
        qmax: c.bits.qmax(),
    };
    let (kw, kh) = c.k;
    let (mut f, mut q) = (vec![], vec![]);
    for o in 0..c.outch {
        for y in 0..r.out_h {
            for x in 0..r.out_w {
                let mut acc = 0i64;
                for ch in 0..c.inch {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy =
                                (y * c.stride.1 + ky * c.dilation.1) as isize - r.pad_top as isize;
                            let ix =
                                (x * c.stride.0 + kx * c.dilation.0) as isize - r.pad_left as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let v = qx[(ch * h + iy as usize) * w + ix as usize] as i64;
                            acc += v * m.q[((o * c.inch + ch) * kh + ky) * kw + kx] as i64;
                        }
                    }
                }
                let acc = i32::try_from(acc).expect("int32 accumulator");
                f.push(rq.dequant(o, acc));
                q.push(rq.requant(o, acc));
            }
        }
    }
    (f, q)
}

fn run(conv: &Convolution, input: &[f32], shape: Shape, threads: usize) -> Vec<f32> {
    let out_shape = conv.output_shapes(&[shape]).unwrap()[0];
    let pool = Pool::new(threads).unwrap();
    let mut scratch = vec![f32::NAN; conv.scratch_len(&[shape], &[out_shape]) * threads];
    let mut out = vec![f32::NAN; out_shape.len()];
    let mut ctx = Ctx {
        pool: &pool,
        scratch: &mut scratch,
    };
    let x = Tensor { shape, data: input };
    let mut outs = [TensorMut {
        shape: out_shape,
        data: &mut out,
    }];
    conv.forward(&[x], &mut outs, &mut ctx).unwrap();
    out
}

/// Runs one case: fp32 input and int8 input, fp32 and int8 output, 1 and 2 threads.
fn check(c: &QCase, w: usize, h: usize, rng: &mut Rng, extreme: Option<i8>) {
    let m = model(c, rng, extreme);
    let qmax = c.bits.qmax();
    let x: Vec<f32> = match extreme {
        Some(0) => (0..c.inch * w * h)
            .map(|i| if i % 3 == 0 { -1e3 } else { 1e3 })
            .collect(),
        Some(v) => vec![v.signum() as f32 * 1e3; c.inch * w * h],
        None => rng.vec(c.inch * w * h, -3.0, 3.0),
    };
    let qx: Vec<i8> = x.iter().map(|&v| quantize(v, m.bottom, qmax)).collect();
    let (want_f, want_q) = simulate(c, &m, &qx, w, h);
    let shape = Shape::d3(w, h, c.inch);
    for (input_i8, output_i8) in [(false, false), (true, false), (false, true), (true, true)] {
        if output_i8 && c.top.is_none() {
            continue;
        }
        let mut wr = WeightReader::new(Arc::new(Source::from_bytes(&m.bytes)), "t.bin");
        let mut conv = Convolution::new(&c.params(), &mut wr).unwrap();
        wr.finish().unwrap();
        let choice = match c.bits {
            Precision::Int8 => PrecisionChoice::Int8,
            Precision::Int7 => PrecisionChoice::Int7,
        };
        assert_eq!(conv.set_precision(choice).unwrap(), Some(c.bits));
        let grid = c.top.map(|scale| Int8Grid {
            scale,
            qmax: c.bits.qmax(),
        });
        conv.set_int8_io(input_i8, grid.filter(|_| output_i8))
            .unwrap();
        let mut packed = vec![0f32; qx.len().div_ceil(4)];
        let input: &[f32] = if input_i8 {
            bytemuck::cast_slice_mut::<f32, i8>(&mut packed)[..qx.len()].copy_from_slice(&qx);
            &packed
        } else {
            &x
        };
        for threads in [1, 2] {
            let got = run(&conv, input, shape, threads);
            let what = format!(
                "{:?} in {w}x{h}x{} out {} k {:?} s {:?} d {:?} pads {:?} i8 in/out {input_i8}/{output_i8} threads {threads}",
                c.bits, c.inch, c.outch, c.k, c.stride, c.dilation, c.pads
            );
            if output_i8 {
                let got_q: &[i8] = &bytemuck::cast_slice(&got)[..want_q.len()];
                assert_eq!(got_q, &want_q[..], "{what}");
            } else {
                assert_eq!(got, want_f, "{what}");
            }
        }
    }
}

fn random_case(rng: &mut Rng, bits: Precision) -> QCase {
    let k = (rng.range(1, 3) as usize, rng.range(1, 3) as usize);
    QCase {
        outch: rng.range(1, 20) as usize,
        inch: rng.range(1, 12) as usize,
        k,
        stride: (rng.range(1, 2) as usize, rng.range(1, 2) as usize),
        dilation: (rng.range(1, 2) as usize, 1),
        pads: [
            rng.range(0, 1) as i32,
            rng.range(0, 2) as i32,
            rng.range(0, 1) as i32,
            rng.range(0, 1) as i32,
        ],
        bias: rng.range(0, 1) == 1,
        act: match rng.range(0, 2) {
            0 => (0, vec![]),
            1 => (1, vec![]),
            _ => (2, vec![0.1]),
        },
        top: (rng.range(0, 1) == 1).then(|| rng.uniform(5.0, 40.0)),
        bits,
    }
}

#[test]
fn quantized_convolution_matches_the_integer_simulation() {
    let mut rng = Rng::new(21);
    for bits in [Precision::Int8, Precision::Int7] {
        for i in 0..40 {
            let mut c = random_case(&mut rng, bits);
            if i % 4 == 0 {
                // The Winograd geometry (3x3, stride 1, >= 8 channels each way).
                (c.k, c.stride, c.dilation) = ((3, 3), (1, 1), (1, 1));
                (c.inch, c.outch) = (rng.range(8, 20) as usize, rng.range(8, 20) as usize);
            }
            let (w, h) = (rng.range(6, 14) as usize, rng.range(3, 11) as usize);
            check(&c, w, h, &mut rng, None);
        }
    }
}

#[test]
fn extreme_values_with_deep_k_do_not_overflow() {
    // K = 1024 * 9 = 9216 >= 8192: every product at ±qmax², same sign and alternating. With
    // 9 outputs the 3x3 stride-1 path is Winograd on ARM: 1024 channels are several chunks.
    let mut rng = Rng::new(5);
    for bits in [Precision::Int8, Precision::Int7] {
        let q = bits.qmax() as i8;
        for extreme in [Some(q), Some(-q), Some(0)] {
            let c = QCase {
                outch: 9,
                inch: 1024,
                k: (3, 3),
                stride: (1, 1),
                dilation: (1, 1),
                pads: [1; 4],
                bias: true,
                act: (0, vec![]),
                top: Some(0.01),
                bits,
            };
            check(&c, 4, 3, &mut rng, extreme);
        }
    }
}

#[test]
fn int7_rejects_wide_weights_and_int8_does_not() {
    let mut rng = Rng::new(3);
    let mut c = QCase {
        outch: 2,
        inch: 2,
        k: (1, 1),
        stride: (1, 1),
        dilation: (1, 1),
        pads: [0; 4],
        bias: false,
        act: (0, vec![]),
        top: None,
        bits: Precision::Int8,
    };
    let m = model(&c, &mut rng, Some(100));
    let load = |c: &QCase| {
        let mut wr = WeightReader::new(Arc::new(Source::from_bytes(&m.bytes)), "t.bin");
        Convolution::new(&c.params(), &mut wr)
    };
    let mut conv = load(&c).unwrap();
    assert!(conv.set_precision(PrecisionChoice::Int8).is_ok());
    let e = conv.set_precision(PrecisionChoice::Int7).unwrap_err();
    assert!(e.0.contains("outside ±63"), "{}", e.0);
    // A layer that declares 7 bits with 8-bit weights is a load error.
    c.bits = Precision::Int7;
    let e = load(&c).unwrap_err().to_string();
    assert!(e.contains("outside ±63"), "{e}");
    // Auto follows the declaration; Fp32 keeps fp32.
    c.bits = Precision::Int8;
    let mut conv = load(&c).unwrap();
    assert_eq!(
        conv.set_precision(PrecisionChoice::Auto).unwrap(),
        Some(Precision::Int8)
    );
    assert_eq!(conv.set_precision(PrecisionChoice::Fp32).unwrap(), None);
}

/// An integer choice frees the fp32 weights and GEMM; choosing fp32 (or the simulation)
/// afterwards makes them again from the stored weights, with the same output as a fresh
/// fp32 layer.
#[test]
fn fp32_path_is_released_and_restored() {
    let mut rng = Rng::new(8);
    let c = random_case(&mut rng, Precision::Int8);
    let m = model(&c, &mut rng, None);
    let load = || {
        let mut wr = WeightReader::new(Arc::new(Source::from_bytes(&m.bytes)), "t.bin");
        Convolution::new(&c.params(), &mut wr).unwrap()
    };
    let (w, h) = (7, 5);
    let shape = Shape::d3(w, h, c.inch);
    let x = rng.vec(c.inch * w * h, -3.0, 3.0);
    let mut fresh = load();
    assert_eq!(fresh.set_precision(PrecisionChoice::Fp32).unwrap(), None);
    let want = run(&fresh, &x, shape, 1);
    let mut sim = load();
    sim.set_precision(PrecisionChoice::Simulate).unwrap();
    let want_sim = run(&sim, &x, shape, 1);

    let mut conv = load();
    conv.set_precision(PrecisionChoice::Int8).unwrap();
    assert!(conv.weights.is_empty() && conv.fast.is_none());
    conv.set_precision(PrecisionChoice::Simulate).unwrap();
    assert_eq!(run(&conv, &x, shape, 1), want_sim);
    conv.set_precision(PrecisionChoice::Int8).unwrap();
    conv.set_precision(PrecisionChoice::Fp32).unwrap();
    assert_eq!(run(&conv, &x, shape, 1), want);
    assert_eq!(&*conv.weights, &*fresh.weights);
}
