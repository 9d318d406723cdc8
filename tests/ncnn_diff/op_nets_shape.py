"""Generated single-op nets for the shape ops (Crop, Slice, Padding, Tile) and deconvolution,
for run.py: seeded random cases over 1-D to 4-D inputs and every parameter form, each an
Input (or two) feeding one op whose outputs are net outputs, so one `eq infer` call checks
many cases against ncnn.

A generator takes the cache directory and returns (param path, bin path, [inputs]) like
op_nets.py's.
"""

import os

import numpy as np

import ncnn_bin

INT_MAX = 2147483647


def _write(cache_dir, name, layers, blob_count, weights=b""):
    layers = sorted(layers, key=lambda l: not l.startswith("Input"))
    text = f"7767517\n{len(layers)} {blob_count}\n" + "\n".join(layers) + "\n"
    param = os.path.join(cache_dir, f"{name}.param")
    binary = os.path.join(cache_dir, f"{name}.bin")
    with open(param, "w") as f:
        f.write(text)
    with open(binary, "wb") as f:
        f.write(weights)
    return param, binary


def _rng(name):
    return np.random.Generator(np.random.PCG64(ncnn_bin.model_seed(name)))


def _shape(rng, dims, lo=1, hi=7):
    """numpy-order shape (c, d, h, w truncated to dims)."""
    return tuple(int(rng.integers(lo, hi + 1)) for _ in range(dims))


def _ints(values):
    return f"{len(values)}," + ",".join(str(int(v)) for v in values)


# ncnn (w, h, d, c) param ids of Crop, per numpy axis of a dims-D blob.
_CROP_KEYS = {  # numpy axis -> (offset, out, offset2) keys
    1: [(0, 3, 6)],
    2: [(1, 4, 7), (0, 3, 6)],
    3: [(2, 5, 8), (1, 4, 7), (0, 3, 6)],
    4: [(2, 5, 8), (13, 14, 15), (1, 4, 7), (0, 3, 6)],
}


def _crop_offsets(rng, shape):
    params = []
    for n, (ko, kout, ko2) in zip(shape, _CROP_KEYS[len(shape)]):
        off = int(rng.integers(0, n))
        off2 = int(rng.integers(0, n - off)) if rng.random() < 0.4 else 0
        rest = n - off - off2
        out = -233 if rng.random() < 0.4 else int(rng.integers(1, rest + 3))
        params += [f"{ko}={off}", f"{kout}={out}"]
        if off2:
            params.append(f"{ko2}={off2}")
    return " ".join(params)


def _crop_slices(rng, shape):
    dims = len(shape)
    if rng.random() < 0.3:
        axes = list(range(dims))
        write_axes = False
    else:
        count = int(rng.integers(1, dims + 1))
        axes = [int(a) for a in rng.permutation(dims)[:count]]
        write_axes = True
    starts, ends, spelled = [], [], []
    for a in axes:
        n = shape[a]
        o = int(rng.integers(0, n))
        e = int(rng.integers(o + 1, n + 1))
        start = rng.choice([o, o - n] + ([-233] if o == 0 else []))
        end_forms = [e] + ([e - n] if e < n else [-233, 0, INT_MAX, n + 5])
        end = end_forms[int(rng.integers(0, len(end_forms)))]
        starts.append(int(start))
        ends.append(int(end))
        spelled.append(a - dims if rng.random() < 0.5 else a)
    text = f"-23309={_ints(starts)} -23310={_ints(ends)}"
    if write_axes:
        text += f" -23311={_ints(spelled)}"
    return text


def _crop_reference(rng, shape):
    """Offsets, and a reference blob shape the box fits."""
    dims = len(shape)
    ref_dims = int(rng.integers(1, 5))
    wh = list(shape[-2:]) if dims >= 2 else [1, shape[0]]
    h, w = wh
    off_w = int(rng.integers(0, w))
    off_h = int(rng.integers(0, h)) if dims >= 2 else 0
    rw = int(rng.integers(1, w - off_w + 1))
    rh = int(rng.integers(1, h - off_h + 1)) if dims >= 2 else 1
    params = [f"0={off_w}", f"1={off_h}"]
    rd, rc, off_d, off_c = 1, 1, 0, 0
    if dims == 4:
        d = shape[1]
        off_d = int(rng.integers(0, d))
        rd = int(rng.integers(1, d - off_d + 1)) if ref_dims == 4 else 1
        params.append(f"13={off_d}")
    if dims >= 3 and ref_dims == dims:
        c = shape[0]
        off_c = int(rng.integers(0, c))
        rc = int(rng.integers(1, c - off_c + 1))
        params.append(f"2={off_c}")
    ref = {1: (rw,), 2: (rh, rw), 3: (rc, rh, rw), 4: (rc, rd, rh, rw)}[ref_dims]
    return " ".join(params), ref


