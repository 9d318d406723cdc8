//! The three Winograd variants F(m x m, 3 x 3): their matrices (the definition, used for the
//! weight transform at load and by the tests) and the factored 1-D input and output
//! transforms that run per tile (the matrices' rows with shared subexpressions, written once
//! against [`Lane`] so the tests can run them in f64).
//!
//! With `α = m + 2` interpolation points, a tile's output is `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`
//! for the 3 x 3 filter `g` and the `α x α` input tile `d`. Points: F(2,3) 0, ±1, ∞;
//! F(4,3) 0, ±1, ±2, ∞; F(6,3) 0, ±1, ±2, ±1/2, ∞ (the usual choices: small integers and
//! their reciprocals keep the transforms' growth, and so the rounding error, low).

use super::lanes::Lane;

/// Which F(m, 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    F23,
    F43,
    F63,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::F23, Variant::F43, Variant::F63];

    /// Output tile side `m`.
    pub const fn m(self) -> usize {
        match self {
            Variant::F23 => 2,
            Variant::F43 => 4,
            Variant::F63 => 6,
        }
    }

    /// Input tile side `α = m + 2`.
    pub const fn alpha(self) -> usize {
        self.m() + 2
    }

    pub fn name(self) -> &'static str {
        match self {
            Variant::F23 => "F(2,3)",
            Variant::F43 => "F(4,3)",
            Variant::F63 => "F(6,3)",
        }
    }

    /// `G` (α x 3), row by row.
    pub fn g(self) -> Vec<[f64; 3]> {
        match self {
            Variant::F23 => vec![
                [1.0, 0.0, 0.0],
                [0.5, 0.5, 0.5],
                [0.5, -0.5, 0.5],
                [0.0, 0.0, 1.0],
            ],
            Variant::F43 => vec![
                [1.0 / 4.0, 0.0, 0.0],
                [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
                [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
                [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
                [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
                [0.0, 0.0, 1.0],
            ],
            Variant::F63 => vec![
                [1.0, 0.0, 0.0],
                [-2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0],
                [-2.0 / 9.0, 2.0 / 9.0, -2.0 / 9.0],
                [1.0 / 90.0, 1.0 / 45.0, 2.0 / 45.0],
                [1.0 / 90.0, -1.0 / 45.0, 2.0 / 45.0],
                [32.0 / 45.0, 16.0 / 45.0, 8.0 / 45.0],
                [32.0 / 45.0, -16.0 / 45.0, 8.0 / 45.0],
                [0.0, 0.0, 1.0],
            ],
        }
    }

    /// `Bᵀ` (α x α), row by row.
    pub fn bt(self) -> Vec<Vec<f64>> {
        let rows: &[&[f64]] = match self {
            Variant::F23 => &[
                &[1.0, 0.0, -1.0, 0.0],
                &[0.0, 1.0, 1.0, 0.0],
                &[0.0, -1.0, 1.0, 0.0],
                &[0.0, 1.0, 0.0, -1.0],
            ],
            Variant::F43 => &[
                &[4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
                &[0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
                &[0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
                &[0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
                &[0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
                &[0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
            ],
            Variant::F63 => &[
                &[1.0, 0.0, -5.25, 0.0, 5.25, 0.0, -1.0, 0.0],
                &[0.0, 1.0, 1.0, -4.25, -4.25, 1.0, 1.0, 0.0],
                &[0.0, -1.0, 1.0, 4.25, -4.25, -1.0, 1.0, 0.0],
                &[0.0, 0.5, 0.25, -2.5, -1.25, 2.0, 1.0, 0.0],
                &[0.0, -0.5, 0.25, 2.5, -1.25, -2.0, 1.0, 0.0],
                &[0.0, 2.0, 4.0, -2.5, -5.0, 0.5, 1.0, 0.0],
                &[0.0, -2.0, 4.0, 2.5, -5.0, -0.5, 1.0, 0.0],
                &[0.0, -1.0, 0.0, 5.25, 0.0, -5.25, 0.0, 1.0],
            ],
        };
        rows.iter().map(|r| r.to_vec()).collect()
    }

    /// `Aᵀ` (m x α), row by row.
    pub fn at(self) -> Vec<Vec<f64>> {
        let rows: &[&[f64]] = match self {
            Variant::F23 => &[&[1.0, 1.0, 1.0, 0.0], &[0.0, 1.0, -1.0, -1.0]],
            Variant::F43 => &[
                &[1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
                &[0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
                &[0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
                &[0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
            ],
            Variant::F63 => &[
                &[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
                &[0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 0.0],
                &[0.0, 1.0, 1.0, 4.0, 4.0, 0.25, 0.25, 0.0],
                &[0.0, 1.0, -1.0, 8.0, -8.0, 0.125, -0.125, 0.0],
                &[0.0, 1.0, 1.0, 16.0, 16.0, 0.0625, 0.0625, 0.0],
                &[0.0, 1.0, -1.0, 32.0, -32.0, 0.03125, -0.03125, 1.0],
            ],
        };
        rows.iter().map(|r| r.to_vec()).collect()
    }

    /// `G g Gᵀ` of one 3 x 3 filter (row-major `g`), α x α row-major, in f64.
    pub fn transform_filter(self, g: &[f32]) -> Vec<f64> {
        let a = self.alpha();
        let gm = self.g();
        // tmp = G g (α x 3), then tmp Gᵀ (α x α).
        let mut tmp = vec![0.0f64; a * 3];
        for i in 0..a {
            for j in 0..3 {
                tmp[i * 3 + j] = (0..3).map(|k| gm[i][k] * g[k * 3 + j] as f64).sum();
            }
        }
        let mut u = vec![0.0f64; a * a];
        for i in 0..a {
            for j in 0..a {
                u[i * a + j] = (0..3).map(|k| tmp[i * 3 + k] * gm[j][k]).sum();
            }
        }
        u
    }
}

/// `Bᵀ d` for F(2,3).
#[inline(always)]
pub fn input_f23<T: Lane>(d: &[T; 4]) -> [T; 4] {
    [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]
}

/// `Aᵀ m` for F(2,3).
#[inline(always)]
pub fn output_f23<T: Lane>(m: &[T; 4]) -> [T; 2] {
    [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]
}

/// `Bᵀ d` for F(4,3).
#[inline(always)]
pub fn input_f43<T: Lane>(d: &[T; 6]) -> [T; 6] {
    let t1 = d[4].mla(d[2], -4.0);
    let t2 = d[3].mla(d[1], -4.0);
    let t3 = d[4] - d[2];
    let t4 = (d[3] - d[1]).scale(2.0);
    [
        d[4].mla(d[0], 4.0).mla(d[2], -5.0),
        t1 + t2,
        t1 - t2,
        t3 + t4,
        t3 - t4,
        d[5].mla(d[1], 4.0).mla(d[3], -5.0),
    ]
}

/// `Aᵀ m` for F(4,3).
#[inline(always)]
pub fn output_f43<T: Lane>(m: &[T; 6]) -> [T; 4] {
    let a = m[1] + m[2];
    let b = m[1] - m[2];
    let c = m[3] + m[4];
    let d = m[3] - m[4];
    [
        m[0] + a + c,
        b.mla(d, 2.0),
        a.mla(c, 4.0),
        (b + m[5]).mla(d, 8.0),
    ]
}

/// `Bᵀ d` for F(6,3).
#[inline(always)]
pub fn input_f63<T: Lane>(d: &[T; 8]) -> [T; 8] {
    let t1 = (d[2] + d[6]).mla(d[4], -4.25);
    let t2 = (d[1] + d[5]).mla(d[3], -4.25);
    let t3 = d[6].mla(d[2], 0.25).mla(d[4], -1.25);
    let t4 = d[1].scale(0.5).mla(d[3], -2.5).mla(d[5], 2.0);
    let t5 = d[6].mla(d[2].mla(d[4], -1.25), 4.0);
    let t6 = d[1].scale(2.0).mla(d[3], -2.5).mla(d[5], 0.5);
    [
        (d[0] - d[6]).mla(d[4] - d[2], 5.25),
        t1 + t2,
        t1 - t2,
        t3 + t4,
        t3 - t4,
        t5 + t6,
        t5 - t6,
        (d[7] - d[1]).mla(d[3] - d[5], 5.25),
    ]
}

/// `Aᵀ m` for F(6,3).
#[inline(always)]
pub fn output_f63<T: Lane>(m: &[T; 8]) -> [T; 6] {
    let a1 = m[1] + m[2];
    let b1 = m[1] - m[2];
    let a2 = m[3] + m[4];
    let b2 = m[3] - m[4];
    let a3 = m[5] + m[6];
    let b3 = m[5] - m[6];
    [
        m[0] + a1 + a2 + a3,
        b1.mla(b2, 2.0).mla(b3, 0.5),
        a1.mla(a2, 4.0).mla(a3, 0.25),
        b1.mla(b2, 8.0).mla(b3, 0.125),
        a1.mla(a2, 16.0).mla(a3, 0.0625),
        (b1 + m[7]).mla(b2, 32.0).mla(b3, 0.03125),
    ]
}
