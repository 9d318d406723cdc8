"""Builds small ONNX models for the `eq import onnx` tests and runs them in onnxruntime.

usage: onnx_models.py OUTDIR NAME...

For each NAME writes OUTDIR/NAME.onnx, its random input(s) OUTDIR/NAME.in<i>.npy (with the
batch dim) and onnxruntime's outputs OUTDIR/NAME.out<i>.npy, and prints one line per model:
`NAME in=<input names comma separated> out=<output names comma separated>`.
Exit code 3 when onnx, onnxruntime or numpy is not installed (the caller then skips).
"""
import sys

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:
    print(f"onnx_models.py: {e}", file=sys.stderr)
    sys.exit(3)

OPSET = 17
rng = np.random.default_rng(1234)


class G:
    """A graph under construction: nodes, initializers, unique value names."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, arr, base="w"):
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def w(self, *shape, scale=0.5):
        return self.const(rng.uniform(-scale, scale, shape).astype(np.float32))

    def op(self, op_type, inputs, n_out=1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(
            helper.make_node(op_type, inputs, outs, name=self.name("n" + op_type), **attrs)
        )
        return outs[0] if n_out == 1 else outs

    def conv(self, x, cin, cout, k=3, group=1, bias=True, **attrs):
        ins = [x, self.w(cout, cin // group, k, k)]
        if bias:
            ins.append(self.w(cout))
        return self.op("Conv", ins, kernel_shape=[k, k], group=group, **attrs)

    def bn(self, x, c):
        return self.op(
            "BatchNormalization",
            [
                x,
                self.const(rng.uniform(0.5, 1.5, c).astype(np.float32)),
                self.const(rng.uniform(-0.5, 0.5, c).astype(np.float32)),
                self.const(rng.uniform(-0.5, 0.5, c).astype(np.float32)),
                self.const(rng.uniform(0.5, 2.0, c).astype(np.float32)),
            ],
            epsilon=1e-3,
        )

    def i64(self, *v):
        return self.const(np.array(v, dtype=np.int64), "c")

    def shape_chain(self, x, tail):
        """Shape(x)[0:2] ++ tail, as torch exports write `x.view(n, c, ...)`."""
        s = self.op("Shape", [x])
        n = self.op("Gather", [s, self.const(np.array(0, dtype=np.int64), "i")], axis=0)
        c = self.op("Gather", [s, self.const(np.array(1, dtype=np.int64), "i")], axis=0)
        n = self.op("Unsqueeze", [n, self.i64(0)])
        c = self.op("Unsqueeze", [c, self.i64(0)])
        return self.op("Concat", [n, c, self.i64(*tail)], axis=0)


def build(name):
    g = G()
    inputs = {"x": [1, 4, 8, 8]}
    x = "x"
    if name == "conv":
        a = g.conv(x, 4, 6, pads=[1, 1, 1, 1])
        a = g.op("Relu", [g.bn(a, 6)])  # folded into the conv
        b = g.conv(a, 6, 6, group=6, pads=[1, 1, 1, 1], strides=[2, 2])  # depthwise
        c = g.conv(a, 6, 4, k=3, dilations=[2, 2], pads=[2, 2, 2, 2], bias=False)
        d = g.conv(c, 4, 4, k=3, pads=[0, 1, 1, 0])  # asymmetric pads
        e = g.conv(d, 4, 8, k=3, group=2, strides=[2, 1], pads=[1, 1, 1, 1])  # grouped
        f = g.conv(e, 8, 3, k=2, auto_pad="SAME_UPPER")
        outs = [b, f]
    elif name == "deconv":
        a = g.op("ConvTranspose", [x, g.w(4, 3, 3, 3), g.w(3)], kernel_shape=[3, 3],
                 strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])
        a = g.bn(a, 3)
        b = g.op("ConvTranspose", [x, g.w(4, 2, 2, 2)], kernel_shape=[2, 2], strides=[2, 2],
                 group=2)
        outs = [a, b]
    elif name == "gemm":
        f = g.op("Flatten", [x], axis=1)
        a = g.op("Gemm", [f, g.w(10, 256), g.w(10)], transB=1, alpha=0.5, beta=2.0)
        a = g.op("Relu", [g.bn(a, 10)])
        b = g.op("MatMul", [a, g.w(10, 7)])
        b = g.op("Add", [b, g.w(7)])
        c = g.op("Gemm", [f, g.w(256, 5)])
        outs = [b, c]
    elif name == "matmul":
        inputs = {"x": [1, 6, 8], "y": [1, 8, 5]}
        a = g.op("MatMul", ["x", "y"])
        b = g.op("MatMul", ["x", g.w(8, 3)])  # row by row: InnerProduct
        c = g.op("MatMul", [g.w(1, 4, 6), "x"])  # constant first: MemoryData
        outs = [a, b, c]
    elif name == "activations":
        a = g.op("Clip", [x, g.const(np.float32(0.0)), g.const(np.float32(0.6))])
        b = g.op("LeakyRelu", [x], alpha=0.2)
        c = g.op("HardSwish", [x])
        d = g.op("HardSigmoid", [x], alpha=0.3, beta=0.4)
        e = g.op("Mul", [x, g.op("Sigmoid", [x])])  # Swish
        f = g.op("Sigmoid", [g.op("Tanh", [g.op("Relu", [x])])])
        h = g.op("Clip", [x, g.const(np.float32(-0.3))])  # min only
        outs = [a, b, c, d, e, f, h]
    elif name == "broadcast":
        gap = g.op("GlobalAveragePool", [x])
        a = g.op("Add", [x, gap])  # [1,C,H,W] + [1,C,1,1]
        b = g.op("Mul", [a, g.w(4, 1, 1)])  # per-channel constant
        c = g.op("Sub", [g.const(np.float32(1.5)), b])  # scalar first: RSub
        d = g.op("Div", [c, g.const(rng.uniform(1, 2, (1, 4, 1, 1)).astype(np.float32))])
        e = g.op("Mul", [d, g.w(8)])  # along w
        f = g.op("Add", [e, g.const(np.float32(0.25))])
        h = g.op("Div", [g.const(np.float32(2.0)), g.op("Add", [g.op("Sigmoid", [f]),
                                                           g.const(np.float32(1.0))])])
        k = g.op("Mul", [g.w(1, 8, 8), h])  # [H,W] constant over channels
        outs = [k]
    elif name == "pooling":
        inputs = {"x": [1, 3, 9, 9]}
        a = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
        b = g.op("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                 count_include_pad=1)
        c = g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 0, 0])
        d = g.op("MaxPool", [x], kernel_shape=[2, 3], strides=[1, 2], pads=[0, 1, 1, 1])
        e = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
        f = g.op("GlobalMaxPool", [x])
        outs = [a, b, c, d, e, f]
    elif name == "shapes":
        a = g.op("Reshape", [x, g.shape_chain(x, [2, 32])])  # [1,4,2,32]
        a = g.op("Transpose", [a], perm=[0, 2, 1, 3])  # [1,2,4,32]
        b = g.op("Concat", [a, g.op("Relu", [a])], axis=3)  # [1,2,4,64]
        c = g.op("Slice", [b, g.i64(1, 2), g.i64(4, 60), g.i64(2, 3)])  # [1,2,3,58]
        s1, s2 = g.op("Split", [c, g.i64(20, 38)], n_out=2, axis=-1)
        p = g.op("Pad", [x, g.i64(0, 0, 1, 2, 0, 0, 2, 1), g.const(np.float32(0.5))])
        r = g.op("Pad", [x, g.i64(0, 0, 2, 1, 0, 0, 1, 2)], mode="reflect")
        sm = g.op("Softmax", [x], axis=1)
        sm2 = g.op("Softmax", [x])
        m = g.op("ReduceMean", [x], axes=[2, 3], keepdims=1)
        m2 = g.op("ReduceMean", [x], axes=[1], keepdims=0)
        t = g.op("Transpose", [g.op("Reshape", [x, g.i64(1, 4, 64)])], perm=[0, 2, 1])
        u = g.op("Unsqueeze", [g.op("Squeeze", [m, g.i64(3)]), g.i64(1)])  # [1,1,4,1]
        outs = [s1, s2, p, r, sm, sm2, m, m2, t, u]
    elif name == "resize":
        a = g.op("Resize", [x, "", g.const(np.array([1, 1, 2, 2], dtype=np.float32))],
                 mode="nearest")
        size = g.op("Concat", [g.op("Slice", [g.op("Shape", [x]), g.i64(0), g.i64(2)]),
                               g.i64(12, 20)], axis=0)
        b = g.op("Resize", [x, "", "", size], mode="linear")
        c = g.op("Resize", [x, "", g.const(np.array([1, 1, 2, 3], dtype=np.float32))],
                 mode="linear", coordinate_transformation_mode="align_corners")
        outs = [a, b, c]
    elif name == "misc":
        a = g.bn(x, 4)  # not after a conv: an ncnn BatchNorm
        b = g.op("Max", [a, g.const(np.float32(-0.5))])
        c = g.op("Min", [b, g.w(4, 1, 1)])
        d = g.op("Pow", [c, g.const(np.float32(2.0))])
        e1, e2 = g.op("Split", [d], n_out=2, axis=1)  # equal parts
        f = g.op("Reshape", [e1, g.i64(0, 0, -1)])  # [1,2,64]
        h = g.op("Slice", [f, g.i64(-60, 1), g.i64(2**63 - 1, 2), g.i64(2, 1)])  # [1,1,60]
        k = g.op("Unsqueeze", [g.op("Squeeze", [h, g.i64(1)]), g.i64(1)])
        m = g.op("Max", [e2, g.op("Neg", [e2])])
        outs = [k, m]
    elif name == "cnn":
        # Stem, two residual blocks, a detector-style head: upsample + concat.
        inputs = {"x": [1, 3, 32, 32]}
        s = g.op("Relu", [g.bn(g.conv(x, 3, 8, pads=[1, 1, 1, 1], strides=[2, 2], bias=False), 8)])
        r1 = g.op("Relu", [g.bn(g.conv(s, 8, 8, pads=[1, 1, 1, 1], bias=False), 8)])
        r1 = g.bn(g.conv(r1, 8, 8, pads=[1, 1, 1, 1], bias=False), 8)
        s = g.op("Relu", [g.op("Add", [s, r1])])
        d = g.op("Relu", [g.bn(g.conv(s, 8, 16, pads=[1, 1, 1, 1], strides=[2, 2]), 16)])
        dw = g.op("Clip", [g.conv(d, 16, 16, group=16, pads=[1, 1, 1, 1]),
                          g.const(np.float32(0)), g.const(np.float32(6))])
        pw = g.bn(g.conv(dw, 16, 16, k=1), 16)
        d = g.op("Add", [d, pw])
        up = g.op("Resize", [d, "", g.const(np.array([1, 1, 2, 2], dtype=np.float32))],
                  mode="nearest")
        cat = g.op("Concat", [s, up], axis=1)
        head = g.conv(cat, 24, 6, k=1)
        n_boxes = g.op("Reshape", [head, g.shape_chain(head, [-1])])  # [1,6,256]
        boxes = g.op("Transpose", [n_boxes], perm=[0, 2, 1])
        gap = g.op("Flatten", [g.op("GlobalAveragePool", [d])])
        cls = g.op("Softmax", [g.op("Gemm", [gap, g.w(5, 16), g.w(5)], transB=1)], axis=1)
        outs = [boxes, cls]
    else:
        sys.exit(f"unknown model {name}")
    vis = [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in inputs.items()]
    outs_vi = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs]
    graph = helper.make_graph(g.nodes, name, vis, outs_vi, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model, inputs, outs


def main():
    outdir, *names = sys.argv[1:]
    for name in names:
        model, inputs, outs = build(name)
        path = f"{outdir}/{name}.onnx"
        onnx.save(model, path)
        feeds = {}
        for i, (k, shape) in enumerate(inputs.items()):
            feeds[k] = rng.uniform(-2, 2, shape).astype(np.float32)
            np.save(f"{outdir}/{name}.in{i}.npy", feeds[k])
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        for i, v in enumerate(sess.run(outs, feeds)):
            np.save(f"{outdir}/{name}.out{i}.npy", v.astype(np.float32))
        print(f"{name} in={','.join(inputs)} out={','.join(outs)}")


main()
