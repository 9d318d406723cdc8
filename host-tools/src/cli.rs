//! Command-line interface: one clap subcommand per tool.

use crate::args::{ImageArgs, PrepArgs};
use crate::calibrate::Method;
use crate::infer::{self, Binding};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "eq", version, about = "EasyQuant tools for ncnn models")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a model on float32 .npy inputs (numpy dims in ncnn order: (c,h,w), (h,w) or (w)).
    Infer(InferArgs),
    /// Write the built-in demo model (demo.param, demo.bin) and an input.npy to a directory.
    Demo(DemoArgs),
    /// Compute an ncnn2table scale table (max, KL or ACIQ) over calibration images.
    Calibrate(CalibrateArgs),
    /// Write the int8 model (as ncnn2int8 does) from an fp32 model and a scale table.
    Quantize(QuantizeArgs),
}

#[derive(Args, Debug)]
pub struct ModelArgs {
    /// Model structure (.param).
    #[arg(long)]
    pub param: PathBuf,
    /// Model weights (.bin).
    #[arg(long)]
    pub bin: PathBuf,
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub images: ImageArgs,
    #[command(flatten)]
    pub prep: PrepArgs,
    /// Activation calibration: max, kl (as ncnn2table) or aciq.
    #[arg(long, value_enum, default_value = "kl")]
    pub method: Method,
    /// Bit width: 8, 7 or 6 (qmax = 2^(bits-1) - 1).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(6..=8))]
    pub bits: u32,
    /// Scale table to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Worker threads, one image each (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Scale table (ncnn2table format).
    #[arg(long)]
    pub table: PathBuf,
    /// 8: int8 (±127); 7: weights in ±63 and layers marked 27=7.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(7..=8))]
    pub bits: u32,
    #[arg(long)]
    pub out_param: PathBuf,
    #[arg(long)]
    pub out_bin: PathBuf,
    /// Layers to keep in fp32 even though the table has them.
    #[arg(long, value_delimiter = ',')]
    pub keep_fp32: Vec<String>,
}

#[derive(Args, Debug)]
pub struct InferArgs {
    /// Model structure (.param or .param.bin).
    #[arg(long)]
    pub param: PathBuf,
    /// Model weights (.bin).
    #[arg(long)]
    pub bin: PathBuf,
    /// Input blob and its .npy file; repeat for several inputs.
    #[arg(long = "in", value_name = "BLOB=FILE", required = true)]
    pub inputs: Vec<Binding>,
    /// Blob to save as .npy; repeat for several. Without it, outputs are printed.
    #[arg(long = "out", value_name = "BLOB=FILE")]
    pub outputs: Vec<Binding>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Directory to write demo.param, demo.bin and input.npy to.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Infer(a) => infer::run(
            &infer::Request {
                param: &a.param,
                bin: &a.bin,
                inputs: &a.inputs,
                outputs: &a.outputs,
                threads: a.threads.unwrap_or_else(infer::default_threads),
            },
            &mut std::io::stdout().lock(),
        ),
        Command::Demo(a) => {
            let [param, bin, input] = crate::demo::write(&a.out)?;
            println!(
                "wrote {}, {}, {}",
                param.display(),
                bin.display(),
                input.display()
            );
            println!(
                "run it: eq infer --param {} --bin {} --in data={} --out prob={}",
                param.display(),
                bin.display(),
                input.display(),
                a.out.join("prob.npy").display()
            );
            Ok(())
        }
        Command::Calibrate(a) => run_calibrate(&a),
        Command::Quantize(a) => run_quantize(&a),
    }
}

fn run_options(threads: Option<usize>, strict: bool, label: &str) -> crate::runner::RunOptions {
    crate::runner::RunOptions {
        workers: threads.unwrap_or_else(infer::default_threads),
        strict,
        progress: Some(label.to_string()),
    }
}

fn run_calibrate(a: &CalibrateArgs) -> Result<()> {
    let prep = a.prep.preprocess()?;
    let paths = a.images.paths()?;
    let model = crate::model::Model::load(&a.model.param, &a.model.bin)?;
    let spec = crate::runner::NetSpec::for_images(&a.model.param, &a.model.bin, &prep)?;
    let table = crate::calibrate::calibrate(&crate::calibrate::Request {
        model: &model,
        spec,
        prep: &prep,
        paths: &paths,
        run: run_options(a.threads, a.images.strict, "calibrate"),
        method: a.method,
        bits: a.bits,
    })?;
    table.write(&a.out)?;
    println!(
        "wrote {} ({} layers, {:?}, {} bits)",
        a.out.display(),
        table.activations.len(),
        a.method,
        a.bits
    );
    Ok(())
}

fn run_quantize(a: &QuantizeArgs) -> Result<()> {
    use eq_runtime::quant::Precision;
    let model = crate::model::Model::load(&a.model.param, &a.model.bin)?;
    let table = crate::table::ScaleTable::read(&a.table)?;
    let precision = if a.bits == 7 {
        Precision::Int7
    } else {
        Precision::Int8
    };
    let (param, bin, report) = crate::quantize::quantize_model(
        &model,
        &table,
        &crate::quantize::Options {
            precision,
            keep_fp32: &a.keep_fp32,
        },
    )?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for (name, why) in &report.fp32 {
        println!("{name}: stays fp32 ({why})");
    }
    for (path, bytes) in [(&a.out_param, param.as_bytes()), (&a.out_bin, &bin[..])] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        }
        std::fs::write(path, bytes).with_context(|| format!("{}", path.display()))?;
    }
    println!(
        "wrote {} and {}: {} of {} layers quantized ({} bits), {} with int8 output",
        a.out_param.display(),
        a.out_bin.display(),
        report.quantized.len(),
        model.layers.len(),
        a.bits,
        report.requantized.len()
    );
    Ok(())
}
