use super::*;
use crate::cpu::CoreKind;
use crate::rng::Rng;

/// Plain triple loop in f64.
fn naive(a: &[f32], b: &[f32], bias: Option<&[f32]>, m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = bias.map_or(0.0, |b| b[i] as f64);
            for p in 0..k {
                s += a[i * k + p] as f64 * b[p * n + j] as f64;
            }
            c[i * n + j] = s as f32;
        }
    }
    c
}

/// The generic kernel and every per-core variant of every SIMD family this CPU runs, each
/// forced on all workers.
fn kernels() -> Vec<Kernel> {
    let mut v = vec![Kernel::generic()];
    for family in Kernel::supported_simd() {
        for core in [CoreKind::CortexA53, CoreKind::CortexA72, CoreKind::Other] {
            v.push(family.forced(core));
        }
    }
    v
}

#[allow(clippy::too_many_arguments)]
fn check(
    kernel: Kernel,
    m: usize,
    n: usize,
    k: usize,
    bias: bool,
    act: Activation,
    threads: usize,
    rng: &mut Rng,
) {
    let a = rng.vec(m * k, -1.0, 1.0);
    let b = rng.vec(k * n, -1.0, 1.0);
    let bias_v = rng.vec(m, -1.0, 1.0);
    let bias = bias.then_some(&bias_v[..]);
    let mut want = naive(&a, &b, bias, m, n, k);
    // Tolerance from the pre-activation magnitude (Clip / Sigmoid squash it).
    let max = want.iter().fold(0f32, |x, v| x.max(v.abs())).max(1e-6);
    want.iter_mut().for_each(|v| *v = act.apply(*v));
    let packed = PackedA::new(kernel, &a, m, k, bias);
    let pool = Pool::new(threads).unwrap();
    let mut scratch = vec![f32::NAN; packed.scratch_len(n) * threads];
    let mut got = vec![f32::NAN; m * n];
    gemm(
        &packed,
        &DenseB { data: &b, n },
        n,
        &mut got,
        act,
        &pool,
        &mut scratch,
    )
    .unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * max,
            "{} m={m} n={n} k={k} act={act:?} at ({}, {}): {g} vs {w}",
            kernel.name,
            i / n,
            i % n
        );
    }
}

#[test]
fn best_kernel_is_simd_where_available() {
    let best = Kernel::best();
    #[cfg(target_arch = "aarch64")]
    assert_eq!(best.name, aarch64::KERNEL.name);
    #[cfg(target_arch = "x86_64")]
    if std::env::var_os("EQ_X86_F32_KERNEL").is_none() {
        if let Some(first) = x86_64::supported().next() {
            assert_eq!(best.name, first.name);
        }
    }
    for k in Kernel::supported_simd()
        .into_iter()
        .chain([best, Kernel::generic()])
    {
        assert!(k.mr <= MR_MAX && k.nr <= NR_MAX, "{}", k.name);
        for t in k.tails.into_iter().flatten() {
            assert!(t.nr < k.nr, "{}", k.name);
        }
    }
}

#[test]
fn matches_naive_on_edge_sizes() {
    let mut rng = Rng::new(1);
    for kernel in kernels() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (kernel.mr, kernel.nr, 1),
            (kernel.mr + 1, kernel.nr + 1, 3),
            (kernel.mr - 1, kernel.nr - 1, 7),
            (13, 37, KC_MAX),
            (7, 19, KC_MAX + 1),
            (MC_LIMIT + 5, 33, 20),
            (3, NC_LIMIT + 3, 9),
            (5, 2 * NC_LIMIT + 17, 2 * KC_MAX + 5),
        ] {
            for threads in [1, 3] {
                check(kernel, m, n, k, true, Activation::None, threads, &mut rng);
            }
        }
    }
}

#[test]
fn matches_naive_on_random_shapes_and_activations() {
    let mut rng = Rng::new(2);
    let acts = [
        Activation::None,
        Activation::ReLU,
        Activation::LeakyReLU(0.1),
        Activation::Clip {
            min: -0.5,
            max: 0.5,
        },
        Activation::Sigmoid,
        Activation::Mish,
        Activation::HardSwish {
            alpha: 0.2,
            beta: 0.5,
        },
    ];
    for kernel in kernels() {
        for i in 0..60 {
            let m = rng.range(1, 70) as usize;
            let n = rng.range(1, 300) as usize;
            let k = rng.range(1, 900) as usize;
            let act = acts[i % acts.len()];
            check(kernel, m, n, k, i % 2 == 0, act, 1 + i % 2, &mut rng);
        }
    }
}

