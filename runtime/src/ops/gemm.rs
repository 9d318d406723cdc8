//! Gemm: `Y = alpha * (A · B + beta * C)` (ncnn scales C by alpha too), with each of A, B, C
//! either an input blob or a constant from the .bin.
//!
//! Params: `0 = alpha` (1), `1 = beta` (1), `2 = transA`, `3 = transB`, `4 = constantA`,
//! `5 = constantB`, `6 = constantC`, `7 = constantM`, `8 = constantN`, `9 = constantK`,
//! `10 = constant_broadcast_type_C`, `11 = output_N1M`, `12 = output_elempack`,
//! `13 = output_elemtype`, `14 = output_transpose`, `18 = int8_scale_term`. Packing / element
//! type requests other than the default and int8 are refused; the tiling hints (20..22) are
//! ignored.
//!
//! Operands: A is `M x K` (`K x M` under transA), B is `K x N` (`N x K` under transB), each a
//! 2-D blob or a 3-D blob with h = 1 whose channels are the rows. Inputs come in the order A,
//! B, C, skipping the constant ones; a non-constant C is optional. Constant blobs are tagged
//! (fp32 / fp16) and read in the order A, B, C: A as `constantM x constantK` rows (transposed
//! under transA), B as `constantK x constantN` (transposed under transB), C per
//! `constant_broadcast_type_C`: 0 one value, 1 `M`, 2 `M x 1`, 3 `M x N`, 4 `N`, -1 none.
//! An input C is matched as ncnn does: 1-D of 1, `M` or `N` values, 2-D `M x 1`, `M x N` or
//! `1 x N` (the later match wins when sizes coincide); other shapes are refused.
//!
//! Output: `N` wide and `M` high, or `M` wide and `N` high with output_transpose; output_N1M
//! makes it 3-D with h = 1 (the rows become channels).
//!
//! int8 (`int8_scale_term` != 0, as ncnn whatever its int8 option): a constant A is an
//! int8-tagged blob (ncnn misreads any other tag: refused) and after C comes `constantM` raw
//! per-row scales of A; a constant B likewise, then one raw scale for all of B. An input A is quantized per row with scale `127 / max|row|` (1 for a zero row), an
//! input B with one scale `127 / max|B|`, each value rounded half away from zero and clamped
//! to ±127. Output (i, j) = `(Σ_k A8[i,k] B8[k,j] as f32 · 1 / (sA[i] · sB) + beta · C) ·
//! alpha` with the sum exact in i32. Values 4..6 and ≥ 400 (ncnn's weight-block
//! quantization) are refused.
//!
//! int8 fast path: with a constant B and an input A, B^T is packed at load for
//! `kernels::gemm_i8` and products of at least [`FAST_MIN_WORK`] multiply-adds compute their
//! exact sums there (A quantized straight into `A^T`); the plain i32 loop is the reference.
//!
//! Fast path (a linear layer: constant B, input A, C absent or constant per column / scalar):
//! `alpha * B^T` is packed at load for `kernels::gemm_f32` with `alpha * beta * C` as its row
//! bias, and `Y^T = (alpha B^T) · A^T + bias` runs on the pool, A transposed into scratch
//! unless transA, Y transposed out of scratch unless output_transpose. Products of at least
//! [`FAST_MIN_WORK`] multiply-adds take it; it is tested against the plain loops.

use super::activation::Activation;
use super::{Ctx, Op};
use crate::error::{invalid, LayerResult, Result};
use crate::kernels::gemm_f32::{self, DenseB, Kernel, PackedA};
use crate::kernels::gemm_i8::{self, DenseB8, KernelSet, PackedA8};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, Tagged, WeightReader};
use crate::quant::quantize;
use crate::quant::Precision;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Debug)]
pub struct Gemm {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
    pub a: Option<Floats>,
    pub b: Option<Floats>,
    /// Constant C with its broadcast type (None when C is an input or absent).
    pub c: Option<(i32, Option<Floats>)>,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub output_n1m: bool,
    pub output_transpose: bool,
    /// `alpha * B^T` (`N x K`) packed with its bias, when the fast path applies.
    pub fast: Option<PackedA>,
    /// Products (`M * N * K`) from which the fast path runs.
    pub fast_min_work: usize,
    pub constant_a: bool,
    pub constant_b: bool,
    /// The int8 form's constant operands (param 18 set).
    pub int8: Option<GemmInt8>,
    /// The int8 B^T (`N x K`) packed for `kernels::gemm_i8`, when A is an input.
    pub int8_fast: Option<PackedA8>,
}

/// Constant operands of the int8 form, quantized as ncnn stores (or quantizes) them.
#[derive(Debug, Default)]
pub struct GemmInt8 {
    /// A (`M x K`, row-major) with one scale per row.
    pub a: Option<(Vec<i8>, Vec<f32>)>,
    /// B transposed (`N x K`, row-major) with one scale.
    pub bt: Option<(Vec<i8>, f32)>,
}

/// ncnn reads other tags' bytes as int8 values.
const NEEDS_INT8: &str = "int8 Gemm (param 18) needs int8-tagged constant A / B";

/// ncnn's dynamic quantization scale for values of largest magnitude `absmax`.
fn dynamic_scale(absmax: f32) -> f32 {
    if absmax == 0.0 {
        1.0
    } else {
        127.0 / absmax
    }
}

/// Multiply-adds from which a product runs on the packed GEMM kernel.
pub const FAST_MIN_WORK: usize = 1 << 15;

/// Where C's value for output (i, j) comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CKind {
    None,
    Scalar,
    PerRow,
    Full,
    PerCol,
}

impl CKind {
    fn from_type(t: i32) -> CKind {
        match t {
            0 => CKind::Scalar,
            1 | 2 => CKind::PerRow,
            3 => CKind::Full,
            4 => CKind::PerCol,
            _ => CKind::None,
        }
    }
}

/// Shapes of one product.
#[derive(Clone, Copy, Debug)]
struct Dims {
    m: usize,
    n: usize,
    k: usize,
    c: CKind,
}

fn flag(pd: &ParamDict, key: usize, what: &str) -> LayerResult<bool> {
    match pd.int(key, 0)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(invalid(format!(
            "{what} (param {key}) must be 0 or 1, got {v}"
        ))),
    }
}

