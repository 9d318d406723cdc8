//! Pooling (max / average) over 2-D windows of each channel, global pooling and adaptive
//! pooling, with ncnn's padding rules.
//!
//! Params: `0 = pooling_type` (0 max, 1 average), `1 / 11 = kernel_w / kernel_h`,
//! `2 / 12 = stride_w / stride_h`, `3 / 14 / 13 / 15 = pad_left / right / top / bottom`,
//! `4 = global_pooling`, `5 = pad_mode` (0 full, 1 valid, 2 SAME_UPPER, 3 SAME_LOWER),
//! `6 = avgpool_count_include_pad`, `7 = adaptive_pooling`, `8 / 18 = out_w / out_h`.
//!
//! * full (0): the explicit pads plus extra bottom/right padding so the last partial window
//!   still produces an output (Caffe's ceil mode); valid (1): the explicit pads only;
//!   SAME (2 / 3): padding computed from the input so the output is ceil(in / stride), the odd
//!   pixel going after (2) or before (3); the explicit pads are ignored.
//! * Max pooling pads with -FLT_MAX, average pooling with 0. Without count_include_pad an
//!   average divides by the number of elements inside the region ncnn counts: the input plus
//!   the explicit pads (so in SAME modes ncnn counts the SAME padding, a quirk kept here).
//! * Global pooling gives a 1-D blob of c values; adaptive pooling gives out_w x out_h windows
//!   [floor(i * in / out), ceil((i + 1) * in / out)).

use super::elementwise::PARALLEL_MIN;
use super::quantized::{as_i8, as_i8_mut};
use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::kernels::pooling::{self, Isa, Windows};
use crate::model::paramdict::ParamDict;
use crate::pool::SharedMut;
use crate::quant::Int8Grid;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Debug)]
pub struct Pooling {
    pub max: bool,
    pub kernel_w: usize,
    pub kernel_h: usize,
    pub stride_w: usize,
    pub stride_h: usize,
    pub pad_left: usize,
    pub pad_right: usize,
    pub pad_top: usize,
    pub pad_bottom: usize,
    pub global: bool,
    pub pad_mode: i32,
    pub count_include_pad: bool,
    /// Adaptive pooling output (out_w, out_h).
    pub adaptive: Option<(usize, usize)>,
    /// Kernel variant (tests run every available one).
    isa: Isa,
    /// Input and output blobs hold int8 values (`set_int8_io`).
    int8: bool,
}

/// A run of outputs along one axis whose windows add the same positions relative to their
/// start: outputs `first..first + count`, output `first + i` adding the `len` input
/// positions from `start + i * stride`.
#[derive(Clone, Copy, Debug)]
struct Band {
    first: usize,
    count: usize,
    start: usize,
    /// 0: the windows add nothing.
    len: usize,
    /// Positions an average without count_include_pad divides by along this axis.
    span: usize,
    /// Some window positions lie outside the input.
    clipped: bool,
    /// The window's first position lies inside the input.
    first_inside: bool,
}

/// Where the windows of one axis fall, in input coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Axis {
    out: usize,
    /// Window `i` starts at `i * stride - before` (may start before 0 or, after a SAME_LOWER
    /// crop, after 0).
    before: isize,
    /// Average without count_include_pad counts positions in `count.0..count.1`.
    count: (isize, isize),
}

impl Pooling {
    pub fn new(pd: &ParamDict) -> LayerResult<Pooling> {
        let max = match pd.int(0, 0)? {
            0 => true,
            1 => false,
            t => return Err(invalid(format!("unknown pooling_type {t}"))),
        };
        let kernel_w = pd.usize(1, 0)?;
        let stride_w = pd.usize(2, 1)?;
        let pad_left = pd.usize(3, 0)?;
        let pad_top = pd.usize(13, pad_left)?;
        let p = Pooling {
            max,
            kernel_w,
            kernel_h: pd.usize(11, kernel_w)?,
            stride_w,
            stride_h: pd.usize(12, stride_w)?,
            pad_left,
            pad_right: pd.usize(14, pad_left)?,
            pad_top,
            pad_bottom: pd.usize(15, pad_top)?,
            global: pd.int(4, 0)? != 0,
            pad_mode: pd.int(5, 0)?,
            count_include_pad: pd.int(6, 0)? != 0,
            adaptive: if pd.int(7, 0)? != 0 {
                let w = pd.usize(8, 0)?;
                Some((w, pd.usize(18, w)?))
            } else {
                None
            },
            isa: Isa::detect(),
            int8: false,
        };
        if !(0..=3).contains(&p.pad_mode) {
            return Err(invalid(format!("unknown pad_mode {}", p.pad_mode)));
        }
        if p.global {
            return Ok(p);
        }
        if let Some((w, h)) = p.adaptive {
            if w == 0 || h == 0 {
                return Err(invalid(
                    "adaptive pooling needs out_w / out_h (params 8 / 18)",
                ));
            }
            return Ok(p);
        }
        if p.kernel_w == 0 || p.kernel_h == 0 || p.stride_w == 0 || p.stride_h == 0 {
            return Err(invalid(format!(
                "kernel {}x{} and stride {}x{} must be positive",
                p.kernel_w, p.kernel_h, p.stride_w, p.stride_h
            )));
        }
        Ok(p)
    }

    /// Chooses the kernel variant (tests run every available one).
    pub fn set_isa(&mut self, isa: Isa) {
        self.isa = isa;
    }

    /// Window placement along one axis of length `n` for the full and valid modes.
    fn axis(
        &self,
        n: usize,
        k: usize,
        s: usize,
        pad_lo: usize,
        pad_hi: usize,
    ) -> LayerResult<Axis> {
        let (n, k, s) = (n as isize, k as isize, s as isize);
        let (pl, ph) = (pad_lo as isize, pad_hi as isize);
        // Full mode adds tail padding so the last partial window still fits.
        let span = n + pl + ph - k;
        let tail = if self.pad_mode == 0 && span >= 0 && span % s != 0 {
            s - span % s
        } else {
            0
        };
        let (lo, hi) = (pl, ph);
        let bordered = n + lo + hi + tail;
        if bordered < k {
            return Err(invalid(format!(
                "kernel {k} is larger than the padded input {bordered}"
            )));
        }
        Ok(Axis {
            out: ((bordered - k) / s + 1) as usize,
            before: lo,
            count: (0, bordered - hi - tail - lo),
        })
    }

