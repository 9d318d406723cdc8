use super::*;
use crate::cpu::CoreKind;
use crate::kernels::requant::scale_in;
use crate::ops::activation::Activation;
use crate::rng::Rng;
use std::ops::Range;

/// Unpadded problem: one `h x w` plane, pads (left, right, top, bottom), kernel, stride,
/// dilation.
#[derive(Clone, Copy, Debug)]
struct Case {
    w: usize,
    h: usize,
    pads: (usize, usize, usize, usize),
    kw: usize,
    kh: usize,
    sw: usize,
    sh: usize,
    dw: usize,
    dh: usize,
}

impl Case {
    fn geometry(&self) -> Geometry {
        let (l, r, t, b) = self.pads;
        let (in_w, in_h) = (self.w + l + r, self.h + t + b);
        let (ew, eh) = ((self.kw - 1) * self.dw + 1, (self.kh - 1) * self.dh + 1);
        Geometry {
            in_w,
            in_h,
            out_w: (in_w - ew) / self.sw + 1,
            out_h: (in_h - eh) / self.sh + 1,
            kernel_w: self.kw,
            kernel_h: self.kh,
            stride_w: self.sw,
            stride_h: self.sh,
            dilation_w: self.dw,
            dilation_h: self.dh,
        }
    }

    fn fits(&self) -> bool {
        let (l, r, t, b) = self.pads;
        self.w + l + r > (self.kw - 1) * self.dw && self.h + t + b > (self.kh - 1) * self.dh
    }

    /// The plane padded with 0, as the op prepares it.
    fn pad(&self, input: &[i8]) -> Vec<i8> {
        let g = self.geometry();
        let (l, _, t, _) = self.pads;
        let mut p = vec![0i8; g.in_w * g.in_h];
        for y in 0..self.h {
            p[(y + t) * g.in_w + l..][..self.w].copy_from_slice(&input[y * self.w..][..self.w]);
        }
        p
    }

    /// Naive int32 sums on the unpadded plane, taps outside it contributing 0.
    fn reference(&self, input: &[i8], taps: &[i8]) -> Vec<i32> {
        let g = self.geometry();
        let (l, _, t, _) = self.pads;
        let mut out = Vec::new();
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let mut s = 0i64;
                for ky in 0..self.kh {
                    for kx in 0..self.kw {
                        let y = (oy * self.sh + ky * self.dh) as isize - t as isize;
                        let x = (ox * self.sw + kx * self.dw) as isize - l as isize;
                        if y >= 0 && x >= 0 && (y as usize) < self.h && (x as usize) < self.w {
                            let v = input[y as usize * self.w + x as usize] as i64;
                            s += v * taps[ky * self.kw + kx] as i64;
                        }
                    }
                }
                out.push(i32::try_from(s).unwrap());
            }
        }
        out
    }
}

/// All row sums of every variant, through `row` in chunks.
fn sums(isa: Isa, p: Precision, g: &Geometry, input: &[i8], taps: &[i8]) -> Vec<i32> {
    let mut all = Vec::new();
    let mut acc = [0i32; CHUNK + SLACK];
    for oy in 0..g.out_h {
        let mut x = 0;
        while x < g.out_w {
            let n = CHUNK.min(g.out_w - x);
            acc.fill(i32::MIN);
            check(g, input, taps, g.out_w * g.out_h, 0);
            // SAFETY: geometry checked just above.
            unsafe { row(isa, p, g, input, taps, oy, x, n, &mut acc) };
            all.extend_from_slice(&acc[..n]);
            x += n;
        }
    }
    all
}

fn activations() -> [Activation; 4] {
    [
        Activation::None,
        Activation::ReLU,
        Activation::LeakyReLU(0.1),
        Activation::Clip {
            min: -0.5,
            max: 2.0,
        },
    ]
}

