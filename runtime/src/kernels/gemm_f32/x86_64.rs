//! x86_64 fp32 micro-kernels, chosen at run time from the CPU's features.
//!
//! Paths, best first ([`detect`] takes the first this CPU runs; [`supported`] lists all):
//! * `avx512`: AVX-512F, 12 x 32: twenty-four zmm accumulators (two per row), two B loads
//!   and twelve A broadcasts per k step; 12 x 16 and 12 x 8 (masked) tails.
//! * `avx2`: AVX2 + FMA, 6 x 16: twelve ymm accumulators, two B loads and six A broadcasts
//!   per k step (the classic Haswell/Zen shape, 12 of 16 registers on C); 6 x 8 tail.
//!
//! The `EQ_X86_F32_KERNEL` environment variable (`avx512`, `avx2` or `generic`) forces one
//! path, so each can be run (and benchmarked) on one machine; a path this CPU does not
//! support falls back to the best one it does, anything else is ignored.

use super::{Kernel, TailKernel, Tile, TileAct};
use std::arch::x86_64::*;

/// One x86 fp32 kernel path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    Avx512,
    Avx2,
}

impl Path {
    /// Best first.
    pub const ALL: [Path; 2] = [Path::Avx512, Path::Avx2];

    /// The `EQ_X86_F32_KERNEL` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Path::Avx512 => "avx512",
            Path::Avx2 => "avx2",
        }
    }

    /// Whether this CPU runs the path's instructions.
    pub fn supported(self) -> bool {
        match self {
            Path::Avx512 => is_x86_feature_detected!("avx512f"),
            Path::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
        }
    }

    /// The path's kernel family.
    pub fn kernel(self) -> Kernel {
        match self {
            Path::Avx512 => AVX512,
            Path::Avx2 => AVX2_FMA,
        }
    }
}

/// What `EQ_X86_F32_KERNEL` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    Path(Path),
    Generic,
}

/// Parses an `EQ_X86_F32_KERNEL` value (case-insensitive); `None` for anything else.
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
pub fn supported() -> impl Iterator<Item = Kernel> {
    Path::ALL
        .into_iter()
        .filter(|path| path.supported())
        .map(Path::kernel)
}

/// The kernel given an override: the forced path when the CPU supports it, else the best
/// supported path; `None` (the generic kernel) when forced or when nothing is supported.
pub fn choose(choice: Option<Choice>) -> Option<Kernel> {
    match choice {
        Some(Choice::Generic) => None,
        Some(Choice::Path(path)) if path.supported() => Some(path.kernel()),
        _ => supported().next(),
    }
}

/// The kernel for this CPU, honouring `EQ_X86_F32_KERNEL`; `None`: the generic one.
pub fn detect() -> Option<Kernel> {
    let choice = std::env::var("EQ_X86_F32_KERNEL")
        .ok()
        .and_then(|s| parse_choice(&s));
    choose(choice)
}

const MR: usize = 6;
const NR: usize = 16;

pub const AVX2_FMA: Kernel = Kernel {
    name: "avx2+fma 6x16",
    mr: MR,
    nr: NR,
    a53: micro,
    a72: micro,
    other: micro,
    tails: [
        Some(TailKernel {
            nr: 8,
            a53: micro8,
            a72: micro8,
            other: micro8,
        }),
        None,
    ],
};

