//! ONNX -> ncnn: one `.onnx` file (structure and fp32 weights) becomes an ncnn `.param` +
//! `.bin` for the ops this runtime has.
//!
//! * Layout: ONNX tensors are NCHW with a batch that must be 1; ncnn blobs drop it. A rank-r
//!   ONNX tensor is an (r-1)-D ncnn blob: `[1, N]` -> w=N; `[1, H, W]` -> h, w;
//!   `[1, C, H, W]` -> c, h, w; `[1, C, D, H, W]` -> c, d, h, w. So an ONNX axis `a` (after
//!   adding the rank to a negative one) is ncnn axis `a - 1`, and axis 0 (the batch) cannot
//!   be cut, concatenated or reduced.
//! * Shapes are known at import: graph inputs need fixed dims (a symbolic first dim is taken
//!   as batch 1), every node's output shape is computed here, and nodes whose inputs are all
//!   constants (the Shape / Gather / Unsqueeze / Concat / Cast chains that exporters write
//!   in front of Reshape and Resize) are evaluated instead of becoming layers.
//! * Blob names are the ONNX value names, so graph inputs and outputs keep theirs; a value
//!   read by several layers gets a `Split` as ncnn's converters write it.
//! * BatchNormalization right after a Conv / ConvTranspose / Gemm (its only reader) is
//!   folded into that layer's weights; `Mul(x, Sigmoid(x))` becomes one Swish.
//! * Weights are fp32 (int64 / int32 only for shape constants); the `.bin` follows ncnn's
//!   order (ncnn-format.md §4.4).

use super::onnx_proto::*;
use crate::ncnn_writer::{Layer, ModelWriter, ParamWriter};
use anyhow::{anyhow, bail, Context, Result};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Reads `model` and writes the ncnn model. Errors name the file and the node.
pub fn import_file(model: &Path, out_param: &Path, out_bin: &Path) -> Result<()> {
    let bytes = std::fs::read(model).with_context(|| format!("{}", model.display()))?;
    let m = decode(&bytes).with_context(|| format!("{}", model.display()))?;
    let out = convert(&m).with_context(|| format!("{}", model.display()))?;
    let param = out.param.to_text()?;
    std::fs::write(out_param, param).with_context(|| format!("{}", out_param.display()))?;
    std::fs::write(out_bin, &out.bin.bytes).with_context(|| format!("{}", out_bin.display()))?;
    Ok(())
}

/// Decodes an `.onnx` file (a `ModelProto`).
pub fn decode(bytes: &[u8]) -> Result<ModelProto> {
    let m = ModelProto::decode(bytes)
        .map_err(|e| anyhow!("malformed ONNX model (not a ModelProto protobuf): {e}"))?;
    match &m.graph {
        Some(g) if !g.node.is_empty() => Ok(m),
        _ => bail!("the ONNX model holds no graph nodes"),
    }
}

/// A constant tensor: values as f64 (exact for fp32 and for the int64 values of shape
/// arithmetic), dims outermost first.
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    pub dims: Vec<usize>,
    pub data: Vec<f64>,
    /// Integer typed (int32 / int64 / bool): division truncates, casts round.
    pub int: bool,
}

impl Const {
    fn scalar(v: f64, int: bool) -> Const {
        Const {
            dims: vec![],
            data: vec![v],
            int,
        }
    }
    fn vec1(v: Vec<f64>, int: bool) -> Const {
        Const {
            dims: vec![v.len()],
            data: v,
            int,
        }
    }
    fn f32s(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }
    fn ints(&self) -> Vec<i64> {
        self.data.iter().map(|&v| v as i64).collect()
    }
}

/// Number of elements, failing on overflow (fuzzed dims).
fn numel(dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= 1 << 31)
        .ok_or_else(|| anyhow!("shape {dims:?} is too large"))
}

/// Elements of a tensor computed at import (not read from the file): kept small so that a
/// hostile ConstantOfShape or broadcast cannot exhaust memory.
fn numel_computed(dims: &[usize]) -> Result<usize> {
    let n = numel(dims)?;
    if n > 1 << 24 {
        bail!("constant of shape {dims:?} is too large to compute at import");
    }
    Ok(n)
}

/// An initializer or Constant value as a `Const`.
pub fn tensor_const(t: &TensorProto) -> Result<Const> {
    let name = t.name.as_deref().unwrap_or_default();
    if t.data_location == Some(1) {
        bail!("tensor `{name}`: external data files are not supported (save the model with its weights inside)");
    }
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| anyhow!("tensor `{name}`: negative dim {d}")))
        .collect::<Result<_>>()?;
    let n = numel(&dims).with_context(|| format!("tensor `{name}`"))?;
    let dt = t.data_type.unwrap_or(0);
    let raw = t.raw_data.as_deref();
    let data: Vec<f64> = match (dt, raw) {
        (DT_FLOAT, Some(r)) => r
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        (DT_FLOAT, None) => t.float_data.iter().map(|&v| v as f64).collect(),
        (DT_INT64, Some(r)) => r
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        (DT_INT64, None) => t.int64_data.iter().map(|&v| v as f64).collect(),
        (DT_INT32, Some(r)) => r
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        (DT_INT32 | DT_BOOL, None) => t.int32_data.iter().map(|&v| v as f64).collect(),
        (DT_BOOL, Some(r)) => r.iter().map(|&v| (v != 0) as u8 as f64).collect(),
        (DT_DOUBLE, Some(r)) => r
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        (DT_DOUBLE, None) => t.double_data.clone(),
        _ => bail!(
            "tensor `{name}`: data type {dt} is not supported (fp32 weights; int64 / int32 for shapes)"
        ),
    };
    let elem = match dt {
        DT_INT64 | DT_DOUBLE => 8,
        DT_BOOL => 1,
        _ => 4,
    };
    if data.len() != n || raw.is_some_and(|r| r.len() != n * elem) {
        bail!(
            "tensor `{name}`: shape {dims:?} needs {n} values, the data holds {}",
            data.len()
        );
    }
    Ok(Const {
        dims,
        data,
        int: matches!(dt, DT_INT64 | DT_INT32 | DT_BOOL),
    })
}

/// What a value name stands for while converting.
#[derive(Clone, Debug)]
enum Val {
    /// Known at import (initializer, Constant, or folded shape arithmetic).
    Const(Const),
    /// A runtime blob (ncnn blob of the same name) with its ONNX shape, batch first.
    Blob(Vec<usize>),
}

/// Per-channel (scale, shift) of a BatchNormalization.
type Affine = (Vec<f64>, Vec<f64>);
/// Slice's axes, starts, ends and steps.
type SliceArgs = (Vec<usize>, Vec<i64>, Vec<i64>, Vec<i64>);

/// A node's attributes by name.
struct Attrs<'a>(&'a [AttributeProto]);

impl Attrs<'_> {
    fn get(&self, name: &str) -> Option<&AttributeProto> {
        self.0.iter().find(|a| a.name.as_deref() == Some(name))
    }
    fn i(&self, name: &str, default: i64) -> i64 {
        self.get(name).and_then(|a| a.i).unwrap_or(default)
    }
    fn f(&self, name: &str, default: f32) -> f32 {
        self.get(name).and_then(|a| a.f).unwrap_or(default)
    }
    fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }
    fn s(&self, name: &str, default: &str) -> String {
        self.get(name).and_then(|a| a.s.as_ref()).map_or_else(
            || default.to_string(),
            |s| String::from_utf8_lossy(s).into(),
        )
    }
}

/// Converts a decoded model into an ncnn model.
pub fn convert(m: &ModelProto) -> Result<ModelWriter> {
    let g = m
        .graph
        .as_ref()
        .ok_or_else(|| anyhow!("the ONNX model has no graph"))?;
    let opset = m
        .opset_import
        .iter()
        .find(|o| o.domain.as_deref().unwrap_or("").is_empty())
        .and_then(|o| o.version)
        .unwrap_or(13);
    let mut c = Converter {
        vals: HashMap::new(),
        model: ModelWriter::new(),
        readers: HashMap::new(),
        layer_names: HashSet::new(),
        skip: HashSet::new(),
        swish: HashSet::new(),
        rename: HashMap::new(),
        opset,
        fresh: 0,
    };
    for t in &g.initializer {
        let name = t.name.clone().unwrap_or_default();
        c.vals.insert(name, Val::Const(tensor_const(t)?));
    }
    for n in &g.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *c.readers.entry(i.clone()).or_default() += 1;
        }
    }
    for o in &g.output {
        *c.readers
            .entry(o.name.clone().unwrap_or_default())
            .or_default() += 1;
    }
    for input in &g.input {
        let name = input.name.clone().unwrap_or_default();
        if c.vals.contains_key(&name) {
            continue; // an initializer listed as input (old exporters)
        }
        let shape = input_shape(input).with_context(|| format!("graph input `{name}`"))?;
        c.input(&name, &shape)
            .with_context(|| format!("graph input `{name}`"))?;
    }
    c.find_fusions(&g.node);
    for (i, n) in g.node.iter().enumerate() {
        if c.skip.contains(&i) {
            continue;
        }
        let op = n.op_type.clone().unwrap_or_default();
        let name = match n.name.as_deref() {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => format!("{op}_{i}"),
        };
        c.node(i, n, &name, &g.node)
            .with_context(|| format!("node `{name}` ({op})"))?;
    }
    if c.model.param.layers.is_empty() {
        bail!("the graph has no layers after folding constants");
    }
    for o in &g.output {
        let name = o.name.clone().unwrap_or_default();
        match c.vals.get(&name) {
            Some(Val::Blob(_)) => {}
            Some(Val::Const(_)) => {
                bail!("graph output `{name}` is a constant (nothing to compute)")
            }
            None => bail!("graph output `{name}` is not produced by any node"),
        }
    }
    insert_splits(&mut c.model.param);
    Ok(c.model)
}

/// A graph input's fixed shape; a symbolic or zero first dim is the batch, taken as 1.
fn input_shape(v: &ValueInfoProto) -> Result<Vec<usize>> {
    let t = v
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or_else(|| anyhow!("not a tensor"))?;
    if t.elem_type.unwrap_or(DT_FLOAT) != DT_FLOAT {
        bail!(
            "element type {} (only float inputs are supported)",
            t.elem_type.unwrap_or(0)
        );
    }
    let dims = t.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default();
    dims.iter()
        .enumerate()
        .map(|(i, d)| match (d.dim_value, i) {
            (Some(v), _) if v > 0 => Ok(v as usize),
            (_, 0) => Ok(1),
            _ => bail!(
                "dimension {i} is symbolic or unknown; export the model with fixed input sizes"
            ),
        })
        .collect()
}

