//! ReLU with optional negative slope (leaky ReLU), in place.
//!
//! Plain ReLU (slope 0) carries int8 values through unchanged in scale (`max(q, 0)` is the
//! quantization of `max(x, 0)`), so after `set_int8_io(true, Some(grid))` it runs on int8 blobs.

use super::elementwise::PARALLEL_MIN;
use super::quantized::as_i8_mut;
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::pool::SharedMut;
use crate::quant::Int8Grid;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct ReLU {
    pub slope: f32,
    /// The blob holds int8 values (`set_int8_io`).
    int8: bool,
}

impl ReLU {
    pub fn new(pd: &ParamDict) -> LayerResult<ReLU> {
        Ok(ReLU {
            slope: pd.float(0, 0.0)?,
            int8: false,
        })
    }

    /// `x < 0 ? 0 : x` (or `x * slope`): `< 0` rather than `max` keeps NaN and -0.0 as ncnn
    /// does. Written as a select on every element (not a conditional store) so that it
    /// compiles to vector compares and selects.
    fn f32_chunk(&self, x: &mut [f32]) {
        if self.slope == 0.0 {
            x.iter_mut()
                .for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v });
        } else {
            let slope = self.slope;
            x.iter_mut()
                .for_each(|v| *v = if *v < 0.0 { *v * slope } else { *v });
        }
    }
}

/// Runs `f` on disjoint chunks of `data` across the pool when it is large.
fn chunks<T: Send>(ctx: &Ctx, data: &mut [T], f: &(dyn Fn(&mut [T]) + Sync)) -> LayerResult<()> {
    let n = data.len();
    // Int8 elements are 4 to a float: compare in bytes.
    let tasks = if std::mem::size_of_val(data) >= 4 * PARALLEL_MIN {
        ctx.pool.threads()
    } else {
        1
    };
    if tasks <= 1 {
        f(data);
        return Ok(());
    }
    let shared = SharedMut::new(data);
    ctx.pool
        .run(tasks, &|t, _| {
            let (lo, hi) = (n * t / tasks, n * (t + 1) / tasks);
            // SAFETY: tasks take disjoint ranges.
            f(unsafe { shared.slice(lo, hi - lo) });
        })
        .map_err(|e| invalid(e.to_string()))
}

