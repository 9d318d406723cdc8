#![allow(clippy::needless_range_loop)]

use super::transforms::*;
use super::*;
use crate::cpu::CoreKind;
use crate::ops::convolution::{conv2d_reference, ConvParams, Padding};
use crate::rng::Rng;

/// The matrices satisfy the 1-D identity `Aᵀ[(G g) ⊙ (Bᵀ d)] = correlation of d and g`.
#[test]
fn matrices_compute_the_correlation() {
    let mut rng = Rng::new(1);
    for v in Variant::ALL {
        let (m, a) = (v.m(), v.alpha());
        let (g, bt, at) = (v.g(), v.bt(), v.at());
        for _ in 0..50 {
            let d: Vec<f64> = (0..a).map(|_| rng.uniform(-1.0, 1.0) as f64).collect();
            let f: Vec<f64> = (0..3).map(|_| rng.uniform(-1.0, 1.0) as f64).collect();
            let u: Vec<f64> = (0..a)
                .map(|i| (0..3).map(|j| g[i][j] * f[j]).sum())
                .collect();
            let w: Vec<f64> = (0..a)
                .map(|i| (0..a).map(|j| bt[i][j] * d[j]).sum())
                .collect();
            for p in 0..m {
                let y: f64 = (0..a).map(|i| at[p][i] * u[i] * w[i]).sum();
                let want: f64 = (0..3).map(|j| d[p + j] * f[j]).sum();
                assert!(
                    (y - want).abs() < 1e-12,
                    "{} p={p}: {y} vs {want}",
                    v.name()
                );
            }
        }
    }
}

/// The factored transforms (run in f64 through [`Lane`]) are the matrices' rows.
#[test]
fn factored_transforms_match_the_matrices() {
    fn check<const A: usize, const M: usize>(
        v: Variant,
        input: impl Fn(&[f64; A]) -> [f64; A],
        output: impl Fn(&[f64; A]) -> [f64; M],
    ) {
        let (bt, at) = (v.bt(), v.at());
        let mut rng = Rng::new(2);
        for _ in 0..20 {
            let d: [f64; A] = std::array::from_fn(|_| rng.uniform(-1.0, 1.0) as f64);
            let got = input(&d);
            for i in 0..A {
                let want: f64 = (0..A).map(|j| bt[i][j] * d[j]).sum();
                assert!((got[i] - want).abs() < 1e-12, "{} Bᵀ row {i}", v.name());
            }
            let got = output(&d);
            for p in 0..M {
                let want: f64 = (0..A).map(|j| at[p][j] * d[j]).sum();
                assert!((got[p] - want).abs() < 1e-12, "{} Aᵀ row {p}", v.name());
            }
        }
    }
    check::<4, 2>(Variant::F23, input_f23, output_f23);
    check::<6, 4>(Variant::F43, input_f43, output_f43);
    check::<8, 6>(Variant::F63, input_f63, output_f63);
}

#[test]
fn lane_shuffles() {
    let rows: [F4; 4] = std::array::from_fn(|i| {
        let v: [f32; 4] = std::array::from_fn(|j| (10 * i + j) as f32);
        // SAFETY: four floats.
        unsafe { F4::load(v.as_ptr()) }
    });
    let t = transpose(rows);
    for j in 0..4 {
        for i in 0..4 {
            assert_eq!(t[j].lane(i), (10 * i + j) as f32);
        }
    }
    let (lo, hi) = zip(rows[0], rows[1]);
    let got: Vec<f32> = (0..4)
        .map(|i| lo.lane(i))
        .chain((0..4).map(|i| hi.lane(i)))
        .collect();
    assert_eq!(got, [0.0, 10.0, 1.0, 11.0, 2.0, 12.0, 3.0, 13.0]);
}

/// One case: shapes, pads, activation.
struct Case {
    inch: usize,
    outch: usize,
    w: usize,
    h: usize,
    pads: [usize; 4],
    pad_value: f32,
    act: Activation,
    bias: bool,
}

