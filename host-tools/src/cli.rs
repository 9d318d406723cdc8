//! Command-line interface: one clap subcommand per tool.

use crate::args::{ImageArgs, PrepArgs};
use crate::calibrate::Method;
use crate::infer::{self, Binding};
use anyhow::{anyhow, Context, Result};
use clap::{Args, Parser, Subcommand};
use eq_runtime::PrecisionChoice;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(name = "eq", version, about = "EasyQuant tools for ncnn models")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The main job in one command: KL calibration, EasyQuant finetune, quantization,
    /// per-layer comparison and timing, and evaluation when validation data is given.
    /// Without --param/--bin: the built-in demo network on generated images.
    Easyquant(EasyquantArgs),
    /// Run a model on float32 .npy inputs (numpy dims in ncnn order: (c,h,w), (h,w) or (w)).
    Infer(InferArgs),
    /// Write the built-in demo model (demo.param, demo.bin) and an input.npy to a directory.
    Demo(DemoArgs),
    /// Write the benchmark networks (SqueezeNet, MobileNet, VGG16, ResNet50, MobileNetV2, SSDs,
    /// MobileFaceNet) as ncnn .param files generated from the built-in architectures.
    Zoo(ZooArgs),
    /// Compute an ncnn2table scale table (max, KL or ACIQ) over calibration images.
    Calibrate(CalibrateArgs),
    /// Equalize per-channel activation ranges across layer pairs (an FP32-equivalent
    /// rewrite of the weights, as `eq easyquant --equalize` does): writes the new .bin (the
    /// .param is unchanged), to calibrate and quantize step by step.
    Equalize(EqualizeArgs),
    /// Write the int8 model (as ncnn2int8 does) from an fp32 model and a scale table.
    Quantize(QuantizeArgs),
    /// EasyQuant scale search: tune a table's scales layer by layer (cosine objective).
    Finetune(FinetuneArgs),
    /// Top-1 / top-5 accuracy over labelled images.
    Eval(EvalArgs),
    /// Detector mAP@0.5 (VOC 11-point and all-point) against COCO-json or VOC-xml
    /// annotations, or against an FP32 model's own detections (--pseudo).
    #[command(name = "eval-det")]
    EvalDet(EvalDetArgs),
    /// Face verification accuracy on LFW-style pairs (10-fold and best threshold).
    #[command(name = "eval-lfw")]
    EvalLfw(EvalLfwArgs),
    /// Per-layer cosine similarity of a quantized model against the fp32 model, and which
    /// layers ran INT8/INT7/FP32 and why (report.txt and cosine.svg).
    Report(ReportArgs),
    /// Convert a model from another framework into an ncnn .param + .bin.
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// A Caffe deploy .prototxt + .caffemodel, converted as ncnn's caffe2ncnn does
    /// (in-place layers renamed, Splits inserted, BatchNorm + Scale folded).
    Caffe(ImportCaffeArgs),
    /// An ONNX model (fp32, fixed input shapes, batch 1) for the ops the runtime has;
    /// shape arithmetic is folded, BatchNormalization folded into Conv / Gemm.
    Onnx(ImportOnnxArgs),
}

#[derive(Args, Debug)]
pub struct ImportOnnxArgs {
    /// The .onnx file (weights inside it, not in external data files).
    #[arg(long)]
    pub model: PathBuf,
    /// The ncnn .param to write.
    #[arg(long)]
    pub out_param: PathBuf,
    /// The ncnn .bin to write.
    #[arg(long)]
    pub out_bin: PathBuf,
}

