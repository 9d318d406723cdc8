"""Single-op nets for the normalisation, matrix and reduction layers (LayerNorm, GroupNorm,
InstanceNorm, RMSNorm, Softmax, Reduction, MatMul, Gemm, MemoryData, Embed,
MultiHeadAttention): seeded random shapes (1-D to 4-D where the op takes them) and every
parameter form, each case one layer fed by its own Input blobs, its output a net output.

A generator takes the cache directory and returns (param path, bin path, [inputs]) like
op_nets.py's. Weights are random and written in the order each layer's loader reads them:
`raw` blobs are bare float32, `tagged` ones start with the 4-byte fp32 flag (0).
"""

import os

import numpy as np

import ncnn_bin


class Net:
    """Collects the layers, weights and input arrays of one generated net."""

    def __init__(self, name):
        self.name = name
        self.rng = np.random.Generator(np.random.PCG64(ncnn_bin.model_seed(name)))
        self.inputs = {}
        self.input_layers = []
        self.layers = []
        self.weights = bytearray()
        self.blobs = 0

    def input(self, array):
        name = f"in{len(self.inputs)}"
        self.inputs[name] = np.ascontiguousarray(array, dtype=np.float32)
        self.input_layers.append(f"Input {name} 0 1 {name}")
        self.blobs += 1
        return name

    def uniform(self, shape, lo=-2.0, hi=2.0):
        return self.rng.uniform(lo, hi, shape).astype(np.float32)

    def raw(self, n, lo=-1.0, hi=1.0):
        self.weights += self.uniform((n,), lo, hi).tobytes()

    def tagged(self, n, lo=-1.0, hi=1.0):
        self.weights += np.zeros(1, np.uint32).tobytes() + self.uniform((n,), lo, hi).tobytes()

    def layer(self, kind, bottoms, params):
        i = len(self.layers)
        self.layers.append(
            f"{kind} op{i} {len(bottoms)} 1 {' '.join(bottoms)} out{i} {params}".rstrip()
        )
        self.blobs += 1

    def write(self, cache_dir):
        lines = self.input_layers + self.layers
        text = f"7767517\n{len(lines)} {self.blobs}\n" + "\n".join(lines) + "\n"
        param = os.path.join(cache_dir, f"{self.name}.param")
        binary = os.path.join(cache_dir, f"{self.name}.bin")
        with open(param, "w") as f:
            f.write(text)
        with open(binary, "wb") as f:
            f.write(bytes(self.weights))
        return param, binary, [self.inputs]


def _generator(name, build):
    def generate(cache_dir):
        net = Net(name)
        build(net)
        return net.write(cache_dir)

    return generate


def _random_shape(rng, dims, lo=1, hi=7):
    return tuple(int(v) for v in rng.integers(lo, hi, dims))


# ------------------------------------------------------------------ norms


def _norm_cases(net, kind, with_beta):
    """LayerNorm / RMSNorm: every rank, affine_size = w, w*h, w*h*d or another value."""
    rng = net.rng
    for i in range(28):
        dims = int(rng.integers(1, 5))
        # w >= 2: a group of one element normalises to rounding noise, which no relative
        # error can compare.
        shape = _random_shape(rng, dims - 1, 1, 8) + (int(rng.integers(2, 8)),)
        w = shape[-1]
        h = shape[-2] if dims >= 2 else 1
        d = shape[-3] if dims == 4 else 1
        if dims <= 2:
            group = w
            size = w
        else:
            choice = int(rng.integers(0, 3))
            if choice == 0:
                size, group = w, w
            elif dims == 4 and choice == 1:
                size, group = w * h, w * h
            else:
                size = w * h * d if dims == 4 else w * h
                group = size
        affine = i % 3 != 2
        if not affine and rng.random() < 0.5:
            size = int(rng.integers(0, 50))  # ignored for the group unless it equals w / w*h
            if dims >= 3 and size in (w, w * h):
                size = group
        eps = float(rng.choice([1e-5, 1e-3, 0.1]))
        x = net.input(net.uniform(shape, -3.0, 3.0))
        params = f"0={size} 1={eps:e} 2={int(affine)}"
        net.layer(kind, [x], params)
        if affine:
            net.raw(group, 0.5, 1.5)
            if with_beta:
                net.raw(group)