#[test]
fn large_k() {
    let mut rng = Rng::new(3);
    for kernel in kernels() {
        check(kernel, 20, 45, 4608, true, Activation::ReLU, 1, &mut rng);
    }
}

#[test]
fn relu_keeps_nan_and_zeroes_negatives() {
    for kernel in kernels() {
        let (m, n, k) = (kernel.mr, kernel.nr, 1);
        let mut a = vec![1.0; m * k];
        a[0] = f32::NAN;
        let b: Vec<f32> = (0..n).map(|j| j as f32 - 3.0).collect();
        let packed = PackedA::new(kernel, &a, m, k, None);
        let pool = Pool::new(1).unwrap();
        let mut scratch = vec![0.0; packed.scratch_len(n)];
        let mut c = vec![0.0; m * n];
        gemm(
            &packed,
            &DenseB { data: &b, n },
            n,
            &mut c,
            Activation::ReLU,
            &pool,
            &mut scratch,
        )
        .unwrap();
        assert!(c[..n].iter().all(|v| v.is_nan()), "{}", kernel.name);
        for j in 0..n {
            assert_eq!(c[n + j], (j as f32 - 3.0).max(0.0));
        }
    }
}

#[test]
fn im2col_packing_matches_explicit_matrix() {
    // 2 channels 4x5, kernel 3x2, stride (2, 1), dilation (1, 2), pads left 1 top 2; and a
    // wide stride-2 input whose runs fill whole panels inside the rows.
    for (c, h, w, kw, kh, sw, sh, dw, dh, pl, pt) in [
        (
            2usize, 4usize, 5usize, 3usize, 2usize, 2usize, 1usize, 1usize, 2usize, 1usize, 2usize,
        ),
        (2, 5, 41, 3, 3, 2, 2, 1, 1, 1, 0),
        (1, 3, 37, 1, 1, 3, 1, 1, 1, 0, 0),
    ] {
        im2col_case(c, h, w, kw, kh, sw, sh, dw, dh, pl, pt);
    }
}

#[allow(clippy::too_many_arguments)]
fn im2col_case(
    c: usize,
    h: usize,
    w: usize,
    kw: usize,
    kh: usize,
    sw: usize,
    sh: usize,
    dw: usize,
    dh: usize,
    pl: usize,
    pt: usize,
) {
    let input: Vec<f32> = (0..c * h * w).map(|v| v as f32).collect();
    let (out_w, out_h) = (
        (w + pl + 1 - (dw * (kw - 1) + 1)) / sw + 1,
        (h + pt - (dh * (kh - 1) + 1)) / sh + 1,
    );
    let b = Im2colB {
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
        pad_value: -1.0,
    };
    let (k, n) = (c * kh * kw, out_w * out_h);
    // Whole matrix and sub-blocks starting mid-row and mid-panel, several panel widths,
    // with and without a narrow last panel.
    for (k0, kc, n0, nc, nr) in [
        (0, k, 0, n, 4),
        (0, k, 0, n, 8),
        (3, 5, 7, n.saturating_sub(7), 4),
        (5, 4, 2, n.saturating_sub(2), 8),
        (1, k.saturating_sub(1), 3, n.saturating_sub(3), 16),
        (2, k.saturating_sub(2), 1, n.saturating_sub(1), 32),
        (0, k, 0, n, 32),
    ]
    .into_iter()
    .filter(|&(k0, kc, n0, nc, _)| kc > 0 && nc > 0 && k0 + kc <= k && n0 + nc <= n)
    {
        for tails in [[0, 0], [nr / 2, 0], [nr / 2, 1]] {
            let panels = Panels { nr, tails };
            // (panel, width, offset in the panel) of column j < count * nr.
            let at = |kk: usize, j: usize| {
                let p = j / nr;
                let w = panels.width(p, nc);
                (j % nr < w).then(|| p * kc * nr + kk * w + j % nr)
            };
            let len = kc * nc.div_ceil(nr) * nr;
            let mut packed = vec![f32::NAN; len];
            b.pack(k0, kc, n0, nc, panels, &mut packed);
            let dense: Vec<f32> = (0..k * n).map(|v| v as f32).collect();
            let mut dpacked = vec![f32::NAN; len];
            DenseB { data: &dense, n }.pack(k0, kc, n0, nc, panels, &mut dpacked);
            for kk in 0..kc {
                let row = k0 + kk;
                let (ch, ky, kx) = (row / (kh * kw), row / kw % kh, row % kw);
                for j in 0..nc.div_ceil(nr) * nr {
                    let Some(i) = at(kk, j) else { continue };
                    let (want, dwant) = if j >= nc {
                        (0.0, 0.0)
                    } else {
                        let col = n0 + j;
                        let (oy, ox) = (col / out_w, col % out_w);
                        let iy = (oy * sh + ky * dh) as isize - pt as isize;
                        let ix = (ox * sw + kx * dw) as isize - pl as isize;
                        let v = if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            -1.0
                        } else {
                            input[(ch * h + iy as usize) * w + ix as usize]
                        };
                        (v, dense[row * n + n0 + j])
                    };
                    let what = format!("block {k0},{kc},{n0},{nc},{panels:?}: row {row} col {j}");
                    assert_eq!(packed[i], want, "{what}");
                    assert_eq!(dpacked[i], dwant, "dense {what}");
                }
            }
        }
    }
}

