"""Single-op nets for the activations, element-wise and simple reshaping ops (run.py's
`elem_*` cases): seeded random shapes from 1-D to 4-D, every parameter form, each case an
Input feeding one op whose output is a net output. Same generator contract as op_nets.py:
generator(cache_dir) -> (param path, bin path, [inputs]); the .bin is empty.
"""

import numpy as np

import ncnn_bin
from op_nets import _write


def random_shape(rng, dims, lo=1, hi=9):
    """numpy-order shape (c, d, h, w truncated to dims) with sizes in [lo, hi)."""
    return tuple(int(rng.integers(lo, hi)) for _ in range(dims))


def single_op_net(name, cases, runs=1):
    """cases(rng) -> [(layer type, params text, input shape, (lo, hi))]: one net with an Input
    and one op per case, fed uniform random values in [lo, hi)."""

    def generate(cache_dir):
        rng = np.random.Generator(np.random.PCG64(ncnn_bin.model_seed(name)))
        layers, shapes = [], []
        for i, (kind, params, shape, value_range) in enumerate(cases(rng)):
            layers.append(f"Input in{i} 0 1 in{i}")
            layers.append(f"{kind} op{i} 1 1 in{i} out{i} {params}".rstrip())
            shapes.append((shape, value_range))
        layers.sort(key=lambda l: not l.startswith("Input"))
        all_inputs = []
        for _ in range(runs):
            all_inputs.append({f"in{i}": rng.uniform(lo, hi, shape).astype(np.float32)
                               for i, (shape, (lo, hi)) in enumerate(shapes)})
        return (*_write(cache_dir, name, layers, 2 * len(shapes)), all_inputs)

    return generate


def _every_rank(kind, forms, value_range, per_rank=2):
    """Cases of one op: every params form on `per_rank` random shapes of each rank 1..4,
    plus a one-element blob of random rank per form."""

    def cases(rng):
        out = []
        for params in forms:
            for dims in (1, 2, 3, 4):
                for _ in range(per_rank):
                    out.append((kind, params, random_shape(rng, dims), value_range))
            out.append((kind, params, (1,) * int(rng.integers(1, 5)), value_range))
        return out

    return cases


# name -> (layer type, parameter forms, input value range)
ACTIVATIONS = {
    "hardswish": ("HardSwish", ["", "0=1.666667e-01", "0=2.5e-01 1=4.0e-01"], (-6.0, 6.0)),
    "hardsigmoid": ("HardSigmoid", ["", "0=1.666667e-01 1=5.0e-01"], (-6.0, 6.0)),
    "swish": ("Swish", [""], (-10.0, 10.0)),
    "mish": ("Mish", [""], (-25.0, 25.0)),
    "gelu": ("GELU", ["", "0=0", "0=1"], (-6.0, 6.0)),
    "tanh": ("TanH", [""], (-5.0, 5.0)),
    "absval": ("AbsVal", [""], (-5.0, 5.0)),
    "elu": ("ELU", ["", "0=1.0"], (-5.0, 3.0)),
    "selu": ("SELU", ["", "0=1.5 1=9.0e-01"], (-5.0, 3.0)),
    "power": ("Power", ["", "0=2.0 1=5.0e-01 2=2.0", "0=5.0e-01 1=2.0 2=7.0",
                        "0=-1.5 1=1.0 2=4.0"], (-3.0, 3.0)),
    "exp": ("Exp", ["", "0=2.0 1=5.0e-01 2=1.0e-01", "1=-1.5 2=5.0e-01",
                    "0=1.0e+01 1=2.5e-01"], (-4.0, 4.0)),
    "log": ("Log", ["1=1.0 2=4.0", "0=1.0e+01 1=2.0 2=7.0", "0=2.0 1=-5.0e-01 2=3.0"],
            (-3.0, 3.0)),
    "erf": ("Erf", [""], (-4.0, 4.0)),
    "bnll": ("BNLL", [""], (-20.0, 20.0)),
}

# UnaryOp op_type -> input range inside the function's domain (away from tan's poles; the
# x86 build's approximations return finite junk where the exact function is NaN).
UNARY_RANGES = {
    0: (-5, 5), 1: (-5, 5), 2: (-5, 5), 3: (-5, 5), 4: (-5, 5), 5: (0, 9), 6: (0.05, 9),
    7: (-8, 8), 8: (0.01, 9), 9: (-6, 6), 10: (-6, 6), 11: (-1.4, 1.4), 12: (-1, 1),
    13: (-1, 1), 14: (-8, 8), 15: (0.1, 5), 16: (-5, 5), 17: (0.01, 9), 18: (-5, 5),
    19: (-5, 5), 20: (-5, 5), 21: (-4, 4), 22: (-4, 4), 23: (-8, 8), 24: (-4, 4),
    25: (1, 9), 26: (-0.99, 0.99), 27: (-0.99, 9),
}


