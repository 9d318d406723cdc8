"""Generated nets for the loader work (run.py): shape expressions (Reshape key 6, Interp
key 9) on seeded random shapes, and param files in the forms ncnn's loader accepts.

Same contract as op_nets.py: a generator takes the cache directory and returns (param path,
bin path, [inputs]); the .bin is empty.
"""

import numpy as np

import ncnn_bin
from op_nets import _write


def _shape(rng, dims, lo=1, hi=7):
    return tuple(int(rng.integers(lo, hi)) for _ in range(dims))


def _whdc(shape):
    """ncnn's (w, h, d, c) of a numpy-order shape; unused dimensions are 1."""
    s = list(shape)
    if len(s) == 1:
        return s[0], 1, 1, 1
    if len(s) == 2:
        return s[1], s[0], 1, 1
    if len(s) == 3:
        return s[2], s[1], 1, s[0]
    return s[3], s[2], s[1], s[0]


def _reshape_cases(x, r):
    """(expression, input count) pairs for input shape x (and second input r) that keep the
    element count: the written order is w, h, [d,] c."""
    w, h, d, c = _whdc(x)
    rw, rh, _, rc = _whdc(r)
    total = w * h * d * c
    cases = [
        ("-1", 1),
        ("0w,-1", 1),
        ("*(0w,0h),-1", 1),
        ("0h,0w,*(0d,0c)", 1),
        ("-1,0h,0d,0c", 1),
        (f"//({total},0w),0w", 1),
        ("*(0d,0c),1,*(0w,0h)", 1),
        ("0w,0h,0d,0c", 1),
        ("max(0w,0h),-1", 1),
        ("1w,-1", 2),
        ("-1,1h,1c", 2),
    ]
    ok = []
    for text, n in cases:
        if n == 2 and (total % rw or total % (rh * rc)):
            continue
        if text.startswith("max") and total % max(w, h):
            continue
        if text.startswith("//") and total % w:
            continue
        ok.append((text, n))
    return ok


def reshape_expr_net(cases=28):
    """Reshape with shape_expr over 1-D to 4-D inputs, one or two inputs."""

    def generate(cache_dir):
        name = "reshape_expr"
        rng = np.random.Generator(np.random.PCG64(ncnn_bin.model_seed(name)))
        layers, inputs, blobs = [], {}, 0
        for i in range(cases):
            x = _shape(rng, int(rng.integers(1, 5)))
            r = _shape(rng, int(rng.integers(1, 4)))
            options = _reshape_cases(x, r)
            text, n = options[i % len(options)] if i < len(options) else \
                options[int(rng.integers(0, len(options)))]
            layers.append(f"Input in{i} 0 1 in{i}")
            inputs[f"in{i}"] = rng.uniform(-2.0, 2.0, x).astype(np.float32)
            blobs += 2
            if n == 2:
                layers.append(f"Input ref{i} 0 1 ref{i}")
                inputs[f"ref{i}"] = rng.uniform(-1.0, 1.0, r).astype(np.float32)
                layers.append(f'Reshape reshape{i} 2 1 in{i} ref{i} out{i} 6="{text}"')
                blobs += 1
            else:
                layers.append(f'Reshape reshape{i} 1 1 in{i} out{i} 6="{text}"')
        layers.sort(key=lambda l: not l.startswith("Input"))
        return (*_write(cache_dir, name, layers, blobs), [inputs])

    return generate


INTERP_EXPRS = [
    # (expression, inputs, needs key 5)
    ("*(0w,2),*(0h,2)", 1, False),
    ("+(0w,1)", 1, False),
    ("//(+(0w,1),2),//(+(0h,1),2)", 1, False),
    ("ceil(/(0w,3)),round(*(0h,1.5))", 1, False),
    ("max(0w,5),min(0h,3)", 1, False),
    ("trunc(*(0w,1.7)),floor(*(+(0h,1),0.75))", 1, False),
    ("0w,0h", 1, False),
    ("7,8,9", 1, False),  # other lengths: the size from keys 1-4
    ("1w,2,3", 2, False),  # ... or from the second input
    ("1w,1h", 2, False),
    ("1h", 2, False),
    ("1h,-(+(0w,1w),1)", 2, True),
]


def interp_expr_net(cases=30):
    """Interp with size_expr: every resize type, align_corner on and off, 1-D to 3-D."""

    def generate(cache_dir):
        name = "interp_expr"
        rng = np.random.Generator(np.random.PCG64(ncnn_bin.model_seed(name)))
        layers, inputs, blobs = [], {}, 0
        for i in range(cases):
            text, n, dynamic = INTERP_EXPRS[i % len(INTERP_EXPRS)]
            resize_type = 1 + int(rng.integers(0, 3))
            dims = int(rng.choice([1, 2, 3, 3]))
            x = _shape(rng, dims, 1, 9)
            params = f"0={resize_type}"
            if rng.random() < 0.5:
                params += " 6=1"
            if dynamic:
                params += " 5=1"
            if rng.random() < 0.3:
                params += " 1=2.0 2=0.5"  # ignored with an expression
            layers.append(f"Input in{i} 0 1 in{i}")
            inputs[f"in{i}"] = rng.uniform(-2.0, 2.0, x).astype(np.float32)
            blobs += 2
            if n == 2:
                r = _shape(rng, int(rng.integers(1, 4)), 1, 10)
                layers.append(f"Input ref{i} 0 1 ref{i}")
                inputs[f"ref{i}"] = rng.uniform(-1.0, 1.0, r).astype(np.float32)
                layers.append(f'Interp interp{i} 2 1 in{i} ref{i} out{i} {params} 9="{text}"')
                blobs += 1
            else:
                layers.append(f'Interp interp{i} 1 1 in{i} out{i} {params} 9="{text}"')
        layers.sort(key=lambda l: not l.startswith("Input"))
        return (*_write(cache_dir, name, layers, blobs), [inputs])

    return generate


