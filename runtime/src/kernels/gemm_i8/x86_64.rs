//! x86_64 integer GEMM micro-kernels, chosen at run time from the CPU's features.
//!
//! Paths, best first ([`detect`] takes the first this CPU runs; [`supported`] lists all):
//! * `avx512vnni`: AVX-512 VNNI, 8 x 16 tiles (one zmm of sixteen int32 columns per row).
//! * `avxvnni`: AVX-VNNI (VEX, ymm), 4 x 16 tiles (two ymm per row).
//! * `avx2`: AVX2, 4 x 16 tiles (two ymm per row).
//!
//! The `EQ_X86_KERNEL` environment variable (`avx512vnni`, `avxvnni`, `avx2` or `generic`)
//! forces one path, so each can be run (and benchmarked) on one machine; a path this CPU
//! does not support falls back to the best one it does, anything else is ignored.
//!
//! Every kernel stores its tiles through the requantizing epilogue while the sums are in
//! registers (`epilogue`), not through an int32 tile in memory.
//!
//! # AVX2
//! * INT8, K in steps of 2: A pairs and B pairs are sign-extended to int16 and multiplied
//!   with `vpmaddwd`, which sums each pair straight into int32. Flush interval: 1 (no int16
//!   accumulation at all), so it is exact for any int8 values except two −128 in one pair
//!   (the quantizer never produces −128).
//! * INT7, K in steps of 4: the sign trick. `vpabsb` makes A unsigned, `vpsignb` moves A's
//!   sign onto B, and `vpmaddubsw` sums two products into an int16 lane; four such results
//!   are added in int16 (`vpaddw`) before one `vpmaddwd` by ones widens pairs into int32.
//!   Flush interval: 8 products per int16 lane; bound 8 · 63 · 63 = 31752 ≤ 32767 (and each
//!   `vpmaddubsw` pair, 2 · 3969 = 7938, is far from its saturation).
//!
//! # VNNI (both precisions, one kernel per width)
//! [`Layout::Steps`]`(4)`: a step holds, per A row and per B column, 4 consecutive k. The
//! instruction `vpdpbusd acc, u, s` adds to each int32 lane the four products of its four
//! *unsigned* bytes of `u` with the four *signed* bytes of `s`, in 32-bit wrapping
//! arithmetic with no intermediate narrowing or saturation (unlike `vpmaddubsw`, and unlike
//! `vpdpbusds`). One operand must be unsigned, so the kernels use the offset trick on B
//! (B is the operand that is loaded once per step and shared by every row, so the fix-up
//! costs one `vpxor` per step instead of work per row; AVX-512 has no `vpsignb`, so the
//! sign trick would cost a mask and a masked negate per row there):
//!
//! * `u = b ⊕ 0x80` is the byte `b + 128` read as unsigned: b ∈ [−127, 127] (INT8; INT7 is
//!   the subset [−63, 63]), so `b + 128` ∈ [1, 255] fits u8 exactly.
//! * `s` = four k of one A row, broadcast to every column (embedded `{1to16}` broadcast
//!   for zmm, `vpbroadcastd` for ymm), read as signed: exact.
//! * Each lane then sums `Σ_k (b_kj + 128) · a_rk = Σ_k a_rk b_kj + 128 · Σ_k a_rk`. The
//!   row sums `Σ_k a_rk` come from one more `vpdpbusd` per step with all-ones unsigned
//!   bytes against the step's A bytes (lane r = row r's four k); at the end
//!   `128 · Σ_k a_rk` is subtracted from every column of row r.
//! * All of this is arithmetic modulo 2³², so the result is the exact `Σ_k a_rk b_kj`
//!   whenever that fits int32, even if the biased running sum wraps on the way. It fits for
//!   K · 127 · 127 < 2³¹, i.e. K ≤ 133 144 (INT7: K ≤ 541 064); the largest K of the
//!   benchmark networks is 4608 (3 x 3 x 512), the tests use 8192 and 8203 at ±qmax. The generic reference wraps (or overflows) at the same bound.
//! * K padding and rows / columns past the matrix are zero bytes in both packs: a padded
//!   B byte becomes `u = 128` but meets `a = 0` (padded k) or only reaches discarded lanes
//!   (columns past N); padded A rows are discarded.
//!
//! (The sign trick, `vpdpbusd(|a|, sign(b, a))`, is exact as well: |a| ≤ 127 fits u8 and
//! sign(b, a) ∈ [−127, 127] since b ≠ −128; but it needs `vpabsb` + two `vpsignb` per row
//! and step on ymm where the offset trick needs two `vpxor` per step for all rows, and it
//! has no AVX-512 form.)

