//! Custom layers registered from Rust (`Options::custom_layers`): a model with a private
//! YoloV5-style "Focus" layer (space-to-depth, 4 slices concatenated on channels) and a layer
//! that reads weights, checked against values computed by hand and by an index formula;
//! errors from the layer's callbacks come back as load / run errors naming the layer; runs
//! do not allocate.

use eq_runtime::error::{invalid, LayerResult};
use eq_runtime::model::weights::{Floats, WeightReader};
use eq_runtime::ops::{expect_inputs, Ctx, Op};
use eq_runtime::{Net, Options, Shape, Tensor, TensorMut};

mod common;
use common::count_allocations;

/// YoloV5's Focus: `cat(x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2],
/// x[..., 1::2, 1::2])` on channels.
#[derive(Debug)]
struct Focus;

impl Op for Focus {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let x = inputs[0];
        if x.dims != 3 || !x.w.is_multiple_of(2) || !x.h.is_multiple_of(2) {
            return Err(invalid(format!(
                "Focus needs a 3-D blob of even w and h, got {x}"
            )));
        }
        Ok(vec![Shape::d3(x.w / 2, x.h / 2, x.c * 4)])
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        _: &mut Ctx,
    ) -> LayerResult<()> {
        let (x, y) = (inputs[0], &mut outputs[0]);
        let (w, h, c) = (x.shape.w, x.shape.h, x.shape.c);
        let (ow, oh) = (w / 2, h / 2);
        for (k, (dy, dx)) in [(0, 0), (1, 0), (0, 1), (1, 1)].into_iter().enumerate() {
            for q in 0..c {
                let src = x.channel(q);
                let dst = y.channel_mut(k * c + q);
                for yy in 0..oh {
                    for xx in 0..ow {
                        dst[yy * ow + xx] = src[(2 * yy + dy) * w + 2 * xx + dx];
                    }
                }
            }
        }
        Ok(())
    }
}

/// Multiplies channel q by weight q (param 0: the channel count), read from the .bin.
#[derive(Debug)]
struct ChannelScale {
    scales: Floats,
}

impl Op for ChannelScale {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        if inputs[0].c != self.scales.len() {
            return Err(invalid(format!(
                "{} scales for {} channels",
                self.scales.len(),
                inputs[0].c
            )));
        }
        Ok(vec![inputs[0]])
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        _: &mut Ctx,
    ) -> LayerResult<()> {
        for q in 0..inputs[0].shape.c {
            let (src, dst) = (inputs[0].channel(q), outputs[0].channel_mut(q));
            for (d, s) in dst.iter_mut().zip(src) {
                *d = s * self.scales[q];
            }
        }
        Ok(())
    }
}

fn options() -> Options {
    let mut opts = Options::default();
    opts.custom_layers
        .register("Focus", |_, _| Ok(Box::new(Focus)));
    opts.custom_layers
        .register("ChannelScale", |pd, w: &mut WeightReader| {
            let n = pd.usize(0, 0)?;
            if n == 0 {
                return Err(invalid("param 0 (channels) must be positive").into());
            }
            Ok(Box::new(ChannelScale {
                scales: w.raw(n, "scales")?,
            }))
        });
    opts
}

/// Focus by its index formula: output (k * c + q, y, x) = input (q, 2y + dy_k, 2x + dx_k).
fn focus_reference(x: &[f32], w: usize, h: usize, c: usize) -> Vec<f32> {
    let (ow, oh) = (w / 2, h / 2);
    let mut out = vec![0.0; x.len()];
    for (i, o) in out.iter_mut().enumerate() {
        let (xx, yy, ch) = (i % ow, (i / ow) % oh, i / (ow * oh));
        let (k, q) = (ch / c, ch % c);
        let (dy, dx) = (k % 2, k / 2);
        *o = x[(q * h + 2 * yy + dy) * w + 2 * xx + dx];
    }
    out
}

const FOCUS_NET: &str = "7767517\n3 3\nInput in 0 1 data 0=6 1=4 2=3\n\
                         Focus focus 1 1 data f\nReLU relu 1 1 f out\n";

#[test]
fn focus_by_hand_and_by_formula() {
    // One 2x2 channel: the four pixels become four 1x1 channels in order (0,0) (1,0) (0,1)
    // (1,1) as (row, column).
    let tiny = "7767517\n2 2\nInput in 0 1 data 0=2 1=2 2=1\nFocus focus 1 1 data out\n";
    let mut net = Net::from_memory(tiny.as_bytes(), &[], &options()).unwrap();
    net.set_input("data", &[1.0, 2.0, 3.0, 4.0]).unwrap();
    net.run().unwrap();
    let (s, v) = net.blob_f32("out").unwrap();
    assert_eq!(s, Shape::d3(1, 1, 4));
    assert_eq!(v, [1.0, 3.0, 2.0, 4.0]);

    let mut net = Net::from_memory(FOCUS_NET.as_bytes(), &[], &options()).unwrap();
    let x: Vec<f32> = (0..72).map(|i| (i as f32 * 0.37).sin()).collect();
    net.set_input("data", &x).unwrap();
    net.run().unwrap();
    let (s, v) = net.blob_f32("out").unwrap();
    assert_eq!(s, Shape::d3(3, 2, 12));
    let want: Vec<f32> = focus_reference(&x, 6, 4, 3)
        .iter()
        .map(|v| v.max(0.0))
        .collect();
    assert_eq!(v, want);
    // Runs do not allocate.
    let (r, n) = count_allocations(|| net.run());
    r.unwrap();
    assert_eq!(n, 0, "a run with a custom layer allocated");
}

