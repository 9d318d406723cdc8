//! Depthwise (one input channel per output channel) fp32 convolution of one channel plane.
//!
//! The input plane is already padded, so every tap of every output pixel is in bounds.
//! `channel` writes `act(bias + conv)`. Grouped convolution passes several input planes
//! (back to back) with one kernel each; they are summed into the one output.
//!
//! Variants: `generic` (plain Rust, any geometry), `x86_64` (AVX2 + FMA) and `aarch64`
//! (NEON), each with specialised 3x3 stride 1 / stride 2 paths and a general k x k path;
//! strides above 2 fall back to the generic code. The NEON kernels apply ReLU / LeakyReLU /
//! Clip in their stores (no second pass over the output); the others apply the activation
//! afterwards.

#[cfg(target_arch = "aarch64")]
use crate::kernels::gemm_f32::TileAct;
pub use crate::kernels::Isa;
use crate::ops::activation::Activation;

pub(crate) mod generic;

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_64;

/// Shape of one channel's convolution; `in_w`/`in_h` are the padded plane's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub in_w: usize,
    pub in_h: usize,
    pub out_w: usize,
    pub out_h: usize,
    pub kernel_w: usize,
    pub kernel_h: usize,
    pub stride_w: usize,
    pub stride_h: usize,
    pub dilation_w: usize,
    pub dilation_h: usize,
}

impl Geometry {
    pub fn taps(&self) -> usize {
        self.kernel_w * self.kernel_h
    }

    /// Panics unless every tap of every output pixel lies inside the buffers; the SIMD
    /// variants rely on this for their unchecked loads.
    fn check(&self, input: &[f32], inputs: usize, kernel: &[f32], out: &[f32]) {
        assert!(self.kernel_w > 0 && self.kernel_h > 0 && self.stride_w > 0 && self.stride_h > 0);
        assert!(self.dilation_w > 0 && self.dilation_h > 0);
        if self.out_w == 0 || self.out_h == 0 {
            return;
        }
        let last_x = (self.out_w - 1) * self.stride_w + (self.kernel_w - 1) * self.dilation_w;
        let last_y = (self.out_h - 1) * self.stride_h + (self.kernel_h - 1) * self.dilation_h;
        assert!(
            last_x < self.in_w && last_y < self.in_h,
            "taps outside the input plane"
        );
        assert!(inputs > 0, "no input planes");
        assert!(
            input.len() >= inputs * self.in_w * self.in_h,
            "input planes too short"
        );
        assert!(kernel.len() >= inputs * self.taps(), "kernels too short");
        assert!(
            out.len() >= self.out_w * self.out_h,
            "output plane too short"
        );
    }

    fn is_3x3(&self) -> bool {
        self.kernel_w == 3 && self.kernel_h == 3 && self.dilation_w == 1 && self.dilation_h == 1
    }
}

/// `out = act(bias + sum over q of conv(input plane q, kernel q))` for one output channel;
/// `inputs` planes of `in_w * in_h` and kernels of `kernel_w * kernel_h` back to back
/// (1 for depthwise).
#[allow(clippy::too_many_arguments)]
pub fn channel(
    isa: Isa,
    g: &Geometry,
    input: &[f32],
    inputs: usize,
    kernel: &[f32],
    bias: f32,
    act: Activation,
    out: &mut [f32],
) {
    g.check(input, inputs, kernel, out);
    if g.out_w == 0 || g.out_h == 0 {
        return;
    }
    let out = &mut out[..g.out_w * g.out_h];
    match isa {
        Isa::Generic => generic::channel(g, input, inputs, kernel, bias, out),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `g.check` above.
        Isa::Avx2Fma | Isa::Avx512 => unsafe {
            x86_64::channel(g, input, inputs, kernel, bias, out)
        },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => {
            // ReLU / LeakyReLU / Clip are applied in the kernel's stores.
            let (tact, post) = TileAct::split(act);
            // SAFETY: `g.check` above.
            unsafe { aarch64::channel(g, input, inputs, kernel, bias, tact, out) };
            if post {
                act.apply_slice(out);
            }
            return;
        }
    }
    act.apply_slice(out);
}

/// Depthwise 3x3 (dilation 1) with one pixel of padding on every side, stride 1 or 2, read
/// from the unpadded `w x h` plane `input`: `out = act(bias + conv)`, the padding taps
/// reading `pad`. `pad_row` is scratch of at least `w` floats. Returns false (writing
/// nothing) when no kernel of `isa` does this geometry; then pad the plane and use
/// [`channel`].
#[allow(clippy::too_many_arguments)]
pub fn channel_pad1(
    isa: Isa,
    input: &[f32],
    w: usize,
    h: usize,
    stride: usize,
    kernel: &[f32],
    bias: f32,
    act: Activation,
    pad: f32,
    pad_row: &mut [f32],
    out: &mut [f32],
) -> bool {
    #[cfg(target_arch = "aarch64")]
    if isa == Isa::Neon && kernel.len() >= 9 && input.len() >= w * h && pad_row.len() >= w {
        let (tact, post) = TileAct::split(act);
        let fits = match stride {
            1 => w >= 5 && out.len() >= w * h,
            2 => w >= 10 && out.len() >= w.div_ceil(2) * h.div_ceil(2),
            _ => false,
        };
        if fits && h >= 1 {
            pad_row[..w].fill(pad);
            // SAFETY: sizes checked above; NEON is baseline.
            unsafe {
                let (i, r, o) = (input.as_ptr(), pad_row.as_ptr(), out.as_mut_ptr());
                if stride == 1 {
                    aarch64::pad1_s1(i, w, h, kernel, bias, tact, pad, r, o);
                } else {
                    aarch64::pad1_s2(i, w, h, kernel, bias, tact, pad, r, o);
                }
            }
            if post {
                let n = if stride == 1 {
                    w * h
                } else {
                    w.div_ceil(2) * h.div_ceil(2)
                };
                act.apply_slice(&mut out[..n]);
            }
            return true;
        }
    }
    let _ = (
        isa, input, w, h, stride, kernel, bias, act, pad, pad_row, out,
    );
    false
}
