"""Small generated nets of single weightless ops (Interp, Yolov3DetectionOutput) for
run.py: seeded random cases, each an Input (or two) feeding one op whose output is a net
output, so one `eq infer` call checks many cases against ncnn.

A generator takes the cache directory and returns (param path, bin path, [inputs]), where
each inputs entry is {Input blob name: float32 array in ncnn order}. The .bin is empty:
these ops read no weights.
"""

import os

import numpy as np

import ncnn_bin

RESIZE_TYPES = {"nearest": 1, "bilinear": 2, "bicubic": 3}


def _write(cache_dir, name, layers, blob_count):
    text = f"7767517\n{len(layers)} {blob_count}\n" + "\n".join(layers) + "\n"
    param = os.path.join(cache_dir, f"{name}.param")
    binary = os.path.join(cache_dir, f"{name}.bin")
    with open(param, "w") as f:
        f.write(text)
    open(binary, "wb").close()
    return param, binary


def _random_scale(rng):
    """Integer, halving and non-integer factors, up and down."""
    return float(rng.choice([0.5, 2.0, 3.0, 0.3, 0.75, 1.0, 1.3, 1.5, 1.75, 2.6, 0.45]))


def _interp_case(rng, resize_type, dims):
    """(input shape, param text) of one Interp whose output is not empty."""
    while True:
        w, h = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        c = int(rng.choice([1, 3, 4, 8]))
        shape = {1: (w,), 2: (h, w), 3: (c, h, w)}[dims]
        params = [f"0={resize_type}"]
        align = rng.random() < 0.5
        if rng.random() < 0.5:
            ow, oh = int(rng.integers(1, 13)), int(rng.integers(1, 13))
            params += [f"3={oh}", f"4={ow}"]
        else:
            hs, ws = _random_scale(rng), _random_scale(rng)
            bw, bh = (1, 1) if dims == 1 else (w, h)
            ow, oh = int(np.float32(bw) * np.float32(ws)), int(np.float32(bh) * np.float32(hs))
            params += [f"1={hs}", f"2={ws}"]
        if ow < 1 or (dims != 2 and oh < 1):
            continue
        if align:
            params.append("6=1")
        return shape, " ".join(params)


def interp_net(resize, cases=24):
    """Interp of one resize type over 1-D, 2-D and 3-D inputs, by scale and by size."""

    def generate(cache_dir):
        name = f"interp_{resize}"
        rng = np.random.Generator(np.random.PCG64(ncnn_bin.model_seed(name)))
        resize_type = RESIZE_TYPES[resize]
        layers, inputs = [], {}
        # 1x1 inputs up, and a few fixed shapes, before the random ones.
        fixed = [
            ((1, 1, 1), f"0={resize_type} 1=3.0 2=2.0"),
            ((2, 1, 1), f"0={resize_type} 3=4 4=5 6=1"),
            ((3, 1, 7), f"0={resize_type} 3=5 4=3"),
            ((3, 6, 1), f"0={resize_type} 1=0.5 2=2.5"),
            ((4, 5, 7), f"0={resize_type} 1=2.0 2=2.0"),
            ((4, 8, 9), f"0={resize_type} 3=3 4=4"),
            ((2, 7, 6), f"0={resize_type} 3=7 4=6"),
            ((2, 7, 6), f"0={resize_type} 1=1.1 2=1.1"),
        ]
        cases_list = fixed + [
            _interp_case(rng, resize_type, int(rng.choice([1, 2, 3, 3, 3])))
            for _ in range(cases)
        ]
        for i, (shape, params) in enumerate(cases_list):
            layers.append(f"Input in{i} 0 1 in{i}")
            layers.append(f"Interp interp{i} 1 1 in{i} out{i} {params}")
            inputs[f"in{i}"] = rng.uniform(-2.0, 2.0, shape).astype(np.float32)
        layers.sort(key=lambda l: not l.startswith("Input"))
        return (*_write(cache_dir, name, layers, 2 * len(cases_list)), [inputs])

    return generate


