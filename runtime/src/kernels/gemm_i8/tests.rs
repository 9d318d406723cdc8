use super::*;
use crate::ops::activation::Activation;
use crate::rng::Rng;

const PRECISIONS: [Precision; 2] = [Precision::Int8, Precision::Int7];
const CORES: [CoreKind; 3] = [CoreKind::CortexA53, CoreKind::CortexA72, CoreKind::Other];

/// Plain int32 triple loop.
fn naive(a: &[i8], b: &[i8], m: usize, n: usize, k: usize) -> Vec<i32> {
    let mut c = vec![0i32; m * n];
    for i in 0..m {
        for p in 0..k {
            let x = a[i * k + p] as i32;
            for j in 0..n {
                c[i * n + j] += x * b[p * n + j] as i32;
            }
        }
    }
    c
}

fn random_q(rng: &mut Rng, len: usize, p: Precision) -> Vec<i8> {
    let q = p.qmax() as i64;
    (0..len).map(|_| rng.range(-q, q) as i8).collect()
}

/// Every tile of `a · b` through `micro` directly, as int32 accumulators.
fn micro_product(
    f: &Family,
    micro: MicroKernel,
    a: &[i8],
    b: &[i8],
    m: usize,
    n: usize,
    k: usize,
) -> Vec<i32> {
    let (mr, nr) = (f.mr, f.nr);
    let packed = PackedA8::new(*f, a, m, k);
    let kpad = f.k_padded(k);
    let panel = kpad * nr;
    // Garbage first: packing must write every byte, padding included.
    let mut pb = vec![0x55i8; n.div_ceil(nr) * panel];
    DenseB8 { data: b, n }.pack(0, k, 0, n, nr, f.kstep, &mut pb);
    let mut c = vec![0i32; m * n];
    for p in 0..m.div_ceil(mr) {
        for jp in 0..n.div_ceil(nr) {
            let mut acc: Acc = [i32::MIN; MR_MAX * NR_MAX];
            micro.run(
                f,
                kpad / f.kstep,
                &packed.data[p * mr * kpad..(p + 1) * mr * kpad],
                &pb[jp * panel..(jp + 1) * panel],
                &mut acc,
            );
            for r in 0..mr.min(m - p * mr) {
                for j in 0..nr.min(n - jp * nr) {
                    c[(p * mr + r) * n + jp * nr + j] = acc[r * NR_MAX + j];
                }
            }
        }
    }
    c
}

fn check_micro(f: &Family, a: &[i8], b: &[i8], m: usize, n: usize, k: usize, what: &str) {
    let want = naive(a, b, m, n, k);
    for core in CORES {
        let micro = f.micro_for(core);
        let got = micro_product(f, micro, a, b, m, n, k);
        if let Some(i) = (0..m * n).find(|&i| got[i] != want[i]) {
            panic!(
                "{} / {} ({core:?}) {what} m={m} n={n} k={k} at ({}, {}): {} vs {}",
                f.name,
                micro.name,
                i / n,
                i % n,
                got[i],
                want[i]
            );
        }
    }
}

#[test]
fn families_are_consistent() {
    for p in PRECISIONS {
        let all = Family::all_available(p);
        assert_eq!(all[0].name, Family::generic(p).name);
        let best = Family::best(p);
        assert!(all.iter().any(|f| f.name == best.name));
        #[cfg(target_arch = "aarch64")]
        assert_ne!(best.name, Family::generic(p).name);
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            assert_ne!(best.name, Family::generic(p).name);
        }
        for f in all {
            assert_eq!(f.precision, p);
            assert!(
                f.mr <= MR_MAX && f.nr <= NR_MAX && f.kstep > 0,
                "{}",
                f.name
            );
        }
    }
}

