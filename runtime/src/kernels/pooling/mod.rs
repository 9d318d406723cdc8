//! Pooling kernels: max and average over rectangles of windows that lie inside one channel
//! plane, and global max / average over whole planes; fp32, and int8 for max.
//!
//! The op (`ops::pooling`) works out where the windows fall and hands the kernels
//! rectangles of windows cut to their part inside the input (the whole window in the
//! interior, fewer rows / columns at the edges), fixing up the few cases where leaving the
//! padding out changes a max (see `Pooling::pool_channel`). The kernels keep the op's
//! reference semantics bit for bit:
//!
//! * A max is `m = first; for v in window (row by row) { if m < v { m = v } }`: a NaN in the
//!   first element is the result, a NaN anywhere else is skipped, and among equal values
//!   (+0 and -0) the first one wins. The SIMD variants evaluate exactly that per lane, one
//!   output per lane, in the same order: NEON with `fcmgt` + `bsl`, AVX2 with `maxps(v, m)`,
//!   which is `v > m ? v : m`. (`fmax` / `fmaxnm` would differ on NaN and on signed zeros.)
//! * An average is `sum = 0; for v in window (row by row) { sum += v }; sum / divisor`, again
//!   per lane in the same order, so the rounding is the reference's.
//! * A global max / average folds one plane in memory order the same way; the SIMD variants
//!   put 4 channels in the lanes of a vector (a 4 x 4 transpose per 4 elements).
//! * Int8 max is exact in any order (`smax`).
//!
//! Variants: generic (this file, plain Rust, any geometry), `aarch64` (NEON) and `x86_64`
//! (AVX2). The SIMD window kernels take horizontal strides 1 and 2 (stride 2 splits even and
//! odd columns with `ld2` / shuffles) and any kernel size and vertical stride; other strides,
//! kernel width 1 at stride 2 and rows narrower than a vector use the generic code.

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_64;

#[cfg(test)]
mod tests;

pub use crate::kernels::Isa;

/// A `rows x cols` rectangle of pooling windows inside one channel plane of row length
/// `in_w`: output `(r, j)` pools the `kernel_h x kernel_w` elements whose top-left one is at
/// row `y + r * stride_h`, column `x + j * stride_w`, and goes to `out[r * out_stride + j]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    pub in_w: usize,
    pub kernel_w: usize,
    pub kernel_h: usize,
    pub stride_w: usize,
    pub stride_h: usize,
    pub x: usize,
    pub y: usize,
    pub cols: usize,
    pub rows: usize,
    pub out_stride: usize,
}

impl Windows {
    /// Panics unless every window lies inside the row and the plane (`src_len` elements) and
    /// every output inside `out_len`; the SIMD variants rely on this for unchecked accesses.
    fn check(&self, src_len: usize, out_len: usize) {
        assert!(
            self.kernel_w > 0 && self.kernel_h > 0 && self.stride_w > 0 && self.stride_h > 0,
            "empty kernel or zero stride"
        );
        if self.rows == 0 || self.cols == 0 {
            return;
        }
        let last_x = self.x + (self.cols - 1) * self.stride_w + self.kernel_w;
        let last_y = self.y + (self.rows - 1) * self.stride_h + self.kernel_h;
        assert!(last_x <= self.in_w, "windows leave the row");
        assert!(
            last_y.checked_mul(self.in_w).is_some_and(|n| n <= src_len),
            "windows leave the plane"
        );
        assert!(
            self.cols <= self.out_stride || self.rows == 1,
            "output rows overlap"
        );
        assert!(
            (self.rows - 1) * self.out_stride + self.cols <= out_len,
            "output too short"
        );
    }

    /// Index of the first element of output `(r, j)`'s window.
    #[inline(always)]
    fn start(&self, r: usize, j: usize) -> usize {
        (self.y + r * self.stride_h) * self.in_w + self.x + j * self.stride_w
    }
}

