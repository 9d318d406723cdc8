"""Generated single-op nets for run.py: the standalone int8 layers (Quantize, Dequantize,
Requantize) and the detection heads (YoloDetectionOutput, Proposal, ROIPooling,
PSROIPooling). Same contract as op_nets.py: a generator takes the cache directory and
returns (param path, bin path, [inputs]), inputs being {Input blob name: array}.

Integer inputs (the int32 accumulators Dequantize and Requantize read) are int32 arrays:
run.py hands ncnn their bits as an fp32 Mat (what ncnn's int32 blob is) and `eq infer` their
values as floats (how this runtime carries integers).
"""

import os
import struct

import numpy as np

import ncnn_bin


def _write(cache_dir, name, layers, blob_count, weights=()):
    text = f"7767517\n{len(layers)} {blob_count}\n" + "\n".join(layers) + "\n"
    param = os.path.join(cache_dir, f"{name}.param")
    binary = os.path.join(cache_dir, f"{name}.bin")
    with open(param, "w") as f:
        f.write(text)
    with open(binary, "wb") as f:
        f.write(b"".join(struct.pack("<f", float(v)) for v in weights))
    return param, binary


def _rng(name):
    return np.random.Generator(np.random.PCG64(ncnn_bin.model_seed(name)))


def _random_shape(rng, dims):
    w, h, d, c = (int(rng.integers(1, 7)) for _ in range(4))
    return {1: (w,), 2: (h, w), 3: (c, h, w), 4: (c, d, h, w)}[dims]


def _groups(shape):
    """ncnn's per-group axis: elements of 1-D, rows of 2-D, channels of 3-D / 4-D."""
    return shape[0]


def _sizes(rng, groups):
    """A per-group array size: one value, or one per group."""
    return 1 if groups == 1 or rng.random() < 0.4 else groups


ACTIVATIONS = [
    "", "3=1", "3=2 -23304=1,0.1", "3=3 -23304=2,-3.5,60.0", "3=4", "3=5",
    "3=6 -23304=2,0.2,0.5",
]


def quant_net(kind, cases=24):
    """`kind` in quantize / dequantize / requantize: Inputs of 1 to 4 dims, each feeding one
    layer with scalar or per-group scales and biases (Requantize: every fused activation)."""

    def generate(cache_dir):
        name = f"{kind}_forms"
        rng = _rng(name)
        layers, inputs, weights = [], {}, []
        for i in range(cases):
            shape = _random_shape(rng, 1 + i % 4)
            g = _groups(shape)
            layers.append(f"Input in{i} 0 1 in{i}")
            if kind == "quantize":
                n = _sizes(rng, g)
                # Scales up to 300 on inputs in [-1, 1]: some values clamp at +-127.
                weights += list(rng.uniform(0.5, 300.0, n).astype(np.float32))
                layers.append(f"Quantize q{i} 1 1 in{i} out{i} 0={n}")
                x = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
                # A few exact halves, rounded away from zero.
                x.flat[0] = np.float32(2.5) / weights[-n]
                inputs[f"in{i}"] = x
                continue
            x = rng.integers(-20000, 20000, shape).astype(np.int32)
            inputs[f"in{i}"] = x
            if kind == "dequantize":
                n, nb = _sizes(rng, g), int(rng.choice([0, 1, g]))
                weights += list(rng.uniform(1e-4, 1e-2, n).astype(np.float32))
                weights += list(rng.uniform(-2.0, 2.0, nb).astype(np.float32))
                layers.append(f"Dequantize d{i} 1 1 in{i} out{i} 0={n} 1={nb}")
            else:
                n_in, n_out, nb = _sizes(rng, g), _sizes(rng, g), int(rng.choice([0, 1, g]))
                weights += list(rng.uniform(1e-4, 1e-3, n_in).astype(np.float32))
                weights += list(rng.uniform(20.0, 120.0, n_out).astype(np.float32))
                weights += list(rng.uniform(-2.0, 2.0, nb).astype(np.float32))
                act = ACTIVATIONS[i % len(ACTIVATIONS)]
                layers.append(
                    f"Requantize r{i} 1 1 in{i} out{i} 0={n_in} 1={n_out} 2={nb} {act}".rstrip()
                )
        layers.sort(key=lambda l: not l.startswith("Input"))
        return (*_write(cache_dir, name, layers, 2 * cases, weights), [inputs])

    return generate


