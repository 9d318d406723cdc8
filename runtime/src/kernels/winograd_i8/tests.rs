use super::*;
use crate::ops::activation::Activation;
use crate::rng::Rng;

const CORES: [CoreKind; 3] = [CoreKind::CortexA53, CoreKind::CortexA72, CoreKind::Other];

#[test]
fn division_by_576_is_exact_below_2_pow_25() {
    let limit = (1i64 << 25) - 1;
    let mut rng = Rng::new(3);
    let mut cases: Vec<i64> = vec![0, 1, -1, 9, -9, 64, limit, -limit, limit - 1, -limit + 1];
    cases.extend((0..10_000).map(|_| rng.range(-limit, limit)));
    for s in cases {
        let t = (576 * s) as i32; // wraps, as the transform-domain sums do
        assert_eq!(div576(t) as i64, s, "S = {s}");
    }
    // Past the bound the recovery is off by 2²⁶ (why channels are chunked).
    let s = 1i64 << 25;
    assert_ne!(div576((576 * s) as i32) as i64, s);
}

#[test]
fn chunks_keep_sums_below_2_pow_25() {
    for (p, want) in [(Precision::Int8, 231), (Precision::Int7, 939)] {
        let c = chunk_channels(p);
        assert_eq!(c, want);
        let per = 9 * (p.qmax() as i64).pow(2);
        assert!(c as i64 * per < 1 << 25);
        assert!((c as i64 + 1) * per >= 1 << 25);
    }
}

#[test]
fn transforms_fit_int16() {
    let rowsum = |r: &[i32]| r.iter().map(|v| v.abs()).sum::<i32>();
    let b = BT.iter().map(|r| rowsum(r)).max().unwrap();
    let g = G.iter().map(|r| rowsum(r)).max().unwrap();
    assert_eq!((b, g), (10, 12));
    assert!(b * b * 127 <= i16::MAX as i32, "V within int16 for INT8");
    assert!(g * g * 127 <= i16::MAX as i32, "U within int16 for INT8");
    // The products are exact in int32.
    assert!(((b * b * 127) as i64 * (g * g * 127) as i64) < i32::MAX as i64);
}

/// Direct int32 3x3 stride-1 convolution with zero padding.
#[allow(clippy::too_many_arguments)]
fn direct(
    x: &[i8],
    w: usize,
    h: usize,
    inch: usize,
    wt: &[i8],
    outch: usize,
    pads: (usize, usize),
    out: (usize, usize),
) -> Vec<i32> {
    let (ow, oh) = out;
    let mut s = vec![0i32; outch * ow * oh];
    for m in 0..outch {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = 0i32;
                for c in 0..inch {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let y = (oy + ky) as isize - pads.1 as isize;
                            let xx = (ox + kx) as isize - pads.0 as isize;
                            if y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < w {
                                acc += x[(c * h + y as usize) * w + xx as usize] as i32
                                    * wt[((m * inch + c) * 3 + ky) * 3 + kx] as i32;
                            }
                        }
                    }
                }
                s[(m * oh + oy) * ow + ox] = acc;
            }
        }
    }
    s
}

#[allow(clippy::too_many_arguments)]
fn check(
    p: Precision,
    x: &[i8],
    w: usize,
    h: usize,
    inch: usize,
    wt: &[i8],
    outch: usize,
    pads: (usize, usize),
    rng: &mut Rng,
    what: &str,
) {
    let (pr, pb) = (pads.0, pads.1);
    let out = (w + pads.0 + pr - 2, h + pads.1 + pb - 2);
    let want = direct(x, w, h, inch, wt, outch, pads, out);
    // This CPU's kernels (on x86_64 the `vpmaddwd` products), then the generic ones.
    for kernels in [KernelSet::best(p), KernelSet::generic(p)] {
        let wg = WinogradI8::new(p, wt, outch, inch, &kernels);
        check_with(p, &wg, x, (w, h), pads, out, &want, outch, rng, what);
    }
}