def interp_dynamic_net(cases=18):
    """Interp with dynamic_target_size: a second (reference) input gives the output w / h."""

    def generate(cache_dir):
        name = "interp_dynamic"
        rng = np.random.Generator(np.random.PCG64(ncnn_bin.model_seed(name)))
        layers, inputs = [], {}
        for i in range(cases):
            resize_type = 1 + i % 3
            dims = int(rng.choice([1, 2, 3, 3]))
            w, h, c = int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 5))
            shape = {1: (w,), 2: (h, w), 3: (c, h, w)}[dims]
            ref_dims = int(rng.choice([1, 2, 3]))
            rw, rh = int(rng.integers(1, 12)), int(rng.integers(1, 12))
            ref_shape = {1: (rw,), 2: (rh, rw), 3: (2, rh, rw)}[ref_dims]
            align = " 6=1" if i % 2 else ""
            layers.append(f"Input in{i} 0 1 in{i}")
            layers.append(f"Input ref{i} 0 1 ref{i}")
            layers.append(
                f"Interp interp{i} 2 1 in{i} ref{i} out{i} 0={resize_type} 5=1{align}"
            )
            inputs[f"in{i}"] = rng.uniform(-2.0, 2.0, shape).astype(np.float32)
            inputs[f"ref{i}"] = rng.uniform(-1.0, 1.0, ref_shape).astype(np.float32)
        layers.sort(key=lambda l: not l.startswith("Input"))
        return (*_write(cache_dir, name, layers, 3 * cases), [inputs])

    return generate


def _float_list(values):
    return ",".join(f"{v:.6e}" for v in values)


def yolov3_net(name, num_class, grids, seeds=3, threshold=0.3, mask_as_bits=False):
    """Yolov3DetectionOutput over random maps, one per (w, h, stride) in `grids`."""
    num_box = 3
    biases = [10, 14, 23, 27, 37, 58, 81, 82, 135, 169, 344, 319, 30, 61, 62, 45, 59, 119]
    biases = biases[: 2 * num_box * len(grids)]
    mask = list(range(num_box * len(grids)))[::-1]
    if mask_as_bits:
        # As ncnn's writer stores them: the floats' bit patterns spelled as integers.
        mask_text = ",".join(str(int(np.float32(m).view(np.int32))) for m in mask)
    else:
        mask_text = _float_list(mask)
    strides = [s for _, _, s in grids]

    def generate(cache_dir):
        rng = np.random.Generator(np.random.PCG64(ncnn_bin.model_seed(name)))
        layers = [f"Input map{i} 0 1 map{i}" for i in range(len(grids))]
        maps = " ".join(f"map{i}" for i in range(len(grids)))
        layers.append(
            f"Yolov3DetectionOutput det {len(grids)} 1 {maps} output 0={num_class} "
            f"1={num_box} 2={threshold} 3=0.45 -23304={len(biases)},{_float_list(biases)} "
            f"-23305={len(mask)},{mask_text} -23306={len(strides)},{_float_list(strides)}"
        )
        per_box = 5 + num_class
        runs = []
        for _ in range(seeds):
            inputs = {}
            for i, (w, h, _) in enumerate(grids):
                m = np.empty((num_box * per_box, h, w), np.float32)
                for k in range(num_box):
                    base = k * per_box
                    m[base:base + 2] = rng.normal(0.0, 1.5, (2, h, w))  # x, y
                    m[base + 2:base + 4] = rng.normal(0.0, 0.7, (2, h, w))  # w, h
                    m[base + 4] = rng.normal(-1.5, 2.0, (h, w))  # objectness
                    m[base + 5:base + per_box] = rng.normal(-1.0, 2.0, (num_class, h, w))
                inputs[f"map{i}"] = m
            runs.append(inputs)
        return (*_write(cache_dir, name, layers, len(grids) + 1), runs)

    return generate
