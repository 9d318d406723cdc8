"""Checks the INT8/INT7 writer against the real ncnn loader and ncnn's int8 arithmetic.

Run: python3 tests/ncnn_diff/test_int8_bin.py
"""

import os
import tempfile
import unittest

import numpy as np

import int8_bin
import ncnn_bin

# Small graphs, one per quantized layer variant (ncnn-format.md 7.2).
GRAPHS = {
    "conv": ["Convolution c 1 1 in out 0=4 1=3 5=1 6=108 8=2 9=1"],
    "conv_nobias": ["Convolution c 1 1 in out 0=5 1=1 6=15 8=2"],
    "conv_requant": ["Convolution c1 1 1 in mid 0=4 1=3 4=1 5=1 6=108 8=102 9=1",
                     "Convolution c2 1 1 mid out 0=6 1=3 5=1 6=216 8=2"],
    "conv_requant_split": ["Convolution c1 1 1 in mid 0=4 1=1 5=1 6=12 8=102",
                           "Split s 1 2 mid m0 m1",
                           "Convolution c2 1 1 m0 o1 0=2 1=1 5=1 6=8 8=2",
                           "Convolution c3 1 1 m1 o2 0=3 1=1 5=1 6=12 8=2"],
    "dw_pergroup": ["ConvolutionDepthWise c 1 1 in out 0=3 1=3 5=1 6=27 7=3 8=1"],
    "dw_pergroup_requant": ["ConvolutionDepthWise c1 1 1 in mid 0=3 1=3 4=1 5=1 6=27 7=3 8=101 9=1",
                            "Convolution c2 1 1 mid out 0=2 1=1 5=1 6=6 8=2"],
    "dw_shared": ["ConvolutionDepthWise c 1 1 in out 0=3 1=3 5=1 6=27 7=3 8=2"],
    "innerproduct": ["InnerProduct f 1 1 in out 0=7 1=1 2=1029 8=2"],
    "mixed": ["Convolution c 1 1 in mid 0=4 1=3 5=1 6=108 8=2 9=1",
              "InnerProduct f 1 1 mid out 0=5 1=1 2=500"],  # float IP: fp16-tagged
}
SHAPE = (3, 7, 7)


def param_text(lines):
    body = ["Input i 0 1 in 0=7 1=7 2=3"] + lines
    blobs = set()
    for line in body:
        toks = line.split()
        blobs.update(toks[4:4 + int(toks[2]) + int(toks[3])])
    return f"7767517\n{len(body)} {len(blobs)}\n" + "\n".join(body) + "\n"


def build(tmp, lines, variant):
    """Writes a quantized model as cached_models does; returns (param, bin, layers)."""
    text = param_text(lines)
    layers = ncnn_bin.parse_param(text)
    weights = int8_bin.draw_weights(layers, 7)
    inputs = int8_bin.make_inputs("test", SHAPE, 3)
    absmax, _ = int8_bin.calibrate(layers, int8_bin.strip_int8(text),
                                   int8_bin.counterpart_bytes(layers, weights), inputs)
    if variant == "int7":
        text = int8_bin.mark_int7(text)
    param = os.path.join(tmp, f"m.{variant}.param")
    with open(param, "w") as f:
        f.write(text)
    path = os.path.join(tmp, f"m.{variant}.bin")
    short = int8_bin.write_quantized(layers, weights, absmax, int8_bin.BITS[variant], path)
    ncnn_bin.check_exact(param, path, short)
    return param, path, layers