#[test]
fn micro_kernels_are_exact_on_edge_and_random_shapes() {
    let mut rng = Rng::new(11);
    for p in PRECISIONS {
        for f in Family::all_available(p) {
            let (mr, nr, ks) = (f.mr, f.nr, f.kstep);
            let mut shapes = vec![
                (1, 1, 1),
                (mr, nr, ks),
                (mr + 1, nr + 1, ks + 1),
                (mr.max(2) - 1, nr.max(2) - 1, ks.max(2) - 1),
                (2 * mr + 3, 3 * nr - 1, 8 * ks + 3),
                (3, 5, 64),
                (5, 17, 65),
                (7, 33, 127),
            ];
            for _ in 0..20 {
                shapes.push((
                    rng.range(1, 20) as usize,
                    rng.range(1, 40) as usize,
                    rng.range(1, 300) as usize,
                ));
            }
            for (m, n, k) in shapes {
                let a = random_q(&mut rng, m * k, p);
                let b = random_q(&mut rng, k * n, p);
                check_micro(&f, &a, &b, m, n, k, "random");
            }
        }
    }
}

/// All-±qmax operands at large K: the sums the int16 flush intervals are sized for.
#[test]
fn micro_kernels_are_exact_at_the_extremes() {
    for p in PRECISIONS {
        let q = p.qmax() as i8;
        for f in Family::all_available(p) {
            for &(m, n, k) in &[(f.mr, f.nr, 8192), (f.mr + 1, f.nr + 3, 8203), (3, 5, 1000)] {
                let alt = |i: usize, k: usize| if (i % k).is_multiple_of(2) { q } else { -q };
                let cases: [(&str, Vec<i8>, Vec<i8>); 5] = [
                    ("all +q", vec![q; m * k], vec![q; k * n]),
                    ("all -q", vec![-q; m * k], vec![-q; k * n]),
                    ("+q x -q", vec![q; m * k], vec![-q; k * n]),
                    // Same sign per k: every product +q², also with mixed-sign operands.
                    (
                        "alternating, same signs",
                        (0..m * k).map(|i| alt(i, k)).collect(),
                        (0..k * n).map(|i| alt(i / n, usize::MAX)).collect(),
                    ),
                    (
                        "alternating products",
                        vec![q; m * k],
                        (0..k * n).map(|i| alt(i / n, usize::MAX)).collect(),
                    ),
                ];
                for (what, a, b) in cases {
                    check_micro(&f, &a, &b, m, n, k, what);
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum OutKind {
    F32,
    I8,
}

/// `gemm` against the naive product through the same epilogue (bit-exact).
#[allow(clippy::too_many_arguments)]
fn check_gemm(
    f: Family,
    a: &[i8],
    b: &dyn PackB8,
    want_acc: &[i32],
    m: usize,
    n: usize,
    k: usize,
    out_kind: OutKind,
    act: Activation,
    threads: usize,
    rng: &mut Rng,
) {
    let scale_in: Vec<f32> = (0..m).map(|_| rng.uniform(0.0, 0.01)).collect();
    let bias: Vec<f32> = (0..m).map(|_| rng.uniform(-2.0, 2.0)).collect();
    let requant = Requant {
        scale_in: &scale_in,
        bias: m.is_multiple_of(2).then_some(&bias[..]),
        act,
        top_scale: 20.0,
        qmax: f.precision.qmax(),
    };
    let packed = PackedA8::new(f, a, m, k);
    let pool = Pool::new(threads).unwrap();
    let mut scratch = vec![f32::NAN; packed.scratch_len(n) * threads];
    let what = format!(
        "{} m={m} n={n} k={k} {out_kind:?} {act:?} threads={threads}",
        f.name
    );
    match out_kind {
        OutKind::F32 => {
            let mut got = vec![f32::NAN; m * n];
            gemm(
                &packed,
                b,
                n,
                &requant,
                OutBuf::F32(&mut got),
                &pool,
                &mut scratch,
            )
            .unwrap();
            for (i, (g, &acc)) in got.iter().zip(want_acc).enumerate() {
                let w = requant.dequant(i / n, acc);
                assert_eq!(g.to_bits(), w.to_bits(), "{what} at {i}: {g} vs {w}");
            }
        }
        OutKind::I8 => {
            let mut got = vec![-128i8; m * n];
            gemm(
                &packed,
                b,
                n,
                &requant,
                OutBuf::I8(&mut got),
                &pool,
                &mut scratch,
            )
            .unwrap();
            for (i, (&g, &acc)) in got.iter().zip(want_acc).enumerate() {
                assert_eq!(g, requant.requant(i / n, acc), "{what} at {i}");
            }
        }
    }
}

const ACTS: [Activation; 3] = [
    Activation::None,
    Activation::ReLU,
    Activation::LeakyReLU(0.1),
];

#[test]
fn gemm_dense_matches_naive() {
    let mut rng = Rng::new(12);
    for p in PRECISIONS {
        for f in Family::all_available(p) {
            let mut shapes = vec![
                (1, 1, 1),
                (f.mr, f.nr, 1),
                (f.mr + 1, f.nr - 1, f.kstep + 1),
                (33, 2 * NC_MAX + 7, 9),
                (9, 70, 4608),
            ];
            for _ in 0..12 {
                shapes.push((
                    rng.range(1, 40) as usize,
                    rng.range(1, 300) as usize,
                    rng.range(1, 600) as usize,
                ));
            }
            for (i, (m, n, k)) in shapes.into_iter().enumerate() {
                let a = random_q(&mut rng, m * k, p);
                let b = random_q(&mut rng, k * n, p);
                let want = naive(&a, &b, m, n, k);
                let dense = DenseB8 { data: &b, n };
                let out = if i % 2 == 0 {
                    OutKind::F32
                } else {
                    OutKind::I8
                };
                for threads in [1, 2] {
                    let act = ACTS[(i + threads) % ACTS.len()];
                    check_gemm(f, &a, &dense, &want, m, n, k, out, act, threads, &mut rng);
                }
            }
        }
    }
}

/// The explicit im2col matrix (`K x N`, zero padding) of an input.
fn im2col_matrix(b: &Im2colB8, c: usize, out_h: usize) -> Vec<i8> {
    let (kw, kh) = (b.kernel_w, b.kernel_h);
    let (k, n) = (c * kh * kw, b.out_w * out_h);
    let mut mat = vec![0i8; k * n];
    for row in 0..k {
        let (ch, ky, kx) = (row / (kh * kw), row / kw % kh, row % kw);
        for col in 0..n {
            let (oy, ox) = (col / b.out_w, col % b.out_w);
            let iy = (oy * b.stride_h + ky * b.dilation_h) as isize - b.pad_top as isize;
            let ix = (ox * b.stride_w + kx * b.dilation_w) as isize - b.pad_left as isize;
            if iy >= 0 && ix >= 0 && iy < b.h as isize && ix < b.w as isize {
                mat[row * n + col] = b.input[(ch * b.h + iy as usize) * b.w + ix as usize];
            }
        }
    }
    mat
}

#[test]
fn gemm_im2col_matches_naive() {
    let mut rng = Rng::new(13);
    // (channels, h, w, kernel, stride, dilation, pad, out channels)
    let convs = [
        (3, 9, 11, 3, 2, 1, 1, 5),
        (4, 7, 7, 3, 1, 1, 1, 17),
        (2, 12, 10, 3, 1, 2, 2, 8),
        (5, 6, 13, 1, 1, 1, 0, 9),
        (3, 10, 9, 5, 3, 1, 2, 3),
        (1, 4, 4, 2, 1, 3, 3, 1),
        (16, 5, 5, 3, 1, 1, 1, 33),
    ];
    for p in PRECISIONS {
        for f in Family::all_available(p) {
            for (i, &(c, h, w, kernel, stride, dil, pad, m)) in convs.iter().enumerate() {
                let input = random_q(&mut rng, c * h * w, p);
                let span = dil * (kernel - 1) + 1;
                let (out_w, out_h) = (
                    (w + 2 * pad - span) / stride + 1,
                    (h + 2 * pad - span) / stride + 1,
                );
                let b = Im2colB8 {
                    input: &input,
                    w,
                    h,
                    kernel_w: kernel,
                    kernel_h: kernel,
                    dilation_w: dil,
                    dilation_h: dil,
                    stride_w: stride,
                    stride_h: stride,
                    pad_left: pad,
                    pad_top: pad,
                    out_w,
                };
                let (k, n) = (c * kernel * kernel, out_w * out_h);
                let mat = im2col_matrix(&b, c, out_h);
                let a = random_q(&mut rng, m * k, p);
                let want = naive(&a, &mat, m, n, k);
                let out = if i % 2 == 0 {
                    OutKind::I8
                } else {
                    OutKind::F32
                };
                for threads in [1, 2] {
                    let act = ACTS[(i + threads) % ACTS.len()];
                    check_gemm(f, &a, &b, &want, m, n, k, out, act, threads, &mut rng);
                }
            }
        }
    }
}

#[test]
fn im2col_packing_matches_explicit_matrix() {
    // 2 channels 4x5, kernel 3x2, stride (2, 1), dilation (1, 2), pads left 1 top 2.
    let (c, h, w) = (2usize, 4usize, 5usize);
    let input: Vec<i8> = (0..c * h * w).map(|v| v as i8 + 1).collect();
    let (kw, kh, sw, sh, dw, dh, pl, pt) = (3, 2, 2, 1, 1, 2, 1, 2);
    let out_w = (w + pl + 1 - (dw * (kw - 1) + 1)) / sw + 1;
    let out_h = (h + pt - (dh * (kh - 1) + 1)) / sh + 1;
    let b = Im2colB8 {
        input: &input,
        w,
        h,
        kernel_w: kw,
        kernel_h: kh,
        dilation_w: dw,
        dilation_h: dh,
        stride_w: sw,
        stride_h: sh,
        pad_left: pl,
        pad_top: pt,
        out_w,
    };
    let mat = im2col_matrix(&b, c, out_h);
    let (k, n) = (c * kh * kw, out_w * out_h);
    for (nr, ks) in [(4, 1), (4, 4), (3, 8), (16, 2)] {
        let kpad = k.div_ceil(ks) * ks;
        let mut packed = vec![0x55i8; kpad * n.div_ceil(nr) * nr];
        b.pack(0, k, 0, n, nr, ks, &mut packed);
        for row in 0..kpad {
            for col in 0..n.div_ceil(nr) * nr {
                let at = (col / nr) * kpad * nr + ((row / ks) * nr + col % nr) * ks + row % ks;
                let want = if row < k && col < n {
                    mat[row * n + col]
                } else {
                    0
                };
                assert_eq!(packed[at], want, "nr={nr} kstep={ks} row {row} col {col}");
            }
        }
    }
}

/// Each worker takes the variant of its core: forcing every core type through the pool
/// (as `EQ_CPU_KIND` does) gives the same bits.
#[test]
fn per_core_variants_agree_through_gemm() {
    let mut rng = Rng::new(14);
    for p in PRECISIONS {
        let best = Family::best(p);
        let (m, n, k) = (2 * best.mr + 1, 3 * best.nr + 2, 300);
        let a = random_q(&mut rng, m * k, p);
        let b = random_q(&mut rng, k * n, p);
        let want = naive(&a, &b, m, n, k);
        for core in CORES {
            // A family whose every slot is `core`'s variant stands in for a pool on that core.
            let micro = best.micro_for(core);
            let forced = Family::per_core(
                best.name, p, best.mr, best.nr, best.kstep, micro, micro, micro,
            );
            let dense = DenseB8 { data: &b, n };
            check_gemm(
                forced,
                &a,
                &dense,
                &want,
                m,
                n,
                k,
                OutKind::I8,
                Activation::ReLU,
                2,
                &mut rng,
            );
        }
    }
}

#[test]
fn rejects_bad_sizes() {
    let f = Family::best(Precision::Int8);
    let packed = PackedA8::new(f, &[1; 6], 2, 3);
    let pool = Pool::new(1).unwrap();
    let b = [1i8; 12];
    let scale = [1.0f32; 2];
    let requant = Requant {
        scale_in: &scale,
        bias: None,
        act: Activation::None,
        top_scale: 1.0,
        qmax: 127,
    };
    let mut scratch = vec![0.0; packed.scratch_len(4)];
    let mut out = [0.0f32; 7];
    let dense = DenseB8 { data: &b, n: 4 };
    assert!(gemm(
        &packed,
        &dense,
        4,
        &requant,
        OutBuf::F32(&mut out),
        &pool,
        &mut scratch
    )
    .is_err());
    let mut out = [0.0f32; 8];
    assert!(gemm(
        &packed,
        &dense,
        4,
        &requant,
        OutBuf::F32(&mut out),
        &pool,
        &mut []
    )
    .is_err());
    gemm(
        &packed,
        &dense,
        4,
        &requant,
        OutBuf::F32(&mut out),
        &pool,
        &mut scratch,
    )
    .unwrap();
    assert_eq!(out, [3.0; 8]);
}