# Every param-file form ncnn's loader accepts that a writer may produce: CRLF line ends, tabs
# and runs of spaces, blank lines, a larger declared blob count, repeated layer names, `.5` /
# `-1.` / `+2` numbers, a repeated key (the last wins), an old-style array on key 1, an empty
# old-style array, a one-element array spelled `1,`, string parameters (unquoted, quoted with
# a space) on keys the layer ignores, an expression, and records after the declared layers
# (ignored), without a final newline.
LOADER_FORMS = (
    "7767517\r\n\r\n7 12\r\n"
    "Input\tdata 0 1 data\r\n"
    "ReLU  r   1 1 data a\t0=.5 \r\n"
    "Clip r 1 1 a b 0=-1. 1=+2 0=-0.75\r\n"
    "\r\n"
    "Split r 1 2 b b0 b1\r\n"
    "Eltwise e 2 1 b0 b1 c 0=1 -23301=2,1.5,-0.25 5=1,\r\n"
    "Softmax s 1 1 c d 0=0 1=1 7=abc 8=\"x y\" -23309=0\r\n"
    "Reshape re 1 1 d out 6=\"-1,0c\"\r\n"
    "ReLU after 1 1 out more 0=1\n"
    "not a layer at all"
)


CROP_EXPRS = [
    # (starts_expr, ends_expr, axes_expr or None, input dims, reference input dims or 0)
    ("1,0", "-(0h,1),1w", "1,2", 3, 1),  # rows [1, h-1), columns up to the reference's w
    ("0", "//(0c,2)", "0", 3, 0),  # the first half of the channels
    ("1", "-(0w,1)", "-1", 3, 0),  # a negative axis: w
    # Not compared: without axes_expr ncnn 1.0.20261020 crashes (we take the leading axes,
    # as in the starts / ends array form).
    ("1", "0d", "1", 4, 0),  # 4-D: depth [1, d)
    ("0,1", "1h,0w", "0,1", 2, 2),  # 2-D: rows up to the reference's h
    ("//(0w,3)", "*(//(0w,3),2)", "0", 1, 0),  # 1-D: the middle third
    ("max(-(0w,1w),0)", "0w", "-1", 3, 1),  # the last (reference w) columns
]


def crop_expr_net():
    """Crop with starts_expr / ends_expr / axes_expr (keys 19 / 20 / 21), one case per form,
    each on two random shapes."""

    def generate(cache_dir):
        name = "crop_expr"
        rng = np.random.Generator(np.random.PCG64(ncnn_bin.model_seed(name)))
        layers, inputs, blobs = [], {}, 0
        for i, (starts, ends, axes, dims, ref_dims) in enumerate(CROP_EXPRS * 2):
            x = _shape(rng, dims, 3, 8)
            layers.append(f"Input in{i} 0 1 in{i}")
            inputs[f"in{i}"] = rng.uniform(-2.0, 2.0, x).astype(np.float32)
            blobs += 2
            keys = f'19="{starts}" 20="{ends}"' + (f' 21="{axes}"' if axes else "")
            if ref_dims:
                # A reference no larger than the input along the axes it is read on.
                r = tuple(int(rng.integers(1, min(x) + 1)) for _ in range(ref_dims))
                layers.append(f"Input ref{i} 0 1 ref{i}")
                inputs[f"ref{i}"] = rng.uniform(-1.0, 1.0, r).astype(np.float32)
                layers.append(f"Crop crop{i} 2 1 in{i} ref{i} out{i} {keys}")
                blobs += 1
            else:
                layers.append(f"Crop crop{i} 1 1 in{i} out{i} {keys}")
        layers.sort(key=lambda l: not l.startswith("Input"))
        return (*_write(cache_dir, name, layers, blobs), [inputs])

    return generate


def loader_forms_net():
    def generate(cache_dir):
        import os
        param = os.path.join(cache_dir, "loader_forms.param")
        binary = os.path.join(cache_dir, "loader_forms.bin")
        with open(param, "w", newline="") as f:
            f.write(LOADER_FORMS)
        open(binary, "wb").close()
        rng = np.random.Generator(np.random.PCG64(ncnn_bin.model_seed("loader_forms")))
        runs = [{"data": rng.uniform(-3.0, 3.0, (3, 4, 5)).astype(np.float32)}]
        return param, binary, runs

    return generate
