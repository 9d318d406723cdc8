//! Crop: cuts a box out of a blob, as ncnn's layer does. The output has the input's dims.
//!
//! Params (ncnn ids):
//! * `0 / 1 / 13 / 2 = woffset / hoffset / doffset / coffset`: where the box starts.
//! * `3 / 4 / 14 / 5 = outw / outh / outd / outc`: its size; `-233` = up to the end.
//! * `6 / 7 / 15 / 8 = woffset2 / hoffset2 / doffset2 / coffset2`: elements left out at
//!   the end of each axis.
//! * `9 / 10 / 11 = starts / ends / axes` (int arrays): the numpy-style slice form.
//! * `19 / 20 / 21 = starts_expr / ends_expr / axes_expr` (shape expressions pnnx writes for
//!   dynamic shapes, `ops::expression`): the slice form with its lists computed from the
//!   shapes of the layer's inputs (the first is cropped; the others are only read by the
//!   expressions), at load and again (without allocating) in `forward`.
//!
//! Forms, chosen as ncnn chooses them:
//! * Expressions (starts_expr and ends_expr given): as Slices, on the evaluated lists
//!   (without axes_expr the leading axes, as Slices; ncnn 1.0.20261020 crashes there).
//! * Slices (starts and ends both given): for each listed axis (numpy order, negative counts
//!   from the end; no axes = every axis of the input, in order), `start`
//!   (`-233` = 0, negative = from the end) and `end` (`-233` = the end; `end <= 0` counts from
//!   the end, so 0 means the end; clamped to the axis) select `[start, end)`.
//! * Offsets (any of outw/outh/outd/outc or of the end offsets set): along each axis the
//!   input has (1-D: w; 2-D: w, h; 3-D: w, h, c; 4-D: w, h, d, c) the box starts at the
//!   offset and has `n - offset - offset2` elements, at most `out` unless `out` is `-233`.
//!   `out = 0` (the default) on an axis the input has gives an empty box, an error.
//! * Reference (none of the above): a second input gives the size: its w and h (and its d
//!   for 4-D inputs); its c when it has the input's dims (3-D or 4-D), else the input's c.
//!   The other forms take exactly one input (ncnn refuses a second at load).
//!
//! Every box must fit in the input and be non-empty (checked at load, in `output_shapes`).
//! Negative offsets are refused at load; out-of-range axes in the slice form are refused
//! too (ncnn ignores them).

use super::expression::{self, Expr};
use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, Tensor, TensorMut};

/// "Up to the end" in ncnn's params.
const REST: i32 = -233;

#[derive(Clone, Debug, PartialEq)]
pub enum Form {
    /// Offsets, sizes and end offsets, each as (w, h, d, c).
    Offsets {
        off: [usize; 4],
        out: [i32; 4],
        off2: [usize; 4],
    },
    /// The size comes from a second input; the offsets are (w, h, d, c).
    Reference { off: [usize; 4] },
    /// numpy-style `[start, end)` per axis; `axes` empty = the leading axes in order.
    Slices {
        starts: Vec<i32>,
        ends: Vec<i32>,
        axes: Vec<i32>,
    },
    /// The slice lists as shape expressions of the inputs.
    Exprs {
        starts: Expr,
        ends: Expr,
        axes: Option<Expr>,
    },
}

#[derive(Debug)]
pub struct Crop {
    pub form: Form,
}

/// The box cut from an input: offsets and sizes as (w, h, d, c), and the output shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CropBox {
    pub off: [usize; 4],
    pub out: Shape,
}

fn extents(s: &Shape) -> [usize; 4] {
    [s.w, s.h, s.d, s.c]
}

/// The (w, h, d, c) slot of numpy axis `axis` of a `dims`-D blob.
fn slot_of_axis(dims: u8, axis: usize) -> usize {
    match (dims, axis) {
        (1, _) => 0,
        (2, 0) => 1,
        (3, 0) | (4, 0) => 3,
        (3, 1) | (4, 2) => 1,
        (4, 1) => 2,
        _ => 0,
    }
}