/// Gives every blob read by more than one layer a Split right after its producer (ncnn
/// binds each blob to one consumer).
fn insert_splits(p: &mut ParamWriter) {
    let mut count: HashMap<String, usize> = HashMap::new();
    for l in &p.layers {
        for b in &l.bottoms {
            *count.entry(b.clone()).or_default() += 1;
        }
    }
    let mut left = count.clone();
    let mut out: Vec<Layer> = Vec::new();
    let mut splits = 0;
    for mut l in std::mem::take(&mut p.layers) {
        for b in l.bottoms.iter_mut() {
            if count[b.as_str()] > 1 {
                let k = left.get_mut(b.as_str()).expect("counted");
                *k -= 1;
                *b = format!("{b}_splitncnn_{k}");
            }
        }
        let tops = l.tops.clone();
        out.push(l);
        for t in tops {
            let n = count.get(&t).copied().unwrap_or(0);
            if n > 1 {
                out.push(Layer {
                    kind: "Split".into(),
                    name: format!("splitncnn_{splits}"),
                    bottoms: vec![t.clone()],
                    tops: (0..n).map(|i| format!("{t}_splitncnn_{i}")).collect(),
                    params: vec![],
                });
                splits += 1;
            }
        }
    }
    p.layers = out;
}

struct Converter {
    vals: HashMap<String, Val>,
    model: ModelWriter,
    /// How many nodes (and graph outputs) read each value.
    readers: HashMap<String, usize>,
    layer_names: HashSet<String>,
    /// Nodes folded into another (BatchNormalization into Conv, Sigmoid into Swish).
    skip: HashSet<usize>,
    /// Mul nodes that are `x * Sigmoid(x)`.
    swish: HashSet<usize>,
    /// A folded node's output written by the node it was folded into: producer output ->
    /// the name it takes.
    rename: HashMap<String, String>,
    opset: i64,
    fresh: usize,
}

/// Output spatial size of a convolution or pooling window.
fn window_out(
    input: usize,
    k: usize,
    s: usize,
    d: usize,
    pads: (usize, usize),
    ceil: bool,
) -> Result<usize> {
    let span = d * (k - 1) + 1;
    let padded = input + pads.0 + pads.1;
    if padded < span {
        bail!("window {k} (dilation {d}) is larger than the padded input {padded}");
    }
    let mut out = if ceil {
        (padded - span).div_ceil(s) + 1
    } else {
        (padded - span) / s + 1
    };
    // Ceil mode: the last window must start inside the input or the leading pad.
    if ceil && (out - 1) * s >= input + pads.0 {
        out -= 1;
    }
    Ok(out)
}

fn pos(v: i64, what: &str) -> Result<usize> {
    usize::try_from(v)
        .ok()
        .filter(|&x| x > 0 && x < 1 << 20)
        .ok_or_else(|| anyhow!("{what} {v} must be positive"))
}

fn i32_of(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| anyhow!("{what} {v} is out of range"))
}

/// 2-D window attributes of Conv / ConvTranspose / pooling.
/// A (de)convolution layer before its BatchNormalization is folded in.
struct KernelLayer {
    win: Window,
    group: usize,
    /// ncnn's layout: per group, output channel first.
    weights: Vec<f32>,
    bias: Option<Vec<f32>>,
    /// Output channels, height, width.
    shape: [usize; 3],
}

struct Window {
    k: [usize; 2],
    s: [usize; 2],
    d: [usize; 2],
    /// (top, left, bottom, right)
    pads: [usize; 4],
}

fn window(
    a: &Attrs,
    kernel: Option<[usize; 2]>,
    hw: [usize; 2],
    transposed: bool,
) -> Result<Window> {
    let two = |name: &str, default: i64| -> Result<[usize; 2]> {
        match a.ints(name).as_deref() {
            None | Some([]) => Ok([pos(default, name)?; 2]),
            Some([h, w]) => Ok([pos(*h, name)?, pos(*w, name)?]),
            Some(v) => bail!("{name} {v:?}: only 2-D windows are supported"),
        }
    };
    let k = match (a.ints("kernel_shape"), kernel) {
        (Some(v), _) if v.len() == 2 => [pos(v[0], "kernel")?, pos(v[1], "kernel")?],
        (Some(v), _) => bail!("kernel_shape {v:?}: only 2-D windows are supported"),
        (None, Some(k)) => k,
        (None, None) => bail!("kernel_shape is missing"),
    };
    let s = two("strides", 1)?;
    let d = two("dilations", 1)?;
    let mut pads = match a.ints("pads").as_deref() {
        None => [0; 4],
        Some([t, l, b, r]) => {
            let p = |v: i64| {
                usize::try_from(v)
                    .ok()
                    .filter(|&x| x < 1 << 20)
                    .ok_or_else(|| anyhow!("pad {v} is negative or too large"))
            };
            [p(*t)?, p(*l)?, p(*b)?, p(*r)?]
        }
        Some(v) => bail!("pads {v:?}: 4 values (2-D) expected"),
    };
    let auto = a.s("auto_pad", "NOTSET");
    match auto.as_str() {
        "NOTSET" | "VALID" => {
            if auto == "VALID" {
                pads = [0; 4];
            }
        }
        "SAME_UPPER" | "SAME_LOWER" if !transposed => {
            // Total padding so that out = ceil(in / stride); the odd one goes last (UPPER).
            for ax in 0..2 {
                let out = hw[ax].div_ceil(s[ax]);
                let span = d[ax] * (k[ax] - 1) + 1;
                let total = ((out - 1) * s[ax] + span).saturating_sub(hw[ax]);
                let (lo, hi) = if auto == "SAME_UPPER" {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                };
                pads[ax] = lo;
                pads[ax + 2] = hi;
            }
        }
        other => bail!("auto_pad {other} is not supported"),
    }
    Ok(Window { k, s, d, pads })
}