def quant_mixed_net():
    """Quantize and Requantize feeding an int8 1x1 Convolution (which takes their int8
    values as they are, with its own scales; fp32 ops after them, so that the int8 blobs are
    not compared: `eq infer` writes them dequantized), a Quantize as a net output, and a
    Requantize -> ReLU chain. ncnn runs int8 with its packed layout off (see `packing`)."""

    def generate(cache_dir):
        name = "quant_mixed"
        rng = _rng(name)
        c, h, w = 4, 5, 6
        layers = [
            "Input in 0 1 x",
            "Input acc 0 1 a",
            "Split sx 1 2 x x0 x1",
            "Quantize q 1 1 x0 q 0=4",
            "Convolution conv 1 1 q y 0=3 1=1 5=1 6=12 8=1 9=1",
            "Sigmoid sig 1 1 y ys",
            "Quantize q2 1 1 x1 q2 0=1",
            "Split sa 1 2 a a0 a1",
            "Requantize rq 1 1 a0 r 0=1 1=4 2=4 3=2 -23304=1,0.1",
            "Convolution conv2 1 1 r y2 0=2 1=1 5=0 6=8 8=1",
            "Sigmoid sig2 1 1 y2 y2t",
            "Requantize rq2 1 1 a1 r2 0=4 1=1",
            "ReLU relu 1 1 r2 r3",
        ]
        weights = list(rng.uniform(20.0, 100.0, 4))  # q scales
        conv_q = rng.integers(-127, 128, 12).astype(np.int8)
        conv_w = [conv_q, list(rng.uniform(-1, 1, 3)), list(rng.uniform(50, 120, 3)), [60.0]]
        weights2 = [30.0]  # q2
        rq = list(rng.uniform(1e-3, 3e-3, 1)) + list(rng.uniform(20, 60, 4)) + list(
            rng.uniform(-1, 1, 4))
        conv2_q = rng.integers(-127, 128, 8).astype(np.int8)
        conv2_w = [conv2_q, list(rng.uniform(50, 120, 2)), [40.0]]
        rq2 = list(rng.uniform(1e-3, 3e-3, 4)) + [50.0]

        def floats(v):
            return b"".join(struct.pack("<f", float(x)) for x in v)

        def int8_blob(q):
            data = struct.pack("<I", 0x000D4B38) + q.tobytes()
            return data + b"\0" * (-len(data) % 4)

        blob = floats(weights) + int8_blob(conv_w[0]) + floats(conv_w[1] + conv_w[2] + conv_w[3])
        blob += floats(weights2) + floats(rq) + int8_blob(conv2_w[0])
        blob += floats(conv2_w[1] + conv2_w[2]) + floats(rq2)
        param, binary = _write(cache_dir, name, layers, 15)
        with open(binary, "wb") as f:
            f.write(blob)
        runs = []
        for _ in range(3):
            runs.append({
                "x": rng.uniform(-1.0, 1.0, (c, h, w)).astype(np.float32),
                "a": rng.integers(-30000, 30000, (c, h, w)).astype(np.int32),
            })
        return param, binary, runs

    return generate


def _roi(rng, w, h, scale):
    """x1, y1, x2, y2 in input coordinates (feature cells / scale): mostly inside the map,
    some partly or wholly outside, some with x2 < x1, on half-integers now and then."""
    span_w, span_h = w / scale, h / scale
    x1, x2 = sorted(rng.uniform(-0.3 * span_w, 1.2 * span_w, 2))
    y1, y2 = sorted(rng.uniform(-0.3 * span_h, 1.2 * span_h, 2))
    r = rng.random()
    if r < 0.1:
        x1, x2 = x2, x1  # reversed
    elif r < 0.2:
        x1, y1 = np.floor(x1) + 0.5, np.floor(y1) + 0.5  # half: rounds away from zero
    return np.array([x1, y1, x2, y2], np.float32)


