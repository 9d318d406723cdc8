//! Reshape: the same elements in the same order under a new shape, so the output aliases the
//! input.
//!
//! Params: `0 = w`, `1 = h`, `11 = d`, `2 = c`, each -233 when absent. The rank is set by the
//! first absent key in the order w, h, c, d (w absent: invalid; h absent: 1-D; c absent: 2-D;
//! d absent: 3-D; else 4-D). A value of 0 copies that dimension from the input, -1 infers it
//! from the element count. Batch axes (`12`, `13`) are not supported.
//!
//! `6 = shape_expr`: a string expression list (`super::expression`) evaluated on the input
//! shapes at shape inference, in the order w, h, [d,] c; its length (1..=4) sets the rank
//! and replaces keys 0 / 1 / 11 / 2 (0 and -1 keep their meaning). An expression that reads
//! blob `k` makes the layer take `k + 1` inputs (the output still aliases the first).

use super::expression::{self, Expr};
use super::{expect_inputs, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::Shape;

const ABSENT: i32 = -233;

#[derive(Debug)]
pub struct Reshape {
    /// Requested dimensions in ncnn order (w, h, d, c); only the first `rank` used.
    pub w: i32,
    pub h: i32,
    pub d: i32,
    pub c: i32,
    pub rank: u8,
    /// `shape_expr` (key 6): replaces the dimensions above at shape inference.
    pub expr: Option<Expr>,
}

impl Reshape {
    pub fn new(pd: &ParamDict) -> LayerResult<Reshape> {
        if pd.int(12, 233)? != 233 || pd.int(13, 233)? != 233 {
            return Err(invalid("batch axis reshape (params 12/13) not supported"));
        }
        let (w, h, d, c) = (
            pd.int(0, ABSENT)?,
            pd.int(1, ABSENT)?,
            pd.int(11, ABSENT)?,
            pd.int(2, ABSENT)?,
        );
        let expr = expression::param(pd, 6)?;
        if let Some(e) = &expr {
            if e.len() > 4 {
                return Err(invalid(format!(
                    "shape_expr (key 6) `{}` gives {} dimensions, at most 4",
                    e.text(),
                    e.len()
                )));
            }
            return Ok(Reshape {
                w: 0,
                h: 0,
                d: 0,
                c: 0,
                rank: e.len() as u8,
                expr,
            });
        }
        let rank = if w == ABSENT {
            0
        } else if h == ABSENT {
            1
        } else if c == ABSENT {
            2
        } else if d == ABSENT {
            3
        } else {
            4
        };
        if rank == 0 {
            return Err(invalid("reshape without a target shape (param 0 absent)"));
        }
        let used: &[i32] = match rank {
            1 => &[w],
            2 => &[w, h],
            3 => &[w, h, c],
            _ => &[w, h, d, c],
        };
        check_dims(used)?;
        Ok(Reshape {
            w,
            h,
            d,
            c,
            rank,
            expr: None,
        })
    }
}

fn check_dims(used: &[i32]) -> LayerResult<()> {
    if let Some(v) = used.iter().find(|&&v| v < -1) {
        return Err(invalid(format!("invalid reshape dimension {v}")));
    }
    if used.iter().filter(|&&v| v == -1).count() > 1 {
        return Err(invalid("at most one reshape dimension may be -1"));
    }
    Ok(())
}

impl Op for Reshape {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        let n_in = self.expr.as_ref().map_or(1, |e| e.blob_count().max(1));
        expect_inputs(inputs, n_in)?;
        let x = inputs[0];
        let total = x.len();
        let (mut w, mut h, mut d, mut c) = (self.w, self.h, self.d, self.c);
        if let Some(e) = &self.expr {
            let v = e.eval(inputs)?;
            let at = |i: usize| v.get(i).copied().unwrap_or(1);
            (w, h, d, c) = match v.len() {
                1 => (at(0), 1, 1, 1),
                2 => (at(0), at(1), 1, 1),
                3 => (at(0), at(1), 1, at(2)),
                _ => (at(0), at(1), at(2), at(3)),
            };
            check_dims(&v).map_err(|m| invalid(format!("shape_expr `{}`: {}", e.text(), m.0)))?;
        }
        // Requested (value, input dimension copied for 0) in w, h, d, c order.
        let req = [(w, x.w), (h, x.h), (d, x.d), (c, x.c)];
        let used: Vec<usize> = match self.rank {
            1 => vec![0],
            2 => vec![0, 1],
            3 => vec![0, 1, 3],
            _ => vec![0, 1, 2, 3],
        };
        let mut dims = [1usize; 4];
        let mut known = 1usize;
        let mut infer = None;
        for &i in &used {
            let (v, from_input) = req[i];
            dims[i] = match v {
                0 => from_input,
                -1 => {
                    infer = Some(i);
                    1
                }
                v => v as usize,
            };
            known = known.saturating_mul(dims[i]);
        }
        if let Some(i) = infer {
            if known == 0 || !total.is_multiple_of(known) {
                return Err(invalid(format!(
                    "cannot reshape {x} ({total} elements) to a multiple of {known}"
                )));
            }
            dims[i] = total / known;
        }
        let out = Shape::checked(self.rank, dims[0], dims[1], dims[2], dims[3])?;
        if out.len() != total {
            return Err(invalid(format!(
                "cannot reshape {x} ({total} elements) to {out} ({} elements)",
                out.len()
            )));
        }
        Ok(vec![out])
    }
    fn storage(&self) -> Storage {
        Storage::Alias
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::ops::harness::{int, params};

    fn shape_of(p: &[(usize, Value)], x: Shape) -> LayerResult<Shape> {
        Reshape::new(&params(p))?.output_shapes(&[x]).map(|v| v[0])
    }

    #[test]
    fn ssd_conf_reshape() {
        let s = shape_of(&[(0, int(21)), (1, int(-1))], Shape::d1(40257)).unwrap();
        assert_eq!(s, Shape::d2(21, 1917));
    }

    #[test]
    fn ranks_copy_and_infer() {
        let x = Shape::d3(4, 3, 2);
        assert_eq!(shape_of(&[(0, int(-1))], x).unwrap(), Shape::d1(24));
        assert_eq!(
            shape_of(&[(0, int(0)), (1, int(-1))], x).unwrap(),
            Shape::d2(4, 6)
        );
        assert_eq!(
            shape_of(&[(0, int(2)), (1, int(0)), (2, int(-1))], x).unwrap(),
            Shape::d3(2, 3, 4)
        );
        assert_eq!(
            shape_of(&[(0, int(2)), (1, int(2)), (11, int(-1)), (2, int(0))], x).unwrap(),
            Shape::d4(2, 2, 3, 2)
        );
        // d given but c absent: still 2-D, d ignored.
        assert_eq!(
            shape_of(&[(0, int(6)), (1, int(4)), (11, int(5))], x).unwrap(),
            Shape::d2(6, 4)
        );
        // 4-D -> 3-D.
        assert_eq!(
            shape_of(
                &[(0, int(6)), (1, int(1)), (2, int(-1))],
                Shape::d4(2, 3, 2, 2)
            )
            .unwrap(),
            Shape::d3(6, 1, 4)
        );
    }

    #[test]
    fn errors() {
        let x = Shape::d3(4, 3, 2);
        assert!(shape_of(&[(0, int(5))], x).is_err());
        assert!(shape_of(&[(0, int(5)), (1, int(-1))], x).is_err());
        assert!(shape_of(&[(0, int(-1)), (1, int(-1))], x).is_err());
        assert!(shape_of(&[(0, int(-5))], x).is_err());
        assert!(shape_of(&[], x).is_err());
        assert!(Reshape::new(&params(&[(0, int(1)), (12, int(0))])).is_err());
    }

    fn expr(text: &str) -> Reshape {
        Reshape::new(&params(&[(6, Value::Str(text.into()))])).unwrap()
    }

    #[test]
    fn shape_expr() {
        let x = Shape::d3(5, 4, 3);
        let out = |r: &Reshape, ins: &[Shape]| r.output_shapes(ins).map(|v| v[0]);
        // Written w, h, c; the key 0 / 1 / 2 values are ignored.
        let r = Reshape::new(&params(&[
            (0, int(60)),
            (6, Value::Str("0h,*(0w,0c)".into())),
        ]))
        .unwrap();
        assert_eq!(out(&r, &[x]).unwrap(), Shape::d2(4, 15));
        assert_eq!(out(&expr("-1"), &[x]).unwrap(), Shape::d1(60));
        assert_eq!(out(&expr("0,-1,1"), &[x]).unwrap(), Shape::d3(5, 12, 1));
        assert_eq!(
            out(&expr("0w,2,2,//(0c,1)"), &[Shape::d3(5, 4, 3)]).unwrap(),
            Shape::d4(5, 2, 2, 3)
        );
        // A second input gives a size.
        let r = expr("1w,-1");
        assert_eq!(out(&r, &[x, Shape::d1(6)]).unwrap(), Shape::d2(6, 10));
        assert!(out(&r, &[x]).unwrap_err().0.contains("expects 2 input"));
        // Bad values at shape inference, bad expressions at load.
        assert!(out(&expr("7,-1"), &[x]).is_err());
        assert!(out(&expr("-1,-1"), &[x])
            .unwrap_err()
            .0
            .contains("shape_expr"));
        assert!(out(&expr("-(0w,9)"), &[x]).is_err());
        let e = Reshape::new(&params(&[(6, Value::Str("1,1,1,1,60".into()))])).unwrap_err();
        assert!(e.0.contains("at most 4"), "{}", e.0);
        let e = Reshape::new(&params(&[(6, Value::Str("+(0w)".into()))])).unwrap_err();
        assert!(e.0.contains("key 6"), "{}", e.0);
    }
}
