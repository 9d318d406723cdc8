//! MultiHeadAttention (PyTorch's `nn.MultiheadAttention` at inference, as ncnn's layer):
//! `Q = (q Wq^T + bq) * scale`, `K = k Wk^T + bk`, `V = v Wv^T + bv`, per head
//! `softmax(Q K^T + mask) V`, heads concatenated, then `out Wo^T + bo`.
//!
//! Params: `0 = embed_dim`, `1 = num_heads` (default 1), `2 = weight_data_size`
//! (`embed_dim * qdim`), `3 = kdim`, `4 = vdim` (default embed_dim), `5 = attn_mask`,
//! `6 = scale` (default `1 / sqrt(embed_dim / num_heads)`, the division in integers as ncnn),
//! `7 = kv_cache` (refused: not supported), `18 = int8_scale_term` (values 4..6 and ≥ 400,
//! ncnn's weight-block quantization, refused).
//!
//! Weights, in order: Wq (`embed_dim x qdim`, tagged), bq (`embed_dim` raw), Wk
//! (`embed_dim x kdim`), bk, Wv (`embed_dim x vdim`), bv, Wo (`qdim x embed_dim`), bo (`qdim`);
//! with int8_scale_term the four weights are int8-tagged and followed by the raw per-row
//! scales of Wq, Wk, Wv (`embed_dim` each) and one scale of Wo.
//!
//! int8 form (as ncnn, whatever its int8 option): every product is exact in i32 on operands
//! quantized with `127 / max|x|` (1 when all zero), rounded half away from zero and clamped
//! to ±127, and dequantized with `1 / (scale_a * scale_b)`: the projections' inputs q, k, v
//! with one scale each, Q per query and head times K with one scale per head, the softmax
//! probabilities per query and head times V with one scale per head, the attended rows per
//! query times Wo. Biases are added after dequantization, Q is scaled after its bias. The
//! projections' sums come from `kernels::gemm_i8` (weights packed at load) from
//! [`super::gemm::FAST_MIN_WORK`] multiply-adds, bit-identical to the plain i32 loops.
//!
//! Inputs: q (2-D, `qdim` wide, one row per query); then k and v (`kdim` / `vdim` wide, the
//! same number of rows): one input means k = v = q, two mean v = k; with `attn_mask` a last
//! input added to the scores: 2-D (`keys` wide, `queries` high) or 3-D with one such matrix
//! per head. Output: 2-D, `qdim` wide, one row per query.
//!
//! The four projections also run on the packed fp32 GEMM kernel (weights packed at load, q's
//! with the scale folded in) when they have at least [`super::gemm::FAST_MIN_WORK`]
//! multiply-adds; the plain loops are the reference they are tested against.

use super::activation::Activation;
use super::gemm::FAST_MIN_WORK;
use super::{Ctx, Op};
use crate::error::{invalid, LayerResult, Result};
use crate::kernels::gemm_f32::{self, DenseB, Kernel, PackedA};
use crate::kernels::gemm_i8::{self, DenseB8, KernelSet, PackedA8};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, Int8s, Tagged, WeightReader};
use crate::pool::Pool;
use crate::quant::quantize;
use crate::quant::Precision;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Debug)]
pub struct MultiHeadAttention {
    pub embed_dim: usize,
    pub num_heads: usize,
    pub qdim: usize,
    pub kdim: usize,
    pub vdim: usize,
    pub attn_mask: bool,
    pub scale: f32,
    /// (weight, bias) of the q, k, v and output projections.
    pub q: (Floats, Floats),
    pub k: (Floats, Floats),
    pub v: (Floats, Floats),
    pub out: (Floats, Floats),
    /// The q (scaled), k, v and output projections packed for the GEMM kernel (fp32 form).
    pub packed: Option<[PackedA; 4]>,
    /// The int8 form's weights (q, k, v, out; biases stay in `q` .. `out`) and their scales.
    pub int8: Option<([Int8s; 4], [Vec<f32>; 4])>,
    /// The int8 weights packed for `kernels::gemm_i8`.
    pub int8_packed: Option<[PackedA8; 4]>,
    /// Multiply-adds from which a projection runs on the packed kernel.
    pub fast_min_work: usize,
}

/// Packs `w` (`rows x cols`) and `bias`, both times `scale`.
fn pack(w: &[f32], bias: &[f32], cols: usize, scale: f32) -> PackedA {
    let ws: Vec<f32> = w.iter().map(|v| v * scale).collect();
    let bs: Vec<f32> = bias.iter().map(|v| v * scale).collect();
    PackedA::new(Kernel::best(), &ws, bias.len(), cols, Some(&bs))
}

