//! Plain Rust GEMV, summing in input order like the reference.

pub fn gemv(w: &[f32], x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let k = x.len();
    for (r, out) in y.iter_mut().enumerate() {
        let row = &w[r * k..(r + 1) * k];
        let mut sum = bias.map_or(0.0, |b| b[r]);
        for (&a, &b) in row.iter().zip(x) {
            sum += a * b;
        }
        *out = sum;
    }
}

/// [`gemv`] on fp16 weights, each widened exactly first.
pub fn gemv_f16(w: &[u16], x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    use crate::model::weights::f16_to_f32;
    let k = x.len();
    for (r, out) in y.iter_mut().enumerate() {
        let row = &w[r * k..(r + 1) * k];
        let mut sum = bias.map_or(0.0, |b| b[r]);
        for (&a, &b) in row.iter().zip(x) {
            sum += f16_to_f32(a) * b;
        }
        *out = sum;
    }
}
