//! Command-line interface: one clap subcommand per tool.

use crate::infer::{self, Binding};
use anyhow::{anyhow, Result};
use clap::{Args, Parser, Subcommand};
use eq_runtime::PrecisionChoice;
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
    /// Write the benchmark networks (SqueezeNet, MobileNet, VGG16, ResNet50, MobileNetV2, SSDs,
    /// MobileFaceNet) as ncnn .param files generated from the built-in architectures.
    Zoo(ZooArgs),
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
    /// Arithmetic of Convolution/ConvolutionDepthWise/InnerProduct: auto (as the model says),
    /// fp32, int8 or int7.
    // Parsed in `run`, so a bad value is the usual one-line error, not clap's usage text.
    #[arg(long, default_value = "auto")]
    pub precision: String,
    /// Every --in file has a leading batch dimension N: run N times, write outputs with it.
    #[arg(long)]
    pub batch: bool,
}

impl InferArgs {
    /// The `--precision` value as the runtime's option.
    pub fn precision(&self) -> Result<PrecisionChoice> {
        self.precision
            .parse::<PrecisionChoice>()
            .map_err(|e| anyhow!("--precision: {e}"))
    }
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Directory to write demo.param, demo.bin and input.npy to.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct ZooArgs {
    /// Directory to write <model>.param (and <model>.bin) to.
    #[arg(long)]
    pub out: PathBuf,
    /// Models to write (default: all): squeezenet, mobilenet, vgg16, resnet50, mobilenet_v2,
    /// squeezenet_ssd, mobilenet_ssd, mobilefacenet.
    #[arg(long = "model", value_name = "NAME")]
    pub models: Vec<String>,
    /// Also write a .bin of seeded random weights (otherwise load with zero weights).
    #[arg(long)]
    pub weights: bool,
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
                precision: a.precision()?,
                batch: a.batch,
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
        Command::Zoo(a) => {
            for f in crate::zoo::write(&a.out, &a.models, a.weights)? {
                println!("wrote {}", f.display());
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer_args(extra: &[&str]) -> InferArgs {
        let mut args = vec![
            "eq", "infer", "--param", "p", "--bin", "b", "--in", "x=x.npy",
        ];
        args.extend_from_slice(extra);
        match Cli::try_parse_from(args).unwrap().command {
            Command::Infer(a) => a,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn precision_maps_to_the_runtime_option() {
        assert_eq!(infer_args(&[]).precision().unwrap(), PrecisionChoice::Auto);
        for (text, want) in [
            ("auto", PrecisionChoice::Auto),
            ("fp32", PrecisionChoice::Fp32),
            ("int8", PrecisionChoice::Int8),
            ("int7", PrecisionChoice::Int7),
        ] {
            let a = infer_args(&["--precision", text]);
            assert_eq!(a.precision().unwrap(), want, "{text}");
        }
        let err = infer_args(&["--precision", "int4"])
            .precision()
            .unwrap_err();
        assert!(
            format!("{err}").contains("unknown precision `int4`"),
            "{err}"
        );
    }

    #[test]
    fn batch_is_a_flag_off_by_default() {
        assert!(!infer_args(&[]).batch);
        assert!(infer_args(&["--batch"]).batch);
    }
}