/// # Safety
/// See [`super::MicroKernel`]; the CPU must support AVX2 and FMA (checked by [`detect`]).
unsafe fn micro(kc: usize, a: *const f32, b: *const f32, tile: &Tile) {
    micro_avx2(kc, a, b, tile)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx2(kc: usize, mut a: *const f32, mut b: *const f32, tile: &Tile) {
    // Accumulators start from the bias (or the previous K block's sums).
    let mut c = [_mm256_setzero_ps(); 2 * MR];
    for r in 0..MR {
        let row = tile.rows[r];
        if tile.accumulate {
            c[2 * r] = _mm256_loadu_ps(row);
            c[2 * r + 1] = _mm256_loadu_ps(row.add(8));
        } else {
            let bias = _mm256_broadcast_ss(&*tile.bias.add(r));
            c[2 * r] = bias;
            c[2 * r + 1] = bias;
        }
    }
    let [mut c00, mut c01, mut c10, mut c11, mut c20, mut c21, mut c30, mut c31, mut c40, mut c41, mut c50, mut c51] =
        c;
    for _ in 0..kc {
        let b0 = _mm256_loadu_ps(b);
        let b1 = _mm256_loadu_ps(b.add(8));
        let a0 = _mm256_broadcast_ss(&*a);
        c00 = _mm256_fmadd_ps(a0, b0, c00);
        c01 = _mm256_fmadd_ps(a0, b1, c01);
        let a1 = _mm256_broadcast_ss(&*a.add(1));
        c10 = _mm256_fmadd_ps(a1, b0, c10);
        c11 = _mm256_fmadd_ps(a1, b1, c11);
        let a2 = _mm256_broadcast_ss(&*a.add(2));
        c20 = _mm256_fmadd_ps(a2, b0, c20);
        c21 = _mm256_fmadd_ps(a2, b1, c21);
        let a3 = _mm256_broadcast_ss(&*a.add(3));
        c30 = _mm256_fmadd_ps(a3, b0, c30);
        c31 = _mm256_fmadd_ps(a3, b1, c31);
        let a4 = _mm256_broadcast_ss(&*a.add(4));
        c40 = _mm256_fmadd_ps(a4, b0, c40);
        c41 = _mm256_fmadd_ps(a4, b1, c41);
        let a5 = _mm256_broadcast_ss(&*a.add(5));
        c50 = _mm256_fmadd_ps(a5, b0, c50);
        c51 = _mm256_fmadd_ps(a5, b1, c51);
        a = a.add(MR);
        b = b.add(NR);
    }
    let acc = [c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51];
    for r in 0..MR {
        let row = tile.rows[r];
        for h in 0..2 {
            _mm256_storeu_ps(row.add(8 * h), act_avx2(acc[2 * r + h], tile.act));
        }
    }
}

/// # Safety
/// See [`super::MicroKernel`] (B panels 8 wide); the CPU must support AVX2 and FMA.
unsafe fn micro8(kc: usize, a: *const f32, b: *const f32, tile: &Tile) {
    micro8_avx2(kc, a, b, tile)
}

/// The 6 x 8 tail: one ymm per row.
#[target_feature(enable = "avx2,fma")]
unsafe fn micro8_avx2(kc: usize, mut a: *const f32, mut b: *const f32, tile: &Tile) {
    let mut c = [_mm256_setzero_ps(); MR];
    for (r, cr) in c.iter_mut().enumerate() {
        *cr = if tile.accumulate {
            _mm256_loadu_ps(tile.rows[r])
        } else {
            _mm256_broadcast_ss(&*tile.bias.add(r))
        };
    }
    let [mut c0, mut c1, mut c2, mut c3, mut c4, mut c5] = c;
    for _ in 0..kc {
        let b0 = _mm256_loadu_ps(b);
        c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(&*a), b0, c0);
        c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(&*a.add(1)), b0, c1);
        c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(&*a.add(2)), b0, c2);
        c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(&*a.add(3)), b0, c3);
        c4 = _mm256_fmadd_ps(_mm256_broadcast_ss(&*a.add(4)), b0, c4);
        c5 = _mm256_fmadd_ps(_mm256_broadcast_ss(&*a.add(5)), b0, c5);
        a = a.add(MR);
        b = b.add(8);
    }
    for (r, v) in [c0, c1, c2, c3, c4, c5].into_iter().enumerate() {
        _mm256_storeu_ps(tile.rows[r], act_avx2(v, tile.act));
    }
}

/// [`TileAct`] on 8 lanes. `max(bound, v)` / `min(bound, v)` return `v` when it is NaN, as
/// the scalar comparisons keep it.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn act_avx2(v: __m256, act: TileAct) -> __m256 {
    match act {
        TileAct::None => v,
        TileAct::Relu => _mm256_max_ps(_mm256_setzero_ps(), v),
        TileAct::Leaky(s) => {
            let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(v, _mm256_setzero_ps());
            _mm256_blendv_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(s)), neg)
        }
        TileAct::Clip(min, max) => {
            _mm256_min_ps(_mm256_set1_ps(max), _mm256_max_ps(_mm256_set1_ps(min), v))
        }
    }
}

