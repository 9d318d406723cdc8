//! BinaryOp: element-wise arithmetic on two blobs with ncnn's broadcasting, or on one blob and
//! a scalar (then in place).
//!
//! Params: `0 = op_type` (0 add, 1 sub, 2 mul, 3 div, 4 max, 5 min, 6 pow, 7 rsub, 8 rdiv,
//! 9 rpow, 10 atan2, 11 ratan2, 12 fmod (C's, truncating), 13 rfmod, 14 logaddexp,
//! 15 floor_divide, 16 rfloor_divide, 17 remainder (IEEE: the quotient rounded half to even),
//! 18 rremainder), `1 = with_scalar`, `2 = b` (the scalar).
//!
//! Broadcasting (ncnn's rules): a blob of lower rank is first lifted to the other's rank:
//! a 1-D blob lines up with the other's outermost axis when its length equals that axis (h of a
//! 2-D blob, c of a 3-D / 4-D blob), otherwise with w; a 2-D or 3-D blob lines up with the
//! outermost axes. Then every axis must be equal or 1 in one of the two, and size-1 axes repeat.
//! Like ncnn, the larger operand goes first and the operator is mirrored when they are swapped
//! (this only matters for which NaN or signed zero `max` / `min` return).

use super::elementwise::for_each_chunk;
use super::elementwise::PARALLEL_MIN;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::pool::SharedMut;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
    RSub,
    RDiv,
    RPow,
    Atan2,
    RAtan2,
    Fmod,
    RFmod,
    LogAddExp,
    FloorDivide,
    RFloorDivide,
    Remainder,
    RRemainder,
}

impl BinaryKind {
    pub fn from_type(t: i32) -> LayerResult<BinaryKind> {
        use BinaryKind::*;
        Ok(match t {
            0 => Add,
            1 => Sub,
            2 => Mul,
            3 => Div,
            4 => Max,
            5 => Min,
            6 => Pow,
            7 => RSub,
            8 => RDiv,
            9 => RPow,
            10 => Atan2,
            11 => RAtan2,
            12 => Fmod,
            13 => RFmod,
            14 => LogAddExp,
            15 => FloorDivide,
            16 => RFloorDivide,
            17 => Remainder,
            18 => RRemainder,
            _ => return Err(invalid(format!("unknown binary op_type {t}"))),
        })
    }

    /// The operator with its operands exchanged: `op(x, y) == op.reversed()(y, x)`.
    pub fn reversed(self) -> BinaryKind {
        use BinaryKind::*;
        match self {
            Sub => RSub,
            Div => RDiv,
            Pow => RPow,
            Atan2 => RAtan2,
            RSub => Sub,
            RDiv => Div,
            RPow => Pow,
            RAtan2 => Atan2,
            Fmod => RFmod,
            RFmod => Fmod,
            FloorDivide => RFloorDivide,
            RFloorDivide => FloorDivide,
            Remainder => RRemainder,
            RRemainder => Remainder,
            other => other,
        }
    }

    #[inline]
    pub fn apply(self, x: f32, y: f32) -> f32 {
        use BinaryKind::*;
        match self {
            Add => x + y,
            Sub => x - y,
            Mul => x * y,
            Div => x / y,
            // std::max / std::min semantics: the first operand wins ties and NaN comparisons.
            Max => {
                if x < y {
                    y
                } else {
                    x
                }
            }
            Min => {
                if y < x {
                    y
                } else {
                    x
                }
            }
            Pow => x.powf(y),
            RSub => y - x,
            RDiv => y / x,
            RPow => y.powf(x),
            Atan2 => x.atan2(y),
            RAtan2 => y.atan2(x),
            Fmod => x % y,
            RFmod => y % x,
            LogAddExp => {
                let (hi, lo) = (Max.apply(x, y), Min.apply(x, y));
                hi + (lo - hi).exp().ln_1p()
            }
            FloorDivide => (x / y).floor(),
            RFloorDivide => (y / x).floor(),
            Remainder => remainder(x, y),
            RRemainder => remainder(y, x),
        }
    }
}

