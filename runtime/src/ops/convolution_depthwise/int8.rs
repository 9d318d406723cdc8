//! ConvolutionDepthWise in INT8 / INT7: the input is quantized once with the bottom scale
//! (unless an int8 blob arrives); true depthwise layers run the int8 depthwise kernels
//! (`kernels::depthwise_i8`: on aarch64 3x3 layers read the unpadded planes, in tasks of
//! whole channels, or of row ranges when channels are few; otherwise one task per channel
//! on a padded copy of its plane), other grouped layers one int8 GEMM convolution per
//! group. Dequantize / requantize is fused into each kernel's epilogue.

use super::ConvolutionDepthWise;
use crate::error::{invalid, LayerResult};
use crate::kernels::depthwise_i8::{self, Isa, Layer, Plan};
use crate::kernels::gemm_i8::KernelSet;
use crate::kernels::requant::{self, OutBuf, Requant};
use crate::ops::activation::Activation;
use crate::ops::convolution::int8::{quantize_parallel, ConvInt8};
use crate::ops::convolution::ConvParams;
use crate::ops::quantized::{as_i8, as_i8_mut};
use crate::pool::{Pool, SharedMut};
use crate::quant::{Int8Grid, Precision};
use crate::tensor::Shape;

#[derive(Debug)]
pub struct DwInt8 {
    pub precision: Precision,
    kind: Kind,
    bottom: f32,
    /// The top scale when this layer writes int8 (decided at load).
    pub top: Option<Int8Grid>,
    /// The input blob already holds int8 values.
    pub input_i8: bool,
}

#[derive(Debug)]
enum Kind {
    /// One input and one output channel per group.
    Depthwise {
        taps: Vec<i8>,
        scale_in: Vec<f32>,
        bias: Option<Vec<f32>>,
        act: Activation,
        isa: Isa,
    },
    /// Several channels per group: a convolution per group.
    Grouped(Vec<ConvInt8>),
}

impl DwInt8 {
    /// `q`: the layer's int8 weights `[group][outch/group][inch/group][kh][kw]`.
    pub fn new(op: &ConvolutionDepthWise, q: &[i8], precision: Precision) -> LayerResult<DwInt8> {
        let scales = op
            .int8_scales
            .as_ref()
            .ok_or_else(|| invalid("no int8 scales"))?;
        let outch_g = op.num_output / op.group;
        // Per output channel: the scale of its group.
        let weight_scales: Vec<f32> = (0..op.num_output)
            .map(|oc| scales.weight[oc / outch_g])
            .collect();
        let bias = op.bias.as_ref().map(|b| b.to_vec());
        let kind = if op.is_depthwise() {
            Kind::Depthwise {
                taps: q.to_vec(),
                scale_in: requant::scale_in(scales.bottom, &weight_scales),
                bias,
                act: op.activation,
                isa: op.isa,
            }
        } else {
            let params = ConvParams {
                kernel_w: op.kernel_w,
                kernel_h: op.kernel_h,
                dilation_w: op.dilation_w,
                dilation_h: op.dilation_h,
                stride_w: op.stride_w,
                stride_h: op.stride_h,
                padding: op.padding,
                pad_value: 0.0,
            };
            let per_group = outch_g * op.inch_per_group * op.kernel_w * op.kernel_h;
            let convs = (0..op.group)
                .map(|g| {
                    let channels = g * outch_g..(g + 1) * outch_g;
                    let mut c = ConvInt8::new(
                        precision,
                        KernelSet::for_cores(precision, &op.cores),
                        params,
                        &q[g * per_group..(g + 1) * per_group],
                        &weight_scales[channels.clone()],
                        scales.bottom,
                        bias.as_ref().map(|b| &b[channels]),
                        outch_g,
                        op.inch_per_group,
                        op.activation,
                        None,
                    );
                    c.input_i8 = true;
                    c
                })
                .collect();
            Kind::Grouped(convs)
        };
        Ok(DwInt8 {
            precision,
            kind,
            bottom: scales.bottom,
            top: None,
            input_i8: false,
        })
    }

    pub fn set_top(&mut self, top: Option<Int8Grid>) {
        self.top = top;
        if let Kind::Grouped(convs) = &mut self.kind {
            for c in convs {
                c.top = top;
            }
        }
    }

    /// Floats of the shared quantized input, whole cache lines.
    fn quantized_input_floats(&self, s: Shape) -> usize {
        if self.input_i8 {
            0
        } else {
            s.len().div_ceil(4).next_multiple_of(16)
        }
    }