/// The (w, h, d, c) slots a `dims`-D blob has.
fn slots(dims: u8) -> &'static [usize] {
    match dims {
        1 => &[0],
        2 => &[0, 1],
        3 => &[0, 1, 3],
        _ => &[0, 1, 2, 3],
    }
}

impl Crop {
    pub fn new(pd: &ParamDict) -> LayerResult<Crop> {
        let (starts_expr, ends_expr) = (expression::param(pd, 19)?, expression::param(pd, 20)?);
        let axes_expr = expression::param(pd, 21)?;
        match (starts_expr, ends_expr) {
            (Some(starts), Some(ends)) => {
                return Ok(Crop {
                    form: Form::Exprs {
                        starts,
                        ends,
                        axes: axes_expr,
                    },
                })
            }
            (None, None) if axes_expr.is_none() => {}
            _ => {
                return Err(invalid(
                    "starts_expr and ends_expr (keys 19 / 20) go together (axes_expr, key 21, \
                     needs both)",
                ))
            }
        }
        let offset = |key: usize, name: &str| -> LayerResult<usize> {
            let v = pd.int(key, 0)?;
            usize::try_from(v).map_err(|_| invalid(format!("{name} (key {key}) is negative: {v}")))
        };
        let off = [
            offset(0, "woffset")?,
            offset(1, "hoffset")?,
            offset(13, "doffset")?,
            offset(2, "coffset")?,
        ];
        let off2 = [
            offset(6, "woffset2")?,
            offset(7, "hoffset2")?,
            offset(15, "doffset2")?,
            offset(8, "coffset2")?,
        ];
        let mut out = [0; 4];
        for (o, (key, name)) in
            out.iter_mut()
                .zip([(3, "outw"), (4, "outh"), (14, "outd"), (5, "outc")])
        {
            *o = pd.int(key, 0)?;
            if *o < 0 && *o != REST {
                return Err(invalid(format!(
                    "{name} (key {key}) must be -233 or non-negative, got {o}"
                )));
            }
        }
        let (starts, ends, axes) = (pd.int_array(9)?, pd.int_array(10)?, pd.int_array(11)?);
        let form = if !starts.is_empty() && !ends.is_empty() {
            if starts.len() != ends.len() || starts.len() > 4 {
                return Err(invalid(format!(
                    "starts / ends (keys 9 / 10) need the same length, 1 to 4, got {} and {}",
                    starts.len(),
                    ends.len()
                )));
            }
            if !axes.is_empty() && axes.len() != starts.len() {
                return Err(invalid(format!(
                    "axes (key 11) has {} entries, starts {}",
                    axes.len(),
                    starts.len()
                )));
            }
            Form::Slices { starts, ends, axes }
        } else if out.iter().any(|&o| o != 0) || off2.iter().any(|&o| o != 0) {
            Form::Offsets { off, out, off2 }
        } else {
            Form::Reference { off }
        };
        Ok(Crop { form })
    }