def layer_norm_net():
    return _generator("layer_norm", lambda net: _norm_cases(net, "LayerNorm", True))


def rms_norm_net():
    return _generator("rms_norm", lambda net: _norm_cases(net, "RMSNorm", False))


def group_norm_net():
    def build(net):
        rng = net.rng
        for i in range(20):
            dims = int(rng.integers(1, 5))
            group = int(rng.integers(1, 4))
            channels = group * int(rng.integers(1 if dims > 1 else 2, 4))
            rest = _random_shape(rng, dims - 1, 1, 7)
            if dims > 1:
                rest = rest[:-1] + (max(rest[-1], 2),)
            shape = (channels,) + rest
            affine = i % 3 != 2
            eps = float(rng.choice([1e-5, 1e-3, 0.1]))
            x = net.input(net.uniform(shape, -3.0, 3.0))
            net.layer("GroupNorm", [x], f"0={group} 1={channels} 2={eps:e} 3={int(affine)}")
            if affine:
                net.raw(channels, 0.5, 1.5)
                net.raw(channels)

    return _generator("group_norm", build)


def instance_norm_net():
    def build(net):
        rng = net.rng
        for i in range(16):
            dims = int(rng.integers(3, 5))
            shape = _random_shape(rng, dims, 1, 8)
            shape = (shape[0],) + tuple(max(v, 2) for v in shape[1:])
            channels = shape[0]
            affine = i % 3 != 2
            eps = float(rng.choice([1e-5, 1e-3, 0.1]))
            x = net.input(net.uniform(shape, -3.0, 3.0))
            params = f"0={channels} 1={eps:e}" + ("" if affine and i % 2 else f" 2={int(affine)}")
            net.layer("InstanceNorm", [x], params)
            if affine:
                net.raw(channels, 0.5, 1.5)
                net.raw(channels)

    return _generator("instance_norm", build)


# -------------------------------------------------------------- reduction


def reduction_net():
    """Every operation over random 1-D..4-D blobs: reduce_all, or a random set of axes (some
    negative), keepdims on and off, coeff 1 or not."""

    def build(net):
        rng = net.rng
        cases = 0
        while cases < 66:
            op = cases % 11
            dims = int(rng.integers(1, 5))
            shape = _random_shape(rng, dims, 1, 6)
            params = [f"0={op}"]
            if rng.random() < 0.25:
                params.append("1=1")
            else:
                count = int(rng.integers(1, dims + 1))
                axes = sorted(rng.choice(dims, count, replace=False).tolist())
                axes = [a - dims if rng.random() < 0.4 else a for a in axes]
                params.append("1=0 5=1 -23303=" + ",".join(str(v) for v in [len(axes)] + axes))
            coeff = float(rng.choice([1.0, 0.5, -2.0]))
            if coeff != 1.0:
                params.append(f"2={coeff}")
            if rng.random() < 0.5:
                params.append("4=1")
            lo, hi = {6: (0.6, 1.4), 9: (0.1, 2.0), 10: (-1.0, 1.0)}.get(op, (-2.0, 2.0))
            x = net.input(net.uniform(shape, lo, hi))
            net.layer("Reduction", [x], " ".join(params))
            cases += 1

    return _generator("reduction", build)


# ------------------------------------------------- softmax, memorydata, embed


def softmax_net():
    """Softmax over every axis of 1-D..4-D blobs, positive and negative axis values."""

    def build(net):
        rng = net.rng
        for i in range(24):
            dims = 1 + i % 4
            shape = _random_shape(rng, dims, 1, 7)
            axis = int(rng.integers(0, dims))
            if rng.random() < 0.5:
                axis -= dims
            x = net.input(net.uniform(shape, -4.0, 4.0))
            net.layer("Softmax", [x], f"0={axis} 1=1")

    return _generator("softmax", build)