#[allow(clippy::too_many_arguments)]
fn check_with(
    p: Precision,
    wg: &WinogradI8,
    x: &[i8],
    (w, h): (usize, usize),
    pads: (usize, usize),
    out: (usize, usize),
    want: &[i32],
    outch: usize,
    rng: &mut Rng,
    what: &str,
) {
    let scale_in: Vec<f32> = (0..outch).map(|_| rng.uniform(1e-5, 1e-2)).collect();
    let bias: Vec<f32> = (0..outch).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let acts = [
        Activation::None,
        Activation::ReLU,
        Activation::LeakyReLU(0.1),
        Activation::Clip {
            min: -0.5,
            max: 2.0,
        },
        Activation::Sigmoid,
    ];
    let requant = Requant {
        scale_in: &scale_in,
        bias: Some(&bias),
        act: acts[rng.range(0, 4) as usize],
        top_scale: 30.0,
        qmax: p.qmax(),
    };
    let n = out.0 * out.1;
    // Every product kernel: one thread per core type, then a mixed pool.
    let mut pools: Vec<Pool> = CORES
        .iter()
        .map(|&c| {
            let mut pool = Pool::new(1).unwrap();
            pool.set_cores_for_test(vec![c]);
            pool
        })
        .collect();
    let mut mixed = Pool::new(3).unwrap();
    mixed.set_cores_for_test(CORES.to_vec());
    pools.push(mixed);
    for pool in &pools {
        let threads = pool.threads();
        let mut scratch = vec![f32::NAN; wg.scratch_len() * threads];
        let mut got = vec![f32::NAN; outch * n];
        wg.run(
            x,
            w,
            h,
            out,
            pads,
            &requant,
            OutBuf::F32(&mut got),
            pool,
            &mut scratch,
        )
        .unwrap();
        for (i, (g, &s)) in got.iter().zip(want).enumerate() {
            let e = requant.dequant(i / n, s);
            assert_eq!(
                g.to_bits(),
                e.to_bits(),
                "{what} {p:?} f32 at {i}: {g} vs {e} (S {s})"
            );
        }
        let mut got = vec![-128i8; outch * n];
        wg.run(
            x,
            w,
            h,
            out,
            pads,
            &requant,
            OutBuf::I8(&mut got),
            pool,
            &mut scratch,
        )
        .unwrap();
        for (i, (&g, &s)) in got.iter().zip(want).enumerate() {
            assert_eq!(g, requant.requant(i / n, s), "{what} {p:?} i8 at {i}");
        }
    }
}

fn random_q(rng: &mut Rng, len: usize, p: Precision) -> Vec<i8> {
    let q = p.qmax() as i64;
    (0..len).map(|_| rng.range(-q, q) as i8).collect()
}

#[test]
fn matches_direct_convolution_on_random_shapes() {
    let mut rng = Rng::new(21);
    for p in [Precision::Int8, Precision::Int7] {
        // (w, h, inch, outch, pad)
        let mut shapes = vec![
            (1, 1, 1, 1, 1),
            (4, 4, 8, 8, 1),
            (6, 6, 3, 5, 0),
            (13, 13, 16, 17, 1),
            (9, 5, 9, 8, 1),
            (2, 7, 2, 3, 1),
            (17, 3, 7, 9, 0),
            // 8 tiles in one row, all inside: the vector store path.
            (32, 8, 8, 9, 1),
            (36, 11, 5, 16, 0),
            (70, 9, 3, 8, 1),
            // Panels of 8 tiles in one tile row, read with two ld4 per row.
            (64, 12, 8, 9, 0),
            (66, 16, 9, 16, 1),
        ];
        for _ in 0..10 {
            shapes.push((
                rng.range(1, 20) as usize,
                rng.range(1, 20) as usize,
                rng.range(1, 24) as usize,
                rng.range(1, 20) as usize,
                rng.range(0, 1) as usize,
            ));
        }
        for (w, h, inch, outch, pad) in shapes {
            if w + 2 * pad < 3 || h + 2 * pad < 3 {
                continue;
            }
            let x = random_q(&mut rng, inch * w * h, p);
            let wt = random_q(&mut rng, outch * inch * 9, p);
            check(
                p,
                &x,
                w,
                h,
                inch,
                &wt,
                outch,
                (pad, pad),
                &mut rng,
                &format!("{w}x{h}x{inch}->{outch} pad {pad}"),
            );
        }
    }
}

/// All-±qmax operands over one whole chunk and over more channels than one chunk: sums at the
/// bound of each chunk (one chunk keeps `64 · S` in an int32 on NEON).
#[test]
fn matches_direct_convolution_at_the_extremes() {
    let mut rng = Rng::new(22);
    for p in [Precision::Int8, Precision::Int7] {
        let q = p.qmax() as i8;
        let c = chunk_channels(p);
        for inch in [c / STEP * STEP, c, c + 1, 2 * c + 3] {
            let (w, h, outch) = (6, 5, 9);
            let alt = |i: usize| if i.is_multiple_of(2) { q } else { -q };
            // Rows and columns q, 0, -q, 0, … from each tile origin (pad 1): V at ξ = (0, 0)
            // reaches 100·q, and with all-q
            // weights U there is 36·q: the transform-domain sums wrap many times.
            let wave = |i: usize| [q, 0, -q, 0][i % 4];
            let peak: Vec<i8> = (0..inch * w * h)
                .map(|i| (wave(i % w + 1) as i32 * wave(i / w % h + 1) as i32 / q as i32) as i8)
                .collect();
            let cases: [(&str, Vec<i8>, Vec<i8>); 4] = [
                ("wrapping transform sums", peak, vec![q; outch * inch * 9]),
                ("all +q", vec![q; inch * w * h], vec![q; outch * inch * 9]),
                ("+q x -q", vec![q; inch * w * h], vec![-q; outch * inch * 9]),
                (
                    "alternating",
                    (0..inch * w * h).map(alt).collect(),
                    (0..outch * inch * 9).map(|i| alt(i / 3)).collect(),
                ),
            ];
            for (what, x, wt) in cases {
                check(
                    p,
                    &x,
                    w,
                    h,
                    inch,
                    &wt,
                    outch,
                    (1, 1),
                    &mut rng,
                    &format!("{what} inch {inch}"),
                );
            }
        }
    }
}
