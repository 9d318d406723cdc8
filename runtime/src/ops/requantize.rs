//! Requantize (standalone, as in ncnn's int8 models): from integer accumulators to int8,
//! `q = clamp(round(act(x * scale_in + bias) * scale_out), -127, 127)`, rounding half away
//! from zero, each of scale_in / scale_out / bias one value for the whole blob or one per row
//! of a 2-D blob, per channel of a 3-D / 4-D blob. A 1-D blob uses the first values for every
//! element, as ncnn's current layer does.
//!
//! Params: `0 = scale_in_data_size` (1), `1 = scale_out_data_size` (1), `2 = bias_data_size`
//! (0: no bias), `3 = activation_type` (0 none, 1 ReLU, 2 LeakyReLU, 3 Clip, 4 Sigmoid,
//! 5 Mish, 6 HardSwish), `4 = activation_params`. Weights, raw floats in this order:
//! `scale_in_data`, `scale_out_data`, `bias_data` (when present). A zero-weight reader gives
//! scales of 1 and biases of 0.
//!
//! How integers are carried: the input (ncnn: an int32 blob) is an fp32 blob holding the
//! integers as exact float values, as for Dequantize. The output is carried as Quantize's
//! is: integer-valued fp32 by default, or an int8 blob when every reader takes int8 input
//! (a quantized Convolution / InnerProduct, which then uses the values as they are; the clamp
//! is then the reader grid's, and the float simulation writes `q / bottom`). The module doc
//! of `quantize` has the details.

use super::activation::Activation;
use super::quantize::{
    check_groups, group_value, positive_size, quant_groups, read_values, write_integers, QMAX,
};
use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult, Result};
use crate::model::paramdict::ParamDict;
use crate::model::weights::WeightReader;
use crate::quant::{quantize_scaled, Int8Grid, Precision, PrecisionChoice};
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Debug)]
pub struct Requantize {
    pub scale_in: Vec<f32>,
    pub scale_out: Vec<f32>,
    /// Empty: no bias.
    pub bias: Vec<f32>,
    pub activation: Activation,
    out_grid: Option<Int8Grid>,
    simulate: bool,
}

impl Requantize {
    pub fn new(pd: &ParamDict, w: &mut WeightReader) -> Result<Requantize> {
        let n_in = positive_size(pd, 0, "scale_in_data_size")?;
        let n_out = positive_size(pd, 1, "scale_out_data_size")?;
        let nb = pd.int(2, 0)?;
        let nb = usize::try_from(nb)
            .map_err(|_| invalid(format!("bias_data_size (key 2) is {nb}; it must be >= 0")))?;
        // The activation reader takes keys 9 / 10 (Convolution's); Requantize uses 3 / 4.
        let mut act = ParamDict::new();
        for (from, to) in [(3, 9), (4, 10)] {
            if let Some(v) = pd.get(from) {
                act.set(to, v.clone())?;
            }
        }
        let activation = Activation::from_params(&act)
            .map_err(|e| invalid(format!("{} (keys 3 / 4 of Requantize)", e.0)))?;
        let scale_in = read_values(w, n_in, "scale_in_data", 1.0)?;
        let scale_out = read_values(w, n_out, "scale_out_data", 1.0)?;
        let bias = read_values(w, nb, "bias_data", 0.0)?;
        Ok(Requantize {
            scale_in,
            scale_out,
            bias,
            activation,
            out_grid: None,
            simulate: false,
        })
    }

    fn check(&self, inputs: &[Shape]) -> LayerResult<Shape> {
        expect_inputs(inputs, 1)?;
        let s = inputs[0];
        check_groups(&s, self.scale_in.len(), "scale_in_data", 0)?;
        check_groups(&s, self.scale_out.len(), "scale_out_data", 1)?;
        check_groups(&s, self.bias.len(), "bias_data", 2)?;
        Ok(s)
    }

    /// The requantized value of element `x` in group `g`.
    #[inline]
    fn requantize(&self, x: f32, g: usize, qmax: i32) -> i8 {
        let bias = if self.bias.is_empty() {
            0.0
        } else {
            group_value(&self.bias, g)
        };
        let v = self
            .activation
            .apply(x * group_value(&self.scale_in, g) + bias);
        quantize_scaled(v * group_value(&self.scale_out, g), qmax)
    }
}

