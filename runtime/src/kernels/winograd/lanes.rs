//! Four fp32 lanes, one per tile: the transforms run on four tiles at once with plain
//! arithmetic on this type. NEON on aarch64 (`fmla` by scalar for the multiply-adds),
//! SSE on x86_64 (its baseline: multiply then add), arrays elsewhere.
//!
//! [`Lane`] is the arithmetic the 1-D transforms are written against, implemented for
//! [`F4`] and for `f64` (the tests run the same factored code in f64 against the matrices).

use std::ops::{Add, Sub};

/// What the factored 1-D transforms need: add, subtract, scale by a constant and
/// multiply-add by a constant.
pub trait Lane: Copy + Add<Output = Self> + Sub<Output = Self> {
    fn scale(self, c: f32) -> Self;
    /// `self + b * c` (fused where the hardware fuses).
    fn mla(self, b: Self, c: f32) -> Self;
}

impl Lane for f64 {
    #[inline(always)]
    fn scale(self, c: f32) -> f64 {
        self * c as f64
    }
    #[inline(always)]
    fn mla(self, b: f64, c: f32) -> f64 {
        self + b * c as f64
    }
}

#[cfg(target_arch = "aarch64")]
mod imp {
    use std::arch::aarch64::*;

    #[derive(Clone, Copy, Debug)]
    pub struct F4(pub float32x4_t);

    impl F4 {
        #[inline(always)]
        pub fn splat(x: f32) -> F4 {
            // SAFETY: NEON is part of the aarch64 baseline.
            F4(unsafe { vdupq_n_f32(x) })
        }
        /// `[a, b, c, d]`, built in a register.
        #[inline(always)]
        pub fn new(a: f32, b: f32, c: f32, d: f32) -> F4 {
            let v = [a, b, c, d];
            // SAFETY: v holds four floats.
            F4(unsafe { vld1q_f32(v.as_ptr()) })
        }
        /// # Safety
        /// `p` is valid for reading four floats.
        #[inline(always)]
        pub unsafe fn load(p: *const f32) -> F4 {
            F4(vld1q_f32(p))
        }
        /// # Safety
        /// `p` is valid for writing four floats.
        #[inline(always)]
        pub unsafe fn store(self, p: *mut f32) {
            vst1q_f32(p, self.0)
        }
        /// # Safety
        /// `p` is valid for writing two floats.
        #[inline(always)]
        pub unsafe fn store_lo2(self, p: *mut f32) {
            vst1_f32(p, vget_low_f32(self.0))
        }
        /// # Safety
        /// `p` is valid for writing two floats.
        #[inline(always)]
        pub unsafe fn store_hi2(self, p: *mut f32) {
            vst1_f32(p, vget_high_f32(self.0))
        }
        #[inline(always)]
        pub fn lane(self, i: usize) -> f32 {
            let mut a = [0.0f32; 4];
            // SAFETY: a holds four floats.
            unsafe { vst1q_f32(a.as_mut_ptr(), self.0) };
            a[i]
        }
        #[inline(always)]
        pub fn vadd(self, b: F4) -> F4 {
            // SAFETY: baseline NEON.
            F4(unsafe { vaddq_f32(self.0, b.0) })
        }
        #[inline(always)]
        pub fn vsub(self, b: F4) -> F4 {
            // SAFETY: baseline NEON.
            F4(unsafe { vsubq_f32(self.0, b.0) })
        }
        #[inline(always)]
        pub fn scale(self, c: f32) -> F4 {
            // SAFETY: baseline NEON.
            F4(unsafe { vmulq_n_f32(self.0, c) })
        }
        #[inline(always)]
        pub fn mla(self, b: F4, c: f32) -> F4 {
            // SAFETY: baseline NEON.
            F4(unsafe { vfmaq_n_f32(self.0, b.0, c) })
        }
        #[inline(always)]
        pub fn max(self, b: F4) -> F4 {
            // SAFETY: baseline NEON.
            F4(unsafe { vmaxq_f32(self.0, b.0) })
        }
        #[inline(always)]
        pub fn min(self, b: F4) -> F4 {
            // SAFETY: baseline NEON.
            F4(unsafe { vminq_f32(self.0, b.0) })
        }
        /// Lanes below zero take `neg`'s lane (NaN keeps `self`).
        #[inline(always)]
        pub fn select_negative(self, neg: F4) -> F4 {
            // SAFETY: baseline NEON.
            F4(unsafe { vbslq_f32(vcltq_f32(self.0, vdupq_n_f32(0.0)), neg.0, self.0) })
        }
    }

