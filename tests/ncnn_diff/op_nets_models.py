"""Nets that use the newer layers the way common models do, with random weights
(ncnn_bin.write_bin), compared with ncnn like the single-op nets:

* `yolo_like`: a YOLOv5 / YOLOv8 style backbone and neck: strided convolutions with Swish,
  a C2f block (Slice into halves, residual bottlenecks, Concat), SPPF (three chained 5x5 max
  pools, Concat), a nearest Interp upsample joined to an earlier feature, a HardSwish /
  Mish head and a Sigmoid.
* `unet_like`: an encoder-decoder: strided convolutions down, Deconvolution up, a Crop of the
  upsampled map to the skip feature's size (reference form), Concat, a reflect-padded convolution,
  GELU, ShuffleChannel, a Padding with per-channel values and a Tile.
"""

import os

import numpy as np

import ncnn_bin


class Builder:
    def __init__(self):
        self.lines = []
        self.blobs = 0
        self.count = 0

    def add(self, kind, bottoms, tops=1, params=""):
        self.count += 1
        name = f"{kind.lower()}{self.count}"
        outs = [f"{name}_{i}" if tops > 1 else name for i in range(tops)]
        self.lines.append(
            f"{kind} {name} {len(bottoms)} {tops} {' '.join(bottoms)} {' '.join(outs)} {params}"
            .rstrip())
        self.blobs += tops
        return outs if tops > 1 else outs[0]

    def input(self, name, w, h, c):
        self.lines.append(f"Input {name} 0 1 {name} 0={w} 1={h} 2={c}")
        self.blobs += 1
        return name

    def split(self, x, n):
        return self.add("Split", [x], n)

    def conv(self, x, cin, cout, k=1, s=1, act="swish"):
        y = self.add("Convolution", [x],
                     params=f"0={cout} 1={k} 3={s} 4={k // 2} 5=1 6={cout * cin * k * k}")
        if act == "swish":
            y = self.add("Swish", [y])
        return y

    def text(self):
        return f"7767517\n{len(self.lines)} {self.blobs}\n" + "\n".join(self.lines) + "\n"


def _yolo_like(b):
    x = b.input("data", 32, 32, 3)
    x = b.conv(x, 3, 16, 3, 2)  # 16x16
    x = b.conv(x, 16, 32, 3, 2)  # 8x8
    # C2f: 1x1 conv, Slice into halves, one bottleneck with a residual add, Concat, 1x1 conv.
    x = b.conv(x, 32, 32)
    a, c = b.add("Slice", [x], 2, "-23300=2,-233,-233 1=0")
    c0, c1 = b.split(c, 2)
    y = b.conv(c0, 16, 16, 3)
    y = b.conv(y, 16, 16, 3)
    y = b.add("BinaryOp", [y, c1], params="0=0")
    y0, y1 = b.split(y, 2)
    x = b.add("Concat", [a, y0, y1], params="0=0")
    feat = b.conv(x, 48, 32)
    f0, f1 = b.split(feat, 2)
    x = b.conv(f0, 32, 32, 3, 2)  # 4x4
    # SPPF: three chained 5x5 max pools of one 1x1 conv, concatenated.
    x = b.conv(x, 32, 16)
    s = b.split(x, 2)
    p1 = b.add("Pooling", [s[1]], params="0=0 1=5 2=1 3=2 5=1")
    p1 = b.split(p1, 2)
    p2 = b.add("Pooling", [p1[1]], params="0=0 1=5 2=1 3=2 5=1")
    p2 = b.split(p2, 2)
    p3 = b.add("Pooling", [p2[1]], params="0=0 1=5 2=1 3=2 5=1")
    x = b.add("Concat", [s[0], p1[0], p2[0], p3], params="0=0")
    x = b.conv(x, 64, 32)
    # Neck: nearest upsample x2, join the 8x8 feature.
    x = b.add("Interp", [x], params="0=1 1=2.0 2=2.0")
    x = b.add("Concat", [x, f1], params="0=0")
    x = b.conv(x, 64, 32, 3, 1, act=None)
    x = b.add("HardSwish", [x], params="0=0.1666667 1=0.5")
    x = b.conv(x, 32, 16, 1, 1, act=None)
    x = b.add("Mish", [x])
    x = b.conv(x, 16, 8, 1, 1, act=None)
    b.add("Sigmoid", [x])


def _unet_like(b):
    x = b.input("data", 21, 19, 4)
    x = b.conv(x, 4, 8, 3, 1, act=None)
    x = b.add("ReLU", [x])
    skip, x = b.split(x, 2)
    x = b.conv(x, 8, 16, 3, 2, act=None)  # 11x10
    x = b.add("ReLU", [x])
    x = b.conv(x, 16, 16, 3, 2, act=None)  # 6x5
    x = b.add("GELU", [x])
    # Up: Deconvolution 4x4 stride 2 twice, then crop the skip feature to the upsampled size.
    x = b.add("Deconvolution", [x], params=f"0=16 1=4 3=2 4=1 5=1 6={16 * 16 * 16} 9=1")
    x = b.add("Deconvolution", [x], params=f"0=8 1=4 3=2 4=1 5=1 6={8 * 16 * 16}")  # 24x20
    # Crop the upsampled map to the skip feature's 21x19 (reference form), then join them.
    s0, s1 = b.split(skip, 2)
    x = b.add("Crop", [x, s0], params="0=1 1=0")
    x = b.add("Concat", [x, s1], params="0=0")
    x = b.add("Padding", [x], params="0=1 1=1 2=1 3=1 4=2")  # reflect
    x = b.conv(x, 16, 16, 3, 1, act=None)
    x = b.add("ShuffleChannel", [x], params="0=4")
    x = b.add("Padding", [x], params="0=1 1=0 2=0 3=1 4=0 6=16")  # per-channel values
    x = b.add("Tile", [x], params="0=1 1=2")
    b.add("Softmax", [x], params="0=0 1=1")


NETS = {"yolo_like": _yolo_like, "unet_like": _unet_like}


def net(name):
    def generate(cache_dir):
        b = Builder()
        NETS[name](b)
        text = b.text()
        param = os.path.join(cache_dir, f"{name}.param")
        binary = os.path.join(cache_dir, f"{name}.bin")
        with open(param, "w") as f:
            f.write(text)
        ncnn_bin.write_bin(text, binary, ncnn_bin.model_seed(name))
        rng = np.random.Generator(np.random.PCG64(ncnn_bin.model_seed(name) + 1))
        first = next(l for l in text.splitlines() if l.startswith("Input"))
        dims = dict(kv.split("=") for kv in first.split()[5:])
        shape = (int(dims["2"]), int(dims["1"]), int(dims["0"]))
        return param, binary, [{"data": rng.uniform(-1.0, 1.0, shape).astype(np.float32)}]

    return generate
