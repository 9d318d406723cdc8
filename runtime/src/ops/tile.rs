//! Tile: repeats a blob along its axes, as ncnn's layer does.
//!
//! Params (ncnn ids):
//! * `0 = axis`, `1 = tiles`: repeat `tiles` times along one numpy axis (0 = outermost).
//!   1-D blobs repeat w whatever the axis; an axis the blob does not have leaves it as it
//!   is (ncnn's behaviour). Negative axes and `tiles < 1` are refused at load (ncnn refuses
//!   them too).
//! * `2 = repeats` (int array, 1 to 4 entries, each >= 1): numpy's `tile`. The repeats are
//!   matched to the axes from the innermost (w) out; with more repeats than the blob has
//!   dims the output gains dims. One ncnn twist: a 3-D blob made 4-D is seen as
//!   `c x 1 x h x w`, so the first of four repeats multiplies the channels and the second
//!   makes the depth (numpy would put the channels in the depth).
//!
//! The output element at (c, d, h, w) is the input's at (c mod C, d mod D, h mod H, w mod W).

use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Debug)]
pub struct Tile {
    pub axis: usize,
    pub tiles: usize,
    /// numpy order; empty: the axis / tiles form.
    pub repeats: Vec<usize>,
}

impl Tile {
    pub fn new(pd: &ParamDict) -> LayerResult<Tile> {
        let axis = pd.int(0, 0)?;
        let tiles = pd.int(1, 1)?;
        let repeats = pd.int_array(2)?;
        if axis < 0 {
            return Err(invalid(format!(
                "axis (key 0) must not be negative, got {axis}"
            )));
        }
        if tiles < 1 {
            return Err(invalid(format!(
                "tiles (key 1) must be positive, got {tiles}"
            )));
        }
        if repeats.len() > 4 || repeats.iter().any(|&r| r < 1) {
            return Err(invalid(format!(
                "repeats (key 2) must be 1 to 4 positive counts, got {repeats:?}"
            )));
        }
        Ok(Tile {
            axis: axis as usize,
            tiles: tiles as usize,
            repeats: repeats.iter().map(|&r| r as usize).collect(),
        })
    }

    /// Repeat factors on the (w, h, d, c) slots and the output dims.
    fn factors(&self, dims: u8) -> ([usize; 4], u8) {
        let mut f = [1; 4];
        if self.repeats.is_empty() {
            let slot = match (dims, self.axis) {
                (1, _) => Some(0),
                (2, 0) => Some(1),
                (2, 1) => Some(0),
                (3, 0) | (4, 0) => Some(3),
                (3, 1) | (4, 2) => Some(1),
                (3, 2) | (4, 3) => Some(0),
                (4, 1) => Some(2),
                _ => None,
            };
            if let Some(k) = slot {
                f[k] = self.tiles;
            }
            return (f, dims);
        }
        let out_dims = dims.max(self.repeats.len() as u8);
        // Slots of the output's numpy axes, innermost first.
        let slots: &[usize] = match out_dims {
            1 => &[0],
            2 => &[0, 1],
            3 => &[0, 1, 3],
            _ => &[0, 1, 2, 3],
        };
        for (r, &k) in self.repeats.iter().rev().zip(slots) {
            f[k] = *r;
        }
        (f, out_dims)
    }
}