/// Runs `case` on every variant and checks sums, fp32 and int8 outputs bit for bit.
fn check_case(rng: &mut Rng, case: &Case, p: Precision, input: &[i8], taps: &[i8]) {
    let g = case.geometry();
    let want = case.reference(input, taps);
    let padded = case.pad(input);
    let plane = g.out_w * g.out_h;
    let channels = 3;
    let c = rng.range(0, channels as i64 - 1) as usize;
    let ws: Vec<f32> = (0..channels).map(|_| rng.uniform(1.0, 100.0)).collect();
    let scales = scale_in(rng.uniform(1.0, 50.0), &ws);
    let bias: Vec<f32> = (0..channels).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let act = activations()[rng.range(0, 3) as usize];
    let requant = Requant {
        scale_in: &scales,
        bias: Some(&bias),
        act,
        top_scale: rng.uniform(5.0, 60.0),
        qmax: p.qmax(),
    };
    for isa in Isa::all_available() {
        let got = sums(isa, p, &g, &padded, taps);
        assert_eq!(got, want, "{isa:?} {p:?} {case:?}");
        let mut f = vec![f32::NAN; plane * channels];
        let mut q = vec![99i8; plane * channels];
        channel_i8(
            isa,
            p,
            &g,
            &padded,
            taps,
            c,
            &requant,
            &mut OutBuf::F32(&mut f),
            c * plane,
        );
        channel_i8(
            isa,
            p,
            &g,
            &padded,
            taps,
            c,
            &requant,
            &mut OutBuf::I8(&mut q),
            c * plane,
        );
        for (i, &a) in want.iter().enumerate() {
            let (wf, wq) = (requant.dequant(c, a), requant.requant(c, a));
            assert_eq!(
                f[c * plane + i].to_bits(),
                wf.to_bits(),
                "{isa:?} {case:?} {i}"
            );
            assert_eq!(q[c * plane + i], wq, "{isa:?} {case:?} {i}");
        }
        // Other channels' planes are untouched.
        assert!(f[..c * plane]
            .iter()
            .chain(&f[(c + 1) * plane..])
            .all(|v| v.is_nan()));
        assert!(q[..c * plane]
            .iter()
            .chain(&q[(c + 1) * plane..])
            .all(|&v| v == 99));
    }
}

fn random_values(rng: &mut Rng, n: usize, qmax: i32) -> Vec<i8> {
    (0..n)
        .map(|_| rng.range(-qmax as i64, qmax as i64) as i8)
        .collect()
}

#[test]
fn random_geometries_match_reference() {
    let mut rng = Rng::new(41);
    let mut done = 0;
    while done < 400 {
        let r = |rng: &mut Rng, lo: i64, hi: i64| rng.range(lo, hi) as usize;
        let case = Case {
            w: r(&mut rng, 1, 40),
            h: r(&mut rng, 1, 40),
            pads: (
                r(&mut rng, 0, 2),
                r(&mut rng, 0, 2),
                r(&mut rng, 0, 2),
                r(&mut rng, 0, 2),
            ),
            kw: r(&mut rng, 1, 5),
            kh: r(&mut rng, 1, 5),
            sw: r(&mut rng, 1, 3),
            sh: r(&mut rng, 1, 3),
            dw: r(&mut rng, 1, 2),
            dh: r(&mut rng, 1, 2),
        };
        // A quarter of the cases are the specialised 3x3 stride 1 / 2 shapes.
        let case = if done % 4 == 0 {
            let s = r(&mut rng, 1, 2);
            Case {
                kw: 3,
                kh: 3,
                sw: s,
                sh: s,
                dw: 1,
                dh: 1,
                ..case
            }
        } else {
            case
        };
        if !case.fits() {
            continue;
        }
        let p = if done % 2 == 0 {
            Precision::Int8
        } else {
            Precision::Int7
        };
        let input = random_values(&mut rng, case.w * case.h, p.qmax());
        let taps = random_values(&mut rng, case.kw * case.kh, p.qmax());
        check_case(&mut rng, &case, p, &input, &taps);
        done += 1;
    }
}

#[test]
fn wide_rows_span_several_chunks_and_narrow_outputs_work() {
    let mut rng = Rng::new(7);
    for (w, h, k, s) in [
        (600, 3, 3, 1),
        (700, 4, 3, 2),
        (1, 9, 3, 1),
        (3, 5, 3, 2),
        (2, 2, 1, 1),
    ] {
        let case = Case {
            w,
            h,
            pads: (1, 1, 1, 1),
            kw: k,
            kh: k,
            sw: s,
            sh: s,
            dw: 1,
            dh: 1,
        };
        for p in [Precision::Int8, Precision::Int7] {
            let input = random_values(&mut rng, w * h, p.qmax());
            let taps = random_values(&mut rng, k * k, p.qmax());
            check_case(&mut rng, &case, p, &input, &taps);
        }
    }
}