    /// Window placement along one axis for the SAME modes, given that axis's total padding
    /// (`pad`, possibly negative: a crop; 0 when ncnn does not pad at all).
    fn same_axis(
        &self,
        n: usize,
        k: usize,
        s: usize,
        pad: isize,
        pad_lo: usize,
        pad_hi: usize,
    ) -> LayerResult<Axis> {
        let n = n as isize;
        let (lo, hi) = match self.pad_mode {
            2 => (pad / 2, pad - pad / 2),
            _ => (pad - pad / 2, pad / 2),
        };
        let bordered = n + lo + hi;
        let k = k as isize;
        if bordered < k {
            return Err(invalid(format!(
                "kernel {k} is larger than the padded input {bordered}"
            )));
        }
        Ok(Axis {
            out: ((bordered - k) / s as isize + 1) as usize,
            before: lo,
            // ncnn counts from the explicit pads, not the SAME ones.
            count: (pad_lo as isize - lo, bordered - pad_hi as isize - lo),
        })
    }

    fn geometry(&self, w: usize, h: usize) -> LayerResult<(Axis, Axis)> {
        if self.pad_mode >= 2 {
            let total = |n: usize, k: usize, s: usize| {
                k as isize + ((n as isize - 1) / s as isize) * s as isize - n as isize
            };
            let (wpad, hpad) = (
                total(w, self.kernel_w, self.stride_w),
                total(h, self.kernel_h, self.stride_h),
            );
            // ncnn pads (or, with a negative amount, crops) both axes as soon as either
            // needs padding, and neither otherwise.
            let (wpad, hpad) = if wpad > 0 || hpad > 0 {
                (wpad, hpad)
            } else {
                (0, 0)
            };
            return Ok((
                self.same_axis(
                    w,
                    self.kernel_w,
                    self.stride_w,
                    wpad,
                    self.pad_left,
                    self.pad_right,
                )?,
                self.same_axis(
                    h,
                    self.kernel_h,
                    self.stride_h,
                    hpad,
                    self.pad_top,
                    self.pad_bottom,
                )?,
            ));
        }
        Ok((
            self.axis(
                w,
                self.kernel_w,
                self.stride_w,
                self.pad_left,
                self.pad_right,
            )?,
            self.axis(
                h,
                self.kernel_h,
                self.stride_h,
                self.pad_top,
                self.pad_bottom,
            )?,
        ))
    }

    /// Whether every window holds at least one input element whatever the input size, so a
    /// max never returns the padding: true for global and adaptive pooling and the SAME
    /// modes (their padding is below the kernel size on each side); in the full and valid
    /// modes, when the leading pads and the trailing pads plus the largest full-mode tail
    /// (`stride - 1`) are below the kernel size.
    fn windows_never_empty(&self) -> bool {
        if self.global || self.adaptive.is_some() || self.pad_mode >= 2 {
            return true;
        }
        let tail = |s: usize| if self.pad_mode == 0 { s - 1 } else { 0 };
        self.pad_left < self.kernel_w
            && self.pad_top < self.kernel_h
            && self.pad_right + tail(self.stride_w) < self.kernel_w
            && self.pad_bottom + tail(self.stride_h) < self.kernel_h
    }

    /// Outputs `lo..hi` along one axis whose windows lie inside `bound` (input coordinates).
    fn interior(a: Axis, k: usize, s: usize, bound: (isize, isize)) -> (usize, usize) {
        let (k, s) = (k as isize, s as isize);
        let lo = (bound.0 + a.before).max(0);
        let lo = ((lo + s - 1) / s) as usize;
        let last = bound.1 - k + a.before;
        if last < 0 {
            return (0, 0);
        }
        let hi = ((last / s + 1) as usize).min(a.out);
        (lo.min(hi), hi)
    }

    /// The bands of one axis (length `n`, kernel `k`, stride `s`): the outputs whose
    /// windows lie inside `bound` (the positions that are added: the input, for an average
    /// without count_include_pad its counted part) as one band, the others one by one.
    fn bands(
        &self,
        a: Axis,
        n: usize,
        k: usize,
        s: usize,
        bound: (isize, isize),
    ) -> impl Iterator<Item = Band> {
        let (lo, hi) = Self::interior(a, k, s, bound);
        let (lo, hi) = if lo < hi { (lo, hi) } else { (a.out, a.out) };
        let count_only = !self.max && !self.count_include_pad;
        let single = move |o: usize| {
            let start = (o * s) as isize - a.before;
            let end = start + k as isize;
            let (from, to) = (start.max(bound.0), end.min(bound.1));
            let span = if count_only {
                (end.min(a.count.1) - start.max(a.count.0)).max(0) as usize
            } else {
                k
            };
            Band {
                first: o,
                count: 1,
                start: from.max(0) as usize,
                len: (to - from).max(0) as usize,
                span,
                clipped: start < 0 || end > n as isize,
                first_inside: start >= 0 && start < n as isize,
            }
        };
        let interior = Band {
            first: lo,
            count: hi - lo,
            start: (lo as isize * s as isize - a.before) as usize,
            len: k,
            span: k,
            clipped: false,
            first_inside: true,
        };
        (0..lo)
            .map(single)
            .chain((lo < hi).then_some(interior))
            .chain((hi..a.out).map(single))
    }

    /// Calls `visit(rows, columns)` for every pair of bands: together they cover every
    /// output once, each pair a rectangle of windows with the same added part.
    fn for_each_band(
        &self,
        (w, h): (usize, usize),
        gx: Axis,
        gy: Axis,
        mut visit: impl FnMut(Band, Band),
    ) {
        let bound = |n: usize, count: (isize, isize)| {
            if self.max || self.count_include_pad {
                (0, n as isize)
            } else {
                (count.0.max(0), count.1.min(n as isize))
            }
        };
        let (bx, by) = (bound(w, gx.count), bound(h, gy.count));
        for yb in self.bands(gy, h, self.kernel_h, self.stride_h, by) {
            for xb in self.bands(gx, w, self.kernel_w, self.stride_w, bx) {
                visit(yb, xb);
            }
        }
    }

    /// The kernel windows of a band pair (`None` when its windows add nothing).
    fn band_windows(&self, w: usize, out_w: usize, yb: Band, xb: Band) -> Option<Windows> {
        (yb.len > 0 && xb.len > 0).then_some(Windows {
            in_w: w,
            kernel_w: xb.len,
            kernel_h: yb.len,
            stride_w: self.stride_w,
            stride_h: self.stride_h,
            x: xb.start,
            y: yb.start,
            cols: xb.count,
            rows: yb.count,
            out_stride: out_w,
        })
    }

