//! Shape inference and the memory plan: every blob gets a place in one arena, sized at load
//! from blob lifetimes. Aliasing ops share their input's memory; in-place ops reuse it when
//! nothing reads it later; otherwise the planner inserts a copy. A concat along the
//! outermost axis costs nothing: its inputs' producers write into their parts of its output
//! ([`joined_inputs`]) and its step does not run.

use crate::error::{invalid, Error, LayerResult, Result};
use crate::graph::Graph;
use crate::ops::{Op, Storage};
use crate::tensor::Shape;

/// Arena placement granule in floats (64 bytes): every blob starts cache-line aligned.
pub const ALIGN_FLOATS: usize = 16;
/// Largest arena or per-worker scratch accepted at load, in floats (4 GiB).
pub const MAX_PLAN_FLOATS: usize = crate::tensor::MAX_ELEMENTS;
/// Most inputs or outputs one layer may have (the runner keeps them in fixed arrays).
pub const MAX_IO: usize = 64;

#[derive(Clone, Copy, Debug)]
pub struct Buffer {
    pub offset: usize,
    pub len: usize,
    first: usize,
    last: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub layer: usize,
    /// In-place op whose input must survive: copy input buffer -> output buffer first.
    pub copy_first: bool,
    /// The op's storage as planned. The runner goes by this, not by asking the op again:
    /// `Op` is a public trait, and an op answering differently at run time must not make
    /// the runner hand it overlapping input and output slices.
    pub storage: Storage,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub shapes: Vec<Shape>,
    /// Blobs holding int8 values (4 per arena float); the rest are fp32.
    pub int8: Vec<bool>,
    pub buffer_of: Vec<usize>,
    /// Where each blob starts inside its buffer, in floats (0 but for joined concat inputs).
    pub offset_in_buffer: Vec<usize>,
    pub buffers: Vec<Buffer>,
    pub steps: Vec<Step>,
    /// Arena size in floats.
    pub arena_len: usize,
    /// Scratch floats per worker.
    pub scratch_len: usize,
}

impl Plan {
    /// Arena offset and length (floats) of a blob.
    pub fn place(&self, blob: usize) -> (usize, usize) {
        (
            self.buffers[self.buffer_of[blob]].offset + self.offset_in_buffer[blob],
            storage_floats(self.shapes[blob], self.int8[blob]),
        )
    }
}

/// Arena floats a blob occupies: int8 blobs pack four values per float.
pub fn storage_floats(shape: Shape, int8: bool) -> usize {
    if int8 {
        shape.len().div_ceil(4)
    } else {
        shape.len()
    }
}

pub struct PlanOptions<'a> {
    pub input_shapes: &'a [(String, Shape)],
    /// Keep every blob readable after `run` (host tools); otherwise memory is reused.
    pub keep_all: bool,
    /// Blobs that hold int8 values (empty: none).
    pub int8: &'a [bool],
}

fn layer_err(g: &Graph, li: usize, e: impl std::fmt::Display) -> Error {
    let l = &g.layers[li];
    Error::Layer {
        layer: l.name.clone(),
        kind: l.kind.clone(),
        msg: e.to_string(),
    }
}

pub fn infer_shapes(
    g: &Graph,
    ops: &[Box<dyn Op>],
    input_shapes: &[(String, Shape)],
) -> Result<Vec<Shape>> {
    for (name, _) in input_shapes {
        match g.blob_id(name) {
            Some(b) if g.layers[g.blobs[b].producer].kind == "Input" => {}
            _ => {
                return Err(Error::Input {
                    msg: format!("`{name}` is not an input blob of this model"),
                })
            }
        }
    }
    let mut shapes = vec![Shape::default(); g.blobs.len()];
    for &li in &g.order {
        let outs = &g.outputs[li];
        let given = outs
            .first()
            .and_then(|&b| input_shapes.iter().find(|(n, _)| *n == g.blobs[b].name));
        let result: LayerResult<Vec<Shape>> = match given {
            Some((_, s)) if g.layers[li].kind == "Input" => Ok(vec![*s]),
            _ => {
                let ins: Vec<Shape> = g.inputs[li].iter().map(|&b| shapes[b]).collect();
                ops[li].output_shapes(&ins)
            }
        };
        let mut got = result.map_err(|e| layer_err(g, li, e))?;
        if got.len() == 1 && outs.len() > 1 && ops[li].storage() == Storage::Alias {
            got = vec![got[0]; outs.len()];
        }
        if got.len() > outs.len() && got.len() - outs.len() <= ops[li].optional_outputs() {
            got.truncate(outs.len());
        }
        if got.len() != outs.len() {
            return Err(layer_err(
                g,
                li,
                format!(
                    "produces {} blobs but the param file lists {}",
                    got.len(),
                    outs.len()
                ),
            ));
        }
        for (&b, s) in outs.iter().zip(got) {
            Shape::checked(s.dims.max(1), s.w, s.h, s.d, s.c).map_err(|e| layer_err(g, li, e))?;
            shapes[b] = s;
        }
    }
    Ok(shapes)
}