/// Every value at ±qmax so each int16 lane reaches its flush bound: all products of a pixel
/// have the same sign (all positive, all negative, or alternating in sign from pixel to
/// pixel). Kernels up to 7x7 (49 taps, 6 flushes of 8 for INT7, 25 of 2 for INT8).
#[test]
fn extremes_do_not_overflow_int16_lanes() {
    let mut rng = Rng::new(3);
    for p in [Precision::Int8, Precision::Int7] {
        let q = p.qmax();
        for k in 1..=7 {
            for (s, d) in [(1, 1), (2, 1), (1, 2), (2, 2), (3, 1)] {
                for pattern in 0..4 {
                    let case = Case {
                        w: 37,
                        h: 2 * k * d + 3,
                        pads: (0, 0, 0, 0),
                        kw: k,
                        kh: k,
                        sw: s,
                        sh: s,
                        dw: d,
                        dh: d,
                    };
                    // Checkerboard signs make all products of a pixel share a sign when the
                    // stride and dilation are odd; with even ones all inputs get one sign.
                    let sign = |x: usize, y: usize| if (x + y).is_multiple_of(2) { 1 } else { -1 };
                    let input: Vec<i8> = (0..case.w * case.h)
                        .map(|i| {
                            let (x, y) = (i % case.w, i / case.w);
                            (match pattern {
                                0 => q,
                                1 => -q,
                                _ => q * sign(x, y),
                            }) as i8
                        })
                        .collect();
                    let taps: Vec<i8> = (0..k * k)
                        .map(|i| {
                            (match pattern {
                                0 | 1 => q,
                                2 => q * sign(i % k, i / k),
                                _ => -q * sign(i % k, i / k),
                            }) as i8
                        })
                        .collect();
                    let want = case.reference(&input, &taps);
                    if pattern < 2 || (s % 2 == 1 && d % 2 == 1) {
                        let m = (k * k) as i32 * q * q;
                        assert!(want.iter().all(|&a| a.abs() == m), "{case:?} {pattern}");
                    }
                    check_case(&mut rng, &case, p, &input, &taps);
                }
            }
        }
    }
}

/// The flush intervals the SIMD kernels use are the largest that fit, and one more product
/// would overflow (documents the proof next to the kernels).
#[test]
fn flush_intervals_are_the_int16_bounds() {
    assert_eq!(Precision::Int8.products_per_i16(), 2);
    assert_eq!(Precision::Int7.products_per_i16(), 8);
    assert!(2 * 127 * 127 <= i16::MAX as i32 && 3 * 127 * 127 > i16::MAX as i32);
    assert!(8 * 63 * 63 <= i16::MAX as i32 && 9 * 63 * 63 > i16::MAX as i32);
}

// ---------------------------------------------------------------------------------------
// The unpadded path (`Plan` / `run`).

impl Case {
    fn layer(&self) -> Layer {
        let (l, _, t, _) = self.pads;
        Layer {
            w: self.w,
            h: self.h,
            pad_left: l,
            pad_top: t,
            g: self.geometry(),
        }
    }
}

fn all_activations() -> [Activation; 8] {
    [
        Activation::None,
        Activation::ReLU,
        Activation::LeakyReLU(0.1),
        Activation::Clip {
            min: -0.5,
            max: 2.0,
        },
        Activation::Clip { min: 0.0, max: 6.0 },
        Activation::Clip {
            min: 3.0,
            max: -1.0,
        },
        Activation::Sigmoid,
        Activation::HardSwish {
            alpha: 0.2,
            beta: 0.5,
        },
    ]
}

/// One output region of a task: (channels, rows).
type Task = (Range<usize>, Range<usize>);

