//! Small nets written inline, one or more per layer family, loaded with zero weights: the
//! zero-allocation test runs them, the fuzz smoke test mutates them.

/// Small nets written inline: (name, param text). Weights are zeros.
pub const TEXT_MODELS: &[(&str, &str)] = &[
    ("shape_exprs", "7767517\n5 6\nInput in 0 1 x 0=6 1=4 2=3\nInput r 0 1 r 0=8 1=2\nSplit s 1 2 x x0 x1\nInterp i 2 1 x0 r y0 0=2 9=\"*(1w,2),+(0h,1)\"\nReshape re 1 1 x1 y1 6=\"0h,*(0w,0c)\"\n"),
    (
        "relu",
        "7767517\n2 2\nInput in 0 1 data 0=8 1=8 2=3\nReLU r 1 1 data out\n",
    ),
    (
        "leaky_relu_split",
        "7767517\n5 7\nInput in 0 1 data 0=17 1=5 2=4\nReLU r0 1 1 data a 0=1e-1\n\
         Split s 1 3 a b c d\nReLU r1 1 1 b e\nReLU r2 1 1 c f\n",
    ),
    (
        "two_inputs_1d_2d",
        "7767517\n4 4\nInput i0 0 1 x 0=100\nInput i1 0 1 y 0=7 1=3\n\
         ReLU r0 1 1 x x1\nReLU r1 1 1 y y1\n",
    ),
    (
        // Every Interp form: nearest x2, aligned bilinear by size, bicubic by non-integer
        // scales, the dynamic size of a reference blob, a 2-D width resize, the small-input
        // rule, a 1-D fill.
        "interp_forms",
        "7767517\n13 17\nInput in 0 1 x 0=5 1=4 2=3\nInput small 0 1 s 0=3 1=2 2=2\n\
         Input vec 0 1 v 0=4\nInput rows 0 1 r 0=6 1=9\nSplit sx 1 4 x x0 x1 x2 x3\n\
         Split sr 1 2 r r0 r1\nInterp n 1 1 x0 yn 0=1 1=2.0 2=2.0\n\
         Interp b 1 1 x1 yb 0=2 3=3 4=7 6=1\nInterp c 1 1 x2 yc 0=3 1=1.5 2=0.75\n\
         Interp d 2 1 x3 r0 yd 0=2 5=1\nInterp e 1 1 r1 ye 0=3 3=2 4=11\n\
         Interp f 1 1 s yf 0=3 3=5 4=4\nInterp g 1 1 v yg 0=1 3=2 4=3\n",
    ),
    (
        // Every activation / element-wise op of op_nets_elem.py, chained in place.
        "elementwise_ops",
        "7767517\n17 17\nInput in 0 1 x 0=40 1=40 2=12\nHardSwish a 1 1 x a\n\
         HardSigmoid b 1 1 a b\nSwish c 1 1 b c\nMish d 1 1 c d\nGELU e 1 1 d e\n\
         GELU f 1 1 e f 0=1\nTanH g 1 1 f g\nAbsVal h 1 1 g h\nELU i 1 1 h i\nSELU j 1 1 i j\n\
         Power k 1 1 j k 0=2.0 2=1.0\nExp l 1 1 k l 0=2.0 1=0.5\nLog m 1 1 l m 0=10.0\n\
         Erf n 1 1 m n\nBNLL o 1 1 n o\nUnaryOp p 1 1 o p 0=16\n",
    ),
    (
        // Shape ops (ShuffleChannel both ways, ExpandDims / Squeeze / Flatten aliases) and the
        // newer BinaryOp types, broadcast and scalar.
        "shape_and_binary_ops",
        "7767517\n10 10\nInput in 0 1 x 0=6 1=5 2=8\nInput v 0 1 v 0=1 1=1 2=8\n\
         ShuffleChannel s 1 1 x s 0=2\nShuffleChannel r 1 1 s r 0=2 1=1\n\
         ExpandDims e 1 1 r e -23303=1,0\nSqueeze q 1 1 e q -23303=1,0\nSqueeze sv 1 1 v sv 0=1 1=1\n\
         BinaryOp b 2 1 q sv o 0=17\nFlatten f 1 1 o f\nBinaryOp m 1 1 f p 0=14 1=1 2=0.5\n",
    ),
    (
        "crop_forms",
        "7767517\n5 6\nInput in 0 1 x 0=6 1=5 2=4\nInput r 0 1 r 0=3 1=2\nSplit s 1 2 x x0 x1\n\
         Crop a 1 1 x0 ya 0=1 3=-233 4=2 1=1 5=-233 8=1\nCrop b 2 1 x1 r yb 0=2 1=1\n",
    ),
    (
        "slice_forms",
        "7767517\n3 6\nInput in 0 1 x 0=6 1=5 2=4\nSlice a 1 3 x y0 y1 y2 -23300=3,1,-233,-233 1=-2\n\
         Slice b 1 2 y2 z0 z1 -23302=1,2 1=2\n",
    ),
    (
        "padding_forms",
        "7767517\n5 7\nInput in 0 1 x 0=6 1=5 2=4\nSplit s 1 3 x x0 x1 x2\n\
         Padding a 1 1 x0 ya 0=1 1=2 2=3 3=1 4=0 5=0.5 7=1 8=2\n\
         Padding b 1 1 x1 yb 0=2 3=1 4=1 7=1\nPadding c 1 1 x2 yc 0=1 1=2 2=3 3=1 4=2 7=1 8=3\n",
    ),
    (
        "tile_forms",
        "7767517\n4 5\nInput in 0 1 x 0=6 1=5 2=4\nSplit s 1 2 x x0 x1\n\
         Tile a 1 1 x0 ya 0=1 1=3\nTile b 1 1 x1 yb -23302=4,2,1,3,2\n",
    ),
    (
        // dynamic_weight: kernel and bias are inputs, nothing in the .bin.
        "deconv_dynamic_weight",
        "7767517\n6 6\nInput in 0 1 x 0=6 1=5 2=4\nInput w 0 1 w 0=3 1=3 11=2 2=4\n\
         Input b 0 1 b 0=2\nInput w2 0 1 w2 0=2 1=2 11=1 2=2\n\
         Deconvolution a 3 1 x w b ya 3=2 4=1 5=1 28=1 9=1\n\
         DeconvolutionDepthWise c 2 1 ya w2 yc 7=2 28=1\n",
    ),
    (
        // Random maps in [-1, 1] give confidences up to ~0.66: many candidates to sort and
        // suppress.
        "yolov3_head",
        "7767517\n3 3\nInput a 0 1 a 0=3 1=2 2=27\nInput b 0 1 b 0=6 1=4 2=27\n\
         Yolov3DetectionOutput det 2 1 a b out 0=4 1=3 2=0.3 \
         -23304=12,10.0,14.0,23.0,27.0,37.0,58.0,81.0,82.0,135.0,169.0,34.0,31.0 \
         -23305=6,3.0,4.0,5.0,0.0,1.0,2.0 -23306=2,32.0,16.0\n",
    ),
    (
        "quantize_dequantize_requantize",
        "7767517\n5 6\nInput in 0 1 x 0=7 1=5 2=4\nSplit s 1 2 x x0 x1\nQuantize q 1 1 x0 q 0=4\n\
         Dequantize d 1 1 q y 0=4 1=4\nRequantize r 1 1 x1 z 0=4 1=1 2=4 3=2 -23304=1,0.1\n",
    ),
    (
        "roi_pooling_psroi_pooling",
        "7767517\n5 6\nInput f 0 1 f 0=9 1=7 2=8\nInput r 0 1 r 0=4\nSplit s 1 2 f f0 f1\n\
         ROIPooling a 2 1 f0 r ya 0=3 1=2 2=0.5\nPSROIPooling b 2 1 f1 r yb 0=2 1=2 2=1.0 3=2\n",
    ),
    (
        "yolo_region_head",
        "7767517\n3 3\nInput a 0 1 a 0=5 1=4 2=18\nInput b 0 1 b 0=3 1=2 2=18\n\
         YoloDetectionOutput det 2 1 a b out 0=4 1=2 2=0.2 -23304=4,1.0,1.5,3.0,2.0\n",
    ),
    (
        // Random inputs in [-1, 1], im_info too (every box clips to a point; min_size 0 keeps
        // them all for the sort and NMS); the ROIs then feed ROIPooling.
        "proposal_rois",
        "7767517\n6 7\nInput s 0 1 s 0=6 1=5 2=18\nInput b 0 1 b 0=6 1=5 2=36\n\
         Input i 0 1 i 0=3\nInput f 0 1 f 0=6 1=5 2=4\n\
         Proposal p 3 2 s b i rois scores 2=40 3=12 5=0\nROIPooling r 2 1 f rois y 0=2 1=2\n",
    ),
    (
        // Every norm (without affine weights: the bin is empty): LayerNorm per row and per
        // channel, RMSNorm, GroupNorm, InstanceNorm; then reductions (mean over two axes with
        // keepdims, logsumexp over all).
        "norms_reduction",
        "7767517\n9 13\nInput in 0 1 x 0=8 1=4 11=2 2=6\nSplit s 1 5 x x0 x1 x2 x3 x4\n\
         LayerNorm ln 1 1 x0 a 0=8 1=1e-5 2=0\nLayerNorm lp 1 1 x1 b 0=64 2=0\n\
         RMSNorm rn 1 1 x2 c 0=8 2=0\nGroupNorm gn 1 1 x3 d 0=3 1=6 3=0\n\
         InstanceNorm inn 1 1 x4 e 0=6 1=1e-5 2=0\n\
         Reduction rm 1 1 a f 0=3 1=0 5=1 -23303=2,0,-1 4=1\nReduction rl 1 1 b g 0=10\n",
    ),
    (
        // Softmax over an outer axis of a 4-D blob (strided, scratch rows), the innermost axis
        // (negative), and a 2-D blob's rows.
        "softmax_axes",
        "7767517\n6 7\nInput in 0 1 x 0=7 1=5 11=3 2=4\nInput r 0 1 r 0=9 1=6\n\
         Split s 1 2 x x0 x1\nSoftmax a 1 1 x0 y 0=1 1=1\nSoftmax b 1 1 x1 z 0=-1 1=1\n\
         Softmax c 1 1 r w 0=1 1=1\n",
    ),
    (
        // MatMul: batched 4-D x broadcast 3-D with transB, 2-D x 2-D large enough to split
        // across threads, 1-D x 3-D.
        "matmul_forms",
        "7767517\n9 9\nInput a 0 1 a 0=16 1=5 11=3 2=2\nInput b 0 1 b 0=16 1=6 2=1\n\
         Input c 0 1 c 0=64 1=48\nInput d 0 1 d 0=40 1=64\nInput v 0 1 v 0=64\n\
         Input e 0 1 e 0=40 1=64 2=2\nMatMul m0 2 1 a b x 0=1\nMatMul m1 2 1 c d y\n\
         MatMul m2 2 1 v e z\n",
    ),
    (
        // MatMul on the packed GEMM path: 4-D x broadcast 3-D with transB, 3-D x 2-D.
        "matmul_packed",
        "7767517\n5 6\nInput a 0 1 a 0=40 1=33 11=2 2=3\nInput b 0 1 b 0=40 1=50 2=2\n\
         Input c 0 1 c 0=24 1=50\nMatMul m0 2 1 a b x 0=1\nMatMul m1 2 1 x c y\n",
    ),
    (
        // Gemm of inputs: transA with a per-column C, transB of a 3-D (h = 1) B, transposed
        // N1M output.
        "gemm_inputs",
        "7767517\n6 7\nInput a 0 1 a 0=6 1=9\nInput b 0 1 b 0=9 1=1 2=7\nInput c 0 1 c 0=7\n\
         Split s 1 2 a a0 a1\nGemm g0 3 1 a0 b c x 0=0.5 1=2.0 2=1 3=1\n\
         Gemm g1 2 1 a1 a1 y 3=1 11=1 14=1\n",
    ),
    (
        // MemoryData of each rank, Embed with bias, norms with affine weights.
        "memory_embed_affine_norms",
        "7767517\n9 9\nInput in 0 1 x 0=6\nInput rows 0 1 r 0=8 1=5 2=3\n\
     MemoryData m1 0 1 m1 0=7\nMemoryData m3 0 1 m3 0=4 1=3 2=2\n\
     MemoryData m4 0 1 m4 0=2 1=3 11=4 2=5 21=0\nEmbed e 1 1 x e 0=16 1=10 2=1 3=160\n\
     LayerNorm ln 1 1 e a 0=16\nGroupNorm gn 1 1 r b 0=3 1=3\nRMSNorm rn 1 1 b c 0=40\n",
    ),
    (
        // Gemm with constant B (a linear layer on the packed kernel) and constant C per
        // column; all constant.
        "gemm_constant",
        "7767517\n3 3\nInput in 0 1 x 0=64 1=40\n\
         Gemm fc 1 1 x y 3=1 5=1 6=1 8=32 9=64 10=4\n\
         Gemm k 0 1 z 4=1 5=1 6=1 7=3 8=4 9=5 10=3\n",
    ),
    (
        // int8 forms (zero int8 weights): Gemm of two dynamic inputs, Gemm with constant B
        // (small: the loop; large: the int8 kernel), Embed, cross-attention with a mask,
        // self-attention with projections on the int8 kernel.
        "int8_matrix",
        "7767517\n14 17\nInput a 0 1 a 0=6 1=9\nInput b 0 1 b 0=5 1=6\nInput ids 0 1 i 0=4\n\
         Input kv 0 1 kv 0=12 1=5\nInput m 0 1 m 0=5 1=9 2=2\nInput big 0 1 big 0=64 1=40\n\
         Split s 1 3 a a0 a1 a2\nGemm g0 2 1 a0 b x 0=0.5 18=1\n\
         Gemm g1 1 1 a1 y 3=1 5=1 8=32 9=6 18=1\nEmbed e 1 1 i e 0=8 1=10 3=80 18=1\n\
         MultiHeadAttention t 3 1 a2 kv m z 0=8 1=2 2=48 3=12 4=12 5=1 18=1\n\
         Split sb 1 2 big b0 b1\nGemm g2 1 1 b0 w 3=1 5=1 6=1 8=32 9=64 10=4 18=1\n\
         MultiHeadAttention t2 1 1 b1 u 0=64 1=4 2=4096 18=1\n",
    ),
    (
        // MultiHeadAttention: self-attention (projections on the packed kernel), and
        // cross-attention with a per-head mask.
        "multi_head_attention",
        "7767517\n6 7\nInput x 0 1 x 0=64 1=40\nInput kv 0 1 kv 0=12 1=5\n\
         Input m 0 1 m 0=5 1=40 2=4\nSplit s 1 2 x x0 x1\n\
         MultiHeadAttention a 1 1 x0 y 0=64 1=4 2=4096\n\
         MultiHeadAttention c 3 1 x1 kv m z 0=8 1=4 2=512 3=12 4=12 5=1\n",
    ),
    (
        // Deconvolution with pads and a fused ReLU, DeconvolutionDepthWise with SAME_UPPER and
        // an output size, Padding with per-channel values (zero weights).
        "deconv_and_padding_weights",
        "7767517\n5 7\nInput in 0 1 x 0=6 1=5 2=4\nSplit s 1 3 x x0 x1 x2\n\
         Deconvolution a 1 1 x0 ya 0=3 1=3 3=2 4=1 5=1 6=108 9=1\n\
         DeconvolutionDepthWise b 1 1 x1 yb 0=4 1=3 7=4 3=2 4=-233 20=10 21=9 6=36\n\
         Padding c 1 1 x2 yc 0=1 2=1 6=7 7=1 8=2\n",
    ),
];