impl MultiHeadAttention {
    pub fn new(pd: &ParamDict, w: &mut WeightReader) -> Result<MultiHeadAttention> {
        let embed_dim = pd.usize(0, 0)?;
        let num_heads = pd.usize(1, 1)?;
        let size = pd.usize(2, 0)?;
        let kdim = pd.usize(3, embed_dim)?;
        let vdim = pd.usize(4, embed_dim)?;
        let attn_mask = match pd.int(5, 0)? {
            0 => false,
            1 => true,
            v => {
                return Err(invalid(format!("attn_mask (param 5) must be 0 or 1, got {v}")).into())
            }
        };
        if embed_dim == 0 || num_heads == 0 || embed_dim % num_heads != 0 {
            return Err(invalid(format!(
                "embed_dim (param 0) = {embed_dim} must be a positive multiple of num_heads (param 1) = {num_heads}"
            ))
            .into());
        }
        if size == 0 || size % embed_dim != 0 {
            return Err(invalid(format!(
                "weight_data_size (param 2) = {size} must be a positive multiple of embed_dim {embed_dim}"
            ))
            .into());
        }
        if kdim == 0 || vdim == 0 {
            return Err(invalid("kdim (param 3) and vdim (param 4) must be positive").into());
        }
        let scale = pd.float(6, 1.0 / ((embed_dim / num_heads) as f32).sqrt())?;
        if !scale.is_finite() {
            return Err(invalid(format!("scale (param 6) must be finite, got {scale}")).into());
        }
        if pd.int(7, 0)? != 0 {
            return Err(invalid("kv_cache (param 7) is not supported").into());
        }
        let int8_term = pd.int(18, 0)?;
        if !(0..400).contains(&int8_term) || (4..=6).contains(&int8_term) {
            return Err(invalid(format!(
                "int8_scale_term (param 18) {int8_term} is not supported (0..399 except 4..6)"
            ))
            .into());
        }
        let int8 = int8_term != 0;
        let qdim = size / embed_dim;
        let zeros = w.is_zeros();
        let mut stored = Vec::new();
        let mut proj = |rows: usize, cols: usize, what: &str| -> Result<(Floats, Floats)> {
            let n = rows
                .checked_mul(cols)
                .filter(|&n| n <= crate::tensor::MAX_ELEMENTS)
                .ok_or_else(|| invalid(format!("{what} weights {rows} x {cols} are too large")))?;
            let weight = match w.tagged(n, what)? {
                Tagged::I8(q) if int8 => {
                    stored.push(q);
                    Floats::owned(Vec::new())
                }
                Tagged::F32(_) if int8 && zeros => {
                    stored.push(Int8s::Owned(vec![0; n].into()));
                    Floats::owned(Vec::new())
                }
                Tagged::F32(_) if int8 => {
                    return Err(invalid(format!(
                        "int8 MultiHeadAttention (param 18) needs int8-tagged {what} weights"
                    ))
                    .into())
                }
                other => other.into_f32().map_err(invalid)?,
            };
            Ok((weight, w.raw(rows, what)?))
        };
        let q = proj(embed_dim, qdim, "q")?;
        let k = proj(embed_dim, kdim, "k")?;
        let v = proj(embed_dim, vdim, "v")?;
        let out = proj(qdim, embed_dim, "out")?;
        let (packed, int8) = if int8 {
            let mut scales = |n: usize, what: &str| -> Result<Vec<f32>> {
                Ok(match zeros {
                    true => vec![1.0; n],
                    false => w.raw(n, what)?.to_vec(),
                })
            };
            let sc = [
                scales(embed_dim, "q int8 scales")?,
                scales(embed_dim, "k int8 scales")?,
                scales(embed_dim, "v int8 scales")?,
                scales(1, "out int8 scale")?,
            ];
            let ws: [Int8s; 4] = stored.try_into().expect("four projections");
            (None, Some((ws, sc)))
        } else {
            let packed = [
                pack(&q.0, &q.1, qdim, scale),
                pack(&k.0, &k.1, kdim, 1.0),
                pack(&v.0, &v.1, vdim, 1.0),
                pack(&out.0, &out.1, embed_dim, 1.0),
            ];
            (Some(packed), None)
        };
        Ok(MultiHeadAttention {
            embed_dim,
            num_heads,
            qdim,
            kdim,
            vdim,
            attn_mask,
            scale,
            q,
            k,
            v,
            out,
            packed,
            int8_packed: int8.as_ref().map(|(w8, _)| {
                let set = KernelSet::best(Precision::Int8);
                [
                    PackedA8::new(set, &w8[0], embed_dim, qdim),
                    PackedA8::new(set, &w8[1], embed_dim, kdim),
                    PackedA8::new(set, &w8[2], embed_dim, vdim),
                    PackedA8::new(set, &w8[3], qdim, embed_dim),
                ]
            }),
            int8,
            fast_min_work: FAST_MIN_WORK,
        })
    }

    /// (rows) of each projection's input: q and out per query, k and v per key.
    fn proj_rows(src: usize, dst: usize) -> [usize; 4] {
        [src, dst, dst, src]
    }

    /// Whether projection `i` over `rows` rows runs on the packed kernel.
    fn fast(&self, i: usize, rows: usize) -> bool {
        let Some(packed) = &self.packed else {
            return false;
        };
        let p = &packed[i];
        rows * p.m() * p.k() >= self.fast_min_work
    }

    /// Scratch of the packed projections: (shared transposes, per-worker kernel panels).
    fn packed_scratch(&self, src: usize, dst: usize) -> (usize, usize) {
        let mut shared = 0;
        let mut worker = 0;
        for (i, rows) in Self::proj_rows(src, dst).into_iter().enumerate() {
            if let (true, Some(packed)) = (self.fast(i, rows), &self.packed) {
                let p = &packed[i];
                shared = shared.max((p.k() + p.m()) * rows);
                worker = worker.max(p.scratch_len(rows));
            }
        }
        (shared, worker)
    }

    /// Bytes of the int8 form's two operand buffers, floats of its scales, its i32 sums.
    fn int8_lens(&self, src: usize, dst: usize) -> (usize, usize, usize, usize) {
        let (e, hd) = (self.embed_dim, self.embed_dim / self.num_heads);
        let proj = [src * self.qdim, dst * self.kdim, dst * self.vdim, src * e];
        let proj = proj.into_iter().max().unwrap_or(0);
        let acc = (src * e).max(dst * e).max(src * self.qdim);
        (proj.max(src * dst), proj.max(dst * hd), src.max(dst), acc)
    }

    /// Whether projection `p` over `rows` rows runs on the int8 kernel.
    fn int8_fast(&self, p: usize, rows: usize) -> Option<&PackedA8> {
        let packed = &self.int8_packed.as_ref()?[p];
        (rows * packed.m() * packed.k() >= self.fast_min_work).then_some(packed)
    }

    /// Per-worker scratch of the int8 kernel's projections.
    fn int8_worker(&self, src: usize, dst: usize) -> usize {
        let rows = Self::proj_rows(src, dst);
        (0..4)
            .filter_map(|p| self.int8_fast(p, rows[p]).map(|k| k.scratch_len(rows[p])))
            .max()
            .unwrap_or(0)
    }