/// Max over each window (see the module doc for the order and NaN rules).
pub fn max_f32(isa: Isa, w: &Windows, src: &[f32], out: &mut [f32]) {
    w.check(src.len(), out.len());
    match isa {
        Isa::Generic => generic_max(w, src, out),
        #[cfg(target_arch = "aarch64")]
        // SAFETY: `w.check` above.
        Isa::Neon => unsafe { aarch64::max_f32(w, src, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `w.check` above.
        Isa::Avx2Fma | Isa::Avx512 => unsafe { x86_64::max_f32(w, src, out) },
    }
}

/// Sum of each window in row-major order, divided by `divisor`.
pub fn avg_f32(isa: Isa, w: &Windows, src: &[f32], divisor: f32, out: &mut [f32]) {
    w.check(src.len(), out.len());
    match isa {
        Isa::Generic => generic_avg(w, src, divisor, out),
        #[cfg(target_arch = "aarch64")]
        // SAFETY: `w.check` above.
        Isa::Neon => unsafe { aarch64::avg_f32(w, src, divisor, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `w.check` above.
        Isa::Avx2Fma | Isa::Avx512 => unsafe { x86_64::avg_f32(w, src, divisor, out) },
    }
}

/// Max over each window of an int8 plane.
pub fn max_i8(isa: Isa, w: &Windows, src: &[i8], out: &mut [i8]) {
    w.check(src.len(), out.len());
    match isa {
        Isa::Generic => generic_max(w, src, out),
        #[cfg(target_arch = "aarch64")]
        // SAFETY: `w.check` above.
        Isa::Neon => unsafe { aarch64::max_i8(w, src, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `w.check` above.
        Isa::Avx2Fma | Isa::Avx512 => unsafe { x86_64::max_i8(w, src, out) },
    }
}

/// `out[q]` = max of plane `q` of `src` (`out.len()` planes of `plane` elements), folded in
/// memory order from the plane's first element.
pub fn global_max_f32(isa: Isa, src: &[f32], plane: usize, out: &mut [f32]) {
    check_planes(src.len(), plane, out.len());
    match isa {
        Isa::Generic => generic_global_max(src, plane, out),
        #[cfg(target_arch = "aarch64")]
        // SAFETY: `check_planes` above.
        Isa::Neon => unsafe { aarch64::global_max_f32(src, plane, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `check_planes` above.
        Isa::Avx2Fma | Isa::Avx512 => unsafe { x86_64::global_max_f32(src, plane, out) },
    }
}

/// `out[q]` = (sum of plane `q` in memory order, from 0) / `plane`.
pub fn global_avg_f32(isa: Isa, src: &[f32], plane: usize, out: &mut [f32]) {
    check_planes(src.len(), plane, out.len());
    match isa {
        Isa::Generic => generic_global_avg(src, plane, out),
        #[cfg(target_arch = "aarch64")]
        // SAFETY: `check_planes` above.
        Isa::Neon => unsafe { aarch64::global_avg_f32(src, plane, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `check_planes` above.
        Isa::Avx2Fma | Isa::Avx512 => unsafe { x86_64::global_avg_f32(src, plane, out) },
    }
}

/// `out[q]` = max of int8 plane `q`.
pub fn global_max_i8(isa: Isa, src: &[i8], plane: usize, out: &mut [i8]) {
    check_planes(src.len(), plane, out.len());
    match isa {
        Isa::Generic => generic_global_max(src, plane, out),
        #[cfg(target_arch = "aarch64")]
        // SAFETY: `check_planes` above.
        Isa::Neon => unsafe { aarch64::global_max_i8(src, plane, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `check_planes` above.
        Isa::Avx2Fma | Isa::Avx512 => unsafe { x86_64::global_max_i8(src, plane, out) },
    }
}

fn check_planes(src_len: usize, plane: usize, channels: usize) {
    assert!(plane > 0, "empty planes");
    assert!(
        plane.checked_mul(channels).is_some_and(|n| n <= src_len),
        "planes too short"
    );
}

/// The reference max of one window starting at `src[start]`: the first element, then
/// every element row by row, replacing the running max when it is smaller.
#[inline(always)]
pub(crate) fn window_max<T: Copy + PartialOrd>(
    src: &[T],
    start: usize,
    in_w: usize,
    kernel_w: usize,
    kernel_h: usize,
) -> T {
    let mut m = src[start];
    for ky in 0..kernel_h {
        for &v in &src[start + ky * in_w..][..kernel_w] {
            if m < v {
                m = v;
            }
        }
    }
    m
}

/// The reference window sum (from 0, row by row).
#[inline(always)]
pub(crate) fn window_sum(
    src: &[f32],
    start: usize,
    in_w: usize,
    kernel_w: usize,
    kernel_h: usize,
) -> f32 {
    let mut sum = 0.0f32;
    for ky in 0..kernel_h {
        for &v in &src[start + ky * in_w..][..kernel_w] {
            sum += v;
        }
    }
    sum
}

/// Generic max over outputs `cols.clone()` of row `r` (also the SIMD variants' tails).
#[inline]
pub(crate) fn generic_max_cols<T: Copy + PartialOrd>(
    w: &Windows,
    src: &[T],
    r: usize,
    cols: std::ops::Range<usize>,
    out: &mut [T],
) {
    for j in cols {
        out[r * w.out_stride + j] = window_max(src, w.start(r, j), w.in_w, w.kernel_w, w.kernel_h);
    }
}

/// Generic average over outputs `cols.clone()` of row `r`.
#[inline]
pub(crate) fn generic_avg_cols(
    w: &Windows,
    src: &[f32],
    divisor: f32,
    r: usize,
    cols: std::ops::Range<usize>,
    out: &mut [f32],
) {
    for j in cols {
        out[r * w.out_stride + j] =
            window_sum(src, w.start(r, j), w.in_w, w.kernel_w, w.kernel_h) / divisor;
    }
}

fn generic_max<T: Copy + PartialOrd>(w: &Windows, src: &[T], out: &mut [T]) {
    for r in 0..w.rows {
        generic_max_cols(w, src, r, 0..w.cols, out);
    }
}

fn generic_avg(w: &Windows, src: &[f32], divisor: f32, out: &mut [f32]) {
    for r in 0..w.rows {
        generic_avg_cols(w, src, divisor, r, 0..w.cols, out);
    }
}

/// The reference max of one plane.
#[inline]
pub(crate) fn plane_max<T: Copy + PartialOrd>(p: &[T]) -> T {
    let mut m = p[0];
    for &v in p {
        if m < v {
            m = v;
        }
    }
    m
}

/// The reference mean of one plane.
#[inline]
pub(crate) fn plane_avg(p: &[f32]) -> f32 {
    p.iter().fold(0.0f32, |s, v| s + v) / p.len() as f32
}

fn generic_global_max<T: Copy + PartialOrd>(src: &[T], plane: usize, out: &mut [T]) {
    for (o, p) in out.iter_mut().zip(src.chunks_exact(plane)) {
        *o = plane_max(p);
    }
}

fn generic_global_avg(src: &[f32], plane: usize, out: &mut [f32]) {
    for (o, p) in out.iter_mut().zip(src.chunks_exact(plane)) {
        *o = plane_avg(p);
    }
}
