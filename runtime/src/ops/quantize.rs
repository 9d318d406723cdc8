//! Quantize (standalone, as in ncnn's int8 models): `q = clamp(round(x * scale), -127, 127)`,
//! rounding half away from zero, one scale for the whole blob or one per row of a 2-D blob,
//! per channel of a 3-D / 4-D blob. A 1-D blob uses the first scale for every element, as
//! ncnn's current layer does (its older reference used one per element).
//!
//! Params: `0 = scale_data_size` (1). Weights: `scale_data`, raw, `scale_data_size` floats
//! (a zero-weight reader, as in benchmarks, gives scales of 1).
//!
//! How the int8 values are carried. ncnn's Quantize writes an int8 blob; this runtime keeps
//! blobs fp32 unless the net decides otherwise at load (`net::int8_grids`):
//! * by default the output is an fp32 blob holding the integer values exactly (`q as f32`,
//!   what ncnn's extractor returns for an int8 blob), and Dequantize / Requantize read such
//!   integer-valued fp32 blobs as their (int32) input;
//! * when every reader of the output is a quantized layer taking int8 input (a Convolution
//!   with int8 scales, ...), the output becomes an int8 blob: the reader uses the values as
//!   they are, with its own bottom scale, exactly as ncnn's int8 layers take an int8 input
//!   without quantizing it again. The clamp is then the reader grid's (±63 for INT7, so the
//!   kernel's bounds hold). In the float simulation (`PrecisionChoice::Simulate`) that blob
//!   holds `q / bottom` instead, which the reader rounds back to `q` exactly.
//!
//! When some reader needs fp32 (a Dequantize, an fp32 op, a net output) the blob stays
//! integer-valued fp32 for all of them, and a quantized layer among the readers then
//! quantizes those integers again with its own bottom scale, where ncnn would take them as
//! they are: such mixed graphs agree with ncnn only when that scale is 1.
//!
//! Output shape = input shape (1-D to 4-D). A per-group scale array must have an entry for
//! every group (ncnn reads past its end otherwise); extra entries are unused.

use super::batch_norm::outer_groups;
use super::quantized::as_i8_mut;
use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult, Result};
use crate::model::paramdict::ParamDict;
use crate::model::weights::WeightReader;
use crate::quant::{quantize_scaled, Int8Grid, Precision, PrecisionChoice};
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Debug)]
pub struct Quantize {
    pub scales: Vec<f32>,
    /// Set at load when the output is an int8 blob (see the module doc).
    out_grid: Option<Int8Grid>,
    simulate: bool,
}

/// ncnn's clamp for standalone int8 layers.
pub const QMAX: i32 = 127;

/// Reads `n` raw floats of a per-group array (scales, biases), checking them finite; a zero
/// reader gives `zero_value`.
pub(crate) fn read_values(
    w: &mut WeightReader,
    n: usize,
    what: &str,
    zero_value: f32,
) -> Result<Vec<f32>> {
    if w.is_zeros() {
        return Ok(vec![zero_value; n]);
    }
    let v = w.raw(n, what)?.to_vec();
    if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(invalid(format!("{what} value {i} is {x}; it must be finite")).into());
    }
    Ok(v)
}

/// A per-group array's entry for group `g`: the only one, or the g-th.
#[inline]
pub(crate) fn group_value(values: &[f32], g: usize) -> f32 {
    if values.len() == 1 {
        values[0]
    } else {
        values[g]
    }
}

/// (groups, elements per group) of a blob as the standalone int8 layers see it: rows of a
/// 2-D blob, channels of a 3-D / 4-D one, and a 1-D blob as one group (ncnn's current layers
/// apply the first scale / bias to every element of a 1-D blob, whatever the array's size).
pub(crate) fn quant_groups(s: &Shape) -> (usize, usize) {
    match s.dims {
        1 => (1, s.w),
        _ => outer_groups(s),
    }
}

/// Checks that a per-group array (`what`, `len` entries, key `key` gives its size) covers the
/// groups of `s`.
pub(crate) fn check_groups(s: &Shape, len: usize, what: &str, key: usize) -> LayerResult<()> {
    let (groups, _) = quant_groups(s);
    if len > 1 && len < groups {
        return Err(invalid(format!(
            "input {s} has {groups} rows / channels but {what} (size in key {key}) has {len} values"
        )));
    }
    Ok(())
}

/// A size param that must be at least 1.
pub(crate) fn positive_size(pd: &ParamDict, key: usize, what: &str) -> LayerResult<usize> {
    let v = pd.int(key, 1)?;
    usize::try_from(v)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| invalid(format!("{what} (key {key}) is {v}; it must be at least 1")))
}

