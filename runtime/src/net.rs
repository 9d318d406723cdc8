//! The public entry point: load a model once, then run it any number of times without
//! allocating.

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::model::weights::{Source, WeightReader};
use crate::ops::{self, Ctx, Op, Storage};
use crate::plan::{self, Plan, MAX_IO};
use crate::pool::Pool;
use crate::quant::Int8Grid;
use crate::tensor::{Shape, Tensor, TensorMut};
use std::path::Path;
use std::sync::Arc;

/// Load-time choices.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Worker threads (0 or 1: run on the calling thread).
    pub threads: usize,
    /// Shapes of input blobs, by name; required where the Input layer declares none.
    pub input_shapes: Vec<(String, Shape)>,
    /// Keep every intermediate blob readable after `run` (costs memory; for host tools).
    pub keep_all_blobs: bool,
    /// CPUs to pin the pool's extra workers to (`Pool::with_cpus`); empty: no pinning.
    pub cpus: Vec<usize>,
    /// Arithmetic of the quantizable layers (Convolution, ConvolutionDepthWise, InnerProduct).
    /// With zero weights (`load_zero_weights`, benchmarks), INT8 / INT7 also quantize the
    /// layers that have no scales, with fixed scales of 1.
    pub precision: PrecisionChoice,
    /// L2 size in bytes of the CPUs the net runs on, used for GEMM tiles when sysfs does not
    /// report it (e.g. `Cluster::l2_kib` from a target file).
    pub l2_bytes: Option<usize>,
    /// Layer types of the application, tried before the built-in ones (`ops::custom`).
    pub custom_layers: ops::custom::Registry,
    /// Most bytes the net's blob arena and scratch (all threads) may take; a model that needs
    /// more is a load error instead of an allocation the machine cannot back. None: no limit.
    pub memory_limit: Option<usize>,
    /// FP32 InnerProduct layers keep fp16 copies of their weights and read those (ncnn's
    /// default `use_fp16_storage` does the same): half the memory traffic of a layer that
    /// only streams its weights, at the cost of rounding each weight to fp16 (a relative
    /// error up to 2^-11). Off by default: FP32 stays exact.
    pub fp16_weights: bool,
}

/// Which arithmetic a net's quantizable layers use (defined with the other precision types).
pub use crate::quant::PrecisionChoice;

/// 64-byte aligned arena granule.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([f32; plan::ALIGN_FLOATS]);

pub struct Net {
    graph: Graph,
    ops: Vec<Box<dyn Op>>,
    plan: Plan,
    arena: Vec<Line>,
    scratch: Vec<Line>,
    pool: Pool,
    input_ids: Vec<usize>,
    output_ids: Vec<usize>,
    keep_all: bool,
    precisions: Vec<Option<crate::quant::Precision>>,
    /// The grid of each int8 blob (None: fp32).
    grids: Vec<Option<Int8Grid>>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Net({} layers, arena {} floats)",
            self.graph.layers.len(),
            self.plan.arena_len
        )
    }
}

impl Net {
    /// Loads `param` (`.param` or `.param.bin`) with weights from `bin` (memory-mapped).
    pub fn load(param: impl AsRef<Path>, bin: impl AsRef<Path>, opts: &Options) -> Result<Net> {
        let (param, bin) = (param.as_ref(), bin.as_ref());
        let p = crate::model::read_param(param)?;
        let src = Arc::new(Source::map(bin)?);
        let weights = WeightReader::new(src, bin.display().to_string());
        Net::build(p, weights, &param.display().to_string(), opts)
    }

    /// Loads `param` with all-zero weights, as benchncnn does.
    pub fn load_zero_weights(param: impl AsRef<Path>, opts: &Options) -> Result<Net> {
        let p = crate::model::read_param(param.as_ref())?;
        Net::build(
            p,
            WeightReader::zeros(),
            &param.as_ref().display().to_string(),
            opts,
        )
    }

    /// Loads from memory: param bytes (text or binary) and weight bytes.
    pub fn from_memory(param: &[u8], bin: &[u8], opts: &Options) -> Result<Net> {
        let p = crate::model::parse_param(param, "<param>")?;
        let weights = WeightReader::new(Arc::new(Source::from_bytes(bin)), "<bin>");
        Net::build(p, weights, "<param>", opts)
    }