/// Runs `case` with `channels` planes through `run` split into `tasks`, for fp32 and int8
/// output and the loops of every core, and checks every output against
/// `Requant::dequant` / `requant` of the reference sums, and that nothing outside the task
/// regions is written.
#[allow(clippy::too_many_arguments)]
fn check_run(
    case: &Case,
    p: Precision,
    channels: usize,
    input: &[i8],
    taps: &[i8],
    requant: &Requant,
    tasks: &[Task],
) -> bool {
    let l = case.layer();
    let Some(plan) = Plan::new(Isa::detect(), &l) else {
        return false;
    };
    let plane_in = case.w * case.h;
    let want: Vec<i32> = (0..channels)
        .flat_map(|c| {
            case.reference(
                &input[c * plane_in..(c + 1) * plane_in],
                &taps[c * 9..(c + 1) * 9],
            )
        })
        .collect();
    for core in [CoreKind::CortexA53, CoreKind::CortexA72, CoreKind::Other] {
        let outputs = Outputs {
            case,
            plan: &plan,
            p,
            channels,
            input,
            taps,
            requant,
            tasks,
        };
        outputs.check(&want, core);
    }
    true
}

/// The inputs of one `check_run`.
struct Outputs<'a> {
    case: &'a Case,
    plan: &'a Plan,
    p: Precision,
    channels: usize,
    input: &'a [i8],
    taps: &'a [i8],
    requant: &'a Requant<'a>,
    tasks: &'a [Task],
}

impl Outputs<'_> {
    fn region(&self, (cs, ys): &Task) -> Range<usize> {
        let g = self.case.geometry();
        let plane = g.out_w * g.out_h;
        let at = cs.start * plane + ys.start * g.out_w;
        let len = if ys.len() == g.out_h {
            cs.len() * plane
        } else {
            ys.len() * g.out_w
        };
        at..at + len
    }

    fn run(&self, out: &mut OutBuf, t: &Task, core: CoreKind) {
        run(
            self.plan,
            self.p,
            self.input,
            self.taps,
            self.requant,
            out,
            t.0.clone(),
            t.1.clone(),
            core,
        );
    }

    fn check(&self, want: &[i32], core: CoreKind) {
        let g = self.case.geometry();
        let plane = g.out_w * g.out_h;
        let (p, case, requant) = (self.p, self.case, self.requant);
        let mut f = vec![f32::from_bits(0x7fc0_1234); self.channels * plane];
        for t in self.tasks {
            let r = self.region(t);
            self.run(&mut OutBuf::F32(&mut f[r]), t, core);
        }
        let mut q = vec![-128i8; self.channels * plane];
        for t in self.tasks {
            let r = self.region(t);
            self.run(&mut OutBuf::I8(&mut q[r]), t, core);
        }
        let written = |c: usize, y: usize| {
            self.tasks
                .iter()
                .any(|(cs, ys)| cs.contains(&c) && ys.contains(&y))
        };
        for c in 0..self.channels {
            for y in 0..g.out_h {
                for x in 0..g.out_w {
                    let i = c * plane + y * g.out_w + x;
                    // (Formatted only on failure: tall planes have many outputs.)
                    let what = || {
                        format!(
                            "{core:?} {p:?} {case:?} {requant:?} c {c} y {y} x {x} acc {}",
                            want[i]
                        )
                    };
                    if written(c, y) {
                        let wf = requant.dequant(c, want[i]);
                        assert_eq!(
                            f[i].to_bits(),
                            wf.to_bits(),
                            "fp32 {wf} got {}: {}",
                            f[i],
                            what()
                        );
                        assert_eq!(q[i], requant.requant(c, want[i]), "int8: {}", what());
                    } else {
                        assert_eq!(
                            f[i].to_bits(),
                            0x7fc0_1234,
                            "fp32 written outside: {}",
                            what()
                        );
                        assert_eq!(q[i], -128, "int8 written outside: {}", what());
                    }
                }
            }
        }
    }
}