use super::{Kernel, Layout, Micro, Tile};
use crate::quant::Precision;
use std::arch::x86_64::*;

mod epilogue;

const MR: usize = 4;
const NR: usize = 16;
const KSTEP_INT8: usize = 2;
const KSTEP_INT7: usize = 4;
/// `vpmaddubsw` results (2 products each) summed in int16 before widening.
const INT7_GROUP: usize = 4;

static INT8: Kernel = Kernel {
    name: "avx2 int8 4x16 vpmaddwd",
    precision: Precision::Int8,
    layout: Layout::Steps(KSTEP_INT8),
    mr: MR,
    nr: NR,
    pair_sums: false,
    simd_store: true,
    micro: Micro::Fused(int8_micro),
};
static INT7: Kernel = Kernel {
    name: "avx2 int7 4x16 vpmaddubsw",
    precision: Precision::Int7,
    layout: Layout::Steps(KSTEP_INT7),
    mr: MR,
    nr: NR,
    pair_sums: false,
    simd_store: true,
    micro: Micro::Fused(int7_micro),
};

/// An x86_64 kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    Avx512Vnni,
    AvxVnni,
    Avx2,
}

impl Path {
    /// Best first.
    pub const ALL: [Path; 3] = [Path::Avx512Vnni, Path::AvxVnni, Path::Avx2];

    /// The `EQ_X86_KERNEL` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Path::Avx512Vnni => "avx512vnni",
            Path::AvxVnni => "avxvnni",
            Path::Avx2 => "avx2",
        }
    }

    /// Whether this CPU runs the path's instructions.
    pub fn supported(self) -> bool {
        match self {
            Path::Avx512Vnni => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            Path::AvxVnni => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("avxvnni")
            }
            // FMA for the epilogue (every AVX2 CPU has it).
            Path::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
        }
    }

    /// The path's kernel for `p`.
    pub fn kernel(self, p: Precision) -> &'static Kernel {
        match (self, p) {
            (Path::Avx512Vnni, Precision::Int8) => &VNNI512_INT8,
            (Path::Avx512Vnni, Precision::Int7) => &VNNI512_INT7,
            (Path::AvxVnni, Precision::Int8) => &VNNI256_INT8,
            (Path::AvxVnni, Precision::Int7) => &VNNI256_INT7,
            (Path::Avx2, Precision::Int8) => &INT8,
            (Path::Avx2, Precision::Int7) => &INT7,
        }
    }
}

/// What `EQ_X86_KERNEL` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    Path(Path),
    Generic,
}

/// Parses an `EQ_X86_KERNEL` value (case-insensitive); `None` for anything else.
pub fn parse_choice(s: &str) -> Option<Choice> {
    let s = s.trim().to_ascii_lowercase();
    if s == "generic" {
        return Some(Choice::Generic);
    }
    Path::ALL
        .into_iter()
        .find(|p| p.name() == s)
        .map(Choice::Path)
}

/// The kernels of every path this CPU supports, best first.
pub fn supported(p: Precision) -> impl Iterator<Item = &'static Kernel> {
    Path::ALL
        .into_iter()
        .filter(|path| path.supported())
        .map(move |path| path.kernel(p))
}

/// The kernel for `p` given an override: the forced path when the CPU supports it, else the
/// best supported path; `None` (the generic kernel) when forced or when nothing is
/// supported.
pub fn choose(p: Precision, choice: Option<Choice>) -> Option<&'static Kernel> {
    match choice {
        Some(Choice::Generic) => None,
        Some(Choice::Path(path)) if path.supported() => Some(path.kernel(p)),
        _ => supported(p).next(),
    }
}

/// Whether `k` is one of the AVX2 kernels (the path of a CPU without VNNI).
pub fn is_avx2(k: &Kernel) -> bool {
    std::ptr::eq(k, &INT8) || std::ptr::eq(k, &INT7)
}

/// The kernel for `p` on this CPU, honouring `EQ_X86_KERNEL`; `None` without AVX2.
pub fn detect(p: Precision) -> Option<&'static Kernel> {
    let choice = std::env::var("EQ_X86_KERNEL")
        .ok()
        .and_then(|s| parse_choice(&s));
    choose(p, choice)
}

/// # Safety
/// See [`super::Kernel`]; needs AVX2 and FMA (checked by [`detect`]).
unsafe fn int8_micro(kp: usize, a: *const u8, b: *const u8, panels: usize, t: &Tile) {
    int8_avx2(kp, a as *const i8, b as *const i8, panels, t)
}