impl Converter {
    fn val(&self, name: &str) -> Result<&Val> {
        self.vals
            .get(name)
            .ok_or_else(|| anyhow!("input `{name}` is not produced before this node"))
    }
    fn konst(&self, name: &str, what: &str) -> Result<&Const> {
        match self.val(name)? {
            Val::Const(c) => Ok(c),
            Val::Blob(_) => bail!("{what} `{name}` must be a constant (an initializer)"),
        }
    }
    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        match self.val(name)? {
            Val::Blob(s) => Ok(s.clone()),
            Val::Const(_) => {
                bail!("input `{name}` is a constant where a computed tensor is expected")
            }
        }
    }
    fn fresh_name(&mut self, base: &str) -> String {
        self.fresh += 1;
        format!("{base}_eq{}", self.fresh)
    }

    fn layer(&mut self, kind: &str, name: &str, bottoms: &[&str], tops: &[&str]) -> &mut Layer {
        // Layer names are free text in ONNX; ncnn's are whitespace-free tokens.
        let name: String = name
            .chars()
            .take(200)
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .collect();
        let name = if name.is_empty() {
            "layer".to_string()
        } else {
            name
        };
        let mut n = name.clone();
        let mut k = 1;
        while self.layer_names.contains(&n) {
            n = format!("{name}_{k}");
            k += 1;
        }
        self.layer_names.insert(n.clone());
        self.model.param.layer(kind, &n, bottoms, tops)
    }

    /// Records a computed output: a blob with its shape.
    fn blob(&mut self, name: &str, shape: Vec<usize>) -> Result<()> {
        if shape.is_empty() || shape[0] != 1 {
            bail!("output shape {shape:?}: only batch-1 tensors are supported");
        }
        if !(2..=5).contains(&shape.len()) {
            bail!("output shape {shape:?}: ranks 2 to 5 (batch first) are supported");
        }
        // Bounded dims keep the size arithmetic of later layers from overflowing.
        if shape.contains(&0) || numel(&shape).is_err() {
            bail!("output shape {shape:?} is empty or too large");
        }
        self.vals.insert(name.to_string(), Val::Blob(shape));
        Ok(())
    }

    fn input(&mut self, name: &str, shape: &[usize]) -> Result<()> {
        self.blob(name, shape.to_vec())?;
        let keys = ncnn_dims(shape);
        let l = self.layer("Input", name, &[], &[name]);
        set_dims(l, &keys);
        Ok(())
    }

    /// Marks the BatchNormalizations to fold into their Conv / Gemm and the Sigmoids that
    /// are part of a Swish.
    fn find_fusions(&mut self, nodes: &[NodeProto]) {
        let producer: HashMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
            .collect();
        let op = |i: usize| nodes[i].op_type.as_deref().unwrap_or_default();
        for (i, n) in nodes.iter().enumerate() {
            let Some(x) = n.input.first() else { continue };
            let p = producer.get(x.as_str()).copied();
            let single = self.readers.get(x.as_str()) == Some(&1);
            match op(i) {
                "BatchNormalization"
                    if single
                        && p.is_some_and(|p| {
                            matches!(op(p), "Conv" | "ConvTranspose" | "Gemm")
                        })
                        && n.output.len() == 1
                        && n.input[1..]
                            .iter()
                            .all(|w| matches!(self.vals.get(w.as_str()), Some(Val::Const(_)))) =>
                {
                    self.skip.insert(i);
                    self.rename.insert(x.clone(), n.output[0].clone());
                }
                "Mul" if n.input.len() == 2 => {
                    // x * Sigmoid(x), the sigmoid read only here.
                    for (a, b) in [(0, 1), (1, 0)] {
                        let Some(&s) = producer.get(n.input[b].as_str()) else {
                            continue;
                        };
                        if op(s) == "Sigmoid"
                            && nodes[s].input.first() == Some(&n.input[a])
                            && self.readers.get(n.input[b].as_str()) == Some(&1)
                        {
                            self.skip.insert(s);
                            self.swish.insert(i);
                            break;
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The BatchNormalization folded after output `out` as per-channel (scale, shift).
    fn folded_bn(&self, out: &str, nodes: &[NodeProto]) -> Result<Option<(String, Affine)>> {
        let Some(target) = self.rename.get(out) else {
            return Ok(None);
        };
        let bn = nodes
            .iter()
            .find(|n| n.output.first() == Some(target))
            .expect("recorded by find_fusions");
        let affine = bn_affine(self, bn)?;
        Ok(Some((target.clone(), affine)))
    }

    fn node(&mut self, idx: usize, n: &NodeProto, name: &str, nodes: &[NodeProto]) -> Result<()> {
        let op = n.op_type.as_deref().unwrap_or_default();
        if !n.domain.as_deref().unwrap_or("").is_empty() && n.domain.as_deref() != Some("ai.onnx") {
            bail!(
                "op domain `{}` is not supported",
                n.domain.as_deref().unwrap_or("")
            );
        }
        if n.output.is_empty() || n.output[0].is_empty() {
            bail!("the node has no output");
        }
        if self.swish.contains(&idx) {
            // x * Sigmoid(x): the Sigmoid was skipped, so x is the operand that exists.
            let x = n.input.iter().find(|i| self.vals.contains_key(i.as_str()));
            let x = x
                .ok_or_else(|| anyhow!("the Swish input is not produced before it"))?
                .clone();
            let shape = self.shape(&x)?;
            self.layer("Swish", name, &[&x], &[&n.output[0]]);
            return self.blob(&n.output[0], shape);
        }
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            self.val(i)?;
        }
        let a = Attrs(&n.attribute);
        if op != "Constant" && n.input.first().is_none_or(|i| i.is_empty()) {
            bail!("the node has no input");
        }
        // Constant subgraphs (shape arithmetic) are evaluated here, not run.
        if let Some(v) = self.fold(op, n, &a)? {
            self.vals.insert(n.output[0].clone(), Val::Const(v));
            return Ok(());
        }
        match op {
            "Conv" => self.conv(n, name, &a, nodes),
            "ConvTranspose" => self.deconv(n, name, &a, nodes),
            "Gemm" => self.gemm(n, name, &a, nodes),
            "MatMul" => self.matmul(n, name),
            "BatchNormalization" => self.batchnorm(n, name),
            "Relu" | "LeakyRelu" | "Sigmoid" | "HardSwish" | "HardSigmoid" | "Clip" | "Tanh" => {
                self.activation(op, n, name, &a)
            }
            "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Pow" => self.binary(op, n, name),
            _ if UNARY.iter().any(|&(o, _)| o == op) => self.unary(op, n, name),
            "MaxPool" | "AveragePool" => self.pool(op, n, name, &a),
            "GlobalAveragePool" | "GlobalMaxPool" => self.global_pool(op, n, name, nodes),
            "Concat" => self.concat(n, name, &a),
            "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => self.reshape(op, n, name, &a),
            "Transpose" => self.transpose(n, name, &a),
            "Resize" | "Upsample" => self.resize(op, n, name, &a),
            "Slice" => self.slice(n, name, &a),
            "Split" => self.split(n, name, &a),
            "Pad" => self.pad(n, name, &a),
            "Softmax" => self.softmax(n, name, &a),
            "ReduceMean" => self.reduce_mean(n, name, &a),
            "Identity" | "Dropout" => {
                let shape = self.shape(&n.input[0])?;
                self.layer("Noop", name, &[&n.input[0]], &[&n.output[0]]);
                self.blob(&n.output[0], shape)
            }
            _ => bail!("unsupported op type `{op}`"),
        }
    }

    // ------------------------------------------------------------------------------------
    // Constant folding

    /// Evaluates a node whose inputs are all constants (or `Shape` of a known blob).
    fn fold(&self, op: &str, n: &NodeProto, a: &Attrs) -> Result<Option<Const>> {
        if op == "Constant" {
            return constant_node(a).map(Some);
        }
        if op == "Shape" {
            // The shape is known at import, even of a computed blob.
            let dims: Vec<f64> = match self.val(&n.input[0])? {
                Val::Blob(s) => s.iter().map(|&d| d as f64).collect(),
                Val::Const(c) => c.dims.iter().map(|&d| d as f64).collect(),
            };
            let r = dims.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (s, e) = (clamp(a.i("start", 0)), clamp(a.i("end", r)));
            return Ok(Some(Const::vec1(dims[s..e.max(s)].to_vec(), true)));
        }
        let inputs: Vec<Option<&Const>> = n
            .input
            .iter()
            .map(|i| match self.vals.get(i) {
                Some(Val::Const(c)) => Some(c),
                _ => None,
            })
            .collect();
        let all_const = n
            .input
            .iter()
            .zip(&inputs)
            .all(|(name, c)| name.is_empty() || c.is_some());
        if !all_const || n.input.is_empty() || n.output.len() != 1 {
            return Ok(None);
        }
        let x = inputs[0].ok_or_else(|| anyhow!("first input is empty"))?;
        let input = |k: usize| inputs.get(k).copied().flatten();
        Ok(Some(match op {
            "Identity" | "Dropout" => x.clone(),
            "Cast" => {
                let to = a.i("to", DT_FLOAT as i64) as i32;
                let int = matches!(to, DT_INT64 | DT_INT32 | DT_BOOL);
                let data = x
                    .data
                    .iter()
                    .map(|&v| if int { v.trunc() } else { v as f32 as f64 })
                    .collect();
                Const {
                    dims: x.dims.clone(),
                    data,
                    int,
                }
            }
            "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Pow" => {
                let y = input(1).ok_or_else(|| anyhow!("needs two inputs"))?;
                let int = x.int && y.int;
                broadcast_const(x, y, int, |p, q| match op {
                    "Add" => p + q,
                    "Sub" => p - q,
                    "Mul" => p * q,
                    "Div" if int => {
                        if q == 0.0 {
                            0.0
                        } else {
                            (p / q).trunc()
                        }
                    }
                    "Div" => p / q,
                    "Max" => p.max(q),
                    "Min" => p.min(q),
                    _ => p.powf(q),
                })?
            }
            "Floor" | "Ceil" | "Sqrt" | "Neg" => Const {
                dims: x.dims.clone(),
                data: x
                    .data
                    .iter()
                    .map(|&v| match op {
                        "Floor" => v.floor(),
                        "Ceil" => v.ceil(),
                        "Neg" => -v,
                        _ => v.sqrt(),
                    })
                    .collect(),
                int: x.int,
            },
            "Gather" => {
                let idx = input(1).ok_or_else(|| anyhow!("needs indices"))?;
                gather_const(x, idx, a.i("axis", 0))?
            }
            "Unsqueeze" | "Squeeze" | "Reshape" | "Flatten" => {
                let dims = self.reshaped_dims(op, &x.dims, n, a)?;
                Const {
                    dims,
                    data: x.data.clone(),
                    int: x.int,
                }
            }
            "Concat" => {
                let parts: Vec<&Const> = inputs.iter().flatten().copied().collect();
                concat_const(&parts, a.i("axis", 0))?
            }
            "Slice" => {
                let (axes, starts, ends, steps) = self.slice_args(n, a, x.dims.len())?;
                slice_const(x, &axes, &starts, &ends, &steps)?
            }
            "ConstantOfShape" => {
                let dims: Vec<usize> = x
                    .ints()
                    .iter()
                    .map(|&d| usize::try_from(d).map_err(|_| anyhow!("negative dim {d}")))
                    .collect::<Result<_>>()?;
                let value = match a.get("value").and_then(|v| v.t.as_ref()) {
                    Some(t) => tensor_const(t)?,
                    None => Const::scalar(0.0, false),
                };
                let v = *value.data.first().unwrap_or(&0.0);
                Const {
                    data: vec![v; numel_computed(&dims)?],
                    dims,
                    int: value.int,
                }
            }
            _ => return Ok(None),
        }))
    }

    /// Output dims of a Reshape / Flatten / Squeeze / Unsqueeze of `dims`.
    fn reshaped_dims(
        &self,
        op: &str,
        dims: &[usize],
        n: &NodeProto,
        a: &Attrs,
    ) -> Result<Vec<usize>> {
        let r = dims.len() as i64;
        // Axes from the attribute (old opsets) or the second input (opset 13).
        let axes_of = |rank: i64| -> Result<Option<Vec<usize>>> {
            let v = match (a.ints("axes"), n.input.get(1).filter(|s| !s.is_empty())) {
                (Some(v), _) => v,
                (None, Some(name)) => self.konst(name, "axes")?.ints(),
                (None, None) => return Ok(None),
            };
            let mut out = Vec::new();
            for x in v {
                let ax = if x < 0 { x + rank } else { x };
                if !(0..rank).contains(&ax) {
                    bail!("axis {x} is out of range for rank {rank}");
                }
                out.push(ax as usize);
            }
            Ok(Some(out))
        };
        Ok(match op {
            "Flatten" => {
                let axis = a.i("axis", 1);
                let axis = if axis < 0 { axis + r } else { axis };
                if !(0..=r).contains(&axis) {
                    bail!("axis {axis} is out of range");
                }
                let (lo, hi) = dims.split_at(axis as usize);
                vec![numel(lo)?, numel(hi)?]
            }
            "Squeeze" => match axes_of(r)? {
                Some(axes) => {
                    if axes.iter().any(|&x| dims[x] != 1) {
                        bail!("squeezing an axis that is not 1 (shape {dims:?})");
                    }
                    dims.iter()
                        .enumerate()
                        .filter(|(i, _)| !axes.contains(i))
                        .map(|(_, &d)| d)
                        .collect()
                }
                None => dims.iter().copied().filter(|&d| d != 1).collect(),
            },
            "Unsqueeze" => {
                let axes = axes_of(
                    r + a.ints("axes").map_or_else(
                        || {
                            n.input
                                .get(1)
                                .and_then(|s| match self.vals.get(s) {
                                    Some(Val::Const(c)) => Some(c.data.len() as i64),
                                    _ => None,
                                })
                                .unwrap_or(0)
                        },
                        |v| v.len() as i64,
                    ),
                )?
                .ok_or_else(|| anyhow!("axes are missing"))?;
                let out_rank = dims.len() + axes.len();
                let mut src = dims.iter();
                (0..out_rank)
                    .map(|i| {
                        if axes.contains(&i) {
                            Ok(1)
                        } else {
                            src.next().copied().ok_or_else(|| anyhow!("bad axes"))
                        }
                    })
                    .collect::<Result<_>>()?
            }
            _ => {
                let spec = self
                    .konst(
                        n.input
                            .get(1)
                            .ok_or_else(|| anyhow!("needs a shape input"))?,
                        "shape",
                    )?
                    .ints();
                let allowzero = a.i("allowzero", 0) != 0;
                let mut out: Vec<usize> = Vec::new();
                let mut infer = None;
                for (i, &s) in spec.iter().enumerate() {
                    match s {
                        -1 if infer.is_none() => {
                            infer = Some(i);
                            out.push(1);
                        }
                        0 if !allowzero => out.push(
                            *dims
                                .get(i)
                                .ok_or_else(|| anyhow!("shape {spec:?}: 0 past the input rank"))?,
                        ),
                        s if s >= 0 => out.push(s as usize),
                        _ => bail!("shape {spec:?} is not valid"),
                    }
                }
                let total = numel(dims)?;
                if let Some(i) = infer {
                    let rest = numel(&out)?;
                    if rest == 0 || total % rest != 0 {
                        bail!("shape {spec:?} does not fit input {dims:?}");
                    }
                    out[i] = total / rest;
                }
                if numel(&out)? != total {
                    bail!("shape {spec:?} does not fit input {dims:?}");
                }
                out
            }
        })
    }

    /// Slice's (axes, starts, ends, steps), from inputs (opset 10+) or attributes.
    fn slice_args(&self, n: &NodeProto, a: &Attrs, rank: usize) -> Result<SliceArgs> {
        let input = |k: usize, what: &str| -> Result<Option<Vec<i64>>> {
            match n.input.get(k).filter(|s| !s.is_empty()) {
                Some(name) => Ok(Some(self.konst(name, what)?.ints())),
                None => Ok(None),
            }
        };
        let (starts, ends, axes, steps) = if n.input.len() > 1 {
            (
                input(1, "starts")?.unwrap_or_default(),
                input(2, "ends")?.unwrap_or_default(),
                input(3, "axes")?,
                input(4, "steps")?,
            )
        } else {
            (
                a.ints("starts").unwrap_or_default(),
                a.ints("ends").unwrap_or_default(),
                a.ints("axes"),
                None,
            )
        };
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if starts.len() != ends.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            bail!("starts, ends, axes and steps differ in length");
        }
        let axes = axes
            .iter()
            .map(|&x| {
                let ax = if x < 0 { x + rank as i64 } else { x };
                usize::try_from(ax)
                    .ok()
                    .filter(|&v| v < rank)
                    .ok_or_else(|| anyhow!("axis {x} is out of range for rank {rank}"))
            })
            .collect::<Result<_>>()?;
        Ok((axes, starts, ends, steps))
    }

    // ------------------------------------------------------------------------------------
    // Layers

    /// A constant as a MemoryData blob of the given ncnn rank (its dims padded in front).
    fn memory_data(&mut self, name: &str, c: &Const, onnx_rank: usize) -> Result<String> {
        let mut dims = c.dims.clone();
        if dims.len() > onnx_rank {
            bail!("constant shape {dims:?} has more dims than the tensor it combines with");
        }
        while dims.len() < onnx_rank {
            dims.insert(0, 1);
        }
        if dims[0] != 1 {
            bail!("constant shape {dims:?} has a batch dim other than 1");
        }
        let blob = self.fresh_name(name);
        let keys = ncnn_dims(&dims);
        let l = self.layer("MemoryData", &blob, &[], &[&blob]);
        set_dims(l, &keys);
        self.model.bin.raw_f32(&c.f32s());
        Ok(blob)
    }

    /// What Conv and ConvTranspose read alike: the 4-D (NCHW) input's shape, the constant
    /// 4-D weight, and the group.
    fn kernel_operands(
        &self,
        n: &NodeProto,
        a: &Attrs,
        what: &str,
    ) -> Result<(Vec<usize>, Const, usize)> {
        let x = self.shape(&n.input[0])?;
        if x.len() != 4 {
            bail!("input shape {x:?}: only 2-D {what} (NCHW) is supported");
        }
        let w = self
            .konst(
                n.input.get(1).ok_or_else(|| anyhow!("needs weights"))?,
                "weight",
            )?
            .clone();
        if w.dims.len() != 4 || w.dims.iter().any(|&d| d == 0 || d >= 1 << 20) {
            bail!("weight shape {:?} is not a 4-D kernel", w.dims);
        }
        let group = usize::try_from(a.i("group", 1))
            .ok()
            .filter(|&g| g > 0 && g < 1 << 20)
            .ok_or_else(|| anyhow!("bad group"))?;
        Ok((x, w, group))
    }

    /// Writes node `n` as a (de)convolution layer `kind` (its depthwise form when grouped),
    /// with a following BatchNormalization folded in, its weights, bias and the output
    /// blob's shape; `extra` adds the keys only `kind` has.
    fn kernel_layer(
        &mut self,
        kind: &str,
        (n, name, nodes): (&NodeProto, &str, &[NodeProto]),
        k: KernelLayer,
        extra: impl FnOnce(&mut Layer),
    ) -> Result<()> {
        let KernelLayer {
            win,
            group,
            mut weights,
            bias,
            shape: [m, oh, ow],
        } = k;
        let (out, (weights, bias)) = self.fold_into(&n.output[0], &mut weights, bias, m, nodes)?;
        let kind = if group == 1 {
            kind.to_string()
        } else {
            format!("{kind}DepthWise")
        };
        let l = self.layer(&kind, name, &[&n.input[0]], &[&out]);
        window_keys(l, m, &win)?;
        l.int(5, bias.is_some() as i32)
            .int(6, i32_of(weights.len(), "weight size")?);
        if group != 1 {
            l.int(7, i32_of(group, "group")?);
        }
        extra(l);
        self.model.bin.tagged_f32(&weights);
        if let Some(b) = bias {
            self.model.bin.raw_f32(&b);
        }
        self.blob(&out, vec![1, m, oh, ow])
    }

    fn conv(&mut self, n: &NodeProto, name: &str, a: &Attrs, nodes: &[NodeProto]) -> Result<()> {
        let (x, w, group) = self.kernel_operands(n, a, "convolution")?;
        let (m, cpg) = (w.dims[0], w.dims[1]);
        if m == 0 || cpg * group != x[1] || m % group != 0 {
            bail!(
                "weight shape {:?} with group {group} does not match input channels {}",
                w.dims,
                x[1]
            );
        }
        let win = window(a, Some([w.dims[2], w.dims[3]]), [x[2], x[3]], false)?;
        if win.k != [w.dims[2], w.dims[3]] {
            bail!(
                "kernel_shape {:?} does not match weight shape {:?}",
                win.k,
                w.dims
            );
        }
        let bias = self.bias(n, 2, m)?;
        let oh = window_out(
            x[2],
            win.k[0],
            win.s[0],
            win.d[0],
            (win.pads[0], win.pads[2]),
            false,
        )?;
        let ow = window_out(
            x[3],
            win.k[1],
            win.s[1],
            win.d[1],
            (win.pads[1], win.pads[3]),
            false,
        )?;
        let k = KernelLayer {
            win,
            group,
            weights: w.f32s(),
            bias,
            shape: [m, oh, ow],
        };
        self.kernel_layer("Convolution", (n, name, nodes), k, |_| {})
    }

    /// The bias input `k` of a layer with `m` outputs, if given.
    fn bias(&self, n: &NodeProto, k: usize, m: usize) -> Result<Option<Vec<f32>>> {
        match n.input.get(k).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(b) => {
                let b = self.konst(b, "bias")?;
                if b.data.len() != m {
                    bail!("bias has {} values, {m} expected", b.data.len());
                }
                Ok(Some(b.f32s()))
            }
        }
    }

    /// Folds a following BatchNormalization into weights laid out output channel first
    /// (`m` of them). Returns the output blob name and the new (weights, bias).
    #[allow(clippy::type_complexity)]
    fn fold_into(
        &self,
        out: &str,
        weights: &mut [f32],
        bias: Option<Vec<f32>>,
        m: usize,
        nodes: &[NodeProto],
    ) -> Result<(String, (Vec<f32>, Option<Vec<f32>>))> {
        let Some((target, (s, sh))) = self.folded_bn(out, nodes)? else {
            return Ok((out.to_string(), (weights.to_vec(), bias)));
        };
        if s.len() != m {
            bail!(
                "the folded BatchNormalization has {} channels, the layer {m}",
                s.len()
            );
        }
        let per = weights.len() / m;
        for (i, v) in weights.iter_mut().enumerate() {
            *v = (*v as f64 * s[i / per]) as f32;
        }
        let b: Vec<f32> = (0..m)
            .map(|o| (bias.as_ref().map_or(0.0, |b| b[o] as f64) * s[o] + sh[o]) as f32)
            .collect();
        Ok((target, (weights.to_vec(), Some(b))))
    }

    fn deconv(&mut self, n: &NodeProto, name: &str, a: &Attrs, nodes: &[NodeProto]) -> Result<()> {
        let (x, w, group) = self.kernel_operands(n, a, "transposed convolution")?;
        let (cin, opg, kh, kw) = (w.dims[0], w.dims[1], w.dims[2], w.dims[3]);
        if cin != x[1] || cin % group != 0 || opg == 0 {
            bail!(
                "weight shape {:?} with group {group} does not match input channels {}",
                w.dims,
                x[1]
            );
        }
        if a.get("output_shape").is_some() {
            bail!("output_shape is not supported (give pads and output_padding)");
        }
        let m = opg * group;
        let win = window(a, Some([kh, kw]), [x[2], x[3]], true)?;
        let op = match a.ints("output_padding").as_deref() {
            None => [0, 0],
            Some([h, w]) if (0..1 << 20).contains(h) && (0..1 << 20).contains(w) => {
                [*h as usize, *w as usize]
            }
            Some(v) => bail!("output_padding {v:?} is not supported"),
        };
        let size = |ax: usize| -> Result<usize> {
            let full = (x[2 + ax] - 1) * win.s[ax] + win.d[ax] * (win.k[ax] - 1) + 1 + op[ax];
            full.checked_sub(win.pads[ax] + win.pads[ax + 2])
                .filter(|&v| v > 0)
                .ok_or_else(|| anyhow!("pads remove the whole output"))
        };
        let (oh, ow) = (size(0)?, size(1)?);
        // ONNX: [in][out/group][kh][kw]; ncnn: per group [out/group][in/group][kh][kw].
        let ipg = cin / group;
        let kk = kh * kw;
        let src = w.f32s();
        let mut weights = vec![0f32; src.len()];
        for g in 0..group {
            for i in 0..ipg {
                for o in 0..opg {
                    for k in 0..kk {
                        weights[((g * opg + o) * ipg + i) * kk + k] =
                            src[((g * ipg + i) * opg + o) * kk + k];
                    }
                }
            }
        }
        let bias = self.bias(n, 2, m)?;
        let k = KernelLayer {
            win,
            group,
            weights,
            bias,
            shape: [m, oh, ow],
        };
        self.kernel_layer("Deconvolution", (n, name, nodes), k, |l| {
            if op != [0, 0] {
                l.int(18, op[1] as i32).int(19, op[0] as i32);
            }
        })
    }

    /// Gemm with a constant B: InnerProduct (alpha into the weights, beta * C the bias).
    fn gemm(&mut self, n: &NodeProto, name: &str, a: &Attrs, nodes: &[NodeProto]) -> Result<()> {
        let x = self.shape(&n.input[0])?;
        if x.len() != 2 || a.i("transA", 0) != 0 {
            bail!("input shape {x:?}: only [1, K] inputs without transA are supported");
        }
        let b = self
            .konst(n.input.get(1).ok_or_else(|| anyhow!("needs B"))?, "B")?
            .clone();
        if b.dims.len() != 2 {
            bail!("B shape {:?} is not 2-D", b.dims);
        }
        let trans_b = a.i("transB", 0) != 0;
        let (k, m) = if trans_b {
            (b.dims[1], b.dims[0])
        } else {
            (b.dims[0], b.dims[1])
        };
        if k != x[1] {
            bail!("B shape {:?} does not match input {x:?}", b.dims);
        }
        let alpha = a.f("alpha", 1.0) as f64;
        let beta = a.f("beta", 1.0) as f64;
        let mut weights: Vec<f32> = (0..m * k)
            .map(|i| {
                let (o, j) = (i / k, i % k);
                let v = if trans_b {
                    b.data[o * k + j]
                } else {
                    b.data[j * m + o]
                };
                (v * alpha) as f32
            })
            .collect();
        let bias = match n.input.get(2).filter(|s| !s.is_empty()) {
            None => None,
            Some(c) => {
                let c = self.konst(c, "C")?;
                let v: Vec<f32> = match c.data.len() {
                    1 => vec![(c.data[0] * beta) as f32; m],
                    l if l == m => c.data.iter().map(|&v| (v * beta) as f32).collect(),
                    _ => bail!("C shape {:?} does not broadcast to [1, {m}]", c.dims),
                };
                Some(v)
            }
        };
        let (out, (weights, bias)) = self.fold_into(&n.output[0], &mut weights, bias, m, nodes)?;
        self.inner_product(name, &n.input[0], &out, m, &weights, bias.as_deref())?;
        self.blob(&out, vec![1, m])
    }

    fn inner_product(
        &mut self,
        name: &str,
        x: &str,
        out: &str,
        m: usize,
        w: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<()> {
        let l = self.layer("InnerProduct", name, &[x], &[out]);
        l.int(0, i32_of(m, "outputs")?)
            .int(1, bias.is_some() as i32)
            .int(2, i32_of(w.len(), "weight size")?);
        self.model.bin.tagged_f32(w);
        if let Some(b) = bias {
            self.model.bin.raw_f32(b);
        }
        Ok(())
    }

    /// MatMul by a constant 2-D matrix: InnerProduct (row by row for [1, T, K]); anything
    /// else: ncnn MatMul, constants as MemoryData.
    fn matmul(&mut self, n: &NodeProto, name: &str) -> Result<()> {
        let (xa, xb) = (
            &n.input[0],
            n.input.get(1).ok_or_else(|| anyhow!("needs two inputs"))?,
        );
        if let (Val::Blob(s), Val::Const(b)) = (self.val(xa)?.clone(), self.val(xb)?.clone()) {
            if b.dims.len() == 2 && (s.len() == 2 || s.len() == 3) && s[s.len() - 1] == b.dims[0] {
                let (k, m) = (b.dims[0], b.dims[1]);
                let w: Vec<f32> = (0..m * k)
                    .map(|i| b.data[(i % k) * m + i / k] as f32)
                    .collect();
                self.inner_product(name, xa, &n.output[0], m, &w, None)?;
                let mut out = s.clone();
                *out.last_mut().unwrap() = m;
                return self.blob(&n.output[0], out);
            }
        }
        let mut operands = Vec::new();
        let mut shapes = Vec::new();
        for inp in [xa, xb] {
            match self.val(inp)?.clone() {
                Val::Blob(s) => {
                    operands.push(inp.clone());
                    shapes.push(s);
                }
                Val::Const(c) => shapes.push(c.dims.clone()),
            }
        }
        let rank = shapes.iter().map(Vec::len).max().unwrap();
        let (a, b) = (&shapes[0], &shapes[1]);
        if a.len() < 2 || b.len() < 2 {
            bail!("shapes {a:?} x {b:?}: 1-D operands are not supported");
        }
        let (am, ak) = (a[a.len() - 2], a[a.len() - 1]);
        let (bk, bn) = (b[b.len() - 2], b[b.len() - 1]);
        if ak != bk {
            bail!("shapes {a:?} x {b:?} do not multiply");
        }
        let lead = broadcast_dims(&a[..a.len() - 2], &b[..b.len() - 2])?;
        let mut out = lead;
        out.extend([am, bn]);
        while out.len() < rank {
            out.insert(0, 1);
        }
        let mut bottoms = Vec::new();
        for inp in [xa, xb] {
            match self.val(inp)?.clone() {
                Val::Blob(_) => bottoms.push(inp.clone()),
                Val::Const(c) => bottoms.push(self.memory_data(name, &c, rank)?),
            }
        }
        let refs: Vec<&str> = bottoms.iter().map(String::as_str).collect();
        self.layer("MatMul", name, &refs, &[&n.output[0]]);
        self.blob(&n.output[0], out)
    }

    fn batchnorm(&mut self, n: &NodeProto, name: &str) -> Result<()> {
        let x = self.shape(&n.input[0])?;
        let (s, b) = bn_affine(self, n)?;
        if s.len() != x[1] {
            bail!("{} channels, the input has {}", s.len(), x[1]);
        }
        // ncnn BatchNorm computes slope * (x - mean) / sqrt(var + eps) + bias; give it the
        // folded affine form: slope = s, mean = 0, var = 1 with eps 0, bias = shift.
        let l = self.layer("BatchNorm", name, &[&n.input[0]], &[&n.output[0]]);
        l.int(0, i32_of(s.len(), "channels")?).float(1, 0.0);
        let c = s.len();
        self.model
            .bin
            .raw_f32(&s.iter().map(|&v| v as f32).collect::<Vec<_>>());
        self.model.bin.raw_f32(&vec![0.0; c]);
        self.model.bin.raw_f32(&vec![1.0; c]);
        self.model
            .bin
            .raw_f32(&b.iter().map(|&v| v as f32).collect::<Vec<_>>());
        self.blob(&n.output[0], x)
    }

    fn activation(&mut self, op: &str, n: &NodeProto, name: &str, a: &Attrs) -> Result<()> {
        let x = self.shape(&n.input[0])?;
        let (i, o) = (n.input[0].clone(), n.output[0].clone());
        match op {
            "Relu" => {
                self.layer("ReLU", name, &[&i], &[&o]);
            }
            "LeakyRelu" => {
                let alpha = a.f("alpha", 0.01);
                self.layer("ReLU", name, &[&i], &[&o]).float(0, alpha);
            }
            "Sigmoid" => {
                self.layer("Sigmoid", name, &[&i], &[&o]);
            }
            "Tanh" => {
                self.layer("TanH", name, &[&i], &[&o]);
            }
            // ONNX HardSwish is x * HardSigmoid(x) with alpha 1/6, beta 0.5.
            "HardSwish" => {
                self.layer("HardSwish", name, &[&i], &[&o])
                    .float(0, 1.0 / 6.0)
                    .float(1, 0.5);
            }
            "HardSigmoid" => {
                let (al, be) = (a.f("alpha", 0.2), a.f("beta", 0.5));
                self.layer("HardSigmoid", name, &[&i], &[&o])
                    .float(0, al)
                    .float(1, be);
            }
            _ => {
                // Clip: bounds are attributes before opset 11, optional inputs after.
                let bound = |k: usize, attr: &str, default: f32| -> Result<f32> {
                    match n.input.get(k).filter(|s| !s.is_empty()) {
                        Some(s) => {
                            let c = self.konst(s, attr)?;
                            c.data
                                .first()
                                .map(|&v| v as f32)
                                .ok_or_else(|| anyhow!("{attr} is empty"))
                        }
                        None => Ok(a.f(attr, default)),
                    }
                };
                let lo = bound(1, "min", -f32::MAX)?;
                let hi = bound(2, "max", f32::MAX)?;
                if lo == 0.0 && hi == f32::MAX {
                    self.layer("ReLU", name, &[&i], &[&o]);
                } else {
                    self.layer("Clip", name, &[&i], &[&o])
                        .float(0, lo)
                        .float(1, hi);
                }
            }
        }
        self.blob(&o, x)
    }

    /// Add / Sub / Mul / Div / Max / Min / Pow with numpy broadcasting: a scalar constant
    /// goes into the layer (with_scalar), another constant becomes a MemoryData, a blob of
    /// lower rank is reshaped to the other's rank first (ncnn's own rank rules differ).
    fn binary(&mut self, op: &str, n: &NodeProto, name: &str) -> Result<()> {
        if n.input.len() != 2 {
            bail!("needs two inputs");
        }
        let code = ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"]
            .iter()
            .position(|&o| o == op)
            .unwrap() as i32;
        let (x, y) = (n.input[0].clone(), n.input[1].clone());
        let (vx, vy) = (self.val(&x)?.clone(), self.val(&y)?.clone());
        let out = &n.output[0];
        match (&vx, &vy) {
            (Val::Blob(s), Val::Const(c)) | (Val::Const(c), Val::Blob(s))
                if c.data.len() == 1 && c.dims.len() <= s.len() =>
            {
                let blob = if matches!(vx, Val::Blob(_)) { &x } else { &y };
                // Constant first: the reversed op (RSub 7, RDiv 8, RPow 9).
                let code = match (matches!(vx, Val::Const(_)), code) {
                    (true, 1) => 7,
                    (true, 3) => 8,
                    (true, 6) => 9,
                    (_, k) => k,
                };
                let shape = s.clone();
                self.layer("BinaryOp", name, &[blob], &[out])
                    .int(0, code)
                    .int(1, 1)
                    .float(2, c.data[0] as f32);
                self.blob(out, shape)
            }
            _ => {
                let dims = |v: &Val| match v {
                    Val::Blob(s) => s.clone(),
                    Val::Const(c) => c.dims.clone(),
                };
                let (dx, dy) = (dims(&vx), dims(&vy));
                let rank = dx.len().max(dy.len());
                let pad = |d: &[usize]| {
                    let mut d = d.to_vec();
                    while d.len() < rank {
                        d.insert(0, 1);
                    }
                    d
                };
                let out_shape = broadcast_dims(&dx, &dy)?;
                let mut bottoms = Vec::new();
                for (name_in, v) in [(&x, &vx), (&y, &vy)] {
                    bottoms.push(match v {
                        Val::Const(c) => self.memory_data(name, c, rank)?,
                        Val::Blob(s) if s.len() < rank => {
                            let to = pad(s);
                            let r = self.fresh_name(name_in);
                            let l = self.layer("Reshape", &r, &[name_in], &[&r]);
                            set_dims(l, &ncnn_dims(&to));
                            r
                        }
                        Val::Blob(_) => name_in.clone(),
                    });
                }
                self.layer("BinaryOp", name, &[&bottoms[0], &bottoms[1]], &[out])
                    .int(0, code);
                self.blob(out, out_shape)
            }
        }
    }

    /// Elementwise math on a blob: ncnn UnaryOp.
    fn unary(&mut self, op: &str, n: &NodeProto, name: &str) -> Result<()> {
        let x = self.shape(&n.input[0])?;
        let code = UNARY.iter().find(|&&(o, _)| o == op).expect("listed").1;
        self.layer("UnaryOp", name, &[&n.input[0]], &[&n.output[0]])
            .int(0, code);
        self.blob(&n.output[0], x)
    }

    fn pool(&mut self, op: &str, n: &NodeProto, name: &str, a: &Attrs) -> Result<()> {
        let x = self.shape(&n.input[0])?;
        if x.len() != 4 {
            bail!("input shape {x:?}: only 2-D pooling is supported");
        }
        if n.output.len() > 1 && n.output[1..].iter().any(|o| !o.is_empty()) {
            bail!("the Indices output is not supported");
        }
        let win = window(a, None, [x[2], x[3]], false)?;
        if win.d != [1, 1] {
            bail!("dilated pooling is not supported");
        }
        let ceil = a.i("ceil_mode", 0) != 0;
        let oh = window_out(
            x[2],
            win.k[0],
            win.s[0],
            1,
            (win.pads[0], win.pads[2]),
            ceil,
        )?;
        let ow = window_out(
            x[3],
            win.k[1],
            win.s[1],
            1,
            (win.pads[1], win.pads[3]),
            ceil,
        )?;
        let avg = op == "AveragePool";
        let l = self.layer("Pooling", name, &[&n.input[0]], &[&n.output[0]]);
        l.int(0, avg as i32)
            .int(1, win.k[1] as i32)
            .int(11, win.k[0] as i32)
            .int(2, win.s[1] as i32)
            .int(12, win.s[0] as i32)
            .int(3, win.pads[1] as i32)
            .int(13, win.pads[0] as i32)
            .int(14, win.pads[3] as i32)
            .int(15, win.pads[2] as i32)
            // ncnn pad_mode 0 ("full") rounds the output size up, 1 ("valid") down.
            .int(5, if ceil { 0 } else { 1 });
        if avg && a.i("count_include_pad", 0) != 0 {
            l.int(6, 1);
        }
        self.blob(&n.output[0], vec![1, x[1], oh, ow])
    }

    /// Global pooling; ncnn's output is 1-D (c), so unless only a Flatten / Reshape reads
    /// it, a Reshape restores the [c, 1, 1] blob ONNX has.
    fn global_pool(
        &mut self,
        op: &str,
        n: &NodeProto,
        name: &str,
        nodes: &[NodeProto],
    ) -> Result<()> {
        let x = self.shape(&n.input[0])?;
        if x.len() != 4 {
            bail!("input shape {x:?}: only NCHW inputs are supported");
        }
        let out = n.output[0].clone();
        let mut readers = nodes.iter().filter(|m| m.input.contains(&out)).peekable();
        let only_flatten = readers.peek().is_some()
            && readers.all(|m| {
                matches!(m.op_type.as_deref(), Some("Flatten" | "Reshape")) && m.input[0] == out
            })
            && self.readers.get(&out) == Some(&1);
        let pooled = if only_flatten {
            out.clone()
        } else {
            self.fresh_name(&out)
        };
        self.layer("Pooling", name, &[&n.input[0]], &[&pooled])
            .int(0, (op == "GlobalAveragePool") as i32)
            .int(4, 1);
        if !only_flatten {
            let r = format!("{name}_reshape");
            let l = self.layer("Reshape", &r, &[&pooled], &[&out]);
            set_dims(l, &ncnn_dims(&[1, x[1], 1, 1]));
        }
        self.vals.insert(out, Val::Blob(vec![1, x[1], 1, 1]));
        Ok(())
    }

    fn axis(&self, a: i64, rank: usize) -> Result<usize> {
        let ax = if a < 0 { a + rank as i64 } else { a };
        match ax {
            0 => bail!("operating on the batch axis is not supported"),
            x if x > 0 && (x as usize) < rank => Ok(x as usize),
            _ => bail!("axis {a} is out of range for rank {rank}"),
        }
    }

    fn concat(&mut self, n: &NodeProto, name: &str, a: &Attrs) -> Result<()> {
        let shapes: Vec<Vec<usize>> = n
            .input
            .iter()
            .map(|i| match self.val(i) {
                Ok(Val::Blob(s)) => Ok(s.clone()),
                Ok(Val::Const(c)) => Ok(c.dims.clone()),
                Err(e) => Err(e),
            })
            .collect::<Result<_>>()?;
        let Some(rank) = shapes.first().map(Vec::len) else {
            bail!("needs at least one input");
        };
        let axis = self.axis(a.i("axis", 1), rank)?;
        let mut out = shapes[0].clone();
        out[axis] = 0;
        for s in &shapes {
            if s.len() != rank || (0..rank).any(|i| i != axis && s[i] != shapes[0][i]) {
                bail!("input shapes {shapes:?} do not concatenate on axis {axis}");
            }
            out[axis] += s[axis];
        }
        let mut bottoms = Vec::new();
        for i in &n.input {
            bottoms.push(match self.val(i)?.clone() {
                Val::Const(c) => self.memory_data(name, &c, rank)?,
                Val::Blob(_) => i.clone(),
            });
        }
        let refs: Vec<&str> = bottoms.iter().map(String::as_str).collect();
        self.layer("Concat", name, &refs, &[&n.output[0]])
            .int(0, axis as i32 - 1);
        self.blob(&n.output[0], out)
    }

    /// Reshape, Flatten, Squeeze, Unsqueeze of a blob: one ncnn Reshape (Flatten when the
    /// result is [1, N]).
    fn reshape(&mut self, op: &str, n: &NodeProto, name: &str, a: &Attrs) -> Result<()> {
        let x = self.shape(&n.input[0])?;
        let out = self.reshaped_dims(op, &x, n, a)?;
        if out.len() < 2 || out[0] != 1 {
            bail!("result shape {out:?}: the batch dim must stay first and 1");
        }
        if out.len() == 2 {
            self.layer("Flatten", name, &[&n.input[0]], &[&n.output[0]]);
        } else {
            let l = self.layer("Reshape", name, &[&n.input[0]], &[&n.output[0]]);
            set_dims(l, &ncnn_dims(&out));
        }
        self.blob(&n.output[0], out)
    }

    fn transpose(&mut self, n: &NodeProto, name: &str, a: &Attrs) -> Result<()> {
        let x = self.shape(&n.input[0])?;
        let r = x.len();
        let perm: Vec<usize> = match a.ints("perm") {
            Some(p) => p.iter().map(|&v| v as usize).collect(),
            None => (0..r).rev().collect(),
        };
        let mut sorted = perm.clone();
        sorted.sort_unstable();
        if sorted != (0..r).collect::<Vec<_>>() {
            bail!("perm {perm:?} is not a permutation of rank {r}");
        }
        if perm[0] != 0 {
            bail!("perm {perm:?} moves the batch axis");
        }
        let out: Vec<usize> = perm.iter().map(|&p| x[p]).collect();
        // ncnn slots: 0 w, 1 h, 2 d, 3 c; ONNX axis a of rank r is slot r - 1 - a, with
        // the slot for c being 3 on 4-D blobs and 2 on 3-D ones (as ncnn numbers them).
        let slot = |ax: usize| r - 1 - ax;
        // For output slot s (w first) the input slot it takes.
        let takes: Vec<usize> = (0..r - 1).map(|s| slot(perm[r - 1 - s])).collect();
        let order = match r {
            2 => 0,
            3 => [[0, 1], [1, 0]]
                .iter()
                .position(|o| o[..] == takes[..])
                .unwrap(),
            4 => PERMUTE_3D.iter().position(|o| o[..] == takes[..]).unwrap(),
            5 => PERMUTE_4D.iter().position(|o| o[..] == takes[..]).unwrap(),
            _ => bail!("rank {r} is not supported"),
        };
        self.layer("Permute", name, &[&n.input[0]], &[&n.output[0]])
            .int(0, order as i32);
        self.blob(&n.output[0], out)
    }

    /// Resize / Upsample of H and W: Interp with the output size.
    fn resize(&mut self, op: &str, n: &NodeProto, name: &str, a: &Attrs) -> Result<()> {
        let x = self.shape(&n.input[0])?;
        if x.len() != 4 {
            bail!("input shape {x:?}: only NCHW inputs are supported");
        }
        let get =
            |k: usize| -> Result<Option<Const>> {
                match n.input.get(k).filter(|s| !s.is_empty()) {
                    Some(s) => Ok(Some(self.konst(s, "scales / sizes")?.clone())
                        .filter(|c| !c.data.is_empty())),
                    None => Ok(None),
                }
            };
        let (scales, sizes) = if op == "Upsample" || self.opset < 11 {
            match get(1)? {
                Some(s) => (Some(s), None),
                None => (
                    a.get("scales")
                        .map(|s| Const::vec1(s.floats.iter().map(|&v| v as f64).collect(), false)),
                    None,
                ),
            }
        } else {
            (get(2)?, get(3)?)
        };
        let (oh, ow) = match (sizes, scales) {
            (Some(s), _) if s.data.len() == 4 => (s.data[2] as usize, s.data[3] as usize),
            (None, Some(s)) if s.data.len() == 4 => {
                if s.data[0] != 1.0 || s.data[1] != 1.0 {
                    bail!("scales {:?}: only H and W can be resized", s.data);
                }
                (
                    (x[2] as f64 * s.data[2]).floor() as usize,
                    (x[3] as f64 * s.data[3]).floor() as usize,
                )
            }
            _ => bail!("needs 4 scales or 4 sizes"),
        };
        if oh == 0 || ow == 0 || oh > 1 << 16 || ow > 1 << 16 {
            bail!("output size {oh}x{ow} is not valid");
        }
        let mode = a.s("mode", "nearest");
        let ctm = a.s("coordinate_transformation_mode", "half_pixel");
        let (kind, align) = match mode.as_str() {
            // ncnn's nearest takes floor(dst * in / out): the same pixels as ONNX's
            // modes for integer up-scaling.
            "nearest" => {
                if (oh % x[2] != 0 || ow % x[3] != 0)
                    && (ctm != "asymmetric" || a.s("nearest_mode", "round_prefer_floor") != "floor")
                {
                    bail!("nearest resize by a non-integer factor needs asymmetric / floor");
                }
                (1, 0)
            }
            "linear" | "bilinear" => match ctm.as_str() {
                "half_pixel" | "pytorch_half_pixel" => (2, 0),
                "align_corners" => (2, 1),
                "asymmetric" if op == "Upsample" || self.opset < 11 => (2, 0),
                other => bail!(
                    "linear resize with coordinate_transformation_mode {other} is not supported"
                ),
            },
            other => bail!("resize mode {other} is not supported"),
        };
        let l = self.layer("Interp", name, &[&n.input[0]], &[&n.output[0]]);
        l.int(0, kind).int(3, oh as i32).int(4, ow as i32);
        if align == 1 {
            l.int(6, 1);
        }
        self.blob(&n.output[0], vec![1, x[1], oh, ow])
    }

    /// Slice with step 1: Crop in its starts / ends / axes form (ends clamped here).
    fn slice(&mut self, n: &NodeProto, name: &str, a: &Attrs) -> Result<()> {
        let x = self.shape(&n.input[0])?;
        let (axes, starts, ends, steps) = self.slice_args(n, a, x.len())?;
        let mut out = x.clone();
        let (mut s9, mut e10, mut a11) = (vec![], vec![], vec![]);
        for i in 0..axes.len() {
            if steps[i] != 1 {
                bail!("steps other than 1 are not supported");
            }
            let (s, e) = clamp_range(starts[i], ends[i], x[axes[i]]);
            if e <= s {
                bail!("the slice on axis {} is empty", axes[i]);
            }
            if axes[i] == 0 {
                if (s, e) != (0, 1) {
                    bail!("slicing the batch axis is not supported");
                }
                continue;
            }
            out[axes[i]] = e - s;
            s9.push(s as i32);
            e10.push(e as i32);
            a11.push(axes[i] as i32 - 1);
        }
        if s9.is_empty() {
            self.layer("Noop", name, &[&n.input[0]], &[&n.output[0]]);
        } else {
            self.layer("Crop", name, &[&n.input[0]], &[&n.output[0]])
                .ints(9, &s9)
                .ints(10, &e10)
                .ints(11, &a11);
        }
        self.blob(&n.output[0], out)
    }

    /// Split into parts along an axis: ncnn Slice.
    fn split(&mut self, n: &NodeProto, name: &str, a: &Attrs) -> Result<()> {
        let x = self.shape(&n.input[0])?;
        let axis = self.axis(a.i("axis", 0), x.len())?;
        let k = n.output.len();
        let parts: Vec<usize> = match (a.ints("split"), n.input.get(1).filter(|s| !s.is_empty())) {
            (Some(v), _) => v.iter().map(|&p| p.max(0) as usize).collect(),
            (None, Some(s)) => self
                .konst(s, "split")?
                .ints()
                .iter()
                .map(|&p| p.max(0) as usize)
                .collect(),
            (None, None) => {
                if x[axis] % k != 0 {
                    bail!("{} does not split into {k} equal parts", x[axis]);
                }
                vec![x[axis] / k; k]
            }
        };
        if parts.len() != k
            || parts.iter().try_fold(0usize, |a, &p| a.checked_add(p)) != Some(x[axis])
            || parts.contains(&0)
        {
            bail!(
                "split {parts:?} does not match {k} outputs of axis size {}",
                x[axis]
            );
        }
        let tops: Vec<&str> = n.output.iter().map(String::as_str).collect();
        let sizes: Vec<i32> = parts.iter().map(|&p| p as i32).collect();
        self.layer("Slice", name, &[&n.input[0]], &tops)
            .ints(0, &sizes)
            .int(1, axis as i32 - 1);
        for (o, p) in n.output.iter().zip(parts) {
            let mut s = x.clone();
            s[axis] = p;
            self.blob(o, s)?;
        }
        Ok(())
    }

    fn pad(&mut self, n: &NodeProto, name: &str, a: &Attrs) -> Result<()> {
        let x = self.shape(&n.input[0])?;
        let r = x.len();
        let pads = match (a.ints("pads"), n.input.get(1).filter(|s| !s.is_empty())) {
            (_, Some(p)) => self.konst(p, "pads")?.ints(),
            (Some(p), None) => p,
            (None, None) => bail!("pads are missing"),
        };
        if n.input.get(3).is_some_and(|s| !s.is_empty()) {
            bail!("the axes input is not supported");
        }
        if pads.len() != 2 * r || pads.iter().any(|&p| !(0..1 << 20).contains(&p)) {
            bail!("pads {pads:?}: {} non-negative values expected", 2 * r);
        }
        if pads[0] != 0 || pads[r] != 0 {
            bail!("padding the batch axis is not supported");
        }
        let value = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(v) => self
                .konst(v, "constant_value")?
                .data
                .first()
                .copied()
                .unwrap_or(0.0) as f32,
            None => a.f("value", 0.0),
        };
        let mode = match a.s("mode", "constant").as_str() {
            "constant" => 0,
            "edge" => 1,
            "reflect" => 2,
            m => bail!("pad mode {m} is not supported"),
        };
        let mut out = x.clone();
        for i in 0..r {
            out[i] += (pads[i] + pads[i + r]) as usize;
        }
        // ONNX axes from the last: w -> left/right (2, 3), h -> top/bottom (0, 1),
        // c (or d) -> front/behind (7, 8).
        let keys = [(2, 3), (0, 1), (7, 8)];
        let l = self.layer("Padding", name, &[&n.input[0]], &[&n.output[0]]);
        for (j, ax) in (1..r).rev().enumerate() {
            if j >= keys.len() {
                if pads[ax] != 0 || pads[ax + r] != 0 {
                    bail!("padding axis {ax} of a rank-{r} tensor is not supported");
                }
                continue;
            }
            l.int(keys[j].0, pads[ax] as i32)
                .int(keys[j].1, pads[ax + r] as i32);
        }
        l.int(4, mode).float(5, value);
        self.blob(&n.output[0], out)
    }

    fn softmax(&mut self, n: &NodeProto, name: &str, a: &Attrs) -> Result<()> {
        let x = self.shape(&n.input[0])?;
        let default = if self.opset >= 13 { -1 } else { 1 };
        let axis = self.axis(a.i("axis", default), x.len())?;
        // Before opset 13 softmax runs over all axes from `axis` on: one ncnn axis only
        // when the ones after it are 1.
        if self.opset < 13 && x[axis + 1..].iter().any(|&d| d != 1) {
            bail!("softmax over several axes (opset < 13, axis {axis} of {x:?}) is not supported");
        }
        self.layer("Softmax", name, &[&n.input[0]], &[&n.output[0]])
            .int(0, axis as i32 - 1)
            .int(1, 1);
        self.blob(&n.output[0], x)
    }

    fn reduce_mean(&mut self, n: &NodeProto, name: &str, a: &Attrs) -> Result<()> {
        let x = self.shape(&n.input[0])?;
        let r = x.len();
        let axes: Vec<i64> = match (a.ints("axes"), n.input.get(1).filter(|s| !s.is_empty())) {
            (Some(v), _) => v,
            (None, Some(s)) => self.konst(s, "axes")?.ints(),
            (None, None) => (1..r as i64).collect(),
        };
        let axes: Vec<usize> = axes
            .iter()
            .map(|&v| self.axis(v, r))
            .collect::<Result<_>>()?;
        let keep = a.i("keepdims", 1) != 0;
        let out: Vec<usize> = (0..r)
            .filter_map(|i| match (axes.contains(&i), keep) {
                (true, true) => Some(1),
                (true, false) => None,
                _ => Some(x[i]),
            })
            .collect();
        let ncnn_axes: Vec<i32> = axes.iter().map(|&v| v as i32 - 1).collect();
        self.layer("Reduction", name, &[&n.input[0]], &[&n.output[0]])
            .int(0, 3)
            .int(1, 0)
            .float(2, 1.0)
            .ints(3, &ncnn_axes)
            .int(4, keep as i32)
            .int(5, 1);
        self.blob(&n.output[0], out)
    }
}

/// ONNX elementwise ops and their ncnn UnaryOp op_type.
const UNARY: [(&str, i32); 19] = [
    ("Abs", 0),
    ("Neg", 1),
    ("Floor", 2),
    ("Ceil", 3),
    ("Sqrt", 5),
    ("Exp", 7),
    ("Log", 8),
    ("Sin", 9),
    ("Cos", 10),
    ("Tan", 11),
    ("Asin", 12),
    ("Acos", 13),
    ("Atan", 14),
    ("Reciprocal", 15),
    ("Round", 18),
    ("Sign", 20),
    ("Sinh", 22),
    ("Cosh", 24),
    ("Atanh", 26),
];

const PERMUTE_3D: [[usize; 3]; 6] = [
    [0, 1, 2],
    [1, 0, 2],
    [0, 2, 1],
    [2, 0, 1],
    [1, 2, 0],
    [2, 1, 0],
];
/// ncnn's 24 4-D orders, as (w, h, d, c) slots 0..3.
const PERMUTE_4D: [[usize; 4]; 24] = [
    [0, 1, 2, 3],
    [1, 0, 2, 3],
    [0, 2, 1, 3],
    [2, 0, 1, 3],
    [1, 2, 0, 3],
    [2, 1, 0, 3],
    [0, 1, 3, 2],
    [1, 0, 3, 2],
    [0, 3, 1, 2],
    [3, 0, 1, 2],
    [1, 3, 0, 2],
    [3, 1, 0, 2],
    [0, 2, 3, 1],
    [2, 0, 3, 1],
    [0, 3, 2, 1],
    [3, 0, 2, 1],
    [2, 3, 0, 1],
    [3, 2, 0, 1],
    [1, 2, 3, 0],
    [2, 1, 3, 0],
    [1, 3, 2, 0],
    [3, 1, 2, 0],
    [2, 3, 1, 0],
    [3, 2, 1, 0],
];

/// BatchNormalization as y = x * s + b per channel.
fn bn_affine(c: &Converter, n: &NodeProto) -> Result<Affine> {
    if n.input.len() < 5 {
        bail!("needs scale, B, mean and var inputs");
    }
    let get =
        |k: usize, what: &str| -> Result<Vec<f64>> { Ok(c.konst(&n.input[k], what)?.data.clone()) };
    let (sc, b, mean, var) = (
        get(1, "scale")?,
        get(2, "B")?,
        get(3, "mean")?,
        get(4, "var")?,
    );
    let ch = sc.len();
    if b.len() != ch || mean.len() != ch || var.len() != ch {
        bail!("scale, B, mean and var differ in length");
    }
    let eps = Attrs(&n.attribute).f("epsilon", 1e-5) as f64;
    let s: Vec<f64> = (0..ch).map(|i| sc[i] / (var[i] + eps).sqrt()).collect();
    let shift = (0..ch).map(|i| b[i] - mean[i] * s[i]).collect();
    Ok((s, shift))
}

/// A Constant node's value.
fn constant_node(a: &Attrs) -> Result<Const> {
    if let Some(t) = a.get("value").and_then(|v| v.t.as_ref()) {
        return tensor_const(t);
    }
    if let Some(v) = a.get("value_float").and_then(|v| v.f) {
        return Ok(Const::scalar(v as f64, false));
    }
    if let Some(v) = a.get("value_int").and_then(|v| v.i) {
        return Ok(Const::scalar(v as f64, true));
    }
    if let Some(v) = a.get("value_floats") {
        return Ok(Const::vec1(
            v.floats.iter().map(|&f| f as f64).collect(),
            false,
        ));
    }
    if let Some(v) = a.get("value_ints") {
        return Ok(Const::vec1(
            v.ints.iter().map(|&f| f as f64).collect(),
            true,
        ));
    }
    bail!("a Constant without a supported value attribute")
}

/// numpy broadcasting of two shapes.
fn broadcast_dims(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let at = |d: &[usize], i: usize| {
        if i + d.len() < r {
            1
        } else {
            d[i + d.len() - r]
        }
    };
    (0..r)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            _ => bail!("shapes {a:?} and {b:?} do not broadcast"),
        })
        .collect()
}