    /// The box for these inputs (shape inference and forward share it).
    pub(crate) fn crop_box(&self, inputs: &[Shape]) -> LayerResult<CropBox> {
        let one = matches!(self.form, Form::Offsets { .. } | Form::Slices { .. });
        if let Form::Exprs { .. } = self.form {
            if inputs.is_empty() {
                return Err(invalid("expects at least 1 input blob"));
            }
        } else if one {
            expect_inputs(inputs, 1)?;
        } else if inputs.len() != 2 {
            return Err(invalid(
                "without outw/outh/outd/outc, end offsets or starts/ends, Crop needs a second \
                 (reference) input",
            ));
        }
        let x = inputs[0];
        let n = extents(&x);
        let mut off = [0usize; 4];
        let mut len = n;
        match &self.form {
            Form::Offsets { off: o, out, off2 } => {
                for &k in slots(x.dims) {
                    let mut l = n[k] as i64 - o[k] as i64 - off2[k] as i64;
                    if out[k] != REST {
                        l = l.min(out[k] as i64);
                    }
                    off[k] = o[k];
                    len[k] = usize::try_from(l).unwrap_or(0);
                }
            }
            Form::Reference { off: o } => {
                let r = inputs[1];
                off = *o;
                for &k in slots(x.dims) {
                    len[k] = match k {
                        0 => r.w,
                        1 => r.h,
                        2 => r.d,
                        _ if r.dims == x.dims => r.c,
                        _ => x.c,
                    };
                }
                for (k, o) in off.iter_mut().enumerate() {
                    if !slots(x.dims).contains(&k) {
                        *o = 0;
                    }
                }
            }
            Form::Slices { starts, ends, axes } => {
                slice_box(x, starts, ends, axes, &mut off, &mut len)?
            }
            Form::Exprs { starts, ends, axes } => {
                // At most 4 axes: fixed arrays keep `forward` free of allocation.
                let mut lists = [[0i32; 4]; 3];
                let mut eval = |e: &Expr, i: usize| -> LayerResult<usize> {
                    let n = e.eval_into(inputs, &mut lists[i])?;
                    if n > 4 {
                        return Err(invalid(format!(
                            "expression `{}` gives {n} values, at most 4 (one per axis)",
                            e.text()
                        )));
                    }
                    Ok(n)
                };
                let ns = eval(starts, 0)?;
                let ne = eval(ends, 1)?;
                let na = match axes {
                    Some(a) => eval(a, 2)?,
                    None => 0,
                };
                if ns != ne || (na != 0 && na != ns) {
                    return Err(invalid(format!(
                        "starts_expr / ends_expr / axes_expr give {ns} / {ne} / {na} values"
                    )));
                }
                let [st, en, ax] = &lists;
                slice_box(x, &st[..ns], &en[..ne], &ax[..na], &mut off, &mut len)?
            }
        }
        for &k in slots(x.dims) {
            if len[k] == 0 || off[k] + len[k] > n[k] {
                return Err(invalid(format!(
                    "crop box (offsets {off:?}, size {len:?} as w, h, d, c) is empty or \
                     outside input {x}"
                )));
            }
        }
        let out = Shape::checked(x.dims, len[0], len[1], len[2], len[3])?;
        Ok(CropBox { off, out })
    }
}

/// The numpy-style slice rule: for each listed axis (`axes` empty = the leading axes),
/// `[start, end)` with -233 = the whole axis, negatives from the end, `end <= 0` from the end.
fn slice_box(
    x: Shape,
    starts: &[i32],
    ends: &[i32],
    axes: &[i32],
    off: &mut [usize; 4],
    len: &mut [usize; 4],
) -> LayerResult<()> {
    let n = extents(&x);
    let count = if axes.is_empty() {
        x.dims as usize
    } else {
        axes.len()
    };
    if count > starts.len() {
        return Err(invalid(format!(
            "starts / ends have {} entries, input {x} needs {count}",
            starts.len()
        )));
    }
    for i in 0..count {
        let axis = if axes.is_empty() {
            i as i64
        } else {
            let a = axes[i] as i64;
            if a < 0 {
                a + x.dims as i64
            } else {
                a
            }
        };
        if !(0..x.dims as i64).contains(&axis) {
            return Err(invalid(format!(
                "axis {} out of range for input {x}",
                axes[i]
            )));
        }
        let k = slot_of_axis(x.dims, axis as usize);
        let size = n[k] as i64;
        let start = if starts[i] == REST {
            0
        } else {
            starts[i] as i64
        };
        let end = if ends[i] == REST {
            size
        } else {
            ends[i] as i64
        };
        let o = if start >= 0 { start } else { size + start };
        let e = size.min(if end > 0 { end } else { size + end });
        if o < 0 || e - o < 1 {
            return Err(invalid(format!(
                "slice [{}, {}) of axis {axis} is empty or outside input {x}",
                starts[i], ends[i]
            )));
        }
        off[k] = o as usize;
        len[k] = (e - o) as usize;
    }
    Ok(())
}