    /// The part of output `(oy, ox)`'s window inside the input: rows `y0..y1`, columns
    /// `x0..x1` (empty ranges when none).
    fn clip(
        &self,
        (w, h): (usize, usize),
        gx: Axis,
        gy: Axis,
        oy: usize,
        ox: usize,
    ) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let range = |o: usize, s: usize, k: usize, a: Axis, n: usize| {
            let start = (o * s) as isize - a.before;
            let lo = start.clamp(0, n as isize) as usize;
            let hi = (start + k as isize).clamp(0, n as isize) as usize;
            lo..hi.max(lo)
        };
        (
            range(oy, self.stride_h, self.kernel_h, gy, h),
            range(ox, self.stride_w, self.kernel_w, gx, w),
        )
    }

    /// Output `(oy, ox)` of a max pooling whose first window position is outside the input:
    /// the reference fold starts from the padding value, so it skips NaNs inside.
    #[allow(clippy::too_many_arguments)]
    fn max_from_pad(
        &self,
        src: &[f32],
        (w, h): (usize, usize),
        gx: Axis,
        gy: Axis,
        oy: usize,
        ox: usize,
    ) -> f32 {
        let (ys, xs) = self.clip((w, h), gx, gy, oy, ox);
        let mut m = -f32::MAX;
        for y in ys {
            for &v in &src[y * w + xs.start..y * w + xs.end] {
                if m < v {
                    m = v;
                }
            }
        }
        m
    }

    /// One channel of windowed fp32 pooling, every band pair through the kernels.
    ///
    /// The reference folds every position of a window, the padding too (max: -FLT_MAX,
    /// average: 0). The kernels fold only the positions inside, which gives the same bits:
    /// * average: adding +0.0 changes no sum started from +0.0 (such a sum is never -0.0);
    /// * max, first position inside: the padding changes the fold only while the running
    ///   max is below -FLT_MAX (-inf), and then lifts it to -FLT_MAX, which nothing inside
    ///   lifts further: so a cut window's -inf becomes -FLT_MAX;
    /// * max, first position outside: the reference starts from -FLT_MAX, the kernel from
    ///   the first inside value, which agrees after the same -inf fix-up unless that value
    ///   is NaN (a result of NaN): those windows are folded again from -FLT_MAX.
    fn pool_channel(&self, src: &[f32], w: usize, h: usize, gx: Axis, gy: Axis, out: &mut [f32]) {
        let out_w = gx.out;
        self.for_each_band((w, h), gx, gy, |yb, xb| {
            let at = yb.first * out_w + xb.first;
            let outputs = |out: &mut [f32], f: &mut dyn FnMut(usize, usize, &mut f32)| {
                for r in 0..yb.count {
                    let row = &mut out[at + r * out_w..][..xb.count];
                    row.iter_mut()
                        .enumerate()
                        .for_each(|(j, o)| f(yb.first + r, xb.first + j, o));
                }
            };
            let win = self.band_windows(w, out_w, yb, xb);
            if !self.max {
                let divisor = if self.count_include_pad {
                    (self.kernel_w * self.kernel_h) as f32
                } else {
                    (yb.span * xb.span) as f32
                };
                match win {
                    Some(win) => pooling::avg_f32(self.isa, &win, src, divisor, &mut out[at..]),
                    None => outputs(out, &mut |_, _, o| *o = 0.0 / divisor),
                }
                return;
            }
            let Some(win) = win else {
                return outputs(out, &mut |_, _, o| *o = -f32::MAX);
            };
            pooling::max_f32(self.isa, &win, src, &mut out[at..]);
            if yb.clipped || xb.clipped {
                let first_inside = yb.first_inside && xb.first_inside;
                outputs(out, &mut |oy, ox, o| {
                    if o.is_nan() && !first_inside {
                        *o = self.max_from_pad(src, (w, h), gx, gy, oy, ox);
                    } else if *o < -f32::MAX {
                        *o = -f32::MAX;
                    }
                });
            }
        });
    }

    /// One channel of windowed int8 max pooling. Positions outside the input count as
    /// -128: quantized values lie in [-127, 127] (symmetric quantization clamps to ±qmax),
    /// so -128 is below every real value, as -FLT_MAX is below every float; and since every
    /// window holds a real value (`windows_never_empty`, required by `set_int8_io`), it
    /// never reaches the output. Folding only the positions inside is then exact (int8 max
    /// does not depend on order).
    fn pool_channel_i8(&self, src: &[i8], w: usize, h: usize, gx: Axis, gy: Axis, out: &mut [i8]) {
        let out_w = gx.out;
        self.for_each_band((w, h), gx, gy, |yb, xb| {
            let at = yb.first * out_w + xb.first;
            match self.band_windows(w, out_w, yb, xb) {
                Some(win) => pooling::max_i8(self.isa, &win, src, &mut out[at..]),
                None => {
                    for r in 0..yb.count {
                        out[at + r * out_w..][..xb.count].fill(i8::MIN);
                    }
                }
            }
        });
    }

    /// Whether the only window of each channel is the whole plane (1x1 output, no padding,
    /// every position counted): then it is a global pooling, done across channels.
    fn whole_plane(&self, w: usize, h: usize, gx: Axis, gy: Axis) -> bool {
        (gx.out, gy.out, gx.before, gy.before) == (1, 1, 0, 0)
            && (self.kernel_w, self.kernel_h) == (w, h)
            && (self.max
                || self.count_include_pad
                || (gx.count == (0, w as isize) && gy.count == (0, h as isize)))
    }

    /// Adaptive max pooling of one channel (any element type).
    fn adaptive_max<T: Copy + PartialOrd>(
        src: &[T],
        (w, h): (usize, usize),
        (out_w, out_h): (usize, usize),
        out: &mut [T],
    ) {
        for i in 0..out_h {
            let (y0, y1) = (h * i / out_h, (h * (i + 1)).div_ceil(out_h));
            for j in 0..out_w {
                let (x0, x1) = (w * j / out_w, (w * (j + 1)).div_ceil(out_w));
                let mut m = src[y0 * w + x0];
                for y in y0..y1 {
                    for &v in &src[y * w + x0..y * w + x1] {
                        if m < v {
                            m = v;
                        }
                    }
                }
                out[i * out_w + j] = m;
            }
        }
    }

    fn adaptive_avg(
        src: &[f32],
        (w, h): (usize, usize),
        (out_w, out_h): (usize, usize),
        out: &mut [f32],
    ) {
        for i in 0..out_h {
            let (y0, y1) = (h * i / out_h, (h * (i + 1)).div_ceil(out_h));
            for j in 0..out_w {
                let (x0, x1) = (w * j / out_w, (w * (j + 1)).div_ceil(out_w));
                let mut sum = 0.0f32;
                for y in y0..y1 {
                    for &v in &src[y * w + x0..y * w + x1] {
                        sum += v;
                    }
                }
                out[i * out_w + j] = sum / (y1 - y0) as f32 / (x1 - x0) as f32;
            }
        }
    }

    /// How many tasks to split `c` channels into: one when the work (elements read) is
    /// too small to be worth waking the workers.
    fn tasks(&self, ctx: &Ctx, c: usize, work: usize) -> usize {
        if work < PARALLEL_MIN {
            1
        } else {
            ctx.pool.threads().min(c)
        }
    }

    fn forward_f32(&self, x: &Tensor, out: &mut [f32], ctx: &mut Ctx) -> LayerResult<()> {
        let (w, h, c) = (x.shape.w, x.shape.h, x.shape.c);
        let plane = x.shape.plane();
        let out_plane = out.len() / c;
        let geometry = if self.global || self.adaptive.is_some() {
            None
        } else {
            Some(self.geometry(w, h)?)
        };
        let global = self.global || geometry.is_some_and(|(gx, gy)| self.whole_plane(w, h, gx, gy));
        let work = x.shape.len().max(out.len() * self.kernel_w * self.kernel_h);
        let tasks = self.tasks(ctx, c, work);
        let out = SharedMut::new(out);
        ctx.pool
            .run(tasks, &|t, _| {
                let (q0, q1) = (c * t / tasks, c * (t + 1) / tasks);
                // SAFETY: each task writes its own channels' outputs.
                let dst = unsafe { out.slice(q0 * out_plane, (q1 - q0) * out_plane) };
                let src = &x.data[q0 * plane..q1 * plane];
                if global {
                    if self.max {
                        pooling::global_max_f32(self.isa, src, plane, dst);
                    } else {
                        pooling::global_avg_f32(self.isa, src, plane, dst);
                    }
                    return;
                }
                for (s, d) in src.chunks_exact(plane).zip(dst.chunks_exact_mut(out_plane)) {
                    if let Some(size) = self.adaptive {
                        if self.max {
                            Self::adaptive_max(s, (w, h), size, d);
                        } else {
                            Self::adaptive_avg(s, (w, h), size, d);
                        }
                    } else if let Some((gx, gy)) = geometry {
                        self.pool_channel(s, w, h, gx, gy, d);
                    }
                }
            })
            .map_err(|e| invalid(e.to_string()))
    }

    fn forward_i8(&self, x: &Tensor, out: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let (w, h, c) = (x.shape.w, x.shape.h, x.shape.c);
        let plane = x.shape.plane();
        let out_len = out.shape.len();
        let out_plane = out_len / c;
        let src_all = as_i8(x.data, x.shape.len())?;
        let geometry = if self.global || self.adaptive.is_some() {
            None
        } else {
            Some(self.geometry(w, h)?)
        };
        let global = self.global || geometry.is_some_and(|(gx, gy)| self.whole_plane(w, h, gx, gy));
        let work = x.shape.len().max(out_len * self.kernel_w * self.kernel_h);
        let tasks = self.tasks(ctx, c, work);
        let out = SharedMut::new(as_i8_mut(out.data, out_len)?);
        ctx.pool
            .run(tasks, &|t, _| {
                let (q0, q1) = (c * t / tasks, c * (t + 1) / tasks);
                // SAFETY: each task writes its own channels' outputs.
                let dst = unsafe { out.slice(q0 * out_plane, (q1 - q0) * out_plane) };
                let src = &src_all[q0 * plane..q1 * plane];
                if global {
                    pooling::global_max_i8(self.isa, src, plane, dst);
                    return;
                }
                for (s, d) in src.chunks_exact(plane).zip(dst.chunks_exact_mut(out_plane)) {
                    if let Some(size) = self.adaptive {
                        Self::adaptive_max(s, (w, h), size, d);
                    } else if let Some((gx, gy)) = geometry {
                        self.pool_channel_i8(s, w, h, gx, gy, d);
                    }
                }
            })
            .map_err(|e| invalid(e.to_string()))
    }
}

