use super::*;
use crate::ops::activation::Activation;
use crate::rng::Rng;

const PRECISIONS: [Precision; 2] = [Precision::Int8, Precision::Int7];

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

/// The raw int32 product through one kernel (every tile, edge tiles included).
fn product(
    kern: &'static Kernel,
    a: &[i8],
    b: &dyn BSource,
    m: usize,
    n: usize,
    k: usize,
    threads: usize,
) -> Vec<i32> {
    let packed = PackedA8::new(KernelSet::single(kern), a, m, k);
    let pool = Pool::new(threads).unwrap();
    // Garbage in the scratch: packing must write every byte it lets the kernel read.
    let mut scratch = vec![f32::from_bits(0x5555_5555); packed.scratch_len(n) * threads];
    let mut c = vec![i32::MIN; m * n];
    gemm_i32(&packed, b, n, &mut c, &pool, &mut scratch).unwrap();
    c
}

fn check_product(
    kern: &'static Kernel,
    a: &[i8],
    b: &[i8],
    m: usize,
    n: usize,
    k: usize,
    what: &str,
) {
    let want = naive(a, b, m, n, k);
    let got = product(kern, a, &DenseB8 { data: b, n }, m, n, k, 1);
    if let Some(i) = (0..m * n).find(|&i| got[i] != want[i]) {
        panic!(
            "{} {what} m={m} n={n} k={k} at ({}, {}): {} vs {}",
            kern.name,
            i / n,
            i % n,
            got[i],
            want[i]
        );
    }
}

#[test]
fn kernel_sets_are_consistent() {
    for p in PRECISIONS {
        let all = all_kernels(p);
        assert_eq!(all[0].name, generic::kernel(p).name);
        let best = KernelSet::best(p);
        for core in SLOTS {
            let k = best.for_core(core);
            assert!(all.iter().any(|x| std::ptr::eq(*x, k)), "{}", k.name);
        }
        #[cfg(target_arch = "aarch64")]
        {
            assert_ne!(best.for_core(CoreKind::CortexA53).layout, Layout::Steps(4));
            assert_ne!(best.for_core(CoreKind::CortexA72).layout, Layout::Steps(4));
        }
        for kern in all {
            assert_eq!(kern.precision, p, "{}", kern.name);
            assert!(kern.mr <= MR_MAX && kern.nr <= NR_MAX, "{}", kern.name);
            assert!(
                !kern.pair_sums || kern.layout == Layout::Pairs32,
                "{}",
                kern.name
            );
        }
        // A set restricted to some cores packs only their layouts; other cores fall back.
        let little = KernelSet::for_cores(p, &[CoreKind::CortexA53]);
        assert_eq!(little.used().count(), 1);
        assert!(std::ptr::eq(
            little.for_core(CoreKind::CortexA72),
            little.for_core(CoreKind::CortexA53)
        ));
    }
}

#[test]
fn layouts_pad_k_to_whole_steps() {
    assert_eq!(Layout::Steps(4).k_padded(0), 4);
    assert_eq!(Layout::Steps(4).k_padded(9), 12);
    assert_eq!(Layout::Pairs32.k_padded(33), 64);
    assert_eq!(Layout::Wide16.k_padded(7), 8);
    assert_eq!(Layout::Wide16.panel_bytes(7, 8), 8 * 8 * 2);
    // Pairs32 stores even k first: positions 0..16 are k 0, 2, ..., 30.
    let pos: Vec<usize> = (0..32).map(|o| Layout::Pairs32.pos(o)).collect();
    assert_eq!(&pos[..4], &[0, 16, 1, 17]);
    let mut seen = pos.clone();
    seen.sort();
    assert_eq!(seen, (0..32).collect::<Vec<_>>());
}

