"""Single-op nets for the int8 forms of the matrix layers (Gemm with `18=` int8_scale_term):
seeded random shapes and every parameter form, each case one layer fed by its own Input
blobs, its output a net output. ncnn runs them with int8 inference on.

Constant operands are written as ncnn's int8 models store them: int8-tagged (tag 0x000D4B38,
padded to 4 bytes) with raw fp32 scales after the layer's other weights, quantized with a
scale a little under 127 / max|x| (rounded half away from zero, clamped to +-127), so a
reader that recomputed the scales instead of reading them would differ. (ncnn reads an
fp32-tagged constant's bytes as int8 values in the int8 form: not a form to compare.)
"""

import numpy as np

from op_nets_matrix import Net, _batch_pair, _generator

INT8_TAG = 0x000D4B38


def round_half_away(v):
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def quantize(x, scale):
    return np.clip(round_half_away(x.astype(np.float32) * np.float32(scale)), -127, 127) \
        .astype(np.int8)


def int8_tagged(net, q):
    payload = q.astype(np.int8).tobytes()
    payload += b"\0" * (-len(payload) % 4)
    net.weights += np.uint32(INT8_TAG).tobytes() + payload


def fp32_tagged(net, x):
    net.weights += np.zeros(1, np.uint32).tobytes() + x.astype(np.float32).tobytes()


def raw(net, x):
    net.weights += np.asarray(x, np.float32).tobytes()


def gemm_int8_net():
    """Gemm int8: transA / transB, constant A (per-row scales) / B (one scale) stored int8,
    dynamic A / B inputs (2-D or 3-D with h = 1), constant C of every broadcast type or
    an input C of every shape, alpha / beta, output_N1M, output_transpose; and linear layers
    up to 70 x 90 x 130."""

    def build(net):
        rng = net.rng
        net.layer("Softmax", [net.input(net.uniform((3,)))], "0=0")  # `eq infer` needs an input
        for i in range(56):
            big = i >= 48
            lo, hi = (20, 130) if big else (1, 9)
            m, n, k = (int(v) for v in rng.integers(lo, hi, 3))
            ta, tb = int(rng.integers(0, 2)), int(rng.integers(0, 2))
            if big:
                ca, cb, cc = 0, 1, int(rng.random() < 0.5)
            else:
                ca, cb, cc = (int(rng.random() < 0.4) for _ in range(3))
            alpha = float(rng.choice([1.0, 0.5, -1.5]))
            beta = float(rng.choice([1.0, 2.0, -0.25]))
            n1m, out_t = int(rng.random() < 0.3), int(rng.random() < 0.3)
            term = int(rng.choice([1, 2, 3]))
            params = [f"0={alpha}", f"1={beta}", f"2={ta}", f"3={tb}", f"4={ca}", f"5={cb}",
                      f"6={cc}", f"7={m}", f"8={n}", f"9={k}", f"11={n1m}", f"14={out_t}",
                      f"18={term}"]
            bottoms = []

            def operand(rows, cols):
                if rng.random() < 0.25:
                    return net.input(net.uniform((rows, 1, cols)))
                return net.input(net.uniform((rows, cols)))

            a = net.uniform((m, k))
            b = net.uniform((k, n), -0.5, 0.5)
            if not ca:
                bottoms.append(operand(k, m) if ta else operand(m, k))
            if not cb:
                bottoms.append(operand(n, k) if tb else operand(k, n))
            c_count = 0
            if cc:
                c_type = int(rng.integers(-1, 5))
                params.append(f"10={c_type}")
                if c_type >= 0:
                    c_count = {0: 1, 1: m, 2: m, 3: m * n, 4: n}[c_type]
            elif rng.random() < 0.6 or (ca and cb):  # ncnn: one blob, so C, when A, B constant
                c_shape = [(1,), (m,), (n,), (m, 1), (m, n), (1, n)][int(rng.integers(0, 6))]
                bottoms.append(net.input(net.uniform(c_shape)))
            net.layer("Gemm", bottoms, " ".join(params))
            a_scales = b_scale = None
            if ca:
                absmax = np.maximum(np.abs(a).max(axis=1), 1e-6)
                a_scales = (127.0 / absmax * rng.uniform(0.8, 1.0, m)).astype(np.float32)
                q = np.stack([quantize(a[r], a_scales[r]) for r in range(m)])
                int8_tagged(net, q.T if ta else q)
            if cb:
                stored = np.ascontiguousarray(b.T if tb else b)
                b_scale = np.float32(127.0 / np.abs(b).max() * rng.uniform(0.8, 1.0))
                int8_tagged(net, quantize(stored, b_scale))
            if c_count:
                fp32_tagged(net, net.uniform((c_count,)))
            if ca:
                raw(net, a_scales)
            if cb:
                raw(net, [b_scale])

    return _generator("gemm_int8", build)