impl Op for Pooling {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let s = inputs[0];
        if s.dims != 3 {
            return Err(invalid(format!("pooling needs a 3-D blob, got {s}")));
        }
        if self.global {
            return Ok(vec![Shape::d1(s.c)]);
        }
        if let Some((w, h)) = self.adaptive {
            return Ok(vec![Shape::d3(w, h, s.c)]);
        }
        let (gx, gy) = self.geometry(s.w, s.h)?;
        Ok(vec![Shape::d3(gx.out, gy.out, s.c)])
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        if self.int8 {
            self.forward_i8(&inputs[0], &mut outputs[0], ctx)
        } else {
            self.forward_f32(&inputs[0], outputs[0].data, ctx)
        }
    }

    /// Max pooling whose windows always hold an input element: max commutes with the
    /// (monotonic) symmetric quantization, so it runs on int8 values unchanged in scale.
    fn int8_passthrough(&self) -> bool {
        self.max && self.windows_never_empty()
    }

    /// Input and output are int8 together (same scale, same grid) or fp32 together.
    fn set_int8_io(&mut self, input: bool, output: Option<Int8Grid>) -> LayerResult<()> {
        let output = output.is_some();
        if input != output {
            return Err(invalid(format!(
                "pooling reads and writes int8 together or not at all (input int8: {input}, output int8: {output})"
            )));
        }
        if input && !self.int8_passthrough() {
            return Err(invalid(if self.max {
                "this max pooling can have windows entirely in the padding, whose -FLT_MAX has no int8 value: it cannot run on int8"
            } else {
                "average pooling cannot run on int8 (a mean leaves the quantization grid)"
            }));
        }
        self.int8 = input;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// Any grid: pass-through ops keep the values and do not look at it.
    const GRID: crate::quant::Int8Grid = crate::quant::Int8Grid {
        scale: 10.0,
        qmax: 127,
    };

    use super::*;
    use crate::model::paramdict::Value;
    use crate::ops::harness::{assert_close, int, iota, params, run, run_threads};
    use crate::rng::Rng;

    /// The op's semantics before the SIMD kernels: plain scalar loops over every output, in
    /// the order the module doc gives. The kernels must match it bit for bit.
    impl Pooling {
        /// One channel of windowed pooling, scalar, as the op did before the kernels.
        fn seq_pool_channel(
            &self,
            src: &[f32],
            w: usize,
            h: usize,
            gx: Axis,
            gy: Axis,
            out: &mut [f32],
        ) {
            let (kw, kh) = (self.kernel_w as isize, self.kernel_h as isize);
            let (iw, ih) = (w as isize, h as isize);
            let pad_value = if self.max { -f32::MAX } else { 0.0 };
            let value = |y: isize, x: isize| {
                if y >= 0 && y < ih && x >= 0 && x < iw {
                    src[(y * iw + x) as usize]
                } else {
                    pad_value
                }
            };
            let maxk = (kw * kh) as f32;
            for oy in 0..gy.out {
                let y0 = (oy * self.stride_h) as isize - gy.before;
                for ox in 0..gx.out {
                    let x0 = (ox * self.stride_w) as isize - gx.before;
                    let inside = y0 >= 0 && y0 + kh <= ih && x0 >= 0 && x0 + kw <= iw;
                    let counted_all = y0 >= gy.count.0
                        && y0 + kh <= gy.count.1
                        && x0 >= gx.count.0
                        && x0 + kw <= gx.count.1;
                    let result = if self.max && inside {
                        let mut m = src[(y0 * iw + x0) as usize];
                        for y in y0..y0 + kh {
                            let row = &src[(y * iw + x0) as usize..][..kw as usize];
                            for &v in row {
                                if m < v {
                                    m = v;
                                }
                            }
                        }
                        m
                    } else if self.max {
                        let mut m = value(y0, x0);
                        for y in y0..y0 + kh {
                            for x in x0..x0 + kw {
                                let v = value(y, x);
                                if m < v {
                                    m = v;
                                }
                            }
                        }
                        m
                    } else if inside && (self.count_include_pad || counted_all) {
                        let mut sum = 0.0f32;
                        for y in y0..y0 + kh {
                            let row = &src[(y * iw + x0) as usize..][..kw as usize];
                            for v in row {
                                sum += v;
                            }
                        }
                        sum / maxk
                    } else if self.count_include_pad {
                        let mut sum = 0.0f32;
                        for y in y0..y0 + kh {
                            for x in x0..x0 + kw {
                                sum += value(y, x);
                            }
                        }
                        sum / maxk
                    } else {
                        let (mut sum, mut area) = (0.0f32, 0usize);
                        for y in y0.max(gy.count.0)..(y0 + kh).min(gy.count.1) {
                            for x in x0.max(gx.count.0)..(x0 + kw).min(gx.count.1) {
                                sum += value(y, x);
                                area += 1;
                            }
                        }
                        sum / area as f32
                    };
                    out[oy * gx.out + ox] = result;
                }
            }
        }

        fn seq_adaptive_channel(
            &self,
            src: &[f32],
            w: usize,
            h: usize,
            out_w: usize,
            out_h: usize,
            out: &mut [f32],
        ) {
            for i in 0..out_h {
                let (y0, y1) = (h * i / out_h, (h * (i + 1)).div_ceil(out_h));
                for j in 0..out_w {
                    let (x0, x1) = (w * j / out_w, (w * (j + 1)).div_ceil(out_w));
                    let r = if self.max {
                        let mut m = src[y0 * w + x0];
                        for y in y0..y1 {
                            for &v in &src[y * w + x0..y * w + x1] {
                                if m < v {
                                    m = v;
                                }
                            }
                        }
                        m
                    } else {
                        let mut sum = 0.0f32;
                        for y in y0..y1 {
                            for &v in &src[y * w + x0..y * w + x1] {
                                sum += v;
                            }
                        }
                        sum / (y1 - y0) as f32 / (x1 - x0) as f32
                    };
                    out[i * out_w + j] = r;
                }
            }
        }

        fn seq_global_channel(&self, src: &[f32]) -> f32 {
            if self.max {
                let mut m = src[0];
                for &v in src {
                    if m < v {
                        m = v;
                    }
                }
                m
            } else {
                src.iter().fold(0.0f32, |s, v| s + v) / src.len() as f32
            }
        }
    }

    /// `sequential reference` of a whole blob.
    fn scalar_reference(p: &Pooling, x: &[f32], s: Shape) -> Vec<f32> {
        let out_shape = p.output_shapes(&[s]).unwrap()[0];
        let out_plane = out_shape.len() / s.c;
        let mut out = vec![0.0; out_shape.len()];
        for q in 0..s.c {
            let src = &x[q * s.plane()..][..s.plane()];
            let dst = &mut out[q * out_plane..][..out_plane];
            if p.global {
                dst[0] = p.seq_global_channel(src);
            } else if let Some((ow, oh)) = p.adaptive {
                p.seq_adaptive_channel(src, s.w, s.h, ow, oh, dst);
            } else {
                let (gx, gy) = p.geometry(s.w, s.h).unwrap();
                p.seq_pool_channel(src, s.w, s.h, gx, gy, dst);
            }
        }
        out
    }

    fn op(p: &[(usize, Value)]) -> Pooling {
        Pooling::new(&params(p)).unwrap()
    }

    /// Explicitly padded reference: builds the bordered image the way ncnn does
    /// (copy_make_border) and pools it, with the "fix pad" area rule of the generic layer.
    fn reference(p: &Pooling, x: &[f32], s: Shape) -> (Shape, Vec<f32>) {
        let (w, h) = (s.w as isize, s.h as isize);
        let (kw, kh, sw, sh) = (
            p.kernel_w as isize,
            p.kernel_h as isize,
            p.stride_w as isize,
            p.stride_h as isize,
        );
        let (pl, pr, pt, pb) = (
            p.pad_left as isize,
            p.pad_right as isize,
            p.pad_top as isize,
            p.pad_bottom as isize,
        );
        let (mut bl, mut br, mut bt, mut bb) = (pl, pr, pt, pb);
        let (mut wtail, mut htail) = (0, 0);
        match p.pad_mode {
            0 => {
                let wt = (w + pl + pr - kw) % sw;
                let ht = (h + pt + pb - kh) % sh;
                if wt != 0 {
                    wtail = sw - wt;
                }
                if ht != 0 {
                    htail = sh - ht;
                }
                br += wtail;
                bb += htail;
            }
            1 => {}
            _ => {
                let wpad = kw + (w - 1) / sw * sw - w;
                let hpad = kh + (h - 1) / sh * sh - h;
                (bl, br, bt, bb) = (0, 0, 0, 0);
                if wpad > 0 || hpad > 0 {
                    if p.pad_mode == 2 {
                        (bt, bb, bl, br) = (hpad / 2, hpad - hpad / 2, wpad / 2, wpad - wpad / 2);
                    } else {
                        (bt, bb, bl, br) = (hpad - hpad / 2, hpad / 2, wpad - wpad / 2, wpad / 2);
                    }
                }
            }
        }
        let (bw, bh) = (w + bl + br, h + bt + bb);
        let pad = if p.max { -f32::MAX } else { 0.0 };
        let (ow, oh) = ((bw - kw) / sw + 1, (bh - kh) / sh + 1);
        let mut out = Vec::new();
        for q in 0..s.c as isize {
            let b = |y: isize, xx: isize| {
                let (iy, ix) = (y - bt, xx - bl);
                if (0..h).contains(&iy) && (0..w).contains(&ix) {
                    x[((q * h + iy) * w + ix) as usize]
                } else {
                    pad
                }
            };
            for i in 0..oh {
                for j in 0..ow {
                    let (sy0, sx0) = (i * sh, j * sw);
                    if p.max {
                        let mut m = b(sy0, sx0);
                        for ki in 0..kh {
                            for kj in 0..kw {
                                m = m.max(b(sy0 + ki, sx0 + kj));
                            }
                        }
                        out.push(m);
                    } else if p.count_include_pad {
                        let mut sum = 0.0;
                        for ki in 0..kh {
                            for kj in 0..kw {
                                sum += b(sy0 + ki, sx0 + kj);
                            }
                        }
                        out.push(sum / (kw * kh) as f32);
                    } else {
                        let (mut sum, mut area) = (0.0, 0);
                        for ki in 0..kh {
                            let sy = sy0 + ki;
                            if sy < pt || sy >= bh - pb - htail {
                                continue;
                            }
                            for kj in 0..kw {
                                let sx = sx0 + kj;
                                if sx < pl || sx >= bw - pr - wtail {
                                    continue;
                                }
                                sum += b(sy, sx);
                                area += 1;
                            }
                        }
                        out.push(sum / area as f32);
                    }
                }
            }
        }
        (Shape::d3(ow as usize, oh as usize, s.c), out)
    }

    #[test]
    fn squeezenet_pool1_shape() {
        let p = op(&[(1, int(3)), (2, int(2))]);
        assert_eq!(
            p.output_shapes(&[Shape::d3(113, 113, 64)]).unwrap()[0],
            Shape::d3(56, 56, 64)
        );
        // googlenet inception pool: 3x3 stride 1 pad 1 keeps the size.
        let p = op(&[(1, int(3)), (3, int(1))]);
        assert_eq!(
            p.output_shapes(&[Shape::d3(28, 28, 192)]).unwrap()[0],
            Shape::d3(28, 28, 192)
        );
    }

    #[test]
    fn max_full_mode_tail_window_by_hand() {
        // 1x4 input, kernel 2 stride 3: span 2 -> tail window at x=3 sees only x=3.
        let p = op(&[(1, int(2)), (11, int(1)), (2, int(3))]);
        let out = run(&p, &[(Shape::d3(4, 1, 1), vec![1.0, 5.0, 2.0, 7.0])]).unwrap();
        assert_eq!(out[0], (Shape::d3(2, 1, 1), vec![5.0, 7.0]));
        // valid mode drops the tail.
        let p = op(&[(1, int(2)), (11, int(1)), (2, int(3)), (5, int(1))]);
        let out = run(&p, &[(Shape::d3(4, 1, 1), vec![1.0, 5.0, 2.0, 7.0])]).unwrap();
        assert_eq!(out[0], (Shape::d3(1, 1, 1), vec![5.0]));
    }

    #[test]
    fn average_excludes_padding_and_tail_by_hand() {
        // 3x3 input 0..8, kernel 2 stride 2 full mode: tail pad 1 on right and bottom.
        let p = op(&[(0, int(1)), (1, int(2)), (2, int(2))]);
        let out = run(&p, &[(Shape::d3(3, 3, 1), iota(9))]).unwrap();
        assert_eq!(
            out[0].1,
            vec![
                (0.0 + 1.0 + 3.0 + 4.0) / 4.0,
                (2.0 + 5.0) / 2.0,
                (6.0 + 7.0) / 2.0,
                8.0
            ]
        );
        // Including padding divides by 4 everywhere.
        let p = op(&[(0, int(1)), (1, int(2)), (2, int(2)), (6, int(1))]);
        let out = run(&p, &[(Shape::d3(3, 3, 1), iota(9))]).unwrap();
        assert_eq!(out[0].1, vec![2.0, 7.0 / 4.0, 13.0 / 4.0, 2.0]);
    }

    #[test]
    fn global_and_adaptive() {
        let x = (
            Shape::d3(3, 2, 2),
            vec![
                1.0, -2.0, 3.0, 0.0, 4.0, 2.0, -1.0, -5.0, -3.0, -2.0, -9.0, -4.0,
            ],
        );
        let g = op(&[(4, int(1))]);
        assert_eq!(
            run(&g, std::slice::from_ref(&x)).unwrap()[0],
            (Shape::d1(2), vec![4.0, -1.0])
        );
        let g = op(&[(0, int(1)), (4, int(1))]);
        assert_eq!(
            run(&g, std::slice::from_ref(&x)).unwrap()[0],
            (Shape::d1(2), vec![8.0 / 6.0, -24.0 / 6.0])
        );
        // Adaptive 2x1 over w=3: windows [0,2) and [1,3).
        let a = op(&[(7, int(1)), (8, int(2)), (18, int(1))]);
        let out = run(&a, std::slice::from_ref(&x)).unwrap();
        assert_eq!(out[0], (Shape::d3(2, 1, 2), vec![4.0, 4.0, -1.0, -3.0]));
        let a = op(&[(0, int(1)), (7, int(1)), (8, int(2)), (18, int(1))]);
        let out = run(&a, &[x]).unwrap();
        assert_eq!(
            out[0].1,
            vec![3.0 / 4.0, 7.0 / 4.0, -17.0 / 4.0, -21.0 / 4.0]
        );
    }

    #[test]
    fn matches_padded_reference_over_modes_and_odd_sizes() {
        let mut rng = Rng::new(5);
        for &(w, h) in &[(7, 5), (8, 8), (1, 3), (9, 4), (13, 11)] {
            let s = Shape::d3(w, h, 3);
            let x = rng.vec(s.len(), -3.0, 3.0);
            for pooling_type in [0, 1] {
                for pad_mode in 0..4 {
                    for (k, kh, st, sth) in [
                        (3, 3, 2, 2),
                        (2, 3, 1, 2),
                        (3, 2, 3, 1),
                        (1, 1, 2, 2),
                        (4, 4, 3, 3),
                    ] {
                        for (pl, pr, pt, pb) in [(0, 0, 0, 0), (1, 1, 1, 1), (1, 0, 2, 1)] {
                            for include in [0, 1] {
                                let p = op(&[
                                    (0, int(pooling_type)),
                                    (1, int(k)),
                                    (11, int(kh)),
                                    (2, int(st)),
                                    (12, int(sth)),
                                    (3, int(pl)),
                                    (14, int(pr)),
                                    (13, int(pt)),
                                    (15, int(pb)),
                                    (5, int(pad_mode)),
                                    (6, int(include)),
                                ]);
                                let label = format!("{s} type {pooling_type} mode {pad_mode} k {k}x{kh} s {st}x{sth} pad {pl},{pr},{pt},{pb} incl {include}");
                                let Ok(got) = run(&p, &[(s, x.clone())]) else {
                                    // Only a kernel larger than the padded input may fail.
                                    assert!(
                                        pad_mode == 1 || w < k as usize || h < kh as usize,
                                        "{label}"
                                    );
                                    continue;
                                };
                                let want = reference(&p, &x, s);
                                assert_eq!(got[0].0, want.0, "{label}");
                                assert_close(&got[0].1, &want.1, 1e-6);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn threads_agree() {
        let mut rng = Rng::new(9);
        let s = Shape::d3(15, 9, 7);
        let x = rng.vec(s.len(), -1.0, 1.0);
        let p = op(&[(1, int(3)), (2, int(2)), (3, int(1))]);
        assert_eq!(
            run_threads(&p, &[(s, x.clone())], 1).unwrap(),
            run_threads(&p, &[(s, x)], 3).unwrap()
        );
    }

    #[test]
    fn errors() {
        assert!(Pooling::new(&params(&[(0, int(2)), (1, int(2))])).is_err());
        assert!(Pooling::new(&params(&[(1, int(0))])).is_err());
        assert!(Pooling::new(&params(&[(1, int(2)), (2, int(0))])).is_err());
        assert!(Pooling::new(&params(&[(1, int(2)), (5, int(4))])).is_err());
        assert!(Pooling::new(&params(&[(7, int(1))])).is_err());
        assert!(Pooling::new(&params(&[(1, int(2)), (3, int(-1))])).is_err());
        let p = op(&[(1, int(5)), (5, int(1))]);
        assert!(p.output_shapes(&[Shape::d3(4, 4, 1)]).is_err());
        assert!(p.output_shapes(&[Shape::d2(8, 8)]).is_err());
        assert!(op(&[(4, int(1))])
            .output_shapes(&[Shape::d3(2, 2, 3), Shape::d3(2, 2, 3)])
            .is_err());
    }

    /// Values with ties, both zeros, infinities and NaNs, so any change of order or of
    /// NaN / signed-zero handling shows in the bits.
    fn nasty(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| match rng.range(0, 24) {
                0 => f32::NAN,
                1 => -0.0,
                2 => 0.0,
                3 => f32::NEG_INFINITY,
                4 => -f32::MAX,
                5..=10 => rng.range(-2, 2) as f32,
                _ => rng.uniform(-3.0, 3.0),
            })
            .collect()
    }

    /// Windowed configurations: (type, kernel w/h, stride w/h, pads l/r/t/b, mode, include).
    fn windowed_configs() -> Vec<Vec<(usize, Value)>> {
        let mut v = Vec::new();
        for pooling_type in [0, 1] {
            for pad_mode in 0..4 {
                for (k, kh, st, sth) in [
                    (3, 3, 2, 2),
                    (2, 2, 2, 2),
                    (3, 3, 1, 1),
                    (2, 3, 1, 2),
                    (5, 4, 2, 3),
                    (1, 1, 2, 2),
                    (3, 2, 3, 1),
                    (7, 7, 1, 1),
                ] {
                    for (pl, pr, pt, pb) in [(0, 0, 0, 0), (1, 1, 1, 1), (1, 0, 2, 1)] {
                        for include in [0, 1] {
                            v.push(vec![
                                (0, int(pooling_type)),
                                (1, int(k)),
                                (11, int(kh)),
                                (2, int(st)),
                                (12, int(sth)),
                                (3, int(pl)),
                                (14, int(pr)),
                                (13, int(pt)),
                                (15, int(pb)),
                                (5, int(pad_mode)),
                                (6, int(include)),
                            ]);
                        }
                    }
                }
            }
        }
        for pooling_type in [0, 1] {
            v.push(vec![(0, int(pooling_type)), (4, int(1))]);
            v.push(vec![
                (0, int(pooling_type)),
                (7, int(1)),
                (8, int(3)),
                (18, int(2)),
            ]);
        }
        v
    }

    fn same_bits(got: &[f32], want: &[f32], label: &str) {
        assert_eq!(got.len(), want.len(), "{label}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{label}: element {i}: {g} vs {w}"
            );
        }
    }

    #[test]
    fn every_variant_matches_the_scalar_reference_bit_for_bit() {
        let mut rng = Rng::new(21);
        let small = [
            (7, 5),
            (8, 8),
            (1, 3),
            (9, 4),
            (13, 11),
            (14, 14),
            (27, 27),
            (6, 1),
        ];
        for (w, h) in small {
            let s = Shape::d3(w, h, 3);
            let x = nasty(&mut rng, s.len());
            for config in windowed_configs() {
                let mut p = op(&config);
                if p.output_shapes(&[s]).is_err() {
                    continue;
                }
                let want = scalar_reference(&p, &x, s);
                for isa in Isa::all_available() {
                    p.set_isa(isa);
                    let got = run(&p, &[(s, x.clone())]).unwrap();
                    same_bits(&got[0].1, &want, &format!("{isa:?} {s} {config:?}"));
                }
            }
        }
        // The benchmark models' sizes, large enough to split across threads.
        let big = [
            (Shape::d3(113, 113, 3), vec![(1, int(3)), (2, int(2))]),
            (Shape::d3(56, 56, 5), vec![(1, int(3)), (2, int(2))]),
            (
                Shape::d3(112, 112, 3),
                vec![(1, int(3)), (2, int(2)), (3, int(1))],
            ),
            (Shape::d3(224, 224, 2), vec![(1, int(2)), (2, int(2))]),
            (Shape::d3(28, 28, 40), vec![(1, int(3)), (3, int(1))]),
            (Shape::d3(13, 13, 1000), vec![(0, int(1)), (4, int(1))]),
            (Shape::d3(7, 7, 2048), vec![(0, int(1)), (4, int(1))]),
            (Shape::d3(14, 14, 99), vec![(4, int(1))]),
            (
                Shape::d3(30, 30, 20),
                vec![(0, int(1)), (1, int(3)), (2, int(2))],
            ),
            // ResNet-50's final pooling: one 7x7 window per channel, a global average.
            (Shape::d3(7, 7, 2048), vec![(0, int(1)), (1, int(7))]),
            (Shape::d3(7, 7, 300), vec![(1, int(7))]),
            (
                Shape::d3(7, 5, 30),
                vec![(0, int(1)), (1, int(7)), (11, int(5)), (5, int(2))],
            ),
            (
                Shape::d3(6, 6, 30),
                vec![(0, int(1)), (1, int(6)), (5, int(3)), (3, int(1))],
            ),
        ];
        for (s, config) in big {
            let x = nasty(&mut rng, s.len());
            let mut p = op(&config);
            let want = scalar_reference(&p, &x, s);
            for isa in Isa::all_available() {
                p.set_isa(isa);
                for threads in [1, 3] {
                    let got = run_threads(&p, &[(s, x.clone())], threads).unwrap();
                    same_bits(
                        &got[0].1,
                        &want,
                        &format!("{isa:?} {threads}t {s} {config:?}"),
                    );
                }
            }
        }
    }

    #[test]
    fn max_nan_and_signed_zero_rules() {
        // 2x2 stride 2 on 4x2: windows [a b; e f] and [c d; g h].
        let nan = f32::NAN;
        let p = op(&[(1, int(2)), (2, int(2))]);
        let x = vec![nan, 1.0, 1.0, nan, 5.0, 2.0, 3.0, 4.0];
        let out = run(&p, &[(Shape::d3(4, 2, 1), x)]).unwrap();
        // A NaN first stays; a NaN later is skipped.
        assert!(out[0].1[0].is_nan());
        assert_eq!(out[0].1[1], 4.0);
        // The first of equal zeros wins.
        let x = vec![-0.0, 0.0, 0.0, -0.0, -1.0, -1.0, -1.0, -1.0];
        let out = run(&p, &[(Shape::d3(4, 2, 1), x)]).unwrap();
        assert_eq!(out[0].1[0].to_bits(), (-0.0f32).to_bits());
        assert_eq!(out[0].1[1].to_bits(), 0.0f32.to_bits());
        // Partial windows (kernel 2x1, stride 2): -inf first then padding gives -FLT_MAX,
        // NaN first stays, padding first stays -FLT_MAX against -inf, padding only too.
        let inf = f32::INFINITY;
        let m = -f32::MAX;
        for (left, right, x, want) in [
            (0, 1, vec![1.0, -inf, -inf], vec![1.0, m]),
            (0, 1, vec![-inf, -inf, nan], vec![-inf, nan]),
            (0, 1, vec![2.0, -inf, -inf, -inf], vec![2.0, -inf, m]),
            (1, 0, vec![-inf, 3.0, 4.0], vec![m, 4.0]),
        ] {
            let p = op(&[
                (1, int(2)),
                (11, int(1)),
                (2, int(2)),
                (12, int(1)),
                (3, int(left)),
                (14, int(right)),
                (13, int(0)),
                (15, int(0)),
            ]);
            let s = Shape::d3(x.len(), 1, 1);
            let got = run(&p, &[(s, x.clone())]).unwrap();
            same_bits(&got[0].1, &want, &format!("{x:?}"));
            same_bits(&got[0].1, &scalar_reference(&p, &x, s), "reference");
        }
    }

    /// Runs `p` on an int8 blob (4 values per float slot, as in the arena).
    fn run_i8(p: &Pooling, q: &[i8], s: Shape, threads: usize) -> LayerResult<Vec<i8>> {
        let out_shape = p.output_shapes(&[s])?[0];
        let mut input = vec![0.0f32; s.len().div_ceil(4)];
        as_i8_mut(&mut input, s.len())?.copy_from_slice(q);
        let mut output = vec![f32::NAN; out_shape.len().div_ceil(4)];
        let pool = crate::pool::Pool::new(threads).unwrap();
        let mut ctx = Ctx {
            pool: &pool,
            scratch: &mut [],
        };
        p.forward(
            &[Tensor {
                shape: s,
                data: &input,
            }],
            &mut [TensorMut {
                shape: out_shape,
                data: &mut output,
            }],
            &mut ctx,
        )?;
        Ok(as_i8(&output, out_shape.len())?.to_vec())
    }

    #[test]
    fn int8_max_is_the_quantized_fp32_max() {
        use crate::quant::quantize;
        let mut rng = Rng::new(23);
        let mut shapes: Vec<Shape> = [
            (7, 5),
            (8, 8),
            (1, 3),
            (9, 4),
            (13, 11),
            (14, 14),
            (33, 9),
            (7, 7),
        ]
        .iter()
        .map(|&(w, h)| Shape::d3(w, h, 3))
        .collect();
        shapes.extend([
            Shape::d3(113, 113, 3),
            Shape::d3(56, 56, 4),
            Shape::d3(13, 13, 70),
        ]);
        let mut checked = 0;
        for s in shapes {
            let q: Vec<i8> = (0..s.len()).map(|_| rng.range(-127, 127) as i8).collect();
            let scale = rng.uniform(0.05, 40.0);
            let x: Vec<f32> = q.iter().map(|&v| v as f32 / scale).collect();
            for config in windowed_configs() {
                let mut p = op(&config);
                if !p.max || p.output_shapes(&[s]).is_err() {
                    continue;
                }
                if !p.int8_passthrough() {
                    assert!(p.set_int8_io(true, Some(GRID)).is_err(), "{config:?}");
                    continue;
                }
                let fp32 = run(&p, &[(s, x.clone())]).unwrap();
                // The windows of an int8-capable pooling always hold an input element.
                assert!(!fp32[0].1.contains(&-f32::MAX), "{s} {config:?}");
                let want: Vec<i8> = fp32[0].1.iter().map(|&v| quantize(v, scale, 127)).collect();
                p.set_int8_io(true, Some(GRID)).unwrap();
                for isa in Isa::all_available() {
                    p.set_isa(isa);
                    for threads in [1, 3] {
                        let got = run_i8(&p, &q, s, threads).unwrap();
                        assert_eq!(got, want, "{isa:?} {threads}t {s} {config:?}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 100);
    }

    #[test]
    fn int8_io_contract() {
        let mut max = op(&[(1, int(3)), (2, int(2))]);
        assert!(max.int8_passthrough());
        for (i, o) in [(true, false), (false, true)] {
            let e = max.set_int8_io(i, o.then_some(GRID)).unwrap_err();
            assert!(e.to_string().contains("together"), "{e}");
        }
        max.set_int8_io(true, Some(GRID)).unwrap();
        max.set_int8_io(false, None).unwrap();
        // fp32 again after switching back.
        let out = run(&max, &[(Shape::d3(3, 3, 1), iota(9))]).unwrap();
        assert_eq!(out[0].1, vec![8.0]);
        let mut avg = op(&[(0, int(1)), (1, int(3)), (2, int(2))]);
        assert!(!avg.int8_passthrough());
        let e = avg.set_int8_io(true, Some(GRID)).unwrap_err();
        assert!(e.to_string().contains("average"), "{e}");
        avg.set_int8_io(false, None).unwrap();
        assert!(op(&[(4, int(1))]).int8_passthrough());
        assert!(!op(&[(0, int(1)), (4, int(1))]).int8_passthrough());
        assert!(op(&[(7, int(1)), (8, int(2))]).int8_passthrough());
        // Pads as large as the kernel make windows of padding only: no int8.
        let mut padded = op(&[(1, int(2)), (2, int(2)), (3, int(2))]);
        assert!(!padded.int8_passthrough());
        assert!(padded.set_int8_io(true, Some(GRID)).is_err());
        // Full mode: a trailing pad plus the tail reaching the kernel size.
        assert!(!op(&[(1, int(2)), (2, int(3))]).int8_passthrough());
        assert!(op(&[(1, int(2)), (2, int(3)), (5, int(1))]).int8_passthrough());
        // SAME modes never pad a whole window.
        assert!(op(&[(1, int(2)), (2, int(3)), (5, int(2))]).int8_passthrough());
    }
}