    /// Builds ops from a parsed param file and a weight reader, then plans memory.
    pub fn build(
        p: crate::model::param::ParamFile,
        mut weights: WeightReader,
        param_name: &str,
        opts: &Options,
    ) -> Result<Net> {
        let graph = Graph::new(p, param_name)?;
        let layer_err = |li: usize, e: crate::error::LayerError| {
            let l = &graph.layers[li];
            Error::Layer {
                layer: l.name.clone(),
                kind: l.kind.clone(),
                msg: e.0,
            }
        };
        let synthetic = weights.is_zeros()
            && matches!(
                opts.precision,
                PrecisionChoice::Int8 | PrecisionChoice::Int7
            );
        let cores = crate::pool::planned_cores(opts.threads, &opts.cpus);
        let mut ops = Vec::with_capacity(graph.layers.len());
        let mut precisions = Vec::with_capacity(graph.layers.len());
        for (li, l) in graph.layers.iter().enumerate() {
            weights.set_layer(&l.name);
            let op = match opts.custom_layers.get(&l.kind) {
                Some(create) => create(&l.params, &mut weights),
                None => ops::build(&l.kind, &l.params, &mut weights),
            };
            let mut op = op.map_err(|e| match e {
                Error::Layer { msg, .. } => Error::Layer {
                    layer: l.name.clone(),
                    kind: l.kind.clone(),
                    msg,
                },
                other => other,
            })?;
            // Precision right away, so a layer that runs an integer path frees its fp32
            // weights before the next layer loads (peak memory of int8 models).
            if synthetic {
                op.synthesize_int8_scales();
            }
            op.set_cores(&cores);
            op.set_fp16_weights(opts.fp16_weights);
            precisions.push(
                op.set_precision(opts.precision)
                    .map_err(|e| layer_err(li, e))?,
            );
            ops.push(op);
        }
        weights.finish()?;
        let simulate = opts.precision == PrecisionChoice::Simulate;
        let mut grids = int8_grids(&graph, &ops);
        for (li, op) in ops.iter_mut().enumerate() {
            // Alias ops (Split, Flatten, …) only rename memory; pass-through ops keep fp32 in
            // the simulation, which rounds in the quantized layers.
            if op.storage() == Storage::Alias || (simulate && op.int8_passthrough()) {
                continue;
            }
            let input = graph.inputs[li]
                .first()
                .is_some_and(|&b| grids[b].is_some());
            let output = graph.outputs[li].first().and_then(|&b| grids[b]);
            op.set_int8_io(input, output)
                .map_err(|e| layer_err(li, e))?;
        }
        if simulate {
            // The ops round to the int8 grids themselves; every blob stays fp32.
            grids.iter_mut().for_each(|g| *g = None);
        }
        let int8: Vec<bool> = grids.iter().map(Option::is_some).collect();
        let plan = plan::plan(
            &graph,
            &ops,
            &plan::PlanOptions {
                input_shapes: &opts.input_shapes,
                keep_all: opts.keep_all_blobs,
                int8: &int8,
            },
        )?;
        let pool = Pool::with_cpus(opts.threads, &opts.cpus)?.or_l2_bytes(opts.l2_bytes);
        let (arena, scratch) = allocate_memory(&plan, pool.threads(), opts.memory_limit)?;
        let input_ids = (0..graph.blobs.len())
            .filter(|&b| graph.layers[graph.blobs[b].producer].kind == "Input")
            .collect();
        let output_ids = (0..graph.blobs.len())
            .filter(|&b| graph.blobs[b].consumers.is_empty())
            .collect();
        Ok(Net {
            graph,
            ops,
            plan,
            arena,
            scratch,
            pool,
            input_ids,
            output_ids,
            keep_all: opts.keep_all_blobs,
            precisions,
            grids,
        })
    }

    /// The precision each layer runs in (None: fp32), by layer index.
    pub fn layer_precisions(&self) -> &[Option<crate::quant::Precision>] {
        &self.precisions
    }

    /// Input blob names with their planned shapes.
    pub fn inputs(&self) -> impl Iterator<Item = (&str, Shape)> {
        self.input_ids
            .iter()
            .map(|&b| (self.graph.blobs[b].name.as_str(), self.plan.shapes[b]))
    }