#[test]
fn blocking_follows_l2_and_keeps_results_bit_identical() {
    for kernel in Kernel::supported_simd()
        .into_iter()
        .chain([Kernel::generic()])
    {
        blocking_case(kernel);
    }
}

fn blocking_case(kernel: Kernel) {
    let small = Blocking::for_l2(Some(512 << 10), kernel);
    let big = Blocking::for_l2(Some(1 << 20), kernel);
    assert!(small.nc < big.nc && small.mc < big.mc, "{small:?} {big:?}");
    assert_eq!(Blocking::for_l2(None, kernel), small);
    for b in [small, big, Blocking::for_l2(Some(1), kernel)] {
        assert!(
            b.mc.is_multiple_of(kernel.mr)
                && b.nc.is_multiple_of(kernel.nr)
                && b.mc > 0
                && b.nc > 0
        );
        assert!(b.mc <= MC_LIMIT && b.nc <= NC_LIMIT);
    }
    let tiny = Blocking {
        mc: kernel.mr,
        nc: kernel.nr,
    };
    let (m, n, k) = (3 * MC_LIMIT / 2 + 7, 2 * NC_LIMIT + 29, 2 * KC_MAX + 11);
    let mut rng = Rng::new(9);
    let a = rng.vec(m * k, -1.0, 1.0);
    let b = rng.vec(k * n, -1.0, 1.0);
    let bias = rng.vec(m, -1.0, 1.0);
    let packed = PackedA::new(kernel, &a, m, k, Some(&bias));
    let mut results = Vec::new();
    for threads in [1, 3, 4] {
        let mut pool = Pool::new(threads).unwrap();
        if threads == 4 {
            // Mixed clusters split into more tasks; the sums must not change.
            use crate::cpu::CoreKind::{CortexA53, CortexA72};
            pool.set_cores_for_test(vec![CortexA72, CortexA72, CortexA53, CortexA53]);
            assert!(pool.mixed_cores());
        }
        for blocking in [tiny, small, big] {
            let mut scratch = vec![f32::NAN; packed.scratch_len(n) * threads];
            let mut c = vec![f32::NAN; m * n];
            gemm_blocked(
                &packed,
                &DenseB { data: &b, n },
                n,
                &mut c,
                Activation::None,
                &pool,
                &mut scratch,
                blocking,
            )
            .unwrap();
            results.push(c);
        }
    }
    assert!(results.iter().all(|c| c == &results[0]));
}

#[test]
fn inside_range_matches_a_scan() {
    for stride in 1..4 {
        for w in 1..9 {
            for len in 0..12 {
                for x in -12isize..12 {
                    let scan: Vec<usize> = (0..len)
                        .filter(|&i| (0..w as isize).contains(&(x + (i * stride) as isize)))
                        .collect();
                    let (lo, hi) = inside(x, stride, w, len);
                    assert!(lo <= hi && hi <= len, "x={x} s={stride} w={w} len={len}");
                    assert_eq!(
                        (lo..hi).collect::<Vec<_>>(),
                        scan,
                        "x={x} s={stride} w={w} len={len}"
                    );
                }
            }
        }
    }
}

/// Every variant of the best family against the scalar definition of [`Tile`] computed with
/// `mul_add` in the same order: bit for bit, for K lengths covering every path of the
/// unrolled and software-pipelined loops, both start values and every fused activation.
#[test]
fn variants_match_the_fused_definition_bit_for_bit() {
    for family in Kernel::supported_simd() {
        bit_for_bit_case(family);
    }
}