/// Binds `$op` to `$kind`'s operation as a closure of a constant kind and evaluates `$body`
/// with it, so the loops in `$body` are compiled per operation (and vectorised where the
/// operation allows) instead of matching on the kind for every element.
macro_rules! per_kind {
    ($kind:expr, $op:ident => $body:expr) => {{
        use BinaryKind::*;
        match $kind {
            Add => {
                let $op = |x: f32, y: f32| Add.apply(x, y);
                $body
            }
            Sub => {
                let $op = |x: f32, y: f32| Sub.apply(x, y);
                $body
            }
            Mul => {
                let $op = |x: f32, y: f32| Mul.apply(x, y);
                $body
            }
            Div => {
                let $op = |x: f32, y: f32| Div.apply(x, y);
                $body
            }
            Max => {
                let $op = |x: f32, y: f32| Max.apply(x, y);
                $body
            }
            Min => {
                let $op = |x: f32, y: f32| Min.apply(x, y);
                $body
            }
            RSub => {
                let $op = |x: f32, y: f32| RSub.apply(x, y);
                $body
            }
            RDiv => {
                let $op = |x: f32, y: f32| RDiv.apply(x, y);
                $body
            }
            // Library calls per element whatever the loop: one instance.
            k @ (Pow | RPow | Atan2 | RAtan2 | Fmod | RFmod | LogAddExp | FloorDivide
            | RFloorDivide | Remainder | RRemainder) => {
                let $op = |x: f32, y: f32| k.apply(x, y);
                $body
            }
        }
    }};
}

/// C's `remainderf`: `x - n * y` with `n` the quotient `x / y` rounded half to even, computed
/// exactly: `|x| mod 2|y|` (exact in f64) is in [0, 2|y|), where the nearest multiple of |y|
/// is 0, |y| or 2|y| (ties at |y|/2 and 3|y|/2 go to the even 0 and 2|y|).
fn remainder(x: f32, y: f32) -> f32 {
    if x.is_nan() || y.is_nan() || x.is_infinite() || y == 0.0 {
        return f32::NAN;
    }
    if y.is_infinite() {
        return x;
    }
    let p = (y as f64).abs();
    let r = ((x as f64) % (2.0 * p)).abs();
    let r = if r >= 1.5 * p {
        r - 2.0 * p
    } else if r > 0.5 * p {
        r - p
    } else {
        r
    };
    // remainder(-x, y) = -remainder(x, y), zero included.
    if x.is_sign_negative() {
        -r as f32
    } else {
        r as f32
    }
}

#[derive(Debug)]
pub struct BinaryOp {
    pub kind: BinaryKind,
    /// `Some(b)`: one input, combined with the scalar b in place.
    pub scalar: Option<f32>,
}

impl BinaryOp {
    pub fn new(pd: &ParamDict) -> LayerResult<BinaryOp> {
        let kind = BinaryKind::from_type(pd.int(0, 0)?)?;
        let scalar = if pd.int(1, 0)? != 0 {
            Some(pd.float(2, 0.0)?)
        } else {
            None
        };
        Ok(BinaryOp { kind, scalar })
    }
}

/// Lifts `x` to `rank` dimensions against `other` (which has that rank), per ncnn's rules.
fn lift(x: Shape, other: Shape, rank: u8) -> Shape {
    let outer_of_other = if other.dims == 2 { other.h } else { other.c };
    let mut s = Shape {
        dims: rank,
        w: 1,
        h: 1,
        d: 1,
        c: 1,
    };
    match (x.dims, rank) {
        (a, b) if a == b => return x,
        (1, 2) if x.w == outer_of_other => s.h = x.w,
        (1, 3) | (1, 4) if x.w == outer_of_other => s.c = x.w,
        (1, _) => s.w = x.w,
        (2, 3) => (s.h, s.c) = (x.w, x.h),
        (2, 4) => (s.d, s.c) = (x.w, x.h),
        (3, 4) => (s.h, s.d, s.c) = (x.w, x.h, x.c),
        _ => unreachable!("lift to a lower rank"),
    }
    s
}

/// Both operands lifted to the common rank, and the output shape.
fn broadcast_shapes(a: Shape, b: Shape) -> LayerResult<(Shape, Shape, Shape)> {
    let rank = a.dims.max(b.dims);
    let (a2, b2) = (lift(a, b, rank), lift(b, a, rank));
    let axis = |x: usize, y: usize| -> LayerResult<usize> {
        if x == y || y == 1 {
            Ok(x)
        } else if x == 1 {
            Ok(y)
        } else {
            Err(invalid(format!("shapes {a} and {b} do not broadcast")))
        }
    };
    let out = Shape {
        dims: rank,
        w: axis(a2.w, b2.w)?,
        h: axis(a2.h, b2.h)?,
        d: axis(a2.d, b2.d)?,
        c: axis(a2.c, b2.c)?,
    };
    Ok((a2, b2, out))
}