/// Per-channel scales and biases (some of them special when `special`), and a requant with
/// activation `act`.
fn requant_parts(rng: &mut Rng, channels: usize, special: bool) -> (Vec<f32>, Vec<f32>) {
    let ws: Vec<f32> = (0..channels).map(|_| rng.uniform(1.0, 100.0)).collect();
    let mut scales = scale_in(rng.uniform(1.0, 50.0), &ws);
    let mut bias: Vec<f32> = (0..channels).map(|_| rng.uniform(-1.0, 1.0)).collect();
    if special {
        let s = [0.0, f32::INFINITY, f32::NAN, -0.01, 1e-30, 0.5];
        let b = [
            -0.0,
            0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.5,
            -0.25,
        ];
        for c in 0..channels {
            match rng.range(0, 3) {
                0 => scales[c] = s[rng.range(0, s.len() as i64 - 1) as usize],
                1 => bias[c] = b[rng.range(0, b.len() as i64 - 1) as usize],
                _ => {}
            }
        }
    }
    (scales, bias)
}

/// Tasks covering every row of `channels`: whole channel ranges, or row ranges of one
/// channel, chosen at random.
fn random_tasks(rng: &mut Rng, channels: usize, out_h: usize) -> Vec<Task> {
    let mut tasks = Vec::new();
    let mut c = 0;
    while c < channels {
        if rng.range(0, 1) == 0 {
            let n = rng.range(1, (channels - c) as i64) as usize;
            tasks.push((c..c + n, 0..out_h));
            c += n;
        } else {
            let mut y = 0;
            while y < out_h {
                let n = rng.range(1, (out_h - y) as i64) as usize;
                tasks.push((c..c + 1, y..y + n));
                y += n;
            }
            c += 1;
        }
    }
    tasks
}

fn unpadded_case(rng: &mut Rng, w: usize, h: usize, s: usize, sh: usize, special: bool) {
    let r = |rng: &mut Rng, hi: i64| rng.range(0, hi) as usize;
    let case = Case {
        w,
        h,
        pads: (r(rng, 2), r(rng, 2), r(rng, 2), r(rng, 2)),
        kw: 3,
        kh: 3,
        sw: s,
        sh,
        dw: 1,
        dh: 1,
    };
    if !case.fits() {
        return;
    }
    let g = case.geometry();
    let channels = rng.range(1, 4) as usize;
    for p in [Precision::Int8, Precision::Int7] {
        let input = random_values(rng, channels * w * h, p.qmax());
        let taps = random_values(rng, channels * 9, p.qmax());
        let (scales, bias) = requant_parts(rng, channels, special);
        let acts = all_activations();
        let act = acts[rng.range(0, acts.len() as i64 - 1) as usize];
        let top = if special && rng.range(0, 3) == 0 {
            [-2.0, 0.0, f32::INFINITY][rng.range(0, 2) as usize]
        } else {
            rng.uniform(5.0, 60.0)
        };
        let requant = Requant {
            scale_in: &scales,
            bias: (rng.range(0, 4) != 0).then_some(&bias[..]),
            act,
            top_scale: top,
            qmax: p.qmax(),
        };
        let tasks = if rng.range(0, 2) == 0 {
            vec![(0..channels, 0..g.out_h)]
        } else {
            random_tasks(rng, channels, g.out_h)
        };
        let ran = check_run(&case, p, channels, &input, &taps, &requant, &tasks);
        #[cfg(target_arch = "aarch64")]
        assert!(ran, "no unpadded plan for {case:?}");
        let _ = ran;
    }
}

/// Every width 1..=40 (narrow, single-block and several-block rows, all remainders), both
/// strides, stride down 1..3, pads 0..2, INT8 / INT7, every activation, split tasks.
#[test]
fn unpadded_path_matches_reference_at_every_width() {
    let mut rng = Rng::new(77);
    for w in 1..=40 {
        for s in [1, 2] {
            for _ in 0..3 {
                let h = rng.range(1, 7) as usize;
                let sh = rng.range(1, 3) as usize;
                unpadded_case(&mut rng, w, h, s, sh, false);
            }
        }
    }
    for (w, h) in [
        (112, 5),
        (56, 4),
        (28, 6),
        (14, 14),
        (7, 7),
        (113, 3),
        (57, 5),
    ] {
        for s in [1, 2] {
            unpadded_case(&mut rng, w, h, s, s, false);
        }
    }
}