def memory_data_net():
    """MemoryData of every rank, raw and tagged (plus one Input and Softmax: `eq infer` needs
    an input)."""

    def build(net):
        rng = net.rng
        net.layer("Softmax", [net.input(net.uniform((5,)))], "0=0")
        for i in range(12):
            dims = 1 + i % 4
            w, h, d, c = _random_shape(rng, 4, 1, 6)
            keys = {1: f"0={w}", 2: f"0={w} 1={h}", 3: f"0={w} 1={h} 2={c}",
                    4: f"0={w} 1={h} 11={d} 2={c}"}[dims]
            n = {1: w, 2: w * h, 3: w * h * c, 4: w * h * d * c}[dims]
            if i % 3 == 1:
                net.layer("MemoryData", [], keys + " 21=0")
                net.tagged(n)
            else:
                net.layer("MemoryData", [], keys)
                net.raw(n)

    return _generator("memory_data", build)


def embed_net():
    """Embed with and without bias; indices (int32 bits in float slots) in range and out of it
    (clamped)."""

    def build(net):
        rng = net.rng
        for i in range(8):
            num_output, input_dim = int(rng.integers(1, 9)), int(rng.integers(1, 12))
            words = int(rng.integers(1, 10))
            ids = rng.integers(-2, input_dim + 2, words).astype(np.int32)
            x = net.input(ids.view(np.float32))
            bias = i % 2
            net.layer("Embed", [x], f"0={num_output} 1={input_dim} 2={bias} "
                                    f"3={num_output * input_dim}")
            net.tagged(num_output * input_dim)
            if bias:
                net.raw(num_output)

    return _generator("embed", build)


# ----------------------------------------------------------------- matmul


def _batch_pair(rng, ad, bd):
    """Batch axes (numpy order) for operands of `ad` / `bd` dims, each broadcastable."""
    r = max(ad, bd, 2) - 2
    full = [int(v) for v in rng.integers(1, 4, r)]

    def take(dims):
        own = full[len(full) - (dims - 2):] if dims > 2 else []
        return [1 if rng.random() < 0.3 else v for v in own]

    return take(ad), take(bd)


def matmul_net():
    """MatMul over every pair of ranks 1..4, transB on and off, broadcast batch axes."""

    def build(net):
        rng = net.rng
        pairs = [(a, b) for a in range(1, 5) for b in range(1, 5)]
        for i in range(48):
            ad, bd = pairs[i % len(pairs)]
            trans_b = int(rng.integers(0, 2))
            m, k, n = (int(v) for v in rng.integers(1, 9, 3))
            ab, bb = _batch_pair(rng, ad, bd)
            a_shape = (k,) if ad == 1 else tuple(ab) + (m, k)
            if bd == 1:
                b_shape = (k,)
            else:
                b_shape = tuple(bb) + ((n, k) if trans_b else (k, n))
            a = net.input(net.uniform(a_shape))
            b = net.input(net.uniform(b_shape))
            net.layer("MatMul", [a, b], f"0={trans_b}")

    return _generator("matmul", build)


# ------------------------------------------------------------------- gemm