#[test]
fn products_are_exact_on_edge_and_random_shapes() {
    let mut rng = Rng::new(11);
    for p in PRECISIONS {
        for kern in all_kernels(p) {
            let (mr, nr, ks) = (kern.mr, kern.nr, kern.layout.kstep());
            let mut shapes = vec![
                (1, 1, 1),
                (mr, nr, ks),
                (mr + 1, nr + 1, ks + 1),
                (mr.max(2) - 1, nr.max(2) - 1, ks.max(2) - 1),
                (2 * mr + 3, 3 * nr - 1, 8 * ks + 3),
                (3, 5, 64),
                (5, 17, 65),
                (7, 33, 127),
                (9, 40, 17),
            ];
            // Every K remainder of the unrolled loops (up to 16 pairs of k per iteration).
            shapes.extend((1..=40).map(|k| (mr, nr, k)));
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
                check_product(kern, &a, &b, m, n, k, "random");
            }
        }
    }
}

/// All-±qmax operands at large K: the sums the int16 flush intervals (and, for the pair-sum
/// kernels, the byte sums and their products) are sized for.
#[test]
fn products_are_exact_at_the_extremes() {
    for p in PRECISIONS {
        let q = p.qmax() as i8;
        for kern in all_kernels(p) {
            for &(m, n, k) in &[
                (kern.mr, kern.nr, 8192),
                (kern.mr + 1, kern.nr + 3, 8203),
                (3, 5, 1000),
            ] {
                let alt = |i: usize, k: usize| if (i % k).is_multiple_of(2) { q } else { -q };
                let cases: [(&str, Vec<i8>, Vec<i8>); 6] = [
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
                    // Pair sums at their extremes: a_even = b_odd = q, a_odd = b_even = -q.
                    (
                        "pair sums ±2q",
                        (0..m * k).map(|i| alt(i, k)).collect(),
                        (0..k * n).map(|i| -alt(i / n, usize::MAX)).collect(),
                    ),
                ];
                for (what, a, b) in cases {
                    check_product(kern, &a, &b, m, n, k, what);
                }
            }
        }
    }
}

/// `gemm` against the naive product through the scalar epilogue (bit-exact), with random
/// scales and biases.
#[allow(clippy::too_many_arguments)]
fn check_gemm(
    set: KernelSet,
    a: &[i8],
    b: &dyn BSource,
    want_acc: &[i32],
    m: usize,
    n: usize,
    k: usize,
    out_kind: OutKind,
    act: Activation,
    pool: &Pool,
    rng: &mut Rng,
) {
    let scale_in: Vec<f32> = (0..m).map(|_| rng.uniform(0.0, 0.01)).collect();
    let bias: Vec<f32> = (0..m).map(|_| rng.uniform(-2.0, 2.0)).collect();
    let requant = Requant {
        scale_in: &scale_in,
        bias: m.is_multiple_of(2).then_some(&bias[..]),
        act,
        top_scale: 20.0,
        qmax: set.precision().qmax(),
    };
    check_gemm_with(set, a, b, want_acc, (m, n, k), out_kind, &requant, pool);
}

/// `gemm` with `requant` against the naive product through the scalar epilogue (bit-exact).
#[allow(clippy::too_many_arguments)]
fn check_gemm_with(
    set: KernelSet,
    a: &[i8],
    b: &dyn BSource,
    want_acc: &[i32],
    (m, n, k): (usize, usize, usize),
    out_kind: OutKind,
    requant: &Requant,
    pool: &Pool,
) {
    let packed = PackedA8::new(set, a, m, k);
    let threads = pool.threads();
    let mut scratch = vec![f32::NAN; packed.scratch_len(n) * threads];
    let what = format!(
        "{} m={m} n={n} k={k} {out_kind:?} {:?} threads={threads}",
        set.for_core(CoreKind::Other).name,
        requant.act
    );
    match out_kind {
        OutKind::F32 => {
            let mut got = vec![f32::NAN; m * n];
            let out = OutBuf::F32(&mut got);
            gemm(&packed, b, n, requant, out, pool, &mut scratch).unwrap();
            for (i, (g, &acc)) in got.iter().zip(want_acc).enumerate() {
                let w = requant.dequant(i / n, acc);
                assert_eq!(g.to_bits(), w.to_bits(), "{what} at {i}: {g} vs {w}");
            }
        }
        OutKind::I8 => {
            let mut got = vec![-128i8; m * n];
            let out = OutBuf::I8(&mut got);
            gemm(&packed, b, n, requant, out, pool, &mut scratch).unwrap();
            for (i, (&g, &acc)) in got.iter().zip(want_acc).enumerate() {
                assert_eq!(g, requant.requant(i / n, acc), "{what} at {i}");
            }
        }
        OutKind::I32 => unreachable!(),
    }
}

