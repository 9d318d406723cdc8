//! ImageNet classifiers: 1000 classes, softmax output `prob`.

use crate::builder::{Blob, Conv, NetBuilder};
use anyhow::Result;

/// SqueezeNet v1.1 (Iandola et al. 2016, v1.1 revision): a 3x3/2 stem with 64 filters,
/// max pools after conv1, fire3 and fire5, eight fire modules, a 1x1 classifier conv and
/// global average pooling. The Caffe release pads conv10 by 1, so it sees 16x16.
pub fn squeezenet(b: &mut NetBuilder, data: Blob) -> Result<()> {
    let x = b.conv("conv1", &data, Conv::new(64, 3).stride(2).relu())?;
    let x = b.pool("pool1", &x, 3, 2, true);
    let x = fire(b, "fire2", &x, 16, 64)?;
    let x = fire(b, "fire3", &x, 16, 64)?;
    let x = b.pool("pool3", &x, 3, 2, true);
    let x = fire(b, "fire4", &x, 32, 128)?;
    let x = fire(b, "fire5", &x, 32, 128)?;
    let x = b.pool("pool5", &x, 3, 2, true);
    let x = fire(b, "fire6", &x, 48, 192)?;
    let x = fire(b, "fire7", &x, 48, 192)?;
    let x = fire(b, "fire8", &x, 64, 256)?;
    let x = fire(b, "fire9", &x, 64, 256)?;
    let x = b.conv("conv10", &x, Conv::new(1000, 1).pad(1).relu())?;
    let x = b.global_avg_pool("pool10", &x);
    b.softmax("prob", &x);
    Ok(())
}

/// A fire module: 1x1 squeeze, then 1x1 and 3x3 expands side by side, concatenated.
pub fn fire(
    b: &mut NetBuilder,
    name: &str,
    x: &Blob,
    squeeze: usize,
    expand: usize,
) -> Result<Blob> {
    let s = b.conv(
        &format!("{name}/squeeze1x1"),
        x,
        Conv::new(squeeze, 1).relu(),
    )?;
    let s = b.split(&format!("{name}/split"), &s, 2);
    let e1 = b.conv(
        &format!("{name}/expand1x1"),
        &s[0],
        Conv::new(expand, 1).relu(),
    )?;
    let e3 = b.conv(
        &format!("{name}/expand3x3"),
        &s[1],
        Conv::new(expand, 3).pad(1).relu(),
    )?;
    b.concat(&format!("{name}/concat"), &[&e1, &e3], 0)
}

/// MobileNetV1, width 1.0 (Howard et al. 2017, Table 1): a 3x3/2 stem of 32, thirteen
/// depthwise-separable blocks, global average pooling, a 1000-way classifier.
pub fn mobilenet(b: &mut NetBuilder, data: Blob) -> Result<()> {
    let mut x = b.conv("conv1", &data, Conv::new(32, 3).stride(2).pad(1).relu())?;
    // (pointwise outputs, depthwise stride) of conv2_1 .. conv6.
    let blocks = [
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (1024, 2),
        (1024, 1),
    ];
    for (i, &(out, stride)) in blocks.iter().enumerate() {
        x = separable(b, &format!("conv{}", i + 2), &x, out, stride)?;
    }
    let x = b.global_avg_pool("pool6", &x);
    let x = b.inner_product("fc7", &x, 1000);
    b.softmax("prob", &x);
    Ok(())
}

/// Depthwise 3x3 (+ReLU) then pointwise 1x1 (+ReLU), BatchNorm folded into both.
pub fn separable(
    b: &mut NetBuilder,
    name: &str,
    x: &Blob,
    out: usize,
    stride: usize,
) -> Result<Blob> {
    let x = b.depthwise(
        &format!("{name}/dw"),
        x,
        Conv::dw(3).stride(stride).pad(1).relu(),
    )?;
    b.conv(&format!("{name}/sep"), &x, Conv::new(out, 1).relu())
}

/// VGG16 (Simonyan & Zisserman 2014, configuration D): thirteen 3x3 convs in five stages,
/// 2x2 max pools, three fully connected layers (dropout removed for inference).
pub fn vgg16(b: &mut NetBuilder, data: Blob) -> Result<()> {
    let stages = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)];
    let mut x = data;
    for (s, &(out, convs)) in stages.iter().enumerate() {
        for i in 0..convs {
            let name = format!("conv{}_{}", s + 1, i + 1);
            x = b.conv(&name, &x, Conv::new(out, 3).pad(1).relu())?;
        }
        x = b.pool(&format!("pool{}", s + 1), &x, 2, 2, true);
    }
    let x = b.dense("fc6", &x, 4096, true);
    let x = b.dense("fc7", &x, 4096, true);
    let x = b.inner_product("fc8", &x, 1000);
    b.softmax("prob", &x);
    Ok(())
}

