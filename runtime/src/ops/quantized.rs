//! What Convolution, ConvolutionDepthWise and InnerProduct share when quantized (ncnn-format.md
//! §6): scales read in ncnn's order and validated, int8 weights (from the file or quantized at
//! load), the precision a layer runs in, and the int8 input / output decisions made at load.

use crate::error::{invalid, LayerResult, Result};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, Tagged, WeightReader};
use crate::ops::Ctx;
use crate::quant::{quantize, Int8Grid, Precision, PrecisionChoice, BITS_KEY};
use crate::tensor::{Shape, Tensor, TensorMut};

/// The scales of a quantized layer, as stored after its bias.
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Scales {
    /// Per output channel (per group for depthwise).
    pub weight: Vec<f32>,
    /// `bottom_blob_int8_scale`: the input is quantized as `x · bottom`.
    pub bottom: f32,
    /// `top_blob_int8_scale`, present when the model asks for int8 output (key 8 > 100).
    pub top: Option<f32>,
    /// The bit width the layer declares with `27=` (absent: INT8).
    pub bits: Precision,
}

impl Int8Scales {
    /// Reads `weights` weight scales, the bottom scale and, when `with_top`, the top scale.
    /// A zero-weight reader (benchncnn mode) yields scales of 1.
    pub fn read(
        pd: &ParamDict,
        w: &mut WeightReader,
        weights: usize,
        with_top: bool,
    ) -> Result<Int8Scales> {
        let bits = declared_bits(pd)?;
        let mut read = |n: usize, what: &str| -> Result<Vec<f32>> {
            if w.is_zeros() {
                return Ok(vec![1.0; n]);
            }
            Ok(w.raw(n, what)?.to_vec())
        };
        let weight = read(weights, "weight int8 scales")?;
        let bottom = read(1, "bottom int8 scale")?[0];
        let top = if with_top {
            Some(read(1, "top int8 scale")?[0])
        } else {
            None
        };
        let s = Int8Scales {
            weight,
            bottom,
            top,
            bits,
        };
        s.validate()?;
        Ok(s)
    }

    /// Fixed scales of 1 for `weights` channels (synthetic benchmarks of fp32 models).
    pub fn synthetic(weights: usize) -> Int8Scales {
        Int8Scales {
            weight: vec![1.0; weights],
            bottom: 1.0,
            top: None,
            bits: Precision::Int8,
        }
    }