/// Scales that put many outputs exactly on a half (ties must round away from zero), on
/// quarters (LeakyReLU 0.5 of a half) and far past ±qmax (clamps), in edge tiles of every
/// kernel and for every output kind and activation.
#[test]
fn gemm_epilogue_rounds_ties_away_and_clamps() {
    let mut rng = Rng::new(31);
    let pool = Pool::new(1).unwrap();
    let (m, n, k) = (MR_MAX + 3, NR_MAX * 2 + 5, 3);
    let scale_in: Vec<f32> = (0..m).map(|c| [0.5, 0.25, 1.5, 0.125][c % 4]).collect();
    let bias: Vec<f32> = (0..m).map(|c| [0.0, 0.5, -0.25, -0.5][c % 4]).collect();
    let acts = [
        Activation::None,
        Activation::ReLU,
        Activation::LeakyReLU(0.5),
        Activation::Clip {
            min: -20.5,
            max: 30.5,
        },
    ];
    for p in PRECISIONS {
        for kern in all_kernels(p) {
            let a = random_q(&mut rng, m * k, p);
            let b = random_q(&mut rng, k * n, p);
            let want = naive(&a, &b, m, n, k);
            for act in acts {
                for top_scale in [1.0, 0.5, 3.0] {
                    let requant = Requant {
                        scale_in: &scale_in,
                        bias: Some(&bias),
                        act,
                        top_scale,
                        qmax: p.qmax(),
                    };
                    for out in [OutKind::F32, OutKind::I8] {
                        let dense = DenseB8 { data: &b, n };
                        let set = KernelSet::single(kern);
                        check_gemm_with(set, &a, &dense, &want, (m, n, k), out, &requant, &pool);
                    }
                }
            }
        }
    }
}

const ACTS: [Activation; 5] = [
    Activation::None,
    Activation::ReLU,
    Activation::LeakyReLU(0.1),
    Activation::Clip {
        min: -1.0,
        max: 3.0,
    },
    Activation::Sigmoid,
];

