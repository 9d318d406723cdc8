//! Runs a model over many images on several worker threads, each with its own `Net`.
//!
//! Images are split into contiguous chunks, one per worker, so results come back in image
//! order and per-worker accumulators can be merged in a fixed order (deterministic output
//! whatever the timing).

use crate::dataset::{self, Preprocess};
use anyhow::{anyhow, bail, Result};
use eq_runtime::ops::input::Input;
use eq_runtime::{Net, Options, PrecisionChoice, Shape};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// How to load the net each worker runs.
#[derive(Clone, Debug)]
pub struct NetSpec {
    pub param: PathBuf,
    pub bin: PathBuf,
    /// The input blob images are written to.
    pub input: String,
    /// Shape for an Input layer that declares none (taken from the preprocessing size).
    pub input_shape: Option<Shape>,
    pub keep_all_blobs: bool,
    pub precision: PrecisionChoice,
    /// Pool threads inside each net.
    pub threads: usize,
}

impl NetSpec {
    /// A spec for image models: finds the single Input layer and checks that a shape it
    /// declares is the preprocessing's (3, h, w).
    pub fn for_images(param: &Path, bin: &Path, prep: &Preprocess) -> Result<NetSpec> {
        let pf = eq_runtime::model::read_param(param)?;
        let inputs: Vec<_> = pf.layers.iter().filter(|l| l.kind == "Input").collect();
        let [layer] = inputs[..] else {
            bail!(
                "{}: image tools need exactly one Input layer, found {}",
                param.display(),
                inputs.len()
            );
        };
        let input = layer
            .tops
            .first()
            .ok_or_else(|| anyhow!("Input layer `{}` has no output", layer.name))?
            .clone();
        let want = Shape::d3(prep.size.0 as usize, prep.size.1 as usize, 3);
        let declared = Input::new(&layer.params)
            .map_err(|e| anyhow!("Input layer `{}`: {e}", layer.name))?
            .declared;
        if let Some(d) = declared {
            if d != want {
                bail!(
                    "the model's input `{input}` is {d} but the preprocessing makes {want} (check --size / --preset)"
                );
            }
        }
        Ok(NetSpec {
            param: param.to_path_buf(),
            bin: bin.to_path_buf(),
            input,
            input_shape: Some(want),
            keep_all_blobs: false,
            precision: PrecisionChoice::Auto,
            threads: 1,
        })
    }

    pub fn load(&self) -> Result<Net> {
        let opts = Options {
            threads: self.threads,
            input_shapes: self
                .input_shape
                .map(|s| vec![(self.input.clone(), s)])
                .unwrap_or_default(),
            keep_all_blobs: self.keep_all_blobs,
            precision: self.precision,
            ..Options::default()
        };
        Ok(Net::load(&self.param, &self.bin, &opts)?)
    }
}

/// Worker count and error policy of a run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub workers: usize,
    /// Fail on an unreadable image instead of skipping it with a warning.
    pub strict: bool,
    /// Progress bar label (drawn only on a terminal); None: no bar.
    pub progress: Option<String>,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            workers: crate::infer::default_threads(),
            strict: false,
            progress: None,
        }
    }
}

fn progress_bar(opts: &RunOptions, n: usize) -> ProgressBar {
    match &opts.progress {
        Some(label) => {
            let bar = ProgressBar::new(n as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} [{elapsed} < {eta}]")
            {
                bar.set_style(style);
            }
            bar.set_message(label.clone());
            bar
        }
        None => ProgressBar::hidden(),
    }
}

/// Runs the net on every image and folds the results per worker: `step(acc, image index,
/// net)` is called after each run. Returns one accumulator per worker (in chunk order) and
/// the number of images that loaded. Unreadable images are skipped (warning) unless strict.
pub fn fold_images<A: Send>(
    spec: &NetSpec,
    prep: &Preprocess,
    paths: &[PathBuf],
    opts: &RunOptions,
    init: &(dyn Fn() -> A + Sync),
    step: &(dyn Fn(&mut A, usize, &Net) -> Result<()> + Sync),
) -> Result<(Vec<A>, usize)> {
    let workers = opts.workers.clamp(1, paths.len().max(1));
    let chunk = paths.len().div_ceil(workers).max(1);
    let bar = progress_bar(opts, paths.len());
    let failed = AtomicBool::new(false);
    let results: Vec<Result<(A, usize)>> = std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .enumerate()
            .map(|(k, part)| {
                let (bar, failed) = (&bar, &failed);
                s.spawn(move || -> Result<(A, usize)> {
                    let mut net = spec.load()?;
                    let mut acc = init();
                    let mut loaded = 0;
                    for (i, path) in part.iter().enumerate() {
                        if failed.load(Ordering::Relaxed) {
                            break;
                        }
                        let result = (|| -> Result<()> {
                            let input = net.input_mut(&spec.input)?;
                            let read = prep.load_into(path, input.data);
                            if dataset::skip_unreadable(path, read, opts.strict)?.is_none() {
                                return Ok(());
                            }
                            net.run().map_err(|e| anyhow!("{}: {e}", path.display()))?;
                            step(&mut acc, k * chunk + i, &net)?;
                            loaded += 1;
                            Ok(())
                        })();
                        if let Err(e) = result {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                        bar.inc(1);
                    }
                    Ok((acc, loaded))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    bar.finish_and_clear();
    let mut accs = Vec::with_capacity(results.len());
    let mut loaded = 0;
    for r in results {
        let (a, n) = r?;
        accs.push(a);
        loaded += n;
    }
    if loaded == 0 {
        bail!("none of the {} images could be read", paths.len());
    }
    Ok((accs, loaded))
}

/// Runs the net on every image and returns `f(net)` per image, in order (None for a
/// skipped image).
pub fn map_images<T: Send>(
    spec: &NetSpec,
    prep: &Preprocess,
    paths: &[PathBuf],
    opts: &RunOptions,
    f: &(dyn Fn(&Net) -> Result<T> + Sync),
) -> Result<Vec<Option<T>>> {
    let (parts, _) = fold_images(
        spec,
        prep,
        paths,
        opts,
        &Vec::new,
        &|acc: &mut Vec<(usize, T)>, i, net| {
            acc.push((i, f(net)?));
            Ok(())
        },
    )?;
    let mut out: Vec<Option<T>> = (0..paths.len()).map(|_| None).collect();
    for (i, v) in parts.into_iter().flatten() {
        out[i] = Some(v);
    }
    Ok(out)
}