/// Rows and columns of an operand blob (2-D, or 3-D with h = 1 and the channels as rows).
fn matrix(s: &Shape, what: &str) -> LayerResult<(usize, usize)> {
    match s.dims {
        2 => Ok((s.h, s.w)),
        3 if s.h == 1 => Ok((s.c, s.w)),
        _ => Err(invalid(format!("{what} {s} must be 2-D or 3-D with h = 1"))),
    }
}

impl Gemm {
    pub fn new(pd: &ParamDict, w: &mut WeightReader) -> Result<Gemm> {
        let alpha = pd.float(0, 1.0)?;
        let beta = pd.float(1, 1.0)?;
        let trans_a = flag(pd, 2, "transA")?;
        let trans_b = flag(pd, 3, "transB")?;
        let constant_a = flag(pd, 4, "constantA")?;
        let constant_b = flag(pd, 5, "constantB")?;
        let constant_c = flag(pd, 6, "constantC")?;
        let (m, n, k) = (pd.usize(7, 0)?, pd.usize(8, 0)?, pd.usize(9, 0)?);
        let c_type = pd.int(10, 0)?;
        let output_n1m = flag(pd, 11, "output_N1M")?;
        let output_transpose = flag(pd, 14, "output_transpose")?;
        if !alpha.is_finite() || !beta.is_finite() {
            return Err(invalid("alpha (param 0) and beta (param 1) must be finite").into());
        }
        if pd.int(12, 0)? != 0 || pd.int(13, 0)? != 0 {
            return Err(
                invalid("output_elempack / output_elemtype (params 12, 13) must be 0").into(),
            );
        }
        let int8_term = pd.int(18, 0)?;
        if !(0..400).contains(&int8_term) || (4..=6).contains(&int8_term) {
            return Err(invalid(format!(
                "int8_scale_term (param 18) {int8_term} is not supported (0..399 except 4..6)"
            ))
            .into());
        }
        let int8 = int8_term != 0;
        if constant_a && (m == 0 || k == 0) {
            return Err(
                invalid("constantA needs constantM (param 7) and constantK (param 9)").into(),
            );
        }
        if constant_b && (n == 0 || k == 0) {
            return Err(
                invalid("constantB needs constantN (param 8) and constantK (param 9)").into(),
            );
        }
        if constant_c && !(-1..=4).contains(&c_type) {
            return Err(invalid(format!(
                "constant_broadcast_type_C (param 10) must be -1..4, got {c_type}"
            ))
            .into());
        }
        let size = |a: usize, b: usize| {
            a.checked_mul(b)
                .filter(|&n| n <= crate::tensor::MAX_ELEMENTS)
                .ok_or_else(|| invalid(format!("constant size {a} x {b} is too large")))
        };
        let tagged = |w: &mut WeightReader, n: usize, what: &str| -> Result<Floats> {
            Ok(w.tagged(n, what)?.into_f32().map_err(invalid)?)
        };
        let mut stored_a = None;
        let mut stored_b = None;
        let a = if constant_a && int8 {
            stored_a = Some(w.tagged(size(m, k)?, "A")?);
            None
        } else if constant_a {
            Some(tagged(w, size(m, k)?, "A")?)
        } else {
            None
        };
        let b = if constant_b && int8 {
            stored_b = Some(w.tagged(size(n, k)?, "B")?);
            None
        } else if constant_b {
            Some(tagged(w, size(n, k)?, "B")?)
        } else {
            None
        };
        let c = if constant_c {
            let need_m = matches!(c_type, 1..=3);
            let need_n = matches!(c_type, 3 | 4);
            if (need_m && m == 0) || (need_n && n == 0) {
                return Err(invalid(format!(
                    "constant_broadcast_type_C {c_type} needs constantM / constantN"
                ))
                .into());
            }
            let len = match c_type {
                0 => Some(1),
                1 | 2 => Some(m),
                3 => Some(size(m, n)?),
                4 => Some(n),
                _ => None,
            };
            let data = match len {
                Some(len) => Some(tagged(w, len, "C")?),
                None => None,
            };
            Some((c_type, data))
        } else {
            None
        };
        let int8 = if int8 {
            let mut q = GemmInt8::default();
            if let Some(stored) = stored_a {
                let scales = w.raw(m, "A int8 scales")?;
                // Rows of A: stored K x M under transA.
                let at = |i: usize, kk: usize| if trans_a { kk * m + i } else { i * k + kk };
                q.a = Some(match stored {
                    Tagged::I8(v) => {
                        let rows = (0..m * k).map(|x| v[at(x / k, x % k)]).collect();
                        (rows, scales.to_vec())
                    }
                    Tagged::F32(_) if w.is_zeros() => (vec![0; m * k], vec![1.0; m]),
                    Tagged::F32(_) => return Err(invalid(NEEDS_INT8).into()),
                });
            }
            if let Some(stored) = stored_b {
                let scale = w.raw(1, "B int8 scale")?[0];
                // B^T rows: stored K x N unless transB.
                let at = |j: usize, kk: usize| if trans_b { j * k + kk } else { kk * n + j };
                q.bt = Some(match stored {
                    Tagged::I8(v) => ((0..n * k).map(|x| v[at(x / k, x % k)]).collect(), scale),
                    Tagged::F32(_) if w.is_zeros() => (vec![0; n * k], 1.0),
                    Tagged::F32(_) => return Err(invalid(NEEDS_INT8).into()),
                });
            }
            Some(q)
        } else {
            None
        };
        let fast = match (&a, &b, &c) {
            (None, Some(bw), None) => Some(Self::pack(bw, n, k, trans_b, alpha, |_| 0.0)),
            (None, Some(bw), Some((t, cw))) => match (t, cw) {
                (-1, _) => Some(Self::pack(bw, n, k, trans_b, alpha, |_| 0.0)),
                (0, Some(cw)) => Some(Self::pack(bw, n, k, trans_b, alpha, |_| beta * cw[0])),
                (4, Some(cw)) => Some(Self::pack(bw, n, k, trans_b, alpha, |j| beta * cw[j])),
                _ => None,
            },
            _ => None,
        };
        Ok(Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
            a,
            b,
            c,
            m,
            n,
            k,
            output_n1m,
            output_transpose,
            fast,
            fast_min_work: FAST_MIN_WORK,
            constant_a,
            constant_b,
            int8_fast: match (&int8, constant_a) {
                (
                    Some(GemmInt8 {
                        bt: Some((bt, _)), ..
                    }),
                    false,
                ) => Some(PackedA8::new(KernelSet::best(Precision::Int8), bt, n, k)),
                _ => None,
            },
            int8,
        })
    }

    /// Packs `alpha * B^T` (`n x k`) with row bias `alpha * c(j)` for the GEMM kernel.
    fn pack(
        b: &[f32],
        n: usize,
        k: usize,
        trans_b: bool,
        alpha: f32,
        c: impl Fn(usize) -> f32,
    ) -> PackedA {
        let bt: Vec<f32> = (0..n)
            .flat_map(|j| {
                (0..k).map(move |kk| {
                    if trans_b {
                        b[j * k + kk]
                    } else {
                        b[kk * n + j]
                    }
                })
            })
            .map(|v| v * alpha)
            .collect();
        let bias: Vec<f32> = (0..n).map(|j| alpha * c(j)).collect();
        PackedA::new(Kernel::best(), &bt, n, k, Some(&bias))
    }

    /// The packed weights, when this product takes the fast path.
    fn fast_for(&self, inputs: &[Shape], d: &Dims) -> Option<&PackedA> {
        let no_input_c = inputs.len() == self.operand_inputs();
        let big = d.m * d.n * d.k >= self.fast_min_work;
        self.fast.as_ref().filter(|_| no_input_c && big)
    }

    /// Scratch of the fast path per worker: the kernel's panels, then A^T and Y^T when needed.
    fn fast_scratch(&self, packed: &PackedA, d: &Dims) -> usize {
        packed.scratch_len(d.m)
            + if self.trans_a { 0 } else { d.k * d.m }
            + if self.output_transpose { 0 } else { d.n * d.m }
    }

    /// Input blobs the layer takes: the non-constant A and B, then an optional C.
    fn operand_inputs(&self) -> usize {
        !self.constant_a as usize + !self.constant_b as usize
    }

    fn dims(&self, inputs: &[Shape]) -> LayerResult<Dims> {
        let need = self.operand_inputs();
        let max = need + self.c.is_none() as usize;
        if inputs.len() < need || inputs.len() > max {
            return Err(invalid(format!(
                "expects {need}{} input blob(s), got {}",
                if max > need { " or one more (C)" } else { "" },
                inputs.len()
            )));
        }
        let mut next = inputs.iter();
        let (m, ka) = match self.constant_a {
            true => (self.m, self.k),
            false => {
                let (r, c) = matrix(next.next().expect("counted"), "A")?;
                if self.trans_a {
                    (c, r)
                } else {
                    (r, c)
                }
            }
        };
        let (n, kb) = match self.constant_b {
            true => (self.n, self.k),
            false => {
                let (r, c) = matrix(next.next().expect("counted"), "B")?;
                if self.trans_b {
                    (r, c)
                } else {
                    (c, r)
                }
            }
        };
        if ka != kb {
            return Err(invalid(format!(
                "A has K = {ka} columns, B has K = {kb} rows"
            )));
        }
        let c = match (&self.c, next.next()) {
            (Some((t, _)), _) => CKind::from_type(*t),
            (None, None) => CKind::None,
            (None, Some(s)) => {
                let mut kind = None;
                if s.dims == 1 && s.w == 1 {
                    kind = Some(CKind::Scalar);
                }
                if s.dims == 1 && s.w == m {
                    kind = Some(CKind::PerRow);
                }
                if s.dims == 1 && s.w == n {
                    kind = Some(CKind::PerCol);
                }
                if s.dims == 2 && s.w == 1 && s.h == m {
                    kind = Some(CKind::PerRow);
                }
                if s.dims == 2 && s.w == n && s.h == m {
                    kind = Some(CKind::Full);
                }
                if s.dims == 2 && s.w == n && s.h == 1 {
                    kind = Some(CKind::PerCol);
                }
                kind.ok_or_else(|| {
                    invalid(format!("C {s} does not broadcast to M x N = {m} x {n}"))
                })?
            }
        };
        Ok(Dims { m, n, k: ka, c })
    }
}

