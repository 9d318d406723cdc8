//! The epilogue of every quantized kernel (ncnn's dequantize / requantize, fused): an int32
//! accumulator of output channel `c` becomes
//! `y = act(fma(acc, scale_in[c], bias[c]))` (fp32 out), or `quantize(y · top_scale)` (int8 out).

use crate::ops::activation::Activation;
use crate::quant::quantize_scaled;

/// Where a quantized kernel writes, and in which type.
pub enum OutBuf<'a> {
    F32(&'a mut [f32]),
    I8(&'a mut [i8]),
}

impl OutBuf<'_> {
    pub fn len(&self) -> usize {
        match self {
            OutBuf::F32(v) => v.len(),
            OutBuf::I8(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-output-channel dequantization, bias and activation, and the optional requantization.
#[derive(Clone, Copy, Debug)]
pub struct Requant<'a> {
    /// `1 / (input_scale · weight_scale[c])`, 0 where the weight scale is 0.
    pub scale_in: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub act: Activation,
    /// Scale of the int8 output (`top_blob_int8_scale`); unused for fp32 output.
    pub top_scale: f32,
    /// Clamp of the int8 output: 127 (INT8) or 63 (INT7).
    pub qmax: i32,
}

impl Requant<'_> {
    /// The fp32 value of channel `c` for accumulator `acc`: one fused multiply-add (a single
    /// rounding), which is also what ncnn's x86 dequantize / requantize computes, so the two
    /// agree bit for bit.
    #[inline]
    pub fn dequant(&self, c: usize, acc: i32) -> f32 {
        let b = self.bias.map_or(0.0, |b| b[c]);
        self.act.apply((acc as f32).mul_add(self.scale_in[c], b))
    }

    /// The int8 value of channel `c` for accumulator `acc`.
    #[inline]
    pub fn requant(&self, c: usize, acc: i32) -> i8 {
        quantize_scaled(self.dequant(c, acc) * self.top_scale, self.qmax)
    }

    /// Stores `accs` (channel `c`) at `out[at..]`, in the output's type.
    #[inline]
    pub fn store(&self, c: usize, accs: &[i32], out: &mut OutBuf, at: usize) {
        match out {
            OutBuf::F32(o) => {
                for (d, &a) in o[at..at + accs.len()].iter_mut().zip(accs) {
                    *d = self.dequant(c, a);
                }
            }
            OutBuf::I8(o) => {
                for (d, &a) in o[at..at + accs.len()].iter_mut().zip(accs) {
                    *d = self.requant(c, a);
                }
            }
        }
    }
}

/// The dequantization factors ncnn derives from the scales: `1 / (input · weight[c])`, or 0
/// for a zero weight scale (an all-zero channel).
pub fn scale_in(input_scale: f32, weight_scales: &[f32]) -> Vec<f32> {
    weight_scales
        .iter()
        .map(|&w| {
            if w == 0.0 {
                0.0
            } else {
                1.0 / (input_scale * w)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dequantizes_and_requantizes_as_ncnn() {
        let scale_in = scale_in(2.0, &[4.0, 0.0]);
        assert_eq!(scale_in, vec![0.125, 0.0]);
        let r = Requant {
            scale_in: &scale_in,
            bias: Some(&[1.0, -1.0]),
            act: Activation::ReLU,
            top_scale: 10.0,
            qmax: 63,
        };
        assert_eq!(r.dequant(0, 8), 2.0);
        assert_eq!(r.dequant(0, -80), 0.0);
        assert_eq!(r.dequant(1, 1000), 0.0);
        assert_eq!(r.requant(0, 8), 20);
        assert_eq!(r.requant(0, 800), 63);
        let mut out = [0i8; 2];
        r.store(0, &[4, 12], &mut OutBuf::I8(&mut out), 0);
        assert_eq!(out, [15, 25]);
    }
}