/// `panels` tiles of one A panel, each stored through the epilogue from registers.
#[target_feature(enable = "avx2,fma")]
unsafe fn int8_avx2(kp: usize, a: *const i8, b: *const i8, panels: usize, t: &Tile) {
    let panel_b = kp * NR * KSTEP_INT8;
    for jp in 0..panels {
        let c = int8_tile(kp, a, b.add(jp * panel_b));
        epilogue::store_rows256(&c, &t.panel(jp, NR));
    }
}

/// The int32 sums of one 4 x 16 tile over `kp` steps.
#[inline(always)]
unsafe fn int8_tile(kp: usize, a: *const i8, b: *const i8) -> [[__m256i; 2]; MR] {
    let mut c = [[_mm256_setzero_si256(); 2]; MR];
    // vpermd indices that broadcast the (k, k+1) pair of row r.
    let row_idx = [
        _mm256_set1_epi32(0),
        _mm256_set1_epi32(1),
        _mm256_set1_epi32(2),
        _mm256_set1_epi32(3),
    ];
    for s in 0..kp {
        let bp = b.add(s * NR * KSTEP_INT8);
        let b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp as *const __m128i));
        let b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp.add(16) as *const __m128i));
        // Four rows x two k: eight bytes, as four int16 pairs in the low half.
        let a8 = _mm_loadl_epi64(a.add(s * MR * KSTEP_INT8) as *const __m128i);
        let a16 = _mm256_castsi128_si256(_mm_cvtepi8_epi16(a8));
        for r in 0..MR {
            let ar = _mm256_permutevar8x32_epi32(a16, row_idx[r]);
            c[r][0] = _mm256_add_epi32(c[r][0], _mm256_madd_epi16(ar, b0));
            c[r][1] = _mm256_add_epi32(c[r][1], _mm256_madd_epi16(ar, b1));
        }
    }
    c
}

/// # Safety
/// See [`super::Kernel`]; needs AVX2 and FMA (checked by [`detect`]).
unsafe fn int7_micro(kp: usize, a: *const u8, b: *const u8, panels: usize, t: &Tile) {
    int7_avx2(kp, a as *const i8, b as *const i8, panels, t)
}

/// `panels` tiles of one A panel, each stored through the epilogue from registers.
#[target_feature(enable = "avx2,fma")]
unsafe fn int7_avx2(kp: usize, a: *const i8, b: *const i8, panels: usize, t: &Tile) {
    let panel_b = kp * NR * KSTEP_INT7;
    for jp in 0..panels {
        let c = int7_tile(kp, a, b.add(jp * panel_b));
        epilogue::store_rows256(&c, &t.panel(jp, NR));
    }
}

/// One k step of the INT7 kernel: adds `|a| · (b · sign a)` (two products per lane) to the
/// int16 partial sums `t`.
#[inline(always)]
unsafe fn int7_step(t: &mut [[__m256i; 2]; MR], a: *const i8, b: *const i8) {
    let b0 = _mm256_loadu_si256(b as *const __m256i);
    let b1 = _mm256_loadu_si256(b.add(32) as *const __m256i);
    for (r, tr) in t.iter_mut().enumerate() {
        let ar = _mm256_set1_epi32((a.add(r * KSTEP_INT7) as *const i32).read_unaligned());
        let abs = _mm256_abs_epi8(ar);
        tr[0] = _mm256_add_epi16(tr[0], _mm256_maddubs_epi16(abs, _mm256_sign_epi8(b0, ar)));
        tr[1] = _mm256_add_epi16(tr[1], _mm256_maddubs_epi16(abs, _mm256_sign_epi8(b1, ar)));
    }
}

/// Widens the int16 partial sums into the int32 accumulators and clears them.
#[inline(always)]
unsafe fn int7_flush(c: &mut [[__m256i; 2]; MR], t: &mut [[__m256i; 2]; MR]) {
    let ones = _mm256_set1_epi16(1);
    for (cr, tr) in c.iter_mut().zip(t.iter_mut()) {
        for h in 0..2 {
            cr[h] = _mm256_add_epi32(cr[h], _mm256_madd_epi16(tr[h], ones));
            tr[h] = _mm256_setzero_si256();
        }
    }
}

