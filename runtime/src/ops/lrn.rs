//! LRN (local response normalisation): `y = x * (bias + alpha / n * sum(x^2))^-beta`, the sum
//! over `local_size` neighbouring channels (region 0, n = local_size) or over a
//! local_size x local_size window in the same channel (region 1, n = local_size^2), zeros
//! outside the blob.
//!
//! Params: `0 = region_type`, `1 = local_size` (5), `2 = alpha` (1), `3 = beta` (0.75),
//! `4 = bias` (1). Runs out of place so neighbours are read unmodified.

use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::pool::SharedMut;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    AcrossChannels,
    WithinChannel,
}

#[derive(Debug)]
pub struct Lrn {
    pub region: Region,
    pub local_size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

impl Lrn {
    pub fn new(pd: &ParamDict) -> LayerResult<Lrn> {
        let region = match pd.int(0, 0)? {
            0 => Region::AcrossChannels,
            1 => Region::WithinChannel,
            t => return Err(invalid(format!("unknown LRN region_type {t}"))),
        };
        let local_size = pd.usize(1, 5)?;
        if local_size == 0 {
            return Err(invalid("local_size (param 1) must be positive"));
        }
        Ok(Lrn {
            region,
            local_size,
            alpha: pd.float(2, 1.0)?,
            beta: pd.float(3, 0.75)?,
            bias: pd.float(4, 1.0)?,
        })
    }

    /// Output channel `q` from the whole input.
    fn channel(&self, x: &Tensor, q: usize, out: &mut [f32]) {
        let s = x.shape;
        let src = x.channel(q);
        match self.region {
            Region::AcrossChannels => {
                let alpha_div_size = self.alpha / self.local_size as f32;
                let half = self.local_size / 2;
                // Accumulate squares channel by channel in increasing order, as ncnn does.
                out.fill(0.0);
                let lo = q.saturating_sub(half);
                let hi = (q + half).min(s.c - 1);
                for p in lo..=hi {
                    for (o, v) in out.iter_mut().zip(x.channel(p)) {
                        *o += v * v;
                    }
                }
                for (o, v) in out.iter_mut().zip(src) {
                    *o = v * (self.bias + alpha_div_size * *o).powf(-self.beta);
                }
            }
            Region::WithinChannel => {
                let (w, h) = (s.w as isize, s.h as isize);
                let k = self.local_size as isize;
                let before = k / 2;
                let alpha_div_size = self.alpha / (k * k) as f32;
                for y in 0..h {
                    for xx in 0..w {
                        let mut ss = 0.0f32;
                        for ky in (y - before).max(0)..(y - before + k).min(h) {
                            let row = &src[(ky * w) as usize..][..w as usize];
                            for kx in (xx - before).max(0)..(xx - before + k).min(w) {
                                let v = row[kx as usize];
                                ss += v * v;
                            }
                        }
                        let i = (y * w + xx) as usize;
                        out[i] = src[i] * (self.bias + alpha_div_size * ss).powf(-self.beta);
                    }
                }
            }
        }
    }
}

impl Op for Lrn {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        if inputs[0].dims == 4 {
            return Err(invalid(format!(
                "LRN of a 4-D blob {} is not supported",
                inputs[0]
            )));
        }
        Ok(vec![inputs[0]])
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let x = &inputs[0];
        let (c, plane) = (x.shape.c, x.shape.plane());
        let out = SharedMut::new(outputs[0].data);
        ctx.pool
            .run(c, &|q, _| {
                // SAFETY: each task writes its own channel.
                let dst = unsafe { out.slice(q * plane, plane) };
                self.channel(x, q, dst);
            })
            .map_err(|e| invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, float, int, params, run};
    use crate::rng::Rng;

    /// Padded-window reference in f64, written the straightforward way.
    fn reference(op: &Lrn, x: &[f32], s: Shape) -> Vec<f32> {
        let (w, h, c) = (s.w as i64, s.h as i64, s.c as i64);
        let at = |q: i64, y: i64, xx: i64| x[((q * h + y) * w + xx) as usize] as f64;
        let k = op.local_size as i64;
        let mut out = vec![0.0; x.len()];
        for q in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    let (ss, n) = match op.region {
                        Region::AcrossChannels => {
                            let r = (q - k / 2..=q + k / 2).filter(|p| (0..c).contains(p));
                            (r.map(|p| at(p, y, xx).powi(2)).sum::<f64>(), k)
                        }
                        Region::WithinChannel => {
                            let mut ss = 0.0;
                            for ky in y - k / 2..y - k / 2 + k {
                                for kx in xx - k / 2..xx - k / 2 + k {
                                    if (0..h).contains(&ky) && (0..w).contains(&kx) {
                                        ss += at(q, ky, kx).powi(2);
                                    }
                                }
                            }
                            (ss, k * k)
                        }
                    };
                    let v = at(q, y, xx)
                        * (op.bias as f64 + op.alpha as f64 / n as f64 * ss).powf(-op.beta as f64);
                    out[((q * h + y) * w + xx) as usize] = v as f32;
                }
            }
        }
        out
    }

    #[test]
    fn across_channels_by_hand() {
        // 3 channels of one element; local_size 3, alpha 3, beta 1, bias 1:
        // ch0: 1 / (1 + (1 + 4)) = 1/6; ch1: 2 / (1 + 14) ; ch2: 3 / (1 + 13).
        let op = Lrn::new(&params(&[(1, int(3)), (2, float(3.0)), (3, float(1.0))])).unwrap();
        let out = run(&op, &[(Shape::d3(1, 1, 3), vec![1.0, 2.0, 3.0])]).unwrap();
        assert_close(&out[0].1, &[1.0 / 6.0, 2.0 / 15.0, 3.0 / 14.0], 1e-6);
    }

    #[test]
    fn matches_reference_both_regions_odd_sizes() {
        let mut rng = Rng::new(11);
        let s = Shape::d3(7, 5, 6);
        let x = rng.vec(s.len(), -2.0, 2.0);
        for region in [0, 1] {
            for size in [1, 2, 3, 5] {
                let op = Lrn::new(&params(&[
                    (0, int(region)),
                    (1, int(size)),
                    (2, float(1e-1)),
                    (4, float(2.0)),
                ]))
                .unwrap();
                let got = run(&op, &[(s, x.clone())]).unwrap();
                assert_close(&got[0].1, &reference(&op, &x, s), 2e-6);
            }
        }
    }

    #[test]
    fn errors() {
        assert!(Lrn::new(&params(&[(0, int(2))])).is_err());
        assert!(Lrn::new(&params(&[(1, int(0))])).is_err());
        let op = Lrn::new(&ParamDict::new()).unwrap();
        assert!(op.output_shapes(&[Shape::d4(1, 1, 1, 1)]).is_err());
    }
}