def _unary_cases(rng):
    out = []
    for t, (lo, hi) in UNARY_RANGES.items():
        for dims in (1, 2, 3, 4):
            out.append(("UnaryOp", f"0={t}", random_shape(rng, dims), (lo, hi)))
    # Reciprocal of negative values too; rounding of exact halves is checked in the unit tests.
    out.append(("UnaryOp", "0=15", random_shape(rng, 3), (-5, -0.1)))
    return out


def _axes_text(axes):
    return f"-23303={len(axes)}," + ",".join(str(a) for a in axes)


def _ones_shape(rng, dims):
    """A shape with many size-1 axes (for Squeeze)."""
    return tuple(int(rng.choice([1, 1, 2, 3])) for _ in range(dims))


def _squeeze_cases(rng):
    out = []
    for dims in (1, 2, 3, 4):
        for _ in range(6):
            shape = _ones_shape(rng, dims)
            flags = [int(rng.integers(0, 2)) for _ in range(4)]
            params = " ".join(f"{k}=1" for k, f in zip((0, 1, 11, 2), flags) if f)
            out.append(("Squeeze", params, shape, (-1, 1)))
        out.append(("Squeeze", "0=1 1=1 11=1 2=1", (1,) * dims, (-1, 1)))
        for _ in range(6):
            shape = _ones_shape(rng, dims)
            n = int(rng.integers(1, dims + 1))
            axes = [int(a) for a in rng.choice(dims, n, replace=False)]
            axes = [a - dims if rng.random() < 0.5 else a for a in axes]
            out.append(("Squeeze", _axes_text(axes), shape, (-1, 1)))
    return out


def _expand_dims_cases(rng):
    out = []
    for dims in (1, 2, 3):
        for _ in range(6):
            n = int(rng.integers(1, 5 - dims))
            rank = dims + n
            axes = [int(a) for a in rng.choice(rank, n, replace=False)]
            axes = [a - rank if rng.random() < 0.5 else a for a in axes]
            out.append(("ExpandDims", _axes_text(axes), random_shape(rng, dims), (-1, 1)))
    return out


def _shuffle_channel_cases(rng):
    out = []
    for dims in (3, 4):
        for group in (1, 2, 3, 4):
            for reverse in (0, 1):
                c = group * int(rng.integers(1, 5))
                shape = (c,) + random_shape(rng, dims - 1)
                out.append(("ShuffleChannel", f"0={group} 1={reverse}", shape, (-1, 1)))
    return out


def _flatten_cases(rng):
    return [("Flatten", "", random_shape(rng, dims), (-1, 1)) for dims in (1, 2, 3, 4, 4, 3)]


# BinaryOp op types whose operands must stay away from zero / negative values.
DIVIDING = {3, 8, 12, 13, 15, 16, 17, 18}
POWERS = {6, 9}


def _binary_values(rng, shape, op_type):
    if op_type in POWERS:
        return rng.uniform(0.5, 2.0, shape).astype(np.float32)
    v = rng.uniform(-3.0, 3.0, shape)
    if op_type in DIVIDING:
        v = np.sign(v) * (0.3 + np.abs(v))
    return v.astype(np.float32)


def _broadcast_pairs(rng):
    """(a, b) numpy shapes that broadcast under ncnn's rules, in both orders."""
    pairs = []
    for rank in (1, 2, 3, 4):
        for _ in range(3):
            full = random_shape(rng, rank, 1, 6)
            # Same rank, size-1 axes on either side.
            a = tuple(1 if rng.random() < 0.3 else s for s in full)
            b = tuple(1 if (rng.random() < 0.3 and x != 1) else s for s, x in zip(full, a))
            pairs.append((a, b))
            # Lower ranks: a 1-D blob along the outer axis, along w, or of one element; 2-D /
            # 3-D blobs along the outermost axes (with size-1 axes of their own).
            if rank > 1:
                pairs += [(full, (full[0],)), (full, (full[-1],)), (full, (1,))]
            for low in range(2, rank):
                lower = tuple(1 if rng.random() < 0.25 else s for s in full[:low])
                pairs.append((full, lower))
    return pairs + [(b, a) for a, b in pairs]


