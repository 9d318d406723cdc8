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

use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::pool::SharedMut;
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

    /// One channel of windowed pooling.
    fn pool_channel(&self, src: &[f32], w: usize, h: usize, gx: Axis, gy: Axis, out: &mut [f32]) {
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

    fn adaptive_channel(
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

    fn global_channel(&self, src: &[f32]) -> f32 {
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
        let x = &inputs[0];
        let (w, h, c) = (x.shape.w, x.shape.h, x.shape.c);
        let out_shape = outputs[0].shape;
        let out_plane = out_shape.len() / c;
        let geometry = if self.global || self.adaptive.is_some() {
            None
        } else {
            Some(self.geometry(w, h)?)
        };
        let out = SharedMut::new(outputs[0].data);
        ctx.pool
            .run(c, &|q, _| {
                // SAFETY: each task writes its own channel's outputs.
                let dst = unsafe { out.slice(q * out_plane, out_plane) };
                let src = x.channel(q);
                if self.global {
                    dst[0] = self.global_channel(src);
                } else if let Some((ow, oh)) = self.adaptive {
                    self.adaptive_channel(src, w, h, ow, oh, dst);
                } else if let Some((gx, gy)) = geometry {
                    self.pool_channel(src, w, h, gx, gy, dst);
                }
            })
            .map_err(|e| invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::ops::harness::{assert_close, int, iota, params, run, run_threads};
    use crate::rng::Rng;

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
}