/// The int32 sums of one 4 x 16 tile over `kp` steps.
#[inline(always)]
unsafe fn int7_tile(kp: usize, mut a: *const i8, mut b: *const i8) -> [[__m256i; 2]; MR] {
    let (a_step, b_step) = (MR * KSTEP_INT7, NR * KSTEP_INT7);
    let mut c = [[_mm256_setzero_si256(); 2]; MR];
    let mut t = [[_mm256_setzero_si256(); 2]; MR];
    for _ in 0..kp / INT7_GROUP {
        int7_step(&mut t, a, b);
        int7_step(&mut t, a.add(a_step), b.add(b_step));
        int7_step(&mut t, a.add(2 * a_step), b.add(2 * b_step));
        int7_step(&mut t, a.add(3 * a_step), b.add(3 * b_step));
        int7_flush(&mut c, &mut t);
        a = a.add(INT7_GROUP * a_step);
        b = b.add(INT7_GROUP * b_step);
    }
    for _ in 0..kp % INT7_GROUP {
        int7_step(&mut t, a, b);
        a = a.add(a_step);
        b = b.add(b_step);
    }
    int7_flush(&mut c, &mut t);
    c
}

/// K values per VNNI step ([`Layout::Steps`]`(4)`, shared with the generic kernel).
const VNNI_KSTEP: usize = 4;
const MR512: usize = 8;
const NR512: usize = 16;
const MR256: usize = 4;
const NR256: usize = 16;

const fn vnni_kernel(
    name: &'static str,
    precision: Precision,
    mr: usize,
    nr: usize,
    micro: Micro,
) -> Kernel {
    Kernel {
        name,
        precision,
        layout: Layout::Steps(VNNI_KSTEP),
        mr,
        nr,
        pair_sums: false,
        simd_store: true,
        micro,
    }
}

static VNNI512_INT8: Kernel = vnni_kernel(
    "avx512vnni int8 8x16 vpdpbusd",
    Precision::Int8,
    MR512,
    NR512,
    Micro::Fused(vnni512_micro),
);
static VNNI512_INT7: Kernel = vnni_kernel(
    "avx512vnni int7 8x16 vpdpbusd",
    Precision::Int7,
    MR512,
    NR512,
    Micro::Fused(vnni512_micro),
);
static VNNI256_INT8: Kernel = vnni_kernel(
    "avxvnni int8 4x16 vpdpbusd",
    Precision::Int8,
    MR256,
    NR256,
    Micro::Fused(vnni256_micro),
);
static VNNI256_INT7: Kernel = vnni_kernel(
    "avxvnni int7 4x16 vpdpbusd",
    Precision::Int7,
    MR256,
    NR256,
    Micro::Fused(vnni256_micro),
);

/// # Safety
/// See [`super::Kernel`]; needs AVX-512 F/BW/VL/VNNI (checked by [`Path::supported`]).
unsafe fn vnni512_micro(kp: usize, a: *const u8, b: *const u8, panels: usize, t: &Tile) {
    vnni512(kp, a, b, panels, t)
}

/// One step of the 8 x 16 AVX-512 kernel: `c[r] += Σ (b ⊕ 0x80) · a_r` over the step's 4 k.
#[inline(always)]
unsafe fn vnni512_step(c: &mut [__m512i; MR512], a: *const u8, b: *const u8, bias: __m512i) {
    let bu = _mm512_xor_si512(_mm512_loadu_si512(b as *const _), bias);
    for (r, cr) in c.iter_mut().enumerate() {
        let ar = _mm512_set1_epi32((a.add(r * VNNI_KSTEP) as *const i32).read_unaligned());
        *cr = _mm512_dpbusd_epi32(*cr, bu, ar);
    }
}

/// The exact int32 sums of one 8 x 16 tile over `kp` steps.
#[inline(always)]
unsafe fn vnni512_tile(kp: usize, mut a: *const u8, mut b: *const u8) -> [__m512i; MR512] {
    let (a_step, b_step) = (MR512 * VNNI_KSTEP, NR512 * VNNI_KSTEP);
    let bias = _mm512_set1_epi8(-128);
    let ones = _mm512_set1_epi8(1);
    let mut c = [_mm512_setzero_si512(); MR512];
    // Lane r (r < 8): Σ a of row r over even steps; lane 8 + r: over odd steps.
    let mut sums = _mm512_setzero_si512();
    for _ in 0..kp / 2 {
        vnni512_step(&mut c, a, b, bias);
        vnni512_step(&mut c, a.add(a_step), b.add(b_step), bias);
        sums = _mm512_dpbusd_epi32(sums, ones, _mm512_loadu_si512(a as *const _));
        a = a.add(2 * a_step);
        b = b.add(2 * b_step);
    }
    if kp % 2 == 1 {
        vnni512_step(&mut c, a, b, bias);
        // Only this step's 32 bytes (the rest of the 64 belong to the next panel).
        sums = _mm512_dpbusd_epi32(sums, ones, _mm512_maskz_loadu_epi32(0xff, a as *const _));
    }
    // 128 · Σ a of each row, broadcast over its 16 columns, is the offset to remove.
    let sums = _mm512_slli_epi32::<7>(_mm512_add_epi32(
        sums,
        _mm512_shuffle_i64x2::<0b01_00_11_10>(sums, sums),
    ));
    std::array::from_fn(|r| {
        let fix = _mm512_permutexvar_epi32(_mm512_set1_epi32(r as i32), sums);
        _mm512_sub_epi32(c[r], fix)
    })
}