impl Op for ReLU {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        Ok(vec![inputs[0]])
    }
    fn storage(&self) -> Storage {
        Storage::InPlace
    }
    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        if self.int8 {
            let q = as_i8_mut(x.data, x.shape.len())?;
            return chunks(ctx, q, &|q| q.iter_mut().for_each(|v| *v = (*v).max(0)));
        }
        chunks(ctx, x.data, &|x| self.f32_chunk(x))
    }

    /// Plain ReLU: `max(q, 0)` on int8 is `max(x, 0)` quantized.
    fn int8_passthrough(&self) -> bool {
        self.slope == 0.0
    }

    /// Input and output (the same blob) are int8 together, only for plain ReLU.
    fn set_int8_io(&mut self, input: bool, output: Option<Int8Grid>) -> LayerResult<()> {
        let output = output.is_some();
        if input != output {
            return Err(invalid(format!(
                "ReLU works in place: its blob is int8 for input and output or for neither (input int8: {input}, output int8: {output})"
            )));
        }
        if input && !self.int8_passthrough() {
            return Err(invalid(
                "leaky ReLU cannot run on int8 (x * slope leaves the quantization grid)",
            ));
        }
        self.int8 = input;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// Any grid: pass-through ops keep the values and do not look at it.
    const GRID: crate::quant::Int8Grid = crate::quant::Int8Grid {
        scale: 10.0,
        qmax: 127,
    };

    use super::*;
    use crate::model::paramdict::Value;
    use crate::ops::harness::{params, run, run_threads};
    use crate::pool::Pool;
    use crate::quant::quantize;
    use crate::rng::Rng;

    fn op(slope: f32) -> ReLU {
        let p = if slope == 0.0 {
            params(&[])
        } else {
            params(&[(0, Value::Float(slope))])
        };
        ReLU::new(&p).unwrap()
    }

    /// The scalar definition: `if x < 0 { x = 0 (or x * slope) }`.
    fn reference(slope: f32, x: &[f32]) -> Vec<f32> {
        x.iter()
            .map(|&v| {
                let mut v = v;
                if v < 0.0 {
                    v = if slope == 0.0 { 0.0 } else { v * slope };
                }
                v
            })
            .collect()
    }

    #[test]
    fn keeps_nan_and_negative_zero_bit_for_bit() {
        let mut rng = Rng::new(3);
        let mut x = rng.vec(70_000, -2.0, 2.0);
        for (i, v) in [f32::NAN, -0.0, 0.0, f32::NEG_INFINITY, f32::INFINITY]
            .into_iter()
            .enumerate()
        {
            x[i * 7] = v;
            x[40_000 + i] = v;
        }
        for slope in [0.0, 0.1, -1.5] {
            let want = reference(slope, &x);
            for threads in [1, 3] {
                let s = Shape::d3(70, 100, 10);
                let got = run_threads(&op(slope), &[(s, x.clone())], threads).unwrap();
                for (i, (g, w)) in got[0].1.iter().zip(&want).enumerate() {
                    assert!(
                        g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                        "slope {slope} element {i}: {g} vs {w}"
                    );
                }
            }
        }
        let out = run(&op(0.0), &[(Shape::d1(3), vec![-0.0, -1.0, f32::NAN])]).unwrap();
        assert_eq!(out[0].1[0].to_bits(), (-0.0f32).to_bits());
        assert_eq!(out[0].1[1], 0.0);
        assert!(out[0].1[2].is_nan());
    }

    /// Runs `op` in place on int8 values packed 4 per float.
    fn run_i8(op: &ReLU, q: &[i8], threads: usize) -> Vec<i8> {
        let mut data = vec![0.0f32; q.len().div_ceil(4)];
        as_i8_mut(&mut data, q.len()).unwrap().copy_from_slice(q);
        let pool = Pool::new(threads).unwrap();
        let mut ctx = Ctx {
            pool: &pool,
            scratch: &mut [],
        };
        let mut x = TensorMut {
            shape: Shape::d1(q.len()),
            data: &mut data,
        };
        op.forward_inplace(&mut x, &mut ctx).unwrap();
        bytemuck::cast_slice::<f32, i8>(&data)[..q.len()].to_vec()
    }

    #[test]
    fn int8_relu_is_the_quantized_fp32_relu() {
        let mut rng = Rng::new(4);
        for n in [1, 3, 17, 1000, 70_001] {
            let q: Vec<i8> = (0..n).map(|_| rng.range(-127, 127) as i8).collect();
            let scale = rng.uniform(0.1, 50.0);
            let x: Vec<f32> = q.iter().map(|&v| v as f32 / scale).collect();
            let fp32 = run(&op(0.0), &[(Shape::d1(n), x)]).unwrap();
            let want: Vec<i8> = fp32[0].1.iter().map(|&v| quantize(v, scale, 127)).collect();
            let mut relu = op(0.0);
            relu.set_int8_io(true, Some(GRID)).unwrap();
            for threads in [1, 3] {
                assert_eq!(run_i8(&relu, &q, threads), want, "{n} values");
            }
        }
    }

    #[test]
    fn int8_io_contract() {
        let mut relu = op(0.0);
        assert!(relu.int8_passthrough());
        assert!(relu.set_int8_io(true, None).is_err());
        assert!(relu.set_int8_io(false, Some(GRID)).is_err());
        relu.set_int8_io(true, Some(GRID)).unwrap();
        relu.set_int8_io(false, None).unwrap();
        let out = run(&relu, &[(Shape::d1(2), vec![-1.0, 2.0])]).unwrap();
        assert_eq!(out[0].1, vec![0.0, 2.0]);
        let mut leaky = op(0.1);
        assert!(!leaky.int8_passthrough());
        let e = leaky.set_int8_io(true, Some(GRID)).unwrap_err();
        assert!(e.to_string().contains("leaky"), "{e}");
        leaky.set_int8_io(false, None).unwrap();
    }
}