/// Writes output rows `rows` (each `out.w` long, rows counted over c, d, h) of
/// `kind(a, b)` with size-1 axes of `a` and `b` repeated.
fn broadcast_rows(
    kind: impl Fn(f32, f32) -> f32,
    a: &Tensor,
    b: &Tensor,
    out_shape: Shape,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) {
    let w = out_shape.w;
    let row_start = |s: &Shape, q: usize, z: usize, y: usize| {
        let (q, z, y) = (q.min(s.c - 1), z.min(s.d - 1), y.min(s.h - 1));
        ((q * s.d + z) * s.h + y) * s.w
    };
    let first = rows.start;
    for r in rows {
        let y = r % out_shape.h;
        let z = (r / out_shape.h) % out_shape.d;
        let q = r / (out_shape.h * out_shape.d);
        let pa = &a.data[row_start(&a.shape, q, z, y)..][..a.shape.w];
        let pb = &b.data[row_start(&b.shape, q, z, y)..][..b.shape.w];
        let dst = &mut out[(r - first) * w..][..w];
        match (pa.len(), pb.len()) {
            (x, y) if x == y => {
                for ((o, x), y) in dst.iter_mut().zip(pa).zip(pb) {
                    *o = kind(*x, *y);
                }
            }
            (_, 1) => dst
                .iter_mut()
                .zip(pa)
                .for_each(|(o, x)| *o = kind(*x, pb[0])),
            _ => dst
                .iter_mut()
                .zip(pb)
                .for_each(|(o, y)| *o = kind(pa[0], *y)),
        }
    }
}