/// `Y (m x n, row-major) = alpha * (A · B + beta * C)` read through index functions, in ncnn's
/// order (C scaled by beta first, products added in k order, alpha last).
#[allow(clippy::too_many_arguments)]
fn gemm_reference(
    d: &Dims,
    a: impl Fn(usize, usize) -> f32,
    b: impl Fn(usize, usize) -> f32,
    c: &[f32],
    alpha: f32,
    beta: f32,
    out: &mut [f32],
    transpose: bool,
) {
    for i in 0..d.m {
        for j in 0..d.n {
            let mut sum = match d.c {
                CKind::None => 0.0,
                CKind::Scalar => c[0] * beta,
                CKind::PerRow => c[i] * beta,
                CKind::Full => c[i * d.n + j] * beta,
                CKind::PerCol => c[j] * beta,
            };
            for kk in 0..d.k {
                sum += a(i, kk) * b(kk, j);
            }
            let at = if transpose { j * d.m + i } else { i * d.n + j };
            out[at] = sum * alpha;
        }
    }
}

impl Op for Gemm {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        let d = self.dims(inputs)?;
        let (w, rows) = if self.output_transpose {
            (d.m, d.n)
        } else {
            (d.n, d.m)
        };
        Ok(vec![if self.output_n1m {
            Shape::checked(3, w, 1, 1, rows)?
        } else {
            Shape::checked(2, w, rows, 1, 1)?
        }])
    }

    fn scratch_len(&self, inputs: &[Shape], _: &[Shape]) -> usize {
        match self.dims(inputs) {
            Ok(d) if self.int8.is_some() => match self.int8_fast_for(&d) {
                Some(p) => self.int8_fast_scratch(p, &d),
                None => self.int8_scratch(&d),
            },
            Ok(d) => self
                .fast_for(inputs, &d)
                .map_or(0, |p| self.fast_scratch(p, &d)),
            Err(_) => 0,
        }
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let shapes = [
            inputs.first().map(|t| t.shape),
            inputs.get(1).map(|t| t.shape),
            inputs.get(2).map(|t| t.shape),
        ];
        let count = inputs.len();
        let mut shape_buf = [Shape::default(); 3];
        for (dst, s) in shape_buf.iter_mut().zip(shapes.iter().flatten()) {
            *dst = *s;
        }
        let d = self.dims(&shape_buf[..count])?;
        if let Some(q) = &self.int8 {
            if let (Some(p), Some((_, sb))) = (self.int8_fast_for(&d), &q.bt) {
                return self.forward_int8_fast(p, *sb, &d, inputs, outputs[0].data, ctx);
            }
            return self.forward_int8(q, &d, inputs, outputs[0].data, ctx);
        }
        if let Some(packed) = self.fast_for(&shape_buf[..count], &d) {
            return self.forward_fast(packed, &d, inputs[0].data, outputs[0].data, ctx);
        }
        let mut next = inputs.iter();
        let a: &[f32] = match &self.a {
            Some(a) => a,
            None => next.next().expect("counted").data,
        };
        let b: &[f32] = match &self.b {
            Some(b) => b,
            None => next.next().expect("counted").data,
        };
        let c: &[f32] = match &self.c {
            Some((_, Some(c))) => c,
            Some((_, None)) => &[],
            None => next.next().map_or(&[], |t| t.data),
        };
        let (m, n, k) = (d.m, d.n, d.k);
        let out = &mut *outputs[0].data;
        let t = self.output_transpose;
        let (alpha, beta) = (self.alpha, self.beta);
        match (self.trans_a, self.trans_b) {
            (false, false) => gemm_reference(
                &d,
                |i, kk| a[i * k + kk],
                |kk, j| b[kk * n + j],
                c,
                alpha,
                beta,
                out,
                t,
            ),
            (false, true) => gemm_reference(
                &d,
                |i, kk| a[i * k + kk],
                |kk, j| b[j * k + kk],
                c,
                alpha,
                beta,
                out,
                t,
            ),
            (true, false) => gemm_reference(
                &d,
                |i, kk| a[kk * m + i],
                |kk, j| b[kk * n + j],
                c,
                alpha,
                beta,
                out,
                t,
            ),
            (true, true) => gemm_reference(
                &d,
                |i, kk| a[kk * m + i],
                |kk, j| b[j * k + kk],
                c,
                alpha,
                beta,
                out,
                t,
            ),
        }
        Ok(())
    }
}

