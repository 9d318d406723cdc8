//! Which instruction set a kernel family's SIMD variant uses, chosen once at load and shared
//! by the families that have one generic reference and one SIMD variant per architecture
//! (depthwise, GEMV, pooling).

/// The instruction set of a kernel call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Generic,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// AVX-512 F/BW/VL on top of AVX2 and FMA. Families without a 512-bit variant run their
    /// AVX2 one (only the depthwise int8 3x3 path has one); `EQ_X86_KERNEL=avx2` or
    /// `avxvnni` keeps a CPU that has it on [`Isa::Avx2Fma`].
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Isa {
    /// The fastest variant this CPU supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            let narrow = std::env::var("EQ_X86_KERNEL").is_ok_and(|k| {
                matches!(k.trim().to_ascii_lowercase().as_str(), "avx2" | "avxvnni")
            });
            return if Isa::avx512_supported() && !narrow {
                Isa::Avx512
            } else {
                Isa::Avx2Fma
            };
        }
        #[cfg(target_arch = "aarch64")]
        return Isa::Neon;
        #[allow(unreachable_code)]
        Isa::Generic
    }

    #[cfg(target_arch = "x86_64")]
    fn avx512_supported() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
    }

    /// Every variant this CPU can run (tests compare them all against the reference).
    pub fn all_available() -> Vec<Isa> {
        let mut v = vec![Isa::Generic];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            v.push(Isa::Avx2Fma);
            if Isa::avx512_supported() {
                v.push(Isa::Avx512);
            }
        }
        #[cfg(target_arch = "aarch64")]
        v.push(Isa::Neon);
        v
    }
}
