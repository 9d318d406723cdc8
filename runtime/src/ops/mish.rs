//! Mish, in place: `x * tanh(ln(1 + exp(x)))`, the fused activation's formula
//! ([`super::activation::Activation::Mish`], the reference; ncnn's layer cuts the softplus at |x| > 20, which
//! changes nothing in f32). No params.
//!
//! Hot in YOLOv4-style models: `forward_inplace` uses [`mish_fast`], one vectorisable exp
//! instead of three libm calls per element, tested against the reference (within 5e-7).

use super::elementwise::for_each_chunk;
use super::swish::exp_fast;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::LayerResult;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Mish;

/// With e = exp(x), tanh(ln(1 + e)) = n / (n + 2) for n = e (e + 2); above x = 20 the result
/// is x in f32 (and n would overflow further up).
#[inline(always)]
pub fn mish_fast(x: f32) -> f32 {
    let e = exp_fast(x);
    let n = e * (e + 2.0);
    let y = x * n / (n + 2.0);
    if x > 20.0 {
        x
    } else {
        y
    }
}

impl Op for Mish {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        for_each_chunk(ctx.pool, x.data, &|part| {
            part.iter_mut().for_each(|v| *v = mish_fast(*v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::activation::Activation;
    use crate::ops::harness::{assert_close, run, run_threads};
    use crate::rng::Rng;

    #[test]
    fn known_values_and_extremes() {
        let xs = vec![0.0, 1.0, -1.0, 30.0, -30.0, 100.0];
        let out = run(&Mish, &[(Shape::d1(6), xs)]).unwrap();
        let want = [0.0, 0.865_098_4, -0.303_401_3, 30.0, -2.807e-12, 100.0];
        assert_close(&out[0].1, &want, 1e-6);
    }

    #[test]
    fn fast_path_matches_reference() {
        let mut xs = Rng::new(6).vec(60_000, -40.0, 40.0);
        xs.extend([
            0.0, -0.0, 19.99, 20.01, 88.0, -88.0, 200.0, -200.0, 1e-7, -1e-7,
        ]);
        let want: Vec<f32> = xs.iter().map(|&x| Activation::Mish.apply(x)).collect();
        let got = run_threads(&Mish, &[(Shape::d1(xs.len()), xs.clone())], 2).unwrap();
        for ((g, w), x) in got[0].1.iter().zip(&want).zip(&xs) {
            // Below x = -87 exp is clamped: ~1e-36 instead of 0.
            assert!(
                (g - w).abs() <= 5e-7 * w.abs() + 1e-35,
                "x {x}: got {g}, want {w}"
            );
        }
        assert!(mish_fast(f32::NAN).is_nan());
    }
}