impl Quantize {
    pub fn new(pd: &ParamDict, w: &mut WeightReader) -> Result<Quantize> {
        let n = positive_size(pd, 0, "scale_data_size")?;
        Ok(Quantize {
            scales: read_values(w, n, "scale_data", 1.0)?,
            out_grid: None,
            simulate: false,
        })
    }

    fn check(&self, inputs: &[Shape]) -> LayerResult<Shape> {
        expect_inputs(inputs, 1)?;
        let s = inputs[0];
        check_groups(&s, self.scales.len(), "scale_data", 0)?;
        Ok(s)
    }
}

impl Op for Quantize {
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
            return Err(invalid("Quantize reads fp32 input"));
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
        let q = |i: usize| {
            let scale = group_value(&self.scales, i / group_len);
            quantize_scaled(x[i] * scale, qmax)
        };
        write_integers(&mut outputs[0], s.len(), self.out_grid, self.simulate, q)
    }
}

/// Writes the integers `q(0..n)` as this runtime carries them (module doc): into an int8
/// blob on `grid`, as `q / scale` on it when simulating, or as exact floats when the output
/// is fp32. Shared by Quantize and Requantize.
pub(crate) fn write_integers(
    out: &mut TensorMut,
    n: usize,
    grid: Option<Int8Grid>,
    simulate: bool,
    q: impl Fn(usize) -> i8,
) -> LayerResult<()> {
    match grid {
        Some(g) if simulate => {
            for (i, y) in out.data[..n].iter_mut().enumerate() {
                *y = q(i) as f32 / g.scale;
            }
        }
        Some(_) => {
            for (i, y) in as_i8_mut(out.data, n)?.iter_mut().enumerate() {
                *y = q(i);
            }
        }
        None => {
            for (i, y) in out.data[..n].iter_mut().enumerate() {
                *y = q(i) as f32;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::Source;
    use crate::ops::harness::{int, params, run};
    use std::sync::Arc;

    pub(crate) fn reader(values: &[f32]) -> WeightReader {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "t.bin")
    }

    fn op(n: i32, scales: &[f32]) -> Quantize {
        Quantize::new(&params(&[(0, int(n))]), &mut reader(scales)).unwrap()
    }

    #[test]
    fn rounds_half_away_and_clamps_to_127() {
        let q = op(1, &[10.0]);
        let x = vec![0.05, -0.05, 0.149, 0.25, -0.25, 12.7, 12.75, -13.0, 1e9];
        let out = run(&q, &[(Shape::d1(9), x)]).unwrap().remove(0);
        assert_eq!(
            out.1,
            [1.0, -1.0, 1.0, 3.0, -3.0, 127.0, 127.0, -127.0, 127.0]
        );
    }

    #[test]
    fn per_element_row_and_channel_scales() {
        let x = vec![1.0; 6];
        let q = op(3, &[1.0, 2.0, 3.0]);
        let got = |s| run(&q, &[(s, x.clone())]).unwrap().remove(0).1;
        assert_eq!(got(Shape::d2(2, 3)), [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        assert_eq!(got(Shape::d3(1, 2, 3)), [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        assert_eq!(got(Shape::d4(1, 1, 2, 3)), [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        // 1-D: the first scale for all, as in ncnn.
        let x5 = vec![1.0; 5];
        assert_eq!(run(&q, &[(Shape::d1(5), x5)]).unwrap()[0].1, [1.0; 5]);
        // Too few scales for the channels.
        let e = q.output_shapes(&[Shape::d3(1, 1, 4)]).unwrap_err();
        assert!(e.0.contains("scale_data"), "{e}");
    }

    #[test]
    fn writes_int8_on_an_int8_output() {
        let mut q = op(1, &[2.0]);
        q.set_int8_io(
            false,
            Some(Int8Grid {
                scale: 5.0,
                qmax: 63,
            }),
        )
        .unwrap();
        let x = [0.25f32, -0.75, 100.0, 1.0];
        let mut out = [0.0f32; 1];
        let pool = crate::pool::Pool::new(1).unwrap();
        let mut ctx = Ctx {
            pool: &pool,
            scratch: &mut [],
        };
        q.forward(
            &[Tensor {
                shape: Shape::d1(4),
                data: &x,
            }],
            &mut [TensorMut {
                shape: Shape::d1(4),
                data: &mut out,
            }],
            &mut ctx,
        )
        .unwrap();
        let bytes: &[i8] = bytemuck::cast_slice(&out);
        assert_eq!(bytes, [1, -2, 63, 2]);
        assert!(q.set_int8_io(true, None).is_err());
    }

    #[test]
    fn bad_params() {
        let e = Quantize::new(&params(&[(0, int(0))]), &mut reader(&[])).unwrap_err();
        assert!(e.to_string().contains("scale_data_size"), "{e}");
        let e = Quantize::new(&params(&[(0, int(2))]), &mut reader(&[1.0])).unwrap_err();
        assert!(e.to_string().contains("scale_data"), "{e}");
        let e = Quantize::new(&params(&[]), &mut reader(&[f32::NAN])).unwrap_err();
        assert!(e.to_string().contains("finite"), "{e}");
        let zero = Quantize::new(&params(&[(0, int(3))]), &mut WeightReader::zeros()).unwrap();
        assert_eq!(zero.scales, [1.0; 3]);
    }
}

#[cfg(test)]
mod net_tests {
    use crate::{Net, Options, PrecisionChoice};

    fn floats(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// `Quantize (scale 2) -> 1x1 int8 Convolution (weight 1, weight scale 1, bottom scale
    /// 4)`: as in ncnn, the conv takes the quantized values as they are and dequantizes them
    /// with its own scales, `round(2x) / 4`; an fp32 output keeps the integers.
    #[test]
    fn quantize_feeds_an_int8_convolution_as_ncnn_does() {
        let param = "7767517\n3 3\nInput in 0 1 x 0=5 1=1 2=1\nQuantize q 1 1 x q 0=1\n\
            Convolution c 1 1 q out 0=1 1=1 5=0 6=1 8=1\n";
        // Quantize's scale, then the conv's int8 weight (tag, 1 byte padded) and its scales.
        let mut bin = floats(&[2.0]);
        bin.extend(crate::ops::quantized::int8_weight_file(&[1], &[1.0, 4.0]));
        let x = [0.1f32, 0.3, -0.26, 0.74, 1.0];
        for (precision, int8_blob) in [
            (PrecisionChoice::Auto, true),
            (PrecisionChoice::Simulate, false),
        ] {
            let opts = Options {
                precision,
                keep_all_blobs: true,
                ..Options::default()
            };
            let mut net = Net::from_memory(param.as_bytes(), &bin, &opts).unwrap();
            assert_eq!(net.is_int8_blob("q").unwrap(), int8_blob, "{precision:?}");
            net.set_input("x", &x).unwrap();
            net.run().unwrap();
            let want: Vec<f32> = x.iter().map(|v| (2.0 * v).round() / 4.0).collect();
            assert_eq!(net.blob("out").unwrap().data, &want[..], "{precision:?}");
        }
        // Net output: the integers as floats.
        let param = "7767517\n2 2\nInput in 0 1 x 0=5\nQuantize q 1 1 x q\n";
        let mut net =
            Net::from_memory(param.as_bytes(), &floats(&[2.0]), &Options::default()).unwrap();
        net.set_input("x", &x).unwrap();
        net.run().unwrap();
        assert_eq!(net.blob("q").unwrap().data, [0.0, 1.0, -1.0, 1.0, 2.0]);
    }

    /// `Requantize` onto an int8 Convolution, and `Quantize -> Dequantize` round trips.
    #[test]
    fn requantize_and_dequantize_chains() {
        let param = "7767517\n3 3\nInput in 0 1 x 0=4\nRequantize r 1 1 x q 2=1 3=1\n\
            Convolution c 1 1 q out 0=1 1=1 5=0 6=1 8=1\n";
        // Requantize: scale_in 0.5, scale_out 3, bias -1, ReLU; conv as above, bottom 2.
        let mut bin = floats(&[0.5, 3.0, -1.0]);
        bin.extend(crate::ops::quantized::int8_weight_file(&[1], &[1.0, 2.0]));
        let mut net = Net::from_memory(param.as_bytes(), &bin, &Options::default()).unwrap();
        assert!(net.is_int8_blob("q").unwrap());
        net.set_input("x", &[4.0, 1.0, -6.0, 1000.0]).unwrap();
        net.run().unwrap();
        // relu(x / 2 - 1) * 3 -> 3, 0 (-1.5 clipped by ReLU), 0, 127 (clamped); then / 2.
        assert_eq!(net.blob("out").unwrap().data, [1.5, 0.0, 0.0, 63.5]);

        let param = "7767517\n3 3\nInput in 0 1 x 0=3\nQuantize q 1 1 x q\n\
            Dequantize d 1 1 q y 1=1\n";
        let bin = floats(&[10.0, 0.1, 0.5]);
        let mut net = Net::from_memory(param.as_bytes(), &bin, &Options::default()).unwrap();
        net.set_input("x", &[0.26, -0.04, 100.0]).unwrap();
        net.run().unwrap();
        let y = net.blob("y").unwrap().data.to_vec();
        let want = [3.0f32 * 0.1 + 0.5, 0.5, 127.0 * 0.1 + 0.5];
        for (g, w) in y.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{y:?}");
        }
    }
}