#[derive(Args, Debug)]
pub struct ImportCaffeArgs {
    /// The network structure (protobuf text; old `layers` or new `layer` form).
    #[arg(long)]
    pub prototxt: PathBuf,
    /// The trained weights (binary NetParameter).
    #[arg(long)]
    pub caffemodel: PathBuf,
    /// The ncnn .param to write.
    #[arg(long)]
    pub out_param: PathBuf,
    /// The ncnn .bin to write.
    #[arg(long)]
    pub out_bin: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mixed {
    Auto,
    Off,
}

#[derive(Args, Debug)]
pub struct EasyquantArgs {
    /// The fp32 model structure (.param); with --bin. Without both: the demo network.
    #[arg(long, requires = "bin")]
    pub param: Option<PathBuf>,
    /// The fp32 model weights (.bin).
    #[arg(long, requires = "param")]
    pub bin: Option<PathBuf>,
    #[command(flatten)]
    pub images: ImageArgs,
    #[command(flatten)]
    pub prep: PrepArgs,
    /// 8: INT8 (±127); 7: INT7 (±63, layers marked 27=7).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(7..=8))]
    pub bits: u32,
    /// Folder to write (replaced as a whole when the job succeeds).
    #[arg(long, default_value = "target/easyquant")]
    pub out: PathBuf,
    /// Labelled validation images (with --labels).
    #[arg(long, requires = "labels", conflicts_with = "val_lfw")]
    pub val: Option<PathBuf>,
    #[arg(long, requires = "val")]
    pub labels: Option<PathBuf>,
    /// LFW-style pairs file for validation (with --lfw-root).
    #[arg(long, requires = "lfw_root")]
    pub val_lfw: Option<PathBuf>,
    #[arg(long, requires = "val_lfw")]
    pub lfw_root: Option<PathBuf>,
    /// Layers to keep in fp32.
    #[arg(long, value_delimiter = ',')]
    pub keep_fp32: Vec<String>,
    /// Equalize per-channel activation ranges before calibrating (an FP32-equivalent
    /// rewrite of the weights): of blobs read only by a depthwise layer (depthwise: free on
    /// the weight side), or also of blobs read only by a Convolution (all: trades some
    /// weight precision; best on yolo-fastest, not yet checked on classifiers), or none (off).
    #[arg(long, value_enum, default_value = "depthwise")]
    pub equalize: crate::easyquant::EqualizeMode,
    /// auto: choose INT7 / INT8 / FP32 per layer for the least estimated latency within
    /// --budget; off: every layer at --bits (except --keep-fp32).
    #[arg(long, value_enum, default_value = "auto")]
    pub mixed: Mixed,
    /// The score to keep on held-out calibration images. A classifier (logits before a final
    /// Softmax or out of an InnerProduct): top-1 accuracy kept as FP32's probabilities
    /// expect it, 1 - mean(p[FP32's class] - p[quantized class]), default 0.999. A detector:
    /// pseudo-label mAP@0.5 (a fraction) against the FP32 model's detections, default 0.95.
    /// Other models: mean output cosine vs FP32, default 1 - 2 (1 - c8), c8 being that
    /// cosine with every layer in INT8.
    #[arg(long, allow_hyphen_values = true)]
    pub budget: Option<f64>,
    /// What --budget is on: auto (top-1 kept for a classifier, pseudo-label mAP for a
    /// detector, else the output cosine) or cosine (the mean output cosine for any model).
    #[arg(long, value_enum, default_value = "auto")]
    pub score: crate::mixed::Score,
    /// The latency --mixed auto minimises: a72 (the RK3399's big cores, where models
    /// deploy), a53 (its little cores), both estimated per layer from the kernel model in
    /// targets/costs/rk3399.toml, or host (per-layer times measured on this machine, where
    /// INT7 and INT8 may cost the same).
    #[arg(long, value_enum, default_value = "a72")]
    pub cost: crate::cost_model::CostTarget,
    /// Finetune images drawn from the calibration images.
    #[arg(long, default_value_t = 50)]
    pub samples: usize,
    /// Output positions the finetune scores per image and layer (a number or `all`).
    #[arg(long, default_value = "128", value_parser = parse_positions)]
    pub positions: Positions,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The fp32 model as PARAM,BIN.
    #[arg(long, value_name = "PARAM,BIN")]
    pub fp32: String,
    /// The quantized model as PARAM,BIN.
    #[arg(long, value_name = "PARAM,BIN")]
    pub quant: String,
    #[command(flatten)]
    pub images: ImageArgs,
    #[command(flatten)]
    pub prep: PrepArgs,
    /// Arithmetic of the quantized model's layers.
    #[arg(long, default_value = "auto")]
    pub precision: PrecisionChoice,
    /// Folder to write report.txt and cosine.svg to.
    #[arg(long)]
    pub out: PathBuf,
    /// Pool threads inside each net.
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub images: ImageArgs,
    #[command(flatten)]
    pub prep: PrepArgs,
    /// `<file> <class>` per line; files are matched by path suffix (usually the file name).
    #[arg(long)]
    pub labels: PathBuf,
    /// Arithmetic of the quantizable layers.
    #[arg(long, default_value = "auto")]
    pub precision: PrecisionChoice,
    /// Output blob with the class scores (default: the model's only output).
    #[arg(long)]
    pub output: Option<String>,
    /// Results file (keys top1, top5, n, skipped, precision).
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct EvalDetArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub images: ImageArgs,
    #[command(flatten)]
    pub prep: PrepArgs,
    /// COCO instances json (categories in ascending id order are labels 1, 2, ...).
    #[arg(long, conflicts_with_all = ["voc", "pseudo"])]
    pub coco: Option<PathBuf>,
    /// Folder of VOC xml files (with --classes).
    #[arg(long, requires = "classes", conflicts_with = "pseudo")]
    pub voc: Option<PathBuf>,
    /// Class names in label order (label 1 = the first line).
    #[arg(long)]
    pub classes: Option<PathBuf>,
    /// Score against this (FP32) model's detections instead of annotations.
    #[arg(long, value_name = "PARAM,BIN")]
    pub pseudo: Option<String>,
    /// Lowest score of the reference model's detections kept as pseudo-labels.
    #[arg(long, default_value_t = 0.5)]
    pub pseudo_threshold: f32,
    /// Confidence threshold the detection layers (of the evaluated and the --pseudo model)
    /// run with while evaluating: low, so mAP sees the whole precision-recall curve;
    /// `model` keeps the threshold stored in each param.
    #[arg(long, default_value = "0.005", value_parser = parse_conf_threshold)]
    pub conf_threshold: ConfThreshold,
    /// Arithmetic of the evaluated model's quantizable layers.
    #[arg(long, default_value = "auto")]
    pub precision: PrecisionChoice,
    /// Detection output blob (default: the model's only output).
    #[arg(long)]
    pub output: Option<String>,
    /// Results file (map_11_point, map_all_point, images, truths, detections, per_class).
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct EvalLfwArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// `img1,img2,label` per line (label 1: same person, -1: different).
    #[arg(long)]
    pub pairs: PathBuf,
    /// Folder the pair paths are relative to.
    #[arg(long)]
    pub root: PathBuf,
    /// Preprocessing (default: --preset mobilefacenet).
    #[command(flatten)]
    pub prep: PrepArgs,
    #[arg(long, default_value = "auto")]
    pub precision: PrecisionChoice,
    /// Embedding blob (default: the model's only output).
    #[arg(long)]
    pub output: Option<String>,
    /// Results file (keys accuracy, accuracy_std, best_threshold_accuracy, threshold, pairs).
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub threads: Option<usize>,
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
    /// Bit width: 8 or 7 (qmax = 2^(bits-1) - 1). Narrower tables are refused: neither
    /// `eq quantize` nor the runtime's kernels take them.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(7..=8))]
    pub bits: u32,
    /// Scale table to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Worker threads, one image each (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct EqualizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub images: ImageArgs,
    #[command(flatten)]
    pub prep: PrepArgs,
    /// depthwise: blobs read only by a depthwise layer; all: also those read only by a
    /// Convolution.
    #[arg(long, value_enum, default_value = "all")]
    pub mode: crate::easyquant::EqualizeMode,
    /// The .bin to write.
    #[arg(long)]
    pub out_bin: PathBuf,
    /// Worker threads, one image each (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Initial scale table (e.g. from `eq calibrate`).
    #[arg(long)]
    pub table: PathBuf,
    #[command(flatten)]
    pub images: ImageArgs,
    #[command(flatten)]
    pub prep: PrepArgs,
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(7..=8))]
    pub bits: u32,
    /// Tuned table to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Lowest candidate, as a fraction of the initial scale.
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f32,
    /// Highest candidate, as a multiple of the initial scale.
    #[arg(long, default_value_t = 2.0)]
    pub beta: f32,
    /// Candidates per search (evenly spaced, plus the initial scale).
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Sweeps over all layers.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Calibration images used: N drawn at random (with `--seed`) from the whole list, as the
    /// paper draws its 50, so that a name-sorted folder does not give only its first classes.
    #[arg(long, default_value_t = 50)]
    pub samples: usize,
    /// Seed of the image draw (the same seed and list give the same images).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// paper: Algorithm 1 (quantized upstream input; weight pass, then activation pass).
    /// ncnn: ncnn2table's eq (FP32 upstream input; per layer weights, then activation).
    #[arg(long, value_enum, default_value = "paper")]
    pub variant: crate::finetune::Variant,
    /// Output positions each candidate scale is scored on, per image and layer: a number
    /// (evenly spaced from a seeded offset) or `all`.
    #[arg(long, default_value = "128", value_parser = parse_positions)]
    pub positions: Positions,
}