impl Gemm {
    /// Scratch of the int8 form: the scales and int8 rows of a dynamic A, the int8 B^T of a
    /// dynamic B.
    fn int8_scratch(&self, d: &Dims) -> usize {
        let (m, n, k) = (d.m, d.n, d.k);
        let a = if self.constant_a {
            0
        } else {
            m + (m * k).div_ceil(4)
        };
        let b = if self.constant_b {
            0
        } else {
            (n * k).div_ceil(4)
        };
        a + b
    }

    /// The int8 form: quantizes the input operands into scratch, then the exact i32 loop.
    fn forward_int8(
        &self,
        q: &GemmInt8,
        d: &Dims,
        inputs: &[Tensor],
        out: &mut [f32],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let (m, n, k) = (d.m, d.n, d.k);
        if ctx.scratch.len() < self.int8_scratch(d) {
            return Err(invalid("gemm int8 scratch too small"));
        }
        let mut next = inputs.iter();
        let (a_scales, rest) = ctx
            .scratch
            .split_at_mut(if self.constant_a { 0 } else { m });
        let (a_buf, rest) = rest.split_at_mut(if self.constant_a {
            0
        } else {
            (m * k).div_ceil(4)
        });
        let b_buf = &mut rest[..if self.constant_b {
            0
        } else {
            (n * k).div_ceil(4)
        }];
        let (a8, sa): (&[i8], &[f32]) = match &q.a {
            Some((a8, sa)) => (a8, sa),
            None => {
                let a = next.next().expect("counted").data;
                let at = |i: usize, kk: usize| {
                    if self.trans_a {
                        a[kk * m + i]
                    } else {
                        a[i * k + kk]
                    }
                };
                let a8: &mut [i8] = &mut bytemuck::cast_slice_mut(a_buf)[..m * k];
                for (i, (row, s)) in a8.chunks_exact_mut(k).zip(a_scales.iter_mut()).enumerate() {
                    let absmax = (0..k).fold(0.0f32, |x, kk| x.max(at(i, kk).abs()));
                    *s = dynamic_scale(absmax);
                    for (kk, v) in row.iter_mut().enumerate() {
                        *v = quantize(at(i, kk), *s, 127);
                    }
                }
                (a8, a_scales)
            }
        };
        let (bt8, sb): (&[i8], f32) = match &q.bt {
            Some((b8, sb)) => (b8, *sb),
            None => {
                let b = next.next().expect("counted").data;
                let sb = dynamic_scale(b.iter().fold(0.0f32, |x, v| x.max(v.abs())));
                let bt8: &mut [i8] = &mut bytemuck::cast_slice_mut(b_buf)[..n * k];
                for (j, row) in bt8.chunks_exact_mut(k).enumerate() {
                    for (kk, v) in row.iter_mut().enumerate() {
                        let x = if self.trans_b {
                            b[j * k + kk]
                        } else {
                            b[kk * n + j]
                        };
                        *v = quantize(x, sb, 127);
                    }
                }
                (bt8, sb)
            }
        };
        let c: &[f32] = match &self.c {
            Some((_, Some(c))) => c,
            Some((_, None)) => &[],
            None => next.next().map_or(&[], |t| t.data),
        };
        let sum = |i: usize, j: usize| -> i32 {
            let (row, col) = (&a8[i * k..(i + 1) * k], &bt8[j * k..(j + 1) * k]);
            row.iter()
                .zip(col)
                .map(|(&x, &y)| x as i32 * y as i32)
                .sum()
        };
        self.int8_epilogue(d, c, sa, sb, sum, out);
        Ok(())
    }

