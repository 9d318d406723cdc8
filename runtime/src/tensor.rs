//! Blob shapes and borrowed views, in ncnn's (w, h, d, c) convention with dense storage:
//! element (c, d, h, w) lives at `((c * d_len + d) * h_len + h) * w_len + w`.

use crate::error::{invalid, LayerResult};

/// Largest element count of one blob accepted at load (1 Gi elements): guards against
/// allocation bombs from absurd dimensions in a malformed file.
pub const MAX_ELEMENTS: usize = 1 << 30;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct Shape {
    /// 1..=4; 0 means "no shape" (an unused slot).
    pub dims: u8,
    pub w: usize,
    pub h: usize,
    pub d: usize,
    pub c: usize,
}

impl Shape {
    pub const fn d1(w: usize) -> Shape {
        Shape {
            dims: 1,
            w,
            h: 1,
            d: 1,
            c: 1,
        }
    }
    pub const fn d2(w: usize, h: usize) -> Shape {
        Shape {
            dims: 2,
            w,
            h,
            d: 1,
            c: 1,
        }
    }
    pub const fn d3(w: usize, h: usize, c: usize) -> Shape {
        Shape {
            dims: 3,
            w,
            h,
            d: 1,
            c,
        }
    }
    pub const fn d4(w: usize, h: usize, d: usize, c: usize) -> Shape {
        Shape {
            dims: 4,
            w,
            h,
            d,
            c,
        }
    }

    /// Checked constructor for shapes computed from file contents.
    pub fn checked(dims: u8, w: usize, h: usize, d: usize, c: usize) -> LayerResult<Shape> {
        let s = Shape { dims, w, h, d, c };
        let n = w
            .checked_mul(h)
            .and_then(|x| x.checked_mul(d))
            .and_then(|x| x.checked_mul(c));
        match n {
            Some(n) if n > 0 && n <= MAX_ELEMENTS => Ok(s),
            Some(0) => Err(invalid(format!("empty blob shape {s}"))),
            _ => Err(invalid(format!(
                "blob shape {s} exceeds {MAX_ELEMENTS} elements"
            ))),
        }
    }

    /// Elements in one channel (w * h * d).
    pub fn plane(&self) -> usize {
        self.w * self.h * self.d
    }
    pub fn len(&self) -> usize {
        self.plane() * self.c
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// numpy-style dimensions, outermost first: (c, d, h, w) truncated to `dims`.
    pub fn numpy_dims(&self) -> Vec<usize> {
        match self.dims {
            1 => vec![self.w],
            2 => vec![self.h, self.w],
            3 => vec![self.c, self.h, self.w],
            _ => vec![self.c, self.d, self.h, self.w],
        }
    }

    /// Builds a shape from numpy-order dimensions (as read from a `.npy`).
    pub fn from_numpy_dims(dims: &[usize]) -> LayerResult<Shape> {
        match *dims {
            [w] => Shape::checked(1, w, 1, 1, 1),
            [h, w] => Shape::checked(2, w, h, 1, 1),
            [c, h, w] => Shape::checked(3, w, h, 1, c),
            [c, d, h, w] => Shape::checked(4, w, h, d, c),
            _ => Err(invalid(format!(
                "{} dimensions are not supported (1 to 4)",
                dims.len()
            ))),
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.dims {
            1 => write!(f, "[w={}]", self.w),
            2 => write!(f, "[w={} h={}]", self.w, self.h),
            3 => write!(f, "[w={} h={} c={}]", self.w, self.h, self.c),
            _ => write!(f, "[w={} h={} d={} c={}]", self.w, self.h, self.d, self.c),
        }
    }
}

/// A read-only fp32 blob.
#[derive(Clone, Copy, Debug)]
pub struct Tensor<'a> {
    pub shape: Shape,
    pub data: &'a [f32],
}

impl<'a> Tensor<'a> {
    pub fn channel(&self, c: usize) -> &'a [f32] {
        let p = self.shape.plane();
        &self.data[c * p..(c + 1) * p]
    }
}

/// A writable fp32 blob.
#[derive(Debug)]
pub struct TensorMut<'a> {
    pub shape: Shape,
    pub data: &'a mut [f32],
}

impl TensorMut<'_> {
    pub fn channel_mut(&mut self, c: usize) -> &mut [f32] {
        let p = self.shape.plane();
        &mut self.data[c * p..(c + 1) * p]
    }
    pub fn as_ref(&self) -> Tensor<'_> {
        Tensor {
            shape: self.shape,
            data: self.data,
        }
    }
}
