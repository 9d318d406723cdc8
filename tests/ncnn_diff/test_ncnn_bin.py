"""Checks the .bin writer's load plans against the real ncnn loader.

Run: python3 tests/ncnn_diff/test_ncnn_bin.py
"""

import os
import tempfile
import unittest

import numpy as np

import ncnn_bin

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("EQ_SHARED") or next(
    (p for p in (os.path.join(HERE, "../../../shared"), os.path.join(HERE, "../../../../shared"))
     if os.path.isdir(p)), os.path.join(HERE, "../../../shared"))

# One small graph per weighted layer type (and parameter variant).
SMALL_LAYERS = {
    "conv_bias": "Convolution c 1 1 in out 0=4 1=3 5=1 6=108",
    "conv_nobias": "Convolution c 1 1 in out 0=5 1=1 6=15",
    "conv_int8": "Convolution c 1 1 in out 0=4 1=3 5=1 6=108 8=2",
    "conv_int8_requant": "Convolution c 1 1 in out 0=4 1=3 5=1 6=108 8=102",
    "dw": "ConvolutionDepthWise c 1 1 in out 0=3 1=3 5=1 6=27 7=3",
    "dw_grouped": "ConvolutionDepthWise c 1 1 in out 0=6 1=3 5=1 6=54 7=3",
    "dw_int8_pergroup": "ConvolutionDepthWise c 1 1 in out 0=3 1=3 5=1 6=27 7=3 8=101",
    "dw_int8_shared": "ConvolutionDepthWise c 1 1 in out 0=3 1=3 5=1 6=27 7=3 8=2",
    "innerproduct": "InnerProduct c 1 1 in out 0=7 1=1 2=1029",
    "innerproduct_int8": "InnerProduct c 1 1 in out 0=7 1=1 2=1029 8=2",
    "deconv": "Deconvolution c 1 1 in out 0=2 1=3 5=1 6=54",
    "deconvdw": "DeconvolutionDepthWise c 1 1 in out 0=3 1=3 5=1 6=27 7=3",
    "batchnorm": "BatchNorm c 1 1 in out 0=3",
    "scale_bias": "Scale c 1 1 in out 0=3 1=1",
    "scale": "Scale c 1 1 in out 0=3",
    "prelu": "PReLU c 1 1 in out 0=3",
    "normalize": "Normalize c 1 1 in out 0=0 1=0 2=1e-5 3=3",
    "bias": "Bias c 1 1 in out 0=3",
    "instancenorm": "InstanceNorm c 1 1 in out 0=3 1=1e-5",
    "groupnorm": "GroupNorm c 1 1 in out 0=3 1=3 2=1e-5",
    "layernorm": "LayerNorm c 1 1 in out 0=7 1=1e-5",
    "padding": "Padding c 1 1 in out 0=1 1=1 2=1 3=1 6=3",
    "memorydata_odd": "MemoryData c 0 1 out 0=3 1=5",
}