    /// Rows `r[i]` to columns: `out[j]` lane `i` = `r[i]` lane `j`.
    #[inline(always)]
    pub fn transpose(r: [F4; 4]) -> [F4; 4] {
        // SAFETY: baseline NEON.
        unsafe {
            let t0 = vtrn1q_f32(r[0].0, r[1].0);
            let t1 = vtrn2q_f32(r[0].0, r[1].0);
            let t2 = vtrn1q_f32(r[2].0, r[3].0);
            let t3 = vtrn2q_f32(r[2].0, r[3].0);
            let f = |a: float32x4_t| vreinterpretq_f64_f32(a);
            let b = |a: float64x2_t| vreinterpretq_f32_f64(a);
            [
                F4(b(vtrn1q_f64(f(t0), f(t2)))),
                F4(b(vtrn1q_f64(f(t1), f(t3)))),
                F4(b(vtrn2q_f64(f(t0), f(t2)))),
                F4(b(vtrn2q_f64(f(t1), f(t3)))),
            ]
        }
    }

    /// `(a0, b0, a1, b1)` and `(a2, b2, a3, b3)`.
    #[inline(always)]
    pub fn zip(a: F4, b: F4) -> (F4, F4) {
        // SAFETY: baseline NEON.
        unsafe { (F4(vzip1q_f32(a.0, b.0)), F4(vzip2q_f32(a.0, b.0))) }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    #[derive(Clone, Copy, Debug)]
    pub struct F4(pub __m128);

    // SAFETY (whole impl): SSE is part of the x86_64 baseline.
    impl F4 {
        #[inline(always)]
        pub fn splat(x: f32) -> F4 {
            F4(unsafe { _mm_set1_ps(x) })
        }
        /// `[a, b, c, d]`, built in a register.
        #[inline(always)]
        pub fn new(a: f32, b: f32, c: f32, d: f32) -> F4 {
            F4(unsafe { _mm_setr_ps(a, b, c, d) })
        }
        /// # Safety
        /// `p` is valid for reading four floats.
        #[inline(always)]
        pub unsafe fn load(p: *const f32) -> F4 {
            F4(_mm_loadu_ps(p))
        }
        /// # Safety
        /// `p` is valid for writing four floats.
        #[inline(always)]
        pub unsafe fn store(self, p: *mut f32) {
            _mm_storeu_ps(p, self.0)
        }
        /// # Safety
        /// `p` is valid for writing two floats.
        #[inline(always)]
        pub unsafe fn store_lo2(self, p: *mut f32) {
            _mm_storel_pd(p as *mut f64, _mm_castps_pd(self.0))
        }
        /// # Safety
        /// `p` is valid for writing two floats.
        #[inline(always)]
        pub unsafe fn store_hi2(self, p: *mut f32) {
            _mm_storeh_pd(p as *mut f64, _mm_castps_pd(self.0))
        }
        #[inline(always)]
        pub fn lane(self, i: usize) -> f32 {
            let mut a = [0.0f32; 4];
            unsafe { _mm_storeu_ps(a.as_mut_ptr(), self.0) };
            a[i]
        }
        #[inline(always)]
        pub fn vadd(self, b: F4) -> F4 {
            F4(unsafe { _mm_add_ps(self.0, b.0) })
        }
        #[inline(always)]
        pub fn vsub(self, b: F4) -> F4 {
            F4(unsafe { _mm_sub_ps(self.0, b.0) })
        }
        #[inline(always)]
        pub fn scale(self, c: f32) -> F4 {
            F4(unsafe { _mm_mul_ps(self.0, _mm_set1_ps(c)) })
        }
        #[inline(always)]
        pub fn mla(self, b: F4, c: f32) -> F4 {
            F4(unsafe { _mm_add_ps(self.0, _mm_mul_ps(b.0, _mm_set1_ps(c))) })
        }
        /// `max(self, b)`, NaN in `self` kept.
        #[inline(always)]
        pub fn max(self, b: F4) -> F4 {
            F4(unsafe { _mm_max_ps(b.0, self.0) })
        }
        /// `min(self, b)`, NaN in `self` kept.
        #[inline(always)]
        pub fn min(self, b: F4) -> F4 {
            F4(unsafe { _mm_min_ps(b.0, self.0) })
        }
        /// Lanes below zero take `neg`'s lane (NaN keeps `self`).
        #[inline(always)]
        pub fn select_negative(self, neg: F4) -> F4 {
            unsafe {
                let m = _mm_cmplt_ps(self.0, _mm_setzero_ps());
                F4(_mm_or_ps(_mm_and_ps(m, neg.0), _mm_andnot_ps(m, self.0)))
            }
        }
    }

    /// Rows `r[i]` to columns: `out[j]` lane `i` = `r[i]` lane `j`.
    #[inline(always)]
    pub fn transpose(r: [F4; 4]) -> [F4; 4] {
        unsafe {
            let t0 = _mm_unpacklo_ps(r[0].0, r[1].0);
            let t1 = _mm_unpacklo_ps(r[2].0, r[3].0);
            let t2 = _mm_unpackhi_ps(r[0].0, r[1].0);
            let t3 = _mm_unpackhi_ps(r[2].0, r[3].0);
            [
                F4(_mm_movelh_ps(t0, t1)),
                F4(_mm_movehl_ps(t1, t0)),
                F4(_mm_movelh_ps(t2, t3)),
                F4(_mm_movehl_ps(t3, t2)),
            ]
        }
    }

    /// `(a0, b0, a1, b1)` and `(a2, b2, a3, b3)`.
    #[inline(always)]
    pub fn zip(a: F4, b: F4) -> (F4, F4) {
        unsafe { (F4(_mm_unpacklo_ps(a.0, b.0)), F4(_mm_unpackhi_ps(a.0, b.0))) }
    }
}

#[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
mod imp {
    #[derive(Clone, Copy, Debug)]
    pub struct F4(pub [f32; 4]);