impl Op for Requantize {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        Ok(vec![self.check(inputs)?])
    }

    fn set_precision(&mut self, choice: PrecisionChoice) -> LayerResult<Option<Precision>> {
        self.simulate = choice == PrecisionChoice::Simulate;
        Ok(None)
    }

    fn can_requantize(&self) -> bool {
        true
    }

    fn set_int8_io(&mut self, input: bool, output: Option<Int8Grid>) -> LayerResult<()> {
        if input {
            return Err(invalid(
                "Requantize reads integer-valued fp32 input, not int8",
            ));
        }
        self.out_grid = output;
        Ok(())
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        _ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let s = self.check(&[inputs[0].shape])?;
        let (_, group_len) = quant_groups(&s);
        let x = inputs[0].data;
        let qmax = self.out_grid.map_or(QMAX, |g| g.qmax);
        let q = |i: usize| self.requantize(x[i], i / group_len, qmax);
        write_integers(&mut outputs[0], s.len(), self.out_grid, self.simulate, q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::model::weights::Source;
    use crate::ops::harness::{float, int, params, run};
    use std::sync::Arc;

    fn reader(values: &[f32]) -> WeightReader {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "t.bin")
    }

    fn op(pairs: &[(usize, Value)], weights: &[f32]) -> Requantize {
        Requantize::new(&params(pairs), &mut reader(weights)).unwrap()
    }

    #[test]
    fn scale_bias_round_clamp() {
        // (x * 0.5 + 0.25) * 2: 3 -> 3.5 -> 4 (half away), -3 -> -2.5 -> -3, 500 -> 127.
        let r = op(&[(2, int(1))], &[0.5, 2.0, 0.25]);
        let x = vec![3.0, -3.0, 500.0, -500.0, 0.0];
        let got = run(&r, &[(Shape::d1(5), x)]).unwrap().remove(0).1;
        assert_eq!(got, [4.0, -3.0, 127.0, -127.0, 1.0]);
    }

    #[test]
    fn per_channel_values_and_activations() {
        let x = vec![-10.0, 10.0, -10.0, 10.0];
        // Channel 0: scale_in 1, out 1, bias 0; channel 1: scale_in 2, out 3, bias 1; ReLU.
        let r = op(
            &[(0, int(2)), (1, int(2)), (2, int(2)), (3, int(1))],
            &[1.0, 2.0, 1.0, 3.0, 0.0, 1.0],
        );
        let got = run(&r, &[(Shape::d3(2, 1, 2), x.clone())])
            .unwrap()
            .remove(0)
            .1;
        assert_eq!(got, [0.0, 10.0, 0.0, 63.0]);
        // Leaky ReLU 0.1, rows of a 2-D blob, one scale_out.
        let r = op(
            &[(0, int(2)), (3, int(2)), (4, Value::FloatArray(vec![0.1]))],
            &[1.0, 0.5, 1.0],
        );
        let got = run(&r, &[(Shape::d2(2, 2), x.clone())])
            .unwrap()
            .remove(0)
            .1;
        assert_eq!(got, [-1.0, 10.0, -1.0, 5.0]);
        // Clip to [-2, 3] on a 4-D blob.
        let r = op(
            &[(3, int(3)), (4, Value::FloatArray(vec![-2.0, 3.0]))],
            &[1.0, 1.0],
        );
        let got = run(&r, &[(Shape::d4(1, 1, 2, 2), x)]).unwrap().remove(0).1;
        assert_eq!(got, [-2.0, 3.0, -2.0, 3.0]);
    }

    #[test]
    fn bad_params_and_shapes() {
        let bad = |pairs: &[(usize, Value)], w: &[f32], what: &str| {
            let e = Requantize::new(&params(pairs), &mut reader(w)).unwrap_err();
            assert!(e.to_string().contains(what), "{e}");
        };
        bad(&[(0, int(0))], &[1.0, 1.0], "scale_in_data_size");
        bad(&[(1, int(-1))], &[1.0, 1.0], "scale_out_data_size");
        bad(&[(2, int(-1))], &[1.0, 1.0], "bias_data_size");
        bad(&[(3, int(9))], &[1.0, 1.0], "activation");
        bad(&[(3, int(2))], &[1.0, 1.0], "key 10");
        bad(&[(2, int(1))], &[1.0, 1.0], "bias_data");
        bad(&[(3, float(1.5))], &[1.0, 1.0], "keys 3 / 4");
        let r = op(&[(1, int(3))], &[1.0, 1.0, 1.0, 1.0]);
        let e = r.output_shapes(&[Shape::d2(3, 4)]).unwrap_err();
        assert!(e.0.contains("scale_out_data"), "{e}");
        assert!(r.output_shapes(&[Shape::d1(3)]).is_ok());
    }
}
