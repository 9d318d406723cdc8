//! MatMul: matrix product of two blobs with batch dimensions broadcast, as ncnn's MatMul
//! (numpy `matmul` semantics on ncnn's w / h / d / c axes).
//!
//! Params: `0 = transB` (B holds `N x K` rows instead of `K x N`).
//!
//! Forms (A with `M x K` = h x w, B with `K x N`, or `N x K` under transB):
//! * 1-D x 1-D: dot product, a 1-D blob of one value.
//! * 2-D x 2-D: `N` wide, `M` high. 1-D A is one row: a 1-D result of `N`. 1-D B is one
//!   column whatever transB: a 1-D result of `M`.
//! * 1-D A x 3-D / 4-D B: one row times every matrix of B: `N x c` (2-D) / `N x d x c` (3-D).
//!   3-D / 4-D A x 1-D B: `M x c` / `M x d x c`.
//! * Otherwise the batch axes line up from the inside, numpy style (a 3-D operand's `c` is the
//!   `d` axis of a 4-D result), each equal or 1 (repeated): 3-D or 4-D results `N x M x batch`.
//!
//! Fast path: when one matrix product (`M x N x K`, M and N above 1) has at least
//! [`super::gemm::FAST_MIN_WORK`] multiply-adds, each batch runs on the packed fp32 GEMM
//! kernel: A's matrix packed into the op's scratch (`PackedA::pack_into`), B read in place
//! (transposed into scratch once per B matrix under transB), the output written in place. The
//! plain row loop is the reference it is tested against.

use super::activation::Activation;
use super::gemm::FAST_MIN_WORK;
use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::kernels::gemm_f32::{self, DenseB, Kernel, PackedA};
use crate::model::paramdict::ParamDict;
use crate::pool::SharedMut;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Debug)]
pub struct MatMul {
    pub trans_b: bool,
    /// The GEMM kernel of the fast path.
    pub kernel: Kernel,
    /// Multiply-adds of one matrix product from which the fast path runs.
    pub fast_min_work: usize,
}

/// One operand (or the output) as matrices with two batch axes (outer `bc`, inner `bd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Batched {
    bc: usize,
    bd: usize,
}

/// Everything the product needs, derived from the input shapes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    m: usize,
    n: usize,
    k: usize,
    /// B stored `N x K` (transposed) instead of `K x N`.
    b_rows_n: bool,
    a: Batched,
    b: Batched,
    out: Batched,
    out_shape: Shape,
}

impl MatMul {
    pub fn new(pd: &ParamDict) -> LayerResult<MatMul> {
        let trans_b = match pd.int(0, 0)? {
            0 => false,
            1 => true,
            t => return Err(invalid(format!("transB (param 0) must be 0 or 1, got {t}"))),
        };
        Ok(MatMul {
            trans_b,
            kernel: Kernel::best(),
            fast_min_work: FAST_MIN_WORK,
        })
    }

    /// Whether this product runs on the packed GEMM kernel.
    fn fast(&self, p: &Plan) -> bool {
        p.m > 1 && p.n > 1 && p.m * p.n * p.k >= self.fast_min_work
    }

    /// Scratch of the fast path per worker: packed A, B^T under transB, the kernel's panels.
    fn fast_scratch(&self, p: &Plan) -> usize {
        PackedA::packed_len(self.kernel, p.m, p.k)
            + if p.b_rows_n { p.k * p.n } else { 0 }
            + PackedA::worker_scratch(self.kernel, p.k, p.n)
    }