def crop_net(form, cases=24):
    """Crop in one form ("offsets", "slices", "reference") on 1-D to 4-D inputs."""

    def generate(cache_dir):
        name = f"crop_{form}"
        rng = _rng(name)
        layers, inputs, blobs = [], {}, 0
        for i in range(cases):
            dims = 1 + i % 4
            shape = _shape(rng, dims, 1, 8)
            layers.append(f"Input in{i} 0 1 in{i}")
            inputs[f"in{i}"] = rng.uniform(-2.0, 2.0, shape).astype(np.float32)
            if form == "reference":
                params, ref = _crop_reference(rng, shape)
                layers.append(f"Input ref{i} 0 1 ref{i}")
                inputs[f"ref{i}"] = rng.uniform(-1.0, 1.0, ref).astype(np.float32)
                layers.append(f"Crop crop{i} 2 1 in{i} ref{i} out{i} {params}")
                blobs += 3
            else:
                params = (_crop_offsets if form == "offsets" else _crop_slices)(rng, shape)
                layers.append(f"Crop crop{i} 1 1 in{i} out{i} {params}")
                blobs += 2
        return (*_write(cache_dir, name, layers, blobs), [inputs])

    return generate


def _slice_case(rng, shape):
    """(param text, output count) of a Slice along a random axis of `shape`."""
    dims = len(shape)
    axis = int(rng.integers(0, dims))
    n = shape[axis]
    spelled = axis - dims if rng.random() < 0.5 else axis
    if dims == 1 and rng.random() < 0.3:
        spelled = int(rng.integers(1, 4))  # 1-D blobs ignore the axis
    if rng.random() < 0.5:
        # indices: increasing split points, some negative
        count = int(rng.integers(0, min(n, 4)))
        points = sorted(int(p) for p in rng.choice(np.arange(1, n), count, replace=False)) \
            if count else []
        if not points:
            points = [] if n < 2 else [int(rng.integers(1, n))]
        if not points:
            return None
        spelled_points = [p - n if rng.random() < 0.4 else p for p in points]
        return f"-23302={_ints(spelled_points)} 1={spelled}", len(points) + 1
    if n < 2:
        return None
    # At least two parts: ncnn's Slice with a single top copies the wrong elements when the
    # part is shorter than the axis (it copies the leading elements of the blob).
    parts = int(rng.integers(2, min(n, 4) + 1))
    sizes, left = [], n
    for i in range(parts):
        even = left // (parts - i)
        if rng.random() < 0.5 and even >= 1:
            sizes.append(-233)
            left -= even
        else:
            hi = left - (parts - i - 1)  # leave at least 1 for each later part
            s = int(rng.integers(1, hi + 1))
            sizes.append(s)
            left -= s
    return f"-23300={_ints(sizes)} 1={spelled}", parts


def slice_net(cases=32):
    """Slice by sizes (-233 = an even share) and by indices, any axis, 1-D to 4-D."""

    def generate(cache_dir):
        name = "slice"
        rng = _rng(name)
        layers, inputs, blobs, i = [], {}, 0, 0
        while i < cases:
            dims = 1 + i % 4
            shape = _shape(rng, dims, 1, 8)
            case = _slice_case(rng, shape)
            if case is None:
                continue
            params, parts = case
            tops = " ".join(f"out{i}_{k}" for k in range(parts))
            layers.append(f"Input in{i} 0 1 in{i}")
            layers.append(f"Slice slice{i} 1 {parts} in{i} {tops} {params}")
            inputs[f"in{i}"] = rng.uniform(-2.0, 2.0, shape).astype(np.float32)
            blobs += 1 + parts
            i += 1
        return (*_write(cache_dir, name, layers, blobs), [inputs])

    return generate