    /// Output blob names (blobs no layer consumes) with their shapes.
    pub fn outputs(&self) -> impl Iterator<Item = (&str, Shape)> {
        self.output_ids
            .iter()
            .map(|&b| (self.graph.blobs[b].name.as_str(), self.plan.shapes[b]))
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn ops(&self) -> &[Box<dyn Op>] {
        &self.ops
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The thread pool the layers run on.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Arena plus scratch memory in bytes (reported to users; ncnn#507).
    pub fn memory_bytes(&self) -> usize {
        (self.arena.len() + self.scratch.len()) * std::mem::size_of::<Line>()
    }

    fn find_blob(&self, name: &str) -> Result<usize> {
        self.graph.blob_id(name).ok_or_else(|| Error::Input {
            msg: format!("no blob named `{name}` in this model"),
        })
    }

    pub fn blob_shape(&self, name: &str) -> Result<Shape> {
        Ok(self.plan.shapes[self.find_blob(name)?])
    }

    /// Copies `data` into input blob `name`; its length must match the planned shape.
    pub fn set_input(&mut self, name: &str, data: &[f32]) -> Result<()> {
        let t = self.input_mut(name)?;
        if data.len() != t.data.len() {
            return Err(Error::Input {
                msg: format!(
                    "input `{name}`: got {} values, the model expects {} ({})",
                    data.len(),
                    t.data.len(),
                    t.shape
                ),
            });
        }
        t.data.copy_from_slice(data);
        Ok(())
    }

    /// Direct access to an input blob's memory, to fill it without a copy.
    pub fn input_mut(&mut self, name: &str) -> Result<TensorMut<'_>> {
        let b = self.find_blob(name)?;
        if !self.input_ids.contains(&b) {
            return Err(Error::Input {
                msg: format!("`{name}` is not an input blob"),
            });
        }
        let (off, len) = self.plan.place(b);
        let shape = self.plan.shapes[b];
        Ok(TensorMut {
            shape,
            data: &mut self.arena_floats_mut()[off..off + len],
        })
    }

    /// Reads a blob after `run`: any output, or any blob when loaded with `keep_all_blobs`.
    pub fn blob(&self, name: &str) -> Result<Tensor<'_>> {
        let b = self.find_blob(name)?;
        self.check_readable(b, name)?;
        if self.plan.int8[b] {
            return Err(Error::Input {
                msg: format!("blob `{name}` holds int8 values; read it with blob_f32"),
            });
        }
        let (off, len) = self.plan.place(b);
        Ok(Tensor {
            shape: self.plan.shapes[b],
            data: &bytemuck::cast_slice(&self.arena)[off..off + len],
        })
    }

    /// Reads a blob as [`Net::blob`] does, as fp32 values: int8 blobs are dequantized with the
    /// scale their producer quantized them with. Allocates (for tools, not the hot path).
    pub fn blob_f32(&self, name: &str) -> Result<(Shape, Vec<f32>)> {
        let b = self.find_blob(name)?;
        if !self.plan.int8[b] {
            let t = self.blob(name)?;
            return Ok((t.shape, t.data.to_vec()));
        }
        self.check_readable(b, name)?;
        let (off, len) = self.plan.place(b);
        let shape = self.plan.shapes[b];
        let floats: &[f32] = &bytemuck::cast_slice(&self.arena)[off..off + len];
        let values: &[i8] = &bytemuck::cast_slice(floats)[..shape.len()];
        let scale = self.grids[b].map_or(1.0, |g| g.scale);
        Ok((shape, values.iter().map(|&q| q as f32 / scale).collect()))
    }

    /// Whether a blob holds int8 values (a requantized output on its way to quantized layers).
    pub fn is_int8_blob(&self, name: &str) -> Result<bool> {
        Ok(self.plan.int8[self.find_blob(name)?])
    }

    /// The grid of an int8 blob (its values are `quantize(x, scale, qmax)`), None for fp32.
    pub fn int8_grid(&self, name: &str) -> Result<Option<Int8Grid>> {
        Ok(self.grids[self.find_blob(name)?])
    }

    fn check_readable(&self, b: usize, name: &str) -> Result<()> {
        if !self.keep_all && !self.output_ids.contains(&b) && !self.input_ids.contains(&b) {
            return Err(Error::Input {
                msg: format!("blob `{name}` is intermediate and its memory is reused; load with keep_all_blobs to read it"),
            });
        }
        Ok(())
    }

    fn arena_floats_mut(&mut self) -> &mut [f32] {
        bytemuck::cast_slice_mut(&mut self.arena)
    }

    /// Runs every layer once. Performs no heap allocation.
    pub fn run(&mut self) -> Result<()> {
        self.run_steps(None)
    }

    /// `run`, adding each layer's wall time to `layer_times[layer index]` (for profiling,
    /// e.g. `eq-bench --layers`; `layer_times` needs one entry per graph layer).
    pub fn run_timed(&mut self, layer_times: &mut [std::time::Duration]) -> Result<()> {
        if layer_times.len() < self.graph.layers.len() {
            return Err(Error::Input {
                msg: format!(
                    "run_timed needs {} layer times, got {}",
                    self.graph.layers.len(),
                    layer_times.len()
                ),
            });
        }
        self.run_steps(Some(layer_times))
    }

    fn run_steps(&mut self, mut layer_times: Option<&mut [std::time::Duration]>) -> Result<()> {
        let base: *mut f32 = self.arena_floats_mut().as_mut_ptr();
        let scratch: &mut [f32] = bytemuck::cast_slice_mut(&mut self.scratch);
        let empty = Tensor {
            shape: Shape::default(),
            data: &[],
        };
        for step in &self.plan.steps {
            let li = step.layer;
            let start = layer_times.is_some().then(std::time::Instant::now);
            let op = &self.ops[li];
            let (ins, outs) = (&self.graph.inputs[li], &self.graph.outputs[li]);
            let mut ctx = Ctx {
                pool: &self.pool,
                scratch: &mut *scratch,
            };
            let place = |b: usize| self.plan.place(b);
            // SAFETY (all slices below): the plan gives blobs that are alive at the same step
            // disjoint arena ranges, except aliases, which are only ever read, and in-place
            // outputs, which are accessed through one mutable slice only.
            let result = match step.storage {
                Storage::Alias => Ok(()),
                Storage::InPlace => {
                    let (src, _) = place(ins[0]);
                    let (dst, len) = place(outs[0]);
                    let data = unsafe { std::slice::from_raw_parts_mut(base.add(dst), len) };
                    if step.copy_first {
                        let input = unsafe { std::slice::from_raw_parts(base.add(src), len) };
                        data.copy_from_slice(input);
                    }
                    let mut x = TensorMut {
                        shape: self.plan.shapes[outs[0]],
                        data,
                    };
                    op.forward_inplace(&mut x, &mut ctx)
                }
                Storage::New => {
                    let mut inputs = [empty; MAX_IO];
                    for (slot, &b) in inputs.iter_mut().zip(ins) {
                        let (off, len) = place(b);
                        *slot = Tensor {
                            shape: self.plan.shapes[b],
                            data: unsafe { std::slice::from_raw_parts(base.add(off), len) },
                        };
                    }
                    let mut outputs: [TensorMut; MAX_IO] = std::array::from_fn(|_| TensorMut {
                        shape: Shape::default(),
                        data: &mut [],
                    });
                    for (slot, &b) in outputs.iter_mut().zip(outs) {
                        let (off, len) = place(b);
                        *slot = TensorMut {
                            shape: self.plan.shapes[b],
                            data: unsafe { std::slice::from_raw_parts_mut(base.add(off), len) },
                        };
                    }
                    op.forward(&inputs[..ins.len()], &mut outputs[..outs.len()], &mut ctx)
                }
            };
            result.map_err(|e| {
                let l = &self.graph.layers[li];
                Error::Layer {
                    layer: l.name.clone(),
                    kind: l.kind.clone(),
                    msg: e.0,
                }
            })?;
            if let (Some(times), Some(start)) = (layer_times.as_deref_mut(), start) {
                times[li] += start.elapsed();
            }
        }
        Ok(())
    }
}

/// Decides which blobs hold int8 values, and on which grid.
///
/// Blobs joined by ops that carry int8 values unchanged (alias ops such as Split, Flatten
/// and Dropout, and ops whose `int8_passthrough` is true: max pooling, Concat, ReLU) form a
/// region. A region is int8
/// when every blob in it is produced by such an op or by a layer that can requantize its
/// output, and every layer reading it from outside those ops takes int8 input on one common
/// grid (bottom scale and clamp); the producers then requantize onto that grid. This is the
/// fp32 computation exactly: the readers would quantize onto the same grid themselves, and
/// the pass-through ops commute with that rounding (it is monotonic and maps 0 to 0). Blobs
/// The blob arena and the scratch of every worker, checked against `limit` and allocated
/// fallibly: an oversized model is an error naming the sizes, never an abort.
fn allocate_memory(
    plan: &Plan,
    threads: usize,
    limit: Option<usize>,
) -> Result<(Vec<Line>, Vec<Line>)> {
    const MIB: usize = 1 << 20;
    let bytes = |floats: usize| floats.checked_mul(std::mem::size_of::<f32>());
    let scratch_floats = plan.scratch_len.checked_mul(threads);
    let total = scratch_floats
        .and_then(bytes)
        .and_then(|s| bytes(plan.arena_len)?.checked_add(s));
    let describe = || {
        format!(
            "the blob arena ({} floats) and scratch ({} floats x {threads} threads)",
            plan.arena_len, plan.scratch_len
        )
    };
    let Some(total) = total else {
        return Err(Error::Graph {
            msg: format!("{} overflow the address space", describe()),
        });
    };
    if let Some(limit) = limit.filter(|&l| total > l) {
        return Err(Error::Graph {
            msg: format!(
                "{} need {} MiB, more than the memory limit of {} MiB",
                describe(),
                total.div_ceil(MIB),
                limit / MIB
            ),
        });
    }
    let lines = |floats: usize| -> Result<Vec<Line>> {
        let n = floats.div_ceil(plan::ALIGN_FLOATS);
        let mut v = Vec::new();
        v.try_reserve_exact(n).map_err(|_| Error::Graph {
            msg: format!(
                "{}: cannot allocate {} MiB",
                describe(),
                total.div_ceil(MIB)
            ),
        })?;
        v.resize(n, Line([0.0; plan::ALIGN_FLOATS]));
        Ok(v)
    };
    Ok((lines(plan.arena_len)?, lines(scratch_floats.unwrap_or(0))?))
}

/// the net outputs stay fp32.
fn int8_grids(graph: &Graph, ops: &[Box<dyn Op>]) -> Vec<Option<Int8Grid>> {
    let n = graph.blobs.len();
    let through = |li: usize| ops[li].storage() == Storage::Alias || ops[li].int8_passthrough();
    // Union-find over blobs linked by pass-through ops.
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut b: usize) -> usize {
        while parent[b] != b {
            parent[b] = parent[parent[b]];
            b = parent[b];
        }
        b
    }
    for li in 0..graph.layers.len() {
        if !through(li) {
            continue;
        }
        let blobs: Vec<usize> = graph.inputs[li]
            .iter()
            .chain(&graph.outputs[li])
            .copied()
            .collect();
        for w in blobs.windows(2) {
            let (a, b) = (root(&mut parent, w[0]), root(&mut parent, w[1]));
            parent[a] = b;
        }
    }
    // Per region: still possible, and the readers' common grid.
    let mut ok = vec![true; n];
    let mut grid: Vec<Option<Int8Grid>> = vec![None; n];
    for b in 0..n {
        let r = root(&mut parent, b);
        let producer = graph.blobs[b].producer;
        let consumers = &graph.blobs[b].consumers;
        if !(through(producer)
            || ops[producer].can_requantize() && graph.outputs[producer].len() == 1)
            || consumers.is_empty()
        {
            ok[r] = false;
        }
        for &c in consumers {
            if through(c) {
                continue;
            }
            match ops[c].int8_input() {
                Some(g) if graph.inputs[c].len() == 1 => match grid[r] {
                    None => grid[r] = Some(g),
                    Some(h) if h == g => {}
                    Some(_) => ok[r] = false,
                },
                _ => ok[r] = false,
            }
        }
    }
    (0..n)
        .map(|b| {
            let r = root(&mut parent, b);
            if ok[r] {
                grid[r]
            } else {
                None
            }
        })
        .collect()
}