def read_blobs(layers, path):
    """{(layer, role): values} decoded from a quantized .bin."""
    with open(path, "rb") as f:
        data = f.read()
    out = {}
    for layer, blob, offset, n in int8_bin.blob_offsets(layers, len(data)):
        raw = data[offset:offset + n]
        if blob.tagged and int8_bin.is_quantized(layer):
            assert np.frombuffer(raw[:4], "<u4")[0] == int8_bin.INT8_TAG
            v = np.frombuffer(raw[4:4 + blob.count], np.int8).astype(np.float64)
        elif blob.tagged:
            assert np.frombuffer(raw[:4], "<u4")[0] == ncnn_bin.FP16_TAG
            v = np.frombuffer(raw[4:4 + 2 * blob.count], "<f2").astype(np.float64)
        else:
            v = np.frombuffer(raw, "<f4").astype(np.float64)
        out[(layer.name, blob.role)] = v
    return out


def quantize(x, scale, qmax=127):
    return np.clip(int8_bin.round_half_away(np.float32(x) * np.float32(scale)), -qmax, qmax)


def conv_int(q, w, k, pad, groups):
    """Integer convolution (stride 1) of q (c, h, w) with w (out, c/groups, k, k)."""
    q = np.pad(q, ((0, 0), (pad, pad), (pad, pad)))
    c, h, wd = q.shape
    out_c = w.shape[0]
    oh, ow = h - k + 1, wd - k + 1
    out = np.zeros((out_c, oh, ow))
    in_per, out_per = c // groups, out_c // groups
    for o in range(out_c):
        g = o // out_per
        for ky in range(k):
            for kx in range(k):
                patch = q[g * in_per:(g + 1) * in_per, ky:ky + oh, kx:kx + ow]
                out[o] += np.tensordot(w[o, :, ky, kx], patch, axes=1)
    return out