def padding_net(pad_type, cases=24):
    """Padding of one type over 1-D to 4-D inputs, every side, per-channel values."""

    def generate(cache_dir):
        name = f"padding_{pad_type}"
        rng = _rng(name)
        layers, inputs, weights = [], {}, []
        for i in range(cases):
            dims = 1 + i % 4
            shape = _shape(rng, dims, 1, 6)
            # numpy axes: w last, h before it; front/behind act on c (3-D) or d (4-D).
            n_w = shape[-1]
            n_h = shape[-2] if dims >= 2 else 1
            n_f = shape[0] if dims == 3 else (shape[1] if dims == 4 else 1)

            def side(n):
                hi = n - 1 if pad_type == 2 else 3
                return int(rng.integers(0, hi + 1)) if rng.random() < 0.8 else 0

            top, bottom, left, right = side(n_h), side(n_h), side(n_w), side(n_w)
            front, behind = side(n_f), side(n_f)
            value = float(np.float32(rng.uniform(-3.0, 3.0)))
            params = (f"0={top} 1={bottom} 2={left} 3={right} 4={pad_type} 5={value:.6e} "
                      f"7={front} 8={behind}")
            if dims >= 3 and rng.random() < 0.5:
                outc = shape[0] + (front + behind if dims == 3 else 0)
                size = outc + int(rng.integers(0, 3))
                params += f" 6={size}"
                weights.append(rng.uniform(-5.0, 5.0, size).astype(np.float32))
            layers.append(f"Input in{i} 0 1 in{i}")
            layers.append(f"Padding pad{i} 1 1 in{i} out{i} {params}")
            inputs[f"in{i}"] = rng.uniform(-2.0, 2.0, shape).astype(np.float32)
        blob = b"".join(w.tobytes() for w in weights)
        return (*_write(cache_dir, name, layers, 2 * cases, blob), [inputs])

    return generate


def tile_net(cases=32):
    """Tile by axis / tiles and by repeats (fewer, as many or more than the dims)."""

    def generate(cache_dir):
        name = "tile"
        rng = _rng(name)
        layers, inputs = [], {}
        for i in range(cases):
            dims = 1 + i % 4
            shape = _shape(rng, dims, 1, 4)
            if i % 8 < 4:
                axis = int(rng.integers(0, dims + 1))  # dims: an axis the blob lacks
                params = f"0={axis} 1={int(rng.integers(1, 4))}"
            else:
                count = int(rng.integers(1, 5))
                params = f"-23302={_ints(rng.integers(1, 4, count))}"
            layers.append(f"Input in{i} 0 1 in{i}")
            layers.append(f"Tile tile{i} 1 1 in{i} out{i} {params}")
            inputs[f"in{i}"] = rng.uniform(-2.0, 2.0, shape).astype(np.float32)
        return (*_write(cache_dir, name, layers, 2 * cases), [inputs])

    return generate


FP16_TAG = 0x01306B47
_ACTIVATIONS = ["", " 9=1", " 9=2 -23310=1,1.000000e-01", " 9=3 -23310=2,-5.000000e-01,5.000000e-01",
                " 9=4", " 9=5", " 9=6 -23310=2,2.000000e-01,5.000000e-01"]


def _tagged(values, fp16):
    if fp16:
        payload = np.uint32(FP16_TAG).tobytes() + values.astype("<f2").tobytes()
    else:
        payload = np.uint32(0).tobytes() + values.astype("<f4").tobytes()
    return payload + b"\0" * (-len(payload) % 4)