    /// Every batch's product on the packed kernel.
    fn forward_fast(
        &self,
        p: &Plan,
        a: &[f32],
        b: &[f32],
        out: &mut [f32],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let (m, n, k) = (p.m, p.n, p.k);
        if ctx.scratch.len() < self.fast_scratch(p) * ctx.pool.threads() {
            return Err(invalid("matmul scratch too small"));
        }
        let (apack, rest) = ctx
            .scratch
            .split_at_mut(PackedA::packed_len(self.kernel, m, k));
        let (bt, rest) = rest.split_at_mut(if p.b_rows_n { k * n } else { 0 });
        let mut transposed = None;
        for (batch, dst) in out.chunks_exact_mut(m * n).enumerate() {
            let (pc, pd) = (batch / p.out.bd, batch % p.out.bd);
            let pick = |x: &Batched| {
                let c = if x.bc == 1 { 0 } else { pc };
                let d = if x.bd == 1 { 0 } else { pd };
                c * x.bd + d
            };
            let (ai, bi) = (pick(&p.a), pick(&p.b));
            let packed = PackedA::pack_into(self.kernel, &a[ai * m * k..][..m * k], m, k, apack);
            let bmat = &b[bi * k * n..][..k * n];
            let bdata: &[f32] = if p.b_rows_n {
                if transposed != Some(bi) {
                    for (j, row) in bmat.chunks_exact(k).enumerate() {
                        for (kk, &v) in row.iter().enumerate() {
                            bt[kk * n + j] = v;
                        }
                    }
                    transposed = Some(bi);
                }
                bt
            } else {
                bmat
            };
            let dense = DenseB { data: bdata, n };
            gemm_f32::gemm(&packed, &dense, n, dst, Activation::None, ctx.pool, rest)?;
        }
        Ok(())
    }

    pub(crate) fn plan(&self, a: Shape, b: Shape) -> LayerResult<Plan> {
        let (m, ka) = if a.dims == 1 { (1, a.w) } else { (a.h, a.w) };
        let (n, kb, b_rows_n) = match (b.dims, self.trans_b) {
            (1, _) => (1, b.w, true),
            (_, false) => (b.w, b.h, false),
            (_, true) => (b.h, b.w, true),
        };
        if ka != kb {
            return Err(invalid(format!(
                "inner dimensions differ: A {a} has K = {ka}, B {b} has K = {kb}"
            )));
        }
        let one = Batched { bc: 1, bd: 1 };
        // Batch axes (c, d) of each operand, lined up from the inside.
        let rank = a.dims.max(b.dims);
        let lift = |s: Shape| match (s.dims, rank) {
            (4, _) => Batched { bc: s.c, bd: s.d },
            (3, 4) => Batched { bc: 1, bd: s.c },
            (3, _) => Batched { bc: s.c, bd: 1 },
            _ => one,
        };
        let (ab, bb) = (lift(a), lift(b));
        let axis = |x: usize, y: usize| -> LayerResult<usize> {
            if x == y || y == 1 {
                Ok(x)
            } else if x == 1 {
                Ok(y)
            } else {
                Err(invalid(format!(
                    "batch axes of {a} and {b} do not broadcast"
                )))
            }
        };
        let out = Batched {
            bc: axis(ab.bc, bb.bc)?,
            bd: axis(ab.bd, bb.bd)?,
        };
        let out_shape = match (a.dims, b.dims) {
            (1, 1) => Shape::d1(1),
            (1, 2) => Shape::checked(1, n, 1, 1, 1)?,
            (2, 1) => Shape::checked(1, m, 1, 1, 1)?,
            (2, 2) => Shape::checked(2, n, m, 1, 1)?,
            (1, 3) => Shape::checked(2, n, b.c, 1, 1)?,
            (1, _) => Shape::checked(3, n, b.d, 1, b.c)?,
            (3, 1) => Shape::checked(2, m, a.c, 1, 1)?,
            (_, 1) => Shape::checked(3, m, a.d, 1, a.c)?,
            _ if rank == 3 => Shape::checked(3, n, m, 1, out.bc)?,
            _ => Shape::checked(4, n, m, out.bd, out.bc)?,
        };
        Ok(Plan {
            m,
            n,
            k: ka,
            b_rows_n,
            a: ab,
            b: bb,
            out,
            out_shape,
        })
    }
}