/// Special scales, biases and top scales (0, ±inf, NaN, −0, negative top): the folded int8
/// clamps are taken only where they are exact.
#[test]
fn unpadded_path_keeps_special_values_exact() {
    let mut rng = Rng::new(78);
    for _ in 0..300 {
        let w = rng.range(1, 35) as usize;
        let h = rng.range(1, 6) as usize;
        let s = rng.range(1, 2) as usize;
        unpadded_case(&mut rng, w, h, s, s, true);
    }
}

/// All values at ±qmax so every int16 lane reaches its bound (see
/// `extremes_do_not_overflow_int16_lanes`), through the unpadded path at several widths.
#[test]
fn unpadded_path_extremes_do_not_overflow() {
    let mut rng = Rng::new(5);
    for p in [Precision::Int8, Precision::Int7] {
        let q = p.qmax();
        for (w, h) in [(7, 7), (14, 6), (33, 5), (17, 4), (5, 9)] {
            for s in [1, 2] {
                for pattern in 0..4 {
                    let case = Case {
                        w,
                        h,
                        pads: (0, 0, 0, 0),
                        kw: 3,
                        kh: 3,
                        sw: s,
                        sh: s,
                        dw: 1,
                        dh: 1,
                    };
                    let sign = |x: usize, y: usize| if (x + y).is_multiple_of(2) { 1 } else { -1 };
                    let channels = 2;
                    let input: Vec<i8> = (0..channels * w * h)
                        .map(|i| {
                            let (x, y) = (i % w, (i / w) % h);
                            (match pattern {
                                0 => q,
                                1 => -q,
                                _ => q * sign(x, y),
                            }) as i8
                        })
                        .collect();
                    let taps: Vec<i8> = (0..channels * 9)
                        .map(|i| {
                            let i = i % 9;
                            (match pattern {
                                0 | 1 => q,
                                2 => q * sign(i % 3, i / 3),
                                _ => -q * sign(i % 3, i / 3),
                            }) as i8
                        })
                        .collect();
                    if pattern < 2 || s == 1 {
                        let want = case.reference(&input[..w * h], &taps[..9]);
                        assert!(want.iter().all(|&a| a.abs() == 9 * q * q), "{case:?}");
                    }
                    let scales = vec![1.0 / (9 * q * q) as f32; channels];
                    let requant = Requant {
                        scale_in: &scales,
                        bias: None,
                        act: Activation::None,
                        top_scale: 100.0,
                        qmax: q,
                    };
                    let g = case.geometry();
                    let tasks = random_tasks(&mut rng, channels, g.out_h);
                    check_run(&case, p, channels, &input, &taps, &requant, &tasks);
                }
            }
        }
    }
}

/// Descriptors per pass of the pipelined loops (`pipelined::MAX_DESC`; the host has no
/// unpadded path, the value only sizes the planes there).
#[cfg(target_arch = "aarch64")]
const MAX_DESC: usize = super::pipelined::MAX_DESC;
#[cfg(not(target_arch = "aarch64"))]
const MAX_DESC: usize = 512;

/// Rows of `out_w` outputs the pipelined loops take per pass: `MAX_DESC` over the blocks of
/// 16 of a row (one for rows of up to 16, else starts 0, 16, .. and `out_w - 16`).
fn rows_per_pass(out_w: usize) -> usize {
    let bpr = if out_w <= 16 {
        1
    } else {
        (out_w - 16).div_ceil(16) + 1
    };
    (MAX_DESC / bpr).max(1)
}