    /// Exact sums of `x8` (`rows x cols`) with projection `p`'s weight rows: in `acc` as
    /// `rows x n` from the loop, or `n x rows` from the int8 kernel (returns true; `xt`
    /// holds x8 transposed).
    #[allow(clippy::too_many_arguments)]
    fn proj_sums(
        &self,
        p: usize,
        x8: &[i8],
        cols: usize,
        w8: &[i8],
        xt: &mut [i8],
        acc: &mut [i32],
        pool: &Pool,
        worker: &mut [f32],
    ) -> LayerResult<bool> {
        let rows = x8.len() / cols;
        let n = w8.len() / cols;
        if let Some(packed) = self.int8_fast(p, rows) {
            for (i, row) in x8.chunks_exact(cols).enumerate() {
                for (c, &v) in row.iter().enumerate() {
                    xt[c * rows + i] = v;
                }
            }
            let b = DenseB8 {
                data: &xt[..rows * cols],
                n: rows,
            };
            gemm_i8::gemm_i32(packed, &b, rows, &mut acc[..n * rows], pool, worker)?;
            return Ok(true);
        }
        for (xrow, arow) in x8.chunks_exact(cols).zip(acc.chunks_exact_mut(n)) {
            for (a, wrow) in arow.iter_mut().zip(w8.chunks_exact(cols)) {
                *a = xrow
                    .iter()
                    .zip(wrow)
                    .map(|(&x, &y)| x as i32 * y as i32)
                    .sum();
            }
        }
        Ok(false)
    }

    /// Scratch floats of the int8 form (none in fp32).
    fn int8_scratch(&self, src: usize, dst: usize) -> usize {
        if self.int8.is_none() {
            return 0;
        }
        let (a, b, s, acc) = self.int8_lens(src, dst);
        a.div_ceil(4) + b.div_ceil(4) + s + acc + self.int8_worker(src, dst)
    }

    /// The int8 form (see the module doc), plain loops.
    #[allow(clippy::too_many_arguments)]
    fn forward_int8(
        &self,
        w8: &[Int8s; 4],
        ws: &[Vec<f32>; 4],
        [q_in, k_in, v_in]: [&[f32]; 3],
        mask: Option<Tensor>,
        [q, k, v, scores, attended]: [&mut [f32]; 5],
        bufs: Int8Bufs,
        out: &mut [f32],
        (src, dst): (usize, usize),
        pool: &Pool,
    ) -> LayerResult<()> {
        let (e, heads) = (self.embed_dim, self.num_heads);
        let hd = e / heads;
        let Int8Bufs {
            a,
            b,
            scales,
            acc,
            worker,
        } = bufs;
        // Projections of q, k, v: each input with one scale, weights per row.
        let projections = [
            (q_in, self.qdim, &mut *q),
            (k_in, self.kdim, k),
            (v_in, self.vdim, v),
        ];
        for (p, (x, cols, dst_buf)) in projections.into_iter().enumerate() {
            let sx = dynamic_scale(x.iter().copied());
            let x8 = &mut a[..x.len()];
            for (d, &s) in x8.iter_mut().zip(x) {
                *d = quantize(s, sx, 127);
            }
            let bias = [&self.q.1, &self.k.1, &self.v.1][p];
            let t = self.proj_sums(p, x8, cols, &w8[p], b, acc, pool, worker)?;
            let rows = x.len() / cols;
            for (i, orow) in dst_buf.chunks_exact_mut(e).enumerate() {
                for (j, o) in orow.iter_mut().enumerate() {
                    let sum = if t { acc[j * rows + i] } else { acc[i * e + j] };
                    let v = sum as f32 * (1.0 / (ws[p][j] * sx)) + bias[j];
                    *o = if p == 0 { v * self.scale } else { v };
                }
            }
        }
        for h in 0..heads {
            let head = &mut scores[h * src * dst..(h + 1) * src * dst];
            // Q per query, K with one scale for the head.
            for (i, s) in scales[..src].iter_mut().enumerate() {
                let row = &q[i * e + h * hd..][..hd];
                *s = dynamic_scale(row.iter().copied());
                for (d, &x) in a[i * hd..(i + 1) * hd].iter_mut().zip(row) {
                    *d = quantize(x, *s, 127);
                }
            }
            let kh = (0..dst).flat_map(|j| k[j * e + h * hd..][..hd].iter().copied());
            let sk = dynamic_scale(kh);
            for j in 0..dst {
                for (d, &x) in b[j * hd..(j + 1) * hd].iter_mut().zip(&k[j * e + h * hd..]) {
                    *d = quantize(x, sk, 127);
                }
            }
            let sq = &scales[..src];
            let descale = |i: usize, _: usize| 1.0 / (sq[i] * sk);
            product_int8(
                &a[..src * hd],
                hd,
                &b[..dst * hd],
                descale,
                None,
                None,
                head,
            );
            for (i, row) in head.chunks_exact_mut(dst).enumerate() {
                masked_softmax(row, mask.as_ref(), src, h, i);
            }
            // Probabilities per query, V^T of the head with one scale.
            for (i, s) in scales[..src].iter_mut().enumerate() {
                let row = &head[i * dst..(i + 1) * dst];
                *s = dynamic_scale(row.iter().copied());
                for (d, &x) in a[i * dst..(i + 1) * dst].iter_mut().zip(row) {
                    *d = quantize(x, *s, 127);
                }
            }
            let vh = (0..dst).flat_map(|j| v[j * e + h * hd..][..hd].iter().copied());
            let sv = dynamic_scale(vh);
            for jj in 0..hd {
                for kk in 0..dst {
                    b[jj * dst + kk] = quantize(v[kk * e + h * hd + jj], sv, 127);
                }
            }
            let sp = &scales[..src];
            for i in 0..src {
                let prow = &a[i * dst..(i + 1) * dst];
                for jj in 0..hd {
                    let vcol = &b[jj * dst..(jj + 1) * dst];
                    let sum: i32 = prow
                        .iter()
                        .zip(vcol)
                        .map(|(&x, &y)| x as i32 * y as i32)
                        .sum();
                    attended[i * e + h * hd + jj] = sum as f32 * (1.0 / (sp[i] * sv));
                }
            }
        }
        // Output projection: the attended rows per query, Wo with one scale.
        for (i, s) in scales[..src].iter_mut().enumerate() {
            let row = &attended[i * e..(i + 1) * e];
            *s = dynamic_scale(row.iter().copied());
            for (d, &x) in a[i * e..(i + 1) * e].iter_mut().zip(row) {
                *d = quantize(x, *s, 127);
            }
        }
        let so = ws[3][0];
        let qdim = self.qdim;
        let t = self.proj_sums(3, &a[..src * e], e, &w8[3], b, acc, pool, worker)?;
        for (i, orow) in out.chunks_exact_mut(qdim).enumerate() {
            for (j, o) in orow.iter_mut().enumerate() {
                let sum = if t {
                    acc[j * src + i]
                } else {
                    acc[i * qdim + j]
                };
                *o = sum as f32 * (1.0 / (so * scales[i])) + self.out.1[j];
            }
        }
        Ok(())
    }