fn broadcast_const(x: &Const, y: &Const, int: bool, f: impl Fn(f64, f64) -> f64) -> Result<Const> {
    let dims = broadcast_dims(&x.dims, &y.dims)?;
    let n = numel_computed(&dims)?;
    let r = dims.len();
    let index = |c: &Const, mut flat: usize| -> usize {
        // Row-major index into c for output position `flat`.
        let mut idx = 0;
        let mut stride = 1;
        for i in (0..r).rev() {
            let coord = flat % dims[i];
            flat /= dims[i];
            let k = i as isize - (r - c.dims.len()) as isize;
            if k >= 0 {
                let d = c.dims[k as usize];
                idx += (if d == 1 { 0 } else { coord }) * stride;
                stride *= d;
            }
        }
        idx
    };
    let data = (0..n)
        .map(|i| f(x.data[index(x, i)], y.data[index(y, i)]))
        .collect();
    Ok(Const { dims, data, int })
}

fn gather_const(x: &Const, idx: &Const, axis: i64) -> Result<Const> {
    let r = x.dims.len();
    let ax = if axis < 0 { axis + r as i64 } else { axis };
    if r == 0 || !(0..r as i64).contains(&ax) {
        bail!("axis {axis} is out of range for rank {r}");
    }
    let ax = ax as usize;
    let outer: usize = x.dims[..ax].iter().product();
    let inner: usize = x.dims[ax + 1..].iter().product();
    let len = x.dims[ax];
    let mut data = Vec::new();
    for o in 0..outer {
        for &i in &idx.data {
            let i = if i < 0.0 { i + len as f64 } else { i };
            if !(0.0..len as f64).contains(&i) {
                bail!("index {i} is out of range 0..{len}");
            }
            let base = (o * len + i as usize) * inner;
            data.extend_from_slice(&x.data[base..base + inner]);
        }
    }
    let mut dims = x.dims[..ax].to_vec();
    dims.extend(&idx.dims);
    dims.extend(&x.dims[ax + 1..]);
    Ok(Const {
        dims,
        data,
        int: x.int,
    })
}

