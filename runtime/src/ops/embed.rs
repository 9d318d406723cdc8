//! Embed: looks up one row of a `input_dim x num_output` table per index.
//!
//! Params: `0 = num_output`, `1 = input_dim`, `2 = bias_term`, `3 = weight_data_size` (must be
//! `num_output * input_dim`), `18 = int8_scale_term`. Weights: the table (tagged), then the
//! bias (`num_output` raw floats) when `bias_term`, then with int8_scale_term != 0 one raw
//! scale: the table is then int8 (an int8-tagged blob; ncnn would misread any other) and a
//! looked-up value is `q as f32 · (1 / scale)` (+ bias), as ncnn computes it.
//!
//! The input is a 1-D blob of `words` indices stored, as ncnn stores them, as int32 bit
//! patterns in the float slots; indices are clamped to `0..input_dim`. The output is 2-D,
//! `num_output` wide and `words` high. (ncnn reads the first `w` values of any input; only
//! 1-D inputs are accepted here.)

use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult, Result};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, Int8s, Tagged, WeightReader};
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Debug)]
pub struct Embed {
    pub num_output: usize,
    pub input_dim: usize,
    /// The fp32 table (empty in the int8 form).
    pub weights: Floats,
    pub bias: Option<Floats>,
    /// The int8 form's table and `1 / scale`.
    pub int8: Option<(Int8s, f32)>,
}

impl Embed {
    pub fn new(pd: &ParamDict, w: &mut WeightReader) -> Result<Embed> {
        let num_output = pd.usize(0, 0)?;
        let input_dim = pd.usize(1, 0)?;
        let bias_term = pd.int(2, 0)?;
        let size = pd.usize(3, 0)?;
        if num_output == 0 || input_dim == 0 {
            return Err(
                invalid("num_output (param 0) and input_dim (param 1) must be positive").into(),
            );
        }
        if num_output.checked_mul(input_dim) != Some(size) {
            return Err(invalid(format!(
                "weight_data_size (param 3) = {size} must be num_output x input_dim = {num_output} x {input_dim}"
            ))
            .into());
        }
        if bias_term != 0 && bias_term != 1 {
            return Err(invalid(format!(
                "bias_term (param 2) must be 0 or 1, got {bias_term}"
            ))
            .into());
        }
        let int8 = pd.int(18, 0)? != 0;
        let (weights, table8) = match w.tagged(size, "weight")? {
            Tagged::I8(q) if int8 => (Floats::owned(Vec::new()), Some(q)),
            Tagged::F32(_) if int8 && !w.is_zeros() => {
                return Err(invalid("int8 Embed (param 18) needs an int8-tagged table").into())
            }
            Tagged::F32(_) if int8 => (
                Floats::owned(Vec::new()),
                Some(Int8s::Owned(vec![0; size].into())),
            ),
            other => (other.into_f32().map_err(invalid)?, None),
        };
        let bias = if bias_term == 1 {
            Some(w.raw(num_output, "bias")?)
        } else {
            None
        };
        let int8 = match table8 {
            Some(q) => {
                let scale = match w.is_zeros() {
                    true => 1.0,
                    false => w.raw(1, "int8 scale")?[0],
                };
                if !(scale.is_finite() && scale > 0.0) {
                    return Err(
                        invalid(format!("int8 scale {scale} must be positive and finite")).into(),
                    );
                }
                Some((q, 1.0 / scale))
            }
            None => None,
        };
        Ok(Embed {
            num_output,
            input_dim,
            weights,
            bias,
            int8,
        })
    }
}

