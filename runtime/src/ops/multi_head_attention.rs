//! MultiHeadAttention (PyTorch's `nn.MultiheadAttention` at inference, as ncnn's layer):
//! `Q = (q Wq^T + bq) * scale`, `K = k Wk^T + bk`, `V = v Wv^T + bv`, per head
//! `softmax(Q K^T + mask) V`, heads concatenated, then `out Wo^T + bo`.
//!
//! Params: `0 = embed_dim`, `1 = num_heads` (default 1), `2 = weight_data_size`
//! (`embed_dim * qdim`), `3 = kdim`, `4 = vdim` (default embed_dim), `5 = attn_mask`,
//! `6 = scale` (default `1 / sqrt(embed_dim / num_heads)`, the division in integers as ncnn),
//! `7 = kv_cache` and `18 = int8_scale_term` (both refused: not supported).
//!
//! Weights, in order: Wq (`embed_dim x qdim`, tagged), bq (`embed_dim` raw), Wk
//! (`embed_dim x kdim`), bk, Wv (`embed_dim x vdim`), bv, Wo (`qdim x embed_dim`), bo (`qdim`).
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
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, WeightReader};
use crate::pool::Pool;
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
    /// The q (scaled), k, v and output projections packed for the GEMM kernel.
    pub packed: [PackedA; 4],
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
        if pd.int(18, 0)? != 0 {
            return Err(invalid("int8 MultiHeadAttention (param 18) is not supported").into());
        }
        let qdim = size / embed_dim;
        let mut proj = |rows: usize, cols: usize, what: &str| -> Result<(Floats, Floats)> {
            let weight = w.tagged(rows * cols, what)?.into_f32().map_err(invalid)?;
            Ok((weight, w.raw(rows, what)?))
        };
        let q = proj(embed_dim, qdim, "q")?;
        let k = proj(embed_dim, kdim, "k")?;
        let v = proj(embed_dim, vdim, "v")?;
        let out = proj(qdim, embed_dim, "out")?;
        let packed = [
            pack(&q.0, &q.1, qdim, scale),
            pack(&k.0, &k.1, kdim, 1.0),
            pack(&v.0, &v.1, vdim, 1.0),
            pack(&out.0, &out.1, embed_dim, 1.0),
        ];
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
            fast_min_work: FAST_MIN_WORK,
        })
    }

    /// (rows) of each projection's input: q and out per query, k and v per key.
    fn proj_rows(src: usize, dst: usize) -> [usize; 4] {
        [src, dst, dst, src]
    }

    /// Whether projection `i` over `rows` rows runs on the packed kernel.
    fn fast(&self, i: usize, rows: usize) -> bool {
        let p = &self.packed[i];
        rows * p.m() * p.k() >= self.fast_min_work
    }

    /// Scratch of the packed projections: (shared transposes, per-worker kernel panels).
    fn packed_scratch(&self, src: usize, dst: usize) -> (usize, usize) {
        let mut shared = 0;
        let mut worker = 0;
        for (i, rows) in Self::proj_rows(src, dst).into_iter().enumerate() {
            if self.fast(i, rows) {
                let p = &self.packed[i];
                shared = shared.max((p.k() + p.m()) * rows);
                worker = worker.max(p.scratch_len(rows));
            }
        }
        (shared, worker)
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
                2 * e * src + 2 * e * dst + self.num_heads * src * dst + shared + worker
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
        let (shared, _) = self.packed_scratch(src, dst);
        let (tmp, worker) = rest.split_at_mut(shared);
        let pool = ctx.pool;
        let mut run = |i: usize, x: &[f32], cols: usize, dst_buf: &mut [f32]| -> LayerResult<()> {
            let rows = x.len() / cols;
            if self.fast(i, rows) {
                return project_packed(&self.packed[i], x, dst_buf, tmp, pool, worker);
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
                if self.attn_mask {
                    let mask = inputs[n];
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
        assert!(z(&[(0, 8), (2, 64), (18, 1)]).is_err());
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
