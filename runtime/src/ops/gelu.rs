//! GELU, in place. `0 = fast_gelu` (default 0):
//! - 0: `0.5 * x * erfc(-x / sqrt(2))` (the exact form; erfc in f64, see [`super::erf`]);
//! - 1: `0.5 * x * (1 + tanh(0.79788452 * (x + 0.044715 * x^3)))` (the tanh approximation).

use super::elementwise::for_each_chunk;
use super::erf::erfc;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Gelu {
    pub fast: bool,
}

impl Gelu {
    pub fn new(pd: &ParamDict) -> LayerResult<Gelu> {
        let fast = match pd.int(0, 0)? {
            0 => false,
            1 => true,
            v => return Err(invalid(format!("gelu fast_gelu must be 0 or 1, got {v}"))),
        };
        Ok(Gelu { fast })
    }
}

impl Op for Gelu {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        if self.fast {
            for_each_chunk(ctx.pool, x.data, &|part| {
                for v in part.iter_mut() {
                    let x = *v;
                    *v = 0.5 * x * (1.0 + (0.797_884_5 * (x + 0.044_715 * x * x * x)).tanh());
                }
            })
        } else {
            for_each_chunk(ctx.pool, x.data, &|part| {
                for v in part.iter_mut() {
                    let x = *v as f64;
                    *v = (0.5 * x * erfc(-x * std::f64::consts::FRAC_1_SQRT_2)) as f32;
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, int, params, run};

    #[test]
    fn both_forms_by_hand() {
        let xs = vec![0.0, 1.0, -1.0, 3.0, -3.0, -10.0];
        let exact = Gelu::new(&ParamDict::new()).unwrap();
        let out = run(&exact, &[(Shape::d1(6), xs.clone())]).unwrap();
        let want = [
            0.0,
            0.841_344_7,
            -0.158_655_3,
            2.995_950_4,
            -4.049_6e-3,
            -7.62e-23,
        ];
        assert_close(&out[0].1, &want, 1e-6);
        let fast = Gelu::new(&params(&[(0, int(1))])).unwrap();
        let out = run(&fast, &[(Shape::d1(6), xs)]).unwrap();
        let want = [0.0, 0.841_192, -0.158_808, 2.996_362_6, -3.637_393e-3, 0.0];
        assert_close(&out[0].1, &want, 1e-6);
    }

    #[test]
    fn bad_params() {
        assert!(Gelu::new(&params(&[(0, int(2))])).is_err());
    }
}