/// `panels` tiles of one A panel, each stored through the epilogue from registers.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn vnni512(kp: usize, a: *const u8, b: *const u8, panels: usize, t: &Tile) {
    let panel_b = kp * NR512 * VNNI_KSTEP;
    for jp in 0..panels {
        let c = vnni512_tile(kp, a, b.add(jp * panel_b));
        epilogue::store_rows(&c, &t.panel(jp, NR512));
    }
}

/// # Safety
/// See [`super::Kernel`]; needs AVX2, FMA and AVX-VNNI (checked by [`Path::supported`]).
unsafe fn vnni256_micro(kp: usize, a: *const u8, b: *const u8, panels: usize, t: &Tile) {
    vnni256(kp, a, b, panels, t)
}

/// `panels` tiles of one A panel, each stored through the epilogue from registers.
#[target_feature(enable = "avx2,fma,avxvnni")]
unsafe fn vnni256(kp: usize, a: *const u8, b: *const u8, panels: usize, t: &Tile) {
    let panel_b = kp * NR256 * VNNI_KSTEP;
    for jp in 0..panels {
        let c = vnni256_tile(kp, a, b.add(jp * panel_b));
        epilogue::store_rows256(&c, &t.panel(jp, NR256));
    }
}

/// One step of the 4 x 16 AVX-VNNI kernel: `c[r] += Σ (b ⊕ 0x80) · a_r` over the step's 4 k.
#[inline(always)]
unsafe fn vnni256_step(c: &mut [[__m256i; 2]; MR256], a: *const u8, b: *const u8, bias: __m256i) {
    let b0 = _mm256_xor_si256(_mm256_loadu_si256(b as *const __m256i), bias);
    let b1 = _mm256_xor_si256(_mm256_loadu_si256(b.add(32) as *const __m256i), bias);
    for (r, cr) in c.iter_mut().enumerate() {
        let ar = _mm256_set1_epi32((a.add(r * VNNI_KSTEP) as *const i32).read_unaligned());
        cr[0] = _mm256_dpbusd_avx_epi32(cr[0], b0, ar);
        cr[1] = _mm256_dpbusd_avx_epi32(cr[1], b1, ar);
    }
}

/// The exact int32 sums of one 4 x 16 tile over `kp` steps.
#[inline(always)]
unsafe fn vnni256_tile(kp: usize, mut a: *const u8, mut b: *const u8) -> [[__m256i; 2]; MR256] {
    let (a_step, b_step) = (MR256 * VNNI_KSTEP, NR256 * VNNI_KSTEP);
    let bias = _mm256_set1_epi8(-128);
    let ones = _mm256_set1_epi8(1);
    let mut c = [[_mm256_setzero_si256(); 2]; MR256];
    // Lane r (r < 4): Σ a of row r over even steps; lane 4 + r: over odd steps.
    let mut sums = _mm256_setzero_si256();
    for _ in 0..kp / 2 {
        vnni256_step(&mut c, a, b, bias);
        vnni256_step(&mut c, a.add(a_step), b.add(b_step), bias);
        let a2 = _mm256_loadu_si256(a as *const __m256i);
        sums = _mm256_dpbusd_avx_epi32(sums, ones, a2);
        a = a.add(2 * a_step);
        b = b.add(2 * b_step);
    }
    if kp % 2 == 1 {
        vnni256_step(&mut c, a, b, bias);
        let a1 = _mm256_zextsi128_si256(_mm_loadu_si128(a as *const __m128i));
        sums = _mm256_dpbusd_avx_epi32(sums, ones, a1);
    }
    let sums = _mm_add_epi32(
        _mm256_castsi256_si128(sums),
        _mm256_extracti128_si256::<1>(sums),
    );
    // 128 · Σ a of each row, broadcast over its 16 columns, is the offset to remove.
    let sums = _mm256_castsi128_si256(_mm_slli_epi32::<7>(sums));
    std::array::from_fn(|r| {
        let fix = _mm256_permutevar8x32_epi32(sums, _mm256_set1_epi32(r as i32));
        [
            _mm256_sub_epi32(c[r][0], fix),
            _mm256_sub_epi32(c[r][1], fix),
        ]
    })
}
