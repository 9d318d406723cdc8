"""Deterministic random INT8 / INT7 models in the layout ncnn2int8 writes.

For an ncnn int8 .param (Convolution / ConvolutionDepthWise / InnerProduct
layers with `8=`), this draws fp32 weights as the fp32 generator does
(ncnn_bin.py, same seed and order), calibrates activation scales the way
ncnn2table's max method would, and writes (ncnn-format.md section 7.2):

* every quantized layer: its weights int8-tagged (tag 0x000D4B38, one byte per
  value, zero-padded to 4), quantized per output channel (per group for a
  depthwise `8=1`/`101`, one scale for a depthwise `8=2`/`102`) with
  scale = Q / max|w|, round half away from zero, clamp to +-Q; raw fp32 bias;
  the weight scales; one bottom scale = Q / max|bottom activation|; and for
  `8>100` the top scale, taken from the consuming conv as ncnn2int8's
  fuse_requantize does (through a Split: the first output's consumer);
* every other tagged weight fp16-tagged, as ncnn2int8 does (storage_type 1);
  raw blobs (BatchNorm, ...) as fp32.

Q is 127 for INT8 and 63 for INT7. The INT7 .param is the int8 one with
`27=7` appended to every quantized layer (quant::BITS_KEY; stock ncnn reads
keys 0..19 of these layers, so it loads the file as INT8 with the same scales).

Calibration runs ncnn in fp32 on the "fp32 counterpart": the same .param
with the `8=` terms stripped (layer and blob names are unchanged, so the
non-int8 benchmark .param differs only in float formatting) and the drawn fp32
weights, over a few seeded random inputs (`make_input`); the activation scale
of a blob is Q / max|x| over those inputs, as for a real model calibrated
before quantization (ncnn2table's absmax pass).

The same pass sets the classifier's bias (the layer before the Softmax of the
classification models) so that every class has the same mean score over the
calibration inputs. Deep random-weight ReLU nets map all inputs to nearly the
same features, and a fixed class would then win for every input; with the
balanced bias the winning class depends on the input, so top-1 agreement
means something.
"""

import hashlib
import os
import re

import numpy as np

import ncnn_bin

# Bump when the generated values or layout change, so cached files are rebuilt.
WRITER_VERSION = 1

INT8_TAG = 0x000D4B38
QUANTIZABLE = {"Convolution", "ConvolutionDepthWise", "InnerProduct"}
SCALE_ROLES = {"w_scale", "in_scale", "out_scale"}
BITS = {"int8": 127, "int7": 63}  # variant -> largest quantized magnitude Q
BITS_KEY = 27  # runtime/src/quant.rs BITS_KEY: `27=7` marks a 7-bit layer


def read_text(path):
    with open(path) as f:
        return f.read()


def is_quantized(layer):
    return layer.type in QUANTIZABLE and layer.get_int(8, 0) != 0


def _edit_quantized_lines(param_text, edit):
    """Apply `edit(line)` to the .param lines of quantized layers."""
    out = []
    for line in param_text.splitlines():
        toks = line.split()
        if toks and toks[0] in QUANTIZABLE and re.search(r"(^|\s)8=", line):
            line = edit(line)
        out.append(line)
    return "\n".join(out) + "\n"


def strip_int8(param_text):
    """The fp32 counterpart: the same graph without int8_scale_term."""
    return _edit_quantized_lines(param_text, lambda l: re.sub(r"\s8=-?\d+(?=\s|$)", "", l))


def mark_int7(param_text):
    """Every quantized layer gains `27=7`."""
    return _edit_quantized_lines(param_text, lambda l: f"{l.rstrip()} {BITS_KEY}=7")


# ------------------------------------------------------------------ weights


