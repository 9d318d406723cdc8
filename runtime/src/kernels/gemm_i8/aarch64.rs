//! NEON kernels for ARMv8.0 (Cortex-A53 / A72: no dot product), each with its epilogue fused:
//! the tile is dequantized / requantized and stored while it is still in registers.
//!
//! Cortex-A72 ([`Layout::Pairs32`], 4 x 4 tiles, intrinsics: the core reorders them itself).
//! Lanes run along K; each of the 16 outputs has an int32x4 accumulator, summed after the loop.
//! * INT8: `smull` (low 8 bytes) + `smlal2` (high 8 bytes) put 2 products in each int16 lane,
//!   `sadalp` widens. Flush interval 2 products per int16 lane; bound 2 · 127² = 32258 ≤ 32767
//!   (why −128 must never occur). The multiplies are the limit: one pipe, 8 MACs each.
//! * INT7: pair sums. `p = a_even + b_odd`, `q = a_odd + b_even` (`add` of 16 bytes; 7-bit
//!   values sum to at most ±126, a byte), and `Σ p·q = Σ a·b + Σ a₂ᵢa₂ᵢ₊₁ + Σ b₂ᵢb₂ᵢ₊₁`: each
//!   multiply covers 16 MACs instead of 8, the row and column terms are subtracted once per
//!   tile. Flush interval 2 products per int16 lane; bound 2 · 126² = 31752 ≤ 32767. The
//!   additions run on the second NEON pipe beside the multiplies.
//!
//! Cortex-A53 ([`Layout::Wide16`], 8 x 8 tiles, hand-scheduled `asm!`: the core is in order,
//! so instruction order is the schedule). Lanes run along N: int16 B columns times one int16
//! A value by element, two k per loop iteration, the next k's loads issued between the
//! multiplies of the current one.
//! * INT8: `smlal` / `smlal2` by element straight into 16 int32x4 accumulators.
//! * INT7: `mla` by element into 8 int16x8 accumulators; after 8 k (4 iterations) `saddw` /
//!   `saddw2` widen them. Flush interval 8 products per int16 lane; bound 8 · 63² = 31752.

use super::{store_acc, Acc, Kernel, Layout, Micro, OutKind, Tile, NR_MAX};
use crate::ops::activation::Activation;
use crate::quant::{quantize_scaled, Precision};
use std::arch::aarch64::*;

static INT8_A53: Kernel = Kernel {
    name: "neon int8 8x8 a53 (wide16, smlal by element)",
    precision: Precision::Int8,
    layout: Layout::Wide16,
    mr: 8,
    nr: 8,
    pair_sums: false,
    simd_store: true,
    micro: Micro::Fused(int8_a53),
};
static INT7_A53: Kernel = Kernel {
    name: "neon int7 8x8 a53 (wide16, int16 mla by element)",
    precision: Precision::Int7,
    layout: Layout::Wide16,
    mr: 8,
    nr: 8,
    pair_sums: false,
    simd_store: true,
    micro: Micro::Fused(int7_a53),
};
static INT8_A72: Kernel = Kernel {
    name: "neon int8 4x4 a72 (pairs32, smull/sadalp)",
    precision: Precision::Int8,
    layout: Layout::Pairs32,
    mr: 4,
    nr: 4,
    pair_sums: false,
    simd_store: true,
    micro: Micro::Fused(int8_a72),
};
static INT7_A72: Kernel = Kernel {
    name: "neon int7 4x4 a72 (pairs32, pair sums)",
    precision: Precision::Int7,
    layout: Layout::Pairs32,
    mr: 4,
    nr: 4,
    pair_sums: true,
    simd_store: true,
    micro: Micro::Fused(int7_a72),
};

/// (Cortex-A53 kernel, Cortex-A72 kernel) for `p`.
pub fn kernels(p: Precision) -> (&'static Kernel, &'static Kernel) {
    match p {
        Precision::Int8 => (&INT8_A53, &INT8_A72),
        Precision::Int7 => (&INT7_A53, &INT7_A72),
    }
}

// ---------------------------------------------------------------------------------------
// Epilogue

// The epilogue is monomorphised per output kind and activation ([`dispatch!`]), so the code
// after each tile's K loop is straight-line (the per-row constants are loaded once per A
// panel): output kinds
const F32: u8 = 0;
const I8: u8 = 1;
const I32: u8 = 2;
// and activations (others: the generic epilogue, `GENERIC`).
const NONE: u8 = 0;
const RELU: u8 = 1;
const LEAKY: u8 = 2;
const CLIP: u8 = 3;
const GENERIC: u8 = 4;
/// Clip of an int8 output whose range holds 0: applied to the int8 values (see `Epi::new`).
const CLIP_INT: u8 = 5;

/// The epilogue constants of one A panel (up to 8 rows from `t.row0`).
struct Epi {
    scales: [float32x4_t; 2],
    biases: [float32x4_t; 2],
    slope: f32,
    lo: float32x4_t,
    hi: float32x4_t,
    top: f32,
    /// The int8 result's clamp: ±qmax, or the activation's range on the int8 grid.
    qlo: int8x16_t,
    qhi: int8x16_t,
}

impl Epi {
    /// Constants of the first `rows` rows (the rest 0, never stored).
    #[inline(always)]
    unsafe fn new(t: &Tile, rows: usize) -> Epi {
        let r = &t.requant;
        let mut scales = [0f32; 8];
        let mut biases = [0f32; 8];
        if t.kind != OutKind::I32 {
            for i in 0..rows.min(t.rows) {
                scales[i] = *r.scale_in.get_unchecked(t.row0 + i);
                biases[i] = r.bias.map_or(0.0, |b| *b.get_unchecked(t.row0 + i));
            }
        }
        let (slope, lo, hi) = match r.act {
            Activation::LeakyReLU(s) => (s, 0.0, 0.0),
            Activation::Clip { min, max } => (0.0, min, max),
            _ => (0.0, 0.0, 0.0),
        };
        // An int8 output under ReLU or a Clip whose range holds 0 takes the activation on
        // the int8 values: quantizing is monotonic with q(0) = 0, so q(max(y, 0)) =
        // max(q(y), 0) and q(clip(y)) = clamp(q(y), q(min), q(max)), NaN included (q(NaN) =
        // 0 lies inside). `dispatch!` picks these paths (RELU with I8, CLIP_INT).
        let q = r.qmax;
        let (qlo, qhi) = match r.act {
            Activation::ReLU => (0, q),
            Activation::Clip { min, max } if min <= 0.0 && max >= 0.0 => (
                quantize_scaled(min * r.top_scale, q) as i32,
                quantize_scaled(max * r.top_scale, q) as i32,
            ),
            _ => (-q, q),
        };
        Epi {
            scales: [
                vld1q_f32(scales.as_ptr()),
                vld1q_f32(scales.as_ptr().add(4)),
            ],
            biases: [
                vld1q_f32(biases.as_ptr()),
                vld1q_f32(biases.as_ptr().add(4)),
            ],
            slope,
            lo: vdupq_n_f32(lo),
            hi: vdupq_n_f32(hi),
            top: r.top_scale,
            qlo: vdupq_n_s8(qlo as i8),
            qhi: vdupq_n_s8(qhi as i8),
        }
    }