    impl F4 {
        #[inline(always)]
        fn map(self, b: F4, f: impl Fn(f32, f32) -> f32) -> F4 {
            F4(std::array::from_fn(|i| f(self.0[i], b.0[i])))
        }
        #[inline(always)]
        pub fn splat(x: f32) -> F4 {
            F4([x; 4])
        }
        /// `[a, b, c, d]`.
        #[inline(always)]
        pub fn new(a: f32, b: f32, c: f32, d: f32) -> F4 {
            F4([a, b, c, d])
        }
        /// # Safety
        /// `p` is valid for reading four floats.
        #[inline(always)]
        pub unsafe fn load(p: *const f32) -> F4 {
            F4(std::ptr::read_unaligned(p as *const [f32; 4]))
        }
        /// # Safety
        /// `p` is valid for writing four floats.
        #[inline(always)]
        pub unsafe fn store(self, p: *mut f32) {
            std::ptr::write_unaligned(p as *mut [f32; 4], self.0)
        }
        /// # Safety
        /// `p` is valid for writing two floats.
        #[inline(always)]
        pub unsafe fn store_lo2(self, p: *mut f32) {
            std::ptr::write_unaligned(p as *mut [f32; 2], [self.0[0], self.0[1]])
        }
        /// # Safety
        /// `p` is valid for writing two floats.
        #[inline(always)]
        pub unsafe fn store_hi2(self, p: *mut f32) {
            std::ptr::write_unaligned(p as *mut [f32; 2], [self.0[2], self.0[3]])
        }
        #[inline(always)]
        pub fn lane(self, i: usize) -> f32 {
            self.0[i]
        }
        #[inline(always)]
        pub fn vadd(self, b: F4) -> F4 {
            self.map(b, |x, y| x + y)
        }
        #[inline(always)]
        pub fn vsub(self, b: F4) -> F4 {
            self.map(b, |x, y| x - y)
        }
        #[inline(always)]
        pub fn scale(self, c: f32) -> F4 {
            F4(self.0.map(|x| x * c))
        }
        #[inline(always)]
        pub fn mla(self, b: F4, c: f32) -> F4 {
            self.map(b, |x, y| x + y * c)
        }
        #[inline(always)]
        pub fn max(self, b: F4) -> F4 {
            self.map(b, |x, y| if x < y { y } else { x })
        }
        #[inline(always)]
        pub fn min(self, b: F4) -> F4 {
            self.map(b, |x, y| if x > y { y } else { x })
        }
        #[inline(always)]
        pub fn select_negative(self, neg: F4) -> F4 {
            self.map(neg, |x, n| if x < 0.0 { n } else { x })
        }
    }

    #[inline(always)]
    pub fn transpose(r: [F4; 4]) -> [F4; 4] {
        std::array::from_fn(|j| F4(std::array::from_fn(|i| r[i].0[j])))
    }

    #[inline(always)]
    pub fn zip(a: F4, b: F4) -> (F4, F4) {
        (
            F4([a.0[0], b.0[0], a.0[1], b.0[1]]),
            F4([a.0[2], b.0[2], a.0[3], b.0[3]]),
        )
    }
}

pub use imp::{transpose, zip, F4};

impl Add for F4 {
    type Output = F4;
    #[inline(always)]
    fn add(self, b: F4) -> F4 {
        F4::vadd(self, b)
    }
}

impl Sub for F4 {
    type Output = F4;
    #[inline(always)]
    fn sub(self, b: F4) -> F4 {
        F4::vsub(self, b)
    }
}

impl Lane for F4 {
    #[inline(always)]
    fn scale(self, c: f32) -> F4 {
        F4::scale(self, c)
    }
    #[inline(always)]
    fn mla(self, b: F4, c: f32) -> F4 {
        F4::mla(self, b, c)
    }
}