    /// (queries, keys) after checking the inputs.
    fn seqlens(&self, inputs: &[Shape]) -> LayerResult<(usize, usize)> {
        let extra = self.attn_mask as usize;
        if inputs.len() < 1 + extra || inputs.len() > 3 + extra {
            return Err(invalid(format!(
                "expects 1 to 3 input blobs (q, k, v){}, got {}",
                if self.attn_mask { " and a mask" } else { "" },
                inputs.len()
            )));
        }
        let n = inputs.len() - extra;
        let (q, k, v) = (inputs[0], inputs[n.min(2) - 1], inputs[n - 1]);
        for (s, width, what) in [
            (q, self.qdim, "q"),
            (k, self.kdim, "k"),
            (v, self.vdim, "v"),
        ] {
            if s.dims != 2 || s.w != width {
                return Err(invalid(format!("{what} {s} must be 2-D and {width} wide")));
            }
        }
        if k.h != v.h {
            return Err(invalid(format!("k {k} and v {v} differ in rows")));
        }
        if self.attn_mask {
            let m = inputs[n];
            let ok =
                m.w == k.h && m.h == q.h && (m.dims == 2 || (m.dims == 3 && m.c == self.num_heads));
            if !ok {
                return Err(invalid(format!(
                    "attn_mask {m} must be {} wide and {} high, 2-D or 3-D with {} channels",
                    k.h, q.h, self.num_heads
                )));
            }
        }
        Ok((q.h, k.h))
    }
}

/// ncnn's dynamic quantization scale of values: `127 / max|x|`, 1 when all are zero.
fn dynamic_scale(x: impl Iterator<Item = f32>) -> f32 {
    let absmax = x.fold(0.0f32, |m, v| m.max(v.abs()));
    if absmax == 0.0 {
        1.0
    } else {
        127.0 / absmax
    }
}

/// Scratch of the int8 form: int8 operands, per-row scales, i32 sums, the int8 kernel's
/// worker slices.
struct Int8Bufs<'a> {
    a: &'a mut [i8],
    b: &'a mut [i8],
    scales: &'a mut [f32],
    acc: &'a mut [i32],
    worker: &'a mut [f32],
}

impl<'a> Int8Bufs<'a> {
    /// Splits `(a bytes, b bytes, scales, sums)` off the front of `rest`; the kernel gets
    /// the remainder.
    fn split(rest: &'a mut [f32], (a, b, s, acc): (usize, usize, usize, usize)) -> Int8Bufs<'a> {
        let (ab, rest) = rest.split_at_mut(a.div_ceil(4));
        let (bb, rest) = rest.split_at_mut(b.div_ceil(4));
        let (scales, rest) = rest.split_at_mut(s);
        let (acc_buf, worker) = rest.split_at_mut(acc);
        Int8Bufs {
            a: &mut bytemuck::cast_slice_mut(ab)[..a],
            b: &mut bytemuck::cast_slice_mut(bb)[..b],
            scales,
            acc: bytemuck::cast_slice_mut(acc_buf),
            worker,
        }
    }
}

/// `out[i][j] = Σ_k x8[i][k] w8[j][k] as f32 · descale(i, j) (+ bias[j]) (· scale)`, the
/// sum exact in i32; `x8` has `rows` rows of `cols`, `w8` `out.len() / rows` rows.
#[allow(clippy::too_many_arguments)]
fn product_int8(
    x8: &[i8],
    cols: usize,
    w8: &[i8],
    descale: impl Fn(usize, usize) -> f32,
    bias: Option<&[f32]>,
    scale: Option<f32>,
    out: &mut [f32],
) {
    let n = w8.len() / cols.max(1);
    for (i, (xrow, orow)) in x8
        .chunks_exact(cols)
        .zip(out.chunks_exact_mut(n))
        .enumerate()
    {
        for (j, (o, wrow)) in orow.iter_mut().zip(w8.chunks_exact(cols)).enumerate() {
            let sum: i32 = xrow
                .iter()
                .zip(wrow)
                .map(|(&a, &b)| a as i32 * b as i32)
                .sum();
            let mut v = sum as f32 * descale(i, j);
            if let Some(b) = bias {
                v += b[j];
            }
            if let Some(s) = scale {
                v *= s;
            }
            *o = v;
        }
    }
}

/// `out[i][j] = (bias[j] + Σ x[i][k] w[j][k]) * scale` for the rows of `x` (`cols` wide).
fn project(x: &[f32], cols: usize, (w, b): &(Floats, Floats), scale: f32, out: &mut [f32]) {
    let rows_out = b.len();
    for (xrow, orow) in x.chunks_exact(cols).zip(out.chunks_exact_mut(rows_out)) {
        for ((o, wrow), &bias) in orow.iter_mut().zip(w.chunks_exact(cols)).zip(b.iter()) {
            let mut sum = bias;
            for (a, b) in xrow.iter().zip(wrow) {
                sum += a * b;
            }
            *o = sum * scale;
        }
    }
}

/// `out (rows x packed.m()) = x (rows x packed.k()) · W^T + bias` on the packed kernel; `tmp`
/// holds x^T and the transposed result, `scratch` the kernel's worker slices.
fn project_packed(
    packed: &PackedA,
    x: &[f32],
    out: &mut [f32],
    tmp: &mut [f32],
    pool: &Pool,
    scratch: &mut [f32],
) -> LayerResult<()> {
    let (cols, n) = (packed.k(), packed.m());
    let rows = x.len() / cols;
    let (xt, rest) = tmp.split_at_mut(cols * rows);
    let yt = &mut rest[..n * rows];
    for (i, row) in x.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            xt[c * rows + i] = v;
        }
    }
    let b = DenseB { data: xt, n: rows };
    gemm_f32::gemm(packed, &b, rows, yt, Activation::None, pool, scratch)?;
    for (j, col) in yt.chunks_exact(rows).enumerate() {
        for (i, &v) in col.iter().enumerate() {
            out[i * n + j] = v;
        }
    }
    Ok(())
}

