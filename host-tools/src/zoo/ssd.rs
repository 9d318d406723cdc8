//! SSD detectors (Liu et al. 2016) on 300x300 input, 21 VOC classes: a backbone, extra
//! feature layers that halve the resolution, and per source map a loc head, a conf head and
//! prior boxes, decoded by DetectionOutput.

use super::classifiers::{fire, separable};
use crate::builder::{Blob, Conv, NetBuilder, Priors};
use anyhow::Result;

const CLASSES: usize = 21;

/// One source feature map: its blob (split three ways for the heads) and its priors.
struct Source<'a> {
    name: String,
    /// The three branches: loc, conf, priorbox.
    branches: [Blob; 3],
    priors: Priors<'a>,
}

/// Splits `x` into the next layer's input plus three head inputs (`extra` = false: heads
/// only).
fn tap(b: &mut NetBuilder, name: &str, x: &Blob, extra: bool) -> (Option<Blob>, [Blob; 3]) {
    let xs = b.split(&format!("{name}_split"), x, if extra { 4 } else { 3 });
    let heads = [xs[0].clone(), xs[1].clone(), xs[2].clone()];
    (xs.get(3).cloned(), heads)
}

/// The heads of every source, then the concatenations, softmax and DetectionOutput.
/// `head_kernel` is 1 (MobileNet-SSD) or 3 (SqueezeNet-SSD). The image blobs feed the
/// prior boxes, one per source.
fn heads(
    b: &mut NetBuilder,
    sources: &[Source],
    images: &[Blob],
    head_kernel: usize,
) -> Result<()> {
    let mut locs = Vec::new();
    let mut confs = Vec::new();
    let mut priors = Vec::new();
    for (s, image) in sources.iter().zip(images) {
        let n = s.priors.count();
        let conv = |out| Conv::new(out, head_kernel).pad(head_kernel / 2);
        let name = &s.name;
        let loc = b.conv(&format!("{name}_mbox_loc"), &s.branches[0], conv(4 * n))?;
        let loc = b.permute_to_hwc(&format!("{name}_mbox_loc_perm"), &loc)?;
        locs.push(b.flatten(&format!("{name}_mbox_loc_flat"), &loc));
        let conf = b.conv(
            &format!("{name}_mbox_conf"),
            &s.branches[1],
            conv(CLASSES * n),
        )?;
        let conf = b.permute_to_hwc(&format!("{name}_mbox_conf_perm"), &conf)?;
        confs.push(b.flatten(&format!("{name}_mbox_conf_flat"), &conf));
        let p = b.prior_box(
            &format!("{name}_mbox_priorbox"),
            &s.branches[2],
            image,
            &s.priors,
        );
        priors.push(p);
    }
    let loc = b.concat("mbox_loc", &refs(&locs), 0)?;
    let conf = b.concat("mbox_conf", &refs(&confs), 0)?;
    let priors = b.concat("mbox_priorbox", &refs(&priors), 1)?;
    let conf = b.reshape_rows("mbox_conf_reshape", &conf, CLASSES)?;
    let conf = b.softmax_axis("mbox_conf_softmax", &conf, 1);
    let conf = b.flatten("mbox_conf_flatten", &conf);
    b.detection_output("detection_out", [&loc, &conf, &priors], CLASSES);
    Ok(())
}

fn refs(v: &[Blob]) -> Vec<&Blob> {
    v.iter().collect()
}

/// A 1x1 reduce + 3x3/2 expand pair of SSD's extra layers.
fn extra(b: &mut NetBuilder, name: &str, x: &Blob, reduce: usize, out: usize) -> Result<Blob> {
    let x = b.conv(&format!("{name}_1"), x, Conv::new(reduce, 1).relu())?;
    b.conv(
        &format!("{name}_2"),
        &x,
        Conv::new(out, 3).stride(2).pad(1).relu(),
    )
}

const AR2: &[f32] = &[2.0];
const AR23: &[f32] = &[2.0, 3.0];