impl Op for Embed {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        if inputs[0].dims != 1 {
            return Err(invalid(format!(
                "input {} must be 1-D (the indices)",
                inputs[0]
            )));
        }
        Ok(vec![Shape::checked(2, self.num_output, inputs[0].w, 1, 1)?])
    }
    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        _: &mut Ctx,
    ) -> LayerResult<()> {
        let n = self.num_output;
        for (&idx, row) in inputs[0]
            .data
            .iter()
            .zip(outputs[0].data.chunks_exact_mut(n))
        {
            let word = (idx.to_bits() as i32).clamp(0, self.input_dim as i32 - 1) as usize;
            if let Some((q, descale)) = &self.int8 {
                let em = &q[word * n..(word + 1) * n];
                match &self.bias {
                    Some(b) => {
                        for ((o, &e), b) in row.iter_mut().zip(em).zip(b.iter()) {
                            *o = e as f32 * descale + b;
                        }
                    }
                    None => {
                        for (o, &e) in row.iter_mut().zip(em) {
                            *o = e as f32 * descale;
                        }
                    }
                }
                continue;
            }
            let em = &self.weights[word * n..(word + 1) * n];
            match &self.bias {
                Some(b) => {
                    for ((o, e), b) in row.iter_mut().zip(em).zip(b.iter()) {
                        *o = e + b;
                    }
                }
                None => row.copy_from_slice(em),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::Source;
    use crate::ops::harness::{int, params, run};
    use std::sync::Arc;

    fn reader(words: &[u32]) -> WeightReader {
        let bytes: Vec<u8> = words.iter().flat_map(|v| v.to_le_bytes()).collect();
        WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "e.bin")
    }

    fn ids(v: &[i32]) -> Vec<f32> {
        v.iter().map(|&i| f32::from_bits(i as u32)).collect()
    }

    #[test]
    fn looks_up_and_clamps() {
        // 3 words x 2 outputs: rows (0, 1), (2, 3), (4, 5); bias (10, 20).
        let mut words = vec![0u32];
        words.extend((0..6).map(|i| (i as f32).to_bits()));
        words.extend([10.0f32.to_bits(), 20.0f32.to_bits()]);
        let mut w = reader(&words);
        let pd = params(&[(0, int(2)), (1, int(3)), (2, int(1)), (3, int(6))]);
        let op = Embed::new(&pd, &mut w).unwrap();
        w.finish().unwrap();
        let out = run(&op, &[(Shape::d1(4), ids(&[2, 0, -5, 9]))]).unwrap();
        assert_eq!(out[0].0, Shape::d2(2, 4));
        assert_eq!(
            out[0].1,
            vec![14.0, 25.0, 10.0, 21.0, 10.0, 21.0, 14.0, 25.0]
        );
        let mut w = reader(&words[..7]);
        let pd = params(&[(0, int(2)), (1, int(3)), (3, int(6))]);
        let op = Embed::new(&pd, &mut w).unwrap();
        let out = run(&op, &[(Shape::d1(1), ids(&[1]))]).unwrap();
        assert_eq!(out[0].1, vec![2.0, 3.0]);
        assert!(op.output_shapes(&[Shape::d2(1, 2)]).is_err());
    }

    #[test]
    fn int8_table() {
        // 3 words x 2 outputs, int8 rows (1, -2), (3, 4), (-127, 127) padded to 8 bytes; bias
        // (10, 20); scale 4: values q * 0.25 + bias.
        let bytes = [1u8, 0xFE, 3, 4, 0x81, 127, 0, 0];
        let mut words = vec![0x000D_4B38u32];
        words.extend(
            bytes
                .chunks(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        words.extend([10.0f32.to_bits(), 20.0f32.to_bits(), 4.0f32.to_bits()]);
        let mut w = reader(&words);
        let pd = params(&[
            (0, int(2)),
            (1, int(3)),
            (2, int(1)),
            (3, int(6)),
            (18, int(1)),
        ]);
        let op = Embed::new(&pd, &mut w).unwrap();
        w.finish().unwrap();
        let out = run(&op, &[(Shape::d1(3), ids(&[2, 0, 7]))]).unwrap();
        assert_eq!(out[0].1, vec![-21.75, 51.75, 10.25, 19.5, -21.75, 51.75]);
        // Without bias: the scale follows the table.
        let mut w = reader(&[words[0], words[1], words[2], 4.0f32.to_bits()]);
        let pd = params(&[(0, int(2)), (1, int(3)), (3, int(6)), (18, int(1))]);
        let op = Embed::new(&pd, &mut w).unwrap();
        w.finish().unwrap();
        let out = run(&op, &[(Shape::d1(2), ids(&[1, -1]))]).unwrap();
        assert_eq!(out[0].1, vec![0.75, 1.0, 0.25, -0.5]);
    }

    #[test]
    fn errors() {
        let mut z = WeightReader::zeros();
        let ok = |pairs: &[(usize, i32)]| {
            let p: Vec<_> = pairs.iter().map(|&(k, v)| (k, int(v))).collect();
            Embed::new(&params(&p), &mut WeightReader::zeros()).is_ok()
        };
        assert!(ok(&[(0, 2), (1, 3), (3, 6)]));
        assert!(!ok(&[(0, 2), (1, 3), (3, 5)]));
        assert!(!ok(&[(0, 0), (1, 3), (3, 0)]));
        assert!(!ok(&[(0, 2), (1, 3), (3, 6), (2, 2)]));
        assert!(ok(&[(0, 2), (1, 3), (3, 6), (18, 1)]));
        // int8 form: an fp32 table, or a scale of 0, is refused.
        let mut fp32 = reader(&[0, 0, 0, 0, 0, 0, 0, 1.0f32.to_bits()]);
        let pd = params(&[(0, int(2)), (1, int(3)), (3, int(6)), (18, int(1))]);
        assert!(Embed::new(&pd, &mut fp32).is_err());
        let mut zero_scale = reader(&[0x000D_4B38, 0, 0, 0]);
        assert!(Embed::new(&pd, &mut zero_scale).is_err());
        let mut short = reader(&[0, 0, 0]);
        let pd = params(&[(0, int(2)), (1, int(3)), (3, int(6))]);
        assert!(Embed::new(&pd, &mut short).is_err());
        let _ = &mut z;
    }
}