class SmallLayers(unittest.TestCase):
    def test_small_layers_consumed_exactly(self):
        with tempfile.TemporaryDirectory() as tmp:
            for name, line in SMALL_LAYERS.items():
                for fp16 in (False, True):
                    with self.subTest(layer=name, fp16=fp16):
                        body = line if line.startswith("MemoryData") else \
                            "Input i 0 1 in 0=7 1=7 2=3\n" + line
                        text = f"7767517\n{body.count(chr(10)) + 1} 2\n{body}\n"
                        param = os.path.join(tmp, "m.param")
                        with open(param, "w") as f:
                            f.write(text)
                        path = os.path.join(tmp, "m.bin")
                        short = ncnn_bin.write_bin(text, path, 1, fp16)
                        self.assertEqual(os.path.getsize(path), ncnn_bin.planned_size(text, fp16))
                        ncnn_bin.check_exact(param, path, short)

    def test_check_catches_extra_bytes(self):
        text = "7767517\n2 2\nInput i 0 1 in 0=4 1=4 2=3\nBatchNorm b 1 1 in out 0=3\n"
        with tempfile.TemporaryDirectory() as tmp:
            param = os.path.join(tmp, "m.param")
            with open(param, "w") as f:
                f.write(text)
            path = os.path.join(tmp, "m.bin")
            short = ncnn_bin.write_bin(text, path, 1)
            ncnn_bin.check_exact(param, path, short)
            with open(path, "ab") as f:
                f.write(b"\0" * 4)
            with self.assertRaises(RuntimeError):
                ncnn_bin.check_exact(param, path, short)

    def test_fp16_odd_count_is_padded(self):
        text = "7767517\n2 2\nInput i 0 1 in 0=1 1=1 2=3\nInnerProduct f 1 1 in out 0=1 2=3\n"
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.bin")
            ncnn_bin.write_bin(text, path, 1, True)
            data = open(path, "rb").read()
        self.assertEqual(len(data), 4 + 8)
        self.assertEqual(int.from_bytes(data[:4], "little"), ncnn_bin.FP16_TAG)
        self.assertEqual(data[10:], b"\0\0")

    def test_deterministic(self):
        text = "7767517\n2 2\nInput i 0 1 in 0=4 1=4 2=3\nConvolution c 1 1 in out 0=4 1=3 5=1 6=108\n"
        with tempfile.TemporaryDirectory() as tmp:
            a, b, c = (os.path.join(tmp, n) for n in "abc")
            ncnn_bin.write_bin(text, a, 7)
            ncnn_bin.write_bin(text, b, 7)
            ncnn_bin.write_bin(text, c, 8)
            self.assertEqual(open(a, "rb").read(), open(b, "rb").read())
            self.assertNotEqual(open(a, "rb").read(), open(c, "rb").read())

    def test_weight_scale(self):
        # Signed input: gain 1; after a ReLU: He gain 2; feeding a residual add: a quarter.
        text = ("7767517\n6 7\nInput i 0 1 in 0=1 1=1 2=512\n"
                "InnerProduct a 1 1 in x 0=512 2=262144 9=1\n"
                "InnerProduct b 1 1 x y 0=512 2=262144\n"
                "Split s 1 2 y y0 y1\n"
                "InnerProduct c 1 1 y0 z 0=512 2=262144\n"
                "Eltwise e 2 1 y1 z out 0=1\n")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.bin")
            ncnn_bin.write_bin(text, path, 3)
            w = np.fromfile(path, dtype="<f4").reshape(3, -1)[:, 1:]
        for std, gain in zip(w.std(axis=1), (1.0, 2.0, 0.25)):
            self.assertAlmostEqual(float(std), np.sqrt(gain / 512), delta=0.001)

    def test_param_parser(self):
        text = ('7767517\n2 3\nInput in 0 1 data 0=227 1=227 2=3\n'
                'Foo f 1 1 data out -23300=2,1.5,2.0 1=1e-4 2=-3 3=1,2,3 4="a b" -23330=4,3,1,1,1\n')
        layers = ncnn_bin.parse_param(text)
        self.assertEqual(layers[0].params, {0: 227, 1: 227, 2: 3})
        self.assertEqual(layers[1].params,
                         {0: [1.5, 2.0], 1: 1e-4, 2: -3, 3: [1, 2, 3], 4: "a b", 30: [3, 1, 1, 1]})
        self.assertEqual(layers[1].bottoms, ["data"])
        self.assertEqual(layers[1].tops, ["out"])


class Detections(unittest.TestCase):
    def test_matching(self):
        import run

        ref = np.array([[1, 0.9, 0, 0, 1, 1], [1, 0.9000001, 0.5, 0.5, 1, 1], [2, 0.3, 0, 0, 0.5, 0.5]],
                       np.float32)
        ours = np.concatenate([ref[[1, 0, 2]], np.full((3, 6), -1, np.float32)])
        ours[2, 1] += 1e-6
        self.assertAlmostEqual(run.detection_error(ours, ref), 1e-6, delta=2e-7)
        self.assertEqual(run.detection_error(np.zeros((0, 6)), np.zeros((0,))), 0.0)
        with self.assertRaises(run.Failure):
            run.detection_error(ours[:2], ref)
        bad = ref.copy()
        bad[2, 0] = 3
        with self.assertRaises(run.Failure):
            run.detection_error(bad, ref)


class RealModels(unittest.TestCase):
    def test_plans_match_real_bins(self):
        cases = [
            ("squeezenet_v1.1/squeezenet_v1.1.param", "squeezenet_v1.1/squeezenet_v1.1.fp32.bin", False),
            ("squeezenet_v1.1/squeezenet_v1.1.param", "squeezenet_v1.1/squeezenet_v1.1.fp16.bin", True),
            ("mobilenet_v2/mobilenet_v2.param", "mobilenet_v2/mobilenet_v2.fp32.bin", False),
            ("mobilefacenet/mobilefacenet.param", "mobilefacenet/mobilefacenet.bin", False),
        ]
        for param, binary, fp16 in cases:
            param = os.path.join(SHARED, "data/models", param)
            binary = os.path.join(SHARED, "data/models", binary)
            if not os.path.exists(binary):
                self.skipTest(f"{binary} missing")
            with self.subTest(binary=binary):
                text = open(param).read()
                self.assertEqual(ncnn_bin.planned_size(text, fp16), os.path.getsize(binary))
                ret, consumed, size = ncnn_bin.ncnn_consumed_bytes(param, binary)
                self.assertEqual((ret, consumed), (0, size))


class LayerRegistry(unittest.TestCase):
    """The runtime's `.param.bin` type table is ncnn's registry order, index for index."""

    def test_every_index_matches_ncnn(self):
        import re
        import ncnn
        src = open(os.path.join(HERE, "../../runtime/src/model/param_bin.rs")).read()
        table = src[src.index("pub const LAYER_TYPES"):]
        names = re.findall(r'^    "(\w+)",', table[:table.index("];")], re.M)
        self.assertGreater(len(names), 100)
        for index, name in enumerate(names):
            self.assertEqual(ncnn.layer_to_index(name), index, name)
        # Nothing after the last one: the table is complete.
        self.assertIsNone(ncnn.create_layer(len(names)))


if __name__ == "__main__":
    unittest.main()
