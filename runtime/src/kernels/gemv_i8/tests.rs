use super::*;
use crate::kernels::requant::scale_in;
use crate::ops::activation::Activation;
use crate::rng::Rng;

fn reference(w: &[i8], x: &[i8], num_output: usize) -> Vec<i32> {
    let k = x.len();
    (0..num_output)
        .map(|o| {
            let s: i64 = (0..k).map(|i| w[o * k + i] as i64 * x[i] as i64).sum();
            i32::try_from(s).unwrap()
        })
        .collect()
}

fn random_values(rng: &mut Rng, n: usize, qmax: i32) -> Vec<i8> {
    (0..n)
        .map(|_| rng.range(-qmax as i64, qmax as i64) as i8)
        .collect()
}

/// Checks sums, whole outputs and a few row ranges of every variant bit for bit.
fn check(rng: &mut Rng, p: Precision, w: &[i8], x: &[i8], num_output: usize) {
    let num_input = x.len();
    let want = reference(w, x, num_output);
    let packed = PackedGemvI8::new(w, num_output, num_input, p);
    let ws: Vec<f32> = (0..num_output).map(|_| rng.uniform(1.0, 100.0)).collect();
    let scales = scale_in(rng.uniform(1.0, 50.0), &ws);
    let bias: Vec<f32> = (0..num_output).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let act = [
        Activation::None,
        Activation::ReLU,
        Activation::LeakyReLU(0.2),
    ][rng.range(0, 2) as usize];
    let requant = Requant {
        scale_in: &scales,
        bias: (rng.range(0, 1) == 0).then_some(&bias[..]),
        act,
        top_scale: 1.0,
        qmax: p.qmax(),
    };
    let want_y: Vec<u32> = want
        .iter()
        .enumerate()
        .map(|(o, &a)| requant.dequant(o, a).to_bits())
        .collect();
    for isa in Isa::all_available() {
        let mut acc = vec![0; num_output];
        sums_i8(isa, &packed, x, &mut acc);
        assert_eq!(acc, want, "{isa:?} {p:?} {num_output}x{num_input}");
        let mut y = vec![f32::NAN; num_output];
        gemv_i8(isa, &packed, x, &requant, &mut y);
        let got: Vec<u32> = y.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want_y, "{isa:?} {p:?} {num_output}x{num_input}");
        for _ in 0..3 {
            let a = rng.range(0, num_output as i64) as usize;
            let b = rng.range(a as i64, num_output as i64) as usize;
            let mut y = vec![f32::NAN; b - a];
            gemv_i8_rows(isa, &packed, x, &requant, a..b, &mut y);
            let got: Vec<u32> = y.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want_y[a..b], "{isa:?} {p:?} rows {a}..{b}");
        }
    }
}

#[test]
fn random_sizes_match_reference() {
    let mut rng = Rng::new(11);
    for i in 0..200 {
        let p = if i % 2 == 0 {
            Precision::Int8
        } else {
            Precision::Int7
        };
        let num_output = rng.range(1, 40) as usize;
        let num_input = match i % 4 {
            0 => rng.range(1, 40) as usize,
            1 => 32 * rng.range(1, 12) as usize,
            _ => rng.range(1, 400) as usize,
        };
        let w = random_values(&mut rng, num_output * num_input, p.qmax());
        let x = random_values(&mut rng, num_input, p.qmax());
        check(&mut rng, p, &w, &x, num_output);
    }
}

/// Every value at ±qmax, with all products of a row sharing one sign (same-sign,
/// opposite-sign and alternating-sign inputs with matching weights), so each int16 lane
/// reaches exactly its flush bound; `num_input` up to 8200.
#[test]
fn extremes_do_not_overflow_int16_lanes() {
    let mut rng = Rng::new(5);
    for p in [Precision::Int8, Precision::Int7] {
        let q = p.qmax() as i8;
        for num_input in [
            1, 2, 8, 31, 32, 33, 64, 127, 128, 129, 255, 1000, 8192, 8200,
        ] {
            let num_output = 6;
            let alt = |i: usize| if i.is_multiple_of(2) { q } else { -q };
            let x_patterns: [Vec<i8>; 3] = [
                vec![q; num_input],
                vec![-q; num_input],
                (0..num_input).map(alt).collect(),
            ];
            for x in &x_patterns {
                // Rows: x itself, -x, all +q, all -q, x again, -x again.
                let mut w = Vec::with_capacity(num_output * num_input);
                for r in 0..num_output {
                    match r % 4 {
                        0 => w.extend(x.iter().copied()),
                        1 => w.extend(x.iter().map(|&v| -v)),
                        2 => w.extend(std::iter::repeat_n(q, num_input)),
                        _ => w.extend(std::iter::repeat_n(-q, num_input)),
                    }
                }
                let want = reference(&w, x, num_output);
                let m = num_input as i32 * (q as i32) * (q as i32);
                assert_eq!((want[0], want[1]), (m, -m));
                check(&mut rng, p, &w, x, num_output);
            }
        }
    }
}

#[test]
fn packing_pads_rows_and_inputs_with_zeros() {
    let w: Vec<i8> = (1..=10).collect();
    let p = PackedGemvI8::new(&w, 2, 5, Precision::Int8);
    assert_eq!(p.data.len(), ROWS * BLOCK);
    assert_eq!(&p.data[..5], &[1, 2, 3, 4, 5]);
    assert_eq!(&p.data[BLOCK..BLOCK + 5], &[6, 7, 8, 9, 10]);
    assert_eq!(p.data.iter().filter(|&&v| v != 0).count(), 10);
}