/// `--positions N|all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Positions(pub Option<usize>);

fn parse_positions(s: &str) -> std::result::Result<Positions, String> {
    if s == "all" {
        return Ok(Positions(None));
    }
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(Positions(Some(n))),
        _ => Err(format!("`{s}`: expected a positive number or `all`")),
    }
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
        Command::Calibrate(a) => run_calibrate(&a),
        Command::Equalize(a) => run_equalize(&a),
        Command::Quantize(a) => run_quantize(&a),
        Command::Finetune(a) => run_finetune(&a),
        Command::Eval(a) => run_eval(&a),
        Command::EvalLfw(a) => run_eval_lfw(&a),
        Command::EvalDet(a) => run_eval_det(&a),
        Command::Report(a) => run_report(&a),
        Command::Easyquant(a) => run_easyquant(a),
        Command::Import(ImportCommand::Onnx(a)) => {
            crate::import::onnx::import_file(&a.model, &a.out_param, &a.out_bin)?;
            println!(
                "wrote {} and {}",
                a.out_param.display(),
                a.out_bin.display()
            );
            Ok(())
        }
        Command::Import(ImportCommand::Caffe(a)) => {
            crate::import::caffe::import_files(
                &a.prototxt,
                &a.caffemodel,
                &a.out_param,
                &a.out_bin,
            )?;
            println!(
                "wrote {} and {}",
                a.out_param.display(),
                a.out_bin.display()
            );
            Ok(())
        }
    }
}