def draw_weights(layers, seed):
    """fp32 values of every non-scale blob, per layer, in load order.

    Same generator and order as ncnn_bin.write_bin. Tagged weights of layers
    that stay in float are rounded to fp16 (they are stored as fp16)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    gains = ncnn_bin.weight_gains(layers)
    weights = {}
    for layer in layers:
        values = []
        for blob in ncnn_bin.load_plan(layer):
            if blob.role in SCALE_ROLES:
                continue
            if blob.tagged:
                blob.gain = gains[layer.name]
            v = ncnn_bin._values(rng, blob, None)
            if blob.tagged and not is_quantized(layer):
                v = v.astype(np.float16).astype(np.float32)
            values.append((blob, v))
        weights[layer.name] = values
    return weights


def _pad4(payload):
    return payload + b"\0" * (-len(payload) % 4)


def counterpart_bytes(layers, weights):
    """The fp32 counterpart's .bin (quantized layers' weights as fp32).

    `layers` is the int8 graph (to know which layers are quantized); the scale
    blobs are not written, as the counterpart has no `8=`."""
    parts = []
    for layer in layers:
        for blob, v in weights[layer.name]:
            if blob.tagged and is_quantized(layer):
                parts.append(np.uint32(0).tobytes() + v.astype("<f4").tobytes())
            elif blob.tagged:
                parts.append(_pad4(np.uint32(ncnn_bin.FP16_TAG).tobytes()
                                   + v.astype("<f2").tobytes()))
            else:
                parts.append(v.astype("<f4").tobytes())
    return b"".join(parts)


def round_half_away(v):
    """Round half away from zero (C roundf), exactly, for float32 input."""
    v = np.asarray(v, dtype=np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def quantize_weights(w, groups, qmax):
    """Per-group symmetric quantization: (int8 values, float32 scales).

    As ncnn's quantize_to_int8: the product w * scale in float32, then
    round half away from zero and clamp to +-qmax."""
    w = w.astype(np.float32).reshape(groups, -1)
    absmax = np.abs(w).max(axis=1)
    scales = np.where(absmax > 0, np.float32(qmax) / np.maximum(absmax, 1e-30), 0).astype(
        np.float32)
    q = np.clip(round_half_away(w * scales[:, None]), -qmax, qmax).astype(np.int8)
    return q.reshape(-1), scales


def activation_scale(absmax, qmax):
    # A blob that is all zero on the calibration inputs: any scale quantizes it exactly.
    return np.float32(qmax / absmax) if absmax > 0 else np.float32(1.0)


def top_consumer(layers, layer):
    """The quantized layer whose bottom scale becomes `layer`'s top scale
    (ncnn2int8 fuse_requantize: direct consumer, or the consumer of a Split's
    first output)."""
    consumers = {b: l for l in reversed(layers) for b in l.bottoms}
    c = consumers.get(layer.tops[0])
    if c is not None and c.type == "Split":
        c = consumers.get(c.tops[0])
    if c is None or not is_quantized(c):
        raise ValueError(f"{layer.name}: 8>100 but its output feeds no quantized layer")
    return c


def write_quantized(layers, weights, absmax, qmax, path):
    """Write the quantized .bin; returns a byte length ncnn must reject (see
    ncnn_bin.write_bin)."""
    offset = 0
    short_len = None
    last_weight_payload = None
    by_name = {l.name: l for l in layers}
    with open(path, "wb") as f:
        for layer in layers:
            plan = ncnn_bin.load_plan(layer)
            drawn = iter(weights[layer.name])
            w_scales = None
            for blob in plan:
                if blob.role == "w_scale":
                    data = w_scales.astype("<f4").tobytes()
                elif blob.role == "in_scale":
                    data = np.float32(activation_scale(absmax[layer.bottoms[0]], qmax)).tobytes()
                elif blob.role == "out_scale":
                    consumer = by_name[top_consumer(layers, layer).name]
                    s = activation_scale(absmax[consumer.bottoms[0]], qmax)
                    data = np.float32(s).tobytes()
                else:
                    drawn_blob, v = next(drawn)
                    assert drawn_blob.role == blob.role and drawn_blob.count == blob.count
                    if blob.tagged and is_quantized(layer):
                        groups = next(b.count for b in plan if b.role == "w_scale")
                        q, w_scales = quantize_weights(v, groups, qmax)
                        data = _pad4(np.uint32(INT8_TAG).tobytes() + q.tobytes())
                    elif blob.tagged:
                        data = _pad4(np.uint32(ncnn_bin.FP16_TAG).tobytes()
                                     + v.astype("<f2").tobytes())
                    else:
                        data = v.astype("<f4").tobytes()
                if blob.tagged:
                    last_weight_payload = offset + 4
                f.write(data)
                short_len = offset
                if blob.role in ncnn_bin.UNCHECKED_READS:
                    short_len = last_weight_payload
                offset += len(data)
    return short_len


# -------------------------------------------------------------- calibration


def make_input(rng, shape):
    """One random (c, h, w) input: a blocky low-frequency pattern (2..8 cells
    a side, uniform [-1, 1]) plus uniform noise of amplitude 0.3.

    Plain i.i.d. noise would not do: the global average pool of every
    classifier here averages it away, so all inputs would get the same class.
    """
    c, h, w = shape
    cells = int(rng.integers(2, 9))
    grid = rng.uniform(-1.0, 1.0, (c, cells, cells))
    pattern = np.repeat(np.repeat(grid, -(-h // cells), 1), -(-w // cells), 2)[:, :h, :w]
    return (pattern + 0.3 * rng.uniform(-1.0, 1.0, shape)).astype(np.float32)


def make_inputs(seed_text, shape, count):
    rng = np.random.Generator(np.random.PCG64(ncnn_bin.model_seed(seed_text)))
    return [make_input(rng, shape) for _ in range(count)]


_PASS_THROUGH = {"Pooling", "Flatten", "Dropout", "Reshape", "Noop"}


def find_classifier(layers):
    """The weighted layer that computes the class scores, and the layers
    between it and the Softmax; (None, []) when a Softmax is not fed by
    one through pass-through layers (the SSDs: their Softmax follows a Concat)."""
    producer = {t: l for l in layers for t in l.tops}
    softmax = [l for l in layers if l.type == "Softmax"]
    if len(softmax) != 1:
        return None, []
    between = []
    layer = producer.get(softmax[0].bottoms[0])
    while layer is not None and layer.type in _PASS_THROUGH:
        between.insert(0, layer)
        layer = producer.get(layer.bottoms[0])
    if layer is None or layer.type not in ("Convolution", "InnerProduct"):
        return None, []
    for l in between:
        if l.type == "Pooling" and not (l.get_int(0, 0) == 1 and l.get_int(4, 0) == 1):
            return None, []  # only a global average pool is modelled below
    bias_key = 1 if layer.type == "InnerProduct" else 5
    if not layer.get_int(bias_key, 0) or layer.get_int(9, 0) not in (0, 1):
        return None, []
    return layer, between


def classifier_probe_text(param_text, classifier):
    """`param_text` with the classifier's fused activation removed, so its
    output with a zero bias is the raw score z = W x."""
    out = []
    for line in param_text.splitlines():
        toks = line.split()
        if len(toks) > 1 and toks[1] == classifier.name:
            line = re.sub(r"\s(9|10|-23310)=\S+", "", line)
        out.append(line)
    return "\n".join(out) + "\n"


def balanced_bias(z, activation):
    """Per-class bias that gives every class the same mean score over the
    calibration inputs (a data-dependent init of the classifier's bias).

    z: (inputs, classes, positions) raw scores; the score of class c is the
    mean over positions (a global average pool, or one position) of
    act(z + b_c), so its mean over inputs is the mean over both. Without an
    activation the common mean is 0; with ReLU it is the average of the
    classes' mean scores at bias 0, found by bisection (the score is
    non-decreasing in b_c).
    """
    z = z.astype(np.float64).transpose(1, 0, 2).reshape(z.shape[1], -1)
    if activation == 0:
        return (-z.mean(axis=1)).astype(np.float32)
    relu_mean = lambda b: np.maximum(z + b[:, None], 0).mean(axis=1)  # noqa: E731
    target = relu_mean(np.zeros(len(z))).mean()
    span = np.abs(z).max() + 1.0
    lo, hi = np.full(len(z), -span), np.full(len(z), span)
    for _ in range(60):
        mid = (lo + hi) / 2
        low = relu_mean(mid) < target
        lo, hi = np.where(low, mid, lo), np.where(low, hi, mid)
    return ((lo + hi) / 2).astype(np.float32)


def calibrate(layers, fp32_param_text, fp32_bin, inputs, probe=None, threads=2):
    """Run ncnn in fp32 on the counterpart over `inputs`; returns (max|x| of
    every quantized layer's bottom blob, the `probe` blob per input)."""
    import ncnn

    net = ncnn_bin.make_net(num_threads=threads)
    if net.load_param_mem(fp32_param_text) != 0:
        raise RuntimeError("ncnn failed to load the fp32 counterpart .param")
    data = np.frombuffer(fp32_bin, dtype=np.uint8)
    reader = ncnn_bin._counting_reader_class()(data)
    if net.load_model(reader) != 0 or reader.consumed != len(data):
        raise RuntimeError(f"fp32 counterpart: ncnn read {reader.consumed} of {len(data)} bytes")
    blobs = sorted({l.bottoms[0] for l in layers if is_quantized(l)})
    input_blob = next(t for l in layers if l.type == "Input" for t in l.tops)
    absmax = dict.fromkeys(blobs, 0.0)
    probed = []
    for x in inputs:
        ex = net.create_extractor()
        ex.set_light_mode(False)
        mat = ncnn.Mat(x).clone()
        ex.input(input_blob, mat)
        for b in blobs + ([probe] if probe else []):
            ret, out = ex.extract(b)
            if ret != 0:
                raise RuntimeError(f"fp32 counterpart: extract {b} returned {ret}")
            a = np.array(out, dtype=np.float32, copy=True)
            if not np.all(np.isfinite(a)):
                raise RuntimeError(f"fp32 counterpart: {b} is not finite")
            if b == probe:
                probed.append(a)
            else:
                absmax[b] = max(absmax[b], float(np.abs(a).max()))
    return absmax, probed


# ------------------------------------------------------------------ caching


def cached_models(param_path, name, cache_dir, input_shape, calibration_count=8):
    """Paths of the verified INT8 and INT7 models for an int8 `param_path`.

    Returns ({"int8": (param, bin), "int7": (param, bin)}, generated). Files
    are keyed by param content, seed, input shape, calibration count and
    writer versions; each new file is checked with ncnn (whole file consumed,
    one blob shorter rejected), the INT7 one with its `27=` keys.
    """
    text = read_text(param_path)
    seed = ncnn_bin.model_seed(name)
    key_text = (f"{WRITER_VERSION}/{ncnn_bin.WRITER_VERSION}\n{seed}\n{tuple(input_shape)}\n"
                f"{calibration_count}\n{text}")
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    os.makedirs(cache_dir, exist_ok=True)
    paths = {}
    for variant in BITS:
        stem = os.path.join(cache_dir, f"{name}.{variant}.{key}")
        param = param_path if variant == "int8" else stem + ".param"
        paths[variant] = (param, stem + ".bin")
    if all(os.path.exists(p) for pair in paths.values() for p in pair):
        return paths, False

    for old in os.listdir(cache_dir):  # drop stale versions
        if any(old.startswith(f"{name}.{v}.") for v in BITS) and key not in old:
            os.remove(os.path.join(cache_dir, old))
    layers = ncnn_bin.parse_param(text)
    weights = draw_weights(layers, seed)
    fp32_text = strip_int8(text)
    classifier, _ = find_classifier(layers)
    bias_slot = None
    if classifier is not None:
        # Calibrate with the classifier's raw scores exposed (no activation,
        # zero bias); nothing after it is quantized, so the scales are unaffected.
        fp32_text = classifier_probe_text(fp32_text, classifier)
        bias_slot = next(i for i, (b, _) in enumerate(weights[classifier.name])
                         if b.role == "bias")
        bias_blob, _ = weights[classifier.name][bias_slot]
        weights[classifier.name][bias_slot] = (bias_blob, np.zeros(bias_blob.count, np.float32))
    fp32_bin = counterpart_bytes(layers, weights)
    inputs = make_inputs("calibrate:" + name, input_shape, calibration_count)
    probe = classifier.tops[0] if classifier is not None else None
    absmax, scores = calibrate(layers, fp32_text, fp32_bin, inputs, probe)
    del fp32_bin
    if classifier is not None:
        count = weights[classifier.name][bias_slot][0].count
        z = np.stack([s.reshape(count, -1) for s in scores])
        bias = balanced_bias(z, classifier.get_int(9, 0))
        weights[classifier.name][bias_slot] = (bias_blob, bias)

    for variant, qmax in BITS.items():
        param, binary = paths[variant]
        if variant == "int7":
            with open(param + ".tmp", "w") as f:
                f.write(mark_int7(text))
            os.replace(param + ".tmp", param)
        tmp = f"{binary}.tmp{os.getpid()}"
        short_len = write_quantized(layers, weights, absmax, qmax, tmp)
        try:
            ncnn_bin.check_exact(param, tmp, short_len)
        except Exception:
            os.remove(tmp)
            raise
        os.replace(tmp, binary)
    return paths, True


# ------------------------------------------------------- rounding-noise proxy


def blob_offsets(layers, size):
    """(layer, blob, byte offset, byte length) of every blob of a quantized
    .bin written by `write_quantized`, in file order."""
    offset = 0
    out = []
    for layer in layers:
        for blob in ncnn_bin.load_plan(layer):
            if blob.tagged:
                n = 4 + (blob.count if is_quantized(layer) else 2 * blob.count)
                n += -n % 4
            else:
                n = 4 * blob.count
            out.append((layer, blob, offset, n))
            offset += n
    if offset != size:
        raise ValueError(f"plan covers {offset} bytes of {size}")
    return out


def with_scaled_activations(param_path, bin_path, factor, out_path):
    """Copy of a quantized .bin with every bottom and top scale times `factor`.

    With factor = 1 + 1e-4 a quantized activation moves by at most 0.0127 LSB,
    so about 1 % of the roundings flip by one LSB: the kind of difference two
    faithful int8 implementations have (ncnn-format.md 6.3). Running ncnn on
    both files shows how far such +-1 LSB flips carry to the outputs."""
    layers = ncnn_bin.parse_param(read_text(param_path))
    with open(bin_path, "rb") as f:
        data = bytearray(f.read())
    for _, blob, offset, n in blob_offsets(layers, len(data)):
        if blob.role in ("in_scale", "out_scale"):
            v = np.frombuffer(bytes(data[offset:offset + n]), "<f4") * np.float32(factor)
            data[offset:offset + n] = v.astype("<f4").tobytes()
    with open(out_path, "wb") as f:
        f.write(data)