def roi_net(kind, cases=20):
    """ROIPooling (max) or PSROIPooling (position-sensitive average): each case a feature
    map and a ROI blob (1-D of 4, or 2-D whose first row is read) with random pooled sizes
    and spatial scales."""

    def generate(cache_dir):
        name = f"{kind}_forms"
        rng = _rng(name)
        layers, inputs = [], {}
        for i in range(cases):
            pw, ph = int(rng.integers(1, 5)), int(rng.integers(1, 5))
            scale = float(rng.choice([1.0, 0.5, 0.25, 0.0625, 0.3]))
            w, h = int(rng.integers(1, 12)), int(rng.integers(1, 12))
            if kind == "roipooling":
                c = int(rng.integers(1, 5))
                params = f"0={pw} 1={ph} 2={scale}"
                op = "ROIPooling"
            else:
                dim = int(rng.integers(1, 4))
                c = dim * pw * ph
                params = f"0={pw} 1={ph} 2={scale} 3={dim}"
                op = "PSROIPooling"
            layers.append(f"Input feat{i} 0 1 feat{i}")
            layers.append(f"Input roi{i} 0 1 roi{i}")
            layers.append(f"{op} pool{i} 2 1 feat{i} roi{i} out{i} {params}")
            inputs[f"feat{i}"] = rng.normal(0.0, 1.0, (c, h, w)).astype(np.float32)
            roi = _roi(rng, w, h, scale)
            if i % 3 == 2:
                roi = np.concatenate([roi, rng.uniform(0, 50, 4).astype(np.float32)]).reshape(2, 4)
            inputs[f"roi{i}"] = roi
        layers.sort(key=lambda l: not l.startswith("Input"))
        return (*_write(cache_dir, name, layers, 3 * cases), [inputs])

    return generate


def _float_list(values):
    return ",".join(f"{v:.6e}" for v in values)


def yolo_net(name, num_class, num_box, grids, seeds=3, threshold=0.2, nms=0.45):
    """YoloDetectionOutput (YOLOv2) over random maps of the given (w, h), all with the same
    anchors; many overlapping boxes so that sorting and NMS matter."""
    biases = [1.08, 1.19, 3.42, 4.41, 6.63, 11.38, 9.42, 5.11, 16.62, 10.52][: 2 * num_box]

    def generate(cache_dir):
        rng = _rng(name)
        layers = [f"Input map{i} 0 1 map{i}" for i in range(len(grids))]
        maps = " ".join(f"map{i}" for i in range(len(grids)))
        layers.append(
            f"YoloDetectionOutput det {len(grids)} 1 {maps} output 0={num_class} 1={num_box} "
            f"2={threshold} 3={nms} -23304={len(biases)},{_float_list(biases)}"
        )
        per_box = 5 + num_class
        runs = []
        for _ in range(seeds):
            inputs = {}
            for i, (w, h) in enumerate(grids):
                m = np.empty((num_box * per_box, h, w), np.float32)
                for k in range(num_box):
                    base = k * per_box
                    m[base:base + 2] = rng.normal(0.0, 1.5, (2, h, w))  # x, y
                    m[base + 2:base + 4] = rng.normal(0.0, 0.7, (2, h, w))  # w, h
                    m[base + 4] = rng.normal(0.0, 2.0, (h, w))  # objectness
                    m[base + 5:base + per_box] = rng.normal(0.0, 2.0, (num_class, h, w))
                inputs[f"map{i}"] = m
            runs.append(inputs)
        return (*_write(cache_dir, name, layers, len(grids) + 1), runs)

    return generate


def proposal_net(name, grids, params, seeds=3, two_outputs=True):
    """Proposal over random RPN maps: `grids` is a list of (w, h, im_h, im_w, im_scale), one
    Proposal per entry (each with its own inputs), all with the same `params` text."""

    def generate(cache_dir):
        rng = _rng(name)
        layers = []
        for i in range(len(grids)):
            layers += [f"Input score{i} 0 1 score{i}", f"Input bbox{i} 0 1 bbox{i}",
                       f"Input info{i} 0 1 info{i}"]
            tops = f"2 rois{i} scores{i}" if two_outputs else f"1 rois{i}"
            layers.append(f"Proposal prop{i} 3 {tops.split()[0]} score{i} bbox{i} info{i} "
                          f"{' '.join(tops.split()[1:])} {params}")
        runs = []
        for _ in range(seeds):
            inputs = {}
            for i, (w, h, im_h, im_w, scale) in enumerate(grids):
                inputs[f"score{i}"] = rng.uniform(0.0, 1.0, (18, h, w)).astype(np.float32)
                inputs[f"bbox{i}"] = rng.normal(0.0, 0.3, (36, h, w)).astype(np.float32)
                inputs[f"info{i}"] = np.array([im_h, im_w, scale], np.float32)
            runs.append(inputs)
        blobs = len(grids) * (5 if two_outputs else 4)
        return (*_write(cache_dir, name, layers, blobs), runs)

    return generate
