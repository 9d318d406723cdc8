//! The logic of the `eq-bench` binary (benchncnn-like timing of whole models), kept in the
//! library so it is unit-tested: argument parsing, loading and timing a model, the result
//! lines and the JSON report; and the board files it reads (`board`, `targets/*.toml`).
//! Pure Rust only (the toml and serde crates included) so it cross-builds for the board.

pub mod board;

use eq_runtime::model::param::ParamFile;
use eq_runtime::net::{Net, Options, PrecisionChoice};
use eq_runtime::ops::input::Input;
use eq_runtime::target::CpuSelection;
use eq_runtime::tensor::Shape;
use serde::{Serialize, Serializer};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

pub const USAGE: &str = "\
usage: eq-bench --model P.param[,P2.param...] [--bin B[,B2...]] [--shape W,H,C]
                --precision fp32,int8,int7 --threads 1,2 [--cluster big|little|all|cpus=0,1]
                --loops N --warmup N [--cooldown S] [--json FILE] [--target T.toml] [--layers]
                [--workers] [--fp16-weights]
       eq-bench --model P.param[,...] [--shape W,H,C] --gemm-shapes
  --model      ncnn .param or .param.bin files
  --bin        weights, one per model; without it weights are all zeros (as benchncnn)
  --shape      input shape for models whose first Input layer declares none
  --precision  default fp32; int8/int7 run quantized models (*_int8.param, eq quantize
               output) in that precision; without --bin an fp32 model runs them with
               synthetic scales; an fp32 model with real weights is skipped (quantize it)
  --threads    worker threads per run, default 1
  --cluster    CPUs to pin to (main thread on the first); default: the target's default
               cluster (big on RK3399) when it has several, else no pinning
  --loops      timed runs, default 8      --warmup   untimed runs first, default 2
  --cooldown   seconds to sleep before each model, default 0
  --json       also write the results as a JSON list
  --target     board description (targets/*.toml); default: detected from sysfs
  --layers     also time every layer (one more set of --loops runs) and print them
  --workers    also run --loops more times counting each worker's tasks and busy time
               (how the work spreads over the cores, e.g. big and little clusters)
  --fp16-weights  FP32 InnerProduct layers read fp16 copies of their weights (as ncnn's
               default fp16 storage; rounds each weight to fp16)
  --gemm-shapes  time nothing: print each Convolution's GEMM (M outputs, N pixels,
               K inputs x kernel), one line each";

/// The git commit this binary was built from (bench/build.rs), "unknown" outside a checkout.
pub const GIT_COMMIT: &str = env!("EQ_GIT_COMMIT");

/// The GEMM micro-kernels this CPU runs (by core type on aarch64), for the report header: a
/// reader of a table needs to know which instruction set each number used.
pub fn kernel_summary() -> String {
    use eq_runtime::cpu::CoreKind;
    use eq_runtime::kernels::{gemm_f32, gemm_i8};
    use eq_runtime::quant::Precision;
    let cores: &[(CoreKind, &str)] = if cfg!(target_arch = "aarch64") {
        &[(CoreKind::CortexA53, "a53 "), (CoreKind::CortexA72, "a72 ")]
    } else {
        &[(CoreKind::Other, "")]
    };
    let mut line = format!("kernels: fp32 = {}", gemm_f32::Kernel::best().name());
    for (p, name) in [(Precision::Int8, "int8"), (Precision::Int7, "int7")] {
        let set = gemm_i8::KernelSet::best(p);
        for (core, label) in cores {
            let _ = write!(line, "  {label}{name} = {}", set.for_core(*core).name());
        }
    }
    line
}

/// The value every input element is set to before each run (as benchncnn).
pub const FILL_VALUE: f32 = 0.01;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Int8,
    Int7,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
            Precision::Int7 => "int7",
        }
    }

    /// Why this precision cannot be benchmarked on a model, if it cannot; `quantized`: the
    /// model has int8 scales (`*_int8.param`). The one place that decides what is skipped.
    /// `synthetic`: weights are synthetic (no `--bin`), so an fp32 model is quantized with
    /// fixed scales at load (`Options::precision` with zero weights).
    pub fn unavailable(self, quantized: bool, synthetic: bool) -> Option<&'static str> {
        match self {
            Precision::Fp32 => None,
            Precision::Int8 | Precision::Int7 if !quantized && !synthetic => {
                Some("fp32 model with real weights: quantize it first (eq quantize)")
            }
            Precision::Int8 | Precision::Int7 => None,
        }
    }

    /// What the net is loaded with for this precision.
    pub fn choice(self) -> PrecisionChoice {
        match self {
            Precision::Fp32 => PrecisionChoice::Fp32,
            Precision::Int8 => PrecisionChoice::Int8,
            Precision::Int7 => PrecisionChoice::Int7,
        }
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Precision, String> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "int8" => Ok(Precision::Int8),
            "int7" => Ok(Precision::Int7),
            _ => Err(format!(
                "unknown precision `{s}`: expected fp32, int8 or int7"
            )),
        }
    }
}

/// Parsed command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Args {
    pub models: Vec<PathBuf>,
    /// One per model, or empty for synthetic zero weights.
    pub bins: Vec<PathBuf>,
    pub shape: Option<Shape>,
    pub precisions: Vec<Precision>,
    pub threads: Vec<usize>,
    /// `None`: no pinning.
    pub cluster: Option<CpuSelection>,
    pub loops: usize,
    pub warmup: usize,
    pub cooldown: Duration,
    pub json: Option<PathBuf>,
    /// `None`: detect this machine.
    pub target: Option<PathBuf>,
    /// Print per-layer times.
    pub layers: bool,
    /// Print per-worker task counts and busy time.
    pub workers: bool,
    /// `Options::fp16_weights`.
    pub fp16_weights: bool,
    /// Print the GEMM shapes instead of timing.
    pub gemm_shapes: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Boxed: `Args` is large next to `Help`.
    Run(Box<Args>),
    Help,
}

fn number<T: FromStr>(flag: &str, s: &str) -> Result<T, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{flag}: `{s}` is not a valid number"))
}

/// A comma-separated list with no empty items.
fn list<T>(
    flag: &str,
    s: &str,
    item: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    s.split(',')
        .map(|x| {
            if x.trim().is_empty() {
                Err(format!("{flag}: empty item in `{s}`"))
            } else {
                item(x.trim())
            }
        })
        .collect()
}

/// Parses the arguments after the program name. `--flag value` and `--flag=value` both work.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut models = None;
    let mut bins = None;
    let mut shape = None;
    let mut precisions = None;
    let mut threads = None;
    let mut cluster = None;
    let mut loops = None;
    let mut warmup = None;
    let mut cooldown = None;
    let mut json = None;
    let mut target = None;
    let mut layers = false;
    let mut workers = false;
    let mut fp16_weights = false;
    let mut gemm_shapes = false;

    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        if arg == "--layers" {
            layers = true;
            continue;
        }
        if arg == "--workers" {
            workers = true;
            continue;
        }
        if arg == "--fp16-weights" {
            fp16_weights = true;
            continue;
        }
        if arg == "--gemm-shapes" {
            gemm_shapes = true;
            continue;
        }
        if !arg.starts_with("--") {
            return Err(format!("unexpected argument `{arg}` (see --help)"));
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        const FLAGS: [&str; 11] = [
            "--model",
            "--bin",
            "--shape",
            "--precision",
            "--threads",
            "--cluster",
            "--loops",
            "--warmup",
            "--cooldown",
            "--json",
            "--target",
        ];
        if !FLAGS.contains(&flag.as_str()) {
            return Err(format!("unknown flag `{flag}` (see --help)"));
        }
        let value = match inline {
            Some(v) => v,
            None => match it.next() {
                Some(v) if !v.starts_with("--") => v,
                _ => return Err(format!("{flag} needs a value")),
            },
        };
        if value.is_empty() {
            return Err(format!("{flag} needs a value"));
        }
        let f = flag.as_str();
        fn set<T>(slot: &mut Option<T>, flag: &str, v: T) -> Result<(), String> {
            if slot.is_some() {
                return Err(format!("{flag} is given twice"));
            }
            *slot = Some(v);
            Ok(())
        }
        let paths = |s: &str| list(f, s, |p| Ok(PathBuf::from(p)));
        match f {
            "--model" => set(&mut models, f, paths(&value)?)?,
            "--bin" => set(&mut bins, f, paths(&value)?)?,
            "--shape" => {
                let dims: Vec<usize> = list(f, &value, |x| number(f, x))?;
                let [w, h, c] = dims[..] else {
                    return Err(format!("--shape: expected W,H,C, got `{value}`"));
                };
                let s =
                    Shape::checked(3, w, h, 1, c).map_err(|e| format!("--shape `{value}`: {e}"))?;
                set(&mut shape, f, s)?
            }
            "--precision" => set(&mut precisions, f, list(f, &value, |x| x.parse())?)?,
            "--threads" => {
                let t: Vec<usize> = list(f, &value, |x| {
                    let n: usize = number(f, x)?;
                    if n == 0 || n > 256 {
                        return Err(format!("--threads: {n} is out of range (1 to 256)"));
                    }
                    Ok(n)
                })?;
                set(&mut threads, f, t)?
            }
            "--cluster" => set(
                &mut cluster,
                f,
                value.parse().map_err(|e| format!("--cluster: {e}"))?,
            )?,
            "--loops" => {
                let n: usize = number(f, &value)?;
                if n == 0 {
                    return Err("--loops must be at least 1".into());
                }
                set(&mut loops, f, n)?
            }
            "--warmup" => set(&mut warmup, f, number(f, &value)?)?,
            "--cooldown" => {
                let s: f64 = number(f, &value)?;
                let d = Duration::try_from_secs_f64(s)
                    .ok()
                    .filter(|d| *d <= Duration::from_secs(3600))
                    .ok_or_else(|| format!("--cooldown: {value} is out of range (0 to 3600 s)"))?;
                set(&mut cooldown, f, d)?
            }
            "--json" => set(&mut json, f, PathBuf::from(&value))?,
            "--target" => set(&mut target, f, PathBuf::from(&value))?,
            _ => unreachable!("flag checked against FLAGS"),
        }
    }

    let models: Vec<PathBuf> = models.ok_or("--model is required (see --help)")?;
    let bins = bins.unwrap_or_default();
    if !bins.is_empty() && bins.len() != models.len() {
        return Err(format!(
            "--bin lists {} file(s) for {} model(s); give one per model",
            bins.len(),
            models.len()
        ));
    }
    Ok(Command::Run(Box::new(Args {
        models,
        bins,
        shape,
        precisions: precisions.unwrap_or(vec![Precision::Fp32]),
        threads: threads.unwrap_or(vec![1]),
        cluster,
        loops: loops.unwrap_or(8),
        warmup: warmup.unwrap_or(2),
        cooldown: cooldown.unwrap_or_default(),
        json,
        target,
        layers,
        workers,
        fp16_weights,
        gemm_shapes,
    })))
}

/// A model name for reports: the file name without `.param` / `.param.bin`.
pub fn model_name(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    for ext in [".param.bin", ".param"] {
        if let Some(stem) = file.strip_suffix(ext).filter(|s| !s.is_empty()) {
            return stem.to_string();
        }
    }
    file
}

/// The first Input layer's blob name and the shape it declares (if any).
pub fn first_input(p: &ParamFile) -> Result<Option<(String, Option<Shape>)>, String> {
    let Some(layer) = p.layers.iter().find(|l| l.kind == "Input") else {
        return Ok(None);
    };
    let Some(blob) = layer.tops.first() else {
        return Ok(None);
    };
    let input = Input::new(&layer.params).map_err(|e| format!("layer `{}`: {e}", layer.name))?;
    Ok(Some((blob.clone(), input.declared)))
}

/// A model checked before any timing starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub name: String,
    pub param: PathBuf,
    /// `None`: zero weights.
    pub bin: Option<PathBuf>,
    pub input_shapes: Vec<(String, Shape)>,
    /// Has int8 scales (`int8_scale_term`, key 8, on some layer): an ncnn `*_int8.param`.
    pub quantized: bool,
}

/// Reads the param file, checks the weight file exists and decides the input shape:
/// `shape` goes to the first input blob when its Input layer declares none.
pub fn prepare_model(
    param: &Path,
    bin: Option<&Path>,
    shape: Option<Shape>,
) -> Result<Model, String> {
    let p = eq_runtime::model::read_param(param).map_err(|e| e.to_string())?;
    if let Some(b) = bin {
        std::fs::metadata(b).map_err(|e| format!("{}: {e}", b.display()))?;
    }
    let input_shapes = match first_input(&p).map_err(|e| format!("{}: {e}", param.display()))? {
        Some((blob, None)) => {
            let s = shape.ok_or_else(|| {
                format!(
                    "{}: input `{blob}` declares no shape; give --shape W,H,C",
                    param.display()
                )
            })?;
            vec![(blob, s)]
        }
        _ => Vec::new(),
    };
    let quantized = p.layers.iter().any(|l| {
        matches!(
            l.kind.as_str(),
            "Convolution" | "ConvolutionDepthWise" | "InnerProduct"
        ) && l.params.int(8, 0).is_ok_and(|v| v != 0)
    });
    Ok(Model {
        name: model_name(param),
        param: param.to_path_buf(),
        bin: bin.map(Path::to_path_buf),
        input_shapes,
        quantized,
    })
}

/// Where a run executes: CPUs to pin to (empty: none) and their L2 size from the target
/// file, used when sysfs does not report one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    pub cpus: Vec<usize>,
    pub l2_bytes: Option<usize>,
}

/// Load options for one run.
pub fn net_options(
    model: &Model,
    precision: Precision,
    threads: usize,
    place: &Placement,
    fp16_weights: bool,
) -> Options {
    Options {
        threads,
        input_shapes: model.input_shapes.clone(),
        cpus: place.cpus.clone(),
        precision: precision.choice(),
        l2_bytes: place.l2_bytes,
        fp16_weights,
        ..Options::default()
    }
}

pub fn load(
    model: &Model,
    precision: Precision,
    threads: usize,
    place: &Placement,
    fp16_weights: bool,
) -> Result<Net, String> {
    let opts = net_options(model, precision, threads, place, fp16_weights);
    let net = match &model.bin {
        Some(bin) => Net::load(&model.param, bin, &opts),
        None => Net::load_zero_weights(&model.param, &opts),
    };
    net.map_err(|e| format!("{}: {e}", model.name))
}

/// Min, median and mean of a run's times.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Timing {
    pub min_ms: f64,
    pub median_ms: f64,
    pub avg_ms: f64,
}

impl Timing {
    /// `None` for no samples.
    pub fn from_samples(ms: &[f64]) -> Option<Timing> {
        if ms.is_empty() {
            return None;
        }
        let mut sorted = ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Timing {
            min_ms: sorted[0],
            median_ms: median,
            avg_ms: sorted.iter().sum::<f64>() / n as f64,
        })
    }
}

/// `warmup` untimed then `loops` timed iterations; each fills every input with `FILL_VALUE`
/// and runs the net (the fill is timed too, like ncnn's extractor input copy).
pub fn time_net(net: &mut Net, warmup: usize, loops: usize) -> Result<Timing, String> {
    let inputs: Vec<String> = net.inputs().map(|(n, _)| n.to_string()).collect();
    let iteration = |net: &mut Net| -> Result<(), String> {
        for name in &inputs {
            net.input_mut(name)
                .map_err(|e| e.to_string())?
                .data
                .fill(FILL_VALUE);
        }
        net.run().map_err(|e| e.to_string())
    };
    for _ in 0..warmup {
        iteration(net)?;
    }
    let mut samples = Vec::with_capacity(loops);
    for _ in 0..loops {
        let start = Instant::now();
        iteration(net)?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Timing::from_samples(&samples).ok_or_else(|| "no timed loops".to_string())
}

/// One layer's share of a profiled run.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerTime {
    pub name: String,
    pub kind: String,
    /// Mean per run.
    pub ms: f64,
}

/// How the work of `loops` runs spreads over the pool's workers: one line per worker with its
/// core type, tasks per run, busy time per run and its share of the parallel sections' wall
/// time (100 % = busy whenever a layer ran in parallel).
pub fn profile_workers(net: &mut Net, loops: usize) -> Result<Vec<String>, String> {
    net.pool().set_stats(true);
    let mut result = Ok(());
    for _ in 0..loops.max(1) {
        result = net.run().map_err(|e| e.to_string());
        if result.is_err() {
            break;
        }
    }
    let (per, wall) = net.pool().stats();
    net.pool().set_stats(false);
    result?;
    let n = loops.max(1) as f64;
    Ok(per
        .iter()
        .enumerate()
        .map(|(w, (core, tasks, busy))| {
            format!(
                "  worker {w:>2}  {:<10}  tasks/run {:>8.1}  busy/run {:>9.3} ms  {:>5.1} % of {:.3} ms",
                core.name(),
                *tasks as f64 / n,
                busy.as_secs_f64() * 1e3 / n,
                100.0 * busy.as_secs_f64() / wall.as_secs_f64().max(1e-12),
                wall.as_secs_f64() * 1e3 / n,
            )
        })
        .collect())
}

/// Mean time of every layer over `loops` runs, slowest first (layers that take no time,
/// such as Split, are left out).
pub fn profile_layers(net: &mut Net, loops: usize) -> Result<Vec<LayerTime>, String> {
    let n = net.graph().layers.len();
    let mut times = vec![Duration::ZERO; n];
    let inputs: Vec<String> = net.inputs().map(|(n, _)| n.to_string()).collect();
    for _ in 0..loops.max(1) {
        for name in &inputs {
            net.input_mut(name)
                .map_err(|e| e.to_string())?
                .data
                .fill(FILL_VALUE);
        }
        net.run_timed(&mut times).map_err(|e| e.to_string())?;
    }
    let mut out: Vec<LayerTime> = net
        .graph()
        .layers
        .iter()
        .zip(&times)
        .filter(|(_, t)| !t.is_zero())
        .map(|(l, t)| LayerTime {
            name: l.name.clone(),
            kind: l.kind.clone(),
            ms: t.as_secs_f64() * 1e3 / loops.max(1) as f64,
        })
        .collect();
    out.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    Ok(out)
}

/// The GEMM of one Convolution layer (im2col + GEMM in fp32, INT8 and INT7 alike):
/// C[m × n] = A[m × k] · B[k × n].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GemmShape {
    pub layer: String,
    /// Output channels.
    pub m: usize,
    /// Output pixels.
    pub n: usize,
    /// Input channels × kernel height × kernel width.
    pub k: usize,
}

impl GemmShape {
    /// `gemm <layer> m=.. n=.. k=.. macs=..`, one line per layer.
    pub fn line(&self) -> String {
        format!(
            "gemm {} m={} n={} k={} macs={}",
            self.layer,
            self.m,
            self.n,
            self.k,
            self.m * self.n * self.k
        )
    }
}

/// Every Convolution's GEMM in execution order, from the planned blob shapes. Depthwise
/// convolutions and InnerProduct run other kernels and are left out.
pub fn gemm_shapes(net: &Net) -> Result<Vec<GemmShape>, String> {
    let (g, shapes) = (net.graph(), &net.plan().shapes);
    let mut out = Vec::new();
    for &li in &g.order {
        let l = &g.layers[li];
        if l.kind != "Convolution" {
            continue;
        }
        let (Some(&input), Some(&output)) = (g.inputs[li].first(), g.outputs[li].first()) else {
            return Err(format!("{}: Convolution without input or output", l.name));
        };
        let kw = l
            .params
            .usize(1, 0)
            .map_err(|e| format!("{}: {e}", l.name))?;
        let kh = l
            .params
            .usize(11, kw)
            .map_err(|e| format!("{}: {e}", l.name))?;
        let (i, o) = (shapes[input], shapes[output]);
        out.push(GemmShape {
            layer: l.name.clone(),
            m: o.c,
            n: o.w * o.h * o.d,
            k: i.c * kh * kw,
        });
    }
    Ok(out)
}

/// Per-layer lines: time, share of the total, cumulative share, type and name.
pub fn layer_lines(layers: &[LayerTime]) -> Vec<String> {
    let total: f64 = layers
        .iter()
        .map(|l| l.ms)
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    let mut cumulative = 0.0;
    layers
        .iter()
        .map(|l| {
            cumulative += l.ms;
            format!(
                "    {:9.3} ms {:5.1}% {:5.1}%  {:<22} {}",
                l.ms,
                100.0 * l.ms / total,
                100.0 * cumulative / total,
                l.kind,
                l.name
            )
        })
        .collect()
}

fn line_prefix(model: &str, precision: Precision, threads: usize) -> String {
    format!(
        "{model:>20}  {:<4}  threads = {threads:<2}",
        precision.name()
    )
}

/// One result line, benchncnn-like: the model name right-aligned in 20 columns.
pub fn result_line(model: &str, precision: Precision, threads: usize, t: &Timing) -> String {
    format!(
        "{}  min = {:8.2}  median = {:8.2}  avg = {:8.2}",
        line_prefix(model, precision, threads),
        t.min_ms,
        t.median_ms,
        t.avg_ms
    )
}

pub fn skipped_line(model: &str, precision: Precision, threads: usize, why: &str) -> String {
    format!("{}  skipped: {why}", line_prefix(model, precision, threads))
}

/// One JSON record, e.g. `{"model": "squeezenet", "precision": "int8", "threads": 2,
/// "min_ms": 10.1234, "median_ms": …, "avg_ms": …, "cluster": "big", "cpus": [4, 5],
/// "cores": ["cortex-a72"], "parts": ["0xd08"], "loops": 8, "warmup": 2, "commit": "abc1234"}`
/// (keys in this order; times are null if not finite).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Record {
    pub model: String,
    pub precision: Precision,
    pub threads: usize,
    /// `min_ms`, `median_ms` and `avg_ms` at the record's top level.
    #[serde(flatten)]
    pub timing: Timing,
    /// The `--cluster` value, or "none".
    pub cluster: String,
    pub cpus: Vec<usize>,
    /// Core kinds the run may have used, e.g. "cortex-a53".
    pub cores: Vec<String>,
    /// MIDR part numbers seen on those CPUs (0xd03 = Cortex-A53, 0xd08 = Cortex-A72);
    /// empty where the machine reports none (x86). Written as hex strings, "0xd08".
    #[serde(serialize_with = "hex_parts")]
    pub parts: Vec<u32>,
    pub loops: usize,
    pub warmup: usize,
    /// `GIT_COMMIT` of the binary that measured it.
    pub commit: String,
}

impl Serialize for Precision {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

fn hex_parts<S: Serializer>(parts: &[u32], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(parts.iter().map(|p| format!("{p:#05x}")))
}

/// serde_json output in the report's layout: the top-level list one item per line (two spaces
/// in), everything inside an item on that line with `", "` and `": "` between entries, numbers
/// with four decimals.
#[derive(Default)]
struct ReportFormatter {
    /// Arrays and objects currently open.
    depth: usize,
    /// The top-level array has an item (so its `]` goes on a line of its own).
    top_has_items: bool,
}

impl serde_json::ser::Formatter for ReportFormatter {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.depth += 1;
        if self.depth == 1 {
            self.top_has_items = false;
        }
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        if self.depth == 1 && self.top_has_items {
            w.write_all(b"\n")?;
        }
        self.depth -= 1;
        w.write_all(b"]")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if self.depth == 1 {
            self.top_has_items = true;
            w.write_all(if first { b"\n  " } else { b",\n  " })
        } else if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.depth += 1;
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        w.write_all(b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    // serde_json writes non-finite numbers as null without asking the formatter.
    fn write_f64<W: ?Sized + std::io::Write>(&mut self, w: &mut W, x: f64) -> std::io::Result<()> {
        write!(w, "{x:.4}")
    }
}

/// `value` as JSON in the report's layout.
fn report_json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, ReportFormatter::default());
    value
        .serialize(&mut ser)
        .expect("records serialize to memory");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

impl Record {
    /// The record as one line of JSON.
    pub fn to_json(&self) -> String {
        report_json(self)
    }
}

/// The JSON report: a list of records, one per line.
pub fn records_json(records: &[Record]) -> String {
    report_json(records) + "\n"
}

/// What the INT8 columns of `seed_table` hold: the seed paper compares its INT7 against
/// TensorRT-style INT8, which this project does not run.
pub const INT8_COLUMN_NOTE: &str = "EQ-INT8 columns: this runtime's INT8, in place of the \
seed's TRT-INT8 (TensorRT INT8, not measured here)";

fn distinct<T: PartialEq + Clone>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for x in items {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// The results in the seed paper's latency-table layout, one markdown table per cluster:
/// `| Models | EQ-INT8(#1) | EQ-INT7(#1) | EQ-INT8(#4) | EQ-INT7(#4) |` (median ms; #N =
/// threads, ascending; "-" where not measured). Models in the order they were run.
pub fn seed_table(records: &[Record]) -> Vec<String> {
    let mut lines = Vec::new();
    for cluster in distinct(records.iter().map(|r| r.cluster.clone())) {
        let of_cluster: Vec<&Record> = records.iter().filter(|r| r.cluster == cluster).collect();
        let mut threads = distinct(of_cluster.iter().map(|r| r.threads));
        threads.sort_unstable();
        let cores = distinct(of_cluster.iter().flat_map(|r| r.cores.iter().cloned()));
        if !lines.is_empty() {
            lines.push(String::new());
        }
        lines.push(format!(
            "cluster {cluster} ({}), median ms; {INT8_COLUMN_NOTE}",
            cores.join(", ")
        ));
        let mut header = String::from("| Models |");
        let mut rule = String::from("|---|");
        for t in &threads {
            let _ = write!(header, " EQ-INT8(#{t}) | EQ-INT7(#{t}) |");
            rule.push_str("---:|---:|");
        }
        lines.push(header);
        lines.push(rule);
        for model in distinct(of_cluster.iter().map(|r| r.model.clone())) {
            let mut row = format!("| {model} |");
            for &t in &threads {
                for p in [Precision::Int8, Precision::Int7] {
                    let cell = of_cluster
                        .iter()
                        .find(|r| r.model == model && r.threads == t && r.precision == p)
                        .map_or("-".to_string(), |r| format!("{:.2}", r.timing.median_ms));
                    let _ = write!(row, " {cell} |");
                }
            }
            lines.push(row);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, String> {
        parse_args(s.split_whitespace().map(String::from))
    }

    fn run_args(s: &str) -> Args {
        match parse(s) {
            Ok(Command::Run(a)) => *a,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn parses_the_full_contract() {
        let a = run_args(
            "--model a.param,dir/b.param --bin a.bin,b.bin --shape 224,224,3 \
             --precision fp32,int8,int7 --threads 1,2 --cluster cpus=4,5 --loops 10 \
             --warmup 3 --cooldown 0.5 --json out.json --target t.toml --layers --workers \
             --fp16-weights",
        );
        assert_eq!(
            a,
            Args {
                models: vec!["a.param".into(), "dir/b.param".into()],
                bins: vec!["a.bin".into(), "b.bin".into()],
                shape: Some(Shape::d3(224, 224, 3)),
                precisions: vec![Precision::Fp32, Precision::Int8, Precision::Int7],
                threads: vec![1, 2],
                cluster: Some(CpuSelection::Cpus(vec![4, 5])),
                loops: 10,
                warmup: 3,
                cooldown: Duration::from_millis(500),
                json: Some("out.json".into()),
                target: Some("t.toml".into()),
                layers: true,
                workers: true,
                fp16_weights: true,
                gemm_shapes: false,
            }
        );
        // `--flag=value` is the same; defaults fill the rest.
        let b = run_args("--model=m.param --cluster=big");
        assert_eq!(b.cluster, Some(CpuSelection::Big));
        assert_eq!(b.precisions, vec![Precision::Fp32]);
        assert_eq!((b.threads.clone(), b.loops, b.warmup), (vec![1], 8, 2));
        assert!(b.bins.is_empty() && b.shape.is_none() && b.json.is_none());
        assert!(b.target.is_none() && !b.layers && !b.workers && !b.fp16_weights);
        assert_eq!(b.cooldown, Duration::ZERO);
        assert_eq!(parse("--model m --help"), Ok(Command::Help));
        assert_eq!(parse("-h"), Ok(Command::Help));
    }

    #[test]
    fn rejects_bad_arguments_with_clear_messages() {
        let cases = [
            ("", "--model is required"),
            ("--model m --frobnicate 3", "unknown flag `--frobnicate`"),
            ("--model m extra", "unexpected argument `extra`"),
            ("--model", "--model needs a value"),
            ("--model --loops 3", "--model needs a value"),
            ("--model=", "--model needs a value"),
            ("--model m --loops x", "--loops: `x` is not a valid number"),
            ("--model m --loops -1", "`-1` is not a valid number"),
            ("--model m --loops 0", "at least 1"),
            (
                "--model m --warmup 1.5",
                "--warmup: `1.5` is not a valid number",
            ),
            ("--model m --threads 1,,2", "empty item"),
            ("--model m --threads 0", "out of range"),
            ("--model m --threads 1,z", "`z` is not a valid number"),
            ("--model m --precision fp16", "unknown precision `fp16`"),
            (
                "--model m --cluster fast",
                "--cluster: unknown cpu selection",
            ),
            ("--model m --cluster cpus=a", "--cluster: bad cpu list"),
            ("--model m --shape 224,224", "expected W,H,C"),
            ("--model m --shape 0,2,3", "--shape `0,2,3`"),
            ("--model m --cooldown nan", "out of range"),
            ("--model m --cooldown=-1", "out of range"),
            ("--model m --loops 2 --loops 3", "--loops is given twice"),
            (
                "--model a,b --bin x",
                "--bin lists 1 file(s) for 2 model(s)",
            ),
        ];
        for (args, want) in cases {
            let e = parse(args).unwrap_err();
            assert!(e.contains(want), "`{args}`: got `{e}`, want `{want}`");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn names_and_stats() {
        assert_eq!(model_name(Path::new("/x/squeezenet.param")), "squeezenet");
        assert_eq!(model_name(Path::new("m/resnet18.param.bin")), "resnet18");
        assert_eq!(model_name(Path::new("odd")), "odd");
        let t = Timing::from_samples(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(
            t,
            Timing {
                min_ms: 1.0,
                median_ms: 2.5,
                avg_ms: 2.5
            }
        );
        let t = Timing::from_samples(&[5.0, 1.0, 9.0]).unwrap();
        assert_eq!((t.min_ms, t.median_ms, t.avg_ms), (1.0, 5.0, 5.0));
        assert_eq!(Timing::from_samples(&[]), None);
    }

    #[test]
    fn lines_are_benchncnn_like() {
        let t = Timing {
            min_ms: 1.0,
            median_ms: 2.0,
            avg_ms: 12.345,
        };
        let l = result_line("squeezenet", Precision::Fp32, 2, &t);
        assert!(l.starts_with("          squeezenet  fp32"), "{l}");
        assert!(
            l.contains("min =     1.00") && l.ends_with("avg =    12.35"),
            "{l}"
        );
        let s = skipped_line(
            "squeezenet",
            Precision::Int7,
            1,
            "fp32 model with real weights: quantize it first (eq quantize)",
        );
        assert!(s.starts_with(&format!("{:>20}  int7", "squeezenet")), "{s}");
        assert!(
            s.ends_with("skipped: fp32 model with real weights: quantize it first (eq quantize)"),
            "{s}"
        );
        for quantized in [false, true] {
            assert_eq!(Precision::Fp32.unavailable(quantized, false), None);
        }
        for p in [Precision::Int8, Precision::Int7] {
            let why = p.unavailable(false, false).unwrap();
            assert!(why.contains("quantize it first"), "{why}");
            assert_eq!(p.unavailable(false, true), None);
            assert_eq!(p.unavailable(true, false), None);
        }
        assert_eq!(Precision::Int7.choice(), PrecisionChoice::Int7);
    }

    #[test]
    fn json_has_the_contract_keys() {
        let r = Record {
            model: "a\"b\\c\n".into(),
            precision: Precision::Fp32,
            threads: 2,
            timing: Timing {
                min_ms: 1.0,
                median_ms: 1.5,
                avg_ms: 2.0,
            },
            cluster: "cpus=4,5".into(),
            cpus: vec![4, 5],
            cores: vec!["cortex-a72".into()],
            parts: vec![0xd08],
            loops: 8,
            warmup: 2,
            commit: "abc1234".into(),
        };
        assert_eq!(
            r.to_json(),
            "{\"model\": \"a\\\"b\\\\c\\n\", \"precision\": \"fp32\", \"threads\": 2, \
             \"min_ms\": 1.0000, \"median_ms\": 1.5000, \"avg_ms\": 2.0000, \
             \"cluster\": \"cpus=4,5\", \"cpus\": [4, 5], \"cores\": [\"cortex-a72\"], \
             \"parts\": [\"0xd08\"], \"loops\": 8, \"warmup\": 2, \"commit\": \"abc1234\"}"
        );
        assert_eq!(records_json(&[]), "[]\n");
        let two = records_json(&[r.clone(), r.clone()]);
        assert!(
            two.starts_with("[\n  {") && two.ends_with("}\n]\n"),
            "{two}"
        );
        assert_eq!(two.matches("},\n").count(), 1);
        // Control characters are escaped; a time that is not finite is null.
        let mut odd = r.clone();
        odd.model = "\u{1}".into();
        odd.timing.min_ms = f64::NAN;
        let line = odd.to_json();
        assert!(line.starts_with("{\"model\": \"\\u0001\", "), "{line}");
        assert!(line.contains("\"min_ms\": null, "), "{line}");
        // What scripts read: a JSON list of flat records with these keys, in this order.
        let parsed: serde_json::Value = serde_json::from_str(&two).unwrap();
        let items = parsed.as_array().unwrap();
        assert_eq!(items.len(), 2);
        let keys = [
            "model",
            "precision",
            "threads",
            "min_ms",
            "median_ms",
            "avg_ms",
            "cluster",
            "cpus",
            "cores",
            "parts",
            "loops",
            "warmup",
            "commit",
        ];
        assert_eq!(items[0].as_object().unwrap().len(), keys.len());
        let at: Vec<usize> = keys
            .iter()
            .map(|k| r.to_json().find(&format!("\"{k}\": ")).unwrap())
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
        assert_eq!(items[1]["median_ms"], 1.5);
        assert_eq!(items[1]["parts"][0], "0xd08");
    }

    #[test]
    fn seed_table_has_one_int8_and_int7_column_per_thread_count() {
        let record = |model: &str, precision, threads, cluster: &str, ms| Record {
            model: model.into(),
            precision,
            threads,
            timing: Timing {
                min_ms: ms,
                median_ms: ms,
                avg_ms: ms,
            },
            cluster: cluster.into(),
            cpus: vec![0],
            cores: vec!["cortex-a53".into()],
            parts: vec![0xd03],
            loops: 1,
            warmup: 0,
            commit: "x".into(),
        };
        use Precision::*;
        let records = [
            record("squeezenet", Int8, 4, "little", 10.0),
            record("squeezenet", Int7, 4, "little", 8.0),
            record("squeezenet", Fp32, 1, "little", 99.0),
            record("squeezenet", Int8, 1, "little", 30.0),
            record("squeezenet", Int7, 1, "little", 25.0),
            record("mobilenet", Int8, 1, "little", 40.0),
            record("mobilenet", Int8, 2, "big", 5.0),
        ];
        let t = seed_table(&records);
        assert_eq!(
            t,
            vec![
                format!("cluster little (cortex-a53), median ms; {INT8_COLUMN_NOTE}"),
                "| Models | EQ-INT8(#1) | EQ-INT7(#1) | EQ-INT8(#4) | EQ-INT7(#4) |".into(),
                "|---|---:|---:|---:|---:|".into(),
                "| squeezenet | 30.00 | 25.00 | 10.00 | 8.00 |".into(),
                "| mobilenet | 40.00 | - | - | - |".into(),
                String::new(),
                format!("cluster big (cortex-a53), median ms; {INT8_COLUMN_NOTE}"),
                "| Models | EQ-INT8(#2) | EQ-INT7(#2) |".into(),
                "|---|---:|---:|".into(),
                "| mobilenet | 5.00 | - |".into(),
            ]
        );
        assert!(INT8_COLUMN_NOTE.contains("in place of the seed's TRT-INT8"));
        assert!(seed_table(&[]).is_empty());
    }

    const DECLARED: &str = "7767517\n2 2\nInput in 0 1 data 0=8 1=6 2=4\nReLU r 1 1 data out\n";
    const UNDECLARED: &str = "7767517\n2 2\nInput in 0 1 data\nReLU r 1 1 data out\n";

    #[test]
    fn finds_the_first_input_and_its_declared_shape() {
        let p = eq_runtime::model::parse_param(DECLARED.as_bytes(), "d").unwrap();
        assert_eq!(
            first_input(&p),
            Ok(Some(("data".into(), Some(Shape::d3(8, 6, 4)))))
        );
        let p = eq_runtime::model::parse_param(UNDECLARED.as_bytes(), "u").unwrap();
        assert_eq!(first_input(&p), Ok(Some(("data".into(), None))));
        let none = eq_runtime::model::parse_param(b"7767517\n1 1\nReLU r 1 1 a b\n", "n").unwrap();
        assert_eq!(first_input(&none), Ok(None));
    }

    #[test]
    fn prepares_and_times_a_model() {
        let dir = std::env::temp_dir().join(format!("eq-bench-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (declared, undeclared) = (dir.join("d.param"), dir.join("u.param"));
        std::fs::write(&declared, DECLARED).unwrap();
        std::fs::write(&undeclared, UNDECLARED).unwrap();

        // A declared shape wins over --shape; an undeclared one takes it or is an error.
        let shape = Some(Shape::d3(5, 4, 3));
        let m = prepare_model(&declared, None, shape).unwrap();
        assert_eq!((m.name.as_str(), m.input_shapes.len()), ("d", 0));
        let m = prepare_model(&undeclared, None, shape).unwrap();
        assert_eq!(
            m.input_shapes,
            vec![("data".to_string(), Shape::d3(5, 4, 3))]
        );
        let e = prepare_model(&undeclared, None, None).unwrap_err();
        assert!(e.contains("declares no shape; give --shape"), "{e}");
        let e = prepare_model(&dir.join("missing.param"), None, None).unwrap_err();
        assert!(e.contains("missing.param"), "{e}");
        let e = prepare_model(&declared, Some(&dir.join("missing.bin")), None).unwrap_err();
        assert!(e.contains("missing.bin"), "{e}");

        assert!(!m.quantized);
        let mut net = load(&m, Precision::Fp32, 2, &Placement::default(), false).unwrap();
        assert_eq!(net.threads(), 2);
        let t = time_net(&mut net, 1, 3).unwrap();
        assert!(t.min_ms >= 0.0 && t.min_ms <= t.median_ms && t.min_ms <= t.avg_ms);
        assert!(net
            .blob("out")
            .unwrap()
            .data
            .iter()
            .all(|&v| v == FILL_VALUE));
        let layers = profile_layers(&mut net, 2).unwrap();
        assert!(layers.iter().all(|l| l.ms > 0.0), "{layers:?}");
        assert!(layers.iter().any(|l| l.kind == "ReLU"), "{layers:?}");
        let lines = layer_lines(&layers);
        assert_eq!(lines.len(), layers.len());
        assert!(lines.last().unwrap().contains("100.0%"), "{lines:?}");

        // A layer with int8 scales marks the model quantized.
        let q = dir.join("q_int8.param");
        std::fs::write(
            &q,
            "7767517\n2 2\nInput in 0 1 data 0=4 1=4 2=1\n\
             Convolution c 1 1 data out 0=1 1=1 5=1 6=1 8=2\n",
        )
        .unwrap();
        assert!(prepare_model(&q, None, None).unwrap().quantized);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