    /// As `Activation::apply`: selects written as its comparisons (NaN and −0 included).
    /// `K`: the output kind (an int8 output takes ReLU and CLIP_INT on its int8 values).
    #[inline(always)]
    unsafe fn act<const K: u8, const A: u8>(&self, y: float32x4_t) -> float32x4_t {
        let zero = vdupq_n_f32(0.0);
        if K == I8 && (A == RELU || A == CLIP_INT) {
            return y;
        }
        match A {
            RELU => vbslq_f32(vcltq_f32(y, zero), zero, y),
            LEAKY => vbslq_f32(vcltq_f32(y, zero), vmulq_n_f32(y, self.slope), y),
            CLIP => {
                let y = vbslq_f32(vcltq_f32(y, self.lo), self.lo, y);
                vbslq_f32(vcgtq_f32(y, self.hi), self.hi, y)
            }
            _ => y,
        }
    }

    /// `act(fma(acc, scale, bias))` of four rows (`half`: rows 0..4 or 4..8; one int32x4 of
    /// columns each): one fused multiply-add, as `Requant::dequant`.
    #[inline(always)]
    unsafe fn dequant4<const K: u8, const A: u8>(
        &self,
        v: [int32x4_t; 4],
        half: usize,
    ) -> [float32x4_t; 4] {
        let (s, b) = (self.scales[half], self.biases[half]);
        [
            self.act::<K, A>(vfmaq_laneq_f32::<0>(
                vdupq_laneq_f32::<0>(b),
                vcvtq_f32_s32(v[0]),
                s,
            )),
            self.act::<K, A>(vfmaq_laneq_f32::<1>(
                vdupq_laneq_f32::<1>(b),
                vcvtq_f32_s32(v[1]),
                s,
            )),
            self.act::<K, A>(vfmaq_laneq_f32::<2>(
                vdupq_laneq_f32::<2>(b),
                vcvtq_f32_s32(v[2]),
                s,
            )),
            self.act::<K, A>(vfmaq_laneq_f32::<3>(
                vdupq_laneq_f32::<3>(b),
                vcvtq_f32_s32(v[3]),
                s,
            )),
        ]
    }

    /// `clamp(round_half_away(y · top), ±qmax)` of 16 values (as `quant::quantize_scaled`,
    /// NaN → 0): `fcvtas` rounds half away and saturates, the saturating narrows keep the
    /// order, and the final byte clamp makes −128 impossible.
    #[inline(always)]
    unsafe fn requant16(&self, y: [float32x4_t; 4]) -> int8x16_t {
        let mut q = [vdupq_n_s32(0); 4];
        for (q, y) in q.iter_mut().zip(y) {
            *q = vcvtaq_s32_f32(vmulq_n_f32(y, self.top));
        }
        let lo = vqmovn_high_s32(vqmovn_s32(q[0]), q[1]);
        let hi = vqmovn_high_s32(vqmovn_s32(q[2]), q[3]);
        let b = vqmovn_high_s16(vqmovn_s16(lo), hi);
        vminq_s8(vmaxq_s8(b, self.qlo), self.qhi)
    }
}

/// Calls `$f::<KIND, ACT>($args)` for the tile row's output kind and activation.
macro_rules! dispatch {
    ($row:expr, $f:ident, $($arg:expr),*) => {{
        let act = match $row.requant.act {
            Activation::None => NONE,
            Activation::ReLU => RELU,
            Activation::LeakyReLU(_) => LEAKY,
            Activation::Clip { .. } => CLIP,
            _ => GENERIC,
        };
        match ($row.kind, act) {
            (OutKind::I32, _) => $f::<I32, NONE>($($arg),*),
            (_, GENERIC) => $f::<F32, GENERIC>($($arg),*),
            (OutKind::F32, NONE) => $f::<F32, NONE>($($arg),*),
            (OutKind::F32, RELU) => $f::<F32, RELU>($($arg),*),
            (OutKind::F32, LEAKY) => $f::<F32, LEAKY>($($arg),*),
            (OutKind::F32, _) => $f::<F32, CLIP>($($arg),*),
            (OutKind::I8, NONE) => $f::<I8, NONE>($($arg),*),
            (OutKind::I8, RELU) => $f::<I8, RELU>($($arg),*),
            (OutKind::I8, LEAKY) => $f::<I8, LEAKY>($($arg),*),
            (OutKind::I8, _) => match $row.requant.act {
                Activation::Clip { min, max } if min <= 0.0 && max >= 0.0 => {
                    $f::<I8, CLIP_INT>($($arg),*)
                }
                _ => $f::<I8, CLIP>($($arg),*),
            },
        }
    }};
}

/// Spills a tile to an [`Acc`] and stores it with the generic epilogue (edge tiles and
/// activations the vector code does not do).
#[inline(never)]
unsafe fn store_spilled(rows: &[[int32x4_t; 2]], t: &Tile) {
    let mut acc: Acc = [0; super::MR_MAX * NR_MAX];
    for (r, v) in rows.iter().enumerate() {
        vst1q_s32(acc.as_mut_ptr().add(r * NR_MAX), v[0]);
        vst1q_s32(acc.as_mut_ptr().add(r * NR_MAX + 4), v[1]);
    }
    store_acc(&acc, t, true);
}

