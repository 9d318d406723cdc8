//! The safe public kernel entry points that hand slices to unchecked SIMD code check them
//! first: a too-short buffer panics (on this CPU's best variant) instead of being read or
//! written past its end.

use super::depthwise_f32::{self, Geometry};
use super::depthwise_i8;
use super::gemv_f32;
use super::gemv_i8::{self, PackedGemvI8};
use super::pooling;
use super::requant::{OutBuf, Requant};
use super::Isa;
use crate::ops::activation::Activation;
use crate::quant::Precision;

/// 3x3 stride 1 over a padded 18 x 18 plane: 16 x 16 outputs.
fn geometry() -> Geometry {
    Geometry {
        in_w: 18,
        in_h: 18,
        out_w: 16,
        out_h: 16,
        kernel_w: 3,
        kernel_h: 3,
        stride_w: 1,
        stride_h: 1,
        dilation_w: 1,
        dilation_h: 1,
    }
}

#[test]
#[should_panic(expected = "input planes too short")]
fn depthwise_f32_short_input() {
    let g = geometry();
    let input = vec![0.0f32; 18 * 18 - 1];
    let mut out = vec![0.0f32; 16 * 16];
    depthwise_f32::channel(
        Isa::detect(),
        &g,
        &input,
        1,
        &[0.0; 9],
        0.0,
        Activation::None,
        &mut out,
    );
}

#[test]
#[should_panic(expected = "taps outside the input plane")]
fn depthwise_f32_geometry_past_the_plane() {
    let g = Geometry {
        out_w: 17,
        ..geometry()
    };
    let input = vec![0.0f32; 18 * 18];
    let mut out = vec![0.0f32; 17 * 16];
    depthwise_f32::channel(
        Isa::detect(),
        &g,
        &input,
        1,
        &[0.0; 9],
        0.0,
        Activation::None,
        &mut out,
    );
}

#[test]
#[should_panic(expected = "input plane too short")]
fn depthwise_i8_short_input() {
    let g = geometry();
    let input = vec![0i8; 18 * 18 - 1];
    let mut out = vec![0i8; 16 * 16];
    let rq = Requant {
        scale_in: &[1.0],
        bias: None,
        act: Activation::None,
        top_scale: 1.0,
        qmax: 127,
    };
    depthwise_i8::channel_i8(
        Isa::detect(),
        Precision::Int8,
        &g,
        &input,
        &[0; 9],
        0,
        &rq,
        &mut OutBuf::I8(&mut out),
        0,
    );
}

#[test]
#[should_panic(expected = "weight matrix too short")]
fn gemv_f32_short_weights() {
    let x = vec![1.0f32; 40];
    let w = vec![1.0f32; 40 * 8 - 1];
    let mut y = vec![0.0f32; 8];
    gemv_f32::gemv(Isa::detect(), &w, &x, None, &mut y);
}

#[test]
#[should_panic(expected = "input length")]
fn gemv_i8_short_input() {
    let w = vec![1i8; 8 * 40];
    let packed = PackedGemvI8::new(&w, 8, 40, Precision::Int8);
    let rq = Requant {
        scale_in: &[1.0; 8],
        bias: None,
        act: Activation::None,
        top_scale: 1.0,
        qmax: 127,
    };
    let mut y = vec![0.0f32; 8];
    gemv_i8::gemv_i8(Isa::detect(), &packed, &[1i8; 39], &rq, &mut y);
}

#[test]
#[should_panic(expected = "planes too short")]
fn global_pooling_short_planes() {
    let src = vec![0.0f32; 4 * 64 - 1];
    let mut out = vec![0.0f32; 4];
    pooling::global_max_f32(Isa::detect(), &src, 64, &mut out);
}
