//! The numeric contract of quantized inference, shared by every kernel and tool:
//! symmetric scales (`q = x * scale`), round half away from zero, clamp to ±127 (INT8) or
//! ±63 (INT7), and how many products an int16 lane can hold before it must be widened.

/// Quantized precision of a model or layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Values in [-127, 127] (−128 is never produced, as in ncnn).
    Int8,
    /// Values in [-63, 63]: products are small enough to accumulate 8 in an int16 lane.
    Int7,
}

impl Precision {
    /// Largest magnitude a quantized value may take.
    pub const fn qmax(self) -> i32 {
        match self {
            Precision::Int8 => 127,
            Precision::Int7 => 63,
        }
    }

    pub const fn bits(self) -> u32 {
        match self {
            Precision::Int8 => 8,
            Precision::Int7 => 7,
        }
    }

    /// Products of two values of this precision that fit an int16 accumulator lane
    /// together: `floor(i16::MAX / qmax²)` — 2 for INT8, 8 for INT7.
    pub const fn products_per_i16(self) -> usize {
        i16_products(self.qmax())
    }
}

/// The grid of an int8 blob: values are `quantize(x, scale, qmax)`, so `x ≈ q / scale`.
/// Two layers can hand int8 values to each other only when they agree on both.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Int8Grid {
    pub scale: f32,
    pub qmax: i32,
}

/// Layer param key that marks a quantized Convolution / ConvolutionDepthWise / InnerProduct
/// as 7-bit (`27=7`). Stock ncnn reads keys 0..19 for these layers and ignores 27, so the
/// same files still load there (as INT8 with the same scales).
pub const BITS_KEY: u32 = 27;

impl Precision {
    /// The precision a layer's `27=` value names (absent: 8).
    pub fn from_bits(bits: i32) -> Option<Precision> {
        match bits {
            8 => Some(Precision::Int8),
            7 => Some(Precision::Int7),
            _ => None,
        }
    }
}

/// How many products of two values bounded by `qmax` an int16 lane can sum without overflow.
pub const fn i16_products(qmax: i32) -> usize {
    (i16::MAX as i32 / (qmax * qmax)) as usize
}

/// Quantizes one value: `clamp(round_half_away(x * scale), -qmax, qmax)`. NaN maps to 0.
#[inline]
pub fn quantize(x: f32, scale: f32, qmax: i32) -> i8 {
    quantize_scaled(x * scale, qmax)
}

/// Rounds and clamps a value that is already scaled.
#[inline]
pub fn quantize_scaled(v: f32, qmax: i32) -> i8 {
    // `f32::round` rounds half away from zero; `as i32` saturates and maps NaN to 0.
    (v.round() as i32).clamp(-qmax, qmax) as i8
}

/// Which arithmetic a net's quantizable layers use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PrecisionChoice {
    /// As the model says: INT8 where it has int8 scales (INT7 where marked `27=7`), else FP32.
    #[default]
    Auto,
    /// Everything in fp32 (int8 weights are dequantized at load).
    Fp32,
    /// INT8 kernels on every layer with scales.
    Int8,
    /// INT7 kernels on every layer with scales; a weight outside ±63 is a load error.
    Int7,
    /// A float simulation of what `Auto` computes: every quantized layer runs in fp32 on
    /// its dequantized integer weights, with its input rounded to the quantization grid
    /// (`quantize(x · s) / s`) and, where `Auto` would write int8, its output too. The
    /// reference the integer kernels are checked against on whole models.
    Simulate,
}

impl PrecisionChoice {
    /// The name `from_str` reads back.
    pub fn name(self) -> &'static str {
        match self {
            PrecisionChoice::Auto => "auto",
            PrecisionChoice::Fp32 => "fp32",
            PrecisionChoice::Int8 => "int8",
            PrecisionChoice::Int7 => "int7",
            PrecisionChoice::Simulate => "simulate",
        }
    }
}

impl std::str::FromStr for PrecisionChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<PrecisionChoice, String> {
        match s {
            "auto" => Ok(PrecisionChoice::Auto),
            "fp32" => Ok(PrecisionChoice::Fp32),
            "int8" => Ok(PrecisionChoice::Int8),
            "int7" => Ok(PrecisionChoice::Int7),
            "simulate" => Ok(PrecisionChoice::Simulate),
            _ => Err(format!(
                "unknown precision `{s}`: expected auto, fp32, int8 or int7 (or simulate)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_per_lane_are_the_largest_that_fit() {
        for p in [Precision::Int8, Precision::Int7] {
            let q = p.qmax();
            let n = p.products_per_i16() as i32;
            assert!(n * q * q <= i16::MAX as i32);
            assert!((n + 1) * q * q > i16::MAX as i32);
            // The most negative sum is symmetric, so it fits as well.
            assert!(-n * q * q >= i16::MIN as i32);
        }
        assert_eq!(Precision::Int8.products_per_i16(), 2);
        assert_eq!(Precision::Int7.products_per_i16(), 8);
        // −128 would break the INT8 bound: 2·128·128 = 32768 > i16::MAX.
        assert!(2 * 128 * 128 > i16::MAX as i32);
    }

    #[test]
    fn rounds_half_away_from_zero_and_clamps() {
        let cases = [
            (0.5, 1),
            (-0.5, -1),
            (1.49, 1),
            (2.5, 3),
            (-2.5, -3),
            (126.6, 127),
            (1000.0, 127),
            (-1000.0, -127),
        ];
        for (v, want) in cases {
            assert_eq!(quantize_scaled(v, 127), want, "{v}");
        }
        assert_eq!(quantize_scaled(63.5, 63), 63);
        assert_eq!(quantize_scaled(-70.0, 63), -63);
        assert_eq!(quantize_scaled(f32::NAN, 127), 0);
        assert_eq!(quantize_scaled(f32::INFINITY, 63), 63);
        assert_eq!(quantize(0.25, 10.0, 127), 3);
    }
}