#[test]
fn gemm_dense_matches_naive() {
    let mut rng = Rng::new(12);
    let pools = [Pool::new(1).unwrap(), Pool::new(2).unwrap()];
    for p in PRECISIONS {
        for kern in all_kernels(p) {
            let set = KernelSet::single(kern);
            let mut shapes = vec![
                (1, 1, 1),
                (kern.mr, kern.nr, 1),
                (kern.mr + 1, kern.nr - 1, kern.layout.kstep() + 1),
                (33, 2 * NC_MAX + 7, 9),
                (9, 70, 4608),
                (16, 64, 64),
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
                let out = [OutKind::F32, OutKind::I8][i % 2];
                for (t, pool) in pools.iter().enumerate() {
                    let act = ACTS[(i + t) % ACTS.len()];
                    check_gemm(set, &a, &dense, &want, m, n, k, out, act, pool, &mut rng);
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

/// (channels, h, w, kernel, stride, dilation, pad, out channels)
type Conv = (usize, usize, usize, usize, usize, usize, usize, usize);
const CONVS: [Conv; 8] = [
    (3, 9, 11, 3, 2, 1, 1, 5),
    (4, 7, 7, 3, 1, 1, 1, 17),
    (2, 12, 10, 3, 1, 2, 2, 8),
    (5, 6, 13, 1, 1, 1, 0, 9),
    (3, 10, 9, 5, 3, 1, 2, 3),
    (1, 4, 4, 2, 1, 3, 3, 1),
    (16, 5, 5, 3, 1, 1, 1, 33),
    (3, 23, 21, 3, 2, 1, 0, 16),
];

fn im2col_of(
    input: &[i8],
    (c, h, w, kernel, stride, dil, pad): (usize, usize, usize, usize, usize, usize, usize),
) -> (Im2colB8<'_>, usize, usize) {
    let span = dil * (kernel - 1) + 1;
    let (out_w, out_h) = (
        (w + 2 * pad - span) / stride + 1,
        (h + 2 * pad - span) / stride + 1,
    );
    let b = Im2colB8 {
        input,
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
    (b, c * kernel * kernel, out_h)
}

#[test]
fn gemm_im2col_matches_naive() {
    let mut rng = Rng::new(13);
    let pools = [Pool::new(1).unwrap(), Pool::new(2).unwrap()];
    for p in PRECISIONS {
        for kern in all_kernels(p) {
            let set = KernelSet::single(kern);
            for (i, &(c, h, w, kernel, stride, dil, pad, m)) in CONVS.iter().enumerate() {
                let input = random_q(&mut rng, c * h * w, p);
                let (b, k, out_h) = im2col_of(&input, (c, h, w, kernel, stride, dil, pad));
                let n = b.out_w * out_h;
                let mat = im2col_matrix(&b, c, out_h);
                let a = random_q(&mut rng, m * k, p);
                let want = naive(&a, &mat, m, n, k);
                let out = [OutKind::I8, OutKind::F32][i % 2];
                for (t, pool) in pools.iter().enumerate() {
                    let act = ACTS[(i + t) % ACTS.len()];
                    check_gemm(set, &a, &b, &want, m, n, k, out, act, pool, &mut rng);
                }
                assert_eq!(
                    product(kern, &a, &b, m, n, k, 2),
                    want,
                    "{} conv {i}",
                    kern.name
                );
            }
        }
    }
}

#[test]
fn im2col_rows_match_the_explicit_matrix() {
    let mut rng = Rng::new(15);
    for &(c, h, w, kernel, stride, dil, pad, _) in &CONVS {
        let input = random_q(&mut rng, c * h * w, Precision::Int8);
        let (b, k, out_h) = im2col_of(&input, (c, h, w, kernel, stride, dil, pad));
        let n = b.out_w * out_h;
        let mat = im2col_matrix(&b, c, out_h);
        for row in 0..k {
            for n0 in [0, 1, n / 2, n - 1] {
                let mut got = vec![99i8; n - n0];
                b.row_into(row, n0, &mut got);
                assert_eq!(
                    got,
                    &mat[row * n + n0..(row + 1) * n],
                    "row {row} from {n0}"
                );
            }
        }
    }
}

/// Packed B against the layout definitions, starting from garbage.
#[test]
fn packing_matches_the_layouts() {
    let mut rng = Rng::new(16);
    let (k, n) = (45usize, 37usize);
    let b = random_q(&mut rng, k * n, Precision::Int8);
    let kernels: Vec<&'static Kernel> = PRECISIONS.iter().flat_map(|&p| all_kernels(p)).collect();
    for kern in kernels {
        let (layout, nr) = (kern.layout, kern.nr);
        for (n0, nc) in [(0, n), (3, 17), (5, 1)] {
            let panel = layout.panel_bytes(k, nr);
            let panels = nc.div_ceil(nr);
            let mut dst = vec![0x55u8; panels * panel + OVERREAD];
            let mut sums = vec![7i32; panels * nr];
            let mut rows = vec![0i8; layout.kstep() * nc];
            pack::pack_b(
                kern,
                &DenseB8 { data: &b, n },
                k,
                n0,
                nc,
                &mut dst,
                &mut sums,
                &mut rows,
            );
            for kk in 0..layout.k_padded(k) {
                for col in 0..panels * nr {
                    let want = if kk < k && col < nc {
                        b[kk * n + n0 + col]
                    } else {
                        0
                    };
                    let (p, j) = (col / nr, col % nr);
                    let got = match layout {
                        Layout::Wide16 => {
                            let at = p * panel + 2 * (kk * nr + j);
                            i16::from_ne_bytes([dst[at], dst[at + 1]]) as i32
                        }
                        _ => {
                            let ks = layout.kstep();
                            let at = p * panel + ((kk / ks) * nr + j) * ks + layout.pos(kk % ks);
                            dst[at] as i8 as i32
                        }
                    };
                    assert_eq!(
                        got, want as i32,
                        "{} n0={n0} nc={nc} k={kk} col={col}",
                        kern.name
                    );
                }
            }
            assert!(
                dst[panels * panel..].iter().all(|&v| v == 0),
                "{} over-read tail",
                kern.name
            );
            if kern.pair_sums {
                for col in 0..panels * nr {
                    let column: Vec<i8> = (0..k)
                        .map(|kk| if col < nc { b[kk * n + n0 + col] } else { 0 })
                        .collect();
                    assert_eq!(
                        sums[col],
                        pack::pair_sum(&column),
                        "{} col {col}",
                        kern.name
                    );
                }
            }
        }
    }
}

/// A big.LITTLE pool: each worker packs B in its own kernel's layout and reads the A packed
/// for it; the result is the same bits as the reference.
/// A B source whose contiguous rows are one value short of what was asked for.
struct ShortRows<'a>(&'a [i8]);

impl BSource for ShortRows<'_> {
    fn row_into(&self, _k: usize, _n0: usize, dst: &mut [i8]) {
        dst.fill(1);
    }
    fn row_slice(&self, _k: usize, _n0: usize, len: usize) -> Option<&[i8]> {
        Some(&self.0[..len - 1])
    }
}

/// `BSource` is a public trait: a `row_slice` shorter than asked for must panic in every
/// kernel's packing (whose SIMD paths read the row unchecked), not read past it.
#[test]
fn short_b_rows_panic_in_every_packing() {
    let (k, n) = (40usize, 48usize);
    let data = vec![1i8; n];
    let kernels: Vec<&'static Kernel> = PRECISIONS.iter().flat_map(|&p| all_kernels(p)).collect();
    for kern in kernels {
        let (layout, nr) = (kern.layout(), kern.nr());
        let panel = layout.panel_bytes(k, nr);
        let panels = n.div_ceil(nr);
        let mut dst = vec![0u8; panels * panel + OVERREAD];
        let mut sums = vec![0i32; panels * nr];
        let mut rows = vec![0i8; layout.kstep() * n];
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pack::pack_b(
                kern,
                &ShortRows(&data),
                k,
                0,
                n,
                &mut dst,
                &mut sums,
                &mut rows,
            )
        }));
        assert!(r.is_err(), "{}: short row accepted", kern.name());
    }
}

/// The same through the public entry point: the worker's panic becomes an error.
#[test]
fn short_b_rows_fail_the_product() {
    let (m, k, n) = (8usize, 40usize, 48usize);
    let a = vec![1i8; m * k];
    let data = vec![1i8; n];
    let pool = Pool::new(1).expect("pool");
    let packed = PackedA8::new(KernelSet::best(Precision::Int8), &a, m, k);
    let mut scratch = vec![0.0f32; packed.scratch_len(n)];
    let mut out = vec![0i32; m * n];
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        gemm_i32(&packed, &ShortRows(&data), n, &mut out, &pool, &mut scratch)
    }));
    assert!(!matches!(r, Ok(Ok(()))), "short B rows accepted");
}