/// Stores 4 rows of 4 columns (a whole tile; an activation other than `GENERIC`).
#[inline(always)]
unsafe fn store_4x4<const K: u8, const A: u8>(sums: [int32x4_t; 4], e: &Epi, t: &Tile) {
    debug_assert!(A != GENERIC && t.rows == 4 && t.cols == 4);
    match K {
        I32 => {
            for (r, &v) in sums.iter().enumerate() {
                vst1q_s32((t.out as *mut i32).add(r * t.stride), v);
            }
        }
        F32 => {
            for (r, y) in e.dequant4::<K, A>(sums, 0).into_iter().enumerate() {
                vst1q_f32((t.out as *mut f32).add(r * t.stride), y);
            }
        }
        _ => {
            let b = vreinterpretq_u32_s8(e.requant16(e.dequant4::<K, A>(sums, 0)));
            let dst = |r: usize| t.out.add(r * t.stride) as *mut u32;
            dst(0).write_unaligned(vgetq_lane_u32::<0>(b));
            dst(1).write_unaligned(vgetq_lane_u32::<1>(b));
            dst(2).write_unaligned(vgetq_lane_u32::<2>(b));
            dst(3).write_unaligned(vgetq_lane_u32::<3>(b));
        }
    }
}

/// Stores 8 rows of 8 columns (a whole tile; an activation other than `GENERIC`).
#[inline(always)]
unsafe fn store_8x8<const K: u8, const A: u8>(c: &[[int32x4_t; 2]; 8], e: &Epi, t: &Tile) {
    debug_assert!(A != GENERIC && t.rows == 8 && t.cols == 8);
    if K == I32 {
        for (r, v) in c.iter().enumerate() {
            let dst = (t.out as *mut i32).add(r * t.stride);
            vst1q_s32(dst, v[0]);
            vst1q_s32(dst.add(4), v[1]);
        }
        return;
    }
    for half in 0..2 {
        let rows = &c[4 * half..4 * half + 4];
        let left = e.dequant4::<K, A>(std::array::from_fn(|r| rows[r][0]), half);
        let right = e.dequant4::<K, A>(std::array::from_fn(|r| rows[r][1]), half);
        if K == F32 {
            for r in 0..4 {
                let dst = (t.out as *mut f32).add((4 * half + r) * t.stride);
                vst1q_f32(dst, left[r]);
                vst1q_f32(dst.add(4), right[r]);
            }
        } else {
            // Rows 0..4 of the left and right halves, then zipped into 8-byte rows.
            let l = vreinterpretq_u32_s8(e.requant16(left));
            let r = vreinterpretq_u32_s8(e.requant16(right));
            let lo = vreinterpretq_u64_u32(vzip1q_u32(l, r));
            let hi = vreinterpretq_u64_u32(vzip2q_u32(l, r));
            let dst = |row: usize| t.out.add((4 * half + row) * t.stride) as *mut u64;
            dst(0).write_unaligned(vgetq_lane_u64::<0>(lo));
            dst(1).write_unaligned(vgetq_lane_u64::<1>(lo));
            dst(2).write_unaligned(vgetq_lane_u64::<0>(hi));
            dst(3).write_unaligned(vgetq_lane_u64::<1>(hi));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Cortex-A72: Pairs32, 4 x 4

/// One output of the INT8 A72 kernel: A row register `$a`, B column register `$b`, temporary
/// `$t`, accumulator `$c`.
macro_rules! int8_mac {
    ($a:literal, $b:literal, $t:literal, $c:literal) => {
        concat!(
            "smull  v", $t, ".8h, v", $a, ".8b, v", $b, ".8b\n", "smlal2 v", $t, ".8h, v", $a,
            ".16b, v", $b, ".16b\n", "sadalp v", $c, ".4s, v", $t, ".8h\n",
        )
    };
}

/// Half a step (16 k) of the INT8 A72 kernel at byte offset `$o` of each row / column slot.
macro_rules! int8_a72_half {
    ($o0:literal, $o1:literal, $o2:literal, $o3:literal) => {
        concat!(
            "ldr q0, [{a}, #",
            $o0,
            "]\n",
            "ldr q4, [{b}, #",
            $o0,
            "]\n",
            "ldr q1, [{a}, #",
            $o1,
            "]\n",
            "ldr q5, [{b}, #",
            $o1,
            "]\n",
            "ldr q2, [{a}, #",
            $o2,
            "]\n",
            "ldr q6, [{b}, #",
            $o2,
            "]\n",
            "ldr q3, [{a}, #",
            $o3,
            "]\n",
            "ldr q7, [{b}, #",
            $o3,
            "]\n",
            int8_mac!("0", "4", "8", "16"),
            int8_mac!("0", "5", "9", "17"),
            int8_mac!("0", "6", "10", "18"),
            int8_mac!("0", "7", "11", "19"),
            int8_mac!("1", "4", "12", "20"),
            int8_mac!("1", "5", "13", "21"),
            int8_mac!("1", "6", "14", "22"),
            int8_mac!("1", "7", "15", "23"),
            int8_mac!("2", "4", "8", "24"),
            int8_mac!("2", "5", "9", "25"),
            int8_mac!("2", "6", "10", "26"),
            int8_mac!("2", "7", "11", "27"),
            int8_mac!("3", "4", "12", "28"),
            int8_mac!("3", "5", "13", "29"),
            int8_mac!("3", "6", "14", "30"),
            int8_mac!("3", "7", "15", "31"),
        )
    };
}

/// Zeroes the 16 accumulators v16..v31.
macro_rules! zero_acc {
    () => {
        concat!(
            "movi v16.4s, #0\n",
            "movi v17.4s, #0\n",
            "movi v18.4s, #0\n",
            "movi v19.4s, #0\n",
            "movi v20.4s, #0\n",
            "movi v21.4s, #0\n",
            "movi v22.4s, #0\n",
            "movi v23.4s, #0\n",
            "movi v24.4s, #0\n",
            "movi v25.4s, #0\n",
            "movi v26.4s, #0\n",
            "movi v27.4s, #0\n",
            "movi v28.4s, #0\n",
            "movi v29.4s, #0\n",
            "movi v30.4s, #0\n",
            "movi v31.4s, #0\n",
        )
    };
}

/// Runs `$body` (a K loop over `{a}`, `{b}`, `{k}` that leaves its sums in v16..v31) and
/// returns those 16 accumulators.
macro_rules! k_loop {
    ($a:expr, $b:expr, $kp:expr, $body:expr, $($clobber:tt),*) => {{
        let (c0, c1, c2, c3, c4, c5, c6, c7): (int32x4_t, int32x4_t, int32x4_t, int32x4_t, int32x4_t, int32x4_t, int32x4_t, int32x4_t);
        let (c8, c9, c10, c11, c12, c13, c14, c15): (int32x4_t, int32x4_t, int32x4_t, int32x4_t, int32x4_t, int32x4_t, int32x4_t, int32x4_t);
        std::arch::asm!(
            "// scratch register {n}",
            zero_acc!(),
            $body,
            a = inout(reg) $a => _,
            b = inout(reg) $b => _,
            k = inout(reg) $kp => _,
            n = out(reg) _,
            $(out($clobber) _,)*
            out("v16") c0, out("v17") c1, out("v18") c2, out("v19") c3,
            out("v20") c4, out("v21") c5, out("v22") c6, out("v23") c7,
            out("v24") c8, out("v25") c9, out("v26") c10, out("v27") c11,
            out("v28") c12, out("v29") c13, out("v30") c14, out("v31") c15,
            options(nostack, readonly),
        );
        [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15]
    }};
}

/// Accumulators v16..v31 as `[row][column]` (4 x 4, lanes along K) summed over their lanes:
/// three `addp` per row (written out: the compiler turns the second level into `uzp` pairs,
/// which cost the A72 three times as much).
#[inline(always)]
unsafe fn reduce_4x4(c: [int32x4_t; 16]) -> [int32x4_t; 4] {
    std::array::from_fn(|r| {
        let row = &c[4 * r..4 * r + 4];
        let out: int32x4_t;
        std::arch::asm!(
            "addp {t0:v}.4s, {a:v}.4s, {b:v}.4s",
            "addp {t1:v}.4s, {c:v}.4s, {d:v}.4s",
            "addp {o:v}.4s, {t0:v}.4s, {t1:v}.4s",
            a = in(vreg) row[0],
            b = in(vreg) row[1],
            c = in(vreg) row[2],
            d = in(vreg) row[3],
            t0 = out(vreg) _,
            t1 = out(vreg) _,
            o = lateout(vreg) out,
            options(pure, nomem, nostack),
        );
        out
    })
}

/// # Safety
/// See [`super::Kernel`].
unsafe fn int8_a72(kp: usize, a: *const u8, b: *const u8, panels: usize, row: &Tile) {
    dispatch!(row, int8_a72_run, kp, a, b, panels, row)
}

#[inline(always)]
unsafe fn int8_a72_run<const K: u8, const A: u8>(
    kp: usize,
    a: *const u8,
    b: *const u8,
    panels: usize,
    row: &Tile,
) {
    let e = Epi::new(row, 4);
    // Whole tiles first: their store has no branch after the K loop.
    let full = if row.rows == 4 && A != GENERIC {
        row.cols / 4
    } else {
        0
    };
    for jp in 0..full {
        let c = int8_a72_sums(kp, a, b.add(jp * kp * 128));
        let t = &row.panel(jp, 4);
        store_4x4::<K, A>(reduce_4x4(c), &e, t);
    }
    for jp in full..panels {
        let c = int8_a72_sums(kp, a, b.add(jp * kp * 128));
        let t = &row.panel(jp, 4);
        store_spilled(&reduce_4x4(c).map(|s| [s, vdupq_n_s32(0)]), t);
    }
}

/// The accumulators v16..v31 of one tile of `int8_a72`.
#[inline(always)]
unsafe fn int8_a72_sums(kp: usize, a: *const u8, b: *const u8) -> [int32x4_t; 16] {
    k_loop!(
        a,
        b,
        kp,
        concat!(
            "1:\n",
            int8_a72_half!("0", "32", "64", "96"),
            int8_a72_half!("16", "48", "80", "112"),
            "add {a}, {a}, #128\n",
            "add {b}, {b}, #128\n",
            "subs {k}, {k}, #1\n",
            "b.ne 1b\n",
        ),
        "v0",
        "v1",
        "v2",
        "v3",
        "v4",
        "v5",
        "v6",
        "v7",
        "v8",
        "v9",
        "v10",
        "v11",
        "v12",
        "v13",
        "v14",
        "v15"
    )
}

/// One output of the INT7 A72 kernel: `p = a_even + b_odd`, `q = a_odd + b_even`, then
/// `Σ p·q` (2 per int16 lane) into accumulator `$c`. A row `$r` is in v(2r) (even k) and
/// v(2r+1) (odd k); the B column in v8 (even) and v9 (odd); `$p`, `$q`, `$t` temporaries.
macro_rules! int7_mac {
    ($ae:literal, $ao:literal, $p:literal, $q:literal, $t:literal, $c:literal) => {
        concat!(
            "add    v",
            $p,
            ".16b, v",
            $ae,
            ".16b, v9.16b\n",
            "add    v",
            $q,
            ".16b, v",
            $ao,
            ".16b, v8.16b\n",
            "smull  v",
            $t,
            ".8h, v",
            $p,
            ".8b, v",
            $q,
            ".8b\n",
            "smlal2 v",
            $t,
            ".8h, v",
            $p,
            ".16b, v",
            $q,
            ".16b\n",
            "sadalp v",
            $c,
            ".4s, v",
            $t,
            ".8h\n",
        )
    };
}

/// The K loop of the A72 pair-sum kernels: per pair of k, A's 8 rows (v0..v7, 16 bytes
/// each) against B's four column slots, each by `$col` (`int7_a72_col` on int8 operands,
/// `wino16_col` on int16 ones).
macro_rules! a72_pair_loop {
    ($col:ident) => {
        concat!(
            "1:\n",
            "ldr q0, [{a}]\n",
            "ldr q1, [{a}, #16]\n",
            "ldr q2, [{a}, #32]\n",
            "ldr q3, [{a}, #48]\n",
            "ldr q4, [{a}, #64]\n",
            "ldr q5, [{a}, #80]\n",
            "ldr q6, [{a}, #96]\n",
            "ldr q7, [{a}, #112]\n",
            $col!("0", "16", "16", "20", "24", "28"),
            $col!("32", "48", "17", "21", "25", "29"),
            $col!("64", "80", "18", "22", "26", "30"),
            $col!("96", "112", "19", "23", "27", "31"),
            "add {a}, {a}, #128\n",
            "add {b}, {b}, #128\n",
            "subs {k}, {k}, #1\n",
            "b.ne 1b\n",
        )
    };
}

/// Column `j` (B slot at byte `$o`) of one INT7 A72 step: accumulators v(16 + 4r + j).
macro_rules! int7_a72_col {
    ($o:literal, $oo:literal, $c0:literal, $c1:literal, $c2:literal, $c3:literal) => {
        concat!(
            "ldr q8, [{b}, #",
            $o,
            "]\n",
            "ldr q9, [{b}, #",
            $oo,
            "]\n",
            int7_mac!("0", "1", "10", "11", "12", $c0),
            int7_mac!("2", "3", "13", "14", "15", $c1),
            int7_mac!("4", "5", "10", "11", "12", $c2),
            int7_mac!("6", "7", "13", "14", "15", $c3),
        )
    };
}

/// # Safety
/// See [`super::Kernel`]; values within ±63 (INT7).
unsafe fn int7_a72(kp: usize, a: *const u8, b: *const u8, panels: usize, row: &Tile) {
    dispatch!(row, int7_a72_run, kp, a, b, panels, row)
}

#[inline(always)]
unsafe fn int7_a72_run<const K: u8, const A: u8>(
    kp: usize,
    a: *const u8,
    b: *const u8,
    panels: usize,
    row: &Tile,
) {
    let e = Epi::new(row, 4);
    // Whole tiles first: their store has no branch after the K loop.
    let full = if row.rows == 4 && A != GENERIC {
        row.cols / 4
    } else {
        0
    };
    for jp in 0..full {
        let t = &row.panel(jp, 4);
        let c = int7_a72_sums(kp, a, b.add(jp * kp * 128), t);
        store_4x4::<K, A>(c, &e, t);
    }
    for jp in full..panels {
        let t = &row.panel(jp, 4);
        let c = int7_a72_sums(kp, a, b.add(jp * kp * 128), t);
        store_spilled(&c.map(|s| [s, vdupq_n_s32(0)]), t);
    }
}

/// The four rows of column sums of one tile of `int7_a72`: the accumulators v16..v31 summed
/// over their lanes, less the row and column pair terms.
#[inline(always)]
unsafe fn int7_a72_sums(kp: usize, a: *const u8, b: *const u8, t: &Tile) -> [int32x4_t; 4] {
    let c = k_loop!(
        a,
        b,
        kp,
        a72_pair_loop!(int7_a72_col),
        "v0",
        "v1",
        "v2",
        "v3",
        "v4",
        "v5",
        "v6",
        "v7",
        "v8",
        "v9",
        "v10",
        "v11",
        "v12",
        "v13",
        "v14",
        "v15"
    );
    let cols = vld1q_s32(t.col_sums);
    let rows = vld1q_s32(t.row_sums);
    let s = reduce_4x4(c);
    [
        vsubq_s32(vsubq_s32(s[0], cols), vdupq_laneq_s32::<0>(rows)),
        vsubq_s32(vsubq_s32(s[1], cols), vdupq_laneq_s32::<1>(rows)),
        vsubq_s32(vsubq_s32(s[2], cols), vdupq_laneq_s32::<2>(rows)),
        vsubq_s32(vsubq_s32(s[3], cols), vdupq_laneq_s32::<3>(rows)),
    ]
}

// ---------------------------------------------------------------------------------------
// Cortex-A72, int16 operands: the transform-domain products of the Winograd convolution

/// One output of [`wino16_a72`]: `p = a_even + b_odd`, `q = a_odd + b_even` (int16 lanes,
/// exact: |a| + |b| ≤ 18288 + 12700 < 32768), then `Σ p·q` straight into int32 accumulator
/// `$c` (4 lanes per `smlal`, each lane a pair of k).
#[rustfmt::skip]
macro_rules! wino16_mac {
    ($ae:literal, $ao:literal, $c:literal) => {
        concat!(
            "add    v10.8h, v", $ae, ".8h, v9.8h\n",
            "add    v11.8h, v", $ao, ".8h, v8.8h\n",
            "smlal  v", $c, ".4s, v10.4h, v11.4h\n",
            "smlal2 v", $c, ".4s, v10.8h, v11.8h\n",
        )
    };
}

/// Column `j` (B slot at byte `$o`) of one [`wino16_a72`] step: accumulators v(16 + 4r + j).
#[rustfmt::skip]
macro_rules! wino16_col {
    ($o:literal, $oo:literal, $c0:literal, $c1:literal, $c2:literal, $c3:literal) => {
        concat!(
            "ldr q8, [{b}, #", $o, "]\n",
            "ldr q9, [{b}, #", $oo, "]\n",
            wino16_mac!("0", "1", $c0),
            wino16_mac!("2", "3", $c1),
            wino16_mac!("4", "5", $c2),
            wino16_mac!("6", "7", $c3),
        )
    };
}

/// Where a batch of [`wino16_a72`] products lives: for each of `n` positions ξ (strides in
/// bytes for A and B, in int32 for the rest) and each of `quads` quads of 4 rows, 8 columns
/// in two B panels (4 columns each, `kp · 128` bytes apart).
pub struct Wino16Batch {
    pub n: usize,
    pub a_stride: usize,
    pub b_stride: usize,
    pub out_stride: usize,
    pub rows_stride: usize,
    pub cols_stride: usize,
    pub quads: usize,
    pub a_quad: usize,
    pub out_quad: usize,
    pub rows_quad: usize,
    /// Output row stride (int32).
    pub out_row: usize,
}

/// Raw int32 products of int16 operands for the Winograd convolution on the Cortex-A72, 4 x
/// 4 tiles, K in steps of 16 stored even k first (positions 0..8 hold k 0, 2, …, 14, as
/// [`Layout::Pairs32`] does with bytes): the pair-sum identity
/// `Σ a·b = Σ (a₂ᵢ + b₂ᵢ₊₁)(a₂ᵢ₊₁ + b₂ᵢ) − Σ a₂ᵢa₂ᵢ₊₁ − Σ b₂ᵢb₂ᵢ₊₁` halves the multiplies
/// (8 MACs per `smlal` instead of 4 by element), the additions go to the second NEON pipe.
/// Everything wraps modulo 2³², which the Winograd scheme wants. One call runs a whole
/// batch (every ξ), so the register saves and setup happen once.
///
/// # Safety
/// Every A panel holds `kp` steps of 4 rows (128 bytes each) and every B block two panels of
/// `kp` steps, followed by readable bytes to the step's end; `rows` / `cols` hold the pair
/// terms (4 per quad, 8 per ξ); `out` 4 rows of 8 int32 per quad and ξ.
#[allow(clippy::too_many_arguments)]
pub unsafe fn wino16_a72(
    kp: usize,
    a: *const u8,
    b: *const u8,
    out: *mut i32,
    rows: *const i32,
    cols: *const i32,
    batch: &Wino16Batch,
) {
    for xi in 0..batch.n {
        let (a, b) = (a.add(xi * batch.a_stride), b.add(xi * batch.b_stride));
        let cols = cols.add(xi * batch.cols_stride);
        for q in 0..batch.quads {
            let a = a.add(q * batch.a_quad);
            let rows = vld1q_s32(rows.add(xi * batch.rows_stride + q * batch.rows_quad));
            let out = out.add(xi * batch.out_stride + q * batch.out_quad);
            for tq in 0..2 {
                let c = k_loop!(
                    a,
                    b.add(tq * kp * 128),
                    kp,
                    a72_pair_loop!(wino16_col),
                    "v0",
                    "v1",
                    "v2",
                    "v3",
                    "v4",
                    "v5",
                    "v6",
                    "v7",
                    "v8",
                    "v9",
                    "v10",
                    "v11"
                );
                let cv = vld1q_s32(cols.add(4 * tq));
                let s = reduce_4x4(c);
                let dst = out.add(4 * tq);
                vst1q_s32(
                    dst,
                    vsubq_s32(vsubq_s32(s[0], cv), vdupq_laneq_s32::<0>(rows)),
                );
                vst1q_s32(
                    dst.add(batch.out_row),
                    vsubq_s32(vsubq_s32(s[1], cv), vdupq_laneq_s32::<1>(rows)),
                );
                vst1q_s32(
                    dst.add(2 * batch.out_row),
                    vsubq_s32(vsubq_s32(s[2], cv), vdupq_laneq_s32::<2>(rows)),
                );
                vst1q_s32(
                    dst.add(3 * batch.out_row),
                    vsubq_s32(vsubq_s32(s[3], cv), vdupq_laneq_s32::<3>(rows)),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Cortex-A53: Wide16, 8 x 8

/// One k of the INT8 kernel: `smlal` / `smlal2` of B register `$b` (8 columns) by the 8 lanes
/// (rows) of A register `$a` into v16..v31, with the next k (byte offset `$o`) loaded into
/// (`$nb`, `$na`) right after the first two multiplies, where the in-order core pairs the
/// loads with them.
#[rustfmt::skip]
macro_rules! int8_k {
    ($b:literal, $a:literal, $nb:literal, $na:literal, $o:literal) => {
        concat!(
            "smlal  v16.4s, v", $b, ".4h, v", $a, ".h[0]\n",
            "ldr    q", $na, ", [{a}, #", $o, "]\n",
            "smlal2 v17.4s, v", $b, ".8h, v", $a, ".h[0]\n",
            "ldr    q", $nb, ", [{b}, #", $o, "]\n",
            "smlal  v18.4s, v", $b, ".4h, v", $a, ".h[1]\n",
            "smlal2 v19.4s, v", $b, ".8h, v", $a, ".h[1]\n",
            "smlal  v20.4s, v", $b, ".4h, v", $a, ".h[2]\n",
            "smlal2 v21.4s, v", $b, ".8h, v", $a, ".h[2]\n",
            "smlal  v22.4s, v", $b, ".4h, v", $a, ".h[3]\n",
            "smlal2 v23.4s, v", $b, ".8h, v", $a, ".h[3]\n",
            "smlal  v24.4s, v", $b, ".4h, v", $a, ".h[4]\n",
            "smlal2 v25.4s, v", $b, ".8h, v", $a, ".h[4]\n",
            "smlal  v26.4s, v", $b, ".4h, v", $a, ".h[5]\n",
            "smlal2 v27.4s, v", $b, ".8h, v", $a, ".h[5]\n",
            "smlal  v28.4s, v", $b, ".4h, v", $a, ".h[6]\n",
            "smlal2 v29.4s, v", $b, ".8h, v", $a, ".h[6]\n",
            "smlal  v30.4s, v", $b, ".4h, v", $a, ".h[7]\n",
            "smlal2 v31.4s, v", $b, ".8h, v", $a, ".h[7]\n",
        )
    };
}

/// Rows as `[[cols 0..4, cols 4..8]; 8]` from accumulators v16..v31.
#[inline(always)]
fn rows_8x8(c: [int32x4_t; 16]) -> [[int32x4_t; 2]; 8] {
    std::array::from_fn(|r| [c[2 * r], c[2 * r + 1]])
}

/// # Safety
/// See [`super::Kernel`] (`kp` pairs of k).
unsafe fn int8_a53(kp: usize, a: *const u8, b: *const u8, panels: usize, row: &Tile) {
    dispatch!(row, int8_a53_run, kp, a, b, panels, row)
}

#[inline(always)]
unsafe fn int8_a53_run<const K: u8, const A: u8>(
    kp: usize,
    a: *const u8,
    b: *const u8,
    panels: usize,
    row: &Tile,
) {
    let e = Epi::new(row, 8);
    // Whole tiles first: their store has no branch after the K loop.
    let full = if row.rows == 8 && A != GENERIC {
        row.cols / 8
    } else {
        0
    };
    for jp in 0..full {
        let c = int8_a53_sums(kp, a, b.add(jp * kp * 32));
        let t = &row.panel(jp, 8);
        store_8x8::<K, A>(&rows_8x8(c), &e, t);
    }
    for jp in full..panels {
        let c = int8_a53_sums(kp, a, b.add(jp * kp * 32));
        let t = &row.panel(jp, 8);
        store_spilled(&rows_8x8(c), t);
    }
}

/// The accumulators v16..v31 of one tile of `int8_a53`.
#[inline(always)]
unsafe fn int8_a53_sums(kp: usize, a: *const u8, b: *const u8) -> [int32x4_t; 16] {
    k_loop!(
        a,
        b,
        kp,
        concat!(
            "ldr q0, [{a}]\n",
            "ldr q1, [{b}]\n",
            // An odd pair, then an odd two pairs, then four pairs (8 k) per iteration: the
            // in-order cores issue two instructions a cycle, so the loop's pointer and count
            // updates cost as much as four multiply-adds.
            "tbz {k}, #0, 1f\n",
            int8_k!("1", "0", "3", "2", "16"),
            int8_k!("3", "2", "1", "0", "32"),
            "add {a}, {a}, #32\n",
            "add {b}, {b}, #32\n",
            "1:\n",
            "tbz {k}, #1, 3f\n",
            int8_k!("1", "0", "3", "2", "16"),
            int8_k!("3", "2", "1", "0", "32"),
            int8_k!("1", "0", "3", "2", "48"),
            int8_k!("3", "2", "1", "0", "64"),
            "add {a}, {a}, #64\n",
            "add {b}, {b}, #64\n",
            "3:\n",
            "lsr {k}, {k}, #2\n",
            "cbz {k}, 2f\n",
            "4:\n",
            int8_k!("1", "0", "3", "2", "16"),
            int8_k!("3", "2", "1", "0", "32"),
            int8_k!("1", "0", "3", "2", "48"),
            int8_k!("3", "2", "1", "0", "64"),
            int8_k!("1", "0", "3", "2", "80"),
            int8_k!("3", "2", "1", "0", "96"),
            int8_k!("1", "0", "3", "2", "112"),
            int8_k!("3", "2", "1", "0", "128"),
            "add {a}, {a}, #128\n",
            "add {b}, {b}, #128\n",
            "subs {k}, {k}, #1\n",
            "b.ne 4b\n",
            "2:\n",
        ),
        "v0",
        "v1",
        "v2",
        "v3"
    )
}

/// Raw int32 products of int16 operands on the Cortex-A53 for the Winograd convolution: the
/// [`Layout::Wide16`] 8 x 8 INT8 K loop run for `n` positions ξ in one call (A and B `kp` pairs
/// of k each, `a_stride` / `b_stride` bytes apart; out 8 rows of 8 int32 per ξ, `out_stride`
/// int32 apart), so the register saves, the epilogue dispatch and the tile set-up of a
/// kernel call happen once rather than per ξ. Everything wraps modulo 2³², which the Winograd
/// scheme wants.
///
/// # Safety
/// Every A and B panel holds `kp` pairs of k plus [`super::OVERREAD`] readable bytes; `out`
/// holds `n` blocks of 64 int32 at its stride.
pub unsafe fn wide16_a53_batch(
    kp: usize,
    (a, a_stride): (*const u8, usize),
    (b, b_stride): (*const u8, usize),
    (out, out_stride): (*mut i32, usize),
    n: usize,
) {
    for xi in 0..n {
        let c = int8_a53_sums(kp, a.add(xi * a_stride), b.add(xi * b_stride));
        let dst = out.add(xi * out_stride);
        for (i, v) in c.iter().enumerate() {
            vst1q_s32(dst.add(4 * i), *v);
        }
    }
}

/// One k of the INT7 kernel: `$op` (`mul` or `mla`) of B `$b` by the lanes of A `$a` into the
/// int16 accumulators v4..v11, with the next k (byte offset `$o`) loaded into (`$nb`, `$na`)
/// right after the first two multiplies.
#[rustfmt::skip]
macro_rules! int7_k {
    ($op:literal, $b:literal, $a:literal, $nb:literal, $na:literal, $o:literal) => {
        concat!(
            $op, " v4.8h, v", $b, ".8h, v", $a, ".h[0]\n",
            "ldr q", $na, ", [{a}, #", $o, "]\n",
            $op, " v5.8h, v", $b, ".8h, v", $a, ".h[1]\n",
            "ldr q", $nb, ", [{b}, #", $o, "]\n",
            $op, " v6.8h, v", $b, ".8h, v", $a, ".h[2]\n",
            $op, " v7.8h, v", $b, ".8h, v", $a, ".h[3]\n",
            $op, " v8.8h, v", $b, ".8h, v", $a, ".h[4]\n",
            $op, " v9.8h, v", $b, ".8h, v", $a, ".h[5]\n",
            $op, " v10.8h, v", $b, ".8h, v", $a, ".h[6]\n",
            $op, " v11.8h, v", $b, ".8h, v", $a, ".h[7]\n",
        )
    };
}

/// Eight k of the INT7 kernel (the next k loaded at byte offsets `$o..`): a `mul` then seven
/// `mla`, at most 8 products of ±63 per int16 lane before [`int7_flush`].
#[rustfmt::skip]
macro_rules! int7_group {
    ($o1:literal, $o2:literal, $o3:literal, $o4:literal, $o5:literal, $o6:literal, $o7:literal, $o8:literal) => {
        concat!(
            int7_k!("mul", "1", "0", "3", "2", $o1),
            int7_k!("mla", "3", "2", "1", "0", $o2),
            int7_k!("mla", "1", "0", "3", "2", $o3),
            int7_k!("mla", "3", "2", "1", "0", $o4),
            int7_k!("mla", "1", "0", "3", "2", $o5),
            int7_k!("mla", "3", "2", "1", "0", $o6),
            int7_k!("mla", "1", "0", "3", "2", $o7),
            int7_k!("mla", "3", "2", "1", "0", $o8),
        )
    };
}

/// Widens the int16 accumulators v4..v11 into the int32 ones v16..v31, as multiply-adds by
/// v12.h[0] = 1: the in-order cores issue `smlal` by element two a cycle and `saddw` one
/// (LLVM's Cortex-A55 model; the A53 model charges `saddw` more too).
#[rustfmt::skip]
macro_rules! int7_flush {
    () => {
        concat!(
            "smlal  v16.4s, v4.4h, v12.h[0]\n", "smlal2 v17.4s, v4.8h, v12.h[0]\n",
            "smlal  v18.4s, v5.4h, v12.h[0]\n", "smlal2 v19.4s, v5.8h, v12.h[0]\n",
            "smlal  v20.4s, v6.4h, v12.h[0]\n", "smlal2 v21.4s, v6.8h, v12.h[0]\n",
            "smlal  v22.4s, v7.4h, v12.h[0]\n", "smlal2 v23.4s, v7.8h, v12.h[0]\n",
            "smlal  v24.4s, v8.4h, v12.h[0]\n", "smlal2 v25.4s, v8.8h, v12.h[0]\n",
            "smlal  v26.4s, v9.4h, v12.h[0]\n", "smlal2 v27.4s, v9.8h, v12.h[0]\n",
            "smlal  v28.4s, v10.4h, v12.h[0]\n", "smlal2 v29.4s, v10.8h, v12.h[0]\n",
            "smlal  v30.4s, v11.4h, v12.h[0]\n", "smlal2 v31.4s, v11.8h, v12.h[0]\n",
        )
    };
}

/// # Safety
/// See [`super::Kernel`] (`kp` pairs of k); values within ±63.
unsafe fn int7_a53(kp: usize, a: *const u8, b: *const u8, panels: usize, row: &Tile) {
    dispatch!(row, int7_a53_run, kp, a, b, panels, row)
}

#[inline(always)]
unsafe fn int7_a53_run<const K: u8, const A: u8>(
    kp: usize,
    a: *const u8,
    b: *const u8,
    panels: usize,
    row: &Tile,
) {
    let e = Epi::new(row, 8);
    // Whole tiles first: their store has no branch after the K loop.
    let full = if row.rows == 8 && A != GENERIC {
        row.cols / 8
    } else {
        0
    };
    for jp in 0..full {
        let c = int7_a53_sums(kp, a, b.add(jp * kp * 32));
        let t = &row.panel(jp, 8);
        store_8x8::<K, A>(&rows_8x8(c), &e, t);
    }
    for jp in full..panels {
        let c = int7_a53_sums(kp, a, b.add(jp * kp * 32));
        let t = &row.panel(jp, 8);
        store_spilled(&rows_8x8(c), t);
    }
}

/// The accumulators v16..v31 of one tile of `int7_a53`.
#[inline(always)]
unsafe fn int7_a53_sums(kp: usize, a: *const u8, b: *const u8) -> [int32x4_t; 16] {
    k_loop!(
        a,
        b,
        kp,
        concat!(
            "ldr q0, [{a}]\n",
            "ldr q1, [{b}]\n",
            "movi v12.8h, #1\n",
            // Whole groups of 4 pairs (8 k, 8 products per int16 lane), unrolled: an odd
            // group, then two per iteration (the loop's own instructions take issue slots).
            "cmp {k}, #4\n",
            "b.lo 3f\n",
            "tbz {k}, #2, 5f\n",
            int7_group!("16", "32", "48", "64", "80", "96", "112", "128"),
            "add {a}, {a}, #128\n",
            "add {b}, {b}, #128\n",
            int7_flush!(),
            "5:\n",
            "lsr {n}, {k}, #3\n",
            "cbz {n}, 6f\n",
            "1:\n",
            int7_group!("16", "32", "48", "64", "80", "96", "112", "128"),
            int7_flush!(),
            int7_group!("144", "160", "176", "192", "208", "224", "240", "256"),
            "add {a}, {a}, #256\n",
            "add {b}, {b}, #256\n",
            int7_flush!(),
            "subs {n}, {n}, #1\n",
            "b.ne 1b\n",
            "6:\n",
            "and {k}, {k}, #3\n",
            // The last 1..3 pairs.
            "3:\n",
            "cbz {k}, 4f\n",
            "movi v4.8h, #0\n",
            "movi v5.8h, #0\n",
            "movi v6.8h, #0\n",
            "movi v7.8h, #0\n",
            "movi v8.8h, #0\n",
            "movi v9.8h, #0\n",
            "movi v10.8h, #0\n",
            "movi v11.8h, #0\n",
            "2:\n",
            int7_k!("mla", "1", "0", "3", "2", "16"),
            int7_k!("mla", "3", "2", "1", "0", "32"),
            "add {a}, {a}, #32\n",
            "add {b}, {b}, #32\n",
            "subs {k}, {k}, #1\n",
            "b.ne 2b\n",
            int7_flush!(),
            "4:\n",
        ),
        "v0",
        "v1",
        "v2",
        "v3",
        "v4",
        "v5",
        "v6",
        "v7",
        "v8",
        "v9",
        "v10",
        "v11",
        "v12"
    )
}

// ---------------------------------------------------------------------------------------
// Packing

/// Columns `c..c + 16` of 16 rows, transposed: element `[j][i]` is `rows[i][c + j]`.
///
/// # Safety
/// Every row must hold at least `c + 16` bytes.
#[inline]
pub unsafe fn transpose16(rows: &[&[i8]; 16], c: usize) -> [[u8; 16]; 16] {
    let r: [uint8x16_t; 16] =
        std::array::from_fn(|i| vld1q_u8(rows[i].as_ptr().add(c) as *const u8));
    // Four rounds of transposes of 1-, 2-, 4- and 8-byte elements between rows i and i + d.
    let mut s = r;
    for i in (0..16).step_by(2) {
        let (x, y) = (s[i], s[i + 1]);
        s[i] = vtrn1q_u8(x, y);
        s[i + 1] = vtrn2q_u8(x, y);
    }
    // Reinterpreting casts of whole arrays (array `map` can be left out of line).
    let mut u: [uint16x8_t; 16] = std::mem::transmute(s);
    for base in (0..16).step_by(4) {
        for i in base..base + 2 {
            let (x, y) = (u[i], u[i + 2]);
            u[i] = vtrn1q_u16(x, y);
            u[i + 2] = vtrn2q_u16(x, y);
        }
    }
    let mut w: [uint32x4_t; 16] = std::mem::transmute(u);
    for base in (0..16).step_by(8) {
        for i in base..base + 4 {
            let (x, y) = (w[i], w[i + 4]);
            w[i] = vtrn1q_u32(x, y);
            w[i + 4] = vtrn2q_u32(x, y);
        }
    }
    let mut d: [uint64x2_t; 16] = std::mem::transmute(w);
    for i in 0..8 {
        let (x, y) = (d[i], d[i + 8]);
        d[i] = vtrn1q_u64(x, y);
        d[i + 8] = vtrn2q_u64(x, y);
    }
    let mut out = [[0u8; 16]; 16];
    for (o, v) in out.iter_mut().zip(d) {
        vst1q_u8(o.as_mut_ptr(), vreinterpretq_u8_u64(v));
    }
    out
}
