//! Reshape: the same elements in the same order under a new shape, so the output aliases the
//! input.
//!
//! Params: `0 = w`, `1 = h`, `11 = d`, `2 = c`, each -233 when absent. The rank is set by the
//! first absent key in the order w, h, c, d (w absent: invalid; h absent: 1-D; c absent: 2-D;
//! d absent: 3-D; else 4-D). A value of 0 copies that dimension from the input, -1 infers it
//! from the element count. Shape expressions (`6`) and batch axes (`12`, `13`) are not
//! supported.

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
}

impl Reshape {
    pub fn new(pd: &ParamDict) -> LayerResult<Reshape> {
        if pd.has(6) {
            return Err(invalid("shape_expr not supported"));
        }
        if pd.int(12, 233)? != 233 || pd.int(13, 233)? != 233 {
            return Err(invalid("batch axis reshape (params 12/13) not supported"));
        }
        let (w, h, d, c) = (
            pd.int(0, ABSENT)?,
            pd.int(1, ABSENT)?,
            pd.int(11, ABSENT)?,
            pd.int(2, ABSENT)?,
        );
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
        if let Some(v) = used.iter().find(|&&v| v < -1) {
            return Err(invalid(format!("invalid reshape dimension {v}")));
        }
        if used.iter().filter(|&&v| v == -1).count() > 1 {
            return Err(invalid("at most one reshape dimension may be -1"));
        }
        Ok(Reshape { w, h, d, c, rank })
    }
}

impl Op for Reshape {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let x = inputs[0];
        let total = x.len();
        // Requested (value, input dimension copied for 0) in w, h, d, c order.
        let req = [(self.w, x.w), (self.h, x.h), (self.d, x.d), (self.c, x.c)];
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
        let e = Reshape::new(&params(&[(0, int(1)), (6, Value::Str("1,2".into()))])).unwrap_err();
        assert_eq!(e.0, "shape_expr not supported");
        assert!(Reshape::new(&params(&[(0, int(1)), (12, int(0))])).is_err());
    }
}