#[test]
fn mixed_cores_agree_through_gemm() {
    let mut rng = Rng::new(14);
    for p in PRECISIONS {
        let set = KernelSet::best(p);
        let (m, n, k) = (19, 3 * NC_MAX / 2 + 5, 300);
        let a = random_q(&mut rng, m * k, p);
        let b = random_q(&mut rng, k * n, p);
        let want = naive(&a, &b, m, n, k);
        let mut pool = Pool::new(3).unwrap();
        pool.set_cores_for_test(vec![
            CoreKind::CortexA53,
            CoreKind::CortexA72,
            CoreKind::Other,
        ]);
        let dense = DenseB8 { data: &b, n };
        check_gemm(
            set,
            &a,
            &dense,
            &want,
            m,
            n,
            k,
            OutKind::I8,
            Activation::ReLU,
            &pool,
            &mut rng,
        );
        check_gemm(
            set,
            &a,
            &dense,
            &want,
            m,
            n,
            k,
            OutKind::F32,
            Activation::None,
            &pool,
            &mut rng,
        );
    }
}

#[test]
fn rejects_bad_sizes() {
    let set = KernelSet::best(Precision::Int8);
    let packed = PackedA8::new(set, &[1; 6], 2, 3);
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
    let dense = DenseB8 { data: &b, n: 4 };
    let mut out = [0.0f32; 7];
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
    let mut raw = [0i32; 8];
    gemm_i32(&packed, &dense, 4, &mut raw, &pool, &mut scratch).unwrap();
    assert_eq!(raw, [3; 8]);
    assert!(gemm_i32(&packed, &dense, 4, &mut raw[..7], &pool, &mut scratch).is_err());
}