/// Tall narrow planes: rows of up to 17 outputs, more rows than one pass of the pipelined
/// loops holds, so a task's rows take several passes. Rows of up to 16 outputs store 16
/// bytes, past the row end onto outputs written later; a channel's last rows, done in the
/// last pass, must not reach the next channel's first rows, done in the first. Heights with
/// a last pass of one row, a last pass shorter than the rows a store reaches over, and three
/// passes; stride 1 and 2, pads 0 and 1, INT8 / INT7, int8 output through the loops (folded
/// activations) and fp32 output; tasks of several channels, of one channel, and row ranges
/// of more than a pass.
#[test]
fn unpadded_path_tall_narrow_planes_take_several_passes() {
    let mut rng = Rng::new(79);
    let mut n = 0;
    for out_w in [1, 2, 3, 5, 8, 9, 15, 16, 17] {
        let rpp = rows_per_pass(out_w);
        for s in [1, 2] {
            for pad in [0, 1] {
                for out_h in [rpp + 1, rpp + 7, 2 * rpp + 23] {
                    n += 1;
                    let case = Case {
                        w: (out_w - 1) * s + 3 - 2 * pad,
                        // Stride 2 with and without a row the last output does not reach.
                        h: (out_h - 1) * s + 3 - 2 * pad + (n % 2) * (s - 1),
                        pads: (pad, pad, pad, pad),
                        kw: 3,
                        kh: 3,
                        sw: s,
                        sh: s,
                        dw: 1,
                        dh: 1,
                    };
                    let g = case.geometry();
                    assert_eq!((g.out_w, g.out_h), (out_w, out_h), "{case:?}");
                    let p = if n % 2 == 0 {
                        Precision::Int8
                    } else {
                        Precision::Int7
                    };
                    let channels = 4;
                    let input = random_values(&mut rng, channels * case.w * case.h, p.qmax());
                    let taps = random_values(&mut rng, channels * 9, p.qmax());
                    let (scales, bias) = requant_parts(&mut rng, channels, false);
                    let act = [
                        Activation::None,
                        Activation::ReLU,
                        Activation::Clip { min: 0.0, max: 6.0 },
                    ][n % 3];
                    let requant = Requant {
                        scale_in: &scales,
                        bias: Some(&bias[..]),
                        act,
                        top_scale: rng.uniform(5.0, 60.0),
                        qmax: p.qmax(),
                    };
                    let all = 0..out_h;
                    let a = rng.range(1, 5) as usize;
                    let b = out_h - rng.range(1, 20) as usize;
                    let task_sets: [Vec<Task>; 2] = [
                        vec![(0..channels, all.clone())],
                        vec![
                            (0..2, all.clone()),
                            (2..3, 0..a),
                            (2..3, a..b),
                            (2..3, b..out_h),
                            (3..4, 0..b),
                            (3..4, b..out_h),
                        ],
                    ];
                    for tasks in &task_sets {
                        let ran = check_run(&case, p, channels, &input, &taps, &requant, tasks);
                        #[cfg(target_arch = "aarch64")]
                        assert!(ran, "no unpadded plan for {case:?}");
                        let _ = ran;
                    }
                }
            }
        }
    }
}

/// Runs `case` (3x3) on `channels` planes through `channel_i8` with `isa`, each plane
/// followed by `slack` bytes of garbage (or by the next channel's plane), into one output
/// tensor, and checks every output bit for bit against `Requant::dequant` / `requant` of
/// the reference sums.
#[allow(clippy::too_many_arguments)]
fn check_channels(
    rng: &mut Rng,
    isa: Isa,
    case: &Case,
    p: Precision,
    channels: usize,
    slack: usize,
    act: Activation,
    special: bool,
    extremes: bool,
) {
    let g = case.geometry();
    let q = p.qmax();
    let plane_in = g.in_w * g.in_h;
    let plane = g.out_w * g.out_h;
    let values = |rng: &mut Rng, n: usize| -> Vec<i8> {
        if extremes {
            let s = if rng.range(0, 1) == 0 { q } else { -q };
            vec![s as i8; n]
        } else {
            random_values(rng, n, q)
        }
    };
    let inputs: Vec<Vec<i8>> = (0..channels)
        .map(|_| values(rng, case.w * case.h))
        .collect();
    let taps: Vec<i8> = (0..channels).flat_map(|_| values(rng, 9)).collect();
    let (scales, bias) = requant_parts(rng, channels, special);
    let requant = Requant {
        scale_in: &scales,
        bias: Some(&bias),
        act,
        top_scale: rng.uniform(5.0, 60.0),
        qmax: q,
    };
    let mut f = vec![f32::NAN; plane * channels + 5];
    let mut o = vec![99i8; plane * channels + 5];
    for c in 0..channels {
        let mut padded = case.pad(&inputs[c]);
        padded.extend((0..slack).map(|_| rng.range(-128, 127) as i8));
        assert_eq!(padded.len(), plane_in + slack);
        let t = &taps[c * 9..][..9];
        channel_i8(
            isa,
            p,
            &g,
            &padded,
            t,
            c,
            &requant,
            &mut OutBuf::F32(&mut f),
            c * plane,
        );
        channel_i8(
            isa,
            p,
            &g,
            &padded,
            t,
            c,
            &requant,
            &mut OutBuf::I8(&mut o),
            c * plane,
        );
    }
    for c in 0..channels {
        let want = case.reference(&inputs[c], &taps[c * 9..][..9]);
        if extremes && case.pads == (0, 0, 0, 0) {
            assert!(want.iter().all(|&a| a.abs() == 9 * q * q), "{case:?}");
        }
        for (i, &a) in want.iter().enumerate() {
            let (wf, wq) = (requant.dequant(c, a), requant.requant(c, a));
            let at = c * plane + i;
            assert_eq!(
                f[at].to_bits(),
                wf.to_bits(),
                "{isa:?} {p:?} {case:?} {act:?} c{c} {i}"
            );
            assert_eq!(o[at], wq, "{isa:?} {p:?} {case:?} {act:?} c{c} {i}");
        }
    }
    assert!(f[plane * channels..].iter().all(|v| v.is_nan()));
    assert!(o[plane * channels..].iter().all(|&v| v == 99));
}

