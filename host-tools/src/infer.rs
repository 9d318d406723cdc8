//! `eq infer`: runs a model on `.npy` inputs and writes or prints its outputs.
//!
//! Arrays are exchanged in ncnn's blob order, numpy dims outermost first: (c, h, w), (h, w),
//! (w) or (c, d, h, w). Input shapes come from the `.npy` files, so models whose Input layer
//! declares no shape run too; a file whose shape contradicts a declared shape is an error.
//!
//! With `batch`, every input file carries a leading dimension N (the same for all inputs): the
//! model is loaded once and run N times, and every written blob gets the leading N back.

use crate::npy;
use anyhow::{anyhow, bail, Context, Result};
use eq_runtime::model::weights::{Source, WeightReader};
use eq_runtime::ops::input::Input;
use eq_runtime::{Net, Options, PrecisionChoice, Shape};
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
    /// Arithmetic of the quantizable layers (`Options::precision`).
    pub precision: PrecisionChoice,
    /// Inputs carry a leading batch dimension; run once per item and stack the outputs.
    pub batch: bool,
}

/// An input file: the binding, the shape of one item and all items' values back to back.
struct InputArray<'a> {
    binding: &'a Binding,
    /// The file's leading dimension was the batch (not part of `shape`).
    batched: bool,
    shape: Shape,
    data: Vec<f32>,
}

/// Loads the model for the given inputs, runs it once (or once per batch item) and writes each
/// `--out` blob; without `--out`, prints every graph output's name, shape and first values (of
/// the first item) to `report`.
pub fn run(req: &Request, report: &mut dyn Write) -> Result<()> {
    for (i, b) in req.inputs.iter().enumerate() {
        if req.inputs[..i].iter().any(|o| o.blob == b.blob) {
            bail!("input blob `{}` is given twice", b.blob);
        }
    }
    let (arrays, items) = read_inputs(req)?;

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
            .map(|a| (a.binding.blob.clone(), a.shape))
            .collect(),
        keep_all_blobs,
        precision: req.precision,
        ..Options::default()
    };
    let weights = WeightReader::new(
        Arc::new(Source::map(req.bin)?),
        req.bin.display().to_string(),
    );
    let mut net = Net::build(param_file, weights, &req.param.display().to_string(), &opts)?;
    // Output shapes are fixed by the plan, so every item's values stack into one array.
    let mut collected = Vec::with_capacity(req.outputs.len());
    for o in req.outputs {
        let shape = net.blob_shape(&o.blob)?;
        collected.push((shape, Vec::with_capacity(shape.len() * items)));
    }

    for item in 0..items {
        for a in &arrays {
            let n = a.shape.len();
            net.set_input(&a.binding.blob, &a.data[item * n..(item + 1) * n])?;
        }
        net.run()?;
        if item == 0 && req.outputs.is_empty() {
            print_outputs(&net, report)?;
        }
        for (o, (_, values)) in req.outputs.iter().zip(&mut collected) {
            // Int8 intermediates (requantized convolution outputs) come back dequantized.
            values.extend_from_slice(&net.blob_f32(&o.blob)?.1);
        }
    }

    for (o, (shape, values)) in req.outputs.iter().zip(&collected) {
        let mut dims = shape.numpy_dims();
        if req.batch {
            dims.insert(0, items);
        }
        ensure_parent(&o.path)?;
        npy::write(&o.path, &dims, values)?;
        // An int8 intermediate says its grid: its values are quantize(x, scale) / scale.
        let grid = match net.int8_grid(&o.blob)? {
            Some(g) => format!(" (int8 grid: scale {:e} qmax {})", g.scale, g.qmax),
            None => String::new(),
        };
        writeln!(
            report,
            "wrote {} {} -> {}{grid}",
            o.blob,
            npy::shape_text(&dims),
            o.path.display()
        )?;
    }
    Ok(())
}

/// Reads every `--in` file; in batch mode strips the leading dimension, which must be the same
/// for all files. Returns the arrays and the number of items to run.
fn read_inputs<'a>(req: &'a Request) -> Result<(Vec<InputArray<'a>>, usize)> {
    let mut arrays = Vec::with_capacity(req.inputs.len());
    let mut items: Option<(usize, &Binding)> = None;
    for b in req.inputs {
        let a = npy::read(&b.path)?;
        let item_dims = if req.batch {
            let Some((&n, rest)) = a.dims.split_first() else {
                bail!(
                    "{}: --batch needs a leading batch dimension, the file is a scalar",
                    b.path.display()
                );
            };
            if n == 0 {
                bail!("{}: --batch with 0 items", b.path.display());
            }
            if let Some((first_n, first)) = items {
                if first_n != n {
                    bail!(
                        "{}: batch of {n} items, but {} has {first_n}; --batch needs the same count in every input",
                        b.path.display(),
                        first.path.display()
                    );
                }
            }
            items = Some((n, b));
            rest
        } else {
            &a.dims[..]
        };
        let shape = Shape::from_numpy_dims(item_dims).map_err(|e| {
            let expect = if req.batch {
                "(n, c, h, w), (n, h, w), (n, w) or (n, c, d, h, w) with --batch"
            } else {
                "(c, h, w), (h, w), (w) or (c, d, h, w), no batch dimension"
            };
            anyhow!(
                "{}: shape {} cannot be fed to a blob: {e} (numpy dims in ncnn order: {expect})",
                b.path.display(),
                npy::shape_text(&a.dims)
            )
        })?;
        arrays.push(InputArray {
            binding: b,
            batched: req.batch,
            shape,
            data: a.data,
        });
    }
    Ok((arrays, items.map_or(1, |(n, _)| n)))
}

/// Prints every graph output's name, shape and first values.
fn print_outputs(net: &Net, report: &mut dyn Write) -> Result<()> {
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
    Ok(())
}

/// Every `--in` must name an Input layer's blob, every Input needs an `--in`, and a shape the
/// Input layer declares must match the file's.
fn check_inputs_match_model(
    pf: &eq_runtime::model::param::ParamFile,
    arrays: &[InputArray],
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
    for a in arrays {
        let (b, shape) = (a.binding, &a.shape);
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
                // A leading batch dimension is the usual cause; ncnn blobs have none.
                let batched = given.len() > 1 && given[1..] == d.numpy_dims();
                let hint = if batched && given[0] == 1 {
                    " (drop the leading batch dimension: ncnn blobs have none; or pass --batch)"
                } else if batched {
                    " (a leading batch dimension needs --batch)"
                } else {
                    ""
                };
                let per_item = if a.batched { " per item" } else { "" };
                bail!(
                    "{}: shape{per_item} {} does not match the shape {} that the model declares for input `{}`{hint}",
                    b.path.display(),
                    npy::shape_text(&given),
                    npy::shape_text(&d.numpy_dims()),
                    b.blob
                );
            }
        }
    }
    for (name, _) in &model_inputs {
        if !arrays.iter().any(|a| a.binding.blob == *name) {
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