/// Rows `rows` (counted over all batches, `m` per batch) of the product into `out`.
pub(crate) fn matmul_rows(
    p: &Plan,
    a: &[f32],
    b: &[f32],
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) {
    let (m, n, k) = (p.m, p.n, p.k);
    let first = rows.start;
    for r in rows {
        let (batch, i) = (r / m, r % m);
        let (pc, pd) = (batch / p.out.bd, batch % p.out.bd);
        let pick = |x: &Batched| {
            let c = if x.bc == 1 { 0 } else { pc };
            let d = if x.bd == 1 { 0 } else { pd };
            c * x.bd + d
        };
        let arow = &a[(pick(&p.a) * m + i) * k..][..k];
        let bmat = &b[pick(&p.b) * k * n..][..k * n];
        let dst = &mut out[(r - first) * n..][..n];
        if p.b_rows_n {
            for (o, brow) in dst.iter_mut().zip(bmat.chunks_exact(k)) {
                let mut sum = 0.0f32;
                for (x, y) in arow.iter().zip(brow) {
                    sum += x * y;
                }
                *o = sum;
            }
        } else {
            dst.fill(0.0);
            for (x, brow) in arow.iter().zip(bmat.chunks_exact(n)) {
                for (o, y) in dst.iter_mut().zip(brow) {
                    *o += x * y;
                }
            }
        }
    }
}

/// Runs `matmul_rows` over every output row, split across the pool when the work is large.
pub(crate) fn matmul(
    p: &Plan,
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    ctx: &Ctx,
) -> LayerResult<()> {
    let rows = p.out.bc * p.out.bd * p.m;
    let work = rows * p.n * p.k;
    let tasks = if work >= 1 << 16 {
        ctx.pool.threads().min(rows)
    } else {
        1
    };
    if tasks <= 1 {
        matmul_rows(p, a, b, 0..rows, out);
        return Ok(());
    }
    let n = p.n;
    let shared = SharedMut::new(out);
    ctx.pool
        .run(tasks, &|t, _| {
            let (lo, hi) = (rows * t / tasks, rows * (t + 1) / tasks);
            // SAFETY: tasks write disjoint row ranges.
            let part = unsafe { shared.slice(lo * n, (hi - lo) * n) };
            matmul_rows(p, a, b, lo..hi, part);
        })
        .map_err(|e| invalid(e.to_string()))
}

