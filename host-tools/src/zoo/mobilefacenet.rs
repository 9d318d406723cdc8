//! MobileFaceNet (Chen et al. 2018, Table 1) as in the InsightFace MXNet release converted
//! to ncnn: input scaling in the graph, BatchNorm and PReLU as separate layers, no conv bias.

use crate::builder::{Blob, Conv, NetBuilder};
use anyhow::Result;

/// 112x112x3 pixels in 0..255 -> a 128-d face embedding `fc1`.
pub fn mobilefacenet(b: &mut NetBuilder, data: Blob) -> Result<()> {
    // (x - 127.5) / 128, as the MXNet model's first two ops.
    let x = b.binary_scalar("minusscalar0", &data, 1, 127.5);
    let x = b.binary_scalar("mulscalar0", &x, 2, 0.0078125);
    let x = conv_bn(b, "conv_1", &x, Conv::new(64, 3).stride(2).pad(1), true)?;
    let x = conv_bn(b, "conv_2_dw", &x, Conv::dw(3).pad(1), true)?;
    // (expansion width, output channels, residual blocks after the strided one).
    let stages = [(128, 64, 4), (256, 128, 6), (512, 128, 2)];
    let mut x = x;
    for (s, &(width, out, residuals)) in stages.iter().enumerate() {
        let stage = s + 3;
        x = bottleneck(
            b,
            &format!("dconv_{}{}", stage - 1, stage),
            &x,
            width,
            out,
            2,
        )?;
        for i in 0..residuals {
            let name = format!("res_{stage}_block{i}");
            let xs = b.split(&format!("{name}_split"), &x, 2);
            // The stride-1 blocks expand by 2 (the strided entry of stage 5 by 4).
            let y = bottleneck(b, &name, &xs[1], 2 * out, out, 1)?;
            x = b.binary(&format!("{name}_plus"), &xs[0], &y, 0)?;
        }
    }
    let x = conv_bn(b, "conv_6sep", &x, Conv::new(512, 1), true)?;
    // Global depthwise conv: a learned 7x7 weighting per channel instead of average pooling.
    let x = conv_bn(b, "conv_6dw7_7", &x, Conv::dw(7), false)?;
    let x = b.inner_product("pre_fc1", &x, 128);
    b.batch_norm("fc1", &x);
    Ok(())
}

/// Convolution (no bias) + BatchNorm, + PReLU when `act`; depthwise when `spec.out` is 0.
fn conv_bn(b: &mut NetBuilder, name: &str, x: &Blob, spec: Conv, act: bool) -> Result<Blob> {
    let spec = spec.no_bias();
    let x = if spec.out == 0 {
        b.depthwise(&format!("{name}_conv2d"), x, spec)?
    } else {
        b.conv(&format!("{name}_conv2d"), x, spec)?
    };
    let x = b.batch_norm(&format!("{name}_batchnorm"), &x);
    Ok(if act {
        b.prelu(&format!("{name}_relu"), &x)
    } else {
        x
    })
}

/// Inverted residual body without the add: 1x1 expand, 3x3 depthwise, linear 1x1 project.
fn bottleneck(
    b: &mut NetBuilder,
    name: &str,
    x: &Blob,
    width: usize,
    out: usize,
    stride: usize,
) -> Result<Blob> {
    let x = conv_bn(b, &format!("{name}_conv_sep"), x, Conv::new(width, 1), true)?;
    let x = conv_bn(
        b,
        &format!("{name}_conv_dw"),
        &x,
        Conv::dw(3).stride(stride).pad(1),
        true,
    )?;
    conv_bn(
        b,
        &format!("{name}_conv_proj"),
        &x,
        Conv::new(out, 1),
        false,
    )
}