/// `PARAM,BIN` as two paths.
/// `--conf-threshold`: a score, or None to keep each param's own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConfThreshold(pub Option<f32>);

/// `--conf-threshold`: a score in [0, 1], or `model`.
fn parse_conf_threshold(text: &str) -> std::result::Result<ConfThreshold, String> {
    if text == "model" {
        return Ok(ConfThreshold(None));
    }
    match text.parse::<f32>() {
        Ok(t) if (0.0..=1.0).contains(&t) => Ok(ConfThreshold(Some(t))),
        _ => Err(format!("`{text}`: expected a score in [0, 1] or `model`")),
    }
}

/// A folder removed (with what is in it) when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(what: &str) -> Result<ScratchDir> {
        let dir = std::env::temp_dir().join(format!("eq-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `param`, or a copy in `scratch` whose detection layers use `threshold` (when given and
/// the model has any).
fn with_threshold(
    param: &Path,
    threshold: Option<f32>,
    scratch: &ScratchDir,
    name: &str,
) -> Result<PathBuf> {
    let Some(t) = threshold else {
        return Ok(param.to_path_buf());
    };
    let bytes = std::fs::read(param).with_context(|| format!("cannot read {}", param.display()))?;
    match crate::detection::with_confidence_threshold(&bytes, &param.display().to_string(), t)? {
        Some(text) => {
            let path = scratch.0.join(name);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        }
        None => Ok(param.to_path_buf()),
    }
}

fn model_pair(flag: &str, text: &str) -> Result<(PathBuf, PathBuf)> {
    match text.split_once(',') {
        Some((p, b)) if !p.is_empty() && !b.is_empty() && !b.contains(',') => {
            Ok((PathBuf::from(p), PathBuf::from(b)))
        }
        _ => Err(anyhow!("--{flag} {text}: expected PARAM,BIN")),
    }
}

fn run_easyquant(a: EasyquantArgs) -> Result<()> {
    use crate::easyquant::Validation;
    let has_images = a.images.images.is_some() || a.images.list.is_some();
    if a.param.is_none() && has_images {
        return Err(anyhow!(
            "--images/--list need the model: give --param and --bin"
        ));
    }
    let validation = match (a.val, a.labels, a.val_lfw, a.lfw_root) {
        (Some(images), Some(labels), _, _) => Some(Validation::Labels { images, labels }),
        (_, _, Some(pairs), Some(root)) => Some(Validation::Lfw { pairs, root }),
        _ => None,
    };
    let threads = a.threads.unwrap_or_else(infer::default_threads);
    let req = crate::easyquant::Request {
        model: a.param.zip(a.bin),
        images: has_images.then_some(a.images),
        prep: a.prep,
        bits: a.bits,
        out: a.out.clone(),
        validation,
        keep_fp32: a.keep_fp32,
        equalize: a.equalize,
        mixed: a.mixed == Mixed::Auto,
        budget: a.budget,
        score: a.score,
        cost: a.cost,
        samples: a.samples,
        positions: a.positions.0,
        seed: a.seed,
        threads,
        progress: true,
    };
    let s = crate::easyquant::run(&req)?;
    println!("{}", crate::easyquant::summary_lines(&s));
    println!(
        "wrote {}/{{model.param,model.bin,model.table,report.md,cosine.svg,summary.json}}",
        a.out.display()
    );
    Ok(())
}

fn run_report(a: &ReportArgs) -> Result<()> {
    let (fp, fb) = model_pair("fp32", &a.fp32)?;
    let (qp, qb) = model_pair("quant", &a.quant)?;
    let prep = a.prep.preprocess()?;
    let paths = a.images.paths()?;
    let threads = a.threads.unwrap_or_else(infer::default_threads);
    let spec = |p: &PathBuf, b: &PathBuf, precision| -> Result<crate::runner::NetSpec> {
        let mut s = crate::runner::NetSpec::for_images(p, b, &prep)?;
        s.keep_all_blobs = true;
        s.precision = precision;
        s.threads = threads;
        Ok(s)
    };
    let fspec = spec(&fp, &fb, PrecisionChoice::Fp32)?;
    let qspec = spec(&qp, &qb, a.precision)?;
    let cmp = crate::report::compare(&fspec, &qspec, &prep, &paths, a.images.strict)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("{}", a.out.display()))?;
    let text = cmp.text();
    for (name, body) in [("report.txt", &text), ("cosine.svg", &cmp.svg())] {
        let path = a.out.join(name);
        std::fs::write(&path, body).with_context(|| format!("{}", path.display()))?;
    }
    print!("{text}");
    println!("wrote {}", a.out.join("report.txt").display());
    println!("wrote {}", a.out.join("cosine.svg").display());
    Ok(())
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

fn run_equalize(a: &EqualizeArgs) -> Result<()> {
    use crate::easyquant::EqualizeMode;
    let prep = a.prep.preprocess()?;
    let paths = a.images.paths()?;
    let model = crate::model::Model::load(&a.model.param, &a.model.bin)?;
    let (bytes, outcome) = if a.mode == EqualizeMode::Off {
        (model.bin.clone(), Default::default())
    } else {
        let spec = crate::runner::NetSpec::for_images(&a.model.param, &a.model.bin, &prep)?;
        crate::equalize::equalize(
            &model,
            &spec,
            &prep,
            &paths,
            &run_options(a.threads, a.images.strict, "equalize"),
            a.mode == EqualizeMode::All,
        )?
    };
    std::fs::write(&a.out_bin, bytes).with_context(|| format!("{}", a.out_bin.display()))?;
    for (p, c, spread) in &outcome.pairs {
        println!("{p} -> {c}: factors span {spread:.1}x");
    }
    println!(
        "wrote {} ({} layer pairs equalized)",
        a.out_bin.display(),
        outcome.pairs.len()
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
            overrides: &Default::default(),
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

fn write_json(path: &Option<PathBuf>, text: &str) -> Result<()> {
    if let Some(path) = path {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        }
        std::fs::write(path, text).with_context(|| format!("{}", path.display()))?;
    }
    Ok(())
}

fn run_eval(a: &EvalArgs) -> Result<()> {
    let prep = a.prep.preprocess()?;
    let paths = a.images.paths()?;
    let text = std::fs::read_to_string(&a.labels)
        .with_context(|| format!("cannot read {}", a.labels.display()))?;
    let labels =
        crate::eval::parse_labels(&text).with_context(|| format!("{}", a.labels.display()))?;
    let labels = crate::eval::match_labels(&paths, &labels)
        .with_context(|| format!("{}", a.labels.display()))?;
    let mut spec = crate::runner::NetSpec::for_images(&a.model.param, &a.model.bin, &prep)?;
    spec.precision = a.precision;
    let r = crate::eval::classify(
        &spec,
        &prep,
        &paths,
        &labels,
        a.output.as_deref(),
        &run_options(a.threads, a.images.strict, "eval"),
    )?;
    println!(
        "top-1 {:.2} %, top-5 {:.2} % over {} images ({} skipped), precision {}",
        100.0 * r.top1,
        100.0 * r.top5,
        r.n,
        r.skipped,
        a.precision.name()
    );
    write_json(&a.json, &r.to_json(a.precision.name()))
}

fn run_eval_det(a: &EvalDetArgs) -> Result<()> {
    use crate::detection::{self, Detection, Truth};
    let prep = a.prep.preprocess()?;
    if prep.resize != crate::dataset::Resize::Stretch {
        return Err(anyhow!(
            "eval-det needs the image stretched to the input (--resize stretch): boxes are relative to the whole image"
        ));
    }
    let paths = a.images.paths()?;
    let run = run_options(a.threads, a.images.strict, "eval-det");
    let detect = |spec: &crate::runner::NetSpec| -> Result<Vec<Option<Vec<Detection>>>> {
        let out = crate::eval::output_blob(spec, a.output.as_deref())?;
        let mut spec = spec.clone();
        spec.keep_all_blobs |= a.output.is_some();
        crate::runner::map_images(&spec, &prep, &paths, &run, &|net| {
            let t = net.blob(&out)?;
            detection::parse_rows(t.data, t.shape.w).with_context(|| format!("blob `{out}`"))
        })
    };
    let scratch = ScratchDir::new("eval-det")?;
    let param = with_threshold(&a.model.param, a.conf_threshold.0, &scratch, "model.param")?;
    let mut spec = crate::runner::NetSpec::for_images(&param, &a.model.bin, &prep)?;
    spec.precision = a.precision;
    let found = detect(&spec)?;
    let name_of = |p: &PathBuf| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let truths: Vec<Option<Vec<Truth>>> = if let Some(pair) = &a.pseudo {
        let (rp, rb) = model_pair("pseudo", pair)?;
        let rp = with_threshold(&rp, a.conf_threshold.0, &scratch, "pseudo.param")?;
        let mut r = crate::runner::NetSpec::for_images(&rp, &rb, &prep)?;
        r.precision = PrecisionChoice::Fp32;
        detect(&r)?
            .into_iter()
            .map(|d| {
                d.map(|ds| {
                    ds.into_iter()
                        .filter(|d| d.score >= a.pseudo_threshold)
                        .map(|d| Truth {
                            label: d.label,
                            bbox: d.bbox,
                            difficult: false,
                        })
                        .collect()
                })
            })
            .collect()
    } else {
        let by_name: std::collections::HashMap<String, Vec<Truth>> =
            match (&a.coco, &a.voc, &a.classes) {
                (Some(c), _, _) => detection::read_coco(c)?,
                (None, Some(dir), Some(classes)) => {
                    let text = std::fs::read_to_string(classes)
                        .with_context(|| format!("cannot read {}", classes.display()))?;
                    let names: Vec<String> = text
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(String::from)
                        .collect();
                    let mut m = std::collections::HashMap::new();
                    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                        .with_context(|| format!("cannot read {}", dir.display()))?
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
                        .collect();
                    files.sort();
                    for f in files {
                        let (file, t) = detection::read_voc(&f, &names)?;
                        m.insert(file, t);
                    }
                    m
                }
                _ => {
                    return Err(anyhow!(
                        "give --coco FILE, --voc DIR --classes FILE or --pseudo PARAM,BIN"
                    ))
                }
            };
        paths
            .iter()
            .map(|p| {
                by_name
                    .get(&name_of(p))
                    .cloned()
                    .map(Some)
                    .ok_or_else(|| anyhow!("no annotation for image `{}`", name_of(p)))
            })
            .collect::<Result<_>>()?
    };
    // Images either run could not read are left out of both.
    let (mut dets, mut gts) = (Vec::new(), Vec::new());
    for (d, t) in found.into_iter().zip(truths) {
        if let (Some(d), Some(t)) = (d, t) {
            dets.push(d);
            gts.push(t);
        }
    }
    if dets.is_empty() {
        return Err(anyhow!("none of the {} images could be read", paths.len()));
    }
    let r = detection::summarize(&dets, &gts);
    println!(
        "mAP@0.5 {:.2} % (11-point), {:.2} % (all-point) over {} images: {} ground-truth boxes, {} detections, {} classes",
        r.map_11_point,
        r.map_all_point,
        r.images,
        r.truths,
        r.detections,
        r.per_class.len()
    );
    write_json(&a.json, &(serde_json::to_string_pretty(&r)? + "\n"))
}

fn run_eval_lfw(a: &EvalLfwArgs) -> Result<()> {
    let prep = if a.prep.preset.is_none() && a.prep.size.is_none() {
        let mut p = a.prep.clone();
        p.preset = Some("mobilefacenet".into());
        p.preprocess()?
    } else {
        a.prep.preprocess()?
    };
    let text = std::fs::read_to_string(&a.pairs)
        .with_context(|| format!("cannot read {}", a.pairs.display()))?;
    let pairs =
        crate::eval::parse_pairs(&text).with_context(|| format!("{}", a.pairs.display()))?;
    if pairs.is_empty() {
        anyhow::bail!("{}: no pairs", a.pairs.display());
    }
    let mut spec = crate::runner::NetSpec::for_images(&a.model.param, &a.model.bin, &prep)?;
    spec.precision = a.precision;
    let r = crate::eval::lfw(
        &spec,
        &prep,
        &pairs,
        &a.root,
        a.output.as_deref(),
        &run_options(a.threads, true, "eval-lfw"),
    )?;
    println!(
        "10-fold accuracy {:.2} % (std {:.2} %), best single threshold {:.2} % at {:.4}, {} pairs, precision {}",
        100.0 * r.accuracy,
        100.0 * r.accuracy_std,
        100.0 * r.best_threshold_accuracy,
        r.threshold,
        r.pairs,
        a.precision.name()
    );
    write_json(&a.json, &r.to_json(a.precision.name()))
}

fn run_finetune(a: &FinetuneArgs) -> Result<()> {
    let prep = a.prep.preprocess()?;
    let paths = crate::dataset::sample(a.images.paths()?, a.samples.max(1), a.seed);
    let model = crate::model::Model::load(&a.model.param, &a.model.bin)?;
    let spec = crate::runner::NetSpec::for_images(&a.model.param, &a.model.bin, &prep)?;
    let table = crate::table::ScaleTable::read(&a.table)?;
    let (tuned, reports) = crate::finetune::finetune(&crate::finetune::Request {
        model: &model,
        spec,
        prep: &prep,
        paths: &paths,
        strict: a.images.strict,
        table,
        bits: a.bits,
        alpha: a.alpha,
        beta: a.beta,
        steps: a.steps,
        rounds: a.rounds,
        variant: a.variant,
        positions: a.positions.0,
        progress: true,
    })?;
    let pair = |p: Option<(f64, f64)>| p.map_or("-".into(), |(a, b)| format!("{a:.6} -> {b:.6}"));
    for r in &reports {
        println!(
            "{}: weights {}, activation {}",
            r.name,
            pair(r.weights),
            pair(r.activation)
        );
    }
    tuned.write(&a.out)?;
    println!(
        "wrote {} ({} layers tuned on {} images)",
        a.out.display(),
        reports.len(),
        paths.len()
    );
    Ok(())
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
    fn positions_flag() {
        assert_eq!(parse_positions("all"), Ok(Positions(None)));
        assert_eq!(parse_positions("64"), Ok(Positions(Some(64))));
        assert!(parse_positions("0").is_err());
        assert!(parse_positions("x").is_err());
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