def _binary_net(name):
    def generate(cache_dir):
        rng = np.random.Generator(np.random.PCG64(ncnn_bin.model_seed(name)))
        layers, inputs, n = [], {}, 0
        pairs = _broadcast_pairs(rng)
        for op_type in range(19):
            # Every op type over a slice of the pairs (all of them over the whole list), and
            # the scalar form on both sides of zero.
            for k in range(op_type % 3, len(pairs), 3):
                sa, sb = pairs[k]
                layers += [f"Input a{n} 0 1 a{n}", f"Input b{n} 0 1 b{n}",
                           f"BinaryOp op{n} 2 1 a{n} b{n} out{n} 0={op_type}"]
                inputs[f"a{n}"] = _binary_values(rng, sa, op_type)
                inputs[f"b{n}"] = _binary_values(rng, sb, op_type)
                n += 1
            for scalar in (1.75, -0.6):
                if op_type == 9 and scalar < 0:
                    continue  # a negative base
                shape = random_shape(rng, int(rng.integers(1, 5)))
                layers += [f"Input a{n} 0 1 a{n}",
                           f"BinaryOp op{n} 1 1 a{n} out{n} 0={op_type} 1=1 2={scalar}"]
                inputs[f"a{n}"] = _binary_values(rng, shape, op_type)
                n += 1
        layers.sort(key=lambda l: not l.startswith("Input"))
        return (*_write(cache_dir, name, layers, len(layers)), [inputs])

    return generate


def _model_like_net(name):
    """The ops as common models use them, without weights: a MobileNetV3 squeeze-excite block
    (HardSwish, global pooling, HardSigmoid, a per-channel BinaryOp mul), a ShuffleNetV2
    channel shuffle, YOLO's Swish and Mish, and a transformer MLP tail on a 2-D (tokens, dim)
    blob (GELU, a bias add along w, a residual add, TanH), with ExpandDims / Squeeze around a
    4-D BinaryOp."""
    layers = [
        "Input x 0 1 x",
        "Input tok 0 1 tok",
        "Input bias 0 1 bias",
        "HardSwish hs 1 1 x a 0=1.666667e-01",
        "Split sa 1 2 a a0 a1",
        "Pooling gp 1 1 a0 p 0=1 4=1",
        "HardSigmoid hsig 1 1 p q 0=1.666667e-01",
        "BinaryOp se 2 1 a1 q r 0=2",
        "ShuffleChannel sc 1 1 r s 0=2",
        "Swish sw 1 1 s u",
        "Mish mi 1 1 u v",
        "ExpandDims ed 1 1 v v4 -23303=1,1",
        "BinaryOp add4 1 1 v4 w4 0=0 1=1 2=2.5e-01",
        "Squeeze sq 1 1 w4 out_cnn -23303=1,1",
        "Split st 1 2 tok t0 t1",
        "GELU ge 1 1 t0 g",
        "BinaryOp ba 2 1 g bias gb 0=0",
        "BinaryOp res 2 1 gb t1 y 0=0",
        "TanH th 1 1 y out_tf",
    ]

    def generate(cache_dir):
        rng = np.random.Generator(np.random.PCG64(ncnn_bin.model_seed(name)))
        blobs = {b for l in layers for b in l.split()[4:] if "=" not in b}
        runs = [{"x": rng.uniform(-4, 4, (16, 9, 11)).astype(np.float32),
                 "tok": rng.uniform(-3, 3, (7, 24)).astype(np.float32),
                 "bias": rng.uniform(-1, 1, (24,)).astype(np.float32)} for _ in range(2)]
        return (*_write(cache_dir, name, layers, len(blobs)), runs)

    return generate


def nets():
    """(run.py case name, generator) for every case of this file."""
    out = [(f"elem_{name}", single_op_net(f"elem_{name}", _every_rank(kind, forms, rng)))
           for name, (kind, forms, rng) in ACTIVATIONS.items()]
    for name, cases in [("unaryop", _unary_cases), ("squeeze", _squeeze_cases),
                        ("expanddims", _expand_dims_cases),
                        ("shufflechannel", _shuffle_channel_cases), ("flatten", _flatten_cases)]:
        out.append((f"elem_{name}", single_op_net(f"elem_{name}", cases)))
    out.append(("elem_binaryop", _binary_net("elem_binaryop")))
    out.append(("elem_model_blocks", _model_like_net("elem_model_blocks")))
    return out
