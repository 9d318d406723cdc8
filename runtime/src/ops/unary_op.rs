//! UnaryOp, in place: `0 = op_type` (default 0), one of ncnn's 28:
//! 0 abs, 1 neg, 2 floor, 3 ceil, 4 square, 5 sqrt, 6 rsqrt, 7 exp, 8 log, 9 sin, 10 cos,
//! 11 tan, 12 asin, 13 acos, 14 atan, 15 reciprocal, 16 tanh, 17 log10, 18 round (half to
//! even), 19 trunc, 20 sign (0 for ±0 and NaN), 21 expm1, 22 sinh, 23 asinh, 24 cosh,
//! 25 acosh, 26 atanh, 27 log1p.

use super::elementwise::for_each_chunk;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, TensorMut};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryKind {
    Abs,
    Neg,
    Floor,
    Ceil,
    Square,
    Sqrt,
    Rsqrt,
    Exp,
    Log,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Reciprocal,
    Tanh,
    Log10,
    Round,
    Trunc,
    Sign,
    Expm1,
    Sinh,
    Asinh,
    Cosh,
    Acosh,
    Atanh,
    Log1p,
}

/// Every kind in op_type order.
const KINDS: [UnaryKind; 28] = {
    use UnaryKind::*;
    [
        Abs, Neg, Floor, Ceil, Square, Sqrt, Rsqrt, Exp, Log, Sin, Cos, Tan, Asin, Acos, Atan,
        Reciprocal, Tanh, Log10, Round, Trunc, Sign, Expm1, Sinh, Asinh, Cosh, Acosh, Atanh, Log1p,
    ]
};

impl UnaryKind {
    pub fn from_type(t: i32) -> LayerResult<UnaryKind> {
        usize::try_from(t)
            .ok()
            .and_then(|i| KINDS.get(i).copied())
            .ok_or_else(|| invalid(format!("unknown unary op_type {t} (0 to 27)")))
    }

    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        use UnaryKind::*;
        match self {
            Abs => x.abs(),
            Neg => -x,
            Floor => x.floor(),
            Ceil => x.ceil(),
            Square => x * x,
            Sqrt => x.sqrt(),
            Rsqrt => 1.0 / x.sqrt(),
            Exp => x.exp(),
            Log => x.ln(),
            Sin => x.sin(),
            Cos => x.cos(),
            Tan => x.tan(),
            Asin => x.asin(),
            Acos => x.acos(),
            Atan => x.atan(),
            Reciprocal => 1.0 / x,
            Tanh => x.tanh(),
            Log10 => x.log10(),
            Round => x.round_ties_even(),
            Trunc => x.trunc(),
            Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Expm1 => x.exp_m1(),
            Sinh => x.sinh(),
            Asinh => x.asinh(),
            Cosh => x.cosh(),
            Acosh => x.acosh(),
            Atanh => x.atanh(),
            Log1p => x.ln_1p(),
        }
    }
}

/// Applies `$kind` over `$xs` with the kind matched once, outside the loop: each arm's loop
/// is compiled for a constant kind (and vectorised where the function allows).
macro_rules! per_kind_loop {
    ($kind:expr, $xs:expr, [$($k:ident),*]) => {
        match $kind {
            $(UnaryKind::$k => $xs.iter_mut().for_each(|v| *v = UnaryKind::$k.apply(*v)),)*
        }
    };
}

#[derive(Debug)]
pub struct UnaryOp {
    pub kind: UnaryKind,
}

impl UnaryOp {
    pub fn new(pd: &ParamDict) -> LayerResult<UnaryOp> {
        Ok(UnaryOp {
            kind: UnaryKind::from_type(pd.int(0, 0)?)?,
        })
    }
}

impl Op for UnaryOp {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let kind = self.kind;
        for_each_chunk(ctx.pool, x.data, &|part| {
            per_kind_loop!(
                kind,
                part,
                [
                    Abs, Neg, Floor, Ceil, Square, Sqrt, Rsqrt, Exp, Log, Sin, Cos, Tan, Asin,
                    Acos, Atan, Reciprocal, Tanh, Log10, Round, Trunc, Sign, Expm1, Sinh, Asinh,
                    Cosh, Acosh, Atanh, Log1p
                ]
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, int, params, run};

    fn op(t: i32) -> UnaryOp {
        UnaryOp::new(&params(&[(0, int(t))])).unwrap()
    }

    #[test]
    fn every_op_type_by_hand() {
        let x = [0.5f32, -2.5, 4.0];
        let want: [[f32; 3]; 28] = [
            [0.5, 2.5, 4.0],
            [-0.5, 2.5, -4.0],
            [0.0, -3.0, 4.0],
            [1.0, -2.0, 4.0],
            [0.25, 6.25, 16.0],
            [0.707_106_77, f32::NAN, 2.0],
            [std::f32::consts::SQRT_2, f32::NAN, 0.5],
            [1.648_721_3, 0.082_085, 54.598_15],
            [-std::f32::consts::LN_2, f32::NAN, 1.386_294_4],
            [0.479_425_55, -0.598_472_1, -0.756_802_5],
            [0.877_582_6, -0.801_143_6, -0.653_643_6],
            [0.546_302_5, 0.747_022_3, 1.157_821_3],
            [std::f32::consts::FRAC_PI_6, f32::NAN, f32::NAN],
            [std::f32::consts::FRAC_PI_3, f32::NAN, f32::NAN],
            [0.463_647_6, -1.190_289_9, 1.325_817_7],
            [2.0, -0.4, 0.25],
            [0.462_117_16, -0.986_614_3, 0.999_329_3],
            [-std::f32::consts::LOG10_2, f32::NAN, 0.602_06],
            [0.0, -2.0, 4.0],
            [0.0, -2.0, 4.0],
            [1.0, -1.0, 1.0],
            [0.648_721_3, -0.917_915, 53.598_15],
            [0.521_095_3, -6.050_204_8, 27.289_917],
            [0.481_211_84, -1.647_231_1, 2.094_712_3],
            [1.127_626, 6.132_289_5, 27.308_233],
            [f32::NAN, f32::NAN, 2.063_437_2],
            [0.549_306_1, f32::NAN, f32::NAN],
            [0.405_465_1, f32::NAN, 1.609_438],
        ];
        for (t, w) in want.iter().enumerate() {
            let out = run(&op(t as i32), &[(Shape::d1(3), x.to_vec())]).unwrap();
            assert_close(&out[0].1, w, 1e-6);
        }
    }

    #[test]
    fn round_is_half_to_even_and_sign_of_zero() {
        let out = run(
            &op(18),
            &[(Shape::d1(6), vec![0.5, 1.5, 2.5, -0.5, -1.5, 2.6])],
        )
        .unwrap();
        assert_eq!(out[0].1, vec![0.0, 2.0, 2.0, -0.0, -2.0, 3.0]);
        let out = run(&op(20), &[(Shape::d1(3), vec![-0.0, 0.0, f32::NAN])]).unwrap();
        assert_eq!(out[0].1, vec![0.0, 0.0, 0.0]);
    }

    #[test]
    fn bad_op_type() {
        assert!(UnaryOp::new(&params(&[(0, int(28))])).is_err());
        assert!(UnaryOp::new(&params(&[(0, int(-1))])).is_err());
        assert!(op(0).output_shapes(&[]).is_err());
    }
}