    /// The unpadded depthwise path's plan for input `s`, if it has one.
    fn plan(&self, op: &ConvolutionDepthWise, s: Shape) -> Option<Plan> {
        let Kind::Depthwise { isa, .. } = &self.kind else {
            return None;
        };
        let g = op.geometry(s).ok()?;
        let (left, _, top, _) = op.pads(s.w, s.h);
        let layer = Layer {
            w: s.w,
            h: s.h,
            pad_left: left,
            pad_top: top,
            g,
        };
        Plan::new(*isa, &layer)
    }

    /// Scratch floats per worker: its padded plane (depthwise without the unpadded path) or
    /// GEMM panels (grouped), plus the shared quantized input (counted once per worker for
    /// simplicity).
    pub fn scratch_len(&self, op: &ConvolutionDepthWise, s: Shape) -> usize {
        let own = match &self.kind {
            Kind::Depthwise { .. } if self.plan(op, s).is_some() => 0,
            Kind::Depthwise { .. } => match op.geometry(s) {
                Ok(g) => (g.in_w * g.in_h + depthwise_i8::IN_SLACK)
                    .div_ceil(4)
                    .next_multiple_of(16),
                Err(_) => 0,
            },
            Kind::Grouped(convs) => convs
                .iter()
                .map(|c| c.gemm_scratch_len(s.w, s.h))
                .max()
                .unwrap_or(0),
        };
        own + self.quantized_input_floats(s)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        op: &ConvolutionDepthWise,
        input: &[f32],
        s: Shape,
        output: &mut [f32],
        out_len: usize,
        pool: &Pool,
        scratch: &mut [f32],
    ) -> LayerResult<()> {
        let (qin, rest) = scratch.split_at_mut(self.quantized_input_floats(s));
        let x: &[i8] = if self.input_i8 {
            as_i8(input, s.len())?
        } else {
            let q = as_i8_mut(qin, s.len())?;
            quantize_parallel(
                &input[..s.len()],
                self.bottom,
                self.precision.qmax(),
                q,
                pool,
            )?;
            q
        };
        let int8_out = self.top.is_some();
        match &self.kind {
            Kind::Depthwise {
                taps,
                scale_in,
                bias,
                act,
                isa,
            } => {
                let g = op.geometry(s)?;
                let (left, _, top, _) = op.pads(s.w, s.h);
                let padded = g.in_w != s.w || g.in_h != s.h;
                let requant = Requant {
                    scale_in,
                    bias: bias.as_deref(),
                    act: *act,
                    top_scale: self.top.map_or(1.0, |g| g.scale),
                    qmax: self.top.map_or(self.precision.qmax(), |g| g.qmax),
                };
                if let Some(plan) = self.plan(op, s) {
                    return self.run_unpadded(&plan, s.c, x, taps, &requant, output, out_len, pool);
                }
                let plane_in = s.w * s.h;
                let plane_out = g.out_w * g.out_h;
                let ntaps = g.taps();
                let per_worker = rest.len() / pool.threads();
                let work = SharedMut::new(rest);
                let out = if int8_out {
                    Dst::I8(SharedMut::new(as_i8_mut(output, out_len)?))
                } else {
                    Dst::F32(SharedMut::new(&mut output[..out_len]))
                };
                // Each plane is followed by `IN_SLACK` bytes when they exist (the padded
                // copy's margin, or the next channels), for the x86_64 3x3 path's loads.
                let with_slack = g.in_w * g.in_h + depthwise_i8::IN_SLACK;
                let task = |c: usize, worker: usize| {
                    let src = &x[c * plane_in..(c + 1) * plane_in];
                    let plane: &[i8] = if padded {
                        // SAFETY: each worker index is used by one thread at a time.
                        let buf = unsafe { work.slice(worker * per_worker, per_worker) };
                        let buf: &mut [i8] = &mut bytemuck::cast_slice_mut(buf)[..with_slack];
                        pad_plane_i8(src, s.w, left, top, g.in_w, buf);
                        buf
                    } else {
                        &x[c * plane_in..x.len().min(c * plane_in + with_slack)]
                    };
                    // SAFETY: each task writes only its own output channel's plane.
                    let mut o = match &out {
                        Dst::I8(d) => OutBuf::I8(unsafe { d.slice(c * plane_out, plane_out) }),
                        Dst::F32(d) => OutBuf::F32(unsafe { d.slice(c * plane_out, plane_out) }),
                    };
                    let t = &taps[c * ntaps..(c + 1) * ntaps];
                    depthwise_i8::channel_i8(
                        *isa,
                        self.precision,
                        &g,
                        plane,
                        t,
                        c,
                        &requant,
                        &mut o,
                        0,
                    );
                };
                pool.run_items(op.num_output, &task)
                    .map_err(|e| invalid(e.to_string()))
            }
            Kind::Grouped(convs) => {
                let inch_g = op.inch_per_group;
                let plane_in = s.w * s.h;
                let per_group_out = out_len / op.group;
                for (gi, conv) in convs.iter().enumerate() {
                    let xg = &x[gi * inch_g * plane_in..(gi + 1) * inch_g * plane_in];
                    let range = gi * per_group_out..(gi + 1) * per_group_out;
                    let o = if int8_out {
                        let all: &mut [i8] = as_i8_mut(output, out_len)?;
                        OutBuf::I8(&mut all[range])
                    } else {
                        OutBuf::F32(&mut output[range])
                    };
                    conv.run_quantized(xg, s.w, s.h, o, pool, rest)?;
                }
                Ok(())
            }
        }
    }
}

