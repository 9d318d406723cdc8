//! Test helpers shared by the op unit tests: build params and run one op on owned buffers,
//! honouring its storage kind the way the net does.

use super::{Ctx, Op, Storage};
use crate::error::LayerResult;
use crate::model::paramdict::{ParamDict, Value};
use crate::pool::Pool;
use crate::tensor::{Shape, Tensor, TensorMut};

/// A param dict from (key, value) pairs.
pub fn params(pairs: &[(usize, Value)]) -> ParamDict {
    let mut pd = ParamDict::new();
    for (k, v) in pairs {
        pd.set(*k, v.clone()).unwrap();
    }
    pd
}

pub fn int(v: i32) -> Value {
    Value::Int(v)
}

pub fn float(v: f32) -> Value {
    Value::Float(v)
}

/// Values 0, 1, 2, ... as floats (easy to check by hand).
pub fn iota(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32).collect()
}

/// Runs `op` on the given inputs with `threads` workers; returns each output's shape and data.
pub fn run_threads(
    op: &dyn Op,
    inputs: &[(Shape, Vec<f32>)],
    threads: usize,
) -> LayerResult<Vec<(Shape, Vec<f32>)>> {
    let in_shapes: Vec<Shape> = inputs.iter().map(|(s, _)| *s).collect();
    for (s, d) in inputs {
        assert_eq!(s.len(), d.len(), "test input {s} has {} values", d.len());
    }
    let out_shapes = op.output_shapes(&in_shapes)?;
    let pool = Pool::new(threads).unwrap();
    let mut scratch = vec![0.0f32; op.scratch_len(&in_shapes, &out_shapes) * pool.threads()];
    let mut ctx = Ctx {
        pool: &pool,
        scratch: &mut scratch,
    };
    match op.storage() {
        Storage::Alias => Ok(out_shapes
            .iter()
            .map(|s| (*s, inputs[0].1[..s.len()].to_vec()))
            .collect()),
        Storage::InPlace => {
            let mut data = inputs[0].1.clone();
            let mut x = TensorMut {
                shape: out_shapes[0],
                data: &mut data,
            };
            op.forward_inplace(&mut x, &mut ctx)?;
            Ok(vec![(out_shapes[0], data)])
        }
        Storage::New => {
            let ins: Vec<Tensor> = inputs
                .iter()
                .map(|(s, d)| Tensor { shape: *s, data: d })
                .collect();
            // Outputs start as NaN so unwritten elements show up in comparisons.
            let mut bufs: Vec<Vec<f32>> =
                out_shapes.iter().map(|s| vec![f32::NAN; s.len()]).collect();
            let mut outs: Vec<TensorMut> = bufs
                .iter_mut()
                .zip(&out_shapes)
                .map(|(b, s)| TensorMut { shape: *s, data: b })
                .collect();
            op.forward(&ins, &mut outs, &mut ctx)?;
            drop(outs);
            Ok(out_shapes.into_iter().zip(bufs).collect())
        }
    }
}

/// `run_threads` with one worker.
pub fn run(op: &dyn Op, inputs: &[(Shape, Vec<f32>)]) -> LayerResult<Vec<(Shape, Vec<f32>)>> {
    run_threads(op, inputs, 1)
}

/// Asserts two float slices agree to a relative tolerance.
pub fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= tol * (1.0 + w.abs()) || (g.is_nan() && w.is_nan());
        assert!(
            ok,
            "element {i}: got {g}, want {w}\n got {got:?}\nwant {want:?}"
        );
    }
}