def gemm_net():
    """Gemm in every form: transA / transB, constant A / B / C (every broadcast type), an input
    C of every shape or none, alpha / beta, output_N1M, output_transpose, 3-D (h = 1) operands.
    """

    def build(net):
        rng = net.rng
        net.layer("Softmax", [net.input(net.uniform((3,)))], "0=0")  # `eq infer` needs an input
        for i in range(48):
            m, n, k = (int(v) for v in rng.integers(1, 8, 3))
            ta, tb = int(rng.integers(0, 2)), int(rng.integers(0, 2))
            ca, cb, cc = (int(rng.random() < 0.35) for _ in range(3))
            alpha = float(rng.choice([1.0, 0.5, -1.5]))
            beta = float(rng.choice([1.0, 2.0, -0.25]))
            n1m, out_t = int(rng.random() < 0.3), int(rng.random() < 0.3)
            params = [f"0={alpha}", f"1={beta}", f"2={ta}", f"3={tb}", f"4={ca}", f"5={cb}",
                      f"6={cc}", f"7={m}", f"8={n}", f"9={k}", f"11={n1m}", f"14={out_t}"]
            bottoms = []

            def operand(rows, cols):
                if rng.random() < 0.25:
                    return net.input(net.uniform((rows, 1, cols)))
                return net.input(net.uniform((rows, cols)))

            weights = []
            if ca:
                weights.append(k * m)
            else:
                bottoms.append(operand(k, m) if ta else operand(m, k))
            if cb:
                weights.append(n * k)
            else:
                bottoms.append(operand(n, k) if tb else operand(k, n))
            if cc:
                c_type = int(rng.integers(-1, 5))
                params.append(f"10={c_type}")
                if c_type >= 0:
                    weights.append({0: 1, 1: m, 2: m, 3: m * n, 4: n}[c_type])
            elif rng.random() < 0.7 or (ca and cb):  # ncnn: one blob, so C, when A, B constant
                c_shape = [(1,), (m,), (n,), (m, 1), (m, n), (1, n)][int(rng.integers(0, 6))]
                bottoms.append(net.input(net.uniform(c_shape)))
            net.layer("Gemm", bottoms, " ".join(params))
            for count in weights:
                net.tagged(count)
        # Linear layers big enough for the packed GEMM kernel (constant B, C none / scalar /
        # per column).
        for i, c_type in enumerate([None, 4, 0, -1, 4, None]):
            m, n, k = int(rng.integers(20, 70)), int(rng.integers(30, 90)), int(rng.integers(40, 130))
            ta, tb, out_t = i % 2, (i // 2) % 2, int(i in (1, 4))
            a = net.input(net.uniform((k, m) if ta else (m, k)))
            params = f"0=0.5 1=2.0 2={ta} 3={tb} 5=1 8={n} 9={k} 14={out_t}"
            if c_type is not None:
                params += f" 6=1 10={c_type}"
            net.layer("Gemm", [a], params)
            net.tagged(n * k, -0.2, 0.2)
            if c_type in (0, 4):
                net.tagged(1 if c_type == 0 else n)

    return _generator("gemm", build)


# ------------------------------------------------------ multiheadattention


def multi_head_attention_net():
    """MultiHeadAttention: self-attention (one input), k = v (two), separate q / k / v with
    their own widths (three), a 2-D or per-head 3-D mask, default and explicit scale."""

    def build(net):
        rng = net.rng
        for i in range(12):
            heads = int(rng.integers(1, 4))
            embed = heads * int(rng.integers(1, 5))
            form = i % 3  # inputs: q; q, kv; q, k, v
            qdim = embed if form == 0 else int(rng.integers(1, 9))
            kdim = qdim if form == 0 else int(rng.integers(1, 9))
            vdim = kdim if form < 2 else int(rng.integers(1, 9))
            src = int(rng.integers(1, 7))
            dst = src if form == 0 else int(rng.integers(1, 7))
            mask = i % 4 >= 2
            bottoms = [net.input(net.uniform((src, qdim)))]
            if form >= 1:
                bottoms.append(net.input(net.uniform((dst, kdim))))
            if form == 2:
                bottoms.append(net.input(net.uniform((dst, vdim))))
            if mask:
                shape = (heads, src, dst) if i % 2 else (src, dst)
                bottoms.append(net.input(net.uniform(shape, -3.0, 0.0)))
            params = f"0={embed} 1={heads} 2={embed * qdim} 3={kdim} 4={vdim} 5={int(mask)}"
            if i % 5 == 4:
                params += " 6=0.3"
            net.layer("MultiHeadAttention", bottoms, params)
            for rows, cols in ((embed, qdim), (embed, kdim), (embed, vdim), (qdim, embed)):
                net.tagged(rows * cols, -0.6, 0.6)
                net.raw(rows, -0.2, 0.2)
        # Transformer-sized blocks whose projections run on the packed GEMM kernel.
        for embed, heads, src, dst in ((64, 4, 40, 40), (96, 6, 24, 50)):
            q = net.input(net.uniform((src, embed)))
            bottoms = [q] if src == dst else [q, net.input(net.uniform((dst, embed)))]
            net.layer("MultiHeadAttention", bottoms, f"0={embed} 1={heads} 2={embed * embed}")
            for _ in range(4):
                net.tagged(embed * embed, -0.15, 0.15)
                net.raw(embed, -0.2, 0.2)

    return _generator("multi_head_attention", build)