impl DwInt8 {
    /// The unpadded path: tasks of whole channels, or of row ranges of one channel when
    /// there are too few channels for the workers.
    #[allow(clippy::too_many_arguments)]
    fn run_unpadded(
        &self,
        plan: &Plan,
        channels: usize,
        x: &[i8],
        taps: &[i8],
        requant: &Requant,
        output: &mut [f32],
        out_len: usize,
        pool: &Pool,
    ) -> LayerResult<()> {
        let (out_w, out_h) = (plan.out_w, plan.out_h);
        let plane = out_w * out_h;
        let split = TaskSplit::new(channels, out_h, pool.tasks_for_even_work());
        let out = if self.top.is_some() {
            Dst::I8(SharedMut::new(as_i8_mut(output, out_len)?))
        } else {
            Dst::F32(SharedMut::new(&mut output[..out_len]))
        };
        let precision = self.precision;
        let task = |t: usize, worker: usize| {
            let (chans, rows) = split.task(t);
            let (at, len) = if rows.len() == out_h {
                (chans.start * plane, chans.len() * plane)
            } else {
                (chans.start * plane + rows.start * out_w, rows.len() * out_w)
            };
            // SAFETY: tasks write disjoint regions of the output.
            let mut o = match &out {
                Dst::I8(d) => OutBuf::I8(unsafe { d.slice(at, len) }),
                Dst::F32(d) => OutBuf::F32(unsafe { d.slice(at, len) }),
            };
            let core = pool.core_kind(worker);
            depthwise_i8::run(plan, precision, x, taps, requant, &mut o, chans, rows, core);
        };
        pool.run(split.tasks(), &task)
            .map_err(|e| invalid(e.to_string()))
    }
}

/// How the unpadded path cuts a layer into tasks: `per` channels per task, or when
/// channels are few, each channel into `parts` row ranges of `rows` rows.
struct TaskSplit {
    channels: usize,
    out_h: usize,
    per: usize,
    parts: usize,
    rows: usize,
}

impl TaskSplit {
    /// `want`: tasks wanted ([`Pool::tasks_for_even_work`]).
    fn new(channels: usize, out_h: usize, want: usize) -> TaskSplit {
        if channels >= want || out_h == 1 {
            let per = channels.div_ceil(want).max(1);
            return TaskSplit {
                channels,
                out_h,
                per,
                parts: 1,
                rows: out_h,
            };
        }
        let parts = want.div_ceil(channels).min(out_h);
        let rows = out_h.div_ceil(parts);
        TaskSplit {
            channels,
            out_h,
            per: 1,
            parts: out_h.div_ceil(rows),
            rows,
        }
    }

    fn tasks(&self) -> usize {
        if self.parts == 1 {
            self.channels.div_ceil(self.per)
        } else {
            self.channels * self.parts
        }
    }

    fn task(&self, t: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        if self.parts == 1 {
            let c = t * self.per;
            (c..(c + self.per).min(self.channels), 0..self.out_h)
        } else {
            let (c, part) = (t / self.parts, t % self.parts);
            let y = part * self.rows;
            (c..c + 1, y..(y + self.rows).min(self.out_h))
        }
    }
}

/// Copies a `w`-wide int8 plane into a `pw`-wide plane at (`left`, `top`), zero border (the
/// quantized pad value).
fn pad_plane_i8(src: &[i8], w: usize, left: usize, top: usize, pw: usize, dst: &mut [i8]) {
    dst.fill(0);
    for (y, row) in src.chunks_exact(w).enumerate() {
        let at = (top + y) * pw + left;
        dst[at..at + w].copy_from_slice(row);
    }
}

/// The output of a depthwise layer, shared by the per-channel tasks.
enum Dst<'a> {
    F32(SharedMut<'a, f32>),
    I8(SharedMut<'a, i8>),
}