/// The 3x3 stride 1 and 2 shapes at every width 1..40 (one block, partial blocks,
/// overlapping last blocks), short and tall planes, pads 0 and 1 on each side, with and
/// without a margin past the plane, several channels, every activation (the x86_64
/// whole-channel path takes none, ReLU, LeakyReLU and Clip; the others fall back), both
/// precisions and output types.
#[test]
fn fused_3x3_channels_match_reference_at_every_width() {
    let mut rng = Rng::new(1234);
    let acts = all_activations();
    for isa in Isa::all_available() {
        for w in 1..=40 {
            for (h, s) in [(1, 1), (3, 1), (5, 2), (2, 2), (37, 1), (41, 2)] {
                let r = |rng: &mut Rng| rng.range(0, 1) as usize;
                let case = Case {
                    w,
                    h,
                    pads: (r(&mut rng), r(&mut rng), r(&mut rng), r(&mut rng)),
                    kw: 3,
                    kh: 3,
                    sw: s,
                    sh: if rng.range(0, 3) == 0 { 3 - s } else { s },
                    dw: 1,
                    dh: 1,
                };
                if !case.fits() {
                    continue;
                }
                let p = if rng.range(0, 1) == 0 {
                    Precision::Int8
                } else {
                    Precision::Int7
                };
                let slack = [0, 1, 17, IN_SLACK][rng.range(0, 3) as usize];
                let act = acts[rng.range(0, acts.len() as i64 - 1) as usize];
                let channels = rng.range(1, 4) as usize;
                let special = rng.range(0, 4) == 0;
                check_channels(
                    &mut rng, isa, &case, p, channels, slack, act, special, false,
                );
            }
        }
    }
}

/// All values at ±qmax (every product of a pixel of one sign): the int32 sums reach
/// 9 · qmax² through the fused 3x3 path, for both strides, pads and precisions.
#[test]
fn fused_3x3_extremes_reach_the_bound() {
    let mut rng = Rng::new(99);
    for isa in Isa::all_available() {
        for p in [Precision::Int8, Precision::Int7] {
            for s in [1, 2] {
                for pad in [0, 1] {
                    for w in [1, 7, 16, 17, 33] {
                        let case = Case {
                            w,
                            h: 9,
                            pads: (pad, pad, pad, pad),
                            kw: 3,
                            kh: 3,
                            sw: s,
                            sh: s,
                            dw: 1,
                            dh: 1,
                        };
                        if !case.fits() {
                            continue;
                        }
                        for slack in [0, IN_SLACK] {
                            for act in activations() {
                                check_channels(&mut rng, isa, &case, p, 3, slack, act, false, true);
                            }
                        }
                    }
                }
            }
        }
    }
}
