//! Command-line interface: one clap subcommand per tool.

use crate::infer::{self, Binding};
use anyhow::Result;
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