impl Op for MultiHeadAttention {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        let (src, _) = self.seqlens(inputs)?;
        Ok(vec![Shape::checked(2, self.qdim, src, 1, 1)?])
    }

    fn scratch_len(&self, inputs: &[Shape], _: &[Shape]) -> usize {
        match self.seqlens(inputs) {
            Ok((src, dst)) => {
                let e = self.embed_dim;
                let (shared, worker) = self.packed_scratch(src, dst);
                2 * e * src
                    + 2 * e * dst
                    + self.num_heads * src * dst
                    + shared
                    + worker
                    + self.int8_scratch(src, dst)
            }
            Err(_) => 0,
        }
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let mut shapes = [Shape::default(); 4];
        for (s, t) in shapes.iter_mut().zip(inputs) {
            *s = t.shape;
        }
        let (src, dst) = self.seqlens(&shapes[..inputs.len().min(4)])?;
        let n = inputs.len() - self.attn_mask as usize;
        let (q_in, k_in, v_in) = (inputs[0], inputs[n.min(2) - 1], inputs[n - 1]);
        let (e, heads) = (self.embed_dim, self.num_heads);
        let hd = e / heads;
        let need = self.scratch_len(&shapes[..inputs.len()], &[]);
        if ctx.scratch.len() < need {
            return Err(invalid("multi-head attention scratch too small"));
        }
        let (q, rest) = ctx.scratch.split_at_mut(e * src);
        let (k, rest) = rest.split_at_mut(e * dst);
        let (v, rest) = rest.split_at_mut(e * dst);
        let (scores, rest) = rest.split_at_mut(heads * src * dst);
        let (attended, rest) = rest.split_at_mut(e * src);
        if let Some((w8, ws)) = &self.int8 {
            let bufs = Int8Bufs::split(rest, self.int8_lens(src, dst));
            let mask = self.attn_mask.then(|| inputs[n]);
            let ins = [q_in.data, k_in.data, v_in.data];
            let f32s = [q, k, v, scores, attended];
            let (seq, pool) = ((src, dst), ctx.pool);
            return self.forward_int8(w8, ws, ins, mask, f32s, bufs, outputs[0].data, seq, pool);
        }
        let (shared, _) = self.packed_scratch(src, dst);
        let (tmp, worker) = rest.split_at_mut(shared);
        let pool = ctx.pool;
        let mut run = |i: usize, x: &[f32], cols: usize, dst_buf: &mut [f32]| -> LayerResult<()> {
            let rows = x.len() / cols;
            if let (true, Some(packed)) = (self.fast(i, rows), &self.packed) {
                return project_packed(&packed[i], x, dst_buf, tmp, pool, worker);
            }
            let (weights, scale) = match i {
                0 => (&self.q, self.scale),
                1 => (&self.k, 1.0),
                2 => (&self.v, 1.0),
                _ => (&self.out, 1.0),
            };
            project(x, cols, weights, scale, dst_buf);
            Ok(())
        };
        run(0, q_in.data, self.qdim, q)?;
        run(1, k_in.data, self.kdim, k)?;
        run(2, v_in.data, self.vdim, v)?;
        for h in 0..heads {
            let head = &mut scores[h * src * dst..(h + 1) * src * dst];
            for i in 0..src {
                let qrow = &q[i * e + h * hd..][..hd];
                let row = &mut head[i * dst..(i + 1) * dst];
                for (j, s) in row.iter_mut().enumerate() {
                    let krow = &k[j * e + h * hd..][..hd];
                    let mut sum = 0.0f32;
                    for (a, b) in qrow.iter().zip(krow) {
                        sum += a * b;
                    }
                    *s = sum;
                }
                masked_softmax(row, self.attn_mask.then(|| &inputs[n]), src, h, i);
                for jj in 0..hd {
                    let mut acc = 0.0f32;
                    for (kk, &p) in row.iter().enumerate() {
                        acc += p * v[kk * e + h * hd + jj];
                    }
                    attended[i * e + h * hd + jj] = acc;
                }
            }
        }
        run(3, attended, e, outputs[0].data)
    }
}

