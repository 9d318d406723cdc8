//! Dequantize (standalone, as in ncnn's int8 models): `y = x * scale + bias`, in place, with
//! one scale (bias) for the whole blob or one per row of a 2-D blob, per channel of a 3-D /
//! 4-D blob. A 1-D blob uses the first scale and bias for every element, as ncnn's current
//! layer does.
//!
//! Params: `0 = scale_data_size` (1), `1 = bias_data_size` (0: no bias). Weights:
//! `scale_data` (`scale_data_size` raw floats), then `bias_data` (`bias_data_size` raw floats)
//! when present. A zero-weight reader gives scales of 1 and biases of 0.
//!
//! How the integer input is carried: ncnn's Dequantize reads an int32 blob (a conv's raw
//! accumulators; ncnn has no layer that writes one, so it comes from the caller). Here the
//! input is an fp32 blob holding those integers as exact float values (|x| < 2^24), the same
//! way Quantize and Requantize carry their int8 results, so `Quantize -> Dequantize` gives
//! `round(x * s_q) * s_d + b`. (In ncnn that chain reads the int8 bytes as int32: garbage.)
//! The layer never reads or writes an int8 blob.

use super::elementwise::for_each_groups;
use super::quantize::{check_groups, group_value, positive_size, quant_groups, read_values};
use super::{expect_inputs, Ctx, Op, Storage};
use crate::error::{invalid, LayerResult, Result};
use crate::model::paramdict::ParamDict;
use crate::model::weights::WeightReader;
use crate::tensor::{Shape, TensorMut};

#[derive(Debug)]
pub struct Dequantize {
    pub scales: Vec<f32>,
    /// Empty: no bias.
    pub bias: Vec<f32>,
}

impl Dequantize {
    pub fn new(pd: &ParamDict, w: &mut WeightReader) -> Result<Dequantize> {
        let n = positive_size(pd, 0, "scale_data_size")?;
        let nb = pd.int(1, 0)?;
        let nb = usize::try_from(nb)
            .map_err(|_| invalid(format!("bias_data_size (key 1) is {nb}; it must be >= 0")))?;
        let scales = read_values(w, n, "scale_data", 1.0)?;
        let bias = read_values(w, nb, "bias_data", 0.0)?;
        Ok(Dequantize { scales, bias })
    }
}

impl Op for Dequantize {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let s = inputs[0];
        check_groups(&s, self.scales.len(), "scale_data", 0)?;
        check_groups(&s, self.bias.len(), "bias_data", 1)?;
        Ok(vec![s])
    }

    fn storage(&self) -> Storage {
        Storage::InPlace
    }

    fn forward_inplace(&self, x: &mut TensorMut, ctx: &mut Ctx) -> LayerResult<()> {
        let (_, group_len) = quant_groups(&x.shape);
        let len = x.shape.len();
        for_each_groups(ctx.pool, &mut x.data[..len], group_len, &|first, part| {
            for (k, group) in part.chunks_exact_mut(group_len).enumerate() {
                let g = first + k;
                let scale = group_value(&self.scales, g);
                let bias = if self.bias.is_empty() {
                    0.0
                } else {
                    group_value(&self.bias, g)
                };
                group.iter_mut().for_each(|v| *v = *v * scale + bias);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::Source;
    use crate::ops::harness::{assert_close, int, params, run, run_threads};
    use std::sync::Arc;

    fn reader(values: &[f32]) -> WeightReader {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "t.bin")
    }

    fn op(ns: i32, nb: i32, weights: &[f32]) -> Dequantize {
        Dequantize::new(&params(&[(0, int(ns)), (1, int(nb))]), &mut reader(weights)).unwrap()
    }

    #[test]
    fn scale_and_bias_per_group() {
        let x: Vec<f32> = vec![-3.0, 4.0, 10.0, -10.0];
        let d = op(1, 0, &[0.5]);
        assert_eq!(
            run(&d, &[(Shape::d1(4), x.clone())]).unwrap()[0].1,
            [-1.5, 2.0, 5.0, -5.0]
        );
        let d = op(2, 1, &[0.5, 0.25, 1.0]);
        let got = run(&d, &[(Shape::d2(2, 2), x.clone())]).unwrap().remove(0);
        assert_close(&got.1, &[-0.5, 3.0, 3.5, -1.5], 0.0);
        let d = op(1, 2, &[2.0, 1.0, -1.0]);
        let got = run(&d, &[(Shape::d4(1, 2, 1, 2), x.clone())])
            .unwrap()
            .remove(0);
        assert_close(&got.1, &[-5.0, 9.0, 19.0, -21.0], 0.0);
        // 1-D: the first scale and bias for every element, as in ncnn.
        let d = op(4, 4, &[2.0, 2.0, 3.0, 4.0, 0.5, 0.0, 0.0, 1.0]);
        let got = run(&d, &[(Shape::d1(4), x.clone())]).unwrap().remove(0);
        assert_close(&got.1, &[-5.5, 8.5, 20.5, -19.5], 0.0);
    }

    #[test]
    fn threads_agree() {
        let n = 3 * 20000;
        let x: Vec<f32> = (0..n).map(|i| (i % 255) as f32 - 127.0).collect();
        let d = op(3, 3, &[0.1, 0.2, 0.3, 1.0, 2.0, 3.0]);
        let s = Shape::d3(200, 100, 3);
        assert_eq!(
            run_threads(&d, &[(s, x.clone())], 3).unwrap(),
            run(&d, &[(s, x)]).unwrap()
        );
    }

    #[test]
    fn bad_params_and_shapes() {
        let pd = params(&[(0, int(-1))]);
        assert!(Dequantize::new(&pd, &mut reader(&[1.0])).is_err());
        let pd = params(&[(1, int(-2))]);
        let e = Dequantize::new(&pd, &mut reader(&[1.0])).unwrap_err();
        assert!(e.to_string().contains("bias_data_size"), "{e}");
        let pd = params(&[(1, int(1))]);
        assert!(Dequantize::new(&pd, &mut reader(&[1.0])).is_err()); // bias missing
        let d = op(1, 3, &[1.0, 0.0, 0.0, 0.0]);
        let e = d.output_shapes(&[Shape::d3(2, 2, 4)]).unwrap_err();
        assert!(e.0.contains("bias_data"), "{e}");
        assert!(d.output_shapes(&[Shape::d2(2, 3)]).is_ok());
    }
}
