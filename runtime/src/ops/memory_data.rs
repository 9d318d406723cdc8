//! MemoryData: a constant blob stored in the .bin, with no inputs.
//!
//! Params: `0 = w`, `1 = h`, `11 = d`, `2 = c`, `21 = load_type` (1, the default: raw floats;
//! 0: a tagged blob, fp32 / fp16 / codebook). The shape is 4-D when `d` is set, else 3-D when
//! `c` is, else 2-D when `h` is, else 1-D; with every size 0 it is one value, read from nowhere
//! (0; ncnn leaves it uninitialised).

use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult, Result};
use crate::model::paramdict::ParamDict;
use crate::model::weights::{Floats, WeightReader};
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Debug)]
pub struct MemoryData {
    pub shape: Shape,
    pub data: Floats,
}

impl MemoryData {
    pub fn new(pd: &ParamDict, wr: &mut WeightReader) -> Result<MemoryData> {
        let (w, h, d, c) = (
            pd.usize(0, 0)?,
            pd.usize(1, 0)?,
            pd.usize(11, 0)?,
            pd.usize(2, 0)?,
        );
        let load_type = pd.int(21, 1)?;
        if load_type != 0 && load_type != 1 {
            return Err(invalid(format!(
                "load_type (param 21) must be 0 or 1, got {load_type}"
            ))
            .into());
        }
        let shape = if d != 0 {
            Shape::checked(4, w, h, d, c)?
        } else if c != 0 {
            Shape::checked(3, w, h, 1, c)?
        } else if h != 0 {
            Shape::checked(2, w, h, 1, 1)?
        } else if w != 0 {
            Shape::d1(w)
        } else {
            return Ok(MemoryData {
                shape: Shape::d1(1),
                data: Floats::owned(vec![0.0]),
            });
        };
        let n = shape.len();
        let data = if load_type == 1 {
            wr.raw(n, "data")?
        } else {
            wr.tagged(n, "data")?
                .into_f32()
                .map_err(crate::error::invalid)?
        };
        Ok(MemoryData { shape, data })
    }
}

impl Op for MemoryData {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 0)?;
        Ok(vec![self.shape])
    }
    fn forward(&self, _: &[Tensor], outputs: &mut [TensorMut], _: &mut Ctx) -> LayerResult<()> {
        outputs[0].data.copy_from_slice(&self.data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::Source;
    use crate::ops::harness::{int, params, run};
    use std::sync::Arc;

    fn reader(words: &[u32]) -> WeightReader {
        let bytes: Vec<u8> = words.iter().flat_map(|v| v.to_le_bytes()).collect();
        WeightReader::new(Arc::new(Source::from_bytes(&bytes)), "m.bin")
    }

    fn floats(n: usize) -> Vec<u32> {
        (0..n).map(|i| (i as f32 * 0.5).to_bits()).collect()
    }

    #[test]
    fn every_rank_raw_and_tagged() {
        let cases: [(&[(usize, i32)], Shape); 4] = [
            (&[(0, 5)], Shape::d1(5)),
            (&[(0, 3), (1, 2)], Shape::d2(3, 2)),
            (&[(0, 3), (1, 2), (2, 4)], Shape::d3(3, 2, 4)),
            (&[(0, 3), (1, 2), (11, 2), (2, 1)], Shape::d4(3, 2, 2, 1)),
        ];
        for (kv, shape) in cases {
            for tagged in [false, true] {
                let mut p: Vec<_> = kv.iter().map(|&(k, v)| (k, int(v))).collect();
                let mut words = floats(shape.len());
                if tagged {
                    p.push((21, int(0)));
                    words.insert(0, 0);
                }
                let mut w = reader(&words);
                let op = MemoryData::new(&params(&p), &mut w).unwrap();
                w.finish().unwrap();
                let out = run(&op, &[]).unwrap();
                assert_eq!(out[0].0, shape);
                let want: Vec<f32> = (0..shape.len()).map(|i| i as f32 * 0.5).collect();
                assert_eq!(out[0].1, want);
            }
        }
        let mut w = reader(&[]);
        let op = MemoryData::new(&ParamDict::new(), &mut w).unwrap();
        assert_eq!(run(&op, &[]).unwrap()[0], (Shape::d1(1), vec![0.0]));
    }

    #[test]
    fn errors() {
        let mut w = reader(&floats(3));
        assert!(MemoryData::new(&params(&[(0, int(4))]), &mut w).is_err());
        let mut w = reader(&floats(8));
        assert!(MemoryData::new(&params(&[(0, int(4)), (21, int(2))]), &mut w).is_err());
        assert!(MemoryData::new(&params(&[(0, int(-4))]), &mut w).is_err());
        assert!(MemoryData::new(&params(&[(0, int(4)), (2, int(2))]), &mut w).is_err());
        let op = MemoryData::new(&params(&[(0, int(2))]), &mut w).unwrap();
        assert!(op.output_shapes(&[Shape::d1(2)]).is_err());
    }
}