/// Rows of the AVX-512 tile.
const MR512: usize = 12;

pub const AVX512: Kernel = Kernel {
    name: "avx512f 12x32",
    mr: MR512,
    nr: 32,
    a53: micro512::<32>,
    a72: micro512::<32>,
    other: micro512::<32>,
    tails: [
        Some(TailKernel {
            nr: 16,
            a53: micro512::<16>,
            a72: micro512::<16>,
            other: micro512::<16>,
        }),
        Some(TailKernel {
            nr: 8,
            a53: micro512::<8>,
            a72: micro512::<8>,
            other: micro512::<8>,
        }),
    ],
};

/// # Safety
/// See [`super::MicroKernel`] (B panels `W` wide); the CPU must support AVX-512F.
unsafe fn micro512<const W: usize>(kc: usize, a: *const f32, b: *const f32, tile: &Tile) {
    match W {
        32 => micro512_body::<2, 0xffff>(kc, a, b, tile),
        16 => micro512_body::<1, 0xffff>(kc, a, b, tile),
        _ => micro512_body::<1, 0x00ff>(kc, a, b, tile),
    }
}

/// `MR512 x (V * 16)` with the last zmm of each row limited to the lanes of `MASK` (a B
/// panel `(V - 1) * 16 + popcount(MASK)` wide).
#[target_feature(enable = "avx512f")]
unsafe fn micro512_body<const V: usize, const MASK: u16>(
    kc: usize,
    mut a: *const f32,
    mut b: *const f32,
    tile: &Tile,
) {
    let mask: __mmask16 = MASK;
    let width = (V - 1) * 16 + mask.count_ones() as usize;
    let mut c = [[_mm512_setzero_ps(); V]; MR512];
    for (r, cr) in c.iter_mut().enumerate() {
        if tile.accumulate {
            let row = tile.rows[r];
            for (h, v) in cr.iter_mut().enumerate() {
                *v = if h + 1 < V {
                    _mm512_loadu_ps(row.add(16 * h))
                } else {
                    _mm512_maskz_loadu_ps(mask, row.add(16 * h))
                };
            }
        } else {
            *cr = [_mm512_set1_ps(*tile.bias.add(r)); V];
        }
    }
    for _ in 0..kc {
        let mut bv = [_mm512_setzero_ps(); V];
        for (h, v) in bv.iter_mut().enumerate() {
            *v = if h + 1 < V || mask == 0xffff {
                _mm512_loadu_ps(b.add(16 * h))
            } else {
                _mm512_maskz_loadu_ps(mask, b.add(16 * h))
            };
        }
        for (r, cr) in c.iter_mut().enumerate() {
            let ar = _mm512_set1_ps(*a.add(r));
            for h in 0..V {
                cr[h] = _mm512_fmadd_ps(ar, bv[h], cr[h]);
            }
        }
        a = a.add(MR512);
        b = b.add(width);
    }
    for (r, cr) in c.iter().enumerate() {
        let row = tile.rows[r];
        for (h, &v) in cr.iter().enumerate() {
            let v = act_avx512(v, tile.act);
            if h + 1 < V || mask == 0xffff {
                _mm512_storeu_ps(row.add(16 * h), v);
            } else {
                _mm512_mask_storeu_ps(row.add(16 * h), mask, v);
            }
        }
    }
}

/// [`TileAct`] on 16 lanes, NaN kept as in [`act_avx2`].
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn act_avx512(v: __m512, act: TileAct) -> __m512 {
    match act {
        TileAct::None => v,
        TileAct::Relu => _mm512_max_ps(_mm512_setzero_ps(), v),
        TileAct::Leaky(s) => {
            let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, _mm512_setzero_ps());
            _mm512_mask_mul_ps(v, neg, v, _mm512_set1_ps(s))
        }
        TileAct::Clip(min, max) => {
            _mm512_min_ps(_mm512_set1_ps(max), _mm512_max_ps(_mm512_set1_ps(min), v))
        }
    }
}
