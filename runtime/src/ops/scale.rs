//! Scale: `y = x * s (+ bias)` with one factor per element of a 1-D blob, per row of a 2-D
//! blob or per channel of a 3-D / 4-D blob.
//!
//! Params: `0 = scale_data_size`, `1 = bias_term`. Weights (raw): scale, then bias when
//! `bias_term`. With `0 = -233` the factors come from a second input blob instead (nothing is
//! read from the weights); that form runs out of place.

use super::batch_norm::outer_groups;
use super::elementwise::for_each_groups;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult, Result};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, WeightReader};
use crate::pool::Pool;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Debug)]
pub struct Scale {
    /// Factors from the weights; `None` for the two-input form.
    pub scale: Option<Floats>,
    pub bias: Option<Floats>,
}

impl Scale {
    pub fn new(pd: &ParamDict, w: &mut WeightReader) -> Result<Scale> {
        let size = pd.int(0, 0)?;
        let bias_term = pd.int(1, 0)? != 0;
        if size == -233 {
            if bias_term {
                return Err(invalid(
                    "bias_term with the scale from a second input is not supported",
                )
                .into());
            }
            return Ok(Scale {
                scale: None,
                bias: None,
            });
        }
        if size <= 0 {
            return Err(invalid(format!(
                "scale_data_size (param 0) must be positive, got {size}"
            ))
            .into());
        }
        let n = size as usize;
        let scale = w.raw(n, "scale")?;
        let bias = if bias_term {
            Some(w.raw(n, "bias")?)
        } else {
            None
        };
        Ok(Scale {
            scale: Some(scale),
            bias,
        })
    }

    fn apply(
        pool: &Pool,
        data: &mut [f32],
        shape: &Shape,
        scale: &[f32],
        bias: Option<&[f32]>,
    ) -> LayerResult<()> {
        let (_, size) = outer_groups(shape);
        for_each_groups(pool, data, size, &|first, part| {
            for (i, group) in part.chunks_exact_mut(size).enumerate() {
                let q = first + i;
                let s = scale[q];
                match bias {
                    Some(b) => {
                        let b = b[q];
                        group.iter_mut().for_each(|v| *v = *v * s + b);
                    }
                    None => group.iter_mut().for_each(|v| *v *= s),
                }
            }
        })
    }
}

impl Op for Scale {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        let (groups, _) = match &self.scale {
            Some(_) => {
                expect_inputs(inputs, 1)?;
                outer_groups(&inputs[0])
            }
            None => {
                expect_inputs(inputs, 2)?;
                outer_groups(&inputs[0])
            }
        };
        let have = match &self.scale {
            Some(s) => s.len(),
            None => inputs[1].len(),
        };
        if groups > have {
            return Err(invalid(format!(
                "input {} needs {groups} scale factors, there are {have}",
                inputs[0]
            )));
        }
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        match self.scale {
            Some(_) => Storage::InPlace,
            None => Storage::New,
        }
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let scale = self
            .scale
            .as_deref()
            .ok_or_else(|| invalid("scale has two inputs"))?;
        let shape = x.shape;
        Scale::apply(ctx.pool, x.data, &shape, scale, self.bias.as_deref())
    }
    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let out = &mut outputs[0];
        out.data.copy_from_slice(inputs[0].data);
        let shape = out.shape;
        Scale::apply(ctx.pool, out.data, &shape, inputs[1].data, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{int, params, run};

    #[test]
    fn scale_with_and_without_bias() {
        let op = Scale {
            scale: Some(Floats::owned(vec![2.0, 3.0])),
            bias: Some(Floats::owned(vec![1.0, -1.0])),
        };
        assert_eq!(op.storage(), Storage::InPlace);
        let out = run(&op, &[(Shape::d3(2, 1, 2), vec![1.0, 2.0, 3.0, 4.0])]).unwrap();
        assert_eq!(out[0].1, vec![3.0, 5.0, 8.0, 11.0]);
        let op = Scale {
            scale: Some(Floats::owned(vec![2.0, 3.0])),
            bias: None,
        };
        let out = run(&op, &[(Shape::d2(2, 2), vec![1.0, 2.0, 3.0, 4.0])]).unwrap();
        assert_eq!(out[0].1, vec![2.0, 4.0, 9.0, 12.0]);
    }

    #[test]
    fn split_across_workers_matches_formula() {
        let n = 40;
        let op = Scale {
            scale: Some(Floats::owned((0..n).map(|i| i as f32).collect())),
            bias: Some(Floats::owned((0..n).map(|i| -(i as f32)).collect())),
        };
        let s = Shape::d3(31, 17, n);
        let x = crate::rng::Rng::new(2).vec(s.len(), -1.0, 1.0);
        let out = crate::ops::harness::run_threads(&op, &[(s, x.clone())], 3).unwrap();
        for (i, (y, v)) in out[0].1.iter().zip(&x).enumerate() {
            let q = (i / (31 * 17)) as f32;
            assert_eq!(*y, v * q - q);
        }
    }

    #[test]
    fn two_input_form() {
        let mut w = WeightReader::zeros();
        let op = Scale::new(&params(&[(0, int(-233))]), &mut w).unwrap();
        assert_eq!(op.storage(), Storage::New);
        let out = run(
            &op,
            &[
                (Shape::d3(1, 2, 3), vec![1.0; 6]),
                (Shape::d1(3), vec![1.0, 2.0, 3.0]),
            ],
        )
        .unwrap();
        assert_eq!(out[0].1, vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        assert!(op.output_shapes(&[Shape::d3(1, 2, 3)]).is_err());
        assert!(op
            .output_shapes(&[Shape::d3(1, 2, 3), Shape::d1(2)])
            .is_err());
    }

    #[test]
    fn reads_weights_and_rejects_bad_params() {
        let mut w = WeightReader::zeros();
        let op = Scale::new(&params(&[(0, int(3)), (1, int(1))]), &mut w).unwrap();
        assert_eq!(op.bias.as_ref().unwrap().len(), 3);
        assert!(op.output_shapes(&[Shape::d3(1, 1, 4)]).is_err());
        assert!(Scale::new(&ParamDict::new(), &mut w).is_err());
        assert!(Scale::new(&params(&[(0, int(-233)), (1, int(1))]), &mut w).is_err());
    }
}
