use super::*;
use crate::rng::Rng;

/// Values with many ties, both zeros, infinities and NaNs (with distinct payloads), so
/// that any change of order or of NaN / signed-zero handling shows in the bits.
fn nasty(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| match rng.range(0, 20) {
            0 => f32::from_bits(0x7fc0_0001 + rng.range(0, 4) as u32),
            1 => -0.0,
            2 => 0.0,
            3 => f32::NEG_INFINITY,
            4 => f32::INFINITY,
            5 => -f32::MAX,
            6..=9 => rng.range(-3, 3) as f32,
            _ => rng.uniform(-3.0, 3.0),
        })
        .collect()
}

/// Ordinary values (no NaN): average sums then compare bit for bit too.
fn plain(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.uniform(-3.0, 3.0)).collect()
}

fn same_bits(got: &[f32], want: &[f32], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits(),
            "{what}: element {i}: {g} ({:#x}) vs {w} ({:#x})",
            g.to_bits(),
            w.to_bits()
        );
    }
}

/// Random windows inside a random plane: (windows, plane length).
fn random_windows(rng: &mut Rng) -> (Windows, usize) {
    let kernel_w = rng.range(1, 6) as usize;
    let kernel_h = rng.range(1, 6) as usize;
    let stride_w = rng.range(1, 4) as usize;
    let stride_h = rng.range(1, 4) as usize;
    // Wide rows sometimes, so every block size and tail path runs.
    let cols = match rng.range(0, 3) {
        0 => rng.range(1, 8),
        1 => rng.range(8, 40),
        _ => rng.range(40, 80),
    } as usize;
    let rows = rng.range(1, 5) as usize;
    let x = rng.range(0, 4) as usize;
    let y = rng.range(0, 3) as usize;
    let in_w = x + (cols - 1) * stride_w + kernel_w + rng.range(0, 4) as usize;
    let in_h = y + (rows - 1) * stride_h + kernel_h + rng.range(0, 3) as usize;
    let w = Windows {
        in_w,
        kernel_w,
        kernel_h,
        stride_w,
        stride_h,
        x,
        y,
        cols,
        rows,
        out_stride: cols + rng.range(0, 3) as usize,
    };
    (w, in_w * in_h)
}

/// The common pooling geometries, windows touching the plane's last element (so a load
/// past a window would leave the buffer: the tests run under the bounds of a Vec).
fn common_windows() -> Vec<(Windows, usize)> {
    let mut v = Vec::new();
    for (k, s) in [(2, 2), (3, 2), (3, 1), (2, 1), (5, 2), (4, 1)] {
        for cols in [1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 56, 64, 65] {
            let in_w = (cols - 1) * s + k;
            let rows = 3;
            let in_h = (rows - 1) * s + k;
            v.push((
                Windows {
                    in_w,
                    kernel_w: k,
                    kernel_h: k,
                    stride_w: s,
                    stride_h: s,
                    x: 0,
                    y: 0,
                    cols,
                    rows,
                    out_stride: cols,
                },
                in_w * in_h,
            ));
        }
    }
    v
}

fn all_windows(seed: u64) -> Vec<(Windows, usize)> {
    let mut rng = Rng::new(seed);
    let mut v = common_windows();
    v.extend((0..300).map(|_| random_windows(&mut rng)));
    v
}

fn out_len(w: &Windows) -> usize {
    (w.rows - 1) * w.out_stride + w.cols
}

#[test]
fn max_f32_variants_match_generic_bits() {
    let mut rng = Rng::new(11);
    for (w, len) in all_windows(1) {
        // The plane sits at the end of its buffer, so reading past it would be caught.
        let src = nasty(&mut rng, len);
        let mut want = vec![1.5f32; out_len(&w)];
        max_f32(Isa::Generic, &w, &src, &mut want);
        for isa in Isa::all_available() {
            let mut got = vec![1.5f32; out_len(&w)];
            max_f32(isa, &w, &src, &mut got);
            same_bits(&got, &want, &format!("{isa:?} max {w:?}"));
        }
    }
}

