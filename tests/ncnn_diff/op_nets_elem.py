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
    plus a one-element blob of each rank."""

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


def nets():
    """(run.py case name, generator) for every case of this file."""
    out = [(f"elem_{name}", single_op_net(f"elem_{name}", _every_rank(kind, forms, rng)))
           for name, (kind, forms, rng) in ACTIVATIONS.items()]
    out.append(("elem_unaryop", single_op_net("elem_unaryop", _unary_cases)))
    return out