impl Op for Tile {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let x = inputs[0];
        let (f, dims) = self.factors(x.dims);
        let e = [x.w, x.h, x.d, x.c];
        let mut o = [0; 4];
        for k in 0..4 {
            o[k] = e[k]
                .checked_mul(f[k])
                .ok_or_else(|| invalid(format!("tiling input {x} by {f:?} overflows")))?;
        }
        Ok(vec![Shape::checked(dims, o[0], o[1], o[2], o[3])?])
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        _: &mut Ctx,
    ) -> LayerResult<()> {
        let (x, out) = (&inputs[0], &mut outputs[0]);
        let (s, o) = (x.shape, out.shape);
        let mut rows = out.data.chunks_exact_mut(o.w);
        for c in 0..o.c {
            for d in 0..o.d {
                for h in 0..o.h {
                    let Some(row) = rows.next() else {
                        return Err(invalid("output smaller than planned"));
                    };
                    let start = (((c % s.c) * s.d + d % s.d) * s.h + h % s.h) * s.w;
                    let src = &x.data[start..start + s.w];
                    for part in row.chunks_exact_mut(s.w) {
                        part.copy_from_slice(src);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::ops::harness::{int, iota, params, run};
    use crate::rng::Rng;

    fn op(p: &[(usize, Value)]) -> Tile {
        Tile::new(&params(p)).unwrap()
    }

    fn ints(v: &[i32]) -> Value {
        Value::IntArray(v.to_vec())
    }

    fn shape_of(t: &Tile, x: Shape) -> Shape {
        t.output_shapes(&[x]).unwrap()[0]
    }

    #[test]
    fn axis_form() {
        let x = Shape::d2(3, 2);
        let (s, out) = run(&op(&[(0, int(0)), (1, int(2))]), &[(x, iota(6))])
            .unwrap()
            .remove(0);
        assert_eq!(s, Shape::d2(3, 4));
        assert_eq!(out, [iota(6), iota(6)].concat());
        let (s, out) = run(&op(&[(0, int(1)), (1, int(2))]), &[(x, iota(6))])
            .unwrap()
            .remove(0);
        assert_eq!(s, Shape::d2(6, 2));
        assert_eq!(out, [0., 1., 2., 0., 1., 2., 3., 4., 5., 3., 4., 5.]);
        // An axis the blob lacks: unchanged; 1-D: any axis tiles w.
        assert_eq!(shape_of(&op(&[(0, int(2)), (1, int(2))]), x), x);
        assert_eq!(
            shape_of(&op(&[(0, int(1)), (1, int(3))]), Shape::d1(4)),
            Shape::d1(12)
        );
        let x4 = Shape::d4(4, 1, 3, 2);
        assert_eq!(
            shape_of(&op(&[(0, int(1)), (1, int(3))]), x4),
            Shape::d4(4, 1, 9, 2)
        );
        assert_eq!(
            shape_of(&op(&[(0, int(0)), (1, int(3))]), x4),
            Shape::d4(4, 1, 3, 6)
        );
    }

    #[test]
    fn repeats_form() {
        let x = Shape::d2(3, 2);
        let t = |r: &[i32]| op(&[(2, ints(r))]);
        assert_eq!(shape_of(&t(&[2, 3]), x), Shape::d2(9, 4));
        assert_eq!(shape_of(&t(&[3]), x), Shape::d2(9, 2));
        assert_eq!(shape_of(&t(&[2, 1, 3]), x), Shape::d3(9, 2, 2));
        assert_eq!(shape_of(&t(&[2, 1, 1, 3]), x), Shape::d4(9, 2, 1, 2));
        assert_eq!(shape_of(&t(&[2, 1]), Shape::d1(3)), Shape::d2(3, 2));
        // 3-D made 4-D: c x 1 x h x w.
        let x3 = Shape::d3(4, 3, 2);
        assert_eq!(shape_of(&t(&[5, 1, 1, 1]), x3), Shape::d4(4, 3, 1, 10));
        assert_eq!(shape_of(&t(&[1, 5, 1, 1]), x3), Shape::d4(4, 3, 5, 2));
        // Values: numpy's tile on random data.
        let x4 = Shape::d4(3, 2, 2, 2);
        let data = Rng::new(3).vec(x4.len(), -1.0, 1.0);
        let (s, out) = run(&t(&[2, 1, 3, 2]), &[(x4, data.clone())])
            .unwrap()
            .remove(0);
        assert_eq!(s, Shape::d4(6, 6, 2, 4));
        for c in 0..4 {
            for d in 0..2 {
                for h in 0..6 {
                    for w in 0..6 {
                        let got = out[((c * 2 + d) * 6 + h) * 6 + w];
                        let want = data[(((c % 2) * 2 + d) * 2 + h % 2) * 3 + w % 3];
                        assert_eq!(got, want);
                    }
                }
            }
        }
    }

    #[test]
    fn bad_params_are_errors() {
        let err = |p: &[(usize, Value)]| Tile::new(&params(p)).unwrap_err().0;
        assert!(err(&[(0, int(-1))]).contains("axis"));
        assert!(err(&[(1, int(0))]).contains("tiles"));
        assert!(err(&[(2, ints(&[2, 0]))]).contains("repeats"));
        assert!(err(&[(2, ints(&[1, 1, 1, 1, 2]))]).contains("repeats"));
    }
}
