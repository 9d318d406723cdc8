//! ShuffleChannel: `0 = group` (default 1, >= 1), `1 = reverse` (default 0; 0 or 1).
//! Channels viewed as a (group, c / group) matrix are transposed: input channel
//! `i * (c / group) + j` goes to output channel `j * group + i`. `reverse = 1` undoes the
//! shuffle (the same with group replaced by c / group). 3-D and 4-D blobs (a channel is its
//! d * h * w plane); c must be a multiple of group.

use super::{expect_inputs, Ctx, Op};
use crate::error::{invalid, LayerResult};
use crate::model::paramdict::ParamDict;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Debug)]
pub struct ShuffleChannel {
    pub group: usize,
    pub reverse: bool,
}

impl ShuffleChannel {
    pub fn new(pd: &ParamDict) -> LayerResult<ShuffleChannel> {
        let group = pd.int(0, 1)?;
        if group < 1 {
            return Err(invalid(format!(
                "shufflechannel group must be >= 1, got {group}"
            )));
        }
        let reverse = match pd.int(1, 0)? {
            0 => false,
            1 => true,
            v => {
                return Err(invalid(format!(
                    "shufflechannel reverse must be 0 or 1, got {v}"
                )))
            }
        };
        Ok(ShuffleChannel {
            group: group as usize,
            reverse,
        })
    }

    /// The group in effect for `c` channels.
    fn effective_group(&self, c: usize) -> usize {
        if self.reverse {
            c / self.group
        } else {
            self.group
        }
    }
}

impl Op for ShuffleChannel {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        expect_inputs(inputs, 1)?;
        let x = inputs[0];
        if x.dims < 3 {
            return Err(invalid(format!(
                "shufflechannel needs a 3-D or 4-D blob, got {x}"
            )));
        }
        if !x.c.is_multiple_of(self.group) {
            return Err(invalid(format!(
                "shufflechannel: {} channels are not a multiple of group {}",
                x.c, self.group
            )));
        }
        Ok(vec![x])
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        _ctx: &mut Ctx,
    ) -> LayerResult<()> {
        let x = &inputs[0];
        let out = &mut outputs[0];
        let c = x.shape.c;
        let group = self.effective_group(c);
        let per_group = c / group;
        for i in 0..group {
            for j in 0..per_group {
                out.channel_mut(j * group + i)
                    .copy_from_slice(x.channel(i * per_group + j));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::harness::{int, iota, params, run};

    fn op(group: i32, reverse: i32) -> ShuffleChannel {
        ShuffleChannel::new(&params(&[(0, int(group)), (1, int(reverse))])).unwrap()
    }

    #[test]
    fn shuffles_and_unshuffles_by_hand() {
        let s = Shape::d3(1, 1, 6);
        let out = run(&op(2, 0), &[(s, iota(6))]).unwrap();
        assert_eq!(out[0].1, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let out = run(&op(3, 0), &[(s, iota(6))]).unwrap();
        assert_eq!(out[0].1, vec![0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
        // reverse with group 2 is the shuffle with group 3, and undoes group 2.
        let out = run(&op(2, 1), &[(s, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0])]).unwrap();
        assert_eq!(out[0].1, iota(6));
        // group 1 and group c are the identity.
        assert_eq!(run(&op(1, 0), &[(s, iota(6))]).unwrap()[0].1, iota(6));
        assert_eq!(run(&op(6, 1), &[(s, iota(6))]).unwrap()[0].1, iota(6));
    }

    #[test]
    fn moves_whole_planes_of_4d_blobs() {
        let s = Shape::d4(1, 1, 2, 4);
        let out = run(&op(2, 0), &[(s, iota(8))]).unwrap();
        assert_eq!(out[0].0, s);
        assert_eq!(out[0].1, vec![0.0, 1.0, 4.0, 5.0, 2.0, 3.0, 6.0, 7.0]);
    }

    #[test]
    fn bad_params_and_shapes() {
        assert!(ShuffleChannel::new(&params(&[(0, int(0))])).is_err());
        assert!(ShuffleChannel::new(&params(&[(1, int(2))])).is_err());
        assert!(op(4, 0).output_shapes(&[Shape::d3(2, 2, 6)]).is_err());
        assert!(op(2, 0).output_shapes(&[Shape::d2(2, 6)]).is_err());
        assert!(op(2, 0).output_shapes(&[Shape::d1(6)]).is_err());
    }
}