/// Every x86 path this CPU supports is in `all_kernels` (so every test above runs it), and
/// the `EQ_X86_KERNEL` choice picks it, or falls back when the CPU lacks it.
#[cfg(target_arch = "x86_64")]
#[test]
fn x86_paths_are_all_tested_and_selectable() {
    use x86_64::{choose, parse_choice, Choice, Path};
    assert_eq!(
        parse_choice("AVX512VNNI"),
        Some(Choice::Path(Path::Avx512Vnni))
    );
    assert_eq!(parse_choice("avxvnni"), Some(Choice::Path(Path::AvxVnni)));
    assert_eq!(parse_choice(" avx2 "), Some(Choice::Path(Path::Avx2)));
    assert_eq!(parse_choice("generic"), Some(Choice::Generic));
    assert_eq!(parse_choice("sse2"), None);
    for p in PRECISIONS {
        let all = all_kernels(p);
        let best = x86_64::supported(p).next();
        assert!(best.is_none_or(|b| std::ptr::eq(choose(p, None).unwrap(), b)));
        assert!(choose(p, Some(Choice::Generic)).is_none());
        for path in Path::ALL {
            let kern = path.kernel(p);
            assert_eq!(kern.precision, p);
            let forced = choose(p, Some(Choice::Path(path)));
            if path.supported() {
                assert!(all.iter().any(|k| std::ptr::eq(*k, kern)), "{}", kern.name);
                assert!(std::ptr::eq(forced.unwrap(), kern), "{}", kern.name);
            } else {
                assert!(!all.iter().any(|k| std::ptr::eq(*k, kern)), "{}", kern.name);
                // Falls back to the best supported path (or generic), no crash.
                assert_eq!(forced.map(|k| k.name), best.map(|k| k.name));
            }
        }
        // Best first: AVX-512 VNNI over AVX-VNNI over AVX2.
        let first = Path::ALL.into_iter().find(|path| path.supported());
        assert_eq!(best.map(|k| k.name), first.map(|path| path.kernel(p).name));
        eprintln!(
            "{p:?}: {}",
            all.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
        );
    }
}
