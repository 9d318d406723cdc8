//! DeconvolutionDepthWise: Deconvolution with groups, as ncnn's layer does. Params and
//! weights as Deconvolution's (`deconvolution.rs`, which holds the implementation) plus
//! `7 = group`: input channel block g (of `inch / group`) feeds only output channel block
//! g (of `num_output / group`); the weights are `[group][num_output / group][inch /
//! group][kernel_h][kernel_w]`. `group = inch = num_output` is the plain depthwise case.

use super::deconvolution::Deconv;
use super::{Ctx, Op};
use crate::error::{LayerResult, Result};
use crate::model::paramdict::ParamDict;
use crate::model::weights::WeightReader;
use crate::tensor::{Shape, Tensor, TensorMut};

#[derive(Debug)]
pub struct DeconvolutionDepthWise(pub Deconv);

impl DeconvolutionDepthWise {
    pub fn new(pd: &ParamDict, wr: &mut WeightReader) -> Result<DeconvolutionDepthWise> {
        Ok(DeconvolutionDepthWise(Deconv::new(pd, wr, true)?))
    }
}

impl Op for DeconvolutionDepthWise {
    fn output_shapes(&self, inputs: &[Shape]) -> LayerResult<Vec<Shape>> {
        self.0.output_shapes(inputs)
    }
    fn scratch_len(&self, inputs: &[Shape], outputs: &[Shape]) -> usize {
        self.0.scratch_len(inputs, outputs)
    }
    fn forward(
        &self,
        inputs: &[Tensor],
        outputs: &mut [TensorMut],
        ctx: &mut Ctx,
    ) -> LayerResult<()> {
        self.0.forward(inputs, outputs, ctx)
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::deconvolution::tests::{build, reference};
    use crate::ops::harness::{int, run};
    use crate::ops::Op;
    use crate::tensor::Shape;

    #[test]
    fn depthwise_channels_stay_apart() {
        // 2 groups, 1 -> 1 channel each, 1x1 kernels 2 and -1, stride 2 (zeros between).
        let op = build(
            &[(0, int(2)), (1, int(1)), (3, int(2)), (7, int(2))],
            &[2.0, -1.0],
            Some(&[0.0, 1.0]),
            true,
        )
        .unwrap();
        let x = Shape::d3(2, 1, 2);
        let data = vec![1.0, 2.0, 3.0, 4.0];
        let (s, out) = run(&op, &[(x, data.clone())]).unwrap().remove(0);
        assert_eq!(s, Shape::d3(3, 1, 2));
        assert_eq!(out, [2.0, 0.0, 4.0, -2.0, 1.0, -3.0]);
        assert_eq!(out, reference(&op, x, &data));
    }

    #[test]
    fn group_must_divide_the_input_channels() {
        let op = build(
            &[(0, int(4)), (1, int(1)), (7, int(2))],
            &[0.0; 4],
            None,
            true,
        )
        .unwrap();
        assert!(op.output_shapes(&[Shape::d3(2, 2, 2)]).is_ok());
        assert!(op.output_shapes(&[Shape::d3(2, 2, 3)]).is_err());
    }
}