#[test]
fn avg_f32_variants_match_generic_bits() {
    let mut rng = Rng::new(12);
    for (w, len) in all_windows(2) {
        let divisor = (w.kernel_w * w.kernel_h) as f32;
        for src in [plain(&mut rng, len), nasty(&mut rng, len)] {
            let mut want = vec![1.5f32; out_len(&w)];
            avg_f32(Isa::Generic, &w, &src, divisor, &mut want);
            for isa in Isa::all_available() {
                let mut got = vec![1.5f32; out_len(&w)];
                avg_f32(isa, &w, &src, divisor, &mut got);
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    // NaN payloads of sums may differ between scalar and vector adds.
                    assert!(
                        g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan()),
                        "{isa:?} avg {w:?} element {i}: {g} vs {e}"
                    );
                }
            }
        }
    }
}

#[test]
fn max_i8_variants_match_generic() {
    let mut rng = Rng::new(13);
    for (w, len) in all_windows(3) {
        let src: Vec<i8> = (0..len).map(|_| rng.range(-128, 127) as i8).collect();
        let mut want = vec![99i8; out_len(&w)];
        max_i8(Isa::Generic, &w, &src, &mut want);
        for isa in Isa::all_available() {
            let mut got = vec![99i8; out_len(&w)];
            max_i8(isa, &w, &src, &mut got);
            assert_eq!(got, want, "{isa:?} {w:?}");
        }
    }
}

#[test]
fn generic_windows_follow_the_reference_order() {
    // Row-major with `m < v`: a NaN first wins, a later NaN is skipped, the first of equal
    // zeros is kept.
    let nan = f32::NAN;
    let w = Windows {
        in_w: 2,
        kernel_w: 2,
        kernel_h: 2,
        stride_w: 2,
        stride_h: 2,
        x: 0,
        y: 0,
        cols: 1,
        rows: 1,
        out_stride: 1,
    };
    for isa in Isa::all_available() {
        let cases: [([f32; 4], f32); 4] = [
            ([nan, 1.0, 2.0, 3.0], nan),
            ([1.0, nan, 5.0, 3.0], 5.0),
            ([-0.0, 0.0, -1.0, -2.0], -0.0),
            ([-1.0, 0.0, -0.0, -2.0], 0.0),
        ];
        for (src, want) in cases {
            let mut got = [7.0f32];
            max_f32(isa, &w, &src, &mut got);
            assert_eq!(got[0].to_bits(), want.to_bits(), "{isa:?} {src:?}");
        }
    }
}

#[test]
fn global_variants_match_generic_bits() {
    let mut rng = Rng::new(14);
    for plane in [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 49, 169, 196] {
        for channels in [1, 3, 4, 5, 8, 9] {
            let len = plane * channels;
            for src in [plain(&mut rng, len), nasty(&mut rng, len)] {
                let mut want = vec![0.5f32; channels];
                global_max_f32(Isa::Generic, &src, plane, &mut want);
                let mut want_avg = vec![0.5f32; channels];
                global_avg_f32(Isa::Generic, &src, plane, &mut want_avg);
                for isa in Isa::all_available() {
                    let mut got = vec![0.5f32; channels];
                    global_max_f32(isa, &src, plane, &mut got);
                    same_bits(
                        &got,
                        &want,
                        &format!("{isa:?} global max {plane}x{channels}"),
                    );
                    global_avg_f32(isa, &src, plane, &mut got);
                    for (g, e) in got.iter().zip(&want_avg) {
                        assert!(
                            g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan()),
                            "{isa:?} global avg {plane}x{channels}: {g} vs {e}"
                        );
                    }
                }
            }
            let q: Vec<i8> = (0..len).map(|_| rng.range(-128, 127) as i8).collect();
            let mut want = vec![0i8; channels];
            global_max_i8(Isa::Generic, &q, plane, &mut want);
            for isa in Isa::all_available() {
                let mut got = vec![0i8; channels];
                global_max_i8(isa, &q, plane, &mut got);
                assert_eq!(got, want, "{isa:?} global max i8 {plane}x{channels}");
            }
        }
    }
}

#[test]
#[should_panic(expected = "windows leave the row")]
fn windows_outside_the_row_are_refused() {
    let w = Windows {
        in_w: 4,
        kernel_w: 3,
        kernel_h: 1,
        stride_w: 2,
        stride_h: 1,
        x: 0,
        y: 0,
        cols: 2,
        rows: 1,
        out_stride: 2,
    };
    max_f32(Isa::detect(), &w, &[0.0; 4], &mut [0.0; 2]);
}