fn bit_for_bit_case(best: Kernel) {
    let mr = best.mr;
    let mut rng = Rng::new(11);
    let acts = [
        TileAct::None,
        TileAct::Relu,
        TileAct::Leaky(0.125),
        TileAct::Clip(-0.25, 0.5),
    ];
    let widths = [
        Some(best.nr),
        best.tails[0].map(|t| t.nr),
        best.tails[1].map(|t| t.nr),
    ];
    for nr in widths.into_iter().flatten() {
        for kc in (1..=21).chain([64, 383]) {
            for (i, &act) in acts.iter().enumerate() {
                let accumulate = i % 2 == 1;
                let a = rng.vec(kc * mr, -1.0, 1.0);
                let b = rng.vec(kc * nr, -1.0, 1.0);
                let bias = rng.vec(mr, -1.0, 1.0);
                let init = rng.vec(mr * NR_MAX, -1.0, 1.0);
                let mut want = vec![0.0f32; mr * nr];
                for r in 0..mr {
                    for j in 0..nr {
                        let start = if accumulate {
                            init[r * NR_MAX + j]
                        } else {
                            bias[r]
                        };
                        let v = if nr == 1 && cfg!(target_arch = "aarch64") {
                            // aarch64's 8 x 1 tail: four phases (see `aarch64::tail1`).
                            let mut p = [start, 0.0, 0.0, 0.0];
                            for k in 0..kc {
                                let ph = if k < kc / 4 * 4 { k % 4 } else { 0 };
                                p[ph] = a[k * mr + r].mul_add(b[k], p[ph]);
                            }
                            (p[0] + p[1]) + (p[2] + p[3])
                        } else {
                            let mut v = start;
                            for k in 0..kc {
                                v = a[k * mr + r].mul_add(b[k * nr + j], v);
                            }
                            v
                        };
                        want[r * nr + j] = act.apply(v);
                    }
                }
                for core in [CoreKind::CortexA53, CoreKind::CortexA72, CoreKind::Other] {
                    let mut out = init.clone();
                    let base = out.as_mut_ptr();
                    let mut tile = Tile {
                        rows: [base; MR_MAX],
                        accumulate,
                        bias: bias.as_ptr(),
                        act,
                    };
                    for (r, row) in tile.rows.iter_mut().enumerate().take(mr) {
                        // SAFETY: r < mr <= MR_MAX rows of NR_MAX floats.
                        *row = unsafe { base.add(r * NR_MAX) };
                    }
                    let micro = best.micros_for(core).for_width(nr);
                    // SAFETY: sizes as the kernel requires; the family is this machine's.
                    unsafe { micro(kc, a.as_ptr(), b.as_ptr(), &tile) };
                    for r in 0..mr {
                        for j in 0..NR_MAX {
                            let g = out[r * NR_MAX + j];
                            let w = if j < nr {
                                want[r * nr + j]
                            } else {
                                init[r * NR_MAX + j]
                            };
                            assert!(
                                g.to_bits() == w.to_bits(),
                                "{} {core:?} nr={nr} kc={kc} {act:?} acc={accumulate} ({r},{j}): {g} vs {w}",
                                best.name
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn fused_activations_keep_nan_and_match_the_scalar_formulas() {
    for kernel in Kernel::supported_simd()
        .into_iter()
        .chain([Kernel::generic()])
    {
        fused_activation_case(kernel);
    }
}

fn fused_activation_case(kernel: Kernel) {
    let (mr, nr) = (kernel.mr, kernel.nr);
    for act in [
        TileAct::Relu,
        TileAct::Leaky(0.5),
        TileAct::Clip(-1.0, 2.0),
        TileAct::Clip(3.0, 1.0),
    ] {
        // One k step with a = 1: the tile is bias + b.
        let a = vec![1.0; mr];
        let mut b: Vec<f32> = (0..nr).map(|j| j as f32 - 3.5).collect();
        b[1] = f32::NAN;
        let bias = vec![0.0; mr];
        for core in [CoreKind::CortexA53, CoreKind::CortexA72, CoreKind::Other] {
            let mut out = vec![0.0f32; mr * NR_MAX];
            let base = out.as_mut_ptr();
            let mut tile = Tile {
                rows: [base; MR_MAX],
                accumulate: false,
                bias: bias.as_ptr(),
                act,
            };
            for (r, row) in tile.rows.iter_mut().enumerate().take(mr) {
                // SAFETY: as above.
                *row = unsafe { base.add(r * NR_MAX) };
            }
            // SAFETY: as above.
            unsafe { (kernel.micro_for(core))(1, a.as_ptr(), b.as_ptr(), &tile) };
            for j in 0..nr {
                let (g, w) = (out[j], act.apply(b[j]));
                assert!(
                    g == w || (g.is_nan() && w.is_nan()),
                    "{act:?} {j}: {g} vs {w}"
                );
            }
        }
    }
}

/// Every x86 path this CPU supports is in `Kernel::supported_simd` (so every test above runs
/// it), and the `EQ_X86_F32_KERNEL` choice picks it, or falls back when the CPU lacks it.
#[cfg(target_arch = "x86_64")]
#[test]
fn x86_paths_are_all_tested_and_selectable() {
    use x86_64::{choose, parse_choice, Choice, Path};
    assert_eq!(parse_choice("AVX512"), Some(Choice::Path(Path::Avx512)));
    assert_eq!(parse_choice(" avx2 "), Some(Choice::Path(Path::Avx2)));
    assert_eq!(parse_choice("generic"), Some(Choice::Generic));
    assert_eq!(parse_choice("sse2"), None);
    let all = Kernel::supported_simd();
    let best = x86_64::supported().next();
    assert_eq!(choose(None).map(|k| k.name), best.map(|k| k.name));
    assert!(choose(Some(Choice::Generic)).is_none());
    for path in Path::ALL {
        let kern = path.kernel();
        let forced = choose(Some(Choice::Path(path)));
        if path.supported() {
            assert!(all.iter().any(|k| k.name == kern.name), "{}", kern.name);
            assert_eq!(forced.map(|k| k.name), Some(kern.name));
        } else {
            assert!(!all.iter().any(|k| k.name == kern.name), "{}", kern.name);
            // Falls back to the best supported path (or generic), no crash.
            assert_eq!(forced.map(|k| k.name), best.map(|k| k.name));
        }
    }
    // Best first: AVX-512 over AVX2.
    let first = Path::ALL.into_iter().find(|path| path.supported());
    assert_eq!(best.map(|k| k.name), first.map(|path| path.kernel().name));
    eprintln!(
        "fp32 x86 kernels: {}",
        all.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
    );
}

/// Few columns on several workers: the split cuts rows too (`kernels::split`), and every
/// split gives the one-worker result bit for bit (the K order never changes).
#[test]
fn row_splits_match_one_worker_exactly() {
    let mut rng = Rng::new(23);
    for kernel in kernels() {
        for (m, n, k) in [(100, 49, 70), (64, 196, 33), (37, 13, 600), (25, 3, 5)] {
            let a = rng.vec(m * k, -1.0, 1.0);
            let b = rng.vec(k * n, -1.0, 1.0);
            let bias = rng.vec(m, -1.0, 1.0);
            let packed = PackedA::new(kernel, &a, m, k, Some(&bias));
            let run = |threads: usize| {
                let pool = Pool::new(threads).unwrap();
                let mut scratch = vec![f32::NAN; packed.scratch_len(n) * threads];
                let mut c = vec![f32::NAN; m * n];
                let dense = DenseB { data: &b, n };
                gemm(
                    &packed,
                    &dense,
                    n,
                    &mut c,
                    Activation::ReLU,
                    &pool,
                    &mut scratch,
                )
                .unwrap();
                c
            };
            let one = run(1);
            for threads in [2, 3, 4] {
                assert_eq!(
                    run(threads),
                    one,
                    "{} m={m} n={n} k={k} threads={threads}",
                    kernel.name
                );
            }
        }
    }
}

#[test]
fn packing_into_caller_memory_matches_the_owned_packing() {
    let mut rng = Rng::new(17);
    for kernel in kernels() {
        for (m, n, k) in [(1, 1, 1), (7, 19, 5), (13, 40, 33), (30, 9, 600)] {
            let a = rng.vec(m * k, -1.0, 1.0);
            let b = rng.vec(k * n, -1.0, 1.0);
            let owned = PackedA::new(kernel, &a, m, k, None);
            // Garbage in the lent memory: padding rows and the bias must be overwritten.
            let mut mem = vec![f32::NAN; PackedA::packed_len(kernel, m, k) + 3];
            let lent = PackedA::pack_into(kernel, &a, m, k, &mut mem);
            assert_eq!((lent.m(), lent.k()), (m, k));
            for threads in [1, 2] {
                let pool = Pool::new(threads).unwrap();
                let mut scratch = vec![f32::NAN; owned.scratch_len(n) * threads];
                let dense = DenseB { data: &b, n };
                let mut want = vec![f32::NAN; m * n];
                gemm(
                    &owned,
                    &dense,
                    n,
                    &mut want,
                    Activation::None,
                    &pool,
                    &mut scratch,
                )
                .unwrap();
                let mut got = vec![f32::NAN; m * n];
                gemm(
                    &lent,
                    &dense,
                    n,
                    &mut got,
                    Activation::None,
                    &pool,
                    &mut scratch,
                )
                .unwrap();
                assert_eq!(got, want, "{} m={m} n={n} k={k}", kernel.name);
            }
        }
    }
}
