//! `eq zoo`: the benchmark networks, generated from the project's own architecture
//! definitions. Each net is written the way a Caffe / MXNet model looks after ncnn's converter
//! and optimiser: BatchNorm/Scale folded into convolutions where the original was, ReLU fused
//! into the preceding layer (key 9), Dropout removed, a Split wherever a blob feeds several
//! layers. Layer order follows the original prototxt, so the shapes line up layer by layer
//! with ncnn's benchmark `.param` files.

mod classifiers;
mod mobilefacenet;
mod ssd;

use crate::builder::{Blob, NetBuilder};
use crate::ncnn_writer::ModelWriter;
use anyhow::{bail, Result};
use eq_runtime::Shape;
use std::path::{Path, PathBuf};

/// Weight seed of the models written with `--weights`.
pub const SEED: u64 = 0x200_5EED;

/// One network of the zoo.
pub struct Model {
    /// File stem, as in ncnn's benchmark directory.
    pub name: &'static str,
    pub description: &'static str,
    /// Input blob `data`: (w, h, c).
    pub input: Shape,
    build: fn(&mut NetBuilder, Blob) -> Result<()>,
}

/// Every network, in the order `eq zoo` writes them.
pub const MODELS: &[Model] = &[
    Model {
        name: "squeezenet",
        description: "SqueezeNet v1.1, ImageNet 227x227",
        input: Shape::d3(227, 227, 3),
        build: classifiers::squeezenet,
    },
    Model {
        name: "mobilenet",
        description: "MobileNetV1 1.0, ImageNet 224x224",
        input: Shape::d3(224, 224, 3),
        build: classifiers::mobilenet,
    },
    Model {
        name: "vgg16",
        description: "VGG16, ImageNet 224x224",
        input: Shape::d3(224, 224, 3),
        build: classifiers::vgg16,
    },
    Model {
        name: "resnet50",
        description: "ResNet-50 (Caffe: stride on the 1x1 convs), ImageNet 224x224",
        input: Shape::d3(224, 224, 3),
        build: classifiers::resnet50,
    },
    Model {
        name: "mobilenet_v2",
        description: "MobileNetV2 1.0, ImageNet 224x224",
        input: Shape::d3(224, 224, 3),
        build: classifiers::mobilenet_v2,
    },
    Model {
        name: "squeezenet_ssd",
        description: "SqueezeNet-SSD, VOC 21 classes, 300x300",
        input: Shape::d3(300, 300, 3),
        build: ssd::squeezenet_ssd,
    },
    Model {
        name: "mobilenet_ssd",
        description: "MobileNet-SSD, VOC 21 classes, 300x300",
        input: Shape::d3(300, 300, 3),
        build: ssd::mobilenet_ssd,
    },
    Model {
        name: "mobilefacenet",
        description: "MobileFaceNet, 112x112 face -> 128-d embedding",
        input: Shape::d3(112, 112, 3),
        build: mobilefacenet::mobilefacenet,
    },
];

/// The model called `name`.
pub fn find(name: &str) -> Result<&'static Model> {
    match MODELS.iter().find(|m| m.name == name) {
        Some(m) => Ok(m),
        None => {
            let names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
            bail!("unknown model `{name}` (known: {})", names.join(", "))
        }
    }
}

impl Model {
    /// The network; with `weights`, a matching `.bin` of seeded weights too, otherwise an
    /// empty one (load the `.param` with zero weights, as ncnn's benchmark does).
    pub fn build(&self, weights: bool) -> Result<ModelWriter> {
        let mut b = if weights {
            NetBuilder::new(SEED)
        } else {
            NetBuilder::without_weights()
        };
        let data = b.input("data", self.input);
        (self.build)(&mut b, data)?;
        Ok(b.finish())
    }

    /// Writes `<dir>/<name>.param` (and `<name>.bin` with `weights`); returns the paths.
    pub fn write(&self, dir: &Path, weights: bool) -> Result<Vec<PathBuf>> {
        let m = self.build(weights)?;
        if weights {
            let (param, bin) = m.save(dir, self.name)?;
            return Ok(vec![param, bin]);
        }
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        let param = dir.join(format!("{}.param", self.name));
        std::fs::write(&param, m.param.to_text()?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", param.display()))?;
        Ok(vec![param])
    }
}

/// Writes the named models (all when `names` is empty) to `dir`; returns the files written.
pub fn write(dir: &Path, names: &[String], weights: bool) -> Result<Vec<PathBuf>> {
    let models: Vec<&Model> = if names.is_empty() {
        MODELS.iter().collect()
    } else {
        names.iter().map(|n| find(n)).collect::<Result<_>>()?
    };
    let mut files = Vec::new();
    for m in models {
        files.extend(m.write(dir, weights)?);
    }
    Ok(files)
}