fn concat_const(parts: &[&Const], axis: i64) -> Result<Const> {
    let r = parts[0].dims.len();
    let ax = if axis < 0 { axis + r as i64 } else { axis };
    if r == 0 || !(0..r as i64).contains(&ax) {
        bail!("axis {axis} is out of range for rank {r}");
    }
    let ax = ax as usize;
    let outer: usize = parts[0].dims[..ax].iter().product();
    let mut dims = parts[0].dims.clone();
    dims[ax] = 0;
    for p in parts {
        if p.dims.len() != r || (0..r).any(|i| i != ax && p.dims[i] != parts[0].dims[i]) {
            bail!("constant shapes do not concatenate");
        }
        dims[ax] += p.dims[ax];
    }
    let mut data = Vec::new();
    for o in 0..outer {
        for p in parts {
            let chunk = p.data.len() / outer.max(1);
            data.extend_from_slice(&p.data[o * chunk..(o + 1) * chunk]);
        }
    }
    Ok(Const {
        dims,
        data,
        int: parts.iter().all(|p| p.int),
    })
}

/// ONNX's start / end clamping for step 1.
fn clamp_range(start: i64, end: i64, len: usize) -> (usize, usize) {
    let len = len as i64;
    let fix = |v: i64| (if v < 0 { v + len } else { v }).clamp(0, len) as usize;
    (fix(start), fix(end))
}

