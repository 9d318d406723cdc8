//! Quantized ConvolutionDepthWise against the integer simulation: the fp32 reference run on
//! integer-valued weights and inputs (exact: every sum stays below 2^24) gives the int32
//! accumulators, then the same epilogue. Results must match bit for bit.

use super::*;
use crate::kernels::requant::{scale_in, Requant};
use crate::model::paramdict::Value;
use crate::model::weights::Source;
use crate::ops::quantized::int8_weight_file;
use crate::ops::Ctx;
use crate::pool::Pool;
use crate::quant::{quantize, Int8Grid, BITS_KEY};
use crate::rng::Rng;
use std::sync::Arc;

struct Case {
    group: usize,
    inch_g: usize,
    outch_g: usize,
    k: usize,
    stride: usize,
    pad: i32,
    act: i32,
    top: Option<f32>,
    bits: Precision,
    per_group_scales: bool,
}

impl Case {
    fn params(&self, term: i32) -> ParamDict {
        let outch = self.group * self.outch_g;
        let mut pd = ParamDict::new();
        for (k, v) in [
            (0, outch as i32),
            (1, self.k as i32),
            (3, self.stride as i32),
            (4, self.pad),
            (5, 1),
            (6, (outch * self.inch_g * self.k * self.k) as i32),
            (7, self.group as i32),
            (8, term),
            (9, self.act),
            (BITS_KEY as usize, self.bits.bits() as i32),
        ] {
            pd.set(k, Value::Int(v)).unwrap();
        }
        pd.set(10, Value::FloatArray(vec![0.1])).unwrap();
        pd
    }
}

fn check(c: &Case, w: usize, h: usize, rng: &mut Rng, extreme: bool) {
    let qmax = c.bits.qmax();
    let outch = c.group * c.outch_g;
    let n = outch * c.inch_g * c.k * c.k;
    let q: Vec<i8> = (0..n)
        .map(|i| {
            if extreme {
                (if i % 5 == 0 { -qmax } else { qmax }) as i8
            } else {
                rng.range(-qmax as i64, qmax as i64) as i8
            }
        })
        .collect();
    let bias = rng.vec(outch, -1.0, 1.0);
    let nscales = if c.per_group_scales { c.group } else { 1 };
    let wscales: Vec<f32> = (0..nscales).map(|_| rng.uniform(50.0, 200.0)).collect();
    let bottom = rng.uniform(20.0, 60.0);
    let term = if c.per_group_scales { 1 } else { 2 } + if c.top.is_some() { 100 } else { 0 };
    let raw: Vec<f32> = bias
        .iter()
        .chain(&wscales)
        .chain([&bottom])
        .chain(c.top.iter())
        .copied()
        .collect();
    let bytes = int8_weight_file(&q, &raw);
    let pd = c.params(term);
    let shape = Shape::d3(w, h, c.group * c.inch_g);
    let x: Vec<f32> = if extreme {
        (0..shape.len())
            .map(|i| if i % 7 == 0 { -1e4 } else { 1e4 })
            .collect()
    } else {
        rng.vec(shape.len(), -3.0, 3.0)
    };
    let qx: Vec<i8> = x.iter().map(|&v| quantize(v, bottom, qmax)).collect();

    // Accumulators: the fp32 reference over integer values, no bias, no activation.
    let mut sim_pd = pd.clone();
    for key in [5, 8, 9] {
        sim_pd.set(key, Value::Int(0)).unwrap();
    }
    let mut sim_bytes = 0u32.to_le_bytes().to_vec();
    for v in &q {
        sim_bytes.extend_from_slice(&(*v as f32).to_le_bytes());
    }
    let sim = {
        let mut r = WeightReader::new(Arc::new(Source::from_bytes(&sim_bytes)), "sim.bin");
        ConvolutionDepthWise::new(&sim_pd, &mut r).unwrap()
    };
    let out_shape = sim.output_shapes(&[shape]).unwrap()[0];
    let mut acc = vec![0f32; out_shape.len()];
    let qx_f: Vec<f32> = qx.iter().map(|&v| v as f32).collect();
    sim.forward_reference(
        &Tensor { shape, data: &qx_f },
        &mut TensorMut {
            shape: out_shape,
            data: &mut acc,
        },
    )
    .unwrap();
    let per_channel: Vec<f32> = (0..outch)
        .map(|oc| {
            wscales[if c.per_group_scales {
                oc / c.outch_g
            } else {
                0
            }]
        })
        .collect();
    let si = scale_in(bottom, &per_channel);
    let rq = Requant {
        scale_in: &si,
        bias: Some(&bias),
        act: Activation::from_params(&pd).unwrap(),
        top_scale: c.top.unwrap_or(1.0),
        qmax,
    };
    let plane = out_shape.w * out_shape.h;
    let want_f: Vec<f32> = acc
        .iter()
        .enumerate()
        .map(|(i, &a)| rq.dequant(i / plane, a as i32))
        .collect();
    let want_q: Vec<i8> = acc
        .iter()
        .enumerate()
        .map(|(i, &a)| rq.requant(i / plane, a as i32))
        .collect();

    for (input_i8, output_i8) in [(false, false), (true, false), (false, true), (true, true)] {
        if output_i8 && c.top.is_none() {
            continue;
        }
        let mut op = {
            let mut r = WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "t.bin");
            ConvolutionDepthWise::new(&pd, &mut r).unwrap()
        };
        let choice = match c.bits {
            Precision::Int8 => PrecisionChoice::Int8,
            Precision::Int7 => PrecisionChoice::Int7,
        };
        assert_eq!(op.set_precision(choice).unwrap(), Some(c.bits));
        let grid = c.top.map(|scale| Int8Grid {
            scale,
            qmax: c.bits.qmax(),
        });
        op.set_int8_io(input_i8, grid.filter(|_| output_i8))
            .unwrap();
        let mut packed = vec![0f32; qx.len().div_ceil(4)];
        bytemuck::cast_slice_mut::<f32, i8>(&mut packed)[..qx.len()].copy_from_slice(&qx);
        let input: &[f32] = if input_i8 { &packed } else { &x };
        for threads in [1, 2, 3] {
            let pool = Pool::new(threads).unwrap();
            let mut scratch = vec![f32::NAN; op.scratch_len(&[shape], &[out_shape]) * threads];
            let mut out = vec![f32::NAN; out_shape.len()];
            op.forward(
                &[Tensor { shape, data: input }],
                &mut [TensorMut {
                    shape: out_shape,
                    data: &mut out,
                }],
                &mut Ctx {
                    pool: &pool,
                    scratch: &mut scratch,
                },
            )
            .unwrap();
            let what = format!(
                "{:?} group {} inch_g {} outch_g {} k {} s {} pad {} in {w}x{h} i8 in/out {input_i8}/{output_i8} threads {threads}",
                c.bits, c.group, c.inch_g, c.outch_g, c.k, c.stride, c.pad
            );
            if output_i8 {
                let got: &[i8] = &bytemuck::cast_slice(&out)[..want_q.len()];
                assert_eq!(got, &want_q[..], "{what}");
            } else {
                assert_eq!(out, want_f, "{what}");
            }
        }
    }
}

