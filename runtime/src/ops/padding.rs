//! Padding: grows a blob with borders, as ncnn's layer does.
//!
//! Params (ncnn ids): `0 / 1 = top / bottom`, `2 / 3 = left / right`, `7 / 8 = front /
//! behind`, `4 = type` (0 constant, 1 replicate the edge, 2 reflect without repeating the
//! edge), `5 = value` (the constant), `6 = per_channel_pad_data_size` (when > 0, that many
//! raw fp32 pad values follow in the .bin, one per channel, used instead of `value`).
//!
//! Which axes grow, by input dims:
//! * 1-D: w (left / right); the other pads are ignored.
//! * 2-D: h (top / bottom) and w.
//! * 3-D: h, w and the channels (front / behind). With type 0 the added channels are
//!   filled with the pad value; types 1 / 2 replicate / reflect whole channels too. The
//!   per-channel values are indexed by output channel (so the data needs `c + front +
//!   behind` entries).
//! * 4-D: h, w and the depth (front / behind), the same way; per-channel values are
//!   indexed by channel.
//!
//! The constant of a 1-D or 2-D blob is always `value`. Reflect needs every pad smaller
//! than its axis (checked at load, in `output_shapes`; ncnn reads out of bounds). No
//! padding at all copies the input.

use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult, Result};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, WeightReader};
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadType {
    Constant,
    Replicate,
    Reflect,
}

#[derive(Debug)]
pub struct Padding {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
    pub front: usize,
    pub behind: usize,
    pub pad_type: PadType,
    pub value: f32,
    /// Empty unless per_channel_pad_data_size > 0.
    pub per_channel: Floats,
}

/// Pads (before, after) on the (w, h, d, c) slots of a `dims`-D blob.
type Pads = [(usize, usize); 4];

impl Padding {
    pub fn new(pd: &ParamDict, w: &mut WeightReader) -> Result<Padding> {
        let pad = |key: usize, name: &str| -> LayerResult<usize> {
            let v = pd.int(key, 0)?;
            usize::try_from(v).map_err(|_| invalid(format!("{name} (key {key}) is negative: {v}")))
        };
        let pad_type = match pd.int(4, 0)? {
            0 => PadType::Constant,
            1 => PadType::Replicate,
            2 => PadType::Reflect,
            t => return Err(invalid(format!("unknown type {t} (key 4; 0, 1 or 2)")).into()),
        };
        let value = pd.float(5, 0.0)?;
        if !value.is_finite() {
            return Err(invalid(format!("value (key 5) is not finite: {value}")).into());
        }
        let n = pad(6, "per_channel_pad_data_size")?;
        let per_channel = if n > 0 {
            w.raw(n, "per_channel_pad_data")?
        } else {
            Floats::owned(Vec::new())
        };
        Ok(Padding {
            top: pad(0, "top")?,
            bottom: pad(1, "bottom")?,
            left: pad(2, "left")?,
            right: pad(3, "right")?,
            front: pad(7, "front")?,
            behind: pad(8, "behind")?,
            pad_type,
            value,
            per_channel,
        })
    }

    fn pads(&self, dims: u8) -> Pads {
        let (w, h, f) = (
            (self.left, self.right),
            (self.top, self.bottom),
            (self.front, self.behind),
        );
        match dims {
            1 => [w, (0, 0), (0, 0), (0, 0)],
            2 => [w, h, (0, 0), (0, 0)],
            3 => [w, h, (0, 0), f],
            _ => [w, h, f, (0, 0)],
        }
    }

    /// The source index along an axis of `n` for output index `i` (`lo` added before), or
    /// None where the constant goes.
    fn source(&self, i: usize, lo: usize, n: usize) -> Option<usize> {
        let s = i as i64 - lo as i64;
        let n = n as i64;
        if (0..n).contains(&s) {
            return Some(s as usize);
        }
        match self.pad_type {
            PadType::Constant => None,
            PadType::Replicate => Some(s.clamp(0, n - 1) as usize),
            PadType::Reflect => Some(if s < 0 { -s } else { 2 * (n - 1) - s } as usize),
        }
    }