fn slice_const(
    x: &Const,
    axes: &[usize],
    starts: &[i64],
    ends: &[i64],
    steps: &[i64],
) -> Result<Const> {
    let mut ranges: Vec<(usize, usize)> = x.dims.iter().map(|&d| (0, d)).collect();
    for i in 0..axes.len() {
        if steps[i] != 1 {
            bail!("steps other than 1 are not supported");
        }
        let (s, e) = clamp_range(starts[i], ends[i], x.dims[axes[i]]);
        ranges[axes[i]] = (s, e.max(s));
    }
    let dims: Vec<usize> = ranges.iter().map(|(s, e)| e - s).collect();
    let n = numel_computed(&dims)?;
    let r = dims.len();
    let data = (0..n)
        .map(|mut flat| {
            let mut idx = 0;
            let mut stride = 1;
            for i in (0..r).rev() {
                let coord = flat % dims[i] + ranges[i].0;
                flat /= dims[i];
                idx += coord * stride;
                stride *= x.dims[i];
            }
            x.data[idx]
        })
        .collect();
    Ok(Const {
        dims,
        data,
        int: x.int,
    })
}

/// ncnn (w, h, d, c) of an ONNX shape (batch first); 0 where the blob has no such axis.
fn ncnn_dims(shape: &[usize]) -> [usize; 4] {
    match shape {
        [_, w] => [*w, 0, 0, 0],
        [_, h, w] => [*w, *h, 0, 0],
        [_, c, h, w] => [*w, *h, 0, *c],
        [_, c, d, h, w] => [*w, *h, *d, *c],
        _ => [0; 4],
    }
}

/// Writes (w, h, d, c) as keys 0, 1, 11, 2 (Input, Reshape and MemoryData share them).
fn set_dims(l: &mut Layer, d: &[usize; 4]) {
    let [w, h, dd, c] = d.map(|v| v as i32);
    l.int(0, w);
    if h > 0 {
        l.int(1, h);
    }
    if dd > 0 {
        l.int(11, dd);
    }
    if c > 0 {
        l.int(2, c);
    }
}

/// Convolution-family keys 0..4, 11..16 for `m` outputs.
fn window_keys(l: &mut Layer, m: usize, w: &Window) -> Result<()> {
    l.int(0, i32_of(m, "outputs")?)
        .int(1, w.k[1] as i32)
        .int(11, w.k[0] as i32)
        .int(2, w.d[1] as i32)
        .int(12, w.d[0] as i32)
        .int(3, w.s[1] as i32)
        .int(13, w.s[0] as i32)
        // Asymmetric pads go to the layer's own right / bottom keys.
        .int(4, i32_of(w.pads[1], "pad")?)
        .int(15, i32_of(w.pads[3], "pad")?)
        .int(14, i32_of(w.pads[0], "pad")?)
        .int(16, i32_of(w.pads[2], "pad")?);
    Ok(())
}