#[test]
fn quantized_depthwise_and_grouped_match_the_integer_simulation() {
    let mut rng = Rng::new(17);
    for bits in [Precision::Int8, Precision::Int7] {
        for i in 0..30 {
            let depthwise = i % 3 != 0;
            let c = Case {
                group: rng.range(1, 12) as usize,
                inch_g: if depthwise {
                    1
                } else {
                    rng.range(1, 4) as usize
                },
                outch_g: if depthwise {
                    1
                } else {
                    rng.range(1, 4) as usize
                },
                k: [1, 3, 3, 5][rng.range(0, 3) as usize],
                stride: rng.range(1, 2) as usize,
                pad: rng.range(0, 2) as i32,
                act: rng.range(0, 2) as i32,
                top: (rng.range(0, 1) == 1).then(|| rng.uniform(5.0, 40.0)),
                bits,
                per_group_scales: rng.range(0, 1) == 1,
            };
            let (w, h) = (rng.range(5, 30) as usize, rng.range(5, 20) as usize);
            check(&c, w, h, &mut rng, false);
        }
    }
}

#[test]
fn extreme_values_do_not_overflow() {
    let mut rng = Rng::new(4);
    for bits in [Precision::Int8, Precision::Int7] {
        for (k, stride) in [(3, 1), (3, 2), (5, 1), (7, 1)] {
            let c = Case {
                group: 4,
                inch_g: 1,
                outch_g: 1,
                k,
                stride,
                pad: (k / 2) as i32,
                act: 0,
                top: Some(1e-3),
                bits,
                per_group_scales: true,
            };
            check(&c, 33, 9, &mut rng, true);
        }
    }
}
