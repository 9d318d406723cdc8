//! PReLU, in place: `x < 0 ? x * slope : x` with one slope per element of a 1-D blob, per row
//! of a 2-D blob or per channel of a 3-D / 4-D blob; a single slope applies to everything.
//!
//! Params: `0 = num_slope`. Weights: slopes, raw, `num_slope` floats.

use super::batch_norm::outer_groups;
use super::elementwise::for_each_groups;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult, Result};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, WeightReader};
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct PReLU {
    pub slopes: Floats,
}

impl PReLU {
    pub fn new(pd: &ParamDict, w: &mut WeightReader) -> Result<PReLU> {
        let n = pd.usize(0, 0)?;
        if n == 0 {
            return Err(invalid("num_slope (param 0) must be positive").into());
        }
        Ok(PReLU {
            slopes: w.raw(n, "slope")?,
        })
    }
}

impl Op for PReLU {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let (groups, _) = outer_groups(&inputs[0]);
        if self.slopes.len() > 1 && groups > self.slopes.len() {
            return Err(invalid(format!(
                "input {} needs {groups} slopes, the layer has {}",
                inputs[0],
                self.slopes.len()
            )));
        }
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let (_, size) = outer_groups(&x.shape);
        let shared = self.slopes.len() == 1;
        for_each_groups(ctx.pool, x.data, size, &|first, part| {
            for (i, group) in part.chunks_exact_mut(size).enumerate() {
                let slope = if shared {
                    self.slopes[0]
                } else {
                    self.slopes[first + i]
                };
                // A select on every element (not a conditional store): vectorises.
                group
                    .iter_mut()
                    .for_each(|v| *v = if *v < 0.0 { *v * slope } else { *v });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::run;

    fn op(slopes: &[f32]) -> PReLU {
        PReLU {
            slopes: Floats::owned(slopes.to_vec()),
        }
    }

    #[test]
    fn per_channel_and_shared_slopes() {
        let x = vec![-1.0, 2.0, -3.0, -4.0, 5.0, -6.0];
        let out = run(&op(&[0.5, 0.1]), &[(Shape::d3(3, 1, 2), x.clone())]).unwrap();
        assert_eq!(out[0].1, vec![-0.5, 2.0, -1.5, -0.4, 5.0, -0.6]);
        let out = run(&op(&[0.5]), &[(Shape::d3(3, 1, 2), x.clone())]).unwrap();
        assert_eq!(out[0].1, vec![-0.5, 2.0, -1.5, -2.0, 5.0, -3.0]);
        // 2-D: per row; 1-D: per element.
        let out = run(&op(&[0.5, 0.1]), &[(Shape::d2(3, 2), x.clone())]).unwrap();
        assert_eq!(out[0].1, vec![-0.5, 2.0, -1.5, -0.4, 5.0, -0.6]);
        let out = run(&op(&[1.0, 2.0, 3.0]), &[(Shape::d1(3), vec![-1.0; 3])]).unwrap();
        assert_eq!(out[0].1, vec![-1.0, -2.0, -3.0]);
    }

    #[test]
    fn split_across_workers_matches_one_worker() {
        let slopes: Vec<f32> = (0..64).map(|i| i as f32 / 64.0).collect();
        let s = Shape::d3(17, 19, 64);
        let x = crate::rng::Rng::new(1).vec(s.len(), -1.0, 1.0);
        let one = crate::ops::harness::run_threads(&op(&slopes), &[(s, x.clone())], 1).unwrap();
        let three = crate::ops::harness::run_threads(&op(&slopes), &[(s, x.clone())], 3).unwrap();
        assert_eq!(one, three);
        for (i, (y, v)) in one[0].1.iter().zip(&x).enumerate() {
            let slope = slopes[i / (17 * 19)];
            assert_eq!(*y, if *v < 0.0 { v * slope } else { *v });
        }
    }

    #[test]
    fn reads_slopes_and_checks_counts() {
        let mut w = WeightReader::zeros();
        let pd = crate::ops::harness::params(&[(0, crate::ops::harness::int(4))]);
        let p = PReLU::new(&pd, &mut w).unwrap();
        assert_eq!(p.slopes.len(), 4);
        assert!(p.output_shapes(&[Shape::d3(2, 2, 5)]).is_err());
        assert!(p.output_shapes(&[Shape::d3(2, 2, 4)]).is_ok());
        assert!(PReLU::new(&ParamDict::new(), &mut w).is_err());
    }
}