/// Adds query `i`'s row of the attention mask (head `h`'s `src` x `row.len()` plane of a 3-D
/// mask, the one plane of a 2-D mask) to the scores `row`, then turns them into
/// probabilities (softmax, max-subtracted). Shared by the fp32 and int8 paths.
fn masked_softmax(row: &mut [f32], mask: Option<&Tensor>, src: usize, h: usize, i: usize) {
    let dst = row.len();
    if let Some(mask) = mask {
        let plane = if mask.shape.dims == 3 {
            h * src * dst
        } else {
            0
        };
        let mrow = &mask.data[plane + i * dst..][..dst];
        row.iter_mut().zip(mrow).for_each(|(s, m)| *s += m);
    }
    let mut max = -f32::MAX;
    for &s in row.iter() {
        if max < s {
            max = s;
        }
    }
    let mut sum = 0.0f32;
    for s in row.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    row.iter_mut().for_each(|s| *s /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::Source;
    use crate::ops::harness::{assert_close, int, params, run};
    use std::sync::Arc;

    struct Weights {
        bytes: Vec<u8>,
        all: Vec<Vec<f32>>,
    }

    /// Random-ish projection weights in load order.
    fn weights(e: usize, qdim: usize, kdim: usize, vdim: usize) -> Weights {
        let mut bytes = Vec::new();
        let mut all = Vec::new();
        let mut seed = 0.0f32;
        for (rows, cols) in [(e, qdim), (e, kdim), (e, vdim), (qdim, e)] {
            let w: Vec<f32> = (0..rows * cols)
                .map(|i| ((i as f32 + seed) * 0.37).sin() * 0.5)
                .collect();
            let b: Vec<f32> = (0..rows)
                .map(|i| ((i as f32 + seed) * 0.91).cos() * 0.1)
                .collect();
            seed += 11.0;
            bytes.extend(0u32.to_le_bytes());
            bytes.extend(w.iter().flat_map(|v| v.to_le_bytes()));
            bytes.extend(b.iter().flat_map(|v| v.to_le_bytes()));
            all.push(w);
            all.push(b);
        }
        Weights { bytes, all }
    }

    /// f64 reference of the whole layer.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        w: &Weights,
        e: usize,
        heads: usize,
        scale: f64,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: Option<(&[f32], bool)>,
        dims: (usize, usize, usize),
    ) -> Vec<f32> {
        let (qdim, kdim, vdim) = dims;
        let lin = |x: &[f32], cols: usize, wi: usize, s: f64| -> Vec<f64> {
            let (wt, b) = (&w.all[wi], &w.all[wi + 1]);
            x.chunks(cols)
                .flat_map(|r| {
                    (0..b.len()).map(move |j| {
                        (b[j] as f64
                            + (0..cols)
                                .map(|c| r[c] as f64 * wt[j * cols + c] as f64)
                                .sum::<f64>())
                            * s
                    })
                })
                .collect()
        };
        let (qp, kp, vp) = (
            lin(q, qdim, 0, scale),
            lin(k, kdim, 2, 1.0),
            lin(v, vdim, 4, 1.0),
        );
        let (src, dst, hd) = (q.len() / qdim, k.len() / kdim, e / heads);
        let mut att = vec![0.0f32; src * e];
        for h in 0..heads {
            for i in 0..src {
                let mut s: Vec<f64> = (0..dst)
                    .map(|j| {
                        (0..hd)
                            .map(|l| qp[i * e + h * hd + l] * kp[j * e + h * hd + l])
                            .sum::<f64>()
                    })
                    .collect();
                if let Some((m, per_head)) = mask {
                    let off = if per_head { h * src * dst } else { 0 };
                    s.iter_mut()
                        .enumerate()
                        .for_each(|(j, x)| *x += m[off + i * dst + j] as f64);
                }
                let mx = s.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = s.iter().map(|x| (x - mx).exp()).sum();
                for l in 0..hd {
                    att[i * e + h * hd + l] = ((0..dst)
                        .map(|j| (s[j] - mx).exp() / z * vp[j * e + h * hd + l])
                        .sum::<f64>()) as f32;
                }
            }
        }
        lin(&att, e, 6, 1.0).iter().map(|&x| x as f32).collect()
    }

    fn data(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + seed) * 0.73).sin()).collect()
    }

    #[test]
    fn self_cross_and_masked_attention() {
        let (e, heads, qdim, kdim, vdim) = (8, 2, 6, 5, 3);
        let w = weights(e, qdim, kdim, vdim);
        let pd = |mask: i32| {
            params(&[
                (0, int(e as i32)),
                (1, int(heads as i32)),
                (2, int((e * qdim) as i32)),
                (3, int(kdim as i32)),
                (4, int(vdim as i32)),
                (5, int(mask)),
            ])
        };
        let load = |mask: i32| {
            let mut r = WeightReader::new(Arc::new(Source::from_bytes(&w.bytes)), "m.bin");
            let op = MultiHeadAttention::new(&pd(mask), &mut r).unwrap();
            r.finish().unwrap();
            op
        };
        let scale = 1.0 / 2.0f64; // 1 / sqrt(8 / 2)
        let (src, dst) = (4, 7);
        let (q, k, v) = (
            data(src * qdim, 0.0),
            data(dst * kdim, 3.0),
            data(dst * vdim, 5.0),
        );
        let ins = vec![
            (Shape::d2(qdim, src), q.clone()),
            (Shape::d2(kdim, dst), k.clone()),
            (Shape::d2(vdim, dst), v.clone()),
        ];
        let out = run(&load(0), &ins).unwrap();
        assert_eq!(out[0].0, Shape::d2(qdim, src));
        assert_close(
            &out[0].1,
            &reference(&w, e, heads, scale, &q, &k, &v, None, (qdim, kdim, vdim)),
            1e-5,
        );
        for per_head in [false, true] {
            let ms = if per_head {
                Shape::d3(dst, src, heads)
            } else {
                Shape::d2(dst, src)
            };
            let m = data(ms.len(), 9.0);
            let mut with_mask = ins.clone();
            with_mask.push((ms, m.clone()));
            let out = run(&load(1), &with_mask).unwrap();
            let want = reference(
                &w,
                e,
                heads,
                scale,
                &q,
                &k,
                &v,
                Some((&m, per_head)),
                (qdim, kdim, vdim),
            );
            assert_close(&out[0].1, &want, 1e-5);
        }
        // Self-attention (one input) needs qdim = kdim = vdim.
        let w = weights(e, e, e, e);
        let mut r = WeightReader::new(Arc::new(Source::from_bytes(&w.bytes)), "s.bin");
        let op =
            MultiHeadAttention::new(&params(&[(0, int(8)), (1, int(4)), (2, int(64))]), &mut r)
                .unwrap();
        let x = data(3 * e, 1.0);
        let out = run(&op, &[(Shape::d2(e, 3), x.clone())]).unwrap();
        let scale = 1.0 / 2.0f64.sqrt();
        assert_close(
            &out[0].1,
            &reference(&w, e, 4, scale, &x, &x, &x, None, (e, e, e)),
            1e-5,
        );
        let out2 = run(
            &op,
            &[(Shape::d2(e, 3), x.clone()), (Shape::d2(e, 3), x.clone())],
        )
        .unwrap();
        assert_close(&out2[0].1, &out[0].1, 1e-6);
    }

    #[test]
    fn packed_projections_agree_with_the_loops() {
        use crate::ops::harness::run_threads;
        for (e, heads, qdim, kdim, vdim, src, dst) in [
            (8, 2, 6, 5, 3, 4, 7),
            (64, 4, 48, 40, 72, 33, 17),
            (32, 1, 32, 32, 32, 1, 50),
        ] {
            let w = weights(e, qdim, kdim, vdim);
            let load = |min: usize| {
                let mut r = WeightReader::new(Arc::new(Source::from_bytes(&w.bytes)), "p.bin");
                let pd = params(&[
                    (0, int(e as i32)),
                    (1, int(heads as i32)),
                    (2, int((e * qdim) as i32)),
                    (3, int(kdim as i32)),
                    (4, int(vdim as i32)),
                    (5, int(1)),
                ]);
                let mut op = MultiHeadAttention::new(&pd, &mut r).unwrap();
                op.fast_min_work = min;
                op
            };
            let ins = vec![
                (Shape::d2(qdim, src), data(src * qdim, 0.0)),
                (Shape::d2(kdim, dst), data(dst * kdim, 1.0)),
                (Shape::d2(vdim, dst), data(dst * vdim, 2.0)),
                (Shape::d3(dst, src, heads), data(dst * src * heads, 3.0)),
            ];
            let want = run(&load(usize::MAX), &ins).unwrap();
            for threads in [1, 2] {
                let got = run_threads(&load(0), &ins, threads).unwrap();
                assert_close(&got[0].1, &want[0].1, 1e-5);
            }
        }
    }

    /// int8 weights (per-row scales for q, k, v; one for out) quantized from `w`'s, in load
    /// order; returns the bytes and the dequantized fp32 weights in `Weights::all` order.
    fn int8_weights(w: &Weights, e: usize, dims: [usize; 3]) -> (Vec<u8>, Vec<Vec<f32>>) {
        let mut bytes = Vec::new();
        let mut scales = Vec::new();
        let mut deq = Vec::new();
        for (p, cols) in [dims[0], dims[1], dims[2], e].into_iter().enumerate() {
            let (wf, b) = (&w.all[2 * p], &w.all[2 * p + 1]);
            let rows = b.len();
            let absmax = |r: &[f32]| r.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let s: Vec<f32> = match p {
                3 => vec![127.0 / absmax(wf)],
                _ => wf.chunks(cols).map(|r| 127.0 / absmax(r)).collect(),
            };
            let at = |i: usize| s[if p == 3 { 0 } else { i / cols }];
            let q: Vec<i8> = (0..rows * cols)
                .map(|i| quantize(wf[i], at(i), 127))
                .collect();
            bytes.extend(0x000D_4B38u32.to_le_bytes());
            bytes.extend(q.iter().map(|&x| x as u8));
            bytes.resize(bytes.len().next_multiple_of(4), 0);
            bytes.extend(b.iter().flat_map(|v| v.to_le_bytes()));
            deq.push((0..rows * cols).map(|i| q[i] as f32 / at(i)).collect());
            deq.push(b.clone());
            scales.push(s);
        }
        for s in scales {
            bytes.extend(s.iter().flat_map(|v| v.to_le_bytes()));
        }
        (bytes, deq)
    }

    #[test]
    fn int8_by_hand() {
        // One dimension, one head: q = 0.5 quantizes to 127 (scale 254); V = 127 * 2 / (4 *
        // 254) + 0.5 = 0.75; the one probability and V re-quantize to 127 each, so the
        // attended value is 0.75 again; out = 127 * 3 / (6 * 127 / 0.75) + 1 = 1.375.
        let mut bytes = Vec::new();
        for (wq, bias) in [(1i8, 0.0f32), (1, 0.0), (2, 0.5), (3, 1.0)] {
            bytes.extend(0x000D_4B38u32.to_le_bytes());
            bytes.extend([wq as u8, 0, 0, 0]);
            bytes.extend(bias.to_le_bytes());
        }
        for s in [1.0f32, 1.0, 4.0, 6.0] {
            bytes.extend(s.to_le_bytes());
        }
        let mut r = WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "m.bin");
        let pd = params(&[(0, int(1)), (2, int(1)), (18, int(1))]);
        let op = MultiHeadAttention::new(&pd, &mut r).unwrap();
        r.finish().unwrap();
        let out = run(&op, &[(Shape::d2(1, 1), vec![0.5])]).unwrap();
        assert_close(&out[0].1, &[1.375], 1e-6);
    }

    #[test]
    fn int8_follows_the_float_layer() {
        // Cross-attention with a per-head mask: int8 stays within quantization noise of the
        // fp32 layer on the dequantized weights.
        let (e, heads, qdim, kdim, vdim, src, dst) = (8, 2, 6, 5, 7, 4, 6);
        let w = weights(e, qdim, kdim, vdim);
        let (bytes, deq) = int8_weights(&w, e, [qdim, kdim, vdim]);
        let pairs = |int8: i32| {
            params(&[
                (0, int(e as i32)),
                (1, int(heads as i32)),
                (2, int((e * qdim) as i32)),
                (3, int(kdim as i32)),
                (4, int(vdim as i32)),
                (5, int(1)),
                (18, int(int8)),
            ])
        };
        let mut r = WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "m.bin");
        let op8 = MultiHeadAttention::new(&pairs(1), &mut r).unwrap();
        r.finish().unwrap();
        let mut fbytes = Vec::new();
        for (i, x) in deq.iter().enumerate() {
            if i % 2 == 0 {
                fbytes.extend(0u32.to_le_bytes());
            }
            fbytes.extend(x.iter().flat_map(|v| v.to_le_bytes()));
        }
        let mut r = WeightReader::new(Arc::new(Source::from_bytes(&fbytes)), "m.bin");
        let op32 = MultiHeadAttention::new(&pairs(0), &mut r).unwrap();
        r.finish().unwrap();
        let ins = [
            (Shape::d2(qdim, src), data(qdim * src, 1.0)),
            (Shape::d2(kdim, dst), data(kdim * dst, 2.0)),
            (Shape::d2(vdim, dst), data(vdim * dst, 3.0)),
            (Shape::d3(dst, src, heads), data(dst * src * heads, 4.0)),
        ];
        let got = run(&op8, &ins).unwrap();
        let want = run(&op32, &ins).unwrap();
        let max = want[0].1.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (g, w) in got[0].1.iter().zip(&want[0].1) {
            assert!((g - w).abs() <= 0.03 * max, "{g} vs {w}");
        }
        assert_ne!(got[0].1, want[0].1);
    }

    #[test]
    fn int8_kernel_agrees_with_the_loops() {
        use crate::ops::harness::run_threads;
        for (e, heads, qdim, kdim, vdim, src, dst) in
            [(16, 2, 12, 20, 9, 9, 11), (8, 1, 8, 8, 8, 1, 1)]
        {
            let w = weights(e, qdim, kdim, vdim);
            let (bytes, _) = int8_weights(&w, e, [qdim, kdim, vdim]);
            let pd = params(&[
                (0, int(e as i32)),
                (1, int(heads)),
                (2, int((e * qdim) as i32)),
                (3, int(kdim as i32)),
                (4, int(vdim as i32)),
                (5, int(1)),
                (18, int(1)),
            ]);
            let load = |min: usize| {
                let mut r = WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "m.bin");
                let mut op = MultiHeadAttention::new(&pd, &mut r).unwrap();
                r.finish().unwrap();
                op.fast_min_work = min;
                op
            };
            let (fast, slow) = (load(0), load(usize::MAX));
            assert!(fast.int8_fast(0, src).is_some() && slow.int8_fast(0, src).is_none());
            let ins = [
                (Shape::d2(qdim, src), data(qdim * src, 1.0)),
                (Shape::d2(kdim, dst), data(kdim * dst, 2.0)),
                (Shape::d2(vdim, dst), data(vdim * dst, 3.0)),
                (Shape::d2(dst, src), data(dst * src, 4.0)),
            ];
            let want = run(&slow, &ins).unwrap();
            for threads in [1, 2, 3] {
                assert_eq!(run_threads(&fast, &ins, threads).unwrap(), want);
            }
        }
    }

    #[test]
    fn errors() {
        let z = |pairs: &[(usize, i32)]| {
            let p: Vec<_> = pairs.iter().map(|&(k, v)| (k, int(v))).collect();
            MultiHeadAttention::new(&params(&p), &mut WeightReader::zeros())
        };
        assert!(z(&[(0, 8), (1, 2), (2, 64)]).is_ok());
        assert!(z(&[(0, 8), (1, 3), (2, 64)]).is_err());
        assert!(z(&[(0, 8), (1, 2), (2, 60)]).is_err());
        assert!(z(&[(0, 0), (2, 64)]).is_err());
        assert!(z(&[(0, 8), (2, 64), (5, 2)]).is_err());
        assert!(z(&[(0, 8), (2, 64), (7, 1)]).is_err());
        assert!(z(&[(0, 8), (2, 64), (18, 1)]).is_ok());
        for term in [-1, 4, 6, 400] {
            assert!(z(&[(0, 8), (2, 64), (18, term)]).is_err());
        }
        // int8 needs int8-tagged weights.
        let w = weights(2, 2, 2, 2);
        let mut r = WeightReader::new(Arc::new(Source::from_bytes(&w.bytes)), "m.bin");
        let pd = params(&[(0, int(2)), (2, int(4)), (18, int(1))]);
        assert!(MultiHeadAttention::new(&pd, &mut r).is_err());
        let op = z(&[(0, 8), (1, 2), (2, 64), (5, 1)]).unwrap();
        let x = Shape::d2(8, 3);
        assert!(op.output_shapes(&[x]).is_err());
        assert!(op.output_shapes(&[]).is_err());
        assert!(op.output_shapes(&[x, Shape::d2(3, 3)]).is_ok());
        assert!(op.output_shapes(&[x, Shape::d3(3, 3, 3)]).is_err());
        assert!(op.output_shapes(&[x, Shape::d2(4, 3)]).is_err());
        assert!(op
            .output_shapes(&[Shape::d2(7, 3), Shape::d2(3, 3)])
            .is_err());
        let op = z(&[(0, 8), (1, 2), (2, 64)]).unwrap();
        assert!(op
            .output_shapes(&[x, Shape::d2(8, 4), Shape::d2(8, 5)])
            .is_err());
        assert!(op.output_shapes(&[x, x, x, x]).is_err());
    }
}