pub fn plan(g: &Graph, ops: &[Box<dyn Op>], opts: &PlanOptions) -> Result<Plan> {
    let shapes = infer_shapes(g, ops, opts.input_shapes)?;
    let int8: Vec<bool> = (0..g.blobs.len())
        .map(|b| opts.int8.get(b).copied().unwrap_or(false))
        .collect();
    let store = |b: usize| storage_floats(shapes[b], int8[b]);
    let n = g.order.len();
    // Last step reading each blob; graph outputs and kept blobs live to the end.
    let last_read: Vec<usize> = g
        .last_reads()
        .into_iter()
        .map(|r| match r {
            Some(step) if !opts.keep_all => step,
            _ => n,
        })
        .collect();

    let (join_into, joined) = joined_inputs(g, ops, &shapes, &int8);
    let mut buffers: Vec<Buffer> = Vec::new();
    let mut buffer_of = vec![usize::MAX; g.blobs.len()];
    let mut offset_in_buffer = vec![0; g.blobs.len()];
    let mut pinned: Vec<bool> = Vec::new();
    let mut steps = Vec::with_capacity(n);
    let mut scratch_len = 0usize;
    for (s, &li) in g.order.iter().enumerate() {
        let (ins, outs) = (&g.inputs[li], &g.outputs[li]);
        if ins.len() > MAX_IO || outs.len() > MAX_IO {
            return Err(layer_err(
                g,
                li,
                format!("more than {MAX_IO} inputs or outputs"),
            ));
        }
        let is_input = g.layers[li].kind == "Input";
        let new_buffer = |b: usize,
                          len: usize,
                          first: usize,
                          buffers: &mut Vec<Buffer>,
                          pinned: &mut Vec<bool>| {
            buffers.push(Buffer {
                offset: 0,
                len,
                first,
                // Inputs stay intact for the whole run so `Net::blob` can read them back.
                last: if is_input { n } else { last_read[b] },
            });
            pinned.push(is_input || opts.keep_all);
            buffers.len() - 1
        };
        let mut copy_first = false;
        let mut storage = ops[li].storage();
        if joined[li] {
            // The producers already wrote the output; the step does not run.
            storage = Storage::Alias;
            let o = buffer_of[outs[0]];
            buffers[o].last = buffers[o].last.max(last_read[outs[0]]);
            steps.push(Step {
                layer: li,
                copy_first,
                storage,
            });
            continue;
        }
        match storage {
            Storage::Alias => {
                let src = buffer_of[ins[0]];
                let at = offset_in_buffer[ins[0]];
                for &b in outs {
                    if at + store(b) > buffers[src].len {
                        return Err(layer_err(
                            g,
                            li,
                            "output is larger than the input it aliases",
                        ));
                    }
                    buffer_of[b] = src;
                    offset_in_buffer[b] = at;
                    buffers[src].last = buffers[src].last.max(last_read[b]);
                }
            }
            Storage::InPlace => {
                if ins.len() != 1 || outs.len() != 1 || store(ins[0]) != store(outs[0]) {
                    return Err(layer_err(
                        g,
                        li,
                        "an in-place layer needs one input and one output of equal size",
                    ));
                }
                let (i, o) = (ins[0], outs[0]);
                let src = buffer_of[i];
                let read_later = buffers[src].last > s;
                if pinned[src] || read_later {
                    buffer_of[o] = new_buffer(o, store(o), s, &mut buffers, &mut pinned);
                    copy_first = true;
                } else {
                    buffer_of[o] = src;
                    offset_in_buffer[o] = offset_in_buffer[i];
                    buffers[src].last = buffers[src].last.max(last_read[o]);
                }
            }
            Storage::New => {
                for &b in outs {
                    let first = if is_input { 0 } else { s };
                    let Some((joint, at)) = join_into[b] else {
                        buffer_of[b] = new_buffer(b, store(b), first, &mut buffers, &mut pinned);
                        continue;
                    };
                    // Written into its part of the concat output: that buffer lives from
                    // its first part's producer to the last read of the output or a part.
                    if buffer_of[joint] == usize::MAX {
                        buffer_of[joint] =
                            new_buffer(joint, store(joint), first, &mut buffers, &mut pinned);
                    }
                    let o = buffer_of[joint];
                    buffer_of[b] = o;
                    offset_in_buffer[b] = at;
                    buffers[o].last = buffers[o].last.max(last_read[b]);
                }
            }
        }
        let in_shapes: Vec<Shape> = ins.iter().map(|&b| shapes[b]).collect();
        let out_shapes: Vec<Shape> = outs.iter().map(|&b| shapes[b]).collect();
        scratch_len = scratch_len.max(ops[li].scratch_len(&in_shapes, &out_shapes));
        steps.push(Step {
            layer: li,
            copy_first,
            storage,
        });
    }

    let arena_len = assign_offsets(&mut buffers);
    // Many blobs of allowed size can still add up to more than any device has; refuse at
    // plan time rather than fail the allocation.
    for (what, n) in [("blob arena", arena_len), ("scratch", scratch_len)] {
        if n > MAX_PLAN_FLOATS {
            return Err(Error::Graph {
                msg: format!("{what} needs {n} floats, more than the {MAX_PLAN_FLOATS} allowed"),
            });
        }
    }
    Ok(Plan {
        shapes,
        int8,
        buffer_of,
        offset_in_buffer,
        buffers,
        steps,
        arena_len,
        scratch_len: round_up(scratch_len),
    })
}

