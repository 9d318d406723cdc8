//! Which instruction set a kernel family's SIMD variant uses, chosen once at load and shared
//! by the families that have one generic reference and one SIMD variant per architecture
//! (depthwise, GEMV, pooling).

/// The instruction set of a kernel call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Generic,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Isa {
    /// The fastest variant this CPU supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Isa::Avx2Fma;
        }
        #[cfg(target_arch = "aarch64")]
        return Isa::Neon;
        #[allow(unreachable_code)]
        Isa::Generic
    }

    /// Every variant this CPU can run (tests compare them all against the reference).
    pub fn all_available() -> Vec<Isa> {
        let mut v = vec![Isa::Generic];
        let best = Isa::detect();
        if best != Isa::Generic {
            v.push(best);
        }
        v
    }
}