impl Op for BinaryOp {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        if self.scalar.is_some() {
            expect_inputs(inputs, 1)?;
            return Ok(vec![inputs[0]]);
        }
        expect_inputs(inputs, 2)?;
        let (_, _, out) = broadcast_shapes(inputs[0], inputs[1])?;
        Ok(vec![out])
    }

    fn storage(&self) -> Storage {
        if self.scalar.is_some() {
            Storage::InPlace
        } else {
            Storage::New
        }
    }

    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let b = self
            .scalar
            .ok_or_else(|| invalid("binary op without a scalar runs out of place"))?;
        per_kind!(self.kind, op => for_each_chunk(ctx.pool, x.data, &|part| {
            part.iter_mut().for_each(|v| *v = op(*v, b))
        }))
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let (a2, b2, out_shape) = broadcast_shapes(inputs[0].shape, inputs[1].shape)?;
        let mut a = Tensor {
            shape: a2,
            data: inputs[0].data,
        };
        let mut b = Tensor {
            shape: b2,
            data: inputs[1].data,
        };
        let mut kind = self.kind;
        if a.data.len() < b.data.len() {
            std::mem::swap(&mut a, &mut b);
            kind = kind.reversed();
        }
        let out = &mut outputs[0];
        let rows = out_shape.c * out_shape.d * out_shape.h;
        let chunks = if out.data.len() >= PARALLEL_MIN {
            ctx.pool.threads().min(rows)
        } else {
            1
        };
        let w = out_shape.w;
        let shared = SharedMut::new(out.data);
        ctx.pool
            .run(chunks, &|t, _| {
                let (lo, hi) = (rows * t / chunks, rows * (t + 1) / chunks);
                // SAFETY: each task writes its own rows.
                let dst = unsafe { shared.slice(lo * w, (hi - lo) * w) };
                per_kind!(kind, op => broadcast_rows(op, &a, &b, out_shape, lo..hi, dst));
            })
            .map_err(|e| invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{float, int, iota, params, run, run_threads};
    use crate::rng::Rng;

    fn op(t: i32) -> BinaryOp {
        BinaryOp::new(&params(&[(0, int(t))])).unwrap()
    }

    /// numpy-style reference on lifted shapes: out[q][z][y][x] with size-1 axes repeated.
    fn reference(
        kind: BinaryKind,
        a: &[f32],
        sa: Shape,
        b: &[f32],
        sb: Shape,
    ) -> (Shape, Vec<f32>) {
        let (a2, b2, o) = broadcast_shapes(sa, sb).unwrap();
        let at = |s: Shape, q: usize, z: usize, y: usize, x: usize| {
            let pick = |i: usize, n: usize| if n == 1 { 0 } else { i };
            ((pick(q, s.c) * s.d + pick(z, s.d)) * s.h + pick(y, s.h)) * s.w + pick(x, s.w)
        };
        let mut v = Vec::new();
        for q in 0..o.c {
            for z in 0..o.d {
                for y in 0..o.h {
                    for x in 0..o.w {
                        v.push(kind.apply(a[at(a2, q, z, y, x)], b[at(b2, q, z, y, x)]));
                    }
                }
            }
        }
        (o, v)
    }

    #[test]
    fn all_operators_by_hand() {
        let a = vec![1.0f32, -2.0, 3.0];
        let b = vec![2.0f32, 4.0, -1.0];
        let want: [[f32; 3]; 19] = [
            [3.0, 2.0, 2.0],
            [-1.0, -6.0, 4.0],
            [2.0, -8.0, -3.0],
            [0.5, -0.5, -3.0],
            [2.0, 4.0, 3.0],
            [1.0, -2.0, -1.0],
            [1.0, 16.0, 1.0 / 3.0],
            [1.0, 6.0, -4.0],
            [2.0, -2.0, -1.0 / 3.0],
            [2.0, 4.0f32.powf(-2.0), -1.0],
            [1.0f32.atan2(2.0), (-2.0f32).atan2(4.0), 3.0f32.atan2(-1.0)],
            [2.0f32.atan2(1.0), 4.0f32.atan2(-2.0), (-1.0f32).atan2(3.0)],
            [1.0, -2.0, 0.0],
            [0.0, 0.0, -1.0],
            [2.313_261_7, 4.002_476, 3.018_15],
            [0.0, -1.0, -3.0],
            [2.0, -2.0, -1.0],
            [1.0, -2.0, 0.0],
            [0.0, 0.0, -1.0],
        ];
        for (t, w) in want.iter().enumerate() {
            let s = Shape::d1(3);
            let got = run(&op(t as i32), &[(s, a.clone()), (s, b.clone())]).unwrap();
            crate::ops::harness::assert_close(&got[0].1, w, 1e-6);
        }
    }

    #[test]
    fn remainder_rounds_the_quotient_half_to_even() {
        let cases = [
            (7.0, 2.0, -1.0),
            (5.0, 2.0, 1.0),
            (-7.0, 2.0, 1.0),
            (7.5, -2.0, -0.5),
            (1.0, 3.0, 1.0),
            (2.0, 3.0, -1.0),
            (6.0, 3.0, 0.0),
            (-6.0, 3.0, -0.0),
            (0.5, 0.25, 0.0),
            (1e20, 3.0, 1e20f32 % 3.0 - 3.0),
            (1.0, f32::INFINITY, 1.0),
        ];
        for (x, y, want) in cases {
            let got = remainder(x, y);
            assert_eq!(got, want, "remainder({x}, {y})");
            assert_eq!(
                got.is_sign_negative(),
                want.is_sign_negative(),
                "sign of {x}, {y}"
            );
        }
        assert!(remainder(1.0, 0.0).is_nan());
        assert!(remainder(f32::INFINITY, 2.0).is_nan());
    }

    #[test]
    fn scalar_form_is_in_place() {
        let o = BinaryOp::new(&params(&[(0, int(1)), (1, int(1)), (2, float(127.5))])).unwrap();
        assert_eq!(o.storage(), Storage::InPlace);
        let got = run(&o, &[(Shape::d3(1, 1, 2), vec![127.5, 255.0])]).unwrap();
        assert_eq!(got[0].1, vec![0.0, 127.5]);
        let r = BinaryOp::new(&params(&[(0, int(8)), (1, int(1)), (2, float(1.0))])).unwrap();
        assert_eq!(
            run(&r, &[(Shape::d1(2), vec![2.0, 4.0])]).unwrap()[0].1,
            vec![0.5, 0.25]
        );
    }

    #[test]
    fn broadcast_shapes_follow_ncnn_rules() {
        let shapes = |a, b| broadcast_shapes(a, b).map(|(_, _, o)| o);
        // 3-D with per-channel 1-D (length c) and with per-w 1-D.
        let x = Shape::d3(4, 3, 2);
        assert_eq!(lift(Shape::d1(2), x, 3), Shape::d3(1, 1, 2));
        assert_eq!(lift(Shape::d1(4), x, 3), Shape::d3(4, 1, 1));
        assert_eq!(shapes(x, Shape::d1(2)).unwrap(), x);
        assert_eq!(shapes(x, Shape::d1(4)).unwrap(), x);
        // Equal sizes prefer the outer axis.
        assert_eq!(lift(Shape::d1(2), Shape::d2(2, 2), 2), Shape::d2(1, 2));
        // 2-D lines up with (h, c).
        assert_eq!(lift(Shape::d2(3, 2), x, 3), Shape::d3(1, 3, 2));
        // 4-D.
        let y = Shape::d4(5, 4, 3, 2);
        assert_eq!(lift(Shape::d3(4, 3, 2), y, 4), Shape::d4(1, 4, 3, 2));
        assert_eq!(lift(Shape::d2(3, 2), y, 4), Shape::d4(1, 1, 3, 2));
        assert_eq!(lift(Shape::d1(5), y, 4), Shape::d4(5, 1, 1, 1));
        // Explicit size-1 axes on both sides.
        assert_eq!(
            shapes(Shape::d3(4, 1, 2), Shape::d3(1, 3, 1)).unwrap(),
            Shape::d3(4, 3, 2)
        );
        // Incompatible.
        assert!(shapes(x, Shape::d1(3)).is_err());
        assert!(shapes(x, Shape::d3(4, 2, 2)).is_err());
    }

    #[test]
    fn broadcasting_matches_reference_in_both_operand_orders() {
        let mut rng = Rng::new(3);
        let cases = [
            (Shape::d3(5, 3, 4), Shape::d1(4)),
            (Shape::d3(5, 3, 4), Shape::d1(5)),
            (Shape::d3(5, 3, 4), Shape::d1(1)),
            (Shape::d3(5, 3, 4), Shape::d2(3, 4)),
            (Shape::d3(5, 3, 4), Shape::d3(1, 1, 4)),
            (Shape::d3(5, 3, 4), Shape::d3(5, 1, 4)),
            (Shape::d3(5, 3, 4), Shape::d3(1, 3, 1)),
            (Shape::d3(5, 1, 4), Shape::d3(1, 3, 1)),
            (Shape::d3(5, 3, 4), Shape::d3(5, 3, 1)),
            (Shape::d2(7, 3), Shape::d1(3)),
            (Shape::d2(7, 3), Shape::d1(7)),
            (Shape::d2(7, 3), Shape::d2(1, 3)),
            (Shape::d2(7, 3), Shape::d2(7, 1)),
            (Shape::d4(3, 2, 4, 5), Shape::d1(5)),
            (Shape::d4(3, 2, 4, 5), Shape::d2(4, 5)),
            (Shape::d4(3, 2, 4, 5), Shape::d3(2, 4, 5)),
            (Shape::d4(3, 2, 4, 5), Shape::d4(3, 1, 4, 1)),
            (Shape::d1(6), Shape::d1(6)),
        ];
        for (sa, sb) in cases {
            let a = rng.vec(sa.len(), -2.0, 2.0);
            let b = rng.vec(sb.len(), 0.5, 2.0);
            for t in [0, 1, 3, 4, 7] {
                let kind = BinaryKind::from_type(t).unwrap();
                let want = reference(kind, &a, sa, &b, sb);
                let got = run(&op(t), &[(sa, a.clone()), (sb, b.clone())]).unwrap();
                assert_eq!(got[0], want, "{sa} op{t} {sb}");
                let want = reference(kind, &b, sb, &a, sa);
                let got = run_threads(&op(t), &[(sb, b.clone()), (sa, a.clone())], 2).unwrap();
                assert_eq!(got[0], want, "{sb} op{t} {sa}");
            }
        }
    }

    #[test]
    fn per_channel_by_hand() {
        let got = run(
            &op(2),
            &[
                (Shape::d3(2, 1, 2), iota(4)),
                (Shape::d1(2), vec![10.0, 100.0]),
            ],
        )
        .unwrap();
        assert_eq!(got[0].1, vec![0.0, 10.0, 200.0, 300.0]);
        // The smaller operand first: 1 - x per channel.
        let got = run(
            &op(1),
            &[
                (Shape::d1(2), vec![1.0, 2.0]),
                (Shape::d3(2, 1, 2), iota(4)),
            ],
        )
        .unwrap();
        assert_eq!(got[0].1, vec![1.0, 0.0, 0.0, -1.0]);
    }

    #[test]
    fn errors() {
        assert!(BinaryOp::new(&params(&[(0, int(19))])).is_err());
        assert!(BinaryOp::new(&params(&[(0, int(-1))])).is_err());
        assert!(op(0).output_shapes(&[Shape::d1(2)]).is_err());
        let s = BinaryOp::new(&params(&[(1, int(1))])).unwrap();
        assert!(s.output_shapes(&[Shape::d1(2), Shape::d1(2)]).is_err());
    }
}
