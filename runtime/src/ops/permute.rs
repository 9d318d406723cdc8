//! Permute: reorders the axes of a 2-D, 3-D or 4-D blob (`0 = order_type`). Each order lists,
//! for the output's (w, h[, d], c), which input axis it takes, in ncnn's numbering:
//! 2-D: 0 `w h`, 1 `h w`; 3-D: 0 `w h c`, 1 `h w c`, 2 `w c h`, 3 `c w h`, 4 `h c w`, 5 `c h w`;
//! 4-D: 0..23 as ncnn (`w h d c`, `h w d c`, ... `c d h w`). A 1-D blob passes unchanged; the
//! identity order aliases its input.

use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, Tensor, TensorMut};

/// Axis names for the 4-D table: the input's w, h, d, c.
const W: usize = 0;
const H: usize = 1;
const D: usize = 2;
const C: usize = 3;

/// 3-D orders over (w, h, c) = axes 0, 1, 2.
const ORDERS_3D: [[usize; 3]; 6] = [
    [0, 1, 2],
    [1, 0, 2],
    [0, 2, 1],
    [2, 0, 1],
    [1, 2, 0],
    [2, 1, 0],
];

/// 4-D orders: output (w, h, d, c) from input axes.
const ORDERS_4D: [[usize; 4]; 24] = [
    [W, H, D, C],
    [H, W, D, C],
    [W, D, H, C],
    [D, W, H, C],
    [H, D, W, C],
    [D, H, W, C],
    [W, H, C, D],
    [H, W, C, D],
    [W, C, H, D],
    [C, W, H, D],
    [H, C, W, D],
    [C, H, W, D],
    [W, D, C, H],
    [D, W, C, H],
    [W, C, D, H],
    [C, W, D, H],
    [D, C, W, H],
    [C, D, W, H],
    [H, D, C, W],
    [D, H, C, W],
    [H, C, D, W],
    [C, H, D, W],
    [D, C, H, W],
    [C, D, H, W],
];

#[derive(Debug)]
pub struct Permute {
    pub order_type: usize,
}

impl Permute {
    pub fn new(pd: &ParamDict) -> LayerResult<Permute> {
        let order_type = pd.int(0, 0)?;
        if !(0..24).contains(&order_type) {
            return Err(invalid(format!(
                "order_type {order_type} out of range 0..23"
            )));
        }
        Ok(Permute {
            order_type: order_type as usize,
        })
    }

    /// For the input shape: which input axis (0 w, 1 h, 2 d, 3 c) each output axis
    /// (w, h, d, c) takes.
    fn axes(&self, s: &Shape) -> LayerResult<[usize; 4]> {
        let t = self.order_type;
        let bad = || {
            invalid(format!(
                "order_type {t} is not valid for a {}-D blob",
                s.dims
            ))
        };
        match s.dims {
            1 => Ok([W, H, D, C]),
            2 => match t {
                0 => Ok([W, H, D, C]),
                1 => Ok([H, W, D, C]),
                _ => Err(bad()),
            },
            3 => {
                let o = ORDERS_3D.get(t).ok_or_else(bad)?;
                // 3-D axis 2 is c (axis 3 in the 4-D numbering); d stays 1.
                let m = |a: usize| if a == 2 { C } else { a };
                Ok([m(o[0]), m(o[1]), D, m(o[2])])
            }
            _ => Ok(ORDERS_4D[t]),
        }
    }
}