def _deconv_case(rng, depthwise, large=False):
    """(input shape, param text, weights, bias or None) of one valid deconvolution."""
    group = int(rng.choice([1, 2, 3])) if depthwise else 1
    if depthwise and rng.random() < 0.4:
        inch = outch = group * (int(rng.integers(4, 17)) if large else 1)  # plain depthwise
    elif large:
        inch, outch = group * int(rng.integers(8, 41)), group * int(rng.integers(8, 41))
    else:
        inch, outch = group * int(rng.integers(1, 4)), group * int(rng.integers(1, 4))
    size = 24 if large else 8
    h, w = int(rng.integers(1, size)), int(rng.integers(1, size))
    kw, kh = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    dw, dh = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    sw, sh = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    opw, oph = int(rng.integers(0, 2)), int(rng.integers(0, 2))
    full_w = (w - 1) * sw + dw * (kw - 1) + 1 + opw
    full_h = (h - 1) * sh + dh * (kh - 1) + 1 + oph
    params = (f"0={outch} 1={kw} 11={kh} 2={dw} 12={dh} 3={sw} 13={sh} 18={opw} 19={oph}")
    form = int(rng.integers(0, 3))
    if form == 0:  # explicit pads, leaving something
        pl = int(rng.integers(0, min(3, full_w - 1) + 1))
        pr = int(rng.integers(0, min(3, full_w - 1 - pl) + 1))
        pt = int(rng.integers(0, min(3, full_h - 1) + 1))
        pb = int(rng.integers(0, min(3, full_h - 1 - pt) + 1))
        params += f" 4={pl} 15={pr} 14={pt} 16={pb}"
    elif form == 1:  # SAME_UPPER / SAME_LOWER with an output size
        same = int(rng.choice([-233, -234]))
        ow, oh = int(rng.integers(1, full_w + 1)), int(rng.integers(1, full_h + 1))
        params += f" 4={same} 15={same} 14={same} 16={same} 20={ow} 21={oh}"
    if depthwise:
        params += f" 7={group}"
    n = outch // group * inch * kw * kh
    weights = rng.uniform(-1.0, 1.0, n).astype(np.float32)
    bias = rng.uniform(-0.5, 0.5, outch).astype(np.float32) if rng.random() < 0.7 else None
    params += f" 5={int(bias is not None)} 6={n}"
    params += _ACTIVATIONS[int(rng.integers(0, len(_ACTIVATIONS)))]
    return (inch, h, w), params, weights, bias


def deconv_net(depthwise, fp16, cases=24, large=False):
    """Deconvolution or DeconvolutionDepthWise with random weights (fp32 or fp16 tagged);
    `large`: 8 to 40 channels per group and inputs up to 23x23 (the GEMM path's blocking)."""

    def generate(cache_dir):
        kind = "DeconvolutionDepthWise" if depthwise else "Deconvolution"
        name = f"{kind.lower()}_{'fp16' if fp16 else 'fp32'}{'_large' if large else ''}"
        rng = _rng(name)
        layers, inputs, blob = [], {}, b""
        for i in range(cases):
            shape, params, weights, bias = _deconv_case(rng, depthwise, large)
            layers.append(f"Input in{i} 0 1 in{i}")
            layers.append(f"{kind} deconv{i} 1 1 in{i} out{i} {params}")
            inputs[f"in{i}"] = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
            blob += _tagged(weights, fp16)
            if bias is not None:
                blob += bias.astype("<f4").tobytes()
        return (*_write(cache_dir, name, layers, 2 * cases, blob), [inputs])

    return generate


def deconv_dynamic_net(cases=16):
    """dynamic_weight = 1: the kernel (numpy (inch, outch / group, kh, kw)) and the bias are
    inputs; Deconvolution and DeconvolutionDepthWise alternate."""

    def generate(cache_dir):
        name = "deconvolution_dynamic"
        rng = _rng(name)
        layers, inputs, blobs = [], {}, 0
        for i in range(cases):
            depthwise = i % 2 == 1
            shape, params, weights, bias = _deconv_case(rng, depthwise)
            inch = shape[0]
            words = dict(t.split("=", 1) for t in params.split() if not t.startswith("-"))
            outch, kw, kh = int(words["0"]), int(words["1"]), int(words["11"])
            group = int(words.get("7", 1))
            kernel = weights.reshape(inch, outch // group, kh, kw)
            # The params' num_output / kernel size are ignored: drop weight_data_size and
            # spell them wrong.
            params = params.replace(f" 6={weights.size}", "").replace(f"0={outch} ", "0=1 ", 1)
            params += " 28=1"
            names = [f"in{i}", f"w{i}"] + ([f"b{i}"] if bias is not None else [])
            for n in names:
                layers.append(f"Input {n} 0 1 {n}")
            kind = "DeconvolutionDepthWise" if depthwise else "Deconvolution"
            layers.append(f"{kind} deconv{i} {len(names)} 1 {' '.join(names)} out{i} {params}")
            inputs[f"in{i}"] = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
            inputs[f"w{i}"] = kernel.astype(np.float32)
            if bias is not None:
                inputs[f"b{i}"] = bias
            blobs += len(names) + 1
        return (*_write(cache_dir, name, layers, blobs), [inputs])

    return generate