/// The first-order rounding error bound of the Winograd computation of every output:
/// `S = |Aᵀ| [Σ_c (|G| |g_c| |Gᵀ|) ⊙ (|Bᵀ| |d_c| |B|)] |A| + |bias|`, i.e. the same
/// transforms and sums with every entry replaced by its absolute value. Each operation on
/// the way (the input transform's two passes, K products and sums, the output transform's
/// two passes) adds at most one rounding of its magnitude, so
/// `|computed − exact| ≤ eps · (K + 4α + 4) · S` to first order: the bound grows with K and
/// with the transform's entries (F(6,3)'s Bᵀ has 5.25 and Aᵀ 32, so S is up to ~100x the
/// direct sum's Σ|w||x| there, F(4,3) ~10x, F(2,3) ~2x). The direct reference adds its own
/// `eps · 9K · Σ|w||x|`.
fn bound(
    v: Variant,
    c: &Case,
    r: &crate::ops::convolution::Resolved,
    x: &[f32],
    wts: &[f32],
    bias: &[f32],
) -> Vec<f64> {
    let (m, a) = (v.m(), v.alpha());
    let (g, bt, at) = (v.g(), v.bt(), v.at());
    let mut out = vec![0.0f64; c.outch * r.out_h * r.out_w];
    let tiles_x = r.out_w.div_ceil(m);
    let tiles_y = r.out_h.div_ceil(m);
    // |Bᵀ| |d| |B| per tile and channel.
    let mut vt = vec![0.0f64; tiles_y * tiles_x * c.inch * a * a];
    for ty in 0..tiles_y {
        for tx in 0..tiles_x {
            for ch in 0..c.inch {
                let d = |y: usize, xx: usize| -> f64 {
                    let iy = (ty * m + y) as isize - r.pad_top as isize;
                    let ix = (tx * m + xx) as isize - r.pad_left as isize;
                    if iy < 0 || ix < 0 || iy >= c.h as isize || ix >= c.w as isize {
                        c.pad_value.abs() as f64
                    } else {
                        x[(ch * c.h + iy as usize) * c.w + ix as usize].abs() as f64
                    }
                };
                for i in 0..a {
                    for k in 0..a {
                        let mut s = 0.0;
                        for y in 0..a {
                            for xx in 0..a {
                                s += bt[i][y].abs() * d(y, xx) * bt[k][xx].abs();
                            }
                        }
                        vt[(((ty * tiles_x + tx) * c.inch + ch) * a + i) * a + k] = s;
                    }
                }
            }
        }
    }
    for o in 0..c.outch {
        // |G| |g| |Gᵀ| per input channel.
        let ut: Vec<f64> = (0..c.inch)
            .flat_map(|ch| {
                let f = &wts[(o * c.inch + ch) * 9..][..9];
                let g = &g;
                (0..a * a).map(move |ik| {
                    let (i, k) = (ik / a, ik % a);
                    let mut s = 0.0;
                    for p in 0..3 {
                        for q in 0..3 {
                            s += g[i][p].abs() * (f[p * 3 + q].abs() as f64) * g[k][q].abs();
                        }
                    }
                    s
                })
            })
            .collect();
        for ty in 0..tiles_y {
            for tx in 0..tiles_x {
                let mut mt = vec![0.0f64; a * a];
                for ch in 0..c.inch {
                    for t in 0..a * a {
                        mt[t] += ut[ch * a * a + t]
                            * vt[((ty * tiles_x + tx) * c.inch + ch) * a * a + t];
                    }
                }
                for p in 0..m.min(r.out_h - ty * m) {
                    for q in 0..m.min(r.out_w - tx * m) {
                        let mut s = 0.0;
                        for i in 0..a {
                            for k in 0..a {
                                s += at[p][i].abs() * mt[i * a + k] * at[q][k].abs();
                            }
                        }
                        out[(o * r.out_h + ty * m + p) * r.out_w + tx * m + q] =
                            s + bias[o].abs() as f64;
                    }
                }
            }
        }
    }
    out
}

fn run_case(c: &Case, rng: &mut Rng, threads: usize) {
    let params = ConvParams {
        kernel_w: 3,
        kernel_h: 3,
        dilation_w: 1,
        dilation_h: 1,
        stride_w: 1,
        stride_h: 1,
        padding: Padding::Explicit {
            left: c.pads[0],
            right: c.pads[1],
            top: c.pads[2],
            bottom: c.pads[3],
        },
        pad_value: c.pad_value,
    };
    let r = params.resolve(c.w, c.h).unwrap();
    let x = rng.vec(c.inch * c.w * c.h, -1.0, 1.0);
    let wts = rng.vec(c.outch * c.inch * 9, -1.0, 1.0);
    let bias = if c.bias {
        rng.vec(c.outch, -1.0, 1.0)
    } else {
        vec![0.0; c.outch]
    };
    let mut want = vec![0.0f32; c.outch * r.out_w * r.out_h];
    conv2d_reference(
        &params,
        &x,
        c.w,
        c.h,
        c.inch,
        &wts,
        Some(&bias),
        c.outch,
        c.act,
        &mut want,
    )
    .unwrap();
    // Σ|w||x| of the direct sum, for the reference's own error.
    let direct = bound(Variant::F23, c, &r, &x, &wts, &bias); // an upper bound of Σ|w||x|
    let g = Geometry {
        w: c.w,
        h: c.h,
        out_w: r.out_w,
        out_h: r.out_h,
        pad_left: r.pad_left,
        pad_top: r.pad_top,
    };
    let pool = Pool::new(threads).unwrap();
    let mut kernels = vec![Kernel::generic()];
    for family in Kernel::supported_simd() {
        kernels.extend([CoreKind::CortexA53, CoreKind::CortexA72].map(|k| family.forced(k)));
    }
    for v in Variant::ALL {
        let s = bound(v, c, &r, &x, &wts, &bias);
        let eps = f32::EPSILON as f64;
        let depth = (c.inch + 4 * v.alpha() + 4) as f64;
        for (&kernel, portable) in kernels.iter().flat_map(|k| [(k, false), (k, true)]) {
            let mut wg = Winograd::new(
                v,
                kernel,
                &wts,
                Some(&bias),
                c.outch,
                c.inch,
                c.act,
                c.pad_value,
            );
            if portable {
                wg = wg.with_portable_transforms();
            }
            let mut scratch = vec![f32::NAN; wg.scratch_len(r.out_w, r.out_h) * threads];
            let mut got = vec![f32::NAN; want.len()];
            wg.run(&x, &g, &mut got, &pool, &mut scratch).unwrap();
            for (i, (&gv, &wv)) in got.iter().zip(&want).enumerate() {
                let tol = eps * (depth * s[i] + 9.0 * c.inch as f64 * direct[i]) + 1e-30;
                let err = (gv as f64 - wv as f64).abs();
                assert!(
                    err <= tol,
                    "{} {} portable={portable} in {}x{}x{} out {} pads {:?} act {:?} at {i}: {gv} vs {wv} (err {err:e}, bound {tol:e})",
                    v.name(),
                    kernel.name,
                    c.w,
                    c.h,
                    c.inch,
                    c.outch,
                    c.pads,
                    c.act
                );
            }
        }
    }
}