/// Copies the box of `dst`'s shape starting at `off` (w, h, d, c) out of `src`.
pub(crate) fn copy_box(src: &Tensor, off: [usize; 4], dst: &mut TensorMut) {
    let (s, o) = (src.shape, dst.shape);
    let mut rows = dst.data.chunks_exact_mut(o.w);
    for c in 0..o.c {
        for d in 0..o.d {
            for h in 0..o.h {
                let start = (((c + off[3]) * s.d + d + off[2]) * s.h + h + off[1]) * s.w + off[0];
                // The planner sized dst to o: one row per (c, d, h).
                if let Some(row) = rows.next() {
                    row.copy_from_slice(&src.data[start..start + o.w]);
                }
            }
        }
    }
}

impl Op for Crop {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        Ok(vec![self.crop_box(inputs)?.out])
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        _: &mut Ctx,
    ) -> LayerResult<()> {
        let b = match inputs {
            [x] => self.crop_box(&[x.shape])?,
            [x, r] => self.crop_box(&[x.shape, r.shape])?,
            _ => return Err(invalid("expects 1 or 2 input blobs")),
        };
        copy_box(&inputs[0], b.off, &mut outputs[0]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::ops::harness::{int, iota, params, run};

    fn op(p: &[(usize, Value)]) -> Crop {
        Crop::new(&params(p)).unwrap()
    }

    fn ints(v: &[i32]) -> Value {
        Value::IntArray(v.to_vec())
    }

    /// Plain reference: numpy-order index arithmetic on the dense data.
    fn reference(x: Shape, data: &[f32], b: CropBox) -> Vec<f32> {
        let o = b.out;
        let mut out = Vec::new();
        for c in 0..o.c {
            for d in 0..o.d {
                for h in 0..o.h {
                    for w in 0..o.w {
                        let (c, d, h, w) = (c + b.off[3], d + b.off[2], h + b.off[1], w + b.off[0]);
                        out.push(data[((c * x.d + d) * x.h + h) * x.w + w]);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn offsets_and_sizes() {
        // 3-D 4x3x2 (w, h, c): w from 1, 2 wide; h all; c from 1, the rest.
        let crop = op(&[
            (0, int(1)),
            (3, int(2)),
            (4, int(-233)),
            (2, int(1)),
            (5, int(-233)),
        ]);
        let (s, out) = run(&crop, &[(Shape::d3(4, 3, 2), iota(24))])
            .unwrap()
            .remove(0);
        assert_eq!(s, Shape::d3(2, 3, 1));
        assert_eq!(out, [13.0, 14.0, 17.0, 18.0, 21.0, 22.0]);
        // 1-D: end offset 1 with out = -233; out larger than the rest is clamped.
        let end = op(&[(0, int(1)), (6, int(1)), (3, int(-233))]);
        let (s, out) = run(&end, &[(Shape::d1(5), iota(5))]).unwrap().remove(0);
        assert_eq!((s, out), (Shape::d1(3), vec![1.0, 2.0, 3.0]));
        let big = op(&[(0, int(2)), (3, int(9))]);
        let (s, _) = run(&big, &[(Shape::d1(5), iota(5))]).unwrap().remove(0);
        assert_eq!(s, Shape::d1(3));
        // 3-D with end offsets only: h2 and c2 given, out -233 everywhere.
        let ends = op(&[
            (3, int(-233)),
            (4, int(-233)),
            (5, int(-233)),
            (7, int(1)),
            (8, int(1)),
        ]);
        let (s, out) = run(&ends, &[(Shape::d3(4, 3, 2), iota(24))])
            .unwrap()
            .remove(0);
        assert_eq!(s, Shape::d3(4, 2, 1));
        assert_eq!(out, iota(8));
        // 4-D: d offset 1 of 3, the rest; everything else whole.
        let depth = op(&[
            (13, int(1)),
            (3, int(-233)),
            (4, int(-233)),
            (14, int(-233)),
            (5, int(-233)),
        ]);
        let x = Shape::d4(2, 1, 3, 2);
        let (s, out) = run(&depth, &[(x, iota(12))]).unwrap().remove(0);
        assert_eq!(s, Shape::d4(2, 1, 2, 2));
        assert_eq!(out, [2.0, 3.0, 4.0, 5.0, 8.0, 9.0, 10.0, 11.0]);
    }

    #[test]
    fn reference_blob_gives_the_size() {
        let crop = op(&[(0, int(1)), (1, int(1)), (13, int(1))]);
        let x = Shape::d4(5, 4, 3, 2);
        for (r, want) in [
            (Shape::d3(3, 2, 2), Shape::d4(3, 2, 1, 2)),
            (Shape::d4(3, 2, 2, 1), Shape::d4(3, 2, 2, 1)),
            (Shape::d1(3), Shape::d4(3, 1, 1, 2)),
        ] {
            let b = crop.crop_box(&[x, r]).unwrap();
            assert_eq!(b.out, want);
            let data = iota(x.len());
            let (s, out) = run(&crop, &[(x, data.clone()), (r, vec![0.0; r.len()])])
                .unwrap()
                .remove(0);
            assert_eq!(s, want);
            assert_eq!(out, reference(x, &data, b));
        }
        // 3-D input: c from a 3-D reference only (else the input's c, from coffset: this
        // one does not fit, ncnn would read past the end).
        let c = op(&[(0, int(1)), (2, int(1))]);
        let x = Shape::d3(4, 3, 3);
        assert!(c.output_shapes(&[x, Shape::d2(3, 2)]).is_err());
        assert!(c.output_shapes(&[x, Shape::d3(3, 2, 3)]).is_err());
        assert_eq!(
            c.output_shapes(&[x, Shape::d3(3, 2, 2)]).unwrap(),
            [Shape::d3(3, 2, 2)]
        );
        let c0 = op(&[(0, int(1))]);
        assert_eq!(
            c0.output_shapes(&[x, Shape::d2(3, 2)]).unwrap(),
            [Shape::d3(3, 2, 3)]
        );
        let e = c.output_shapes(&[x]).unwrap_err();
        assert!(e.0.contains("second"), "{e}");
    }

    #[test]
    fn one_input_forms_refuse_a_second_input() {
        let crop = op(&[(0, int(1)), (3, int(2))]);
        let out = run(&crop, &[(Shape::d1(5), iota(5))]).unwrap();
        assert_eq!(out[0], (Shape::d1(2), vec![1.0, 2.0]));
        let e = crop
            .output_shapes(&[Shape::d1(5), Shape::d1(1)])
            .unwrap_err();
        assert!(e.0.contains("1 input"), "{e}");
    }

    #[test]
    fn numpy_slices() {
        let x = Shape::d3(5, 4, 3);
        let data = iota(x.len());
        // axes c and w: c [-2, INT_MAX) = 1..3, w [1, -1) = 1..4; h whole.
        let crop = op(&[
            (9, ints(&[-2, 1])),
            (10, ints(&[i32::MAX, -1])),
            (11, ints(&[0, -1])),
        ]);
        let b = crop.crop_box(&[x]).unwrap();
        assert_eq!(b.off, [1, 0, 0, 1]);
        assert_eq!(b.out, Shape::d3(3, 4, 2));
        let (_, out) = run(&crop, &[(x, data.clone())]).unwrap().remove(0);
        assert_eq!(out, reference(x, &data, b));
        assert_eq!(out[0], 21.0);
        // No axes: the leading axes; end 0 and -233 mean the end, start -233 the start.
        let all = op(&[(9, ints(&[-233, 1, 2])), (10, ints(&[0, -233, 4]))]);
        let b = all.crop_box(&[x]).unwrap();
        assert_eq!((b.off, b.out), ([2, 1, 0, 0], Shape::d3(2, 3, 3)));
        // 4-D, axis d; 2-D, axis h.
        let d = op(&[(9, ints(&[1])), (10, ints(&[2])), (11, ints(&[1]))]);
        let b = d.crop_box(&[Shape::d4(2, 2, 3, 2)]).unwrap();
        assert_eq!((b.off, b.out), ([0, 0, 1, 0], Shape::d4(2, 2, 1, 2)));
        let h = op(&[(9, ints(&[1])), (10, ints(&[3])), (11, ints(&[-2]))]);
        let b = h.crop_box(&[Shape::d2(4, 5)]).unwrap();
        assert_eq!((b.off, b.out), ([0, 1, 0, 0], Shape::d2(4, 2)));
        // Bad slices.
        assert!(d.output_shapes(&[Shape::d1(4)]).is_err()); // axis 1 of a 1-D blob
        let empty = op(&[(9, ints(&[3])), (10, ints(&[3])), (11, ints(&[0]))]);
        assert!(empty.output_shapes(&[Shape::d1(5)]).is_err());
        let short = op(&[(9, ints(&[1])), (10, ints(&[3]))]);
        assert!(short.output_shapes(&[Shape::d2(5, 5)]).is_err());
    }

    #[test]
    fn bad_params_and_shapes_are_errors() {
        let err = |p: &[(usize, Value)]| Crop::new(&params(p)).unwrap_err().0;
        assert!(err(&[(0, int(-1))]).contains("woffset"));
        assert!(err(&[(3, int(-2))]).contains("outw"));
        assert!(err(&[(9, ints(&[1, 2])), (10, ints(&[3]))]).contains("same length"));
        assert!(err(&[(9, ints(&[1])), (10, ints(&[3])), (11, ints(&[0, 1]))]).contains("axes"));
        assert!(err(&[(19, Value::Str("0".into()))]).contains("starts_expr"));
        // outh defaults to 0: a 2-D crop giving only outw is empty.
        let w_only = op(&[(3, int(2))]);
        assert!(w_only.output_shapes(&[Shape::d1(4)]).is_ok());
        assert!(w_only.output_shapes(&[Shape::d2(4, 3)]).is_err());
        let far = op(&[(0, int(4)), (3, int(-233))]);
        assert!(far.output_shapes(&[Shape::d1(4)]).is_err());
    }
    /// The expression form: lists from the shapes of both inputs; only the first is cropped.
    #[test]
    fn expression_form() {
        let s = |t: &str| Value::Str(t.into());
        let c = op(&[(19, s("1,0")), (20, s("-(0h,1),1w")), (21, s("1,2"))]);
        let x = Shape::d3(6, 5, 4);
        let r = Shape::d1(3);
        let out = run(&c, &[(x, iota(x.len())), (r, vec![0.0; 3])]).unwrap();
        // Axis 1 (h): rows [1, 4); axis 2 (w): columns [0, 3); every channel.
        assert_eq!(out[0].0, Shape::d3(3, 3, 4));
        let want: Vec<f32> = (0..4)
            .flat_map(|c| {
                (1..4).flat_map(move |h| (0..3).map(move |w| (c * 30 + h * 6 + w) as f32))
            })
            .collect();
        assert_eq!(out[0].1, want);
        // The lists must agree in length; a lone starts_expr is refused.
        let bad = Crop::new(&params(&[(19, s("1,0")), (20, s("3"))])).unwrap();
        assert!(bad.crop_box(&[x]).is_err());
        assert!(Crop::new(&params(&[(19, s("1"))])).is_err());
    }
}