/// The concats planned without a step (`joined[layer]`), and for each of their inputs
/// (`join_into[blob]`) the output blob and the float offset it is written at. A concat
/// qualifies when [`Op::joins_inputs`] says so, it has one output, and each input is a
/// distinct blob of the same element type written by a new-buffer layer that is not an
/// `Input` and not such a concat itself (their memory is decided elsewhere), and starts
/// cache-line aligned (whole floats for int8) inside the output.
fn joined_inputs(
    g: &Graph,
    ops: &[Box<dyn Op>],
    shapes: &[Shape],
    int8: &[bool],
) -> (Vec<Option<(usize, usize)>>, Vec<bool>) {
    let mut join_into: Vec<Option<(usize, usize)>> = vec![None; g.blobs.len()];
    let mut joined = vec![false; g.layers.len()];
    for &li in &g.order {
        let (ins, outs) = (&g.inputs[li], &g.outputs[li]);
        let in_shapes: Vec<Shape> = ins.iter().map(|&b| shapes[b]).collect();
        if outs.len() != 1 || ins.is_empty() || !ops[li].joins_inputs(&in_shapes) {
            continue;
        }
        let out = outs[0];
        let mut parts = Vec::with_capacity(ins.len());
        let mut at = 0usize;
        for (i, &b) in ins.iter().enumerate() {
            let producer = g.blobs[b].producer;
            let ok = int8[b] == int8[out]
                && !ins[..i].contains(&b)
                && join_into[b].is_none()
                && g.layers[producer].kind != "Input"
                && ops[producer].storage() == Storage::New
                && !joined[producer]
                && at.is_multiple_of(ALIGN_FLOATS);
            if !ok {
                break;
            }
            parts.push((b, at));
            // An int8 part must fill whole floats so the next one starts on a float.
            let len = shapes[b].len();
            if int8[b] && !len.is_multiple_of(4) && i + 1 < ins.len() {
                break;
            }
            at += storage_floats(shapes[b], int8[b]);
        }
        if parts.len() != ins.len() || at != storage_floats(shapes[out], int8[out]) {
            continue;
        }
        for (b, at) in parts {
            join_into[b] = Some((out, at));
        }
        joined[li] = true;
    }
    (join_into, joined)
}

fn round_up(n: usize) -> usize {
    n.div_ceil(ALIGN_FLOATS) * ALIGN_FLOATS
}

/// Greedy placement, largest first, at the lowest offset free during the buffer's lifetime.
/// Returns the arena size.
fn assign_offsets(buffers: &mut [Buffer]) -> usize {
    let mut by_size: Vec<usize> = (0..buffers.len()).collect();
    by_size.sort_by_key(|&i| (std::cmp::Reverse(buffers[i].len), i));
    let mut placed: Vec<usize> = Vec::with_capacity(buffers.len());
    let mut total = 0;
    for &i in &by_size {
        let b = buffers[i];
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .map(|&j| buffers[j])
            .filter(|o| o.first <= b.last && b.first <= o.last)
            .map(|o| (o.offset, o.offset + round_up(o.len)))
            .collect();
        busy.sort_unstable();
        let mut offset = 0;
        for (start, end) in busy {
            if offset + round_up(b.len) <= start {
                break;
            }
            offset = offset.max(end);
        }
        buffers[i].offset = offset;
        total = total.max(offset + round_up(b.len));
        placed.push(i);
    }
    total
}

/// Checks used by tests: no two buffers alive at the same step overlap.
pub fn check_no_overlap(p: &Plan) -> LayerResult<()> {
    for (i, a) in p.buffers.iter().enumerate() {
        for b in &p.buffers[i + 1..] {
            let live = a.first <= b.last && b.first <= a.last;
            let mem = a.offset < b.offset + b.len && b.offset < a.offset + a.len;
            if live && mem {
                return Err(invalid(format!("buffers overlap: {a:?} {b:?}")));
            }
        }
    }
    Ok(())
}