    /// Weight scales must be finite and >= 0 (0: an all-zero channel, as ncnn allows);
    /// blob scales finite and > 0.
    fn validate(&self) -> LayerResult<()> {
        if let Some((i, s)) = self
            .weight
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.is_finite() && **s >= 0.0))
        {
            return Err(invalid(format!(
                "weight int8 scale {i} is {s}: scales must be finite and not negative"
            )));
        }
        for (what, s) in [("bottom", Some(self.bottom)), ("top", self.top)] {
            if let Some(s) = s {
                if !(s.is_finite() && s > 0.0) {
                    return Err(invalid(format!(
                        "{what} blob int8 scale is {s}: it must be finite and positive"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The precision this layer runs in for `choice`; None: fp32.
    pub fn precision(&self, choice: PrecisionChoice) -> Option<Precision> {
        match choice {
            PrecisionChoice::Auto | PrecisionChoice::Simulate => Some(self.bits),
            PrecisionChoice::Fp32 => None,
            PrecisionChoice::Int8 => Some(Precision::Int8),
            PrecisionChoice::Int7 => Some(Precision::Int7),
        }
    }
}

/// Synthetic benchmarks of fp32 models: a layer without scales gets fixed ones for `channels`
/// and its fp32 weights become the stored ones (shared, not copied).
pub fn synthesize(
    scales: &mut Option<Int8Scales>,
    stored: &mut Option<Tagged>,
    weights: &Floats,
    channels: usize,
) {
    if scales.is_none() {
        *scales = Some(Int8Scales::synthetic(channels));
        *stored = Some(Tagged::F32(weights.clone()));
    }
}

/// What a quantizable layer prepares for a `PrecisionChoice`.
pub enum QuantPlan {
    /// No scales, or fp32 chosen.
    Fp32,
    /// The float simulation: fp32 weights dequantized from the integer ones.
    Simulate {
        precision: Precision,
        weights: Vec<f32>,
        sim: Simulation,
    },
    /// Integer kernels on these int8 weights.
    Integer { precision: Precision, q: Vec<i8> },
}

/// Decides a layer's plan from its scales and stored weights (both present for quantized
/// layers); checks the weights against the chosen precision.
pub fn quant_plan(
    scales: Option<&Int8Scales>,
    stored: Option<&Tagged>,
    choice: PrecisionChoice,
) -> LayerResult<QuantPlan> {
    let (Some(scales), Some(stored)) = (scales, stored) else {
        return Ok(QuantPlan::Fp32);
    };
    let Some(precision) = scales.precision(choice) else {
        return Ok(QuantPlan::Fp32);
    };
    let q = int8_weights(stored, &scales.weight, precision)?;
    if choice == PrecisionChoice::Simulate {
        return Ok(QuantPlan::Simulate {
            precision,
            weights: dequantize(&q, &scales.weight),
            sim: Simulation {
                bottom: scales.bottom,
                qmax: precision.qmax(),
                top: None,
            },
        });
    }
    Ok(QuantPlan::Integer { precision, q })
}

/// The `27=` bit-width marker: 8 (default) or 7.
pub fn declared_bits(pd: &ParamDict) -> LayerResult<Precision> {
    let bits = pd.int(BITS_KEY as usize, 8)?;
    Precision::from_bits(bits).ok_or_else(|| {
        invalid(format!(
            "key {BITS_KEY} (quantized bits) is {bits}: expected 8 or 7"
        ))
    })
}

/// The layer's int8 weights, `rows` rows of equal length each with its scale: int8-tagged
/// weights as stored, fp32 weights quantized with the scales (round half away, clamp
/// ±qmax). Checks that stored values lie within ±qmax of `precision`, and that a channel with
/// scale 0 is all zero.
pub fn int8_weights(stored: &Tagged, scales: &[f32], precision: Precision) -> LayerResult<Vec<i8>> {
    let qmax = precision.qmax();
    let (n, rows) = (stored_len(stored), scales.len());
    if rows == 0 || n % rows != 0 {
        return Err(invalid(format!(
            "{n} weights do not split into {rows} scaled rows"
        )));
    }
    let k = n / rows;
    match stored {
        Tagged::I8(q) => {
            for (row, (vals, &s)) in q.chunks(k).zip(scales).enumerate() {
                if let Some(v) = vals.iter().find(|v| (**v as i32).abs() > qmax) {
                    return Err(invalid(format!(
                        "int8 weight {v} in output channel {row} is outside ±{qmax} ({} bits)",
                        precision.bits()
                    )));
                }
                if s == 0.0 && vals.iter().any(|&v| v != 0) {
                    return Err(invalid(format!(
                        "output channel {row} has weight scale 0 but non-zero weights"
                    )));
                }
            }
            Ok(q.to_vec())
        }
        Tagged::F32(f) => Ok(f
            .chunks(k)
            .zip(scales)
            .flat_map(|(row, &s)| row.iter().map(move |&v| quantize(v, s, qmax)))
            .collect()),
    }
}

fn stored_len(t: &Tagged) -> usize {
    match t {
        Tagged::I8(q) => q.len(),
        Tagged::F32(f) => f.len(),
    }
}

/// `w = q / scale` per row of `q.len() / scales.len()` weights (0 where the scale is 0).
pub fn dequantize(q: &[i8], scales: &[f32]) -> Vec<f32> {
    let k = q.len() / scales.len().max(1);
    q.chunks(k.max(1))
        .zip(scales)
        .flat_map(|(row, &s)| {
            let inv = if s == 0.0 { 0.0 } else { 1.0 / s };
            row.iter().map(move |&v| v as f32 * inv)
        })
        .collect()
}

/// The fp32 weights of a layer: as stored (borrowed from the file when fp32), or int8
/// dequantized with `scales`.
pub fn float_weights(stored: Tagged, scales: Option<&Int8Scales>) -> LayerResult<Floats> {
    match (stored, scales) {
        (Tagged::F32(f), _) => Ok(f),
        (Tagged::I8(q), Some(s)) => Ok(Floats::owned(dequantize(&q, &s.weight))),
        (Tagged::I8(_), None) => Err(invalid(
            "int8-tagged weights but int8_scale_term (key 8) is 0",
        )),
    }
}

/// The fp32 weights made again from the stored ones, for a layer whose fp32 weights were
/// released when it chose an integer path.
pub fn fp32_weights(stored: &Option<Tagged>, scales: Option<&Int8Scales>) -> LayerResult<Floats> {
    let stored = stored
        .clone()
        .ok_or_else(|| invalid("the layer's fp32 weights were released and none are stored"))?;
    float_weights(stored, scales)
}

/// The float simulation of a quantized layer (`PrecisionChoice::Simulate`): the layer runs
/// its fp32 path on dequantized integer weights; its input and (where an int8 output was
/// decided) its output are rounded to the quantization grid.
#[derive(Clone, Copy, Debug)]
pub struct Simulation {
    pub bottom: f32,
    pub qmax: i32,
    /// The output grid, when the layer writes int8 in the integer run.
    pub top: Option<Int8Grid>,
}

impl Simulation {
    /// `dst = quantize(src · bottom) / bottom`.
    pub fn round_input(&self, src: &[f32], dst: &mut [f32]) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = quantize(v, self.bottom, self.qmax) as f32 / self.bottom;
        }
    }

    /// Scratch floats for the rounded input of a `shape` input (whole cache lines).
    pub fn scratch_floats(shape: Shape) -> usize {
        shape.len().next_multiple_of(16)
    }

    /// Runs the layer's fp32 path `fp32` on `x` rounded to the input grid (kept at the front
    /// of the scratch, whose rest `fp32` gets), then rounds the first output to its grid.
    pub fn run(
        &self,
        x: Tensor,
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
        fp32: impl FnOnce(Tensor, &mut [TensorMut], &mut Ctx) -> LayerResult<()>,
    ) -> LayerResult<()> {
        let len = x.shape.len();
        let (buf, rest) = ctx.scratch.split_at_mut(Self::scratch_floats(x.shape));
        self.round_input(x.data, &mut buf[..len]);
        let rounded = Tensor {
            shape: x.shape,
            data: &buf[..len],
        };
        let mut sub = Ctx {
            pool: ctx.pool,
            scratch: rest,
        };
        fp32(rounded, outputs, &mut sub)?;
        self.round_output(outputs[0].data);
        Ok(())
    }

    /// `y = quantize(y · top) / top` when the output is on an int8 grid.
    pub fn round_output(&self, y: &mut [f32]) {
        if let Some(g) = self.top {
            for v in y {
                *v = quantize(*v, g.scale, g.qmax) as f32 / g.scale;
            }
        }
    }
}

/// Views the first `len` bytes of an fp32-typed blob as int8 values (int8 blobs live in the
/// same arena, 4 per float slot).
pub fn as_i8(data: &[f32], len: usize) -> LayerResult<&[i8]> {
    let bytes: &[i8] = bytemuck::cast_slice(data);
    bytes
        .get(..len)
        .ok_or_else(|| invalid("int8 blob is smaller than its shape"))
}

pub fn as_i8_mut(data: &mut [f32], len: usize) -> LayerResult<&mut [i8]> {
    let bytes: &mut [i8] = bytemuck::cast_slice_mut(data);
    bytes
        .get_mut(..len)
        .ok_or_else(|| invalid("int8 blob is smaller than its shape"))
}

/// Test support: a weight file holding `q` as one int8-tagged blob (padded to 4 bytes),
/// then the raw floats `raw` (bias, scales).
#[cfg(test)]
pub(crate) fn int8_weight_file(q: &[i8], raw: &[f32]) -> Vec<u8> {
    let mut b = 0x000D_4B38u32.to_le_bytes().to_vec();
    b.extend(q.iter().map(|&v| v as u8));
    b.resize(b.len().next_multiple_of(4), 0);
    raw.iter()
        .for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::model::weights::Source;
    use std::sync::Arc;

    fn reader(values: &[f32]) -> WeightReader {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "t.bin")
    }

    #[test]
    fn reads_scales_in_order_and_rejects_bad_ones() {
        let pd = ParamDict::default();
        let s = Int8Scales::read(&pd, &mut reader(&[2.0, 0.0, 7.0, 5.0]), 2, true).unwrap();
        assert_eq!(s.weight, [2.0, 0.0]);
        assert_eq!((s.bottom, s.top, s.bits), (7.0, Some(5.0), Precision::Int8));
        for bad in [
            [-1.0, 1.0, 1.0],
            [f32::NAN, 1.0, 1.0],
            [f32::INFINITY, 1.0, 1.0],
            [1.0, 1.0, 0.0],
            [1.0, 1.0, -3.0],
            [1.0, 1.0, f32::NAN],
        ] {
            let e = Int8Scales::read(&pd, &mut reader(&bad), 2, false).unwrap_err();
            assert!(e.to_string().contains("scale"), "{bad:?}: {e}");
        }
        let zeros = Int8Scales::read(&pd, &mut WeightReader::zeros(), 3, true).unwrap();
        assert_eq!((zeros.weight, zeros.bottom), (vec![1.0; 3], 1.0));
    }

    #[test]
    fn bits_marker() {
        let mut pd = ParamDict::default();
        assert_eq!(declared_bits(&pd).unwrap(), Precision::Int8);
        pd.set(BITS_KEY as usize, Value::Int(7)).unwrap();
        assert_eq!(declared_bits(&pd).unwrap(), Precision::Int7);
        pd.set(BITS_KEY as usize, Value::Int(6)).unwrap();
        assert!(declared_bits(&pd).is_err());
    }

    #[test]
    fn weights_are_checked_or_quantized() {
        let q = Tagged::I8(crate::model::weights::Int8s::Owned(
            vec![63i8, -63, 0, 0].into(),
        ));
        assert_eq!(
            int8_weights(&q, &[1.0, 0.0], Precision::Int7).unwrap(),
            [63, -63, 0, 0]
        );
        let wide = Tagged::I8(crate::model::weights::Int8s::Owned(vec![64i8, 0].into()));
        let e = int8_weights(&wide, &[1.0], Precision::Int7).unwrap_err();
        assert!(e.to_string().contains("outside ±63"), "{e}");
        assert!(int8_weights(&wide, &[1.0], Precision::Int8).is_ok());
        let dead = Tagged::I8(crate::model::weights::Int8s::Owned(vec![1i8, 0].into()));
        assert!(int8_weights(&dead, &[0.0], Precision::Int8).is_err());
        let f = Tagged::F32(Floats::owned(vec![0.5, -1.0, 10.0, 0.26]));
        assert_eq!(
            int8_weights(&f, &[127.0, 10.0], Precision::Int8).unwrap(),
            [64, -127, 100, 3]
        );
        assert_eq!(
            int8_weights(&f, &[127.0, 10.0], Precision::Int7).unwrap(),
            [63, -63, 63, 3]
        );
    }
}
