//! Interp: resizes the planes of a blob (nearest, bilinear or bicubic), as ncnn's layer does.
//!
//! Params: `0 = resize_type` (1 nearest, 2 bilinear, 3 bicubic), `1 / 2 = height_scale /
//! width_scale`, `3 / 4 = output_height / output_width`, `5 = dynamic_target_size` (the
//! output w / h are those of a second, reference input), `6 = align_corner`, `9 = size_expr`
//! (a string expression list, `super::expression`, evaluated on the input shapes).
//!
//! Output size: the reference blob's w / h in the dynamic form; else `output_width x
//! output_height` when both are set; else `trunc(w * width_scale) x trunc(h * height_scale)`.
//! With `size_expr`, the expression's list gives `w` (one value; h stays the input's) or
//! `w, h` (two values); a list of another length leaves the size to the rules above (the
//! second input's w / h when there is one). The layer takes as many inputs as the
//! expression reads (at least 2 with key 5) and resamples as in the dynamic form (scale =
//! in / out per axis; a same-size resize is a copy) whatever the list's length.
//! Input forms:
//! * 3-D `w x h x c`: every channel resized to `outw x outh`.
//! * 2-D `w x h`: only the width changes; each row is resized on its own (output `outw x h`).
//! * 1-D `w`: treated as w = h = 1 for the size; the output is 3-D `outw x outh x w` with
//!   channel q filled with element q, whatever the resize type.
//!
//! Source coordinates, per axis of length `n` resized to `out` (ncnn's arithmetic, kept
//! exactly so outputs agree to float rounding):
//! * scale `s` = `n / out` when the axis's output size was given (key 3 / 4, or dynamic),
//!   else `1 / scale param`; bilinear forces `s = 1` on an axis that keeps its size;
//!   `align_corner` gives `s = (n - 1) / (out - 1)` (0 when out = 1).
//! * nearest: source `min(trunc(d * s), n - 1)` (in f32).
//! * bilinear / bicubic: `f = (d + 0.5) * s - 0.5` (or `d * s` when aligning), computed in
//!   f64 and rounded to f32; the taps start at `floor(f)` with weights from the fraction
//!   (linear; Keys cubic with A = -0.75). At the borders ncnn clamps: bilinear moves the
//!   pair inside (weight 0 / 1 on the edge pixel), bicubic folds the weights of outside taps
//!   onto the edge. Inputs narrower than the kernel (bilinear: w = 1 or h = 1; bicubic: w < 4
//!   or h < 4) use ncnn's small-input rule instead for both axes: every tap's index is
//!   clamped to the edge, weights unchanged.
//! * Each output is the vertical weighted sum of horizontally interpolated rows, summed in
//!   tap order as ncnn does.
//!
//! A resize that keeps the size copies the input, except a bicubic resize whose scale param
//! is not 1 (ncnn resamples then).