    /// Output (i, j) from its exact sum: dequantized, C added, alpha applied, as ncnn.
    fn int8_epilogue(
        &self,
        d: &Dims,
        c: &[f32],
        sa: &[f32],
        sb: f32,
        sum: impl Fn(usize, usize) -> i32,
        out: &mut [f32],
    ) {
        let (m, n) = (d.m, d.n);
        for i in 0..m {
            let descale = 1.0 / (sa[i] * sb);
            for j in 0..n {
                let cv = match d.c {
                    CKind::None => None,
                    CKind::Scalar => Some(c[0]),
                    CKind::PerRow => Some(c[i]),
                    CKind::Full => Some(c[i * n + j]),
                    CKind::PerCol => Some(c[j]),
                };
                let mut v = sum(i, j) as f32 * descale;
                if let Some(cv) = cv {
                    v += cv * self.beta;
                }
                let at = if self.output_transpose {
                    j * m + i
                } else {
                    i * n + j
                };
                out[at] = v * self.alpha;
            }
        }
    }

    /// The int8 product on the packed int8 kernel (constant B, input A): A quantized per
    /// row straight into `A^T (k x m)`, the exact sums `B^T · A^T (n x m)` in i32.
    fn forward_int8_fast(
        &self,
        packed: &PackedA8,
        sb: f32,
        d: &Dims,
        inputs: &[Tensor],
        out: &mut [f32],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let (m, n, k) = (d.m, d.n, d.k);
        if ctx.scratch.len() < self.int8_fast_scratch(packed, d) * ctx.pool.threads() {
            return Err(invalid("gemm int8 scratch too small"));
        }
        let (sa, rest) = ctx.scratch.split_at_mut(m);
        let (at_buf, rest) = rest.split_at_mut((k * m).div_ceil(4));
        let (acc_buf, rest) = rest.split_at_mut(n * m);
        let at8: &mut [i8] = &mut bytemuck::cast_slice_mut(at_buf)[..k * m];
        let acc: &mut [i32] = bytemuck::cast_slice_mut(acc_buf);
        let a = inputs[0].data;
        let idx = |i: usize, kk: usize| if self.trans_a { kk * m + i } else { i * k + kk };
        for (i, s) in sa.iter_mut().enumerate() {
            let absmax = (0..k).fold(0.0f32, |x, kk| x.max(a[idx(i, kk)].abs()));
            *s = dynamic_scale(absmax);
            for kk in 0..k {
                at8[kk * m + i] = quantize(a[idx(i, kk)], *s, 127);
            }
        }
        let b = DenseB8 { data: at8, n: m };
        gemm_i8::gemm_i32(packed, &b, m, acc, ctx.pool, rest)?;
        let c: &[f32] = match &self.c {
            Some((_, Some(c))) => c,
            Some((_, None)) => &[],
            None => inputs.get(1).map_or(&[], |t| t.data),
        };
        self.int8_epilogue(d, c, sa, sb, |i, j| acc[j * m + i], out);
        Ok(())
    }

    /// Scratch per worker of [`Gemm::forward_int8_fast`]: A's scales, A^T, the sums, the
    /// kernel's panels.
    fn int8_fast_scratch(&self, packed: &PackedA8, d: &Dims) -> usize {
        d.m + (d.k * d.m).div_ceil(4) + d.n * d.m + packed.scratch_len(d.m)
    }

    /// The packed int8 weights, when this product takes the int8 fast path.
    fn int8_fast_for(&self, d: &Dims) -> Option<&PackedA8> {
        let big = d.m * d.n * d.k >= self.fast_min_work;
        self.int8_fast.as_ref().filter(|_| big)
    }