/// MobileNet-SSD (chuanqi305's Caffe release): MobileNetV1 to conv13, extra layers conv14 to
/// conv17, sources conv11 (19x19, 3 priors), conv13 (10x10) and the four extras (6 priors).
pub fn mobilenet_ssd(b: &mut NetBuilder, data: Blob) -> Result<()> {
    let images = b.split("data_split", &data, 7);
    let mut x = b.conv(
        "conv0",
        &images[6],
        Conv::new(32, 3).stride(2).pad(1).relu(),
    )?;
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
    ];
    for (i, &(out, stride)) in blocks.iter().enumerate() {
        x = separable(b, &format!("conv{}", i + 1), &x, out, stride)?;
    }
    let mut sources = Vec::new();
    let mut add = |name: &str, branches, min, max, ars| {
        let priors = Priors {
            min_size: min,
            max_size: max,
            aspect_ratios: ars,
            step: None,
        };
        sources.push(Source {
            name: name.into(),
            branches,
            priors,
        })
    };
    let (next, h) = tap(b, "conv11", &x, true);
    add("conv11", h, 60.0, None, AR2);
    let x = separable(b, "conv12", &next.unwrap(), 1024, 2)?;
    let x = separable(b, "conv13", &x, 1024, 1)?;
    let (next, h) = tap(b, "conv13", &x, true);
    add("conv13", h, 105.0, Some(150.0), AR23);
    let x = extra(b, "conv14", &next.unwrap(), 256, 512)?;
    let (next, h) = tap(b, "conv14_2", &x, true);
    add("conv14_2", h, 150.0, Some(195.0), AR23);
    let x = extra(b, "conv15", &next.unwrap(), 128, 256)?;
    let (next, h) = tap(b, "conv15_2", &x, true);
    add("conv15_2", h, 195.0, Some(240.0), AR23);
    let x = extra(b, "conv16", &next.unwrap(), 128, 256)?;
    let (next, h) = tap(b, "conv16_2", &x, true);
    add("conv16_2", h, 240.0, Some(285.0), AR23);
    let x = extra(b, "conv17", &next.unwrap(), 64, 128)?;
    let (_, h) = tap(b, "conv17_2", &x, false);
    add("conv17_2", h, 285.0, Some(300.0), AR23);
    heads(b, &sources, &images[..6], 1)
}

/// SqueezeNet-SSD (chuanqi305's Caffe release): SqueezeNet v1.1 with an extra pool + fire10
/// and pool + fire11, extras conv12 and conv13; sources fire5 (37x37, BatchNorm'd, 4
/// priors), fire9, fire10, fire11, conv12_2 (6 priors) and conv13_2 (4 priors); 3x3 heads.
pub fn squeezenet_ssd(b: &mut NetBuilder, data: Blob) -> Result<()> {
    let images = b.split("data_split", &data, 7);
    let x = b.conv("conv1", &images[6], Conv::new(64, 3).stride(2).relu())?;
    let x = b.pool("pool1", &x, 3, 2, true);
    let x = fire(b, "fire2", &x, 16, 64)?;
    let x = fire(b, "fire3", &x, 16, 64)?;
    let x = b.pool("pool3", &x, 3, 2, true);
    let x = fire(b, "fire4", &x, 32, 128)?;
    let x = fire(b, "fire5", &x, 32, 128)?;
    let fire5 = b.split("fire5_split", &x, 2);
    let x = b.pool("pool5", &fire5[1], 3, 2, true);
    let x = fire(b, "fire6", &x, 48, 192)?;
    let x = fire(b, "fire7", &x, 48, 192)?;
    let x = fire(b, "fire8", &x, 64, 256)?;
    let x = fire(b, "fire9", &x, 64, 256)?;
    let (next, fire9) = tap(b, "fire9", &x, true);
    let x = b.pool("pool9", &next.unwrap(), 3, 2, true);
    let x = fire(b, "fire10", &x, 96, 384)?;
    let (next, fire10) = tap(b, "fire10", &x, true);
    let x = b.pool("pool10", &next.unwrap(), 3, 2, true);
    let x = fire(b, "fire11", &x, 96, 384)?;
    let (next, fire11) = tap(b, "fire11", &x, true);
    let x = extra(b, "conv12", &next.unwrap(), 128, 256)?;
    let (next, conv12) = tap(b, "conv12_2", &x, true);
    let x = extra(b, "conv13", &next.unwrap(), 64, 128)?;
    let (_, conv13) = tap(b, "conv13_2", &x, false);
    // fire5 is 37x37 with large activations: normalised before its heads.
    let x = b.batch_norm("fire5_bn", &fire5[0]);
    let (_, fire5) = tap(b, "fire5_bn", &x, false);

    let priors = |min, max, ars, step| Priors {
        min_size: min,
        max_size: Some(max),
        aspect_ratios: ars,
        step: Some(step),
    };
    let source = |name: &str, branches, priors| Source {
        name: name.into(),
        branches,
        priors,
    };
    let sources = [
        source("fire5", fire5, priors(21.0, 45.0, AR2, 8.0)),
        source("fire9", fire9, priors(45.0, 99.0, AR23, 16.0)),
        source("fire10", fire10, priors(99.0, 153.0, AR23, 32.0)),
        source("fire11", fire11, priors(153.0, 207.0, AR23, 64.0)),
        source("conv12_2", conv12, priors(207.0, 261.0, AR23, 100.0)),
        source("conv13_2", conv13, priors(261.0, 315.0, AR2, 300.0)),
    ];
    heads(b, &sources, &images[..6], 3)
}