def embed_int8_net():
    """Embed int8 (`18=1`): int8-tagged tables with one scale, bias on and off, indices (int32
    bits in float slots) in range and out of it (clamped)."""

    def build(net):
        rng = net.rng
        for i in range(10):
            num_output, input_dim = int(rng.integers(1, 9)), int(rng.integers(1, 12))
            words = int(rng.integers(1, 10))
            ids = rng.integers(-2, input_dim + 2, words).astype(np.int32)
            x = net.input(ids.view(np.float32))
            bias = i % 2
            net.layer("Embed", [x], f"0={num_output} 1={input_dim} 2={bias} "
                                    f"3={num_output * input_dim} 18=1")
            table = net.uniform((input_dim, num_output))
            scale = np.float32(127.0 / np.abs(table).max() * rng.uniform(0.8, 1.0))
            int8_tagged(net, quantize(table, scale))
            if bias:
                raw(net, net.uniform((num_output,)))
            raw(net, [scale])

    return _generator("embed_int8", build)


def _mha_weights(net, shapes, lo, hi):
    """Int8-tagged projection weights with raw biases, then the per-row scales of Wq, Wk, Wv
    and Wo's one scale (each a little under 127 / max|w|)."""
    rng = net.rng
    scales = []
    for p, (rows, cols) in enumerate(shapes):
        w = net.uniform((rows, cols), lo, hi)
        if p < 3:
            s = (127.0 / np.maximum(np.abs(w).max(axis=1), 1e-6)
                 * rng.uniform(0.8, 1.0, rows)).astype(np.float32)
            q = np.stack([quantize(w[r], s[r]) for r in range(rows)])
        else:
            s = np.array([127.0 / np.abs(w).max() * rng.uniform(0.8, 1.0)], np.float32)
            q = quantize(w, s[0])
        int8_tagged(net, q)
        raw(net, net.uniform((rows,), -0.2, 0.2))
        scales.append(s)
    for s in scales:
        raw(net, s)


def multi_head_attention_int8_net():
    """MultiHeadAttention int8 (`18=`): self-attention, shared k / v, separate q / k / v of
    their own widths, 2-D and per-head masks, default and given scale; and 2 transformer-sized
    blocks."""

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
            params = (f"0={embed} 1={heads} 2={embed * qdim} 3={kdim} 4={vdim} 5={int(mask)} "
                      f"18={1 + i % 3}")
            if i % 5 == 4:
                params += " 6=0.3"
            net.layer("MultiHeadAttention", bottoms, params)
            _mha_weights(net, ((embed, qdim), (embed, kdim), (embed, vdim), (qdim, embed)),
                         -0.6, 0.6)
        for embed, heads, src, dst in ((64, 4, 40, 40), (96, 6, 24, 50)):
            q = net.input(net.uniform((src, embed)))
            bottoms = [q] if src == dst else [q, net.input(net.uniform((dst, embed)))]
            net.layer("MultiHeadAttention", bottoms,
                      f"0={embed} 1={heads} 2={embed * embed} 18=1")
            _mha_weights(net, [(embed, embed)] * 4, -0.15, 0.15)

    return _generator("multi_head_attention_int8", build)


def matmul_large_net():
    """MatMul (fp32) products large enough for the packed GEMM path: ranks 2..4 on both sides,
    transB on and off, broadcast batch axes, M / N / K from 20 to 90."""

    def build(net):
        rng = net.rng
        pairs = [(a, b) for a in range(2, 5) for b in range(2, 5)]
        for i in range(18):
            ad, bd = pairs[i % len(pairs)]
            trans_b = int(rng.integers(0, 2))
            m, k, n = (int(v) for v in rng.integers(20, 90, 3))
            ab, bb = _batch_pair(rng, ad, bd)
            a = net.input(net.uniform(tuple(ab) + (m, k)))
            b = net.input(net.uniform(tuple(bb) + ((n, k) if trans_b else (k, n))))
            net.layer("MatMul", [a, b], f"0={trans_b}")

    return _generator("matmul_large", build)


def nets():
    """(name, generator, ncnn int8 inference) of every net here."""
    return [("gemm_int8", gemm_int8_net(), True), ("embed_int8", embed_int8_net(), True),
            ("multi_head_attention_int8", multi_head_attention_int8_net(), True),
            ("matmul_large", matmul_large_net(), False)]