    /// The constant for output channel `c` of a `dims`-D blob.
    fn constant(&self, dims: u8, c: usize) -> f32 {
        if dims >= 3 && !self.per_channel.is_empty() {
            self.per_channel[c]
        } else {
            self.value
        }
    }
}

impl Op for Padding {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let x = inputs[0];
        let pads = self.pads(x.dims);
        let n = [x.w, x.h, x.d, x.c];
        let mut e = n;
        for k in 0..4 {
            let (lo, hi) = pads[k];
            if self.pad_type == PadType::Reflect && (lo >= n[k] || hi >= n[k]) {
                return Err(invalid(format!(
                    "reflect padding ({lo}, {hi}) must be smaller than the axis ({}) of input {x}",
                    n[k]
                )));
            }
            e[k] = n[k] + lo + hi;
        }
        let out = Shape::checked(x.dims, e[0], e[1], e[2], e[3])?;
        if x.dims >= 3 && !self.per_channel.is_empty() && self.per_channel.len() < out.c {
            return Err(invalid(format!(
                "{} per-channel pad values, output {out} has {} channels",
                self.per_channel.len(),
                out.c
            )));
        }
        Ok(vec![out])
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        _: &mut Ctx,
    ) -> LayerResult<()> {
        let (x, out) = (&inputs[0], &mut outputs[0]);
        let (s, o) = (x.shape, out.shape);
        let [pw, ph, pd, pc] = self.pads(s.dims);
        let mut rows = out.data.chunks_exact_mut(o.w);
        for c in 0..o.c {
            let value = self.constant(s.dims, c);
            let sc = self.source(c, pc.0, s.c);
            for d in 0..o.d {
                let sd = self.source(d, pd.0, s.d);
                for h in 0..o.h {
                    let Some(row) = rows.next() else {
                        return Err(invalid("output smaller than planned"));
                    };
                    let sh = self.source(h, ph.0, s.h);
                    let (Some(sc), Some(sd), Some(sh)) = (sc, sd, sh) else {
                        row.fill(value);
                        continue;
                    };
                    let src = &x.data[((sc * s.d + sd) * s.h + sh) * s.w..][..s.w];
                    row[pw.0..pw.0 + s.w].copy_from_slice(src);
                    for i in (0..pw.0).chain(pw.0 + s.w..o.w) {
                        row[i] = match self.source(i, pw.0, s.w) {
                            Some(j) => src[j],
                            None => value,
                        };
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paramdict::Value;
    use crate::model::weights::Source;
    use crate::ops::harness::{float, int, params, run};
    use std::sync::Arc;

    fn op(p: &[(usize, Value)]) -> Padding {
        Padding::new(&params(p), &mut WeightReader::zeros()).unwrap()
    }

    fn with_data(p: &[(usize, Value)], data: &[f32]) -> Padding {
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut w = WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "test.bin");
        let op = Padding::new(&params(p), &mut w).unwrap();
        w.finish().unwrap();
        op
    }

    fn pad(op: &Padding, x: Shape, data: &[f32]) -> (Shape, Vec<f32>) {
        run(op, &[(x, data.to_vec())]).unwrap().remove(0)
    }

    #[test]
    fn one_d_types() {
        let x = Shape::d1(3);
        let data = [1.0, 2.0, 3.0];
        let p = |t| {
            op(&[
                (0, int(1)),
                (1, int(2)),
                (2, int(2)),
                (3, int(1)),
                (4, int(t)),
                (5, float(9.0)),
                (7, int(1)),
            ])
        };
        assert_eq!(
            pad(&p(0), x, &data),
            (Shape::d1(6), vec![9.0, 9.0, 1.0, 2.0, 3.0, 9.0])
        );
        assert_eq!(pad(&p(1), x, &data).1, [1.0, 1.0, 1.0, 2.0, 3.0, 3.0]);
        assert_eq!(pad(&p(2), x, &data).1, [3.0, 2.0, 1.0, 2.0, 3.0, 2.0]);
    }

    #[test]
    fn two_d_reflect() {
        let p = op(&[
            (0, int(1)),
            (1, int(1)),
            (2, int(2)),
            (3, int(1)),
            (4, int(2)),
        ]);
        let (s, out) = pad(&p, Shape::d2(3, 2), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(s, Shape::d2(6, 4));
        #[rustfmt::skip]
        assert_eq!(out, [
            6.0, 5.0, 4.0, 5.0, 6.0, 5.0,
            3.0, 2.0, 1.0, 2.0, 3.0, 2.0,
            6.0, 5.0, 4.0, 5.0, 6.0, 5.0,
            3.0, 2.0, 1.0, 2.0, 3.0, 2.0,
        ]);
    }

    #[test]
    fn channels_and_per_channel_values() {
        // 3-D w2 h1 c2, top 1, right 1, front 1, behind 1, values per output channel.
        let params = [
            (0, int(1)),
            (3, int(1)),
            (5, float(9.0)),
            (6, int(4)),
            (7, int(1)),
            (8, int(1)),
        ];
        let p = with_data(&params, &[10.0, 20.0, 30.0, 40.0]);
        let (s, out) = pad(&p, Shape::d3(2, 1, 2), &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s, Shape::d3(3, 2, 4));
        #[rustfmt::skip]
        assert_eq!(out, [
            10.0, 10.0, 10.0, 10.0, 10.0, 10.0,
            20.0, 20.0, 20.0, 1.0, 2.0, 20.0,
            30.0, 30.0, 30.0, 3.0, 4.0, 30.0,
            40.0, 40.0, 40.0, 40.0, 40.0, 40.0,
        ]);
        // Replicated channels: front copies channel 0, behind the last.
        let rep = op(&[(4, int(1)), (7, int(1)), (8, int(2))]);
        let (s, out) = pad(&rep, Shape::d3(1, 1, 3), &[1.0, 2.0, 3.0]);
        assert_eq!(
            (s, out),
            (Shape::d3(1, 1, 6), vec![1.0, 1.0, 2.0, 3.0, 3.0, 3.0])
        );
        // 4-D pads the depth; per-channel values by channel.
        let p4 = with_data(&[(0, int(1)), (6, int(2)), (7, int(1))], &[10.0, 20.0]);
        let (s, out) = pad(&p4, Shape::d4(2, 1, 1, 2), &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s, Shape::d4(2, 2, 2, 2));
        assert_eq!(
            out,
            [[10.0; 6].as_slice(), &[1.0, 2.0], &[20.0; 6], &[3.0, 4.0]].concat()
        );
        // 1-D / 2-D ignore the per-channel values.
        let (_, out) = pad(&p4, Shape::d2(1, 1), &[5.0]);
        assert_eq!(out, [0.0, 5.0]);
    }

    #[test]
    fn bad_params_and_shapes_are_errors() {
        let err = |p: &[(usize, Value)]| {
            Padding::new(&params(p), &mut WeightReader::zeros())
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[(0, int(-1))]).contains("top"));
        assert!(err(&[(4, int(3))]).contains("type"));
        assert!(err(&[(5, float(f32::NAN))]).contains("finite"));
        let reflect = op(&[(1, int(1)), (4, int(2))]);
        assert!(reflect.output_shapes(&[Shape::d3(4, 1, 2)]).is_err());
        assert!(reflect.output_shapes(&[Shape::d3(4, 2, 2)]).is_ok());
        let few = op(&[(6, int(2)), (7, int(1))]);
        assert!(few.output_shapes(&[Shape::d3(4, 2, 2)]).is_err());
        assert!(few.output_shapes(&[Shape::d4(4, 2, 2, 2)]).is_ok());
    }
}
