//! Activations fused into Convolution / ConvolutionDepthWise / InnerProduct (keys 9 and 10),
//! with ncnn's exact formulas (`fused_activation.h`).

use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    None,
    ReLU,
    LeakyReLU(f32),
    Clip { min: f32, max: f32 },
    Sigmoid,
    Mish,
    HardSwish { alpha: f32, beta: f32 },
}

impl Activation {
    /// Reads `9=activation_type` and `10=activation_params`.
    pub fn from_params(pd: &ParamDict) -> LayerResult<Activation> {
        let p = pd.float_array(10)?;
        let arg = |i: usize| {
            p.get(i)
                .copied()
                .ok_or_else(|| invalid(format!("activation type needs {} params in key 10", i + 1)))
        };
        Ok(match pd.int(9, 0)? {
            0 => Activation::None,
            1 => Activation::ReLU,
            2 => Activation::LeakyReLU(arg(0)?),
            3 => Activation::Clip {
                min: arg(0)?,
                max: arg(1)?,
            },
            4 => Activation::Sigmoid,
            5 => Activation::Mish,
            6 => Activation::HardSwish {
                alpha: arg(0)?,
                beta: arg(1)?,
            },
            t => return Err(invalid(format!("unknown activation_type {t}"))),
        })
    }

    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::ReLU => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            Activation::LeakyReLU(s) => {
                if x < 0.0 {
                    x * s
                } else {
                    x
                }
            }
            Activation::Clip { min, max } => {
                let x = if x < min { min } else { x };
                if x > max {
                    max
                } else {
                    x
                }
            }
            Activation::Sigmoid => {
                let x = x.clamp(-88.376_26, 88.376_26);
                1.0 / (1.0 + (-x).exp())
            }
            Activation::Mish => x * (x.exp().ln_1p()).tanh(),
            Activation::HardSwish { alpha, beta } => {
                let lower = -beta / alpha;
                let upper = 1.0 / alpha + lower;
                if x < lower {
                    0.0
                } else if x > upper {
                    x
                } else {
                    x * (x * alpha + beta)
                }
            }
        }
    }

    /// [`Activation::apply`] over a slice; ReLU, LeakyReLU, Clip and HardSwish as selects (every
    /// element written), which vectorise (a conditional store does not).
    pub fn apply_slice(self, xs: &mut [f32]) {
        match self {
            Activation::None => {}
            Activation::ReLU => xs
                .iter_mut()
                .for_each(|x| *x = if *x < 0.0 { 0.0 } else { *x }),
            Activation::LeakyReLU(s) => xs
                .iter_mut()
                .for_each(|x| *x = if *x < 0.0 { *x * s } else { *x }),
            Activation::Clip { min, max } => xs.iter_mut().for_each(|x| {
                let v = if *x < min { min } else { *x };
                *x = if v > max { max } else { v };
            }),
            Activation::HardSwish { alpha, beta } => {
                let lower = -beta / alpha;
                let upper = 1.0 / alpha + lower;
                xs.iter_mut().for_each(|x| {
                    let v = *x;
                    let y = if v > upper { v } else { v * (v * alpha + beta) };
                    *x = if v < lower { 0.0 } else { y };
                })
            }
            a => xs.iter_mut().for_each(|x| *x = a.apply(*x)),
        }
    }
}