    /// `Y^T (n x m) = packed (n x k) · A^T (k x m) + bias` on the GEMM kernel.
    fn forward_fast(
        &self,
        packed: &PackedA,
        d: &Dims,
        a: &[f32],
        out: &mut [f32],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let (m, n, k) = (d.m, d.n, d.k);
        let need = self.fast_scratch(packed, d) * ctx.pool.threads();
        if ctx.scratch.len() < need {
            return Err(invalid("gemm scratch too small"));
        }
        let (at, rest) = ctx
            .scratch
            .split_at_mut(if self.trans_a { 0 } else { k * m });
        let (yt, rest) = rest.split_at_mut(if self.output_transpose { 0 } else { n * m });
        let a_t: &[f32] = if self.trans_a {
            a
        } else {
            for (i, row) in a.chunks_exact(k).enumerate() {
                for (kk, &v) in row.iter().enumerate() {
                    at[kk * m + i] = v;
                }
            }
            at
        };
        let b = DenseB { data: a_t, n: m };
        if self.output_transpose {
            return gemm_f32::gemm(packed, &b, m, out, Activation::None, ctx.pool, rest);
        }
        gemm_f32::gemm(packed, &b, m, yt, Activation::None, ctx.pool, rest)?;
        for (j, col) in yt.chunks_exact(m).enumerate() {
            for (i, &v) in col.iter().enumerate() {
                out[i * n + j] = v;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::model::weights::Source;
    use crate::ops::harness::{assert_close, float, int, iota, params, run};
    use std::sync::Arc;

    fn reader(blobs: &[&[f32]]) -> WeightReader {
        let mut bytes = Vec::new();
        for b in blobs {
            bytes.extend(0u32.to_le_bytes());
            bytes.extend(b.iter().flat_map(|v| v.to_le_bytes()));
        }
        WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "g.bin")
    }

    fn p(pairs: &[(usize, f32)]) -> ParamDict {
        let v: Vec<(usize, Value)> = pairs
            .iter()
            .map(|&(k, v)| (k, if k <= 1 { float(v) } else { int(v as i32) }))
            .collect();
        params(&v)
    }

    fn mat(r: usize, c: usize, seed: f32) -> Vec<f32> {
        iota(r * c)
            .iter()
            .map(|v| ((v + seed) * 0.53).sin())
            .collect()
    }

    /// f64 reference on row-major matrices: alpha * (A B + beta C) with C given per element.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        a: &[f32],
        b: &[f32],
        m: usize,
        n: usize,
        k: usize,
        c: impl Fn(usize, usize) -> f32,
        alpha: f32,
        beta: f32,
    ) -> Vec<f32> {
        let mut y = Vec::new();
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k)
                    .map(|kk| a[i * k + kk] as f64 * b[kk * n + j] as f64)
                    .sum();
                y.push((alpha as f64 * (s + beta as f64 * c(i, j) as f64)) as f32);
            }
        }
        y
    }

    fn transpose(x: &[f32], r: usize, c: usize) -> Vec<f32> {
        (0..c)
            .flat_map(|j| (0..r).map(move |i| x[i * c + j]))
            .collect()
    }

    #[test]
    fn by_hand() {
        // [[1, 2]] x [[3], [4]] = 11; alpha 2, beta 0.5, C = 4: 2 * (11 + 2) = 26.
        let op = Gemm::new(&p(&[(0, 2.0), (1, 0.5)]), &mut WeightReader::zeros()).unwrap();
        let out = run(
            &op,
            &[
                (Shape::d2(2, 1), vec![1.0, 2.0]),
                (Shape::d2(1, 2), vec![3.0, 4.0]),
                (Shape::d1(1), vec![4.0]),
            ],
        )
        .unwrap();
        assert_eq!(out[0], (Shape::d2(1, 1), vec![26.0]));
    }

    #[test]
    fn transposes_and_input_c_forms() {
        let (m, n, k) = (3, 5, 4);
        let (a, b) = (mat(m, k, 0.0), mat(k, n, 3.0));
        type CAt = Box<dyn Fn(&[f32], usize, usize) -> f32>;
        let cs: [(Shape, CAt); 6] = [
            (Shape::d1(1), Box::new(|c, _, _| c[0])),
            (Shape::d1(m), Box::new(|c, i, _| c[i])),
            (Shape::d1(n), Box::new(|c, _, j| c[j])),
            (Shape::d2(1, m), Box::new(|c, i, _| c[i])),
            (Shape::d2(n, m), Box::new(move |c, i, j| c[i * n + j])),
            (Shape::d2(n, 1), Box::new(|c, _, j| c[j])),
        ];
        for ta in [false, true] {
            for tb in [false, true] {
                for out_t in [false, true] {
                    for n1m in [false, true] {
                        let op = Gemm::new(
                            &p(&[
                                (0, 1.5),
                                (1, -0.5),
                                (2, ta as i32 as f32),
                                (3, tb as i32 as f32),
                                (11, n1m as i32 as f32),
                                (14, out_t as i32 as f32),
                            ]),
                            &mut WeightReader::zeros(),
                        )
                        .unwrap();
                        let ain = if ta {
                            (Shape::d2(m, k), transpose(&a, m, k))
                        } else {
                            (Shape::d2(k, m), a.clone())
                        };
                        // B as a 3-D blob with h = 1 under transB.
                        let bin = if tb {
                            (Shape::d3(k, 1, n), transpose(&b, k, n))
                        } else {
                            (Shape::d2(n, k), b.clone())
                        };
                        for (cs_shape, cf) in &cs {
                            let cdata = mat(cs_shape.len(), 1, 9.0);
                            let out =
                                run(&op, &[ain.clone(), bin.clone(), (*cs_shape, cdata.clone())])
                                    .unwrap();
                            let mut want =
                                reference(&a, &b, m, n, k, |i, j| cf(&cdata, i, j), 1.5, -0.5);
                            if out_t {
                                want = transpose(&want, m, n);
                            }
                            assert_close(&out[0].1, &want, 1e-5);
                            let (w, h) = if out_t { (m, n) } else { (n, m) };
                            let shape = if n1m {
                                Shape::d3(w, 1, h)
                            } else {
                                Shape::d2(w, h)
                            };
                            assert_eq!(out[0].0, shape);
                        }
                        let out = run(&op, &[ain.clone(), bin.clone()]).unwrap();
                        let mut want = reference(&a, &b, m, n, k, |_, _| 0.0, 1.5, -0.5);
                        if out_t {
                            want = transpose(&want, m, n);
                        }
                        assert_close(&out[0].1, &want, 1e-5);
                    }
                }
            }
        }
    }

    #[test]
    fn constant_operands_and_c_types() {
        let (m, n, k) = (2, 3, 4);
        let (a, b) = (mat(m, k, 1.0), mat(k, n, 2.0));
        let cdata = mat(m * n, 1, 5.0);
        for c_type in -1..=4 {
            let (len, cf): (usize, Box<dyn Fn(usize, usize) -> f32>) = match c_type {
                -1 => (0, Box::new(|_, _| 0.0)),
                0 => (1, Box::new(|_, _| cdata[0])),
                1 | 2 => (m, Box::new(|i, _| cdata[i])),
                3 => (m * n, Box::new(|i, j| cdata[i * n + j])),
                _ => (n, Box::new(|_, j| cdata[j])),
            };
            // constantA (transposed) + constantB (transposed) + constantC: no inputs.
            let at = transpose(&a, m, k);
            let bt = transpose(&b, k, n);
            let mut blobs: Vec<&[f32]> = vec![&at, &bt];
            if len > 0 {
                blobs.push(&cdata[..len]);
            }
            let mut w = reader(&blobs);
            let pd = p(&[
                (0, 0.5),
                (1, 2.0),
                (2, 1.0),
                (3, 1.0),
                (4, 1.0),
                (5, 1.0),
                (6, 1.0),
                (7, m as f32),
                (8, n as f32),
                (9, k as f32),
                (10, c_type as f32),
            ]);
            let op = Gemm::new(&pd, &mut w).unwrap();
            w.finish().unwrap();
            let out = run(&op, &[]).unwrap();
            assert_close(&out[0].1, &reference(&a, &b, m, n, k, &cf, 0.5, 2.0), 1e-5);
        }
        // constantB only: A from the input, C from a second input.
        let mut w = reader(&[&b]);
        let op = Gemm::new(&p(&[(5, 1.0), (8, n as f32), (9, k as f32)]), &mut w).unwrap();
        let c = vec![1.0, 2.0, 3.0];
        let out = run(
            &op,
            &[(Shape::d2(k, m), a.clone()), (Shape::d1(n), c.clone())],
        )
        .unwrap();
        assert_close(
            &out[0].1,
            &reference(&a, &b, m, n, k, |_, j| c[j], 1.0, 1.0),
            1e-5,
        );
        // constantA only: B is the first input.
        let mut w = reader(&[&a]);
        let op = Gemm::new(&p(&[(4, 1.0), (7, m as f32), (9, k as f32)]), &mut w).unwrap();
        let out = run(&op, &[(Shape::d2(n, k), b.clone())]).unwrap();
        assert_close(
            &out[0].1,
            &reference(&a, &b, m, n, k, |_, _| 0.0, 1.0, 1.0),
            1e-5,
        );
    }

    #[test]
    fn packed_kernel_agrees_with_the_loops() {
        use crate::ops::harness::run_threads;
        let shapes = [
            (1, 1, 1),
            (5, 7, 3),
            (37, 19, 70),
            (64, 130, 48),
            (3, 600, 17),
        ];
        for (si, &(m, n, k)) in shapes.iter().enumerate() {
            let bw = mat(k, n, si as f32);
            let cw = mat(n, 1, 4.0);
            for (ta, tb, out_t) in [(0, 0, 0), (1, 1, 1), (0, 1, 1), (1, 0, 0)] {
                for c_type in [None, Some(-1), Some(0), Some(4)] {
                    let mut blobs: Vec<&[f32]> = vec![&bw];
                    let mut pairs = vec![
                        (0, 1.25),
                        (1, 0.75),
                        (2, ta as f32),
                        (3, tb as f32),
                        (5, 1.0),
                        (8, n as f32),
                        (9, k as f32),
                        (14, out_t as f32),
                    ];
                    if let Some(t) = c_type {
                        pairs.extend([(6, 1.0), (10, t as f32)]);
                        match t {
                            0 => blobs.push(&cw[..1]),
                            4 => blobs.push(&cw),
                            _ => {}
                        }
                    }
                    let load = |min: usize| {
                        let mut w = reader(&blobs);
                        let mut op = Gemm::new(&p(&pairs), &mut w).unwrap();
                        w.finish().unwrap();
                        op.fast_min_work = min;
                        op
                    };
                    let (fast, slow) = (load(0), load(usize::MAX));
                    assert!(fast.fast.is_some());
                    let a = mat(m, k, 2.0);
                    let ain = if ta == 1 {
                        (Shape::d2(m, k), transpose(&a, m, k))
                    } else {
                        (Shape::d2(k, m), a)
                    };
                    let want = run(&slow, std::slice::from_ref(&ain)).unwrap();
                    for threads in [1, 3] {
                        let got = run_threads(&fast, std::slice::from_ref(&ain), threads).unwrap();
                        assert_eq!(got[0].0, want[0].0);
                        assert_close(&got[0].1, &want[0].1, 1e-5);
                    }
                }
            }
        }
        // An input C, a per-row C or a constant A keep the loops.
        let mut w = reader(&[&mat(3, 3, 0.0), &mat(3, 1, 0.0)]);
        let op = Gemm::new(
            &p(&[(5, 1.0), (6, 1.0), (7, 3.0), (8, 3.0), (9, 3.0), (10, 1.0)]),
            &mut w,
        )
        .unwrap();
        assert!(op.fast.is_none());
    }

    /// Weight file pieces for the int8 form.
    enum Piece<'a> {
        I8(&'a [i8]),
        F32(&'a [f32]),
        Raw(&'a [f32]),
    }

    fn reader_int8(pieces: &[Piece]) -> WeightReader {
        let mut bytes = Vec::new();
        for piece in pieces {
            match piece {
                Piece::I8(v) => {
                    bytes.extend(0x000D_4B38u32.to_le_bytes());
                    bytes.extend(v.iter().map(|&x| x as u8));
                    bytes.resize(bytes.len().next_multiple_of(4), 0);
                }
                Piece::F32(v) => {
                    bytes.extend(0u32.to_le_bytes());
                    bytes.extend(v.iter().flat_map(|v| v.to_le_bytes()));
                }
                Piece::Raw(v) => bytes.extend(v.iter().flat_map(|v| v.to_le_bytes())),
            }
        }
        WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "g.bin")
    }

    #[test]
    fn int8_by_hand() {
        // A = [[1, 2]] quantized with 127 / 2: [64, 127] (63.5 rounds away from zero);
        // B = [[3], [4]] stored int8 with scale 2: 64*3 + 127*4 = 700, / (63.5 * 2).
        let mut w = reader_int8(&[Piece::I8(&[3, 4]), Piece::Raw(&[2.0])]);
        let op = Gemm::new(&p(&[(5, 1.0), (8, 1.0), (9, 2.0), (18, 1.0)]), &mut w).unwrap();
        w.finish().unwrap();
        let out = run(&op, &[(Shape::d2(2, 1), vec![1.0, 2.0])]).unwrap();
        assert_eq!(out[0], (Shape::d2(1, 1), vec![700.0 * (1.0 / 127.0)]));
        // A constant A (transposed, K x M) with per-row scales, B and C as inputs; a zero
        // B gets scale 1. A = [[10, -20]] / [2]: rows [5, -10]; alpha 2, beta 3, C = 1.
        let mut w = reader_int8(&[Piece::I8(&[10, -20]), Piece::Raw(&[2.0])]);
        let pd = p(&[
            (0, 2.0),
            (1, 3.0),
            (2, 1.0),
            (4, 1.0),
            (7, 1.0),
            (9, 2.0),
            (18, 1.0),
        ]);
        let op = Gemm::new(&pd, &mut w).unwrap();
        w.finish().unwrap();
        let b = (Shape::d2(1, 2), vec![0.5, -1.0]); // B quantized with 127: [64, -127]
        let out = run(&op, &[b, (Shape::d1(1), vec![1.0])]).unwrap();
        let want = ((10 * 64 + 20 * 127) as f32 * (1.0 / (2.0 * 127.0)) + 3.0) * 2.0;
        assert_eq!(out[0].1, vec![want]);
        let out = run(&op, &[(Shape::d2(1, 2), vec![0.0, 0.0])]).unwrap();
        assert_eq!(out[0].1, vec![0.0]);
    }

    #[test]
    fn int8_forms_match_the_float_product() {
        let (m, n, k) = (5, 6, 9);
        let (a, b) = (mat(m, k, 1.0), mat(k, n, 2.0));
        let cw = mat(n, 1, 3.0);
        // A constant B stored int8 with the scale ncnn would give an input B.
        for (ta, tb) in [(0, 0), (1, 1), (0, 1), (1, 0)] {
            let ain = if ta == 1 {
                (Shape::d2(m, k), transpose(&a, m, k))
            } else {
                (Shape::d2(k, m), a.clone())
            };
            let bin = if tb == 1 {
                (Shape::d2(k, n), transpose(&b, k, n))
            } else {
                (Shape::d2(n, k), b.clone())
            };
            let base = [
                (0, 1.5),
                (1, 0.5),
                (2, ta as f32),
                (3, tb as f32),
                (18, 2.0),
            ];
            let dynamic = Gemm::new(&p(&base), &mut WeightReader::zeros()).unwrap();
            let c = (Shape::d1(n), cw.clone());
            let got = run(&dynamic, &[ain.clone(), bin.clone(), c.clone()]).unwrap();
            let want = reference(&a, &b, m, n, k, |_, j| cw[j], 1.5, 0.5);
            assert_close(&got[0].1, &want, 0.03);
            let mut pairs = base.to_vec();
            pairs.extend([(5, 1.0), (8, n as f32), (9, k as f32)]);
            let mut w = reader_int8(&[Piece::F32(&bin.1), Piece::Raw(&[7.0])]);
            assert!(Gemm::new(&p(&pairs), &mut w).is_err());
            let sb = 127.0 / b.iter().fold(0.0f32, |x, v| x.max(v.abs()));
            let b8: Vec<i8> = bin.1.iter().map(|&v| quantize(v, sb, 127)).collect();
            let mut w = reader_int8(&[Piece::I8(&b8), Piece::Raw(&[sb])]);
            let stored = Gemm::new(&p(&pairs), &mut w).unwrap();
            w.finish().unwrap();
            let got_s = run(&stored, &[ain.clone(), c]).unwrap();
            assert_eq!(got_s[0].1, got[0].1);
        }
    }

    #[test]
    fn int8_kernel_agrees_with_the_loop() {
        use crate::ops::harness::run_threads;
        for (si, &(m, n, k)) in [
            (1, 1, 1),
            (5, 7, 3),
            (37, 19, 70),
            (64, 130, 48),
            (3, 600, 17),
        ]
        .iter()
        .enumerate()
        {
            let bt8: Vec<i8> = (0..n * k)
                .map(|i| ((i * 37 + si * 11) % 255) as i32 - 127)
                .map(|v| v as i8)
                .collect();
            let cw = mat(n, 1, 4.0);
            for (ta, out_t, c_type) in
                [(0, 0, None), (1, 1, Some(4)), (0, 1, Some(0)), (1, 0, None)]
            {
                let mut pairs = vec![
                    (0, 1.25),
                    (1, 0.75),
                    (2, ta as f32),
                    (3, 1.0),
                    (5, 1.0),
                    (8, n as f32),
                    (9, k as f32),
                    (14, out_t as f32),
                    (18, 1.0),
                ];
                let mut pieces = vec![Piece::I8(&bt8)];
                if let Some(t) = c_type {
                    pairs.extend([(6, 1.0), (10, t as f32)]);
                    pieces.push(Piece::F32(if t == 0 { &cw[..1] } else { &cw }));
                }
                pieces.push(Piece::Raw(&[3.5]));
                let load = |min: usize| {
                    let mut w = reader_int8(&pieces);
                    let mut op = Gemm::new(&p(&pairs), &mut w).unwrap();
                    w.finish().unwrap();
                    op.fast_min_work = min;
                    op
                };
                let (fast, slow) = (load(0), load(usize::MAX));
                assert!(fast.int8_fast.is_some());
                let a = mat(m, k, 2.0);
                let ain = if ta == 1 {
                    (Shape::d2(m, k), transpose(&a, m, k))
                } else {
                    (Shape::d2(k, m), a)
                };
                // Without a constant C, also an input C per row.
                let mut ins = vec![ain];
                if c_type.is_none() && si % 2 == 0 {
                    ins.push((Shape::d1(m), mat(m, 1, 6.0)));
                }
                let want = run(&slow, &ins).unwrap();
                for threads in [1, 2, 3] {
                    let got = run_threads(&fast, &ins, threads).unwrap();
                    assert_eq!(got, want, "m={m} n={n} k={k} threads={threads}");
                }
            }
        }
    }

    #[test]
    fn errors() {
        let z = || WeightReader::zeros();
        assert!(Gemm::new(&p(&[(2, 2.0)]), &mut z()).is_err());
        assert!(Gemm::new(&p(&[(4, 1.0), (7, 2.0)]), &mut z()).is_err());
        assert!(Gemm::new(&p(&[(5, 1.0), (9, 2.0)]), &mut z()).is_err());
        assert!(Gemm::new(&p(&[(6, 1.0), (10, 5.0)]), &mut z()).is_err());
        assert!(Gemm::new(&p(&[(6, 1.0), (10, 3.0), (7, 2.0)]), &mut z()).is_err());
        assert!(Gemm::new(&p(&[(12, 4.0)]), &mut z()).is_err());
        for term in [-1.0, 4.0, 6.0, 400.0, 801.0] {
            assert!(Gemm::new(&p(&[(18, term)]), &mut z()).is_err());
        }
        assert!(Gemm::new(&params(&[(0, float(f32::NAN))]), &mut z()).is_err());
        let op = Gemm::new(&ParamDict::new(), &mut z()).unwrap();
        let (a, b) = (Shape::d2(4, 3), Shape::d2(5, 4));
        assert!(op.output_shapes(&[a]).is_err());
        assert!(op.output_shapes(&[a, Shape::d2(5, 3)]).is_err());
        assert!(op.output_shapes(&[Shape::d1(4), b]).is_err());
        assert!(op.output_shapes(&[Shape::d3(4, 2, 3), b]).is_err());
        assert!(op.output_shapes(&[a, b, Shape::d2(2, 3)]).is_err());
        assert!(op.output_shapes(&[a, b, Shape::d3(5, 3, 1)]).is_err());
        assert!(op
            .output_shapes(&[a, b, Shape::d2(5, 3), Shape::d1(1)])
            .is_err());
    }
}
