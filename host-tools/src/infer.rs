//! `eq infer`: runs a model on `.npy` inputs and writes or prints its outputs.
//!
//! Arrays are exchanged in ncnn's blob order, numpy dims outermost first: (c, h, w), (h, w),
//! (w) or (c, d, h, w). Input shapes come from the `.npy` files, so models whose Input layer
//! declares no shape run too; a file whose shape contradicts a declared shape is an error.

use crate::npy;
use anyhow::{anyhow, bail, Context, Result};
use eq_runtime::model::weights::{Source, WeightReader};
use eq_runtime::ops::input::Input;
use eq_runtime::{Net, Options, Shape};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `BLOB=FILE` on the command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    pub blob: String,
    pub path: PathBuf,
}

impl std::str::FromStr for Binding {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Binding, String> {
        match s.split_once('=') {
            Some((blob, path)) if !blob.is_empty() && !path.is_empty() => Ok(Binding {
                blob: blob.to_string(),
                path: PathBuf::from(path),
            }),
            _ => Err(format!("expected BLOB=FILE.npy, got `{s}`")),
        }
    }
}

/// Values printed per output when no `--out` is given.
const PREVIEW: usize = 8;

pub struct Request<'a> {
    pub param: &'a Path,
    pub bin: &'a Path,
    pub inputs: &'a [Binding],
    pub outputs: &'a [Binding],
    pub threads: usize,
}

/// Loads the model for the given inputs, runs it once and writes each `--out` blob; without
/// `--out`, prints every graph output's name, shape and first values to `report`.
pub fn run(req: &Request, report: &mut dyn Write) -> Result<()> {
    for (i, b) in req.inputs.iter().enumerate() {
        if req.inputs[..i].iter().any(|o| o.blob == b.blob) {
            bail!("input blob `{}` is given twice", b.blob);
        }
    }
    let mut arrays = Vec::with_capacity(req.inputs.len());
    for b in req.inputs {
        let a = npy::read(&b.path)?;
        let shape = Shape::from_numpy_dims(&a.dims).map_err(|e| {
            anyhow!(
                "{}: shape {} cannot be fed to a blob: {e} (numpy dims in ncnn order: (c, h, w), (h, w), (w) or (c, d, h, w), no batch dimension)",
                b.path.display(),
                npy::shape_text(&a.dims)
            )
        })?;
        arrays.push((b, shape, a.data));
    }

    let param_file = eq_runtime::model::read_param(req.param)?;
    check_inputs_match_model(&param_file, &arrays)?;
    // Blobs nothing consumes are kept by the runtime; asking for any other needs keep-all.
    let consumed: Vec<&str> = param_file
        .layers
        .iter()
        .flat_map(|l| l.bottoms.iter().map(String::as_str))
        .collect();
    let keep_all_blobs = req
        .outputs
        .iter()
        .any(|o| consumed.contains(&o.blob.as_str()));

    let opts = Options {
        threads: req.threads,
        input_shapes: arrays
            .iter()
            .map(|(b, shape, _)| (b.blob.clone(), *shape))
            .collect(),
        keep_all_blobs,
        ..Options::default()
    };
    let weights = WeightReader::new(
        Arc::new(Source::map(req.bin)?),
        req.bin.display().to_string(),
    );
    let mut net = Net::build(param_file, weights, &req.param.display().to_string(), &opts)?;
    for o in req.outputs {
        net.blob_shape(&o.blob)?;
    }
    for (b, _, data) in &arrays {
        net.set_input(&b.blob, data)?;
    }
    net.run()?;

    if req.outputs.is_empty() {
        let names: Vec<String> = net.outputs().map(|(n, _)| n.to_string()).collect();
        for name in names {
            let t = net.blob(&name)?;
            let first: Vec<String> = t
                .data
                .iter()
                .take(PREVIEW)
                .map(|v| format!("{v:.6}"))
                .collect();
            let more = if t.data.len() > PREVIEW { " ..." } else { "" };
            writeln!(
                report,
                "{name}: shape {} first values: {}{more}",
                npy::shape_text(&t.shape.numpy_dims()),
                first.join(" ")
            )?;
        }
    }
    for o in req.outputs {
        let t = net.blob(&o.blob)?;
        ensure_parent(&o.path)?;
        npy::write(&o.path, &t.shape.numpy_dims(), t.data)?;
        writeln!(
            report,
            "wrote {} {} -> {}",
            o.blob,
            npy::shape_text(&t.shape.numpy_dims()),
            o.path.display()
        )?;
    }
    Ok(())
}

/// Every `--in` must name an Input layer's blob, every Input needs an `--in`, and a shape the
/// Input layer declares must match the file's.
fn check_inputs_match_model(
    pf: &eq_runtime::model::param::ParamFile,
    arrays: &[(&Binding, Shape, Vec<f32>)],
) -> Result<()> {
    let mut model_inputs = Vec::new();
    for l in pf.layers.iter().filter(|l| l.kind == "Input") {
        let declared = Input::new(&l.params)
            .map_err(|e| anyhow!("Input layer `{}`: {e}", l.name))?
            .declared;
        for top in &l.tops {
            model_inputs.push((top.as_str(), declared));
        }
    }
    let names = || {
        model_inputs
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (b, shape, _) in arrays {
        let Some((_, declared)) = model_inputs.iter().find(|(n, _)| *n == b.blob) else {
            bail!(
                "`{}` is not an input blob of the model (inputs: {})",
                b.blob,
                names()
            );
        };
        if let Some(d) = declared {
            if d != shape {
                let given = shape.numpy_dims();
                // A leading batch dimension of 1 is the usual cause; ncnn blobs have none.
                let hint = if given.len() > 1 && given[0] == 1 && given[1..] == d.numpy_dims() {
                    " (drop the leading batch dimension: ncnn blobs have none)"
                } else {
                    ""
                };
                bail!(
                    "{}: shape {} does not match the shape {} that the model declares for input `{}`{hint}",
                    b.path.display(),
                    npy::shape_text(&given),
                    npy::shape_text(&d.numpy_dims()),
                    b.blob
                );
            }
        }
    }
    for (name, _) in &model_inputs {
        if !arrays.iter().any(|(b, _, _)| b.blob == *name) {
            bail!("the model's input `{name}` has no --in {name}=FILE.npy");
        }
    }
    Ok(())
}

/// Default worker count: every available core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Creates the directory an output file goes to.
fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    Ok(())
}