#[test]
fn matches_the_reference_on_edge_shapes() {
    let mut rng = Rng::new(3);
    let acts = [
        Activation::None,
        Activation::ReLU,
        Activation::LeakyReLU(0.1),
        Activation::Clip {
            min: -0.5,
            max: 0.5,
        },
        Activation::Sigmoid,
    ];
    // (inch, outch, w, h, pads)
    let shapes: &[(usize, usize, usize, usize, [usize; 4])] = &[
        (1, 1, 3, 3, [0; 4]),   // one 1x1 output
        (3, 5, 1, 1, [1; 4]),   // 1x1 input, padded
        (5, 8, 7, 7, [1; 4]),   // 7x7: one partial tile of every variant
        (8, 9, 14, 14, [1; 4]), // 14 = 2·6 + 2
        (17, 16, 13, 9, [0, 2, 1, 0]),
        (2, 3, 26, 5, [2, 1, 0, 2]),
        (33, 7, 12, 12, [1; 4]),
        (4, 17, 30, 19, [1; 4]),
    ];
    for (i, &(inch, outch, w, h, pads)) in shapes.iter().enumerate() {
        let c = Case {
            inch,
            outch,
            w,
            h,
            pads,
            pad_value: if i % 3 == 2 { 0.25 } else { 0.0 },
            act: acts[i % acts.len()],
            bias: i % 2 == 0,
        };
        run_case(&c, &mut rng, 1 + i % 3);
    }
}

#[test]
fn matches_the_reference_on_random_shapes() {
    let mut rng = Rng::new(4);
    for i in 0..12 {
        let c = Case {
            inch: rng.range(1, 40) as usize,
            outch: rng.range(1, 24) as usize,
            w: rng.range(1, 33) as usize,
            h: rng.range(1, 33) as usize,
            pads: std::array::from_fn(|_| rng.range(0, 3) as usize),
            pad_value: 0.0,
            act: if i % 2 == 0 {
                Activation::ReLU
            } else {
                Activation::None
            },
            bias: true,
        };
        if c.w + c.pads[0] + c.pads[1] < 3 || c.h + c.pads[2] + c.pads[3] < 3 {
            continue;
        }
        run_case(&c, &mut rng, 1 + i % 2);
    }
}

#[test]
fn scratch_and_blocks_cover_many_tiles_and_threads() {
    // More tiles than one block holds, blocks split over output channels when few.
    let mut rng = Rng::new(5);
    for (inch, outch, w, threads) in [(200, 20, 40, 1), (3, 40, 70, 3), (64, 64, 9, 4)] {
        let c = Case {
            inch,
            outch,
            w,
            h: w - 3,
            pads: [1; 4],
            pad_value: 0.0,
            act: Activation::ReLU,
            bias: true,
        };
        run_case(&c, &mut rng, threads);
    }
}

#[test]
fn choice_follows_the_cost_model() {
    let p = Panels {
        nr: 8,
        tails: [4, 1],
    };
    // Large maps with enough channels: Winograd; a 3-channel input with few outputs: GEMM.
    assert!(matches!(
        choose(64, 64, Some((56, 56)), p),
        Choice::Winograd(_)
    ));
    assert!(matches!(
        choose(256, 256, Some((14, 14)), p),
        Choice::Winograd(_)
    ));
    assert_eq!(choose(3, 4, Some((20, 20)), p), Choice::Gemm);
    // F(6,3) only up to 128 input channels, with a size too.
    if env_override().is_none() {
        for inch in [129, 256, 512] {
            for size in [7, 14, 28, 56, 112] {
                let c = choose(inch, 256, Some((size, size)), p);
                assert_ne!(c, Choice::Winograd(Variant::F63), "{inch} ch {size}x{size}");
            }
        }
    }
    // Without a size: by channels, as ncnn.
    if env_override().is_none() {
        assert_eq!(choose(64, 128, None, p), Choice::Winograd(Variant::F63));
        assert_eq!(choose(256, 512, None, p), Choice::Winograd(Variant::F43));
    }
}