#[test]
fn weights_are_read_in_order() {
    let param = "7767517\n3 3\nInput in 0 1 data 0=2 1=2 2=2\nFocus focus 1 1 data f\n\
                 ChannelScale s 1 1 f out 0=8\n";
    let scales: Vec<f32> = (1..=8).map(|i| i as f32).collect();
    let bin: Vec<u8> = scales.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut net = Net::from_memory(param.as_bytes(), &bin, &options()).unwrap();
    let x: Vec<f32> = (0..8).map(|i| i as f32).collect();
    net.set_input("data", &x).unwrap();
    net.run().unwrap();
    let (_, v) = net.blob_f32("out").unwrap();
    let want: Vec<f32> = focus_reference(&x, 2, 2, 2)
        .iter()
        .zip(&scales)
        .map(|(a, b)| a * b)
        .collect();
    assert_eq!(v, want);
    // One float short: a weights error naming the layer.
    let e = Net::from_memory(param.as_bytes(), &bin[..28], &options()).unwrap_err();
    assert!(e.to_string().contains("`s`"), "{e}");
}

#[test]
fn errors_name_the_layer() {
    // Unregistered: unknown type.
    let e = Net::from_memory(FOCUS_NET.as_bytes(), &[], &Options::default()).unwrap_err();
    assert!(e.to_string().contains("unknown layer type `Focus`"), "{e}");
    // From shape inference.
    let odd = FOCUS_NET.replace("0=6", "0=5");
    let e = Net::from_memory(odd.as_bytes(), &[], &options())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "layer `focus` (Focus): Focus needs a 3-D blob of even w and h, got [w=5 h=4 c=3]"
    );
    // From the creator.
    let bad = "7767517\n2 2\nInput in 0 1 data 0=2 1=2 2=1\nChannelScale s 1 1 data out\n";
    let e = Net::from_memory(bad.as_bytes(), &[], &options())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "layer `s` (ChannelScale): param 0 (channels) must be positive"
    );
}

#[test]
fn registered_types_override_builtins() {
    let mut opts = Options::default();
    opts.custom_layers
        .register("Sigmoid", |_, _| Ok(Box::new(Focus)));
    let param = "7767517\n2 2\nInput in 0 1 data 0=4 1=4 2=1\nSigmoid s 1 1 data out\n";
    let net = Net::from_memory(param.as_bytes(), &[], &opts).unwrap();
    assert_eq!(net.blob_shape("out").unwrap(), Shape::d3(2, 2, 4));
}

/// Planned in place while loading, "new outputs" afterwards: if the runner asked the op
/// again at run time it would call `forward` with an output slice over the input's memory.
#[derive(Debug)]
struct Fickle {
    loaded: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Op for Fickle {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }

    fn storage(&self) -> eq_runtime::ops::Storage {
        if self.loaded.load(std::sync::atomic::Ordering::Relaxed) {
            eq_runtime::ops::Storage::New
        } else {
            eq_runtime::ops::Storage::InPlace
        }
    }

    fn forward(&self, _: &[Tensor], _: &mut [TensorMut], _: &mut Ctx) -> LayerResult<()> {
        Err(invalid("planned in place: forward must not run"))
    }

    fn forward_inplace(&self, x: &mut TensorMut, _: &mut Ctx) -> LayerResult<()> {
        for v in x.data.iter_mut() {
            *v *= 2.0;
        }
        Ok(())
    }
}

#[test]
fn the_runner_keeps_the_planned_storage() {
    let loaded = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut opts = Options::default();
    let flag = loaded.clone();
    opts.custom_layers.register("Fickle", move |_, _| {
        Ok(Box::new(Fickle {
            loaded: flag.clone(),
        }))
    });
    let param = "7767517\n3 3\nInput in 0 1 data 0=4 1=1 2=1\nReLU relu 1 1 data r\n\
                 Fickle f 1 1 r out\n";
    let mut net = Net::from_memory(param.as_bytes(), &[], &opts).unwrap();
    loaded.store(true, std::sync::atomic::Ordering::Relaxed);
    net.set_input("data", &[1.0, -2.0, 3.0, 4.0]).unwrap();
    net.run().unwrap();
    let (_, v) = net.blob_f32("out").unwrap();
    assert_eq!(v, [2.0, 0.0, 6.0, 8.0]);
}