/// ResNet-50 (He et al. 2015, Table 1) as released for Caffe: bottleneck blocks with the
/// stride on the first 1x1 conv, a projection shortcut in the first block of each stage,
/// a 7x7 average pool and a 1000-way classifier.
pub fn resnet50(b: &mut NetBuilder, data: Blob) -> Result<()> {
    let x = b.conv("conv1", &data, Conv::new(64, 7).stride(2).pad(3).relu())?;
    let mut x = b.pool("pool1", &x, 3, 2, true);
    // (bottleneck width, blocks, stride of the first block) per stage.
    let stages = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)];
    for (s, &(width, blocks, stride)) in stages.iter().enumerate() {
        for i in 0..blocks {
            let name = format!("res{}{}", s + 2, (b'a' + i as u8) as char);
            let first = i == 0;
            x = bottleneck(b, &name, &x, width, if first { stride } else { 1 }, first)?;
        }
    }
    let x = b.pool("pool5", &x, 7, 1, false);
    let x = b.inner_product("fc1000", &x, 1000);
    b.softmax("prob", &x);
    Ok(())
}

/// 1x1 reduce, 3x3, 1x1 expand to 4x width; added to the shortcut, then ReLU.
fn bottleneck(
    b: &mut NetBuilder,
    name: &str,
    x: &Blob,
    width: usize,
    stride: usize,
    project: bool,
) -> Result<Blob> {
    let xs = b.split(&format!("{name}_split"), x, 2);
    let shortcut = if project {
        let c = Conv::new(4 * width, 1).stride(stride);
        b.conv(&format!("{name}_branch1"), &xs[0], c)?
    } else {
        xs[0].clone()
    };
    let y = b.conv(
        &format!("{name}_branch2a"),
        &xs[1],
        Conv::new(width, 1).stride(stride).relu(),
    )?;
    let y = b.conv(
        &format!("{name}_branch2b"),
        &y,
        Conv::new(width, 3).pad(1).relu(),
    )?;
    let y = b.conv(&format!("{name}_branch2c"), &y, Conv::new(4 * width, 1))?;
    let y = b.eltwise_sum(name, &[&shortcut, &y])?;
    Ok(b.relu(&format!("{name}_relu"), &y, 0.0))
}

/// MobileNetV2, width 1.0 (Sandler et al. 2018, Table 2) as released for Caffe: inverted
/// residual blocks (1x1 expand + ReLU, 3x3 depthwise + ReLU, linear 1x1 project), a residual
/// add where stride is 1 and channels match. The first block (t=1) keeps its expand conv.
pub fn mobilenet_v2(b: &mut NetBuilder, data: Blob) -> Result<()> {
    let mut x = b.conv("conv1", &data, Conv::new(32, 3).stride(2).pad(1).relu())?;
    // (expansion t, output channels c, repeats n, first stride s), the paper's table.
    let settings = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    for (s, &(t, c, n, stride)) in settings.iter().enumerate() {
        for i in 0..n {
            let name = format!("conv{}_{}", s + 2, i + 1);
            x = inverted_residual(b, &name, &x, t, c, if i == 0 { stride } else { 1 })?;
        }
    }
    let x = b.conv("conv6_4", &x, Conv::new(1280, 1).relu())?;
    let x = b.global_avg_pool("pool6", &x);
    let x = b.inner_product("fc7", &x, 1000);
    b.softmax("prob", &x);
    Ok(())
}

fn inverted_residual(
    b: &mut NetBuilder,
    name: &str,
    x: &Blob,
    expansion: usize,
    out: usize,
    stride: usize,
) -> Result<Blob> {
    let residual = stride == 1 && x.shape.c == out;
    let (input, shortcut) = if residual {
        let xs = b.split(&format!("{name}/split"), x, 2);
        (xs[1].clone(), Some(xs[0].clone()))
    } else {
        (x.clone(), None)
    };
    let hidden = expansion * x.shape.c;
    let y = b.conv(
        &format!("{name}/expand"),
        &input,
        Conv::new(hidden, 1).relu(),
    )?;
    let y = b.depthwise(
        &format!("{name}/dwise"),
        &y,
        Conv::dw(3).stride(stride).pad(1).relu(),
    )?;
    let y = b.conv(&format!("{name}/linear"), &y, Conv::new(out, 1))?;
    match shortcut {
        Some(s) => b.eltwise_sum(&format!("{name}/add"), &[&s, &y]),
        None => Ok(y),
    }
}