def reference(layers, blobs, x):
    """float64 int8 reference of the small graphs (ncnn-format.md 6.3)."""
    values = {"in": x.astype(np.float64)}
    int8_values = {}  # blob -> (int values, the scale they were made with)
    for layer in layers[1:]:
        if layer.type == "Split":
            for t in layer.tops:
                values[t] = values[layer.bottoms[0]]
                int8_values[t] = int8_values.get(layer.bottoms[0])
            continue
        b = lambda role: blobs.get((layer.name, role))  # noqa: E731
        in_scale = b("in_scale")
        term = layer.get_int(8, 0)
        bottom = layer.bottoms[0]
        if bottom in int8_values and int8_values[bottom] is not None:
            q = int8_values[bottom]  # requantized by the producer: used as-is
        elif in_scale is not None:
            q = quantize(values[bottom], in_scale[0])
        if layer.type == "InnerProduct":
            w = b("weight").reshape(layer.get_int(0, 0), -1)
            if in_scale is None:
                y = w @ values[bottom].reshape(-1)
            else:
                acc = w @ q.reshape(-1)
                y = acc / (in_scale[0] * b("w_scale"))
        else:
            groups = layer.get_int(7, 1) if layer.type == "ConvolutionDepthWise" else 1
            out_c, k = layer.get_int(0, 0), layer.get_int(1, 0)
            w = b("weight").reshape(out_c, -1, k, k)
            acc = conv_int(q, w, k, layer.get_int(4, 0), groups)
            w_scale = np.resize(b("w_scale"), out_c) if groups == 1 else \
                np.repeat(np.resize(b("w_scale"), groups), out_c // groups)
            y = acc / (np.float32(in_scale[0]) * w_scale.astype(np.float32))[:, None, None]
        bias = b("bias")
        if bias is not None:
            y = y + (bias if y.ndim == 1 else bias[:, None, None])
        if layer.get_int(9, 0) == 1:
            y = np.maximum(y, 0)
        values[layer.tops[0]] = y
        if term > 100:
            int8_values[layer.tops[0]] = quantize(y, b("out_scale")[0])
    return values


def run_ncnn(param, path, x, blob):
    import ncnn

    net = ncnn_bin.make_net()
    net.opt.use_int8_inference = True
    assert net.load_param(param) == 0
    assert net.load_model(path) == 0
    ex = net.create_extractor()
    mat = ncnn.Mat(x).clone()
    ex.input("in", mat)
    ret, out = ex.extract(blob)
    assert ret == 0
    return np.array(out, dtype=np.float64, copy=True)


class Writer(unittest.TestCase):
    def test_round_half_away(self):
        v = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49999997, -2.4], np.float32)
        self.assertEqual(int8_bin.round_half_away(v).tolist(), [1, 2, 3, -1, -2, 0, -2])

    def test_quantize_weights_per_group(self):
        w = np.array([1.0, -0.5, 0.25, 0.0, 2.0, -4.0], np.float32)
        q, s = int8_bin.quantize_weights(w, 2, 127)
        self.assertEqual(s.tolist(), [127.0, np.float32(127 / 4)])
        self.assertEqual(q.tolist(), [127, -64, 32, 0, 64, -127])
        q7, s7 = int8_bin.quantize_weights(w, 1, 63)
        self.assertEqual(s7.tolist(), [np.float32(63 / 4)])
        self.assertEqual(q7.tolist(), [16, -8, 4, 0, 32, -63])

    def test_param_edits(self):
        text = param_text(GRAPHS["mixed"])
        stripped = int8_bin.strip_int8(text)
        self.assertNotIn("8=2", stripped)
        self.assertIn("0=4 1=3 5=1 6=108 9=1", stripped)
        marked = int8_bin.mark_int7(text)
        self.assertIn("8=2 9=1 27=7", marked)
        self.assertNotIn("2=500 27=7", marked)  # the float InnerProduct is not quantized

    def test_files_load_and_match_int8_arithmetic(self):
        """Every variant: ncnn reads exactly the file (also with `27=7`), and
        its int8 result equals a float64 reference of ncnn's int8 semantics
        that reads the weights and scales back from the file."""
        rng = np.random.default_rng(3)
        with tempfile.TemporaryDirectory() as tmp:
            for name, lines in GRAPHS.items():
                for variant in ("int8", "int7"):
                    with self.subTest(graph=name, variant=variant):
                        param, path, layers = build(tmp, lines, variant)
                        blobs = read_blobs(layers, path)
                        qmax = int8_bin.BITS[variant]
                        for (lname, role), v in blobs.items():
                            if role == "weight" and int8_bin.is_quantized(
                                    next(l for l in layers if l.name == lname)):
                                self.assertLessEqual(np.abs(v).max(), qmax)
                                self.assertEqual(np.abs(v).max(), qmax)  # full range used
                        x = rng.uniform(-1, 1, SHAPE).astype(np.float32)
                        want = reference(layers, blobs, x)
                        for out in [t for l in layers for t in l.tops
                                    if not any(t in m.bottoms for m in layers)]:
                            got = run_ncnn(param, path, x, out).reshape(want[out].shape)
                            err = np.abs(got - want[out]).max() / np.abs(want[out]).max()
                            self.assertLess(err, 1e-5, f"{out}")

    def test_top_scale_is_the_consumers_bottom_scale(self):
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("conv_requant", "conv_requant_split", "dw_pergroup_requant"):
                _, path, layers = build(tmp, GRAPHS[name], "int8")
                blobs = read_blobs(layers, path)
                producer = layers[1]
                consumer = int8_bin.top_consumer(layers, producer)
                self.assertEqual(blobs[(producer.name, "out_scale")][0],
                                 blobs[(consumer.name, "in_scale")][0])

    def test_balanced_bias(self):
        rng = np.random.default_rng(0)
        z = rng.normal(size=(4, 6, 10)) + np.arange(6)[None, :, None]
        for activation in (0, 1):
            b = int8_bin.balanced_bias(z, activation)
            act = (lambda v: np.maximum(v, 0)) if activation else (lambda v: v)
            means = act(z + b[None, :, None].astype(np.float64)).mean(axis=(0, 2))
            self.assertLess(np.ptp(means), 1e-5)


if __name__ == "__main__":
    unittest.main()