impl Op for Permute {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let s = inputs[0];
        let ax = self.axes(&s)?;
        let size = [s.w, s.h, s.d, s.c];
        Ok(vec![Shape {
            dims: s.dims,
            w: size[ax[0]],
            h: size[ax[1]],
            d: size[ax[2]],
            c: size[ax[3]],
        }])
    }

    fn storage(&self) -> Storage {
        if self.order_type == 0 {
            Storage::Alias
        } else {
            Storage::New
        }
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        _ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let x = &inputs[0];
        let s = x.shape;
        let ax = self.axes(&s)?;
        // Input strides of w, h, d, c; the output walks them in its own axis order.
        let stride = [1, s.w, s.w * s.h, s.w * s.h * s.d];
        let o = outputs[0].shape;
        let (sw, sh, sd, sc) = (stride[ax[0]], stride[ax[1]], stride[ax[2]], stride[ax[3]]);
        let mut dst = outputs[0].data.iter_mut();
        for q in 0..o.c {
            for z in 0..o.d {
                for y in 0..o.h {
                    let base = q * sc + z * sd + y * sh;
                    for i in 0..o.w {
                        // The output has exactly as many elements as the loops visit.
                        *dst.next().expect("output size") = x.data[base + i * sw];
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
    use crate::ops::harness::{int, iota, params, run};

    fn op(t: i32) -> Permute {
        Permute::new(&params(&[(0, int(t))])).unwrap()
    }

    #[test]
    fn ssd_nchw_to_nhwc() {
        // order 3 on (w=2, h=3, c=4): out w = c, h = w, c = h; out[h][w][c] = in[c][h][w].
        let s = Shape::d3(2, 3, 4);
        let out = run(&op(3), &[(s, iota(24))]).unwrap();
        assert_eq!(out[0].0, Shape::d3(4, 2, 3));
        let mut want = Vec::new();
        for h in 0..3 {
            for w in 0..2 {
                for c in 0..4 {
                    want.push(((c * 3 + h) * 2 + w) as f32);
                }
            }
        }
        assert_eq!(out[0].1, want);
    }

    #[test]
    fn every_3d_order_against_index_formula() {
        let s = Shape::d3(2, 3, 4);
        let dims = [2usize, 3, 4];
        for (t, order) in ORDERS_3D.iter().enumerate() {
            let out = run(&op(t as i32), &[(s, iota(24))]).unwrap();
            let o = &out[0];
            assert_eq!(
                (o.0.w, o.0.h, o.0.c),
                (dims[order[0]], dims[order[1]], dims[order[2]])
            );
            for (n, v) in o.1.iter().enumerate() {
                let (ow, oh, oc) = (n % o.0.w, (n / o.0.w) % o.0.h, n / (o.0.w * o.0.h));
                let mut idx = [0usize; 3];
                idx[order[0]] = ow;
                idx[order[1]] = oh;
                idx[order[2]] = oc;
                assert_eq!(*v, ((idx[2] * 3 + idx[1]) * 2 + idx[0]) as f32, "order {t}");
            }
        }
    }

    #[test]
    fn every_4d_order_is_a_permutation_matching_its_shape() {
        let s = Shape::d4(2, 3, 4, 5);
        let size = [2usize, 3, 4, 5];
        for (t, order) in ORDERS_4D.iter().enumerate() {
            let mut sorted = *order;
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2, 3], "order {t}");
            let out = run(&op(t as i32), &[(s, iota(120))]).unwrap();
            let o = out[0].0;
            assert_eq!([o.w, o.h, o.d, o.c], order.map(|a| size[a]));
            for (n, v) in out[0].1.iter().enumerate() {
                let oi = [
                    n % o.w,
                    (n / o.w) % o.h,
                    (n / (o.w * o.h)) % o.d,
                    n / (o.w * o.h * o.d),
                ];
                let mut idx = [0usize; 4];
                for k in 0..4 {
                    idx[order[k]] = oi[k];
                }
                assert_eq!(
                    *v,
                    (((idx[3] * 4 + idx[2]) * 3 + idx[1]) * 2 + idx[0]) as f32
                );
            }
        }
        // Spot check against ncnn's names: 23 = `c d h w`.
        assert_eq!(
            op(23).output_shapes(&[s]).unwrap()[0],
            Shape::d4(5, 4, 3, 2)
        );
    }

    #[test]
    fn two_d_transpose_and_identities() {
        let out = run(&op(1), &[(Shape::d2(3, 2), iota(6))]).unwrap();
        assert_eq!(
            out[0],
            (Shape::d2(2, 3), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0])
        );
        assert_eq!(op(0).storage(), Storage::Alias);
        let out = run(&op(5), &[(Shape::d1(4), iota(4))]).unwrap();
        assert_eq!(out[0], (Shape::d1(4), iota(4)));
    }

    #[test]
    fn errors() {
        assert!(Permute::new(&params(&[(0, int(24))])).is_err());
        assert!(Permute::new(&params(&[(0, int(-1))])).is_err());
        assert!(op(2).output_shapes(&[Shape::d2(2, 2)]).is_err());
        assert!(op(6).output_shapes(&[Shape::d3(2, 2, 2)]).is_err());
    }
}