use super::expression::{self, Expr};
use super::{Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::pool::SharedMut;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeType {
    Nearest,
    Bilinear,
    Bicubic,
}

#[derive(Debug)]
pub struct Interp {
    pub resize: ResizeType,
    pub height_scale: f32,
    pub width_scale: f32,
    /// 0: not given (then both sizes come from the scales).
    pub output_height: usize,
    pub output_width: usize,
    /// The output size is the second input's w / h.
    pub dynamic_target_size: bool,
    pub align_corner: bool,
    /// `size_expr` (key 9).
    pub size_expr: Option<Expr>,
}

/// Most inputs a size expression can read (blob indices are one digit).
const MAX_INPUTS: usize = 10;

/// How the source positions of one axis are chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
enum AxisRule {
    /// One tap at `min(trunc(d * scale), n - 1)`, weight 1.
    Nearest { scale: f32 },
    /// ncnn's bilinear coefficients (two taps, pair kept inside).
    Linear { scale: f64, align: bool },
    /// ncnn's bicubic coefficients (four taps, outside weights folded onto the edge).
    Cubic { scale: f64, align: bool },
    /// Small-input rule: 2 or 4 taps from `floor(f) - (taps / 2 - 1)`, each index clamped.
    Clamped {
        cubic: bool,
        scale: f64,
        align: bool,
    },
}

impl AxisRule {
    fn taps(self) -> usize {
        match self {
            AxisRule::Nearest { .. } => 1,
            AxisRule::Linear { .. } => 2,
            AxisRule::Cubic { .. } => 4,
            AxisRule::Clamped { cubic, .. } => {
                if cubic {
                    4
                } else {
                    2
                }
            }
        }
    }
}

/// One axis: `n` source positions resized to `out`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Axis {
    n: usize,
    out: usize,
    rule: AxisRule,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Work {
    /// 1-D input: channel q of the output is filled with element q.
    Fill,
    /// Same size: the output is the input.
    Copy,
    /// `planes` independent planes, each resampled along `x` then `y`.
    Resample { planes: usize, x: Axis, y: Axis },
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Plan {
    out: Shape,
    work: Work,
}

/// ncnn's weights for the four bicubic taps at fraction `f` (Keys, A = -0.75), evaluated in
/// f32 in ncnn's order; the last is 1 minus the others.
fn cubic_weights(f: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let (far, near, other) = (f + 1.0, f, 1.0 - f);
    let outer = A * far * far * far - 5.0 * A * far * far + 8.0 * A * far - 4.0 * A;
    let inner = |t: f32| (A + 2.0) * t * t * t - (A + 3.0) * t * t + 1.0;
    let (w1, w2) = (inner(near), inner(other));
    [outer, w1, w2, 1.0 - outer - w1 - w2]
}

/// Source coordinate of output position `d` (f64, rounded to f32 as ncnn does).
fn source_coordinate(d: usize, scale: f64, align: bool) -> f32 {
    if align {
        (d as f64 * scale) as f32
    } else {
        ((d as f64 + 0.5) * scale - 0.5) as f32
    }
}

/// Splits a coordinate into its floor and the fraction.
fn split(f: f32) -> (i64, f32) {
    let s = f.floor();
    (s as i64, f - s)
}

impl Axis {
    fn taps(&self) -> usize {
        self.rule.taps()
    }

    fn table_len(&self) -> usize {
        self.out * self.taps()
    }

    /// Fills the tap table: for output position d, `idx[d * taps + j]` and `wt[..]`.
    fn fill(&self, idx: &mut [u32], wt: &mut [f32]) {
        let (n, out) = (self.n as i64, self.out);
        let taps = self.taps();
        // align_corner replaces the scale by (n - 1) / (out - 1).
        let scale_for = |scale: f64, align: bool| match (align, out > 1) {
            (false, _) => scale,
            (true, true) => (n - 1) as f64 / (out - 1) as f64,
            (true, false) => 0.0,
        };
        for d in 0..out {
            let (i, w) = (
                &mut idx[d * taps..(d + 1) * taps],
                &mut wt[d * taps..(d + 1) * taps],
            );
            match self.rule {
                AxisRule::Nearest { scale } => {
                    i[0] = ((d as f32 * scale) as i64).clamp(0, n - 1) as u32;
                    w[0] = 1.0;
                }
                AxisRule::Linear { scale, align } => {
                    // An axis that keeps its size uses scale 1 (before align_corner).
                    let scale = if self.n == out { 1.0 } else { scale };
                    let f = source_coordinate(d, scale_for(scale, align), align);
                    let (mut s, mut f) = split(f);
                    if s < 0 {
                        (s, f) = (0, 0.0);
                    }
                    if s >= n - 1 {
                        (s, f) = (n - 2, 1.0);
                    }
                    i.copy_from_slice(&[s as u32, s as u32 + 1]);
                    w.copy_from_slice(&[1.0 - f, f]);
                }
                AxisRule::Cubic { scale, align } => {
                    let (mut s, f) = split(source_coordinate(d, scale_for(scale, align), align));
                    let mut c = cubic_weights(f);
                    // ncnn's border cases, applied in this order: the taps s-1..s+2 are moved
                    // inside and the weights of the taps that fell outside are folded in.
                    if s <= -1 {
                        s = 1;
                        c = [1.0 - c[3], c[3], 0.0, 0.0];
                    }
                    if s == 0 {
                        s = 1;
                        c = [c[0] + c[1], c[2], c[3], 0.0];
                    }
                    if s == n - 2 {
                        s = n - 3;
                        c = [0.0, c[0], c[1], c[2] + c[3]];
                    }
                    if s >= n - 1 {
                        s = n - 3;
                        c = [0.0, 0.0, c[0], 1.0 - c[0]];
                    }
                    for (j, v) in i.iter_mut().enumerate() {
                        *v = (s - 1 + j as i64) as u32;
                    }
                    w.copy_from_slice(&c);
                }
                AxisRule::Clamped {
                    cubic,
                    scale,
                    align,
                } => {
                    let (s, f) = split(source_coordinate(d, scale_for(scale, align), align));
                    let first = if cubic { s - 1 } else { s };
                    for (j, v) in i.iter_mut().enumerate() {
                        *v = (first + j as i64).clamp(0, n - 1) as u32;
                    }
                    if cubic {
                        w.copy_from_slice(&cubic_weights(f));
                    } else {
                        w.copy_from_slice(&[1.0 - f, f]);
                    }
                }
            }
        }
    }
}

/// Resamples one plane (`in_w` wide) into `dst` (`x.out x y.out`). `rows` holds `y taps x
/// x.out` floats: the horizontally resampled source rows of the current output row, reused
/// while consecutive output rows read the same source rows.
#[allow(clippy::too_many_arguments)]
fn resample_plane(
    src: &[f32],
    in_w: usize,
    (xi, xw, xt): (&[u32], &[f32], usize),
    (yi, yw, yt): (&[u32], &[f32], usize),
    out_w: usize,
    rows: &mut [f32],
    dst: &mut [f32],
) {
    let mut cached: Option<&[u32]> = None;
    for (y, out_row) in dst.chunks_exact_mut(out_w).enumerate() {
        let sources = &yi[y * yt..(y + 1) * yt];
        if cached != Some(sources) {
            for (&sy, row) in sources.iter().zip(rows.chunks_exact_mut(out_w)) {
                let s = &src[sy as usize * in_w..(sy as usize + 1) * in_w];
                for (x, r) in row.iter_mut().enumerate() {
                    let (i, w) = (&xi[x * xt..(x + 1) * xt], &xw[x * xt..(x + 1) * xt]);
                    let mut v = s[i[0] as usize] * w[0];
                    for j in 1..xt {
                        v += s[i[j] as usize] * w[j];
                    }
                    *r = v;
                }
            }
            cached = Some(sources);
        }
        let b = &yw[y * yt..(y + 1) * yt];
        for (x, o) in out_row.iter_mut().enumerate() {
            let mut v = rows[x] * b[0];
            for (i, bi) in b.iter().enumerate().skip(1) {
                v += rows[i * out_w + x] * bi;
            }
            *o = v;
        }
    }
}

impl Interp {
    pub fn new(pd: &ParamDict) -> LayerResult<Interp> {
        let resize = match pd.int(0, 0)? {
            1 => ResizeType::Nearest,
            2 => ResizeType::Bilinear,
            3 => ResizeType::Bicubic,
            0 => {
                return Err(invalid(
                    "resize_type (key 0) is 0 (unset); ncnn leaves the output unwritten then: \
                     use 1 nearest, 2 bilinear or 3 bicubic",
                ))
            }
            t => {
                return Err(invalid(format!(
                    "unknown resize_type (key 0) {t}: 1 nearest, 2 bilinear, 3 bicubic"
                )))
            }
        };
        let size = |key: usize, what: &str| {
            pd.usize(key, 0)
                .map_err(|_| invalid(format!("{what} (key {key}) must not be negative")))
        };
        let op = Interp {
            resize,
            height_scale: pd.float(1, 1.0)?,
            width_scale: pd.float(2, 1.0)?,
            output_height: size(3, "output_height")?,
            output_width: size(4, "output_width")?,
            dynamic_target_size: pd.int(5, 0)? != 0,
            align_corner: pd.int(6, 0)? != 0,
            size_expr: expression::param(pd, 9)?,
        };
        for (key, v) in [(1, op.height_scale), (2, op.width_scale)] {
            if !v.is_finite() {
                return Err(invalid(format!("scale (key {key}) {v} is not finite")));
            }
        }
        Ok(op)
    }

    /// Output (w, h) before validation, as ncnn computes it.
    fn target_size(&self, inputs: &[Shape]) -> LayerResult<(i64, i64)> {
        let x = inputs[0];
        if let Some(e) = &self.size_expr {
            let want = self.input_count();
            if inputs.len() != want {
                return Err(invalid(format!(
                    "expects {want} input blob(s) (size_expr `{}`{}), got {}",
                    e.text(),
                    if self.dynamic_target_size {
                        ", key 5"
                    } else {
                        ""
                    },
                    inputs.len()
                )));
            }
            let mut v = [0i32; 2];
            let n = e.eval_into(inputs, &mut v)?;
            match n {
                1 => return Ok((v[0] as i64, x.h as i64)),
                2 => return Ok((v[0] as i64, v[1] as i64)),
                _ => {}
            }
            if let Some(r) = inputs.get(1) {
                return Ok((r.w as i64, r.h as i64));
            }
            return Ok(self.size_from_params(x));
        }
        if self.dynamic_target_size {
            let r = inputs.get(1).ok_or_else(|| {
                invalid(
                    "dynamic_target_size (key 5) needs a second input whose w / h give the size",
                )
            })?;
            return Ok((r.w as i64, r.h as i64));
        }
        if inputs.len() != 1 {
            return Err(invalid(format!(
                "expects 1 input blob (2 with dynamic_target_size, key 5), got {}",
                inputs.len()
            )));
        }
        Ok(self.size_from_params(x))
    }

    /// The size from keys 3 / 4, or else from the scales.
    fn size_from_params(&self, x: Shape) -> (i64, i64) {
        let (w, h) = if x.dims == 1 { (1, 1) } else { (x.w, x.h) };
        if self.output_width == 0 || self.output_height == 0 {
            (
                (w as f32 * self.width_scale) as i64,
                (h as f32 * self.height_scale) as i64,
            )
        } else {
            (self.output_width as i64, self.output_height as i64)
        }
    }

    /// Inputs the layer takes.
    fn input_count(&self) -> usize {
        let n = if self.dynamic_target_size { 2 } else { 1 };
        self.size_expr.as_ref().map_or(n, |e| e.blob_count().max(n))
    }

    /// Whether the size comes from other blobs (dynamic form or size_expr).
    fn sized_by_blobs(&self) -> bool {
        self.dynamic_target_size || self.size_expr.is_some()
    }

    fn is_identity(&self, w: usize, h: usize, outw: usize, outh: usize, dims: u8) -> bool {
        if outw != w || (dims != 2 && outh != h) {
            return false;
        }
        if self.resize != ResizeType::Bicubic || self.align_corner || self.sized_by_blobs() {
            return true;
        }
        (self.output_width != 0 || self.width_scale == 1.0)
            && (dims == 2 || self.output_height != 0 || self.height_scale == 1.0)
    }

    /// The axis rule ncnn uses on an axis of length `n` resized to `out`: `given` is whether
    /// that axis's output size was given (its key, or the dynamic form), `scale_param` the
    /// scale key of the axis, `small` whether the small-input rule applies.
    fn rule(&self, n: usize, out: usize, given: bool, scale_param: f32, small: bool) -> AxisRule {
        if self.resize == ResizeType::Nearest {
            let scale = if given {
                n as f32 / out as f32
            } else {
                1.0 / scale_param
            };
            return AxisRule::Nearest { scale };
        }
        let scale = if given {
            n as f64 / out as f64
        } else {
            1.0 / scale_param as f64
        };
        let cubic = self.resize == ResizeType::Bicubic;
        match (small, cubic) {
            (true, _) => AxisRule::Clamped {
                cubic,
                scale: if !cubic && n == out { 1.0 } else { scale },
                align: self.align_corner,
            },
            (false, false) => AxisRule::Linear {
                scale,
                align: self.align_corner,
            },
            (false, true) => AxisRule::Cubic {
                scale,
                align: self.align_corner,
            },
        }
    }

    fn plan(&self, inputs: &[Shape]) -> LayerResult<Plan> {
        if inputs.is_empty() || (self.size_expr.is_none() && inputs.len() > 2) {
            return Err(invalid(format!(
                "expects 1 input blob (2 with dynamic_target_size, key 5), got {}",
                inputs.len()
            )));
        }
        let x = inputs[0];
        let dims = x.dims;
        if !(1..=3).contains(&dims) {
            return Err(invalid(format!(
                "Interp takes 1-D, 2-D or 3-D blobs, got {x}"
            )));
        }
        let (tw, th) = self.target_size(inputs)?;
        let check = |v: i64, what: &str| {
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| invalid(format!("output {what} {v} for input {x} is not positive")))
        };
        let outw = check(tw, "width")?;
        let outh = if dims == 2 { x.h } else { check(th, "height")? };
        let (w, h) = (x.w, x.h);
        let (gw, gh) = (
            self.output_width != 0 || self.sized_by_blobs(),
            self.output_height != 0 || self.sized_by_blobs(),
        );
        if dims == 1 {
            return Ok(Plan {
                out: Shape::checked(3, outw, outh, 1, w)?,
                work: Work::Fill,
            });
        }
        let out = if dims == 2 {
            Shape::checked(2, outw, h, 1, 1)?
        } else {
            Shape::checked(3, outw, outh, 1, x.c)?
        };
        if self.is_identity(w, h, outw, outh, dims) {
            return Ok(Plan {
                out,
                work: Work::Copy,
            });
        }
        let bilinear = self.resize == ResizeType::Bilinear;
        let bicubic = self.resize == ResizeType::Bicubic;
        let small = (bilinear && (w == 1 || (dims == 3 && h == 1)))
            || (bicubic && (w < 4 || (dims == 3 && h < 4)));
        let x_axis = Axis {
            n: w,
            out: outw,
            rule: self.rule(w, outw, gw, self.width_scale, small),
        };
        let work = if dims == 2 {
            // Every row is a plane of height 1 that keeps its height: the small-input rule
            // reads it with ncnn's weights for fraction 0, the others copy it.
            let rule = if small {
                AxisRule::Clamped {
                    cubic: bicubic,
                    scale: 0.0,
                    align: true,
                }
            } else {
                AxisRule::Nearest { scale: 0.0 }
            };
            Work::Resample {
                planes: h,
                x: x_axis,
                y: Axis { n: 1, out: 1, rule },
            }
        } else {
            Work::Resample {
                planes: x.c,
                x: x_axis,
                y: Axis {
                    n: h,
                    out: outh,
                    rule: self.rule(h, outh, gh, self.height_scale, small),
                },
            }
        };
        Ok(Plan { out, work })
    }

    /// Scratch floats: the two tap tables (index and weight per tap), then the cached rows.
    fn scratch_parts(plan: &Plan) -> (usize, usize) {
        match plan.work {
            Work::Resample { x, y, .. } => (2 * (x.table_len() + y.table_len()), y.taps() * x.out),
            _ => (0, 0),
        }
    }
}

impl Op for Interp {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        Ok(vec![self.plan(inputs)?.out])
    }

    fn scratch_len(&self, inputs: &[Shape], _outputs: &[Shape]) -> usize {
        match self.plan(inputs) {
            Ok(plan) => {
                let (tables, rows) = Self::scratch_parts(&plan);
                tables + rows
            }
            Err(_) => 0,
        }
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let mut shapes = [Shape::default(); MAX_INPUTS];
        for (s, t) in shapes.iter_mut().zip(inputs) {
            *s = t.shape;
        }
        let plan = self.plan(&shapes[..inputs.len().min(MAX_INPUTS)])?;
        let src = inputs[0];
        let out = &mut outputs[0];
        match plan.work {
            Work::Copy => {
                out.data.copy_from_slice(src.data);
                Ok(())
            }
            Work::Fill => {
                let plane = out.shape.plane();
                for (dst, &v) in out.data.chunks_exact_mut(plane).zip(src.data) {
                    dst.fill(v);
                }
                Ok(())
            }
            Work::Resample { planes, x, y } => {
                let (tables_len, rows_len) = Self::scratch_parts(&plan);
                let threads = ctx.pool.threads();
                let scratch = ctx
                    .scratch
                    .get_mut(..tables_len + threads * rows_len)
                    .ok_or_else(|| invalid("scratch memory smaller than planned"))?;
                let (tables, rows) = scratch.split_at_mut(tables_len);
                let (xi, rest) = tables.split_at_mut(x.table_len());
                let (xw, rest) = rest.split_at_mut(x.table_len());
                let (yi, yw) = rest.split_at_mut(y.table_len());
                let (xi, yi): (&mut [u32], &mut [u32]) =
                    (bytemuck::cast_slice_mut(xi), bytemuck::cast_slice_mut(yi));
                x.fill(xi, xw);
                y.fill(yi, yw);
                let (xt, yt) = ((&*xi, &*xw, x.taps()), (&*yi, &*yw, y.taps()));
                let (in_plane, out_plane) = (x.n * y.n, x.out * y.out);
                let rows = SharedMut::new(rows);
                let dst = SharedMut::new(&mut *out.data);
                ctx.pool
                    .run(planes, &|q, worker| {
                        // SAFETY: each worker has its own rows; each task its own plane.
                        let (rows, dst) = unsafe {
                            (
                                rows.slice(worker * rows_len, rows_len),
                                dst.slice(q * out_plane, out_plane),
                            )
                        };
                        let s = &src.data[q * in_plane..(q + 1) * in_plane];
                        resample_plane(s, x.n, xt, yt, x.out, rows, dst);
                    })
                    .map_err(|e| invalid(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::ops::harness::{assert_close, float, int, iota, params, run, run_threads};
    use crate::rng::Rng;

    fn op(p: &[(usize, Value)]) -> Interp {
        Interp::new(&params(p)).unwrap()
    }

    fn resize(op: &Interp, shape: Shape, data: Vec<f32>) -> (Shape, Vec<f32>) {
        run(op, &[(shape, data)]).unwrap().remove(0)
    }

    /// Keys' cubic kernel (A = -0.75) at distance `x`, in f64.
    fn keys(x: f64) -> f64 {
        const A: f64 = -0.75;
        let x = x.abs();
        if x <= 1.0 {
            (A + 2.0) * x * x * x - (A + 3.0) * x * x + 1.0
        } else if x < 2.0 {
            A * x * x * x - 5.0 * A * x * x + 8.0 * A * x - 4.0 * A
        } else {
            0.0
        }
    }

    /// Plain reference in f64: for each output position, the source coordinate as ncnn
    /// computes it, then the taps of the kernel around it with indices clamped to the edge
    /// (which is what ncnn's border handling amounts to), nearest taking one pixel.
    /// `given` says whether the axis's size was given, `scale` the axis's scale param.
    fn axis_taps(
        op: &Interp,
        d: usize,
        n: usize,
        out: usize,
        given: bool,
        scale: f32,
    ) -> Vec<(usize, f64)> {
        let clamp = |i: i64| i.clamp(0, n as i64 - 1) as usize;
        if op.resize == ResizeType::Nearest {
            let s = if given {
                n as f32 / out as f32
            } else {
                1.0 / scale
            };
            return vec![(((d as f32 * s) as usize).min(n - 1), 1.0)];
        }
        let mut s = if given {
            n as f64 / out as f64
        } else {
            1.0 / scale as f64
        };
        if op.resize == ResizeType::Bilinear && n == out {
            s = 1.0;
        }
        let f = if op.align_corner {
            let s = if out > 1 {
                (n - 1) as f64 / (out - 1) as f64
            } else {
                0.0
            };
            (d as f64 * s) as f32
        } else {
            ((d as f64 + 0.5) * s - 0.5) as f32
        };
        let lo = f.floor() as i64;
        let t = (f - f.floor()) as f64;
        if op.resize == ResizeType::Bilinear {
            vec![(clamp(lo), 1.0 - t), (clamp(lo + 1), t)]
        } else {
            (-1..3)
                .map(|k| (clamp(lo + k), keys(t - k as f64)))
                .collect()
        }
    }

    fn reference(op: &Interp, x: Shape, data: &[f32], size: Option<(usize, usize)>) -> Vec<f32> {
        let (gw, gh) = (
            op.output_width != 0 || size.is_some(),
            op.output_height != 0 || size.is_some(),
        );
        let (bw, bh) = if x.dims == 1 { (1, 1) } else { (x.w, x.h) };
        let (outw, outh) = size.unwrap_or(if op.output_width == 0 || op.output_height == 0 {
            (
                (bw as f32 * op.width_scale) as usize,
                (bh as f32 * op.height_scale) as usize,
            )
        } else {
            (op.output_width, op.output_height)
        });
        if x.dims == 1 {
            return data
                .iter()
                .flat_map(|&v| std::iter::repeat_n(v, outw * outh))
                .collect();
        }
        let (rows, outh) = if x.dims == 2 { (1, 1) } else { (x.h, outh) };
        let planes = data.len() / (x.w * rows);
        let resamples_bicubic_scale = op.resize == ResizeType::Bicubic
            && !op.align_corner
            && size.is_none()
            && !((gw || op.width_scale == 1.0) && (x.dims == 2 || gh || op.height_scale == 1.0));
        if outw == x.w && outh == rows && !resamples_bicubic_scale {
            return data.to_vec();
        }
        let mut out = Vec::new();
        for p in 0..planes {
            let src = &data[p * x.w * rows..(p + 1) * x.w * rows];
            for y in 0..outh {
                let ys = if x.dims == 2 {
                    vec![(0, 1.0)]
                } else {
                    axis_taps(op, y, rows, outh, gh, op.height_scale)
                };
                for xo in 0..outw {
                    let xs = axis_taps(op, xo, x.w, outw, gw, op.width_scale);
                    let mut v = 0.0f64;
                    for &(sy, wy) in &ys {
                        for &(sx, wx) in &xs {
                            v += wy * wx * src[sy * x.w + sx] as f64;
                        }
                    }
                    out.push(v as f32);
                }
            }
        }
        out
    }

    #[test]
    fn nearest_doubles_each_pixel() {
        let nearest = op(&[(0, int(1)), (1, float(2.0)), (2, float(2.0))]);
        let (s, out) = resize(&nearest, Shape::d3(2, 2, 1), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s, Shape::d3(4, 4, 1));
        #[rustfmt::skip]
        assert_eq!(out, [
            1.0, 1.0, 2.0, 2.0,
            1.0, 1.0, 2.0, 2.0,
            3.0, 3.0, 4.0, 4.0,
            3.0, 3.0, 4.0, 4.0,
        ]);
        // By size, 3 -> 2 picks trunc(d * 1.5): columns 0 and 1.
        let down = op(&[(0, int(1)), (3, int(1)), (4, int(2))]);
        let (s, out) = resize(&down, Shape::d3(3, 1, 2), iota(6));
        assert_eq!(s, Shape::d3(2, 1, 2));
        assert_eq!(out, [0.0, 1.0, 3.0, 4.0]);
    }

    #[test]
    fn bilinear_half_pixel_centres_and_clamped_borders() {
        // 2x2 -> 4x4: source x = (d + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to
        // [0, 1]: weights on the second pixel 0, 0.25, 0.75, 1 (and the same down the rows).
        let bilinear = op(&[(0, int(2)), (1, float(2.0)), (2, float(2.0))]);
        let (_, out) = resize(&bilinear, Shape::d3(2, 2, 1), vec![0.0, 1.0, 2.0, 3.0]);
        let t = [0.0, 0.25, 0.75, 1.0];
        let want: Vec<f32> = t
            .iter()
            .flat_map(|ty| t.iter().map(move |tx| 2.0 * ty + tx))
            .collect();
        assert_close(&out, &want, 1e-6);
    }

    #[test]
    fn align_corner_keeps_the_corners() {
        // 2-D: only the width changes, 2 -> 3 with corners aligned: a, (a + b) / 2, b.
        let aligned = op(&[(0, int(2)), (3, int(9)), (4, int(3)), (6, int(1))]);
        let (s, out) = resize(&aligned, Shape::d2(2, 2), vec![1.0, 3.0, -2.0, 2.0]);
        assert_eq!(s, Shape::d2(3, 2));
        assert_close(&out, &[1.0, 2.0, 3.0, -2.0, 0.0, 2.0], 1e-6);
        // Bicubic through aligned corners: 4 -> 7 hits every source pixel at even outputs.
        let cubic = op(&[(0, int(3)), (3, int(1)), (4, int(7)), (6, int(1))]);
        let src = vec![5.0, -1.0, 4.0, 2.0];
        let (_, out) = resize(&cubic, Shape::d2(4, 1), src.clone());
        for (k, v) in src.iter().enumerate() {
            assert!((out[2 * k] - v).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn cubic_weights_are_keys_kernel() {
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
        assert_close(
            &cubic_weights(0.5),
            &[-0.09375, 0.59375, 0.59375, -0.09375],
            1e-7,
        );
        // Doubling a ramp 0..7: output 3 sits at 1.25, between pixels 1 and 2 at fraction
        // 0.25, weights (-0.10546875, 0.87890625, 0.26171875, -0.03515625) on pixels 0..3.
        // (A = -0.75 does not reproduce ramps exactly, unlike A = -0.5.)
        let cubic = op(&[(0, int(3)), (1, float(1.0)), (2, float(2.0))]);
        let (_, out) = resize(&cubic, Shape::d3(8, 1, 1), iota(8));
        assert_eq!(out[3], 1.296875);
        // Constant input stays constant, borders included.
        let (_, out) = resize(&cubic, Shape::d3(8, 5, 1), vec![0.5; 40]);
        assert_close(&out, &[0.5; 80], 1e-6);
    }

    #[test]
    fn one_d_input_fills_channels() {
        let fill = op(&[(0, int(2)), (3, int(2)), (4, int(3))]);
        let (s, out) = resize(&fill, Shape::d1(2), vec![7.0, -1.0]);
        assert_eq!(s, Shape::d3(3, 2, 2));
        assert_eq!(out, [[7.0; 6], [-1.0; 6]].concat());
        // By scale the size is computed from w = h = 1.
        let by_scale = op(&[(0, int(1)), (1, float(2.5)), (2, float(3.0))]);
        assert_eq!(
            by_scale.output_shapes(&[Shape::d1(4)]).unwrap(),
            [Shape::d3(3, 2, 4)]
        );
    }

    #[test]
    fn dynamic_size_comes_from_the_second_input() {
        let dynamic = op(&[(0, int(2)), (5, int(1)), (3, int(99)), (4, int(99))]);
        let x = (Shape::d3(3, 2, 2), iota(12));
        for (r, want) in [
            (Shape::d3(5, 4, 7), Shape::d3(5, 4, 2)),
            (Shape::d2(6, 3), Shape::d3(6, 3, 2)),
            (Shape::d1(4), Shape::d3(4, 1, 2)),
        ] {
            let refb = (r, vec![0.0; r.len()]);
            let out = run(&dynamic, &[x.clone(), refb]).unwrap().remove(0);
            assert_eq!(out.0, want);
            assert_close(
                &out.1,
                &reference(&dynamic, x.0, &x.1, Some((r.w, r.h))),
                1e-5,
            );
        }
        let e = dynamic.output_shapes(&[Shape::d3(3, 2, 2)]).unwrap_err();
        assert!(e.0.contains("second input"), "{e}");
        let e = op(&[(0, int(1))])
            .output_shapes(&[Shape::d3(3, 2, 2), Shape::d1(2)])
            .unwrap_err();
        assert!(e.0.contains("dynamic_target_size"), "{e}");
    }

    #[test]
    fn size_expression_resizes_as_the_dynamic_form() {
        let str_ = |t: &str| Value::Str(t.into());
        let x = (Shape::d3(5, 4, 2), Rng::new(3).vec(40, -1.0, 1.0));
        for t in 1..=3 {
            for align in [0, 1] {
                let dynamic = op(&[(0, int(t)), (5, int(1)), (6, int(align))]);
                for (e, w, h) in [("*(0w,2),+(0h,1)", 10, 5), ("3", 3, 4), ("0w,0h", 5, 4)] {
                    let by_expr =
                        op(&[(0, int(t)), (6, int(align)), (9, str_(e)), (1, float(2.0))]);
                    let out = run(&by_expr, std::slice::from_ref(&x)).unwrap().remove(0);
                    let r = Shape::d2(w, h);
                    let want = run(&dynamic, &[x.clone(), (r, vec![0.0; r.len()])]).unwrap();
                    assert_eq!(out, want[0], "{e}");
                }
            }
        }
        // One value: h stays the first input's; other lengths: the size without expression.
        let two = op(&[(0, int(1)), (9, str_("1h"))]);
        let r = Shape::d3(9, 7, 2);
        assert_eq!(two.output_shapes(&[x.0, r]).unwrap(), [Shape::d3(7, 4, 2)]);
        assert!(two
            .output_shapes(&[x.0])
            .unwrap_err()
            .0
            .contains("expects 2"));
        let three = op(&[
            (0, int(1)),
            (1, float(2.0)),
            (2, float(0.5)),
            (9, str_("7,8,9")),
        ]);
        assert_eq!(three.output_shapes(&[x.0]).unwrap(), [Shape::d3(2, 8, 2)]);
        let three = op(&[(0, int(1)), (9, str_("1w,2,3"))]);
        assert_eq!(
            three.output_shapes(&[x.0, r]).unwrap(),
            [Shape::d3(9, 7, 2)]
        );
        // 1-D input: the expression sees its w; 2-D: only the width changes.
        let e = op(&[(0, int(1)), (9, str_("0w,2"))]);
        assert_eq!(
            e.output_shapes(&[Shape::d1(6)]).unwrap(),
            [Shape::d3(6, 2, 6)]
        );
        assert_eq!(
            e.output_shapes(&[Shape::d2(3, 2)]).unwrap(),
            [Shape::d2(3, 2)]
        );
        let neg = op(&[(0, int(1)), (9, str_("-(0w,9)"))]);
        assert!(neg
            .output_shapes(&[x.0])
            .unwrap_err()
            .0
            .contains("not positive"));
    }

    #[test]
    fn same_size_copies_except_bicubic_with_a_scale() {
        let x = Shape::d3(6, 7, 2);
        let data = Rng::new(5).vec(x.len(), -1.0, 1.0);
        for t in 1..=3 {
            let same = op(&[(0, int(t)), (1, float(1.1)), (2, float(1.1))]);
            let (s, out) = resize(&same, x, data.clone());
            assert_eq!(s, x);
            if t == 3 {
                // trunc(6 * 1.1) = 6, but ncnn resamples with scale 1 / 1.1.
                assert_ne!(out, data);
                assert_close(&out, &reference(&same, x, &data, None), 1e-5);
            } else {
                assert_eq!(out, data);
            }
        }
    }

    #[test]
    fn small_inputs_clamp_every_tap() {
        // Bilinear on a 1-pixel-high blob, bicubic narrower than 4: ncnn's small-input rule.
        let cases = [
            (2, Shape::d3(5, 1, 2), 3, 2),
            (2, Shape::d3(1, 4, 1), 5, 3),
            (3, Shape::d3(3, 6, 2), 7, 4),
            (3, Shape::d2(2, 3), 5, 9),
            (2, Shape::d2(1, 3), 4, 9),
            (3, Shape::d3(1, 1, 1), 2, 3),
        ];
        let mut rng = Rng::new(11);
        for (t, x, ow, oh) in cases {
            for align in [0, 1] {
                let small = op(&[(0, int(t)), (3, int(oh)), (4, int(ow)), (6, int(align))]);
                let data = rng.vec(x.len(), -2.0, 2.0);
                let (_, out) = resize(&small, x, data.clone());
                let want = reference(&small, x, &data, None);
                assert_close(&out, &want, 1e-5);
            }
        }
    }

    /// Random shapes (1x1 included), sizes and scales (up, down, non-integer) against the
    /// reference, one and two workers.
    #[test]
    fn random_cases_match_the_reference() {
        let mut rng = Rng::new(2024);
        let scales = [0.5, 2.0, 3.0, 0.3, 0.75, 1.0, 1.3, 1.5, 1.75, 2.6, 0.45];
        let mut checked = 0;
        while checked < 400 {
            let dims = [1, 2, 3, 3][rng.range(0, 3) as usize];
            let (w, h, c) = (
                rng.range(1, 9) as usize,
                rng.range(1, 9) as usize,
                rng.range(1, 4) as usize,
            );
            let x = match dims {
                1 => Shape::d1(w),
                2 => Shape::d2(w, h),
                _ => Shape::d3(w, h, c),
            };
            let mut p = vec![(0, int(rng.range(1, 3) as i32))];
            if rng.unit() < 0.5 {
                p.push((3, int(rng.range(1, 12) as i32)));
                p.push((4, int(rng.range(1, 12) as i32)));
            } else {
                p.push((1, float(scales[rng.range(0, 10) as usize])));
                p.push((2, float(scales[rng.range(0, 10) as usize])));
            }
            p.push((6, int(rng.range(0, 1) as i32)));
            let interp = op(&p);
            if interp.output_shapes(&[x]).is_err() {
                continue; // empty output
            }
            let data = rng.vec(x.len(), -2.0, 2.0);
            let want = reference(&interp, x, &data, None);
            for threads in [1, 2] {
                let out = run_threads(&interp, &[(x, data.clone())], threads).unwrap();
                assert_eq!(out[0].1.len(), want.len(), "{interp:?} on {x}");
                assert_close(&out[0].1, &want, 1e-5);
            }
            checked += 1;
        }
    }

    #[test]
    fn bad_params_and_shapes_are_errors() {
        let err = |p: &[(usize, Value)]| Interp::new(&params(p)).unwrap_err().0;
        assert!(err(&[]).contains("resize_type"));
        assert!(err(&[(0, int(4))]).contains("unknown resize_type"));
        assert!(err(&[(0, int(1)), (3, int(-2))]).contains("output_height"));
        assert!(err(&[(0, int(1)), (9, Value::Str("x".into()))]).contains("key 9"));
        assert!(err(&[(0, int(1)), (2, float(f32::INFINITY))]).contains("not finite"));
        let nearest = op(&[(0, int(1)), (1, float(0.4)), (2, float(0.4))]);
        let e = nearest.output_shapes(&[Shape::d3(2, 2, 1)]).unwrap_err();
        assert!(e.0.contains("not positive"), "{e}");
        let e = nearest.output_shapes(&[Shape::d4(2, 2, 2, 1)]).unwrap_err();
        assert!(e.0.contains("1-D, 2-D or 3-D"), "{e}");
    }
}