impl Op for MatMul {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 2)?;
        Ok(vec![self.plan(inputs[0], inputs[1])?.out_shape])
    }

    fn scratch_len(&self, inputs: &[Shape], _: &[Shape]) -> usize {
        match inputs {
            [a, b] => match self.plan(*a, *b) {
                Ok(p) if self.fast(&p) => self.fast_scratch(&p),
                _ => 0,
            },
            _ => 0,
        }
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let p = self.plan(inputs[0].shape, inputs[1].shape)?;
        if self.fast(&p) {
            let (a, b) = (inputs[0].data, inputs[1].data);
            return self.forward_fast(&p, a, b, outputs[0].data, ctx);
        }
        matmul(&p, inputs[0].data, inputs[1].data, outputs[0].data, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{assert_close, int, iota, params, run, run_threads};

    fn op(trans_b: bool) -> MatMul {
        MatMul::new(&params(&[(0, int(trans_b as i32))])).unwrap()
    }

    fn data(s: Shape, seed: f32) -> Vec<f32> {
        iota(s.len())
            .iter()
            .map(|v| ((v + seed) * 0.61).sin())
            .collect()
    }

    /// numpy-order reference: A (.., M, K) @ B (.., K, N) with batch broadcasting, in f64.
    fn reference(
        a: &[f32],
        ad: &[usize],
        b: &[f32],
        bd: &[usize],
        trans_b: bool,
    ) -> (Vec<usize>, Vec<f32>) {
        let (m, k) = if ad.len() == 1 {
            (1, ad[0])
        } else {
            (ad[ad.len() - 2], ad[ad.len() - 1])
        };
        let (n, bt) = if bd.len() == 1 {
            (1, true)
        } else if trans_b {
            (bd[bd.len() - 2], true)
        } else {
            (bd[bd.len() - 1], false)
        };
        let abatch: Vec<usize> = if ad.len() > 2 {
            ad[..ad.len() - 2].to_vec()
        } else {
            vec![]
        };
        let bbatch: Vec<usize> = if bd.len() > 2 {
            bd[..bd.len() - 2].to_vec()
        } else {
            vec![]
        };
        let r = abatch.len().max(bbatch.len());
        let pad = |v: &Vec<usize>| [vec![1; r - v.len()], v.clone()].concat();
        let (pa, pb) = (pad(&abatch), pad(&bbatch));
        let ob: Vec<usize> = pa.iter().zip(&pb).map(|(x, y)| *x.max(y)).collect();
        let total: usize = ob.iter().product();
        let mut out = Vec::new();
        for t in 0..total {
            let mut idx = vec![0; r];
            let mut rem = t;
            for i in (0..r).rev() {
                idx[i] = rem % ob[i];
                rem /= ob[i];
            }
            let flat = |dims: &Vec<usize>| {
                idx.iter()
                    .zip(dims)
                    .fold(0, |acc, (i, d)| acc * d + if *d == 1 { 0 } else { *i })
            };
            let (oa, obb) = (flat(&pa) * m * k, flat(&pb) * k * n);
            for i in 0..m {
                for j in 0..n {
                    let mut s = 0.0f64;
                    for kk in 0..k {
                        let bv = if bt {
                            b[obb + j * k + kk]
                        } else {
                            b[obb + kk * n + j]
                        };
                        s += a[oa + i * k + kk] as f64 * bv as f64;
                    }
                    out.push(s as f32);
                }
            }
        }
        (ob, out)
    }

    #[test]
    fn by_hand() {
        // [[1, 2], [3, 4]] x [[5, 6], [7, 8]] = [[19, 22], [43, 50]].
        let a = (Shape::d2(2, 2), vec![1.0, 2.0, 3.0, 4.0]);
        let b = (Shape::d2(2, 2), vec![5.0, 6.0, 7.0, 8.0]);
        let out = run(&op(false), &[a.clone(), b.clone()]).unwrap();
        assert_eq!(out[0], (Shape::d2(2, 2), vec![19.0, 22.0, 43.0, 50.0]));
        let out = run(&op(true), &[a, b]).unwrap();
        assert_eq!(out[0].1, vec![17.0, 23.0, 39.0, 53.0]);
        let dot = run(
            &op(false),
            &[
                (Shape::d1(3), vec![1.0, 2.0, 3.0]),
                (Shape::d1(3), vec![4.0, 5.0, 6.0]),
            ],
        )
        .unwrap();
        assert_eq!(dot[0], (Shape::d1(1), vec![32.0]));
    }

    #[test]
    fn every_rank_pair_with_broadcast() {
        let (m, k, n) = (3, 4, 5);
        let a_shapes = [
            Shape::d1(k),
            Shape::d2(k, m),
            Shape::d3(k, m, 2),
            Shape::d3(k, m, 1),
            Shape::d4(k, m, 2, 3),
            Shape::d4(k, m, 1, 3),
        ];
        for trans_b in [false, true] {
            let (bw, bh) = if trans_b { (k, n) } else { (n, k) };
            let b_shapes = [
                Shape::d1(k),
                Shape::d2(bw, bh),
                Shape::d3(bw, bh, 2),
                Shape::d3(bw, bh, 1),
                Shape::d4(bw, bh, 2, 3),
                Shape::d4(bw, bh, 2, 1),
            ];
            for a in a_shapes {
                for b in b_shapes {
                    let (xa, xb) = (data(a, 0.0), data(b, 7.0));
                    let got = run(&op(trans_b), &[(a, xa.clone()), (b, xb.clone())]);
                    let (_, want) = reference(&xa, &a.numpy_dims(), &xb, &b.numpy_dims(), trans_b);
                    let got = got.unwrap_or_else(|e| panic!("{a} x {b}: {e}"));
                    assert_close(&got[0].1, &want, 1e-5);
                    assert_eq!(got[0].0.len(), want.len(), "{a} x {b}");
                }
            }
        }
        // Shapes of the special forms.
        let s = |a: Shape, b: Shape| op(false).output_shapes(&[a, b]).unwrap()[0];
        assert_eq!(s(Shape::d1(4), Shape::d3(5, 4, 2)), Shape::d2(5, 2));
        assert_eq!(s(Shape::d1(4), Shape::d4(5, 4, 3, 2)), Shape::d3(5, 3, 2));
        assert_eq!(s(Shape::d3(4, 3, 2), Shape::d1(4)), Shape::d2(3, 2));
        assert_eq!(s(Shape::d4(4, 3, 6, 2), Shape::d1(4)), Shape::d3(3, 6, 2));
        assert_eq!(
            s(Shape::d3(4, 3, 2), Shape::d4(5, 4, 2, 7)),
            Shape::d4(5, 3, 2, 7)
        );
        assert_eq!(s(Shape::d2(4, 3), Shape::d3(5, 4, 6)), Shape::d3(5, 3, 6));
    }

    #[test]
    fn threads_agree() {
        let (a, b) = (Shape::d3(64, 33, 4), Shape::d3(40, 64, 1));
        let (xa, xb) = (data(a, 1.0), data(b, 2.0));
        let one = run(&op(false), &[(a, xa.clone()), (b, xb.clone())]).unwrap();
        let three = run_threads(&op(false), &[(a, xa), (b, xb)], 3).unwrap();
        assert_eq!(one[0].1, three[0].1);
    }

    #[test]
    fn packed_kernel_agrees_with_the_loops() {
        // (A, B before transB) with batch broadcasting on either side, 2-D to 4-D.
        let (m, n, k) = (13, 37, 29);
        let cases = [
            (Shape::d2(k, m), Shape::d2(n, k)),
            (Shape::d3(k, m, 3), Shape::d3(n, k, 3)),
            (Shape::d3(k, m, 3), Shape::d2(n, k)),
            (Shape::d2(k, m), Shape::d3(n, k, 2)),
            (Shape::d4(k, m, 2, 3), Shape::d3(n, k, 2)),
            (Shape::d4(k, m, 1, 2), Shape::d4(n, k, 3, 1)),
            (Shape::d3(k, 1, 2), Shape::d4(n, k, 2, 2)),
            (Shape::d2(200, 40), Shape::d2(9, 200)),
        ];
        for (sa, sb) in cases {
            for trans_b in [false, true] {
                let sb = match (trans_b, sb.dims) {
                    (false, _) => sb,
                    (true, 2) => Shape::d2(sb.h, sb.w),
                    (true, 3) => Shape::d3(sb.h, sb.w, sb.c),
                    (true, _) => Shape::d4(sb.h, sb.w, sb.d, sb.c),
                };
                let ins = [(sa, data(sa, 1.0)), (sb, data(sb, 2.0))];
                let mut fast = op(trans_b);
                fast.fast_min_work = 0;
                let mut slow = op(trans_b);
                slow.fast_min_work = usize::MAX;
                let p = fast.plan(sa, sb).unwrap();
                assert!(fast.fast(&p) || p.m == 1, "{sa} x {sb}");
                let want = run(&slow, &ins).unwrap();
                for threads in [1, 2, 3] {
                    let got = run_threads(&fast, &ins, threads).unwrap();
                    assert_eq!(got[0].0, want[0].0);
                    assert_close(&got[0].1, &want[0].1, 1e-5);
                }
            }
        }
        // A default op takes the fast path only for large enough products.
        let p = op(false)
            .plan(Shape::d2(64, 64), Shape::d2(64, 64))
            .unwrap();
        assert!(op(false).fast(&p));
        let p = op(false).plan(Shape::d2(8, 8), Shape::d2(8, 8)).unwrap();
        assert!(!op(false).fast(&p));
    }

    #[test]
    fn errors() {
        assert!(MatMul::new(&params(&[(0, int(2))])).is_err());
        let o = op(false);
        assert!(o.output_shapes(&[Shape::d2(3, 2)]).is_err());
        assert!(o
            .output_shapes(&[Shape::d2(3, 2), Shape::d2(2, 2)])
            .is_err());
        assert!(o
            .output_shapes(&[Shape::d3(3, 2, 2), Shape::d3(2, 3, 3)])
            .is_err());
        assert!(o.output_shapes(&[Shape::d1(3), Shape::d1(4)]).is_err());
    }
}
